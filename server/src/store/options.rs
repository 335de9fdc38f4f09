//! Where a store keeps its data and how much.

use std::path::PathBuf;

#[cfg(feature = "etcd")]
use super::etcd;

/// Where a store keeps its data.
#[derive(Debug, Clone)]
pub enum Backing {
    /// An embedded redb file.
    Redb(PathBuf),
    /// Memory only: fast and forgetful, for tests and demos.
    Memory,
    /// An etcd cluster shared by several nodes.
    #[cfg(feature = "etcd")]
    Etcd(etcd::EtcdOptions),
}

/// Everything a store needs to know; the server builds it from its configuration.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub backing: Backing,
    /// Changes kept for resuming subscribers (the local engines' change log).
    pub changelog_retain: u64,
    /// History items kept per key; 0 keeps them all.
    pub history_retain: u64,
    /// Most writes committed in one transaction (local engines).
    pub max_batch: usize,
    /// Bytes the store may hold; writes that would go beyond are refused.
    pub quota_bytes: u64,
}

impl StoreOptions {
    /// Options for a memory store with every default (for tests).
    pub fn memory() -> StoreOptions {
        StoreOptions {
            backing: Backing::Memory,
            changelog_retain: 100_000,
            history_retain: 0,
            max_batch: 1024,
            quota_bytes: u64::MAX,
        }
    }
}
