//! Request and response bodies.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// A page of a list: `{"items": [...], "next_cursor": "..." | null}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// What the subject of a proposal is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Subject {
    /// The subject's type, e.g. `Account`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The subject's id.
    pub id: String,
    /// Group attributes (for fairness analysis and policies).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub attributes: Map<String, Value>,
}

/// The model that produced a proposal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// Model name.
    pub name: String,
    /// Model version.
    #[serde(default)]
    pub version: Option<String>,
}

/// `POST /v1/proposals`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SubmitProposal {
    /// The system id; optional with a system API key (it is the key's system).
    #[serde(default)]
    pub system: Option<String>,
    /// What the AI wants to do, e.g. `block_card`.
    pub action: String,
    /// What the proposal concerns.
    pub subject: Subject,
    /// What the model saw.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub input: Value,
    /// What will be executed or published if approved.
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub output: Value,
    /// The model's confidence in `[0, 1]`.
    #[serde(default)]
    pub confidence: Option<f64>,
    /// The model's explanation.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub explanation: Option<Value>,
    /// The model that produced the proposal.
    #[serde(default)]
    pub model: Option<Model>,
    /// Extra facts for policies (amounts as integers in minor units).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub context: Map<String, Value>,
    /// Unique per system; the `Idempotency-Key` header works too.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Proposals the AI made together (an agent's parallel tool calls) share
    /// a batch: the queue shows their tasks as one group. 1 to 128 letters,
    /// digits, `.`, `_`, `:` and `-`; not part of the digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
}

/// Lifecycle of a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ProposalStatus {
    /// Waiting for people.
    Pending,
    /// May go ahead.
    Approved,
    /// Must not go ahead.
    Rejected,
    /// Withdrawn by the system.
    Cancelled,
    /// A reviewer sent words back instead of a yes or no (verdict
    /// `respond`): the AI gets `resolution.message` and does not act.
    Returned,
}

/// The route policy chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// Go ahead without review.
    Allow,
    /// Refused by policy.
    Deny,
    /// Human review.
    Review,
}

/// Who settled a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    /// The policy route (allow, deny, or on-the-loop review).
    Policy,
    /// Human reviewers.
    Reviewers,
    /// The SLA ran out and `on_timeout` applied.
    Timeout,
    /// The system was paused.
    KillSwitch,
    /// The system cancelled its proposal.
    System,
    /// A standing grant that reviewers gave earlier (`grant_id`).
    Grant,
}

/// A proposal as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Proposal {
    /// `prp_…`
    pub id: String,
    /// System id.
    pub system: String,
    /// Action.
    pub action: String,
    /// Lifecycle state.
    pub status: ProposalStatus,
    /// `sha256:…` of the current `{system, action, subject, input, output}`.
    pub digest: String,
    /// The route policy chose.
    pub route: Route,
    /// The policy-set version the proposal was routed under.
    pub policy_version: String,
    /// Ids of the policies that determined the route.
    pub matched_policies: Vec<String>,
    /// Set when a human later rejected or changed an already approved proposal.
    pub overridden: bool,
    /// RFC 3339.
    pub created_at: String,
    /// Subject.
    pub subject: Subject,
    /// Input: any JSON value (null once erased).
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub input: Value,
    /// Current output (reviewers may have edited it): any JSON value (null
    /// once erased).
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub output: Value,
    /// Confidence.
    pub confidence: Option<f64>,
    /// Explanation: any JSON value, or null.
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub explanation: Option<Value>,
    /// Model.
    pub model: Option<Model>,
    /// Context.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub context: Map<String, Value>,
    /// Idempotency key.
    pub idempotency_key: Option<String>,
    /// The batch it was submitted with (proposals made together).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
    /// Null while pending.
    pub resolution: Option<Resolution>,
    /// When its payloads were erased (then subject, input and output are null).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erased_at: Option<String>,
    /// Policies whose evaluation failed on this proposal; each counted the
    /// most restrictive way it could (a `forbid` denied, a review permit
    /// sent to review, an allow permit allowed nothing). Left out when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_errors: Vec<PolicyEvaluationError>,
}

/// A policy whose evaluation failed on a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PolicyEvaluationError {
    /// The policy id.
    pub policy: String,
    /// `type_error`, `missing_attribute`, `missing_entity`,
    /// `integer_overflow`, `extension_error`, `recursion_limit`,
    /// `request_error` or `other`.
    pub kind: String,
    /// Cedar's message, with the place in the policy text (empty once the
    /// proposal was erased: it may quote the request's values).
    pub message: String,
}

/// How often one policy failed to evaluate (replay, shadow).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PolicyErrorCount {
    /// The policy id.
    pub policy: String,
    /// How many proposals it failed on.
    pub count: u64,
    /// Cedar's message, from the latest failure.
    pub message: String,
    /// Some of the proposal ids.
    pub examples: Vec<String>,
}

