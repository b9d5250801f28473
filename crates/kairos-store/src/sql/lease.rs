//! Outbox rows claimed under a lease (notifications, pushed SETs): a replica takes the due
//! rows by setting their `next_at` to the lease's end and their `claim` to its own token,
//! each update conditional on the row being still pending and due, so two replicas never
//! hold one row at once; PostgreSQL skips rows another transaction has locked.

use kairos_domain::Timestamp;

use super::SqlStore;
use super::codec::Columns;
use super::db::{DbRow, RunIn};
use crate::Result;

/// An outbox table, as its claim needs it.
pub(super) struct LeasedOutbox {
    pub table: &'static str,
    /// The primary key column (text).
    pub key: &'static str,
    /// The columns each claimed row is read with.
    pub columns: &'static str,
    /// Further conditions on a claimable row, e.g. ` AND delivery = 'push'`.
    pub also: &'static str,
}

impl LeasedOutbox {
    /// Claims up to `limit` due rows, oldest due first, until `now + lease_ms` under
    /// `claim`. Returns the rows as read before the claim and the lease's end (ms), which
    /// is each claimed row's `next_at` now.
    pub(super) async fn claim(
        &'static self,
        store: &SqlStore,
        now: Timestamp,
        limit: u32,
        lease_ms: i64,
        claim: &str,
    ) -> Result<(Vec<DbRow>, i64)> {
        let until = now.as_millis().saturating_add(lease_ms);
        // A read decides; the write happens only when something is due.
        let due = sqlx::query(&format!(
            "SELECT {} FROM {} WHERE state = 'pending'{} AND next_at <= $1 LIMIT 1",
            self.key, self.table, self.also
        ))
        .bind(now.as_millis())
        .fetch_optional(&store.reads)
        .await?;
        if due.is_none() {
            return Ok((Vec::new(), until));
        }
        let claim = claim.to_owned();
        let claimed = store
            .write(move |tx, cx| {
                Box::pin(async move {
                    let rows = sqlx::query(&format!(
                        "SELECT {} FROM {} WHERE state = 'pending'{} AND next_at <= $1 \
                         ORDER BY next_at, {} LIMIT $2{}",
                        self.columns,
                        self.table,
                        self.also,
                        self.key,
                        cx.backend.skip_locked_clause()
                    ))
                    .bind(now.as_millis())
                    .bind(i64::from(limit))
                    .fetch_all_in(&mut *tx)
                    .await?;
                    let mut claimed = Vec::with_capacity(rows.len());
                    for row in rows {
                        let changed = sqlx::query(&format!(
                            "UPDATE {} SET next_at = $2, claim = $3 \
                             WHERE {} = $1 AND state = 'pending' AND next_at <= $4",
                            self.table, self.key
                        ))
                        .bind(row.text(self.key)?)
                        .bind(until)
                        .bind(claim.clone())
                        .bind(now.as_millis())
                        .execute_in(&mut *tx)
                        .await?;
                        if changed == 1 {
                            claimed.push(row);
                        }
                    }
                    Ok(claimed)
                })
            })
            .await?;
        Ok((claimed, until))
    }
}
