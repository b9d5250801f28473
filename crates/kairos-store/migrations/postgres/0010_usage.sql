-- Usage monitoring. Keep in step with the other flavour: the same tables, columns,
-- constraints and indexes; only the integer type differs.

-- The address a request came from (NULL when unknown): one column on the hottest insert.
ALTER TABLE requests ADD COLUMN source_ip TEXT;

-- How each grant has been used: introspections of its token and sessions of its account
-- seen at reconcile. Aggregated in memory and written in batches (one upsert per grant
-- per flush); several replicas merge (min first, max last, sum of uses).
CREATE TABLE grant_usage (
    grant_id      TEXT PRIMARY KEY,
    first_used_at BIGINT NOT NULL,
    last_used_at  BIGINT NOT NULL,
    uses          BIGINT NOT NULL CHECK (uses > 0),
    last_source   TEXT,                     -- address of the last use, when known
    last_client   TEXT,                     -- who used it last: a resource server, or session@<target>
    CHECK (first_used_at <= last_used_at)
);

-- When each identity last requested access and from where; first_seen_at is when Kairos
-- first knew of it (its first request, or the first usage pass that saw it configured).
CREATE TABLE identity_usage (
    identity        TEXT PRIMARY KEY,
    first_seen_at   BIGINT NOT NULL,
    last_request_at BIGINT,
    last_source     TEXT
);

-- The distinct addresses each identity was seen at (its requests, its accounts' sessions).
CREATE TABLE identity_sources (
    identity      TEXT NOT NULL,
    source        TEXT NOT NULL,
    first_seen_at BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL,
    PRIMARY KEY (identity, source)
);
CREATE INDEX identity_sources_seen ON identity_sources (last_seen_at);

-- What a usage detector has flagged, once per subject (a grant id or an identity name):
-- the first replica to insert the row raises the alert; the others find it there.
CREATE TABLE usage_flags (
    kind       TEXT NOT NULL,
    subject    TEXT NOT NULL,
    flagged_at BIGINT NOT NULL,
    PRIMARY KEY (kind, subject)
);
