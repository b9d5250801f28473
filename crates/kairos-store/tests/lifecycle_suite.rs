//! The identity lifecycle's store operations (`LifecycleStore`), each case run once on
//! SQLite (a temporary file) and once on PostgreSQL (a database of its own, dropped after),
//! as in `store_suite.rs`.
//!
//! PostgreSQL: `postgres://postgres@127.0.0.1:5432/postgres` unless `KAIROS_TEST_PG` names
//! another admin URL.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use kairos_domain::{
    AuditDraft, AuditKind, Decision, DecisionOutcome, EndReason, EntitlementName, Grant, GrantEnd,
    GrantId, GrantState, IdentityName, Principal, Request, RequestId, RequestState, TargetName,
    Task, TaskKind, TaskRef, TeamName, Timestamp, Ttl, UserName,
};
use kairos_governance::{AlertDraft, AlertKind};
use kairos_store::{
    AlertFilter, AlertWrite, EndSelector, GovernanceStore, LifecycleStore, LiveGrant, OrphanRecord,
    Person, Role, SqlStore, Store, StoredToken, User,
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
    live_grants_come_with_their_request_s_facts,
    people_can_act_while_enabled_with_a_live_token,
    orphans_are_flagged_cleared_and_suspended_once,
    replicas_flag_an_orphan_once,
);

// ---- fixtures ---------------------------------------------------------------------------

const T0: i64 = 1_800_000_000_000;

fn at(offset_ms: i64) -> Timestamp {
    Timestamp::from_millis(T0 + offset_ms)
}

fn identity(name: &str) -> IdentityName {
    IdentityName::parse(name).unwrap()
}

fn team(name: &str) -> TeamName {
    TeamName::parse(name).unwrap()
}

fn user(name: &str) -> UserName {
    UserName::parse(name).unwrap()
}

/// A request of `who` for `identity` granted at once with `ttl`, and its grant issued at
/// `issued` (ms after T0) in `state`.
fn granted(
    who: &Principal,
    identity_name: &str,
    ttl: &str,
    issued: i64,
    state: GrantState,
) -> (Request, Grant) {
    let ttl = Ttl::parse(ttl).unwrap();
    let task = Task::new(
        TaskKind::Job,
        TaskRef::parse("run-7").unwrap(),
        "nightly export".into(),
    )
    .unwrap();
    let mut request = Request {
        id: RequestId::generate(),
        identity: identity(identity_name),
        entitlement: EntitlementName::parse("orders-api/read").unwrap(),
        ttl,
        task: task.clone(),
        requester: who.clone(),
        decision: Decision {
            outcome: DecisionOutcome::Grant,
            policies: vec!["ci-read".into()],
            reason: "CI may read".into(),
        },
        state: RequestState::Granted,
        approvals: vec![],
        denial: None,
        created_at: at(issued),
        pending_until: None,
        grant_id: None,
        renews: None,
        source_ip: None,
    };
    let grant = Grant {
        id: GrantId::generate(),
        request_id: request.id.clone(),
        identity: request.identity.clone(),
        entitlement: request.entitlement.clone(),
        target: TargetName::parse("orders-api").unwrap(),
        audience: "https://orders.internal".into(),
        scopes: vec!["orders:read".into()],
        task,
        issued_at: at(issued),
        expires_at: at(issued).plus(ttl.as_duration()),
        max_expires_at: at(issued).plus(ttl.as_duration()),
        account: None,
        sealed_secret: None,
        state,
    };
    request.grant_id = Some(grant.id.clone());
    (request, grant)
}

async fn insert(s: &SqlStore, (request, grant): (Request, Grant)) -> (Request, Grant) {
    s.insert_request(&request, Some(&grant), vec![])
        .await
        .unwrap();
    (request, grant)
}

fn facts_of(request: &Request, grant: &Grant) -> LiveGrant {
    LiveGrant {
        grant: grant.id.clone(),
        identity: grant.identity.clone(),
        entitlement: grant.entitlement.clone(),
        target: grant.target.clone(),
        task: grant.task.clone(),
        issued_at: grant.issued_at,
        expires_at: grant.expires_at,
        requester: request.requester.clone(),
        request_ttl: request.ttl,
        source_ip: request.source_ip,
        own_review_open: false,
    }
}

