//! The loop the leader's outbox workers share (the webhook dispatcher and
//! the notifier): only the leader queues and sends; history is pruned about
//! once per `POLL`; a step runs at most every `STEP` however often commits
//! wake the worker (each step costs store calls, so under load commits share
//! steps); a failing store call backs off; between steps the worker waits
//! for a send to finish, a wake-up, `POLL`, or shutdown (which aborts what
//! is in flight: it stays pending and goes out after the restart).

use std::time::{Duration, Instant};

use loopgate_store::StoreError;
use tokio::sync::Notify;
use tokio::task::{Id, JoinError, JoinSet};

use crate::AppState;

/// Shortest time between two steps.
pub(crate) const STEP: Duration = Duration::from_millis(5);
/// How often a worker looks for work nobody woke it for (retries that fell
/// due, other processes' events, deadlines).
pub(crate) const POLL: Duration = Duration::from_secs(1);

/// A worker that sends messages from an outbox.
pub(crate) trait Worker {
    /// What a sending task returns.
    type Done: Send + 'static;
    /// The worker's name in logs.
    const NAME: &'static str;

    fn app(&self) -> &AppState;
    fn sending(&mut self) -> &mut JoinSet<Self::Done>;
    /// Queues, records and sends what is due.
    async fn step(&mut self) -> Result<(), StoreError>;
    /// Drops old history.
    async fn prune(&self);
    /// Takes a finished sending task's result.
    fn finish(&mut self, done: Result<(Id, Self::Done), JoinError>);
}

/// Runs `worker` until shutdown.
pub(crate) async fn run<W: Worker>(worker: &mut W, wake: &Notify) {
    let mut pruned = Instant::now();
    let mut stepped: Option<Instant> = None;
    let mut failures =
        crate::limits::Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    let shutdown = worker.app().shutdown.clone();
    loop {
        // Only the leader queues and sends (messages in flight when
        // leadership moves finish and are recorded).
        let leads = worker.app().store.leads();
        if leads && POLL <= pruned.elapsed() {
            worker.prune().await;
            pruned = Instant::now();
        }
        if !leads {
            tokio::select! {
                () = tokio::time::sleep(POLL) => continue,
                () = shutdown.cancelled() => return,
            }
        }
        let pause = stepped.map_or(Duration::ZERO, |at| STEP.saturating_sub(at.elapsed()));
        if !pause.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(pause) => (),
                () = shutdown.cancelled() => {
                    worker.sending().abort_all();
                    return;
                }
            }
            finish_ready(worker);
        }
        stepped = Some(Instant::now());
        match worker.step().await {
            Ok(()) => failures.succeeded(),
            Err(error) => {
                let wait = failures.failed();
                tracing::warn!(%error, retry_in = ?wait, worker = W::NAME, "a store call failed");
                tokio::select! {
                    () = tokio::time::sleep(wait) => (),
                    () = shutdown.cancelled() => return,
                }
            }
        }
        let busy = !worker.sending().is_empty();
        tokio::select! {
            Some(done) = worker.sending().join_next_with_id(), if busy => {
                worker.finish(done);
                finish_ready(worker);
            }
            () = wake.notified() => (),
            () = tokio::time::sleep(POLL) => (),
            () = shutdown.cancelled() => {
                worker.sending().abort_all();
                return;
            }
        }
    }
}

/// Something a worker does at most once per `POLL` unless it must do it
/// now: the notifier's look for SLA warnings (which scans open tasks), and
/// both workers' read of what is due. That read is forced after a step that
/// queued messages or recorded finished ones (either can make some due at
/// once); otherwise retries and paused endpoints fall due with time, and a
/// step woken by a commit that queued and recorded nothing reads nothing
/// more: an idle worker's step, with no webhook or notification configured,
/// is one store read instead of two (on PostgreSQL, a transaction each).
#[derive(Default)]
pub(crate) struct OncePerPoll(Option<Instant>);

impl OncePerPoll {
    /// Whether to do it in this step (when `forced`, or `POLL` after the
    /// last time); if so, noted as done now.
    pub(crate) fn due(&mut self, forced: bool) -> bool {
        let due = forced || self.0.is_none_or(|at| POLL <= at.elapsed());
        if due {
            self.0 = Some(Instant::now());
        }
        due
    }
}

/// Every sending task that has already finished, without waiting.
pub(crate) fn finish_ready<W: Worker>(worker: &mut W) {
    while let Some(done) = worker.sending().try_join_next_with_id() {
        worker.finish(done);
    }
}
