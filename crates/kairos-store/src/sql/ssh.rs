//! SSH CA keys and certificates ([`SshStore`] on SQLite and PostgreSQL).

use async_trait::async_trait;
use kairos_domain::{AuditDraft, GrantId, RequestId, Timestamp};

use super::codec::Columns;
use super::db::RunIn;
use super::{SqlStore, conflict};
use crate::{Result, RevokedSerial, SshCert, SshStore, StoreError, StoredSshCa};

const CERT_COLUMNS: &str =
    "grant_id, target, ca_key_id, serial, certificate, valid_before, revoked_at";

fn serial_of(id: &str, v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt {
        id: id.to_owned(),
        problem: format!("column serial: negative value {v}"),
    })
}

fn cert_from(row: &impl Columns) -> Result<SshCert> {
    let id = row.text("grant_id")?;
    let grant_id = GrantId::parse(&id).ok_or_else(|| StoreError::Corrupt {
        id: id.clone(),
        problem: "column grant_id: not a grant id".into(),
    })?;
    Ok(SshCert {
        grant_id,
        target: row.text("target")?,
        ca_key_id: row.text("ca_key_id")?,
        serial: serial_of(&id, row.int("serial")?)?,
        certificate: row.text("certificate")?,
        valid_before: Timestamp::from_millis(row.int("valid_before")?),
        revoked_at: row.opt_int("revoked_at")?.map(Timestamp::from_millis),
    })
}

fn signed(serial: u64) -> i64 {
    // Serials are drawn in 1..=i64::MAX (kairos_crypto::ssh_ca::random_serial).
    i64::try_from(serial).unwrap_or(i64::MAX)
}

