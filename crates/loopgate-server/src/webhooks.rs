//! Webhook delivery, per the Standard Webhooks spec: one endpoint per system,
//! fed from a durable outbox (the store's `webhook_deliveries`, filled from
//! the event rows behind one cursor).
//!
//! One dispatcher task per process moves the cursor, sends what is due with
//! many requests in flight (a bounded number per endpoint, so a slow endpoint
//! cannot take every slot), and records each attempt. Deliveries of one
//! proposal go out one at a time, in event order; a failed attempt is retried
//! with exponential backoff until its window runs out. An endpoint that
//! fails is left alone for a growing pause, so a dead receiver costs one
//! attempt per pause rather than one per queued delivery. Nothing here runs
//! on a request's path: an unreachable endpoint never slows the core loop.
//!
//! Delivery is at least once: a crash between a 2xx and its record sends
//! that message again, with the same `webhook-id`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac as _};
use loopgate_core::{EventKind, ProposalId, SystemId, Timestamp};
use loopgate_store::{AttemptResult, DeliveryState, DueDelivery, StoreError};
use serde_json::json;
use sha2::Sha256;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

use crate::AppState;
use crate::events::Event;

/// The event types a webhook gets unless it names others.
pub const DEFAULT_TYPES: [EventKind; 4] = [
    EventKind::ProposalResolved,
    EventKind::ProposalOverridden,
    EventKind::TaskCreated,
    EventKind::TaskEscalated,
];

/// Every event type a webhook may subscribe to: those about one proposal.
pub fn types() -> impl Iterator<Item = EventKind> {
    EventKind::ALL
        .iter()
        .copied()
        .filter(|kind| kind.is_about_a_proposal())
}

/// Requests in flight at once, over all endpoints.
const IN_FLIGHT: usize = 256;
/// Requests in flight at once to one endpoint.
const PER_ENDPOINT: usize = 128;
/// Events the cursor passes per store call.
const ENQUEUE_PAGE: u32 = 1000;
/// Longest pause of an endpoint that keeps failing.
const MAX_PAUSE: Duration = Duration::from_secs(60);
/// How long delivered and failed messages stay in the history.
pub const HISTORY: Duration = Duration::from_secs(30 * 24 * 3600);
/// Deliveries pruned per store call.
const PRUNE_PAGE: u32 = 1000;
/// Most of a response body read (the rest is dropped).
const MAX_RESPONSE: usize = 64 * 1024;

/// A new signing secret: `whsec_` and 32 random bytes in base64.
pub(crate) fn new_secret() -> Result<String, getrandom::Error> {
    let mut bytes = [0_u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("whsec_{}", BASE64.encode(bytes)))
}

/// Whether `secret` is a usable `whsec_<base64>` secret (16 to 64 bytes).
pub(crate) fn check_secret(secret: &str) -> Result<(), String> {
    let key = secret
        .strip_prefix("whsec_")
        .ok_or("a webhook secret starts with `whsec_`")?;
    match BASE64.decode(key) {
        Ok(bytes) if (16..=64).contains(&bytes.len()) => Ok(()),
        Ok(_) => Err("a webhook secret holds 16 to 64 bytes (base64 after `whsec_`)".to_owned()),
        Err(_) => Err("a webhook secret is `whsec_` followed by base64".to_owned()),
    }
}

/// The `webhook-signature` header: `v1,` and the base64 HMAC-SHA256, keyed
/// with the secret's bytes, of `<id>.<timestamp>.<body>`.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, String> {
    let key = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = BASE64
        .decode(key)
        .map_err(|_| "the webhook secret is not base64".to_owned())?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!("v1,{}", BASE64.encode(mac.finalize().into_bytes())))
}

/// The delivery's `webhook-id`.
pub(crate) fn message_id(id: i64) -> String {
    format!("msg_{id}")
}

