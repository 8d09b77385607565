//! Notifications to people: email, Slack and Microsoft Teams
//! (docs/notifications.md), delivered like webhooks from a durable outbox.
//!
//! The store turns events of the log into messages (`task.created`,
//! `task.escalated`, `task.sla_warning`, `task.expired` for the groups that
//! asked, and a rewrite of a task's Slack messages once something happens
//! to it), and logs SLA warnings. One notifier task per process (the
//! leader's) queues them, sends what is due with a bounded number in
//! flight, and records every attempt; a failure is retried with backoff
//! until the webhook give-up window runs out, and Slack's `Retry-After` is
//! honoured for every Slack message. Nothing here runs on a request's path:
//! a dead mail server or workspace never slows the core loop.
//!
//! Messages carry no payload at rest: each is rendered from the task and its
//! proposal when it is sent (so a blind task never shows its output).

pub(crate) mod email;
pub(crate) mod links;
pub mod slack;
mod teams;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use loopgate_core::review::Task;
use loopgate_core::{Channel, DecidedBy, EventKind, ProposalStatus, TaskId, Timestamp};
use loopgate_store::{
    AttemptResult, DeliveryState, DueNotification, NotificationResult, ProposalRecord, StoreError,
};
use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

use crate::AppState;

/// Messages in flight at once.
const IN_FLIGHT: usize = 64;
/// Events the cursor passes per store call.
const ENQUEUE_PAGE: u32 = 1000;
/// Messages pruned per store call.
const PRUNE_PAGE: u32 = 1000;
/// The longest text of one output value, subject or explanation shown.
const MAX_VALUE: usize = 300;
/// Output fields shown at most.
const MAX_FIELDS: usize = 8;

/// Starts the notifier; it stops at shutdown (messages in flight then stay
/// pending and go out after the restart).
pub(crate) fn spawn(app: AppState, wake: Arc<Notify>) -> JoinHandle<()> {
    tokio::spawn(async move {
        // Teams workflows are URLs an admin set: fenced like webhooks.
        // (The SMTP transport and the Slack client are the server's, built
        // at start from its configuration.)
        let teams = match crate::outbound::client(&app).build() {
            Ok(http) => http,
            Err(error) => {
                tracing::error!(%error, "notifications cannot start: no HTTP client");
                return;
            }
        };
        let mut notifier = Notifier {
            app,
            teams,
            sending: JoinSet::new(),
            in_flight: HashSet::new(),
            finished: Vec::new(),
            slack_paused: None,
            warned: crate::outbox::OncePerPoll::default(),
            due_reads: crate::outbox::OncePerPoll::default(),
        };
        crate::outbox::run(&mut notifier, &wake).await;
    })
}

/// How a send went, for every message it covered.
struct Sent {
    results: Vec<NotificationResult>,
    /// Slack asked to wait until then.
    slack_wait: Option<Timestamp>,
}

struct Notifier {
    app: AppState,
    /// The HTTP client of Teams workflows.
    teams: reqwest::Client,
    sending: JoinSet<Sent>,
    /// Messages sent or recorded-to-be; the store still says pending.
    in_flight: HashSet<i64>,
    finished: Vec<NotificationResult>,
    slack_paused: Option<Timestamp>,
    /// When SLA warnings were last looked for (at most once per `POLL`:
    /// the look scans open tasks, commits come far more often).
    warned: crate::outbox::OncePerPoll,
    /// When it last read what is due.
    due_reads: crate::outbox::OncePerPoll,
}

impl crate::outbox::Worker for Notifier {
    type Done = Sent;
    const NAME: &'static str = "notifications";

    fn app(&self) -> &AppState {
        &self.app
    }

    fn sending(&mut self) -> &mut JoinSet<Sent> {
        &mut self.sending
    }

    async fn step(&mut self) -> Result<(), StoreError> {
        Notifier::step(self).await
    }

    async fn prune(&self) {
        Notifier::prune(self).await;
    }

    fn finish(&mut self, done: Result<(tokio::task::Id, Sent), tokio::task::JoinError>) {
        match done {
            Ok((_, sent)) => {
                if let Some(until) = sent.slack_wait {
                    self.slack_paused = Some(self.slack_paused.map_or(until, |at| at.max(until)));
                }
                self.finished.extend(sent.results);
            }
            // The messages stay in flight in memory until a restart: the
            // task cannot say which they were (it should not fail).
            Err(error) => tracing::error!(%error, "a notification task failed"),
        }
    }
}

