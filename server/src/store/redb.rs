//! Durable backend on redb: one file, one write transaction per committed batch.
//!
//! Tables (all values are JSON):
//! - `meta`: `"revision"` (last committed) and `"compacted"` (last revision dropped from the log);
//! - `entries`: `"{ns}/{key}"` to the live [`Entry`];
//! - `history`: (`"{ns}/{key}"`, revision) to the [`HistoryItem`] of that change, kept forever;
//! - `changelog`: revision to the [`Change`], pruned to the most recent `retain`.
//!
//! Names cannot contain `/`, so `"{ns}/{key}"` is unambiguous.

use std::path::Path;
use std::sync::Arc;

use graycast_protocol::{Entry, HistoryItem, Revision};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Backend, Change, ChangePage, HistoryPage, Loaded, StoreError};

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");
const HISTORY: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("history");
const CHANGELOG: TableDefinition<u64, &[u8]> = TableDefinition::new("changelog");

const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";

/// Most change-log records dropped in one commit, so that lowering the retention of a
/// large log spreads the pruning over several commits instead of stalling one.
const MAX_PRUNE_PER_COMMIT: u64 = 10_000;

/// The durable, embedded backend.
pub struct RedbBackend {
    db: Database,
    retain: u64,
}

fn backend_err(err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(err.to_string())
}

fn corrupt(what: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {err}"))
}

/// Decodes a stored record. Values are limited to 64 levels (see
/// `graycast_protocol::value`), but servers before that limit accepted values up to
/// 127 levels deep, which their records wrap in more: reading without serde_json's
/// recursion limit keeps such a data dir readable. Every record was written by us and
/// is bounded by what was once accepted, so the stack stays bounded too.
fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    deserializer.disable_recursion_limit();
    let value = T::deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

fn slot(namespace: &str, key: &str) -> String {
    format!("{namespace}/{key}")
}

impl RedbBackend {
    /// Opens (or creates) the database file and its tables.
    pub fn open(path: &Path, retain: u64) -> Result<RedbBackend, StoreError> {
        let db = Database::create(path)
            .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(backend_err)?;
        {
            txn.open_table(META).map_err(backend_err)?;
            txn.open_table(ENTRIES).map_err(backend_err)?;
            txn.open_table(HISTORY).map_err(backend_err)?;
            txn.open_table(CHANGELOG).map_err(backend_err)?;
        }
        txn.commit().map_err(backend_err)?;
        Ok(RedbBackend { db, retain: retain.max(1) })
    }

    fn compacted(&self) -> Result<Revision, StoreError> {
        let txn = self.db.begin_read().map_err(backend_err)?;
        let meta = txn.open_table(META).map_err(backend_err)?;
        let compacted = meta.get(META_COMPACTED).map_err(backend_err)?.map_or(0, |v| v.value());
        Ok(compacted)
    }
}

impl Backend for RedbBackend {
    fn load(&self) -> Result<Loaded, StoreError> {
        let txn = self.db.begin_read().map_err(backend_err)?;
        let meta = txn.open_table(META).map_err(backend_err)?;
        let revision = meta.get(META_REVISION).map_err(backend_err)?.map_or(0, |v| v.value());
        let table = txn.open_table(ENTRIES).map_err(backend_err)?;
        let mut entries = Vec::new();
        for row in table.iter().map_err(backend_err)? {
            let (k, v) = row.map_err(backend_err)?;
            let entry: Entry =
                decode(v.value()).map_err(|e| corrupt(&format!("entry {}", k.value()), e))?;
            entries.push(entry);
        }
        Ok(Loaded { revision, entries })
    }

    fn persist(&self, changes: &[Change]) -> Result<(), StoreError> {
        let Some(last) = changes.last() else {
            return Ok(());
        };
        let mut txn = self.db.begin_write().map_err(backend_err)?;
        txn.set_durability(Durability::Immediate).map_err(backend_err)?;
        {
            let mut entries = txn.open_table(ENTRIES).map_err(backend_err)?;
            let mut history = txn.open_table(HISTORY).map_err(backend_err)?;
            let mut log = txn.open_table(CHANGELOG).map_err(backend_err)?;
            let mut meta = txn.open_table(META).map_err(backend_err)?;
            for change in changes {
                let slot = slot(&change.namespace, &change.key);
                match &change.entry {
                    Some(entry) => {
                        let bytes = serde_json::to_vec(entry.as_ref()).map_err(backend_err)?;
                        entries.insert(slot.as_str(), bytes.as_slice()).map_err(backend_err)?;
                    }
                    None => {
                        entries.remove(slot.as_str()).map_err(backend_err)?;
                    }
                }
                let item = serde_json::to_vec(&change.history_item()).map_err(backend_err)?;
                history
                    .insert((slot.as_str(), change.revision), item.as_slice())
                    .map_err(backend_err)?;
                let record = serde_json::to_vec(change).map_err(backend_err)?;
                log.insert(change.revision, record.as_slice()).map_err(backend_err)?;
            }
            meta.insert(META_REVISION, last.revision).map_err(backend_err)?;

            let compacted = meta.get(META_COMPACTED).map_err(backend_err)?.map_or(0, |v| v.value());
            let keep_from = last.revision.saturating_sub(self.retain) + 1;
            if compacted + 1 < keep_from {
                let upto = (keep_from - 1).min(compacted + MAX_PRUNE_PER_COMMIT);
                let mut dropped = 0u64;
                for row in log.extract_from_if(..=upto, |_, _| true).map_err(backend_err)? {
                    row.map_err(backend_err)?;
                    dropped += 1;
                }
                tracing::trace!(dropped, upto, "pruned change log");
                meta.insert(META_COMPACTED, upto).map_err(backend_err)?;
            }
        }
        txn.commit().map_err(backend_err)?;
        Ok(())
    }

