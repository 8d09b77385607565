//! Keeps `analytics_counts` in step with the proposals (see
//! `crate::aggregates`): [`Tracked`] brackets a change to one proposal,
//! [`ensure`] rebuilds everything when the stored version differs.
//!
//! The differences are not written one by one: the writer thread gathers
//! them per job, keeps a job's only when the job succeeded ([`job_done`]),
//! and before the commit appends the sum of the group's (a job's on
//! PostgreSQL) to `analytics_deltas` as one row ([`flush`]). Every
//! [`FOLD_EVERY`] rows it appended, a writer folds: it takes the rows
//! waiting there (on PostgreSQL those no other writer holds), adds them to
//! the counts and deletes them, in one transaction (SQLite's writer in the
//! group's, in a savepoint; a PostgreSQL writer in one of its own after it
//! answered the job, [`fold_if_due`]). Readers add the rows not folded
//! yet (the view `analytics_pending`), so what they read is as current as
//! before. A cycle used to upsert about nine count rows a job; it now
//! inserts one row, and a fold upserts each count row once for many jobs.
//! The buffers are thread-local: only writer threads write.
//!
//! Each writer folds into count rows of its own (`shard`, [`set_shard`]),
//! so that PostgreSQL's writers never wait for each other on a busy count;
//! readers sum the shards. SQLite's one writer writes shard 0.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use loopgate_core::Timestamp;

use crate::db::{Connection, Dialect, params};

use crate::aggregates::{self, Contribution, Count};
use crate::sql::queries as q;
use crate::{AnalyticsFilter, ReviewFact, StoreError, Total, TotalsQuery};

/// A proposal's contribution before a change; [`Tracked::apply`] after the
/// change writes the difference.
pub(super) struct Tracked {
    id: String,
    before: Option<Contribution>,
}

impl Tracked {
    /// Reads the contribution of proposal `id` as it is now.
    pub(super) fn before(conn: &Connection, id: &str) -> Result<Tracked, StoreError> {
        let before = q::fact(conn, id)?.map(|fact| Contribution::of(&fact));
        Ok(Tracked {
            id: id.to_owned(),
            before,
        })
    }

    /// A proposal that does not exist yet.
    pub(super) fn new(id: &str) -> Tracked {
        Tracked {
            id: id.to_owned(),
            before: None,
        }
    }

    /// The contribution of `fact`, as the job read or made it
    /// (`queries::fact_of`).
    pub(super) fn of(fact: &ReviewFact) -> Tracked {
        Tracked {
            id: fact.id.to_string(),
            before: Some(Contribution::of(fact)),
        }
    }

    /// Adds the difference between the contribution now and before to the
    /// job's pending counts.
    pub(super) fn apply(self, conn: &Connection) -> Result<(), StoreError> {
        let after = q::fact(conn, &self.id)?;
        self.apply_to(conn, after.as_ref())
    }

    /// [`Tracked::apply`] with the fact as it is now, made by the job.
    pub(super) fn apply_to(
        self,
        conn: &Connection,
        after: Option<&ReviewFact>,
    ) -> Result<(), StoreError> {
        let after = after.map(Contribution::of);
        let Some(at) = after.as_ref().or(self.before.as_ref()) else {
            return Ok(());
        };
        let diff = Contribution::diff(self.before.as_ref(), after.as_ref());
        PENDING.with_borrow_mut(|pending| {
            let job = &mut pending.job;
            job.extend(count_rows(&at.system, &at.action, at.day, diff));
            let before = self.before.as_ref().and_then(|c| c.queue.as_deref());
            job.extend(queue_rows(
                before,
                after.as_ref().and_then(|c| c.queue.as_deref()),
            ));
        });
        let was = self.before.as_ref().is_some_and(|c| c.disagreement);
        match after.as_ref().filter(|c| c.disagreement) {
            Some(now) if !was => insert_disagreement(conn, &self.id, now)?,
            None if was => {
                conn.execute_later(
                    "DELETE FROM analytics_disagreements WHERE proposal_id = ?1",
                    params![self.id],
                )?;
            }
            _ => (),
        }
        Ok(())
    }
}

