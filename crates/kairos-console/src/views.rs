//! What the templates show: plain strings, made from domain objects once, with caller
//! text cleaned (see [`crate::text`]). HTML escaping is the templates' (askama's default).

use kairos_config::Catalog;
use kairos_domain::{AuditRecord, DecisionOutcome, Grant, GrantState, Request};

use crate::text::clean;

/// The header of every page for a signed-in person.
pub struct Me {
    pub user: String,
    pub role: String,
    /// For the sign-out form.
    pub csrf: String,
    /// May read what spans every team (audit, posture, notifications): admins, operators,
    /// auditors. The navigation shows those pages only to them.
    pub reads_estate: bool,
}

pub struct RequestRow {
    pub id: String,
    pub state: String,
    pub identity: String,
    pub owner_team: String,
    pub entitlement: String,
    pub tier: String,
    pub ttl: String,
    pub task_kind: String,
    pub task_ref: String,
    pub task_reason: String,
    pub requester: String,
    pub created_at: String,
    pub pending_until: String,
    pub approvals_have: usize,
    pub approvals_need: u32,
    pub policies: String,
    pub decision_reason: String,
    pub approvals: Vec<ApprovalRow>,
    pub denial: Option<ApprovalRow>,
    pub grant_id: Option<String>,
    pub renews: Option<String>,
    pub source: String,
}

pub struct ApprovalRow {
    pub by: String,
    pub at: String,
    pub reason: String,
}

fn approval(a: &kairos_domain::Approval) -> ApprovalRow {
    ApprovalRow {
        by: a.approver.to_string(),
        at: a.at.to_rfc3339(),
        reason: clean(&a.reason),
    }
}

impl RequestRow {
    pub fn new(r: &Request, catalog: &Catalog) -> Self {
        let identity = catalog.identity(&r.identity);
        let entitlement = catalog.entitlement(&r.entitlement);
        let approvals_need = match r.decision.outcome {
            DecisionOutcome::Pending { approvals } => approvals,
            _ => 0,
        };
        Self {
            id: r.id.to_string(),
            state: r.state.as_str().into(),
            identity: r.identity.to_string(),
            owner_team: identity
                .map_or_else(|| "(no longer configured)".into(), |i| i.owner.to_string()),
            entitlement: r.entitlement.to_string(),
            tier: entitlement.map_or_else(|| "-".into(), |e| e.tier.as_str().into()),
            ttl: r.ttl.to_string(),
            task_kind: r.task.kind.to_string(),
            task_ref: clean(r.task.reference.as_str()),
            task_reason: clean(&r.task.reason),
            requester: r.requester.to_string(),
            created_at: r.created_at.to_rfc3339(),
            pending_until: r.pending_until.map(|t| t.to_rfc3339()).unwrap_or_default(),
            approvals_have: r.approvals.len(),
            approvals_need,
            policies: clean(&r.decision.policies.join(", ")),
            decision_reason: clean(&r.decision.reason),
            approvals: r.approvals.iter().map(approval).collect(),
            denial: r.denial.as_ref().map(approval),
            grant_id: r.grant_id.as_ref().map(ToString::to_string),
            renews: r.renews.as_ref().map(ToString::to_string),
            source: r.source_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        }
    }
}

pub struct GrantRow {
    pub id: String,
    pub state: String,
    pub request_id: String,
    pub identity: String,
    pub entitlement: String,
    pub target: String,
    pub account: String,
    pub task_kind: String,
    pub task_ref: String,
    pub task_reason: String,
    pub issued_at: String,
    pub expires_at: String,
    pub live: bool,
    pub receipt: Option<ReceiptRow>,
}

pub struct ReceiptRow {
    pub reason: String,
    pub ended_by: String,
    pub ended_at: String,
    pub revoked_at: String,
    pub verified_at: String,
    pub method: String,
    pub evidence: String,
    pub attempts: u32,
    pub last_error: String,
}

impl GrantRow {
    pub fn new(g: &Grant) -> Self {
        let receipt = match &g.state {
            GrantState::Provisioning | GrantState::Active => None,
            GrantState::Ending {
                end,
                attempts,
                last_error,
            } => Some(ReceiptRow {
                reason: end.reason.to_string(),
                ended_by: end.by.to_string(),
                ended_at: end.at.to_rfc3339(),
                revoked_at: String::new(),
                verified_at: String::new(),
                method: String::new(),
                evidence: String::new(),
                attempts: *attempts,
                last_error: clean(last_error.as_deref().unwrap_or_default()),
            }),
            GrantState::Ended { end, receipt } => Some(ReceiptRow {
                reason: end.reason.to_string(),
                ended_by: end.by.to_string(),
                ended_at: end.at.to_rfc3339(),
                revoked_at: receipt.revoked_at.to_rfc3339(),
                verified_at: receipt.verified_at.to_rfc3339(),
                method: clean(&receipt.method),
                evidence: clean(&receipt.evidence),
                attempts: 0,
                last_error: String::new(),
            }),
        };
        Self {
            id: g.id.to_string(),
            state: g.state.name().into(),
            request_id: g.request_id.to_string(),
            identity: g.identity.to_string(),
            entitlement: g.entitlement.to_string(),
            target: g.target.to_string(),
            account: g.account.clone().unwrap_or_default(),
            task_kind: g.task.kind.to_string(),
            task_ref: clean(g.task.reference.as_str()),
            task_reason: clean(&g.task.reason),
            issued_at: g.issued_at.to_rfc3339(),
            expires_at: g.expires_at.to_rfc3339(),
            live: matches!(g.state, GrantState::Active | GrantState::Provisioning),
            receipt,
        }
    }
}

pub struct AuditRow {
    pub seq: i64,
    pub at: String,
    pub kind: String,
    pub actor: String,
    pub identity: String,
    pub request_id: String,
    pub grant_id: String,
    pub task_ref: String,
    pub data: String,
}

impl AuditRow {
    pub fn new(r: &AuditRecord) -> Self {
        Self {
            seq: r.seq,
            at: r.at.to_rfc3339(),
            kind: r.kind.as_str().into(),
            actor: clean(&r.actor),
            identity: clean(r.identity.as_deref().unwrap_or_default()),
            request_id: r.request_id.clone().unwrap_or_default(),
            grant_id: r.grant_id.clone().unwrap_or_default(),
            task_ref: clean(r.task_ref.as_deref().unwrap_or_default()),
            data: clean(&r.data),
        }
    }
}
