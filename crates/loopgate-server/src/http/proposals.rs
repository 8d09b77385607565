//! `/v1/proposals`: submit (with idempotency and long-poll), read, list, cancel.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use loopgate_core::audit::entry::SALT_LEN;
use loopgate_core::digest::DigestParts;
use loopgate_core::routing::value::check_exact;
use loopgate_core::routing::{
    Defaults, ReviewPlan, RoutingRequest, ShapeRule, TypedInput, is_sampled, route, typed_input,
};
use loopgate_core::{Digest, ProposalId, Role, Route, SystemId, TaskId, Timestamp};
use loopgate_proto as proto;
use loopgate_store::{
    NewProposal, ProposalFilter, ProposalRecord, ShadowOutcome, StoreError, Submitted,
    SystemRecord, TxError,
};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::auth::Caller;
use crate::committed::Committed;
use crate::convert;
use crate::http::error::ApiError;
use crate::http::extract::{JsonBody, JsonBodyText, Params, Path};
use crate::http::{cursor, page_limit, parse_id};
use crate::limits::Held;
use crate::waiters::Subscription;

/// `?wait=30s`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    /// Long-poll: return as soon as the proposal is resolved, or after this
    /// long (at most 60 s; longer waits wait 60 s): seconds, or with `ms`,
    /// `s` or `m` (`30s`, `500ms`), or ISO 8601 seconds (`PT30S`).
    #[param(pattern = r"^([0-9]{1,9}(\.[0-9]{1,3})?(ms|s|m)?|PT[0-9]{1,9}(\.[0-9]{1,3})?S)$")]
    pub(crate) wait: Option<String>,
}

/// Submit a proposal.
#[utoipa::path(post, path = "/v1/proposals", tag = "proposals", params(WaitQuery),
    request_body = proto::SubmitProposal,
    responses((status = 201, body = proto::Proposal, description = "accepted and stored"),
              (status = 200, body = proto::Proposal, description = "idempotent replay"),
              (status = 409, body = proto::Problem), (status = 422, body = proto::Problem)))]
pub async fn submit(
    State(app): State<AppState>,
    caller: Caller,
    Params(query): Params<WaitQuery>,
    headers: HeaderMap,
    JsonBodyText(body, text): JsonBodyText<proto::SubmitProposal>,
) -> Result<(StatusCode, Json<proto::Proposal>), ApiError> {
    let trace = app.traces.submit(&headers, app.clock.now());
    let (status, record, waiting) =
        match store_proposal(&app, &caller, query, &headers, body, &text, &trace).await {
            Ok(stored) => stored,
            Err(error) => {
                trace.finish(Err(error.code().as_str()));
                return Err(error);
            }
        };
    trace.finish(Ok((&record, status == StatusCode::OK)));
    let record = match waiting {
        Some((wait, held, subscription)) if !record.status.is_terminal() => match status {
            StatusCode::CREATED => {
                wait_on(&app, &caller, held, subscription, &record, wait).await?
            }
            // An idempotent replay has another id than the one subscribed to.
            _ => {
                drop(held);
                wait_for(&app, &caller, &record.id, wait).await?
            }
        },
        _ => record,
    };
    Ok((status, Json(convert::proposal(record))))
}

/// A wait taken before the proposal was stored.
type Waiting = Option<(Duration, Held, Subscription)>;

