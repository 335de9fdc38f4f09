//! Durable backend on redb: one file, one write transaction per committed batch.
//!
//! Tables (format 2):
//! - `meta`: `revision` (last committed), `compacted` (last revision dropped from the log),
//!   `bytes` (what the tables below hold), `format`;
//! - `history`: (`"{ns}/{key}"`, revision) to the [`Record`] of that change (JSON): each
//!   value is stored here, once; the tables below only point at records;
//! - `current`: `"{ns}/{key}"` to the revision of the live key's last change (its entry is
//!   that change's record);
//! - `changelog`: revision to the `"{ns}/{key}"` it changed, pruned to the most recent
//!   `changelog_retain`;
//! - `counts`: `"{ns}/{key}"` to its number of history records, which `history_retain`
//!   bounds (the oldest go first; the key's current record always stays);
//! - `idempotent`: the revision of a change made with an `Idempotency-Key` to the key (scoped)
//!   and what is [`Kept`] of it (a small binary row): appended in revision order, so the
//!   oldest go first once the window is over; the backend looks keys up in a map of it
//!   loaded at open.
//!
//! Names cannot contain `/`, so `"{ns}/{key}"` is unambiguous. Format 1 (three copies of
//! every change: `entries`, `history` and a change log of whole changes) is converted on
//! open.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use graycast_protocol::{Entry, HistoryItem, Revision};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};

mod idempotent;

use self::idempotent::{keep_idempotency, load_idempotency};
use super::history::Pager;
use super::record::Record;
use super::request::oldest_kept_ms;
use super::{
    Change, ChangePage, HistoryPage, Kept, Loaded, LocalBackend, StoreError, StoreOptions,
};

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Format 1's table of whole entries, converted to `current`.
const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");
const CURRENT: TableDefinition<&str, u64> = TableDefinition::new("current");
const HISTORY: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("history");
const CHANGELOG: TableDefinition<u64, &[u8]> = TableDefinition::new("changelog");
const COUNTS: TableDefinition<&str, u64> = TableDefinition::new("counts");
const IDEMPOTENT: TableDefinition<u64, &[u8]> = TableDefinition::new("idempotent");

const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";
const META_BYTES: &str = "bytes";
const META_FORMAT: &str = "format";
const FORMAT: u64 = 2;

/// Memory redb may use to cache pages. The current state is served from the store's own
/// cache, so redb's only speeds up history and replay reads; its default (1 GiB) would let
/// the process grow by as much as it writes.
const PAGE_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Most change-log records dropped in one commit, so that lowering the retention of a
/// large log spreads the pruning over several commits instead of stalling one.
const MAX_PRUNE_PER_COMMIT: u64 = 10_000;

/// The durable, embedded backend.
pub struct RedbBackend {
    db: Database,
    changelog_retain: u64,
    history_retain: u64,
    /// `meta.bytes` as of the last commit.
    bytes: AtomicU64,
    /// The `idempotent` table by key, as of the last commit.
    idempotent: std::sync::Mutex<std::collections::HashMap<String, Kept>>,
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

fn get_meta(txn: &WriteTransaction, name: &str) -> Result<u64, StoreError> {
    let meta = txn.open_table(META).map_err(backend_err)?;
    let value = meta.get(name).map_err(backend_err)?.map_or(0, |v| v.value());
    Ok(value)
}

impl RedbBackend {
    /// Opens (or creates) the database file, converting an older format, and applies the
    /// history retention to keys that exceed it.
    pub fn open(path: &Path, options: &StoreOptions) -> Result<RedbBackend, StoreError> {
        let db = Database::builder().set_cache_size(PAGE_CACHE_BYTES).create(path).map_err(
            |e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Backend(format!(
                    "{} is in use by another graycast process; stop it, or give this one \
                     another --data-dir",
                    path.display()
                )),
                e => StoreError::Backend(format!("cannot open {}: {e}", path.display())),
            },
        )?;
        let mut txn = db.begin_write().map_err(backend_err)?;
        txn.set_durability(Durability::Immediate).map_err(backend_err)?;
        {
            txn.open_table(META).map_err(backend_err)?;
            txn.open_table(CURRENT).map_err(backend_err)?;
            txn.open_table(HISTORY).map_err(backend_err)?;
            txn.open_table(CHANGELOG).map_err(backend_err)?;
            txn.open_table(COUNTS).map_err(backend_err)?;
            txn.open_table(IDEMPOTENT).map_err(backend_err)?;
        }
        if get_meta(&txn, META_FORMAT)? < FORMAT {
            convert_from_format_1(&txn)?;
        }
        let backend = RedbBackend {
            db,
            changelog_retain: options.changelog_retain.max(1),
            history_retain: options.history_retain,
            bytes: AtomicU64::new(0),
            idempotent: std::sync::Mutex::new(load_idempotency(&txn)?),
        };
        backend.apply_history_retention(&txn)?;
        backend.bytes.store(get_meta(&txn, META_BYTES)?, Ordering::Release);
        txn.commit().map_err(backend_err)?;
        Ok(backend)
    }

