//! Single sign-on: the console as an OpenID Connect relying party (authorization code flow
//! with PKCE, RFC 7636 S256), configured by `[console]` in the catalog.
//!
//! ```text
//! GET /ui/sso/start     discovery (cached 5 min) ──▶ 303 to the IdP's authorization_endpoint
//!                       + cookie kairos_sso (10 min, HttpOnly, SameSite=Lax, Path=/ui)
//! GET /ui/sso/callback  state == derived state (constant time), cookie cleared
//!                       ──▶ code exchange at token_endpoint (client_secret_basic, code_verifier)
//!                       ──▶ ID token: signature against the IdP's JWKS, iss, aud ∋ client_id,
//!                           azp, exp, iat, nonce (kairos-crypto's verifier does the JWS part)
//!                       ──▶ claims → an existing Kairos person (never a resource server)
//!                       ──▶ console session (token_id None) + ConsoleSignedIn {method: "oidc"}
//!                       ──▶ 303 to the inbox
//! ```
//!
//! **Nothing is stored for a sign-in in progress.** The `kairos_sso` cookie carries a
//! random 256-bit secret and the time the flow started; `state`, `nonce` and the PKCE
//! `code_verifier` are HMAC-SHA256 values of that secret (each with its own label and the
//! start time), so any replica can finish a flow any replica started, and a tampered start
//! time changes every derived value.
//!
//! **The IdP names a person; it never makes one, and it can only narrow.** `user_claim`
//! (default `preferred_username`) must name an existing Kairos user who is a person (not a
//! resource server): there is no provisioning. Roles and teams stay Kairos's. With
//! `groups_claim` configured, the session keeps only those of the user's Kairos teams whose
//! IdP group (`[console.team_groups]`, else the team's own name) the ID token asserts: the
//! IdP can take a team away for this session, never add one. The narrowed team list is
//! part of the session id in the cookie (`<secret>.<teams>`), whose SHA-256 is the stored
//! key, so it cannot be altered without losing the session; a single sign-on session that
//! lacks it while a `groups_claim` is configured is refused. Approving for a team the
//! session does not hold is refused by the console before the broker is asked, even for
//! approvers listed by name in the team.
//!
//! Every refusal is the sign-in page with a 4xx (502 when the IdP cannot be reached or
//! answers nonsense) that says what happened without any token, code or secret; the log
//! gets the same reason, never a token.
//!
//! | path | method | who |
//! |---|---|---|
//! | `/ui/sso/start` | GET | anyone (starts a sign-in at the configured IdP; 404 without `oidc_issuer`) |
//! | `/ui/sso/callback` | GET | the browser that started the flow (its `kairos_sso` cookie); a session only for an existing Kairos person |

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kairos_config::{OidcSettings, SecretRef};
use kairos_crypto::workload::{IssuerTrust, JwksSource, WorkloadVerifier};
use kairos_domain::{TeamName, UserName};
use rand::RngCore as _;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tokio::sync::Mutex;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use kairos_domain::{AuditDraft, AuditKind, Principal};
use kairos_store::{ConsoleSession, Role};
use serde::Deserialize;

use crate::auth::ConsoleState;
use crate::session::CookieTransport;

/// The cookie that carries a sign-in in progress.
pub const FLOW_COOKIE: &str = "kairos_sso";
/// How long a sign-in may take at the IdP.
pub const FLOW_TTL: Duration = Duration::from_secs(600);
/// How long discovery (and the JWKS verifier built from it) is reused.
const DISCOVERY_TTL: Duration = Duration::from_secs(300);
/// Largest answer read from the IdP.
const MAX_IDP_BYTES: usize = 256 * 1024;
/// Clock skew allowed on `iat`.
const IAT_SKEW_SECS: i64 = 120;
/// The longest ID token accepted (`exp` − `iat`).
const MAX_ID_TOKEN_AGE: Duration = Duration::from_secs(24 * 3600);

// ---- pure parts: the flow secret and what is derived from it ---------------------------

/// HMAC-SHA256 (RFC 2104) with SHA-256's 64-byte block.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

