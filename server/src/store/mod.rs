//! The revisioned store: a durable backend, one group-committing writer, and the live cache.
//!
//! Every change goes through [`Store::write`], which queues it for the writer thread. The
//! writer takes every request queued while the previous transaction was committing,
//! plans them in order against the current state (checking preconditions and
//! assigning consecutive revisions), persists the accepted ones in **one** durable
//! transaction of the [`Backend`], and only then updates the live cache, hands the
//! committed changes to the feed (the hub) and answers each caller. A request that is
//! rejected consumes no revision and changes nothing.
//!
//! The cache (a [`DashMap`] of namespaces) is a copy of the backend's current state,
//! rebuilt from it at start. It serves every read of current state without I/O.

mod memory;
mod redb;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;

use chrono::{DateTime, SubsecRound, Utc};
use dashmap::DashMap;
use graycast_protocol::gray::{next_step_at, step_due_at, GrayPatch};
use graycast_protocol::ws::ALL_NAMESPACES;
use graycast_protocol::{Entry, Gray, HistoryItem, Op, Revision};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, Notify};

use crate::config::{Config, StoreKind};
use crate::metrics::Metrics;

pub use self::memory::MemoryBackend;
pub use self::redb::RedbBackend;

/// Queued write requests beyond which callers wait for room (backpressure, not failure).
const WRITE_QUEUE: usize = 64 * 1024;

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{what} is at revision {actual}, not the expected revision {expected}")]
    RevisionMismatch { what: String, expected: Revision, actual: Revision },
    #[error("{what} already exists at revision {revision}")]
    AlreadyExists { what: String, revision: Revision },
    #[error("{what} does not exist, but the write requires it to")]
    Missing { what: String },
    #[error("{0}")]
    Superseded(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the store is shutting down")]
    Closed,
    #[error("store failure: {0}")]
    Backend(String),
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
}

/// A condition on the key's current state that a write requires (`If-Match`, `If-None-Match`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precondition {
    #[default]
    None,
    /// The key exists at exactly this revision.
    Revision(Revision),
    /// The key exists (`If-Match: *`).
    Exists,
    /// The key does not exist (`If-None-Match: *`).
    Absent,
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

/// One write: a mutation of one key, by someone, under a precondition.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    pub namespace: String,
    pub key: String,
    pub mutation: Mutation,
    pub precondition: Precondition,
    /// Who makes the change; recorded as `updated_by`.
    pub actor: String,
}

/// A committed change: one revision. Recorded in the change log and fed to subscribers.
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
        }
    }
}

/// The durable state found by [`Backend::load`].
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

/// A durable home for entries, their history and the change log.
///
/// Contract:
/// - [`Backend::persist`] is called by one writer only, with changes of consecutive
///   revisions, each greater than any persisted before. It applies them all or none,
///   and returns only once they are durable (they survive a crash of the process).
/// - Revisions are one counter for the whole store; the last one survives restarts,
///   so a revision is never reused.
/// - History of every revision of every key is kept; the change log keeps at least
///   the most recent `changelog_retain` changes.
/// - Reads may run concurrently with `persist` from any thread; they block, so async
///   callers run them on a blocking thread.
pub trait Backend: Send + Sync + 'static {
    /// Reads the current state, at start.
    fn load(&self) -> Result<Loaded, StoreError>;
    /// Durably records changes (see the trait's contract).
    fn persist(&self, changes: &[Change]) -> Result<(), StoreError>;
    /// Up to `limit` changes with a revision greater than `after`, oldest first.
    fn changes_after(&self, after: Revision, limit: usize) -> Result<ChangePage, StoreError>;
    /// Up to `limit` history items of a key with a revision below `before`, newest first,
    /// stopping once they hold `max_bytes` (at least one is returned).
    fn history(
        &self,
        namespace: &str,
        key: &str,
        before: Option<Revision>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<HistoryPage, StoreError>;
    /// The history item of a key at exactly `revision`, if that revision changed the key.
    fn history_at(
        &self,
        namespace: &str,
        key: &str,
        revision: Revision,
    ) -> Result<Option<HistoryItem>, StoreError>;
    /// Checks that the backend answers (readiness).
    fn check(&self) -> Result<(), StoreError>;
}

