//! The store on SQL, one implementation for both backends: embedded SQLite
//! (rusqlite, bundled) and PostgreSQL (see `postgres` and `crate::db`).
//!
//! Writes are jobs on a queue, run by writer threads.
//!
//! SQLite has one writer thread that commits in groups: it takes every job
//! waiting in its queue, runs them one after another inside one write
//! transaction (`BEGIN IMMEDIATE`, WAL, `synchronous=FULL`), commits once,
//! and only then answers the callers. A job refused before it changed a
//! row needs nothing undone; one that fails after changing rows undoes the
//! group, which runs again with a savepoint per job (see [`write_loop`]).
//! The analytics counts the jobs change are summed over the group and
//! appended as one row just before the commit, then folded into the
//! counts every 64 groups (see `aggregates`).
//!
//! PostgreSQL has several writer threads per replica, each with its own
//! connection, and every job is a transaction of its own: nothing is shared
//! by all writers, so replicas add write capacity. Correctness comes from
//! the rows (ARCHITECTURE.md, "Concurrent writers"): a transition locks its
//! proposal's row first, caps and grants count in their own rows, the audit
//! log's positions are given later by the sequencer. A job that loses a
//! race (a deadlock, a serialization failure, a concurrent submission with
//! its idempotency key: [`StoreError::Contended`]) is run again, up to
//! [`ATTEMPTS`] times.
//!
//! Reads run on a small pool of connections on tokio's blocking threads and
//! see every committed write.

pub mod admin;
mod aggregates;
mod assign;
mod audit;
mod grants;
mod known;
mod notifications;
mod policies;
mod postgres;
mod proposals;
mod queries;
mod store;
mod systems;
mod tasks;
mod users;
mod webhooks;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, oneshot};

use crate::db::{Connection, Dialect};
use crate::{StoreError, TxError};
use loopgate_core::ProposalId;

pub use postgres::{MigrationStatus, PgOptions};

const SQLITE_MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_core",
        include_str!("../../migrations/sqlite/0001_core.sql"),
    ),
    (
        "0002_audit",
        include_str!("../../migrations/sqlite/0002_audit.sql"),
    ),
    (
        "0003_policy_lifecycle",
        include_str!("../../migrations/sqlite/0003_policy_lifecycle.sql"),
    ),
    (
        "0004_sessions",
        include_str!("../../migrations/sqlite/0004_sessions.sql"),
    ),
    (
        "0005_ai_output",
        include_str!("../../migrations/sqlite/0005_ai_output.sql"),
    ),
    (
        "0006_analytics_counts",
        include_str!("../../migrations/sqlite/0006_analytics_counts.sql"),
    ),
    (
        "0007_webhooks",
        include_str!("../../migrations/sqlite/0007_webhooks.sql"),
    ),
    (
        "0008_idempotency_lookup",
        include_str!("../../migrations/sqlite/0008_idempotency_lookup.sql"),
    ),
    (
        "0009_policy_errors",
        include_str!("../../migrations/sqlite/0009_policy_errors.sql"),
    ),
    (
        "0010_credentials",
        include_str!("../../migrations/sqlite/0010_credentials.sql"),
    ),
    (
        "0011_notifications",
        include_str!("../../migrations/sqlite/0011_notifications.sql"),
    ),
    (
        "0012_sso",
        include_str!("../../migrations/sqlite/0012_sso.sql"),
    ),
    (
        "0013_respond",
        include_str!("../../migrations/sqlite/0013_respond.sql"),
    ),
    (
        "0014_comments",
        include_str!("../../migrations/sqlite/0014_comments.sql"),
    ),
    (
        "0015_grants",
        include_str!("../../migrations/sqlite/0015_grants.sql"),
    ),
    (
        "0016_assignment",
        include_str!("../../migrations/sqlite/0016_assignment.sql"),
    ),
    (
        "0017_traces",
        include_str!("../../migrations/sqlite/0017_traces.sql"),
    ),
    (
        "0018_count_shards",
        include_str!("../../migrations/sqlite/0018_count_shards.sql"),
    ),
    (
        "0019_queue",
        include_str!("../../migrations/sqlite/0019_queue.sql"),
    ),
    (
        "0020_erasure",
        include_str!("../../migrations/sqlite/0020_erasure.sql"),
    ),
    (
        "0021_policy_versions",
        include_str!("../../migrations/sqlite/0021_policy_versions.sql"),
    ),
    (
        "0022_analytics_deltas",
        include_str!("../../migrations/sqlite/0022_analytics_deltas.sql"),
    ),
];
const MAX_BATCH: usize = 1024;

