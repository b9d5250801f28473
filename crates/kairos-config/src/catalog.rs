//! The validated catalog and its parts.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use kairos_domain::{
    EntitlementName, ExceptionName, IdentityName, Period, SourceRange, TargetName, TeamName,
    Timestamp, Ttl, UserName,
};
use kairos_policy::{EntitlementFacts, IdentityFacts, PolicySet, Tier};

use crate::{ConfigBundle, ConfigErrors};

/// Name of a trusted token issuer (`ci`, `k8s-prod`). Same rules as the domain's names:
/// lowercase letters, digits, `-`, `_`, `.`, at most 128 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct IssuerName(String);

impl IssuerName {
    pub fn parse(value: impl Into<String>) -> Result<Self, String> {
        let value = value.into();
        if value.is_empty() {
            return Err("issuer name must not be empty".into());
        }
        if value.len() > 128 {
            return Err(format!(
                "issuer name is {} characters long; the limit is 128",
                value.len()
            ));
        }
        if let Some(c) = value.chars().find(|c| {
            !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
        }) {
            return Err(format!(
                "issuer name {value:?} contains {c:?}; use lowercase letters, digits, '-', '_' and '.'"
            ));
        }
        Ok(Self(value))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IssuerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a notification channel's address is: written in the catalog (a generic webhook's
/// URL), or — when it is a secret, as a Slack incoming-webhook URL is — in an environment
/// variable or a file of the server.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UrlRef {
    Url(String),
    Env(String),
    File(String),
}

/// A `[[notify]]` channel: its routing rule, its address and (generic webhooks) where its
/// signing secret is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyChannel {
    pub route: kairos_notify::Route,
    pub url: UrlRef,
    pub secret: Option<SecretRef>,
}

/// How a `[[set_receiver]]` gets its Security Event Tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetDelivery {
    /// Kairos POSTs each SET to `endpoint_url` (RFC 8935), with the `Authorization` header
    /// read from `auth_header` when one is configured.
    Push {
        endpoint_url: String,
        auth_header: Option<SecretRef>,
    },
    /// The receiver fetches them from `POST /v1/ssf/poll/{name}` (RFC 8936),
    /// authenticated as its resource server.
    Poll,
}

/// A `[[set_receiver]]`: a resource server that verifies Kairos tokens offline and is told
/// of every end of a token grant on its targets by a signed SET (RFC 8417).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetReceiver {
    pub name: String,
    pub delivery: SetDelivery,
    /// The user (role `resource-server`) whose targets this receiver covers; a poll
    /// receiver authenticates as that user.
    pub resource_server: kairos_domain::UserName,
    /// The SETs' `aud`.
    pub audience: String,
    /// How long a grant's receipt waits for this receiver's acknowledgement (default 5m).
    pub ack_timeout: Ttl,
}

/// `[console]`: how people sign in to the web console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSettings {
    /// Single sign-on through an OpenID Connect provider, when configured.
    pub oidc: Option<OidcSettings>,
    /// Whether the sign-in page offers the API-token form (default true).
    pub api_token_sign_in: bool,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            oidc: None,
            api_token_sign_in: true,
        }
    }
}

/// The console's OpenID Connect client (authorization code flow with PKCE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSettings {
    /// The IdP's issuer identifier (no trailing slash); discovery is read under it.
    pub issuer: String,
    /// Shown on the sign-in button ("Sign in with …").
    pub name: String,
    pub client_id: String,
    /// Where the client secret is (never the secret itself).
    pub client_secret: SecretRef,
    /// Always includes `openid`.
    pub scopes: Vec<String>,
    /// The ID-token claim that names the Kairos user (default `preferred_username`).
    pub user_claim: String,
    /// The ID-token claim that lists the person's IdP groups; when set, a session acts
    /// only with the user's Kairos teams the IdP also asserts.
    pub groups_claim: Option<String>,
    /// Kairos team → IdP group, for teams whose group has another name.
    pub team_groups: BTreeMap<TeamName, String>,
}

/// Where a secret comes from: never the catalog itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretRef {
    /// The name of an environment variable of the server process.
    Env(String),
    /// A file path, as written (absolute paths are best: the server resolves relative
    /// ones against its working directory).
    File(String),
}

impl SecretRef {
    /// Where the secret comes from, for messages and logs: `env ORDERS_DB_ADMIN_URL` or
    /// `file /run/secrets/orders-db-admin-url`. Never the secret itself: resolving the
    /// reference is the server's job.
    pub fn describe(&self) -> String {
        match self {
            Self::Env(var) => format!("env {var}"),
            Self::File(path) => format!("file {path}"),
        }
    }
}

/// Where the server keeps its state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreLocation {
    /// `sqlite://…` or `postgres://…` without a password.
    Url(String),
    /// An environment variable holding the URL (use it when the URL has a password).
    Env(String),
}

