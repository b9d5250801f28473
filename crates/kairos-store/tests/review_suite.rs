//! After-action reviews in the store: every case runs on SQLite (a temporary file) and on
//! PostgreSQL (a database of its own, dropped after), as the main store suite does.
//!
//! PostgreSQL: `postgres://postgres@127.0.0.1:5432/postgres` unless `KAIROS_TEST_PG` names
//! another admin URL.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use kairos_domain::{
    AuditDraft, AuditKind, Decision, DecisionOutcome, EntitlementName, Filing, Grant, GrantId,
    GrantState, IdentityName, Principal, Request, RequestId, RequestState, Review, ReviewError,
    ReviewId, ReviewState, TargetName, Task, TaskKind, TaskRef, Timestamp, Ttl, UserName,
    verify_chain,
};
use kairos_governance::{AlertDraft, AlertKind, IdentityState, IdentityStatus, SuspensionCause};
use kairos_store::{
    AlertFilter, AlertWrite, AuditFilter, GovernanceStore, RequestChange, ReviewFilter,
    ReviewStateFilter, ReviewStore, SqlStore, StateChange, Store, StoreError,
};

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
    a_break_glass_grant_and_its_review_commit_together,
    a_grant_has_one_review_and_a_failed_insert_leaves_nothing,
    reviews_are_listed_by_state_and_identity,
    filing_is_final_and_audited,
    overdue_reviews_escalate_once,
    escalation_races_escalate_each_review_once,
    an_approval_opens_the_review_with_the_grant,
    alerts_commit_with_their_event,
);

// ---- fixtures --------------------------------------------------------------------------

const T0: i64 = 1_800_000_000_000;
const HOUR: i64 = 3_600_000;

fn at(offset_ms: i64) -> Timestamp {
    Timestamp::from_millis(T0 + offset_ms)
}

fn break_glass_request(identity: &str) -> Request {
    Request {
        id: RequestId::generate(),
        identity: IdentityName::parse(identity).unwrap(),
        entitlement: EntitlementName::parse("orders-db/admin").unwrap(),
        ttl: Ttl::parse("30m").unwrap(),
        task: Task::new(
            TaskKind::Incident,
            TaskRef::parse("INC-7").unwrap(),
            "orders are failing".into(),
        )
        .unwrap(),
        requester: Principal::User(UserName::parse("olga").unwrap()),
        decision: Decision {
            outcome: DecisionOutcome::Grant,
            policies: vec!["break-glass".into()],
            reason: "permitted".into(),
        },
        state: RequestState::Granted,
        approvals: vec![],
        denial: None,
        created_at: at(0),
        pending_until: None,
        grant_id: None,
        renews: None,
        source_ip: None,
    }
}

fn grant_for(request: &Request) -> Grant {
    Grant {
        id: GrantId::generate(),
        request_id: request.id.clone(),
        identity: request.identity.clone(),
        entitlement: request.entitlement.clone(),
        target: TargetName::parse("orders-db").unwrap(),
        audience: "orders-db".into(),
        scopes: vec![],
        task: request.task.clone(),
        issued_at: at(0),
        expires_at: at(HOUR / 2),
        max_expires_at: at(HOUR),
        account: None,
        sealed_secret: None,
        state: GrantState::Active,
    }
}

fn review_for(request: &Request, grant: &Grant, due: i64) -> Review {
    Review {
        id: ReviewId::generate(),
        grant_id: grant.id.clone(),
        request_id: request.id.clone(),
        identity: request.identity.clone(),
        entitlement: request.entitlement.clone(),
        requester: request.requester.clone(),
        task_ref: request.task.reference.clone(),
        opened_at: grant.issued_at,
        due_at: at(due),
        escalated_at: None,
        state: ReviewState::Open,
    }
}

fn opened_audit(review: &Review) -> AuditDraft {
    AuditDraft::new(AuditKind::ReviewOpened, "system:broker")
        .identity(&review.identity)
        .grant(&review.grant_id)
        .data(serde_json::json!({ "review": review.id }))
}

