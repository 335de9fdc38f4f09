//! `fanout`: N subscribers, U updates of one key; latency from sending an update to its
//! receipt, deliveries per second, server CPU per delivery, memory per connection.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tokio::sync::mpsc;

use super::publisher::Publisher;
use super::report::Row;
use super::servers::Server;
use super::settings::Settings;
use super::subscribers::subscribe_all;
use crate::{ms, percentile};

/// What one fan-out run measured.
pub(super) struct FanoutRun {
    pub(super) latencies: Vec<Duration>,
    pub(super) acks: Vec<Duration>,
    per_second: f64,
    cpu_per: f64,
    rss_subscribed: u64,
    per_connection: f64,
}

/// The fanout scenario on one server: its row of the table.
pub(super) async fn run(server: &Server, settings: &Settings) -> Result<Row> {
    let run = measure(server, settings).await?;
    let p50 = percentile(&run.latencies, 0.5);
    let p99 = percentile(&run.latencies, 0.99);
    let (per_second, cpu_per, per_connection) = (run.per_second, run.cpu_per, run.per_connection);
    let mut row = Row { name: server.name, ..Row::default() };
    row.add("latency p50", ms(p50), Some(p50.as_secs_f64()));
    row.add("latency p99", ms(p99), Some(p99.as_secs_f64()));
    row.add("deliveries/s", format!("{per_second:.0}"), Some(per_second));
    row.add("server CPU per delivery", format!("{cpu_per:.1} µs"), Some(cpu_per));
    row.add("update acknowledged, p50", ms(percentile(&run.acks, 0.5)), None);
    row.add(
        "server RSS subscribed (per connection: growth over the start ÷ N)",
        format!("{:.1} MiB ({per_connection:.1} KiB)", run.rss_subscribed as f64 / 1048576.0),
        Some(per_connection),
    );
    Ok(row)
}

/// Subscribes N clients, warms every connection up, sends the updates from a thread of
/// their own and collects the deliveries (`ack` measures with it too).
pub(super) async fn measure(server: &Server, settings: &Settings) -> Result<FanoutRun> {
    let (n, updates) = (settings.subscribers, settings.updates);
    let rss_before = server.rss();
    let (arrivals, mut arrived) = mpsc::unbounded_channel();
    subscribe_all(server, n, &arrivals).await?;
    drop(arrivals);
    let rss_subscribed = server.rss();
    let mut publisher = Publisher::connect(server).await?;
    // Not counted: one update for every connection to warm up.
    publisher.send(usize::MAX - 1).await?;
    let mut warm = 0;
    while warm < n {
        let (update, _) = tokio::time::timeout(Duration::from_secs(60), arrived.recv())
            .await
            .context("the warm-up update never reached every subscriber")?
            .context("subscribers ended")?;
        if update == usize::MAX - 1 {
            warm += 1;
        }
    }

    let cpu_before = server.cpu();
    let started = Instant::now();
    let collect = tokio::spawn(async move {
        let mut got = Vec::with_capacity(n * updates);
        while got.len() < n * updates {
            match tokio::time::timeout(Duration::from_secs(60), arrived.recv()).await {
                Ok(Some(arrival)) => got.push(arrival),
                _ => break,
            }
        }
        got
    });
    // The updates go out from a thread of their own: on the runtime that takes the
    // deliveries, an acknowledgement would wait for the probe's own subscriber tasks.
    let interval = Duration::from_millis(settings.interval_ms);
    let (name, address) = (server.name, server.address.clone());
    let (sent_at, mut acks) = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async move {
            let mut publisher = Publisher::connect_to(name, &address).await?;
            let mut sent_at = Vec::with_capacity(updates);
            let mut acks = Vec::with_capacity(updates);
            for update in 0..updates {
                let sent = Instant::now();
                sent_at.push(sent);
                publisher.send(update).await?;
                acks.push(sent.elapsed());
                if !interval.is_zero() {
                    tokio::time::sleep_until((sent + interval).into()).await;
                }
            }
            Ok::<_, anyhow::Error>((sent_at, acks))
        })
    })
    .join()
    .map_err(|_| anyhow!("the publishing thread panicked"))??;
    let got = collect.await?;
    let cpu = server.cpu().saturating_sub(cpu_before);
    if got.len() < n * updates {
        bail!("{}: {} of {} deliveries arrived", server.name, got.len(), n * updates);
    }
    let last = got.iter().map(|(_, at)| *at).max().unwrap_or(started);
    let mut latencies: Vec<Duration> = got
        .iter()
        .filter_map(|(update, at)| {
            sent_at.get(*update).map(|sent| at.saturating_duration_since(*sent))
        })
        .collect();
    latencies.sort();
    acks.sort();
    let deliveries = latencies.len() as f64;
    let per_second = deliveries / (last - started).as_secs_f64().max(1e-9);
    let cpu_per = cpu.as_secs_f64() / deliveries * 1e6;
    let per_connection = rss_subscribed.saturating_sub(rss_before) as f64 / n as f64 / 1024.0;
    Ok(FanoutRun { latencies, acks, per_second, cpu_per, rss_subscribed, per_connection })
}
