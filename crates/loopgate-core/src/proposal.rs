//! What happens to a new proposal: the route, the oversight mode, the kill
//! switch and the automation caps together give its first state, its first
//! review task and its audit events ([`admit`]); the store writes exactly
//! that, in the transaction that read the system and the caps.

use std::borrow::Cow;

use serde_json::Value;

use crate::audit::event::{Event, LOOPGATE_ACTOR};
use crate::grant::{self, Grant, Grantable};
use crate::review::Task;
use crate::routing::{ReviewPlan, Routing};
use crate::{
    DecidedBy, Digest, Oversight, ProposalId, ProposalStatus, Route, SystemId, SystemStatus,
    TaskId, TaskKind, TaskState, Timestamp,
};

/// A new proposal as admission reads it: what its events are made of.
#[derive(Debug, Clone, Copy)]
pub struct Proposed<'a> {
    /// Its id.
    pub id: &'a ProposalId,
    /// The id its first task gets, if it has one.
    pub task_id: &'a TaskId,
    /// Its system.
    pub system: &'a SystemId,
    /// Its action.
    pub action: &'a str,
    /// `{"type", "id", "attributes"}`.
    pub subject: &'a Value,
    /// The model's input.
    pub input: &'a Value,
    /// The model's output.
    pub output: &'a Value,
    /// Its digest (salted with `salt`).
    pub digest: &'a Digest,
    /// Its salt.
    pub salt: &'a [u8],
    /// `user:<name>` or `system:<id>`.
    pub submitted_by: &'a str,
}

/// The system as committed when the proposal is written (not as a cache
/// saw it: a system paused a moment ago rejects this proposal too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemState {
    /// Its oversight mode.
    pub oversight: Oversight,
    /// Its kill switch.
    pub status: SystemStatus,
}

/// One `@max_auto` counter: a policy's count in the window `now` falls in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cap {
    /// The allow policy's id.
    pub policy: String,
    /// Most automated approvals per window.
    pub limit: u32,
    /// The start of the current window.
    pub window: Timestamp,
}

/// The caps a routing counts against at `now`, in policy order: what the
/// store reads before [`admit`].
pub fn caps(routing: &Routing, now: Timestamp) -> Vec<Cap> {
    routing
        .limits
        .iter()
        .map(|it| Cap {
            policy: it.policy.clone(),
            limit: it.rate.limit,
            window: it.rate.window_start(now),
        })
        .collect()
}

/// What admission decided: the store writes exactly this.
#[derive(Debug, Clone, PartialEq)]
pub struct Admission<'a> {
    /// The routing that applies: the live one, or the review of the first
    /// capped policy when a cap was used up.
    pub routing: Cow<'a, Routing>,
    /// Whether a used-up cap sent an allow to review.
    pub over_limit: bool,
    /// `pending`, or terminal at once.
    pub status: ProposalStatus,
    /// Who settled it when terminal at once.
    pub decided_by: Option<DecidedBy>,
    /// Its first review task, with its deadline.
    pub task: Option<Task>,
    /// The caps this admission counts one against (all of them when an
    /// automated approval went through, else none).
    pub counted: Vec<Cap>,
    /// The standing grant that approved it instead of a review, with this
    /// use counted.
    pub grant: Option<Grant>,
}