/// The `[server]` table: read only when the server starts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub store: StoreLocation,
    /// Pending requests expire after this long.
    pub pending_timeout: Ttl,
    /// The key that seals secrets at rest; `None` leaves the choice to the server.
    pub master_key: Option<SecretRef>,
    /// Where signed audit checkpoints are appended (relative paths: to the server's
    /// working directory); `None`: the log only.
    pub audit_checkpoint_file: Option<String>,
    /// How often the audit head is signed when it has moved.
    pub audit_checkpoint_interval: Ttl,
    /// The header (lowercase, e.g. `x-forwarded-for`) that carries the client's address
    /// through proxies; read only from a peer inside `trusted_proxies`.
    pub trusted_proxy_header: Option<String>,
    /// The proxies allowed to set `trusted_proxy_header`.
    pub trusted_proxies: Vec<SourceRange>,
    /// Native TLS on the listener (`tls_cert_file` and `tls_key_file`); `None`: plain HTTP
    /// (e.g. behind a proxy that terminates TLS).
    pub tls: Option<ServerTls>,
}

/// `[server] tls_*`: the listener's certificate and key files (PEM; relative paths: to the
/// server's working directory) and whether clients show certificates. The files are read
/// when the server starts, and again when they change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServerTls {
    /// `tls_cert_file`: the certificate, then any intermediates (a chain).
    pub cert_file: String,
    /// `tls_key_file`: the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// `tls_client_ca_file` and `tls_client_auth`.
    pub client_certificates: ClientCertificates,
}

/// Whether the listener asks clients for a certificate (`tls_client_auth`), and which CAs
/// it trusts to have signed one (`tls_client_ca_file`, a PEM bundle).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum ClientCertificates {
    /// No certificate is asked for (the default).
    NotRequested,
    /// Asked for; a client without one is served, a client with one that does not verify
    /// is refused at the handshake.
    Optional { ca_file: String },
    /// A client without a verified certificate is refused at the handshake.
    Required { ca_file: String },
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8740)),
            store: StoreLocation::Url("sqlite://.kairos/kairos.db".into()),
            pending_timeout: const_ttl(3600),
            master_key: None,
            audit_checkpoint_file: None,
            audit_checkpoint_interval: const_ttl(300),
            trusted_proxy_header: None,
            trusted_proxies: Vec::new(),
            tls: None,
        }
    }
}

/// What happens to an identity whose owner team has no active owner, once the orphan
/// grace has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrphanAction {
    /// Suspend it (its grants end, its requests are refused).
    Suspend,
    /// Leave it working, flagged and alerted.
    Flag,
}

/// The `[governance]` table: the lifecycle rules' settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GovernanceSettings {
    /// What happens to an orphaned identity after `orphan_grace`.
    pub orphan_action: OrphanAction,
    /// How long an identity may be orphaned before `orphan_action` applies.
    pub orphan_grace: Period,
    /// How long a break-glass grant's after-action review may stay open before it is
    /// overdue (and escalates); default 72h.
    pub review_due: Period,
    /// Shared identity: more distinct source addresses than this within `shared_window`
    /// (default 3).
    pub shared_max_sources: u64,
    /// Shared identity: more concurrent task references among live grants than this
    /// (default 5).
    pub shared_max_tasks: u64,
    /// The shared-identity detector's window (default 1h).
    pub shared_window: Period,
    /// Dormant identity: no request for this long (default 30d).
    pub dormant_after: Period,
    /// Held past use: an active grant unused for this share of its TTL (default 0.5).
    pub held_past_use_share: kairos_governance::usage::Share,
}

impl Default for GovernanceSettings {
    fn default() -> Self {
        Self {
            orphan_action: OrphanAction::Flag,
            orphan_grace: const_period(24 * 3600),
            review_due: const_period(72 * 3600),
            shared_max_sources: 3,
            shared_max_tasks: 5,
            shared_window: const_period(3600),
            dormant_after: const_period(30 * 86_400),
            held_past_use_share: kairos_governance::usage::Share::DEFAULT,
        }
    }
}

/// A period from a constant number of seconds.
pub(crate) fn const_period(secs: u64) -> Period {
    // PANIC SAFETY: only called with constants between 1s and ten years, which `Period`
    // accepts.
    #[allow(clippy::expect_used)]
    Period::from_secs(secs).expect("constant period within bounds")
}

/// A TTL from a constant number of seconds.
pub(crate) fn const_ttl(secs: u64) -> Ttl {
    // PANIC SAFETY: only called with constants between 1s and 31d, which `Ttl` accepts
    // (the domain has no `const` constructor to make this a compile-time fact).
    #[allow(clippy::expect_used)]
    Ttl::from_secs(secs).expect("constant TTL within bounds")
}

/// The longest TTL each risk tier allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TierCaps {
    pub low: Ttl,
    pub medium: Ttl,
    pub high: Ttl,
    pub critical: Ttl,
}

impl TierCaps {
    pub fn cap(&self, tier: Tier) -> Ttl {
        match tier {
            Tier::Low => self.low,
            Tier::Medium => self.medium,
            Tier::High => self.high,
            Tier::Critical => self.critical,
        }
    }
    pub(crate) fn set(&mut self, tier: Tier, ttl: Ttl) {
        match tier {
            Tier::Low => self.low = ttl,
            Tier::Medium => self.medium = ttl,
            Tier::High => self.high = ttl,
            Tier::Critical => self.critical = ttl,
        }
    }
}

