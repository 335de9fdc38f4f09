//! `schema`: what a typed config costs a write. graycast alone, on one node: one writer
//! putting the same 64 KiB value (`data/value-64k.json`) to a key without a schema and to a
//! key under a 5 KB schema (`data/schema-5k.json`), in alternating runs, side by side.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::{json, Value};

use super::servers::start_graycast;
use super::settings::Settings;
use crate::{ms, percentile};

fn fixture(name: &str) -> Result<Value> {
    let path = format!("{}/data/{name}", env!("CARGO_MANIFEST_DIR"));
    Ok(serde_json::from_slice(&std::fs::read(path)?)?)
}

/// One writer's PUT latencies to `url` for `seconds`.
async fn measure(
    http: &reqwest::Client,
    url: &str,
    value: &Value,
    seconds: u64,
) -> Result<Vec<Duration>> {
    let body = serde_json::to_vec(&json!({ "value": value }))?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut latencies = Vec::new();
    while Instant::now() < deadline {
        let sent = Instant::now();
        let response = http
            .put(url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("PUT {url}: {} {}", response.status(), response.text().await.unwrap_or_default());
        }
        latencies.push(sent.elapsed());
    }
    latencies.sort();
    Ok(latencies)
}

pub(super) async fn run(settings: &Settings) -> Result<()> {
    let seconds = settings.seconds;
    let (schema, value) = (fixture("schema-5k.json")?, fixture("value-64k.json")?);
    let server = start_graycast(&settings.graycast_bin, 10)?;
    let base = format!("http://{}", server.address);
    let http = reqwest::Client::new();
    let typed = http
        .put(format!("{base}/v1/schemas/typed"))
        .json(&json!({ "schemas": { "upstreams": schema } }))
        .send()
        .await?;
    if !typed.status().is_success() {
        bail!("the schema was refused: {}", typed.text().await.unwrap_or_default());
    }
    println!("schema: 1 writer, 64 KiB value, {seconds} s per run, 3 alternating runs per side\n");
    let (mut untyped, mut checked) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        untyped.extend(
            measure(&http, &format!("{base}/v1/configs/plain/upstreams"), &value, seconds).await?,
        );
        checked.extend(
            measure(&http, &format!("{base}/v1/configs/typed/upstreams"), &value, seconds).await?,
        );
    }
    untyped.sort();
    checked.sort();
    println!("| figure | without a schema | with a 5 KB schema | with / without |");
    println!("|---|---|---|---|");
    for (figure, q) in [("PUT latency p50", 0.5), ("PUT latency p99", 0.99)] {
        let (a, b) = (percentile(&untyped, q), percentile(&checked, q));
        println!("| {figure} | {} | {} | {:.3} |", ms(a), ms(b), b.as_secs_f64() / a.as_secs_f64());
    }
    println!("| writes | {} | {} | |", untyped.len(), checked.len());
    Ok(())
}
