//! The demo's past: about 30 days of decided history per scenario, made on
//! the first start before the server goes live, so that every analytics
//! panel, `loopgate report …` and the evidence pack have figures on the
//! first visit.
//!
//! It is made by the simulator's own proposals and a seeded generator,
//! through the API like any client (so the audit log holds it and
//! verifies), while the server's clock ([`DemoClock`]) walks from 30 days
//! ago to now. The hidden rules that the dashboards should find:
//!
//! - the fraud model is overconfident between 0.80 and 0.90 (right about
//!   half the time there): a miscalibrated band on the reliability diagram;
//! - it is far less confident about cards from one country (`PL`) that are
//!   fraud as often: a fairness disparity on `country`, none on `age_band`;
//! - two clinicians (`omar`, `lena`) slip more than the rest, so they
//!   disagree with their peers on two-approval reviews;
//! - one moderator (`jun`) approves nearly everything within seconds: a
//!   possible rubber stamp;
//! - some reviews wait past their deadline (breaches, escalations, time-outs);
//! - QA samples of auto-approved items are reviewed, and a shadow policy
//!   with lower thresholds disagrees with the live one.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use loopgate_client::{Client, TaskQuery};
use loopgate_core::Timestamp;
use loopgate_proto as proto;
use loopgate_server::{Clock, SystemClock};
use serde_json::{Value, json};

use super::{POLICIES, Rng, SYSTEMS, USERS, synthetic};

/// How far back the history reaches.
pub(crate) const DAYS: i64 = 30;

/// The demo server's clock: the system clock, moved back while the history
/// is made and forward with it, never backwards, then live.
#[derive(Debug, Default)]
pub(crate) struct DemoClock {
    /// Milliseconds added to the system clock (zero or less).
    offset: AtomicI64,
}

impl DemoClock {
    /// A clock standing `days` ago.
    pub(crate) fn days_ago(days: i64) -> DemoClock {
        let clock = DemoClock::default();
        clock.offset.store(-days * 24 * 3_600_000, Ordering::SeqCst);
        clock
    }

    /// Moves the clock to `at`, or leaves it where it is when it is past `at`.
    fn go_to(&self, at: Timestamp) {
        let wanted = at.millis().saturating_sub(SystemClock.now().millis());
        self.offset.fetch_max(wanted.min(0), Ordering::SeqCst);
    }

    /// The system clock from now on.
    pub(crate) fn live(&self) {
        self.offset.store(0, Ordering::SeqCst);
    }
}

impl Clock for DemoClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(
            SystemClock
                .now()
                .millis()
                .saturating_add(self.offset.load(Ordering::SeqCst)),
        )
    }
}

/// Reviewers who worked in the past month beside `rita` and `sam`: they
/// have no password; their work shows in the analytics.
const PAST_REVIEWERS: [(&str, &[&str]); 4] = [
    ("omar", &["fraud-analysts", "clinicians", "moderators"]),
    (
        "lena",
        &["fraud-analysts", "clinicians", "moderators", "sales-ops"],
    ),
    ("jun", &["moderators", "sales-ops"]),
    ("kofi", &["fraud-leads", "clinicians", "senior-clinicians"]),
];

/// How a reviewer works: how long they usually take, how often their
/// verdict is not what the facts say, and whether they approve everything.
#[derive(Debug, Clone, Copy)]
struct Habit {
    median: Duration,
    slip: f64,
    stamp: bool,
}

fn habit(reviewer: &str) -> Habit {
    let minutes = |m: u64| Duration::from_secs(m * 60);
    match reviewer {
        "rita" => Habit {
            median: minutes(9),
            slip: 0.03,
            stamp: false,
        },
        "sam" => Habit {
            median: minutes(20),
            slip: 0.03,
            stamp: false,
        },
        "omar" => Habit {
            median: minutes(35),
            slip: 0.16,
            stamp: false,
        },
        "lena" => Habit {
            median: minutes(25),
            slip: 0.16,
            stamp: false,
        },
        "jun" => Habit {
            median: Duration::from_secs(6),
            slip: 0.0,
            stamp: true,
        },
        _ => Habit {
            median: minutes(50),
            slip: 0.04,
            stamp: false,
        },
    }
}