/// The secret of one sign-in in progress and when it started (unix seconds).
pub struct FlowSecret {
    secret: [u8; 32],
    started: i64,
}

impl FlowSecret {
    pub fn new(now_secs: i64) -> Self {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        Self {
            secret,
            started: now_secs,
        }
    }

    /// The cookie value: `<secret, base64url>.<started>`.
    pub fn encode(&self) -> String {
        format!("{}.{}", URL_SAFE_NO_PAD.encode(self.secret), self.started)
    }

    pub fn parse(value: &str) -> Option<Self> {
        let (secret, started) = value.split_once('.')?;
        let bytes = URL_SAFE_NO_PAD.decode(secret).ok()?;
        Some(Self {
            secret: bytes.try_into().ok()?,
            started: started.parse().ok()?,
        })
    }

    fn derive(&self, label: &str) -> String {
        let message = format!("kairos-sso/{label}/{}", self.started);
        URL_SAFE_NO_PAD.encode(hmac_sha256(&self.secret, message.as_bytes()))
    }

    pub fn state(&self) -> String {
        self.derive("state")
    }
    pub fn nonce(&self) -> String {
        self.derive("nonce")
    }
    /// The PKCE `code_verifier`: 43 base64url characters (256 bits).
    pub fn verifier(&self) -> String {
        self.derive("pkce")
    }

    /// Whether the flow started within [`FLOW_TTL`] before `now_secs` (and not in the
    /// future).
    pub fn fresh(&self, now_secs: i64) -> bool {
        let age = now_secs.saturating_sub(self.started);
        (-60..=FLOW_TTL.as_secs().cast_signed()).contains(&age)
    }

    /// Whether `given` is this flow's `state`, in constant time.
    pub fn state_matches(&self, given: &str) -> bool {
        bool::from(self.state().as_bytes().ct_eq(given.as_bytes()))
    }
}

/// The S256 `code_challenge` of a verifier.
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// `Set-Cookie` for a sign-in in progress.
pub fn flow_cookie(value: &str, transport: CookieTransport) -> String {
    let secure = match transport {
        CookieTransport::Tls => "; Secure",
        CookieTransport::PlainHttp => "",
    };
    format!(
        "{FLOW_COOKIE}={value}; Path=/ui; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        FLOW_TTL.as_secs()
    )
}

/// `Set-Cookie` that removes the sign-in cookie.
pub fn clear_flow_cookie(transport: CookieTransport) -> String {
    let secure = match transport {
        CookieTransport::Tls => "; Secure",
        CookieTransport::PlainHttp => "",
    };
    format!("{FLOW_COOKIE}=; Path=/ui; HttpOnly; SameSite=Lax; Max-Age=0{secure}")
}

// ---- pure parts: ID-token claims -------------------------------------------------------

/// Why a sign-in was refused. `Display` is what the person reads (and the log gets):
/// never a token, code or secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("single sign-on is not configured on this server")]
    NotConfigured,
    #[error(
        "the identity provider did not sign you in ({0}); try again, or ask your administrator"
    )]
    IdpDenied(String),
    #[error("this sign-in did not start here or took longer than 10 minutes; start again")]
    NoFlow,
    #[error("the sign-in answer does not belong to the sign-in this browser started; start again")]
    BadState,
    #[error("the identity provider's answer has no authorization code; start again")]
    NoCode,
    #[error("the identity provider could not be reached or answered something unusable: {0}")]
    Unreachable(String),
    #[error("the identity provider refused to exchange the code ({0}); start again")]
    ExchangeRefused(String),
    #[error("the identity provider's ID token was not valid: {0}")]
    BadIdToken(String),
    #[error(
        "the identity provider did not say who you are: the ID token has no {0:?} claim naming your Kairos user"
    )]
    NoUserClaim(String),
    #[error("{0:?} is not a Kairos user; an administrator adds people with `kairos user add`")]
    UnknownUser(String),
    #[error("{0} is a resource server; the console is for people")]
    NotAPerson(String),
    #[error("the ID token's {0:?} claim is not a list of group names")]
    BadGroups(String),
    #[error(
        "you hold more teams than a console session can record ({0} characters of team names); ask your administrator to map fewer IdP groups"
    )]
    TooManyTeams(usize),
    /// The detail goes to the log only.
    #[error(
        "single sign-on is misconfigured on this server (its client secret could not be read); the cause is in the server's log"
    )]
    Secret(String),
}

