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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_names_the_token_its_role_and_patterns() {
    let (server, _dir) = start();
    let whoami = |token| call(&server, reqwest::Method::GET, "/v1/whoami", token, None);
    assert_eq!(
        whoami(Some(WRITER)).await,
        (200, json!({"name": "deploy-bot", "role": "write", "namespaces": ["payments*"]}))
    );
    assert_eq!(
        whoami(Some(ADMIN)).await,
        (200, json!({"name": "root", "role": "admin", "namespaces": ["*"]}))
    );
    assert_eq!(whoami(Some(REPORTER)).await.1["role"], "report");
    let (status, body) = whoami(None).await;
    assert_eq!((status, code(&body)), (401, "unauthorized"));
    let (status, body) = whoami(Some("wrong")).await;
    assert_eq!((status, code(&body)), (401, "unauthorized"));

    let open = TestServer::start();
    assert_eq!(
        Api::new(&open).get("/v1/whoami").await.unwrap(),
        (200, json!({"name": "anonymous", "role": "admin", "namespaces": ["*"]}))
    );
}

/// `*` from a token that may not read everything: every namespace it may read, present
/// and future, and nothing else: in the snapshot, in pushes, in replays, and for the
/// namespace descriptions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn star_from_a_scoped_token_is_every_namespace_it_may_read() {
    let (server, _dir) = start();
    let api = Api::new(&server);
    let put = |ns: &'static str, key: &'static str, value: Value| {
        let api = &api;
        async move {
            let path = format!("/v1/configs/{ns}/{key}");
            let (status, body) = api
                .request(reqwest::Method::PUT, &path, Some(ADMIN), Some(json!({"value": value})))
                .await;
            assert!(status == 200 || status == 201, "{status} {body}");
            body["revision"].as_u64().expect("a revision")
        }
    };
    put("payments-eu", "limit", json!(1)).await;
    put("search", "boost", json!(2)).await;
    let describe = |ns: &'static str, text: &'static str| {
        let api = &api;
        async move {
            let path = format!("/v1/namespaces/{ns}");
            api.request(
                reqwest::Method::PUT,
                &path,
                Some(ADMIN),
                Some(json!({"description": text})),
            )
            .await
        }
    };
    assert_eq!(describe("payments-eu", "EU payments").await.0, 200);
    assert_eq!(describe("search", "Search ranking").await.0, 200);

    let mut watcher = Watcher::connect(&server).await.unwrap();
    watcher.send(json!({"type": "auth", "token": WRITER})).await.unwrap();
    watcher.send(json!({"type": "subscribe", "namespaces": ["*"]})).await.unwrap();
    let ServerMessage::Snapshot { entries, namespaces, revision } =
        watcher.next_data().await.unwrap()
    else {
        panic!("a snapshot first")
    };
    assert_eq!(namespaces, ["*"]);
    let seen: Vec<(String, String)> =
        entries.iter().map(|e| (e.namespace.clone(), e.key.clone())).collect();
    assert_eq!(
        seen,
        [
            ("graycast.meta".to_owned(), "payments-eu".to_owned()),
            ("payments-eu".to_owned(), "limit".to_owned())
        ]
    );

    // A namespace created later under the token's pattern is pushed; others are not.
    put("search", "boost", json!(3)).await;
    let created = put("payments-us", "limit", json!(4)).await;
    match watcher.next_data().await.unwrap() {
        ServerMessage::Change { namespace, revision, .. } => {
            assert_eq!((namespace.as_str(), revision), ("payments-us", created))
        }
        other => panic!("expected the payments-us change, got {other:?}"),
    }

    // A replay from the snapshot's revision holds the same, and only that.
    let mut resumed = Watcher::connect(&server).await.unwrap();
    resumed.send(json!({"type": "auth", "token": WRITER})).await.unwrap();
    resumed
        .send(json!({"type": "subscribe", "namespaces": ["*"], "since": revision}))
        .await
        .unwrap();
    match resumed.next_data().await.unwrap() {
        ServerMessage::Change { namespace, .. } => assert_eq!(namespace, "payments-us"),
        other => panic!("expected the payments-us change, got {other:?}"),
    }

    // The namespace list and the audit feed show the same scope.
    let (_, list) = call(&server, reqwest::Method::GET, "/v1/namespaces", Some(WRITER), None).await;
    assert_eq!(
        list["namespaces"],
        json!([{"name": "payments-eu", "keys": 1, "description": "EU payments"},
               {"name": "payments-us", "keys": 1}])
    );
    let (_, feed) =
        call(&server, reqwest::Method::GET, "/v1/changes?since=0", Some(WRITER), None).await;
    let keys: Vec<&str> =
        feed["items"].as_array().unwrap().iter().map(|i| i["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["limit", "payments-eu", "limit"]);
    let (status, body) =
        call(&server, reqwest::Method::GET, "/v1/changes?namespace=search", Some(WRITER), None)
            .await;
    assert_eq!((status, code(&body)), (403, "forbidden"));

    // A description needs write access to its namespace.
    let (status, _) = call(
        &server,
        reqwest::Method::PUT,
        "/v1/namespaces/search",
        Some(WRITER),
        Some(json!({"description": "mine now"})),
    )
    .await;
    assert_eq!(status, 403);
}
