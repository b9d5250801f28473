//! Extractors whose rejections speak the API's error format.

use axum::body::Bytes;
use axum::extract::rejection::{FormRejection, JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// JSON body; malformed JSON, a wrong content type or an oversized body is a clear 4xx.
pub struct ApiJson<T>(pub T);

pub(crate) fn body_error(status: StatusCode, detail: String) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            status,
            "body_too_large",
            "the request body is larger than Kairos accepts (64 KiB)",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            status,
            "unsupported_media_type",
            "send the body as JSON with `Content-Type: application/json`",
        ),
        _ => ApiError::bad_request("invalid_json", detail),
    }
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(body_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                String::new(),
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| body_error(rejection.status(), rejection.body_text()))?;
        json_from_bytes(&bytes).map(Self)
    }
}

/// An optional JSON body: an empty body is `None`; anything else is read as [`ApiJson`]
/// reads it, with the same errors.
pub struct OptionalApiJson<T>(pub Option<T>);

impl<S, T> FromRequest<S> for OptionalApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let typed = json_content_type(req.headers());
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| body_error(rejection.status(), rejection.body_text()))?;
        if bytes.is_empty() {
            return Ok(Self(None));
        }
        if !typed {
            return Err(body_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                String::new(),
            ));
        }
        json_from_bytes(&bytes).map(|v| Self(Some(v)))
    }
}

/// `application/json`, or a `+json` type under `application/`, parameters allowed.
pub(crate) fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype
                .len()
                .checked_sub(5)
                .and_then(|at| subtype.get(at..))
                .is_some_and(|suffix| suffix.eq_ignore_ascii_case("+json")))
}

/// Decodes a JSON body's bytes as [`ApiJson`] does once the content type and size are
/// checked: with the same errors. Every body the API takes is a JSON object; serde would
/// otherwise also read a struct from an array of its fields (`[null]`), which the
/// document does not allow.
pub(crate) fn json_from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if let Some(first) = first.filter(|b| **b != b'{') {
        let what = match first {
            b'[' => "an array",
            b'"' => "a string",
            b'n' => "null",
            b't' | b'f' => "a boolean",
            b'-' | b'0'..=b'9' => "a number",
            _ => "not an object",
        };
        return Err(ApiError::bad_request(
            "invalid_json",
            format!("the body must be a JSON object, and this one is {what}; see /v1/openapi.json"),
        ));
    }
    axum::Json::<T>::from_bytes(bytes)
        .map(|axum::Json(v)| v)
        .map_err(|rejection| json_rejection(&rejection))
}

fn json_rejection(rejection: &JsonRejection) -> ApiError {
    let detail = match rejection {
        JsonRejection::JsonDataError(e) => format!(
            "the JSON does not match what this endpoint takes: {}; see /v1/openapi.json",
            source_text(e)
        ),
        JsonRejection::JsonSyntaxError(e) => {
            format!("the body is not valid JSON: {}", source_text(e))
        }
        other => other.body_text(),
    };
    body_error(rejection.status(), detail)
}

fn source_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = s.to_string();
        source = s.source();
    }
    text
}

/// `application/x-www-form-urlencoded` body (the OAuth endpoints).
pub struct ApiForm<T>(pub T);

impl<S, T> FromRequest<S> for ApiForm<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(v)) => Ok(Self(v)),
            Err(rejection) => {
                let status = rejection.status();
                let detail = match &rejection {
                    FormRejection::FailedToDeserializeForm(e) => {
                        format!("the form parameters are invalid: {}", source_text(e))
                    }
                    FormRejection::FailedToDeserializeFormBody(e) => {
                        format!("the form parameters are invalid: {}", source_text(e))
                    }
                    other => other.body_text(),
                };
                Err(match status {
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
                        status,
                        "unsupported_media_type",
                        "send form parameters with `Content-Type: application/x-www-form-urlencoded`",
                    ),
                    _ => body_error(status, detail),
                })
            }
        }
    }
}

/// Query string.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Self(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(ApiError::bad_request(
                "invalid_query",
                format!("the query string is invalid: {}", source_text(&e)),
            )),
            Err(other) => Err(ApiError::bad_request("invalid_query", other.body_text())),
        }
    }
}

/// The authenticated caller, from `Authorization: Bearer …`.
#[cfg(feature = "server")]
pub struct Auth(pub kairos_broker::Caller);