/// How long a group of SQLite's writer takes in jobs that arrive while it
/// runs (`write_loop`).
const GROUP_GROWS_FOR: Duration = Duration::from_millis(1);

/// Prepared statements kept per SQLite connection (the store has about a
/// hundred distinct ones; rusqlite's default of 16 would re-prepare most).
const STATEMENT_CACHE: usize = 512;
const N_READERS: usize = 4;

/// The store on SQL: embedded SQLite or PostgreSQL; cheap to clone.
#[derive(Clone)]
pub struct SqlStore {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Mutex<mpsc::SyncSender<Job>>,
    /// Whether the writer thread runs, and whether its last commit failed.
    health: Arc<WriterHealth>,
    readers: Mutex<Vec<Connection>>,
    /// One permit per reader connection. A permit goes with the blocking
    /// task that uses the connection, so that a read whose caller went away
    /// (a cancelled request) keeps its connection's permit until the
    /// connection is back in `readers`.
    read_permits: Arc<Semaphore>,
    /// The audit sequencer's tile state; `None` until loaded or after a
    /// failed step.
    sequencer: tokio::sync::Mutex<Option<loopgate_core::audit::tile::TileBuilder>>,
    /// Full audit tiles read by proofs.
    tiles: Arc<audit::TileCache>,
    /// The grant key, read once.
    grant_key: Arc<grants::GrantKey>,
    /// Whether this process leads (always, on SQLite).
    leader: Arc<AtomicBool>,
    /// Called when the log grew (another replica's sequencer gave positions).
    wake: Arc<Wake>,
    /// Called, on the leader, when any replica committed events that wait
    /// for positions.
    queued: Arc<Wake>,
    /// Called with a proposal's id when any replica committed its
    /// resolution or cancellation (PostgreSQL).
    settled: Arc<Wake<str>>,
    /// No webhook was set when last looked (the dispatcher skips its read).
    no_webhooks: known::KnownEmpty,
    /// No group's notifications were set when last looked.
    no_notifications: known::KnownEmpty,
    /// Tells the watch thread to end.
    stopped: Arc<AtomicBool>,
    dialect: Dialect,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Relaxed);
        // A PostgreSQL client blocks on its own runtime when it closes,
        // which must not happen on an async worker thread.
        let readers = std::mem::take(match self.readers.get_mut() {
            Ok(readers) => readers,
            Err(poisoned) => poisoned.into_inner(),
        });
        let _ = std::thread::Builder::new()
            .name("loopgate-db-close".to_owned())
            .spawn(move || drop(readers));
    }
}

/// What runs when another replica committed: callbacks given an `A`
/// (nothing, or a settled proposal's id).
pub(super) struct Wake<A: ?Sized = ()>(Mutex<Vec<Callback<A>>>);

type Callback<A> = Box<dyn Fn(&A) + Send + Sync>;

impl<A: ?Sized> Default for Wake<A> {
    fn default() -> Self {
        Wake(Mutex::new(Vec::new()))
    }
}

impl Wake {
    pub(super) fn wake(&self) {
        self.call(&());
    }
}

impl<A: ?Sized> Wake<A> {
    pub(super) fn call(&self, arg: &A) {
        let callbacks = match self.0.lock() {
            Ok(callbacks) => callbacks,
            Err(poisoned) => poisoned.into_inner(),
        };
        for callback in callbacks.iter() {
            callback(arg);
        }
    }

    fn add(&self, callback: Callback<A>) {
        match self.0.lock() {
            Ok(mut callbacks) => callbacks.push(callback),
            Err(poisoned) => poisoned.into_inner().push(callback),
        }
    }
}