/// Starts the dispatcher; it stops at shutdown (deliveries in flight then
/// stay pending and go out again after the restart).
pub(crate) fn spawn(app: AppState, wake: Arc<Notify>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let http = match crate::outbound::client(&app)
            .pool_max_idle_per_host(PER_ENDPOINT)
            .build()
        {
            Ok(http) => http,
            Err(error) => {
                tracing::error!(%error, "webhook delivery cannot start: no HTTP client");
                return;
            }
        };
        let mut dispatcher = Dispatcher {
            app,
            http,
            sending: JoinSet::new(),
            in_flight: HashSet::new(),
            per_endpoint: HashMap::new(),
            paused: HashMap::new(),
            finished: Vec::new(),
            spawned: HashMap::new(),
            due_reads: crate::outbox::OncePerPoll::default(),
        };
        crate::outbox::run(&mut dispatcher, &wake).await;
    })
}

struct Dispatcher {
    app: AppState,
    http: reqwest::Client,
    sending: JoinSet<(SystemId, AttemptResult)>,
    /// Deliveries sent or recorded-to-be; the store still says pending.
    in_flight: HashSet<i64>,
    per_endpoint: HashMap<SystemId, usize>,
    /// Endpoints that failed: consecutive failures and when to try again.
    paused: HashMap<SystemId, (u32, Timestamp)>,
    finished: Vec<(SystemId, AttemptResult)>,
    /// Sending tasks and their deliveries.
    spawned: HashMap<tokio::task::Id, (SystemId, i64)>,
    /// When it last read what is due.
    due_reads: crate::outbox::OncePerPoll,
}

impl crate::outbox::Worker for Dispatcher {
    type Done = (SystemId, AttemptResult);
    const NAME: &'static str = "webhook delivery";

    fn app(&self) -> &AppState {
        &self.app
    }

    fn sending(&mut self) -> &mut JoinSet<Self::Done> {
        &mut self.sending
    }

    async fn step(&mut self) -> Result<(), StoreError> {
        Dispatcher::step(self).await
    }

    async fn prune(&self) {
        Dispatcher::prune(self).await;
    }

    fn finish(&mut self, done: Result<(tokio::task::Id, Self::Done), tokio::task::JoinError>) {
        Dispatcher::finish(self, done);
    }
}

impl Dispatcher {
    /// Queues new events, records finished attempts, then sends what is due.
    async fn step(&mut self) -> Result<(), StoreError> {
        let store = self.app.store.clone();
        let now = self.app.clock.now();
        // Recording and queueing are sent together: the store's writer commits
        // them in one group (one fsync per step).
        let results: Vec<AttemptResult> = self.finished.iter().map(|(_, r)| r.clone()).collect();
        let any_finished = !results.is_empty();
        let record = async {
            match results.is_empty() {
                true => Ok(()),
                false => store.record_attempts(results).await,
            }
        };
        let (passed, recorded) = tokio::join!(store.enqueue_deliveries(now, ENQUEUE_PAGE), record);
        // Recorded results are settled before anything else can fail (a
        // result recorded twice would count its attempt twice).
        recorded?;
        for (system, result) in std::mem::take(&mut self.finished) {
            self.release(&system, result.id);
            self.note_endpoint(system, &result);
        }
        let passed = passed?;
        if passed == ENQUEUE_PAGE {
            while store.enqueue_deliveries(now, ENQUEUE_PAGE).await? == ENQUEUE_PAGE {}
        }
        let room = IN_FLIGHT.saturating_sub(self.in_flight.len());
        if room < IN_FLIGHT / 4 || !self.due_reads.due(0 < passed || any_finished) {
            return Ok(());
        }
        let skip = self
            .paused
            .iter()
            .filter(|(_, (_, until))| now < *until)
            .map(|(system, _)| system.clone())
            .collect();
        let limit = u32::try_from(room + self.in_flight.len()).unwrap_or(u32::MAX);
        for due in store.due_deliveries(now, skip, limit).await? {
            if self.in_flight.len() >= IN_FLIGHT {
                break;
            }
            let Some(system) = due.event.system.as_deref().and_then(SystemId::parse) else {
                continue;
            };
            let busy = self.per_endpoint.entry(system.clone()).or_default();
            if *busy >= PER_ENDPOINT || !self.in_flight.insert(due.id) {
                continue;
            }
            *busy += 1;
            let (app, http, id) = (self.app.clone(), self.http.clone(), due.id);
            let owner = system.clone();
            let task = self
                .sending
                .spawn(async move { (system, attempt(&app, &http, due).await) });
            self.spawned.insert(task.id(), (owner, id));
        }
        Ok(())
    }

