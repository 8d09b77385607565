//! Assignment in the writer's transaction: a group's settings, the member
//! a task goes to (core's [`assign::pick`] over the members and their
//! loads), and tasks returned to the pool when not opened in time.

use std::time::Duration;

use crate::db::{Arg, Connection, Row, ToArg, params};
use loopgate_core::assign::{self, Candidate, GroupSettings};
use loopgate_core::audit::event::{Event, LOOPGATE_ACTOR};
use loopgate_core::review::{self, Case, Effect, Task};
use loopgate_core::{Assignment, Role, Timestamp};

use super::SqlStore;
use super::queries::{self as q, USER_COLUMNS};
use crate::{GroupRecord, StoreError, UserRecord};

fn settings_row(row: &Row) -> Result<(GroupSettings, Option<String>), StoreError> {
    let settings = GroupSettings {
        assignment: q::parse(&row.get::<_, String>(0)?, Assignment::parse)?,
        return_after: Duration::from_millis(u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0)),
    };
    Ok((settings, row.get(2)?))
}

/// A group's settings and whose turn came last (`None`: the group pools).
fn settings(
    conn: &Connection,
    group: &str,
) -> Result<Option<(GroupSettings, Option<String>)>, StoreError> {
    q::one(
        conn,
        "SELECT assignment, return_after_ms, last_turn FROM group_settings WHERE grp = ?1",
        params![group],
        settings_row,
    )
}

/// Whether `user` is a member of `group` who may be given its tasks:
/// enabled, in the group, a reviewer (or an admin).
fn may_review(user: &UserRecord, group: &str) -> bool {
    user.disabled_at.is_none()
        && user.groups.iter().any(|g| g == group)
        && user
            .roles
            .iter()
            .any(|r| matches!(r, Role::Reviewer | Role::Admin))
}

/// The members of `group` who may be given its tasks, by username.
fn members(conn: &Connection, group: &str) -> Result<Vec<UserRecord>, StoreError> {
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users WHERE disabled_at IS NULL AND groups_ LIKE ?1 ORDER BY username"
    );
    // `LIKE` narrows (group names may hold `_`); the exact test follows.
    let users = q::all(conn, &sql, params![format!("%\"{group}\"%")], q::user_row)?;
    Ok(users.into_iter().filter(|u| may_review(u, group)).collect())
}

/// Open tasks of each of `names` (in every group): assigned to them (and
/// not returned), or under their live lease.
fn loads(
    conn: &Connection,
    names: &[&str],
    now: Timestamp,
) -> Result<Vec<(String, u32)>, StoreError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mut args: Vec<Arg> = vec![now.millis().to_arg()];
    args.extend(names.iter().map(ToArg::to_arg));
    let marks: Vec<String> = (2..=args.len()).map(|i| format!("?{i}")).collect();
    let marks = marks.join(", ");
    let sql = format!(
        "SELECT who, CAST(COUNT(*) AS BIGINT) FROM (
             SELECT assignee AS who FROM tasks
             WHERE assignee IN ({marks}) AND state IN ('open', 'claimed') AND (return_at IS NULL OR return_at > ?1)
             UNION ALL
             SELECT claimed_by AS who FROM tasks
             WHERE state = 'claimed' AND lease_expires_at > ?1 AND claimed_by IN ({marks})
               AND (assignee IS NULL OR assignee <> claimed_by OR (return_at IS NOT NULL AND return_at <= ?1))
         ) open_tasks GROUP BY who"
    );
    conn.query_map(&sql, args, |row| {
        Ok((
            row.get(0)?,
            u32::try_from(row.get::<_, i64>(1)?).unwrap_or(u32::MAX),
        ))
    })
}

/// The task given to a member of its group, when its group assigns and
/// somebody may take it (not its submitter, not who already decided the
/// proposal); `None` leaves it as it is.
pub(super) fn assign_task(
    conn: &Connection,
    task: &Task,
    submitted_by: &str,
    voted: &[&str],
    now: Timestamp,
) -> Result<Option<Task>, StoreError> {
    if !task.state.is_active() || task.assigned.is_some() {
        return Ok(None);
    }
    // Locked until the commit (PostgreSQL), so that two tasks of the group
    // never take the same turn; after the proposal's lock and admission's
    // caps and grants (ARCHITECTURE.md, "Concurrent writers").
    let Some((settings, last_turn)) = q::one(
        conn,
        "SELECT assignment, return_after_ms, last_turn FROM group_settings WHERE grp = ?1 /*pg FOR UPDATE*/",
        params![task.group],
        settings_row,
    )?
    else {
        return Ok(None);
    };
    if settings.assignment == Assignment::Pool {
        return Ok(None);
    }
    let members = members(conn, &task.group)?;
    let members: Vec<&UserRecord> = members
        .iter()
        .filter(|u| submitted_by != format!("user:{}", u.username))
        .filter(|u| !voted.contains(&u.username.as_str()))
        .collect();
    let loads = match settings.assignment {
        Assignment::LeastLoaded => {
            let names: Vec<&str> = members.iter().map(|u| u.username.as_str()).collect();
            loads(conn, &names, now)?
        }
        _ => Vec::new(),
    };
    let candidates: Vec<Candidate<'_>> = members
        .iter()
        .map(|u| Candidate {
            name: &u.username,
            away_until: u.away_until,
            delegate: u.delegate.as_deref(),
            load: loads
                .iter()
                .find(|(who, _)| *who == u.username)
                .map_or(0, |(_, n)| *n),
        })
        .collect();
    let Some(pick) = assign::pick(settings.assignment, &candidates, last_turn.as_deref(), now)
    else {
        return Ok(None);
    };
    conn.execute_later(
        "UPDATE group_settings SET last_turn = ?2 WHERE grp = ?1",
        params![task.group, pick.turn],
    )?;
    Ok(Some(review::assign(task, pick.assigned(settings, now))))
}

