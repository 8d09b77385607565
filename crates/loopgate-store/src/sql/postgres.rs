//! PostgreSQL: connecting, migrations under a lock, and the session that
//! listens for other replicas' commits and holds leadership.
//!
//! Replicas share one database and write in parallel: each replica has
//! several writer connections, each job a transaction of its own, and no
//! lock is shared by all writers (see `super` and ARCHITECTURE.md,
//! "Concurrent writers"). Each commit that wrote something ends with
//! `NOTIFY loopgate`; every replica's watch session `LISTEN`s and wakes its
//! tail and waiters. The same session
//! holds the leader lock (a session-level advisory lock): it is released by
//! PostgreSQL the moment the session ends, so leadership moves within a
//! second or two of a replica's death.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{SqlStore, aggregates};
use crate::StoreError;
use crate::db::{Connection, params};

/// Notified after a commit that queued events (`queries::append`): the
/// leader's sequencer hears of it (the events wait for positions). Readers
/// of the log hear on `loopgate`, when the sequencer gave positions (see
/// `audit::give_positions`): before that, a commit's events cannot be read.
pub(super) const QUEUED: &str = "loopgate_queued";
/// Notified after a sequencer step's commit: the log grew, and every
/// replica's tail reads it.
pub(super) const LOG_GREW: &str = "loopgate";
/// Notified, with a proposal's id, after a commit that settled it: every
/// replica's waiters on it wake from the commit, without waiting for the
/// sequencer to give the events positions.
pub(super) const SETTLED: &str = "loopgate_settled";
/// Held by the replica that runs the sequencer, timers and webhook outbox.
const LEADER_LOCK: i64 = 0x6c6f_6f70_6702;
/// Held while migrating.
const MIGRATE_LOCK: i64 = 0x6c6f_6f70_6703;
/// How often the watch session polls: for the leader lock, and as the
/// fallback wake-up when notifications were lost with a connection.
const TICK: Duration = Duration::from_secs(1);

const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_schema",
        include_str!("../../migrations/postgres/0001_schema.sql"),
    ),
    (
        "0002_idempotency_lookup",
        include_str!("../../migrations/postgres/0002_idempotency_lookup.sql"),
    ),
    (
        "0003_policy_errors",
        include_str!("../../migrations/postgres/0003_policy_errors.sql"),
    ),
    (
        "0004_credentials",
        include_str!("../../migrations/postgres/0004_credentials.sql"),
    ),
    (
        "0005_notifications",
        include_str!("../../migrations/postgres/0005_notifications.sql"),
    ),
    (
        "0006_sso",
        include_str!("../../migrations/postgres/0006_sso.sql"),
    ),
    (
        "0007_respond",
        include_str!("../../migrations/postgres/0007_respond.sql"),
    ),
    (
        "0008_comments",
        include_str!("../../migrations/postgres/0008_comments.sql"),
    ),
    (
        "0009_grants",
        include_str!("../../migrations/postgres/0009_grants.sql"),
    ),
    (
        "0010_assignment",
        include_str!("../../migrations/postgres/0010_assignment.sql"),
    ),
    (
        "0011_traces",
        include_str!("../../migrations/postgres/0011_traces.sql"),
    ),
    (
        "0012_parallel_writers",
        include_str!("../../migrations/postgres/0012_parallel_writers.sql"),
    ),
    (
        "0013_queue",
        include_str!("../../migrations/postgres/0013_queue.sql"),
    ),
    (
        "0014_event_queue_order",
        include_str!("../../migrations/postgres/0014_event_queue_order.sql"),
    ),
    (
        "0015_erasure",
        include_str!("../../migrations/postgres/0015_erasure.sql"),
    ),
    (
        "0016_policy_versions",
        include_str!("../../migrations/postgres/0016_policy_versions.sql"),
    ),
    (
        "0017_analytics_deltas",
        include_str!("../../migrations/postgres/0017_analytics_deltas.sql"),
    ),
];

