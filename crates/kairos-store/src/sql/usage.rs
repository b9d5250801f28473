//! [`UsageStore`] on SQL: batched upserts that merge across replicas, and the detectors'
//! reads and once-only flags.

use std::net::IpAddr;

use async_trait::async_trait;
use kairos_domain::{GrantId, IdentityName, TaskRef, Timestamp};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::bulk::values;
use super::codec::AnyQuery;
use super::db::{Db, RunIn};
use super::{Backend, SqlStore, count};
use crate::usage::{
    GrantUse, HeldGrant, IdentityActivity, IdentityRequests, IdentitySource, UsageBatch, UsageFlag,
    UsageStore,
};
use crate::{Result, StoreError};

/// Later wins for the "last" columns, earlier for the first, and uses add up: what two
/// replicas flushing the same grant together must come to.
const UPSERT_GRANT_USAGE: &str = "INSERT INTO grant_usage (grant_id, first_used_at, \
     last_used_at, uses, last_source, last_client) VALUES ($1, $2, $3, $4, $5, $6)";
const MERGE_GRANT_USAGE: &str = " ON CONFLICT (grant_id) DO UPDATE SET \
     first_used_at = CASE WHEN excluded.first_used_at < grant_usage.first_used_at \
         THEN excluded.first_used_at ELSE grant_usage.first_used_at END, \
     last_source = CASE WHEN excluded.last_used_at >= grant_usage.last_used_at \
         THEN excluded.last_source ELSE grant_usage.last_source END, \
     last_client = CASE WHEN excluded.last_used_at >= grant_usage.last_used_at \
         THEN excluded.last_client ELSE grant_usage.last_client END, \
     last_used_at = CASE WHEN excluded.last_used_at > grant_usage.last_used_at \
         THEN excluded.last_used_at ELSE grant_usage.last_used_at END, \
     uses = grant_usage.uses + excluded.uses";

const UPSERT_IDENTITY_USAGE: &str = "INSERT INTO identity_usage (identity, first_seen_at, \
     last_request_at, last_source) VALUES ($1, $2, $3, $4)";
const MERGE_IDENTITY_USAGE: &str = " ON CONFLICT (identity) DO UPDATE SET \
     first_seen_at = CASE WHEN excluded.first_seen_at < identity_usage.first_seen_at \
         THEN excluded.first_seen_at ELSE identity_usage.first_seen_at END, \
     last_source = CASE WHEN identity_usage.last_request_at IS NULL \
         OR excluded.last_request_at >= identity_usage.last_request_at \
         THEN excluded.last_source ELSE identity_usage.last_source END, \
     last_request_at = CASE WHEN identity_usage.last_request_at IS NULL \
         OR excluded.last_request_at > identity_usage.last_request_at \
         THEN excluded.last_request_at ELSE identity_usage.last_request_at END";

const UPSERT_IDENTITY_SOURCE: &str = "INSERT INTO identity_sources (identity, source, \
     first_seen_at, last_seen_at) VALUES ($1, $2, $3, $4)";
const MERGE_IDENTITY_SOURCE: &str = " ON CONFLICT (identity, source) DO UPDATE SET \
     first_seen_at = CASE WHEN excluded.first_seen_at < identity_sources.first_seen_at \
         THEN excluded.first_seen_at ELSE identity_sources.first_seen_at END, \
     last_seen_at = CASE WHEN excluded.last_seen_at > identity_sources.last_seen_at \
         THEN excluded.last_seen_at ELSE identity_sources.last_seen_at END";

fn millis(t: Timestamp) -> i64 {
    t.as_millis()
}

fn uses(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn bind_grant_use<'q>(q: AnyQuery<'q>, u: &GrantUse) -> AnyQuery<'q> {
    q.bind(u.grant.as_str().to_owned())
        .bind(millis(u.first_at))
        .bind(millis(u.last_at))
        .bind(uses(u.uses))
        .bind(u.last_source.map(|ip| ip.to_string()))
        .bind(u.last_client.clone())
}

fn bind_identity_requests<'q>(q: AnyQuery<'q>, r: &IdentityRequests) -> AnyQuery<'q> {
    q.bind(r.identity.as_str().to_owned())
        .bind(millis(r.first_at))
        .bind(Some(millis(r.last_at)))
        .bind(r.last_source.map(|ip| ip.to_string()))
}

fn bind_identity_source<'q>(q: AnyQuery<'q>, s: &IdentitySource) -> AnyQuery<'q> {
    q.bind(s.identity.as_str().to_owned())
        .bind(s.source.to_string())
        .bind(millis(s.first_at))
        .bind(millis(s.last_at))
}

