//! The router: one module per resource, one error mapping (`error.rs`), the
//! OpenAPI document generated from the handlers.

pub mod analytics;
pub mod audit;
pub mod credentials;
pub mod error;
pub mod events;
pub mod extract;
pub mod formats;
pub mod grants;
pub mod groups;
pub mod health;
pub mod notifications;
pub mod policies;
pub mod proposals;
pub mod systems;
pub mod tasks;
pub mod users;
pub mod webhooks;

use std::any::Any;

use axum::Router;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use loopgate_proto::ErrorCode;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;

use crate::AppState;
use error::ApiError;

/// The OpenAPI 3.1 document.
#[derive(OpenApi)]
#[openapi(
    info(title = "loopgate", description = "Human-in-the-loop control plane for AI: proposals, policy routing, review, resolution.\n\nText anywhere in a request must not hold U+0000 (NUL): a JSON string or member name at any depth (free JSON values such as `input`, `output` and `context` included), a path segment or a query value. Such a request is refused with 422 `validation_failed` before it is read. String schemas say so with a pattern; free JSON values cannot, and this sentence does."),
    paths(
        proposals::submit, proposals::get, proposals::list, proposals::cancel, proposals::comments, proposals::add_comment,
        tasks::list, tasks::get, tasks::claim, tasks::release, tasks::decide, tasks::decide_many,
        grants::list, grants::get, grants::revoke,
        systems::list, systems::create, systems::update,
        credentials::create_key, credentials::keys, credentials::revoke_key,
        credentials::create_token, credentials::tokens, credentials::revoke_token,
        webhooks::get, webhooks::set, webhooks::remove, webhooks::deliveries, webhooks::delivery,
        webhooks::redeliver,
        users::list, users::create, users::update,
        policies::list, policies::publish, policies::validate, policies::get, policies::activate,
        policies::activations, policies::schema, policies::test, policies::replay, policies::shadow,
        policies::stop_shadow,
        audit::pubkey, audit::checkpoint, audit::issue, audit::checkpoints, audit::tile, audit::entries,
        audit::inclusion, audit::consistency, audit::proposal, proposals::erase,
        analytics::overview, analytics::calibration, analytics::qa, analytics::thresholds,
        analytics::fairness, analytics::agreement, analytics::labels,
        health::healthz, health::readyz, health::metrics, events::stream,
        notifications::get, notifications::set, notifications::list, notifications::one,
        groups::list, groups::get, groups::set,
        crate::notify::slack::interactions,
    ),
    components(schemas(loopgate_proto::Problem)),
    modifiers(&BearerAuth, &ProblemResponses, &OperationIds, &TextWithoutNul),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build();
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// Every operation of the document (the methods loopgate routes).
fn operations(
    openapi: &mut utoipa::openapi::OpenApi,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    openapi.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
    })
}

/// Error responses as they are served: `application/problem+json` bodies
/// (RFC 9457), 401 on every operation that needs a credential, and a
/// `default` for the errors any operation may meet (a limit: 413, 429; a
/// busy or failing server: 503, 500), so that a client generated from the
/// document knows every error's shape.
struct ProblemResponses;

/// The media type of every error body.
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

impl utoipa::Modify for ProblemResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::SecurityRequirement;
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        let problem = |description: &str| {
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build();
            ResponseBuilder::new()
                .description(description)
                .content(PROBLEM_JSON, content)
                .build()
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.responses.insert(
            "Unauthenticated".to_owned(),
            RefOr::T(problem(
                "No credential, or one that is unknown, expired or revoked (`unauthenticated`)",
            )),
        );
        components.responses.insert(
            "Problem".to_owned(),
            RefOr::T(problem(
                "Any other error, as a problem with a stable `code` (see /docs/errors): a limit (413, 429), the server busy or failing (503, 500)",
            )),
        );
        for operation in operations(openapi) {
            for (status, response) in &mut operation.responses.responses {
                let RefOr::T(response) = response else {
                    continue;
                };
                if status.starts_with(['4', '5'])
                    && let Some(content) = response.content.shift_remove("application/json")
                {
                    response.content.insert(PROBLEM_JSON.to_owned(), content);
                }
                if response.description.is_empty() {
                    let reason = status
                        .parse::<u16>()
                        .ok()
                        .and_then(|code| StatusCode::from_u16(code).ok())
                        .and_then(|code| code.canonical_reason())
                        .unwrap_or("the answer");
                    response.description = reason.to_owned();
                }
            }
            let public = operation
                .security
                .as_ref()
                .is_some_and(|all| all.iter().all(|it| *it == SecurityRequirement::default()));
            let responses = &mut operation.responses.responses;
            if !public {
                responses
                    .entry("401".to_owned())
                    .or_insert_with(|| RefOr::Ref(Ref::from_response_name("Unauthenticated")));
            }
            responses
                .entry("default".to_owned())
                .or_insert_with(|| RefOr::Ref(Ref::from_response_name("Problem")));
        }
    }
}

