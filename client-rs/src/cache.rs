//! The client's local copy of its namespaces, and the cache file that outlives the process.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use graycast_protocol::{Entry, Op, Revision};
use serde::{Deserialize, Serialize};

use crate::events::ChangeEvent;

/// Version of the cache file layout.
const FORMAT: u32 = 1;

/// The entries of the subscribed namespaces as of `revision`.
#[derive(Debug, Default, Clone)]
pub(crate) struct CacheState {
    /// The last revision applied (0: nothing yet).
    pub revision: Revision,
    /// Namespace, then key.
    pub entries: BTreeMap<String, BTreeMap<String, Arc<Entry>>>,
}

impl CacheState {
    pub fn get(&self, namespace: &str, key: &str) -> Option<Arc<Entry>> {
        self.entries.get(namespace).and_then(|ns| ns.get(key)).cloned()
    }

    /// Replaces everything with a snapshot; returns the differences as events.
    pub fn apply_snapshot(&mut self, revision: Revision, entries: Vec<Entry>) -> Vec<ChangeEvent> {
        let mut next: BTreeMap<String, BTreeMap<String, Arc<Entry>>> = BTreeMap::new();
        for entry in entries {
            next.entry(entry.namespace.clone())
                .or_default()
                .insert(entry.key.clone(), Arc::new(entry));
        }
        let mut events = Vec::new();
        for (namespace, keys) in &next {
            for (key, entry) in keys {
                let previous = self.get(namespace, key);
                if previous.as_deref() != Some(entry.as_ref()) {
                    events.push(ChangeEvent {
                        revision: entry.revision,
                        op: Op::Put,
                        namespace: namespace.clone(),
                        key: key.clone(),
                        entry: Some(entry.clone()),
                        previous,
                        comment: None,
                        note: None,
                    });
                }
            }
        }
        for (namespace, keys) in &self.entries {
            for (key, entry) in keys {
                if next.get(namespace).and_then(|ns| ns.get(key)).is_none() {
                    events.push(ChangeEvent {
                        revision,
                        op: Op::Delete,
                        namespace: namespace.clone(),
                        key: key.clone(),
                        entry: None,
                        previous: Some(entry.clone()),
                        comment: None,
                        note: None,
                    });
                }
            }
        }
        events.sort_by_key(|e| e.revision);
        self.entries = next;
        self.revision = revision;
        events
    }

    /// Applies one change unless the cache is already at or past its revision.
    pub fn apply_change(&mut self, mut event: ChangeEvent) -> Option<ChangeEvent> {
        if event.revision <= self.revision {
            return None;
        }
        self.revision = event.revision;
        let (namespace, key) = (event.namespace.clone(), event.key.clone());
        event.previous = match &event.entry {
            Some(entry) => self
                .entries
                .entry(namespace.clone())
                .or_default()
                .insert(key.clone(), entry.clone()),
            None => {
                let keys = self.entries.get_mut(&namespace);
                let previous = keys.and_then(|keys| keys.remove(&key));
                if self.entries.get(&namespace).is_some_and(BTreeMap::is_empty) {
                    self.entries.remove(&namespace);
                }
                previous
            }
        };
        Some(event)
    }

    /// Records that nothing changed up to `revision`.
    pub fn apply_progress(&mut self, revision: Revision) -> bool {
        if revision > self.revision {
            self.revision = revision;
            true
        } else {
            false
        }
    }
}

/// The cache file: what the client last knew, for a start without the server.
#[derive(Serialize, Deserialize)]
struct CacheFile {
    format: u32,
    namespaces: Vec<String>,
    revision: Revision,
    entries: Vec<Entry>,
}

