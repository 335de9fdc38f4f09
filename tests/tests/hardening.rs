//! Hardening (issue 8): inputs, clients and web pages that must not brick, exhaust or
//! hijack a server. Each test names the finding it reproduces.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream as StdTcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use graycast_client::Client;
use graycast_protocol::value::nested;
use graycast_protocol::ServerMessage;
use graycast_tests::{cli_binary, Api, TestServer, Watcher, DEADLINE};
use reqwest::Method;
use serde_json::{json, Value};

fn text_of(levels: usize) -> String {
    format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
}

/// The value of a change or snapshot entry, as received.
fn entry_value(message: &ServerMessage) -> Value {
    match message {
        ServerMessage::Change { entry: Some(entry), .. } => entry.value.clone(),
        ServerMessage::Snapshot { entries, .. } => entries[0].value.clone(),
        other => panic!("expected an entry, got {other:?}"),
    }
}

fn gray_value(message: &ServerMessage) -> Value {
    match message {
        ServerMessage::Change { entry: Some(entry), .. } => {
            entry.gray.as_ref().expect("a gray section").value.clone()
        }
        ServerMessage::Snapshot { entries, .. } => {
            entries[0].gray.as_ref().expect("a gray section").value.clone()
        }
        other => panic!("expected an entry, got {other:?}"),
    }
}

