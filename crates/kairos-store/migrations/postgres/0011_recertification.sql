-- Recertification: each identity and standing exception of the catalog is re-attested by
-- an owner of its team once per interval. One row per subject, added when the
-- recertification pass first sees it; `due_at` (the end of the current cycle) is kept in
-- step with the catalog's interval by that pass and moved by each attestation.
CREATE TABLE recertifications (
    subject_kind     TEXT NOT NULL CHECK (subject_kind IN ('identity', 'exception')),
    subject          TEXT NOT NULL,
    first_seen_at    BIGINT NOT NULL,
    last_attested_at BIGINT,
    attested_by      TEXT,
    reason           TEXT,
    due_at           BIGINT NOT NULL,
    PRIMARY KEY (subject_kind, subject),
    CHECK ((last_attested_at IS NULL) = (attested_by IS NULL)),
    CHECK ((last_attested_at IS NULL) = (reason IS NULL))
);
CREATE INDEX recertifications_due ON recertifications (due_at);

-- The last recorded rotation of each standing exception's secret (the history is in the
-- audit log, one `exception_rotated` record per rotation).
CREATE TABLE exception_rotations (
    exception       TEXT PRIMARY KEY,
    last_rotated_at BIGINT NOT NULL,
    rotated_by      TEXT NOT NULL,
    note            TEXT
);

-- What the recertification pass acted on: one row per subject, notice and cycle (the due
-- date, rotation due date or end date it is about). Inserting the row is the claim: its
-- primary key lets exactly one replica act on each, and the audit record commits with it.
CREATE TABLE recert_notices (
    subject_kind TEXT NOT NULL CHECK (subject_kind IN ('identity', 'exception')),
    subject      TEXT NOT NULL,
    notice       TEXT NOT NULL
        CHECK (notice IN ('recert_due', 'recert_overdue', 'rotation_overdue', 'expired')),
    cycle_at     BIGINT NOT NULL,
    noticed_at   BIGINT NOT NULL,
    PRIMARY KEY (subject_kind, subject, notice, cycle_at)
);
