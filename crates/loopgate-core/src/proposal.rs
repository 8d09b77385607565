//! What happens to a new proposal: the route, the oversight mode and the
//! kill switch together give its first state and the review task, if any.

use crate::routing::{ReviewPlan, Routing};
use crate::{DecidedBy, Oversight, ProposalStatus, Route, SystemStatus, TaskKind};

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
}
