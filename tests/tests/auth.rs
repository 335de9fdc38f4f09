//! Access tokens (SPEC §7) end to end: roles, namespace patterns, REST and WebSocket.

use std::io::Write as _;

use graycast_client::{Client, Expect};
use graycast_protocol::ServerMessage;
use graycast_tests::{Api, TestServer, Watcher, DEADLINE};
use serde_json::{json, Value};

const ADMIN: &str = "admin-secret-1";
const WRITER: &str = "p@ss+w/rd&x=1#z";
const READER: &str = "reader-secret-3";
const REPORTER: &str = "reporter-secret-4";

/// SHA-256 of a secret, as the token file holds it, computed by `sha256sum`.
fn sha256(secret: &str) -> String {
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum runs");
    child.stdin.take().expect("stdin").write_all(secret.as_bytes()).expect("writes");
    let output = child.wait_with_output().expect("sha256sum output");
    String::from_utf8_lossy(&output.stdout).split_whitespace().next().expect("a hash").to_owned()
}

fn token_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("tokens.toml");
    let text = format!(
        "[[token]]\nname = \"root\"\nsecret_sha256 = \"{}\"\nrole = \"admin\"\n\n\
         [[token]]\nname = \"deploy-bot\"\nsecret_sha256 = \"{}\"\nrole = \"write\"\nnamespaces = [\"payments*\"]\n\n\
         [[token]]\nname = \"dashboard\"\nsecret_sha256 = \"{}\"\nrole = \"read\"\nnamespaces = [\"payments\"]\n\n\
         [[token]]\nname = \"checkout-canary\"\nsecret_sha256 = \"{}\"\nrole = \"report\"\nnamespaces = [\"payments\"]\n",
        sha256(ADMIN),
        sha256(WRITER),
        sha256(READER),
        sha256(REPORTER)
    );
    std::fs::write(&path, text).expect("token file");
    path
}

fn start() -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = token_file(dir.path());
    let server = TestServer::start_with(&["--tokens", tokens.to_str().expect("utf-8 path")]);
    (server, dir)
}

