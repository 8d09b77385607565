-- A policy text is stored once: its version (a hash of the text) is unique,
-- as on PostgreSQL, where writers run in parallel (SQLite's single writer
-- never stored a copy).
DELETE FROM policies WHERE EXISTS (
    SELECT 1 FROM policies b WHERE b.version = policies.version AND b.seq < policies.seq
);
CREATE UNIQUE INDEX policies_version ON policies (version);
