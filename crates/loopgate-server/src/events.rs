//! The event stream: the store's event rows (the audit log's entries, written
//! in the transaction of each change) fanned out to `GET /v1/events`
//! subscribers.
//!
//! One tail task per process reads the rows after the last one it saw, when
//! a handler of this process wakes it after a commit or every second
//! (changes made by other processes), and broadcasts them; with nobody
//! subscribed it only notes the newest position. A subscriber
//! first reads what it missed from the store (`Last-Event-ID`), then follows
//! the broadcast, and goes back to the store whenever it falls behind: the
//! rows are durable, so nothing is lost across reconnects and restarts.
//! Events carry ids, digests and salted hashes only (never payloads).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use loopgate_core::{EventKind, ProposalId, Role};
use loopgate_store::{Principal, StoredEvent, UserRecord};
use serde::Serialize;
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;

use crate::AppState;

/// How many batches a slow subscriber of every event may lag behind before
/// it reads from the store again.
const CAPACITY: usize = 256;
/// The same for a system's channel (there may be thousands of them).
const SYSTEM_CAPACITY: usize = 64;
/// Shortest time between two publications to subscribers.
const FLUSH: Duration = Duration::from_millis(5);
/// Rows read per store call.
pub(crate) const PAGE: u32 = 500;
/// How often the tail looks for events written by other processes.
const POLL: Duration = Duration::from_secs(1);

/// One event as subscribers receive it (the SSE `data`; its `id` is `id`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Position in the log (the SSE id to resume after).
    pub id: i64,
    /// `proposal.submitted`, `task.claimed`, `decision.recorded`, … (docs/audit.md).
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// When it was committed (RFC 3339).
    pub time: String,
    /// Who caused it (`user:…`, `system:…`, `loopgate`).
    pub actor: String,
    /// What it is about: a proposal, system, user, key or policy id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The proposal concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proposal: Option<String>,
    /// The task concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// The proposal's system.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The review group of the proposal's task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The entry's data: ids, digests, salted hashes.
    pub data: loopgate_store::EventData,
}

impl From<StoredEvent> for Event {
    fn from(row: StoredEvent) -> Event {
        let proposal = row.system.as_ref().and(row.subject.clone());
        let task = row.data.task();
        Event {
            id: row.seq,
            kind: row.kind,
            time: row.time.to_rfc3339(),
            actor: row.actor,
            subject: row.subject,
            proposal,
            task,
            system: row.system,
            group: row.group,
            data: row.data,
        }
    }
}

/// An event with its SSE frame, encoded once for every subscriber.
#[derive(Debug)]
pub(crate) struct Published {
    pub(crate) event: Event,
    /// `id: <id>\ndata: <json>\n\n`
    pub(crate) frame: Bytes,
}

impl From<StoredEvent> for Published {
    fn from(row: StoredEvent) -> Published {
        let event = Event::from(row);
        let json = serde_json::to_string(&event).unwrap_or_else(|_| "{}".to_owned());
        let frame = Bytes::from(format!("id: {}\ndata: {json}\n\n", event.id));
        Published { event, frame }
    }
}

/// The events of one flush, as one channel's subscribers receive them.
#[derive(Debug)]
pub(crate) struct Batch {
    /// In log order, never empty.
    pub(crate) events: Vec<Arc<Published>>,
    /// Every frame of `events` back to back: what a subscriber that wants
    /// them all writes as it is (one buffer shared by all of them).
    pub(crate) frames: Bytes,
}

impl Batch {
    fn new(events: Vec<Arc<Published>>) -> Arc<Batch> {
        let mut frames = BytesMut::with_capacity(events.iter().map(|e| e.frame.len()).sum());
        for event in &events {
            frames.extend_from_slice(&event.frame);
        }
        Arc::new(Batch {
            events,
            frames: frames.freeze(),
        })
    }

    /// The position of its first event.
    pub(crate) fn first(&self) -> i64 {
        self.events.first().map_or(i64::MAX, |e| e.event.id)
    }

    /// The position of its last event.
    pub(crate) fn last(&self) -> i64 {
        self.events.last().map_or(i64::MIN, |e| e.event.id)
    }
}

type Channel = broadcast::Sender<Arc<Batch>>;

