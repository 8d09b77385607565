//! `GET /v1/events`: live notifications as server-sent events.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use crate::AppState;
use crate::auth::Caller;
use crate::events::visible;

/// Queue and proposal notifications the caller may see, as they happen:
/// `data` is a JSON object with `type`, `proposal`, `system`, `task`,
/// `group` and `actor` (ids only, never payloads). An event named `lagged`
/// tells a slow client that it missed some and should re-read.
#[utoipa::path(get, path = "/v1/events", tag = "events",
    responses((status = 200, description = "an SSE stream", content_type = "text/event-stream"),
              (status = 401, body = loopgate_proto::Problem)))]
pub async fn stream(
    State(app): State<AppState>,
    caller: Caller,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let state = (app.bus.subscribe(), caller.0, app.shutdown.clone());
    let events = futures::stream::unfold(state, |(mut receiver, principal, shutdown)| async move {
        loop {
            let next = tokio::select! {
                next = receiver.recv() => next,
                () = shutdown.cancelled() => return None,
            };
            let event = match next {
                Ok(event) if visible(&principal, &event) => match serde_json::to_string(&event) {
                    Ok(data) => SseEvent::default().data(data),
                    Err(_) => continue,
                },
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => SseEvent::default().event("lagged").data("{}"),
                Err(RecvError::Closed) => return None,
            };
            return Some((Ok(event), (receiver, principal, shutdown)));
        }
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