/// How a proposal ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Resolution {
    /// `approved`, `rejected`, `cancelled` or `returned`.
    pub outcome: ProposalStatus,
    /// With `returned`: the reviewer's words for the AI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Who settled it.
    pub decided_by: DecidedBy,
    /// With `decided_by: grant`: the grant that approved it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    /// The output to execute (the edited one if reviewers modified it).
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub output: Value,
    /// Whether reviewers edited the output.
    pub modified: bool,
    /// Digest of the resolved proposal.
    pub digest: String,
    /// Policy-set version.
    pub policy_version: String,
    /// Matched policy ids.
    pub matched_policies: Vec<String>,
    /// The human decisions that led here.
    pub decisions: Vec<DecisionRecord>,
    /// RFC 3339.
    pub decided_at: String,
    /// Proof that the resolution is in the audit log; null until a
    /// checkpoint covers it (within the checkpoint interval, 1 s by default).
    pub receipt: Option<Receipt>,
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AuditEntry {
    /// Leaf index.
    pub index: u64,
    /// Canonical JSON text, exactly as hashed into the leaf.
    pub entry: String,
    /// Inclusion proof to the reported checkpoint, when it covers the entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inclusion_proof: Option<Vec<String>>,
}

/// `GET /v1/audit/entries`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AuditEntries {
    /// Entries in index order.
    pub items: Vec<AuditEntry>,
}

/// `GET /v1/audit/proof/inclusion`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct InclusionProof {
    /// Leaf index.
    pub index: u64,
    /// Tree size.
    pub size: u64,
    /// Base64 hashes from the leaf up.
    pub proof: Vec<String>,
}

/// `GET /v1/audit/proof/consistency`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ConsistencyProof {
    /// Older size.
    pub from: u64,
    /// Newer size.
    pub to: u64,
    /// Base64 hashes (RFC 9162 2.1.4).
    pub proof: Vec<String>,
}

/// `GET /v1/proposals/{id}/audit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ProposalAudit {
    /// Proposal id.
    pub proposal: String,
    /// The proposal's salt (base64url); null once erased.
    pub salt: Option<String>,
    /// When its payloads were erased.
    pub erased_at: Option<String>,
    /// Size of the checkpoint the proofs lead to (0: none yet).
    pub tree_size: u64,
    /// The newest signed checkpoint.
    pub checkpoint: Option<String>,
    /// Its entries, oldest first.
    pub entries: Vec<AuditEntry>,
}

/// One stored checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AuditCheckpoint {
    /// Tree size.
    pub size: u64,
    /// RFC 3339.
    pub time: String,
    /// The signed note.
    pub note: String,
}

/// `GET /v1/audit/checkpoints`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AuditCheckpoints {
    /// Smallest first.
    pub items: Vec<AuditCheckpoint>,
    /// Pass as `after` for the next page; null at the end.
    pub next_after: Option<u64>,
}

/// `POST /v1/proposals/{id}/erase`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EraseProposal {
    /// Why (only its hash enters the audit log).
    pub reason: String,
}

/// A decision receipt: checkable offline with the log's public key alone
/// (`loopgate audit verify-receipt`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Receipt {
    /// Leaf index of the `proposal.resolved` entry.
    pub index: u64,
    /// Tree size of the checkpoint.
    pub tree_size: u64,
    /// The entry, canonical JSON text, exactly as hashed.
    pub entry: String,
    /// The signed checkpoint (C2SP signed note).
    pub checkpoint: String,
    /// RFC 9162 inclusion proof, base64 hashes from the leaf up.
    pub inclusion_proof: Vec<String>,
}

/// A reviewer's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Approve the current output.
    Approve,
    /// Reject.
    Reject,
    /// Approve an edited output.
    Modify,
    /// Send to the next group of the escalation chain.
    Escalate,
    /// Answer the AI with a `message` instead of a yes or no: the proposal
    /// ends `returned`.
    Respond,
}

/// One recorded human decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DecisionRecord {
    /// Reviewer's username.
    pub reviewer: String,
    /// Verdict.
    pub verdict: Verdict,
    /// The digest the reviewer saw.
    pub digest: String,
    /// Rationale.
    pub rationale: Option<String>,
    /// The words sent back to the AI (`respond`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The standing grant this approver agreed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<GrantOffer>,
    /// Task level (escalation level) at the time.
    pub level: u32,
    /// RFC 3339.
    pub decided_at: String,
}

