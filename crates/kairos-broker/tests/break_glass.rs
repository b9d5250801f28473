//! Break-glass and after-action reviews on an injectable clock: granted at once with a
//! review, overdue reviews escalate once, only owners file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use kairos_broker::{Broker, BrokerError, Caller, NewRequest, ReviewStatus};
use kairos_domain::{
    AuditKind, Clock, EntitlementName, IdentityName, Principal, RequestState, ReviewState, Task,
    TaskKind, TaskRef, Timestamp, Ttl, UserName,
};
use kairos_store::{AuditFilter, ReviewFilter, ReviewStateFilter, Role, User};
use support::Fixture;

const CONFIG: &str = r#"
[[issuer]]
name = "ci"
issuer = "https://ci.example.com"
audience = "kairos"
jwks_file = "jwks.json"

[[team]]
name = "payments"
owners = ["carol"]
approvers = ["alice"]

[[identity]]
name = "job"
owner = "payments"
kind = "ci-job"
issuer = "ci"
subject = "repo:acme/job"

[[target]]
name = "api"
kind = "token"
audience = "https://api"

[[entitlement]]
name = "api/breakglass"
tier = "high"
max_ttl = "30m"
scopes = ["admin"]
break_glass = true

[[entitlement]]
name = "api/approved-breakglass"
tier = "high"
max_ttl = "30m"
scopes = ["admin"]
break_glass = true

[policy]
files = ["p.cedar"]
"#;

/// One break-glass at a time: a second is denied while a review of the identity is open.
const POLICY: &str = r#"
@id("break-glass")
permit (principal, action == Kairos::Action::"request", resource == Kairos::Entitlement::"api/breakglass")
when { context.break_glass && context.open_reviews < 1 };

@id("approved-break-glass")
@approvals("1")
permit (principal, action == Kairos::Action::"request", resource == Kairos::Entitlement::"api/approved-breakglass");
"#;

async fn fixture() -> Fixture {
    Fixture::with(CONFIG, POLICY).await
}

fn workload() -> Caller {
    Caller::Workload {
        identity: IdentityName::parse("job").unwrap(),
    }
}

fn person(name: &str, role: Role) -> Caller {
    Caller::User(User {
        name: UserName::parse(name).unwrap(),
        role,
        teams: vec![],
        targets: vec![],
        created_at: Timestamp::from_millis(0),
    })
}

fn ask(entitlement: &str, kind: TaskKind) -> NewRequest {
    NewRequest {
        identity: None,
        entitlement: EntitlementName::parse(entitlement).unwrap(),
        ttl: Some(Ttl::parse("15m").unwrap()),
        task: Task::new(
            kind,
            TaskRef::parse("INC-7").unwrap(),
            "orders are failing".into(),
        )
        .unwrap(),
        source: None,
        proof: None,
        client_cert: None,
        public_key: None,
    }
}