/// Operation ids a generated client can use as method names: each
/// handler's name under its resource's tag (`grants_list`, `users_update`),
/// unique across the document (handlers of different resources share names
/// such as `list` and `get`).
struct OperationIds;

impl utoipa::Modify for OperationIds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for operation in operations(openapi) {
            let tag = operation
                .tags
                .as_ref()
                .and_then(|tags| tags.first())
                .cloned();
            if let (Some(tag), Some(id)) = (tag, operation.operation_id.as_mut())
                && !id.starts_with(&format!("{tag}_"))
            {
                *id = format!("{tag}_{id}");
            }
        }
    }
}

/// Says in the document what the server refuses of all text (see
/// [`extract::NUL_REFUSED`]): every string schema that does not already
/// narrow its text (a pattern, an enum, a format) gets the pattern
/// [`NO_NUL`], in parameters, bodies and components alike.
struct TextWithoutNul;

/// Text without U+0000.
pub(crate) const NO_NUL: &str = r"^[^\x00]*$";

impl utoipa::Modify for TextWithoutNul {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        if let Some(components) = openapi.components.as_mut() {
            for schema in components.schemas.values_mut() {
                no_nul_in(schema);
            }
        }
        for item in openapi.paths.paths.values_mut() {
            for parameter in item.parameters.iter_mut().flatten() {
                parameter.schema.iter_mut().for_each(no_nul_in);
            }
        }
        for operation in operations(openapi) {
            for parameter in operation.parameters.iter_mut().flatten() {
                parameter.schema.iter_mut().for_each(no_nul_in);
            }
            for content in operation
                .request_body
                .iter_mut()
                .flat_map(|body| body.content.values_mut())
            {
                content.schema.iter_mut().for_each(no_nul_in);
            }
            for response in operation.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    for content in response.content.values_mut() {
                        content.schema.iter_mut().for_each(no_nul_in);
                    }
                }
            }
        }
    }
}

/// [`TextWithoutNul`] on one schema and the schemas inside it.
fn no_nul_in(schema: &mut utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>) {
    use utoipa::openapi::RefOr;
    if let RefOr::T(schema) = schema {
        no_nul_in_schema(schema);
    }
}

fn no_nul_in_schema(schema: &mut utoipa::openapi::schema::Schema) {
    use utoipa::openapi::schema::{AdditionalProperties, ArrayItems, Schema, SchemaType, Type};
    match schema {
        Schema::Object(object) => {
            let text = match &object.schema_type {
                SchemaType::Type(Type::String) => true,
                SchemaType::Array(types) => types.contains(&Type::String),
                _ => false,
            };
            if text
                && object.pattern.is_none()
                && object.enum_values.is_none()
                && object.format.is_none()
            {
                object.pattern = Some(NO_NUL.to_owned());
            }
            object.properties.values_mut().for_each(no_nul_in);
            if let Some(additional) = object.additional_properties.as_deref_mut()
                && let AdditionalProperties::RefOr(value) = additional
            {
                no_nul_in(value);
            }
            if let Some(names) = object.property_names.as_deref_mut() {
                no_nul_in_schema(names);
            }
        }
        Schema::Array(array) => {
            if let ArrayItems::RefOrSchema(items) = &mut array.items {
                no_nul_in(items);
            }
            array.prefix_items.iter_mut().for_each(no_nul_in_schema);
        }
        Schema::OneOf(one_of) => one_of.items.iter_mut().for_each(no_nul_in),
        Schema::AllOf(all_of) => all_of.items.iter_mut().for_each(no_nul_in),
        Schema::AnyOf(any_of) => any_of.items.iter_mut().for_each(no_nul_in),
        _ => (),
    }
}

