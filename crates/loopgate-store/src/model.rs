//! Records the store reads and writes: domain types plus bookkeeping.

use loopgate_core::review::{Decision, Effect, Task};
use loopgate_core::routing::schema::{self, GeneratedSchema, Shape};
use loopgate_core::routing::{EvaluationError, Routing};
use loopgate_core::{
    DecidedBy, Digest, Oversight, ProposalId, ProposalStatus, RiskTier, Role, Route, SystemId,
    SystemStatus, TaskKind, TaskState, Timestamp, UserId, UserSource, Verdict,
};
use serde_json::{Map, Value};

/// Who is calling.
#[derive(Debug, Clone, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "one per request, moved rarely; a box would cost an allocation each time"
)]
pub enum Principal {
    /// A person (token).
    User(UserRecord),
    /// An AI system (API key).
    System(SystemId),
}

/// A user.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    /// Id.
    pub id: UserId,
    /// Unique login name.
    pub username: String,
    /// Roles.
    pub roles: Vec<Role>,
    /// Reviewer groups.
    pub groups: Vec<String>,
    /// Creation time.
    pub created_at: Timestamp,
    /// When an admin disabled the user (`None`: enabled). A disabled user
    /// cannot log in; their tokens and sessions are refused.
    pub disabled_at: Option<Timestamp>,
    /// Email address for notifications and decision links.
    pub email: Option<String>,
    /// Slack member id (`U…`): their Slack clicks act as this user.
    pub slack_user_id: Option<String>,
    /// What they want to hear, per channel.
    pub notify: loopgate_core::notify::Prefs,
    /// Made by an admin, the first admin, or at a first sign-in.
    pub source: UserSource,
    /// Away until then: tasks and messages meant for them go to `delegate`.
    pub away_until: Option<Timestamp>,
    /// The username who stands in for them while they are away.
    pub delegate: Option<String>,
}

/// A new user.
#[derive(Debug, Clone, PartialEq)]
pub struct NewUser {
    /// Id.
    pub id: UserId,
    /// Unique login name.
    pub username: String,
    /// Roles.
    pub roles: Vec<Role>,
    /// Reviewer groups.
    pub groups: Vec<String>,
    /// Argon2id hash of a password, if any.
    pub password_hash: Option<String>,
    /// Email address.
    pub email: Option<String>,
    /// Slack member id.
    pub slack_user_id: Option<String>,
    /// `Local` or `Bootstrap` (signed-in users are made by
    /// `Store::oidc_sign_in`).
    pub source: UserSource,
}

/// A change to a user.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserPatch {
    /// New roles.
    pub roles: Option<Vec<Role>>,
    /// New groups.
    pub groups: Option<Vec<String>>,
    /// New argon2id password hash; setting it ends the user's sessions.
    pub password_hash: Option<String>,
    /// Disable (`true`: sessions end, tokens are refused) or enable.
    pub disabled: Option<bool>,
    /// Revoke every personal token of the user (with a password change).
    pub revoke_tokens: bool,
    /// New email address (`Some(None)` removes it).
    pub email: Option<Option<String>>,
    /// New Slack member id (`Some(None)` removes it).
    pub slack_user_id: Option<Option<String>>,
    /// New notification choices.
    pub notify: Option<loopgate_core::notify::Prefs>,
    /// New absence (`Some(None)`: back).
    pub away_until: Option<Option<Timestamp>>,
    /// New stand-in username (`Some(None)`: nobody).
    pub delegate: Option<Option<String>>,
}

/// A user with the hash of their password, for logging in.
#[derive(Debug, Clone, PartialEq)]
pub struct LoginRecord {
    /// The user.
    pub user: UserRecord,
    /// Argon2id hash (PHC string), or `None` when the user has no password.
    pub password_hash: Option<String>,
}

/// A new web session.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSession {
    /// SHA-256 of the cookie's secret, hex.
    pub hash: String,
    /// Whose.
    pub user: UserId,
    /// The CSRF token bound to the session.
    pub csrf: String,
    /// When it ends, whatever the activity.
    pub expires_at: Timestamp,
    /// Signed in through OpenID Connect: the provider's ID token, handed
    /// back as `id_token_hint` at logout.
    pub id_token: Option<String>,
}

/// A live web session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    /// The user, as now.
    pub user: UserRecord,
    /// The CSRF token bound to the session.
    pub csrf: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it ends, whatever the activity.
    pub expires_at: Timestamp,
    /// The last request seen (updated at most once a minute).
    pub seen_at: Timestamp,
    /// The provider's ID token, for a session started by single sign-on.
    pub id_token: Option<String>,
}

