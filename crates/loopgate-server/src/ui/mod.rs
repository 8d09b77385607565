//! The web UI: server-rendered pages (askama templates compiled into the
//! binary), one stylesheet and one small script, all served by loopgate
//! itself (no CDN, no build step).
//!
//! Boundary: pages act only through the API's handlers, called as
//! functions with the session's user as the caller, so every role check and
//! every validation is the API's own. This module adds sessions, CSRF and
//! HTML.

mod account;
mod analytics;
pub(crate) mod assets;
mod audit;
mod credentials;
mod docs;
mod grants;
mod guard;
mod policies;
mod review;
mod sso;
mod systems;
mod users;

pub(crate) use account::{MAX_PASSWORD, MAX_USERNAME};

use askama::Template;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use loopgate_core::Role;
use loopgate_store::StoreError;

use crate::AppState;
use crate::auth::session::Session;
use crate::http::error::ApiError;
use crate::http::extract;

/// Every page of the UI.
pub(crate) fn router(app: AppState) -> Router<AppState> {
    let csp = content_security_policy(&app);
    let guarded = Router::new()
        .route("/ui", get(home))
        .route("/ui/queue", get(review::queue))
        .route("/ui/queue/rows", get(review::queue_rows))
        .route("/ui/queue/decisions", post(review::decide_selected))
        .route("/ui/tasks/{id}", get(review::task))
        .route("/ui/tasks/{id}/claim", post(review::claim))
        .route("/ui/tasks/{id}/comments", post(review::comment))
        .route("/ui/tasks/{id}/release", post(review::release))
        .route("/ui/tasks/{id}/decide", post(review::decide))
        .route("/ui/proposals/{id}", get(review::proposal))
        .route("/ui/grants", get(grants::list))
        .route("/ui/grants/{id}/revoke", post(grants::revoke))
        .route("/ui/systems", get(systems::systems))
        .route("/ui/systems/{id}/status", post(systems::system_status))
        .route("/ui/policies", get(policies::policies))
        .route(
            "/ui/policies/draft",
            get(policies::draft).post(policies::draft_action),
        )
        .route("/ui/policies/diff", get(policies::diff))
        .route("/ui/policies/{version}", get(policies::policy))
        .route("/ui/users", get(users::users).post(users::create_user))
        .route("/ui/users/{id}", post(users::update_user))
        .route(
            "/ui/groups/{name}/notifications",
            post(users::set_group_notifications),
        )
        .route(
            "/ui/groups/{name}/assignment",
            post(users::set_group_assignment),
        )
        .route("/ui/audit", get(audit::audit))
        .route("/ui/analytics", get(analytics::dashboard))
        .route(
            "/ui/account",
            get(account::page).post(account::change_password),
        )
        .route(
            "/ui/account/notifications",
            post(account::set_notifications),
        )
        .route("/ui/account/away", post(account::set_away))
        .route(
            "/ui/account/tokens",
            get(credentials::tokens).post(credentials::issue_token),
        )
        .route(
            "/ui/account/tokens/{id}/revoke",
            post(credentials::revoke_token),
        )
        .route(
            "/ui/systems/{id}/keys",
            get(credentials::keys).post(credentials::issue_key),
        )
        .route(
            "/ui/systems/{id}/keys/{key}/revoke",
            post(credentials::revoke_key),
        )
        .route("/ui/logout", post(account::logout))
        .route_layer(middleware::from_fn_with_state(app, guard::guard));
    Router::new()
        .route(
            "/ui/login",
            get(account::login_page)
                .post(account::login)
                .layer(axum::extract::DefaultBodyLimit::max(LOGIN_BODY_BYTES)),
        )
        .route("/ui/assets/{name}", get(assets::serve))
        // The reference documents; public, like the API description.
        .route("/docs", get(docs::index))
        .route("/docs/img/{name}", get(docs::image))
        .route("/docs/{name}", get(docs::doc))
        .route("/ui/oidc/login", get(sso::login))
        .route("/ui/oidc/callback", get(sso::callback))
        // Decision links: the token is the credential (no session).
        .route(
            "/ui/links/{token}",
            get(crate::notify::links::page)
                .post(crate::notify::links::decide)
                .layer(axum::extract::DefaultBodyLimit::max(LINK_BODY_BYTES)),
        )
        .merge(guarded)
        .layer(middleware::from_fn_with_state(csp, security_headers))
}

/// A decision link form's largest body: a verdict and a rationale of at
/// most 10,000 bytes, URL-encoded.
const LINK_BODY_BYTES: usize = 64 * 1024;

/// The login form's largest body: a name, a password, a CSRF token and
/// where to go next, with room for URL encoding.
const LOGIN_BODY_BYTES: usize = 16 * 1024;

/// The first page after login, by role.
async fn home(axum::Extension(session): axum::Extension<Session>) -> Redirect {
    let nav = Nav::new(&session, "");
    Redirect::to(if nav.queue {
        "/ui/queue"
    } else if nav.policies {
        "/ui/policies"
    } else {
        "/ui/account"
    })
}

