-- Flavour-specific: SQLite cannot alter a CHECK constraint and rebuilds the table; PostgreSQL alters it.
-- Governance: grants may end because their identity was suspended or retired, because an
-- applied configuration removed exactly what they stand on, or because its policies no
-- longer permit them; identities have a lifecycle state; alerts have a table.
-- The grants table is rebuilt as in 0006 (SQLite cannot alter a CHECK constraint).
PRAGMA defer_foreign_keys = ON;
CREATE TABLE grants_new (
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
    end_reason     TEXT CHECK (end_reason IN ('expired', 'released', 'revoked', 'aborted', 'config_removed',
        'suspended', 'retired', 'identity_removed', 'team_removed', 'target_removed',
        'entitlement_removed', 'policy_changed')),
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
    delivered_at   INTEGER,                 -- when its password was shown (0003)
    CHECK (expires_at <= max_expires_at),
    CHECK ((state IN ('provisioning', 'active')) = (end_reason IS NULL)),
    CHECK (state <> 'ended' OR sealed_secret IS NULL),
    CHECK (end_reason IS NULL OR (ended_by IS NOT NULL AND ended_at IS NOT NULL)),
    CHECK ((state = 'ended') = (verified_at IS NOT NULL)),
    CHECK (state <> 'ended' OR (revoked_at IS NOT NULL AND verify_method IS NOT NULL AND evidence IS NOT NULL))
) STRICT;
INSERT INTO grants_new (id, request_id, identity, entitlement, target, audience, scopes,
    task_kind, task_ref, task_reason, issued_at, expires_at, max_expires_at, state,
    end_reason, ended_by, ended_at, attempts, last_error, revoked_at, verified_at,
    verify_method, evidence, account, sealed_secret, delivered_at)
SELECT id, request_id, identity, entitlement, target, audience, scopes,
    task_kind, task_ref, task_reason, issued_at, expires_at, max_expires_at, state,
    end_reason, ended_by, ended_at, attempts, last_error, revoked_at, verified_at,
    verify_method, evidence, account, sealed_secret, delivered_at
FROM grants;
DROP TABLE grants;
ALTER TABLE grants_new RENAME TO grants;
CREATE INDEX grants_active_expiry ON grants (expires_at) WHERE state = 'active';
CREATE INDEX grants_identity ON grants (identity);
CREATE INDEX grants_task_ref ON grants (task_ref);
CREATE INDEX grants_target_account ON grants (target, account);
CREATE INDEX grants_state_issued ON grants (state, issued_at);

-- The lifecycle state of identities that are not simply active (no row: active). One
-- row per identity; the catalog says which identities exist.
CREATE TABLE identity_states (
    identity TEXT PRIMARY KEY,
    state    TEXT NOT NULL CHECK (state IN ('active', 'suspended', 'retired')),
    cause    TEXT CHECK (cause IN ('manual', 'orphaned', 'recert_overdue')),
    reason   TEXT NOT NULL,
    by_whom  TEXT NOT NULL,
    since    INTEGER NOT NULL,
    CHECK ((state = 'active') = (cause IS NULL))
) STRICT;

-- Alerts: findings that need a person. At most one unresolved alert per dedupe key.
CREATE TABLE alerts (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    subject      TEXT NOT NULL,
    identity     TEXT,
    dedupe_key   TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
    message      TEXT NOT NULL,
    detail       TEXT NOT NULL,             -- JSON object
    opened_at    INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    occurrences  INTEGER NOT NULL CHECK (occurrences > 0),
    updated_at   INTEGER NOT NULL,
    updated_by   TEXT,
    note         TEXT
) STRICT;
CREATE UNIQUE INDEX alerts_one_unresolved ON alerts (dedupe_key) WHERE state <> 'resolved';
CREATE INDEX alerts_state_opened ON alerts (state, opened_at);
CREATE INDEX alerts_identity ON alerts (identity, opened_at);

-- The posture report counts removed residue over a window: a partial index holds only
-- those records, so the audit's hot inserts pay nothing for it.
CREATE INDEX audit_residue_at ON audit (at) WHERE kind = 'residue_removed';
