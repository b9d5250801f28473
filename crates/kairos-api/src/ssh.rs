//! SSH targets: the CA public keys and the KRL that hosts read, and the CA's rotation.
//!
//! Who may call: `GET …/ssh/ca` and `GET …/ssh/krl` are unauthenticated. They hold
//! public keys and a list of revoked serials, nothing secret, and the fetchers on sshd
//! hosts (a cron job with curl) have no Kairos credential; an outsider learns which ssh
//! targets exist, as the hosts' own files would tell. Rotation (`POST …/ssh/ca`) is for
//! admins only, and audited.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::Auth;

/// The public keys sshd's `TrustedUserCAKeys` should hold for this target, one per line:
/// retired keys whose certificates may not have expired yet, then the current signer.
/// Unauthenticated (public keys only, read from the store: the first key is made at start
/// or by the apply that declares the target, never by this read).
#[utoipa::path(get, path = "/v1/targets/{target}/ssh/ca", tag = "ssh", security(()),
    params(("target" = String, Path, description = "an ssh target")),
    responses(
        (status = 200, description = "OpenSSH public keys, one per line", body = String, content_type = "text/plain"),
        (status = 404, description = "no such ssh target", body = ErrorBody)))]
pub async fn ca(State(s): State<AppState>, Path(target): Path<String>) -> ApiResult<Response> {
    let keys = s.broker.ssh_ca_public_keys(&target).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], keys).into_response())
}

/// The target's key revocation list (OpenSSH KRL format) for sshd's `RevokedKeys`: the
/// serials of certificates whose grants ended and that have not expired yet.
/// Unauthenticated (revoked serials only).
#[utoipa::path(get, path = "/v1/targets/{target}/ssh/krl", tag = "ssh", security(()),
    params(("target" = String, Path, description = "an ssh target")),
    responses(
        (status = 200, description = "the binary KRL", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 404, description = "no such ssh target", body = ErrorBody)))]
pub async fn krl(State(s): State<AppState>, Path(target): Path<String>) -> ApiResult<Response> {
    let bytes = s.broker.ssh_krl(&target).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SshCaRotated {
    /// The new signing key's id.
    pub ca_key: String,
    /// The keys to trust now, one per line (as `GET …/ssh/ca`).
    pub trusted: String,
}

/// Rotate the target's SSH CA key (admins): new certificates are signed by a new key; the
/// old key stays listed until every certificate it signed has expired. Audited.
#[utoipa::path(post, path = "/v1/targets/{target}/ssh/ca", tag = "ssh",
    params(("target" = String, Path, description = "an ssh target")),
    responses(
        (status = 200, body = SshCaRotated),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn rotate(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(target): Path<String>,
) -> ApiResult<Json<SshCaRotated>> {
    caller.require_role(&[], "rotate an SSH CA key")?;
    let ca_key = s.broker.rotate_ssh_ca(&caller.principal(), &target).await?;
    let trusted = s.broker.ssh_ca_public_keys(&target).await?;
    Ok(Json(SshCaRotated { ca_key, trusted }))
}
