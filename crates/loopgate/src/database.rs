//! Database operations without a server: `migrate` (and `--check` for
//! deploy pipelines), `backup` of an SQLite install, and `migrate-data`
//! from one database to another.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use loopgate_store::sql::PgOptions;
use loopgate_store::sql::admin::{self, Database};

use crate::config::FileConfig;

/// Which database: the same flags and settings as `serve`.
#[derive(Debug, Args)]
pub(crate) struct DatabaseArgs {
    /// Data directory [default: ./loopgate-data].
    #[arg(long, env = "LOOPGATE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL, `sqlite://PATH` or `postgres://…` [default: <data-dir>/loopgate.db].
    #[arg(long, env = "LOOPGATE_DATABASE_URL")]
    database_url: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct MigrateArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// Change nothing: list pending migrations and fail when there are any.
    #[arg(long)]
    check: bool,
}

#[derive(Debug, Args)]
pub(crate) struct BackupArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// The new file to write the copy to.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct MigrateDataArgs {
    /// The database to copy from, e.g. sqlite://loopgate-data/loopgate.db.
    #[arg(long)]
    from: String,
    /// The empty database to copy into, e.g. postgres://loopgate@db/loopgate.
    #[arg(long)]
    to: String,
}

fn database(file: &FileConfig, args: &DatabaseArgs) -> anyhow::Result<Database> {
    let url = file.database_url(args.data_dir.clone(), args.database_url.clone());
    Ok(Database::parse(&url)?)
}

pub(crate) async fn migrate(file: &FileConfig, args: MigrateArgs) -> anyhow::Result<()> {
    let database = database(file, &args.database)?;
    let status = database.status().await?;
    if let Some(unknown) = status.unknown.first() {
        anyhow::bail!(
            "the database has migration {unknown}, which this binary does not know; upgrade loopgate"
        );
    }
    if args.check {
        if status.pending.is_empty() {
            out!("up to date ({} migrations applied)", status.applied.len());
            return Ok(());
        }
        anyhow::bail!(
            "{} migration(s) pending: {}",
            status.pending.len(),
            status.pending.join(", ")
        );
    }
    drop(
        database
            .open(PgOptions {
                readers: 1,
                ..PgOptions::default()
            })
            .await?,
    );
    match status.pending.is_empty() {
        true => out!("up to date ({} migrations applied)", status.applied.len()),
        false => out!("applied {}", status.pending.join(", ")),
    }
    Ok(())
}

pub(crate) async fn backup(file: &FileConfig, args: BackupArgs) -> anyhow::Result<()> {
    let Database::Sqlite(path) = database(file, &args.database)? else {
        anyhow::bail!(
            "loopgate backup copies an SQLite database; back up PostgreSQL with pg_dump (docs/operations.md)"
        );
    };
    let out = args.out.clone();
    tokio::task::spawn_blocking(move || admin::backup_sqlite(&path, &out))
        .await
        .context("the backup task failed")??;
    out!("wrote {}", args.out.display());
    Ok(())
}

pub(crate) async fn migrate_data(args: MigrateDataArgs) -> anyhow::Result<()> {
    let from = Database::parse(&args.from).context("--from")?;
    let to = Database::parse(&args.to).context("--to")?;
    let report = admin::copy(&from, &to).await?;
    for (table, rows) in report.iter().filter(|(_, rows)| 0 < *rows) {
        out!("{table:<24} {rows:>10}");
    }
    out!("copied; start loopgate with --database-url set to the new database");
    Ok(())
}
