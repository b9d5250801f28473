-- SSH targets: each target's certificate authority keys (Ed25519; the private half sealed
-- with the master key, never plain), the public key a request asked to have certified,
-- and every certificate issued, by grant, with its serial (what a KRL lists).
CREATE TABLE ssh_ca_keys (
    id             TEXT PRIMARY KEY,
    target         TEXT NOT NULL,
    public_key     TEXT NOT NULL,           -- OpenSSH one-line form
    sealed_private TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    retire_until   INTEGER                  -- NULL while it signs; else listed until then
) STRICT;
-- At most one signing key per target.
CREATE UNIQUE INDEX ssh_ca_keys_one_current ON ssh_ca_keys (target) WHERE retire_until IS NULL;

-- Written before the request, like cert_bindings; kept as long as the request.
CREATE TABLE ssh_request_keys (
    request_id  TEXT PRIMARY KEY,
    public_key  TEXT NOT NULL
) STRICT;

-- Recorded only while the grant is active (one conditional insert), at most one per grant.
CREATE TABLE ssh_certs (
    grant_id     TEXT PRIMARY KEY,
    target       TEXT NOT NULL,
    ca_key_id    TEXT NOT NULL,
    serial       INTEGER NOT NULL CHECK (serial > 0),
    certificate  TEXT NOT NULL,
    valid_before INTEGER NOT NULL,
    revoked_at   INTEGER                    -- set by the revocation worker when the grant ends
) STRICT;
CREATE UNIQUE INDEX ssh_certs_serial ON ssh_certs (ca_key_id, serial);
CREATE INDEX ssh_certs_revoked ON ssh_certs (target, valid_before) WHERE revoked_at IS NOT NULL;
