//! Logging in and out, and the account page (change password).

use std::sync::LazyLock;
use std::time::Duration;

use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar};
use serde::Deserialize;

use crate::AppState;
use crate::auth::session::{self, LOGIN_COOKIE, Session, same_secret};
use crate::http::users::password_hash;
use crate::limits::{ClientAddr, Throttled, username_hash};
use crate::secrets::{hash_password, new_secret, verify_password};
use crate::ui::Form;
use crate::ui::{Nav, UiError, assets, render};
use loopgate_core::UserSource;
use loopgate_core::notify::Pref;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    next: String,
    username: String,
    message: Option<String>,
    version: &'static str,
    /// "Sign in with {sso}" when single sign-on is configured.
    sso: Option<String>,
    /// Whether the password form is shown: passwords are on, or this is
    /// the break-glass page.
    passwords: bool,
    break_glass: bool,
}

#[derive(Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
    /// `/ui/login?break_glass=1`: the first admin's password form when
    /// passwords are off.
    #[serde(default)]
    break_glass: Option<String>,
}

/// Only a path inside the UI: never another site.
pub(crate) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path) if path.starts_with("/ui") && !path.contains("//") && !path.contains('\\') => {
            path.to_owned()
        }
        _ => "/ui".to_owned(),
    }
}

/// `GET /ui/login`: the form, with a fresh login CSRF cookie.
pub(crate) async fn login_page(
    State(app): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    Query(query): Query<LoginQuery>,
) -> Result<Response, UiError> {
    let next = safe_next(query.next.as_deref());
    if session::current(&app, &headers).await?.is_some() {
        return Ok(Redirect::to(&next).into_response());
    }
    let break_glass = query.break_glass.is_some();
    login_form(
        &app,
        &headers,
        jar,
        next,
        String::new(),
        None,
        StatusCode::OK,
        break_glass,
    )
}

#[allow(
    clippy::too_many_arguments,
    reason = "the login page's fields, each from its caller"
)]
fn login_form(
    app: &AppState,
    headers: &HeaderMap,
    jar: CookieJar,
    next: String,
    username: String,
    message: Option<String>,
    status: StatusCode,
    break_glass: bool,
) -> Result<Response, UiError> {
    let csrf = new_secret("").map_err(|e| UiError::internal(&e))?;
    let break_glass = break_glass && !app.config.password_login;
    let page = LoginPage {
        csrf: csrf.clone(),
        next,
        username,
        message,
        version: assets::version(),
        sso: app.oidc.as_ref().map(|it| it.config.name.clone()),
        passwords: app.config.password_login || break_glass,
        break_glass,
    };
    let jar = jar.add(session::cookie(
        LOGIN_COOKIE,
        csrf,
        session::secure(app, headers),
    ));
    Ok((status, jar, render(&page)?).into_response())
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    #[serde(rename = "_csrf")]
    csrf: String,
    #[serde(default)]
    next: Option<String>,
    username: String,
    password: String,
}

/// Spent on unknown usernames, so that they take as long as wrong passwords.
static DUMMY_HASH: LazyLock<Option<String>> =
    LazyLock::new(|| hash_password("loopgate-no-such-user").ok());

