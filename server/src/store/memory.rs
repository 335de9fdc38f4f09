//! In-memory backend: the same contract as the durable one, minus durability.
//!
//! For tests and `--store memory`. It keeps what the redb backend keeps, the same way:
//! history records per key (bounded by the history retention), a change log of the keys
//! each revision changed, and the count of bytes held.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use graycast_protocol::{HistoryItem, Revision};

use super::history::Pager;
use super::record::Record;
use super::request::{kept_of, oldest_kept_ms};
use super::{
    Change, ChangePage, HistoryPage, Kept, Loaded, LocalBackend, StoreError, StoreOptions,
};

#[derive(Default)]
struct State {
    /// History records by key (`"{ns}/{key}"`), then by revision, with their size.
    history: BTreeMap<String, BTreeMap<Revision, (Record, usize)>>,
    /// Revision and key of the most recent changes.
    log: VecDeque<(Revision, String)>,
    /// The revision of the last change dropped from the log.
    compacted: Revision,
    bytes: u64,
    /// What is kept of writes made with an `Idempotency-Key`, and the keys by age.
    idempotent: HashMap<String, Kept>,
    idempotent_by_age: VecDeque<(i64, String)>,
}

/// A backend that forgets everything when the process ends.
pub struct MemoryBackend {
    state: Mutex<State>,
    changelog_retain: u64,
    history_retain: u64,
}

impl MemoryBackend {
    pub fn new(options: &StoreOptions) -> MemoryBackend {
        MemoryBackend {
            state: Mutex::new(State::default()),
            changelog_retain: options.changelog_retain.max(1),
            history_retain: options.history_retain,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn slot(namespace: &str, key: &str) -> String {
    format!("{namespace}/{key}")
}

impl LocalBackend for MemoryBackend {
    fn load(&self) -> Result<Loaded, StoreError> {
        Ok(Loaded::default())
    }

    fn persist(&self, changes: &[Change]) -> Result<(), StoreError> {
        let mut state = self.state();
        for change in changes {
            let slot = slot(&change.namespace, &change.key);
            let record = Record::of(change);
            let size = serde_json::to_vec(&record).map_or(0, |b| b.len());
            let records = state.history.entry(slot.clone()).or_default();
            records.insert(change.revision, (record, size));
            let mut freed = 0;
            while self.history_retain > 0 && records.len() as u64 > self.history_retain {
                if let Some((_, (_, size))) = records.pop_first() {
                    freed += size;
                }
            }
            state.bytes = (state.bytes + size as u64).saturating_sub(freed as u64);
            state.log.push_back((change.revision, slot));
            if let Some(kept) = kept_of(change) {
                state.idempotent_by_age.push_back((kept.0, kept.1.clone()));
                state.idempotent.insert(kept.1, kept.2);
            }
        }
        let oldest = oldest_kept_ms();
        while state.idempotent_by_age.front().is_some_and(|(at, _)| *at < oldest) {
            if let Some((_, key)) = state.idempotent_by_age.pop_front() {
                state.idempotent.remove(&key);
            }
        }
        while state.log.len() as u64 > self.changelog_retain {
            if let Some((revision, _)) = state.log.pop_front() {
                state.compacted = revision;
            }
        }
        Ok(())
    }

    fn changes_after(&self, after: Revision, limit: usize) -> Result<ChangePage, StoreError> {
        let state = self.state();
        if after < state.compacted {
            return Ok(ChangePage::Compacted);
        }
        let start = state.log.partition_point(|(revision, _)| *revision <= after);
        let mut changes = Vec::new();
        for (revision, slot) in state.log.iter().skip(start).take(limit) {
            let Some((record, _)) = state.history.get(slot).and_then(|r| r.get(revision)) else {
                return Ok(ChangePage::Compacted);
            };
            let (namespace, key) = slot.split_once('/').unwrap_or((slot, ""));
            changes.push(Arc::new(record.clone().into_change(namespace, key, *revision)));
        }
        Ok(ChangePage::Changes(changes))
    }

    fn history(
        &self,
        namespace: &str,
        key: &str,
        before: Option<Revision>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<HistoryPage, StoreError> {
        let state = self.state();
        let Some(records) = state.history.get(&slot(namespace, key)) else {
            return Ok(HistoryPage::default());
        };
        let before = before.unwrap_or(Revision::MAX);
        let mut pager = Pager::new(limit, max_bytes);
        for (revision, (record, size)) in records.range(..before).rev() {
            if !pager.take(*size, || record.clone().into_item(*revision)) {
                break;
            }
        }
        Ok(pager.finish())
    }

    fn history_at(
        &self,
        namespace: &str,
        key: &str,
        revision: Revision,
    ) -> Result<Option<HistoryItem>, StoreError> {
        let state = self.state();
        let record = state.history.get(&slot(namespace, key)).and_then(|r| r.get(&revision));
        Ok(record.map(|(record, _)| record.clone().into_item(revision)))
    }

    fn change_at(
        &self,
        namespace: &str,
        key: &str,
        revision: Revision,
    ) -> Result<Option<Change>, StoreError> {
        let state = self.state();
        let record = state.history.get(&slot(namespace, key)).and_then(|r| r.get(&revision));
        Ok(record.map(|(record, _)| record.clone().into_change(namespace, key, revision)))
    }

    fn idempotent(&self, key: &str) -> Result<Option<Kept>, StoreError> {
        let state = self.state();
        Ok(state.idempotent.get(key).filter(|k| k.at_ms >= oldest_kept_ms()).cloned())
    }

    fn stored_bytes(&self) -> u64 {
        self.state().bytes
    }

    fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
