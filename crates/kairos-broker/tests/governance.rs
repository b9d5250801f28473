//! The governance foundation on a manual clock: suspension ends grants through the one
//! end path and refuses requests; resume lifts it (but not an overdue recertification);
//! alerts open once per dedupe key and are handled by the people allowed to.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use kairos_broker::{AlertQuery, BrokerError};
use kairos_domain::{AuditKind, EndReason, GrantState, IdentityName, Principal};
use kairos_governance::{AlertDraft, AlertKind, AlertState, IdentityState, SuspensionCause};
use kairos_store::{AuditFilter, Raised, Role};
use support::{Fixture, ask, workload};

fn job() -> IdentityName {
    IdentityName::parse("job").unwrap()
}

fn operator() -> Principal {
    Principal::User(kairos_domain::UserName::parse("olga").unwrap())
}

#[tokio::test]
async fn suspension_ends_every_live_grant_and_refuses_requests_until_resumed() {
    let f = Fixture::new().await;
    let a = f
        .broker
        .request(&workload("job"), ask("api/read", "10m"))
        .await
        .unwrap();
    let b = f
        .broker
        .request(&workload("job"), ask("api/read", "20m"))
        .await
        .unwrap();
    let token = a.credential.unwrap().access_token().unwrap().to_owned();
    assert!(f.broker.introspect(&token).await.unwrap().active);

    // No reason: refused, nothing changes.
    let err = f
        .broker
        .suspend_identity(&job(), SuspensionCause::Manual, "  ", operator())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            BrokerError::Invalid {
                code: "missing_reason",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        f.broker.identity_status(&job()).await.unwrap().state,
        IdentityState::Active
    );
    assert!(f.broker.introspect(&token).await.unwrap().active);

    let out = f
        .broker
        .suspend_identity(
            &job(),
            SuspensionCause::Manual,
            "key leaked in CI logs",
            operator(),
        )
        .await
        .unwrap();
    assert_eq!(out.ended.len(), 2);
    assert_eq!(out.status.state, IdentityState::Suspended);
    // The tokens are inactive at once, and the ends go through the revocation worker.
    assert!(!f.broker.introspect(&token).await.unwrap().active);
    assert_eq!(f.broker.revoke_due().await.unwrap(), (2, 0));
    for id in [a.grant.unwrap().id, b.grant.unwrap().id] {
        let g = f.broker.store().get_grant(&id).await.unwrap().unwrap();
        match g.state {
            GrantState::Ended { end, receipt } => {
                assert_eq!(end.reason, EndReason::Suspended);
                assert_eq!(end.by, operator());
                assert!(receipt.verified_at >= end.at);
            }
            other => panic!("not ended: {other:?}"),
        }
    }

    // Requests are refused with a 403 that names the suspension and its reason.
    let err = f
        .broker
        .request(&workload("job"), ask("api/read", "5m"))
        .await
        .unwrap_err();
    match err {
        BrokerError::Forbidden(m) => {
            assert!(m.contains("job is suspended (manual)"), "{m}");
            assert!(m.contains("key leaked in CI logs"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    // Suspending twice is a conflict that changes nothing.
    let err = f
        .broker
        .suspend_identity(&job(), SuspensionCause::Manual, "again", operator())
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::Conflict(_)), "{err:?}");

    // An alert says so, once.
    let alerts = f
        .broker
        .alerts(
            &Fixture::person("al", Role::Auditor, &[]),
            &AlertQuery {
                kind: Some(AlertKind::IdentitySuspended),
                ..AlertQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].identity, Some(job()));

    // Resume: requests work again; the audit has both changes.
    f.broker
        .resume_identity(&job(), "key rotated", operator(), false)
        .await
        .unwrap();
    f.broker
        .request(&workload("job"), ask("api/read", "5m"))
        .await
        .unwrap();
    let kinds: Vec<AuditKind> = f
        .broker
        .store()
        .list_audit(&AuditFilter {
            identity: Some("job".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.kind)
        .collect();
    assert!(kinds.contains(&AuditKind::IdentitySuspended));
    assert!(kinds.contains(&AuditKind::IdentityResumed));
}

#[tokio::test]
async fn an_overdue_recertification_is_lifted_only_by_attestation_and_retirement_is_final() {
    let f = Fixture::new().await;
    f.broker
        .suspend_identity(
            &job(),
            SuspensionCause::RecertOverdue,
            "recertification overdue",
            Principal::System("governance"),
        )
        .await
        .unwrap();
    let err = f
        .broker
        .resume_identity(&job(), "please", operator(), false)
        .await
        .unwrap_err();
    match err {
        BrokerError::Conflict(m) => assert!(m.contains("kairos recert attest"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        f.broker.identity_status(&job()).await.unwrap().state,
        IdentityState::Suspended
    );
    f.broker
        .resume_identity(&job(), "attested by carol", operator(), true)
        .await
        .unwrap();

    f.broker
        .retire_identity(&job(), "service decommissioned", operator())
        .await
        .unwrap();
    let err = f
        .broker
        .resume_identity(&job(), "oops", operator(), false)
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::Conflict(_)), "{err:?}");
    let err = f
        .broker
        .request(&workload("job"), ask("api/read", "5m"))
        .await
        .unwrap_err();
    match err {
        BrokerError::Forbidden(m) => assert!(m.contains("retired"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Unknown identities are 404s, not new rows.
    let ghost = IdentityName::parse("ghost").unwrap();
    let err = f
        .broker
        .suspend_identity(&ghost, SuspensionCause::Manual, "x", operator())
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::NotFound(_)), "{err:?}");
    assert!(
        f.broker
            .store()
            .identity_state(&ghost)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_pending_request_of_a_suspended_identity_cannot_be_approved() {
    let f = Fixture::new().await;
    let pending = f
        .broker
        .request(&workload("job"), ask("api/admin", "10m"))
        .await
        .unwrap();
    f.broker
        .suspend_identity(&job(), SuspensionCause::Manual, "investigation", operator())
        .await
        .unwrap();
    let dave = Fixture::person("dave", Role::Approver, &["payments"]);
    let err = f
        .broker
        .approve(&dave, &pending.request.id, "ok".into())
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::Forbidden(_)), "{err:?}");
    let r = f
        .broker
        .store()
        .get_request(&pending.request.id)
        .await
        .unwrap()
        .unwrap();
    assert!(r.grant_id.is_none());
}

#[tokio::test]
async fn a_grant_issued_by_a_replica_that_had_not_heard_of_the_suspension_is_ended_by_the_pass() {
    let f = Fixture::new().await;
    // Another replica suspended the identity: the store has it, this broker's view not.
    let other = kairos_store::StateChange {
        to: kairos_governance::IdentityStatus {
            identity: job(),
            state: IdentityState::Suspended,
            cause: Some(SuspensionCause::Manual),
            reason: "elsewhere".into(),
            by: "user:olga".into(),
            since: f.broker.now(),
        },
        from: vec![IdentityState::Active],
        end: None,
        audit: Vec::new(),
        alert: None,
    };
    f.broker
        .store()
        .change_identity_state(other)
        .await
        .unwrap()
        .unwrap();
    let stale = f
        .broker
        .request(&workload("job"), ask("api/read", "10m"))
        .await
        .unwrap();
    f.broker.governance_pass().await.unwrap();
    let g = f
        .broker
        .store()
        .get_grant(&stale.grant.unwrap().id)
        .await
        .unwrap()
        .unwrap();
    match g.state {
        GrantState::Ending { end, .. } => assert_eq!(end.reason, EndReason::Suspended),
        other => panic!("still {other:?}"),
    }
    // And the view is now current: the next request is refused.
    assert!(
        f.broker
            .request(&workload("job"), ask("api/read", "5m"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn alerts_open_once_per_key_and_only_allowed_people_handle_them() {
    let f = Fixture::new().await;
    let draft = AlertDraft::new(AlertKind::UseAfterEnd, "grt_x", "token used after its end")
        .identity(&job());
    let first = f.broker.raise_alert(draft.clone()).await.unwrap();
    let Raised::Opened(alert) = first else {
        panic!("not opened")
    };
    let again = f.broker.raise_alert(draft.clone()).await.unwrap();
    match again {
        Raised::Repeated(a) => {
            assert_eq!(a.id, alert.id);
            assert_eq!(a.occurrences, 2);
        }
        other => panic!("{other:?}"),
    }

    // An approver of another team sees nothing of it, and cannot handle it.
    let stranger = Fixture::person("sam", Role::Approver, &["other"]);
    assert!(
        f.broker
            .alerts(&stranger, &AlertQuery::default())
            .await
            .unwrap()
            .is_empty()
    );
    let err = f
        .broker
        .update_alert(&stranger, &alert.id, AlertState::Resolved, "x")
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::NotFound(_)), "{err:?}");
    // An auditor reads but does not handle. (The fixture's identity is also orphaned:
    // its owner carol is no user here; that alert is another kind.)
    let auditor = Fixture::person("al", Role::Auditor, &[]);
    let this_kind = AlertQuery {
        kind: Some(AlertKind::UseAfterEnd),
        ..AlertQuery::default()
    };
    assert_eq!(
        f.broker.alerts(&auditor, &this_kind).await.unwrap().len(),
        1
    );
    let err = f
        .broker
        .update_alert(&auditor, &alert.id, AlertState::Acknowledged, "x")
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::Forbidden(_)), "{err:?}");
    // A workload is refused.
    let err = f
        .broker
        .alerts(&workload("job"), &AlertQuery::default())
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::Forbidden(_)), "{err:?}");

    // The team's approver handles it; a note is required; resolved is final.
    let dave = Fixture::person("dave", Role::Approver, &["payments"]);
    let err = f
        .broker
        .update_alert(&dave, &alert.id, AlertState::Resolved, " ")
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::Invalid { .. }), "{err:?}");
    let acked = f
        .broker
        .update_alert(&dave, &alert.id, AlertState::Acknowledged, "looking")
        .await
        .unwrap();
    assert_eq!(acked.state, AlertState::Acknowledged);
    let done = f
        .broker
        .update_alert(
            &dave,
            &alert.id,
            AlertState::Resolved,
            "token was a replay test",
        )
        .await
        .unwrap();
    assert_eq!(done.updated_by.as_deref(), Some("user:dave"));
    let err = f
        .broker
        .update_alert(&dave, &alert.id, AlertState::Acknowledged, "again")
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::Conflict(_)), "{err:?}");

    // Once resolved, the same thing seen again opens a new alert.
    let Raised::Opened(second) = f.broker.raise_alert(draft).await.unwrap() else {
        panic!("not reopened")
    };
    assert_ne!(second.id, alert.id);
    // Resolving by key (the condition went away) closes it, audited.
    let closed = f
        .broker
        .resolve_alert_key(&second.dedupe_key, "gone")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(closed.state, AlertState::Resolved);
    assert!(
        f.broker
            .resolve_alert_key(&second.dedupe_key, "gone")
            .await
            .unwrap()
            .is_none()
    );
    let kinds: Vec<AuditKind> = f
        .broker
        .store()
        .list_audit(&AuditFilter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|r| !r.data.contains("orphan"))
        .map(|r| r.kind)
        .collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == AuditKind::AlertRaised)
            .count(),
        2
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == AuditKind::AlertUpdated)
            .count(),
        3
    );
}