/// A break-glass request granted at once, its grant and its review due at `due`.
async fn break_glass(s: &SqlStore, identity: &str, due: i64) -> (Request, Grant, Review) {
    let mut request = break_glass_request(identity);
    let grant = grant_for(&request);
    request.grant_id = Some(grant.id.clone());
    let review = review_for(&request, &grant, due);
    s.insert_request_with_review(&request, &grant, &review, vec![opened_audit(&review)], None)
        .await
        .unwrap();
    (request, grant, review)
}

fn filing(by: &str, summary: &str, when: i64) -> Filing {
    Filing {
        by: UserName::parse(by).unwrap(),
        at: at(when),
        summary: summary.into(),
    }
}

fn escalation_audit() -> kairos_store::EscalationAudit {
    Box::new(|r: &Review| {
        AuditDraft::new(AuditKind::ReviewEscalated, "system:reviews")
            .identity(&r.identity)
            .grant(&r.grant_id)
            .data(serde_json::json!({ "review": r.id }))
    })
}

async fn kinds(s: &SqlStore, grant: &GrantId) -> Vec<AuditKind> {
    let mut records = s
        .list_audit(&AuditFilter {
            grant_id: Some(grant.to_string()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    records.reverse();
    records.into_iter().map(|r| r.kind).collect()
}

// ---- cases -----------------------------------------------------------------------------

async fn a_break_glass_grant_and_its_review_commit_together(db: Arc<Db>) {
    let s = db.open().await;
    let (request, grant, review) = break_glass(&s, "job", 72 * HOUR).await;
    assert_eq!(s.get_request(&request.id).await.unwrap().unwrap(), request);
    assert_eq!(s.get_grant(&grant.id).await.unwrap().unwrap(), grant);
    assert_eq!(s.get_review(&review.id).await.unwrap().unwrap(), review);
    assert_eq!(s.review_of_grant(&grant.id).await.unwrap().unwrap(), review);
    assert_eq!(
        s.count_open_reviews(&IdentityName::parse("job").unwrap())
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.count_open_reviews(&IdentityName::parse("other").unwrap())
            .await
            .unwrap(),
        0
    );
    assert_eq!(kinds(&s, &grant.id).await, [AuditKind::ReviewOpened]);
    // Unknown ids read as nothing.
    assert_eq!(s.get_review(&ReviewId::generate()).await.unwrap(), None);
    assert_eq!(s.review_of_grant(&GrantId::generate()).await.unwrap(), None);
    s.close().await;
}

/// A second review for the same grant is refused, and the refused write leaves no
/// request, grant or audit record behind.
async fn a_grant_has_one_review_and_a_failed_insert_leaves_nothing(db: Arc<Db>) {
    let s = db.open().await;
    let (_, grant, first) = break_glass(&s, "job", HOUR).await;
    let before = s.audit_page(0, 100).await.unwrap().len();

    let mut request = break_glass_request("job");
    let other_grant = grant_for(&request);
    request.grant_id = Some(other_grant.id.clone());
    // The new grant's review names the first grant: refused as a conflict.
    let mut review = review_for(&request, &other_grant, HOUR);
    review.grant_id = grant.id.clone();
    let err = s
        .insert_request_with_review(
            &request,
            &other_grant,
            &review,
            vec![opened_audit(&review)],
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(s.get_request(&request.id).await.unwrap(), None);
    assert_eq!(s.get_grant(&other_grant.id).await.unwrap(), None);
    assert_eq!(s.get_review(&review.id).await.unwrap(), None);
    assert_eq!(s.audit_page(0, 100).await.unwrap().len(), before);
    assert_eq!(s.review_of_grant(&grant.id).await.unwrap().unwrap(), first);
    s.close().await;
}

async fn reviews_are_listed_by_state_and_identity(db: Arc<Db>) {
    let s = db.open().await;
    let (_, _, overdue) = break_glass(&s, "job", HOUR).await;
    let (_, _, open) = break_glass(&s, "job", 72 * HOUR).await;
    let (_, _, other) = break_glass(&s, "other", 72 * HOUR).await;
    let (_, _, filed) = break_glass(&s, "job", HOUR).await;
    s.update_review(
        &filed.id,
        Box::new(|r: &mut Review| {
            r.file(filing("carol", "done", 10))?;
            Ok(vec![])
        }),
    )
    .await
    .unwrap();
    let ids = |reviews: Vec<Review>| {
        let mut ids: Vec<ReviewId> = reviews.into_iter().map(|r| r.id).collect();
        ids.sort();
        ids
    };
    let sorted = |mut v: Vec<ReviewId>| {
        v.sort();
        v
    };
    let list = |state, identity: Option<&str>| {
        let s = &s;
        let filter = ReviewFilter {
            state,
            identity: identity.map(|i| IdentityName::parse(i).unwrap()),
            limit: None,
        };
        async move { s.list_reviews(&filter).await.unwrap() }
    };
    assert_eq!(
        ids(list(None, None).await),
        sorted(vec![
            overdue.id.clone(),
            open.id.clone(),
            other.id.clone(),
            filed.id.clone()
        ])
    );
    assert_eq!(
        ids(list(Some(ReviewStateFilter::Open), None).await),
        sorted(vec![overdue.id.clone(), open.id.clone(), other.id.clone()])
    );
    assert_eq!(
        ids(list(Some(ReviewStateFilter::Overdue { now: at(2 * HOUR) }), None).await),
        vec![overdue.id.clone()]
    );
    // Due exactly now counts as overdue.
    assert_eq!(
        ids(list(Some(ReviewStateFilter::Overdue { now: at(HOUR) }), None).await),
        vec![overdue.id.clone()]
    );
    assert_eq!(
        ids(list(Some(ReviewStateFilter::Overdue { now: at(HOUR - 1) }), None).await),
        vec![]
    );
    assert_eq!(
        ids(list(Some(ReviewStateFilter::Filed), None).await),
        vec![filed.id.clone()]
    );
    assert_eq!(
        ids(list(Some(ReviewStateFilter::Open), Some("other")).await),
        vec![other.id.clone()]
    );
    let limited = s
        .list_reviews(&ReviewFilter {
            limit: Some(2),
            ..ReviewFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(limited.len(), 2);
    assert_eq!(
        s.count_open_reviews(&IdentityName::parse("job").unwrap())
            .await
            .unwrap(),
        2
    );
    s.close().await;
}

async fn filing_is_final_and_audited(db: Arc<Db>) {
    let s = db.open().await;
    let (_, grant, review) = break_glass(&s, "job", HOUR).await;
    // A closure that refuses writes nothing.
    let err = s
        .update_review(
            &review.id,
            Box::new(|r: &mut Review| {
                r.file(filing("carol", "   ", 5))?;
                Ok(vec![AuditDraft::new(AuditKind::ReviewFiled, "user:carol")])
            }),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Review(ReviewError::BadSummary)),
        "{err:?}"
    );
    assert_eq!(s.get_review(&review.id).await.unwrap().unwrap(), review);

    let filed = s
        .update_review(
            &review.id,
            Box::new(|r: &mut Review| {
                r.file(filing("carol", "restarted the primary", 5))?;
                Ok(vec![
                    AuditDraft::new(AuditKind::ReviewFiled, "user:carol").grant(&r.grant_id),
                ])
            }),
        )
        .await
        .unwrap();
    assert_eq!(
        filed.state,
        ReviewState::Filed(filing("carol", "restarted the primary", 5))
    );
    assert_eq!(s.get_review(&review.id).await.unwrap().unwrap(), filed);
    assert_eq!(
        kinds(&s, &grant.id).await,
        [AuditKind::ReviewOpened, AuditKind::ReviewFiled]
    );
    let again = s
        .update_review(
            &review.id,
            Box::new(|r: &mut Review| {
                r.file(filing("dave", "mine", 6))?;
                Ok(vec![])
            }),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err_review(&again), Some(ReviewError::AlreadyFiled { .. })),
        "{again:?}"
    );
    let missing = s
        .update_review(&ReviewId::generate(), Box::new(|_| Ok(vec![])))
        .await
        .unwrap_err();
    assert!(matches!(missing, StoreError::NotFound(_)), "{missing:?}");
    assert_eq!(
        s.count_open_reviews(&IdentityName::parse("job").unwrap())
            .await
            .unwrap(),
        0
    );
    verify_chain(&s.audit_page(0, 100).await.unwrap()).unwrap();
    s.close().await;
}

fn err_review(e: &StoreError) -> Option<&ReviewError> {
    match e {
        StoreError::Review(r) => Some(r),
        _ => None,
    }
}

async fn overdue_reviews_escalate_once(db: Arc<Db>) {
    let s = db.open().await;
    let (_, due_grant, due) = break_glass(&s, "job", HOUR).await;
    let (_, _, later) = break_glass(&s, "job", 3 * HOUR).await;
    let (_, _, filed) = break_glass(&s, "job", HOUR).await;
    s.update_review(
        &filed.id,
        Box::new(|r: &mut Review| {
            r.file(filing("carol", "done", 10))?;
            Ok(vec![])
        }),
    )
    .await
    .unwrap();

    // Before anything is due: nothing.
    assert!(
        s.escalate_overdue_reviews(at(HOUR - 1), 100, escalation_audit(), None)
            .await
            .unwrap()
            .is_empty()
    );
    let escalated = s
        .escalate_overdue_reviews(at(2 * HOUR), 100, escalation_audit(), None)
        .await
        .unwrap();
    assert_eq!(escalated.len(), 1, "{escalated:?}");
    assert_eq!(escalated[0].id, due.id);
    assert_eq!(escalated[0].escalated_at, Some(at(2 * HOUR)));
    assert_eq!(s.get_review(&due.id).await.unwrap().unwrap(), escalated[0]);
    // Again: the escalated one does not escalate twice.
    assert!(
        s.escalate_overdue_reviews(at(2 * HOUR + 1), 100, escalation_audit(), None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        kinds(&s, &due_grant.id).await,
        [AuditKind::ReviewOpened, AuditKind::ReviewEscalated]
    );
    // The later one escalates when it is due, with a limit of one a pass.
    let next = s
        .escalate_overdue_reviews(at(10 * HOUR), 1, escalation_audit(), None)
        .await
        .unwrap();
    assert_eq!(next.iter().map(|r| &r.id).collect::<Vec<_>>(), [&later.id]);
    // An escalated review still files.
    s.update_review(
        &due.id,
        Box::new(|r: &mut Review| {
            r.file(filing("carol", "late, but done", 11 * HOUR))?;
            Ok(vec![])
        }),
    )
    .await
    .unwrap();
    let stored = s.get_review(&due.id).await.unwrap().unwrap();
    assert_eq!(stored.escalated_at, Some(at(2 * HOUR)));
    assert!(!stored.is_open());
    s.close().await;
}

/// Several stores on one database (replicas) escalate at once: every overdue review
/// escalates exactly once, with one audit record.
async fn escalation_races_escalate_each_review_once(db: Arc<Db>) {
    let first = db.open().await;
    let mut due = Vec::new();
    for _ in 0..20 {
        due.push(break_glass(&first, "job", HOUR).await.2.id);
    }
    let replicas = [first.clone(), db.open().await, db.open().await];
    let mut tasks = tokio::task::JoinSet::new();
    for (i, replica) in replicas.iter().enumerate() {
        let replica = replica.clone();
        tasks.spawn(async move {
            let mut mine = Vec::new();
            for pass in 0..4 {
                let now = at(2 * HOUR + i64::try_from(i * 10 + pass).unwrap());
                mine.extend(
                    replica
                        .escalate_overdue_reviews(now, 7, escalation_audit(), None)
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|r| r.id),
                );
            }
            mine
        });
    }
    let mut escalated = Vec::new();
    while let Some(done) = tasks.join_next().await {
        escalated.extend(done.unwrap());
    }
    escalated.sort();
    due.sort();
    assert_eq!(escalated, due, "each overdue review escalated exactly once");
    let records = first.audit_page(0, 1_000).await.unwrap();
    verify_chain(&records).unwrap();
    assert_eq!(
        records
            .iter()
            .filter(|r| r.kind == AuditKind::ReviewEscalated)
            .count(),
        20
    );
    for r in &replicas {
        r.close().await;
    }
}

/// A break-glass request that waited for approvals: the last approval's write issues the
/// grant and opens its review together.
async fn an_approval_opens_the_review_with_the_grant(db: Arc<Db>) {
    let s = db.open().await;
    let mut request = break_glass_request("job");
    request.state = RequestState::Pending;
    request.decision.outcome = DecisionOutcome::Pending { approvals: 1 };
    request.pending_until = Some(at(HOUR));
    s.insert_request(&request, None, vec![]).await.unwrap();
    let grant = grant_for(&request);
    let review = review_for(&request, &grant, 72 * HOUR);
    let (g, r) = (grant.clone(), review.clone());
    let updated = s
        .update_request(
            &request.id,
            Box::new(move |req: &mut Request| {
                req.mark_granted(g.id.clone())?;
                Ok(RequestChange {
                    audit: vec![opened_audit(&r)],
                    grant: Some(g),
                    review: Some(r),
                    ..RequestChange::default()
                })
            }),
        )
        .await
        .unwrap();
    assert_eq!(updated.grant_id.as_ref(), Some(&grant.id));
    assert_eq!(s.review_of_grant(&grant.id).await.unwrap().unwrap(), review);
    assert_eq!(kinds(&s, &grant.id).await, [AuditKind::ReviewOpened]);
    s.close().await;
}

/// An alert raised at `at` by a write, with its `alert_raised` audit record.
fn alert(id: &str, kind: AlertKind, subject: &str, when: i64) -> AlertWrite {
    AlertWrite {
        id: id.into(),
        draft: AlertDraft::new(kind, subject, format!("{} about {subject}", kind.as_str())),
        at: at(when),
        audit: AuditDraft::new(AuditKind::AlertRaised, "system:governance")
            .data(serde_json::json!({ "alert": id })),
    }
}

async fn alerts_of(s: &SqlStore, kind: AlertKind) -> Vec<kairos_governance::Alert> {
    s.list_alerts(&AlertFilter {
        kind: Some(kind),
        ..AlertFilter::default()
    })
    .await
    .unwrap()
}

/// Break-glass grants, review escalations and identity state changes raise their alert in
/// their own transaction: both commit, or neither (an alert that cannot be written takes
/// its event with it, and a refused event leaves no alert); raised once per dedupe key.
async fn alerts_commit_with_their_event(db: Arc<Db>) {
    let s = db.open().await;
    let audit_len = || async { s.audit_page(0, 1000).await.unwrap().len() };

    // A break-glass grant with its alert: both there, the alert audited.
    let mut request = break_glass_request("job");
    let grant = grant_for(&request);
    request.grant_id = Some(grant.id.clone());
    let review = review_for(&request, &grant, HOUR);
    let before = audit_len().await;
    s.insert_request_with_review(
        &request,
        &grant,
        &review,
        vec![opened_audit(&review)],
        Some(alert(
            "alr_bg1",
            AlertKind::BreakGlass,
            grant.id.as_str(),
            0,
        )),
    )
    .await
    .unwrap();
    let opened = s.get_alert("alr_bg1").await.unwrap().unwrap();
    assert_eq!(opened.kind, AlertKind::BreakGlass);
    assert_eq!(opened.subject, grant.id.as_str());
    assert_eq!(
        audit_len().await,
        before + 2,
        "review_opened and alert_raised"
    );

    // A refused break-glass write (its review names a grant that has one) leaves no alert.
    let mut refused = break_glass_request("job");
    let refused_grant = grant_for(&refused);
    refused.grant_id = Some(refused_grant.id.clone());
    let mut dup = review_for(&refused, &refused_grant, HOUR);
    dup.grant_id = grant.id.clone();
    let err = s
        .insert_request_with_review(
            &refused,
            &refused_grant,
            &dup,
            vec![opened_audit(&dup)],
            Some(alert(
                "alr_bg2",
                AlertKind::BreakGlass,
                refused_grant.id.as_str(),
                0,
            )),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(s.get_alert("alr_bg2").await.unwrap(), None);

    // An alert that cannot be written (its id is taken) takes the grant and review with it.
    let mut lost = break_glass_request("job");
    let lost_grant = grant_for(&lost);
    lost.grant_id = Some(lost_grant.id.clone());
    let lost_review = review_for(&lost, &lost_grant, HOUR);
    let before = audit_len().await;
    assert!(
        s.insert_request_with_review(
            &lost,
            &lost_grant,
            &lost_review,
            vec![opened_audit(&lost_review)],
            Some(alert(
                "alr_bg1",
                AlertKind::BreakGlass,
                lost_grant.id.as_str(),
                0
            )),
        )
        .await
        .is_err()
    );
    assert_eq!(s.get_request(&lost.id).await.unwrap(), None);
    assert_eq!(s.get_grant(&lost_grant.id).await.unwrap(), None);
    assert_eq!(s.get_review(&lost_review.id).await.unwrap(), None);
    assert_eq!(audit_len().await, before);
    assert_eq!(alerts_of(&s, AlertKind::BreakGlass).await, vec![opened]);

    // Escalation: each escalated review's alert in the escalation's write, once.
    let escalation_alert = || -> kairos_store::EscalationAlert {
        Box::new(|r: &Review| {
            alert(
                &format!("alr_{}", r.id.as_str()),
                AlertKind::ReviewOverdue,
                r.id.as_str(),
                2 * HOUR,
            )
        })
    };
    let escalated = s
        .escalate_overdue_reviews(
            at(2 * HOUR),
            100,
            escalation_audit(),
            Some(escalation_alert()),
        )
        .await
        .unwrap();
    assert_eq!(
        escalated.iter().map(|r| &r.id).collect::<Vec<_>>(),
        [&review.id]
    );
    let overdue = alerts_of(&s, AlertKind::ReviewOverdue).await;
    assert_eq!(overdue.len(), 1, "{overdue:?}");
    assert_eq!(overdue[0].subject, review.id.as_str());
    assert_eq!(overdue[0].occurrences, 1);
    assert!(
        s.escalate_overdue_reviews(
            at(3 * HOUR),
            100,
            escalation_audit(),
            Some(escalation_alert())
        )
        .await
        .unwrap()
        .is_empty()
    );
    assert_eq!(alerts_of(&s, AlertKind::ReviewOverdue).await, overdue);

    // A suspension: its alert knows the grants it ended; a change refused (the state is
    // not one of `from`) raises nothing.
    let suspend = |id: &'static str, from: Vec<IdentityState>| StateChange {
        to: IdentityStatus {
            identity: IdentityName::parse("job").unwrap(),
            state: IdentityState::Suspended,
            cause: Some(SuspensionCause::Manual),
            reason: "looked odd".into(),
            by: "user:olga".into(),
            since: at(4 * HOUR),
        },
        from,
        end: Some(kairos_domain::GrantEnd {
            reason: kairos_domain::EndReason::Suspended,
            by: Principal::User(UserName::parse("olga").unwrap()),
            at: at(4 * HOUR),
        }),
        audit: vec![AuditDraft::new(AuditKind::IdentitySuspended, "user:olga").identity("job")],
        alert: Some(Box::new(move |ended: &[Grant]| {
            let mut a = alert(id, AlertKind::IdentitySuspended, "job", 4 * HOUR);
            a.draft.detail = serde_json::json!({ "grants_ended": ended.len() });
            a
        })),
    };
    assert!(
        s.change_identity_state(suspend("alr_none", vec![IdentityState::Suspended]))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(s.get_alert("alr_none").await.unwrap(), None);
    let ended = s
        .change_identity_state(suspend("alr_sus", vec![IdentityState::Active]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.len(), 1, "the break-glass grant");
    let suspended = s.get_alert("alr_sus").await.unwrap().unwrap();
    assert_eq!(suspended.detail["grants_ended"], 1);

    // The same dedupe key while the first is unresolved: one more occurrence, no new alert.
    let mut again = break_glass_request("job");
    let again_grant = grant_for(&again);
    again.grant_id = Some(again_grant.id.clone());
    let again_review = review_for(&again, &again_grant, HOUR);
    s.insert_request_with_review(
        &again,
        &again_grant,
        &again_review,
        vec![opened_audit(&again_review)],
        Some(alert(
            "alr_bg3",
            AlertKind::BreakGlass,
            grant.id.as_str(),
            5 * HOUR,
        )),
    )
    .await
    .unwrap();
    assert_eq!(s.get_alert("alr_bg3").await.unwrap(), None);
    let repeated = alerts_of(&s, AlertKind::BreakGlass).await;
    assert_eq!(repeated.len(), 1, "{repeated:?}");
    assert_eq!(repeated[0].id, "alr_bg1");
    assert_eq!(repeated[0].occurrences, 2);
    assert!(verify_chain(&s.audit_page(0, 1000).await.unwrap()).is_ok());
    s.close().await;
}
