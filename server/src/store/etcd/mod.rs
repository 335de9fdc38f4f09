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

mod keys;
mod lease;
mod reads;
mod watcher;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use dashmap::DashMap;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, KvClient,
    PutOptions, SortOrder, SortTarget, TlsOptions, Txn, TxnOp, TxnOpResponse,
};
use graycast_protocol::{Entry, Revision};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::keys::{entry_from_history, marker_of, prefix_end, slot, Keys, Marker, Pointer};
use self::lease::{session, Clients};
use self::reads::load;
use self::watcher::Watcher;

use super::plan::{plan, Planned};
use super::record::Record;
use super::{Change, FeedReceiver, Loaded, Shared, StoreError, StoreOptions, WriteRequest};

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
/// How often the leading node considers compacting etcd.
const COMPACT_CHECK: Duration = Duration::from_secs(2);
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

/// Keeps etcd bounded: on the leading node, compacts etcd's revisions older than the last
/// `retain` (replays reach back as far as on one node: `--changelog-retain`; history and
/// entries live in keys of their own, which compaction keeps). Compacts once the window
/// has moved on by a tenth of itself (at least 100 revisions), so it runs now and then.
async fn compact(
    mut kv: KvClient,
    leader: watch::Receiver<bool>,
    last_change: Arc<AtomicU64>,
    retain: u64,
    mut stop: watch::Receiver<bool>,
) {
    let step = (retain / 10).max(100);
    let mut compacted: u64 = 0;
    loop {
        tokio::select! {
            _ = watcher::stopped(&mut stop) => return,
            _ = tokio::time::sleep(COMPACT_CHECK) => {}
        }
        if !*leader.borrow() {
            continue;
        }
        let target = last_change.load(Ordering::Acquire).saturating_sub(retain);
        if target < compacted + step {
            continue;
        }
        match kv.compact(target as i64, None).await {
            Ok(_) => {
                tracing::debug!(revision = target, "compacted etcd");
                compacted = target;
            }
            // Another node (or an operator) compacted further already.
            Err(err) if err.to_string().contains("compacted") => compacted = target,
            Err(err) => tracing::debug!(error = %err, "cannot compact etcd yet"),
        }
    }
}

/// Whether a request failed before it was sent (no connection to the member): it cannot
/// have taken effect.
fn never_sent(err: &etcd_client::Error) -> bool {
    let text = err.to_string();
    text.contains("tcp connect error") || text.contains("Connection refused")
}

