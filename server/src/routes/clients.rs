//! Connected subscribers.

use actix_web::{web, HttpRequest, HttpResponse};
use graycast_protocol::gray::ReportRequest;
use graycast_protocol::rest::ClientList;
use graycast_protocol::rollout::Variant;
use graycast_protocol::ws::Nack;
use graycast_protocol::ErrorBody;

use crate::error::check_names;
use crate::gray::guard;

use crate::auth::Access;
use crate::error::ApiError;
use crate::state::{authorize, AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/clients").route(web::get().to(clients)))
        .service(web::resource("/v1/nacks").route(web::post().to(nack)));
}

/// Lists the connected WebSocket subscribers with the revision each acknowledged.
#[utoipa::path(get, path = "/v1/clients", tag = "clients", responses((status = 200, body = ClientList)))]
pub async fn clients(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Access::Read, None)?;
    let clients = &state.hub.clients;
    Ok(HttpResponse::Ok()
        .json(ClientList { clients: clients.list(), rejections: clients.rejections() }))
}

/// Records a value a client's application rejected (as the `nack` message does, for
/// clients on server-sent events): listed in `/v1/clients`, and an error of its variant
/// for a running release's guard when the token may report.
#[utoipa::path(post, path = "/v1/nacks", tag = "clients", request_body = Nack,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn nack(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let nack: Nack = super::read_json(&req, payload, &state).await?;
    authorize(&state, &req, Access::Read, Some(&nack.namespace))?;
    let client = nack.client.clone().ok_or_else(|| {
        ApiError::BadRequest(
            "a nack over REST names its client (\"client\": the client's id)".into(),
        )
    })?;
    let reports = authorize(&state, &req, Access::Report, Some(&nack.namespace)).is_ok();
    record_nack(&state, &nack, &client, reports)?;
    Ok(HttpResponse::NoContent().finish())
}

/// Checks and records a nack; with `reports` (the caller may report), a gray release's
/// guard counts it as an error of the rejected variant.
pub fn record_nack(
    state: &AppState,
    nack: &Nack,
    client: &str,
    reports: bool,
) -> Result<(), ApiError> {
    check_names(&nack.namespace, Some(&nack.key))?;
    if nack.error.len() > MAX_NACK_ERROR_BYTES || client.is_empty() || client.len() > 256 {
        return Err(ApiError::BadRequest(format!(
            "a nack's error is at most {MAX_NACK_ERROR_BYTES} bytes and its client 1 to 256"
        )));
    }
    let first =
        state.hub.clients.reject(&nack.namespace, &nack.key, nack.revision, client, &nack.error);
    let Some(entry) = state.store.get(&nack.namespace, &nack.key) else { return Ok(()) };
    let Some(gray) =
        entry.gray.as_ref().filter(|_| first && reports && entry.revision == nack.revision)
    else {
        return Ok(());
    };
    let variant = nack.variant.unwrap_or(Variant::Gray);
    let report = ReportRequest { variant, ok: 0, errors: 1, release: Some(gray.started_at) };
    let (store, guards) = (state.store.clone(), state.guards.clone());
    let (namespace, key, reporter) =
        (nack.namespace.clone(), nack.key.clone(), format!("nack from {client}"));
    actix_web::rt::spawn(async move {
        if let Err(err) = guard::report(&store, &guards, &namespace, &key, &report, &reporter).await
        {
            tracing::warn!(namespace, key, error = %err, "cannot count a nack for the guard");
        }
    });
    Ok(())
}

/// Most bytes of a nack's reason.
pub const MAX_NACK_ERROR_BYTES: usize = 1024;
