//! The etcd engine: several graycast nodes on one etcd cluster.
//!
//! Keys, under the prefix `P` (`--etcd-prefix`, `/graycast/` by default):
//! - `P e/{ns}/{key}`: that the key exists, and where its current record is: `{"seq": N}`
//!   names `P h/{ns}/{key}/{N}` (data written before kept the whole record here, which is
//!   still read);
//! - `P h/{ns}/{key}/{seq}`: the key's history, one [`Record`] per change, `seq` counting
//!   from 1; the record's mod revision is the change's revision; the newest record of a
//!   live key is its entry. A value is thus written once per change, so the largest value
//!   (1 MiB) fits etcd's default request limit (1.5 MiB);
//! - `P c/{ns}/{key}`: the key's change counter: its etcd version is the number of changes
//!   ever made to the key (the last `seq`), its value the id of the last write; it
//!   survives deletes;
//! - `P leader`: the election of the node that runs ramps and the guard;
//! - `P g/...`: what each node knows of the guards' outcome counts, under its lease.
//!
//! **A write is one transaction** that compares the key's counter with the version this
//! node knows (so any change of the key meanwhile fails it) and puts the entry, the
//! history record and the counter: its revision is etcd's, the same on every node. A
//! failed compare brings the key's current state back in the same round trip, and the
//! write is planned again against it (a precondition is checked against etcd's state,
//! never a stale cache). A write whose outcome is unknown (the answer was lost) finds
//! out from the history record its attempt would have made, which carries the write's id,
//! whether it committed (`write.rs`); it is never planned again once it did.
//!
//! **Every node applies every change from its watch** of `P h/`, its own writes included,
//! in revision order, to its cache and its hub; a write is answered once this node has
//! applied it, so a client reads its own writes on the node it wrote to. A watch that
//! lost its place to a compaction reloads the state and resyncs every subscriber with a
//! snapshot; a watch that broke resumes from the next revision, so nothing is skipped.
//!
//! **History** lives in its own key space, not in etcd's revisions: etcd compacts its
//! revisions (and must, or its database only grows), while a key's history must outlive
//! that, bounded by `--history-retain` instead. Replays from before this node's memory
//! use etcd's revisions through a watch from the client's position, and fall back to a
//! snapshot where they were compacted.

mod compact;
mod health;
mod keys;
mod lease;
mod reads;
mod watcher;
mod write;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, PoisonError};
use std::time::Duration;

use dashmap::DashMap;
use etcd_client::{
    Certificate, Client, ConnectOptions, Identity, KvClient, PutOptions, TlsOptions,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::compact::compact;
use self::keys::Keys;
use self::lease::{session, Clients};
use self::reads::load;
use self::watcher::{Members, Watcher};

use super::{FeedReceiver, Loaded, Shared, StoreError, StoreOptions};
use crate::metrics::{EtcdOp, Metrics};

/// Time allowed to one etcd request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A write that keeps losing its compare (a hot key) gives up after this many attempts.
const MAX_ATTEMPTS: usize = 16;
/// Keys read per page when loading.
const LOAD_PAGE: i64 = 500;
/// Reads in one transaction (etcd's `--max-txn-ops` is 128 by default).
const TXN_READS: usize = 100;
/// Largest message accepted from etcd (a page of values, a batch of watch events).
const MAX_MESSAGE: usize = 256 * 1024 * 1024;
/// A watch that brings nothing, not even an answer to a progress request, for this long
/// is considered stalled (its member paused, cut off or overloaded) and opened again on
/// the next member.
const WATCH_SILENCE: Duration = Duration::from_millis(2000);
/// How often a watch asks etcd for progress (to find out it still works).
const WATCH_PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// Waits between attempts to reach etcd again.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How often the leading node considers compacting etcd.
const COMPACT_CHECK: Duration = Duration::from_secs(2);
/// How long a starting node tries to load its state before it serves without it (and
/// loads it once etcd answers).
const START_WAIT: Duration = Duration::from_secs(3);
/// How long publishing waits for the node's lease.
const LEASE_WAIT: Duration = Duration::from_secs(5);
/// How long a write waits for this node to apply it before answering anyway.
const APPLY_WAIT: Duration = Duration::from_secs(5);

/// How to reach etcd; the server builds it from `--etcd-*`.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    pub endpoints: Vec<String>,
    /// Every key lives under it; ends with `/`.
    pub prefix: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// CA certificates (PEM) of the cluster's TLS; with it, endpoints are `https://`.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM), for clusters that require them.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Seconds a node's lease lives without renewal: a dead leader is replaced within it.
    pub lease_ttl: i64,
    /// This node's name in the election and in the guard's counts.
    pub node: String,
    /// A test aid (never set by the server): lose the answers of committed transactions.
    pub lost_answers: Option<Arc<LostAnswers>>,
}

