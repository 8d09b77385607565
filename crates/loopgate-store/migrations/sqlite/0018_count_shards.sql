-- Analytics counts in shards (see the PostgreSQL migration
-- 0012_parallel_writers): SQLite's one writer always writes shard 0, so
-- the SQL is the same on both stores. The counts are rebuilt from the
-- proposals at start (their version changed).
DROP TABLE analytics_counts;
CREATE TABLE analytics_counts (
    system TEXT NOT NULL,
    metric TEXT NOT NULL,
    day    INTEGER NOT NULL,
    action TEXT NOT NULL,
    key    TEXT NOT NULL,
    shard  INTEGER NOT NULL,
    n      INTEGER NOT NULL,
    a      REAL NOT NULL,
    b      REAL NOT NULL,
    PRIMARY KEY (system, metric, day, action, key, shard)
) WITHOUT ROWID;