/// `POST /v1/tasks/{id}/decision`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// Verdict.
    pub verdict: Verdict,
    /// Why.
    #[serde(default)]
    pub rationale: Option<String>,
    /// The edited output (modify only): any JSON value.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub output: Option<Value>,
    /// Optional labels for feedback.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub labels: Option<Map<String, Value>>,
    /// The words to send back to the AI (`respond` only; at most 10,000 bytes).
    #[serde(default)]
    pub message: Option<String>,
    /// A standing grant to give with an `approve`, where the task's policy
    /// allows one (`grantable` on the task). With a quorum, the grant is
    /// made when every approval offers one (their narrowest terms).
    #[serde(default)]
    pub grant: Option<GrantOffer>,
    /// The digest shown to the reviewer.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^sha256:[0-9a-f]{64}$"))]
    pub seen_digest: String,
}

/// A standing grant's terms, as a reviewer offers them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct GrantOffer {
    /// How long it lasts: seconds, minutes, hours or days (`30m`, `1h`,
    /// `7d`) or ISO 8601 (`PT1H`, `P7D`); at most the policy's `@grantable`.
    #[serde(rename = "for")]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^([1-9][0-9]{0,5}[smhd]|PT[1-9][0-9]{0,5}[HMS]|P[1-9][0-9]{0,3}D)$")
    )]
    pub for_: String,
    /// How many proposals it may approve (1 to 100,000); unlimited when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100000))]
    pub uses: Option<u32>,
    /// `same_output` (the same action, subject and output) or `same_subject`
    /// (the same action and subject, any output).
    pub scope: GrantScope,
}

/// What a standing grant covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum GrantScope {
    /// The same action and subject with the same output.
    SameOutput,
    /// The same action and subject, any output.
    SameSubject,
}

/// A grant's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum GrantState {
    /// It approves matching proposals.
    Live,
    /// Its uses ran out.
    UsedUp,
    /// Its time ran out.
    Expired,
    /// Someone revoked it.
    Revoked,
}

/// A standing grant (`GET /v1/grants`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Grant {
    /// `gnt_…`
    pub id: String,
    /// Its state now.
    pub state: GrantState,
    /// The system whose proposals it approves.
    pub system: String,
    /// The action.
    pub action: String,
    /// What it covers (the subject and output are kept only as salted
    /// digests; `proposal` shows them while its payload is kept).
    pub scope: GrantScope,
    /// The proposal whose approval made it.
    pub proposal: String,
    /// The review policies it stands in for.
    pub policies: Vec<String>,
    /// The policy version it was made under.
    pub policy_version: String,
    /// The reviewer group that made it.
    pub group: String,
    /// The approvers who agreed to it.
    pub granted_by: Vec<String>,
    /// Proposals it approved.
    pub used: u32,
    /// Most proposals it may approve (null: no limit).
    pub max_uses: Option<u32>,
    /// Uses left (null: no limit).
    pub uses_left: Option<u32>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub expires_at: String,
    /// RFC 3339, when revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// Who revoked it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
}

/// `GET /v1/grants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct GrantList {
    /// Newest first.
    pub items: Vec<Grant>,
}

/// `POST /v1/tasks/decisions`: many decisions in one call, each its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BatchDecisionRequest {
    /// At most 100 decisions, decided in this order.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 100))]
    pub items: Vec<BatchDecisionItem>,
}

/// One decision of a batch: a task id and what `POST /v1/tasks/{id}/decision` takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BatchDecisionItem {
    /// The task.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^tsk_[A-Za-z0-9]{1,64}$"))]
    pub task_id: String,
    /// Verdict.
    pub verdict: Verdict,
    /// Why.
    #[serde(default)]
    pub rationale: Option<String>,
    /// The edited output (modify only): any JSON value.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub output: Option<Value>,
    /// Optional labels for feedback.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub labels: Option<Map<String, Value>>,
    /// The words to send back to the AI (`respond` only; at most 10,000 bytes).
    #[serde(default)]
    pub message: Option<String>,
    /// A standing grant to give with an `approve` (as on a single decision).
    #[serde(default)]
    pub grant: Option<GrantOffer>,
    /// The digest shown to the reviewer.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^sha256:[0-9a-f]{64}$"))]
    pub seen_digest: String,
}

impl BatchDecisionItem {
    /// The task id and the decision as a single decision's request.
    pub fn into_parts(self) -> (String, DecisionRequest) {
        let decision = DecisionRequest {
            verdict: self.verdict,
            rationale: self.rationale,
            output: self.output,
            labels: self.labels,
            message: self.message,
            grant: self.grant,
            seen_digest: self.seen_digest,
        };
        (self.task_id, decision)
    }
}

/// The answer to a batch: one result per item, in the request's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct BatchDecisionResponse {
    /// Results, in the request's order.
    pub items: Vec<BatchDecisionResult>,
}

