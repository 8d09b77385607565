//! Assignment: which member of a reviewer group a task goes to, and who
//! stands in for a member who is away.
//!
//! A group's [`Assignment`] is `pool` (the task waits for any member to
//! claim it), `round_robin` (members in turn, by username) or
//! `least_loaded` (the member with the fewest open tasks assigned to or
//! claimed by them). An assigned task is reserved for its assignee; when
//! they do not open (claim) it within the group's `return_after`, it
//! returns to the pool. A member who is away (`away_until` in the future)
//! gets nothing: what would be theirs goes to their `delegate` when the
//! delegate is a member who may take the task and is not away.

use std::time::Duration;

use crate::{Assignment, Timestamp};

/// How long an assigned task waits to be opened when a group says nothing.
pub const DEFAULT_RETURN_AFTER: Duration = Duration::from_secs(30 * 60);

/// The shortest and longest `return_after` a group may set.
pub const RETURN_AFTER_RANGE: (Duration, Duration) =
    (Duration::from_secs(60), Duration::from_secs(7 * 24 * 3600));

/// A group's assignment settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupSettings {
    /// Pool, round robin or least loaded.
    pub assignment: Assignment,
    /// How long an assignee has to open a task before it returns to the pool.
    pub return_after: Duration,
}

impl Default for GroupSettings {
    fn default() -> Self {
        GroupSettings {
            assignment: Assignment::Pool,
            return_after: DEFAULT_RETURN_AFTER,
        }
    }
}

impl GroupSettings {
    /// Refuses a `return_after` outside [`RETURN_AFTER_RANGE`], in a sentence.
    pub fn check(&self) -> Result<(), String> {
        let (min, max) = RETURN_AFTER_RANGE;
        match (min..=max).contains(&self.return_after) {
            true => Ok(()),
            false => Err(format!(
                "`return_after` must be between {} and {}, not {}",
                crate::duration::format(min),
                crate::duration::format(max),
                crate::duration::format(self.return_after)
            )),
        }
    }
}

/// Who a task is reserved for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    /// The assignee's username.
    pub to: String,
    /// The away member whose turn it was, when the task went to their delegate.
    pub delegated_from: Option<String>,
    /// When the task returns to the pool unless opened; `None` once the
    /// assignee opened it (it stays theirs until decided).
    pub return_at: Option<Timestamp>,
}

/// A member of the task's group who may take it (the caller leaves out
/// the disabled, those without the reviewer role, the submitter and those
/// who already decided the proposal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// Username.
    pub name: &'a str,
    /// Away until then.
    pub away_until: Option<Timestamp>,
    /// Who takes their tasks while they are away.
    pub delegate: Option<&'a str>,
    /// Open tasks assigned to or claimed by them.
    pub load: u32,
}

impl Candidate<'_> {
    /// Whether they are away at `now`.
    pub fn is_away(&self, now: Timestamp) -> bool {
        self.away_until.is_some_and(|until| until > now)
    }
}

/// The choice for one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pick {
    /// Who gets it.
    pub assignee: String,
    /// The away member it was meant for, when it went to their delegate.
    pub delegated_from: Option<String>,
    /// Whose turn it was (round robin continues after them).
    pub turn: String,
}

impl Pick {
    /// The reservation this pick makes at `now` in a group with `settings`.
    pub fn assigned(&self, settings: GroupSettings, now: Timestamp) -> Assigned {
        Assigned {
            to: self.assignee.clone(),
            delegated_from: self.delegated_from.clone(),
            return_at: Some(now.plus(settings.return_after)),
        }
    }
}

/// Who takes what would go to `name` at `now`: themself when present;
/// their delegate when away and the delegate is a present candidate;
/// nobody otherwise (delegation goes one step, so it cannot loop).
pub fn stand_in<'a>(candidates: &[Candidate<'a>], name: &str, now: Timestamp) -> Option<&'a str> {
    let member = candidates.iter().find(|c| c.name == name)?;
    if !member.is_away(now) {
        return Some(member.name);
    }
    let delegate = member.delegate?;
    candidates
        .iter()
        .find(|c| c.name == delegate && !c.is_away(now))
        .map(|c| c.name)
}