/// Reads a cache file written for the same namespaces.
///
/// `Ok(None)`: there is no file. `Err`: the file is unreadable, corrupt or written for
/// other namespaces; the caller warns and starts empty.
pub(crate) fn load(path: &Path, namespaces: &[String]) -> Result<Option<CacheState>, String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(format!("cannot read cache file {}: {err}", path.display())),
    };
    let file: CacheFile = serde_json::from_slice(&bytes)
        .map_err(|e| format!("cache file {} is corrupt: {e}", path.display()))?;
    if file.format != FORMAT {
        return Err(format!("cache file {} has unknown format {}", path.display(), file.format));
    }
    if file.namespaces != namespaces {
        return Err(format!(
            "cache file {} holds namespaces {:?}, not {:?}",
            path.display(),
            file.namespaces,
            namespaces
        ));
    }
    let mut state = CacheState { revision: file.revision, entries: BTreeMap::new() };
    for entry in file.entries {
        state
            .entries
            .entry(entry.namespace.clone())
            .or_default()
            .insert(entry.key.clone(), Arc::new(entry));
    }
    Ok(Some(state))
}

/// Writes the cache file atomically: a temporary file, fsync, rename, fsync of the folder.
pub(crate) fn save(path: &Path, namespaces: &[String], state: &CacheState) -> std::io::Result<()> {
    let file = CacheFile {
        format: FORMAT,
        namespaces: namespaces.to_vec(),
        revision: state.revision,
        entries: state
            .entries
            .values()
            .flat_map(|keys| keys.values())
            .map(|e| Entry::clone(e))
            .collect(),
    };
    let bytes = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    {
        let mut out = std::fs::File::create(&temp)?;
        out.write_all(&bytes)?;
        out.sync_all()?;
    }
    std::fs::rename(&temp, path)?;
    // The rename is durable only once the folder's entry is.
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::json;

    use super::*;

    fn entry(key: &str, revision: Revision, value: serde_json::Value) -> Entry {
        Entry {
            namespace: "ns".into(),
            key: key.into(),
            value,
            revision,
            created_revision: revision,
            version: 1,
            updated_at: Utc::now(),
            updated_by: "t".into(),
            gray: None,
        }
    }

    #[test]
    fn changes_never_go_back_and_snapshots_diff() {
        let mut state = CacheState::default();
        let events =
            state.apply_snapshot(5, vec![entry("a", 3, json!(1)), entry("b", 5, json!(2))]);
        assert_eq!(events.len(), 2);
        let change = |revision, op, key: &str, entry: Option<Entry>| ChangeEvent {
            revision,
            op,
            namespace: "ns".into(),
            key: key.into(),
            entry: entry.map(Arc::new),
            previous: None,
            comment: None,
            note: None,
        };
        assert!(state
            .apply_change(change(4, Op::Put, "a", Some(entry("a", 4, json!(9)))))
            .is_none());
        assert_eq!(state.get("ns", "a").map(|e| e.value.clone()), Some(json!(1)));
        let event = state.apply_change(change(6, Op::Delete, "b", None)).expect("applies");
        assert_eq!(event.previous.map(|e| e.value.clone()), Some(json!(2)));
        assert!(!state.apply_progress(6));
        assert!(state.apply_progress(8));
        let events = state.apply_snapshot(9, vec![entry("c", 9, json!(3))]);
        let ops: Vec<(String, Op)> = events.into_iter().map(|e| (e.key, e.op)).collect();
        assert_eq!(ops, [("c".to_owned(), Op::Put), ("a".to_owned(), Op::Delete)]);
    }

    #[test]
    fn cache_file_round_trip_and_corruption() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cache.json");
        let namespaces = vec!["ns".to_owned()];
        assert!(load(&path, &namespaces).expect("missing is fine").is_none());
        let mut state = CacheState::default();
        state.apply_snapshot(7, vec![entry("a", 7, json!({"x": 1}))]);
        save(&path, &namespaces, &state).expect("saves");
        let loaded = load(&path, &namespaces).expect("loads").expect("present");
        assert_eq!(loaded.revision, 7);
        assert_eq!(loaded.get("ns", "a").map(|e| e.value.clone()), Some(json!({"x": 1})));
        assert!(load(&path, &["other".to_owned()]).is_err());
        std::fs::write(&path, b"{not json").expect("writes");
        assert!(load(&path, &namespaces).is_err());
    }
}