/// How one decision of a batch went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct BatchDecisionResult {
    /// The task.
    pub task_id: String,
    /// The HTTP status this decision alone would have had (200, or the
    /// error's).
    pub status: u16,
    /// Why it failed (the problem `POST /v1/tasks/{id}/decision` would
    /// have answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::Problem>,
    /// The task and proposal after the decision, when it was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<DecisionResponse>,
}

/// Kind of a review task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Blocks the proposal until decided.
    Gate,
    /// On-the-loop review after the proposal went ahead.
    PostHoc,
    /// Quality sample of an auto-approved proposal.
    QaSample,
}

/// State of a review task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// In the queue.
    Open,
    /// A reviewer holds the lease.
    Claimed,
    /// Decided.
    Done,
    /// Ran out of time with nowhere to escalate.
    Expired,
    /// The proposal was cancelled.
    Cancelled,
}

/// A review task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Task {
    /// `tsk_…`
    pub id: String,
    /// The proposal under review.
    pub proposal_id: String,
    /// System id.
    pub system: String,
    /// Action.
    pub action: String,
    /// The proposal's current digest: send it back as `seen_digest`.
    pub digest: String,
    /// Reviewer group.
    pub group: String,
    /// Kind.
    pub kind: TaskKind,
    /// State.
    pub state: TaskState,
    /// Escalation level, 0 first.
    pub level: u32,
    /// Approvals required.
    pub required: u32,
    /// Approvals of the current digest so far.
    pub approvals: u32,
    /// RFC 3339, or null without an SLA.
    pub due_at: Option<String>,
    /// Username holding the lease.
    pub claimed_by: Option<String>,
    /// RFC 3339.
    pub lease_expires_at: Option<String>,
    /// Reviewers do not see the model's output and confidence.
    pub blind: bool,
    /// Every decision must carry a rationale (the policy's `@rationale("required")`).
    #[serde(default)]
    pub rationale_required: bool,
    /// The longest standing grant an approver may give (`30m`, `1h`, …;
    /// the policy's `@grantable`); left out when none may be given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grantable: Option<String>,
    /// Why no grant may be given although the policy has `@grantable`
    /// (the system's risk tier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_refused: Option<String>,
    /// The proposal's batch: tasks of proposals made together (an agent's
    /// parallel tool calls) show as one group in the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
    /// The member the task is reserved for (groups that assign tasks);
    /// others in the group can neither claim nor decide it meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    /// The away member it was meant for, when it went to their delegate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegated_from: Option<String>,
    /// RFC 3339: when it returns to the pool unless its assignee opens
    /// (claims) it; left out once opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_at: Option<String>,
    /// RFC 3339.
    pub created_at: String,
}

/// Response of a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DecisionResponse {
    /// The task after the decision.
    pub task: Task,
    /// The proposal after the decision.
    pub proposal: Proposal,
}

/// EU AI Act risk tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RiskTier {
    /// Minimal risk.
    Minimal,
    /// Limited risk.
    Limited,
    /// High risk.
    High,
    /// Unacceptable risk.
    Unacceptable,
}

/// Oversight mode of a system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Oversight {
    /// Review blocks the proposal.
    InTheLoop,
    /// Review happens after the proposal went ahead.
    OnTheLoop,
    /// No review except QA samples.
    Automated,
}

/// Kill switch state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SystemStatus {
    /// Proposals are routed.
    Active,
    /// Every new proposal is rejected.
    Paused,
}

/// A registered AI system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct System {
    /// Slug, e.g. `fraud-detector`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Accountable owner.
    pub owner: String,
    /// Intended purpose.
    pub purpose: String,
    /// Risk tier.
    pub risk_tier: RiskTier,
    /// Oversight mode.
    pub oversight: Oversight,
    /// Kill switch.
    pub status: SystemStatus,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Payloads of settled proposals are erased this long after settling (ISO 8601).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
    /// Declared actions and attribute types, for the generated Cedar schema:
    /// `{"actions": {"block_card": {"context": {"amount_minor": "Long"}}},
    /// "subject_attributes": {"region": "String"}}`; types are `Long`,
    /// `String`, `Bool`, `decimal`, `Set<String>`, `Set<Long>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub shape: Option<serde_json::Value>,
}

/// `POST /v1/systems`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateSystem {
    /// Slug: lowercase letters, digits and `-`, 1 to 64 characters, starting with a letter.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[a-z][a-z0-9-]{0,63}$"))]
    pub id: String,
    /// Display name.
    pub name: String,
    /// Accountable owner.
    #[serde(default)]
    pub owner: String,
    /// Intended purpose.
    #[serde(default)]
    pub purpose: String,
    /// Risk tier.
    pub risk_tier: RiskTier,
    /// Oversight mode.
    pub oversight: Oversight,
    /// Declared actions and attribute types, for the generated Cedar schema:
    /// `{"actions": {"block_card": {"context": {"amount_minor": "Long"}}},
    /// "subject_attributes": {"region": "String"}}`; types are `Long`,
    /// `String`, `Bool`, `decimal`, `Set<String>`, `Set<Long>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub shape: Option<serde_json::Value>,
}

