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
    /// Bring back a release as a backup holds it, its clocks (`started_at`, `next_step_at`)
    /// as they were: an import. A step that fell due meanwhile runs right after.
    GrayRestore { gray: Box<Gray> },
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
    /// The request's `Idempotency-Key`, if it has one: the write is applied at most once
    /// per key within the store's window, and a repeat answers the first outcome.
    pub idempotency: Option<Idempotency>,
    /// On whose authority: a governed namespace (`crate::policy`) takes only
    /// exposure-reducing writes directly.
    pub authority: crate::policy::Authority,
}

/// How long a store remembers the `Idempotency-Key`s of its writes.
pub const IDEMPOTENCY_WINDOW: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// An `Idempotency-Key` as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Idempotency {
    /// The key, scoped to its caller (hex SHA-256 of the caller's name and the header).
    pub key: String,
    /// What the request asked (hex SHA-256 of its method, path, conditions and body): a
    /// repeat must ask the same.
    pub fingerprint: String,
}

/// What the store remembers of a write made with an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Kept {
    pub fingerprint: String,
    pub namespace: String,
    pub key: String,
    /// The revision of the change the write made.
    pub revision: Revision,
    /// When, in milliseconds since the epoch (the window counts from it).
    pub at_ms: i64,
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
            idempotency: None,
            authority: crate::policy::Authority::Direct,
        }
    }
}

impl Mutation {
    /// The bytes a write brings into the store, roughly: the size of the value it stores.
    pub(super) fn written_bytes(&self) -> u64 {
        use graycast_protocol::value::compact_size;
        let size = match self {
            Mutation::Put { value } | Mutation::Restore { value, .. } => compact_size(value),
            Mutation::GrayStart { gray } | Mutation::GrayRestore { gray } => {
                compact_size(&gray.value)
            }
            _ => 0,
        };
        size as u64
    }
}

/// What to keep of a change made with an `Idempotency-Key`: when (ms), the scoped key, and
/// the record.
pub(super) fn kept_of(change: &super::Change) -> Option<(i64, String, Kept)> {
    let idempotency = change.idempotency.as_ref()?;
    let at_ms = chrono::Utc::now().timestamp_millis();
    let kept = Kept {
        fingerprint: idempotency.fingerprint.clone(),
        namespace: change.namespace.clone(),
        key: change.key.clone(),
        revision: change.revision,
        at_ms,
    };
    Some((at_ms, idempotency.key.clone(), kept))
}

/// The oldest time (ms since the epoch) whose `Idempotency-Key`s are still kept.
pub(super) fn oldest_kept_ms() -> i64 {
    chrono::Utc::now().timestamp_millis() - IDEMPOTENCY_WINDOW.as_millis() as i64
}

/// A repeat of a write with another request under the same `Idempotency-Key`.
pub(super) fn key_reused() -> super::StoreError {
    super::StoreError::KeyReused(
        "this Idempotency-Key was used for another request; a retry must repeat the first \
         request exactly (method, path, conditions and body), and a new request needs a new key"
            .into(),
    )
}

/// The answer to a repeat of the write `kept` remembers: the change it made, found in the
/// key's history (`change`, when still kept).
pub(super) fn repeat(
    kept: &Kept,
    idempotency: &Idempotency,
    change: Option<super::Change>,
) -> Result<std::sync::Arc<super::Change>, super::StoreError> {
    if kept.fingerprint != idempotency.fingerprint {
        return Err(key_reused());
    }
    change.map(std::sync::Arc::new).ok_or_else(|| {
        super::StoreError::Conflict(format!(
            "the write with this Idempotency-Key was made at revision {} of {}/{}, whose \
             history item is no longer kept (--history-retain); it was not made again",
            kept.revision, kept.namespace, kept.key
        ))
    })
}

/// Most claims a node alone remembers; beyond, the oldest go (before their window ends).
const MAX_CLAIMS: usize = 100_000;

/// The claimed `Idempotency-Key`s of requests that are not writes, on a node alone: in
/// memory, as what they guard (the guard's counts) is.
#[derive(Default)]
pub(super) struct Claims {
    claimed: std::sync::Mutex<Claimed>,
}

/// Each claimed key's fingerprint, and the keys by age.
type Claimed = (
    std::collections::HashMap<String, String>,
    std::collections::VecDeque<(std::time::Instant, String)>,
);

impl Claims {
    pub(super) fn claim(&self, idempotency: &Idempotency) -> Result<bool, super::StoreError> {
        let mut guard = self.claimed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (claimed, ages) = &mut *guard;
        while ages
            .front()
            .is_some_and(|(at, _)| at.elapsed() > IDEMPOTENCY_WINDOW || claimed.len() >= MAX_CLAIMS)
        {
            if let Some((_, key)) = ages.pop_front() {
                claimed.remove(&key);
            }
        }
        match claimed.get(&idempotency.key) {
            Some(first) if *first == idempotency.fingerprint => Ok(false),
            Some(_) => Err(key_reused()),
            None => {
                claimed.insert(idempotency.key.clone(), idempotency.fingerprint.clone());
                ages.push_back((std::time::Instant::now(), idempotency.key.clone()));
                Ok(true)
            }
        }
    }
}
