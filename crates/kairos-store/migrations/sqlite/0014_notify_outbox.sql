-- Notifications. The audit record is the durable event: a dispatcher reads records after
-- the watermark, writes one outbox row per channel and event, and moves the watermark by
-- compare-and-set in the same transaction, so each event is dispatched once whatever
-- number of replicas run. Delivery claims due rows with a lease (next_at), so a crashed
-- replica's rows are taken over.
CREATE TABLE notify_watermark (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
) STRICT;
-- Events recorded before notifications existed are not sent.
INSERT INTO notify_watermark (id, seq) SELECT 1, COALESCE(MAX(seq), 0) FROM audit;
CREATE TABLE notify_outbox (
    -- The idempotency key (webhook-id): kairos-<audit seq>-<channel>.
    id           TEXT PRIMARY KEY,
    channel      TEXT NOT NULL,
    event        TEXT NOT NULL,
    audit_seq    INTEGER NOT NULL,
    body         TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts     INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    -- Pending: when it is due (after a failure, or when a claim's lease ends).
    next_at      INTEGER NOT NULL,
    -- The delivery attempt that holds it (a random token), while one does.
    claim        TEXT,
    delivered_at INTEGER,
    last_error   TEXT
) STRICT;
CREATE INDEX notify_outbox_due ON notify_outbox (next_at) WHERE state = 'pending';
CREATE INDEX notify_outbox_state ON notify_outbox (state, created_at);
