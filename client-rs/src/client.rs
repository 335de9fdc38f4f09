//! The client handle, its builder, and the reads served from the local cache.

use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use futures_util::Stream;
use graycast_protocol::rollout::Variant;
use graycast_protocol::ws::Nack;
use graycast_protocol::{validate_name, Entry, Revision};
use serde::de::DeserializeOwned;
use tokio::sync::{broadcast, watch};

use crate::cache::{self, CacheState};
use crate::events::{ChangeEvent, Filter};
use crate::shared::{Inner, Settings, Status, Transport};
use crate::{push, Error};

/// Default shortest wait before reconnecting.
pub const DEFAULT_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Default longest wait before reconnecting.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Default time allowed to open a connection and to make a REST call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Change events buffered per stream before a slow stream misses some; enough for the
/// differences of a large snapshot, which arrive at once. The buffer is allocated whole
/// when the client is built (a slot per event, each an `Arc`: 4096 cost about 160 KiB).
const EVENT_BUFFER: usize = 4096;

/// Builds a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    settings: Settings,
}

impl ClientBuilder {
    /// Adds a server base URL, such as `http://127.0.0.1:8080` or `https://config.example`
    /// (a bare `host:port` means `http://`). Several endpoints are tried in turn, so a
    /// client fails over between the nodes of a cluster.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.settings.endpoints.push(url.into().trim_end_matches('/').to_owned());
        self
    }

    /// Subscribes to a namespace: its entries are kept in the local cache.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.settings.namespaces.push(namespace.into());
        self
    }

    /// Subscribes to several namespaces.
    pub fn namespaces<I: IntoIterator<Item = S>, S: Into<String>>(mut self, namespaces: I) -> Self {
        self.settings.namespaces.extend(namespaces.into_iter().map(Into::into));
        self
    }

    /// The access token, sent as a bearer token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.settings.token = Some(token.into());
        self
    }

    /// The id this instance reports to the server (a fresh UUID by default).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.settings.client_id = id.into();
        self
    }

    /// A label the server shows for this client (region, version, ...).
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.labels.insert(name.into(), value.into());
        self
    }

    /// Where the last known state is kept, so that a client started while the server is
    /// down serves it at once.
    pub fn cache_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.settings.cache_file = Some(path.into());
        self
    }

    /// Trusts the certificates of a PEM file for `https://` endpoints, besides the system's
    /// roots (a private CA, or a server's self-signed certificate).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.settings.ca_file = Some(path.into());
        self
    }

    /// Bounds of the jittered exponential wait between reconnection attempts.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.settings.backoff_min = min;
        self.settings.backoff_max = max.max(min);
        self
    }

    /// How pushes arrive: [`Transport::Auto`] (the default) uses a WebSocket and falls
    /// back to server-sent events where the upgrade is refused on the way.
    pub fn transport(mut self, transport: Transport) -> Self {
        self.settings.transport = transport;
        self
    }

    /// Time allowed to open a connection and to make a REST call.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// Builds the client. With namespaces, it starts the push loop on the current tokio
    /// runtime (so this must be called within one) and serves the cache file at once.
    pub fn build(self) -> Result<Client, Error> {
        let mut settings = self.settings;
        if settings.endpoints.is_empty() {
            return Err(Error::Config("no endpoint given".into()));
        }
        for endpoint in &mut settings.endpoints {
            // `localhost:8080` means `http://localhost:8080`.
            if !endpoint.contains("://") {
                *endpoint = format!("http://{endpoint}");
            }
            let https = endpoint.starts_with("https://");
            if https && !cfg!(feature = "tls") {
                return Err(Error::Config(format!(
                    "endpoint {endpoint:?}: https needs the SDK's `tls` feature"
                )));
            }
            if !https && !endpoint.starts_with("http://") {
                return Err(Error::Config(format!(
                    "endpoint {endpoint:?} is not an http:// or https:// URL"
                )));
            }
        }
        settings.namespaces.sort();
        settings.namespaces.dedup();
        for namespace in &settings.namespaces {
            validate_name(namespace)
                .map_err(|e| Error::Config(format!("namespace {namespace:?}: {e}")))?;
        }
        #[cfg(feature = "tls")]
        let tls = crate::tls::client_config(settings.ca_file.as_deref())?;
        let http = reqwest::Client::builder().timeout(settings.timeout);
        #[cfg(feature = "tls")]
        let http = http.use_preconfigured_tls(rustls::ClientConfig::clone(&tls));
        let http = http
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;

        let mut state = CacheState::default();
        if let (Some(path), false) = (&settings.cache_file, settings.namespaces.is_empty()) {
            match cache::load(path, &settings.namespaces) {
                Ok(Some(loaded)) => state = loaded,
                Ok(None) => {}
                Err(warning) => tracing::warn!("{warning}; starting with an empty cache"),
            }
        }
        let (status, _) = watch::channel(Status {
            connected: false,
            synced: false,
            revision: state.revision,
            stale_since: Some(SystemTime::now()),
            endpoint: None,
            last_error: None,
            failure: None,
            transport: None,
        });
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let inner = Arc::new(Inner {
            settings,
            http,
            #[cfg(feature = "tls")]
            tls,
            cache: RwLock::new(state),
            status,
            events,
            nacked: Default::default(),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        if !inner.settings.namespaces.is_empty() {
            let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                Error::Config("a subscribing client must be built within a tokio runtime".into())
            })?;
            runtime.spawn(push::run(inner.clone(), stop_rx));
        }
        Ok(Client { inner, _stop: Arc::new(StopOnDrop(stop_tx)), comment: None })
    }
}

