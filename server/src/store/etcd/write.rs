//! The write: one transaction per change, planned against etcd's state, applied at most
//! once (an attempt whose answer was lost is recognized by its own history record), and
//! honest about outcomes it cannot know.

use std::sync::Arc;

use chrono::{SubsecRound, Utc};
use etcd_client::{
    Compare, CompareOp, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
};
use graycast_protocol::{Entry, Revision};

use super::keys::{self, entry_from_history, marker_of, prefix_end, slot, KeptAt, Marker, Pointer};
use super::{etcd_err, measured, retry, EtcdEngine, APPLY_WAIT, MAX_ATTEMPTS, RETRY_MIN};
use crate::metrics::EtcdOp;
use crate::schema::SCHEMAS_NAMESPACE;
use crate::store::plan::{plan, Planned};
use crate::store::record::Record;
use crate::store::request::{repeat, IDEMPOTENCY_WINDOW};
use crate::store::{Change, Idempotency, Kept, Shared, StoreError, WriteRequest};

/// Rounds of reads (each retried) after a write whose outcome is unknown, before the
/// caller is told so.
const UNKNOWN_READ_ROUNDS: usize = 3;

/// How often the lease of the `i/` keys is replaced.
const IDEMPOTENCY_LEASE_RENEWAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Time allowed to each request of a write. Short: a member that stalls (paused, cut
/// off) keeps its connection open and answers nothing, and the client's balancer may pick
/// it again; an attempt cut short is resolved by its write id like any lost answer, and
/// the next goes, most likely, to another member.
const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(1500);

/// A request of a write, within [`ATTEMPT_TIMEOUT`].
async fn within<T>(
    request: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, etcd_client::Error> {
    tokio::time::timeout(ATTEMPT_TIMEOUT, request).await.unwrap_or_else(|_| {
        Err(etcd_client::Error::IoError(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("etcd did not answer within {ATTEMPT_TIMEOUT:?}"),
        )))
    })
}

/// Whether a request failed before it was sent (no connection to the member): it cannot
/// have taken effect.
pub(super) fn never_sent(err: &etcd_client::Error) -> bool {
    let text = err.to_string();
    text.contains("tcp connect error") || text.contains("Connection refused")
}

/// A write whose outcome cannot be known: it may or may not have taken effect.
pub(super) fn outcome_unknown(slot: &str, why: &str) -> StoreError {
    StoreError::OutcomeUnknown(format!(
        "the write of {slot} may or may not have taken effect ({why}); read the key before \
         writing it again"
    ))
}

/// Whether etcd refused a request for its size (`--max-request-bytes`).
pub(super) fn too_large(err: &etcd_client::Error) -> Option<StoreError> {
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
pub(super) struct KeyState {
    pub(super) entry: Option<Arc<Entry>>,
    /// Changes ever made to the key (the counter's version).
    pub(super) seq: u64,
    /// What is kept of the write made with the request's `Idempotency-Key`, if it was.
    pub(super) kept: Option<KeptAt>,
}

impl KeyState {
    pub(super) fn from_gets(
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
                1 => state.seq = kv.version() as u64,
                2 => newest = Some(kv.clone()),
                _ => {
                    state.kept =
                        Some(serde_json::from_slice(kv.value()).map_err(|e| {
                            StoreError::Corrupt(format!("an idempotency record: {e}"))
                        })?)
                }
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

impl EtcdEngine {
    /// The key's state in etcd (entry and counter), read together.
    /// After a failed transaction: when the namespace's schemas changed since this node
    /// planned with them, waits until it has applied the change, so the next plan checks
    /// the write against the schemas etcd holds.
    async fn catch_up_on_schemas(
        &self,
        shared: &Shared,
        namespace: &str,
        planned_with: Option<Revision>,
    ) -> Result<(), StoreError> {
        if namespace == SCHEMAS_NAMESPACE {
            return Ok(());
        }
        // The counter moves with every change of the schemas, their removal included.
        let counter = self.keys.counter(&slot(SCHEMAS_NAMESPACE, namespace));
        let response = match retry(&self.metrics, EtcdOp::Read, || async {
            within(self.kv().get(counter.clone(), None)).await
        })
        .await
        {
            Ok(response) => response,
            Err(err) => {
                // Not knowing how far to catch up, wait for the watch's next change: the
                // write is planned again after it, and etcd's comparison still guards it.
                tracing::debug!(error = %err, "cannot read when the schemas changed");
                shared.wait_applied(shared.revision() + 1, APPLY_WAIT).await;
                return Ok(());
            }
        };
        let changed_at = response.kvs().first().map(|kv| kv.mod_revision() as Revision);
        let known = shared.get(SCHEMAS_NAMESPACE, namespace).map(|e| e.revision);
        if let Some(at) = changed_at.filter(|at| Some(*at) != planned_with && Some(*at) != known) {
            shared.wait_applied(at, APPLY_WAIT).await;
        }
        Ok(())
    }

    pub(super) async fn read_key(
        &self,
        namespace: &str,
        key: &str,
        idempotent: Option<&str>,
    ) -> Result<KeyState, StoreError> {
        let slot = slot(namespace, key);
        let reads = self.key_state_reads(&slot, idempotent);
        let response = retry(&self.metrics, EtcdOp::Read, || async {
            within(self.kv().txn(Txn::new().and_then(reads.clone()))).await
        })
        .await
        .map_err(|e| etcd_err("cannot read from etcd", e))?;
        KeyState::from_gets(response.op_responses(), namespace, key)
    }

    /// [`Self::read_key`] through each member in turn, on a connection of its own to each
    /// (kept for the next time), until one answers: after a stalled member took a write's
    /// answer, the balanced client can keep choosing it (its connection stays open until its
    /// keep-alive fails). Reads are linearizable on any member that has a leader.
    async fn read_key_member_by_member(
        &self,
        namespace: &str,
        key: &str,
        idempotent: Option<&str>,
    ) -> Result<KeyState, StoreError> {
        let reads = self.key_state_reads(&slot(namespace, key), idempotent);
        let mut failure = None;
        for (i, endpoint) in self.options.endpoints.iter().enumerate() {
            let answer = measured(
                &self.metrics,
                EtcdOp::Read,
                within(async {
                    let client = self.member_client(i, endpoint).await?;
                    client.kv_client().txn(Txn::new().and_then(reads.clone())).await
                }),
            )
            .await;
            match answer {
                Ok(response) => {
                    return KeyState::from_gets(response.op_responses(), namespace, key)
                }
                Err(err) => {
                    self.member_clients.lock().await[i] = None;
                    failure = Some(err);
                }
            }
        }
        Err(match failure {
            Some(err) => etcd_err("cannot read from etcd", err),
            None => StoreError::Unavailable("no etcd endpoint to read from".into()),
        })
    }

    /// The client of member `i` alone, connected on first use.
    async fn member_client(
        &self,
        i: usize,
        endpoint: &str,
    ) -> Result<etcd_client::Client, etcd_client::Error> {
        let mut clients = self.member_clients.lock().await;
        if let Some(client) = clients.get(i).cloned().flatten() {
            return Ok(client);
        }
        let options = self.watch_options.clone().with_connect_timeout(ATTEMPT_TIMEOUT);
        let client = etcd_client::Client::connect([endpoint], Some(options)).await?;
        if let Some(slot) = clients.get_mut(i) {
            *slot = Some(client.clone());
        }
        Ok(client)
    }

    /// The reads that make a key's [`KeyState`]: its `e/` key, its counter, its newest
    /// history record, and the `i/` key of the write's `Idempotency-Key`, if any.
    pub(super) fn key_state_reads(&self, slot: &str, idempotent: Option<&str>) -> Vec<TxnOp> {
        let history = self.keys.history_of(slot);
        let newest = GetOptions::new()
            .with_range(prefix_end(&history))
            .with_sort(SortTarget::Key, SortOrder::Descend)
            .with_limit(1);
        let mut reads = vec![
            TxnOp::get(self.keys.entry(slot), None),
            TxnOp::get(self.keys.counter(slot), None),
            TxnOp::get(history, Some(newest)),
        ];
        reads.extend(idempotent.map(|key| TxnOp::get(key, None)));
        reads
    }

    /// One write, as one transaction (see the module's documentation).
    pub async fn write(
        &self,
        shared: &Shared,
        request: WriteRequest,
    ) -> Result<Arc<Change>, StoreError> {
        let slot = slot(&request.namespace, &request.key);
        let write_id = uuid::Uuid::new_v4().to_string();
        let idempotent = request.idempotency.as_ref().map(|i| self.keys.idempotent(&i.key));
        let idempotent = idempotent.as_deref();
        // The sequence number before the entry: the watcher updates them the other way
        // round, so the entry is at least as new as the number, and a stale pair can only
        // fail etcd's comparison (then the key is read from etcd), never pass it.
        let seq = self.seqs.get(&slot).map_or(0, |s| *s);
        let mut state =
            KeyState { entry: shared.get(&request.namespace, &request.key), seq, kept: None };
        let mut fresh = false;
        // The `seq` of each attempt whose outcome is unknown (its answer was lost): the
        // history record it would have made carries this write's id.
        let mut unknown: Vec<u64> = Vec::new();
        // Why the last attempt that reached no member failed.
        let mut failure: Option<String> = None;
        for _ in 0..MAX_ATTEMPTS {
            if let (Some(kept), Some(idempotency)) = (&state.kept, &request.idempotency) {
                // Made before with this key (by an attempt of this write, or another).
                let change = self.repeat(kept, idempotency).await?;
                shared.settle(&change, APPLY_WAIT).await;
                return Ok(change);
            }
            if !unknown.is_empty() {
                // Did an attempt commit after all? Never plan the write again if so.
                if let Some(change) =
                    self.own_commit(&request, &slot, &unknown, &write_id, state.seq).await?
                {
                    shared.settle(&change, APPLY_WAIT).await;
                    return Ok(change);
                }
            }
            let now = Utc::now().trunc_subsecs(3);
            // The namespace's schemas as this node knows them; the transaction requires
            // them unchanged, so a write is never checked against schemas another node
            // has replaced meanwhile.
            let schema = shared.get(SCHEMAS_NAMESPACE, &request.namespace);
            let schemas = schema.as_ref().and_then(|entry| shared.schemas.compiled(entry));
            let policies = shared.policies(None);
            let planned = match plan(
                &request,
                state.entry.as_deref(),
                now,
                schemas.as_deref(),
                policies.as_deref(),
            ) {
                Ok(planned) => planned,
                // The cache may be behind etcd: only etcd's own state may refuse a write.
                Err(_) if !fresh => {
                    state = self
                        .read_key(&request.namespace, &request.key, idempotent)
                        .await
                        .map_err(|err| {
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
            let schema_at = schema.map(|entry| entry.revision);
            let txn = self.transaction(&slot, &state, &planned, &write_id, schema_at).await?;
            let attempt = state.seq + 1;
            let mut kv = self.kv();
            let sent = measured(&self.metrics, EtcdOp::Write, within(kv.txn(txn))).await;
            let answered = match (sent, &self.options.lost_answers) {
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
                    shared.settle(&change, APPLY_WAIT).await;
                    return Ok(change);
                }
                Ok(response) => {
                    // The key, or its namespace's schemas, changed meanwhile: plan again
                    // against what etcd holds now, once this node has applied it.
                    self.catch_up_on_schemas(shared, &request.namespace, schema_at).await?;
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
                    // The member that stalled may answer the first reads too: only when
                    // none of a few rounds gets through is the outcome unknown to the caller.
                    let mut read = Err(StoreError::Unavailable(String::new()));
                    for round in 0..UNKNOWN_READ_ROUNDS {
                        let (namespace, key) = (&request.namespace, &request.key);
                        read = if round == 0 {
                            self.read_key(namespace, key, idempotent).await
                        } else {
                            self.read_key_member_by_member(namespace, key, idempotent).await
                        };
                        if read.is_ok() {
                            break;
                        }
                    }
                    state = read.map_err(|_| outcome_unknown(&slot, &err.to_string()))?;
                    fresh = true;
                }
            }
        }
        if !unknown.is_empty() {
            if let Some(change) =
                self.own_commit(&request, &slot, &unknown, &write_id, state.seq).await?
            {
                shared.settle(&change, APPLY_WAIT).await;
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
        let response = retry(&self.metrics, EtcdOp::Read, || async {
            within(self.kv().txn(Txn::new().and_then(reads.clone()))).await
        })
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

    /// The answer to a repeat of the write `kept` remembers: the change it made.
    async fn repeat(
        &self,
        kept: &KeptAt,
        idempotency: &Idempotency,
    ) -> Result<Arc<Change>, StoreError> {
        let remembered = Kept {
            fingerprint: kept.fingerprint.clone(),
            namespace: kept.namespace.clone(),
            key: kept.key.clone(),
            revision: 0,
            at_ms: 0,
        };
        let record = self.keys.history(&slot(&kept.namespace, &kept.key), kept.seq);
        let found = retry(&self.metrics, EtcdOp::Read, || async {
            within(self.kv().get(record.clone(), None)).await
        })
        .await
        .map_err(|e| etcd_err("cannot read from etcd", e))?;
        let change = match found.kvs().first() {
            Some(kv) => Some(keys::decode_record(kv)?.into_change(
                &kept.namespace,
                &kept.key,
                kv.mod_revision() as Revision,
            )),
            None => None,
        };
        repeat(&remembered, idempotency, change)
    }

    /// The transaction of a planned change on a key in `state`.
    async fn transaction(
        &self,
        slot: &str,
        state: &KeyState,
        planned: &Planned,
        write_id: &str,
        schema_at: Option<Revision>,
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
        let mut compares =
            vec![Compare::version(counter.clone(), CompareOp::Equal, state.seq as i64)];
        if change.namespace != SCHEMAS_NAMESPACE {
            let schema = self.keys.entry(&keys::slot(SCHEMAS_NAMESPACE, &change.namespace));
            compares.push(match schema_at {
                Some(revision) => Compare::mod_revision(schema, CompareOp::Equal, revision as i64),
                None => Compare::version(schema, CompareOp::Equal, 0),
            });
        }
        let mut idempotent = None;
        if let Some(idempotency) = &change.idempotency {
            // The key is kept with the change, and only if it was not kept before.
            let key = self.keys.idempotent(&idempotency.key);
            let kept = KeptAt {
                fingerprint: idempotency.fingerprint.clone(),
                namespace: change.namespace.clone(),
                key: change.key.clone(),
                seq,
            };
            let kept = serde_json::to_vec(&kept).map_err(|e| StoreError::Backend(e.to_string()))?;
            let lease = self.idempotency_lease().await?;
            compares.push(Compare::version(key.clone(), CompareOp::Equal, 0));
            ops.push(TxnOp::put(key.clone(), kept, Some(PutOptions::new().with_lease(lease))));
            idempotent = Some(key);
        }
        Ok(Txn::new()
            .when(compares)
            .and_then(ops)
            .or_else(self.key_state_reads(slot, idempotent.as_deref())))
    }

    /// Claims a request's `Idempotency-Key` for a request that is not a write (a guard
    /// report): whether it is the first with this key; a claim by another request is
    /// refused.
    pub async fn claim(&self, idempotency: &Idempotency) -> Result<bool, StoreError> {
        let key = self.keys.claimed(&idempotency.key);
        let lease = self.idempotency_lease().await?;
        let txn = Txn::new()
            .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                idempotency.fingerprint.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key.clone(), None)]);
        // Repeating the claim is safe: a claim whose answer was lost reads as a repeat of
        // itself, and the request it stands for is counted at most once.
        let response = retry(&self.metrics, EtcdOp::Write, || async {
            within(self.kv().txn(txn.clone())).await
        })
        .await
        .map_err(|e| etcd_err("cannot write to etcd", e))?;
        if response.succeeded() {
            return Ok(true);
        }
        let first = response.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.value().to_vec()),
            _ => None,
        });
        match first {
            Some(first) if first != idempotency.fingerprint.as_bytes() => {
                Err(crate::store::request::key_reused())
            }
            _ => Ok(false),
        }
    }

    /// The lease the `i/` keys live on: granted for the window and an hour, and replaced
    /// by a new one every hour, so that a key lives between the window and an hour more.
    async fn idempotency_lease(&self) -> Result<i64, StoreError> {
        let mut lease = self.idempotency_lease.lock().await;
        if let Some((id, granted)) = *lease {
            if granted.elapsed() < IDEMPOTENCY_LEASE_RENEWAL {
                return Ok(id);
            }
        }
        let ttl = (IDEMPOTENCY_WINDOW + IDEMPOTENCY_LEASE_RENEWAL).as_secs() as i64;
        let granted = retry(&self.metrics, EtcdOp::Lease, || async {
            self.client.clone().lease_grant(ttl, None).await
        })
        .await
        .map_err(|e| etcd_err("cannot grant a lease in etcd", e))?;
        *lease = Some((granted.id(), std::time::Instant::now()));
        Ok(granted.id())
    }
}
