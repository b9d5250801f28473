//! [`SqlStore`]: the [`Store`] on sqlx's `Any` driver. One implementation and one set of SQL
//! text serve SQLite and PostgreSQL: placeholders are `$1, $2, …` (SQLite reads them as
//! numbered parameters), values are `i64`/`String`/`Option`, times are milliseconds, JSON
//! and enums are TEXT. The two backends differ only in the few places [`Backend`] names:
//! how a transaction begins and whether rows can be locked.

mod admin;
mod audit;
mod bulk;
mod codec;
mod db;
mod direct;
mod dpop;
mod filter;
mod governance;
mod grants;
mod lease;
mod lifecycle;
mod notify;
mod posture;
mod recert;
mod requests;
mod reviews;
mod sessions;
mod sets;
mod ssh;
mod usage;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kairos_domain::{
    AuditDraft, AuditRecord, Clock, EndReason, Grant, GrantEnd, GrantId, Principal, Receipt,
    Request, RequestId, SystemClock, Timestamp, UserName,
};
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

use db::Db;

use crate::{
    AuditFilter, Counts, EndSelector, GrantFilter, GrantUpdate, RequestFilter, RequestUpdate,
    Result, Store, StoreError, StoredConfig, StoredKey, StoredToken, User,
};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// How long a SQLite writer waits for another process holding the database lock.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 5_000;
const POSTGRES_POOL_SIZE: u32 = 10;
/// How long a read or a write waits for a PostgreSQL connection. While PostgreSQL is down
/// (sqlx retries a refused connection until then) this is how long a caller waits for its
/// 503 `store_unavailable`.
const POSTGRES_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

use writer::{BoxFuture, Ctx, Writer};

/// Which database is behind the `Any` pool: the only place SQL text may differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }

    /// SQLite takes the write lock up front, so a transaction that reads and then writes
    /// never fails to upgrade when another process writes the same file.
    fn begin_statement(self) -> &'static str {
        match self {
            Self::Sqlite => "BEGIN IMMEDIATE",
            Self::Postgres => "BEGIN",
        }
    }

    /// Appended to a `SELECT` whose rows the transaction will write. SQLite has no row
    /// locks and needs none: its write transaction already excludes every other writer.
    fn lock_clause(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => " FOR UPDATE",
        }
    }

    /// `state`, as a condition that no index serves: on SQLite a unary `+`, so the planner
    /// does not walk every grant in a state through `grants_state_issued` where an
    /// identity or task reference index finds the few it wants (without statistics it
    /// prefers the state index). PostgreSQL plans from its statistics, and has no unary
    /// `+` for text.
    fn state_unindexed(self) -> &'static str {
        match self {
            Self::Sqlite => "+state",
            Self::Postgres => "state",
        }
    }

    /// The grants table as the expirer reads it, by expiry: on SQLite through the partial
    /// index `grants_active_expiry`, named, because without statistics the planner takes
    /// `grants_state_issued` for `state = 'active'`, walks every active grant and sorts
    /// them all to find the few due. PostgreSQL plans from its statistics.
    fn grants_by_expiry(self) -> &'static str {
        match self {
            Self::Sqlite => "grants INDEXED BY grants_active_expiry",
            Self::Postgres => "grants",
        }
    }

    /// As [`Self::lock_clause`], for work queues: rows another replica holds are skipped.
    fn skip_locked_clause(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// Parameter `n` of a generated multi-row statement (see `bulk::values`): `$n`, or on
    /// SQLite a plain `?`, bound in order.
    fn placeholder(self, n: usize) -> String {
        match self {
            Self::Sqlite => "?".to_owned(),
            Self::Postgres => format!("${n}"),
        }
    }

    fn migrator(self) -> &'static Migrator {
        match self {
            Self::Sqlite => &SQLITE_MIGRATIONS,
            Self::Postgres => &POSTGRES_MIGRATIONS,
        }
    }
}

