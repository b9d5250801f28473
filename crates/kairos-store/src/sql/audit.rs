//! The audit chain: sealed at the end of each write batch (see `writer`), read page by page.

use kairos_domain::{AuditDraft, AuditRecord, Timestamp};
use sqlx::Row;

use super::codec::Columns;
use super::db::{Db, RunIn};

use super::codec::{AUDIT_COLUMNS, INSERT_AUDIT, audit_from_row, bind_audit};
use super::filter::Filter;
use super::{Backend, SqlStore, bulk};
use crate::{AuditFilter, Result, StoreError};

/// The chain's head: the last record's `seq` and hash.
pub(crate) type Head = (i64, String);

/// Seals a batch's drafts after the chain's head, in order, and stores them. Returns the
/// new head.
///
/// `known` is the head as this writer last committed it. The head row moves only with a
/// compare-and-set on that value (under the row's lock on PostgreSQL, inside the write
/// transaction on SQLite); if another writer (a replica, another process) moved it since,
/// the head is read under the lock and the drafts are sealed again after it. So concurrent
/// appenders queue up behind the one head row and the chain never forks (`seq` is the
/// primary key; the hash columns carry no unique index, see migration 0002, and `kairos
/// audit verify` checks every link). The writer seals after the batch's last write, so the
/// head is always the last lock taken and is held only until the commit.
pub(super) async fn seal(
    conn: &mut Db,
    backend: Backend,
    drafts: Vec<(AuditDraft, Timestamp)>,
    known: Option<Head>,
) -> Result<Option<Head>> {
    if drafts.is_empty() {
        return Ok(known);
    }
    let moved = match known {
        Some((seq, hash)) if backend == Backend::Postgres && drafts.len() <= bulk::CHUNK => {
            let known = (seq, hash);
            let (records, head) = seal_after(&drafts, known.0, known.1.clone())?;
            if bulk::insert_sealed(conn, &[], &[], records, &head, &known).await? {
                return Ok(Some(head));
            }
            true
        }
        Some((seq, hash)) => {
            let (records, head) = seal_after(&drafts, seq, hash.clone())?;
            let swapped = sqlx::query(
                "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1 AND seq = $3 AND hash = $4",
            )
            .bind(head.0)
            .bind(head.1.clone())
            .bind(seq)
            .bind(hash)
            .execute_in(&mut *conn)
            .await?;
            if swapped == 1 {
                insert(conn, backend, records).await?;
                return Ok(Some(head));
            }
            true
        }
        None => false,
    };
    if moved {
        tracing::debug!("the audit chain's head moved under this writer; re-reading it");
    }
    let row = sqlx::query(&format!(
        "SELECT seq, hash FROM audit_head WHERE id = 1{}",
        backend.lock_clause()
    ))
    .fetch_one_in(&mut *conn)
    .await?;
    let (records, head) = seal_after(&drafts, row.int("seq")?, row.text("hash")?)?;
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(head.0)
        .bind(head.1.clone())
        .execute_in(&mut *conn)
        .await?;
    insert(conn, backend, records).await?;
    Ok(Some(head))
}

/// The drafts sealed after `(seq, hash)`, and the head they end at.
pub(super) fn seal_after(
    drafts: &[(AuditDraft, Timestamp)],
    mut seq: i64,
    mut prev_hash: String,
) -> Result<(Vec<AuditRecord>, Head)> {
    let mut records = Vec::with_capacity(drafts.len());
    for (draft, at) in drafts {
        seq = seq.checked_add(1).ok_or_else(|| StoreError::Corrupt {
            id: "audit_head".into(),
            problem: "sequence exhausted".into(),
        })?;
        let record = draft.clone().seal(seq, *at, prev_hash);
        prev_hash = record.hash.clone();
        records.push(record);
    }
    Ok((records, (seq, prev_hash)))
}