impl Notifier {
    /// Queues new events' messages, records finished attempts, then sends
    /// what is due.
    async fn step(&mut self) -> Result<(), StoreError> {
        let store = self.app.store.clone();
        let now = self.app.clock.now();
        let results = std::mem::take(&mut self.finished);
        let ids: Vec<i64> = results.iter().map(|r| r.attempt.id).collect();
        let record = async {
            match results.is_empty() {
                true => Ok(()),
                false => store.record_notifications(results.clone()).await,
            }
        };
        let warn = self
            .warned
            .due(false)
            .then_some(self.app.config.sla_warning_share);
        let (passed, recorded) =
            tokio::join!(store.enqueue_notifications(now, warn, ENQUEUE_PAGE), record);
        if let Err(error) = recorded {
            // Recorded again at the next step (an attempt is counted once:
            // the write failed as a whole).
            self.finished = results;
            return Err(error);
        }
        let any_finished = !ids.is_empty();
        for id in ids {
            self.in_flight.remove(&id);
        }
        let passed = passed?;
        if passed == ENQUEUE_PAGE {
            while store.enqueue_notifications(now, None, ENQUEUE_PAGE).await? == ENQUEUE_PAGE {}
        }
        // An SLA warning queues its messages without passing an event: the
        // look for them (`warn`) counts as queueing.
        let queued = 0 < passed || warn.is_some();
        let room = IN_FLIGHT.saturating_sub(self.sending.len());
        if room == 0 || !self.due_reads.due(queued || any_finished) {
            return Ok(());
        }
        let mut skip = Vec::new();
        if self.slack_paused.is_some_and(|until| now < until) {
            skip.extend([Channel::Slack, Channel::SlackUpdate]);
        }
        let limit = u32::try_from(self.in_flight.len() + room * 8).unwrap_or(u32::MAX);
        let due = store.due_notifications(now, skip, limit).await?;
        for batch in batches(due, &self.in_flight) {
            if IN_FLIGHT <= self.sending.len() {
                break;
            }
            self.in_flight.extend(batch.iter().map(|d| d.id));
            let (app, teams) = (self.app.clone(), self.teams.clone());
            self.sending
                .spawn(async move { send(&app, &teams, batch).await });
        }
        Ok(())
    }

    async fn prune(&self) {
        let keep = i64::try_from(crate::webhooks::HISTORY.as_millis()).unwrap_or(i64::MAX);
        let before = Timestamp::from_millis(self.app.clock.now().millis().saturating_sub(keep));
        for _ in 0..10 {
            match self.app.store.prune_notifications(before, PRUNE_PAGE).await {
                Ok(n) if n == PRUNE_PAGE => (),
                Ok(_) => return,
                Err(error) => {
                    tracing::warn!(%error, "notification history could not be pruned");
                    return;
                }
            }
        }
    }
}

/// Due messages in sending units: a digest's messages of one target and
/// time together, every other message alone; none already in flight.
fn batches(due: Vec<DueNotification>, in_flight: &HashSet<i64>) -> Vec<Vec<DueNotification>> {
    let mut out = Vec::new();
    let mut digests: BTreeMap<(Channel, String, i64), Vec<DueNotification>> = BTreeMap::new();
    for item in due {
        if in_flight.contains(&item.id) {
            continue;
        }
        match item.digest_at {
            Some(at) => digests
                .entry((item.channel, item.target.clone(), at.millis()))
                .or_default()
                .push(item),
            None => out.push(vec![item]),
        }
    }
    out.extend(digests.into_values());
    out
}

/// What one attempt at a unit came to.
pub(crate) enum Outcome {
    /// Sent; Slack's `channel:ts` of a new message.
    Sent {
        status: Option<u16>,
        reference: Option<String>,
    },
    /// Not sent; retried unless the window ran out.
    Failed { status: Option<u16>, error: String },
    /// Slack said to wait (429).
    Wait { until: Timestamp, error: String },
    /// Cannot ever be sent (the channel is not configured, the group
    /// removed it): failed at once.
    Dropped(String),
}

