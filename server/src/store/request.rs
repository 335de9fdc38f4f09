//! What a write asks: the mutation of one key, its precondition, who and why.

use chrono::{DateTime, Utc};
use graycast_protocol::gray::GrayPatch;
use graycast_protocol::{Gray, Revision};
use serde_json::Value;

/// A condition on the key's current state that a write requires (`If-Match`, `If-None-Match`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Precondition {
    #[default]
    None,
    /// The key exists at exactly this revision.
    Revision(Revision),
    /// The key exists (`If-Match: *`).
    Exists,
    /// The key does not exist (`If-None-Match: *`).
    Absent,
    /// Both headers, or lists of entity tags, as HTTP has them (RFC 9110 §13.1): the key
    /// exists at one of `if_match`'s revisions (any, for `*`), and is absent or at none of
    /// `if_none_match`'s (absent, for `*`).
    Http { if_match: Option<Tags>, if_none_match: Option<Tags> },
}

/// `*`, or the revisions a list of entity tags names (a tag naming no revision matches
/// nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tags {
    Any,
    Revisions(Vec<Revision>),
}

impl Tags {
    pub(super) fn matches(&self, revision: Revision) -> bool {
        match self {
            Tags::Any => true,
            Tags::Revisions(revisions) => revisions.contains(&revision),
        }
    }
}

/// What a write does to its key.
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    /// Set the stable value, creating the key if needed. A running gray release stays.
    Put { value: Value },
    /// Remove the key and any gray release.
    Delete,
    /// Set the stable value to the value the key had at `to_revision`.
    Rollback { to_revision: Revision },
    /// A rollback once its target is read: set the stable value to `value`, the key's value
    /// at `to_revision`. [`Store::write`] turns every `Rollback` into this.
    Restore { to_revision: Revision, value: Value },
    /// Start or replace the gray release (already validated).
    GrayStart { gray: Box<Gray> },
    /// Change the running gray release.
    GrayPatch(GrayPatch),
    /// Move a due ramp on: made by the scheduler, for the release begun at `started_at`
    /// while it is at `step`, so that a repeated or late attempt changes nothing.
    GrayAdvance { started_at: DateTime<Utc>, step: u32 },
    /// Make the gray value the stable value; the release ends.
    Promote,
    /// End the release, keeping the stable value. With `started_at`, only that release.
    Abort { started_at: Option<DateTime<Utc>>, note: Option<String> },
}

impl Mutation {
    /// Whether the write can only shrink what is stored (allowed beyond the quota).
    pub(super) fn shrinks(&self) -> bool {
        matches!(self, Mutation::Delete | Mutation::Abort { .. } | Mutation::Promote)
    }
}

/// One write: a mutation of one key, by someone, under a precondition.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    pub namespace: String,
    pub key: String,
    pub mutation: Mutation,
    pub precondition: Precondition,
    /// Who makes the change; recorded as `updated_by`.
    pub actor: String,
    /// Why, in the author's words.
    pub comment: Option<String>,
    /// Where the request came from (the peer address), for the audit feed.
    pub remote: Option<String>,
}

impl WriteRequest {
    /// A write by `actor` with no precondition, comment or remote address.
    pub fn new(
        namespace: impl Into<String>,
        key: impl Into<String>,
        mutation: Mutation,
        actor: impl Into<String>,
    ) -> WriteRequest {
        WriteRequest {
            namespace: namespace.into(),
            key: key.into(),
            mutation,
            precondition: Precondition::None,
            actor: actor.into(),
            comment: None,
            remote: None,
        }
    }
}

impl Mutation {
    /// The bytes a write brings into the store, roughly: the size of the value it stores.
    pub(super) fn written_bytes(&self) -> u64 {
        use graycast_protocol::value::compact_size;
        let size = match self {
            Mutation::Put { value } | Mutation::Restore { value, .. } => compact_size(value),
            Mutation::GrayStart { gray } => compact_size(&gray.value),
            _ => 0,
        };
        size as u64
    }
}
