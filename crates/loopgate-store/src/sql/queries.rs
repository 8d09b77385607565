//! SQL shared by the store's resource files, on both databases: row
//! mapping, loading a review case, writing a transition, appending events.

use std::time::Duration;

use crate::db::{Connection, Dialect, OptionalExtension, Params, Row, params};
use loopgate_core::EventKind;
use loopgate_core::assign::Assigned;
use loopgate_core::audit::event::Event;
use loopgate_core::grant::Grantable;
use loopgate_core::proposal::Cap;
use loopgate_core::review::{Case, CaseParts, Decision, ProposalState, Task, count_approvals};
use loopgate_core::routing::ReviewPlan;
use loopgate_core::{
    DecidedBy, Digest, OnTimeout, ProposalId, ProposalStatus, RiskTier, Role, Route, SystemId,
    TaskId, TaskKind, TaskState, Timestamp, UserId, UserSource, Verdict,
};
use serde_json::{Map, Value};

use crate::{
    ActivationMode, AnalyticsFilter, CredentialOwner, CredentialRecord, LabelDecision, LabelRow,
    PolicyRecord, PolicyState, ProposalRecord, ReplayRow, ReviewFact, StoreError, StoredEvent,
    SystemRecord, TaskFact, TaskRecord, UserRecord, VerdictFact,
};

pub(super) const PROPOSAL_COLUMNS: &str = "seq, id, system, action, subject, input, output, confidence, explanation, model, \
     context, idempotency_key, digest, status, route, policy_version, matched_policies, overridden, modified, decided_by, \
     decided_at, submitted_by, created_at, blind, salt, erased_at, policy_errors, grant_id, batch, trace_context";

pub(super) const TASK_COLUMNS: &str = "t.seq, t.id, t.proposal_id, t.kind, t.state, t.grp, t.level, t.required, t.due_at, \
     t.claimed_by, t.lease_expires_at, t.first_group, t.sla_ms, t.escalate_to, t.on_timeout, t.blind, t.sample_probability, \
     t.created_at, p.system, p.action, p.digest, \
     t.approvals, t.rationale_required, t.grant_max_ms, t.grant_refused_tier, t.assignee, t.delegated_from, t.return_at, p.batch";

/// An event with its proposal's system and task group (joined as `p`, `t`).
pub(super) const EVENT_COLUMNS: &str =
    "e.seq, e.time, e.actor, e.type, e.subject, e.data, p.system, t.grp, p.trace_context";

/// A row of `EVENT_COLUMNS` starting at column `at`.
pub(super) fn event_row(row: &Row, at: usize) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        seq: row.get(at)?,
        time: Timestamp::from_millis(row.get(at + 1)?),
        actor: row.get(at + 2)?,
        kind: parse(
            &row.get::<_, String>(at + 3)?,
            loopgate_core::EventKind::parse,
        )?,
        subject: row.get(at + 4)?,
        data: crate::EventData::parse(row.get(at + 5)?)?,
        system: row.get(at + 6)?,
        group: row.get(at + 7)?,
        trace_context: row.get(at + 8)?,
    })
}

/// Every row of a query, mapped.
pub(super) fn all<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    map: impl Fn(&Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    conn.query_map(sql, params, map)
}

/// The first row of a query, mapped.
pub(super) fn one<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    map: impl Fn(&Row) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let mut rows = conn.query(sql, params)?;
    match rows.next()? {
        Some(row) => Ok(Some(map(row)?)),
        None => Ok(None),
    }
}

pub(super) fn parse<T>(text: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T, StoreError> {
    parse(text).ok_or_else(|| StoreError::Other(format!("unexpected stored value `{text}`")))
}

fn json_column(text: Option<String>) -> Result<Option<Value>, StoreError> {
    match text {
        None => Ok(None),
        Some(text) => Ok(Some(serde_json::from_str(&text)?)),
    }
}

pub(super) fn to_json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| String::from("null"))
}

