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
    ProposalStatus { Pending = "pending", Approved = "approved", Rejected = "rejected", Cancelled = "cancelled" }
);
string_enum!(
    /// Who settled a proposal.
    DecidedBy { Policy = "policy", Reviewers = "reviewers", Timeout = "timeout", KillSwitch = "kill_switch", System = "system" }
);
string_enum!(
    /// A reviewer's verdict.
    Verdict { Approve = "approve", Reject = "reject", Modify = "modify", Escalate = "escalate" }
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
