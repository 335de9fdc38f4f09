//! Contract slips found from outside by conformance tools (issue 18): the WebSocket close
//! handshake (RFC 6455), the idle progress cadence (SPEC §5), the metrics formats
//! Prometheus' own tools read, and the `ETag` of every write.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use graycast_tests::{Api, TestServer, Watcher, DEADLINE};
use reqwest::Method;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

/// A masked client frame (the mask is zero: masking is required, its key is not).
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() <= 125);
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    frame
}

/// Sends a close frame with `payload` on a fresh connection and returns the close code the
/// server answers with.
async fn close_answer(server: &TestServer, payload: &[u8]) -> Option<u16> {
    let watcher = Watcher::connect(server).await.unwrap();
    let mut ws = watcher.into_inner();
    let raw = match ws.get_mut() {
        tokio_tungstenite::MaybeTlsStream::Plain(stream) => stream,
        _ => unreachable!("plain TCP"),
    };
    raw.write_all(&client_frame(0x8, payload)).await.unwrap();
    loop {
        match tokio::time::timeout(DEADLINE, ws.next()).await.expect("an answer in time") {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            Some(Err(err)) => panic!("no close frame for {payload:?}: {err}"),
            None => return None,
        }
    }
}

/// Item 8: the close handshake echoed whatever code the client sent (0, 999, 1004, ...),
/// and answered a 1-byte payload and a reason that is not UTF-8 with 1000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_close_handshake_follows_rfc_6455() {
    let server = TestServer::start();
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000] {
        let got = close_answer(&server, &code.to_be_bytes()).await;
        assert_eq!(got, Some(1002), "a close with code {code}");
    }
    assert_eq!(close_answer(&server, &[0x03]).await, Some(1002), "a 1-byte close payload");
    let mut bad_reason = 1000u16.to_be_bytes().to_vec();
    bad_reason.extend_from_slice(&[0xff, 0xfe]);
    assert_eq!(close_answer(&server, &bad_reason).await, Some(1007), "a reason not UTF-8");
    for code in [1000u16, 1001, 1003, 1011, 3000, 4999] {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice("bye".as_bytes());
        assert_eq!(close_answer(&server, &payload).await, Some(code), "echoes {code}");
    }
    assert_eq!(close_answer(&server, &[]).await, Some(1000), "an empty close is answered 1000");
}

async fn next<S>(ws: &mut S) -> Message
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    match tokio::time::timeout(DEADLINE, ws.next()).await.expect("a frame in time") {
        Some(Ok(frame)) => frame,
        other => panic!("the stream ended: {other:?}"),
    }
}

/// Item 3: after a change, the next `progress` came up to two heartbeats later (the
/// heartbeat only sent one when nothing had been sent since the tick before). A subscriber
/// sent nothing for one heartbeat now gets a progress, whatever was sent before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_follows_one_heartbeat_after_the_last_thing_sent() {
    let heartbeat = Duration::from_millis(400);
    let server = TestServer::start_with(&["--heartbeat-ms", "400"]);
    let api = Api::new(&server);
    let mut ws = Watcher::subscribe(&server, &["cadence"], None).await.unwrap().into_inner();
    for round in 0..3 {
        // Right after a heartbeat's ping: the worst moment for a tick-aligned progress.
        while !matches!(next(&mut ws).await, Message::Ping(_)) {}
        api.put_ok("cadence", "k", json!(round)).await;
        let changed_at = loop {
            match next(&mut ws).await {
                Message::Text(text) if text.contains("\"change\"") => break Instant::now(),
                _ => continue,
            }
        };
        loop {
            match next(&mut ws).await {
                Message::Text(text) if text.contains("\"progress\"") => break,
                Message::Text(text) => panic!("unexpected {text}"),
                _ => continue,
            }
        }
        let silence = changed_at.elapsed();
        assert!(
            silence < heartbeat + heartbeat / 2,
            "round {round}: {silence:?} of silence after a change, heartbeat {heartbeat:?}"
        );
    }
}