/// Checks, routes and stores a submission (or finds its idempotent replay):
/// `201` for a new proposal, `200` for a replay.
async fn store_proposal(
    app: &AppState,
    caller: &Caller,
    query: WaitQuery,
    headers: &HeaderMap,
    body: proto::SubmitProposal,
    text: &[u8],
    trace: &crate::otel::Submit,
) -> Result<(StatusCode, ProposalRecord, Waiting), ApiError> {
    let wait = parse_wait(app, query.wait.as_deref())?;
    let system_id = match (caller.system(), body.system.as_deref()) {
        (Some(own), None) => own.clone(),
        (Some(own), Some(named)) if named == own.as_str() => own.clone(),
        (Some(own), Some(named)) => {
            return Err(ApiError::forbidden(format!(
                "this API key belongs to system `{own}`, not `{named}`"
            )));
        }
        (None, Some(named)) => {
            caller.user_with(&[])?;
            SystemId::parse(named)
                .ok_or_else(|| ApiError::invalid(format!("`{named}` is not a system id")))?
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "`system` is required when submitting with a personal token",
            ));
        }
    };
    let idempotency_key = idempotency_key(headers, body.idempotency_key.as_deref())?;
    check_text("action", &body.action, 128)?;
    if let Some(batch) = &body.batch {
        let ok = (1..=128).contains(&batch.len())
            && batch
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
        if !ok {
            return Err(ApiError::invalid(
                "`batch` must be 1 to 128 letters, digits, `.`, `_`, `:` and `-`",
            ));
        }
    }
    check_text("subject.type", &body.subject.type_, 128)?;
    check_text("subject.id", &body.subject.id, 256)?;
    if let Some(confidence) = body.confidence
        && !(0.0..=1.0).contains(&confidence)
    {
        {
            return Err(ApiError::invalid(format!(
                "`confidence` must be between 0 and 1, not {confidence}"
            )));
        }
    }
    let Some(system) = app.system(&system_id).await? else {
        return Err(ApiError::invalid(format!("unknown system `{system_id}`"))
            .help("register the system first: POST /v1/systems"));
    };
    let input = read_context(app, &system, &body, text)?;

    let subject = json!({"type": body.subject.type_, "id": body.subject.id, "attributes": body.subject.attributes});
    let mut salt = vec![0u8; SALT_LEN];
    getrandom::fill(&mut salt).map_err(|error| ApiError::internal(&error.to_string()))?;
    let parts = DigestParts {
        system: system_id.as_str(),
        action: &body.action,
        subject: &subject,
        input: &body.input,
        output: &body.output,
        salt: &salt,
    };
    let (digest, fingerprint) = Digest::with_fingerprint(parts);
    if let Some(rate) = &app.submit_rate {
        rate.take(system_id.as_str())?;
    }
    let active = app.active_policies();
    let model_version = body.model.as_ref().and_then(|m| m.version.as_deref());
    let request = RoutingRequest {
        system: system_id.as_str(),
        action: &body.action,
        subject_type: &body.subject.type_,
        subject_id: &body.subject.id,
        input: &input,
        confidence: body.confidence,
        risk_tier: system.risk_tier,
        oversight: system.oversight,
        model_version,
    };
    let defaults = Defaults {
        route: app.config.default_route,
        review: ReviewPlan::default_review(),
    };
    let routing_started = std::time::Instant::now();
    let routing = route(&active.live, &request, &defaults);
    app.metrics.policy_errors("live", &routing.errors);
    let shadow = active.shadow.as_ref().map(|shadow| {
        let routing = route(shadow, &request, &defaults);
        app.metrics.policy_errors("shadow", &routing.errors);
        ShadowOutcome {
            version: routing.policy_version,
            route: routing.route,
            group: (routing.route == Route::Review).then_some(routing.review.group),
            matched: routing.matched,
            errors: routing.errors,
        }
    });
    trace.routed(
        &routing,
        routing_started,
        shadow.as_ref().map(|it| it.version.as_str()),
    );
    let id = ProposalId::from_unique(&ulid::Ulid::new().to_string());
    let sampled = is_sampled(&app.sampling_secret, id.as_str(), routing.sample_rate);
    let now = app.clock.now();
    let new = NewProposal {
        id,
        task_id: TaskId::from_unique(&ulid::Ulid::new().to_string()),
        system: system_id,
        action: body.action,
        subject,
        input: body.input,
        output: body.output,
        confidence: body.confidence,
        explanation: body.explanation,
        model: body
            .model
            .map(|m| json!({"name": m.name, "version": m.version})),
        context: body.context,
        idempotency_key,
        batch: body.batch,
        trace_context: trace.stored_context(),
        digest,
        fingerprint,
        salt,
        submitted_by: caller.actor(),
        routing,
        sampled,
        shadow,
    };
    // A new proposal cannot be resolved before it exists: subscribing now
    // means no read after the insert. The long-poll's place is taken before
    // anything is stored, so that a 429 stores nothing.
    let waiting = match wait {
        Some(wait) => Some((
            wait,
            app.waits.acquire(caller.credential_key())?,
            app.waiters.subscribe(&new.id),
        )),
        None => None,
    };
    let (system_id, key, fingerprint) = (
        new.system.clone(),
        new.idempotency_key.clone(),
        new.fingerprint.clone(),
    );
    let submitted = match app.store.submit(new, now).await {
        Ok(submitted) => submitted,
        // A replay is answered even when nothing can be written (a full
        // disk, a stopped writer): from a read, as the write would have.
        Err(TxError::Store(error @ (StoreError::Unavailable(_) | StoreError::Contended(_)))) => {
            match replay(app, &system_id, key.as_deref(), &fingerprint).await? {
                Some(record) => Submitted::Existing(record),
                None => return Err(error.into()),
            }
        }
        Err(error) => return Err(error.into()),
    };
    let (status, record) = match submitted {
        Submitted::Created(record) => {
            app.committed(Committed::Admitted(&record));
            (StatusCode::CREATED, record)
        }
        Submitted::Existing(record) => (StatusCode::OK, record),
    };
    Ok((status, record, waiting))
}

