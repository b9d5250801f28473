//! OAuth endpoints. These answer in the RFC shapes their clients expect: introspection
//! per RFC 7662, revocation per RFC 7009, and token exchange (RFC 8693), every error in
//! RFC 6749 §5.2's shape (`{"error": "...", "error_description": "..."}`), a failed
//! client authentication too (401 `invalid_client` with `WWW-Authenticate`).
//!
//! Introspection and revocation authenticate their caller as an OAuth client: HTTP Basic
//! with `client_id` = a user's name and `client_secret` = that user's API token (how a
//! resource server, a user with the role `resource-server`, presents itself), or a Bearer
//! API token or platform JWT. What the caller may learn or end is [`Broker::introspect_as`]
//! and [`Broker::revoke_token`]'s business; a token it may not see answers exactly as an
//! unknown one.
//!
//! [`Broker::introspect_as`]: kairos_broker::Broker::introspect_as
//! [`Broker::revoke_token`]: kairos_broker::Broker::revoke_token

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use kairos_broker::{BrokerError, Caller, NewRequest};
use kairos_domain::{EntitlementName, Task, TaskKind, TaskRef};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiForm, ClientSource, DpopHeader, PeerChain};
use crate::inputs::parse_ttl;

#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenForm {
    token: String,
    #[allow(dead_code)]
    token_type_hint: Option<String>,
}

/// RFC 7662 introspection, with how the resource server received the token (Kairos's
/// extension for DPoP, RFC 9449): with `htm` and `htu`, a token bound to a DPoP key is
/// active only when `dpop_proof` is a fresh proof for that request signed by that key.
#[derive(Debug, Deserialize, ToSchema)]
pub struct IntrospectionForm {
    token: String,
    #[allow(dead_code)]
    token_type_hint: Option<String>,
    /// The `DPoP` header the resource server received with the token, if any.
    dpop_proof: Option<String>,
    /// The method of the resource server's request (e.g. `GET`).
    htm: Option<String>,
    /// The URL of the resource server's request (query and fragment are ignored).
    htu: Option<String>,
    /// RFC 8705: base64url SHA-256 of the DER of the client certificate the resource
    /// server's caller presented over mTLS (`x5t#S256`), or empty when it presented none.
    /// A certificate-bound token is active only when this is its certificate.
    client_cert_thumbprint: Option<String>,
}

/// What a bound token's `cnf` says (RFC 7800): the key it is bound to.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConfirmationView {
    /// RFC 7638 thumbprint of the DPoP key (RFC 9449).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
    /// Base64url SHA-256 of the client certificate the token is bound to (RFC 8705).
    #[serde(rename = "x5t#S256", skip_serializing_if = "Option::is_none")]
    pub x5t_s256: Option<String>,
}

/// RFC 7662 introspection response.
#[derive(Debug, Serialize, ToSchema)]
pub struct IntrospectionView {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The client the token was issued to: the identity (RFC 9068 `client_id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entitlement: Option<String>,
    /// For a sender-constrained token: the key its presenter must prove it holds and/or
    /// the client certificate it must be presented over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cnf: Option<ConfirmationView>,
    /// The workload's SPIFFE ID, when its identity has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spiffe_id: Option<String>,
}

/// Is this Kairos token honoured right now? `active: false` the moment its grant ends.
///
/// The caller authenticates as an OAuth client: HTTP Basic (`client_id` = user name,
/// `client_secret` = its API token) or a Bearer API token. A resource server (role
/// `resource-server`) learns `active: true` only for tokens of its targets; people (admin,
/// operator, approver, auditor) for any token; a workload (Bearer platform JWT) only for
/// its own. Every other token answers `{"active": false}`, exactly as an unknown one.
///
/// A token bound to a DPoP key answers `token_type: "DPoP"` and its `cnf.jkt`. A resource
/// server may also send how it received the token (`htm`, `htu`, and the `DPoP` header it
/// got as `dpop_proof`): then a bound token is active only with a fresh proof for that
/// request (`ath` of the token) signed by the bound key; a copied token presented without
/// its key answers `{"active": false}`.
///
/// A token bound to a client certificate (RFC 8705, issued over mTLS) answers its
/// `cnf.x5t#S256`. A resource server that sends `client_cert_thumbprint` (the `x5t#S256`
/// of the certificate its caller presented, empty for none), or `htm`/`htu`, learns
/// `active: true` for such a token only when the thumbprint is the token's.
#[utoipa::path(post, path = "/v1/oauth/introspect", tag = "oauth",
    operation_id = "oauth_introspect",
    security(("basic" = []), ("bearer" = [])),
    request_body(content = IntrospectionForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = IntrospectionView),
        (status = 400, description = "the form is malformed", body = OAuthError),
        (status = 401, description = "client authentication failed (`invalid_client`)", body = OAuthError)))]