    /// Drops history older than `HISTORY` (at most ten pages a second).
    async fn prune(&self) {
        let before = Timestamp::from_millis(
            self.app
                .clock
                .now()
                .millis()
                .saturating_sub(i64::try_from(HISTORY.as_millis()).unwrap_or(i64::MAX)),
        );
        for _ in 0..10 {
            match self.app.store.prune_deliveries(before, PRUNE_PAGE).await {
                Ok(n) if n == PRUNE_PAGE => (),
                Ok(_) => return,
                Err(error) => {
                    tracing::warn!(%error, "webhook history could not be pruned");
                    return;
                }
            }
        }
    }

    /// A delivery is no longer in flight.
    fn release(&mut self, system: &SystemId, id: i64) {
        self.in_flight.remove(&id);
        if let Some(n) = self.per_endpoint.get_mut(system) {
            *n = n.saturating_sub(1);
        }
    }

    /// A finished sending task: its result, or (if it failed, which it
    /// should not) its delivery back to pending in memory too.
    fn finish(
        &mut self,
        done: Result<(tokio::task::Id, (SystemId, AttemptResult)), tokio::task::JoinError>,
    ) {
        match done {
            Ok((task, done)) => {
                self.spawned.remove(&task);
                self.finished.push(done);
            }
            Err(error) => {
                tracing::error!(%error, "a webhook delivery task failed");
                if let Some((system, id)) = self.spawned.remove(&error.id()) {
                    self.release(&system, id);
                }
            }
        }
    }

    /// A success clears an endpoint's pause; a failure doubles it.
    fn note_endpoint(&mut self, system: SystemId, result: &AttemptResult) {
        if result.state == DeliveryState::Delivered {
            self.paused.remove(&system);
            return;
        }
        let base = self.app.config.webhook_retry_base;
        let (failures, until) = self.paused.entry(system).or_insert((0, result.time));
        // The attempts in flight when a pause began count as one failure.
        if *until <= result.time {
            *failures = failures.saturating_add(1);
            *until = result.time.plus(backoff(base, *failures).min(MAX_PAUSE));
        }
    }
}

/// `base · 2^(n−1)`, saturating: the wait before retry `n` (webhooks and
/// notifications).
pub(crate) fn backoff(base: Duration, n: u32) -> Duration {
    base.saturating_mul(2_u32.saturating_pow(n.saturating_sub(1).min(30)))
}

/// The body: `{"type", "timestamp", "data": {"event", "proposal"}}`, the
/// proposal as `GET /v1/proposals/{id}` shows it at the time of sending.
async fn body(app: &AppState, event: Event) -> Result<Vec<u8>, StoreError> {
    let proposal = match event.proposal.as_deref().and_then(ProposalId::parse) {
        Some(id) => app.store.proposal(&id).await?.map(crate::convert::proposal),
        None => None,
    };
    let body = json!({
        "type": event.kind,
        "timestamp": event.time,
        "data": {"event": event, "proposal": proposal},
    });
    Ok(serde_json::to_vec(&body)?)
}

