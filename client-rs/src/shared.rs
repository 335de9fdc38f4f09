//! What the client handles and the push loop share: the settings a client was built
//! with, its connection status, and [`Inner`], the state behind every handle (settings,
//! HTTP client, cache, status and change events) that the push loop keeps current.

use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime};

use graycast_protocol::Revision;
use tokio::sync::{broadcast, watch};

use crate::cache::CacheState;
use crate::events::ChangeEvent;
use crate::Error;

/// The connection state of a client, as [`Client::status`](crate::Client::status) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// A WebSocket connection is open.
    pub connected: bool,
    /// The cache reflects the server as of `revision` on the current connection.
    pub synced: bool,
    /// The last revision applied to the cache (0: nothing yet).
    pub revision: Revision,
    /// Since when the cache may be out of date (`None` while synced).
    pub stale_since: Option<SystemTime>,
    /// The endpoint of the current or last connection.
    pub endpoint: Option<String>,
    /// Why the last connection attempt or connection failed.
    pub last_error: Option<String>,
    /// Set when the last attempt failed in a way waiting will not mend: the token was
    /// refused (401) or lacks a namespace (403), the certificate is not trusted, the
    /// request is invalid. The client still retries, at its longest backoff (the server's
    /// tokens may be changed), but [`Client::wait_synced`](crate::Client::wait_synced) returns this error at once.
    pub failure: Option<Error>,
    /// How the current or last connection is made.
    pub transport: Option<Transport>,
}

/// How a client receives its pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// A WebSocket (`/v1/watch`), falling back to server-sent events for an endpoint whose
    /// upgrade is refused by something in between (a proxy that drops WebSockets).
    #[default]
    Auto,
    /// WebSocket only.
    WebSocket,
    /// Server-sent events (`/v1/events`) only.
    Sse,
}

/// Settings of a client, filled by [`ClientBuilder`](crate::ClientBuilder).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub endpoints: Vec<String>,
    pub namespaces: Vec<String>,
    pub token: Option<String>,
    pub client_id: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub cache_file: Option<PathBuf>,
    /// Certificates (PEM) trusted for `https://` endpoints besides the system's roots.
    pub ca_file: Option<PathBuf>,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub timeout: Duration,
    pub transport: Transport,
}

/// Shared by the handles and the push loop.
pub(crate) struct Inner {
    pub settings: Settings,
    pub http: reqwest::Client,
    /// TLS for `wss://` push connections (the REST client has its own copy).
    #[cfg(feature = "tls")]
    pub tls: Arc<rustls::ClientConfig>,
    pub cache: RwLock<CacheState>,
    pub status: watch::Sender<Status>,
    pub events: broadcast::Sender<Arc<ChangeEvent>>,
    /// The values this client told the server it rejected (namespace, key, revision):
    /// each is said once.
    pub nacked:
        std::sync::Mutex<std::collections::HashSet<(String, String, graycast_protocol::Revision)>>,
}

impl Inner {
    pub fn cache(&self) -> RwLockReadGuard<'_, CacheState> {
        self.cache.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn cache_mut(&self) -> RwLockWriteGuard<'_, CacheState> {
        self.cache.write().unwrap_or_else(PoisonError::into_inner)
    }
}