    fn changes_after(&self, after: Revision, limit: usize) -> Result<ChangePage, StoreError> {
        let txn = self.db.begin_read().map_err(backend_err)?;
        let meta = txn.open_table(META).map_err(backend_err)?;
        let compacted = meta.get(META_COMPACTED).map_err(backend_err)?.map_or(0, |v| v.value());
        if after < compacted {
            return Ok(ChangePage::Compacted);
        }
        let log = txn.open_table(CHANGELOG).map_err(backend_err)?;
        let mut changes = Vec::new();
        for row in log.range(after.saturating_add(1)..).map_err(backend_err)?.take(limit) {
            let (rev, v) = row.map_err(backend_err)?;
            let change: Change = decode(v.value())
                .map_err(|e| corrupt(&format!("change log record {}", rev.value()), e))?;
            changes.push(Arc::new(change));
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
        let slot = slot(namespace, key);
        let txn = self.db.begin_read().map_err(backend_err)?;
        let table = txn.open_table(HISTORY).map_err(backend_err)?;
        let before = before.unwrap_or(Revision::MAX);
        let range =
            table.range((slot.as_str(), 0)..(slot.as_str(), before)).map_err(backend_err)?;
        let mut page = HistoryPage::default();
        let mut bytes = 0;
        for row in range.rev() {
            let (k, v) = row.map_err(backend_err)?;
            let size = v.value().len();
            if page.items.len() == limit || (!page.items.is_empty() && bytes + size > max_bytes) {
                page.more = true;
                break;
            }
            bytes += size;
            let item: HistoryItem = decode(v.value())
                .map_err(|e| corrupt(&format!("history of {slot} at {}", k.value().1), e))?;
            page.items.push(item);
        }
        Ok(page)
    }

    fn history_at(
        &self,
        namespace: &str,
        key: &str,
        revision: Revision,
    ) -> Result<Option<HistoryItem>, StoreError> {
        let slot = slot(namespace, key);
        let txn = self.db.begin_read().map_err(backend_err)?;
        let table = txn.open_table(HISTORY).map_err(backend_err)?;
        let Some(v) = table.get((slot.as_str(), revision)).map_err(backend_err)? else {
            return Ok(None);
        };
        let item = decode(v.value())
            .map_err(|e| corrupt(&format!("history of {slot} at {revision}"), e))?;
        Ok(Some(item))
    }

    fn check(&self) -> Result<(), StoreError> {
        self.compacted().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use graycast_protocol::Op;
    use serde_json::json;

    use super::*;

    fn change(revision: Revision, key: &str, value: Option<serde_json::Value>) -> Change {
        let now = Utc::now();
        Change {
            revision,
            op: if value.is_some() { Op::Put } else { Op::Delete },
            namespace: "ns".into(),
            key: key.into(),
            entry: value.map(|value| {
                Arc::new(Entry {
                    namespace: "ns".into(),
                    key: key.into(),
                    value,
                    revision,
                    created_revision: revision,
                    version: 1,
                    updated_at: now,
                    updated_by: "t".into(),
                    gray: None,
                })
            }),
            at: now,
            by: "t".into(),
            note: None,
        }
    }

    #[test]
    fn persists_across_reopen_keeps_history_and_prunes_the_log() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("db.redb");
        {
            let db = RedbBackend::open(&path, 3).expect("opens");
            db.persist(&[change(1, "a", Some(json!(1))), change(2, "b", Some(json!(2)))])
                .expect("persists");
            db.persist(&[change(3, "a", Some(json!(3)))]).expect("persists");
            db.persist(&[change(4, "b", None), change(5, "a", Some(json!(5)))]).expect("persists");
        }
        let db = RedbBackend::open(&path, 3).expect("reopens");
        let loaded = db.load().expect("loads");
        assert_eq!(loaded.revision, 5);
        let live: Vec<(String, serde_json::Value)> =
            loaded.entries.into_iter().map(|e| (e.key, e.value)).collect();
        assert_eq!(live, [("a".to_owned(), json!(5))]);

        let history: Vec<Revision> = db
            .history("ns", "a", None, 10, 1 << 20)
            .expect("history")
            .items
            .iter()
            .map(|h| h.revision)
            .collect();
        assert_eq!(history, [5, 3, 1]);
        let paged: Vec<Revision> = db
            .history("ns", "a", Some(5), 1, 1 << 20)
            .expect("history")
            .items
            .iter()
            .map(|h| h.revision)
            .collect();
        assert_eq!(paged, [3]);
        assert!(db.history("ns", "nope", None, 10, 1 << 20).expect("history").items.is_empty());
        assert_eq!(db.history_at("ns", "b", 4).expect("read").map(|h| h.op), Some(Op::Delete));
        assert!(db.history_at("ns", "a", 4).expect("read").is_none());

        // The log keeps the last 3 changes: 3, 4, 5.
        assert!(matches!(db.changes_after(1, 10), Ok(ChangePage::Compacted)));
        let ChangePage::Changes(after_2) = db.changes_after(2, 10).expect("reads") else {
            panic!("2 is still covered");
        };
        assert_eq!(after_2.iter().map(|c| c.revision).collect::<Vec<_>>(), [3, 4, 5]);
        let ChangePage::Changes(limited) = db.changes_after(2, 2).expect("reads") else {
            panic!("2 is still covered");
        };
        assert_eq!(limited.len(), 2);
        let ChangePage::Changes(none) = db.changes_after(5, 10).expect("reads") else {
            panic!("5 is the head");
        };
        assert!(none.is_empty());
    }
}
