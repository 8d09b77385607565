//! `/v1/policies`: publish immutable versions (live or shadow), activate and
//! roll back, validate against the generated schema and lint, run case
//! files, replay history under a draft, and report what a shadow disagreed on.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use loopgate_core::routing::lint::{Deployment, lint};
use loopgate_core::routing::schema::Finding;
use loopgate_core::routing::{Defaults, Policies, ReviewPlan, cases};
use loopgate_core::{Role, Route, Timestamp};
use loopgate_proto as proto;
use loopgate_store::{ActivationMode, NewPolicy, PolicyState, SystemRecord};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::auth::Caller;
use crate::convert;
use crate::http::error::ApiError;
use crate::http::extract::{JsonBody, Params, Path};
use crate::policy_reports::{Registered, Tally, test_report};

const AUTHORS: &[Role] = &[Role::PolicyAuthor];
const READERS: &[Role] = &[Role::PolicyAuthor, Role::Auditor];

/// Every version, newest first, marked live or shadow.
#[utoipa::path(get, path = "/v1/policies", tag = "policies", responses((status = 200, body = proto::Page<proto::PolicyVersion>)))]
pub async fn list(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<proto::Page<proto::PolicyVersion>>, ApiError> {
    caller.user_with(READERS)?;
    let state = app.store.policy_state().await?;
    let items = app
        .store
        .policies()
        .await?
        .into_iter()
        .map(|record| version_of(record, &state))
        .collect();
    Ok(Json(proto::Page {
        items,
        next_cursor: None,
    }))
}

/// One version.
#[utoipa::path(get, path = "/v1/policies/{version}", tag = "policies",
    params(("version" = String, Path, description = "the version hash")),
    responses((status = 200, body = proto::PolicyVersion), (status = 404, body = proto::Problem)))]
pub async fn get(
    State(app): State<AppState>,
    caller: Caller,
    Path(version): Path<String>,
) -> Result<Json<proto::PolicyVersion>, ApiError> {
    caller.user_with(READERS)?;
    let record = app
        .store
        .policy(&version)
        .await?
        .ok_or_else(|| ApiError::not_found("policy version", &version))?;
    let state = app.store.policy_state().await?;
    Ok(Json(version_of(record, &state)))
}

/// Publish a new version, live (default) or shadow. Text that does not
/// parse, fails the schema, or fails its case file leaves everything as it was.
#[utoipa::path(post, path = "/v1/policies", tag = "policies", request_body = proto::PublishPolicy,
    responses((status = 201, body = proto::PolicyVersion), (status = 422, body = proto::Problem)))]
pub async fn publish(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<proto::PublishPolicy>,
) -> Result<(StatusCode, Json<proto::PolicyVersion>), ApiError> {
    caller.user_with(AUTHORS)?;
    let (policies, warnings) = check(&app, &body.text).await?;
    match &body.cases {
        Some(text) => {
            let report = run_cases(&app, policies.clone(), text).await?;
            if report.failed > 0 {
                return Err(ApiError::new(
                    proto::ErrorCode::PolicyInvalid,
                    format!(
                        "{} of {} policy tests failed; the version was not published",
                        report.failed,
                        report.failed + report.passed
                    ),
                )
                .with("tests", json!(report)));
            }
        }
        None if app.config.require_policy_tests => {
            return Err(ApiError::invalid(
                "this server requires policy tests: send `cases` with the policy text",
            )
            .help("`loopgate policy publish FILE --tests CASES`"));
        }
        None => {}
    }
    let mode = match body.mode {
        Some(proto::PolicyMode::Shadow) => ActivationMode::Shadow,
        _ => ActivationMode::Live,
    };
    let new = NewPolicy {
        version: policies.version().to_owned(),
        text: body.text,
        description: body.description,
        policy_ids: policies.ids().to_vec(),
    };
    let _guard = app.policy_lock.lock().await;
    let record = app
        .store
        .publish_policy(new, mode, &caller.actor(), app.clock.now())
        .await?;
    app.reload_policies()
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let state = app.store.policy_state().await?;
    let mut version = version_of(record, &state);
    version.warnings = findings(warnings);
    Ok((StatusCode::CREATED, Json(version)))
}