/// `PATCH /v1/systems/{id}`: every field optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateSystem {
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Purpose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// Risk tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_tier: Option<RiskTier>,
    /// Oversight mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oversight: Option<Oversight>,
    /// Kill switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SystemStatus>,
    /// Retention of payloads after settling, ISO 8601 (`P90D`), or `off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
    /// Declared actions and attribute types, for the generated Cedar schema:
    /// `{"actions": {"block_card": {"context": {"amount_minor": "Long"}}},
    /// "subject_attributes": {"region": "String"}}`; types are `Long`,
    /// `String`, `Bool`, `decimal`, `Set<String>`, `Set<Long>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub shape: Option<serde_json::Value>,
}

/// A secret shown once: a system API key or a personal token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct IssuedSecret {
    /// Id of the key or token (not secret).
    pub id: String,
    /// The secret; only its hash is stored, it cannot be shown again.
    pub secret: String,
    /// The system or user it belongs to.
    pub owner: String,
    /// RFC 3339.
    pub created_at: String,
    /// What it is for.
    #[serde(default)]
    pub name: String,
    /// RFC 3339; when it stops working (none: until revoked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// `POST /v1/systems/{id}/keys` and `POST /v1/users/{id}/tokens`; the body
/// may be left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateCredential {
    /// What it is for (at most 100 characters), e.g. `ci` or `laptop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// ISO 8601 duration after which it stops working, e.g. `P90D` (at most
    /// ten years); without it, it works until revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
}

/// An API key or personal token as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Credential {
    /// `key_…` (system) or `tok_…` (user).
    pub id: String,
    /// What it is for.
    pub name: String,
    /// The system or user it belongs to.
    pub owner: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, to the minute; none: never used.
    pub last_used_at: Option<String>,
    /// RFC 3339; none: until revoked.
    pub expires_at: Option<String>,
    /// RFC 3339; none: not revoked.
    pub revoked_at: Option<String>,
    /// Neither revoked nor expired: requests with it are accepted.
    #[serde(default)]
    pub active: bool,
}

/// A role of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Publishes policies.
    PolicyAuthor,
    /// Works review queues of their groups.
    Reviewer,
    /// Reads everything, changes nothing.
    Auditor,
}

/// A user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct User {
    /// `usr_…`
    pub id: String,
    /// Unique login name.
    pub username: String,
    /// Roles.
    pub roles: Vec<Role>,
    /// Reviewer groups.
    pub groups: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
    /// A disabled user cannot log in; their tokens and sessions are refused.
    #[serde(default)]
    pub disabled: bool,
    /// Email address for notifications and decision links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Slack member id (`U…`): their clicks in Slack act as this user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack_user_id: Option<String>,
    /// What they want to hear, per channel.
    #[serde(default)]
    pub notify: NotifyPrefs,
    /// Made by an admin, the first admin, or at their first sign-in
    /// through the identity provider (docs/sso.md).
    #[serde(default)]
    pub source: UserSource,
    /// RFC 3339: away until then; tasks and messages meant for them go to
    /// their `delegate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub away_until: Option<String>,
    /// The username who stands in for them while they are away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegate: Option<String>,
}

/// Where a user comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum UserSource {
    /// Made by an admin.
    #[default]
    Local,
    /// The first admin (keeps a break-glass password login when password
    /// logins are off).
    Bootstrap,
    /// Made at their first sign-in through the identity provider; roles and
    /// groups follow the provider's groups at every sign-in.
    Oidc,
}

/// How a user hears about their groups' tasks on one channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum NotifyMode {
    /// Email: every event; Slack: only the group's channel.
    #[default]
    Default,
    /// A message for every event.
    Each,
    /// One message every `every_minutes` with what happened since.
    Digest,
    /// Nothing.
    Off,
}

/// One channel's choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NotifyPref {
    /// `default`, `each`, `digest` or `off`.
    #[serde(default)]
    pub mode: NotifyMode,
    /// The digest's period in minutes (1 to 1440), with `digest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1440))]
    pub every_minutes: Option<u32>,
}

/// A user's choices, per channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NotifyPrefs {
    /// By email.
    #[serde(default)]
    pub email: NotifyPref,
    /// By Slack direct message.
    #[serde(default)]
    pub slack: NotifyPref,
}