/// The Kairos store on SQLite (`sqlite://PATH`) or PostgreSQL (`postgres://…`).
///
/// Cheap to clone: clones share one pool.
#[derive(Debug, Clone)]
pub struct SqlStore {
    /// The writer's connection (SQLite: the only writable one) and, on PostgreSQL, reads.
    pool: AnyPool,
    /// Every write goes through it: group commit (see [`writer`]).
    writer: Writer,
    /// Plain reads. On SQLite a few read-only connections beside the writer (WAL lets them
    /// read committed data while it writes); on PostgreSQL the same pool.
    reads: AnyPool,
    /// SQLite: the hottest point reads on the caller's thread (see [`direct`]).
    direct: Option<Arc<direct::DirectReads>>,
    backend: Backend,
    /// The time of audit records whose operation carries none (see [`Self::with_clock`]).
    clock: Arc<dyn Clock>,
}

impl SqlStore {
    /// Opens the store and brings its schema up to date.
    ///
    /// `sqlite://PATH` creates the file if missing and writes through one connection (WAL,
    /// `synchronous=FULL`, foreign keys on), so writers never contend inside a process;
    /// plain reads go through a few read-only connections beside it.
    /// `postgres://…` uses a pool; row locks keep several replicas correct.
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let (backend, url) = parse_url(url)?;
        let pool = match backend {
            Backend::Sqlite => {
                if let Some(path) = sqlite_file(&url) {
                    private_files(&path, url.contains("mode=rwc"))?;
                }
                AnyPoolOptions::new()
                    .max_connections(1)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA synchronous = FULL").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            // Savepoints (one per write of a batch) keep their undo pages
                            // in a sub-journal: in memory, not a temporary file on disk.
                            conn.execute("PRAGMA temp_store = MEMORY").await?;
                            conn.execute(
                                format!("PRAGMA cache_size = -{SQLITE_CACHE_KIB}").as_str(),
                            )
                            .await?;
                            conn.execute(
                                format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}").as_str(),
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(POSTGRES_POOL_SIZE)
                    .acquire_timeout(POSTGRES_ACQUIRE_TIMEOUT)
                    .connect(&url)
                    .await?
            }
        };
        backend
            .migrator()
            .run(&pool)
            .await
            .map_err(StoreError::Migration)?;
        let (reads, direct) = match backend {
            Backend::Sqlite => match sqlite_readers(&url).await? {
                Some(readers) => {
                    let direct = direct::DirectReads::for_url(&url).map(Arc::new);
                    if let Some(d) = &direct {
                        d.check()?;
                    }
                    (readers, direct)
                }
                None => (pool.clone(), None),
            },
            Backend::Postgres => (pool.clone(), None),
        };
        // On a SQLite file the writer runs SQLite on its own thread (see `db`).
        let source = match (backend, sqlite_file(&url)) {
            (Backend::Sqlite, Some(path)) => writer::Source::SqliteFile(path),
            _ => writer::Source::Pool(pool.clone()),
        };
        tracing::debug!(backend = backend.name(), "store opened");
        Ok(Self {
            writer: Writer::start(source, backend)?,
            pool,
            reads,
            direct,
            backend,
            clock: Arc::new(SystemClock),
        })
    }

    /// Uses `clock` for the time of audit records whose operation passes no time
    /// (`update_request`, `update_grant`, `fail_revocation`, `append_audit`). The system
    /// clock by default.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Closes every connection; further calls fail.
    pub async fn close(&self) {
        self.writer.stop().await;
        self.reads.close().await;
        self.pool.close().await;
    }

    /// Runs `f` as one write: in a transaction shared with other concurrent writes (group
    /// commit), answered once it has committed. An `Err` from `f` undoes only `f`.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        F: for<'c> FnOnce(&'c mut Db, Ctx) -> BoxFuture<'c, Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        self.writer.write(Arc::clone(&self.clock), f).await
    }
}

/// Read-only connections to the same SQLite file, opened after the writer has created it
/// and set WAL. None where the URL names its own mode (in-memory URLs are refused earlier).
async fn sqlite_readers(url: &str) -> Result<Option<AnyPool>> {
    if !url.contains("mode=rwc") {
        return Ok(None);
    }
    let ro = url.replace("mode=rwc", "mode=ro");
    let pool = AnyPoolOptions::new()
        .max_connections(SQLITE_READERS)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute(format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}").as_str())
                    .await?;
                Ok(())
            })
        })
        .connect(&ro)
        .await?;
    Ok(Some(pool))
}

