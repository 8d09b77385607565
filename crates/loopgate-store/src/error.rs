//! Store errors: a database failure, or a refusal by core (`TxError`).

use loopgate_core::ProposalId;

/// The database failed, or a row was missing or conflicting.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// No such row.
    #[error("not found")]
    NotFound,
    /// A unique key is taken.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database is unavailable for now (busy, locked, closed).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A concurrent transaction won a race for the same rows (PostgreSQL:
    /// a serialization failure, a deadlock, or a concurrent submission
    /// with the same idempotency key). The store runs the work again
    /// itself; callers see this only when every attempt lost.
    #[error("database contended: {0}")]
    Contended(String),
    /// The request cannot be answered from what is stored (a proof for a
    /// tree larger than the log).
    #[error("{0}")]
    Invalid(String),
    /// Anything else.
    #[error("database error: {0}")]
    Other(String),
}

/// A transactional write's error: `Refused` means core said no and nothing
/// was written; `Store` means the database failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TxError<E> {
    /// Core refused; nothing was written.
    #[error("{0}")]
    Refused(E),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Refusals of a submission.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SubmitError {
    /// The key was used with another digest.
    #[error("idempotency key `{key}` was used for `{existing}` with a different digest")]
    IdempotencyConflict { key: String, existing: ProposalId },
    /// The system does not exist.
    #[error("unknown system `{0}`")]
    UnknownSystem(String),
}

/// Refusals of a change to a standing grant.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GrantError {
    /// It already ended.
    #[error("grant `{id}` is already {state}")]
    Ended { id: String, state: &'static str },
}

/// Refusals of an erasure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EraseError {
    /// Only settled proposals can be erased: review needs the payload.
    #[error("proposal `{0}` is still pending; cancel or decide it first")]
    Pending(ProposalId),
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> StoreError {
        use rusqlite::ErrorCode as Code;
        match &error {
            rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
            rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
                Code::ConstraintViolation => StoreError::Conflict(error.to_string()),
                Code::DatabaseBusy
                | Code::DatabaseLocked
                | Code::CannotOpen
                | Code::DiskFull
                | Code::SystemIoFailure => StoreError::Unavailable(error.to_string()),
                _ => StoreError::Other(error.to_string()),
            },
            _ => StoreError::Other(error.to_string()),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(error: serde_json::Error) -> StoreError {
        StoreError::Other(format!("stored JSON is not valid: {error}"))
    }
}

impl<E> From<rusqlite::Error> for TxError<E> {
    fn from(error: rusqlite::Error) -> TxError<E> {
        TxError::Store(StoreError::from(error))
    }
}

impl From<rusqlite::types::FromSqlError> for StoreError {
    fn from(error: rusqlite::types::FromSqlError) -> StoreError {
        StoreError::Other(format!("unexpected column type: {error}"))
    }
}

impl From<postgres::Error> for StoreError {
    fn from(error: postgres::Error) -> StoreError {
        use postgres::error::SqlState;
        if error.is_closed() {
            return StoreError::Unavailable(format!(
                "the connection to PostgreSQL is closed: {error}"
            ));
        }
        let Some(db) = error.as_db_error() else {
            // No answer from the server: I/O, protocol, a value that could not be encoded.
            return match std::error::Error::source(&error) {
                Some(source) if source.is::<std::io::Error>() => StoreError::Unavailable(format!(
                    "PostgreSQL could not be reached: {}",
                    crate::db::pg_reason(&error)
                )),
                _ => StoreError::Other(crate::db::pg_reason(&error)),
            };
        };
        let code = db.code();
        let message = format!("{}: {}", db.severity(), db.message());
        if *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            // Another submission with this key committed first: the next
            // attempt replays it.
            || (*code == SqlState::UNIQUE_VIOLATION
                && db.constraint() == Some("proposals_idempotency"))
        {
            StoreError::Contended(message)
        } else if *code == SqlState::UNIQUE_VIOLATION
            || *code == SqlState::FOREIGN_KEY_VIOLATION
            || *code == SqlState::CHECK_VIOLATION
            || *code == SqlState::NOT_NULL_VIOLATION
        {
            StoreError::Conflict(message)
        } else if code.code().starts_with("08")
            || code.code().starts_with("53")
            || code.code().starts_with("57")
            || *code == SqlState::LOCK_NOT_AVAILABLE
        {
            // Connection exceptions, insufficient resources, operator
            // intervention (shutdown, statement timeout): worth a retry.
            StoreError::Unavailable(message)
        } else {
            StoreError::Other(message)
        }
    }
}

impl<E> From<postgres::Error> for TxError<E> {
    fn from(error: postgres::Error) -> TxError<E> {
        TxError::Store(StoreError::from(error))
    }
}