#[tokio::test]
async fn without_channels_the_dispatcher_skips_to_the_chains_end_and_a_new_channel_starts_there() {
    let f = Fixture::new().await;
    let store = f.broker.store();
    // Pending requests, events a channel for `request_pending` would take: more records
    // than a pass reads when it has channels to route them to (500).
    for _ in 0..260 {
        f.broker
            .request(&workload("job"), ask("api/admin", "10m"))
            .await
            .unwrap();
    }
    let end = store.audit_last_seq().await.unwrap();
    assert!(end > 500, "{end} records");
    assert!(store.notify_watermark().await.unwrap() < end);

    // No channel: nothing dispatched, and one pass takes the watermark to the chain's end.
    assert_eq!(f.broker.dispatch_notifications().await.unwrap(), 0);
    assert_eq!(store.notify_watermark().await.unwrap(), end);
    let all = kairos_store::NotificationFilter {
        state: None,
        channel: None,
        limit: 100,
    };
    assert!(store.list_notifications(&all).await.unwrap().is_empty());

    // A channel added now takes what happens from now on, not the earlier request.
    let secret = f.dir.path().join("hook-secret");
    std::fs::write(&secret, "a-secret-of-the-receiver").unwrap();
    f.apply(
        &support::config(&format!(
            r#"
[[notify]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:9/hook"
secret_file = "{}"
events = ["request_pending"]
"#,
            secret.display()
        )),
        support::POLICY,
    )
    .await;
    let second = f
        .broker
        .request(&workload("job"), ask("api/admin", "10m"))
        .await
        .unwrap();
    assert_eq!(f.broker.dispatch_notifications().await.unwrap(), 1);
    let rows = store.list_notifications(&all).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].event, "request_pending");
    assert!(
        rows[0].body.contains(second.request.id.as_str()),
        "the row is for the second request: {}",
        rows[0].body
    );
    assert_eq!(
        store.notify_watermark().await.unwrap(),
        store.audit_last_seq().await.unwrap()
    );
}
