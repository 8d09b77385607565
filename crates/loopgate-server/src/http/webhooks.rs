//! `/v1/systems/{id}/webhook`: a system's webhook endpoint, its delivery
//! history and manual redelivery (docs/integrations.md).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use loopgate_core::{EventKind, SystemId};
use loopgate_proto as proto;
use loopgate_store::{DeliveryFilter, DeliveryRecord, DeliveryState, WebhookConfig};
use serde::Deserialize;

use crate::AppState;
use crate::auth::Caller;
use crate::committed::Committed;
use crate::http::error::ApiError;
use crate::http::extract::{JsonBody, Params, Path};
use crate::http::{cursor, page_limit, parse_id};
use crate::webhooks::{DEFAULT_TYPES, check_secret, message_id, new_secret, types};

/// The system of the path, if the caller may see its webhook: an admin, or
/// the system's own key.
fn owned_system(caller: &Caller, id: &str) -> Result<SystemId, ApiError> {
    let system = parse_id(id, SystemId::parse, "system")?;
    if caller.system() != Some(&system) {
        caller.user_with(&[])?;
    }
    Ok(system)
}

fn no_webhook(system: &SystemId) -> ApiError {
    ApiError::new(
        loopgate_proto::ErrorCode::NotFound,
        format!("system `{system}` has no webhook"),
    )
    .help(format!("set one with PUT /v1/systems/{system}/webhook"))
}

fn view(webhook: WebhookConfig, secret: bool) -> proto::Webhook {
    proto::Webhook {
        system: webhook.system.to_string(),
        url: webhook.url,
        types: webhook
            .types
            .iter()
            .map(|k| k.as_str().to_owned())
            .collect(),
        secret: secret.then_some(webhook.secret),
        created_at: webhook.created_at.to_rfc3339(),
        updated_at: webhook.updated_at.to_rfc3339(),
    }
}

fn delivery_view(delivery: DeliveryRecord) -> proto::Delivery {
    proto::Delivery {
        id: message_id(delivery.id),
        event: delivery.id,
        kind: delivery.kind.as_str().to_owned(),
        subject: delivery.subject,
        state: delivery.state.as_str().to_owned(),
        attempts: delivery.attempts,
        next_attempt_at: delivery.next_at.map(|t| t.to_rfc3339()),
        created_at: delivery.created_at.to_rfc3339(),
        delivered_at: delivery.delivered_at.map(|t| t.to_rfc3339()),
        last_status: delivery.last_status,
        last_error: delivery.last_error,
        history: delivery
            .history
            .into_iter()
            .map(crate::convert::attempt)
            .collect(),
    }
}

/// A system's webhook (without its secret).
#[utoipa::path(get, path = "/v1/systems/{id}/webhook", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 200, body = proto::Webhook), (status = 404, body = proto::Problem)))]
pub async fn get(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<proto::Webhook>, ApiError> {
    let system = owned_system(&caller, &id)?;
    match app.store.webhook(&system).await? {
        Some(webhook) => Ok(Json(view(webhook, false))),
        None => Err(no_webhook(&system)),
    }
}

/// Set (or replace) a system's webhook. The answer holds the signing secret:
/// the one given, else the current one, else a new one.
#[utoipa::path(put, path = "/v1/systems/{id}/webhook", tag = "webhooks", params(("id" = String, Path)),
    request_body = proto::SetWebhook,
    responses((status = 200, body = proto::Webhook), (status = 404, body = proto::Problem), (status = 422, body = proto::Problem)))]
pub async fn set(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<proto::SetWebhook>,
) -> Result<Json<proto::Webhook>, ApiError> {
    caller.user_with(&[])?;
    let system = parse_id(&id, SystemId::parse, "system")?;
    check_url("url", &body.url)?;
    let types = match body.types {
        None => DEFAULT_TYPES.to_vec(),
        Some(types) => check_types(types)?,
    };
    if let Some(secret) = &body.secret {
        check_secret(secret)
            .map_err(|problem| ApiError::invalid(format!("`secret`: {problem}")))?;
    }
    // Last: the host is resolved and every address checked against the fence.
    check_destination(&app, "url", &body.url).await?;
    let current = app.store.webhook(&system).await?;
    let secret = match (body.secret, current) {
        (Some(secret), _) => secret,
        (None, Some(current)) => current.secret,
        (None, None) => new_secret().map_err(|e| ApiError::internal(&e))?,
    };
    let now = app.clock.now();
    let webhook = WebhookConfig {
        system: system.clone(),
        url: body.url,
        secret,
        types,
        created_at: now,
        updated_at: now,
    };
    let stored = app
        .store
        .set_webhook(webhook, &caller.actor(), now)
        .await
        .map_err(|e| match e {
            loopgate_store::StoreError::NotFound => ApiError::not_found("system", system.as_str()),
            other => other.into(),
        })?;
    Ok(Json(view(stored, true)))
}

/// Remove a system's webhook; its pending deliveries fail.
#[utoipa::path(delete, path = "/v1/systems/{id}/webhook", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = proto::Problem)))]
pub async fn remove(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.user_with(&[])?;
    let system = parse_id(&id, SystemId::parse, "system")?;
    match app
        .store
        .remove_webhook(&system, &caller.actor(), app.clock.now())
        .await?
    {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(no_webhook(&system)),
    }
}

