//! `/v1/tasks`: the reviewer's queue, leases and decisions.

use std::collections::HashMap;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use loopgate_core::review::{DecisionInput, Effect};
use loopgate_core::{Digest, Role, SystemId, TaskId};
use loopgate_proto as proto;
use loopgate_store::TaskFilter;
use serde::Deserialize;

use crate::AppState;
use crate::auth::Caller;
use crate::committed::Committed;
use crate::convert;
use crate::http::error::ApiError;
use crate::http::extract::{JsonBody, Params, Path};
use crate::http::proposals::Viewer;
use crate::http::{cursor, page_limit, parse_id};

/// An offered grant's terms in core's terms (`for` parsed; the bounds are core's).
fn grant_terms(offer: &proto::GrantOffer) -> Result<loopgate_core::GrantTerms, ApiError> {
    let duration = crate::http::formats::grant_for(&offer.for_)?;
    if let Some(uses) = offer.uses
        && !(1..=loopgate_core::grant::MAX_USES).contains(&uses)
    {
        return Err(ApiError::invalid(format!(
            "`grant.uses` must be from 1 to {}, not {uses}",
            loopgate_core::grant::MAX_USES
        )));
    }
    Ok(loopgate_core::GrantTerms {
        duration,
        uses: offer.uses,
        scope: convert::scope_to_core(offer.scope),
    })
}

/// Filters of `GET /v1/tasks`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TaskQuery {
    /// open (default), claimed, done, expired, cancelled.
    pub(crate) state: Option<proto::TaskState>,
    /// Only this group (one of the caller's).
    #[param(min_length = 1)]
    pub(crate) group: Option<String>,
    /// Only this system.
    #[param(pattern = r"^[a-z][a-z0-9-]{0,63}$")]
    pub(crate) system: Option<String>,
    /// `true`: only the tasks assigned to the caller or under their lease.
    pub(crate) mine: Option<bool>,
    /// From a previous page's `next_cursor`.
    #[param(pattern = r"^c[0-9]{1,18}$")]
    pub(crate) cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub(crate) limit: Option<u32>,
}

/// The caller's queue: tasks of the caller's groups (admins and auditors see every group), oldest first.
#[utoipa::path(get, path = "/v1/tasks", tag = "tasks", params(TaskQuery),
    responses((status = 200, body = proto::Page<proto::Task>)))]
pub async fn list(
    State(app): State<AppState>,
    caller: Caller,
    Params(query): Params<TaskQuery>,
) -> Result<Json<proto::Page<proto::Task>>, ApiError> {
    let user = caller.user_with(&[Role::Reviewer, Role::Auditor])?;
    let sees_all = user
        .roles
        .iter()
        .any(|r| matches!(r, Role::Admin | Role::Auditor));
    let groups = match (query.group, sees_all) {
        (Some(group), true) => Some(vec![group]),
        (Some(group), false) if user.groups.contains(&group) => Some(vec![group]),
        (Some(group), false) => {
            return Err(ApiError::forbidden(format!(
                "you are not a member of group `{group}`"
            )));
        }
        (None, true) => None,
        (None, false) => Some(user.groups.clone()),
    };
    let filter = TaskFilter {
        groups,
        state: Some(convert::state_to_core(
            query.state.unwrap_or(proto::TaskState::Open),
        )),
        system: match query.system.as_deref() {
            Some(system) => Some(parse_id(system, SystemId::parse, "system")?),
            None => None,
        },
        mine: query.mine.unwrap_or(false).then(|| user.username.clone()),
        after_seq: cursor::decode(query.cursor.as_deref())?,
        limit: page_limit(query.limit)?,
    };
    let now = app.clock.now();
    let page = app.store.tasks(filter, now).await?;
    let items = page
        .items
        .into_iter()
        .map(|it| convert::task(it, now))
        .collect();
    Ok(Json(proto::Page {
        items,
        next_cursor: page.next.map(cursor::encode),
    }))
}

/// One task.
#[utoipa::path(get, path = "/v1/tasks/{id}", tag = "tasks", params(("id" = String, Path)),
    responses((status = 200, body = proto::Task), (status = 404, body = proto::Problem)))]
