//! The broker's time-driven logic on an injectable clock: no sleeps, no wall time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use kairos_domain::{Clock, GrantState, Principal, RequestState, Ttl};
use support::{Fixture, POLICY, ask, workload};

const CONFIG: &str = r#"
[server]
pending_timeout = "10m"

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
tier = "low"
max_ttl = "1h"
scopes = ["read"]

[[entitlement]]
name = "api/admin"
tier = "high"
max_ttl = "30m"
scopes = ["admin"]

[policy]
files = ["p.cedar"]
"#;

async fn fixture() -> Fixture {
    Fixture::with(CONFIG, POLICY).await
}

#[tokio::test]
async fn grants_expire_exactly_when_the_clock_passes_their_end() {
    let f = fixture().await;
    let short = f
        .broker
        .request(&workload("job"), ask("api/read", "5m"))
        .await
        .unwrap();
    let long = f
        .broker
        .request(&workload("job"), ask("api/read", "20m"))
        .await
        .unwrap();
    let short_grant = short.grant.unwrap();
    let token = short.credential.unwrap().access_token().unwrap().to_owned();

    // One millisecond before the end: nothing is due.
    f.clock
        .advance(Duration::from_secs(300) - Duration::from_millis(1));
    assert_eq!(f.broker.expire_due().await.unwrap(), 0);
    assert!(f.broker.introspect(&token).await.unwrap().active);
    assert_eq!(
        f.broker.store().next_expiry().await.unwrap(),
        Some(short_grant.expires_at)
    );

    // At the end: exactly the short grant ends, and introspection turns inactive at once.
    f.clock.advance(Duration::from_millis(1));
    assert!(!f.broker.introspect(&token).await.unwrap().active);
    assert_eq!(f.broker.expire_due().await.unwrap(), 1);
    assert_eq!(f.broker.expire_due().await.unwrap(), 0);

    // The expirer verified it and wrote the receipt itself: the worker finds nothing left.
    assert_eq!(f.broker.revoke_due().await.unwrap(), (0, 0));
    let g = f
        .broker
        .store()
        .get_grant(&short_grant.id)
        .await
        .unwrap()
        .unwrap();
    match g.state {
        GrantState::Ended { end, receipt } => {
            assert_eq!(end.by, Principal::System("expirer"));
            assert_eq!(end.at, short_grant.expires_at);
            assert_eq!(receipt.verified_at, f.clock.now());
            assert_eq!(receipt.method, "introspection");
        }
        other => panic!("not ended: {other:?}"),
    }
    // The other grant is untouched until its own end.
    let other = long.grant.unwrap();
    let stored = f
        .broker
        .store()
        .get_grant(&other.id)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(stored.state, GrantState::Active));
    f.clock.advance(Duration::from_secs(15 * 60));
    assert_eq!(f.broker.expire_due().await.unwrap(), 1);
}

#[tokio::test]
async fn pending_requests_expire_on_the_injected_clock() {
    let f = fixture().await;
    let pending = f
        .broker
        .request(&workload("job"), ask("api/admin", "10m"))
        .await
        .unwrap();
    assert_eq!(pending.request.state, RequestState::Pending);
    f.clock.advance(Duration::from_secs(599));
    assert_eq!(f.broker.expire_pending().await.unwrap(), 0);
    f.clock.advance(Duration::from_secs(1));
    assert_eq!(f.broker.expire_pending().await.unwrap(), 1);
    let r = f
        .broker
        .store()
        .get_request(&pending.request.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.state, RequestState::Expired);
}

fn renewed(r: kairos_broker::Renewal) -> kairos_domain::Grant {
    match r {
        kairos_broker::Renewal::Renewed { grant, .. } => grant,
        other => panic!("expected a renewal, got {other:?}"),
    }
}

#[tokio::test]
async fn renewal_stops_at_the_cap_on_the_injected_clock() {
    let f = fixture().await;
    let out = f
        .broker
        .request(&workload("job"), ask("api/read", "30m"))
        .await
        .unwrap();
    let id = out.grant.unwrap().id;
    f.clock.advance(Duration::from_secs(20 * 60));
    // 20 min in: 30 more minutes would end at 50m, inside the 1h cap.
    let g = renewed(
        f.broker
            .renew(&workload("job"), &id, Ttl::parse("30m").unwrap())
            .await
            .unwrap(),
    );
    assert_eq!(g.expires_at, f.clock.now().plus(Duration::from_secs(1800)));
    // 45 min in: 30 more would pass the cap at 60m.
    f.clock.advance(Duration::from_secs(25 * 60));
    assert!(
        f.broker
            .renew(&workload("job"), &id, Ttl::parse("30m").unwrap())
            .await
            .is_err()
    );
    let g = renewed(
        f.broker
            .renew(&workload("job"), &id, Ttl::parse("15m").unwrap())
            .await
            .unwrap(),
    );
    assert_eq!(g.expires_at, g.max_expires_at);
}

#[tokio::test]
async fn grants_falling_due_together_are_all_verified_in_one_pass() {
    let f = fixture().await;
    for _ in 0..40 {
        f.broker
            .request(&workload("job"), ask("api/read", "5m"))
            .await
            .unwrap();
    }
    f.clock.advance(Duration::from_secs(300));
    assert_eq!(f.broker.expire_due().await.unwrap(), 40);
    // Verified and receipted by the expirer's own pass; nothing left for the worker.
    let counts = f.broker.store().counts().await.unwrap();
    assert_eq!((counts.active_grants, counts.revoking_grants), (0, 0));
    assert_eq!(f.broker.revoke_due().await.unwrap(), (0, 0));
}
