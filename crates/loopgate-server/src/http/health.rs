//! Liveness, readiness, metrics, the OpenAPI document and the landing page.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use loopgate_proto::ErrorCode;
use utoipa::OpenApi;

use crate::AppState;
use crate::http::ApiDoc;
use crate::http::error::ApiError;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(), responses((status = 200, description = "ok")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// The store answers and the server is not shutting down.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(),
    responses((status = 200, description = "ready"), (status = 503, body = loopgate_proto::Problem)))]
pub async fn readyz(State(app): State<AppState>) -> Result<&'static str, ApiError> {
    if app.shutdown.is_cancelled() {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "the server is shutting down",
        ));
    }
    match app.store.writer_state() {
        loopgate_store::WriterState::Ready => (),
        loopgate_store::WriterState::Failing(error) => {
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                format!("writes are failing: {error}"),
            ));
        }
        loopgate_store::WriterState::Stopped => {
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                "the database writer stopped; the process is exiting",
            ));
        }
    }
    app.store.ping().await?;
    Ok("ready")
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations", security(), responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(
    State(app): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    // They name groups and queue depths: with `metrics_token`, only its holder.
    if let Some(token) = &app.config.metrics_token {
        let sent = headers
            .get(header::AUTHORIZATION)
            .and_then(|it| it.to_str().ok())
            .and_then(|it| it.strip_prefix("Bearer "))
            .map(str::trim);
        if !sent.is_some_and(|it| crate::auth::session::same_secret(it, token)) {
            return Err(ApiError::new(
                ErrorCode::Unauthenticated,
                "/metrics needs `Authorization: Bearer <metrics_token>`",
            ));
        }
    }
    let queue = app.store.queue_depth(app.clock.now()).await?;
    let mut body = app.metrics.render(&queue, app.waiters.len());
    crate::metrics::render_writes(&mut body, app.store.write_stats());
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}

/// The OpenAPI 3.1 document.
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// The landing page is the web UI.
pub async fn index() -> Redirect {
    Redirect::to("/ui")
}
