-- Flavour-specific: SQLite cannot alter a CHECK constraint and rebuilds the table; PostgreSQL alters it.
-- Resource servers: users with the role `resource-server`, bound to the token targets
-- whose tokens they may introspect and revoke (JSON [TargetName]; empty for people).
-- SQLite cannot change a CHECK constraint, so the table is rebuilt. The API tokens are
-- moved aside first so that dropping the old table breaks no foreign key (sqlx runs this
-- in a transaction, where `PRAGMA foreign_keys` cannot be turned off).
CREATE TABLE users_new (
    name        TEXT PRIMARY KEY,
    role        TEXT NOT NULL
        CHECK (role IN ('admin', 'operator', 'approver', 'auditor', 'resource-server')),
    teams       TEXT NOT NULL,              -- JSON [TeamName]
    targets     TEXT NOT NULL DEFAULT '[]', -- JSON [TargetName]
    created_at  INTEGER NOT NULL,
    disabled_at INTEGER
) STRICT;
INSERT INTO users_new (name, role, teams, created_at, disabled_at)
    SELECT name, role, teams, created_at, disabled_at FROM users;
CREATE TEMP TABLE api_tokens_moved AS SELECT * FROM api_tokens;
DELETE FROM api_tokens;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;
INSERT INTO api_tokens (id, user_name, secret_hash, created_at, revoked_at)
    SELECT id, user_name, secret_hash, created_at, revoked_at FROM api_tokens_moved;
DROP TABLE api_tokens_moved;
