-- Identities whose owner team has no active owner: one row while the identity is
-- orphaned (kairos_governance::owners decides who is). The grace before
-- `[governance] orphan_action` applies runs from `detected_at`; `suspended_at` is set once
-- the action suspended the identity, so it is done once, whichever replica does it.
CREATE TABLE identity_orphans (
    identity     TEXT PRIMARY KEY,
    team         TEXT NOT NULL,
    detected_at  INTEGER NOT NULL,
    suspended_at INTEGER,
    CHECK (suspended_at IS NULL OR suspended_at >= detected_at)
) STRICT;
