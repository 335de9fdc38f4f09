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
//! resync and limits), run over an in-process pipe: this module plays the WebSocket client
//! at the pipe's far end, sending the `subscribe`, answering pings, acknowledging what it
//! passed on, and rewriting each frame as an event while it streams through, so a large
//! snapshot is never held whole.

use bytes::{Buf, Bytes, BytesMut};
use graycast_protocol::ws::ClientMessage;
use graycast_protocol::Revision;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

use crate::push::clients::ConnectionPermit;
use crate::push::frame::{self, OP_CLOSE, OP_PING, OP_TEXT};
use crate::push::session::{self, Socket};
use crate::state::{AppState, Caller};

/// Bytes the pipe between the session and the event stream holds.
const PIPE_BYTES: usize = 64 * 1024;
/// Bytes of a message read before its event's head is written: enough for the type and
/// the revision, which every message starts with.
const PEEK: usize = 64;

impl Socket for DuplexStream {
    fn reset_on_close(&self) {}
}

/// Runs a subscriber session for an event stream that checked its request already:
/// the stream's bytes, for the body of a `text/event-stream` answer.
pub fn open(
    state: AppState,
    subscribe: ClientMessage,
    remote: String,
    caller: Caller,
    permit: ConnectionPermit,
) -> impl futures_util::Stream<Item = Result<Bytes, actix_web::Error>> {
    // Serializing a message of strings and numbers cannot fail.
    let text = serde_json::to_vec(&subscribe).unwrap_or_default();
    let (near, far) = tokio::io::duplex(PIPE_BYTES);
    let inbound = BytesMut::from(&frame::client_frame(OP_TEXT, &text)[..]);
    actix_web::rt::spawn(async move {
        session::run(state, near, inbound, remote, caller).await;
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
    futures_util::stream::unfold(relay, |mut relay| async move {
        relay.next_chunk().await.map(|chunk| (Ok::<_, actix_web::Error>(chunk), relay))
    })
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
