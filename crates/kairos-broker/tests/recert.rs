//! Recertification and standing exceptions on the manual clock, with a real SQLite store:
//! due dates, review tasks opened once per cycle, overdue handling, who may attest,
//! exceptions' rotations and end dates, and several replicas running the pass at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kairos_broker::{Broker, BrokerError, BrokerSettings, Caller, RecertFilter};
use kairos_config::ConfigBundle;
use kairos_crypto::seal::MasterKey;
use kairos_domain::{
    AuditKind, AuditRecord, IdentityName, ManualClock, Principal, TeamName, Timestamp, UserName,
};
use kairos_governance::recert::RecertStatus;
use kairos_store::{AuditFilter, Role, SqlStore, SubjectKind, User};
use secrecy::ExposeSecret;

const DAY: Duration = Duration::from_secs(86_400);
/// 2027-01-15T08:00:00Z.
const T0: i64 = 1_800_000_000_000;

const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":"WKn-ZIGevcwGIyyrzFoZNBdaq9_TsqzGl96oc0CWuis","y":"y77t-RvAHRKTsSGdIYUfweuOvwrvDD-Q3Hv5J0fSKbE"}]}"#;
const POLICY: &str =
    r#"@id("read") permit (principal, action, resource == Kairos::Entitlement::"api/read");"#;

/// `ops` recertifies every 30 days; `agent` every 7; the rest take the 90-day default.
/// The exception's end is `ends_in_days` after T0.
fn config(default_every: &str, ends_in_days: u64) -> String {
    let ends = Timestamp::from_millis(T0).plus(DAY * ends_in_days as u32);
    format!(
        r#"
[governance]
recertify_every = "{default_every}"
recert_notice = "14d"

[[issuer]]
name = "ci"
issuer = "https://ci.example.com"
audience = "kairos"
jwks_file = "jwks.json"

[[team]]
name = "payments"
owners = ["carol"]
approvers = ["alice"]

[[team]]
name = "ops"
owners = ["olga"]
recertify_every = "30d"

[[identity]]
name = "job"
owner = "payments"
kind = "ci-job"
issuer = "ci"
subject = "repo:acme/job"

[[identity]]
name = "deploy"
owner = "ops"
kind = "ci-job"
issuer = "ci"
subject = "repo:acme/deploy"

[[identity]]
name = "agent"
owner = "payments"
kind = "agent"
issuer = "ci"
subject = "agent-1"
recertify_every = "7d"

[[target]]
name = "api"
kind = "token"
audience = "https://api"

[[entitlement]]
name = "api/read"
tier = "low"
max_ttl = "1h"
scopes = ["read"]

[[exception]]
name = "legacy-billing"
identity = "job"
owner = "payments"
system = "billing-db (legacy, no dynamic accounts)"
secret_ref = "vault:kv/legacy/billing"
reason = "the vendor's client cannot take short-lived accounts yet"
rotate_every = "30d"
ends = "{ends}"
allowed_sources = ["10.20.0.0/16"]
scope_note = "read-only on the invoices schema"

[policy]
files = ["p.cedar"]
"#,
        ends = ends.to_rfc3339()
    )
}

fn bundle(config: String) -> ConfigBundle {
    ConfigBundle {
        main_path: "kairos.toml".into(),
        files: BTreeMap::from([
            ("kairos.toml".into(), config),
            ("p.cedar".into(), POLICY.into()),
            ("jwks.json".into(), JWKS.into()),
        ]),
    }
}

struct Fixture {
    broker: Arc<Broker>,
    clock: ManualClock,
    url: String,
    /// The master key, base64 (replicas share it).
    master: String,
    _dir: tempfile::TempDir,
}

async fn broker_on(url: &str, clock: &ManualClock, master: &str) -> Arc<Broker> {
    let store = SqlStore::connect(url)
        .await
        .unwrap()
        .with_clock(Arc::new(clock.clone()));
    Broker::start(
        Arc::new(store),
        Arc::new(clock.clone()),
        MasterKey::from_base64(master).unwrap(),
        BrokerSettings::default(),
    )
    .await
    .unwrap()
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let url = format!("sqlite://{}", dir.path().join("k.db").display());
    let master = MasterKey::generate()
        .unwrap()
        .to_base64()
        .expose_secret()
        .to_owned();
    let broker = broker_on(&url, &clock, &master).await;
    broker
        .apply_config(&Principal::System("bootstrap"), bundle(config("90d", 120)))
        .await
        .unwrap();
    Fixture {
        broker,
        clock,
        url,
        master,
        _dir: dir,
    }
}

