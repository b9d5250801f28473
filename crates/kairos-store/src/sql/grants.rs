//! Grants, their end, and the durable revocation queue.

use std::sync::Arc;

use kairos_domain::{
    AuditDraft, Grant, GrantEnd, GrantId, GrantState, Receipt, TargetName, Timestamp, audit_of,
};
use sqlx::Row;

use super::codec::Columns;
use super::db::{Db, RunIn};

use super::codec::{GRANT_BY_ID, GRANT_COLUMNS, UPDATE_GRANT, bind_grant, grant_from_row};
use super::filter::Filter;
use super::writer::Ctx;
use super::{Backend, SqlStore, bulk, count};
use crate::{Counts, EndSelector, GrantFilter, GrantStateFilter, GrantUpdate, Result, StoreError};

pub(super) async fn get(store: &SqlStore, id: &GrantId) -> Result<Option<Grant>> {
    if let Some(direct) = &store.direct {
        return direct.grant(id);
    }
    let row = sqlx::query(&GRANT_BY_ID)
        .bind(id.as_str())
        .fetch_optional(&store.reads)
        .await?;
    row.as_ref().map(grant_from_row).transpose()
}

/// Newest first.
pub(super) async fn list(store: &SqlStore, f: &GrantFilter) -> Result<Vec<Grant>> {
    let state = f.state.map(|s| match s {
        GrantStateFilter::Provisioning => "provisioning",
        GrantStateFilter::Active => "active",
        GrantStateFilter::Revoking => "ending",
        GrantStateFilter::Ended => "ended",
    });
    // SQLite has no statistics: given a state, it walks the (state, issued_at) index to
    // skip the sort, reading every grant in that state to find one identity's or one
    // task's. Those are few: kept on their own index, it sorts them.
    let state_column = if f.identity.is_some() || f.task_ref.is_some() {
        store.backend.state_unindexed()
    } else {
        "state"
    };
    let mut filter = Filter::default();
    filter
        .text(&format!("{state_column} ="), state)
        .text("identity =", f.identity.as_ref())
        .text("entitlement =", f.entitlement.as_ref())
        .text("task_ref =", f.task_ref.as_ref())
        .text("target =", f.target.as_ref())
        .text("account =", f.account.as_deref())
        .int("issued_at <", f.issued_before.map(Timestamp::as_millis));
    let sql = format!(
        "SELECT {GRANT_COLUMNS} FROM grants{}",
        filter.tail("issued_at DESC, id DESC", f.limit)
    );
    let rows = filter
        .bind(sqlx::query(&sql))
        .fetch_all(&store.reads)
        .await?;
    rows.iter().map(grant_from_row).collect()
}

/// Loads one grant under a row lock.
async fn lock(conn: &mut Db, backend: Backend, id: &GrantId) -> Result<Grant> {
    let row = sqlx::query(&format!(
        "SELECT {GRANT_COLUMNS} FROM grants WHERE id = $1{}",
        backend.lock_clause()
    ))
    .bind(id.as_str())
    .fetch_optional_in(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("grant {id}")))?;
    grant_from_row(&row)
}

pub(super) async fn write(conn: &mut Db, id: &GrantId, grant: &Grant) -> Result<()> {
    bind_grant(sqlx::query(UPDATE_GRANT), id, grant)?
        .execute_in(conn)
        .await?;
    Ok(())
}

/// A read-modify-write of one grant; the writer batches concurrent ones (see
/// [`super::writer::Update`]).
pub(super) async fn update(store: &SqlStore, id: &GrantId, update: GrantUpdate) -> Result<Grant> {
    store
        .writer
        .update(id.clone(), update, Arc::clone(&store.clock))
        .await
}

/// One grant's read-modify-write in the writer's transaction; its audit records at `at`.
pub(super) async fn update_one(
    conn: &mut Db,
    cx: &Ctx,
    id: GrantId,
    update: GrantUpdate,
    at: Timestamp,
) -> Result<Grant> {
    let mut grant = lock(conn, cx.backend, &id).await?;
    let drafts = update(&mut grant)?;
    // The row is addressed by the id it was loaded with; the closure cannot move it.
    write(conn, &id, &grant).await?;
    cx.audit(drafts, at);
    grant.id = id;
    Ok(grant)
}

