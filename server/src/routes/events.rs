//! `/v1/events`: the push protocol over server-sent events, for networks whose proxies
//! drop WebSockets.
//!
//! Each event's `event:` is the message type (`snapshot`, `change`, `progress`, `error`),
//! its `data:` the same JSON as on the WebSocket, and its `id:` the revision the message
//! brings the client to; `Last-Event-ID` (what an `EventSource` sends when it reconnects)
//! resumes like `since`, with the same guarantees: a replay of every change missed, or a
//! snapshot, never a gap. Heartbeats are comment lines.
//!
//! The stream is a subscriber session like any other (same catch-up, byte budget, lag
//! resync and limits), run over an in-process pipe: this module plays the WebSocket client
//! at the pipe's far end, sending the `subscribe`, answering pings, acknowledging what it
//! passed on, and rewriting each frame as an event while it streams through, so a large
//! snapshot is never held whole.

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Buf, Bytes, BytesMut};
use graycast_protocol::ws::{ClientHello, ClientMessage, ALL_NAMESPACES};
use graycast_protocol::{ErrorBody, Revision};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

use crate::app::AppState;
use crate::auth::{self, Access};
use crate::error::ApiError;
use crate::frame::{self, OP_CLOSE, OP_PING, OP_TEXT};
use crate::hub::ConnectionPermit;
use crate::session::{self, check_subscription, Socket};

/// Bytes the pipe between the session and the event stream holds.
const PIPE_BYTES: usize = 64 * 1024;
/// Bytes of a message read before its event's head is written: enough for the type and
/// the revision, which every message starts with.
const PEEK: usize = 64;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/events").route(web::get().to(events)));
}

impl Socket for DuplexStream {
    fn reset_on_close(&self) {}
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
    let principal = auth::check(state.tokens.as_deref(), secret, Access::Read, None).or_else(
        |err| match err {
            // Any valid token may subscribe; what it may read is checked below.
            ApiError::Forbidden(_) => {
                Ok(secret.and_then(|s| state.tokens.as_deref()?.authenticate(s)))
            }
            other => Err(other),
        },
    )?;
    if let Some(principal) = &principal {
        if let Some(denied) =
            namespaces.iter().find(|n| *n != ALL_NAMESPACES && !principal.can(Access::Read, n))
        {
            return Err(ApiError::Forbidden(format!(
                "token {:?} may not read namespace {denied:?}",
                principal.name
            )));
        }
    }
    let limit = state.subscriber_limit;
    let permit = state.hub.try_connect(limit).ok_or_else(|| {
        ApiError::Unavailable(format!("the server already serves its limit of {limit} subscribers"))
    })?;

