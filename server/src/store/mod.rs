//! The revisioned store: every change of every key is one revision, durable before it is
//! acknowledged; the live cache of current entries; and the stream of committed changes
//! that feeds the hub.
//!
//! Two engines keep it, behind one [`Store`] handle:
//! - the **local** engine ([`writer`]): one group-committing writer thread over an
//!   embedded backend ([`RedbBackend`], or [`MemoryBackend`] for tests and demos), which
//!   assigns revisions itself;
//! - the **etcd** engine (`etcd`, cargo feature `etcd`): each write is one etcd
//!   transaction whose revision is the change's, and every node applies every change,
//!   its own included, from its watch, in revision order.
//!
//! Both plan a write the same way ([`plan`]) and answer the same contract, whose
//! behavioural tests ([`contract`]) run against each of them.
//!
//! The cache (a [`DashMap`] of namespaces) is a copy of the durable state, rebuilt from
//! it at start and updated only with committed changes. It serves every read of current
//! state without I/O.

pub mod contract;
#[cfg(feature = "etcd")]
pub mod etcd;
mod memory;
mod plan;
mod record;
mod redb;
mod writer;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use graycast_protocol::gray::GrayPatch;
use graycast_protocol::ws::ALL_NAMESPACES;
use graycast_protocol::{Entry, Gray, HistoryItem, Op, Revision};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Notify;

use crate::metrics::Metrics;

