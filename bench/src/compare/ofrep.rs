//! `ofrep`: OFREP against graycast's own `/v1/release`, in the same run. graycast alone,
//! with 100 keys (a tenth under a gray release):
//! - single evaluations by 64 concurrent clients: `POST /ofrep/v1/evaluate/flags/{ns}/{key}`
//!   and `GET /v1/release/{ns}/{key}` for the same subjects, side by side;
//! - bulk evaluation of the 100 flags by one client;
//! - with `--subscribers` OFREP event streams open (1,000 by default), the time from a PUT
//!   to a provider's refetched value: each stream that is told fetches the flags again, and
//!   the figures run until the event arrives, and until that answer holds the new value.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::StreamExt as _;
use serde_json::{json, Value};

use super::servers::start_graycast;
use super::settings::Settings;
use crate::{ms, percentile};

const KEYS: usize = 100;

/// `clients` clients asking `request(i)` for `seconds`: requests/s, p50, p99.
async fn load<F, Fut>(clients: usize, seconds: u64, request: F) -> Result<(f64, Duration, Duration)>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let request = Arc::new(request);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = c as u64;
            while Instant::now() < deadline {
                let sent = Instant::now();
                request(i).await?;
                latencies.push(sent.elapsed());
                i += clients as u64;
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    latencies.sort();
    let rate = latencies.len() as f64 / started.elapsed().as_secs_f64();
    Ok((rate, percentile(&latencies, 0.5), percentile(&latencies, 0.99)))
}

pub(super) async fn run(settings: &Settings) -> Result<()> {
    let server = start_graycast(&settings.graycast_bin, settings.subscribers)?;
    let base = format!("http://{}", server.address);
    let http = reqwest::Client::new();
    for k in 0..KEYS {
        let url = format!("{base}/v1/configs/flags/k{k}");
        http.put(&url).json(&json!({"value": k})).send().await?.error_for_status()?;
        if k % 10 == 0 {
            let gray = json!({"value": k + 1000, "percent": 30, "allow": ["vip"]});
            http.put(format!("{url}/gray")).json(&gray).send().await?.error_for_status()?;
        }
    }
    let (clients, seconds) = (settings.writers, settings.seconds);
    println!(
        "ofrep: {KEYS} keys (a tenth gray), {clients} clients for {seconds} s each; then \
         {} event streams\n",
        settings.subscribers
    );
    println!("| figure | OFREP | /v1/release |");
    println!("|---|---|---|");
    eprintln!("compare: ofrep single evaluations");
    let single = {
        let (http, base) = (http.clone(), base.clone());
        load(clients, seconds, move |i| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let url = format!("{base}/ofrep/v1/evaluate/flags/flags/k{}", i % KEYS as u64);
                let body = json!({"context": {"targetingKey": format!("user-{i}")}});
                let response = http.post(url).json(&body).send().await?;
                if !response.status().is_success() {
                    bail!("OFREP: {}", response.status());
                }
                response.bytes().await?;
                Ok(())
            }
        })
        .await?
    };
    let release = {
        let (http, base) = (http.clone(), base.clone());
        load(clients, seconds, move |i| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let url = format!("{base}/v1/release/flags/k{}?subject=user-{i}", i % KEYS as u64);
                let response = http.get(url).send().await?;
                if !response.status().is_success() {
                    bail!("release: {}", response.status());
                }
                response.bytes().await?;
                Ok(())
            }
        })
        .await?
    };
    println!("| single evaluations/s, {clients} clients | {:.0} | {:.0} |", single.0, release.0);
    println!("| single evaluation p50 | {} | {} |", ms(single.1), ms(release.1));
    println!("| single evaluation p99 | {} | {} |", ms(single.2), ms(release.2));
    eprintln!("compare: ofrep bulk");
    let bulk = {
        let (http, base) = (http.clone(), base.clone());
        load(1, seconds, move |i| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let body = json!({"context": {"targetingKey": format!("user-{i}")}});
                let response =
                    http.post(format!("{base}/ofrep/v1/evaluate/flags")).json(&body).send().await?;
                let answer: Value = response.json().await?;
                if answer["flags"].as_array().map(Vec::len) != Some(KEYS) {
                    bail!("bulk answered {answer}");
                }
                Ok(())
            }
        })
        .await?
    };
    println!("| bulk of {KEYS} flags p50 (one client) | {} | |", ms(bulk.1));
    println!("| bulk of {KEYS} flags p99 | {} | |", ms(bulk.2));
    eprintln!("compare: ofrep refetch after a change, {} streams", settings.subscribers);
    let (told, refetched) = refetch(&base, settings.subscribers, settings.updates).await?;
    println!(
        "| PUT → event received, {} streams, p50 | {} | |",
        settings.subscribers,
        ms(percentile(&told, 0.5))
    );
    println!("| PUT → event received, p99 | {} | |", ms(percentile(&told, 0.99)));
    println!(
        "| PUT → refetched value, {} streams, p50 | {} | |",
        settings.subscribers,
        ms(percentile(&refetched, 0.5))
    );
    println!("| PUT → refetched value, p99 | {} | |", ms(percentile(&refetched, 0.99)));
    Ok(())
}

