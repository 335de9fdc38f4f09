//! `compare`: graycast side by side with etcd and Redis in one run, on loopback.
//!
//! Each system is started here with temporary data (graycast on redb, etcd with its
//! default fsync, Redis without persistence, as pub/sub has none), the same scenario is
//! run against each in turn, and a markdown table compares them, with graycast's ratio to
//! each peer. Server CPU comes from `/proc/PID/stat` (user + system time of the server
//! process only), which a shared machine disturbs far less than wall time.
//!
//! - `fanout`: N subscribers, each on its own connection (graycast: WebSocket; etcd: a
//!   gRPC watch per client; Redis: `SUBSCRIBE`), then U updates of one key (`PUT`, etcd
//!   `put`, `PUBLISH`), either paced (`--interval-ms`) or back to back (each sent once the
//!   previous is acknowledged). Latency is from sending the update to its receipt.
//! - `writes`: W concurrent writers, each writing its own key as fast as durable
//!   acknowledgements come (graycast and etcd; Redis pub/sub stores nothing).
//! - `ack`: how long an update takes to be acknowledged, first with nobody subscribed,
//!   then while it fans out to N subscribers.
//! - `conns`: N idle subscribed connections: resident memory each, and how much of it the
//!   server gives back 12 s after they close.
//! - `storm`: N clients following one key across a restart of the server (SIGTERM, down
//!   2 s): the time from the server process starting again until each has the update
//!   written as soon as it serves, and how many resumed by replay. graycast's clients are
//!   the SDK; etcd's reconnect and watch from the revision after the last they saw; Redis
//!   subscribers subscribe again (pub/sub replays nothing). All reconnect with the SDK's
//!   backoff (full jitter between 100 ms and a ceiling doubling up to 5 s).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::{ms, percentile};

/// What `compare` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Fanout,
    Writes,
    Conns,
    Storm,
    Ack,
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

/// A server process started for the comparison, stopped and cleaned up when dropped.
struct Server {
    name: &'static str,
    child: Child,
    address: String,
    data: Option<PathBuf>,
    /// The program and arguments that start it again on the same address and data.
    relaunch: (PathBuf, Vec<String>),
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(data) = &self.data {
            let _ = std::fs::remove_dir_all(data);
        }
    }
}

impl Server {
    /// User + system CPU time of the process so far.
    fn cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start after ") ".
        let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
        let total = ticks(11) + ticks(12);
        Duration::from_secs_f64(total as f64 / clock_ticks() as f64)
    }

    /// Stops the process as an operator would (SIGTERM), leaves it down for `down`, and
    /// starts it again on the same address with the same data; returns once it serves,
    /// with the instant it was started again.
    async fn restart(&mut self, down: Duration) -> Result<Instant> {
        Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status()?;
        self.child.wait()?;
        tokio::time::sleep(down).await;
        let (program, args) = &self.relaunch;
        let mut command = Command::new(program);
        command.args(args).stderr(Stdio::null());
        if self.name == "graycast" {
            command.env("GRAYCAST_LOG", "warn").stdout(Stdio::piped());
        } else {
            command.stdout(Stdio::null());
        }
        let started = Instant::now();
        self.child = command.spawn().with_context(|| format!("restarting {}", self.name))?;
        match self.name {
            "graycast" => {
                use std::io::BufRead as _;
                let stdout = self.child.stdout.take().context("no stdout")?;
                let mut line = String::new();
                std::io::BufReader::new(stdout).read_line(&mut line)?;
            }
            "etcd" => serving_etcd(&self.address).await?,
            _ => wait_listening(&self.address).await?,
        }
        Ok(started)
    }

    /// Resident memory of the process, in bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }
}

fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

