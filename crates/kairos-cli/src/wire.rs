//! What the CLI reads from the server's JSON: just the fields it prints.
//!
//! These mirror `kairos-api`'s views without depending on that crate. They are lenient
//! (unknown fields are ignored, optional ones default) so that a newer server still works;
//! `--json` prints the server's own JSON untouched.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Task {
    pub kind: String,
    #[serde(rename = "ref")]
    pub reference: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Decision {
    pub outcome: String,
    pub approvals_required: u32,
    pub policies: Vec<String>,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Approval {
    pub approver: String,
    pub at: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Request {
    pub id: String,
    pub state: String,
    pub identity: String,
    pub entitlement: String,
    pub ttl: String,
    pub task: Task,
    pub requester: String,
    pub decision: Decision,
    pub approvals: Vec<Approval>,
    pub denial: Option<Approval>,
    pub created_at: String,
    pub pending_until: Option<String>,
    pub grant_id: Option<String>,
    /// A renewal's grant.
    pub renews: Option<String>,
}

impl Request {
    /// Approvals still missing before the request is granted.
    pub fn approvals_needed(&self) -> usize {
        usize::try_from(self.decision.approvals_required)
            .unwrap_or(usize::MAX)
            .saturating_sub(self.approvals.len())
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Receipt {
    pub reason: String,
    pub ended_by: String,
    pub ended_at: String,
    pub revoked_at: Option<String>,
    pub verified_at: Option<String>,
    pub method: Option<String>,
    pub evidence: Option<String>,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// A token grant's SET receivers, when it has any (read alone).
    pub set_receivers: Option<Vec<SetReceipt>>,
}

/// One SET receiver's part in a receipt.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SetReceipt {
    pub receiver: String,
    pub delivery: String,
    pub jti: String,
    pub state: String,
    pub acknowledged_at: Option<String>,
    pub wait_until: String,
    pub attempts: u32,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Grant {
    pub id: String,
    pub state: String,
    pub request_id: String,
    pub identity: String,
    pub entitlement: String,
    pub target: String,
    pub audience: String,
    pub scopes: Vec<String>,
    pub task: Task,
    pub issued_at: String,
    pub expires_at: String,
    pub max_expires_at: String,
    pub receipt: Option<Receipt>,
    /// Present (possibly null) when the grant was read alone.
    pub usage: Option<Usage>,
}

/// How a grant has been used.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Usage {
    pub first_used_at: String,
    pub last_used_at: String,
    pub uses: u64,
    pub last_source: Option<String>,
    pub last_client: Option<String>,
}

/// The credential: an access token, or a database account (its password is shown once).
/// Its `Debug` never shows the token or the password.
#[derive(Clone, Default, Deserialize)]
#[serde(default)]
pub struct Credential {
    pub kind: String,
    pub access_token: String,
    pub token_type: String,
    pub expires_at: String,
    pub host: String,
    pub port: Option<u16>,
    pub database: Option<String>,
    pub username: String,
    pub password: String,
    /// `ssh`: the OpenSSH user certificate (one line).
    pub ssh_certificate: String,
    pub ssh_serial: Option<u64>,
}

impl Credential {
    /// The secret to hand to a script: the token, or for an account a connection URL
    /// (`postgres://user:password@host:port/db`, `mysql://…`, `redis://…`,
    /// `amqp://user:password@host:port/%2F` with the virtual host).
    pub fn secret_line(&self) -> String {
        if self.kind == "token" || self.kind.is_empty() {
            return self.access_token.clone();
        }
        if self.kind == "ssh" {
            return self.ssh_certificate.clone();
        }
        let scheme = match self.kind.as_str() {
            "mariadb" => "mysql",
            "rabbitmq" => "amqp",
            other => other,
        };
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        let db = self
            .database
            .as_deref()
            .map(|d| match self.kind.as_str() {
                // An AMQP URI's path is the virtual host, percent-encoded (`/` is `%2F`).
                "rabbitmq" => format!("/{}", d.replace('%', "%25").replace('/', "%2F")),
                _ => format!("/{d}"),
            })
            .unwrap_or_default();
        format!(
            "{scheme}://{}:{}@{}{port}{db}",
            self.username, self.password, self.host
        )
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("kind", &self.kind)
            .field("access_token", &"[REDACTED]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RequestResponse {
    pub request: Request,
    pub grant: Option<Grant>,
    pub credential: Option<Credential>,
    pub ttl_capped: bool,
    /// A break-glass grant's after-action review.
    pub review_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RenewResponse {
    pub grant: Grant,
    /// Present when the grant was renewed at once.
    pub credential: Option<Credential>,
    /// Present when the renewal waits for approvals.
    pub request: Option<Request>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GrantList {
    pub grants: Vec<Grant>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RequestList {
    pub requests: Vec<Request>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ApplyResponse {
    pub created: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub dry_run: bool,
    pub grants_ending: Vec<OrphanedGrant>,
    pub warnings: Vec<String>,
}

/// A live grant an applied configuration ends (or would end), with its end reason.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct OrphanedGrant {
    pub grant_id: String,
    pub identity: String,
    pub entitlement: String,
    pub target: String,
    /// `identity_removed`, `team_removed`, `target_removed`, `entitlement_removed`,
    /// `policy_changed` (`config_removed` from servers before these).
    pub reason: String,
    pub because: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EntitlementList {
    pub entitlements: Vec<Entitlement>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Entitlement {
    pub name: String,
    pub target: String,
    pub tier: String,
    pub max_ttl: String,
    pub privileges_kind: String,
    pub privileges: Vec<String>,
    pub approval_team: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AuditRecord {
    pub seq: i64,
    pub at: String,
    pub kind: String,
    pub actor: String,
    pub identity: Option<String>,
    pub request_id: Option<String>,
    pub grant_id: Option<String>,
    pub task_ref: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AuditList {
    pub records: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Verify {
    pub ok: bool,
    pub records: u64,
    pub broken_at: Option<i64>,
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CheckpointVerdict {
    pub index: usize,
    pub seq: Option<i64>,
    pub kid: Option<String>,
    pub status: String,
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CheckpointsVerify {
    pub ok: bool,
    pub records: u64,
    pub broken_at: Option<i64>,
    pub problem: Option<String>,
    pub checkpoints: Vec<CheckpointVerdict>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Keys {
    pub current_kid: String,
    pub jwks: Jwks,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Jwk {
    pub kid: String,
    pub alg: Option<String>,
    pub kty: String,
    pub crv: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct User {
    pub name: String,
    pub role: String,
    pub teams: Vec<String>,
    /// A resource server's token targets.
    pub targets: Vec<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct UserList {
    pub users: Vec<User>,
}

/// A new person and their API token, shown once. `Debug` never shows the token.
#[derive(Clone, Default, Deserialize)]
#[serde(default)]
pub struct NewUser {
    pub user: User,
    pub token: String,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("user", &self.user)
            .field("token", &"[REDACTED]")
            .finish()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Revoked {
    pub revoked_tokens: u64,
}

/// RFC 7662: `active` plus whatever claims the server reports.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Introspection {
    pub active: bool,
    #[serde(flatten)]
    pub claims: BTreeMap<String, serde_json::Value>,
}

/// RFC 8693 success. `Debug` never shows the token.
#[derive(Clone, Default, Deserialize)]
#[serde(default)]
pub struct TokenExchange {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    pub scope: String,
    pub grant_id: String,
    pub request_id: String,
}

impl std::fmt::Debug for TokenExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenExchange")
            .field("access_token", &"[REDACTED]")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field("grant_id", &self.grant_id)
            .field("request_id", &self.request_id)
            .finish()
    }
}

/// RFC 6749 §5.2 error, as the OAuth endpoints answer (also `authorization_pending`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct OAuthError {
    pub error: String,
    pub error_description: String,
    pub request_id: Option<String>,
    pub policies: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Health {
    pub status: String,
    pub store: String,
    pub version: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_credentials_become_connection_urls() {
        let c: Credential = serde_json::from_value(serde_json::json!({
            "kind": "postgres", "host": "db", "port": 5432, "database": "orders",
            "username": "kairos_x", "password": "pw", "expires_at": "t"
        }))
        .unwrap();
        assert_eq!(c.secret_line(), "postgres://kairos_x:pw@db:5432/orders");
        let r: Credential = serde_json::from_value(serde_json::json!({
            "kind": "redis", "host": "cache", "port": 6379, "username": "kairos_y", "password": "p2", "expires_at": "t"
        }))
        .unwrap();
        assert_eq!(r.secret_line(), "redis://kairos_y:p2@cache:6379");
        let q: Credential = serde_json::from_value(serde_json::json!({
            "kind": "rabbitmq", "host": "mq", "port": 5672, "database": "/",
            "username": "kairos_z", "password": "p3", "expires_at": "t"
        }))
        .unwrap();
        assert_eq!(q.secret_line(), "amqp://kairos_z:p3@mq:5672/%2F");
        let t: Credential =
            serde_json::from_value(serde_json::json!({"kind": "token", "access_token": "eyJ"}))
                .unwrap();
        assert_eq!(t.secret_line(), "eyJ");
        assert!(!format!("{c:?}").contains("pw"));
    }
}