pub async fn get(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<proto::Task>, ApiError> {
    let user = caller.user_with(&[Role::Reviewer, Role::Auditor])?;
    let id = parse_id(&id, TaskId::parse, "task")?;
    let record = app
        .store
        .task(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("task", id.as_str()))?;
    // A reviewer sees the tasks of their groups, as in the queue.
    let sees_all = user
        .roles
        .iter()
        .any(|r| matches!(r, Role::Admin | Role::Auditor));
    if !sees_all && !user.groups.contains(&record.task.group) {
        return Err(ApiError::not_found("task", id.as_str()));
    }
    Ok(Json(convert::task(record, app.clock.now())))
}

/// Take (or renew) the lease on a task.
#[utoipa::path(post, path = "/v1/tasks/{id}/claim", tag = "tasks", params(("id" = String, Path)),
    responses((status = 200, body = proto::Task), (status = 409, body = proto::Problem)))]
pub async fn claim(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<proto::Task>, ApiError> {
    let reviewer = caller.reviewer()?;
    let id = parse_id(&id, TaskId::parse, "task")?;
    let now = app.clock.now();
    let record = app
        .store
        .claim(&id, &reviewer, app.config.lease, now)
        .await?;
    app.committed(Committed::LeaseMoved);
    Ok(Json(convert::task(record, now)))
}

/// Give the lease back.
#[utoipa::path(post, path = "/v1/tasks/{id}/release", tag = "tasks", params(("id" = String, Path)),
    responses((status = 200, body = proto::Task), (status = 409, body = proto::Problem)))]
pub async fn release(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<proto::Task>, ApiError> {
    let reviewer = caller.reviewer()?;
    let id = parse_id(&id, TaskId::parse, "task")?;
    let now = app.clock.now();
    let record = app.store.release(&id, &reviewer, now).await?;
    app.committed(Committed::LeaseMoved);
    Ok(Json(convert::task(record, now)))
}

/// Approve, reject, modify or escalate.
#[utoipa::path(post, path = "/v1/tasks/{id}/decision", tag = "tasks", params(("id" = String, Path)),
    request_body = proto::DecisionRequest,
    responses((status = 200, body = proto::DecisionResponse), (status = 409, body = proto::Problem),
              (status = 403, body = proto::Problem)))]
pub async fn decide(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<proto::DecisionRequest>,
) -> Result<Json<proto::DecisionResponse>, ApiError> {
    decide_one(&app, &caller, &id, body).await.map(Json)
}

/// The most decisions in one batch.
pub const MAX_BATCH: usize = 100;

/// Decide many tasks at once: each item is its own decision (digest-bound,
/// audited, checked by every rule of `POST /v1/tasks/{id}/decision`), and
/// fails alone.
#[utoipa::path(post, path = "/v1/tasks/decisions", tag = "tasks",
    request_body = proto::BatchDecisionRequest,
    responses((status = 200, body = proto::BatchDecisionResponse), (status = 422, body = proto::Problem),
              (status = 403, body = proto::Problem)))]
