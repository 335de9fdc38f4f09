//! `graycastctl` against a real server: every verb, its errors, and `watch` across a restart.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;

use graycast_protocol::ServerMessage;
use graycast_tests::{cli_binary, Api, TestServer, DEADLINE};
use serde_json::{json, Value};

fn ctl(server: &TestServer, args: &[&str]) -> Output {
    Command::new(cli_binary())
        .arg("--server")
        .arg(&server.url)
        .args(args)
        .output()
        .expect("graycastctl runs")
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json_of(output: &Output) -> Value {
    serde_json::from_str(&ok(output)).expect("JSON output")
}

fn fails(output: &Output, code: i32, message: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    assert!(stderr.contains(message), "expected {message:?} in: {stderr}");
}

#[test]
fn every_verb_works_and_fails_clearly() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();

    let put = json_of(&ctl(&server, &["--json", "put", "app", "timeout_ms", "250"]));
    assert_eq!((put["value"].clone(), put["version"].clone()), (json!(250), json!(1)));
    let first = put["revision"].as_u64().unwrap();
    let file = dir.path().join("value.json");
    std::fs::write(&file, r#"{"retry": [1, 2, 3]}"#).unwrap();
    // Another JSON type than the current one needs --type-change: readers expect the type.
    fails(
        &ctl(&server, &["put", "app", "timeout_ms", &format!("@{}", file.display())]),
        2,
        "holds an integer and the new value is an object",
    );
    let text = ok(&ctl(
        &server,
        &["put", "app", "timeout_ms", &format!("@{}", file.display()), "--type-change"],
    ));
    assert!(text.contains("app/timeout_ms = {\"retry\":[1,2,3]}"), "{text}");
    ok(&ctl(&server, &["put", "app", "banner", "\"hello\""]));

    let got = json_of(&ctl(&server, &["--json", "get", "app", "timeout_ms"]));
    assert_eq!(got["value"], json!({"retry": [1, 2, 3]}));
    let text = ok(&ctl(&server, &["get", "app", "timeout_ms"]));
    assert!(text.contains("revision:") && text.contains("\"retry\""), "{text}");

    let list = json_of(&ctl(&server, &["--json", "list"]));
    assert_eq!(list["namespaces"], json!([{"name": "app", "keys": 2}]));
    let text = ok(&ctl(&server, &["list", "app"]));
    assert!(text.lines().any(|l| l.starts_with("banner\t\"hello\"")), "{text}");

    let history = json_of(&ctl(&server, &["--json", "history", "app", "timeout_ms"]));
    assert_eq!(history["items"].as_array().unwrap().len(), 2);
    let text = ok(&ctl(&server, &["history", "app", "timeout_ms", "--limit", "1"]));
    assert_eq!(text.lines().count(), 1);

    let rolled =
        json_of(&ctl(&server, &["--json", "rollback", "app", "timeout_ms", &first.to_string()]));
    assert_eq!(rolled["value"], json!(250));
    let current = rolled["revision"].as_u64().unwrap();

    // Conditional writes.
    fails(
        &ctl(&server, &["put", "app", "timeout_ms", "1", "--if-revision", &first.to_string()]),
        1,
        "revision_mismatch",
    );
    fails(&ctl(&server, &["put", "app", "timeout_ms", "1", "--create"]), 1, "revision_mismatch");
    ok(&ctl(&server, &["put", "app", "timeout_ms", "300", "--if-revision", &current.to_string()]));

    let deleted = json_of(&ctl(&server, &["--json", "delete", "app", "banner"]));
    assert!(deleted["revision"].as_u64().unwrap() > current);

    // Errors: exit 2 for what the user typed wrong, 1 for what the server refused.
    fails(&ctl(&server, &["put", "app", "k", "not json"]), 2, "not JSON");
    fails(&ctl(&server, &["put", "app", "k", "@/no/such/file"]), 2, "cannot read the value");
    fails(&ctl(&server, &["put", "bad/ns", "k", "1"]), 2, "invalid name");
    fails(&ctl(&server, &["get", "app", "banner"]), 1, "not_found");
    fails(&ctl(&server, &["delete", "app", "banner"]), 1, "not_found");
    fails(&ctl(&server, &["rollback", "app", "timeout_ms", "999999"]), 1, "not_found");
    fails(&ctl(&server, &["history", "app", "timeout_ms", "--limit", "0"]), 1, "bad_request");
    fails(&ctl(&server, &["frobnicate"]), 2, "unrecognized subcommand");
    let down = Command::new(cli_binary())
        .args(["--server", "http://127.0.0.1:9", "list"])
        .output()
        .unwrap();
    fails(&down, 1, "cannot reach the server");
    // The cause is not hidden behind "error sending request", and the hint names --server.
    fails(&down, 1, "Connection refused");
    fails(&down, 1, "hint: is graycast running at http://127.0.0.1:9? Point --server");
    let help = ok(&Command::new(cli_binary()).args(["put", "--help"]).output().unwrap());
    assert!(help.contains("Example"), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_every_change_across_a_server_restart() {
    let mut server = TestServer::start();
    let api = Api::new(&server);
    let before = api.put_ok("app", "k", json!("before")).await;
    let mut child = Command::new(cli_binary())
        .args(["--server", &server.url, "--json", "watch", "app"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_revision = || -> u64 {
        let line = lines.recv_timeout(DEADLINE).expect("watch printed a line");
        match serde_json::from_str::<ServerMessage>(&line).expect("a change message per line") {
            ServerMessage::Change { revision, .. } => revision,
            other => panic!("expected a change, got {other:?}"),
        }
    };
    // The current state comes first, marked as such, then where it ends, then changes.
    let state: Value = serde_json::from_str(&lines.recv_timeout(DEADLINE).unwrap()).unwrap();
    assert_eq!((&state["type"], &state["entry"]["revision"]), (&json!("state"), &json!(before)));
    let synced: Value = serde_json::from_str(&lines.recv_timeout(DEADLINE).unwrap()).unwrap();
    assert_eq!((&synced["type"], &synced["revision"]), (&json!("synced"), &json!(before)));
    let mut expected = Vec::new();
    for i in 0..5 {
        expected.push(api.put_ok("app", "k", json!(i)).await);
    }
    for revision in &expected {
        assert_eq!(next_revision(), *revision);
    }
    server.restart();
    assert_eq!(server.url, api.url, "restarted on the same port");
    let mut after = Vec::new();
    for i in 0..5 {
        after.push(api.put_ok("app", &format!("after{i}"), json!(i)).await);
    }
    for revision in &after {
        assert_eq!(next_revision(), *revision);
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn gray_verbs_and_release() {
    let server = TestServer::start();
    ok(&ctl(&server, &["put", "app", "timeout_ms", "250"]));
    let started = json_of(&ctl(
        &server,
        &[
            "--json",
            "gray",
            "start",
            "app",
            "timeout_ms",
            "--value",
            "300",
            "--step",
            "5:600",
            "--step",
            "50:600",
            "--step",
            "100",
            "--auto-promote",
            "--guard",
            "0.05:200",
            "--allow",
            "vip,ops",
            "--rule",
            "region:in:eu-west,eu-north",
        ],
    ));
    let gray = &started["gray"];
    assert_eq!((gray["value"].clone(), gray["percent"].clone()), (json!(300), json!(5.0)));
    assert_eq!(gray["allow"], json!(["ops", "vip"]));
    assert_eq!(gray["rules"][0]["values"], json!(["eu-west", "eu-north"]));
    assert_eq!(gray["guard"], json!({"max_error_rate": 0.05, "min_samples": 200}));

    let status = ok(&ctl(&server, &["gray", "status", "app", "timeout_ms"]));
    for expected in [
        "percent:   5%",
        "step:      1 of 3",
        "next step: 20",
        "abort above 0.05",
        "outcomes:  gray 0 ok",
    ] {
        assert!(status.contains(expected), "{expected:?} missing from:\n{status}");
    }
    let set = json_of(&ctl(
        &server,
        &["--json", "gray", "set", "app", "timeout_ms", "--percent", "20", "--pause"],
    ));
    assert_eq!(
        (set["gray"]["percent"].clone(), set["gray"]["paused"].clone()),
        (json!(20.0), json!(true))
    );
    let status = ok(&ctl(&server, &["gray", "status", "app", "timeout_ms"]));
    assert!(status.contains("20% (paused)"), "{status}");

    let release = json_of(&ctl(&server, &["--json", "release", "app", "timeout_ms", "vip"]));
    assert_eq!(
        (release["variant"].clone(), release["reason"].clone()),
        (json!("gray"), json!("allow"))
    );
    let text =
        ok(&ctl(&server, &["release", "app", "timeout_ms", "u1", "--attr", "region=us-east"]));
    assert!(text.starts_with("stable (rule_mismatch): 250"), "{text}");

    let promoted = json_of(&ctl(&server, &["--json", "gray", "promote", "app", "timeout_ms"]));
    assert_eq!((promoted["value"].clone(), promoted["gray"].clone()), (json!(300), Value::Null));
    ok(&ctl(&server, &["gray", "start", "app", "timeout_ms", "--value", "400", "--percent", "10"]));
    let aborted = json_of(&ctl(&server, &["--json", "gray", "abort", "app", "timeout_ms"]));
    assert_eq!((aborted["value"].clone(), aborted["gray"].clone()), (json!(300), Value::Null));

    fails(&ctl(&server, &["gray", "status", "app", "timeout_ms"]), 1, "not_found");
    fails(
        &ctl(&server, &["gray", "start", "app", "timeout_ms", "--value", "1", "--step", "five"]),
        2,
        "--step",
    );
    fails(
        &ctl(
            &server,
            &["gray", "start", "app", "timeout_ms", "--value", "1", "--rule", "region=eu"],
        ),
        2,
        "--rule",
    );
    fails(
        &ctl(
            &server,
            &["gray", "start", "app", "timeout_ms", "--value", "1", "--rule", "r:like:x"],
        ),
        2,
        "rule op",
    );
    fails(
        &ctl(&server, &["gray", "start", "app", "timeout_ms", "--value", "1", "--percent", "101"]),
        2,
        "outside 0 to 100",
    );
    fails(&ctl(&server, &["gray", "start", "app", "nope", "--value", "1"]), 1, "not_found");
    fails(
        &ctl(&server, &["release", "app", "timeout_ms", "u1", "--attr", "novalue"]),
        2,
        "NAME=VALUE",
    );
}

/// Writes a token file with an admin, a reader of `app` and a writer of `other`.
fn token_file(dir: &std::path::Path) -> std::path::PathBuf {
    let sha = |secret: &str| {
        let mut child = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sha256sum runs");
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(secret.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_owned()
    };
    let path = dir.join("tokens.toml");
    std::fs::write(
        &path,
        format!(
            "[[token]]\nname = \"root\"\nsecret_sha256 = \"{}\"\nrole = \"admin\"\n\n\
             [[token]]\nname = \"viewer\"\nsecret_sha256 = \"{}\"\nrole = \"read\"\nnamespaces = [\"app\"]\n",
            sha("root-secret"),
            sha("viewer-secret")
        ),
    )
    .unwrap();
    path
}

fn run(args: &[&str]) -> Output {
    Command::new(cli_binary()).args(args).output().expect("graycastctl runs")
}

/// 401 and 403 end a command at once, `watch` included, with the status and a hint; so
/// does a server that cannot be reached; a typo in a namespace is named; `--json` errors
/// are JSON.
#[test]
fn refusals_end_every_verb_with_the_status_and_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = token_file(dir.path());
    let server = TestServer::start_with(&["--tokens", tokens.to_str().unwrap()]);
    let url = server.url.as_str();
    ok(&run(&["--server", url, "--token", "root-secret", "put", "app", "timeout_ms", "250"]));

    let started = std::time::Instant::now();
    let none = run(&["--server", url, "watch", "app"]);
    fails(&none, 1, "401 unauthorized");
    fails(&none, 1, "hint: this server needs an access token: pass --token");
    let wrong = run(&["--server", url, "--token", "nope", "watch", "app"]);
    fails(&wrong, 1, "401 unauthorized");
    fails(&wrong, 1, "hint: the server does not know this token");
    let forbidden = run(&["--server", url, "--token", "viewer-secret", "watch", "app", "secrets"]);
    fails(&forbidden, 1, "403 forbidden");
    fails(&forbidden, 1, "graycastctl whoami");
    let down = run(&["--server", "http://127.0.0.1:9", "--timeout", "1", "watch", "app"]);
    fails(&down, 1, "no connection within 1 s");
    fails(&down, 1, "Connection refused");
    assert!(started.elapsed() < DEADLINE, "refusals took {:?}", started.elapsed());

    let denied = run(&["--server", url, "--token", "viewer-secret", "put", "app", "k", "1"]);
    fails(&denied, 1, "403 forbidden");
    let who = ok(&run(&["--server", url, "--token", "viewer-secret", "whoami"]));
    assert_eq!(who.trim(), "viewer (read) on app");

    // A bare host:port is a server address.
    let bare = url.trim_start_matches("http://");
    let text = ok(&run(&["--server", bare, "--token", "viewer-secret", "list", "app"]));
    assert!(text.starts_with("timeout_ms\t250"), "{text}");

    // A namespace nobody wrote is most likely a typo.
    let typo = run(&["--server", url, "--token", "root-secret", "list", "ap"]);
    fails(&typo, 1, "namespace ap has no keys and no description; did you mean app?");

    // --json: the error as JSON on stdout, nothing on stderr.
    let json = run(&["--server", url, "--json", "get", "app", "timeout_ms"]);
    assert_eq!(json.status.code(), Some(1));
    let body: Value = serde_json::from_slice(&json.stdout).expect("a JSON error");
    assert_eq!(body["error"]["code"], "unauthorized");
    assert_eq!(body["error"]["status"], 401);
    assert!(body["error"]["hint"].as_str().unwrap().contains("--token"), "{body}");
    assert!(json.stderr.is_empty(), "{}", String::from_utf8_lossy(&json.stderr));
    let usage = run(&["--server", url, "--json", "put", "app", "k", "not json"]);
    assert_eq!(usage.status.code(), Some(2));
    let body: Value = serde_json::from_slice(&usage.stdout).expect("a JSON error");
    assert_eq!(body["error"]["code"], "usage");
    let down = run(&["--server", "http://127.0.0.1:9", "--json", "list"]);
    let body: Value = serde_json::from_slice(&down.stdout).expect("a JSON error");
    assert_eq!(body["error"]["code"], "unreachable");
}

/// What the CLI prints says what happened, in the API's words.
#[test]
fn output_says_what_happened() {
    let server = TestServer::start();
    let text = ok(&ctl(&server, &["put", "app", "timeout_ms", "250", "--comment", "first cut"]));
    assert!(text.starts_with("created app/timeout_ms = 250"), "{text}");
    let text = ok(&ctl(&server, &["list"]));
    assert_eq!(text.trim(), "app\t1 key");
    ok(&ctl(&server, &["describe", "app", "Checkout knobs"]));
    let text = ok(&ctl(&server, &["list"]));
    assert_eq!(text.trim(), "app\t1 key\tCheckout knobs");

    let text = ok(&ctl(
        &server,
        &[
            "gray",
            "start",
            "app",
            "timeout_ms",
            "--value",
            "300",
            "--step",
            "10:5m",
            "--step",
            "50:1h",
            "--step",
            "100",
            "--allow",
            "qa",
            "--rule",
            "region:in:eu-west",
        ],
    ));
    assert!(
        text.starts_with("started a gray release of app/timeout_ms: 300 to 10% (stable 250), ramp 10% → 50% → 100%"),
        "{text}"
    );
    let entry = json_of(&ctl(&server, &["--json", "get", "app", "timeout_ms"]));
    assert_eq!(entry["gray"]["steps"][0]["hold_secs"], 300);
    assert_eq!(entry["gray"]["steps"][1]["hold_secs"], 3600);
    let status = ok(&ctl(&server, &["gray", "status", "app", "timeout_ms"]));
    for expected in ["rule:      region in eu-west", "allow:     1 subject; deny: 0 subjects"] {
        assert!(status.contains(expected), "{expected:?} missing from:\n{status}");
    }
    let text = ok(&ctl(&server, &["gray", "set", "app", "timeout_ms", "--percent", "20"]));
    assert!(text.starts_with("changed the gray release of app/timeout_ms: 300 to 20%"), "{text}");
    let text =
        ok(&ctl(&server, &["gray", "promote", "app", "timeout_ms", "--comment", "looks good"]));
    assert!(
        text.starts_with("promoted app/timeout_ms: the gray value 300 is now the stable value"),
        "{text}"
    );
    ok(&ctl(&server, &["gray", "start", "app", "timeout_ms", "--value", "400", "--percent", "5"]));
    let text = ok(&ctl(&server, &["gray", "abort", "app", "timeout_ms"]));
    assert!(
        text.starts_with(
            "aborted the gray release of app/timeout_ms: everyone gets the stable value 300"
        ),
        "{text}"
    );

    // History tells gray events apart and carries comments.
    let history = ok(&ctl(&server, &["history", "app", "timeout_ms"]));
    let lines: Vec<&str> = history.lines().collect();
    assert!(
        lines[0].contains("\tabort\t") && lines[0].ends_with("300 (gray release aborted)"),
        "{history}"
    );
    assert!(lines[1].contains("gray 400 to 5% (stable 300)"), "{history}");
    assert!(lines[2].contains("300 (the gray value, promoted)\t# looks good"), "{history}");
    assert!(lines.last().unwrap().ends_with("250\t# first cut"), "{history}");

    // The audit feed.
    let feed = ok(&ctl(&server, &["changes", "--namespace", "app"]));
    assert!(
        feed.lines().next().unwrap().contains("put app/timeout_ms\tby anonymous from 127.0.0.1:"),
        "{feed}"
    );
    assert!(feed.contains("# first cut"), "{feed}");

    // A comment goes with changes only.
    fails(
        &ctl(&server, &["get", "app", "timeout_ms", "--comment", "x"]),
        2,
        "--comment goes with a change",
    );
    fails(
        &ctl(&server, &["gray", "start", "app", "timeout_ms", "--value", "1", "--step", "10:5min"]),
        2,
        "unit \"min\"",
    );

    // The top-level help is the CLI's, with the server option and its default.
    let help = ok(&run(&["--help"]));
    assert!(help.starts_with("graycastctl: read, change, watch and gray-release"), "{help}");
    assert!(
        help.contains("--server <URL>") && help.contains("[default: http://127.0.0.1:8080]"),
        "{help}"
    );
    let usage = ok(&run(&["list", "--help"]));
    assert!(usage.contains("Usage: graycastctl list [OPTIONS] [NAMESPACE]"), "{usage}");
}

/// `watch` prints gray events with the gray value, not only the stable one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_shows_gray_events() {
    let server = TestServer::start();
    let api = Api::new(&server);
    api.put_ok("app", "k", json!(1)).await;
    let mut child = Command::new(cli_binary())
        .args(["--server", &server.url, "watch", "app"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = lines.recv_timeout(DEADLINE).expect("the current entry");
    assert!(first.ends_with("state app/k = 1"), "{first}");
    let (status, body) = api
        .request(
            reqwest::Method::PUT,
            "/v1/configs/app/k/gray",
            None,
            Some(json!({"value": 2, "percent": 5})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let line = lines.recv_timeout(DEADLINE).expect("the gray change");
    assert!(line.ends_with("gray app/k = 1 (gray 2 to 5%)"), "{line}");
    let _ = child.kill();
    let _ = child.wait();
}

/// `--server https://…` against a plain-HTTP server fails in the TLS handshake; the hint
/// says the server speaks plain HTTP and names the http:// URL to use instead.
#[test]
fn https_against_a_plain_server_says_to_use_http() {
    let server = TestServer::start();
    let plain = server.url.as_str();
    let https = plain.replacen("http://", "https://", 1);
    let hint = format!("hint: the server speaks plain HTTP, not HTTPS: use --server {plain}");

    let listed = run(&["--server", &https, "list"]);
    fails(&listed, 1, &hint);
    let put = run(&["--server", &https, "put", "app", "k", "1"]);
    fails(&put, 1, &hint);
    let watched = run(&["--server", &https, "--timeout", "2", "watch", "app"]);
    fails(&watched, 1, &hint);

    let json = run(&["--server", &https, "--json", "list"]);
    assert_eq!(json.status.code(), Some(1));
    let body: Value = serde_json::from_slice(&json.stdout).expect("a JSON error");
    assert_eq!(body["error"]["code"], "tls", "{body}");
    let said = body["error"]["hint"].as_str().unwrap_or_default();
    assert!(said.contains(&format!("use --server {plain}")), "{body}");

    // The hint's URL works.
    ok(&run(&["--server", plain, "put", "app", "k", "1"]));
}

/// A server URL copied with the API's `/v1` (or a trailing slash) still works: the CLI
/// does not ask for `/v1/v1/...`.
#[test]
fn a_server_url_ending_in_v1_works() {
    let server = TestServer::start();
    let url = server.url.as_str();
    for (i, server_url) in
        [format!("{url}/v1"), format!("{url}/v1/"), format!("{url}/"), format!("{url}//")]
            .iter()
            .enumerate()
    {
        let key = format!("k{i}");
        let text = ok(&run(&["--server", server_url, "put", "app", &key, "1"]));
        assert!(text.starts_with(&format!("created app/{key} = 1")), "{server_url}: {text}");
        let listed = ok(&run(&["--server", server_url, "list", "app"]));
        assert!(listed.contains(&format!("{key}\t1")), "{server_url}: {listed}");
    }
    // From the environment too.
    let from_env = Command::new(cli_binary())
        .env("GRAYCAST_SERVER", format!("{url}/v1"))
        .args(["--json", "get", "app", "k0"])
        .output()
        .unwrap();
    assert_eq!(json_of(&from_env)["value"], json!(1));
    // `watch` (the WebSocket) too.
    let mut child = Command::new(cli_binary())
        .args(["--server", &format!("{url}/v1/"), "watch", "app"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = lines.recv_timeout(DEADLINE);
    let _ = child.kill();
    let _ = child.wait();
    let first = first.expect("watch printed the current entries");
    assert!(first.contains("state app/k"), "{first}");
}

/// A value the shell stripped of its quotes (`put ns k blue`) is not JSON; the error
/// names it and shows how to quote it, and what it shows works when pasted into a shell.
#[test]
fn an_unquoted_string_value_says_how_to_quote_it() {
    let server = TestServer::start();
    fails(
        &ctl(&server, &["put", "app", "color", "blue"]),
        2,
        r#"graycastctl: "blue" is not JSON; for a string write it with JSON quotes inside shell quotes: '"blue"'"#,
    );
    fails(
        &ctl(&server, &["gray", "start", "app", "color", "--value", "green"]),
        2,
        r#""green" is not JSON; for a string write it with JSON quotes inside shell quotes: '"green"'"#,
    );
    // What the message suggests, pasted into a shell, stores the string as it was typed.
    for typed in ["blue", "hello world", "it's", "1.2.3", "a\"b"] {
        let failed = ctl(&server, &["put", "app", "color", typed]);
        assert_eq!(failed.status.code(), Some(2), "{typed}");
        let stderr = String::from_utf8_lossy(&failed.stderr).into_owned();
        let (_, quoted) = stderr
            .split_once("inside shell quotes: ")
            .unwrap_or_else(|| panic!("no suggestion for {typed:?}: {stderr}"));
        let line = format!("\"$0\" --server \"$1\" --json put app color {}", quoted.trim());
        let stored = Command::new("sh")
            .args(["-c", &line])
            .arg(cli_binary())
            .arg(&server.url)
            .output()
            .unwrap();
        assert_eq!(json_of(&stored)["value"], json!(typed), "{line}");
    }
    // Text that tries to be JSON gets the parser's reason instead.
    fails(&ctl(&server, &["put", "app", "color", "{a: 1}"]), 2, "key must be a string");
}

/// The subcommands a help text lists under "Commands:", without `help`.
fn subcommands(help: &str) -> Vec<String> {
    section(help, "Commands:")
        .iter()
        .filter_map(|(name, _)| name.split_whitespace().next().map(str::to_owned))
        .filter(|name| name != "help")
        .collect()
}

/// The entries of a help section, each its name and its description: the text after the
/// name on its line, or the more indented lines under it (`--help`'s long layout).
fn section(help: &str, title: &str) -> Vec<(String, String)> {
    let mut entries: Vec<(String, String)> = Vec::new();
    let mut inside = false;
    for line in help.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            inside = line.trim_end() == title;
            continue;
        }
        if !inside || line.trim().is_empty() {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        if indent <= 6 {
            // `<NAME>  text`, `[NAME]...  text`, `-h, --help  text`, `list  text`.
            let (name, description) = match text.find("  ") {
                Some(at) => (text[..at].to_owned(), text[at..].trim().to_owned()),
                None => (text.to_owned(), String::new()),
            };
            entries.push((name, description));
        } else if let Some((_, description)) = entries.last_mut() {
            description.push(' ');
            description.push_str(text);
        }
    }
    entries
}

/// Every argument and option of every subcommand says what it is in `--help`.
#[test]
fn every_argument_has_a_description() {
    let mut missing = Vec::new();
    let mut arguments = 0;
    let mut pending = vec![Vec::<String>::new()];
    while let Some(path) = pending.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = ok(&run(&args));
        for command in subcommands(&help) {
            let mut deeper = path.clone();
            deeper.push(command);
            pending.push(deeper);
        }
        for title in ["Arguments:", "Options:"] {
            for (name, description) in section(&help, title) {
                arguments += usize::from(title == "Arguments:");
                // Clap's own notes, such as `[default: 20]`, do not describe anything.
                let said: String = description
                    .split('[')
                    .map(|part| part.split_once(']').map_or(part, |(_, after)| after))
                    .collect();
                if said.trim().is_empty() {
                    missing.push(format!("graycastctl {} {name}", path.join(" ")));
                }
            }
        }
    }
    assert!(arguments >= 30, "only {arguments} arguments found: is the help parsed?");
    assert!(missing.is_empty(), "no description in --help:\n{}", missing.join("\n"));
}

#[test]
fn change_requests_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = graycast_tests::token_file(
        dir.path(),
        &[
            ("root", "root-secret", "admin", &["*"]),
            ("alice", "alice-secret", "write", &["prod-*"]),
            ("bob", "bob-secret", "write", &["prod-*"]),
        ],
    );
    let server = TestServer::start_with(&["--tokens", tokens.to_str().unwrap()]);
    let as_user = |token: &str, args: &[&str]| {
        let mut all = vec!["--token", token];
        all.extend_from_slice(args);
        ctl(&server, &all)
    };
    ok(&as_user("root-secret", &["put", "prod-pay", "limit", "5"]));
    let policy = r#"{"policies": [{"namespaces": ["prod-*"], "approvals": 1}]}"#;
    let output = Command::new("curl")
        .args([
            "-sf",
            "-X",
            "PUT",
            &format!("{}/v1/policies", server.url),
            "-H",
            "authorization: Bearer root-secret",
            "--json",
            policy,
        ])
        .output()
        .unwrap();
    assert!(output.status.success());

    // A direct put says how to ask instead.
    let refused = as_user("alice-secret", &["put", "prod-pay", "limit", "6"]);
    fails(&refused, 1, "hint: this namespace is under a policy: propose the change with `graycastctl request create");
    let created = json_of(&as_user(
        "alice-secret",
        &["--json", "--comment", "sale", "request", "create", "put", "prod-pay", "limit", "6"],
    ));
    let (id, digest) = (created["id"].as_str().unwrap(), created["digest"].as_str().unwrap());
    let shown = ok(&as_user("bob-secret", &["request", "show", id]));
    assert!(
        shown.contains("does: put prod-pay/limit = 6")
            && shown.contains(&format!("--digest {digest}")),
        "{shown}"
    );
    fails(
        &as_user("alice-secret", &["request", "approve", id, "--digest", digest]),
        1,
        "approvals must come from someone else",
    );
    let approved = ok(&as_user("bob-secret", &["request", "approve", id, "--digest", digest]));
    assert!(approved.contains(": approved"), "{approved}");
    let listed = ok(&as_user("alice-secret", &["request", "list", "--state", "approved"]));
    assert!(listed.contains(id), "{listed}");
    ok(&as_user("alice-secret", &["request", "apply", id]));
    let entry = json_of(&as_user("alice-secret", &["--json", "get", "prod-pay", "limit"]));
    assert_eq!(entry["value"], 6);
    fails(
        &as_user("alice-secret", &["request", "create", "put", "prod-pay"]),
        2,
        "put takes NAMESPACE KEY VALUE",
    );
}

/// Several servers (`--server a,b`, or GRAYCAST_SERVER): a request goes on to the next when
/// one cannot be reached; counts are said in plain English ("2 entries").
#[test]
fn several_servers_fail_over_and_counts_read_right() {
    let server = TestServer::start();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let both = format!("http://{dead},{}", server.url);
    let run = |args: &[&str]| {
        Command::new(cli_binary()).args(["--server", &both]).args(args).output().expect("runs")
    };
    ok(&run(&["put", "app", "a", "1"]));
    ok(&run(&["put", "app", "b", "2"]));
    let got = json_of(&run(&["--json", "get", "app", "b"]));
    assert_eq!(got["value"], 2);
    let exported =
        Command::new(cli_binary()).env("GRAYCAST_SERVER", &both).args(["export"]).output().unwrap();
    let said = String::from_utf8_lossy(&exported.stderr);
    assert!(said.contains("2 entries"), "{said}");
}
