//! From what Redis said to a [`ConnectorError`], with secrets kept out of the text.

use kairos_connectors::ConnectorError;
use redis::{ErrorKind, RedisError, ServerErrorKind};
use secrecy::{ExposeSecret, SecretString};

/// How a Redis error is to be understood by the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Down, refused, timed out, connection lost, loading: retry later.
    Unreachable,
    /// The credentials on the connection were refused or lack a permission.
    Refused,
    /// Anything else the server or client reported.
    Failed,
}

pub(crate) fn classify(e: &RedisError) -> Class {
    if e.kind() == ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
    {
        return Class::Refused;
    }
    if e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
            )
        )
    {
        return Class::Unreachable;
    }
    Class::Failed
}

/// Removes known secrets from text that is about to become an error or a log line.
///
/// Kairos never puts a secret into a command's error path on purpose; this is the second
/// line of defence, in case a library error ever echoes what it was given.
pub(crate) struct Redactor {
    secrets: Vec<SecretString>,
}

impl Redactor {
    pub(crate) fn new(secrets: Vec<SecretString>) -> Self {
        let secrets = secrets
            .into_iter()
            .filter(|s| !s.expose_secret().is_empty())
            .collect();
        Self { secrets }
    }

    pub(crate) fn scrub(&self, text: impl Into<String>) -> String {
        let mut text = text.into();
        for secret in &self.secrets {
            let secret = secret.expose_secret();
            if text.contains(secret) {
                text = text.replace(secret, "<redacted>");
            }
        }
        text
    }
}

/// A description of `e` for a human: the code and detail for server errors, the kind and
/// cause for client-side ones. Callers pass it through [`Redactor::scrub`].
pub(crate) fn describe(e: &RedisError) -> String {
    if e.kind() == ErrorKind::AuthenticationFailed {
        return "AUTH with the admin URL's credentials was refused".to_owned();
    }
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_owned(),
        _ => {
            let text = e.to_string();
            if text.contains("invalid peer certificate") {
                format!(
                    "{text} (the server's TLS certificate does not verify against the CA file \
                     in the admin URL's ssl-ca, or against the public web roots without one)"
                )
            } else {
                text
            }
        }
    }
}

/// The connector error for `e`, met while doing `op` with Kairos's admin connection.
pub(crate) fn admin_error(
    target: &str,
    redactor: &Redactor,
    op: &str,
    e: &RedisError,
) -> ConnectorError {
    let reason = redactor.scrub(format!("{op}: {}", describe(e)));
    let target = target.to_owned();
    match classify(e) {
        Class::Unreachable => ConnectorError::Unreachable { target, reason },
        Class::Refused => ConnectorError::AdminRefused { target, reason },
        Class::Failed => ConnectorError::Failed { target, reason },
    }
}