pub async fn introspect(
    State(s): State<AppState>,
    ClientSource(source): ClientSource,
    client: Result<OAuthClient, Response>,
    form: Result<ApiForm<IntrospectionForm>, ApiError>,
) -> Response {
    let caller = match client {
        Ok(OAuthClient(c)) => c,
        Err(r) => return r,
    };
    let form = match form {
        Ok(ApiForm(f)) => f,
        Err(e) => return form_error(e),
    };
    let client_cert = form
        .client_cert_thumbprint
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let presented = match (&form.htm, &form.htu, &form.dpop_proof) {
        (Some(method), Some(url), proof) => Some(kairos_broker::ending::Presentation {
            request: Some((method.as_str(), url.as_str())),
            proof: proof.as_deref(),
            client_cert,
        }),
        (None, None, None) => {
            form.client_cert_thumbprint
                .is_some()
                .then_some(kairos_broker::ending::Presentation {
                    request: None,
                    proof: None,
                    client_cert,
                })
        }
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "say how the token was presented with both `htm` (the method) and `htu` (the URL) of your request, and `dpop_proof` (the DPoP header you received) if there was one",
            );
        }
    };
    let i = match s
        .broker
        .introspect_presented(&caller, &form.token, source, presented)
        .await
    {
        Ok(i) => i,
        Err(e) => return broker_error(e),
    };
    let view = match i.claims {
        Some(c) if i.active => IntrospectionView {
            active: true,
            scope: Some(c.scope),
            token_type: Some(
                if c.cnf.as_ref().is_some_and(|c| c.jkt.is_some()) {
                    "DPoP"
                } else {
                    "Bearer"
                }
                .into(),
            ),
            exp: Some(c.exp),
            iat: Some(c.iat),
            nbf: Some(c.nbf),
            client_id: Some(if c.client_id.is_empty() {
                c.sub.clone()
            } else {
                c.client_id
            }),
            sub: Some(c.sub),
            aud: Some(c.aud),
            iss: Some(c.iss),
            jti: Some(c.jti),
            entitlement: Some(c.entitlement),
            cnf: c.cnf.map(|cnf| ConfirmationView {
                jkt: cnf.jkt,
                x5t_s256: cnf.x5t_s256,
            }),
            spiffe_id: c.spiffe_id,
        },
        _ => IntrospectionView {
            active: false,
            scope: None,
            token_type: None,
            exp: None,
            iat: None,
            nbf: None,
            sub: None,
            client_id: None,
            aud: None,
            iss: None,
            jti: None,
            entitlement: None,
            cnf: None,
            spiffe_id: None,
        },
    };
    no_store(Json(view).into_response())
}

/// RFC 7009: revoke a token. Always 200 with an empty body, whether the token was
/// revoked, unknown, already ended, or one the caller may not revoke (then nothing
/// happens): the answer tells nothing about the token.
///
/// Who may revoke: the token's own workload (Bearer platform JWT), admins and operators,
/// and the resource server (role `resource-server`) of the token's target. The caller
/// authenticates as for introspection.
#[utoipa::path(post, path = "/v1/oauth/revoke", tag = "oauth",
    operation_id = "oauth_revoke",
    security(("basic" = []), ("bearer" = [])),
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "revoked, or nothing to revoke for this caller"),
        (status = 400, description = "the form is malformed", body = OAuthError),
        (status = 401, description = "client authentication failed (`invalid_client`)", body = OAuthError)))]
