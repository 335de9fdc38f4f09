//! A request id for every REST request: the client's `X-Request-Id` when it sends a
//! usable one (so a proxy's id carries through), else a new one. The id is a field of the
//! request's tracing span (so every log line the request causes names it), the
//! `X-Request-Id` header of the answer, and the `request_id` of an error body: a user
//! quoting an error hands the operator the key to its logs.

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError};
use tracing::Instrument as _;

use crate::error::ApiError;

/// The header read and answered.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// Longest id taken from a client.
const MAX_LEN: usize = 128;

tokio::task_local! {
    static CURRENT: Arc<str>;
}

/// The id of the request being handled on this task, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(|id| id.to_string()).ok()
}

/// Whether a client's id can be taken as it is: printable ASCII without spaces, so it
/// stays one token in logs and headers.
fn usable(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

fn new_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Gives the request its id, runs it inside a span naming it, and answers the id.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id: Arc<str> = req
        .headers()
        .get(&HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| usable(id))
        .map_or_else(new_id, str::to_owned)
        .into();
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.path());
    let started = std::time::Instant::now();
    let handled = CURRENT.scope(id.clone(), next.call(req)).instrument(span.clone()).await;
    // An error that escapes as `Err` is rendered by actix-web later, outside the scope:
    // it goes out wrapped with its id.
    let mut response =
        handled.map_err(|err| actix_web::Error::from(Identified { err, id: id.clone() }))?;
    let status = response.status().as_u16();
    span.in_scope(|| {
        tracing::debug!(status, elapsed_ms = started.elapsed().as_millis() as u64, "answered");
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    Ok(response)
}

/// An error answered with the request's id in its body and header.
#[derive(Debug)]
struct Identified {
    err: actix_web::Error,
    id: Arc<str>,
}

impl std::fmt::Display for Identified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.err.fmt(f)
    }
}

impl ResponseError for Identified {
    fn status_code(&self) -> StatusCode {
        self.err.as_response_error().status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut body = match self.err.as_error::<ApiError>() {
            Some(api) => api.body(),
            None => ApiError::for_status(status, self.err.to_string()).body(),
        };
        body.error.request_id = Some(self.id.to_string());
        let mut response = HttpResponse::build(status).json(body);
        if let Ok(value) = HeaderValue::from_str(&self.id) {
            response.headers_mut().insert(HEADER, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_printable_single_tokens_are_taken() {
        assert!(usable("abc-123_X.y"));
        assert!(!usable(""));
        assert!(!usable("two words"));
        assert!(!usable("line\nbreak"));
        assert!(!usable(&"x".repeat(MAX_LEN + 1)));
        assert_eq!(new_id().len(), 16);
    }
}