fn temp_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("graycast-compare-{}-{name}", std::process::id()))
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn wait_listening(address: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(address).await.is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on {address}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn start_graycast(bin: &Path, subscribers: usize) -> Result<Server> {
    use std::io::BufRead as _;
    let data = temp_dir("graycast");
    // By default the server keeps an eighth of its file descriptors (up to 4,096) for REST
    // clients; a run with more subscribers than that allows raises the limit.
    let max_subscribers = (subscribers + 256).max(10_000);
    let data_arg = data.to_string_lossy().into_owned();
    let args = |listen: &str| {
        ["--listen", listen, "--data-dir", &data_arg, "--max-subscribers"]
            .map(str::to_owned)
            .into_iter()
            .chain([max_subscribers.to_string()])
            .collect::<Vec<String>>()
    };
    let mut child = Command::new(bin)
        .args(args("127.0.0.1:0"))
        .env("GRAYCAST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!(
                "starting {}: run from the repository's root after `cargo build --release -p \
                 graycast-server -p graycast-bench`, or pass --graycast-bin",
                bin.display()
            )
        })?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let url = line
        .trim()
        .strip_prefix("graycast listening on http://")
        .ok_or_else(|| anyhow!("unexpected graycast output {line:?}"))?;
    let relaunch = (bin.to_owned(), args(url));
    Ok(Server { name: "graycast", address: url.to_owned(), child, data: Some(data), relaunch })
}

async fn start_etcd() -> Result<Server> {
    let data = temp_dir("etcd");
    let (client, peer) = (free_port()?, free_port()?);
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let args: Vec<String> = [
        "--name",
        "compare",
        "--data-dir",
        &data.to_string_lossy(),
        "--listen-client-urls",
        &client_url,
        "--advertise-client-urls",
        &client_url,
        "--listen-peer-urls",
        &peer_url,
        "--initial-advertise-peer-urls",
        &peer_url,
        "--initial-cluster",
        &format!("compare={peer_url}"),
        "--logger",
        "zap",
        "--log-level",
        "error",
    ]
    .map(str::to_owned)
    .into();
    let child = Command::new("etcd")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting etcd (Debian: apt-get install etcd-server)")?;
    let server = Server {
        name: "etcd",
        address: format!("127.0.0.1:{client}"),
        child,
        data: Some(data),
        relaunch: ("etcd".into(), args),
    };
    serving_etcd(&server.address).await?;
    Ok(server)
}

/// Waits until etcd at `address` takes a write (it listens before it serves).
async fn serving_etcd(address: &str) -> Result<()> {
    wait_listening(address).await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = async {
            let mut client = etcd_client::Client::connect([address], None).await?;
            client.put("compare/ready", "1", None).await?;
            Ok::<_, etcd_client::Error>(())
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(err) => bail!("etcd never served: {err}"),
        }
    }
}

async fn start_redis() -> Result<Server> {
    let port = free_port()?;
    let args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--maxclients",
        "50000",
    ]
    .map(str::to_owned)
    .into();
    let child = Command::new("redis-server")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting redis-server (Debian: apt-get install redis-server)")?;
    let server = Server {
        name: "redis",
        address: format!("127.0.0.1:{port}"),
        child,
        data: None,
        relaunch: ("redis-server".into(), args),
    };
    wait_listening(&server.address).await?;
    Ok(server)
}

/// One system's figures.
#[derive(Default)]
struct Row {
    name: &'static str,
    figures: Vec<(String, String, Option<f64>)>,
}

impl Row {
    /// A figure, with the number ratios are computed from (`None`: no ratio).
    fn add(&mut self, what: &str, shown: String, number: Option<f64>) {
        self.figures.push((what.to_owned(), shown, number));
    }
}

pub async fn run(settings: Settings) -> Result<()> {
    let peers = peers(&settings)?;
    // An interrupt drops the comparison, and with it the servers it started (and their
    // temporary data), rather than leaving them behind.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        compared = compare(&settings, &peers) => compared,
        _ = tokio::signal::ctrl_c() => bail!("interrupted; the servers were stopped"),
        _ = terminate.recv() => bail!("terminated; the servers were stopped"),
    }
}

