//! From sqlx errors to the contract's `ConnectorError`, without secrets.

use kairos_connectors::ConnectorError;
use sqlx::mysql::MySqlDatabaseError;

/// MariaDB error numbers this connector reacts to.
pub(crate) mod code {
    /// `ER_DBACCESS_DENIED_ERROR`: no access to the database.
    pub const DB_ACCESS_DENIED: u16 = 1044;
    /// `ER_ACCESS_DENIED_ERROR`: login refused (wrong user or password).
    pub const ACCESS_DENIED: u16 = 1045;
    /// `ER_ACCESS_DENIED_NO_PASSWORD_ERROR`: login refused after an authentication-plugin
    /// switch. MariaDB answers a login as a user that does not exist with it (instead of
    /// 1045) when it fakes a plugin for the unknown user, depending on the name and the
    /// loaded plugins.
    pub const ACCESS_DENIED_NO_PASSWORD: u16 = 1698;
    /// `ER_NO_SUCH_THREAD`: the session ended before `KILL` reached it.
    pub const NO_SUCH_THREAD: u16 = 1094;
    /// `ER_KILL_DENIED_ERROR`: not allowed to kill another user's session.
    pub const KILL_DENIED: u16 = 1095;
    /// `ER_TABLEACCESS_DENIED_ERROR`: command denied on a table.
    pub const TABLE_ACCESS_DENIED: u16 = 1142;
    /// `ER_COLUMNACCESS_DENIED_ERROR`.
    pub const COLUMN_ACCESS_DENIED: u16 = 1143;
    /// `ER_SPECIFIC_ACCESS_DENIED_ERROR`: a global privilege (CREATE USER, SUPER, …) is missing.
    pub const SPECIFIC_ACCESS_DENIED: u16 = 1227;
    /// `ER_PROCACCESS_DENIED_ERROR`.
    pub const PROC_ACCESS_DENIED: u16 = 1370;
}

/// The MariaDB error number, if the error came from the server.
pub(crate) fn server_code(e: &sqlx::Error) -> Option<u16> {
    match e {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(MySqlDatabaseError::number),
        _ => None,
    }
}

/// Is this a failure to reach the server (as opposed to an answer from it)?
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

/// Maps a sqlx error to the contract: connection failures are `Unreachable`, refusals of
/// the admin's credentials or privileges are `AdminRefused`, the rest `Failed`. `what`
/// says which step failed. `redact` lists strings that must not appear in the reason
/// (the account's password hash: a syntax error message quotes the statement).
pub(crate) fn map(target: &str, what: &str, e: &sqlx::Error, redact: &[&str]) -> ConnectorError {
    let target = target.to_owned();
    let reason = describe(e, redact);
    let reason = format!("{what}: {reason}");
    if is_unreachable(e) {
        return ConnectorError::Unreachable { target, reason };
    }
    match server_code(e) {
        Some(
            code::DB_ACCESS_DENIED
            | code::ACCESS_DENIED
            | code::ACCESS_DENIED_NO_PASSWORD
            | code::KILL_DENIED
            | code::TABLE_ACCESS_DENIED
            | code::COLUMN_ACCESS_DENIED
            | code::SPECIFIC_ACCESS_DENIED
            | code::PROC_ACCESS_DENIED,
        ) => ConnectorError::AdminRefused { target, reason },
        _ => ConnectorError::Failed { target, reason },
    }
}

/// The error in a sentence (with the MariaDB error number when there is one), without
/// any of `redact`.
pub(crate) fn describe(e: &sqlx::Error, redact: &[&str]) -> String {
    let detail = match e {
        sqlx::Error::Database(db) => match db.try_downcast_ref::<MySqlDatabaseError>() {
            Some(my) => format!("error {}: {}", my.number(), my.message()),
            None => db.message().to_owned(),
        },
        sqlx::Error::PoolTimedOut => "no connection could be opened within the timeout".into(),
        // The other variants carry no statement text and no connect options.
        other => other.to_string(),
    };
    let mut reason = detail;
    for secret in redact.iter().filter(|s| !s.is_empty()) {
        reason = reason.replace(secret, "<redacted>");
    }
    reason
}
