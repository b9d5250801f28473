-- Indexes for the console's pages over a large store.
--
-- Recertifications are listed a page at a time, due soonest first, with
-- (due_at, subject_kind, subject) as the page's key: an index in that order answers a page
-- without sorting every subject that shares a due date (a bulk import's identities all do).
DROP INDEX recertifications_due;
CREATE INDEX recertifications_due ON recertifications (due_at, subject_kind, subject);

-- The approvers' inbox lists pending requests newest first (ids are made in time order):
-- a partial index holding only pending requests answers it without walking every request.
CREATE INDEX requests_pending ON requests (id) WHERE state = 'pending';