/// The peers to run, checked before anything starts: known, each once, and installed.
fn peers(settings: &Settings) -> Result<Vec<&'static str>> {
    let mut peers: Vec<&'static str> = Vec::new();
    for name in settings.peers.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        let (peer, program) = match name {
            "etcd" => ("etcd", "etcd"),
            "redis" => ("redis", "redis-server"),
            other => bail!("unknown peer {other:?}: the peers are etcd and redis"),
        };
        if peers.contains(&peer) {
            continue;
        }
        if settings.scenario == Scenario::Writes && peer == "redis" {
            eprintln!(
                "compare: writes skip redis: pub/sub stores nothing to compare durable writes with"
            );
            continue;
        }
        let installed = Command::new(program)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            bail!(
                "{program} is not installed or not on PATH (Debian: apt-get install {})",
                if peer == "etcd" { "etcd-server" } else { "redis-server" }
            );
        }
        peers.push(peer);
    }
    Ok(peers)
}

async fn compare(settings: &Settings, peers: &[&str]) -> Result<()> {
    let mut rows = Vec::new();
    let mut graycast = start_graycast(&settings.graycast_bin, settings.subscribers)?;
    rows.push(run_on(&mut graycast, settings).await?);
    drop(graycast);
    for peer in peers {
        let mut server = match *peer {
            "etcd" => start_etcd().await?,
            _ => start_redis().await?,
        };
        rows.push(run_on(&mut server, settings).await?);
    }
    print_table(settings, &rows);
    Ok(())
}

async fn run_on(server: &mut Server, settings: &Settings) -> Result<Row> {
    let scenario = format!("{:?}", settings.scenario).to_lowercase();
    eprintln!("compare: {scenario} on {}", server.name);
    match settings.scenario {
        Scenario::Fanout => fanout(server, settings).await,
        Scenario::Writes => writes(server, settings).await,
        Scenario::Conns => conns(server, settings).await,
        Scenario::Storm => storm(server, settings).await,
        Scenario::Ack => ack(server, settings).await,
    }
}

fn print_table(settings: &Settings, rows: &[Row]) {
    let Some(first) = rows.first() else { return };
    let what = match settings.scenario {
        Scenario::Fanout if settings.interval_ms == 0 => format!(
            "fanout: {} subscribers, {} updates back to back",
            settings.subscribers, settings.updates
        ),
        Scenario::Fanout => format!(
            "fanout: {} subscribers, {} updates {} ms apart",
            settings.subscribers, settings.updates, settings.interval_ms
        ),
        Scenario::Writes => format!(
            "writes: {} writer{} for {} s, each write durable",
            settings.writers,
            if settings.writers == 1 { "" } else { "s" },
            settings.seconds
        ),
        Scenario::Conns => {
            format!("conns: {} idle subscribed connections, then all closed", settings.subscribers)
        }
        Scenario::Storm => format!(
            "storm: {} clients following one key across a restart (SIGTERM, down 2 s); time from \
             the server process starting again until each client has the update written right \
             after the restart",
            settings.subscribers
        ),
        Scenario::Ack => format!(
            "ack: acknowledgements of {} updates {} ms apart, first with nobody subscribed, \
             then while each update fans out to {} subscribers",
            settings.updates, settings.interval_ms, settings.subscribers
        ),
    };
    println!("\n{what}\n");
    let mut header = String::from("| |");
    let mut rule = String::from("|---|");
    for row in rows {
        header.push_str(&format!(" {} |", row.name));
        rule.push_str("---|");
    }
    for row in &rows[1..] {
        header.push_str(&format!(" graycast / {} |", row.name));
        rule.push_str("---|");
    }
    println!("{header}\n{rule}");
    for (i, (name, _, _)) in first.figures.iter().enumerate() {
        let mut line = format!("| {name} |");
        for row in rows {
            line.push_str(&format!(" {} |", row.figures.get(i).map_or("", |f| f.1.as_str())));
        }
        let ours = first.figures[i].2;
        for row in &rows[1..] {
            let ratio = match (ours, row.figures.get(i).and_then(|f| f.2)) {
                (Some(a), Some(b)) if a > 0.0 && b > 0.0 => format!("{:.2}", a / b),
                _ => "—".into(),
            };
            line.push_str(&format!(" {ratio} |"));
        }
        println!("{line}");
    }
}

/// Receipts of updates: (update number, when it arrived).
type Arrivals = mpsc::UnboundedSender<(usize, Instant)>;

