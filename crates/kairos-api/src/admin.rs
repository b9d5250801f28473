use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use kairos_domain::{AuditRecord, Timestamp, UserName};
use kairos_store::{AuditFilter, Role};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use kairos_broker::{ApplyMode, ApplyOptions, RemoveAll};

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, Auth};
use crate::inputs::{check_add_user, check_rotate, config_bundle};
use crate::views::{AddUserBody, ConfigBundleBody, RotateBody, VerifyCheckpointsBody};

#[derive(Debug, Serialize, ToSchema)]
pub struct ApplyResponse {
    pub created: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    /// True when nothing was changed (`dry_run=true`): the lists say what would be.
    pub dry_run: bool,
    /// Live grants the configuration ends (or, on a dry run, would end): those whose
    /// identity, team, target or entitlement it removes, and those its policies now deny.
    pub grants_ending: Vec<EndingView>,
    /// What an operator should know, one sentence each naming its target (e.g. MariaDB's
    /// event scheduler is off, so accounts get no native expiry).
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndingView {
    pub grant_id: String,
    pub identity: String,
    pub entitlement: String,
    pub target: String,
    /// The end reason: `identity_removed`, `team_removed`, `target_removed`,
    /// `entitlement_removed` or `policy_changed`.
    pub reason: String,
    /// Why, e.g. `target orders-db removed`, or the decision that now denies it.
    pub because: String,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ApplyQuery {
    /// Validate and report what would change and which grants would end; change nothing.
    dry_run: Option<bool>,
    /// Allow a configuration that removes every identity or every target (refused
    /// otherwise: an empty or truncated file is likelier than an intended wipe).
    allow_remove_all: Option<bool>,
}

/// Validate and apply a configuration, all or nothing; reports what changed, which live
/// grants it ended (it removed what they stand on, or its policies now deny them) and
/// warnings (e.g. a team's owner who is not a Kairos user yet).
#[utoipa::path(post, path = "/v1/config/apply", tag = "admin", request_body = ConfigBundleBody, params(ApplyQuery),
    responses((status = 200, body = ApplyResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn apply_config(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ApiQuery(q): ApiQuery<ApplyQuery>,
    ApiJson(body): ApiJson<ConfigBundleBody>,
) -> ApiResult<Json<ApplyResponse>> {
    let bundle = config_bundle(body);
    let options = ApplyOptions {
        mode: if q.dry_run == Some(true) {
            ApplyMode::DryRun
        } else {
            ApplyMode::Apply
        },
        remove_all: if q.allow_remove_all == Some(true) {
            RemoveAll::DangerAllow
        } else {
            RemoveAll::Refuse
        },
    };
    let report = s.broker.apply_config_as(&caller, bundle, options).await?;
    Ok(Json(ApplyResponse {
        created: report.diff.created,
        changed: report.diff.changed,
        removed: report.diff.removed,
        dry_run: report.mode == ApplyMode::DryRun,
        grants_ending: report
            .ending
            .into_iter()
            .map(|o| EndingView {
                grant_id: o.grant.to_string(),
                identity: o.identity.to_string(),
                entitlement: o.entitlement.to_string(),
                target: o.target.to_string(),
                reason: o.reason.as_str().into(),
                because: o.because,
            })
            .collect(),
        warnings: report.warnings,
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
        before_seq: None,
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
pub struct CheckpointView {
    /// The head record signed.
    pub seq: i64,
    pub hash: String,
    pub at: String,
    /// The key that signed it (in the JWKS).
    pub kid: String,
    /// The compact JWS over `{iss, seq, hash, at}`.
    pub checkpoint: String,
}

/// Sign the audit chain's head now (admin, operator, auditor); the checkpoint is also
/// appended to the checkpoint file and logged.
#[utoipa::path(post, path = "/v1/audit/checkpoints", tag = "admin",
    responses((status = 201, body = CheckpointView), (status = 403, body = ErrorBody),
        (status = 409, description = "the audit log is empty or its chain is broken", body = ErrorBody)))]
pub async fn audit_checkpoint(
    State(s): State<AppState>,
    Auth(caller): Auth,
) -> ApiResult<(StatusCode, Json<CheckpointView>)> {
    let c = s.broker.checkpoint(&caller).await?;
    Ok((
        StatusCode::CREATED,
        Json(CheckpointView {
            seq: c.seq,
            hash: c.hash,
            at: c.at.to_rfc3339(),
            kid: c.kid,
            checkpoint: c.jws,
        }),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointVerdictView {
    /// Position of the checkpoint in the request (0-based).
    pub index: usize,
    /// The record it signed, when its signature verified.
    pub seq: Option<i64>,
    pub kid: Option<String>,
    /// `extended`, `not_extended` (the chain was rewritten or cut), `forged`,
    /// `key_gone` (unverifiable: the key is no longer in the JWKS) or `malformed`.
    pub status: String,
    pub problem: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointsVerifyView {
    /// True when the chain is intact and extends every checkpoint.
    pub ok: bool,
    pub records: u64,
    pub broken_at: Option<i64>,
    pub problem: Option<String>,
    pub checkpoints: Vec<CheckpointVerdictView>,
}

/// Walk the hash chain and check that it still extends every signed checkpoint given.
#[utoipa::path(post, path = "/v1/audit/verify", tag = "admin", request_body = VerifyCheckpointsBody,
    responses((status = 200, body = CheckpointsVerifyView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn audit_verify_checkpoints(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ApiJson(body): ApiJson<VerifyCheckpointsBody>,
) -> ApiResult<Json<CheckpointsVerifyView>> {
    let report = s
        .broker
        .verify_checkpoints(&caller, &body.checkpoints)
        .await?;
    let ok = report.ok();
    Ok(Json(CheckpointsVerifyView {
        ok,
        records: report.chain.records,
        broken_at: report.chain.broken.as_ref().map(|b| b.seq),
        problem: report.chain.broken.map(|b| b.problem),
        checkpoints: report
            .checkpoints
            .into_iter()
            .map(|c| CheckpointVerdictView {
                index: c.index,
                seq: c.seq,
                kid: c.kid,
                status: c.status.as_str().into(),
                problem: c.problem,
            })
            .collect(),
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

#[derive(Debug, Serialize, ToSchema)]
pub struct ConfigView {
    /// The stored configuration version in force (none before the first apply).
    pub version: Option<i64>,
    pub applied_at: Option<String>,
    /// Secrets appear only as the names of their references (`{"env": "VAR"}`,
    /// `{"file": "/path"}`), never as values.
    #[schema(value_type = Object)]
    pub tiers: serde_json::Value,
    #[schema(value_type = Vec<Object>)]
    pub issuers: Vec<serde_json::Value>,
    #[schema(value_type = Vec<Object>)]
    pub teams: Vec<serde_json::Value>,
    #[schema(value_type = Vec<Object>)]
    pub identities: Vec<serde_json::Value>,
    #[schema(value_type = Vec<Object>)]
    pub targets: Vec<serde_json::Value>,
    pub entitlements: Vec<EntitlementView>,
    pub policies: Vec<PolicyView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyView {
    pub id: String,
    pub text: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EntitlementView {
    pub name: String,
    pub target: String,
    pub tier: String,
    /// The longest grant: the smaller of its `max_ttl` and its tier's cap.
    pub max_ttl: String,
    /// `scopes`, `grants` (SQL) or `acl` (Redis).
    pub privileges_kind: String,
    pub privileges: Vec<String>,
    /// Who approves; for a workload's own list, resolved for its identity.
    pub approval_team: Option<String>,
    /// Emergency access: only for incidents; every grant alerts and opens an after-action
    /// review.
    pub break_glass: bool,
}

pub(crate) fn entitlement_view(
    catalog: &kairos_config::Catalog,
    e: &kairos_config::Entitlement,
    identity: Option<&kairos_domain::IdentityName>,
) -> EntitlementView {
    let team = match identity.and_then(|i| catalog.identity(i)) {
        Some(i) => Some(catalog.approval_team(e, i).to_string()),
        None => e.approval_team.as_ref().map(ToString::to_string),
    };
    EntitlementView {
        name: e.name.to_string(),
        target: e.target.to_string(),
        tier: serde_json::to_value(e.tier)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        max_ttl: catalog.effective_cap(e).to_string(),
        privileges_kind: e.privileges.key().into(),
        privileges: e.privileges.entries(),
        approval_team: team,
        break_glass: e.break_glass,
    }
}

fn values<'a, T: Serialize + 'a>(items: impl Iterator<Item = &'a T>) -> Vec<serde_json::Value> {
    items.filter_map(|i| serde_json::to_value(i).ok()).collect()
}

/// The configuration in force: issuers, teams, identities, targets, entitlements,
/// policies. Admins, operators and auditors; it holds no secret values.
#[utoipa::path(get, path = "/v1/config", tag = "admin",
    responses((status = 200, body = ConfigView), (status = 403, body = ErrorBody)))]
pub async fn config(State(s): State<AppState>, Auth(caller): Auth) -> ApiResult<Json<ConfigView>> {
    let (catalog, stored) = s.broker.config_for(&caller).await?;
    Ok(Json(ConfigView {
        version: stored.as_ref().map(|c| c.version),
        applied_at: stored.as_ref().map(|c| c.applied_at.to_rfc3339()),
        tiers: serde_json::to_value(catalog.tier_caps()).unwrap_or_default(),
        issuers: values(catalog.issuers()),
        teams: values(catalog.teams()),
        identities: values(catalog.identities()),
        targets: values(catalog.targets()),
        entitlements: catalog
            .entitlements()
            .map(|e| entitlement_view(&catalog, e, None))
            .collect(),
        policies: catalog
            .policies()
            .policies()
            .map(|p| PolicyView {
                id: p.id.clone(),
                text: p.text.clone(),
            })
            .collect(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EntitlementList {
    pub entitlements: Vec<EntitlementView>,
}

/// The entitlements one may ask for, with their target, tier and effective cap; called
/// by a workload, each names the team that would approve it for its identity. Policy
/// decides each request, so a listed entitlement may still be denied.
#[utoipa::path(get, path = "/v1/entitlements", tag = "admin",
    responses((status = 200, body = EntitlementList), (status = 401, body = ErrorBody)))]
pub async fn entitlements(
    State(s): State<AppState>,
    Auth(caller): Auth,
) -> ApiResult<Json<EntitlementList>> {
    let (catalog, identity) = s.broker.entitlements_for(&caller)?;
    Ok(Json(EntitlementList {
        entitlements: catalog
            .entitlements()
            .map(|e| entitlement_view(&catalog, e, identity.as_ref()))
            .collect(),
    }))
}
