//! Users and their web sessions.

use crate::db::{Connection, params};
use loopgate_core::audit::event::Event;
use loopgate_core::sso::{self, Known, SignIn};
use loopgate_core::{Timestamp, UserId, UserSource};

use super::SqlStore;
use super::queries::{self as q, USER_COLUMNS, to_json};
use super::systems::{insert_credential, revoke};
use crate::{
    LoginRecord, NewCredential, NewSession, NewUser, OidcIdentity, OidcLogin, OidcSignIn,
    SessionRecord, StoreError, UserPatch, UserRecord,
};

impl SqlStore {
    pub(super) async fn bootstrap_admin(
        &self,
        admin: NewUser,
        token: Option<NewCredential>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.write_plain(move |conn| {
            let n_users: i64 =
                conn.query_row("SELECT count(*) FROM users", params![], |row| row.get(0))?;
            if 0 < n_users {
                return Ok(false);
            }
            insert_user(conn, &admin, "loopgate", now)?;
            if let Some(token) = &token {
                insert_credential(conn, token, "loopgate", now)?;
            }
            Ok(true)
        })
        .await
    }

    pub(super) async fn create_user(
        &self,
        user: NewUser,
        actor: &str,
        now: Timestamp,
    ) -> Result<UserRecord, StoreError> {
        let actor = actor.to_owned();
        self.write_plain(move |conn| {
            insert_user(conn, &user, &actor, now)?;
            q::user(conn, user.id.as_str())?.ok_or(StoreError::NotFound)
        })
        .await
    }

