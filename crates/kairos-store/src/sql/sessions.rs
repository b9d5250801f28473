//! Console sessions ([`SessionStore`] on SQLite and PostgreSQL).

use async_trait::async_trait;
use kairos_domain::{AuditDraft, Timestamp, UserName};

use super::SqlStore;
use super::codec::Columns;
use super::db::RunIn;
use crate::{ConsoleSession, Result, SessionStore, StoreError};

const SESSION_COLUMNS: &str =
    "id_hash, user_name, token_id, csrf_secret, created_at, expires_at, last_seen_at";

fn session_from_row(row: &impl Columns) -> Result<ConsoleSession> {
    let id_hash = row.text("id_hash")?;
    let user = UserName::parse(row.text("user_name")?).map_err(|e| StoreError::Corrupt {
        id: format!(
            "console session {}",
            id_hash.chars().take(8).collect::<String>()
        ),
        problem: format!("column user_name: {e}"),
    })?;
    Ok(ConsoleSession {
        id_hash,
        user,
        token_id: row.opt_text("token_id")?,
        csrf_secret: row.text("csrf_secret")?,
        created_at: Timestamp::from_millis(row.int("created_at")?),
        expires_at: Timestamp::from_millis(row.int("expires_at")?),
        last_seen_at: Timestamp::from_millis(row.int("last_seen_at")?),
    })
}

#[async_trait]
impl SessionStore for SqlStore {
    async fn insert_session(&self, session: &ConsoleSession, audit: Vec<AuditDraft>) -> Result<()> {
        let s = session.clone();
        self.write(move |tx, cx| {
            Box::pin(async move {
                sqlx::query(&format!(
                    "INSERT INTO console_sessions ({SESSION_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)"
                ))
                .bind(s.id_hash.clone())
                .bind(s.user.as_str().to_owned())
                .bind(s.token_id.clone())
                .bind(s.csrf_secret.clone())
                .bind(s.created_at.as_millis())
                .bind(s.expires_at.as_millis())
                .bind(s.last_seen_at.as_millis())
                .execute_in(&mut *tx)
                .await?;
                cx.audit(audit, s.created_at);
                Ok(())
            })
        })
        .await
    }

    async fn get_session(&self, id_hash: &str) -> Result<Option<ConsoleSession>> {
        let row = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM console_sessions WHERE id_hash = $1"
        ))
        .bind(id_hash)
        .fetch_optional(&self.reads)
        .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn touch_session(&self, id_hash: &str, at: Timestamp) -> Result<()> {
        let id_hash = id_hash.to_owned();
        self.write(move |tx, _cx| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE console_sessions SET last_seen_at = $2 \
                     WHERE id_hash = $1 AND last_seen_at < $2",
                )
                .bind(id_hash)
                .bind(at.as_millis())
                .execute_in(&mut *tx)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn delete_session(&self, id_hash: &str, audit: Vec<AuditDraft>) -> Result<bool> {
        let id_hash = id_hash.to_owned();
        self.write(move |tx, cx| {
            Box::pin(async move {
                let deleted = sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
                    .bind(id_hash)
                    .execute_in(&mut *tx)
                    .await?;
                if deleted == 0 {
                    return Ok(false);
                }
                cx.audit(audit, cx.clock.now());
                Ok(true)
            })
        })
        .await
    }

    async fn delete_ended_sessions(&self, now: Timestamp, idle_before: Timestamp) -> Result<u64> {
        // A read decides; the write happens only when something has ended.
        let due = sqlx::query(
            "SELECT id_hash FROM console_sessions \
             WHERE expires_at <= $1 OR last_seen_at < $2 LIMIT 1",
        )
        .bind(now.as_millis())
        .bind(idle_before.as_millis())
        .fetch_optional(&self.reads)
        .await?;
        if due.is_none() {
            return Ok(0);
        }
        self.write(move |tx, _cx| {
            Box::pin(async move {
                sqlx::query(
                    "DELETE FROM console_sessions WHERE expires_at <= $1 OR last_seen_at < $2",
                )
                .bind(now.as_millis())
                .bind(idle_before.as_millis())
                .execute_in(&mut *tx)
                .await
            })
        })
        .await
    }
}