pub async fn revoke(
    State(s): State<AppState>,
    client: Result<OAuthClient, Response>,
    form: Result<ApiForm<TokenForm>, ApiError>,
) -> Response {
    let caller = match client {
        Ok(OAuthClient(c)) => c,
        Err(r) => return r,
    };
    let form = match form {
        Ok(ApiForm(f)) => f,
        Err(e) => return form_error(e),
    };
    match s.broker.revoke_token(&caller, &form.token).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => broker_error(e),
    }
}

/// The caller of introspection or revocation, authenticated as an OAuth client (RFC 7662
/// §2.1, RFC 7009 §2.1): HTTP Basic with `client_id` = a user's name and `client_secret`
/// = that user's API token, or `Bearer` with an API token or a platform JWT. Refused with
/// RFC 6749 §5.2's 401 `invalid_client`.
pub struct OAuthClient(pub Caller);

/// `WWW-Authenticate` of a 401 on the OAuth endpoints: both schemes they take.
const OAUTH_CHALLENGE: &str = "Basic realm=\"kairos\", Bearer realm=\"kairos\"";

impl FromRequestParts<AppState> for OAuthClient {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(invalid_client(
                "authenticate with HTTP Basic (client_id = your Kairos user name, client_secret = its API token) or `Authorization: Bearer <token>`",
            ));
        };
        let value = value.to_str().unwrap_or_default();
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            return match state.broker.authenticate(rest).await {
                Ok(c) => Ok(Self(c)),
                Err(BrokerError::Unauthenticated(m)) => Err(invalid_client(m)),
                Err(e) => Err(broker_error(e)),
            };
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(invalid_client(
                "the Authorization header must be `Basic <client_id:client_secret in base64>` or `Bearer <token>`",
            ));
        }
        let Some((client_id, secret)) = basic_credentials(rest.trim()) else {
            return Err(invalid_client(
                "the Basic credentials must be base64 of `client_id:client_secret` (each form-urlencoded)",
            ));
        };
        // The secret is an API token; a platform JWT is not a client secret.
        let refused = || {
            invalid_client(
                "unknown client or wrong client_secret; the secret is the client's Kairos API token",
            )
        };
        if secret.split('.').count() == 3 {
            return Err(refused());
        }
        match state.broker.authenticate(&secret).await {
            Ok(Caller::User(u)) if u.name.as_str() == client_id => Ok(Self(Caller::User(u))),
            Ok(_) | Err(BrokerError::Unauthenticated(_)) => Err(refused()),
            Err(e) => Err(broker_error(e)),
        }
    }
}

/// `client_id` and `client_secret` of a Basic credential, each form-urlencoded inside the
/// base64 (RFC 6749 §2.3.1).
fn basic_credentials(encoded: &str) -> Option<(String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((form_decode(id)?, form_decode(secret)?))
}

/// Decodes `application/x-www-form-urlencoded` text: `+` is a space, `%XX` a byte.
fn form_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = char::from(bytes.next()?).to_digit(16)?;
                let lo = char::from(bytes.next()?).to_digit(16)?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
            }
            _ => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

fn invalid_client(description: impl Into<String>) -> Response {
    let mut r = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", description);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(OAUTH_CHALLENGE),
    );
    r
}

/// A malformed form on an OAuth endpoint: RFC 6749 §5.2's `invalid_request`, 400.
fn form_error(e: ApiError) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_request", e.message)
}

/// A broker error in OAuth's shape: the caller's mistakes are 400, Kairos's own failures
/// keep their 5xx (`server_error`, or `temporarily_unavailable` when a target is down).
fn broker_error(e: BrokerError) -> Response {
    let e = ApiError::from(e);
    let code = match e.status {
        StatusCode::UNAUTHORIZED => return invalid_client(e.message),
        StatusCode::SERVICE_UNAVAILABLE => "temporarily_unavailable",
        s if s.is_server_error() => "server_error",
        StatusCode::FORBIDDEN => "access_denied",
        _ => "invalid_request",
    };
    let status = if e.status.is_server_error() {
        e.status
    } else {
        StatusCode::BAD_REQUEST
    };
    oauth_error(status, code, e.message)
}

