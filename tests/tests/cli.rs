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
    let text = ok(&ctl(&server, &["put", "app", "timeout_ms", &format!("@{}", file.display())]));
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
    // The current state comes first, then changes as they happen.
    assert_eq!(next_revision(), before);
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
