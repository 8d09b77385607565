//! Review tasks and decisions: claims, decisions and deadlines, each a transition core decided.

use std::time::Duration;

use crate::db::{Arg, Connection, ToArg, params};
use loopgate_core::audit::event::{Event, LOOPGATE_ACTOR};
use loopgate_core::review::{self, DecisionInput, Effect, ReviewError, Reviewer, Task};
use loopgate_core::{ProposalStatus, TaskId, TaskState, Timestamp};

use super::aggregates::Tracked;
use super::queries::{self as q, TASK_COLUMNS};
use super::{SqlStore, assign, grants};
use crate::{
    DecisionOutcome, Paged, ProposalRecord, ReviewerRef, StoreError, TaskFilter, TaskRecord,
    TimerOutcome, TxError,
};

impl SqlStore {
    pub(super) async fn tasks(
        &self,
        filter: TaskFilter,
        now: Timestamp,
    ) -> Result<Paged<TaskRecord>, StoreError> {
        self.read(move |conn| {
            let (sql, args) = queue_query(&filter, now);
            let Some(sql) = sql else {
                return Ok(Paged {
                    items: Vec::new(),
                    next: None,
                });
            };
            let mut items = q::all(conn, &sql, args, q::task_row)?;
            let next = q::page_cursor(&mut items, filter.limit, |it| it.seq);
            Ok(Paged { items, next })
        })
        .await
    }