/// Item 8: `/metrics` named its counter families without their `_total` samples, so 8
/// families had no `# HELP` for what `promtool check metrics` reads, and a scrape asking
/// for `text/plain;version=0.0.4` was answered in OpenMetrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_in_the_format_asked_for() {
    let server = TestServer::start();
    let api = Api::new(&server);
    api.put_ok("m", "k", json!(1)).await;
    let scrape = |accept: &'static str| {
        let request = api.http.get(format!("{}/metrics", server.url));
        async move {
            let answer = request.header("accept", accept).send().await.unwrap();
            let kind = answer.headers()["content-type"].to_str().unwrap().to_owned();
            (kind, answer.text().await.unwrap())
        }
    };
    let (kind, classic) = scrape("text/plain;version=0.0.4").await;
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    assert!(classic.contains("# HELP graycast_writes_total "), "{classic}");
    assert!(!classic.contains("# EOF"), "{classic}");
    let (kind, open) = scrape("application/openmetrics-text;version=1.0.0").await;
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    assert!(open.ends_with("# EOF\n"), "{open}");

    // Prometheus' own linter, where it is installed (CI installs Debian's prometheus).
    let Ok(promtool) = which("promtool") else {
        eprintln!("promtool is not installed; the format was checked above only");
        return;
    };
    let mut check = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    check.stdin.take().unwrap().write_all(classic.as_bytes()).unwrap();
    let done = check.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&done.stdout).to_string() + &String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success() && said.trim().is_empty(), "promtool check metrics: {said}");
}

fn which(program: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or(())
}

/// Item 5: gray writes answered 200 without an `ETag`; every write answers the entry and
/// its revision as the `ETag`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_answers_the_entry_and_its_etag() {
    let server = TestServer::start();
    let api = Api::new(&server);
    let json_body = [("content-type", "application/json")];
    let body = |v: serde_json::Value| Some(v.to_string());
    let base = "/v1/configs/tagged/k";
    let writes: Vec<(Method, String, Option<String>, u16)> = vec![
        (Method::PUT, base.into(), body(json!({"value": 1})), 201),
        (Method::PUT, base.into(), body(json!({"value": 2})), 200),
        (Method::PUT, format!("{base}/gray"), body(json!({"value": 3, "percent": 10})), 200),
        (Method::PATCH, format!("{base}/gray"), body(json!({"percent": 20})), 200),
        (Method::POST, format!("{base}/gray/promote"), None, 200),
        (Method::PUT, format!("{base}/gray"), body(json!({"value": 4, "percent": 5})), 200),
        (Method::DELETE, format!("{base}/gray"), None, 200),
        (Method::POST, format!("{base}/rollback"), body(json!({"to_revision": 1})), 200),
    ];
    for (method, path, payload, status) in writes {
        let headers: &[(&str, &str)] = if payload.is_some() { &json_body } else { &[] };
        let (got, answer_headers, answer) =
            api.raw(method.clone(), &path, headers, payload.as_deref()).await;
        assert_eq!(got, status, "{method} {path}: {answer}");
        let entry = answer;
        let tag = answer_headers.get("etag").map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(tag, Some(format!("\"{}\"", entry["revision"])), "{method} {path}");
    }
}

/// Issue 23, item 7: `HEAD` works wherever `GET` does (load balancers probe with it): the
/// same status and headers, no body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_answers_wherever_get_does() {
    let server = TestServer::start();
    let api = Api::new(&server);
    api.put_ok("probe", "k", json!(1)).await;
    for path in [
        "/healthz",
        "/readyz",
        "/readyz?write",
        "/metrics",
        "/openapi.json",
        "/v1/namespaces",
        "/v1/configs/probe",
        "/v1/configs/probe/k",
        "/v1/configs/probe/missing",
        "/",
    ] {
        let get = api.http.get(format!("{}{path}", server.url)).send().await.unwrap();
        let head = api.http.head(format!("{}{path}", server.url)).send().await.unwrap();
        assert_eq!(head.status(), get.status(), "HEAD {path}");
        assert_eq!(
            head.headers().get("content-type"),
            get.headers().get("content-type"),
            "HEAD {path}"
        );
        assert!(head.bytes().await.unwrap().is_empty(), "HEAD {path} has no body");
    }
    let (status, ready) = api.get("/readyz").await.unwrap();
    assert_eq!((status, ready["writable"].clone()), (200, json!(true)));
}