/// The proposal stored under `key` by `system`, read without the writer;
/// `idempotency_conflict` when it was stored with other contents.
async fn replay(
    app: &AppState,
    system: &SystemId,
    key: Option<&str>,
    fingerprint: &Digest,
) -> Result<Option<ProposalRecord>, ApiError> {
    let Some(key) = key else { return Ok(None) };
    Ok(app.store.replay(system, key, fingerprint).await?)
}

/// Read a proposal; with `?wait=` long-poll until it is resolved.
#[utoipa::path(get, path = "/v1/proposals/{id}", tag = "proposals", params(("id" = String, Path), WaitQuery),
    responses((status = 200, body = proto::Proposal), (status = 404, body = proto::Problem)))]
pub async fn get(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Params(query): Params<WaitQuery>,
) -> Result<Json<proto::Proposal>, ApiError> {
    let wait = parse_wait(&app, query.wait.as_deref())?;
    let viewer = Viewer::of(&caller)?;
    let (id, record) = load(&app, &id).await?;
    viewer.check_can_read(&app, &record).await?;
    let record = match wait {
        Some(wait) if !record.status.is_terminal() => wait_for(&app, &caller, &id, wait).await?,
        _ => record,
    };
    let mut proposal = viewer.shown(record);
    if let Some(resolution) = proposal.resolution.as_mut() {
        resolution.receipt = crate::audit::receipt(&app, &id).await?;
    }
    Ok(Json(proposal))
}

/// The longest comment, in characters.
const MAX_COMMENT: usize = 10_000;

/// A proposal's comment thread (its reviewers, auditors and admins; not
/// systems).
#[utoipa::path(get, path = "/v1/proposals/{id}/comments", tag = "proposals", params(("id" = String, Path)),
    responses((status = 200, body = proto::Comments), (status = 404, body = proto::Problem)))]
pub async fn comments(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<proto::Comments>, ApiError> {
    caller.user_with(&[Role::Reviewer, Role::Auditor])?;
    let viewer = Viewer::of(&caller)?;
    let (id, record) = load(&app, &id).await?;
    viewer.check_can_read(&app, &record).await?;
    let items = app
        .store
        .comments(&id)
        .await?
        .into_iter()
        .map(comment)
        .collect();
    Ok(Json(proto::Comments { items }))
}

/// Add to a proposal's comment thread (reviewers who may read it, admins).
#[utoipa::path(post, path = "/v1/proposals/{id}/comments", tag = "proposals", params(("id" = String, Path)),
    request_body = proto::NewComment,
    responses((status = 201, body = proto::Comment), (status = 404, body = proto::Problem)))]
pub async fn add_comment(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<proto::NewComment>,
) -> Result<(StatusCode, Json<proto::Comment>), ApiError> {
    caller.user_with(&[Role::Reviewer])?;
    let text = body.body.trim();
    if text.is_empty() || MAX_COMMENT < body.body.chars().count() {
        return Err(ApiError::invalid(format!(
            "`body` must be 1 to {MAX_COMMENT} characters, not blank"
        )));
    }
    let viewer = Viewer::of(&caller)?;
    let (id, record) = load(&app, &id).await?;
    viewer.check_can_read(&app, &record).await?;
    let new = loopgate_store::NewComment {
        id: format!("cmt_{}", comment_id()),
        proposal: id,
        author: caller.actor(),
        body: text.to_owned(),
    };
    let stored = app.store.add_comment(new, app.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(comment(stored))))
}

