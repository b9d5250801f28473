//! The Kairos HTTP API.
//!
//! [`router`] builds the whole app from a [`Broker`]; tests drive it on port 0.
//! Invariant: this is the only crate that knows HTTP status codes and JSON wire shapes;
//! it holds no state of its own beyond the broker handle.

mod admin;
mod error;
mod extract;
mod grants;
mod oauth;
mod requests;
pub mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use kairos_broker::Broker;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{ApiError, ErrorBody};

/// Request bodies above this size are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub broker: Arc<Broker>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Kairos",
        description = "Just-in-time access for non-human identities: time-bound, task-bound, revocable, and verified gone.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "requests", description = "Ask for an entitlement for a task; approvals"),
        (name = "grants", description = "Issued access and how it ends"),
        (name = "oauth", description = "RFC 7662 introspection, RFC 7009 revocation, RFC 8693 token exchange"),
        (name = "admin", description = "Configuration, keys, people, audit"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document of `/v1`, generated from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().split_for_parts().1
}

fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(requests::create, requests::list))
        .routes(routes!(requests::get))
        .routes(routes!(requests::approve))
        .routes(routes!(requests::deny))
        .routes(routes!(grants::list))
        .routes(routes!(grants::get))
        .routes(routes!(grants::release))
        .routes(routes!(grants::revoke_one))
        .routes(routes!(grants::renew))
        .routes(routes!(grants::revoke_bulk))
        .routes(routes!(oauth::introspect))
        .routes(routes!(oauth::revoke))
        .routes(routes!(oauth::token))
        .routes(routes!(admin::apply_config))
        .routes(routes!(admin::audit))
        .routes(routes!(admin::audit_verify))
        .routes(routes!(admin::keys, admin::rotate_keys))
        .routes(routes!(admin::add_user, admin::list_users))
        .routes(routes!(admin::revoke_user))
}

/// The whole application.
pub fn router(broker: Arc<Broker>) -> Router {
    let state = AppState { broker };
    let (api, doc) = api_routes().split_for_parts();
    let doc = Arc::new(doc);
    api.route(
        "/v1/openapi.json",
        get(move || {
            let doc = Arc::clone(&doc);
            async move { axum::Json(doc.as_ref().clone()) }
        }),
    )
    .route("/metrics", get(metrics))
    .route("/.well-known/jwks.json", get(oauth::jwks))
    .route("/.well-known/openid-configuration", get(oauth::discovery))
    .fallback(not_found)
    .method_not_allowed_fallback(method_not_allowed)
    .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
    .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see /v1/openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method; see /v1/openapi.json",
    )
}

/// Liveness and the store backend.
#[utoipa::path(get, path = "/v1/health", tag = "admin", security(()),
    responses((status = 200, body = views::HealthView)))]
async fn health(State(s): State<AppState>) -> axum::Json<views::HealthView> {
    axum::Json(views::HealthView {
        status: "ok".into(),
        store: s.broker.store().backend().into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.broker.metrics().render(),
    )
}

pub(crate) fn parse_ttl(s: &str) -> Result<kairos_domain::Ttl, ApiError> {
    kairos_domain::Ttl::parse(s).map_err(|e| ApiError::bad_request("bad_ttl", e.to_string()))
}
