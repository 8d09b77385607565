//! The `Store` trait: every durable read and write of loopgate, and its
//! backends: embedded SQLite and PostgreSQL (`sql::SqlStore`).
//!
//! Architecture invariant: one trait method is one atomic unit. Writes that
//! depend on what was read (claims, decisions, timers) load the state, call
//! the pure core function, and write the transition it returns, all in one
//! transaction. A method's future resolves only once its commit is durable.
//! The store knows rows and domain types, not HTTP.

pub mod aggregates;
mod db;
mod error;
pub mod files;
mod model;
pub mod sql;
#[doc(hidden)]
pub mod testing;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use loopgate_core::audit::Hash;
use loopgate_core::review::{DecisionInput, ReviewError};
use loopgate_core::{Digest, ProposalId, SystemId, TaskId, Timestamp, UserId};

pub use error::{EraseError, GrantError, StoreError, SubmitError, TxError};
pub use model::*;

/// What the writer can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriterState {
    /// Writes are made.
    Ready,
    /// The last group could not be committed (e.g. the disk is full); the
    /// next one may succeed.
    Failing(String),
    /// The writer thread ended (it panicked): no write can be made again in
    /// this process.
    Stopped,
}

/// What the writers did since the process started (`/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WriteStats {
    /// Write jobs run to their end (committed or refused).
    pub jobs: u64,
    /// Their round trips to the database server (PostgreSQL; 0 on SQLite,
    /// which runs in the process).
    pub round_trips: u64,
    /// Attempts run again after losing a race (PostgreSQL).
    pub retries: u64,
    /// How long answered writes waited for a writer to begin them.
    pub waited: Durations,
    /// How long answered writes took from a writer beginning them to their
    /// answer: their statements, the commit (on SQLite their group's), and
    /// runs again after a lost race.
    pub ran: Durations,
}

/// The upper bounds, in seconds, of the buckets of the writes' histograms.
pub const DURATION_BOUNDS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// A histogram of durations, as Prometheus keeps one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Durations {
    /// The upper bounds of its buckets, in seconds, ascending.
    pub bounds: &'static [f64; 12],
    /// How many took at most each bound (cumulative).
    pub buckets: [u64; 12],
    /// How many in all.
    pub count: u64,
    /// Their sum, in microseconds.
    pub sum_micros: u64,
}

impl Default for Durations {
    fn default() -> Durations {
        DurationCounts::default().snapshot()
    }
}

