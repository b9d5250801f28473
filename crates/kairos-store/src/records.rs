//! Rows that are not domain objects: filters, keys, users, config versions.

use kairos_domain::{
    EntitlementName, IdentityName, RequestState, TargetName, TaskRef, TeamName, Timestamp, UserName,
};

#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    pub state: Option<RequestState>,
    pub identity: Option<IdentityName>,
    pub limit: Option<u32>,
}

/// Grant state as filtered by: `active`, `revoking` (ending), `ended`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantStateFilter {
    /// Recorded, account not yet created (or interrupted).
    Provisioning,
    Active,
    Revoking,
    Ended,
}

#[derive(Debug, Clone, Default)]
pub struct GrantFilter {
    pub state: Option<GrantStateFilter>,
    pub identity: Option<IdentityName>,
    pub entitlement: Option<EntitlementName>,
    pub task_ref: Option<TaskRef>,
    pub target: Option<kairos_domain::TargetName>,
    /// The downstream account name (database targets).
    pub account: Option<String>,
    /// Only grants issued strictly before this time.
    pub issued_before: Option<Timestamp>,
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub identity: Option<String>,
    /// The grant's records, with those of the request that issued it and of its
    /// renewals that waited for approvals.
    pub grant_id: Option<String>,
    pub request_id: Option<String>,
    pub task_ref: Option<String>,
    /// Records at or after this time.
    pub since: Option<Timestamp>,
    /// Records before this time.
    pub until: Option<Timestamp>,
    /// Only records with a smaller sequence number: the next page of a newest-first
    /// listing (keyset pagination: pass the last `seq` seen).
    pub before_seq: Option<i64>,
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub active_grants: u64,
    pub revoking_grants: u64,
    pub pending_requests: u64,
}

/// A Kairos signing key as stored: the private half sealed with the master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub kid: String,
    /// `es256` or `eddsa`.
    pub alg: String,
    /// The PKCS#8 private key sealed with the master key (never plain).
    pub sealed_private: String,
    pub created_at: Timestamp,
    /// None while current; the time it leaves the JWKS once retired.
    pub retire_until: Option<Timestamp>,
}

/// A person's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including users, keys and config.
    Admin,
    /// Requests on behalf of identities, revokes, reads.
    Operator,
    /// Approves and denies requests of their teams, reads.
    Approver,
    /// Reads grants, requests and the audit log.
    Auditor,
    /// A resource server (not a person): introspects and revokes only the tokens whose
    /// audience is one of its targets (`User::targets`), and nothing else.
    #[serde(rename = "resource-server")]
    ResourceServer,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Self::Admin,
        Self::Operator,
        Self::Approver,
        Self::Auditor,
        Self::ResourceServer,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Operator => "operator",
            Self::Approver => "approver",
            Self::Auditor => "auditor",
            Self::ResourceServer => "resource-server",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: UserName,
    pub role: Role,
    pub teams: Vec<TeamName>,
    /// For a resource server: the token targets whose tokens it may introspect and revoke
    /// (a token's `aud`). Empty for people.
    pub targets: Vec<TargetName>,
    pub created_at: Timestamp,
}

/// A personal API token: only the hash of its secret is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    pub id: String,
    pub user: UserName,
    /// Hex SHA-256 of the token's secret part.
    pub secret_hash: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// What installing the bootstrap admin token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapOutcome {
    /// No enabled admin had a live token: the token was installed.
    Installed,
    /// This very token is already the bootstrap admin's live token: nothing changed.
    AlreadyInstalled,
    /// These admins have live tokens: nothing changed (the token is not reinstated).
    AdminExists { admins: Vec<UserName> },
    /// This secret was the bootstrap token once and was revoked at `at`: it stays
    /// revoked (a store left with no admin is recovered with a new secret).
    Revoked { at: Timestamp },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredConfig {
    pub version: i64,
    pub bundle_json: String,
    pub applied_at: Timestamp,
}

/// What a replica compares to learn, with one cheap read, whether another replica applied
/// a configuration or changed the signing keys (see [`crate::Store::catalog_stamp`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CatalogStamp {
    /// The latest configuration version (0: none saved yet).
    pub config_version: i64,
    /// How many signing keys are stored (a prune removes some).
    pub keys: i64,
    /// The newest key's creation time in ms (a rotation adds a newer one).
    pub newest_key_at: i64,
}

/// Whether the store can serve this process (see [`crate::Store::readiness`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreReadiness {
    /// Migrations this binary knows that the store has not applied (by version).
    pub pending_migrations: Vec<i64>,
}
