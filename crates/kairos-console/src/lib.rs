//! The Kairos web console: server-rendered pages for the people around the core loop
//! (approvers, operators, auditors), under `/ui`.
//!
//! [`router`] is merged by the server beside the API. Pages are askama templates compiled
//! into the binary; the one stylesheet is embedded too. No page needs JavaScript: every
//! action is an HTML form that posts and redirects (POST-redirect-GET).
//!
//! Invariants:
//! - **The broker decides.** Every page and form calls the same `Broker` method as the
//!   matching API handler, with the signed-in person as the caller: roles, "only the
//!   approving team's approvers count" and "never the requester" hold as in the API, and
//!   the broker audits each action as that person.
//! - **People sign in with single sign-on** (OpenID Connect code flow with PKCE, `oidc`)
//!   or, unless `[console] api_token_sign_in = false`, with their API token. The IdP names
//!   an existing Kairos person; with a groups claim it narrows their teams for the session,
//!   never widens them.
//! - **Sessions live in the store** (`console_sessions`, migration 0015): the cookie
//!   `kairos_session` (HttpOnly, SameSite=Lax, Path=/ui, Secure under TLS) carries a random
//!   256-bit id of which only the SHA-256 is stored; each request re-checks the absolute
//!   end, the idle limit, and that the person and the API token they signed in with still
//!   stand. Anything else is a redirect to the sign-in page that reveals nothing.
//! - **CSRF**: every state-changing form carries the session's CSRF secret, compared in
//!   constant time before anything else happens; without it the answer is 403 and nothing
//!   changes. Forms posted from another origin are refused as well.
//! - **Headers**: every answer carries a Content-Security-Policy without `unsafe-inline`
//!   (no script at all), `frame-ancestors 'none'`, `X-Content-Type-Options: nosniff`,
//!   `Referrer-Policy: same-origin`; pages are `Cache-Control: no-store`.
//! - The broker emits data; only this crate writes HTML.
//!
//! Who may call what (as the API: the role checks are the broker's):
//!
//! | path | method | who |
//! |---|---|---|
//! | `/ui/login` | GET, POST | anyone; only people (not workloads, not resource servers) get a session; POST refused (403) when `[console] api_token_sign_in = false` |
//! | `/ui/sso/start`, `/ui/sso/callback` | GET | anyone / the browser that started the flow; a session only for an existing Kairos person the IdP names (see `oidc`) |
//! | `/ui/logout` | POST | a signed-in person (CSRF) |
//! | `/ui/inbox` | GET | admin, operator, approver, auditor (shows what waits for the caller's decision) |
//! | `/ui/requests`, `/ui/requests/{id}` | GET | admin, operator, approver, auditor; a request's requester for that request |
//! | `/ui/requests/{id}/approve`, `/deny` | POST | an approver of the approving team (admins only if listed), never the requester (CSRF) |
//! | `/ui/grants`, `/ui/grants/{id}` | GET | admin, operator, approver, auditor (the timeline: admin, operator, auditor) |
//! | `/ui/grants/{id}/revoke` | POST | admin, operator (CSRF) |
//! | `/ui/audit`, `/ui/audit/export`, `/ui/audit/verify` | GET | admin, operator, auditor |
//! | `/ui/identities` | GET | admin, operator, approver, auditor |
//! | `/ui/alerts`, `/ui/alerts/{id}` | GET | admin, operator, auditor; an approver the alerts of their teams' identities (others' are 404) |
//! | `/ui/alerts/{id}/acknowledge`, `/resolve` | POST | admin, operator; an approver for their teams' identities; never an auditor (CSRF, note required) |
//! | `/ui/reviews`, `/ui/reviews/{id}` | GET | admin, operator, approver, auditor |
//! | `/ui/reviews/{id}/file` | POST | an owner of the identity's team (`[[team]] owners`), whatever their role; an admin when nobody owns it any more (CSRF) |
//! | `/ui/recertifications` | GET | admin, operator, approver, auditor |
//! | `/ui/recertifications/identity/{name}/attest`, `/exception/{name}/attest` | POST | an owner of the subject's team, whatever their role (CSRF, reason required) |
//! | `/ui/recertifications/identity/{name}/retire` | POST | an owner of the identity's team, whatever their role (CSRF, reason required) |
//! | `/ui/exceptions` | GET | admin, operator, approver, auditor |
//! | `/ui/exceptions/{name}/rotated` | POST | an owner of the exception's team, an operator, an admin (CSRF) |
//! | `/ui/posture` | GET | admin, operator, auditor |
//! | `/ui/notifications` | GET | admin, operator, auditor |
//! | `/ui/notifications/{id}/retry` | POST | admin, operator; a dead notification only (CSRF) |
//! | `/ui/static/console.css` | GET | anyone |