impl Default for TierCaps {
    /// low 8h, medium 1h, high 30m, critical 15m.
    fn default() -> Self {
        Self {
            low: const_ttl(8 * 3600),
            medium: const_ttl(3600),
            high: const_ttl(1800),
            critical: const_ttl(900),
        }
    }
}

/// Where an issuer's verification keys come from.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JwksRef {
    /// Read from `jwks_file` when the catalog was loaded; holds public keys only.
    Inline {
        file: String,
        jwks: serde_json::Value,
    },
    /// Fetched by the server from this `https://` URL.
    Url(String),
}

/// A trusted issuer of workload tokens (CI OIDC, Kubernetes, SPIFFE).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Issuer {
    pub name: IssuerName,
    /// The `iss` claim its tokens carry.
    pub issuer: String,
    /// The `aud` claim its tokens must carry.
    pub audience: String,
    pub jwks: JwksRef,
    /// The longest lifetime Kairos accepts in one of its tokens (`exp` − `iat`, or
    /// `exp` − now without `iat`); default 24 h.
    pub max_token_age: Ttl,
    /// `spiffe_trust_domain`: the issuer of this trust domain's JWT-SVIDs. Its tokens are
    /// accepted without `iss` (then `issuer` may be empty), their `sub` must be a SPIFFE
    /// ID in the trust domain, and its keys may be the trust domain's bundle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spiffe_trust_domain: Option<String>,
}

/// A SPIFFE trust domain (`[[trust_domain]]`): its name and the bundle (PEM certificates
/// or the SPIFFE bundle format) that verifies its X.509-SVIDs and JWT-SVIDs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TrustDomain {
    /// `prod.example.org`.
    pub name: String,
    /// The bundle file, relative to the catalog file.
    pub bundle_file: String,
    /// Its contents, checked at load by `kairos_crypto::spiffe::TrustBundle::parse`.
    #[serde(skip)]
    pub bundle: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Team {
    pub name: TeamName,
    /// Accountable for the team's identities; they re-attest them.
    pub owners: Vec<UserName>,
    /// May approve requests that need this team's approval.
    pub approvers: Vec<UserName>,
    /// How often the team's identities and exceptions are recertified, unless they say
    /// otherwise; `None`: `[governance] recertify_every`.
    pub recertify_every: Option<Period>,
}

/// A registered non-human identity.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Identity {
    pub name: IdentityName,
    pub owner: TeamName,
    /// Free-form: `ci-job`, `service`, `bot`, `agent`, ...
    pub kind: String,
    /// The issuer of its platform token, when it has a platform-token mapping.
    pub issuer: Option<IssuerName>,
    /// The token `sub` claim that maps to this identity (with `issuer`).
    pub subject: Option<String>,
    /// Its SPIFFE ID (`spiffe://<trust domain>/<path>`), when it authenticates with a
    /// SPIFFE SVID (an X.509-SVID over mTLS, or a JWT-SVID of its trust domain's issuer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spiffe_id: Option<String>,
    /// The address blocks it is expected to be used from (requests, database sessions);
    /// empty: anywhere. A use from outside raises an `unexpected_source` alert.
    pub allowed_sources: Vec<SourceRange>,
    /// How often an owner must re-attest this identity; `None`: its team's interval, else
    /// `[governance] recertify_every`.
    pub recertify_every: Option<Period>,
}

/// How a target consumes credentials.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TargetKind {
    /// Kairos signs short-lived tokens for this audience.
    Token { audience: String },
    /// Kairos creates a short-lived PostgreSQL role per grant.
    Postgres(DbTarget),
    /// Kairos creates a short-lived MariaDB account per grant.
    #[serde(rename = "mariadb")]
    MariaDb(DbTarget),
    /// Kairos creates a short-lived Redis ACL user per grant.
    Redis(DbTarget),
    /// Kairos creates a short-lived RabbitMQ user per grant (management HTTP API).
    #[serde(rename = "rabbitmq")]
    RabbitMq(DbTarget),
    /// Kairos signs a short-lived OpenSSH user certificate per grant with the target's
    /// own CA key, and lists ended grants' serials in the target's KRL.
    Ssh(SshTarget),
}

/// An `ssh` target: hosts that trust Kairos's CA key for this target
/// (`TrustedUserCAKeys`) and read its revocation list (`RevokedKeys`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SshTarget {
    /// `krl_file`: an absolute path the server rewrites (temp file + rename) whenever the
    /// KRL changes, for an sshd on the same machine or a file shipper.
    pub krl_file: Option<String>,
}

impl TargetKind {
    /// `token`, `postgres`, `mariadb`, `redis` or `rabbitmq`, as written in the catalog.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Token { .. } => "token",
            Self::Postgres(_) => "postgres",
            Self::MariaDb(_) => "mariadb",
            Self::Redis(_) => "redis",
            Self::RabbitMq(_) => "rabbitmq",
            Self::Ssh(_) => "ssh",
        }
    }

    /// The SSH settings, for `ssh` targets.
    pub fn ssh(&self) -> Option<&SshTarget> {
        match self {
            Self::Ssh(ssh) => Some(ssh),
            _ => None,
        }
    }

    /// The account settings, for the kinds where Kairos manages accounts.
    pub fn db(&self) -> Option<&DbTarget> {
        match self {
            Self::Token { .. } | Self::Ssh(_) => None,
            Self::Postgres(db) | Self::MariaDb(db) | Self::Redis(db) | Self::RabbitMq(db) => {
                Some(db)
            }
        }
    }
}

