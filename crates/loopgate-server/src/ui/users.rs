//! The users page: users, their roles and groups, passwords, disabling.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use loopgate_proto as proto;
use serde_json::Value;

use crate::AppState;
use crate::auth::session::Session;
use crate::http::error::ApiError;
use crate::http::extract::JsonBody;
use crate::http::users;
use crate::ui::{Nav, UiError, lower, ok, render};

pub(crate) struct UserRow {
    id: String,
    username: String,
    roles: Vec<String>,
    groups: String,
    disabled: bool,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    nav: Nav,
    users: Vec<UserRow>,
    all_roles: &'static [&'static str],
    message: Option<String>,
    error: Option<String>,
}

const ALL_ROLES: &[&str] = &["admin", "policy_author", "reviewer", "auditor"];

async fn users_page(
    app: AppState,
    session: &Session,
    message: Option<String>,
    error: Option<String>,
) -> Result<UsersPage, UiError> {
    let list = ok(users::list(State(app), session.caller()).await)?;
    Ok(UsersPage {
        nav: Nav::new(session, "users"),
        users: list
            .items
            .into_iter()
            .map(|u| UserRow {
                id: u.id,
                username: u.username,
                roles: u.roles.iter().map(lower).collect(),
                groups: u.groups.join(", "),
                disabled: u.disabled,
            })
            .collect(),
        all_roles: ALL_ROLES,
        message,
        error,
    })
}

/// `GET /ui/users`.
pub(crate) async fn users(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
) -> Result<Response, UiError> {
    Ok(render(&users_page(app, &session, None, None).await?)?.into_response())
}

fn parse_roles(form: &[(String, String)]) -> Result<Vec<proto::Role>, UiError> {
    form.iter()
        .filter(|(k, _)| k == "role")
        .map(|(_, v)| {
            serde_json::from_value(Value::String(v.clone()))
                .map_err(|_| UiError::from(ApiError::invalid(format!("`{v}` is not a role"))))
        })
        .collect()
}

fn parse_groups(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|it| !it.is_empty())
        .map(str::to_owned)
        .collect()
}

fn field<'a>(form: &'a [(String, String)], key: &str) -> &'a str {
    form.iter()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

async fn users_result(
    app: AppState,
    session: &Session,
    result: Result<String, ApiError>,
) -> Result<Response, UiError> {
    let (message, error, status) = match result {
        Ok(message) => (Some(message), None, StatusCode::OK),
        Err(error) => {
            let problem = error.problem();
            let status =
                StatusCode::from_u16(problem.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
            if status == StatusCode::FORBIDDEN {
                return Err(UiError::status(status, &problem.detail));
            }
            (None, Some(problem.detail), status)
        }
    };
    let page = users_page(app, session, message, error).await?;
    Ok((status, render(&page)?).into_response())
}

/// `POST /ui/users`: a new user (admins).
pub(crate) async fn create_user(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, UiError> {
    let password = field(&form, "password");
    let body = proto::CreateUser {
        username: field(&form, "username").trim().to_owned(),
        roles: parse_roles(&form)?,
        groups: parse_groups(field(&form, "groups")),
        password: (!password.is_empty()).then(|| password.to_owned()),
    };
    let name = body.username.clone();
    let result = users::create(State(app.clone()), session.caller(), JsonBody(body))
        .await
        .map(|_| format!("User {name} created."));
    users_result(app, &session, result).await
}

/// `POST /ui/users/{id}`: roles and groups, or a new password (admins).
pub(crate) async fn update_user(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, UiError> {
    let (body, what) = match field(&form, "op") {
        "password" => {
            let body = proto::UpdateUser {
                password: Some(field(&form, "password").to_owned()),
                revoke_tokens: field(&form, "revoke_tokens") == "on",
                ..Default::default()
            };
            (body, "Password set")
        }
        "disable" | "enable" => {
            let disabled = field(&form, "op") == "disable";
            let body = proto::UpdateUser {
                disabled: Some(disabled),
                ..Default::default()
            };
            (body, if disabled { "Disabled" } else { "Enabled" })
        }
        _ => {
            let body = proto::UpdateUser {
                roles: Some(parse_roles(&form)?),
                groups: Some(parse_groups(field(&form, "groups"))),
                ..Default::default()
            };
            (body, "Roles and groups saved")
        }
    };
    let result = users::update(
        State(app.clone()),
        session.caller(),
        Path(id),
        JsonBody(body),
    )
    .await
    .map(|axum::Json(user)| format!("{what} for {}.", user.username));
    users_result(app, &session, result).await
}
