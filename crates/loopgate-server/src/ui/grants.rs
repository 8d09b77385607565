//! Standing grants in the UI: the list a reviewer's groups gave (all of
//! them for auditors and admins), with uses left, and revocation, through
//! the API's handlers.

use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use loopgate_proto as proto;
use serde::Deserialize;

use crate::AppState;
use crate::auth::session::Session;
use crate::http::extract::{Params, Path};
use crate::http::grants;
use crate::ui::{Nav, UiError, minute, ok, render};

/// A grant as the page lists it.
pub(crate) struct GrantRow {
    id: String,
    state: &'static str,
    what: String,
    scope: &'static str,
    proposal: String,
    granted_by: String,
    uses: String,
    created_at: String,
    expires_at: String,
    revoked: String,
}

impl From<proto::Grant> for GrantRow {
    fn from(it: proto::Grant) -> GrantRow {
        let state = match it.state {
            proto::GrantState::Live => "live",
            proto::GrantState::UsedUp => "used up",
            proto::GrantState::Expired => "expired",
            proto::GrantState::Revoked => "revoked",
        };
        let uses = match (it.max_uses, it.uses_left) {
            (Some(max), Some(left)) => format!("{} of {max} used, {left} left", it.used),
            _ => format!("{} used, no limit", it.used),
        };
        let revoked = match (&it.revoked_at, &it.revoked_by) {
            (Some(at), Some(by)) => format!("revoked {} by {by}", minute(at)),
            _ => String::new(),
        };
        GrantRow {
            id: it.id,
            state,
            what: format!("{} · {}", it.system, it.action),
            scope: match it.scope {
                proto::GrantScope::SameOutput => "the same output",
                proto::GrantScope::SameSubject => "any output for the subject",
            },
            proposal: it.proposal,
            granted_by: it.granted_by.join(", "),
            uses,
            created_at: minute(&it.created_at),
            expires_at: minute(&it.expires_at),
            revoked,
        }
    }
}

#[derive(Template)]
#[template(path = "grants.html")]
struct GrantsPage {
    nav: Nav,
    rows: Vec<GrantRow>,
    all: bool,
}

/// `?all=1` shows ended grants too.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct GrantsFilter {
    #[serde(default)]
    all: Option<String>,
}

/// `GET /ui/grants`.
pub(crate) async fn list(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    Query(filter): Query<GrantsFilter>,
) -> Result<Response, UiError> {
    let all = filter.all.is_some_and(|it| !it.is_empty() && it != "0");
    let query = grants::GrantQuery {
        system: None,
        state: Some(if all { "all" } else { "live" }.to_owned()),
        limit: Some(500),
    };
    let listed = ok(grants::list(State(app), session.caller(), Params(query)).await)?;
    let page = GrantsPage {
        nav: Nav::new(&session, "grants"),
        rows: listed.items.into_iter().map(GrantRow::from).collect(),
        all,
    };
    Ok(render(&page)?.into_response())
}

/// `POST /ui/grants/{id}/revoke`.
pub(crate) async fn revoke(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    ok(grants::revoke(State(app), session.caller(), Path(id)).await)?;
    Ok(Redirect::to("/ui/grants").into_response())
}
