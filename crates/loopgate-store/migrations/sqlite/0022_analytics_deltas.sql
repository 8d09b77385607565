-- Analytics differences not yet folded into `analytics_counts`. A writer's
-- group (one job on PostgreSQL) appends what it changed as one row: a JSON
-- array of [system, metric, day, action, key, n, a, b], summed per count
-- row. Every so often a writer folds the rows it finds into the counts and
-- deletes them, in one transaction. Readers add `analytics_pending` (the
-- rows spread out) to the counts, so what they read is current.
CREATE TABLE analytics_deltas (
    seq  INTEGER PRIMARY KEY,
    rows TEXT NOT NULL
);
CREATE VIEW analytics_pending AS
SELECT j.value ->> 0 AS system, j.value ->> 1 AS metric, j.value ->> 2 AS day,
       j.value ->> 3 AS action, j.value ->> 4 AS key,
       j.value ->> 5 AS n, j.value ->> 6 AS a, j.value ->> 7 AS b
FROM analytics_deltas d, json_each(d.rows) j;