/// A count row: system, metric, day, action, key.
type RowKey = (String, Cow<'static, str>, i64, String, String);

/// A count row's difference: its count and its two sums.
type Diff = (i64, f64, f64);

/// Whether a difference changes nothing.
fn is_zero(&(n, a, b): &Diff) -> bool {
    n == 0 && a == 0.0 && b == 0.0
}

/// Count differences not written yet, summed per row. Hashed with
/// foldhash, not the standard library's SipHash: a group's rows are hashed
/// on every job (about ten a cycle), and SipHash over the key's strings,
/// with the job's own map growing, was about 3% of a cycle's instructions.
/// foldhash is seeded at random per process (minimally DoS-resistant), and
/// a group's map holds a few thousand rows at most, so keys that come from
/// outside (systems, reviewers' names, groups) cannot make it slow for long.
#[derive(Default)]
struct Deltas(HashMap<RowKey, Diff, foldhash::fast::RandomState>);

impl Deltas {
    /// Adds `(n, a, b)` to row `key`'s difference.
    fn add_row(&mut self, key: RowKey, (n, a, b): Diff) {
        let entry = self.0.entry(key).or_default();
        entry.0 += n;
        entry.1 += a;
        entry.2 += b;
    }

    fn merge(&mut self, rows: impl IntoIterator<Item = (RowKey, Diff)>) {
        for (key, diff) in rows {
            self.add_row(key, diff);
        }
    }
}

/// The count rows `counts` of a proposal of `system` and `action` on `day`
/// change, with their differences.
fn count_rows<'a>(
    system: &'a str,
    action: &'a str,
    day: i64,
    counts: Vec<Count>,
) -> impl Iterator<Item = (RowKey, Diff)> + 'a {
    counts.into_iter().map(move |count| {
        let key = (
            system.to_owned(),
            Cow::Borrowed(count.metric),
            day,
            action.to_owned(),
            count.key,
        );
        (key, (count.n, count.a, count.b))
    })
}

/// The queue rows a task changes when it leaves the queue of group
/// `before` and joins `after`'s (`None`: no queue).
fn queue_rows<'a>(
    before: Option<&'a str>,
    after: Option<&'a str>,
) -> impl Iterator<Item = (RowKey, Diff)> + 'a {
    let moved = (before != after).then_some([(before, -1), (after, 1)]);
    moved.into_iter().flatten().filter_map(|(group, n)| {
        let key = (
            aggregates::QUEUE_SYSTEM.to_owned(),
            Cow::Borrowed(aggregates::metric::QUEUE),
            0,
            String::new(),
            group?.to_owned(),
        );
        Some((key, (n, 0.0, 0.0)))
    })
}

/// The running job's differences and the group's. Both are emptied, not
/// dropped, so that their memory serves the next job and group.
#[derive(Default)]
struct Pending {
    /// One per count the job's changes touched, summed into `group` when
    /// the job succeeds (a list: a job touches about ten).
    job: Vec<(RowKey, Diff)>,
    group: Deltas,
}

thread_local! {
    static PENDING: RefCell<Pending> = RefCell::default();
    static SHARD: Cell<i64> = const { Cell::new(0) };
    /// Rows this writer appended to `analytics_deltas` since it last folded.
    static APPENDED: Cell<u32> = const { Cell::new(0) };
}

/// Rows a writer appends to `analytics_deltas` between two folds. Readers
/// spread out at most this many rows per writer besides the counts; a fold
/// upserts each count row the rows touch once.
const FOLD_EVERY: u32 = 64;

/// Rows one PostgreSQL fold takes at most (the rest wait for the next).
const FOLD_AT_MOST: u32 = 4 * FOLD_EVERY;