/// A login sent to the identity provider, waiting for its callback.
#[derive(Debug, Clone, PartialEq)]
pub struct OidcLogin {
    /// SHA-256 of the `state` parameter, hex.
    pub state_hash: String,
    /// SHA-256 of the cookie that binds the login to the browser, hex.
    pub browser_hash: String,
    /// The nonce the ID token must carry.
    pub nonce: String,
    /// The PKCE code verifier.
    pub pkce_verifier: String,
    /// Where to go after login (a path in the UI).
    pub next: String,
    /// When the login stops being accepted.
    pub expires_at: Timestamp,
}

/// Who the identity provider says signed in, with what their claims map to.
#[derive(Debug, Clone, PartialEq)]
pub struct OidcIdentity {
    /// The provider's issuer URL.
    pub issuer: String,
    /// The provider's `sub`: with the issuer, the user's key.
    pub subject: String,
    /// The id and username for a first sign-in (`sso::username`).
    pub new_id: UserId,
    /// The username for a first sign-in.
    pub username: String,
    /// The `email` claim, if verified: kept for notifications at creation.
    pub email: Option<String>,
    /// Roles and groups the groups claim maps to now.
    pub access: loopgate_core::sso::Access,
}

/// How a sign-in through the provider ended.
#[derive(Debug, Clone, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "one per sign-in; a box would buy nothing"
)]
pub enum OidcSignIn {
    /// Signed in as this user (created or updated first when needed).
    SignedIn(UserRecord),
    /// Refused: disabled in loopgate.
    Disabled,
    /// Refused: no claim value maps to a role (a known user lost their
    /// access, and their sessions ended).
    Unmapped,
}

/// Whose a credential is.
#[derive(Debug, Clone, PartialEq)]
pub enum CredentialOwner {
    /// A user's personal token.
    User(UserId),
    /// A system's API key.
    System(SystemId),
}

impl CredentialOwner {
    /// The user's or system's id.
    pub fn id(&self) -> &str {
        match self {
            CredentialOwner::User(id) => id.as_str(),
            CredentialOwner::System(id) => id.as_str(),
        }
    }
}

/// A new API key or token; only its hash.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCredential {
    /// Public id.
    pub id: String,
    /// SHA-256 of the secret, hex.
    pub hash: String,
    /// Owner.
    pub owner: CredentialOwner,
    /// What it is for (shown in lists).
    pub name: String,
    /// When it stops working, if ever.
    pub expires_at: Option<Timestamp>,
}

/// An API key or token as listed: never its secret or hash.
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialRecord {
    /// Public id.
    pub id: String,
    /// What it is for.
    pub name: String,
    /// Owner.
    pub owner: CredentialOwner,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last request made with it (to the minute).
    pub last_used_at: Option<Timestamp>,
    /// When it stops working, if ever.
    pub expires_at: Option<Timestamp>,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
}

/// A credential that was presented and is neither revoked nor its user's
/// disabled; the caller checks `expires_at` against its clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Authenticated {
    /// The credential's public id.
    pub id: String,
    /// Who it speaks for.
    pub principal: Principal,
    /// When it stops working, if ever.
    pub expires_at: Option<Timestamp>,
    /// Last recorded use.
    pub last_used_at: Option<Timestamp>,
}

/// A registered system.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemRecord {
    /// Slug.
    pub id: SystemId,
    /// Name.
    pub name: String,
    /// Owner.
    pub owner: String,
    /// Purpose.
    pub purpose: String,
    /// Risk tier.
    pub risk_tier: RiskTier,
    /// Oversight mode.
    pub oversight: Oversight,
    /// Kill switch.
    pub status: SystemStatus,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Payloads of settled proposals are erased this long after settling.
    pub retention: Option<std::time::Duration>,
    /// Declared actions and attribute types (`routing::schema::Shape` JSON).
    pub shape: Option<Value>,
}

impl SystemRecord {
    /// Its declared shape, if it declares one; an error names the system.
    pub fn declared_shape(&self) -> Result<Option<Shape>, String> {
        self.shape
            .as_ref()
            .map(|value| schema::read_declaration(self.id.as_str(), value))
            .transpose()
    }

    /// The policy schema generated from what `systems` declare.
    pub fn schema_of(systems: &[SystemRecord]) -> Result<GeneratedSchema, String> {
        schema::schema_of(
            systems
                .iter()
                .map(|system| (system.id.as_str(), system.shape.as_ref())),
        )
    }
}