/// Sends one delivery and says what happens next.
async fn attempt(app: &AppState, http: &reqwest::Client, due: DueDelivery) -> AttemptResult {
    let time = app.clock.now();
    let started = Instant::now();
    let (status, error) = match send(app, http, &due, time).await {
        Ok(status) if (200..300).contains(&status) => (Some(status), None),
        Ok(status) => (
            Some(status),
            Some(format!("the endpoint answered HTTP {status}")),
        ),
        Err(error) => (None, Some(error)),
    };
    let duration_ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
    // A trace context is joined from the proposal the event's subject names.
    if app.traces.is_on()
        && let (Some(trace), Some(proposal)) = (
            due.event.trace_context.as_deref(),
            due.event.subject.as_deref(),
        )
    {
        let mut attributes = vec![
            opentelemetry::KeyValue::new("loopgate.event.kind", due.event.kind.as_str()),
            opentelemetry::KeyValue::new("loopgate.webhook.attempt", i64::from(due.attempts) + 1),
        ];
        if let Some(status) = status {
            attributes.push(opentelemetry::KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        app.traces.delivered(crate::otel::Delivery {
            trace: Some(trace),
            proposal,
            how: "webhook",
            start: time,
            took: started.elapsed(),
            attributes,
            error: error.is_some().then_some(match status {
                Some(_) => "the endpoint answered with an error",
                None => "the endpoint could not be reached",
            }),
        });
    }
    let config = &app.config;
    let (state, next_at) = match error {
        None => (DeliveryState::Delivered, time),
        Some(_) => {
            let delay = backoff(config.webhook_retry_base, due.attempts.saturating_add(1))
                .min(config.webhook_retry_max);
            let next_at = time.plus(delay);
            match next_at <= due.window_start.plus(config.webhook_give_up) {
                true => (DeliveryState::Pending, next_at),
                false => (DeliveryState::Failed, time),
            }
        }
    };
    AttemptResult {
        id: due.id,
        time,
        status,
        error,
        duration_ms,
        state,
        next_at,
    }
}

async fn send(
    app: &AppState,
    http: &reqwest::Client,
    due: &DueDelivery,
    now: Timestamp,
) -> Result<u16, String> {
    let body = body(app, Event::from(due.event.clone()))
        .await
        .map_err(|e| format!("the message could not be built: {e}"))?;
    let id = message_id(due.id);
    let timestamp = now.millis().div_euclid(1000);
    let signature = sign(&due.secret, &id, timestamp, &body)?;
    let url = reqwest::Url::parse(&due.url).map_err(|e| format!("the URL is not valid: {e}"))?;
    if let Some(refused) = app.fence.refuses_literal(&url) {
        return Err(refused.to_string());
    }
    // The receiver may continue the proposal's trace.
    let mut headers = reqwest::header::HeaderMap::new();
    if app.traces.is_on()
        && let Some(context) = due.event.trace_context.as_deref()
    {
        crate::otel::inject(context, &mut headers);
    }
    let response = http
        .post(url)
        .headers(headers)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp)
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
        .map_err(|e| describe(e, app.config.webhook_timeout))?;
    let status = response.status().as_u16();
    // Read (a bounded part of) the answer so the connection can be reused.
    let mut response = response;
    let mut read = 0;
    while let Ok(Some(chunk)) = response.chunk().await {
        read += chunk.len();
        if read > MAX_RESPONSE {
            break;
        }
    }
    Ok(status)
}

/// The fence's refusal inside a connection error, if that is what it was.
fn fenced(error: &reqwest::Error) -> Option<&crate::outbound::Refused> {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<crate::outbound::Refused>() {
            return Some(refused);
        }
        source = cause.source();
    }
    None
}

/// A transport failure in a sentence (never with the secret or body).
pub(crate) fn describe(error: reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        format!("no answer within {} s", timeout.as_secs_f64())
    } else if let Some(refused) = fenced(&error) {
        format!("refused: {refused}")
    } else if error.is_connect() {
        "the endpoint could not be reached (connection failed)".to_owned()
    } else {
        format!("the request failed: {}", error.without_url())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let signature = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body);
        assert_eq!(
            signature.as_deref(),
            Ok("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
    }

    #[test]
    fn secrets_are_checked() {
        let secret = new_secret().unwrap();
        assert_eq!(check_secret(&secret), Ok(()));
        assert!(check_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(check_secret("whsec_!!").is_err());
        assert!(check_secret("whsec_AAAA").is_err());
    }

    #[test]
    fn backoff_doubles_and_saturates() {
        let base = Duration::from_secs(1);
        assert_eq!(backoff(base, 1), base);
        assert_eq!(backoff(base, 4), Duration::from_secs(8));
        assert!(backoff(base, 200) >= Duration::from_secs(1 << 30));
    }
}
