//! Proposals: admission (as core's `proposal::admit` decides it), reads, cancellation.

use crate::db::{Arg, Connection, Dialect, Params, Row, ToArg, params};
use loopgate_core::audit::event::Event;
use loopgate_core::grant;
use loopgate_core::proposal::{self, Proposed, SystemState};
use loopgate_core::review::{self, ReviewError, Task};
use loopgate_core::{DecidedBy, Digest, ProposalId, SystemId, TaskState, Timestamp};

use super::aggregates::Tracked;
use super::grants::{self, GrantKey};
use super::queries::{self as q, PROPOSAL_COLUMNS, to_json};
use super::{SqlStore, assign};
use crate::{
    CommentRecord, NewComment, NewProposal, Paged, ProposalFilter, ProposalRecord, StoreError,
    SubmitError, Submitted, TxError,
};

impl SqlStore {
    pub(super) async fn add_comment(
        &self,
        comment: NewComment,
        now: Timestamp,
    ) -> Result<CommentRecord, StoreError> {
        let record = CommentRecord {
            id: comment.id.clone(),
            proposal: comment.proposal.clone(),
            author: comment.author.clone(),
            body: Some(comment.body.clone()),
            created_at: now,
        };
        self.write_plain(move |conn| {
            let salt: Option<Vec<u8>> = q::one(
                conn,
                "SELECT salt FROM proposals WHERE id = ?1",
                params![comment.proposal.as_str()],
                |row| Ok(row.get::<_, Option<Vec<u8>>>(0)?.unwrap_or_default()),
            )?;
            let salt = salt.ok_or(StoreError::NotFound)?;
            conn.execute(
                "INSERT INTO comments (id, proposal_id, author, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![comment.id, comment.proposal.as_str(), comment.author, comment.body, now.millis()],
            )?;
            let event = Event::CommentAdded {
                proposal: comment.proposal.as_str(),
                comment: &comment.id,
                body: &comment.body,
                salt: &salt,
            };
            q::append(conn, now, &comment.author, &event)?;
            Ok(record.clone())
        })
        .await
    }

    pub(super) async fn comments(
        &self,
        proposal: &ProposalId,
    ) -> Result<Vec<CommentRecord>, StoreError> {
        let proposal = proposal.clone();
        self.read(move |conn| {
            let sql = "SELECT id, author, body, created_at FROM comments WHERE proposal_id = ?1 ORDER BY created_at, id";
            q::all(conn, sql, params![proposal.as_str()], |row| {
                Ok(CommentRecord {
                    id: row.get(0)?,
                    proposal: proposal.clone(),
                    author: row.get(1)?,
                    body: row.get(2)?,
                    created_at: Timestamp::from_millis(row.get(3)?),
                })
            })
        })
        .await
    }

    pub(super) async fn submit(
        &self,
        new: NewProposal,
        now: Timestamp,
    ) -> Result<Submitted, TxError<SubmitError>> {
        let keys = self.inner.grant_key.clone();
        self.write(move |conn| submit(conn, &keys, new.clone(), now))
            .await
    }

    pub(super) async fn proposal(
        &self,
        id: &ProposalId,
    ) -> Result<Option<ProposalRecord>, StoreError> {
        let id = id.clone();
        self.read(move |conn| q::proposal(conn, id.as_str())).await
    }

    pub(super) async fn replay(
        &self,
        system: &SystemId,
        key: &str,
        fingerprint: &Digest,
    ) -> Result<Option<ProposalRecord>, TxError<SubmitError>> {
        let (system, key, fingerprint) = (system.clone(), key.to_owned(), fingerprint.clone());
        self.read(move |conn| Ok(replay(conn, &system, &key, &fingerprint)))
            .await?
    }

    pub(super) async fn proposal_groups(&self, id: &ProposalId) -> Result<Vec<String>, StoreError> {
        let id = id.clone();
        self.read(move |conn| {
            let sql = "SELECT grp FROM tasks WHERE proposal_id = ?1
                       UNION SELECT first_group FROM tasks WHERE proposal_id = ?1 ORDER BY 1";
            q::all(conn, sql, params![id.as_str()], |row| row.get(0))
        })
        .await
    }

