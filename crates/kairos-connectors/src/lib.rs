//! Connectors: how Kairos creates a dynamic account for a grant in a downstream system,
//! removes it (live sessions included), verifies that it is gone, and lists the accounts
//! it manages so the reconciler can find residue.
//!
//! The implementations live in their own crates (`kairos-connector-postgres`,
//! `kairos-connector-mariadb`, `kairos-connector-redis`, `kairos-connector-rabbitmq`); this
//! crate is the contract.
//!
//! Invariants: connectors receive an already-decided account request and never see policy
//! or grants; every operation is idempotent (provisioning an existing account converges it,
//! revoking an absent one succeeds), so a crash at any point is safe to repeat; passwords
//! and admin URLs are `SecretString`s and never appear in errors or logs; account names
//! enter SQL only as quoted identifiers, and privilege templates run one statement each.

mod account;

use async_trait::async_trait;
use secrecy::SecretString;

pub use account::{AccountName, AccountNameError};
use kairos_domain::Timestamp;

/// What to create: an account with a password, a native expiry and the entitlement's
/// privileges.
pub struct AccountRequest<'a> {
    pub account: &'a AccountName,
    pub password: &'a SecretString,
    /// The grant's end; connectors with a native expiry set it (the second line of defence).
    pub valid_until: Timestamp,
    pub privileges: &'a Privileges,
}

/// The entitlement's privileges, as declared in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Privileges {
    /// SQL statements, one per entry, with `{{role}}` where the account goes (PostgreSQL,
    /// MariaDB). The account is substituted as a quoted identifier (PostgreSQL) or quoted
    /// account (`'name'@'%'`, MariaDB).
    Sql(Vec<String>),
    /// Redis ACL rules for the user, e.g. `~sessions:*`, `+get`, `+@read`.
    RedisAcl(Vec<String>),
    /// RabbitMQ permissions of the user on one virtual host.
    RabbitMq(RabbitMqPermissions),
}

/// A RabbitMQ user's permissions on one virtual host: three regular expressions over
/// resource names (queues, exchanges), as RabbitMQ's `set_permissions` takes them, and
/// optionally topic permissions on one topic exchange (regular expressions over routing
/// keys). `^$` matches nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RabbitMqPermissions {
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
    pub topic: Option<RabbitMqTopic>,
}

/// Topic permissions on one topic exchange: which routing keys the user may publish with
/// (`write`) and bind with (`read`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RabbitMqTopic {
    pub exchange: String,
    pub write: String,
    pub read: String,
}

/// Where the workload connects with its new account (the password is added by the broker,
/// shown once, and never stored in plain text).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConnectionInfo {
    pub host: String,
    pub port: u16,
    /// The database (PostgreSQL, MariaDB) or virtual host (RabbitMQ); None for Redis.
    pub database: Option<String>,
    pub username: String,
}

/// What a connector can and cannot do about access that should end.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Revocability {
    /// Revocation takes effect for new logins.
    pub revocable: bool,
    /// Live sessions opened with the account are terminated at revoke.
    pub kills_sessions: bool,
    /// What the downstream system does by itself at the grant's end if Kairos is down
    /// (e.g. PostgreSQL `VALID UNTIL`); None when it has nothing.
    pub native_expiry: Option<String>,
}

/// What a revocation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revoked {
    /// Live sessions terminated.
    pub sessions_killed: u64,
    /// False when the account was already gone (a repeated or residual revocation).
    pub account_existed: bool,
}

/// The evidence that access is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// e.g. `pg_roles+login`.
    pub method: String,
    /// What was observed, in a sentence.
    pub evidence: String,
}

/// A live session of a managed account, as the target lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub account: AccountName,
    /// The client's address; None when the target does not say (a local socket, a host
    /// name the server resolved).
    pub client_addr: Option<std::net::IpAddr>,
}

/// Which server a target reaches, as facts the server tells about itself (e.g. PostgreSQL's
/// `system_identifier`, Redis's `run_id`). Accounts are server-wide (PostgreSQL roles,
/// MariaDB users, Redis ACL users), so two targets that reach one server share them even
/// when their admin URLs differ. Two identities name the same server when they share a
/// fact: a connector whose admin may read only some facts still matches one that reads all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerIdentity {
    facts: std::collections::BTreeSet<String>,
}

impl ServerIdentity {
    /// An identity from facts that each, alone, single out one server (one running server at
    /// least), e.g. `postgres system_identifier 7715874339604256922`. Empty facts are dropped.
    pub fn new(facts: impl IntoIterator<Item = String>) -> Self {
        Self {
            facts: facts.into_iter().filter(|f| !f.is_empty()).collect(),
        }
    }

    /// True when both identities share a fact: the same server.
    pub fn same_server(&self, other: &Self) -> bool {
        !self.facts.is_disjoint(&other.facts)
    }
}