async fn call(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    Api::new(server).request(method, path, token, body).await
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_namespace_patterns_guard_every_route() {
    use reqwest::Method;
    let (server, _dir) = start();
    let put = |ns: &'static str, token: Option<&'static str>| {
        call(
            &server,
            Method::PUT,
            Box::leak(format!("/v1/configs/{ns}/k").into_boxed_str()),
            token,
            Some(json!({"value": 1})),
        )
    };
    let (status, body) = put("payments", None).await;
    assert_eq!((status, code(&body)), (401, "unauthorized"));
    let (status, body) = put("payments", Some("wrong")).await;
    assert_eq!((status, code(&body)), (401, "unauthorized"));
    let (status, body) = put("payments", Some(READER)).await;
    assert_eq!((status, code(&body)), (403, "forbidden"));
    let (status, body) = put("search", Some(WRITER)).await;
    assert_eq!((status, code(&body)), (403, "forbidden"));
    let (status, entry) = put("payments-eu", Some(WRITER)).await;
    assert_eq!(
        (status, entry["updated_by"].clone()),
        (201, json!("deploy-bot")),
        "changes record who made them"
    );
    let (status, _) = put("payments", Some(WRITER)).await;
    assert_eq!(status, 201);
    let (status, _) = put("search", Some(ADMIN)).await;
    assert_eq!(status, 201);

    let (status, _) =
        call(&server, Method::GET, "/v1/configs/payments/k", Some(READER), None).await;
    assert_eq!(status, 200);
    let (status, _) =
        call(&server, Method::GET, "/v1/configs/payments-eu/k", Some(READER), None).await;
    assert_eq!(status, 403, "read is scoped to the token's namespaces");
    let (status, _) =
        call(&server, Method::GET, "/v1/release/payments/k?subject=u", Some(READER), None).await;
    assert_eq!(status, 200);
    let (_, list) = call(&server, Method::GET, "/v1/namespaces", Some(READER), None).await;
    assert_eq!(list["namespaces"], json!([{"name": "payments", "keys": 1}]));
    let (_, list) = call(&server, Method::GET, "/v1/namespaces", Some(ADMIN), None).await;
    assert_eq!(list["namespaces"].as_array().map(Vec::len), Some(3));
    let (status, _) = call(&server, Method::GET, "/v1/clients", Some(WRITER), None).await;
    assert_eq!(status, 403);
    let (status, _) = call(&server, Method::GET, "/v1/clients", Some(ADMIN), None).await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &server,
        Method::PUT,
        "/v1/configs/payments/k/gray",
        Some(READER),
        Some(json!({"value": 2, "percent": 5})),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &server,
        Method::PUT,
        "/v1/configs/payments/k/gray",
        Some(WRITER),
        Some(json!({"value": 2, "percent": 5})),
    )
    .await;
    assert_eq!(status, 200);
    // Finding 7 of issue 8: a read token could abort a release (or hide its errors) with
    // reports. Reports need the report, write or admin role.
    let report = |token| {
        call(
            &server,
            Method::POST,
            "/v1/configs/payments/k/gray/report",
            Some(token),
            Some(json!({"variant": "gray", "ok": 1})),
        )
    };
    let (status, body) = report(READER).await;
    assert_eq!((status, code(&body)), (403, "forbidden"), "readers may not report");
    assert_eq!(report(REPORTER).await.0, 200, "reporters report");
    assert_eq!(report(WRITER).await.0, 200, "writers report");
    let (status, _) = call(
        &server,
        Method::PUT,
        "/v1/configs/payments/k",
        Some(REPORTER),
        Some(json!({"value": 3})),
    )
    .await;
    assert_eq!(status, 403, "reporters may not write");
    for public in ["/healthz", "/readyz", "/metrics", "/openapi.json", "/"] {
        let response = reqwest::get(format!("{}{public}", server.url)).await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{public} is public");
    }
    // Secrets never reach the log.
    let log = server.log_text();
    for secret in [ADMIN, WRITER, READER, REPORTER] {
        assert!(!log.contains(secret), "a secret is in the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_subscribers_authenticate_by_query_header_or_message() {
    let (server, _dir) = start();
    // No token: subscribe is refused.
    let mut anonymous = Watcher::subscribe(&server, &["payments"], None).await.unwrap();
    match anonymous.next().await.unwrap() {
        ServerMessage::Error { code, .. } => assert_eq!(code, "unauthorized"),
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(anonymous.expect_close().await.unwrap(), Some(1008));

    // A bad token on the upgrade is refused before the upgrade.
    let url = format!("{}?token=wrong", server.watch_url());
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 401)
        }
        other => panic!("expected 401, got {other:?}"),
    }

    // ?token= works (percent-encoded), and scopes namespaces.
    let url = format!("{}?token={}", server.watch_url(), "reader-secret-3");
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    drop(ws);

    // The auth message works too; a namespace outside the token is forbidden.
    let mut watcher = Watcher::connect(&server).await.unwrap();
    watcher.send(json!({"type": "auth", "token": READER})).await.unwrap();
    watcher.send(json!({"type": "subscribe", "namespaces": ["payments-eu"]})).await.unwrap();
    match watcher.next().await.unwrap() {
        ServerMessage::Error { code, .. } => assert_eq!(code, "forbidden"),
        other => panic!("expected forbidden, got {other:?}"),
    }
    let mut watcher = Watcher::connect(&server).await.unwrap();
    watcher.send(json!({"type": "auth", "token": READER})).await.unwrap();
    watcher.send(json!({"type": "subscribe", "namespaces": ["*"]})).await.unwrap();
    assert!(
        matches!(watcher.next().await.unwrap(), ServerMessage::Error { .. }),
        "* is for admins"
    );
    let mut watcher = Watcher::connect(&server).await.unwrap();
    watcher.send(json!({"type": "auth", "token": READER})).await.unwrap();
    watcher.send(json!({"type": "subscribe", "namespaces": ["payments"]})).await.unwrap();
    assert!(matches!(watcher.next().await.unwrap(), ServerMessage::Snapshot { .. }));

    // The SDK sends its token on REST and WebSocket, special characters included.
    let client = Client::builder()
        .endpoint(&server.url)
        .namespace("payments")
        .token(WRITER)
        .build()
        .unwrap();
    client.wait_synced(DEADLINE).await.unwrap();
    let entry = client.put("payments", "from-sdk", &true, Expect::Any).await.unwrap();
    assert_eq!(entry.updated_by, "deploy-bot");
    client.wait_for_revision(entry.revision, DEADLINE).await.unwrap();
    let err = client.put("search", "k", &1, Expect::Any).await.unwrap_err();
    assert_eq!(err.code(), Some("forbidden"));
    assert!(!err.is_temporary());
}

