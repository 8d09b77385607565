//! The reports a policy draft gets, made in one place for the server and
//! the CLI: a case file's test report, and replay's tally of what a draft
//! would have changed on stored proposals.

use std::collections::{BTreeMap, HashMap};

use loopgate_core::routing::schema::Shape;
use loopgate_core::routing::{
    Defaults, Policies, Routing, RoutingRequest, ShapeRule, cases, route, typed_input,
};
use loopgate_core::{DecidedBy, ProposalStatus, Route, Timestamp};
use loopgate_proto as proto;
use loopgate_store::{ReplayRow, SystemRecord};
use serde_json::Map;

use crate::convert;

/// The report of a case file's run, as `POST /v1/policies/test` answers
/// it (and `loopgate policy test` prints it when it runs locally).
pub fn test_report(version: &str, results: Vec<cases::CaseResult>) -> proto::PolicyTestReport {
    let passed = results.iter().filter(|it| it.passed).count();
    proto::PolicyTestReport {
        version: version.to_owned(),
        passed: u32::try_from(passed).unwrap_or(u32::MAX),
        failed: u32::try_from(results.len() - passed).unwrap_or(u32::MAX),
        cases: results
            .into_iter()
            .map(|it| proto::PolicyCaseResult {
                name: it.name,
                passed: it.passed,
                failures: it.failures,
                route: convert::route_to_proto(it.route),
                matched: it.matched,
                reviewers: it.reviewers,
                approvals: it.approvals,
                refused: it.refused,
                policy_errors: it.errors.into_iter().map(convert::policy_error).collect(),
            })
            .collect(),
    }
}

/// A registered system as routing needs it: its record and its parsed shape.
pub(crate) struct Registered {
    pub(crate) record: SystemRecord,
    pub(crate) shape: Option<Shape>,
}

impl Registered {
    pub(crate) fn case_system(&self, require_shapes: bool) -> cases::CaseSystem<'_> {
        cases::CaseSystem {
            risk_tier: self.record.risk_tier,
            oversight: self.record.oversight,
            shape: self.shape.as_ref(),
            rule: ShapeRule::of(require_shapes, self.shape.as_ref()),
        }
    }
}

/// What replaying stored proposals under a draft found, proposal by
/// proposal; [`Tally::report`] is the replay report.
#[derive(Default)]
pub(crate) struct Tally {
    examples: usize,
    require_shapes: bool,
    replayed: u64,
    refused: u64,
    /// By policy: failures, the latest message, some proposal ids.
    errors: BTreeMap<String, (u64, String, Vec<String>)>,
    skipped_erased: u64,
    unchanged: u64,
    transitions: BTreeMap<(Route, Route), (u64, Vec<String>)>,
    workload: BTreeMap<String, (u64, u64)>,
    rejected_now_allowed: u64,
    approved_now_denied: u64,
}

impl Tally {
    /// An empty tally keeping up to `examples` proposal ids per finding.
    pub(crate) fn new(examples: usize, require_shapes: bool) -> Tally {
        Tally {
            examples,
            require_shapes,
            ..Tally::default()
        }
    }

    /// Proposals replayed or skipped so far.
    pub(crate) fn seen(&self) -> u64 {
        self.replayed + self.skipped_erased
    }

