//! Fixtures for end-to-end tests: real `graycast` processes and real WebSocket clients.
//!
//! [`TestServer`] starts the server binary on `127.0.0.1:0` with a temporary data dir,
//! reads the URL it announces, and kills it when dropped. [`Watcher`] is a WebSocket
//! subscriber that decodes the push protocol. Everything waits on events with a
//! deadline; nothing sleeps to synchronise.

pub mod etcd;
pub mod linearizability;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use graycast_protocol::ServerMessage;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for any single expected event.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// The path of the server binary cargo built for these tests.
///
/// Cargo builds this package's binaries before running its integration tests and puts
/// them beside the `deps/` folder that holds the test executables.
pub fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CARGO_BIN_EXE_graycast-under-test") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    dir.join(format!("graycast-under-test{}", std::env::consts::EXE_SUFFIX))
}

/// The path of the `graycastctl` binary cargo built for these tests.
pub fn cli_binary() -> PathBuf {
    server_binary()
        .with_file_name(format!("graycastctl-under-test{}", std::env::consts::EXE_SUFFIX))
}

/// A running server process with its own data dir.
pub struct TestServer {
    child: Option<Child>,
    /// The base URL, such as `http://127.0.0.1:39153`.
    pub url: String,
    dir: TempDir,
    args: Vec<String>,
    /// A command the server runs under (such as `prlimit --nofile=512`), if any.
    wrapper: Vec<String>,
    log: PathBuf,
    starts: u32,
}

impl TestServer {
    /// Starts a server on the default (redb) store.
    pub fn start() -> TestServer {
        TestServer::start_with(&[])
    }

    /// Starts a server with extra command-line flags.
    pub fn start_with(args: &[&str]) -> TestServer {
        TestServer::start_prepared(args, |_| {})
    }

    /// Starts a server with extra flags under a wrapper command (`prlimit ...`).
    pub fn start_under(wrapper: &[&str], args: &[&str]) -> TestServer {
        TestServer::start_full(wrapper, args, |_| {})
    }

    /// Starts a server with extra flags on a data dir that `prepare` fills first.
    pub fn start_prepared(args: &[&str], prepare: impl FnOnce(&Path)) -> TestServer {
        TestServer::start_full(&[], args, prepare)
    }

    fn start_full(wrapper: &[&str], args: &[&str], prepare: impl FnOnce(&Path)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        prepare(&data);
        let log = dir.path().join("server.log");
        let mut server = TestServer {
            child: None,
            url: String::new(),
            dir,
            args: args.iter().map(|a| a.to_string()).collect(),
            wrapper: wrapper.iter().map(|a| a.to_string()).collect(),
            log,
            starts: 0,
        };
        server.spawn("127.0.0.1:0").expect("server starts");
        server
    }

    /// The data dir the server stores into.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self, listen: &str) -> Result<()> {
        self.starts += 1;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let mut command = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(server_binary());
                command
            }
            None => Command::new(server_binary()),
        };
        let mut child = command
            .arg("--listen")
            .arg(listen)
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(&self.args)
            .env("GRAYCAST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .context("spawning the server")?;
        let announced = announced_url(&mut child);
        self.child = Some(child);
        self.url = announced.map_err(|err| anyhow!("{err}; log:\n{}", self.log_text()))?;
        Ok(())
    }

    /// The server's log so far (stderr).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `ws://` URL of the watch endpoint.
    pub fn watch_url(&self) -> String {
        format!("{}/v1/watch", self.url.replacen("http://", "ws://", 1))
    }

    /// Sends SIGTERM and waits for a graceful exit; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "server did not stop within {DEADLINE:?} of SIGTERM; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process with SIGKILL: no chance to flush or close anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same data dir and, if it is free, the same port.
    pub fn restart(&mut self) {
        self.terminate();
        self.start_again();
    }

    /// Starts a stopped server again on the same data dir, preferring the same port.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "server still running");
        let old = self.url.trim_start_matches("http://").to_owned();
        if self.spawn(&old).is_err() {
            self.kill9();
            self.spawn("127.0.0.1:0").expect("server restarts");
        }
    }

    /// Freezes the process (SIGSTOP) or lets it go on (SIGCONT): a node that stops
    /// answering without closing its connections.
    pub fn freeze(&self, frozen: bool) {
        if let Some(pid) = self.pid() {
            let signal = if frozen { "-STOP" } else { "-CONT" };
            let _ = Command::new("kill").arg(signal).arg(pid.to_string()).status();
        }
    }

    /// The process id of the running server.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A gauge or counter of `/metrics`.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = reqwest::get(format!("{}/metrics", self.url)).await.ok()?.text().await.ok()?;
        text.lines().find_map(|l| l.strip_prefix(&format!("{name} "))?.parse().ok())
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("---- server log ({} starts) ----\n{}", self.starts, self.log_text());
        }
    }
}

/// A REST client for a test server.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub url: String,
}

impl Api {
    pub fn new(server: &TestServer) -> Api {
        Api { http: reqwest::Client::new(), url: server.url.clone() }
    }

    /// `PUT /v1/configs/{ns}/{key}` with `{"value": value}`; the answer's status and body.
    pub async fn put(&self, ns: &str, key: &str, value: Value) -> Result<(u16, Value)> {
        let response = self
            .http
            .put(format!("{}/v1/configs/{ns}/{key}", self.url))
            .json(&json!({ "value": value }))
            .send()
            .await?;
        Ok((response.status().as_u16(), response.json().await?))
    }

