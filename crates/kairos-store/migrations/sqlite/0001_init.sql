-- Kairos store schema, SQLite flavour.
-- Keep in step with ../postgres/0001_init.sql: the same tables, columns, constraints and
-- indexes; only the column types differ (INTEGER in STRICT tables here, BIGINT in PostgreSQL).
-- Times are milliseconds since the Unix epoch (UTC); JSON is TEXT; enums are TEXT.

-- Access requests: pending -> granted | denied | expired.
CREATE TABLE requests (
    id            TEXT PRIMARY KEY,
    identity      TEXT NOT NULL,
    entitlement   TEXT NOT NULL,
    ttl_secs      INTEGER NOT NULL CHECK (ttl_secs > 0),
    task_kind     TEXT NOT NULL,
    task_ref      TEXT NOT NULL,
    task_reason   TEXT NOT NULL,
    requester     TEXT NOT NULL,
    decision      TEXT NOT NULL,            -- JSON Decision
    state         TEXT NOT NULL CHECK (state IN ('pending', 'granted', 'denied', 'expired')),
    approvals     TEXT NOT NULL,            -- JSON [Approval]
    denial        TEXT,                     -- JSON Approval
    created_at    INTEGER NOT NULL,
    pending_until INTEGER,
    grant_id      TEXT
) STRICT;
-- The pending-request expirer.
CREATE INDEX requests_state_pending_until ON requests (state, pending_until);
CREATE INDEX requests_identity ON requests (identity, created_at);

-- Grants, their end and their receipt, flattened. The CHECKs mirror GrantState: an active
-- grant has no end, an ending one has an end, an ended one also has its receipt.
CREATE TABLE grants (
    id             TEXT PRIMARY KEY,
    request_id     TEXT NOT NULL REFERENCES requests (id),
    identity       TEXT NOT NULL,
    entitlement    TEXT NOT NULL,
    target         TEXT NOT NULL,
    audience       TEXT NOT NULL,
    scopes         TEXT NOT NULL,           -- JSON [String]
    task_kind      TEXT NOT NULL,
    task_ref       TEXT NOT NULL,
    task_reason    TEXT NOT NULL,
    issued_at      INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    max_expires_at INTEGER NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('provisioning', 'active', 'ending', 'ended')),
    end_reason     TEXT CHECK (end_reason IN ('expired', 'released', 'revoked', 'aborted')),
    ended_by       TEXT,
    ended_at       INTEGER,
    attempts       INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error     TEXT,
    revoked_at     INTEGER,
    verified_at    INTEGER,
    verify_method  TEXT,
    evidence       TEXT,
    account        TEXT,                    -- the downstream account (database targets)
    sealed_secret  TEXT,                    -- its password sealed with the master key; erased once verified gone
    CHECK (expires_at <= max_expires_at),
    CHECK ((state IN ('provisioning', 'active')) = (end_reason IS NULL)),
    CHECK (state <> 'ended' OR sealed_secret IS NULL),
    CHECK (end_reason IS NULL OR (ended_by IS NOT NULL AND ended_at IS NOT NULL)),
    CHECK ((state = 'ended') = (verified_at IS NOT NULL)),
    CHECK (state <> 'ended' OR (revoked_at IS NOT NULL AND verify_method IS NOT NULL AND evidence IS NOT NULL))
) STRICT;
-- The grant expirer reads only this index: active grants by expiry.
CREATE INDEX grants_active_expiry ON grants (expires_at) WHERE state = 'active';
CREATE INDEX grants_identity ON grants (identity);
CREATE INDEX grants_task_ref ON grants (task_ref);
CREATE INDEX grants_request ON grants (request_id);
-- The reconciler: which grant does a downstream account back?
CREATE INDEX grants_target_account ON grants (target, account);
CREATE INDEX grants_state_issued ON grants (state, issued_at);

-- The durable revocation queue: one job per ending grant until it is verified gone.
-- `attempts` counts claims (a job claimed again and again is a worker crashing on it).
CREATE TABLE revocations (
    grant_id      TEXT PRIMARY KEY REFERENCES grants (id),
    due_at        INTEGER NOT NULL,
    claimed_until INTEGER,
    attempts      INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX revocations_due ON revocations (due_at);

-- The tamper-evident audit chain.
CREATE TABLE audit (
    seq        INTEGER PRIMARY KEY CHECK (seq > 0),
    at         INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    identity   TEXT,
    request_id TEXT,
    grant_id   TEXT,
    task_ref   TEXT,
    data       TEXT NOT NULL,               -- JSON text exactly as hashed
    prev_hash  TEXT NOT NULL UNIQUE,        -- a second record after the same one is a fork
    hash       TEXT NOT NULL UNIQUE
) STRICT;
CREATE INDEX audit_identity ON audit (identity, seq);
CREATE INDEX audit_request ON audit (request_id, seq);
CREATE INDEX audit_grant ON audit (grant_id, seq);
CREATE INDEX audit_task_ref ON audit (task_ref, seq);
CREATE INDEX audit_at ON audit (at);

-- The chain's head: one row, locked by every append so the chain never forks.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT NOT NULL
) STRICT;
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Kairos signing keys; the private half sealed with the master key, never plain.
CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY,
    alg            TEXT NOT NULL,
    sealed_private TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    retire_until   INTEGER                   -- NULL while current
) STRICT;
-- At most one current key.
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys ((retire_until IS NULL))
    WHERE retire_until IS NULL;

CREATE TABLE users (
    name        TEXT PRIMARY KEY,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'approver', 'auditor')),
    teams       TEXT NOT NULL,              -- JSON [TeamName]
    created_at  INTEGER NOT NULL,
    disabled_at INTEGER
) STRICT;

-- Personal API tokens: only the SHA-256 of the secret is stored.
CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    user_name   TEXT NOT NULL REFERENCES users (name),
    secret_hash TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
) STRICT;
CREATE INDEX api_tokens_user ON api_tokens (user_name);

-- Every applied declarative configuration, newest = current.
CREATE TABLE config_versions (
    version    INTEGER PRIMARY KEY CHECK (version > 0),
    bundle     TEXT NOT NULL,
    applied_at INTEGER NOT NULL
) STRICT;

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
INSERT INTO meta (key, value) VALUES ('schema', 'kairos');