/// A new system.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSystem {
    /// Slug.
    pub id: SystemId,
    /// Name.
    pub name: String,
    /// Owner.
    pub owner: String,
    /// Purpose.
    pub purpose: String,
    /// Risk tier.
    pub risk_tier: RiskTier,
    /// Oversight mode.
    pub oversight: Oversight,
    /// Declared actions and attribute types.
    pub shape: Option<Value>,
}

/// A change to a system.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SystemPatch {
    /// Name.
    pub name: Option<String>,
    /// Owner.
    pub owner: Option<String>,
    /// Purpose.
    pub purpose: Option<String>,
    /// Risk tier.
    pub risk_tier: Option<RiskTier>,
    /// Oversight mode.
    pub oversight: Option<Oversight>,
    /// Kill switch.
    pub status: Option<SystemStatus>,
    /// `Some(None)` turns retention off.
    pub retention: Option<Option<std::time::Duration>>,
    /// A new declaration of actions and attribute types.
    pub shape: Option<Value>,
}

/// A policy version to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPolicy {
    /// Hash of the text.
    pub version: String,
    /// Cedar text.
    pub text: String,
    /// Why.
    pub description: String,
    /// Policy ids in the set.
    pub policy_ids: Vec<String>,
}

/// A published policy version.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyRecord {
    /// Publication order.
    pub seq: i64,
    /// Hash of the text.
    pub version: String,
    /// Cedar text.
    pub text: String,
    /// Why.
    pub description: String,
    /// Policy ids.
    pub policy_ids: Vec<String>,
    /// Who.
    pub created_by: String,
    /// When.
    pub created_at: Timestamp,
}

/// A proposal to insert, already routed and planned.
#[derive(Debug, Clone, PartialEq)]
pub struct NewProposal {
    /// Id.
    pub id: ProposalId,
    /// The first task's id, used when the plan has a task.
    pub task_id: loopgate_core::TaskId,
    /// System.
    pub system: SystemId,
    /// Action.
    pub action: String,
    /// `{"type", "id", "attributes"}`.
    pub subject: Value,
    /// Input.
    pub input: Value,
    /// Output.
    pub output: Value,
    /// Confidence.
    pub confidence: Option<f64>,
    /// Explanation.
    pub explanation: Option<Value>,
    /// Model.
    pub model: Option<Value>,
    /// Context.
    pub context: Map<String, Value>,
    /// Idempotency key.
    pub idempotency_key: Option<String>,
    /// Proposals made together share a batch (shown as one group).
    pub batch: Option<String>,
    /// The W3C `traceparent` of its submission, which its later spans join.
    pub trace_context: Option<String>,
    /// Digest (salted with `salt`).
    pub digest: Digest,
    /// The same document without the salt: what an idempotent replay must match.
    pub fingerprint: Digest,
    /// The proposal's random salt for its digest and audit hashes.
    pub salt: Vec<u8>,
    /// `user:<name>` or `system:<id>`.
    pub submitted_by: String,
    /// The live policies' routing.
    pub routing: Routing,
    /// The QA draw for the routing's sampling rate.
    pub sampled: bool,
    /// What the shadow policy version made of this proposal, when one runs.
    pub shadow: Option<ShadowOutcome>,
}

/// The shadow version's routing of one proposal.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowOutcome {
    /// The shadow version.
    pub version: String,
    /// Its route.
    pub route: loopgate_core::Route,
    /// Its matched policies.
    pub matched: Vec<String>,
    /// Its reviewer group, for review routes.
    pub group: Option<String>,
    /// Its policies that failed to evaluate.
    pub errors: Vec<EvaluationError>,
}

/// How a version is activated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationMode {
    /// Routes every proposal.
    Live,
    /// Evaluated beside the live version; never changes an outcome.
    Shadow,
    /// Ends shadow evaluation.
    ShadowOff,
}

impl ActivationMode {
    /// `live`, `shadow`, `shadow_off`.
    pub fn as_str(self) -> &'static str {
        match self {
            ActivationMode::Live => "live",
            ActivationMode::Shadow => "shadow",
            ActivationMode::ShadowOff => "shadow_off",
        }
    }
}

/// One activation: who made which version live or shadow, when and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Activation {
    /// Order.
    pub seq: i64,
    /// The version.
    pub version: String,
    /// `live`, `shadow` or `shadow_off`.
    pub mode: String,
    /// Why.
    pub reason: String,
    /// Who.
    pub actor: String,
    /// When.
    pub at: Timestamp,
}

