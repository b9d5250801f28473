//! OAuth endpoints. These answer in the RFC shapes their clients expect: introspection
//! per RFC 7662, revocation per RFC 7009, and token exchange (RFC 8693) with RFC 6749
//! §5.2 errors (`{"error": "...", "error_description": "..."}`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kairos_broker::{BrokerError, Caller, NewRequest};
use kairos_domain::{EntitlementName, Task, TaskKind, TaskRef};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiForm, Auth};
use crate::inputs::parse_ttl;

#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenForm {
    token: String,
    #[allow(dead_code)]
    token_type_hint: Option<String>,
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
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entitlement: Option<String>,
}

/// Is this Kairos token honoured right now? `active: false` the moment its grant ends.
#[utoipa::path(post, path = "/v1/oauth/introspect", tag = "oauth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = IntrospectionView), (status = 401, body = ErrorBody)))]
pub async fn introspect(
    State(s): State<AppState>,
    Auth(_caller): Auth,
    ApiForm(form): ApiForm<TokenForm>,
) -> ApiResult<Json<IntrospectionView>> {
    let i = s.broker.introspect(&form.token).await?;
    let view = match i.claims {
        Some(c) if i.active => IntrospectionView {
            active: true,
            scope: Some(c.scope),
            token_type: Some("Bearer".into()),
            exp: Some(c.exp),
            iat: Some(c.iat),
            sub: Some(c.sub),
            aud: Some(c.aud),
            iss: Some(c.iss),
            jti: Some(c.jti),
            entitlement: Some(c.entitlement),
        },
        _ => IntrospectionView {
            active: false,
            scope: None,
            token_type: None,
            exp: None,
            iat: None,
            sub: None,
            aud: None,
            iss: None,
            jti: None,
            entitlement: None,
        },
    };
    Ok(Json(view))
}

/// RFC 7009: revoke a token (its holder, or an operator). Always 200 for unknown tokens.
#[utoipa::path(post, path = "/v1/oauth/revoke", tag = "oauth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn revoke(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ApiForm(form): ApiForm<TokenForm>,
) -> ApiResult<StatusCode> {
    s.broker.revoke_token(&caller, &form.token).await?;
    Ok(StatusCode::OK)
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

fn oauth_error(status: StatusCode, error: &str, description: impl Into<String>) -> Response {
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
#[utoipa::path(post, path = "/v1/oauth/token", tag = "oauth", security(()),
    request_body(content = TokenExchangeForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = TokenExchangeResponse),
        (status = 202, description = "approval needed", body = OAuthError),
        (status = 400, body = OAuthError), (status = 401, body = OAuthError), (status = 403, body = OAuthError)))]
pub async fn token(
    State(s): State<AppState>,
    form: Result<ApiForm<TokenExchangeForm>, crate::error::ApiError>,
) -> Response {
    // A token endpoint answers every error in RFC 6749's shape, a malformed form too.
    let form = match form {
        Ok(ApiForm(form)) => form,
        Err(e) => return oauth_error(e.status, "invalid_request", e.message),
    };
    if form.grant_type != GRANT_TYPE_TOKEN_EXCHANGE {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("grant_type must be {GRANT_TYPE_TOKEN_EXCHANGE}"),
        );
    }
    if form.subject_token_type != TOKEN_TYPE_JWT {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("subject_token_type must be {TOKEN_TYPE_JWT}"),
        );
    }
    let caller = match s.broker.authenticate(&form.subject_token).await {
        Ok(c @ Caller::Workload { .. }) => c,
        Ok(Caller::User(_)) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "subject_token must be a workload's platform JWT, not an API token",
            );
        }
        Err(e) => return oauth_error(StatusCode::UNAUTHORIZED, "invalid_grant", e.to_string()),
    };
    let bad = |m: String| oauth_error(StatusCode::BAD_REQUEST, "invalid_request", m);
    let entitlement = match EntitlementName::parse(form.scope.trim()) {
        Ok(e) => e,
        Err(e) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", e.to_string()),
    };
    // Token exchange issues tokens; a database account goes through POST /v1/requests,
    // where its password can be shown once.
    let catalog = s.broker.catalog();
    let issues_account = catalog
        .entitlement(&entitlement)
        .and_then(|e| catalog.target(&e.target))
        .is_some_and(|t| t.kind.db().is_some());
    if issues_account {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            format!(
                "{entitlement} issues a database account, not a token; use POST /v1/requests (or `kairos request`)"
            ),
        );
    }
    let kind: TaskKind = match form.task_kind.parse() {
        Ok(k) => k,
        Err(e) => return bad(format!("task_kind: {e}")),
    };
    let task = match TaskRef::parse(form.task_ref.clone())
        .and_then(|r| Task::new(kind, r, form.task_reason.clone()))
    {
        Ok(t) => t,
        Err(e) => return bad(e.to_string()),
    };
    let ttl = match form.ttl.as_deref().map(parse_ttl).transpose() {
        Ok(t) => t,
        Err(e) => return bad(e.message),
    };
    let input = NewRequest {
        identity: None,
        entitlement,
        ttl,
        task,
    };
    match s.broker.request(&caller, input).await {
        Ok(outcome) => match (outcome.grant, outcome.credential) {
            (
                Some(grant),
                Some(kairos_broker::IssuedCredential::Token {
                    access_token,
                    expires_at,
                }),
            ) => {
                let expires_in = (expires_at.as_secs() - s.broker.now().as_secs()).max(0);
                Json(TokenExchangeResponse {
                    access_token,
                    issued_token_type: TOKEN_TYPE_JWT.into(),
                    token_type: "Bearer".into(),
                    expires_in,
                    scope: grant.entitlement.to_string(),
                    grant_id: grant.id.to_string(),
                    request_id: outcome.request.id.to_string(),
                })
                .into_response()
            }
            (Some(_), Some(_)) => oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "this entitlement does not issue tokens; use POST /v1/requests",
            ),
            _ => (
                StatusCode::ACCEPTED,
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
            StatusCode::FORBIDDEN,
            Json(OAuthError {
                error: "access_denied".into(),
                error_description: d.reason,
                request_id: None,
                policies: Some(d.policies),
            }),
        )
            .into_response(),
        Err(BrokerError::Invalid { message, .. }) => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_request", message)
        }
        Err(BrokerError::NotFound(m)) => oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", m),
        Err(BrokerError::Forbidden(m)) => oauth_error(StatusCode::FORBIDDEN, "access_denied", m),
        Err(e) => crate::error::ApiError::from(e).into_response(),
    }
}

/// The public keys that verify Kairos tokens (current and not-yet-expired retired keys).
pub async fn jwks(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(s.broker.key_ring().jwks())
}

/// OpenID Provider metadata, enough for resource servers to find the JWKS and endpoints.
pub async fn discovery(State(s): State<AppState>) -> Json<serde_json::Value> {
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
        "introspection_endpoint": format!("{iss}/v1/oauth/introspect"),
        "revocation_endpoint": format!("{iss}/v1/oauth/revoke"),
        "grant_types_supported": [GRANT_TYPE_TOKEN_EXCHANGE],
        "token_endpoint_auth_methods_supported": ["none"],
        "id_token_signing_alg_values_supported": ["ES256", "EdDSA"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
    }))
}