fn person(name: &str, role: Role) -> Caller {
    Caller::User(User {
        name: UserName::parse(name).unwrap(),
        role,
        teams: vec![TeamName::parse("payments").unwrap()],
        targets: vec![],
        created_at: Timestamp::from_millis(T0),
    })
}

fn carol() -> Caller {
    person("carol", Role::Approver)
}

fn auditor() -> Caller {
    person("audrey", Role::Auditor)
}

fn at_days(days: u64) -> Timestamp {
    Timestamp::from_millis(T0).plus(DAY * days as u32)
}

async fn audit(f: &Fixture) -> Vec<AuditRecord> {
    let mut records = f
        .broker
        .store()
        .list_audit(&AuditFilter::default())
        .await
        .unwrap();
    records.reverse();
    records
}

/// How many audit records of `kind` name `subject` in their data.
async fn count(f: &Fixture, kind: AuditKind, subject: &str) -> usize {
    audit(f)
        .await
        .iter()
        .filter(|r| r.kind == kind)
        .filter(|r| {
            let data: serde_json::Value = serde_json::from_str(&r.data).unwrap();
            data["subject"] == subject || data["exception"] == subject
        })
        .count()
}

async fn status_of(f: &Fixture, kind: SubjectKind, subject: &str) -> (RecertStatus, Timestamp) {
    let all = f
        .broker
        .recertifications(&auditor(), RecertFilter::All)
        .await
        .unwrap();
    let e = all
        .iter()
        .find(|e| e.kind == kind && e.subject == subject)
        .unwrap_or_else(|| panic!("{subject} is not listed: {all:?}"));
    (e.status, e.due_at)
}

#[tokio::test]
async fn intervals_come_from_the_identity_then_its_team_then_the_default() {
    let f = fixture().await;
    let report = f.broker.recert_pass().await.unwrap();
    assert_eq!(report.added, 4, "{report:?}");
    for (kind, subject, days) in [
        (SubjectKind::Identity, "job", 90),
        (SubjectKind::Identity, "deploy", 30),
        (SubjectKind::Identity, "agent", 7),
        (SubjectKind::Exception, "legacy-billing", 90),
    ] {
        assert_eq!(
            status_of(&f, kind, subject).await.1,
            at_days(days),
            "{subject}"
        );
    }
    // The agent's 7-day cycle is shorter than the 14-day notice: its review is open at once.
    assert_eq!(
        status_of(&f, SubjectKind::Identity, "agent").await.0,
        RecertStatus::Due
    );
    assert_eq!(report.reviews_opened, 1);
    // A pass with nothing new adds and opens nothing.
    let again = f.broker.recert_pass().await.unwrap();
    assert_eq!((again.added, again.reviews_opened), (0, 0), "{again:?}");

    // A new default moves the due dates of those that take it, and only theirs.
    f.broker
        .apply_config(&Principal::System("bootstrap"), bundle(config("60d", 120)))
        .await
        .unwrap();
    let moved = f.broker.recert_pass().await.unwrap();
    assert_eq!(moved.moved, 2, "job and the exception: {moved:?}");
    assert_eq!(
        status_of(&f, SubjectKind::Identity, "job").await.1,
        at_days(60)
    );
    assert_eq!(
        status_of(&f, SubjectKind::Identity, "deploy").await.1,
        at_days(30)
    );
}

