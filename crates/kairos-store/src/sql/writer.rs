//! Group commit: every write of the store runs on one connection owned by a writer task,
//! which takes whatever writes are waiting, runs them in **one** transaction (each inside
//! its own savepoint, so one write's error undoes only that write) and commits once.
//!
//! A caller's answer comes only after the commit that made its write durable, so nothing is
//! weakened: a write reported done survives a crash exactly as before (SQLite keeps
//! `synchronous = FULL`). What changes is that concurrent writers share one fsync instead
//! of queueing for one each, which is what bounded the SQLite store's throughput.
//!
//! Writes run one after another on the writer's connection, so within a batch each sees
//! the ones before it; across processes the usual locks (SQLite's write lock, PostgreSQL's
//! row locks) still apply.
//!
//! The writer's cost is statements, not rows, so two kinds of work are shared by the batch:
//! - **Audit records.** A write hands its drafts to the batch ([`Ctx::audit`]); they are
//!   sealed onto the chain in the order the writes ran, after the last write, with one
//!   read of the chain's head, multi-row inserts and one head update. A write that fails
//!   takes its drafts back with it. The head row (locked on PostgreSQL) is held only from
//!   then to the commit.
//! - **New requests** ([`Writer::insert`], the issuance path): the batch's insertions go in
//!   as one multi-row insert per table; if that fails (a duplicate id), each is retried on
//!   its own so only the offending one fails.
//! - **Grant updates** ([`Writer::update`], a read-modify-write by closure: activating a
//!   provisioned grant, renewing): the batch's updates load their grants in one statement
//!   (under row locks on PostgreSQL, taken outside any savepoint so an undo cannot drop
//!   them), apply their closures in order on what the ones before left, and write the
//!   changed grants back in one statement; if that fails, each grant is written on its own
//!   so only the offending one's updates fail.
//!
//! On PostgreSQL, a batch of new requests only (the issuance path under load) is first
//! tried as **one** statement that commits itself: requests, grants, audit records and the
//! head's compare-and-set together, one round trip instead of four. If the head had moved
//! or the statement failed, it wrote nothing, and the batch runs the usual way.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use std::collections::{HashMap, HashSet};

use kairos_domain::{AuditDraft, Clock, Grant, GrantId, Request, Timestamp};
use sqlx::AnyPool;

use super::db::Db;
use tokio::sync::{mpsc, oneshot, watch};

use super::{Backend, audit, bulk, grants, requests};
use crate::{GrantUpdate, Result, StoreError};

/// A boxed future borrowing the writer's connection.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The most writes committed together. Large enough to absorb a burst from many
/// concurrent callers, small enough that a batch's transaction stays short.
const MAX_BATCH: usize = 256;

/// Writes waiting for the writer before callers queue on the channel.
const QUEUE: usize = 4_096;

/// The audit drafts of a batch's writes, with the time each is recorded at, in order.
#[derive(Clone, Default)]
pub(crate) struct AuditSink(Arc<Mutex<Vec<(AuditDraft, Timestamp)>>>);

impl AuditSink {
    fn entries(&self) -> std::sync::MutexGuard<'_, Vec<(AuditDraft, Timestamp)>> {
        // Only the writer task touches it, one write at a time: never contended, and a
        // panic elsewhere cannot leave it half-changed.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn push(&self, drafts: Vec<AuditDraft>, at: Timestamp) {
        self.entries().extend(drafts.into_iter().map(|d| (d, at)));
    }

    fn len(&self) -> usize {
        self.entries().len()
    }

    fn truncate(&self, len: usize) {
        self.entries().truncate(len);
    }

    fn take(&self) -> Vec<(AuditDraft, Timestamp)> {
        std::mem::take(&mut *self.entries())
    }
}

/// What a write sees besides the connection.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub backend: Backend,
    pub clock: Arc<dyn Clock>,
    audit: AuditSink,
}