pub use self::memory::MemoryBackend;
pub use self::redb::RedbBackend;
pub use self::writer::LocalBackend;

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
    /// A conditional write's headers do not hold.
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("the store is shutting down")]
    Closed,
    #[error("store failure: {0}")]
    Backend(String),
    /// The store cannot be reached now (etcd down or without quorum); nothing was written.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
}

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
    fn matches(&self, revision: Revision) -> bool {
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
    fn shrinks(&self) -> bool {
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

/// Where a store keeps its data.
#[derive(Debug, Clone)]
pub enum Backing {
    /// An embedded redb file.
    Redb(PathBuf),
    /// Memory only: fast and forgetful, for tests and demos.
    Memory,
    /// An etcd cluster shared by several nodes.
    #[cfg(feature = "etcd")]
    Etcd(etcd::EtcdOptions),
}

/// Everything a store needs to know; the server builds it from its configuration.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub backing: Backing,
    /// Changes kept for resuming subscribers (the local engines' change log).
    pub changelog_retain: u64,
    /// History items kept per key; 0 keeps them all.
    pub history_retain: u64,
    /// Most writes committed in one transaction (local engines).
    pub max_batch: usize,
    /// Bytes the store may hold; writes that would go beyond are refused.
    pub quota_bytes: u64,
}

impl StoreOptions {
    /// Options for a memory store with every default (for tests).
    pub fn memory() -> StoreOptions {
        StoreOptions {
            backing: Backing::Memory,
            changelog_retain: 100_000,
            history_retain: 0,
            max_batch: 1024,
            quota_bytes: u64::MAX,
        }
    }
}

/// The keys of one namespace, by name.
type Namespace = BTreeMap<String, Arc<Entry>>;

/// State shared by the store handle and its engine.
struct Shared {
    cache: DashMap<String, Namespace>,
    /// Taken for writing while an engine applies changes to the cache, and for reading
    /// while a consistent snapshot is copied out. Both are short and synchronous.
    gate: RwLock<()>,
    /// The revision of the last change applied to the cache.
    revision: AtomicU64,
    /// Set when the store cannot take writes (a failed local commit, whose outcome on disk
    /// is unknown, or an etcd that cannot be reached), with the reason.
    failed: RwLock<Option<String>>,
    /// Whether a failure is permanent (a failed local commit: only a restart recovers).
    failed_for_good: AtomicBool,
    /// Signalled after a change that started, changed or ended a gray release.
    gray_changed: Notify,
    /// Signalled after every application of changes to the cache.
    applied: Notify,
    metrics: Arc<Metrics>,
}

impl Shared {
    fn new(loaded: Loaded, metrics: Arc<Metrics>) -> Shared {
        let cache: DashMap<String, Namespace> = DashMap::new();
        for entry in loaded.entries {
            cache
                .entry(entry.namespace.clone())
                .or_default()
                .insert(entry.key.clone(), Arc::new(entry));
        }
        Shared {
            cache,
            gate: RwLock::new(()),
            revision: AtomicU64::new(loaded.revision),
            failed: RwLock::new(None),
            failed_for_good: AtomicBool::new(false),
            gray_changed: Notify::new(),
            applied: Notify::new(),
            metrics,
        }
    }

    fn get(&self, namespace: &str, key: &str) -> Option<Arc<Entry>> {
        self.cache.get(namespace).and_then(|ns| ns.get(key).cloned())
    }

    fn revision(&self) -> Revision {
        self.revision.load(Ordering::Acquire)
    }

    /// Applies committed changes, in revision order, to the cache.
    fn apply(&self, committed: &[Arc<Change>]) {
        {
            let _gate = self.gate.write().unwrap_or_else(PoisonError::into_inner);
            for change in committed {
                match &change.entry {
                    Some(entry) => {
                        self.cache
                            .entry(change.namespace.clone())
                            .or_default()
                            .insert(change.key.clone(), entry.clone());
                    }
                    None => {
                        let now_empty = match self.cache.get_mut(&change.namespace) {
                            Some(mut ns) => {
                                ns.remove(&change.key);
                                ns.is_empty()
                            }
                            None => false,
                        };
                        if now_empty {
                            self.cache.remove(&change.namespace);
                        }
                    }
                }
            }
            if let Some(last) = committed.last() {
                self.revision.fetch_max(last.revision, Ordering::AcqRel);
            }
        }
        if committed.iter().any(|c| matches!(c.op, Op::Gray | Op::Promote | Op::Abort | Op::Delete))
        {
            self.gray_changed.notify_one();
        }
        self.applied.notify_waiters();
    }

    /// Replaces the whole cache with a fresh load (after an etcd watch lost its place).
    #[cfg(feature = "etcd")]
    fn replace(&self, loaded: Loaded) {
        let _gate = self.gate.write().unwrap_or_else(PoisonError::into_inner);
        self.cache.clear();
        for entry in loaded.entries {
            self.cache
                .entry(entry.namespace.clone())
                .or_default()
                .insert(entry.key.clone(), Arc::new(entry));
        }
        self.revision.store(loaded.revision, Ordering::Release);
        drop(_gate);
        self.gray_changed.notify_one();
        self.applied.notify_waiters();
    }

    fn fail(&self, reason: String, for_good: bool) {
        *self.failed.write().unwrap_or_else(PoisonError::into_inner) = Some(reason);
        if for_good {
            self.failed_for_good.store(true, Ordering::Release);
        }
    }

    #[cfg(feature = "etcd")]
    fn recover(&self) {
        if !self.failed_for_good.load(Ordering::Acquire) {
            *self.failed.write().unwrap_or_else(PoisonError::into_inner) = None;
        }
    }

    /// Waits until the cache has applied `revision`, at most `timeout`.
    async fn wait_applied(&self, revision: Revision, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let applied = self.applied.notified();
            if self.revision() >= revision {
                return true;
            }
            if tokio::time::timeout_at(deadline, applied).await.is_err() {
                return self.revision() >= revision;
            }
        }
    }

    fn failure(&self) -> Option<String> {
        self.failed.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

enum Engine {
    Local(writer::LocalWriter),
    #[cfg(feature = "etcd")]
    Etcd(Box<etcd::EtcdEngine>),
}

/// The store: cached reads, durable writes, history, and the stream of committed changes.
pub struct Store {
    shared: Arc<Shared>,
    engine: Engine,
    /// A node alone always leads; kept so that its receivers never see it closed.
    alone: tokio::sync::watch::Sender<bool>,
}

impl Store {
    /// Opens the store its options name (connecting to etcd, or opening the embedded
    /// file) and loads the current state.
    ///
    /// Returns the store and the receiving end of its stream of committed changes.
    pub async fn open(
        options: StoreOptions,
        metrics: Arc<Metrics>,
    ) -> Result<(Store, FeedReceiver), StoreError> {
        let backend: Arc<dyn LocalBackend> = match &options.backing {
            #[cfg(feature = "etcd")]
            Backing::Etcd(etcd) => {
                let (engine, loaded) = etcd::EtcdEngine::connect(etcd.clone(), &options).await?;
                let shared = Arc::new(Shared::new(loaded, metrics));
                let feed = engine.start(shared.clone());
                let alone = tokio::sync::watch::channel(false).0;
                return Ok((Store { shared, engine: Engine::Etcd(Box::new(engine)), alone }, feed));
            }
            Backing::Memory => Arc::new(MemoryBackend::new(&options)),
            Backing::Redb(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        StoreError::Backend(format!(
                            "cannot create data dir {}: {e}",
                            dir.display()
                        ))
                    })?;
                }
                let (path, retain) = (path.clone(), options.clone());
                Arc::new(
                    tokio::task::spawn_blocking(move || RedbBackend::open(&path, &retain))
                        .await
                        .map_err(|e| {
                            StoreError::Backend(format!("opening the store failed: {e}"))
                        })??,
                )
            }
        };
        Store::with_local_backend(backend, &options, metrics)
    }

    /// Starts a store over a local backend (for tests with a fault-injecting one).
    pub fn with_local_backend(
        backend: Arc<dyn LocalBackend>,
        options: &StoreOptions,
        metrics: Arc<Metrics>,
    ) -> Result<(Store, FeedReceiver), StoreError> {
        let loaded = backend.load()?;
        let shared = Arc::new(Shared::new(loaded, metrics));
        let (writer, feed) = writer::LocalWriter::start(shared.clone(), backend, options)?;
        let alone = tokio::sync::watch::channel(true).0;
        Ok((Store { shared, engine: Engine::Local(writer), alone }, feed))
    }

    /// Makes a write durable (or refuses it) and returns the committed change.
    pub async fn write(&self, mut request: WriteRequest) -> Result<Arc<Change>, StoreError> {
        // A store that cannot be reached for now (etcd) is for each write to find out; one
        // whose commit failed (the local writer) refuses every write until a restart.
        if self.shared.failed_for_good.load(Ordering::Acquire) {
            if let Some(reason) = self.shared.failure() {
                return Err(StoreError::Unavailable(reason));
            }
        }
        if let Mutation::Rollback { to_revision } = request.mutation {
            // A history item never changes, so it can be read before the write is planned.
            let what = || format!("key {}/{}", request.namespace, request.key);
            let item = self
                .history_at(&request.namespace, &request.key, to_revision)
                .await?
                .ok_or_else(|| StoreError::NotFound {
                    what: format!("revision {to_revision} in the history of {}", what()),
                })?;
            if item.op == Op::Delete {
                return Err(StoreError::Invalid(format!(
                    "revision {to_revision} deleted {}; there is no value to roll back to",
                    what()
                )));
            }
            request.mutation = Mutation::Restore { to_revision, value: item.value };
        }
        let started = std::time::Instant::now();
        let written = match &self.engine {
            Engine::Local(writer) => writer.write(request).await,
            #[cfg(feature = "etcd")]
            Engine::Etcd(engine) => {
                // Each write is its own etcd transaction; the local writer counts its own.
                let written = engine.write(&self.shared, request).await;
                match &written {
                    Ok(_) => self.shared.metrics.record_commit(1),
                    Err(
                        StoreError::Unavailable(_)
                        | StoreError::Closed
                        | StoreError::Backend(_)
                        | StoreError::Corrupt(_),
                    ) => {}
                    Err(_) => self.shared.metrics.record_rejections(1),
                }
                written
            }
        };
        self.shared.metrics.record_write(started.elapsed());
        written
    }

    /// The server's metrics, which the store records its writes in.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Stops the engine: the local writer commits what was queued first.
    /// Writes made after this fail with [`StoreError::Closed`].
    pub fn shutdown(&self) {
        match &self.engine {
            Engine::Local(writer) => writer.shutdown(),
            #[cfg(feature = "etcd")]
            Engine::Etcd(engine) => engine.shutdown(),
        }
    }

    /// The revision of the last change applied to the cache.
    pub fn revision(&self) -> Revision {
        self.shared.revision()
    }

    /// Waits until the cache has applied `revision`, at most `timeout`.
    pub async fn wait_applied(&self, revision: Revision, timeout: Duration) -> bool {
        self.shared.wait_applied(revision, timeout).await
    }

    /// Whether this node leads the ramps and the guard: always, alone; in a cluster, the
    /// node that won the election.
    pub fn leadership(&self) -> tokio::sync::watch::Receiver<bool> {
        match &self.engine {
            Engine::Local(_) => self.alone.subscribe(),
            #[cfg(feature = "etcd")]
            Engine::Etcd(engine) => engine.leadership(),
        }
    }

    /// Whether the store is shared by several nodes.
    pub fn clustered(&self) -> bool {
        !matches!(self.engine, Engine::Local(_))
    }

    /// Publishes what this node knows under `name`, for the other nodes, until it leaves
    /// (a cluster's guard counts); nothing to do alone.
    pub async fn publish_ephemeral(&self, name: &str, value: Vec<u8>) -> Result<(), StoreError> {
        match &self.engine {
            Engine::Local(_) => {
                let _ = (name, value);
                Ok(())
            }
            #[cfg(feature = "etcd")]
            Engine::Etcd(engine) => engine.publish_ephemeral(name, value).await,
        }
    }

    /// What every node published under names starting with `prefix`.
    pub async fn read_ephemeral(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        match &self.engine {
            Engine::Local(_) => {
                let _ = prefix;
                Ok(Vec::new())
            }
            #[cfg(feature = "etcd")]
            Engine::Etcd(engine) => engine.read_ephemeral(prefix).await,
        }
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
    /// sorted by namespace and key. [`ALL_NAMESPACES`] among them stands for every one.
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

    /// Every entry with a running gray release.
    pub fn gray_entries(&self) -> Vec<Arc<Entry>> {
        let mut entries = Vec::new();
        for ns in self.shared.cache.iter() {
            entries.extend(ns.values().filter(|e| e.gray.is_some()).cloned());
        }
        entries
    }

    /// Resolves after the next change that starts, changes or ends a gray release.
    pub async fn gray_changed(&self) {
        self.shared.gray_changed.notified().await;
    }

    /// Up to `limit` history items of a key with a revision below `before`, newest first,
    /// stopping at about `max_bytes`.
    pub async fn history(
        &self,
        namespace: &str,
        key: &str,
        before: Option<Revision>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<HistoryPage, StoreError> {
        match &self.engine {
            Engine::Local(writer) => {
                let backend = writer.backend();
                let (ns, k) = (namespace.to_owned(), key.to_owned());
                blocking(move || backend.history(&ns, &k, before, limit, max_bytes)).await
            }
            #[cfg(feature = "etcd")]
            Engine::Etcd(engine) => engine.history(namespace, key, before, limit, max_bytes).await,
        }
    }

    /// The history item of a key at exactly `revision`, if that revision changed the key.
    pub async fn history_at(
        &self,
        namespace: &str,
        key: &str,
        revision: Revision,
    ) -> Result<Option<HistoryItem>, StoreError> {
        match &self.engine {
            Engine::Local(writer) => {
                let backend = writer.backend();
                let (ns, k) = (namespace.to_owned(), key.to_owned());
                blocking(move || backend.history_at(&ns, &k, revision)).await
            }
            #[cfg(feature = "etcd")]
            Engine::Etcd(engine) => engine.history_at(namespace, key, revision).await,
        }
    }

    /// Up to `limit` changes after `after`, oldest first, up to the cache's revision.
    pub async fn changes_after(
        &self,
        after: Revision,
        limit: usize,
    ) -> Result<ChangePage, StoreError> {
        let cap = self.revision();
        let page = match &self.engine {
            Engine::Local(writer) => {
                let backend = writer.backend();
                blocking(move || backend.changes_after(after, limit)).await?
            }
            #[cfg(feature = "etcd")]
            Engine::Etcd(engine) => engine.changes_after(after, limit).await?,
        };
        Ok(match page {
            ChangePage::Changes(mut changes) => {
                changes.retain(|c| c.revision <= cap);
                ChangePage::Changes(changes)
            }
            ChangePage::Compacted => ChangePage::Compacted,
        })
    }

    /// Checks that the store can take writes and its backend answers (readiness).
    pub async fn check(&self) -> Result<(), StoreError> {
        if let Some(reason) = self.shared.failure() {
            return Err(StoreError::Unavailable(reason));
        }
        match &self.engine {
            Engine::Local(writer) => {
                let backend = writer.backend();
                blocking(move || backend.check()).await
            }
            #[cfg(feature = "etcd")]
            Engine::Etcd(engine) => engine.check().await,
        }
    }
}

/// Runs a blocking backend call on a blocking thread.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(call)
        .await
        .unwrap_or_else(|e| Err(StoreError::Backend(format!("a store read failed: {e}"))))
}

/// The bytes a write brings into the store, roughly: the size of the value it stores.
fn written_bytes(mutation: &Mutation) -> u64 {
    use graycast_protocol::value::compact_size;
    let size = match mutation {
        Mutation::Put { value } | Mutation::Restore { value, .. } => compact_size(value),
        Mutation::GrayStart { gray } => compact_size(&gray.value),
        _ => 0,
    };
    size as u64
}