    pub(super) async fn task(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError> {
        let id = id.clone();
        self.read(move |conn| q::task(conn, id.as_str())).await
    }

    pub(super) async fn claim(
        &self,
        id: &TaskId,
        reviewer: &ReviewerRef,
        lease: Duration,
        now: Timestamp,
    ) -> Result<TaskRecord, TxError<ReviewError>> {
        let transition = move |task: &Task, who: Reviewer<'_>| review::claim(task, who, now, lease);
        self.move_lease(
            id,
            reviewer,
            now,
            |task| Event::TaskClaimed(task),
            transition,
        )
        .await
    }

    pub(super) async fn release(
        &self,
        id: &TaskId,
        reviewer: &ReviewerRef,
        now: Timestamp,
    ) -> Result<TaskRecord, TxError<ReviewError>> {
        let transition = move |task: &Task, who: Reviewer<'_>| review::release(task, who, now);
        self.move_lease(
            id,
            reviewer,
            now,
            |task| Event::TaskReleased(task),
            transition,
        )
        .await
    }

    pub(super) async fn decide(
        &self,
        id: &TaskId,
        reviewer: &ReviewerRef,
        input: DecisionInput,
        now: Timestamp,
    ) -> Result<DecisionOutcome, TxError<ReviewError>> {
        let (id, reviewer) = (id.clone(), reviewer.clone());
        let keys = self.inner.grant_key.clone();
        self.write(move |conn| {
            q::lock_proposal_of_task(conn, id.as_str())?;
            let (task, proposal) =
                q::task_and_proposal(conn, id.as_str())?.ok_or(StoreError::NotFound)?;
            let case = q::case_of(proposal.clone(), task.task.clone());
            let who = Reviewer {
                name: &reviewer.name,
                groups: &reviewer.groups,
            };
            let mut decided =
                review::decide(&case, who, input.clone(), now).map_err(TxError::Refused)?;
            let reassigned =
                assign::after_transition(conn, &mut decided.case, decided.effect, now)?;
            let tracked = Tracked::of(&q::fact_of(&proposal, Some(&task.task)));
            let actor = format!("user:{}", reviewer.name);
            q::insert_decision(conn, &decided.case.task, &decided.decision)?;
            q::write_case(conn, &decided.case, now)?;
            let event = Event::DecisionRecorded {
                task: &decided.case.task,
                decision: &decided.decision,
                seen: &case.proposal.digest,
                salt: &case.parts.salt,
            };
            q::append(conn, now, &actor, &event)?;
            effect_events(conn, now, &actor, &decided.case, decided.effect)?;
            if reassigned && decided.effect == Effect::Recorded {
                q::append(
                    conn,
                    now,
                    LOOPGATE_ACTOR,
                    &Event::TaskAssigned(&decided.case.task),
                )?;
            }
            let grant = match decided.grant {
                Some(agreed) => {
                    let grant = grants::made(
                        conn,
                        &keys,
                        agreed,
                        &proposal,
                        &decided.case.task.group,
                        now,
                    )?;
                    grants::insert(conn, &grant, &actor, now)?;
                    Some(grant)
                }
                None => None,
            };
            // The answer is built from the transition; reading it back would cost the writer three queries.
            let after = &decided.case;
            let task = TaskRecord {
                task: after.task.clone(),
                digest: after.proposal.digest.clone(),
                approvals: review::count_approvals(&after.decisions, &after.proposal.digest),
                ..task
            };
            let proposal = ProposalRecord {
                status: after.proposal.status,
                digest: after.proposal.digest.clone(),
                output: after.proposal.output.clone(),
                modified: after.proposal.modified,
                overridden: after.proposal.overridden,
                decided_by: after.proposal.decided_by,
                decided_at: after.proposal.decided_at,
                decisions: after.decisions.clone(),
                ..proposal
            };
            tracked.apply_to(conn, Some(&q::fact_of(&proposal, Some(&after.task))))?;
            Ok(DecisionOutcome {
                task,
                proposal,
                effect: decided.effect,
                grant,
            })
        })
        .await
    }

    pub(super) async fn run_timers(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<TimerOutcome>, StoreError> {
        self.write_plain(move |conn| {
            // The proposals of due tasks, locked in id order (PostgreSQL);
            // a task whose proposal was not locked waits for the next run.
            let locked = lock_due(conn, now, limit)?;
            let ids: Vec<String> = conn.query_map(
                "SELECT id FROM tasks WHERE state IN ('open', 'claimed') AND due_at IS NOT NULL AND due_at <= ?1
                 ORDER BY due_at LIMIT CAST(?2 AS BIGINT)",
                params![now.millis(), limit],
                |row| row.get(0),
            )?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                let Some((case, trace_context)) = q::case(conn, &id)? else { continue };
                if locked
                    .as_ref()
                    .is_some_and(|locked| !locked.contains(case.task.proposal_id.as_str()))
                {
                    continue;
                }
                let Some((mut next, effect)) = review::expire(&case, now) else { continue };
                assign::after_transition(conn, &mut next, effect, now)?;
                let tracked = Tracked::before(conn, next.task.proposal_id.as_str())?;
                q::write_case(conn, &next, now)?;
                tracked.apply(conn)?;
                effect_events(conn, now, "loopgate", &next, effect)?;
                out.push(TimerOutcome {
                    proposal_id: next.task.proposal_id.clone(),
                    status: next.proposal.status,
                    effect,
                    before: case.task,
                    after: next.task.clone(),
                    trace_context,
                });
            }
            grants::end_expired(conn, now, limit)?;
            assign::return_unopened(conn, now, limit, locked.as_ref())?;
            Ok(out)
        })
        .await
    }

    pub(super) async fn queue_depth(
        &self,
        now: Timestamp,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(move |conn| super::aggregates::queue_depth(conn, now))
            .await
    }
}

impl SqlStore {
    /// Claim and release: load the task, let core move its lease, write the
    /// task and its event.
    async fn move_lease(
        &self,
        id: &TaskId,
        reviewer: &ReviewerRef,
        now: Timestamp,
        event: impl for<'t> Fn(&'t Task) -> Event<'t> + Send + 'static,
        transition: impl Fn(&Task, Reviewer<'_>) -> Result<Task, ReviewError> + Send + 'static,
    ) -> Result<TaskRecord, TxError<ReviewError>> {
        let (id, reviewer) = (id.clone(), reviewer.clone());
        self.write(move |conn| {
            q::lock_proposal_of_task(conn, id.as_str())?;
            let record = q::task(conn, id.as_str())?.ok_or(StoreError::NotFound)?;
            let who = Reviewer {
                name: &reviewer.name,
                groups: &reviewer.groups,
            };
            let task = transition(&record.task, who).map_err(TxError::Refused)?;
            q::update_task(conn, &task, now)?;
            let actor = format!("user:{}", reviewer.name);
            q::append(conn, now, &actor, &event(&task))?;
            // An assignee who let go gave the task back to the pool.
            if let Some(from) = record.task.assignee(now)
                && task.assigned.is_none()
            {
                let event = Event::TaskReturned {
                    task: &task,
                    from,
                    reason: "released",
                };
                q::append(conn, now, &actor, &event)?;
            }
            Ok(TaskRecord { task, ..record })
        })
        .await
    }
}

/// The page of tasks `filter` asks for (one more than its limit, to know
/// whether another page follows); `None` when it can hold nothing.
///
/// A queue's page costs the same with a hundred or a million open tasks:
/// active tasks (open or claimed) are read in queue order from partial
/// indexes (`tasks_active`, per group, and `tasks_active_all`), each of a
/// reviewer's groups on its own and at most a page of each, so that no
/// query sorts the whole queue.
fn queue_query(filter: &TaskFilter, now: Timestamp) -> (Option<String>, Vec<Arg>) {
    let mut args: Vec<Arg> = vec![filter.after_seq.unwrap_or(0).to_arg()];
    // Every condition but the group's, on `t` and `p`.
    let mut conditions = String::from("t.seq > ?1");
    let active = matches!(filter.state, Some(TaskState::Open | TaskState::Claimed));
    match filter.state {
        Some(TaskState::Open) => {
            args.push(now.millis().to_arg());
            let n = args.len();
            conditions.push_str(&format!(
                " AND t.state IN ('open', 'claimed') AND (t.state = 'open' OR t.lease_expires_at <= ?{n})"
            ));
        }
        Some(TaskState::Claimed) => {
            args.push(now.millis().to_arg());
            let n = args.len();
            conditions.push_str(&format!(
                " AND t.state IN ('open', 'claimed') AND t.state = 'claimed' AND t.lease_expires_at > ?{n}"
            ));
        }
        Some(state) => {
            args.push(state.as_str().to_arg());
            conditions.push_str(&format!(" AND t.state = ?{}", args.len()));
        }
        None => (),
    }
    if let Some(system) = &filter.system {
        args.push(system.as_str().to_arg());
        conditions.push_str(&format!(" AND p.system = ?{}", args.len()));
    }
    if let Some(me) = &filter.mine {
        args.push(me.to_arg());
        let who = args.len();
        args.push(now.millis().to_arg());
        let n = args.len();
        conditions.push_str(&format!(
            " AND ((t.assignee = ?{who} AND (t.return_at IS NULL OR t.return_at > ?{n}))
               OR (t.claimed_by = ?{who} AND t.state = 'claimed' AND t.lease_expires_at > ?{n}))"
        ));
    }
    args.push(i64::from(filter.limit).saturating_add(1).to_arg());
    let limit = args.len();
    let from = "FROM tasks t JOIN proposals p ON p.id = t.proposal_id";
    // SQLite's planner would rather read `tasks_queue` by state and sort
    // the whole queue; PostgreSQL's finds the partial index by itself
    // (`INDEXED BY` is rewritten away for it).
    let from_active = |index: &str| {
        format!("FROM tasks t INDEXED BY {index} JOIN proposals p ON p.id = t.proposal_id")
    };
    let sql = match &filter.groups {
        Some(groups) if groups.is_empty() => return (None, args),
        // Each group's first page from its index, then the page of those.
        Some(groups) if active => {
            let mut pages = Vec::with_capacity(groups.len());
            for group in groups {
                args.push(group.to_arg());
                pages.push(format!(
                    "SELECT seq FROM (SELECT t.seq {} WHERE t.grp = ?{} AND {conditions}
                     ORDER BY t.seq LIMIT CAST(?{limit} AS BIGINT)) g{}",
                    from_active("tasks_active"),
                    args.len(),
                    pages.len()
                ));
            }
            format!(
                "SELECT {TASK_COLUMNS} {from} WHERE t.seq IN ({})
                 ORDER BY t.seq LIMIT CAST(?{limit} AS BIGINT)",
                pages.join(" UNION ALL ")
            )
        }
        Some(groups) => {
            let start = args.len() + 1;
            args.extend(groups.iter().map(ToArg::to_arg));
            let marks: Vec<String> = (start..=args.len()).map(|i| format!("?{i}")).collect();
            format!(
                "SELECT {TASK_COLUMNS} {from} WHERE {conditions} AND t.grp IN ({})
                 ORDER BY t.seq LIMIT CAST(?{limit} AS BIGINT)",
                marks.join(", ")
            )
        }
        None if active => format!(
            "SELECT {TASK_COLUMNS} {} WHERE {conditions} ORDER BY t.seq LIMIT CAST(?{limit} AS BIGINT)",
            from_active("tasks_active_all")
        ),
        None => format!(
            "SELECT {TASK_COLUMNS} {from} WHERE {conditions} ORDER BY t.seq LIMIT CAST(?{limit} AS BIGINT)"
        ),
    };
    (Some(sql), args)
}

