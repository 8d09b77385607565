//! loopgate's HTTP server: the axum application, its state, and the
//! background workers [`serve`] runs beside it: deadline timers and
//! retention (`timers`), the audit sequencer and checkpoint signer
//! (`audit`), the event tail that feeds streams and follows other replicas
//! (`events`), the webhook dispatcher (`webhooks`), and the writer watch.
//! What a committed change means for this process (waiters, metrics, the
//! event bus) is decided in one place, `committed`.
//!
//! Architecture invariant: this is the only crate that knows HTTP, and
//! `clock.rs` is the only place that reads the system clock. Handlers keep no
//! state between requests; everything durable is in the store.

pub mod audit;
pub mod auth;
mod cache;
pub mod charts;
pub mod clock;
mod committed;
pub mod config;
mod convert;
pub mod events;
pub mod http;
pub mod limits;
mod metrics;
pub mod notify;
pub mod otel;
pub mod outbound;
mod outbox;
pub mod policy_reports;
mod reports;
mod secrets;
mod serve;
mod state;
pub mod timers;
mod ui;
mod waiters;
pub mod webhooks;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Config, StartError};
pub use state::{AppState, Shared, Started, start};

use std::future::Future;

use tokio::net::TcpListener;

/// Serves the API on `listener` until `shutdown` completes, then drains:
/// stops accepting, answers open long-polls with the current state, lets
/// running requests finish for at most `shutdown_grace`, and stops the
/// workers. Connections are capped (`max_connections`; more wait in the
/// kernel's backlog), a client has `header_read_timeout` to send a
/// request's headers, and a request that takes longer than
/// `request_timeout` is answered 503. Fails when the database writer
/// stopped, so that the process exits non-zero and a supervisor restarts it.
pub async fn serve(
    listener: TcpListener,
    app: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = http::router(app.clone());
    let workers = timers::spawn(app.clone());
    let sequencer = audit::spawn(app.clone());
    let tail = events::spawn(app.clone());
    let webhooks = webhooks::spawn(app.clone(), app.bus.webhooks.clone());
    let notifier = notify::spawn(app.clone(), app.bus.notifier.clone());
    let cancel = app.shutdown.clone();
    let writer = watch_writer(app.clone());
    let draining = cancel.clone();
    let res = serve::accept(listener, router, &app.config, async move {
        let stopped = tokio::select! {
            () = shutdown => Ok(()),
            stopped = writer => stopped,
        };
        // From now on long-polls answer, and new requests get 503.
        draining.cancel();
        stopped
    })
    .await;
    cancel.cancel();
    let _ = workers.await;
    let _ = sequencer.await;
    let _ = tail.await;
    let _ = webhooks.await;
    let _ = notifier.await;
    // What the exporter still holds goes out before the process ends.
    let traces = app.traces.clone();
    let _ = tokio::task::spawn_blocking(move || traces.shutdown()).await;
    res
}

/// Resolves with an error once the database writer has stopped.
async fn watch_writer(app: AppState) -> std::io::Result<()> {
    loop {
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_millis(250)) => (),
            () = app.shutdown.cancelled() => return Ok(()),
        }
        if app.store.writer_state() == loopgate_store::WriterState::Stopped {
            tracing::error!("the database writer stopped: shutting down");
            return Err(std::io::Error::other("the database writer stopped"));
        }
    }
}
