//! Liveness, readiness, metrics and the OpenAPI document.

use actix_web::{web, HttpResponse};

use crate::app::AppState;
use crate::error::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/healthz").route(web::get().to(healthz)))
        .service(web::resource("/readyz").route(web::get().to(readyz)))
        .service(web::resource("/metrics").route(web::get().to(metrics)))
        .service(web::resource("/openapi.json").route(web::get().to(openapi)));
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// The store answers; 503 when it does not.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200), (status = 503, body = graycast_protocol::ErrorBody)))]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state
        .store
        .check()
        .await
        .map_err(|e| ApiError::Unavailable(format!("the store cannot take writes: {e}")))?;
    Ok(HttpResponse::Ok()
        .json(serde_json::json!({"status": "ready", "revision": state.store.revision()})))
}

/// Prometheus text exposition of the server's counters.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, content_type = "text/plain")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.metrics.render(
        state.store.revision(),
        state.hub.connections(),
        state.subscriber_limit,
        *state.store.leadership().borrow(),
    ))
}

/// This API as an OpenAPI 3 document, generated from the handlers and wire types.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200)))]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(crate::openapi::document())
}
