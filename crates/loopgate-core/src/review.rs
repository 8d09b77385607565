//! The review state machine: claims, decisions, quorum, escalation and
//! timeouts. Pure functions from the current state to the next one; the
//! store loads the state, calls these, and writes what they return in one
//! transaction, so both backends run the same rules.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::assign::Assigned;
use crate::digest::{Digest, DigestParts};
use crate::grant::{Agreed, GrantTerms};
use crate::ids::{ProposalId, TaskId};
use crate::routing::ReviewPlan;
use crate::{DecidedBy, OnTimeout, ProposalStatus, TaskKind, TaskState, Timestamp, Verdict};

/// A review task.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// Id.
    pub id: TaskId,
    /// The proposal under review.
    pub proposal_id: ProposalId,
    /// Gate, post-hoc or QA sample.
    pub kind: TaskKind,
    /// Stored state (see [`Task::effective_state`]).
    pub state: TaskState,
    /// Current reviewer group.
    pub group: String,
    /// Escalation level, 0 first.
    pub level: u32,
    /// Distinct approvals required.
    pub required: u32,
    /// Deadline of the current level.
    pub due_at: Option<Timestamp>,
    /// Lease holder.
    pub claimed_by: Option<String>,
    /// Lease end.
    pub lease_expires_at: Option<Timestamp>,
    /// Who the task is reserved for (groups that assign; see [`crate::assign`]).
    pub assigned: Option<Assigned>,
    /// SLA, escalation chain, timeout rule, blindness.
    pub plan: ReviewPlan,
    /// QA inclusion probability (1 for gate and post-hoc tasks).
    pub sample_probability: f64,
    /// Creation time.
    pub created_at: Timestamp,
}

/// The parts of a proposal that review reads and changes.
#[derive(Debug, Clone, PartialEq)]
pub struct ProposalState {
    /// Lifecycle state.
    pub status: ProposalStatus,
    /// Current digest.
    pub digest: Digest,
    /// Current output.
    pub output: Value,
    /// Whether reviewers edited the output before resolution.
    pub modified: bool,
    /// Set when people later rejected or changed an approved proposal.
    pub overridden: bool,
    /// Who settled it.
    pub decided_by: Option<DecidedBy>,
    /// When it was settled.
    pub decided_at: Option<Timestamp>,
    /// The principal that submitted it (`user:<name>` or `system:<id>`).
    pub submitted_by: String,
}

/// One human decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Username.
    pub reviewer: String,
    /// Verdict.
    pub verdict: Verdict,
    /// The digest the decision approves (the new one for `modify`), or saw.
    pub digest: Digest,
    /// Rationale.
    pub rationale: Option<String>,
    /// The edited output (modify only).
    pub output: Option<Value>,
    /// Labels for feedback.
    pub labels: Option<Map<String, Value>>,
    /// The words sent back to the AI (respond only).
    pub message: Option<String>,
    /// The standing grant this approver agreed to (approve only).
    pub grant: Option<GrantTerms>,
    /// Task level at the time.
    pub level: u32,
    /// When.
    pub decided_at: Timestamp,
}

/// Everything a decision reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// The proposal.
    pub proposal: ProposalState,
    /// The task decided on.
    pub task: Task,
    /// Earlier decisions on the proposal, oldest first.
    pub decisions: Vec<Decision>,
    /// System, action, subject and input, for the digest of an edit.
    pub parts: CaseParts,
}

/// The fixed parts of a proposal's digest.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseParts {
    /// System id.
    pub system: String,
    /// Action.
    pub action: String,
    /// Subject JSON.
    pub subject: Value,
    /// Input JSON.
    pub input: Value,
    /// The proposal's salt; empty once erased.
    pub salt: Vec<u8>,
}

impl CaseParts {
    /// The digest of the proposal with this output.
    pub fn digest(&self, output: &Value) -> Digest {
        Digest::of(DigestParts {
            system: &self.system,
            action: &self.action,
            subject: &self.subject,
            input: &self.input,
            output,
            salt: &self.salt,
        })
    }
}

/// Who decides.
#[derive(Debug, Clone, Copy)]
pub struct Reviewer<'a> {
    /// Username.
    pub name: &'a str,
    /// Reviewer groups.
    pub groups: &'a [String],
}