/// Subscribes `n` clients of `server`'s kind; returns once all are subscribed.
async fn subscribe_all(server: &Server, n: usize, arrivals: &Arrivals) -> Result<()> {
    let (ready_tx, mut ready) = mpsc::unbounded_channel::<()>();
    for _ in 0..n {
        let (arrivals, ready) = (arrivals.clone(), ready_tx.clone());
        match server.name {
            "graycast" => graycast_subscriber(&server.address, arrivals, ready).await?,
            "etcd" => etcd_subscriber(&server.address, arrivals, ready).await?,
            _ => redis_subscriber(&server.address, arrivals, ready).await?,
        }
    }
    for _ in 0..n {
        tokio::time::timeout(Duration::from_secs(60), ready.recv())
            .await
            .context("the subscribers were not all ready within 60 s")?;
    }
    Ok(())
}

async fn graycast_subscriber(
    address: &str,
    arrivals: Arrivals,
    ready: mpsc::UnboundedSender<()>,
) -> Result<()> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{address}/v1/watch"))
        .await
        .context("connecting to graycast")?;
    let subscribe = json!({"type": "subscribe", "namespaces": ["compare"]});
    ws.send(Message::text(subscribe.to_string())).await?;
    // Decoded only as far as the probe needs (the other systems' probes decode no more).
    #[derive(serde::Deserialize)]
    struct Pushed {
        #[serde(rename = "type")]
        kind: String,
        entry: Option<PushedEntry>,
    }
    #[derive(serde::Deserialize)]
    struct PushedEntry {
        value: Value,
    }
    tokio::spawn(async move {
        while let Some(Ok(frame)) = ws.next().await {
            let at = Instant::now();
            let Message::Text(text) = frame else { continue };
            let Ok(message) = serde_json::from_str::<Pushed>(&text) else { continue };
            match message.kind.as_str() {
                "snapshot" => {
                    let _ = ready.send(());
                }
                "change" => {
                    let update = message.entry.and_then(|e| e.value.as_u64()).unwrap_or(u64::MAX);
                    if arrivals.send((update as usize, at)).is_err() {
                        break;
                    }
                }
                _ => {}
            }
        }
    });
    Ok(())
}

async fn etcd_subscriber(
    address: &str,
    arrivals: Arrivals,
    ready: mpsc::UnboundedSender<()>,
) -> Result<()> {
    // A client per subscriber: its own connection, as every other system's subscribers.
    let mut client = etcd_client::Client::connect([address], None).await?;
    let mut stream = client.watch("compare/flag", None).await?;
    let _ = ready.send(());
    tokio::spawn(async move {
        let _keep = client;
        while let Ok(Some(response)) = stream.message().await {
            let at = Instant::now();
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                if arrivals.send((etcd_update(kv), at)).is_err() {
                    return;
                }
            }
        }
    });
    Ok(())
}

/// The update number an etcd watch event carries (`usize::MAX`: not one of the probe's).
fn etcd_update(kv: &etcd_client::KeyValue) -> usize {
    std::str::from_utf8(kv.value()).ok().and_then(|v| v.parse().ok()).unwrap_or(usize::MAX)
}

/// The update number of a Redis `message` reply (`usize::MAX`: not one of the probe's).
fn redis_update(reply: &[String]) -> usize {
    reply.get(2).and_then(|v| v.parse().ok()).unwrap_or(usize::MAX)
}

/// A RESP command of bulk strings.
fn resp(parts: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", parts.len()).into_bytes();
    for part in parts {
        out.extend_from_slice(format!("${}\r\n{part}\r\n", part.len()).as_bytes());
    }
    out
}

/// One RESP reply from the front of `buf`, flattened to its strings and integers;
/// `None` until it is whole.
fn parse_reply(buf: &mut BytesMut) -> Option<Vec<String>> {
    fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
        Some((&buf[at..end], end + 2))
    }
    fn value(buf: &[u8], at: usize, out: &mut Vec<String>) -> Option<usize> {
        let kind = *buf.get(at)?;
        let (text, next) = line(buf, at + 1)?;
        let text = std::str::from_utf8(text).ok()?;
        match kind {
            b'*' => {
                let mut at = next;
                for _ in 0..text.parse::<i64>().ok()?.max(0) {
                    at = value(buf, at, out)?;
                }
                Some(at)
            }
            b'$' => {
                let len = text.parse::<i64>().ok()?;
                if len < 0 {
                    return Some(next);
                }
                let end = next + len as usize;
                let data = buf.get(next..end)?;
                out.push(String::from_utf8_lossy(data).into_owned());
                buf.get(end..end + 2)?;
                Some(end + 2)
            }
            _ => {
                out.push(text.to_owned());
                Some(next)
            }
        }
    }
    let mut out = Vec::new();
    let used = value(buf, 0, &mut out)?;
    let _ = buf.split_to(used);
    Some(out)
}

