//! Connected subscribers.

use actix_web::{web, HttpRequest, HttpResponse};
use graycast_protocol::rest::ClientList;
use graycast_protocol::ws::Nack;
use graycast_protocol::ErrorBody;

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
    responses((status = 204), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn nack(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let nack: Nack = super::read_json(&req, payload, &state).await?;
    authorize(&state, &req, Access::Read, Some(&nack.namespace))?;
    let client = nack.client.clone().ok_or_else(|| {
        ApiError::InvalidValue(
            "a nack over REST names its client (\"client\": the client's id)".into(),
        )
    })?;
    let reports = authorize(&state, &req, Access::Report, Some(&nack.namespace)).is_ok();
    crate::push::nack::record(&state, &nack, &client, reports)?;
    Ok(HttpResponse::NoContent().finish())
}