/// Make a stored version live (rollback, or promotion of a shadow) or shadow.
#[utoipa::path(post, path = "/v1/policies/{version}/activate", tag = "policies",
    params(("version" = String, Path, description = "the version hash")),
    request_body = proto::ActivatePolicy,
    responses((status = 200, body = proto::PolicyVersion), (status = 404, body = proto::Problem)))]
pub async fn activate(
    State(app): State<AppState>,
    caller: Caller,
    Path(version): Path<String>,
    JsonBody(body): JsonBody<proto::ActivatePolicy>,
) -> Result<Json<proto::PolicyVersion>, ApiError> {
    caller.user_with(AUTHORS)?;
    if body.reason.trim().is_empty() {
        return Err(ApiError::invalid("`reason` must say why"));
    }
    let mode = match body.mode {
        Some(proto::PolicyMode::Shadow) => ActivationMode::Shadow,
        _ => ActivationMode::Live,
    };
    let _guard = app.policy_lock.lock().await;
    let state = app
        .store
        .activate_policy(
            &version,
            mode,
            &body.reason,
            &caller.actor(),
            app.clock.now(),
        )
        .await
        .map_err(|error| match error {
            loopgate_store::StoreError::NotFound => ApiError::not_found("policy version", &version),
            other => other.into(),
        })?;
    app.reload_policies()
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let record = app
        .store
        .policy(&version)
        .await?
        .ok_or_else(|| ApiError::not_found("policy version", &version))?;
    Ok(Json(version_of(record, &state)))
}

/// Who activated which version, when and why; newest first.
#[utoipa::path(get, path = "/v1/policies/activations", tag = "policies",
    responses((status = 200, body = Vec<proto::PolicyActivation>)))]
pub async fn activations(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<proto::PolicyActivation>>, ApiError> {
    caller.user_with(READERS)?;
    let items = app
        .store
        .activations()
        .await?
        .into_iter()
        .map(|it| proto::PolicyActivation {
            version: it.version,
            mode: it.mode,
            reason: it.reason,
            actor: it.actor,
            at: it.at.to_rfc3339(),
        })
        .collect();
    Ok(Json(items))
}

/// Check policy text without publishing it: schema errors and lint warnings.
#[utoipa::path(post, path = "/v1/policies/validate", tag = "policies", request_body = proto::PublishPolicy,
    responses((status = 200, body = proto::PolicyValidation), (status = 422, body = proto::Problem)))]
pub async fn validate(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<proto::PublishPolicy>,
) -> Result<Json<proto::PolicyValidation>, ApiError> {
    caller.user_with(AUTHORS)?;
    let examined = examine(&app, &body.text).await?;
    Ok(Json(proto::PolicyValidation {
        version: examined.policies.version().to_owned(),
        policy_ids: examined.policies.ids().to_vec(),
        errors: findings(examined.errors),
        warnings: findings(examined.warnings),
    }))
}

/// The Cedar schema generated from the systems' declarations.
#[utoipa::path(get, path = "/v1/policies/schema", tag = "policies",
    responses((status = 200, body = proto::PolicySchema)))]
pub async fn schema(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<proto::PolicySchema>, ApiError> {
    caller.user_with(READERS)?;
    let systems = app.store.systems().await?;
    let schema = SystemRecord::schema_of(&systems).map_err(ApiError::invalid)?;
    Ok(Json(proto::PolicySchema {
        text: schema.text,
        actions: schema.actions.into_iter().collect(),
        notes: schema.notes,
    }))
}

/// Run a case file against policy text (or the live version).
#[utoipa::path(post, path = "/v1/policies/test", tag = "policies", request_body = proto::TestPolicies,
    responses((status = 200, body = proto::PolicyTestReport), (status = 422, body = proto::Problem)))]
pub async fn test(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<proto::TestPolicies>,
) -> Result<Json<proto::PolicyTestReport>, ApiError> {
    caller.user_with(AUTHORS)?;
    let policies = match &body.text {
        Some(text) => parse(&app, text).await?,
        None => app.live_policies(),
    };
    Ok(Json(run_cases(&app, policies, &body.cases).await?))
}

