//! Liveness, readiness and metrics.

use actix_web::{http::header, web, HttpRequest, HttpResponse};

use crate::error::ApiError;
use crate::metrics::{self, Live};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/healthz").route(web::get().to(healthz)))
        .service(web::resource("/readyz").route(web::get().to(readyz)))
        .service(web::resource("/metrics").route(web::get().to(metrics)));
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Readiness for a load balancer: `/readyz` answers 200 while the node serves reads and
/// pushes (it has its state, and with etcd unreachable it serves the last known state);
/// `/readyz?write` also asks whether the store takes writes (503 when it does not). Both
/// say `writable`.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    params(("write" = Option<String>, Query, description = "present: ready only if writes are taken too")),
    responses((status = 200), (status = 503, body = graycast_protocol::ErrorBody)))]
pub async fn readyz(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let wants_write =
        req.query_string().split('&').any(|part| part == "write" || part.starts_with("write="));
    if !state.store.serving() {
        return Err(ApiError::Unavailable(
            "this node has not loaded the configuration yet: etcd has not answered since it \
             started"
                .into(),
        ));
    }
    let writable = state.store.check().await;
    if wants_write {
        if let Err(e) = &writable {
            return Err(ApiError::Unavailable(format!("the store cannot take writes: {e}")));
        }
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "status": "ready",
        "revision": state.store.revision(),
        "writable": writable.is_ok(),
    })))
}

/// The server's metrics: OpenMetrics text when the scrape's `Accept` asks for it (as
/// Prometheus does), else Prometheus' classic text format (0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, content(
    (String = "application/openmetrics-text"), (String = "text/plain")))))]
pub async fn metrics(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let live = Live {
        revision: state.store.revision(),
        connections: state.hub.clients.connections(),
        subscribers: state.hub.clients.subscribers(),
        subscriber_limit: state.subscriber_limit,
        leader: *state.store.leadership().borrow(),
    };
    // The process figures are read from /proc: off the worker.
    let metrics = state.metrics.clone();
    let text = match web::block(move || metrics.render(&live)).await {
        Ok(text) => text,
        Err(err) => {
            return actix_web::ResponseError::error_response(&crate::error::ApiError::Internal(
                format!("cannot render the metrics: {err}"),
            ))
        }
    };
    let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok());
    if metrics::wants_openmetrics(accept) {
        HttpResponse::Ok().content_type(metrics::CONTENT_TYPE).body(text)
    } else {
        HttpResponse::Ok()
            .content_type(metrics::PROMETHEUS_CONTENT_TYPE)
            .body(metrics::to_prometheus_text(&text))
    }
}