/// Committed changes, in revision order, as handed to the feed.
pub type CommittedBatch = Vec<Arc<Change>>;

/// The receiving end of the stream of committed changes.
pub type FeedReceiver = std_mpsc::Receiver<CommittedBatch>;

/// The keys of one namespace, by name.
type Namespace = BTreeMap<String, Arc<Entry>>;

/// State shared by the store handle and the writer thread.
struct Shared {
    backend: Arc<dyn Backend>,
    cache: DashMap<String, Namespace>,
    /// Taken for writing while the writer applies a batch to the cache, and for
    /// reading while a consistent snapshot is copied out. Both are short and synchronous.
    gate: RwLock<()>,
    /// The revision of the last change applied to the cache.
    revision: AtomicU64,
    /// Set when a commit failed: whether it reached the disk is unknown, so the writer
    /// refuses further writes rather than risk reusing a revision. A restart reloads
    /// the truth from the backend.
    failed: AtomicBool,
    /// Signalled after a commit that started, changed or ended a gray release.
    gray_changed: Notify,
    metrics: Arc<Metrics>,
}

impl Shared {
    fn get(&self, namespace: &str, key: &str) -> Option<Arc<Entry>> {
        self.cache.get(namespace).and_then(|ns| ns.get(key).cloned())
    }
}

enum WriterMessage {
    Write(WriteRequest, oneshot::Sender<Result<Arc<Change>, StoreError>>),
    Shutdown,
}

/// The store: cached reads, queued durable writes, and the stream of committed changes.
pub struct Store {
    shared: Arc<Shared>,
    writer: mpsc::Sender<WriterMessage>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
}

impl Store {
    /// Opens the backend the configuration names and starts the writer.
    ///
    /// Returns the store and the receiving end of its stream of committed changes.
    pub fn open(
        config: &Config,
        metrics: Arc<Metrics>,
    ) -> Result<(Store, FeedReceiver), StoreError> {
        let backend: Arc<dyn Backend> = match config.store {
            StoreKind::Memory => Arc::new(MemoryBackend::new(config.changelog_retain)),
            StoreKind::Redb => {
                std::fs::create_dir_all(&config.data_dir).map_err(|e| {
                    StoreError::Backend(format!(
                        "cannot create data dir {}: {e}",
                        config.data_dir.display()
                    ))
                })?;
                Arc::new(RedbBackend::open(
                    &config.data_dir.join("graycast.redb"),
                    config.changelog_retain,
                )?)
            }
        };
        Store::with_backend(backend, config.max_batch as usize, metrics)
    }

    /// Starts a store over any backend.
    pub fn with_backend(
        backend: Arc<dyn Backend>,
        max_batch: usize,
        metrics: Arc<Metrics>,
    ) -> Result<(Store, FeedReceiver), StoreError> {
        let loaded = backend.load()?;
        let cache: DashMap<String, Namespace> = DashMap::new();
        for entry in loaded.entries {
            cache
                .entry(entry.namespace.clone())
                .or_default()
                .insert(entry.key.clone(), Arc::new(entry));
        }
        let shared = Arc::new(Shared {
            backend,
            cache,
            gate: RwLock::new(()),
            revision: AtomicU64::new(loaded.revision),
            failed: AtomicBool::new(false),
            gray_changed: Notify::new(),
            metrics,
        });
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let (feed_tx, feed_rx) = std_mpsc::channel();
        let writer_shared = shared.clone();
        let max_batch = max_batch.max(1);
        let thread = std::thread::Builder::new()
            .name("graycast-writer".into())
            .spawn(move || Writer { shared: writer_shared, feed: feed_tx, max_batch }.run(rx))
            .map_err(|e| StoreError::Backend(format!("cannot start the writer thread: {e}")))?;
        let store = Store { shared, writer: tx, writer_thread: Mutex::new(Some(thread)) };
        Ok((store, feed_rx))
    }