/// `PUT /v1/groups/{name}/notifications`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetGroupNotifications {
    /// Addresses that get every event, besides the members who have one.
    #[serde(default)]
    pub email: Vec<String>,
    /// A Slack channel id (`C…`) for a message per event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack_channel: Option<String>,
    /// A Microsoft Teams workflow URL for a card per event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teams_webhook: Option<String>,
    /// Of `task.created`, `task.escalated`, `task.sla_warning` (default:
    /// all three).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<GroupEvent>>))]
    pub events: Option<Vec<String>>,
}

/// How a reviewer group's tasks find a reviewer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Assignment {
    /// Tasks wait for any member to claim them.
    #[default]
    Pool,
    /// Members in turn, by username.
    RoundRobin,
    /// The member with the fewest open tasks assigned to or claimed by them.
    LeastLoaded,
}

/// A reviewer group: `GET /v1/groups`, `GET /v1/groups/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Group {
    /// Its name.
    pub group: String,
    /// How its tasks find a reviewer.
    pub assignment: Assignment,
    /// How long an assignee has to open (claim) a task before it returns
    /// to the pool (`30m`, `1h`, …).
    pub return_after: String,
    /// Usernames of its enabled members who may review.
    pub members: Vec<String>,
    /// RFC 3339: when an admin last set it; left out when never set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

/// `PUT /v1/groups/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetGroup {
    /// How its tasks find a reviewer.
    pub assignment: Assignment,
    /// How long an assignee has to open a task before it returns to the
    /// pool: 1 minute to 7 days, as minutes, hours or days (`30m`, `2h`,
    /// `7d`) or ISO 8601 (`PT30M`, `PT2H`, `P7D`); default 30 minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = r"^([1-9][0-9]{0,3}m|[1-9][0-9]?h|[1-7]d|PT[1-9][0-9]{0,3}M|PT[1-9][0-9]?H|P[1-7]D)$"
        )
    )]
    pub return_after: Option<String>,
}

/// An event a reviewer group can hear about (in the API document; the
/// bodies carry these as strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub enum GroupEvent {
    /// A task was created for the group.
    #[serde(rename = "task.created")]
    TaskCreated,
    /// A task escalated to the group.
    #[serde(rename = "task.escalated")]
    TaskEscalated,
    /// A task's deadline is near.
    #[serde(rename = "task.sla_warning")]
    TaskSlaWarning,
}

/// What a reviewer group hears about, and where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct GroupNotifications {
    /// The group.
    pub group: String,
    /// Addresses that get every event, besides the members.
    pub email: Vec<String>,
    /// Slack channel id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack_channel: Option<String>,
    /// Teams workflow URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teams_webhook: Option<String>,
    /// The events the group hears about.
    pub events: Vec<String>,
    /// RFC 3339 (absent: never set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

/// One message to a person or channel, as the history shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Notification {
    /// Its id.
    pub id: i64,
    /// `email`, `slack`, `teams` or `slack_update`.
    pub channel: String,
    /// An address, a Slack channel or member id, `teams`, or `update:<task>`.
    pub target: String,
    /// The reviewer group.
    pub group: String,
    /// The task.
    pub task: String,
    /// The proposal.
    pub proposal: String,
    /// The event it tells about.
    #[serde(rename = "type")]
    pub kind: String,
    /// RFC 3339: the digest it went (or goes) out with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_at: Option<String>,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    /// Attempts made.
    pub attempts: u32,
    /// RFC 3339: the next attempt, while pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339: when it was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    /// The last status (HTTP, or the SMTP reply code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    /// The last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Every attempt, oldest first (`GET` of one message only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<DeliveryAttempt>,
}

/// `POST /v1/users`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Unique login name: 1 to 64 letters, digits, `.`, `_` and `-`.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9._-]{1,64}$"))]
    pub username: String,
    /// Roles.
    pub roles: Vec<Role>,
    /// Reviewer groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Password for the web UI (12 to 1024 characters); without one the
    /// user logs in only once an admin sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 12, max_length = 1024))]
    pub password: Option<String>,
    /// Email address for notifications and decision links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Slack member id (`U…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack_user_id: Option<String>,
}

/// `PATCH /v1/users/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    /// Roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<Role>>,
    /// Reviewer groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    /// A new password (12 to 1024 characters); ends the user's web sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 12, max_length = 1024))]
    pub password: Option<String>,
    /// `true` disables the user: their sessions end, their tokens, streams
    /// and long-polls are refused at once. `false` enables them again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// Also revoke every personal token of the user (e.g. with a new password).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revoke_tokens: bool,
    /// A new email address (`""` removes it). Admins only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// A new Slack member id (`""` removes it). Admins only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack_user_id: Option<String>,
    /// New notification choices; users may change their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<NotifyPrefs>,
    /// RFC 3339: away until then (`""`: back). Users may set their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub away_until: Option<String>,
    /// Who stands in while they are away: another user's username (`""`:
    /// nobody). Users may set their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegate: Option<String>,
}