/// One attempt at a job: it runs inside its own savepoint, or alone in the
/// transaction (or is told why there is no transaction), and returns
/// whether it succeeded and how to answer its caller once the commit
/// outcome is known. `None` asks for another attempt: a concurrent
/// transaction got in the way and `last` was false.
type Job = Box<dyn FnMut(Result<&Connection, &StoreError>, bool) -> Option<(bool, Finish)> + Send>;
type Finish = Box<dyn FnOnce(Option<&StoreError>) + Send>;

impl SqlStore {
    /// Opens (creating if needed) the SQLite database file and runs migrations.
    pub fn open(path: &Path) -> Result<SqlStore, StoreError> {
        let writer = connect(path)?;
        migrate(&writer)?;
        aggregates::ensure(&writer)?;
        let grant_key = grants::ensure_key(&writer)?;
        // A group that runs again gives each job a savepoint, and SQLite
        // keeps the pages a savepoint changes in a statement journal,
        // spilled to a temporary file past 64 KiB: three quarters of the
        // writer's `pwrite`s went there (strace, ingest) when every job had
        // one. In memory it costs a copy; it never outgrows the pages one
        // transaction changes. Set after the migrations, whose index builds
        // sort whole tables, and not on the readers, whose analytics sorts
        // may be big: those keep files.
        writer.execute_batch("PRAGMA temp_store = MEMORY;")?;
        let mut readers = Vec::with_capacity(N_READERS);
        // Readers do not map the file. In WAL mode a reader unmaps all of
        // it whenever a commit came between two of its read transactions
        // (`pagerBeginReadTransaction`), and maps and faults it in again:
        // with writes going on that is every read, and the `munmap`s with
        // their TLB shootdowns cost about 4% of the server's CPU per cycle
        // (docs/operations.md, "Where a SQLite cycle's CPU goes"). A
        // proof's few tiles are read with `pread` instead.
        for _ in 0..N_READERS {
            readers.push(connect(path)?);
        }
        SqlStore::start(vec![writer], readers, grant_key)
    }

