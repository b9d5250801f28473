//! Connectors: how Kairos creates a dynamic account for a grant in a downstream system,
//! removes it (live sessions included), verifies that it is gone, and lists the accounts
//! it manages so the reconciler can find residue.
//!
//! The implementations live in their own crates (`kairos-connector-postgres`,
//! `kairos-connector-mariadb`, `kairos-connector-redis`); this crate is the contract.
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
}

/// Where the workload connects with its new account (the password is added by the broker,
/// shown once, and never stored in plain text).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConnectionInfo {
    pub host: String,
    pub port: u16,
    /// The database (PostgreSQL, MariaDB); None for Redis.
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

    /// Every account with the managed prefix that exists now.
    async fn list_managed(&self) -> Result<Vec<AccountName>, ConnectorError>;

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
