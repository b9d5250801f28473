//! The store suite: every behaviour is one `async fn` over a fresh database, run once on
//! SQLite (a temporary file) and once on PostgreSQL (a database of its own, dropped after).
//!
//! PostgreSQL: `postgres://postgres@127.0.0.1:5432/postgres` unless `KAIROS_TEST_PG` names
//! another admin URL.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use kairos_domain::{
    Approval, ApprovalProgress, AuditDraft, AuditKind, ChainVerifier, Decision, DecisionOutcome,
    EndReason, EntitlementName, Grant, GrantEnd, GrantId, GrantState, IdentityName, ManualClock,
    Principal, Receipt, Request, RequestId, RequestState, TargetName, Task, TaskKind, TaskRef,
    TeamName, Timestamp, TransitionError, Ttl, UserName, verify_chain,
};
use kairos_store::{
    AlertFilter, AuditFilter, BootstrapOutcome, Counts, EndSelector, GovernanceStore, GrantFilter,
    GrantStateFilter, GrantUse, IdentityRequests, IdentitySource, Raised, RequestChange,
    RequestFilter, Role, SqlStore, StateChange, Store, StoreError, StoredKey, StoredToken,
    UsageBatch, UsageStore, User,
};
use sqlx::Connection;

// ---- harness (kairos-testkit's store suite) ---------------------------------------------

use kairos_testkit::StoreDb as Db;

/// Opens the case's store.
trait Open {
    async fn open(&self) -> SqlStore;
}

impl Open for Db {
    async fn open(&self) -> SqlStore {
        SqlStore::connect(self.url()).await.unwrap()
    }
}

kairos_testkit::store_suite!(
    request_round_trips_every_field,
    a_busy_targets_revocations_stay_unclaimed,
    config_save_ends_its_orphans,
    lists_filter_requests_and_grants,
    approval_issues_a_grant,
    refused_change_writes_nothing,
    pending_requests_expire,
    end_grants_by_each_selector,
    expirer_ends_only_due_grants_in_order,
    revocation_fails_retries_and_completes,
    lapsed_lease_is_claimable_again,
    claims_in_hand_are_kept_past_their_lease,
    an_end_can_claim_its_token_grants_jobs,
    next_expiry_and_counts,
    audit_chain_verifies_across_transactions,
    audit_filters,
    tampering_breaks_the_chain_at_the_edited_record,
    concurrent_appends_keep_one_chain,
    replicas_append_to_one_chain,
    deleted_tail_is_caught_by_the_head,
    replicas_share_work_without_doing_it_twice,
    signing_keys_lifecycle,
    users_and_tokens,
    bootstrap_token_is_replaced,
    config_versions,
    data_survives_reopening,
    provisioning_grants_activate_or_abort,
    concurrent_writes_commit_together_and_fail_alone,
    concurrent_new_requests_and_grants_round_trip,
    replicas_issue_to_one_chain,
    grant_updates_in_one_batch_fail_alone,
    a_password_delivery_is_claimed_once,
    deliveries_from_before_0003_stay_claimed,
    revocations_complete_together_each_on_its_own,
    large_claims_come_in_queue_order,
    an_approved_renewal_extends_its_grant_and_the_grant_s_audit_has_its_requests,
    usage_batches_merge_across_flushes_and_replicas,
    identity_activity_and_sources,
    held_candidates_are_unused_active_grants,
    usage_flags_are_set_once,
    identity_states_change_once_and_end_the_identity_s_grants,
    alerts_open_once_per_key_and_move_forward_only,
    posture_figures_are_the_same_before_and_after_folding,
    posture_live_grants_are_spread_over_their_days,
    an_end_with_a_note_keeps_it_in_each_audit_record,
);

// ---- fixtures ---------------------------------------------------------------------------

const T0: i64 = 1_800_000_000_000;

fn at(offset_ms: i64) -> Timestamp {
    Timestamp::from_millis(T0 + offset_ms)
}

fn user(name: &str) -> UserName {
    UserName::parse(name).unwrap()
}

fn task(reference: &str) -> Task {
    Task::new(
        TaskKind::Change,
        TaskRef::parse(reference).unwrap(),
        "rotate the orders database password".into(),
    )
    .unwrap()
}

/// A pending request of `identity` for `task_ref` that needs `approvals` approvals.
fn pending(identity: &str, task_ref: &str, approvals: u32) -> Request {
    Request {
        id: RequestId::generate(),
        identity: IdentityName::parse(identity).unwrap(),
        entitlement: EntitlementName::parse("orders-db/readonly").unwrap(),
        ttl: Ttl::parse("15m").unwrap(),
        task: task(task_ref),
        requester: Principal::User(user("olivia")),
        decision: Decision {
            outcome: DecisionOutcome::Pending { approvals },
            policies: vec!["policy0".into(), "prod-needs-approval".into()],
            reason: "production needs an approval".into(),
        },
        state: RequestState::Pending,
        approvals: vec![],
        denial: None,
        created_at: at(0),
        pending_until: Some(at(3_600_000)),
        grant_id: None,
        renews: None,
        source_ip: None,
    }
}

/// A request policy granted at once, with its active grant expiring at `expires`.
fn granted(identity: &str, task_ref: &str, expires: i64) -> (Request, Grant) {
    let mut request = pending(identity, task_ref, 0);
    request.decision.outcome = DecisionOutcome::Grant;
    request.requester = Principal::Workload(request.identity.clone());
    request.pending_until = None;
    let grant = grant_for(&request, expires);
    request.state = RequestState::Granted;
    request.grant_id = Some(grant.id.clone());
    (request, grant)
}

fn grant_for(request: &Request, expires: i64) -> Grant {
    Grant {
        id: GrantId::generate(),
        request_id: request.id.clone(),
        identity: request.identity.clone(),
        entitlement: request.entitlement.clone(),
        target: TargetName::parse("orders-db").unwrap(),
        audience: "orders-db".into(),
        scopes: vec!["select".into(), "connect".into()],
        task: request.task.clone(),
        issued_at: at(0),
        expires_at: at(expires),
        max_expires_at: at(expires + 3_600_000),
        account: Some(format!("kairos_{}", &grant_hex())),
        sealed_secret: Some("v1.c2VhbGVk".into()),
        state: GrantState::Active,
    }
}

fn grant_hex() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

async fn insert_granted(s: &SqlStore, identity: &str, task_ref: &str, expires: i64) -> Grant {
    let (request, grant) = granted(identity, task_ref, expires);
    let drafts = vec![
        AuditDraft::new(AuditKind::Requested, &request.requester).request(&request.id),
        AuditDraft::new(AuditKind::Issued, "system:broker").grant(&grant.id),
    ];
    s.insert_request(&request, Some(&grant), drafts)
        .await
        .unwrap();
    grant
}

fn end_by(reason: EndReason, offset: i64) -> GrantEnd {
    GrantEnd {
        reason,
        by: Principal::User(user("oscar")),
        at: at(offset),
    }
}

fn receipt(offset: i64) -> Receipt {
    Receipt {
        revoked_at: at(offset),
        verified_at: at(offset + 5),
        method: "pg_roles+login".into(),
        evidence: "role kairos_grt_x absent; login refused".into(),
    }
}

async fn all_audit(s: &SqlStore) -> Vec<kairos_domain::AuditRecord> {
    s.audit_page(0, u32::MAX).await.unwrap()
}

fn kinds(records: &[kairos_domain::AuditRecord]) -> Vec<AuditKind> {
    records.iter().map(|r| r.kind).collect()
}

fn ids(grants: &[Grant]) -> Vec<GrantId> {
    grants.iter().map(|g| g.id.clone()).collect()
}

// ---- requests and grants -------------------------------------------------------------------