impl Ctx {
    /// Appends `drafts` to the audit chain, recorded at `at`, in this write's transaction:
    /// they are sealed after the batch's last write and kept only if this write succeeds.
    pub(crate) fn audit(&self, drafts: Vec<AuditDraft>, at: Timestamp) {
        if !drafts.is_empty() {
            self.audit.push(drafts, at);
        }
    }
}

/// One queued write, type-erased.
trait Op: Send {
    fn run<'c>(self: Box<Self>, conn: &'c mut Db, cx: Ctx) -> BoxFuture<'c, Box<dyn Done>>;
    /// The write never ran (the batch could not begin).
    fn abort(self: Box<Self>, why: String);
}

/// A write that ran and awaits its batch's commit.
trait Done: Send {
    fn succeeded(&self) -> bool;
    /// `commit` is the batch's outcome; a write that failed reports its own error.
    fn finish(self: Box<Self>, commit: std::result::Result<(), String>);
}

struct Queued<F, T> {
    f: F,
    clock: Arc<dyn Clock>,
    reply: oneshot::Sender<Result<T>>,
}

struct Ran<T> {
    result: Result<T>,
    reply: oneshot::Sender<Result<T>>,
}

impl<F, T> Op for Queued<F, T>
where
    F: for<'c> FnOnce(&'c mut Db, Ctx) -> BoxFuture<'c, Result<T>> + Send + 'static,
    T: Send + 'static,
{
    fn run<'c>(self: Box<Self>, conn: &'c mut Db, cx: Ctx) -> BoxFuture<'c, Box<dyn Done>> {
        let Queued { f, clock, reply } = *self;
        Box::pin(async move {
            let result = f(conn, Ctx { clock, ..cx }).await;
            Box::new(Ran { result, reply }) as Box<dyn Done>
        })
    }

    fn abort(self: Box<Self>, why: String) {
        // The caller may have gone away; then nobody is waiting for the answer.
        let _ = self.reply.send(Err(StoreError::CommitFailed(why)));
    }
}

impl<T: Send> Done for Ran<T> {
    fn succeeded(&self) -> bool {
        self.result.is_ok()
    }

    fn finish(self: Box<Self>, commit: std::result::Result<(), String>) {
        let Ran { result, reply } = *self;
        let answer = match (result, commit) {
            (Err(e), _) => Err(e),
            (Ok(value), Ok(())) => Ok(value),
            (Ok(_), Err(why)) => Err(StoreError::CommitFailed(why)),
        };
        let _ = reply.send(answer);
    }
}

/// A new request (with its grant, if granted at once) and its audit drafts: the one write
/// the writer knows by shape, so a batch of them shares its statements.
pub(crate) struct Insertion {
    pub request: Request,
    pub grant: Option<Grant>,
    pub drafts: Vec<AuditDraft>,
}

struct Insert {
    insertion: Insertion,
    reply: oneshot::Sender<Result<()>>,
}

impl Op for Insert {
    fn run<'c>(self: Box<Self>, conn: &'c mut Db, cx: Ctx) -> BoxFuture<'c, Box<dyn Done>> {
        let Insert { insertion, reply } = *self;
        Box::pin(async move {
            let Insertion {
                request,
                grant,
                drafts,
            } = insertion;
            let result = requests::insert_one(conn, &request, grant.as_ref()).await;
            if result.is_ok() {
                cx.audit(drafts, request.created_at);
            }
            Box::new(Ran { result, reply }) as Box<dyn Done>
        })
    }

    fn abort(self: Box<Self>, why: String) {
        let _ = self.reply.send(Err(StoreError::CommitFailed(why)));
    }
}

/// A read-modify-write of one grant: the writer's other shape, so a batch's updates share
/// their statements.
pub(crate) struct Update {
    id: GrantId,
    update: GrantUpdate,
    /// The time of its audit records.
    clock: Arc<dyn Clock>,
    reply: oneshot::Sender<Result<Grant>>,
}

