//! What the API does with a JSON body before the broker sees it: decoding (with the same
//! errors as the handlers' extractor) and the checks each handler makes on the decoded
//! body. The handlers call these functions; the fuzz targets in `fuzz/` call
//! [`check_json_body`] with arbitrary bytes, without a server (this module is built
//! without the `server` feature too).

use kairos_crypto::issuer::SigningAlg;
use kairos_domain::{
    EntitlementName, IdentityName, TargetName, Task, TaskKind, TaskRef, TeamName, Ttl, UserName,
};

use crate::error::{ApiError, ApiResult};
use crate::extract::json_from_bytes;
use crate::views::{
    AddUserBody, BulkRevokeBody, ConfigBundleBody, CreateRequestBody, ReasonBody, RenewBody,
    RotateBody, TaskBody,
};

/// The JSON request bodies of the API, by endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonBody {
    /// `POST /v1/requests`
    CreateRequest,
    /// `POST /v1/requests/{id}/approve` and `/deny`
    Reason,
    /// `POST /v1/grants/{id}/renew`
    Renew,
    /// `POST /v1/grants/revoke`
    BulkRevoke,
    /// `POST /v1/config/apply` (decoding only: the catalog is validated by
    /// `kairos_config::Catalog::from_bundle`)
    ConfigApply,
    /// `POST /v1/keys`
    RotateKeys,
    /// `POST /v1/users` (name and teams; the role is parsed by the store's `Role`)
    AddUser,
}

impl JsonBody {
    /// Every JSON body.
    pub const ALL: [JsonBody; 7] = [
        Self::CreateRequest,
        Self::Reason,
        Self::Renew,
        Self::BulkRevoke,
        Self::ConfigApply,
        Self::RotateKeys,
        Self::AddUser,
    ];
}

/// Decodes `bytes` as the body of `endpoint` and runs the checks its handler makes before
/// calling the broker. `Ok` means the broker would be asked; an error is what the caller
/// would get back.
pub fn check_json_body(endpoint: JsonBody, bytes: &[u8]) -> ApiResult<()> {
    match endpoint {
        JsonBody::CreateRequest => {
            check_create_request(&json_from_bytes(bytes)?)?;
        }
        JsonBody::Reason => {
            check_reason(json_from_bytes::<ReasonBody>(bytes)?.reason)?;
        }
        JsonBody::Renew => {
            parse_ttl(&json_from_bytes::<RenewBody>(bytes)?.ttl)?;
        }
        JsonBody::BulkRevoke => {
            check_revoke_scope(json_from_bytes(bytes)?)?;
        }
        JsonBody::ConfigApply => {
            config_bundle_from_json(bytes)?;
        }
        JsonBody::RotateKeys => {
            check_rotate(json_from_bytes(bytes)?)?;
        }
        JsonBody::AddUser => {
            check_add_user(json_from_bytes(bytes)?)?;
        }
    }
    Ok(())
}

/// The configuration bundle in a `POST /v1/config/apply` body, decoded as its handler
/// decodes it.
pub fn config_bundle_from_json(bytes: &[u8]) -> ApiResult<kairos_config::ConfigBundle> {
    Ok(config_bundle(json_from_bytes(bytes)?))
}

pub(crate) fn config_bundle(body: ConfigBundleBody) -> kairos_config::ConfigBundle {
    kairos_config::ConfigBundle {
        main_path: body.main_path,
        files: body.files,
    }
}

/// A `POST /v1/requests` body that passed the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedRequest {
    pub identity: Option<IdentityName>,
    pub entitlement: EntitlementName,
    pub ttl: Option<Ttl>,
    pub task: Task,
    pub public_key: Option<kairos_ssh::PublicKey>,
}