/// How Kairos reaches a system in which it creates accounts (PostgreSQL, MariaDB, Redis).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DbTarget {
    /// Where the admin connection URL comes from (`admin_url_env` or `admin_url_file`);
    /// the server reads it when it connects.
    pub admin_url: SecretRef,
    /// Every account Kairos creates here starts with it, and every account that starts
    /// with it is Kairos's to reconcile (and drop). `[a-z][a-z0-9_]{0,19}`, default
    /// `kairos_`. No other target of the same kind and admin URL has an overlapping one.
    pub managed_prefix: String,
    /// The host workloads connect to; `None` means the admin URL's host.
    pub connect_host: Option<String>,
    /// How often the reconciler compares the accounts it finds with the active grants.
    pub reconcile_interval: Ttl,
    /// MariaDB only: the host part of the accounts (`'name'@'host'`); `Some("%")` by
    /// default there, `None` for the other kinds.
    pub account_host: Option<String>,
    /// RabbitMQ only: the AMQP port workloads connect to (`amqp_port`); `Some(5672)` by
    /// default there, `None` for the other kinds. The host is `connect_host`, else the
    /// admin URL's.
    pub amqp_port: Option<u16>,
    /// PostgreSQL only: the PBKDF2 iteration count of the accounts' SCRAM-SHA-256
    /// verifiers (`scram_iterations`); `Some(4096)` by default there, `None` for the other
    /// kinds. Kairos's passwords are random, so iterations add no security; fewer make
    /// provisioning cheaper for Kairos and PostgreSQL, but some clients refuse to log in
    /// below 4,096.
    pub scram_iterations: Option<u32>,
}

impl DbTarget {
    /// The prefix used when a target does not set `managed_prefix`.
    pub const DEFAULT_MANAGED_PREFIX: &'static str = "kairos_";
    /// The MariaDB account host used when a target does not set `account_host`.
    pub const DEFAULT_ACCOUNT_HOST: &'static str = "%";
    /// The RabbitMQ AMQP port used when a target does not set `amqp_port`.
    pub const DEFAULT_AMQP_PORT: u16 = 5672;
    /// The SCRAM iteration count used when a PostgreSQL target does not set
    /// `scram_iterations` (PostgreSQL's own default, which every client accepts).
    pub const DEFAULT_SCRAM_ITERATIONS: u32 = 4096;
    /// The largest `scram_iterations` accepted: clients cap what they will derive at a
    /// login (node-postgres at 100,000).
    pub const MAX_SCRAM_ITERATIONS: u32 = 100_000;
    /// The reconcile interval used when a target does not set `reconcile_interval`.
    pub fn default_reconcile_interval() -> Ttl {
        const_ttl(30)
    }
}

/// A downstream system that honours Kairos credentials.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Target {
    pub name: TargetName,
    pub kind: TargetKind,
    pub owner: Option<TeamName>,
}

impl Target {
    /// `token`, `postgres`, `mariadb` or `redis`.
    pub fn kind_name(&self) -> &'static str {
        self.kind.as_str()
    }

    /// The audience of the tokens Kairos issues for this target, if it takes tokens.
    pub fn audience(&self) -> Option<&str> {
        match &self.kind {
            TargetKind::Token { audience } => Some(audience),
            TargetKind::Postgres(_)
            | TargetKind::MariaDb(_)
            | TargetKind::Redis(_)
            | TargetKind::RabbitMq(_) => None,
            TargetKind::Ssh(_) => None,
        }
    }

    /// The account settings, if Kairos creates accounts in this target.
    pub fn db(&self) -> Option<&DbTarget> {
        self.kind.db()
    }
}

/// The recertification keys of the `[governance]` table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecertSettings {
    /// How often identities and exceptions are recertified unless their team or they
    /// say otherwise; default 90 d.
    pub recertify_every: Period,
    /// How long before a recertification's due date its owners' review task opens;
    /// default 14 d.
    pub recert_notice: Period,
}

impl Default for RecertSettings {
    fn default() -> Self {
        Self {
            recertify_every: const_period(90 * 86_400),
            recert_notice: const_period(14 * 86_400),
        }
    }
}

/// A standing exception: a static secret that cannot be removed yet, registered with an
/// owner, a rotation interval, compensating controls and a mandatory end date. The
/// catalog holds a *reference* to where the secret lives, never the secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Exception {
    pub name: ExceptionName,
    /// The identity that uses the static secret.
    pub identity: IdentityName,
    /// The team accountable for it (its owners recertify it).
    pub owner: TeamName,
    /// The system that accepts the secret, free-form (`billing-db (legacy)`).
    pub system: String,
    /// Where the secret lives, `scheme:location` (`vault:kv/legacy/billing`).
    pub secret_ref: String,
    /// Why the exception exists.
    pub reason: String,
    /// How often the secret must be rotated.
    pub rotate_every: Period,
    /// When the exception ends (it is a migration state, not a permanent one).
    pub ends: Timestamp,
    /// Compensating control: the networks (CIDRs) the secret may be used from.
    pub allowed_sources: Vec<String>,
    /// Compensating control: how the secret's scope is restricted.
    pub scope_note: Option<String>,
    /// How often it is recertified; `None`: its team's interval, else the default.
    pub recertify_every: Option<Period>,
}

