//! The live cache: every current entry by namespace and key, a copy of the durable state
//! rebuilt from it at start and updated only with committed changes, with the store's
//! revision and failure state. It serves every read of current state without I/O.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use dashmap::DashMap;
use graycast_protocol::{Entry, Op, Revision};
use tokio::sync::Notify;

use super::{Change, Loaded};
use crate::metrics::Metrics;

/// The keys of one namespace, by name.
pub(super) type Namespace = BTreeMap<String, Arc<Entry>>;

/// State shared by the store handle and its engine.
pub(super) struct Shared {
    pub(super) cache: DashMap<String, Namespace>,
    /// Taken for writing while an engine applies changes to the cache, and for reading
    /// while a consistent snapshot is copied out. Both are short and synchronous.
    pub(super) gate: RwLock<()>,
    /// The revision of the last change applied to the cache.
    pub(super) revision: AtomicU64,
    /// Set when the store cannot take writes (a failed local commit, whose outcome on disk
    /// is unknown, or an etcd that cannot be reached), with the reason.
    pub(super) failed: RwLock<Option<String>>,
    /// Whether a failure is permanent (a failed local commit: only a restart recovers).
    pub(super) failed_for_good: AtomicBool,
    /// Signalled after a change that started, changed or ended a gray release.
    pub(super) gray_changed: Notify,
    /// Signalled after every application of changes to the cache.
    pub(super) applied: Notify,
    /// Changes this node answered before it applied them (its watch lagged), by key:
    /// reads of their keys serve them until the cache has caught up (read your writes).
    ahead: std::sync::Mutex<HashMap<(String, String), Arc<Change>>>,
    /// Whether `ahead` holds any, so that reads skip its lock.
    any_ahead: AtomicBool,
    /// The revision of the last change applied to each namespace (deletes included).
    pub(super) changed: DashMap<String, Revision>,
    /// Whether the cache holds the store's state: false while a node that started with
    /// etcd unreachable has not loaded it yet.
    pub(super) loaded: AtomicBool,
    pub(super) metrics: Arc<Metrics>,
    /// Each typed namespace's schemas, compiled once per revision.
    pub(super) schemas: crate::schema::Schemas,
    /// The policies, read once per revision.
    policies: RwLock<Option<(Revision, Arc<crate::policy::Policies>)>>,
}

