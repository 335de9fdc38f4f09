//! Change notifications: what the cache applied, as a stream or a callback.

use std::sync::Arc;

use graycast_protocol::{Entry, Op, Revision, ServerMessage};

/// One change the client applied to its cache.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    /// The revision of the change (of the entry, for differences found in a snapshot).
    pub revision: Revision,
    /// What happened: `put`, `delete`, `gray` (a release started, changed or stepped),
    /// `promote`, `abort` or `rollback`; differences found in a snapshot are `put` or
    /// `delete`.
    pub op: Op,
    /// The namespace of the key.
    pub namespace: String,
    /// The key that changed.
    pub key: String,
    /// The entry after the change; `None` after a delete.
    pub entry: Option<Arc<Entry>>,
    /// The entry before the change, as the client had it.
    pub previous: Option<Arc<Entry>>,
    /// The author's comment, when the change was pushed with one (not for differences
    /// found in a snapshot).
    pub comment: Option<String>,
    /// Why the server made the change itself: a ramp step, a guard abort.
    pub note: Option<String>,
}

impl ChangeEvent {
    /// The event as the `change` message of the push protocol.
    pub fn to_message(&self) -> ServerMessage {
        ServerMessage::Change {
            revision: self.revision,
            op: self.op,
            namespace: self.namespace.clone(),
            key: self.key.clone(),
            entry: self.entry.as_deref().cloned().map(Box::new),
            comment: self.comment.clone(),
            note: self.note.clone(),
        }
    }
}

/// Which changes a stream or callback receives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only changes of this namespace (every subscribed one when `None`).
    pub namespace: Option<String>,
    /// Only changes of this key (with `namespace`).
    pub key: Option<String>,
}

impl Filter {
    /// Every change.
    pub fn all() -> Filter {
        Filter::default()
    }

    /// The changes of one namespace.
    pub fn namespace(namespace: impl Into<String>) -> Filter {
        Filter { namespace: Some(namespace.into()), key: None }
    }

    /// The changes of one key.
    pub fn key(namespace: impl Into<String>, key: impl Into<String>) -> Filter {
        Filter { namespace: Some(namespace.into()), key: Some(key.into()) }
    }

    pub(crate) fn matches(&self, event: &ChangeEvent) -> bool {
        self.namespace.as_ref().is_none_or(|n| *n == event.namespace)
            && self.key.as_ref().is_none_or(|k| *k == event.key)
    }
}
