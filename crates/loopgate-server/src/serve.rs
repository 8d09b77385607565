//! The accept loop: hyper's HTTP/1 connections with a cap on their
//! number, a deadline for request headers (slow clients cannot hold
//! connections), a graceful drain bounded by `shutdown_grace`, and the
//! peer's address for each request (`ConnectInfo`).

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

use crate::Config;

/// Serves `router` until `stop` resolves (its result is the result), then
/// drains open connections for at most `shutdown_grace`.
pub(crate) async fn accept(
    listener: TcpListener,
    router: Router,
    config: &Config,
    stop: impl Future<Output = std::io::Result<()>>,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .keep_alive(true);
    let connections = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    let result = loop {
        // Wait for room before accepting: over the cap, clients wait in the
        // kernel's backlog instead of costing memory here.
        let permit = tokio::select! {
            permit = Arc::clone(&connections).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break Ok(()),
            },
            result = &mut stop => break result,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait, go on.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            result = &mut stop => break result,
        };
        let _ = stream.set_nodelay(true);
        let service = router
            .clone()
            .map_request(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, client = %peer, "connection ended with an error");
            }
            drop(permit);
        });
    };
    drop(listener);
    // For a moment, connections stay open: a request already on its way on
    // a kept-alive connection is answered (503 with `Connection: close`, see
    // `http::deadline`) instead of meeting a closed socket. Then idle
    // connections close and running requests have what is left of the grace.
    let linger = (config.shutdown_grace / 30).min(std::time::Duration::from_secs(1));
    tokio::time::sleep(linger).await;
    tokio::select! {
        () = graceful.shutdown() => (),
        () = tokio::time::sleep(config.shutdown_grace.saturating_sub(linger)) => {
            tracing::warn!(
                grace = ?config.shutdown_grace,
                "connections still open after the shutdown grace period are closed"
            );
        }
    }
    result
}