async fn kinds(broker: &Broker, grant: &str) -> Vec<AuditKind> {
    let mut records = broker
        .store()
        .list_audit(&AuditFilter {
            grant_id: Some(grant.into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    records.reverse();
    records.into_iter().map(|r| r.kind).collect()
}

const DAY: Duration = Duration::from_secs(24 * 3600);

#[tokio::test]
async fn a_review_overdue_on_the_clock_escalates_once_and_an_owner_files_it() {
    let f = fixture().await;
    let out = f
        .broker
        .request(&workload(), ask("api/breakglass", TaskKind::Incident))
        .await
        .unwrap();
    assert_eq!(out.request.state, RequestState::Granted);
    let grant = out.grant.unwrap();
    let review_id = out.review.expect("a break-glass grant names its review");
    let review = f
        .broker
        .get_review(&person("ann", Role::Auditor), &review_id)
        .await
        .unwrap();
    assert_eq!(review.status, ReviewStatus::Open);
    assert_eq!(review.review.grant_id, grant.id);
    // Due 72 h (the default) after the grant.
    assert_eq!(review.review.due_at, grant.issued_at.plus(3 * DAY));

    // One millisecond before it is due: nothing to escalate.
    f.clock.advance(3 * DAY - Duration::from_millis(1));
    assert!(f.broker.review_pass().await.unwrap().escalated.is_empty());
    // Due: it escalates, once.
    f.clock.advance(Duration::from_millis(1));
    let pass = f.broker.review_pass().await.unwrap();
    assert_eq!(pass.escalated.len(), 1);
    assert_eq!(pass.escalated[0].id, review_id);
    assert_eq!(pass.escalated[0].escalated_at, Some(f.clock.now()));
    f.clock.advance(DAY);
    assert!(f.broker.review_pass().await.unwrap().escalated.is_empty());
    let overdue = f
        .broker
        .list_reviews(
            &person("ann", Role::Auditor),
            &ReviewFilter {
                state: Some(ReviewStateFilter::Overdue {
                    now: f.broker.now(),
                }),
                ..ReviewFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(overdue.len(), 1);
    assert_eq!(overdue[0].status, ReviewStatus::Escalated);

    // Not an owner (an operator, an admin): 403, nothing changes.
    for outsider in [person("dave", Role::Operator), person("root", Role::Admin)] {
        let refused = f
            .broker
            .file_review(&outsider, &review_id, "all fine")
            .await
            .unwrap_err();
        assert!(matches!(refused, BrokerError::Forbidden(_)), "{refused:?}");
    }
    assert!(matches!(
        f.broker.file_review(&workload(), &review_id, "mine").await,
        Err(BrokerError::Forbidden(_))
    ));
    // An owner with an empty summary: 400.
    assert!(matches!(
        f.broker
            .file_review(&person("carol", Role::Approver), &review_id, "  ")
            .await,
        Err(BrokerError::Invalid { .. })
    ));
    // The owner files it.
    let filed = f
        .broker
        .file_review(
            &person("carol", Role::Approver),
            &review_id,
            "rolled back the bad deploy",
        )
        .await
        .unwrap();
    assert_eq!(filed.status, ReviewStatus::Filed);
    match &filed.review.state {
        ReviewState::Filed(filing) => {
            assert_eq!(filing.by.as_str(), "carol");
            assert_eq!(filing.at, f.clock.now());
            assert_eq!(filing.summary, "rolled back the bad deploy");
        }
        ReviewState::Open => panic!("not filed"),
    }
    // Filed is final.
    assert!(matches!(
        f.broker
            .file_review(&person("carol", Role::Approver), &review_id, "again")
            .await,
        Err(BrokerError::Conflict(_))
    ));
    assert_eq!(
        kinds(&f.broker, grant.id.as_str()).await,
        [
            // Granted on the spot: one record with the request and its decision.
            AuditKind::Issued,
            AuditKind::ReviewOpened,
            AuditKind::ReviewEscalated,
            AuditKind::ReviewFiled,
        ]
    );
}

#[tokio::test]
async fn open_reviews_reach_policy_and_only_incidents_break_glass() {
    let f = fixture().await;
    // Not an incident: refused before policy, nothing written.
    let refused = f
        .broker
        .request(&workload(), ask("api/breakglass", TaskKind::Change))
        .await
        .unwrap_err();
    match refused {
        BrokerError::Invalid { code, message } => {
            assert_eq!(code, "break_glass_incident_only");
            assert!(message.contains("incident"), "{message}");
        }
        other => panic!("not a 400: {other:?}"),
    }
    assert!(
        f.broker
            .store()
            .audit_page(0, 100)
            .await
            .unwrap()
            .iter()
            // Nothing about the refused request: only the configuration and what the
            // governance rules found in it (the fixture's team owner is no user: orphaned).
            .all(|r| matches!(
                r.kind,
                AuditKind::ConfigApplied | AuditKind::IdentityOrphaned | AuditKind::AlertRaised
            ))
    );

    let first = f
        .broker
        .request(&workload(), ask("api/breakglass", TaskKind::Incident))
        .await
        .unwrap();
    // A review is open: `context.open_reviews < 1` denies the second.
    let second = f
        .broker
        .request(&workload(), ask("api/breakglass", TaskKind::Incident))
        .await
        .unwrap_err();
    assert!(matches!(second, BrokerError::Denied(_)), "{second:?}");
    // Filed: break-glass works again.
    f.broker
        .file_review(
            &person("carol", Role::Approver),
            first.review.as_ref().unwrap(),
            "done",
        )
        .await
        .unwrap();
    let third = f
        .broker
        .request(&workload(), ask("api/breakglass", TaskKind::Incident))
        .await
        .unwrap();
    assert!(third.review.is_some());
    assert_ne!(third.review, first.review);
}

/// Policy that sends a break-glass request to approvals keeps it pending (break-glass does
/// not skip approvals); the approval that issues the grant opens its review with it.
#[tokio::test]
async fn a_pending_break_glass_request_opens_its_review_when_approved() {
    let f = fixture().await;
    let out = f
        .broker
        .request(
            &workload(),
            ask("api/approved-breakglass", TaskKind::Incident),
        )
        .await
        .unwrap();
    assert_eq!(out.request.state, RequestState::Pending);
    assert!(out.grant.is_none() && out.review.is_none());
    assert!(
        f.broker
            .store()
            .list_reviews(&ReviewFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    let approved = f
        .broker
        .approve(
            &person("alice", Role::Approver),
            &out.request.id,
            "go".into(),
        )
        .await
        .unwrap();
    let grant = approved.grant.unwrap();
    let review = approved.review.unwrap();
    let stored = f
        .broker
        .store()
        .review_of_grant(&grant.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.id, review);
    assert_eq!(
        stored.requester,
        Principal::Workload(IdentityName::parse("job").unwrap())
    );
    // Reading the request again names the review too.
    let read = f
        .broker
        .get_request(&workload(), &out.request.id, None)
        .await
        .unwrap();
    assert_eq!(read.review, Some(review));
}
