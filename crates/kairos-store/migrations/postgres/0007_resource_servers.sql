-- Flavour-specific: SQLite cannot alter a CHECK constraint and rebuilds the table; PostgreSQL alters it.
-- Resource servers: users with the role `resource-server`, bound to the token targets
-- whose tokens they may introspect and revoke (JSON [TargetName]; empty for people).
ALTER TABLE users ADD COLUMN targets TEXT NOT NULL DEFAULT '[]';
ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check
    CHECK (role IN ('admin', 'operator', 'approver', 'auditor', 'resource-server'));
