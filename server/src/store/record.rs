//! The stored form of one change of one key: what history items, replayed changes and
//! rollbacks are rebuilt from. The key and the revision are where the record is kept
//! (a redb key, an etcd key and its mod revision), so the record holds neither.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use graycast_protocol::{Entry, Gray, HistoryItem, Op, Revision};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Change;

/// One change of a key, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub op: Op,
    /// The stable value after the change; `null` after a delete.
    #[serde(default)]
    pub value: Value,
    #[serde(default)]
    pub gray: Option<Gray>,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// The entry's `created_revision` after the change (0 in records of the first on-disk
    /// format that were not in its change log, which nothing replays).
    #[serde(default)]
    pub created_revision: Revision,
    /// The entry's `version` after the change (0 after a delete).
    #[serde(default)]
    pub version: u64,
    /// The id of the write that made the change (etcd engine): a write whose outcome was
    /// unknown recognizes its own commit by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_id: Option<String>,
}

impl Record {
    /// The record of a committed change.
    pub fn of(change: &Change) -> Record {
        let entry = change.entry.as_deref();
        Record {
            op: change.op,
            value: entry.map_or(Value::Null, |e| e.value.clone()),
            gray: entry.and_then(|e| e.gray.clone()),
            updated_at: change.at,
            updated_by: change.by.clone(),
            note: change.note.clone(),
            comment: change.comment.clone(),
            remote: change.remote.clone(),
            created_revision: entry.map_or(0, |e| e.created_revision),
            version: entry.map_or(0, |e| e.version),
            write_id: None,
        }
    }

    /// A record standing for an entry's last change (when converting data that lacks it).
    pub fn of_entry(entry: &Entry) -> Record {
        Record {
            op: Op::Put,
            value: entry.value.clone(),
            gray: entry.gray.clone(),
            updated_at: entry.updated_at,
            updated_by: entry.updated_by.clone(),
            note: None,
            comment: None,
            remote: None,
            created_revision: entry.created_revision,
            version: entry.version,
            write_id: None,
        }
    }

    /// The history item of the change made at `revision`.
    pub fn into_item(self, revision: Revision) -> HistoryItem {
        HistoryItem {
            revision,
            op: self.op,
            value: self.value,
            gray: self.gray,
            updated_at: self.updated_at,
            updated_by: self.updated_by,
            note: self.note,
            comment: self.comment,
        }
    }

    /// The change made at `revision` to `namespace/key`.
    pub fn into_change(self, namespace: &str, key: &str, revision: Revision) -> Change {
        let entry = (self.op != Op::Delete).then(|| {
            Arc::new(Entry {
                namespace: namespace.to_owned(),
                key: key.to_owned(),
                value: self.value,
                revision,
                created_revision: if self.created_revision == 0 {
                    revision
                } else {
                    self.created_revision
                },
                version: self.version.max(1),
                updated_at: self.updated_at,
                updated_by: self.updated_by.clone(),
                gray: self.gray,
            })
        });
        Change {
            revision,
            op: self.op,
            namespace: namespace.to_owned(),
            key: key.to_owned(),
            entry,
            at: self.updated_at,
            by: self.updated_by,
            note: self.note,
            comment: self.comment,
            remote: self.remote,
            idempotency: None,
        }
    }
}