fn person(name: &str, role: Role) -> (User, StoredToken) {
    let user = User {
        name: user(name),
        role,
        teams: vec![team("payments")],
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

fn orphan(name: &str, detected: i64) -> OrphanRecord {
    OrphanRecord {
        identity: identity(name),
        team: team("payments"),
        detected_at: at(detected),
        suspended_at: None,
    }
}

fn flagged(name: &str) -> AuditDraft {
    AuditDraft::new(AuditKind::ConfigApplied, "system:governance")
        .identity(identity(name))
        .data(serde_json::json!({ "orphaned": name }))
}

async fn audit_about(s: &SqlStore, name: &str) -> usize {
    s.audit_page(0, u32::MAX)
        .await
        .unwrap()
        .iter()
        .filter(|r| r.identity.as_deref() == Some(name))
        .count()
}

// ---- cases ------------------------------------------------------------------------------

/// Active and provisioning grants come with who asked and the TTL they were granted for;
/// ended or ending ones do not; `issued_from` keeps the later ones only.
async fn live_grants_come_with_their_request_s_facts(db: Arc<Db>) {
    let s = db.open().await;
    let workload = Principal::Workload(identity("nightly"));
    let operator = Principal::User(user("olivia"));
    let (r1, g1) = insert(
        &s,
        granted(&workload, "nightly", "10m", 0, GrantState::Active),
    )
    .await;
    let (r2, g2) = insert(
        &s,
        granted(&operator, "deployer", "1h", 5_000, GrantState::Active),
    )
    .await;
    let (r3, g3) = insert(
        &s,
        granted(&workload, "nightly", "5m", 9_000, GrantState::Provisioning),
    )
    .await;
    let (_, ended) = insert(
        &s,
        granted(&workload, "nightly", "5m", 9_500, GrantState::Active),
    )
    .await;
    let end = GrantEnd {
        reason: EndReason::Released,
        by: workload.clone(),
        at: at(9_600),
    };
    s.end_grants(&EndSelector::One(ended.id.clone()), &end)
        .await
        .unwrap();

    let mut want = vec![facts_of(&r1, &g1), facts_of(&r2, &g2), facts_of(&r3, &g3)];
    want.sort_by(|a, b| a.grant.cmp(&b.grant));
    assert_eq!(s.live_grant_facts(None).await.unwrap(), want);
    let late: Vec<GrantId> = s
        .live_grant_facts(Some(at(5_000)))
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.grant)
        .collect();
    let mut want_late = vec![g2.id.clone(), g3.id.clone()];
    want_late.sort();
    assert_eq!(late, want_late);
    assert!(
        s.live_grant_facts(Some(at(10_000)))
            .await
            .unwrap()
            .is_empty()
    );
}

/// A person can act while enabled with at least one unrevoked token; revoking their
/// tokens or disabling them takes that away.
async fn people_can_act_while_enabled_with_a_live_token(db: Arc<Db>) {
    let s = db.open().await;
    let created = || AuditDraft::new(AuditKind::UserCreated, "system:bootstrap");
    for (name, role) in [
        ("alice", Role::Approver),
        ("bob", Role::Approver),
        ("dora", Role::Auditor),
        ("orders-rs", Role::ResourceServer),
    ] {
        let (u, t) = person(name, role);
        s.create_user(&u, &t, created()).await.unwrap();
    }
    let can = |people: Vec<Person>| -> Vec<(String, Role, bool)> {
        people
            .into_iter()
            .map(|p| (p.name.to_string(), p.role, p.can_act))
            .collect()
    };
    assert_eq!(
        can(s.people().await.unwrap()),
        [
            ("alice".to_owned(), Role::Approver, true),
            ("bob".to_owned(), Role::Approver, true),
            ("dora".to_owned(), Role::Auditor, true),
            ("orders-rs".to_owned(), Role::ResourceServer, true),
        ]
    );
    s.revoke_user_tokens(
        &user("bob"),
        at(10),
        AuditDraft::new(AuditKind::UserTokenRevoked, "user:admin"),
    )
    .await
    .unwrap();
    let mut raw = db.raw().await;
    sqlx::query("UPDATE users SET disabled_at = $1 WHERE name = 'dora'")
        .bind(at(20).as_millis())
        .execute(&mut raw)
        .await
        .unwrap();
    let now = can(s.people().await.unwrap());
    assert_eq!(
        now,
        [
            ("alice".to_owned(), Role::Approver, true),
            ("bob".to_owned(), Role::Approver, false),
            ("dora".to_owned(), Role::Auditor, false),
            ("orders-rs".to_owned(), Role::ResourceServer, true),
        ]
    );
}

/// An identity is flagged once (a second flag of it changes nothing and writes no
/// record), its suspension is recorded once and only for the flag it was decided on, and
/// clearing removes the flag with its record, once; a later orphaning is a new flag.
async fn orphans_are_flagged_cleared_and_suspended_once(db: Arc<Db>) {
    let s = db.open().await;
    let flag = |name: &str, detected| (orphan(name, detected), flagged(name), None);
    let first = s
        .flag_orphans(vec![flag("nightly", 0), flag("deployer", 0)], at(0))
        .await
        .unwrap();
    assert_eq!(first, [identity("nightly"), identity("deployer")]);
    assert_eq!(audit_about(&s, "nightly").await, 1);
    let again = s
        .flag_orphans(vec![flag("nightly", 500), flag("reporter", 500)], at(500))
        .await
        .unwrap();
    assert_eq!(again, [identity("reporter")], "nightly was flagged already");
    assert_eq!(audit_about(&s, "nightly").await, 1);
    let stored = s.orphans().await.unwrap();
    assert_eq!(
        stored,
        [
            orphan("deployer", 0),
            orphan("nightly", 0),
            orphan("reporter", 500)
        ]
    );
    // A page of names reads its own flags only, by name; names without one are left out.
    assert_eq!(
        s.orphans_of(&[
            identity("reporter"),
            identity("unflagged"),
            identity("deployer")
        ])
        .await
        .unwrap(),
        [orphan("deployer", 0), orphan("reporter", 500)]
    );
    assert!(s.orphans_of(&[]).await.unwrap().is_empty());

    // Suspended once, and only under the flag it was decided on.
    assert!(
        !s.mark_orphan_suspended(&identity("nightly"), at(500), at(1_000))
            .await
            .unwrap(),
        "a flag from another time is not this one"
    );
    assert!(
        s.mark_orphan_suspended(&identity("nightly"), at(0), at(1_000))
            .await
            .unwrap()
    );
    assert!(
        !s.mark_orphan_suspended(&identity("nightly"), at(0), at(2_000))
            .await
            .unwrap()
    );
    let nightly = s
        .orphans()
        .await
        .unwrap()
        .into_iter()
        .find(|o| o.identity == identity("nightly"))
        .unwrap();
    assert_eq!(nightly.suspended_at, Some(at(1_000)));

    // Cleared once, with its record; then flagged anew.
    let cleared = |name: &str| {
        (
            identity(name),
            AuditDraft::new(AuditKind::ConfigApplied, "system:governance").identity(identity(name)),
        )
    };
    let done = s
        .clear_orphans(vec![cleared("nightly"), cleared("unknown")], at(3_000))
        .await
        .unwrap();
    assert_eq!(done, [identity("nightly")]);
    assert_eq!(audit_about(&s, "nightly").await, 2);
    assert!(
        s.clear_orphans(vec![cleared("nightly")], at(3_500))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(audit_about(&s, "nightly").await, 2);
    assert!(
        !s.mark_orphan_suspended(&identity("nightly"), at(0), at(4_000))
            .await
            .unwrap(),
        "a cleared flag is not suspended"
    );
    let anew = s
        .flag_orphans(vec![flag("nightly", 5_000)], at(5_000))
        .await
        .unwrap();
    assert_eq!(anew, [identity("nightly")]);
    let nightly = s
        .orphans()
        .await
        .unwrap()
        .into_iter()
        .find(|o| o.identity == identity("nightly"))
        .unwrap();
    assert_eq!(nightly, orphan("nightly", 5_000));
}

/// Two replicas on one store flagging the same identity at once: one flag, one record;
/// both marking its suspension: one wins.
async fn replicas_flag_an_orphan_once(db: Arc<Db>) {
    let stores = [db.open().await, db.open().await];
    let mut tasks = Vec::new();
    for (i, s) in stores.iter().enumerate() {
        let s = s.clone();
        let detected = i64::try_from(i).unwrap();
        tasks.push(tokio::spawn(async move {
            // Each with its alert: only the flag that lands writes one.
            let alert = AlertWrite {
                id: format!("alr_{i}"),
                draft: AlertDraft::new(AlertKind::Orphaned, "nightly", "orphaned")
                    .identity(&identity("nightly")),
                at: at(detected),
                audit: AuditDraft::new(AuditKind::AlertRaised, "system:governance"),
            };
            s.flag_orphans(
                vec![(orphan("nightly", detected), flagged("nightly"), Some(alert))],
                at(detected),
            )
            .await
            .unwrap()
        }));
    }
    let mut flagged_by = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        if !t.await.unwrap().is_empty() {
            flagged_by.push(i);
        }
    }
    assert_eq!(flagged_by.len(), 1);
    assert_eq!(audit_about(&stores[0], "nightly").await, 1);
    let alerts = stores[0]
        .list_alerts(&AlertFilter::default())
        .await
        .unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].id, format!("alr_{}", flagged_by[0]));
    assert_eq!(alerts[0].occurrences, 1);
    let detected = stores[0].orphans().await.unwrap()[0].detected_at;
    let mut tasks = Vec::new();
    for s in &stores {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.mark_orphan_suspended(&identity("nightly"), detected, at(100))
                .await
                .unwrap()
        }));
    }
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1);
}