/// The shadow policy set: the live one with lower thresholds for automatic
/// fraud blocks and moderation, to see what they would change.
fn shadow_policies() -> String {
    POLICIES
        .replace(
            "context.confidence.greaterThanOrEqual(decimal(\"0.9\"))",
            "context.confidence.greaterThanOrEqual(decimal(\"0.85\"))",
        )
        .replace(
            "context.confidence.lessThan(decimal(\"0.9\"))",
            "context.confidence.lessThan(decimal(\"0.85\"))",
        )
        .replace(
            "context.confidence.greaterThanOrEqual(decimal(\"0.95\"))",
            "context.confidence.greaterThanOrEqual(decimal(\"0.9\"))",
        )
        .replace(
            "context.confidence.lessThan(decimal(\"0.95\"))",
            "context.confidence.lessThan(decimal(\"0.9\"))",
        )
}

/// What the history made.
#[derive(Debug, Default)]
pub(crate) struct Made {
    pub(crate) proposals: usize,
    pub(crate) decisions: usize,
}

/// One thing that happens at a time of the past.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    /// The `n`th proposal of system `system` (index into `SYSTEMS`).
    Submit { system: usize, n: u64 },
    /// A reviewer decides a task.
    Decide { task: String, reviewer: String },
    /// The hourly look for new tasks of proposals that went ahead (QA
    /// samples): a system's open tasks, read once for all of them.
    Sweep { system: usize },
}

/// A task as the history knows it.
struct Known {
    proposal: String,
    system: usize,
    digest: String,
    group: String,
    rationale: bool,
    grantable: bool,
}

/// What the AI got right or wrong, by the hidden rules.
struct Truth {
    correct: bool,
    output: Value,
}

struct History<'a> {
    clock: &'a DemoClock,
    rng: Rng,
    admin: &'a Client,
    keys: Vec<Client>,
    reviewers: HashMap<String, Client>,
    members: HashMap<String, Vec<String>>,
    queue: BinaryHeap<Reverse<(i64, u64, Step)>>,
    order: u64,
    truths: HashMap<String, Truth>,
    tasks: HashMap<String, Known>,
    /// Systems with a sweep planned.
    sweeping: HashSet<usize>,
    made: Made,
}

/// Makes `size` proposals per scenario over the past [`DAYS`] days, and
/// their reviews, then sets the clock live.
/// `keys` are the systems' API keys, in the order of `SYSTEMS`.
pub(crate) async fn make(
    base: &str,
    admin: &Client,
    keys: &[(String, String)],
    clock: &DemoClock,
    size: u64,
    seed: u64,
) -> anyhow::Result<Made> {
    let start = clock.now();
    // Half an hour short of now: the clock must never pass the real time,
    // or it would go back when it goes live.
    let end = start.plus(Duration::from_secs((DAYS * 24 * 3600 - 1800) as u64));
    let mut history = History {
        clock,
        rng: Rng(seed | 1),
        admin,
        keys: Vec::new(),
        reviewers: HashMap::new(),
        members: HashMap::new(),
        queue: BinaryHeap::new(),
        order: 0,
        truths: HashMap::new(),
        tasks: HashMap::new(),
        sweeping: HashSet::new(),
        made: Made::default(),
    };
    history.people(base).await?;
    for (_, key) in keys {
        history.keys.push(Client::new(base, key)?);
    }
    let shadow = proto::PublishPolicy {
        text: shadow_policies(),
        description: "lower thresholds for automatic fraud blocks and moderation".to_owned(),
        mode: Some(proto::PolicyMode::Shadow),
        cases: None,
    };
    admin
        .publish_policy(&shadow)
        .await
        .context("publishing the shadow policy")?;
    let span = (end.millis() - start.millis()).max(1) as u64;
    let mut n = 0;
    for system in 0..SYSTEMS.len() {
        for _ in 0..size {
            n += 1;
            let at = start.millis() + history.rng.below(span) as i64;
            history.push(at, Step::Submit { system, n });
        }
    }
    while let Some(Reverse((at, _, step))) = history.queue.pop() {
        // Reviews planned past the end wait in the queue the demo opens on.
        if end.millis() < at {
            break;
        }
        clock.go_to(Timestamp::from_millis(at));
        match step {
            Step::Submit { system, n } => history.submit(system, n).await?,
            Step::Decide { task, reviewer } => history.decide(&task, &reviewer).await?,
            Step::Sweep { system } => {
                history.sweeping.remove(&system);
                history.discover(system).await?;
            }
        }
    }
    clock.live();
    Ok(history.made)
}

