//! Fan-out of committed changes to subscribers, and the registry of connected clients.
//!
//! The hub is fed by the store's stream of committed changes (not by the handler that
//! made a write), on a thread of its own. Each change is serialized and framed **once**
//! into a shared buffer; every subscriber of the change's namespace gets it appended to
//! its connection's [`Outbound`] queue, which never waits: a subscriber whose queue is
//! over its byte budget is marked lagged and its session resyncs it with a snapshot.
//!
//! The hub also keeps the most recent changes' frames (bounded in bytes), so that clients
//! resuming after a disconnect are replayed from memory with the frames already built,
//! and the last snapshot of each subscription, so that clients subscribing at the same
//! revision share one.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;

use graycast_protocol::ws::ALL_NAMESPACES;
use graycast_protocol::Revision;

use crate::auth::Principal;
use crate::metrics::Metrics;
use crate::push::clients::Clients;
use crate::push::outbound::Outbound;
use crate::push::selection::{readable, Selection};
use crate::push::wire::{pushed, Pushed, Snapshot};
use crate::store::{Change, Fed, FeedReceiver};

/// Most bytes of recent change frames kept for replays from memory.
const RECENT_BYTES: usize = 64 * 1024 * 1024;
/// Most recent changes kept for replays from memory (never more than the change log).
const RECENT_CHANGES: usize = 100_000;
/// How far behind its commit a change may be published and still be written straight into
/// idle sockets (see `Hub::publish`).
const DIRECT_WHILE_BEHIND_BY_LESS_THAN: std::time::Duration = std::time::Duration::from_millis(2);
/// Most subscriptions whose last snapshot is kept for sharing.
const SNAPSHOT_CACHE: usize = 64;

/// The frames of the most recent changes: every change after `floor`, in order.
struct Recent {
    changes: VecDeque<Arc<Pushed>>,
    bytes: usize,
    /// Every change after this revision is in `changes`.
    floor: Revision,
}

/// A subscriber's queue, and for a limited `*`, whose reading limits what it gets.
struct Member {
    outbound: Arc<Outbound>,
    reader: Option<Arc<Principal>>,
}

/// The hub: subscribers by namespace, connected clients, and what has been published.
pub struct Hub {
    by_namespace: RwLock<HashMap<String, HashMap<u64, Member>>>,
    /// Connections and the clients `/v1/clients` lists.
    pub clients: Arc<Clients>,
    /// Every change up to this revision is queued to each subscriber it concerns.
    published: AtomicU64,
    next_id: AtomicU64,
    recent: Mutex<Recent>,
    /// Most changes `recent` keeps.
    recent_limit: usize,
    /// The last snapshot frame of each subscription (sorted namespaces), with its revision.
    snapshots: Mutex<HashMap<Vec<String>, (Revision, Snapshot)>>,
    metrics: Arc<Metrics>,
}

