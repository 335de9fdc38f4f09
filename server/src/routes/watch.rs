//! `GET /v1/watch` without an upgrade: the upgrade itself never reaches the routes
//! (`push::websocket` serves it on the raw connection).

use actix_web::{web, HttpResponse};

use crate::error::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/watch").route(web::get().to(watch)));
}

/// Upgrades to the push protocol: subscribe, then snapshot or replay, then changes.
#[utoipa::path(get, path = "/v1/watch", tag = "watch",
    params(("token" = Option<String>, Query, description = "the access token, when not sent as a bearer header")),
    responses((status = 101, description = "switching to the WebSocket push protocol"),
              (status = 400, body = graycast_protocol::ErrorBody, description = "not a WebSocket upgrade"),
              (status = 401, body = graycast_protocol::ErrorBody, description = "the token is not valid"),
              (status = 403, body = graycast_protocol::ErrorBody, description = "a cross-origin upgrade"),
              (status = 503, body = graycast_protocol::ErrorBody, description = "subscriber limit reached")))]
pub async fn watch() -> Result<HttpResponse, ApiError> {
    Err(ApiError::BadRequest(
        "GET /v1/watch is a WebSocket endpoint: send Connection: Upgrade and Upgrade: websocket"
            .into(),
    ))
}
