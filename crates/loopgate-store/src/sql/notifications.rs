//! Notifications to people: the groups' settings, the outbox filled from
//! the event rows behind one cursor (`meta.notify_cursor`, as webhooks),
//! SLA warnings, and decision links (see `0011_notifications.sql`).

use std::collections::HashMap;

use crate::db::{Connection, OptionalExtension, Row, params};
use loopgate_core::audit::event::{Event, LOOPGATE_ACTOR};
use loopgate_core::notify::{self, GroupChannels, Member};
use loopgate_core::{Channel, EventKind, NotifyEvent, ProposalId, TaskId, Timestamp, UserId};

use super::queries::{self as q, TASK_COLUMNS, USER_COLUMNS, to_json};
use crate::{
    DecisionLink, DeliveryState, DueNotification, GroupNotifications, NotificationFilter,
    NotificationRecord, NotificationResult, Paged, StoreError, UserRecord,
};

const ATTEMPTS: q::Attempts = q::Attempts {
    table: "notification_attempts",
    key: "id",
};
const GROUP_COLUMNS: &str = "grp, email, slack_channel, teams_webhook, events, updated_at";
const RECORD_COLUMNS: &str = "id, channel, target, grp, task_id, proposal_id, type, digest_at, state, \
     attempts, next_at, created_at, delivered_at, last_status, last_error";
const DUE_COLUMNS: &str = "n.id, n.seq, n.channel, n.target, n.user_id, n.grp, n.task_id, n.proposal_id, \
     n.type, n.digest_at, n.attempts, n.window_start";

fn group_row(row: &Row) -> Result<GroupNotifications, StoreError> {
    let events: String = row.get(4)?;
    Ok(GroupNotifications {
        group: row.get(0)?,
        channels: GroupChannels {
            email: serde_json::from_str(&row.get::<_, String>(1)?)?,
            slack_channel: row.get(2)?,
            teams_webhook: row.get(3)?,
            events: events
                .split(',')
                .filter(|t| !t.is_empty())
                .map(|t| q::parse(t, NotifyEvent::parse))
                .collect::<Result<_, _>>()?,
        },
        updated_at: Timestamp::from_millis(row.get(5)?),
    })
}

fn record_row(row: &Row) -> Result<NotificationRecord, StoreError> {
    let state = q::parse(&row.get::<_, String>(8)?, DeliveryState::parse)?;
    Ok(NotificationRecord {
        id: row.get(0)?,
        channel: q::parse(&row.get::<_, String>(1)?, Channel::parse)?,
        target: row.get(2)?,
        group: row.get(3)?,
        task: row.get(4)?,
        proposal: row.get(5)?,
        kind: q::parse(&row.get::<_, String>(6)?, EventKind::parse)?,
        digest_at: row.get::<_, Option<i64>>(7)?.map(Timestamp::from_millis),
        state,
        attempts: row.get(9)?,
        next_at: (state == DeliveryState::Pending)
            .then(|| Timestamp::from_millis(row.get(10).unwrap_or(0))),
        created_at: Timestamp::from_millis(row.get(11)?),
        delivered_at: row.get::<_, Option<i64>>(12)?.map(Timestamp::from_millis),
        last_status: row.get(13)?,
        last_error: row.get(14)?,
        history: Vec::new(),
    })
}

fn due_row(row: &Row) -> Result<DueNotification, StoreError> {
    Ok(DueNotification {
        id: row.get(0)?,
        seq: row.get(1)?,
        channel: q::parse(&row.get::<_, String>(2)?, Channel::parse)?,
        target: row.get(3)?,
        user: row
            .get::<_, Option<String>>(4)?
            .map(|id| q::parse(&id, UserId::parse))
            .transpose()?,
        group: row.get(5)?,
        task: q::parse(&row.get::<_, String>(6)?, TaskId::parse)?,
        proposal: q::parse(&row.get::<_, String>(7)?, ProposalId::parse)?,
        kind: q::parse(&row.get::<_, String>(8)?, EventKind::parse)?,
        digest_at: row.get::<_, Option<i64>>(9)?.map(Timestamp::from_millis),
        attempts: row.get(10)?,
        window_start: Timestamp::from_millis(row.get(11)?),
    })
}

pub(super) fn groups(conn: &Connection) -> Result<Vec<GroupNotifications>, StoreError> {
    let sql = format!("SELECT {GROUP_COLUMNS} FROM group_notifications ORDER BY grp");
    q::all(conn, &sql, params![], group_row)
}