fn comment(record: loopgate_store::CommentRecord) -> proto::Comment {
    proto::Comment {
        id: record.id,
        proposal_id: record.proposal.to_string(),
        author: record.author,
        body: record.body,
        created_at: record.created_at.to_rfc3339(),
    }
}

/// What a caller may see of proposals: a system its own; admins and
/// auditors all; a reviewer those a task of one of their groups is or was
/// on, without the model's output and confidence while a blind review is
/// undecided. Every response that carries a proposal goes through
/// [`Viewer::shown`].
pub(crate) enum Viewer {
    /// A system's API key.
    System(SystemId),
    /// Admins and auditors.
    All,
    /// A reviewer, by their groups.
    Groups(Vec<String>),
}

impl Viewer {
    /// The caller's view; 403 for users who read no proposals.
    pub(crate) fn of(caller: &Caller) -> Result<Viewer, ApiError> {
        if let Some(own) = caller.system() {
            return Ok(Viewer::System(own.clone()));
        }
        let user = caller.user_with(&[Role::Reviewer, Role::Auditor])?;
        if crate::events::sees_everything(user) {
            Ok(Viewer::All)
        } else {
            Ok(Viewer::Groups(user.groups.clone()))
        }
    }

    /// 404 unless the caller may read the proposal (one it may not read
    /// does not exist as far as it knows).
    pub(crate) async fn check_can_read(
        &self,
        app: &AppState,
        record: &ProposalRecord,
    ) -> Result<(), ApiError> {
        let may = match self {
            Viewer::System(own) => *own == record.system,
            Viewer::All => true,
            Viewer::Groups(groups) => app
                .store
                .proposal_groups(&record.id)
                .await?
                .iter()
                .any(|group| groups.contains(group)),
        };
        if may {
            Ok(())
        } else {
            Err(ApiError::not_found("proposal", record.id.as_str()))
        }
    }

    /// The proposal as this caller may see it. Blind review: a reviewer
    /// forms a judgement without the model's answer until the proposal is
    /// resolved.
    pub(crate) fn shown(&self, record: ProposalRecord) -> proto::Proposal {
        let blind = record.blind && !record.status.is_terminal();
        let mut proposal = convert::proposal(record);
        if blind && matches!(self, Viewer::Groups(_)) {
            proposal.output = serde_json::Value::Null;
            proposal.confidence = None;
        }
        proposal
    }
}

/// Filters of `GET /v1/proposals`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this system.
    #[param(pattern = r"^[a-z][a-z0-9-]{0,63}$")]
    system: Option<String>,
    /// Only this status: pending, approved, rejected, cancelled.
    status: Option<proto::ProposalStatus>,
    /// Only this action.
    #[param(min_length = 1)]
    action: Option<String>,
    /// From a previous page's `next_cursor`.
    #[param(pattern = r"^c[0-9]{1,18}$")]
    cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// List proposals, newest first.
#[utoipa::path(get, path = "/v1/proposals", tag = "proposals", params(ListQuery),
    responses((status = 200, body = proto::Page<proto::Proposal>)))]
pub async fn list(
    State(app): State<AppState>,
    caller: Caller,
    Params(query): Params<ListQuery>,
) -> Result<Json<proto::Page<proto::Proposal>>, ApiError> {
    let viewer = Viewer::of(&caller)?;
    let system = match (&viewer, query.system.as_deref()) {
        (Viewer::System(own), None) => Some(own.clone()),
        (Viewer::System(own), Some(named)) if named == own.as_str() => Some(own.clone()),
        (Viewer::System(_), Some(_)) => {
            return Err(ApiError::forbidden(
                "a system API key lists only its own proposals",
            ));
        }
        (_, Some(named)) => Some(parse_id(named, SystemId::parse, "system")?),
        (_, None) => None,
    };
    let groups = match &viewer {
        Viewer::Groups(groups) => Some(groups.clone()),
        Viewer::System(_) | Viewer::All => None,
    };
    let filter = ProposalFilter {
        system,
        status: query.status.map(convert::status_to_core),
        action: query.action,
        groups,
        before_seq: cursor::decode(query.cursor.as_deref())?,
        limit: page_limit(query.limit)?,
    };
    let page = app.store.proposals(filter).await?;
    let items = page.items.into_iter().map(|it| viewer.shown(it)).collect();
    Ok(Json(proto::Page {
        items,
        next_cursor: page.next.map(cursor::encode),
    }))
}

