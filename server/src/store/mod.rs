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

mod cache;
mod change;
pub mod contract;
mod error;
#[cfg(feature = "etcd")]
pub mod etcd;
mod history;
mod memory;
mod options;
mod plan;
mod record;
mod redb;
mod request;
mod writer;

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use graycast_protocol::ws::ALL_NAMESPACES;
use graycast_protocol::{Entry, HistoryItem, Op, Revision};

use crate::metrics::Metrics;

use self::cache::Shared;
pub use self::change::{
    Change, ChangePage, CommittedBatch, Fed, FeedReceiver, HistoryPage, Loaded,
};
pub use self::error::StoreError;
pub use self::memory::MemoryBackend;
pub use self::options::{Backing, StoreOptions};
pub use self::redb::RedbBackend;
pub use self::request::{Idempotency, Kept, Mutation, Precondition, Tags, WriteRequest};
pub use self::writer::LocalBackend;

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
    /// Claimed `Idempotency-Key`s of requests that are not writes (a node alone).
    claims: request::Claims,
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
                let (engine, loaded) =
                    etcd::EtcdEngine::connect(etcd.clone(), &options, metrics.clone()).await?;
                let pending = loaded.is_none();
                let shared = Arc::new(Shared::new(loaded.unwrap_or_default(), metrics));
                shared.loaded.store(!pending, Ordering::Release);
                let feed = engine.start(shared.clone());
                let alone = tokio::sync::watch::channel(false).0;
                let engine = Engine::Etcd(Box::new(engine));
                let claims = request::Claims::default();
                return Ok((Store { shared, engine, alone, claims }, feed));
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
        let claims = request::Claims::default();
        Ok((Store { shared, engine: Engine::Local(writer), alone, claims }, feed))
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
        self.resolve(&mut request).await?;
        let broke_glass = match &request.authority {
            crate::policy::Authority::BreakGlass { reason } => Some(reason.clone()),
            _ => None,
        };
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
        if let (Ok(change), Some(reason)) = (&written, broke_glass) {
            self.open_review(change, reason).await;
        }
        written
    }

    /// Opens the review item of a break-glass write: shown until someone other than its
    /// author acknowledges it (`/v1/reviews`).
    async fn open_review(&self, change: &Change, reason: String) {
        let id = format!("r{}", change.revision);
        let item = serde_json::json!({
            "id": id, "by": change.by, "reason": reason, "at": change.at,
            "namespace": change.namespace, "key": change.key, "op": change.op,
            "revision": change.revision, "acknowledged": null,
        });
        let mut write = WriteRequest::new(
            crate::policy::REVIEWS_NAMESPACE,
            id,
            Mutation::Put { value: item },
            change.by.clone(),
        );
        write.authority = crate::policy::Authority::System;
        write.comment = Some("break glass".into());
        if let Err(err) = Box::pin(self.write(write)).await {
            tracing::error!(revision = change.revision, error = %err, "cannot open the review of a break-glass write");
        }
    }

    /// Turns a rollback into the restore of the value it names: a history item never
    /// changes, so it can be read before the write is planned.
    async fn resolve(&self, request: &mut WriteRequest) -> Result<(), StoreError> {
        let Mutation::Rollback { to_revision } = request.mutation else { return Ok(()) };
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
        Ok(())
    }

    /// Makes writes together: on one node, all in one commit or none (each its own
    /// revision, in order). On etcd, whose transaction gives all its keys one revision,
    /// they are made one after the other, each under its own precondition: a write refused
    /// midway leaves the ones before it made, and the error says which.
    pub async fn write_group(
        &self,
        mut requests: Vec<WriteRequest>,
    ) -> Result<Vec<Arc<Change>>, StoreError> {
        if self.shared.failed_for_good.load(Ordering::Acquire) {
            if let Some(reason) = self.shared.failure() {
                return Err(StoreError::Unavailable(reason));
            }
        }
        for request in &mut requests {
            self.resolve(request).await?;
        }
        match &self.engine {
            Engine::Local(writer) => writer.write_group(requests).await,
            #[cfg(feature = "etcd")]
            Engine::Etcd(_) => {
                let mut made = Vec::with_capacity(requests.len());
                for request in requests {
                    let what = format!("{}/{}", request.namespace, request.key);
                    match self.write(request).await {
                        Ok(change) => made.push(change),
                        Err(err) if made.is_empty() => return Err(err),
                        Err(err) => {
                            return Err(StoreError::Conflict(format!(
                                "{} of the writes were made (up to revision {}); the write of \
                                 {what} was refused: {err}",
                                made.len(),
                                made.last().map_or(0, |c| c.revision)
                            )))
                        }
                    }
                }
                Ok(made)
            }
        }
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

    /// Whether this node holds the store's state and may serve it: false while a node
    /// that started with etcd unreachable waits to load it.
    pub fn serving(&self) -> bool {
        self.shared.loaded.load(Ordering::Acquire)
    }

    /// The revision of the last change applied to the cache.
    pub fn revision(&self) -> Revision {
        self.shared.revision()
    }

    /// The revision of the last change to any of `namespaces` this node applied (0 if
    /// none since it started; a node that starts knows its namespaces as of its load).
    pub fn changed_in(&self, namespaces: &[String]) -> Revision {
        namespaces
            .iter()
            .filter_map(|ns| self.shared.changed.get(ns).map(|r| *r))
            .max()
            .unwrap_or(0)
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

    /// Claims the `Idempotency-Key` of a request that is not a write (a guard report), on
    /// every node: whether this is the first request with it. A repeat of the request
    /// claims nothing; another request under the key is refused.
    pub async fn claim(&self, idempotency: &Idempotency) -> Result<bool, StoreError> {
        match &self.engine {
            Engine::Local(_) => self.claims.claim(idempotency),
            #[cfg(feature = "etcd")]
            Engine::Etcd(engine) => engine.claim(idempotency).await,
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

    /// A namespace's JSON Schemas as they are now, compiled (once per revision).
    pub fn schemas(&self, namespace: &str) -> Option<Arc<crate::schema::Compiled>> {
        let entry = self.shared.get(crate::schema::SCHEMAS_NAMESPACE, namespace)?;
        self.shared.schemas.compiled(&entry)
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
