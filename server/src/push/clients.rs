//! Who is connected: the count of subscriber connections against their limit, and the
//! clients `/v1/clients` lists with the revision each acknowledged.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use graycast_protocol::rest::{ClientSummary, Rejection};
use graycast_protocol::Revision;

use crate::metrics::Metrics;

/// The registry of connections and subscribed clients.
pub struct Clients {
    table: DashMap<u64, Arc<ClientState>>,
    /// Values clients rejected, by key: the newest revision rejected and by whom.
    rejections: DashMap<(String, String), Rejected>,
    next_id: AtomicU64,
    connections: AtomicUsize,
    metrics: Arc<Metrics>,
}

impl Clients {
    /// An empty registry.
    pub fn new(metrics: Arc<Metrics>) -> Arc<Clients> {
        Arc::new(Clients {
            table: DashMap::new(),
            rejections: DashMap::new(),
            next_id: AtomicU64::new(1),
            connections: AtomicUsize::new(0),
            metrics,
        })
    }

    /// Counts a new WebSocket connection unless `limit` are open already.
    pub fn try_connect(self: &Arc<Self>, limit: usize) -> Option<ConnectionPermit> {
        let admitted = self
            .connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1))
            .is_ok();
        if admitted {
            Some(ConnectionPermit { clients: self.clone() })
        } else {
            self.metrics.record_refused_connection();
            None
        }
    }

    /// Open subscriber connections (WebSocket and event stream).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Connections with a subscription (those `/v1/clients` lists).
    pub fn subscribers(&self) -> usize {
        self.table.len()
    }

    /// Lists a client in `/v1/clients` until the returned guard is dropped.
    pub fn register_client(self: &Arc<Self>, client: ClientState) -> ClientRegistration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let client = Arc::new(client);
        self.table.insert(id, client.clone());
        ClientRegistration { clients: self.clone(), id, client }
    }

    /// Records that `client` rejected the value of a key at `revision`; true when this is
    /// the client's first rejection of it. A newer revision replaces an older one's count.
    pub fn reject(
        &self,
        namespace: &str,
        key: &str,
        revision: Revision,
        client: &str,
        error: &str,
    ) -> bool {
        let slot = (namespace.to_owned(), key.to_owned());
        if !self.rejections.contains_key(&slot) && self.rejections.len() >= MAX_REJECTED_KEYS {
            return false;
        }
        let mut rejected = self.rejections.entry(slot).or_insert_with(|| Rejected {
            revision,
            clients: HashSet::new(),
            error: String::new(),
        });
        if revision < rejected.revision {
            return false;
        }
        if revision > rejected.revision {
            rejected.revision = revision;
            rejected.clients.clear();
        }
        rejected.error = error.to_owned();
        rejected.clients.len() < MAX_REJECTING_CLIENTS && rejected.clients.insert(client.to_owned())
    }

    /// The rejections, by namespace and key.
    pub fn rejections(&self) -> Vec<Rejection> {
        let mut list: Vec<Rejection> = self
            .rejections
            .iter()
            .map(|r| Rejection {
                namespace: r.key().0.clone(),
                key: r.key().1.clone(),
                revision: r.revision,
                clients: r.clients.len() as u64,
                error: r.error.clone(),
            })
            .collect();
        list.sort_by(|a, b| (&a.namespace, &a.key).cmp(&(&b.namespace, &b.key)));
        list
    }

    /// The connected clients, oldest connection first.
    pub fn list(&self) -> Vec<ClientSummary> {
        let mut list: Vec<(u64, ClientSummary)> =
            self.table.iter().map(|c| (*c.key(), c.value().summary())).collect();
        list.sort_by_key(|(id, _)| *id);
        list.into_iter().map(|(_, summary)| summary).collect()
    }
}

/// Keys whose rejections are kept; more are not counted.
const MAX_REJECTED_KEYS: usize = 10_000;
/// Clients counted per rejected revision.
const MAX_REJECTING_CLIENTS: usize = 10_000;

/// Who rejected a key's value at its newest rejected revision, and the last reason.
struct Rejected {
    revision: Revision,
    clients: HashSet<String>,
    error: String,
}

/// A counted WebSocket connection; dropping it frees its place.
pub struct ConnectionPermit {
    clients: Arc<Clients>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.clients.connections.fetch_sub(1, Ordering::AcqRel);
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
    clients: Arc<Clients>,
    id: u64,
    client: Arc<ClientState>,
}

impl ClientRegistration {
    /// The client's id.
    pub fn id(&self) -> &str {
        &self.client.id
    }

    /// Records an acknowledgement; the applied revision never goes back.
    pub fn ack(&self, revision: Revision) {
        self.client.applied.fetch_max(revision, Ordering::Relaxed);
    }
}

impl Drop for ClientRegistration {
    fn drop(&mut self) {
        let clients = &self.clients.table;
        clients.remove(&self.id);
        // After a crowd leaves, the table gives its room back (at most every halving).
        if clients.len() * 4 < clients.capacity() && clients.capacity() > 1024 {
            clients.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_table_gives_its_room_back_after_a_crowd_leaves() {
        let clients = Clients::new(Arc::new(Metrics::default()));
        let crowd: Vec<ClientRegistration> = (0..20_000)
            .map(|i| {
                clients.register_client(ClientState {
                    id: format!("client-{i}"),
                    namespaces: vec!["ns".into()],
                    labels: BTreeMap::new(),
                    remote: String::new(),
                    connected_at: Utc::now(),
                    applied: AtomicU64::new(0),
                })
            })
            .collect();
        let full = clients.table.capacity();
        assert!(full >= 20_000);
        drop(crowd);
        assert_eq!(clients.subscribers(), 0);
        assert!(
            clients.table.capacity() <= 4096,
            "{} of {full} slots kept",
            clients.table.capacity()
        );
    }
}