#[tokio::test]
async fn a_review_opens_once_per_cycle_then_the_subject_is_overdue_once() {
    let f = fixture().await;
    f.broker.recert_pass().await.unwrap();
    // 75 days in: more than 14 days before the 90-day due date.
    f.clock.advance(DAY * 75);
    f.broker.recert_pass().await.unwrap();
    assert_eq!(count(&f, AuditKind::RecertDue, "job").await, 0);
    assert_eq!(
        status_of(&f, SubjectKind::Identity, "job").await.0,
        RecertStatus::Ok
    );

    f.clock.advance(DAY);
    f.broker.recert_pass().await.unwrap();
    f.broker.recert_pass().await.unwrap();
    assert_eq!(count(&f, AuditKind::RecertDue, "job").await, 1);
    assert_eq!(
        status_of(&f, SubjectKind::Identity, "job").await.0,
        RecertStatus::Due
    );
    let due = f
        .broker
        .recertifications(&auditor(), RecertFilter::Due)
        .await
        .unwrap();
    assert!(due.iter().any(|e| e.subject == "job"), "{due:?}");
    assert!(due.iter().all(|e| e.status == RecertStatus::Due));

    // The due date passes unattested: overdue, audited once.
    f.clock.advance(DAY * 14);
    let report = f.broker.recert_pass().await.unwrap();
    assert!(report.overdue >= 1, "{report:?}");
    f.broker.recert_pass().await.unwrap();
    assert_eq!(count(&f, AuditKind::RecertOverdue, "job").await, 1);
    assert_eq!(count(&f, AuditKind::RecertDue, "job").await, 1);
    let overdue = f
        .broker
        .recertifications(&auditor(), RecertFilter::Overdue)
        .await
        .unwrap();
    let job = overdue.iter().find(|e| e.subject == "job").unwrap();
    assert_eq!(job.due_at, at_days(90));
    let record = audit(&f)
        .await
        .into_iter()
        .find(|r| r.kind == AuditKind::RecertOverdue && r.identity.as_deref() == Some("job"))
        .unwrap();
    assert_eq!(record.actor, "system:recert");
    assert_eq!(record.at, at_days(90));
}

#[tokio::test]
async fn an_owner_attests_and_the_next_cycle_starts() {
    let f = fixture().await;
    f.broker.recert_pass().await.unwrap();
    f.clock.advance(DAY * 80);
    let entry = f
        .broker
        .attest(
            &carol(),
            SubjectKind::Identity,
            "job",
            "still backs up orders",
        )
        .await
        .unwrap();
    assert_eq!(entry.status, RecertStatus::Ok);
    assert_eq!(entry.due_at, at_days(170));
    assert_eq!(entry.last_attested_at, Some(at_days(80)));
    assert_eq!(entry.attested_by.as_deref(), Some("user:carol"));
    assert_eq!(entry.reason.as_deref(), Some("still backs up orders"));
    assert_eq!(
        status_of(&f, SubjectKind::Identity, "job").await,
        (RecertStatus::Ok, at_days(170))
    );
    let record = audit(&f)
        .await
        .into_iter()
        .find(|r| r.kind == AuditKind::RecertAttested)
        .unwrap();
    assert_eq!(record.actor, "user:carol");
    assert_eq!(record.identity.as_deref(), Some("job"));
    // The pass agrees and keeps the new due date.
    let report = f.broker.recert_pass().await.unwrap();
    assert_eq!(report.moved, 0);

    // An exception is attested the same way, by its team's owner.
    let e = f
        .broker
        .attest(
            &carol(),
            SubjectKind::Exception,
            "legacy-billing",
            "migration to dynamic accounts is planned for Q3",
        )
        .await
        .unwrap();
    assert_eq!(e.due_at, at_days(170));
}

