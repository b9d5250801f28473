//! JSON shapes of the API (what goes over the wire), converted from domain objects.

use kairos_domain::{Grant, GrantState, Request};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TaskBody {
    /// `change`, `incident`, `maintenance` or `job`.
    pub kind: String,
    /// Ticket, pipeline run or incident id.
    #[serde(rename = "ref")]
    pub reference: String,
    /// Why the access is needed.
    pub reason: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequestBody {
    /// The entitlement, `target/role`.
    pub entitlement: String,
    /// e.g. `15m`; defaults to 15m, capped by the entitlement.
    pub ttl: Option<String>,
    pub task: TaskBody,
    /// Only when a person requests on behalf of an identity.
    pub identity: Option<String>,
    /// Required for entitlements on ssh targets (refused for others): the SSH public key
    /// to certify, in OpenSSH one-line format (`ssh-ed25519 AAAA… comment`); Ed25519,
    /// ECDSA or RSA of at least 2048 bits.
    pub public_key: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionView {
    /// `grant`, `pending` or `deny`.
    pub outcome: String,
    pub approvals_required: u32,
    pub policies: Vec<String>,
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalView {
    pub approver: String,
    pub at: String,
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RequestView {
    pub id: String,
    /// `pending`, `granted`, `denied` or `expired`.
    pub state: String,
    pub identity: String,
    pub entitlement: String,
    pub ttl: String,
    pub task: TaskBody,
    pub requester: String,
    pub decision: DecisionView,
    pub approvals: Vec<ApprovalView>,
    pub denial: Option<ApprovalView>,
    pub created_at: String,
    pub pending_until: Option<String>,
    pub grant_id: Option<String>,
    /// For a renewal waiting for approvals: the grant it extends once approved (its
    /// `ttl` is then the grant's whole lifetime after the renewal).
    pub renews: Option<String>,
    /// The address the request came from, when known.
    pub source_ip: Option<String>,
}

impl From<&Request> for RequestView {
    fn from(r: &Request) -> Self {
        let approval = |a: &kairos_domain::Approval| ApprovalView {
            approver: a.approver.to_string(),
            at: a.at.to_rfc3339(),
            reason: a.reason.clone(),
        };
        let (outcome, approvals_required) = match r.decision.outcome {
            kairos_domain::DecisionOutcome::Deny => ("deny", 0),
            kairos_domain::DecisionOutcome::Grant => ("grant", 0),
            kairos_domain::DecisionOutcome::Pending { approvals } => ("pending", approvals),
        };
        Self {
            id: r.id.to_string(),
            state: r.state.as_str().into(),
            identity: r.identity.to_string(),
            entitlement: r.entitlement.to_string(),
            ttl: r.ttl.to_string(),
            task: task_body(&r.task),
            requester: r.requester.to_string(),
            decision: DecisionView {
                outcome: outcome.into(),
                approvals_required,
                policies: r.decision.policies.clone(),
                reason: r.decision.reason.clone(),
            },
            approvals: r.approvals.iter().map(approval).collect(),
            denial: r.denial.as_ref().map(approval),
            created_at: r.created_at.to_rfc3339(),
            pending_until: r.pending_until.map(|t| t.to_rfc3339()),
            grant_id: r.grant_id.as_ref().map(ToString::to_string),
            renews: r.renews.as_ref().map(ToString::to_string),
            source_ip: r.source_ip.map(|ip| ip.to_string()),
        }
    }
}

fn task_body(t: &kairos_domain::Task) -> TaskBody {
    TaskBody {
        kind: t.kind.to_string(),
        reference: t.reference.to_string(),
        reason: t.reason.clone(),
    }
}

/// The end-of-access receipt: when it ended, and when Kairos verified it was gone.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiptView {
    /// `expired`, `released` or `revoked`.
    pub reason: String,
    pub ended_by: String,
    pub ended_at: String,
    pub revoked_at: Option<String>,
    pub verified_at: Option<String>,
    pub method: Option<String>,
    pub evidence: Option<String>,
    /// Failed propagation attempts so far (while `revoking`).
    pub attempts: u32,
    pub last_error: Option<String>,
    /// For a token grant with SET receivers (`[[set_receiver]]`): what each was sent and
    /// whether it acknowledged. Absent from lists and when there are none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_receivers: Option<Vec<SetReceiptView>>,
}

/// One SET receiver's part in a token grant's receipt.
#[derive(Debug, Serialize, ToSchema)]
pub struct SetReceiptView {
    pub receiver: String,
    /// `push` or `poll`.
    pub delivery: String,
    /// The SET's `jti`.
    pub jti: String,
    /// `pending` (not acknowledged yet), `acked`, `failed` (the receiver refused it) or
    /// `dead` (undelivered for a day).
    pub state: String,
    /// When the receiver acknowledged it (or refused it).
    pub acknowledged_at: Option<String>,
    /// Until when the receipt waits for this receiver (its `ack_timeout`).
    pub wait_until: String,
    /// Failed push attempts so far.
    pub attempts: u32,
    pub last_error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GrantView {
    pub id: String,
    /// `provisioning` (account being created), `active`, `revoking` (ended, not yet
    /// verified gone) or `ended` (verified).
    pub state: String,
    pub request_id: String,
    pub identity: String,
    pub entitlement: String,
    pub target: String,
    pub audience: String,
    pub scopes: Vec<String>,
    pub task: TaskBody,
    pub issued_at: String,
    pub expires_at: String,
    pub max_expires_at: String,
    pub receipt: Option<ReceiptView>,
    /// How the grant has been used (introspections of its token, sessions of its account
    /// seen at reconcile), as far as written (usage is flushed about once a second).
    /// Absent from lists; `null` when never used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<UsageView>>,
}

/// How a grant has been used.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageView {
    pub first_used_at: String,
    pub last_used_at: String,
    pub uses: u64,
    /// The address of the last use, when known.
    pub last_source: Option<String>,
    /// Who used it last: `user:<resource server>` (or another caller of introspection),
    /// or `session@<target>` for a database session.
    pub last_client: Option<String>,
}

impl From<&Grant> for GrantView {
    fn from(g: &Grant) -> Self {
        let receipt = match &g.state {
            GrantState::Provisioning | GrantState::Active => None,
            GrantState::Ending {
                end,
                attempts,
                last_error,
            } => Some(ReceiptView {
                reason: end.reason.to_string(),
                ended_by: end.by.to_string(),
                ended_at: end.at.to_rfc3339(),
                revoked_at: None,
                verified_at: None,
                method: None,
                evidence: None,
                attempts: *attempts,
                last_error: last_error.clone(),
                set_receivers: None,
            }),
            GrantState::Ended { end, receipt } => Some(ReceiptView {
                reason: end.reason.to_string(),
                ended_by: end.by.to_string(),
                ended_at: end.at.to_rfc3339(),
                revoked_at: Some(receipt.revoked_at.to_rfc3339()),
                verified_at: Some(receipt.verified_at.to_rfc3339()),
                method: Some(receipt.method.clone()),
                evidence: Some(receipt.evidence.clone()),
                attempts: 0,
                last_error: None,
                set_receivers: None,
            }),
        };
        Self {
            id: g.id.to_string(),
            state: g.state.name().into(),
            request_id: g.request_id.to_string(),
            identity: g.identity.to_string(),
            entitlement: g.entitlement.to_string(),
            target: g.target.to_string(),
            audience: g.audience.clone(),
            scopes: g.scopes.clone(),
            task: task_body(&g.task),
            issued_at: g.issued_at.to_rfc3339(),
            expires_at: g.expires_at.to_rfc3339(),
            max_expires_at: g.max_expires_at.to_rfc3339(),
            receipt,
            usage: None,
        }
    }
}

/// A credential, shown to the workload it was issued to: a token, or a database account
/// (whose password is shown once and never stored in plain text).
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialView {
    /// `token`, `postgres`, `mariadb` or `redis`.
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// `Bearer`, or `DPoP` for a token bound to the key of the DPoP proof the request
    /// came with (present it with `Authorization: DPoP <token>` and a fresh proof).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// `ssh`: the OpenSSH user certificate for the request's `public_key` (one line; save
    /// it as `<key>-cert.pub` or pass it with `ssh -o CertificateFile=`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_certificate: Option<String>,
    /// `ssh`: the certificate's serial (what the target's KRL lists once the grant ends).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_serial: Option<u64>,
    /// `ssh`: the user names the certificate may log in as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principals: Option<Vec<String>>,
    /// When the credential stops working (`ssh`: the certificate's `valid_before`).
    pub expires_at: String,
}

#[cfg(feature = "server")]
impl From<kairos_broker::IssuedCredential> for CredentialView {
    fn from(c: kairos_broker::IssuedCredential) -> Self {
        use secrecy::ExposeSecret;
        let expires_at = c.expires_at().to_rfc3339();
        match c {
            kairos_broker::IssuedCredential::Token {
                access_token, cnf, ..
            } => Self {
                kind: "token".into(),
                access_token: Some(access_token),
                // RFC 9449 §5: a token bound to a DPoP key is of type `DPoP`.
                token_type: Some(
                    if cnf.as_ref().is_some_and(|c| c.jkt.is_some()) {
                        "DPoP"
                    } else {
                        "Bearer"
                    }
                    .into(),
                ),
                host: None,
                port: None,
                database: None,
                username: None,
                password: None,
                ssh_certificate: None,
                ssh_serial: None,
                principals: None,
                expires_at,
            },
            kairos_broker::IssuedCredential::Account {
                kind,
                info,
                password,
                ..
            } => Self {
                kind: kind.into(),
                access_token: None,
                token_type: None,
                host: Some(info.host),
                port: Some(info.port),
                database: info.database,
                username: Some(info.username),
                password: Some(password.expose_secret().to_owned()),
                ssh_certificate: None,
                ssh_serial: None,
                principals: None,
                expires_at,
            },
            kairos_broker::IssuedCredential::Ssh(c) => Self {
                kind: "ssh".into(),
                access_token: None,
                token_type: None,
                host: None,
                port: None,
                database: None,
                username: None,
                password: None,
                ssh_certificate: Some(c.certificate),
                ssh_serial: Some(c.serial),
                principals: Some(c.principals),
                expires_at,
            },
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RequestResponse {
    pub request: RequestView,
    pub grant: Option<GrantView>,
    pub credential: Option<CredentialView>,
    /// True when the TTL was lowered to the entitlement's cap.
    pub ttl_capped: bool,
    /// A break-glass grant: the after-action review it opened (`GET /v1/reviews/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review_id: Option<String>,
}

#[cfg(feature = "server")]
impl From<kairos_broker::RequestOutcome> for RequestResponse {
    fn from(o: kairos_broker::RequestOutcome) -> Self {
        Self {
            request: RequestView::from(&o.request),
            grant: o.grant.as_ref().map(GrantView::from),
            credential: o.credential.map(CredentialView::from),
            ttl_capped: o.ttl_capped,
            review_id: o.review.as_ref().map(ToString::to_string),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Why you approve or deny.
    pub reason: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewBody {
    /// Extend to now + ttl (never past the grant's maximum), e.g. `10m`.
    pub ttl: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRevokeBody {
    /// Revoke every active grant of this identity.
    pub identity: Option<String>,
    /// Revoke every active grant for this task reference.
    pub task_ref: Option<String>,
    /// Why (1-1000 characters); kept in each revocation's audit record as `note`.
    #[schema(min_length = 1, max_length = 1000)]
    pub reason: Option<String>,
}

/// The optional body of `POST /v1/grants/{id}/revoke`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    /// Why (1-1000 characters); kept in the revocation's audit record as `note`.
    #[schema(min_length = 1, max_length = 1000)]
    pub reason: Option<String>,
}

/// A configuration file and the files it references, as `kairos apply` sends them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigBundleBody {
    /// Path of the main TOML file, as named in error messages.
    pub main_path: String,
    /// Every file by path (the main file, JWKS files, Cedar policies).
    pub files: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// `es256` (default) or `eddsa`.
    pub alg: Option<String>,
}

/// Checkpoints to check the audit chain against.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyCheckpointsBody {
    /// Compact JWS checkpoints as published (the `checkpoint` member of each line of the
    /// checkpoint file).
    pub checkpoints: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddUserBody {
    pub name: String,
    /// `admin`, `operator`, `approver`, `auditor` or `resource-server`.
    pub role: String,
    #[serde(default)]
    pub teams: Vec<String>,
    /// For a `resource-server`: the token targets whose tokens it may introspect and revoke.
    #[serde(default)]
    pub targets: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GrantList {
    pub grants: Vec<GrantView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RequestList {
    pub requests: Vec<RequestView>,
}

/// Whether this replica can serve: the store answers, its schema is current, and the
/// catalog in force was confirmed current within 2 s.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyView {
    pub ready: bool,
    /// Why not, one sentence each (absent when ready).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// The process is up and its event loop answers (reads nothing).
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveView {
    pub live: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthView {
    /// `ok`, or `degraded` while revocations on some target keep failing (they alarm:
    /// access there may persist until they succeed).
    #[schema(example = "ok")]
    pub status: String,
    pub store: String,
    pub version: String,
    /// The targets whose revocations alarm (empty when `status` is `ok`).
    pub degraded_targets: Vec<String>,
}
