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
//! never a stale cache). A write whose outcome is unknown (the connection broke) finds
//! out from the counter's value, the id of the last write, whether it committed.
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

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use dashmap::DashMap;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    KeyValue, KvClient, PutOptions, SortOrder, SortTarget, TlsOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions,
};
use graycast_protocol::{Entry, HistoryItem, Revision};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::history::Pager;
use super::plan::{plan, Planned};
use super::record::Record;
use super::{
    Change, ChangePage, Fed, FeedReceiver, HistoryPage, Loaded, Shared, StoreError, StoreOptions,
    WriteRequest,
};

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
/// is considered dead and opened again.
const WATCH_SILENCE: Duration = Duration::from_secs(15);
/// How often an idle watch asks etcd for progress (to find out it still works).
const WATCH_PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Waits between attempts to reach etcd again.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
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
}

/// The key layout under the prefix.
#[derive(Debug, Clone)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn entry(&self, slot: &str) -> String {
        format!("{}e/{slot}", self.prefix)
    }
    fn entries(&self) -> String {
        format!("{}e/", self.prefix)
    }
    fn history(&self, slot: &str, seq: u64) -> String {
        format!("{}h/{slot}/{seq:020}", self.prefix)
    }
    fn histories(&self) -> String {
        format!("{}h/", self.prefix)
    }
    fn history_of(&self, slot: &str) -> String {
        format!("{}h/{slot}/", self.prefix)
    }
    fn counter(&self, slot: &str) -> String {
        format!("{}c/{slot}", self.prefix)
    }
    fn counters(&self) -> String {
        format!("{}c/", self.prefix)
    }
    fn election(&self) -> String {
        format!("{}leader", self.prefix)
    }
    fn ephemeral(&self, name: &str) -> String {
        format!("{}g/{name}", self.prefix)
    }
    fn ready(&self) -> String {
        format!("{}ready", self.prefix)
    }

    /// `(namespace, key, seq)` of a history key.
    fn parse_history<'a>(&self, key: &'a [u8]) -> Option<(&'a str, &'a str, u64)> {
        let rest = std::str::from_utf8(key).ok()?.strip_prefix(&self.histories())?;
        let mut parts = rest.split('/');
        let (namespace, name, seq) = (parts.next()?, parts.next()?, parts.next()?);
        Some((namespace, name, seq.parse().ok()?))
    }

    /// `(namespace, key)` of an entry or counter key, after its part's prefix.
    fn parse_slot<'a>(&self, key: &'a [u8], part: &str) -> Option<(&'a str, &'a str)> {
        std::str::from_utf8(key).ok()?.strip_prefix(part)?.split_once('/')
    }
}

/// The end of the key range of a prefix ending in `/`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

fn slot(namespace: &str, key: &str) -> String {
    format!("{namespace}/{key}")
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

fn decode_record(kv: &KeyValue) -> Result<Record, StoreError> {
    serde_json::from_slice(kv.value()).map_err(|e| {
        StoreError::Corrupt(format!("record at {}: {e}", String::from_utf8_lossy(kv.key())))
    })
}

/// What an `e/` key holds: where the entry's record is, or (data written before) the
/// whole record.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Pointer {
    seq: u64,
}

/// The `e/` key's value: a [`Pointer`], or the whole record in data written before.
enum Marker {
    Pointer(u64),
    Whole(Box<Entry>),
}

/// Reads an `e/` key.
fn marker_of(kv: &KeyValue, namespace: &str, key: &str) -> Result<Marker, StoreError> {
    if let Ok(pointer) = serde_json::from_slice::<Pointer>(kv.value()) {
        return Ok(Marker::Pointer(pointer.seq));
    }
    let record = decode_record(kv)?;
    Ok(Marker::Whole(Box::new(Entry {
        namespace: namespace.to_owned(),
        key: key.to_owned(),
        value: record.value,
        revision: kv.mod_revision() as Revision,
        created_revision: kv.create_revision() as Revision,
        version: kv.version() as u64,
        updated_at: record.updated_at,
        updated_by: record.updated_by,
        gray: record.gray,
    })))
}

