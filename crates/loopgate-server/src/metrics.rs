//! Prometheus metrics, kept in atomics and written in the text exposition
//! format on `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use loopgate_core::routing::EvaluationError;
use loopgate_core::{ProposalStatus, Route, Verdict};

/// Distinct (set, policy, kind) series kept; beyond it new ones are dropped
/// (policy ids come from policy text, which changes over time).
const MAX_POLICY_ERROR_SERIES: usize = 1_000;

const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Counters and histograms.
#[derive(Default)]
pub(crate) struct Metrics {
    /// By route (3) × status (4).
    proposals: [[AtomicU64; 4]; 3],
    /// Resolutions by outcome (4).
    resolutions: [AtomicU64; 4],
    /// Decisions by verdict (4).
    decisions: [AtomicU64; 4],
    decision_latency: DecisionLatency,
    /// Entries the sequencer appended to the audit log.
    audit_entries: AtomicU64,
    /// Evaluation errors by (set: live or shadow, policy, kind).
    policy_errors: Mutex<BTreeMap<(&'static str, String, String), u64>>,
    /// Responses 429 (a limit) and 503 (busy, draining, writes failing).
    limited: [AtomicU64; 2],
    /// Attempts at notifications by channel (4) × result (sent, retry,
    /// failed).
    notifications: [[AtomicU64; 3]; 4],
}

/// The decisions' latency, in buckets up to `BUCKETS`.
struct DecisionLatency(loopgate_store::DurationCounts);

impl Default for DecisionLatency {
    fn default() -> DecisionLatency {
        DecisionLatency(loopgate_store::DurationCounts::new(&BUCKETS))
    }
}

impl Metrics {
    pub(crate) fn proposal(&self, route: Route, status: ProposalStatus) {
        if let Some(counter) = self
            .proposals
            .get(index(Route::ALL, route))
            .and_then(|row| row.get(index(ProposalStatus::ALL, status)))
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn resolution(&self, outcome: ProposalStatus) {
        if let Some(counter) = self.resolutions.get(index(ProposalStatus::ALL, outcome)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn decision(&self, verdict: Verdict, latency: Duration) {
        if let Some(counter) = self.decisions.get(index(Verdict::ALL, verdict)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        self.decision_latency.0.record(latency);
    }

    /// Counts the evaluation errors of one routing by the `set` (`live` or `shadow`).
    pub(crate) fn policy_errors(&self, set: &'static str, errors: &[EvaluationError]) {
        if errors.is_empty() {
            return;
        }
        let Ok(mut counts) = self.policy_errors.lock() else {
            return;
        };
        for error in errors {
            let key = (set, error.policy.clone(), error.kind.clone());
            let room = counts.len() < MAX_POLICY_ERROR_SERIES;
            match counts.get_mut(&key) {
                Some(n) => *n += 1,
                None if room => drop(counts.insert(key, 1)),
                None => (),
            }
        }
    }

    /// Counts a response that a limit or a busy server refused.
    pub(crate) fn response(&self, status: u16) {
        let slot = match status {
            429 => 0,
            503 => 1,
            _ => return,
        };
        if let Some(counter) = self.limited.get(slot) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn audit_appended(&self, n: u64) {
        self.audit_entries.fetch_add(n, Ordering::Relaxed);
    }

    /// The exposition text; `queue` is open tasks per group, `waiters` the open long-polls.
    /// An attempt at a notification: `result` is `sent`, `retry` or
    /// `failed`.
    pub(crate) fn notification(&self, channel: loopgate_core::Channel, result: &str) {
        let slot = match result {
            "sent" => 0,
            "retry" => 1,
            _ => 2,
        };
        if let Some(counter) = self
            .notifications
            .get(index(loopgate_core::Channel::ALL, channel))
            .and_then(|row| row.get(slot))
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn render(&self, queue: &[(String, u64)], waiters: usize) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP loopgate_proposals_total Proposals accepted, by route and first status.\n",
        );
        out.push_str("# TYPE loopgate_proposals_total counter\n");
        for (route, row) in Route::ALL.iter().zip(&self.proposals) {
            for (status, counter) in ProposalStatus::ALL.iter().zip(row) {
                let n = counter.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "loopgate_proposals_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP loopgate_notification_attempts_total Attempts at messages to people, by channel and result (sent; retry: failed, to be tried again; failed: given up or never sendable).\n");
        out.push_str("# TYPE loopgate_notification_attempts_total counter\n");
        for (channel, row) in loopgate_core::Channel::ALL.iter().zip(&self.notifications) {
            for (result, counter) in ["sent", "retry", "failed"].iter().zip(row) {
                let _ = writeln!(
                    out,
                    "loopgate_notification_attempts_total{{channel=\"{channel}\",result=\"{result}\"}} {}",
                    counter.load(Ordering::Relaxed)
                );
            }
        }
        out.push_str("# HELP loopgate_limited_responses_total Requests refused by a limit (429) or because the server was busy, draining or unable to write (503).\n");
        out.push_str("# TYPE loopgate_limited_responses_total counter\n");
        for (status, counter) in ["429", "503"].iter().zip(&self.limited) {
            let _ = writeln!(
                out,
                "loopgate_limited_responses_total{{status=\"{status}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP loopgate_resolutions_total Proposals resolved, by outcome.\n");
        out.push_str("# TYPE loopgate_resolutions_total counter\n");
        for (outcome, counter) in ProposalStatus::ALL.iter().zip(&self.resolutions).skip(1) {
            let _ = writeln!(
                out,
                "loopgate_resolutions_total{{outcome=\"{outcome}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP loopgate_decisions_total Reviewer decisions, by verdict.\n");
        out.push_str("# TYPE loopgate_decisions_total counter\n");
        for (verdict, counter) in Verdict::ALL.iter().zip(&self.decisions) {
            let _ = writeln!(
                out,
                "loopgate_decisions_total{{verdict=\"{verdict}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        render_histogram(
            &mut out,
            (
                "loopgate_decision_duration_seconds",
                "Time to record a decision durably.",
            ),
            self.decision_latency.0.snapshot(),
        );
        out.push_str("# HELP loopgate_queue_depth Open review tasks, by group.\n");
        out.push_str("# TYPE loopgate_queue_depth gauge\n");
        for (group, n) in queue {
            let _ = writeln!(out, "loopgate_queue_depth{{group=\"{group}\"}} {n}");
        }
        out.push_str("# HELP loopgate_waiting_proposals Proposals with open long-polls.\n");
        out.push_str("# TYPE loopgate_waiting_proposals gauge\n");
        let _ = writeln!(out, "loopgate_waiting_proposals {waiters}");
        out.push_str("# HELP loopgate_audit_entries_total Entries appended to the audit log by this process.\n");
        out.push_str("# TYPE loopgate_audit_entries_total counter\n");
        let _ = writeln!(
            out,
            "loopgate_audit_entries_total {}",
            self.audit_entries.load(Ordering::Relaxed)
        );
        out.push_str("# HELP loopgate_policy_errors_total Policy evaluations that failed (each counted restrictively), by set, policy and kind.\n");
        out.push_str("# TYPE loopgate_policy_errors_total counter\n");
        if let Ok(counts) = self.policy_errors.lock() {
            for ((set, policy, kind), n) in counts.iter() {
                let _ = writeln!(
                    out,
                    "loopgate_policy_errors_total{{set=\"{set}\",policy=\"{}\",kind=\"{}\"}} {n}",
                    label(policy),
                    label(kind)
                );
            }
        }
        out
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn index<T: PartialEq>(all: &[T], value: T) -> usize {
    all.iter().position(|it| *it == value).unwrap_or(0)
}

/// The store's write figures: jobs, their round trips to PostgreSQL (0 on
/// SQLite) and the attempts run again after losing a race.
pub(crate) fn render_writes(out: &mut String, stats: loopgate_store::WriteStats) {
    for (name, help, value) in [
        (
            "loopgate_db_write_jobs_total",
            "Write transactions' jobs run to their end (committed or refused).",
            stats.jobs,
        ),
        (
            "loopgate_db_write_round_trips_total",
            "Round trips of those jobs to PostgreSQL (0 on SQLite); divided by the jobs, round trips per write.",
            stats.round_trips,
        ),
        (
            "loopgate_db_write_retries_total",
            "Write attempts run again after losing a race to a concurrent transaction (PostgreSQL).",
            stats.retries,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    for (name, help, durations) in [
        (
            "loopgate_db_write_wait_seconds",
            "Time a write waited for a writer to begin it (on SQLite, for the group before it to commit).",
            stats.waited,
        ),
        (
            "loopgate_db_write_seconds",
            "Time from a writer beginning a write to its answer: its statements, its commit (on SQLite its group's) and runs again after a lost race.",
            stats.ran,
        ),
    ] {
        render_histogram(out, (name, help), durations);
    }
}

/// One histogram in the text format: its cumulative buckets at their
/// bounds, `+Inf`, the sum in seconds and the count.
fn render_histogram(
    out: &mut String,
    (name, help): (&str, &str),
    durations: loopgate_store::Durations,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (bound, n) in durations.bounds.iter().zip(durations.buckets) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
    }
    let count = durations.count;
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let sum = durations.sum_micros as f64 / 1e6;
    let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
}