/// The count rows this writer thread adds to.
pub(super) fn set_shard(shard: i64) {
    SHARD.set(shard);
}

/// The writer's job ended: its differences join the group's when it
/// succeeded, and are dropped with its savepoint when it did not.
pub(super) fn job_done(kept: bool) {
    PENDING.with_borrow_mut(|pending| {
        let Pending { job, group } = pending;
        if kept {
            group.merge(job.drain(..));
        } else {
            job.clear();
        }
    });
}

/// Drops every difference not written yet: the group's transaction was
/// rolled back, and its jobs run again.
pub(super) fn discard() {
    PENDING.with_borrow_mut(|pending| *pending = Pending::default());
}

/// Appends the group's differences to `analytics_deltas`, inside its
/// transaction, before the commit; on SQLite, every [`FOLD_EVERY`] groups,
/// folds them into the counts too. The buffer is empty afterwards whatever
/// happens (a failed append fails the whole group).
pub(super) fn flush(conn: &Connection) -> Result<(), StoreError> {
    let appended = PENDING.with_borrow_mut(|pending| {
        let appended = append(conn, &pending.group);
        pending.group.0.clear();
        appended
    });
    if !appended? {
        return Ok(());
    }
    let appended = APPENDED.get() + 1;
    if conn.dialect() == Dialect::Postgres || appended < FOLD_EVERY {
        APPENDED.set(appended);
        return Ok(());
    }
    // SQLite folds in the group, in a savepoint, so that a fold that fails
    // fails none of the group's jobs: its rows wait for the next fold.
    APPENDED.set(0);
    conn.execute_batch("SAVEPOINT fold")?;
    let folded = fold(conn);
    if let Err(error) = &folded {
        tracing::warn!(%error, "analytics differences not folded yet; the next fold takes them");
        conn.execute_batch("ROLLBACK TO fold")?;
    }
    conn.execute_batch("RELEASE fold")
}

/// Takes the rows waiting in `analytics_deltas` and adds them to the
/// counts. A row that is not what [`append`] writes (the database edited
/// by hand, or a bug) would otherwise wait there for ever and fail every
/// fold after it: the counts are then rebuilt from the proposals instead,
/// which empties the table (an error in the log; it should never happen).
fn fold(conn: &Connection) -> Result<(), StoreError> {
    match take_appended(conn)? {
        Some(sums) => write(conn, sums),
        None => {
            tracing::error!(
                "a row of analytics differences cannot be read: rebuilding the counts from the proposals"
            );
            count_all(conn)
        }
    }
}

/// PostgreSQL: folds in a transaction of its own once this writer has
/// appended [`FOLD_EVERY`] rows since it last folded. Called after a job's
/// caller has its answer, so that no API write pays the fold's two round
/// trips. A fold that fails is logged and leaves its rows to the next one.
pub(super) fn fold_if_due(conn: &Connection) {
    if APPENDED.get() < FOLD_EVERY {
        return;
    }
    APPENDED.set(0);
    let before = conn.later_mark();
    let folded = conn
        .execute_batch_later("BEGIN")
        .and_then(|()| fold(conn))
        .and_then(|()| conn.commit());
    if let Err(error) = folded {
        conn.forget_later(before);
        if conn.sent_since(before) {
            let _ = conn.execute_batch("ROLLBACK");
        }
        tracing::warn!(%error, "analytics differences not folded yet; the next fold takes them");
    }
}

/// Appends `deltas` to `analytics_deltas` as one row (see the migration:
/// a JSON array of `[system, metric, day, action, key, n, a, b]`); false
/// when they change nothing, and nothing was appended.
fn append(conn: &Connection, deltas: &Deltas) -> Result<bool, StoreError> {
    let mut rows = Vec::with_capacity(deltas.0.len());
    for ((system, metric, day, action, key), diff @ &(n, a, b)) in &deltas.0 {
        if !(a.is_finite() && b.is_finite()) {
            // JSON has no such number; the counts' columns refuse it too.
            return Err(StoreError::Other(format!(
                "the analytics sums of {metric} are not finite numbers"
            )));
        }
        if !is_zero(diff) {
            rows.push((system, metric, day, action, key, n, a, b));
        }
    }
    if rows.is_empty() {
        return Ok(false);
    }
    conn.execute_later(
        "INSERT INTO analytics_deltas (rows) VALUES (?1)",
        params![serde_json::to_string(&rows)?],
    )?;
    Ok(true)
}