/// The entry an `h/` record stands for, when it is the key's current record.
fn entry_from_history(kv: &KeyValue, namespace: &str, key: &str) -> Result<Entry, StoreError> {
    let change = decode_record(kv)?.into_change(namespace, key, kv.mod_revision() as Revision);
    change.entry.as_deref().cloned().ok_or_else(|| {
        StoreError::Corrupt(format!("the current record of {namespace}/{key} is a delete"))
    })
}

/// Whether etcd refused a request for its size (`--max-request-bytes`).
fn too_large(err: &etcd_client::Error) -> Option<StoreError> {
    let text = err.to_string();
    // etcd checks the size twice: its gRPC server refuses a message beyond the limit plus
    // 512 KiB, and etcd itself a request beyond the limit.
    let refused = text.contains("request is too large") || text.contains("message larger than max");
    refused.then(|| {
        StoreError::TooLarge(format!(
            "etcd refused the write as too large ({text}): raise etcd's --max-request-bytes \
             (default 1.5 MiB) above the largest value plus a few kilobytes"
        ))
    })
}

/// A key's state in etcd, as a write needs it.
#[derive(Debug, Default)]
struct KeyState {
    entry: Option<Arc<Entry>>,
    /// Changes ever made to the key (the counter's version).
    seq: u64,
    /// The id and the revision of the last write (the counter's value and mod revision).
    last_write: Option<(String, Revision)>,
}

impl KeyState {
    fn from_gets(
        responses: Vec<TxnOpResponse>,
        namespace: &str,
        key: &str,
    ) -> Result<KeyState, StoreError> {
        let mut state = KeyState::default();
        let mut marker = None;
        let mut newest = None;
        for (i, response) in responses.into_iter().enumerate() {
            let TxnOpResponse::Get(get) = response else { continue };
            let Some(kv) = get.kvs().first() else { continue };
            match i {
                0 => marker = Some(marker_of(kv, namespace, key)?),
                1 => {
                    state.seq = kv.version() as u64;
                    let id = String::from_utf8_lossy(kv.value()).into_owned();
                    state.last_write = Some((id, kv.mod_revision() as Revision));
                }
                _ => newest = Some(kv.clone()),
            }
        }
        state.entry = match marker {
            None => None,
            Some(Marker::Whole(entry)) => Some(Arc::new(*entry)),
            Some(Marker::Pointer(_)) => {
                let newest = newest.ok_or_else(|| {
                    StoreError::Corrupt(format!("{namespace}/{key} has no history record"))
                })?;
                Some(Arc::new(entry_from_history(&newest, namespace, key)?))
            }
        };
        Ok(state)
    }
}

/// The etcd engine's handle.
pub(super) struct EtcdEngine {
    client: Client,
    kv: KvClient,
    keys: Keys,
    options: EtcdOptions,
    history_retain: u64,
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
}

