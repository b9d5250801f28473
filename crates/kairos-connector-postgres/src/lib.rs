//! The PostgreSQL connector: one dynamic role per grant, its sessions killed and its
//! absence verified when the grant ends.
//!
//! # Operations
//!
//! - **provision**, in one transaction (PostgreSQL DDL is transactional, so a failure at any
//!   statement leaves nothing behind): `CREATE ROLE "<account>" WITH LOGIN PASSWORD
//!   '<verifier>' VALID UNTIL '<grant end, RFC 3339>'`, then each privilege template with
//!   `{{role}}` replaced by the quoted identifier. The password is sent as a
//!   SCRAM-SHA-256 verifier computed here ([`scram_sha256_verifier`], 4,096 iterations
//!   unless the target sets `scram_iterations` — see [`SCRAM_ITERATIONS`] for what the
//!   count costs and buys —, 16 random bytes of salt), so the plaintext never
//!   appears in a statement (and so in no statement log). Each template runs as its own
//!   unnamed prepared statement, and a prepared statement cannot hold two commands:
//!   `GRANT …; DROP TABLE t` is refused by the server, and the transaction with it. A
//!   template without `{{role}}`, or Redis ACL rules, are refused before anything runs;
//!   a template the server refuses as malformed (SQLSTATE class 42) is `BadPrivileges`.
//!   A retried provision converges: if the role exists it gets `ALTER ROLE … LOGIN
//!   PASSWORD … VALID UNTIL …` and the templates run again (grants are idempotent;
//!   privileges dropped from the templates since are not revoked).
//!   Concurrent provisions are **batched** (see `batch.rs`): a worker takes every waiting
//!   request into one transaction (one advisory lock, the role statements in one round
//!   trip, each template still its own prepared statement, one commit); if the batch
//!   fails it is redone one account at a time, so only the account at fault fails.
//! - **renew**: `ALTER ROLE … VALID UNTIL …`; an absent role is `Failed`.
//! - **revoke** (idempotent): `ALTER ROLE … NOLOGIN` (committed, so no new session starts),
//!   `pg_terminate_backend` on every backend of the role (by OID, in every database of the
//!   cluster), then in one transaction `DROP ROLE IF EXISTS …` alone under a savepoint
//!   (enough for a role that owns nothing and holds no privilege, such as one a template
//!   only made a member of a group role) or, when PostgreSQL refuses that (2BP01), `REASSIGN
//!   OWNED BY … TO CURRENT_USER; DROP OWNED BY …; DROP ROLE IF EXISTS …`, then a second kill
//!   pass for a login that was past authentication during the first. **REASSIGN OWNED and DROP OWNED act only in the
//!   admin URL's database**: if the templates granted something in another database of the
//!   cluster, DROP ROLE fails (SQLSTATE 2BP01) and revoke reports it; keep a target's
//!   templates within its database. An absent role is `Ok` with `account_existed: false`.
//! - **verify_gone**: the role is absent from `pg_roles` and, with the password, a fresh
//!   connection as the account (same host, port, database and TLS settings as the admin
//!   URL) is refused with 28P01 or 28000. A present role, or an accepted login, is
//!   `StillPresent`; a login attempt that cannot reach the server is `Unreachable`, and any
//!   other answer is `Failed`: nothing is claimed verified without the check.
//! - **revoke_many / verify_gone_many** (grants that end together): the same steps with
//!   one statement for all the roles (`ALTER ROLE … NOLOGIN` for each in one message, one
//!   `pg_terminate_backend` query, `REASSIGN OWNED BY a, b … ; DROP OWNED BY …; DROP ROLE
//!   IF EXISTS …` in one transaction); verification checks `pg_roles` once for all and
//!   logs in as a sample of two accounts (a login costs a connection and a SCRAM exchange,
//!   milliseconds each), and each receipt says which checks its account had
//!   (`pg_roles+login`, or `pg_roles` naming the batch's refused probe). A batch of one is
//!   always checked fully. A failed batch is redone one account at a time.
//! - **list_managed**: `pg_roles` filtered with `starts_with(rolname, prefix)` (not `LIKE`,
//!   where `_` is a wildcard).
//!
//! Kairos's own role DDL on a database is serialized with a transaction-level advisory
//! lock: concurrent GRANTs or DROP OWNEDs on the same table otherwise fail with
//! "tuple concurrently updated". Every operation refuses an account without the managed
//! prefix, so the connector can never alter or drop a role it does not manage.
//!
//! # Connections and errors
//!
//! Admin connections come from a small lazily connecting pool (4 connections; 5 s to get
//! one, connecting included), so a target that is down at start-up blocks nothing. Failing
//! to connect (refused, timed out, DNS, TLS) is `Unreachable`; authentication or permission
//! refusals (SQLSTATE 28P01, 28000, 42501) are `AdminRefused`; other server errors are
//! `Failed`. The admin URL and passwords never appear in errors, logs or `Debug` output, and
//! sqlx's statement logging is off (statements carry SCRAM verifiers).
//!
//! # What the admin role needs
//!
//! `CREATEROLE`, membership in `pg_signal_backend` (or superuser) to terminate sessions, and
//! the grant option (or ownership) on what the templates grant. Workload logins must be
//! authenticated with `scram-sha-256` (or `md5`, which accepts SCRAM verifiers) in
//! `pg_hba.conf`: under `trust` a password, and so `VALID UNTIL`, is not checked.
//!
//! # Native expiry
//!
//! PostgreSQL refuses logins after `VALID UNTIL` by itself, even when Kairos is down; sessions
//! opened before stay until revoke kills them.

mod batch;
mod connector;
mod error;
mod scram;
mod sql;

pub use connector::{CONNECT_TIMEOUT, DEFAULT_MANAGED_PREFIX, PostgresConnector, PostgresSettings};
pub use scram::{SCRAM_ITERATIONS, SCRAM_SALT_LEN, scram_sha256_verifier};
