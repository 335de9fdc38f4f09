//! The local engine: one writer thread that group-commits writes to an embedded backend.
//!
//! [`LocalWriter::write`] queues a request for the writer thread, which takes every
//! request queued while the previous transaction was committing, plans them in order
//! against the current state (checking preconditions and assigning consecutive
//! revisions), persists the accepted ones in **one** durable transaction, applies them
//! to the cache, answers each caller, and only then hands them to the feed (the hub), so
//! acknowledgements never wait behind a fan-out. A request that is rejected consumes no
//! revision and changes nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use chrono::{SubsecRound, Utc};
use graycast_protocol::{Entry, HistoryItem, Revision};
use tokio::sync::{mpsc, oneshot};

use super::plan::plan;
use super::request::{key_reused, repeat, Idempotency};
use super::{
    Change, ChangePage, Fed, FeedReceiver, HistoryPage, Kept, Loaded, Shared, StoreError,
    StoreOptions, WriteRequest,
};
use crate::schema::SCHEMAS_NAMESPACE;

/// Queued write requests beyond which callers wait for room (backpressure, not failure).
const WRITE_QUEUE: usize = 64 * 1024;

/// A durable home for entries, their history and the change log, written by one writer.
///
/// Contract:
/// - [`LocalBackend::persist`] is called by one writer only, with changes of consecutive
///   revisions, each greater than any persisted before. It applies them all or none, and
///   returns only once they are durable (they survive a crash of the process).
/// - Revisions are one counter for the whole store; the last one survives restarts, so a
///   revision is never reused.
/// - History keeps the last `history_retain` items of every key (all when 0), always the
///   item of the key's current state; the change log keeps at least the most recent
///   `changelog_retain` changes whose history items are kept.
/// - Reads may run concurrently with `persist` from any thread; they block, so async
///   callers run them on a blocking thread.
pub trait LocalBackend: Send + Sync + 'static {
    /// Reads the current state, at start.
    fn load(&self) -> Result<Loaded, StoreError>;
    /// Durably records changes (see the trait's contract).
    fn persist(&self, changes: &[Change]) -> Result<(), StoreError>;
    /// Up to `limit` changes with a revision greater than `after`, oldest first.
    fn changes_after(&self, after: Revision, limit: usize) -> Result<ChangePage, StoreError>;
    /// Up to `limit` history items of a key with a revision below `before`, newest first,
    /// stopping once they hold about `max_bytes` (at least one is returned).
    fn history(
        &self,
        namespace: &str,
        key: &str,
        before: Option<Revision>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<HistoryPage, StoreError>;
    /// The history item of a key at exactly `revision`, if that revision changed the key
    /// and its item is still kept.
    fn history_at(
        &self,
        namespace: &str,
        key: &str,
        revision: Revision,
    ) -> Result<Option<HistoryItem>, StoreError>;
    /// The change a key made at exactly `revision`, if its history item is still kept.
    fn change_at(
        &self,
        namespace: &str,
        key: &str,
        revision: Revision,
    ) -> Result<Option<Change>, StoreError>;
    /// What is kept of the write made with an `Idempotency-Key` (the scoped key), if one
    /// was made within the window. [`LocalBackend::persist`] keeps the key of every change
    /// that has one, in the same transaction.
    fn idempotent(&self, key: &str) -> Result<Option<Kept>, StoreError>;
    /// Bytes the backend holds for entries, history and the change log.
    fn stored_bytes(&self) -> u64;
    /// Checks that the backend answers (readiness).
    fn check(&self) -> Result<(), StoreError>;
}

enum WriterMessage {
    Write(Box<WriteRequest>, oneshot::Sender<Result<Arc<Change>, StoreError>>),
    Shutdown,
}

type Pending = (Box<WriteRequest>, oneshot::Sender<Result<Arc<Change>, StoreError>>);

/// The handle of the local engine.
pub(super) struct LocalWriter {
    backend: Arc<dyn LocalBackend>,
    queue: mpsc::Sender<WriterMessage>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Bytes stored as of the last commit, for the quota.
    stored: Arc<AtomicU64>,
    quota: u64,
}