/// One row of `analytics_deltas`, as [`append`] writes it.
type DeltaRow = (String, String, i64, String, String, i64, f64, f64);

/// Takes the rows waiting in `analytics_deltas` out of it, summed: all of
/// them on SQLite (one writer); on PostgreSQL the oldest no other writer
/// holds, locked until this transaction ends, so that each row is folded
/// once. `None` when a row does not read as [`append`] wrote it.
fn take_appended(conn: &Connection) -> Result<Option<Deltas>, StoreError> {
    let texts: Vec<String> = match conn.dialect() {
        Dialect::Sqlite => {
            let texts = conn.query_map("SELECT rows FROM analytics_deltas", params![], |row| {
                row.get(0)
            })?;
            conn.execute_later("DELETE FROM analytics_deltas", params![])?;
            texts
        }
        Dialect::Postgres => conn.query_map(
            "DELETE FROM analytics_deltas WHERE seq IN (
                 SELECT seq FROM analytics_deltas ORDER BY seq
                 LIMIT CAST(?1 AS BIGINT) FOR UPDATE SKIP LOCKED)
             RETURNING rows",
            params![FOLD_AT_MOST],
            |row| row.get(0),
        )?,
    };
    let mut sums = Deltas::default();
    for text in texts {
        let Ok(rows) = serde_json::from_str::<Vec<DeltaRow>>(&text) else {
            return Ok(None);
        };
        for (system, metric, day, action, key, n, a, b) in rows {
            sums.add_row((system, Cow::Owned(metric), day, action, key), (n, a, b));
        }
    }
    Ok(Some(sums))
}

/// Adds `deltas` to the stored counts; rows whose count reaches zero go.
fn write(conn: &Connection, deltas: Deltas) -> Result<(), StoreError> {
    let shard = SHARD.get();
    // In key order, so that two transactions adding to the same rows (a
    // rebuild beside a writer) lock them in the same order.
    let mut deltas: Vec<_> = deltas
        .0
        .into_iter()
        .filter(|(_, diff)| !is_zero(diff))
        .collect();
    deltas.sort_by(|x, y| x.0.cmp(&y.0));
    if conn.dialect() == Dialect::Postgres {
        for rows in deltas.chunks(ROWS_PER_STATEMENT) {
            add_rows(conn, shard, rows)?;
        }
    } else {
        for ((system, metric, day, action, key), (n, a, b)) in &deltas {
            conn.execute_later(
                "INSERT INTO analytics_counts AS c (system, metric, day, action, key, shard, n, a, b)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (system, metric, day, action, key, shard)
                 DO UPDATE SET n = c.n + excluded.n, a = c.a + excluded.a, b = c.b + excluded.b",
                params![system, metric.as_ref(), day, action, key, shard, n, a, b],
            )?;
        }
    }
    // A count that a difference brings to zero goes (nobody waits for the
    // answer). On PostgreSQL a shard's row may hold sums with no items (a
    // proposal counted by one writer and changed by another), so a shard
    // other than 0 goes only when its sums are zero too. A statement a row:
    // a job lowers one or two, and each is found through the key.
    for ((system, metric, day, action, key), _) in deltas.iter().filter(|(_, (n, _, _))| *n <= 0) {
        conn.execute_later(
            "DELETE FROM analytics_counts
             WHERE system = ?1 AND metric = ?2 AND day = ?3 AND action = ?4 AND key = ?5 AND shard = ?6
               AND n = 0 AND (shard = 0 OR (a = 0 AND b = 0))",
            params![system, metric.as_ref(), day, action, key, shard],
        )?;
    }
    Ok(())
}