impl Refusal {
    /// The answer's status: 502 when the IdP failed us, 403 for a person Kairos does not
    /// let in, 400 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            Self::Unreachable(_) | Self::ExchangeRefused(_) => 502,
            Self::Secret(_) => 500,
            Self::NotConfigured => 404,
            Self::IdpDenied(_) | Self::UnknownUser(_) | Self::NotAPerson(_) => 403,
            _ => 400,
        }
    }
}

fn short(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(80)
        .collect::<String>()
}

/// Checks what the signature check leaves to the relying party (OIDC Core 3.1.3.7): the
/// `nonce` is this flow's, `azp` (if present) is this client, `aud` (if several) holds
/// this client, and `iat` is not in the future.
pub fn check_id_claims(
    claims: &Value,
    client_id: &str,
    nonce: &str,
    now_secs: i64,
) -> Result<(), Refusal> {
    let bad = |m: &str| Err(Refusal::BadIdToken(m.to_owned()));
    match claims.get("nonce").and_then(Value::as_str) {
        Some(n) if bool::from(n.as_bytes().ct_eq(nonce.as_bytes())) => {}
        Some(_) => return bad("its nonce is not this sign-in's"),
        None => return bad("it has no nonce"),
    }
    let auds = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => return bad("it has no audience"),
    };
    if !auds.contains(&client_id) {
        return bad("it was issued to another client");
    }
    match claims.get("azp") {
        None => {}
        Some(Value::String(azp)) if azp == client_id => {}
        Some(_) => return bad("its authorized party (azp) is another client"),
    }
    match claims.get("iat").and_then(Value::as_i64) {
        Some(iat) if iat <= now_secs + IAT_SKEW_SECS => Ok(()),
        Some(_) => bad("it was issued in the future"),
        None => bad("it has no issue time (iat)"),
    }
}

/// The Kairos user an ID token names through `user_claim`.
pub fn user_from_claims(claims: &Value, user_claim: &str) -> Result<UserName, Refusal> {
    let value = claims
        .get(user_claim)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Refusal::NoUserClaim(user_claim.to_owned()))?;
    UserName::parse(value.to_owned()).map_err(|_| Refusal::UnknownUser(short(value)))
}

/// The IdP groups an ID token asserts in `groups_claim`: a list of strings (a single
/// string counts as a list of one; a missing claim as none).
pub fn groups_from_claims(claims: &Value, groups_claim: &str) -> Result<Vec<String>, Refusal> {
    match claims.get(groups_claim) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(g)) => Ok(vec![g.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|g| {
                g.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| Refusal::BadGroups(groups_claim.to_owned()))
            })
            .collect(),
        Some(_) => Err(Refusal::BadGroups(groups_claim.to_owned())),
    }
}

/// The teams a session acts with: those of the user's Kairos teams whose IdP group
/// (`team_groups`, else the team's name) is among `asserted`. Never a team the user does
/// not have.
pub fn narrow(
    user_teams: &[TeamName],
    asserted: &[String],
    team_groups: &BTreeMap<TeamName, String>,
) -> Vec<TeamName> {
    user_teams
        .iter()
        .filter(|team| {
            let group = team_groups.get(*team).map_or(team.as_str(), String::as_str);
            asserted.iter().any(|g| g == group)
        })
        .cloned()
        .collect()
}

/// The session-id suffix that records a narrowing: `.` + base64url of the team names
/// joined by `,` (team names never hold a comma).
pub fn encode_teams(teams: &[TeamName]) -> String {
    let joined = teams
        .iter()
        .map(TeamName::as_str)
        .collect::<Vec<_>>()
        .join(",");
    format!(".{}", URL_SAFE_NO_PAD.encode(joined))
}