    /// Starts the writer threads, one per connection of `writers` (SQLite:
    /// exactly one), with `readers` for reads.
    fn start(
        writers: Vec<Connection>,
        readers: Vec<Connection>,
        grant_key: grants::GrantKey,
    ) -> Result<SqlStore, StoreError> {
        let dialect = match writers.first() {
            Some(writer) => writer.dialect(),
            None => return Err(StoreError::Other("the store needs a writer".to_owned())),
        };
        let n_readers = readers.len();
        let (sender, receiver) = mpsc::sync_channel::<Job>(MAX_QUEUE);
        let receiver = Arc::new(Mutex::new(receiver));
        let health = Arc::new(WriterHealth::default());
        // Each PostgreSQL writer adds to count rows of its own (see
        // `aggregates`): a number no other process is likely to pick.
        let mut base = [0u8; 4];
        getrandom::fill(&mut base)
            .map_err(|e| StoreError::Other(format!("no randomness for the writers: {e}")))?;
        let base = i64::from(u32::from_le_bytes(base)) << 8;
        for (slot, writer) in writers.into_iter().enumerate() {
            let watched = Arc::clone(&health);
            let receiver = Arc::clone(&receiver);
            let shard = base + i64::try_from(slot).unwrap_or(0);
            std::thread::Builder::new()
                .name("loopgate-db-writer".to_owned())
                .spawn(move || {
                    // A panic ends the writers; the server sees it stopped and
                    // exits so that a supervisor restarts it.
                    let ended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        match writer.dialect() {
                            Dialect::Sqlite => write_loop(&writer, &receiver, &watched),
                            Dialect::Postgres => {
                                aggregates::set_shard(shard);
                                write_alone_loop(&writer, &receiver, &watched);
                            }
                        }
                    }));
                    if ended.is_err() {
                        tracing::error!("a database writer panicked; no write can be made");
                    }
                    watched.stopped.store(true, Ordering::SeqCst);
                })
                .map_err(|e| StoreError::Other(format!("cannot start a writer thread: {e}")))?;
        }
        let inner = Inner {
            writer: Mutex::new(sender),
            health,
            readers: Mutex::new(readers),
            read_permits: Arc::new(Semaphore::new(n_readers)),
            sequencer: tokio::sync::Mutex::new(None),
            tiles: Arc::default(),
            grant_key: Arc::new(grant_key),
            leader: Arc::new(AtomicBool::new(dialect == Dialect::Sqlite)),
            wake: Arc::default(),
            queued: Arc::default(),
            settled: Arc::default(),
            no_webhooks: known::KnownEmpty::default(),
            no_notifications: known::KnownEmpty::default(),
            stopped: Arc::default(),
            dialect,
        };
        Ok(SqlStore {
            inner: Arc::new(inner),
        })
    }

    /// Calls `callback` whenever another replica committed.
    pub(crate) fn watch_commits(&self, callback: Box<dyn Fn() + Send + Sync>) {
        self.inner.wake.add(Box::new(move |()| callback()));
    }

    /// Calls `callback`, while this process leads, whenever a replica
    /// committed events that wait for the sequencer.
    pub(crate) fn watch_queued(&self, callback: Box<dyn Fn() + Send + Sync>) {
        self.inner.queued.add(Box::new(move |()| callback()));
    }

    /// Calls `callback` with a proposal's id whenever a replica committed
    /// its resolution or cancellation (PostgreSQL).
    pub(crate) fn watch_settled(&self, callback: Box<dyn Fn(&ProposalId) + Send + Sync>) {
        self.inner.settled.add(Box::new(move |id: &str| {
            if let Some(id) = ProposalId::parse(id) {
                callback(&id);
            }
        }));
    }

    /// Whether the writer runs, and whether its last commit failed.
    pub(crate) fn writer_state(&self) -> crate::WriterState {
        self.inner.health.state()
    }

    /// Tests only: while `fail` is set every write fails, as on a full disk.
    pub(crate) fn fail_writes_for_tests(&self, fail: bool) {
        self.inner.health.refuse.store(fail, Ordering::SeqCst);
    }

    /// Whether events wait in `event_queue` for the sequencer (PostgreSQL).
    pub(crate) fn sequences_later(&self) -> bool {
        self.inner.dialect == Dialect::Postgres
    }

    /// Whether this process leads (runs the sequencer, timers and webhooks).
    pub(crate) fn leads(&self) -> bool {
        self.inner.leader.load(Ordering::SeqCst)
    }

    /// Runs `job` in a write transaction: SQLite's next group commit, or a
    /// PostgreSQL transaction of its own. `job` may run more than once (on
    /// PostgreSQL, when a concurrent transaction got in the way), each time
    /// in a new transaction.
    async fn write<T, E>(
        &self,
        job: impl Fn(&Connection) -> Result<T, TxError<E>> + Send + 'static,
    ) -> Result<T, TxError<E>>
    where
        T: Send + 'static,
        E: Send + 'static,
    {
        // One writer crashed: the process is to be restarted, and writes
        // stop as they do on SQLite.
        if self.inner.health.stopped.load(Ordering::SeqCst) {
            return Err(TxError::Store(StoreError::Unavailable(
                "the writer has stopped".to_owned(),
            )));
        }
        let (answer, answered) = oneshot::channel();
        // Taken when an answer goes out, not when the job runs: SQLite's
        // writer may run a job again after its first run's answer was
        // dropped unsent (see `write_loop`).
        let answer = Arc::new(Mutex::new(Some(answer)));
        // When it was queued, and when a writer first began it (`/metrics`).
        let queued = Instant::now();
        let mut began: Option<Instant> = None;
        let health = Arc::clone(&self.inner.health);
        let boxed: Job = Box::new(move |conn, last| {
            let began = *began.get_or_insert_with(Instant::now);
            let health = Arc::clone(&health);
            let res = match conn {
                Ok(conn) => job(conn),
                Err(error) => Err(TxError::Store(error.clone())),
            };
            if !last && matches!(res, Err(TxError::Store(StoreError::Contended(_)))) {
                return None;
            }
            let ok = res.is_ok();
            let answer = Arc::clone(&answer);
            let finish: Finish = Box::new(move |commit_error| {
                let out = match commit_error {
                    Some(error) if ok => Err(TxError::Store(error.clone())),
                    _ => res,
                };
                if let Some(answer) = answer.lock().ok().and_then(|mut slot| slot.take()) {
                    health
                        .waited
                        .record(began.saturating_duration_since(queued));
                    health.ran.record(began.elapsed());
                    let _ = answer.send(out);
                }
            });
            Some((ok, finish))
        });
        let full = match self.inner.writer.lock() {
            Ok(sender) => match sender.try_send(boxed) {
                Ok(()) => None,
                Err(mpsc::TrySendError::Full(_)) => Some(true),
                Err(mpsc::TrySendError::Disconnected(_)) => Some(false),
            },
            Err(_) => Some(false),
        };
        match full {
            None => (),
            Some(true) => {
                return Err(TxError::Store(StoreError::Unavailable(format!(
                    "the writer has {MAX_QUEUE} writes waiting"
                ))));
            }
            Some(false) => {
                return Err(TxError::Store(StoreError::Unavailable(
                    "the writer has stopped".to_owned(),
                )));
            }
        }
        match answered.await {
            Ok(res) => res,
            Err(_) => Err(TxError::Store(StoreError::Unavailable(
                "the writer has stopped".to_owned(),
            ))),
        }
    }

    /// A write that core cannot refuse.
    async fn write_plain<T: Send + 'static>(
        &self,
        job: impl Fn(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let res: Result<T, TxError<std::convert::Infallible>> = self
            .write(move |conn| job(conn).map_err(TxError::Store))
            .await;
        match res {
            Ok(value) => Ok(value),
            Err(TxError::Store(error)) => Err(error),
            Err(TxError::Refused(never)) => match never {},
        }
    }

    /// Whether an outbox worker has something to queue: `check` reads
    /// whether its settings are set and whether work waits. While `known`
    /// says no settings are set, it is not read at all.
    async fn outbox_has_work(
        &self,
        known: &known::KnownEmpty,
        check: impl FnOnce(&Connection) -> Result<(bool, bool), StoreError> + Send + 'static,
    ) -> Result<bool, StoreError> {
        if known.holds() {
            return Ok(false);
        }
        let generation = known.generation();
        let (set, work) = self.read(check).await?;
        if !set {
            known.found_empty(generation);
        }
        Ok(work)
    }

    /// Runs `job` on a reader connection.
    async fn read<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let permit = Arc::clone(&self.inner.read_permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable("the store is closed".to_owned()))?;
        let inner = Arc::clone(&self.inner);
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = match inner.readers.lock() {
                Ok(mut readers) => readers.pop(),
                Err(_) => None,
            };
            let Some(conn) = conn else {
                return Err(StoreError::Unavailable("no reader connection".to_owned()));
            };
            let res = job(&conn);
            if let Ok(mut readers) = inner.readers.lock() {
                readers.push(conn);
            }
            res
        });
        match task.await {
            Ok(res) => res,
            Err(e) => Err(StoreError::Other(format!("read task failed: {e}"))),
        }
    }
}