    /// The history record of a key at exactly `revision`, if kept.
    fn record_at(
        &self,
        namespace: &str,
        key: &str,
        revision: Revision,
    ) -> Result<Option<Record>, StoreError> {
        let slot = slot(namespace, key);
        let txn = self.db.begin_read().map_err(backend_err)?;
        let table = txn.open_table(HISTORY).map_err(backend_err)?;
        let Some(v) = table.get((slot.as_str(), revision)).map_err(backend_err)? else {
            return Ok(None);
        };
        let record = decode(v.value())
            .map_err(|e| corrupt(&format!("history of {slot} at {revision}"), e))?;
        Ok(Some(record))
    }

    /// Drops the oldest history records of every key holding more than the retention.
    fn apply_history_retention(&self, txn: &WriteTransaction) -> Result<(), StoreError> {
        if self.history_retain == 0 {
            return Ok(());
        }
        let over: Vec<(String, u64)> = {
            let counts = txn.open_table(COUNTS).map_err(backend_err)?;
            let mut over = Vec::new();
            for row in counts.iter().map_err(backend_err)? {
                let (slot, count) = row.map_err(backend_err)?;
                if count.value() > self.history_retain {
                    over.push((slot.value().to_owned(), count.value()));
                }
            }
            over
        };
        let mut freed = 0u64;
        for (slot, count) in over {
            freed += self.prune_history(txn, &slot, count)?;
        }
        if freed > 0 {
            let mut meta = txn.open_table(META).map_err(backend_err)?;
            let bytes = meta.get(META_BYTES).map_err(backend_err)?.map_or(0, |v| v.value());
            meta.insert(META_BYTES, bytes.saturating_sub(freed)).map_err(backend_err)?;
        }
        Ok(())
    }

    /// Drops the oldest records of `slot` beyond the retention; returns the bytes freed.
    fn prune_history(
        &self,
        txn: &WriteTransaction,
        slot: &str,
        count: u64,
    ) -> Result<u64, StoreError> {
        let excess = count.saturating_sub(self.history_retain);
        if self.history_retain == 0 || excess == 0 {
            return Ok(0);
        }
        let mut history = txn.open_table(HISTORY).map_err(backend_err)?;
        let mut freed = 0u64;
        let mut dropped = 0u64;
        let range = (slot, 0)..(slot, u64::MAX);
        for row in history.extract_from_if(range, |_, _| true).map_err(backend_err)? {
            let (_, value) = row.map_err(backend_err)?;
            freed += value.value().len() as u64;
            dropped += 1;
            if dropped == excess {
                break;
            }
        }
        let mut counts = txn.open_table(COUNTS).map_err(backend_err)?;
        counts.insert(slot, count - dropped).map_err(backend_err)?;
        Ok(freed)
    }
}