/// PostgreSQL connection settings.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Connections for reads.
    pub readers: usize,
    /// Connections for writes, each running one transaction at a time
    /// (each replica also has one watch connection).
    pub writers: usize,
    /// Longest a statement may run (also bounds the wait for a row lock);
    /// past it the request fails with 503.
    pub statement_timeout: Duration,
    /// Longest a connection attempt may take.
    pub connect_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> PgOptions {
        PgOptions {
            readers: 8,
            writers: 8,
            statement_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Where a schema stands against this binary's migrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    /// Applied migrations, oldest first.
    pub applied: Vec<String>,
    /// Known to this binary and not applied yet.
    pub pending: Vec<String>,
    /// Applied but unknown to this binary (it is older than the schema).
    pub unknown: Vec<String>,
}

fn config(url: &str, options: &PgOptions) -> Result<(tokio_postgres::Config, String), StoreError> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Invalid(format!("the PostgreSQL URL is not valid: {e}")))?;
    config.connect_timeout(options.connect_timeout);
    if config.get_application_name().is_none() {
        config.application_name("loopgate");
    }
    let setup = format!(
        "SET statement_timeout = {}; SET idle_in_transaction_session_timeout = {}",
        options.statement_timeout.as_millis(),
        options.statement_timeout.as_millis().saturating_mul(2)
    );
    Ok((config, setup))
}

/// Runs `f` on a thread where the blocking PostgreSQL client may run.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Other(format!("database task failed: {e}")))?
}

impl SqlStore {
    /// Connects to PostgreSQL, migrates the schema (under a lock, so
    /// replicas starting together take turns) and starts the watch session.
    pub async fn connect(url: &str, options: PgOptions) -> Result<SqlStore, StoreError> {
        let url = url.to_owned();
        blocking(move || {
            let (config, setup) = config(&url, &options)?;
            let writer = Connection::postgres(config.clone(), setup.clone())?;
            migrate(&writer)?;
            aggregates::ensure(&writer)?;
            let grant_key = super::grants::ensure_key(&writer)?;
            let mut writers = vec![writer];
            for _ in 1..options.writers.max(1) {
                writers.push(Connection::postgres(config.clone(), setup.clone())?);
            }
            let mut readers = Vec::with_capacity(options.readers.max(1));
            for _ in 0..options.readers.max(1) {
                readers.push(Connection::postgres(config.clone(), setup.clone())?);
            }
            let store = SqlStore::start(writers, readers, grant_key)?;
            let watch = Connection::postgres(config, setup)?;
            let leader = Arc::clone(&store.inner.leader);
            let wake = Arc::clone(&store.inner.wake);
            let queued = Arc::clone(&store.inner.queued);
            let settled = Arc::clone(&store.inner.settled);
            let stop = Arc::clone(&store.inner.stopped);
            std::thread::Builder::new()
                .name("loopgate-db-watch".to_owned())
                .spawn(move || {
                    watch_loop(&watch, &leader, (&wake, &queued, &settled), &stop);
                })
                .map_err(|e| StoreError::Other(format!("cannot start the watch thread: {e}")))?;
            Ok(store)
        })
        .await
    }

    /// Where the PostgreSQL schema at `url` stands (for `loopgate migrate
    /// --check`); changes nothing.
    pub async fn postgres_status(url: &str) -> Result<MigrationStatus, StoreError> {
        let url = url.to_owned();
        blocking(move || {
            let (config, setup) = config(&url, &PgOptions::default())?;
            let conn = Connection::postgres(config, setup)?;
            status(&conn)
        })
        .await
    }
}

/// One connection with the default settings (for `admin`).
pub(super) fn plain(url: &str) -> Result<Connection, StoreError> {
    let (config, setup) = config(url, &PgOptions::default())?;
    Connection::postgres(config, setup)
}

fn applied(conn: &Connection) -> Result<Vec<String>, StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS loopgate_migrations (
             name TEXT PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )?;
    conn.query_map(
        "SELECT name FROM loopgate_migrations ORDER BY name",
        params![],
        |row| row.get(0),
    )
}