/// `POST /v1/policies` and `POST /v1/policies/validate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PublishPolicy {
    /// Cedar policy text.
    pub text: String,
    /// Why this version.
    #[serde(default)]
    pub description: String,
    /// `live` (default) routes every proposal; `shadow` is evaluated beside
    /// the live version and never changes an outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<PolicyMode>,
    /// A case file (YAML or JSON text) that must pass before the version is
    /// published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cases: Option<String>,
}

/// How a version is published or activated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PolicyMode {
    /// Routes every proposal.
    Live,
    /// Evaluated beside the live version; never changes an outcome.
    Shadow,
}

/// A lint warning or validation error about one policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PolicyFinding {
    /// The policy id (empty for the set as a whole).
    pub policy: String,
    /// What, with the line and column where known.
    pub message: String,
}

/// `POST /v1/policies/{version}/activate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ActivatePolicy {
    /// Why (kept in the audit log); not blank.
    #[cfg_attr(feature = "openapi", schema(pattern = r"\S"))]
    pub reason: String,
    /// `live` (default) or `shadow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<PolicyMode>,
}

/// `DELETE /v1/policies/shadow`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StopShadow {
    /// Why (kept in the audit log); not blank.
    #[cfg_attr(feature = "openapi", schema(pattern = r"\S"))]
    pub reason: String,
}

/// One activation of a version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PolicyActivation {
    /// The version.
    pub version: String,
    /// `live`, `shadow` or `shadow_off`.
    pub mode: String,
    /// Why.
    pub reason: String,
    /// Who.
    pub actor: String,
    /// RFC 3339.
    pub at: String,
}

/// The generated Cedar schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PolicySchema {
    /// Cedar schema syntax.
    pub text: String,
    /// Declared actions.
    pub actions: Vec<String>,
    /// Conflicts between declarations, left out of the schema.
    pub notes: Vec<String>,
}

/// `POST /v1/policies/test`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TestPolicies {
    /// Cedar text to test; the live version when missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The case file, YAML or JSON text.
    pub cases: String,
}

/// Results of a case file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PolicyTestReport {
    /// The version tested.
    pub version: String,
    /// Cases that passed.
    pub passed: u32,
    /// Cases that failed.
    pub failed: u32,
    /// Every case, in file order.
    pub cases: Vec<PolicyCaseResult>,
}

/// One case's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PolicyCaseResult {
    /// The case's name.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What did not match.
    pub failures: Vec<String>,
    /// The route it took.
    pub route: Route,
    /// The policies that decided it.
    pub matched: Vec<String>,
    /// Reviewer group (review routes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewers: Option<String>,
    /// Approvals required (review routes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<u32>,
    /// Why the API would refuse this proposal (`422 invalid_context`); its
    /// route is then `deny`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// Policies whose evaluation failed on this case.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_errors: Vec<PolicyEvaluationError>,
}

/// `POST /v1/policies/replay`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReplayPolicies {
    /// The draft Cedar text.
    pub text: String,
    /// How far back: `30d`, `12h`, `90m` or an ISO 8601 duration.
    pub since: String,
    /// Examples kept per transition (default 5, at most 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub examples: Option<u32>,
}

/// What a draft would have changed over a period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ReplayReport {
    /// The draft's version.
    pub version: String,
    /// RFC 3339 start of the period.
    pub since: String,
    /// Proposals replayed.
    pub replayed: u64,
    /// Skipped because their payload was erased.
    pub skipped_erased: u64,
    /// Routed the same way.
    pub unchanged: u64,
    /// Route transitions, most first.
    pub transitions: Vec<RouteTransition>,
    /// Review tasks per group: how many more (or fewer) the draft would create.
    pub workload: Vec<GroupWorkload>,
    /// Proposals that reviewers rejected and the draft would allow.
    pub rejected_now_allowed: u64,
    /// Proposals that reviewers approved and the draft would deny.
    pub approved_now_denied: u64,
    /// Proposals whose stored context the number rule or the declared
    /// shape would refuse today; counted as denied.
    #[serde(default)]
    pub refused: u64,
    /// Policies of the draft that failed to evaluate, most failures first.
    #[serde(default)]
    pub policy_errors: Vec<PolicyErrorCount>,
}

/// One route transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct RouteTransition {
    /// The route taken.
    pub from: Route,
    /// The route the draft gives.
    pub to: Route,
    /// How many.
    pub count: u64,
    /// Some proposal ids.
    pub examples: Vec<String>,
}

/// Change in review workload for one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct GroupWorkload {
    /// The group.
    pub group: String,
    /// Reviews the draft adds to the group.
    pub added: u64,
    /// Reviews it takes away.
    pub removed: u64,
}

