//! The closed vocabularies of the domain, each with its stable string form
//! (used in storage and audit entries).

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable string form.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the stable string form.
            pub fn parse(text: &str) -> Option<$name> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// The route policy chose.
    Route { Allow = "allow", Deny = "deny", Review = "review" }
);
string_enum!(
    /// Lifecycle of a proposal; every state but `Pending` is terminal.
    /// `Returned`: a reviewer answered with a message instead of a yes or no
    /// (verdict `respond`).
    ProposalStatus { Pending = "pending", Approved = "approved", Rejected = "rejected", Cancelled = "cancelled", Returned = "returned" }
);
string_enum!(
    /// Who settled a proposal. `Grant`: a standing grant that reviewers
    /// gave on an earlier proposal approved it.
    DecidedBy { Policy = "policy", Reviewers = "reviewers", Timeout = "timeout", KillSwitch = "kill_switch", System = "system", Grant = "grant" }
);
string_enum!(
    /// What a standing grant covers: the same action and subject with the
    /// same output, or with any output.
    GrantScope { SameOutput = "same_output", SameSubject = "same_subject" }
);
string_enum!(
    /// How a reviewer group's new tasks find a reviewer: left in the pool
    /// for any member to claim, handed to members in turn, or to the member
    /// with the fewest open tasks.
    Assignment { Pool = "pool", RoundRobin = "round_robin", LeastLoaded = "least_loaded" }
);
string_enum!(
    /// A reviewer's verdict.
    Verdict { Approve = "approve", Reject = "reject", Modify = "modify", Escalate = "escalate", Respond = "respond" }
);
string_enum!(
    /// Kind of a review task.
    TaskKind { Gate = "gate", PostHoc = "post_hoc", QaSample = "qa_sample" }
);
string_enum!(
    /// State of a review task as stored.
    TaskState { Open = "open", Claimed = "claimed", Done = "done", Expired = "expired", Cancelled = "cancelled" }
);
string_enum!(
    /// What happens when a review's SLA runs out with nowhere to escalate.
    OnTimeout { Reject = "reject", Approve = "approve", Escalate = "escalate" }
);
string_enum!(
    /// EU AI Act risk tier.
    RiskTier { Minimal = "minimal", Limited = "limited", High = "high", Unacceptable = "unacceptable" }
);
string_enum!(
    /// Oversight mode of a system.
    Oversight { InTheLoop = "in_the_loop", OnTheLoop = "on_the_loop", Automated = "automated" }
);
string_enum!(
    /// Kill switch.
    SystemStatus { Active = "active", Paused = "paused" }
);
string_enum!(
    /// A user's role.
    Role { Admin = "admin", PolicyAuthor = "policy_author", Reviewer = "reviewer", Auditor = "auditor" }
);
string_enum!(
    /// Where a user comes from: made by an admin, the first admin (who keeps
    /// a password login when passwords are off: break-glass), or signed in
    /// through OpenID Connect (docs/sso.md).
    UserSource { Local = "local", Bootstrap = "bootstrap", Oidc = "oidc" }
);
string_enum!(
    /// What a reviewer group can choose to hear about (docs/notifications.md).
    NotifyEvent { TaskCreated = "task.created", TaskEscalated = "task.escalated", SlaWarning = "task.sla_warning" }
);
string_enum!(
    /// Where a notification goes; `slack_update` rewrites the Slack messages
    /// about a task after something happened to it.
    Channel { Email = "email", Slack = "slack", Teams = "teams", SlackUpdate = "slack_update" }
);
string_enum!(
    /// The type of an audit event: the log's closed vocabulary
    /// (docs/audit.md). [`crate::audit::event::Event`] builds each one.
    EventKind {
        SystemCreated = "system.created", SystemUpdated = "system.updated",
        SystemPaused = "system.paused", SystemResumed = "system.resumed",
        WebhookSet = "system.webhook_set", WebhookRemoved = "system.webhook_removed",
        UserCreated = "user.created", UserUpdated = "user.updated",
        UserPasswordSet = "user.password_set", UserDisabled = "user.disabled", UserEnabled = "user.enabled",
        UserBreakGlassLogin = "user.break_glass_login", UserAwaySet = "user.away_set",
        KeyCreated = "key.created", KeyRevoked = "key.revoked",
        PolicyPublished = "policy.published", PolicyActivated = "policy.activated",
        PolicyShadowStarted = "policy.shadow_started", PolicyShadowStopped = "policy.shadow_stopped",
        ProposalSubmitted = "proposal.submitted", ProposalRouted = "proposal.routed",
        ProposalResolved = "proposal.resolved", ProposalOverridden = "proposal.overridden",
        ProposalCancelled = "proposal.cancelled", ProposalErased = "proposal.erased",
        TaskCreated = "task.created", TaskClaimed = "task.claimed", TaskReleased = "task.released",
        TaskEscalated = "task.escalated", TaskExpired = "task.expired",
        TaskSlaWarning = "task.sla_warning",
        TaskAssigned = "task.assigned", TaskReturned = "task.returned",
        DecisionRecorded = "decision.recorded",
        CommentAdded = "comment.added",
        GrantCreated = "grant.created", GrantUsed = "grant.used",
        GrantRevoked = "grant.revoked", GrantExpired = "grant.expired",
        GroupNotificationsSet = "group.notifications_set", GroupUpdated = "group.updated",
    }
);

impl serde::Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl PartialEq<&str> for EventKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl EventKind {
    /// Whether the event is about one proposal (its subject is the
    /// proposal's id): what a system's webhook and event stream carry.
    pub fn is_about_a_proposal(self) -> bool {
        use EventKind as K;
        match self {
            K::ProposalSubmitted
            | K::ProposalRouted
            | K::ProposalResolved
            | K::ProposalOverridden
            | K::ProposalCancelled
            | K::ProposalErased
            | K::TaskCreated
            | K::TaskClaimed
            | K::TaskReleased
            | K::TaskEscalated
            | K::TaskExpired
            | K::TaskSlaWarning
            | K::TaskAssigned
            | K::TaskReturned
            | K::DecisionRecorded
            | K::CommentAdded
            | K::GrantUsed => true,
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
            | K::GrantCreated
            | K::GrantRevoked
            | K::GrantExpired
            | K::GroupNotificationsSet
            | K::GroupUpdated => false,
        }
    }
}

impl ProposalStatus {
    /// Terminal states never change.
    pub fn is_terminal(self) -> bool {
        self != ProposalStatus::Pending
    }
}

impl TaskState {
    /// A task that can still be claimed or decided.
    pub fn is_active(self) -> bool {
        matches!(self, TaskState::Open | TaskState::Claimed)
    }
}
