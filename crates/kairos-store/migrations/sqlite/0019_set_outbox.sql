-- Security Event Tokens (RFC 8417) telling resource servers that verify tokens offline
-- that a token grant ended. One row per (grant, receiver): the revocation worker writes
-- it (ON CONFLICT DO NOTHING, so a retried job never makes a second one) with the signed
-- SET fixed as `body`; push receivers are sent it (RFC 8935) by a delivery pass that
-- claims due rows with a lease (next_at, claim), poll receivers fetch it (RFC 8936).
-- `state`: pending (not yet acknowledged), acked (202 / poll ack), failed (the receiver
-- refused it with an error: permanent), dead (undelivered past the give-up age).
-- `wait_until`: until when the grant's receipt waits for this receiver's ack
-- (ack_timeout after the row was written).
CREATE TABLE set_outbox (
    jti          TEXT PRIMARY KEY,
    grant_id     TEXT NOT NULL,
    receiver     TEXT NOT NULL,
    delivery     TEXT NOT NULL CHECK (delivery IN ('push', 'poll')),
    body         TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'acked', 'failed', 'dead')),
    attempts     INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    wait_until   INTEGER NOT NULL,
    next_at      INTEGER NOT NULL,
    claim        TEXT,
    acked_at     INTEGER,
    last_error   TEXT,
    UNIQUE (grant_id, receiver)
) STRICT;
CREATE INDEX set_outbox_due ON set_outbox (next_at) WHERE state = 'pending' AND delivery = 'push';
CREATE INDEX set_outbox_receiver ON set_outbox (receiver, created_at) WHERE state = 'pending';