async fn send(app: &AppState, teams: &reqwest::Client, batch: Vec<DueNotification>) -> Sent {
    let time = app.clock.now();
    let started = Instant::now();
    let outcome = match batch.first() {
        Some(first) => match first.channel {
            Channel::Email => match &app.mailer {
                Some(mailer) => email::send(app, mailer, &batch).await,
                None => Outcome::Dropped("email is not configured (smtp_url)".to_owned()),
            },
            Channel::Slack | Channel::SlackUpdate => match &app.slack {
                Some(api) => slack::send(app, api, first, &batch).await,
                None => Outcome::Dropped("Slack is not configured (slack_bot_token)".to_owned()),
            },
            Channel::Teams => teams::send(app, teams, first).await,
        },
        None => Outcome::Dropped("nothing to send".to_owned()),
    };
    let duration_ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
    let config = &app.config;
    let mut slack_wait = None;
    let results = batch
        .iter()
        .map(|due| {
            let (state, next_at, status, error, reference) = match &outcome {
                Outcome::Sent { status, reference } => (
                    DeliveryState::Delivered,
                    time,
                    *status,
                    None,
                    reference.clone(),
                ),
                Outcome::Dropped(error) => {
                    (DeliveryState::Failed, time, None, Some(error.clone()), None)
                }
                Outcome::Failed { .. } | Outcome::Wait { .. } => {
                    let (status, error, wait) = match &outcome {
                        Outcome::Wait { until, error } => {
                            slack_wait = Some(*until);
                            (Some(429), error.clone(), Some(*until))
                        }
                        Outcome::Failed { status, error } => (*status, error.clone(), None),
                        _ => (None, String::new(), None),
                    };
                    let delay = crate::webhooks::backoff(
                        config.webhook_retry_base,
                        due.attempts.saturating_add(1),
                    )
                    .min(config.webhook_retry_max);
                    let next_at = wait.unwrap_or(time.plus(delay));
                    match next_at <= due.window_start.plus(config.webhook_give_up) {
                        true => (DeliveryState::Pending, next_at, status, Some(error), None),
                        false => (DeliveryState::Failed, time, status, Some(error), None),
                    }
                }
            };
            NotificationResult {
                attempt: AttemptResult {
                    id: due.id,
                    time,
                    status,
                    error,
                    duration_ms,
                    state,
                    next_at,
                },
                reference,
            }
        })
        .collect();
    if let Some(first) = batch.first() {
        let result = match &outcome {
            Outcome::Sent { .. } => "sent",
            Outcome::Failed { .. } | Outcome::Wait { .. } => "retry",
            Outcome::Dropped(_) => "failed",
        };
        app.metrics.notification(first.channel, result);
    }
    if let Outcome::Failed { error, .. } | Outcome::Dropped(error) = &outcome {
        tracing::warn!(%error, channel = %batch.first().map_or("", |d| d.channel.as_str()),
            "a notification was not sent");
    }
    Sent {
        results,
        slack_wait,
    }
}

/// What a message says about a task: built from the store when it is sent.
#[derive(Debug, Clone)]
pub(crate) struct Summary {
    pub task: TaskId,
    pub kind: EventKind,
    pub group: String,
    pub system: String,
    pub action: String,
    pub subject: String,
    /// Up to [`MAX_FIELDS`] fields of the output; empty when blind.
    pub output: Vec<(String, String)>,
    pub confidence: Option<f64>,
    pub explanation: Option<String>,
    pub blind: bool,
    pub deadline: Option<Timestamp>,
    pub digest: loopgate_core::Digest,
    pub rationale_required: bool,
    /// Whether the task can still be decided.
    pub open: bool,
    /// What happened, once it did (`Approved by ann`).
    pub outcome: Option<String>,
    /// The task page (absolute with `public_url`).
    pub link: String,
}

impl Summary {
    /// The task and its proposal as the message shows them.
    pub(crate) async fn load(
        app: &AppState,
        task: &TaskId,
        kind: EventKind,
    ) -> Result<Option<Summary>, StoreError> {
        let Some(record) = app.store.task(task).await? else {
            return Ok(None);
        };
        let Some(proposal) = app.store.proposal(&record.task.proposal_id).await? else {
            return Ok(None);
        };
        Ok(Some(Summary::of(
            app,
            &record.task,
            &proposal,
            kind,
            app.clock.now(),
        )))
    }

    fn of(
        app: &AppState,
        task: &Task,
        proposal: &ProposalRecord,
        kind: EventKind,
        now: Timestamp,
    ) -> Summary {
        let blind = task.plan.blind && !proposal.status.is_terminal();
        let output = match (&proposal.output, blind) {
            (_, true) => Vec::new(),
            (Value::Object(fields), false) => fields
                .iter()
                .take(MAX_FIELDS)
                .map(|(k, v)| (clip(k, 60), clip(&compact(v), MAX_VALUE)))
                .collect(),
            (other, false) => vec![("output".to_owned(), clip(&compact(other), MAX_VALUE))],
        };
        let explanation = proposal.explanation.as_ref().map(|e| match e {
            Value::String(text) => clip(text, MAX_VALUE),
            Value::Object(map) => match map.get("summary").and_then(Value::as_str) {
                Some(text) => clip(text, MAX_VALUE),
                None => clip(&compact(e), MAX_VALUE),
            },
            other => clip(&compact(other), MAX_VALUE),
        });
        let open = task.effective_state(now).is_active() && !proposal.status.is_terminal();
        Summary {
            task: task.id.clone(),
            kind,
            group: task.group.clone(),
            system: proposal.system.as_str().to_owned(),
            action: proposal.action.clone(),
            subject: clip(&compact(&proposal.subject), MAX_VALUE),
            output,
            confidence: if blind { None } else { proposal.confidence },
            explanation: if blind { None } else { explanation },
            blind,
            deadline: task.due_at,
            digest: proposal.digest.clone(),
            rationale_required: task.plan.rationale_required,
            open,
            outcome: outcome(task, proposal),
            link: task_link(app, &task.id),
        }
    }

