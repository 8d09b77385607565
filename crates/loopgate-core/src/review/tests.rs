//! State machine tests: scripted transcripts and property tests.

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::GrantScope;
use crate::grant::{Agreed, GrantTerms, Grantable};
use crate::routing::ReviewPlan;

const T0: i64 = 1_795_000_000_000;
const MINUTE: Duration = Duration::from_secs(60);

fn case(required: u32, kind: TaskKind) -> Case {
    let subject = json!({"type": "Account", "id": "a-1", "attributes": {}});
    let input = json!({"amount": 1});
    let output = json!({"block": true});
    let parts = CaseParts {
        system: "sys".into(),
        action: "act".into(),
        subject,
        input,
        salt: vec![5; 32],
    };
    let digest = digest_of(&parts, &output);
    let plan = ReviewPlan {
        group: "g0".into(),
        approvals: required,
        sla: Some(Duration::from_secs(3600)),
        escalate_to: vec!["g1".into()],
        on_timeout: OnTimeout::Reject,
        blind: false,
        rationale_required: false,
        grant: Grantable::UpTo(Duration::from_secs(3600)),
    };
    let status = match kind {
        TaskKind::Gate => ProposalStatus::Pending,
        _ => ProposalStatus::Approved,
    };
    Case {
        proposal: ProposalState {
            status,
            digest,
            output,
            modified: false,
            overridden: false,
            decided_by: None,
            decided_at: None,
            submitted_by: "user:sub".into(),
        },
        task: Task {
            id: TaskId::from_unique("1"),
            proposal_id: ProposalId::from_unique("1"),
            kind,
            state: TaskState::Open,
            group: "g0".into(),
            level: 0,
            required,
            due_at: Some(Timestamp::from_millis(T0).plus(Duration::from_secs(3600))),
            claimed_by: None,
            lease_expires_at: None,
            assigned: None,
            plan,
            sample_probability: 1.0,
            created_at: Timestamp::from_millis(T0),
        },
        decisions: Vec::new(),
        parts,
    }
}

fn digest_of(parts: &CaseParts, output: &Value) -> Digest {
    parts.digest(output)
}

fn groups() -> Vec<String> {
    vec!["g0".to_owned(), "g1".to_owned()]
}

fn input(verdict: Verdict, case: &Case) -> DecisionInput {
    DecisionInput {
        verdict,
        rationale: None,
        output: None,
        labels: None,
        message: (verdict == Verdict::Respond)
            .then(|| "use the sandbox account instead".to_owned()),
        grant: None,
        seen_digest: case.proposal.digest.clone(),
    }
}

fn reviewer<'a>(name: &'a str, groups: &'a [String]) -> Reviewer<'a> {
    Reviewer { name, groups }
}

#[test]
fn respond_returns_the_proposal_with_the_message() {
    let now = Timestamp::from_millis(T0);
    let groups = groups();
    let start = case(2, TaskKind::Gate);
    let decided = decide(
        &start,
        reviewer("ann", &groups),
        input(Verdict::Respond, &start),
        now,
    )
    .unwrap();
    assert_eq!(decided.effect, Effect::Resolved);
    assert_eq!(decided.case.proposal.status, ProposalStatus::Returned);
    assert_eq!(
        decided.decision.message.as_deref(),
        Some("use the sandbox account instead")
    );

    let mut silent = input(Verdict::Respond, &start);
    silent.message = Some("  ".to_owned());
    assert!(matches!(
        decide(&start, reviewer("ann", &groups), silent, now),
        Err(ReviewError::Invalid(_))
    ));
    let mut chatty = input(Verdict::Approve, &start);
    chatty.message = Some("ok".to_owned());
    assert!(matches!(
        decide(&start, reviewer("ann", &groups), chatty, now),
        Err(ReviewError::Invalid(_))
    ));
    let after = case(1, TaskKind::PostHoc);
    assert!(matches!(
        decide(
            &after,
            reviewer("ann", &groups),
            input(Verdict::Respond, &after),
            now
        ),
        Err(ReviewError::Invalid(_))
    ));
}

