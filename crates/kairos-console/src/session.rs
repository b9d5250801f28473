//! Session rules without IO: ids and their hashes, the cookie, expiry, the CSRF compare.
//!
//! Invariants: the session id leaves the server only in the `kairos_session` cookie
//! (HttpOnly, SameSite=Lax, Path=/ui, Secure under TLS); the store keeps its SHA-256 only;
//! the CSRF secret is compared in constant time.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kairos_domain::Timestamp;
use kairos_store::ConsoleSession;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// The cookie that carries the session id.
pub const COOKIE: &str = "kairos_session";

/// How long a session lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Unused this long, a session ends.
    pub idle: Duration,
    /// A session ends this long after sign-in, however busy.
    pub absolute: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(30 * 60),
            absolute: Duration::from_secs(12 * 3600),
        }
    }
}

impl SessionLimits {
    /// `last_seen_at` is written at most this often (a write per page view would be
    /// wasted): a quarter of the idle limit, at most a minute.
    pub fn touch_every(&self) -> Duration {
        (self.idle / 4).min(Duration::from_secs(60))
    }
}

/// Where a stored session stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    Live,
    /// Not used for the idle limit.
    Idle,
    /// Past its absolute end.
    Expired,
}

pub fn status(s: &ConsoleSession, now: Timestamp, limits: SessionLimits) -> SessionStatus {
    if now >= s.expires_at {
        SessionStatus::Expired
    } else if now.since(s.last_seen_at) >= limits.idle {
        SessionStatus::Idle
    } else {
        SessionStatus::Live
    }
}

/// 256 random bits, base64url: a session id or a CSRF secret.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the store keeps of a session id.
pub fn hash_id(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// Whether a form's CSRF token is the session's, in constant time. An empty or missing
/// token never matches.
pub fn csrf_matches(expected: &str, given: Option<&str>) -> bool {
    match given {
        Some(given) if !given.is_empty() && !expected.is_empty() => {
            bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
        }
        _ => false,
    }
}

/// Whether the cookie must be marked `Secure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieTransport {
    /// Served over TLS (an `https://` public URL): `Secure`.
    Tls,
    /// Plain HTTP (dev mode on localhost): without `Secure`, or browsers would drop it.
    PlainHttp,
}

/// The `Set-Cookie` value that starts a session.
pub fn set_cookie(id: &str, max_age: Duration, transport: CookieTransport) -> String {
    let secure = match transport {
        CookieTransport::Tls => "; Secure",
        CookieTransport::PlainHttp => "",
    };
    format!(
        "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        max_age.as_secs()
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(transport: CookieTransport) -> String {
    set_cookie("", Duration::ZERO, transport)
}

/// The longest cookie value read: a session id is 43 characters, plus the teams of a
/// single sign-on narrowing (see `oidc`).
pub const MAX_COOKIE_VALUE: usize = 2048;

/// The session id from the request's `Cookie` headers, if any.
pub fn cookie_value<'a>(cookie_headers: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    cookie_named(cookie_headers, COOKIE)
}

/// The value of the cookie `wanted` from `Cookie` headers, if any.
pub fn cookie_named<'a>(
    cookie_headers: impl Iterator<Item = &'a str>,
    wanted: &str,
) -> Option<&'a str> {
    cookie_headers
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty() && v.len() <= MAX_COOKIE_VALUE)
}

/// The value of the cookie `wanted` in a request's headers.
pub fn named_cookie<'a>(headers: &'a axum::http::HeaderMap, wanted: &str) -> Option<&'a str> {
    cookie_named(
        headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
        wanted,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use kairos_domain::UserName;

    fn session(created: i64, last_seen: i64, expires: i64) -> ConsoleSession {
        ConsoleSession {
            id_hash: hash_id("x"),
            user: UserName::parse("alice".to_owned()).unwrap(),
            token_id: None,
            csrf_secret: "c".into(),
            created_at: Timestamp::from_millis(created),
            expires_at: Timestamp::from_millis(expires),
            last_seen_at: Timestamp::from_millis(last_seen),
        }
    }

    fn check(last_seen: i64, now: i64, expected: SessionStatus) {
        let limits = SessionLimits {
            idle: Duration::from_secs(10),
            absolute: Duration::from_secs(100),
        };
        let s = session(0, last_seen, 100_000);
        assert_eq!(
            status(&s, Timestamp::from_millis(now), limits),
            expected,
            "last seen {last_seen}, now {now}"
        );
    }

    #[test]
    fn idle_and_absolute_expiry() {
        check(0, 0, SessionStatus::Live);
        check(0, 9_999, SessionStatus::Live);
        check(0, 10_000, SessionStatus::Idle);
        check(95_000, 99_999, SessionStatus::Live);
        check(95_000, 100_000, SessionStatus::Expired);
        check(99_000, 200_000, SessionStatus::Expired);
    }

    #[test]
    fn csrf_needs_the_exact_token() {
        assert!(csrf_matches("abc", Some("abc")));
        assert!(!csrf_matches("abc", Some("abd")));
        assert!(!csrf_matches("abc", Some("ab")));
        assert!(!csrf_matches("abc", None));
        assert!(!csrf_matches("", Some("")));
    }

    #[test]
    fn cookie_is_found_among_others_and_carries_its_flags() {
        let headers = ["a=1; kairos_session=xyz; b=2"];
        assert_eq!(cookie_value(headers.into_iter()), Some("xyz"));
        assert_eq!(cookie_value(["kairos_sessionx=1"].into_iter()), None);
        assert_eq!(cookie_value(["kairos_session="].into_iter()), None);
        let set = set_cookie("id", Duration::from_secs(60), CookieTransport::Tls);
        assert_eq!(
            set,
            "kairos_session=id; Path=/ui; HttpOnly; SameSite=Lax; Max-Age=60; Secure"
        );
        assert!(!set_cookie("id", Duration::ZERO, CookieTransport::PlainHttp).contains("Secure"));
    }

    #[test]
    fn secrets_are_random_and_hashes_hide_them() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(hash_id(&a).len(), 64);
        assert!(!hash_id(&a).contains(&a));
    }
}