    let subscribe = ClientMessage::Subscribe { namespaces, since, client: Some(client) };
    let text = serde_json::to_vec(&subscribe).map_err(|e| ApiError::Internal(e.to_string()))?;
    let (near, far) = tokio::io::duplex(PIPE_BYTES);
    let remote = req.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let inbound = BytesMut::from(&frame::client_frame(OP_TEXT, &text)[..]);
    let session_state = state.get_ref().clone();
    actix_web::rt::spawn(async move {
        session::run(session_state, near, inbound, remote, principal).await;
    });
    let (reader, writer) = tokio::io::split(far);
    let relay = Relay {
        reader,
        writer,
        buf: BytesMut::new(),
        started: false,
        pending: None,
        _permit: permit,
    };
    let body = futures_util::stream::unfold(relay, |mut relay| async move {
        relay.next_chunk().await.map(|chunk| (Ok::<_, actix_web::Error>(chunk), relay))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // Proxies that buffer responses (nginx) must pass each event on at once.
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}

/// The far end of the pipe: WebSocket frames in, event-stream bytes out.
struct Relay {
    reader: ReadHalf<DuplexStream>,
    writer: WriteHalf<DuplexStream>,
    buf: BytesMut,
    started: bool,
    /// The message being passed on: its bytes still to come, and its revision.
    pending: Option<(usize, Option<Revision>)>,
    /// Counts the stream against the subscriber limit while it lasts.
    _permit: ConnectionPermit,
}

impl Relay {
    /// Reads until `buf` holds `n` bytes; false when the session ended first.
    async fn fill(&mut self, n: usize) -> bool {
        while self.buf.len() < n {
            match self.reader.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
        }
        true
    }

    /// The next bytes of the event stream; `None` once the session has ended.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if !self.started {
            self.started = true;
            // Reconnect after 1 s (EventSource's default is 3 s).
            return Some(Bytes::from_static(b"retry: 1000\n\n"));
        }
        if let Some((left, revision)) = self.pending {
            return self.pass_on(BytesMut::new(), left, revision).await;
        }
        loop {
            if !self.fill(2).await {
                return None;
            }
            let opcode = self.buf[0] & 0x0F;
            let (head, len) = match self.buf[1] & 0x7F {
                126 => {
                    if !self.fill(4).await {
                        return None;
                    }
                    (4, usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])))
                }
                127 => {
                    if !self.fill(10).await {
                        return None;
                    }
                    let mut len = [0u8; 8];
                    len.copy_from_slice(&self.buf[2..10]);
                    (10, usize::try_from(u64::from_be_bytes(len)).unwrap_or(usize::MAX))
                }
                short => (2, usize::from(short)),
            };
            match opcode {
                OP_TEXT => {
                    // The event's head (type and revision) comes from the first bytes.
                    let peek = len.min(PEEK);
                    if !self.fill(head + peek).await {
                        return None;
                    }
                    self.buf.advance(head);
                    let (kind, revision) = message_head(&self.buf[..peek]);
                    let mut event = BytesMut::with_capacity(64);
                    event.extend_from_slice(format!("event: {kind}\n").as_bytes());
                    if let Some(revision) = revision {
                        event.extend_from_slice(format!("id: {revision}\n").as_bytes());
                    }
                    event.extend_from_slice(b"data: ");
                    return self.pass_on(event, len, revision).await;
                }
                OP_PING => {
                    if !self.fill(head + len).await {
                        return None;
                    }
                    self.buf.advance(head);
                    let payload = self.buf.split_to(len);
                    let pong = frame::client_frame(frame::OP_PONG, &payload);
                    if self.writer.write_all(&pong).await.is_err() {
                        return None;
                    }
                    return Some(Bytes::from_static(b": heartbeat\n\n"));
                }
                OP_CLOSE => return None,
                _ => {
                    // Pongs and anything else: skip.
                    if !self.fill(head + len).await {
                        return None;
                    }
                    self.buf.advance(head + len);
                }
            }
        }
    }

    /// Passes on what has arrived of a message (`left` bytes still to come) after
    /// `chunk`; the rest follows in the next chunks, so a large snapshot is never held
    /// whole. The message's end closes the event and acknowledges its revision.
    async fn pass_on(
        &mut self,
        mut chunk: BytesMut,
        left: usize,
        revision: Option<Revision>,
    ) -> Option<Bytes> {
        if left > 0 && self.buf.is_empty() && !self.fill(1).await {
            return None;
        }
        let take = left.min(self.buf.len());
        chunk.extend_from_slice(&self.buf.split_to(take));
        let left = left - take;
        if left > 0 {
            self.pending = Some((left, revision));
            return Some(chunk.freeze());
        }
        self.pending = None;
        chunk.extend_from_slice(b"\n\n");
        if let Some(revision) = revision {
            let ack = serde_json::to_vec(&ClientMessage::Ack { revision }).unwrap_or_default();
            let _ = self.writer.write_all(&frame::client_frame(OP_TEXT, &ack)).await;
        }
        Some(chunk.freeze())
    }
}

/// The `type` and `revision` at the start of a server message's JSON.
fn message_head(start: &[u8]) -> (String, Option<Revision>) {
    let text = String::from_utf8_lossy(start);
    let kind = text
        .split("\"type\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .filter(|k| k.chars().all(|c| c.is_ascii_lowercase()))
        .unwrap_or("message")
        .to_owned();
    let revision = text
        .split("\"revision\":")
        .nth(1)
        .map(|rest| rest.chars().take_while(char::is_ascii_digit).collect::<String>())
        .and_then(|digits| digits.parse().ok());
    (kind, revision)
}