impl Op for Update {
    fn run<'c>(self: Box<Self>, conn: &'c mut Db, cx: Ctx) -> BoxFuture<'c, Box<dyn Done>> {
        let Update {
            id,
            update,
            clock,
            reply,
        } = *self;
        Box::pin(async move {
            let result = grants::update_one(conn, &cx, id, update, clock.now()).await;
            Box::new(Ran { result, reply }) as Box<dyn Done>
        })
    }

    fn abort(self: Box<Self>, why: String) {
        let _ = self.reply.send(Err(StoreError::CommitFailed(why)));
    }
}

/// What waits on the queue.
enum Job {
    Op(Box<dyn Op>),
    Insert(Box<Insert>),
    Update(Box<Update>),
}

impl Job {
    fn into_op(self) -> Box<dyn Op> {
        match self {
            Self::Op(op) => op,
            Self::Insert(insert) => insert,
            Self::Update(update) => update,
        }
    }
}

/// Where the writer gets its connection.
pub(crate) enum Source {
    /// A connection of the store's sqlx pool (PostgreSQL, an in-memory SQLite database).
    Pool(AnyPool),
    /// Its own rusqlite connection to this SQLite file (see [`super::db`]).
    SqliteFile(std::path::PathBuf),
}

impl Source {
    async fn open(&self) -> std::result::Result<Db, String> {
        match self {
            Self::Pool(pool) => pool.acquire().await.map(Db::Any).map_err(|e| e.to_string()),
            // SQLite's own message: `StoreError::Sqlite` displays only "the store failed".
            Self::SqliteFile(path) => Db::open_sqlite(path).map_err(|e| match e {
                StoreError::Sqlite(e) => e.to_string(),
                e => e.to_string(),
            }),
        }
    }
}

/// The handle the store keeps: a queue to the writer task and a way to stop it.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Job>,
    stop: Arc<watch::Sender<bool>>,
    /// Answers (or drops) when the writer has finished.
    finished: Arc<Mutex<Option<oneshot::Receiver<()>>>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Op(_) => "Job::Op",
            Self::Insert(_) => "Job::Insert",
            Self::Update(_) => "Job::Update",
        })
    }
}