/// `POST /ui/login`.
pub(crate) async fn login(
    State(app): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    jar: CookieJar,
    Form(form): Form<LoginForm>,
) -> Result<Response, UiError> {
    let sent_from_our_form = jar
        .get(LOGIN_COOKIE)
        .is_some_and(|cookie| same_secret(cookie.value(), &form.csrf));
    if !sent_from_our_form {
        return Err(UiError::csrf());
    }
    let next = safe_next(form.next.as_deref());
    let now = app.clock.now();
    let refuse = |message: &str, status: StatusCode, jar: CookieJar, username: String| {
        login_form(
            &app,
            &headers,
            jar,
            next.clone(),
            username,
            Some(message.to_owned()),
            status,
            true,
        )
    };
    // Bounded before any work: nothing longer is a name or password here.
    let username = form.username.trim();
    if MAX_USERNAME < username.len() || MAX_PASSWORD < form.password.len() {
        let message = format!(
            "A username has at most {MAX_USERNAME} bytes and a password at most {MAX_PASSWORD}."
        );
        return refuse(
            &message,
            StatusCode::UNPROCESSABLE_ENTITY,
            jar,
            String::new(),
        );
    }
    let username = username.to_owned();
    match app.logins.check(&username, addr, now) {
        Ok(()) => (),
        Err(Throttled::Locked(wait)) => {
            let minutes = wait.as_secs().div_ceil(60);
            let message = format!(
                "Too many failed logins for this username from your address. Try again in {minutes} minute{}.",
                if minutes == 1 { "" } else { "s" }
            );
            let page = refuse(&message, StatusCode::TOO_MANY_REQUESTS, jar, username)?;
            return Ok(retry_after(page, wait));
        }
        Err(Throttled::Full) => {
            let message =
                "Too many failed logins are being tried right now. Try again in a minute.";
            let page = refuse(message, StatusCode::SERVICE_UNAVAILABLE, jar, username)?;
            return Ok(retry_after(page, Duration::from_secs(60)));
        }
    }
    let record = app.store.login_user(&username).await?;
    let hash = record.as_ref().and_then(|it| it.password_hash.clone());
    let password = form.password;
    let checked = app
        .passwords
        .run(move || match hash {
            Some(hash) => verify_password(&hash, &password),
            None => {
                if let Some(dummy) = DUMMY_HASH.as_deref() {
                    verify_password(dummy, &password);
                }
                false
            }
        })
        .await;
    let matches = match checked {
        Ok(matches) => matches,
        Err(_) => {
            let message = "The server is busy checking passwords. Try again in a moment.";
            let page = refuse(message, StatusCode::SERVICE_UNAVAILABLE, jar, username)?;
            return Ok(retry_after(page, Duration::from_secs(1)));
        }
    };
    let user = match record {
        Some(record) if matches && record.user.disabled_at.is_some() => {
            let message = "This account is disabled. Ask an admin to enable it.";
            return refuse(message, StatusCode::FORBIDDEN, jar, username);
        }
        Some(record) if matches => record.user,
        _ => {
            // Counted even when the table is full: `check` refuses the next.
            let _ = app.logins.failed(&username, addr, now);
            let hashed = hex::encode(&username_hash(&username)[..8]);
            tracing::info!(username_hash = hashed, client = %addr, "failed login");
            return refuse(
                "Wrong username or password.",
                StatusCode::UNAUTHORIZED,
                jar,
                username,
            );
        }
    };
    app.logins.succeeded(&username, addr);
    if !app.config.password_login {
        // Passwords are off: only the first admin, as break-glass, audited.
        if user.source != UserSource::Bootstrap {
            let message = match &app.oidc {
                Some(oidc) => format!(
                    "Password login is off here: sign in with {}.",
                    oidc.config.name
                ),
                None => "Password login is off here.".to_owned(),
            };
            return refuse(&message, StatusCode::FORBIDDEN, jar, username);
        }
        let actor = format!("user:{}", user.username);
        app.store.log_break_glass(&user.id, &actor, now).await?;
        tracing::warn!(user = %user.username, "break-glass password login");
    }
    let cookie = session::start(&app, &user, session::secure(&app, &headers), None).await?;
    let jar = jar
        .remove(Cookie::build(LOGIN_COOKIE).path("/"))
        .add(cookie);
    Ok((jar, Redirect::to(&next)).into_response())
}

/// The longest username and password a login reads.
pub(crate) const MAX_USERNAME: usize = 64;
pub(crate) const MAX_PASSWORD: usize = 1024;

