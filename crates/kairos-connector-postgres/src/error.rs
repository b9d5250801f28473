//! From sqlx errors to the contract's `ConnectorError`, without ever quoting the admin URL.

use kairos_connectors::ConnectorError;

/// SQLSTATEs that mean "this login or this privilege was refused".
const AUTH_REFUSED: [&str; 3] = [
    "28P01", // invalid_password
    "28000", // invalid_authorization_specification (unknown role, NOLOGIN, pg_hba reject)
    "42501", // insufficient_privilege
];

/// The SQLSTATE of a server error, if `e` is one.
pub(crate) fn sqlstate(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// Whether the server refused a login (wrong password, unknown or NOLOGIN role, expired
/// `VALID UNTIL`, pg_hba reject).
pub(crate) fn is_login_refused(e: &sqlx::Error) -> bool {
    matches!(sqlstate(e).as_deref(), Some("28P01" | "28000"))
}

/// Whether `e` means the server could not be reached (as opposed to an answer).
pub(crate) fn is_unreachable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
    )
}

/// A sentence about `e` that is safe to show: server messages and IO errors carry no
/// credentials; configuration errors (which may echo the URL) are not quoted.
pub(crate) fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (SQLSTATE {code})", db.message()),
            None => db.message().to_owned(),
        },
        sqlx::Error::Io(io) => format!("{io} ({:?})", io.kind()),
        sqlx::Error::Tls(tls) => format!("TLS: {tls}"),
        sqlx::Error::PoolTimedOut => "no connection within the acquire timeout \
            (the server is down or not accepting connections, or every pooled connection is busy)"
            .to_owned(),
        sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            "the connection pool is closed".to_owned()
        }
        sqlx::Error::Configuration(_) => "invalid connection settings".to_owned(),
        sqlx::Error::Protocol(p) => format!("protocol error: {p}"),
        other => other.to_string(),
    }
}

/// `Unreachable` for connection failures, `AdminRefused` for authentication and permission
/// failures (28P01, 28000, 42501), `Failed` for the rest. `doing` says what was attempted.
pub(crate) fn classify(target: &str, doing: &str, e: &sqlx::Error) -> ConnectorError {
    let target = target.to_owned();
    let reason = format!("{doing}: {}", describe(e));
    if is_unreachable(e) {
        ConnectorError::Unreachable { target, reason }
    } else if sqlstate(e).is_some_and(|c| AUTH_REFUSED.contains(&c.as_str())) {
        ConnectorError::AdminRefused { target, reason }
    } else {
        ConnectorError::Failed { target, reason }
    }
}