/// A row in the order of `PROPOSAL_COLUMNS`, without decisions.
pub(super) fn proposal_row(row: &Row) -> Result<ProposalRecord, StoreError> {
    let id: String = row.get(1)?;
    let system: String = row.get(2)?;
    let context: Option<Value> = json_column(row.get(10)?)?;
    let matched: String = row.get(16)?;
    Ok(ProposalRecord {
        seq: row.get(0)?,
        id: parse(&id, ProposalId::parse)?,
        system: parse(&system, SystemId::parse)?,
        action: row.get(3)?,
        subject: serde_json::from_str(&row.get::<_, String>(4)?)?,
        input: serde_json::from_str(&row.get::<_, String>(5)?)?,
        output: serde_json::from_str(&row.get::<_, String>(6)?)?,
        confidence: row.get(7)?,
        explanation: json_column(row.get(8)?)?,
        model: json_column(row.get(9)?)?,
        context: match context {
            Some(Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        },
        idempotency_key: row.get(11)?,
        digest: parse(&row.get::<_, String>(12)?, Digest::parse)?,
        status: parse(&row.get::<_, String>(13)?, ProposalStatus::parse)?,
        route: parse(&row.get::<_, String>(14)?, Route::parse)?,
        policy_version: row.get(15)?,
        matched_policies: serde_json::from_str(&matched)?,
        overridden: row.get(17)?,
        modified: row.get(18)?,
        decided_by: match row.get::<_, Option<String>>(19)? {
            Some(text) => Some(parse(&text, DecidedBy::parse)?),
            None => None,
        },
        decided_at: row.get::<_, Option<i64>>(20)?.map(Timestamp::from_millis),
        submitted_by: row.get(21)?,
        created_at: Timestamp::from_millis(row.get(22)?),
        blind: row.get(23)?,
        salt: row.get::<_, Option<Vec<u8>>>(24)?.unwrap_or_default(),
        erased_at: row.get::<_, Option<i64>>(25)?.map(Timestamp::from_millis),
        decisions: Vec::new(),
        policy_errors: match row.get::<_, Option<String>>(26)? {
            Some(text) => serde_json::from_str(&text)?,
            None => Vec::new(),
        },
        grant_id: row.get(27)?,
        batch: row.get(28)?,
        trace_context: row.get(29)?,
    })
}

const DECISION_COLUMNS: &str =
    "reviewer, verdict, digest, rationale, output, labels, level, decided_at, message, grant_terms";

pub(super) fn decisions(conn: &Connection, proposal_id: &str) -> Result<Vec<Decision>, StoreError> {
    let sql =
        format!("SELECT {DECISION_COLUMNS} FROM decisions WHERE proposal_id = ?1 ORDER BY seq");
    all(conn, &sql, params![proposal_id], decision_row)
}

/// Task `id` with its proposal and the proposal's decisions: three reads
/// that go out together (one round trip on PostgreSQL, with whatever the
/// transaction held for later, such as its proposal's lock).
pub(super) fn task_and_proposal(
    conn: &Connection,
    id: &str,
) -> Result<Option<(TaskRecord, ProposalRecord)>, StoreError> {
    let task = format!(
        "SELECT {TASK_COLUMNS} FROM tasks t JOIN proposals p ON p.id = t.proposal_id WHERE t.id = ?1"
    );
    let proposal = format!(
        "SELECT {PROPOSAL_COLUMNS} FROM proposals WHERE id = (SELECT proposal_id FROM tasks WHERE id = ?1)"
    );
    let decisions = format!(
        "SELECT {DECISION_COLUMNS} FROM decisions
         WHERE proposal_id = (SELECT proposal_id FROM tasks WHERE id = ?1) ORDER BY seq"
    );
    let rows = conn.query_all(vec![
        (task.as_str(), params![id].into_args()),
        (proposal.as_str(), params![id].into_args()),
        (decisions.as_str(), params![id].into_args()),
    ])?;
    let [tasks, proposals, decisions] = answers(rows)?;
    let (Some(task), Some(proposal)) = (tasks.first(), proposals.first()) else {
        return Ok(None);
    };
    Ok(Some((
        task_row(task)?,
        with_decisions(proposal, &decisions)?,
    )))
}

/// The answers of `N` queries sent together (`Connection::query_all`).
pub(super) fn answers<const N: usize>(rows: Vec<Vec<Row>>) -> Result<[Vec<Row>; N], StoreError> {
    <[Vec<Row>; N]>::try_from(rows)
        .map_err(|_| StoreError::Other(format!("{N} reads gave another number of answers")))
}

/// A row of `PROPOSAL_COLUMNS` with the rows of its decisions.
fn with_decisions(proposal: &Row, decisions: &[Row]) -> Result<ProposalRecord, StoreError> {
    let mut proposal = proposal_row(proposal)?;
    proposal.decisions = decisions
        .iter()
        .map(decision_row)
        .collect::<Result<_, _>>()?;
    Ok(proposal)
}

/// Proposal `id` with its decisions, and its tasks in order: three reads
/// in one round trip.
pub(super) fn proposal_and_tasks(
    conn: &Connection,
    id: &str,
) -> Result<Option<(ProposalRecord, Vec<Task>)>, StoreError> {
    proposal_reads(conn, id, true)
}

/// Proposal `id` with its decisions, and with its tasks when asked, read in
/// one round trip.
fn proposal_reads(
    conn: &Connection,
    id: &str,
    with_tasks: bool,
) -> Result<Option<(ProposalRecord, Vec<Task>)>, StoreError> {
    let proposal = format!("SELECT {PROPOSAL_COLUMNS} FROM proposals WHERE id = ?1");
    let decisions =
        format!("SELECT {DECISION_COLUMNS} FROM decisions WHERE proposal_id = ?1 ORDER BY seq");
    // Made only when asked: a proposal's read (every `GET`) needs no tasks.
    let tasks = with_tasks.then(|| {
        format!(
            "SELECT {TASK_COLUMNS} FROM tasks t JOIN proposals p ON p.id = t.proposal_id
             WHERE t.proposal_id = ?1 ORDER BY t.seq"
        )
    });
    let mut queries = vec![
        (proposal.as_str(), params![id].into_args()),
        (decisions.as_str(), params![id].into_args()),
    ];
    if let Some(tasks) = &tasks {
        queries.push((tasks.as_str(), params![id].into_args()));
    }
    let mut rows = conn.query_all(queries)?;
    let tasks = match with_tasks {
        true => rows.pop().unwrap_or_default(),
        false => Vec::new(),
    };
    let [proposals, decisions] = answers(rows)?;
    let Some(proposal) = proposals.first() else {
        return Ok(None);
    };
    let tasks = tasks
        .iter()
        .map(|row| task_row(row).map(|record| record.task))
        .collect::<Result<_, _>>()?;
    Ok(Some((with_decisions(proposal, &decisions)?, tasks)))
}

/// A row of `DECISION_COLUMNS`.
fn decision_row(row: &Row) -> Result<Decision, StoreError> {
    let labels = match json_column(row.get(5)?)? {
        Some(Value::Object(map)) => Some(map),
        _ => None,
    };
    Ok(Decision {
        reviewer: row.get(0)?,
        verdict: parse(&row.get::<_, String>(1)?, Verdict::parse)?,
        digest: parse(&row.get::<_, String>(2)?, Digest::parse)?,
        rationale: row.get(3)?,
        output: json_column(row.get(4)?)?,
        labels,
        level: row.get(6)?,
        decided_at: Timestamp::from_millis(row.get(7)?),
        message: row.get(8)?,
        grant: match row.get::<_, Option<String>>(9)? {
            Some(text) => Some(super::grants::terms_from_json(&text)?),
            None => None,
        },
    })
}

pub(super) fn proposal(conn: &Connection, id: &str) -> Result<Option<ProposalRecord>, StoreError> {
    Ok(proposal_reads(conn, id, false)?.map(|(proposal, _)| proposal))
}

/// A row in the order of `TASK_COLUMNS`.
pub(super) fn task_row(row: &Row) -> Result<TaskRecord, StoreError> {
    let escalate_to: String = row.get(13)?;
    let plan = ReviewPlan {
        group: row.get(11)?,
        approvals: row.get(7)?,
        sla: row
            .get::<_, Option<i64>>(12)?
            .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
        escalate_to: serde_json::from_str(&escalate_to)?,
        on_timeout: parse(&row.get::<_, String>(14)?, OnTimeout::parse)?,
        blind: row.get(15)?,
        rationale_required: row.get(22)?,
        grant: match (
            row.get::<_, Option<i64>>(23)?,
            row.get::<_, Option<String>>(24)?,
        ) {
            (_, Some(tier)) => Grantable::NotAtRisk(parse(&tier, RiskTier::parse)?),
            (Some(ms), None) => {
                Grantable::UpTo(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
            }
            (None, None) => Grantable::No,
        },
    };
    let task = Task {
        id: parse(&row.get::<_, String>(1)?, TaskId::parse)?,
        proposal_id: parse(&row.get::<_, String>(2)?, ProposalId::parse)?,
        kind: parse(&row.get::<_, String>(3)?, TaskKind::parse)?,
        state: parse(&row.get::<_, String>(4)?, TaskState::parse)?,
        group: row.get(5)?,
        level: row.get(6)?,
        required: row.get(7)?,
        due_at: row.get::<_, Option<i64>>(8)?.map(Timestamp::from_millis),
        claimed_by: row.get(9)?,
        lease_expires_at: row.get::<_, Option<i64>>(10)?.map(Timestamp::from_millis),
        assigned: match row.get::<_, Option<String>>(25)? {
            Some(to) => Some(Assigned {
                to,
                delegated_from: row.get(26)?,
                return_at: row.get::<_, Option<i64>>(27)?.map(Timestamp::from_millis),
            }),
            None => None,
        },
        plan,
        sample_probability: row.get(16)?,
        created_at: Timestamp::from_millis(row.get(17)?),
    };
    Ok(TaskRecord {
        seq: row.get(0)?,
        task,
        system: parse(&row.get::<_, String>(18)?, SystemId::parse)?,
        action: row.get(19)?,
        digest: parse(&row.get::<_, String>(20)?, Digest::parse)?,
        approvals: row.get(21)?,
        batch: row.get(28)?,
    })
}

pub(super) fn task(conn: &Connection, id: &str) -> Result<Option<TaskRecord>, StoreError> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks t JOIN proposals p ON p.id = t.proposal_id WHERE t.id = ?1"
    );
    one(conn, &sql, params![id], task_row)
}

