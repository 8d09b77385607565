//! The systems page: the inventory, and pause and resume (the kill switch).

use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use loopgate_proto as proto;
use serde::Deserialize;

use crate::AppState;
use crate::auth::session::Session;
use crate::http::error::ApiError;
use crate::http::extract::{JsonBody, Path};
use crate::http::systems;
use crate::ui::Form;
use crate::ui::{Nav, UiError, lower, ok, render};

pub(crate) struct SystemRow {
    id: String,
    name: String,
    owner: String,
    purpose: String,
    risk_tier: String,
    oversight: String,
    paused: bool,
    retention: String,
}

#[derive(Template)]
#[template(path = "systems.html")]
struct SystemsPage {
    nav: Nav,
    systems: Vec<SystemRow>,
}

/// `GET /ui/systems`: the inventory.
pub(crate) async fn systems(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
) -> Result<Response, UiError> {
    let page = ok(systems::list(State(app), session.caller()).await)?;
    let systems = page
        .items
        .into_iter()
        .map(|s| SystemRow {
            paused: s.status == proto::SystemStatus::Paused,
            risk_tier: lower(&s.risk_tier),
            oversight: lower(&s.oversight).replace('_', " "),
            retention: s.retention.unwrap_or_else(|| "kept".to_owned()),
            id: s.id,
            name: s.name,
            owner: s.owner,
            purpose: s.purpose,
        })
        .collect();
    Ok(render(&SystemsPage {
        nav: Nav::new(&session, "systems"),
        systems,
    })?
    .into_response())
}

#[derive(Deserialize)]
pub(crate) struct StatusForm {
    status: String,
}

/// `POST /ui/systems/{id}/status`: pause (the kill switch) or resume.
pub(crate) async fn system_status(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Form(form): Form<StatusForm>,
) -> Result<Response, UiError> {
    let status = match form.status.as_str() {
        "paused" => proto::SystemStatus::Paused,
        "active" => proto::SystemStatus::Active,
        other => {
            return Err(
                ApiError::invalid(format!("`{other}` is not a status: paused or active")).into(),
            );
        }
    };
    let patch = proto::UpdateSystem {
        status: Some(status),
        ..Default::default()
    };
    ok(systems::update(State(app), session.caller(), Path(id), JsonBody(patch)).await)?;
    Ok(Redirect::to("/ui/systems").into_response())
}