impl EtcdEngine {
    /// Connects to etcd and loads the current state under the prefix, retrying for a while
    /// when etcd cannot be reached yet (nodes and etcd often start together).
    pub async fn connect(
        options: EtcdOptions,
        store: &StoreOptions,
    ) -> Result<(EtcdEngine, Loaded), StoreError> {
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(REQUEST_TIMEOUT)
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
        let client = Client::connect(&options.endpoints, Some(connect)).await.map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot connect to etcd at {:?}: {e}",
                options.endpoints
            ))
        })?;
        let kv = client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let keys = Keys { prefix: options.prefix.clone() };
        let seqs = Arc::new(DashMap::new());
        let last_change = Arc::new(AtomicU64::new(0));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut wait = RETRY_MIN;
        let loaded = loop {
            match load(&mut kv.clone(), &keys, &seqs, &last_change).await {
                Ok(loaded) => break loaded,
                Err(err) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(error = %err, "etcd is not reachable yet; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RETRY_MAX);
                }
                Err(err) => return Err(err),
            }
        };
        let (leader_tx, leader) = watch::channel(false);
        let (lease, _) = watch::channel(None);
        let (stop, _) = watch::channel(false);
        let engine = EtcdEngine {
            client,
            kv,
            keys,
            history_retain: store.history_retain,
            options,
            seqs,
            last_change,
            leader,
            leader_tx: Arc::new(leader_tx),
            lease: Arc::new(lease),
            stop,
            tasks: Mutex::new(Vec::new()),
        };
        Ok((engine, loaded))
    }

    /// Starts the watch (which feeds the cache and the hub) and the node's session (its
    /// lease and its campaign to lead).
    pub fn start(&self, shared: Arc<Shared>) -> FeedReceiver {
        let (feed, feed_rx) = std_mpsc::channel();
        let watcher = Watcher {
            client: self.client.clone(),
            kv: self.kv.clone(),
            keys: self.keys.clone(),
            shared,
            feed,
            seqs: self.seqs.clone(),
            last_change: self.last_change.clone(),
        };
        let next = self.last_change.load(Ordering::Acquire).max(watcher.shared.revision()) + 1;
        let watch = tokio::spawn(watcher.run(next, self.stop.subscribe()));
        let session = tokio::spawn(session(
            self.client.clone(),
            self.keys.clone(),
            self.options.clone(),
            self.leader_tx.clone(),
            self.lease.clone(),
            self.stop.subscribe(),
        ));
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner).extend([watch, session]);
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

    /// The key's state in etcd (entry and counter), read together.
    async fn read_key(&self, namespace: &str, key: &str) -> Result<KeyState, StoreError> {
        let slot = slot(namespace, key);
        let txn = Txn::new().and_then(self.key_state_reads(&slot));
        let response =
            self.kv().txn(txn).await.map_err(|e| etcd_err("cannot read from etcd", e))?;
        KeyState::from_gets(response.op_responses(), namespace, key)
    }

    /// The reads that make a key's [`KeyState`]: its `e/` key, its counter and its newest
    /// history record.
    fn key_state_reads(&self, slot: &str) -> [TxnOp; 3] {
        let history = self.keys.history_of(slot);
        let newest = GetOptions::new()
            .with_range(prefix_end(&history))
            .with_sort(SortTarget::Key, SortOrder::Descend)
            .with_limit(1);
        [
            TxnOp::get(self.keys.entry(slot), None),
            TxnOp::get(self.keys.counter(slot), None),
            TxnOp::get(history, Some(newest)),
        ]
    }

    /// One write, as one transaction (see the module's documentation).
    pub async fn write(
        &self,
        shared: &Shared,
        request: WriteRequest,
    ) -> Result<Arc<Change>, StoreError> {
        let slot = slot(&request.namespace, &request.key);
        let write_id = uuid::Uuid::new_v4().to_string();
        let mut state = KeyState {
            entry: shared.get(&request.namespace, &request.key),
            seq: self.seqs.get(&slot).map_or(0, |s| *s),
            last_write: None,
        };
        let mut fresh = false;
        let mut sent: Option<Planned> = None;
        // The last attempt's failure, when etcd failed it (rather than a compare).
        let mut failure: Option<String> = None;
        for _ in 0..MAX_ATTEMPTS {
            if let (Some((id, revision)), Some(planned)) = (&state.last_write, &sent) {
                if *id == write_id {
                    // An attempt whose answer was lost committed after all.
                    let change = Arc::new(planned.clone().commit(*revision));
                    shared.wait_applied(*revision, APPLY_WAIT).await;
                    return Ok(change);
                }
            }
            let now = Utc::now().trunc_subsecs(3);
            let planned = match plan(&request, state.entry.as_deref(), now) {
                Ok(planned) => planned,
                // The cache may be behind etcd: only etcd's own state may refuse a write.
                Err(_) if !fresh => {
                    state = self.read_key(&request.namespace, &request.key).await?;
                    fresh = true;
                    continue;
                }
                Err(err) => return Err(err),
            };
            let txn = self.transaction(&slot, &state, &planned, &write_id)?;
            sent = Some(planned.clone());
            match self.kv().txn(txn).await {
                Ok(response) if response.succeeded() => {
                    let revision = response.header().map_or(0, |h| h.revision()) as Revision;
                    let change = Arc::new(planned.commit(revision));
                    // Answer once this node shows the change too (read your writes).
                    shared.wait_applied(revision, APPLY_WAIT).await;
                    return Ok(change);
                }
                Ok(response) => {
                    // The key changed meanwhile: plan again against what etcd holds now.
                    failure = None;
                    state = KeyState::from_gets(
                        response.op_responses(),
                        &request.namespace,
                        &request.key,
                    )?;
                    fresh = true;
                }
                Err(err) => {
                    // Refused for its size: nothing was written, and no retry can help.
                    if let Some(refused) = too_large(&err) {
                        return Err(refused);
                    }
                    failure = Some(err.to_string());
                    // Whether it committed is unknown; the counter will tell.
                    tracing::debug!(error = %err, "etcd write failed; reading the key's state");
                    state = self
                        .read_key(&request.namespace, &request.key)
                        .await
                        .map_err(|_| etcd_err("cannot write to etcd", err))?;
                    fresh = true;
                }
            }
        }
        Err(StoreError::Unavailable(match failure {
            Some(failure) => format!("cannot write to etcd: {failure}"),
            None => format!("key {slot} kept changing under the write; try again"),
        }))
    }

    /// The transaction of a planned change on a key in `state`.
    fn transaction(
        &self,
        slot: &str,
        state: &KeyState,
        planned: &Planned,
        write_id: &str,
    ) -> Result<Txn, StoreError> {
        let change = planned.change();
        let mut record = Record::of(change);
        record.write_id = Some(write_id.to_owned());
        let record = serde_json::to_vec(&record).map_err(|e| StoreError::Backend(e.to_string()))?;
        let seq = state.seq + 1;
        let (entry, counter) = (self.keys.entry(slot), self.keys.counter(slot));
        let pointer = serde_json::to_vec(&Pointer { seq }).unwrap_or_default();
        let mut ops = vec![
            if change.entry.is_some() {
                TxnOp::put(entry.clone(), pointer, None)
            } else {
                TxnOp::delete(entry.clone(), None)
            },
            TxnOp::put(self.keys.history(slot, seq), record, None),
            TxnOp::put(counter.clone(), write_id, None),
        ];
        if self.history_retain > 0 && seq > self.history_retain {
            ops.push(TxnOp::delete(self.keys.history(slot, seq - self.history_retain), None));
        }
        Ok(Txn::new()
            .when([Compare::version(counter.clone(), CompareOp::Equal, state.seq as i64)])
            .and_then(ops)
            .or_else(self.key_state_reads(slot)))
    }

    /// The `h/` keys of a key with their revisions, oldest first.
    async fn history_keys(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<Vec<(Vec<u8>, Revision)>, StoreError> {
        let prefix = self.keys.history_of(&slot(namespace, key));
        let response = self
            .kv()
            .get(
                prefix.as_bytes(),
                Some(GetOptions::new().with_range(prefix_end(&prefix)).with_keys_only()),
            )
            .await
            .map_err(|e| etcd_err("cannot read history from etcd", e))?;
        Ok(response
            .kvs()
            .iter()
            .map(|kv| (kv.key().to_vec(), kv.mod_revision() as Revision))
            .collect())
    }

    pub async fn history(
        &self,
        namespace: &str,
        key: &str,
        before: Option<Revision>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<HistoryPage, StoreError> {
        let before = before.unwrap_or(Revision::MAX);
        let keys: Vec<(Vec<u8>, Revision)> = self
            .history_keys(namespace, key)
            .await?
            .into_iter()
            .filter(|(_, r)| *r < before)
            .collect();
        let mut pager = Pager::new(limit, max_bytes);
        // Newest first, a few values per request.
        for chunk in keys.rchunks(32) {
            let (first, last) = (&chunk[0].0, &chunk[chunk.len() - 1].0);
            let mut end = last.clone();
            end.push(0);
            let options = GetOptions::new().with_range(end);
            let response =
                retry(|| async { self.kv().get(first.clone(), Some(options.clone())).await })
                    .await
                    .map_err(|e| etcd_err("cannot read history from etcd", e))?;
            for kv in response.kvs().iter().rev() {
                let item = decode_record(kv)?.into_item(kv.mod_revision() as Revision);
                if !pager.take(kv.value().len(), || item) {
                    return Ok(pager.finish());
                }
            }
        }
        Ok(pager.finish())
    }

    pub async fn history_at(
        &self,
        namespace: &str,
        key: &str,
        revision: Revision,
    ) -> Result<Option<HistoryItem>, StoreError> {
        let keys = self.history_keys(namespace, key).await?;
        let Some((found, _)) = keys.into_iter().find(|(_, r)| *r == revision) else {
            return Ok(None);
        };
        let response = self
            .kv()
            .get(found, None)
            .await
            .map_err(|e| etcd_err("cannot read history from etcd", e))?;
        match response.kvs().first() {
            Some(kv) => Ok(Some(decode_record(kv)?.into_item(revision))),
            None => Ok(None),
        }
    }

    /// Changes after `after` up to the last change this node applied, from etcd's own
    /// revisions (a watch from `after + 1`); `Compacted` where etcd no longer has them.
    pub async fn changes_after(
        &self,
        after: Revision,
        limit: usize,
    ) -> Result<ChangePage, StoreError> {
        let last = self.last_change.load(Ordering::Acquire);
        if after >= last {
            return Ok(ChangePage::Changes(Vec::new()));
        }
        let options = WatchOptions::new()
            .with_range(prefix_end(&self.keys.histories()))
            .with_start_revision(after as i64 + 1);
        let mut stream = self
            .client
            .watch_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .watch(self.keys.histories(), Some(options))
            .await
            .map_err(|e| etcd_err("cannot read changes from etcd", e))?;
        let mut changes = Vec::new();
        let collected = tokio::time::timeout(REQUEST_TIMEOUT, async {
            while let Some(response) = stream.message().await? {
                if response.compact_revision() > 0 {
                    return Ok::<bool, etcd_client::Error>(false);
                }
                for event in response.events() {
                    let Some(kv) = event.kv().filter(|_| event.event_type() == EventType::Put)
                    else {
                        continue;
                    };
                    let revision = kv.mod_revision() as Revision;
                    if revision > last {
                        return Ok(true);
                    }
                    if let Some((change, _, _)) = change_of(&self.keys, kv) {
                        changes.push(Arc::new(change));
                    }
                    if revision == last || changes.len() == limit {
                        return Ok(true);
                    }
                }
            }
            Ok(true)
        })
        .await;
        match collected {
            Ok(Ok(true)) => Ok(ChangePage::Changes(changes)),
            Ok(Ok(false)) => Ok(ChangePage::Compacted),
            Ok(Err(err)) if err.to_string().contains("compacted") => Ok(ChangePage::Compacted),
            Ok(Err(err)) => Err(etcd_err("cannot read changes from etcd", err)),
            Err(_) => {
                Err(StoreError::Unavailable("etcd did not replay the changes in time".into()))
            }
        }
    }

    /// Checks that etcd answers with a quorum (readiness).
    pub async fn check(&self) -> Result<(), StoreError> {
        retry(|| async { self.kv().get(self.keys.ready(), None).await.map(|_| ()) })
            .await
            .map_err(|e| etcd_err("etcd does not answer", e))
    }

    /// Publishes what this node knows under `name` (followed by the node's name), tied to
    /// its lease: it disappears when the node does.
    pub async fn publish_ephemeral(&self, name: &str, value: Vec<u8>) -> Result<(), StoreError> {
        let Some(lease) = *self.lease.borrow() else {
            return Err(StoreError::Unavailable("this node has no etcd lease yet".into()));
        };
        let key = format!("{}{}", self.keys.ephemeral(name), self.options.node);
        let options = PutOptions::new().with_lease(lease);
        retry(|| async {
            let mut kv = self.kv();
            kv.put(key.clone(), value.clone(), Some(options.clone())).await.map(|_| ())
        })
        .await
        .map_err(|e| etcd_err("cannot publish to etcd", e))
    }

    /// What every node published under names starting with `prefix`.
    pub async fn read_ephemeral(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let from = self.keys.ephemeral(prefix);
        let response = retry(|| async {
            self.kv().get(from.clone(), Some(GetOptions::new().with_prefix())).await
        })
        .await
        .map_err(|e| etcd_err("cannot read from etcd", e))?;
        let base = self.keys.ephemeral("");
        Ok(response
            .kvs()
            .iter()
            .map(|kv| {
                let name =
                    String::from_utf8_lossy(kv.key()).trim_start_matches(base.as_str()).to_owned();
                (name, kv.value().to_vec())
            })
            .collect())
    }
}

impl Drop for EtcdEngine {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Runs a request that is safe to repeat (a read, or a write whose repeat changes
/// nothing) a few times: with one member down, the client's balancer still sends some
/// requests to it, which fail at once.
async fn retry<T, F, Fut>(mut request: F) -> Result<T, etcd_client::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let mut attempt = 0;
    loop {
        match request().await {
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

/// The change a history record's put event stands for, with its key and seq.
fn change_of(keys: &Keys, kv: &KeyValue) -> Option<(Change, String, u64)> {
    let (namespace, key, seq) = keys.parse_history(kv.key())?;
    let record: Record = serde_json::from_slice(kv.value()).ok()?;
    let change = record.into_change(namespace, key, kv.mod_revision() as Revision);
    Some((change, slot(namespace, key), seq))
}

/// Reads the state under the prefix at one revision: the entries, and the counters.
async fn load(
    kv: &mut KvClient,
    keys: &Keys,
    seqs: &DashMap<String, u64>,
    last_change: &AtomicU64,
) -> Result<Loaded, StoreError> {
    let mut revision = 0i64;
    let mut entries = Vec::new();
    // Entries whose record is their newest history record: (namespace, key, seq).
    let mut pointed = Vec::new();
    for (part, keys_only) in [(keys.entries(), false), (keys.counters(), true)] {
        let end = prefix_end(&part);
        let mut from = part.as_bytes().to_vec();
        loop {
            let mut options = GetOptions::new().with_range(end.clone()).with_limit(LOAD_PAGE);
            if keys_only {
                options = options.with_keys_only();
            }
            if revision > 0 {
                options = options.with_revision(revision);
            }
            let response = kv
                .get(from.clone(), Some(options))
                .await
                .map_err(|e| etcd_err("cannot load from etcd", e))?;
            if revision == 0 {
                revision = response.header().map_or(0, |h| h.revision());
            }
            for kv in response.kvs() {
                let Some((namespace, name)) = keys.parse_slot(kv.key(), &part) else { continue };
                if keys_only {
                    seqs.insert(slot(namespace, name), kv.version() as u64);
                    last_change.fetch_max(kv.mod_revision() as u64, Ordering::AcqRel);
                } else {
                    match marker_of(kv, namespace, name)? {
                        Marker::Whole(entry) => entries.push(*entry),
                        Marker::Pointer(seq) => {
                            pointed.push((namespace.to_owned(), name.to_owned(), seq));
                        }
                    }
                }
            }
            match response.kvs().last() {
                Some(last) if response.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => break,
            }
        }
    }
    // History records never change once written, so reading them now reads them as of
    // `revision`; one that retention deleted since is read at `revision` itself.
    for batch in pointed.chunks(TXN_READS) {
        let reads =
            batch.iter().map(|(ns, key, seq)| TxnOp::get(keys.history(&slot(ns, key), *seq), None));
        let response = kv
            .txn(Txn::new().and_then(reads.collect::<Vec<_>>()))
            .await
            .map_err(|e| etcd_err("cannot load from etcd", e))?;
        for ((namespace, key, seq), read) in batch.iter().zip(response.op_responses()) {
            let found = match read {
                TxnOpResponse::Get(get) => get.kvs().first().cloned(),
                _ => None,
            };
            let kv_record = match found {
                Some(found) => found,
                None => {
                    let at = GetOptions::new().with_revision(revision);
                    let old = kv
                        .get(keys.history(&slot(namespace, key), *seq), Some(at))
                        .await
                        .map_err(|e| etcd_err("cannot load from etcd", e))?;
                    old.kvs().first().cloned().ok_or_else(|| {
                        StoreError::Corrupt(format!("{namespace}/{key} lost its record {seq}"))
                    })?
                }
            };
            entries.push(entry_from_history(&kv_record, namespace, key)?);
        }
    }
    Ok(Loaded { revision: revision.max(0) as Revision, entries })
}

/// The watch of `h/`: applies every change, in order, to the cache and the hub.
struct Watcher {
    client: Client,
    kv: KvClient,
    keys: Keys,
    shared: Arc<Shared>,
    feed: std_mpsc::Sender<Fed>,
    seqs: Arc<DashMap<String, u64>>,
    last_change: Arc<AtomicU64>,
}

enum WatchEnd {
    /// etcd compacted past the next revision: reload.
    Compacted,
    /// The watch broke (etcd down, the connection lost): watch again from the next revision.
    Broken(String),
    Stopped,
}

impl Watcher {
    async fn run(mut self, mut next: Revision, mut stop: watch::Receiver<bool>) {
        let mut wait = RETRY_MIN;
        loop {
            let end = tokio::select! {
                _ = stopped(&mut stop) => WatchEnd::Stopped,
                end = self.watch_from(&mut next) => end,
            };
            match end {
                WatchEnd::Stopped => return,
                WatchEnd::Compacted => match self.reload().await {
                    Ok(revision) => {
                        next = revision + 1;
                        wait = RETRY_MIN;
                        continue;
                    }
                    Err(err) => self.shared.fail(format!("etcd cannot be reached: {err}"), false),
                },
                WatchEnd::Broken(reason) => {
                    tracing::warn!(reason, next, "the etcd watch broke; watching again");
                    self.shared.fail(format!("etcd cannot be reached: {reason}"), false);
                }
            }
            tokio::select! {
                _ = stopped(&mut stop) => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(RETRY_MAX);
        }
    }

    /// Watches from `next`, applying changes and moving `next` on, until the watch ends.
    async fn watch_from(&mut self, next: &mut Revision) -> WatchEnd {
        let options = WatchOptions::new()
            .with_range(prefix_end(&self.keys.histories()))
            .with_start_revision(*next as i64)
            .with_progress_notify();
        let mut stream = match self
            .client
            .watch_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .watch(self.keys.histories(), Some(options))
            .await
        {
            Ok(stream) => stream,
            Err(err) => return WatchEnd::Broken(err.to_string()),
        };
        let mut progress = tokio::time::interval(WATCH_PROGRESS_EVERY);
        progress.tick().await;
        loop {
            let message = tokio::select! {
                message = tokio::time::timeout(WATCH_SILENCE, stream.message()) => message,
                _ = progress.tick() => {
                    if let Err(err) = stream.request_progress().await {
                        return WatchEnd::Broken(err.to_string());
                    }
                    continue;
                }
            };
            let response = match message {
                Err(_) => {
                    return WatchEnd::Broken(
                        "no answer from etcd within the watch's silence limit".into(),
                    )
                }
                Ok(Err(err)) if err.to_string().contains("compacted") => {
                    return WatchEnd::Compacted
                }
                Ok(Err(err)) => return WatchEnd::Broken(err.to_string()),
                Ok(Ok(None)) => return WatchEnd::Broken("the watch ended".into()),
                Ok(Ok(Some(response))) => response,
            };
            if response.compact_revision() > 0 {
                return WatchEnd::Compacted;
            }
            if response.canceled() {
                return WatchEnd::Broken(format!(
                    "the watch was cancelled: {}",
                    response.cancel_reason()
                ));
            }
            // The watch answers: etcd can be reached (writes find out for themselves).
            self.shared.recover();
            let mut batch = Vec::new();
            for event in response.events() {
                let Some(kv) = event.kv().filter(|_| event.event_type() == EventType::Put) else {
                    continue;
                };
                let Some((change, slot, seq)) = change_of(&self.keys, kv) else {
                    tracing::error!(key = %String::from_utf8_lossy(kv.key()), "an unreadable history record in etcd");
                    continue;
                };
                if change.revision < *next {
                    continue;
                }
                *next = change.revision + 1;
                self.seqs.insert(slot, seq);
                self.last_change.fetch_max(change.revision, Ordering::AcqRel);
                batch.push(Arc::new(change));
            }
            if !batch.is_empty() {
                self.shared.apply(&batch);
                let _ = self.feed.send(Fed::Changes(batch, std::time::Instant::now()));
            }
        }
    }

    /// Reloads the whole state after a compaction; returns the revision it is as of.
    async fn reload(&mut self) -> Result<Revision, StoreError> {
        tracing::warn!(
            "the etcd watch fell behind a compaction; reloading and resyncing subscribers"
        );
        let seqs = DashMap::new();
        let loaded = load(&mut self.kv, &self.keys, &seqs, &self.last_change).await?;
        let revision = loaded.revision;
        self.seqs.clear();
        for (slot, seq) in seqs {
            self.seqs.insert(slot, seq);
        }
        self.shared.replace(loaded);
        let _ = self.feed.send(Fed::Reloaded(revision));
        self.shared.recover();
        Ok(revision)
    }
}

/// Resolves once the engine stops.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// The node's session: its lease (renewed every third of its TTL) and its campaign to lead.
async fn session(
    client: Client,
    keys: Keys,
    options: EtcdOptions,
    leader: Arc<watch::Sender<bool>>,
    lease_tx: Arc<watch::Sender<Option<i64>>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut wait = RETRY_MIN;
    loop {
        let held = tokio::select! {
            _ = stopped(&mut stop) => {
                // Leaving: give the lead up at once rather than after the lease's TTL.
                let lease = *lease_tx.borrow();
                if let Some(lease) = lease {
                    let _ = client.clone().lease_revoke(lease).await;
                }
                let _ = leader.send(false);
                return;
            }
            held = hold_lease(&client, &keys, &options, &leader, &lease_tx) => held,
        };
        let _ = leader.send(false);
        lease_tx.send_replace(None);
        if let Err(reason) = held {
            tracing::warn!(reason, "the node's etcd session ended; starting another");
        }
        tokio::select! {
            _ = stopped(&mut stop) => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(RETRY_MAX);
    }
}

/// Grants a lease, keeps it alive, and campaigns with it; returns when the lease is lost.
async fn hold_lease(
    client: &Client,
    keys: &Keys,
    options: &EtcdOptions,
    leader: &watch::Sender<bool>,
    lease_tx: &watch::Sender<Option<i64>>,
) -> Result<(), String> {
    let mut client = client.clone();
    let ttl = options.lease_ttl.max(2);
    let lease = client.lease_grant(ttl, None).await.map_err(|e| e.to_string())?.id();
    lease_tx.send_replace(Some(lease));
    let (mut keeper, mut answers) =
        client.lease_keep_alive(lease).await.map_err(|e| e.to_string())?;
    let keep_alive = async move {
        let every = Duration::from_millis((ttl as u64 * 1000) / 3);
        loop {
            keeper.keep_alive().await.map_err(|e| e.to_string())?;
            match tokio::time::timeout(every, answers.message()).await {
                Ok(Ok(Some(answer))) if answer.ttl() > 0 => {}
                Ok(Ok(Some(_))) => return Err::<(), String>("the lease expired".into()),
                Ok(Ok(None)) => return Err("the keep-alive stream ended".into()),
                Ok(Err(err)) => return Err(err.to_string()),
                Err(_) => return Err("no keep-alive answer in time".into()),
            }
            tokio::time::sleep(every).await;
        }
    };
    let mut campaigner = client.clone();
    let name = keys.election();
    let node = options.node.clone();
    let campaign = async move {
        // Blocks until this node leads; the lease keeps the lead, and losing it loses it.
        campaigner.campaign(name, node, lease).await.map_err(|e| e.to_string())
    };
    tokio::pin!(keep_alive);
    tokio::select! {
        lost = &mut keep_alive => return lost,
        won = campaign => {
            won?;
            tracing::info!(node = %options.node, "this node leads ramps and the guard");
            let _ = leader.send(true);
        }
    }
    let lost = keep_alive.await;
    let _ = client.lease_revoke(lease).await;
    lost
}
