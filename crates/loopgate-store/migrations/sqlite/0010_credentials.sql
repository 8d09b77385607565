-- Credentials have a lifecycle: a name, an optional expiry, revocation, and
-- when they were last used (written at most once a minute per credential).
ALTER TABLE credentials ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE credentials ADD COLUMN expires_at INTEGER;
ALTER TABLE credentials ADD COLUMN revoked_at INTEGER;
ALTER TABLE credentials ADD COLUMN last_used_at INTEGER;
CREATE INDEX credentials_by_owner ON credentials (kind, owner);

-- A disabled user cannot log in, and their tokens and sessions are refused.
ALTER TABLE users ADD COLUMN disabled_at INTEGER;
