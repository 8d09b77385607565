-- Analytics aggregates (see src/aggregates.rs): per system, metric, UTC day
-- of creation, action and key, a count and two sums, kept in step with every
-- proposal change in the same transaction. The store fills them from the
-- stored proposals when `meta.analytics` is not the aggregates' version.
CREATE TABLE analytics_counts (
    system TEXT NOT NULL,
    metric TEXT NOT NULL,
    day    INTEGER NOT NULL,
    action TEXT NOT NULL,
    key    TEXT NOT NULL,
    n      INTEGER NOT NULL,
    a      REAL NOT NULL,
    b      REAL NOT NULL,
    PRIMARY KEY (system, metric, day, action, key)
) WITHOUT ROWID;

-- Proposals whose reviewers disagreed: the adjudication queue.
CREATE TABLE analytics_disagreements (
    proposal_id TEXT PRIMARY KEY,
    system      TEXT NOT NULL,
    action      TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX analytics_disagreements_by_time ON analytics_disagreements (system, created_at);