impl Hub {
    /// A hub that has published everything up to `revision` and keeps at most `retain`
    /// recent changes in memory for replays.
    pub fn new(revision: Revision, retain: usize, metrics: Arc<Metrics>) -> Arc<Hub> {
        Arc::new(Hub {
            by_namespace: RwLock::new(HashMap::new()),
            clients: Clients::new(metrics.clone()),
            published: AtomicU64::new(revision),
            next_id: AtomicU64::new(1),
            recent: Mutex::new(Recent { changes: VecDeque::new(), bytes: 0, floor: revision }),
            recent_limit: retain.min(RECENT_CHANGES),
            snapshots: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// Starts the thread that pushes every committed change; it ends with the feed.
    pub fn spawn_feed(self: &Arc<Self>, feed: FeedReceiver) -> std::io::Result<JoinHandle<()>> {
        let hub = self.clone();
        std::thread::Builder::new().name("graycast-hub".into()).spawn(move || {
            for fed in feed {
                match fed {
                    Fed::Changes(batch, committed_at) => {
                        for change in &batch {
                            hub.publish(change, committed_at);
                        }
                    }
                    Fed::Reloaded(revision) => hub.resync_everyone(revision),
                }
            }
        })
    }

    fn publish(&self, change: &Change, committed_at: Instant) {
        // Caught up, the hub writes each change straight into idle sockets; behind (changes
        // arrive faster than it writes them), it queues them, and each connection's task
        // writes what piled up in one go, on every core.
        let direct = committed_at.elapsed() < DIRECT_WHILE_BEHIND_BY_LESS_THAN;
        let pushed = pushed(change, committed_at);
        // Recorded before the fan-out: a session that registers after this change went out
        // finds it here.
        {
            let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
            recent.bytes += pushed.frame.len();
            recent.changes.push_back(pushed.clone());
            while recent.bytes > RECENT_BYTES || recent.changes.len() > self.recent_limit {
                let Some(old) = recent.changes.pop_front() else { break };
                recent.bytes -= old.frame.len();
                recent.floor = old.revision;
            }
        }
        let mut sent = 0;
        {
            let by_namespace = self.by_namespace.read().unwrap_or_else(PoisonError::into_inner);
            let named = by_namespace.get(&change.namespace);
            let everything = by_namespace.get(ALL_NAMESPACES);
            for subscribers in named.into_iter().chain(everything) {
                for member in subscribers.values() {
                    if let Some(reader) = &member.reader {
                        if !readable(reader, &change.namespace, &change.key) {
                            continue;
                        }
                    }
                    if let Some(committed_at) = member.outbound.push_change(&pushed, direct) {
                        self.metrics.record_push(committed_at.elapsed());
                    }
                    sent += 1;
                }
            }
        }
        self.metrics.record_pushed(sent);
        self.published.store(change.revision, Ordering::Release);
    }

    /// After the store reloaded its state as of `revision`: what was published before no
    /// longer chains up with what follows, so every subscriber gets a fresh snapshot and
    /// replays start from there.
    fn resync_everyone(&self, revision: Revision) {
        {
            let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
            recent.changes.clear();
            recent.bytes = 0;
            recent.floor = revision;
        }
        self.snapshots.lock().unwrap_or_else(PoisonError::into_inner).clear();
        self.published.fetch_max(revision, Ordering::AcqRel);
        let by_namespace = self.by_namespace.read().unwrap_or_else(PoisonError::into_inner);
        for subscribers in by_namespace.values() {
            for member in subscribers.values() {
                member.outbound.mark_lagged();
            }
        }
    }

    /// The revision up to which every change is queued to every subscriber it concerns.
    pub fn published(&self) -> Revision {
        self.published.load(Ordering::Acquire)
    }

    /// The recent changes after `since` that `selection` covers, and the revision up to
    /// which they cover everything; `None` when memory no longer reaches back to `since`.
    pub fn recent_after(
        &self,
        since: Revision,
        selection: &Selection,
    ) -> Option<(Vec<Arc<Pushed>>, Revision)> {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if since < recent.floor {
            return None;
        }
        let start = recent.changes.partition_point(|p| p.revision <= since);
        let changes = recent
            .changes
            .iter()
            .skip(start)
            .filter(|p| selection.covers(&p.namespace, &p.key))
            .cloned()
            .collect();
        let top = recent.changes.back().map_or(recent.floor, |p| p.revision).max(since);
        Some((changes, top))
    }

    /// A shared snapshot frame of a selection at `revision`, if one was built.
    pub fn cached_snapshot(&self, selection: &Selection, revision: Revision) -> Option<Snapshot> {
        let cache = self.snapshots.lock().unwrap_or_else(PoisonError::into_inner);
        let key = selection.cache_key();
        cache.get(&key).filter(|(at, _)| *at == revision).map(|(_, frame)| frame.clone())
    }

    /// Keeps a snapshot frame for the next subscribers of the same selection.
    pub fn cache_snapshot(&self, selection: &Selection, revision: Revision, frame: Snapshot) {
        let mut cache = self.snapshots.lock().unwrap_or_else(PoisonError::into_inner);
        // Older snapshots are of no use to anyone: a new subscriber needs the latest.
        cache.retain(|_, (at, _)| *at >= revision);
        if cache.len() >= SNAPSHOT_CACHE {
            cache.clear();
        }
        cache.insert(selection.cache_key(), (revision, frame));
    }

    /// Registers a subscriber of a selection: changes published from now on are appended
    /// to `outbound` (which waits with them until the session goes live).
    pub fn subscribe(
        self: &Arc<Self>,
        selection: &Selection,
        outbound: Arc<Outbound>,
    ) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let names = selection.names().to_vec();
        {
            let mut by_namespace =
                self.by_namespace.write().unwrap_or_else(PoisonError::into_inner);
            for name in &names {
                let member =
                    Member { outbound: outbound.clone(), reader: selection.reader().cloned() };
                by_namespace.entry(name.clone()).or_default().insert(id, member);
            }
        }
        Subscription { hub: self.clone(), id, namespaces: names }
    }

    fn unsubscribe(&self, id: u64, namespaces: &[String]) {
        let mut by_namespace = self.by_namespace.write().unwrap_or_else(PoisonError::into_inner);
        for name in namespaces {
            if let Some(subscribers) = by_namespace.get_mut(name) {
                subscribers.remove(&id);
                if subscribers.is_empty() {
                    by_namespace.remove(name);
                }
            }
        }
    }
}

/// A registered subscriber: its outbound queue receives the changes of its namespaces
/// until this is dropped.
pub struct Subscription {
    hub: Arc<Hub>,
    id: u64,
    namespaces: Vec<String>,
}

impl Subscription {
    /// The namespaces, sorted and without repeats.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.id, &self.namespaces);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::wire::change_message;
    use chrono::Utc;
    use graycast_protocol::{Entry, Op, ServerMessage};

    fn change(revision: Revision, namespace: &str) -> Change {
        Change {
            revision,
            op: Op::Put,
            namespace: namespace.into(),
            key: "k".into(),
            entry: Some(Arc::new(Entry {
                namespace: namespace.into(),
                key: "k".into(),
                value: serde_json::json!({"a": [1, 2]}),
                revision,
                created_revision: 1,
                version: revision,
                updated_at: Utc::now(),
                updated_by: "t".into(),
                gray: None,
            })),
            at: Utc::now(),
            by: "t".into(),
            note: None,
            comment: None,
            remote: None,
            idempotency: None,
        }
    }

    #[test]
    fn change_message_is_a_change_message() {
        let c = change(5, "ns");
        let parsed: ServerMessage = serde_json::from_slice(&change_message(&c)).expect("parses");
        assert_eq!(
            parsed,
            ServerMessage::Change {
                revision: 5,
                op: Op::Put,
                namespace: "ns".into(),
                key: "k".into(),
                entry: c.entry.as_deref().cloned().map(Box::new),
                comment: None,
                note: None,
            }
        );
    }

    #[test]
    fn fan_out_reaches_only_the_namespace_and_recent_changes_replay_from_memory() {
        let hub = Hub::new(0, 1000, Arc::new(Metrics::default()));
        let a = Outbound::new(1 << 20, crate::push::wire::Transport::WebSocket);
        let b = Outbound::new(1 << 20, crate::push::wire::Transport::WebSocket);
        a.go_live(0);
        b.go_live(0);
        let only = |name: &str| Selection::new(&[name.to_owned()], None);
        let _sa = hub.subscribe(&only("a"), a.clone());
        let _sb = hub.subscribe(&only("b"), b.clone());
        hub.publish(&change(1, "a"), Instant::now());
        hub.publish(&change(2, "b"), Instant::now());
        hub.publish(&change(3, "a"), Instant::now());
        assert_eq!((a.sent(), b.sent()), (3, 2));
        assert_eq!(hub.published(), 3);
        let (replay, top) = hub.recent_after(1, &only("a")).expect("in memory");
        assert_eq!(replay.iter().map(|p| p.revision).collect::<Vec<_>>(), [3]);
        assert_eq!(top, 3);
        let (all, _) = hub.recent_after(0, &only("*")).expect("in memory");
        assert_eq!(all.len(), 3);
        drop(_sa);
        assert!(hub.by_namespace.read().expect("lock").get("a").is_none());
    }
}
