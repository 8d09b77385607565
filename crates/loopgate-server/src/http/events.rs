//! `GET /v1/events`: the durable event stream as server-sent events.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use loopgate_store::Principal;
use serde::Deserialize;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

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
                match self.admit(next) {
                    Some(next) => return Some(next),
                    None => continue,
                }
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

impl Cursor {
    /// The next event already at hand (no waiting, no store read).
    fn try_next(&mut self) -> Option<Arc<Published>> {
        loop {
            let next = match self.pending.pop_front() {
                Some(next) => next,
                None if self.catching_up => return None,
                None => match self.receiver.try_recv() {
                    Ok(next) => next,
                    Err(TryRecvError::Lagged(_)) => {
                        self.catching_up = true;
                        return None;
                    }
                    Err(_) => return None,
                },
            };
            if let Some(next) = self.admit(next) {
                return Some(next);
            }
        }
    }

    /// `next` when it is new and the caller wants it; the position moves past it.
    fn admit(&mut self, next: Arc<Published>) -> Option<Arc<Published>> {
        if next.event.id <= self.position {
            return None;
        }
        self.position = next.event.id;
        self.filter.wants(&next.event).then_some(next)
    }
}

/// Events written in one chunk at most: what is at hand goes out in one
/// write per subscriber, not one write per event.
const CHUNK: usize = 256;
/// A comment line this often keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

fn append(chunk: &mut Vec<u8>, next: &Published) {
    chunk.extend_from_slice(format!("id: {}\ndata: ", next.event.id).as_bytes());
    chunk.extend_from_slice(next.json.as_bytes());
    chunk.extend_from_slice(b"\n\n");
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
) -> Result<Response, ApiError> {
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
    let chunks = futures::stream::unfold(cursor, |mut cursor| async move {
        let first = tokio::select! {
            next = cursor.next() => next?,
            () = tokio::time::sleep(KEEP_ALIVE) => {
                return Some((Ok::<Bytes, Infallible>(Bytes::from_static(b":\n\n")), cursor));
            }
        };
        let mut chunk = Vec::with_capacity(1024);
        append(&mut chunk, &first);
        for _ in 1..CHUNK {
            match cursor.try_next() {
                Some(next) => append(&mut chunk, &next),
                None => break,
            }
        }
        Some((Ok(Bytes::from(chunk)), cursor))
    });
    let headers = [
        (header::CONTENT_TYPE, "text/event-stream"),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    Ok((headers, Body::from_stream(chunks)).into_response())
}
