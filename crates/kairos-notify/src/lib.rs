//! Notifications, as pure code: which audit records are events people are told about
//! ([`event`]), which channels each goes to ([`route`]), and what each channel receives
//! ([`format`]: a Slack-compatible Block Kit message, or a generic webhook signed per the
//! Standard Webhooks specification).
//!
//! Invariants: no IO (time and catalog facts come in as arguments); a message carries only
//! what an audit record may hold, which is never a secret, token or password; the broker
//! delivers, this crate only says what to deliver.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod event;
pub mod format;
pub mod route;

pub use event::{Event, EventKind, Facts, candidate};
pub use format::{Message, body_for, slack_body, webhook_body, webhook_headers};
pub use route::{ChannelKind, Route, message_id, routes_for};
