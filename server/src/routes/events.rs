//! `GET /v1/events`: the push protocol over server-sent events. This checks the
//! request; `push::sse` runs the stream.

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use graycast_protocol::ws::ClientHello;
use graycast_protocol::{ErrorBody, Revision};

use crate::auth;
use crate::error::ApiError;
use crate::push::session::check_subscription;
use crate::push::sse;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/events").route(web::get().to(events)));
}

/// Subscribes as `/v1/watch` does, answering `text/event-stream`.
#[utoipa::path(get, path = "/v1/events", tag = "watch",
    params(("namespaces" = String, Query, description = "comma-separated namespaces, or `*`"),
           ("since" = Option<u64>, Query, description = "resume after this revision (`Last-Event-ID` wins)"),
           ("client" = Option<String>, Query, description = "the client id shown in /v1/clients"),
           ("token" = Option<String>, Query, description = "the access token, when not sent as a bearer header"),
           ("Last-Event-ID" = Option<String>, Header, description = "the id of the last event received")),
    responses((status = 200, content_type = "text/event-stream", description = "the stream of events"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn events(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map_err(|e| ApiError::BadRequest(format!("invalid query: {e}")))?
        .into_inner();
    if let Some(unknown) =
        query.keys().find(|k| !matches!(k.as_str(), "namespaces" | "since" | "client" | "token"))
    {
        return Err(ApiError::BadRequest(format!(
            "unknown query parameter {unknown:?}; /v1/events takes namespaces, since, client and token"
        )));
    }
    let namespaces: Vec<String> = query
        .get("namespaces")
        .map(|list| {
            list.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned).collect()
        })
        .unwrap_or_default();
    let client = ClientHello {
        id: query.get("client").cloned(),
        labels: [("transport".to_owned(), "sse".to_owned())].into(),
    };
    check_subscription(&namespaces, &client)?;
    let since = match req.headers().get("last-event-id") {
        Some(id) => {
            Some(id.to_str().ok().and_then(|id| id.trim().parse::<Revision>().ok()).ok_or_else(
                || {
                    ApiError::BadRequest(
                        "Last-Event-ID must be a revision (an unsigned integer)".into(),
                    )
                },
            )?)
        }
        None => query
            .get("since")
            .map(|since| {
                since
                    .parse::<Revision>()
                    .map_err(|_| ApiError::BadRequest(format!("since {since:?} is not a revision")))
            })
            .transpose()?,
    };
    let secret = query.get("token").map(String::as_str).or_else(|| auth::bearer(req.headers()));
    let caller = state.identify(secret)?;
    caller.may_subscribe(&namespaces)?;
    let limit = state.subscriber_limit;
    let permit = state.hub.clients.try_connect(limit).ok_or_else(|| {
        ApiError::Unavailable(format!("the server already serves its limit of {limit} subscribers"))
    })?;

    let subscribe = sse::Subscribe { namespaces, since, client };
    let remote = req.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let body = sse::open(state.get_ref().clone(), subscribe, remote, caller, permit);
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // Proxies that buffer responses (nginx) must pass each event on at once.
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}
