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
//! the ones before it (the audit chain's head moves write by write); across processes the
//! usual locks (SQLite's write lock, PostgreSQL's row locks) still apply.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Executor};
use tokio::sync::{mpsc, oneshot, watch};

use super::Backend;
use crate::{Result, StoreError};

/// A boxed future borrowing the writer's connection.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The most writes committed together. Large enough to absorb a burst from many
/// concurrent callers, small enough that a batch's transaction stays short.
const MAX_BATCH: usize = 256;

/// Writes waiting for the writer before callers queue on the channel.
const QUEUE: usize = 4_096;

/// What a write sees besides the connection.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub backend: Backend,
    pub clock: Arc<dyn kairos_domain::Clock>,
}

/// One queued write, type-erased.
trait Op: Send {
    fn run<'c>(self: Box<Self>, conn: &'c mut AnyConnection) -> BoxFuture<'c, Box<dyn Done>>;
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
    ctx: Ctx,
    reply: oneshot::Sender<Result<T>>,
}

struct Ran<T> {
    result: Result<T>,
    reply: oneshot::Sender<Result<T>>,
}

impl<F, T> Op for Queued<F, T>
where
    F: for<'c> FnOnce(&'c mut AnyConnection, Ctx) -> BoxFuture<'c, Result<T>> + Send + 'static,
    T: Send + 'static,
{
    fn run<'c>(self: Box<Self>, conn: &'c mut AnyConnection) -> BoxFuture<'c, Box<dyn Done>> {
        let Queued { f, ctx, reply } = *self;
        Box::pin(async move {
            let result = f(conn, ctx).await;
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

/// The handle the store keeps: a queue to the writer task and a way to stop it.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Box<dyn Op>>,
    stop: Arc<watch::Sender<bool>>,
    task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Writer {
    /// Starts the writer task on `pool` (it holds one of its connections while running).
    pub(crate) fn start(pool: AnyPool, backend: Backend) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(pool, backend, jobs, stopped));
        Self {
            queue,
            stop: Arc::new(stop),
            task: Arc::new(Mutex::new(Some(task))),
        }
    }

    /// Runs `f` in the next batch and answers once that batch has committed.
    pub(crate) async fn write<T, F>(&self, ctx: Ctx, f: F) -> Result<T>
    where
        F: for<'c> FnOnce(&'c mut AnyConnection, Ctx) -> BoxFuture<'c, Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let op: Box<dyn Op> = Box::new(Queued { f, ctx, reply });
        self.queue.send(op).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Stops taking writes, finishes the batch in flight and releases the connection.
    pub(crate) async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

async fn run(
    pool: AnyPool,
    backend: Backend,
    mut jobs: mpsc::Receiver<Box<dyn Op>>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut conn: Option<PoolConnection<Any>> = None;
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
            None => match pool.acquire().await {
                Ok(c) => c,
                Err(e) => {
                    let why = format!("no connection to the store: {e}");
                    tracing::error!(error = %why, "store writer cannot connect");
                    for op in batch {
                        op.abort(why.clone());
                    }
                    continue;
                }
            },
        };
        match run_batch(&mut c, backend, batch).await {
            Ok(()) => conn = Some(c),
            // The connection's state is unknown: let the pool replace it.
            Err(()) => {
                let _ = c.close().await;
            }
        }
    }
    // Writes queued after the stop are refused by the closed channel.
    jobs.close();
    while let Ok(op) = jobs.try_recv() {
        op.abort("the store is closing".to_owned());
    }
}

/// One transaction for the batch. `Err` when the connection should not be reused.
async fn run_batch(
    conn: &mut AnyConnection,
    backend: Backend,
    batch: Vec<Box<dyn Op>>,
) -> std::result::Result<(), ()> {
    if let Err(e) = conn.execute(backend.begin_statement()).await {
        let why = format!("beginning a transaction: {e}");
        for op in batch {
            op.abort(why.clone());
        }
        return Err(());
    }
    // One write alone needs no savepoint: its error rolls back the whole transaction.
    let single = batch.len() == 1;
    let mut ran: Vec<Box<dyn Done>> = Vec::with_capacity(batch.len());
    let mut broken: Option<String> = None;
    let mut ops = batch.into_iter();
    for op in ops.by_ref() {
        if !single && let Err(e) = conn.execute("SAVEPOINT kairos_write").await {
            broken = Some(format!("opening a savepoint: {e}"));
            op.abort(broken.clone().unwrap_or_default());
            break;
        }
        let done = op.run(conn).await;
        if !single {
            let undo = if done.succeeded() {
                conn.execute("RELEASE SAVEPOINT kairos_write").await
            } else {
                match conn.execute("ROLLBACK TO SAVEPOINT kairos_write").await {
                    Ok(_) => conn.execute("RELEASE SAVEPOINT kairos_write").await,
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
    if let Some(why) = broken {
        for op in ops {
            op.abort(why.clone());
        }
        let _ = conn.execute("ROLLBACK").await;
        for done in ran {
            done.finish(Err(why.clone()));
        }
        return Err(());
    }
    if single && ran.iter().all(|d| !d.succeeded()) {
        let rolled_back = conn.execute("ROLLBACK").await;
        for done in ran {
            done.finish(Ok(()));
        }
        return rolled_back.map(|_| ()).map_err(|_| ());
    }
    match conn.execute("COMMIT").await {
        Ok(_) => {
            for done in ran {
                done.finish(Ok(()));
            }
            Ok(())
        }
        Err(e) => {
            let why = format!("committing: {e}");
            let _ = conn.execute("ROLLBACK").await;
            for done in ran {
                done.finish(Err(why.clone()));
            }
            Err(())
        }
    }
}