/// The file of a `sqlite://PATH?…` URL; None for a path the rusqlite connections would
/// have to decode (sqlx's pool serves those). In-memory URLs never get here (`parse_url`).
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let path = url.strip_prefix("sqlite://")?.split('?').next()?;
    if path.is_empty() || path.contains(['%', '#']) {
        return None;
    }
    Some(std::path::PathBuf::from(path))
}

/// Makes the SQLite file and its WAL and shared-memory files readable by their owner
/// only (0600), whatever the umask: it creates the file so (when `create`) before SQLite
/// opens it — SQLite creates `-wal` and `-shm` with the database file's mode — and
/// tightens files an earlier run left with a looser mode.
fn private_files(path: &std::path::Path, create: bool) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let private = |p: &std::path::Path, e: std::io::Error| StoreError::Private {
            path: p.display().to_string(),
            source: e,
        };
        if create && !path.exists() {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(private(path, e)),
            }
        }
        let mut files = vec![path.to_path_buf()];
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            files.push(std::path::PathBuf::from(name));
        }
        for file in files {
            match std::fs::metadata(&file) {
                Ok(meta) if meta.permissions().mode() & 0o777 != 0o600 => {
                    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                        .map_err(|e| private(&file, e))?;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(private(&file, e)),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (path, create);
    Ok(())
}

/// The writer's page cache: index pages of a large store stay in memory instead of
/// being read back from the file for every batch (SQLite's default is 2 MiB).
const SQLITE_CACHE_KIB: u32 = 64 * 1024;

/// Read-only SQLite connections beside the single writer.
const SQLITE_READERS: u32 = 4;

/// Checks the scheme; for SQLite adds `mode=rwc` (create if missing) unless a mode is given.
fn parse_url(url: &str) -> Result<(Backend, String)> {
    if let Some(rest) = url.strip_prefix("sqlite://") {
        let path = rest.split('?').next().unwrap_or_default();
        // An in-memory store would lose every grant at exit (and its readers would each
        // see a database of their own): refused, as any URL without a file path.
        if path.is_empty() || path.contains(":memory:") || rest.contains("mode=memory") {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        }
        let url = if rest.contains("mode=") {
            url.to_owned()
        } else if rest.contains('?') {
            format!("{url}&mode=rwc")
        } else {
            format!("{url}?mode=rwc")
        };
        Ok((Backend::Sqlite, url))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok((Backend::Postgres, url.to_owned()))
    } else {
        // Never echo the rest: a URL may carry a password.
        let shown = match url.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://…"),
            None => url.chars().take(32).collect(),
        };
        Err(StoreError::UnsupportedUrl(shown))
    }
}

/// A unique-constraint violation becomes [`StoreError::Conflict`] with `sentence`.
fn conflict(e: StoreError, sentence: impl FnOnce() -> String) -> StoreError {
    let unique = match &e {
        StoreError::Backend(e) => e
            .as_database_error()
            .is_some_and(|db| db.is_unique_violation()),
        // What sqlx counts as a unique violation on SQLite (the writer's rusqlite path).
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(failure, _)) => matches!(
            failure.extended_code,
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        ),
        _ => false,
    };
    if unique {
        StoreError::Conflict(sentence())
    } else {
        e
    }
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        self.backend.name()
    }

    async fn insert_request(
        &self,
        request: &Request,
        grant: Option<&Grant>,
        audit: Vec<AuditDraft>,
    ) -> Result<()> {
        requests::insert(self, request, grant, audit).await
    }

    async fn get_request(&self, id: &RequestId) -> Result<Option<Request>> {
        requests::get(self, id).await
    }

    async fn list_requests(&self, filter: &RequestFilter) -> Result<Vec<Request>> {
        requests::list(self, filter).await
    }

    async fn update_request(&self, id: &RequestId, update: RequestUpdate) -> Result<Request> {
        requests::update(self, id, update).await
    }

    async fn expire_pending_requests(&self, now: Timestamp, limit: u32) -> Result<Vec<Request>> {
        requests::expire_pending(self, now, limit).await
    }

    async fn get_grant(&self, id: &GrantId) -> Result<Option<Grant>> {
        grants::get(self, id).await
    }

    async fn list_grants(&self, filter: &GrantFilter) -> Result<Vec<Grant>> {
        grants::list(self, filter).await
    }

    async fn update_grant(&self, id: &GrantId, update: GrantUpdate) -> Result<Grant> {
        grants::update(self, id, update).await
    }

    async fn claim_delivery(&self, id: &GrantId, at: Timestamp, audit: AuditDraft) -> Result<bool> {
        grants::claim_delivery(self, id, at, audit).await
    }

    async fn end_grants(&self, selector: &EndSelector, end: &GrantEnd) -> Result<Vec<Grant>> {
        grants::end(self, selector, end, grants::Queueing::default()).await
    }

    async fn end_grants_claiming_tokens(
        &self,
        selector: &EndSelector,
        end: &GrantEnd,
        claimed_until: Timestamp,
    ) -> Result<Vec<Grant>> {
        let queueing = grants::Queueing {
            note: None,
            claim_tokens_until: Some(claimed_until),
        };
        grants::end(self, selector, end, queueing).await
    }

    async fn end_grants_noted(
        &self,
        selector: &EndSelector,
        end: &GrantEnd,
        note: &str,
    ) -> Result<Vec<Grant>> {
        let queueing = grants::Queueing {
            note: Some(note),
            claim_tokens_until: None,
        };
        grants::end(self, selector, end, queueing).await
    }

    async fn next_expiry(&self) -> Result<Option<Timestamp>> {
        grants::next_expiry(self).await
    }

    async fn claim_revocations_except(
        &self,
        now: Timestamp,
        limit: u32,
        lease_ms: i64,
        busy: &[kairos_domain::TargetName],
    ) -> Result<Vec<Grant>> {
        grants::claim_revocations(self, now, limit, lease_ms, busy).await
    }

    async fn extend_revocation_claims(&self, ids: &[GrantId], until: Timestamp) -> Result<u64> {
        grants::extend_revocation_claims(self, ids, until).await
    }

    async fn complete_revocation(&self, id: &GrantId, receipt: &Receipt) -> Result<Grant> {
        grants::complete_revocation(self, id, receipt).await
    }

    async fn complete_revocations(
        &self,
        done: Vec<(GrantId, Receipt)>,
    ) -> Result<Vec<Result<Grant>>> {
        grants::complete_revocations(self, done).await
    }

    async fn fail_revocation(
        &self,
        id: &GrantId,
        error: &str,
        retry_at: Timestamp,
    ) -> Result<Grant> {
        grants::fail_revocation(self, id, error, retry_at).await
    }

    async fn counts(&self) -> Result<Counts> {
        grants::counts(self).await
    }

    async fn failing_revocations(&self, min_attempts: u32) -> Result<u64> {
        grants::failing_revocations(self, min_attempts).await
    }

    async fn failing_targets(
        &self,
        min_attempts: u32,
    ) -> Result<Vec<(kairos_domain::TargetName, u32)>> {
        grants::failing_targets(self, min_attempts).await
    }

    async fn retry_target_now(
        &self,
        target: &kairos_domain::TargetName,
        now: Timestamp,
    ) -> Result<u64> {
        grants::retry_target_now(self, target, now).await
    }

    async fn append_audit(&self, audit: Vec<AuditDraft>) -> Result<()> {
        self.write(move |conn, cx| {
            Box::pin(async move {
                let _ = conn;
                cx.audit(audit, cx.clock.now());
                Ok(())
            })
        })
        .await
    }

    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
        audit::list(self, filter).await
    }

    async fn audit_page(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditRecord>> {
        audit::page(self, after_seq, limit).await
    }

    async fn audit_last_seq(&self) -> Result<i64> {
        audit::last_seq(self).await
    }

    async fn audit_head_mismatch(&self, last_seq: i64) -> Result<Option<String>> {
        audit::head_mismatch(self, last_seq).await
    }

    async fn catalog_stamp(&self) -> Result<crate::CatalogStamp> {
        admin::catalog_stamp(self).await
    }

    async fn readiness(&self) -> Result<crate::StoreReadiness> {
        admin::readiness(self, self.backend.migrator()).await
    }

    async fn signing_keys(&self) -> Result<Vec<StoredKey>> {
        admin::signing_keys(self).await
    }

    async fn insert_first_key(&self, key: &StoredKey) -> Result<bool> {
        admin::insert_first_key(self, key).await
    }

    async fn rotate_key(
        &self,
        key: &StoredKey,
        retire_until: Timestamp,
        audit: AuditDraft,
    ) -> Result<()> {
        admin::rotate_key(self, key, retire_until, audit).await
    }

    async fn prune_keys(&self, now: Timestamp) -> Result<u64> {
        admin::prune_keys(self, now).await
    }

    async fn create_user(&self, user: &User, token: &StoredToken, audit: AuditDraft) -> Result<()> {
        admin::create_user(self, user, token, audit).await
    }

    async fn put_bootstrap_token(
        &self,
        user: &User,
        token: &StoredToken,
        audit: AuditDraft,
    ) -> Result<crate::BootstrapOutcome> {
        admin::put_bootstrap_token(self, user, token, audit).await
    }

    async fn get_user(&self, name: &UserName) -> Result<Option<User>> {
        admin::get_user(self, name).await
    }

    async fn has_live_admin(&self) -> Result<bool> {
        admin::has_live_admin(self).await
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        admin::list_users(self).await
    }

    async fn find_token(&self, token_id: &str) -> Result<Option<(StoredToken, User)>> {
        admin::find_token(self, token_id).await
    }

    async fn revoke_user_tokens(
        &self,
        name: &UserName,
        now: Timestamp,
        audit: AuditDraft,
    ) -> Result<u64> {
        admin::revoke_user_tokens(self, name, now, audit).await
    }

    async fn current_config(&self) -> Result<Option<StoredConfig>> {
        admin::current_config(self).await
    }

    async fn save_config(
        &self,
        bundle_json: &str,
        now: Timestamp,
        audit: AuditDraft,
    ) -> Result<i64> {
        admin::save_config(self, bundle_json, now, audit).await
    }

    async fn save_config_ending(
        &self,
        bundle_json: &str,
        now: Timestamp,
        audit: AuditDraft,
        ending: &[(GrantId, EndReason)],
        by: &Principal,
    ) -> Result<(i64, Vec<Grant>)> {
        // One end per reason, in a stable order; all in the transaction that saves.
        let mut by_reason: Vec<(EndReason, Vec<GrantId>)> = Vec::new();
        for (id, reason) in ending {
            match by_reason.iter_mut().find(|(r, _)| r == reason) {
                Some((_, ids)) => ids.push(id.clone()),
                None => by_reason.push((*reason, vec![id.clone()])),
            }
        }
        by_reason.sort_by_key(|(r, _)| r.as_str());
        let (bundle_json, by) = (bundle_json.to_owned(), by.clone());
        self.write(move |tx, cx| {
            Box::pin(async move {
                let version = admin::save_config_in(tx, &cx, &bundle_json, now, audit).await?;
                let mut ended = Vec::new();
                for (reason, ids) in by_reason {
                    let end = GrantEnd {
                        reason,
                        by: by.clone(),
                        at: now,
                    };
                    ended.extend(grants::end_in(tx, &cx, &EndSelector::Ids(ids), &end).await?);
                }
                Ok((version, ended))
            })
        })
        .await
    }
}

