//! Security Event Tokens ([`SetStore`] on SQLite and PostgreSQL).

use async_trait::async_trait;
use kairos_domain::{GrantId, Timestamp};

use super::codec::Columns;
use super::db::{Db, RunIn};
use super::lease::LeasedOutbox;
use super::{SqlStore, count};
use crate::{
    NewSet, PollAcks, PollBatch, Result, SetBacklog, SetDeliveryMode, SetOutcome, SetRecord,
    SetState, SetStore, StoreError,
};

const COLUMNS: &str = "jti, grant_id, receiver, delivery, body, state, attempts, created_at, \
     wait_until, next_at, acked_at, last_error";

/// Push SETs are claimed for delivery; poll SETs wait for their receiver.
static PUSH: LeasedOutbox = LeasedOutbox {
    table: "set_outbox",
    key: "jti",
    columns: COLUMNS,
    also: " AND delivery = 'push'",
};

fn corrupt(jti: &str, column: &str, value: &str) -> StoreError {
    StoreError::Corrupt {
        id: jti.to_owned(),
        problem: format!("column {column}: unknown value {value:?}"),
    }
}

fn from_row(row: &impl Columns) -> Result<SetRecord> {
    let jti = row.text("jti")?;
    let grant_text = row.text("grant_id")?;
    let grant =
        GrantId::parse(&grant_text).ok_or_else(|| corrupt(&jti, "grant_id", &grant_text))?;
    let delivery_text = row.text("delivery")?;
    let delivery = SetDeliveryMode::parse(&delivery_text)
        .ok_or_else(|| corrupt(&jti, "delivery", &delivery_text))?;
    let state_text = row.text("state")?;
    let state = SetState::parse(&state_text).ok_or_else(|| corrupt(&jti, "state", &state_text))?;
    Ok(SetRecord {
        grant,
        receiver: row.text("receiver")?,
        delivery,
        body: row.text("body")?,
        state,
        attempts: u32::try_from(row.int("attempts")?).unwrap_or(u32::MAX),
        created_at: Timestamp::from_millis(row.int("created_at")?),
        wait_until: Timestamp::from_millis(row.int("wait_until")?),
        next_at: Timestamp::from_millis(row.int("next_at")?),
        acked_at: row.opt_int("acked_at")?.map(Timestamp::from_millis),
        last_error: row.opt_text("last_error")?,
        jti,
    })
}

/// The grant's revocation job is due now (when it is due later): an answer came.
async fn nudge(tx: &mut Db, grant: &str, now: Timestamp) -> Result<()> {
    sqlx::query("UPDATE revocations SET due_at = $2 WHERE grant_id = $1 AND due_at > $2")
        .bind(grant.to_owned())
        .bind(now.as_millis())
        .execute_in(tx)
        .await?;
    Ok(())
}