#[test]
fn a_grant_needs_the_whole_quorum_and_the_policy() {
    let now = Timestamp::from_millis(T0);
    let groups = groups();
    let offer = |minutes: u64, scope| GrantTerms {
        duration: MINUTE * u32::try_from(minutes).unwrap(),
        uses: Some(10),
        scope,
    };
    let approve = |case: &Case, who: &str, grant: Option<GrantTerms>| {
        let mut it = input(Verdict::Approve, case);
        it.grant = grant;
        decide(case, reviewer(who, &groups), it, now)
    };
    // Two approvals needed: both offer, so the narrowest terms are granted.
    let start = case(2, TaskKind::Gate);
    let first = approve(&start, "ann", Some(offer(60, GrantScope::SameSubject))).unwrap();
    assert_eq!((first.effect, first.grant), (Effect::Recorded, None));
    let second = approve(&first.case, "bob", Some(offer(30, GrantScope::SameOutput))).unwrap();
    assert_eq!(second.effect, Effect::Resolved);
    let agreed = Agreed {
        terms: offer(30, GrantScope::SameOutput),
        granted_by: vec!["ann".to_owned(), "bob".to_owned()],
    };
    assert_eq!(second.grant, Some(agreed));
    // One of the two does not agree: no grant, the approval stands.
    let second = approve(&first.case, "bob", None).unwrap();
    assert_eq!((second.effect, second.grant), (Effect::Resolved, None));
    // Longer than the policy allows, or where it allows none, or on a
    // high-risk system: refused, nothing recorded.
    let refused = approve(&start, "ann", Some(offer(61, GrantScope::SameOutput)));
    assert!(matches!(refused, Err(ReviewError::GrantRefused(_))));
    for grant in [Grantable::No, Grantable::NotAtRisk(crate::RiskTier::High)] {
        let mut strict = case(1, TaskKind::Gate);
        strict.task.plan.grant = grant;
        let refused = approve(&strict, "ann", Some(offer(5, GrantScope::SameOutput)));
        assert!(matches!(refused, Err(ReviewError::GrantRefused(_))));
    }
    // Only with `approve`, only while the proposal waits.
    let mut rejecting = input(Verdict::Reject, &start);
    rejecting.grant = Some(offer(5, GrantScope::SameOutput));
    assert!(matches!(
        decide(&start, reviewer("ann", &groups), rejecting, now),
        Err(ReviewError::Invalid(_))
    ));
    let after = case(1, TaskKind::PostHoc);
    let refused = approve(&after, "ann", Some(offer(5, GrantScope::SameOutput)));
    assert!(matches!(refused, Err(ReviewError::Invalid(_))));
}

#[test]
fn quorum_needs_distinct_reviewers() {
    let now = Timestamp::from_millis(T0);
    let groups = groups();
    let start = case(2, TaskKind::Gate);
    let first = decide(
        &start,
        Reviewer {
            name: "ann",
            groups: &groups,
        },
        input(Verdict::Approve, &start),
        now,
    )
    .unwrap();
    assert_eq!(first.effect, Effect::Recorded);
    assert_eq!(first.case.proposal.status, ProposalStatus::Pending);
    let again = decide(
        &first.case,
        Reviewer {
            name: "ann",
            groups: &groups,
        },
        input(Verdict::Approve, &first.case),
        now,
    );
    assert_eq!(
        again.unwrap_err(),
        ReviewError::AlreadyVoted {
            reviewer: "ann".into()
        }
    );
    let second = decide(
        &first.case,
        Reviewer {
            name: "bob",
            groups: &groups,
        },
        input(Verdict::Approve, &first.case),
        now,
    )
    .unwrap();
    assert_eq!(second.effect, Effect::Resolved);
    assert_eq!(second.case.proposal.status, ProposalStatus::Approved);
    assert_eq!(second.case.proposal.decided_by, Some(DecidedBy::Reviewers));
    let late = decide(
        &second.case,
        Reviewer {
            name: "cid",
            groups: &groups,
        },
        input(Verdict::Approve, &second.case),
        now,
    );
    assert_eq!(
        late.unwrap_err(),
        ReviewError::AlreadyDecided { state: "done" }
    );
}