pub(super) fn insert_task(
    conn: &Connection,
    task: &Task,
    now: Timestamp,
) -> Result<(), StoreError> {
    let plan = &task.plan;
    conn.execute_later(
        "INSERT INTO tasks (id, proposal_id, kind, state, grp, level, required, due_at, claimed_by, lease_expires_at,
             first_group, sla_ms, escalate_to, on_timeout, blind, sample_probability, created_at, updated_at,
             rationale_required, grant_max_ms, grant_refused_tier, assignee, delegated_from, return_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?17, ?18, ?19, ?20, ?21, ?22, ?23)",
    params![
        task.id.as_str(),
        task.proposal_id.as_str(),
        task.kind.as_str(),
        task.state.as_str(),
        task.group,
        task.level,
        task.required,
        task.due_at.map(Timestamp::millis),
        task.claimed_by,
        task.lease_expires_at.map(Timestamp::millis),
        plan.group,
        plan.sla.map(|sla| i64::try_from(sla.as_millis()).unwrap_or(i64::MAX)),
        to_json(&plan.escalate_to),
        plan.on_timeout.as_str(),
        plan.blind,
        task.sample_probability,
        now.millis(),
        plan.rationale_required,
        match plan.grant {
            Grantable::UpTo(max) => Some(i64::try_from(max.as_millis()).unwrap_or(i64::MAX)),
            _ => None,
        },
        match plan.grant {
            Grantable::NotAtRisk(tier) => Some(tier.as_str()),
            _ => None,
        },
        task.assigned.as_ref().map(|a| a.to.as_str()),
        task.assigned.as_ref().and_then(|a| a.delegated_from.as_deref()),
        task.assigned.as_ref().and_then(|a| a.return_at).map(Timestamp::millis),
    ])?;
    Ok(())
}

pub(super) fn update_task(
    conn: &Connection,
    task: &Task,
    now: Timestamp,
) -> Result<(), StoreError> {
    update_task_counting(conn, task, now, None)
}

/// [`update_task`], and when `approvals` is given, the task's count of
/// approvals too: one row update where two would do.
fn update_task_counting(
    conn: &Connection,
    task: &Task,
    now: Timestamp,
    approvals: Option<u32>,
) -> Result<(), StoreError> {
    conn.execute_later(
        "UPDATE tasks SET state = ?2, grp = ?3, level = ?4, due_at = ?5, claimed_by = ?6, lease_expires_at = ?7, updated_at = ?8,
             assignee = ?9, delegated_from = ?10, return_at = ?11, approvals = COALESCE(?12, approvals)
         WHERE id = ?1",
    params![
        task.id.as_str(),
        task.state.as_str(),
        task.group,
        task.level,
        task.due_at.map(Timestamp::millis),
        task.claimed_by,
        task.lease_expires_at.map(Timestamp::millis),
        now.millis(),
        task.assigned.as_ref().map(|a| a.to.as_str()),
        task.assigned.as_ref().and_then(|a| a.delegated_from.as_deref()),
        task.assigned.as_ref().and_then(|a| a.return_at).map(Timestamp::millis),
        approvals,
    ])?;
    Ok(())
}

/// Loads everything a decision on `task_id` reads.
/// A task's case, and its proposal's trace context.
pub(super) fn case(
    conn: &Connection,
    task_id: &str,
) -> Result<Option<(Case, Option<String>)>, StoreError> {
    let Some(task) = task(conn, task_id)? else {
        return Ok(None);
    };
    let Some(proposal) = proposal(conn, task.task.proposal_id.as_str())? else {
        return Err(StoreError::Other(format!(
            "task `{task_id}` has no proposal"
        )));
    };
    let trace = proposal.trace_context.clone();
    Ok(Some((case_of(proposal, task.task), trace)))
}

pub(super) fn case_of(proposal: ProposalRecord, task: Task) -> Case {
    let (proposal, decisions, parts) = review_parts(proposal);
    Case {
        proposal,
        task,
        decisions,
        parts,
    }
}