async fn redis_subscriber(
    address: &str,
    arrivals: Arrivals,
    ready: mpsc::UnboundedSender<()>,
) -> Result<()> {
    let mut stream = TcpStream::connect(address).await.context("connecting to redis")?;
    stream.set_nodelay(true)?;
    stream.write_all(&resp(&["SUBSCRIBE", "compare"])).await?;
    tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(4096);
        loop {
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let at = Instant::now();
            while let Some(reply) = parse_reply(&mut buf) {
                match reply.first().map(String::as_str) {
                    Some("subscribe") => {
                        let _ = ready.send(());
                    }
                    Some("message") if arrivals.send((redis_update(&reply), at)).is_err() => return,
                    _ => {}
                }
            }
        }
    });
    Ok(())
}

/// Sends updates to one system: each returns once acknowledged.
enum Publisher {
    Graycast { http: reqwest::Client, url: String },
    Etcd(Box<etcd_client::Client>),
    Redis { stream: TcpStream, buf: BytesMut },
}

impl Publisher {
    async fn connect(server: &Server) -> Result<Publisher> {
        Publisher::connect_to(server.name, &server.address).await
    }

    async fn connect_to(name: &str, address: &str) -> Result<Publisher> {
        Ok(match name {
            "graycast" => Publisher::Graycast {
                http: reqwest::Client::new(),
                url: format!("http://{address}/v1/configs/compare/flag"),
            },
            "etcd" => {
                Publisher::Etcd(Box::new(etcd_client::Client::connect([address], None).await?))
            }
            _ => {
                let stream = TcpStream::connect(address).await?;
                stream.set_nodelay(true)?;
                Publisher::Redis { stream, buf: BytesMut::new() }
            }
        })
    }

    async fn send(&mut self, update: usize) -> Result<()> {
        match self {
            Publisher::Graycast { http, url } => {
                let response =
                    http.put(url.as_str()).json(&json!({"value": update})).send().await?;
                if !response.status().is_success() {
                    bail!("PUT {url}: {}", response.status());
                }
            }
            Publisher::Etcd(client) => {
                client.put("compare/flag", update.to_string(), None).await?;
            }
            Publisher::Redis { stream, buf } => {
                stream.write_all(&resp(&["PUBLISH", "compare", &update.to_string()])).await?;
                loop {
                    if buf.first() == Some(&b'-') && parse_reply(buf).is_some() {
                        bail!("redis refused PUBLISH");
                    }
                    if parse_reply(buf).is_some() {
                        break;
                    }
                    if stream.read_buf(buf).await? == 0 {
                        bail!("redis closed the connection");
                    }
                }
            }
        }
        Ok(())
    }
}

/// What one fan-out run measured.
struct FanoutRun {
    latencies: Vec<Duration>,
    acks: Vec<Duration>,
    per_second: f64,
    cpu_per: f64,
    rss_subscribed: u64,
    per_connection: f64,
}