/// RFC 6749 §5.1: token responses (and introspection's, which carry claims) are not cached.
fn no_store(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

pub const GRANT_TYPE_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenExchangeForm {
    /// `urn:ietf:params:oauth:grant-type:token-exchange`
    grant_type: String,
    /// The workload's platform JWT.
    subject_token: String,
    /// `urn:ietf:params:oauth:token-type:jwt`
    subject_token_type: String,
    /// The entitlement, `target/role`.
    scope: String,
    task_kind: String,
    task_ref: String,
    task_reason: String,
    /// e.g. `15m`.
    ttl: Option<String>,
    #[allow(dead_code)]
    audience: Option<String>,
    #[allow(dead_code)]
    requested_token_type: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenExchangeResponse {
    pub access_token: String,
    pub issued_token_type: String,
    pub token_type: String,
    pub expires_in: i64,
    pub scope: String,
    pub grant_id: String,
    pub request_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthError {
    pub error: String,
    pub error_description: String,
    /// With `authorization_pending`: the request to long-poll (`GET /v1/requests/{id}?wait=30s`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<String>>,
}

pub(crate) fn oauth_error(
    status: StatusCode,
    error: &str,
    description: impl Into<String>,
) -> Response {
    (
        status,
        Json(OAuthError {
            error: error.into(),
            error_description: description.into(),
            request_id: None,
            policies: None,
        }),
    )
        .into_response()
}

/// RFC 8693: trade a platform JWT plus entitlement and task for a Kairos token.
///
/// The workload is a public client (`token_endpoint_auth_methods_supported: ["none"]`):
/// it proves itself with its `subject_token`. Every answer carries `Cache-Control:
/// no-store` and `Pragma: no-cache`; every error is RFC 6749 §5.2's shape with status 400
/// (an invalid `subject_token` is `invalid_request`, RFC 8693 §2.2.2). A request that
/// needs approval answers 400 `authorization_pending` with its `request_id`, as RFC 8628
/// clients understand: wait with `GET /v1/requests/{id}?wait=30s` (or poll this endpoint
/// again); a denial is `access_denied`.
///
/// With a `DPoP` header (RFC 9449) the token is bound to the proof's key (`cnf.jkt`) and
/// `token_type` is `DPoP`; a refused proof is `invalid_dpop_proof` (saying which check
/// failed), and with `[dpop] nonce = true` a proof without the current nonce is
/// `use_dpop_nonce` with the nonce in the `DPoP-Nonce` header. Nothing is recorded then.
#[utoipa::path(post, path = "/v1/oauth/token", tag = "oauth", security(()),
    operation_id = "oauth_token",
    params(("DPoP" = Option<String>, Header,
        description = "A DPoP proof (RFC 9449) for `POST` at this URL: the token is bound to its key (`token_type: DPoP`)")),
    request_body(content = TokenExchangeForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = TokenExchangeResponse),
        (status = 400, description = "RFC 6749 §5.2 / RFC 8693 §2.2.2 error; `authorization_pending` (with `request_id`) when approval is needed, `access_denied` (with `policies`) when denied", body = OAuthError)))]
pub async fn token(
    State(s): State<AppState>,
    ClientSource(source): ClientSource,
    PeerChain(peer): PeerChain,
    dpop: Result<DpopHeader, ApiError>,
    form: Result<ApiForm<TokenExchangeForm>, ApiError>,
) -> Response {
    no_store(exchange(&s, source, peer, dpop, form).await)
}

