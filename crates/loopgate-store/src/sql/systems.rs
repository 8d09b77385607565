//! Systems, and the credentials (system API keys, personal tokens) that authenticate callers.

use crate::db::{Connection, params};
use loopgate_core::audit::event::Event;
use loopgate_core::{SystemId, Timestamp};

use super::SqlStore;
use super::queries::{self as q, CREDENTIAL_COLUMNS, to_json};
use crate::{
    Authenticated, CredentialOwner, CredentialRecord, NewCredential, NewSystem, Principal,
    StoreError, SystemPatch, SystemRecord,
};

impl SqlStore {
    pub(super) async fn principal(
        &self,
        credential_hash: &str,
    ) -> Result<Option<Authenticated>, StoreError> {
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

    pub(super) async fn touch_credential(
        &self,
        id: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
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

    pub(super) async fn credentials(
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

    pub(super) async fn revoke_credential(
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

    pub(super) async fn create_credential(
        &self,
        credential: NewCredential,
        actor: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let actor = actor.to_owned();
        self.write_plain(move |conn| insert_credential(conn, &credential, &actor, now))
            .await
    }

    pub(super) async fn create_system(
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

    pub(super) async fn systems(&self) -> Result<Vec<SystemRecord>, StoreError> {
        self.read(|conn| {
            let sql = format!("SELECT {} FROM systems ORDER BY id", q::SYSTEM_COLUMNS);
            q::all(conn, &sql, [], q::system_row)
        })
        .await
    }

    pub(super) async fn system(&self, id: &SystemId) -> Result<Option<SystemRecord>, StoreError> {
        let id = id.clone();
        self.read(move |conn| q::system(conn, id.as_str())).await
    }

    pub(super) async fn update_system(
        &self,
        id: &SystemId,
        patch: SystemPatch,
        actor: &str,
        now: Timestamp,
    ) -> Result<SystemRecord, StoreError> {
        let (id, actor) = (id.clone(), actor.to_owned());
        self.write_plain(move |conn| {
            let patch = patch.clone();
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
}

pub(super) fn insert_credential(
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
pub(super) fn revoke(
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