/// Filters of `GET /v1/systems/{id}/webhook/deliveries`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// Only this state: `pending`, `delivered`, `failed`.
    #[param(pattern = r"^(pending|delivered|failed)$")]
    state: Option<String>,
    /// From a previous page's `next_cursor`.
    #[param(pattern = r"^c[0-9]{1,18}$")]
    cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// A system's deliveries, newest first.
#[utoipa::path(get, path = "/v1/systems/{id}/webhook/deliveries", tag = "webhooks",
    params(("id" = String, Path), DeliveriesQuery),
    responses((status = 200, body = proto::Page<proto::Delivery>)))]
pub async fn deliveries(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Params(query): Params<DeliveriesQuery>,
) -> Result<Json<proto::Page<proto::Delivery>>, ApiError> {
    let system = owned_system(&caller, &id)?;
    let state = match query.state.as_deref() {
        None => None,
        Some(text) => Some(DeliveryState::parse(text).ok_or_else(|| {
            ApiError::invalid(format!(
                "`state` must be pending, delivered or failed, not `{text}`"
            ))
        })?),
    };
    let filter = DeliveryFilter {
        system,
        state,
        before: cursor::decode(query.cursor.as_deref())?,
        limit: page_limit(query.limit)?,
    };
    let page = app.store.deliveries(filter).await?;
    Ok(Json(proto::Page {
        items: page.items.into_iter().map(delivery_view).collect(),
        next_cursor: page.next.map(cursor::encode),
    }))
}

/// A delivery id from the path: `msg_<n>` (or the bare event id).
fn delivery_id(text: &str) -> Result<i64, ApiError> {
    text.strip_prefix("msg_")
        .unwrap_or(text)
        .parse::<i64>()
        .ok()
        .filter(|n| 0 < *n)
        .ok_or_else(|| ApiError::not_found("delivery", text))
}

/// One delivery with every attempt.
#[utoipa::path(get, path = "/v1/systems/{id}/webhook/deliveries/{delivery}", tag = "webhooks",
    params(("id" = String, Path), ("delivery" = String, Path)),
    responses((status = 200, body = proto::Delivery), (status = 404, body = proto::Problem)))]
pub async fn delivery(
    State(app): State<AppState>,
    caller: Caller,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<Json<proto::Delivery>, ApiError> {
    let system = owned_system(&caller, &id)?;
    let n = delivery_id(&delivery)?;
    match app.store.delivery(&system, n).await? {
        Some(record) => Ok(Json(delivery_view(record))),
        None => Err(ApiError::not_found("delivery", &delivery)),
    }
}

/// Send a delivery again now (whatever its state), with a fresh retry window.
#[utoipa::path(post, path = "/v1/systems/{id}/webhook/deliveries/{delivery}/redeliver", tag = "webhooks",
    params(("id" = String, Path), ("delivery" = String, Path)),
    responses((status = 202, body = proto::Delivery), (status = 404, body = proto::Problem)))]
pub async fn redeliver(
    State(app): State<AppState>,
    caller: Caller,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<(StatusCode, Json<proto::Delivery>), ApiError> {
    let system = owned_system(&caller, &id)?;
    let n = delivery_id(&delivery)?;
    let record = app
        .store
        .redeliver(&system, n, app.clock.now())
        .await
        .map_err(|e| match e {
            loopgate_store::StoreError::NotFound => ApiError::not_found("delivery", &delivery),
            other => other.into(),
        })?;
    app.committed(Committed::Requeued);
    Ok((StatusCode::ACCEPTED, Json(delivery_view(record))))
}

pub(crate) fn check_url(field: &str, url: &str) -> Result<(), ApiError> {
    let bad = |why: &str| ApiError::invalid(format!("`{field}` {why}, not `{url}`"));
    let parsed = reqwest::Url::parse(url).map_err(|_| bad("must be an absolute http(s) URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("must use http or https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("must name a host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad(
            "must not hold credentials (the signature authenticates loopgate)",
        ));
    }
    Ok(())
}

/// Refuses a URL whose host is, or resolves to, an internal address (unless
/// `webhook_allow_private` allows it).
pub(crate) async fn check_destination(
    app: &AppState,
    field: &str,
    url: &str,
) -> Result<(), ApiError> {
    let parsed = reqwest::Url::parse(url).map_err(|_| {
        ApiError::invalid(format!(
            "`{field}` must be an absolute http(s) URL, not `{url}`"
        ))
    })?;
    let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default()) else {
        return Err(ApiError::invalid(format!(
            "`{field}` must name a host, not `{url}`"
        )));
    };
    app.fence
        .check_host(host, port)
        .await
        .map_err(|refused| ApiError::invalid(format!("`{field}` is refused: {refused}")))
}

fn check_types(asked: Vec<String>) -> Result<Vec<EventKind>, ApiError> {
    let mut kinds = Vec::with_capacity(asked.len());
    for name in &asked {
        match EventKind::parse(name).filter(|kind| kind.is_about_a_proposal()) {
            Some(kind) => kinds.push(kind),
            None => {
                let all: Vec<&str> = types().map(EventKind::as_str).collect();
                return Err(ApiError::invalid(format!(
                    "`{name}` is not an event type a webhook can receive"
                ))
                .help(format!("use any of: {}", all.join(", "))));
            }
        }
    }
    if kinds.is_empty() {
        return Err(ApiError::invalid(
            "`types` must name at least one event type",
        ));
    }
    kinds.sort_by_key(|kind| kind.as_str());
    kinds.dedup();
    Ok(kinds)
}
