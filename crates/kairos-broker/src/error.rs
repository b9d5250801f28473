use kairos_domain::{Decision, TransitionError};
use kairos_store::StoreError;

/// Everything the broker can refuse or fail with. The API crate maps each variant to an
/// HTTP status; the 4xx variants carry a message that says how to fix the input.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// No or bad credentials (401). The message never contains the credential.
    #[error("{0}")]
    Unauthenticated(String),
    /// Authenticated but not allowed (403).
    #[error("{0}")]
    Forbidden(String),
    /// Policy said no (403), with the decision that says why.
    #[error("request denied: {}", .0.reason)]
    Denied(Decision),
    /// The input names something that does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The input is malformed or out of range (400). `code` is machine-readable.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// The operation conflicts with the object's state (409).
    #[error("{0}")]
    Conflict(String),
    /// A downstream target could not do its part (503 when unreachable, 502 otherwise).
    /// Nothing was left half-created.
    #[error("{message}")]
    Target { unavailable: bool, message: String },
    /// The store cannot be reached (503): nothing was decided or changed; try again once
    /// it is back. The message says so without naming the store's address.
    #[error("{0}")]
    StoreUnavailable(String),
    /// Something on our side failed (500); the cause goes to the log, not the caller.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl BrokerError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            code,
            message: message.into(),
        }
    }
    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(e))
    }
}

/// What a caller is told while the store cannot be reached.
pub(crate) const STORE_UNREACHABLE: &str = "the store (PostgreSQL) is unreachable, so nothing was decided or changed; try again shortly (GET /v1/health/ready says when this replica is ready)";

impl From<StoreError> for BrokerError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::NotFound(format!("{what} not found")),
            StoreError::Conflict(msg) => Self::Conflict(msg),
            StoreError::Transition(t) => t.into(),
            StoreError::Review(r) => r.into(),
            other if other.is_unreachable() => {
                tracing::warn!(error = %crate::ending::ErrorChain(&other), "the store is unreachable");
                Self::StoreUnavailable(STORE_UNREACHABLE.to_owned())
            }
            other => Self::internal(other),
        }
    }
}

impl From<TransitionError> for BrokerError {
    fn from(e: TransitionError) -> Self {
        match e {
            TransitionError::SelfApproval | TransitionError::AlreadyApproved(_) => {
                Self::Forbidden(e.to_string())
            }
            TransitionError::RenewPastMax { .. } | TransitionError::RenewInPast => {
                Self::invalid("ttl_over_cap", e.to_string())
            }
            _ => Self::Conflict(e.to_string()),
        }
    }
}

impl From<kairos_domain::ReviewError> for BrokerError {
    fn from(e: kairos_domain::ReviewError) -> Self {
        match e {
            kairos_domain::ReviewError::AlreadyFiled { .. } => Self::Conflict(e.to_string()),
            kairos_domain::ReviewError::BadSummary => Self::invalid("bad_summary", e.to_string()),
        }
    }
}

pub type Result<T, E = BrokerError> = std::result::Result<T, E>;