#[async_trait]
impl crate::GovernanceStore for SqlStore {
    async fn posture_figures(
        &self,
        since: Timestamp,
        now: Timestamp,
    ) -> Result<crate::PostureFigures> {
        posture::posture_figures(self, since, now).await
    }

    async fn fold_posture(&self, keep_from: Timestamp, span: u64) -> Result<u64> {
        posture::fold(self, keep_from, span).await
    }

    async fn identity_states(&self) -> Result<Vec<kairos_governance::IdentityStatus>> {
        governance::identity_states(self).await
    }

    async fn identity_state(
        &self,
        identity: &kairos_domain::IdentityName,
    ) -> Result<Option<kairos_governance::IdentityStatus>> {
        governance::identity_state(self, identity).await
    }

    async fn identity_states_of(
        &self,
        identities: &[kairos_domain::IdentityName],
    ) -> Result<Vec<kairos_governance::IdentityStatus>> {
        governance::identity_states_of(self, identities).await
    }

    async fn change_identity_state(
        &self,
        change: crate::StateChange,
    ) -> Result<Option<Vec<Grant>>> {
        governance::change_identity_state(self, change).await
    }

    async fn raise_alert(
        &self,
        id: &str,
        draft: &kairos_governance::AlertDraft,
        now: Timestamp,
        audit: AuditDraft,
    ) -> Result<crate::Raised> {
        governance::raise_alert(self, id, draft, now, audit).await
    }

