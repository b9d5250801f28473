-- After-action reviews of break-glass grants: one per grant, opened in the transaction
-- that records the grant, open until an owner of the identity's team files it.
-- Overdue is derived (open and due_at <= now); escalated_at marks the one escalation.
CREATE TABLE reviews (
    id           TEXT PRIMARY KEY,
    grant_id     TEXT NOT NULL UNIQUE REFERENCES grants (id),
    request_id   TEXT NOT NULL REFERENCES requests (id),
    identity     TEXT NOT NULL,
    entitlement  TEXT NOT NULL,
    requester    TEXT NOT NULL,
    task_ref     TEXT NOT NULL,
    opened_at    INTEGER NOT NULL,
    due_at       INTEGER NOT NULL,
    escalated_at INTEGER,
    state        TEXT NOT NULL CHECK (state IN ('open', 'filed')),
    filed_by     TEXT,
    filed_at     INTEGER,
    summary      TEXT,
    CHECK (due_at >= opened_at),
    CHECK ((state = 'filed') = (filed_by IS NOT NULL)),
    CHECK ((filed_by IS NULL) = (filed_at IS NULL)),
    CHECK ((filed_by IS NULL) = (summary IS NULL))
) STRICT;
-- The review pass reads only this index: open reviews by due time.
CREATE INDEX reviews_open_due ON reviews (due_at) WHERE state = 'open';
-- `context.open_reviews`: an identity's open reviews.
CREATE INDEX reviews_open_identity ON reviews (identity) WHERE state = 'open';
CREATE INDEX reviews_state_opened ON reviews (state, opened_at);
