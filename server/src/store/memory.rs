//! In-memory backend: the same contract as the durable one, minus durability.
//!
//! For tests and `--store memory`. Live entries are kept by the store's cache, so this
//! backend keeps only what the cache does not: history and the change log.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use graycast_protocol::{HistoryItem, Revision};

use super::{Backend, Change, ChangePage, HistoryPage, Loaded, StoreError};

#[derive(Default)]
struct State {
    /// History by key (`"{ns}/{key}"`), then by revision.
    history: BTreeMap<String, BTreeMap<Revision, HistoryItem>>,
    log: VecDeque<Arc<Change>>,
    /// The revision of the last change dropped from the log.
    compacted: Revision,
}

/// A backend that forgets everything when the process ends.
pub struct MemoryBackend {
    state: Mutex<State>,
    retain: u64,
}

impl MemoryBackend {
    /// A backend whose change log keeps the last `retain` changes.
    pub fn new(retain: u64) -> MemoryBackend {
        MemoryBackend { state: Mutex::new(State::default()), retain: retain.max(1) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn slot(namespace: &str, key: &str) -> String {
    format!("{namespace}/{key}")
}

impl Backend for MemoryBackend {
    fn load(&self) -> Result<Loaded, StoreError> {
        Ok(Loaded::default())
    }

    fn persist(&self, changes: &[Change]) -> Result<(), StoreError> {
        let mut state = self.state();
        for change in changes {
            state
                .history
                .entry(slot(&change.namespace, &change.key))
                .or_default()
                .insert(change.revision, change.history_item());
            state.log.push_back(Arc::new(change.clone()));
        }
        while state.log.len() as u64 > self.retain {
            if let Some(dropped) = state.log.pop_front() {
                state.compacted = dropped.revision;
            }
        }
        Ok(())
    }

    fn changes_after(&self, after: Revision, limit: usize) -> Result<ChangePage, StoreError> {
        let state = self.state();
        if after < state.compacted {
            return Ok(ChangePage::Compacted);
        }
        let start = state.log.partition_point(|c| c.revision <= after);
        Ok(ChangePage::Changes(state.log.iter().skip(start).take(limit).cloned().collect()))
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
        let Some(items) = state.history.get(&slot(namespace, key)) else {
            return Ok(HistoryPage::default());
        };
        let before = before.unwrap_or(Revision::MAX);
        let mut page = HistoryPage::default();
        let mut bytes = 0;
        for (_, item) in items.range(..before).rev() {
            let size = graycast_protocol::value::compact_size(&item.value);
            if page.items.len() == limit || (!page.items.is_empty() && bytes + size > max_bytes) {
                page.more = true;
                break;
            }
            bytes += size;
            page.items.push(item.clone());
        }
        Ok(page)
    }

    fn history_at(
        &self,
        namespace: &str,
        key: &str,
        revision: Revision,
    ) -> Result<Option<HistoryItem>, StoreError> {
        let state = self.state();
        Ok(state.history.get(&slot(namespace, key)).and_then(|items| items.get(&revision)).cloned())
    }

    fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