#[cfg(feature = "server")]
pub(crate) fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    bearer_header(&parts.headers)
}

/// The token of an `Authorization: Bearer …` header.
#[cfg(feature = "server")]
pub(crate) fn bearer_header(headers: &HeaderMap) -> Result<&str, ApiError> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "missing `Authorization: Bearer <token>`; send a platform JWT (workloads) or an API token (people)",
            )
        })?;
    let value = header.to_str().ok().and_then(|v| {
        let (scheme, rest) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then_some(rest)
    });
    value.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "the Authorization header must be `Bearer <token>`",
        )
    })
}

/// The client certificate chain the TLS listener verified for this request, if any.
#[cfg(feature = "server")]
pub(crate) fn peer_chain(parts: &Parts) -> Option<kairos_tls::PeerCertificates> {
    parts
        .extensions
        .get::<kairos_tls::PeerCertificates>()
        .cloned()
}

/// A workload over mTLS with an X.509-SVID needs no `Authorization` header; with one, both
/// must name the same identity ([`kairos_broker::Broker::authenticate_request`]).
#[cfg(feature = "server")]
impl FromRequestParts<crate::AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &crate::AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(peer) = peer_chain(parts) else {
            let token = bearer(parts)?;
            let caller = state.broker.authenticate(token).await?;
            return Ok(Self(caller));
        };
        let token = if parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION)
        {
            Some(bearer(parts)?)
        } else {
            None
        };
        let authenticated = state
            .broker
            .authenticate_request(token, Some(peer.0.as_slice()))
            .await?;
        Ok(Self(authenticated.caller))
    }
}

/// The client certificate chain the TLS listener verified, for handlers that authenticate
/// by themselves (the token endpoint).
#[cfg(feature = "server")]
pub struct PeerChain(pub Option<kairos_tls::PeerCertificates>);

#[cfg(feature = "server")]
impl<S: Send + Sync> FromRequestParts<S> for PeerChain {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(peer_chain(parts)))
    }
}

/// RFC 8705 `x5t#S256` of the client certificate this request came over, if any: the
/// tokens issued to it are bound to that certificate. (Its chain, validity and, for an
/// X.509-SVID, its trust domain were checked by [`Auth`].)
#[cfg(feature = "server")]
pub struct ClientCertThumbprint(pub Option<String>);

#[cfg(feature = "server")]
impl<S: Send + Sync> FromRequestParts<S> for ClientCertThumbprint {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(peer_chain(parts).and_then(|p| {
            p.leaf().map(|leaf| kairos_crypto::spiffe::x5t_s256(leaf))
        })))
    }
}

/// The caller's address: the TCP peer, or — when the peer is a trusted proxy (`[server]
/// trusted_proxies`) — the right-most untrusted address of `trusted_proxy_header`. None
/// when the server runs without peer addresses (a router driven without a socket).
#[cfg(feature = "server")]
pub struct ClientSource(pub Option<std::net::IpAddr>);

#[cfg(feature = "server")]
impl FromRequestParts<crate::AppState> for ClientSource {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &crate::AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(peer) = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip())
        else {
            return Ok(Self(None));
        };
        let sources = &state.broker.settings().sources;
        let values: Vec<&str> = match &sources.trusted_proxy_header {
            Some(name) => parts
                .headers
                .get_all(name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect(),
            None => Vec::new(),
        };
        Ok(Self(Some(state.broker.client_address(peer, &values))))
    }
}

/// The `DPoP` header (RFC 9449), if there is one. Two of them, or one that is not
/// visible ASCII, is refused as `invalid_dpop_proof`.
pub struct DpopHeader(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for DpopHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut values = parts.headers.get_all("dpop").iter();
        let (first, second) = (values.next(), values.next());
        match (first, second) {
            (None, _) => Ok(Self(None)),
            (Some(_), Some(_)) => Err(ApiError::bad_request(
                "invalid_dpop_proof",
                "send one DPoP header, not several (RFC 9449 §4.3)",
            )),
            (Some(value), None) => value
                .to_str()
                .map(|v| Self(Some(v.trim().to_owned())))
                .map_err(|_| {
                    ApiError::bad_request(
                        "invalid_dpop_proof",
                        "the DPoP header must be a compact JWT (visible ASCII only)",
                    )
                }),
        }
    }
}
