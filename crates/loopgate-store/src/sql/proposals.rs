//! Proposals: admission (as core's `proposal::admit` decides it), reads, cancellation.

use crate::db::{Arg, Connection, Dialect, ToArg, params};
use loopgate_core::audit::event::Event;
use loopgate_core::grant;
use loopgate_core::proposal::{self, Proposed, SystemState};
use loopgate_core::review::{self, ReviewError, Task};
use loopgate_core::{DecidedBy, Digest, ProposalId, SystemId, Timestamp};

use super::aggregates::Tracked;
use super::queries::{self as q, PROPOSAL_COLUMNS, TASK_COLUMNS, to_json};
use super::{SqlStore, assign, grants};
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
        self.write(move |conn| submit(conn, new.clone(), now)).await
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
            let proposal = q::proposal(conn, id.as_str())?.ok_or(StoreError::NotFound)?;
            let sql = format!(
                "SELECT {TASK_COLUMNS} FROM tasks t JOIN proposals p ON p.id = t.proposal_id
                 WHERE t.proposal_id = ?1 AND t.state IN ('open', 'claimed') ORDER BY t.seq"
            );
            let tasks: Vec<Task> = q::all(conn, &sql, params![id.as_str()], q::task_row)?
                .into_iter()
                .map(|record| record.task)
                .collect();
            let (state, _, _) = q::review_parts(proposal);
            let (after, ended) = review::cancel(&state, &tasks, now).map_err(TxError::Refused)?;
            let tracked = Tracked::before(conn, id.as_str())?;
            conn.execute(
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
            tracked.apply(conn)?;
            q::append(
                conn,
                now,
                &actor,
                &Event::ProposalCancelled {
                    proposal: id.as_str(),
                },
            )?;
            Ok(q::proposal(conn, id.as_str())?.ok_or(StoreError::NotFound)?)
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

/// The proposal `system` stored under `key`, when a submission with
/// `fingerprint` replays it; `IdempotencyConflict` when it was stored with
/// other contents.
fn replay(
    conn: &Connection,
    system: &SystemId,
    key: &str,
    fingerprint: &Digest,
) -> Result<Option<ProposalRecord>, TxError<SubmitError>> {
    let stored: Option<(String, String)> = q::one(
        conn,
        // Only `proposals_idempotency` can serve this (see its migration).
        "SELECT id, fingerprint FROM proposals WHERE idempotency_key = ?2 AND system || '' = ?1",
        params![system.as_str(), key],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    let Some((id, stored)) = stored else {
        return Ok(None);
    };
    let record = q::proposal(conn, &id)?.ok_or(StoreError::NotFound)?;
    if stored != fingerprint.as_str() {
        return Err(TxError::Refused(SubmitError::IdempotencyConflict {
            key: key.to_owned(),
            existing: record.id,
        }));
    }
    Ok(Some(record))
}

pub(super) fn submit(
    conn: &Connection,
    new: NewProposal,
    now: Timestamp,
) -> Result<Submitted, TxError<SubmitError>> {
    if let Some(key) = &new.idempotency_key
        && let Some(record) = replay(conn, &new.system, key, &new.fingerprint)?
    {
        return Ok(Submitted::Existing(record));
    }
    // The system, and whether the review group pools its tasks (the usual
    // case): one query, so that pooling costs admission no round trip.
    let sql = format!(
        "SELECT {}, (SELECT assignment FROM group_settings WHERE grp = ?2) FROM systems WHERE id = ?1",
        q::SYSTEM_COLUMNS
    );
    let group = &new.routing.review.group;
    let found = q::one(conn, &sql, params![new.system.as_str(), group], |row| {
        let mode: Option<String> = row.get(q::AFTER_SYSTEM_COLUMNS)?;
        Ok((q::system_row(row)?, mode.is_none_or(|m| m == "pool")))
    })?;
    let Some((system, group_pools)) = found else {
        return Err(TxError::Refused(SubmitError::UnknownSystem(
            new.system.as_str().to_owned(),
        )));
    };
    let state = SystemState {
        oversight: system.oversight,
        status: system.status,
    };
    let caps = proposal::caps(&new.routing, now);
    let used = q::auto_used(conn, caps)?;
    let request = grant::Request {
        system: new.system.as_str(),
        action: &new.action,
        subject: &new.subject,
        output: &new.output,
    };
    let (grants, key) = match proposal::may_use_grant(&new.routing, state) {
        true => grants::candidates(conn, &request, now)?,
        false => (Vec::new(), Vec::new()),
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
    let seq: i64 = conn.query_row(
        "INSERT INTO proposals (id, system, action, idempotency_key, digest, fingerprint, subject, input, output, confidence, explanation,
             model, context, status, route, policy_version, matched_policies, overridden, modified, blind, decided_by,
             decided_at, submitted_by, created_at, salt, ai_output, policy_errors, grant_id, batch, trace_context)
         VALUES (?1, ?2, ?3, ?4, ?5, ?22, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, 0, 0, ?21, ?17, ?18, ?19, ?20, ?23, ?8, ?24, ?25, ?26, ?27)
         RETURNING seq",
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
        |row| row.get(0),
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
    Tracked::new(record.id.as_str()).apply(conn)?;
    Ok(Submitted::Created(record))
}