/// A stored proposal as review reads it: its state, its decisions and the
/// parts a digest is computed from.
pub(super) fn review_parts(proposal: ProposalRecord) -> (ProposalState, Vec<Decision>, CaseParts) {
    let state = ProposalState {
        status: proposal.status,
        digest: proposal.digest,
        output: proposal.output,
        modified: proposal.modified,
        overridden: proposal.overridden,
        decided_by: proposal.decided_by,
        decided_at: proposal.decided_at,
        submitted_by: proposal.submitted_by,
    };
    let parts = CaseParts {
        system: proposal.system.as_str().to_owned(),
        action: proposal.action,
        subject: proposal.subject,
        input: proposal.input,
        salt: proposal.salt,
    };
    (state, proposal.decisions, parts)
}

/// Writes the proposal and task of a case as core left them.
pub(super) fn write_case(conn: &Connection, case: &Case, now: Timestamp) -> Result<(), StoreError> {
    let proposal = &case.proposal;
    conn.execute_later(
        "UPDATE proposals SET status = ?2, digest = ?3, output = ?4, modified = ?5, overridden = ?6, decided_by = ?7,
             decided_at = ?8
         WHERE id = ?1",
    params![
        case.task.proposal_id.as_str(),
        proposal.status.as_str(),
        proposal.digest.as_str(),
        to_json(&proposal.output),
        proposal.modified,
        proposal.overridden,
        proposal.decided_by.map(DecidedBy::as_str),
        proposal.decided_at.map(Timestamp::millis),
    ])?;
    let approvals = count_approvals(&case.decisions, &case.proposal.digest);
    update_task_counting(conn, &case.task, now, Some(approvals))
}

pub(super) fn insert_decision(
    conn: &Connection,
    task: &Task,
    decision: &Decision,
) -> Result<(), StoreError> {
    conn.execute_later(
        "INSERT INTO decisions (proposal_id, task_id, reviewer, verdict, digest, rationale, output, labels, level, decided_at, message,
             grant_terms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    params![
        task.proposal_id.as_str(),
        task.id.as_str(),
        decision.reviewer,
        decision.verdict.as_str(),
        decision.digest.as_str(),
        decision.rationale,
        decision.output.as_ref().map(to_json),
        decision.labels.as_ref().map(to_json),
        decision.level,
        decision.decided_at.millis(),
        decision.message,
        decision.grant.as_ref().map(super::grants::terms_to_json),
    ])?;
    Ok(())
}

/// Locks proposal `id`'s row until the transaction ends: the first lock of
/// every transition of a proposal or its tasks on PostgreSQL, so that
/// concurrent writers take turns per proposal (ARCHITECTURE.md, "Concurrent
/// writers"). Sent with the next statement; SQLite's one writer needs none.
pub(super) fn lock_proposal(conn: &Connection, id: &str) -> Result<(), StoreError> {
    if conn.dialect() == Dialect::Postgres {
        conn.execute_later(
            "SELECT 1 FROM proposals WHERE id = ?1 FOR UPDATE",
            params![id],
        )?;
    }
    Ok(())
}

/// [`lock_proposal`] of task `id`'s proposal (a task's proposal never changes).
pub(super) fn lock_proposal_of_task(conn: &Connection, id: &str) -> Result<(), StoreError> {
    if conn.dialect() == Dialect::Postgres {
        conn.execute_later(
            "SELECT 1 FROM proposals WHERE id = (SELECT proposal_id FROM tasks WHERE id = ?1) FOR UPDATE",
            params![id],
        )?;
    }
    Ok(())
}

/// Appends an event to the audit log's queue, in the caller's transaction:
/// the one way an event is written. Its data (ids, digests and salted
/// hashes, never payloads: see [`Event::data`]) is stored as canonical JSON
/// so that the sequencer only has to frame it.
pub(super) fn append(
    conn: &Connection,
    now: Timestamp,
    actor: &str,
    event: &Event<'_>,
) -> Result<(), StoreError> {
    // SQLite: `seq` is the next log position (one writer, so positions are
    // dense and in commit order). PostgreSQL's writers run in parallel: the
    // event waits in the queue until the sequencer gives it its position.
    // It is queued at the commit, after every lock the transaction takes,
    // so that the queue's order is the order of commits (see
    // `audit::give_positions`); a job's events go in one statement, in the
    // order they were made.
    conn.insert_at_commit(
        "INSERT INTO events (seq, time, actor, type, subject, data)
         VALUES ((SELECT COALESCE(MAX(seq), 0) + 1 FROM events), ?1, ?2, ?3, ?4, ?5)",
        "INSERT INTO event_queue (time, actor, type, subject, data)
         SELECT e.time, e.actor, e.type, e.subject, e.data
         FROM unnest(CAST(?1 AS BIGINT[]), CAST(?2 AS TEXT[]), CAST(?3 AS TEXT[]),
                     CAST(?4 AS TEXT[]), CAST(?5 AS TEXT[]))
              WITH ORDINALITY AS e(time, actor, type, subject, data, n)
         ORDER BY e.n",
        params![
            now.millis(),
            actor,
            event.kind().as_str(),
            event.subject(),
            event.canonical_data()
        ],
    )?;
    // The leader's sequencer hears that events wait for positions; waiters
    // on every replica hear of a settled proposal from the commit itself,
    // not from the log (its positions come a sequencer step later).
    conn.notify_after_commit(super::postgres::QUEUED, "");
    if matches!(
        event.kind(),
        EventKind::ProposalResolved | EventKind::ProposalCancelled
    ) {
        conn.notify_after_commit(super::postgres::SETTLED, event.subject());
    }
    Ok(())
}

pub(super) fn system(conn: &Connection, id: &str) -> Result<Option<SystemRecord>, StoreError> {
    let sql = format!("SELECT {SYSTEM_COLUMNS} FROM systems WHERE id = ?1");
    one(conn, &sql, params![id], system_row)
}

pub(super) const SYSTEM_COLUMNS: &str = "id, name, owner, purpose, risk_tier, oversight, status, created_at, updated_at, retention_ms, shape";
/// The position of the first column after `SYSTEM_COLUMNS`.
pub(super) const AFTER_SYSTEM_COLUMNS: usize = 11;