/// Stops the push loop when the last handle goes.
struct StopOnDrop(watch::Sender<bool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(true);
    }
}

/// A graycast client: a local cache of its namespaces kept current by push, and REST
/// helpers for writers. Cheap to clone; every clone shares the same cache and connection.
/// Reads never touch the network.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
    _stop: Arc<StopOnDrop>,
    /// Sent with every change this handle makes (see [`Client::with_comment`]).
    pub(crate) comment: Option<Arc<str>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("settings", &self.inner.settings).finish_non_exhaustive()
    }
}

impl Client {
    /// Starts building a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder {
            settings: Settings {
                endpoints: Vec::new(),
                namespaces: Vec::new(),
                token: None,
                client_id: uuid::Uuid::new_v4().to_string(),
                labels: Default::default(),
                cache_file: None,
                ca_file: None,
                backoff_min: DEFAULT_BACKOFF_MIN,
                backoff_max: DEFAULT_BACKOFF_MAX,
                timeout: DEFAULT_TIMEOUT,
                transport: Transport::Auto,
            },
        }
    }

    /// The **stable** value of a key decoded as `T`; `Ok(None)` when the key does not
    /// exist, [`Error::NotSubscribed`] for a namespace this client does not follow.
    ///
    /// This ignores a running gray release: to get the value a user, tenant or this
    /// instance should see, use [`Client::get_for`].
    pub fn get<T: DeserializeOwned>(&self, namespace: &str, key: &str) -> Result<Option<T>, Error> {
        self.check_subscribed(namespace)?;
        let Some(entry) = self.entry(namespace, key) else { return Ok(None) };
        let decoded = decode(namespace, key, &entry.value);
        if let Err(err) = &decoded {
            self.nack(&entry, Variant::Stable, err);
        }
        decoded.map(Some)
    }

    /// Tells the server that a typed read failed on a pushed value (`POST /v1/nacks`), once
    /// per key and revision, in the background: `GET /v1/clients` shows the rejection, and
    /// a gray release's guard counts it as an error of the variant (tokens that may report).
    pub(crate) fn nack(&self, entry: &Entry, variant: Variant, error: &Error) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let id = (entry.namespace.clone(), entry.key.clone(), entry.revision);
        if !self.inner.nacked.lock().unwrap_or_else(PoisonError::into_inner).insert(id) {
            return;
        }
        let nack = Nack {
            namespace: entry.namespace.clone(),
            key: entry.key.clone(),
            revision: entry.revision,
            error: error.to_string().chars().take(1000).collect(),
            variant: Some(variant),
            client: Some(self.inner.settings.client_id.clone()),
        };
        let inner = self.inner.clone();
        runtime.spawn(async move {
            let Some(endpoint) = inner.settings.endpoints.first() else { return };
            let mut request = inner.http.post(format!("{endpoint}/v1/nacks")).json(&nack);
            if let Some(token) = &inner.settings.token {
                request = request.bearer_auth(token);
            }
            // Feedback, not a write: a lost one costs a count, and retrying is not worth it.
            if let Err(err) = request.send().await {
                tracing::debug!(error = %err, "cannot send a nack");
            }
        });
    }

    /// The stable value of a key decoded as `T`, or `default` when it is missing, of
    /// another type, or in a namespace this client does not follow.
    pub fn get_or<T: DeserializeOwned>(&self, namespace: &str, key: &str, default: T) -> T {
        self.get(namespace, key).ok().flatten().unwrap_or(default)
    }

    /// Fails with [`Error::NotSubscribed`] unless the cache follows `namespace`.
    pub(crate) fn check_subscribed(&self, namespace: &str) -> Result<(), Error> {
        if self.inner.settings.namespaces.binary_search_by(|n| n.as_str().cmp(namespace)).is_ok() {
            Ok(())
        } else {
            Err(Error::NotSubscribed { namespace: namespace.to_owned() })
        }
    }

    /// A handle for this client whose changes (put, delete, rollback, gray releases)
    /// carry `comment`: why, in your words, kept in history and the audit feed.
    ///
    /// `client.with_comment("raise for the sale").put("payments", "limit", &500, Expect::Any)`
    pub fn with_comment(&self, comment: impl Into<String>) -> Client {
        let mut handle = self.clone();
        handle.comment = Some(comment.into().into());
        handle
    }

    /// The raw JSON value of a key.
    pub fn get_json(&self, namespace: &str, key: &str) -> Option<serde_json::Value> {
        self.entry(namespace, key).map(|e| e.value.clone())
    }

    /// The whole entry of a key (value, revision, gray section, ...).
    pub fn entry(&self, namespace: &str, key: &str) -> Option<Arc<Entry>> {
        self.inner.cache().get(namespace, key)
    }

    /// Every entry of a namespace, by key.
    pub fn list(&self, namespace: &str) -> Vec<Arc<Entry>> {
        self.inner
            .cache()
            .entries
            .get(namespace)
            .map(|keys| keys.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The last revision applied to the cache.
    pub fn revision(&self) -> Revision {
        self.inner.cache().revision
    }

    /// The connection state.
    pub fn status(&self) -> Status {
        self.inner.status.borrow().clone()
    }

    /// The connection state as it changes: `changed().await` wakes on each change
    /// (connected, synced, a failure), `borrow()` reads the latest.
    pub fn status_changes(&self) -> watch::Receiver<Status> {
        self.inner.status.subscribe()
    }

    /// The id this client reports to the server.
    pub fn client_id(&self) -> &str {
        &self.inner.settings.client_id
    }

    /// Waits until the cache is in sync with a server (`Error::Timeout` otherwise).
    pub async fn wait_synced(&self, timeout: Duration) -> Result<(), Error> {
        self.wait_for(timeout, |s| s.synced).await
    }

    /// Waits until the cache has applied at least `revision`.
    pub async fn wait_for_revision(
        &self,
        revision: Revision,
        timeout: Duration,
    ) -> Result<(), Error> {
        self.wait_for(timeout, |s| s.revision >= revision).await
    }

    /// Waits for `ready`, or fails at once with a permanent failure (a refused token...)
    /// rather than waiting out the timeout.
    async fn wait_for(
        &self,
        timeout: Duration,
        ready: impl Fn(&Status) -> bool,
    ) -> Result<(), Error> {
        if self.inner.settings.namespaces.is_empty() {
            return Err(Error::Config(
                "this client subscribes to no namespace, so it never syncs".into(),
            ));
        }
        let mut status = self.inner.status.subscribe();
        let waited =
            tokio::time::timeout(timeout, status.wait_for(|s| ready(s) || s.failure.is_some()))
                .await;
        match waited {
            Ok(Ok(status)) if ready(&status) => Ok(()),
            Ok(Ok(status)) => Err(status.failure.clone().unwrap_or(Error::Timeout(timeout))),
            Ok(Err(_)) => Err(Error::Config("the client stopped".into())),
            Err(_) => Err(Error::Timeout(timeout)),
        }
    }

    /// A stream of the changes the cache applies from now on that match `filter`.
    ///
    /// A stream that falls more than a few thousand events behind skips the oldest ones
    /// (with a warning); the cache itself never skips.
    pub fn changes(&self, filter: Filter) -> impl Stream<Item = ChangeEvent> + Send + 'static {
        let receiver = self.inner.events.subscribe();
        futures_util::stream::unfold((receiver, filter), |(mut receiver, filter)| async move {
            loop {
                match receiver.recv().await {
                    Ok(event) if filter.matches(&event) => {
                        return Some((Arc::unwrap_or_clone(event), (receiver, filter)))
                    }
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "a change stream fell behind and skipped events");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }

    /// Calls `callback` for every change matching `filter`, on a task of the current
    /// runtime, until the returned handle is aborted or the client is dropped.
    pub fn on_change<F>(&self, filter: Filter, mut callback: F) -> tokio::task::JoinHandle<()>
    where
        F: FnMut(&ChangeEvent) + Send + 'static,
    {
        let stream = self.changes(filter);
        tokio::spawn(async move {
            use futures_util::StreamExt;
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                callback(&event);
            }
        })
    }
}

/// Decodes a value as `T`, naming the key in the error.
pub(crate) fn decode<T: DeserializeOwned>(
    namespace: &str,
    key: &str,
    value: &serde_json::Value,
) -> Result<T, Error> {
    T::deserialize(value).map_err(|e| Error::Decode {
        namespace: namespace.to_owned(),
        key: key.to_owned(),
        message: e.to_string(),
    })
}