async fn request_round_trips_every_field(db: Arc<Db>) {
    let s = db.open().await;

    // Every optional field set.
    let mut full = pending("nightly-backup", "CHG-1234", 3);
    full.approvals = vec![Approval {
        approver: user("alice"),
        at: at(10),
        reason: "looks right".into(),
    }];
    full.denial = Some(Approval {
        approver: user("bob"),
        at: at(20),
        reason: "not on a friday".into(),
    });
    full.state = RequestState::Denied;
    full.source_ip = Some("2001:db8::7".parse().unwrap());
    s.insert_request(&full, None, vec![]).await.unwrap();
    assert_eq!(s.get_request(&full.id).await.unwrap(), Some(full.clone()));

    // Every optional field empty, with its grant.
    let (request, grant) = granted("etl", "run/8812", 900_000);
    s.insert_request(&request, Some(&grant), vec![])
        .await
        .unwrap();
    assert_eq!(
        s.get_request(&request.id).await.unwrap(),
        Some(request.clone())
    );
    assert_eq!(s.get_grant(&grant.id).await.unwrap(), Some(grant.clone()));

    // Ending and ended grants round-trip as well.
    s.end_grants(
        &EndSelector::One(grant.id.clone()),
        &end_by(EndReason::Revoked, 100),
    )
    .await
    .unwrap();
    s.claim_revocations(at(100), 10, 1_000).await.unwrap();
    let failed = s
        .fail_revocation(&grant.id, "connection refused", at(200))
        .await
        .unwrap();
    assert_eq!(s.get_grant(&grant.id).await.unwrap(), Some(failed));
    let ended = s
        .complete_revocation(&grant.id, &receipt(300))
        .await
        .unwrap();
    assert!(matches!(ended.state, GrantState::Ended { .. }));
    assert_eq!(s.get_grant(&grant.id).await.unwrap(), Some(ended));

    assert_eq!(s.get_request(&RequestId::generate()).await.unwrap(), None);
    assert_eq!(s.get_grant(&GrantId::generate()).await.unwrap(), None);

    // A second insert of the same request is a conflict.
    let err = s.insert_request(&full, None, vec![]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(err.to_string().contains(full.id.as_str()), "{err}");
}

async fn lists_filter_requests_and_grants(db: Arc<Db>) {
    let s = db.open().await;
    let mut a = pending("alpha", "T-1", 1);
    a.created_at = at(1);
    let mut b = pending("beta", "T-2", 1);
    b.created_at = at(2);
    s.insert_request(&a, None, vec![]).await.unwrap();
    s.insert_request(&b, None, vec![]).await.unwrap();
    let g1 = insert_granted(&s, "alpha", "T-3", 1_000).await;
    let g2 = insert_granted(&s, "beta", "T-4", 2_000).await;

    let check = |filter: RequestFilter, expected: Vec<RequestId>| {
        let s = s.clone();
        async move {
            let got: Vec<RequestId> = s
                .list_requests(&filter)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect();
            assert_eq!(got, expected, "{filter:?}");
        }
    };
    let pending_only = RequestFilter {
        state: Some(RequestState::Pending),
        ..Default::default()
    };
    check(pending_only.clone(), vec![b.id.clone(), a.id.clone()]).await;
    check(
        RequestFilter {
            identity: Some(a.identity.clone()),
            ..pending_only.clone()
        },
        vec![a.id.clone()],
    )
    .await;
    check(
        RequestFilter {
            limit: Some(1),
            ..pending_only
        },
        vec![b.id.clone()],
    )
    .await;
    assert_eq!(
        s.list_requests(&RequestFilter::default())
            .await
            .unwrap()
            .len(),
        4
    );

    s.end_grants(
        &EndSelector::One(g1.id.clone()),
        &end_by(EndReason::Released, 5),
    )
    .await
    .unwrap();
    let grants = |f: GrantFilter| {
        let s = s.clone();
        async move { ids(&s.list_grants(&f).await.unwrap()) }
    };
    assert_eq!(
        grants(GrantFilter {
            state: Some(GrantStateFilter::Active),
            ..Default::default()
        })
        .await,
        vec![g2.id.clone()]
    );
    assert_eq!(
        grants(GrantFilter {
            state: Some(GrantStateFilter::Revoking),
            ..Default::default()
        })
        .await,
        vec![g1.id.clone()]
    );
    assert!(
        grants(GrantFilter {
            state: Some(GrantStateFilter::Ended),
            ..Default::default()
        })
        .await
        .is_empty()
    );
    assert_eq!(
        grants(GrantFilter {
            identity: Some(g2.identity.clone()),
            entitlement: Some(g2.entitlement.clone()),
            task_ref: Some(g2.task.reference.clone()),
            ..Default::default()
        })
        .await,
        vec![g2.id.clone()]
    );
    assert_eq!(grants(GrantFilter::default()).await.len(), 2);
}

async fn approval_issues_a_grant(db: Arc<Db>) {
    let s = db.open().await;
    let request = pending("nightly-backup", "CHG-7", 1);
    s.insert_request(
        &request,
        None,
        vec![AuditDraft::new(AuditKind::Requested, &request.requester).request(&request.id)],
    )
    .await
    .unwrap();

    let issued = grant_for(&request, 900_000);
    let issued_id = issued.id.clone();
    let updated = s
        .update_request(
            &request.id,
            Box::new(move |r: &mut Request| {
                let progress = r.approve(Approval {
                    approver: user("alice"),
                    at: at(60_000),
                    reason: "ok".into(),
                })?;
                assert_eq!(progress, ApprovalProgress::Complete);
                r.mark_granted(issued.id.clone())?;
                let audit = vec![
                    AuditDraft::new(AuditKind::Approved, "user:alice").request(&r.id),
                    AuditDraft::new(AuditKind::Issued, "system:broker")
                        .request(&r.id)
                        .grant(&issued.id),
                ];
                Ok(RequestChange {
                    grant: Some(issued),
                    audit,
                    ..RequestChange::default()
                })
            }),
        )
        .await
        .unwrap();

    assert_eq!(updated.state, RequestState::Granted);
    assert_eq!(updated.grant_id.as_ref(), Some(&issued_id));
    assert_eq!(s.get_request(&request.id).await.unwrap(), Some(updated));
    let grant = s.get_grant(&issued_id).await.unwrap().unwrap();
    assert_eq!(grant.request_id, request.id);
    assert_eq!(
        kinds(&all_audit(&s).await),
        [AuditKind::Requested, AuditKind::Approved, AuditKind::Issued]
    );
    assert_eq!(
        s.counts().await.unwrap(),
        Counts {
            active_grants: 1,
            revoking_grants: 0,
            pending_requests: 0
        }
    );
}

/// An approval that completes a renewal extends the grant it names in the same write; a
/// grant's audit records include those of the request that issued it and of its
/// renewals, and no one else's.
async fn an_approved_renewal_extends_its_grant_and_the_grant_s_audit_has_its_requests(db: Arc<Db>) {
    let s = db.open().await;
    let grant = insert_granted(&s, "etl", "run/9", 1_000).await;
    let other = insert_granted(&s, "etl", "run/10", 1_000).await;
    let renew_to = |expires: i64, grant: &Grant| {
        let mut renewal = pending("etl", "run/9", 1);
        renewal.renews = Some(grant.id.clone());
        (renewal, at(expires))
    };
    let (renewal, new_end) = renew_to(5_000, &grant);
    s.insert_request(
        &renewal,
        None,
        vec![AuditDraft::new(AuditKind::RenewRequested, "workload:etl").request(&renewal.id)],
    )
    .await
    .unwrap();
    assert_eq!(
        s.get_request(&renewal.id).await.unwrap().as_ref(),
        Some(&renewal)
    );

    let approve = |gid: GrantId, end: Timestamp| -> kairos_store::RequestUpdate {
        Box::new(move |r: &mut Request| {
            r.approve(Approval {
                approver: user("alice"),
                at: at(100),
                reason: "ok".into(),
            })?;
            r.mark_granted(gid.clone())?;
            Ok(RequestChange {
                audit: vec![AuditDraft::new(AuditKind::Approved, "user:alice").request(&r.id)],
                renewal: Some(kairos_store::GrantChange {
                    grant: gid,
                    update: Box::new(move |g: &mut Grant| {
                        g.renew(end, at(100))?;
                        Ok(vec![
                            AuditDraft::new(AuditKind::Renewed, "user:alice").grant(&g.id),
                        ])
                    }),
                }),
                ..RequestChange::default()
            })
        })
    };
    let updated = s
        .update_request(&renewal.id, approve(grant.id.clone(), new_end))
        .await
        .unwrap();
    assert_eq!(updated.state, RequestState::Granted);
    assert_eq!(updated.grant_id.as_ref(), Some(&grant.id));
    assert_eq!(
        s.get_grant(&grant.id).await.unwrap().unwrap().expires_at,
        new_end
    );
    assert_eq!(s.get_grant(&other.id).await.unwrap(), Some(other.clone()));

    let for_grant = s
        .list_audit(&AuditFilter {
            grant_id: Some(grant.id.to_string()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        kinds(&for_grant),
        [
            AuditKind::Renewed,
            AuditKind::Approved,
            AuditKind::RenewRequested,
            AuditKind::Issued,
            AuditKind::Requested,
        ]
    );
    assert_eq!(
        for_grant[4].request_id.as_deref(),
        Some(grant.request_id.as_str())
    );

    // A renewal whose grant has ended cannot land: nothing is written.
    s.end_grants(
        &EndSelector::One(other.id.clone()),
        &end_by(EndReason::Revoked, 200),
    )
    .await
    .unwrap();
    let (late, late_end) = renew_to(5_000, &other);
    s.insert_request(
        &late,
        None,
        vec![AuditDraft::new(AuditKind::RenewRequested, "workload:etl").request(&late.id)],
    )
    .await
    .unwrap();
    let before = all_audit(&s).await;
    assert!(
        s.update_request(&late.id, approve(other.id.clone(), late_end))
            .await
            .is_err()
    );
    assert_eq!(s.get_request(&late.id).await.unwrap(), Some(late));
    assert_eq!(all_audit(&s).await, before);
}

async fn refused_change_writes_nothing(db: Arc<Db>) {
    let s = db.open().await;
    let request = pending("nightly-backup", "CHG-8", 2);
    s.insert_request(
        &request,
        None,
        vec![AuditDraft::new(AuditKind::Requested, "user:olivia")],
    )
    .await
    .unwrap();
    let grant = insert_granted(&s, "etl", "run/1", 1_000).await;
    let audit_before = all_audit(&s).await;

    let err = s
        .update_request(
            &request.id,
            Box::new(|r: &mut Request| {
                r.approvals.push(Approval {
                    approver: user("mallory"),
                    at: at(1),
                    reason: "sneaky".into(),
                });
                Err(TransitionError::SelfApproval)
            }),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Transition(TransitionError::SelfApproval)),
        "{err:?}"
    );
    assert_eq!(
        s.get_request(&request.id).await.unwrap(),
        Some(request.clone())
    );

    let err = s
        .update_grant(
            &grant.id,
            Box::new(|g: &mut Grant| {
                g.expires_at = at(5);
                g.renew(at(999_999_999), at(1)).map(|()| vec![])
            }),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Transition(TransitionError::RenewPastMax { .. })
        ),
        "{err:?}"
    );
    assert_eq!(s.get_grant(&grant.id).await.unwrap(), Some(grant.clone()));
    assert_eq!(all_audit(&s).await, audit_before);

    // A change that succeeds is written with its audit.
    let renewed = s
        .update_grant(
            &grant.id,
            Box::new(|g: &mut Grant| {
                g.renew(at(2_000), at(500))?;
                Ok(vec![
                    AuditDraft::new(AuditKind::Renewed, "workload:etl").grant(&g.id),
                ])
            }),
        )
        .await
        .unwrap();
    assert_eq!(renewed.expires_at, at(2_000));
    assert_eq!(s.get_grant(&grant.id).await.unwrap(), Some(renewed));
    assert_eq!(all_audit(&s).await.len(), audit_before.len() + 1);

    let missing = s
        .update_request(
            &RequestId::generate(),
            Box::new(|_| Ok(RequestChange::default())),
        )
        .await
        .unwrap_err();
    assert!(matches!(missing, StoreError::NotFound(_)), "{missing:?}");
}

async fn pending_requests_expire(db: Arc<Db>) {
    let s = db.open().await;
    let mut soon = pending("a", "T-1", 1);
    soon.pending_until = Some(at(100));
    let mut sooner = pending("b", "T-2", 1);
    sooner.pending_until = Some(at(50));
    let mut later = pending("c", "T-3", 1);
    later.pending_until = Some(at(1_000));
    for r in [&soon, &sooner, &later] {
        s.insert_request(r, None, vec![]).await.unwrap();
    }

    let expired = s.expire_pending_requests(at(100), 1).await.unwrap();
    assert_eq!(
        expired.iter().map(|r| &r.id).collect::<Vec<_>>(),
        [&sooner.id]
    );
    let expired = s.expire_pending_requests(at(100), 10).await.unwrap();
    assert_eq!(
        expired.iter().map(|r| &r.id).collect::<Vec<_>>(),
        [&soon.id]
    );
    assert!(
        s.expire_pending_requests(at(100), 10)
            .await
            .unwrap()
            .is_empty()
    );

    let stored = s.get_request(&soon.id).await.unwrap().unwrap();
    assert_eq!(stored.state, RequestState::Expired);
    let audit = all_audit(&s).await;
    assert_eq!(
        kinds(&audit),
        [AuditKind::RequestExpired, AuditKind::RequestExpired]
    );
    assert_eq!(audit[1].request_id.as_deref(), Some(soon.id.as_str()));
    assert_eq!(audit[1].at, at(100));
    assert_eq!(s.counts().await.unwrap().pending_requests, 1);
}

async fn end_grants_by_each_selector(db: Arc<Db>) {
    let s = db.open().await;
    let one = insert_granted(&s, "solo", "T-solo", 10_000).await;
    let id1 = insert_granted(&s, "batch", "T-a", 10_000).await;
    let id2 = insert_granted(&s, "batch", "T-b", 10_000).await;
    let t1 = insert_granted(&s, "x", "INC-9", 10_000).await;
    let t2 = insert_granted(&s, "y", "INC-9", 10_000).await;
    let bystander = insert_granted(&s, "bystander", "T-z", 10_000).await;
    let before = all_audit(&s).await.len();

    let ended = s
        .end_grants(
            &EndSelector::One(one.id.clone()),
            &end_by(EndReason::Revoked, 100),
        )
        .await
        .unwrap();
    assert_eq!(ids(&ended), vec![one.id.clone()]);
    assert_eq!(ended[0].state.end(), Some(&end_by(EndReason::Revoked, 100)));

    // Ending it again, or ending a grant that does not exist, ends nothing.
    for id in [one.id.clone(), GrantId::generate()] {
        let again = s
            .end_grants(&EndSelector::One(id), &end_by(EndReason::Revoked, 150))
            .await
            .unwrap();
        assert!(again.is_empty(), "{again:?}");
    }
    let mut ended = s
        .end_grants(
            &EndSelector::Identity(id1.identity.clone()),
            &end_by(EndReason::Revoked, 200),
        )
        .await
        .unwrap();
    ended.sort_by(|a, b| a.id.cmp(&b.id));
    let mut expected = vec![id1.id.clone(), id2.id.clone()];
    expected.sort();
    assert_eq!(ids(&ended), expected);

    let ended = s
        .end_grants(
            &EndSelector::TaskRef(t1.task.reference.clone()),
            &end_by(EndReason::Released, 300),
        )
        .await
        .unwrap();
    assert_eq!(ended.len(), 2);
    assert!(ended.iter().all(|g| g.id == t1.id || g.id == t2.id));
    // Ending again ends nothing.
    assert!(
        s.end_grants(
            &EndSelector::TaskRef(t1.task.reference.clone()),
            &end_by(EndReason::Released, 400)
        )
        .await
        .unwrap()
        .is_empty()
    );

    assert_eq!(
        s.get_grant(&bystander.id).await.unwrap().unwrap().state,
        GrantState::Active
    );
    // One record per ended grant, kind from the reason, actor from the principal.
    let audit = all_audit(&s).await;
    let new = &audit[before..];
    assert_eq!(
        kinds(new),
        [
            AuditKind::Revoked,
            AuditKind::Revoked,
            AuditKind::Revoked,
            AuditKind::Released,
            AuditKind::Released
        ]
    );
    assert!(new.iter().all(|r| r.actor == "user:oscar"));
    assert_eq!(new[0].grant_id.as_deref(), Some(one.id.as_str()));
    assert_eq!(new[0].at, at(100));

    // Each ended grant has a revocation job, due when it ended.
    let mut jobs = ids(&s.claim_revocations(at(300), 100, 1_000).await.unwrap());
    jobs.sort();
    let mut expected = vec![
        one.id.clone(),
        id1.id.clone(),
        id2.id.clone(),
        t1.id.clone(),
        t2.id.clone(),
    ];
    expected.sort();
    assert_eq!(jobs, expected);
    assert_eq!(s.counts().await.unwrap().revoking_grants, 5);
}

async fn expirer_ends_only_due_grants_in_order(db: Arc<Db>) {
    let s = db.open().await;
    let g300 = insert_granted(&s, "c", "T-3", 300).await;
    let g100 = insert_granted(&s, "a", "T-1", 100).await;
    let g400 = insert_granted(&s, "d", "T-4", 400).await;
    let g200 = insert_granted(&s, "b", "T-2", 200).await;
    let expire = |now: i64, limit: u32| {
        let s = s.clone();
        async move {
            let end = GrantEnd {
                reason: EndReason::Expired,
                by: Principal::System("expirer"),
                at: at(now),
            };
            ids(&s
                .end_grants(
                    &EndSelector::ExpiredBy {
                        now: at(now),
                        limit,
                    },
                    &end,
                )
                .await
                .unwrap())
        }
    };

    assert!(expire(99, 10).await.is_empty());
    assert_eq!(expire(350, 2).await, [g100.id.clone(), g200.id.clone()]);
    assert_eq!(expire(350, 2).await, vec![g300.id.clone()]);
    assert!(expire(350, 2).await.is_empty());
    assert_eq!(s.next_expiry().await.unwrap(), Some(g400.expires_at));

    let audit = all_audit(&s).await;
    let expired: Vec<_> = audit
        .iter()
        .filter(|r| r.kind == AuditKind::Expired)
        .collect();
    assert_eq!(expired.len(), 3);
    assert!(expired.iter().all(|r| r.actor == "system:expirer"));
    assert_eq!(
        ids(&s.claim_revocations(at(350), 10, 1_000).await.unwrap()).len(),
        3
    );
}

/// A worker with a batch still running for a target claims none of that target's jobs;
/// the others' jobs are claimed as usual, and the limit still holds.
async fn a_busy_targets_revocations_stay_unclaimed(db: Arc<Db>) {
    let s = db.open().await;
    let mut by_target: Vec<(String, GrantId)> = Vec::new();
    for (i, target) in ["orders-db", "queues", "orders-db", "cache"]
        .iter()
        .enumerate()
    {
        let (request, mut grant) = granted(&format!("svc{i}"), &format!("T-{i}"), 1_000);
        grant.target = TargetName::parse(*target).unwrap();
        let drafts = vec![AuditDraft::new(AuditKind::Issued, "system:broker").grant(&grant.id)];
        s.insert_request(&request, Some(&grant), drafts)
            .await
            .unwrap();
        s.end_grants(
            &EndSelector::One(grant.id.clone()),
            &end_by(EndReason::Revoked, 100),
        )
        .await
        .unwrap();
        by_target.push(((*target).to_owned(), grant.id));
    }
    let of = |t: &str| -> Vec<GrantId> {
        let mut v: Vec<GrantId> = by_target
            .iter()
            .filter(|(target, _)| target == t)
            .map(|(_, id)| id.clone())
            .collect();
        v.sort();
        v
    };
    let name = |t: &str| TargetName::parse(t).unwrap();
    let busy = [name("queues"), name("cache")];

    // The limit counts only claimable jobs.
    let one = s
        .claim_revocations_except(at(200), 1, 1_000, &busy)
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].target.as_str(), "orders-db");
    let rest = s
        .claim_revocations_except(at(200), 10, 1_000, &busy)
        .await
        .unwrap();
    let mut claimed = ids(&one);
    claimed.extend(ids(&rest));
    claimed.sort();
    assert_eq!(claimed, of("orders-db"));
    assert!(
        s.claim_revocations_except(at(200), 10, 1_000, &busy)
            .await
            .unwrap()
            .is_empty()
    );
    // Once a target is no longer busy, its job is claimed.
    let queues = s
        .claim_revocations_except(at(200), 10, 1_000, &[name("cache")])
        .await
        .unwrap();
    assert_eq!(ids(&queues), of("queues"));
    assert_eq!(
        ids(&s.claim_revocations(at(200), 10, 1_000).await.unwrap()),
        of("cache")
    );
}

