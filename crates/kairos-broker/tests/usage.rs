//! Usage monitoring's detectors on the manual clock, over a real SQLite store: held past
//! use, dormant (and awake again), shared identity, use after end, unexpected source.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use kairos_broker::{Broker, BrokerSettings, Caller, NewRequest};
use kairos_config::ConfigBundle;
use kairos_crypto::seal::MasterKey;
use kairos_domain::{
    Clock, EntitlementName, IdentityName, ManualClock, Principal, Task, TaskKind, TaskRef,
    Timestamp, Ttl,
};
use kairos_store::SqlStore;

const CONFIG: &str = r#"
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

[[identity]]
name = "fenced"
owner = "payments"
kind = "ci-job"
issuer = "ci"
subject = "repo:acme/fenced"
allowed_sources = ["10.0.0.0/8", "192.168.1.7/32"]

[[target]]
name = "api"
kind = "token"
audience = "https://api"

[[entitlement]]
name = "api/read"
tier = "low"
max_ttl = "1h"
scopes = ["read"]

[policy]
files = ["p.cedar"]
"#;

const POLICY: &str = r#"
@id("read") permit (principal, action, resource == Kairos::Entitlement::"api/read");
"#;

const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":"WKn-ZIGevcwGIyyrzFoZNBdaq9_TsqzGl96oc0CWuis","y":"y77t-RvAHRKTsSGdIYUfweuOvwrvDD-Q3Hv5J0fSKbE"}]}"#;

struct Fixture {
    broker: Arc<Broker>,
    clock: ManualClock,
    store: Arc<SqlStore>,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    fixture_with("").await
}

/// The fixture with `extra` appended to the configuration (say, a `[governance]` table).
async fn fixture_with(extra: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1_800_000_000_000));
    let url = format!("sqlite://{}", dir.path().join("k.db").display());
    let store = Arc::new(
        SqlStore::connect(&url)
            .await
            .unwrap()
            .with_clock(Arc::new(clock.clone())),
    );
    let broker = Broker::start(
        Arc::clone(&store) as Arc<dyn kairos_store::Store>,
        Arc::new(clock.clone()),
        MasterKey::generate().unwrap(),
        BrokerSettings::default(),
    )
    .await
    .unwrap();
    let bundle = ConfigBundle {
        main_path: "kairos.toml".into(),
        files: BTreeMap::from([
            ("kairos.toml".into(), format!("{CONFIG}{extra}")),
            ("p.cedar".into(), POLICY.into()),
            ("jwks.json".into(), JWKS.into()),
        ]),
    };
    broker
        .apply_config(&Principal::System("bootstrap"), bundle)
        .await
        .unwrap();
    Fixture {
        broker,
        clock,
        store,
        _dir: dir,
    }
}

fn workload(name: &str) -> Caller {
    Caller::Workload {
        identity: IdentityName::parse(name).unwrap(),
    }
}

fn ask(ttl: &str, task_ref: &str, source: Option<&str>) -> NewRequest {
    NewRequest {
        identity: None,
        entitlement: EntitlementName::parse("api/read").unwrap(),
        ttl: Some(Ttl::parse(ttl).unwrap()),
        task: Task::new(
            TaskKind::Job,
            TaskRef::parse(task_ref).unwrap(),
            "test".into(),
        )
        .unwrap(),
        source: source.map(|s| s.parse::<IpAddr>().unwrap()),
        proof: None,
        client_cert: None,
        public_key: None,
    }
}

