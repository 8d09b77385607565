//! Standing grants: made when a decision's quorum agreed to one, consulted
//! by admission, used up, revoked, and ended by the timer worker; each
//! change with its `grant.*` event in the same transaction.

use std::time::Duration;

use loopgate_core::audit::event::Event;
use loopgate_core::grant::{self, Grant, GrantState, GrantTerms};
use loopgate_core::{Digest, GrantId, GrantScope, ProposalId, Timestamp};
use serde_json::json;

use super::SqlStore;
use super::queries::{self as q, to_json};
use crate::db::{Arg, Connection, Params, Row, ToArg, params};
use crate::{GrantError, GrantFilter, StoreError, TxError};

const GRANT_COLUMNS: &str = "id, system, action, subject_digest, scope, output_digest, policies, policy_version, \
     grp, granted_by, proposal_id, used, max_uses, created_at, expires_at, revoked_at, revoked_by";

/// Most live grants of one subject that admission reads.
const MAX_CANDIDATES: u32 = 100;

fn grant_row(row: &Row) -> Result<Grant, StoreError> {
    let revoked = match (
        row.get::<_, Option<i64>>(15)?,
        row.get::<_, Option<String>>(16)?,
    ) {
        (Some(at), by) => Some((Timestamp::from_millis(at), by.unwrap_or_default())),
        (None, _) => None,
    };
    Ok(Grant {
        id: q::parse(&row.get::<_, String>(0)?, GrantId::parse)?,
        system: row.get(1)?,
        action: row.get(2)?,
        subject_digest: q::parse(&row.get::<_, String>(3)?, Digest::parse)?,
        scope: q::parse(&row.get::<_, String>(4)?, GrantScope::parse)?,
        output_digest: match row.get::<_, Option<String>>(5)? {
            Some(text) => Some(q::parse(&text, Digest::parse)?),
            None => None,
        },
        policies: serde_json::from_str(&row.get::<_, String>(6)?)?,
        policy_version: row.get(7)?,
        group: row.get(8)?,
        granted_by: serde_json::from_str(&row.get::<_, String>(9)?)?,
        proposal: q::parse(&row.get::<_, String>(10)?, ProposalId::parse)?,
        used: u32::try_from(row.get::<_, i64>(11)?).unwrap_or(u32::MAX),
        max_uses: row
            .get::<_, Option<i64>>(12)?
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        created_at: Timestamp::from_millis(row.get(13)?),
        expires_at: Timestamp::from_millis(row.get(14)?),
        revoked,
    })
}

/// An approver's terms as stored with the decision.
pub(super) fn terms_to_json(terms: &GrantTerms) -> String {
    let millis = u64::try_from(terms.duration.as_millis()).unwrap_or(u64::MAX);
    to_json(&json!({"for_ms": millis, "uses": terms.uses, "scope": terms.scope.as_str()}))
}

/// Reads [`terms_to_json`] back.
pub(super) fn terms_from_json(text: &str) -> Result<GrantTerms, StoreError> {
    let value: serde_json::Value = serde_json::from_str(text)?;
    let bad = || StoreError::Other(format!("unexpected stored grant terms `{text}`"));
    Ok(GrantTerms {
        duration: Duration::from_millis(value["for_ms"].as_u64().ok_or_else(bad)?),
        uses: match value["uses"].as_u64() {
            Some(n) => Some(u32::try_from(n).map_err(|_| bad())?),
            None => None,
        },
        scope: value["scope"]
            .as_str()
            .and_then(GrantScope::parse)
            .ok_or_else(bad)?,
    })
}

/// The deployment's grant key: a random secret kept in `meta`, made when
/// the store opens ([`ensure_key`]). It never changes once committed, so a
/// store keeps the key it read.
#[derive(Default)]
pub(super) struct GrantKey(std::sync::OnceLock<Vec<u8>>);

impl GrantKey {
    pub(super) fn get(&self, conn: &Connection) -> Result<Vec<u8>, StoreError> {
        if let Some(key) = self.0.get() {
            return Ok(key.clone());
        }
        if let Some(hex) = q::meta(conn, "grant_secret")? {
            return Ok(self.0.get_or_init(|| hex.into_bytes()).clone());
        }
        // Not kept: this job's transaction may still roll back.
        make_key(conn)?;
        q::meta(conn, "grant_secret")?
            .map(String::into_bytes)
            .ok_or(StoreError::NotFound)
    }
}