    async fn get_alert(&self, id: &str) -> Result<Option<kairos_governance::Alert>> {
        governance::get_alert(self, id).await
    }

    async fn list_alerts(
        &self,
        filter: &crate::AlertFilter,
    ) -> Result<Vec<kairos_governance::Alert>> {
        governance::list_alerts(self, filter).await
    }

    async fn update_alert(
        &self,
        id: &str,
        to: kairos_governance::AlertState,
        by: &str,
        note: &str,
        now: Timestamp,
        audit: AuditDraft,
    ) -> Result<kairos_governance::Alert> {
        governance::update_alert(self, id, to, by, note, now, audit).await
    }

    async fn resolve_alert_by_key(
        &self,
        dedupe_key: &str,
        by: &str,
        note: &str,
        now: Timestamp,
        audit: AuditDraft,
    ) -> Result<Option<kairos_governance::Alert>> {
        governance::resolve_alert_by_key(self, dedupe_key, by, note, now, audit).await
    }

    async fn unresolved_alert_counts(&self) -> Result<Vec<(kairos_governance::AlertKind, u64)>> {
        governance::unresolved_alert_counts(self).await
    }
}

/// The hot queries read the indexes meant for them (SQLite's plan; a query rewritten so
/// that a partial index no longer applies would scan the table instead, silently).
#[cfg(test)]
mod plans {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::AuditFilter;