/// The process's fan-out: a wake-up for the tail and the channels.
///
/// Subscribers scoped to one system (a system's own key, or `?system=`)
/// listen on that system's channel and are not woken for other systems'
/// events; the others listen on the channel of every event.
#[derive(Clone)]
pub(crate) struct Bus {
    wake: Arc<Notify>,
    /// Wakes the webhook dispatcher.
    pub(crate) webhooks: Arc<Notify>,
    /// Wakes the notifier (email, Slack, Teams).
    pub(crate) notifier: Arc<Notify>,
    /// Wakes the audit sequencer (on PostgreSQL events wait for it before
    /// anyone can read them).
    pub(crate) sequencer: Arc<Notify>,
    everything: Channel,
    systems: Arc<std::sync::Mutex<HashMap<String, Channel>>>,
    /// Held while subscribing, and by the tail while it skips ahead with
    /// nobody subscribed: a subscriber either came before the skip (and the
    /// tail does not skip) or after it (and reads what was skipped from the
    /// store).
    gate: Arc<tokio::sync::Mutex<()>>,
    /// Other processes write to the same database (PostgreSQL replicas):
    /// the tail then reads every event, to wake this process's waiters and
    /// refresh its caches on others' changes.
    shared: Arc<AtomicBool>,
}

impl Default for Bus {
    fn default() -> Bus {
        Bus {
            wake: Arc::default(),
            webhooks: Arc::default(),
            notifier: Arc::default(),
            sequencer: Arc::default(),
            everything: broadcast::channel(CAPACITY).0,
            systems: Arc::default(),
            gate: Arc::default(),
            shared: Arc::default(),
        }
    }
}

impl Bus {
    /// Something was committed: have the tail read it now.
    pub(crate) fn wake(&self) {
        self.readers();
        self.sequencer.notify_one();
    }

    /// The log grew: those who read it.
    fn readers(&self) {
        self.wake.notify_one();
        self.webhooks.notify_one();
        self.notifier.notify_one();
    }

    /// The shared database's log grew by another's hand (PostgreSQL: a
    /// sequencer gave positions to committed events).
    pub(crate) fn foreign_commit(&self) {
        self.shared.store(true, Ordering::Relaxed);
        self.readers();
    }

    /// Every batch the tail publishes from now on: those of one system's
    /// events, or of all events.
    pub(crate) async fn subscribe(&self, system: Option<&str>) -> broadcast::Receiver<Arc<Batch>> {
        let _gate = self.gate.lock().await;
        match system {
            None => self.everything.subscribe(),
            Some(system) => match self.systems.lock() {
                Ok(mut systems) => systems
                    .entry(system.to_owned())
                    .or_insert_with(|| broadcast::channel(SYSTEM_CAPACITY).0)
                    .subscribe(),
                // Unreachable (nothing panics while holding it); the
                // subscriber then filters the whole stream.
                Err(_) => self.everything.subscribe(),
            },
        }
    }

    /// Whether anyone listens.
    fn listening(&self) -> bool {
        0 < self.everything.receiver_count()
            || self
                .systems
                .lock()
                .is_ok_and(|systems| systems.values().any(|c| 0 < c.receiver_count()))
    }

    /// Hands `events` to the channels that have listeners (each system's
    /// channel its own events) and drops the channels nobody listens to.
    fn publish(&self, events: Vec<Arc<Published>>) {
        if events.is_empty() {
            return;
        }
        if let Ok(mut systems) = self.systems.lock() {
            systems.retain(|_, channel| 0 < channel.receiver_count());
            if !systems.is_empty() {
                let mut split: HashMap<&str, Vec<Arc<Published>>> = HashMap::new();
                for published in &events {
                    if let Some(system) = published.event.system.as_deref()
                        && systems.contains_key(system)
                    {
                        split.entry(system).or_default().push(Arc::clone(published));
                    }
                }
                for (system, events) in split {
                    if let Some(channel) = systems.get(system) {
                        let _ = channel.send(Batch::new(events));
                    }
                }
            }
        }
        if 0 < self.everything.receiver_count() {
            let _ = self.everything.send(Batch::new(events));
        }
    }

    /// With nobody subscribed, the position of the newest event, read
    /// without reading the events; `None` when someone listens.
    async fn skip(&self, app: &AppState) -> Option<Result<i64, loopgate_store::StoreError>> {
        if self.listening() || self.shared.load(Ordering::Relaxed) {
            return None;
        }
        let _gate = self.gate.lock().await;
        if self.listening() {
            return None;
        }
        Some(app.store.last_event_seq().await)
    }
}