pub(super) fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = rusqlite::Connection::open(path)
        .map_err(|e| StoreError::Unavailable(format!("cannot open `{}`: {e}", path.display())))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA busy_timeout = 5000;
         PRAGMA cache_size = -16000;",
    )?;
    // Every statement goes through the cache: keep them all prepared.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(Connection::Sqlite(conn))
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    for (number, (name, sql)) in SQLITE_MIGRATIONS.iter().enumerate() {
        let version = i64::try_from(number).unwrap_or(i64::MAX) + 1;
        if version <= current {
            continue;
        }
        let script = format!("BEGIN IMMEDIATE; {sql}\n; PRAGMA user_version = {version}; COMMIT;");
        if let Err(error) = conn.execute_batch(&script) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(StoreError::Other(format!(
                "migration {name} failed: {error}"
            )));
        }
    }
    let known = i64::try_from(SQLITE_MIGRATIONS.len()).unwrap_or(i64::MAX);
    if known < current {
        return Err(StoreError::Other(format!(
            "the database is at schema version {current}, newer than this binary knows ({known}); upgrade loopgate"
        )));
    }
    Ok(())
}

/// Writes waiting for the writer at most; more are refused at once (503)
/// instead of queueing without bound.
const MAX_QUEUE: usize = 16 * MAX_BATCH;