    /// Puts and insists on success; returns the new entry's revision.
    pub async fn put_ok(&self, ns: &str, key: &str, value: Value) -> u64 {
        let (status, body) = self.put(ns, key, value).await.expect("put answered");
        assert!(status == 200 || status == 201, "put {ns}/{key}: {status} {body}");
        body["revision"].as_u64().expect("revision")
    }

    /// `GET` a path; the status and the JSON body (`null` when there is none).
    pub async fn get(&self, path: &str) -> Result<(u16, Value)> {
        let response = self.http.get(format!("{}{path}", self.url)).send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text)? }))
    }

    /// Any request, with an optional bearer token and JSON body; the status and the JSON
    /// body (`null` when there is none or it is not JSON).
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("answered");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Any request with extra headers and a raw body; the status, the headers and the body
    /// as JSON (`null` when it is not JSON).
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body.to_owned());
        }
        let response = request.send().await.expect("answered");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `DELETE /v1/configs/{ns}/{key}`.
    pub async fn delete(&self, ns: &str, key: &str) -> Result<(u16, Value)> {
        let response =
            self.http.delete(format!("{}/v1/configs/{ns}/{key}", self.url)).send().await?;
        Ok((response.status().as_u16(), response.json().await?))
    }
}

/// A WebSocket subscriber speaking the push protocol.
pub struct Watcher {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Watcher {
    /// Connects without subscribing.
    pub async fn connect(server: &TestServer) -> Result<Watcher> {
        let (ws, _) = tokio_tungstenite::connect_async(server.watch_url()).await?;
        Ok(Watcher { ws })
    }

    /// Connects and subscribes to `namespaces`, resuming after `since` if given.
    pub async fn subscribe(
        server: &TestServer,
        namespaces: &[&str],
        since: Option<u64>,
    ) -> Result<Watcher> {
        let mut watcher = Watcher::connect(server).await?;
        let mut message = json!({"type": "subscribe", "namespaces": namespaces});
        if let Some(since) = since {
            message["since"] = json!(since);
        }
        watcher.send(message).await?;
        Ok(watcher)
    }

    /// Sends a JSON text frame.
    pub async fn send(&mut self, message: Value) -> Result<()> {
        self.ws.send(Message::text(message.to_string())).await?;
        Ok(())
    }

    /// Sends raw text.
    pub async fn send_text(&mut self, text: &str) -> Result<()> {
        self.ws.send(Message::text(text)).await?;
        Ok(())
    }

    /// The next frame of any kind, within the deadline; `None` once the stream ends.
    pub async fn next_frame(&mut self) -> Result<Option<Message>> {
        match tokio::time::timeout(DEADLINE, self.ws.next()).await {
            Err(_) => bail!("no frame within {DEADLINE:?}"),
            Ok(None) => Ok(None),
            Ok(Some(frame)) => Ok(Some(frame?)),
        }
    }

    /// The next protocol message, skipping pings and pongs; fails on close.
    pub async fn next(&mut self) -> Result<ServerMessage> {
        loop {
            match self.next_frame().await? {
                Some(Message::Text(text)) => {
                    return serde_json::from_str(&text).with_context(|| format!("decoding {text}"))
                }
                Some(Message::Ping(_) | Message::Pong(_)) => continue,
                other => bail!("expected a message, got {other:?}"),
            }
        }
    }

    /// The next message that is not `progress`.
    pub async fn next_data(&mut self) -> Result<ServerMessage> {
        loop {
            match self.next().await? {
                ServerMessage::Progress { .. } => continue,
                other => return Ok(other),
            }
        }
    }

    /// Reads until the close frame; returns its code, or `None` if the stream just ended.
    pub async fn expect_close(&mut self) -> Result<Option<u16>> {
        loop {
            match self.next_frame().await? {
                Some(Message::Close(frame)) => return Ok(frame.map(|f| u16::from(f.code))),
                None => return Ok(None),
                Some(_) => continue,
            }
        }
    }

    /// The underlying stream, for tests that need to misbehave.
    pub fn into_inner(self) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
        self.ws
    }
}

/// Writes a token file (SPEC §7) of `(name, secret, role, namespace patterns)` into `dir`
/// and returns its path.
/// The URL a server started with a piped stdout announces on its first line, within
/// [`DEADLINE`]; its stdout is drained afterwards so it never blocks on a full pipe.
pub fn announced_url(child: &mut Child) -> Result<String> {
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {}
    });
    let line = rx.recv_timeout(DEADLINE).map_err(|_| anyhow!("server announced no URL"))?;
    let url = line
        .strip_prefix("graycast listening on ")
        .ok_or_else(|| anyhow!("unexpected first line {line:?}"))?;
    Ok(url.trim().to_owned())
}

pub fn token_file(dir: &Path, tokens: &[(&str, &str, &str, &[&str])]) -> PathBuf {
    use sha2::Digest as _;
    let mut text = String::new();
    for (name, secret, role, patterns) in tokens {
        let hash: String =
            sha2::Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        let patterns: Vec<String> = patterns.iter().map(|p| format!("{p:?}")).collect();
        text.push_str(&format!(
            "[[token]]\nname = {name:?}\nsecret_sha256 = \"{hash}\"\nrole = {role:?}\nnamespaces = [{}]\n\n",
            patterns.join(", ")
        ));
    }
    let path = dir.join("tokens.toml");
    std::fs::write(&path, text).expect("token file");
    path
}

/// Waits for a condition that other processes bring about, with a deadline.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + DEADLINE;
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "{what} did not happen within {DEADLINE:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
