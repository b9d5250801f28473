-- Flavour-specific: SQLite cannot alter a CHECK constraint and rebuilds the table; PostgreSQL alters it.
-- Governance: grants may end because their identity was suspended or retired, because an
-- applied configuration removed exactly what they stand on, or because its policies no
-- longer permit them; identities have a lifecycle state; alerts have a table.
ALTER TABLE grants DROP CONSTRAINT grants_end_reason_check;
ALTER TABLE grants ADD CONSTRAINT grants_end_reason_check
    CHECK (end_reason IN ('expired', 'released', 'revoked', 'aborted', 'config_removed',
        'suspended', 'retired', 'identity_removed', 'team_removed', 'target_removed',
        'entitlement_removed', 'policy_changed'));

-- The lifecycle state of identities that are not simply active (no row: active). One
-- row per identity; the catalog says which identities exist.
CREATE TABLE identity_states (
    identity TEXT PRIMARY KEY,
    state    TEXT NOT NULL CHECK (state IN ('active', 'suspended', 'retired')),
    cause    TEXT CHECK (cause IN ('manual', 'orphaned', 'recert_overdue')),
    reason   TEXT NOT NULL,
    by_whom  TEXT NOT NULL,
    since    BIGINT NOT NULL,
    CHECK ((state = 'active') = (cause IS NULL))
);

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
    opened_at    BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    occurrences  BIGINT NOT NULL CHECK (occurrences > 0),
    updated_at   BIGINT NOT NULL,
    updated_by   TEXT,
    note         TEXT
);
CREATE UNIQUE INDEX alerts_one_unresolved ON alerts (dedupe_key) WHERE state <> 'resolved';
CREATE INDEX alerts_state_opened ON alerts (state, opened_at);
CREATE INDEX alerts_identity ON alerts (identity, opened_at);

-- The posture report counts removed residue over a window: a partial index holds only
-- those records, so the audit's hot inserts pay nothing for it.
CREATE INDEX audit_residue_at ON audit (at) WHERE kind = 'residue_removed';
