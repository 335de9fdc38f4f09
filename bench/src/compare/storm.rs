//! `storm`: N clients following one key across a restart of the server: the time until
//! each has the update written after it, and how many resumed by replay. graycast's
//! clients are the SDK; etcd's and Redis's followers here reconnect with its backoff.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::publisher::Publisher;
use super::report::Row;
use super::resp::{parse_reply, resp};
use super::servers::Server;
use super::settings::Settings;
use super::subscribers::{etcd_update, redis_update};
use crate::{ms, percentile};

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
pub(super) async fn run(server: &mut Server, settings: &Settings) -> Result<Row> {
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