/// Converts format 1 (whole entries in `entries`; the change log held whole changes;
/// history items lacked the entry's `created_revision` and `version`) in place.
fn convert_from_format_1(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut bytes = 0u64;
    {
        // Each live entry becomes a pointer to its last change's record, which gains the
        // entry's `created_revision` and `version`.
        let entries = txn.open_table(ENTRIES).map_err(backend_err)?;
        let mut history = txn.open_table(HISTORY).map_err(backend_err)?;
        let mut current = txn.open_table(CURRENT).map_err(backend_err)?;
        for row in entries.iter().map_err(backend_err)? {
            let (k, v) = row.map_err(backend_err)?;
            let slot = k.value();
            let entry: Entry =
                decode(v.value()).map_err(|e| corrupt(&format!("entry {slot}"), e))?;
            let record = history
                .get((slot, entry.revision))
                .map_err(backend_err)?
                .map(|v| v.value().to_vec());
            let mut record: Record = match record {
                Some(bytes) => decode(&bytes)
                    .map_err(|e| corrupt(&format!("history of {slot} at {}", entry.revision), e))?,
                None => Record::of_entry(&entry),
            };
            record.value = entry.value.clone();
            record.gray = entry.gray.clone();
            record.created_revision = entry.created_revision;
            record.version = entry.version;
            let record = serde_json::to_vec(&record).map_err(backend_err)?;
            history.insert((slot, entry.revision), record.as_slice()).map_err(backend_err)?;
            current.insert(slot, entry.revision).map_err(backend_err)?;
        }
    }
    txn.delete_table(ENTRIES).map_err(backend_err)?;
    {
        let mut log = txn.open_table(CHANGELOG).map_err(backend_err)?;
        let mut history = txn.open_table(HISTORY).map_err(backend_err)?;
        let old: Vec<(u64, Vec<u8>)> = log
            .iter()
            .map_err(backend_err)?
            .map(|row| row.map(|(k, v)| (k.value(), v.value().to_vec())))
            .collect::<Result<_, _>>()
            .map_err(backend_err)?;
        for (revision, bytes_of_change) in old {
            let change: Change = decode(&bytes_of_change)
                .map_err(|e| corrupt(&format!("change log record {revision}"), e))?;
            let slot = slot(&change.namespace, &change.key);
            // The change's history item gains what replays need to rebuild the entry.
            let item = history
                .get((slot.as_str(), revision))
                .map_err(backend_err)?
                .map(|v| v.value().to_vec());
            if let Some(item) = item {
                let mut record: Record = decode(&item)
                    .map_err(|e| corrupt(&format!("history of {slot} at {revision}"), e))?;
                if let Some(entry) = &change.entry {
                    record.created_revision = entry.created_revision;
                    record.version = entry.version;
                }
                let record = serde_json::to_vec(&record).map_err(backend_err)?;
                history
                    .insert((slot.as_str(), revision), record.as_slice())
                    .map_err(backend_err)?;
            }
            log.insert(revision, slot.as_bytes()).map_err(backend_err)?;
        }
    }
    {
        let history = txn.open_table(HISTORY).map_err(backend_err)?;
        let mut counts = txn.open_table(COUNTS).map_err(backend_err)?;
        let mut current: Option<(String, u64)> = None;
        for row in history.iter().map_err(backend_err)? {
            let (k, v) = row.map_err(backend_err)?;
            bytes += v.value().len() as u64;
            let slot = k.value().0;
            match &mut current {
                Some((name, count)) if name == slot => *count += 1,
                _ => {
                    if let Some((name, count)) = current.take() {
                        counts.insert(name.as_str(), count).map_err(backend_err)?;
                    }
                    current = Some((slot.to_owned(), 1));
                }
            }
        }
        if let Some((name, count)) = current {
            counts.insert(name.as_str(), count).map_err(backend_err)?;
        }
    }
    {
        let current = txn.open_table(CURRENT).map_err(backend_err)?;
        for row in current.iter().map_err(backend_err)? {
            let (k, _) = row.map_err(backend_err)?;
            bytes += (k.value().len() + 8) as u64;
        }
        let log = txn.open_table(CHANGELOG).map_err(backend_err)?;
        for row in log.iter().map_err(backend_err)? {
            let (_, v) = row.map_err(backend_err)?;
            bytes += (8 + v.value().len()) as u64;
        }
    }
    let mut meta = txn.open_table(META).map_err(backend_err)?;
    meta.insert(META_BYTES, bytes).map_err(backend_err)?;
    meta.insert(META_FORMAT, FORMAT).map_err(backend_err)?;
    Ok(())
}

impl LocalBackend for RedbBackend {
    fn load(&self) -> Result<Loaded, StoreError> {
        let txn = self.db.begin_read().map_err(backend_err)?;
        let meta = txn.open_table(META).map_err(backend_err)?;
        let revision = meta.get(META_REVISION).map_err(backend_err)?.map_or(0, |v| v.value());
        let current = txn.open_table(CURRENT).map_err(backend_err)?;
        let history = txn.open_table(HISTORY).map_err(backend_err)?;
        let mut entries = Vec::new();
        for row in current.iter().map_err(backend_err)? {
            let (k, v) = row.map_err(backend_err)?;
            let (slot, at) = (k.value(), v.value());
            let record = history
                .get((slot, at))
                .map_err(backend_err)?
                .ok_or_else(|| StoreError::Corrupt(format!("no record of {slot} at {at}")))?;
            let record: Record = decode(record.value())
                .map_err(|e| corrupt(&format!("history of {slot} at {at}"), e))?;
            let (namespace, key) = slot.split_once('/').unwrap_or((slot, ""));
            if let Some(entry) = record.into_change(namespace, key, at).entry {
                entries.push(Entry::clone(&entry));
            }
        }
        Ok(Loaded { revision, entries })
    }

