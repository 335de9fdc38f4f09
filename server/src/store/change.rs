//! What a committed write is (a [`Change`]), the pages reads return, and the feed that
//! carries committed changes to the hub.

use std::sync::{mpsc as std_mpsc, Arc};

use chrono::{DateTime, Utc};
use graycast_protocol::{Entry, HistoryItem, Op, Revision};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A committed change: one revision. Recorded in history and fed to subscribers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub revision: Revision,
    pub op: Op,
    pub namespace: String,
    pub key: String,
    /// The entry after the change; `None` after a delete.
    pub entry: Option<Arc<Entry>>,
    pub at: DateTime<Utc>,
    pub by: String,
    /// Why the change was made, when not by a person (ramp steps, guard aborts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The author's comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The peer address of the request that made the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// The `Idempotency-Key` of the write that made it, which the store keeps with it.
    #[serde(skip)]
    pub idempotency: Option<super::Idempotency>,
}

impl Change {
    /// The history record of this change.
    pub fn history_item(&self) -> HistoryItem {
        HistoryItem {
            revision: self.revision,
            op: self.op,
            value: self.entry.as_ref().map_or(Value::Null, |e| e.value.clone()),
            gray: self.entry.as_ref().and_then(|e| e.gray.clone()),
            updated_at: self.at,
            updated_by: self.by.clone(),
            note: self.note.clone(),
            comment: self.comment.clone(),
        }
    }
}

/// The durable state found at start.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The revision of the last committed change (0 for an empty store).
    pub revision: Revision,
    /// Every live entry.
    pub entries: Vec<Entry>,
}

/// A page of a key's history, newest first.
#[derive(Debug, Default)]
pub struct HistoryPage {
    pub items: Vec<HistoryItem>,
    /// Older items exist beyond this page.
    pub more: bool,
}

/// A page of the change log.
#[derive(Debug)]
pub enum ChangePage {
    /// Changes after the asked revision, oldest first; empty when there are none.
    Changes(Vec<Arc<Change>>),
    /// The log no longer holds every change after the asked revision.
    Compacted,
}

/// Committed changes, in revision order, as handed to the feed.
pub type CommittedBatch = Vec<Arc<Change>>;

/// What the feed carries to the hub.
#[derive(Debug)]
pub enum Fed {
    /// Changes committed, in revision order, and when this node learnt of their commit
    /// (the start of their push latency).
    Changes(CommittedBatch, std::time::Instant),
    /// The cache was reloaded as of this revision (an etcd watch lost its place to a
    /// compaction): every subscriber needs a fresh snapshot.
    Reloaded(Revision),
}

/// The receiving end of the stream of committed changes.
pub type FeedReceiver = std_mpsc::Receiver<Fed>;
