//! `GET /v1/events`: the durable event stream as server-sent events.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use loopgate_core::EventKind;
use loopgate_store::Principal;
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::AppState;
use crate::auth::Caller;
use crate::events::{Batch, Event, PAGE, Published, sees_everything, visible};
use crate::http::error::ApiError;
use crate::http::extract::Params;

/// Which events to stream.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only the events of this system's proposals.
    #[param(pattern = r"^[a-z][a-z0-9-]{0,63}$")]
    system: Option<String>,
    /// Only these types, comma-separated; `task.*` matches every `task.` type.
    #[serde(rename = "type")]
    #[param(min_length = 1)]
    kinds: Option<String>,
    /// Resume after this event id (what `Last-Event-ID` does; the header wins).
    after: Option<i64>,
}

/// The caller's filter.
struct Filter {
    principal: Principal,
    system: Option<String>,
    /// The types asked for; `None` for all.
    kinds: Option<Vec<EventKind>>,
}

impl Filter {
    fn wants(&self, event: &Event) -> bool {
        visible(&self.principal, event)
            && self
                .system
                .as_ref()
                .is_none_or(|s| event.system.as_ref() == Some(s))
            && self
                .kinds
                .as_ref()
                .is_none_or(|kinds| kinds.contains(&event.kind))
    }

    /// Whether every event of the channel it listens on passes: no type
    /// filter, and a principal that sees all of that channel (an admin or
    /// auditor, or a system on its own channel).
    fn takes_all(&self, channel: Option<&str>) -> bool {
        self.kinds.is_none()
            && match &self.principal {
                Principal::System(id) => channel == Some(id.as_str()),
                Principal::User(user) => sees_everything(user),
            }
    }
}

/// Where a subscription is.
struct Cursor {
    app: AppState,
    /// The stream's place among its credential's (given back when it ends).
    _held: crate::limits::Held,
    /// Checked again whenever credentials change: the stream ends when the
    /// caller's credential is revoked, their user disabled or their roles
    /// or groups changed (the client reconnects with what it holds now).
    caller: Caller,
    credentials: tokio::sync::watch::Receiver<u64>,
    /// When the caller's credential expires: the stream ends then.
    expiry: Option<tokio::time::Instant>,
    filter: Filter,
    receiver: broadcast::Receiver<Arc<Batch>>,
    /// Every event of the channel passes the filter.
    takes_all: bool,
    /// The newest event looked at.
    position: i64,
    /// Read from the store until it has nothing newer.
    catching_up: bool,
}

