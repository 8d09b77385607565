//! Standing grants: listed by the reviewers of their groups, auditors and
//! admins; revoked by the same reviewers and admins. Grants are made by a
//! decision (`POST /v1/tasks/{id}/decision` with `grant`), never here.

use axum::Json;
use axum::extract::State;
use loopgate_core::{Grant, GrantId, Role, SystemId};
use loopgate_proto as proto;
use loopgate_store::GrantFilter;
use serde::Deserialize;

use crate::AppState;
use crate::auth::Caller;
use crate::convert;
use crate::http::error::ApiError;
use crate::http::extract::{Params, Path};
use crate::http::{page_limit, parse_id};

/// Query of `GET /v1/grants`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct GrantQuery {
    /// Only this system.
    #[param(pattern = r"^[a-z][a-z0-9-]{0,63}$")]
    pub system: Option<String>,
    /// `live` (default) or `all`.
    #[param(pattern = r"^(live|all)$")]
    pub state: Option<String>,
    /// At most this many, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// The groups whose grants the caller sees (`None`: all of them).
fn scope(caller: &Caller) -> Result<Option<Vec<String>>, ApiError> {
    let user = caller.user_with(&[Role::Reviewer, Role::Auditor])?;
    match caller.has(&[Role::Auditor]) {
        true => Ok(None),
        false => Ok(Some(user.groups.clone())),
    }
}

/// List standing grants, newest first: live ones unless `state=all`
/// (reviewers see their groups' grants; auditors and admins all).
#[utoipa::path(get, path = "/v1/grants", tag = "grants", params(GrantQuery),
    responses((status = 200, body = proto::GrantList), (status = 403, body = proto::Problem)))]
pub async fn list(
    State(app): State<AppState>,
    caller: Caller,
    Params(query): Params<GrantQuery>,
) -> Result<Json<proto::GrantList>, ApiError> {
    let groups = scope(&caller)?;
    let now = app.clock.now();
    let live_at = match query.state.as_deref() {
        None | Some("live") => Some(now),
        Some("all") => None,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "`state` must be `live` or `all`, not `{other}`"
            )));
        }
    };
    let system =
        match &query.system {
            Some(text) => Some(SystemId::parse(text).ok_or_else(|| {
                ApiError::invalid(format!("`system` is not a system id: `{text}`"))
            })?),
            None => None,
        };
    let filter = GrantFilter {
        system,
        groups,
        live_at,
        limit: page_limit(query.limit)?,
    };
    let items = app
        .store
        .grants(filter)
        .await?
        .into_iter()
        .map(|it| convert::grant(it, now))
        .collect();
    Ok(Json(proto::GrantList { items }))
}

/// One standing grant.
#[utoipa::path(get, path = "/v1/grants/{id}", tag = "grants", params(("id" = String, Path)),
    responses((status = 200, body = proto::Grant), (status = 404, body = proto::Problem)))]
pub async fn get(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<proto::Grant>, ApiError> {
    let grant = load(&app, &caller, &id).await?;
    Ok(Json(convert::grant(grant, app.clock.now())))
}

/// Revoke a standing grant at once, on every replica (reviewers of its
/// group, admins). A revoked or expired grant is `409 already_decided`.
#[utoipa::path(delete, path = "/v1/grants/{id}", tag = "grants", params(("id" = String, Path)),
    responses((status = 200, body = proto::Grant), (status = 404, body = proto::Problem),
              (status = 409, body = proto::Problem)))]
pub async fn revoke(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<proto::Grant>, ApiError> {
    caller.user_with(&[Role::Reviewer])?;
    let grant = load(&app, &caller, &id).await?;
    if !caller.has(&[Role::Admin]) && !caller.reviewer()?.groups.contains(&grant.group) {
        return Err(ApiError::forbidden(format!(
            "grant `{id}` was given by group `{}`; only its reviewers and admins revoke it",
            grant.group
        )));
    }
    let now = app.clock.now();
    let revoked = app
        .store
        .revoke_grant(&grant.id, &caller.actor(), now)
        .await?;
    Ok(Json(convert::grant(revoked, now)))
}

/// A grant the caller may see; 404 otherwise, as for one that does not exist.
async fn load(app: &AppState, caller: &Caller, id: &str) -> Result<Grant, ApiError> {
    let groups = scope(caller)?;
    let not_found = || ApiError::not_found("grant", id);
    let parsed = parse_id(id, GrantId::parse, "grant")?;
    let grant = app.store.grant(&parsed).await?.ok_or_else(not_found)?;
    match groups {
        Some(groups) if !groups.contains(&grant.group) => Err(not_found()),
        _ => Ok(grant),
    }
}
