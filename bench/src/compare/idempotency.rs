//! `idempotency`: what `Idempotency-Key` costs a write. graycast alone, on one node (redb)
//! and on etcd (one member): one writer's latency, and 64 writers' throughput (each writing
//! its own key as fast as durable acknowledgements come), with and without a fresh key per
//! write, side by side.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::json;

use super::servers::{start_etcd, start_graycast, start_graycast_with, Server};
use super::settings::Settings;
use crate::{ms, percentile};

/// One measurement: writes/s, p50 and p99.
struct Measured {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

/// `writers` writers for `seconds`, each write keyed or not.
async fn measure(server: &Server, writers: usize, seconds: u64, keyed: bool) -> Result<Measured> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    // Keys of their own for each run: a key repeats only what it was first used for.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        .to_string();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let http = reqwest::Client::new();
        let url = format!("http://{}/v1/configs/idempotency/w{w}", server.address);
        let run = run.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let mut request = http.put(url.as_str()).json(&json!({ "value": i }));
                if keyed {
                    request = request.header("idempotency-key", format!("bench-{run}-{w}-{i}"));
                }
                let sent = Instant::now();
                let response = request.send().await?;
                if !response.status().is_success() {
                    bail!("PUT {url}: {}", response.status());
                }
                latencies.push(sent.elapsed());
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
    latencies.sort();
    Ok(Measured {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
    })
}

pub(super) async fn run(settings: &Settings) -> Result<()> {
    let seconds = settings.seconds;
    let writers = settings.writers;
    println!(
        "idempotency: 1 writer and {writers} writers, {seconds} s each, without and with \
         Idempotency-Key\n"
    );
    println!("| store | figure | without key | with key | with / without |");
    println!("|---|---|---|---|---|");
    for store in ["one node (redb)", "etcd (1 member)"] {
        // Both `etcd` and the node are dropped (stopped, their data removed) after the store.
        let (_etcd, server) = if store.starts_with("one") {
            (None, start_graycast(&settings.graycast_bin, 10)?)
        } else {
            let etcd = start_etcd().await?;
            let extra =
                ["--store", "etcd", "--etcd-endpoints", &format!("http://{}", etcd.address)]
                    .map(str::to_owned);
            let server = start_graycast_with(&settings.graycast_bin, 10, &extra)?;
            (Some(etcd), server)
        };
        eprintln!("compare: idempotency on {store}");
        // Alternating runs, so that a drift of the machine hits both sides alike.
        let single =
            [measure(&server, 1, seconds, false).await?, measure(&server, 1, seconds, true).await?];
        let many = [
            measure(&server, writers, seconds, false).await?,
            measure(&server, writers, seconds, true).await?,
        ];
        let row = |figure: &str, plain: String, keyed: String, ratio: f64| {
            println!("| {store} | {figure} | {plain} | {keyed} | {ratio:.3} |");
        };
        let ratio = |a: f64, b: f64| if a > 0.0 { b / a } else { 0.0 };
        row(
            "1 writer, latency p50",
            ms(single[0].p50),
            ms(single[1].p50),
            ratio(single[0].p50.as_secs_f64(), single[1].p50.as_secs_f64()),
        );
        row(
            &format!("{writers} writers, writes/s"),
            format!("{:.0}", many[0].per_second),
            format!("{:.0}", many[1].per_second),
            ratio(many[0].per_second, many[1].per_second),
        );
        row(
            &format!("{writers} writers, latency p99"),
            ms(many[0].p99),
            ms(many[1].p99),
            ratio(many[0].p99.as_secs_f64(), many[1].p99.as_secs_f64()),
        );
    }
    Ok(())
}