    /// Queues a write and waits until it is durable (or rejected).
    pub async fn write(&self, request: WriteRequest) -> Result<Arc<Change>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(WriterMessage::Write(request, reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Asks the writer to commit what is queued and stop, and waits for it.
    /// Writes queued after this fail with [`StoreError::Closed`].
    pub fn shutdown(&self) {
        // A full queue must not make shutdown fail: the blocking send waits for room.
        let _ = self.writer.blocking_send(WriterMessage::Shutdown);
        let thread = self.writer_thread.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                tracing::error!("the writer thread panicked");
            }
        }
    }

    /// The revision of the last committed change.
    pub fn revision(&self) -> Revision {
        self.shared.revision.load(Ordering::Acquire)
    }

    /// The current entry of a key.
    pub fn get(&self, namespace: &str, key: &str) -> Option<Arc<Entry>> {
        self.shared.get(namespace, key)
    }

    /// Every namespace with its number of keys, and the revision they are current at.
    pub fn namespaces(&self) -> (Revision, Vec<(String, usize)>) {
        let _gate = self.shared.gate.read().unwrap_or_else(PoisonError::into_inner);
        let revision = self.revision();
        let mut list: Vec<(String, usize)> =
            self.shared.cache.iter().map(|ns| (ns.key().clone(), ns.value().len())).collect();
        list.sort();
        (revision, list)
    }

    /// A consistent copy of the entries of some namespaces as of the returned revision,
    /// sorted by namespace and key.
    /// [`ALL_NAMESPACES`] among them stands for every namespace.
    pub fn snapshot(&self, namespaces: &[String]) -> (Revision, Vec<Arc<Entry>>) {
        let _gate = self.shared.gate.read().unwrap_or_else(PoisonError::into_inner);
        let revision = self.revision();
        let mut names: Vec<String> = if namespaces.iter().any(|n| n == ALL_NAMESPACES) {
            self.shared.cache.iter().map(|ns| ns.key().clone()).collect()
        } else {
            namespaces.to_vec()
        };
        names.sort();
        names.dedup();
        let mut entries = Vec::new();
        for name in names {
            if let Some(ns) = self.shared.cache.get(name.as_str()) {
                entries.extend(ns.values().cloned());
            }
        }
        (revision, entries)
    }

    /// Up to `limit` entries of a namespace with keys after `after`, in key order, as of
    /// the returned revision, and whether more follow.
    pub fn page(
        &self,
        namespace: &str,
        after: Option<&str>,
        limit: usize,
    ) -> (Revision, Vec<Arc<Entry>>, bool) {
        use std::ops::Bound;
        let _gate = self.shared.gate.read().unwrap_or_else(PoisonError::into_inner);
        let revision = self.revision();
        let Some(ns) = self.shared.cache.get(namespace) else {
            return (revision, Vec::new(), false);
        };
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut range = ns.range::<str, _>((start, Bound::Unbounded));
        let entries: Vec<Arc<Entry>> = range.by_ref().take(limit).map(|(_, e)| e.clone()).collect();
        let more = range.next().is_some();
        (revision, entries, more)
    }

