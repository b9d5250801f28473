//! A target slower than the revocation lease, against a real Redis (127.0.0.1:6379): the
//! worker keeps the jobs in hand claimed while the target works, so another worker (this
//! replica's next pass, or another replica) cannot take them and revoke them a second time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kairos_broker::BrokerSettings;
use kairos_broker::ending::RevokeScope;
use kairos_connectors::Connector;
use kairos_domain::{Clock, GrantState, TargetName, TaskRef};
use kairos_store::Role;
use support::{Fixture, Hooked, ask, redis_catalog, workload};

const LEASE: Duration = Duration::from_millis(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_in_hand_stay_claimed_while_a_slow_target_works() {
    let prefix = format!("ks{}_", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let dir = tempfile::tempdir().unwrap();
    let (toml, policies) = redis_catalog(dir.path(), &prefix);
    let settings = BrokerSettings {
        revocation_lease: LEASE,
        ..BrokerSettings::default()
    };
    let f = Fixture::with_settings(&toml, &policies, settings).await;
    let target = TargetName::parse("cache").unwrap();
    let mut accounts = Vec::new();
    for _ in 0..3 {
        let out = f
            .broker
            .request(&workload("job"), ask("cache/read", "10m"))
            .await
            .unwrap();
        accounts.push(out.grant.unwrap().account.unwrap());
    }

    // The target is slow in the broker's time: while it revokes, the clock moves past the
    // lease the jobs were claimed for, and a rival worker tries to claim them.
    let rival: Arc<Mutex<Option<usize>>> = Arc::default();
    let before_revoke_many: support::Hook = {
        let (clock, store, rival) = (
            f.clock.clone(),
            Arc::clone(f.broker.store()),
            Arc::clone(&rival),
        );
        Box::new(move || {
            let (clock, store, rival) = (clock.clone(), Arc::clone(&store), Arc::clone(&rival));
            Box::pin(async move {
                // Half the lease passes, then (in real time) long enough for several
                // renewals, then past the first lease's end but short of a renewed one's.
                clock.advance(LEASE / 2);
                tokio::time::sleep(LEASE * 4).await;
                clock.advance(LEASE / 2 + LEASE / 6);
                let claimed = store
                    .claim_revocations(clock.now(), 100, 60_000)
                    .await
                    .unwrap();
                *rival.lock().unwrap() = Some(claimed.len());
            })
        })
    };
    let inner = Arc::clone(f.broker.targets().get(&target).unwrap());
    let slow = Arc::new(Hooked {
        inner: Arc::clone(&inner),
        after_list_managed: None,
        before_revoke_many: Some(before_revoke_many),
    });
    f.broker
        .wrap_connector_for_tests(&target, move |_| slow as Arc<dyn Connector>);

    let oscar = Fixture::person("oscar", Role::Operator, &[]);
    let ended = f
        .broker
        .revoke(
            &oscar,
            RevokeScope::TaskRef(TaskRef::parse("run-1").unwrap()),
            None,
        )
        .await
        .unwrap();
    assert_eq!(ended.len(), 3);
    // The pass waits a second for the target's batch, then lets it finish on its own.
    f.broker.revoke_due().await.unwrap();
    let mut left = 3;
    for _ in 0..300 {
        left = 0;
        for g in &ended {
            let now = f.broker.store().get_grant(&g.id).await.unwrap().unwrap();
            if !matches!(now.state, GrantState::Ended { .. }) {
                left += 1;
            }
        }
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left, 0, "every grant ends with its receipt");
    assert_eq!(
        *rival.lock().unwrap(),
        Some(0),
        "a rival claimed jobs the slow target was still revoking"
    );
    let listed: Vec<String> = inner
        .list_managed()
        .await
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    for a in &accounts {
        assert!(!listed.contains(a), "{a} is still in Redis");
    }
}