/// `?stream=true`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReplayQuery {
    /// Stream progress lines and then the report as NDJSON.
    #[serde(default)]
    stream: bool,
}

/// Route the stored proposals of a period under a draft and report what
/// would change. With `?stream=true` the answer is NDJSON: progress lines,
/// then the report.
#[utoipa::path(post, path = "/v1/policies/replay", tag = "policies", params(ReplayQuery),
    request_body = proto::ReplayPolicies,
    responses((status = 200, body = proto::ReplayReport), (status = 422, body = proto::Problem)))]
pub async fn replay(
    State(app): State<AppState>,
    caller: Caller,
    Params(query): Params<ReplayQuery>,
    JsonBody(body): JsonBody<proto::ReplayPolicies>,
) -> Result<Response, ApiError> {
    caller.user_with(READERS)?;
    let draft = parse(&app, &body.text).await?;
    let period = loopgate_core::duration::parse(&body.since).ok_or_else(|| {
        ApiError::invalid(format!(
            "`since` must be a period such as `30d`, `12h` or `P7D`, not `{}`",
            body.since
        ))
    })?;
    let since = Timestamp::from_millis(
        app.clock
            .now()
            .millis()
            .saturating_sub(i64::try_from(period.as_millis()).unwrap_or(i64::MAX)),
    );
    let examples = body.examples.unwrap_or(5).min(100) as usize;
    if !query.stream {
        let report = run_replay(&app, draft, since, examples, |_, _| true).await?;
        return Ok(Json(report).into_response());
    }
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let progress = sender.clone();
        let result = run_replay(&app, draft, since, examples, move |done, total| {
            let line = proto::ReplayLine::Progress { done, total };
            progress.try_send(ndjson(&line)).is_ok() || !progress.is_closed()
        })
        .await;
        let line = match result {
            Ok(report) => proto::ReplayLine::Report(report),
            Err(error) => proto::ReplayLine::Error(error.problem()),
        };
        let _ = sender.send(ndjson(&line)).await;
    });
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver
            .recv()
            .await
            .map(|bytes| (Ok::<Bytes, Infallible>(bytes), receiver))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// What the shadow version did since it started.
#[utoipa::path(get, path = "/v1/policies/shadow", tag = "policies",
    responses((status = 200, body = proto::ShadowReport)))]
pub async fn shadow(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<proto::ShadowReport>, ApiError> {
    caller.user_with(READERS)?;
    let state = app.store.policy_state().await?;
    let live_version = state.live.as_ref().map(|it| it.version.clone());
    let Some((record, since)) = state.shadow else {
        return Ok(Json(proto::ShadowReport {
            version: None,
            live_version,
            since: None,
            evaluated: 0,
            disagreements: 0,
            transitions: Vec::new(),
            recent: Vec::new(),
            policy_errors: Vec::new(),
        }));
    };
    let summary = app.store.shadow_summary(&record.version, since, 50).await?;
    let mut examples: HashMap<(String, String), Vec<String>> = HashMap::new();
    for it in &summary.recent {
        let list = examples
            .entry((it.live_route.clone(), it.shadow_route.clone()))
            .or_default();
        if list.len() < 5 {
            list.push(it.proposal_id.clone());
        }
    }
    let transitions = summary
        .transitions
        .iter()
        .filter_map(|(from, to, count)| {
            Some(proto::RouteTransition {
                from: convert::route_to_proto(Route::parse(from)?),
                to: convert::route_to_proto(Route::parse(to)?),
                count: *count,
                examples: examples
                    .remove(&(from.clone(), to.clone()))
                    .unwrap_or_default(),
            })
        })
        .collect();
    Ok(Json(proto::ShadowReport {
        version: Some(record.version),
        live_version,
        since: Some(since.to_rfc3339()),
        evaluated: summary.evaluated,
        disagreements: summary.disagreements,
        transitions,
        recent: summary
            .recent
            .into_iter()
            .map(|it| proto::ShadowDisagreement {
                proposal_id: it.proposal_id,
                live_route: it.live_route,
                shadow_route: it.shadow_route,
                live_matched: it.live_matched,
                shadow_matched: it.shadow_matched,
                shadow_group: it.shadow_group,
                at: it.at.to_rfc3339(),
            })
            .collect(),
        policy_errors: summary
            .errors
            .into_iter()
            .map(|it| proto::PolicyErrorCount {
                policy: it.policy,
                count: it.count,
                message: it.message,
                examples: it.examples,
            })
            .collect(),
    }))
}

/// Stop evaluating the shadow version.
#[utoipa::path(delete, path = "/v1/policies/shadow", tag = "policies", request_body = proto::StopShadow,
    responses((status = 204), (status = 404, body = proto::Problem, description = "no shadow version is running"),
              (status = 422, body = proto::Problem)))]
