//! Operations on a database named by URL, without a running store:
//! migration status, SQLite backups, and copying everything from one
//! database to another (`loopgate migrate-data`).

use std::path::{Path, PathBuf};

use super::postgres::{self as pg, MigrationStatus, PgOptions};
use super::{SQLITE_MIGRATIONS, SqlStore};
use crate::StoreError;
use crate::db::{Connection, Dialect, ToArg, params};

/// A database: `sqlite://PATH` or `postgres://…` (`postgresql://…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL.
    Postgres(String),
}

impl Database {
    /// Reads a database URL.
    pub fn parse(url: &str) -> Result<Database, StoreError> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            return Ok(Database::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Database::Postgres(url.to_owned()));
        }
        Err(StoreError::Invalid(format!(
            "a database URL starts with sqlite:// or postgres://, not `{}`",
            url.split("://").next().unwrap_or(url)
        )))
    }

    /// Opens the store (creating and migrating the schema as needed).
    pub async fn open(&self, options: PgOptions) -> Result<SqlStore, StoreError> {
        match self {
            Database::Sqlite(path) => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    crate::files::private_dir(parent).map_err(|e| {
                        StoreError::Unavailable(format!(
                            "cannot create `{}`: {e}",
                            parent.display()
                        ))
                    })?;
                }
                let store = SqlStore::open(path)?;
                // The database and its WAL hold every payload and the
                // webhooks' signing secrets.
                for suffix in ["", "-wal", "-shm"] {
                    let mut name = path.as_os_str().to_owned();
                    name.push(suffix);
                    let file = std::path::PathBuf::from(name);
                    if file.exists() {
                        crate::files::restrict(&file, 0o600).map_err(|e| {
                            StoreError::Unavailable(format!(
                                "cannot restrict `{}`: {e}",
                                file.display()
                            ))
                        })?;
                    }
                }
                Ok(store)
            }
            Database::Postgres(url) => SqlStore::connect(url, options).await,
        }
    }

    /// Where the schema stands against this binary; changes nothing.
    pub async fn status(&self) -> Result<MigrationStatus, StoreError> {
        match self {
            Database::Postgres(url) => SqlStore::postgres_status(url).await,
            Database::Sqlite(path) => {
                let known: Vec<String> = SQLITE_MIGRATIONS
                    .iter()
                    .map(|(name, _)| (*name).to_owned())
                    .collect();
                if !path.exists() {
                    return Ok(MigrationStatus {
                        applied: Vec::new(),
                        pending: known,
                        unknown: Vec::new(),
                    });
                }
                let conn = read_only(path)?;
                let version: i64 =
                    conn.query_row("PRAGMA user_version", params![], |row| row.get(0))?;
                let n = usize::try_from(version).unwrap_or(0);
                Ok(MigrationStatus {
                    applied: known.iter().take(n).cloned().collect(),
                    pending: known.iter().skip(n).cloned().collect(),
                    unknown: (known.len()..n)
                        .map(|i| format!("version {}", i + 1))
                        .collect(),
                })
            }
        }
    }
}

fn read_only(path: &Path) -> Result<Connection, StoreError> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Unavailable(format!("cannot open `{}`: {e}", path.display())))?;
    conn.execute_batch("PRAGMA busy_timeout = 5000;")?;
    Ok(Connection::Sqlite(conn))
}

/// Writes a consistent copy of the SQLite database at `path` to `out`
/// (`VACUUM INTO`: safe while a server writes to it). `out` must not exist.
pub fn backup_sqlite(path: &Path, out: &Path) -> Result<(), StoreError> {
    if !path.exists() {
        return Err(StoreError::Invalid(format!(
            "there is no database at `{}`",
            path.display()
        )));
    }
    if out.exists() {
        return Err(StoreError::Invalid(format!(
            "`{}` exists already; choose a new file",
            out.display()
        )));
    }
    let conn = read_only(path)?;
    // Created empty, for the owner only, before SQLite fills it.
    drop(
        crate::files::create_private(out)
            .map_err(|e| StoreError::Invalid(format!("cannot create `{}`: {e}", out.display())))?,
    );
    let target = out.to_string_lossy().into_owned();
    conn.execute("VACUUM INTO ?1", params![target])?;
    Ok(())
}

/// The tables `copy` moves, parents before children.
const TABLES: &[&str] = &[
    "meta",
    "systems",
    "users",
    "credentials",
    "sessions",
    "policies",
    "policy_activations",
    "proposals",
    "tasks",
    "decisions",
    "comments",
    "grants",
    "events",
    "audit_tiles",
    "audit_head",
    "audit_checkpoints",
    "shadow_disagreements",
    "shadow_errors",
    "auto_counters",
    "analytics_counts",
    "analytics_deltas",
    "analytics_disagreements",
    "webhooks",
    "webhook_deliveries",
    "webhook_attempts",
    "group_notifications",
    "group_settings",
    "task_warnings",
    "notifications",
    "notification_attempts",
    "decision_links",
    "oidc_logins",
];

/// Tables of a schema that `copy` leaves: each database's own bookkeeping.
/// (PostgreSQL's `event_queue` must be empty: see `copy_locked`.)
const NOT_COPIED: &[&str] = &["loopgate_migrations", "event_queue"];

/// Rows copied per table.
pub type CopyReport = Vec<(String, u64)>;

