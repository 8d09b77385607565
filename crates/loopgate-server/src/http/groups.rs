//! `/v1/groups`: reviewer groups and how their tasks find a reviewer
//! (`assignment`: pool, round robin or least loaded).

use axum::Json;
use axum::extract::State;
use loopgate_core::Role;
use loopgate_core::assign::GroupSettings;
use loopgate_core::ids::is_group_name;
use loopgate_proto as proto;
use loopgate_store::GroupRecord;

use crate::AppState;
use crate::auth::Caller;
use crate::convert;
use crate::events::sees_everything;
use crate::http::error::ApiError;
use crate::http::extract::{JsonBody, Path};

/// A group name an admin may set something on; a sentence otherwise.
pub(crate) fn settable(name: &str) -> Result<(), ApiError> {
    match is_group_name(name) {
        true => Ok(()),
        false => Err(ApiError::invalid(format!(
            "`{name}` is not a group name: use 1 to 64 lowercase letters, digits, `_` and `-`"
        ))),
    }
}

/// The groups the caller may see: every group for admins and auditors,
/// their own for reviewers.
async fn visible(app: &AppState, caller: &Caller) -> Result<Vec<proto::Group>, ApiError> {
    let user = caller.user_with(&[Role::Auditor, Role::Reviewer])?;
    let sees_all = sees_everything(user);
    let groups = app.store.groups().await?;
    Ok(groups
        .into_iter()
        .filter(|g| sees_all || user.groups.contains(&g.group))
        .map(convert::group)
        .collect())
}

/// Every reviewer group (named by a user or set up by an admin).
#[utoipa::path(get, path = "/v1/groups", tag = "groups",
    responses((status = 200, body = proto::Page<proto::Group>)))]
pub async fn list(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<proto::Page<proto::Group>>, ApiError> {
    Ok(Json(proto::Page {
        items: visible(&app, &caller).await?,
        next_cursor: None,
    }))
}

/// One group (a name nobody uses yet shows the defaults).
#[utoipa::path(get, path = "/v1/groups/{name}", tag = "groups", params(("name" = String, Path)),
    responses((status = 200, body = proto::Group), (status = 404, body = proto::Problem)))]
pub async fn get(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<proto::Group>, ApiError> {
    if !is_group_name(&name) {
        return Err(ApiError::not_found("group", &name));
    }
    let user = caller.user_with(&[Role::Auditor, Role::Reviewer])?;
    if !sees_everything(user) && !user.groups.contains(&name) {
        return Err(ApiError::not_found("group", &name));
    }
    let found = visible(&app, &caller)
        .await?
        .into_iter()
        .find(|g| g.group == name);
    Ok(Json(found.unwrap_or_else(|| {
        let record = GroupRecord {
            group: name,
            settings: GroupSettings::default(),
            last_turn: None,
            members: Vec::new(),
            updated_at: None,
        };
        convert::group(record)
    })))
}

/// Set how a group's tasks find a reviewer (admins; `group.updated`).
/// Tasks created from now on follow it; tasks already assigned keep their
/// assignee.
#[utoipa::path(put, path = "/v1/groups/{name}", tag = "groups", params(("name" = String, Path)),
    request_body = proto::SetGroup,
    responses((status = 200, body = proto::Group), (status = 422, body = proto::Problem)))]
pub async fn set(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<proto::SetGroup>,
) -> Result<Json<proto::Group>, ApiError> {
    caller.user_with(&[])?;
    settable(&name)?;
    let mut settings = GroupSettings {
        assignment: convert::assignment_to_core(body.assignment),
        ..GroupSettings::default()
    };
    if let Some(text) = &body.return_after {
        settings.return_after = crate::http::formats::return_after(text)?;
    }
    settings.check().map_err(ApiError::invalid)?;
    let record = app
        .store
        .set_group(&name, settings, &caller.actor(), app.clock.now())
        .await?;
    Ok(Json(convert::group(record)))
}
