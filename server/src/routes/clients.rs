//! Connected subscribers.

use actix_web::{web, HttpRequest, HttpResponse};
use graycast_protocol::rest::ClientList;

use crate::auth::Access;
use crate::error::ApiError;
use crate::state::{authorize, AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/clients").route(web::get().to(clients)));
}

/// Lists the connected WebSocket subscribers with the revision each acknowledged.
#[utoipa::path(get, path = "/v1/clients", tag = "clients", responses((status = 200, body = ClientList)))]
pub async fn clients(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Access::Read, None)?;
    Ok(HttpResponse::Ok().json(ClientList { clients: state.hub.clients.list() }))
}