/// A decision as a reviewer sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionInput {
    /// Verdict.
    pub verdict: Verdict,
    /// Rationale.
    pub rationale: Option<String>,
    /// Edited output (modify only).
    pub output: Option<Value>,
    /// Labels.
    pub labels: Option<Map<String, Value>>,
    /// The words sent back to the AI (respond only).
    pub message: Option<String>,
    /// A standing grant offered with an approval.
    pub grant: Option<GrantTerms>,
    /// The digest shown to the reviewer.
    pub seen_digest: Digest,
}

/// A refusal; nothing changes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReviewError {
    /// The task or proposal is settled.
    #[error("task is already {state}")]
    AlreadyDecided { state: &'static str },
    /// This reviewer already decided this proposal.
    #[error("`{reviewer}` already decided this proposal")]
    AlreadyVoted { reviewer: String },
    /// The proposal changed since it was shown.
    #[error("decision was made on `{seen}` but the proposal is now `{current}`")]
    StaleDigest { seen: Digest, current: Digest },
    /// The task is reserved for another member of its group.
    #[error("task is assigned to `{assignee}`{}", until.as_ref().map(|u| format!(" until {u}, when it returns to the pool unless opened")).unwrap_or_default())]
    Assigned {
        assignee: String,
        until: Option<String>,
    },
    /// Another reviewer holds the lease.
    #[error("task is claimed by `{holder}` until {until}")]
    LeaseHeld { holder: String, until: String },
    /// Release by someone who does not hold the lease.
    #[error("task is not claimed by `{reviewer}`")]
    NotClaimed { reviewer: String },
    /// The submitter may not approve.
    #[error("`{reviewer}` submitted this proposal and may not approve it")]
    SelfApproval { reviewer: String },
    /// The reviewer is not in the task's group.
    #[error("task belongs to group `{group}`, which `{reviewer}` is not a member of")]
    NotInGroup { group: String, reviewer: String },
    /// Escalation without a next group.
    #[error("the policy names no group to escalate to after `{group}`")]
    NoEscalation { group: String },
    /// Modify without an output, or an output with another verdict.
    #[error("{0}")]
    Invalid(&'static str),
    /// A grant the task's policy does not allow.
    #[error("{0}")]
    GrantRefused(String),
}

/// What a decision changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    /// The case after the decision.
    pub case: Case,
    /// The decision to record.
    pub decision: Decision,
    /// What happened, for events and notifications.
    pub effect: Effect,
    /// The standing grant to make: every approval of the final digest
    /// offered one (their narrowest terms), and the proposal is approved.
    pub grant: Option<Agreed>,
}

/// The visible effect of a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Recorded; the quorum is not reached yet.
    Recorded,
    /// The proposal is now terminal.
    Resolved,
    /// A person rejected or changed an already approved proposal.
    Overridden,
    /// Post-hoc or QA review confirmed the proposal.
    Confirmed,
    /// The task moved up the escalation chain.
    Escalated,
    /// The task ran out of time with no proposal change.
    Expired,
}

impl Task {
    /// `Claimed` with a lapsed lease reads as `Open`.
    pub fn effective_state(&self, now: Timestamp) -> TaskState {
        match (self.state, self.lease_expires_at) {
            (TaskState::Claimed, Some(until)) if until <= now => TaskState::Open,
            (state, _) => state,
        }
    }

    /// Who the task is reserved for at `now`: its assignee, unless the
    /// time to open it has passed (then it is back in the pool, whether or
    /// not the timer has run yet).
    pub fn assignee(&self, now: Timestamp) -> Option<&str> {
        let assigned = self.assigned.as_ref()?;
        let live = self.state.is_active() && assigned.return_at.is_none_or(|at| at > now);
        live.then_some(assigned.to.as_str())
    }

    /// The reviewer holding a live lease.
    pub fn lease_holder(&self, now: Timestamp) -> Option<&str> {
        match self.effective_state(now) {
            TaskState::Claimed => self.claimed_by.as_deref(),
            _ => None,
        }
    }
}

