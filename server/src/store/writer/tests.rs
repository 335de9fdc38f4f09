//! Tests of the local writer: commits that fail, batches, shutdown.

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
    let (store, feed) =
        Store::with_local_backend(backend, &StoreOptions::memory(), Arc::new(Metrics::default()))
            .expect("opens");
    (Arc::new(store), feed)
}

/// Waits until `n` requests wait in the writer's queue.
async fn queued(store: &Store, n: usize) {
    let super::super::Engine::Local(writer) = &store.engine else { unreachable!("a local store") };
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