    pub(super) async fn proposals(
        &self,
        filter: ProposalFilter,
    ) -> Result<Paged<ProposalRecord>, StoreError> {
        self.read(move |conn| {
            let mut sql = format!("SELECT {PROPOSAL_COLUMNS} FROM proposals WHERE seq < ?1");
            let mut args: Vec<Arg> = vec![filter.before_seq.unwrap_or(i64::MAX).to_arg()];
            if let Some(system) = &filter.system {
                args.push(system.as_str().to_arg());
                sql.push_str(&format!(" AND system = ?{}", args.len()));
            }
            if let Some(status) = filter.status {
                args.push(status.as_str().to_arg());
                sql.push_str(&format!(" AND status = ?{}", args.len()));
            }
            if let Some(action) = &filter.action {
                args.push(action.to_arg());
                sql.push_str(&format!(" AND action = ?{}", args.len()));
            }
            if let Some(groups) = &filter.groups {
                // A reviewer's proposals: those a task of one of their
                // groups was ever on (its first group or its current one).
                let mut places = Vec::with_capacity(groups.len());
                for group in groups {
                    args.push(group.to_arg());
                    places.push(format!("?{}", args.len()));
                }
                if places.is_empty() {
                    sql.push_str(" AND 1 = 0");
                } else {
                    let places = places.join(", ");
                    sql.push_str(&format!(
                        " AND EXISTS (SELECT 1 FROM tasks t WHERE t.proposal_id = proposals.id \
                         AND (t.grp IN ({places}) OR t.first_group IN ({places})))"
                    ));
                }
            }
            args.push(i64::from(filter.limit).saturating_add(1).to_arg());
            sql.push_str(&format!(
                " ORDER BY seq DESC LIMIT CAST(?{} AS BIGINT)",
                args.len()
            ));
            let mut items = q::all(conn, &sql, args, q::proposal_row)?;
            let next = q::page_cursor(&mut items, filter.limit, |it| it.seq);
            for item in &mut items {
                item.decisions = q::decisions(conn, item.id.as_str())?;
            }
            Ok(Paged { items, next })
        })
        .await
    }

    pub(super) async fn cancel(
        &self,
        id: &ProposalId,
        actor: &str,
        now: Timestamp,
    ) -> Result<ProposalRecord, TxError<ReviewError>> {
        let (id, actor) = (id.clone(), actor.to_owned());
        self.write(move |conn| {
            q::lock_proposal(conn, id.as_str())?;
            let (proposal, tasks) =
                q::proposal_and_tasks(conn, id.as_str())?.ok_or(StoreError::NotFound)?;
            let active: Vec<Task> = tasks
                .iter()
                .filter(|task| matches!(task.state, TaskState::Open | TaskState::Claimed))
                .cloned()
                .collect();
            let (state, _, _) = q::review_parts(proposal.clone());
            let (after, ended) = review::cancel(&state, &active, now).map_err(TxError::Refused)?;
            let tracked = Tracked::of(&q::fact_of(&proposal, tasks.first()));
            conn.execute_later(
                "UPDATE proposals SET status = ?2, decided_by = ?3, decided_at = ?4 WHERE id = ?1",
                params![
                    id.as_str(),
                    after.status.as_str(),
                    after.decided_by.map(DecidedBy::as_str),
                    after.decided_at.map(Timestamp::millis)
                ],
            )?;
            for task in &ended {
                q::update_task(conn, task, now)?;
            }
            q::append(
                conn,
                now,
                &actor,
                &Event::ProposalCancelled {
                    proposal: id.as_str(),
                },
            )?;
            // The row as written; reading it back would cost a round trip.
            let record = ProposalRecord {
                status: after.status,
                decided_by: after.decided_by,
                decided_at: after.decided_at,
                ..proposal
            };
            let task = tasks.first().map(|first| {
                ended
                    .iter()
                    .find(|task| task.id == first.id)
                    .unwrap_or(first)
            });
            tracked.apply_to(conn, Some(&q::fact_of(&record, task)))?;
            Ok(record)
        })
        .await
    }

    pub(super) async fn attribute_keys(
        &self,
        system: &SystemId,
    ) -> Result<Vec<String>, StoreError> {
        let system = system.clone();
        self.read(move |conn| {
            let sql = match conn.dialect() {
                Dialect::Sqlite => {
                    "SELECT DISTINCT a.key FROM
                       (SELECT subject FROM proposals WHERE system = ?1 ORDER BY seq DESC LIMIT 1000) p,
                       json_each(p.subject, '$.attributes') a
                     ORDER BY a.key"
                }
                Dialect::Postgres => {
                    "SELECT DISTINCT a.key FROM
                       (SELECT CAST(subject AS json) -> 'attributes' AS attributes
                        FROM proposals WHERE system = ?1 ORDER BY seq DESC LIMIT 1000) p,
                       json_each(CASE json_typeof(p.attributes) WHEN 'object' THEN p.attributes ELSE '{}' END) a
                     ORDER BY a.key"
                }
            };
            conn.query_map(sql, params![system.as_str()], |row| row.get(0))
        })
        .await
    }
}