/// What happens when a request asks for a longer TTL than the entitlement allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OverCap {
    /// Refuse the request, saying what the cap is.
    Refuse,
    /// Grant the cap instead.
    Cap,
}

/// A named piece of access on a target: `orders-api/read`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entitlement {
    pub name: EntitlementName,
    pub target: TargetName,
    pub tier: Tier,
    /// As written; see [`Catalog::effective_cap`] for the cap that applies.
    pub max_ttl: Ttl,
    /// What a grant of it allows; its kind matches the target's.
    pub privileges: Privileges,
    /// Token scopes: the same list as `Privileges::Scopes` for token targets, empty for
    /// the other kinds. Kept for the token issuer; prefer [`Entitlement::privileges`].
    pub scopes: Vec<String>,
    pub over_cap: OverCap,
    /// Who approves; `None` means the requesting identity's owner team.
    pub approval_team: Option<TeamName>,
    /// Emergency access (`break_glass = true`): a request must be for an `incident` with a
    /// reason, policy sees `context.break_glass`, every grant raises an alert at once and
    /// opens an after-action review. Its effective cap is at most
    /// [`Entitlement::BREAK_GLASS_MAX_CAP_SECS`].
    pub break_glass: bool,
    /// `require_binding = "dpop"`: a request without a valid DPoP proof is refused, so
    /// every token of it is sender-constrained.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_binding: Option<Binding>,
}

/// How a token must be bound to its holder (`require_binding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Binding {
    /// A DPoP proof key (RFC 9449): the token carries `cnf.jkt`.
    Dpop,
    /// A client certificate over mTLS (RFC 8705): the token carries `cnf.x5t#S256`.
    Mtls,
    /// Either of them.
    Any,
}

impl Binding {
    /// As written in the catalog.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dpop => "dpop",
            Self::Mtls => "mtls",
            Self::Any => "any",
        }
    }

    /// Whether a token bound to a DPoP key (`dpop`) and/or a client certificate
    /// (`mtls`) satisfies this requirement.
    pub fn satisfied(self, dpop: bool, mtls: bool) -> bool {
        match self {
            Self::Dpop => dpop,
            Self::Mtls => mtls,
            Self::Any => dpop || mtls,
        }
    }
}

/// The `[dpop]` table: how DPoP proofs (RFC 9449) are checked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DpopSettings {
    /// Proofs must carry a server nonce (`nonce = true`); a proof without one is refused
    /// with `use_dpop_nonce` and a `DPoP-Nonce` header to retry with.
    pub nonce: bool,
    /// How far a proof's `iat` may be from the server's clock, either way
    /// (`proof_max_age`, default 60s, at most 10m).
    pub proof_max_age: Ttl,
}

impl Default for DpopSettings {
    fn default() -> Self {
        Self {
            nonce: false,
            proof_max_age: const_ttl(60),
        }
    }
}

impl Entitlement {
    /// The longest effective cap a break-glass entitlement may have: one hour.
    pub const BREAK_GLASS_MAX_CAP_SECS: u64 = 3600;
}

/// What a grant of an entitlement allows, in the target's own terms.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Privileges {
    /// Token targets (`scopes`): the scopes of the issued token.
    Scopes(Vec<String>),
    /// PostgreSQL and MariaDB targets (`grants`): SQL statements, one per entry, each with
    /// `{{role}}` where the account goes (substituted quoted by the connector). No entry
    /// contains `;` or any other `{{…}}` placeholder.
    Sql(Vec<String>),
    /// Redis targets (`acl`): ACL rules for the account, one token each (`~sessions:*`,
    /// `+get`, `+@read`). None changes how the account authenticates (`nopass`, `>pw`,
    /// `on`, `reset`, ... are refused).
    RedisAcl(Vec<String>),
    /// RabbitMQ targets (`[entitlement.rabbitmq]`): the user's permissions on one virtual
    /// host; every pattern is a valid regular expression.
    #[serde(rename = "rabbitmq")]
    RabbitMq(RabbitMqPermissions),
    /// SSH targets (`principals`, `force_command`, `source_address`, `extensions`): what
    /// the grant's certificate allows.
    Ssh(SshPrivileges),
}

/// A RabbitMQ user's permissions on one virtual host (`[entitlement.rabbitmq]`):
/// regular expressions over queue and exchange names for configure, write and read, and
/// optionally topic permissions (over routing keys) on one topic exchange.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RabbitMqPermissions {
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<RabbitMqTopic>,
}

/// `topic = { exchange, write, read }` of `[entitlement.rabbitmq]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RabbitMqTopic {
    pub exchange: String,
    pub write: String,
    pub read: String,
}

/// What an SSH certificate of an entitlement allows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SshPrivileges {
    /// The user names it may log in as (at least one).
    pub principals: Vec<String>,
    /// Critical option `force-command`: the only command the certificate may run.
    pub force_command: Option<String>,
    /// Critical option `source-address`: the CIDRs it may be used from; empty: anywhere.
    pub source_address: Vec<String>,
    /// Extensions (`permit-pty`, …); `kairos_ssh::DEFAULT_EXTENSIONS` (a terminal only)
    /// when the entitlement does not say.
    pub extensions: Vec<String>,
}

