//! The audit log's events: one variant per [`EventKind`], each carrying what
//! its entry is built from, and [`Event::data`], the one place that decides
//! what an entry's `data` says and which of its fields are salted hashes
//! (payloads and free text never reach the log in the clear).

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::audit::entry::{self, salted_hash};
use crate::digest::write_string;
use crate::grant::Grant;
use crate::review::{Decision, Task};
use crate::routing::Routing;
use crate::{
    DecidedBy, Digest, EventKind, Oversight, ProposalStatus, RiskTier, Role, SystemStatus,
    Timestamp, UserSource,
};

/// The actor of what loopgate does by itself (routing, timers, retention).
pub const LOOPGATE_ACTOR: &str = "loopgate";

/// One change, as the audit log records it. The actor and time are the
/// writer's; the subject and data come from here.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// `system.created`.
    SystemCreated {
        /// System id.
        system: &'a str,
        /// Its risk tier.
        risk_tier: RiskTier,
        /// Its oversight mode.
        oversight: Oversight,
    },
    /// `system.updated`, or `system.paused` / `system.resumed` when the
    /// kill switch moved.
    SystemChanged {
        /// System id.
        system: &'a str,
        /// The status before the change.
        before: SystemStatus,
        /// The risk tier after it.
        risk_tier: RiskTier,
        /// The oversight mode after it.
        oversight: Oversight,
        /// The status after it.
        status: SystemStatus,
        /// The retention period after it.
        retention: Option<Duration>,
    },
    /// `system.webhook_set`: the URL is logged as its host and a hash (a
    /// URL may carry a secret), never with the signing secret.
    WebhookSet {
        /// System id.
        system: &'a str,
        /// The endpoint as set.
        url: &'a str,
        /// The event types delivered.
        types: &'a [EventKind],
    },
    /// `system.webhook_removed`.
    WebhookRemoved {
        /// System id.
        system: &'a str,
    },
    /// `user.created`.
    UserCreated {
        /// User id.
        user: &'a str,
        /// Username.
        username: &'a str,
        /// Roles.
        roles: &'a [Role],
        /// Reviewer groups.
        groups: &'a [String],
        /// Made by an admin, the first admin, or at a first sign-in.
        source: UserSource,
        /// For `oidc`: the identity provider (its issuer URL).
        issuer: Option<&'a str>,
    },
    /// `user.updated`: roles or groups changed.
    UserUpdated {
        /// User id.
        user: &'a str,
        /// Roles after the change.
        roles: &'a [Role],
        /// Groups after the change.
        groups: &'a [String],
    },
    /// `user.password_set` (never the password or its hash).
    UserPasswordSet {
        /// User id.
        user: &'a str,
    },
    /// `user.disabled`.
    UserDisabled {
        /// User id.
        user: &'a str,
    },
    /// `user.enabled`.
    UserEnabled {
        /// User id.
        user: &'a str,
    },
    /// `user.break_glass_login`: the first admin signed in with a password
    /// while password logins are off (docs/sso.md).
    UserBreakGlassLogin {
        /// User id.
        user: &'a str,
    },
    /// `user.away_set`: a user's absence and stand-in changed.
    UserAwaySet {
        /// User id.
        user: &'a str,
        /// Away until then (`None`: present).
        away_until: Option<Timestamp>,
        /// The stand-in's username.
        delegate: Option<&'a str>,
    },
    /// `key.created`: a system API key or a personal token.
    KeyCreated {
        /// Public id.
        key: &'a str,
        /// `system` or `user`.
        owner_kind: &'a str,
        /// The owner's id.
        owner: &'a str,
        /// What it is for.
        name: &'a str,
        /// When it stops working, if ever.
        expires_at: Option<Timestamp>,
    },
    /// `key.revoked`.
    KeyRevoked {
        /// Public id.
        key: &'a str,
        /// `system` or `user`.
        owner_kind: &'a str,
        /// The owner's id.
        owner: &'a str,
    },
    /// `policy.published`: once per text.
    PolicyPublished {
        /// The policy-set version (hash).
        version: &'a str,
        /// Its publication number.
        seq: i64,
        /// How many policies it holds.
        policies: usize,
    },
    /// `policy.activated`: a version made live.
    PolicyActivated {
        /// The version.
        version: &'a str,
        /// `publish`, `rollback`, a promotion, ...
        reason: &'a str,
    },
    /// `policy.shadow_started`.
    PolicyShadowStarted {
        /// The version.
        version: &'a str,
        /// Why.
        reason: &'a str,
    },
    /// `policy.shadow_stopped`.
    PolicyShadowStopped {
        /// The version.
        version: &'a str,
        /// Why.
        reason: &'a str,
    },
    /// `proposal.submitted`: the payloads as salted hashes.
    ProposalSubmitted {
        /// Proposal id.
        proposal: &'a str,
        /// System id.
        system: &'a str,
        /// Action.
        action: &'a str,
        /// The proposal's digest.
        digest: &'a Digest,
        /// `{"type", "id", "attributes"}`.
        subject: &'a Value,
        /// The model's input.
        input: &'a Value,
        /// The model's output.
        output: &'a Value,
        /// The proposal's salt.
        salt: &'a [u8],
    },
    /// `proposal.routed`: Cedar's messages as salted hashes (they may quote
    /// the request's values).
    ProposalRouted {
        /// Proposal id.
        proposal: &'a str,
        /// The routing that applied.
        routing: &'a Routing,
        /// Whether a `@max_auto` cap sent an allow to review.
        over_limit: bool,
        /// The proposal's salt.
        salt: &'a [u8],
    },
    /// `proposal.resolved`.
    ProposalResolved {
        /// Proposal id.
        proposal: &'a str,
        /// The terminal status.
        outcome: ProposalStatus,
        /// Who settled it.
        decided_by: Option<DecidedBy>,
        /// The final digest.
        digest: &'a Digest,
        /// Whether a reviewer modified the output; `None` when the proposal
        /// was settled at submission (no review could have).
        modified: Option<bool>,
        /// The standing grant that approved it (`decided_by: grant`).
        grant: Option<&'a str>,
    },
    /// `proposal.overridden`: a post-hoc review reversed an automated outcome.
    ProposalOverridden {
        /// Proposal id.
        proposal: &'a str,
        /// The task that did.
        task: &'a str,
    },
    /// `proposal.cancelled`.
    ProposalCancelled {
        /// Proposal id.
        proposal: &'a str,
    },
    /// `proposal.erased`.
    ProposalErased {
        /// Proposal id.
        proposal: &'a str,
        /// Why.
        why: Erasure<'a>,
    },
    /// `task.created`.
    TaskCreated(&'a Task),
    /// `task.claimed`.
    TaskClaimed(&'a Task),
    /// `task.released`.
    TaskReleased(&'a Task),
    /// `task.escalated`.
    TaskEscalated(&'a Task),
    /// `task.expired`.
    TaskExpired(&'a Task),
    /// `task.sla_warning`: the share of the task's deadline that warns its
    /// group has passed (once per task and level).
    TaskSlaWarning(&'a Task),
    /// `task.assigned`: the task (already created) went to a member: the
    /// next approver after a decision that did not settle it.
    /// (`task.created` and `task.escalated` name their assignee themselves.)
    TaskAssigned(&'a Task),
    /// `task.returned`: the task went back to its group's pool from
    /// `from`, because they did not open it in time or released it.
    TaskReturned {
        /// The task, back in the pool.
        task: &'a Task,
        /// Its assignee until now.
        from: &'a str,
        /// `not_opened` or `released`.
        reason: &'a str,
    },
    /// `group.updated`: how a reviewer group's tasks are assigned.
    GroupUpdated {
        /// The reviewer group.
        group: &'a str,
        /// Its settings.
        settings: &'a crate::assign::GroupSettings,
    },
    /// `group.notifications_set`: who hears about the group's tasks. The
    /// addresses and the Teams URL are logged as counts and hashes.
    GroupNotificationsSet {
        /// The reviewer group.
        group: &'a str,
        /// Email addresses.
        email: &'a [String],
        /// Slack channel id.
        slack_channel: Option<&'a str>,
        /// Teams workflow URL.
        teams_webhook: Option<&'a str>,
        /// The events the group hears about.
        events: &'a [crate::NotifyEvent],
    },
    /// `decision.recorded`: rationale, edited output and labels as salted
    /// hashes.
    DecisionRecorded {
        /// The task decided on.
        task: &'a Task,
        /// The decision.
        decision: &'a Decision,
        /// The digest the reviewer saw.
        seen: &'a Digest,
        /// The proposal's salt.
        salt: &'a [u8],
    },
    /// `comment.added`: a reviewer's comment on a proposal (its body only as
    /// a salted hash).
    CommentAdded {
        /// The proposal.
        proposal: &'a str,
        /// The comment's id.
        comment: &'a str,
        /// The words.
        body: &'a str,
        /// The proposal's salt.
        salt: &'a [u8],
    },
    /// `grant.created`: approvers gave a standing grant (its subject is the
    /// grant; the subject and output it covers are not logged, only the
    /// proposal it came from).
    GrantCreated(&'a Grant),
    /// `grant.used`: a grant approved a proposal (its subject is the proposal).
    GrantUsed {
        /// The grant, with this use counted.
        grant: &'a Grant,
        /// The proposal it approved.
        proposal: &'a str,
    },
    /// `grant.revoked`.
    GrantRevoked(&'a Grant),
    /// `grant.expired`: its time ran out.
    GrantExpired(&'a Grant),
}

/// A task event's data; an assigned task names its assignee (and the away
/// member it was meant for).
fn task_data(task: &Task) -> Value {
    let mut data = json!({"task": task.id.as_str(), "proposal": task.proposal_id.as_str(), "group": task.group,
                          "level": task.level, "state": task.state.as_str(), "kind": task.kind.as_str()});
    if let Some(assigned) = &task.assigned {
        data["assignee"] = json!(assigned.to);
        if let Some(from) = &assigned.delegated_from {
            data["delegated_from"] = json!(from);
        }
    }
    data
}

/// Why a proposal was erased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Erasure<'a> {
    /// A request, with its reason (free text that may name the data
    /// subject: only its hash is logged).
    Requested(&'a str),
    /// Its system's retention period ran out.
    Retention,
}

impl Event<'_> {
    /// Its type.
    pub fn kind(&self) -> EventKind {
        use EventKind as K;
        match self {
            Event::SystemCreated { .. } => K::SystemCreated,
            Event::SystemChanged { before, status, .. } => match (before, status) {
                (SystemStatus::Active, SystemStatus::Paused) => K::SystemPaused,
                (SystemStatus::Paused, SystemStatus::Active) => K::SystemResumed,
                _ => K::SystemUpdated,
            },
            Event::WebhookSet { .. } => K::WebhookSet,
            Event::WebhookRemoved { .. } => K::WebhookRemoved,
            Event::UserCreated { .. } => K::UserCreated,
            Event::UserUpdated { .. } => K::UserUpdated,
            Event::UserPasswordSet { .. } => K::UserPasswordSet,
            Event::UserDisabled { .. } => K::UserDisabled,
            Event::UserEnabled { .. } => K::UserEnabled,
            Event::UserBreakGlassLogin { .. } => K::UserBreakGlassLogin,
            Event::UserAwaySet { .. } => K::UserAwaySet,
            Event::KeyCreated { .. } => K::KeyCreated,
            Event::KeyRevoked { .. } => K::KeyRevoked,
            Event::PolicyPublished { .. } => K::PolicyPublished,
            Event::PolicyActivated { .. } => K::PolicyActivated,
            Event::PolicyShadowStarted { .. } => K::PolicyShadowStarted,
            Event::PolicyShadowStopped { .. } => K::PolicyShadowStopped,
            Event::ProposalSubmitted { .. } => K::ProposalSubmitted,
            Event::ProposalRouted { .. } => K::ProposalRouted,
            Event::ProposalResolved { .. } => K::ProposalResolved,
            Event::ProposalOverridden { .. } => K::ProposalOverridden,
            Event::ProposalCancelled { .. } => K::ProposalCancelled,
            Event::ProposalErased { .. } => K::ProposalErased,
            Event::TaskCreated(_) => K::TaskCreated,
            Event::TaskAssigned(_) => K::TaskAssigned,
            Event::TaskReturned { .. } => K::TaskReturned,
            Event::GroupUpdated { .. } => K::GroupUpdated,
            Event::TaskClaimed(_) => K::TaskClaimed,
            Event::TaskReleased(_) => K::TaskReleased,
            Event::TaskEscalated(_) => K::TaskEscalated,
            Event::TaskExpired(_) => K::TaskExpired,
            Event::TaskSlaWarning(_) => K::TaskSlaWarning,
            Event::GroupNotificationsSet { .. } => K::GroupNotificationsSet,
            Event::DecisionRecorded { .. } => K::DecisionRecorded,
            Event::CommentAdded { .. } => K::CommentAdded,
            Event::GrantCreated(_) => K::GrantCreated,
            Event::GrantUsed { .. } => K::GrantUsed,
            Event::GrantRevoked(_) => K::GrantRevoked,
            Event::GrantExpired(_) => K::GrantExpired,
        }
    }

    /// What it is about: the proposal for every proposal, task and decision
    /// event; the system, user, key or policy version otherwise.
    pub fn subject(&self) -> &str {
        match self {
            Event::SystemCreated { system, .. }
            | Event::SystemChanged { system, .. }
            | Event::WebhookSet { system, .. }
            | Event::WebhookRemoved { system } => system,
            Event::UserCreated { user, .. }
            | Event::UserUpdated { user, .. }
            | Event::UserPasswordSet { user }
            | Event::UserDisabled { user }
            | Event::UserEnabled { user }
            | Event::UserBreakGlassLogin { user }
            | Event::UserAwaySet { user, .. } => user,
            Event::KeyCreated { key, .. } | Event::KeyRevoked { key, .. } => key,
            Event::PolicyPublished { version, .. }
            | Event::PolicyActivated { version, .. }
            | Event::PolicyShadowStarted { version, .. }
            | Event::PolicyShadowStopped { version, .. } => version,
            Event::ProposalSubmitted { proposal, .. }
            | Event::ProposalRouted { proposal, .. }
            | Event::ProposalResolved { proposal, .. }
            | Event::ProposalOverridden { proposal, .. }
            | Event::ProposalCancelled { proposal }
            | Event::ProposalErased { proposal, .. } => proposal,
            Event::TaskCreated(task)
            | Event::TaskClaimed(task)
            | Event::TaskReleased(task)
            | Event::TaskEscalated(task)
            | Event::TaskExpired(task)
            | Event::TaskSlaWarning(task)
            | Event::TaskAssigned(task)
            | Event::TaskReturned { task, .. }
            | Event::DecisionRecorded { task, .. } => task.proposal_id.as_str(),
            Event::CommentAdded { proposal, .. } | Event::GrantUsed { proposal, .. } => proposal,
            Event::GrantCreated(grant)
            | Event::GrantRevoked(grant)
            | Event::GrantExpired(grant) => grant.id.as_str(),
            Event::GroupNotificationsSet { group, .. } | Event::GroupUpdated { group, .. } => group,
        }
    }

    /// The entry's `data`: ids, versions, digests and salted hashes, never
    /// a payload, a URL or free text in the clear.
    pub fn data(&self) -> Value {
        let roles = |roles: &[Role]| roles.iter().map(|r| r.as_str()).collect::<Vec<_>>();
        match *self {
            Event::SystemCreated {
                system,
                risk_tier,
                oversight,
            } => {
                json!({"system": system, "risk_tier": risk_tier.as_str(), "oversight": oversight.as_str()})
            }
            Event::SystemChanged {
                system,
                risk_tier,
                oversight,
                status,
                retention,
                ..
            } => json!({"system": system, "risk_tier": risk_tier.as_str(),
                        "oversight": oversight.as_str(), "status": status.as_str(),
                        "retention_ms": retention.map(|r| u64::try_from(r.as_millis()).unwrap_or(u64::MAX))}),
            Event::WebhookSet { system, url, types } => json!({
                "system": system,
                "host": url_host(url),
                "url_hash": crate::digest::sha256_of(url.as_bytes()),
                "types": types,
            }),
            Event::WebhookRemoved { system } => json!({"system": system}),
            Event::GroupNotificationsSet {
                group,
                email,
                slack_channel,
                teams_webhook,
                events,
            } => {
                let mut addresses: Vec<String> = email.iter().map(|a| a.to_lowercase()).collect();
                addresses.sort();
                json!({
                    "group": group,
                    "email": addresses.len(),
                    "email_hash": crate::digest::sha256_of(addresses.join(",").as_bytes()),
                    "slack_channel": slack_channel,
                    "teams_host": teams_webhook.map(url_host),
                    "teams_hash": teams_webhook.map(|url| crate::digest::sha256_of(url.as_bytes())),
                    "events": events.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
                })
            }
            Event::UserCreated {
                user,
                username,
                roles: r,
                groups,
                source,
                issuer,
            } => {
                let mut data = json!({"user": user, "username": username, "roles": roles(r), "groups": groups, "source": source.as_str()});
                if let Some(issuer) = issuer {
                    data["issuer"] = json!(issuer);
                }
                data
            }
            Event::UserUpdated {
                user,
                roles: r,
                groups,
            } => json!({"user": user, "roles": roles(r), "groups": groups}),
            Event::UserPasswordSet { user }
            | Event::UserDisabled { user }
            | Event::UserEnabled { user }
            | Event::UserBreakGlassLogin { user } => json!({"user": user}),
            Event::UserAwaySet {
                user,
                away_until,
                delegate,
            } => {
                json!({"user": user, "away_until": away_until.map(Timestamp::to_rfc3339), "delegate": delegate})
            }
            Event::KeyCreated {
                key,
                owner_kind,
                owner,
                name,
                expires_at,
            } => {
                let mut data =
                    json!({"key": key, "kind": owner_kind, "owner": owner, "name": name});
                if let Some(expires) = expires_at {
                    data["expires_at"] = json!(expires.to_rfc3339());
                }
                data
            }
            Event::KeyRevoked {
                key,
                owner_kind,
                owner,
            } => json!({"key": key, "kind": owner_kind, "owner": owner}),
            Event::PolicyPublished {
                version,
                seq,
                policies,
            } => json!({"version": version, "seq": seq, "policies": policies}),
            Event::PolicyActivated { version, reason }
            | Event::PolicyShadowStarted { version, reason }
            | Event::PolicyShadowStopped { version, reason } => {
                json!({"version": version, "reason": reason})
            }
            Event::ProposalSubmitted {
                proposal,
                system,
                action,
                digest,
                subject,
                input,
                output,
                salt,
            } => {
                json!({"proposal": proposal, "system": system, "action": action, "digest": digest.as_str(),
                        "subject": salted_hash(salt, "subject", subject).to_string(),
                        "input": salted_hash(salt, "input", input).to_string(),
                        "output": salted_hash(salt, "output", output).to_string()})
            }
            Event::ProposalRouted {
                proposal,
                routing,
                over_limit,
                salt,
            } => {
                let mut data = json!({"proposal": proposal, "route": routing.route.as_str(),
                                      "policy_version": routing.policy_version, "matched_policies": routing.matched});
                if over_limit {
                    data["over_limit"] = json!(true);
                }
                if !routing.errors.is_empty() {
                    let errors: Vec<Value> = routing
                        .errors
                        .iter()
                        .map(|it| {
                            json!({"policy": it.policy, "kind": it.kind,
                                   "message": salted_hash(salt, "policy_error", &json!(it.message)).to_string()})
                        })
                        .collect();
                    data["policy_errors"] = json!(errors);
                }
                data
            }
            Event::ProposalResolved {
                proposal,
                outcome,
                decided_by,
                digest,
                modified,
                grant,
            } => {
                let mut data = json!({"proposal": proposal, "outcome": outcome.as_str(),
                                      "decided_by": decided_by.map(DecidedBy::as_str), "digest": digest.as_str()});
                if let Some(modified) = modified {
                    data["modified"] = json!(modified);
                }
                if let Some(grant) = grant {
                    data["grant"] = json!(grant);
                }
                data
            }
            Event::GrantCreated(grant) => {
                json!({"grant": grant.id.as_str(), "proposal": grant.proposal.as_str(), "system": grant.system,
                       "action": grant.action, "scope": grant.scope.as_str(), "policies": grant.policies,
                       "policy_version": grant.policy_version, "group": grant.group,
                       "granted_by": grant.granted_by, "expires_at": grant.expires_at.to_rfc3339(),
                       "max_uses": grant.max_uses})
            }
            Event::GrantUsed { grant, proposal } => {
                json!({"grant": grant.id.as_str(), "proposal": proposal, "used": grant.used,
                       "uses_left": grant.uses_left()})
            }
            Event::GrantRevoked(grant) | Event::GrantExpired(grant) => {
                json!({"grant": grant.id.as_str(), "used": grant.used})
            }
            Event::ProposalOverridden { proposal, task } => {
                json!({"proposal": proposal, "task": task})
            }
            Event::ProposalCancelled { proposal } => json!({"proposal": proposal}),
            Event::ProposalErased { proposal, why } => match why {
                Erasure::Requested(reason) => json!({"proposal": proposal,
                    "reason_hash": Digest::of_json(&json!(reason)).to_string()}),
                Erasure::Retention => json!({"proposal": proposal, "reason": "retention"}),
            },
            Event::TaskCreated(task)
            | Event::TaskClaimed(task)
            | Event::TaskReleased(task)
            | Event::TaskEscalated(task)
            | Event::TaskExpired(task)
            | Event::TaskSlaWarning(task)
            | Event::TaskAssigned(task) => task_data(task),
            Event::TaskReturned { task, from, reason } => {
                let mut data = task_data(task);
                data["from"] = json!(from);
                data["reason"] = json!(reason);
                data
            }
            Event::GroupUpdated { group, settings } => json!({
                "group": group,
                "assignment": settings.assignment.as_str(),
                "return_after_ms": u64::try_from(settings.return_after.as_millis()).unwrap_or(u64::MAX),
            }),
            Event::CommentAdded {
                proposal,
                comment,
                body,
                salt,
            } => {
                let hash = salted_hash(salt, "body", &json!(body)).to_string();
                json!({"proposal": proposal, "comment": comment, "body": hash})
            }
            Event::DecisionRecorded {
                task,
                decision,
                seen,
                salt,
            } => {
                let mut data = Map::new();
                data.insert("proposal".into(), json!(task.proposal_id.as_str()));
                data.insert("task".into(), json!(task.id.as_str()));
                data.insert("verdict".into(), json!(decision.verdict.as_str()));
                data.insert("digest".into(), json!(decision.digest.as_str()));
                data.insert("seen_digest".into(), json!(seen.as_str()));
                data.insert("level".into(), json!(decision.level));
                if let Some(grant) = &decision.grant {
                    let terms = json!({"for": crate::duration::format(grant.duration),
                                       "uses": grant.uses, "scope": grant.scope.as_str()});
                    data.insert("grant".into(), terms);
                }
                let hashed = [
                    ("rationale", decision.rationale.as_ref().map(|r| json!(r))),
                    ("output", decision.output.clone()),
                    ("labels", decision.labels.clone().map(Value::Object)),
                    ("message", decision.message.as_ref().map(|m| json!(m))),
                ];
                for (field, value) in hashed {
                    if let Some(value) = value {
                        let hash = salted_hash(salt, field, &value).to_string();
                        data.insert(field.to_owned(), json!(hash));
                    }
                }
                Value::Object(data)
            }
        }
    }
}

impl Event<'_> {
    /// [`Event::data`] as the canonical JSON the store keeps
    /// ([`entry::canonical_data`]). The events on every proposal's path
    /// (submitted, routed, resolved, the task's and the decision's) are
    /// written member by member in canonical order, without building a
    /// `Value` and sorting it (about 3% of an ingested proposal's
    /// instructions); the other events, and these in their rare shapes
    /// (policy errors, a decision that grants), go through `data()`.
    /// `written_data_is_data_made_canonical` checks that both give the same
    /// text.
    pub fn canonical_data(&self) -> String {
        match self.written_data() {
            Some(text) => text,
            None => entry::canonical_data(&self.data()),
        }
    }

    /// The canonical data of the events it writes directly, `None` for the
    /// others.
    fn written_data(&self) -> Option<String> {
        let mut out = Members::new();
        match *self {
            Event::ProposalSubmitted {
                proposal,
                system,
                action,
                digest,
                subject,
                input,
                output,
                salt,
            } => {
                out.text("action", action);
                out.text("digest", digest.as_str());
                out.text("input", salted_hash(salt, "input", input).as_str());
                out.text("output", salted_hash(salt, "output", output).as_str());
                out.text("proposal", proposal);
                out.text("subject", salted_hash(salt, "subject", subject).as_str());
                out.text("system", system);
            }
            Event::ProposalRouted {
                proposal,
                routing,
                over_limit,
                salt: _,
            } if routing.errors.is_empty() => {
                out.texts("matched_policies", &routing.matched);
                if over_limit {
                    out.literal("over_limit", "true");
                }
                out.text("policy_version", &routing.policy_version);
                out.text("proposal", proposal);
                out.text("route", routing.route.as_str());
            }
            Event::ProposalResolved {
                proposal,
                outcome,
                decided_by,
                digest,
                modified,
                grant,
            } => {
                match decided_by {
                    Some(decided_by) => out.text("decided_by", decided_by.as_str()),
                    None => out.literal("decided_by", "null"),
                }
                out.text("digest", digest.as_str());
                if let Some(grant) = grant {
                    out.text("grant", grant);
                }
                if let Some(modified) = modified {
                    out.literal("modified", if modified { "true" } else { "false" });
                }
                out.text("outcome", outcome.as_str());
                out.text("proposal", proposal);
            }
            Event::TaskCreated(task)
            | Event::TaskClaimed(task)
            | Event::TaskReleased(task)
            | Event::TaskEscalated(task)
            | Event::TaskExpired(task)
            | Event::TaskSlaWarning(task)
            | Event::TaskAssigned(task) => {
                if let Some(assigned) = &task.assigned {
                    out.text("assignee", &assigned.to);
                    if let Some(from) = &assigned.delegated_from {
                        out.text("delegated_from", from);
                    }
                }
                out.text("group", &task.group);
                out.text("kind", task.kind.as_str());
                out.number("level", task.level);
                out.text("proposal", task.proposal_id.as_str());
                out.text("state", task.state.as_str());
                out.text("task", task.id.as_str());
            }
            Event::DecisionRecorded {
                task,
                decision,
                seen,
                salt,
            } if decision.grant.is_none() => {
                let hashed = |out: &mut Members, field: &'static str, value: Option<Value>| {
                    if let Some(value) = value {
                        out.text(field, salted_hash(salt, field, &value).as_str());
                    }
                };
                out.text("digest", decision.digest.as_str());
                hashed(
                    &mut out,
                    "labels",
                    decision.labels.clone().map(Value::Object),
                );
                out.number("level", decision.level);
                hashed(
                    &mut out,
                    "message",
                    decision.message.as_ref().map(|m| json!(m)),
                );
                hashed(&mut out, "output", decision.output.clone());
                out.text("proposal", task.proposal_id.as_str());
                hashed(
                    &mut out,
                    "rationale",
                    decision.rationale.as_ref().map(|r| json!(r)),
                );
                out.text("seen_digest", seen.as_str());
                out.text("task", task.id.as_str());
                out.text("verdict", decision.verdict.as_str());
            }
            _ => return None,
        }
        Some(out.finish())
    }
}

/// A canonical JSON object written member by member. The caller gives the
/// members in RFC 8785's order; their names are ASCII, where that order is
/// the bytes' order.
struct Members {
    out: Vec<u8>,
    last: &'static str,
}

impl Members {
    fn new() -> Members {
        let mut out = Vec::with_capacity(256);
        out.push(b'{');
        Members { out, last: "" }
    }

    fn name(&mut self, name: &'static str) {
        debug_assert!(
            name.is_ascii() && name > self.last,
            "{name} after {}",
            self.last
        );
        if !self.last.is_empty() {
            self.out.push(b',');
        }
        self.last = name;
        write_string(&mut self.out, name);
        self.out.push(b':');
    }

    fn text(&mut self, name: &'static str, text: &str) {
        self.name(name);
        write_string(&mut self.out, text);
    }

    fn texts(&mut self, name: &'static str, texts: &[String]) {
        self.name(name);
        self.out.push(b'[');
        for (n, text) in texts.iter().enumerate() {
            if n > 0 {
                self.out.push(b',');
            }
            write_string(&mut self.out, text);
        }
        self.out.push(b']');
    }

    /// `true`, `false` or `null`.
    fn literal(&mut self, name: &'static str, literal: &'static str) {
        self.name(name);
        self.out.extend_from_slice(literal.as_bytes());
    }

    /// A whole number below 2^53 is written as its digits in RFC 8785 too.
    fn number(&mut self, name: &'static str, number: u32) {
        self.name(name);
        self.out.extend_from_slice(number.to_string().as_bytes());
    }

    fn finish(mut self) -> String {
        self.out.push(b'}');
        // Only UTF-8 went in: ASCII and serde_json's strings.
        String::from_utf8(self.out).unwrap_or_default()
    }
}

/// The host (and port) of an absolute URL, without scheme, credentials,
/// path, query or fragment.
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::assign::Assigned;
    use crate::routing::{EvaluationError, ReviewPlan};
    use crate::{GrantScope, GrantTerms, ProposalId, Route, TaskId, TaskKind, TaskState, Verdict};

    #[test]
    fn every_kind_has_one_stable_name() {
        let mut names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), EventKind::ALL.len());
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(*kind));
        }
    }

    #[test]
    fn a_webhook_url_is_logged_as_host_and_hash() {
        let types = [EventKind::ProposalResolved];
        let event = Event::WebhookSet {
            system: "shop",
            url: "https://user:pw@hooks.example:8443/T0/secret?x=1",
            types: &types,
        };
        let data = event.data();
        assert_eq!(data["host"], "hooks.example:8443");
        assert!(!data.to_string().contains("secret"));
        assert_eq!(event.kind(), EventKind::WebhookSet);
        assert_eq!(event.subject(), "shop");
    }

    #[test]
    fn the_kill_switch_is_named_by_its_move() {
        let changed = |before, status| Event::SystemChanged {
            system: "s",
            before,
            risk_tier: RiskTier::High,
            oversight: Oversight::InTheLoop,
            status,
            retention: None,
        };
        let (active, paused) = (SystemStatus::Active, SystemStatus::Paused);
        assert_eq!(changed(active, paused).kind(), EventKind::SystemPaused);
        assert_eq!(changed(paused, active).kind(), EventKind::SystemResumed);
        assert_eq!(changed(active, active).kind(), EventKind::SystemUpdated);
        assert_eq!(changed(paused, paused).kind(), EventKind::SystemUpdated);
    }

    fn pick<T: Copy + std::fmt::Debug>(all: &'static [T]) -> impl Strategy<Value = T> {
        proptest::sample::select(all)
    }

    /// Any text, quotes, backslashes, controls and non-ASCII included.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![any::<String>(), "[a-z_\"\\\\\u{0}-\u{1f}é€😀]{0,6}"]
    }

    fn payload() -> impl Strategy<Value = Value> {
        (text(), any::<i32>(), any::<bool>())
            .prop_map(|(t, n, b)| json!({"t": t, "n": n, "b": [b, null]}))
    }

    fn task(
        (group, kind, state, level): (String, TaskKind, TaskState, u32),
        assigned: Option<(String, Option<String>)>,
    ) -> Task {
        Task {
            id: TaskId::from_unique("01J"),
            proposal_id: ProposalId::from_unique("01K"),
            kind,
            state,
            group: group.clone(),
            level,
            required: 1,
            due_at: None,
            claimed_by: None,
            lease_expires_at: None,
            assigned: assigned.map(|(to, delegated_from)| Assigned {
                to,
                delegated_from,
                return_at: None,
            }),
            plan: ReviewPlan {
                group,
                ..ReviewPlan::default_review()
            },
            sample_probability: 1.0,
            created_at: Timestamp::from_millis(0),
        }
    }

    fn same(event: &Event<'_>) -> Result<(), TestCaseError> {
        prop_assert_eq!(event.canonical_data(), entry::canonical_data(&event.data()));
        Ok(())
    }

    proptest! {
        /// The events written member by member give what `data()` gives,
        /// made canonical, in every shape (the rare ones go through `data()`).
        #[test]
        fn written_data_is_data_made_canonical(
            (a, b, c) in (text(), text(), text()),
            (input, output, subject) in (payload(), payload(), payload()),
            salt in proptest::collection::vec(any::<u8>(), 32),
            matched in proptest::collection::vec(text(), 0..3),
            (route, over_limit, with_error) in (pick(Route::ALL), any::<bool>(), any::<bool>()),
            (outcome, decided_by, modified, grant) in (
                pick(ProposalStatus::ALL),
                proptest::option::of(pick(DecidedBy::ALL)),
                proptest::option::of(any::<bool>()),
                proptest::option::of(text()),
            ),
            shape in (text(), pick(TaskKind::ALL), pick(TaskState::ALL), any::<u32>()),
            assigned in proptest::option::of((text(), proptest::option::of(text()))),
            (verdict, rationale, message, edited, labels, granting) in (
                pick(Verdict::ALL),
                proptest::option::of(text()),
                proptest::option::of(text()),
                proptest::option::of(payload()),
                proptest::option::of(text()),
                any::<bool>(),
            ),
        ) {
            let digest = Digest::of_json(&output);
            same(&Event::ProposalSubmitted {
                proposal: &a, system: &b, action: &c, digest: &digest,
                subject: &subject, input: &input, output: &output, salt: &salt,
            })?;
            let routing = Routing {
                route,
                matched,
                policy_version: c.clone(),
                review: task(shape.clone(), None).plan,
                sample_rate: 0.0,
                limits: Vec::new(),
                errors: with_error.then(|| EvaluationError {
                    policy: a.clone(), kind: "k".to_owned(), message: b.clone(),
                }).into_iter().collect(),
            };
            same(&Event::ProposalRouted { proposal: &a, routing: &routing, over_limit, salt: &salt })?;
            same(&Event::ProposalResolved {
                proposal: &a, outcome, decided_by, digest: &digest, modified, grant: grant.as_deref(),
            })?;
            let task = task(shape, assigned);
            for event in [Event::TaskCreated(&task), Event::TaskClaimed(&task), Event::TaskAssigned(&task)] {
                same(&event)?;
            }
            let decision = Decision {
                reviewer: a.clone(),
                verdict,
                digest: digest.clone(),
                rationale,
                output: edited,
                labels: labels.map(|label| {
                    let mut map = Map::new();
                    map.insert(label, json!(1));
                    map
                }),
                message,
                grant: granting.then_some(GrantTerms {
                    duration: Duration::from_secs(60), uses: Some(2), scope: GrantScope::SameOutput,
                }),
                level: task.level,
                decided_at: Timestamp::from_millis(0),
            };
            same(&Event::DecisionRecorded { task: &task, decision: &decision, seen: &digest, salt: &salt })?;
        }
    }

    #[test]
    fn a_requested_erasure_logs_only_the_hash_of_its_reason() {
        let event = Event::ProposalErased {
            proposal: "prp_1",
            why: Erasure::Requested("Jane Doe asked"),
        };
        assert!(!event.data().to_string().contains("Jane"));
    }
}