pub(super) fn system_row(row: &Row) -> Result<SystemRecord, StoreError> {
    Ok(SystemRecord {
        id: parse(&row.get::<_, String>(0)?, SystemId::parse)?,
        name: row.get(1)?,
        owner: row.get(2)?,
        purpose: row.get(3)?,
        risk_tier: parse(&row.get::<_, String>(4)?, loopgate_core::RiskTier::parse)?,
        oversight: parse(&row.get::<_, String>(5)?, loopgate_core::Oversight::parse)?,
        status: parse(
            &row.get::<_, String>(6)?,
            loopgate_core::SystemStatus::parse,
        )?,
        created_at: Timestamp::from_millis(row.get(7)?),
        updated_at: Timestamp::from_millis(row.get(8)?),
        retention: row
            .get::<_, Option<i64>>(9)?
            .and_then(|ms| u64::try_from(ms).ok())
            .map(Duration::from_millis),
        shape: match row.get::<_, Option<String>>(10)? {
            Some(text) => Some(serde_json::from_str(&text)?),
            None => None,
        },
    })
}

pub(super) const POLICY_COLUMNS: &str =
    "seq, version, text, description, policy_ids, created_by, created_at";

pub(super) fn policy_row(row: &Row) -> Result<PolicyRecord, StoreError> {
    Ok(PolicyRecord {
        seq: row.get(0)?,
        version: row.get(1)?,
        text: row.get(2)?,
        description: row.get(3)?,
        policy_ids: serde_json::from_str(&row.get::<_, String>(4)?)?,
        created_by: row.get(5)?,
        created_at: Timestamp::from_millis(row.get(6)?),
    })
}

/// The first stored row of a version (a text is stored once).
pub(super) fn policy(conn: &Connection, version: &str) -> Result<Option<PolicyRecord>, StoreError> {
    let sql =
        format!("SELECT {POLICY_COLUMNS} FROM policies WHERE version = ?1 ORDER BY seq LIMIT 1");
    one(conn, &sql, params![version], policy_row)
}

/// Records an activation and its audit event.
pub(super) fn activate(
    conn: &Connection,
    version: &str,
    mode: ActivationMode,
    reason: &str,
    actor: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO policy_activations (version, mode, reason, actor, at) VALUES (?1, ?2, ?3, ?4, ?5)",
    params![version, mode.as_str(), reason, actor, now.millis()])?;
    let event = match mode {
        ActivationMode::Live => Event::PolicyActivated { version, reason },
        ActivationMode::Shadow => Event::PolicyShadowStarted { version, reason },
        ActivationMode::ShadowOff => Event::PolicyShadowStopped { version, reason },
    };
    append(conn, now, actor, &event)
}

/// The live version is the latest `live` activation; the shadow version the
/// latest `shadow` activation unless a `shadow_off`, or a `live` activation
/// of the same version (a promotion), came after it.
pub(super) fn policy_state(conn: &Connection) -> Result<PolicyState, StoreError> {
    let latest = |modes: &str| -> Result<Option<(i64, String, Timestamp)>, StoreError> {
        let sql = format!(
            "SELECT seq, version, at FROM policy_activations WHERE mode IN ({modes}) ORDER BY seq DESC LIMIT 1"
        );
        one(conn, &sql, [], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                Timestamp::from_millis(row.get(2)?),
            ))
        })
    };
    let live = match latest("'live'")? {
        Some((_, version, _)) => policy(conn, &version)?,
        None => None,
    };
    let shadow = match latest("'shadow', 'shadow_off'")? {
        Some((seq, version, at)) => {
            let (is_on, promoted): (bool, bool) = conn.query_row(
                "SELECT (SELECT mode = 'shadow' FROM policy_activations WHERE seq = ?1),
                        EXISTS (SELECT 1 FROM policy_activations WHERE mode = 'live' AND version = ?2 AND seq > ?1)",
                params![seq, version],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?;
            match (is_on && !promoted, policy(conn, &version)?) {
                (true, Some(record)) => Some((record, at)),
                _ => None,
            }
        }
        None => None,
    };
    Ok(PolicyState { live, shadow })
}

/// Proposals for replay, in storage order.
pub(super) fn replay_rows(
    conn: &Connection,
    since: Timestamp,
    after: i64,
    limit: u32,
) -> Result<Vec<ReplayRow>, StoreError> {
    let sql = "SELECT p.seq, p.id, p.system, p.action, p.subject, p.context, p.confidence, p.model, p.route, p.status,
                      p.decided_by, p.erased_at IS NOT NULL,
                      (SELECT t.grp FROM tasks t WHERE t.proposal_id = p.id ORDER BY t.seq LIMIT 1)
               FROM proposals p WHERE p.seq > ?1 AND p.created_at >= ?2 ORDER BY p.seq LIMIT CAST(?3 AS BIGINT)";
    all(conn, sql, params![after, since.millis(), limit], |row| {
        let json = |i: usize| -> Result<Value, StoreError> {
            match row.get::<_, Option<String>>(i)? {
                Some(text) => Ok(serde_json::from_str(&text)?),
                None => Ok(Value::Null),
            }
        };
        let model = json(7)?;
        Ok(ReplayRow {
            seq: row.get(0)?,
            id: row.get(1)?,
            system: row.get(2)?,
            action: row.get(3)?,
            subject: json(4)?,
            context: match json(5)? {
                Value::Object(map) => map,
                _ => Map::new(),
            },
            confidence: row.get(6)?,
            model_version: model
                .get("version")
                .and_then(Value::as_str)
                .map(str::to_owned),
            route: parse(&row.get::<_, String>(8)?, loopgate_core::Route::parse)?,
            status: parse(
                &row.get::<_, String>(9)?,
                loopgate_core::ProposalStatus::parse,
            )?,
            decided_by: match row.get::<_, Option<String>>(10)? {
                Some(text) => Some(parse(&text, loopgate_core::DecidedBy::parse)?),
                None => None,
            },
            erased: row.get(11)?,
            group: row.get(12)?,
        })
    })
}

/// The statement that reads how much of a cap is used, in the order
/// admission needs: caps sorted by [`sort_caps`]. On PostgreSQL it makes
/// and locks the window's row (`INSERT … ON CONFLICT DO UPDATE …
/// RETURNING`), so that two writers admitting against one cap take turns;
/// SQLite's one writer only reads.
pub(super) fn auto_used_sql(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => {
            "SELECT count FROM auto_counters WHERE policy = ?1 AND window_start = ?2"
        }
        Dialect::Postgres => {
            "INSERT INTO auto_counters AS c (policy, window_start, count) VALUES (?1, ?2, 0)
             ON CONFLICT (policy, window_start) DO UPDATE SET count = c.count
             RETURNING count"
        }
    }
}

