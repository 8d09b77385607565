//! The error code table and the RFC 9457 problem body.

use serde::{Deserialize, Serialize};

/// Every error the API returns carries one of these stable codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request body or a parameter is not valid.
    ValidationFailed,
    /// A proposal's context or subject attributes break the number rule or
    /// the system's declared shape.
    InvalidContext,
    /// No credentials, or unknown credentials.
    Unauthenticated,
    /// The caller's role does not allow this.
    Forbidden,
    /// The resource does not exist (or the caller may not see it).
    NotFound,
    /// The route exists but does not accept the request's method.
    MethodNotAllowed,
    /// The idempotency key was used before with a different proposal.
    IdempotencyConflict,
    /// A resource with this id or name exists already.
    AlreadyExists,
    /// The proposal or task is already decided.
    AlreadyDecided,
    /// The proposal is still pending (erasure needs a settled one).
    StillPending,
    /// The decision was made on a digest that is no longer current.
    StaleDigest,
    /// Another reviewer holds the lease on the task.
    LeaseHeld,
    /// The task is assigned to another member of its group.
    TaskAssigned,
    /// A principal may not approve what it submitted.
    SelfApproval,
    /// The system is paused (kill switch).
    SystemPaused,
    /// The request body is over the size limit.
    PayloadTooLarge,
    /// Too many requests.
    RateLimited,
    /// The Cedar policy text is invalid.
    PolicyInvalid,
    /// The store is unavailable for a moment; retry.
    Unavailable,
    /// Something went wrong inside loopgate.
    Internal,
}

impl ErrorCode {
    /// Every code, in the order of docs/errors.md.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::ValidationFailed,
        ErrorCode::InvalidContext,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::IdempotencyConflict,
        ErrorCode::AlreadyExists,
        ErrorCode::AlreadyDecided,
        ErrorCode::StillPending,
        ErrorCode::StaleDigest,
        ErrorCode::LeaseHeld,
        ErrorCode::TaskAssigned,
        ErrorCode::SelfApproval,
        ErrorCode::SystemPaused,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::PolicyInvalid,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    /// The HTTP status of this code.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::ValidationFailed => 422,
            ErrorCode::InvalidContext => 422,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::IdempotencyConflict => 409,
            ErrorCode::AlreadyExists => 409,
            ErrorCode::AlreadyDecided => 409,
            ErrorCode::StillPending => 409,
            ErrorCode::StaleDigest => 409,
            ErrorCode::LeaseHeld => 409,
            ErrorCode::TaskAssigned => 409,
            ErrorCode::SelfApproval => 403,
            ErrorCode::SystemPaused => 423,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::PolicyInvalid => 422,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }

    /// The stable string clients match on.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ValidationFailed => "validation_failed",
            ErrorCode::InvalidContext => "invalid_context",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::IdempotencyConflict => "idempotency_conflict",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::AlreadyDecided => "already_decided",
            ErrorCode::StillPending => "still_pending",
            ErrorCode::StaleDigest => "stale_digest",
            ErrorCode::LeaseHeld => "lease_held",
            ErrorCode::TaskAssigned => "task_assigned",
            ErrorCode::SelfApproval => "self_approval",
            ErrorCode::SystemPaused => "system_paused",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::PolicyInvalid => "policy_invalid",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// The fixed title of this code.
    pub fn title(self) -> &'static str {
        match self {
            ErrorCode::ValidationFailed => "request is not valid",
            ErrorCode::InvalidContext => "context cannot be routed on",
            ErrorCode::Unauthenticated => "authentication required",
            ErrorCode::Forbidden => "not allowed for this caller",
            ErrorCode::NotFound => "not found",
            ErrorCode::MethodNotAllowed => "method not allowed",
            ErrorCode::IdempotencyConflict => "idempotency key reused with a different proposal",
            ErrorCode::AlreadyExists => "already exists",
            ErrorCode::AlreadyDecided => "already decided",
            ErrorCode::StillPending => "proposal is still pending",
            ErrorCode::StaleDigest => "proposal changed since it was shown",
            ErrorCode::LeaseHeld => "task is claimed by another reviewer",
            ErrorCode::TaskAssigned => "task is assigned to another reviewer",
            ErrorCode::SelfApproval => "a principal may not approve its own proposal",
            ErrorCode::SystemPaused => "system is paused",
            ErrorCode::PayloadTooLarge => "request body too large",
            ErrorCode::RateLimited => "too many requests",
            ErrorCode::PolicyInvalid => "policy is not valid",
            ErrorCode::Unavailable => "service unavailable",
            ErrorCode::Internal => "internal error",
        }
    }

    /// Parses the stable string back into a code.
    pub fn from_str_code(code: &str) -> Option<ErrorCode> {
        ErrorCode::ALL
            .iter()
            .copied()
            .find(|it| it.as_str() == code)
    }
}

/// An RFC 9457 problem body (`application/problem+json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    /// A URI reference naming the code's section of the errors reference,
    /// served by loopgate itself: `/docs/errors#<code>`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The fixed title of the code.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// The stable error code.
    pub code: String,
    /// What happened this time.
    pub detail: String,
    /// What to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// Extra members, such as `current_digest`.
    #[serde(flatten)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub extra: serde_json::Map<String, serde_json::Value>,
}