async fn exchange(
    s: &AppState,
    source: Option<std::net::IpAddr>,
    peer: Option<kairos_tls::PeerCertificates>,
    dpop: Result<DpopHeader, ApiError>,
    form: Result<ApiForm<TokenExchangeForm>, ApiError>,
) -> Response {
    // A token endpoint answers every error in RFC 6749's shape, a malformed form too.
    let form = match form {
        Ok(ApiForm(form)) => form,
        Err(e) => return form_error(e),
    };
    let bad = |error: &str, m: String| oauth_error(StatusCode::BAD_REQUEST, error, m);
    // RFC 9449 §5: a proof for POST at this endpoint binds the token to its key.
    let proof = match dpop.map(|DpopHeader(p)| p) {
        Ok(None) => None,
        Ok(Some(p)) => match s.broker.check_dpop_proof(&p, "POST", "/v1/oauth/token") {
            Ok(verified) => Some(verified),
            Err(e) => return dpop_refusal(s, e),
        },
        Err(e) => return bad(&e.code, e.message),
    };
    if form.grant_type != GRANT_TYPE_TOKEN_EXCHANGE {
        return bad(
            "unsupported_grant_type",
            format!("grant_type must be {GRANT_TYPE_TOKEN_EXCHANGE}"),
        );
    }
    if form.subject_token_type != TOKEN_TYPE_JWT {
        return bad(
            "invalid_request",
            format!("subject_token_type must be {TOKEN_TYPE_JWT}"),
        );
    }
    // Over mTLS the client certificate (an X.509-SVID must name the subject_token's
    // identity) binds the token to it (RFC 8705).
    let authenticated = s
        .broker
        .authenticate_request(
            Some(&form.subject_token),
            peer.as_ref().map(|p| p.0.as_slice()),
        )
        .await;
    let client_cert = authenticated
        .as_ref()
        .ok()
        .and_then(|a| a.client_cert.clone());
    let caller = match authenticated.map(|a| a.caller) {
        Ok(c @ Caller::Workload { .. }) => c,
        Ok(Caller::User(_)) => {
            return bad(
                "invalid_request",
                "subject_token must be a workload's platform JWT, not an API token".into(),
            );
        }
        // RFC 8693 §2.2.2: an invalid subject_token is `invalid_request`.
        Err(BrokerError::Unauthenticated(m)) => {
            return bad("invalid_request", format!("subject_token: {m}"));
        }
        Err(e) => return broker_error(e),
    };
    let entitlement = match EntitlementName::parse(form.scope.trim()) {
        Ok(e) => e,
        Err(e) => return bad("invalid_scope", e.to_string()),
    };
    // Token exchange issues tokens; a database account goes through POST /v1/requests,
    // where its password can be shown once.
    let catalog = s.broker.catalog();
    let issues_account = catalog
        .entitlement(&entitlement)
        .and_then(|e| catalog.target(&e.target))
        .is_some_and(|t| t.kind.db().is_some());
    if issues_account {
        return bad(
            "invalid_scope",
            format!(
                "{entitlement} issues a database account, not a token; use POST /v1/requests (or `kairos request`)"
            ),
        );
    }
    let kind: TaskKind = match form.task_kind.parse() {
        Ok(k) => k,
        Err(e) => return bad("invalid_request", format!("task_kind: {e}")),
    };
    let task = match TaskRef::parse(form.task_ref.clone())
        .and_then(|r| Task::new(kind, r, form.task_reason.clone()))
    {
        Ok(t) => t,
        Err(e) => return bad("invalid_request", e.to_string()),
    };
    let ttl = match form.ttl.as_deref().map(parse_ttl).transpose() {
        Ok(t) => t,
        Err(e) => return bad("invalid_request", e.message),
    };
    let input = NewRequest {
        identity: None,
        entitlement,
        ttl,
        task,
        source,
        proof,
        client_cert,
        public_key: None,
    };
    match s.broker.request(&caller, input).await {
        Ok(outcome) => match (outcome.grant, outcome.credential) {
            (
                Some(grant),
                Some(kairos_broker::IssuedCredential::Token {
                    access_token,
                    expires_at,
                    cnf,
                }),
            ) => {
                let expires_in = (expires_at.as_secs() - s.broker.now().as_secs()).max(0);
                Json(TokenExchangeResponse {
                    access_token,
                    issued_token_type: TOKEN_TYPE_JWT.into(),
                    token_type: if cnf.as_ref().is_some_and(|c| c.jkt.is_some()) {
                        "DPoP"
                    } else {
                        "Bearer"
                    }
                    .into(),
                    expires_in,
                    scope: grant.entitlement.to_string(),
                    grant_id: grant.id.to_string(),
                    request_id: outcome.request.id.to_string(),
                })
                .into_response()
            }
            (Some(_), Some(_)) => bad(
                "invalid_scope",
                "this entitlement does not issue tokens; use POST /v1/requests".into(),
            ),
            _ => (
                StatusCode::BAD_REQUEST,
                Json(OAuthError {
                    error: "authorization_pending".into(),
                    error_description: format!(
                        "{} approval(s) needed: {}; wait with GET /v1/requests/{}?wait=30s",
                        outcome.request.approvals_needed(),
                        outcome.request.decision.reason,
                        outcome.request.id
                    ),
                    request_id: Some(outcome.request.id.to_string()),
                    policies: Some(outcome.request.decision.policies.clone()),
                }),
            )
                .into_response(),
        },
        Err(BrokerError::Denied(d)) => (
            StatusCode::BAD_REQUEST,
            Json(OAuthError {
                error: "access_denied".into(),
                error_description: d.reason,
                request_id: None,
                policies: Some(d.policies),
            }),
        )
            .into_response(),
        Err(BrokerError::NotFound(m)) => bad("invalid_scope", m),
        Err(e @ BrokerError::Invalid { .. }) => dpop_refusal(s, e),
        Err(e) => broker_error(e),
    }
}

