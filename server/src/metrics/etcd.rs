//! The etcd engine's health: whether each endpoint answers, whether the cluster can be
//! reached at all, how etcd's requests go (time and errors, by kind), and this node's lease.
//! Registered on nodes that run on etcd only.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A kind of request to etcd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EtcdOp {
    /// Reads: loading the state, a key's records, the conditions of a write.
    Read,
    /// A write's transaction.
    Write,
    /// Lease grants and renewals, the campaign to lead, ephemeral keys.
    Lease,
    /// Opening the watch and asking it for progress.
    Watch,
    /// Compacting old revisions.
    Compact,
    /// The health probe of each endpoint.
    Status,
}

impl EtcdOp {
    const ALL: [EtcdOp; 6] = [
        EtcdOp::Read,
        EtcdOp::Write,
        EtcdOp::Lease,
        EtcdOp::Watch,
        EtcdOp::Compact,
        EtcdOp::Status,
    ];

    fn label(self) -> &'static str {
        match self {
            EtcdOp::Read => "read",
            EtcdOp::Write => "write",
            EtcdOp::Lease => "lease",
            EtcdOp::Watch => "watch",
            EtcdOp::Compact => "compact",
            EtcdOp::Status => "status",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Op {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Endpoint {
    endpoint: String,
}

fn request_buckets() -> Histogram {
    // 0.25 ms to about 4 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

/// The etcd metrics; registered by [`EtcdMetrics::register`] on etcd nodes only.
pub(super) struct EtcdMetrics {
    lease_grants: Counter,
    session_restarts: Counter,
    lease_held: Gauge,
    reachable: Gauge,
    endpoint_up: Family<Endpoint, Gauge>,
    duration_family: Family<Op, Histogram, fn() -> Histogram>,
    error_family: Family<Op, Counter>,
    /// The families' members, resolved once.
    durations: [Histogram; EtcdOp::ALL.len()],
    errors: [Counter; EtcdOp::ALL.len()],
}

impl Default for EtcdMetrics {
    fn default() -> Self {
        let duration_family = Family::<Op, Histogram, fn() -> Histogram>::new_with_constructor(
            request_buckets as fn() -> Histogram,
        );
        let error_family = Family::<Op, Counter>::default();
        let label = |op: EtcdOp| Op { op: op.label() };
        EtcdMetrics {
            lease_grants: Counter::default(),
            session_restarts: Counter::default(),
            lease_held: Gauge::default(),
            reachable: Gauge::default(),
            endpoint_up: Family::default(),
            durations: EtcdOp::ALL.map(|op| duration_family.get_or_create(&label(op)).clone()),
            errors: EtcdOp::ALL.map(|op| error_family.get_or_create(&label(op)).clone()),
            duration_family,
            error_family,
        }
    }
}

impl EtcdMetrics {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "graycast_etcd_lease_grants",
            "Leases this node was granted by etcd (one per session)",
            self.lease_grants.clone(),
        );
        registry.register(
            "graycast_etcd_session_restarts",
            "Times this node's etcd session (lease and campaign) ended and started again",
            self.session_restarts.clone(),
        );
        registry.register(
            "graycast_etcd_lease_held",
            "Whether this node holds an etcd lease now (its guard counts and its campaign to lead need one)",
            self.lease_held.clone(),
        );
        registry.register(
            "graycast_etcd_reachable",
            "Whether some etcd endpoint answered the last health probe and has a leader (a quorum)",
            self.reachable.clone(),
        );
        registry.register(
            "graycast_etcd_endpoint_up",
            "Whether each etcd endpoint answered the last health probe (every 5 s, within 2 s)",
            self.endpoint_up.clone(),
        );
        registry.register(
            "graycast_etcd_request_duration_seconds",
            "Requests to etcd, by kind, from sending to the answer or the failure",
            self.duration_family.clone(),
        );
        registry.register(
            "graycast_etcd_request_errors",
            "Requests to etcd that failed (no answer in time, no connection, no leader, refused), by kind",
            self.error_family.clone(),
        );
    }
}

impl super::Metrics {
    pub fn record_etcd_lease_grant(&self) {
        self.etcd.lease_grants.inc();
        self.etcd.lease_held.set(1);
    }

    /// The node's session ended: its lease is gone until the next grant.
    pub fn record_etcd_session_restart(&self) {
        self.etcd.session_restarts.inc();
        self.etcd.lease_held.set(0);
    }

    /// A request to etcd answered (`ok`) or failed after `elapsed`.
    pub fn record_etcd_request(&self, op: EtcdOp, elapsed: Duration, ok: bool) {
        let i = op as usize;
        self.etcd.durations[i].observe(elapsed.as_secs_f64());
        if !ok {
            self.etcd.errors[i].inc();
        }
    }

    /// A failure of a request to etcd that is not timed (a watch's progress request).
    pub fn record_etcd_error(&self, op: EtcdOp) {
        self.etcd.errors[op as usize].inc();
    }

    /// One round of the health probe: whether `endpoint` answered.
    pub fn record_etcd_endpoint(&self, endpoint: &str, up: bool) {
        let labels = Endpoint { endpoint: endpoint.to_owned() };
        self.etcd.endpoint_up.get_or_create(&labels).set(i64::from(up));
    }

    /// Whether the cluster answered the last probe with a leader.
    pub fn record_etcd_reachable(&self, reachable: bool) {
        self.etcd.reachable.set(i64::from(reachable));
    }
}
