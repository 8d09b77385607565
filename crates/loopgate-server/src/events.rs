//! Live notifications: what changed in the review queues, fanned out to
//! `GET /v1/events` (SSE) subscribers in this process.
//!
//! Events carry ids and routing facts only (never payloads): a subscriber
//! that wants more reads the resource through the API, where the usual role
//! checks apply. Nothing here is durable; a client that misses events
//! re-reads its queue on reconnect.

use loopgate_core::Role;
use loopgate_store::Principal;
use serde::Serialize;
use tokio::sync::broadcast;

/// How many events a slow subscriber may lag behind before it is told to
/// re-read (`lagged`).
const CAPACITY: usize = 1024;

/// One notification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// `proposal.submitted`, `proposal.cancelled`, `task.claimed`,
    /// `task.released`, `task.decided`, `task.changed` (deadline work).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The proposal concerned.
    pub proposal: String,
    /// Its system, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The task concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// The task's reviewer group, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Who caused it (`user:…`, `system:…`, `loopgate`).
    pub actor: String,
}

/// The in-process fan-out.
#[derive(Clone)]
pub(crate) struct Bus {
    sender: broadcast::Sender<Event>,
}

impl Default for Bus {
    fn default() -> Bus {
        Bus {
            sender: broadcast::channel(CAPACITY).0,
        }
    }
}

impl Bus {
    /// Sends to every subscriber; nothing happens without subscribers.
    pub(crate) fn publish(&self, event: Event) {
        let _ = self.sender.send(event);
    }

    /// A new subscription, from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }
}

/// Whether `principal` may see `event`: a system sees its own proposals;
/// admins and auditors see everything; a reviewer sees the tasks of their
/// groups and the arrival of proposals (whose group is not yet known here).
pub(crate) fn visible(principal: &Principal, event: &Event) -> bool {
    match principal {
        Principal::System(id) => event.system.as_deref() == Some(id.as_str()),
        Principal::User(user) => {
            if user
                .roles
                .iter()
                .any(|r| matches!(r, Role::Admin | Role::Auditor))
            {
                return true;
            }
            if !user.roles.contains(&Role::Reviewer) {
                return false;
            }
            match &event.group {
                Some(group) => user.groups.contains(group),
                None => true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use loopgate_core::{SystemId, Timestamp, UserId};
    use loopgate_store::UserRecord;

    use super::*;

    fn user(roles: &[Role], groups: &[&str]) -> Principal {
        Principal::User(UserRecord {
            id: UserId::from_unique("1"),
            username: "u".into(),
            roles: roles.to_vec(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            created_at: Timestamp::from_millis(0),
        })
    }

    #[test]
    fn each_principal_sees_its_share() {
        let event = Event {
            kind: "task.claimed",
            proposal: "prp_1".into(),
            system: Some("fraud".into()),
            task: Some("tsk_1".into()),
            group: Some("analysts".into()),
            actor: "user:ann".into(),
        };
        let fraud = SystemId::parse("fraud").unwrap();
        let other = SystemId::parse("other").unwrap();
        assert!(visible(&Principal::System(fraud), &event));
        assert!(!visible(&Principal::System(other), &event));
        assert!(visible(&user(&[Role::Auditor], &[]), &event));
        assert!(visible(&user(&[Role::Reviewer], &["analysts"]), &event));
        assert!(!visible(&user(&[Role::Reviewer], &["medics"]), &event));
        assert!(!visible(
            &user(&[Role::PolicyAuthor], &["analysts"]),
            &event
        ));
    }
}