/// Pages may load only loopgate's own script, styles and images, and may
/// not be framed. Forms post only to loopgate, which may redirect them
/// only to itself, or, with single sign-on, to the identity provider (the
/// logout form ends at its end-session endpoint).
fn content_security_policy(app: &AppState) -> HeaderValue {
    let provider = app
        .oidc
        .as_ref()
        .and_then(|oidc| reqwest::Url::parse(&oidc.config.issuer).ok())
        .map(|issuer| issuer.origin().ascii_serialization())
        .filter(|origin| origin != "null");
    let form_action = match provider {
        Some(origin) => format!("'self' {origin}"),
        None => "'self'".to_owned(),
    };
    let csp = format!(
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
         object-src 'none'; base-uri 'none'; form-action {form_action}; frame-ancestors 'none'"
    );
    HeaderValue::from_str(&csp).unwrap_or_else(|_| {
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        )
    })
}

/// Adds the Content-Security-Policy every response carries.
async fn security_headers(
    axum::extract::State(csp): axum::extract::State<HeaderValue>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(header::CONTENT_SECURITY_POLICY, csp);
    response
}

/// What the layout needs: who is logged in, their CSRF token, and which
/// sections their roles open (the same roles the API checks).
pub(crate) struct Nav {
    pub(crate) username: String,
    pub(crate) csrf: String,
    pub(crate) current: &'static str,
    pub(crate) queue: bool,
    pub(crate) reviewer: bool,
    pub(crate) systems: bool,
    pub(crate) admin: bool,
    pub(crate) policies: bool,
    pub(crate) author: bool,
    pub(crate) users: bool,
    pub(crate) audit: bool,
    pub(crate) version: &'static str,
}

impl Nav {
    pub(crate) fn new(session: &Session, current: &'static str) -> Nav {
        let roles = &session.user.roles;
        let has = |wanted: &[Role]| {
            roles
                .iter()
                .any(|r| *r == Role::Admin || wanted.contains(r))
        };
        Nav {
            username: session.user.username.clone(),
            csrf: session.csrf.clone(),
            current,
            queue: has(&[Role::Reviewer, Role::Auditor]),
            reviewer: has(&[Role::Reviewer]),
            systems: has(&[Role::Auditor, Role::PolicyAuthor]),
            admin: has(&[]),
            policies: has(&[Role::Auditor, Role::PolicyAuthor]),
            author: has(&[Role::PolicyAuthor]),
            users: has(&[Role::Auditor]),
            audit: has(&[Role::Auditor]),
            version: assets::version(),
        }
    }
}

/// A URL-encoded form, as axum's `Form`, but one holding U+0000 is refused
/// (422, as a page) before it is read, as the API refuses it in JSON:
/// PostgreSQL's text cannot hold it ([`extract::NUL_REFUSED`]).
pub(crate) struct Form<T>(pub(crate) T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for Form<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Form<T>, Response> {
        let axum::extract::RawForm(body) = axum::extract::RawForm::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if extract::encoded_holds_nul(&body) {
            let detail = format!("the form: {}", extract::NUL_REFUSED);
            return Err(UiError::status(StatusCode::UNPROCESSABLE_ENTITY, &detail).into_response());
        }
        serde_urlencoded::from_bytes(&body)
            .map(Form)
            .map_err(|error| {
                let detail = format!("the form is not valid: {error}");
                UiError::status(StatusCode::UNPROCESSABLE_ENTITY, &detail).into_response()
            })
    }
}

/// Renders a page.
pub(crate) fn render(page: &impl Template) -> Result<Html<String>, UiError> {
    page.render().map(Html).map_err(|e| UiError::internal(&e))
}

/// An error shown as a page: the API's problem in words.
#[derive(Debug)]
pub(crate) struct UiError {
    status: StatusCode,
    title: String,
    detail: String,
    help: Option<String>,
}

impl UiError {
    pub(crate) fn status(status: StatusCode, detail: &str) -> UiError {
        UiError {
            status,
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            detail: detail.to_owned(),
            help: None,
        }
    }

    pub(crate) fn internal(cause: &dyn std::fmt::Display) -> UiError {
        ApiError::internal(cause).into()
    }

    pub(crate) fn csrf() -> UiError {
        UiError {
            status: StatusCode::FORBIDDEN,
            title: "Form expired".to_owned(),
            detail: "This form was not sent from a current loopgate page, so nothing was done."
                .to_owned(),
            help: Some("Go back, reload the page and try again.".to_owned()),
        }
    }
}

impl From<ApiError> for UiError {
    fn from(error: ApiError) -> UiError {
        let problem = error.problem();
        UiError {
            status: StatusCode::from_u16(problem.status)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            title: problem.title,
            detail: problem.detail,
            help: problem.help,
        }
    }
}

impl From<StoreError> for UiError {
    fn from(error: StoreError) -> UiError {
        ApiError::from(error).into()
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    error: &'a UiError,
    version: &'static str,
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let page = ErrorPage {
            error: &self,
            version: assets::version(),
        };
        let body = page
            .render()
            .unwrap_or_else(|_| format!("{}: {}", self.title, self.detail));
        (self.status, Html(body)).into_response()
    }
}

/// An RFC 3339 time to the minute, for tables:
/// `2026-12-02T16:21:07.000Z` as `2026-12-02 16:21 UTC`.
pub(crate) fn minute(at: &str) -> String {
    format!(
        "{} UTC",
        at.chars().take(16).collect::<String>().replace('T', " ")
    )
}

/// An enum's wire name (`in_the_loop`, `qa_sample`): the API's words.
pub(crate) fn lower<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The API's answer unwrapped, or its error as a page.
pub(crate) fn ok<T>(result: Result<axum::Json<T>, ApiError>) -> Result<T, UiError> {
    result.map(|axum::Json(it)| it).map_err(UiError::from)
}