impl std::fmt::Display for ServerIdentity {
    /// The facts, `; `-separated (no secret is among them).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, fact) in self.facts.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            f.write_str(fact)?;
        }
        Ok(())
    }
}

/// What a target's server says about itself when Kairos asks (at start, at apply, and before
/// the reconciler first removes anything there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFacts {
    pub identity: ServerIdentity,
    /// Conditions an operator should fix, in a sentence each (e.g. MariaDB's event
    /// scheduler is off, so its native expiry will not run). They do not stop anything.
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The target cannot be reached (down, refused, timed out): retry later.
    #[error("target {target} is unreachable: {reason}")]
    Unreachable { target: String, reason: String },
    /// The admin credentials were refused or lack a privilege.
    #[error("target {target} refused Kairos's admin connection: {reason}")]
    AdminRefused { target: String, reason: String },
    /// A privilege template or ACL rule is not acceptable (caught before anything is created).
    #[error("entitlement privileges rejected: {0}")]
    BadPrivileges(String),
    /// The target answered with an error.
    #[error("target {target} failed: {reason}")]
    Failed { target: String, reason: String },
    /// Verification found access still present.
    #[error("access is not gone: {0}")]
    StillPresent(String),
}

/// One kind of downstream system.
#[async_trait]
pub trait Connector: Send + Sync + std::fmt::Debug {
    /// `postgres`, `mariadb`, `redis`.
    fn kind(&self) -> &'static str;

    fn revocability(&self) -> Revocability;

    /// The prefix every account this connector creates carries (default `kairos_`).
    fn managed_prefix(&self) -> &str;

    /// Creates (or converges) the account. On error, nothing of the account is left behind
    /// where the connector can help it (it drops what it created), and the error says why.
    async fn provision(&self, req: &AccountRequest<'_>) -> Result<ConnectionInfo, ConnectorError>;

    /// Moves the account's native expiry (renewal). A no-op where there is none.
    async fn renew(
        &self,
        account: &AccountName,
        valid_until: Timestamp,
    ) -> Result<(), ConnectorError>;

    /// Terminates the account's live sessions and removes it. Succeeds if already gone.
    async fn revoke(&self, account: &AccountName) -> Result<Revoked, ConnectorError>;

    /// Checks that the account is gone: absent from the catalog and, when the password is
    /// known, a login with it is refused. `Err(StillPresent)` if not.
    async fn verify_gone(
        &self,
        account: &AccountName,
        password: Option<&SecretString>,
    ) -> Result<Verification, ConnectorError>;

    /// Which server the admin URL reaches, and what should be fixed there. Asks the server
    /// (an admin connection); `Unreachable` when it cannot be reached.
    async fn server_facts(&self) -> Result<ServerFacts, ConnectorError>;

    /// Every account with the managed prefix that exists now.
    async fn list_managed(&self) -> Result<Vec<AccountName>, ConnectorError>;

    /// The live sessions of accounts with the managed prefix, with their client
    /// addresses (what the reconciler records as use of the accounts' grants). The default
    /// lists none: a kind that cannot tell is not an error.
    async fn list_sessions(&self) -> Result<Vec<Session>, ConnectorError> {
        Ok(Vec::new())
    }

    /// Revokes several accounts together (ends that fell due together); one result per
    /// account, in order. Connectors that can batch (one statement for many roles)
    /// override it; the default revokes one after another.
    async fn revoke_many(&self, accounts: &[AccountName]) -> Vec<Result<Revoked, ConnectorError>> {
        let mut out = Vec::with_capacity(accounts.len());
        for account in accounts {
            out.push(self.revoke(account).await);
        }
        out
    }

    /// Verifies several accounts are gone; one result per account, in order. Connectors
    /// that batch may check the catalog once for all and probe logins for a sample; each
    /// [`Verification`] says which checks its account had. The default verifies one after
    /// another, each fully.
    async fn verify_gone_many(
        &self,
        accounts: &[(AccountName, Option<SecretString>)],
    ) -> Vec<Result<Verification, ConnectorError>> {
        let mut out = Vec::with_capacity(accounts.len());
        for (account, password) in accounts {
            out.push(self.verify_gone(account, password.as_ref()).await);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::ServerIdentity;

    fn id(facts: &[&str]) -> ServerIdentity {
        ServerIdentity::new(facts.iter().map(|f| (*f).to_owned()))
    }

    #[test]
    fn one_shared_fact_is_one_server() {
        assert!(id(&["sys 1", "started 5"]).same_server(&id(&["started 5"])));
        assert!(!id(&["sys 1"]).same_server(&id(&["sys 2"])));
        // No facts match nothing, not even each other.
        assert!(!id(&[""]).same_server(&id(&[])));
        assert_eq!(id(&["b", "a"]).to_string(), "a; b");
    }
}