/// Caps in lock order: policy, then window.
pub(super) fn sort_caps(caps: &mut [Cap]) {
    caps.sort_by(|a, b| (&a.policy, a.window.millis()).cmp(&(&b.policy, b.window.millis())));
}

/// A cap's use from the rows of [`auto_used_sql`] (none: unused).
pub(super) fn auto_used(rows: &[Row]) -> Result<u64, StoreError> {
    let count: i64 = match rows.first() {
        Some(row) => row.get(0)?,
        None => 0,
    };
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Counts one automated approval against each cap (dropping past windows).
pub(super) fn count_auto(conn: &Connection, caps: &[Cap]) -> Result<(), StoreError> {
    for cap in caps {
        conn.execute_later(
            "DELETE FROM auto_counters WHERE policy = ?1 AND window_start < ?2",
            params![cap.policy, cap.window.millis()],
        )?;
        conn.execute_later(
            "INSERT INTO auto_counters AS c (policy, window_start, count) VALUES (?1, ?2, 1)
             ON CONFLICT (policy, window_start) DO UPDATE SET count = c.count + 1",
            params![cap.policy, cap.window.millis()],
        )?;
    }
    Ok(())
}

/// Records a shadow routing that disagrees with the live one: another
/// route, or another reviewer group or approval count on review.
pub(super) fn shadow_outcome(
    conn: &Connection,
    proposal: &str,
    live: &loopgate_core::routing::Routing,
    shadow: &crate::ShadowOutcome,
    now: Timestamp,
) -> Result<(), StoreError> {
    let live_group = (live.route == Route::Review).then_some(&live.review.group);
    if live.route == shadow.route && live_group == shadow.group.as_ref() {
        return Ok(());
    }
    conn.execute_later(
        "INSERT INTO shadow_disagreements
           (proposal_id, version, live_route, shadow_route, live_matched, shadow_matched, shadow_group, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
    params![
        proposal,
        shadow.version,
        live.route.as_str(),
        shadow.route.as_str(),
        serde_json::to_string(&live.matched)?,
        serde_json::to_string(&shadow.matched)?,
        shadow.group,
        now.millis()
    ])?;
    Ok(())
}

/// Records the shadow version's evaluation errors on a proposal.
pub(super) fn shadow_errors(
    conn: &Connection,
    proposal: &str,
    shadow: &crate::ShadowOutcome,
    now: Timestamp,
) -> Result<(), StoreError> {
    for error in &shadow.errors {
        conn.execute_later(
            "INSERT INTO shadow_errors (proposal_id, version, policy, message, at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            params![
                proposal,
                shadow.version,
                error.policy,
                error.message,
                now.millis()
            ],
        )?;
    }
    Ok(())
}

pub(super) const USER_COLUMNS: &str = "id, username, roles, groups_, created_at, disabled_at, email, slack_user_id, notify, source, away_until, delegate";
/// The position of the first column after `USER_COLUMNS`.
pub(super) const AFTER_USER_COLUMNS: usize = 12;

pub(super) fn user_row(row: &Row) -> Result<UserRecord, StoreError> {
    let roles: Vec<String> = serde_json::from_str(&row.get::<_, String>(2)?)?;
    let mut parsed = Vec::with_capacity(roles.len());
    for role in roles {
        parsed.push(parse(&role, Role::parse)?);
    }
    Ok(UserRecord {
        id: parse(&row.get::<_, String>(0)?, UserId::parse)?,
        username: row.get(1)?,
        roles: parsed,
        groups: serde_json::from_str(&row.get::<_, String>(3)?)?,
        created_at: Timestamp::from_millis(row.get(4)?),
        disabled_at: row.get::<_, Option<i64>>(5)?.map(Timestamp::from_millis),
        email: row.get(6)?,
        slack_user_id: row.get(7)?,
        // Choices that no longer read are the defaults.
        notify: serde_json::from_str(&row.get::<_, String>(8)?).unwrap_or_default(),
        source: parse(&row.get::<_, String>(9)?, UserSource::parse)?,
        away_until: row.get::<_, Option<i64>>(10)?.map(Timestamp::from_millis),
        delegate: row.get(11)?,
    })
}

pub(super) const CREDENTIAL_COLUMNS: &str =
    "id, name, kind, owner, created_at, last_used_at, expires_at, revoked_at";

pub(super) fn credential_row(row: &Row) -> Result<CredentialRecord, StoreError> {
    let time = |i: usize| -> Result<Option<Timestamp>, StoreError> {
        Ok(row.get::<_, Option<i64>>(i)?.map(Timestamp::from_millis))
    };
    let (kind, owner): (String, String) = (row.get(2)?, row.get(3)?);
    let owner = match kind.as_str() {
        "system" => CredentialOwner::System(parse(&owner, SystemId::parse)?),
        _ => CredentialOwner::User(parse(&owner, UserId::parse)?),
    };
    Ok(CredentialRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        owner,
        created_at: Timestamp::from_millis(row.get(4)?),
        last_used_at: time(5)?,
        expires_at: time(6)?,
        revoked_at: time(7)?,
    })
}

/// The kind and owner columns of a credential's owner.
pub(super) fn owner_columns(owner: &CredentialOwner) -> (&'static str, &str) {
    let kind = match owner {
        CredentialOwner::User(_) => "user",
        CredentialOwner::System(_) => "system",
    };
    (kind, owner.id())
}

pub(super) fn user(conn: &Connection, id: &str) -> Result<Option<UserRecord>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1");
    one(conn, &sql, params![id], user_row)
}

pub(super) fn roles_json(roles: &[Role]) -> String {
    let names: Vec<&str> = roles.iter().map(|role| role.as_str()).collect();
    to_json(&names)
}

pub(super) fn meta(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    conn.query_row(
        "SELECT value FROM meta WHERE key = ?1",
        params![key],
        |row| row.get(0),
    )
    .optional()
}