#[test]
fn modify_resets_approvals_of_the_old_digest() {
    let now = Timestamp::from_millis(T0);
    let groups = groups();
    let start = case(2, TaskKind::Gate);
    let first = decide(
        &start,
        Reviewer {
            name: "ann",
            groups: &groups,
        },
        input(Verdict::Approve, &start),
        now,
    )
    .unwrap();
    let mut edit = input(Verdict::Modify, &first.case);
    edit.output = Some(json!({"block": false}));
    let second = decide(
        &first.case,
        Reviewer {
            name: "bob",
            groups: &groups,
        },
        edit,
        now,
    )
    .unwrap();
    assert_eq!(
        second.effect,
        Effect::Recorded,
        "ann approved the old digest only"
    );
    assert_ne!(second.case.proposal.digest, start.proposal.digest);
    let stale = decide(
        &second.case,
        Reviewer {
            name: "cid",
            groups: &groups,
        },
        input(Verdict::Approve, &start),
        now,
    );
    assert!(matches!(stale, Err(ReviewError::StaleDigest { .. })));
    let third = decide(
        &second.case,
        Reviewer {
            name: "cid",
            groups: &groups,
        },
        input(Verdict::Approve, &second.case),
        now,
    )
    .unwrap();
    assert_eq!(third.effect, Effect::Resolved);
    assert!(third.case.proposal.modified);
    assert_eq!(third.case.proposal.output, json!({"block": false}));
}

#[test]
fn separation_of_duties_and_groups() {
    let now = Timestamp::from_millis(T0);
    let groups = groups();
    let start = case(1, TaskKind::Gate);
    let own = decide(
        &start,
        Reviewer {
            name: "sub",
            groups: &groups,
        },
        input(Verdict::Approve, &start),
        now,
    );
    assert_eq!(
        own.unwrap_err(),
        ReviewError::SelfApproval {
            reviewer: "sub".into()
        }
    );
    let rejected = decide(
        &start,
        Reviewer {
            name: "sub",
            groups: &groups,
        },
        input(Verdict::Reject, &start),
        now,
    )
    .unwrap();
    assert_eq!(
        rejected.case.proposal.status,
        ProposalStatus::Rejected,
        "rejecting your own proposal is fine"
    );
    let outsider = decide(
        &start,
        Reviewer {
            name: "out",
            groups: &[],
        },
        input(Verdict::Approve, &start),
        now,
    );
    assert!(matches!(outsider, Err(ReviewError::NotInGroup { .. })));
}

#[test]
fn leases_are_exclusive_until_they_lapse() {
    let now = Timestamp::from_millis(T0);
    let groups = groups();
    let start = case(1, TaskKind::Gate);
    let claimed = claim(
        &start.task,
        Reviewer {
            name: "ann",
            groups: &groups,
        },
        now,
        5 * MINUTE,
    )
    .unwrap();
    let held = claim(
        &claimed,
        Reviewer {
            name: "bob",
            groups: &groups,
        },
        now,
        5 * MINUTE,
    );
    assert!(matches!(held, Err(ReviewError::LeaseHeld { .. })));
    let mut with_lease = start.clone();
    with_lease.task = claimed.clone();
    let blocked = decide(
        &with_lease,
        Reviewer {
            name: "bob",
            groups: &groups,
        },
        input(Verdict::Approve, &start),
        now,
    );
    assert!(matches!(blocked, Err(ReviewError::LeaseHeld { .. })));
    let later = now.plus(6 * MINUTE);
    assert!(
        claim(
            &claimed,
            Reviewer {
                name: "bob",
                groups: &groups
            },
            later,
            5 * MINUTE
        )
        .is_ok()
    );
    assert!(
        release(
            &claimed,
            Reviewer {
                name: "bob",
                groups: &groups
            },
            now
        )
        .is_err()
    );
    assert_eq!(
        release(
            &claimed,
            Reviewer {
                name: "ann",
                groups: &groups
            },
            now
        )
        .unwrap()
        .state,
        TaskState::Open
    );
}

