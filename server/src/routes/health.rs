//! Liveness, readiness, metrics and the OpenAPI document.

use actix_web::{web, HttpResponse};

use crate::app::AppState;
use crate::error::ApiError;
use crate::metrics::{Live, CONTENT_TYPE};

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

/// The server's metrics in the OpenMetrics text format (Prometheus scrapes it).
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, content_type = "application/openmetrics-text")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let live = Live {
        revision: state.store.revision(),
        connections: state.hub.connections(),
        subscribers: state.hub.subscribers(),
        subscriber_limit: state.subscriber_limit,
        leader: *state.store.leadership().borrow(),
    };
    HttpResponse::Ok().content_type(CONTENT_TYPE).body(state.metrics.render(&live))
}

/// This API as an OpenAPI 3 document, generated from the handlers and wire types.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200)))]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(crate::openapi::document())
}
