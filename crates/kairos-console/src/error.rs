//! What a console page answers when it cannot do what was asked: an HTML page with a
//! status that says what was wrong. 5xx pages are opaque; the cause goes to the log.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use kairos_broker::BrokerError;

use crate::text::clean;

/// A refusal or failure of a console page.
#[derive(Debug)]
pub enum PageError {
    /// The broker refused or failed.
    Broker(BrokerError),
    /// A state-changing form came without this session's CSRF token.
    Csrf,
    /// A cross-site form post (its `Origin` or `Sec-Fetch-Site` says another site).
    CrossSite,
    /// The form or query is malformed; the message says how to fix it.
    BadInput(String),
    /// No such page or object.
    NotFound(String),
    /// The signed-in caller may not use the console at all (workloads, resource servers).
    NotAPerson(String),
}

impl From<BrokerError> for PageError {
    fn from(e: BrokerError) -> Self {
        Self::Broker(e)
    }
}

impl From<kairos_store::StoreError> for PageError {
    fn from(e: kairos_store::StoreError) -> Self {
        Self::Broker(e.into())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    title: String,
    heading: &'static str,
    message: String,
}

impl PageError {
    fn parts(self) -> (StatusCode, &'static str, String) {
        match self {
            Self::Broker(e) => match e {
                BrokerError::Unauthenticated(m) => {
                    (StatusCode::UNAUTHORIZED, "Not signed in", m)
                }
                BrokerError::Forbidden(m) => (StatusCode::FORBIDDEN, "Not allowed", m),
                BrokerError::Denied(d) => (
                    StatusCode::FORBIDDEN,
                    "Denied by policy",
                    format!("{} (policies: {})", d.reason, d.policies.join(", ")),
                ),
                BrokerError::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m),
                BrokerError::Invalid { message, .. } => {
                    (StatusCode::BAD_REQUEST, "Not valid", message)
                }
                BrokerError::Conflict(m) => (StatusCode::CONFLICT, "Not possible now", m),
                BrokerError::Target {
                    unavailable,
                    message,
                } => (
                    if unavailable {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::BAD_GATEWAY
                    },
                    "The target did not do its part",
                    message,
                ),
                BrokerError::StoreUnavailable(m) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "The store is unreachable", m)
                }
                BrokerError::Internal(cause) => {
                    tracing::error!(error = %cause, "console page failed");
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Something went wrong",
                        "Kairos could not complete this; the cause is in the server's log."
                            .into(),
                    )
                }
            },
            Self::Csrf => (
                StatusCode::FORBIDDEN,
                "Form refused",
                "This form did not carry your session's CSRF token, so nothing was changed. Reload the page and submit it again.".into(),
            ),
            Self::CrossSite => (
                StatusCode::FORBIDDEN,
                "Form refused",
                "This form was posted from another site, so nothing was changed.".into(),
            ),
            Self::BadInput(m) => (StatusCode::BAD_REQUEST, "Not valid", m),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m),
            Self::NotAPerson(m) => (StatusCode::FORBIDDEN, "The console is for people", m),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, heading, message) = self.parts();
        let page = ErrorPage {
            title: format!("{} {}", status.as_u16(), heading),
            heading,
            message: clean(&message),
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(e) => {
                tracing::error!(error = %e, "console error page did not render");
                (status, heading).into_response()
            }
        }
    }
}
