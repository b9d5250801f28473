//! The identity lifecycle on the manual clock: orphans are flagged at once, suspended
//! exactly when their grace runs out (once, whatever the number of passes), cleared when
//! an owner can act again; `orphan_action = "flag"` never suspends; a suspension for an
//! overdue recertification is not lifted by `resume`; and a policy change re-decides live
//! grants, renewed ones by their whole lifetime.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kairos_broker::governance::lifecycle::StateRequest;
use kairos_broker::{Broker, BrokerError, BrokerSettings, Caller, NewRequest};
use kairos_config::ConfigBundle;
use kairos_crypto::seal::MasterKey;
use kairos_domain::{
    EndReason, EntitlementName, GrantId, GrantState, IdentityName, ManualClock, Principal, Task,
    TaskKind, TaskRef, TeamName, Timestamp, Ttl, UserName,
};
use kairos_governance::{IdentityState, SuspensionCause};
use kairos_store::{Role, SqlStore, User};

const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":"WKn-ZIGevcwGIyyrzFoZNBdaq9_TsqzGl96oc0CWuis","y":"y77t-RvAHRKTsSGdIYUfweuOvwrvDD-Q3Hv5J0fSKbE"}]}"#;

fn config(action: &str) -> String {
    format!(
        r#"
[[issuer]]
name = "ci"
issuer = "https://ci.example.com"
audience = "kairos"
jwks_file = "jwks.json"

[[team]]
name = "payments"
owners = ["carol"]

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
name = "api/read"
target = "api"
tier = "low"
max_ttl = "1h"
scopes = ["read"]

[governance]
orphan_action = "{action}"
orphan_grace = "1h"

[policy]
files = ["p.cedar"]
"#
    )
}

const POLICY: &str = r#"
@id("read") permit (principal, action, resource == Kairos::Entitlement::"api/read");
"#;

struct Fixture {
    broker: Arc<Broker>,
    clock: ManualClock,
    _dir: tempfile::TempDir,
}

fn bundle(config: &str, policy: &str) -> ConfigBundle {
    ConfigBundle {
        main_path: "kairos.toml".into(),
        files: BTreeMap::from([
            ("kairos.toml".into(), config.into()),
            ("p.cedar".into(), policy.into()),
            ("jwks.json".into(), JWKS.into()),
        ]),
    }
}

async fn fixture(action: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1_800_000_000_000));
    let url = format!("sqlite://{}", dir.path().join("k.db").display());
    let store = SqlStore::connect(&url)
        .await
        .unwrap()
        .with_clock(Arc::new(clock.clone()));
    let broker = Broker::start(
        Arc::new(store),
        Arc::new(clock.clone()),
        MasterKey::generate().unwrap(),
        BrokerSettings::default(),
    )
    .await
    .unwrap();
    broker
        .apply_config(
            &Principal::System("bootstrap"),
            bundle(&config(action), POLICY),
        )
        .await
        .unwrap();
    Fixture {
        broker,
        clock,
        _dir: dir,
    }
}

fn admin() -> Caller {
    Caller::User(User {
        name: UserName::parse("admin").unwrap(),
        role: Role::Admin,
        teams: vec![],
        targets: vec![],
        created_at: Timestamp::from_millis(0),
    })
}

fn workload() -> Caller {
    Caller::Workload { identity: job() }
}

fn job() -> IdentityName {
    IdentityName::parse("job").unwrap()
}

fn ask(ttl: &str) -> NewRequest {
    NewRequest {
        identity: None,
        entitlement: EntitlementName::parse("api/read").unwrap(),
        ttl: Some(Ttl::parse(ttl).unwrap()),
        task: Task::new(
            TaskKind::Job,
            TaskRef::parse("run-1").unwrap(),
            "test".into(),
        )
        .unwrap(),
        source: None,
        proof: None,
        client_cert: None,
        public_key: None,
    }
}

async fn add_carol(b: &Broker) {
    b.add_user(
        &admin(),
        UserName::parse("carol").unwrap(),
        Role::Approver,
        vec![TeamName::parse("payments").unwrap()],
        vec![],
    )
    .await
    .unwrap();
}

async fn end_reason(b: &Broker, id: &GrantId) -> Option<EndReason> {
    let g = b.store().get_grant(id).await.unwrap().unwrap();
    g.state.end().map(|e| e.reason)
}

async fn state(b: &Broker) -> (IdentityState, Option<SuspensionCause>) {
    let s = b.identity_status(&job()).await.unwrap();
    (s.state, s.cause)
}