pub async fn stop_shadow(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<proto::StopShadow>,
) -> Result<StatusCode, ApiError> {
    caller.user_with(AUTHORS)?;
    if body.reason.trim().is_empty() {
        return Err(ApiError::invalid("`reason` must say why"));
    }
    let _guard = app.policy_lock.lock().await;
    // Nothing to stop is nothing found (the store refuses it too, should
    // another replica have stopped it meanwhile).
    if app.active_policies().shadow.is_none() {
        return Err(ApiError::new(
            proto::ErrorCode::NotFound,
            "no shadow version is running",
        ));
    }
    app.store
        .activate_policy(
            "",
            ActivationMode::ShadowOff,
            &body.reason,
            &caller.actor(),
            app.clock.now(),
        )
        .await?;
    app.reload_policies()
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn deployment(app: &AppState) -> Result<Deployment, ApiError> {
    let systems = app.store.systems().await?;
    let schema = SystemRecord::schema_of(&systems).map_err(ApiError::invalid)?;
    let staffed_groups = app
        .store
        .users()
        .await?
        .into_iter()
        .flat_map(|user| user.groups)
        .collect();
    Ok(Deployment {
        systems: systems
            .iter()
            .map(|it| (it.id.as_str().to_owned(), it.risk_tier))
            .collect(),
        staffed_groups,
        schema: (!schema.actions.is_empty()).then_some(schema),
    })
}

/// Policy text parsed, type-checked against the generated schema and linted.
struct Examined {
    policies: Arc<Policies>,
    errors: Vec<Finding>,
    warnings: Vec<Finding>,
}

/// Parses, validates and lints text off the async workers (bounded first:
/// size here, nesting in `Policies::parse`).
async fn examine(app: &AppState, text: &str) -> Result<Examined, ApiError> {
    check_size(app, "the policy text", text)?;
    let deployment = deployment(app).await?;
    let text = text.to_owned();
    let work = move || -> Result<Examined, ApiError> {
        let policies = Policies::parse(&text)?;
        let errors = deployment
            .schema
            .as_ref()
            .map(|schema| schema.validate(&policies).errors)
            .unwrap_or_default();
        let warnings = lint(&policies, &deployment);
        Ok(Examined {
            policies: Arc::new(policies),
            errors,
            warnings,
        })
    };
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal(&e))?
}

/// Parses and validates text for publishing: schema errors refuse it,
/// lint warnings come back.
async fn check(app: &AppState, text: &str) -> Result<(Arc<Policies>, Vec<Finding>), ApiError> {
    let examined = examine(app, text).await?;
    if let Some(first) = examined.errors.first() {
        return Err(ApiError::new(
            proto::ErrorCode::PolicyInvalid,
            format!("policy `{}`: {}", first.policy, first.message),
        )
        .help("`loopgate policy schema` shows the schema generated from the systems' declarations")
        .with("errors", json!(findings(examined.errors))));
    }
    Ok((examined.policies, examined.warnings))
}

async fn run_cases(
    app: &AppState,
    policies: Arc<Policies>,
    text: &str,
) -> Result<proto::PolicyTestReport, ApiError> {
    check_size(app, "the case file", text)?;
    let systems = registered(app).await?;
    let defaults = defaults(app);
    let require_shapes = app.config.require_shapes;
    let text = text.to_owned();
    let run = move || -> Result<proto::PolicyTestReport, ApiError> {
        let file = cases::parse(&text).map_err(ApiError::invalid)?;
        let results = cases::run(&policies, &file, &defaults, |id| {
            systems.get(id).map(|it| it.case_system(require_shapes))
        });
        Ok(test_report(policies.version(), results))
    };
    tokio::task::spawn_blocking(run)
        .await
        .map_err(|e| ApiError::internal(&e))?
}