/// The idempotency lookup: only `proposals_idempotency` can serve it (see
/// its migration).
const REPLAY: &str =
    "SELECT id, fingerprint FROM proposals WHERE idempotency_key = ?2 AND system || '' = ?1";

/// The proposal `system` stored under `key`, when a submission with
/// `fingerprint` replays it; `IdempotencyConflict` when it was stored with
/// other contents.
fn replay(
    conn: &Connection,
    system: &SystemId,
    key: &str,
    fingerprint: &Digest,
) -> Result<Option<ProposalRecord>, TxError<SubmitError>> {
    let rows = conn.query_all(vec![(REPLAY, params![system.as_str(), key].into_args())])?;
    replayed(
        conn,
        rows.first().map(Vec::as_slice).unwrap_or(&[]),
        key,
        fingerprint,
    )
}

/// The stored proposal of [`REPLAY`]'s rows, if any: a conflict when its
/// request differed.
fn replayed(
    conn: &Connection,
    rows: &[Row],
    key: &str,
    fingerprint: &Digest,
) -> Result<Option<ProposalRecord>, TxError<SubmitError>> {
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let (id, stored): (String, String) = (row.get(0)?, row.get(1)?);
    let record = q::proposal(conn, &id)?.ok_or(StoreError::NotFound)?;
    if stored != fingerprint.as_str() {
        return Err(TxError::Refused(SubmitError::IdempotencyConflict {
            key: key.to_owned(),
            existing: record.id,
        }));
    }
    Ok(Some(record))
}