    /// The first line: what happened, where.
    pub(crate) fn title(&self) -> String {
        let what = match (&self.outcome, self.kind) {
            (Some(_), _) => "Decided",
            (None, EventKind::TaskEscalated) => "Escalated to your group",
            (None, EventKind::TaskReturned) => "Back in your group's pool",
            (None, EventKind::TaskSlaWarning) => "Deadline near",
            (None, EventKind::TaskExpired) => "Deadline passed",
            (None, _) => "Review needed",
        };
        format!("{what}: {} · {}", self.system, self.action)
    }

    /// The summary as plain-text lines (email, Teams, Slack fallback).
    pub(crate) fn lines(&self) -> Vec<(String, String)> {
        let mut lines = vec![
            ("System".to_owned(), self.system.clone()),
            ("Action".to_owned(), self.action.clone()),
            ("Subject".to_owned(), self.subject.clone()),
            ("Group".to_owned(), self.group.clone()),
        ];
        if self.blind {
            lines.push((
                "Output".to_owned(),
                "hidden (blind review: output and confidence show in loopgate once decided)"
                    .to_owned(),
            ));
        }
        for (key, value) in &self.output {
            lines.push((format!("Output · {key}"), value.clone()));
        }
        if let Some(confidence) = self.confidence {
            lines.push(("Confidence".to_owned(), format!("{confidence:.2}")));
        }
        if let Some(explanation) = &self.explanation {
            lines.push(("Explanation".to_owned(), explanation.clone()));
        }
        if let Some(deadline) = self.deadline {
            lines.push(("Deadline".to_owned(), deadline.to_rfc3339()));
        }
        if let Some(outcome) = &self.outcome {
            lines.push(("Outcome".to_owned(), outcome.clone()));
        }
        lines
    }
}

/// `Approved by ann`, `Rejected (timeout)`, `Escalated to fraud-leads`.
fn outcome(task: &Task, proposal: &ProposalRecord) -> Option<String> {
    if proposal.status.is_terminal() {
        let verb = match proposal.status {
            ProposalStatus::Approved => "Approved",
            ProposalStatus::Rejected => "Rejected",
            ProposalStatus::Cancelled => "Cancelled",
            ProposalStatus::Returned => "Answered",
            ProposalStatus::Pending => "Pending",
        };
        let by = match proposal.decided_by {
            Some(DecidedBy::Reviewers) => {
                let names: Vec<&str> = proposal
                    .decisions
                    .iter()
                    .map(|d| d.reviewer.as_str())
                    .collect();
                format!(" by {}", names.join(", "))
            }
            Some(by) => format!(" ({by})"),
            None => String::new(),
        };
        return Some(format!("{verb}{by}"));
    }
    let last = proposal.decisions.last()?;
    Some(format!(
        "{} by {} (waiting for more reviewers)",
        last.verdict, last.reviewer
    ))
    .filter(|_| task.state.is_active())
}

/// The task page, absolute when `public_url` is set.
pub(crate) fn task_link(app: &AppState, task: &TaskId) -> String {
    format!("{}/ui/tasks/{}", base_url(app), task.as_str())
}

/// `public_url` without its trailing slash, or nothing (relative links).
pub(crate) fn base_url(app: &AppState) -> &str {
    app.config
        .public_url
        .as_deref()
        .map_or("", |url| url.trim_end_matches('/'))
}

/// JSON in one line; strings without quotes.
fn compact(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// At most `max` characters, with `…` when cut; control characters (line
/// breaks included) become spaces, so a value cannot forge a line.
pub(crate) fn clip(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if text.chars().count() > max {
        out.pop();
        out.push('…');
    }
    out
}

/// Text for HTML.
pub(crate) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_cuts_and_flattens() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("a\r\nb", 10), "a  b");
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
