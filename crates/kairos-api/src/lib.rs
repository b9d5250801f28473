//! The Kairos HTTP API.
//!
//! [`router`] builds the whole app from a `Broker`; tests drive it on port 0.
//! Invariant: this is the only crate that knows HTTP status codes and JSON wire shapes;
//! it holds no state of its own beyond the broker handle.
//!
//! Without the default `server` feature, the crate is only [`views`] (the wire shapes)
//! and [`inputs`] (the checks of request bodies), without the broker and the store: the
//! fuzz targets in `fuzz/` build it that way.

#[cfg(feature = "server")]
mod admin;
#[cfg(feature = "server")]
mod alerts;
mod error;
#[cfg_attr(not(feature = "server"), allow(dead_code))]
mod extract;
#[cfg(feature = "server")]
mod governance_recert;
#[cfg(feature = "server")]
mod governance_reviews;
#[cfg(feature = "server")]
mod grants;
#[cfg(feature = "server")]
mod identities;
pub mod inputs;
#[cfg(feature = "server")]
mod mcp;
#[cfg(feature = "server")]
mod notifications;
#[cfg(feature = "server")]
mod oauth;
#[cfg(feature = "server")]
mod posture;
#[cfg(feature = "server")]
mod requests;
#[cfg(feature = "server")]
mod server;
#[cfg(feature = "server")]
mod ssf;
#[cfg(feature = "server")]
mod ssh;
pub mod views;

pub use error::{ApiError, ApiResult, ErrorBody};
#[cfg(feature = "server")]
pub use server::{AppState, openapi, router};

/// Request bodies above this size are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The most request-header bytes (names and values) the API reads; more is refused with
/// a JSON 431 (hyper itself refuses far larger headers, without a body).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