async fn revocation_fails_retries_and_completes(db: Arc<Db>) {
    let clock = ManualClock::new(at(150));
    let s = db.open().await.with_clock(Arc::new(clock.clone()));
    let grant = insert_granted(&s, "etl", "run/77", 1_000).await;
    s.end_grants(
        &EndSelector::One(grant.id.clone()),
        &end_by(EndReason::Revoked, 100),
    )
    .await
    .unwrap();

    assert!(
        s.claim_revocations(at(99), 10, 1_000)
            .await
            .unwrap()
            .is_empty(),
        "not due yet"
    );
    let claimed = s.claim_revocations(at(100), 10, 1_000).await.unwrap();
    assert_eq!(ids(&claimed), vec![grant.id.clone()]);
    assert!(
        s.claim_revocations(at(100), 10, 1_000)
            .await
            .unwrap()
            .is_empty(),
        "claimed"
    );

    let failed = s
        .fail_revocation(&grant.id, "connection refused", at(5_000))
        .await
        .unwrap();
    let GrantState::Ending {
        attempts,
        last_error,
        ..
    } = &failed.state
    else {
        panic!("{failed:?}")
    };
    assert_eq!(
        (*attempts, last_error.as_deref()),
        (1, Some("connection refused"))
    );
    assert!(
        s.claim_revocations(at(4_999), 10, 1_000)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ids(&s.claim_revocations(at(5_000), 10, 1_000).await.unwrap()),
        vec![grant.id.clone()]
    );

    let done = s
        .complete_revocation(&grant.id, &receipt(5_100))
        .await
        .unwrap();
    assert_eq!(
        done.state,
        GrantState::Ended {
            end: end_by(EndReason::Revoked, 100),
            receipt: receipt(5_100)
        }
    );
    assert_eq!(s.get_grant(&grant.id).await.unwrap(), Some(done));
    assert!(
        s.claim_revocations(at(99_999), 10, 1_000)
            .await
            .unwrap()
            .is_empty(),
        "job gone"
    );
    let again = s
        .complete_revocation(&grant.id, &receipt(5_200))
        .await
        .unwrap_err();
    assert!(
        matches!(
            again,
            StoreError::Transition(TransitionError::AlreadyEnded(_))
        ),
        "{again:?}"
    );

    let audit = all_audit(&s).await;
    let tail = &audit[audit.len() - 3..];
    assert_eq!(
        kinds(tail),
        [
            AuditKind::Revoked,
            AuditKind::RevocationFailed,
            AuditKind::Verified
        ]
    );
    assert_eq!(tail[1].at, at(150), "the injected clock dates the failure");
    assert_eq!(tail[2].at, receipt(5_100).verified_at);
    assert_eq!(s.counts().await.unwrap().revoking_grants, 0);
}

async fn lapsed_lease_is_claimable_again(db: Arc<Db>) {
    let s = db.open().await;
    let grant = insert_granted(&s, "etl", "run/5", 1_000).await;
    s.end_grants(
        &EndSelector::One(grant.id.clone()),
        &end_by(EndReason::Released, 0),
    )
    .await
    .unwrap();
    assert_eq!(
        s.claim_revocations(at(0), 10, 30_000).await.unwrap().len(),
        1
    );
    assert!(
        s.claim_revocations(at(29_999), 10, 30_000)
            .await
            .unwrap()
            .is_empty()
    );
    // The worker that held it crashed: once the lease lapses another one takes it.
    assert_eq!(
        ids(&s.claim_revocations(at(30_000), 10, 30_000).await.unwrap()),
        [grant.id]
    );
}

/// A worker whose batch outlasts its lease keeps the jobs in hand claimed: nobody else takes
/// them until the new time. A failed job (waiting for its retry) and a completed one are
/// left alone, and a claim is never moved earlier.
async fn claims_in_hand_are_kept_past_their_lease(db: Arc<Db>) {
    let s = db.open().await;
    let mut held = Vec::new();
    for i in 0..3 {
        let grant = insert_granted(&s, &format!("svc{i}"), &format!("run/{i}"), 1_000).await;
        s.end_grants(
            &EndSelector::One(grant.id.clone()),
            &end_by(EndReason::Revoked, 0),
        )
        .await
        .unwrap();
        held.push(grant.id);
    }
    let mut claimed = ids(&s.claim_revocations(at(0), 10, 1_000).await.unwrap());
    claimed.sort();
    let mut all = held.clone();
    all.sort();
    assert_eq!(claimed, all);
    let (kept, failed, done) = (&held[0], &held[1], &held[2]);
    s.fail_revocation(failed, "connection refused", at(500))
        .await
        .unwrap();
    s.complete_revocation(done, &receipt(10)).await.unwrap();

    // Only the job still in hand moves; nothing is claimable before the new time.
    assert_eq!(
        s.extend_revocation_claims(&held, at(5_000)).await.unwrap(),
        1
    );
    assert_eq!(s.extend_revocation_claims(&[], at(6_000)).await.unwrap(), 0);
    // Never earlier.
    assert_eq!(
        s.extend_revocation_claims(&held, at(2_000)).await.unwrap(),
        0
    );
    assert_eq!(
        ids(&s.claim_revocations(at(4_999), 10, 1_000).await.unwrap()),
        std::slice::from_ref(failed),
        "the failed job is due at its retry; the kept one stays claimed"
    );
    // Once the kept claim lapses too, another worker takes it.
    assert_eq!(
        ids(&s.claim_revocations(at(5_000), 10, 1_000).await.unwrap()),
        std::slice::from_ref(kept)
    );
}

/// The expirer's end queues its token grants' jobs claimed by it (no claim write of its
/// own, no worker taking them meanwhile) and its account grants' jobs unclaimed, for the
/// worker's per-target batches. A claim that lapses (the expirer died before its receipts)
/// lets any worker take the job.
async fn an_end_can_claim_its_token_grants_jobs(db: Arc<Db>) {
    let s = db.open().await;
    let account = insert_granted(&s, "etl", "mixed/account", 1_000).await;
    let (request, mut token) = granted("etl", "mixed/token", 1_000);
    token.account = None;
    token.sealed_secret = None;
    s.insert_request(&request, Some(&token), vec![])
        .await
        .unwrap();

    let ended = s
        .end_grants_claiming_tokens(
            &EndSelector::ExpiredBy {
                now: at(1_000),
                limit: 10,
            },
            &end_by(EndReason::Expired, 1_000),
            at(31_000),
        )
        .await
        .unwrap();
    let mut got = ids(&ended);
    got.sort();
    let mut want = vec![account.id.clone(), token.id.clone()];
    want.sort();
    assert_eq!(got, want, "both grants end");
    assert!(
        ended
            .iter()
            .all(|g| matches!(g.state, GrantState::Ending { .. }))
    );

    // The worker finds only the account grant's job; the token's is in the expirer's hand.
    assert_eq!(
        ids(&s.claim_revocations(at(1_000), 10, 1_000).await.unwrap()),
        std::slice::from_ref(&account.id)
    );
    assert_eq!(
        ids(&s.claim_revocations(at(30_999), 10, 60_000).await.unwrap()),
        std::slice::from_ref(&account.id),
        "the account job's own lease lapsed; the token's claim holds until 31,000"
    );
    assert_eq!(
        ids(&s.claim_revocations(at(31_000), 10, 1_000).await.unwrap()),
        std::slice::from_ref(&token.id),
        "once the expirer's claim lapses, a worker takes the token's job"
    );

    // The claimed job completes like any other.
    let done = s
        .complete_revocation(&token.id, &receipt(1_010))
        .await
        .unwrap();
    assert!(matches!(done.state, GrantState::Ended { .. }));
    verify_chain(&all_audit(&s).await).unwrap();
}

async fn next_expiry_and_counts(db: Arc<Db>) {
    let s = db.open().await;
    assert_eq!(s.next_expiry().await.unwrap(), None);
    assert_eq!(s.counts().await.unwrap(), Counts::default());
    let early = insert_granted(&s, "a", "T-1", 500).await;
    let late = insert_granted(&s, "b", "T-2", 900).await;
    s.insert_request(&pending("c", "T-3", 1), None, vec![])
        .await
        .unwrap();
    assert_eq!(s.next_expiry().await.unwrap(), Some(early.expires_at));
    s.end_grants(
        &EndSelector::One(early.id.clone()),
        &end_by(EndReason::Released, 10),
    )
    .await
    .unwrap();
    assert_eq!(s.next_expiry().await.unwrap(), Some(late.expires_at));
    assert_eq!(
        s.counts().await.unwrap(),
        Counts {
            active_grants: 1,
            revoking_grants: 1,
            pending_requests: 1
        }
    );
}

// ---- audit ---------------------------------------------------------------------------------

async fn audit_chain_verifies_across_transactions(db: Arc<Db>) {
    let s = db.open().await;
    let mut total = 0;
    for batch in 0..20 {
        let drafts: Vec<_> = (0..=batch % 3)
            .map(|i| {
                AuditDraft::new(AuditKind::ConfigApplied, "user:admin")
                    .data(serde_json::json!({ "batch": batch, "i": i, "text": "ünïcode ✓" }))
            })
            .collect();
        total += drafts.len();
        s.append_audit(drafts).await.unwrap();
    }
    s.append_audit(vec![]).await.unwrap();
    insert_granted(&s, "etl", "run/1", 1_000).await;
    total += 2;

    let mut verifier = ChainVerifier::default();
    let mut after = 0;
    loop {
        let page = s.audit_page(after, 7).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in &page {
            verifier.push(r).unwrap();
        }
    }
    assert_eq!(verifier.checked, total as u64);
    assert_eq!(verify_chain(&all_audit(&s).await).unwrap(), total as u64);
}

async fn audit_filters(db: Arc<Db>) {
    let s = db.open().await;
    let drafts = [
        (
            0,
            AuditDraft::new(AuditKind::Requested, "workload:a")
                .identity("a")
                .request("r1")
                .task_ref("T-1"),
        ),
        (
            10,
            AuditDraft::new(AuditKind::Issued, "system:broker")
                .identity("a")
                .request("r1")
                .grant("g1")
                .task_ref("T-1"),
        ),
        (
            20,
            AuditDraft::new(AuditKind::Requested, "workload:b")
                .identity("b")
                .request("r2")
                .task_ref("T-2"),
        ),
        (
            30,
            AuditDraft::new(AuditKind::Revoked, "user:oscar")
                .identity("a")
                .grant("g1")
                .task_ref("T-1"),
        ),
    ];
    // Dated by the clock, one transaction each.
    let clock = ManualClock::new(at(0));
    let s = s.with_clock(Arc::new(clock.clone()));
    for (offset, d) in drafts {
        clock.set(at(offset));
        s.append_audit(vec![d]).await.unwrap();
    }
    let check = |filter: AuditFilter, expected: &'static [i64]| {
        let s = s.clone();
        async move {
            let got: Vec<i64> = s
                .list_audit(&filter)
                .await
                .unwrap()
                .iter()
                .map(|r| r.seq)
                .collect();
            assert_eq!(got, expected, "{filter:?}");
        }
    };
    let with = |edit: fn(&mut AuditFilter)| {
        let mut f = AuditFilter::default();
        edit(&mut f);
        f
    };
    check(AuditFilter::default(), &[4, 3, 2, 1]).await;
    check(with(|f| f.identity = Some("a".into())), &[4, 2, 1]).await;
    check(with(|f| f.grant_id = Some("g1".into())), &[4, 2]).await;
    check(with(|f| f.request_id = Some("r2".into())), &[3]).await;
    check(with(|f| f.task_ref = Some("T-1".into())), &[4, 2, 1]).await;
    check(with(|f| f.since = Some(at(10))), &[4, 3, 2]).await;
    check(with(|f| f.until = Some(at(30))), &[3, 2, 1]).await;
    check(with(|f| f.limit = Some(2)), &[4, 3]).await;
    check(with(|f| f.identity = Some("nobody".into())), &[]).await;
    check(
        with(|f| {
            f.identity = Some("a".into());
            f.since = Some(at(5));
            f.limit = Some(1);
        }),
        &[4],
    )
    .await;
}

async fn tampering_breaks_the_chain_at_the_edited_record(db: Arc<Db>) {
    let s = db.open().await;
    for i in 0..5 {
        s.append_audit(vec![
            AuditDraft::new(AuditKind::Approved, "user:alice").request(format!("r{i}")),
        ])
        .await
        .unwrap();
    }
    assert_eq!(verify_chain(&all_audit(&s).await).unwrap(), 5);

    let mut raw = db.raw().await;
    sqlx::query("UPDATE audit SET actor = 'user:mallory' WHERE seq = 3")
        .execute(&mut raw)
        .await
        .unwrap();
    raw.close().await.unwrap();

    let err = verify_chain(&all_audit(&s).await).unwrap_err();
    assert_eq!(err.seq, 3, "{err}");
}

