//! Behaviour of `kairos-crypto` through its public surface, with real cryptography.

// Tests may unwrap: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api_token;
mod issuer;
mod seal;
mod workload;