/// The live and shadow versions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyState {
    /// The live version (none before the first publish).
    pub live: Option<PolicyRecord>,
    /// The shadow version and since when it runs.
    pub shadow: Option<(PolicyRecord, Timestamp)>,
}

/// A proposal on which the shadow version disagreed with the live one.
#[derive(Debug, Clone, PartialEq)]
pub struct Disagreement {
    /// The proposal.
    pub proposal_id: String,
    /// The shadow version.
    pub version: String,
    /// The live route.
    pub live_route: String,
    /// The shadow route.
    pub shadow_route: String,
    /// Live matched policies.
    pub live_matched: Vec<String>,
    /// Shadow matched policies.
    pub shadow_matched: Vec<String>,
    /// The shadow reviewer group.
    pub shadow_group: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// What a shadow version did since it started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShadowSummary {
    /// Proposals submitted since the shadow version started.
    pub evaluated: u64,
    /// Of those, how many it routed differently.
    pub disagreements: u64,
    /// (live route, shadow route, count), most first.
    pub transitions: Vec<(String, String, u64)>,
    /// The latest disagreements, newest first.
    pub recent: Vec<Disagreement>,
    /// Its policies that failed to evaluate, most failures first.
    pub errors: Vec<ErrorTally>,
}

/// How often one policy failed to evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorTally {
    /// The policy id.
    pub policy: String,
    /// Proposals it failed on.
    pub count: u64,
    /// The latest message.
    pub message: String,
    /// Some proposal ids, newest first.
    pub examples: Vec<String>,
}

/// A stored proposal as replay reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayRow {
    /// Storage order.
    pub seq: i64,
    /// Id.
    pub id: String,
    /// System.
    pub system: String,
    /// Action.
    pub action: String,
    /// `{"type", "id", "attributes"}` (`null` once erased).
    pub subject: Value,
    /// Context.
    pub context: Map<String, Value>,
    /// Confidence.
    pub confidence: Option<f64>,
    /// Model version.
    pub model_version: Option<String>,
    /// The route it took.
    pub route: loopgate_core::Route,
    /// Its state.
    pub status: loopgate_core::ProposalStatus,
    /// Who settled it.
    pub decided_by: Option<loopgate_core::DecidedBy>,
    /// The group of its first review task, if any.
    pub group: Option<String>,
    /// Whether its payload was erased.
    pub erased: bool,
}

/// Result of a submission.
#[derive(Debug, Clone, PartialEq)]
pub enum Submitted {
    /// Inserted now.
    Created(ProposalRecord),
    /// The same key and digest were submitted before.
    Existing(ProposalRecord),
}

/// A stored proposal.
#[derive(Debug, Clone, PartialEq)]
pub struct ProposalRecord {
    /// Order of insertion (the cursor).
    pub seq: i64,
    /// Id.
    pub id: ProposalId,
    /// System.
    pub system: SystemId,
    /// Action.
    pub action: String,
    /// Subject JSON.
    pub subject: Value,
    /// Input.
    pub input: Value,
    /// Current output.
    pub output: Value,
    /// Confidence.
    pub confidence: Option<f64>,
    /// Explanation.
    pub explanation: Option<Value>,
    /// Model.
    pub model: Option<Value>,
    /// Context.
    pub context: Map<String, Value>,
    /// Idempotency key.
    pub idempotency_key: Option<String>,
    /// Proposals made together share a batch (shown as one group).
    pub batch: Option<String>,
    /// Current digest.
    pub digest: Digest,
    /// Lifecycle state.
    pub status: ProposalStatus,
    /// Route.
    pub route: loopgate_core::Route,
    /// Policy version.
    pub policy_version: String,
    /// Matched policies.
    pub matched_policies: Vec<String>,
    /// Overridden later.
    pub overridden: bool,
    /// Edited by reviewers before resolution.
    pub modified: bool,
    /// Reviewed blind: reviewers do not see output and confidence.
    pub blind: bool,
    /// Who settled it.
    pub decided_by: Option<DecidedBy>,
    /// When.
    pub decided_at: Option<Timestamp>,
    /// Submitter.
    pub submitted_by: String,
    /// Creation time.
    pub created_at: Timestamp,
    /// Human decisions, oldest first.
    pub decisions: Vec<Decision>,
    /// The salt of the digest and the audit hashes; empty once erased.
    pub salt: Vec<u8>,
    /// When the payloads and salt were erased.
    pub erased_at: Option<Timestamp>,
    /// Policies whose evaluation failed while it was routed.
    pub policy_errors: Vec<EvaluationError>,
    /// The standing grant that approved it (`decided_by: grant`).
    pub grant_id: Option<String>,
    /// The W3C `traceparent` of its submission, which its later spans join.
    pub trace_context: Option<String>,
}