fn minutes(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

#[tokio::test]
async fn a_grant_unused_for_half_its_ttl_is_held_past_use_once() {
    let f = fixture().await;
    let job = workload("job");
    let idle = f
        .broker
        .request(&job, ask("10m", "run-1", None))
        .await
        .unwrap()
        .grant
        .unwrap();
    let busy = f
        .broker
        .request(&job, ask("10m", "run-2", None))
        .await
        .unwrap();
    let busy_token = busy.credential.unwrap().access_token().unwrap().to_owned();
    let busy = busy.grant.unwrap();

    // 4 minutes in, the busy grant's token is presented by a resource server.
    f.clock.advance(minutes(4));
    let seen = f
        .broker
        .introspect_from(&job, &busy_token, Some("10.1.2.3".parse().unwrap()))
        .await
        .unwrap();
    assert!(seen.active);
    assert_eq!(f.broker.usage_flush_pass().await.unwrap(), 1);
    let usage = f.broker.grant_usage(&job, &busy.id).await.unwrap().unwrap();
    assert_eq!(usage.uses, 1);
    assert_eq!(usage.last_source, Some("10.1.2.3".parse().unwrap()));
    assert_eq!(usage.last_client.as_deref(), Some("workload:job"));
    assert_eq!(usage.last_at, f.clock.now());

    // Just before half the TTL nothing is held; at half, the idle grant is.
    f.clock.advance(Duration::from_secs(59));
    assert!(f.broker.usage_pass().await.unwrap().held.is_empty());
    f.clock.advance(Duration::from_secs(1));
    assert_eq!(
        f.broker.usage_pass().await.unwrap().held,
        vec![idle.id.clone()]
    );
    // Once only.
    assert!(f.broker.usage_pass().await.unwrap().held.is_empty());
    // The busy grant: 5 minutes after its last use (at 4:00), so at 9:00.
    f.clock.advance(minutes(4) - Duration::from_secs(1));
    assert!(f.broker.usage_pass().await.unwrap().held.is_empty());
    f.clock.advance(Duration::from_secs(1));
    assert_eq!(f.broker.usage_pass().await.unwrap().held, vec![busy.id]);
}

#[tokio::test]
async fn an_identity_without_requests_for_dormant_after_is_dormant_until_it_asks_again() {
    let f = fixture().await;
    // The first pass is when Kairos first sees the identities.
    let first = f.broker.usage_pass().await.unwrap();
    assert!(first.dormant.is_empty());
    f.broker
        .request(&workload("job"), ask("5m", "run-1", None))
        .await
        .unwrap();
    f.broker.usage_flush_pass().await.unwrap();

    f.clock
        .advance(Duration::from_secs(30 * 86_400) - Duration::from_secs(1));
    assert!(f.broker.usage_pass().await.unwrap().dormant.is_empty());
    f.clock.advance(Duration::from_secs(1));
    // `fenced` never asked (counted from its first sighting); `job` last asked 30 days ago.
    let names = |v: Vec<IdentityName>| v.into_iter().map(|i| i.to_string()).collect::<Vec<_>>();
    assert_eq!(
        names(f.broker.usage_pass().await.unwrap().dormant),
        ["fenced", "job"]
    );
    assert!(f.broker.usage_pass().await.unwrap().dormant.is_empty());

    // `job` asks again: awake at the next pass, and dormant again only after another 30 days.
    f.broker
        .request(&workload("job"), ask("5m", "run-2", None))
        .await
        .unwrap();
    f.broker.usage_flush_pass().await.unwrap();
    let pass = f.broker.usage_pass().await.unwrap();
    assert_eq!(names(pass.awake), ["job"]);
    assert!(pass.dormant.is_empty());
    f.clock.advance(Duration::from_secs(30 * 86_400));
    assert_eq!(names(f.broker.usage_pass().await.unwrap().dormant), ["job"]);
}

#[tokio::test]
async fn an_identity_used_from_many_addresses_or_tasks_is_shared() {
    let f = fixture().await;
    let job = workload("job");
    for (i, ip) in ["10.0.0.1", "10.0.0.2", "10.0.0.3"].iter().enumerate() {
        f.broker
            .request(&job, ask("30m", &format!("run-{i}"), Some(ip)))
            .await
            .unwrap();
    }
    f.broker.usage_flush_pass().await.unwrap();
    assert!(f.broker.usage_pass().await.unwrap().shared.is_empty());
    // A fourth address within the hour.
    f.broker
        .request(&job, ask("30m", "run-9", Some("10.0.0.4")))
        .await
        .unwrap();
    f.broker.usage_flush_pass().await.unwrap();
    let pass = f.broker.usage_pass().await.unwrap();
    assert_eq!(pass.shared, vec![IdentityName::parse("job").unwrap()]);
    // Once per window.
    assert!(f.broker.usage_pass().await.unwrap().shared.is_empty());

    // Six concurrent tasks (one address) make `fenced` shared too.
    let fenced = workload("fenced");
    for i in 0..6 {
        f.broker
            .request(&fenced, ask("30m", &format!("task-{i}"), Some("10.9.9.9")))
            .await
            .unwrap();
    }
    f.broker.usage_flush_pass().await.unwrap();
    let pass = f.broker.usage_pass().await.unwrap();
    assert_eq!(pass.shared, vec![IdentityName::parse("fenced").unwrap()]);
}

#[tokio::test]
async fn a_token_presented_after_its_end_counts_as_use_after_end() {
    let f = fixture().await;
    let job = workload("job");
    let out = f
        .broker
        .request(&job, ask("5m", "run-1", None))
        .await
        .unwrap();
    let token = out.credential.unwrap().access_token().unwrap().to_owned();
    let grant = out.grant.unwrap();
    let count = |b: &Broker| b.metrics().use_after_end.get();
    assert!(
        f.broker
            .introspect_from(&job, &token, None)
            .await
            .unwrap()
            .active
    );
    assert_eq!(count(&f.broker), 0);

    f.broker.release(&job, &grant.id).await.unwrap();
    for _ in 0..3 {
        let i = f
            .broker
            .introspect_from(&job, &token, Some("10.0.0.5".parse().unwrap()))
            .await
            .unwrap();
        assert!(!i.active);
    }
    assert_eq!(count(&f.broker), 3);

    // An expired token (its exp passed) of another grant counts too.
    let other = f
        .broker
        .request(&job, ask("5m", "run-2", None))
        .await
        .unwrap();
    let other_token = other.credential.unwrap().access_token().unwrap().to_owned();
    f.clock.advance(minutes(6));
    assert!(
        !f.broker
            .introspect_from(&job, &other_token, None)
            .await
            .unwrap()
            .active
    );
    assert_eq!(count(&f.broker), 4);
    // A token Kairos never signed is not a use after end.
    assert!(
        !f.broker
            .introspect_from(&job, "not.a.token", None)
            .await
            .unwrap()
            .active
    );
    assert_eq!(count(&f.broker), 4);
}

#[tokio::test]
async fn policy_sees_the_source_and_requests_record_it() {
    let f = fixture().await;
    let fenced = workload("fenced");
    let out = f
        .broker
        .request(&fenced, ask("5m", "run-1", Some("::ffff:10.1.1.1")))
        .await
        .unwrap();
    // Recorded as the IPv4 address it carries.
    assert_eq!(out.request.source_ip, Some("10.1.1.1".parse().unwrap()));
    let stored = f
        .broker
        .store()
        .get_request(&out.request.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.source_ip, out.request.source_ip);
}

/// The `[governance]` thresholds are the ones in force, and a dormant identity is an alert
/// in the alert list that resolves itself when the identity asks again.
#[tokio::test]
async fn configured_dormancy_raises_an_alert_that_resolves_when_the_identity_asks() {
    use kairos_governance::{AlertKind, AlertState};
    use kairos_store::{AlertFilter, GovernanceStore};
    let f = fixture_with("\n[governance]\ndormant_after = \"2d\"\n").await;
    assert_eq!(
        f.broker.usage_limits().dormant_after,
        Duration::from_secs(2 * 86_400)
    );
    f.broker.usage_pass().await.unwrap();
    f.broker
        .request(&workload("job"), ask("5m", "run-1", None))
        .await
        .unwrap();
    f.broker.usage_flush_pass().await.unwrap();
    f.clock
        .advance(Duration::from_secs(2 * 86_400) - Duration::from_secs(1));
    assert!(f.broker.usage_pass().await.unwrap().dormant.is_empty());
    f.clock.advance(Duration::from_secs(1));
    f.broker.usage_pass().await.unwrap();
    let dormant = |state: Option<AlertState>| {
        let store = Arc::clone(&f.store);
        async move {
            let mut subjects: Vec<String> = store
                .list_alerts(&AlertFilter {
                    kind: Some(AlertKind::DormantIdentity),
                    state,
                    ..AlertFilter::default()
                })
                .await
                .unwrap()
                .into_iter()
                .map(|a| a.subject)
                .collect();
            subjects.sort();
            subjects
        }
    };
    assert_eq!(dormant(Some(AlertState::Open)).await, ["fenced", "job"]);
    f.broker
        .request(&workload("job"), ask("5m", "run-2", None))
        .await
        .unwrap();
    f.broker.usage_flush_pass().await.unwrap();
    f.broker.usage_pass().await.unwrap();
    assert_eq!(dormant(Some(AlertState::Open)).await, ["fenced"]);
    assert_eq!(dormant(Some(AlertState::Resolved)).await, ["job"]);
}
