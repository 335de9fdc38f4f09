//! The one place where push messages are encoded: a change, a snapshot, a progress and
//! an error, as the JSON of the protocol (SPEC §5) inside a WebSocket text frame. Each is
//! serialized and framed once, however many subscribers it goes to.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use graycast_protocol::{Entry, Op, Revision, ServerMessage};
use serde::Serialize;

use crate::push::frame;
use crate::push::selection::Selection;
use crate::store::Change;

/// A committed change, serialized and framed once, shared by every subscriber it goes to.
#[derive(Debug)]
pub struct Pushed {
    pub revision: Revision,
    pub namespace: String,
    pub key: String,
    /// The `change` message as a WebSocket text frame.
    pub frame: Bytes,
    /// When this node learnt of the commit.
    pub committed_at: Instant,
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
    Arc::new(Pushed {
        committed_at,
        revision: change.revision,
        namespace: change.namespace.clone(),
        key: change.key.clone(),
        frame: change_frame(change),
    })
}

/// A `snapshot` message as the pieces of one WebSocket frame, shared by every subscriber
/// of the same namespaces at the same revision.
pub type Snapshot = Arc<[Bytes]>;

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
    frame::text_pieces(|out| {
        let _ = serde_json::to_writer(out, &message);
    })
}

/// A small control message (`progress`, `error`) as a text frame.
pub fn message(message: &ServerMessage) -> Bytes {
    frame::text(&serde_json::to_vec(message).unwrap_or_default())
}

/// The `progress` message: the client is current up to `revision`.
pub fn progress(revision: Revision) -> Bytes {
    message(&ServerMessage::Progress { revision })
}
