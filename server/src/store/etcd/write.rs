//! The write: one transaction per change, planned against etcd's state, applied at most
//! once (an attempt whose answer was lost is recognized by its own history record), and
//! honest about outcomes it cannot know.

use std::sync::Arc;

use chrono::{SubsecRound, Utc};
use etcd_client::{
    Compare, CompareOp, GetOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
};
use graycast_protocol::{Entry, Revision};

use super::keys::{self, entry_from_history, marker_of, prefix_end, slot, Marker, Pointer};
use super::{etcd_err, retry, EtcdEngine, APPLY_WAIT, MAX_ATTEMPTS, RETRY_MIN};
use crate::store::plan::{plan, Planned};
use crate::store::record::Record;
use crate::store::{Change, Shared, StoreError, WriteRequest};

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

impl EtcdEngine {
    /// The key's state in etcd (entry and counter), read together.
    pub(super) async fn read_key(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<KeyState, StoreError> {
        let slot = slot(namespace, key);
        let reads = self.key_state_reads(&slot);
        let response = retry(|| async { self.kv().txn(Txn::new().and_then(reads.clone())).await })
            .await
            .map_err(|e| etcd_err("cannot read from etcd", e))?;
        KeyState::from_gets(response.op_responses(), namespace, key)
    }

    /// The reads that make a key's [`KeyState`]: its `e/` key, its counter and its newest
    /// history record.
    pub(super) fn key_state_reads(&self, slot: &str) -> [TxnOp; 3] {
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
}