/// A write whose outcome cannot be known: it may or may not have taken effect.
fn outcome_unknown(slot: &str, why: &str) -> StoreError {
    StoreError::OutcomeUnknown(format!(
        "the write of {slot} may or may not have taken effect ({why}); read the key before \
         writing it again"
    ))
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
    /// A client without the request timeout, for calls that block (the campaign).
    patient: Client,
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
        let connect = connect.with_timeout(REQUEST_TIMEOUT);
        let client = Client::connect(&options.endpoints, Some(connect)).await.map_err(cannot)?;
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
            patient,
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
        };
        Ok((engine, loaded))
    }

    /// Starts the watch (which feeds the cache and the hub) and the node's session (its
    /// lease and its campaign to lead).
    pub fn start(&self, shared: Arc<Shared>) -> FeedReceiver {
        let (feed, feed_rx) = std_mpsc::channel();
        let metrics = shared.metrics.clone();
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
            self.leader.clone(),
            self.last_change.clone(),
            self.changelog_retain,
            self.stop.subscribe(),
        ));
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend([watch, session, compactor]);
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
        let reads = self.key_state_reads(&slot);
        let response = retry(|| async { self.kv().txn(Txn::new().and_then(reads.clone())).await })
            .await
            .map_err(|e| etcd_err("cannot read from etcd", e))?;
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
        // The `seq` of each attempt whose outcome is unknown (its answer was lost): the
        // history record it would have made carries this write's id.
        let mut unknown: Vec<u64> = Vec::new();
        // Why the last attempt that reached no member failed.
        let mut failure: Option<String> = None;
        for _ in 0..MAX_ATTEMPTS {
            if !unknown.is_empty() {
                // Did an attempt commit after all? Never plan the write again if so.
                if let Some(change) =
                    self.own_commit(&request, &slot, &unknown, &write_id, state.seq).await?
                {
                    shared.wait_applied(change.revision, APPLY_WAIT).await;
                    return Ok(change);
                }
            }
            let now = Utc::now().trunc_subsecs(3);
            let planned = match plan(&request, state.entry.as_deref(), now) {
                Ok(planned) => planned,
                // The cache may be behind etcd: only etcd's own state may refuse a write.
                Err(_) if !fresh => {
                    state =
                        self.read_key(&request.namespace, &request.key).await.map_err(|err| {
                            if unknown.is_empty() {
                                err
                            } else {
                                outcome_unknown(&slot, &err.to_string())
                            }
                        })?;
                    fresh = true;
                    continue;
                }
                // Refused by etcd's own state; an earlier attempt, if any, did not commit
                // (it was checked above) and cannot any more (the key moved past it).
                Err(err) => return Err(err),
            };
            let txn = self.transaction(&slot, &state, &planned, &write_id)?;
            let attempt = state.seq + 1;
            let answered = match (self.kv().txn(txn).await, &self.options.lost_answers) {
                (Ok(response), Some(faults)) if response.succeeded() && faults.take() => {
                    faults.lost.notify_one();
                    faults.resume.notified().await;
                    Err(etcd_client::Error::InvalidArgs("the answer was lost (injected)".into()))
                }
                (answered, _) => answered,
            };
            match answered {
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
                        if unknown.is_empty() {
                            return Err(refused);
                        }
                    }
                    if never_sent(&err) {
                        // This member could not be reached; the balancer tries another.
                        failure = Some(err.to_string());
                        tokio::time::sleep(RETRY_MIN).await;
                        continue;
                    }
                    // Whether it committed is unknown: its own record will tell.
                    unknown.push(attempt);
                    tracing::debug!(error = %err, "etcd write failed; reading the key's state");
                    state = self
                        .read_key(&request.namespace, &request.key)
                        .await
                        .map_err(|_| outcome_unknown(&slot, &err.to_string()))?;
                    fresh = true;
                }
            }
        }
        if !unknown.is_empty() {
            if let Some(change) =
                self.own_commit(&request, &slot, &unknown, &write_id, state.seq).await?
            {
                shared.wait_applied(change.revision, APPLY_WAIT).await;
                return Ok(change);
            }
            // An attempt may still be in flight in etcd: "nothing changed" would be a lie.
            return Err(outcome_unknown(&slot, "etcd did not confirm any attempt"));
        }
        Err(StoreError::Unavailable(match failure {
            Some(failure) => format!("cannot write to etcd: {failure}"),
            None => format!("key {slot} kept changing under the write; try again"),
        }))
    }

    /// The change one of this write's attempts made, if one committed: the history record
    /// at an attempt's `seq` carries the write's id. `seq` is the key's change count now;
    /// a record at or below it that is gone (retention) leaves the outcome unknown.
    async fn own_commit(
        &self,
        request: &WriteRequest,
        slot: &str,
        attempts: &[u64],
        write_id: &str,
        seq: u64,
    ) -> Result<Option<Arc<Change>>, StoreError> {
        let reads: Vec<TxnOp> =
            attempts.iter().map(|a| TxnOp::get(self.keys.history(slot, *a), None)).collect();
        let response = retry(|| async { self.kv().txn(Txn::new().and_then(reads.clone())).await })
            .await
            .map_err(|e| outcome_unknown(slot, &e.to_string()))?;
        for (attempt, read) in attempts.iter().zip(response.op_responses()) {
            let found = match read {
                TxnOpResponse::Get(get) => get.kvs().first().cloned(),
                _ => None,
            };
            match found {
                Some(kv) => {
                    let record = keys::decode_record(&kv)?;
                    if record.write_id.as_deref() == Some(write_id) {
                        let revision = kv.mod_revision() as Revision;
                        let change = record.into_change(&request.namespace, &request.key, revision);
                        return Ok(Some(Arc::new(change)));
                    }
                }
                None if *attempt <= seq => {
                    return Err(outcome_unknown(
                        slot,
                        "the record that would tell is gone (--history-retain)",
                    ));
                }
                None => {}
            }
        }
        Ok(None)
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
