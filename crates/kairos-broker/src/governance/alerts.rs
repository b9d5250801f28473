//! Alerts: raised by the rules, read and handled by people.

use kairos_domain::{AuditDraft, AuditKind, IdentityName, Principal, Timestamp};
use kairos_governance::{Alert, AlertDraft, AlertKind, AlertState};
use kairos_store::{AlertFilter, AlertWrite, Raised, Role};

use crate::{Broker, BrokerError, Caller, Result};

/// Which alerts a person asks for.
#[derive(Debug, Clone, Default)]
pub struct AlertQuery {
    pub state: Option<AlertState>,
    /// Open or acknowledged.
    pub unresolved: bool,
    pub kind: Option<AlertKind>,
    pub identity: Option<IdentityName>,
    pub limit: Option<u32>,
}

/// An alert to raise at `now`, with a fresh id and its `alert_raised` audit record: for
/// [`Broker::raise_alert`], or for a store write that raises it with the event it reports.
pub(crate) fn alert_write(draft: AlertDraft, now: Timestamp) -> AlertWrite {
    let id = format!("alr_{}", uuid::Uuid::now_v7().simple());
    let mapping = draft.kind.mapping();
    let mut audit = AuditDraft::new(AuditKind::AlertRaised, Principal::System("governance")).data(
        serde_json::json!({
            "alert": id,
            "kind": draft.kind.as_str(),
            "subject": draft.subject,
            "message": draft.message,
            "owasp_nhi": mapping.nhi.id(),
            "nist_csf": mapping.csf.iter().map(|c| c.id()).collect::<Vec<_>>(),
        }),
    );
    if let Some(identity) = &draft.identity {
        audit = audit.identity(identity);
    }
    AlertWrite {
        id,
        draft,
        at: now,
        audit,
    }
}

impl Broker {
    /// Opens an alert (or counts another occurrence of the same unresolved one), logs
    /// it, and moves the `kairos_alerts_open` gauge. A failure to record it is returned:
    /// an alert is never dropped silently.
    pub async fn raise_alert(&self, draft: AlertDraft) -> Result<Raised> {
        let w = alert_write(draft, self.now());
        let raised = self
            .store
            .raise_alert(&w.id, &w.draft, w.at, w.audit)
            .await?;
        if let Raised::Opened(alert) = &raised {
            self.alert_opened(alert);
        }
        Ok(raised)
    }

    /// After a store write that carried the alert with this id committed: when that
    /// alert opened (rather than counting one more occurrence of an unresolved one with
    /// its dedupe key, which keeps its own id), it is logged and counted. The alert is
    /// stored whatever this read does; a failed read only leaves the metrics short, and
    /// says so in the log.
    pub(crate) async fn alert_committed(&self, id: &str) {
        match self.store.get_alert(id).await {
            Ok(Some(alert)) => self.alert_opened(&alert),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(alert = id, error = %e, "could not read back an alert written with its event; kairos_alerts_raised_total may be short by one");
            }
        }
    }

    fn alert_opened(&self, alert: &Alert) {
        tracing::warn!(alert = %alert.id, kind = %alert.kind, subject = %alert.subject,
            message = %alert.message, "alert raised");
        self.metrics.alert_opened(alert.kind);
    }

    /// Resolves the unresolved alert with this dedupe key, if there is one: what it
    /// reported is over (say, an owner is back). Audited.
    pub async fn resolve_alert_key(&self, dedupe_key: &str, why: &str) -> Result<Option<Alert>> {
        let audit = AuditDraft::new(AuditKind::AlertUpdated, Principal::System("governance"))
            .data(serde_json::json!({"state": "resolved", "note": why}));
        let resolved = self
            .store
            .resolve_alert_by_key(dedupe_key, "system:governance", why, self.now(), audit)
            .await?;
        if let Some(a) = &resolved {
            self.metrics.alert_closed(a.kind);
        }
        Ok(resolved)
    }

    /// Alerts for people who may read them: admins, operators and auditors see every
    /// alert; an approver sees those of identities owned by their teams.
    pub async fn alerts(&self, caller: &Caller, q: &AlertQuery) -> Result<Vec<Alert>> {
        let user = caller.require_role(
            &[Role::Operator, Role::Auditor, Role::Approver],
            "read alerts",
        )?;
        let filter = AlertFilter {
            state: q.state,
            unresolved: q.unresolved,
            kind: q.kind,
            identity: q.identity.clone(),
            limit: q.limit,
        };
        let mut alerts = self.store.list_alerts(&filter).await?;
        if user.role == Role::Approver {
            let catalog = self.catalog();
            alerts.retain(|a| {
                a.identity
                    .as_ref()
                    .and_then(|i| catalog.identity(i))
                    .is_some_and(|i| user.teams.contains(&i.owner))
            });
        }
        Ok(alerts)
    }

    /// One alert, for a caller who may read it (others get the same 404 as for an
    /// unknown id).
    pub async fn alert(&self, caller: &Caller, id: &str) -> Result<Alert> {
        let user = caller.require_role(
            &[Role::Operator, Role::Auditor, Role::Approver],
            "read alerts",
        )?;
        let not_found = || BrokerError::NotFound(format!("alert {id} not found"));
        let alert = self.store.get_alert(id).await?.ok_or_else(not_found)?;
        if user.role == Role::Approver && !self.owns_alert(user, &alert) {
            return Err(not_found());
        }
        Ok(alert)
    }

    fn owns_alert(&self, user: &kairos_store::User, alert: &Alert) -> bool {
        let catalog = self.catalog();
        alert
            .identity
            .as_ref()
            .and_then(|i| catalog.identity(i))
            .is_some_and(|i| user.teams.contains(&i.owner))
    }

    /// Acknowledges or resolves an alert, with a note. Admins and operators may handle
    /// any alert; an approver those of identities their teams own; auditors only read.
    pub async fn update_alert(
        &self,
        caller: &Caller,
        id: &str,
        to: AlertState,
        note: &str,
    ) -> Result<Alert> {
        let user = caller.require_role(&[Role::Operator, Role::Approver], "handle alerts")?;
        if to == AlertState::Open {
            return Err(BrokerError::invalid(
                "bad_state",
                "an alert can be acknowledged or resolved, not opened again",
            ));
        }
        let note = note.trim();
        if note.is_empty() {
            return Err(BrokerError::invalid(
                "missing_note",
                "say what was done about it (`--note \"…\"`); it is kept in the audit log",
            ));
        }
        let not_found = || BrokerError::NotFound(format!("alert {id} not found"));
        let alert = self.store.get_alert(id).await?.ok_or_else(not_found)?;
        if user.role == Role::Approver && !self.owns_alert(user, &alert) {
            return Err(not_found());
        }
        let by = caller.principal();
        let mut audit = AuditDraft::new(AuditKind::AlertUpdated, &by).data(serde_json::json!({
            "alert": id,
            "kind": alert.kind.as_str(),
            "state": to.as_str(),
            "note": note,
        }));
        if let Some(identity) = &alert.identity {
            audit = audit.identity(identity);
        }
        let updated = self
            .store
            .update_alert(id, to, &by.to_string(), note, self.now(), audit)
            .await?;
        if to == AlertState::Resolved {
            self.metrics.alert_closed(updated.kind);
        }
        Ok(updated)
    }

    /// Sets the `kairos_alerts_open` gauge from the store (at start and on each pass).
    pub async fn refresh_alert_gauges(&self) -> Result<()> {
        let counts = self.store.unresolved_alert_counts().await?;
        self.metrics.set_alerts_open(&counts);
        Ok(())
    }
}