    fn persist(&self, changes: &[Change]) -> Result<(), StoreError> {
        let Some(last) = changes.last() else {
            return Ok(());
        };
        let mut txn = self.db.begin_write().map_err(backend_err)?;
        txn.set_durability(Durability::Immediate).map_err(backend_err)?;
        let mut added: i64 = 0;
        let mut to_prune = Vec::new();
        {
            let mut current = txn.open_table(CURRENT).map_err(backend_err)?;
            let mut history = txn.open_table(HISTORY).map_err(backend_err)?;
            let mut log = txn.open_table(CHANGELOG).map_err(backend_err)?;
            let mut counts = txn.open_table(COUNTS).map_err(backend_err)?;
            for change in changes {
                let slot = slot(&change.namespace, &change.key);
                let pointer = (slot.len() + 8) as i64;
                let existed = if change.entry.is_some() {
                    added += pointer;
                    current.insert(slot.as_str(), change.revision).map_err(backend_err)?.is_some()
                } else {
                    current.remove(slot.as_str()).map_err(backend_err)?.is_some()
                };
                if existed {
                    added -= pointer;
                }
                let record = serde_json::to_vec(&Record::of(change)).map_err(backend_err)?;
                added += record.len() as i64;
                history
                    .insert((slot.as_str(), change.revision), record.as_slice())
                    .map_err(backend_err)?;
                added += (8 + slot.len()) as i64;
                log.insert(change.revision, slot.as_bytes()).map_err(backend_err)?;
                let count =
                    counts.get(slot.as_str()).map_err(backend_err)?.map_or(0, |v| v.value()) + 1;
                counts.insert(slot.as_str(), count).map_err(backend_err)?;
                if self.history_retain > 0 && count > self.history_retain {
                    to_prune.push((slot, count));
                }
            }
        }
        let (mut keyed, mut expired) = (Vec::new(), Vec::new());
        added += keep_idempotency(&txn, changes, &mut keyed, &mut expired)?;
        for (slot, count) in to_prune {
            added -= self.prune_history(&txn, &slot, count)? as i64;
        }
        let bytes;
        {
            let mut meta = txn.open_table(META).map_err(backend_err)?;
            let mut log = txn.open_table(CHANGELOG).map_err(backend_err)?;
            meta.insert(META_REVISION, last.revision).map_err(backend_err)?;
            let compacted = meta.get(META_COMPACTED).map_err(backend_err)?.map_or(0, |v| v.value());
            let keep_from = last.revision.saturating_sub(self.changelog_retain) + 1;
            if compacted + 1 < keep_from {
                let upto = (keep_from - 1).min(compacted + MAX_PRUNE_PER_COMMIT);
                for row in log.extract_from_if(..=upto, |_, _| true).map_err(backend_err)? {
                    let (_, slot) = row.map_err(backend_err)?;
                    added -= (8 + slot.value().len()) as i64;
                }
                meta.insert(META_COMPACTED, upto).map_err(backend_err)?;
            }
            let before = meta.get(META_BYTES).map_err(backend_err)?.map_or(0, |v| v.value());
            bytes = before.saturating_add_signed(added);
            meta.insert(META_BYTES, bytes).map_err(backend_err)?;
        }
        txn.commit().map_err(backend_err)?;
        self.bytes.store(bytes, Ordering::Release);
        if !(keyed.is_empty() && expired.is_empty()) {
            let mut map = self.idempotent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for key in expired {
                map.remove(&key);
            }
            map.extend(keyed);
        }
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
        let history = txn.open_table(HISTORY).map_err(backend_err)?;
        let mut changes = Vec::new();
        for row in log.range(after.saturating_add(1)..).map_err(backend_err)?.take(limit) {
            let (revision, slot) = row.map_err(backend_err)?;
            let revision = revision.value();
            let slot = std::str::from_utf8(slot.value())
                .map_err(|e| corrupt(&format!("change log record {revision}"), e))?;
            let Some(record) = history.get((slot, revision)).map_err(backend_err)? else {
                // Its history item went with the retention: the log no longer reaches back.
                return Ok(ChangePage::Compacted);
            };
            let record: Record = decode(record.value())
                .map_err(|e| corrupt(&format!("history of {slot} at {revision}"), e))?;
            let (namespace, key) = slot.split_once('/').unwrap_or((slot, ""));
            changes.push(Arc::new(record.into_change(namespace, key, revision)));
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
        let mut pager = Pager::new(limit, max_bytes);
        for row in range.rev() {
            let (k, v) = row.map_err(backend_err)?;
            let revision = k.value().1;
            let record: Record = decode(v.value())
                .map_err(|e| corrupt(&format!("history of {slot} at {revision}"), e))?;
            if !pager.take(v.value().len(), || record.into_item(revision)) {
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
        Ok(self.record_at(namespace, key, revision)?.map(|record| record.into_item(revision)))
    }

    fn change_at(
        &self,
        namespace: &str,
        key: &str,
        revision: Revision,
    ) -> Result<Option<Change>, StoreError> {
        let record = self.record_at(namespace, key, revision)?;
        Ok(record.map(|record| record.into_change(namespace, key, revision)))
    }

    fn idempotent(&self, key: &str) -> Result<Option<Kept>, StoreError> {
        let map = self.idempotent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(map.get(key).filter(|kept| kept.at_ms >= oldest_kept_ms()).cloned())
    }

    fn stored_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }

    fn check(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_read().map_err(backend_err)?;
        txn.open_table(META).map_err(backend_err)?;
        Ok(())
    }
}
