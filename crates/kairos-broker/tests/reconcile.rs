//! The reconciler against a real Redis (127.0.0.1:6379): a grant that turns active while a
//! pass runs, between its listing of the accounts and its read of the active grants, is
//! not reported `account_missing`; a grant whose account really is gone still is.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use kairos_broker::Broker;
use kairos_connectors::{
    AccountName, AccountRequest, ConnectionInfo, Connector, ConnectorError, Revocability, Revoked,
    ServerFacts, Verification,
};
use kairos_domain::{AuditKind, GrantId, TargetName, Timestamp};
use kairos_store::AuditFilter;
use secrecy::SecretString;
use support::{Fixture, ask, config, workload};

/// The Redis target's connector, which lets a grant of the target activate right after it
/// listed the accounts, as a request on another task would.
#[derive(Debug)]
struct ActivatesAfterListing {
    inner: Arc<dyn Connector>,
    broker: Arc<Broker>,
    activated: Mutex<Option<(GrantId, String)>>,
}

#[async_trait]
impl Connector for ActivatesAfterListing {
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
        let listed = self.inner.list_managed().await?;
        let out = self
            .broker
            .request(&workload("job"), ask("cache/read", "10m"))
            .await
            .unwrap();
        let grant = out.grant.unwrap();
        assert_eq!(grant.state, kairos_domain::GrantState::Active, "{grant:?}");
        *self.activated.lock().unwrap() = Some((grant.id.clone(), grant.account.unwrap()));
        Ok(listed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_activating_during_a_pass_is_not_reported_missing() {
    let prefix = format!("kr{}_", &uuid::Uuid::new_v4().simple().to_string()[..8]);
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
    let f = Fixture::with(&toml, &policies).await;
    let target = TargetName::parse("cache").unwrap();
    let inner = Arc::clone(f.broker.targets().get(&target).unwrap());

    let racing = Arc::new(ActivatesAfterListing {
        inner: Arc::clone(&inner),
        broker: Arc::clone(&f.broker),
        activated: Mutex::new(None),
    });
    let report = f
        .broker
        .reconcile(&target, Arc::clone(&racing) as Arc<dyn Connector>)
        .await
        .unwrap();
    let (grant, account) = racing.activated.lock().unwrap().clone().unwrap();
    assert!(
        report.missing_accounts.is_empty(),
        "a grant that activated during the pass is reported missing: {report:?}"
    );
    assert!(report.residue_removed.is_empty(), "{report:?}");
    let audited = |grant: &GrantId| {
        let s = Arc::clone(f.broker.store());
        let grant = grant.to_string();
        async move {
            s.list_audit(&AuditFilter {
                grant_id: Some(grant),
                ..AuditFilter::default()
            })
            .await
            .unwrap()
            .iter()
            .any(|r| r.kind == AuditKind::AccountMissing)
        }
    };
    assert!(!audited(&grant).await);

    // The next pass sees the account: nothing missing.
    let report = f
        .broker
        .reconcile(&target, Arc::clone(&inner))
        .await
        .unwrap();
    assert!(report.missing_accounts.is_empty(), "{report:?}");

    // Its account dropped by hand: now it is missing, reported and audited.
    inner
        .revoke(&AccountName::parse(&account).unwrap())
        .await
        .unwrap();
    let report = f
        .broker
        .reconcile(&target, Arc::clone(&inner))
        .await
        .unwrap();
    assert_eq!(report.missing_accounts, vec![account.clone()], "{report:?}");
    assert!(audited(&grant).await);

    for a in inner.list_managed().await.unwrap() {
        inner.revoke(&a).await.unwrap();
    }
}