/// What `/readyz` reads of the writer.
#[derive(Default)]
pub(crate) struct WriterHealth {
    stopped: AtomicBool,
    /// The last group's failure to begin or commit (a full disk), until a
    /// group commits again.
    failing: Mutex<Option<String>>,
    /// Tests only: every group fails to begin, as on a full disk.
    refuse: AtomicBool,
    jobs: std::sync::atomic::AtomicU64,
    round_trips: std::sync::atomic::AtomicU64,
    retries: std::sync::atomic::AtomicU64,
    /// Answered writes' wait for a writer, and their time from a writer
    /// beginning them to the answer.
    waited: crate::DurationCounts,
    ran: crate::DurationCounts,
}

impl WriterHealth {
    fn record(&self, result: Result<(), &StoreError>) {
        if let Ok(mut failing) = self.failing.lock() {
            *failing = result.err().map(ToString::to_string);
        }
    }

    fn count(&self, jobs: u64, round_trips: u64, retries: u64) {
        self.jobs.fetch_add(jobs, Ordering::Relaxed);
        self.round_trips.fetch_add(round_trips, Ordering::Relaxed);
        self.retries.fetch_add(retries, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> crate::WriteStats {
        crate::WriteStats {
            jobs: self.jobs.load(Ordering::Relaxed),
            round_trips: self.round_trips.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            waited: self.waited.snapshot(),
            ran: self.ran.snapshot(),
        }
    }

    pub(crate) fn state(&self) -> crate::WriterState {
        if self.stopped.load(Ordering::SeqCst) {
            return crate::WriterState::Stopped;
        }
        match self.failing.lock().ok().and_then(|it| it.clone()) {
            Some(error) => crate::WriterState::Failing(error),
            None => crate::WriterState::Ready,
        }
    }
}

/// Runs `job` once more, as its last attempt: it answers.
fn last_attempt(job: &mut Job, conn: Result<&Connection, &StoreError>) -> (bool, Finish) {
    job(conn, true).unwrap_or_else(|| (false, Box::new(|_| ())))
}

/// SQLite's one writer: group commits.
///
/// A group's jobs run one after another in one transaction, without a
/// savepoint each: SQLite copies every page a savepoint changes into its
/// statement journal, which cost 3% of the server's instructions per
/// ingested proposal and 5% per cycle (docs/operations.md, "A group
/// without savepoints"). A job that fails without having changed a row
/// (`sqlite3_total_changes`, which counts every row a statement inserted,
/// updated or deleted, triggers' included, and nothing of a statement that
/// failed) needs nothing undone:
/// the usual refusal, such as a decision on a task already decided, reads
/// and refuses before it writes. A job that fails after changing rows
/// undoes the whole group, which then runs again, each job in its own
/// savepoint ([`run_in_savepoints`]); no answer has gone out by then, and
/// jobs may run again (PostgreSQL's do after losing a race).
fn write_loop(conn: &Connection, receiver: &Mutex<mpsc::Receiver<Job>>, health: &WriterHealth) {
    let Ok(receiver) = receiver.lock() else {
        return;
    };
    while let Ok(first) = receiver.recv() {
        let started = Instant::now();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(error) = begin_group(conn, health) {
            fail_all(&mut batch, &error);
            continue;
        }
        // Each job's answer, and the error that undid it after it succeeded.
        let mut finishes: Vec<(Finish, Option<StoreError>)> = Vec::with_capacity(batch.len());
        // The jobs run so far, kept in case the group has to run again.
        let mut ran: Vec<Job> = Vec::with_capacity(batch.len());
        let mut undo = false;
        // Jobs that arrive while the group runs join it, for as long as it
        // is young: each commit costs a sync (a third of the writer's CPU
        // per cycle), so bigger groups cost less per job, and a job that
        // arrives now would otherwise wait for this commit and then its own.
        let mut waiting = batch.into_iter();
        while let Some(mut job) = waiting.next().or_else(|| {
            let room = ran.len() < MAX_BATCH
                && started.elapsed() < GROUP_GROWS_FOR
                && !health.refuse.load(Ordering::SeqCst);
            room.then(|| receiver.try_recv().ok()).flatten()
        }) {
            let changes = conn.changes_made();
            let (ok, finish) = last_attempt(&mut job, Ok(conn));
            aggregates::job_done(ok);
            ran.push(job);
            if !ok && conn.changes_made() != changes {
                undo = true;
                break;
            }
            finishes.push((finish, None));
        }
        if undo {
            // Unanswered, so nobody hears of the first run.
            drop(finishes);
            let _ = conn.execute_batch("ROLLBACK");
            aggregates::discard();
            ran.extend(waiting);
            finishes = Vec::with_capacity(ran.len());
            match begin_group(conn, health) {
                Ok(()) => run_in_savepoints(conn, &mut ran, &mut finishes),
                Err(error) => {
                    fail_all(&mut ran, &error);
                    continue;
                }
            }
        }
        let committed = aggregates::flush(conn).and_then(|()| conn.execute_batch("COMMIT"));
        health.record(committed.as_ref().map(|_| ()));
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        health.count(finishes.len() as u64, 0, 0);
        for (finish, undone) in finishes {
            finish(undone.as_ref().or(committed.as_ref().err()));
        }
    }
}

/// Begins a group's write transaction, unless a test asked writes to fail.
fn begin_group(conn: &Connection, health: &WriterHealth) -> Result<(), StoreError> {
    let began = match health.refuse.load(Ordering::SeqCst) {
        true => Err(StoreError::Unavailable(
            "writes fail, as a test asked".to_owned(),
        )),
        false => conn.begin_write(),
    };
    if let Err(error) = &began {
        health.record(Err(error));
        let _ = conn.execute_batch("ROLLBACK");
    }
    began
}

/// Answers every job of a group whose transaction could not begin: nothing
/// runs outside a transaction, so each is told why.
fn fail_all(jobs: &mut [Job], error: &StoreError) {
    for job in jobs {
        let (_, finish) = last_attempt(job, Err(error));
        aggregates::job_done(false);
        finish(Some(error));
    }
}

/// Runs `jobs` in the open transaction, each in its own savepoint, so that
/// a job that fails leaves the others' writes as they were.
fn run_in_savepoints(
    conn: &Connection,
    jobs: &mut [Job],
    finishes: &mut Vec<(Finish, Option<StoreError>)>,
) {
    for job in jobs {
        let began = conn.execute_batch("SAVEPOINT job");
        let (ok, finish) = match &began {
            Ok(()) => last_attempt(job, Ok(conn)),
            Err(error) => last_attempt(job, Err(error)),
        };
        let released = match ok && began.is_ok() {
            true => conn.execute_batch("RELEASE job"),
            false => Ok(()),
        };
        if began.is_ok()
            && !(ok && released.is_ok())
            && let Err(error) = conn.execute_batch("ROLLBACK TO job; RELEASE job")
        {
            tracing::error!(%error, "savepoint could not be rolled back");
        }
        aggregates::job_done(ok && began.is_ok() && released.is_ok());
        finishes.push((finish, released.err()));
    }
}

/// How many times a PostgreSQL job runs before its contention is its answer.
const ATTEMPTS: u32 = 8;

/// One of PostgreSQL's writers: each job is a transaction of its own, run
/// again when it lost a race (see the module's documentation).
fn write_alone_loop(
    conn: &Connection,
    receiver: &Mutex<mpsc::Receiver<Job>>,
    health: &WriterHealth,
) {
    loop {
        let job = match receiver.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok(mut job) = job else { return };
        let trips = conn.round_trips();
        let mut retries = 0;
        // Counted before the caller hears, so that what it reads next
        // includes this job.
        let count = |retries| health.count(1, conn.round_trips() - trips, retries);
        for attempt in 1..=ATTEMPTS {
            let last = attempt == ATTEMPTS;
            if health.refuse.load(Ordering::SeqCst) {
                let error = StoreError::Unavailable("writes fail, as a test asked".to_owned());
                health.record(Err(&error));
                let (_, finish) = last_attempt(&mut job, Err(&error));
                count(retries);
                finish(Some(&error));
                break;
            }
            // `BEGIN` goes out with the job's first statement.
            let before = conn.later_mark();
            let began = conn.execute_batch_later("BEGIN");
            let ran = match &began {
                Ok(()) => job(Ok(conn), last),
                Err(error) => Some(last_attempt(&mut job, Err(error))),
            };
            match ran {
                Some((true, finish)) => {
                    aggregates::job_done(true);
                    let committed = aggregates::flush(conn)
                        .and_then(|()| conn.release_at_commit())
                        .and_then(|()| conn.commit());
                    health.record(committed.as_ref().map(|_| ()));
                    if committed.is_err() {
                        conn.forget_at_commit();
                        let _ = conn.execute_batch("ROLLBACK");
                    }
                    count(retries);
                    finish(committed.as_ref().err());
                    aggregates::fold_if_due(conn);
                    break;
                }
                refused_or_lost => {
                    aggregates::job_done(false);
                    conn.forget_later(before);
                    conn.forget_at_commit();
                    // Nothing to roll back when nothing went out.
                    if conn.sent_since(before) {
                        let _ = conn.execute_batch("ROLLBACK");
                    }
                    let Some((_, finish)) = refused_or_lost else {
                        // Lost a race: give the winner a moment.
                        std::thread::sleep(std::time::Duration::from_micros(
                            200 * u64::from(attempt),
                        ));
                        retries += 1;
                        continue;
                    };
                    count(retries);
                    finish(None);
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::params;

    /// A group of jobs where some refuse before writing and some after:
    /// what the refused jobs wrote is gone, the others' writes stay, and
    /// every caller hears its own answer once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_refused_after_writing_leaves_nothing_and_the_group_commits() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Arc::new(SqlStore::open(&dir.path().join("db.sqlite")).expect("open"));
        store
            .write_plain(|conn| conn.execute_batch("CREATE TABLE scratch (n INTEGER PRIMARY KEY)"))
            .await
            .expect("table");
        // Holds the writer, so that the jobs below queue up and run as
        // one group.
        let holder = tokio::spawn({
            let store = Arc::clone(&store);
            async move {
                store
                    .write_plain(|_| {
                        std::thread::sleep(Duration::from_millis(200));
                        Ok(())
                    })
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let jobs = (0..30_i64).map(|n| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let answer = store
                    .write(move |conn| {
                        if n % 3 != 2 {
                            conn.execute("INSERT INTO scratch (n) VALUES (?1)", params![n])?;
                        }
                        match n % 3 {
                            0 => Ok(n),
                            _ => Err(TxError::Refused(n)),
                        }
                    })
                    .await;
                (n, answer)
            })
        });
        let answers = futures::future::join_all(jobs).await;
        holder
            .await
            .expect("the holder ran")
            .expect("the holder's write");
        for answer in answers {
            let (n, answer) = answer.expect("the job ran");
            match (n % 3, answer) {
                (0, Ok(got)) => assert_eq!(got, n),
                (_, Err(TxError::Refused(got))) if n % 3 != 0 => assert_eq!(got, n),
                (_, other) => panic!("job {n} answered {:?}", other.map_err(|_| "an error")),
            }
        }
        let stored: Vec<i64> = store
            .read(|conn| {
                conn.query_map("SELECT n FROM scratch ORDER BY n", params![], |row| {
                    row.get(0)
                })
            })
            .await
            .expect("read");
        assert_eq!(stored, (0..30).filter(|n| n % 3 == 0).collect::<Vec<_>>());
    }
}