fn retry_after(mut response: Response, wait: Duration) -> Response {
    let seconds = wait.as_secs().max(1);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// `POST /ui/logout`.
pub(crate) async fn logout(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    jar: CookieJar,
) -> Result<Response, UiError> {
    app.store.delete_session(&session.hash).await?;
    let jar = jar.remove(Cookie::build(session::COOKIE).path("/"));
    // Signed in through the provider: end the session there too
    // (RP-initiated logout), when it has an end-session endpoint.
    if let (Some(oidc), Some(id_token)) = (&app.oidc, &session.id_token)
        && let Some(url) = oidc.logout_url(id_token, app.clock.now()).await
    {
        return Ok((jar, Redirect::to(&url)).into_response());
    }
    Ok((jar, Redirect::to("/ui/login")).into_response())
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    nav: Nav,
    roles: String,
    groups: String,
    email: String,
    slack_user_id: String,
    /// Per channel: (name, label, mode, digest minutes).
    channels: Vec<(&'static str, &'static str, &'static str, u32)>,
    message: Option<String>,
    message_class: &'static str,
    /// Signed in through the identity provider: no password to change.
    sso: bool,
    /// `datetime-local` value (UTC) of the absence's end, empty when present.
    away_until: String,
    /// Whether `away_until` is still ahead.
    away_now: bool,
    delegate: String,
}

fn account_page(
    session: &Session,
    message: Option<(String, &'static str)>,
    now: loopgate_core::Timestamp,
) -> Result<axum::response::Html<String>, UiError> {
    let (message, message_class) = match message {
        Some((text, class)) => (Some(text), class),
        None => (None, ""),
    };
    let roles: Vec<&str> = session.user.roles.iter().map(|r| r.as_str()).collect();
    let channel = |pref: Pref| match pref {
        Pref::Default => ("default", 60),
        Pref::Each => ("each", 60),
        Pref::Off => ("off", 60),
        Pref::Digest { every_minutes } => ("digest", every_minutes),
    };
    let notify = session.user.notify;
    let (email_mode, email_minutes) = channel(notify.email);
    let (slack_mode, slack_minutes) = channel(notify.slack);
    render(&AccountPage {
        nav: Nav::new(session, "account"),
        roles: roles.join(", "),
        groups: session.user.groups.join(", "),
        email: session.user.email.clone().unwrap_or_default(),
        slack_user_id: session.user.slack_user_id.clone().unwrap_or_default(),
        channels: vec![
            ("email", "Email", email_mode, email_minutes),
            ("slack", "Slack direct messages", slack_mode, slack_minutes),
        ],
        message,
        message_class,
        sso: session.user.source == UserSource::Oidc,
        away_until: session
            .user
            .away_until
            .map(|t| t.to_rfc3339().chars().take(16).collect())
            .unwrap_or_default(),
        away_now: session.user.away_until.is_some_and(|t| now < t),
        delegate: session.user.delegate.clone().unwrap_or_default(),
    })
}

#[derive(Deserialize)]
pub(crate) struct AccountQuery {
    changed: Option<u8>,
}

/// `GET /ui/account`.
pub(crate) async fn page(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    Query(query): Query<AccountQuery>,
) -> Result<Response, UiError> {
    let message = query.changed.map(|_| {
        (
            "Password changed. Your other sessions were logged out.".to_owned(),
            "ok",
        )
    });
    Ok(account_page(&session, message, app.clock.now())?.into_response())
}

#[derive(Deserialize)]
pub(crate) struct NotifyForm {
    email: String,
    email_minutes: Option<String>,
    slack: String,
    slack_minutes: Option<String>,
}

/// `POST /ui/account/notifications`: what the user hears, per channel.
pub(crate) async fn set_notifications(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    Form(form): Form<NotifyForm>,
) -> Result<Response, UiError> {
    let pref = |mode: &str, minutes: Option<&str>| {
        let mode = match mode {
            "each" => loopgate_proto::NotifyMode::Each,
            "digest" => loopgate_proto::NotifyMode::Digest,
            "off" => loopgate_proto::NotifyMode::Off,
            _ => loopgate_proto::NotifyMode::Default,
        };
        loopgate_proto::NotifyPref {
            mode,
            every_minutes: (mode == loopgate_proto::NotifyMode::Digest)
                .then(|| minutes.and_then(|m| m.trim().parse().ok()).unwrap_or(0)),
        }
    };
    let body = loopgate_proto::UpdateUser {
        notify: Some(loopgate_proto::NotifyPrefs {
            email: pref(&form.email, form.email_minutes.as_deref()),
            slack: pref(&form.slack, form.slack_minutes.as_deref()),
        }),
        ..Default::default()
    };
    save_own(&app, session, body, "Notification choices saved.").await
}

/// Applies a change the user may make to themself, then shows the page
/// with `saved` or the reason it was refused.
async fn save_own(
    app: &AppState,
    session: Session,
    body: loopgate_proto::UpdateUser,
    saved: &str,
) -> Result<Response, UiError> {
    let result = crate::http::users::update(
        State(app.clone()),
        session.caller(),
        crate::http::extract::Path(session.user.id.as_str().to_owned()),
        crate::http::extract::JsonBody(body),
    )
    .await;
    match result {
        Ok(axum::Json(_)) => {
            // The page shows the stored choices: read the session again.
            let fresh = crate::auth::session::by_hash(app, &session.hash)
                .await?
                .unwrap_or(session);
            Ok(
                account_page(&fresh, Some((saved.to_owned(), "ok")), app.clock.now())?
                    .into_response(),
            )
        }
        Err(error) => {
            let problem = error.problem();
            let page = account_page(&session, Some((problem.detail, "error")), app.clock.now())?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct AwayForm {
    /// `datetime-local` (UTC), empty when back.
    #[serde(default)]
    away_until: String,
    #[serde(default)]
    delegate: String,
}

/// `POST /ui/account/away`: away until a time, and who stands in.
pub(crate) async fn set_away(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    Form(form): Form<AwayForm>,
) -> Result<Response, UiError> {
    let until = form.away_until.trim();
    // A `datetime-local` value has no offset: the page says it is UTC.
    let until = match until.len() {
        16 if !until.contains(['Z', '+']) => format!("{until}:00Z"),
        19 if !until.contains(['Z', '+']) => format!("{until}Z"),
        _ => until.to_owned(),
    };
    let body = loopgate_proto::UpdateUser {
        away_until: Some(until),
        delegate: Some(form.delegate.trim().to_owned()),
        ..Default::default()
    };
    save_own(&app, session, body, "Away settings saved.").await
}

#[derive(Deserialize)]
pub(crate) struct PasswordForm {
    current: String,
    new: String,
}

/// `POST /ui/account`: the user changes their own password; every session
/// of theirs ends and this browser gets a new one.
pub(crate) async fn change_password(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
    jar: CookieJar,
    Form(form): Form<PasswordForm>,
) -> Result<Response, UiError> {
    let record = app.store.login_user(&session.user.username).await?;
    let hash = record.and_then(|it| it.password_hash);
    let current = form.current;
    let matches = app
        .passwords
        .run(move || hash.is_some_and(|hash| verify_password(&hash, &current)))
        .await
        .map_err(UiError::from)?;
    if !matches {
        let page = account_page(
            &session,
            Some(("The current password is wrong.".to_owned(), "error")),
            app.clock.now(),
        )?;
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
    }
    let hash = match password_hash(&app, form.new).await {
        Ok(hash) => hash,
        Err(error) => {
            let problem = error.problem();
            let page = account_page(&session, Some((problem.detail, "error")), app.clock.now())?;
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
        }
    };
    let patch = loopgate_store::UserPatch {
        password_hash: Some(hash),
        ..Default::default()
    };
    let actor = format!("user:{}", session.user.username);
    let user = app
        .store
        .update_user(&session.user.id, patch, &actor, app.clock.now())
        .await?;
    let cookie = session::start(&app, &user, session::secure(&app, &headers), None).await?;
    Ok((jar.add(cookie), Redirect::to("/ui/account?changed=1")).into_response())
}
