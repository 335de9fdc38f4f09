//! The push protocol over server-sent events (`/v1/events`), for networks whose proxies
//! drop WebSockets.
//!
//! Each event's `event:` is the message type (`snapshot`, `change`, `progress`, `error`),
//! its `data:` the same JSON as on the WebSocket, and its `id:` the revision the message
//! brings the client to; `Last-Event-ID` (what an `EventSource` sends when it reconnects)
//! resumes like `since`, with the same guarantees: a replay of every change missed, or a
//! snapshot, never a gap. Heartbeats are comment lines.
//!
//! The stream is a subscriber session like any other (same catch-up, byte budget, lag
//! resync and limits), encoding its messages as events (`wire`, the same shared JSON a
//! WebSocket gets), and writing them into an in-process pipe whose far end is the answer's
//! body: a large snapshot streams through in pieces and is never held whole, and a client
//! that stops reading fills the pipe and is cut off like a WebSocket peer that stalls.

use bytes::{Bytes, BytesMut};
use graycast_protocol::ws::ClientHello;
use graycast_protocol::Revision;
use tokio::io::{AsyncReadExt, DuplexStream};

use crate::push::clients::ConnectionPermit;
use crate::push::session::{self, Opening, Socket};
use crate::state::{AppState, Caller};

/// Bytes the pipe between the session and the event stream holds.
const PIPE_BYTES: usize = 64 * 1024;
/// What the stream starts with: reconnect after 1 s (EventSource's default is 3 s).
const PREAMBLE: &[u8] = b"retry: 1000\n\n";

impl Socket for DuplexStream {
    fn reset_on_close(&self) {}
}

/// A subscription of an event stream, checked already.
pub struct Subscribe {
    pub namespaces: Vec<String>,
    pub since: Option<Revision>,
    pub client: ClientHello,
}

/// Runs a subscriber session for an event stream that checked its request already:
/// the stream's bytes, for the body of a `text/event-stream` answer.
pub fn open(
    state: AppState,
    subscribe: Subscribe,
    remote: String,
    caller: Caller,
    permit: ConnectionPermit,
) -> impl futures_util::Stream<Item = Result<Bytes, actix_web::Error>> {
    let (near, far) = tokio::io::duplex(PIPE_BYTES);
    let Subscribe { namespaces, since, client } = subscribe;
    let opening = Opening::EventStream { namespaces, since, client };
    actix_web::rt::spawn(async move {
        session::run(state, near, opening, remote, caller).await;
    });
    // The permit counts the stream against the subscriber limit while it lasts.
    let body = Body { far, permit, started: false };
    futures_util::stream::unfold(body, |mut body| async move {
        body.next_chunk().await.map(|chunk| (Ok::<_, actix_web::Error>(chunk), body))
    })
}

/// The far end of the pipe, read as the answer's body.
struct Body {
    far: DuplexStream,
    permit: ConnectionPermit,
    started: bool,
}

impl Body {
    /// The next bytes of the stream; `None` once the session has ended.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        let _counted = &self.permit;
        if !self.started {
            self.started = true;
            return Some(Bytes::from_static(PREAMBLE));
        }
        let mut buf = BytesMut::with_capacity(PIPE_BYTES);
        match self.far.read_buf(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(buf.freeze()),
        }
    }
}