/// The narrowing a session id records: None when it records none, Some(teams) else
/// (possibly empty). Only meaningful once the id's hash was found in the store.
pub fn decode_teams(session_id: &str) -> Option<Vec<TeamName>> {
    let (_, encoded) = session_id.split_once('.')?;
    let joined = String::from_utf8(URL_SAFE_NO_PAD.decode(encoded).ok()?).ok()?;
    Some(
        joined
            .split(',')
            .filter(|s| !s.is_empty())
            .filter_map(|s| TeamName::parse(s.to_owned()).ok())
            .collect(),
    )
}

/// `https://…`, or `http://` to a loopback host (a development IdP).
fn endpoint_ok(url: &str) -> bool {
    let Ok(u) = url::Url::parse(url) else {
        return false;
    };
    match u.scheme() {
        "https" => u.host().is_some(),
        "http" => matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]")),
        _ => false,
    }
}

/// The authorization request's URL.
pub fn authorization_url(
    endpoint: &str,
    settings: &OidcSettings,
    redirect_uri: &str,
    flow: &FlowSecret,
) -> Result<String, Refusal> {
    let mut url = url::Url::parse(endpoint)
        .map_err(|_| Refusal::Unreachable("its authorization_endpoint is not a URL".into()))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &settings.client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", &settings.scopes.join(" "))
        .append_pair("state", &flow.state())
        .append_pair("nonce", &flow.nonce())
        .append_pair("code_challenge", &challenge(&flow.verifier()))
        .append_pair("code_challenge_method", "S256");
    Ok(url.into())
}

// ---- IO: discovery, the code exchange, the ID token's signature -------------------------

/// What discovery says (the parts used).
#[derive(Clone)]
pub struct Provider {
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    verifier: Arc<WorkloadVerifier>,
}

struct Cached {
    issuer: String,
    client_id: String,
    fetched_at: i64,
    provider: Provider,
}

/// The console's OpenID Connect client: an HTTP client and the cached discovery.
pub struct OidcClient {
    http: reqwest::Client,
    cache: Mutex<Option<Cached>>,
}

