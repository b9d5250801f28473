//! A target slower than the revocation lease, against a real Redis (127.0.0.1:6379): the
//! worker keeps the jobs in hand claimed while the target works, so another worker (this
//! replica's next pass, or another replica) cannot take them and revoke them a second time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kairos_broker::BrokerSettings;
use kairos_broker::ending::RevokeScope;
use kairos_connectors::{
    AccountName, AccountRequest, ConnectionInfo, Connector, ConnectorError, Revocability, Revoked,
    ServerFacts, Verification,
};
use kairos_domain::{Clock, GrantState, ManualClock, TargetName, TaskRef, Timestamp};
use kairos_store::{Role, Store};
use secrecy::SecretString;
use support::{Fixture, ask, config, workload};

const LEASE: Duration = Duration::from_millis(600);

/// The Redis target's connector, slow in the broker's time: while it revokes, the clock
/// moves past the lease the jobs were claimed for, and a rival worker tries to claim them.
#[derive(Debug)]
struct Slow {
    inner: Arc<dyn Connector>,
    clock: ManualClock,
    store: Arc<dyn Store>,
    /// What the rival claimed, once it tried.
    rival: Mutex<Option<usize>>,
}

#[async_trait]
impl Connector for Slow {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn revocability(&self) -> Revocability {
        self.inner.revocability()
    }
    fn managed_prefix(&self) -> &str {
        self.inner.managed_prefix()
    }
    async fn provision(&self, req: &AccountRequest<'_>) -> Result<ConnectionInfo, ConnectorError> {
        self.inner.provision(req).await
    }
    async fn renew(&self, a: &AccountName, until: Timestamp) -> Result<(), ConnectorError> {
        self.inner.renew(a, until).await
    }
    async fn revoke(&self, a: &AccountName) -> Result<Revoked, ConnectorError> {
        self.inner.revoke(a).await
    }
    async fn revoke_many(&self, accounts: &[AccountName]) -> Vec<Result<Revoked, ConnectorError>> {
        // Half the lease passes, then (in real time) long enough for several renewals,
        // then past the first lease's end but short of a renewed one's.
        self.clock.advance(LEASE / 2);
        tokio::time::sleep(LEASE * 4).await;
        self.clock.advance(LEASE / 2 + LEASE / 6);
        let rival = self
            .store
            .claim_revocations(self.clock.now(), 100, 60_000)
            .await
            .unwrap();
        *self.rival.lock().unwrap() = Some(rival.len());
        self.inner.revoke_many(accounts).await
    }
    async fn verify_gone(
        &self,
        a: &AccountName,
        password: Option<&SecretString>,
    ) -> Result<Verification, ConnectorError> {
        self.inner.verify_gone(a, password).await
    }
    async fn server_facts(&self) -> Result<ServerFacts, ConnectorError> {
        self.inner.server_facts().await
    }
    async fn list_managed(&self) -> Result<Vec<AccountName>, ConnectorError> {
        self.inner.list_managed().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_in_hand_stay_claimed_while_a_slow_target_works() {
    let prefix = format!("ks{}_", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let dir = tempfile::tempdir().unwrap();
    let admin = dir.path().join("redis-admin");
    std::fs::write(&admin, "redis://127.0.0.1:6379").unwrap();
    let toml = config(&format!(
        r#"
[[target]]
name = "cache"
kind = "redis"
admin_url_file = "{}"
managed_prefix = "{prefix}"

[[entitlement]]
name = "cache/read"
tier = "low"
max_ttl = "15m"
acl = ["~sessions:*", "+get"]
"#,
        admin.display()
    ));
    // `config` ends with the [policy] table: the target and entitlement go before it.
    let (head, policy) = toml.split_at(toml.find("[policy]").unwrap());
    let (policy, extra) = policy.split_at(policy.find("\n\n[[target]]").unwrap());
    let toml = format!("{head}{extra}\n{policy}");
    let policies = format!(
        "{}\n@id(\"cache\") permit (principal, action, resource == Kairos::Entitlement::\"cache/read\");\n",
        support::POLICY
    );
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
    let slow = Arc::new(Slow {
        inner: Arc::clone(f.broker.targets().get(&target).unwrap()),
        clock: f.clock.clone(),
        store: Arc::clone(f.broker.store()),
        rival: Mutex::new(None),
    });
    let wrapped = Arc::clone(&slow);
    f.broker
        .wrap_connector_for_tests(&target, move |_| wrapped as Arc<dyn Connector>);

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
        *slow.rival.lock().unwrap(),
        Some(0),
        "a rival claimed jobs the slow target was still revoking"
    );
    let listed: Vec<String> = slow
        .inner
        .list_managed()
        .await
        .unwrap()
        .iter()
        .map(|a| a.to_string())
        .collect();
    for a in &accounts {
        assert!(!listed.contains(a), "{a} is still in Redis");
    }
}