/// Sets `delivered_at` where it is still NULL: the row lock (PostgreSQL re-checks the
/// condition on the row a concurrent claim committed) or SQLite's one writer lets one
/// claim through. The winner's audit record goes in the same write.
pub(super) async fn claim_delivery(
    store: &SqlStore,
    id: &GrantId,
    at: Timestamp,
    audit: AuditDraft,
) -> Result<bool> {
    let id = id.clone();
    store
        .write(move |conn, cx| {
            Box::pin(async move {
                let claimed = sqlx::query(
                    "UPDATE grants SET delivered_at = $1 \
                     WHERE id = $2 AND account IS NOT NULL AND delivered_at IS NULL",
                )
                .bind(at.as_millis())
                .bind(id.as_str())
                .execute_in(&mut *conn)
                .await?
                    == 1;
                if claimed {
                    cx.audit(vec![audit], at);
                }
                Ok(claimed)
            })
        })
        .await
}

/// What an end writes besides each grant's new state: a person's note in its audit
/// records, and whether its token grants' revocation jobs are queued already claimed.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Queueing<'a> {
    /// A person's reason, kept in each end's audit record beside the end reason.
    pub note: Option<&'a str>,
    /// Token grants' jobs (grants with no downstream account) are queued claimed until
    /// then, for the caller to verify at once.
    pub claim_tokens_until: Option<Timestamp>,
}

pub(super) async fn end(
    store: &SqlStore,
    selector: &EndSelector,
    end: &GrantEnd,
    queueing: Queueing<'_>,
) -> Result<Vec<Grant>> {
    let (selector, end) = (selector.clone(), end.clone());
    let (note, claim_tokens_until) = (
        queueing.note.map(str::to_owned),
        queueing.claim_tokens_until,
    );
    store
        .write(move |conn, cx| {
            Box::pin(async move {
                let queueing = Queueing {
                    note: note.as_deref(),
                    claim_tokens_until,
                };
                end_queueing(conn, &cx, &selector, &end, queueing).await
            })
        })
        .await
}

pub(super) async fn end_in(
    tx: &mut Db,
    cx: &Ctx,
    selector: &EndSelector,
    end: &GrantEnd,
) -> Result<Vec<Grant>> {
    end_queueing(tx, cx, selector, end, Queueing::default()).await
}

/// Ends the grants `selector` matches and queues their revocation jobs as `queueing` says.
async fn end_queueing(
    tx: &mut Db,
    cx: &Ctx,
    selector: &EndSelector,
    end: &GrantEnd,
    queueing: Queueing<'_>,
) -> Result<Vec<Grant>> {
    let Queueing {
        note,
        claim_tokens_until,
    } = queueing;
    let backend = cx.backend;
    let select = format!("SELECT {GRANT_COLUMNS} FROM grants");
    let row_lock = backend.lock_clause();
    let mut grants = match selector {
        EndSelector::One(id) => {
            // One grant may also end before it became active (an aborted provisioning).
            let sql =
                format!("{select} WHERE state IN ('active', 'provisioning') AND id = $1{row_lock}");
            fetch_grants(tx, sqlx::query(&sql).bind(id.as_str())).await?
        }
        // Ordered by id so two overlapping calls take their row locks in the same order.
        EndSelector::Identity(identity) => {
            let sql = active_of(backend, "identity");
            fetch_grants(tx, sqlx::query(&sql).bind(identity.as_str())).await?
        }
        EndSelector::TaskRef(task_ref) => {
            let sql = active_of(backend, "task_ref");
            fetch_grants(tx, sqlx::query(&sql).bind(task_ref.as_str())).await?
        }
        // Served by the partial index grants_active_expiry. Several expirers share the
        // work: each skips the rows another holds.
        EndSelector::ExpiredBy { now, limit } => {
            let sql = expired_by(backend);
            let q = sqlx::query(&sql)
                .bind(now.as_millis())
                .bind(i64::from(*limit));
            fetch_grants(tx, q).await?
        }
        EndSelector::Ids(ids) => {
            let mut sorted: Vec<&GrantId> = ids.iter().collect();
            sorted.sort();
            sorted.dedup();
            let mut found = Vec::with_capacity(sorted.len());
            for chunk in bulk::pieces(&sorted) {
                let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
                let sql = format!(
                    "{select} WHERE state IN ('active', 'provisioning') AND id IN ({}) \
                     ORDER BY id{row_lock}",
                    marks.join(", ")
                );
                let mut q = sqlx::query(&sql);
                for id in chunk {
                    q = q.bind(id.as_str());
                }
                found.extend(fetch_grants(tx, q).await?);
            }
            found
        }
    };
    let mut drafts = Vec::with_capacity(grants.len());
    for grant in &mut grants {
        grant.end(end.clone())?;
        let mut draft = audit_of::end(grant, end);
        if let (Some(note), Some(data)) = (note, draft.data.as_object_mut()) {
            data.insert("note".into(), note.into());
        }
        drafts.push(draft);
    }
    let ended: Vec<&Grant> = grants.iter().collect();
    bulk::update_grant_states(tx, backend, &ended).await?;
    let jobs: Vec<(&GrantId, Timestamp, Option<Timestamp>)> = grants
        .iter()
        .map(|g| {
            let claimed = claim_tokens_until.filter(|_| g.account.is_none());
            (&g.id, end.at, claimed)
        })
        .collect();
    bulk::enqueue(tx, backend, &jobs).await?;
    cx.audit(drafts, end.at);
    Ok(grants)
}