fn status(conn: &Connection) -> Result<MigrationStatus, StoreError> {
    let exists: bool = conn.query_row(
        "SELECT to_regclass('loopgate_migrations') IS NOT NULL",
        params![],
        |row| row.get(0),
    )?;
    let applied = match exists {
        true => applied(conn)?,
        false => Vec::new(),
    };
    let known: Vec<String> = MIGRATIONS
        .iter()
        .map(|(name, _)| (*name).to_owned())
        .collect();
    Ok(MigrationStatus {
        pending: known
            .iter()
            .filter(|k| !applied.contains(k))
            .cloned()
            .collect(),
        unknown: applied
            .iter()
            .filter(|a| !known.contains(a))
            .cloned()
            .collect(),
        applied,
    })
}

/// Applies the pending migrations, each in its own transaction, holding
/// the migration lock so that replicas starting together take turns.
fn migrate(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(&format!("SELECT pg_advisory_lock({MIGRATE_LOCK})"))?;
    let result = migrate_locked(conn);
    let unlocked = conn.execute_batch(&format!("SELECT pg_advisory_unlock({MIGRATE_LOCK})"));
    result.and(unlocked)
}

fn migrate_locked(conn: &Connection) -> Result<(), StoreError> {
    let done = applied(conn)?;
    for (name, sql) in MIGRATIONS {
        if done.iter().any(|d| d == name) {
            continue;
        }
        let script = format!(
            "BEGIN; {sql}\n; INSERT INTO loopgate_migrations (name) VALUES ('{name}'); COMMIT;"
        );
        if let Err(error) = conn.execute_batch(&script) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(StoreError::Other(format!(
                "migration {name} failed: {error}"
            )));
        }
        tracing::info!(migration = name, "PostgreSQL schema migrated");
    }
    let unknown: Vec<&String> = done
        .iter()
        .filter(|d| !MIGRATIONS.iter().any(|(name, _)| name == d))
        .collect();
    if let Some(name) = unknown.first() {
        return Err(StoreError::Other(format!(
            "the database has migration {name}, which this binary does not know; upgrade loopgate"
        )));
    }
    Ok(())
}

/// Listens for commits of other replicas and holds (or seeks) the leader
/// lock, reconnecting whenever the session is lost.
fn watch_loop(
    conn: &Connection,
    leader: &AtomicBool,
    (wake, queued, settled): (&super::Wake, &super::Wake, &super::Wake<str>),
    stopped: &AtomicBool,
) {
    let mut listening = false;
    while !stopped.load(Ordering::Relaxed) {
        if !listening {
            leader.store(false, Ordering::SeqCst);
            let listen = format!("LISTEN {LOG_GREW}; LISTEN {QUEUED}; LISTEN {SETTLED}");
            match conn.execute_batch(&listen) {
                Ok(()) => {
                    listening = true;
                    // Whatever happened while no one listened: look now.
                    wake.wake();
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for other replicas' commits; retrying");
                    std::thread::sleep(TICK);
                    continue;
                }
            }
        }
        if !leader.load(Ordering::SeqCst) {
            let got: Result<bool, StoreError> = conn.query_row(
                "SELECT pg_try_advisory_lock(?1)",
                params![LEADER_LOCK],
                |row| row.get(0),
            );
            match got {
                Ok(true) => {
                    tracing::info!("this replica leads (sequencer, timers, webhooks)");
                    leader.store(true, Ordering::SeqCst);
                }
                Ok(false) => (),
                Err(error) => {
                    tracing::warn!(%error, "the watch session was lost; reconnecting");
                    listening = false;
                    continue;
                }
            }
        }
        match conn.notified(TICK) {
            Ok(channels) => {
                for (channel, payload) in channels {
                    match channel.as_str() {
                        LOG_GREW => wake.wake(),
                        SETTLED => settled.call(&payload),
                        QUEUED if leader.load(Ordering::SeqCst) => queued.wake(),
                        _ => (),
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "the watch session was lost; reconnecting");
                listening = false;
            }
        }
    }
}
