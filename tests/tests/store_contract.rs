//! The store contract (`graycast_server::store::contract`) against the local engines:
//! memory, and redb on a temporary file. The etcd engine runs the same checks in
//! `cluster.rs`.

use std::sync::Arc;

use graycast_server::metrics::Metrics;
use graycast_server::store::contract::{check_all, Exemptions, Opener, Tweaks};
use graycast_server::store::{Backing, Store, StoreOptions};

fn options(backing: Backing, tweaks: Tweaks) -> StoreOptions {
    StoreOptions {
        backing,
        changelog_retain: tweaks.changelog_retain,
        history_retain: tweaks.history_retain,
        max_batch: 1024,
        quota_bytes: tweaks.quota_bytes,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_keeps_the_contract() {
    let open: Box<Opener> = Box::new(|tweaks| {
        Box::pin(async move {
            Store::open(options(Backing::Memory, tweaks), Arc::new(Metrics::default()))
                .await
                .expect("opens")
        })
    });
    check_all(&open, Exemptions::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_store_keeps_the_contract() {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let open: Box<Opener> = Box::new(move |tweaks| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.path().join(format!("store-{n}.redb"));
        Box::pin(async move {
            Store::open(options(Backing::Redb(path), tweaks), Arc::new(Metrics::default()))
                .await
                .expect("opens")
        })
    });
    check_all(&open, Exemptions::default()).await;
}