/// Copies every row of `from` into `to`, whose schema is migrated first
/// and which must hold no users or events yet. The copy is one transaction
/// on `to`: all of it lands or nothing. Servers using `from` should be
/// stopped (rows written meanwhile would be missed).
pub async fn copy(from: &Database, to: &Database) -> Result<CopyReport, StoreError> {
    if from == to {
        return Err(StoreError::Invalid(
            "the source and the target are the same database".to_owned(),
        ));
    }
    if let Database::Sqlite(path) = from
        && !path.exists()
    {
        return Err(StoreError::Invalid(format!(
            "there is no database at `{}`",
            path.display()
        )));
    }
    // Migrate both to this binary's schema (also checks they are not newer).
    drop(
        from.open(PgOptions {
            readers: 1,
            ..PgOptions::default()
        })
        .await?,
    );
    drop(
        to.open(PgOptions {
            readers: 1,
            ..PgOptions::default()
        })
        .await?,
    );
    let (from, to) = (from.clone(), to.clone());
    tokio::task::spawn_blocking(move || {
        let source = connect(&from)?;
        let target = connect(&to)?;
        copy_tables(&source, &target)
    })
    .await
    .map_err(|e| StoreError::Other(format!("the copy failed: {e}")))?
}

fn connect(database: &Database) -> Result<Connection, StoreError> {
    match database {
        Database::Sqlite(path) => super::connect(path),
        Database::Postgres(url) => pg::plain(url),
    }
}

fn copy_tables(source: &Connection, target: &Connection) -> Result<CopyReport, StoreError> {
    target.begin_write()?;
    let copied = copy_locked(source, target);
    match &copied {
        Ok(_) => target.execute_batch("COMMIT")?,
        Err(_) => {
            let _ = target.execute_batch("ROLLBACK");
        }
    }
    copied
}

fn copy_locked(source: &Connection, target: &Connection) -> Result<CopyReport, StoreError> {
    let used: i64 = target.query_row(
        "SELECT (SELECT COUNT(*) FROM users) + (SELECT COUNT(*) FROM events)",
        params![],
        |row| row.get(0),
    )?;
    if 0 < used {
        return Err(StoreError::Invalid(
            "the target database is in use already (it has users or events); copy into an empty one".to_owned(),
        ));
    }
    // Events not in the log yet would be left behind: the sequencer of a
    // server on the source moves them (at the latest when it stops).
    if source.dialect() == Dialect::Postgres {
        let queued: i64 =
            source.query_row("SELECT COUNT(*) FROM event_queue", params![], |row| {
                row.get(0)
            })?;
        if 0 < queued {
            return Err(StoreError::Invalid(format!(
                "the source has {queued} audit events not in its log yet; start loopgate on it and stop it again (its sequencer moves them), then copy"
            )));
        }
    }
    // A table a migration added must be named above: refuse rather than
    // leave its rows behind.
    for table in tables(source)? {
        if !TABLES.contains(&table.as_str()) && !NOT_COPIED.contains(&table.as_str()) {
            return Err(StoreError::Other(format!(
                "table {table} is not one `copy` knows: this build cannot move it"
            )));
        }
    }
    let mut report = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let names = columns(source, table)?;
        let wanted = columns(target, table)?;
        if names != wanted {
            return Err(StoreError::Other(format!(
                "table {table} differs between the databases: {names:?} and {wanted:?}"
            )));
        }
        let list = names.join(", ");
        let marks: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
        let insert = match *table {
            // Both schemas start with their own `meta` rows: the source's win.
            "meta" => format!(
                "INSERT INTO meta ({list}) VALUES ({}) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                marks.join(", ")
            ),
            // Migrations may seed activations; the source's history replaces them.
            _ => format!("INSERT INTO {table} ({list}) VALUES ({})", marks.join(", ")),
        };
        if *table == "policy_activations" {
            target.execute("DELETE FROM policy_activations", params![])?;
        }
        let mut rows = source.query(&format!("SELECT {list} FROM {table}"), params![])?;
        let mut n = 0u64;
        while let Some(row) = rows.next()? {
            let args = (0..names.len())
                .map(|i| row.get_ref(i).map(ToArg::to_arg))
                .collect::<Result<Vec<_>, _>>()?;
            target.execute(&insert, args)?;
            n += 1;
        }
        report.push(((*table).to_owned(), n));
    }
    if target.dialect() == Dialect::Postgres {
        // Identity columns continue after the copied rows.
        for (table, column) in [
            ("policies", "seq"),
            ("policy_activations", "seq"),
            ("proposals", "seq"),
            ("tasks", "seq"),
            ("decisions", "seq"),
            ("notifications", "id"),
            ("analytics_deltas", "seq"),
        ] {
            target.execute_batch(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
            ))?;
        }
    }
    Ok(report)
}

/// The tables of a database's schema.
fn tables(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let sql = match conn.dialect() {
        Dialect::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        }
        Dialect::Postgres => {
            "SELECT CAST(table_name AS TEXT) FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name"
        }
    };
    conn.query_map(sql, params![], |row| row.get(0))
}

fn columns(conn: &Connection, table: &str) -> Result<Vec<String>, StoreError> {
    let sql = match conn.dialect() {
        Dialect::Sqlite => "SELECT name FROM pragma_table_info(?1) ORDER BY cid",
        Dialect::Postgres => {
            "SELECT CAST(column_name AS TEXT) FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = ?1 ORDER BY ordinal_position"
        }
    };
    let mut names: Vec<String> = conn.query_map(sql, params![table], |row| row.get(0))?;
    // Same columns, maybe in another order (SQLite appends ALTERed ones).
    names.sort();
    Ok(names)
}