impl LocalWriter {
    /// Starts the writer thread over `backend`; returns the stream of committed changes.
    pub fn start(
        shared: Arc<Shared>,
        backend: Arc<dyn LocalBackend>,
        options: &StoreOptions,
    ) -> Result<(LocalWriter, FeedReceiver), StoreError> {
        let (queue, requests) = mpsc::channel(WRITE_QUEUE);
        let (feed, feed_rx) = std_mpsc::channel();
        let stored = Arc::new(AtomicU64::new(backend.stored_bytes()));
        let writer = Writer {
            shared,
            backend: backend.clone(),
            feed,
            max_batch: options.max_batch.max(1),
            stored: stored.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("graycast-writer".into())
            .spawn(move || writer.run(requests))
            .map_err(|e| StoreError::Backend(format!("cannot start the writer thread: {e}")))?;
        let handle = LocalWriter {
            backend,
            queue,
            thread: Mutex::new(Some(thread)),
            stored,
            quota: options.quota_bytes,
        };
        Ok((handle, feed_rx))
    }

    /// Queues a write and waits until it is durable (or refused).
    pub async fn write(&self, request: WriteRequest) -> Result<Arc<Change>, StoreError> {
        if !request.mutation.shrinks() {
            // What the write may add: its value in the entry and in its history item.
            let added = 2 * request.mutation.written_bytes() + 512;
            let stored = self.stored.load(Ordering::Acquire);
            if stored.saturating_add(added) > self.quota {
                return Err(StoreError::QuotaExceeded(format!(
                    "the store holds {stored} bytes; this write would go beyond its quota of {} bytes \
                     (deleting keys frees room)",
                    self.quota
                )));
            }
        }
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(WriterMessage::Write(Box::new(request), reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Asks the writer to commit what is queued and stop, and waits for it.
    pub fn shutdown(&self) {
        // A full queue must not make shutdown fail: the blocking send waits for room.
        let _ = self.queue.blocking_send(WriterMessage::Shutdown);
        let thread = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                tracing::error!("the writer thread panicked");
            }
        }
    }

    pub fn backend(&self) -> Arc<dyn LocalBackend> {
        self.backend.clone()
    }

    /// Requests waiting in the queue (for tests).
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }
}

/// What became of a request of a batch.
enum Outcome {
    /// It made the batch's change at this index.
    Made(usize),
    /// It repeats a write made earlier with its `Idempotency-Key`, which made this change.
    Repeated(Arc<Change>),
}

/// The writer thread's state.
struct Writer {
    shared: Arc<Shared>,
    backend: Arc<dyn LocalBackend>,
    feed: std_mpsc::Sender<Fed>,
    max_batch: usize,
    stored: Arc<AtomicU64>,
}

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

    /// Whether a request with this `Idempotency-Key` repeats a write already made (in
    /// this batch or before); a repeat that asks something else is refused.
    fn repeated(
        &self,
        idempotency: &Idempotency,
        keyed: &HashMap<String, usize>,
        changes: &[Change],
    ) -> Result<Option<Outcome>, StoreError> {
        if let Some(index) = keyed.get(&idempotency.key) {
            let first = changes[*index].idempotency.as_ref();
            if first.is_some_and(|first| first.fingerprint != idempotency.fingerprint) {
                return Err(key_reused());
            }
            return Ok(Some(Outcome::Made(*index)));
        }
        let Some(kept) = self.backend.idempotent(&idempotency.key)? else {
            return Ok(None);
        };
        repeat(
            &kept,
            idempotency,
            self.backend.change_at(&kept.namespace, &kept.key, kept.revision)?,
        )
        .map(|change| Some(Outcome::Repeated(change)))
    }