/// Admits and stores a new proposal. Everything admission reads goes out in
/// one round trip (the idempotency lookup, the system, each cap's use, the
/// grants it may use); with the insert and the commit a submission costs
/// three round trips on PostgreSQL (more only when its group assigns tasks
/// to people, or on a replay).
pub(super) fn submit(
    conn: &Connection,
    keys: &GrantKey,
    new: NewProposal,
    now: Timestamp,
) -> Result<Submitted, TxError<SubmitError>> {
    let group = &new.routing.review.group;
    let mut caps = proposal::caps(&new.routing, now);
    q::sort_caps(&mut caps);
    let request = grant::Request {
        system: new.system.as_str(),
        action: &new.action,
        subject: &new.subject,
        output: &new.output,
    };
    // Read before the system's state is known; dropped unless it allows
    // grants (a paused system, or one not in the loop, is rare).
    let grant_key = match proposal::routing_allows_grants(&new.routing) {
        true => Some(keys.get(conn)?),
        false => None,
    };
    // The system, and whether the review group pools its tasks (the usual
    // case).
    let system_sql = format!(
        "SELECT {}, (SELECT assignment FROM group_settings WHERE grp = ?2) FROM systems WHERE id = ?1",
        q::SYSTEM_COLUMNS
    );
    let candidates_sql = grants::candidates_sql();
    // In lock order (ARCHITECTURE.md, "Concurrent writers"): caps, then grants.
    let mut reads = Vec::with_capacity(3 + caps.len());
    if let Some(key) = &new.idempotency_key {
        reads.push((REPLAY, params![new.system.as_str(), key].into_args()));
    }
    reads.push((
        system_sql.as_str(),
        params![new.system.as_str(), group].into_args(),
    ));
    for cap in &caps {
        reads.push((
            q::auto_used_sql(conn.dialect()),
            params![cap.policy, cap.window.millis()].into_args(),
        ));
    }
    if let Some(key) = &grant_key {
        reads.push((
            candidates_sql.as_str(),
            grants::candidates_args(&request, key, now),
        ));
    }
    let mut answers = conn.query_all(reads)?.into_iter();
    let mut next = || {
        answers
            .next()
            .ok_or_else(|| StoreError::Other("admission's reads gave fewer answers".into()))
    };
    if let Some(key) = &new.idempotency_key
        && let Some(record) = replayed(conn, &next()?, key, &new.fingerprint)?
    {
        return Ok(Submitted::Existing(record));
    }
    let found = match next()?.first() {
        Some(row) => {
            let mode: Option<String> = row.get(q::AFTER_SYSTEM_COLUMNS)?;
            Some((q::system_row(row)?, mode.is_none_or(|m| m == "pool")))
        }
        None => None,
    };
    let Some((system, group_pools)) = found else {
        return Err(TxError::Refused(SubmitError::UnknownSystem(
            new.system.as_str().to_owned(),
        )));
    };
    let state = SystemState {
        oversight: system.oversight,
        status: system.status,
    };
    let mut used = Vec::with_capacity(caps.len());
    for cap in caps {
        used.push((cap, q::auto_used(&next()?)?));
    }
    let (grants, key) = match grant_key {
        Some(key) if proposal::may_use_grant(&new.routing, state) => {
            (grants::candidates(&next()?)?, key)
        }
        _ => (Vec::new(), Vec::new()),
    };
    let proposed = Proposed {
        id: &new.id,
        task_id: &new.task_id,
        system: &new.system,
        action: &new.action,
        subject: &new.subject,
        input: &new.input,
        output: &new.output,
        digest: &new.digest,
        salt: &new.salt,
        submitted_by: &new.submitted_by,
    };
    let mut admission = proposal::admit(
        &proposed,
        &new.routing,
        state,
        new.sampled,
        &used,
        (&grants, &key),
        now,
    );
    q::count_auto(conn, &admission.counted)?;
    if let Some(grant) = &admission.grant {
        grants::count_use(conn, grant)?;
    }
    let routing = &*admission.routing;
    let blind = admission.blind();
    let seq = conn.insert_returning_key(
        "INSERT INTO proposals (id, system, action, idempotency_key, digest, fingerprint, subject, input, output, confidence, explanation,
             model, context, status, route, policy_version, matched_policies, overridden, modified, blind, decided_by,
             decided_at, submitted_by, created_at, salt, ai_output, policy_errors, grant_id, batch, trace_context)
         VALUES (?1, ?2, ?3, ?4, ?5, ?22, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, 0, 0, ?21, ?17, ?18, ?19, ?20, ?23, ?8, ?24, ?25, ?26, ?27)",
        "seq",
        params![
        new.id.as_str(),
        new.system.as_str(),
        new.action,
        new.idempotency_key,
        new.digest.as_str(),
        to_json(&new.subject),
        to_json(&new.input),
        to_json(&new.output),
        new.confidence,
        new.explanation.as_ref().map(to_json),
        new.model.as_ref().map(to_json),
        to_json(&new.context),
        admission.status.as_str(),
        routing.route.as_str(),
        routing.policy_version,
        to_json(&routing.matched),
        admission.decided_by.map(|it| it.as_str()),
        admission.decided_by.map(|_| now.millis()),
        new.submitted_by,
        now.millis(),
        blind,
        new.fingerprint.as_str(),
        new.salt,
        (!routing.errors.is_empty()).then(|| to_json(&routing.errors)),
        admission.grant.as_ref().map(|it| it.id.as_str()),
        new.batch,
        new.trace_context,
    ],
    )?;
    if let Some(shadow) = &new.shadow {
        q::shadow_outcome(conn, new.id.as_str(), routing, shadow, now)?;
        q::shadow_errors(conn, new.id.as_str(), shadow, now)?;
    }
    if let Some(task) = &mut admission.task {
        let pools = group_pools && task.group == *group;
        if !pools
            && let Some(assigned) = assign::assign_task(conn, task, &new.submitted_by, &[], now)?
        {
            *task = assigned;
        }
        q::insert_task(conn, task, now)?;
    }
    for (actor, event) in admission.events(&proposed) {
        q::append(conn, now, actor, &event)?;
    }
    // The row as inserted; reading it back would cost the writer two queries.
    let record = ProposalRecord {
        seq,
        id: new.id,
        system: new.system,
        action: new.action,
        subject: new.subject,
        input: new.input,
        output: new.output,
        confidence: new.confidence,
        explanation: new.explanation,
        model: new.model,
        context: new.context,
        idempotency_key: new.idempotency_key,
        batch: new.batch,
        trace_context: new.trace_context,
        digest: new.digest,
        status: admission.status,
        route: routing.route,
        policy_version: routing.policy_version.clone(),
        matched_policies: routing.matched.clone(),
        overridden: false,
        modified: false,
        blind,
        decided_by: admission.decided_by,
        decided_at: admission.decided_by.map(|_| now),
        submitted_by: new.submitted_by,
        created_at: now,
        decisions: Vec::new(),
        salt: new.salt,
        erased_at: None,
        policy_errors: routing.errors.clone(),
        grant_id: admission.grant.as_ref().map(|it| it.id.to_string()),
    };
    let fact = q::fact_of(&record, admission.task.as_ref());
    Tracked::new(record.id.as_str()).apply_to(conn, Some(&fact))?;
    Ok(Submitted::Created(record))
}