/// `insert` (a one-row `INSERT … VALUES (…)`, `columns` wide) for every row, a chunk a
/// statement, each followed by `merge` (its `ON CONFLICT … DO UPDATE`). Rows must be
/// unique by the conflict key (PostgreSQL refuses to update one row twice a statement).
pub(super) async fn upsert<T>(
    conn: &mut Db,
    backend: Backend,
    insert: &'static str,
    merge: &'static str,
    columns: usize,
    rows: &[T],
    bind: for<'q> fn(AnyQuery<'q>, &T) -> AnyQuery<'q>,
) -> Result<()> {
    let (head, row) = super::bulk::split_insert(insert);
    for chunk in super::bulk::pieces(rows) {
        let sql = format!(
            "{head} VALUES {}{merge}",
            values(backend, row, columns, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for r in chunk {
            q = bind(q, r);
        }
        q.execute_in(&mut *conn).await?;
    }
    Ok(())
}

fn corrupt(subject: &str, problem: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        id: subject.to_owned(),
        problem: problem.to_string(),
    }
}

fn ip(subject: &str, text: Option<String>) -> Result<Option<IpAddr>> {
    text.map(|t| {
        t.parse()
            .map_err(|e| corrupt(subject, format!("address {t:?}: {e}")))
    })
    .transpose()
}

fn identity(row: &AnyRow, column: &str) -> Result<IdentityName> {
    let text: String = row.try_get(column)?;
    IdentityName::parse(&text).map_err(|e| corrupt(&text, e))
}

fn grant_use_from_row(row: &AnyRow) -> Result<GrantUse> {
    let id: String = row.try_get("grant_id")?;
    let grant = GrantId::parse(&id).ok_or_else(|| corrupt(&id, "not a grant id"))?;
    Ok(GrantUse {
        first_at: Timestamp::from_millis(row.try_get("first_used_at")?),
        last_at: Timestamp::from_millis(row.try_get("last_used_at")?),
        uses: u64::try_from(row.try_get::<i64, _>("uses")?).unwrap_or(0),
        last_source: ip(&id, row.try_get("last_source")?)?,
        last_client: row.try_get("last_client")?,
        grant,
    })
}

#[async_trait]
impl UsageStore for SqlStore {
    async fn record_usage(&self, batch: UsageBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.write(move |conn, cx| {
            Box::pin(async move {
                upsert(
                    conn,
                    cx.backend,
                    UPSERT_GRANT_USAGE,
                    MERGE_GRANT_USAGE,
                    6,
                    &batch.grants,
                    bind_grant_use,
                )
                .await?;
                upsert(
                    conn,
                    cx.backend,
                    UPSERT_IDENTITY_USAGE,
                    MERGE_IDENTITY_USAGE,
                    4,
                    &batch.requests,
                    bind_identity_requests,
                )
                .await?;
                upsert(
                    conn,
                    cx.backend,
                    UPSERT_IDENTITY_SOURCE,
                    MERGE_IDENTITY_SOURCE,
                    4,
                    &batch.sources,
                    bind_identity_source,
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn grant_usage(&self, grant: &GrantId) -> Result<Option<GrantUse>> {
        let row = sqlx::query(
            "SELECT grant_id, first_used_at, last_used_at, uses, last_source, last_client \
             FROM grant_usage WHERE grant_id = $1",
        )
        .bind(grant.as_str())
        .fetch_optional(&self.reads)
        .await?;
        row.as_ref().map(grant_use_from_row).transpose()
    }

    async fn note_identities(&self, identities: &[IdentityName], now: Timestamp) -> Result<u64> {
        if identities.is_empty() {
            return Ok(0);
        }
        let names: Vec<String> = identities.iter().map(|i| i.as_str().to_owned()).collect();
        self.write(move |conn, cx| {
            Box::pin(async move {
                let mut added = 0;
                for chunk in super::bulk::pieces(&names) {
                    let sql = format!(
                        "INSERT INTO identity_usage (identity, first_seen_at) VALUES {} \
                         ON CONFLICT (identity) DO NOTHING",
                        values(cx.backend, "($1, $2)", 2, chunk.len())
                    );
                    let mut q = sqlx::query(&sql);
                    for name in chunk {
                        q = q.bind(name.clone()).bind(now.as_millis());
                    }
                    added += q.execute_in(&mut *conn).await?;
                }
                Ok(added)
            })
        })
        .await
    }

    async fn identity_activity(&self) -> Result<Vec<IdentityActivity>> {
        let rows = sqlx::query(
            "SELECT identity, first_seen_at, last_request_at, last_source FROM identity_usage \
             ORDER BY identity",
        )
        .fetch_all(&self.reads)
        .await?;
        rows.iter()
            .map(|row| {
                let name = identity(row, "identity")?;
                Ok(IdentityActivity {
                    first_seen_at: Timestamp::from_millis(row.try_get("first_seen_at")?),
                    last_request_at: row
                        .try_get::<Option<i64>, _>("last_request_at")?
                        .map(Timestamp::from_millis),
                    last_source: ip(name.as_str(), row.try_get("last_source")?)?,
                    identity: name,
                })
            })
            .collect()
    }

    async fn identity_source_counts(
        &self,
        since: Timestamp,
        over: u64,
    ) -> Result<Vec<(IdentityName, u64)>> {
        let rows = sqlx::query(
            "SELECT identity, COUNT(*) AS n FROM identity_sources WHERE last_seen_at >= $1 \
             GROUP BY identity HAVING COUNT(*) > $2 ORDER BY identity",
        )
        .bind(since.as_millis())
        .bind(uses(over))
        .fetch_all(&self.reads)
        .await?;
        rows.iter()
            .map(|row| Ok((identity(row, "identity")?, count(row.try_get("n")?))))
            .collect()
    }

    async fn live_task_counts(&self, over: u64) -> Result<Vec<(IdentityName, u64)>> {
        let rows = sqlx::query(
            "SELECT identity, COUNT(DISTINCT task_ref) AS n FROM grants \
             WHERE state IN ('active', 'provisioning') \
             GROUP BY identity HAVING COUNT(DISTINCT task_ref) > $1 ORDER BY identity",
        )
        .bind(uses(over))
        .fetch_all(&self.reads)
        .await?;
        rows.iter()
            .map(|row| Ok((identity(row, "identity")?, count(row.try_get("n")?))))
            .collect()
    }

    async fn held_candidates(
        &self,
        now: Timestamp,
        share_permille: u32,
        limit: u32,
    ) -> Result<Vec<HeldGrant>> {
        let rows = sqlx::query(
            "SELECT g.id, g.identity, g.task_ref, g.issued_at, g.expires_at, u.last_used_at \
             FROM grants g \
             LEFT JOIN grant_usage u ON u.grant_id = g.id \
             LEFT JOIN usage_flags f ON f.kind = 'held_past_use' AND f.subject = g.id \
             WHERE g.state = 'active' AND f.subject IS NULL \
               AND ($1 - COALESCE(u.last_used_at, g.issued_at)) * 1000 \
                   >= $2 * (g.expires_at - g.issued_at) \
             ORDER BY g.issued_at, g.id LIMIT $3",
        )
        .bind(now.as_millis())
        .bind(i64::from(share_permille))
        .bind(i64::from(limit))
        .fetch_all(&self.reads)
        .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                let task: String = row.try_get("task_ref")?;
                Ok(HeldGrant {
                    grant: GrantId::parse(&id).ok_or_else(|| corrupt(&id, "not a grant id"))?,
                    identity: identity(row, "identity")?,
                    task_ref: TaskRef::parse(task).map_err(|e| corrupt(&id, e))?,
                    issued_at: Timestamp::from_millis(row.try_get("issued_at")?),
                    expires_at: Timestamp::from_millis(row.try_get("expires_at")?),
                    last_used_at: row
                        .try_get::<Option<i64>, _>("last_used_at")?
                        .map(Timestamp::from_millis),
                })
            })
            .collect()
    }

    async fn flag_once(&self, kind: &str, subject: &str, at: Timestamp) -> Result<bool> {
        let (kind, subject) = (kind.to_owned(), subject.to_owned());
        self.write(move |conn, _cx| {
            Box::pin(async move {
                Ok(sqlx::query(
                    "INSERT INTO usage_flags (kind, subject, flagged_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (kind, subject) DO NOTHING",
                )
                .bind(kind)
                .bind(subject)
                .bind(at.as_millis())
                .execute_in(&mut *conn)
                .await?
                    == 1)
            })
        })
        .await
    }

    async fn unflag(&self, kind: &str, subject: &str) -> Result<bool> {
        let (kind, subject) = (kind.to_owned(), subject.to_owned());
        self.write(move |conn, _cx| {
            Box::pin(async move {
                Ok(
                    sqlx::query("DELETE FROM usage_flags WHERE kind = $1 AND subject = $2")
                        .bind(kind)
                        .bind(subject)
                        .execute_in(&mut *conn)
                        .await?
                        == 1,
                )
            })
        })
        .await
    }

    async fn flags(&self, kind: &str) -> Result<Vec<UsageFlag>> {
        let rows = sqlx::query(
            "SELECT kind, subject, flagged_at FROM usage_flags WHERE kind = $1 ORDER BY subject",
        )
        .bind(kind)
        .fetch_all(&self.reads)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(UsageFlag {
                    kind: row.try_get("kind")?,
                    subject: row.try_get("subject")?,
                    flagged_at: Timestamp::from_millis(row.try_get("flagged_at")?),
                })
            })
            .collect()
    }

    async fn prune_identity_sources(&self, before: Timestamp) -> Result<u64> {
        self.write(move |conn, _cx| {
            Box::pin(async move {
                sqlx::query("DELETE FROM identity_sources WHERE last_seen_at < $1")
                    .bind(before.as_millis())
                    .execute_in(&mut *conn)
                    .await
            })
        })
        .await
    }
}
