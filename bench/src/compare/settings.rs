//! The options of `graycast-load compare`: the scenario, its sizes, and whom to compare.

use std::path::PathBuf;

/// What `compare` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Fanout,
    Writes,
    Conns,
    Storm,
    Ack,
    /// graycast alone, on one node and on etcd: writes with and without `Idempotency-Key`.
    Idempotency,
    /// graycast alone: OFREP evaluations beside `/v1/release`, bulk, refetch after a change.
    Ofrep,
    /// graycast alone: a 64 KiB value's PUT latency without and with a 5 KB JSON Schema.
    Schema,
    /// graycast alone: a change's way to N subscribers, plain and as an approved request.
    Requests,
}

/// The settings of a comparison.
#[derive(Clone, Debug, clap::Args)]
pub struct Settings {
    /// The scenario to run against every system.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Subscribers (fanout, ack, conns) or clients (storm).
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Updates sent (fanout, ack).
    #[arg(long, default_value_t = 30)]
    pub updates: usize,
    /// Time between updates in milliseconds; 0 sends them back to back (fanout, ack).
    #[arg(long, default_value_t = 100)]
    pub interval_ms: u64,
    /// Concurrent writers (writes).
    #[arg(long, default_value_t = 64)]
    pub writers: usize,
    /// Seconds of writing (writes).
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// The graycast server binary.
    #[arg(long, default_value = "target/release/graycast")]
    pub graycast_bin: PathBuf,
    /// The peers to compare with: etcd, redis (comma separated; empty: graycast alone).
    #[arg(long, value_delimiter = ',', default_value = "etcd,redis")]
    pub peers: Vec<String>,
}