    pub(super) async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.read(|conn| {
            let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY username");
            q::all(conn, &sql, [], q::user_row)
        })
        .await
    }

    pub(super) async fn user(&self, id: &UserId) -> Result<Option<UserRecord>, StoreError> {
        let id = id.clone();
        self.read(move |conn| q::user(conn, id.as_str())).await
    }

    pub(super) async fn update_user(
        &self,
        id: &UserId,
        patch: UserPatch,
        actor: &str,
        now: Timestamp,
    ) -> Result<UserRecord, StoreError> {
        let (id, actor) = (id.clone(), actor.to_owned());
        self.write_plain(move |conn| {
            let patch = patch.clone();
            let before = q::user(conn, id.as_str())?.ok_or(StoreError::NotFound)?;
            // Contact details and choices are not in the log (they are
            // personal data); that they changed is.
            let contact = patch.email.is_some() || patch.slack_user_id.is_some() || patch.notify.is_some();
            if contact {
                let email = patch.email.unwrap_or(before.email);
                let slack = patch.slack_user_id.unwrap_or(before.slack_user_id);
                let notify = patch.notify.unwrap_or(before.notify);
                conn.execute(
                    "UPDATE users SET email = ?2, slack_user_id = ?3, notify = ?4 WHERE id = ?1",
                    params![id.as_str(), email, slack, to_json(&notify)],
                )?;
                if patch.roles.is_none() && patch.groups.is_none() {
                    let event = Event::UserUpdated { user: id.as_str(), roles: &before.roles, groups: &before.groups };
                    q::append(conn, now, &actor, &event)?;
                }
            }
            if patch.roles.is_some() || patch.groups.is_some() {
                let roles = patch.roles.unwrap_or(before.roles);
                let groups = patch.groups.unwrap_or(before.groups);
                conn.execute(
                    "UPDATE users SET roles = ?2, groups_ = ?3 WHERE id = ?1",
                    params![id.as_str(), q::roles_json(&roles), to_json(&groups)],
                )?;
                let event = Event::UserUpdated { user: id.as_str(), roles: &roles, groups: &groups };
                q::append(conn, now, &actor, &event)?;
            }
            if patch.away_until.is_some() || patch.delegate.is_some() {
                let away_until = patch.away_until.unwrap_or(before.away_until);
                let delegate = patch.delegate.unwrap_or(before.delegate);
                if let Some(name) = &delegate {
                    check_delegate(conn, &before.username, name)?;
                }
                conn.execute(
                    "UPDATE users SET away_until = ?2, delegate = ?3 WHERE id = ?1",
                    params![id.as_str(), away_until.map(Timestamp::millis), delegate],
                )?;
                let event = Event::UserAwaySet {
                    user: id.as_str(),
                    away_until,
                    delegate: delegate.as_deref(),
                };
                q::append(conn, now, &actor, &event)?;
            }
            if let Some(hash) = patch.password_hash {
                conn.execute(
                    "UPDATE users SET password_hash = ?2 WHERE id = ?1",
                    params![id.as_str(), hash],
                )?;
                conn.execute("DELETE FROM sessions WHERE user_id = ?1", params![id.as_str()])?;
                q::append(conn, now, &actor, &Event::UserPasswordSet { user: id.as_str() })?;
            }
            if patch.revoke_tokens {
                let sql = "SELECT id FROM credentials WHERE kind = 'user' AND owner = ?1 AND revoked_at IS NULL ORDER BY id";
                let live: Vec<String> = q::all(conn, sql, params![id.as_str()], |row| row.get(0))?;
                for token in live {
                    revoke(conn, &token, "user", id.as_str(), &actor, now)?;
                }
            }
            match (patch.disabled, before.disabled_at) {
                (Some(true), None) => {
                    conn.execute(
                        "UPDATE users SET disabled_at = ?2 WHERE id = ?1",
                        params![id.as_str(), now.millis()],
                    )?;
                    conn.execute("DELETE FROM sessions WHERE user_id = ?1", params![id.as_str()])?;
                    q::append(conn, now, &actor, &Event::UserDisabled { user: id.as_str() })?;
                }
                (Some(false), Some(_)) => {
                    conn.execute(
                        "UPDATE users SET disabled_at = NULL WHERE id = ?1",
                        params![id.as_str()],
                    )?;
                    q::append(conn, now, &actor, &Event::UserEnabled { user: id.as_str() })?;
                }
                _ => (),
            }
            q::user(conn, id.as_str())?.ok_or(StoreError::NotFound)
        })
        .await
    }

    pub(super) async fn login_user(
        &self,
        username: &str,
    ) -> Result<Option<LoginRecord>, StoreError> {
        let username = username.to_owned();
        self.read(move |conn| {
            let sql =
                format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE username = ?1");
            q::one(conn, &sql, params![username], |row| {
                Ok(LoginRecord {
                    user: q::user_row(row)?,
                    password_hash: row.get(q::AFTER_USER_COLUMNS)?,
                })
            })
        })
        .await
    }

    pub(super) async fn create_session(
        &self,
        session: NewSession,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.write_plain(move |conn| {
            // Ended sessions go as new ones come: the table stays small.
            conn.execute(
                "DELETE FROM sessions WHERE expires_at <= ?1",
                params![now.millis()],
            )?;
            conn.execute(
                "INSERT INTO sessions (hash, user_id, csrf, created_at, expires_at, seen_at, id_token)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?4, ?6)",
                params![
                    session.hash,
                    session.user.as_str(),
                    session.csrf,
                    now.millis(),
                    session.expires_at.millis(),
                    session.id_token
                ],
            )?;
            Ok(())
        })
        .await
    }

    pub(super) async fn session(&self, hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        let hash = hash.to_owned();
        self.read(move |conn| {
            let sql = "SELECT user_id, csrf, created_at, expires_at, seen_at, id_token FROM sessions WHERE hash = ?1";
            let Some((user_id, csrf, created, expires, seen, id_token)) = q::one(conn, sql, params![hash], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, Option<String>>(5)?,
                ))
            })?
            else {
                return Ok(None);
            };
            let Some(user) = q::user(conn, &user_id)?.filter(|it| it.disabled_at.is_none()) else {
                return Ok(None);
            };
            Ok(Some(SessionRecord {
                user,
                csrf,
                created_at: Timestamp::from_millis(created),
                expires_at: Timestamp::from_millis(expires),
                seen_at: Timestamp::from_millis(seen),
                id_token,
            }))
        })
        .await
    }

    pub(super) async fn touch_session(&self, hash: &str, now: Timestamp) -> Result<(), StoreError> {
        let hash = hash.to_owned();
        self.write_plain(move |conn| {
            conn.execute(
                "UPDATE sessions SET seen_at = ?2 WHERE hash = ?1",
                params![hash, now.millis()],
            )?;
            Ok(())
        })
        .await
    }

    pub(super) async fn delete_session(&self, hash: &str) -> Result<(), StoreError> {
        let hash = hash.to_owned();
        self.write_plain(move |conn| {
            conn.execute("DELETE FROM sessions WHERE hash = ?1", params![hash])?;
            Ok(())
        })
        .await
    }

    pub(super) async fn start_oidc_login(
        &self,
        login: OidcLogin,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.write_plain(move |conn| {
            // Abandoned logins go as new ones come: the table stays small.
            conn.execute(
                "DELETE FROM oidc_logins WHERE expires_at <= ?1",
                params![now.millis()],
            )?;
            conn.execute(
                "INSERT INTO oidc_logins (state_hash, browser_hash, nonce, pkce_verifier, next, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    login.state_hash,
                    login.browser_hash,
                    login.nonce,
                    login.pkce_verifier,
                    login.next,
                    login.expires_at.millis()
                ],
            )?;
            Ok(())
        })
        .await
    }

    pub(super) async fn take_oidc_login(
        &self,
        state_hash: &str,
        now: Timestamp,
    ) -> Result<Option<OidcLogin>, StoreError> {
        let state_hash = state_hash.to_owned();
        self.write_plain(move |conn| {
            let sql = "SELECT browser_hash, nonce, pkce_verifier, next, expires_at FROM oidc_logins WHERE state_hash = ?1";
            let found = q::one(conn, sql, params![state_hash], |row| {
                Ok(OidcLogin {
                    state_hash: state_hash.clone(),
                    browser_hash: row.get(0)?,
                    nonce: row.get(1)?,
                    pkce_verifier: row.get(2)?,
                    next: row.get(3)?,
                    expires_at: Timestamp::from_millis(row.get(4)?),
                })
            })?;
            if found.is_some() {
                conn.execute("DELETE FROM oidc_logins WHERE state_hash = ?1", params![state_hash])?;
            }
            Ok(found.filter(|login| now < login.expires_at))
        })
        .await
    }

    pub(super) async fn oidc_sign_in(
        &self,
        identity: OidcIdentity,
        now: Timestamp,
    ) -> Result<OidcSignIn, StoreError> {
        self.write_plain(move |conn| {
            let sql = format!(
                "SELECT {USER_COLUMNS} FROM users WHERE oidc_issuer = ?1 AND oidc_subject = ?2"
            );
            let known = q::one(
                conn,
                &sql,
                params![identity.issuer, identity.subject],
                q::user_row,
            )?;
            let stored = known.as_ref().map(|user| Known {
                roles: &user.roles,
                groups: &user.groups,
                disabled: user.disabled_at.is_some(),
            });
            let actor = "oidc";
            match (sso::sign_in(stored, identity.access.clone()), known) {
                (SignIn::Disabled, _) => Ok(OidcSignIn::Disabled),
                (SignIn::Unmapped { revoke }, known) => {
                    if let (true, Some(user)) = (revoke, known) {
                        set_access(conn, &user.id, &[], &[], actor, now)?;
                        conn.execute(
                            "DELETE FROM sessions WHERE user_id = ?1",
                            params![user.id.as_str()],
                        )?;
                    }
                    Ok(OidcSignIn::Unmapped)
                }
                (SignIn::Same, Some(user)) => Ok(OidcSignIn::SignedIn(user)),
                (SignIn::Update(access), Some(user)) => {
                    set_access(conn, &user.id, &access.roles, &access.groups, actor, now)?;
                    let user = q::user(conn, user.id.as_str())?.ok_or(StoreError::NotFound)?;
                    Ok(OidcSignIn::SignedIn(user))
                }
                (SignIn::Create(access), _) => {
                    let username = free_username(conn, &identity)?;
                    let id = identity.new_id.clone();
                    let user = NewUser {
                        id: id.clone(),
                        username,
                        roles: access.roles,
                        groups: access.groups,
                        password_hash: None,
                        email: identity.email.clone(),
                        slack_user_id: None,
                        source: UserSource::Oidc,
                    };
                    insert(conn, &user, now)?;
                    conn.execute(
                        "UPDATE users SET oidc_issuer = ?2, oidc_subject = ?3 WHERE id = ?1",
                        params![id.as_str(), identity.issuer, identity.subject],
                    )?;
                    q::append(
                        conn,
                        now,
                        actor,
                        &created_event(&user, Some(&identity.issuer)),
                    )?;
                    let user = q::user(conn, id.as_str())?.ok_or(StoreError::NotFound)?;
                    Ok(OidcSignIn::SignedIn(user))
                }
                // `Same` and `Update` come only with a stored user.
                (SignIn::Same | SignIn::Update(_), None) => Err(StoreError::NotFound),
            }
        })
        .await
    }

    pub(super) async fn log_break_glass(
        &self,
        user: &UserId,
        actor: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let (user, actor) = (user.clone(), actor.to_owned());
        self.write_plain(move |conn| {
            let event = Event::UserBreakGlassLogin {
                user: user.as_str(),
            };
            q::append(conn, now, &actor, &event)
        })
        .await
    }
}

