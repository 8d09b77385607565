//! `/v1/users`: people, their roles and reviewer groups, personal tokens.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use loopgate_core::ids::is_group_name;
use loopgate_core::{Role, UserId};
use loopgate_proto as proto;
use loopgate_store::{NewUser, Principal, StoreError, UserPatch};

use crate::AppState;
use crate::auth::Caller;
use crate::convert;
use crate::http::error::ApiError;
use crate::http::extract::{JsonBody, Path};
use crate::http::parse_id;
use crate::secrets::hash_password;

/// Every user.
#[utoipa::path(get, path = "/v1/users", tag = "users", responses((status = 200, body = proto::Page<proto::User>)))]
pub async fn list(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<proto::Page<proto::User>>, ApiError> {
    caller.user_with(&[Role::Auditor])?;
    let items = app
        .store
        .users()
        .await?
        .into_iter()
        .map(convert::user)
        .collect();
    Ok(Json(proto::Page {
        items,
        next_cursor: None,
    }))
}

/// Create a user.
#[utoipa::path(post, path = "/v1/users", tag = "users", request_body = proto::CreateUser,
    responses((status = 201, body = proto::User), (status = 409, body = proto::Problem)))]
pub async fn create(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<proto::CreateUser>,
) -> Result<(StatusCode, Json<proto::User>), ApiError> {
    caller.user_with(&[])?;
    let username_ok = !body.username.is_empty()
        && body.username.len() <= crate::ui::MAX_USERNAME
        && body
            .username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !username_ok {
        return Err(ApiError::invalid(format!(
            "`{}` is not a valid username: use 1 to 64 letters, digits, `.`, `_` and `-`",
            body.username
        )));
    }
    check_groups(&body.groups)?;
    let email = contact(body.email, check_email)?;
    let slack_user_id = contact(body.slack_user_id, check_slack_user)?;
    let password_hash = match body.password {
        Some(password) => Some(password_hash(&app, password).await?),
        None => None,
    };
    let new = NewUser {
        id: UserId::from_unique(&ulid::Ulid::new().to_string()),
        username: body.username,
        roles: body.roles.into_iter().map(convert::role_to_core).collect(),
        groups: body.groups,
        password_hash,
        email,
        slack_user_id,
        source: loopgate_core::UserSource::Local,
    };
    let record = app
        .store
        .create_user(new, &caller.actor(), app.clock.now())
        .await?;
    Ok((StatusCode::CREATED, Json(convert::user(record))))
}

/// Change a user's roles, groups or password, or disable or enable them
/// (a disabled user's sessions end, and their tokens, streams and
/// long-polls are refused at once).
#[utoipa::path(patch, path = "/v1/users/{id}", tag = "users", params(("id" = String, Path)), request_body = proto::UpdateUser,
    responses((status = 200, body = proto::User), (status = 404, body = proto::Problem)))]
pub async fn update(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<proto::UpdateUser>,
) -> Result<Json<proto::User>, ApiError> {
    let id = parse_id(&id, UserId::parse, "user")?;
    let is_self = matches!(&caller.0, Principal::User(user) if user.id == id);
    // Users choose what they hear and who stands in for them while they
    // are away; everything else is an admin's.
    let only_notify = body
        == proto::UpdateUser {
            notify: body.notify,
            away_until: body.away_until.clone(),
            delegate: body.delegate.clone(),
            ..Default::default()
        };
    if !(is_self && only_notify) {
        caller.user_with(&[])?;
    }
    if let Some(groups) = &body.groups {
        check_groups(groups)?;
    }
    if is_self && body.disabled == Some(true) {
        return Err(ApiError::invalid("an admin cannot disable themself")
            .help("ask another admin, so that somebody can still sign in"));
    }
    let patch = UserPatch {
        roles: body
            .roles
            .map(|roles| roles.into_iter().map(convert::role_to_core).collect()),
        groups: body.groups,
        password_hash: match body.password {
            Some(password) => Some(password_hash(&app, password).await?),
            None => None,
        },
        disabled: body.disabled,
        revoke_tokens: body.revoke_tokens,
        email: body
            .email
            .map(|e| contact(Some(e), check_email))
            .transpose()?,
        slack_user_id: body
            .slack_user_id
            .map(|s| contact(Some(s), check_slack_user))
            .transpose()?,
        notify: body
            .notify
            .map(convert::prefs_to_core)
            .transpose()
            .map_err(ApiError::invalid)?,
        away_until: body
            .away_until
            .as_deref()
            .map(|text| away_until(text, app.clock.now()))
            .transpose()?,
        delegate: body.delegate.as_deref().map(delegate).transpose()?,
    };
    let record = app
        .store
        .update_user(&id, patch, &caller.actor(), app.clock.now())
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::not_found("user", id.as_str()),
            other => other.into(),
        })?;
    app.credentials_changed();
    Ok(Json(convert::user(record)))
}