mod auth;
mod charts;
mod error;
mod governance;
pub mod oidc;
mod pages;
pub mod session;
mod text;
mod views;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::routing::{get, post};
use kairos_broker::Broker;

pub use auth::ConsoleSettings;
pub use session::{CookieTransport, SessionLimits};

use auth::ConsoleState;

/// The stylesheet, embedded in the binary.
const CSS: &str = include_str!("../static/console.css");

/// No inline script or style anywhere: everything comes from this origin's stylesheet.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'none'; \
     style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The console's routes, all under `/ui`, to merge beside the API.
pub fn router(broker: Arc<Broker>, settings: ConsoleSettings) -> Router {
    let state = ConsoleState {
        broker,
        settings,
        oidc: Arc::new(oidc::OidcClient::new()),
    };
    Router::new()
        .route("/ui", get(pages::home))
        .route("/ui/", get(pages::home))
        .route("/ui/login", get(pages::login_form).post(pages::login))
        .route("/ui/logout", post(pages::logout))
        // Single sign-on (OpenID Connect, `oidc`).
        .route("/ui/sso/start", get(oidc::start))
        .route("/ui/sso/callback", get(oidc::callback))
        .route("/ui/inbox", get(pages::inbox))
        .route("/ui/requests", get(pages::requests))
        .route("/ui/requests/{id}", get(pages::request))
        .route("/ui/requests/{id}/approve", post(pages::approve))
        .route("/ui/requests/{id}/deny", post(pages::deny))
        .route("/ui/grants", get(pages::grants))
        .route("/ui/grants/{id}", get(pages::grant))
        .route("/ui/grants/{id}/revoke", post(pages::revoke))
        .route("/ui/audit", get(pages::audit))
        .route("/ui/audit/export", get(pages::audit_export))
        .route("/ui/audit/verify", get(pages::audit_verify))
        .route("/ui/identities", get(pages::identities))
        // Governance: alerts, after-action reviews, recertifications, standing
        // exceptions, the posture report and the notification outbox.
        .route("/ui/alerts", get(governance::alerts))
        .route("/ui/alerts/{id}", get(governance::alert))
        .route(
            "/ui/alerts/{id}/acknowledge",
            post(governance::acknowledge_alert),
        )
        .route("/ui/alerts/{id}/resolve", post(governance::resolve_alert))
        .route("/ui/reviews", get(governance::reviews))
        .route("/ui/reviews/{id}", get(governance::review))
        .route("/ui/reviews/{id}/file", post(governance::file_review))
        .route("/ui/recertifications", get(governance::recertifications))
        .route(
            "/ui/recertifications/identity/{name}/retire",
            post(governance::retire),
        )
        .route(
            "/ui/recertifications/identity/{name}/attest",
            post(governance::attest_identity),
        )
        .route(
            "/ui/recertifications/exception/{name}/attest",
            post(governance::attest_exception),
        )
        .route("/ui/exceptions", get(governance::exceptions))
        .route(
            "/ui/exceptions/{name}/rotated",
            post(governance::exception_rotated),
        )
        .route("/ui/posture", get(governance::posture))
        .route("/ui/notifications", get(governance::notifications))
        .route(
            "/ui/notifications/{id}/retry",
            post(governance::retry_notification),
        )
        .route("/ui/static/console.css", get(stylesheet))
        .route("/ui/{*rest}", get(pages::not_found).post(pages::not_found))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}

async fn stylesheet() -> impl axum::response::IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        CSS,
    )
}

/// The security headers of every console answer; `no-store` unless the handler set its
/// own cache policy (only the stylesheet does).
async fn security_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