#[tokio::test]
async fn only_an_owner_of_the_team_attests_and_a_refusal_changes_nothing() {
    let f = fixture().await;
    f.broker.recert_pass().await.unwrap();
    f.clock.advance(DAY * 80);
    let before_audit = audit(&f).await.len();
    let before = status_of(&f, SubjectKind::Identity, "job").await;

    let refused = |e: BrokerError| match e {
        BrokerError::Forbidden(m) => m,
        other => panic!("expected 403, got {other:?}"),
    };
    for caller in [
        person("alice", Role::Approver), // approves for payments, is no owner
        person("root", Role::Admin),
        person("oscar", Role::Operator),
        person("olga", Role::Approver), // owns another team
        auditor(),
    ] {
        let m = refused(
            f.broker
                .attest(&caller, SubjectKind::Identity, "job", "looks fine")
                .await
                .unwrap_err(),
        );
        assert!(m.contains("only an owner of team payments"), "{m}");
        assert!(!m.contains("carol"), "names no owner: {m}");
    }
    // A resource server and a workload are refused before anything is looked up.
    let rs = Caller::User(User {
        role: Role::ResourceServer,
        ..match carol() {
            Caller::User(u) => u,
            Caller::Workload { .. } => unreachable!(),
        }
    });
    refused(
        f.broker
            .attest(&rs, SubjectKind::Identity, "job", "x")
            .await
            .unwrap_err(),
    );
    let workload = Caller::Workload {
        identity: IdentityName::parse("job").unwrap(),
    };
    refused(
        f.broker
            .attest(&workload, SubjectKind::Identity, "job", "x")
            .await
            .unwrap_err(),
    );
    // Unknown subjects: 404 naming them; no reason: 400.
    match f
        .broker
        .attest(&carol(), SubjectKind::Identity, "ghost", "x")
        .await
        .unwrap_err()
    {
        BrokerError::NotFound(m) => assert!(m.contains("\"ghost\""), "{m}"),
        other => panic!("{other:?}"),
    }
    match f
        .broker
        .attest(&carol(), SubjectKind::Exception, "job", "x")
        .await
        .unwrap_err()
    {
        BrokerError::NotFound(m) => assert!(m.contains("exception \"job\""), "{m}"),
        other => panic!("{other:?}"),
    }
    match f
        .broker
        .attest(&carol(), SubjectKind::Identity, "job", "  ")
        .await
        .unwrap_err()
    {
        BrokerError::Invalid { code, .. } => assert_eq!(code, "missing_reason"),
        other => panic!("{other:?}"),
    }
    // Listing is for people only.
    assert!(matches!(
        f.broker
            .recertifications(&workload, RecertFilter::All)
            .await
            .unwrap_err(),
        BrokerError::Forbidden(_)
    ));
    assert!(matches!(
        f.broker.exceptions(&rs).await.unwrap_err(),
        BrokerError::Forbidden(_)
    ));

    assert_eq!(audit(&f).await.len(), before_audit, "nothing audited");
    assert_eq!(status_of(&f, SubjectKind::Identity, "job").await, before);
    let record = f
        .broker
        .store()
        .get_recertification(SubjectKind::Identity, "job")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.last_attested_at, None, "nothing written");
}