pub async fn decide_many(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<proto::BatchDecisionRequest>,
) -> Result<Json<proto::BatchDecisionResponse>, ApiError> {
    caller.reviewer()?;
    if body.items.is_empty() || MAX_BATCH < body.items.len() {
        return Err(ApiError::invalid(format!(
            "`items` must hold 1 to {MAX_BATCH} decisions, not {}",
            body.items.len()
        )));
    }
    // The batch is one request: an item the schema refuses refuses it
    // whole (422), before anything is decided; what fails on the state of
    // its task fails alone.
    for (n, item) in body.items.iter().enumerate() {
        if TaskId::parse(&item.task_id).is_none() {
            return Err(ApiError::invalid(format!(
                "item {n}: `{}` is not a task id",
                item.task_id
            )));
        }
        if Digest::parse(&item.seen_digest).is_none() {
            return Err(ApiError::invalid(format!(
                "item {n}: `seen_digest` must be `sha256:` and 64 hex digits"
            )));
        }
        if let Some(offer) = &item.grant {
            grant_terms(offer)?;
        }
    }
    // Decided together, so their commits share the writer's groups; but
    // items naming the same task are decided in their order (round `k`
    // holds each task's `k`-th item), so the first is the one that counts
    // and a repeat meets its result, on every store.
    let total = body.items.len();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut rounds: Vec<Vec<(usize, proto::BatchDecisionItem)>> = Vec::new();
    for (n, item) in body.items.into_iter().enumerate() {
        let round = seen.entry(item.task_id.clone()).or_insert(0);
        if rounds.len() <= *round {
            rounds.push(Vec::new());
        }
        rounds[*round].push((n, item));
        *round += 1;
    }
    let mut items: Vec<Option<proto::BatchDecisionResult>> = vec![None; total];
    for round in rounds {
        let decisions = round.into_iter().map(|(n, item)| {
            let (task_id, request) = item.into_parts();
            let (app, caller) = (&app, &caller);
            async move {
                let result = match decide_one(app, caller, &task_id, request).await {
                    Ok(decision) => proto::BatchDecisionResult {
                        task_id,
                        status: 200,
                        error: None,
                        decision: Some(decision),
                    },
                    Err(error) => {
                        let problem = error.problem();
                        proto::BatchDecisionResult {
                            task_id,
                            status: problem.status,
                            error: Some(problem),
                            decision: None,
                        }
                    }
                };
                (n, result)
            }
        });
        for (n, result) in futures::future::join_all(decisions).await {
            items[n] = Some(result);
        }
    }
    let items = items.into_iter().flatten().collect();
    Ok(Json(proto::BatchDecisionResponse { items }))
}

/// One decision, as `POST /v1/tasks/{id}/decision` makes it.
async fn decide_one(
    app: &AppState,
    caller: &Caller,
    id: &str,
    body: proto::DecisionRequest,
) -> Result<proto::DecisionResponse, ApiError> {
    let started = Instant::now();
    let start = app.clock.now();
    let reviewer = caller.reviewer()?;
    let id = parse_id(id, TaskId::parse, "task")?;
    let Some(seen_digest) = Digest::parse(&body.seen_digest) else {
        return Err(ApiError::invalid(format!(
            "`seen_digest` must be `sha256:` and 64 hex digits, not `{}`",
            body.seen_digest
        )));
    };
    if let Some(rationale) = &body.rationale
        && 10_000 < rationale.len()
    {
        return Err(ApiError::invalid("`rationale` must be at most 10000 bytes"));
    }
    if let Some(message) = &body.message
        && 10_000 < message.len()
    {
        return Err(ApiError::invalid("`message` must be at most 10000 bytes"));
    }
    let grant = match &body.grant {
        Some(offer) => Some(grant_terms(offer)?),
        None => None,
    };
    let input = DecisionInput {
        verdict: convert::verdict_to_core(body.verdict),
        rationale: body.rationale,
        output: body.output,
        labels: body.labels,
        message: body.message,
        grant,
        seen_digest,
    };
    let now = app.clock.now();
    let outcome = app.store.decide(&id, &reviewer, input, now).await?;
    app.committed(Committed::Decided {
        verdict: convert::verdict_to_core(body.verdict),
        took: started.elapsed(),
        resolved: (outcome.effect == Effect::Resolved).then_some(&outcome.proposal),
    });
    if app.traces.is_on() {
        let user = caller.user_with(&[Role::Reviewer])?;
        let trace = outcome.proposal.trace_context.as_deref();
        let task = &outcome.task.task;
        app.traces.decided(crate::otel::DecisionSpan {
            trace,
            task,
            verdict: convert::verdict_to_core(body.verdict),
            effect: crate::otel::effect_name(outcome.effect),
            reviewer: user.id.as_str(),
            start,
            took: started.elapsed(),
        });
        if outcome.effect == Effect::Escalated {
            app.traces.escalated(trace, None, task, "reviewer", now);
        }
        if !task.state.is_active() {
            app.traces.review_ended(trace, task, now);
        }
    }
    Ok(proto::DecisionResponse {
        task: convert::task(outcome.task, now),
        proposal: Viewer::of(caller)?.shown(outcome.proposal),
    })
}