/// Finding 1: one accepted write made the data dir unreadable. Values beyond 64 levels
/// are now refused (422) however deep, and a value at the limit survives every path:
/// history, restart, replay from the change log, snapshot, the SDK and `watch`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_at_the_depth_limit_survive_every_path_and_deeper_ones_are_refused() {
    let mut server = TestServer::start();
    let api = Api::new(&server);
    let json_body = [("content-type", "application/json")];
    api.put_ok("deep", "k", json!(1)).await;
    for levels in [65, 125, 126, 127, 128, 200, 5000] {
        for path in ["/v1/configs/deep/k", "/v1/configs/deep/k/gray"] {
            let body = format!(r#"{{"value": {}}}"#, text_of(levels));
            let (status, _, answer) = api.raw(Method::PUT, path, &json_body, Some(&body)).await;
            assert_eq!(status, 422, "{levels} levels on {path}: {answer}");
            assert_eq!(answer["error"]["code"], "invalid_value", "{answer}");
        }
    }
    let mut watcher = Watcher::subscribe(&server, &["deep"], None).await.unwrap();
    let first = watcher.next_data().await.unwrap();
    assert_eq!(first.revision(), Some(1), "the refused writes changed nothing");

    let limit = nested(64);
    // A gray value of the same depth (a release of the value it replaces is refused).
    let gray_limit = json!({ "gray": nested(63) });
    let put = api.put_ok("deep", "k", limit.clone()).await;
    let (status, body) = api
        .request(
            Method::PUT,
            "/v1/configs/deep/k/gray",
            None,
            Some(json!({"value": gray_limit, "percent": 50})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let gray = body["revision"].as_u64().unwrap();
    assert_eq!(entry_value(&watcher.next_data().await.unwrap()), limit);
    assert_eq!(gray_value(&watcher.next_data().await.unwrap()), gray_limit);

    let sdk = Client::builder().endpoint(&server.url).namespace("deep").build().unwrap();
    sdk.wait_for_revision(gray, DEADLINE).await.unwrap();
    assert_eq!(sdk.get_json("deep", "k"), Some(limit.clone()));
    assert_eq!(sdk.entry("deep", "k").unwrap().gray.as_ref().unwrap().value, gray_limit);

    let (status, history) = api.get("/v1/configs/deep/k/history").await.unwrap();
    assert_eq!(status, 200, "{history}");
    assert_eq!(history["items"][0]["gray"]["value"], gray_limit);
    assert_eq!(history["items"][1]["value"], limit);

    server.restart();
    let api = Api::new(&server);
    let (status, entry) = api.get("/v1/configs/deep/k").await.unwrap();
    assert_eq!((status, entry["revision"].as_u64()), (200, Some(gray)), "{entry}");
    let (status, _) = api.get("/v1/configs/deep/k/history").await.unwrap();
    assert_eq!(status, 200);

    // Replay from the change log, then a snapshot.
    let mut replay = Watcher::subscribe(&server, &["deep"], Some(put - 1)).await.unwrap();
    assert_eq!(entry_value(&replay.next_data().await.unwrap()), limit);
    assert_eq!(gray_value(&replay.next_data().await.unwrap()), gray_limit);
    let mut fresh = Watcher::subscribe(&server, &["deep"], None).await.unwrap();
    let snapshot = fresh.next_data().await.unwrap();
    assert_eq!(
        (entry_value(&snapshot), gray_value(&snapshot)),
        (limit.clone(), gray_limit.clone())
    );

    // `graycastctl watch --json` prints the current state of the key, marked as the state.
    let mut child = Command::new(cli_binary())
        .args(["--server", &server.url, "--json", "watch", "deep"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = lines.recv_timeout(DEADLINE).expect("watch printed the key");
    let _ = child.kill();
    let _ = child.wait();
    let printed: Value = serde_json::from_str(&line).expect("a state line");
    assert_eq!(printed["type"], "state", "{line}");
    let entry: graycast_protocol::Entry =
        serde_json::from_value(printed["entry"].clone()).expect("the entry");
    assert_eq!(entry.gray.expect("a gray section").value, gray_limit);
}

/// Finding 1, the other half: a data dir written by a server that still accepted values
/// 126 levels deep (whose records are deeper than serde_json's default limit) opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_holding_values_the_old_limit_accepted_still_opens() {
    let deep = text_of(126);
    let server = TestServer::start_prepared(&[], |data| {
        let at = "2026-11-25T12:00:00Z";
        let entry = format!(
            r#"{{"namespace":"old","key":"k","value":1,"revision":2,"created_revision":1,"version":2,"updated_at":"{at}","updated_by":"t","gray":{{"value":{deep},"percent":5.0,"salt":"old/k","started_at":"{at}"}}}}"#
        );
        let item = |revision: u64, gray: bool| {
            let gray = if gray {
                format!(r#"{{"value":{deep},"percent":5.0,"salt":"old/k","started_at":"{at}"}}"#)
            } else {
                "null".into()
            };
            format!(
                r#"{{"revision":{revision},"op":"{}","value":1,"gray":{gray},"updated_at":"{at}","updated_by":"t"}}"#,
                if gray == "null" { "put" } else { "gray" }
            )
        };
        let change = |revision: u64, entry: &str| {
            format!(
                r#"{{"revision":{revision},"op":"gray","namespace":"old","key":"k","entry":{entry},"at":"{at}","by":"t"}}"#
            )
        };
        write_v1_data_dir(
            &data.join("graycast.redb"),
            2,
            &[("old/k", entry.as_str())],
            &[(("old/k", 1), item(1, false)), (("old/k", 2), item(2, true))],
            &[(2, change(2, &entry))],
        );
    });
    // The old values are served as they are (too deep for serde_json's default limit, so
    // the answers are checked as text): the data is readable, and can be fixed or deleted.
    for path in ["/v1/configs/old/k", "/v1/configs/old/k/history"] {
        let response = reqwest::get(format!("{}{path}", server.url)).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert!(response.text().await.unwrap().contains(&deep), "{path}");
    }
    let api = Api::new(&server);
    let (status, _, _) = api.raw(Method::DELETE, "/v1/configs/old/k/gray", &[], None).await;
    assert_eq!(status, 200, "the old release can be aborted");
    assert!(api.put_ok("old", "k", json!(2)).await > 3, "and the key takes writes");
}

/// Writes a data dir in the first on-disk format (one JSON copy per table).
fn write_v1_data_dir(
    path: &std::path::Path,
    revision: u64,
    entries: &[(&str, &str)],
    history: &[((&str, u64), String)],
    changelog: &[(u64, String)],
) {
    use redb::{Database, TableDefinition};
    const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
    const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");
    const HISTORY: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("history");
    const CHANGELOG: TableDefinition<u64, &[u8]> = TableDefinition::new("changelog");
    let db = Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut meta = txn.open_table(META).unwrap();
        meta.insert("revision", revision).unwrap();
        let mut table = txn.open_table(ENTRIES).unwrap();
        for (slot, entry) in entries {
            table.insert(*slot, entry.as_bytes()).unwrap();
        }
        let mut table = txn.open_table(HISTORY).unwrap();
        for (slot, item) in history {
            table.insert(*slot, item.as_bytes()).unwrap();
        }
        let mut table = txn.open_table(CHANGELOG).unwrap();
        for (revision, change) in changelog {
            table.insert(*revision, change.as_bytes()).unwrap();
        }
    }
    txn.commit().unwrap();
}

/// Finding 9: integers beyond 64 bits became floats and object keys came back re-ordered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_read_back_exactly_as_written() {
    let server = TestServer::start();
    let api = Api::new(&server);
    let text = r#"{"zeta":123456789012345678901234567890,"alpha":-9223372036854775809,"mid":0.1000000000000000055511151231257827,"big":18446744073709551616}"#;
    let body = format!(r#"{{"value":{text}}}"#);
    let (status, _, answer) = api
        .raw(
            Method::PUT,
            "/v1/configs/exact/k",
            &[("content-type", "application/json")],
            Some(&body),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    let raw = reqwest::get(format!("{}/v1/configs/exact/k", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(raw.contains(&format!(r#""value":{text}"#)), "{raw}");
    let mut watcher = Watcher::subscribe(&server, &["exact"], None).await.unwrap();
    let snapshot = watcher.next_data().await.unwrap();
    assert_eq!(entry_value(&snapshot).to_string(), text);
    let sdk = Client::builder().endpoint(&server.url).namespace("exact").build().unwrap();
    sdk.wait_synced(DEADLINE).await.unwrap();
    assert_eq!(sdk.get_json("exact", "k").unwrap().to_string(), text);
}

/// Finding 9: a value of at most the limit, compact, was refused because the request
/// spelled it with whitespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_value_limit_counts_the_compact_serialization() {
    let server = TestServer::start_with(&["--max-value-bytes", "1000"]);
    let api = Api::new(&server);
    let json_body = [("content-type", "application/json")];
    // 100 items of "1," compact is 201 bytes; spelled with 20 spaces each it is 2 KiB.
    let spaced: Vec<String> = (0..100).map(|_| format!("1{}", " ".repeat(20))).collect();
    let body = format!(r#"{{"value": [{}]}}"#, spaced.join(","));
    assert!(body.len() > 2000);
    let (status, _, answer) =
        api.raw(Method::PUT, "/v1/configs/size/k", &json_body, Some(&body)).await;
    assert_eq!(status, 201, "{answer}");
    let big = format!(r#"{{"value": "{}"}}"#, "x".repeat(1001));
    let (status, _, answer) =
        api.raw(Method::PUT, "/v1/configs/size/k", &json_body, Some(&big)).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (413, Some("payload_too_large")));
}

/// Finding 9: 405, a `GET /v1/watch` without an upgrade and empty name segments answered
/// without the JSON error body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_answer_has_the_json_error_body() {
    let server = TestServer::start();
    let api = Api::new(&server);
    for (method, path, status, code) in [
        (Method::POST, "/v1/namespaces", 405, "method_not_allowed"),
        (Method::DELETE, "/v1/configs/a/b/history", 405, "method_not_allowed"),
        (Method::PATCH, "/v1/configs/a/b", 405, "method_not_allowed"),
        (Method::POST, "/healthz", 405, "method_not_allowed"),
        (Method::GET, "/v1/watch", 400, "bad_request"),
        (Method::GET, "/v1/configs//k", 400, "invalid_name"),
        (Method::GET, "/v1/configs/", 400, "invalid_name"),
        (Method::PUT, "/v1/configs/ns/", 400, "invalid_name"),
        (Method::GET, "/v1/release//k", 400, "invalid_name"),
        (Method::GET, "/v1/nothing-here", 404, "not_found"),
        (Method::GET, "/v1/configs/a/b/history?limit=x", 400, "bad_request"),
    ] {
        let (got, headers, body) = api.raw(method.clone(), path, &[], None).await;
        assert_eq!(got, status, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], code, "{method} {path}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        if status == 405 {
            assert!(headers.get("allow").is_some(), "{method} {path} names the allowed methods");
        }
    }
}

/// Finding 4: any web page in the operator's browser could read and change configs: the
/// upgrade took any `Origin`, any `Host` was served (DNS rebinding), and a cross-site
/// `text/plain` POST was accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_other_sites_cannot_change_configuration_or_subscribe() {
    let server = TestServer::start();
    let api = Api::new(&server);
    let revision = api.put_ok("app", "k", json!(1)).await;
    let own = server.url.clone();
    let json_body = ("content-type", "application/json");
    let rollback = "/v1/configs/app/k/rollback";
    let body = format!(r#"{{"to_revision": {revision}}}"#);
    for (headers, status) in [
        (vec![("origin", "https://evil.example"), json_body], 403),
        (vec![("origin", "null"), json_body], 403),
        (vec![("sec-fetch-site", "cross-site"), json_body], 403),
        (vec![("origin", "https://evil.example"), ("content-type", "text/plain")], 403),
        (vec![("content-type", "text/plain")], 415),
        (vec![("content-type", "application/x-www-form-urlencoded")], 415),
        (vec![("host", "attacker.example")], 403),
        (vec![("origin", own.as_str()), json_body], 200),
        (vec![("origin", own.as_str()), ("sec-fetch-site", "same-origin"), json_body], 200),
        (vec![], 200),
    ] {
        let (got, _, answer) = api.raw(Method::POST, rollback, &headers, Some(&body)).await;
        assert_eq!(got, status, "{headers:?}: {answer}");
    }
    for path in ["/v1/configs/app/k/gray/promote", "/v1/configs/app/k"] {
        let method = if path.ends_with("promote") { Method::POST } else { Method::DELETE };
        let (got, _, answer) =
            api.raw(method, path, &[("origin", "https://evil.example")], None).await;
        assert_eq!(got, 403, "{path}: {answer}");
    }
    // DNS rebinding: reads by another name are refused too.
    let (got, _, _) =
        api.raw(Method::GET, "/v1/configs/app/k", &[("host", "attacker.example:80")], None).await;
    assert_eq!(got, 403);

    // The WebSocket upgrade from another site's page.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = server.watch_url().into_client_request().unwrap();
    request.headers_mut().insert("origin", "https://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("a cross-site upgrade must be refused, got {other:?}"),
    }
    let mut request = server.watch_url().into_client_request().unwrap();
    request.headers_mut().insert("origin", own.parse().unwrap());
    assert!(tokio_tungstenite::connect_async(request).await.is_ok(), "same origin subscribes");

    // The server's own console, and listed origins, may write.
    let other = TestServer::start_with(&["--allowed-origins", "https://console.example.com"]);
    let api = Api::new(&other);
    let (got, _, answer) = api
        .raw(
            Method::PUT,
            "/v1/configs/app/k",
            &[("origin", "https://console.example.com"), json_body],
            Some(r#"{"value": 2}"#),
        )
        .await;
    assert_eq!(got, 201, "{answer}");
}

/// Finding 8: request bodies never timed out (1 byte a second held a worker 40 s+).
#[test]
fn a_request_body_that_never_arrives_times_out() {
    let server = TestServer::start_with(&["--body-timeout-ms", "300"]);
    let address = server.url.trim_start_matches("http://");
    let mut stream = StdTcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let started = Instant::now();
    write!(
        stream,
        "PUT /v1/configs/slow/k HTTP/1.1\r\nHost: {address}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"value\""
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let api = Api::new(&server);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (status, _) = rt.block_on(api.get("/v1/configs/slow/k")).unwrap();
    assert_eq!(status, 404, "nothing was written");
}

/// A frame header (masked, as clients send them) announcing `len` bytes of text.
fn text_frame_header(len: u64) -> Vec<u8> {
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&len.to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    header
}

/// Finding 2: WebSocket frames were buffered whole before the size check (one 256 MiB
/// frame from a client without a token grew the server by 250 MiB). The header alone
/// now gets the error and close 1009.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_is_refused_from_its_header() {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::tungstenite::Message;
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        "[[token]]\nname = \"root\"\nsecret_sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\nrole = \"admin\"\n",
    )
    .unwrap();
    let server = TestServer::start_with(&["--tokens", tokens.to_str().unwrap()]);
    let watcher = Watcher::connect(&server).await.unwrap();
    let mut ws = watcher.into_inner();
    // The header of a 256 MiB frame and a first kilobyte of it: nothing more is sent.
    let raw = match ws.get_mut() {
        tokio_tungstenite::MaybeTlsStream::Plain(stream) => stream,
        _ => unreachable!("plain TCP"),
    };
    raw.write_all(&text_frame_header(256 * 1024 * 1024)).await.unwrap();
    raw.write_all(&[b'x'; 1024]).await.unwrap();
    let mut error = None;
    let close = loop {
        match tokio::time::timeout(DEADLINE, ws.next()).await.expect("an answer in time") {
            Some(Ok(Message::Text(text))) => error = Some(text.to_string()),
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            other => panic!("expected an error and a close frame, got {other:?}"),
        }
    };
    assert_eq!(close, Some(1009));
    let error = error.expect("an error message before the close frame");
    assert!(error.contains("payload_too_large") && error.contains("268435456"), "{error}");
}

/// Finding 3: a subscriber that never reads held ~110 MiB (a copy of every queued
/// message), and once dropped its TCP connection stayed until the peer closed it. Its
/// queue is now bounded in bytes, and a peer that takes no output is cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start_with(&[
        "--subscriber-budget-bytes",
        "262144",
        "--client-timeout-ms",
        "1500",
        "--heartbeat-ms",
        "200",
    ]);
    let api = Api::new(&server);
    // A raw client: handshake and subscribe, then read nothing at all.
    let address = server.url.trim_start_matches("http://").to_owned();
    let mut stuck = tokio::net::TcpStream::connect(&address).await.unwrap();
    stuck
        .write_all(
            format!(
                "GET /v1/watch HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let subscribe = br#"{"type":"subscribe","namespaces":["big"]}"#;
    let mut frame = vec![0x81, 0x80 | subscribe.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(subscribe);
    stuck.write_all(&frame).await.unwrap();
    // A reader that keeps up, to see the writes go through.
    let mut reader = Watcher::subscribe(&server, &["big"], None).await.unwrap();
    reader.next_data().await.unwrap();
    let blob = "x".repeat(256 * 1024);
    for i in 0..40 {
        let last = api.put_ok("big", &format!("k{}", i % 4), json!({"i": i, "blob": blob})).await;
        // The reader keeps up (resyncs included) while the other peer reads nothing.
        while reader.next_data().await.unwrap().revision() < Some(last) {}
    }
    // Within the client timeout, the server gives up on the stuck peer: it disappears
    // from the clients and its connection ends (reading now drains the buffered bytes,
    // then finds the end or a reset).
    let deadline = Instant::now() + DEADLINE;
    let mut buf = vec![0u8; 1 << 20];
    let ended = loop {
        match tokio::time::timeout_at(deadline.into(), stuck.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(_)) => continue,
        }
    };
    assert!(ended, "the server kept the connection of a peer that takes nothing");
    let (_, clients) = api.get("/v1/clients").await.unwrap();
    assert_eq!(clients["clients"].as_array().map(Vec::len), Some(1), "{clients}");
}

/// Finding 5: unauthenticated WebSockets held their slots forever; now a connection must
/// subscribe within the subscribe timeout, and the default subscriber limit follows the
/// file descriptor limit, leaving room for REST.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_subscribe_are_closed_and_free_their_slot() {
    let server =
        TestServer::start_with(&["--subscribe-timeout-ms", "300", "--max-subscribers", "2"]);
    let mut idle = Vec::new();
    for _ in 0..2 {
        idle.push(Watcher::connect(&server).await.unwrap());
    }
    // The limit holds...
    let refused = tokio_tungstenite::connect_async(server.watch_url()).await;
    assert!(refused.is_err(), "a third connection is refused while two are open");
    // ...until the idle connections are closed for not subscribing.
    for watcher in &mut idle {
        match watcher.next().await.unwrap() {
            ServerMessage::Error { code, .. } => assert_eq!(code, "request_timeout"),
            other => panic!("expected an error, got {other:?}"),
        }
        assert_eq!(watcher.expect_close().await.unwrap(), Some(1008));
    }
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Ok(mut watcher) = Watcher::subscribe(&server, &["ns"], None).await {
            if watcher.next_data().await.is_ok() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the freed slots were never taken");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let limited = TestServer::start_under(&["prlimit", "--nofile=512:512", "--"], &[]);
    assert_eq!(limited.metric("graycast_subscriber_limit").await, Some(448.0));
}

/// Finding 9: idle `progress` came every one or two heartbeats; SPEC §5 says every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_subscriber_gets_progress_at_every_heartbeat() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let server = TestServer::start_with(&["--heartbeat-ms", "150"]);
    let watcher = Watcher::subscribe(&server, &["quiet"], None).await.unwrap();
    let mut ws = watcher.into_inner();
    let mut kinds = Vec::new();
    while kinds.len() < 12 {
        let frame = tokio::time::timeout(DEADLINE, ws.next()).await.unwrap().unwrap().unwrap();
        match frame {
            Message::Ping(_) => kinds.push("ping"),
            Message::Text(text) if text.contains("\"progress\"") => kinds.push("progress"),
            Message::Text(text) if text.contains("\"snapshot\"") => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // Each heartbeat sends a ping and, the subscriber being idle, a progress.
    assert_eq!(
        kinds.chunks(2).filter(|pair| pair == &["ping", "progress"]).count(),
        6,
        "{kinds:?}"
    );
}

/// Finding 6: `GET /v1/configs/{ns}` answered a whole namespace at once (300 MiB made a
/// 560 MiB answer) and `history?limit=1000` of 1 MiB values answered 150 MiB. Both are
/// paged now, by count and by bytes (4 MiB), with a cursor to the next page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_paged_by_count_and_bytes() {
    let server = TestServer::start_with(&["--max-value-bytes", "2000000", "--max-batch", "4096"]);
    let api = Api::new(&server);
    let puts: Vec<_> = (0..2500)
        .map(|i| {
            let api = api.clone();
            async move { api.put_ok("many", &format!("k{i:05}"), json!(i)).await }
        })
        .collect();
    futures_util::future::join_all(puts).await;
    let mut keys = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &after {
            Some(after) => format!("/v1/configs/many?after={after}"),
            None => "/v1/configs/many".to_owned(),
        };
        let (status, page) = api.get(&path).await.unwrap();
        assert_eq!(status, 200, "{page}");
        pages += 1;
        let entries = page["entries"].as_array().unwrap();
        assert!(entries.len() <= 1000);
        keys.extend(entries.iter().map(|e| e["key"].as_str().unwrap().to_owned()));
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..2500).map(|i| format!("k{i:05}")).collect();
    assert_eq!(keys, expected, "every key once, in order");
    let (_, small) = api.get("/v1/configs/many?limit=7&after=k00100").await.unwrap();
    assert_eq!(small["entries"].as_array().map(Vec::len), Some(7));
    assert_eq!(small["entries"][0]["key"], "k00101");
    assert_eq!(small["next"], "k00107");
    for bad in ["limit=0", "limit=1001", "after=-x", "limit=x"] {
        let (status, body) = api.get(&format!("/v1/configs/many?{bad}")).await.unwrap();
        assert_eq!(status, 400, "{bad}: {body}");
    }

    // Large values: a page stops at 4 MiB.
    let blob = "x".repeat(1_500_000);
    for i in 0..6 {
        api.put_ok("large", &format!("k{i}"), json!(blob)).await;
    }
    let (_, page) = api.get("/v1/configs/large").await.unwrap();
    assert_eq!(page["entries"].as_array().map(Vec::len), Some(2));
    assert_eq!(page["next"], "k1");
    let (_, history) = api.get("/v1/configs/large/k0/history?limit=1000").await.unwrap();
    assert_eq!(history["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(history["next"], Value::Null, "one item only");
    for _ in 0..5 {
        api.put_ok("large", "k0", json!(blob)).await;
    }
    let (_, history) = api.get("/v1/configs/large/k0/history?limit=1000").await.unwrap();
    let items = history["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "two 1.5 MB items fit in 4 MiB, a third does not");
    let next = history["next"].as_u64().expect("a next page");
    assert_eq!(next, items[1]["revision"].as_u64().unwrap());
    let (_, older) = api.get(&format!("/v1/configs/large/k0/history?before={next}")).await.unwrap();
    assert!(older["items"][0]["revision"].as_u64().unwrap() < next);

    // The SDK reads a whole namespace across pages.
    let sdk = Client::builder().endpoint(&server.url).build().unwrap();
    assert_eq!(sdk.fetch_namespace("many").await.unwrap().entries.len(), 2500);
}

/// Finding 6: the store had no quota. A write that would take it beyond `--quota-bytes`
/// is refused (507) and changes nothing; deletes still pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_beyond_the_quota_are_refused() {
    let server = TestServer::start_with(&["--quota-bytes", "400000"]);
    let api = Api::new(&server);
    let blob = "x".repeat(50_000);
    let mut accepted = 0;
    let refused = loop {
        let (status, body) = api.put("full", &format!("k{accepted}"), json!(blob)).await.unwrap();
        if status != 201 {
            break (status, body);
        }
        accepted += 1;
        assert!(accepted < 20, "the quota never refused a write");
    };
    assert_eq!(refused.0, 507, "{}", refused.1);
    assert_eq!(refused.1["error"]["code"], "quota_exceeded");
    assert!(accepted >= 2);
    let (_, namespaces) = api.get("/v1/namespaces").await.unwrap();
    assert_eq!(namespaces["namespaces"][0]["keys"], accepted, "the refused write created nothing");
    let (status, _) = api.delete("full", "k0").await.unwrap();
    assert_eq!(status, 200, "deletes pass beyond the quota");
}

/// Finding 6: disk use was several times the data written (three JSON copies of every
/// change: 4.25x for these 100 KB values). Each change is stored once now (2.12x: redb's own
/// floor for one copy of values this size), and history is bounded per key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disk_holds_one_copy_of_each_change_and_history_is_bounded() {
    let server = TestServer::start_with(&["--history-retain", "5"]);
    let api = Api::new(&server);
    let blob = "y".repeat(100_000);
    let mut written = 0;
    for round in 0..5 {
        let puts: Vec<_> = (0..40)
            .map(|i| {
                let api = api.clone();
                let value = json!({"round": round, "blob": blob});
                async move { api.put_ok("disk", &format!("k{i}"), value).await }
            })
            .collect();
        futures_util::future::join_all(puts).await;
        written += 40 * blob.len();
    }
    let file = server.data_dir().join("data").join("graycast.redb");
    let size = std::fs::metadata(&file).unwrap().len() as usize;
    let ratio = size as f64 / written as f64;
    eprintln!("wrote {written} bytes of values; the store file holds {size} bytes ({ratio:.2}x)");
    assert!(ratio < 2.5, "{ratio:.2}x the data written");

    for _ in 0..10 {
        api.put_ok("disk", "k0", json!("small")).await;
    }
    let (_, history) = api.get("/v1/configs/disk/k0/history").await.unwrap();
    assert_eq!(history["items"].as_array().map(Vec::len), Some(5), "{history}");
}

/// A data dir of the first on-disk format (a full copy of every change in the change log)
/// is converted on open: entries, history, replays and new revisions carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_the_first_format_is_converted_and_replays() {
    let at = "2026-11-25T12:00:00Z";
    let entry = |value: u64, revision: u64, version: u64| {
        format!(
            r#"{{"namespace":"v1","key":"k","value":{value},"revision":{revision},"created_revision":1,"version":{version},"updated_at":"{at}","updated_by":"old","gray":null}}"#
        )
    };
    let item = |value: &str, revision: u64, op: &str| {
        format!(
            r#"{{"revision":{revision},"op":"{op}","value":{value},"gray":null,"updated_at":"{at}","updated_by":"old"}}"#
        )
    };
    let change = |revision: u64, op: &str, entry: &str| {
        format!(
            r#"{{"revision":{revision},"op":"{op}","namespace":"v1","key":"k","entry":{entry},"at":"{at}","by":"old"}}"#
        )
    };
    let server = TestServer::start_prepared(&[], |data| {
        let (e1, e2) = (entry(10, 1, 1), entry(20, 2, 2));
        write_v1_data_dir(
            &data.join("graycast.redb"),
            3,
            &[("v1/other", &entry(5, 3, 1).replace("\"k\"", "\"other\""))],
            &[
                (("v1/k", 1), item("10", 1, "put")),
                (("v1/k", 2), item("20", 2, "put")),
                (("v1/k", 3), item("null", 3, "delete")),
            ],
            &[
                (1, change(1, "put", &e1)),
                (2, change(2, "put", &e2)),
                (3, change(3, "delete", "null")),
            ],
        );
    });
    let mut replay = Watcher::subscribe(&server, &["v1"], Some(0)).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        match replay.next_data().await.unwrap() {
            ServerMessage::Change { revision, op, entry, .. } => {
                seen.push((revision, op.as_str(), entry.map(|e| (e.value.clone(), e.version))))
            }
            other => panic!("expected a replayed change, got {other:?}"),
        }
    }
    assert_eq!(
        seen,
        [(1, "put", Some((json!(10), 1))), (2, "put", Some((json!(20), 2))), (3, "delete", None)]
    );
    let api = Api::new(&server);
    let (_, history) = api.get("/v1/configs/v1/k/history").await.unwrap();
    assert_eq!(history["items"].as_array().map(Vec::len), Some(3), "{history}");
    assert_eq!(api.put_ok("v1", "k", json!(30)).await, 4, "revisions carry on");
}
