//! API keys of systems (`/v1/systems/{id}/keys`) and personal tokens of
//! users (`/v1/users/{id}/tokens`): issue (the secret is shown once), list
//! (never the secret), revoke. A revoked or expired credential is refused
//! at once on every replica: the change's event clears each replica's
//! credential cache and makes open streams and long-polls check again.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use loopgate_core::duration::parse_iso8601;
use loopgate_core::{Role, SystemId, Timestamp, UserId};
use loopgate_proto as proto;
use loopgate_store::{CredentialOwner, CredentialRecord, NewCredential, Principal, StoreError};

use crate::AppState;
use crate::auth::Caller;
use crate::http::error::ApiError;
use crate::http::extract::{JsonBodyOr, Path};
use crate::http::parse_id;
use crate::secrets::{hash_secret, new_secret};

/// The longest `expires_in`: ten years.
const MAX_LIFETIME: Duration = Duration::from_secs(10 * 366 * 24 * 3600);
/// The longest name.
const MAX_NAME: usize = 100;

/// A new API key for a system, shown once.
#[utoipa::path(post, path = "/v1/systems/{id}/keys", tag = "systems", params(("id" = String, Path)),
    request_body(content = Option<proto::CreateCredential>, description = "optional"),
    responses((status = 201, body = proto::IssuedSecret), (status = 404, body = proto::Problem)))]
pub async fn create_key(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBodyOr(body): JsonBodyOr<proto::CreateCredential>,
) -> Result<(StatusCode, Json<proto::IssuedSecret>), ApiError> {
    caller.user_with(&[])?;
    let owner = system_owner(&app, &id).await?;
    issue(&app, &caller, owner, "key", "lgk_", body).await
}

/// A system's API keys, newest first, revoked ones included.
#[utoipa::path(get, path = "/v1/systems/{id}/keys", tag = "systems", params(("id" = String, Path)),
    responses((status = 200, body = proto::Page<proto::Credential>), (status = 404, body = proto::Problem)))]
pub async fn keys(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<proto::Page<proto::Credential>>, ApiError> {
    caller.user_with(&[Role::Auditor])?;
    let owner = system_owner(&app, &id).await?;
    list(&app, &owner).await
}

/// Revoke a system's API key: refused at once, on every replica.
#[utoipa::path(delete, path = "/v1/systems/{id}/keys/{key_id}", tag = "systems",
    params(("id" = String, Path), ("key_id" = String, Path)),
    responses((status = 200, body = proto::Credential), (status = 404, body = proto::Problem)))]
pub async fn revoke_key(
    State(app): State<AppState>,
    caller: Caller,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<Json<proto::Credential>, ApiError> {
    caller.user_with(&[])?;
    let owner = system_owner(&app, &id).await?;
    revoke(&app, &caller, &owner, &key_id).await
}

/// A new personal API token, shown once (admins, or the user for themself).
#[utoipa::path(post, path = "/v1/users/{id}/tokens", tag = "users", params(("id" = String, Path)),
    request_body(content = Option<proto::CreateCredential>, description = "optional"),
    responses((status = 201, body = proto::IssuedSecret), (status = 404, body = proto::Problem)))]
pub async fn create_token(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBodyOr(body): JsonBodyOr<proto::CreateCredential>,
) -> Result<(StatusCode, Json<proto::IssuedSecret>), ApiError> {
    let owner = user_owner(&app, &caller, &id, Access::Change).await?;
    issue(&app, &caller, owner, "tok", "lgt_", body).await
}

/// A user's personal tokens, newest first, revoked ones included (admins,
/// auditors, or the user themself).
#[utoipa::path(get, path = "/v1/users/{id}/tokens", tag = "users", params(("id" = String, Path)),
    responses((status = 200, body = proto::Page<proto::Credential>), (status = 404, body = proto::Problem)))]
pub async fn tokens(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<proto::Page<proto::Credential>>, ApiError> {
    let owner = user_owner(&app, &caller, &id, Access::Read).await?;
    list(&app, &owner).await
}

/// Revoke a personal token (admins, or the user themself).
#[utoipa::path(delete, path = "/v1/users/{id}/tokens/{token_id}", tag = "users",
    params(("id" = String, Path), ("token_id" = String, Path)),
    responses((status = 200, body = proto::Credential), (status = 404, body = proto::Problem)))]
pub async fn revoke_token(
    State(app): State<AppState>,
    caller: Caller,
    Path((id, token_id)): Path<(String, String)>,
) -> Result<Json<proto::Credential>, ApiError> {
    let owner = user_owner(&app, &caller, &id, Access::Change).await?;
    revoke(&app, &caller, &owner, &token_id).await
}