/// A fault for tests: the next `armed` transactions that commit have their answer lost,
/// as when an etcd member stalls after committing; the write then waits for `resume`.
#[derive(Debug, Default)]
pub struct LostAnswers {
    pub armed: AtomicU64,
    /// Signalled when an answer has been lost (its transaction committed).
    pub lost: tokio::sync::Notify,
    /// What the write waits for before it goes on.
    pub resume: tokio::sync::Notify,
}

impl LostAnswers {
    fn take(&self) -> bool {
        self.armed.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok()
    }
}

/// What an etcd failure means for a caller.
fn etcd_err(context: &str, err: etcd_client::Error) -> StoreError {
    let text = err.to_string();
    if text.contains("database space exceeded") {
        return StoreError::QuotaExceeded(format!(
            "etcd is at its quota (--quota-backend-bytes): {text}"
        ));
    }
    StoreError::Unavailable(format!("{context}: {text}"))
}

/// The etcd engine's handle.
pub(super) struct EtcdEngine {
    client: Client,
    /// A client without the request timeout, for calls that block (the campaign).
    patient: Client,
    /// How the watch connects to one member at a time.
    watch_options: ConnectOptions,
    kv: KvClient,
    keys: Keys,
    options: EtcdOptions,
    history_retain: u64,
    /// How many etcd revisions back replays must reach (`--changelog-retain`); older ones
    /// are compacted.
    changelog_retain: u64,
    /// Changes ever made to each key (`"{ns}/{key}"`), as this node knows them.
    seqs: Arc<DashMap<String, u64>>,
    /// The revision of the last change this node applied (an `h/` event's revision).
    last_change: Arc<AtomicU64>,
    /// Whether this node leads (runs ramps and the guard).
    leader: watch::Receiver<bool>,
    leader_tx: Arc<watch::Sender<bool>>,
    /// This node's lease, once granted (for ephemeral keys).
    lease: Arc<watch::Sender<Option<i64>>>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The lease of the `i/` keys (`Idempotency-Key`s) and when it was granted.
    idempotency_lease: tokio::sync::Mutex<Option<(i64, std::time::Instant)>>,
    /// etcd's requests are timed and their failures counted here.
    metrics: Arc<Metrics>,
    /// A client of each member alone, made when a read must go member by member.
    member_clients: tokio::sync::Mutex<Vec<Option<Client>>>,
}

impl EtcdEngine {
    /// Connects to etcd and loads the current state under the prefix, retrying for a while
    /// when etcd cannot be reached yet (nodes and etcd often start together).
    pub async fn connect(
        options: EtcdOptions,
        store: &StoreOptions,
        metrics: Arc<Metrics>,
    ) -> Result<(EtcdEngine, Option<Loaded>), StoreError> {
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            // etcd refuses pings more often than every 5 s.
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
            .with_keep_alive_while_idle(false)
            // Without quorum, fail fast instead of waiting out the timeout.
            .with_require_leader(true);
        if let (Some(user), Some(password)) = (&options.user, &options.password) {
            connect = connect.with_user(user, password).with_auto_token_refresh(true);
        }
        if let Some(ca) = &options.ca_file {
            let pem = std::fs::read(ca).map_err(|e| {
                StoreError::Backend(format!("cannot read the etcd CA file {}: {e}", ca.display()))
            })?;
            let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(pem));
            if let (Some(cert), Some(key)) = (&options.cert_file, &options.key_file) {
                let read = |path: &PathBuf| {
                    std::fs::read(path).map_err(|e| {
                        StoreError::Backend(format!("cannot read {}: {e}", path.display()))
                    })
                };
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            connect = connect.with_tls(tls);
        }
        let cannot = |e: etcd_client::Error| {
            StoreError::Unavailable(format!(
                "cannot connect to etcd at {:?}: {e}",
                options.endpoints
            ))
        };
        // Calls that block until something happens (the campaign to lead) must not be cut by
        // the request timeout: they get a client of their own, without it.
        let patient =
            Client::connect(&options.endpoints, Some(connect.clone())).await.map_err(cannot)?;
        let watch_options = connect.clone();
        let connect = connect.with_timeout(REQUEST_TIMEOUT);
        let client = Client::connect(&options.endpoints, Some(connect)).await.map_err(cannot)?;
        let kv = client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let keys = Keys { prefix: options.prefix.clone() };
        let seqs = Arc::new(DashMap::new());
        let last_change = Arc::new(AtomicU64::new(0));
        let deadline = tokio::time::Instant::now() + START_WAIT;
        let mut wait = RETRY_MIN;
        let mut unreachable = crate::streak::Streak::default();
        let loaded = loop {
            let started = std::time::Instant::now();
            let attempt = load(&mut kv.clone(), &keys, &seqs, &last_change).await;
            metrics.record_etcd_request(EtcdOp::Read, started.elapsed(), attempt.is_ok());
            match attempt {
                Ok(loaded) => break Some(loaded),
                Err(err) if tokio::time::Instant::now() < deadline => {
                    if unreachable.failed() == 1 {
                        tracing::warn!(error = %err, "etcd is not reachable yet; retrying");
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RETRY_MAX);
                }
                // The node serves health and readiness meanwhile, and its state once the
                // watch has loaded it.
                Err(err) => {
                    tracing::warn!(error = %err, "etcd is not reachable; loading once it is");
                    break None;
                }
            }
        };
        let options_endpoints = options.endpoints.len();
        let (leader_tx, leader) = watch::channel(false);
        let (lease, _) = watch::channel(None);
        let (stop, _) = watch::channel(false);
        let engine = EtcdEngine {
            client,
            patient,
            watch_options,
            kv,
            keys,
            history_retain: store.history_retain,
            changelog_retain: store.changelog_retain,
            options,
            seqs,
            last_change,
            leader,
            leader_tx: Arc::new(leader_tx),
            lease: Arc::new(lease),
            stop,
            tasks: Mutex::new(Vec::new()),
            idempotency_lease: tokio::sync::Mutex::new(None),
            metrics,
            member_clients: tokio::sync::Mutex::new(vec![None; options_endpoints]),
        };
        Ok((engine, loaded))
    }

