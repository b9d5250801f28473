-- Flavour-specific: the SQLite flavour rebuilds the table instead.
--
-- The audit chain's prev_hash and hash columns lose their UNIQUE indexes. Their keys are
-- random (SHA-256), so every record inserted dirtied two index pages at random places.
-- The chain cannot fork without them: every append reads and moves the one head row
-- inside its write transaction (a row lock here), seq is the primary key, and
-- `kairos audit verify` checks that each record names its predecessor's hash.
ALTER TABLE audit DROP CONSTRAINT audit_prev_hash_key;
ALTER TABLE audit DROP CONSTRAINT audit_hash_key;