    fn plan(conn: &rusqlite::Connection, sql: &str) -> String {
        let mut statement = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let unbound = std::iter::repeat_n(rusqlite::types::Null, statement.parameter_count());
        let details: Vec<String> = statement
            .query_map(rusqlite::params_from_iter(unbound), |row| {
                row.get::<_, String>(3)
            })
            .unwrap()
            .map(|d| d.unwrap())
            .collect();
        details.join("; ")
    }

    #[tokio::test]
    async fn hot_queries_use_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kairos.db");
        let store = SqlStore::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();

        let expirer = plan(&conn, &requests::pending_due(Backend::Sqlite));
        assert!(
            expirer.contains("USING INDEX requests_pending_until"),
            "{expirer}"
        );
        let by_grant = AuditFilter {
            grant_id: Some("grt_1".into()),
            limit: Some(50),
            ..AuditFilter::default()
        };
        let (sql, _) = audit::list_query(&by_grant);
        let by_grant = plan(&conn, &sql);
        assert!(by_grant.contains("USING INDEX audit_grant"), "{by_grant}");
        // The posture's live grants: the index alone, in identity order (no sort).
        let live = plan(&conn, &posture::live_ms(Backend::Sqlite));
        assert!(
            live.contains("USING COVERING INDEX grants_live_identity"),
            "{live}"
        );
        assert!(!live.contains("TEMP B-TREE"), "{live}");
        // Ending an identity's or a task's grants: their own index, not every active grant.
        let task = plan(&conn, &grants::active_of(Backend::Sqlite, "task_ref"));
        assert!(task.contains("USING INDEX grants_task_ref"), "{task}");
        let identity = plan(&conn, &grants::active_of(Backend::Sqlite, "identity"));
        assert!(identity.contains("INDEX grants_identity"), "{identity}");
        // Verified grants after the fold's watermark: a range of their own index, not of
        // the whole chain.
        let tail = plan(&conn, posture::VERIFIED_SINCE);
        assert!(
            tail.contains("SEARCH a USING INDEX audit_verified"),
            "{tail}"
        );
        // The expirer: a range of the partial index by expiry, not every active grant
        // (through the state index) sorted.
        for sql in [
            grants::expired_by(Backend::Sqlite),
            grants::next_expiry_query(Backend::Sqlite),
        ] {
            let by_expiry = plan(&conn, &sql);
            assert!(
                by_expiry.contains("INDEX grants_active_expiry (expires_at<?)")
                    || by_expiry.contains("COVERING INDEX grants_active_expiry"),
                "{by_expiry}"
            );
            assert!(!by_expiry.contains("grants_state_issued"), "{by_expiry}");
        }
        store.close().await;
    }
}