async fn insert(conn: &mut Db, backend: Backend, records: Vec<AuditRecord>) -> Result<()> {
    bulk::insert_rows(
        conn,
        backend,
        INSERT_AUDIT,
        AUDIT_COLUMNS,
        &records,
        |q, r: &AuditRecord| Ok(bind_audit(q, r.clone())),
    )
    .await
}

/// Locks the chain's head row until the transaction ends (PostgreSQL; a no-op read on
/// SQLite, whose write transaction already excludes other writers): for writes that must
/// serialize across replicas on more than the chain.
pub(super) async fn lock_head(conn: &mut Db, backend: Backend) -> Result<()> {
    sqlx::query(&format!(
        "SELECT seq FROM audit_head WHERE id = 1{}",
        backend.lock_clause()
    ))
    .fetch_one_in(&mut *conn)
    .await?;
    Ok(())
}

/// Newest first.
pub(super) async fn list(store: &SqlStore, f: &AuditFilter) -> Result<Vec<AuditRecord>> {
    let (sql, filter) = list_query(f);
    let rows = filter
        .bind(sqlx::query(&sql))
        .fetch_all(&store.reads)
        .await?;
    rows.iter().map(audit_from_row).collect()
}

/// The query of [`list`] and the values it binds.
pub(super) fn list_query(f: &AuditFilter) -> (String, Filter) {
    let mut filter = Filter::default();
    filter
        .text("identity =", f.identity.as_ref())
        // A grant's records, and those of the request that issued it and of the renewals
        // that waited for approvals (`requested`, `decided`, `approved`, ...), which name
        // the request only.
        .text_each(
            "(grant_id = {} \
             OR request_id IN (SELECT request_id FROM grants WHERE id = {}) \
             OR request_id IN (SELECT id FROM requests WHERE renews = {}))",
            f.grant_id.as_ref(),
        )
        .text("request_id =", f.request_id.as_ref())
        .text("task_ref =", f.task_ref.as_ref())
        .int("at >=", f.since.map(Timestamp::as_millis))
        .int("at <", f.until.map(Timestamp::as_millis))
        .int("seq <", f.before_seq);
    let sql = format!(
        "SELECT {AUDIT_COLUMNS} FROM audit{}",
        filter.tail("seq DESC", f.limit)
    );
    (sql, filter)
}

pub(super) async fn page(store: &SqlStore, after_seq: i64, limit: u32) -> Result<Vec<AuditRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {AUDIT_COLUMNS} FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2"
    ))
    .bind(after_seq)
    .bind(i64::from(limit))
    .fetch_all(&store.reads)
    .await?;
    rows.iter().map(audit_from_row).collect()
}

/// The chain's last `seq` as its head row says (see `Store::audit_last_seq`).
pub(super) async fn last_seq(store: &SqlStore) -> Result<i64> {
    let head = sqlx::query("SELECT seq FROM audit_head WHERE id = 1")
        .fetch_one(&store.reads)
        .await?;
    Ok(head.try_get("seq")?)
}

/// Compares the end of a walk with the head row (see `Store::audit_head_mismatch`).
pub(super) async fn head_mismatch(store: &SqlStore, last_seq: i64) -> Result<Option<String>> {
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_one(&store.reads)
        .await?;
    let head_seq: i64 = head.try_get("seq")?;
    let head_hash: String = head.try_get("hash")?;
    if head_seq < last_seq {
        return Ok(Some(format!(
            "the chain head says the chain ends at record {head_seq}, but record {last_seq} \
             exists: records were added outside Kairos or the head was edited"
        )));
    }
    if head_seq == 0 {
        return Ok(None);
    }
    let last = sqlx::query("SELECT hash FROM audit WHERE seq = $1")
        .bind(head_seq)
        .fetch_optional(&store.reads)
        .await?;
    Ok(match last {
        None => Some(format!(
            "the chain should end at record {head_seq} but ends at record {last_seq}: \
             records were deleted from its end"
        )),
        Some(row) if row.try_get::<String, _>("hash")? != head_hash => Some(format!(
            "record {head_seq} does not match the chain head: the end of the chain was rewritten"
        )),
        Some(_) => None,
    })
}
