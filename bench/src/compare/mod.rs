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
//!
//! The files: `settings.rs` holds the command's options; `servers.rs` starts, restarts and
//! stops the three servers and reads their CPU time and memory; `subscribers.rs` and
//! `publisher.rs` are the probes' two ends (subscribe to each system, send it updates);
//! `resp.rs` speaks Redis's wire protocol; `report.rs` prints the table. Each scenario has
//! its own file: `fanout.rs`, `writes.rs`, `ack.rs`, `conns.rs`, `storm.rs`.

mod ack;
mod conns;
mod fanout;
mod idempotency;
mod ofrep;
mod publisher;
mod report;
mod requests;
mod resp;
mod schema;
mod servers;
mod settings;
mod storm;
mod subscribers;
mod writes;

use std::process::{Command, Stdio};

use anyhow::{bail, Result};

use self::report::{print_table, Row};
use self::servers::{start_etcd, start_graycast, start_redis, Server};
pub use self::settings::{Scenario, Settings};

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
        let alone = matches!(
            settings.scenario,
            Scenario::Idempotency | Scenario::Ofrep | Scenario::Schema | Scenario::Requests
        );
        if peers.contains(&peer) || alone {
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
    match settings.scenario {
        Scenario::Idempotency => return idempotency::run(settings).await,
        Scenario::Ofrep => return ofrep::run(settings).await,
        Scenario::Schema => return schema::run(settings).await,
        Scenario::Requests => return requests::run(settings).await,
        _ => {}
    }
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
        Scenario::Fanout => fanout::run(server, settings).await,
        Scenario::Writes => writes::run(server, settings).await,
        Scenario::Conns => conns::run(server, settings).await,
        Scenario::Storm => storm::run(server, settings).await,
        Scenario::Ack => ack::run(server, settings).await,
        Scenario::Idempotency | Scenario::Ofrep | Scenario::Schema | Scenario::Requests => {
            bail!("this scenario runs graycast alone")
        }
    }
}