/// Proposals of a system and window with their task and decisions, oldest
/// first (analytics reads them for part of a day: the scan follows the
/// creation time).
pub(super) fn review_facts(
    conn: &Connection,
    filter: &AnalyticsFilter,
) -> Result<Vec<ReviewFact>, StoreError> {
    let mut facts = Vec::new();
    each_fact(
        conn,
        // `+p.system`: read through the time index, not the system's whole history.
        fact_query!(
            "+p.system = ?1 AND p.created_at >= ?2 AND p.created_at < ?3 AND (CAST(?4 AS TEXT) IS NULL OR p.action = ?4)"
        ),
        params![
            filter.system.as_str(),
            filter.from.millis(),
            filter.to.millis(),
            filter.action.as_deref()
        ],
        |fact| {
            facts.push(fact);
            Ok(())
        },
    )?;
    Ok(facts)
}

/// One proposal's fact.
pub(super) fn fact(conn: &Connection, id: &str) -> Result<Option<ReviewFact>, StoreError> {
    let mut found = None;
    each_fact(conn, fact_query!("p.id = ?1"), params![id], |fact| {
        found = Some(fact);
        Ok(())
    })?;
    Ok(found)
}

/// The SQL of [`each_fact`] for the proposals `$condition` selects (a
/// literal, so the statement is built at compile time, not on every read).
macro_rules! fact_query {
    ($condition:literal) => {
        concat!(
            "SELECT p.seq, p.id, p.system, p.action, p.created_at, p.decided_at, p.route, p.status, p.decided_by,
                    p.confidence, p.overridden, p.modified, json_extract(p.subject, '$.attributes'),
                    t.kind, t.state, t.level, t.due_at, t.sample_probability, t.created_at,
                    d.reviewer, d.verdict, d.decided_at, t.grp
             FROM proposals p
             LEFT JOIN tasks t ON t.proposal_id = p.id
             LEFT JOIN decisions d ON d.proposal_id = p.id
             WHERE ", $condition, "
             ORDER BY p.created_at, p.seq"
        )
    };
}
pub(super) use fact_query;

/// Streams the facts of the proposals a [`fact_query`] selects, oldest first
/// (creation time, then proposal order: the time index serves it, where
/// `ORDER BY seq` alone would have SQLite walk the whole table), in one scan (decisions joined through their index; a proposal
/// with several decisions comes as several rows in a row).
pub(super) fn each_fact(
    conn: &Connection,
    sql: &str,
    args: impl Params,
    mut each: impl FnMut(ReviewFact) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut rows = conn.query(sql, args)?;
    let mut current: Option<(i64, ReviewFact)> = None;
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        if current.as_ref().is_none_or(|(at, _)| *at != seq) {
            if let Some((_, mut done)) = current.take() {
                done.verdicts.sort_by_key(|v| v.decided_at);
                each(done)?;
            }
            let task = match row.get_ref(13)?.as_str_or_null()? {
                Some(kind) => Some(TaskFact {
                    kind: parse(kind, TaskKind::parse)?,
                    state: parse(row.get_ref(14)?.as_str()?, TaskState::parse)?,
                    level: row.get(15)?,
                    group: row.get(22)?,
                    due_at: row.get::<_, Option<i64>>(16)?.map(Timestamp::from_millis),
                    sample_probability: row.get(17)?,
                    created_at: Timestamp::from_millis(row.get(18)?),
                }),
                None => None,
            };
            let fact = ReviewFact {
                id: parse(row.get_ref(1)?.as_str()?, ProposalId::parse)?,
                system: parse(row.get_ref(2)?.as_str()?, SystemId::parse)?,
                action: row.get(3)?,
                created_at: Timestamp::from_millis(row.get(4)?),
                decided_at: row.get::<_, Option<i64>>(5)?.map(Timestamp::from_millis),
                route: parse(row.get_ref(6)?.as_str()?, Route::parse)?,
                status: parse(row.get_ref(7)?.as_str()?, ProposalStatus::parse)?,
                decided_by: match row.get_ref(8)?.as_str_or_null()? {
                    Some(text) => Some(parse(text, DecidedBy::parse)?),
                    None => None,
                },
                confidence: row.get(9)?,
                overridden: row.get(10)?,
                modified: row.get(11)?,
                attributes: attributes(row.get_ref(12)?.as_str_or_null()?)?,
                task,
                verdicts: Vec::new(),
            };
            current = Some((seq, fact));
        }
        if let (Some(reviewer), Some((_, fact))) =
            (row.get_ref(19)?.as_str_or_null()?, current.as_mut())
        {
            fact.verdicts.push(VerdictFact {
                reviewer: reviewer.to_owned(),
                verdict: parse(row.get_ref(20)?.as_str()?, Verdict::parse)?,
                decided_at: Timestamp::from_millis(row.get(21)?),
            });
        }
    }
    if let Some((_, mut done)) = current {
        done.verdicts.sort_by_key(|v| v.decided_at);
        each(done)?;
    }
    Ok(())
}

/// A subject's attributes with a value, as text, by name.
fn attributes(json: Option<&str>) -> Result<Vec<(String, String)>, StoreError> {
    let Some(json) = json else {
        return Ok(Vec::new());
    };
    Ok(attributes_of(serde_json::from_str(json)?))
}

/// [`attributes`] of the attributes' value.
fn attributes_of(value: Value) -> Vec<(String, String)> {
    let Value::Object(map) = value else {
        return Vec::new();
    };
    map.into_iter()
        .filter_map(|(name, value)| match value {
            Value::Null => None,
            Value::String(text) => Some((name, text)),
            other => Some((name, other.to_string())),
        })
        .collect()
}

