//! The key layout under the prefix, and what is stored at each key (see the module's
//! documentation of the etcd engine).

use etcd_client::KeyValue;
use graycast_protocol::{Entry, Revision};

use super::super::record::Record;
use super::super::{Change, StoreError};

/// The key layout under the prefix.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    pub(super) prefix: String,
}

impl Keys {
    pub(super) fn entry(&self, slot: &str) -> String {
        format!("{}e/{slot}", self.prefix)
    }
    pub(super) fn entries(&self) -> String {
        format!("{}e/", self.prefix)
    }
    pub(super) fn history(&self, slot: &str, seq: u64) -> String {
        format!("{}h/{slot}/{seq:020}", self.prefix)
    }
    pub(super) fn histories(&self) -> String {
        format!("{}h/", self.prefix)
    }
    pub(super) fn history_of(&self, slot: &str) -> String {
        format!("{}h/{slot}/", self.prefix)
    }
    pub(super) fn counter(&self, slot: &str) -> String {
        format!("{}c/{slot}", self.prefix)
    }
    pub(super) fn counters(&self) -> String {
        format!("{}c/", self.prefix)
    }
    pub(super) fn election(&self) -> String {
        format!("{}leader", self.prefix)
    }
    pub(super) fn ephemeral(&self, name: &str) -> String {
        format!("{}g/{name}", self.prefix)
    }
    /// What is kept of a write made with an `Idempotency-Key` (scoped and hashed).
    pub(super) fn idempotent(&self, key: &str) -> String {
        format!("{}i/{key}", self.prefix)
    }
    /// A claimed `Idempotency-Key` of a request that is not a write (a guard report).
    pub(super) fn claimed(&self, key: &str) -> String {
        format!("{}r/{key}", self.prefix)
    }
    pub(super) fn ready(&self) -> String {
        format!("{}ready", self.prefix)
    }

    /// `(namespace, key, seq)` of a history key.
    pub(super) fn parse_history<'a>(&self, key: &'a [u8]) -> Option<(&'a str, &'a str, u64)> {
        let rest = std::str::from_utf8(key).ok()?.strip_prefix(&self.histories())?;
        let mut parts = rest.split('/');
        let (namespace, name, seq) = (parts.next()?, parts.next()?, parts.next()?);
        Some((namespace, name, seq.parse().ok()?))
    }

    /// `(namespace, key)` of an entry or counter key, after its part's prefix.
    pub(super) fn parse_slot<'a>(&self, key: &'a [u8], part: &str) -> Option<(&'a str, &'a str)> {
        std::str::from_utf8(key).ok()?.strip_prefix(part)?.split_once('/')
    }
}

/// The end of the key range of a prefix ending in `/`.
pub(super) fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

pub(super) fn slot(namespace: &str, key: &str) -> String {
    format!("{namespace}/{key}")
}

pub(super) fn decode_record(kv: &KeyValue) -> Result<Record, StoreError> {
    serde_json::from_slice(kv.value()).map_err(|e| {
        StoreError::Corrupt(format!("record at {}: {e}", String::from_utf8_lossy(kv.key())))
    })
}

/// What an `i/` key holds: the request's fingerprint and where its change's record is.
/// The key lives on a lease that outlives the window.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct KeptAt {
    pub(super) fingerprint: String,
    pub(super) namespace: String,
    pub(super) key: String,
    pub(super) seq: u64,
}

/// What an `e/` key holds: where the entry's record is, or (data written before) the
/// whole record.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Pointer {
    pub(super) seq: u64,
}

/// The `e/` key's value: a [`Pointer`], or the whole record in data written before.
pub(super) enum Marker {
    Pointer(u64),
    Whole(Box<Entry>),
}

/// Reads an `e/` key.
pub(super) fn marker_of(kv: &KeyValue, namespace: &str, key: &str) -> Result<Marker, StoreError> {
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
pub(super) fn entry_from_history(
    kv: &KeyValue,
    namespace: &str,
    key: &str,
) -> Result<Entry, StoreError> {
    let change = decode_record(kv)?.into_change(namespace, key, kv.mod_revision() as Revision);
    change.entry.as_deref().cloned().ok_or_else(|| {
        StoreError::Corrupt(format!("the current record of {namespace}/{key} is a delete"))
    })
}

/// The change a history record's put event stands for, with its key and seq.
pub(super) fn change_of(keys: &Keys, kv: &KeyValue) -> Option<(Change, String, u64)> {
    let (namespace, key, seq) = keys.parse_history(kv.key())?;
    let record: Record = serde_json::from_slice(kv.value()).ok()?;
    let change = record.into_change(namespace, key, kv.mod_revision() as Revision);
    Some((change, slot(namespace, key), seq))
}
