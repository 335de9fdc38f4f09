//! Reads: the state loaded at start (and after a compaction), history, the change log
//! for replays, and the guards' ephemeral counts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use etcd_client::{EventType, GetOptions, KvClient, Txn, TxnOp, TxnOpResponse, WatchOptions};
use graycast_protocol::{HistoryItem, Revision};

use super::keys::{
    change_of, decode_record, entry_from_history, marker_of, prefix_end, slot, Keys, Marker,
};
use super::{etcd_err, retry, EtcdEngine, LOAD_PAGE, MAX_MESSAGE, REQUEST_TIMEOUT, TXN_READS};
use crate::metrics::EtcdOp;
use crate::store::history::Pager;
use crate::store::{ChangePage, HistoryPage, Loaded, StoreError};

/// Reads the state under the prefix at one revision: the entries, and the counters.
pub(super) async fn load(
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

impl EtcdEngine {
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
            let response = retry(&self.metrics, EtcdOp::Read, || async {
                self.kv().get(first.clone(), Some(options.clone())).await
            })
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
        retry(&self.metrics, EtcdOp::Read, || async {
            self.kv().get(self.keys.ready(), None).await.map(|_| ())
        })
        .await
        .map_err(|e| etcd_err("etcd does not answer", e))
    }

    /// What every node published under names starting with `prefix`.
    pub async fn read_ephemeral(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let from = self.keys.ephemeral(prefix);
        let response = retry(&self.metrics, EtcdOp::Read, || async {
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
