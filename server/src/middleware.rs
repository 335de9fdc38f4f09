//! What wraps every REST request: its id (in its tracing span, its answer and its error
//! body), and the JSON error body on every error answer, whoever produced it.

use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError};
use tracing::Instrument as _;

use crate::error::ApiError;
use crate::request_id::{new_id, usable, CURRENT, HEADER};

/// Gives the request its id, runs it inside a span naming it, and answers the id.
pub async fn request_id(
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
    let metrics = req
        .app_data::<actix_web::web::Data<crate::state::AppState>>()
        .map(|state| state.metrics.clone());
    let method = req.method().clone();
    // The route's template, known from the path alone: also for an answer that a middleware
    // refused before any route ran (a 503 while the store is not loaded).
    let route = req.match_pattern();
    let handled = CURRENT.scope(id.clone(), next.call(req)).instrument(span.clone()).await;
    let status = match &handled {
        Ok(response) => response.status(),
        Err(err) => err.as_response_error().status_code(),
    };
    if let Some(metrics) = metrics {
        metrics.record_http(method.as_str(), route, status.as_u16(), started.elapsed());
    }
    // A server error is the operator's: it is logged with the id its body carries, so a user
    // quoting the error leads to this line (client errors stay at debug, below).
    if status.is_server_error() {
        span.in_scope(|| {
            tracing::warn!(
                status = status.as_u16(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "answered with a server error"
            );
        });
    }
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

/// Serves `HEAD` wherever `GET` is served: the request is routed as a `GET`, and the HTTP
/// layer, which saw the `HEAD`, sends the answer's head without its body.
pub async fn head_as_get(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if req.method() == actix_web::http::Method::HEAD {
        req.head_mut().method = actix_web::http::Method::GET;
    }
    next.call(req).await
}

/// Answers the API's requests 503 while the node has not loaded the store's state (it
/// started while etcd was unreachable): health, readiness and metrics still answer.
pub async fn serving(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let path = req.path();
    let api = path.starts_with("/v1/") || path.starts_with("/ofrep/") || path.starts_with("/ns/");
    let state = req.app_data::<actix_web::web::Data<crate::state::AppState>>();
    if api && state.is_some_and(|state| !state.store.serving()) {
        return Err(ApiError::Unavailable(
            "this node has not loaded the configuration yet: etcd has not answered since it \
             started"
                .into(),
        )
        .into());
    }
    next.call(req).await
}
