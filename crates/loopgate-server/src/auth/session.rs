//! Web sessions: a password login (or a sign-in through the identity
//! provider, `ui/sso.rs`) starts a stored session named by a
//! random cookie (only its SHA-256 is stored); a CSRF token bound to the
//! session guards every state-changing request; sessions end on logout, at
//! an absolute lifetime, or after an idle time. Failed logins are throttled
//! in `limits.rs`.

use axum::http::HeaderMap;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use loopgate_store::{NewSession, Principal, StoreError, UserRecord};

use crate::AppState;
use crate::auth::{Caller, TOUCH_EVERY};
use crate::http::error::ApiError;
use crate::secrets::{hash_secret, new_secret};

/// The session cookie.
pub(crate) const COOKIE: &str = "loopgate_session";
/// The login form's CSRF cookie (double submit; there is no session yet).
pub(crate) const LOGIN_COOKIE: &str = "loopgate_login";
/// Where scripts send the CSRF token.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";
/// Where forms send the CSRF token.
pub(crate) const CSRF_FIELD: &str = "_csrf";

/// A logged-in user's session, as the guard found it.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) hash: String,
    pub(crate) user: UserRecord,
    pub(crate) csrf: String,
    /// Signed in through the identity provider: its ID token.
    pub(crate) id_token: Option<String>,
}

impl Session {
    /// Whether `sent` is this session's CSRF token (compared in constant
    /// time); a request without one does not match.
    pub(crate) fn csrf_matches(&self, sent: Option<&str>) -> bool {
        sent.is_some_and(|it| same_secret(it, &self.csrf))
    }

    /// The session's user as an API caller: the same role checks apply.
    pub(crate) fn caller(&self) -> Caller {
        Caller(
            Principal::User(self.user.clone()),
            super::Via::Session(self.hash.clone()),
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
        id_token: record.id_token,
    }))
}

/// Starts a session for `user` (signed in through the identity provider:
/// with its ID token); returns the cookie to set.
pub(crate) async fn start(
    app: &AppState,
    user: &UserRecord,
    secure: bool,
    id_token: Option<String>,
) -> Result<Cookie<'static>, ApiError> {
    let secret = new_secret("").map_err(|e| ApiError::internal(&e))?;
    let csrf = new_secret("").map_err(|e| ApiError::internal(&e))?;
    let now = app.clock.now();
    let session = NewSession {
        hash: hash_secret(&secret),
        user: user.id.clone(),
        csrf,
        expires_at: now.plus(app.config.session_ttl),
        id_token,
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
