//! Who is calling: `Authorization: Bearer <key or token>` resolved to a
//! principal, and the role checks every handler makes (deny by default).

pub(crate) mod oidc;
pub(crate) mod session;

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, header};
use loopgate_core::{Role, SystemId, Timestamp};
use loopgate_proto::ErrorCode;
use loopgate_store::{Authenticated, Principal, ReviewerRef, UserRecord};

use crate::AppState;
use crate::http::error::ApiError;
use crate::secrets::hash_secret;

/// The authenticated caller, and how it authenticated (to check again,
/// for streams and long-polls that outlive the request's start).
#[derive(Debug, Clone)]
pub struct Caller(pub Principal, pub Via);

/// The credential a caller presented.
#[derive(Debug, Clone, PartialEq)]
pub enum Via {
    /// `Authorization: Bearer`: the SHA-256 of the secret, and when the
    /// credential expires.
    Bearer {
        hash: String,
        expires_at: Option<Timestamp>,
    },
    /// A web session: the SHA-256 of the cookie.
    Session(String),
    /// A signed Slack interaction or an email decision link acting for a
    /// user (`slack:<member>`, `link:<hash>`); valid while the user is.
    Delegated(String),
}

/// How often a credential's `last_used_at`, or a session's `seen_at`, is
/// written at most.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Caller, ApiError> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return from_session(parts, app)
                .await?
                .ok_or_else(|| unauthenticated("no credentials were sent"));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|it| it.strip_prefix("Bearer "))
            .map(str::trim);
        let Some(token) = token.filter(|it| !it.is_empty()) else {
            return Err(unauthenticated(
                "the Authorization header is not a bearer token",
            ));
        };
        let hash = hash_secret(token);
        match bearer(app, &hash).await? {
            Some(found) => Ok(Caller(
                found.principal,
                Via::Bearer {
                    hash,
                    expires_at: found.expires_at,
                },
            )),
            None => Err(unauthenticated(
                "the token is not known, was revoked or has expired, or its user is disabled",
            )),
        }
    }
}

fn unauthenticated(detail: &str) -> ApiError {
    ApiError::new(ErrorCode::Unauthenticated, detail)
        .help("send `Authorization: Bearer <token>` with a system API key or a personal token")
}

/// The principal a bearer credential speaks for now: known, not revoked,
/// not expired, its user not disabled. Cached briefly; a change clears the
/// cache on every replica (`AppState::credentials_changed`).
async fn bearer(app: &AppState, hash: &str) -> Result<Option<Authenticated>, ApiError> {
    let credential = match app.principals.get(hash) {
        Some(credential) => credential,
        None => {
            // A change committed while this read ran must not be undone by
            // caching what the read found: cache it only if none came.
            let generation = *app.credentials.borrow();
            let credential = app.store.principal(hash).await?;
            let now = app.clock.now();
            if let Some(found) = &credential
                && found
                    .last_used_at
                    .is_none_or(|at| at.plus(TOUCH_EVERY) <= now)
            {
                let (store, id) = (app.store.clone(), found.id.clone());
                tokio::spawn(async move {
                    if let Err(error) = store.touch_credential(&id, now).await {
                        tracing::debug!(%error, "last use of a credential not recorded");
                    }
                });
            }
            if *app.credentials.borrow() == generation {
                app.principals.insert(hash.to_owned(), credential.clone());
            }
            credential
        }
    };
    let now = app.clock.now();
    Ok(credential.filter(|it| it.expires_at.is_none_or(|at| now < at)))
}