    /// Checks that the store can take writes and its backend answers (readiness).
    pub fn check(&self) -> Result<(), StoreError> {
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(StoreError::Backend("a commit failed; restart the server".into()));
        }
        self.shared.backend.check()
    }

    /// Every entry with a running gray release.
    pub fn gray_entries(&self) -> Vec<Arc<Entry>> {
        let mut entries = Vec::new();
        for ns in self.shared.cache.iter() {
            entries.extend(ns.values().filter(|e| e.gray.is_some()).cloned());
        }
        entries
    }

    /// Resolves after the next commit that starts, changes or ends a gray release.
    pub async fn gray_changed(&self) {
        self.shared.gray_changed.notified().await;
    }

    /// The backend, for reads that go to durable storage (history, change log).
    pub fn backend(&self) -> Arc<dyn Backend> {
        self.shared.backend.clone()
    }
}

/// The single writer: batches queued requests into one durable transaction.
struct Writer {
    shared: Arc<Shared>,
    feed: std_mpsc::Sender<CommittedBatch>,
    max_batch: usize,
}

type Pending = (WriteRequest, oneshot::Sender<Result<Arc<Change>, StoreError>>);

impl Writer {
    fn run(self, mut queue: mpsc::Receiver<WriterMessage>) {
        let mut batch: Vec<Pending> = Vec::with_capacity(self.max_batch);
        let mut stopping = false;
        while !stopping {
            match queue.blocking_recv() {
                Some(WriterMessage::Write(request, reply)) => batch.push((request, reply)),
                Some(WriterMessage::Shutdown) | None => stopping = true,
            }
            // Everything that queued up while the last transaction committed joins this one.
            while batch.len() < self.max_batch {
                match queue.try_recv() {
                    Ok(WriterMessage::Write(request, reply)) => batch.push((request, reply)),
                    Ok(WriterMessage::Shutdown) => stopping = true,
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.commit(&mut batch);
            }
        }
        // Refuse what arrives from now on, and answer what is still queued.
        queue.close();
        while let Ok(message) = queue.try_recv() {
            if let WriterMessage::Write(request, reply) = message {
                batch.push((request, reply));
                if batch.len() == self.max_batch {
                    self.commit(&mut batch);
                }
            }
        }
        if !batch.is_empty() {
            self.commit(&mut batch);
        }
        tracing::debug!("writer stopped");
    }

    /// Plans, persists and publishes one batch, then answers every caller in it.
    fn commit(&self, batch: &mut Vec<Pending>) {
        let shared = &*self.shared;
        if shared.failed.load(Ordering::Acquire) {
            for (_, reply) in batch.drain(..) {
                let _ = reply.send(Err(StoreError::Backend(
                    "the store refuses writes after a failed commit; restart the server".into(),
                )));
            }
            return;
        }
        let now = Utc::now().trunc_subsecs(3);
        let base = shared.revision.load(Ordering::Acquire);
        // The state of keys written earlier in this batch, which later requests must see.
        let mut overlay: HashMap<(String, String), Option<Arc<Entry>>> = HashMap::new();
        let mut changes: Vec<Change> = Vec::new();
        let mut outcomes: Vec<Result<usize, StoreError>> = Vec::with_capacity(batch.len());
        for (request, _) in batch.iter() {
            let slot = (request.namespace.clone(), request.key.clone());
            let current = match overlay.get(&slot) {
                Some(state) => state.clone(),
                None => shared.get(&request.namespace, &request.key),
            };
            let revision = base + changes.len() as u64 + 1;
            match plan(shared.backend.as_ref(), request, current.as_deref(), revision, now) {
                Ok(change) => {
                    overlay.insert(slot, change.entry.clone());
                    outcomes.push(Ok(changes.len()));
                    changes.push(change);
                }
                Err(err) => outcomes.push(Err(err)),
            }
        }
        let rejected = outcomes.iter().filter(|o| o.is_err()).count() as u64;
        shared.metrics.write_rejections.fetch_add(rejected, Ordering::Relaxed);

        let committed: Vec<Arc<Change>> = if changes.is_empty() {
            Vec::new()
        } else if let Err(err) = shared.backend.persist(&changes) {
            tracing::error!(error = %err, writes = changes.len(), "commit failed; refusing writes");
            shared.failed.store(true, Ordering::Release);

            for (outcome, (_, reply)) in outcomes.into_iter().zip(batch.drain(..)) {
                let _ = reply.send(Err(outcome.err().unwrap_or_else(|| err.clone())));
            }
            return;
        } else {
            let committed: Vec<Arc<Change>> = changes.into_iter().map(Arc::new).collect();
            self.apply_to_cache(&committed);
            shared.metrics.record_commit(committed.len());
            if committed.iter().any(|c| matches!(c.op, Op::Gray | Op::Promote | Op::Abort)) {
                shared.gray_changed.notify_one();
            }
            // The hub may be gone during shutdown; the changes are durable regardless.
            let _ = self.feed.send(committed.clone());
            committed
        };
        for (outcome, (_, reply)) in outcomes.into_iter().zip(batch.drain(..)) {
            let _ = reply.send(outcome.map(|index| committed[index].clone()));
        }
    }

    fn apply_to_cache(&self, committed: &[Arc<Change>]) {
        let shared = &*self.shared;
        let _gate = shared.gate.write().unwrap_or_else(PoisonError::into_inner);
        for change in committed {
            match &change.entry {
                Some(entry) => {
                    shared
                        .cache
                        .entry(change.namespace.clone())
                        .or_default()
                        .insert(change.key.clone(), entry.clone());
                }
                None => {
                    let now_empty = match shared.cache.get_mut(&change.namespace) {
                        Some(mut ns) => {
                            ns.remove(&change.key);
                            ns.is_empty()
                        }
                        None => false,
                    };
                    if now_empty {
                        shared.cache.remove(&change.namespace);
                    }
                }
            }
        }
        if let Some(last) = committed.last() {
            shared.revision.store(last.revision, Ordering::Release);
        }
    }
}

/// Decides what one write does to the current state of its key.
fn plan(
    backend: &dyn Backend,
    request: &WriteRequest,
    current: Option<&Entry>,
    revision: Revision,
    now: DateTime<Utc>,
) -> Result<Change, StoreError> {
    let what = || format!("key {}/{}", request.namespace, request.key);
    match (request.precondition, current) {
        (Precondition::None, _) => {}
        (Precondition::Revision(expected), Some(entry)) if entry.revision != expected => {
            return Err(StoreError::RevisionMismatch {
                what: what(),
                expected,
                actual: entry.revision,
            });
        }
        (Precondition::Revision(_) | Precondition::Exists, None) => {
            return Err(StoreError::Missing { what: what() });
        }
        (Precondition::Absent, Some(entry)) => {
            return Err(StoreError::AlreadyExists { what: what(), revision: entry.revision });
        }
        _ => {}
    }
    let no_key = || StoreError::NotFound { what: what() };
    let no_gray = || StoreError::NotFound { what: format!("a gray release of {}", what()) };
    let current_gray = current.and_then(|e| e.gray.as_ref());
    let (op, value, gray, note) = match &request.mutation {
        Mutation::Put { value } => (Op::Put, value.clone(), current_gray.cloned(), None),
        Mutation::Rollback { to_revision } => {
            let item = backend
                .history_at(&request.namespace, &request.key, *to_revision)?
                .ok_or_else(|| StoreError::NotFound {
                    what: format!("revision {to_revision} in the history of {}", what()),
                })?;
            if item.op == Op::Delete {
                return Err(StoreError::Invalid(format!(
                    "revision {to_revision} deleted {}; there is no value to roll back to",
                    what()
                )));
            }
            (Op::Rollback, item.value, current_gray.cloned(), None)
        }
        Mutation::Delete => {
            if current.is_none() {
                return Err(no_key());
            }
            return Ok(Change {
                revision,
                op: Op::Delete,
                namespace: request.namespace.clone(),
                key: request.key.clone(),
                entry: None,
                at: now,
                by: request.actor.clone(),
                note: None,
            });
        }
        Mutation::GrayStart { gray } => {
            let entry = current.ok_or_else(no_key)?;
            // The release begins at the commit, so the schedule runs on the writer's clock
            // (the one `GrayAdvance` is checked against), not the handler's.
            let mut gray = Gray::clone(gray);
            gray.started_at = now;
            gray.next_step_at = step_due_at(&gray, now);
            (Op::Gray, entry.value.clone(), Some(gray), None)
        }
        Mutation::GrayPatch(patch) => {
            let entry = current.ok_or_else(no_key)?;
            let running = current_gray.ok_or_else(no_gray)?;
            let next = patch.clone().apply(running, now).map_err(|e| StoreError::Invalid(e.0))?;
            (Op::Gray, entry.value.clone(), Some(next), None)
        }
        Mutation::GrayAdvance { started_at, step } => {
            let entry = current.ok_or_else(no_key)?;
            let running = current_gray.ok_or_else(no_gray)?;
            let due = running.next_step_at.is_some_and(|at| at <= now);
            if running.started_at != *started_at || running.step != *step || running.paused || !due
            {
                return Err(StoreError::Superseded(format!(
                    "the ramp of {} is no longer at step {step} and due",
                    what()
                )));
            }
            advance(entry, running, now)
        }
        Mutation::Promote => {
            current.ok_or_else(no_key)?;
            let running = current_gray.ok_or_else(no_gray)?;
            (Op::Promote, running.value.clone(), None, None)
        }
        Mutation::Abort { started_at, note } => {
            let entry = current.ok_or_else(no_key)?;
            let running = current_gray.ok_or_else(no_gray)?;
            if started_at.is_some_and(|at| at != running.started_at) {
                return Err(StoreError::Superseded(format!(
                    "the gray release of {} was replaced",
                    what()
                )));
            }
            (Op::Abort, entry.value.clone(), None, note.clone())
        }
    };
    let entry = Entry {
        namespace: request.namespace.clone(),
        key: request.key.clone(),
        value,
        revision,
        created_revision: current.map_or(revision, |e| e.created_revision),
        version: current.map_or(1, |e| e.version + 1),
        updated_at: now,
        updated_by: request.actor.clone(),
        gray,
    };
    Ok(Change {
        revision,
        op,
        namespace: request.namespace.clone(),
        key: request.key.clone(),
        entry: Some(Arc::new(entry)),
        at: now,
        by: request.actor.clone(),
        note,
    })
}

/// One scheduled move of a ramp whose step is due: to the next step, or at the end of
/// the ramp to a promotion (with `auto_promote`) or to rest at the last step.
fn advance(
    entry: &Entry,
    running: &Gray,
    now: DateTime<Utc>,
) -> (Op, Value, Option<Gray>, Option<String>) {
    let next_index = running.step as usize + 1;
    let promote = |note: String| (Op::Promote, running.value.clone(), None, Some(note));
    let Some(next_step) = running.steps.get(next_index) else {
        if running.auto_promote {
            return promote("ramp completed; promoted automatically".into());
        }
        let mut rest = running.clone();
        rest.next_step_at = None;
        return (Op::Gray, entry.value.clone(), Some(rest), Some("ramp completed".into()));
    };
    let last = next_index + 1 == running.steps.len();
    if last && next_step.hold_secs.is_none() && running.auto_promote {
        return promote(format!(
            "ramp reached its last step ({}%); promoted automatically",
            next_step.percent
        ));
    }
    let mut next = running.clone();
    next.step = next_index as u32;
    // A ramp never lowers the share: subjects already in gray stay there (SPEC §3), also
    // when an operator raised the percent beyond the next step by hand.
    next.percent = next_step.percent.max(running.percent);
    next.next_step_at = next_step_at(&next.steps, next.step, false, now);
    let note = format!("ramp step {next_index}: {}%", next.percent);
    (Op::Gray, entry.value.clone(), Some(next), Some(note))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Condvar, Mutex};

