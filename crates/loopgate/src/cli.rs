//! The command line, declared with clap. Every server setting is also read
//! from `loopgate.toml` and `LOOPGATE_*` (flags > environment > file).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// What `loopgate --version` prints: the version, the git commit and the
/// day of the build (`build.rs`).
pub(crate) const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("LOOPGATE_COMMIT"),
    ", built ",
    env!("LOOPGATE_BUILD_DATE"),
    ")"
);

/// loopgate: a human-in-the-loop control plane for AI.
#[derive(Debug, Parser)]
#[command(name = "loopgate", version = VERSION, about)]
pub(crate) struct Cli {
    /// Configuration file (default: ./loopgate.toml when it exists).
    #[arg(long, global = true, env = "LOOPGATE_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Run the server with seeded scenarios, demo accounts and a simulator.
    Demo(DemoArgs),
    /// Manage AI systems.
    #[command(subcommand)]
    System(SystemCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Policies: validate locally, publish, list.
    #[command(subcommand)]
    Policy(crate::policy::PolicyCommand),
    /// Submit a proposal.
    Submit(SubmitArgs),
    /// Work the review queue.
    #[command(subcommand)]
    Review(ReviewCommand),
    /// The tamper-evident audit log: key, checkpoints, proofs, export, offline verification.
    #[command(subcommand)]
    Audit(crate::audit::AuditCommand),
    /// Erase payloads (right to erasure); the audit log keeps verifying.
    #[command(subcommand)]
    Erase(crate::audit::EraseCommand),
    /// Feedback and oversight figures of a system over a period.
    #[command(subcommand)]
    Report(crate::report::ReportCommand),
    /// Export data: labeled proposals for retraining.
    #[command(subcommand)]
    Export(crate::report::ExportCommand),
    /// A system's webhook: set, show, remove, delivery history, redelivery.
    #[command(subcommand)]
    Webhook(crate::webhook::WebhookCommand),
    /// Reviewer groups: how their tasks are assigned (`group assign`), who hears about them (`group notify`).
    #[command(subcommand)]
    Group(crate::notify::GroupCommand),
    /// Messages to people (email, Slack, Teams) and their attempts.
    #[command(subcommand)]
    Notifications(crate::notify::NotificationsCommand),
    /// An MCP gateway: agent tool calls to an upstream MCP server go through loopgate policy and review.
    Mcp(crate::mcp::McpArgs),
    /// Load-test a running server and print throughput and latency.
    Bench(crate::bench::BenchArgs),
    /// A TCP relay that adds a round-trip time (for benchmarks over a "network").
    #[command(hide = true)]
    LatencyRelay(crate::relay::RelayArgs),
    /// Migrate the database schema (runs at start too); `--check` only reports.
    Migrate(crate::database::MigrateArgs),
    /// Write a consistent copy of an SQLite database (safe while serving).
    Backup(crate::database::BackupArgs),
    /// Copy everything from one database into an empty one (SQLite to PostgreSQL).
    MigrateData(crate::database::MigrateDataArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8460].
    #[arg(long, env = "LOOPGATE_BIND")]
    pub(crate) bind: Option<SocketAddr>,
    /// Data directory [default: ./loopgate-data].
    #[arg(long, env = "LOOPGATE_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Database URL, `sqlite://PATH` or `postgres://…` [default: <data-dir>/loopgate.db].
    #[arg(long, env = "LOOPGATE_DATABASE_URL")]
    pub(crate) database_url: Option<String>,
    /// Cedar policy file or directory of `*.cedar` files, published at start when changed.
    #[arg(long, env = "LOOPGATE_POLICIES")]
    pub(crate) policies: Option<PathBuf>,
    /// Refuse proposals for actions without a declared shape [default: false].
    #[arg(long, env = "LOOPGATE_REQUIRE_SHAPES")]
    pub(crate) require_shapes: Option<bool>,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    #[command(flatten)]
    pub(crate) serve: ServeArgs,
    /// Proposals per second the simulator submits (0 turns it off).
    #[arg(long, default_value_t = 1.0)]
    pub(crate) rate: f64,
    /// Proposals per scenario in the 30 days of history made on the first
    /// start (decided by the same rules the dashboards should find).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub(crate) history: u64,
    /// Start without history: empty dashboards until the simulator fills them.
    #[arg(long, conflicts_with = "history")]
    pub(crate) no_history: bool,
    /// The history's random seed (the same seed makes the same month).
    #[arg(long, default_value_t = 2026)]
    pub(crate) seed: u64,
}

/// Where the server is and who is calling.
#[derive(Debug, Args)]
pub(crate) struct Remote {
    /// Server URL [default: http://127.0.0.1:8460].
    #[arg(long, env = "LOOPGATE_SERVER", global = true)]
    pub(crate) server: Option<String>,
    /// API token or system key.
    #[arg(long, env = "LOOPGATE_TOKEN", global = true, hide_env_values = true)]
    pub(crate) token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SystemCommand {
    /// List systems.
    List(Remote0),
    /// Register a system.
    Create {
        /// Slug, e.g. `fraud-detector`.
        id: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Accountable owner.
        #[arg(long, default_value = "")]
        owner: String,
        /// Intended purpose.
        #[arg(long, default_value = "")]
        purpose: String,
        /// minimal, limited, high, unacceptable.
        #[arg(long, default_value = "limited")]
        risk_tier: String,
        /// in_the_loop, on_the_loop, automated.
        #[arg(long, default_value = "in_the_loop")]
        oversight: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Kill switch: reject every new proposal of the system.
    Pause(SystemRef),
    /// Lift the kill switch.
    Resume(SystemRef),
    /// Issue a new API key (shown once).
    Key {
        /// System id.
        id: String,
        #[command(flatten)]
        credential: CredentialArgs,
        #[command(flatten)]
        remote: Remote,
    },
    /// List a system's API keys (never their secrets).
    Keys(SystemRef),
    /// Revoke an API key: refused at once, on every replica.
    RevokeKey {
        /// System id.
        id: String,
        /// Key id (`key_…`).
        key_id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Declare actions and attribute types (JSON or YAML file) for the generated Cedar schema.
    Shape {
        /// System id.
        id: String,
        /// `{"actions": {"block_card": {"context": {"amount_minor": "Long"}}}, "subject_attributes": {...}}`.
        file: PathBuf,
        #[command(flatten)]
        remote: Remote,
    },
    /// Erase payloads this long after a proposal settles (ISO 8601, e.g. `P90D`), or `off`.
    Retention {
        /// System id.
        id: String,
        /// `P90D`, `PT12H`, ... or `off`.
        period: String,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Debug, Args)]
pub(crate) struct Remote0 {
    #[command(flatten)]
    pub(crate) remote: Remote,
}

#[derive(Debug, Args)]
pub(crate) struct SystemRef {
    /// System id.
    pub(crate) id: String,
    #[command(flatten)]
    pub(crate) remote: Remote,
}

#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// List users.
    List(Remote0),
    /// Create a user.
    Create {
        /// Login name.
        username: String,
        /// Roles, comma separated: admin, policy_author, reviewer, auditor.
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        /// Reviewer groups, comma separated.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// Email address (notifications, decision links).
        #[arg(long)]
        email: Option<String>,
        /// Slack member id (`U…`): their Slack clicks act as this user.
        #[arg(long)]
        slack_user_id: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Set a user's email address and Slack member id (`""` removes one).
    Contact {
        /// User id (`usr_…`).
        id: String,
        /// Email address.
        #[arg(long)]
        email: Option<String>,
        /// Slack member id (`U…`).
        #[arg(long)]
        slack_user_id: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// How a user hears about their groups' tasks, per channel: `default`,
    /// `each`, `off` or `digest:<minutes>` (users may set their own).
    Notify {
        /// User id (`usr_…`).
        id: String,
        /// By email.
        #[arg(long, default_value = "default")]
        email: String,
        /// By Slack direct message.
        #[arg(long, default_value = "default")]
        slack: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Away until a time (RFC 3339; `""`: back), and who stands in: tasks
    /// and messages meant for the user go to the delegate (a member of the
    /// same group; `""`: nobody). Users may set their own.
    Away {
        /// User id (`usr_…`).
        id: String,
        /// Away until then (`2026-12-24T00:00:00Z`; `""`: back now).
        #[arg(long)]
        until: Option<String>,
        /// The stand-in's username (`""`: nobody).
        #[arg(long)]
        delegate: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Set a user's web UI password (read from stdin, one line; at least 12
    /// characters). Ends their sessions.
    Password {
        /// User id (`usr_…`).
        id: String,
        /// Also revoke every personal token of the user.
        #[arg(long)]
        revoke_tokens: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Issue a personal API token (shown once).
    Token {
        /// User id (`usr_…`).
        id: String,
        #[command(flatten)]
        credential: CredentialArgs,
        #[command(flatten)]
        remote: Remote,
    },
    /// List a user's personal tokens (never their secrets).
    Tokens(UserRef),
    /// Revoke a personal token: refused at once, on every replica.
    RevokeToken {
        /// User id (`usr_…`).
        id: String,
        /// Token id (`tok_…`).
        token_id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Disable a user: their sessions end, their tokens, streams and
    /// long-polls are refused at once.
    Disable(UserRef),
    /// Enable a disabled user again.
    Enable(UserRef),
}

#[derive(Debug, Args)]
pub(crate) struct UserRef {
    /// User id (`usr_…`).
    pub(crate) id: String,
    #[command(flatten)]
    pub(crate) remote: Remote,
}

/// A new key's or token's name and lifetime.
#[derive(Debug, Args)]
pub(crate) struct CredentialArgs {
    /// What it is for, e.g. `ci`.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// ISO 8601 duration after which it stops working, e.g. `P90D`.
    #[arg(long)]
    pub(crate) expires_in: Option<String>,
}

impl CredentialArgs {
    pub(crate) fn body(self) -> loopgate_proto::CreateCredential {
        loopgate_proto::CreateCredential {
            name: self.name,
            expires_in: self.expires_in,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct SubmitArgs {
    /// A JSON file with the whole proposal (`-` for stdin); the flags below build one instead.
    #[arg(long)]
    pub(crate) file: Option<PathBuf>,
    /// System id (needed with a personal token).
    #[arg(long)]
    pub(crate) system: Option<String>,
    /// Action.
    #[arg(long)]
    pub(crate) action: Option<String>,
    /// Subject as TYPE:ID, e.g. `Account:acct-1`.
    #[arg(long)]
    pub(crate) subject: Option<String>,
    /// Input JSON.
    #[arg(long, default_value = "{}")]
    pub(crate) input: String,
    /// Output JSON.
    #[arg(long, default_value = "{}")]
    pub(crate) output: String,
    /// Context JSON object.
    #[arg(long, default_value = "{}")]
    pub(crate) context: String,
    /// Model confidence in [0, 1].
    #[arg(long)]
    pub(crate) confidence: Option<f64>,
    /// Idempotency key.
    #[arg(long)]
    pub(crate) idempotency_key: Option<String>,
    /// Wait until the proposal is resolved.
    #[arg(long)]
    pub(crate) wait: bool,
    #[command(flatten)]
    pub(crate) remote: Remote,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ReviewCommand {
    /// Your open tasks.
    List {
        /// Only this group.
        #[arg(long)]
        group: Option<String>,
        /// Only the tasks assigned to you or claimed by you.
        #[arg(long)]
        mine: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// A task and its proposal.
    Show(TaskRef),
    /// Take the lease on a task.
    Claim(TaskRef),
    /// Approve, optionally with a standing grant where the task's policy
    /// allows one (`grantable` on the task).
    Approve {
        #[command(flatten)]
        decide: Decide,
        /// Give a standing grant for this long (`30m`, `1h`, `PT1H`): later
        /// proposals it covers are approved without review.
        #[arg(long)]
        grant_for: Option<String>,
        /// The grant's uses [default: until it ends].
        #[arg(long, requires = "grant_for")]
        grant_uses: Option<u32>,
        /// What the grant covers: the same output, or any output for the same subject.
        #[arg(long, requires = "grant_for", value_parser = ["same_output", "same_subject"], default_value = "same_output")]
        grant_scope: String,
    },
    /// Standing grants your groups gave (live ones unless `--all`).
    Grants {
        /// Include used up, expired and revoked grants.
        #[arg(long)]
        all: bool,
        /// Only this system.
        #[arg(long)]
        system: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Revoke a standing grant at once.
    RevokeGrant {
        /// Grant id (`gnt_…`).
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Reject.
    Reject(Decide),
    /// Approve an edited output.
    Modify {
        #[command(flatten)]
        decide: Decide,
        /// The edited output JSON.
        #[arg(long)]
        output: String,
    },
    /// Send up the escalation chain.
    Escalate(Decide),
    /// Approve or reject several tasks at once, with one rationale (each is
    /// its own decision; one that cannot be made fails alone).
    Batch {
        /// `approve` or `reject`.
        #[arg(long, value_parser = ["approve", "reject"])]
        verdict: String,
        /// Task ids (`tsk_…`), at most 100.
        #[arg(required = true, num_args = 1..=100)]
        ids: Vec<String>,
        /// Why.
        #[arg(long, short)]
        rationale: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Answer the AI with words instead of a yes or no (the proposal ends
    /// `returned`).
    Respond {
        #[command(flatten)]
        decide: Decide,
        /// The message the AI gets back.
        #[arg(long, short)]
        message: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct TaskRef {
    /// Task id (`tsk_…`).
    pub(crate) id: String,
    #[command(flatten)]
    pub(crate) remote: Remote,
}

#[derive(Debug, Args)]
pub(crate) struct Decide {
    /// Task id (`tsk_…`).
    pub(crate) id: String,
    /// Why.
    #[arg(long, short)]
    pub(crate) rationale: Option<String>,
    #[command(flatten)]
    pub(crate) remote: Remote,
}