/// Makes the grant key unless there is one (a database copied in keeps
/// the source's: see `admin::copy_locked`; two replicas starting together
/// keep the first), and reads it, when the store opens.
pub(super) fn ensure_key(conn: &Connection) -> Result<GrantKey, StoreError> {
    let keys = GrantKey::default();
    if q::meta(conn, "grant_secret")?.is_none() {
        make_key(conn)?;
    }
    keys.get(conn)?;
    Ok(keys)
}

fn make_key(conn: &Connection) -> Result<(), StoreError> {
    let mut secret = [0_u8; 32];
    getrandom::fill(&mut secret)
        .map_err(|error| StoreError::Other(format!("no random grant key: {error}")))?;
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('grant_secret', ?1) ON CONFLICT DO NOTHING",
        params![hex],
    )?;
    Ok(())
}

/// The statement of the grants admission may use (see [`candidates`]): the
/// live grants of a subject digest at a time, oldest first, locked.
pub(super) fn candidates_sql() -> String {
    format!(
        "SELECT {GRANT_COLUMNS} FROM grants
         WHERE subject_digest = ?1 AND revoked_at IS NULL AND NOT ended AND expires_at > ?2
           AND (max_uses IS NULL OR used < max_uses)
         ORDER BY seq LIMIT CAST(?3 AS BIGINT) /*pg FOR UPDATE*/"
    )
}

/// The arguments of [`candidates_sql`] for `request` at `now`.
pub(super) fn candidates_args(
    request: &grant::Request<'_>,
    key: &[u8],
    now: Timestamp,
) -> Vec<Arg> {
    let subject = grant::digest(request, None, key);
    params![subject.as_str(), now.millis(), MAX_CANDIDATES].into_args()
}

/// The grants of [`candidates_sql`]'s rows.
pub(super) fn candidates(rows: &[Row]) -> Result<Vec<Grant>, StoreError> {
    rows.iter().map(grant_row).collect()
}

/// Counts a use of `grant` (which holds the count after it) and logs it.
pub(super) fn count_use(conn: &Connection, grant: &Grant) -> Result<(), StoreError> {
    conn.execute_later(
        "UPDATE grants SET used = ?2 WHERE id = ?1",
        params![grant.id.as_str(), i64::from(grant.used)],
    )?;
    Ok(())
}

/// Writes a new grant and its `grant.created`.
pub(super) fn insert(
    conn: &Connection,
    grant: &Grant,
    actor: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    conn.execute_later(
        "INSERT INTO grants (id, system, action, subject_digest, scope, output_digest, policies, policy_version,
             grp, granted_by, proposal_id, used, max_uses, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        params![
            grant.id.as_str(),
            grant.system,
            grant.action,
            grant.subject_digest.as_str(),
            grant.scope.as_str(),
            grant.output_digest.as_ref().map(Digest::as_str),
            to_json(&grant.policies),
            grant.policy_version,
            grant.group,
            to_json(&grant.granted_by),
            grant.proposal.as_str(),
            i64::from(grant.used),
            grant.max_uses.map(i64::from),
            grant.created_at.millis(),
            grant.expires_at.millis(),
        ],
    )?;
    q::append(conn, now, actor, &Event::GrantCreated(grant))
}

/// Ends the grants whose time ran out by `now` (at most `limit`), logging
/// `grant.expired` for each once. Returns how many ended.
pub(super) fn end_expired(
    conn: &Connection,
    now: Timestamp,
    limit: u32,
) -> Result<usize, StoreError> {
    let sql = format!(
        "SELECT {GRANT_COLUMNS} FROM grants
         WHERE revoked_at IS NULL AND NOT ended AND expires_at <= ?1
         ORDER BY expires_at LIMIT CAST(?2 AS BIGINT) /*pg FOR UPDATE SKIP LOCKED*/"
    );
    let ended = q::all(conn, &sql, params![now.millis(), limit], grant_row)?;
    for grant in &ended {
        conn.execute_later(
            "UPDATE grants SET ended = ?2 WHERE id = ?1",
            params![grant.id.as_str(), true],
        )?;
        q::append(conn, now, "loopgate", &Event::GrantExpired(grant))?;
    }
    Ok(ended.len())
}

