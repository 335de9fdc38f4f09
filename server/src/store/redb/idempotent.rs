//! The `idempotent` table: what is kept of each change made with an `Idempotency-Key`, as
//! a small binary row keyed by the change's revision (so the oldest go first), and the map
//! of it the backend answers lookups from.

use std::collections::HashMap;

use redb::{ReadableTable, WriteTransaction};

use super::{backend_err, slot, IDEMPOTENT, MAX_PRUNE_PER_COMMIT};
use crate::store::request::{kept_of, oldest_kept_ms};
use crate::store::{Change, Kept, StoreError};

/// The `idempotent` table by key, at open.
pub(super) fn load_idempotency(
    txn: &WriteTransaction,
) -> Result<HashMap<String, Kept>, StoreError> {
    let table = txn.open_table(IDEMPOTENT).map_err(backend_err)?;
    let oldest = oldest_kept_ms();
    let mut map = HashMap::new();
    for row in table.iter().map_err(backend_err)? {
        let (revision, value) = row.map_err(backend_err)?;
        let (key, kept) = decode_row(revision.value(), value.value())?;
        if kept.at_ms >= oldest {
            map.insert(key, kept);
        }
    }
    Ok(map)
}

/// A row of `idempotent`, binary and small (it is written with every keyed change): the
/// scoped key and the fingerprint (each a length byte and its bytes), when (ms,
/// big-endian), and the change's `"{ns}/{key}"`; the row's key is the change's revision.
fn encode_row(key: &str, kept: &Kept) -> Option<Vec<u8>> {
    let slot = slot(&kept.namespace, &kept.key);
    let mut row = Vec::with_capacity(10 + key.len() + kept.fingerprint.len() + slot.len());
    for part in [key, kept.fingerprint.as_str()] {
        row.push(u8::try_from(part.len()).ok()?);
        row.extend_from_slice(part.as_bytes());
    }
    row.extend_from_slice(&kept.at_ms.to_be_bytes());
    row.extend_from_slice(slot.as_bytes());
    Some(row)
}

/// The key and what is kept of a row of `idempotent` at `revision`.
fn decode_row(revision: u64, row: &[u8]) -> Result<(String, Kept), StoreError> {
    let bad = || StoreError::Corrupt(format!("the idempotency row at revision {revision}"));
    let mut rest = row;
    let mut part = || {
        let (len, tail) = rest.split_first().ok_or_else(bad)?;
        let (text, tail) = tail.split_at_checked(usize::from(*len)).ok_or_else(bad)?;
        rest = tail;
        std::str::from_utf8(text).map(str::to_owned).map_err(|_| bad())
    };
    let (key, fingerprint) = (part()?, part()?);
    let (at_ms, slot) = rest.split_at_checked(8).ok_or_else(bad)?;
    let at_ms = i64::from_be_bytes(at_ms.try_into().map_err(|_| bad())?);
    let slot = std::str::from_utf8(slot).map_err(|_| bad())?;
    let (namespace, name) = slot.split_once('/').ok_or_else(bad)?;
    let kept = Kept {
        fingerprint,
        namespace: namespace.to_owned(),
        key: name.to_owned(),
        revision,
        at_ms,
    };
    Ok((key, kept))
}

/// Keeps the `Idempotency-Key`s of `changes` (in `txn`, and in `keys` once committed:
/// returned as `added`) and forgets some of those older than the window; returns the bytes
/// this adds to the tables (negative when more went than came).
pub(super) fn keep_idempotency(
    txn: &WriteTransaction,
    changes: &[Change],
    added: &mut Vec<(String, Kept)>,
    gone: &mut Vec<String>,
) -> Result<i64, StoreError> {
    let mut table = txn.open_table(IDEMPOTENT).map_err(backend_err)?;
    let mut bytes = 0i64;
    for (_, key, kept) in changes.iter().filter_map(kept_of) {
        let row = encode_row(&key, &kept)
            .ok_or_else(|| StoreError::Backend(format!("an unusable idempotency key {key}")))?;
        bytes += (row.len() + 8) as i64;
        table.insert(kept.revision, row.as_slice()).map_err(backend_err)?;
        added.push((key, kept));
    }
    let oldest = oldest_kept_ms();
    let mut expired = Vec::new();
    for row in table.iter().map_err(backend_err)? {
        let (revision, value) = row.map_err(backend_err)?;
        let (key, kept) = decode_row(revision.value(), value.value())?;
        if kept.at_ms >= oldest || expired.len() as u64 == MAX_PRUNE_PER_COMMIT {
            break;
        }
        expired.push((revision.value(), value.value().len(), key));
    }
    for (revision, size, key) in expired {
        table.remove(revision).map_err(backend_err)?;
        bytes -= (size + 8) as i64;
        gone.push(key);
    }
    Ok(bytes)
}