/// Starts the tail; it stops at shutdown.
///
/// It publishes what it read at most once per `FLUSH`: under load each
/// subscriber is woken, and writes, once per flush for all the events of
/// that time rather than once per commit. On a database shared with other
/// replicas it reads as soon as it is woken (waiters of other replicas'
/// decisions must not wait); alone, it reads at most once per `FLUSH` too.
pub(crate) fn spawn(app: AppState) -> JoinHandle<()> {
    tokio::spawn(async move {
        let bus = app.bus.clone();
        let mut last = loop {
            match app.store.last_event_seq().await {
                Ok(seq) => break seq,
                Err(error) => {
                    tracing::warn!(%error, "event stream cannot start yet; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(POLL) => (),
                        () = app.shutdown.cancelled() => return,
                    }
                }
            }
        };
        let mut held: Vec<Arc<Published>> = Vec::new();
        let mut flushed: Option<Instant> = None;
        let mut backoff = crate::limits::Backoff::new(FLUSH, Duration::from_secs(5));
        loop {
            let read_at = Instant::now();
            let mut failed = false;
            loop {
                match bus.skip(&app).await {
                    Some(Ok(newest)) => {
                        last = newest;
                        held.clear();
                        break;
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, "event stream read failed; retrying");
                        failed = true;
                        break;
                    }
                    None => (),
                }
                match app.store.events_after(last, PAGE).await {
                    Ok(rows) => {
                        let full = rows.len() == PAGE as usize;
                        let shared = bus.shared.load(Ordering::Relaxed);
                        let listening = bus.listening();
                        for row in rows {
                            last = row.seq;
                            if shared {
                                follow(&app, &row).await;
                            }
                            if listening {
                                // Only resolutions are traced, and only when traces are on.
                                let traced = (row.kind == EventKind::ProposalResolved
                                    && app.traces.is_on())
                                .then(|| (row.time, row.trace_context.clone()));
                                let published = Published::from(row);
                                if let Some((time, trace)) = traced {
                                    streamed(&app, &published, time, trace.as_deref());
                                }
                                held.push(Arc::new(published));
                            }
                        }
                        if !full {
                            break;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "event stream read failed; retrying");
                        failed = true;
                        break;
                    }
                }
            }
            if failed {
                tokio::select! {
                    () = tokio::time::sleep(backoff.failed()) => (),
                    () = app.shutdown.cancelled() => return,
                }
            } else {
                backoff.succeeded();
            }
            let due = flushed.map_or(Duration::ZERO, |at| FLUSH.saturating_sub(at.elapsed()));
            if !held.is_empty() && due.is_zero() {
                bus.publish(std::mem::take(&mut held));
                flushed = Some(Instant::now());
            }
            let pause = match held.is_empty() {
                true => POLL,
                false => due,
            };
            tokio::select! {
                () = bus.wake.notified() => (),
                () = tokio::time::sleep(pause) => (),
                () = app.shutdown.cancelled() => return,
            }
            // The tail reads at most once per `FLUSH` too: what commits
            // meanwhile waits for the next read (one store read per flush,
            // not per commit). Beside other replicas as well: their waiters
            // wake from the commit's own notification
            // (`Store::watch_settled`), not from this read, and a cache
            // refreshed 5 ms later is as good; each read is a PostgreSQL
            // transaction, and reading on every commit of every replica was
            // a third of the database's transactions at half of peak load.
            let rest = FLUSH.saturating_sub(read_at.elapsed());
            if !rest.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(rest) => (),
                    () = app.shutdown.cancelled() => return,
                }
            }
        }
    })
}

/// What another replica's change means for this process: its waiters of a
/// settled proposal wake, and its caches of policies, systems and
/// credentials refresh at once instead of on expiry.
async fn follow(app: &AppState, row: &StoredEvent) {
    use EventKind as K;
    match row.kind {
        K::ProposalResolved | K::ProposalCancelled => {
            if let Some(id) = row.subject.as_deref().and_then(ProposalId::parse) {
                app.waiters.resolved(&id, None);
            }
        }
        K::PolicyPublished
        | K::PolicyActivated
        | K::PolicyShadowStarted
        | K::PolicyShadowStopped => {
            let _lock = app.policy_lock.lock().await;
            if let Err(error) = app.reload_policies().await {
                tracing::warn!(%error, "policies changed by another replica could not be loaded");
            }
        }
        K::SystemCreated
        | K::SystemUpdated
        | K::SystemPaused
        | K::SystemResumed
        | K::WebhookSet
        | K::WebhookRemoved => app.systems.clear(),
        K::UserCreated
        | K::UserUpdated
        | K::UserPasswordSet
        | K::UserDisabled
        | K::UserEnabled
        | K::UserAwaySet
        | K::KeyCreated
        | K::KeyRevoked => app.credentials_changed(),
        // The leader's notifier reads these from the store; a login or a
        // comment changes nothing another replica holds.
        // Group settings are read in the writing transaction, never cached.
        K::TaskSlaWarning
        | K::GroupNotificationsSet
        | K::GroupUpdated
        | K::UserBreakGlassLogin
        | K::CommentAdded => (),
        // Grants are read in the writing transaction, never cached: a
        // revocation holds on every replica at once.
        K::GrantCreated | K::GrantUsed | K::GrantRevoked | K::GrantExpired => (),
        K::ProposalSubmitted
        | K::ProposalRouted
        | K::ProposalOverridden
        | K::ProposalErased
        | K::TaskCreated
        | K::TaskClaimed
        | K::TaskReleased
        | K::TaskEscalated
        | K::TaskExpired
        | K::TaskAssigned
        | K::TaskReturned
        | K::DecisionRecorded => (),
    }
}

