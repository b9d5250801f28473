//! DPoP proofs and bindings ([`DpopStore`] on SQLite and PostgreSQL).

use async_trait::async_trait;
use kairos_domain::{RequestId, Timestamp};

use super::SqlStore;
use super::codec::Columns;
use super::db::RunIn;
use crate::{DpopStore, Result};

#[async_trait]
impl DpopStore for SqlStore {
    async fn claim_dpop_proof(
        &self,
        replay_key: &str,
        until: Timestamp,
        binding: Option<(&RequestId, &str)>,
    ) -> Result<bool> {
        let replay_key = replay_key.to_owned();
        let binding = binding.map(|(request, jkt)| (request.to_string(), jkt.to_owned()));
        self.write(move |tx, _cx| {
            Box::pin(async move {
                let claimed = sqlx::query(
                    "INSERT INTO dpop_proofs (replay_key, expires_at) VALUES ($1, $2) \
                     ON CONFLICT (replay_key) DO NOTHING",
                )
                .bind(replay_key)
                .bind(until.as_millis())
                .execute_in(&mut *tx)
                .await?;
                if claimed == 0 {
                    return Ok(false);
                }
                if let Some((request, jkt)) = binding {
                    sqlx::query("INSERT INTO dpop_bindings (request_id, jkt) VALUES ($1, $2)")
                        .bind(request)
                        .bind(jkt)
                        .execute_in(&mut *tx)
                        .await?;
                }
                Ok(true)
            })
        })
        .await
    }

    async fn dpop_binding(&self, request: &RequestId) -> Result<Option<String>> {
        let row = sqlx::query("SELECT jkt FROM dpop_bindings WHERE request_id = $1")
            .bind(request.to_string())
            .fetch_optional(&self.reads)
            .await?;
        row.as_ref().map(|r| r.text("jkt")).transpose()
    }

    async fn bind_certificate(&self, request: &RequestId, x5t_s256: &str) -> Result<()> {
        let (request, x5t) = (request.to_string(), x5t_s256.to_owned());
        self.write(move |tx, _cx| {
            Box::pin(async move {
                sqlx::query("INSERT INTO cert_bindings (request_id, x5t_s256) VALUES ($1, $2)")
                    .bind(request)
                    .bind(x5t)
                    .execute_in(&mut *tx)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    async fn certificate_binding(&self, request: &RequestId) -> Result<Option<String>> {
        let row = sqlx::query("SELECT x5t_s256 FROM cert_bindings WHERE request_id = $1")
            .bind(request.to_string())
            .fetch_optional(&self.reads)
            .await?;
        row.as_ref().map(|r| r.text("x5t_s256")).transpose()
    }

    async fn prune_dpop_proofs(&self, now: Timestamp) -> Result<u64> {
        // A read decides; the write happens only when something has expired.
        let due = sqlx::query("SELECT replay_key FROM dpop_proofs WHERE expires_at <= $1 LIMIT 1")
            .bind(now.as_millis())
            .fetch_optional(&self.reads)
            .await?;
        if due.is_none() {
            return Ok(0);
        }
        self.write(move |tx, _cx| {
            Box::pin(async move {
                sqlx::query("DELETE FROM dpop_proofs WHERE expires_at <= $1")
                    .bind(now.as_millis())
                    .execute_in(&mut *tx)
                    .await
            })
        })
        .await
    }
}