/// The active grants whose `column` (`identity` or `task_ref`) is `$1`, in id order and
/// locked: found through that column's index (see [`Backend::state_unindexed`]).
pub(super) fn active_of(backend: Backend, column: &str) -> String {
    format!(
        "SELECT {GRANT_COLUMNS} FROM grants WHERE {} = 'active' AND {column} = $1 \
         ORDER BY id{}",
        backend.state_unindexed(),
        backend.lock_clause()
    )
}

async fn fetch_grants(conn: &mut Db, q: super::codec::AnyQuery<'_>) -> Result<Vec<Grant>> {
    let rows = q.fetch_all_in(&mut *conn).await?;
    rows.iter().map(grant_from_row).collect()
}

/// Queues (or re-queues) the revocation job of a grant, due at `due_at` and unclaimed.
async fn enqueue(conn: &mut Db, id: &GrantId, due_at: Timestamp) -> Result<()> {
    sqlx::query(
        "INSERT INTO revocations (grant_id, due_at, claimed_until, attempts) \
         VALUES ($1, $2, NULL, 0) \
         ON CONFLICT (grant_id) DO UPDATE SET due_at = excluded.due_at, claimed_until = NULL",
    )
    .bind(id.as_str())
    .bind(due_at.as_millis())
    .execute_in(conn)
    .await?;
    Ok(())
}

/// The active grants expired by `$1`, the earliest first, at most `$2`: a range of the
/// `grants_active_expiry` index, however many grants are active.
pub(super) fn expired_by(backend: Backend) -> String {
    format!(
        "SELECT {GRANT_COLUMNS} FROM {} WHERE state = 'active' AND expires_at <= $1 \
         ORDER BY expires_at, id LIMIT $2{}",
        backend.grants_by_expiry(),
        backend.skip_locked_clause()
    )
}

/// The earliest expiry of an active grant: the first entry of `grants_active_expiry`.
pub(super) fn next_expiry_query(backend: Backend) -> String {
    format!(
        "SELECT expires_at FROM {} WHERE state = 'active' ORDER BY expires_at LIMIT 1",
        backend.grants_by_expiry()
    )
}

pub(super) async fn next_expiry(store: &SqlStore) -> Result<Option<Timestamp>> {
    let row = sqlx::query(&next_expiry_query(store.backend))
        .fetch_optional(&store.reads)
        .await?;
    Ok(row
        .map(|r| r.try_get::<i64, _>("expires_at"))
        .transpose()?
        .map(Timestamp::from_millis))
}

pub(super) async fn claim_revocations(
    store: &SqlStore,
    now: Timestamp,
    limit: u32,
    lease_ms: i64,
    busy: &[TargetName],
) -> Result<Vec<Grant>> {
    let busy: Vec<String> = busy.iter().map(|t| t.as_str().to_owned()).collect();
    store
        .write(move |conn, cx| {
            Box::pin(async move { claim_in(conn, cx.backend, now, limit, lease_ms, &busy).await })
        })
        .await
}

