//! What a committed change means for this process, in one place: which
//! waiters wake, what the metrics count, and when the event bus reads the
//! log again. Handlers and timers say what they committed; they do not
//! repeat these effects. (Changes other replicas commit reach this process
//! through the event tail, `events::follow`.)

use std::time::Duration;

use loopgate_core::Verdict;
use loopgate_core::review::Effect;
use loopgate_store::{ProposalRecord, TimerOutcome};

use crate::AppState;

/// A change this process committed.
pub(crate) enum Committed<'a> {
    /// A new proposal was stored (not an idempotent replay).
    Admitted(&'a ProposalRecord),
    /// A reviewer took or gave back a task's lease.
    LeaseMoved,
    /// A reviewer's decision was recorded; `resolved` is the proposal when
    /// the decision settled it.
    Decided {
        /// The verdict.
        verdict: Verdict,
        /// How long the request took until the commit.
        took: Duration,
        /// The settled proposal, if this decision settled it.
        resolved: Option<&'a ProposalRecord>,
    },
    /// The submitter cancelled a pending proposal.
    Cancelled(&'a ProposalRecord),
    /// Deadlines ran (escalations, expiries, timeouts).
    TimersRan(&'a [TimerOutcome]),
    /// A webhook delivery was queued again.
    Requeued,
}

impl AppState {
    /// Applies the effects of `change`, which is committed.
    pub(crate) fn committed(&self, change: Committed<'_>) {
        match change {
            Committed::Admitted(record) => {
                self.metrics.proposal(record.route, record.status);
                if record.status.is_terminal() {
                    self.metrics.resolution(record.status);
                }
            }
            Committed::LeaseMoved | Committed::Requeued => (),
            Committed::Decided {
                verdict,
                took,
                resolved,
            } => {
                if let Some(record) = resolved {
                    self.waiters.resolved(&record.id, Some(record));
                    self.metrics.resolution(record.status);
                }
                self.metrics.decision(verdict, took);
            }
            Committed::Cancelled(record) => {
                self.metrics.resolution(record.status);
                self.waiters.resolved(&record.id, Some(record));
            }
            Committed::TimersRan(outcomes) => {
                if outcomes.is_empty() {
                    return;
                }
                let now = self.clock.now();
                for outcome in outcomes {
                    let trace = outcome.trace_context.as_deref();
                    if outcome.effect == Effect::Escalated {
                        let (before, after) = (Some(&outcome.before), &outcome.after);
                        self.traces.escalated(trace, before, after, "deadline", now);
                    }
                    if !outcome.after.state.is_active() {
                        self.traces.review_ended(trace, &outcome.after, now);
                    }
                    if outcome.effect == Effect::Resolved {
                        self.waiters.resolved(&outcome.proposal_id, None);
                        self.metrics.resolution(outcome.status);
                    }
                }
            }
        }
        // Every change above wrote audit events: the bus reads them.
        self.bus.wake();
    }
}