    /// Plans, persists and applies one batch, answers every caller in it, then feeds it
    /// to the hub.
    fn commit(&self, batch: &mut Vec<Pending>) {
        let shared = &*self.shared;
        if let Some(reason) = shared.failure() {
            for (_, reply) in batch.drain(..) {
                let _ = reply.send(Err(StoreError::Backend(reason.clone())));
            }
            return;
        }
        let now = Utc::now().trunc_subsecs(3);
        let base = shared.revision();
        // The state of keys written earlier in this batch, which later requests must see.
        let mut overlay: HashMap<(String, String), Option<Arc<Entry>>> = HashMap::new();
        let mut changes: Vec<Change> = Vec::new();
        let mut outcomes: Vec<Result<Outcome, StoreError>> = Vec::with_capacity(batch.len());
        // The `Idempotency-Key`s of this batch's changes, with their index in `changes`.
        let mut keyed: HashMap<String, usize> = HashMap::new();
        for (request, _) in batch.iter() {
            if let Some(idempotency) = &request.idempotency {
                match self.repeated(idempotency, &keyed, &changes) {
                    Ok(None) => {}
                    Ok(Some(outcome)) => {
                        outcomes.push(Ok(outcome));
                        continue;
                    }
                    Err(err) => {
                        outcomes.push(Err(err));
                        continue;
                    }
                }
            }
            let slot = (request.namespace.clone(), request.key.clone());
            let current = match overlay.get(&slot) {
                Some(state) => state.clone(),
                None => shared.get(&request.namespace, &request.key),
            };
            // The namespace's schemas as of this write: a schema change earlier in the batch
            // counts.
            let schema_slot = (SCHEMAS_NAMESPACE.to_owned(), request.namespace.clone());
            let schema = match overlay.get(&schema_slot) {
                Some(state) => state.clone(),
                None => shared.get(SCHEMAS_NAMESPACE, &request.namespace),
            };
            let schemas = schema.and_then(|entry| shared.schemas.compiled(&entry));
            let revision = base + changes.len() as u64 + 1;
            match plan(request, current.as_deref(), now, schemas.as_deref()) {
                Ok(planned) => {
                    let change = planned.commit(revision);
                    overlay.insert(slot, change.entry.clone());
                    if let Some(idempotency) = &request.idempotency {
                        keyed.insert(idempotency.key.clone(), changes.len());
                    }
                    outcomes.push(Ok(Outcome::Made(changes.len())));
                    changes.push(change);
                }
                Err(err) => outcomes.push(Err(err)),
            }
        }
        let rejected = outcomes.iter().filter(|o| o.is_err()).count() as u64;
        shared.metrics.record_rejections(rejected);

        let committed: Vec<Arc<Change>> = if changes.is_empty() {
            Vec::new()
        } else if let Err(err) = self.backend.persist(&changes) {
            // Whether the commit reached the disk is unknown, so the writer refuses further
            // writes rather than risk reusing a revision. A restart reloads the truth.
            tracing::error!(error = %err, writes = changes.len(), "commit failed; refusing writes");
            shared.fail(format!("a commit failed ({err}); restart the server"), true);
            for (outcome, (_, reply)) in outcomes.into_iter().zip(batch.drain(..)) {
                let _ = reply.send(match outcome {
                    Ok(Outcome::Repeated(change)) => Ok(change),
                    Ok(Outcome::Made(_)) => Err(err.clone()),
                    Err(refused) => Err(refused),
                });
            }
            return;
        } else {
            let committed: Vec<Arc<Change>> = changes.into_iter().map(Arc::new).collect();
            shared.apply(&committed);
            shared.metrics.record_commit(committed.len());
            self.stored.store(self.backend.stored_bytes(), Ordering::Release);
            committed
        };
        let committed_at = Instant::now();
        for (outcome, (_, reply)) in outcomes.into_iter().zip(batch.drain(..)) {
            let _ = reply.send(outcome.map(|outcome| match outcome {
                Outcome::Made(index) => committed[index].clone(),
                Outcome::Repeated(change) => change,
            }));
        }
        if !committed.is_empty() {
            // The hub may be gone during shutdown; the changes are durable regardless.
            let _ = self.feed.send(Fed::Changes(committed, committed_at));
        }
    }
}
#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::sync::{Condvar, Mutex};

    use serde_json::{json, Value};

    use super::super::{MemoryBackend, Mutation, Precondition, Store};
    use super::*;

    /// The revisions the feed has carried so far.
    fn fed_revisions(feed: &FeedReceiver) -> Vec<Revision> {
        feed.try_iter()
            .flat_map(|fed| match fed {
                Fed::Changes(batch, _) => batch,
                Fed::Reloaded(_) => Vec::new(),
            })
            .map(|c| c.revision)
            .collect()
    }
    use crate::metrics::Metrics;

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
                inner: MemoryBackend::new(&StoreOptions::memory()),
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

    impl LocalBackend for FaultyBackend {
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
        fn change_at(
            &self,
            ns: &str,
            key: &str,
            revision: Revision,
        ) -> Result<Option<Change>, StoreError> {
            self.inner.change_at(ns, key, revision)
        }
        fn idempotent(&self, key: &str) -> Result<Option<Kept>, StoreError> {
            self.inner.idempotent(key)
        }
        fn stored_bytes(&self) -> u64 {
            self.inner.stored_bytes()
        }
        fn check(&self) -> Result<(), StoreError> {
            Ok(())
        }
    }

    fn put(key: &str, value: Value, precondition: Precondition) -> WriteRequest {
        let mut request = WriteRequest::new("ns", key, Mutation::Put { value }, "test");
        request.precondition = precondition;
        request
    }

    fn open(backend: Arc<FaultyBackend>) -> (Arc<Store>, FeedReceiver) {
        let (store, feed) = Store::with_local_backend(
            backend,
            &StoreOptions::memory(),
            Arc::new(Metrics::default()),
        )
        .expect("opens");
        (Arc::new(store), feed)
    }

    /// Waits until `n` requests wait in the writer's queue.
    async fn queued(store: &Store, n: usize) {
        let super::super::Engine::Local(writer) = &store.engine else {
            unreachable!("a local store")
        };
        wait_for(|| writer.queued() >= n).await;
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
        assert!(store.check().await.is_err(), "readiness reports the failure");
        assert_eq!(store.revision(), 1);
        assert_eq!(store.get("ns", "k").map(|e| e.value.clone()), Some(json!(1)));

        // Even once the disk recovers, the writer refuses: whether the failed commit
        // reached the disk is unknown, and a revision must never be reused.
        backend.fail.store(false, Ordering::SeqCst);
        assert!(store.write(put("k", json!(3), Precondition::None)).await.is_err());
        assert_eq!(backend.commits.load(Ordering::SeqCst), 1);
        // Only the committed change was fed to subscribers.
        let fed = fed_revisions(&feed);
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
        let fed = fed_revisions(&feed);
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