#[tokio::test]
async fn exceptions_are_flagged_for_overdue_rotation_and_past_end_once_each() {
    let f = fixture().await;
    f.broker.recert_pass().await.unwrap();
    let list = f.broker.exceptions(&auditor()).await.unwrap();
    assert_eq!(list.len(), 1);
    assert!(list[0].findings.is_empty());
    assert_eq!(list[0].rotation_due_at, at_days(30));
    assert_eq!(list[0].exception.allowed_sources, vec!["10.20.0.0/16"]);

    f.clock.advance(DAY * 30);
    let report = f.broker.recert_pass().await.unwrap();
    assert_eq!(report.rotations_overdue, 1, "{report:?}");
    f.broker.recert_pass().await.unwrap();
    assert_eq!(
        count(&f, AuditKind::ExceptionRotationOverdue, "legacy-billing").await,
        1
    );
    let list = f.broker.exceptions(&auditor()).await.unwrap();
    assert_eq!(list[0].findings.len(), 1);
    assert_eq!(list[0].findings[0].as_str(), "rotation_overdue");

    // An approver who is no owner may not record a rotation; an operator may, and so may
    // an owner. Each is audited.
    match f
        .broker
        .exception_rotated(&person("alice", Role::Approver), "legacy-billing", None)
        .await
        .unwrap_err()
    {
        BrokerError::Forbidden(m) => assert!(m.contains("team payments"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        f.broker
            .exception_rotated(&carol(), "nope", None)
            .await
            .unwrap_err(),
        BrokerError::NotFound(_)
    ));
    f.clock.advance(DAY);
    let rotated = f
        .broker
        .exception_rotated(&carol(), "legacy-billing", Some("rotated in vault, SEC-12"))
        .await
        .unwrap();
    assert!(rotated.findings.is_empty(), "{:?}", rotated.findings);
    assert_eq!(rotated.rotation_due_at, at_days(61));
    let r = rotated.last_rotation.unwrap();
    assert_eq!(r.rotated_by, "user:carol");
    assert_eq!(r.note.as_deref(), Some("rotated in vault, SEC-12"));
    assert_eq!(
        count(&f, AuditKind::ExceptionRotated, "legacy-billing").await,
        1
    );

    // Past its end (day 120) and, again, past its next rotation (day 61): both flagged,
    // each once.
    f.clock.advance(DAY * 90);
    let report = f.broker.recert_pass().await.unwrap();
    assert_eq!(
        (report.rotations_overdue, report.expired),
        (1, 1),
        "{report:?}"
    );
    f.broker.recert_pass().await.unwrap();
    assert_eq!(
        count(&f, AuditKind::ExceptionExpired, "legacy-billing").await,
        1
    );
    assert_eq!(
        count(&f, AuditKind::ExceptionRotationOverdue, "legacy-billing").await,
        2
    );
    let finding = f.broker.exceptions(&auditor()).await.unwrap()[0]
        .findings
        .iter()
        .map(|f| f.as_str())
        .collect::<Vec<_>>();
    assert_eq!(finding, vec!["rotation_overdue", "expired"]);
}

#[tokio::test]
async fn a_configuration_with_an_exception_past_its_end_is_refused() {
    let f = fixture().await;
    f.clock.advance(DAY * 121);
    let e = f
        .broker
        .apply_config(&Principal::System("bootstrap"), bundle(config("90d", 120)))
        .await
        .unwrap_err();
    match e {
        BrokerError::Invalid { code, message } => {
            assert_eq!(code, "invalid_config");
            assert!(message.contains("kairos.toml:"), "{message}");
            assert!(message.contains("exception[0].ends"), "{message}");
            assert!(message.contains("legacy-billing"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // Moving the end date later is accepted.
    f.broker
        .apply_config(&Principal::System("bootstrap"), bundle(config("90d", 200)))
        .await
        .unwrap();
}

/// Two brokers on one store (replicas) run the pass at once, again and again: each review
/// and each overdue notice is audited exactly once.
#[tokio::test]
async fn replicas_act_on_each_notice_once() {
    let f = fixture().await;
    let other = broker_on(&f.url, &f.clock, &f.master).await;
    f.broker.recert_pass().await.unwrap();
    f.clock.advance(DAY * 100);
    let mut passes = Vec::new();
    for b in [
        Arc::clone(&f.broker),
        Arc::clone(&other),
        Arc::clone(&f.broker),
        other,
    ] {
        passes.push(tokio::spawn(async move {
            for _ in 0..3 {
                b.recert_pass().await.unwrap();
            }
        }));
    }
    for p in passes {
        p.await.unwrap();
    }
    for subject in ["job", "deploy", "agent", "legacy-billing"] {
        assert_eq!(
            count(&f, AuditKind::RecertDue, subject).await,
            1,
            "{subject}"
        );
        assert_eq!(
            count(&f, AuditKind::RecertOverdue, subject).await,
            1,
            "{subject}"
        );
    }
    assert_eq!(
        count(&f, AuditKind::ExceptionRotationOverdue, "legacy-billing").await,
        1
    );
    let chain = f.broker.store().audit_page(0, u32::MAX).await.unwrap();
    assert_eq!(
        kairos_domain::verify_chain(&chain).unwrap(),
        chain.len() as u64
    );
}

fn job() -> Caller {
    Caller::Workload {
        identity: IdentityName::parse("job").unwrap(),
    }
}

fn ask() -> kairos_broker::NewRequest {
    kairos_broker::NewRequest {
        identity: None,
        entitlement: kairos_domain::EntitlementName::parse("api/read").unwrap(),
        ttl: Some(kairos_domain::Ttl::parse("1h").unwrap()),
        task: kairos_domain::Task::new(
            kairos_domain::TaskKind::Job,
            kairos_domain::TaskRef::parse("run-1").unwrap(),
            "nightly".into(),
        )
        .unwrap(),
        source: None,
        proof: None,
        client_cert: None,
        public_key: None,
    }
}

/// Overdue on the manual clock: the identity is suspended through the one end path (its
/// live grant ends, requests are refused, an alert is raised); only an owner's
/// attestation lifts it, and a non-owner's attempt changes nothing.
#[tokio::test]
async fn an_overdue_identity_is_suspended_until_an_owner_attests() {
    let f = fixture().await;
    f.broker.recert_pass().await.unwrap();
    f.clock.advance(DAY * 89);
    let grant = f
        .broker
        .request(&job(), ask())
        .await
        .unwrap()
        .grant
        .unwrap();
    f.clock.advance(DAY);
    let report = f.broker.recert_pass().await.unwrap();
    assert!(report.suspended >= 1, "{report:?}");
    let status = f
        .broker
        .identity_status(&IdentityName::parse("job").unwrap())
        .await
        .unwrap();
    assert_eq!(status.state, kairos_governance::IdentityState::Suspended);
    assert_eq!(
        status.cause,
        Some(kairos_governance::SuspensionCause::RecertOverdue)
    );
    assert_eq!(status.by, "system:recert");
    let g = f
        .broker
        .store()
        .get_grant(&grant.id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        !matches!(g.state, kairos_domain::GrantState::Active),
        "{:?}",
        g.state
    );
    match f.broker.request(&job(), ask()).await.unwrap_err() {
        BrokerError::Forbidden(m) => assert!(m.contains("recert attest"), "{m}"),
        other => panic!("{other:?}"),
    }
    let alerts = f
        .broker
        .alerts(&auditor(), &kairos_broker::AlertQuery::default())
        .await
        .unwrap();
    assert!(
        alerts
            .iter()
            .any(|a| a.kind == kairos_governance::AlertKind::RecertOverdue
                && a.subject == "identity job"),
        "{alerts:?}"
    );
    // More passes: still one suspension, one overdue record.
    f.broker.recert_pass().await.unwrap();
    assert_eq!(count(&f, AuditKind::RecertOverdue, "job").await, 1);
    let suspensions = audit(&f)
        .await
        .iter()
        .filter(|r| r.kind == AuditKind::IdentitySuspended && r.identity.as_deref() == Some("job"))
        .count();
    assert_eq!(suspensions, 1);
    // A plain resume is refused; so is a non-owner's attestation, which changes nothing.
    assert!(matches!(
        f.broker
            .resume_identity(
                &IdentityName::parse("job").unwrap(),
                "please",
                Principal::User(UserName::parse("root").unwrap()),
                false
            )
            .await
            .unwrap_err(),
        BrokerError::Conflict(_)
    ));
    assert!(matches!(
        f.broker
            .attest(
                &person("alice", Role::Approver),
                SubjectKind::Identity,
                "job",
                "fine"
            )
            .await
            .unwrap_err(),
        BrokerError::Forbidden(_)
    ));
    assert_eq!(
        f.broker
            .identity_status(&IdentityName::parse("job").unwrap())
            .await
            .unwrap()
            .state,
        kairos_governance::IdentityState::Suspended
    );
    // The owner attests: resumed, and the next pass leaves it so.
    f.broker
        .attest(
            &carol(),
            SubjectKind::Identity,
            "job",
            "reviewed its grants",
        )
        .await
        .unwrap();
    f.broker.recert_pass().await.unwrap();
    let status = f
        .broker
        .identity_status(&IdentityName::parse("job").unwrap())
        .await
        .unwrap();
    assert_eq!(status.state, kairos_governance::IdentityState::Active);
    f.broker.request(&job(), ask()).await.unwrap();
    let alerts = f
        .broker
        .alerts(&auditor(), &kairos_broker::AlertQuery::default())
        .await
        .unwrap();
    let overdue = alerts
        .iter()
        .find(|a| {
            a.kind == kairos_governance::AlertKind::RecertOverdue && a.subject == "identity job"
        })
        .unwrap();
    assert_eq!(overdue.state, kairos_governance::AlertState::Resolved);
}

/// Instead of attesting, an owner retires the identity; nobody else may, and a retired
/// identity is not recertified.
#[tokio::test]
async fn an_owner_may_retire_instead_of_attesting() {
    let f = fixture().await;
    let grant = f
        .broker
        .request(&job(), ask())
        .await
        .unwrap()
        .grant
        .unwrap();
    for caller in [
        person("alice", Role::Approver),
        person("root", Role::Admin),
        job(),
    ] {
        assert!(matches!(
            f.broker
                .retire_as_owner(&caller, "job", "not needed")
                .await
                .unwrap_err(),
            BrokerError::Forbidden(_)
        ));
    }
    assert!(matches!(
        f.broker
            .retire_as_owner(&carol(), "ghost", "x")
            .await
            .unwrap_err(),
        BrokerError::NotFound(_)
    ));
    assert!(matches!(
        f.broker
            .retire_as_owner(&carol(), "job", "")
            .await
            .unwrap_err(),
        BrokerError::Invalid { .. }
    ));
    let out = f
        .broker
        .retire_as_owner(&carol(), "job", "the backup moved to another system")
        .await
        .unwrap();
    assert_eq!(out.status.state, kairos_governance::IdentityState::Retired);
    assert_eq!(out.ended.len(), 1);
    assert_eq!(out.ended[0].id, grant.id);
    assert!(matches!(
        f.broker
            .attest(&carol(), SubjectKind::Identity, "job", "oops")
            .await
            .unwrap_err(),
        BrokerError::Conflict(_)
    ));
    assert!(matches!(
        f.broker.request(&job(), ask()).await.unwrap_err(),
        BrokerError::Forbidden(_)
    ));
}