    use serde_json::json;

    use super::*;

    /// A memory backend that can be made to fail, or to hold commits until released,
    /// and that counts its commits.
    struct FaultyBackend {
        inner: MemoryBackend,
        fail: AtomicBool,
        held: Mutex<bool>,
        release: Condvar,
        commits: AtomicUsize,
        /// Calls of `persist` so far, held or not.
        entered: AtomicUsize,
    }

    impl FaultyBackend {
        fn new() -> Arc<FaultyBackend> {
            Arc::new(FaultyBackend {
                inner: MemoryBackend::new(1000),
                fail: AtomicBool::new(false),
                held: Mutex::new(false),
                release: Condvar::new(),
                commits: AtomicUsize::new(0),
                entered: AtomicUsize::new(0),
            })
        }

        fn hold(&self, hold: bool) {
            *self.held.lock().unwrap() = hold;
            self.release.notify_all();
        }
    }

    impl Backend for FaultyBackend {
        fn load(&self) -> Result<Loaded, StoreError> {
            self.inner.load()
        }
        fn persist(&self, changes: &[Change]) -> Result<(), StoreError> {
            self.entered.fetch_add(1, Ordering::SeqCst);
            let mut held = self.held.lock().unwrap();
            while *held {
                held = self.release.wait(held).unwrap();
            }
            if self.fail.load(Ordering::SeqCst) {
                return Err(StoreError::Backend("injected disk failure".into()));
            }
            self.commits.fetch_add(1, Ordering::SeqCst);
            self.inner.persist(changes)
        }
        fn changes_after(&self, after: Revision, limit: usize) -> Result<ChangePage, StoreError> {
            self.inner.changes_after(after, limit)
        }
        fn history(
            &self,
            ns: &str,
            key: &str,
            before: Option<Revision>,
            limit: usize,
            max_bytes: usize,
        ) -> Result<HistoryPage, StoreError> {
            self.inner.history(ns, key, before, limit, max_bytes)
        }
        fn history_at(
            &self,
            ns: &str,
            key: &str,
            revision: Revision,
        ) -> Result<Option<HistoryItem>, StoreError> {
            self.inner.history_at(ns, key, revision)
        }
        fn check(&self) -> Result<(), StoreError> {
            Ok(())
        }
    }

