//! The server's metrics, kept with `prometheus-client` and rendered at `/metrics` in the
//! OpenMetrics text format (which Prometheus scrapes natively).
//!
//! Counters and histograms are updated where things happen; the gauges of live state
//! (revision, connections, subscribers, leadership) are read when a scrape renders them.
//! Labelled counters are resolved once, here, so the hot paths never look a label up; the
//! REST requests' are the exception, looked up per request by the route that matched.

mod etcd;
mod http;
mod process;

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub use self::etcd::EtcdOp;

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of [`to_prometheus_text`]'s output (Prometheus' classic text format).
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether a scrape's `Accept` header asks for OpenMetrics (Prometheus asks for it first);
/// anything else (`text/plain;version=0.0.4`, none) gets the classic text format, as from
/// Prometheus' own client libraries.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| {
        accept.split(',').any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.replace(' ', "").starts_with("q=0") && {
                    let q = p.split('=').nth(1).unwrap_or("1").trim();
                    q.parse::<f32>().is_ok_and(|q| q == 0.0)
                }
            });
            media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
        })
    })
}

/// The OpenMetrics text `openmetrics` in Prometheus' classic text format (0.0.4): a
/// counter family `x` is named by its sample `x_total` in `# HELP` and `# TYPE`, and the
/// OpenMetrics-only lines (`# UNIT`, `# EOF`) go.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => out.push_str(&line),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Why a subscriber connection (WebSocket or event stream) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disconnect {
    /// The client sent a close frame.
    ClientClosed,
    /// The connection dropped without a close (the peer went away, a network failure).
    Gone,
    /// The server is shutting down (close 1001).
    Shutdown,
    /// The peer sent nothing, not even a pong, for the client timeout.
    Timeout,
    /// The peer took none of its output for the client timeout (reset).
    Stalled,
    /// No `subscribe` within the subscribe timeout.
    SubscribeTimeout,
    /// A missing or refused token, or a namespace the token may not read.
    Unauthorized,
    /// A message that broke the protocol (bad JSON, too large, binary, bad framing).
    ProtocolError,
    /// The server could not serve the subscription (a snapshot or the change log failed).
    Internal,
}

impl Disconnect {
    const ALL: [Disconnect; 9] = [
        Disconnect::ClientClosed,
        Disconnect::Gone,
        Disconnect::Shutdown,
        Disconnect::Timeout,
        Disconnect::Stalled,
        Disconnect::SubscribeTimeout,
        Disconnect::Unauthorized,
        Disconnect::ProtocolError,
        Disconnect::Internal,
    ];

    fn label(self) -> &'static str {
        match self {
            Disconnect::ClientClosed => "client_closed",
            Disconnect::Gone => "gone",
            Disconnect::Shutdown => "shutdown",
            Disconnect::Timeout => "timeout",
            Disconnect::Stalled => "stalled",
            Disconnect::SubscribeTimeout => "subscribe_timeout",
            Disconnect::Unauthorized => "unauthorized",
            Disconnect::ProtocolError => "protocol_error",
            Disconnect::Internal => "internal",
        }
    }
}

/// Why a subscriber was sent a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotCause {
    /// It subscribed without a revision to resume from.
    New,
    /// Its revision is older than the change log reaches (or newer than the store).
    TooOld,
    /// It fell behind by more than its byte budget (or the store reloaded its state).
    Lag,
}