/// The largest Slack interaction accepted (a message of 50 blocks, or a
/// modal, URL-encoded).
const SLACK_BODY_BYTES: usize = 256 * 1024;

/// Every route of the API.
pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/", get(health::index))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(health::openapi))
        .route(
            "/v1/proposals",
            post(proposals::submit).get(proposals::list),
        )
        .route("/v1/proposals/{id}", get(proposals::get))
        .route(
            "/v1/proposals/{id}/comments",
            get(proposals::comments).post(proposals::add_comment),
        )
        .route("/v1/proposals/{id}/cancel", post(proposals::cancel))
        .route("/v1/proposals/{id}/erase", post(proposals::erase))
        .route("/v1/proposals/{id}/audit", get(audit::proposal))
        .route("/v1/audit/pubkey", get(audit::pubkey))
        .route(
            "/v1/audit/checkpoint",
            get(audit::checkpoint).post(audit::issue),
        )
        .route("/v1/audit/checkpoints", get(audit::checkpoints))
        .route("/v1/audit/tile/{*path}", get(audit::tile))
        .route("/v1/audit/entries", get(audit::entries))
        .route("/v1/audit/proof/inclusion", get(audit::inclusion))
        .route("/v1/audit/proof/consistency", get(audit::consistency))
        .route("/v1/tasks", get(tasks::list))
        .route("/v1/tasks/{id}", get(tasks::get))
        .route("/v1/tasks/{id}/claim", post(tasks::claim))
        .route("/v1/tasks/{id}/release", post(tasks::release))
        .route("/v1/tasks/{id}/decision", post(tasks::decide))
        .route("/v1/tasks/decisions", post(tasks::decide_many))
        .route("/v1/grants", get(grants::list))
        .route("/v1/grants/{id}", get(grants::get).delete(grants::revoke))
        .route("/v1/systems", get(systems::list).post(systems::create))
        .route("/v1/systems/{id}", patch(systems::update))
        .route(
            "/v1/systems/{id}/keys",
            post(credentials::create_key).get(credentials::keys),
        )
        .route(
            "/v1/systems/{id}/keys/{key_id}",
            delete(credentials::revoke_key),
        )
        .route(
            "/v1/systems/{id}/webhook",
            get(webhooks::get)
                .put(webhooks::set)
                .delete(webhooks::remove),
        )
        .route(
            "/v1/systems/{id}/webhook/deliveries",
            get(webhooks::deliveries),
        )
        .route(
            "/v1/systems/{id}/webhook/deliveries/{delivery}",
            get(webhooks::delivery),
        )
        .route(
            "/v1/systems/{id}/webhook/deliveries/{delivery}/redeliver",
            post(webhooks::redeliver),
        )
        .route("/v1/users", get(users::list).post(users::create))
        .route("/v1/users/{id}", patch(users::update))
        .route(
            "/v1/users/{id}/tokens",
            post(credentials::create_token).get(credentials::tokens),
        )
        .route(
            "/v1/users/{id}/tokens/{token_id}",
            delete(credentials::revoke_token),
        )
        .route("/v1/policies", get(policies::list).post(policies::publish))
        .route("/v1/policies/validate", post(policies::validate))
        .route("/v1/policies/schema", get(policies::schema))
        .route("/v1/policies/test", post(policies::test))
        .route("/v1/policies/replay", post(policies::replay))
        .route("/v1/policies/activations", get(policies::activations))
        .route(
            "/v1/policies/shadow",
            get(policies::shadow).delete(policies::stop_shadow),
        )
        .route("/v1/policies/{version}", get(policies::get))
        .route("/v1/policies/{version}/activate", post(policies::activate))
        .route("/v1/events", get(events::stream))
        .route("/v1/analytics/overview", get(analytics::overview))
        .route("/v1/analytics/calibration", get(analytics::calibration))
        .route("/v1/analytics/qa", get(analytics::qa))
        .route("/v1/analytics/thresholds", get(analytics::thresholds))
        .route("/v1/analytics/fairness", get(analytics::fairness))
        .route("/v1/analytics/agreement", get(analytics::agreement))
        .route("/v1/exports/labels", get(analytics::labels))
        .route("/v1/groups", get(groups::list))
        .route("/v1/groups/{name}", get(groups::get).put(groups::set))
        .route(
            "/v1/groups/{name}/notifications",
            get(notifications::get).put(notifications::set),
        )
        .route("/v1/notifications", get(notifications::list))
        .route("/v1/notifications/{id}", get(notifications::one))
        .route(
            "/integrations/slack/interactions",
            post(crate::notify::slack::interactions)
                .layer(axum::extract::DefaultBodyLimit::max(SLACK_BODY_BYTES)),
        )
        .merge(crate::ui::router(app.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(refuse_nul_in_address))
        .layer(axum::middleware::from_fn_with_state(app.clone(), deadline))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(CatchPanicLayer::custom(panicked))
        .with_state(app)
}