impl History<'_> {
    fn push(&mut self, at: i64, step: Step) {
        self.order += 1;
        self.queue.push(Reverse((at, self.order, step)));
    }

    /// The past reviewers, and a token for every reviewer.
    async fn people(&mut self, base: &str) -> anyhow::Result<()> {
        for (username, groups) in PAST_REVIEWERS {
            let user = proto::CreateUser {
                username: username.to_owned(),
                roles: vec![proto::Role::Reviewer],
                groups: groups.iter().map(|it| (*it).to_owned()).collect(),
                password: None,
                email: None,
                slack_user_id: None,
            };
            self.admin.create_user(&user).await?;
        }
        let reviewers = USERS
            .iter()
            .filter(|(_, roles, _)| roles.contains(&proto::Role::Reviewer))
            .map(|(name, _, groups)| (*name, *groups))
            .chain(PAST_REVIEWERS);
        let users = self.admin.users().await?.items;
        for (name, groups) in reviewers {
            let Some(user) = users.iter().find(|it| it.username == name) else {
                continue;
            };
            let token = self.admin.create_token(&user.id).await?.secret;
            self.reviewers
                .insert(name.to_owned(), Client::new(base, &token)?);
            for group in groups {
                self.members
                    .entry((*group).to_owned())
                    .or_default()
                    .push(name.to_owned());
            }
        }
        Ok(())
    }

    async fn submit(&mut self, system: usize, n: u64) -> anyhow::Result<()> {
        let Some((id, ..)) = SYSTEMS.get(system) else {
            return Ok(());
        };
        let mut proposal = synthetic(id, n, &mut self.rng);
        let correct = self.truth(id, &mut proposal);
        let Some(key) = self.keys.get(system) else {
            return Ok(());
        };
        let submitted = key.submit(&proposal, None).await?;
        self.made.proposals += 1;
        self.truths.insert(
            submitted.id.clone(),
            Truth {
                correct,
                output: proposal.output,
            },
        );
        // A proposal sent to review has its task now, planned at once; one
        // that went ahead may have a QA sample, found by the hourly sweep.
        if submitted.route == proto::Route::Review {
            self.discover(system).await?;
        } else if submitted.route == proto::Route::Allow && self.sweeping.insert(system) {
            let hour = 3_600_000;
            let next = (self.clock.now().millis() / hour + 1) * hour;
            self.push(next, Step::Sweep { system });
        }
        Ok(())
    }

    /// Plans the reviews of the system's open tasks not seen before.
    async fn discover(&mut self, system: usize) -> anyhow::Result<()> {
        let Some((id, ..)) = SYSTEMS.get(system) else {
            return Ok(());
        };
        let query = TaskQuery {
            system: Some((*id).to_owned()),
            limit: Some(500),
            ..Default::default()
        };
        let open = self.admin.tasks(&query).await?.items;
        for task in open {
            if !self.tasks.contains_key(&task.id) {
                self.schedule(&task, system, &[]);
            }
        }
        Ok(())
    }

    /// The hidden rules: adjusts what the model says and draws whether it
    /// is right.
    fn truth(&mut self, system: &str, proposal: &mut proto::SubmitProposal) -> bool {
        let u = self.rng.unit();
        let (confidence, right) = match system {
            "fraud-detector" => {
                // The model is sure enough to block most cards it flags, but
                // far less sure about cards from one country (PL), though
                // they are fraud as often: the fairness report's threshold
                // (0.5) lets through few of them.
                let mut confidence = 0.5 + 0.49 * u;
                let mut right = confidence;
                if proposal.subject.attributes.get("country") == Some(&json!("PL")) {
                    confidence -= 0.35;
                    right = (confidence + 0.35).min(0.99);
                } else if (0.80..0.90).contains(&confidence) {
                    right = confidence - 0.3;
                }
                (confidence, right)
            }
            "diagnosis-assistant" => {
                let confidence = proposal.confidence.unwrap_or(0.8);
                (confidence, confidence - 0.05)
            }
            "content-moderator" => {
                // Confident enough for a share to go ahead on QA samples.
                let confidence = 0.8 + 0.2 * u.sqrt();
                (confidence, confidence - 0.02)
            }
            "lead-scorer" => (proposal.confidence.unwrap_or(0.8), 0.85),
            _ => (proposal.confidence.unwrap_or(0.8), 0.88),
        };
        let confidence = (confidence.clamp(0.0, 0.999) * 1000.0).round() / 1000.0;
        proposal.confidence = Some(confidence);
        self.rng.unit() < right
    }

    /// Plans the reviews a task needs: who, and when.
    fn schedule(&mut self, task: &proto::Task, system: usize, done: &[String]) {
        self.tasks.insert(
            task.id.clone(),
            Known {
                proposal: task.proposal_id.clone(),
                system,
                digest: task.digest.clone(),
                group: task.group.clone(),
                rationale: task.rationale_required,
                grantable: task.grantable.is_some(),
            },
        );
        let now = self.clock.now().millis();
        let due = task
            .due_at
            .as_deref()
            .and_then(Timestamp::parse_rfc3339)
            .map(Timestamp::millis);
        let slots = task.required.saturating_sub(task.approvals).max(1);
        let mut chosen: Vec<String> = done.to_vec();
        for _ in 0..slots {
            let reviewer = match &task.assignee {
                Some(assignee) if chosen.is_empty() => Some(assignee.clone()),
                _ => self.pick(&task.group, &chosen),
            };
            let Some(reviewer) = reviewer else {
                return;
            };
            chosen.push(reviewer.clone());
            let habit = habit(&reviewer);
            let mut wait = self.latency(habit.median);
            // One review in sixteen waits past its deadline.
            if let Some(due) = due
                && self.rng.below(16) == 0
            {
                let window = (due - now).max(60_000);
                wait = window + (window as f64 * (0.1 + 0.9 * self.rng.unit())) as i64;
            }
            self.push(
                now + wait,
                Step::Decide {
                    task: task.id.clone(),
                    reviewer,
                },
            );
        }
    }

    /// A member of `group` not among `not`; the two slipping clinicians
    /// review together more often than chance.
    fn pick(&mut self, group: &str, not: &[String]) -> Option<String> {
        let members: Vec<&String> = self
            .members
            .get(group)?
            .iter()
            .filter(|it| !not.contains(it))
            .collect();
        if group == "clinicians"
            && self.rng.below(2) == 0
            && let Some(pair) = members
                .iter()
                .find(|it| it.as_str() == "omar" || it.as_str() == "lena")
        {
            return Some((*pair).clone());
        }
        let index = self.rng.below(members.len() as u64) as usize;
        members.get(index).map(|it| (*it).clone())
    }

    /// A log-normal wait around `median`, in milliseconds.
    fn latency(&mut self, median: Duration) -> i64 {
        let u1 = self.rng.unit().max(1e-12);
        let u2 = self.rng.unit();
        let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        (median.as_millis() as f64 * (0.7 * normal).exp()).max(1_000.0) as i64
    }

    async fn decide(&mut self, task_id: &str, reviewer: &str) -> anyhow::Result<()> {
        let Some(task) = self.tasks.get(task_id) else {
            return Ok(());
        };
        let Some(truth) = self.truths.get(&task.proposal) else {
            return Ok(());
        };
        let system = SYSTEMS.get(task.system).map(|it| it.0).unwrap_or_default();
        let habit = habit(reviewer);
        let seen_right = if self.rng.unit() < habit.slip {
            !truth.correct
        } else {
            truth.correct
        };
        let mut decision = proto::DecisionRequest {
            verdict: proto::Verdict::Approve,
            rationale: Some(
                if seen_right {
                    "consistent with the evidence"
                } else {
                    "not supported by the evidence"
                }
                .to_owned(),
            ),
            output: None,
            labels: None,
            message: None,
            grant: None,
            seen_digest: task.digest.clone(),
        };
        if habit.stamp {
            decision.rationale = None;
        } else if !seen_right {
            decision.verdict = proto::Verdict::Reject;
            match system {
                "lead-scorer" => {
                    decision.verdict = proto::Verdict::Modify;
                    let mut output = truth.output.clone();
                    output["tier"] = json!("cold");
                    decision.output = Some(output);
                }
                "support-agent" if self.rng.below(4) == 0 => {
                    decision.verdict = proto::Verdict::Respond;
                    decision.message =
                        Some("Ask the customer for a photo of the damage first.".to_owned());
                }
                "support-agent" if truth.output.get("body").is_some() => {
                    decision.verdict = proto::Verdict::Modify;
                    let mut output = truth.output.clone();
                    output["body"] = json!(
                        "Hello, we are sorry for the trouble. A replacement is on its way; you will get a tracking number today."
                    );
                    decision.output = Some(output);
                }
                "fraud-detector" if task.group == "fraud-analysts" && self.rng.below(8) == 0 => {
                    decision.verdict = proto::Verdict::Escalate;
                    decision.rationale = Some("unusual pattern: a lead should look".to_owned());
                }
                _ => {}
            }
        } else if task.grantable && self.rng.below(6) == 0 {
            decision.grant = Some(proto::GrantOffer {
                for_: "PT1H".to_owned(),
                uses: Some(3),
                scope: proto::GrantScope::SameSubject,
            });
        }
        if !task.rationale && decision.verdict == proto::Verdict::Approve && self.rng.below(3) != 0
        {
            decision.rationale = None;
        }
        let Some(client) = self.reviewers.get(reviewer) else {
            return Ok(());
        };
        let escalated = decision.verdict == proto::Verdict::Escalate;
        match client.decide(task_id, &decision).await {
            Ok(_) => {
                self.made.decisions += 1;
                if escalated {
                    self.follow(task_id, reviewer).await?;
                }
            }
            // Decided by time-out, cancelled, or escalated by its deadline
            // meanwhile: the next group's member takes it, if it is open.
            Err(_) => self.follow(task_id, reviewer).await?,
        }
        Ok(())
    }

    /// A task that moved (escalated): plans its review in its new group.
    async fn follow(&mut self, task_id: &str, reviewer: &str) -> anyhow::Result<()> {
        let Some(known) = self.tasks.get(task_id) else {
            return Ok(());
        };
        let system = known.system;
        let old_group = known.group.clone();
        let task = self.admin.task(task_id).await?;
        let open = matches!(
            task.state,
            proto::TaskState::Open | proto::TaskState::Claimed
        );
        if open && task.group != old_group {
            self.schedule(&task, system, &[reviewer.to_owned()]);
        }
        Ok(())
    }
}
