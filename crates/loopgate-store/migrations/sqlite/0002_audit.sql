-- The tamper-evident audit log: per-proposal salts, erasure, and the Merkle
-- tree over `events` (hash tiles, tree head, signed checkpoints).

ALTER TABLE proposals ADD COLUMN salt BLOB;
-- Payloads of settled proposals are erased this long after settling.
ALTER TABLE systems ADD COLUMN retention_ms INTEGER;
ALTER TABLE proposals ADD COLUMN erased_at INTEGER;
-- The unsalted digest an idempotent replay must match; erased with the payload.
ALTER TABLE proposals RENAME COLUMN submitted_digest TO fingerprint;

-- The log's entries are the rows of `events`: entry `i` is the event with
-- `seq = i + 1`, framed as canonical JSON (loopgate_core::audit::entry).
-- One writer and no deletes keep `seq` dense; the sequencer checks it.
CREATE INDEX events_by_subject ON events (subject);

-- C2SP tlog-tiles: the widest version of each hash tile.
CREATE TABLE audit_tiles (
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;

-- One row: the sequenced tree's size and root.
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    size INTEGER NOT NULL,
    root BLOB NOT NULL
);

CREATE TABLE audit_checkpoints (
    size INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    note TEXT NOT NULL
);

-- No interface changes an entry: the database refuses it too.
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'audit entries are immutable'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are immutable'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