/// Filters of the proposal list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProposalFilter {
    /// Only this system.
    pub system: Option<SystemId>,
    /// Only this status.
    pub status: Option<ProposalStatus>,
    /// Only this action.
    pub action: Option<String>,
    /// Only proposals a task of one of these groups was on (a reviewer's).
    pub groups: Option<Vec<String>>,
    /// Continue after this cursor.
    pub before_seq: Option<i64>,
    /// Page size.
    pub limit: u32,
}

/// A page and the cursor of the next one.
#[derive(Debug, Clone, PartialEq)]
pub struct Paged<T> {
    /// Items.
    pub items: Vec<T>,
    /// Cursor of the next page.
    pub next: Option<i64>,
}

/// A task with what a reviewer needs to see in a list.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    /// Order of insertion (the cursor).
    pub seq: i64,
    /// The task.
    pub task: Task,
    /// System of the proposal.
    pub system: SystemId,
    /// Action of the proposal.
    pub action: String,
    /// Current digest of the proposal.
    pub digest: Digest,
    /// Approvals of the current digest.
    pub approvals: u32,
    /// The proposal's batch (proposals made together).
    pub batch: Option<String>,
}

/// Filters of the task list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskFilter {
    /// Only these groups (`None`: every group).
    pub groups: Option<Vec<String>>,
    /// Only this effective state (`open` includes lapsed claims).
    pub state: Option<TaskState>,
    /// Only this system.
    pub system: Option<SystemId>,
    /// Only the tasks assigned to this username, or under their lease ("mine").
    pub mine: Option<String>,
    /// Continue after this cursor.
    pub after_seq: Option<i64>,
    /// Page size.
    pub limit: u32,
}

/// A reviewer group and how its tasks are assigned.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRecord {
    /// Its name.
    pub group: String,
    /// Assignment mode and the time an assignee has to open a task
    /// (the defaults when never set).
    pub settings: loopgate_core::assign::GroupSettings,
    /// The member whose turn came last (round robin).
    pub last_turn: Option<String>,
    /// Usernames of its enabled members who may be given its tasks.
    pub members: Vec<String>,
    /// When an admin last set them (`None`: never).
    pub updated_at: Option<Timestamp>,
}

/// Filters of the grant list (newest first).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GrantFilter {
    /// Only this system.
    pub system: Option<SystemId>,
    /// Only grants made by these groups (`None`: every group).
    pub groups: Option<Vec<String>>,
    /// Only grants live at this time.
    pub live_at: Option<Timestamp>,
    /// Most grants returned.
    pub limit: u32,
}

/// A reviewer as the store sees one.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewerRef {
    /// Username.
    pub name: String,
    /// Groups.
    pub groups: Vec<String>,
}

/// What a decision did.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionOutcome {
    /// The task after.
    pub task: TaskRecord,
    /// The proposal after.
    pub proposal: ProposalRecord,
    /// The effect.
    pub effect: Effect,
    /// The standing grant the approvers gave.
    pub grant: Option<loopgate_core::Grant>,
}

/// What a deadline did.
#[derive(Debug, Clone, PartialEq)]
pub struct TimerOutcome {
    /// The proposal.
    pub proposal_id: ProposalId,
    /// The proposal's status after the deadline ran.
    pub status: ProposalStatus,
    /// The effect.
    pub effect: Effect,
    /// The task before the deadline ran.
    pub before: Task,
    /// The task after.
    pub after: Task,
    /// The proposal's trace context (`traceparent`).
    pub trace_context: Option<String>,
}

/// The sequenced tree: how many entries and their RFC 9162 root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeHead {
    /// Number of entries.
    pub size: u64,
    /// Root hash.
    pub root: loopgate_core::audit::Hash,
}

/// What one sequencing step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sequenced {
    /// Entries appended by this step.
    pub appended: u64,
    /// The tree after it.
    pub head: TreeHead,
}

/// A signed checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRecord {
    /// Tree size it commits to.
    pub size: u64,
    /// When it was signed.
    pub time: Timestamp,
    /// The signed note.
    pub note: String,
}

