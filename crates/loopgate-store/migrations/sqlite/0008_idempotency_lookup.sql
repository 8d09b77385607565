-- The idempotency index leads with the key, and the lookup compares the
-- system as an expression (`system || ''`), so that this index is the only
-- one that can serve it. On PostgreSQL a cached generic plan chose
-- `proposals_by_system` instead, made while the table was nearly empty, and
-- every submission then read all of its system's proposals.
DROP INDEX proposals_idempotency;
CREATE UNIQUE INDEX proposals_idempotency ON proposals (idempotency_key, system)
    WHERE idempotency_key IS NOT NULL;