#[test]
fn timeouts_escalate_then_fail_closed() {
    let groups = groups();
    let start = case(1, TaskKind::Gate);
    let early = Timestamp::from_millis(T0).plus(MINUTE);
    assert_eq!(expire(&start, early), None);
    let due = Timestamp::from_millis(T0).plus(Duration::from_secs(3600));
    let (escalated, effect) = expire(&start, due).unwrap();
    assert_eq!(effect, Effect::Escalated);
    assert_eq!(
        (escalated.task.group.as_str(), escalated.task.level),
        ("g1", 1)
    );
    let no_more = decide(
        &escalated,
        Reviewer {
            name: "ann",
            groups: &groups,
        },
        input(Verdict::Escalate, &escalated),
        due,
    );
    assert!(matches!(no_more, Err(ReviewError::NoEscalation { .. })));
    let (timed_out, effect) = expire(&escalated, due.plus(Duration::from_secs(3600))).unwrap();
    assert_eq!(effect, Effect::Resolved);
    assert_eq!(timed_out.proposal.status, ProposalStatus::Rejected);
    assert_eq!(timed_out.proposal.decided_by, Some(DecidedBy::Timeout));
    assert_eq!(timed_out.task.state, TaskState::Expired);
}

#[test]
fn post_hoc_rejection_overrides() {
    let now = Timestamp::from_millis(T0);
    let groups = groups();
    let start = case(1, TaskKind::PostHoc);
    let done = decide(
        &start,
        Reviewer {
            name: "ann",
            groups: &groups,
        },
        input(Verdict::Reject, &start),
        now,
    )
    .unwrap();
    assert_eq!(done.effect, Effect::Overridden);
    assert!(done.case.proposal.overridden);
    assert_eq!(
        done.case.proposal.status,
        ProposalStatus::Approved,
        "terminal states never change"
    );
}

#[derive(Debug, Clone)]
enum Op {
    Claim(usize),
    Release(usize),
    Decide {
        reviewer: usize,
        verdict: Verdict,
        stale: bool,
    },
    Advance(u64),
    Cancel,
}

fn op() -> impl Strategy<Value = Op> {
    let verdict = prop_oneof![
        Just(Verdict::Approve),
        Just(Verdict::Reject),
        Just(Verdict::Modify),
        Just(Verdict::Escalate)
    ];
    prop_oneof![
        (0..5_usize).prop_map(Op::Claim),
        (0..5_usize).prop_map(Op::Release),
        (0..5_usize, verdict, any::<bool>()).prop_map(|(reviewer, verdict, stale)| Op::Decide {
            reviewer,
            verdict,
            stale
        }),
        (0..7200_u64).prop_map(Op::Advance),
        Just(Op::Cancel),
    ]
}