fn group(conn: &Connection, name: &str) -> Result<Option<GroupNotifications>, StoreError> {
    let sql = format!("SELECT {GROUP_COLUMNS} FROM group_notifications WHERE grp = ?1");
    q::one(conn, &sql, params![name], group_row)
}

pub(super) fn set_group(
    conn: &Connection,
    settings: &GroupNotifications,
    actor: &str,
    now: Timestamp,
) -> Result<GroupNotifications, StoreError> {
    // Without settings the cursor stands still (see `has_work`): the first
    // ones start from now.
    conn.execute_batch(
        "INSERT INTO meta (key, value)
         SELECT 'notify_cursor', CAST(COALESCE(last.seq, 0) AS TEXT)
         FROM (SELECT MAX(seq) AS seq FROM events) AS last
         WHERE NOT EXISTS (SELECT 1 FROM group_notifications)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?;
    let channels = &settings.channels;
    let names: Vec<&str> = channels.events.iter().map(|e| e.as_str()).collect();
    conn.execute(
        "INSERT INTO group_notifications (grp, email, slack_channel, teams_webhook, events, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (grp) DO UPDATE SET email = ?2, slack_channel = ?3, teams_webhook = ?4, events = ?5,
             updated_at = ?6",
        params![
            settings.group,
            to_json(&channels.email),
            channels.slack_channel,
            channels.teams_webhook,
            format!(",{},", names.join(",")),
            now.millis()
        ],
    )?;
    let event = Event::GroupNotificationsSet {
        group: &settings.group,
        email: &channels.email,
        slack_channel: channels.slack_channel.as_deref(),
        teams_webhook: channels.teams_webhook.as_deref(),
        events: &channels.events,
    };
    q::append(conn, now, actor, &event)?;
    group(conn, &settings.group)?.ok_or(StoreError::NotFound)
}

/// `1 − share` in thousandths: a task warns once `due_at − sla · this/1000`
/// has passed (integers, the same in both dialects).
fn warn_permille(share: f64) -> i64 {
    let share = if share.is_finite() {
        share.clamp(0.0, 1.0)
    } else {
        1.0
    };
    #[expect(clippy::cast_possible_truncation, reason = "0 to 1000")]
    let permille = ((1.0 - share) * 1000.0).round() as i64;
    permille
}

const WARNINGS_DUE: &str = "t.state IN ('open', 'claimed') AND t.due_at IS NOT NULL AND t.sla_ms IS NOT NULL
      AND t.due_at > ?1 AND t.due_at * 1000 - ?2 * t.sla_ms <= ?1 * 1000
      AND t.grp IN (SELECT grp FROM group_notifications)
      AND NOT EXISTS (SELECT 1 FROM task_warnings w WHERE w.task_id = t.id || ':' || CAST(t.level AS TEXT))";

/// Whether any group has settings, and whether events came after the
/// cursor or a task is past its warning point: checked on a reader, so the
/// notifier's wake-ups cost the writer nothing when there is nothing to do.
pub(super) fn has_work(
    conn: &Connection,
    now: Timestamp,
    warn: Option<f64>,
) -> Result<(bool, bool), StoreError> {
    let events = "SELECT EXISTS (SELECT 1 FROM group_notifications),
            COALESCE((SELECT MAX(seq) FROM events), 0)
                > COALESCE((SELECT CAST(value AS BIGINT) FROM meta WHERE key = 'notify_cursor'), 0)";
    let (set, events): (bool, bool) =
        conn.query_row(events, params![], |row| Ok((row.get(0)?, row.get(1)?)))?;
    if !set {
        return Ok((false, false));
    }
    if events {
        return Ok((true, true));
    }
    let Some(share) = warn else {
        return Ok((true, false));
    };
    let sql = format!("SELECT EXISTS (SELECT 1 FROM tasks t WHERE {WARNINGS_DUE})");
    let warnings = conn.query_row(&sql, params![now.millis(), warn_permille(share)], |row| {
        row.get(0)
    })?;
    Ok((true, warnings))
}

/// Logs the SLA warnings that are due, then queues the messages of up to
/// `limit` events after the cursor; returns how many events it passed.
pub(super) fn enqueue(
    conn: &Connection,
    now: Timestamp,
    warn: Option<f64>,
    limit: u32,
) -> Result<u32, StoreError> {
    let due = match warn {
        Some(share) => {
            let sql = format!(
                "SELECT {TASK_COLUMNS} FROM tasks t JOIN proposals p ON p.id = t.proposal_id
                 WHERE {WARNINGS_DUE} ORDER BY t.due_at LIMIT CAST(?3 AS BIGINT)"
            );
            q::all(
                conn,
                &sql,
                params![now.millis(), warn_permille(share), limit],
                q::task_row,
            )?
        }
        None => Vec::new(),
    };
    for record in due {
        let task = &record.task;
        conn.execute(
            "INSERT INTO task_warnings (task_id, at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![format!("{}:{}", task.id.as_str(), task.level), now.millis()],
        )?;
        q::append(conn, now, LOOPGATE_ACTOR, &Event::TaskSlaWarning(task))?;
    }

    let cursor: i64 = q::meta(conn, "notify_cursor")?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // Only the events a group can hear about have their data read.
    let sql = format!(
        "SELECT seq, type, subject, CASE WHEN type IN ({COVERED}) THEN data END
         FROM events WHERE seq > ?1 ORDER BY seq LIMIT CAST(?2 AS BIGINT)"
    );
    let events = q::all(conn, &sql, params![cursor, limit], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, Option<String>>(2)?,
            row.get::<_, Option<String>>(3)?,
        ))
    })?;
    let Some(&(upto, ..)) = events.last() else {
        return Ok(0);
    };
    let mut settings: HashMap<String, Option<GroupChannels>> = HashMap::new();
    let mut users: Option<Vec<UserRecord>> = None;
    for (seq, kind, subject, data) in &events {
        let Some(kind) = EventKind::parse(kind) else {
            continue;
        };
        let Some(proposal) = subject else { continue };
        if let (Some(_), Some(data)) = (notify::covers(kind), data) {
            let data: serde_json::Value = serde_json::from_str(data)?;
            let (Some(task), Some(grp)) = (data["task"].as_str(), data["group"].as_str()) else {
                continue;
            };
            if !settings.contains_key(grp) {
                settings.insert(grp.to_owned(), group(conn, grp)?.map(|g| g.channels));
            }
            let Some(Some(channels)) = settings.get(grp) else {
                continue;
            };
            if users.is_none() {
                let sql = format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE disabled_at IS NULL ORDER BY username"
                );
                users = Some(q::all(conn, &sql, params![], q::user_row)?);
            }
            let members: Vec<Member<'_>> = users
                .iter()
                .flatten()
                .filter(|u| u.groups.iter().any(|g| g == grp))
                .map(|u| Member {
                    user: u.id.as_str(),
                    name: &u.username,
                    away_until: u.away_until,
                    delegate: u.delegate.as_deref(),
                    email: u.email.as_deref(),
                    slack_user_id: u.slack_user_id.as_deref(),
                    prefs: u.notify,
                })
                .collect();
            let audience = notify::audience(&members, data["assignee"].as_str(), now);
            for to in notify::recipients(kind, channels, &audience, now) {
                let ord = match to.channel {
                    Channel::Slack => format!("slack:{task}"),
                    _ => format!("{}:{}:{seq}", to.channel, to.target),
                };
                let next_at = to.digest_at.unwrap_or(now);
                conn.execute(
                    "INSERT INTO notifications (seq, channel, target, user_id, grp, task_id, proposal_id, type, ord,
                         digest_at, state, next_at, window_start, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'pending', ?11, ?11, ?12)
                     ON CONFLICT DO NOTHING",
                    params![
                        seq,
                        to.channel.as_str(),
                        to.target,
                        to.user,
                        grp,
                        task,
                        proposal,
                        kind.as_str(),
                        ord,
                        to.digest_at.map(Timestamp::millis),
                        next_at.millis(),
                        now.millis()
                    ],
                )?;
            }
        }
        if rewrites_slack(kind) {
            // Every task of the proposal with a Slack message gets its
            // messages rewritten, after the messages themselves (same key).
            conn.execute(
                "INSERT INTO notifications (seq, channel, target, user_id, grp, task_id, proposal_id, type, ord,
                     state, next_at, window_start, created_at)
                 SELECT ?1, 'slack_update', 'update:' || task_id, NULL, MIN(grp), task_id, proposal_id, ?3,
                     'slack:' || task_id, 'pending', ?4, ?4, ?4
                 FROM notifications WHERE proposal_id = ?2 AND channel = 'slack'
                 GROUP BY task_id, proposal_id
                 ON CONFLICT DO NOTHING",
                params![seq, proposal, kind.as_str(), now.millis()],
            )?;
        }
    }
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('notify_cursor', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![upto.to_string()],
    )?;
    Ok(u32::try_from(events.len()).unwrap_or(u32::MAX))
}