impl OidcClient {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            http,
            cache: Mutex::new(None),
        }
    }

    async fn get_json(&self, url: &str) -> Result<Value, Refusal> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| Refusal::Unreachable(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(Refusal::Unreachable(format!(
                "discovery answered HTTP {}",
                response.status().as_u16()
            )));
        }
        read_json(response).await
    }

    /// The provider for `settings`, from the cache when it is younger than 5 minutes.
    pub async fn provider(&self, settings: &OidcSettings, now: i64) -> Result<Provider, Refusal> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref()
            && c.issuer == settings.issuer
            && c.client_id == settings.client_id
            && now.saturating_sub(c.fetched_at) < DISCOVERY_TTL.as_secs().cast_signed()
        {
            return Ok(c.provider.clone());
        }
        let doc = self
            .get_json(&format!(
                "{}/.well-known/openid-configuration",
                settings.issuer
            ))
            .await?;
        let field = |name: &str| -> Result<String, Refusal> {
            doc.get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| {
                    Refusal::Unreachable(format!("its discovery document has no {name}"))
                })
        };
        let issuer = field("issuer")?;
        if issuer.trim_end_matches('/') != settings.issuer {
            return Err(Refusal::Unreachable(
                "its discovery document names another issuer than `oidc_issuer`".into(),
            ));
        }
        let authorization_endpoint = field("authorization_endpoint")?;
        let token_endpoint = field("token_endpoint")?;
        let jwks_uri = field("jwks_uri")?;
        for (name, url) in [
            ("authorization_endpoint", &authorization_endpoint),
            ("token_endpoint", &token_endpoint),
            ("jwks_uri", &jwks_uri),
        ] {
            if !endpoint_ok(url) {
                return Err(Refusal::Unreachable(format!(
                    "its {name} is not an https:// URL"
                )));
            }
        }
        let verifier = WorkloadVerifier::new(vec![IssuerTrust {
            name: "console single sign-on".into(),
            issuer,
            audience: settings.client_id.clone(),
            jwks: JwksSource::Url(jwks_uri),
            max_token_age: MAX_ID_TOKEN_AGE,
            spiffe_trust_domain: None,
        }])
        .map_err(|e| Refusal::Unreachable(e.to_string()))?;
        let provider = Provider {
            authorization_endpoint,
            token_endpoint,
            verifier: Arc::new(verifier),
        };
        *cache = Some(Cached {
            issuer: settings.issuer.clone(),
            client_id: settings.client_id.clone(),
            fetched_at: now,
            provider: provider.clone(),
        });
        Ok(provider)
    }

    /// Exchanges `code` at the token endpoint (client_secret_basic) and verifies the ID
    /// token; returns its claims.
    pub async fn exchange(
        &self,
        provider: &Provider,
        settings: &OidcSettings,
        redirect_uri: &str,
        code: &str,
        flow: &FlowSecret,
        now: i64,
    ) -> Result<Value, Refusal> {
        let secret = read_secret(&settings.client_secret)?;
        // RFC 6749 2.3.1: both parts form-urlencoded before Basic.
        let encode =
            |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let response = self
            .http
            .post(&provider.token_endpoint)
            .basic_auth(encode(&settings.client_id), Some(encode(&secret)))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", &flow.verifier()),
            ])
            .send()
            .await
            .map_err(|e| Refusal::Unreachable(e.without_url().to_string()))?;
        let status = response.status();
        let body = read_json(response).await?;
        if !status.is_success() {
            let error = body
                .get("error")
                .and_then(Value::as_str)
                .map_or_else(|| format!("HTTP {}", status.as_u16()), short);
            return Err(Refusal::ExchangeRefused(error));
        }
        let id_token = body
            .get("id_token")
            .and_then(Value::as_str)
            .ok_or_else(|| Refusal::BadIdToken("the token endpoint sent no id_token".into()))?;
        let verified = provider
            .verifier
            .verify(id_token, now)
            .await
            .map_err(|e| Refusal::BadIdToken(e.to_string()))?;
        check_id_claims(&verified.claims, &settings.client_id, &flow.nonce(), now)?;
        Ok(verified.claims)
    }
}

impl Default for OidcClient {
    fn default() -> Self {
        Self::new()
    }
}

async fn read_json(response: reqwest::Response) -> Result<Value, Refusal> {
    let bytes = response
        .bytes()
        .await
        .map_err(|e| Refusal::Unreachable(e.without_url().to_string()))?;
    if bytes.len() > MAX_IDP_BYTES {
        return Err(Refusal::Unreachable("its answer is too large".into()));
    }
    serde_json::from_slice(&bytes)
        .map_err(|_| Refusal::Unreachable("its answer is not JSON".into()))
}

fn read_secret(r: &SecretRef) -> Result<String, Refusal> {
    read_secret_value(r).inspect_err(|e| {
        if let Refusal::Secret(detail) = e {
            tracing::error!(problem = %detail, "the single sign-on client secret could not be read");
        }
    })
}

fn read_secret_value(r: &SecretRef) -> Result<String, Refusal> {
    let value = match r {
        SecretRef::Env(var) => std::env::var(var)
            .map_err(|_| Refusal::Secret(format!("environment variable {var} is not set")))?,
        SecretRef::File(path) => std::fs::read_to_string(path)
            .map_err(|e| Refusal::Secret(format!("file {path}: {}", e.kind())))?,
    };
    let value = value.trim().to_owned();
    if value.is_empty() {
        return Err(Refusal::Secret("it is empty".into()));
    }
    Ok(value)
}

// ---- the two routes ---------------------------------------------------------------------

/// The sign-in page with a refusal, logged without anything secret.
fn refuse(state: &ConsoleState, refusal: &Refusal) -> Response {
    tracing::warn!(reason = %refusal, "single sign-on refused");
    let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut page = crate::pages::sign_in_page(state, refusal.to_string(), status);
    page.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_str(&clear_flow_cookie(state.settings.transport))
            .unwrap_or(HeaderValue::from_static("kairos_sso=; Path=/ui; Max-Age=0")),
    );
    page
}