impl SnapshotCause {
    fn label(self) -> &'static str {
        match self {
            SnapshotCause::New => "new",
            SnapshotCause::TooOld => "too_old",
            SnapshotCause::Lag => "lag",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OfrepLabels {
    endpoint: &'static str,
    reason: &'static str,
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Cause {
    cause: &'static str,
}

/// Gauges of live state, read by the caller when a scrape comes.
pub struct Live {
    pub revision: u64,
    pub connections: usize,
    pub subscribers: usize,
    pub subscriber_limit: usize,
    pub leader: bool,
}

/// Every metric of the server, registered once.
pub struct Metrics {
    registry: Registry,
    writes: Counter,
    write_rejections: Counter,
    write_duration: Histogram,
    commit_batch: Histogram,
    push_latency: Histogram,
    pushed_messages: Counter,
    replays: Counter,
    snapshots: [Counter; 3],
    disconnects: [Counter; Disconnect::ALL.len()],
    refused_connections: Counter,
    guard_aborts: Counter,
    ofrep: Family<OfrepLabels, Counter>,
    http: http::HttpMetrics,
    etcd: etcd::EtcdMetrics,
    reloads: Counter,
    reload_failures: Counter,
    revision: Gauge,
    connections: Gauge,
    subscribers: Gauge,
    subscriber_limit: Gauge,
    leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Build {
    version: &'static str,
    etcd: &'static str,
}

impl Metrics {
    /// The metrics of a node on its own store.
    pub fn new() -> Metrics {
        Metrics::build(false)
    }

    /// The metrics of a node on etcd: also etcd's health.
    pub fn for_etcd() -> Metrics {
        Metrics::build(true)
    }

    fn build(on_etcd: bool) -> Metrics {
        let mut registry = Registry::default();
        let build = Family::<Build, Gauge>::default();
        registry.register(
            "graycast_build_info",
            "Always 1; the labels name the server's version and whether it was built with the etcd store",
            build.clone(),
        );
        let etcd_built = if cfg!(feature = "etcd") { "true" } else { "false" };
        build.get_or_create(&Build { version: env!("CARGO_PKG_VERSION"), etcd: etcd_built }).set(1);
        registry.register_collector(Box::new(process::ProcessCollector::default()));
        let http = http::HttpMetrics::register(&mut registry);
        let etcd = etcd::EtcdMetrics::default();
        if on_etcd {
            etcd.register(&mut registry);
        }
        let writes = Counter::default();
        registry.register("graycast_writes", "Changes committed, one per revision", writes.clone());
        let write_rejections = Counter::default();
        registry.register(
            "graycast_write_rejections",
            "Writes refused by a precondition or a rule (412, 404, 422 from the store)",
            write_rejections.clone(),
        );
        // 0.25 ms to about 4 s.
        let write_duration = Histogram::new(exponential_buckets(0.000_25, 2.0, 15));
        registry.register(
            "graycast_write_duration_seconds",
            "From a write reaching the store to its durable commit (or refusal)",
            write_duration.clone(),
        );
        let commit_batch = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        registry.register(
            "graycast_commit_batch_size",
            "Changes per committed transaction",
            commit_batch.clone(),
        );
        // 0.1 ms to about 3 s.
        let push_latency = Histogram::new(exponential_buckets(0.000_1, 2.0, 15));
        registry.register(
            "graycast_push_latency_seconds",
            "From a change's commit to its frame handed to a subscriber's socket, per subscriber",
            push_latency.clone(),
        );
        let pushed_messages = Counter::default();
        registry.register(
            "graycast_pushed_messages",
            "Change messages queued to subscribers",
            pushed_messages.clone(),
        );
        let replays = Counter::default();
        registry.register(
            "graycast_replays",
            "Subscriptions resumed by replaying the changes they missed",
            replays.clone(),
        );
        let snapshot_family = Family::<Cause, Counter>::default();
        registry.register(
            "graycast_snapshots",
            "Snapshots sent to subscribers, by cause: new (no revision to resume from), too_old (the change log no longer reaches back), lag (fell behind its byte budget)",
            snapshot_family.clone(),
        );
        let snapshots = [SnapshotCause::New, SnapshotCause::TooOld, SnapshotCause::Lag]
            .map(|c| snapshot_family.get_or_create(&Cause { cause: c.label() }).clone());
        let disconnect_family = Family::<Reason, Counter>::default();
        registry.register(
            "graycast_disconnects",
            "Subscriber connections ended, by reason",
            disconnect_family.clone(),
        );
        let disconnects = Disconnect::ALL
            .map(|d| disconnect_family.get_or_create(&Reason { reason: d.label() }).clone());
        let refused_connections = Counter::default();
        registry.register(
            "graycast_refused_connections",
            "Subscriber connections refused because the subscriber limit was reached",
            refused_connections.clone(),
        );
        let ofrep = Family::<OfrepLabels, Counter>::default();
        registry.register(
            "graycast_ofrep_evaluations",
            "OFREP requests by endpoint (single, bulk), reason and error code",
            ofrep.clone(),
        );
        let guard_aborts = Counter::default();
        registry.register(
            "graycast_guard_aborts",
            "Gray releases aborted by their guard",
            guard_aborts.clone(),
        );
        let reloads = Counter::default();
        registry.register(
            "graycast_reloads",
            "SIGHUP reloads that loaded the token file and TLS certificate",
            reloads.clone(),
        );
        let reload_failures = Counter::default();
        registry.register(
            "graycast_reload_failures",
            "SIGHUP reloads that kept a previous file in service (the log says why)",
            reload_failures.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let revision = gauge(&mut registry, "graycast_revision", "Revision of the last change");
        let connections = gauge(
            &mut registry,
            "graycast_connections",
            "Open subscriber connections (WebSocket and event stream), subscribed or not",
        );
        let subscribers =
            gauge(&mut registry, "graycast_subscribers", "Connections with a subscription");
        let subscriber_limit = gauge(
            &mut registry,
            "graycast_subscriber_limit",
            "Most subscriber connections served at once",
        );
        let leader = gauge(
            &mut registry,
            "graycast_leader",
            "Whether this node runs ramps and the cluster's guard (always 1 alone)",
        );
        Metrics {
            registry,
            writes,
            write_rejections,
            write_duration,
            commit_batch,
            push_latency,
            pushed_messages,
            replays,
            snapshots,
            disconnects,
            refused_connections,
            guard_aborts,
            ofrep,
            http,
            etcd,
            reloads,
            reload_failures,
            revision,
            connections,
            subscribers,
            subscriber_limit,
            leader,
        }
    }

    /// One committed transaction of `size` changes.
    pub fn record_commit(&self, size: usize) {
        self.writes.inc_by(size as u64);
        self.commit_batch.observe(size as f64);
    }

    /// Writes the store refused.
    pub fn record_rejections(&self, count: u64) {
        if count > 0 {
            self.write_rejections.inc_by(count);
        }
    }

    /// A write answered (committed or refused) after `elapsed`.
    pub fn record_write(&self, elapsed: Duration) {
        self.write_duration.observe(elapsed.as_secs_f64());
    }

    /// A change handed to a subscriber's socket `elapsed` after its commit.
    pub fn record_push(&self, elapsed: Duration) {
        self.push_latency.observe(elapsed.as_secs_f64());
    }

    pub fn record_pushed(&self, messages: u64) {
        if messages > 0 {
            self.pushed_messages.inc_by(messages);
        }
    }

    pub fn record_replay(&self) {
        self.replays.inc();
    }

    pub fn record_snapshot(&self, cause: SnapshotCause) {
        self.snapshots[cause as usize].inc();
    }

    pub fn record_disconnect(&self, reason: Disconnect) {
        let index = Disconnect::ALL.iter().position(|d| *d == reason).unwrap_or(0);
        self.disconnects[index].inc();
    }

    pub fn record_refused_connection(&self) {
        self.refused_connections.inc();
    }

    /// An OFREP evaluation answered with `reason`, or refused with `error` (an OFREP
    /// error code).
    pub fn record_ofrep(
        &self,
        endpoint: &'static str,
        reason: Option<&'static str>,
        error: Option<&'static str>,
    ) {
        let labels =
            OfrepLabels { endpoint, reason: reason.unwrap_or(""), error: error.unwrap_or("") };
        self.ofrep.get_or_create(&labels).inc();
    }

    pub fn record_guard_abort(&self) {
        self.guard_aborts.inc();
    }

    /// A SIGHUP reload, whole (`ok`) or keeping some previous file.
    pub fn record_reload(&self, ok: bool) {
        if ok { &self.reloads } else { &self.reload_failures }.inc();
    }

    /// The OpenMetrics text of every metric, with `live` as the gauges.
    pub fn render(&self, live: &Live) -> String {
        let as_gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.revision.set(as_gauge(live.revision));
        self.connections.set(as_gauge(live.connections as u64));
        self.subscribers.set(as_gauge(live.subscribers as u64));
        self.subscriber_limit.set(as_gauge(live.subscriber_limit as u64));
        self.leader.set(i64::from(live.leader));
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> Live {
        Live { revision: 7, connections: 3, subscribers: 2, subscriber_limit: 10, leader: true }
    }

    #[test]
    fn batch_histogram_is_cumulative() {
        let m = Metrics::new();
        m.record_commit(1);
        m.record_commit(3);
        m.record_commit(2000);
        let text = m.render(&live());
        assert!(text.contains("graycast_commit_batch_size_bucket{le=\"1.0\"} 1\n"), "{text}");
        assert!(text.contains("graycast_commit_batch_size_bucket{le=\"4.0\"} 2\n"), "{text}");
        assert!(text.contains("graycast_commit_batch_size_bucket{le=\"1024.0\"} 2\n"), "{text}");
        assert!(text.contains("graycast_commit_batch_size_bucket{le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("graycast_commit_batch_size_sum 2004.0\n"), "{text}");
        assert!(text.contains("graycast_writes_total 2004\n"), "{text}");
        assert!(text.contains("graycast_subscribers 2\n"), "{text}");
        assert!(text.contains("graycast_connections 3\n"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    /// Every sample of the classic text has its family's `# HELP` and `# TYPE` (what
    /// `promtool check metrics` asks), counters by their `_total` name.
    #[test]
    fn the_classic_text_names_every_sample_family() {
        let text = to_prometheus_text(&Metrics::new().render(&live()));
        let mut described = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                described.insert(rest.split(' ').next().unwrap_or_default().to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap_or_default();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|f| described.contains(*f)))
                    .unwrap_or(name);
                assert!(described.contains(family), "no HELP for {name}: {text}");
            }
        }
        assert!(text.contains("# TYPE graycast_writes_total counter\n"), "{text}");
        assert!(text.contains("# HELP graycast_disconnects_total "), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
    }

    #[test]
    fn scrapes_get_the_format_they_ask_for() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_openmetrics(Some(prometheus)));
        assert!(!wants_openmetrics(Some("text/plain;version=0.0.4")));
        assert!(!wants_openmetrics(Some("application/openmetrics-text; q=0, text/plain")));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(None));
    }

    #[test]
    fn labelled_counters_start_at_zero_and_count_apart() {
        let m = Metrics::new();
        m.record_disconnect(Disconnect::Shutdown);
        m.record_disconnect(Disconnect::Shutdown);
        m.record_snapshot(SnapshotCause::Lag);
        let text = m.render(&live());
        assert!(text.contains("graycast_disconnects_total{reason=\"shutdown\"} 2\n"), "{text}");
        assert!(text.contains("graycast_disconnects_total{reason=\"gone\"} 0\n"), "{text}");
        assert!(text.contains("graycast_snapshots_total{cause=\"lag\"} 1\n"), "{text}");
        assert!(text.contains("graycast_snapshots_total{cause=\"new\"} 0\n"), "{text}");
    }
}