#[async_trait]
impl SshStore for SqlStore {
    async fn ssh_ca_keys(&self, target: &str) -> Result<Vec<StoredSshCa>> {
        let rows = sqlx::query(
            "SELECT id, target, public_key, sealed_private, created_at, retire_until \
             FROM ssh_ca_keys WHERE target = $1 ORDER BY created_at, id",
        )
        .bind(target.to_owned())
        .fetch_all(&self.reads)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredSshCa {
                    id: r.text("id")?,
                    target: r.text("target")?,
                    public_key: r.text("public_key")?,
                    sealed_private: r.text("sealed_private")?,
                    created_at: Timestamp::from_millis(r.int("created_at")?),
                    retire_until: r.opt_int("retire_until")?.map(Timestamp::from_millis),
                })
            })
            .collect()
    }

    async fn insert_first_ssh_ca(&self, key: &StoredSshCa) -> Result<bool> {
        let key = key.clone();
        self.write(move |tx, _cx| {
            Box::pin(async move {
                let n = sqlx::query(
                    "INSERT INTO ssh_ca_keys (id, target, public_key, sealed_private, created_at) \
                     SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS \
                     (SELECT 1 FROM ssh_ca_keys WHERE target = $2 AND retire_until IS NULL) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(key.id)
                .bind(key.target)
                .bind(key.public_key)
                .bind(key.sealed_private)
                .bind(key.created_at.as_millis())
                .execute_in(&mut *tx)
                .await?;
                Ok(n > 0)
            })
        })
        .await
    }

    async fn rotate_ssh_ca(
        &self,
        key: &StoredSshCa,
        retire_until: Timestamp,
        audit: AuditDraft,
    ) -> Result<()> {
        let key = key.clone();
        self.write(move |tx, cx| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE ssh_ca_keys SET retire_until = $1 WHERE target = $2 AND retire_until IS NULL",
                )
                .bind(retire_until.as_millis())
                .bind(key.target.clone())
                .execute_in(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO ssh_ca_keys (id, target, public_key, sealed_private, created_at, retire_until) \
                     VALUES ($1, $2, $3, $4, $5, NULL)",
                )
                .bind(key.id.clone())
                .bind(key.target.clone())
                .bind(key.public_key.clone())
                .bind(key.sealed_private.clone())
                .bind(key.created_at.as_millis())
                .execute_in(&mut *tx)
                .await
                .map_err(|e| {
                    conflict(e, || {
                        format!(
                            "another rotation of target {}'s SSH CA ran at the same time; rotate again",
                            key.target
                        )
                    })
                })?;
                cx.audit(vec![audit], key.created_at);
                Ok(())
            })
        })
        .await
    }

    async fn bind_ssh_key(&self, request: &RequestId, public_key: &str) -> Result<()> {
        let (request, key) = (request.to_string(), public_key.to_owned());
        self.write(move |tx, _cx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO ssh_request_keys (request_id, public_key) VALUES ($1, $2)",
                )
                .bind(request)
                .bind(key)
                .execute_in(&mut *tx)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn ssh_key_of(&self, request: &RequestId) -> Result<Option<String>> {
        let row = sqlx::query("SELECT public_key FROM ssh_request_keys WHERE request_id = $1")
            .bind(request.to_string())
            .fetch_optional(&self.reads)
            .await?;
        row.as_ref().map(|r| r.text("public_key")).transpose()
    }

    async fn record_ssh_cert(
        &self,
        cert: &SshCert,
        at: Timestamp,
        audit: AuditDraft,
    ) -> Result<Option<SshCert>> {
        let cert = cert.clone();
        self.write(move |tx, cx| {
            Box::pin(async move {
                let id = cert.grant_id.to_string();
                let inserted = sqlx::query(
                    "INSERT INTO ssh_certs (grant_id, target, ca_key_id, serial, certificate, valid_before) \
                     SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS \
                     (SELECT 1 FROM grants WHERE id = $1 AND state = 'active') \
                     ON CONFLICT DO NOTHING",
                )
                .bind(id.clone())
                .bind(cert.target.clone())
                .bind(cert.ca_key_id.clone())
                .bind(signed(cert.serial))
                .bind(cert.certificate.clone())
                .bind(cert.valid_before.as_millis())
                .execute_in(&mut *tx)
                .await?;
                if inserted > 0 {
                    cx.audit(vec![audit], at);
                }
                let row = sqlx::query(&format!(
                    "SELECT {CERT_COLUMNS} FROM ssh_certs WHERE grant_id = $1"
                ))
                .bind(id)
                .fetch_optional_in(&mut *tx)
                .await?;
                row.as_ref().map(cert_from).transpose()
            })
        })
        .await
    }

    async fn ssh_cert(&self, grant: &GrantId) -> Result<Option<SshCert>> {
        let row = sqlx::query(&format!(
            "SELECT {CERT_COLUMNS} FROM ssh_certs WHERE grant_id = $1"
        ))
        .bind(grant.to_string())
        .fetch_optional(&self.reads)
        .await?;
        row.as_ref().map(cert_from).transpose()
    }

    async fn revoke_ssh_cert(&self, grant: &GrantId, at: Timestamp) -> Result<bool> {
        let grant = grant.to_string();
        self.write(move |tx, _cx| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE ssh_certs SET revoked_at = $1 WHERE grant_id = $2 AND revoked_at IS NULL",
                )
                .bind(at.as_millis())
                .bind(grant.clone())
                .execute_in(&mut *tx)
                .await?;
                let row = sqlx::query("SELECT grant_id FROM ssh_certs WHERE grant_id = $1")
                    .bind(grant)
                    .fetch_optional_in(&mut *tx)
                    .await?;
                Ok(row.is_some())
            })
        })
        .await
    }

    async fn revoked_ssh_serials(
        &self,
        target: &str,
        now: Timestamp,
    ) -> Result<Vec<RevokedSerial>> {
        let rows = sqlx::query(
            "SELECT grant_id, ca_key_id, serial, revoked_at FROM ssh_certs \
             WHERE target = $1 AND revoked_at IS NOT NULL AND valid_before > $2 \
             ORDER BY ca_key_id, serial",
        )
        .bind(target.to_owned())
        .bind(now.as_millis())
        .fetch_all(&self.reads)
        .await?;
        rows.iter()
            .map(|r| {
                let id = r.text("grant_id")?;
                Ok(RevokedSerial {
                    ca_key_id: r.text("ca_key_id")?,
                    serial: serial_of(&id, r.int("serial")?)?,
                    revoked_at: Timestamp::from_millis(r.int("revoked_at")?),
                })
            })
            .collect()
    }
}