impl Privileges {
    /// The catalog key they were written under: `scopes`, `grants`, `acl` or `rabbitmq`.
    pub fn key(&self) -> &'static str {
        match self {
            Self::Scopes(_) => "scopes",
            Self::Sql(_) => "grants",
            Self::RedisAcl(_) => "acl",
            Self::RabbitMq(_) => "rabbitmq",
            Self::Ssh(_) => "principals",
        }
    }

    /// The entries, whatever their kind; RabbitMQ permissions as `key=value` lines
    /// (`vhost=/`, `configure=^$`, …, `topic amq.topic write=…`).
    pub fn entries(&self) -> Vec<String> {
        match self {
            Self::Scopes(v) | Self::Sql(v) | Self::RedisAcl(v) => v.clone(),
            Self::RabbitMq(p) => {
                let mut out = vec![
                    format!("vhost={}", p.vhost),
                    format!("configure={}", p.configure),
                    format!("write={}", p.write),
                    format!("read={}", p.read),
                ];
                if let Some(t) = &p.topic {
                    out.push(format!("topic {} write={}", t.exchange, t.write));
                    out.push(format!("topic {} read={}", t.exchange, t.read));
                }
                out
            }
            Self::Ssh(ssh) => ssh.principals.clone(),
        }
    }
}

/// The whole validated catalog. Built only by [`Catalog::from_bundle`] (all or nothing)
/// or [`Catalog::empty`].
#[derive(Debug, Clone)]
pub struct Catalog {
    pub(crate) server: Option<ServerSettings>,
    pub(crate) tiers: TierCaps,
    pub(crate) governance: GovernanceSettings,
    pub(crate) issuers: BTreeMap<IssuerName, Issuer>,
    pub(crate) teams: BTreeMap<TeamName, Team>,
    pub(crate) identities: BTreeMap<IdentityName, Identity>,
    pub(crate) by_subject: BTreeMap<(IssuerName, String), IdentityName>,
    /// Identities by SPIFFE ID.
    pub(crate) by_spiffe_id: BTreeMap<String, IdentityName>,
    /// `[[trust_domain]]`s by name.
    pub(crate) trust_domains: BTreeMap<String, TrustDomain>,
    /// `[tiers.require_binding]`: the binding each tier's tokens need.
    pub(crate) tier_bindings: BTreeMap<Tier, Binding>,
    pub(crate) targets: BTreeMap<TargetName, Target>,
    pub(crate) entitlements: BTreeMap<EntitlementName, Entitlement>,
    pub(crate) policies: PolicySet,
    pub(crate) recert: RecertSettings,
    pub(crate) exceptions: BTreeMap<ExceptionName, Exception>,
    /// Where each exception's `ends` was written (file, line, key path), for the
    /// apply-time check that no end date has passed. Kept apart so that moving a block is
    /// not a change.
    pub(crate) exception_ends_at: BTreeMap<ExceptionName, (String, u32, String)>,
    /// `[[notify]]` channels, in the order written.
    pub(crate) notify: Vec<NotifyChannel>,
    /// `[[set_receiver]]`s, in the order written.
    pub(crate) set_receivers: Vec<SetReceiver>,
    /// `[console]`: how people sign in to the web console.
    pub(crate) console: ConsoleSettings,
    /// `[dpop]`: how DPoP proofs are checked.
    pub(crate) dpop: DpopSettings,
}

impl Catalog {
    /// Parses and validates a bundle, reporting every problem at once.
    pub fn from_bundle(bundle: &ConfigBundle) -> Result<Catalog, ConfigErrors> {
        crate::load::load(bundle)
    }

    /// Nothing registered, default tier caps, and no policies: every request is denied.
    pub fn empty() -> Catalog {
        Catalog {
            server: None,
            tiers: TierCaps::default(),
            governance: GovernanceSettings::default(),
            issuers: BTreeMap::new(),
            teams: BTreeMap::new(),
            identities: BTreeMap::new(),
            by_subject: BTreeMap::new(),
            by_spiffe_id: BTreeMap::new(),
            trust_domains: BTreeMap::new(),
            tier_bindings: BTreeMap::new(),
            targets: BTreeMap::new(),
            entitlements: BTreeMap::new(),
            policies: PolicySet::empty(),
            recert: RecertSettings::default(),
            exceptions: BTreeMap::new(),
            exception_ends_at: BTreeMap::new(),
            notify: Vec::new(),
            set_receivers: Vec::new(),
            console: ConsoleSettings::default(),
            dpop: DpopSettings::default(),
        }
    }

    /// The `[server]` table, if the file has one.
    /// How people sign in to the web console (`[console]`).
    pub fn console(&self) -> &ConsoleSettings {
        &self.console
    }

    /// The notification channels (`[[notify]]`), in the order written.
    pub fn notify_channels(&self) -> &[NotifyChannel] {
        &self.notify
    }