    /// Starts the watch (which feeds the cache and the hub) and the node's session (its
    /// lease and its campaign to lead).
    pub fn start(&self, shared: Arc<Shared>) -> FeedReceiver {
        let (feed, feed_rx) = std_mpsc::channel();
        let metrics = shared.metrics.clone();
        let watcher = Watcher {
            members: Members::new(self.options.endpoints.clone(), self.watch_options.clone()),
            kv: self.kv.clone(),
            keys: self.keys.clone(),
            shared,
            feed,
            seqs: self.seqs.clone(),
            last_change: self.last_change.clone(),
            broken: crate::streak::Streak::default(),
        };
        let next = self.last_change.load(Ordering::Acquire).max(watcher.shared.revision()) + 1;
        let loaded = watcher.shared.loaded.load(Ordering::Acquire);
        let watch = tokio::spawn(watcher.run(next, loaded, self.stop.subscribe()));
        let probe = tokio::spawn(health::probe(
            self.options.endpoints.clone(),
            self.watch_options.clone(),
            metrics.clone(),
            self.stop.subscribe(),
        ));
        let clients = Clients { timed: self.client.clone(), patient: self.patient.clone() };
        let session = tokio::spawn(session(
            clients,
            metrics,
            self.keys.clone(),
            self.options.clone(),
            self.leader_tx.clone(),
            self.lease.clone(),
            self.stop.subscribe(),
        ));
        let compactor = tokio::spawn(compact(
            self.kv.clone(),
            self.metrics.clone(),
            self.leader.clone(),
            self.last_change.clone(),
            self.changelog_retain,
            self.stop.subscribe(),
        ));
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend([watch, session, compactor, probe]);
        feed_rx
    }

    /// Stops the watch and the session (resigning the lead, revoking the lease).
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Whether this node leads the cluster's ramps and guard.
    pub fn leadership(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    fn kv(&self) -> KvClient {
        self.kv.clone()
    }

    /// Publishes what this node knows under `name` (followed by the node's name), tied to
    /// its lease: it disappears when the node does.
    pub async fn publish_ephemeral(&self, name: &str, value: Vec<u8>) -> Result<(), StoreError> {
        // A node that just started, or whose session is being replaced, has its lease
        // within moments while etcd has quorum.
        let mut leases = self.lease.subscribe();
        let lease = match tokio::time::timeout(LEASE_WAIT, leases.wait_for(Option::is_some)).await {
            Ok(Ok(lease)) => lease.unwrap_or_default(),
            _ => return Err(StoreError::Unavailable("this node has no etcd lease yet".into())),
        };
        let key = format!("{}{}", self.keys.ephemeral(name), self.options.node);
        let options = PutOptions::new().with_lease(lease);
        retry(&self.metrics, EtcdOp::Lease, || async {
            let mut kv = self.kv();
            kv.put(key.clone(), value.clone(), Some(options.clone())).await.map(|_| ())
        })
        .await
        .map_err(|e| etcd_err("cannot publish to etcd", e))
    }
}

impl Drop for EtcdEngine {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Runs one request to etcd, timing it and counting its failure as a request of `op`.
async fn measured<T>(
    metrics: &Metrics,
    op: EtcdOp,
    request: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, etcd_client::Error> {
    let started = std::time::Instant::now();
    let answer = request.await;
    metrics.record_etcd_request(op, started.elapsed(), answer.is_ok());
    answer
}

/// Runs a request that is safe to repeat (a read, or a write whose repeat changes
/// nothing) a few times: with one member down, the client's balancer still sends some
/// requests to it, which fail at once. Each attempt is measured as a request of `op`.
async fn retry<T, F, Fut>(
    metrics: &Metrics,
    op: EtcdOp,
    mut request: F,
) -> Result<T, etcd_client::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let mut attempt = 0;
    loop {
        match measured(metrics, op, request()).await {
            Ok(answer) => return Ok(answer),
            Err(err) if attempt < 3 => {
                tracing::debug!(error = %err, attempt, "retrying an etcd request");
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
            }
            Err(err) => return Err(err),
        }
    }
}