/// Every registered system by id, with its shape parsed.
async fn registered(app: &AppState) -> Result<Arc<HashMap<String, Registered>>, ApiError> {
    let mut systems = HashMap::new();
    for record in app.store.systems().await? {
        let shape = record
            .declared_shape()
            .map_err(|e| ApiError::internal(&e))?;
        systems.insert(record.id.as_str().to_owned(), Registered { record, shape });
    }
    Ok(Arc::new(systems))
}

/// Refuses policy text or a case file over `max_policy_bytes`.
fn check_size(app: &AppState, what: &str, text: &str) -> Result<(), ApiError> {
    let limit = app.config.max_policy_bytes;
    if limit < text.len() {
        return Err(ApiError::new(
            proto::ErrorCode::PayloadTooLarge,
            format!(
                "{what} is {} bytes, more than the {limit} this server accepts",
                text.len()
            ),
        )
        .help("split the policy set, or raise `max_policy_bytes`"));
    }
    Ok(())
}

/// Parses policy text off the async workers: size first, then nesting
/// (in `Policies::parse`), then Cedar.
pub(crate) async fn parse(app: &AppState, text: &str) -> Result<Arc<Policies>, ApiError> {
    check_size(app, "the policy text", text)?;
    let text = text.to_owned();
    let parsed = tokio::task::spawn_blocking(move || Policies::parse(&text))
        .await
        .map_err(|e| ApiError::internal(&e))??;
    Ok(Arc::new(parsed))
}

fn defaults(app: &AppState) -> Defaults {
    Defaults {
        route: app.config.default_route,
        review: ReviewPlan::default_review(),
    }
}

/// Rows read per batch; each batch is routed on a blocking thread.
const REPLAY_BATCH: u32 = 5_000;

/// Replays stored proposals since `since` under `draft`. `progress(done,
/// total)` is called after each batch; returning false stops the replay.
async fn run_replay(
    app: &AppState,
    draft: std::sync::Arc<Policies>,
    since: Timestamp,
    examples: usize,
    mut progress: impl FnMut(u64, u64) -> bool,
) -> Result<proto::ReplayReport, ApiError> {
    let total = app.store.count_since(since).await?;
    let systems = registered(app).await?;
    let defaults = std::sync::Arc::new(defaults(app));
    let mut tally = Tally::new(examples, app.config.require_shapes);
    let mut after = 0;
    loop {
        let rows = app.store.replay_rows(since, after, REPLAY_BATCH).await?;
        let Some(last) = rows.last() else { break };
        after = last.seq;
        let (draft, systems, defaults) = (draft.clone(), systems.clone(), defaults.clone());
        let mut batch = std::mem::take(&mut tally);
        tally = tokio::task::spawn_blocking(move || {
            for row in &rows {
                batch.add(row, &draft, &systems, &defaults);
            }
            batch
        })
        .await
        .map_err(|e| ApiError::internal(&e))?;
        if !progress(tally.seen(), total) {
            break;
        }
    }
    Ok(tally.report(draft.version(), since))
}

fn ndjson(line: &proto::ReplayLine) -> Bytes {
    let mut bytes = serde_json::to_vec(line).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn findings(findings: Vec<Finding>) -> Vec<proto::PolicyFinding> {
    findings
        .into_iter()
        .map(|it| proto::PolicyFinding {
            policy: it.policy,
            message: it.message,
        })
        .collect()
}

fn version_of(record: loopgate_store::PolicyRecord, state: &PolicyState) -> proto::PolicyVersion {
    let live = state
        .live
        .as_ref()
        .is_some_and(|it| it.version == record.version);
    let shadow = state
        .shadow
        .as_ref()
        .is_some_and(|it| it.0.version == record.version);
    let mut version = convert::policy(record, live);
    version.shadow = shadow;
    version
}