/// The checks `POST /v1/requests` makes before the broker sees the request.
pub fn check_create_request(body: &CreateRequestBody) -> ApiResult<CheckedRequest> {
    Ok(CheckedRequest {
        identity: body.identity.as_deref().map(parse_identity).transpose()?,
        entitlement: parse_entitlement(&body.entitlement)?,
        ttl: body.ttl.as_deref().map(parse_ttl).transpose()?,
        task: parse_task(&body.task)?,
        public_key: body
            .public_key
            .as_deref()
            .map(|k| {
                kairos_ssh::PublicKey::parse_openssh(k).map_err(|e| {
                    ApiError::bad_request("invalid_public_key", format!("public_key: {e}"))
                })
            })
            .transpose()?,
    })
}

/// What `POST /v1/grants/revoke` asks to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckedScope {
    Identity(IdentityName),
    TaskRef(TaskRef),
}

pub fn check_revoke_scope(body: BulkRevokeBody) -> ApiResult<CheckedScope> {
    match (body.identity, body.task_ref) {
        (Some(i), None) => Ok(CheckedScope::Identity(parse_identity(&i)?)),
        (None, Some(t)) => Ok(CheckedScope::TaskRef(parse_task_ref(t)?)),
        _ => Err(ApiError::bad_request(
            "bad_scope",
            "give exactly one of `identity` or `task_ref`",
        )),
    }
}

/// The algorithm `POST /v1/keys` rotates to (`None`: the default).
pub fn check_rotate(body: RotateBody) -> ApiResult<Option<SigningAlg>> {
    body.alg
        .map(|a| {
            a.parse::<SigningAlg>()
                .map_err(|_| ApiError::bad_request("bad_alg", "alg must be es256 or eddsa"))
        })
        .transpose()
}

/// A checked `POST /v1/users` body; its role is left as written.
pub struct NewUserInput {
    pub name: UserName,
    pub role: String,
    pub teams: Vec<TeamName>,
    pub targets: Vec<TargetName>,
}

/// The name, teams and targets of a `POST /v1/users` body, checked.
pub fn check_add_user(body: AddUserBody) -> ApiResult<NewUserInput> {
    let name =
        UserName::parse(body.name).map_err(|e| ApiError::bad_request("bad_name", e.to_string()))?;
    let teams = body
        .teams
        .into_iter()
        .map(|t| TeamName::parse(t).map_err(|e| ApiError::bad_request("bad_team", e.to_string())))
        .collect::<ApiResult<Vec<_>>>()?;
    let targets = body
        .targets
        .into_iter()
        .map(|t| {
            TargetName::parse(t).map_err(|e| ApiError::bad_request("bad_target", e.to_string()))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(NewUserInput {
        name,
        role: body.role,
        teams,
        targets,
    })
}

/// An approval's or a denial's reason.
pub fn check_reason(reason: String) -> ApiResult<String> {
    if reason.trim().is_empty() || reason.chars().count() > 1000 {
        return Err(ApiError::bad_request(
            "bad_reason",
            "reason must be 1-1000 characters: say why",
        ));
    }
    Ok(reason)
}

pub fn parse_ttl(s: &str) -> ApiResult<Ttl> {
    Ttl::parse(s).map_err(|e| ApiError::bad_request("bad_ttl", e.to_string()))
}

pub fn parse_task(t: &TaskBody) -> ApiResult<Task> {
    let bad = |e: kairos_domain::TaskError| ApiError::bad_request("bad_task", e.to_string());
    let kind: TaskKind = t.kind.parse().map_err(bad)?;
    let reference = TaskRef::parse(t.reference.clone()).map_err(bad)?;
    Task::new(kind, reference, t.reason.clone()).map_err(bad)
}

pub fn parse_task_ref(t: String) -> ApiResult<TaskRef> {
    TaskRef::parse(t).map_err(|e| ApiError::bad_request("bad_task_ref", e.to_string()))
}

pub fn parse_entitlement(s: &str) -> ApiResult<EntitlementName> {
    EntitlementName::parse(s).map_err(|e| ApiError::bad_request("bad_entitlement", e.to_string()))
}

pub fn parse_identity(s: &str) -> ApiResult<IdentityName> {
    IdentityName::parse(s).map_err(|e| ApiError::bad_request("bad_identity", e.to_string()))
}
