//! API errors: one enum, one table of status and code, one JSON rendering.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use graycast_protocol::{ErrorBody, ErrorDetail, NameError};

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
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The status and the stable snake_case code of each error: the one table.
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::InvalidName { .. } => (StatusCode::BAD_REQUEST, "invalid_name"),
            ApiError::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::InvalidValue(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_value"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::RevisionMismatch(_) => (StatusCode::PRECONDITION_FAILED, "revision_mismatch"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The stable code of this error, as sent on REST and WebSocket.
    pub fn code(&self) -> &'static str {
        self.status_and_code().1
    }

    /// The JSON body of this error.
    pub fn body(&self) -> ErrorBody {
        ErrorBody { error: ErrorDetail { code: self.code().to_owned(), message: self.to_string() } }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status_and_code().0
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
            | StoreError::Superseded(_) => ApiError::RevisionMismatch(err.to_string()),
            StoreError::Invalid(msg) => ApiError::InvalidValue(msg),
            StoreError::Closed | StoreError::Backend(_) => ApiError::Unavailable(err.to_string()),
            StoreError::Corrupt(_) => ApiError::Internal(err.to_string()),
        }
    }
}
