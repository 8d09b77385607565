//! Signing in through the identity provider (docs/sso.md):
//! `GET /ui/oidc/login` sends the browser to the provider with a `state`
//! bound to this browser by a cookie; `GET /ui/oidc/callback` takes that
//! state once, checks the provider's answer (`auth::oidc`), signs the user
//! in as core's `sso::sign_in` decides (`Store::oidc_sign_in`) and starts a
//! session. Every failure is a page that says what went wrong, and a log
//! line with the cause.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar};
use loopgate_core::{UserId, sso};
use loopgate_store::{OidcIdentity, OidcLogin, OidcSignIn};
use serde::Deserialize;

use crate::AppState;
use crate::auth::oidc::{LOGIN_TTL, SsoError};
use crate::auth::session::{self, same_secret};
use crate::secrets::{hash_secret, new_secret};
use crate::ui::UiError;
use crate::ui::account::safe_next;

/// Binds a login to the browser that started it.
const BROWSER_COOKIE: &str = "loopgate_oidc";
/// Longest `code` and `state` read from the callback.
const MAX_PARAM: usize = 4096;
/// Longest ID token kept with a session (for logout).
const MAX_ID_TOKEN: usize = 16 * 1024;

#[derive(Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

/// `GET /ui/oidc/login`: off to the provider.
pub(crate) async fn login(
    State(app): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    Query(query): Query<LoginQuery>,
) -> Result<Response, UiError> {
    let oidc = configured(&app)?;
    let now = app.clock.now();
    let authorization = match oidc.authorize(now).await {
        Ok(it) => it,
        Err(error) => return Ok(failed(error, jar)),
    };
    let browser = new_secret("").map_err(|e| UiError::internal(&e))?;
    let login = OidcLogin {
        state_hash: hash_secret(&authorization.state),
        browser_hash: hash_secret(&browser),
        nonce: authorization.nonce,
        pkce_verifier: authorization.pkce_verifier,
        next: safe_next(query.next.as_deref()),
        expires_at: now.plus(LOGIN_TTL),
    };
    app.store.start_oidc_login(login, now).await?;
    let mut cookie = session::cookie(BROWSER_COOKIE, browser, session::secure(&app, &headers));
    cookie.set_path("/ui/oidc");
    let jar = jar.add(cookie);
    Ok((jar, Redirect::to(&authorization.url)).into_response())
}

#[derive(Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /ui/oidc/callback`: the provider's answer.
pub(crate) async fn callback(
    State(app): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    Query(query): Query<CallbackQuery>,
) -> Result<Response, UiError> {
    let oidc = configured(&app)?;
    let now = app.clock.now();
    let Some(state) = query.state.filter(|it| it.len() <= MAX_PARAM) else {
        return Ok(failed(SsoError::UnknownState, jar));
    };
    let Some(login) = app.store.take_oidc_login(&hash_secret(&state), now).await? else {
        return Ok(failed(SsoError::UnknownState, jar));
    };
    let same_browser = jar
        .get(BROWSER_COOKIE)
        .is_some_and(|cookie| same_secret(&hash_secret(cookie.value()), &login.browser_hash));
    if !same_browser {
        return Ok(failed(SsoError::OtherBrowser, jar));
    }
    if let Some(error) = query.error {
        // An OAuth error code is a short word; anything else is not shown.
        let shown =
            match error.len() <= 64 && error.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                true => error,
                false => "error".to_owned(),
            };
        return Ok(failed(SsoError::Denied(shown), jar));
    }
    let Some(code) = query.code.filter(|it| it.len() <= MAX_PARAM) else {
        return Ok(failed(SsoError::Denied("no code".to_owned()), jar));
    };
    let verified = match oidc
        .finish(&code, &login.nonce, &login.pkce_verifier, now)
        .await
    {
        Ok(it) => it,
        Err(error) => return Ok(failed(error, jar)),
    };
    let identity = OidcIdentity {
        issuer: oidc.config.issuer.clone(),
        username: sso::username(
            verified.preferred_username.as_deref(),
            verified.email.as_deref(),
            &verified.subject,
        ),
        new_id: UserId::from_unique(&ulid::Ulid::new().to_string()),
        subject: verified.subject,
        email: verified
            .email
            .filter(|it| crate::notify::email::check_address(it).is_ok()),
        access: oidc.config.mapping.access(&verified.groups),
    };
    let signed_in = app.store.oidc_sign_in(identity, now).await?;
    // Roles and groups may have changed (or been taken away): cached
    // credentials and open streams check again.
    app.credentials_changed();
    let user = match signed_in {
        OidcSignIn::SignedIn(user) => user,
        OidcSignIn::Disabled => return Ok(failed(SsoError::Disabled, jar)),
        OidcSignIn::Unmapped => {
            tracing::info!(
                groups = verified.groups.len(),
                "single sign-on: no group maps to a role"
            );
            let jar = jar.remove(Cookie::build(session::COOKIE).path("/"));
            return Ok(failed(SsoError::Unmapped, jar));
        }
    };
    let id_token = Some(verified.raw).filter(|it| it.len() <= MAX_ID_TOKEN);
    let cookie = session::start(&app, &user, session::secure(&app, &headers), id_token).await?;
    let jar = jar
        .remove(Cookie::build(BROWSER_COOKIE).path("/ui/oidc"))
        .add(cookie);
    Ok((jar, Redirect::to(&login.next)).into_response())
}

fn configured(app: &AppState) -> Result<&crate::auth::oidc::Oidc, UiError> {
    app.oidc.as_deref().ok_or_else(|| {
        UiError::status(
            axum::http::StatusCode::NOT_FOUND,
            "Single sign-on is not configured on this loopgate.",
        )
    })
}

/// The page for a failed sign-in (and the operator's log line).
fn failed(error: SsoError, jar: CookieJar) -> Response {
    tracing::warn!(cause = %error.cause(), "single sign-on failed");
    let page = UiError {
        status: error.status(),
        title: "Sign-in failed".to_owned(),
        detail: error.to_string(),
        help: Some("Nobody was signed in.".to_owned()),
    };
    let jar = jar.remove(Cookie::build(BROWSER_COOKIE).path("/ui/oidc"));
    (jar, page).into_response()
}