/// After a transition: a task that moved to a new group, or that needs
/// another approver, goes to the next member when its group assigns.
/// Returns whether it was assigned.
pub(super) fn after_transition(
    conn: &Connection,
    case: &mut Case,
    effect: Effect,
    now: Timestamp,
) -> Result<bool, StoreError> {
    if !matches!(effect, Effect::Escalated | Effect::Recorded) {
        return Ok(false);
    }
    // Who decided at any level may not decide again.
    let voted: Vec<&str> = case.decisions.iter().map(|d| d.reviewer.as_str()).collect();
    let assigned = assign_task(conn, &case.task, &case.proposal.submitted_by, &voted, now)?;
    match assigned {
        Some(task) => {
            case.task = task;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Returns up to `limit` tasks whose assignee did not open them in time
/// to their group's pool (`task.returned`).
pub(super) fn return_unopened(
    conn: &Connection,
    now: Timestamp,
    limit: u32,
    locked: Option<&std::collections::HashSet<String>>,
) -> Result<Vec<Task>, StoreError> {
    let sql = format!(
        "SELECT {} FROM tasks t JOIN proposals p ON p.id = t.proposal_id
         WHERE t.return_at IS NOT NULL AND t.return_at <= ?1 AND t.state IN ('open', 'claimed')
         ORDER BY t.return_at LIMIT CAST(?2 AS BIGINT)",
        q::TASK_COLUMNS
    );
    let due = q::all(conn, &sql, params![now.millis(), limit], q::task_row)?;
    let mut out = Vec::with_capacity(due.len());
    for record in due {
        // PostgreSQL: only tasks whose proposal the caller locked.
        if locked.is_some_and(|locked| !locked.contains(record.task.proposal_id.as_str())) {
            continue;
        }
        let Some(from) = record.task.assigned.as_ref().map(|a| a.to.clone()) else {
            continue;
        };
        let Some(task) = review::return_unopened(&record.task, now) else {
            continue;
        };
        q::update_task(conn, &task, now)?;
        let event = Event::TaskReturned {
            task: &task,
            from: &from,
            reason: "not_opened",
        };
        q::append(conn, now, LOOPGATE_ACTOR, &event)?;
        out.push(task);
    }
    Ok(out)
}

fn group_record(
    group: String,
    found: Option<(GroupSettings, Option<String>)>,
    updated_at: Option<Timestamp>,
    users: &[UserRecord],
) -> GroupRecord {
    let (settings, last_turn) = found.unwrap_or_default();
    let members = users
        .iter()
        .filter(|u| may_review(u, &group))
        .map(|u| u.username.clone())
        .collect();
    GroupRecord {
        group,
        settings,
        last_turn,
        members,
        updated_at,
    }
}

impl SqlStore {
    /// Every group that has settings or members, with its settings.
    pub(super) async fn groups(&self) -> Result<Vec<GroupRecord>, StoreError> {
        self.read(move |conn| {
            let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY username");
            let users = q::all(conn, &sql, params![], q::user_row)?;
            let mut out = q::all(
                conn,
                "SELECT assignment, return_after_ms, last_turn, grp, updated_at FROM group_settings ORDER BY grp",
                params![],
                |row| {
                    let group: String = row.get(3)?;
                    let at = Timestamp::from_millis(row.get(4)?);
                    Ok(group_record(group, Some(settings_row(row)?), Some(at), &users))
                },
            )?;
            let mut names: Vec<&String> = users.iter().flat_map(|u| &u.groups).collect();
            names.sort();
            names.dedup();
            for name in names {
                if !out.iter().any(|g| g.group == *name) {
                    out.push(group_record(name.clone(), None, None, &users));
                }
            }
            out.sort_by(|a, b| a.group.cmp(&b.group));
            Ok(out)
        })
        .await
    }

    /// Sets how a group's tasks are assigned (`group.updated`).
    pub(super) async fn set_group(
        &self,
        group: &str,
        new: GroupSettings,
        actor: &str,
        now: Timestamp,
    ) -> Result<GroupRecord, StoreError> {
        let (group, actor) = (group.to_owned(), actor.to_owned());
        self.write_plain(move |conn| {
            conn.execute(
                "INSERT INTO group_settings (grp, assignment, return_after_ms, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (grp) DO UPDATE SET assignment = ?2, return_after_ms = ?3, updated_at = ?4",
                params![
                    group,
                    new.assignment.as_str(),
                    i64::try_from(new.return_after.as_millis()).unwrap_or(i64::MAX),
                    now.millis()
                ],
            )?;
            let event = Event::GroupUpdated {
                group: &group,
                settings: &new,
            };
            q::append(conn, now, &actor, &event)?;
            let found = settings(conn, &group)?;
            let members = members(conn, &group)?;
            Ok(group_record(group.clone(), found, Some(now), &members))
        })
        .await
    }
}