async fn claim_in(
    tx: &mut Db,
    backend: Backend,
    now: Timestamp,
    limit: u32,
    lease_ms: i64,
    busy: &[String],
) -> Result<Vec<Grant>> {
    // Placeholders numbered in the order they appear (SQLite's `?` counts by position):
    // now, now, the busy targets (few: those with a batch still running on this worker),
    // the limit.
    let except = if busy.is_empty() {
        String::new()
    } else {
        format!(
            " AND grant_id NOT IN (SELECT id FROM grants WHERE target IN ({}))",
            bulk::list(backend, 3, busy.len())
        )
    };
    let select = format!(
        "SELECT grant_id FROM revocations \
         WHERE due_at <= {} AND (claimed_until IS NULL OR claimed_until <= {}){except} \
         ORDER BY due_at, grant_id LIMIT {}{}",
        backend.placeholder(1),
        backend.placeholder(2),
        backend.placeholder(3 + busy.len()),
        backend.skip_locked_clause()
    );
    let mut q = sqlx::query(&select)
        .bind(now.as_millis())
        .bind(now.as_millis());
    for target in busy {
        q = q.bind(target.as_str());
    }
    let due = q.bind(i64::from(limit)).fetch_all_in(&mut *tx).await?;
    let claimed_until = now.as_millis().saturating_add(lease_ms.max(0));
    let ids: Vec<String> = due
        .iter()
        .map(|row| row.text("grant_id"))
        .collect::<std::result::Result<_, _>>()?;
    let mut grants = Vec::with_capacity(ids.len());
    // Two statements per chunk of jobs, not two per job.
    for chunk in bulk::pieces(&ids) {
        let list = bulk::list(backend, 2, chunk.len());
        let update = format!(
            "UPDATE revocations SET claimed_until = {}, attempts = attempts + 1 \
             WHERE grant_id IN ({list})",
            backend.placeholder(1)
        );
        let mut q = sqlx::query(&update).bind(claimed_until);
        for id in chunk {
            q = q.bind(id.as_str());
        }
        q.execute_in(&mut *tx).await?;
        let list = bulk::list(backend, 1, chunk.len());
        let select = format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id IN ({list})");
        let mut q = sqlx::query(&select);
        for id in chunk {
            q = q.bind(id.as_str());
        }
        let mut by_id: std::collections::HashMap<String, Grant> = q
            .fetch_all_in(&mut *tx)
            .await?
            .iter()
            .map(|row| grant_from_row(row).map(|g| (g.id.as_str().to_owned(), g)))
            .collect::<Result<_>>()?;
        // In the queue's order (due first).
        for id in chunk {
            let grant = by_id.remove(id).ok_or_else(|| StoreError::Corrupt {
                id: id.clone(),
                problem: "a revocation job whose grant is missing".into(),
            })?;
            grants.push(grant);
        }
    }
    Ok(grants)
}

pub(super) async fn extend_revocation_claims(
    store: &SqlStore,
    ids: &[GrantId],
    until: Timestamp,
) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let ids: Vec<String> = ids.iter().map(|id| id.as_str().to_owned()).collect();
    store
        .write(move |tx, cx| {
            Box::pin(async move {
                let mut kept = 0;
                for chunk in bulk::pieces(&ids) {
                    let update = format!(
                        "UPDATE revocations SET claimed_until = {} \
                         WHERE claimed_until IS NOT NULL AND claimed_until < {} \
                         AND grant_id IN ({})",
                        cx.backend.placeholder(1),
                        cx.backend.placeholder(2),
                        bulk::list(cx.backend, 3, chunk.len())
                    );
                    let mut q = sqlx::query(&update)
                        .bind(until.as_millis())
                        .bind(until.as_millis());
                    for id in chunk {
                        q = q.bind(id.as_str());
                    }
                    kept += q.execute_in(&mut *tx).await?;
                }
                Ok(kept)
            })
        })
        .await
}

pub(super) async fn complete_revocation(
    store: &SqlStore,
    id: &GrantId,
    receipt: &Receipt,
) -> Result<Grant> {
    let (id, receipt) = (id.clone(), receipt.clone());
    store
        .write(move |tx, cx| {
            Box::pin(async move {
                let mut grant = lock(tx, cx.backend, &id).await?;
                grant.verified(receipt)?;
                write(tx, &id, &grant).await?;
                sqlx::query("DELETE FROM revocations WHERE grant_id = $1")
                    .bind(id.as_str())
                    .execute_in(&mut *tx)
                    .await?;
                if let GrantState::Ended { end, receipt } = &grant.state {
                    let draft = audit_of::verified(&grant, end, receipt);
                    cx.audit(vec![draft], receipt.verified_at);
                }
                Ok(grant)
            })
        })
        .await
}

