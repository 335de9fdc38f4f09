//! Keeping etcd bounded: the leading node compacts revisions no replay needs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use etcd_client::KvClient;
use tokio::sync::watch;

use super::watcher;
use super::COMPACT_CHECK;
use crate::metrics::{EtcdOp, Metrics};

/// Keeps etcd bounded: on the leading node, compacts etcd's revisions older than the last
/// `retain` (replays reach back as far as on one node: `--changelog-retain`; history and
/// entries live in keys of their own, which compaction keeps). Compacts once the window
/// has moved on by a tenth of itself (at least 100 revisions), so it runs now and then.
pub(super) async fn compact(
    mut kv: KvClient,
    metrics: Arc<Metrics>,
    leader: watch::Receiver<bool>,
    last_change: Arc<AtomicU64>,
    retain: u64,
    mut stop: watch::Receiver<bool>,
) {
    let step = (retain / 10).max(100);
    let mut compacted: u64 = 0;
    loop {
        tokio::select! {
            _ = watcher::stopped(&mut stop) => return,
            _ = tokio::time::sleep(COMPACT_CHECK) => {}
        }
        if !*leader.borrow() {
            continue;
        }
        let target = last_change.load(Ordering::Acquire).saturating_sub(retain);
        if target < compacted + step {
            continue;
        }
        // Physical: the answer comes once etcd has freed the space (a background task waits).
        let physical = etcd_client::CompactionOptions::new().with_physical();
        match super::measured(&metrics, EtcdOp::Compact, kv.compact(target as i64, Some(physical)))
            .await
        {
            Ok(_) => {
                tracing::debug!(revision = target, "compacted etcd");
                compacted = target;
            }
            // Another node (or an operator) compacted further already.
            Err(err) if err.to_string().contains("compacted") => compacted = target,
            Err(err) => tracing::debug!(error = %err, "cannot compact etcd yet"),
        }
    }
}