#[tokio::test]
async fn an_orphan_is_suspended_exactly_when_its_grace_runs_out_and_once() {
    let f = fixture("suspend").await;
    let b = &f.broker;
    // carol is not a user: orphaned from the first apply on, the grace running.
    let flagged = b.store().orphans().await.unwrap();
    assert_eq!(flagged.len(), 1);
    assert_eq!(flagged[0].identity, job());
    // An owner arrives: cleared. Their tokens are revoked an hour later: flagged anew,
    // the grace counting from then.
    f.clock.advance(Duration::from_secs(3600));
    add_carol(b).await;
    assert!(b.store().orphans().await.unwrap().is_empty());
    assert_eq!(b.orphan_pass().await.unwrap(), Default::default());
    let grant = b
        .request(&workload(), ask("1h"))
        .await
        .unwrap()
        .grant
        .unwrap();
    f.clock.advance(Duration::from_secs(600));
    b.revoke_user(&admin(), &UserName::parse("carol").unwrap())
        .await
        .unwrap();
    let flag = b.store().orphans().await.unwrap().pop().unwrap();
    assert_eq!(flag.detected_at, b.now());

    // A millisecond before the grace ends: nothing, however many passes.
    f.clock
        .advance(Duration::from_secs(3600) - Duration::from_millis(1));
    for _ in 0..3 {
        assert!(b.orphan_pass().await.unwrap().suspended.is_empty());
    }
    assert_eq!(state(b).await, (IdentityState::Active, None));
    assert_eq!(end_reason(b, &grant.id).await, None);

    // At the end: suspended (cause orphaned), its grant ended; once.
    f.clock.advance(Duration::from_millis(1));
    assert_eq!(b.orphan_pass().await.unwrap().suspended, vec![job()]);
    assert!(b.orphan_pass().await.unwrap().suspended.is_empty());
    assert_eq!(
        state(b).await,
        (IdentityState::Suspended, Some(SuspensionCause::Orphaned))
    );
    assert_eq!(end_reason(b, &grant.id).await, Some(EndReason::Suspended));
    let refused = b.request(&workload(), ask("5m")).await.unwrap_err();
    assert!(
        matches!(&refused, BrokerError::Forbidden(m) if m.contains("suspended (orphaned)")),
        "{refused:?}"
    );

    // Resumed by a person while still orphaned: it stays resumed (the action ran for this
    // flag), and stays flagged.
    b.change_identity_state_as(&admin(), &job(), StateRequest::Resume, "checked by hand")
        .await
        .unwrap();
    f.clock.advance(Duration::from_secs(7200));
    assert!(b.orphan_pass().await.unwrap().suspended.is_empty());
    assert_eq!(state(b).await, (IdentityState::Active, None));
    assert_eq!(b.store().orphans().await.unwrap().len(), 1);
    b.request(&workload(), ask("5m")).await.unwrap();
}

#[tokio::test]
async fn with_orphan_action_flag_an_orphan_is_never_suspended() {
    let f = fixture("flag").await;
    let b = &f.broker;
    assert_eq!(b.store().orphans().await.unwrap().len(), 1);
    f.clock.advance(Duration::from_secs(30 * 24 * 3600));
    assert!(b.orphan_pass().await.unwrap().suspended.is_empty());
    assert_eq!(state(b).await, (IdentityState::Active, None));
    let view = b.identity_for(&admin(), &job()).await.unwrap();
    assert!(view.orphan.is_some());
    assert_eq!(
        view.orphan_grace_ends, None,
        "nothing will happen at its end"
    );
    b.request(&workload(), ask("5m")).await.unwrap();
}

#[tokio::test]
async fn resume_does_not_lift_an_overdue_recertification() {
    let f = fixture("flag").await;
    let b = &f.broker;
    b.suspend_identity(
        &job(),
        SuspensionCause::RecertOverdue,
        "recertification overdue",
        Principal::System("governance"),
    )
    .await
    .unwrap();
    let err = b
        .change_identity_state_as(&admin(), &job(), StateRequest::Resume, "please")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BrokerError::Conflict(m) if m.contains("kairos recert attest")),
        "{err:?}"
    );
    assert_eq!(
        state(b).await,
        (
            IdentityState::Suspended,
            Some(SuspensionCause::RecertOverdue)
        )
    );
}

#[tokio::test]
async fn a_policy_change_re_decides_grants_renewed_ones_by_their_whole_lifetime() {
    let f = fixture("flag").await;
    let b = &f.broker;
    add_carol(b).await;
    let plain = b
        .request(&workload(), ask("10m"))
        .await
        .unwrap()
        .grant
        .unwrap();
    let renewed = b
        .request(&workload(), ask("10m"))
        .await
        .unwrap()
        .grant
        .unwrap();
    f.clock.advance(Duration::from_secs(300));
    b.renew(&workload(), &renewed.id, Ttl::parse("25m").unwrap())
        .await
        .unwrap();
    // Requests up to 20 minutes and renewals to a lifetime of 20 minutes.
    let tight = r#"
@id("read") permit (principal, action, resource == Kairos::Entitlement::"api/read")
when { context.ttl_secs <= 1200 };
"#;
    let report = b
        .apply_config_with(
            &Principal::System("test"),
            bundle(&config("flag"), tight),
            kairos_broker::ApplyOptions {
                mode: kairos_broker::ApplyMode::DryRun,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(report.ending.len(), 1, "{:?}", report.ending);
    assert_eq!(report.ending[0].grant, renewed.id);
    assert_eq!(report.ending[0].reason, EndReason::PolicyChanged);
    assert!(
        report.ending[0]
            .because
            .contains("renewal to a lifetime of 30m"),
        "{}",
        report.ending[0].because
    );
    assert_eq!(
        end_reason(b, &renewed.id).await,
        None,
        "a dry run changes nothing"
    );
    b.apply_config(&Principal::System("test"), bundle(&config("flag"), tight))
        .await
        .unwrap();
    assert_eq!(
        end_reason(b, &renewed.id).await,
        Some(EndReason::PolicyChanged)
    );
    assert_eq!(end_reason(b, &plain.id).await, None);
    let stored = b.store().get_grant(&plain.id).await.unwrap().unwrap();
    assert!(matches!(stored.state, GrantState::Active));
}
