//! A broker on a SQLite store and a manual clock, for tests of time-driven rules.
//! Use it from a test file with `mod support;`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kairos_broker::{Broker, BrokerSettings, Caller, NewRequest};
use kairos_config::ConfigBundle;
use kairos_connectors::{
    AccountName, AccountRequest, ConnectionInfo, Connector, ConnectorError, Revocability, Revoked,
    ServerFacts, Verification,
};
use kairos_crypto::seal::MasterKey;
use kairos_domain::{
    EntitlementName, IdentityName, ManualClock, Principal, Task, TaskKind, TaskRef, Timestamp, Ttl,
    UserName,
};
use kairos_store::{Role, SqlStore, User};
use secrecy::SecretString;

/// A public key for the `ci` issuer's JWKS (no test signs platform tokens here: callers
/// are built directly as `Caller::Workload`).
pub const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":"WKn-ZIGevcwGIyyrzFoZNBdaq9_TsqzGl96oc0CWuis","y":"y77t-RvAHRKTsSGdIYUfweuOvwrvDD-Q3Hv5J0fSKbE"}]}"#;

/// A catalog with one issuer `ci` (jwks.json), team `payments` (owners carol, approver
/// dave), identity `job` of that team, token target `api`, entitlements `api/read`
/// (granted at once) and `api/admin` (one approval); `extra` is appended to the TOML.
pub fn config(extra: &str) -> String {
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
approvers = ["dave"]

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
{extra}
"#
    )
}

pub const POLICY: &str = r#"
@id("read") permit (principal, action, resource == Kairos::Entitlement::"api/read");
@id("admin") @approvals("1") permit (principal, action, resource == Kairos::Entitlement::"api/admin");
"#;

pub struct Fixture {
    pub broker: Arc<Broker>,
    pub clock: ManualClock,
    pub dir: tempfile::TempDir,
}

impl Fixture {
    /// The default catalog and policy.
    pub async fn new() -> Self {
        Self::with(&config(""), POLICY).await
    }

    pub async fn with(toml: &str, policy: &str) -> Self {
        let settings = BrokerSettings {
            pending_timeout: Duration::from_secs(600),
            ..BrokerSettings::default()
        };
        Self::with_settings(toml, policy, settings).await
    }

    pub async fn with_settings(toml: &str, policy: &str, settings: BrokerSettings) -> Self {
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
            settings,
        )
        .await
        .unwrap();
        let f = Self { broker, clock, dir };
        f.apply(toml, policy).await;
        f
    }

    pub async fn apply(&self, toml: &str, policy: &str) {
        let bundle = ConfigBundle {
            main_path: "kairos.toml".into(),
            files: BTreeMap::from([
                ("kairos.toml".into(), toml.into()),
                ("p.cedar".into(), policy.into()),
                ("jwks.json".into(), JWKS.into()),
            ]),
        };
        self.broker
            .apply_config(&Principal::System("bootstrap"), bundle)
            .await
            .unwrap();
    }

    /// A person as a caller (not stored: the broker trusts the caller it is given).
    pub fn person(name: &str, role: Role, teams: &[&str]) -> Caller {
        Caller::User(User {
            name: UserName::parse(name).unwrap(),
            role,
            teams: teams
                .iter()
                .map(|t| kairos_domain::TeamName::parse(*t).unwrap())
                .collect(),
            targets: Vec::new(),
            created_at: Timestamp::from_millis(0),
        })
    }
}

pub fn workload(name: &str) -> Caller {
    Caller::Workload {
        identity: IdentityName::parse(name).unwrap(),
    }
}

pub fn ask(entitlement: &str, ttl: &str) -> NewRequest {
    NewRequest {
        identity: None,
        entitlement: EntitlementName::parse(entitlement).unwrap(),
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

/// The catalog of [`config`] with a Redis target `cache` (the machine's Redis at
/// 127.0.0.1:6379, accounts prefixed `prefix`) and the entitlement `cache/read`, granted at
/// once; the admin URL's file is written into `dir`. Returns the TOML and the policy.
pub fn redis_catalog(dir: &std::path::Path, prefix: &str) -> (String, String) {
    let admin = dir.join("redis-admin");
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
        "{POLICY}\n@id(\"cache\") permit (principal, action, resource == Kairos::Entitlement::\"cache/read\");\n"
    );
    (toml, policies)
}

/// Something a [`Hooked`] connector runs at its hook.
pub type Hook =
    Box<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync>;

/// A target's real connector with hooks: what another task would do meanwhile runs right
/// after the accounts are listed, or right before a batch is revoked.
pub struct Hooked {
    pub inner: Arc<dyn Connector>,
    pub after_list_managed: Option<Hook>,
    pub before_revoke_many: Option<Hook>,
}

impl std::fmt::Debug for Hooked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooked")
            .field("inner", &self.inner)
            .finish()
    }
}

#[async_trait::async_trait]
impl Connector for Hooked {
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
        if let Some(hook) = &self.before_revoke_many {
            hook().await;
        }
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
        let listed = self.inner.list_managed().await?;
        if let Some(hook) = &self.after_list_managed {
            hook().await;
        }
        Ok(listed)
    }
}