/// The fact [`fact`] would read, made from rows the writer already holds:
/// `proposal` with all its decisions, and its task (a proposal has at most
/// one). A job that read or made them costs no round trip for it.
pub(super) fn fact_of(proposal: &ProposalRecord, task: Option<&Task>) -> ReviewFact {
    let mut verdicts: Vec<VerdictFact> = proposal
        .decisions
        .iter()
        .map(|decision| VerdictFact {
            reviewer: decision.reviewer.clone(),
            verdict: decision.verdict,
            decided_at: decision.decided_at,
        })
        .collect();
    verdicts.sort_by_key(|v| v.decided_at);
    ReviewFact {
        id: proposal.id.clone(),
        system: proposal.system.clone(),
        action: proposal.action.clone(),
        created_at: proposal.created_at,
        decided_at: proposal.decided_at,
        route: proposal.route,
        status: proposal.status,
        decided_by: proposal.decided_by,
        confidence: proposal.confidence,
        overridden: proposal.overridden,
        modified: proposal.modified,
        attributes: proposal
            .subject
            .get("attributes")
            .cloned()
            .map(attributes_of)
            .unwrap_or_default(),
        task: task.map(|task| TaskFact {
            kind: task.kind,
            state: task.state,
            level: task.level,
            group: task.group.clone(),
            due_at: task.due_at,
            sample_probability: task.sample_probability,
            created_at: task.created_at,
        }),
        verdicts,
    }
}

/// A page of decided, unerased proposals with their decisions.
pub(super) fn label_rows(
    conn: &Connection,
    filter: &AnalyticsFilter,
    after_seq: i64,
    limit: u32,
) -> Result<Vec<LabelRow>, StoreError> {
    let mut rows = conn.query(
        "SELECT p.seq, p.id, p.action, p.created_at, p.input, COALESCE(p.ai_output, p.output), p.output,
                p.confidence, p.status, p.decided_by, p.modified, p.subject
         FROM proposals p
         WHERE p.system = ?1 AND p.created_at >= ?2 AND p.created_at < ?3 AND (CAST(?4 AS TEXT) IS NULL OR p.action = ?4)
           AND p.seq > ?5 AND p.erased_at IS NULL
           AND EXISTS (SELECT 1 FROM decisions d WHERE d.proposal_id = p.id)
         ORDER BY p.seq LIMIT CAST(?6 AS BIGINT)",
        params![
        filter.system.as_str(),
        filter.from.millis(),
        filter.to.millis(),
        filter.action.as_deref(),
            after_seq,
            limit
        ],
    )?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let subject: Value = serde_json::from_str(&row.get::<_, String>(11)?)?;
        out.push(LabelRow {
            seq: row.get(0)?,
            id: parse(&row.get::<_, String>(1)?, ProposalId::parse)?,
            action: row.get(2)?,
            created_at: Timestamp::from_millis(row.get(3)?),
            input: serde_json::from_str(&row.get::<_, String>(4)?)?,
            ai_output: serde_json::from_str(&row.get::<_, String>(5)?)?,
            output: serde_json::from_str(&row.get::<_, String>(6)?)?,
            confidence: row.get(7)?,
            status: parse(&row.get::<_, String>(8)?, ProposalStatus::parse)?,
            decided_by: match row.get::<_, Option<String>>(9)? {
                Some(text) => Some(parse(&text, DecidedBy::parse)?),
                None => None,
            },
            modified: row.get(10)?,
            attributes: match subject.get("attributes") {
                Some(Value::Object(map)) => map.clone(),
                _ => Map::new(),
            },
            decisions: Vec::new(),
        });
    }
    for label in &mut out {
        let mut rows = conn.query(
            "SELECT reviewer, verdict, rationale, labels, decided_at FROM decisions WHERE proposal_id = ?1 ORDER BY seq",
            params![label.id.as_str()],
        )?;
        while let Some(row) = rows.next()? {
            label.decisions.push(LabelDecision {
                reviewer: row.get(0)?,
                verdict: parse(&row.get::<_, String>(1)?, Verdict::parse)?,
                rationale: row.get(2)?,
                labels: match row.get::<_, Option<String>>(3)? {
                    Some(text) => Some(serde_json::from_str(&text)?),
                    None => None,
                },
                decided_at: Timestamp::from_millis(row.get(4)?),
            });
        }
    }
    Ok(out)
}

/// Trims the look-ahead row of a page and returns the next cursor.
pub(super) fn page_cursor<T>(
    items: &mut Vec<T>,
    limit: u32,
    seq: impl Fn(&T) -> i64,
) -> Option<i64> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if items.len() <= limit {
        return None;
    }
    items.truncate(limit);
    items.last().map(seq)
}

/// An outbox's attempts table: `webhook_attempts` (keyed by `seq`) or
/// `notification_attempts` (keyed by `id`).
#[derive(Clone, Copy)]
pub(super) struct Attempts {
    pub(super) table: &'static str,
    pub(super) key: &'static str,
}

impl Attempts {
    /// Records attempt `n` of message `id` (again, if a crash repeated it).
    pub(super) fn insert(
        self,
        conn: &Connection,
        id: i64,
        n: i64,
        result: &crate::AttemptResult,
    ) -> Result<(), StoreError> {
        let Attempts { table, key } = self;
        conn.execute(
            &format!(
                "INSERT INTO {table} ({key}, n, time, status, error, duration_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT ({key}, n) DO UPDATE SET time = excluded.time, status = excluded.status,
                     error = excluded.error, duration_ms = excluded.duration_ms"
            ),
            params![
                id,
                n,
                result.time.millis(),
                result.status,
                result.error,
                result.duration_ms
            ],
        )?;
        Ok(())
    }

    /// Every attempt of message `id`, oldest first.
    pub(super) fn history(
        self,
        conn: &Connection,
        id: i64,
    ) -> Result<Vec<crate::AttemptRecord>, StoreError> {
        let Attempts { table, key } = self;
        all(
            conn,
            &format!(
                "SELECT n, time, status, error, duration_ms FROM {table} WHERE {key} = ?1 ORDER BY n"
            ),
            params![id],
            |row| {
                Ok(crate::AttemptRecord {
                    n: row.get(0)?,
                    time: Timestamp::from_millis(row.get(1)?),
                    status: row.get(2)?,
                    error: row.get(3)?,
                    duration_ms: row.get(4)?,
                })
            },
        )
    }
}

/// A page of `limit` rows read newest first (the query asked one more):
/// the next page starts before the last row kept.
pub(super) fn newest_first<T>(
    mut items: Vec<T>,
    limit: u32,
    key: impl Fn(&T) -> i64,
) -> crate::Paged<T> {
    let next = match items.len() > limit as usize {
        true => {
            items.truncate(limit as usize);
            items.last().map(key)
        }
        false => None,
    };
    crate::Paged { items, next }
}
