//! `/v1/systems`: the inventory of AI systems, the kill switch, API keys.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use loopgate_core::routing::schema::Shape;
use loopgate_core::{Role, SystemId};
use loopgate_proto as proto;
use loopgate_store::{NewSystem, SystemPatch};
use serde::Deserialize as _;

use crate::AppState;
use crate::auth::Caller;
use crate::convert;
use crate::http::error::ApiError;
use crate::http::extract::{JsonBody, Path};
use crate::http::parse_id;
use crate::http::proposals::check_text;

/// Every system.
#[utoipa::path(get, path = "/v1/systems", tag = "systems", responses((status = 200, body = proto::Page<proto::System>)))]
pub async fn list(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<proto::Page<proto::System>>, ApiError> {
    caller.user_with(&[Role::Auditor, Role::PolicyAuthor])?;
    let items = app
        .store
        .systems()
        .await?
        .into_iter()
        .map(convert::system)
        .collect();
    Ok(Json(proto::Page {
        items,
        next_cursor: None,
    }))
}

/// Register a system.
#[utoipa::path(post, path = "/v1/systems", tag = "systems", request_body = proto::CreateSystem,
    responses((status = 201, body = proto::System), (status = 409, body = proto::Problem)))]
pub async fn create(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<proto::CreateSystem>,
) -> Result<(StatusCode, Json<proto::System>), ApiError> {
    caller.user_with(&[])?;
    let Some(id) = SystemId::parse(&body.id) else {
        return Err(ApiError::invalid(format!(
            "`{}` is not a valid system id: use 1 to 64 lowercase letters, digits and `-`, starting with a letter",
            body.id
        )));
    };
    check_text("name", &body.name, 200)?;
    if let Some(shape) = &body.shape {
        read_shape(shape)?;
    }
    let new = NewSystem {
        id,
        name: body.name,
        owner: body.owner,
        purpose: body.purpose,
        risk_tier: convert::risk_to_core(body.risk_tier),
        oversight: convert::oversight_to_core(body.oversight),
        shape: body.shape,
    };
    let record = app
        .store
        .create_system(new, &caller.actor(), app.clock.now())
        .await?;
    Ok((StatusCode::CREATED, Json(convert::system(record))))
}

/// Change a system; `{"status": "paused"}` is the kill switch.
#[utoipa::path(patch, path = "/v1/systems/{id}", tag = "systems", params(("id" = String, Path)),
    request_body = proto::UpdateSystem, responses((status = 200, body = proto::System), (status = 404, body = proto::Problem)))]
pub async fn update(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<proto::UpdateSystem>,
) -> Result<Json<proto::System>, ApiError> {
    caller.user_with(&[])?;
    let id = parse_id(&id, SystemId::parse, "system")?;
    if let Some(name) = &body.name {
        check_text("name", name, 200)?;
    }
    let retention = match body.retention.as_deref() {
        None => None,
        Some("off") => Some(None),
        Some(text) => match loopgate_core::duration::parse_iso8601(text) {
            Some(duration) => Some(Some(duration)),
            None => {
                return Err(ApiError::invalid(format!(
                    "`retention` must be an ISO 8601 duration such as P90D, or `off`, not `{text}`"
                )));
            }
        },
    };
    if let Some(shape) = &body.shape {
        read_shape(shape)?;
    }
    let patch = SystemPatch {
        name: body.name,
        owner: body.owner,
        purpose: body.purpose,
        risk_tier: body.risk_tier.map(convert::risk_to_core),
        oversight: body.oversight.map(convert::oversight_to_core),
        status: body.status.map(convert::system_status_to_core),
        retention,
        shape: body.shape,
    };
    let record = app
        .store
        .update_system(&id, patch, &caller.actor(), app.clock.now())
        .await
        .map_err(|e| match e {
            loopgate_store::StoreError::NotFound => ApiError::not_found("system", id.as_str()),
            other => other.into(),
        })?;
    app.systems.clear();
    Ok(Json(convert::system(record)))
}

/// Reads a `shape` declaration from a request.
fn read_shape(value: &serde_json::Value) -> Result<Shape, ApiError> {
    Shape::deserialize(value).map_err(|e| {
        ApiError::invalid(format!("`shape` is not a declaration: {e}")).help(
            "{\"actions\": {\"<action>\": {\"context\": {\"<name>\": \"Long|String|Bool|decimal|Set<String>|Set<Long>\"}}}, \"subject_attributes\": {...}}",
        )
    })
}
