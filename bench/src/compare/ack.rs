//! `ack`: how long an update takes to be acknowledged, first with nobody subscribed, then
//! while it fans out to N subscribers.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::fanout;
use super::publisher::Publisher;
use super::report::Row;
use super::servers::Server;
use super::settings::Settings;
use crate::{ms, percentile};

/// Acknowledgements of updates with nobody subscribed, then while fanning them out.
pub(super) async fn run(server: &Server, settings: &Settings) -> Result<Row> {
    let mut publisher = Publisher::connect(server).await?;
    let mut idle = Vec::with_capacity(settings.updates);
    for _ in 0..settings.updates {
        let sent = Instant::now();
        publisher.send(usize::MAX - 2).await?;
        idle.push(sent.elapsed());
        tokio::time::sleep_until((sent + Duration::from_millis(settings.interval_ms)).into()).await;
    }
    drop(publisher);
    idle.sort();
    let run = fanout::measure(server, settings).await?;
    let mut row = Row { name: server.name, ..Row::default() };
    for (what, figure) in [
        ("acknowledged p50, no subscribers", percentile(&idle, 0.5)),
        ("acknowledged p50, fanning out", percentile(&run.acks, 0.5)),
        ("acknowledged p99, fanning out", percentile(&run.acks, 0.99)),
        ("delivered p99 (for reference)", percentile(&run.latencies, 0.99)),
    ] {
        row.add(what, ms(figure), Some(figure.as_secs_f64()));
    }
    Ok(row)
}
