//! The servers compared: graycast, etcd and Redis started with temporary data on free
//! loopback ports, restarted (storm), stopped and cleaned up; their CPU time and resident
//! memory read from `/proc`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tokio::net::TcpStream;

/// A server process started for the comparison, stopped and cleaned up when dropped.
pub(super) struct Server {
    pub(super) name: &'static str,
    child: Child,
    pub(super) address: String,
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
    pub(super) fn cpu(&self) -> Duration {
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
    pub(super) async fn restart(&mut self, down: Duration) -> Result<Instant> {
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
    pub(super) fn rss(&self) -> u64 {
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

pub(super) fn start_graycast(bin: &Path, subscribers: usize) -> Result<Server> {
    start_graycast_with(bin, subscribers, &[])
}

/// A graycast server with extra flags (`--store etcd ...`).
pub(super) fn start_graycast_with(
    bin: &Path,
    subscribers: usize,
    extra: &[String],
) -> Result<Server> {
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
            .chain(extra.iter().cloned())
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

pub(super) async fn start_etcd() -> Result<Server> {
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

pub(super) async fn start_redis() -> Result<Server> {
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