/// Whether `principal` may see `event`: a system sees its own proposals'
/// events; admins and auditors see everything; a reviewer sees the events
/// of the proposals whose task is in one of their groups.
pub(crate) fn visible(principal: &Principal, event: &Event) -> bool {
    match principal {
        Principal::System(id) => event.system.as_deref() == Some(id.as_str()),
        Principal::User(user) => {
            sees_everything(user)
                || (user.roles.contains(&Role::Reviewer)
                    && event
                        .group
                        .as_ref()
                        .is_some_and(|group| user.groups.contains(group)))
        }
    }
}

/// Admins and auditors see every event.
pub(crate) fn sees_everything(user: &UserRecord) -> bool {
    user.roles
        .iter()
        .any(|r| matches!(r, Role::Admin | Role::Auditor))
}

/// The span of a resolution published on the event stream: from its commit
/// to its publication.
fn streamed(
    app: &AppState,
    published: &Published,
    committed: loopgate_core::Timestamp,
    trace: Option<&str>,
) {
    let Some(proposal) = published.event.proposal.as_deref() else {
        return;
    };
    let took = app.clock.now().millis().saturating_sub(committed.millis());
    app.traces.delivered(crate::otel::Delivery {
        trace,
        proposal,
        how: "event_stream",
        start: committed,
        took: Duration::from_millis(u64::try_from(took).unwrap_or(0)),
        attributes: vec![opentelemetry::KeyValue::new(
            "loopgate.event.id",
            published.event.id,
        )],
        error: None,
    });
}

#[cfg(test)]
mod tests {
    use loopgate_core::{SystemId, Timestamp, UserId};

    use super::*;

    fn user(roles: &[Role], groups: &[&str]) -> Principal {
        Principal::User(UserRecord {
            id: UserId::from_unique("1"),
            username: "u".into(),
            roles: roles.to_vec(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            created_at: Timestamp::from_millis(0),
            disabled_at: None,
            email: None,
            slack_user_id: None,
            notify: Default::default(),
            source: loopgate_core::UserSource::Local,
            away_until: None,
            delegate: None,
        })
    }

    #[test]
    fn each_principal_sees_its_share() {
        let event = Event::from(StoredEvent {
            seq: 7,
            time: Timestamp::from_millis(0),
            actor: "user:ann".into(),
            kind: EventKind::TaskClaimed,
            subject: Some("prp_1".into()),
            data: loopgate_store::EventData::parse(r#"{"task":"tsk_1"}"#.to_owned()).unwrap(),
            system: Some("fraud".into()),
            group: Some("analysts".into()),
            trace_context: None,
        });
        assert_eq!(
            (event.proposal.as_deref(), event.task.as_deref()),
            (Some("prp_1"), Some("tsk_1"))
        );
        let fraud = SystemId::parse("fraud").unwrap();
        let other = SystemId::parse("other").unwrap();
        assert!(visible(&Principal::System(fraud), &event));
        assert!(!visible(&Principal::System(other), &event));
        assert!(visible(&user(&[Role::Auditor], &[]), &event));
        assert!(visible(&user(&[Role::Reviewer], &["analysts"]), &event));
        assert!(!visible(&user(&[Role::Reviewer], &["medics"]), &event));
        assert!(!visible(
            &user(&[Role::PolicyAuthor], &["analysts"]),
            &event
        ));
        let admin_only = Event {
            system: None,
            group: None,
            ..event
        };
        assert!(!visible(
            &user(&[Role::Reviewer], &["analysts"]),
            &admin_only
        ));
        assert!(visible(&user(&[Role::Admin], &[]), &admin_only));
    }
}