/// A stand-in's username (`""`: nobody), checked like a username before
/// the store looks it up.
fn delegate(name: &str) -> Result<Option<String>, ApiError> {
    let name = name.trim();
    if name.is_empty() {
        return Ok(None);
    }
    let ok = name.len() <= crate::ui::MAX_USERNAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    match ok {
        true => Ok(Some(name.to_owned())),
        false => Err(ApiError::invalid(
            "`delegate` must be a username: 1 to 64 letters, digits, `.`, `_` and `-`",
        )),
    }
}

/// An absence's end: RFC 3339 (`""`: back now), at most a year ahead.
fn away_until(
    text: &str,
    now: loopgate_core::Timestamp,
) -> Result<Option<loopgate_core::Timestamp>, ApiError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let Some(at) = loopgate_core::Timestamp::parse_rfc3339(text.trim()) else {
        return Err(ApiError::invalid(format!(
            "`away_until` must be an RFC 3339 time such as `2026-12-24T00:00:00Z`, not `{}`",
            crate::http::error::quoted(text)
        )));
    };
    // Years of absence read as a typo; a year is plenty for a leave.
    if now.plus(std::time::Duration::from_secs(366 * 86_400)) < at {
        return Err(ApiError::invalid(
            "`away_until` must be within a year from now",
        ));
    }
    Ok(Some(at))
}

/// The shortest password accepted.
pub(crate) const MIN_PASSWORD: usize = 12;

/// Checks a new password's length and hashes it (argon2id, off the async
/// threads).
pub(crate) async fn password_hash(app: &AppState, password: String) -> Result<String, ApiError> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(ApiError::invalid(format!(
            "a password must have at least {MIN_PASSWORD} characters"
        )));
    }
    if crate::ui::MAX_PASSWORD < password.chars().count() {
        return Err(ApiError::invalid(format!(
            "a password must have at most {} characters",
            crate::ui::MAX_PASSWORD
        )));
    }
    app.passwords
        .run(move || hash_password(&password))
        .await?
        .map_err(|e| ApiError::internal(&e))
}

fn check_groups(groups: &[String]) -> Result<(), ApiError> {
    match groups.iter().find(|g| !is_group_name(g)) {
        Some(bad) => Err(ApiError::invalid(format!(
            "`{bad}` is not a group name: use lowercase letters, digits, `-` and `_`"
        ))),
        None => Ok(()),
    }
}

/// A contact detail from the wire: `""` is none; anything else is checked.
fn contact(
    value: Option<String>,
    check: fn(&str) -> Result<(), String>,
) -> Result<Option<String>, ApiError> {
    match value.map(|v| v.trim().to_owned()) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => {
            check(&v).map_err(ApiError::invalid)?;
            Ok(Some(v))
        }
    }
}

fn check_email(address: &str) -> Result<(), String> {
    crate::notify::email::check_address(address)
}

/// A Slack member id: `U` or `W` and up to 20 capitals and digits.
pub(crate) fn check_slack_user(id: &str) -> Result<(), String> {
    let ok = (2..=21).contains(&id.len())
        && id.starts_with(['U', 'W'])
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    match ok {
        true => Ok(()),
        false => Err(format!(
            "`{id}` is not a Slack member id (`U` or `W` and capitals and digits)"
        )),
    }
}
