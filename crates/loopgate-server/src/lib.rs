//! loopgate's HTTP server: the axum application, its state, and the
//! background workers (deadline timers, the audit sequencer).
//!
//! Architecture invariant: this is the only crate that knows HTTP, and
//! `clock.rs` is the only place that reads the system clock. Handlers keep no
//! state between requests; everything durable is in the store.

pub mod audit;
pub mod auth;
mod cache;
pub mod charts;
pub mod clock;
pub mod config;
mod convert;
pub mod events;
pub mod http;
pub mod limits;
mod metrics;
pub mod outbound;
mod reports;
mod secrets;
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
/// running handlers finish, and stops the workers.
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
    let cancel = app.shutdown.clone();
    let signal = async move {
        shutdown.await;
        cancel.cancel();
    };
    let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let res = axum::serve(listener, service)
        .with_graceful_shutdown(signal)
        .await;
    app.shutdown.cancel();
    let _ = workers.await;
    let _ = sequencer.await;
    let _ = tail.await;
    let _ = webhooks.await;
    res
}