proptest! {
    #[test]
    fn terminal_states_never_change_and_resolve_once(
        required in 1..4_u32,
        gate in any::<bool>(),
        ops in prop::collection::vec(op(), 0..40),
    ) {
        let names = ["sub", "ann", "bob", "cid", "dan"];
        let groups = groups();
        let kind = if gate { TaskKind::Gate } else { TaskKind::PostHoc };
        let start = case(required, kind);
        let original = start.proposal.digest.clone();
        let mut state = start;
        let mut now = Timestamp::from_millis(T0);
        let mut n_resolved = 0;
        let mut terminal: Option<ProposalStatus> = None;
        for op in ops {
            let before = state.clone();
            match op {
                Op::Claim(i) => if let Ok(task) = claim(&state.task, Reviewer { name: names[i], groups: &groups }, now, 5 * MINUTE) {
                    state.task = task;
                },
                Op::Release(i) => if let Ok(task) = release(&state.task, Reviewer { name: names[i], groups: &groups }, now) {
                    state.task = task;
                },
                Op::Decide { reviewer, verdict, stale } => {
                    let mut decision = input(verdict, &state);
                    if stale { decision.seen_digest = original.clone(); }
                    if verdict == Verdict::Modify { decision.output = Some(json!({"edit": reviewer})); }
                    match decide(&state, Reviewer { name: names[reviewer], groups: &groups }, decision, now) {
                        Ok(decided) => {
                            prop_assert!(!(names[reviewer] == "sub" && matches!(verdict, Verdict::Approve | Verdict::Modify)));
                            if decided.effect == Effect::Resolved { n_resolved += 1; }
                            state = decided.case;
                        }
                        Err(_) => prop_assert_eq!(&state, &before),
                    }
                }
                Op::Cancel => match cancel(&state.proposal, std::slice::from_ref(&state.task), now) {
                    Ok((proposal, tasks)) => {
                        prop_assert!(!before.proposal.status.is_terminal());
                        prop_assert_eq!(proposal.status, ProposalStatus::Cancelled);
                        state.proposal = proposal;
                        if let Some(task) = tasks.into_iter().next() {
                            state.task = task;
                        }
                        prop_assert!(!state.task.state.is_active());
                    }
                    Err(_) => {
                        prop_assert!(before.proposal.status.is_terminal());
                        prop_assert_eq!(&state, &before);
                    }
                },
                Op::Advance(seconds) => {
                    now = now.plus(Duration::from_secs(seconds));
                    if let Some((next, effect)) = expire(&state, now) {
                        if effect == Effect::Resolved { n_resolved += 1; }
                        state = next;
                    }
                }
            }
            if let Some(status) = terminal {
                prop_assert_eq!(state.proposal.status, status);
            }
            if state.proposal.status.is_terminal() {
                terminal = Some(state.proposal.status);
            }
            let reviewers: Vec<&str> = state.decisions.iter().map(|d| d.reviewer.as_str()).collect();
            let mut unique = reviewers.clone();
            unique.sort_unstable();
            unique.dedup();
            prop_assert_eq!(unique.len(), reviewers.len());
            if state.proposal.decided_by == Some(DecidedBy::Reviewers) && state.proposal.status == ProposalStatus::Approved {
                prop_assert!(count_approvals(&state.decisions, &state.proposal.digest) >= required);
            }
        }
        prop_assert!(n_resolved <= 1);
        if !gate { prop_assert_eq!(n_resolved, 0); }
    }
}

#[test]
fn an_assigned_task_is_its_assignee_s_until_it_returns() {
    let now = Timestamp::from_millis(T0);
    let groups = groups();
    let mut start = case(2, TaskKind::Gate);
    start.task = assign(
        &start.task,
        Assigned {
            to: "ann".into(),
            delegated_from: None,
            return_at: Some(now.plus(30 * MINUTE)),
        },
    );
    // Reserved: another member can neither claim nor decide it.
    let bob = reviewer("bob", &groups);
    assert!(matches!(
        claim(&start.task, bob, now, 5 * MINUTE),
        Err(ReviewError::Assigned { ref assignee, until: Some(_) }) if assignee == "ann"
    ));
    assert!(matches!(
        decide(&start, bob, input(Verdict::Approve, &start), now),
        Err(ReviewError::Assigned { .. })
    ));
    // Past its time, it is back in the pool even before the timer runs.
    let later = now.plus(30 * MINUTE);
    assert_eq!(start.task.assignee(later), None);
    assert!(claim(&start.task, bob, later, 5 * MINUTE).is_ok());
    let returned = return_unopened(&start.task, later).unwrap();
    assert_eq!(returned.assigned, None);
    assert_eq!(return_unopened(&start.task, now), None, "not due yet");

    // Opened by ann: hers until decided, whatever the time.
    let ann = reviewer("ann", &groups);
    let opened = claim(&start.task, ann, now, 5 * MINUTE).unwrap();
    assert_eq!(opened.assigned.as_ref().unwrap().return_at, None);
    assert_eq!(opened.assignee(now.plus(600 * MINUTE)), Some("ann"));
    assert_eq!(return_unopened(&opened, now.plus(600 * MINUTE)), None);

    // Her approval does not settle a two-approval task: back to the pool,
    // for the store to hand to the next approver.
    let case = Case {
        task: opened,
        ..start.clone()
    };
    let decided = decide(&case, ann, input(Verdict::Approve, &case), now).unwrap();
    assert_eq!(decided.effect, Effect::Recorded);
    assert_eq!(decided.case.task.assigned, None);

    // Released by its assignee: back to the pool too.
    let released = release(&start.task, ann, now).unwrap();
    assert_eq!(released.assigned, None);
    assert!(matches!(
        release(&start.task, bob, now),
        Err(ReviewError::NotClaimed { .. })
    ));
}
