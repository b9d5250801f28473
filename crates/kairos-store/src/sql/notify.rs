//! The notification outbox ([`NotifyStore`] on SQLite and PostgreSQL).

use async_trait::async_trait;
use kairos_domain::Timestamp;

use super::codec::Columns;
use super::db::RunIn;
use super::lease::LeasedOutbox;
use super::{SqlStore, count};
use crate::{
    AttemptOutcome, NewNotification, Notification, NotificationFilter, NotificationState,
    NotifyStore, Result, StoreError,
};

const COLUMNS: &str = "id, channel, event, audit_seq, body, state, attempts, created_at, \
     next_at, delivered_at, last_error";

static OUTBOX: LeasedOutbox = LeasedOutbox {
    table: "notify_outbox",
    key: "id",
    columns: COLUMNS,
    also: "",
};

fn from_row(row: &impl Columns) -> Result<Notification> {
    let id = row.text("id")?;
    let state_text = row.text("state")?;
    let state = NotificationState::parse(&state_text).ok_or_else(|| StoreError::Corrupt {
        id: id.clone(),
        problem: format!("column state: unknown state {state_text:?}"),
    })?;
    Ok(Notification {
        channel: row.text("channel")?,
        event: row.text("event")?,
        audit_seq: row.int("audit_seq")?,
        body: row.text("body")?,
        state,
        attempts: u32::try_from(row.int("attempts")?).unwrap_or(u32::MAX),
        created_at: Timestamp::from_millis(row.int("created_at")?),
        next_at: Timestamp::from_millis(row.int("next_at")?),
        delivered_at: row.opt_int("delivered_at")?.map(Timestamp::from_millis),
        last_error: row.opt_text("last_error")?,
        id,
    })
}

#[async_trait]
impl NotifyStore for SqlStore {
    async fn notify_watermark(&self) -> Result<i64> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM notify_watermark WHERE id = 1")
            .fetch_optional(&self.reads)
            .await?;
        Ok(seq.unwrap_or(0))
    }

    async fn dispatch_notifications(
        &self,
        from: i64,
        to: i64,
        rows: Vec<NewNotification>,
        now: Timestamp,
    ) -> Result<bool> {
        self.write(move |tx, _cx| {
            Box::pin(async move {
                // The compare-and-set first: a loser writes nothing at all.
                let moved =
                    sqlx::query("UPDATE notify_watermark SET seq = $2 WHERE id = 1 AND seq = $1")
                        .bind(from)
                        .bind(to)
                        .execute_in(&mut *tx)
                        .await?;
                if moved != 1 {
                    return Ok(false);
                }
                for r in rows {
                    sqlx::query(
                        "INSERT INTO notify_outbox (id, channel, event, audit_seq, body, state, \
                         attempts, created_at, next_at) \
                         VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6) \
                         ON CONFLICT (id) DO NOTHING",
                    )
                    .bind(r.id)
                    .bind(r.channel)
                    .bind(r.event)
                    .bind(r.audit_seq)
                    .bind(r.body)
                    .bind(now.as_millis())
                    .execute_in(&mut *tx)
                    .await?;
                }
                Ok(true)
            })
        })
        .await
    }

    async fn claim_notifications(
        &self,
        now: Timestamp,
        limit: u32,
        lease_ms: i64,
        claim: &str,
    ) -> Result<Vec<Notification>> {
        let (rows, until) = OUTBOX.claim(self, now, limit, lease_ms, claim).await?;
        rows.iter()
            .map(|row| {
                let mut n = from_row(row)?;
                n.next_at = Timestamp::from_millis(until);
                Ok(n)
            })
            .collect()
    }

    async fn finish_notification(
        &self,
        id: &str,
        claim: &str,
        outcome: &AttemptOutcome,
        now: Timestamp,
    ) -> Result<bool> {
        let (id, claim, outcome) = (id.to_owned(), claim.to_owned(), outcome.clone());
        self.write(move |tx, _cx| {
            Box::pin(async move {
                let q = match &outcome {
                    AttemptOutcome::Delivered => sqlx::query(
                        "UPDATE notify_outbox SET state = 'delivered', delivered_at = $3, \
                         claim = NULL, last_error = NULL \
                         WHERE id = $1 AND claim = $2 AND state = 'pending'",
                    )
                    .bind(id)
                    .bind(claim)
                    .bind(now.as_millis()),
                    AttemptOutcome::Retry { error, retry_at } => sqlx::query(
                        "UPDATE notify_outbox SET attempts = attempts + 1, next_at = $3, \
                         claim = NULL, last_error = $4 \
                         WHERE id = $1 AND claim = $2 AND state = 'pending'",
                    )
                    .bind(id)
                    .bind(claim)
                    .bind(retry_at.as_millis())
                    .bind(error.clone()),
                    AttemptOutcome::Dead { error } => sqlx::query(
                        "UPDATE notify_outbox SET state = 'dead', attempts = attempts + 1, \
                         claim = NULL, last_error = $3 \
                         WHERE id = $1 AND claim = $2 AND state = 'pending'",
                    )
                    .bind(id)
                    .bind(claim)
                    .bind(error.clone()),
                };
                Ok(q.execute_in(&mut *tx).await? == 1)
            })
        })
        .await
    }

    async fn list_notifications(&self, filter: &NotificationFilter) -> Result<Vec<Notification>> {
        // Unset filters match every row: `$1 IS NULL OR …` keeps it one statement.
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM notify_outbox \
             WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR channel = $2) \
             ORDER BY created_at DESC, id DESC LIMIT $3"
        ))
        .bind(filter.state.map(|s| s.as_str().to_owned()))
        .bind(filter.channel.clone())
        .bind(i64::from(filter.limit))
        .fetch_all(&self.reads)
        .await?;
        rows.iter().map(from_row).collect()
    }

    async fn get_notification(&self, id: &str) -> Result<Option<Notification>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM notify_outbox WHERE id = $1"
        ))
        .bind(id.to_owned())
        .fetch_optional(&self.reads)
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    async fn retry_notification(&self, id: &str, now: Timestamp) -> Result<Notification> {
        let id = id.to_owned();
        self.write(move |tx, cx| {
            Box::pin(async move {
                let row = sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM notify_outbox WHERE id = $1{}",
                    cx.backend.lock_clause()
                ))
                .bind(id.clone())
                .fetch_optional_in(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("notification {id}")))?;
                let mut n = from_row(&row)?;
                if n.state != NotificationState::Dead {
                    return Err(StoreError::Conflict(format!(
                        "notification {id} is {}; only a dead one can be retried",
                        n.state.as_str()
                    )));
                }
                sqlx::query(
                    "UPDATE notify_outbox SET state = 'pending', next_at = $2, created_at = $2, \
                     claim = NULL WHERE id = $1 AND state = 'dead'",
                )
                .bind(id)
                .bind(now.as_millis())
                .execute_in(&mut *tx)
                .await?;
                n.state = NotificationState::Pending;
                n.next_at = now;
                n.created_at = now;
                Ok(n)
            })
        })
        .await
    }

    async fn notification_backlog(&self) -> Result<(u64, u64)> {
        let pending: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM notify_outbox WHERE state = 'pending'")
                .fetch_one(&self.reads)
                .await?;
        let dead: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM notify_outbox WHERE state = 'dead'")
                .fetch_one(&self.reads)
                .await?;
        Ok((count(pending), count(dead)))
    }
}