/// Stores a user's roles and groups (`user.updated`).
fn set_access(
    conn: &Connection,
    id: &UserId,
    roles: &[loopgate_core::Role],
    groups: &[String],
    actor: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE users SET roles = ?2, groups_ = ?3 WHERE id = ?1",
        params![id.as_str(), q::roles_json(roles), to_json(&groups)],
    )?;
    let event = Event::UserUpdated {
        user: id.as_str(),
        roles,
        groups,
    };
    q::append(conn, now, actor, &event)
}

/// The identity's username, or the first free alternative (`sso::alternatives`).
fn free_username(conn: &Connection, identity: &OidcIdentity) -> Result<String, StoreError> {
    let taken = |name: &str| -> Result<bool, StoreError> {
        let found: Option<i64> = q::one(
            conn,
            "SELECT 1 FROM users WHERE username = ?1",
            params![name],
            |row| row.get(0),
        )?;
        Ok(found.is_some())
    };
    if !taken(&identity.username)? {
        return Ok(identity.username.clone());
    }
    let tag = loopgate_core::digest::sha256_of(
        format!("{}\n{}", identity.issuer, identity.subject).as_bytes(),
    );
    for name in sso::alternatives(&identity.username, &tag) {
        if !taken(&name)? {
            return Ok(name);
        }
    }
    Err(StoreError::Conflict(format!(
        "no free username for `{}`",
        identity.username
    )))
}