/// Withdraw a pending proposal.
#[utoipa::path(post, path = "/v1/proposals/{id}/cancel", tag = "proposals", params(("id" = String, Path)),
    responses((status = 200, body = proto::Proposal), (status = 409, body = proto::Problem)))]
pub async fn cancel(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<proto::Proposal>, ApiError> {
    let (id, record) = load(&app, &id).await?;
    match caller.system() {
        Some(own) if *own == record.system => (),
        Some(_) => return Err(ApiError::not_found("proposal", id.as_str())),
        None => drop(caller.user_with(&[])?),
    }
    let record = app
        .store
        .cancel(&id, &caller.actor(), app.clock.now())
        .await?;
    app.committed(Committed::Cancelled(&record));
    Ok(Json(convert::proposal(record)))
}

/// Erase a settled proposal's payloads and salt (right to erasure). The
/// audit log keeps verifying; its salted hashes can no longer be linked.
#[utoipa::path(post, path = "/v1/proposals/{id}/erase", tag = "proposals", params(("id" = String, Path)),
    request_body = proto::EraseProposal,
    responses((status = 200, body = proto::Proposal), (status = 409, body = proto::Problem)))]
pub async fn erase(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<proto::EraseProposal>,
) -> Result<Json<proto::Proposal>, ApiError> {
    caller.user_with(&[])?;
    let id = parse_id(&id, ProposalId::parse, "proposal")?;
    check_text("reason", &body.reason, 1000)?;
    let record = app
        .store
        .erase(&id, &caller.actor(), &body.reason, app.clock.now())
        .await?;
    Ok(Json(convert::proposal(record)))
}

/// The proposal a path id names, or 404.
pub(crate) async fn load(
    app: &AppState,
    id: &str,
) -> Result<(ProposalId, ProposalRecord), ApiError> {
    let id = parse_id(id, ProposalId::parse, "proposal")?;
    let record = app
        .store
        .proposal(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("proposal", id.as_str()))?;
    Ok((id, record))
}

/// Waits until the proposal is resolved, `wait` runs out, or the server
/// shuts down; 401 as soon as the caller's credential is revoked.
pub(crate) async fn wait_for(
    app: &AppState,
    caller: &Caller,
    id: &ProposalId,
    wait: Duration,
) -> Result<ProposalRecord, ApiError> {
    let held = app.waits.acquire(caller.credential_key())?;
    // INVARIANT: subscribe before reading, so a resolution committed in between still wakes us.
    let subscription = app.waiters.subscribe(id);
    let record = app
        .store
        .proposal(id)
        .await?
        .ok_or_else(|| ApiError::not_found("proposal", id.as_str()))?;
    if record.status.is_terminal() {
        delivered(app, &record, app.clock.now(), std::time::Instant::now());
        return Ok(record);
    }
    wait_on(app, caller, held, subscription, &record, wait).await
}

/// The span of a long-poll's answer with a resolution.
fn delivered(
    app: &AppState,
    record: &ProposalRecord,
    start: Timestamp,
    started: std::time::Instant,
) {
    if app.traces.is_on() && record.status.is_terminal() {
        app.traces.delivered(crate::otel::Delivery {
            trace: record.trace_context.as_deref(),
            proposal: record.id.as_str(),
            how: "long_poll",
            start,
            took: started.elapsed(),
            attributes: vec![opentelemetry::KeyValue::new(
                "loopgate.status",
                record.status.as_str(),
            )],
            error: None,
        });
    }
}