/// Many receipts in one write: a statement per chunk of grants for each step (lock, update,
/// job removal), not one per grant. A grant that is missing or cannot take its receipt
/// answers its own error and is left as it was.
pub(super) async fn complete_revocations(
    store: &SqlStore,
    done: Vec<(GrantId, Receipt)>,
) -> Result<Vec<Result<Grant>>> {
    store
        .write(move |tx, cx| {
            Box::pin(async move {
                let ids: Vec<&GrantId> = done.iter().map(|(id, _)| id).collect();
                let mut found = bulk::lock_grants(tx, cx.backend, &ids).await?;
                let mut results = Vec::with_capacity(done.len());
                for (id, receipt) in done {
                    let Some(mut grant) = found.remove(id.as_str()) else {
                        results.push(Err(bulk::missing(&id)));
                        continue;
                    };
                    // Checked before anything of this grant is written.
                    match grant.verified(receipt) {
                        Ok(()) => results.push(Ok(grant)),
                        Err(e) => results.push(Err(e.into())),
                    }
                }
                let verified: Vec<&Grant> =
                    results.iter().filter_map(|r| r.as_ref().ok()).collect();
                bulk::update_grant_states(tx, cx.backend, &verified).await?;
                let ids: Vec<&GrantId> = verified.iter().map(|g| &g.id).collect();
                bulk::delete_jobs(tx, cx.backend, &ids).await?;
                for grant in verified.iter().copied() {
                    if let GrantState::Ended { end, receipt } = &grant.state {
                        cx.audit(
                            vec![audit_of::verified(grant, end, receipt)],
                            receipt.verified_at,
                        );
                    }
                }
                Ok(results)
            })
        })
        .await
}

pub(super) async fn fail_revocation(
    store: &SqlStore,
    id: &GrantId,
    error: &str,
    retry_at: Timestamp,
) -> Result<Grant> {
    let (id, error) = (id.clone(), error.to_owned());
    store
        .write(move |tx, cx| {
            Box::pin(async move {
                let mut grant = lock(tx, cx.backend, &id).await?;
                grant.revocation_failed(error.clone())?;
                write(tx, &id, &grant).await?;
                enqueue(tx, &id, retry_at).await?;
                if let GrantState::Ending { attempts, .. } = &grant.state {
                    let draft = audit_of::revocation_failed(&grant, *attempts, &error);
                    cx.audit(vec![draft], cx.clock.now());
                }
                Ok(grant)
            })
        })
        .await
}

pub(super) async fn counts(store: &SqlStore) -> Result<Counts> {
    let row = sqlx::query(
        "SELECT \
           (SELECT COUNT(*) FROM grants WHERE state = 'active') AS active_grants, \
           (SELECT COUNT(*) FROM grants WHERE state = 'ending') AS revoking_grants, \
           (SELECT COUNT(*) FROM requests WHERE state = 'pending') AS pending_requests",
    )
    .fetch_one(&store.reads)
    .await?;
    Ok(Counts {
        active_grants: count(row.try_get("active_grants")?),
        revoking_grants: count(row.try_get("revoking_grants")?),
        pending_requests: count(row.try_get("pending_requests")?),
    })
}

pub(super) async fn failing_revocations(store: &SqlStore, min_attempts: u32) -> Result<u64> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM grants WHERE state = 'ending' AND attempts >= $1")
            .bind(i64::from(min_attempts))
            .fetch_one(&store.reads)
            .await?;
    Ok(count(n))
}

pub(super) async fn failing_targets(
    store: &SqlStore,
    min_attempts: u32,
) -> Result<Vec<(TargetName, u32)>> {
    let rows = sqlx::query(
        "SELECT g.target AS target, MAX(g.attempts) AS attempts \
         FROM revocations r JOIN grants g ON g.id = r.grant_id \
         WHERE g.state = 'ending' AND g.attempts >= $1 \
         GROUP BY g.target ORDER BY g.target",
    )
    .bind(i64::from(min_attempts.max(1)))
    .fetch_all(&store.reads)
    .await?;
    rows.iter()
        .map(|row| {
            let name = row.text("target")?;
            let target = TargetName::parse(name.clone()).map_err(|e| StoreError::Corrupt {
                id: format!("target {name:?}"),
                problem: e.to_string(),
            })?;
            let attempts: i64 = row.try_get("attempts")?;
            Ok((target, u32::try_from(attempts).unwrap_or(u32::MAX)))
        })
        .collect()
}

pub(super) async fn retry_target_now(
    store: &SqlStore,
    target: &TargetName,
    now: Timestamp,
) -> Result<u64> {
    let target = target.as_str().to_owned();
    store
        .write(move |tx, _cx| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE revocations SET due_at = $1 \
                     WHERE due_at > $1 AND (claimed_until IS NULL OR claimed_until <= $1) \
                     AND grant_id IN (SELECT id FROM grants WHERE state = 'ending' AND target = $2)",
                )
                .bind(now.as_millis())
                .bind(target.as_str())
                .execute_in(tx)
                .await?;
                Ok(done)
            })
        })
        .await
}
