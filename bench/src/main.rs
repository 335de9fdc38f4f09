//! `graycast-load`: measures a running graycast server from the outside.
//!
//! - `writes`: durable writes per second with N concurrent writers (each PUT is
//!   acknowledged only after its commit is on disk).
//! - `fanout`: time from a PUT being sent to its change message arriving at each of N
//!   WebSocket subscribers, per round, and to the last of them.
//!
//! - `reconnect`: SDK clients following a server this command restarts.
//! - `compare`: graycast, etcd and Redis started here and run through the same scenario,
//!   side by side (see [`compare`]).
//!
//! Every loop is bounded in count and time, and talks only to the URL it is given
//! (meant for a server on loopback).

mod compare;

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
#[command(name = "graycast-load", about = "Load generator for a running graycast server")]
struct Args {
    /// Base URL of the server (writes, fanout, reconnect; `compare` starts its own servers).
    #[arg(long, default_value = "http://127.0.0.1:8080", global = true)]
    server: String,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Concurrent writers, each putting its own key as fast as acknowledgements come.
    Writes {
        #[arg(long, default_value_t = 64)]
        writers: usize,
        /// How long to write, in seconds.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Subscribers of one namespace; one PUT per round, timed to every subscriber.
    Fanout {
        #[arg(long, default_value_t = 1000)]
        subscribers: usize,
        #[arg(long, default_value_t = 50)]
        rounds: usize,
        /// Subscribe on this node instead of `--server` (writes still go to `--server`):
        /// the write-to-push time across two nodes of a cluster.
        #[arg(long)]
        watch_server: Option<String>,
    },
    /// SDK clients following a server that this command restarts: time from the new
    /// process announcing its URL until every client has applied the latest revision.
    /// Starts its own server (on the `--server` port) from `--server-bin`.
    Reconnect {
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        /// The graycast server binary to run.
        #[arg(long, default_value = "target/release/graycast")]
        server_bin: std::path::PathBuf,
        /// Stop the server with SIGKILL instead of SIGTERM.
        #[arg(long)]
        kill9: bool,
    },
    /// graycast side by side with etcd and Redis, each started here on loopback with
    /// temporary data; prints a markdown table with graycast's ratio to each.
    Compare(compare::Settings),
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    match args.scenario {
        Scenario::Writes { writers, seconds } => writes(&args.server, writers, seconds).await,
        Scenario::Fanout { subscribers, rounds, watch_server } => {
            let watch = watch_server.as_deref().unwrap_or(&args.server);
            fanout(&args.server, watch, subscribers, rounds).await
        }
        Scenario::Reconnect { clients, server_bin, kill9 } => {
            reconnect(&args.server, clients, &server_bin, kill9).await
        }
        Scenario::Compare(settings) => compare::run(settings).await,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn writes(server: &str, writers: usize, seconds: u64) -> Result<()> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(writers).build()?;
    let namespace = format!("bench-writes-{}", std::process::id());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let client = client.clone();
        let url = format!("{server}/v1/configs/{namespace}/w{w}");
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                i += 1;
                let sent = Instant::now();
                let response = client.put(&url).json(&json!({"value": {"i": i}})).send().await?;
                if !response.status().is_success() {
                    bail!("PUT {url}: {}", response.status());
                }
                latencies.push(sent.elapsed());
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
    println!(
        "writes: {writers} writers, {} acknowledged in {:.2} s = {:.0} durable writes/s; latency p50 {} p99 {} max {}",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 1.0)),
    );
    Ok(())
}

