//! `/v1/policies`: publish immutable policy versions, list them, validate text.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use loopgate_core::Role;
use loopgate_core::routing::Policies;
use loopgate_proto as proto;
use loopgate_store::NewPolicy;

use crate::AppState;
use crate::auth::Caller;
use crate::convert;
use crate::http::error::ApiError;
use crate::http::extract::JsonBody;

/// Every version, newest first; the first is live.
#[utoipa::path(get, path = "/v1/policies", tag = "policies", responses((status = 200, body = proto::Page<proto::PolicyVersion>)))]
pub async fn list(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<proto::Page<proto::PolicyVersion>>, ApiError> {
    caller.user_with(&[Role::PolicyAuthor, Role::Auditor])?;
    let records = app.store.policies().await?;
    let items = records
        .into_iter()
        .enumerate()
        .map(|(i, record)| convert::policy(record, i == 0))
        .collect();
    Ok(Json(proto::Page {
        items,
        next_cursor: None,
    }))
}

/// Publish a new version and make it live. Invalid text leaves the live version untouched.
#[utoipa::path(post, path = "/v1/policies", tag = "policies", request_body = proto::PublishPolicy,
    responses((status = 201, body = proto::PolicyVersion), (status = 422, body = proto::Problem)))]
pub async fn publish(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<proto::PublishPolicy>,
) -> Result<(StatusCode, Json<proto::PolicyVersion>), ApiError> {
    caller.user_with(&[Role::PolicyAuthor])?;
    let policies = Policies::parse(&body.text)?;
    let new = NewPolicy {
        version: policies.version().to_owned(),
        text: body.text,
        description: body.description,
        policy_ids: policies.ids().to_vec(),
    };
    let record = app
        .store
        .publish_policy(new, &caller.actor(), app.clock.now())
        .await?;
    app.set_live_policies(record.seq, policies);
    Ok((StatusCode::CREATED, Json(convert::policy(record, true))))
}

/// Check policy text without publishing it.
#[utoipa::path(post, path = "/v1/policies/validate", tag = "policies", request_body = proto::PublishPolicy,
    responses((status = 200, body = proto::PolicyValidation), (status = 422, body = proto::Problem)))]
pub async fn validate(
    caller: Caller,
    JsonBody(body): JsonBody<proto::PublishPolicy>,
) -> Result<Json<proto::PolicyValidation>, ApiError> {
    caller.user_with(&[Role::PolicyAuthor])?;
    let policies = Policies::parse(&body.text)?;
    Ok(Json(proto::PolicyValidation {
        version: policies.version().to_owned(),
        policy_ids: policies.ids().to_vec(),
    }))
}
