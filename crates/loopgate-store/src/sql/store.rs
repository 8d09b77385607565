//! `Store` for `SqliteStore`.

use std::sync::Arc;
use std::time::Duration;

use crate::db::{Arg, Connection, Dialect, ToArg, params};
use loopgate_core::audit::Hash;
use loopgate_core::audit::event::Event;
use loopgate_core::proposal::{self, Proposed, SystemState};
use loopgate_core::review::{self, DecisionInput, Effect, ReviewError, Reviewer, Task};
use loopgate_core::{
    DecidedBy, ProposalId, ProposalStatus, SystemId, TaskId, TaskState, Timestamp, UserId,
};

use super::aggregates::{self as counts, Tracked};
use super::queries::{
    self as q, CREDENTIAL_COLUMNS, PROPOSAL_COLUMNS, TASK_COLUMNS, USER_COLUMNS, to_json,
};
use super::{SqlStore, audit, webhooks};
use crate::{
    Activation, ActivationMode, AnalyticsFilter, AttemptResult, Authenticated, CheckpointRecord,
    CredentialOwner, CredentialRecord, DecisionOutcome, DeliveryFilter, DeliveryRecord,
    Disagreement, DueDelivery, EraseError, ErrorTally, LabelRow, LoginRecord, NewCredential,
    NewPolicy, NewProposal, NewSession, NewSystem, NewUser, Paged, PolicyRecord, PolicyState,
    Principal, ProposalFilter, ProposalRecord, ReplayRow, ReviewFact, ReviewerRef, Sequenced,
    SessionRecord, ShadowSummary, Store, StoreError, StoredEvent, SubmitError, Submitted,
    SystemPatch, SystemRecord, TaskFilter, TaskRecord, TimerOutcome, Total, TotalsQuery, TreeHead,
    TxError, UserPatch, UserRecord, WebhookConfig,
};