/// A [`Durations`] histogram kept in atomics, shared by the threads that
/// record into it. `Default` has the writes' bounds ([`DURATION_BOUNDS`]).
#[derive(Debug)]
pub struct DurationCounts {
    bounds: &'static [f64; 12],
    buckets: [AtomicU64; 12],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Default for DurationCounts {
    fn default() -> DurationCounts {
        DurationCounts::new(&DURATION_BOUNDS)
    }
}

impl DurationCounts {
    /// An empty histogram with buckets up to `bounds` (seconds, ascending).
    pub fn new(bounds: &'static [f64; 12]) -> DurationCounts {
        DurationCounts {
            bounds,
            buckets: Default::default(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Counts `took` in every bucket whose bound it does not exceed.
    pub fn record(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// What it holds now.
    pub fn snapshot(&self) -> Durations {
        Durations {
            bounds: self.bounds,
            buckets: std::array::from_fn(|n| self.buckets[n].load(Ordering::Relaxed)),
            count: self.count.load(Ordering::Relaxed),
            sum_micros: self.sum_micros.load(Ordering::Relaxed),
        }
    }
}

/// Every durable read and write.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The QA sampling secret: `candidate` is kept on first call, and the kept
    /// one is returned ever after.
    async fn sampling_secret(&self, candidate: String) -> Result<String, StoreError>;

    /// Creates the first admin when there are no users. Returns whether it did.
    async fn bootstrap_admin(
        &self,
        admin: NewUser,
        token: Option<NewCredential>,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// The credential a hash belongs to, unless it is revoked or its user
    /// is disabled (expiry is the caller's to judge).
    async fn principal(&self, credential_hash: &str) -> Result<Option<Authenticated>, StoreError>;
    /// Records that a credential was used at `now`.
    async fn touch_credential(&self, id: &str, now: Timestamp) -> Result<(), StoreError>;
    /// Every key or token of an owner, newest first, revoked ones included.
    async fn credentials(
        &self,
        owner: &CredentialOwner,
    ) -> Result<Vec<CredentialRecord>, StoreError>;
    /// Revokes a key or token of `owner` (`NotFound` when it has no such
    /// credential); revoking twice changes nothing.
    async fn revoke_credential(
        &self,
        owner: &CredentialOwner,
        id: &str,
        actor: &str,
        now: Timestamp,
    ) -> Result<CredentialRecord, StoreError>;

    /// Creates a user (`Conflict` when the username is taken).
    async fn create_user(
        &self,
        user: NewUser,
        actor: &str,
        now: Timestamp,
    ) -> Result<UserRecord, StoreError>;
    /// All users, by username.
    async fn users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// One user.
    async fn user(&self, id: &UserId) -> Result<Option<UserRecord>, StoreError>;
    /// Changes roles, groups, password, or whether the user is disabled.
    async fn update_user(
        &self,
        id: &UserId,
        patch: UserPatch,
        actor: &str,
        now: Timestamp,
    ) -> Result<UserRecord, StoreError>;
    /// A user and their password hash, by username.
    async fn login_user(&self, username: &str) -> Result<Option<LoginRecord>, StoreError>;
    /// Starts a web session at `now`.
    async fn create_session(&self, session: NewSession, now: Timestamp) -> Result<(), StoreError>;
    /// The session a cookie hash belongs to, if it exists (expiry is the
    /// caller's to judge).
    async fn session(&self, hash: &str) -> Result<Option<SessionRecord>, StoreError>;
    /// Records activity on a session.
    async fn touch_session(&self, hash: &str, now: Timestamp) -> Result<(), StoreError>;
    /// Ends a session (logout, expiry).
    async fn delete_session(&self, hash: &str) -> Result<(), StoreError>;
    /// Remembers a login sent to the identity provider (and forgets
    /// logins that expired).
    async fn start_oidc_login(&self, login: OidcLogin, now: Timestamp) -> Result<(), StoreError>;
    /// Takes the login with this state hash, if it exists and has not
    /// expired: a state works once.
    async fn take_oidc_login(
        &self,
        state_hash: &str,
        now: Timestamp,
    ) -> Result<Option<OidcLogin>, StoreError>;
    /// Signs in a user the identity provider vouched for, as core's
    /// `sso::sign_in` decides: creates them at their first sign-in, updates
    /// their roles and groups, or refuses (ending a known user's sessions
    /// when they lost their access). Every change is audited.
    async fn oidc_sign_in(
        &self,
        identity: OidcIdentity,
        now: Timestamp,
    ) -> Result<OidcSignIn, StoreError>;
    /// Audits a break-glass password login (`user.break_glass_login`).
    async fn log_break_glass(
        &self,
        user: &UserId,
        actor: &str,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Stores the hash of a new key or token.
    async fn create_credential(
        &self,
        credential: NewCredential,
        actor: &str,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Registers a system (`Conflict` when the id is taken).
    async fn create_system(
        &self,
        system: NewSystem,
        actor: &str,
        now: Timestamp,
    ) -> Result<SystemRecord, StoreError>;
    /// All systems, by id.
    async fn systems(&self) -> Result<Vec<SystemRecord>, StoreError>;
    /// One system.
    async fn system(&self, id: &SystemId) -> Result<Option<SystemRecord>, StoreError>;
    /// Changes a system (the kill switch is `status`).
    async fn update_system(
        &self,
        id: &SystemId,
        patch: SystemPatch,
        actor: &str,
        now: Timestamp,
    ) -> Result<SystemRecord, StoreError>;

    /// Stores a policy version (once per text) and activates it as `mode`
    /// (`Live` or `Shadow`), with its description as the reason.
    async fn publish_policy(
        &self,
        policy: NewPolicy,
        mode: ActivationMode,
        actor: &str,
        now: Timestamp,
    ) -> Result<PolicyRecord, StoreError>;

    /// Activates a stored version (rollback, promotion of a shadow) or ends
    /// shadow evaluation (`ShadowOff`, `version` ignored). `NotFound` for an
    /// unknown version.
    async fn activate_policy(
        &self,
        version: &str,
        mode: ActivationMode,
        reason: &str,
        actor: &str,
        now: Timestamp,
    ) -> Result<PolicyState, StoreError>;

    /// One stored version.
    async fn policy(&self, version: &str) -> Result<Option<PolicyRecord>, StoreError>;

    /// The live and shadow versions.
    async fn policy_state(&self) -> Result<PolicyState, StoreError>;

    /// Every activation, newest first.
    async fn activations(&self) -> Result<Vec<Activation>, StoreError>;

    /// What the shadow `version` disagreed on since `since` (at most `limit` recent rows).
    async fn shadow_summary(
        &self,
        version: &str,
        since: Timestamp,
        limit: u32,
    ) -> Result<ShadowSummary, StoreError>;

    /// How many proposals were submitted at or after `since`.
    async fn count_since(&self, since: Timestamp) -> Result<u64, StoreError>;

    /// Proposals submitted at or after `since` with `seq > after`, in order.
    async fn replay_rows(
        &self,
        since: Timestamp,
        after: i64,
        limit: u32,
    ) -> Result<Vec<ReplayRow>, StoreError>;

    /// Every stored version, newest first.
    async fn policies(&self) -> Result<Vec<PolicyRecord>, StoreError>;

    /// Inserts a proposal with its planned first state, or returns the
    /// stored one with the same idempotency key and digest.
    async fn submit(
        &self,
        new: NewProposal,
        now: Timestamp,
    ) -> Result<Submitted, TxError<SubmitError>>;
    /// The proposal a system stored under an idempotency key, as a replay
    /// with `fingerprint` answers it; `IdempotencyConflict` when it was
    /// stored with other contents. A read: replays are answered without the
    /// writer (what `submit` does first, in its transaction).
    async fn replay(
        &self,
        system: &SystemId,
        key: &str,
        fingerprint: &Digest,
    ) -> Result<Option<ProposalRecord>, TxError<SubmitError>>;
    /// One proposal with its decisions.
    async fn proposal(&self, id: &ProposalId) -> Result<Option<ProposalRecord>, StoreError>;
    /// The groups whose tasks are or were on a proposal (each task's first
    /// group and its current one), sorted.
    async fn proposal_groups(&self, id: &ProposalId) -> Result<Vec<String>, StoreError>;
    /// Adds a comment to a proposal (`NotFound` without it), audited as
    /// `comment.added` with the body's salted hash.
    async fn add_comment(
        &self,
        comment: NewComment,
        now: Timestamp,
    ) -> Result<CommentRecord, StoreError>;
    /// A proposal's comments, oldest first.
    async fn comments(&self, proposal: &ProposalId) -> Result<Vec<CommentRecord>, StoreError>;
    /// A page of proposals, newest first.
    async fn proposals(&self, filter: ProposalFilter) -> Result<Paged<ProposalRecord>, StoreError>;
    /// Withdraws a pending proposal.
    async fn cancel(
        &self,
        id: &ProposalId,
        actor: &str,
        now: Timestamp,
    ) -> Result<ProposalRecord, TxError<ReviewError>>;

    /// A page of tasks, oldest first.
    async fn tasks(
        &self,
        filter: TaskFilter,
        now: Timestamp,
    ) -> Result<Paged<TaskRecord>, StoreError>;
    /// One task.
    async fn task(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError>;
    /// Takes or renews the lease.
    async fn claim(
        &self,
        id: &TaskId,
        reviewer: &ReviewerRef,
        lease: Duration,
        now: Timestamp,
    ) -> Result<TaskRecord, TxError<ReviewError>>;
    /// Gives the lease back.
    async fn release(
        &self,
        id: &TaskId,
        reviewer: &ReviewerRef,
        now: Timestamp,
    ) -> Result<TaskRecord, TxError<ReviewError>>;
    /// Records a decision and applies its effect.
    async fn decide(
        &self,
        id: &TaskId,
        reviewer: &ReviewerRef,
        input: DecisionInput,
        now: Timestamp,
    ) -> Result<DecisionOutcome, TxError<ReviewError>>;
    /// Standing grants, newest first.
    async fn grants(&self, filter: GrantFilter) -> Result<Vec<loopgate_core::Grant>, StoreError>;
    /// One standing grant.
    async fn grant(
        &self,
        id: &loopgate_core::GrantId,
    ) -> Result<Option<loopgate_core::Grant>, StoreError>;
    /// Revokes a grant at once (every replica reads grants in the writing
    /// transaction), audited as `grant.revoked`.
    async fn revoke_grant(
        &self,
        id: &loopgate_core::GrantId,
        actor: &str,
        now: Timestamp,
    ) -> Result<loopgate_core::Grant, TxError<GrantError>>;
    /// Runs every deadline due at `now` (at most `limit`), and ends the
    /// grants whose time ran out (`grant.expired`); returns what changed.
    async fn run_timers(&self, now: Timestamp, limit: u32)
    -> Result<Vec<TimerOutcome>, StoreError>;

    /// Open tasks per group (for metrics and the queue).
    async fn queue_depth(&self, now: Timestamp) -> Result<Vec<(String, u64)>, StoreError>;
    /// Erases a settled proposal's payloads (subject, input, output,
    /// explanation, context, rationales, edited outputs, labels), its salt
    /// and its idempotency fingerprint; the audit log keeps verifying.
    async fn erase(
        &self,
        id: &ProposalId,
        actor: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<ProposalRecord, TxError<EraseError>>;
    /// Erases proposals of systems with a retention period that settled
    /// before it ran out (at most `limit`); returns their ids.
    async fn erase_expired(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<ProposalId>, StoreError>;

    /// Moves up to `limit` queued events into the audit log, in order, and
    /// grows the tree and its tiles in the same transaction. Only one
    /// sequencer may run at a time.
    async fn sequence(&self, limit: u32) -> Result<Sequenced, StoreError>;
    /// The sequenced tree's size and root.
    async fn tree_head(&self) -> Result<TreeHead, StoreError>;
    /// Stores a signed checkpoint.
    async fn add_checkpoint(&self, checkpoint: CheckpointRecord) -> Result<(), StoreError>;
    /// The newest checkpoint.
    async fn latest_checkpoint(&self) -> Result<Option<CheckpointRecord>, StoreError>;
    /// Checkpoints larger than `after`, smallest first.
    async fn checkpoints(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<CheckpointRecord>, StoreError>;
    /// Entries `[start, end)` of the log.
    async fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError>;
    /// A proposal's (or any subject's) entries with their indexes.
    async fn subject_entries(&self, subject: &str) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
    /// The widest stored version of a hash tile.
    async fn tile(&self, level: u32, index: u64) -> Result<Option<Vec<u8>>, StoreError>;
    /// Inclusion proofs of `indexes` in the tree of `size` leaves, read from
    /// the tiles in one go (`size` at most the tree head's).
    async fn inclusion_proofs(
        &self,
        indexes: Vec<u64>,
        size: u64,
    ) -> Result<Vec<Vec<Hash>>, StoreError>;
    /// The consistency proof between two sizes (at most the tree head's).
    async fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, StoreError>;
    /// Up to `limit` events after position `after`, oldest first.
    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError>;

    /// The position of the newest event (0 without events).
    async fn last_event_seq(&self) -> Result<i64, StoreError>;

    /// Sets (or replaces) a system's webhook; `NotFound` without the system.
    /// Only events committed after the outbox's cursor reach it.
    async fn set_webhook(
        &self,
        webhook: WebhookConfig,
        actor: &str,
        now: Timestamp,
    ) -> Result<WebhookConfig, StoreError>;
    /// Removes a system's webhook; its pending deliveries fail ("webhook
    /// removed"). Returns whether there was one.
    async fn remove_webhook(
        &self,
        system: &SystemId,
        actor: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// A system's webhook.
    async fn webhook(&self, system: &SystemId) -> Result<Option<WebhookConfig>, StoreError>;
    /// Moves the outbox cursor over up to `limit` events, queueing a delivery
    /// for each event a webhook subscribes to. Returns how many events it
    /// passed (fewer than `limit`: it has caught up).
    async fn enqueue_deliveries(&self, now: Timestamp, limit: u32) -> Result<u32, StoreError>;
    /// Up to `limit` pending deliveries due at `now`, each the oldest pending
    /// one of its proposal, leaving out the systems of `skip`, soonest first.
    async fn due_deliveries(
        &self,
        now: Timestamp,
        skip: Vec<SystemId>,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, StoreError>;
    /// Records attempts and their consequences, in one transaction.
    async fn record_attempts(&self, results: Vec<AttemptResult>) -> Result<(), StoreError>;
    /// A page of a system's deliveries, newest first.
    async fn deliveries(&self, filter: DeliveryFilter)
    -> Result<Paged<DeliveryRecord>, StoreError>;
    /// One delivery of a system, with its attempts.
    async fn delivery(
        &self,
        system: &SystemId,
        id: i64,
    ) -> Result<Option<DeliveryRecord>, StoreError>;
    /// Sends a delivery again now, with a fresh retry window, whatever its
    /// state (`NotFound` when the system has no such delivery).
    async fn redeliver(
        &self,
        system: &SystemId,
        id: i64,
        now: Timestamp,
    ) -> Result<DeliveryRecord, StoreError>;
    /// Deletes up to `limit` delivered or failed deliveries (and their
    /// attempts) queued before `before`; returns how many.
    async fn prune_deliveries(&self, before: Timestamp, limit: u32) -> Result<u32, StoreError>;

    /// Every reviewer group (with settings or members), with how its tasks
    /// are assigned.
    async fn groups(&self) -> Result<Vec<GroupRecord>, StoreError>;
    /// Sets how a group's tasks are assigned (`group.updated`).
    async fn set_group(
        &self,
        group: &str,
        settings: loopgate_core::assign::GroupSettings,
        actor: &str,
        now: Timestamp,
    ) -> Result<GroupRecord, StoreError>;

    /// Every group's notification settings, by group.
    async fn group_notifications(&self) -> Result<Vec<GroupNotifications>, StoreError>;
    /// Sets what a group hears about (`group.notifications_set`).
    async fn set_group_notifications(
        &self,
        settings: GroupNotifications,
        actor: &str,
        now: Timestamp,
    ) -> Result<GroupNotifications, StoreError>;
    /// With `warn`, logs `task.sla_warning` for open tasks past that share
    /// of their deadline (once per task and level); then moves the
    /// notification cursor over up to `limit` events, queueing each event's
    /// messages; returns how many events it passed. Reads first, and writes
    /// nothing when no group has notifications or nothing is new.
    async fn enqueue_notifications(
        &self,
        now: Timestamp,
        warn: Option<f64>,
        limit: u32,
    ) -> Result<u32, StoreError>;
    /// Pending notifications due at `now` (at most one per ordering key,
    /// the oldest), except on the `skip` channels.
    async fn due_notifications(
        &self,
        now: Timestamp,
        skip: Vec<loopgate_core::Channel>,
        limit: u32,
    ) -> Result<Vec<DueNotification>, StoreError>;
    /// Records attempts at notifications.
    async fn record_notifications(
        &self,
        results: Vec<NotificationResult>,
    ) -> Result<(), StoreError>;
    /// A page of the notification history, newest first.
    async fn notifications(
        &self,
        filter: NotificationFilter,
    ) -> Result<Paged<NotificationRecord>, StoreError>;
    /// One notification with its attempts.
    async fn notification(&self, id: i64) -> Result<Option<NotificationRecord>, StoreError>;
    /// The Slack messages posted about a task (`channel:ts`).
    async fn slack_messages(&self, task: &TaskId) -> Result<Vec<String>, StoreError>;
    /// Deletes up to `limit` sent or failed notifications queued before
    /// `before`, and expired decision links; returns how many messages.
    async fn prune_notifications(&self, before: Timestamp, limit: u32) -> Result<u32, StoreError>;
    /// Stores a new decision link.
    async fn create_decision_link(&self, link: DecisionLink) -> Result<(), StoreError>;
    /// A decision link by the hash of its token.
    async fn decision_link(&self, hash: &str) -> Result<Option<DecisionLink>, StoreError>;
    /// Marks a decision link used; `false` when it already was.
    async fn use_decision_link(&self, hash: &str, now: Timestamp) -> Result<bool, StoreError>;
    /// The enabled user with this Slack member id, or else with this email
    /// address (case-insensitive), if exactly one has it.
    async fn user_for_slack(
        &self,
        slack_user_id: &str,
        email: Option<String>,
    ) -> Result<Option<UserRecord>, StoreError>;

    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Whether writes can be made: the writer runs and its last commit did
    /// not fail.
    fn writer_state(&self) -> WriterState;

    /// Tests only: makes the writer thread panic, as a bug in it would.
    #[doc(hidden)]
    async fn crash_writer_for_tests(&self);

    /// Tests only: while `fail` is set every write fails to begin, as on a
    /// full disk; the writer keeps running.
    #[doc(hidden)]
    fn fail_writes_for_tests(&self, fail: bool);

    /// Calls `callback` whenever the log grew by another process's hand or
    /// on another connection (PostgreSQL replicas: a sequencer gave
    /// positions to committed events); never with a database of its own.
    fn watch_commits(&self, callback: Box<dyn Fn() + Send + Sync>);

    /// Calls `callback`, while this process leads, whenever a replica
    /// committed events that wait for the sequencer (PostgreSQL).
    fn watch_queued(&self, callback: Box<dyn Fn() + Send + Sync>);

    /// Calls `callback` with a proposal's id whenever any replica
    /// committed its resolution or cancellation (PostgreSQL; a waiter on
    /// another replica wakes from the commit, before the log has the
    /// events). Never with a database of its own: its writes are this
    /// process's.
    fn watch_settled(&self, callback: Box<dyn Fn(&ProposalId) + Send + Sync>);

    /// Whether this process leads: only the leader runs the audit
    /// sequencer, the timers, retention and the webhook outbox. Always true
    /// with SQLite; one replica at a time on PostgreSQL.
    fn leads(&self) -> bool;

    /// Whether a committed event waits for the sequencer before it can be
    /// read (PostgreSQL, where writers run in parallel): the sequencer then
    /// runs at every commit rather than on its own time.
    fn sequences_later(&self) -> bool;

    /// What the writers did since the process started.
    fn write_stats(&self) -> WriteStats;

    /// Returns once every event committed before the call has its log
    /// position, so that a read of the log sees the caller's writes (the
    /// sequencer hashes them into the tree later). On PostgreSQL it gives
    /// positions to every event committed so far, in one short transaction;
    /// on SQLite an event has its position when it commits.
    async fn settle_log(&self) -> Result<(), StoreError>;

    /// The proposals of `filter`, oldest first, with their task and human
    /// decisions: what analytics reads for part of a day.
    async fn review_facts(&self, filter: AnalyticsFilter) -> Result<Vec<ReviewFact>, StoreError>;

    /// The analytics counts of `query`, summed over days and actions, per
    /// metric and key (see [`aggregates`]).
    async fn analytics_totals(&self, query: TotalsQuery) -> Result<Vec<Total>, StoreError>;

    /// Recomputes every analytics count from the stored proposals (they are
    /// kept in step by every write; this is for repairs and imports).
    async fn rebuild_analytics(&self) -> Result<(), StoreError>;

    /// Up to `limit` proposals of `filter` whose reviewers disagreed, oldest
    /// first.
    async fn disagreements(
        &self,
        filter: AnalyticsFilter,
        limit: u32,
    ) -> Result<Vec<ProposalId>, StoreError>;

    /// The subject attribute names of a system's latest 1,000 proposals.
    async fn attribute_keys(&self, system: &SystemId) -> Result<Vec<String>, StoreError>;

    /// Up to `limit` proposals of `filter` that people decided and whose
    /// payload is not erased, after `after_seq`, oldest first.
    async fn label_rows(
        &self,
        filter: AnalyticsFilter,
        after_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<LabelRow>, StoreError>;
}
