-- A policy text is stored once: its version (a hash of the text) is unique.
-- Publishing used to look for the version and insert when it found none,
-- which two writers running in parallel could both do. Copies left by that
-- race hold the same text; the first one stays.
DELETE FROM policies a USING policies b WHERE a.version = b.version AND a.seq > b.seq;
CREATE UNIQUE INDEX policies_version ON policies (version);
