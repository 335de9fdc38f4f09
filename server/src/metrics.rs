//! Process-wide counters, rendered in the Prometheus text format at `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the commit batch size histogram.
const BATCH_BUCKETS: [u64; 11] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/// Counters updated on the hot paths with relaxed atomics; read only to render.
#[derive(Default)]
pub struct Metrics {
    /// Changes committed (one per revision).
    pub writes: AtomicU64,
    /// Write requests refused by a precondition or a rule.
    pub write_rejections: AtomicU64,
    /// Transactions committed.
    pub commits: AtomicU64,
    batch_buckets: [AtomicU64; BATCH_BUCKETS.len()],
    /// Change messages queued to subscribers.
    pub pushed_messages: AtomicU64,
    /// Snapshots sent, for any reason.
    pub snapshots: AtomicU64,
    /// Snapshots sent because a subscriber fell behind.
    pub lag_resyncs: AtomicU64,
    /// Subscriptions served by replaying the change log.
    pub replays: AtomicU64,
    /// WebSocket connections refused because of the subscriber limit.
    pub refused_connections: AtomicU64,
}

impl Metrics {
    /// Records one committed transaction of `size` changes.
    pub fn record_commit(&self, size: usize) {
        let size = size as u64;
        self.writes.fetch_add(size, Ordering::Relaxed);
        self.commits.fetch_add(1, Ordering::Relaxed);
        if let Some(i) = BATCH_BUCKETS.iter().position(|&bound| size <= bound) {
            self.batch_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Renders every counter, with the gauges the caller reads from live state.
    pub fn render(
        &self,
        revision: u64,
        subscribers: usize,
        subscriber_limit: usize,
        leader: bool,
    ) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::with_capacity(2048);
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        };
        counter("graycast_writes_total", "Changes committed, one per revision.", get(&self.writes));
        counter(
            "graycast_write_rejections_total",
            "Writes refused by a precondition or a rule.",
            get(&self.write_rejections),
        );
        counter(
            "graycast_pushed_messages_total",
            "Change messages queued to subscribers.",
            get(&self.pushed_messages),
        );
        counter("graycast_snapshots_total", "Snapshots sent to subscribers.", get(&self.snapshots));
        counter(
            "graycast_lag_resyncs_total",
            "Snapshots sent because a subscriber fell behind.",
            get(&self.lag_resyncs),
        );
        counter(
            "graycast_replays_total",
            "Subscriptions resumed from the change log.",
            get(&self.replays),
        );
        counter(
            "graycast_refused_connections_total",
            "WebSocket connections refused by the subscriber limit.",
            get(&self.refused_connections),
        );

        let name = "graycast_commit_batch_size";
        let _ = writeln!(
            out,
            "# HELP {name} Changes per committed transaction.\n# TYPE {name} histogram"
        );
        let mut cumulative = 0;
        for (bound, bucket) in BATCH_BUCKETS.iter().zip(&self.batch_buckets) {
            cumulative += get(bucket);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let commits = get(&self.commits);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {commits}");
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {commits}", get(&self.writes));

        let _ = writeln!(
            out,
            "# HELP graycast_revision Revision of the last committed change.\n# TYPE graycast_revision gauge\ngraycast_revision {revision}"
        );
        let _ = writeln!(
            out,
            "# HELP graycast_subscribers Connected WebSocket subscribers.\n# TYPE graycast_subscribers gauge\ngraycast_subscribers {subscribers}"
        );
        let _ = writeln!(
            out,
            "# HELP graycast_subscriber_limit Most WebSocket subscribers served at once.\n# TYPE graycast_subscriber_limit gauge\ngraycast_subscriber_limit {subscriber_limit}"
        );
        let _ = writeln!(
            out,
            "# HELP graycast_leader Whether this node runs ramps and the guard (always, alone; in a cluster, the elected node).\n# TYPE graycast_leader gauge\ngraycast_leader {}",
            u8::from(leader)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_histogram_is_cumulative() {
        let m = Metrics::default();
        m.record_commit(1);
        m.record_commit(3);
        m.record_commit(2000);
        let text = m.render(7, 2, 10, true);
        assert!(text.contains("graycast_commit_batch_size_bucket{le=\"1\"} 1\n"));
        assert!(text.contains("graycast_commit_batch_size_bucket{le=\"4\"} 2\n"));
        assert!(text.contains("graycast_commit_batch_size_bucket{le=\"1024\"} 2\n"));
        assert!(text.contains("graycast_commit_batch_size_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("graycast_commit_batch_size_sum 2004\n"));
        assert!(text.contains("graycast_writes_total 2004\n"));
        assert!(text.contains("graycast_subscribers 2\n"));
    }
}