/// Opens `streams` event streams, each refetching the flags when told; makes `updates`
/// changes; the time from each PUT to each refetched answer holding its value.
async fn refetch(
    base: &str,
    streams: usize,
    updates: usize,
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    // When each stream was told (before its refetch).
    let (told_tx, mut told_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let mut tasks = Vec::new();
    for s in 0..streams {
        let (base, tx, told_tx) = (base.to_owned(), tx.clone(), told_tx.clone());
        let http = reqwest::Client::new();
        let response = http.get(format!("{base}/ofrep/v1/events")).send().await?;
        if !response.status().is_success() {
            bail!("stream {s}: {}", response.status());
        }
        tasks.push(tokio::spawn(async move {
            let mut body = response.bytes_stream();
            let mut buf = String::new();
            while let Some(chunk) = body.next().await {
                let Ok(chunk) = chunk else { break };
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    if !block.contains("refetchEvaluation") {
                        continue;
                    }
                    let _ = told_tx.send(Instant::now());
                    // The provider's refetch: the new value, for this stream's subject.
                    let body = json!({"context": {"targetingKey": format!("user-{s}")}});
                    let answer: Value = match http
                        .post(format!("{base}/ofrep/v1/evaluate/flags"))
                        .json(&body)
                        .send()
                        .await
                    {
                        Ok(response) => response.json().await.unwrap_or(Value::Null),
                        Err(_) => continue,
                    };
                    let value = answer["flags"]
                        .as_array()
                        .and_then(|flags| flags.iter().find(|f| f["key"] == "flags/bench"))
                        .and_then(|f| f["value"].as_u64());
                    if let Some(value) = value {
                        let _ = tx.send((value, Instant::now()));
                    }
                }
            }
        }));
    }
    drop((tx, told_tx));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let http = reqwest::Client::new();
    let mut latencies = Vec::new();
    let mut told = Vec::new();
    for update in 0..updates as u64 {
        let sent = Instant::now();
        http.put(format!("{base}/v1/configs/flags/bench"))
            .json(&json!({"value": update}))
            .send()
            .await?
            .error_for_status()?;
        let mut seen = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while seen < streams {
            let (value, at) = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .context("refetches missing after 10 s")?
                .context("every stream ended")?;
            if value == update {
                latencies.push(at - sent);
                seen += 1;
            }
        }
        while let Ok(at) = told_rx.try_recv() {
            told.push(at.saturating_duration_since(sent));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for task in tasks {
        task.abort();
    }
    latencies.sort();
    told.sort();
    Ok((told, latencies))
}