/// Which proposals analytics reads: one system, a time window of creation,
/// optionally one action.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyticsFilter {
    /// The system.
    pub system: SystemId,
    /// Only this action.
    pub action: Option<String>,
    /// Created at or after.
    pub from: Timestamp,
    /// Created before.
    pub to: Timestamp,
}

/// Which summed counts analytics reads: a system's proposals created on
/// `from_day` or later (UTC days since the epoch), of one action or all.
#[derive(Debug, Clone, PartialEq)]
pub struct TotalsQuery {
    /// The system.
    pub system: SystemId,
    /// Only this action.
    pub action: Option<String>,
    /// First day counted.
    pub from_day: i64,
    /// The metrics to read (see [`crate::aggregates::metric`]).
    pub metrics: Vec<&'static str>,
}

/// One summed count row.
#[derive(Debug, Clone, PartialEq)]
pub struct Total {
    /// Metric.
    pub metric: String,
    /// Key.
    pub key: String,
    /// Count.
    pub n: i64,
    /// First sum.
    pub a: f64,
    /// Second sum.
    pub b: f64,
}

/// One proposal as analytics sees it: no payloads, only its subject's
/// attributes (the groups of fairness analysis).
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewFact {
    /// Id.
    pub id: ProposalId,
    /// System.
    pub system: SystemId,
    /// Action.
    pub action: String,
    /// Submission time.
    pub created_at: Timestamp,
    /// Resolution time.
    pub decided_at: Option<Timestamp>,
    /// The route policy chose.
    pub route: Route,
    /// Status now.
    pub status: ProposalStatus,
    /// Who settled it.
    pub decided_by: Option<DecidedBy>,
    /// The AI's confidence.
    pub confidence: Option<f64>,
    /// Rejected after it went ahead (on the loop).
    pub overridden: bool,
    /// Approved with an edited output.
    pub modified: bool,
    /// The subject's attributes with a value, as text (strings as they are,
    /// other values as JSON), by name.
    pub attributes: Vec<(String, String)>,
    /// Its review task, if it had one.
    pub task: Option<TaskFact>,
    /// Human decisions, in order.
    pub verdicts: Vec<VerdictFact>,
}

/// The parts of a review task analytics reads.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskFact {
    /// Gate, post-hoc or QA sample.
    pub kind: TaskKind,
    /// State now.
    pub state: TaskState,
    /// Escalation level reached.
    pub level: u32,
    /// The group whose queue it is in now.
    pub group: String,
    /// Deadline of the current level.
    pub due_at: Option<Timestamp>,
    /// QA inclusion probability (1 for other kinds).
    pub sample_probability: f64,
    /// Creation time.
    pub created_at: Timestamp,
}

/// One human decision.
#[derive(Debug, Clone, PartialEq)]
pub struct VerdictFact {
    /// Reviewer's username.
    pub reviewer: String,
    /// Verdict.
    pub verdict: Verdict,
    /// When.
    pub decided_at: Timestamp,
}

/// A proposal that people decided, with everything a labeled export needs.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelRow {
    /// Order of insertion (the cursor).
    pub seq: i64,
    /// Id.
    pub id: ProposalId,
    /// Action.
    pub action: String,
    /// Submission time.
    pub created_at: Timestamp,
    /// The input the AI saw.
    pub input: Value,
    /// The output the AI proposed.
    pub ai_output: Value,
    /// The output as resolved (edited when `modified`).
    pub output: Value,
    /// The AI's confidence.
    pub confidence: Option<f64>,
    /// Status.
    pub status: ProposalStatus,
    /// Who settled it.
    pub decided_by: Option<DecidedBy>,
    /// Approved with an edited output.
    pub modified: bool,
    /// `subject.attributes`.
    pub attributes: Map<String, Value>,
    /// The human decisions, in order.
    pub decisions: Vec<LabelDecision>,
}

/// One human decision of a labeled export.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelDecision {
    /// Reviewer's username.
    pub reviewer: String,
    /// Verdict.
    pub verdict: Verdict,
    /// Why.
    pub rationale: Option<String>,
    /// Labels the reviewer attached.
    pub labels: Option<Value>,
    /// When.
    pub decided_at: Timestamp,
}

/// An event's `data` as stored: the entry's canonical JSON text, checked
/// to be JSON when read and passed on as it is. The event stream and the
/// webhooks send it without building a JSON value and writing it again
/// (that was 6% of a cycle's instructions on SQLite).
#[derive(Debug, Clone)]
pub struct EventData(Box<serde_json::value::RawValue>);

