-- Writers in parallel (ARCHITECTURE.md, "Concurrent writers"): no lock is
-- shared by all writers any more.
--
-- The audit log's events are written to `event_queue` by the transaction
-- that makes them, with its transaction id. The leader's sequencer moves
-- them into `events`, giving them their positions, once their transaction
-- can no longer be overtaken: only events whose `xid` is below the oldest
-- transaction still running (`pg_snapshot_xmin(pg_current_snapshot())`),
-- ordered by (xid, id). Positions stay dense; an event made after another
-- committed always comes after it; a crash neither skips nor repeats one.
CREATE TABLE event_queue (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    time BIGINT NOT NULL,
    actor TEXT NOT NULL,
    type TEXT NOT NULL,
    subject TEXT,
    data TEXT NOT NULL
);
CREATE INDEX event_queue_order ON event_queue (xid, id);

-- Analytics counts: each writer adds to rows of its own (`shard`), so that
-- writers never wait for each other on a busy count; readers sum the
-- shards. The store rebuilds the counts from the proposals at start
-- (their version changed).
DROP TABLE analytics_counts;
CREATE TABLE analytics_counts (
    system TEXT NOT NULL,
    metric TEXT NOT NULL,
    day    BIGINT NOT NULL,
    action TEXT NOT NULL,
    key    TEXT NOT NULL,
    shard  BIGINT NOT NULL,
    n      BIGINT NOT NULL,
    a      DOUBLE PRECISION NOT NULL,
    b      DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (system, metric, day, action, key, shard)
);