/// Takes or renews the lease on a task.
pub fn claim(
    task: &Task,
    reviewer: Reviewer<'_>,
    now: Timestamp,
    lease: Duration,
) -> Result<Task, ReviewError> {
    check_active(task, now)?;
    check_group(task, reviewer)?;
    check_assignee(task, reviewer, now)?;
    check_lease(task, reviewer, now)?;
    let mut next = task.clone();
    next.state = TaskState::Claimed;
    next.claimed_by = Some(reviewer.name.to_owned());
    next.lease_expires_at = Some(now.plus(lease));
    // Opened by its assignee: it stays theirs until decided.
    if let Some(assigned) = &mut next.assigned
        && assigned.to == reviewer.name
    {
        assigned.return_at = None;
    }
    Ok(next)
}

/// Gives the lease back; an assignee who releases gives the task back to
/// the pool as well.
pub fn release(task: &Task, reviewer: Reviewer<'_>, now: Timestamp) -> Result<Task, ReviewError> {
    check_active(task, now)?;
    let holds = task.lease_holder(now) == Some(reviewer.name);
    if !holds && task.assignee(now) != Some(reviewer.name) {
        return Err(ReviewError::NotClaimed {
            reviewer: reviewer.name.to_owned(),
        });
    }
    Ok(open(task.clone()))
}

/// Applies one reviewer's decision.
pub fn decide(
    case: &Case,
    reviewer: Reviewer<'_>,
    input: DecisionInput,
    now: Timestamp,
) -> Result<Decided, ReviewError> {
    let task = &case.task;
    check_active(task, now)?;
    let is_gate = task.kind == TaskKind::Gate;
    if is_gate && case.proposal.status.is_terminal() {
        return Err(ReviewError::AlreadyDecided {
            state: case.proposal.status.as_str(),
        });
    }
    check_group(task, reviewer)?;
    check_assignee(task, reviewer, now)?;
    check_lease(task, reviewer, now)?;
    if case.decisions.iter().any(|it| it.reviewer == reviewer.name) {
        return Err(ReviewError::AlreadyVoted {
            reviewer: reviewer.name.to_owned(),
        });
    }
    if input.seen_digest != case.proposal.digest {
        return Err(ReviewError::StaleDigest {
            seen: input.seen_digest,
            current: case.proposal.digest.clone(),
        });
    }
    let approves = matches!(input.verdict, Verdict::Approve | Verdict::Modify);
    let submitted_by_reviewer = case.proposal.submitted_by == format!("user:{}", reviewer.name);
    if approves && submitted_by_reviewer {
        return Err(ReviewError::SelfApproval {
            reviewer: reviewer.name.to_owned(),
        });
    }
    let said_why = input
        .rationale
        .as_deref()
        .is_some_and(|it| !it.trim().is_empty());
    if task.plan.rationale_required && !said_why {
        return Err(ReviewError::Invalid(
            "this task's policy requires a `rationale` with every decision",
        ));
    }
    let new_output = match (input.verdict, input.output) {
        (Verdict::Modify, Some(output)) => Some(output),
        (Verdict::Modify, None) => {
            return Err(ReviewError::Invalid(
                "a `modify` decision needs the edited `output`",
            ));
        }
        (_, Some(_)) => {
            return Err(ReviewError::Invalid(
                "`output` is only accepted with the `modify` verdict",
            ));
        }
        (_, None) => None,
    };
    let message = match (input.verdict, input.message) {
        (Verdict::Respond, Some(message)) if !message.trim().is_empty() => {
            if !is_gate {
                return Err(ReviewError::Invalid(
                    "`respond` answers a proposal that waits for review; this task's proposal went ahead already",
                ));
            }
            Some(message)
        }
        (Verdict::Respond, _) => {
            return Err(ReviewError::Invalid(
                "a `respond` decision needs the `message` to send back",
            ));
        }
        (_, Some(_)) => {
            return Err(ReviewError::Invalid(
                "`message` is only accepted with the `respond` verdict",
            ));
        }
        (_, None) => None,
    };
    if let Some(offer) = &input.grant {
        if input.verdict != Verdict::Approve || !is_gate {
            return Err(ReviewError::Invalid(
                "a `grant` goes only with `approve` on a task that holds its proposal back",
            ));
        }
        offer
            .check(task.plan.grant)
            .map_err(ReviewError::GrantRefused)?;
    }

    let mut next = case.clone();
    let mut decision = Decision {
        reviewer: reviewer.name.to_owned(),
        verdict: input.verdict,
        digest: case.proposal.digest.clone(),
        rationale: input.rationale,
        output: new_output.clone(),
        labels: input.labels,
        message,
        grant: input.grant,
        level: task.level,
        decided_at: now,
    };
    let effect = match (input.verdict, is_gate) {
        (Verdict::Escalate, _) => {
            next.task = escalate(task, now).ok_or_else(|| ReviewError::NoEscalation {
                group: task.group.clone(),
            })?;
            Effect::Escalated
        }
        (Verdict::Reject, true) => {
            settle(
                &mut next,
                ProposalStatus::Rejected,
                DecidedBy::Reviewers,
                now,
            );
            Effect::Resolved
        }
        (Verdict::Respond, true) => {
            settle(
                &mut next,
                ProposalStatus::Returned,
                DecidedBy::Reviewers,
                now,
            );
            Effect::Resolved
        }
        // Refused above: a message goes back only while the proposal waits.
        (Verdict::Respond, false) => {
            return Err(ReviewError::Invalid(
                "`respond` answers a proposal that waits for review",
            ));
        }
        (Verdict::Approve | Verdict::Modify, true) => {
            if let Some(output) = new_output {
                let digest = case.parts.digest(&output);
                decision.digest = digest.clone();
                next.proposal.digest = digest;
                next.proposal.output = output;
                next.proposal.modified = true;
            }
            let n_approvals = 1 + count_approvals(&case.decisions, &next.proposal.digest);
            if task.required <= n_approvals {
                settle(
                    &mut next,
                    ProposalStatus::Approved,
                    DecidedBy::Reviewers,
                    now,
                );
                Effect::Resolved
            } else {
                next.task = open(next.task);
                Effect::Recorded
            }
        }
        (Verdict::Approve, false) => {
            next.task.state = TaskState::Done;
            Effect::Confirmed
        }
        (Verdict::Reject | Verdict::Modify, false) => {
            next.task.state = TaskState::Done;
            next.proposal.overridden = true;
            Effect::Overridden
        }
    };
    next.decisions.push(decision.clone());
    let grant = match (effect, next.proposal.status) {
        (Effect::Resolved, ProposalStatus::Approved) => {
            let approvals: Vec<&Decision> = next
                .decisions
                .iter()
                .filter(|it| approves_digest(it, &next.proposal.digest))
                .collect();
            let offers: Vec<Option<GrantTerms>> = approvals.iter().map(|it| it.grant).collect();
            GrantTerms::combine(&offers).map(|terms| Agreed {
                terms,
                granted_by: approvals.iter().map(|it| it.reviewer.clone()).collect(),
            })
        }
        _ => None,
    };
    Ok(Decided {
        case: next,
        decision,
        effect,
        grant,
    })
}