impl EventData {
    /// `text` as an event's data; an error when it is not JSON.
    pub fn parse(text: String) -> Result<EventData, serde_json::Error> {
        serde_json::value::RawValue::from_string(text).map(EventData)
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The data as a JSON value.
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(self.get())
    }

    /// Its `task` member when that is a string (task and decision events),
    /// read without building the rest.
    pub fn task(&self) -> Option<String> {
        #[derive(serde::Deserialize)]
        struct Members<'a> {
            #[serde(borrow, default)]
            task: Option<std::borrow::Cow<'a, str>>,
        }
        let members: Members<'_> = serde_json::from_str(self.get()).ok()?;
        members.task.map(std::borrow::Cow::into_owned)
    }
}

impl std::fmt::Display for EventData {
    /// The JSON text, as `serde_json::Value` displays it (compact).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.get())
    }
}

impl PartialEq for EventData {
    fn eq(&self, other: &EventData) -> bool {
        self.get() == other.get()
    }
}

impl serde::Serialize for EventData {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// One stored event (an audit entry's row) as the event stream serves it,
/// with the system and review group of the proposal it concerns.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Position in the log, from 1 (entry `seq − 1`).
    pub seq: i64,
    /// When it was committed.
    pub time: Timestamp,
    /// `user:…`, `system:…` or `loopgate`.
    pub actor: String,
    /// `proposal.submitted`, `decision.recorded`, … (docs/audit.md).
    pub kind: loopgate_core::EventKind,
    /// A proposal id, or a system, user, key or policy id.
    pub subject: Option<String>,
    /// Ids, digests and salted hashes; never a payload.
    pub data: EventData,
    /// The system of the proposal it concerns.
    pub system: Option<String>,
    /// The review group of that proposal's task.
    pub group: Option<String>,
    /// That proposal's trace context (`traceparent`); not part of the entry.
    pub trace_context: Option<String>,
}

/// A system's webhook endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    /// The system it delivers for.
    pub system: SystemId,
    /// Where deliveries are POSTed.
    pub url: String,
    /// `whsec_<base64>`: the HMAC key of the signatures.
    pub secret: String,
    /// The event types delivered.
    pub types: Vec<loopgate_core::EventKind>,
    /// When it was first set.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Not delivered yet; retried until it is or its window runs out.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Retries ran out (or the webhook was removed); `redeliver` revives it.
    Failed,
}

impl DeliveryState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    /// From the stored name.
    pub fn parse(text: &str) -> Option<DeliveryState> {
        match text {
            "pending" => Some(DeliveryState::Pending),
            "delivered" => Some(DeliveryState::Delivered),
            "failed" => Some(DeliveryState::Failed),
            _ => None,
        }
    }
}

/// A delivery that is due, with what the sender needs.
#[derive(Debug, Clone, PartialEq)]
pub struct DueDelivery {
    /// The delivery (its event's position; the `webhook-id` is `msg_<id>`).
    pub id: i64,
    /// The endpoint.
    pub url: String,
    /// The endpoint's signing secret.
    pub secret: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// Retries give up a configured time after this.
    pub window_start: Timestamp,
    /// The event to deliver.
    pub event: StoredEvent,
}

/// How one attempt went and what happens next.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptResult {
    /// The delivery.
    pub id: i64,
    /// When the attempt started.
    pub time: Timestamp,
    /// The endpoint's HTTP status, if it answered.
    pub status: Option<u16>,
    /// Why it failed (status text, timeout, connection error).
    pub error: Option<String>,
    /// How long the attempt took.
    pub duration_ms: u32,
    /// `Delivered`, `Pending` (retry at `next_at`) or `Failed`.
    pub state: DeliveryState,
    /// The next attempt, when `Pending`.
    pub next_at: Timestamp,
}

/// One attempt as the history shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    /// 1, 2, …
    pub n: u32,
    /// When it started.
    pub time: Timestamp,
    /// The endpoint's HTTP status, if it answered.
    pub status: Option<u16>,
    /// Why it failed.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: u32,
}

/// A delivery as the history shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRecord {
    /// The delivery (its event's position).
    pub id: i64,
    /// The system.
    pub system: SystemId,
    /// The event type.
    pub kind: loopgate_core::EventKind,
    /// The proposal (or other subject) it concerns.
    pub subject: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: u32,
    /// The next attempt, when pending.
    pub next_at: Option<Timestamp>,
    /// When it was queued.
    pub created_at: Timestamp,
    /// When the endpoint took it.
    pub delivered_at: Option<Timestamp>,
    /// The last HTTP status.
    pub last_status: Option<u16>,
    /// The last failure.
    pub last_error: Option<String>,
    /// Every attempt, oldest first (filled by `delivery`, empty in lists).
    pub history: Vec<AttemptRecord>,
}