/// A path or query value holding U+0000 is refused (422) before any route
/// reads it, on every route: PostgreSQL's text cannot hold it (see
/// [`extract::NUL_REFUSED`]).
async fn refuse_nul_in_address(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let address = request.uri().path_and_query().map(|it| it.as_str());
    if address.is_some_and(|it| extract::encoded_holds_nul(it.as_bytes())) {
        return ApiError::invalid(format!("the address: {}", extract::NUL_REFUSED)).into_response();
    }
    next.run(request).await
}

/// A request is answered within `request_timeout` (503 after it), and a
/// request read while the server drains is answered 503 with
/// `Connection: close` instead of being dropped.
async fn deadline(
    axum::extract::State(app): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::http::{HeaderValue, header};
    let timeout = app.config.request_timeout;
    let response = if app.shutdown.is_cancelled() {
        let mut response = ApiError::busy(
            "the server is shutting down; send the request again",
            std::time::Duration::from_secs(1),
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    } else {
        match tokio::time::timeout(timeout, next.run(request)).await {
            Ok(response) => response,
            Err(_) => ApiError::busy(
                format!(
                    "the request was not answered within {} s",
                    timeout.as_secs()
                ),
                std::time::Duration::from_secs(1),
            )
            .into_response(),
        }
    };
    app.metrics.response(response.status().as_u16());
    response
}

/// On every response: no MIME sniffing, no framing, no referrer to other
/// sites, and not stored by caches unless the handler says otherwise
/// (audit tiles are immutable and say so). Pages add their CSP (`ui/`).
async fn security_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::http::{HeaderValue, header};
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    response
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("no route for `{}`", uri.path()),
    )
    .help("the API reference is at /openapi.json")
}

async fn method_not_allowed(method: axum::http::Method, uri: Uri) -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("`{}` does not accept `{method}`", uri.path()),
    )
    .help("the API reference is at /openapi.json")
}

fn panicked(_: Box<dyn Any + Send + 'static>) -> Response {
    ApiError::internal(&"a handler panicked").into_response()
}

/// Parses a path id, or 404 (an id that cannot exist names nothing).
pub(crate) fn parse_id<T>(
    text: &str,
    parse: impl Fn(&str) -> Option<T>,
    what: &str,
) -> Result<T, ApiError> {
    parse(text).ok_or_else(|| ApiError::not_found(what, text))
}

/// Page size: default 50, 1 to 500.
pub(crate) fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(50),
        Some(n) if (1..=500).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::invalid(format!(
            "`limit` must be from 1 to 500, not {n}"
        ))),
    }
}

/// Opaque cursors: the position of the last item seen.
pub mod cursor {
    use crate::http::error::ApiError;

    /// The cursor after `seq`.
    pub fn encode(seq: i64) -> String {
        format!("c{seq}")
    }

    /// A cursor from a query string; 422 when it is not one this API made.
    pub fn decode(cursor: Option<&str>) -> Result<Option<i64>, ApiError> {
        crate::http::formats::cursor(cursor)
    }
}
