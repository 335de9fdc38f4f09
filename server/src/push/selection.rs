//! What a subscription covers: some namespaces by name, or `*`, every namespace its
//! caller may read.
//!
//! `*` from an admin (or anyone on an open server) is every namespace. From a `read`,
//! `report` or `write` token it is every namespace the token's patterns match, present and
//! future: the console subscribes so and sees a namespace the moment it is created. Entries
//! of the reserved namespace [`META_NAMESPACE`] (one per described namespace) count as
//! part of the namespace they describe.

use std::sync::Arc;

use graycast_protocol::ws::ALL_NAMESPACES;

use crate::auth::{Access, Principal, Role};

/// The reserved namespace holding each namespace's description, keyed by namespace name.
pub const META_NAMESPACE: &str = "graycast.meta";

/// Whether `reader` may see the entry `key` of `namespace`.
pub fn readable(reader: &Principal, namespace: &str, key: &str) -> bool {
    if namespace == META_NAMESPACE || namespace == crate::schema::SCHEMAS_NAMESPACE {
        reader.can(Access::Read, key)
    } else {
        reader.can(Access::Read, namespace)
    }
}

/// The namespaces of one subscription.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Sorted, without repeats; `["*"]` for every namespace.
    names: Vec<String>,
    /// For `*` by a caller who may not read everything: whose reading limits it.
    reader: Option<Arc<Principal>>,
}

impl Selection {
    /// The namespaces a caller asked for (checked already: `*` alone, or names it may read).
    pub fn new(namespaces: &[String], caller: Option<&Arc<Principal>>) -> Selection {
        let mut names = namespaces.to_vec();
        names.sort();
        names.dedup();
        let everything = names.iter().any(|n| n == ALL_NAMESPACES);
        let reader = caller.filter(|p| everything && p.role != Role::Admin).cloned();
        Selection { names, reader }
    }

    /// The names as asked, sorted; `["*"]` for every namespace.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether this covers every namespace (its reader may read).
    pub fn everything(&self) -> bool {
        self.names.iter().any(|n| n == ALL_NAMESPACES)
    }

    /// The caller whose reading limits `*`, if any.
    pub fn reader(&self) -> Option<&Arc<Principal>> {
        self.reader.as_ref()
    }

    /// Whether a change of `key` in `namespace` belongs to this subscription.
    pub fn covers(&self, namespace: &str, key: &str) -> bool {
        match &self.reader {
            Some(reader) => readable(reader, namespace, key),
            None => {
                self.everything()
                    || self.names.binary_search_by(|n| n.as_str().cmp(namespace)).is_ok()
            }
        }
    }

    /// Identifies what this selection's snapshot holds: its names, plus the reader of a
    /// limited `*` (after a character no namespace name has).
    pub fn cache_key(&self) -> Vec<String> {
        let mut key = self.names.clone();
        if let Some(reader) = &self.reader {
            key.push(format!("@{}", reader.name));
            key.extend(reader.patterns().iter().map(|p| format!("@{p}")));
        }
        key
    }
}