async fn fanout(server: &str, watch_server: &str, subscribers: usize, rounds: usize) -> Result<()> {
    let namespace = format!("bench-fanout-{}", std::process::id());
    let watch = format!("{}/v1/watch", watch_server.replacen("http://", "ws://", 1));
    let (arrivals, mut arrived) = mpsc::unbounded_channel::<(u64, Instant)>();
    let (ready_tx, mut ready) = mpsc::unbounded_channel::<()>();
    for _ in 0..subscribers {
        let (mut ws, _) = tokio_tungstenite::connect_async(&watch).await.context("connecting")?;
        let subscribe = json!({"type": "subscribe", "namespaces": [namespace]});
        ws.send(Message::text(subscribe.to_string())).await?;
        let arrivals = arrivals.clone();
        let ready = ready_tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(frame)) = ws.next().await {
                let at = Instant::now();
                let Message::Text(text) = frame else { continue };
                let Ok(message) = serde_json::from_str::<Value>(&text) else { continue };
                match message["type"].as_str() {
                    Some("snapshot") => {
                        let _ = ready.send(());
                    }
                    Some("change") => {
                        let revision = message["revision"].as_u64().unwrap_or(0);
                        if arrivals.send((revision, at)).is_err() {
                            break;
                        }
                    }
                    _ => {}
                }
            }
        });
    }
    for _ in 0..subscribers {
        tokio::time::timeout(Duration::from_secs(30), ready.recv())
            .await
            .context("subscribers did not all get their snapshot")?;
    }
    let client = reqwest::Client::new();
    let url = format!("{server}/v1/configs/{namespace}/flag");
    let mut per_subscriber = Vec::new();
    let mut to_last = Vec::new();
    for round in 0..rounds {
        let sent = Instant::now();
        let response = client.put(&url).json(&json!({"value": round})).send().await?;
        if !response.status().is_success() {
            bail!("PUT {url}: {}", response.status());
        }
        let body: Value = response.json().await?;
        let revision = body["revision"].as_u64().unwrap_or(0);
        let mut last = sent;
        let mut received = 0;
        while received < subscribers {
            let (got, at) = tokio::time::timeout(Duration::from_secs(30), arrived.recv())
                .await
                .context("a change never arrived")?
                .context("subscribers ended")?;
            if got != revision {
                continue;
            }
            received += 1;
            per_subscriber.push(at - sent);
            last = last.max(at);
        }
        to_last.push(last - sent);
    }
    per_subscriber.sort();
    to_last.sort();
    println!(
        "fanout: {subscribers} subscribers, {rounds} rounds; PUT sent to receipt p50 {} p99 {}; to the last subscriber p50 {} p99 {} max {}",
        ms(percentile(&per_subscriber, 0.5)),
        ms(percentile(&per_subscriber, 0.99)),
        ms(percentile(&to_last, 0.5)),
        ms(percentile(&to_last, 0.99)),
        ms(percentile(&to_last, 1.0)),
    );
    Ok(())
}

/// Starts a server process and waits for its announcement line.
fn start_server(
    bin: &std::path::Path,
    listen: &str,
    data: &std::path::Path,
) -> Result<std::process::Child> {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(bin)
        .args(["--listen", listen, "--data-dir"])
        .arg(data)
        .env("GRAYCAST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    if !line.starts_with("graycast listening on") {
        bail!("unexpected server output {line:?}");
    }
    Ok(child)
}

async fn reconnect(server: &str, clients: usize, bin: &std::path::Path, kill9: bool) -> Result<()> {
    use graycast_client::{Client, Expect};
    let listen = server.trim_start_matches("http://").to_owned();
    let data = std::env::temp_dir().join(format!("graycast-reconnect-{}", std::process::id()));
    let mut child = start_server(bin, &listen, &data)?;
    let writer = Client::builder().endpoint(server).build()?;
    writer.put("bench", "k", &0, Expect::Any).await?;
    let mut followers = Vec::with_capacity(clients);
    for _ in 0..clients {
        followers.push(Client::builder().endpoint(server).namespace("bench").build()?);
    }
    for client in &followers {
        client.wait_synced(Duration::from_secs(60)).await?;
    }
    println!("reconnect: {clients} clients in sync; stopping the server");
    if kill9 {
        child.kill()?;
    } else {
        std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status()?;
    }
    child.wait()?;
    // Down long enough for every client to notice and start backing off.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut child = start_server(bin, &listen, &data)?;
    let restarted = Instant::now();
    let latest = writer.put("bench", "k", &1, Expect::Any).await?.revision;
    let mut caught_up = Vec::with_capacity(clients);
    let waits = followers.iter().map(|client| async move {
        client
            .wait_for_revision(latest, Duration::from_secs(120))
            .await
            .map(|_| restarted.elapsed())
    });
    for waited in futures_util::future::join_all(waits).await {
        caught_up.push(waited?);
    }
    caught_up.sort();
    // How the clients came back: by replaying what they missed, or with a snapshot.
    let metrics = reqwest::get(format!("{server}/metrics")).await?.text().await?;
    let count = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let replays = count("graycast_replays_total ");
    let snapshots = count("graycast_snapshots_total{cause=\"new\"} ")
        + count("graycast_snapshots_total{cause=\"too_old\"} ")
        + count("graycast_snapshots_total{cause=\"lag\"} ");
    println!(
        "reconnect: {clients} SDK clients back at revision {latest} after the restart: p50 {} p99 {} all {}; {replays} resumed by replay, {snapshots} by snapshot",
        ms(percentile(&caught_up, 0.5)),
        ms(percentile(&caught_up, 0.99)),
        ms(percentile(&caught_up, 1.0)),
    );
    child.kill()?;
    child.wait()?;
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}
