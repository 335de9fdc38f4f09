//! The WebSocket upgrade at `/v1/watch`; the session itself lives in `session`.

use actix_web::{web, HttpRequest, HttpResponse};

use std::collections::HashMap;

use crate::app::AppState;
use crate::auth;
use crate::error::ApiError;
use crate::session;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/watch").route(web::get().to(watch)));
}

/// Upgrades to the push protocol (see SPEC §5): subscribe, then snapshot or replay, then changes.
#[utoipa::path(get, path = "/v1/watch", tag = "watch",
    responses((status = 101, description = "switching to the WebSocket push protocol"),
              (status = 503, body = graycast_protocol::ErrorBody, description = "subscriber limit reached")))]
pub async fn watch(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let Some(permit) = state.hub.try_connect(state.config.max_subscribers) else {
        return Err(ApiError::Unavailable(format!(
            "the server already serves its limit of {} subscribers",
            state.config.max_subscribers
        ))
        .into());
    };
    // A token on the upgrade (`?token=` or a bearer header) is checked now; without one,
    // the session waits for an `auth` message before `subscribe`.
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map_err(|e| ApiError::BadRequest(format!("invalid query: {e}")))?;
    let secret = query.get("token").map(String::as_str).or_else(|| auth::bearer(&req));
    let principal = match (state.tokens.as_deref(), secret) {
        (Some(tokens), Some(secret)) => Some(
            tokens
                .authenticate(secret)
                .ok_or_else(|| ApiError::Unauthorized("the access token is not valid".into()))?,
        ),
        _ => None,
    };
    let (response, ws, stream) = actix_ws::handle(&req, body)?;
    let remote = req.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let state = state.get_ref().clone();
    let shutdown = state.shutdown.clone();
    actix_web::rt::spawn(async move {
        session::run(state, ws, stream, remote, principal, shutdown).await;
        drop(permit);
    });
    Ok(response)
}