impl Shared {
    pub(super) fn new(loaded: Loaded, metrics: Arc<Metrics>) -> Shared {
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
            ahead: std::sync::Mutex::new(HashMap::new()),
            any_ahead: AtomicBool::new(false),
            loaded: AtomicBool::new(true),
            changed: DashMap::new(),
            metrics,
            schemas: crate::schema::Schemas::default(),
            policies: RwLock::new(None),
        }
    }

    /// The policies as this node knows them (the overlay's entry first, when given: a write
    /// earlier in the same batch).
    pub(super) fn policies(
        &self,
        overlay: Option<Option<Arc<Entry>>>,
    ) -> Option<Arc<crate::policy::Policies>> {
        use crate::policy::{Policies, POLICIES_KEY, POLICIES_NAMESPACE};
        let entry = overlay.unwrap_or_else(|| self.get(POLICIES_NAMESPACE, POLICIES_KEY))?;
        let held = self.policies.read().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some((_, policies)) = held.filter(|(r, _)| *r == entry.revision) {
            return Some(policies);
        }
        let (revision, policies) = Policies::of(Some(&entry))?;
        let policies = Arc::new(policies);
        *self.policies.write().unwrap_or_else(PoisonError::into_inner) =
            Some((revision, policies.clone()));
        Some(policies)
    }

    pub(super) fn get(&self, namespace: &str, key: &str) -> Option<Arc<Entry>> {
        if self.any_ahead.load(Ordering::Acquire) {
            let ahead = self.ahead.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(change) = ahead.get(&(namespace.to_owned(), key.to_owned())) {
                if self.revision() < change.revision {
                    return change.entry.clone();
                }
            }
        }
        self.cache.get(namespace).and_then(|ns| ns.get(key).cloned())
    }

    /// Waits until the cache has applied a change this node made, at most `timeout`; if
    /// it has not by then, reads of its key serve the change until it has. Either way, a
    /// read that follows returns the change or a later state of its key.
    #[cfg(feature = "etcd")]
    pub(super) async fn settle(&self, change: &Arc<Change>, timeout: Duration) {
        if self.wait_applied(change.revision, timeout).await {
            return;
        }
        let mut ahead = self.ahead.lock().unwrap_or_else(PoisonError::into_inner);
        if self.revision() >= change.revision {
            return;
        }
        let slot = (change.namespace.clone(), change.key.clone());
        let newer = ahead.get(&slot).is_some_and(|c| c.revision > change.revision);
        if !newer {
            ahead.insert(slot, change.clone());
        }
        self.any_ahead.store(true, Ordering::Release);
        tracing::warn!(
            revision = change.revision,
            applied = self.revision(),
            "this node has not applied its own write yet; its key's reads serve it meanwhile"
        );
    }

    /// Forgets the changes of `ahead` the cache has caught up with.
    fn caught_up(&self) {
        if !self.any_ahead.load(Ordering::Acquire) {
            return;
        }
        let mut ahead = self.ahead.lock().unwrap_or_else(PoisonError::into_inner);
        let revision = self.revision();
        ahead.retain(|_, change| change.revision > revision);
        self.any_ahead.store(!ahead.is_empty(), Ordering::Release);
    }

    pub(super) fn revision(&self) -> Revision {
        self.revision.load(Ordering::Acquire)
    }

    /// Applies committed changes, in revision order, to the cache.
    pub(super) fn apply(&self, committed: &[Arc<Change>]) {
        {
            let _gate = self.gate.write().unwrap_or_else(PoisonError::into_inner);
            for change in committed {
                match self.changed.get_mut(&change.namespace) {
                    Some(mut changed) => *changed = change.revision,
                    None => {
                        self.changed.insert(change.namespace.clone(), change.revision);
                    }
                }
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
        self.caught_up();
        if committed.iter().any(|c| matches!(c.op, Op::Gray | Op::Promote | Op::Abort | Op::Delete))
        {
            self.gray_changed.notify_one();
        }
        self.applied.notify_waiters();
    }

    /// Replaces the whole cache with a fresh load (after an etcd watch lost its place).
    #[cfg(feature = "etcd")]
    pub(super) fn replace(&self, loaded: Loaded) {
        let _gate = self.gate.write().unwrap_or_else(PoisonError::into_inner);
        self.cache.clear();
        for entry in loaded.entries {
            self.cache
                .entry(entry.namespace.clone())
                .or_default()
                .insert(entry.key.clone(), Arc::new(entry));
        }
        self.revision.store(loaded.revision, Ordering::Release);
        // What changed before the reload is not known: every namespace may have.
        for mut changed in self.changed.iter_mut() {
            *changed = loaded.revision;
        }
        for ns in self.cache.iter() {
            self.changed.insert(ns.key().clone(), loaded.revision);
        }
        self.loaded.store(true, Ordering::Release);
        drop(_gate);
        self.caught_up();
        self.gray_changed.notify_one();
        self.applied.notify_waiters();
    }

    pub(super) fn fail(&self, reason: String, for_good: bool) {
        *self.failed.write().unwrap_or_else(PoisonError::into_inner) = Some(reason);
        if for_good {
            self.failed_for_good.store(true, Ordering::Release);
        }
    }

    #[cfg(feature = "etcd")]
    pub(super) fn recover(&self) {
        if !self.failed_for_good.load(Ordering::Acquire) {
            *self.failed.write().unwrap_or_else(PoisonError::into_inner) = None;
        }
    }

    /// Waits until the cache has applied `revision`, at most `timeout`.
    pub(super) async fn wait_applied(&self, revision: Revision, timeout: Duration) -> bool {
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

    pub(super) fn failure(&self) -> Option<String> {
        self.failed.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}
