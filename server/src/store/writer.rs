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
use crate::policy::{POLICIES_KEY, POLICIES_NAMESPACE};
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
    Write(Pending),
    Shutdown,
}

/// What waits for a commit: one write, or a group of writes made all or none.
enum Pending {
    One(Box<WriteRequest>, oneshot::Sender<Result<Arc<Change>, StoreError>>),
    Group(Vec<WriteRequest>, oneshot::Sender<Result<Vec<Arc<Change>>, StoreError>>),
}

impl Pending {
    /// Answers with a failure.
    fn fail(self, err: StoreError) {
        match self {
            Pending::One(_, reply) => drop(reply.send(Err(err))),
            Pending::Group(_, reply) => drop(reply.send(Err(err))),
        }
    }
}

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
                     (history and the change log count too: a deleted key's values stay until \
                     --history-retain and --changelog-retain drop them; raise --quota-bytes or \
                     lower those)",
                    self.quota
                )));
            }
        }
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(WriterMessage::Write(Pending::One(Box::new(request), reply)))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues writes that are made together or not at all (one commit), and waits.
    pub async fn write_group(
        &self,
        requests: Vec<WriteRequest>,
    ) -> Result<Vec<Arc<Change>>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(WriterMessage::Write(Pending::Group(requests, reply)))
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
    /// A group made the batch's changes in this range.
    Group(std::ops::Range<usize>),
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
                Some(WriterMessage::Write(pending)) => batch.push(pending),
                Some(WriterMessage::Shutdown) | None => stopping = true,
            }
            // Everything that queued up while the last transaction committed joins this one.
            while batch.len() < self.max_batch {
                match queue.try_recv() {
                    Ok(WriterMessage::Write(pending)) => batch.push(pending),
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
            if let WriterMessage::Write(pending) = message {
                batch.push(pending);
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
            for pending in batch.drain(..) {
                pending.fail(StoreError::Backend(reason.clone()));
            }
            return;
        }
        let now = Utc::now().trunc_subsecs(3);
        let base = shared.revision();
        // The state of keys written earlier in this batch, which later requests must see.
        let mut overlay: Overlay = HashMap::new();
        let mut changes: Vec<Change> = Vec::new();
        let mut outcomes: Vec<Result<Outcome, StoreError>> = Vec::with_capacity(batch.len());
        // The `Idempotency-Key`s of this batch's changes, with their index in `changes`.
        let mut keyed: HashMap<String, usize> = HashMap::new();
        for pending in batch.iter() {
            let (requests, one) = match pending {
                Pending::One(request, _) => (std::slice::from_ref(request.as_ref()), true),
                Pending::Group(requests, _) => (requests.as_slice(), false),
            };
            let idempotency = requests.first().and_then(|r| r.idempotency.as_ref()).filter(|_| one);
            if let Some(idempotency) = idempotency {
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
            // A group's writes see each other, and join the batch only if all are planned.
            let mut staged: Overlay = HashMap::new();
            let mut planned: Vec<Change> = Vec::new();
            let mut refused = None;
            for request in requests {
                let revision = base + (changes.len() + planned.len()) as u64 + 1;
                match self.plan_one(request, &overlay, &staged, now) {
                    Ok(plan) => {
                        let change = plan.commit(revision);
                        let slot = (request.namespace.clone(), request.key.clone());
                        staged.insert(slot, change.entry.clone());
                        planned.push(change);
                    }
                    Err(err) => {
                        refused = Some(err);
                        break;
                    }
                }
            }
            if let Some(err) = refused {
                outcomes.push(Err(err));
                continue;
            }
            overlay.extend(staged);
            let first = changes.len();
            if let Some(idempotency) = idempotency {
                keyed.insert(idempotency.key.clone(), first);
            }
            changes.extend(planned);
            outcomes.push(Ok(if one {
                Outcome::Made(first)
            } else {
                Outcome::Group(first..changes.len())
            }));
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
            for (outcome, pending) in outcomes.into_iter().zip(batch.drain(..)) {
                match (outcome, pending) {
                    (Ok(Outcome::Repeated(change)), Pending::One(_, reply)) => {
                        let _ = reply.send(Ok(change));
                    }
                    (Ok(_), pending) => pending.fail(err.clone()),
                    (Err(refused), pending) => pending.fail(refused),
                }
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
        for (outcome, pending) in outcomes.into_iter().zip(batch.drain(..)) {
            match (outcome, pending) {
                (Ok(Outcome::Made(index)), Pending::One(_, reply)) => {
                    let _ = reply.send(Ok(committed[index].clone()));
                }
                (Ok(Outcome::Repeated(change)), Pending::One(_, reply)) => {
                    let _ = reply.send(Ok(change));
                }
                (Ok(Outcome::Group(range)), Pending::Group(_, reply)) => {
                    let _ = reply.send(Ok(committed[range].to_vec()));
                }
                (Ok(_), pending) => pending.fail(StoreError::Backend("mismatched outcome".into())),
                (Err(refused), pending) => pending.fail(refused),
            }
        }
        if !committed.is_empty() {
            // The hub may be gone during shutdown; the changes are durable regardless.
            let _ = self.feed.send(Fed::Changes(committed, committed_at));
        }
    }

    /// Plans one write against the state as the batch has it: the group's own writes
    /// (`staged`), then the batch's, then the cache.
    fn plan_one(
        &self,
        request: &WriteRequest,
        overlay: &Overlay,
        staged: &Overlay,
        now: chrono::DateTime<Utc>,
    ) -> Result<super::plan::Planned, StoreError> {
        let shared = &*self.shared;
        let state = |namespace: &str, key: &str| {
            // A lone write (the common case) has nothing staged: no slot to build.
            if staged.is_empty() && overlay.is_empty() {
                return shared.get(namespace, key);
            }
            let slot = (namespace.to_owned(), key.to_owned());
            match staged.get(&slot).or_else(|| overlay.get(&slot)) {
                Some(state) => state.clone(),
                None => shared.get(namespace, key),
            }
        };
        let current = state(&request.namespace, &request.key);
        // The namespace's schemas and the policies as of this write: a change of them
        // earlier in the batch counts.
        let schemas = state(SCHEMAS_NAMESPACE, &request.namespace)
            .and_then(|entry| shared.schemas.compiled(&entry));
        let policies = shared.policies(Some(state(POLICIES_NAMESPACE, POLICIES_KEY)));
        plan(request, current.as_deref(), now, schemas.as_deref(), policies.as_deref())
    }
}

/// Entries as a batch (or a group) has written them: `None` for a delete.
type Overlay = HashMap<(String, String), Option<Arc<Entry>>>;

#[cfg(test)]
mod tests;
