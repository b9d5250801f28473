-- Flavour-specific: SQLite cannot alter a CHECK constraint and rebuilds the table; PostgreSQL alters it.
-- A grant may end as `config_removed`: an applied configuration removed its identity,
-- team, target or entitlement.
ALTER TABLE grants DROP CONSTRAINT grants_end_reason_check;
ALTER TABLE grants ADD CONSTRAINT grants_end_reason_check
    CHECK (end_reason IN ('expired', 'released', 'revoked', 'aborted', 'config_removed'));
