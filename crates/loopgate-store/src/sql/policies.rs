//! Policy versions, their activations, shadow evaluation and replay's history.

use crate::db::{Connection, params};
use loopgate_core::Timestamp;
use loopgate_core::audit::event::Event;

use super::SqlStore;
use super::queries::{self as q, to_json};
use crate::{
    Activation, ActivationMode, Disagreement, ErrorTally, NewPolicy, PolicyRecord, PolicyState,
    ReplayRow, ShadowSummary, StoreError,
};

impl SqlStore {
    pub(super) async fn publish_policy(
        &self,
        policy: NewPolicy,
        mode: ActivationMode,
        actor: &str,
        now: Timestamp,
    ) -> Result<PolicyRecord, StoreError> {
        let actor = actor.to_owned();
        self.write_plain(move |conn| {
            // A text is stored once (`policies_version` is unique): a publish
            // of a stored text activates the stored version. Looking first
            // spares PostgreSQL's sequence a number for each such publish.
            let record = match q::policy(conn, &policy.version)? {
                Some(record) => record,
                None => match insert_policy(conn, &policy, &actor, now)? {
                    Some(record) => record,
                    // A parallel writer stored it meanwhile: the insert
                    // waited for that writer's commit, which is now seen.
                    None => q::policy(conn, &policy.version)?.ok_or_else(|| {
                        StoreError::Other(format!(
                            "policy version {} is stored, but could not be read",
                            policy.version
                        ))
                    })?,
                },
            };
            q::activate(
                conn,
                &record.version,
                mode,
                &policy.description,
                &actor,
                now,
            )?;
            Ok(record)
        })
        .await
    }

    pub(super) async fn activate_policy(
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

    pub(super) async fn policy(&self, version: &str) -> Result<Option<PolicyRecord>, StoreError> {
        let version = version.to_owned();
        self.read(move |conn| q::policy(conn, &version)).await
    }

    pub(super) async fn policy_state(&self) -> Result<PolicyState, StoreError> {
        self.read(q::policy_state).await
    }

    pub(super) async fn activations(&self) -> Result<Vec<Activation>, StoreError> {
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

    pub(super) async fn shadow_summary(
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

    pub(super) async fn count_since(&self, since: Timestamp) -> Result<u64, StoreError> {
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

    pub(super) async fn replay_rows(
        &self,
        since: Timestamp,
        after: i64,
        limit: u32,
    ) -> Result<Vec<ReplayRow>, StoreError> {
        self.read(move |conn| q::replay_rows(conn, since, after, limit))
            .await
    }

    pub(super) async fn policies(&self) -> Result<Vec<PolicyRecord>, StoreError> {
        self.read(|conn| {
            let sql = format!(
                "SELECT {} FROM policies ORDER BY seq DESC",
                q::POLICY_COLUMNS
            );
            q::all(conn, &sql, [], q::policy_row)
        })
        .await
    }
}

/// Stores a new policy version and its audit event; `None` when the text
/// is stored already.
fn insert_policy(
    conn: &Connection,
    policy: &NewPolicy,
    actor: &str,
    now: Timestamp,
) -> Result<Option<PolicyRecord>, StoreError> {
    let seq: Option<i64> = q::one(
        conn,
        "INSERT INTO policies (version, text, description, policy_ids, created_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (version) DO NOTHING RETURNING seq",
        params![policy.version, policy.text, policy.description, to_json(&policy.policy_ids), actor, now.millis()],
        |row| row.get(0),
    )?;
    let Some(seq) = seq else { return Ok(None) };
    let event = Event::PolicyPublished {
        version: &policy.version,
        seq,
        policies: policy.policy_ids.len(),
    };
    q::append(conn, now, actor, &event)?;
    Ok(Some(PolicyRecord {
        seq,
        version: policy.version.clone(),
        text: policy.text.clone(),
        description: policy.description.clone(),
        policy_ids: policy.policy_ids.clone(),
        created_by: actor.to_owned(),
        created_at: now,
    }))
}
