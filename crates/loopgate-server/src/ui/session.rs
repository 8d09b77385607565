//! Web sessions: a password login starts a stored session named by a
//! random cookie (only its SHA-256 is stored); a CSRF token bound to the
//! session guards every state-changing request; sessions end on logout, at
//! an absolute lifetime, or after an idle time. Failed logins are throttled
//! in `limits.rs`.

use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use loopgate_store::{NewSession, Principal, StoreError, UserRecord};

use crate::AppState;
use crate::auth::Caller;
use crate::secrets::{hash_secret, new_secret};
use crate::ui::UiError;

/// The session cookie.
pub(crate) const COOKIE: &str = "loopgate_session";
/// The login form's CSRF cookie (double submit; there is no session yet).
pub(crate) const LOGIN_COOKIE: &str = "loopgate_login";
/// Where scripts send the CSRF token.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";
/// Where forms send the CSRF token.
pub(crate) const CSRF_FIELD: &str = "_csrf";

/// `seen_at` is written at most this often.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// A logged-in user's session, as the guard found it.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) hash: String,
    pub(crate) user: UserRecord,
    pub(crate) csrf: String,
}

impl Session {
    /// The session's user as an API caller: the same role checks apply.
    pub(crate) fn caller(&self) -> Caller {
        Caller(
            Principal::User(self.user.clone()),
            crate::auth::Via::Session(self.hash.clone()),
        )
    }
}

/// The live session the request's cookie names, if any. Ended sessions are
/// deleted when seen.
pub(crate) async fn current(
    app: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Session>, StoreError> {
    let jar = CookieJar::from_headers(headers);
    let Some(cookie) = jar.get(COOKIE) else {
        return Ok(None);
    };
    by_hash(app, &hash_secret(cookie.value())).await
}

/// The live session with this cookie hash, if any.
pub(crate) async fn by_hash(app: &AppState, hash: &str) -> Result<Option<Session>, StoreError> {
    let hash = hash.to_owned();
    let Some(record) = app.store.session(&hash).await? else {
        return Ok(None);
    };
    let now = app.clock.now();
    if record.expires_at <= now || record.seen_at.plus(app.config.session_idle) <= now {
        app.store.delete_session(&hash).await?;
        return Ok(None);
    }
    if record.seen_at.plus(TOUCH_EVERY) <= now {
        app.store.touch_session(&hash, now).await?;
    }
    Ok(Some(Session {
        hash,
        user: record.user,
        csrf: record.csrf,
    }))
}

/// Starts a session for `user`; returns the cookie to set.
pub(crate) async fn start(
    app: &AppState,
    user: &UserRecord,
    secure: bool,
) -> Result<Cookie<'static>, UiError> {
    let secret = new_secret("").map_err(|e| UiError::internal(&e))?;
    let csrf = new_secret("").map_err(|e| UiError::internal(&e))?;
    let now = app.clock.now();
    let session = NewSession {
        hash: hash_secret(&secret),
        user: user.id.clone(),
        csrf,
        expires_at: now.plus(app.config.session_ttl),
    };
    app.store.create_session(session, now).await?;
    Ok(cookie(COOKIE, secret, secure))
}

/// A cookie only loopgate's pages send back: HttpOnly, SameSite=Lax, and
/// Secure when served over TLS.
pub(crate) fn cookie(name: &'static str, value: String, secure: bool) -> Cookie<'static> {
    Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .build()
}

/// Whether cookies must be `Secure`: configured, or the request came over
/// TLS through a proxy.
pub(crate) fn secure(app: &AppState, headers: &HeaderMap) -> bool {
    app.config.secure_cookies
        || headers
            .get("x-forwarded-proto")
            .and_then(|it| it.to_str().ok())
            .is_some_and(|it| it.eq_ignore_ascii_case("https"))
}

/// Compares secrets in time independent of where they differ.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0_u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Pages behind login: loads the session (or sends the browser to the login
/// page), checks the CSRF token of every request that is not a read, and
/// hands the session to the handler as an extension.
pub(crate) async fn guard(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let session = match current(&app, request.headers()).await {
        Ok(Some(session)) => session,
        Ok(None) => return to_login(&request),
        Err(error) => return UiError::from(error).into_response(),
    };
    let mut request = if safe(request.method()) {
        request
    } else {
        let (parts, body) = request.into_parts();
        let Ok(bytes) = to_bytes(body, app.config.max_body_bytes).await else {
            return UiError::status(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "The form is too large.",
            )
            .into_response();
        };
        let sent = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|it| it.to_str().ok())
            .map(str::to_owned)
            .or_else(|| {
                form_urlencoded::parse(&bytes)
                    .find(|(key, _)| key == CSRF_FIELD)
                    .map(|(_, value)| value.into_owned())
            });
        if !sent.is_some_and(|it| same_secret(&it, &session.csrf)) {
            return UiError::csrf().into_response();
        }
        Request::from_parts(parts, Body::from(bytes))
    };
    request.extensions_mut().insert(session);
    next.run(request).await
}

fn safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
}

/// To the login page, coming back here afterwards (for reads).
fn to_login(request: &Request) -> Response {
    if !safe(request.method()) {
        return Redirect::to("/ui/login").into_response();
    }
    let next = request
        .uri()
        .path_and_query()
        .map_or("/ui", |it| it.as_str());
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("next", next)
        .finish();
    let mut response = Redirect::to(&format!("/ui/login?{query}")).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