/// Waits on a subscription taken before the proposal could have been resolved.
async fn wait_on(
    app: &AppState,
    caller: &Caller,
    _held: Held,
    mut subscription: Subscription,
    waited: &ProposalRecord,
    wait: Duration,
) -> Result<ProposalRecord, ApiError> {
    let (start, started) = (app.clock.now(), std::time::Instant::now());
    let id = &waited.id;
    let deadline = tokio::time::Instant::now() + wait;
    // A credential that expires before the wait ends ends the wait.
    let expiry = caller
        .expires_in(app.clock.now())
        .map(|left| tokio::time::Instant::now() + left)
        .filter(|at| *at < deadline);
    let mut credentials = app.credentials.subscribe();
    let resolved = loop {
        tokio::select! {
            resolved = subscription.changed() => break resolved,
            () = tokio::time::sleep_until(deadline) => break None,
            () = sleep_until_some(expiry) => return Err(crate::auth::ended()),
            () = app.shutdown.cancelled() => break None,
            Ok(()) = credentials.changed() => {
                if !crate::auth::still_valid(app, caller).await? {
                    return Err(crate::auth::ended());
                }
            }
        }
    };
    drop(subscription);
    let record = match resolved {
        Some(record) => ProposalRecord::clone(&record),
        None => app
            .store
            .proposal(id)
            .await?
            .ok_or_else(|| ApiError::not_found("proposal", id.as_str()))?,
    };
    delivered(app, &record, start, started);
    Ok(record)
}

/// Sleeps until `at`, or forever without one.
pub(crate) async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The proposal's context and subject attributes as routing reads them:
/// the number rule, and the system's declared shape. Refusals are
/// `422 invalid_context`, before anything is stored.
fn read_context(
    app: &AppState,
    system: &SystemRecord,
    body: &proto::SubmitProposal,
    text: &[u8],
) -> Result<TypedInput, ApiError> {
    let shape = system
        .declared_shape()
        .map_err(|e| ApiError::internal(&e))?;
    let rule = ShapeRule::of(app.config.require_shapes, shape.as_ref());
    let input = typed_input(
        shape.as_ref(),
        &body.action,
        &body.context,
        &body.subject.attributes,
        rule,
    )?;
    if input.has_float {
        // A float may have rounded digits as written (`100000.00000000001`).
        #[derive(Deserialize)]
        struct Raw<'a> {
            #[serde(borrow, default)]
            context: Option<&'a serde_json::value::RawValue>,
            #[serde(borrow, default)]
            subject: Option<RawSubject<'a>>,
        }
        #[derive(Deserialize)]
        struct RawSubject<'a> {
            #[serde(borrow, default)]
            attributes: Option<&'a serde_json::value::RawValue>,
        }
        let text = std::str::from_utf8(text).unwrap_or_default();
        if let Ok(raw) = serde_json::from_str::<Raw<'_>>(text) {
            if let Some(context) = raw.context {
                check_exact("context", context.get())?;
            }
            if let Some(attributes) = raw.subject.and_then(|it| it.attributes) {
                check_exact("subject.attributes", attributes.get())?;
            }
        }
    }
    Ok(input)
}

/// A comment's id, increasing within this process even inside one
/// millisecond: a thread is read in (time, id) order, so two comments made
/// one after the other keep their order.
fn comment_id() -> ulid::Ulid {
    static IDS: std::sync::Mutex<Option<ulid::Generator>> = std::sync::Mutex::new(None);
    let mut ids = match IDS.lock() {
        Ok(ids) => ids,
        Err(poisoned) => poisoned.into_inner(),
    };
    ids.get_or_insert_with(ulid::Generator::new)
        .generate()
        .unwrap_or_else(|_| ulid::Ulid::new())
}

fn parse_wait(app: &AppState, wait: Option<&str>) -> Result<Option<Duration>, ApiError> {
    let Some(text) = wait else { return Ok(None) };
    crate::http::formats::wait(text, app.config.max_wait).map(Some)
}

fn idempotency_key(headers: &HeaderMap, body: Option<&str>) -> Result<Option<String>, ApiError> {
    let header = match headers.get("idempotency-key") {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| ApiError::invalid("the Idempotency-Key header is not text"))?,
        ),
        None => None,
    };
    let key = match (header, body) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::invalid(
                "the Idempotency-Key header and `idempotency_key` differ; send one",
            ));
        }
        (Some(key), _) | (None, Some(key)) => key,
        (None, None) => return Ok(None),
    };
    check_text("idempotency_key", key, 255)?;
    Ok(Some(key.to_owned()))
}

/// Non-empty, at most `max` bytes, no control characters.
pub(crate) fn check_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.is_empty() || max < value.len() || value.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "`{field}` must be 1 to {max} bytes of text without control characters"
        )));
    }
    Ok(())
}
