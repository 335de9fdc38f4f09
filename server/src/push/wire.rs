//! The one place where push messages are encoded: a change, a snapshot, a progress and
//! an error, as the JSON of the protocol, for either transport: inside a
//! WebSocket text frame, or as a server-sent event (`event:` the message type, `id:` the
//! revision it brings the client to, `data:` the same JSON). A change's JSON is serialized
//! once, however many subscribers it goes to, and framed once for WebSockets; an event
//! stream wraps the very same bytes in its event lines.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use graycast_protocol::{Entry, Op, Revision, ServerMessage};
use serde::Serialize;

use crate::push::frame;
use crate::push::selection::Selection;
use crate::store::Change;

/// How a connection carries the push protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// RFC 6455 frames (`/v1/watch`).
    WebSocket,
    /// Server-sent events (`/v1/events`).
    EventStream,
}

/// The end of an event.
const EVENT_END: &[u8] = b"\n\n";

/// The head of an event carrying a message of type `kind` (through `revision`, its `id`).
pub fn event_head(kind: &str, revision: Option<Revision>) -> Bytes {
    let head = match revision {
        Some(revision) => format!("event: {kind}\nid: {revision}\ndata: "),
        None => format!("event: {kind}\ndata: "),
    };
    Bytes::from(head)
}

/// A committed change, serialized and framed once, shared by every subscriber it goes to.
#[derive(Debug)]
pub struct Pushed {
    pub revision: Revision,
    pub namespace: String,
    pub key: String,
    /// The `change` message as a WebSocket text frame.
    pub frame: Bytes,
    /// Where the message's JSON starts in `frame` (behind the frame's header).
    pub json_at: usize,
    /// When this node learnt of the commit.
    pub committed_at: Instant,
}

impl Pushed {
    /// The pieces that carry this change on `transport` (cheap clones of shared bytes).
    pub fn pieces(&self, transport: Transport) -> Vec<Bytes> {
        match transport {
            Transport::WebSocket => vec![self.frame.clone()],
            Transport::EventStream => vec![
                event_head("change", Some(self.revision)),
                self.frame.slice(self.json_at..),
                Bytes::from_static(EVENT_END),
            ],
        }
    }
}

/// The wire form of a `change` message, borrowing the change instead of copying it.
#[derive(Serialize)]
struct ChangeFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    revision: Revision,
    op: Op,
    namespace: &'a str,
    key: &'a str,
    entry: Option<&'a Entry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'a str>,
}

/// Serializes a change as the `change` message of the push protocol, into `out`.
pub fn write_change_message(change: &Change, out: &mut Vec<u8>) {
    let frame = ChangeFrame {
        kind: "change",
        revision: change.revision,
        op: change.op,
        namespace: &change.namespace,
        key: &change.key,
        entry: change.entry.as_deref(),
        comment: change.comment.as_deref(),
        note: change.note.as_deref(),
    };
    // Serializing plain data with string keys cannot fail.
    let _ = serde_json::to_writer(out, &frame);
}

/// The `change` message of a change, as JSON text.
pub fn change_message(change: &Change) -> Vec<u8> {
    let mut out = Vec::new();
    write_change_message(change, &mut out);
    out
}

/// The `change` message of a change as a WebSocket text frame.
pub fn change_frame(change: &Change) -> Bytes {
    frame::text_from(|buf| write_change_message(change, buf))
}

/// A change as the hub pushes it: the `change` message in a text frame.
pub fn pushed(change: &Change, committed_at: Instant) -> Arc<Pushed> {
    let frame = change_frame(change);
    Arc::new(Pushed {
        committed_at,
        revision: change.revision,
        namespace: change.namespace.clone(),
        key: change.key.clone(),
        json_at: frame::header_len(&frame),
        frame,
    })
}

/// A `snapshot` message, serialized once as pieces of JSON, shared by every subscriber of
/// the same namespaces at the same revision, whatever its transport.
#[derive(Debug)]
pub struct SnapshotMessage {
    pub revision: Revision,
    /// The message's JSON, in pieces of about a megabyte.
    pub json: Vec<Bytes>,
}

impl SnapshotMessage {
    /// The pieces that carry this snapshot on `transport`: the frame's header or the
    /// event's head, the shared JSON, and an event's end.
    pub fn pieces(&self, transport: Transport) -> Vec<Bytes> {
        let len = self.json.iter().map(Bytes::len).sum();
        let mut pieces = Vec::with_capacity(self.json.len() + 2);
        match transport {
            Transport::WebSocket => pieces.push(frame::text_header(len)),
            Transport::EventStream => pieces.push(event_head("snapshot", Some(self.revision))),
        }
        pieces.extend(self.json.iter().cloned());
        if transport == Transport::EventStream {
            pieces.push(Bytes::from_static(EVENT_END));
        }
        pieces
    }
}

/// A shared snapshot.
pub type Snapshot = Arc<SnapshotMessage>;

/// The wire form of a `snapshot` message, borrowing the cached entries.
#[derive(Serialize)]
struct SnapshotFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    revision: Revision,
    namespaces: &'a [String],
    entries: Vec<&'a Entry>,
}

/// The `snapshot` message of `entries` (those of `selection`'s namespaces as of
/// `revision`) as the pieces of one text frame: a namespace can hold hundreds of
/// megabytes, which are never copied into one buffer.
pub fn snapshot(revision: Revision, selection: &Selection, entries: &[Arc<Entry>]) -> Snapshot {
    let message = SnapshotFrame {
        kind: "snapshot",
        revision,
        namespaces: selection.names(),
        entries: entries
            .iter()
            .filter(|e| selection.reader().is_none() || selection.covers(&e.namespace, &e.key))
            .map(|e| e.as_ref())
            .collect(),
    };
    // Serializing plain data with string keys cannot fail.
    let json = frame::json_pieces(|out| {
        let _ = serde_json::to_writer(out, &message);
    });
    Arc::new(SnapshotMessage { revision, json })
}

/// A small message of the server's own (`progress`, `error`) on `transport`.
pub fn message(transport: Transport, message: &ServerMessage) -> Bytes {
    let json = serde_json::to_vec(message).unwrap_or_default();
    match transport {
        Transport::WebSocket => frame::text(&json),
        Transport::EventStream => {
            let (kind, revision) = match message {
                ServerMessage::Progress { revision } => ("progress", Some(*revision)),
                ServerMessage::Snapshot { revision, .. } => ("snapshot", Some(*revision)),
                ServerMessage::Change { revision, .. } => ("change", Some(*revision)),
                ServerMessage::Error { .. } => ("error", None),
            };
            let mut event = event_head(kind, revision).to_vec();
            event.extend_from_slice(&json);
            event.extend_from_slice(EVENT_END);
            Bytes::from(event)
        }
    }
}

/// The `progress` message: the client is current up to `revision`.
pub fn progress(transport: Transport, revision: Revision) -> Bytes {
    message(transport, &ServerMessage::Progress { revision })
}

/// A heartbeat: a ping frame, or a comment line an event stream's client ignores.
pub fn heartbeat(transport: Transport) -> Bytes {
    match transport {
        Transport::WebSocket => frame::ping(),
        Transport::EventStream => Bytes::from_static(b": heartbeat\n\n"),
    }
}

/// The end of the conversation: a close frame; an event stream just ends.
pub fn close(transport: Transport, code: u16, reason: &str) -> Option<Bytes> {
    match transport {
        Transport::WebSocket => Some(frame::close_frame(code, reason)),
        Transport::EventStream => None,
    }
}
