//! `/v1/groups/{name}/notifications` (what a reviewer group hears about,
//! and where) and `/v1/notifications` (every message's history).

use axum::Json;
use axum::extract::State;
use loopgate_core::ids::is_group_name;
use loopgate_core::notify::GroupChannels;
use loopgate_core::{NotifyEvent, Role};
use loopgate_proto as proto;
use loopgate_store::{DeliveryState, GroupNotifications, NotificationFilter, NotificationRecord};
use serde::Deserialize;

use crate::AppState;
use crate::auth::Caller;
use crate::http::error::ApiError;
use crate::http::extract::{JsonBody, Params, Path};

/// Addresses a group may list.
const MAX_ADDRESSES: usize = 100;

fn group_name(name: &str) -> Result<(), ApiError> {
    match is_group_name(name) {
        true => Ok(()),
        false => Err(ApiError::not_found("group", name)),
    }
}

fn view(settings: GroupNotifications) -> proto::GroupNotifications {
    proto::GroupNotifications {
        group: settings.group,
        email: settings.channels.email,
        slack_channel: settings.channels.slack_channel,
        teams_webhook: settings.channels.teams_webhook,
        events: settings
            .channels
            .events
            .iter()
            .map(|e| e.as_str().to_owned())
            .collect(),
        updated_at: Some(settings.updated_at.to_rfc3339()),
    }
}

/// What a group hears about (nothing, until an admin sets it).
#[utoipa::path(get, path = "/v1/groups/{name}/notifications", tag = "notifications",
    params(("name" = String, Path)),
    responses((status = 200, body = proto::GroupNotifications), (status = 404, body = proto::Problem)))]
pub async fn get(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<proto::GroupNotifications>, ApiError> {
    let user = caller.user_with(&[Role::Auditor, Role::Reviewer])?;
    group_name(&name)?;
    let sees_all = user
        .roles
        .iter()
        .any(|r| matches!(r, Role::Admin | Role::Auditor));
    if !sees_all && !user.groups.contains(&name) {
        return Err(ApiError::not_found("group", &name));
    }
    let found = app
        .store
        .group_notifications()
        .await?
        .into_iter()
        .find(|g| g.group == name);
    Ok(Json(match found {
        Some(settings) => view(settings),
        None => proto::GroupNotifications {
            group: name,
            email: Vec::new(),
            slack_channel: None,
            teams_webhook: None,
            events: Vec::new(),
            updated_at: None,
        },
    }))
}

/// The channels and events of a settings body, checked.
pub(crate) async fn channels(
    app: &AppState,
    body: proto::SetGroupNotifications,
) -> Result<GroupChannels, ApiError> {
    if MAX_ADDRESSES < body.email.len() {
        return Err(ApiError::invalid(format!(
            "a group lists at most {MAX_ADDRESSES} addresses"
        )));
    }
    let mut email = Vec::with_capacity(body.email.len());
    for address in body.email {
        let address = address.trim().to_owned();
        crate::notify::email::check_address(&address).map_err(ApiError::invalid)?;
        if !email.contains(&address) {
            email.push(address);
        }
    }
    let slack_channel = body.slack_channel.filter(|c| !c.trim().is_empty());
    if let Some(channel) = &slack_channel {
        let ok = (2..=24).contains(&channel.len())
            && channel.starts_with(['C', 'G', 'D'])
            && channel
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !ok {
            return Err(ApiError::invalid(format!(
                "`{channel}` is not a Slack channel id (`C…`: open the channel's details in Slack)"
            )));
        }
    }
    let teams_webhook = body.teams_webhook.filter(|u| !u.trim().is_empty());
    if let Some(url) = &teams_webhook {
        crate::http::webhooks::check_url("teams_webhook", url)?;
        crate::http::webhooks::check_destination(app, "teams_webhook", url).await?;
    }
    let events = match body.events {
        None => NotifyEvent::ALL.to_vec(),
        Some(names) => {
            let mut events = Vec::new();
            for name in names {
                let Some(event) = NotifyEvent::parse(&name) else {
                    return Err(ApiError::invalid(format!(
                        "`{name}` is not an event a group can hear about: use task.created, task.escalated or task.sla_warning"
                    )));
                };
                if !events.contains(&event) {
                    events.push(event);
                }
            }
            events
        }
    };
    Ok(GroupChannels {
        email,
        slack_channel,
        teams_webhook,
        events,
    })
}

/// Set what a group hears about: its addresses, Slack channel and Teams
/// workflow, and which events (`group.notifications_set`).
#[utoipa::path(put, path = "/v1/groups/{name}/notifications", tag = "notifications",
    params(("name" = String, Path)), request_body = proto::SetGroupNotifications,
    responses((status = 200, body = proto::GroupNotifications), (status = 422, body = proto::Problem)))]
