//! The one error type of the API: `{"error": {"code", "message"}}`.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable, e.g. `ttl_over_cap`, `unauthenticated`, `not_found`.
    pub code: String,
    /// What was wrong and how to fix it.
    pub message: String,
    /// For `denied`: the policies that determined the decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub policies: Option<Vec<String>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
            policies: None,
        }
    }
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

#[cfg(feature = "server")]
impl From<kairos_broker::BrokerError> for ApiError {
    fn from(e: kairos_broker::BrokerError) -> Self {
        use kairos_broker::BrokerError;
        use kairos_broker::ending::ErrorChain;
        match e {
            BrokerError::Unauthenticated(m) => {
                Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", m)
            }
            BrokerError::Forbidden(m) => Self::new(StatusCode::FORBIDDEN, "forbidden", m),
            BrokerError::Denied(d) => Self {
                status: StatusCode::FORBIDDEN,
                code: "denied".into(),
                message: format!("request denied: {}", d.reason),
                policies: Some(d.policies),
            },
            BrokerError::NotFound(m) => Self::not_found(m),
            BrokerError::Invalid { code, message } => Self::bad_request(code, message),
            BrokerError::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            BrokerError::Target {
                unavailable: true,
                message,
            } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "target_unavailable",
                message,
            ),
            BrokerError::Target {
                unavailable: false,
                message,
            } => Self::new(StatusCode::BAD_GATEWAY, "target_failed", message),
            BrokerError::StoreUnavailable(m) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", m)
            }
            BrokerError::Internal(cause) => {
                tracing::error!(error = %ErrorChain(&*cause), "internal error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Kairos failed to handle the request; the cause is in the server log",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                policies: self.policies,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"kairos\""),
            );
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