/// One line of a streamed replay (`?stream=true`, `application/x-ndjson`):
/// progress lines, then the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReplayLine {
    /// Proposals done out of the total.
    Progress {
        /// Done.
        done: u64,
        /// Total.
        total: u64,
    },
    /// The final report.
    Report(ReplayReport),
    /// The replay failed part way.
    Error(crate::Problem),
}

/// The shadow version's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ShadowReport {
    /// The shadow version; none when no shadow runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The live version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_version: Option<String>,
    /// RFC 3339: since when it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Proposals evaluated since.
    pub evaluated: u64,
    /// Of those, routed differently.
    pub disagreements: u64,
    /// Transitions (live → shadow).
    pub transitions: Vec<RouteTransition>,
    /// The latest disagreements.
    pub recent: Vec<ShadowDisagreement>,
    /// Policies of the shadow version that failed to evaluate, most
    /// failures first.
    #[serde(default)]
    pub policy_errors: Vec<PolicyErrorCount>,
}

/// One disagreement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ShadowDisagreement {
    /// The proposal.
    pub proposal_id: String,
    /// Live route.
    pub live_route: String,
    /// Shadow route.
    pub shadow_route: String,
    /// Live matched policies.
    pub live_matched: Vec<String>,
    /// Shadow matched policies.
    pub shadow_matched: Vec<String>,
    /// Shadow reviewer group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_group: Option<String>,
    /// RFC 3339.
    pub at: String,
}

/// A published policy-set version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PolicyVersion {
    /// Version: the hash of the text.
    pub version: String,
    /// Publication order, 1 first.
    pub seq: u64,
    /// Why.
    pub description: String,
    /// Username or `loopgate` (loaded from `--policies`).
    pub created_by: String,
    /// RFC 3339.
    pub created_at: String,
    /// Whether this is the live version.
    pub active: bool,
    /// Whether this is the shadow version.
    #[serde(default)]
    pub shadow: bool,
    /// Ids of the policies in the set.
    pub policy_ids: Vec<String>,
    /// Cedar text.
    pub text: String,
    /// Lint warnings (on publish).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<PolicyFinding>,
}

/// Result of `POST /v1/policies/validate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PolicyValidation {
    /// The version the text would get.
    pub version: String,
    /// Ids of the policies in the set.
    pub policy_ids: Vec<String>,
    /// Errors against the generated schema: publishing would be refused.
    #[serde(default)]
    pub errors: Vec<PolicyFinding>,
    /// Lint warnings.
    #[serde(default)]
    pub warnings: Vec<PolicyFinding>,
}

/// `PUT /v1/systems/{id}/webhook`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetWebhook {
    /// Where deliveries are POSTed: an absolute `http://` or `https://` URL.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^https?://[^/?#\s]+"))]
    pub url: String,
    /// Event types to deliver; default `proposal.resolved`,
    /// `proposal.overridden`, `task.created`, `task.escalated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<String>>,
    /// A `whsec_<base64>` secret to sign with (16 to 64 bytes; e.g. when
    /// moving an existing receiver). When absent the current secret is kept,
    /// or a new one is generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// A system's webhook endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Webhook {
    /// The system.
    pub system: String,
    /// Where deliveries are POSTed.
    pub url: String,
    /// Event types delivered.
    pub types: Vec<String>,
    /// The signing secret (`whsec_…`): only in the answer to `PUT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// One webhook delivery (an event for a system's endpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Delivery {
    /// The `webhook-id` header: `msg_<event id>`, the same on every attempt.
    pub id: String,
    /// The event's position in the log (its `GET /v1/events` id).
    pub event: i64,
    /// The event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The proposal it concerns.
    pub subject: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    /// Attempts made.
    pub attempts: u32,
    /// RFC 3339: the next attempt, while pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339: when the endpoint answered 2xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    /// The last HTTP status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    /// The last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Every attempt, oldest first (`GET` of one delivery only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<DeliveryAttempt>,
}

/// One attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DeliveryAttempt {
    /// 1, 2, …
    pub n: u32,
    /// RFC 3339.
    pub time: String,
    /// The endpoint's HTTP status, if it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: u32,
}

/// `POST /v1/proposals/{id}/comments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewComment {
    /// The words: not blank, at most 10,000 characters.
    #[cfg_attr(feature = "openapi", schema(pattern = r"\S", max_length = 10000))]
    pub body: String,
}

/// A comment on a proposal, seen by its reviewers, auditors and admins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Comment {
    /// `cmt_…`
    pub id: String,
    /// The proposal.
    pub proposal_id: String,
    /// `user:<name>`.
    pub author: String,
    /// The words; null once the proposal's payload was erased.
    pub body: Option<String>,
    /// RFC 3339.
    pub created_at: String,
}

/// `GET /v1/proposals/{id}/comments`: oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Comments {
    /// Comments, oldest first.
    pub items: Vec<Comment>,
}