    fn put(key: &str, value: Value, precondition: Precondition) -> WriteRequest {
        WriteRequest {
            namespace: "ns".into(),
            key: key.into(),
            mutation: Mutation::Put { value },
            precondition,
            actor: "test".into(),
        }
    }

    fn open(backend: Arc<FaultyBackend>) -> (Arc<Store>, FeedReceiver) {
        let (store, feed) =
            Store::with_backend(backend, 1024, Arc::new(Metrics::default())).expect("opens");
        (Arc::new(store), feed)
    }

    /// Waits until `n` requests wait in the writer's queue.
    async fn queued(store: &Store, n: usize) {
        wait_for(|| store.writer.max_capacity() - store.writer.capacity() >= n).await;
    }

    /// Waits until the writer is inside its `n`th commit.
    async fn committing(backend: &FaultyBackend, n: usize) {
        wait_for(|| backend.entered.load(Ordering::SeqCst) >= n).await;
    }

    async fn wait_for(condition: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !condition() {
            assert!(std::time::Instant::now() < deadline, "condition never met");
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_commit_changes_nothing_and_stops_writes() {
        let backend = FaultyBackend::new();
        let (store, feed) = open(backend.clone());
        let first = store.write(put("k", json!(1), Precondition::None)).await.expect("writes");
        assert_eq!(first.revision, 1);

        backend.fail.store(true, Ordering::SeqCst);
        let err = store.write(put("k", json!(2), Precondition::None)).await;
        assert!(matches!(err, Err(StoreError::Backend(_))), "{err:?}");
        assert_eq!(store.revision(), 1);
        assert_eq!(store.get("ns", "k").map(|e| e.value.clone()), Some(json!(1)));
        assert!(store.check().is_err(), "readiness reports the failure");

        // Even once the disk recovers, the writer refuses: whether the failed commit
        // reached the disk is unknown, and a revision must never be reused.
        backend.fail.store(false, Ordering::SeqCst);
        assert!(store.write(put("k", json!(3), Precondition::None)).await.is_err());
        assert_eq!(backend.commits.load(Ordering::SeqCst), 1);
        // Only the committed change was fed to subscribers.
        let fed: Vec<Revision> = feed.try_iter().flatten().map(|c| c.revision).collect();
        assert_eq!(fed, [1]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_queued_during_a_commit_share_the_next_one_and_see_each_other() {
        let backend = FaultyBackend::new();
        let (store, feed) = open(backend.clone());
        backend.hold(true);
        let first = tokio::spawn({
            let store = store.clone();
            async move { store.write(put("a", json!(0), Precondition::None)).await }
        });
        committing(&backend, 1).await;
        // While the first commit is held, queue writes that depend on each other.
        let mut later = Vec::new();
        for request in [
            put("x", json!(1), Precondition::Absent),
            put("x", json!(2), Precondition::Revision(2)),
            put("x", json!(3), Precondition::Absent),
            put("x", json!(4), Precondition::Revision(2)),
        ] {
            let writer = store.clone();
            later.push(tokio::spawn(async move { writer.write(request).await }));
            // One at a time, so that the queue order is the order above.

            queued(&store, later.len()).await;
        }

        backend.hold(false);

        assert_eq!(first.await.unwrap().expect("first").revision, 1);
        let outcomes: Vec<_> = futures_util::future::join_all(later).await;
        let outcomes: Vec<Result<Arc<Change>, StoreError>> =
            outcomes.into_iter().map(|o| o.unwrap()).collect();
        // Requests are planned in queue order; each sees the ones before it.
        let revisions: Vec<Option<Revision>> =
            outcomes.iter().map(|o| o.as_ref().ok().map(|c| c.revision)).collect();
        assert_eq!(revisions, [Some(2), Some(3), None, None]);
        assert!(matches!(outcomes[2], Err(StoreError::AlreadyExists { revision: 3, .. })));
        assert!(matches!(
            outcomes[3],
            Err(StoreError::RevisionMismatch { expected: 2, actual: 3, .. })
        ));
        let x = store.get("ns", "x").expect("x exists");
        assert_eq!((x.value.clone(), x.version, x.created_revision), (json!(2), 2, 2));
        assert_eq!(backend.commits.load(Ordering::SeqCst), 2, "one commit for the whole queue");
        let fed: Vec<Revision> = feed.try_iter().flatten().map(|c| c.revision).collect();
        assert_eq!(fed, [1, 2, 3]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_commits_what_was_queued() {
        let backend = FaultyBackend::new();
        let (store, _feed) = open(backend.clone());
        backend.hold(true);
        let mut writes = Vec::new();
        for i in 0..10 {
            let store = store.clone();
            writes.push(tokio::spawn(async move {
                store.write(put(&format!("k{i}"), json!(i), Precondition::None)).await
            }));
            if i == 0 {
                committing(&backend, 1).await;
            }
        }
        queued(&store, 9).await;

        let stopper = tokio::task::spawn_blocking({
            let store = store.clone();
            move || store.shutdown()
        });
        backend.hold(false);
        stopper.await.unwrap();
        for write in writes {
            assert!(write.await.unwrap().is_ok(), "a queued write was dropped by shutdown");
        }
        assert_eq!(store.revision(), 10);
        let late = store.write(put("late", json!(1), Precondition::None)).await;
        assert!(matches!(late, Err(StoreError::Closed)));
    }
}