#[async_trait::async_trait]
impl Store for SqlStore {
    async fn sampling_secret(&self, candidate: String) -> Result<String, StoreError> {
        self.write_plain(move |conn| {
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('sampling_secret', ?1) ON CONFLICT DO NOTHING",
                params![candidate],
            )?;
            q::meta(conn, "sampling_secret")?.ok_or(StoreError::NotFound)
        })
        .await
    }

    async fn bootstrap_admin(
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
            if let Some(token) = token {
                insert_credential(conn, &token, "loopgate", now)?;
            }
            Ok(true)
        })
        .await
    }

    async fn principal(&self, credential_hash: &str) -> Result<Option<Authenticated>, StoreError> {
        let hash = credential_hash.to_owned();
        self.read(move |conn| {
            let sql = format!(
                "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE hash = ?1 AND revoked_at IS NULL"
            );
            let Some(credential) = q::one(conn, &sql, params![hash], q::credential_row)? else {
                return Ok(None);
            };
            let principal = match credential.owner {
                CredentialOwner::System(id) => Principal::System(id),
                CredentialOwner::User(id) => match q::user(conn, id.as_str())? {
                    Some(user) if user.disabled_at.is_none() => Principal::User(user),
                    _ => return Ok(None),
                },
            };
            Ok(Some(Authenticated {
                id: credential.id,
                principal,
                expires_at: credential.expires_at,
                last_used_at: credential.last_used_at,
            }))
        })
        .await
    }

    async fn touch_credential(&self, id: &str, now: Timestamp) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.write_plain(move |conn| {
            conn.execute(
                "UPDATE credentials SET last_used_at = ?2 WHERE id = ?1",
                params![id, now.millis()],
            )?;
            Ok(())
        })
        .await
    }

    async fn credentials(
        &self,
        owner: &CredentialOwner,
    ) -> Result<Vec<CredentialRecord>, StoreError> {
        let owner = owner.clone();
        self.read(move |conn| {
            let (kind, owner) = q::owner_columns(&owner);
            let sql = format!(
                "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE kind = ?1 AND owner = ?2 ORDER BY created_at DESC, id DESC"
            );
            q::all(conn, &sql, params![kind, owner], q::credential_row)
        })
        .await
    }

    async fn revoke_credential(
        &self,
        owner: &CredentialOwner,
        id: &str,
        actor: &str,
        now: Timestamp,
    ) -> Result<CredentialRecord, StoreError> {
        let (owner, id, actor) = (owner.clone(), id.to_owned(), actor.to_owned());
        self.write_plain(move |conn| {
            let (kind, owner_id) = q::owner_columns(&owner);
            let sql = format!(
                "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE id = ?1 AND kind = ?2 AND owner = ?3"
            );
            let found = q::one(conn, &sql, params![id, kind, owner_id], q::credential_row)?
                .ok_or(StoreError::NotFound)?;
            if found.revoked_at.is_some() {
                return Ok(found);
            }
            revoke(conn, &found.id, kind, owner_id, &actor, now)?;
            Ok(CredentialRecord {
                revoked_at: Some(now),
                ..found
            })
        })
        .await
    }

    async fn create_user(
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

    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.read(|conn| {
            let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY username");
            q::all(conn, &sql, [], q::user_row)
        })
        .await
    }

    async fn user(&self, id: &UserId) -> Result<Option<UserRecord>, StoreError> {
        let id = id.clone();
        self.read(move |conn| q::user(conn, id.as_str())).await
    }

    async fn update_user(
        &self,
        id: &UserId,
        patch: UserPatch,
        actor: &str,
        now: Timestamp,
    ) -> Result<UserRecord, StoreError> {
        let (id, actor) = (id.clone(), actor.to_owned());
        self.write_plain(move |conn| {
            let before = q::user(conn, id.as_str())?.ok_or(StoreError::NotFound)?;
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

    async fn login_user(&self, username: &str) -> Result<Option<LoginRecord>, StoreError> {
        let username = username.to_owned();
        self.read(move |conn| {
            let sql =
                format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE username = ?1");
            q::one(conn, &sql, params![username], |row| {
                Ok(LoginRecord {
                    user: q::user_row(row)?,
                    password_hash: row.get(6)?,
                })
            })
        })
        .await
    }

    async fn create_session(&self, session: NewSession, now: Timestamp) -> Result<(), StoreError> {
        self.write_plain(move |conn| {
            // Ended sessions go as new ones come: the table stays small.
            conn.execute(
                "DELETE FROM sessions WHERE expires_at <= ?1",
                params![now.millis()],
            )?;
            conn.execute(
                "INSERT INTO sessions (hash, user_id, csrf, created_at, expires_at, seen_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?4)",
                params![
                    session.hash,
                    session.user.as_str(),
                    session.csrf,
                    now.millis(),
                    session.expires_at.millis()
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn session(&self, hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        let hash = hash.to_owned();
        self.read(move |conn| {
            let sql = "SELECT user_id, csrf, created_at, expires_at, seen_at FROM sessions WHERE hash = ?1";
            let Some((user_id, csrf, created, expires, seen)) = q::one(conn, sql, params![hash], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, i64>(4)?,
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
            }))
        })
        .await
    }

    async fn touch_session(&self, hash: &str, now: Timestamp) -> Result<(), StoreError> {
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

    async fn delete_session(&self, hash: &str) -> Result<(), StoreError> {
        let hash = hash.to_owned();
        self.write_plain(move |conn| {
            conn.execute("DELETE FROM sessions WHERE hash = ?1", params![hash])?;
            Ok(())
        })
        .await
    }

    async fn create_credential(
        &self,
        credential: NewCredential,
        actor: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let actor = actor.to_owned();
        self.write_plain(move |conn| insert_credential(conn, &credential, &actor, now))
            .await
    }

    async fn create_system(
        &self,
        system: NewSystem,
        actor: &str,
        now: Timestamp,
    ) -> Result<SystemRecord, StoreError> {
        let actor = actor.to_owned();
        self.write_plain(move |conn| {
            conn.execute(
                "INSERT INTO systems (id, name, owner, purpose, risk_tier, oversight, status, created_at, updated_at, shape)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'active', ?7, ?7, ?8)",
            params![
                system.id.as_str(),
                system.name,
                system.owner,
                system.purpose,
                system.risk_tier.as_str(),
                system.oversight.as_str(),
                now.millis(),
                system.shape.as_ref().map(to_json)
            ])?;
            let event = Event::SystemCreated {
                system: system.id.as_str(),
                risk_tier: system.risk_tier,
                oversight: system.oversight,
            };
            q::append(conn, now, &actor, &event)?;
            q::system(conn, system.id.as_str())?.ok_or(StoreError::NotFound)
        })
        .await
    }

    async fn systems(&self) -> Result<Vec<SystemRecord>, StoreError> {
        self.read(|conn| {
            let sql = format!("SELECT {} FROM systems ORDER BY id", q::SYSTEM_COLUMNS);
            q::all(conn, &sql, [], q::system_row)
        })
        .await
    }

    async fn system(&self, id: &SystemId) -> Result<Option<SystemRecord>, StoreError> {
        let id = id.clone();
        self.read(move |conn| q::system(conn, id.as_str())).await
    }

    async fn update_system(
        &self,
        id: &SystemId,
        patch: SystemPatch,
        actor: &str,
        now: Timestamp,
    ) -> Result<SystemRecord, StoreError> {
        let (id, actor) = (id.clone(), actor.to_owned());
        self.write_plain(move |conn| {
            let before = q::system(conn, id.as_str())?.ok_or(StoreError::NotFound)?;
            let after = SystemRecord {
                name: patch.name.unwrap_or(before.name.clone()),
                owner: patch.owner.unwrap_or(before.owner.clone()),
                purpose: patch.purpose.unwrap_or(before.purpose.clone()),
                risk_tier: patch.risk_tier.unwrap_or(before.risk_tier),
                oversight: patch.oversight.unwrap_or(before.oversight),
                status: patch.status.unwrap_or(before.status),
                retention: patch.retention.unwrap_or(before.retention),
                shape: patch.shape.or(before.shape.clone()),
                updated_at: now,
                ..before.clone()
            };
            conn.execute(
                "UPDATE systems SET name = ?2, owner = ?3, purpose = ?4, risk_tier = ?5, oversight = ?6, status = ?7, updated_at = ?8,
                     retention_ms = ?9, shape = ?10
                 WHERE id = ?1",
            params![
                id.as_str(),
                after.name,
                after.owner,
                after.purpose,
                after.risk_tier.as_str(),
                after.oversight.as_str(),
                after.status.as_str(),
                now.millis(),
                after.retention.map(|r| i64::try_from(r.as_millis()).unwrap_or(i64::MAX)),
                after.shape.as_ref().map(to_json)
            ])?;
            let event = Event::SystemChanged {
                system: id.as_str(),
                before: before.status,
                risk_tier: after.risk_tier,
                oversight: after.oversight,
                status: after.status,
                retention: after.retention,
            };
            q::append(conn, now, &actor, &event)?;
            Ok(after)
        })
        .await
    }

    async fn publish_policy(
        &self,
        policy: NewPolicy,
        mode: ActivationMode,
        actor: &str,
        now: Timestamp,
    ) -> Result<PolicyRecord, StoreError> {
        let actor = actor.to_owned();
        self.write_plain(move |conn| {
            let existing = q::policy(conn, &policy.version)?;
            let record = match existing {
                Some(record) => record,
                None => {
                    let seq: i64 = conn.query_row(
                        "INSERT INTO policies (version, text, description, policy_ids, created_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                         RETURNING seq",
                        params![policy.version, policy.text, policy.description, to_json(&policy.policy_ids), actor, now.millis()],
                        |row| row.get(0),
                    )?;
                    let event = Event::PolicyPublished {
                        version: &policy.version,
                        seq,
                        policies: policy.policy_ids.len(),
                    };
                    q::append(conn, now, &actor, &event)?;
                    PolicyRecord {
                        seq,
                        version: policy.version,
                        text: policy.text,
                        description: policy.description.clone(),
                        policy_ids: policy.policy_ids,
                        created_by: actor.clone(),
                        created_at: now,
                    }
                }
            };
            q::activate(conn, &record.version, mode, &policy.description, &actor, now)?;
            Ok(record)
        })
        .await
    }

    async fn activate_policy(
        &self,
        version: &str,
        mode: ActivationMode,
        reason: &str,
        actor: &str,
        now: Timestamp,
    ) -> Result<PolicyState, StoreError> {
        let (version, reason, actor) = (version.to_owned(), reason.to_owned(), actor.to_owned());
        self.write_plain(move |conn| {
            let version = match mode {
                ActivationMode::ShadowOff => match q::policy_state(conn)?.shadow {
                    Some((record, _)) => record.version,
                    None => {
                        return Err(StoreError::Invalid(
                            "no shadow version is running".to_owned(),
                        ));
                    }
                },
                _ => {
                    q::policy(conn, &version)?
                        .ok_or(StoreError::NotFound)?
                        .version
                }
            };
            q::activate(conn, &version, mode, &reason, &actor, now)?;
            q::policy_state(conn)
        })
        .await
    }

    async fn policy(&self, version: &str) -> Result<Option<PolicyRecord>, StoreError> {
        let version = version.to_owned();
        self.read(move |conn| q::policy(conn, &version)).await
    }

    async fn policy_state(&self) -> Result<PolicyState, StoreError> {
        self.read(q::policy_state).await
    }

    async fn activations(&self) -> Result<Vec<Activation>, StoreError> {
        self.read(|conn| {
            let sql = "SELECT seq, version, mode, reason, actor, at FROM policy_activations ORDER BY seq DESC";
            q::all(conn, sql, [], |row| {
                Ok(Activation {
                    seq: row.get(0)?,
                    version: row.get(1)?,
                    mode: row.get(2)?,
                    reason: row.get(3)?,
                    actor: row.get(4)?,
                    at: Timestamp::from_millis(row.get(5)?),
                })
            })
        })
        .await
    }

    async fn shadow_summary(
        &self,
        version: &str,
        since: Timestamp,
        limit: u32,
    ) -> Result<ShadowSummary, StoreError> {
        let version = version.to_owned();
        self.read(move |conn| {
            let evaluated: i64 = conn.query_row(
                "SELECT COUNT(*) FROM proposals WHERE created_at >= ?1",
                params![since.millis()],
                |row| row.get(0),
            )?;
            let transitions = q::all(
                conn,
                "SELECT live_route, shadow_route, COUNT(*) AS n FROM shadow_disagreements WHERE version = ?1 AND at >= ?2
                 GROUP BY live_route, shadow_route ORDER BY n DESC, live_route, shadow_route",
                params![version, since.millis()],
                |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, i64>(2)?.max(0) as u64)),
            )?;
            let recent = q::all(
                conn,
                "SELECT proposal_id, version, live_route, shadow_route, live_matched, shadow_matched, shadow_group, at
                 FROM shadow_disagreements WHERE version = ?1 AND at >= ?2 ORDER BY at DESC, proposal_id DESC LIMIT CAST(?3 AS BIGINT)",
                params![version, since.millis(), limit],
                |row| {
                    Ok(Disagreement {
                        proposal_id: row.get(0)?,
                        version: row.get(1)?,
                        live_route: row.get(2)?,
                        shadow_route: row.get(3)?,
                        live_matched: serde_json::from_str(&row.get::<_, String>(4)?)?,
                        shadow_matched: serde_json::from_str(&row.get::<_, String>(5)?)?,
                        shadow_group: row.get(6)?,
                        at: Timestamp::from_millis(row.get(7)?),
                    })
                },
            )?;
            let mut errors: Vec<ErrorTally> = q::all(
                conn,
                "SELECT policy, COUNT(*) AS n, MAX(at) FROM shadow_errors WHERE version = ?1 AND at >= ?2
                 GROUP BY policy ORDER BY n DESC, policy",
                params![version, since.millis()],
                |row| Ok(ErrorTally {
                    policy: row.get(0)?,
                    count: row.get::<_, i64>(1)?.max(0) as u64,
                    message: String::new(),
                    examples: Vec::new(),
                }),
            )?;
            for tally in &mut errors {
                let latest = q::all(
                    conn,
                    "SELECT proposal_id, message FROM shadow_errors WHERE version = ?1 AND policy = ?2 AND at >= ?3
                     ORDER BY at DESC, proposal_id DESC LIMIT 5",
                    params![version, tally.policy, since.millis()],
                    |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
                )?;
                if let Some((_, message)) = latest.first() {
                    tally.message = message.clone();
                }
                tally.examples = latest.into_iter().map(|(id, _)| id).collect();
            }
            Ok(ShadowSummary {
                evaluated: evaluated.max(0) as u64,
                disagreements: transitions.iter().map(|t| t.2).sum(),
                transitions,
                recent,
                errors,
            })
        })
        .await
    }

    async fn count_since(&self, since: Timestamp) -> Result<u64, StoreError> {
        self.read(move |conn| {
            let n: i64 = conn.query_row(
                "SELECT COUNT(*) FROM proposals WHERE created_at >= ?1",
                params![since.millis()],
                |row| row.get(0),
            )?;
            Ok(n.max(0) as u64)
        })
        .await
    }

    async fn replay_rows(
        &self,
        since: Timestamp,
        after: i64,
        limit: u32,
    ) -> Result<Vec<ReplayRow>, StoreError> {
        self.read(move |conn| q::replay_rows(conn, since, after, limit))
            .await
    }

    async fn policies(&self) -> Result<Vec<PolicyRecord>, StoreError> {
        self.read(|conn| {
            let sql = format!(
                "SELECT {} FROM policies ORDER BY seq DESC",
                q::POLICY_COLUMNS
            );
            q::all(conn, &sql, [], q::policy_row)
        })
        .await
    }

    async fn submit(
        &self,
        new: NewProposal,
        now: Timestamp,
    ) -> Result<Submitted, TxError<SubmitError>> {
        self.write(move |conn| submit(conn, new, now)).await
    }

    async fn proposal(&self, id: &ProposalId) -> Result<Option<ProposalRecord>, StoreError> {
        let id = id.clone();
        self.read(move |conn| q::proposal(conn, id.as_str())).await
    }

    async fn idempotent(
        &self,
        system: &SystemId,
        key: &str,
    ) -> Result<Option<(ProposalRecord, String)>, StoreError> {
        let (system, key) = (system.clone(), key.to_owned());
        self.read(move |conn| {
            let Some((id, fingerprint)) = idempotent(conn, system.as_str(), &key)? else {
                return Ok(None);
            };
            let record = q::proposal(conn, &id)?.ok_or(StoreError::NotFound)?;
            Ok(Some((record, fingerprint)))
        })
        .await
    }

    async fn proposal_groups(&self, id: &ProposalId) -> Result<Vec<String>, StoreError> {
        let id = id.clone();
        self.read(move |conn| {
            let sql = "SELECT grp FROM tasks WHERE proposal_id = ?1
                       UNION SELECT first_group FROM tasks WHERE proposal_id = ?1 ORDER BY 1";
            q::all(conn, sql, params![id.as_str()], |row| row.get(0))
        })
        .await
    }

    async fn proposals(&self, filter: ProposalFilter) -> Result<Paged<ProposalRecord>, StoreError> {
        self.read(move |conn| {
            let mut sql = format!("SELECT {PROPOSAL_COLUMNS} FROM proposals WHERE seq < ?1");
            let mut args: Vec<Arg> = vec![filter.before_seq.unwrap_or(i64::MAX).to_arg()];
            if let Some(system) = &filter.system {
                args.push(system.as_str().to_arg());
                sql.push_str(&format!(" AND system = ?{}", args.len()));
            }
            if let Some(status) = filter.status {
                args.push(status.as_str().to_arg());
                sql.push_str(&format!(" AND status = ?{}", args.len()));
            }
            if let Some(action) = &filter.action {
                args.push(action.to_arg());
                sql.push_str(&format!(" AND action = ?{}", args.len()));
            }
            if let Some(groups) = &filter.groups {
                // A reviewer's proposals: those a task of one of their
                // groups was ever on (its first group or its current one).
                let mut places = Vec::with_capacity(groups.len());
                for group in groups {
                    args.push(group.to_arg());
                    places.push(format!("?{}", args.len()));
                }
                if places.is_empty() {
                    sql.push_str(" AND 1 = 0");
                } else {
                    let places = places.join(", ");
                    sql.push_str(&format!(
                        " AND EXISTS (SELECT 1 FROM tasks t WHERE t.proposal_id = proposals.id \
                         AND (t.grp IN ({places}) OR t.first_group IN ({places})))"
                    ));
                }
            }
            args.push(i64::from(filter.limit).saturating_add(1).to_arg());
            sql.push_str(&format!(
                " ORDER BY seq DESC LIMIT CAST(?{} AS BIGINT)",
                args.len()
            ));
            let mut items = q::all(conn, &sql, args, q::proposal_row)?;
            let next = page_cursor(&mut items, filter.limit, |it| it.seq);
            for item in &mut items {
                item.decisions = q::decisions(conn, item.id.as_str())?;
            }
            Ok(Paged { items, next })
        })
        .await
    }

    async fn cancel(
        &self,
        id: &ProposalId,
        actor: &str,
        now: Timestamp,
    ) -> Result<ProposalRecord, TxError<ReviewError>> {
        let (id, actor) = (id.clone(), actor.to_owned());
        self.write(move |conn| {
            let proposal = q::proposal(conn, id.as_str())?.ok_or(StoreError::NotFound)?;
            let sql = format!(
                "SELECT {TASK_COLUMNS} FROM tasks t JOIN proposals p ON p.id = t.proposal_id
                 WHERE t.proposal_id = ?1 AND t.state IN ('open', 'claimed') ORDER BY t.seq"
            );
            let tasks: Vec<Task> = q::all(conn, &sql, params![id.as_str()], q::task_row)?
                .into_iter()
                .map(|record| record.task)
                .collect();
            let (state, _, _) = q::review_parts(proposal);
            let (after, ended) = review::cancel(&state, &tasks, now).map_err(TxError::Refused)?;
            let tracked = Tracked::before(conn, id.as_str())?;
            conn.execute(
                "UPDATE proposals SET status = ?2, decided_by = ?3, decided_at = ?4 WHERE id = ?1",
                params![
                    id.as_str(),
                    after.status.as_str(),
                    after.decided_by.map(DecidedBy::as_str),
                    after.decided_at.map(Timestamp::millis)
                ],
            )?;
            for task in &ended {
                q::update_task(conn, task, now)?;
            }
            tracked.apply(conn)?;
            q::append(
                conn,
                now,
                &actor,
                &Event::ProposalCancelled {
                    proposal: id.as_str(),
                },
            )?;
            Ok(q::proposal(conn, id.as_str())?.ok_or(StoreError::NotFound)?)
        })
        .await
    }

    async fn tasks(
        &self,
        filter: TaskFilter,
        now: Timestamp,
    ) -> Result<Paged<TaskRecord>, StoreError> {
        self.read(move |conn| {
            let mut sql = format!("SELECT {TASK_COLUMNS} FROM tasks t JOIN proposals p ON p.id = t.proposal_id WHERE t.seq > ?1");
            let mut args: Vec<Arg> = vec![filter.after_seq.unwrap_or(0).to_arg()];
            match filter.state {
                Some(TaskState::Open) => {
                    args.push(now.millis().to_arg());
                    let n = args.len();
                    sql.push_str(&format!(" AND (t.state = 'open' OR (t.state = 'claimed' AND t.lease_expires_at <= ?{n}))"));
                }
                Some(TaskState::Claimed) => {
                    args.push(now.millis().to_arg());
                    let n = args.len();
                    sql.push_str(&format!(" AND t.state = 'claimed' AND t.lease_expires_at > ?{n}"));
                }
                Some(state) => {
                    args.push(state.as_str().to_arg());
                    sql.push_str(&format!(" AND t.state = ?{}", args.len()));
                }
                None => (),
            }
            if let Some(groups) = &filter.groups {
                if groups.is_empty() {
                    return Ok(Paged { items: Vec::new(), next: None });
                }
                let start = args.len() + 1;
                args.extend(groups.iter().map(ToArg::to_arg));
                let marks: Vec<String> = (start..=args.len()).map(|i| format!("?{i}")).collect();
                sql.push_str(&format!(" AND t.grp IN ({})", marks.join(", ")));
            }
            if let Some(system) = &filter.system {
                args.push(system.as_str().to_arg());
                sql.push_str(&format!(" AND p.system = ?{}", args.len()));
            }
            args.push(i64::from(filter.limit).saturating_add(1).to_arg());
            sql.push_str(&format!(" ORDER BY t.seq LIMIT CAST(?{} AS BIGINT)", args.len()));
            let mut items = q::all(conn, &sql, args, q::task_row)?;
            let next = page_cursor(&mut items, filter.limit, |it| it.seq);
            Ok(Paged { items, next })
        })
        .await
    }

    async fn task(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError> {
        let id = id.clone();
        self.read(move |conn| q::task(conn, id.as_str())).await
    }

    async fn claim(
        &self,
        id: &TaskId,
        reviewer: &ReviewerRef,
        lease: Duration,
        now: Timestamp,
    ) -> Result<TaskRecord, TxError<ReviewError>> {
        let transition = move |task: &Task, who: Reviewer<'_>| review::claim(task, who, now, lease);
        self.move_lease(
            id,
            reviewer,
            now,
            |task| Event::TaskClaimed(task),
            transition,
        )
        .await
    }

    async fn release(
        &self,
        id: &TaskId,
        reviewer: &ReviewerRef,
        now: Timestamp,
    ) -> Result<TaskRecord, TxError<ReviewError>> {
        let transition = move |task: &Task, who: Reviewer<'_>| review::release(task, who, now);
        self.move_lease(
            id,
            reviewer,
            now,
            |task| Event::TaskReleased(task),
            transition,
        )
        .await
    }

    async fn decide(
        &self,
        id: &TaskId,
        reviewer: &ReviewerRef,
        input: DecisionInput,
        now: Timestamp,
    ) -> Result<DecisionOutcome, TxError<ReviewError>> {
        let (id, reviewer) = (id.clone(), reviewer.clone());
        self.write(move |conn| {
            let task = q::task(conn, id.as_str())?.ok_or(StoreError::NotFound)?;
            let proposal =
                q::proposal(conn, task.task.proposal_id.as_str())?.ok_or(StoreError::NotFound)?;
            let case = q::case_of(proposal.clone(), task.task.clone());
            let who = Reviewer {
                name: &reviewer.name,
                groups: &reviewer.groups,
            };
            let decided = review::decide(&case, who, input, now).map_err(TxError::Refused)?;
            let tracked = Tracked::before(conn, proposal.id.as_str())?;
            let actor = format!("user:{}", reviewer.name);
            q::insert_decision(conn, &decided.case.task, &decided.decision)?;
            q::write_case(conn, &decided.case, now)?;
            tracked.apply(conn)?;
            let event = Event::DecisionRecorded {
                task: &decided.case.task,
                decision: &decided.decision,
                seen: &case.proposal.digest,
                salt: &case.parts.salt,
            };
            q::append(conn, now, &actor, &event)?;
            effect_events(conn, now, &actor, &decided.case, decided.effect)?;
            // The answer is built from the transition; reading it back would cost the writer three queries.
            let after = &decided.case;
            let task = TaskRecord {
                task: after.task.clone(),
                digest: after.proposal.digest.clone(),
                approvals: review::count_approvals(&after.decisions, &after.proposal.digest),
                ..task
            };
            let proposal = ProposalRecord {
                status: after.proposal.status,
                digest: after.proposal.digest.clone(),
                output: after.proposal.output.clone(),
                modified: after.proposal.modified,
                overridden: after.proposal.overridden,
                decided_by: after.proposal.decided_by,
                decided_at: after.proposal.decided_at,
                decisions: after.decisions.clone(),
                ..proposal
            };
            Ok(DecisionOutcome {
                task,
                proposal,
                effect: decided.effect,
            })
        })
        .await
    }

    async fn run_timers(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<TimerOutcome>, StoreError> {
        self.write_plain(move |conn| {
            let ids: Vec<String> = conn.query_map(
                "SELECT id FROM tasks WHERE state IN ('open', 'claimed') AND due_at IS NOT NULL AND due_at <= ?1
                 ORDER BY due_at LIMIT CAST(?2 AS BIGINT)",
                params![now.millis(), limit],
                |row| row.get(0),
            )?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                let Some(case) = q::case(conn, &id)? else { continue };
                let Some((next, effect)) = review::expire(&case, now) else { continue };
                let tracked = Tracked::before(conn, next.task.proposal_id.as_str())?;
                q::write_case(conn, &next, now)?;
                tracked.apply(conn)?;
                effect_events(conn, now, "loopgate", &next, effect)?;
                out.push(TimerOutcome { proposal_id: next.task.proposal_id.clone(), status: next.proposal.status, effect });
            }
            Ok(out)
        })
        .await
    }

    async fn queue_depth(&self, now: Timestamp) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(move |conn| {
            conn.query_map(
                "SELECT grp, count(*) FROM tasks
                 WHERE state = 'open' OR (state = 'claimed' AND lease_expires_at <= ?1) GROUP BY grp ORDER BY grp",
                params![now.millis()],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
        })
        .await
    }

    async fn erase(
        &self,
        id: &ProposalId,
        actor: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<ProposalRecord, TxError<EraseError>> {
        let (id, actor, reason) = (id.clone(), actor.to_owned(), reason.to_owned());
        self.write(move |conn| audit::erase(conn, &id, &actor, &reason, now))
            .await
    }

    async fn erase_expired(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<ProposalId>, StoreError> {
        self.write_plain(move |conn| audit::erase_expired(conn, now, limit))
            .await
    }

    async fn sequence(&self, limit: u32) -> Result<Sequenced, StoreError> {
        self.sequence_events(limit).await
    }

    async fn tree_head(&self) -> Result<TreeHead, StoreError> {
        self.read(audit::head).await
    }

    async fn add_checkpoint(&self, checkpoint: CheckpointRecord) -> Result<(), StoreError> {
        self.write_plain(move |conn| audit::add_checkpoint(conn, &checkpoint))
            .await
    }

    async fn latest_checkpoint(&self) -> Result<Option<CheckpointRecord>, StoreError> {
        self.read(audit::latest_checkpoint).await
    }

    async fn checkpoints(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<CheckpointRecord>, StoreError> {
        self.read(move |conn| audit::checkpoints(conn, after, limit))
            .await
    }

    async fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.read(move |conn| audit::entries(conn, start, end))
            .await
    }

    async fn subject_entries(&self, subject: &str) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let subject = subject.to_owned();
        self.read(move |conn| audit::subject_entries(conn, &subject))
            .await
    }

    async fn tile(&self, level: u32, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(move |conn| audit::stored_tile(conn, level, index))
            .await
    }

    async fn inclusion_proofs(
        &self,
        indexes: Vec<u64>,
        size: u64,
    ) -> Result<Vec<Vec<Hash>>, StoreError> {
        let tiles = Arc::clone(&self.inner.tiles);
        self.read(move |conn| audit::inclusion_proofs(conn, &tiles, &indexes, size))
            .await
    }

    async fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, StoreError> {
        let tiles = Arc::clone(&self.inner.tiles);
        self.read(move |conn| audit::consistency_proof(conn, &tiles, from, to))
            .await
    }

    async fn review_facts(&self, filter: AnalyticsFilter) -> Result<Vec<ReviewFact>, StoreError> {
        self.read(move |conn| q::review_facts(conn, &filter)).await
    }

    async fn analytics_totals(&self, query: TotalsQuery) -> Result<Vec<Total>, StoreError> {
        self.read(move |conn| counts::totals(conn, &query)).await
    }

    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {} FROM events e
                 LEFT JOIN proposals p ON p.id = e.subject
                 LEFT JOIN tasks t ON t.proposal_id = e.subject
                 WHERE e.seq > ?1 ORDER BY e.seq LIMIT CAST(?2 AS BIGINT)",
                q::EVENT_COLUMNS
            );
            q::all(conn, &sql, params![after, limit], |row| {
                q::event_row(row, 0)
            })
        })
        .await
    }

    async fn last_event_seq(&self) -> Result<i64, StoreError> {
        self.read(|conn| {
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |row| {
                row.get(0)
            })
        })
        .await
    }

    async fn set_webhook(
        &self,
        webhook: WebhookConfig,
        actor: &str,
        now: Timestamp,
    ) -> Result<WebhookConfig, StoreError> {
        let actor = actor.to_owned();
        self.write_plain(move |conn| webhooks::set(conn, &webhook, &actor, now))
            .await
    }

    async fn remove_webhook(
        &self,
        system: &SystemId,
        actor: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (system, actor) = (system.clone(), actor.to_owned());
        self.write_plain(move |conn| webhooks::remove(conn, system.as_str(), &actor, now))
            .await
    }

    async fn webhook(&self, system: &SystemId) -> Result<Option<WebhookConfig>, StoreError> {
        let system = system.clone();
        self.read(move |conn| webhooks::webhook(conn, system.as_str()))
            .await
    }

    async fn enqueue_deliveries(&self, now: Timestamp, limit: u32) -> Result<u32, StoreError> {
        if !self.read(webhooks::has_work).await? {
            return Ok(0);
        }
        self.write_plain(move |conn| webhooks::enqueue(conn, now, limit))
            .await
    }

    async fn due_deliveries(
        &self,
        now: Timestamp,
        skip: Vec<SystemId>,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        self.read(move |conn| webhooks::due(conn, now, &skip, limit))
            .await
    }

    async fn record_attempts(&self, results: Vec<AttemptResult>) -> Result<(), StoreError> {
        self.write_plain(move |conn| webhooks::record(conn, &results))
            .await
    }

    async fn deliveries(
        &self,
        filter: DeliveryFilter,
    ) -> Result<Paged<DeliveryRecord>, StoreError> {
        self.read(move |conn| webhooks::list(conn, &filter)).await
    }

    async fn delivery(
        &self,
        system: &SystemId,
        id: i64,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        let system = system.clone();
        self.read(move |conn| webhooks::one(conn, system.as_str(), id))
            .await
    }

    async fn redeliver(
        &self,
        system: &SystemId,
        id: i64,
        now: Timestamp,
    ) -> Result<DeliveryRecord, StoreError> {
        let system = system.clone();
        self.write_plain(move |conn| webhooks::redeliver(conn, system.as_str(), id, now))
            .await
    }

    async fn prune_deliveries(&self, before: Timestamp, limit: u32) -> Result<u32, StoreError> {
        self.write_plain(move |conn| webhooks::prune(conn, before, limit))
            .await
    }

    async fn rebuild_analytics(&self) -> Result<(), StoreError> {
        self.write_plain(counts::rebuild).await
    }

    async fn disagreements(
        &self,
        filter: AnalyticsFilter,
        limit: u32,
    ) -> Result<Vec<ProposalId>, StoreError> {
        self.read(move |conn| {
            counts::disagreements(conn, &filter, limit)?
                .iter()
                .map(|id| q::parse(id, ProposalId::parse))
                .collect()
        })
        .await
    }

    async fn attribute_keys(&self, system: &SystemId) -> Result<Vec<String>, StoreError> {
        let system = system.clone();
        self.read(move |conn| {
            let sql = match conn.dialect() {
                Dialect::Sqlite => {
                    "SELECT DISTINCT a.key FROM
                       (SELECT subject FROM proposals WHERE system = ?1 ORDER BY seq DESC LIMIT 1000) p,
                       json_each(p.subject, '$.attributes') a
                     ORDER BY a.key"
                }
                Dialect::Postgres => {
                    "SELECT DISTINCT a.key FROM
                       (SELECT CAST(subject AS json) -> 'attributes' AS attributes
                        FROM proposals WHERE system = ?1 ORDER BY seq DESC LIMIT 1000) p,
                       json_each(CASE json_typeof(p.attributes) WHEN 'object' THEN p.attributes ELSE '{}' END) a
                     ORDER BY a.key"
                }
            };
            conn.query_map(sql, params![system.as_str()], |row| row.get(0))
        })
        .await
    }

    async fn label_rows(
        &self,
        filter: AnalyticsFilter,
        after_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<LabelRow>, StoreError> {
        self.read(move |conn| q::label_rows(conn, &filter, after_seq.unwrap_or(0), limit))
            .await
    }

    fn watch_commits(&self, callback: Box<dyn Fn() + Send + Sync>) {
        SqlStore::watch_commits(self, callback);
    }

    fn leads(&self) -> bool {
        SqlStore::leads(self)
    }

    fn writer_state(&self) -> crate::WriterState {
        SqlStore::writer_state(self)
    }

    #[expect(clippy::panic, reason = "what the test simulates")]
    async fn crash_writer_for_tests(&self) {
        let _: Result<(), StoreError> = self
            .write_plain(|_| panic!("the writer crashes, as a test asked"))
            .await;
        // The thread marks itself stopped just after the job's answer is dropped.
        while SqlStore::writer_state(self) != crate::WriterState::Stopped {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn fail_writes_for_tests(&self, fail: bool) {
        SqlStore::fail_writes_for_tests(self, fail);
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| {
            conn.query_row("SELECT 1", params![], |row| row.get::<_, i64>(0))
                .map(|_| ())
        })
        .await
    }
}

impl SqlStore {
    /// Claim and release: load the task, let core move its lease, write the
    /// task and its event.
    async fn move_lease(
        &self,
        id: &TaskId,
        reviewer: &ReviewerRef,
        now: Timestamp,
        event: impl for<'t> Fn(&'t Task) -> Event<'t> + Send + 'static,
        transition: impl FnOnce(&Task, Reviewer<'_>) -> Result<Task, ReviewError> + Send + 'static,
    ) -> Result<TaskRecord, TxError<ReviewError>> {
        let (id, reviewer) = (id.clone(), reviewer.clone());
        self.write(move |conn| {
            let record = q::task(conn, id.as_str())?.ok_or(StoreError::NotFound)?;
            let who = Reviewer {
                name: &reviewer.name,
                groups: &reviewer.groups,
            };
            let task = transition(&record.task, who).map_err(TxError::Refused)?;
            q::update_task(conn, &task, now)?;
            let actor = format!("user:{}", reviewer.name);
            q::append(conn, now, &actor, &event(&task))?;
            Ok(TaskRecord { task, ..record })
        })
        .await
    }
}

/// The id and fingerprint of the proposal stored under a system's key.
fn idempotent(
    conn: &Connection,
    system: &str,
    key: &str,
) -> Result<Option<(String, String)>, StoreError> {
    q::one(
        conn,
        // Only `proposals_idempotency` can serve this (see its migration).
        "SELECT id, fingerprint FROM proposals WHERE idempotency_key = ?2 AND system || '' = ?1",
        params![system, key],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
}

fn submit(
    conn: &Connection,
    new: NewProposal,
    now: Timestamp,
) -> Result<Submitted, TxError<SubmitError>> {
    if let Some(key) = &new.idempotency_key
        && let Some((id, fingerprint)) = idempotent(conn, new.system.as_str(), key)?
    {
        let record = q::proposal(conn, &id)?.ok_or(StoreError::NotFound)?;
        if fingerprint != new.fingerprint.as_str() {
            return Err(TxError::Refused(SubmitError::IdempotencyConflict {
                key: key.clone(),
                existing: record.id,
            }));
        }
        return Ok(Submitted::Existing(record));
    }
    let Some(system) = q::system(conn, new.system.as_str())? else {
        return Err(TxError::Refused(SubmitError::UnknownSystem(
            new.system.as_str().to_owned(),
        )));
    };
    let state = SystemState {
        oversight: system.oversight,
        status: system.status,
    };
    let caps = proposal::caps(&new.routing, now);
    let used = q::auto_used(conn, caps)?;
    let proposed = Proposed {
        id: &new.id,
        task_id: &new.task_id,
        system: &new.system,
        action: &new.action,
        subject: &new.subject,
        input: &new.input,
        output: &new.output,
        digest: &new.digest,
        salt: &new.salt,
        submitted_by: &new.submitted_by,
    };
    let admission = proposal::admit(&proposed, &new.routing, state, new.sampled, &used, now);
    q::count_auto(conn, &admission.counted)?;
    let routing = &*admission.routing;
    let blind = admission.blind();
    let seq: i64 = conn.query_row(
        "INSERT INTO proposals (id, system, action, idempotency_key, digest, fingerprint, subject, input, output, confidence, explanation,
             model, context, status, route, policy_version, matched_policies, overridden, modified, blind, decided_by,
             decided_at, submitted_by, created_at, salt, ai_output, policy_errors)
         VALUES (?1, ?2, ?3, ?4, ?5, ?22, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, 0, 0, ?21, ?17, ?18, ?19, ?20, ?23, ?8, ?24)
         RETURNING seq",
        params![
        new.id.as_str(),
        new.system.as_str(),
        new.action,
        new.idempotency_key,
        new.digest.as_str(),
        to_json(&new.subject),
        to_json(&new.input),
        to_json(&new.output),
        new.confidence,
        new.explanation.as_ref().map(to_json),
        new.model.as_ref().map(to_json),
        to_json(&new.context),
        admission.status.as_str(),
        routing.route.as_str(),
        routing.policy_version,
        to_json(&routing.matched),
        admission.decided_by.map(|it| it.as_str()),
        admission.decided_by.map(|_| now.millis()),
        new.submitted_by,
        now.millis(),
        blind,
        new.fingerprint.as_str(),
        new.salt,
        (!routing.errors.is_empty()).then(|| to_json(&routing.errors)),
    ],
        |row| row.get(0),
    )?;
    if let Some(shadow) = &new.shadow {
        q::shadow_outcome(conn, new.id.as_str(), routing, shadow, now)?;
        q::shadow_errors(conn, new.id.as_str(), shadow, now)?;
    }
    if let Some(task) = &admission.task {
        q::insert_task(conn, task, now)?;
    }
    for (actor, event) in admission.events(&proposed) {
        q::append(conn, now, actor, &event)?;
    }
    // The row as inserted; reading it back would cost the writer two queries.
    let record = ProposalRecord {
        seq,
        id: new.id,
        system: new.system,
        action: new.action,
        subject: new.subject,
        input: new.input,
        output: new.output,
        confidence: new.confidence,
        explanation: new.explanation,
        model: new.model,
        context: new.context,
        idempotency_key: new.idempotency_key,
        digest: new.digest,
        status: admission.status,
        route: routing.route,
        policy_version: routing.policy_version.clone(),
        matched_policies: routing.matched.clone(),
        overridden: false,
        modified: false,
        blind,
        decided_by: admission.decided_by,
        decided_at: admission.decided_by.map(|_| now),
        submitted_by: new.submitted_by,
        created_at: now,
        decisions: Vec::new(),
        salt: new.salt,
        erased_at: None,
        policy_errors: routing.errors.clone(),
    };
    Tracked::new(record.id.as_str()).apply(conn)?;
    Ok(Submitted::Created(record))
}

fn effect_events(
    conn: &Connection,
    now: Timestamp,
    actor: &str,
    case: &review::Case,
    effect: Effect,
) -> Result<(), StoreError> {
    let event = match effect {
        Effect::Recorded | Effect::Confirmed => return Ok(()),
        Effect::Escalated => Event::TaskEscalated(&case.task),
        Effect::Expired => Event::TaskExpired(&case.task),
        Effect::Overridden => Event::ProposalOverridden {
            proposal: case.task.proposal_id.as_str(),
            task: case.task.id.as_str(),
        },
        Effect::Resolved => {
            if case.task.state == TaskState::Expired {
                q::append(conn, now, actor, &Event::TaskExpired(&case.task))?;
            }
            debug_assert!(case.proposal.status != ProposalStatus::Pending);
            Event::ProposalResolved {
                proposal: case.task.proposal_id.as_str(),
                outcome: case.proposal.status,
                decided_by: case.proposal.decided_by,
                digest: &case.proposal.digest,
                modified: Some(case.proposal.modified),
            }
        }
    };
    q::append(conn, now, actor, &event)
}

fn insert_user(
    conn: &Connection,
    user: &NewUser,
    actor: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    conn.execute("INSERT INTO users (id, username, roles, groups_, password_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)", params![user.id.as_str(), user.username, q::roles_json(&user.roles), to_json(&user.groups), user.password_hash, now.millis()])?;
    let event = Event::UserCreated {
        user: user.id.as_str(),
        username: &user.username,
        roles: &user.roles,
        groups: &user.groups,
    };
    q::append(conn, now, actor, &event)
}

fn insert_credential(
    conn: &Connection,
    credential: &NewCredential,
    actor: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let (kind, owner) = q::owner_columns(&credential.owner);
    conn.execute(
        "INSERT INTO credentials (id, hash, kind, owner, created_at, name, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            credential.id,
            credential.hash,
            kind,
            owner,
            now.millis(),
            credential.name,
            credential.expires_at.map(Timestamp::millis)
        ],
    )?;
    let event = Event::KeyCreated {
        key: &credential.id,
        owner_kind: kind,
        owner,
        name: &credential.name,
        expires_at: credential.expires_at,
    };
    q::append(conn, now, actor, &event)
}

/// Marks a credential revoked and writes `key.revoked`.
fn revoke(
    conn: &Connection,
    id: &str,
    kind: &str,
    owner: &str,
    actor: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE credentials SET revoked_at = ?2 WHERE id = ?1",
        params![id, now.millis()],
    )?;
    let event = Event::KeyRevoked {
        key: id,
        owner_kind: kind,
        owner,
    };
    q::append(conn, now, actor, &event)
}

/// Trims the look-ahead row of a page and returns the next cursor.
fn page_cursor<T>(items: &mut Vec<T>, limit: u32, seq: impl Fn(&T) -> i64) -> Option<i64> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if items.len() <= limit {
        return None;
    }
    items.truncate(limit);
    items.last().map(seq)
}