#[async_trait]
impl SetStore for SqlStore {
    async fn enqueue_sets(&self, rows: Vec<NewSet>, now: Timestamp) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.write(move |tx, _cx| {
            Box::pin(async move {
                for r in rows {
                    sqlx::query(
                        "INSERT INTO set_outbox (jti, grant_id, receiver, delivery, body, state, \
                         attempts, created_at, wait_until, next_at) \
                         VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $7, $6) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(r.jti)
                    .bind(r.grant.as_str().to_owned())
                    .bind(r.receiver)
                    .bind(r.delivery.as_str())
                    .bind(r.body)
                    .bind(now.as_millis())
                    .bind(r.wait_until.as_millis())
                    .execute_in(&mut *tx)
                    .await?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn grant_sets(&self, grant: &GrantId) -> Result<Vec<SetRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM set_outbox WHERE grant_id = $1 ORDER BY receiver"
        ))
        .bind(grant.as_str().to_owned())
        .fetch_all(&self.reads)
        .await?;
        rows.iter().map(from_row).collect()
    }

    async fn defer_revocation(&self, grant: &GrantId, due_at: Timestamp) -> Result<()> {
        let grant = grant.as_str().to_owned();
        self.write(move |tx, _cx| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE revocations SET due_at = $2, claimed_until = NULL WHERE grant_id = $1",
                )
                .bind(grant)
                .bind(due_at.as_millis())
                .execute_in(&mut *tx)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn claim_push_sets(
        &self,
        now: Timestamp,
        limit: u32,
        lease_ms: i64,
        claim: &str,
    ) -> Result<Vec<SetRecord>> {
        let (rows, until) = PUSH.claim(self, now, limit, lease_ms, claim).await?;
        rows.iter()
            .map(|row| {
                let mut s = from_row(row)?;
                s.next_at = Timestamp::from_millis(until);
                Ok(s)
            })
            .collect()
    }

    async fn finish_set(
        &self,
        jti: &str,
        claim: &str,
        outcome: &SetOutcome,
        now: Timestamp,
    ) -> Result<bool> {
        let (jti, claim, outcome) = (jti.to_owned(), claim.to_owned(), outcome.clone());
        self.write(move |tx, _cx| {
            Box::pin(async move {
                let grant: Option<String> = match sqlx::query(
                    "SELECT grant_id FROM set_outbox WHERE jti = $1 AND claim = $2 AND state = 'pending'",
                )
                .bind(jti.clone())
                .bind(claim.clone())
                .fetch_optional_in(&mut *tx)
                .await?
                {
                    Some(row) => Some(row.text("grant_id")?),
                    None => None,
                };
                let Some(grant) = grant else {
                    return Ok(false);
                };
                let q = match &outcome {
                    SetOutcome::Acked => sqlx::query(
                        "UPDATE set_outbox SET state = 'acked', acked_at = $3, claim = NULL, \
                         last_error = NULL WHERE jti = $1 AND claim = $2 AND state = 'pending'",
                    )
                    .bind(jti)
                    .bind(claim)
                    .bind(now.as_millis()),
                    SetOutcome::Refused { error } => sqlx::query(
                        "UPDATE set_outbox SET state = 'failed', acked_at = $3, claim = NULL, \
                         attempts = attempts + 1, last_error = $4 \
                         WHERE jti = $1 AND claim = $2 AND state = 'pending'",
                    )
                    .bind(jti)
                    .bind(claim)
                    .bind(now.as_millis())
                    .bind(error.clone()),
                    SetOutcome::Retry { error, retry_at } => sqlx::query(
                        "UPDATE set_outbox SET attempts = attempts + 1, next_at = $3, \
                         claim = NULL, last_error = $4 \
                         WHERE jti = $1 AND claim = $2 AND state = 'pending'",
                    )
                    .bind(jti)
                    .bind(claim)
                    .bind(retry_at.as_millis())
                    .bind(error.clone()),
                    SetOutcome::Dead { error } => sqlx::query(
                        "UPDATE set_outbox SET state = 'dead', attempts = attempts + 1, \
                         claim = NULL, last_error = $3 \
                         WHERE jti = $1 AND claim = $2 AND state = 'pending'",
                    )
                    .bind(jti)
                    .bind(claim)
                    .bind(error.clone()),
                };
                let changed = q.execute_in(&mut *tx).await? == 1;
                if changed && matches!(outcome, SetOutcome::Acked | SetOutcome::Refused { .. }) {
                    nudge(&mut *tx, &grant, now).await?;
                }
                Ok(changed)
            })
        })
        .await
    }

    async fn poll_sets(
        &self,
        receiver: &str,
        acks: &PollAcks,
        max: u32,
        now: Timestamp,
    ) -> Result<PollBatch> {
        if !acks.acks.is_empty() || !acks.errors.is_empty() {
            let (receiver, acks) = (receiver.to_owned(), acks.clone());
            self.write(move |tx, _cx| {
                Box::pin(async move {
                    let answers = acks
                        .acks
                        .iter()
                        .map(|j| (j, None))
                        .chain(acks.errors.iter().map(|(j, e)| (j, Some(e))));
                    for (jti, error) in answers {
                        let row = sqlx::query(
                            "SELECT grant_id, state FROM set_outbox \
                             WHERE jti = $1 AND receiver = $2 AND delivery = 'poll'",
                        )
                        .bind(jti.clone())
                        .bind(receiver.clone())
                        .fetch_optional_in(&mut *tx)
                        .await?;
                        let Some(row) = row else {
                            // The write's savepoint is rolled back: nothing recorded.
                            return Err(StoreError::Conflict(format!(
                                "{jti:?} is not a SET of receiver {receiver}"
                            )));
                        };
                        if row.text("state")? != "pending" {
                            continue;
                        }
                        match error {
                            None => sqlx::query(
                                "UPDATE set_outbox SET state = 'acked', acked_at = $2, \
                                 last_error = NULL WHERE jti = $1 AND state = 'pending'",
                            )
                            .bind(jti.clone())
                            .bind(now.as_millis()),
                            Some(e) => sqlx::query(
                                "UPDATE set_outbox SET state = 'failed', acked_at = $2, \
                                 last_error = $3 WHERE jti = $1 AND state = 'pending'",
                            )
                            .bind(jti.clone())
                            .bind(now.as_millis())
                            .bind(e.clone()),
                        }
                        .execute_in(&mut *tx)
                        .await?;
                        nudge(&mut *tx, &row.text("grant_id")?, now).await?;
                    }
                    Ok(())
                })
            })
            .await?;
        }
        let rows = sqlx::query(
            "SELECT jti, body FROM set_outbox \
             WHERE receiver = $1 AND state = 'pending' AND delivery = 'poll' \
             ORDER BY created_at, jti LIMIT $2",
        )
        .bind(receiver.to_owned())
        .bind(i64::from(max).saturating_add(1))
        .fetch_all(&self.reads)
        .await?;
        let mut sets = Vec::with_capacity(rows.len());
        for row in &rows {
            sets.push((row.text("jti")?, row.text("body")?));
        }
        let more = sets.len() > usize::try_from(max).unwrap_or(usize::MAX);
        sets.truncate(usize::try_from(max).unwrap_or(usize::MAX));
        Ok(PollBatch { sets, more })
    }

    async fn set_backlog(&self) -> Result<Vec<SetBacklog>> {
        let rows = sqlx::query(
            "SELECT receiver, \
               SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END) AS pending, \
               SUM(CASE WHEN state = 'acked' THEN 1 ELSE 0 END) AS acked, \
               SUM(CASE WHEN state = 'failed' THEN 1 ELSE 0 END) AS failed, \
               SUM(CASE WHEN state = 'dead' THEN 1 ELSE 0 END) AS dead, \
               MAX(CASE WHEN state = 'acked' THEN acked_at END) AS last_acked_at \
             FROM set_outbox GROUP BY receiver ORDER BY receiver",
        )
        .fetch_all(&self.reads)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SetBacklog {
                    receiver: r.text("receiver")?,
                    pending: count(r.int("pending")?),
                    acked: count(r.int("acked")?),
                    failed: count(r.int("failed")?),
                    dead: count(r.int("dead")?),
                    last_acked_at: r.opt_int("last_acked_at")?.map(Timestamp::from_millis),
                })
            })
            .collect()
    }
}