/// Rows one PostgreSQL statement adds to at most (a rebuild writes them all).
const ROWS_PER_STATEMENT: usize = 500;

/// PostgreSQL: adds `rows` (in key order, each key once) in one upsert
/// from one JSON parameter (`json_to_recordset`), sent with the commit.
/// Every job is a transaction of its own there and a decision changes a
/// dozen counts; a statement a row, as SQLite's writer keeps (summed over
/// its group commit), paid the backend's cost of a statement for each
/// (docs/operations.md: 8% of PostgreSQL's CPU per ingested proposal).
fn add_rows(
    conn: &Connection,
    shard: i64,
    rows: &[(RowKey, (i64, f64, f64))],
) -> Result<(), StoreError> {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|((system, metric, day, action, key), (n, a, b))| {
            serde_json::json!({"s": system, "m": metric, "d": day, "c": action, "k": key, "n": n, "a": a, "b": b})
        })
        .collect();
    conn.execute_later(
        "INSERT INTO analytics_counts AS c (system, metric, day, action, key, shard, n, a, b)
         SELECT r.s, r.m, r.d, r.c, r.k, CAST(?2 AS BIGINT), r.n, r.a, r.b
         FROM json_to_recordset(CAST(?1 AS JSON))
              AS r(s TEXT, m TEXT, d BIGINT, c TEXT, k TEXT, n BIGINT, a DOUBLE PRECISION, b DOUBLE PRECISION)
         ON CONFLICT (system, metric, day, action, key, shard)
         DO UPDATE SET n = c.n + excluded.n, a = c.a + excluded.a, b = c.b + excluded.b",
        params![serde_json::Value::Array(rows).to_string(), shard],
    )?;
    Ok(())
}

/// Puts a proposal in the adjudication queue.
fn insert_disagreement(conn: &Connection, id: &str, c: &Contribution) -> Result<(), StoreError> {
    conn.execute_later(
        "INSERT INTO analytics_disagreements (proposal_id, system, action, created_at)
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        params![id, c.system, c.action, c.created_at.millis()],
    )?;
    Ok(())
}

/// Rebuilds the counts from the stored proposals when they were made by
/// another version of the aggregates (or never).
pub(super) fn ensure(conn: &Connection) -> Result<(), StoreError> {
    if q::meta(conn, "analytics")?.as_deref() == Some(aggregates::VERSION) {
        return Ok(());
    }
    conn.begin_write()?;
    match rebuild(conn) {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(error) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(error);
        }
    }
    Ok(())
}

/// Recomputes every count inside the caller's transaction. The pending
/// differences of earlier jobs of the group are in the facts it reads, so
/// they go; if the rebuild fails (and its savepoint with it), they stay.
pub(super) fn rebuild(conn: &Connection) -> Result<(), StoreError> {
    let earlier = PENDING.with_borrow_mut(|pending| std::mem::take(&mut pending.group));
    let rebuilt = count_all(conn);
    if rebuilt.is_err() {
        PENDING.with_borrow_mut(|pending| pending.group.merge(earlier.0));
    }
    rebuilt
}

