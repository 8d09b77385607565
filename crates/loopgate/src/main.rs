//! The `loopgate` binary: the clap CLI. `serve` and `demo` run the server;
//! the other commands talk to a running server over HTTP with the client.
//! Any error ends as one sentence on stderr and a non-zero exit.

/// Prints a line to stdout; a closed pipe (`loopgate review list | head`) is not an error.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod audit;
mod bench;
mod cli;
mod commands;
mod config;
mod database;
mod demo;
mod evidence;
mod mcp;
mod notify;
mod policy;
mod relay;
mod report;
mod webhook;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: the server allocates many small JSON values per request.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Everything loopgate writes (database, WAL, backups, exports, keys,
    // the gateway's ledger) is its owner's only, whatever creates it.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = cli::Cli::parse();
    // The MCP gateway relays one call at a time through a chain of
    // processes: one thread (no hand-offs between workers) answers sooner.
    let mut builder = match cli.command {
        cli::Command::Mcp(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_sentence(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line.
fn one_sentence(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|it| it.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}