/// A refused DPoP proof in RFC 9449 §7's shape: 400 `invalid_dpop_proof` saying which
/// check failed, or `use_dpop_nonce` with the nonce in `DPoP-Nonce`. Any other error
/// keeps its usual OAuth shape.
fn dpop_refusal(s: &AppState, e: BrokerError) -> Response {
    use kairos_broker::dpop::{INVALID_DPOP_PROOF, USE_DPOP_NONCE};
    match e {
        BrokerError::Invalid { code, message }
            if code == INVALID_DPOP_PROOF || code == USE_DPOP_NONCE =>
        {
            let mut r = oauth_error(StatusCode::BAD_REQUEST, code, message);
            if code == USE_DPOP_NONCE
                && let Ok(v) = HeaderValue::from_str(&s.broker.dpop_nonce())
            {
                r.headers_mut().insert("dpop-nonce", v);
            }
            r
        }
        BrokerError::Invalid {
            code: "dpop_proof_required" | "mtls_required" | "binding_required",
            message,
        } => oauth_error(StatusCode::BAD_REQUEST, "invalid_request", message),
        e => broker_error(e),
    }
}

/// The public keys that verify Kairos tokens (current and not-yet-expired retired keys).
pub async fn jwks(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(s.broker.key_ring().jwks())
}

/// RFC 8414 authorization server metadata: where resource servers and clients find the
/// JWKS and the endpoints, and how to authenticate to each.
pub async fn metadata(State(s): State<AppState>) -> Response {
    let iss = s
        .broker
        .settings()
        .issuer_url
        .trim_end_matches('/')
        .to_owned();
    Json(serde_json::json!({
        "issuer": iss,
        "jwks_uri": format!("{iss}/.well-known/jwks.json"),
        "token_endpoint": format!("{iss}/v1/oauth/token"),
        "token_endpoint_auth_methods_supported": ["none"],
        "grant_types_supported": [GRANT_TYPE_TOKEN_EXCHANGE],
        // REQUIRED by RFC 8414, yet Kairos has no authorization endpoint (token exchange
        // is its only grant): `none`, the registered response type that issues nothing.
        "response_types_supported": ["none"],
        "introspection_endpoint": format!("{iss}/v1/oauth/introspect"),
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic"],
        "revocation_endpoint": format!("{iss}/v1/oauth/revoke"),
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic"],
        "service_documentation": format!("{iss}/v1/openapi.json"),
        // RFC 9449 §5.1: the token endpoint binds tokens to DPoP keys of these algorithms.
        "dpop_signing_alg_values_supported": ["ES256", "EdDSA", "RS256"],
    }))
    .into_response()
}