impl Admission<'_> {
    /// Whether its review is blind (reviewers do not see the model's output).
    pub fn blind(&self) -> bool {
        self.task.as_ref().is_some_and(|task| task.plan.blind)
    }

    /// Its audit events in log order, each with its actor: submitted (by
    /// the submitter), routed, the task created, and resolved when settled
    /// at once.
    pub fn events<'s>(&'s self, proposed: &Proposed<'s>) -> Vec<(&'s str, Event<'s>)> {
        let mut events = vec![
            (
                proposed.submitted_by,
                Event::ProposalSubmitted {
                    proposal: proposed.id.as_str(),
                    system: proposed.system.as_str(),
                    action: proposed.action,
                    digest: proposed.digest,
                    subject: proposed.subject,
                    input: proposed.input,
                    output: proposed.output,
                    salt: proposed.salt,
                },
            ),
            (
                LOOPGATE_ACTOR,
                Event::ProposalRouted {
                    proposal: proposed.id.as_str(),
                    routing: &self.routing,
                    over_limit: self.over_limit,
                    salt: proposed.salt,
                },
            ),
        ];
        if let Some(task) = &self.task {
            events.push((LOOPGATE_ACTOR, Event::TaskCreated(task)));
        }
        if let Some(grant) = &self.grant {
            let used = Event::GrantUsed {
                grant,
                proposal: proposed.id.as_str(),
            };
            events.push((LOOPGATE_ACTOR, used));
        }
        if self.status.is_terminal() {
            let resolved = Event::ProposalResolved {
                proposal: proposed.id.as_str(),
                outcome: self.status,
                decided_by: self.decided_by,
                digest: proposed.digest,
                modified: None,
                grant: self.grant.as_ref().map(|it| it.id.as_str()),
            };
            events.push((LOOPGATE_ACTOR, resolved));
        }
        events
    }
}

/// The part of [`may_use_grant`] that `routing` decides: the store reads
/// the grants before it knows the system's state.
pub fn routing_allows_grants(routing: &Routing) -> bool {
    routing.route == Route::Review && matches!(routing.review.grant, Grantable::UpTo(_))
}

/// Whether admission may consult standing grants: the proposal would wait
/// for a review that allows grants. The store reads live grants only then.
pub fn may_use_grant(routing: &Routing, system: SystemState) -> bool {
    routing_allows_grants(routing)
        && system.status == SystemStatus::Active
        && system.oversight == Oversight::InTheLoop
}

/// Admits a new proposal. `routing` is the live policies' routing,
/// `sampled` the QA draw for its sampling rate (see `routing::is_sampled`),
/// `used` the count of each of [`caps`]`(routing, now)` as committed, and
/// `grants` the live grants of its system, action and subject as
/// committed, with the deployment's grant key (read when [`may_use_grant`]).
/// A paused system rejects (the kill switch); otherwise, when any cap is
/// used up, an allow goes to the first capped policy's review instead and
/// counts nothing; a proposal that would wait for review is approved by
/// the first grant that covers it (forbids were applied by routing before:
/// a denied proposal never gets here); else the proposal is planned as
/// routed and counts one against every cap.
pub fn admit<'a>(
    proposed: &Proposed<'_>,
    routing: &'a Routing,
    system: SystemState,
    sampled: bool,
    used: &[(Cap, u64)],
    grants: (&[Grant], &[u8]),
    now: Timestamp,
) -> Admission<'a> {
    if may_use_grant(routing, system) {
        let request = grant::Request {
            system: proposed.system.as_str(),
            action: proposed.action,
            subject: proposed.subject,
            output: proposed.output,
        };
        let (grants, key) = grants;
        if let Some(grant) = grants
            .iter()
            .find(|it| it.covers(&request, routing, key, now))
        {
            let mut grant = grant.clone();
            grant.used = grant.used.saturating_add(1);
            return Admission {
                routing: Cow::Borrowed(routing),
                over_limit: false,
                status: ProposalStatus::Approved,
                decided_by: Some(DecidedBy::Grant),
                task: None,
                counted: Vec::new(),
                grant: Some(grant),
            };
        }
    }
    let used_up = used.iter().any(|(cap, used)| *used >= u64::from(cap.limit));
    let (routing, over_limit, sampled) = match routing.limits.first() {
        Some(first) if used_up && system.status == SystemStatus::Active => {
            (Cow::Owned(routing.over_limit(first)), true, false)
        }
        _ => (Cow::Borrowed(routing), false, sampled),
    };
    let plan = plan(&routing, system.oversight, system.status, sampled);
    let counted = match system.status == SystemStatus::Active && !over_limit {
        true => used.iter().map(|(cap, _)| cap.clone()).collect(),
        false => Vec::new(),
    };
    let task = plan.task.map(|planned| Task {
        id: proposed.task_id.clone(),
        proposal_id: proposed.id.clone(),
        kind: planned.kind,
        state: TaskState::Open,
        group: planned.review.group.clone(),
        level: 0,
        required: planned.review.approvals,
        due_at: planned.review.sla.map(|sla| now.plus(sla)),
        claimed_by: None,
        lease_expires_at: None,
        assigned: None,
        plan: planned.review,
        sample_probability: planned.sample_probability,
        created_at: now,
    });
    Admission {
        routing,
        over_limit,
        status: plan.status,
        decided_by: plan.decided_by,
        task,
        counted,
        grant: None,
    }
}