impl SqlStore {
    pub(super) async fn grants(&self, filter: GrantFilter) -> Result<Vec<Grant>, StoreError> {
        self.read(move |conn| {
            let mut sql = format!("SELECT {GRANT_COLUMNS} FROM grants WHERE 1 = 1");
            let mut args: Vec<Arg> = Vec::new();
            if let Some(system) = &filter.system {
                args.push(system.as_str().to_arg());
                sql.push_str(&format!(" AND system = ?{}", args.len()));
            }
            if let Some(groups) = &filter.groups {
                if groups.is_empty() {
                    return Ok(Vec::new());
                }
                let start = args.len() + 1;
                args.extend(groups.iter().map(ToArg::to_arg));
                let marks: Vec<String> = (start..=args.len()).map(|i| format!("?{i}")).collect();
                sql.push_str(&format!(" AND grp IN ({})", marks.join(", ")));
            }
            if let Some(now) = filter.live_at {
                args.push(now.millis().to_arg());
                sql.push_str(&format!(
                    " AND revoked_at IS NULL AND NOT ended AND expires_at > ?{} AND (max_uses IS NULL OR used < max_uses)",
                    args.len()
                ));
            }
            args.push(filter.limit.to_arg());
            sql.push_str(&format!(
                " ORDER BY seq DESC LIMIT CAST(?{} AS BIGINT)",
                args.len()
            ));
            q::all(conn, &sql, args, grant_row)
        })
        .await
    }

    pub(super) async fn grant(&self, id: &GrantId) -> Result<Option<Grant>, StoreError> {
        let id = id.clone();
        self.read(move |conn| {
            let sql = format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = ?1");
            q::one(conn, &sql, params![id.as_str()], grant_row)
        })
        .await
    }

    pub(super) async fn revoke_grant(
        &self,
        id: &GrantId,
        actor: &str,
        now: Timestamp,
    ) -> Result<Grant, TxError<GrantError>> {
        let (id, actor) = (id.clone(), actor.to_owned());
        self.write(move |conn| {
            let sql = format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = ?1 /*pg FOR UPDATE*/");
            let mut grant =
                q::one(conn, &sql, params![id.as_str()], grant_row)?.ok_or(StoreError::NotFound)?;
            let state = grant.state(now);
            if matches!(state, GrantState::Revoked | GrantState::Expired) {
                return Err(TxError::Refused(GrantError::Ended {
                    id: grant.id.to_string(),
                    state: state.as_str(),
                }));
            }
            conn.execute(
                "UPDATE grants SET revoked_at = ?2, revoked_by = ?3 WHERE id = ?1",
                params![grant.id.as_str(), now.millis(), actor],
            )?;
            grant.revoked = Some((now, actor.clone()));
            q::append(conn, now, &actor, &Event::GrantRevoked(&grant))?;
            Ok(grant)
        })
        .await
    }
}

/// The grant that the decision's approvers agreed to, made from the
/// approved proposal.
pub(super) fn made(
    conn: &Connection,
    keys: &GrantKey,
    agreed: grant::Agreed,
    origin: &crate::ProposalRecord,
    group: &str,
    now: Timestamp,
) -> Result<Grant, StoreError> {
    let id = GrantId::from_unique(&ulid::Ulid::new().to_string());
    let key = keys.get(conn)?;
    let request = grant::Request {
        system: origin.system.as_str(),
        action: &origin.action,
        subject: &origin.subject,
        output: &origin.output,
    };
    let grant = Grant::new(
        grant::Origin {
            id: &id,
            key: &key,
            proposal: &origin.id,
            request,
            policies: &origin.matched_policies,
            policy_version: &origin.policy_version,
            group,
            granted_by: agreed.granted_by,
        },
        agreed.terms,
        now,
    );
    Ok(grant)
}
