//! `ApiError`: the one place errors become RFC 9457 problem responses.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use loopgate_core::review::ReviewError;
use loopgate_core::routing::{InvalidContext, PolicyError};
use loopgate_proto::{ErrorCode, Problem};
use loopgate_store::{EraseError, GrantError};
use loopgate_store::{StoreError, SubmitError, TxError};
use serde_json::{Map, Value, json};

/// Where each code's documentation lives: docs/errors.md, served by the
/// binary itself (`ui::docs`), so the link resolves against the server that
/// answered (a relative reference, RFC 9457 section 3.1.1), at its version.
pub const ERRORS_DOC: &str = "/docs/errors";

/// An error on its way to becoming a problem response (boxed: errors are rare, `Result`s are everywhere).
#[derive(Debug)]
pub struct ApiError(Box<Inner>);

#[derive(Debug)]
struct Inner {
    code: ErrorCode,
    detail: String,
    help: Option<String>,
    extra: Map<String, Value>,
    /// Seconds for `Retry-After` (429 and 503).
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a code and what happened.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> ApiError {
        ApiError(Box::new(Inner {
            code,
            detail: detail.into(),
            help: None,
            extra: Map::new(),
            retry_after: None,
        }))
    }

    /// 429 `rate_limited`: a limit was reached; try again after `wait`.
    pub fn rate_limited(detail: impl Into<String>, wait: std::time::Duration) -> ApiError {
        ApiError::new(ErrorCode::RateLimited, detail).retry_after(wait)
    }

    /// 503 `unavailable`: the server is busy; try again after `wait`.
    pub fn busy(detail: impl Into<String>, wait: std::time::Duration) -> ApiError {
        ApiError::new(ErrorCode::Unavailable, detail).retry_after(wait)
    }

    /// Sets `Retry-After` (whole seconds, at least 1).
    pub fn retry_after(mut self, wait: std::time::Duration) -> ApiError {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        self.0.retry_after = Some(seconds.max(1));
        self
    }

    /// Adds what to do about it.
    pub fn help(mut self, help: impl Into<String>) -> ApiError {
        self.0.help = Some(help.into());
        self
    }

    /// Adds an extension member.
    pub fn with(mut self, key: &str, value: Value) -> ApiError {
        self.0.extra.insert(key.to_owned(), value);
        self
    }

    /// 422 `validation_failed`.
    pub fn invalid(detail: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::ValidationFailed, detail)
    }

    /// 403 `forbidden`.
    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Forbidden, detail)
    }

    /// 404 `not_found`.
    pub fn not_found(what: &str, id: &str) -> ApiError {
        ApiError::new(ErrorCode::NotFound, format!("{what} `{id}` does not exist"))
    }

    /// 500 `internal`: the cause goes to the log with a request id; the body carries only the id.
    pub fn internal(cause: &dyn std::fmt::Display) -> ApiError {
        let request_id = ulid::Ulid::new().to_string();
        tracing::error!(request_id, error = %cause, "internal error");
        ApiError::new(
            ErrorCode::Internal,
            format!("something went wrong inside loopgate (request `{request_id}`)"),
        )
        .help("the cause is in the server log under this request id")
        .with("request_id", json!(request_id))
    }

    /// The code.
    pub fn code(&self) -> ErrorCode {
        self.0.code
    }
}

impl ApiError {
    /// The problem document this error becomes.
    pub fn problem(self) -> Problem {
        let inner = *self.0;
        let status =
            StatusCode::from_u16(inner.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Problem {
            type_: format!("{ERRORS_DOC}#{}", inner.code.as_str()),
            title: inner.code.title().to_owned(),
            status: status.as_u16(),
            code: inner.code.as_str().to_owned(),
            detail: inner.detail,
            help: inner.help,
            extra: inner.extra,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.0.code;
        let retry_after = self.0.retry_after;
        let problem = self.problem();
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(super::PROBLEM_JSON),
        );
        match (code, retry_after) {
            (_, Some(seconds)) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            (ErrorCode::Unavailable | ErrorCode::RateLimited, None) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            (ErrorCode::Unauthenticated, None) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"loopgate\""),
                );
            }
            _ => (),
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::NotFound => {
                ApiError::new(ErrorCode::NotFound, "the resource does not exist")
            }
            StoreError::Conflict(_) => ApiError::new(
                ErrorCode::AlreadyExists,
                "a resource with this id or name already exists",
            )
            .help("choose another id or name, or update the existing one"),
            StoreError::Unavailable(cause) | StoreError::Contended(cause) => {
                tracing::warn!(%cause, "store unavailable");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "the database is unavailable for a moment",
                )
                .help("retry after a second; nothing was changed")
            }
            StoreError::Invalid(message) => ApiError::invalid(message),
            StoreError::Other(cause) => ApiError::internal(&cause),
        }
    }
}

impl<E: Into<ApiError>> From<TxError<E>> for ApiError {
    fn from(error: TxError<E>) -> ApiError {
        match error {
            TxError::Refused(refusal) => refusal.into(),
            TxError::Store(error) => error.into(),
        }
    }
}

