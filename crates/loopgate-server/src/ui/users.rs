//! The users page: users, their roles and groups, passwords, disabling.

use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use loopgate_proto as proto;
use serde_json::Value;

use crate::AppState;
use crate::auth::session::Session;
use crate::http::error::ApiError;
use crate::http::extract::{JsonBody, Path};
use crate::http::users;
use crate::ui::Form;
use crate::ui::{Nav, UiError, lower, ok, render};

pub(crate) struct UserRow {
    id: String,
    username: String,
    roles: Vec<String>,
    groups: String,
    disabled: bool,
    email: String,
    slack_user_id: String,
}

/// A reviewer group's notification settings, as the form shows them.
pub(crate) struct GroupRow {
    name: String,
    /// `pool`, `round_robin` or `least_loaded`.
    assignment: &'static str,
    /// How long an assignee has to open a task (`30m`).
    return_after: String,
    email: String,
    slack_channel: String,
    teams_webhook: String,
    events: Vec<String>,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    nav: Nav,
    users: Vec<UserRow>,
    all_roles: &'static [&'static str],
    groups: Vec<GroupRow>,
    all_events: &'static [&'static str],
    message: Option<String>,
    error: Option<String>,
}

const ALL_EVENTS: &[&str] = &["task.created", "task.escalated", "task.sla_warning"];

const ALL_ROLES: &[&str] = &["admin", "policy_author", "reviewer", "auditor"];

async fn users_page(
    app: AppState,
    session: &Session,
    message: Option<String>,
    error: Option<String>,
) -> Result<UsersPage, UiError> {
    let list = ok(users::list(State(app.clone()), session.caller()).await)?;
    // Every group some user is in, or that has settings (admins only).
    let mut groups: Vec<GroupRow> = Vec::new();
    if session.user.roles.contains(&loopgate_core::Role::Admin) {
        let mut names: std::collections::BTreeSet<String> =
            list.items.iter().flat_map(|u| u.groups.clone()).collect();
        let settings = app.store.group_notifications().await?;
        names.extend(settings.iter().map(|g| g.group.clone()));
        let assigning = app.store.groups().await?;
        names.extend(assigning.iter().map(|g| g.group.clone()));
        for name in names {
            let found = settings.iter().find(|g| g.group == name);
            let assigns = assigning
                .iter()
                .find(|g| g.group == name)
                .map(|g| g.settings)
                .unwrap_or_default();
            groups.push(GroupRow {
                assignment: assigns.assignment.as_str(),
                return_after: loopgate_core::duration::format(assigns.return_after),
                email: found.map_or(String::new(), |g| g.channels.email.join(", ")),
                slack_channel: found
                    .and_then(|g| g.channels.slack_channel.clone())
                    .unwrap_or_default(),
                teams_webhook: found
                    .and_then(|g| g.channels.teams_webhook.clone())
                    .unwrap_or_default(),
                events: found.map_or(Vec::new(), |g| {
                    g.channels
                        .events
                        .iter()
                        .map(|e| e.as_str().to_owned())
                        .collect()
                }),
                name,
            });
        }
    }
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
                email: u.email.unwrap_or_default(),
                slack_user_id: u.slack_user_id.unwrap_or_default(),
            })
            .collect(),
        all_roles: ALL_ROLES,
        groups,
        all_events: ALL_EVENTS,
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
        email: Some(field(&form, "email").to_owned()),
        slack_user_id: Some(field(&form, "slack_user_id").to_owned()),
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
                email: Some(field(&form, "email").to_owned()),
                slack_user_id: Some(field(&form, "slack_user_id").to_owned()),
                ..Default::default()
            };
            (body, "Roles, groups and contact saved")
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

/// `POST /ui/groups/{name}/notifications`: a group's channels and events
/// (admins).
/// `POST /ui/groups/{name}/assignment`: how the group's tasks find a reviewer.
pub(crate) async fn set_group_assignment(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, UiError> {
    let assignment = serde_json::from_value(Value::String(field(&form, "assignment").to_owned()))
        .map_err(|_| {
        UiError::from(ApiError::invalid(
            "assignment is pool, round_robin or least_loaded",
        ))
    })?;
    let return_after = field(&form, "return_after").trim();
    let body = proto::SetGroup {
        assignment,
        return_after: (!return_after.is_empty()).then(|| return_after.to_owned()),
    };
    let result = crate::http::groups::set(
        State(app.clone()),
        session.caller(),
        Path(name.clone()),
        JsonBody(body),
    )
    .await
    .map(|_| format!("Assignment of {name} saved."));
    users_result(app, &session, result).await
}

pub(crate) async fn set_group_notifications(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, UiError> {
    let body = proto::SetGroupNotifications {
        email: parse_groups(field(&form, "email")),
        slack_channel: Some(field(&form, "slack_channel").trim().to_owned()),
        teams_webhook: Some(field(&form, "teams_webhook").trim().to_owned()),
        events: Some(
            form.iter()
                .filter(|(k, _)| k == "event")
                .map(|(_, v)| v.clone())
                .collect(),
        ),
    };
    let result = crate::http::notifications::set(
        State(app.clone()),
        session.caller(),
        Path(name.clone()),
        JsonBody(body),
    )
    .await
    .map(|_| format!("Notifications of {name} saved."));
    users_result(app, &session, result).await
}
