-- A renewal that waits for approvals is a request that names the grant it extends
-- (NULL for a request for a new grant). Approving it extends that grant; reads of a
-- grant's audit records include its renewals' records through this column.
ALTER TABLE requests ADD COLUMN renews TEXT;
CREATE INDEX requests_renews ON requests (renews) WHERE renews IS NOT NULL;
