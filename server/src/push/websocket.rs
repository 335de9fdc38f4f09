//! The WebSocket upgrade of `/v1/watch`; the session itself lives in `session`.
//!
//! Upgrade requests bypass actix-web's routing: actix-http hands the connection itself
//! to [`upgrade`], which checks what the REST routes would (the path, the browser-origin
//! policy, the token, the connection limit), answers the handshake and runs the session
//! on the raw socket. Owning the socket is what lets a session read frame headers before
//! their payloads, write queued frames in one vectored write, and reset a connection
//! whose peer takes nothing. A `GET /v1/watch` without an upgrade reaches `routes::watch`.

use std::collections::HashMap;

use actix_codec::Framed;
use actix_http::{h1, ws, HttpMessage, Request};
use actix_web::http::StatusCode;
use actix_web::{web, ResponseError};
use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::auth;
use crate::error::ApiError;
use crate::push::clients::ConnectionPermit;
use crate::push::session::{self, Opening};
use crate::push::socket::Upgraded;
use crate::state::{AppState, Caller};

/// Serves an upgraded connection: answers the handshake, or the error that refuses it.
pub async fn upgrade<S: Upgraded>(state: AppState, req: Request, framed: Framed<S, h1::Codec>) {
    let parts = framed.into_parts();
    let (mut socket, read_buf, unsent) = (parts.io, parts.read_buf, parts.write_buf);
    // Answers to earlier requests on this connection that are not out yet come first.
    if !unsent.is_empty() && socket.write_all(&unsent).await.is_err() {
        return;
    }
    drop(unsent);
    // The HTTP codec's read buffer has room for request heads (kilobytes): a session
    // keeps only the bytes the client sent behind its handshake.
    let inbound = BytesMut::from(&read_buf[..]);
    drop(read_buf);
    let remote = req.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    match accept(&state, &req) {
        Ok((caller, permit)) => {
            let answer = handshake_answer(&req);
            // Nor does a session keep the request it was upgraded from.
            drop(req);
            if socket.write_all(&answer).await.is_err() {
                return;
            }
            drop(answer);
            let socket = socket.into_session();
            session::run(state, socket, Opening::WebSocket { inbound }, remote, caller).await;
            drop(permit);
        }
        Err(err) => {
            let _ = socket.write_all(&error_answer(&err)).await;
            let _ = socket.shutdown().await;
        }
    }
}

/// Checks an upgrade request as the REST routes check theirs.
fn accept(state: &AppState, req: &Request) -> Result<(Caller, ConnectionPermit), ApiError> {
    if req.path() != "/v1/watch" {
        return Err(ApiError::NotFound(format!(
            "no WebSocket endpoint at {}; subscribe at /v1/watch",
            req.path()
        )));
    }
    state.origin_policy.check(req.method(), req.headers())?;
    ws::verify_handshake(req.head())
        .map_err(|e| ApiError::BadRequest(format!("not a WebSocket handshake: {e}")))?;
    // A token on the upgrade (`?token=` or a bearer header) is checked now; without one,
    // the session waits for an `auth` message before `subscribe`.
    let query = web::Query::<HashMap<String, String>>::from_query(req.uri().query().unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(format!("invalid query: {e}")))?;
    let secret = query.get("token").map(String::as_str).or_else(|| auth::bearer(req.headers()));
    let caller = state.identify(secret)?;
    let limit = state.subscriber_limit;
    let permit = state.hub.clients.try_connect(limit).ok_or_else(|| {
        ApiError::Unavailable(format!("the server already serves its limit of {limit} subscribers"))
    })?;
    Ok((caller, permit))
}

/// The `101 Switching Protocols` answer to a checked handshake.
fn handshake_answer(req: &Request) -> Vec<u8> {
    let key = req.headers().get("sec-websocket-key").map(|k| k.as_bytes()).unwrap_or_default();
    let accept = ws::hash_key(key);
    let mut answer = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-accept: ".to_vec();
    answer.extend_from_slice(&accept);
    answer.extend_from_slice(b"\r\n\r\n");
    answer
}

/// A whole HTTP answer carrying an error's JSON body; the connection closes after it.
fn error_answer(err: &ApiError) -> Vec<u8> {
    let status: StatusCode = err.status_code();
    let body = serde_json::to_vec(&err.body()).unwrap_or_default();
    let mut answer = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    answer
}
