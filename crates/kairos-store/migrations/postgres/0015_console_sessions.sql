-- Web console sessions. The cookie holds a random session id; only its SHA-256 (hex) is
-- stored, so a copy of the store cannot be replayed as a cookie. A session ends at
-- expires_at (absolute) or when last_seen_at is older than the idle limit (checked by the
-- console on every request), or at sign-out (the row is deleted).
-- token_id: the API token the person signed in with (NULL after single sign-on); revoking
-- it ends the session.
CREATE TABLE console_sessions (
    id_hash      TEXT PRIMARY KEY,
    user_name    TEXT NOT NULL,
    token_id     TEXT,
    csrf_secret  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    CHECK (expires_at >= created_at),
    CHECK (last_seen_at >= created_at)
);
-- The sweep of ended sessions.
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);
