//! Why a store operation failed.

use graycast_protocol::Revision;

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{what} is at revision {actual}, not the expected revision {expected}")]
    RevisionMismatch { what: String, expected: Revision, actual: Revision },
    #[error("{what} already exists at revision {revision}")]
    AlreadyExists { what: String, revision: Revision },
    #[error("{what} does not exist, but the write requires it to")]
    Missing { what: String },
    #[error("{0}")]
    Superseded(String),
    /// A conditional write's headers do not hold.
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    QuotaExceeded(String),
    /// The backend refuses a request this large (etcd's `--max-request-bytes`).
    #[error("{0}")]
    TooLarge(String),
    #[error("the store is shutting down")]
    Closed,
    #[error("store failure: {0}")]
    Backend(String),
    /// The write may or may not have taken effect (etcd failed to answer after it was sent).
    #[error("{0}")]
    OutcomeUnknown(String),
    /// The store cannot be reached now (etcd down or without quorum); nothing was written.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The request conflicts with what the store holds, beyond any retry.
    #[error("{0}")]
    Conflict(String),
    /// An `Idempotency-Key` used before for another request.
    #[error("{0}")]
    KeyReused(String),
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
    /// A write that raises exposure in a namespace under a policy, without an approval.
    #[error("{0}")]
    ApprovalRequired(String),
    /// Values the write brings that their namespace's JSON Schema refuses.
    #[error("{}", schema_message(.0))]
    SchemaViolation(Vec<crate::schema::Violation>),
}

fn schema_message(violations: &[crate::schema::Violation]) -> String {
    match violations.first() {
        Some(first) => format!(
            "the {} value of {} breaks its JSON Schema at {:?} ({}: {}){}",
            first.variant,
            first.key,
            first.path,
            first.keyword,
            first.message,
            match violations.len() {
                1 => String::new(),
                n => format!(", and {} more (see details)", n - 1),
            }
        ),
        None => "the value breaks its JSON Schema".into(),
    }
}
