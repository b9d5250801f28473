//! The MariaDB connector: a dynamic account per grant, its sessions killed and the account
//! dropped at the grant's end, and proof that it is gone.
//!
//! [`MariaDbConnector`] implements [`kairos_connectors::Connector`] for MariaDB 10.4+
//! (tested on 10.11). It talks to the server through a lazily connecting pool of at most
//! four admin connections ([`MariaDbSettings::admin_url`]); opening a connection gives up
//! after [`CONNECT_TIMEOUT`] (5 s). Nothing is contacted by [`MariaDbConnector::new`].
//!
//! # Accounts
//!
//! An account is `'<name>'@'<account_host>'` (`%` by default). Names carry the managed
//! prefix (`kairos_` by default) and are `[a-z0-9_]`; the connector refuses to touch a name
//! without the prefix, so a bad call can never drop `root`. Names and hosts enter SQL only
//! as quoted literals (quotes doubled; backslashes refused, so the quoting holds whatever
//! the `sql_mode`).
//!
//! # Provision
//!
//! 1. The privilege templates are checked before anything runs: each must contain
//!    `{{role}}`, which is replaced by the quoted account (`'kairos_…'@'%'`);
//!    [`Privileges::RedisAcl`](kairos_connectors::Privileges::RedisAcl) is refused. Both are
//!    [`ConnectorError::BadPrivileges`](kairos_connectors::ConnectorError::BadPrivileges).
//! 2. `CREATE USER '…'@'%' IDENTIFIED BY PASSWORD '*…'`, with the `mysql_native_password`
//!    hash (`*` + upper-case hex of SHA1(SHA1(password))) computed here: the plaintext
//!    never appears in a statement, so not in the server's general log, processlist or
//!    binary log either. If the account already exists (a retried provision), it is
//!    converged instead: `ALTER USER … IDENTIFIED BY PASSWORD '*…' ACCOUNT UNLOCK`.
//! 3. Each rendered template runs as its own *prepared* statement. The prepared-statement
//!    protocol takes exactly one statement, so `GRANT … TO {{role}}; DROP TABLE t` is a
//!    syntax error, not two statements. Grants are additive, so re-running them converges.
//! 4. The expiry event (below), when the event scheduler is on.
//!
//! MariaDB DDL is not transactional. If any step fails, the connector revokes the account
//! (the same steps as [`revoke`](kairos_connectors::Connector::revoke)) before returning
//! the error, so nothing is left half-created; if even that fails, the error is logged and
//! the account carries the managed prefix, so the reconciler finds it through
//! `list_managed`.
//!
//! # The native second line: an expiry event
//!
//! When `SELECT @@event_scheduler` is `ON`, provisioning also creates, in the admin URL's
//! database,
//!
//! ```sql
//! CREATE OR REPLACE EVENT `db`.`<account>_exp` ON SCHEDULE AT '<valid_until, UTC>'
//!   ON COMPLETION NOT PRESERVE DO DROP USER IF EXISTS '<account>'@'%'
//! ```
//!
//! so the account is dropped at the grant's end even if Kairos is down. What it is not:
//! it runs only while the event scheduler is `ON` (and the admin account that defined it
//! still exists and may drop users); it does **not** kill sessions that are already open
//! (a dropped user's sessions live on until they disconnect); its failures go to the
//! server's error log only. Kairos's own revocation stays the first line.
//!
//! Time zones: the event scheduler interprets `AT` in the session's `time_zone` and stores
//! the event with it. The connector forces `time_zone = '+00:00'` on every admin
//! connection (overriding any `timezone=` in the URL) and writes `valid_until` as a UTC
//! literal, rounded up to the second; the event is therefore stored with `TIME_ZONE
//! '+00:00'` and fires at the same instant whatever the server's `system_time_zone` or its
//! daylight-saving changes. An `AT` already in the past creates no event (MariaDB drops it
//! at once, with a warning): Kairos revokes such an account itself.
//!
//! The name is `<account>_exp`, or, when that passes MariaDB's 64-character identifier
//! limit, the account's first 47 characters, `_`, 12 hex digits of SHA-1 of the name, and
//! `_exp`. `CREATE OR REPLACE` (not `CREATE EVENT IF NOT EXISTS`) makes a retried provision
//! move an existing event to the new time. [`renew`](kairos_connectors::Connector::renew)
//! does the same to move the event (it is `ALTER EVENT … ON SCHEDULE AT …` that also works
//! when the event is missing); renewing an account that no longer exists, e.g. because its
//! event fired first, is an error. Creating an event needs the `EVENT` privilege on the
//! database: without it provisioning fails (and is undone) with `AdminRefused` rather than
//! silently promising an expiry that does not exist.
//!
//! When the scheduler is `OFF` or `DISABLED`, no event is created and
//! [`revocability`](kairos_connectors::Connector::revocability) says `native_expiry: None`.
//! Revocability is synchronous, so it reports the scheduler state seen by the last
//! provision, renew or [`MariaDbConnector::check_event_scheduler`]; before any of those it
//! promises nothing.
//!
//! # Revoke
//!
//! Idempotent, in this order, for every host the name exists with:
//! `ALTER USER IF EXISTS … ACCOUNT LOCK` (new logins are refused), `KILL CONNECTION <id>` for
//! every `information_schema.PROCESSLIST` row of the user except the admin connection
//! itself, `DROP USER IF EXISTS …`, the sessions query and kill once more (a login that
//! authenticated just before the lock), then `DROP EVENT` if the event exists. An absent
//! account gives `Revoked { account_existed: false, .. }`. Killing other users' sessions
//! needs `CONNECTION ADMIN` (or `SUPER`) and seeing them needs `PROCESS`.
//!
//! # Verify gone
//!
//! Method `mysql.user+login`: no row for the name in `mysql.user` (any host), no session of
//! it in the processlist, and, when the password is given, a fresh login with it (no
//! database, same host and port as the admin URL) is refused with access denied: error
//! 1045, or 1698, which MariaDB sends instead for some unknown user names (it fakes an
//! authentication plugin for them so as not to reveal which users exist, and a client
//! that answers the plugin switch gets 1698). Anything else present is `StillPresent`; a
//! server that cannot be reached is `Unreachable`; any other login error is `Failed`.
//!
//! # List managed
//!
//! `SELECT User FROM mysql.user WHERE LEFT(User, CHAR_LENGTH(?)) = ?`: a prefix match
//! without `LIKE`, whose `_` would be a wildcard.
//!
//! # Errors and secrets
//!
//! Connection failures (refused, timed out, TLS) are `Unreachable`; access denied (1044,
//! 1045, 1142, 1143, 1227, 1370, 1698) and kill denied (1095) are `AdminRefused`; every other
//! server error is `Failed`, naming the step. The admin URL and passwords never appear in
//! an error, a log line or `Debug`: the URL is a `SecretString`, parse errors are not
//! forwarded, the connector's `Debug` is written by hand, sqlx statement logging is off
//! (statements carry password hashes) and the hash is redacted from error messages.
//!
//! The workspace builds sqlx without a TLS backend, so admin connections are not
//! encrypted (`ssl-mode=required` in the URL fails); enabling one of sqlx's `tls-*`
//! features is a workspace decision.
//!
//! # Pitfall: anonymous accounts
//!
//! A server with anonymous accounts (`''@'localhost'`, as old `mysql_install_db` made)
//! matches logins from those hosts to the anonymous account before `'name'@'%'`, so the
//! workload is refused. Provisioning logs a warning when it sees them; remove them, or set
//! `account_host` to something as specific.

mod connector;
mod error;
mod settings;
mod sql;

pub use connector::{CONNECT_TIMEOUT, EventScheduler, MariaDbConnector, VERIFICATION_METHOD};
pub use settings::{DEFAULT_ACCOUNT_HOST, DEFAULT_MANAGED_PREFIX, MariaDbSettings};
