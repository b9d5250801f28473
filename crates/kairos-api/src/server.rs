//! The HTTP server: the axum router over a [`Broker`], and the OpenAPI document generated
//! from its handlers.

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

use crate::error::ApiError;
use crate::{
    MAX_BODY_BYTES, MAX_HEADER_BYTES, admin, alerts, governance_recert, governance_reviews, grants,
    identities, mcp, notifications, oauth, posture, requests, ssf, ssh, views,
};

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
        (name = "notifications", description = "The notification outbox: pending, delivered and dead-lettered messages to Slack and signed webhooks"),
        (name = "ssf", description = "Security Event Tokens telling resource servers that verify tokens offline of every end of a token grant (RFC 8417, push RFC 8935, poll RFC 8936)"),
        (name = "ssh", description = "SSH targets: the CA public keys and the KRL that hosts read (unauthenticated), and the CA key's rotation"),
        (name = "governance", description = "The identity lifecycle: states, owners, recertification, break-glass reviews, exceptions, usage, alerts, posture"),
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
        // Introspection and revocation: client_id = user name, client_secret = API token.
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
    }
}

/// The OpenAPI document of `/v1`, generated from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    split(api_routes()).1
}

/// The router and its document, with the answers every operation of a kind can give.
fn split(routes: OpenApiRouter<AppState>) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = routes.split_for_parts();
    add_common_responses(&mut doc);
    (router, doc)
}

/// Documents the answers that come from the extractors rather than the handlers, on every
/// operation they apply to (unless the handler documents its own): 401 where a bearer
/// token is required, 400 (malformed), 413 (over 64 KiB) and 415 (wrong content type)
/// where there is a request body (the token endpoint answers these in OAuth's shape), and
/// 431 (headers over 16 KiB, in the API's shape) everywhere.
fn add_common_responses(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};

    let global_security = doc.security.as_ref().is_some_and(|s| !s.is_empty());
    for (path, item) in doc.paths.paths.iter_mut() {
        let oauth = path.starts_with("/v1/oauth/");
        let schema = if oauth { "OAuthError" } else { "ErrorBody" };
        let response = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name(schema)))
                        .build(),
                )
                .build()
        };
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            // Answered before any handler, so in the API's own error shape everywhere.
            operation
                .responses
                .responses
                .entry("431".to_owned())
                .or_insert_with(|| {
                    ResponseBuilder::new()
                        .description("the request's headers are larger than 16 KiB in total")
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("ErrorBody")))
                                .build(),
                        )
                        .build()
                        .into()
                });
            let mut add = |status: &str, description: &str| {
                operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| response(description).into());
            };
            // `security(())` on an operation lifts the global bearer requirement.
            let needs_token = match &operation.security {
                None => global_security,
                Some(requirements) => requirements.iter().any(|r| {
                    serde_json::to_value(r)
                        .is_ok_and(|v| v.as_object().is_some_and(|o| !o.is_empty()))
                }),
            };
            if needs_token {
                add(
                    "401",
                    "no `Authorization: Bearer` token, or one that is not valid (any more)",
                );
            }
            // The OAuth endpoints answer a bad form with 400 `invalid_request`.
            if operation.request_body.is_some() && !oauth {
                add("400", "the body is malformed or a value in it is not valid");
                add("413", "the body is larger than 64 KiB");
                add(
                    "415",
                    "the body is not of the content type this operation takes",
                );
            }
        }
    }
}

fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(health_ready))
        .routes(routes!(health_live))
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
        .routes(routes!(admin::config))
        .routes(routes!(admin::entitlements))
        .routes(routes!(admin::audit))
        .routes(routes!(
            admin::audit_verify,
            admin::audit_verify_checkpoints
        ))
        .routes(routes!(admin::audit_checkpoint))
        .routes(routes!(admin::keys, admin::rotate_keys))
        .routes(routes!(admin::add_user, admin::list_users))
        .routes(routes!(admin::revoke_user))
        .routes(routes!(alerts::list))
        .routes(routes!(alerts::get))
        .routes(routes!(alerts::acknowledge))
        .routes(routes!(alerts::resolve))
        .routes(routes!(notifications::list))
        .routes(routes!(notifications::retry))
        .routes(routes!(ssf::poll))
        .routes(routes!(ssf::receivers))
        .routes(routes!(ssh::ca, ssh::rotate))
        .routes(routes!(ssh::krl))
        .routes(routes!(posture::posture))
        .routes(routes!(governance_recert::list))
        .routes(routes!(governance_recert::attest))
        .routes(routes!(governance_recert::retire))
        .routes(routes!(governance_recert::exceptions))
        .routes(routes!(governance_recert::rotated))
        .routes(routes!(governance_reviews::list))
        .routes(routes!(governance_reviews::get))
        .routes(routes!(governance_reviews::file))
        .routes(routes!(identities::list))
        .routes(routes!(identities::get))
        .routes(routes!(identities::suspend))
        .routes(routes!(identities::resume))
        .routes(routes!(identities::retire))
}

