//! Fan-out of committed changes to subscribers, and the registry of connected clients.
//!
//! The hub is fed by the store's stream of committed changes (not by the handler that
//! made a write), on a thread of its own. Each change is serialized **once** into a
//! shared frame; every subscriber of the change's namespace gets a pointer to it in its
//! bounded queue. A queue that is full is never waited on: its subscriber is marked
//! lagged, gets nothing more from the hub, and its session resyncs it with a snapshot.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::thread::JoinHandle;

use bytestring::ByteString;
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use graycast_protocol::rest::ClientSummary;
use graycast_protocol::ws::ALL_NAMESPACES;
use graycast_protocol::{Entry, Op, Revision};
use serde::Serialize;
use tokio::sync::{mpsc, Notify};

use crate::metrics::Metrics;
use crate::store::{Change, FeedReceiver};

/// A serialized message ready to send, shared by every subscriber it goes to.
#[derive(Debug)]
pub struct Pushed {
    pub revision: Revision,
    pub text: ByteString,
}

/// The wire form of a `change` message, borrowing the change instead of copying it.
#[derive(Serialize)]
struct ChangeFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    revision: Revision,
    op: Op,
    namespace: &'a str,
    key: &'a str,
    entry: Option<&'a Entry>,
}

/// Serializes a change as the `change` message of the push protocol.
pub fn change_frame(change: &Change) -> ByteString {
    let frame = ChangeFrame {
        kind: "change",
        revision: change.revision,
        op: change.op,
        namespace: &change.namespace,
        key: &change.key,
        entry: change.entry.as_deref(),
    };
    // Serializing plain data with string keys cannot fail.
    ByteString::from(serde_json::to_string(&frame).unwrap_or_default())
}

/// One subscriber's end of the fan-out.
struct Slot {
    tx: mpsc::Sender<Arc<Pushed>>,
    lagged: AtomicBool,
    /// Wakes the session when it is marked lagged, since no message will come to wake it.
    lag_signal: Notify,
}

/// The hub: subscribers by namespace, connected clients, and what has been published.
pub struct Hub {
    by_namespace: RwLock<HashMap<String, HashMap<u64, Arc<Slot>>>>,
    clients: DashMap<u64, Arc<ClientState>>,
    /// Every change up to this revision is in the queue of each subscriber it concerns.
    published: AtomicU64,
    next_id: AtomicU64,
    connections: AtomicUsize,
    queue: usize,
    metrics: Arc<Metrics>,
}

impl Hub {
    /// A hub whose subscribers buffer up to `queue` messages each.
    pub fn new(revision: Revision, queue: usize, metrics: Arc<Metrics>) -> Arc<Hub> {
        Arc::new(Hub {
            by_namespace: RwLock::new(HashMap::new()),
            clients: DashMap::new(),
            published: AtomicU64::new(revision),
            next_id: AtomicU64::new(1),
            connections: AtomicUsize::new(0),
            queue: queue.max(1),
            metrics,
        })
    }

    /// Starts the thread that pushes every committed change; it ends with the feed.
    pub fn spawn_feed(self: &Arc<Self>, feed: FeedReceiver) -> std::io::Result<JoinHandle<()>> {
        let hub = self.clone();
        std::thread::Builder::new().name("graycast-hub".into()).spawn(move || {
            for batch in feed {
                for change in &batch {
                    hub.publish(change);
                }
            }
        })
    }

    fn publish(&self, change: &Change) {
        let pushed = Arc::new(Pushed { revision: change.revision, text: change_frame(change) });
        let mut sent = 0;
        {
            let by_namespace = self.by_namespace.read().unwrap_or_else(PoisonError::into_inner);
            let named = by_namespace.get(&change.namespace);
            let everything = by_namespace.get(ALL_NAMESPACES);
            for slots in named.into_iter().chain(everything) {
                for slot in slots.values() {
                    if slot.lagged.load(Ordering::Relaxed) {
                        continue;
                    }
                    match slot.tx.try_send(pushed.clone()) {
                        Ok(()) => sent += 1,
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            slot.lagged.store(true, Ordering::Release);
                            slot.lag_signal.notify_one();
                        }
                        // The session is ending; its subscription is about to be dropped.
                        Err(mpsc::error::TrySendError::Closed(_)) => {}
                    }
                }
            }
        }
        self.metrics.pushed_messages.fetch_add(sent, Ordering::Relaxed);
        self.published.store(change.revision, Ordering::Release);
    }

    /// The revision up to which every change is queued to every subscriber it concerns.
    pub fn published(&self) -> Revision {
        self.published.load(Ordering::Acquire)
    }

    /// Registers a subscriber of some namespaces. Changes published from now on reach it.
    pub fn subscribe(self: &Arc<Self>, namespaces: &[String]) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.queue);
        let slot = Arc::new(Slot { tx, lagged: AtomicBool::new(false), lag_signal: Notify::new() });
        let mut names = namespaces.to_vec();
        names.sort();
        names.dedup();
        {
            let mut by_namespace =
                self.by_namespace.write().unwrap_or_else(PoisonError::into_inner);
            for name in &names {
                by_namespace.entry(name.clone()).or_default().insert(id, slot.clone());
            }
        }
        Subscription { hub: self.clone(), id, namespaces: names, slot, rx }
    }

    fn unsubscribe(&self, id: u64, namespaces: &[String]) {
        let mut by_namespace = self.by_namespace.write().unwrap_or_else(PoisonError::into_inner);
        for name in namespaces {
            if let Some(slots) = by_namespace.get_mut(name) {
                slots.remove(&id);
                if slots.is_empty() {
                    by_namespace.remove(name);
                }
            }
        }
    }

    /// Counts a new WebSocket connection unless `limit` are open already.
    pub fn try_connect(self: &Arc<Self>, limit: usize) -> Option<ConnectionPermit> {
        let admitted = self
            .connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1))
            .is_ok();
        if admitted {
            Some(ConnectionPermit { hub: self.clone() })
        } else {
            self.metrics.refused_connections.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    /// Open WebSocket connections.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Lists a client in `/v1/clients` until the returned guard is dropped.
    pub fn register_client(self: &Arc<Self>, client: ClientState) -> ClientRegistration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let client = Arc::new(client);
        self.clients.insert(id, client.clone());
        ClientRegistration { hub: self.clone(), id, client }
    }

    /// The connected clients, oldest connection first.
    pub fn clients(&self) -> Vec<ClientSummary> {
        let mut list: Vec<(u64, ClientSummary)> =
            self.clients.iter().map(|c| (*c.key(), c.value().summary())).collect();
        list.sort_by_key(|(id, _)| *id);
        list.into_iter().map(|(_, summary)| summary).collect()
    }
}