/// The first state of a proposal.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// `pending`, or terminal at once.
    pub status: ProposalStatus,
    /// Who settled it when terminal at once.
    pub decided_by: Option<DecidedBy>,
    /// The review task to create.
    pub task: Option<PlannedTask>,
}

/// A review task to create with the proposal.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedTask {
    /// Gate, post-hoc or QA sample.
    pub kind: TaskKind,
    /// Group, approvals, deadline, escalation.
    pub review: ReviewPlan,
    /// Inclusion probability (the sampling rate for QA samples, else 1).
    pub sample_probability: f64,
}

/// Plans a new proposal. `sampled` is the deterministic QA draw for the
/// routing's sampling rate (see `routing::is_sampled`).
pub fn plan(routing: &Routing, oversight: Oversight, status: SystemStatus, sampled: bool) -> Plan {
    let settled = |status, decided_by, task| Plan {
        status,
        decided_by: Some(decided_by),
        task,
    };
    if status == SystemStatus::Paused {
        return settled(ProposalStatus::Rejected, DecidedBy::KillSwitch, None);
    }
    let qa_sample = sampled.then(|| PlannedTask {
        kind: TaskKind::QaSample,
        review: ReviewPlan {
            approvals: 1,
            ..routing.review.clone()
        },
        sample_probability: routing.sample_rate,
    });
    match (routing.route, oversight) {
        (Route::Deny, _) => settled(ProposalStatus::Rejected, DecidedBy::Policy, None),
        (Route::Allow, _) | (Route::Review, Oversight::Automated) => {
            settled(ProposalStatus::Approved, DecidedBy::Policy, qa_sample)
        }
        (Route::Review, Oversight::OnTheLoop) => {
            let task = PlannedTask {
                kind: TaskKind::PostHoc,
                review: ReviewPlan {
                    approvals: 1,
                    ..routing.review.clone()
                },
                sample_probability: 1.0,
            };
            settled(ProposalStatus::Approved, DecidedBy::Policy, Some(task))
        }
        (Route::Review, Oversight::InTheLoop) => Plan {
            status: ProposalStatus::Pending,
            decided_by: None,
            task: Some(PlannedTask {
                kind: TaskKind::Gate,
                review: routing.review.clone(),
                sample_probability: 1.0,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventKind;

    fn routing(route: Route, sample_rate: f64) -> Routing {
        Routing {
            route,
            matched: vec![],
            policy_version: "v".into(),
            review: ReviewPlan::default_review(),
            sample_rate,
            limits: vec![],
            errors: vec![],
        }
    }

    #[test]
    fn oversight_modes() {
        let show = |p: Plan| {
            format!(
                "{} {:?} {:?}",
                p.status,
                p.decided_by,
                p.task.map(|t| t.kind)
            )
        };
        let active = SystemStatus::Active;
        assert_eq!(
            show(plan(
                &routing(Route::Review, 0.0),
                Oversight::InTheLoop,
                active,
                false
            )),
            "pending None Some(Gate)"
        );
        assert_eq!(
            show(plan(
                &routing(Route::Review, 0.0),
                Oversight::OnTheLoop,
                active,
                false
            )),
            "approved Some(Policy) Some(PostHoc)"
        );
        assert_eq!(
            show(plan(
                &routing(Route::Review, 0.0),
                Oversight::Automated,
                active,
                false
            )),
            "approved Some(Policy) None"
        );
        assert_eq!(
            show(plan(
                &routing(Route::Review, 0.1),
                Oversight::Automated,
                active,
                true
            )),
            "approved Some(Policy) Some(QaSample)"
        );
        assert_eq!(
            show(plan(
                &routing(Route::Allow, 0.1),
                Oversight::InTheLoop,
                active,
                true
            )),
            "approved Some(Policy) Some(QaSample)"
        );
        assert_eq!(
            show(plan(
                &routing(Route::Deny, 0.0),
                Oversight::Automated,
                active,
                false
            )),
            "rejected Some(Policy) None"
        );
        assert_eq!(
            show(plan(
                &routing(Route::Allow, 0.0),
                Oversight::InTheLoop,
                SystemStatus::Paused,
                false
            )),
            "rejected Some(KillSwitch) None"
        );
    }

    fn capped(limit: u32) -> Routing {
        let mut routing = routing(Route::Allow, 0.0);
        routing.limits = vec![crate::routing::AutoLimit {
            policy: "cap".into(),
            rate: crate::routing::Rate {
                limit,
                window: std::time::Duration::from_secs(3600),
            },
            review: ReviewPlan {
                group: "leads".into(),
                sla: Some(std::time::Duration::from_secs(600)),
                ..ReviewPlan::default_review()
            },
        }];
        routing
    }

    fn admitted(routing: &Routing, status: SystemStatus, used: u64) -> Admission<'_> {
        let (id, task_id, system) = (
            ProposalId::from_unique("p"),
            TaskId::from_unique("t"),
            SystemId::parse("shop").unwrap(),
        );
        let value = Value::Null;
        let digest = Digest::of_json(&value);
        let proposed = Proposed {
            id: &id,
            task_id: &task_id,
            system: &system,
            action: "refund",
            subject: &value,
            input: &value,
            output: &value,
            digest: &digest,
            salt: &[0; 32],
            submitted_by: "system:shop",
        };
        let now = Timestamp::from_millis(7_200_500);
        let state = SystemState {
            oversight: Oversight::InTheLoop,
            status,
        };
        let used: Vec<(Cap, u64)> = caps(routing, now).into_iter().map(|c| (c, used)).collect();
        let admission = admit(&proposed, routing, state, false, &used, (&[], &[]), now);
        let kinds: Vec<_> = admission
            .events(&proposed)
            .iter()
            .map(|(_, e)| e.kind())
            .collect();
        let mut expected = vec![EventKind::ProposalSubmitted, EventKind::ProposalRouted];
        if admission.task.is_some() {
            expected.push(EventKind::TaskCreated);
        }
        if admission.status.is_terminal() {
            expected.push(EventKind::ProposalResolved);
        }
        assert_eq!(kinds, expected);
        admission
    }

    #[test]
    fn a_cap_with_room_approves_and_counts_one() {
        let routing = capped(5);
        let admission = admitted(&routing, SystemStatus::Active, 4);
        assert_eq!(admission.status, ProposalStatus::Approved);
        assert!(!admission.over_limit);
        assert_eq!(admission.counted.len(), 1);
        assert_eq!(
            admission.counted[0].window,
            Timestamp::from_millis(7_200_000)
        );
    }

    #[test]
    fn a_used_up_cap_sends_to_its_policys_review_and_counts_nothing() {
        let routing = capped(5);
        let admission = admitted(&routing, SystemStatus::Active, 5);
        assert_eq!(admission.status, ProposalStatus::Pending);
        assert!(admission.over_limit);
        assert!(admission.counted.is_empty());
        assert_eq!(admission.routing.matched, ["cap"]);
        let task = admission.task.as_ref().unwrap();
        assert_eq!(task.group, "leads");
        assert_eq!(
            task.due_at,
            Some(Timestamp::from_millis(7_200_500 + 600_000))
        );
    }

    #[test]
    fn a_paused_system_rejects_and_counts_nothing() {
        let routing = capped(5);
        for used in [0, 5] {
            let admission = admitted(&routing, SystemStatus::Paused, used);
            assert_eq!(admission.status, ProposalStatus::Rejected);
            assert_eq!(admission.decided_by, Some(DecidedBy::KillSwitch));
            assert!(!admission.over_limit);
            assert!(admission.counted.is_empty());
        }
    }
}