pub async fn set(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<proto::SetGroupNotifications>,
) -> Result<Json<proto::GroupNotifications>, ApiError> {
    caller.user_with(&[])?;
    crate::http::groups::settable(&name)?;
    let channels = channels(&app, body).await?;
    let now = app.clock.now();
    let saved = app
        .store
        .set_group_notifications(
            GroupNotifications {
                group: name,
                channels,
                updated_at: now,
            },
            &caller.actor(),
            now,
        )
        .await?;
    app.bus.wake();
    Ok(Json(view(saved)))
}

/// `GET /v1/notifications` filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationQuery {
    /// Only about this task.
    #[param(pattern = r"^tsk_[A-Za-z0-9]{1,64}$")]
    pub task: Option<String>,
    /// Only of this group.
    #[param(min_length = 1)]
    pub group: Option<String>,
    /// `pending`, `delivered` or `failed`.
    #[param(pattern = r"^(pending|delivered|failed)$")]
    pub state: Option<String>,
    /// The page cursor.
    #[param(pattern = r"^c[0-9]{1,18}$")]
    pub cursor: Option<String>,
    /// Page size (1 to 200, default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

fn record_view(record: NotificationRecord) -> proto::Notification {
    proto::Notification {
        id: record.id,
        channel: record.channel.as_str().to_owned(),
        target: record.target,
        group: record.group,
        task: record.task,
        proposal: record.proposal,
        kind: record.kind.as_str().to_owned(),
        digest_at: record.digest_at.map(|t| t.to_rfc3339()),
        state: record.state.as_str().to_owned(),
        attempts: record.attempts,
        next_attempt_at: record.next_at.map(|t| t.to_rfc3339()),
        created_at: record.created_at.to_rfc3339(),
        delivered_at: record.delivered_at.map(|t| t.to_rfc3339()),
        last_status: record.last_status,
        last_error: record.last_error,
        history: record
            .history
            .into_iter()
            .map(crate::convert::attempt)
            .collect(),
    }
}

/// Messages to people, newest first.
#[utoipa::path(get, path = "/v1/notifications", tag = "notifications", params(NotificationQuery),
    responses((status = 200, body = proto::Page<proto::Notification>)))]
pub async fn list(
    State(app): State<AppState>,
    caller: Caller,
    Params(query): Params<NotificationQuery>,
) -> Result<Json<proto::Page<proto::Notification>>, ApiError> {
    caller.user_with(&[Role::Auditor])?;
    let state = match query.state.as_deref() {
        None => None,
        Some(state) => Some(DeliveryState::parse(state).ok_or_else(|| {
            ApiError::invalid(format!(
                "`state` is pending, delivered or failed, not `{state}`"
            ))
        })?),
    };
    let before = crate::http::cursor::decode(query.cursor.as_deref())?;
    if let Some(task) = &query.task
        && loopgate_core::TaskId::parse(task).is_none()
    {
        return Err(ApiError::invalid(format!("`{task}` is not a task id")));
    }
    let limit = match query.limit {
        None => 50,
        Some(n @ 1..=200) => n,
        Some(n) => {
            return Err(ApiError::invalid(format!(
                "`limit` must be from 1 to 200, not {n}"
            )));
        }
    };
    let page = app
        .store
        .notifications(NotificationFilter {
            task: query.task,
            group: query.group,
            state,
            before,
            limit,
        })
        .await?;
    Ok(Json(proto::Page {
        items: page.items.into_iter().map(record_view).collect(),
        next_cursor: page.next.map(crate::http::cursor::encode),
    }))
}

/// One message with every attempt.
#[utoipa::path(get, path = "/v1/notifications/{id}", tag = "notifications", params(("id" = i64, Path)),
    responses((status = 200, body = proto::Notification), (status = 404, body = proto::Problem)))]
pub async fn one(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<proto::Notification>, ApiError> {
    caller.user_with(&[Role::Auditor])?;
    let n = id
        .parse::<i64>()
        .ok()
        .filter(|n| 0 < *n)
        .ok_or_else(|| ApiError::not_found("notification", &id))?;
    match app.store.notification(n).await? {
        Some(record) => Ok(Json(record_view(record))),
        None => Err(ApiError::not_found("notification", &id)),
    }
}