impl Writer {
    /// Starts the writer on a connection from `source`, held while it runs.
    ///
    /// The writer runs on a thread of its own. Through sqlx every statement it runs is a
    /// wake-up from outside the runtime (the socket, or SQLite's worker thread on an
    /// in-memory database), and a task woken from
    /// outside waits in the runtime's shared queue, which busy workers look at only every
    /// few dozen tasks: on the request-serving runtime, under load, each statement of a
    /// batch waited milliseconds behind request handlers. Its own thread answers at once.
    pub(crate) fn start(source: Source, backend: Backend) -> Result<Self> {
        let (queue, jobs) = mpsc::channel(QUEUE);
        let (stop, stopped) = watch::channel(false);
        let (done, finished) = oneshot::channel();
        let work = async move {
            run(source, backend, jobs, stopped).await;
            let _ = done.send(());
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(StoreError::WriterThread)?;
        std::thread::Builder::new()
            .name("kairos-store-writer".into())
            .spawn(move || runtime.block_on(work))
            .map_err(StoreError::WriterThread)?;
        Ok(Self {
            queue,
            stop: Arc::new(stop),
            finished: Arc::new(Mutex::new(Some(finished))),
        })
    }

    /// Runs `f` in the next batch and answers once that batch has committed.
    pub(crate) async fn write<T, F>(&self, clock: Arc<dyn Clock>, f: F) -> Result<T>
    where
        F: for<'c> FnOnce(&'c mut Db, Ctx) -> BoxFuture<'c, Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let op: Box<dyn Op> = Box::new(Queued { f, clock, reply });
        self.queue
            .send(Job::Op(op))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Inserts a new request in the next batch, sharing statements with the batch's other
    /// insertions; answers once that batch has committed.
    pub(crate) async fn insert(&self, insertion: Insertion) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job::Insert(Box::new(Insert { insertion, reply })))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `update` on grant `id` in the next batch (loading and writing back together
    /// with the batch's other updates); answers once that batch has committed.
    pub(crate) async fn update(
        &self,
        id: GrantId,
        update: GrantUpdate,
        clock: Arc<dyn Clock>,
    ) -> Result<Grant> {
        let (reply, answer) = oneshot::channel();
        let job = Update {
            id,
            update,
            clock,
            reply,
        };
        self.queue
            .send(Job::Update(Box::new(job)))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Stops taking writes, finishes the batch in flight and releases the connection.
    pub(crate) async fn stop(&self) {
        let _ = self.stop.send(true);
        let finished = self.finished.lock().ok().and_then(|mut f| f.take());
        if let Some(finished) = finished {
            // Dropped instead of answered only if the writer's thread died.
            let _ = finished.await;
        }
    }
}

async fn run(
    source: Source,
    backend: Backend,
    mut jobs: mpsc::Receiver<Job>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut conn: Option<Db> = None;
    // The audit chain's head as this writer last committed it (see `audit::seal`).
    let mut head: Option<audit::Head> = None;
    loop {
        let first = tokio::select! {
            biased;
            _ = stopped.changed() => break,
            job = jobs.recv() => match job {
                Some(job) => job,
                None => break,
            },
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut c = match conn.take() {
            Some(c) => c,
            None => match source.open().await {
                Ok(c) => c,
                Err(e) => {
                    let why = format!("no connection to the store: {e}");
                    tracing::error!(error = %why, "store writer cannot connect");
                    for job in batch {
                        job.into_op().abort(why.clone());
                    }
                    continue;
                }
            },
        };
        let (writes, started) = (batch.len(), std::time::Instant::now());
        let outcome = run_batch(&mut c, backend, batch, &mut head).await;
        tracing::trace!(
            writes,
            micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            ok = outcome.is_ok(),
            "store batch"
        );
        match outcome {
            Ok(()) => conn = Some(c),
            // The connection's state is unknown: open another for the next batch.
            Err(()) => c.close().await,
        }
    }
    // The connection was opened on (or last used from) the writer's own runtime, which
    // ends with this function: close it rather than hand it back to the pool.
    if let Some(c) = conn {
        c.close().await;
    }
    // Writes queued after the stop are refused by the closed channel.
    jobs.close();
    while let Ok(job) = jobs.try_recv() {
        job.into_op().abort("the store is closing".to_owned());
    }
}

/// One transaction for the batch. `Err` when the connection should not be reused.
/// `head`: the chain's head as the last committed batch left it; updated when this one
/// commits, forgotten when it does not.
async fn run_batch(
    conn: &mut Db,
    backend: Backend,
    batch: Vec<Job>,
    head: &mut Option<audit::Head>,
) -> std::result::Result<(), ()> {
    let mut known = head.take();
    let batch = match &known {
        Some(at) if backend == Backend::Postgres => {
            match insert_in_one_statement(conn, batch, at).await {
                OneStatement::Committed(new_head) => {
                    *head = Some(new_head);
                    return Ok(());
                }
                OneStatement::Moved(batch) => {
                    known = None;
                    batch
                }
                OneStatement::Unsuitable(batch) | OneStatement::Failed(batch) => batch,
            }
        }
        _ => batch,
    };
    if let Err(e) = conn.run(backend.begin_statement()).await {
        let why = format!("beginning a transaction: {e}");
        for job in batch {
            job.into_op().abort(why.clone());
        }
        return Err(());
    }
    let cx = Ctx {
        backend,
        clock: Arc::new(kairos_domain::SystemClock),
        audit: AuditSink::default(),
    };
    // One write alone needs no savepoint: its error rolls back the whole transaction.
    let single = batch.len() == 1;
    let mut ran: Vec<Box<dyn Done>> = Vec::with_capacity(batch.len());
    let mut broken: Option<String> = None;
    let mut ops: Vec<Box<dyn Op>> = Vec::with_capacity(batch.len());
    let (mut inserts, mut updates, mut others) = (Vec::new(), Vec::new(), Vec::new());
    for job in batch {
        match job {
            Job::Insert(insert) => inserts.push(*insert),
            Job::Update(update) => updates.push(*update),
            Job::Op(op) => others.push(op),
        }
    }
    if inserts.len() > 1 {
        // With nothing else in the batch, the transaction itself can be undone instead of
        // a savepoint (two statements fewer, round trips on PostgreSQL).
        let alone = others.is_empty() && updates.is_empty();
        match insert_together(conn, &cx, inserts, alone).await {
            Together::Done(done) => ran.extend(done),
            // Each on its own, so only the offending one fails.
            Together::Failed(inserts) => {
                ops.extend(inserts.into_iter().map(|i| Box::new(i) as Box<dyn Op>));
            }
            Together::Broken(why, inserts) => {
                broken = Some(why);
                ops.extend(inserts.into_iter().map(|i| Box::new(i) as Box<dyn Op>));
            }
        }
    } else {
        ops.extend(inserts.into_iter().map(|i| Box::new(i) as Box<dyn Op>));
    }
    // A grant's first update of the batch goes with the others; a later one of the same
    // grant runs on its own afterwards, on what the first left, and fails alone.
    let mut seen = HashSet::new();
    let (updates, again): (Vec<Update>, Vec<Update>) = updates
        .into_iter()
        .partition(|u| seen.insert(u.id.as_str().to_owned()));
    if updates.len() > 1 && broken.is_none() {
        match update_together(conn, &cx, updates).await {
            Ok(done) => ran.extend(done),
            Err((why, done)) => {
                broken = Some(why);
                ran.extend(done);
            }
        }
    } else {
        ops.extend(updates.into_iter().map(|u| Box::new(u) as Box<dyn Op>));
    }
    ops.extend(again.into_iter().map(|u| Box::new(u) as Box<dyn Op>));
    ops.extend(others);
    let mut ops = ops.into_iter();
    if broken.is_none() {
        for op in ops.by_ref() {
            if !single && let Err(e) = conn.run("SAVEPOINT kairos_write").await {
                broken = Some(format!("opening a savepoint: {e}"));
                op.abort(broken.clone().unwrap_or_default());
                break;
            }
            let mark = cx.audit.len();
            let done = op.run(conn, cx.clone()).await;
            if !done.succeeded() {
                cx.audit.truncate(mark);
            }
            if !single {
                let undo = if done.succeeded() {
                    conn.run("RELEASE SAVEPOINT kairos_write").await
                } else {
                    match conn.run("ROLLBACK TO SAVEPOINT kairos_write").await {
                        Ok(_) => conn.run("RELEASE SAVEPOINT kairos_write").await,
                        Err(e) => Err(e),
                    }
                };
                if let Err(e) = undo {
                    broken = Some(format!("closing a savepoint: {e}"));
                    ran.push(done);
                    break;
                }
            }
            ran.push(done);
        }
    }
    let mut sealed = None;
    if broken.is_none() {
        let drafts = cx.audit.take();
        match audit::seal(conn, backend, drafts, known).await {
            Ok(new_head) => sealed = new_head,
            Err(e) => broken = Some(format!("appending to the audit chain: {e}")),
        }
    }
    if let Some(why) = broken {
        for op in ops {
            op.abort(why.clone());
        }
        let _ = conn.run("ROLLBACK").await;
        for done in ran {
            done.finish(Err(why.clone()));
        }
        return Err(());
    }
    if single && ran.iter().all(|d| !d.succeeded()) {
        let rolled_back = conn.run("ROLLBACK").await;
        for done in ran {
            done.finish(Ok(()));
        }
        return rolled_back.map(|_| ()).map_err(|_| ());
    }
    match conn.run("COMMIT").await {
        Ok(_) => {
            *head = sealed;
            for done in ran {
                done.finish(Ok(()));
            }
            Ok(())
        }
        Err(e) => {
            let why = format!("committing: {e}");
            let _ = conn.run("ROLLBACK").await;
            for done in ran {
                done.finish(Err(why.clone()));
            }
            Err(())
        }
    }
}

/// How a batch fared as one self-committing statement (PostgreSQL).
enum OneStatement {
    /// Written and committed, every caller answered: the chain's new head.
    Committed(audit::Head),
    /// Not a batch of insertions only, or too large for one statement.
    Unsuitable(Vec<Job>),
    /// The chain's head had moved (another replica appended): nothing was written.
    Moved(Vec<Job>),
    /// The statement failed (a duplicate id, a lost connection): nothing was written.
    Failed(Vec<Job>),
}

/// PostgreSQL, a batch of new requests only (the issuance path under load): their rows
/// and audit records, sealed after `known`, in one statement that commits itself (see
/// `bulk::insert_sealed`). A batch it cannot write is handed back whole, to run the usual
/// way: in a transaction, each insertion that fails failing alone.
async fn insert_in_one_statement(
    conn: &mut Db,
    batch: Vec<Job>,
    known: &audit::Head,
) -> OneStatement {
    let insertions: Vec<&Insertion> = batch
        .iter()
        .filter_map(|job| match job {
            Job::Insert(insert) => Some(&insert.insertion),
            Job::Op(_) | Job::Update(_) => None,
        })
        .collect();
    let requests: Vec<&Request> = insertions.iter().map(|i| &i.request).collect();
    let grants: Vec<&Grant> = insertions.iter().filter_map(|i| i.grant.as_ref()).collect();
    let records: usize = insertions.iter().map(|i| i.drafts.len()).sum();
    if insertions.len() != batch.len()
        || records == 0
        || [requests.len(), grants.len(), records]
            .iter()
            .any(|&n| n > bulk::CHUNK)
    {
        return OneStatement::Unsuitable(batch);
    }
    let drafts: Vec<(AuditDraft, Timestamp)> = insertions
        .iter()
        .flat_map(|i| i.drafts.iter().map(|d| (d.clone(), i.request.created_at)))
        .collect();
    let written = match audit::seal_after(&drafts, known.0, known.1.clone()) {
        Ok((records, new_head)) => {
            bulk::insert_sealed(conn, &requests, &grants, records, &new_head, known)
                .await
                .map(|swapped| swapped.then_some(new_head))
        }
        Err(e) => Err(e),
    };
    match written {
        Ok(Some(new_head)) => {
            for job in batch {
                if let Job::Insert(insert) = job {
                    let _ = insert.reply.send(Ok(()));
                }
            }
            OneStatement::Committed(new_head)
        }
        Ok(None) => OneStatement::Moved(batch),
        Err(e) => {
            tracing::debug!(error = %e, "a batch's insertions failed as one statement; retrying in a transaction");
            OneStatement::Failed(batch)
        }
    }
}

/// How a batch's insertions fared as one multi-row insert.
enum Together {
    Done(Vec<Box<dyn Done>>),
    /// Undone; retry each alone.
    Failed(Vec<Insert>),
    /// The savepoint could not be opened or undone: the transaction is lost.
    Broken(String, Vec<Insert>),
}

/// `alone`: the insertions are the whole batch, so on failure the transaction is rolled
/// back and begun again rather than undone to a savepoint.
async fn insert_together(conn: &mut Db, cx: &Ctx, inserts: Vec<Insert>, alone: bool) -> Together {
    if !alone && let Err(e) = conn.run("SAVEPOINT kairos_insert").await {
        return Together::Broken(format!("opening a savepoint: {e}"), inserts);
    }
    let rows: Vec<&Insertion> = inserts.iter().map(|i| &i.insertion).collect();
    match requests::insert_many(conn, cx.backend, &rows).await {
        Ok(()) => {
            if !alone && let Err(e) = conn.run("RELEASE SAVEPOINT kairos_insert").await {
                return Together::Broken(format!("closing a savepoint: {e}"), inserts);
            }
            let done = inserts
                .into_iter()
                .map(|Insert { insertion, reply }| {
                    cx.audit(insertion.drafts, insertion.request.created_at);
                    Box::new(Ran {
                        result: Ok(()),
                        reply,
                    }) as Box<dyn Done>
                })
                .collect();
            Together::Done(done)
        }
        Err(e) => {
            tracing::debug!(error = %e, "a batch's insertions failed together; retrying each");
            let undone = if alone {
                match conn.run("ROLLBACK").await {
                    Ok(_) => conn.run(cx.backend.begin_statement()).await,
                    Err(e) => Err(e),
                }
            } else {
                match conn.run("ROLLBACK TO SAVEPOINT kairos_insert").await {
                    Ok(_) => conn.run("RELEASE SAVEPOINT kairos_insert").await,
                    Err(e) => Err(e),
                }
            };
            match undone {
                Ok(_) => Together::Failed(inserts),
                Err(e) => Together::Broken(format!("closing a savepoint: {e}"), inserts),
            }
        }
    }
}

/// One update, applied: its answer, and what its audit records are if it is written.
struct Applied {
    id: GrantId,
    result: Result<Grant>,
    drafts: Vec<AuditDraft>,
    at: Timestamp,
    reply: oneshot::Sender<Result<Grant>>,
}

/// Runs a batch's grant updates together (see the module's notes), at most one a grant.
/// `Err` when the transaction is lost (a load or a savepoint failed): every update then
/// fails with it.
async fn update_together(
    conn: &mut Db,
    cx: &Ctx,
    updates: Vec<Update>,
) -> std::result::Result<Vec<Box<dyn Done>>, (String, Vec<Box<dyn Done>>)> {
    let fail_all = |why: String, replies: Vec<oneshot::Sender<Result<Grant>>>| {
        let done = replies
            .into_iter()
            .map(|reply| {
                Box::new(Ran {
                    result: Err(StoreError::CommitFailed(why.clone())),
                    reply,
                }) as Box<dyn Done>
            })
            .collect();
        (why, done)
    };
    let ids: Vec<&GrantId> = updates.iter().map(|u| &u.id).collect();
    // Outside any savepoint: undoing one on PostgreSQL would release the row locks taken
    // after it. A failed load leaves the transaction unusable anyway.
    let current = match bulk::lock_grants(conn, cx.backend, &ids).await {
        Ok(found) => found,
        Err(e) => {
            let replies = updates.into_iter().map(|u| u.reply).collect();
            return Err(fail_all(format!("loading grants: {e}"), replies));
        }
    };
    let mut applied = Vec::with_capacity(updates.len());
    for Update {
        id,
        update,
        clock,
        reply,
    } in updates
    {
        let mut drafts = Vec::new();
        let result = match current.get(id.as_str()) {
            None => Err(bulk::missing(&id)),
            Some(grant) => {
                let mut next = grant.clone();
                match update(&mut next) {
                    Ok(d) => {
                        drafts = d;
                        // Addressed by the id it was loaded with; the closure cannot move it.
                        next.id = id.clone();
                        Ok(next)
                    }
                    Err(e) => Err(e.into()),
                }
            }
        };
        applied.push(Applied {
            id,
            result,
            drafts,
            at: clock.now(),
            reply,
        });
    }
    let written: Vec<&Grant> = applied
        .iter()
        .filter_map(|a| a.result.as_ref().ok())
        .collect();
    let mut failed: HashMap<String, String> = HashMap::new();
    // Activations change only a grant's state: then only the state columns are set, and
    // SQLite leaves the indexes over the others alone.
    let state_only = written.iter().all(|g| {
        current.get(g.id.as_str()).is_some_and(|loaded| {
            let mut probe = loaded.clone();
            probe.state = g.state.clone();
            probe.sealed_secret.clone_from(&g.sealed_secret);
            probe == **g
        })
    });
    let together = match conn.run("SAVEPOINT kairos_update").await {
        Ok(_) if state_only => bulk::update_grant_states(conn, cx.backend, &written).await,
        Ok(_) => bulk::update_grants(conn, cx.backend, &written).await,
        Err(e) => {
            let replies = applied.into_iter().map(|a| a.reply).collect();
            return Err(fail_all(format!("opening a savepoint: {e}"), replies));
        }
    };
    let closed = match together {
        Ok(()) => conn
            .run("RELEASE SAVEPOINT kairos_update")
            .await
            .map(|_| ()),
        Err(e) => {
            tracing::debug!(error = %e, "a batch's grant updates failed together; writing each");
            let undone = match conn.run("ROLLBACK TO SAVEPOINT kairos_update").await {
                Ok(_) => conn
                    .run("RELEASE SAVEPOINT kairos_update")
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            };
            match undone {
                Ok(()) => write_each(conn, &written, &mut failed).await,
                Err(e) => Err(e),
            }
        }
    };
    if let Err(e) = closed {
        let replies = applied.into_iter().map(|a| a.reply).collect();
        return Err(fail_all(format!("closing a savepoint: {e}"), replies));
    }
    Ok(applied
        .into_iter()
        .map(|a| {
            let result = match (a.result, failed.get(a.id.as_str())) {
                (Ok(_), Some(why)) => Err(StoreError::CommitFailed(why.clone())),
                (Ok(grant), None) => {
                    cx.audit(a.drafts, a.at);
                    Ok(grant)
                }
                (Err(e), _) => Err(e),
            };
            Box::new(Ran {
                result,
                reply: a.reply,
            }) as Box<dyn Done>
        })
        .collect())
}

/// Writes each grant in its own savepoint; a grant the database refuses is named in
/// `failed` with why. `Err` only when a savepoint itself fails.
async fn write_each(
    conn: &mut Db,
    grants_to_write: &[&Grant],
    failed: &mut HashMap<String, String>,
) -> std::result::Result<(), String> {
    for grant in grants_to_write {
        conn.run("SAVEPOINT kairos_update").await?;
        match grants::write(conn, &grant.id, grant).await {
            Ok(()) => {}
            Err(e) => {
                failed.insert(
                    grant.id.as_str().to_owned(),
                    format!("writing grant {}: {e}", grant.id),
                );
                conn.run("ROLLBACK TO SAVEPOINT kairos_update").await?;
            }
        }
        conn.run("RELEASE SAVEPOINT kairos_update").await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use kairos_domain::{AuditKind, Principal, verify_chain};

    use super::*;
    use crate::Store;
    use crate::sql::SqlStore;

    fn draft(tag: &str) -> AuditDraft {
        AuditDraft::new(AuditKind::Requested, Principal::System("test")).task_ref(tag)
    }

    /// Writes that ran in one batch: the drafts of the ones that failed — even drafts
    /// handed over before the failure — are not sealed; the others' are, in one chain.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_takes_its_audit_records_back() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("kairos.db").display());
        let store = SqlStore::connect(&url).await.unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..40 {
            let store = store.clone();
            tasks.spawn(async move {
                let fail = i % 4 == 0;
                let tag = format!("w{i}");
                let result = store
                    .write(move |_conn, cx| {
                        Box::pin(async move {
                            cx.audit(vec![draft(&tag), draft(&tag)], cx.clock.now());
                            if fail {
                                Err(StoreError::Conflict(format!("{tag} refused")))
                            } else {
                                Ok(())
                            }
                        })
                    })
                    .await;
                (i, result.is_ok())
            });
        }
        while let Some(done) = tasks.join_next().await {
            let (i, ok) = done.unwrap();
            assert_eq!(ok, i % 4 != 0, "write {i}");
        }
        let records = store.audit_page(0, 1_000).await.unwrap();
        assert_eq!(verify_chain(&records).unwrap(), 60);
        for r in &records {
            let n: usize = r.task_ref.as_deref().unwrap()[1..].parse().unwrap();
            assert_ne!(n % 4, 0, "record of a failed write {n} was sealed");
        }
        assert_eq!(store.audit_head_mismatch(60).await.unwrap(), None);
        store.close().await;
    }
}
