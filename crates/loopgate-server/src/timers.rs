//! The deadline worker: escalates overdue tasks and applies `on_timeout`,
//! from a durable schedule (`tasks.due_at`), so deadlines survive restarts;
//! and erases payloads whose system's retention period has run out.

use std::time::Duration;

use loopgate_store::StoreError;
use tokio::task::JoinHandle;

use crate::AppState;
use crate::committed::Committed;

/// What wakes the worker.
enum Wake {
    Tick,
    Shutdown,
}

/// Starts the worker; it stops at shutdown.
pub(crate) fn spawn(app: AppState) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(app.config.timer_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut backoff =
            crate::limits::Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
        loop {
            let wake = tokio::select! {
                _ = interval.tick() => Wake::Tick,
                () = app.shutdown.cancelled() => Wake::Shutdown,
            };
            match wake {
                Wake::Shutdown => return,
                // Only the leader runs deadlines and retention.
                Wake::Tick if !app.store.leads() => (),
                Wake::Tick => match run_due(&app).await {
                    Ok(_) => backoff.succeeded(),
                    Err(error) => {
                        let wait = backoff.failed();
                        tracing::warn!(%error, retry_in = ?wait, "deadline run failed");
                        tokio::select! {
                            () = tokio::time::sleep(wait) => (),
                            () = app.shutdown.cancelled() => return,
                        }
                    }
                },
            }
        }
    })
}

/// Runs every deadline due now and wakes the waiters of resolved proposals.
/// Returns the number of tasks changed. Tests call this after moving the clock.
pub async fn run_due(app: &AppState) -> Result<usize, StoreError> {
    let mut total = 0;
    loop {
        let now = app.clock.now();
        let outcomes = app.store.run_timers(now, 500).await?;
        total += outcomes.len();
        app.committed(Committed::TimersRan(&outcomes));
        if outcomes.len() < 500 {
            // Retention: erase the payloads whose time has run out.
            while app.store.erase_expired(now, 500).await?.len() == 500 {}
            return Ok(total);
        }
    }
}
