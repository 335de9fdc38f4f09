//! Connected subscribers.

use actix_web::{web, HttpResponse};
use graycast_protocol::rest::ClientList;

use crate::app::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/clients", web::get().to(clients));
}

/// Lists the connected WebSocket subscribers with the revision each acknowledged.
#[utoipa::path(get, path = "/v1/clients", tag = "clients", responses((status = 200, body = ClientList)))]
pub async fn clients(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(ClientList { clients: state.hub.clients() })
}
