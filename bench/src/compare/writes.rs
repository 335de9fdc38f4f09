//! `writes`: W concurrent writers, each writing its own key as fast as durable
//! acknowledgements come (graycast and etcd).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::publisher::Publisher;
use super::report::Row;
use super::servers::Server;
use super::settings::Settings;
use crate::{ms, percentile};

/// The writes scenario on one server: its row of the table.
pub(super) async fn run(server: &Server, settings: &Settings) -> Result<Row> {
    // Connections first, so that connecting is neither timed nor counted as server CPU.
    let mut publishers = Vec::with_capacity(settings.writers);
    for w in 0..settings.writers {
        publishers.push(match server.name {
            "graycast" => Publisher::Graycast {
                http: reqwest::Client::new(),
                url: format!("http://{}/v1/configs/compare/w{w}", server.address),
            },
            _ => Publisher::Etcd(Box::new(
                etcd_client::Client::connect([&server.address], None).await?,
            )),
        });
    }
    let deadline = Instant::now() + Duration::from_secs(settings.seconds);
    let cpu_before = server.cpu();
    let started = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (w, mut publisher) in publishers.into_iter().enumerate() {
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0;
            while Instant::now() < deadline {
                let sent = Instant::now();
                match &mut publisher {
                    Publisher::Etcd(client) => {
                        client.put(format!("compare/w{w}"), i.to_string(), None).await?;
                    }
                    other => other.send(i).await?,
                }
                latencies.push(sent.elapsed());
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    let cpu = server.cpu().saturating_sub(cpu_before);
    latencies.sort();
    let per_second = latencies.len() as f64 / elapsed.as_secs_f64();
    let p50 = percentile(&latencies, 0.5);
    let p99 = percentile(&latencies, 0.99);
    let cpu_per = cpu.as_secs_f64() / latencies.len().max(1) as f64 * 1e6;
    let mut row = Row { name: server.name, ..Row::default() };
    row.add("durable writes/s", format!("{per_second:.0}"), Some(per_second));
    row.add("latency p50", ms(p50), Some(p50.as_secs_f64()));
    row.add("latency p99", ms(p99), Some(p99.as_secs_f64()));
    row.add("server CPU per write", format!("{cpu_per:.1} µs"), Some(cpu_per));
    row.add("server RSS after", format!("{:.1} MiB", server.rss() as f64 / 1048576.0), None);
    Ok(row)
}
