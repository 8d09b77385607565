-- Analytics differences not yet folded into `analytics_counts`. A writer's
-- job appends what it changed as one row: a JSON array of [system, metric,
-- day, action, key, n, a, b], summed per count row. Every so often a writer
-- claims the rows no other writer holds (`FOR UPDATE SKIP LOCKED`), folds
-- them into its shard of the counts and deletes them, in one transaction.
-- Readers add `analytics_pending` (the rows spread out) to the counts, so
-- what they read is current. A job used to update about nine count rows,
-- which are the hottest rows of the database.
CREATE TABLE analytics_deltas (
    seq  BIGSERIAL PRIMARY KEY,
    rows TEXT NOT NULL
);
CREATE VIEW analytics_pending AS
SELECT e ->> 0 AS system, e ->> 1 AS metric, CAST(e ->> 2 AS BIGINT) AS day,
       e ->> 3 AS action, e ->> 4 AS key, CAST(e ->> 5 AS BIGINT) AS n,
       CAST(e ->> 6 AS DOUBLE PRECISION) AS a, CAST(e ->> 7 AS DOUBLE PRECISION) AS b
FROM analytics_deltas d, json_array_elements(CAST(d.rows AS JSON)) e;
