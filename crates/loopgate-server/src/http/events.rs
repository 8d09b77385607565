//! `GET /v1/events`: the durable event stream as server-sent events.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use loopgate_store::Principal;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use crate::AppState;
use crate::auth::Caller;
use crate::events::{Event, PAGE, Published, visible};
use crate::http::error::ApiError;
use crate::http::extract::Params;

/// Which events to stream.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only the events of this system's proposals.
    system: Option<String>,
    /// Only these types, comma-separated; `task.*` matches every `task.` type.
    #[serde(rename = "type")]
    kinds: Option<String>,
    /// Resume after this event id (what `Last-Event-ID` does; the header wins).
    after: Option<i64>,
}

/// The caller's filter.
struct Filter {
    principal: Principal,
    system: Option<String>,
    kinds: Vec<String>,
}

impl Filter {
    fn wants(&self, event: &Event) -> bool {
        visible(&self.principal, event)
            && self
                .system
                .as_ref()
                .is_none_or(|s| event.system.as_ref() == Some(s))
            && (self.kinds.is_empty()
                || self.kinds.iter().any(|k| match k.strip_suffix('*') {
                    Some(prefix) => event.kind.starts_with(prefix),
                    None => event.kind == *k,
                }))
    }
}

/// Where a subscription is.
struct Cursor {
    app: AppState,
    filter: Filter,
    receiver: tokio::sync::broadcast::Receiver<Arc<Published>>,
    /// The newest event looked at.
    position: i64,
    /// Read from the store until it has nothing newer.
    catching_up: bool,
    pending: VecDeque<Arc<Published>>,
}

impl Cursor {
    /// The next event to send; `None` ends the stream (shutdown, or the store
    /// failed: the client reconnects with `Last-Event-ID`).
    async fn next(&mut self) -> Option<Arc<Published>> {
        loop {
            if let Some(next) = self.pending.pop_front() {
                if next.event.id <= self.position {
                    continue;
                }
                self.position = next.event.id;
                if self.filter.wants(&next.event) {
                    return Some(next);
                }
                continue;
            }
            if self.catching_up {
                let rows = match self.app.store.events_after(self.position, PAGE).await {
                    Ok(rows) => rows,
                    Err(error) => {
                        tracing::warn!(%error, "event stream closed");
                        return None;
                    }
                };
                self.catching_up = rows.len() == PAGE as usize;
                self.pending
                    .extend(rows.into_iter().map(|row| Arc::new(Published::from(row))));
                continue;
            }
            let next = tokio::select! {
                next = self.receiver.recv() => next,
                () = self.app.shutdown.cancelled() => return None,
            };
            match next {
                Ok(event) => self.pending.push_back(event),
                // Fell behind the broadcast: the store has everything.
                Err(RecvError::Lagged(_)) => self.catching_up = true,
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

/// The events the caller may see, as they are committed, each with its
/// position as the SSE `id`: `data` is a JSON object with `id`, `type`,
/// `time`, `actor`, `subject`, `proposal`, `task`, `system`, `group` and the
/// audit entry's `data` (ids, digests, salted hashes; never payloads).
/// Events are durable: reconnect with `Last-Event-ID` (or `?after=`) to
/// receive everything after it, across server restarts. Systems see their
/// own proposals' events, reviewers those of their groups' tasks, admins
/// and auditors everything.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventsQuery),
    responses((status = 200, description = "an SSE stream", content_type = "text/event-stream"),
              (status = 400, body = loopgate_proto::Problem),
              (status = 401, body = loopgate_proto::Problem)))]
pub async fn stream(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Params(query): Params<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let resume = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|text| text.trim().parse::<i64>().ok())
                .filter(|id| 0 <= *id)
                .ok_or_else(|| {
                    ApiError::invalid("`Last-Event-ID` must be an event id from this stream")
                })?,
        ),
        None => query.after,
    };
    let kinds: Vec<String> = query
        .kinds
        .iter()
        .flat_map(|k| k.split(','))
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
        .collect();
    // Subscribe before reading: whatever is committed after this is either
    // in the store read or in the broadcast.
    let receiver = app.bus.subscribe().await;
    let position = match resume {
        Some(id) => id,
        None => app.store.last_event_seq().await?,
    };
    let cursor = Cursor {
        filter: Filter {
            principal: caller.0,
            system: query.system,
            kinds,
        },
        receiver,
        position,
        catching_up: true,
        pending: VecDeque::new(),
        app,
    };
    let events = futures::stream::unfold(cursor, |mut cursor| async move {
        let next = cursor.next().await?;
        let sse = SseEvent::default()
            .id(next.event.id.to_string())
            .data(next.json.as_str());
        Some((Ok(sse), cursor))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
