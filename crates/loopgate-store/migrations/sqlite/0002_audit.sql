-- The tamper-evident audit log: per-proposal salts, erasure, and the
-- sequenced log (entries, hash tiles, tree head, signed checkpoints).
-- `events` stays the queue the sequencer drains in order.

ALTER TABLE proposals ADD COLUMN salt BLOB;
-- Payloads of settled proposals are erased this long after settling.
ALTER TABLE systems ADD COLUMN retention_ms INTEGER;
ALTER TABLE proposals ADD COLUMN erased_at INTEGER;
-- The unsalted digest an idempotent replay must match; erased with the payload.
ALTER TABLE proposals RENAME COLUMN submitted_digest TO fingerprint;

CREATE TABLE audit_entries (
    idx INTEGER PRIMARY KEY,
    subject TEXT,
    entry BLOB NOT NULL
);
CREATE INDEX audit_entries_by_subject ON audit_entries (subject);

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
CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit entries are immutable'); END;
CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are immutable'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
