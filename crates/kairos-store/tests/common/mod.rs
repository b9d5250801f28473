//! Fixtures shared by the store suites.

use kairos_domain::{
    AuditDraft, AuditKind, Decision, DecisionOutcome, EntitlementName, Grant, GrantId, GrantState,
    IdentityName, Principal, Request, RequestId, RequestState, TargetName, Task, TaskKind, TaskRef,
    Timestamp, Ttl,
};
use kairos_store::{SqlStore, Store};

/// An active token grant of an hour (its cap two), issued at `issued_at` and inserted with
/// its request.
pub async fn insert_active_grant(s: &SqlStore, issued_at: Timestamp) -> Grant {
    let identity = IdentityName::parse("billing-batch").unwrap();
    let request_id = RequestId::generate();
    let task = Task::new(
        TaskKind::Change,
        TaskRef::parse("CHG-1").unwrap(),
        "nightly export".into(),
    )
    .unwrap();
    let grant = Grant {
        id: GrantId::generate(),
        request_id: request_id.clone(),
        identity: identity.clone(),
        entitlement: EntitlementName::parse("orders-api/read").unwrap(),
        target: TargetName::parse("orders-api").unwrap(),
        audience: "orders-api".into(),
        scopes: vec!["orders:read".into()],
        task: task.clone(),
        issued_at,
        expires_at: Timestamp::from_millis(issued_at.as_millis() + 3_600_000),
        max_expires_at: Timestamp::from_millis(issued_at.as_millis() + 7_200_000),
        account: None,
        sealed_secret: None,
        state: GrantState::Active,
    };
    let request = Request {
        id: request_id,
        identity: identity.clone(),
        entitlement: grant.entitlement.clone(),
        ttl: Ttl::parse("1h").unwrap(),
        task,
        requester: Principal::Workload(identity),
        decision: Decision {
            outcome: DecisionOutcome::Grant,
            policies: vec!["policy0".into()],
            reason: "allowed".into(),
        },
        state: RequestState::Granted,
        approvals: vec![],
        denial: None,
        created_at: issued_at,
        pending_until: None,
        grant_id: Some(grant.id.clone()),
        renews: None,
        source_ip: None,
    };
    let drafts = vec![
        AuditDraft::new(AuditKind::Requested, &request.requester).request(&request.id),
        AuditDraft::new(AuditKind::Issued, "system:broker").grant(&grant.id),
    ];
    s.insert_request(&request, Some(&grant), drafts)
        .await
        .unwrap();
    grant
}