async fn fanout(server: &Server, settings: &Settings) -> Result<Row> {
    let run = fanout_run(server, settings).await?;
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

/// Acknowledgements of updates with nobody subscribed, then while fanning them out.
async fn ack(server: &Server, settings: &Settings) -> Result<Row> {
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
    let run = fanout_run(server, settings).await?;
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

async fn fanout_run(server: &Server, settings: &Settings) -> Result<FanoutRun> {
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

/// How long after the connections close their memory is measured.
const SETTLE_AFTER_CLOSE: Duration = Duration::from_secs(12);

/// Idle subscribed connections: what each costs the server, and whether the memory comes
/// back once they close.
async fn conns(server: &Server, settings: &Settings) -> Result<Row> {
    let n = settings.subscribers;
    // One update first, so the server's own first-use allocations are in the baseline.
    let mut publisher = Publisher::connect(server).await?;
    publisher.send(0).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = server.rss();
    let (arrivals, arrived) = mpsc::unbounded_channel();
    subscribe_all(server, n, &arrivals).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let open = server.rss();
    // Dropping the receiver ends every subscriber task at its next message; one update
    // reaches them all, and their connections close.
    drop(arrived);
    drop(arrivals);
    publisher.send(1).await?;
    // Allocators hand freed memory back over seconds (jemalloc's decay is 10 s): the
    // same wait for every system.
    tokio::time::sleep(SETTLE_AFTER_CLOSE).await;
    let closed = server.rss();
    let per = open.saturating_sub(baseline) as f64 / n as f64 / 1024.0;
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / 1048576.0);
    let mut row = Row { name: server.name, ..Row::default() };
    row.add("RSS per idle subscribed connection", format!("{per:.1} KiB"), Some(per));
    row.add("RSS before", mib(baseline), None);
    row.add("RSS with the connections open", mib(open), None);
    let back = closed as f64 / baseline.max(1) as f64;
    row.add(
        "RSS 12 s after they closed (× before)",
        format!("{} ({back:.2}×)", mib(closed)),
        Some(back),
    );
    Ok(row)
}

async fn writes(server: &Server, settings: &Settings) -> Result<Row> {
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

/// Reconnection delays as the SDK's: full jitter between 100 ms and a ceiling that doubles
/// with each failure, up to 5 s.
struct Backoff {
    failures: u32,
    seed: u64,
}

impl Backoff {
    const MIN: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    fn new(seed: u64) -> Backoff {
        Backoff { failures: 0, seed: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1 }
    }

    fn reset(&mut self) {
        self.failures = 0;
    }

    fn next(&mut self) -> Duration {
        // xorshift64: spread enough for a load generator.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.failures = (self.failures + 1).min(16);
        let ceiling = (Self::MIN * (1 << self.failures)).min(Self::MAX);
        Self::MIN + (ceiling - Self::MIN).mul_f64((self.seed % 10_000) as f64 / 10_000.0)
    }
}

/// What the followers of a storm report.
enum Followed {
    /// Subscribed (or synced) for the first time.
    Ready,
    /// Follower `.0` received update `.1` at `.2`.
    Update(usize, usize, Instant),
}

/// One follower of a storm: which it is, where it connects, whom it tells, and the count
/// of followers that resumed by replay.
struct Follower {
    address: String,
    index: usize,
    report: mpsc::UnboundedSender<Followed>,
    replayed: Arc<AtomicU64>,
}

/// An etcd client that watches the key and, when its connection breaks, connects again
/// and watches from the revision after the last one it saw (etcd replays the rest).
fn etcd_follower(follower: Follower) {
    let Follower { address, index, report, replayed } = follower;
    tokio::spawn(async move {
        let mut backoff = Backoff::new(index as u64 + 1);
        let mut next: Option<i64> = None;
        let mut ready = false;
        loop {
            let resuming = next.is_some();
            let watched = async {
                let mut client = etcd_client::Client::connect([address.as_str()], None).await?;
                let options = next.map(|r| etcd_client::WatchOptions::new().with_start_revision(r));
                let stream = client.watch("compare/flag", options).await?;
                Ok::<_, etcd_client::Error>((client, stream))
            };
            let Ok((_client, mut stream)) = watched.await else {
                tokio::time::sleep(backoff.next()).await;
                continue;
            };
            while let Ok(Some(response)) = stream.message().await {
                let at = Instant::now();
                if response.canceled() {
                    // Compacted past the revision: the client must read the state anew.
                    next = None;
                    break;
                }
                if response.created() {
                    backoff.reset();
                    if resuming {
                        replayed.fetch_add(1, Ordering::Relaxed);
                    }
                    if next.is_none() {
                        next = response.header().map(|h| h.revision() + 1);
                    }
                    if !ready {
                        ready = true;
                        if report.send(Followed::Ready).is_err() {
                            return;
                        }
                    }
                }
                for event in response.events() {
                    let Some(kv) = event.kv() else { continue };
                    next = Some(kv.mod_revision() + 1);
                    if report.send(Followed::Update(index, etcd_update(kv), at)).is_err() {
                        return;
                    }
                }
            }
            tokio::time::sleep(backoff.next()).await;
        }
    });
}

/// A Redis subscriber that connects and subscribes again when its connection breaks;
/// pub/sub keeps nothing, so whatever was published meanwhile is gone for it.
fn redis_follower(follower: Follower) {
    let Follower { address, index, report, .. } = follower;
    tokio::spawn(async move {
        let mut backoff = Backoff::new(index as u64 + 1);
        let mut ready = false;
        loop {
            let connected = async {
                let mut stream = TcpStream::connect(address.as_str()).await?;
                stream.set_nodelay(true)?;
                stream.write_all(&resp(&["SUBSCRIBE", "compare"])).await?;
                Ok::<_, std::io::Error>(stream)
            };
            let Ok(mut stream) = connected.await else {
                tokio::time::sleep(backoff.next()).await;
                continue;
            };
            let mut buf = BytesMut::with_capacity(1024);
            while let Ok(read) = stream.read_buf(&mut buf).await {
                if read == 0 {
                    break;
                }
                let at = Instant::now();
                while let Some(reply) = parse_reply(&mut buf) {
                    let sent = match reply.first().map(String::as_str) {
                        Some("subscribe") => {
                            backoff.reset();
                            if ready {
                                Ok(())
                            } else {
                                ready = true;
                                report.send(Followed::Ready)
                            }
                        }
                        Some("message") => {
                            report.send(Followed::Update(index, redis_update(&reply), at))
                        }
                        _ => Ok(()),
                    };
                    if sent.is_err() {
                        return;
                    }
                }
            }
            tokio::time::sleep(backoff.next()).await;
        }
    });
}

/// Waits until every follower has `update`; returns when each got it.
async fn followed(
    reports: &mut mpsc::UnboundedReceiver<Followed>,
    n: usize,
    update: usize,
    within: Duration,
) -> Result<Vec<Option<Instant>>> {
    let mut got: Vec<Option<Instant>> = vec![None; n];
    let mut count = 0;
    let deadline = tokio::time::Instant::now() + within;
    while count < n {
        match tokio::time::timeout_at(deadline, reports.recv()).await {
            Ok(Some(Followed::Update(index, u, at))) if u == update => {
                if got[index].is_none() {
                    got[index] = Some(at);
                    count += 1;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => bail!("the followers ended"),
            Err(_) => break,
        }
    }
    Ok(got)
}

/// Clients following one key across a restart of the server: how long until each has the
/// update written after it, and how many resumed without starting over.
async fn storm(server: &mut Server, settings: &Settings) -> Result<Row> {
    let n = settings.subscribers;
    let (caught_up, replayed) = if server.name == "graycast" {
        storm_sdk(server, n).await?
    } else {
        storm_peer(server, n).await?
    };
    let mut caught_up: Vec<Duration> = caught_up;
    caught_up.sort();
    let mut row = Row { name: server.name, ..Row::default() };
    row.add(
        "clients current, all",
        ms(percentile(&caught_up, 1.0)),
        Some(percentile(&caught_up, 1.0).as_secs_f64()),
    );
    for (what, q) in [("clients current, p50", 0.5), ("clients current, p99", 0.99)] {
        let at = percentile(&caught_up, q);
        row.add(what, ms(at), Some(at.as_secs_f64()));
    }
    let share = replayed as f64 / n as f64 * 100.0;
    row.add(
        "resumed by replay (no snapshot or re-read)",
        format!("{replayed} ({share:.1} %)"),
        None,
    );
    Ok(row)
}

/// The storm with graycast's SDK: each client resumes on its own, by replay or snapshot.
async fn storm_sdk(server: &mut Server, n: usize) -> Result<(Vec<Duration>, u64)> {
    use graycast_client::{Client, Expect};
    let url = format!("http://{}", server.address);
    let writer = Client::builder().endpoint(&url).build()?;
    writer.put("compare", "flag", &1, Expect::Any).await?;
    let mut followers = Vec::with_capacity(n);
    for _ in 0..n {
        followers.push(Client::builder().endpoint(&url).namespace("compare").build()?);
    }
    for client in &followers {
        client.wait_synced(Duration::from_secs(60)).await?;
    }
    let restarted = server.restart(Duration::from_secs(2)).await?;
    let latest = writer.put("compare", "flag", &2, Expect::Any).await?.revision;
    let waits = followers.iter().map(|client| async move {
        client
            .wait_for_revision(latest, Duration::from_secs(120))
            .await
            .map(|_| restarted.elapsed())
    });
    let mut caught_up = Vec::with_capacity(n);
    for waited in futures_util::future::join_all(waits).await {
        caught_up.push(waited?);
    }
    // The restarted server's own count of how its subscribers came back.
    let metrics = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    let replays = metrics
        .lines()
        .find_map(|l| l.strip_prefix("graycast_replays_total ")?.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    Ok((caught_up, replays as u64))
}

/// The storm with etcd watchers or Redis subscribers that reconnect as the SDK does.
async fn storm_peer(server: &mut Server, n: usize) -> Result<(Vec<Duration>, u64)> {
    let (report, mut reports) = mpsc::unbounded_channel();
    let replayed = Arc::new(AtomicU64::new(0));
    for index in 0..n {
        let follower = Follower {
            address: server.address.clone(),
            index,
            report: report.clone(),
            replayed: replayed.clone(),
        };
        match server.name {
            "etcd" => etcd_follower(follower),
            _ => redis_follower(follower),
        }
    }
    drop(report);
    let mut ready = 0;
    while ready < n {
        match tokio::time::timeout(Duration::from_secs(60), reports.recv()).await {
            Ok(Some(Followed::Ready)) => ready += 1,
            Ok(Some(_)) => {}
            _ => bail!("{}: {ready} of {n} followers ready within 60 s", server.name),
        }
    }
    let mut publisher = Publisher::connect(server).await?;
    publisher.send(1).await?;
    let got = followed(&mut reports, n, 1, Duration::from_secs(60)).await?;
    if got.iter().any(Option::is_none) {
        bail!("{}: not every follower had the update before the restart", server.name);
    }
    drop(publisher);
    let restarted = server.restart(Duration::from_secs(2)).await?;
    let mut publisher = Publisher::connect(server).await?;
    let mut got: Vec<Option<Instant>> = vec![None; n];
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // etcd keeps the update for watchers that come back later; Redis delivers it only
        // to those subscribed at the time, so it is published again until all have it.
        publisher.send(2).await?;
        let round = if server.name == "etcd" {
            Duration::from_secs(120)
        } else {
            Duration::from_millis(100)
        };
        let more = followed(&mut reports, n, 2, round.min(deadline - Instant::now())).await?;
        for (have, new) in got.iter_mut().zip(more) {
            if have.is_none() {
                *have = new;
            }
        }
        let missing = got.iter().filter(|g| g.is_none()).count();
        if missing == 0 {
            break;
        }
        if Instant::now() >= deadline {
            bail!("{}: {missing} of {n} followers never had the update", server.name);
        }
    }
    let caught_up =
        got.into_iter().flatten().map(|at| at.saturating_duration_since(restarted)).collect();
    Ok((caught_up, replayed.load(Ordering::Relaxed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_parsed_whole_or_not_at_all() {
        let mut buf = BytesMut::from(
            &b"*3\r\n$7\r\nmessage\r\n$7\r\ncompare\r\n$2\r\n42\r\n:1\r\n*3\r\n$7\r\nmes"[..],
        );
        assert_eq!(
            parse_reply(&mut buf),
            Some(vec!["message".into(), "compare".into(), "42".into()])
        );
        assert_eq!(parse_reply(&mut buf), Some(vec!["1".into()]));
        assert_eq!(parse_reply(&mut buf), None);
        assert_eq!(&buf[..], b"*3\r\n$7\r\nmes");
        assert_eq!(resp(&["PING"]), b"*1\r\n$4\r\nPING\r\n".to_vec());
    }
}