async fn system_owner(app: &AppState, id: &str) -> Result<CredentialOwner, ApiError> {
    let id = parse_id(id, SystemId::parse, "system")?;
    if app.store.system(&id).await?.is_none() {
        return Err(ApiError::not_found("system", id.as_str()));
    }
    Ok(CredentialOwner::System(id))
}

enum Access {
    Read,
    Change,
}

/// A user's credentials are the admins' and the user's own (who must hold
/// a role: a user stripped of every role mints nothing); auditors read them.
async fn user_owner(
    app: &AppState,
    caller: &Caller,
    id: &str,
    access: Access,
) -> Result<CredentialOwner, ApiError> {
    let id = parse_id(id, UserId::parse, "user")?;
    let own = matches!(&caller.0, Principal::User(user) if user.id == id && !user.roles.is_empty());
    if !own {
        match access {
            Access::Read => caller.user_with(&[Role::Auditor])?,
            Access::Change => caller.user_with(&[])?,
        };
    }
    if app.store.user(&id).await?.is_none() {
        return Err(ApiError::not_found("user", id.as_str()));
    }
    Ok(CredentialOwner::User(id))
}

async fn issue(
    app: &AppState,
    caller: &Caller,
    owner: CredentialOwner,
    kind: &str,
    prefix: &str,
    body: proto::CreateCredential,
) -> Result<(StatusCode, Json<proto::IssuedSecret>), ApiError> {
    let name = body.name.unwrap_or_default();
    if MAX_NAME < name.chars().count() || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "`name` must be at most {MAX_NAME} characters, without control characters"
        )));
    }
    let now = app.clock.now();
    let expires_at = match body.expires_in.as_deref() {
        None => None,
        Some(text) => Some(expires_at(text, now)?),
    };
    let secret = new_secret(prefix).map_err(|e| ApiError::internal(&e))?;
    let id = format!("{kind}_{}", ulid::Ulid::new());
    let owner_name = owner.id().to_owned();
    let credential = NewCredential {
        id: id.clone(),
        hash: hash_secret(&secret),
        owner,
        name: name.clone(),
        expires_at,
    };
    app.store
        .create_credential(credential, &caller.actor(), now)
        .await?;
    let issued = proto::IssuedSecret {
        id,
        secret,
        owner: owner_name,
        created_at: now.to_rfc3339(),
        name,
        expires_at: expires_at.map(Timestamp::to_rfc3339),
    };
    // Not stored by caches: every response is `Cache-Control: no-store`
    // unless it says otherwise (`http::security_headers`).
    Ok((StatusCode::CREATED, Json(issued)))
}

/// `expires_in` from now: a positive ISO 8601 duration of at most ten years.
fn expires_at(text: &str, now: Timestamp) -> Result<Timestamp, ApiError> {
    match parse_iso8601(text) {
        Some(lifetime) if !lifetime.is_zero() && lifetime <= MAX_LIFETIME => Ok(now.plus(lifetime)),
        _ => Err(ApiError::invalid(format!(
            "`expires_in` must be an ISO 8601 duration from one second to ten years (e.g. `P90D`), not `{text}`"
        ))),
    }
}

async fn list(
    app: &AppState,
    owner: &CredentialOwner,
) -> Result<Json<proto::Page<proto::Credential>>, ApiError> {
    let items = app
        .store
        .credentials(owner)
        .await?
        .into_iter()
        .map(|it| credential(it, app.clock.now()))
        .collect();
    Ok(Json(proto::Page {
        items,
        next_cursor: None,
    }))
}

async fn revoke(
    app: &AppState,
    caller: &Caller,
    owner: &CredentialOwner,
    id: &str,
) -> Result<Json<proto::Credential>, ApiError> {
    let record = app
        .store
        .revoke_credential(owner, id, &caller.actor(), app.clock.now())
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::not_found("credential", id),
            other => other.into(),
        })?;
    app.credentials_changed();
    Ok(Json(credential(record, app.clock.now())))
}

pub(crate) fn credential(record: CredentialRecord, now: Timestamp) -> proto::Credential {
    proto::Credential {
        active: record.revoked_at.is_none() && record.expires_at.is_none_or(|at| now < at),
        owner: record.owner.id().to_owned(),
        id: record.id,
        name: record.name,
        created_at: record.created_at.to_rfc3339(),
        last_used_at: record.last_used_at.map(Timestamp::to_rfc3339),
        expires_at: record.expires_at.map(Timestamp::to_rfc3339),
        revoked_at: record.revoked_at.map(Timestamp::to_rfc3339),
    }
}
