//! Keys and tokens in the UI: a user's own personal tokens on the account
//! page, a system's API keys for admins. Both list (never the secret),
//! issue (the secret is shown once, on the page that answers the form) and
//! revoke, through the API's handlers.

use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use loopgate_proto as proto;
use serde::Deserialize;

use crate::AppState;
use crate::auth::session::Session;
use crate::http::credentials;
use crate::http::extract::{JsonBodyOr, Path};
use crate::ui::Form;
use crate::ui::{Nav, UiError, minute, ok, render};

/// A key or token as the page lists it.
pub(crate) struct CredentialRow {
    id: String,
    name: String,
    created_at: String,
    last_used_at: String,
    expires_at: String,
    state: &'static str,
}

impl From<proto::Credential> for CredentialRow {
    fn from(it: proto::Credential) -> CredentialRow {
        let minute = |at: Option<String>| at.map_or("—".to_owned(), |at| minute(&at));
        let state = match (&it.revoked_at, it.active) {
            (Some(_), _) => "revoked",
            (None, true) => "active",
            (None, false) => "expired",
        };
        CredentialRow {
            state,
            id: it.id,
            name: if it.name.is_empty() {
                "—".to_owned()
            } else {
                it.name
            },
            created_at: minute(Some(it.created_at)),
            last_used_at: minute(it.last_used_at),
            expires_at: minute(it.expires_at),
        }
    }
}

#[derive(Template)]
#[template(path = "credentials.html")]
struct CredentialsPage {
    nav: Nav,
    title: String,
    /// Where the forms post: `…` and `…/{id}/revoke`.
    action: String,
    what: &'static str,
    rows: Vec<CredentialRow>,
    issued: Option<proto::IssuedSecret>,
}

/// The issue form.
#[derive(Deserialize)]
pub(crate) struct IssueForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    expires_in: String,
}

impl IssueForm {
    fn body(self) -> proto::CreateCredential {
        proto::CreateCredential {
            name: Some(self.name.trim().to_owned()).filter(|it| !it.is_empty()),
            expires_in: Some(self.expires_in).filter(|it| !it.is_empty()),
        }
    }
}

fn page(
    session: &Session,
    title: String,
    action: String,
    what: &'static str,
    items: Vec<proto::Credential>,
    issued: Option<proto::IssuedSecret>,
) -> Result<Response, UiError> {
    let page = CredentialsPage {
        nav: Nav::new(session, "account"),
        title,
        action,
        what,
        rows: items.into_iter().map(CredentialRow::from).collect(),
        issued,
    };
    Ok(render(&page)?.into_response())
}

/// `GET /ui/account/tokens`: the user's own tokens.
pub(crate) async fn tokens(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
) -> Result<Response, UiError> {
    own_tokens(app, session, None).await
}

async fn own_tokens(
    app: AppState,
    session: Session,
    issued: Option<proto::IssuedSecret>,
) -> Result<Response, UiError> {
    let id = session.user.id.to_string();
    let list = ok(credentials::tokens(State(app), session.caller(), Path(id)).await)?;
    page(
        &session,
        "Your API tokens".to_owned(),
        "/ui/account/tokens".to_owned(),
        "token",
        list.items,
        issued,
    )
}

/// `POST /ui/account/tokens`: a new token, shown once on the answer.
pub(crate) async fn issue_token(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    Form(form): Form<IssueForm>,
) -> Result<Response, UiError> {
    let id = session.user.id.to_string();
    let (_, axum::Json(issued)) = credentials::create_token(
        State(app.clone()),
        session.caller(),
        Path(id),
        JsonBodyOr(form.body()),
    )
    .await?;
    own_tokens(app, session, Some(issued)).await
}

/// `POST /ui/account/tokens/{id}/revoke`.
pub(crate) async fn revoke_token(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    Path(token): Path<String>,
) -> Result<Response, UiError> {
    let id = session.user.id.to_string();
    ok(credentials::revoke_token(State(app), session.caller(), Path((id, token))).await)?;
    Ok(Redirect::to("/ui/account/tokens").into_response())
}

/// `GET /ui/systems/{id}/keys`: a system's API keys (admins, auditors).
pub(crate) async fn keys(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    Path(system): Path<String>,
) -> Result<Response, UiError> {
    system_keys(app, session, system, None).await
}

async fn system_keys(
    app: AppState,
    session: Session,
    system: String,
    issued: Option<proto::IssuedSecret>,
) -> Result<Response, UiError> {
    let list = ok(credentials::keys(State(app), session.caller(), Path(system.clone())).await)?;
    page(
        &session,
        format!("API keys of {system}"),
        format!("/ui/systems/{system}/keys"),
        "key",
        list.items,
        issued,
    )
}

/// `POST /ui/systems/{id}/keys`: a new key, shown once on the answer.
pub(crate) async fn issue_key(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    Path(system): Path<String>,
    Form(form): Form<IssueForm>,
) -> Result<Response, UiError> {
    let (_, axum::Json(issued)) = credentials::create_key(
        State(app.clone()),
        session.caller(),
        Path(system.clone()),
        JsonBodyOr(form.body()),
    )
    .await?;
    system_keys(app, session, system, Some(issued)).await
}

/// `POST /ui/systems/{id}/keys/{key}/revoke`.
pub(crate) async fn revoke_key(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    Path((system, key)): Path<(String, String)>,
) -> Result<Response, UiError> {
    ok(credentials::revoke_key(State(app), session.caller(), Path((system.clone(), key))).await)?;
    Ok(Redirect::to(&format!("/ui/systems/{system}/keys")).into_response())
}