/// Eight tasks, spread over `stores`, each append ten transactions of two records.
async fn append_pairs(stores: &[SqlStore]) {
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let s = stores[task % stores.len()].clone();
            tokio::spawn(async move {
                for i in 0..10 {
                    let drafts = vec![
                        AuditDraft::new(AuditKind::Renewed, format!("workload:w{task}"))
                            .grant(format!("g{task}-{i}")),
                        AuditDraft::new(AuditKind::Renewed, format!("workload:w{task}"))
                            .grant(format!("g{task}-{i}b")),
                    ];
                    s.append_audit(drafts).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// What [`append_pairs`] wrote is one intact chain in which each transaction's records
/// stay adjacent.
fn assert_one_chain_of_pairs(audit: &[kairos_domain::AuditRecord]) {
    assert_eq!(verify_chain(audit).unwrap(), 160);
    for pair in audit.chunks(2) {
        assert_eq!(
            format!("{}b", pair[0].grant_id.as_deref().unwrap()),
            pair[1].grant_id.as_deref().unwrap()
        );
    }
}

async fn concurrent_appends_keep_one_chain(db: Arc<Db>) {
    let s = db.open().await;
    append_pairs(std::slice::from_ref(&s)).await;
    assert_one_chain_of_pairs(&all_audit(&s).await);
}

/// Two stores on one database (replicas) append at once: each writer remembers the head it
/// last committed, finds it moved by the other, and seals after the real head — one chain.
async fn replicas_append_to_one_chain(db: Arc<Db>) {
    let (a, b) = (db.open().await, db.open().await);
    append_pairs(&[a.clone(), b.clone()]).await;
    assert_one_chain_of_pairs(&all_audit(&a).await);
    assert_eq!(a.audit_head_mismatch(160).await.unwrap(), None);
    assert_eq!(b.audit_head_mismatch(160).await.unwrap(), None);
    b.close().await;
}

async fn deleted_tail_is_caught_by_the_head(db: Arc<Db>) {
    let s = db.open().await;
    assert_eq!(s.audit_head_mismatch(0).await.unwrap(), None, "empty chain");
    assert_eq!(s.audit_last_seq().await.unwrap(), 0, "empty chain");
    for i in 0..5 {
        s.append_audit(vec![
            AuditDraft::new(AuditKind::Approved, "user:alice").request(format!("r{i}")),
        ])
        .await
        .unwrap();
    }
    assert_eq!(s.audit_head_mismatch(5).await.unwrap(), None);
    assert_eq!(s.audit_last_seq().await.unwrap(), 5);
    // Appended after a walk that ended at 5: not a mismatch.
    s.append_audit(vec![AuditDraft::new(AuditKind::Approved, "user:alice")])
        .await
        .unwrap();
    assert_eq!(s.audit_head_mismatch(5).await.unwrap(), None);
    assert_eq!(s.audit_last_seq().await.unwrap(), 6);

    let mut raw = db.raw().await;
    sqlx::query("DELETE FROM audit WHERE seq > 4")
        .execute(&mut raw)
        .await
        .unwrap();
    raw.close().await.unwrap();
    // The walk itself sees an intact chain of 4…
    assert_eq!(verify_chain(&all_audit(&s).await).unwrap(), 4);
    // …and the head says what is missing.
    let problem = s.audit_head_mismatch(4).await.unwrap().unwrap();
    assert!(problem.contains("deleted"), "{problem}");
}

/// Two stores on one database act as two replicas (two processes for SQLite): expirers
/// and revocation workers running at once never take the same grant twice.
async fn replicas_share_work_without_doing_it_twice(db: Arc<Db>) {
    let a = db.open().await;
    let b = db.open().await;
    let mut all = Vec::new();
    for i in 0..40 {
        all.push(
            insert_granted(&a, &format!("w{i}"), &format!("T-{i}"), i)
                .await
                .id,
        );
    }
    all.sort();

    let expirer = |s: SqlStore| {
        tokio::spawn(async move {
            let end = GrantEnd {
                reason: EndReason::Expired,
                by: Principal::System("expirer"),
                at: at(100),
            };
            let mut ended = Vec::new();
            loop {
                let batch = s
                    .end_grants(
                        &EndSelector::ExpiredBy {
                            now: at(100),
                            limit: 3,
                        },
                        &end,
                    )
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return ended;
                }
                ended.extend(ids(&batch));
            }
        })
    };
    let (x, y) = (expirer(a.clone()), expirer(b.clone()));
    let mut ended = x.await.unwrap();
    ended.extend(y.await.unwrap());
    ended.sort();
    assert_eq!(ended, all, "every grant ended exactly once");

    let worker = |s: SqlStore| {
        tokio::spawn(async move {
            let mut claimed = Vec::new();
            loop {
                let batch = s.claim_revocations(at(100), 3, 60_000).await.unwrap();
                if batch.is_empty() {
                    return claimed;
                }
                claimed.extend(ids(&batch));
            }
        })
    };
    let (x, y) = (worker(a.clone()), worker(b.clone()));
    let mut claimed = x.await.unwrap();
    claimed.extend(y.await.unwrap());
    claimed.sort();
    assert_eq!(claimed, all, "every job claimed exactly once");
    assert_eq!(verify_chain(&all_audit(&a).await).unwrap(), 40 * 2 + 40);
}

// ---- keys, people, configuration -------------------------------------------------------------

fn key(kid: &str, created: i64) -> StoredKey {
    StoredKey {
        kid: kid.into(),
        alg: "es256".into(),
        sealed_private: format!("sealed:v1:{kid}:opaque"),
        created_at: at(created),
        retire_until: None,
    }
}

async fn signing_keys_lifecycle(db: Arc<Db>) {
    let s = db.open().await;
    assert!(s.signing_keys().await.unwrap().is_empty());
    assert!(s.insert_first_key(&key("k1", 0)).await.unwrap());
    assert!(
        !s.insert_first_key(&key("k1-other-replica", 1))
            .await
            .unwrap()
    );
    assert_eq!(s.signing_keys().await.unwrap(), [key("k1", 0)]);

    s.rotate_key(
        &key("k2", 100),
        at(1_000),
        AuditDraft::new(AuditKind::KeyRotated, "user:admin"),
    )
    .await
    .unwrap();
    let retired_k1 = StoredKey {
        retire_until: Some(at(1_000)),
        ..key("k1", 0)
    };
    assert_eq!(
        s.signing_keys().await.unwrap(),
        [key("k2", 100), retired_k1.clone()]
    );
    let rotated = all_audit(&s).await;
    assert_eq!(kinds(&rotated), [AuditKind::KeyRotated]);
    assert_eq!(rotated[0].at, at(100));

    let dup = s
        .rotate_key(
            &key("k2", 200),
            at(2_000),
            AuditDraft::new(AuditKind::KeyRotated, "user:admin"),
        )
        .await
        .unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)), "{dup:?}");
    assert_eq!(
        s.signing_keys().await.unwrap(),
        [key("k2", 100), retired_k1],
        "nothing changed"
    );

    assert_eq!(s.prune_keys(at(999)).await.unwrap(), 0);
    assert_eq!(s.prune_keys(at(1_000)).await.unwrap(), 1);
    assert_eq!(s.signing_keys().await.unwrap(), [key("k2", 100)]);
}

fn person(name: &str, role: Role) -> (User, StoredToken) {
    let user = User {
        name: user(name),
        role,
        teams: vec![
            TeamName::parse("payments").unwrap(),
            TeamName::parse("sre").unwrap(),
        ],
        targets: Vec::new(),
        created_at: at(0),
    };
    let token = StoredToken {
        id: format!("tok_{name}"),
        user: user.name.clone(),
        secret_hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        created_at: at(0),
        revoked_at: None,
    };
    (user, token)
}

async fn users_and_tokens(db: Arc<Db>) {
    let s = db.open().await;
    let created = || AuditDraft::new(AuditKind::UserCreated, "system:bootstrap");
    let (alice, alice_token) = person("alice", Role::Admin);
    let (bob, bob_token) = person("bob", Role::Approver);
    s.create_user(&alice, &alice_token, created())
        .await
        .unwrap();
    s.create_user(&bob, &bob_token, created()).await.unwrap();

    let dup = s
        .create_user(
            &alice,
            &StoredToken {
                id: "tok_new".into(),
                ..alice_token.clone()
            },
            created(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&dup, StoreError::Conflict(m) if m == "user alice already exists"),
        "{dup:?}"
    );
    let (carol, _) = person("carol", Role::Auditor);
    let taken = s
        .create_user(
            &carol,
            &StoredToken {
                user: carol.name.clone(),
                ..alice_token.clone()
            },
            created(),
        )
        .await
        .unwrap_err();
    assert!(matches!(taken, StoreError::Conflict(_)), "{taken:?}");
    assert_eq!(
        s.get_user(&carol.name).await.unwrap(),
        None,
        "a failed create writes nothing"
    );

    assert_eq!(s.get_user(&alice.name).await.unwrap(), Some(alice.clone()));
    assert_eq!(s.list_users().await.unwrap(), [alice.clone(), bob.clone()]);
    assert_eq!(
        s.find_token("tok_alice").await.unwrap(),
        Some((alice_token.clone(), alice.clone()))
    );
    assert_eq!(s.find_token("tok_nobody").await.unwrap(), None);

    // A resource server keeps the targets it is bound to.
    let (mut orders_rs, orders_token) = person("orders-rs", Role::ResourceServer);
    orders_rs.teams = Vec::new();
    orders_rs.targets = vec![
        TargetName::parse("orders-api").unwrap(),
        TargetName::parse("billing-api").unwrap(),
    ];
    s.create_user(&orders_rs, &orders_token, created())
        .await
        .unwrap();
    assert_eq!(
        s.find_token("tok_orders-rs").await.unwrap(),
        Some((orders_token, orders_rs.clone()))
    );
    assert_eq!(
        s.get_user(&orders_rs.name).await.unwrap(),
        Some(orders_rs.clone())
    );

    let revoked = s
        .revoke_user_tokens(
            &alice.name,
            at(50),
            AuditDraft::new(AuditKind::UserTokenRevoked, "user:bob"),
        )
        .await
        .unwrap();
    assert_eq!(revoked, 1);
    let (token, _) = s.find_token("tok_alice").await.unwrap().unwrap();
    assert_eq!(token.revoked_at, Some(at(50)));
    assert_eq!(
        s.find_token("tok_bob").await.unwrap().unwrap().0.revoked_at,
        None
    );
    let missing = s
        .revoke_user_tokens(
            &user("nobody"),
            at(50),
            AuditDraft::new(AuditKind::UserTokenRevoked, "user:bob"),
        )
        .await
        .unwrap_err();
    assert!(matches!(missing, StoreError::NotFound(_)), "{missing:?}");
    assert_eq!(
        kinds(&all_audit(&s).await),
        [
            AuditKind::UserCreated,
            AuditKind::UserCreated,
            AuditKind::UserCreated,
            AuditKind::UserTokenRevoked
        ]
    );
}

async fn bootstrap_token_is_replaced(db: Arc<Db>) {
    let s = db.open().await;
    let bootstrap = || AuditDraft::new(AuditKind::UserCreated, "system:bootstrap");
    let (admin, mut token) = person("admin", Role::Admin);
    token.id = "bootstrap".into();
    assert!(!s.has_live_admin().await.unwrap());
    assert_eq!(
        s.put_bootstrap_token(&admin, &token, bootstrap())
            .await
            .unwrap(),
        BootstrapOutcome::Installed
    );
    assert!(s.has_live_admin().await.unwrap());
    assert_eq!(
        s.find_token("bootstrap").await.unwrap(),
        Some((token.clone(), admin.clone()))
    );
    // The next start with the same secret changes nothing.
    assert_eq!(
        s.put_bootstrap_token(&admin, &token, bootstrap())
            .await
            .unwrap(),
        BootstrapOutcome::AlreadyInstalled
    );
    // Another secret while the admin is live is not installed.
    let other = StoredToken {
        secret_hash: "1".repeat(64),
        ..token.clone()
    };
    assert_eq!(
        s.put_bootstrap_token(&admin, &other, bootstrap())
            .await
            .unwrap(),
        BootstrapOutcome::AdminExists {
            admins: vec![admin.name.clone()]
        }
    );

    // Revoked, the same secret does not come back.
    s.revoke_user_tokens(
        &admin.name,
        at(5),
        AuditDraft::new(AuditKind::UserTokenRevoked, "user:admin"),
    )
    .await
    .unwrap();
    assert_eq!(
        s.put_bootstrap_token(&admin, &token, bootstrap())
            .await
            .unwrap(),
        BootstrapOutcome::Revoked { at: at(5) }
    );
    let (found, _) = s.find_token("bootstrap").await.unwrap().unwrap();
    assert_eq!(found.revoked_at, Some(at(5)));
    assert!(!s.has_live_admin().await.unwrap());

    // A store left with no live admin is recovered with a new secret.
    let replaced = StoredToken {
        secret_hash: "0".repeat(64),
        created_at: at(10),
        ..token.clone()
    };
    let later = User {
        created_at: at(10),
        ..admin.clone()
    };
    assert_eq!(
        s.put_bootstrap_token(&later, &replaced, bootstrap())
            .await
            .unwrap(),
        BootstrapOutcome::Installed
    );
    assert_eq!(
        s.find_token("bootstrap").await.unwrap(),
        Some((replaced, admin.clone()))
    );
    assert_eq!(s.list_users().await.unwrap(), [admin]);
    assert_eq!(all_audit(&s).await.len(), 3);
}

