//! API errors: one enum, its row of the protocol's error table (status, code, close code),
//! one JSON rendering.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use graycast_protocol::{validate_name, ErrorBody, ErrorCode, ErrorDetail, NameError};

use crate::store::StoreError;

/// Everything a request can fail with. The message names the offending value.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid {what} {name:?}: {source}")]
    InvalidName { what: &'static str, name: String, source: NameError },
    #[error("{0}")]
    InvalidJson(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    InvalidValue(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    RevisionMismatch(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    RateLimited(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
    /// Any code of the table, for errors named by their code rather than their kind.
    #[error("{1}")]
    Coded(ErrorCode, String),
    /// An error that lists what exactly it refused (the body's `details`).
    #[error("{1}")]
    Detailed(ErrorCode, String, serde_json::Value),
}

impl ApiError {
    /// This error's row of the one error table (`graycast_protocol::error`).
    pub fn error_code(&self) -> ErrorCode {
        match self {
            ApiError::InvalidName { .. } => ErrorCode::InvalidName,
            ApiError::InvalidJson(_) => ErrorCode::InvalidJson,
            ApiError::BadRequest(_) => ErrorCode::BadRequest,
            ApiError::InvalidValue(_) => ErrorCode::InvalidValue,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::RevisionMismatch(_) => ErrorCode::RevisionMismatch,
            ApiError::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::RateLimited(_) => ErrorCode::RateLimited,
            ApiError::MethodNotAllowed(_) => ErrorCode::MethodNotAllowed,
            ApiError::RequestTimeout(_) => ErrorCode::RequestTimeout,
            ApiError::Conflict(_) => ErrorCode::Conflict,
            ApiError::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            ApiError::QuotaExceeded(_) => ErrorCode::QuotaExceeded,
            ApiError::Unavailable(_) => ErrorCode::Unavailable,
            ApiError::Internal(_) => ErrorCode::Internal,
            ApiError::Coded(code, _) | ApiError::Detailed(code, _, _) => *code,
        }
    }

    /// The same kind of error (status and code) with another message.
    pub fn reworded(&self, message: String) -> ApiError {
        ApiError::Coded(self.error_code(), message)
    }

    /// The stable code of this error, as sent on REST and WebSocket.
    pub fn code(&self) -> &'static str {
        self.error_code().as_str()
    }

    /// The WebSocket close code a session refusing with this error ends with.
    pub fn close_code(&self) -> u16 {
        self.error_code().close_code()
    }

    /// The JSON body of this error.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
                request_id: crate::request_id::current(),
                details: match self {
                    ApiError::Detailed(_, _, details) => Some(details.clone()),
                    _ => None,
                },
            },
        }
    }
}

/// Checks a namespace and (if given) a key name against the naming rule.
pub fn check_names(namespace: &str, key: Option<&str>) -> Result<(), ApiError> {
    validate_name(namespace).map_err(|source| ApiError::InvalidName {
        what: "namespace",
        name: namespace.to_owned(),
        source,
    })?;
    if let Some(key) = key {
        validate_name(key).map_err(|source| ApiError::InvalidName {
            what: "key",
            name: key.to_owned(),
            source,
        })?;
    }
    Ok(())
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.error_code().status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(self.body())
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound { .. } => ApiError::NotFound(err.to_string()),
            StoreError::RevisionMismatch { .. }
            | StoreError::AlreadyExists { .. }
            | StoreError::Missing { .. }
            | StoreError::Superseded(_)
            | StoreError::PreconditionFailed(_) => ApiError::RevisionMismatch(err.to_string()),
            StoreError::Invalid(msg) => ApiError::InvalidValue(msg),
            StoreError::QuotaExceeded(msg) => ApiError::QuotaExceeded(msg),
            StoreError::TooLarge(msg) => ApiError::PayloadTooLarge(msg),
            StoreError::OutcomeUnknown(msg) => ApiError::Coded(ErrorCode::OutcomeUnknown, msg),
            StoreError::KeyReused(msg) => ApiError::Coded(ErrorCode::IdempotencyKeyReused, msg),
            StoreError::Conflict(msg) => ApiError::Coded(ErrorCode::Conflict, msg),
            StoreError::Unavailable(_) => ApiError::Unavailable(err.to_string()),
            StoreError::Closed | StoreError::Backend(_) => ApiError::Unavailable(err.to_string()),
            StoreError::Corrupt(_) => ApiError::Internal(err.to_string()),
            StoreError::ApprovalRequired(msg) => ApiError::Coded(ErrorCode::ApprovalRequired, msg),
            StoreError::SchemaViolation(ref violations) => ApiError::Detailed(
                ErrorCode::SchemaViolation,
                err.to_string(),
                serde_json::json!(violations),
            ),
        }
    }
}

impl ApiError {
    /// The error that an answer of `status` produced elsewhere (by actix-web's routing, an
    /// extractor, a handshake) stands for, with `message` as its text.
    pub(crate) fn for_status(status: StatusCode, message: String) -> ApiError {
        ApiError::Coded(ErrorCode::for_status(status.as_u16()), message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code of the table answers its status and its code, in the JSON error shape.
    #[test]
    fn every_code_answers_its_row() {
        for kind in graycast_protocol::ERRORS {
            let err = ApiError::Coded(kind.code, "why".into());
            let answer = err.error_response();
            assert_eq!(answer.status().as_u16(), kind.status, "{}", kind.name);
            assert_eq!(err.code(), kind.name);
            assert_eq!(err.close_code(), kind.close);
            assert_eq!(err.body().error.code, kind.name);
            let status = StatusCode::from_u16(kind.status).unwrap_or_default();
            assert_eq!(
                ApiError::for_status(status, String::new()).error_response().status(),
                status
            );
            assert_eq!(err.reworded("other".into()).code(), kind.name);
        }
    }
}
