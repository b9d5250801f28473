use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use kairos_domain::{AuditRecord, Timestamp, UserName};
use kairos_store::{AuditFilter, Role};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, Auth};
use crate::inputs::{check_add_user, check_rotate, config_bundle};
use crate::views::{AddUserBody, ConfigBundleBody, RotateBody};

#[derive(Debug, Serialize, ToSchema)]
pub struct ApplyResponse {
    pub created: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

/// Validate and apply a configuration, all or nothing; reports what changed.
#[utoipa::path(post, path = "/v1/config/apply", tag = "admin", request_body = ConfigBundleBody,
    responses((status = 200, body = ApplyResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn apply_config(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ApiJson(body): ApiJson<ConfigBundleBody>,
) -> ApiResult<Json<ApplyResponse>> {
    let bundle = config_bundle(body);
    let diff = s.broker.apply_config_as(&caller, bundle).await?;
    Ok(Json(ApplyResponse {
        created: diff.created,
        changed: diff.changed,
        removed: diff.removed,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    identity: Option<String>,
    grant: Option<String>,
    request: Option<String>,
    task_ref: Option<String>,
    /// RFC 3339, e.g. `2026-11-26T10:00:00Z`.
    since: Option<String>,
    until: Option<String>,
    /// At most this many, newest first.
    #[param(value_type = Option<i64>, minimum = 0, maximum = 4294967295_i64)]
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    pub records: Vec<AuditView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    pub seq: i64,
    pub at: String,
    pub kind: String,
    pub actor: String,
    pub identity: Option<String>,
    pub request_id: Option<String>,
    pub grant_id: Option<String>,
    pub task_ref: Option<String>,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    pub hash: String,
}

impl From<&AuditRecord> for AuditView {
    fn from(r: &AuditRecord) -> Self {
        Self {
            seq: r.seq,
            at: r.at.to_rfc3339(),
            kind: r.kind.as_str().into(),
            actor: r.actor.clone(),
            identity: r.identity.clone(),
            request_id: r.request_id.clone(),
            grant_id: r.grant_id.clone(),
            task_ref: r.task_ref.clone(),
            data: serde_json::from_str(&r.data)
                .unwrap_or(serde_json::Value::String(r.data.clone())),
            hash: r.hash.clone(),
        }
    }
}

fn parse_time(key: &str, v: Option<String>) -> ApiResult<Option<Timestamp>> {
    v.map(|s| {
        Timestamp::parse_rfc3339(&s).ok_or_else(|| {
            ApiError::bad_request(
                "bad_time",
                format!("{key} must be an RFC 3339 time such as 2026-11-26T10:00:00Z"),
            )
        })
    })
    .transpose()
}

/// Search the audit log.
#[utoipa::path(get, path = "/v1/audit", tag = "admin", params(AuditQuery),
    responses((status = 200, body = AuditList), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn audit(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<AuditList>> {
    let filter = AuditFilter {
        identity: q.identity,
        grant_id: q.grant,
        request_id: q.request,
        task_ref: q.task_ref,
        since: parse_time("since", q.since)?,
        until: parse_time("until", q.until)?,
        limit: q.limit,
    };
    let records = s.broker.audit(&caller, &filter).await?;
    Ok(Json(AuditList {
        records: records.iter().map(AuditView::from).collect(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyView {
    /// True when every record's hash and link check out.
    pub ok: bool,
    pub records: u64,
    /// The first bad record's sequence number.
    pub broken_at: Option<i64>,
    pub problem: Option<String>,
}

/// Walk the hash chain; names the first edited, reordered or deleted record.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "admin",
    responses((status = 200, body = VerifyView), (status = 403, body = ErrorBody)))]
pub async fn audit_verify(
    State(s): State<AppState>,
    Auth(caller): Auth,
) -> ApiResult<Json<VerifyView>> {
    let report = s.broker.verify_audit(&caller).await?;
    Ok(Json(VerifyView {
        ok: report.broken.is_none(),
        records: report.records,
        broken_at: report.broken.as_ref().map(|b| b.seq),
        problem: report.broken.map(|b| b.problem),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeysView {
    pub current_kid: String,
    #[schema(value_type = Object)]
    pub jwks: serde_json::Value,
}

/// The signing keys in the JWKS.
#[utoipa::path(get, path = "/v1/keys", tag = "admin",
    responses((status = 200, body = KeysView), (status = 403, body = ErrorBody)))]
pub async fn keys(State(s): State<AppState>, Auth(caller): Auth) -> ApiResult<Json<KeysView>> {
    caller.require_role(&[Role::Operator, Role::Auditor], "list keys")?;
    let ring = s.broker.key_ring();
    Ok(Json(KeysView {
        current_kid: ring.current_kid().to_owned(),
        jwks: ring.jwks(),
    }))
}

/// Rotate the signing key; the old key stays in the JWKS until its tokens have expired.
#[utoipa::path(post, path = "/v1/keys", tag = "admin", request_body = RotateBody,
    responses((status = 200, body = KeysView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn rotate_keys(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ApiJson(body): ApiJson<RotateBody>,
) -> ApiResult<Json<KeysView>> {
    caller.require_role(&[], "rotate keys")?;
    let alg = check_rotate(body)?;
    s.broker.rotate_keys(&caller.principal(), alg).await?;
    let ring = s.broker.key_ring();
    Ok(Json(KeysView {
        current_kid: ring.current_kid().to_owned(),
        jwks: ring.jwks(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub name: String,
    pub role: String,
    pub teams: Vec<String>,
    /// A resource server's token targets (absent for people).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    pub created_at: String,
}

impl From<&kairos_store::User> for UserView {
    fn from(u: &kairos_store::User) -> Self {
        Self {
            name: u.name.to_string(),
            role: u.role.as_str().into(),
            teams: u.teams.iter().map(ToString::to_string).collect(),
            targets: u.targets.iter().map(ToString::to_string).collect(),
            created_at: u.created_at.to_rfc3339(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NewUserView {
    pub user: UserView,
    /// Shown once; Kairos keeps only its hash.
    pub token: String,
}

/// Add a person with a role and teams; the API token is shown once.
#[utoipa::path(post, path = "/v1/users", tag = "admin", request_body = AddUserBody,
    responses((status = 201, body = NewUserView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "a team is not defined in the configuration", body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn add_user(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ApiJson(body): ApiJson<AddUserBody>,
) -> ApiResult<(StatusCode, Json<NewUserView>)> {
    let input = check_add_user(body)?;
    let role = Role::parse(&input.role).ok_or_else(|| {
        ApiError::bad_request(
            "bad_role",
            "role must be admin, operator, approver, auditor or resource-server",
        )
    })?;
    let created = s
        .broker
        .add_user(&caller, input.name, role, input.teams, input.targets)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(NewUserView {
            user: UserView::from(&created.user),
            token: created.token.expose_secret().to_owned(),
        }),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<UserView>,
}

/// List people.
#[utoipa::path(get, path = "/v1/users", tag = "admin",
    responses((status = 200, body = UserList), (status = 403, body = ErrorBody)))]
pub async fn list_users(
    State(s): State<AppState>,
    Auth(caller): Auth,
) -> ApiResult<Json<UserList>> {
    let users = s.broker.list_users(&caller).await?;
    Ok(Json(UserList {
        users: users.iter().map(UserView::from).collect(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedView {
    pub revoked_tokens: u64,
}

/// Revoke every API token of a person.
#[utoipa::path(post, path = "/v1/users/{name}/revoke", tag = "admin", params(("name" = String, Path)),
    responses((status = 200, body = RevokedView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn revoke_user(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<RevokedView>> {
    let name =
        UserName::parse(name).map_err(|e| ApiError::bad_request("bad_name", e.to_string()))?;
    let n = s.broker.revoke_user(&caller, &name).await?;
    Ok(Json(RevokedView { revoked_tokens: n }))
}