impl Cursor {
    /// The next frames to send, as one chunk; `None` ends the stream
    /// (shutdown, or the store failed: the client reconnects with
    /// `Last-Event-ID`).
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if self.credentials.has_changed().unwrap_or(false) && !self.still_valid().await {
                return None;
            }
            if self
                .expiry
                .is_some_and(|at| at <= tokio::time::Instant::now())
            {
                return None;
            }
            let mut frames = Frames::default();
            if self.catching_up {
                let rows = match self.app.store.events_after(self.position, PAGE).await {
                    Ok(rows) => rows,
                    Err(error) => {
                        tracing::warn!(%error, "event stream closed");
                        return None;
                    }
                };
                self.catching_up = rows.len() == PAGE as usize;
                for row in rows {
                    let published = Published::from(row);
                    if self.admit(&published.event) {
                        frames.push(published.frame);
                    }
                }
            } else {
                let next = tokio::select! {
                    next = self.receiver.recv() => next,
                    () = self.app.shutdown.cancelled() => return None,
                    () = crate::http::proposals::sleep_until_some(self.expiry) => return None,
                    Ok(()) = self.credentials.changed() => {
                        // Checked at the top of the loop, which marks it seen.
                        self.credentials.mark_changed();
                        continue;
                    }
                };
                match next {
                    Ok(batch) => self.take(&batch, &mut frames),
                    // Fell behind: the store has everything.
                    Err(RecvError::Lagged(_)) => self.catching_up = true,
                    Err(RecvError::Closed) => return None,
                }
                // Whatever else is at hand goes in the same chunk.
                while frames.len < CHUNK {
                    match self.receiver.try_recv() {
                        Ok(batch) => self.take(&batch, &mut frames),
                        Err(TryRecvError::Lagged(_)) => {
                            self.catching_up = true;
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
            if let Some(chunk) = frames.finish() {
                return Some(chunk);
            }
        }
    }

    /// Whether the caller still holds what it connected with. The change is
    /// marked seen only once checked (this future may be dropped midway by
    /// the keep-alive timer), and only if no other came meanwhile.
    async fn still_valid(&mut self) -> bool {
        let version = *self.credentials.borrow();
        let valid = matches!(
            crate::auth::still_valid(&self.app, &self.caller).await,
            Ok(true)
        );
        if valid && *self.credentials.borrow() == version {
            self.credentials.borrow_and_update();
        }
        valid
    }

    /// The frames of `batch` the caller wants, past its position.
    fn take(&mut self, batch: &Batch, frames: &mut Frames) {
        if self.takes_all && self.position < batch.first() {
            self.position = batch.last();
            frames.push(batch.frames.clone());
            return;
        }
        for published in &batch.events {
            if self.admit(&published.event) {
                frames.push(published.frame.clone());
            }
        }
    }

    /// Whether `event` is new and wanted; the position moves past it.
    fn admit(&mut self, event: &Event) -> bool {
        if event.id <= self.position {
            return false;
        }
        self.position = event.id;
        self.filter.wants(event)
    }
}

/// Frames gathered for one chunk (one shared buffer is sent as it is).
#[derive(Default)]
struct Frames {
    parts: Vec<Bytes>,
    len: usize,
}

impl Frames {
    fn push(&mut self, frames: Bytes) {
        self.len += frames.len();
        self.parts.push(frames);
    }

    fn finish(mut self) -> Option<Bytes> {
        match self.parts.len() {
            0 => None,
            1 => self.parts.pop(),
            _ => {
                let mut chunk = BytesMut::with_capacity(self.len);
                for part in &self.parts {
                    chunk.extend_from_slice(part);
                }
                Some(chunk.freeze())
            }
        }
    }
}

/// Bytes gathered into one chunk at most (one write per subscriber for
/// what is at hand, not one per event).
const CHUNK: usize = 256 * 1024;
/// A comment line this often keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

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
    if let Principal::User(user) = &caller.0
        && user.roles.is_empty()
    {
        return Err(ApiError::forbidden("a user without a role sees no events"));
    }
    let held = app.streams.acquire(caller.credential_key())?;
    let resume = match headers.get("last-event-id") {
        Some(value) => Some(last_event_id(value.as_bytes()).ok_or_else(|| {
            ApiError::invalid("`Last-Event-ID` must be an event id from this stream")
        })?),
        None => query.after,
    };
    let kinds = kinds_asked(query.kinds.as_deref());
    // Subscribe before reading: whatever is committed after this is either
    // in the store read or in the channel. A system's key, or `?system=`,
    // listens on that system's channel only.
    let channel = match (&query.system, &caller.0) {
        (Some(system), _) => Some(system.clone()),
        (None, Principal::System(id)) => Some(id.as_str().to_owned()),
        (None, Principal::User(_)) => None,
    };
    let receiver = app.bus.subscribe(channel.as_deref()).await;
    let position = match resume {
        Some(id) => id,
        // After everything committed before the request.
        None => {
            app.store.settle_log().await?;
            app.store.last_event_seq().await?
        }
    };
    let filter = Filter {
        principal: caller.0.clone(),
        system: query.system,
        kinds,
    };
    let expiry = caller
        .expires_in(app.clock.now())
        .map(|left| tokio::time::Instant::now() + left);
    let cursor = Cursor {
        expiry,
        _held: held,
        credentials: app.credentials.subscribe(),
        caller,
        takes_all: filter.takes_all(channel.as_deref()),
        filter,
        receiver,
        position,
        catching_up: true,
        app,
    };
    let chunks = futures::stream::unfold(cursor, |mut cursor| async move {
        let chunk = tokio::select! {
            chunk = cursor.next() => chunk?,
            () = tokio::time::sleep(KEEP_ALIVE) => Bytes::from_static(b":\n\n"),
        };
        Some((Ok::<Bytes, Infallible>(chunk), cursor))
    });
    let headers = [
        (header::CONTENT_TYPE, "text/event-stream"),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    Ok((headers, Body::from_stream(chunks)).into_response())
}

/// The position a `Last-Event-ID` header names, when it is one.
pub fn last_event_id(header: &[u8]) -> Option<i64> {
    std::str::from_utf8(header)
        .ok()
        .and_then(|text| text.trim().parse::<i64>().ok())
        .filter(|id| 0 <= *id)
}

/// The event types `?type=` names: a comma list of types and prefixes
/// ending in `*` (`task.*`). A name that is no type matches nothing; an
/// empty list asks for all.
fn kinds_asked(asked: Option<&str>) -> Option<Vec<EventKind>> {
    let patterns: Vec<&str> = asked
        .into_iter()
        .flat_map(|k| k.split(','))
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .collect();
    if patterns.is_empty() {
        return None;
    }
    let matches = |kind: EventKind| {
        patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => kind.as_str().starts_with(prefix),
            None => kind.as_str() == *p,
        })
    };
    Some(
        EventKind::ALL
            .iter()
            .copied()
            .filter(|k| matches(*k))
            .collect(),
    )
}
