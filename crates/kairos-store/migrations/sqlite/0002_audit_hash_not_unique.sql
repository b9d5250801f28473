-- Flavour-specific: SQLite cannot drop a UNIQUE column constraint, so the table is rebuilt.
--
-- The audit chain's prev_hash and hash columns lose their UNIQUE indexes. Their keys are
-- random (SHA-256), so every record inserted dirtied two index pages at random places:
-- most of the pages each write batch wrote to the WAL. The chain cannot fork without
-- them: every append reads and moves the one head row inside its write transaction
-- (SQLite's write lock, PostgreSQL's row lock), seq is the primary key, and
-- `kairos audit verify` checks that each record names its predecessor's hash.
CREATE TABLE audit_rebuilt (
    seq        INTEGER PRIMARY KEY CHECK (seq > 0),
    at         INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    identity   TEXT,
    request_id TEXT,
    grant_id   TEXT,
    task_ref   TEXT,
    data       TEXT NOT NULL,               -- JSON text exactly as hashed
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
) STRICT;
INSERT INTO audit_rebuilt (seq, at, kind, actor, identity, request_id, grant_id, task_ref,
                           data, prev_hash, hash)
SELECT seq, at, kind, actor, identity, request_id, grant_id, task_ref, data, prev_hash, hash
FROM audit;
DROP TABLE audit;
ALTER TABLE audit_rebuilt RENAME TO audit;
CREATE INDEX audit_identity ON audit (identity, seq);
CREATE INDEX audit_request ON audit (request_id, seq);
CREATE INDEX audit_grant ON audit (grant_id, seq);
CREATE INDEX audit_task_ref ON audit (task_ref, seq);
CREATE INDEX audit_at ON audit (at);