/// The whole application.
pub fn router(broker: Arc<Broker>) -> Router {
    let state = AppState { broker };
    let (api, doc) = split(api_routes());
    let doc = Arc::new(doc);
    api.route(
        "/v1/openapi.json",
        get(move || {
            let doc = Arc::clone(&doc);
            async move { axum::Json(doc.as_ref().clone()) }
        }),
    )
    .route(
        "/v1/mcp",
        axum::routing::post(mcp::post)
            .get(mcp::not_offered)
            .delete(mcp::not_offered),
    )
    .route("/metrics", get(metrics))
    .route("/.well-known/jwks.json", get(oauth::jwks))
    .route(
        "/.well-known/oauth-authorization-server",
        get(oauth::metadata),
    )
    .fallback(not_found)
    .method_not_allowed_fallback(method_not_allowed)
    .layer(axum::middleware::from_fn_with_state(
        state.clone(),
        count_request,
    ))
    .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
    .layer(axum::middleware::from_fn(limit_headers))
    .with_state(state)
}

/// Counts every answer in `kairos_http_requests_total` and times it in
/// `kairos_http_request_duration_seconds`, by route template (`unmatched` when no route
/// matched), method and status.
async fn count_request(
    State(s): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", axum::extract::MatchedPath::as_str)
        .to_owned();
    let method = match *req.method() {
        axum::http::Method::GET => "GET",
        axum::http::Method::POST => "POST",
        axum::http::Method::PUT => "PUT",
        axum::http::Method::DELETE => "DELETE",
        axum::http::Method::PATCH => "PATCH",
        axum::http::Method::HEAD => "HEAD",
        axum::http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let resp = next.run(req).await;
    s.broker.metrics().http_request(
        kairos_broker::HttpLabels {
            route,
            method,
            status: resp.status().as_u16(),
        },
        started.elapsed().as_secs_f64(),
    );
    resp
}

/// Refuses a request whose headers (names and values) exceed [`MAX_HEADER_BYTES`] with a
/// JSON 431 that says the limit, before any handler or extractor reads them.
async fn limit_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let size: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if size > MAX_HEADER_BYTES {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "the request's headers are {size} bytes, over the {MAX_HEADER_BYTES} this server reads; send fewer or shorter headers (a bearer token fits in a few KiB)"
            ),
        )
        .into_response();
    }
    next.run(request).await
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

/// Liveness, the store backend, and whether revocations alarm: `degraded` (still 200)
/// names the targets whose revocations keep failing. It reads no store: the list is the
/// outage prober's last look (every 2 s).
#[utoipa::path(get, path = "/v1/health", tag = "admin", security(()),
    responses((status = 200, description = "serving; `status` is `ok`, or `degraded` with the targets whose revocations keep failing", body = views::HealthView)))]
async fn health(State(s): State<AppState>) -> axum::Json<views::HealthView> {
    let degraded: Vec<String> = s
        .broker
        .degraded_targets()
        .iter()
        .map(|t| t.to_string())
        .collect();
    axum::Json(views::HealthView {
        status: if degraded.is_empty() {
            "ok"
        } else {
            "degraded"
        }
        .into(),
        store: s.broker.store().backend().into(),
        version: env!("CARGO_PKG_VERSION").into(),
        degraded_targets: degraded,
    })
}

/// Readiness, for a load balancer: 200 `{"ready":true}` while this replica can decide, else
/// 503 with the reasons (the store unreachable, migrations pending, the catalog not
/// confirmed current). Anyone may ask; it names no address or secret.
#[utoipa::path(get, path = "/v1/health/ready", tag = "admin", security(()),
    responses(
        (status = 200, description = "ready", body = views::ReadyView),
        (status = 503, description = "not ready; `reasons` says why", body = views::ReadyView)))]
async fn health_ready(State(s): State<AppState>) -> axum::response::Response {
    let reasons = s.broker.readiness().await;
    let status = if reasons.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(views::ReadyView {
            ready: reasons.is_empty(),
            reasons,
        }),
    )
        .into_response()
}

/// Liveness: 200 while the process answers at all; it reads nothing, so a store outage
/// does not make an orchestrator restart a replica that would recover by itself.
#[utoipa::path(get, path = "/v1/health/live", tag = "admin", security(()),
    responses((status = 200, description = "alive", body = views::LiveView)))]
async fn health_live() -> axum::Json<views::LiveView> {
    axum::Json(views::LiveView { live: true })
}

/// Prometheus metrics: OpenMetrics when the `Accept` header asks for
/// `application/openmetrics-text`, else the classic text format 0.0.4.
async fn metrics(State(s): State<AppState>, headers: axum::http::HeaderMap) -> impl IntoResponse {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let media = t.split(';').next().unwrap_or_default().trim();
            media.eq_ignore_ascii_case("application/openmetrics-text")
        });
    if openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            s.broker.metrics().render(),
        )
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            s.broker.metrics().render_classic(),
        )
    }
}