async fn config_versions(db: Arc<Db>) {
    let s = db.open().await;
    assert_eq!(s.current_config().await.unwrap(), None);
    let applied = || AuditDraft::new(AuditKind::ConfigApplied, "user:admin");
    assert_eq!(
        s.save_config(r#"{"v":1}"#, at(10), applied())
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.save_config(r#"{"v":2}"#, at(20), applied())
            .await
            .unwrap(),
        2
    );
    let current = s.current_config().await.unwrap().unwrap();
    assert_eq!(
        (
            current.version,
            current.bundle_json.as_str(),
            current.applied_at
        ),
        (2, r#"{"v":2}"#, at(20))
    );
    assert_eq!(
        kinds(&all_audit(&s).await),
        [AuditKind::ConfigApplied, AuditKind::ConfigApplied]
    );
}

/// A configuration that removes what grants stand on (or whose policies deny them) ends
/// them in the transaction that saves it, each with its own reason: Ending with a
/// revocation job and a record each.
async fn config_save_ends_its_orphans(db: Arc<Db>) {
    let s = db.open().await;
    let orphan = insert_granted(&s, "gone", "T-1", 10_000).await;
    let ended_before = insert_granted(&s, "gone", "T-2", 10_000).await;
    let bystander = insert_granted(&s, "stays", "T-3", 10_000).await;
    let denied = insert_granted(&s, "stays", "T-4", 10_000).await;
    s.end_grants(
        &EndSelector::One(ended_before.id.clone()),
        &end_by(EndReason::Released, 50),
    )
    .await
    .unwrap();
    let before = all_audit(&s).await.len();
    let by = Principal::User(user("oscar"));
    let (version, ended) = s
        .save_config_ending(
            r#"{"v":1}"#,
            at(100),
            AuditDraft::new(AuditKind::ConfigApplied, "user:admin"),
            &[
                (orphan.id.clone(), REMOVED),
                (ended_before.id.clone(), REMOVED),
                (GrantId::generate(), REMOVED),
                (denied.id.clone(), DENIED),
            ],
            &by,
        )
        .await
        .unwrap();
    assert_eq!(version, 1);
    // Only those still active end, each with its reason; the one that already ended
    // keeps its own.
    let mut got = ids(&ended);
    got.sort();
    let mut want = vec![orphan.id.clone(), denied.id.clone()];
    want.sort();
    assert_eq!(got, want);
    let stored = s.get_grant(&orphan.id).await.unwrap().unwrap();
    assert_eq!(stored.state.end(), Some(&end_by(REMOVED, 100)));
    let stored = s.get_grant(&denied.id).await.unwrap().unwrap();
    assert_eq!(stored.state.end(), Some(&end_by(DENIED, 100)));
    let released = s.get_grant(&ended_before.id).await.unwrap().unwrap();
    assert_eq!(
        released.state.end().map(|e| e.reason),
        Some(EndReason::Released)
    );
    assert_eq!(
        s.get_grant(&bystander.id).await.unwrap().unwrap().state,
        GrantState::Active
    );
    let audit = all_audit(&s).await;
    let mut written = kinds(&audit[before..]);
    written.sort_by_key(|k| k.as_str());
    let mut expected = vec![
        AuditKind::ConfigApplied,
        audit_kind_of(REMOVED),
        audit_kind_of(DENIED),
    ];
    expected.sort_by_key(|k| k.as_str());
    assert_eq!(written, expected);
    let mut jobs = ids(&s.claim_revocations(at(100), 100, 1_000).await.unwrap());
    jobs.sort();
    let mut expected = vec![
        orphan.id.clone(),
        ended_before.id.clone(),
        denied.id.clone(),
    ];
    expected.sort();
    assert_eq!(jobs, expected);
    // It goes on to be verified gone like any other end.
    let done = s
        .complete_revocation(&orphan.id, &receipt(200))
        .await
        .unwrap();
    assert!(matches!(done.state, GrantState::Ended { .. }));
}

/// The reasons an applied configuration ends grants with, in the test above.
const REMOVED: EndReason = EndReason::TargetRemoved;
const DENIED: EndReason = EndReason::PolicyChanged;

/// The audit kind of a grant's end with `reason`.
fn audit_kind_of(reason: EndReason) -> AuditKind {
    let g = grant_for(&granted("x", "T-0", 1_000).0, 1_000);
    kairos_domain::audit_of::end(&g, &end_by(reason, 0)).kind
}

async fn data_survives_reopening(db: Arc<Db>) {
    let s = db.open().await;
    let grant = insert_granted(&s, "etl", "run/9", 1_000).await;
    s.end_grants(
        &EndSelector::One(grant.id.clone()),
        &end_by(EndReason::Revoked, 5),
    )
    .await
    .unwrap();
    let ending = s.get_grant(&grant.id).await.unwrap();
    let audit = all_audit(&s).await;
    s.close().await;
    drop(s);

    let s = db.open().await;
    assert_eq!(s.get_grant(&grant.id).await.unwrap(), ending);
    assert_eq!(all_audit(&s).await, audit);
    // The queue survived too, and the chain continues where it stopped.
    assert_eq!(
        ids(&s.claim_revocations(at(5), 10, 1_000).await.unwrap()),
        vec![grant.id.clone()]
    );
    s.append_audit(vec![AuditDraft::new(
        AuditKind::ConfigApplied,
        "user:admin",
    )])
    .await
    .unwrap();
    assert_eq!(
        verify_chain(&all_audit(&s).await).unwrap(),
        audit.len() as u64 + 1
    );
}

// ---- not per backend -------------------------------------------------------------------------

#[tokio::test]
async fn unsupported_urls_are_refused_without_echoing_secrets() {
    for url in [
        "mysql://root:hunter2@db/kairos",
        "sqlite://",
        "kairos.db",
        "sqlite://:memory:",
        "sqlite://kairos.db?mode=memory",
    ] {
        let err = SqlStore::connect(url).await.unwrap_err();
        assert!(
            matches!(err, StoreError::UnsupportedUrl(_)),
            "{url}: {err:?}"
        );
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}

#[tokio::test]
async fn sqlite_creates_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    let s = SqlStore::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert_eq!(s.backend(), "sqlite");
    assert!(path.exists());
    assert!(dir.path().join("new.db-wal").exists(), "journal_mode = WAL");
}

/// The two schema flavours differ only in column types and SQLite's STRICT tables.
#[test]
fn migrations_stay_in_step() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let names = |flavour: &str| {
        let mut names: Vec<String> = std::fs::read_dir(dir.join(flavour))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names("sqlite"), names("postgres"));
    let normalize = |text: String| -> Vec<String> {
        text.lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .map(|l| l.replace("BIGINT", "INTEGER").replace(") STRICT;", ");"))
            .collect()
    };
    // A migration that must differ (SQLite cannot alter what PostgreSQL can) says so on
    // its first line, in both flavours.
    let specific = |text: &str| text.starts_with("-- Flavour-specific:");
    for name in names("sqlite") {
        let sqlite = std::fs::read_to_string(dir.join("sqlite").join(&name)).unwrap();
        let postgres = std::fs::read_to_string(dir.join("postgres").join(&name)).unwrap();
        if specific(&sqlite) || specific(&postgres) {
            assert!(specific(&sqlite) && specific(&postgres), "{name}");
            continue;
        }
        assert_eq!(normalize(sqlite), normalize(postgres), "{name}");
    }
}

// ---- dynamic accounts: intent before action ------------------------------------------------

/// A grant is recorded `provisioning` before its account exists; it becomes active, or ends
/// as aborted through the same end path; the sealed secret is erased once verified gone;
/// grants are found by their account for the reconciler.
async fn provisioning_grants_activate_or_abort(db: Arc<Db>) {
    let s = db.open().await;
    let mut ok = Vec::new();
    for task in ["run/1", "run/2"] {
        let (request, mut grant) = granted("etl", task, 10_000);
        grant.state = GrantState::Provisioning;
        s.insert_request(&request, Some(&grant), vec![])
            .await
            .unwrap();
        ok.push(grant);
    }
    let (first, second) = (ok[0].clone(), ok[1].clone());

    // Not active: invisible to the expirer and to active listings.
    assert_eq!(s.next_expiry().await.unwrap(), None);
    let provisioning = s
        .list_grants(&GrantFilter {
            state: Some(GrantStateFilter::Provisioning),
            issued_before: Some(at(1)),
            ..GrantFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(provisioning.len(), 2);

    // The first becomes active.
    let active = s
        .update_grant(
            &first.id,
            Box::new(|g: &mut Grant| {
                g.activate()?;
                Ok(vec![
                    AuditDraft::new(AuditKind::Issued, "system:broker").grant(&g.id),
                ])
            }),
        )
        .await
        .unwrap();
    assert_eq!(active.state, GrantState::Active);
    assert_eq!(s.next_expiry().await.unwrap(), Some(first.expires_at));

    // The second is aborted through the end path: a revocation job is queued.
    let ended = s
        .end_grants(
            &EndSelector::One(second.id.clone()),
            &GrantEnd {
                reason: EndReason::Aborted,
                by: Principal::System("broker"),
                at: at(5),
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&ended), vec![second.id.clone()]);
    let claimed = s.claim_revocations(at(5), 10, 1_000).await.unwrap();
    assert_eq!(ids(&claimed), vec![second.id.clone()]);
    assert_eq!(
        claimed[0].sealed_secret, second.sealed_secret,
        "kept to verify the login fails"
    );
    let done = s
        .complete_revocation(&second.id, &receipt(6))
        .await
        .unwrap();
    assert_eq!(done.sealed_secret, None, "erased once verified gone");
    let stored = s.get_grant(&second.id).await.unwrap().unwrap();
    assert_eq!(stored.sealed_secret, None);
    assert_eq!(stored.account, second.account);
    let kinds = kinds(&all_audit(&s).await);
    assert!(kinds.contains(&AuditKind::Aborted) && kinds.contains(&AuditKind::Verified));

    // Found by account, for the reconciler.
    let by_account = s
        .list_grants(&GrantFilter {
            target: Some(first.target.clone()),
            account: first.account.clone(),
            ..GrantFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&by_account), vec![first.id.clone()]);
}

/// Writes from many tasks at once share transactions (group commit); one that fails is
/// undone alone — its grant and audit records are not written — and the rest commit.
/// New requests written together (on PostgreSQL requests and grants share one statement)
/// come back exactly as written, granted or pending alike, each with its audit records.
async fn concurrent_new_requests_and_grants_round_trip(db: Arc<Db>) {
    let s = db.open().await;
    issue_concurrently(&[s]).await;
}

/// Two replicas issue at once: each writer's batches find the chain's head moved by the
/// other (on PostgreSQL, the one-statement batch then writes nothing and the batch runs
/// again after the real head), and every issued grant and record is in one chain.
async fn replicas_issue_to_one_chain(db: Arc<Db>) {
    let (a, b) = (db.open().await, db.open().await);
    let records = i64::try_from(issue_concurrently(&[a.clone(), b.clone()]).await).unwrap();
    assert_eq!(a.audit_head_mismatch(records).await.unwrap(), None);
    assert_eq!(b.audit_head_mismatch(records).await.unwrap(), None);
    b.close().await;
}

/// 48 insertions over `stores`, a quarter pending and the rest granted: the first 8 one
/// after another (so with two stores each writer finds the head moved by the other), the
/// rest at once. Each is read back equal and the chain holds all their records. Returns
/// how many records.
async fn issue_concurrently(stores: &[SqlStore]) -> u64 {
    async fn issue(s: SqlStore, i: usize) -> (Request, Option<Grant>) {
        let task = format!("batch/{i}");
        let (request, grant) = if i.is_multiple_of(4) {
            (pending("etl", &task, 1), None)
        } else {
            let (r, g) = granted("etl", &task, 900_000);
            (r, Some(g))
        };
        let mut audit =
            vec![AuditDraft::new(AuditKind::Requested, &request.requester).request(&request.id)];
        if let Some(g) = &grant {
            audit.push(AuditDraft::new(AuditKind::Issued, "system:broker").grant(&g.id));
        }
        s.insert_request(&request, grant.as_ref(), audit)
            .await
            .unwrap();
        (request, grant)
    }
    let s = stores[0].clone();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let done = issue(stores[i % stores.len()].clone(), i).await;
        tasks.spawn(async move { done });
    }
    for i in 8..48 {
        tasks.spawn(issue(stores[i % stores.len()].clone(), i));
    }
    let mut records = 0;
    while let Some(done) = tasks.join_next().await {
        let (request, grant) = done.unwrap();
        assert_eq!(
            s.get_request(&request.id).await.unwrap(),
            Some(request.clone())
        );
        records += 1;
        if let Some(grant) = grant {
            assert_eq!(s.get_grant(&grant.id).await.unwrap(), Some(grant));
            records += 1;
        }
    }
    assert_eq!(records, 12 + 2 * 36);
    assert_eq!(verify_chain(&all_audit(&s).await).unwrap(), records);
    records
}

async fn concurrent_writes_commit_together_and_fail_alone(db: Arc<Db>) {
    let s = db.open().await;
    let (first, first_grant) = granted("etl", "run/1", 900_000);
    let drafts = |r: &Request, g: &Grant| {
        vec![
            AuditDraft::new(AuditKind::Requested, &r.requester).request(&r.id),
            AuditDraft::new(AuditKind::Issued, "system:broker").grant(&g.id),
        ]
    };
    s.insert_request(&first, Some(&first_grant), drafts(&first, &first_grant))
        .await
        .unwrap();

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..60 {
        let s = s.clone();
        // Every sixth insert repeats the first request's id with a fresh grant: it must
        // fail whole, inside a transaction the others commit in.
        let (request, grant) = if i % 6 == 0 {
            let grant = grant_for(&first, 900_000);
            (first.clone(), grant)
        } else {
            granted("etl", &format!("run/{}", i + 2), 900_000)
        };
        let audit = drafts(&request, &grant);
        tasks.spawn(async move {
            let r = s.insert_request(&request, Some(&grant), audit).await;
            (grant.id, r)
        });
    }
    let (mut committed, mut refused) = (Vec::new(), Vec::new());
    while let Some(done) = tasks.join_next().await {
        match done.unwrap() {
            (id, Ok(())) => committed.push(id),
            (id, Err(StoreError::Conflict(m))) => {
                assert!(m.contains("already exists"), "{m}");
                refused.push(id);
            }
            (_, Err(e)) => panic!("unexpected store error: {e}"),
        }
    }
    assert_eq!((committed.len(), refused.len()), (50, 10));
    for id in &committed {
        assert!(s.get_grant(id).await.unwrap().is_some());
    }
    for id in &refused {
        assert_eq!(
            s.get_grant(id).await.unwrap(),
            None,
            "a refused write left its grant"
        );
    }
    let audit = all_audit(&s).await;
    assert_eq!(verify_chain(&audit).unwrap(), 2 + 2 * 50);
    assert!(
        audit.iter().all(|r| !refused
            .iter()
            .any(|id| r.grant_id.as_deref() == Some(id.as_str()))),
        "a refused write left an audit record"
    );
}

/// Grant updates queued while the store is held (so the writer takes them as one batch):
/// each lands or fails on its own — a refused change, a row the database refuses, a
/// missing grant — and a second update of a grant applies on top of the first.
async fn grant_updates_in_one_batch_fail_alone(db: Arc<Db>) {
    let s = db.open().await;
    let mut grants = Vec::new();
    for i in 0..5 {
        grants.push(insert_granted(&s, "etl", &format!("upd/{i}"), 900_000).await);
    }
    let audit_before = all_audit(&s).await.len();

    // Hold the store so the updates queue up behind the writer's first batch.
    let mut holder = db.raw().await;
    let hold: &[&str] = if db.is_postgres() {
        &["BEGIN", "SELECT id FROM grants FOR UPDATE"]
    } else {
        &["BEGIN IMMEDIATE"]
    };
    for statement in hold {
        sqlx::query(statement).execute(&mut holder).await.unwrap();
    }

    let minute = std::time::Duration::from_secs(60);
    let renew_by_a_minute = move || -> kairos_store::GrantUpdate {
        Box::new(move |g: &mut Grant| {
            g.renew(g.expires_at.plus(minute), at(500))?;
            Ok(vec![
                AuditDraft::new(AuditKind::Renewed, "workload:etl").grant(&g.id),
            ])
        })
    };
    let refused: kairos_store::GrantUpdate =
        Box::new(|_g: &mut Grant| Err(TransitionError::RenewInPast));
    // Past the maximum end without the domain's check: the database's CHECK refuses it.
    let unwritable: kairos_store::GrantUpdate = Box::new(move |g: &mut Grant| {
        g.expires_at = g.max_expires_at.plus(minute);
        Ok(vec![
            AuditDraft::new(AuditKind::Renewed, "workload:etl").grant(&g.id),
        ])
    });
    let missing = GrantId::generate();
    let jobs: Vec<(GrantId, kairos_store::GrantUpdate)> = vec![
        (grants[0].id.clone(), renew_by_a_minute()),
        (grants[1].id.clone(), refused),
        (grants[2].id.clone(), unwritable),
        (missing.clone(), renew_by_a_minute()),
        (grants[3].id.clone(), renew_by_a_minute()),
        (grants[0].id.clone(), renew_by_a_minute()),
        (grants[4].id.clone(), renew_by_a_minute()),
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for (n, (id, update)) in jobs.into_iter().enumerate() {
        let s = s.clone();
        tasks.spawn(async move { (n, s.update_grant(&id, update).await) });
        // In order, so the second update of grants[0] queues after the first.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    holder.close().await.unwrap();

    let mut results: Vec<_> = Vec::new();
    while let Some(done) = tasks.join_next().await {
        results.push(done.unwrap());
    }
    results.sort_by_key(|(n, _)| *n);
    let outcome: Vec<&str> = results
        .iter()
        .map(|(_, r)| match r {
            Ok(_) => "ok",
            Err(StoreError::Transition(_)) => "refused",
            Err(StoreError::NotFound(_)) => "missing",
            Err(_) => "failed",
        })
        .collect();
    assert_eq!(
        outcome,
        ["ok", "refused", "failed", "missing", "ok", "ok", "ok"],
        "{results:?}"
    );
    let expires = |g: &Grant| g.expires_at;
    let now = |i: usize| {
        let s = s.clone();
        let id = grants[i].id.clone();
        async move { s.get_grant(&id).await.unwrap().unwrap() }
    };
    assert_eq!(
        expires(&now(0).await),
        grants[0].expires_at.plus(minute).plus(minute)
    );
    assert_eq!(now(1).await, grants[1]);
    assert_eq!(now(2).await, grants[2], "a refused row was written");
    assert_eq!(expires(&now(3).await), grants[3].expires_at.plus(minute));
    assert_eq!(expires(&now(4).await), grants[4].expires_at.plus(minute));
    let audit = all_audit(&s).await;
    assert_eq!(verify_chain(&audit).unwrap() as usize, audit_before + 4);
    let renewed: Vec<&str> = audit[audit_before..]
        .iter()
        .map(|r| r.grant_id.as_deref().unwrap())
        .collect();
    for (i, times) in [(0, 2), (1, 0), (2, 0), (3, 1), (4, 1)] {
        let id = grants[i].id.as_str();
        assert_eq!(
            renewed.iter().filter(|r| **r == id).count(),
            times,
            "audit records of grant {i}"
        );
    }
}

/// Concurrent claims to show an account's password: exactly one wins, with one audit
/// record; a grant with no account has no password to claim.
async fn a_password_delivery_is_claimed_once(db: Arc<Db>) {
    let s = db.open().await;
    let grant = insert_granted(&s, "etl", "deliver/1", 900_000).await;
    let audit_before = all_audit(&s).await.len();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let (s, id) = (s.clone(), grant.id.clone());
        tasks.spawn(async move {
            let draft = AuditDraft::new(AuditKind::CredentialDelivered, "workload:etl").grant(&id);
            s.claim_delivery(&id, at(10), draft).await.unwrap()
        });
    }
    let mut won = 0;
    while let Some(done) = tasks.join_next().await {
        won += usize::from(done.unwrap());
    }
    assert_eq!(won, 1, "claims that won");
    let audit = all_audit(&s).await;
    assert_eq!(audit.len(), audit_before + 1);
    assert_eq!(audit.last().unwrap().kind, AuditKind::CredentialDelivered);
    // Also on a second store over the same database (another replica).
    let replica = db.open().await;
    let draft = AuditDraft::new(AuditKind::CredentialDelivered, "workload:etl").grant(&grant.id);
    assert!(
        !replica
            .claim_delivery(&grant.id, at(20), draft)
            .await
            .unwrap()
    );

    let (request, mut token_grant) = granted("etl", "deliver/2", 900_000);
    token_grant.account = None;
    token_grant.sealed_secret = None;
    s.insert_request(&request, Some(&token_grant), vec![])
        .await
        .unwrap();
    let draft =
        AuditDraft::new(AuditKind::CredentialDelivered, "workload:etl").grant(&token_grant.id);
    assert!(
        !s.claim_delivery(&token_grant.id, at(30), draft)
            .await
            .unwrap()
    );
    assert_eq!(all_audit(&s).await.len(), audit_before + 1);
}

/// A store upgraded to 0003 knows which passwords were shown before (from the audit).
async fn deliveries_from_before_0003_stay_claimed(db: Arc<Db>) {
    let s = db.open().await;
    let shown = insert_granted(&s, "etl", "old/1", 900_000).await;
    let not_shown = insert_granted(&s, "etl", "old/2", 900_000).await;
    let delivered =
        |id: &GrantId| AuditDraft::new(AuditKind::CredentialDelivered, "workload:etl").grant(id);
    s.append_audit(vec![delivered(&shown.id)]).await.unwrap();
    s.close().await;
    // Back to the schema before 0003.
    let mut raw = db.raw().await;
    for statement in [
        "ALTER TABLE grants DROP COLUMN delivered_at",
        "DELETE FROM _sqlx_migrations WHERE version = 3",
    ] {
        sqlx::query(statement).execute(&mut raw).await.unwrap();
    }
    raw.close().await.unwrap();

    let s = db.open().await;
    assert!(
        !s.claim_delivery(&shown.id, at(5), delivered(&shown.id))
            .await
            .unwrap()
    );
    assert!(
        s.claim_delivery(&not_shown.id, at(5), delivered(&not_shown.id))
            .await
            .unwrap()
    );
}

/// Receipts written together: each grant completes or fails on its own.
async fn revocations_complete_together_each_on_its_own(db: Arc<Db>) {
    let s = db.open().await;
    let ending: Vec<Grant> = {
        let mut v = Vec::new();
        for i in 0..3 {
            v.push(insert_granted(&s, "etl", &format!("batch/{i}"), 1_000).await);
        }
        v
    };
    let still_active = insert_granted(&s, "etl", "batch/active", 900_000).await;
    s.end_grants(
        &EndSelector::ExpiredBy {
            now: at(1_000),
            limit: 10,
        },
        &end_by(EndReason::Expired, 1_000),
    )
    .await
    .unwrap();
    assert_eq!(
        s.claim_revocations(at(1_000), 10, 1_000)
            .await
            .unwrap()
            .len(),
        3
    );
    let before = all_audit(&s).await.len();

    let results = s
        .complete_revocations(vec![
            (ending[0].id.clone(), receipt(1_100)),
            (GrantId::generate(), receipt(1_100)),
            (still_active.id.clone(), receipt(1_100)),
            (ending[1].id.clone(), receipt(1_200)),
            (ending[2].id.clone(), receipt(1_300)),
        ])
        .await
        .unwrap();
    assert_eq!(results.len(), 5);
    assert!(
        matches!(results[1], Err(StoreError::NotFound(_))),
        "{:?}",
        results[1]
    );
    assert!(
        matches!(results[2], Err(StoreError::Transition(_))),
        "{:?}",
        results[2]
    );
    for (i, g) in [(0, &ending[0]), (3, &ending[1]), (4, &ending[2])] {
        let done = results[i].as_ref().unwrap();
        assert_eq!(done.id, g.id);
        assert!(
            matches!(done.state, GrantState::Ended { .. }),
            "{:?}",
            done.state
        );
        assert_eq!(s.get_grant(&g.id).await.unwrap().as_ref(), Some(done));
    }
    assert_eq!(
        s.get_grant(&still_active.id).await.unwrap().unwrap().state,
        GrantState::Active,
        "the refused grant is left as it was"
    );
    assert!(
        s.claim_revocations(at(900_000), 10, 1_000)
            .await
            .unwrap()
            .is_empty()
    );
    let audit = all_audit(&s).await;
    assert_eq!(audit.len(), before + 3);
    assert!(
        audit[before..]
            .iter()
            .all(|r| r.kind == AuditKind::Verified)
    );
    verify_chain(&audit).unwrap();
}

/// A claim larger than one statement's chunk returns every job once, due first.
async fn large_claims_come_in_queue_order(db: Arc<Db>) {
    let s = db.open().await;
    let mut issued = Vec::new();
    for i in 0..300_i64 {
        let g = insert_granted(&s, "etl", &format!("many/{i}"), 1_000 + i).await;
        issued.push(g.id);
    }
    s.end_grants(
        &EndSelector::ExpiredBy {
            now: at(2_000),
            limit: 1_000,
        },
        &end_by(EndReason::Expired, 2_000),
    )
    .await
    .unwrap();
    let claimed = s.claim_revocations(at(2_000), 500, 1_000).await.unwrap();
    assert_eq!(claimed.len(), 300);
    // All fell due at the same moment, so the queue's order is the grant id's.
    let got = ids(&claimed);
    let mut want = issued.clone();
    want.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    assert_eq!(got, want, "every job exactly once, in queue order");
    assert!(
        claimed
            .iter()
            .all(|g| matches!(g.state, GrantState::Ending { .. }))
    );
    assert!(
        s.claim_revocations(at(2_000), 500, 1_000)
            .await
            .unwrap()
            .is_empty()
    );

    // Ending and completing more grants than one statement's chunk: every row written.
    let ended_audit = all_audit(&s).await.len();
    let results = s
        .complete_revocations(
            claimed
                .iter()
                .map(|g| (g.id.clone(), receipt(2_100)))
                .collect(),
        )
        .await
        .unwrap();
    assert_eq!(results.len(), 300);
    for (g, r) in claimed.iter().zip(&results) {
        let done = r.as_ref().unwrap();
        assert_eq!(done.id, g.id);
        let stored = s.get_grant(&g.id).await.unwrap().unwrap();
        assert_eq!(&stored, done);
        assert!(
            matches!(&stored.state, GrantState::Ended { receipt: r, .. } if r.verified_at == at(2_105)),
            "{:?}",
            stored.state
        );
    }
    assert!(
        s.claim_revocations(at(900_000), 500, 1_000)
            .await
            .unwrap()
            .is_empty(),
        "every job is gone"
    );
    let audit = all_audit(&s).await;
    assert_eq!(audit.len(), ended_audit + 300);
    verify_chain(&audit).unwrap();
}

/// A store made before migration 0002 (the audit hash columns UNIQUE) keeps its chain
/// through the upgrade, and appends go on from its head.
#[tokio::test]
async fn sqlite_store_from_before_0002_upgrades_with_its_chain() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
    // The schema as the first migration alone leaves it, with a store's records in it.
    let first = tempfile::tempdir().unwrap();
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite/0001_init.sql"),
        first.path().join("0001_init.sql"),
    )
    .unwrap();
    {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        sqlx::migrate::Migrator::new(first.path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        let mut prev = "0".repeat(64);
        for seq in 1..=3_i64 {
            let record = AuditDraft::new(AuditKind::Requested, "user:old")
                .task_ref(format!("old/{seq}"))
                .seal(seq, at(seq), prev.clone());
            sqlx::query(
                "INSERT INTO audit (seq, at, kind, actor, identity, request_id, grant_id, \
                 task_ref, data, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(record.seq)
            .bind(record.at.as_millis())
            .bind(record.kind.as_str())
            .bind(record.actor.clone())
            .bind(record.identity.clone())
            .bind(record.request_id.clone())
            .bind(record.grant_id.clone())
            .bind(record.task_ref.clone())
            .bind(record.data.clone())
            .bind(record.prev_hash.clone())
            .bind(record.hash.clone())
            .execute(&pool)
            .await
            .unwrap();
            prev = record.hash;
        }
        sqlx::query("UPDATE audit_head SET seq = 3, hash = $1 WHERE id = 1")
            .bind(prev)
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    let s = SqlStore::connect(&url).await.unwrap();
    s.append_audit(vec![AuditDraft::new(AuditKind::Requested, "user:new")])
        .await
        .unwrap();
    let audit = all_audit(&s).await;
    assert_eq!(verify_chain(&audit).unwrap(), 4);
    assert_eq!(
        audit.iter().map(|r| r.actor.as_str()).collect::<Vec<_>>(),
        ["user:old", "user:old", "user:old", "user:new"]
    );
    assert_eq!(s.audit_head_mismatch(4).await.unwrap(), None);
    s.close().await;
}

// ---- usage monitoring ------------------------------------------------------------------------

fn use_of(
    grant: &GrantId,
    first: i64,
    last: i64,
    uses: u64,
    source: &str,
    client: &str,
) -> GrantUse {
    GrantUse {
        grant: grant.clone(),
        first_at: at(first),
        last_at: at(last),
        uses,
        last_source: Some(source.parse().unwrap()),
        last_client: Some(client.into()),
    }
}

/// Flushes merge: the earliest first use, the latest last use (with its source and
/// client), uses summed — whichever order the flushes (or replicas) write in.
async fn usage_batches_merge_across_flushes_and_replicas(db: Arc<Db>) {
    let s = db.open().await;
    let other = db.open().await;
    let g = insert_granted(&s, "etl", "run-1", 900_000).await;
    let unused = insert_granted(&s, "etl", "run-2", 900_000).await;
    assert_eq!(s.grant_usage(&g.id).await.unwrap(), None);
    s.record_usage(UsageBatch {
        grants: vec![use_of(&g.id, 100, 200, 2, "10.0.0.1", "user:rs-a")],
        ..UsageBatch::default()
    })
    .await
    .unwrap();
    assert_eq!(
        s.grant_usage(&g.id).await.unwrap(),
        Some(use_of(&g.id, 100, 200, 2, "10.0.0.1", "user:rs-a"))
    );
    // A replica's flush with an earlier first use and a later last use.
    other
        .record_usage(UsageBatch {
            grants: vec![use_of(
                &g.id,
                50,
                300,
                3,
                "2001:db8::9",
                "session@orders-db",
            )],
            ..UsageBatch::default()
        })
        .await
        .unwrap();
    // A late flush of older uses moves neither the last use nor its source.
    s.record_usage(UsageBatch {
        grants: vec![use_of(&g.id, 120, 150, 1, "10.9.9.9", "user:rs-late")],
        ..UsageBatch::default()
    })
    .await
    .unwrap();
    assert_eq!(
        s.grant_usage(&g.id).await.unwrap(),
        Some(use_of(
            &g.id,
            50,
            300,
            6,
            "2001:db8::9",
            "session@orders-db"
        ))
    );
    assert_eq!(s.grant_usage(&unused.id).await.unwrap(), None);
    // Many grants in one flush (more than a chunk).
    let many: Vec<GrantUse> = (0..300)
        .map(|i| use_of(&GrantId::generate(), i, i, 1, "10.0.0.2", "user:rs-b"))
        .collect();
    let last = many[299].grant.clone();
    s.record_usage(UsageBatch {
        grants: many,
        ..UsageBatch::default()
    })
    .await
    .unwrap();
    assert_eq!(s.grant_usage(&last).await.unwrap().unwrap().uses, 1);
    s.record_usage(UsageBatch::default()).await.unwrap();
    other.close().await;
}

fn identity(name: &str) -> IdentityName {
    IdentityName::parse(name).unwrap()
}

async fn identity_activity_and_sources(db: Arc<Db>) {
    let s = db.open().await;
    assert_eq!(
        s.note_identities(&[identity("etl"), identity("bot")], at(0))
            .await
            .unwrap(),
        2
    );
    // Known identities keep their first sighting.
    assert_eq!(
        s.note_identities(&[identity("etl"), identity("new")], at(50))
            .await
            .unwrap(),
        1
    );
    let source = |name: &str, ip: &str, first: i64, last: i64| IdentitySource {
        identity: identity(name),
        source: ip.parse().unwrap(),
        first_at: at(first),
        last_at: at(last),
    };
    s.record_usage(UsageBatch {
        requests: vec![IdentityRequests {
            identity: identity("etl"),
            first_at: at(100),
            last_at: at(200),
            last_source: Some("10.0.0.1".parse().unwrap()),
        }],
        sources: vec![
            source("etl", "10.0.0.1", 100, 200),
            source("etl", "10.0.0.2", 100, 100),
            source("etl", "10.0.0.3", 10, 10),
            source("bot", "10.0.0.1", 100, 100),
        ],
        ..UsageBatch::default()
    })
    .await
    .unwrap();
    // An older flush does not move the last request back.
    s.record_usage(UsageBatch {
        requests: vec![IdentityRequests {
            identity: identity("etl"),
            first_at: at(150),
            last_at: at(160),
            last_source: Some("10.7.7.7".parse().unwrap()),
        }],
        sources: vec![source("etl", "10.0.0.2", 90, 300)],
        ..UsageBatch::default()
    })
    .await
    .unwrap();
    let activity = s.identity_activity().await.unwrap();
    let names: Vec<&str> = activity.iter().map(|a| a.identity.as_str()).collect();
    assert_eq!(names, ["bot", "etl", "new"]);
    let etl = &activity[1];
    assert_eq!(etl.first_seen_at, at(0));
    assert_eq!(etl.last_request_at, Some(at(200)));
    assert_eq!(etl.last_source, Some("10.0.0.1".parse().unwrap()));
    assert_eq!(activity[0].last_request_at, None);
    assert_eq!(activity[2].first_seen_at, at(50));
    // Distinct addresses seen since a time, over a threshold only.
    assert_eq!(
        s.identity_source_counts(at(50), 1).await.unwrap(),
        vec![(identity("etl"), 2)]
    );
    assert_eq!(
        s.identity_source_counts(at(0), 2).await.unwrap(),
        vec![(identity("etl"), 3)]
    );
    assert_eq!(s.identity_source_counts(at(0), 3).await.unwrap(), vec![]);
    assert_eq!(s.prune_identity_sources(at(50)).await.unwrap(), 1);
    assert_eq!(
        s.identity_source_counts(at(0), 0).await.unwrap(),
        vec![(identity("bot"), 1), (identity("etl"), 2)]
    );
    // Concurrent task references among live grants.
    for task_ref in ["run-1", "run-2", "run-2", "run-3"] {
        insert_granted(&s, "etl", task_ref, 900_000).await;
    }
    let ended = insert_granted(&s, "etl", "run-4", 900_000).await;
    s.end_grants(
        &EndSelector::One(ended.id),
        &end_by(EndReason::Released, 10),
    )
    .await
    .unwrap();
    insert_granted(&s, "bot", "run-1", 900_000).await;
    assert_eq!(
        s.live_task_counts(0).await.unwrap(),
        vec![(identity("bot"), 1), (identity("etl"), 3)]
    );
    assert_eq!(
        s.live_task_counts(2).await.unwrap(),
        vec![(identity("etl"), 3)]
    );
}

/// Active grants idle (since their last use, or their issue) for at least a share of
/// their TTL, not yet flagged.
async fn held_candidates_are_unused_active_grants(db: Arc<Db>) {
    let s = db.open().await;
    // Issued at 0, TTL 1000 ms: half is 500 ms.
    let never = insert_granted(&s, "etl", "run-1", 1_000).await;
    let used = insert_granted(&s, "etl", "run-2", 1_000).await;
    let ended = insert_granted(&s, "etl", "run-3", 1_000).await;
    s.end_grants(
        &EndSelector::One(ended.id.clone()),
        &end_by(EndReason::Released, 1),
    )
    .await
    .unwrap();
    s.record_usage(UsageBatch {
        grants: vec![use_of(&used.id, 100, 300, 1, "10.0.0.1", "user:rs")],
        ..UsageBatch::default()
    })
    .await
    .unwrap();
    let held = |now: i64| {
        let s = s.clone();
        async move {
            s.held_candidates(at(now), 500, 100)
                .await
                .unwrap()
                .into_iter()
                .map(|h| h.grant)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(held(499).await, vec![]);
    assert_eq!(held(500).await, vec![never.id.clone()]);
    assert_eq!(held(800).await, vec![never.id.clone(), used.id.clone()]);
    let h = s.held_candidates(at(800), 500, 100).await.unwrap();
    assert_eq!(h[1].last_used_at, Some(at(300)));
    assert_eq!(h[0].last_used_at, None);
    assert_eq!(h[0].identity.as_str(), "etl");
    assert_eq!(h[0].task_ref.as_str(), "run-1");
    // Flagged grants are not candidates again.
    assert!(
        s.flag_once("held_past_use", never.id.as_str(), at(800))
            .await
            .unwrap()
    );
    assert_eq!(held(800).await, vec![used.id.clone()]);
    assert_eq!(s.held_candidates(at(800), 500, 0).await.unwrap(), vec![]);
}

async fn usage_flags_are_set_once(db: Arc<Db>) {
    let s = db.open().await;
    let other = db.open().await;
    let (a, b) = tokio::join!(
        s.flag_once("dormant_identity", "etl", at(1)),
        other.flag_once("dormant_identity", "etl", at(2)),
    );
    assert!(a.unwrap() ^ b.unwrap(), "exactly one replica sets the flag");
    assert!(s.flag_once("held_past_use", "etl", at(3)).await.unwrap());
    let flags = s.flags("dormant_identity").await.unwrap();
    assert_eq!(flags.len(), 1);
    assert_eq!(flags[0].subject, "etl");
    assert!(s.unflag("dormant_identity", "etl").await.unwrap());
    assert!(!other.unflag("dormant_identity", "etl").await.unwrap());
    assert!(s.flags("dormant_identity").await.unwrap().is_empty());
    assert_eq!(s.flags("held_past_use").await.unwrap().len(), 1);
    other.close().await;
}

// ---- governance -------------------------------------------------------------------------

fn status(
    identity: &str,
    state: kairos_governance::IdentityState,
    offset: i64,
) -> kairos_governance::IdentityStatus {
    kairos_governance::IdentityStatus {
        identity: IdentityName::parse(identity).unwrap(),
        state,
        cause: (state != kairos_governance::IdentityState::Active)
            .then_some(kairos_governance::SuspensionCause::Manual),
        reason: "test".into(),
        by: "user:oscar".into(),
        since: at(offset),
    }
}

async fn identity_states_change_once_and_end_the_identity_s_grants(db: Arc<Db>) {
    use kairos_governance::IdentityState::{Active, Retired, Suspended};
    let a = db.open().await;
    let b = db.open().await;
    let g1 = insert_granted(&a, "svc", "T-1", 60_000).await;
    let g2 = insert_granted(&a, "svc", "T-2", 60_000).await;
    let other = insert_granted(&a, "other", "T-3", 60_000).await;
    assert!(a.identity_states().await.unwrap().is_empty());

    // Two replicas suspend at once: exactly one changes it and ends the grants.
    let change = |offset| StateChange {
        to: status("svc", Suspended, offset),
        from: vec![Active],
        end: Some(end_by(EndReason::Suspended, offset)),
        audit: vec![AuditDraft::new(AuditKind::IdentitySuspended, "user:oscar").identity("svc")],
        alert: None,
    };
    let (x, y) = tokio::join!(
        a.change_identity_state(change(10)),
        b.change_identity_state(change(11))
    );
    let results = [x.unwrap(), y.unwrap()];
    let winners: Vec<_> = results.iter().flatten().collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let mut ended: Vec<GrantId> = winners[0].iter().map(|g| g.id.clone()).collect();
    ended.sort();
    let mut expected = vec![g1.id.clone(), g2.id.clone()];
    expected.sort();
    assert_eq!(ended, expected);
    for id in [&g1.id, &g2.id] {
        let g = a.get_grant(id).await.unwrap().unwrap();
        assert!(
            matches!(g.state, GrantState::Ending { ref end, .. } if end.reason == EndReason::Suspended)
        );
    }
    assert!(matches!(
        a.get_grant(&other.id).await.unwrap().unwrap().state,
        GrantState::Active
    ));
    let stored = a
        .identity_state(&IdentityName::parse("svc").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.state, Suspended);
    assert_eq!(
        stored.cause,
        Some(kairos_governance::SuspensionCause::Manual)
    );

    // A change whose precondition no longer holds writes nothing, audit included.
    let before = a.list_audit(&AuditFilter::default()).await.unwrap().len();
    assert!(a.change_identity_state(change(12)).await.unwrap().is_none());
    assert_eq!(
        a.list_audit(&AuditFilter::default()).await.unwrap().len(),
        before
    );

    // Resume, then retire; the audit chain still verifies.
    let resume = StateChange {
        to: status("svc", Active, 20),
        from: vec![Suspended],
        end: None,
        audit: vec![AuditDraft::new(AuditKind::IdentityResumed, "user:oscar").identity("svc")],
        alert: None,
    };
    assert_eq!(
        a.change_identity_state(resume).await.unwrap(),
        Some(Vec::new())
    );
    let retire = StateChange {
        to: status("svc", Retired, 30),
        from: vec![Active, Suspended],
        end: Some(end_by(EndReason::Retired, 30)),
        audit: Vec::new(),
        alert: None,
    };
    assert!(a.change_identity_state(retire).await.unwrap().is_some());
    let all = a.identity_states().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].state, Retired);
    // A page of names reads its own states only.
    let svc = IdentityName::parse("svc").unwrap();
    let other = IdentityName::parse("never-changed").unwrap();
    assert_eq!(
        a.identity_states_of(&[other.clone(), svc]).await.unwrap(),
        all
    );
    assert!(a.identity_states_of(&[other]).await.unwrap().is_empty());
    let records = a.audit_page(0, 1000).await.unwrap();
    assert!(verify_chain(&records).is_ok());
}

async fn alerts_open_once_per_key_and_move_forward_only(db: Arc<Db>) {
    use kairos_governance::{AlertDraft, AlertKind, AlertState};
    let a = db.open().await;
    let b = db.open().await;
    let draft = AlertDraft::new(AlertKind::UseAfterEnd, "grt_1", "used after end")
        .identity(&IdentityName::parse("svc").unwrap())
        .detail(serde_json::json!({"source": "10.0.0.7"}));
    let audit = || AuditDraft::new(AuditKind::AlertRaised, "system:governance");
    // Two replicas raise the same alert at once: one opens it, the other counts.
    let (x, y) = tokio::join!(
        a.raise_alert("alr_1", &draft, at(1), audit()),
        b.raise_alert("alr_2", &draft, at(2), audit())
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    let opened = [&x, &y]
        .iter()
        .filter(|r| matches!(r, Raised::Opened(_)))
        .count();
    assert_eq!(opened, 1, "{x:?} {y:?}");
    let id = x.alert().id.clone();
    assert_eq!(y.alert().id, id);
    let stored = a.get_alert(&id).await.unwrap().unwrap();
    assert_eq!(stored.occurrences, 2);
    assert_eq!(stored.detail["source"], "10.0.0.7");
    assert_eq!(stored.kind, AlertKind::UseAfterEnd);
    let raised = a
        .list_audit(&AuditFilter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == AuditKind::AlertRaised)
        .count();
    assert_eq!(raised, 1);

    let upd = |to, offset| {
        let a = &a;
        let id = id.clone();
        async move {
            a.update_alert(
                &id,
                to,
                "user:oscar",
                "note",
                at(offset),
                AuditDraft::new(AuditKind::AlertUpdated, "user:oscar"),
            )
            .await
        }
    };
    assert_eq!(
        upd(AlertState::Acknowledged, 5).await.unwrap().state,
        AlertState::Acknowledged
    );
    assert!(matches!(
        upd(AlertState::Open, 6).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        upd(AlertState::Resolved, 7).await.unwrap().state,
        AlertState::Resolved
    );
    assert!(matches!(
        upd(AlertState::Acknowledged, 8).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        a.update_alert("alr_none", AlertState::Resolved, "x", "y", at(9), audit())
            .await,
        Err(StoreError::NotFound(_))
    ));

    // Resolved: the next occurrence opens a new alert; filters find each.
    let again = a
        .raise_alert("alr_3", &draft, at(10), audit())
        .await
        .unwrap();
    assert!(matches!(again, Raised::Opened(ref n) if n.id == "alr_3"));
    let unresolved = a
        .list_alerts(&AlertFilter {
            unresolved: true,
            ..AlertFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        unresolved.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        ["alr_3"]
    );
    let resolved = a
        .list_alerts(&AlertFilter {
            state: Some(AlertState::Resolved),
            ..AlertFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(resolved.len(), 1);
    assert_eq!(
        a.unresolved_alert_counts().await.unwrap(),
        vec![(AlertKind::UseAfterEnd, 1)]
    );
    let by_key = a
        .resolve_alert_by_key(
            &draft.dedupe_key,
            "system:governance",
            "gone",
            at(11),
            audit(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_key.id, "alr_3");
    assert!(a.unresolved_alert_counts().await.unwrap().is_empty());
    let records = a.audit_page(0, 1000).await.unwrap();
    assert!(verify_chain(&records).is_ok());
}

// ---- posture figures ----------------------------------------------------------------------

/// A grant of `identity` issued at `issued` (absolute ms), expiring at `expires`.
async fn insert_issued(s: &SqlStore, identity: &str, issued: i64, expires: i64) -> Grant {
    let (request, mut grant) = granted(identity, &format!("run/{}", grant_hex()), 0);
    grant.issued_at = Timestamp::from_millis(issued);
    grant.expires_at = Timestamp::from_millis(expires);
    grant.max_expires_at = Timestamp::from_millis(expires);
    s.insert_request(&request, Some(&grant), vec![])
        .await
        .unwrap();
    grant
}

/// Ends `grant` at `ended` and, when given, verifies it gone at `verified` (absolute ms).
async fn end_at(s: &SqlStore, grant: &Grant, ended: i64, verified: Option<i64>) {
    let end = GrantEnd {
        reason: EndReason::Released,
        by: Principal::Workload(grant.identity.clone()),
        at: Timestamp::from_millis(ended),
    };
    s.end_grants(&EndSelector::One(grant.id.clone()), &end)
        .await
        .unwrap();
    if let Some(verified) = verified {
        let at = Timestamp::from_millis(verified);
        let r = Receipt {
            revoked_at: at,
            verified_at: at,
            method: "test".into(),
            evidence: "gone".into(),
        };
        s.complete_revocation(&grant.id, &r).await.unwrap();
    }
}

async fn posture_figures_are_the_same_before_and_after_folding(db: Arc<Db>) {
    use kairos_governance::posture::{DAY_MS, window_start};
    const H: i64 = 3_600_000;
    let midnight = T0 / DAY_MS * DAY_MS;
    let now = Timestamp::from_millis(midnight + 10 * H);
    let since = window_start(now, 30);
    assert_eq!(since.as_millis(), midnight - 29 * DAY_MS);
    let s = db.open().await;

    // Over midnight, verified 40 ms after its end: 2 h in the window, both days.
    let a1 = insert_issued(&s, "svc-a", midnight - H, midnight + 5 * H).await;
    end_at(&s, &a1, midnight + H, Some(midnight + H + 40)).await;
    // Issued before the window, ended inside it: only its 2 h inside count.
    let a2 = insert_issued(
        &s,
        "svc-a",
        since.as_millis() - H,
        since.as_millis() + 9 * H,
    )
    .await;
    end_at(
        &s,
        &a2,
        since.as_millis() + 2 * H,
        Some(since.as_millis() + 2 * H + 5),
    )
    .await;
    // Live: active since 2 h, and ending (not yet verified) after 1 h.
    insert_issued(&s, "svc-b", midnight + 8 * H, midnight + 12 * H).await;
    let b2 = insert_issued(&s, "svc-b", midnight + H, midnight + 4 * H).await;
    end_at(&s, &b2, midnight + 2 * H, None).await;
    // All of it before the window: nothing.
    let c1 = insert_issued(
        &s,
        "svc-c",
        midnight - 40 * DAY_MS,
        midnight - 40 * DAY_MS + H,
    )
    .await;
    end_at(
        &s,
        &c1,
        midnight - 40 * DAY_MS + H / 2,
        Some(midnight - 40 * DAY_MS + H / 2 + 1),
    )
    .await;

    let expected = {
        let mut f = kairos_store::PostureFigures::default();
        f.grant_ms.insert("svc-a".into(), 4 * H);
        f.grant_ms.insert("svc-b".into(), 3 * H);
        // Per day: a1's hour before midnight and a2's two hours on the window's first
        // day; today a1's hour, the live grant's two and the ending one's hour.
        let today = midnight / DAY_MS;
        f.grant_ms_by_day.insert(today - 29, 2 * H);
        f.grant_ms_by_day.insert(today - 1, H);
        f.grant_ms_by_day.insert(today, 4 * H);
        f.verified = 2;
        f.verified_ms_total = 45;
        f.latency_counts = vec![0; kairos_governance::posture::LATENCY_BUCKETS_MS.len() + 1];
        f.latency_counts[0] = 1;
        f.latency_counts[1] = 1;
        f
    };
    assert_eq!(s.posture_figures(since, now).await.unwrap(), expected);

    // Folded a few records at a time, the figures never change.
    let keep = since;
    let mut folded = 0;
    for _ in 0..40 {
        folded += s.fold_posture(keep, 2).await.unwrap();
        assert_eq!(s.posture_figures(since, now).await.unwrap(), expected);
    }
    assert_eq!(folded, 3, "every verified grant folded once");

    // Two replicas folding the same new record together fold it once.
    let b3 = insert_issued(&s, "svc-b", midnight + 3 * H, midnight + 9 * H).await;
    end_at(&s, &b3, midnight + 4 * H, Some(midnight + 4 * H + 20_000)).await;
    let other = db.open().await;
    let (x, y) = tokio::join!(s.fold_posture(keep, 1_000), other.fold_posture(keep, 1_000));
    assert_eq!(x.unwrap() + y.unwrap(), 1);
    let mut expected = expected;
    *expected.grant_ms.get_mut("svc-b").unwrap() += H;
    *expected
        .grant_ms_by_day
        .get_mut(&(midnight / DAY_MS))
        .unwrap() += H;
    expected.verified = 3;
    expected.verified_ms_total += 20_000;
    expected.latency_counts[9] = 1;
    assert_eq!(s.posture_figures(since, now).await.unwrap(), expected);
    assert_eq!(other.posture_figures(since, now).await.unwrap(), expected);

    // Keeping from today drops the folded days before it; today's figures stay.
    let today = Timestamp::from_millis(midnight);
    s.fold_posture(today, 1_000).await.unwrap();
    let mut today_only = kairos_store::PostureFigures::default();
    today_only.grant_ms.insert("svc-a".into(), H);
    today_only.grant_ms.insert("svc-b".into(), 4 * H);
    today_only.grant_ms_by_day.insert(midnight / DAY_MS, 5 * H);
    today_only.verified = 2;
    today_only.verified_ms_total = 20_040;
    today_only.latency_counts = vec![0; kairos_governance::posture::LATENCY_BUCKETS_MS.len() + 1];
    today_only.latency_counts[1] = 1;
    today_only.latency_counts[9] = 1;
    assert_eq!(s.posture_figures(today, now).await.unwrap(), today_only);
    // The whole window now reads only what was kept (days before today are gone).
    let kept = s.posture_figures(since, now).await.unwrap();
    assert_eq!(kept.grant_ms, today_only.grant_ms);
    assert_eq!(kept.grant_ms_by_day, today_only.grant_ms_by_day);
    assert_eq!(kept.verified, 2);
}

/// A person's reason for ending grants goes into each end's audit record beside the end
/// reason; without one the record has no note.
async fn an_end_with_a_note_keeps_it_in_each_audit_record(db: Arc<Db>) {
    let s = db.open().await;
    let a = insert_issued(&s, "svc-note", T0, T0 + 3_600_000).await;
    let b = insert_issued(&s, "svc-note", T0, T0 + 3_600_000).await;
    let quiet = insert_issued(&s, "svc-quiet", T0, T0 + 3_600_000).await;
    let end = GrantEnd {
        reason: EndReason::Revoked,
        by: Principal::User(user("olivia")),
        at: at(1_000),
    };
    let ended = s
        .end_grants_noted(
            &EndSelector::Identity(IdentityName::parse("svc-note").unwrap()),
            &end,
            "credentials seen in a build log",
        )
        .await
        .unwrap();
    assert_eq!(ended.len(), 2);
    s.end_grants(&EndSelector::One(quiet.id.clone()), &end)
        .await
        .unwrap();
    for (grant, note) in [
        (&a, Some("credentials seen in a build log")),
        (&b, Some("credentials seen in a build log")),
        (&quiet, None),
    ] {
        let records = s
            .list_audit(&AuditFilter {
                grant_id: Some(grant.id.to_string()),
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        let revoked: Vec<_> = records
            .iter()
            .filter(|r| r.kind == AuditKind::Revoked)
            .collect();
        assert_eq!(revoked.len(), 1, "{records:?}");
        let data: serde_json::Value = serde_json::from_str(&revoked[0].data).unwrap();
        assert_eq!(data["reason"], "revoked");
        assert_eq!(data["note"].as_str(), note, "{data}");
    }
}

/// A live grant that has lasted several days is spread over each of them, clipped to the
/// window and to now; the per-day figures add up to the per-identity ones.
async fn posture_live_grants_are_spread_over_their_days(db: Arc<Db>) {
    use kairos_governance::posture::{DAY_MS, window_start};
    const H: i64 = 3_600_000;
    let midnight = T0 / DAY_MS * DAY_MS;
    let today = midnight / DAY_MS;
    let now = Timestamp::from_millis(midnight + 6 * H);
    let since = window_start(now, 3);
    let s = db.open().await;
    // Issued five days ago at 20:00, still active: the window (3 days) clips it to
    // two whole days and today's six hours.
    insert_issued(
        &s,
        "svc-long",
        midnight - 5 * DAY_MS + 20 * H,
        midnight + 30 * DAY_MS,
    )
    .await;
    // Issued yesterday at 22:00, ending (not yet verified) today at 01:00.
    let g = insert_issued(&s, "svc-short", midnight - 2 * H, midnight + 9 * H).await;
    end_at(&s, &g, midnight + H, None).await;
    // Issued today: at 02:00, still active (4 hours so far), and at 03:00, ended at 04:00.
    // These lie wholly within today, which gets them without spreading.
    insert_issued(&s, "svc-today", midnight + 2 * H, midnight + DAY_MS).await;
    let g = insert_issued(&s, "svc-today", midnight + 3 * H, midnight + 5 * H).await;
    end_at(&s, &g, midnight + 4 * H, None).await;
    let f = s.posture_figures(since, now).await.unwrap();
    let mut by_day = std::collections::BTreeMap::new();
    by_day.insert(today - 2, DAY_MS);
    by_day.insert(today - 1, DAY_MS + 2 * H);
    by_day.insert(today, 6 * H + H + 4 * H + H);
    assert_eq!(f.grant_ms_by_day, by_day);
    assert_eq!(f.grant_ms["svc-long"], 2 * DAY_MS + 6 * H);
    assert_eq!(f.grant_ms["svc-short"], 3 * H);
    assert_eq!(f.grant_ms["svc-today"], 5 * H);
    assert_eq!(
        f.grant_ms_by_day.values().sum::<i64>(),
        f.grant_ms.values().sum::<i64>()
    );
}