impl From<GrantError> for ApiError {
    fn from(error: GrantError) -> ApiError {
        ApiError::new(ErrorCode::AlreadyDecided, error.to_string())
            .help("it approves nothing any more; nothing to revoke")
    }
}

impl From<EraseError> for ApiError {
    fn from(error: EraseError) -> ApiError {
        ApiError::new(ErrorCode::StillPending, error.to_string())
            .help("cancel or decide the proposal, then erase it")
    }
}

impl From<ReviewError> for ApiError {
    fn from(error: ReviewError) -> ApiError {
        let detail = error.to_string();
        match error {
            ReviewError::AlreadyDecided { .. } | ReviewError::AlreadyVoted { .. } => {
                ApiError::new(ErrorCode::AlreadyDecided, detail)
                    .help("reload the task list; this one needs nothing more from you")
            }
            ReviewError::StaleDigest { current, .. } => {
                ApiError::new(ErrorCode::StaleDigest, detail)
                    .help("reload the proposal and decide again")
                    .with("current_digest", json!(current.as_str()))
            }
            ReviewError::LeaseHeld { holder, until } => ApiError::new(ErrorCode::LeaseHeld, detail)
                .help("pick another task, or wait until the lease ends")
                .with("claimed_by", json!(holder))
                .with("lease_expires_at", json!(until)),
            ReviewError::NotClaimed { .. } => ApiError::new(ErrorCode::LeaseHeld, detail),
            ReviewError::Assigned { assignee, until } => {
                ApiError::new(ErrorCode::TaskAssigned, detail)
                    .help("pick another task; this one is reserved for its assignee")
                    .with("assignee", json!(assignee))
                    .with("return_at", json!(until))
            }
            ReviewError::SelfApproval { .. } => ApiError::new(ErrorCode::SelfApproval, detail)
                .help("another reviewer has to approve it"),
            ReviewError::NotInGroup { .. } => ApiError::new(ErrorCode::Forbidden, detail),
            ReviewError::NoEscalation { .. } => {
                ApiError::invalid(detail).help("approve or reject instead")
            }
            ReviewError::Invalid(_) => ApiError::invalid(detail),
            ReviewError::GrantRefused(_) => ApiError::new(ErrorCode::Forbidden, detail)
                .help("approve without a grant; the policy decides where grants may be given"),
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(error: SubmitError) -> ApiError {
        let detail = error.to_string();
        match error {
            SubmitError::IdempotencyConflict { existing, .. } => {
                ApiError::new(ErrorCode::IdempotencyConflict, detail)
                    .help("use a new idempotency key for a different proposal")
                    .with("existing_proposal", json!(existing.as_str()))
            }
            SubmitError::UnknownSystem(_) => {
                ApiError::invalid(detail).help("register the system first: POST /v1/systems")
            }
        }
    }
}

impl From<InvalidContext> for ApiError {
    fn from(error: InvalidContext) -> ApiError {
        let detail = error.to_string();
        let mut api = ApiError::new(ErrorCode::InvalidContext, detail)
            .help("numbers are whole (Long) or have at most 4 fractional digits (decimal); `GET /v1/systems` shows each declared shape; see /docs/policies#numbers-and-shapes")
            .with("field", json!(error.field));
        if let Some(expected) = error.expected {
            api = api.with("expected", json!(expected));
        }
        api
    }
}

impl From<PolicyError> for ApiError {
    fn from(error: PolicyError) -> ApiError {
        ApiError::new(ErrorCode::PolicyInvalid, error.to_string())
            .help("fix the policy text; the live version is unchanged")
    }
}

/// What a caller sent, as an error message quotes it: at most 64
/// characters, so that a refusal never echoes a large value back.
pub(crate) fn quoted(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;

    use super::*;

    /// One body for every code: the stable part of the contract.
    #[tokio::test]
    async fn every_code_renders_as_a_problem() {
        let mut bodies = Vec::new();
        for code in ErrorCode::ALL {
            let response = ApiError::new(*code, "what happened")
                .help("what to do")
                .into_response();
            assert_eq!(response.status().as_u16(), code.status());
            let content_type = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|it| it.to_str().ok());
            assert_eq!(content_type, Some("application/problem+json"));
            let retry_after = response.headers().contains_key(header::RETRY_AFTER);
            assert_eq!(
                retry_after,
                matches!(code, ErrorCode::Unavailable | ErrorCode::RateLimited)
            );
            let challenge = response.headers().contains_key(header::WWW_AUTHENTICATE);
            assert_eq!(challenge, *code == ErrorCode::Unauthenticated);
            let bytes = to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap_or_default();
            bodies.push(serde_json::from_slice::<Value>(&bytes).unwrap_or_default());
        }
        insta::assert_json_snapshot!("every_error_code", bodies);
    }

    #[tokio::test]
    async fn internal_errors_keep_their_cause_out_of_the_body() {
        let response = ApiError::from(StoreError::Other(
            "disk I/O error at /var/lib/secret".into(),
        ))
        .into_response();
        let bytes = to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("/var/lib/secret"), "{text}");
        assert!(text.contains("request_id"), "{text}");
    }
}