/// The event types `notify::covers`, as an SQL list (a test keeps the two
/// the same).
const COVERED: &str = "'task.assigned', 'task.created', 'task.escalated', 'task.expired', 'task.returned', 'task.sla_warning'";

/// Whether an event changes what a task's Slack messages should say.
fn rewrites_slack(kind: EventKind) -> bool {
    use EventKind as K;
    match kind {
        // (`proposal.resolved` comes with a decision, a deadline or a
        // cancellation, each of which rewrites already.)
        K::DecisionRecorded
        | K::CommentAdded
        | K::ProposalCancelled
        | K::ProposalOverridden
        | K::TaskEscalated
        | K::TaskExpired => true,
        K::SystemCreated
        | K::SystemUpdated
        | K::SystemPaused
        | K::SystemResumed
        | K::WebhookSet
        | K::WebhookRemoved
        | K::UserCreated
        | K::UserUpdated
        | K::UserPasswordSet
        | K::UserDisabled
        | K::UserEnabled
        | K::UserBreakGlassLogin
        | K::UserAwaySet
        | K::KeyCreated
        | K::KeyRevoked
        | K::PolicyPublished
        | K::PolicyActivated
        | K::PolicyShadowStarted
        | K::PolicyShadowStopped
        | K::ProposalSubmitted
        | K::ProposalResolved
        | K::ProposalRouted
        | K::ProposalErased
        | K::TaskCreated
        | K::TaskClaimed
        | K::TaskReleased
        | K::TaskSlaWarning
        | K::TaskAssigned
        | K::TaskReturned
        | K::GrantCreated
        | K::GrantUsed
        | K::GrantRevoked
        | K::GrantExpired
        | K::GroupNotificationsSet
        | K::GroupUpdated => false,
    }
}