/// Approvals of `digest` among the decisions, one per reviewer.
pub fn count_approvals(decisions: &[Decision], digest: &Digest) -> u32 {
    let n = decisions
        .iter()
        .filter(|it| approves_digest(it, digest))
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn approves_digest(decision: &Decision, digest: &Digest) -> bool {
    matches!(decision.verdict, Verdict::Approve | Verdict::Modify) && &decision.digest == digest
}

/// Runs the deadline of a task: escalates, or applies `on_timeout`.
/// Returns `None` when the task is not due.
pub fn expire(case: &Case, now: Timestamp) -> Option<(Case, Effect)> {
    let task = &case.task;
    let due = task.state.is_active() && task.due_at.is_some_and(|due| due <= now);
    if !due {
        return None;
    }
    let mut next = case.clone();
    if let Some(escalated) = escalate(task, now) {
        next.task = escalated;
        return Some((next, Effect::Escalated));
    }
    next.task.state = TaskState::Expired;
    next.task.claimed_by = None;
    next.task.lease_expires_at = None;
    if task.kind != TaskKind::Gate || case.proposal.status.is_terminal() {
        return Some((next, Effect::Expired));
    }
    let outcome = match task.plan.on_timeout {
        OnTimeout::Approve => ProposalStatus::Approved,
        // Fail closed: with nowhere to escalate, `escalate` rejects too.
        OnTimeout::Reject | OnTimeout::Escalate => ProposalStatus::Rejected,
    };
    settle(&mut next, outcome, DecidedBy::Timeout, now);
    next.task.state = TaskState::Expired;
    Some((next, Effect::Resolved))
}

/// Cancels a pending proposal (its submitter withdrew it): the proposal
/// ends `cancelled`, decided by `system`, and each of its `tasks` still
/// open ends with it. Returns the proposal and the tasks that changed. A
/// settled proposal cannot be cancelled.
pub fn cancel(
    proposal: &ProposalState,
    tasks: &[Task],
    now: Timestamp,
) -> Result<(ProposalState, Vec<Task>), ReviewError> {
    if proposal.status.is_terminal() {
        return Err(ReviewError::AlreadyDecided {
            state: proposal.status.as_str(),
        });
    }
    let mut next = proposal.clone();
    next.status = ProposalStatus::Cancelled;
    next.decided_by = Some(DecidedBy::System);
    next.decided_at = Some(now);
    let ended = tasks
        .iter()
        .filter(|task| task.state.is_active())
        .map(|task| Task {
            state: TaskState::Cancelled,
            ..open(task.clone())
        })
        .collect();
    Ok((next, ended))
}

fn settle(case: &mut Case, outcome: ProposalStatus, decided_by: DecidedBy, now: Timestamp) {
    case.proposal.status = outcome;
    case.proposal.decided_by = Some(decided_by);
    case.proposal.decided_at = Some(now);
    case.task.state = TaskState::Done;
    case.task.claimed_by = None;
    case.task.lease_expires_at = None;
}

fn escalate(task: &Task, now: Timestamp) -> Option<Task> {
    let index = usize::try_from(task.level).ok()?;
    let group = task.plan.escalate_to.get(index)?;
    let mut next = open(task.clone());
    next.group = group.clone();
    next.level = task.level + 1;
    next.due_at = task.plan.sla.map(|sla| now.plus(sla));
    Some(next)
}

/// Back to the pool: no lease, no assignee.
fn open(mut task: Task) -> Task {
    task.state = TaskState::Open;
    task.claimed_by = None;
    task.lease_expires_at = None;
    task.assigned = None;
    task
}

/// Gives an active task to `assigned` (the store picked them with
/// [`crate::assign::pick`]).
pub fn assign(task: &Task, assigned: Assigned) -> Task {
    let mut next = task.clone();
    next.assigned = Some(assigned);
    next
}

/// A task whose assignee did not open it in time, back in the pool; `None`
/// when it is not due.
pub fn return_unopened(task: &Task, now: Timestamp) -> Option<Task> {
    let assigned = task.assigned.as_ref()?;
    let due = task.state.is_active() && assigned.return_at.is_some_and(|at| at <= now);
    due.then(|| {
        let mut next = task.clone();
        next.assigned = None;
        next
    })
}

fn check_assignee(task: &Task, reviewer: Reviewer<'_>, now: Timestamp) -> Result<(), ReviewError> {
    match task.assignee(now) {
        Some(assignee) if assignee != reviewer.name => Err(ReviewError::Assigned {
            assignee: assignee.to_owned(),
            until: task
                .assigned
                .as_ref()
                .and_then(|a| a.return_at)
                .map(Timestamp::to_rfc3339),
        }),
        _ => Ok(()),
    }
}

fn check_active(task: &Task, now: Timestamp) -> Result<(), ReviewError> {
    let state = task.effective_state(now);
    match state.is_active() {
        true => Ok(()),
        false => Err(ReviewError::AlreadyDecided {
            state: state.as_str(),
        }),
    }
}

fn check_group(task: &Task, reviewer: Reviewer<'_>) -> Result<(), ReviewError> {
    match reviewer.groups.iter().any(|g| g == &task.group) {
        true => Ok(()),
        false => Err(ReviewError::NotInGroup {
            group: task.group.clone(),
            reviewer: reviewer.name.to_owned(),
        }),
    }
}

fn check_lease(task: &Task, reviewer: Reviewer<'_>, now: Timestamp) -> Result<(), ReviewError> {
    match task.lease_holder(now) {
        Some(holder) if holder != reviewer.name => Err(ReviewError::LeaseHeld {
            holder: holder.to_owned(),
            until: task
                .lease_expires_at
                .map(Timestamp::to_rfc3339)
                .unwrap_or_default(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
