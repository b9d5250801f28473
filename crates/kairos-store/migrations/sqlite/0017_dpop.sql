-- DPoP (RFC 9449). dpop_proofs: the proofs seen, by hex SHA-256 of the proof key's
-- thumbprint and the proof's jti, kept until the proof's iat leaves the accepted window
-- (expires_at, ms); the primary key refuses a second use on every replica. Pruned by
-- the broker's scheduler.
CREATE TABLE dpop_proofs (
    replay_key  TEXT PRIMARY KEY,
    expires_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX dpop_proofs_expires ON dpop_proofs (expires_at);
-- The key a request's tokens are bound to (cnf.jkt), written with the claim of the proof
-- that came with the request, so a token minted again for it (a read of the request after
-- approval, a renewal) is bound to the same key. Kept as long as the request.
CREATE TABLE dpop_bindings (
    request_id  TEXT PRIMARY KEY,
    jkt         TEXT NOT NULL
) STRICT;
