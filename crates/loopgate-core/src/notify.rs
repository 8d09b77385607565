//! Who hears about a review task, on which channel, and when
//! (docs/notifications.md). Pure rules: the store reads the group's settings
//! and its members, calls [`recipients`], and queues what it returns.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::{Channel, EventKind, NotifyEvent, Timestamp};

/// Longest digest period, in minutes (a day).
pub const MAX_DIGEST_MINUTES: u32 = 24 * 60;

/// What one user wants on one channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pref {
    /// The channel's default: every event by email; on Slack, only the
    /// group's channel (no direct message).
    #[default]
    Default,
    /// A message for every event.
    Each,
    /// One message every `every_minutes` with what happened since.
    Digest {
        /// The period, 1 to [`MAX_DIGEST_MINUTES`].
        every_minutes: u32,
    },
    /// Nothing.
    Off,
}

/// A user's choices, per channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Prefs {
    /// By email.
    pub email: Pref,
    /// By Slack direct message.
    pub slack: Pref,
}

impl Prefs {
    /// Why these choices cannot be kept, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        for (channel, pref) in [("email", self.email), ("slack", self.slack)] {
            if let Pref::Digest { every_minutes } = pref
                && !(1..=MAX_DIGEST_MINUTES).contains(&every_minutes)
            {
                return Err(format!(
                    "`{channel}`: a digest comes every 1 to {MAX_DIGEST_MINUTES} minutes, not {every_minutes}"
                ));
            }
        }
        Ok(())
    }
}

/// What a reviewer group has set up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupChannels {
    /// Addresses that get every event (besides the members).
    pub email: Vec<String>,
    /// A Slack channel id for a message per event.
    pub slack_channel: Option<String>,
    /// A Microsoft Teams workflow URL for a card per event.
    pub teams_webhook: Option<String>,
    /// The events the group hears about.
    pub events: Vec<NotifyEvent>,
}

/// A member of the group and how to reach them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member<'a> {
    /// The loopgate user id.
    pub user: &'a str,
    /// Their username.
    pub name: &'a str,
    /// Away until then: their messages go to their delegate.
    pub away_until: Option<Timestamp>,
    /// Who stands in for them while they are away.
    pub delegate: Option<&'a str>,
    /// Email address, if known.
    pub email: Option<&'a str>,
    /// Slack user id, if known.
    pub slack_user_id: Option<&'a str>,
    /// Their choices.
    pub prefs: Prefs,
}

/// One message to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The channel.
    pub channel: Channel,
    /// An address, a Slack channel or user id, or `teams`.
    pub target: String,
    /// The loopgate user it is for, if it is for one.
    pub user: Option<String>,
    /// When it goes out with the recipient's digest (`None`: at once).
    pub digest_at: Option<Timestamp>,
}

/// The group setting an event of the log falls under: a task created or
/// escalated (to the new group), or its deadline near (`task.sla_warning`)
/// or passed (`task.expired`).
pub fn covers(kind: EventKind) -> Option<NotifyEvent> {
    match kind {
        // A task handed to its next approver is new to them, and one back
        // in the pool is new to the group's members.
        EventKind::TaskCreated | EventKind::TaskAssigned | EventKind::TaskReturned => {
            Some(NotifyEvent::TaskCreated)
        }
        EventKind::TaskEscalated => Some(NotifyEvent::TaskEscalated),
        EventKind::TaskSlaWarning | EventKind::TaskExpired => Some(NotifyEvent::SlaWarning),
        _ => None,
    }
}