pub(super) fn due(
    conn: &Connection,
    now: Timestamp,
    skip: &[Channel],
    limit: u32,
) -> Result<Vec<DueNotification>, StoreError> {
    let skip: Vec<&str> = skip.iter().map(|c| c.as_str()).collect();
    let sql = format!(
        "SELECT {DUE_COLUMNS} FROM notifications n
         WHERE n.state = 'pending' AND n.next_at <= ?1
           AND n.channel NOT IN (SELECT value FROM json_each(?2))
           AND NOT EXISTS (SELECT 1 FROM notifications b
                           WHERE b.ord = n.ord AND b.state = 'pending' AND b.id < n.id)
         ORDER BY n.next_at, n.id LIMIT CAST(?3 AS BIGINT)"
    );
    q::all(
        conn,
        &sql,
        params![now.millis(), q::to_json(&skip), limit],
        due_row,
    )
}

pub(super) fn record(conn: &Connection, results: &[NotificationResult]) -> Result<(), StoreError> {
    for NotificationResult { attempt, reference } in results {
        let n: Option<i64> = conn
            .query_row(
                "UPDATE notifications SET attempts = attempts + 1, state = ?2, next_at = ?3, last_status = ?4,
                     last_error = ?5, delivered_at = CASE WHEN ?2 = 'delivered' THEN ?6 ELSE delivered_at END,
                     ref = COALESCE(CAST(?7 AS TEXT), ref)
                 WHERE id = ?1 RETURNING attempts",
                params![
                    attempt.id,
                    attempt.state.as_str(),
                    attempt.next_at.millis(),
                    attempt.status,
                    attempt.error,
                    attempt.time.millis() + i64::from(attempt.duration_ms),
                    reference
                ],
                |row| row.get(0),
            )
            .optional()?;
        if let Some(n) = n {
            ATTEMPTS.insert(conn, attempt.id, n, attempt)?;
        }
    }
    Ok(())
}

pub(super) fn list(
    conn: &Connection,
    filter: &NotificationFilter,
) -> Result<Paged<NotificationRecord>, StoreError> {
    let sql = format!(
        "SELECT {RECORD_COLUMNS} FROM notifications
         WHERE (CAST(?1 AS TEXT) IS NULL OR task_id = ?1) AND (CAST(?2 AS TEXT) IS NULL OR grp = ?2)
           AND (CAST(?3 AS TEXT) IS NULL OR state = ?3) AND (CAST(?4 AS BIGINT) IS NULL OR id < ?4)
         ORDER BY id DESC LIMIT CAST(?5 AS BIGINT)"
    );
    let items = q::all(
        conn,
        &sql,
        params![
            filter.task,
            filter.group,
            filter.state.map(DeliveryState::as_str),
            filter.before,
            filter.limit.saturating_add(1)
        ],
        record_row,
    )?;
    Ok(q::newest_first(items, filter.limit, |d| d.id))
}