#[test]
fn with_tokens_the_server_may_bind_beyond_loopback_and_a_bad_token_file_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = token_file(dir.path());
    let mut child = std::process::Command::new(graycast_tests::server_binary())
        .args(["--listen", "0.0.0.0:0", "--store", "memory", "--tokens"])
        .arg(&tokens)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.starts_with("graycast listening on http://0.0.0.0:"), "{line}");
    let _ = child.kill();
    let _ = child.wait();

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[token]]\nname = \"x\"\nsecret_sha256 = \"nothex\"\nrole = \"read\"\nnamespaces = [\"a\"]\n").unwrap();
    let output = std::process::Command::new(graycast_tests::server_binary())
        .args(["--store", "memory", "--listen", "127.0.0.1:0", "--tokens"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("64 hex digits"));
}

/// Finding 7 of issue 8: one report of 1,000,000 outcomes could abort a release, and the
/// abort said only `guard`. Reports carry at most 10,000 outcomes, and the abort's note
/// names the tokens whose reports tripped it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard_aborts_name_the_reporters_and_reports_are_bounded() {
    use reqwest::Method;
    let (server, _dir) = start();
    let (status, _) = call(
        &server,
        Method::PUT,
        "/v1/configs/payments/g",
        Some(WRITER),
        Some(json!({"value": 1})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = call(
        &server,
        Method::PUT,
        "/v1/configs/payments/g/gray",
        Some(WRITER),
        Some(json!({"value": 2, "percent": 50, "guard": {"max_error_rate": 0.1, "min_samples": 2500}})),
    )
    .await;
    assert_eq!(status, 200);
    let path = "/v1/configs/payments/g/gray/report";
    let (status, body) = call(
        &server,
        Method::POST,
        path,
        Some(REPORTER),
        Some(json!({"variant": "gray", "errors": 10_001})),
    )
    .await;
    assert_eq!((status, code(&body)), (422, "invalid_value"), "{body}");
    let (status, _) =
        call(&server, Method::GET, "/v1/configs/payments/g/gray", Some(READER), None).await;
    assert_eq!(status, 200, "the refused report aborted nothing");
    for (token, errors) in [(WRITER, 300), (REPORTER, 1000), (REPORTER, 10)] {
        let (status, body) = call(
            &server,
            Method::POST,
            path,
            Some(token),
            Some(json!({"variant": "gray", "ok": 1000 - errors.min(1000), "errors": errors})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, history) =
        call(&server, Method::GET, "/v1/configs/payments/g/history", Some(READER), None).await;
    assert_eq!(status, 200);
    let abort = &history["items"][0];
    assert_eq!(
        (abort["op"].as_str(), abort["updated_by"].as_str()),
        (Some("abort"), Some("guard"))
    );
    let note = abort["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("checkout-canary (1010 errors), deploy-bot (300 errors)")
            && note.contains("tripped by a report of checkout-canary"),
        "{note}"
    );
}