/// A registered subscriber: receives the changes of its namespaces until dropped.
pub struct Subscription {
    hub: Arc<Hub>,
    id: u64,
    namespaces: Vec<String>,
    slot: Arc<Slot>,
    rx: mpsc::Receiver<Arc<Pushed>>,
}

/// What a subscription yields next.
pub enum Next {
    /// A change to send.
    Pushed(Arc<Pushed>),
    /// The hub gave up on this subscriber: it needs a fresh snapshot.
    Lagged,
}

impl Subscription {
    /// The next queued change, or word that the subscriber lagged.
    pub async fn next(&mut self) -> Next {
        if self.lagged() {
            return Next::Lagged;
        }
        tokio::select! {
            pushed = self.rx.recv() => match pushed {
                Some(pushed) => Next::Pushed(pushed),
                // The subscription owns a sender, so the channel never closes under it.
                None => Next::Lagged,
            },
            _ = self.slot.lag_signal.notified() => Next::Lagged,
        }
    }

    /// The next queued change, if one is queued already.
    pub fn try_recv(&mut self) -> Option<Arc<Pushed>> {
        self.rx.try_recv().ok()
    }

    /// Whether the hub gave up on this subscriber because its queue was full.
    pub fn lagged(&self) -> bool {
        self.slot.lagged.load(Ordering::Acquire)
    }

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

/// A counted WebSocket connection; dropping it frees its place.
pub struct ConnectionPermit {
    hub: Arc<Hub>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.hub.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What `/v1/clients` shows of one subscriber.
pub struct ClientState {
    pub id: String,
    pub namespaces: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub remote: String,
    pub connected_at: DateTime<Utc>,
    /// The highest revision the client acknowledged.
    pub applied: AtomicU64,
}

impl ClientState {
    fn summary(&self) -> ClientSummary {
        ClientSummary {
            id: self.id.clone(),
            namespaces: self.namespaces.clone(),
            applied_revision: self.applied.load(Ordering::Relaxed),
            labels: self.labels.clone(),
            remote: self.remote.clone(),
            connected_at: self.connected_at,
        }
    }
}

/// A client listed in `/v1/clients`; dropping it removes the listing.
pub struct ClientRegistration {
    hub: Arc<Hub>,
    id: u64,
    client: Arc<ClientState>,
}

impl ClientRegistration {
    /// Records an acknowledgement; the applied revision never goes back.
    pub fn ack(&self, revision: Revision) {
        self.client.applied.fetch_max(revision, Ordering::Relaxed);
    }
}

impl Drop for ClientRegistration {
    fn drop(&mut self) {
        self.hub.clients.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use graycast_protocol::ServerMessage;

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
        }
    }

    #[test]
    fn change_frame_is_a_change_message() {
        let c = change(5, "ns");
        let parsed: ServerMessage = serde_json::from_str(&change_frame(&c)).expect("parses");
        assert_eq!(
            parsed,
            ServerMessage::Change {
                revision: 5,
                op: Op::Put,
                namespace: "ns".into(),
                key: "k".into(),
                entry: c.entry.as_deref().cloned().map(Box::new),
            }
        );
    }

    #[tokio::test]
    async fn fan_out_reaches_only_the_namespace_and_marks_a_full_queue_lagged() {
        let hub = Hub::new(0, 2, Arc::new(Metrics::default()));
        let mut a = hub.subscribe(&["a".to_owned()]);
        let mut b = hub.subscribe(&["b".to_owned()]);
        hub.publish(&change(1, "a"));
        hub.publish(&change(2, "b"));
        let revision = |next: Next| match next {
            Next::Pushed(p) => p.revision,
            Next::Lagged => 0,
        };
        assert_eq!(revision(a.next().await), 1);
        assert_eq!(revision(b.next().await), 2);
        assert!(a.try_recv().is_none() && b.try_recv().is_none());
        assert_eq!(hub.published(), 2);

        for revision in 3..=5 {
            hub.publish(&change(revision, "a"));
        }
        assert!(a.lagged(), "a third message into a queue of two marks the subscriber lagged");
        assert!(!b.lagged());
        assert!(matches!(a.next().await, Next::Lagged));

        drop(a);
        assert!(hub.by_namespace.read().expect("lock").get("a").is_none());
    }
}
