//! The identity lifecycle: live grants with their request's facts, people who can act,
//! and orphan flags.

use async_trait::async_trait;
use kairos_domain::{AuditDraft, IdentityName, Timestamp};

use super::SqlStore;
use super::codec::{live_grant_from_row, orphan_from_row, person_from_row};
use super::db::RunIn;
use crate::{LifecycleStore, LiveGrant, OrphanRecord, Person, Result};

/// A live grant joined with its request, and whether its own after-action review is
/// open; ordered by grant id.
const LIVE_GRANTS: &str = "SELECT g.id AS id, g.identity AS identity, \
     g.entitlement AS entitlement, g.target AS target, g.task_kind AS task_kind, \
     g.task_ref AS task_ref, g.task_reason AS task_reason, g.issued_at AS issued_at, \
     g.expires_at AS expires_at, r.requester AS requester, r.ttl_secs AS ttl_secs, \
     r.source_ip AS source_ip, \
     (SELECT COUNT(*) FROM reviews v WHERE v.grant_id = g.id AND v.state = 'open') \
     AS own_open_reviews \
     FROM grants g JOIN requests r ON r.id = g.request_id \
     WHERE g.state IN ('active', 'provisioning')";

const ORPHAN_COLUMNS: &str = "identity, team, detected_at, suspended_at";

#[async_trait]
impl LifecycleStore for SqlStore {
    async fn live_grant_facts(&self, issued_from: Option<Timestamp>) -> Result<Vec<LiveGrant>> {
        let rows = match issued_from {
            None => {
                sqlx::query(&format!("{LIVE_GRANTS} ORDER BY g.id"))
                    .fetch_all(&self.reads)
                    .await?
            }
            Some(from) => {
                sqlx::query(&format!(
                    "{LIVE_GRANTS} AND g.issued_at >= $1 ORDER BY g.id"
                ))
                .bind(from.as_millis())
                .fetch_all(&self.reads)
                .await?
            }
        };
        rows.iter().map(live_grant_from_row).collect()
    }

    async fn people(&self) -> Result<Vec<Person>> {
        let rows = sqlx::query(
            "SELECT u.name AS name, u.role AS role, u.disabled_at AS disabled_at, \
             (SELECT COUNT(*) FROM api_tokens t \
              WHERE t.user_name = u.name AND t.revoked_at IS NULL) AS live_tokens \
             FROM users u ORDER BY u.name",
        )
        .fetch_all(&self.reads)
        .await?;
        rows.iter().map(person_from_row).collect()
    }

    async fn orphans(&self) -> Result<Vec<OrphanRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {ORPHAN_COLUMNS} FROM identity_orphans ORDER BY identity"
        ))
        .fetch_all(&self.reads)
        .await?;
        rows.iter().map(orphan_from_row).collect()
    }

    async fn orphans_of(&self, identities: &[IdentityName]) -> Result<Vec<OrphanRecord>> {
        let keys: Vec<&str> = identities.iter().map(IdentityName::as_str).collect();
        let select = format!("SELECT {ORPHAN_COLUMNS} FROM identity_orphans WHERE");
        let rows =
            super::bulk::rows_keyed(&self.reads, self.backend, &select, "identity", &keys).await?;
        let mut flags = rows
            .iter()
            .map(orphan_from_row)
            .collect::<Result<Vec<_>>>()?;
        flags.sort_by(|a, b| a.identity.cmp(&b.identity));
        Ok(flags)
    }

    async fn flag_orphans(
        &self,
        orphans: Vec<(OrphanRecord, AuditDraft, Option<crate::AlertWrite>)>,
        at: Timestamp,
    ) -> Result<Vec<IdentityName>> {
        if orphans.is_empty() {
            return Ok(Vec::new());
        }
        self.write(move |tx, cx| {
            Box::pin(async move {
                let mut flagged = Vec::new();
                let mut drafts = Vec::new();
                let mut alerts = Vec::new();
                for (o, draft, alert) in orphans {
                    let inserted = sqlx::query(
                        "INSERT INTO identity_orphans (identity, team, detected_at, suspended_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (identity) DO NOTHING",
                    )
                    .bind(o.identity.as_str().to_owned())
                    .bind(o.team.as_str().to_owned())
                    .bind(o.detected_at.as_millis())
                    .bind(o.suspended_at.map(Timestamp::as_millis))
                    .execute_in(&mut *tx)
                    .await?;
                    if inserted == 1 {
                        flagged.push(o.identity);
                        drafts.push(draft);
                        alerts.extend(alert);
                    }
                }
                cx.audit(drafts, at);
                super::governance::raise_alerts_in(tx, &cx, alerts).await?;
                Ok(flagged)
            })
        })
        .await
    }

    async fn clear_orphans(
        &self,
        cleared: Vec<(IdentityName, AuditDraft)>,
        at: Timestamp,
    ) -> Result<Vec<IdentityName>> {
        if cleared.is_empty() {
            return Ok(Vec::new());
        }
        self.write(move |tx, cx| {
            Box::pin(async move {
                let mut done = Vec::new();
                let mut drafts = Vec::new();
                for (identity, draft) in cleared {
                    let deleted = sqlx::query("DELETE FROM identity_orphans WHERE identity = $1")
                        .bind(identity.as_str().to_owned())
                        .execute_in(&mut *tx)
                        .await?;
                    if deleted == 1 {
                        done.push(identity);
                        drafts.push(draft);
                    }
                }
                cx.audit(drafts, at);
                Ok(done)
            })
        })
        .await
    }

    async fn mark_orphan_suspended(
        &self,
        identity: &IdentityName,
        detected_at: Timestamp,
        at: Timestamp,
    ) -> Result<bool> {
        let identity = identity.as_str().to_owned();
        self.write(move |tx, _| {
            Box::pin(async move {
                let marked = sqlx::query(
                    "UPDATE identity_orphans SET suspended_at = $1 \
                     WHERE identity = $2 AND detected_at = $3 AND suspended_at IS NULL",
                )
                .bind(at.as_millis())
                .bind(identity)
                .bind(detected_at.as_millis())
                .execute_in(&mut *tx)
                .await?;
                Ok(marked == 1)
            })
        })
        .await
    }
}