pub(super) fn one(conn: &Connection, id: i64) -> Result<Option<NotificationRecord>, StoreError> {
    let sql = format!("SELECT {RECORD_COLUMNS} FROM notifications WHERE id = ?1");
    let Some(mut record) = q::one(conn, &sql, params![id], record_row)? else {
        return Ok(None);
    };
    record.history = ATTEMPTS.history(conn, id)?;
    Ok(Some(record))
}

pub(super) fn slack_messages(conn: &Connection, task: &str) -> Result<Vec<String>, StoreError> {
    q::all(
        conn,
        "SELECT ref FROM notifications WHERE task_id = ?1 AND channel = 'slack' AND ref IS NOT NULL ORDER BY id",
        params![task],
        |row| row.get(0),
    )
}

pub(super) fn prune(conn: &Connection, before: Timestamp, limit: u32) -> Result<u32, StoreError> {
    let old = "SELECT id FROM notifications
               WHERE state != 'pending' AND created_at < ?1 ORDER BY id LIMIT CAST(?2 AS BIGINT)";
    conn.execute(
        &format!("DELETE FROM notification_attempts WHERE id IN ({old})"),
        params![before.millis(), limit],
    )?;
    let deleted = conn.execute(
        &format!("DELETE FROM notifications WHERE id IN ({old})"),
        params![before.millis(), limit],
    )?;
    conn.execute(
        "DELETE FROM decision_links WHERE expires_at < ?1",
        params![before.millis()],
    )?;
    Ok(u32::try_from(deleted).unwrap_or(u32::MAX))
}

pub(super) fn create_link(conn: &Connection, link: &DecisionLink) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO decision_links (hash, user_id, task_id, digest, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            link.hash,
            link.user.as_str(),
            link.task.as_str(),
            link.digest.as_str(),
            link.created_at.millis(),
            link.expires_at.millis()
        ],
    )?;
    Ok(())
}

pub(super) fn link(conn: &Connection, hash: &str) -> Result<Option<DecisionLink>, StoreError> {
    q::one(
        conn,
        "SELECT hash, user_id, task_id, digest, created_at, expires_at, used_at FROM decision_links WHERE hash = ?1",
        params![hash],
        |row| {
            Ok(DecisionLink {
                hash: row.get(0)?,
                user: q::parse(&row.get::<_, String>(1)?, UserId::parse)?,
                task: q::parse(&row.get::<_, String>(2)?, TaskId::parse)?,
                digest: q::parse(&row.get::<_, String>(3)?, loopgate_core::Digest::parse)?,
                created_at: Timestamp::from_millis(row.get(4)?),
                expires_at: Timestamp::from_millis(row.get(5)?),
                used_at: row.get::<_, Option<i64>>(6)?.map(Timestamp::from_millis),
            })
        },
    )
}

pub(super) fn use_link(conn: &Connection, hash: &str, now: Timestamp) -> Result<bool, StoreError> {
    let changed = conn.execute(
        "UPDATE decision_links SET used_at = ?2 WHERE hash = ?1 AND used_at IS NULL",
        params![hash, now.millis()],
    )?;
    Ok(changed == 1)
}

pub(super) fn user_for_slack(
    conn: &Connection,
    slack_user_id: &str,
    email: Option<&str>,
) -> Result<Option<UserRecord>, StoreError> {
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users WHERE slack_user_id = ?1 AND disabled_at IS NULL"
    );
    if let Some(user) = q::one(conn, &sql, params![slack_user_id], q::user_row)? {
        return Ok(Some(user));
    }
    let Some(email) = email else {
        return Ok(None);
    };
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users WHERE lower(email) = lower(?1) AND disabled_at IS NULL LIMIT 2"
    );
    let mut found = q::all(conn, &sql, params![email], q::user_row)?;
    Ok(match found.len() {
        1 => found.pop(),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sql_list_is_what_notify_covers() {
        let covered: Vec<String> = EventKind::ALL
            .iter()
            .filter(|kind| notify::covers(**kind).is_some())
            .map(|kind| format!("'{kind}'"))
            .collect();
        let mut sorted = covered.clone();
        sorted.sort();
        assert_eq!(COVERED, sorted.join(", "));
    }
}