fn redirect_uri(state: &ConsoleState) -> String {
    format!(
        "{}/ui/sso/callback",
        state.broker.settings().issuer_url.trim_end_matches('/')
    )
}

fn now_secs(state: &ConsoleState) -> i64 {
    state.broker.now().as_millis() / 1000
}

/// `GET /ui/sso/start`: to the IdP, with a fresh flow cookie.
pub async fn start(State(state): State<ConsoleState>) -> Response {
    let catalog = state.broker.catalog();
    let Some(settings) = catalog.console().oidc.as_ref() else {
        return refuse(&state, &Refusal::NotConfigured);
    };
    let now = now_secs(&state);
    let provider = match state.oidc.provider(settings, now).await {
        Ok(p) => p,
        Err(r) => return refuse(&state, &r),
    };
    let flow = FlowSecret::new(now);
    let url = match authorization_url(
        &provider.authorization_endpoint,
        settings,
        &redirect_uri(&state),
        &flow,
    ) {
        Ok(u) => u,
        Err(r) => return refuse(&state, &r),
    };
    (
        [(
            header::SET_COOKIE,
            flow_cookie(&flow.encode(), state.settings.transport),
        )],
        Redirect::to(&url),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /ui/sso/callback`: the IdP's answer → a console session.
pub async fn callback(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    query: Result<Query<CallbackQuery>, QueryRejection>,
) -> Response {
    match finish(&state, &headers, query).await {
        Ok(response) => response,
        Err(r) => refuse(&state, &r),
    }
}

async fn finish(
    state: &ConsoleState,
    headers: &HeaderMap,
    query: Result<Query<CallbackQuery>, QueryRejection>,
) -> Result<Response, Refusal> {
    let catalog = state.broker.catalog();
    let settings = catalog
        .console()
        .oidc
        .as_ref()
        .ok_or(Refusal::NotConfigured)?;
    let Query(q) = query.map_err(|_| Refusal::NoCode)?;
    if let Some(error) = q.error {
        // Only an OAuth error code is shown (RFC 6749 4.1.2.1: a short ASCII word), never
        // free text someone put into a link.
        let code = Some(error)
            .filter(|e| e.len() <= 64 && e.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            .unwrap_or_else(|| "an unrecognised error".to_owned());
        return Err(Refusal::IdpDenied(code));
    }
    let now = now_secs(state);
    let flow = crate::session::named_cookie(headers, FLOW_COOKIE)
        .and_then(FlowSecret::parse)
        .filter(|f| f.fresh(now))
        .ok_or(Refusal::NoFlow)?;
    if !flow.state_matches(q.state.as_deref().unwrap_or_default()) {
        return Err(Refusal::BadState);
    }
    let code = q.code.filter(|c| !c.is_empty()).ok_or(Refusal::NoCode)?;
    let provider = state.oidc.provider(settings, now).await?;
    let claims = state
        .oidc
        .exchange(&provider, settings, &redirect_uri(state), &code, &flow, now)
        .await?;
    let name = user_from_claims(&claims, &settings.user_claim)?;
    let store = state.broker.store();
    let user = match store.get_user(&name).await {
        Ok(Some(u)) => u,
        Ok(None) => return Err(Refusal::UnknownUser(name.to_string())),
        Err(e) => {
            tracing::error!(error = %e, "reading a user for single sign-on failed");
            return Err(Refusal::Unreachable(
                "Kairos could not read its store; the cause is in the server's log".into(),
            ));
        }
    };
    if user.role == Role::ResourceServer {
        return Err(Refusal::NotAPerson(user.name.to_string()));
    }
    let narrowed = match &settings.groups_claim {
        Some(claim) => Some(narrow(
            &user.teams,
            &groups_from_claims(&claims, claim)?,
            &settings.team_groups,
        )),
        None => None,
    };
    let subject = claims.get("sub").and_then(Value::as_str).map(short);
    let mut id = crate::session::new_secret();
    if let Some(teams) = &narrowed {
        id.push_str(&encode_teams(teams));
    }
    // The cookie must come back whole (browsers and `session::cookie_named` cap it).
    if id.len() > crate::session::MAX_COOKIE_VALUE {
        return Err(Refusal::TooManyTeams(id.len()));
    }
    let at = state.broker.now();
    let stored = ConsoleSession {
        id_hash: crate::session::hash_id(&id),
        user: user.name.clone(),
        token_id: None,
        csrf_secret: crate::session::new_secret(),
        created_at: at,
        expires_at: at.plus(state.settings.limits.absolute),
        last_seen_at: at,
    };
    let audit = AuditDraft::new(
        AuditKind::ConsoleSignedIn,
        Principal::User(user.name.clone()),
    )
    .data(serde_json::json!({
        "method": "oidc",
        "issuer": settings.issuer,
        "subject": subject,
        "teams": narrowed,
    }));
    if let Err(e) = store.insert_session(&stored, vec![audit]).await {
        tracing::error!(error = %e, "recording a console session failed");
        return Err(Refusal::Unreachable(
            "Kairos could not record the session; the cause is in the server's log".into(),
        ));
    }
    tracing::info!(user = %user.name, "console sign-in through single sign-on");
    let mut response = (
        [(
            header::SET_COOKIE,
            crate::session::set_cookie(
                &id,
                state.settings.limits.absolute,
                state.settings.transport,
            ),
        )],
        Redirect::to("/ui/inbox"),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&clear_flow_cookie(state.settings.transport)) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn derived_values_are_distinct_stable_and_bound_to_the_start() {
        let flow = FlowSecret::new(1_000);
        let again = FlowSecret::parse(&flow.encode()).unwrap();
        assert_eq!(again.state(), flow.state());
        assert_eq!(again.nonce(), flow.nonce());
        assert_eq!(again.verifier(), flow.verifier());
        assert_eq!(flow.verifier().len(), 43, "RFC 7636: 43-128 characters");
        let all = [flow.state(), flow.nonce(), flow.verifier()];
        assert!(all[0] != all[1] && all[1] != all[2] && all[0] != all[2]);
        assert!(!flow.encode().contains(&flow.state()));
        // Moving the start time (to stretch the 10 minutes) changes every value.
        let (secret, _) = flow
            .encode()
            .split_once('.')
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .unwrap();
        let moved = FlowSecret::parse(&format!("{secret}.2000")).unwrap();
        assert_ne!(moved.state(), flow.state());
        assert!(!moved.state_matches(&flow.state()));
        assert!(flow.state_matches(&flow.state()));
        assert!(!flow.state_matches(""));
        assert_ne!(FlowSecret::new(1_000).state(), flow.state());
        for bad in [
            "",
            "x",
            "abc.12",
            &format!("{secret}.later"),
            secret.as_str(),
        ] {
            assert!(FlowSecret::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn flows_expire_after_ten_minutes() {
        let flow = FlowSecret::new(10_000);
        assert!(flow.fresh(10_000));
        assert!(flow.fresh(10_600));
        assert!(!flow.fresh(10_601));
        assert!(!flow.fresh(9_000), "a start in the future is refused");
    }

    #[test]
    fn challenge_is_rfc_7636_s256() {
        // RFC 7636 appendix B.
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn cookies_carry_their_flags() {
        let c = flow_cookie("v", CookieTransport::Tls);
        assert_eq!(
            c,
            "kairos_sso=v; Path=/ui; HttpOnly; SameSite=Lax; Max-Age=600; Secure"
        );
        assert!(clear_flow_cookie(CookieTransport::PlainHttp).contains("Max-Age=0"));
        assert!(!clear_flow_cookie(CookieTransport::PlainHttp).contains("Secure"));
    }

    fn claims_check(claims: Value, expected: Result<(), &str>) {
        let got = check_id_claims(&claims, "kairos", "n1", 1_000);
        match expected {
            Ok(()) => assert_eq!(got, Ok(()), "{claims}"),
            Err(part) => {
                let e = got.unwrap_err().to_string();
                assert!(e.contains(part), "{claims}: {e}");
            }
        }
    }

    #[test]
    fn id_token_claims_are_checked() {
        claims_check(json!({"nonce": "n1", "aud": "kairos", "iat": 990}), Ok(()));
        claims_check(
            json!({"nonce": "n1", "aud": ["kairos", "x"], "azp": "kairos", "iat": 990}),
            Ok(()),
        );
        claims_check(json!({"aud": "kairos", "iat": 990}), Err("no nonce"));
        claims_check(
            json!({"nonce": "n2", "aud": "kairos", "iat": 990}),
            Err("nonce"),
        );
        claims_check(
            json!({"nonce": "n1", "aud": "other", "iat": 990}),
            Err("another client"),
        );
        claims_check(
            json!({"nonce": "n1", "aud": ["kairos", "x"], "azp": "x", "iat": 990}),
            Err("azp"),
        );
        claims_check(
            json!({"nonce": "n1", "aud": "kairos", "iat": 5_000}),
            Err("future"),
        );
        claims_check(json!({"nonce": "n1", "aud": "kairos"}), Err("iat"));
    }

    #[test]
    fn claims_name_the_user_and_the_groups() {
        let c = json!({"preferred_username": "alice", "email": "a@x", "groups": ["payments", "ops"], "one": "ops", "bad": [1]});
        assert_eq!(
            user_from_claims(&c, "preferred_username").unwrap().as_str(),
            "alice"
        );
        assert_eq!(
            user_from_claims(&c, "name"),
            Err(Refusal::NoUserClaim("name".into()))
        );
        assert!(matches!(
            user_from_claims(&c, "email"),
            Err(Refusal::UnknownUser(_))
        ));
        assert_eq!(
            groups_from_claims(&c, "groups").unwrap(),
            ["payments", "ops"]
        );
        assert_eq!(groups_from_claims(&c, "one").unwrap(), ["ops"]);
        assert!(groups_from_claims(&c, "missing").unwrap().is_empty());
        assert_eq!(
            groups_from_claims(&c, "bad"),
            Err(Refusal::BadGroups("bad".into()))
        );
    }

    fn team(s: &str) -> TeamName {
        TeamName::parse(s).unwrap()
    }

    #[test]
    fn the_idp_narrows_and_never_widens() {
        let mine = [team("payments"), team("ops")];
        let map = BTreeMap::from([(team("ops"), "idp-operations".to_owned())]);
        let check = |asserted: &[&str], expected: &[&str]| {
            let asserted: Vec<String> = asserted.iter().map(|s| (*s).to_owned()).collect();
            let got = narrow(&mine, &asserted, &map);
            let want: Vec<TeamName> = expected.iter().map(|s| team(s)).collect();
            assert_eq!(got, want, "asserted {asserted:?}");
        };
        check(&["payments", "idp-operations"], &["payments", "ops"]);
        check(&["payments"], &["payments"]);
        check(&["ops"], &[]); // ops is asserted as idp-operations, not by its name
        check(&["idp-operations", "admins", "billing"], &["ops"]); // never a team not held
        check(&[], &[]);
    }

    #[test]
    fn narrowing_round_trips_through_the_session_id() {
        let teams = vec![team("payments"), team("ops")];
        let id = format!("secret{}", encode_teams(&teams));
        assert_eq!(decode_teams(&id), Some(teams));
        assert_eq!(
            decode_teams(&format!("secret{}", encode_teams(&[]))),
            Some(vec![])
        );
        assert_eq!(decode_teams("secret"), None);
    }

    #[test]
    fn endpoints_must_be_https_or_loopback() {
        assert!(endpoint_ok("https://idp.example.com/token"));
        assert!(endpoint_ok("http://127.0.0.1:4000/token"));
        assert!(endpoint_ok("http://localhost/token"));
        assert!(!endpoint_ok("http://idp.example.com/token"));
        assert!(!endpoint_ok("ftp://idp.example.com/"));
        assert!(!endpoint_ok("not a url"));
    }
}