fn count_all(conn: &Connection) -> Result<(), StoreError> {
    if conn.dialect() == Dialect::Postgres {
        // Writers add their differences after this commits: each then
        // applies to the counts rebuilt from what it had not committed. In
        // the order a writer's job writes them (disagreements, then its
        // deltas, then a fold's counts), so that neither waits for the
        // other in a circle.
        conn.execute_batch(
            "LOCK TABLE analytics_disagreements, analytics_deltas, analytics_counts IN EXCLUSIVE MODE",
        )?;
    }
    conn.execute_batch(
        "DELETE FROM analytics_counts; DELETE FROM analytics_deltas; DELETE FROM analytics_disagreements;",
    )?;
    let mut sums = Deltas::default();
    let mut facts = 0_u64;
    q::each_fact(conn, q::fact_query!("1 = 1"), params![], |fact| {
        facts += 1;
        let c = Contribution::of(&fact);
        if c.disagreement {
            insert_disagreement(conn, fact.id.as_str(), &c)?;
        }
        sums.merge(queue_rows(None, c.queue.as_deref()));
        sums.merge(count_rows(&c.system, &c.action, c.day, c.counts));
        Ok(())
    })?;
    let rows = sums.0.len();
    write(conn, sums)?;
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('analytics', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![aggregates::VERSION],
    )?;
    if 0 < facts {
        tracing::info!(
            proposals = facts,
            rows,
            "analytics counts built from the stored proposals"
        );
    }
    Ok(())
}

/// The counts of `query`, summed per metric and key.
pub(super) fn totals(conn: &Connection, query: &TotalsQuery) -> Result<Vec<Total>, StoreError> {
    let mut out = Vec::new();
    for metric in &query.metrics {
        let rows = conn.query_map(
            "SELECT metric, key, CAST(SUM(n) AS BIGINT), SUM(a), SUM(b) FROM (
                 SELECT system, metric, key, day, action, n, a, b FROM analytics_counts
                 UNION ALL
                 SELECT system, metric, key, day, action, n, a, b FROM analytics_pending
             ) c
             WHERE system = ?1 AND metric = ?2 AND day >= ?3 AND (CAST(?4 AS TEXT) IS NULL OR action = ?4)
             GROUP BY metric, key HAVING SUM(n) <> 0",
            params![
                query.system.as_str(),
                metric,
                query.from_day,
                query.action.as_deref()
            ],
            |row| {
                Ok(Total {
                    metric: row.get(0)?,
                    key: row.get(1)?,
                    n: row.get(2)?,
                    a: row.get(3)?,
                    b: row.get(4)?,
                })
            },
        )?;
        out.extend(rows);
    }
    Ok(out)
}

/// Tasks waiting for a reviewer (open, or claimed with a lapsed lease), by
/// group, read from the counts: what the queues hold (kept change by
/// change) less the claims still held, which the state index finds among
/// the claimed tasks alone. The cost grows with the groups and the claims,
/// not with the open tasks.
pub(super) fn queue_depth(
    conn: &Connection,
    now: Timestamp,
) -> Result<Vec<(String, u64)>, StoreError> {
    conn.query_map(
        "SELECT grp, CAST(SUM(n) AS BIGINT) FROM (
             SELECT key AS grp, n FROM analytics_counts WHERE system = ?1 AND metric = ?2
             UNION ALL
             SELECT key, n FROM analytics_pending WHERE system = ?1 AND metric = ?2
             UNION ALL
             SELECT grp, -1 FROM tasks WHERE state = 'claimed' AND lease_expires_at > ?3
         ) q GROUP BY grp HAVING SUM(n) > 0 ORDER BY grp",
        params![
            aggregates::QUEUE_SYSTEM,
            aggregates::metric::QUEUE,
            now.millis()
        ],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
}

/// Proposals of `filter` whose reviewers disagreed, oldest first.
pub(super) fn disagreements(
    conn: &Connection,
    filter: &AnalyticsFilter,
    limit: u32,
) -> Result<Vec<String>, StoreError> {
    conn.query_map(
        "SELECT proposal_id FROM analytics_disagreements
         WHERE system = ?1 AND created_at >= ?2 AND created_at < ?3 AND (CAST(?4 AS TEXT) IS NULL OR action = ?4)
         ORDER BY created_at, proposal_id LIMIT CAST(?5 AS BIGINT)",
        params![
            filter.system.as_str(),
            filter.from.millis(),
            filter.to.millis(),
            filter.action.as_deref(),
            limit
        ],
        |row| row.get(0),
    )
}