/// Which deliveries to list (newest first).
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryFilter {
    /// The system.
    pub system: SystemId,
    /// Only this state.
    pub state: Option<DeliveryState>,
    /// Only deliveries before this one (the page cursor).
    pub before: Option<i64>,
    /// Page size.
    pub limit: u32,
}

/// What a reviewer group hears about, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupNotifications {
    /// The group.
    pub group: String,
    /// Its channels and events.
    pub channels: loopgate_core::notify::GroupChannels,
    /// Last change.
    pub updated_at: Timestamp,
}

/// A notification that is due, with what the sender needs.
#[derive(Debug, Clone, PartialEq)]
pub struct DueNotification {
    /// The message.
    pub id: i64,
    /// The event it is about (its position in the log).
    pub seq: i64,
    /// Where it goes.
    pub channel: loopgate_core::Channel,
    /// An address, a Slack channel or user id, `teams` or `update`.
    pub target: String,
    /// The loopgate user it is for, if one.
    pub user: Option<UserId>,
    /// The reviewer group.
    pub group: String,
    /// The task.
    pub task: loopgate_core::TaskId,
    /// The proposal.
    pub proposal: ProposalId,
    /// The event type.
    pub kind: loopgate_core::EventKind,
    /// The digest time it belongs to, if it goes out in a digest.
    pub digest_at: Option<Timestamp>,
    /// Attempts made so far.
    pub attempts: u32,
    /// Retries give up a configured time after this.
    pub window_start: Timestamp,
}

/// How one attempt at a notification went and what happens next.
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationResult {
    /// The attempt, as for webhooks.
    pub attempt: AttemptResult,
    /// Slack: `channel:ts` of the posted message.
    pub reference: Option<String>,
}

/// A notification as the history shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationRecord {
    /// The message.
    pub id: i64,
    /// Where it went.
    pub channel: loopgate_core::Channel,
    /// An address, a Slack channel or user id, `teams` or `update`.
    pub target: String,
    /// The reviewer group.
    pub group: String,
    /// The task.
    pub task: String,
    /// The proposal.
    pub proposal: String,
    /// The event type.
    pub kind: loopgate_core::EventKind,
    /// The digest time, if it went in a digest.
    pub digest_at: Option<Timestamp>,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: u32,
    /// The next attempt, when pending.
    pub next_at: Option<Timestamp>,
    /// When it was queued.
    pub created_at: Timestamp,
    /// When it was sent.
    pub delivered_at: Option<Timestamp>,
    /// The last status (HTTP, or the SMTP reply code).
    pub last_status: Option<u16>,
    /// The last failure.
    pub last_error: Option<String>,
    /// Every attempt, oldest first (filled by `notification`, empty in lists).
    pub history: Vec<AttemptRecord>,
}

/// Which notifications to list (newest first).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NotificationFilter {
    /// Only about this task.
    pub task: Option<String>,
    /// Only of this group.
    pub group: Option<String>,
    /// Only this state.
    pub state: Option<DeliveryState>,
    /// Only messages before this one (the page cursor).
    pub before: Option<i64>,
    /// Page size.
    pub limit: u32,
}

/// A decision link in an email, as stored (its token only as a hash).
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionLink {
    /// SHA-256 of the token.
    pub hash: String,
    /// The user it acts for.
    pub user: UserId,
    /// The task it decides.
    pub task: loopgate_core::TaskId,
    /// The proposal digest the email showed.
    pub digest: Digest,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it stops working.
    pub expires_at: Timestamp,
    /// When it was used, if it was.
    pub used_at: Option<Timestamp>,
}

/// A new comment on a proposal.
#[derive(Debug, Clone, PartialEq)]
pub struct NewComment {
    /// `cmt_…`
    pub id: String,
    /// The proposal.
    pub proposal: ProposalId,
    /// `user:<name>`.
    pub author: String,
    /// The words (bounded by the caller).
    pub body: String,
}

/// A comment as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CommentRecord {
    /// `cmt_…`
    pub id: String,
    /// The proposal.
    pub proposal: ProposalId,
    /// `user:<name>`.
    pub author: String,
    /// The words; `None` once the proposal's payload was erased.
    pub body: Option<String>,
    /// When.
    pub created_at: Timestamp,
}