/// Whether `caller` still holds what it authenticated with: the same
/// principal (roles and groups included), not revoked, expired or disabled.
/// Streams and long-polls ask this whenever credentials change.
pub(crate) async fn still_valid(app: &AppState, caller: &Caller) -> Result<bool, ApiError> {
    let now = match &caller.1 {
        Via::Bearer { hash, .. } => bearer(app, hash).await?.map(|it| it.principal),
        Via::Session(hash) => session::by_hash(app, hash)
            .await?
            .map(|session| Principal::User(session.user)),
        Via::Delegated(_) => match &caller.0 {
            Principal::User(user) => app
                .store
                .user(&user.id)
                .await?
                .filter(|u| u.disabled_at.is_none())
                .map(Principal::User),
            Principal::System(_) => None,
        },
    };
    Ok(now.as_ref() == Some(&caller.0))
}

/// 401 for a request whose credential ended while it waited.
pub(crate) fn ended() -> ApiError {
    unauthenticated("the credential was revoked, or its user disabled or changed, while waiting")
}

/// A web session may call the API too (the UI's scripts do): reads with
/// the cookie alone, anything else also with the session's CSRF token in
/// `X-CSRF-Token`.
async fn from_session(parts: &Parts, app: &AppState) -> Result<Option<Caller>, ApiError> {
    let Some(session) = session::current(app, &parts.headers).await? else {
        return Ok(None);
    };
    let read = matches!(parts.method, Method::GET | Method::HEAD);
    let token = parts
        .headers
        .get(session::CSRF_HEADER)
        .and_then(|it| it.to_str().ok());
    if !read && !session.csrf_matches(token) {
        return Err(ApiError::forbidden(
            "a request with a session cookie must carry the session's CSRF token",
        )
        .help("send `X-CSRF-Token` from the page's `csrf-token` meta tag, or use a bearer token"));
    }
    Ok(Some(session.caller()))
}

impl Caller {
    /// How long until the caller's bearer credential expires, if it does
    /// (streams and long-polls end then; sessions end by their own rules).
    pub(crate) fn expires_in(&self, now: Timestamp) -> Option<Duration> {
        match &self.1 {
            Via::Bearer {
                expires_at: Some(at),
                ..
            } => Some(Duration::from_millis(
                u64::try_from(at.millis() - now.millis()).unwrap_or(0),
            )),
            _ => None,
        }
    }

    /// What limits count per credential: the hash of the key, token or
    /// session cookie.
    pub(crate) fn credential_key(&self) -> &str {
        match &self.1 {
            Via::Bearer { hash, .. } | Via::Session(hash) | Via::Delegated(hash) => hash,
        }
    }

    /// `user:<name>` or `system:<id>`, as events and proposals record it.
    pub fn actor(&self) -> String {
        match &self.0 {
            Principal::User(user) => format!("user:{}", user.username),
            Principal::System(id) => format!("system:{id}"),
        }
    }

    /// The user, if the caller has any of `roles` (admins have every role).
    pub fn user_with(&self, roles: &[Role]) -> Result<&UserRecord, ApiError> {
        match &self.0 {
            Principal::User(user)
                if user
                    .roles
                    .iter()
                    .any(|r| *r == Role::Admin || roles.contains(r)) =>
            {
                Ok(user)
            }
            _ => Err(forbidden(roles)),
        }
    }

    /// Whether the caller is a user with any of `roles` (admins have every role).
    pub fn has(&self, roles: &[Role]) -> bool {
        self.user_with(roles).is_ok()
    }

    /// The system, for a system API key.
    pub fn system(&self) -> Option<&SystemId> {
        match &self.0 {
            Principal::System(id) => Some(id),
            Principal::User(_) => None,
        }
    }

    /// The caller as a reviewer (role `reviewer` or `admin`).
    pub fn reviewer(&self) -> Result<ReviewerRef, ApiError> {
        let user = self.user_with(&[Role::Reviewer])?;
        Ok(ReviewerRef {
            name: user.username.clone(),
            groups: user.groups.clone(),
        })
    }
}

fn forbidden(roles: &[Role]) -> ApiError {
    let mut names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    names.push("admin");
    ApiError::forbidden(format!("this needs one of the roles {}", names.join(", ")))
        .help("ask an admin for the role, or use a token that has it")
}