/// The members who hear in person about an event on a task: its assignee
/// alone when it has one (the event's `assignee`); otherwise every member,
/// with an away member's messages going to their delegate (a member who is
/// not away) or to nobody.
pub fn audience<'a>(
    members: &[Member<'a>],
    assignee: Option<&str>,
    now: Timestamp,
) -> Vec<Member<'a>> {
    if let Some(assignee) = assignee {
        return members
            .iter()
            .filter(|m| m.name == assignee)
            .copied()
            .collect();
    }
    let candidates: Vec<crate::assign::Candidate<'a>> = members
        .iter()
        .map(|m| crate::assign::Candidate {
            name: m.name,
            away_until: m.away_until,
            delegate: m.delegate,
            load: 0,
        })
        .collect();
    let mut out: Vec<Member<'a>> = Vec::new();
    for member in members {
        let Some(to) = crate::assign::stand_in(&candidates, member.name, now) else {
            continue;
        };
        if !out.iter().any(|m| m.name == to)
            && let Some(found) = members.iter().find(|m| m.name == to)
        {
            out.push(*found);
        }
    }
    out
}

/// Who hears about an event of `kind` on a task of a group set up as
/// `channels`, with these `members`, at `now`.
///
/// - Email: every member with an address, as they chose (by default every
///   event), then the group's own addresses that are not a member's.
/// - Slack: the group's channel, and a direct message to each member who
///   chose `each` or a digest.
/// - Teams: the group's workflow.
pub fn recipients(
    kind: EventKind,
    channels: &GroupChannels,
    members: &[Member<'_>],
    now: Timestamp,
) -> Vec<Recipient> {
    let Some(event) = covers(kind) else {
        return Vec::new();
    };
    if !channels.events.contains(&event) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let personal = |channel, target: &str, user: &str, pref: Pref| {
        let digest_at = match pref {
            Pref::Off => return None,
            Pref::Default | Pref::Each => None,
            Pref::Digest { every_minutes } => Some(digest_slot(now, every_minutes)),
        };
        Some(Recipient {
            channel,
            target: target.to_owned(),
            user: Some(user.to_owned()),
            digest_at,
        })
    };
    // The group's channels heard of the task when it was created; a task
    // handed to the next approver, or back in the pool, is news to people.
    let group_wide = !matches!(kind, EventKind::TaskAssigned | EventKind::TaskReturned);
    let mut addressed = BTreeSet::new();
    for member in members {
        if let Some(email) = member.email
            && addressed.insert(email.to_lowercase())
        {
            out.extend(personal(
                Channel::Email,
                email,
                member.user,
                member.prefs.email,
            ));
        }
    }
    for email in channels.email.iter().filter(|_| group_wide) {
        if addressed.insert(email.to_lowercase()) {
            out.push(Recipient {
                channel: Channel::Email,
                target: email.clone(),
                user: None,
                digest_at: None,
            });
        }
    }
    if let Some(channel) = channels.slack_channel.as_ref().filter(|_| group_wide) {
        out.push(Recipient {
            channel: Channel::Slack,
            target: channel.clone(),
            user: None,
            digest_at: None,
        });
    }
    let mut messaged = BTreeSet::new();
    for member in members {
        if let Some(slack) = member.slack_user_id
            && member.prefs.slack != Pref::Default
            && messaged.insert(slack)
        {
            out.extend(personal(
                Channel::Slack,
                slack,
                member.user,
                member.prefs.slack,
            ));
        }
    }
    if channels.teams_webhook.is_some() && group_wide {
        out.push(Recipient {
            channel: Channel::Teams,
            target: "teams".to_owned(),
            user: None,
            digest_at: None,
        });
    }
    out
}

/// The next digest time after `now` for a period of `every_minutes`: slots
/// are aligned to the period since the epoch, so every event of one period
/// shares one slot and one message.
pub fn digest_slot(now: Timestamp, every_minutes: u32) -> Timestamp {
    let period = i64::from(every_minutes.clamp(1, MAX_DIGEST_MINUTES)) * 60_000;
    Timestamp::from_millis((now.millis().div_euclid(period) + 1).saturating_mul(period))
}

/// When a task created at `created_at` and due at `due_at` warns its group:
/// after `share` (0 to 1) of its time.
pub fn warning_at(created_at: Timestamp, due_at: Timestamp, share: f64) -> Timestamp {
    let span = due_at.millis().saturating_sub(created_at.millis()).max(0);
    let share = if share.is_finite() {
        share.clamp(0.0, 1.0)
    } else {
        1.0
    };
    #[expect(clippy::cast_possible_truncation, reason = "a share of an i64 span")]
    let offset = (span as f64 * share) as i64;
    Timestamp::from_millis(created_at.millis().saturating_add(offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> GroupChannels {
        GroupChannels {
            email: vec!["Team@Example.com".into(), "ann@example.com".into()],
            slack_channel: Some("C123".into()),
            teams_webhook: Some("https://teams.example/wf".into()),
            events: vec![NotifyEvent::TaskCreated, NotifyEvent::SlaWarning],
        }
    }

    fn member<'a>(user: &'a str, email: &'a str, slack: &'a str, prefs: Prefs) -> Member<'a> {
        Member {
            user,
            name: user,
            away_until: None,
            delegate: None,
            email: Some(email),
            slack_user_id: Some(slack),
            prefs,
        }
    }

    fn shown(recipients: &[Recipient]) -> Vec<String> {
        recipients
            .iter()
            .map(|r| {
                format!(
                    "{} {} {} {}",
                    r.channel,
                    r.target,
                    r.user.as_deref().unwrap_or("-"),
                    r.digest_at.map_or(0, |t| t.millis())
                )
            })
            .collect()
    }

    #[test]
    fn members_group_addresses_channel_and_teams() {
        let ann = member("u-ann", "ANN@example.com", "UANN", Prefs::default());
        let bob = Prefs {
            email: Pref::Off,
            slack: Pref::Digest { every_minutes: 30 },
        };
        let bob = member("u-bob", "bob@example.com", "UBOB", bob);
        let now = Timestamp::from_millis(90 * 60_000 + 5);
        let got = recipients(EventKind::TaskCreated, &group(), &[ann, bob], now);
        assert_eq!(
            shown(&got),
            [
                "email ANN@example.com u-ann 0",
                "email Team@Example.com - 0",
                "slack C123 - 0",
                format!("slack UBOB u-bob {}", 120 * 60_000).as_str(),
                "teams teams - 0",
            ]
        );
    }

    #[test]
    fn the_assignee_alone_or_the_delegate_of_who_is_away() {
        let now = Timestamp::from_millis(1000);
        let mut ann = member("ann", "ann@example.com", "UANN", Prefs::default());
        let bob = member("bob", "bob@example.com", "UBOB", Prefs::default());
        let carol = member("carol", "carol@example.com", "UCAROL", Prefs::default());
        let names = |ms: Vec<Member<'_>>| ms.iter().map(|m| m.name.to_owned()).collect::<Vec<_>>();
        assert_eq!(
            names(audience(&[ann, bob, carol], Some("bob"), now)),
            ["bob"]
        );
        ann.away_until = Some(Timestamp::from_millis(2000));
        ann.delegate = Some("carol");
        assert_eq!(
            names(audience(&[ann, bob, carol], None, now)),
            ["carol", "bob"]
        );
        ann.delegate = None;
        assert_eq!(
            names(audience(&[ann, bob, carol], None, now)),
            ["bob", "carol"]
        );
        // The next approver hears in person; the group's channels heard already.
        let got = recipients(EventKind::TaskAssigned, &group(), &[bob], now);
        assert_eq!(shown(&got), ["email bob@example.com bob 0"]);
    }

    #[test]
    fn only_the_events_the_group_chose() {
        let now = Timestamp::from_millis(0);
        assert!(recipients(EventKind::TaskEscalated, &group(), &[], now).is_empty());
        assert!(recipients(EventKind::TaskClaimed, &group(), &[], now).is_empty());
        assert_eq!(
            recipients(EventKind::TaskExpired, &group(), &[], now).len(),
            4,
            "a breach is an SLA warning"
        );
    }

    #[test]
    fn digest_slots_and_warnings() {
        let t = |ms| Timestamp::from_millis(ms);
        assert_eq!(digest_slot(t(0), 15), t(15 * 60_000));
        assert_eq!(digest_slot(t(15 * 60_000), 15), t(30 * 60_000));
        assert_eq!(digest_slot(t(1), 0), t(60_000), "clamped to a minute");
        assert_eq!(warning_at(t(1000), t(2000), 0.75), t(1750));
        assert_eq!(warning_at(t(1000), t(2000), f64::NAN), t(2000));
        assert_eq!(warning_at(t(1000), t(500), 0.75), t(1000));
    }

    fn pref() -> impl proptest::strategy::Strategy<Value = Pref> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Pref::Default),
            Just(Pref::Each),
            Just(Pref::Off),
            (1_u32..=120).prop_map(|every_minutes| Pref::Digest { every_minutes }),
        ]
    }

    proptest::proptest! {
        /// Whoever the members and addresses: one message per channel and
        /// target; nobody who chose `off` gets a personal message; every
        /// address of the group is reached unless it is a member's (whose
        /// choice then holds); a digest never goes out before `now`.
        #[test]
        fn recipients_hold_their_invariants(
            members in proptest::collection::vec(
                (0_u8..6, proptest::option::of(0_u8..4), pref(), pref()), 0..8),
            addresses in proptest::collection::vec(0_u8..6, 0..5),
            channel in proptest::bool::ANY,
            now in 0_i64..10_000_000_000,
        ) {
            let emails: Vec<String> = (0..6).map(|n| format!("p{n}@Example.com")).collect();
            let slack: Vec<String> = (0..4).map(|n| format!("U{n}")).collect();
            let ids: Vec<String> = (0..members.len()).map(|n| format!("u{n}")).collect();
            let members: Vec<Member<'_>> = members
                .iter()
                .zip(&ids)
                .map(|((email, slack_id, e, s), id)| Member {
                    user: id,
                    name: id,
                    away_until: None,
                    delegate: None,
                    email: Some(emails[usize::from(*email)].as_str()),
                    slack_user_id: slack_id.map(|n| slack[usize::from(n)].as_str()),
                    prefs: Prefs { email: *e, slack: *s },
                })
                .collect();
            let channels = GroupChannels {
                email: addresses.iter().map(|n| emails[usize::from(*n)].to_uppercase()).collect(),
                slack_channel: channel.then(|| "C1".to_owned()),
                teams_webhook: None,
                events: NotifyEvent::ALL.to_vec(),
            };
            let now = Timestamp::from_millis(now);
            let got = recipients(EventKind::TaskCreated, &channels, &members, now);
            let mut seen = std::collections::BTreeSet::new();
            for r in &got {
                proptest::prop_assert!(
                    seen.insert((r.channel, r.target.to_lowercase())),
                    "twice: {:?}", r
                );
                proptest::prop_assert!(r.digest_at.is_none_or(|at| now < at));
                if let Some(user) = &r.user {
                    let member = members.iter().find(|m| m.user == user).unwrap();
                    let pref = match r.channel {
                        Channel::Email => member.prefs.email,
                        _ => member.prefs.slack,
                    };
                    proptest::prop_assert!(pref != Pref::Off);
                }
            }
            for address in &channels.email {
                let a_member = members
                    .iter()
                    .any(|m| m.email.is_some_and(|e| e.eq_ignore_ascii_case(address)));
                let reached = got.iter().any(|r| r.target.eq_ignore_ascii_case(address));
                proptest::prop_assert!(a_member || reached, "{} was left out", address);
            }
            proptest::prop_assert_eq!(
                got.iter().any(|r| r.channel == Channel::Slack && r.target == "C1"),
                channel
            );
        }
    }

    #[test]
    fn prefs_are_checked_and_read() {
        let prefs: Prefs =
            serde_json::from_str(r#"{"slack": {"digest": {"every_minutes": 0}}}"#).unwrap();
        assert!(prefs.check().is_err());
        let prefs: Prefs = serde_json::from_str(r#"{"email": "off"}"#).unwrap();
        assert_eq!(prefs.email, Pref::Off);
        assert_eq!(prefs.slack, Pref::Default);
    }
}
