-- When a database account's password was shown to its workload after approval. The
-- write that shows it sets this only where it is still NULL, so of two concurrent reads
-- (on one replica or two) exactly one shows the password.
ALTER TABLE grants ADD COLUMN delivered_at INTEGER;
-- Grants whose password was shown before this column existed.
UPDATE grants SET delivered_at = (
    SELECT MIN(a.at) FROM audit a
    WHERE a.grant_id = grants.id AND a.kind = 'credential_delivered'
) WHERE account IS NOT NULL;