    /// Replays one stored proposal under `draft`.
    pub(crate) fn add(
        &mut self,
        row: &ReplayRow,
        draft: &Policies,
        systems: &HashMap<String, Registered>,
        defaults: &Defaults,
    ) {
        if row.erased {
            self.skipped_erased += 1;
            return;
        }
        self.replayed += 1;
        let empty = Map::new();
        let subject = |key: &str| {
            row.subject
                .get(key)
                .and_then(|it| it.as_str())
                .unwrap_or("")
        };
        let attributes = row
            .subject
            .get("attributes")
            .and_then(|it| it.as_object())
            .unwrap_or(&empty);
        let system = systems.get(&row.system);
        let shape = system.and_then(|it| it.shape.as_ref());
        let rule = ShapeRule::of(self.require_shapes, shape);
        let routing = match typed_input(shape, &row.action, &row.context, attributes, rule) {
            Ok(input) => {
                let request = RoutingRequest {
                    system: &row.system,
                    action: &row.action,
                    subject_type: subject("type"),
                    subject_id: subject("id"),
                    input: &input,
                    confidence: row.confidence,
                    risk_tier: system
                        .map_or(loopgate_core::RiskTier::Limited, |it| it.record.risk_tier),
                    oversight: system.map_or(loopgate_core::Oversight::InTheLoop, |it| {
                        it.record.oversight
                    }),
                    model_version: row.model_version.as_deref(),
                };
                route(draft, &request, defaults)
            }
            Err(_) => {
                // Refused today: nothing would go ahead.
                self.refused += 1;
                Routing {
                    route: Route::Deny,
                    matched: Vec::new(),
                    policy_version: draft.version().to_owned(),
                    review: defaults.review.clone(),
                    sample_rate: 0.0,
                    limits: Vec::new(),
                    errors: Vec::new(),
                }
            }
        };
        for error in &routing.errors {
            let entry = self.errors.entry(error.policy.clone()).or_default();
            entry.0 += 1;
            entry.1.clone_from(&error.message);
            if entry.2.len() < self.examples {
                entry.2.push(row.id.clone());
            }
        }
        let new_group = (routing.route == Route::Review).then(|| routing.review.group.clone());
        let old_group = (row.route == Route::Review)
            .then(|| row.group.clone())
            .flatten();
        if new_group != old_group {
            if let Some(group) = old_group {
                self.workload.entry(group).or_default().1 += 1;
            }
            if let Some(group) = new_group {
                self.workload.entry(group).or_default().0 += 1;
            }
        }
        if routing.route == row.route {
            self.unchanged += 1;
            return;
        }
        let entry = self
            .transitions
            .entry((row.route, routing.route))
            .or_default();
        entry.0 += 1;
        if entry.1.len() < self.examples {
            entry.1.push(row.id.clone());
        }
        let by_people = row.decided_by == Some(DecidedBy::Reviewers);
        if by_people && row.status == ProposalStatus::Rejected && routing.route == Route::Allow {
            self.rejected_now_allowed += 1;
        }
        if by_people && row.status == ProposalStatus::Approved && routing.route == Route::Deny {
            self.approved_now_denied += 1;
        }
    }

    /// The replay report.
    pub(crate) fn report(self, version: &str, since: Timestamp) -> proto::ReplayReport {
        let mut transitions: Vec<proto::RouteTransition> = self
            .transitions
            .into_iter()
            .map(|((from, to), (count, examples))| proto::RouteTransition {
                from: convert::route_to_proto(from),
                to: convert::route_to_proto(to),
                count,
                examples,
            })
            .collect();
        transitions.sort_by_key(|t| std::cmp::Reverse(t.count));
        proto::ReplayReport {
            version: version.to_owned(),
            since: since.to_rfc3339(),
            replayed: self.replayed,
            skipped_erased: self.skipped_erased,
            unchanged: self.unchanged,
            transitions,
            workload: self
                .workload
                .into_iter()
                .map(|(group, (added, removed))| proto::GroupWorkload {
                    group,
                    added,
                    removed,
                })
                .collect(),
            rejected_now_allowed: self.rejected_now_allowed,
            approved_now_denied: self.approved_now_denied,
            refused: self.refused,
            policy_errors: {
                let mut errors: Vec<proto::PolicyErrorCount> = self
                    .errors
                    .into_iter()
                    .map(
                        |(policy, (count, message, examples))| proto::PolicyErrorCount {
                            policy,
                            count,
                            message,
                            examples,
                        },
                    )
                    .collect();
                errors.sort_by_key(|it| std::cmp::Reverse(it.count));
                errors
            },
        }
    }
}