/// PostgreSQL: locks the proposals of tasks past their deadline or their
/// return time, in id order, and names them; `None` on SQLite.
fn lock_due(
    conn: &Connection,
    now: Timestamp,
    limit: u32,
) -> Result<Option<std::collections::HashSet<String>>, StoreError> {
    if conn.dialect() != crate::db::Dialect::Postgres {
        return Ok(None);
    }
    let ids: Vec<String> = conn.query_map(
        "SELECT id FROM proposals WHERE id IN (
             (SELECT proposal_id FROM tasks
              WHERE state IN ('open', 'claimed') AND due_at IS NOT NULL AND due_at <= ?1
              ORDER BY due_at LIMIT CAST(?2 AS BIGINT))
             UNION
             (SELECT proposal_id FROM tasks
              WHERE return_at IS NOT NULL AND return_at <= ?1 AND state IN ('open', 'claimed')
              ORDER BY return_at LIMIT CAST(?2 AS BIGINT)))
         ORDER BY id FOR UPDATE",
        params![now.millis(), limit],
        |row| row.get(0),
    )?;
    Ok(Some(ids.into_iter().collect()))
}

pub(super) fn effect_events(
    conn: &Connection,
    now: Timestamp,
    actor: &str,
    case: &review::Case,
    effect: Effect,
) -> Result<(), StoreError> {
    let event = match effect {
        Effect::Recorded | Effect::Confirmed => return Ok(()),
        Effect::Escalated => Event::TaskEscalated(&case.task),
        Effect::Expired => Event::TaskExpired(&case.task),
        Effect::Overridden => Event::ProposalOverridden {
            proposal: case.task.proposal_id.as_str(),
            task: case.task.id.as_str(),
        },
        Effect::Resolved => {
            if case.task.state == TaskState::Expired {
                q::append(conn, now, actor, &Event::TaskExpired(&case.task))?;
            }
            debug_assert!(case.proposal.status != ProposalStatus::Pending);
            Event::ProposalResolved {
                proposal: case.task.proposal_id.as_str(),
                outcome: case.proposal.status,
                decided_by: case.proposal.decided_by,
                digest: &case.proposal.digest,
                modified: Some(case.proposal.modified),
                grant: None,
            }
        }
    };
    q::append(conn, now, actor, &event)
}