    /// The SET receivers (`[[set_receiver]]`), in the order written.
    pub fn set_receivers(&self) -> &[SetReceiver] {
        &self.set_receivers
    }
    pub fn server(&self) -> Option<&ServerSettings> {
        self.server.as_ref()
    }
    pub fn tier_caps(&self) -> &TierCaps {
        &self.tiers
    }
    /// The `[dpop]` table (defaults when absent).
    pub fn dpop(&self) -> &DpopSettings {
        &self.dpop
    }
    /// The `[governance]` table (defaults when absent).
    pub fn governance(&self) -> &GovernanceSettings {
        &self.governance
    }
    pub fn issuers(&self) -> impl Iterator<Item = &Issuer> {
        self.issuers.values()
    }
    pub fn issuer(&self, name: &IssuerName) -> Option<&Issuer> {
        self.issuers.get(name)
    }
    /// The issuer whose tokens carry this `iss` claim.
    pub fn issuer_by_url(&self, iss: &str) -> Option<&Issuer> {
        self.issuers.values().find(|i| i.issuer == iss)
    }
    pub fn teams(&self) -> impl Iterator<Item = &Team> {
        self.teams.values()
    }
    pub fn team(&self, name: &TeamName) -> Option<&Team> {
        self.teams.get(name)
    }
    pub fn identities(&self) -> impl Iterator<Item = &Identity> {
        self.identities.values()
    }
    pub fn identity(&self, name: &IdentityName) -> Option<&Identity> {
        self.identities.get(name)
    }
    /// The identity a verified token from `issuer` with this `sub` claim stands for.
    pub fn identity_by_subject(&self, issuer: &IssuerName, subject: &str) -> Option<&Identity> {
        self.by_subject
            .get(&(issuer.clone(), subject.to_owned()))
            .and_then(|name| self.identities.get(name))
    }
    /// The identity whose `spiffe_id` this is.
    pub fn identity_by_spiffe_id(&self, spiffe_id: &str) -> Option<&Identity> {
        self.by_spiffe_id
            .get(spiffe_id)
            .and_then(|name| self.identities.get(name))
    }
    /// The `[[trust_domain]]`s.
    pub fn trust_domains(&self) -> impl Iterator<Item = &TrustDomain> {
        self.trust_domains.values()
    }
    /// The bindings an entitlement's tokens need: its own `require_binding`, and its
    /// tier's (`[tiers.require_binding]`), each with where it was set.
    pub fn binding_requirements(&self, entitlement: &Entitlement) -> Vec<(Binding, String)> {
        let mut out = Vec::new();
        if let Some(b) = entitlement.require_binding {
            out.push((b, format!("entitlement {}", entitlement.name)));
        }
        if let Some(b) = self.tier_bindings.get(&entitlement.tier) {
            out.push((*b, format!("the {} tier", entitlement.tier)));
        }
        out
    }
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.targets.values()
    }
    pub fn target(&self, name: &TargetName) -> Option<&Target> {
        self.targets.get(name)
    }
    pub fn entitlements(&self) -> impl Iterator<Item = &Entitlement> {
        self.entitlements.values()
    }
    pub fn entitlement(&self, name: &EntitlementName) -> Option<&Entitlement> {
        self.entitlements.get(name)
    }
    /// The longest TTL a grant of `entitlement` may have: the smaller of its `max_ttl`
    /// and its tier's cap.
    pub fn effective_cap(&self, entitlement: &Entitlement) -> Ttl {
        entitlement.max_ttl.min(self.tiers.cap(entitlement.tier))
    }
    /// The team whose approvers decide pending requests of `identity` for `entitlement`.
    pub fn approval_team<'a>(
        &'a self,
        entitlement: &'a Entitlement,
        identity: &'a Identity,
    ) -> &'a TeamName {
        entitlement
            .approval_team
            .as_ref()
            .unwrap_or(&identity.owner)
    }
    pub fn policies(&self) -> &PolicySet {
        &self.policies
    }
    /// The recertification keys of `[governance]` (defaults when it has none).
    pub fn recert_settings(&self) -> &RecertSettings {
        &self.recert
    }
    pub fn exceptions(&self) -> impl Iterator<Item = &Exception> {
        self.exceptions.values()
    }
    pub fn exception(&self, name: &ExceptionName) -> Option<&Exception> {
        self.exceptions.get(name)
    }
    /// How often `identity` is recertified: its own interval, else its team's, else
    /// `[governance] recertify_every`.
    pub fn identity_recert_interval(&self, identity: &Identity) -> Period {
        identity
            .recertify_every
            .or_else(|| self.team(&identity.owner).and_then(|t| t.recertify_every))
            .unwrap_or(self.recert.recertify_every)
    }
    /// How often `exception` is recertified: its own interval, else its owner team's,
    /// else `[governance] recertify_every`.
    pub fn exception_recert_interval(&self, exception: &Exception) -> Period {
        exception
            .recertify_every
            .or_else(|| self.team(&exception.owner).and_then(|t| t.recertify_every))
            .unwrap_or(self.recert.recertify_every)
    }
    /// The exceptions whose end date is at or before `now`, each as an error naming the
    /// file, line and key where the date is written: a configuration is not applied with
    /// an exception that has already ended (remove it, or extend it with a reason).
    pub fn exceptions_ended_by(&self, now: Timestamp) -> Result<(), ConfigErrors> {
        let errors: Vec<crate::ConfigError> = self
            .exceptions
            .values()
            .filter(|e| e.ends <= now)
            .map(|e| {
                let (file, line, key) = self
                    .exception_ends_at
                    .get(&e.name)
                    .cloned()
                    .unwrap_or_default();
                crate::ConfigError {
                    file,
                    line: (line > 0).then_some(line),
                    column: None,
                    key: (!key.is_empty()).then_some(key),
                    message: format!(
                        "exception {} ended at {} (it is in the past); a standing exception is a migration state with a deadline: remove it once the static secret is gone, or move `ends` to a later date",
                        e.name,
                        e.ends.to_rfc3339()
                    ),
                }
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors::new(errors))
        }
    }
    /// What policy may know about `identity`.
    pub fn identity_facts(&self, identity: &Identity) -> IdentityFacts {
        IdentityFacts {
            name: identity.name.clone(),
            kind: identity.kind.clone(),
            owner: identity.owner.clone(),
            // The trust domain vouches for an identity that has only a SPIFFE ID.
            issuer: match (&identity.issuer, &identity.spiffe_id) {
                (Some(issuer), _) => issuer.to_string(),
                (None, Some(id)) => id
                    .strip_prefix("spiffe://")
                    .and_then(|rest| rest.split('/').next())
                    .unwrap_or_default()
                    .to_owned(),
                (None, None) => String::new(),
            },
        }
    }
    /// What policy may know about `entitlement` (`max_ttl` is the effective cap).
    pub fn entitlement_facts(&self, entitlement: &Entitlement) -> EntitlementFacts {
        EntitlementFacts {
            name: entitlement.name.clone(),
            tier: entitlement.tier,
            max_ttl: self.effective_cap(entitlement),
        }
    }

    /// What applying `new` over `old` would create, change and remove, as
    /// `"<kind> <name>"` entries (`identity nightly-backup`, `policy allow-ci-read`).
    pub fn diff(old: &Catalog, new: &Catalog) -> ConfigDiff {
        let mut diff = ConfigDiff::default();
        diff.compare("issuer", &old.issuers, &new.issuers);
        diff.compare("trust domain", &old.trust_domains, &new.trust_domains);
        if old.tier_bindings != new.tier_bindings {
            diff.changed.push("tier bindings".into());
        }
        diff.compare("team", &old.teams, &new.teams);
        diff.compare("identity", &old.identities, &new.identities);
        diff.compare("target", &old.targets, &new.targets);
        diff.compare("entitlement", &old.entitlements, &new.entitlements);
        diff.compare("exception", &old.exceptions, &new.exceptions);
        if old.recert != new.recert {
            diff.changed.push("recertification settings".into());
        }
        let texts = |c: &Catalog| -> BTreeMap<String, String> {
            c.policies
                .policies()
                .map(|p| (p.id.clone(), p.text.clone()))
                .collect()
        };
        diff.compare("policy", &texts(old), &texts(new));
        let channels = |c: &Catalog| -> BTreeMap<String, NotifyChannel> {
            c.notify
                .iter()
                .map(|n| (n.route.channel.clone(), n.clone()))
                .collect()
        };
        diff.compare("notify channel", &channels(old), &channels(new));
        let receivers = |c: &Catalog| -> BTreeMap<String, SetReceiver> {
            c.set_receivers
                .iter()
                .map(|r| (r.name.clone(), r.clone()))
                .collect()
        };
        diff.compare("set receiver", &receivers(old), &receivers(new));
        if old.tiers != new.tiers {
            diff.changed.push("tier caps".into());
        }
        if old.governance != new.governance {
            diff.changed.push("governance settings".into());
        }
        if old.console != new.console {
            diff.changed.push("console settings".into());
        }
        match (&old.server, &new.server) {
            (None, Some(_)) => diff.created.push("server settings".into()),
            (Some(_), None) => diff.removed.push("server settings".into()),
            (Some(a), Some(b)) if a != b => diff.changed.push("server settings".into()),
            _ => {}
        }
        diff
    }
}

/// The difference between two catalogs.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConfigDiff {
    pub created: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

impl ConfigDiff {
    pub fn is_empty(&self) -> bool {
        self.created.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }

    fn compare<K: Ord + fmt::Display, V: PartialEq>(
        &mut self,
        kind: &str,
        old: &BTreeMap<K, V>,
        new: &BTreeMap<K, V>,
    ) {
        for (name, value) in new {
            match old.get(name) {
                None => self.created.push(format!("{kind} {name}")),
                Some(before) if before != value => self.changed.push(format!("{kind} {name}")),
                Some(_) => {}
            }
        }
        for name in old.keys().filter(|name| !new.contains_key(*name)) {
            self.removed.push(format!("{kind} {name}"));
        }
    }
}

impl fmt::Display for ConfigDiff {
    /// One line per entry: `+ identity x`, `~ policy y`, `- target z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("no changes");
        }
        let lines = self
            .created
            .iter()
            .map(|e| ('+', e))
            .chain(self.changed.iter().map(|e| ('~', e)))
            .chain(self.removed.iter().map(|e| ('-', e)));
        for (i, (sign, entry)) in lines.enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{sign} {entry}")?;
        }
        Ok(())
    }
}
