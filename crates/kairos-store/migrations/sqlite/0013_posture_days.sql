-- The posture report's figures over time without reading every grant of the window.
-- Verified grants are folded into per-day rows by a background pass that follows the
-- audit chain (`verified` records) up to a watermark; a report adds the days of its
-- window, the grants verified after the watermark, and the live grants.
CREATE TABLE posture_fold (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL CHECK (seq >= 0),  -- audit records folded: every seq <= this one
    kept_from_day INTEGER NOT NULL -- folded days before this one are deleted
) STRICT;
INSERT INTO posture_fold (id, seq, kept_from_day) VALUES (1, 0, 0);

-- Milliseconds of access each identity held on a UTC day (days since the epoch), from
-- grants verified gone; a grant over midnight adds to both days.
CREATE TABLE posture_grant_days (
    identity TEXT NOT NULL,
    day      INTEGER NOT NULL,
    ms       INTEGER NOT NULL CHECK (ms >= 0),
    PRIMARY KEY (identity, day)
) STRICT;

-- End → verified latencies on the day of the end, counted per bucket
-- (`kairos_governance::posture::LATENCY_BUCKETS_MS`, one more for longer).
CREATE TABLE posture_latency_days (
    day    INTEGER NOT NULL,
    bucket INTEGER NOT NULL CHECK (bucket >= 0),
    n      INTEGER NOT NULL CHECK (n >= 0),
    ms     INTEGER NOT NULL CHECK (ms >= 0),
    PRIMARY KEY (day, bucket)
) STRICT;

-- The live grants' access by identity, read in identity order from the index alone
-- (no table lookups, no sort), however many grants are live.
CREATE INDEX grants_live_identity ON grants (identity, issued_at, expires_at, ended_at, state)
    WHERE state IN ('active', 'ending');

-- The `verified` records after the fold's watermark, found without reading the records of
-- other kinds between them (after a restart on a long chain, the fold and a report would
-- otherwise read millions of records to find a few).
CREATE INDEX audit_verified ON audit (seq) WHERE kind = 'verified';
