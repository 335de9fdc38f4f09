//! `--config graycast.toml` (issue 24): the README's example file, run by a real server;
//! flags and environment variables override it; a file that cannot be used stops the server
//! at start with the file and the key named.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use graycast_tests::{server_binary, DEADLINE};
use serde_json::json;

/// The README's `toml` block under "## Configuration".
fn readme_example() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let start = readme.find("## Configuration").expect("a Configuration section");
    let block = &readme[start..];
    let open = block.find("```toml\n").expect("a toml block under ## Configuration") + 8;
    let close = block[open..].find("```").expect("the block ends") + open;
    block[open..close].to_owned()
}

/// A server started in `dir` with `args` and `env`, and the URL it announced.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut command = Command::new(server_binary());
    command.args(args).current_dir(dir).stdin(Stdio::null()).stdout(Stdio::piped());
    command.stderr(Stdio::from(std::fs::File::create(dir.join("server.log")).unwrap()));
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("the server starts");
    let url = graycast_tests::announced_url(&mut child).unwrap_or_else(|err| {
        panic!(
            "{err}; log:\n{}",
            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
        )
    });
    Server { child, url }
}

async fn put(url: &str, bytes: usize) -> u16 {
    let body = json!({"value": "v".repeat(bytes)});
    let client = reqwest::Client::new();
    let response =
        client.put(format!("{url}/v1/configs/app/big")).json(&body).send().await.unwrap();
    response.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_config_file_is_read_and_flags_and_environment_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("graycast.toml"), readme_example()).unwrap();
    // Started from another folder: the file's relative data-dir is beside the file.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let file = conf.join("graycast.toml");
    let file = file.to_str().unwrap();

    let server = start(&elsewhere, &["--config", file, "--listen", "127.0.0.1:0"], &[]);
    // max-value-bytes = 262144 from the file; the listen address from the flag.
    assert_eq!(put(&server.url, 300_000).await, 413);
    assert_eq!(put(&server.url, 1_000).await, 201);
    assert!(conf.join("graycast-data/graycast.redb").exists(), "data-dir beside the file");
    assert!(!elsewhere.join("graycast-data").exists());
    // log-format = "json": the log is JSON lines.
    let log = std::fs::read_to_string(elsewhere.join("server.log")).unwrap();
    let first = log.lines().next().expect("a log line");
    assert!(serde_json::from_str::<serde_json::Value>(first).is_ok(), "{first}");
    // allowed-origins from the file: a preflight from that origin is answered with CORS.
    let preflight = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{}/v1/configs/app/big", server.url))
        .header("origin", "https://console.example.com")
        .header("access-control-request-method", "PUT")
        .send()
        .await
        .unwrap();
    assert_eq!(
        preflight.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap()),
        Some("https://console.example.com")
    );
    drop(server);

    // The environment and a flag each override the file.
    let server = start(
        &elsewhere,
        &["--config", file, "--listen", "127.0.0.1:0"],
        &[("GRAYCAST_MAX_VALUE_BYTES", "400000")],
    );
    assert_eq!(put(&server.url, 300_000).await, 200);
    // The log says the file's setting was overridden (a unit's Environment= can hide it).
    let log = std::fs::read_to_string(elsewhere.join("server.log")).unwrap();
    assert!(log.contains("`max-value-bytes` is overridden by GRAYCAST_MAX_VALUE_BYTES"), "{log}");
    drop(server);
    let server = start(
        &elsewhere,
        &["--config", file, "--listen", "127.0.0.1:0", "--max-value-bytes", "2000"],
        &[],
    );
    assert_eq!(put(&server.url, 3_000).await, 413);
    drop(server);

    // GRAYCAST_CONFIG names the file too.
    let server = start(&elsewhere, &["--listen", "127.0.0.1:0"], &[("GRAYCAST_CONFIG", file)]);
    assert_eq!(put(&server.url, 300_000).await, 413);
}

#[test]
fn a_file_that_cannot_be_used_stops_the_server_at_start_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, expected) in [
        ("max_value_bytes = 10\n", "keys are named as the flags: `max-value-bytes`"),
        ("listen = \"nowhere\"\n", "`listen`: invalid value 'nowhere'"),
        ("tls-cert = \"missing.pem\"\ntls-key = \"missing.pem\"\n", "missing.pem"),
    ] {
        let file = dir.path().join("graycast.toml");
        std::fs::write(&file, text).unwrap();
        // No --listen flag: the file's own must be the one refused. A server that starts
        // anyway is stopped at the deadline rather than left to hang the test.
        let mut child = Command::new(server_binary())
            .args(["--config", file.to_str().unwrap()])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the server runs");
        let deadline = std::time::Instant::now() + DEADLINE;
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("{text}: the server started");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let output = child.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{text}: {said}");
        assert!(said.contains(expected), "{text}: {said}");
        assert!(said.contains("graycast.toml") || expected == "missing.pem", "{text}: {said}");
    }
}