pub(super) fn insert_user(
    conn: &Connection,
    user: &NewUser,
    actor: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    insert(conn, user, now)?;
    q::append(conn, now, actor, &created_event(user, None))
}

fn insert(conn: &Connection, user: &NewUser, now: Timestamp) -> Result<(), StoreError> {
    conn.execute("INSERT INTO users (id, username, roles, groups_, password_hash, created_at, email, slack_user_id, source) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)", params![user.id.as_str(), user.username, q::roles_json(&user.roles), to_json(&user.groups), user.password_hash, now.millis(), user.email, user.slack_user_id, user.source.as_str()])?;
    Ok(())
}

fn created_event<'a>(user: &'a NewUser, issuer: Option<&'a str>) -> Event<'a> {
    Event::UserCreated {
        user: user.id.as_str(),
        username: &user.username,
        roles: &user.roles,
        groups: &user.groups,
        source: user.source,
        issuer,
    }
}

/// A stand-in must be another user who can sign in.
fn check_delegate(conn: &Connection, username: &str, delegate: &str) -> Result<(), StoreError> {
    if delegate == username {
        return Err(StoreError::Invalid(
            "a user cannot be their own `delegate`".to_owned(),
        ));
    }
    let enabled: Option<bool> = q::one(
        conn,
        "SELECT disabled_at IS NULL FROM users WHERE username = ?1",
        params![delegate],
        |row| row.get(0),
    )?;
    match enabled {
        Some(true) => Ok(()),
        Some(false) => Err(StoreError::Invalid(format!(
            "`delegate` `{delegate}` is disabled"
        ))),
        None => Err(StoreError::Invalid(format!(
            "`delegate` `{delegate}` is not a user"
        ))),
    }
}
