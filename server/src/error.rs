//! API errors: one enum, one table of status and code, one JSON rendering.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
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
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::RequestTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::QuotaExceeded(_) => (StatusCode::INSUFFICIENT_STORAGE, "quota_exceeded"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The same kind of error (status and code) with another message.
    pub fn reworded(&self, message: String) -> ApiError {
        match self {
            ApiError::InvalidName { .. } | ApiError::BadRequest(_) => ApiError::BadRequest(message),
            ApiError::InvalidJson(_) => ApiError::InvalidJson(message),
            ApiError::InvalidValue(_) => ApiError::InvalidValue(message),
            ApiError::NotFound(_) => ApiError::NotFound(message),
            ApiError::RevisionMismatch(_) => ApiError::RevisionMismatch(message),
            ApiError::PayloadTooLarge(_) => ApiError::PayloadTooLarge(message),
            ApiError::Unauthorized(_) => ApiError::Unauthorized(message),
            ApiError::Forbidden(_) => ApiError::Forbidden(message),
            ApiError::RateLimited(_) => ApiError::RateLimited(message),
            ApiError::MethodNotAllowed(_) => ApiError::MethodNotAllowed(message),
            ApiError::RequestTimeout(_) => ApiError::RequestTimeout(message),
            ApiError::Conflict(_) => ApiError::Conflict(message),
            ApiError::UnsupportedMediaType(_) => ApiError::UnsupportedMediaType(message),
            ApiError::QuotaExceeded(_) => ApiError::QuotaExceeded(message),
            ApiError::Unavailable(_) => ApiError::Unavailable(message),
            ApiError::Internal(_) => ApiError::Internal(message),
        }
    }

    /// The stable code of this error, as sent on REST and WebSocket.
    pub fn code(&self) -> &'static str {
        self.status_and_code().1
    }

    /// The JSON body of this error.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
                request_id: crate::request_id::current(),
            },
        }
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
            | StoreError::Superseded(_)
            | StoreError::PreconditionFailed(_) => ApiError::RevisionMismatch(err.to_string()),
            StoreError::Invalid(msg) => ApiError::InvalidValue(msg),
            StoreError::QuotaExceeded(msg) => ApiError::QuotaExceeded(msg),
            StoreError::Unavailable(_) => ApiError::Unavailable(err.to_string()),
            StoreError::Closed | StoreError::Backend(_) => ApiError::Unavailable(err.to_string()),
            StoreError::Corrupt(_) => ApiError::Internal(err.to_string()),
        }
    }
}

impl ApiError {
    /// The error that an answer of `status` produced elsewhere (by actix-web's routing, an
    /// extractor, a handshake) stands for, with `message` as its text.
    pub(crate) fn for_status(status: StatusCode, message: String) -> ApiError {
        match status.as_u16() {
            401 => ApiError::Unauthorized(message),
            403 => ApiError::Forbidden(message),
            404 => ApiError::NotFound(message),
            405 => ApiError::MethodNotAllowed(message),
            408 => ApiError::RequestTimeout(message),
            409 => ApiError::Conflict(message),
            412 => ApiError::RevisionMismatch(message),
            413 => ApiError::PayloadTooLarge(message),
            415 => ApiError::UnsupportedMediaType(message),
            422 => ApiError::InvalidValue(message),
            429 => ApiError::RateLimited(message),
            503 => ApiError::Unavailable(message),
            507 => ApiError::QuotaExceeded(message),
            400..=499 => ApiError::BadRequest(message),
            _ => ApiError::Internal(message),
        }
    }
}

/// Middleware giving every error answer the JSON error body, whoever produced it: a 405
/// of actix-web's routing, a refused extractor, a failed WebSocket handshake. Answers
/// that carry a JSON body already pass untouched.
pub async fn json_bodies(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // Errors that escape as `Err` are rendered by actix-web from their `ResponseError`;
    // every error of ours is an `ApiError`, whose rendering is JSON already.
    let response = next.call(req).await?;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return Ok(response.map_into_boxed_body());
    }
    let message = match (response.response().error(), status) {
        (Some(err), _) => err.to_string(),
        (None, StatusCode::METHOD_NOT_ALLOWED) => {
            let allowed = response
                .headers()
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let request = response.request();
            format!("{} is not allowed on {}; allowed: {allowed}", request.method(), request.path())
        }
        (None, _) => status.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    let mut answer = ApiError::for_status(status, message).error_response();
    if let Some(allow) = response.headers().get(header::ALLOW) {
        answer.headers_mut().insert(header::ALLOW, allow.clone());
    }
    Ok(response.into_response(answer))
}