/// The member a new task of a group goes to, or `None` to leave it in the
/// pool (the group pools, or nobody may take it). `last_turn` is the
/// member whose turn came last (round robin).
pub fn pick(
    mode: Assignment,
    candidates: &[Candidate<'_>],
    last_turn: Option<&str>,
    now: Timestamp,
) -> Option<Pick> {
    let mut sorted: Vec<&Candidate<'_>> = candidates.iter().collect();
    sorted.sort_by_key(|c| c.name);
    sorted.dedup_by_key(|c| c.name);
    match mode {
        Assignment::Pool => None,
        Assignment::RoundRobin => {
            let start = last_turn.map_or(0, |last| sorted.partition_point(|c| c.name <= last));
            let n = sorted.len();
            (0..n).find_map(|i| {
                let turn = sorted[(start + i) % n];
                let to = stand_in(candidates, turn.name, now)?;
                Some(Pick {
                    assignee: to.to_owned(),
                    delegated_from: (to != turn.name).then(|| turn.name.to_owned()),
                    turn: turn.name.to_owned(),
                })
            })
        }
        // An away member's delegate is a candidate in their own right, so
        // the least loaded present member is the answer either way.
        Assignment::LeastLoaded => sorted
            .into_iter()
            .filter(|c| !c.is_away(now))
            .min_by_key(|c| (c.load, c.name))
            .map(|c| Pick {
                assignee: c.name.to_owned(),
                delegated_from: None,
                turn: c.name.to_owned(),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: Timestamp = Timestamp::from_millis(1_000_000);

    fn member(name: &str, load: u32) -> Candidate<'_> {
        Candidate {
            name,
            away_until: None,
            delegate: None,
            load,
        }
    }

    fn names(mode: Assignment, candidates: &[Candidate<'_>], rounds: usize) -> Vec<String> {
        let mut last: Option<String> = None;
        let mut out = Vec::new();
        for _ in 0..rounds {
            let Some(pick) = pick(mode, candidates, last.as_deref(), NOW) else {
                out.push("-".to_owned());
                continue;
            };
            last = Some(pick.turn);
            out.push(pick.assignee);
        }
        out
    }

    #[test]
    fn round_robin_takes_members_in_turn_by_name() {
        let c = [member("carol", 0), member("alice", 9), member("bob", 0)];
        assert_eq!(
            names(Assignment::RoundRobin, &c, 4),
            ["alice", "bob", "carol", "alice"]
        );
    }

    #[test]
    fn round_robin_continues_after_a_member_who_left() {
        let c = [member("alice", 0), member("carol", 0)];
        let next = pick(Assignment::RoundRobin, &c, Some("bob"), NOW);
        assert_eq!(next.map(|p| p.assignee).as_deref(), Some("carol"));
    }

    #[test]
    fn an_away_member_s_turn_goes_to_their_delegate() {
        let mut bob = member("bob", 0);
        bob.away_until = Some(NOW.plus(Duration::from_secs(60)));
        bob.delegate = Some("carol");
        let c = [member("alice", 0), bob, member("carol", 0)];
        let picked = pick(Assignment::RoundRobin, &c, Some("alice"), NOW);
        assert_eq!(
            picked,
            Some(Pick {
                assignee: "carol".into(),
                delegated_from: Some("bob".into()),
                turn: "bob".into()
            })
        );
        // Back from away: their turn is theirs again.
        let later = NOW.plus(Duration::from_secs(61));
        let picked = pick(Assignment::RoundRobin, &c, Some("alice"), later);
        assert_eq!(picked.map(|p| p.assignee).as_deref(), Some("bob"));
    }

    #[test]
    fn an_away_member_without_a_present_delegate_is_skipped() {
        let until = Some(NOW.plus(Duration::from_secs(60)));
        let mut bob = member("bob", 0);
        bob.away_until = until;
        bob.delegate = Some("dave"); // not a candidate
        let mut carol = member("carol", 0);
        carol.away_until = until;
        carol.delegate = Some("bob"); // away too: one step only
        let c = [member("alice", 0), bob, carol];
        assert_eq!(
            names(Assignment::RoundRobin, &c, 3),
            ["alice", "alice", "alice"]
        );
    }

    #[test]
    fn least_loaded_takes_the_fewest_open_tasks_then_the_name() {
        let c = [member("alice", 3), member("bob", 1), member("carol", 1)];
        let picked = pick(Assignment::LeastLoaded, &c, None, NOW);
        assert_eq!(picked.map(|p| p.assignee).as_deref(), Some("bob"));
        let mut bob = c[1];
        bob.away_until = Some(NOW.plus(Duration::from_secs(1)));
        let c = [c[0], bob, c[2]];
        let picked = pick(Assignment::LeastLoaded, &c, None, NOW);
        assert_eq!(picked.map(|p| p.assignee).as_deref(), Some("carol"));
    }

    #[test]
    fn pool_and_no_candidates_leave_the_task_in_the_pool() {
        assert_eq!(pick(Assignment::Pool, &[member("a", 0)], None, NOW), None);
        for mode in Assignment::ALL {
            assert_eq!(pick(*mode, &[], Some("x"), NOW), None);
        }
    }

    #[test]
    fn return_after_is_bounded() {
        let mut settings = GroupSettings::default();
        assert_eq!(settings.check(), Ok(()));
        settings.return_after = Duration::from_secs(1);
        assert!(settings.check().is_err());
    }

    proptest! {
        /// Whatever the members, loads, absences and delegates: a pick is
        /// always a present candidate, and only away members delegate.
        #[test]
        fn a_pick_is_a_present_candidate(
            members in proptest::collection::vec((any::<bool>(), proptest::option::of(0u8..8), 0u32..5), 0..8),
            last in proptest::option::of(0u8..8),
            mode in proptest::sample::select(Assignment::ALL.to_vec()),
        ) {
            let names: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
            let candidates: Vec<Candidate<'_>> = members
                .iter()
                .enumerate()
                .map(|(i, &(away, delegate, load))| Candidate {
                    name: &names[i],
                    away_until: away.then(|| NOW.plus(Duration::from_secs(1))),
                    delegate: delegate.map(|d| names[usize::from(d)].as_str()),
                    load,
                })
                .collect();
            let last = last.map(|l| names[usize::from(l)].as_str());
            if let Some(pick) = pick(mode, &candidates, last, NOW) {
                let to = candidates.iter().find(|c| c.name == pick.assignee);
                prop_assert!(to.is_some_and(|c| !c.is_away(NOW)));
                if let Some(from) = &pick.delegated_from {
                    let from = candidates.iter().find(|c| c.name == from);
                    prop_assert!(from.is_some_and(|c| c.is_away(NOW)));
                }
            } else if mode != Assignment::Pool {
                prop_assert!(candidates.iter().all(|c| c.is_away(NOW)));
            }
        }
    }
}
