//! Typed configs against a real server: the official JSON-Schema-Test-Suite (2020-12)
//! replayed through the HTTP API, every write path refusing what its schema refuses and
//! changing nothing, strict and ratchet schema changes, and the safety limits (no
//! backtracking regex, no outbound `$ref`).

use std::path::Path;
use std::time::{Duration, Instant};

use graycast_tests::{Api, TestServer, Watcher, DEADLINE};
use reqwest::Method;
use serde_json::{json, Value};

async fn call(api: &Api, method: Method, path: &str, body: Value) -> (u16, Value) {
    let body = (!body.is_null()).then_some(body);
    api.request(method, path, None, body).await
}

/// The store's revision: a refused write leaves it where it was.
async fn revision(api: &Api) -> u64 {
    let (_, list) = api.get("/v1/configs/any").await.unwrap();
    list["revision"].as_u64().unwrap()
}

fn suite_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/json-schema-test-suite")
}

/// The suite's remote documents, as the `resources` of a schema document, by the URL the
/// suite serves them at (`http://localhost:1234/…`): supplied, never fetched.
fn remotes() -> serde_json::Map<String, Value> {
    let root = suite_dir().join("remotes");
    let mut found = serde_json::Map::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                let relative =
                    path.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/");
                let document = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                found.insert(format!("http://localhost:1234/{relative}"), document);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_schema_test_suite_passes_through_the_api() {
    let server = TestServer::start();
    let api = Api::new(&server);
    let resources = remotes();
    let dir = suite_dir().join("tests/draft2020-12");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
    files.retain(|p| p.extension().is_some_and(|e| e == "json"));
    files.sort();
    let (mut cases, mut wrong) = (0, Vec::new());
    for (g, (file, group)) in files
        .iter()
        .flat_map(|file| {
            let groups: Vec<Value> = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
            groups.into_iter().map(move |group| (file.clone(), group))
        })
        .enumerate()
    {
        let name = format!(
            "{} / {}",
            file.file_name().unwrap().to_string_lossy(),
            group["description"].as_str().unwrap_or_default()
        );
        // A namespace per group, the schema on key `v`.
        let namespace = format!("suite{g}");
        let body = json!({"schemas": {"v": group["schema"]}, "resources": resources});
        let (status, answer) =
            call(&api, Method::PUT, &format!("/v1/schemas/{namespace}"), body).await;
        if status != 200 {
            wrong.push(format!("{name}: the schema was refused: {status} {answer}"));
            continue;
        }
        for test in group["tests"].as_array().unwrap() {
            cases += 1;
            let valid = test["valid"].as_bool().unwrap();
            let path = format!("/v1/configs/{namespace}/v");
            let (status, answer) =
                call(&api, Method::PUT, &path, json!({"value": test["data"]})).await;
            let accepted = (200..300).contains(&status);
            let refused_by_schema = status == 422 && answer["error"]["code"] == "schema_violation";
            if accepted != valid || (!accepted && !refused_by_schema) {
                wrong.push(format!(
                    "{name} / {}: valid {valid}, answered {status} {answer}",
                    test["description"].as_str().unwrap_or_default()
                ));
            }
        }
    }
    assert!(cases > 1000, "the suite has its cases ({cases})");
    assert!(wrong.is_empty(), "{} of {cases} cases disagree:\n{}", wrong.len(), wrong.join("\n"));
}

/// The number of history items of a key.
async fn history_len(api: &Api, path: &str) -> usize {
    let (_, history) = api.get(&format!("{path}/history")).await.unwrap();
    history["items"].as_array().map_or(0, Vec::len)
}

/// A write that the schema refuses: 422 `schema_violation` naming `key`, `variant` and
/// `keyword`, and nothing changed.
async fn refused(api: &Api, method: Method, path: &str, body: Value, want: (&str, &str, &str)) {
    let before = revision(api).await;
    let (status, answer) = call(api, method, path, body).await;
    assert_eq!(status, 422, "{path}: {answer}");
    assert_eq!(answer["error"]["code"], "schema_violation", "{answer}");
    let detail = &answer["error"]["details"][0];
    let got = (detail["key"].as_str(), detail["variant"].as_str(), detail["keyword"].as_str());
    assert_eq!(got, (Some(want.0), Some(want.1), Some(want.2)), "{answer}");
    assert!(detail["path"].is_string() && detail["message"].is_string(), "{answer}");
    assert_eq!(revision(api).await, before, "{path}: a refused write changed the store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_path_refuses_a_value_its_schema_refuses_and_changes_nothing() {
    let server = TestServer::start();
    let api = Api::new(&server);
    // Before any schema: a string in history, a number now, and a release of a string.
    let fast = api.put_ok("app", "timeout", json!("fast")).await;
    api.put_ok("app", "timeout", json!(250)).await;
    api.put_ok("app", "limit", json!(5)).await;
    let (status, _) = call(
        &api,
        Method::PUT,
        "/v1/configs/app/limit/gray",
        json!({"value": "ten", "percent": 5}),
    )
    .await;
    assert_eq!(status, 200);

    // Strict: the release's string breaks `limit`'s schema, so it is refused, listing it.
    let schemas = json!({
        "timeout": {"type": "integer", "minimum": 1, "description": "ms"},
        "lim*": {"type": "integer"},
    });
    let before = revision(&api).await;
    let (status, answer) =
        call(&api, Method::PUT, "/v1/schemas/app", json!({"schemas": schemas})).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["details"]["count"], 1, "{answer}");
    let listed = &answer["error"]["details"]["violations"][0];
    assert_eq!((&listed["key"], &listed["variant"]), (&json!("limit"), &json!("gray")), "{answer}");
    assert_eq!(revision(&api).await, before, "a refused schema changed the store");

    // Ratchet: accepted; the gray value stays, out of schema, and is listed so.
    let (status, answer) = call(
        &api,
        Method::PUT,
        "/v1/schemas/app",
        json!({"schemas": schemas, "mode": "ratchet", "comment": "type the timeouts"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["mode"].as_str(), answer["out_of_schema"].as_u64()),
        (Some("ratchet"), Some(1))
    );
    let typed_at = answer["revision"].as_u64().unwrap();

    refused(
        &api,
        Method::PUT,
        "/v1/configs/app/timeout",
        json!({"value": "slow"}),
        ("timeout", "stable", "type"),
    )
    .await;
    refused(
        &api,
        Method::PUT,
        "/v1/configs/app/timeout",
        json!({"value": 0}),
        ("timeout", "stable", "minimum"),
    )
    .await;
    refused(
        &api,
        Method::PUT,
        "/v1/configs/app/timeout/gray",
        json!({"value": -1, "percent": 10}),
        ("timeout", "gray", "minimum"),
    )
    .await;
    refused(
        &api,
        Method::POST,
        "/v1/configs/app/timeout/rollback",
        json!({"to_revision": fast}),
        ("timeout", "stable", "type"),
    )
    .await;
    refused(
        &api,
        Method::POST,
        "/v1/configs/app/limit/gray/promote",
        Value::Null,
        ("limit", "stable", "type"),
    )
    .await;
    refused(
        &api,
        Method::PUT,
        "/v1/configs/app/limit/gray",
        json!({"value": "twenty", "percent": 5}),
        ("limit", "gray", "type"),
    )
    .await;
    // An import is all or nothing: the good key is not written either.
    let document = json!({"revision": 1, "entries": [
        {"namespace": "app", "key": "fresh", "value": 1, "revision": 1, "created_revision": 1, "version": 1,
         "updated_at": "2026-12-07T00:00:00Z", "updated_by": "x", "gray": null},
        {"namespace": "app", "key": "limit", "value": "many", "revision": 1, "created_revision": 1, "version": 1,
         "updated_at": "2026-12-07T00:00:00Z", "updated_by": "x", "gray": null},
    ]});
    refused(&api, Method::POST, "/v1/import", document, ("limit", "stable", "type")).await;
    assert_eq!(api.get("/v1/configs/app/fresh").await.unwrap().0, 404);

    // A gray release of a valid value starts; a gray patch (no new value) passes; a valid
    // put passes; the gray release of `limit` can still be aborted.
    let (status, _) = call(
        &api,
        Method::PUT,
        "/v1/configs/app/timeout/gray",
        json!({"value": 300, "percent": 10}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) =
        call(&api, Method::PATCH, "/v1/configs/app/limit/gray", json!({"percent": 20})).await;
    assert_eq!(status, 200);
    assert_eq!(call(&api, Method::DELETE, "/v1/configs/app/limit/gray", Value::Null).await.0, 200);
    assert_eq!(history_len(&api, "/v1/configs/app/limit").await, 4);

    // The schema has a history (op `schema`) and rolls back like a value; If-Match holds.
    let (status, answer) = api
        .raw(
            Method::PUT,
            "/v1/schemas/app",
            &[("if-match", "\"1\""), ("content-type", "application/json")],
            Some(r#"{"schemas": {}}"#),
        )
        .await
        .pipe(|(s, _, b)| (s, b));
    assert_eq!(status, 412, "{answer}");
    let (_, history) = api.get("/v1/schemas/app/history").await.unwrap();
    assert_eq!(history["items"][0]["op"], "schema");
    assert_eq!(history["items"][0]["revision"], typed_at);
    let (status, _) = call(&api, Method::DELETE, "/v1/schemas/app", Value::Null).await;
    assert_eq!(status, 200);
    let (status, _) =
        call(&api, Method::PUT, "/v1/configs/app/timeout", json!({"value": "untyped again"})).await;
    assert_eq!(status, 200);
    // Rolling the schemas back is checked as setting them: strict now breaks on the string.
    let (status, answer) =
        call(&api, Method::POST, "/v1/schemas/app/rollback", json!({"to_revision": typed_at}))
            .await;
    assert_eq!(status, 200, "the ratchet document rolls back: {answer}");
    assert_eq!(answer["out_of_schema"], 1);
    // Writes to the reserved namespace go through /v1/schemas only.
    let (status, _) =
        call(&api, Method::PUT, "/v1/configs/graycast.schemas/app", json!({"value": {}})).await;
    assert_eq!(status, 403);
}

trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<T> Pipe for T {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_changes_are_pushed_exported_and_imported() {
    let server = TestServer::start();
    let api = Api::new(&server);
    let mut watcher = Watcher::subscribe(&server, &["*"], None).await.unwrap();
    let _snapshot = watcher.next_data().await.unwrap();
    let schemas = json!({"schemas": {"port": {"type": "integer", "maximum": 65535}}});
    assert_eq!(call(&api, Method::PUT, "/v1/schemas/net", schemas).await.0, 200);
    let pushed = serde_json::to_value(watcher.next_data().await.unwrap()).unwrap();
    assert_eq!(
        (&pushed["op"], &pushed["namespace"], &pushed["key"]),
        (&json!("schema"), &json!("graycast.schemas"), &json!("net"))
    );
    assert_eq!(pushed["entry"]["value"]["schemas"]["port"]["maximum"], 65535);

    // Export carries the schemas; an import into another server brings them, and then
    // holds the imported values to them.
    let (_, export) = api.get("/v1/export").await.unwrap();
    let other = TestServer::start();
    let other_api = Api::new(&other);
    let (status, answer) = call(&other_api, Method::POST, "/v1/import", export).await;
    assert_eq!(status, 200, "{answer}");
    let (status, _) =
        call(&other_api, Method::PUT, "/v1/configs/net/port", json!({"value": 70000})).await;
    assert_eq!(status, 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_schemas_cost_milliseconds_and_reach_nothing() {
    let server = TestServer::start();
    let api = Api::new(&server);
    // A pattern that backtracks exponentially elsewhere: the regex engine here is linear.
    let redos = json!({"schemas": {"name": {"type": "string", "pattern": "^(a+)+$"}}});
    assert_eq!(call(&api, Method::PUT, "/v1/schemas/hostile", redos).await.0, 200);
    let started = Instant::now();
    let text = format!("{}!", "a".repeat(30));
    let (status, _) =
        call(&api, Method::PUT, "/v1/configs/hostile/name", json!({"value": text})).await;
    assert_eq!(status, 422);
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());

    // A recursive reference compiles and validates without looping.
    let tree = json!({"schemas": {"tree": {
        "$defs": {"node": {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}},
        "$ref": "#/$defs/node",
    }}});
    assert_eq!(call(&api, Method::PUT, "/v1/schemas/recursive", tree).await.0, 200);
    let deep = (0..10).fold(json!({}), |node, _| json!({"kids": [node]}));
    assert_eq!(
        call(&api, Method::PUT, "/v1/configs/recursive/tree", json!({"value": deep})).await.0,
        201
    );
    let bad = json!({"kids": [{"kids": [{"kids": 3}]}]});
    assert_eq!(
        call(&api, Method::PUT, "/v1/configs/recursive/tree", json!({"value": bad})).await.0,
        422
    );

    // A remote reference is refused, and nothing connects to where it points.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/schema.json", listener.local_addr().unwrap());
    let remote = json!({"schemas": {"k": {"$ref": url}}});
    let (status, answer) = call(&api, Method::PUT, "/v1/schemas/remote", remote).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (422, Some("invalid_value")),
        "{answer}"
    );
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the server connected to the schema's URL"
    );
    // Limits: 64 KiB and depth 32.
    let big = json!({"schemas": {"k": {"enum": vec!["x".repeat(100); 700]}}});
    assert_eq!(call(&api, Method::PUT, "/v1/schemas/big", big).await.0, 422);
    let nested = (0..40).fold(json!({"type": "integer"}), |s, _| json!({"items": s}));
    assert_eq!(
        call(&api, Method::PUT, "/v1/schemas/deep", json!({"schemas": {"k": nested}})).await.0,
        422
    );
    let _ = DEADLINE;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_reject_a_gray_value_abort_it_through_the_guard() {
    let server = TestServer::start();
    let api = Api::new(&server);
    api.put_ok("pay", "limits", json!({"max": 10})).await;
    let gray = json!({"value": {"max": "ten"}, "percent": 50, "guard": {"max_error_rate": 0.5, "min_samples": 3}});
    let (status, started) = call(&api, Method::PUT, "/v1/configs/pay/limits/gray", gray).await;
    assert_eq!(status, 200, "{started}");
    let revision = started["revision"].as_u64().unwrap();

    // Two subscribers reject the pushed gray value over the WebSocket, a third over REST
    // (as a client on server-sent events does); one client's repeat counts once.
    let nack = json!({"type": "nack", "namespace": "pay", "key": "limits", "revision": revision,
                      "error": "max: invalid type: string \"ten\", expected u32"});
    let mut watchers = Vec::new();
    for i in 0..2 {
        let mut watcher = Watcher::connect(&server).await.unwrap();
        watcher
            .send(json!({"type": "subscribe", "namespaces": ["pay"], "client": {"id": format!("app-{i}")}}))
            .await
            .unwrap();
        let _snapshot = watcher.next_data().await.unwrap();
        watcher.send(nack.clone()).await.unwrap();
        watcher.send(nack.clone()).await.unwrap();
        watchers.push(watcher);
    }
    graycast_tests::eventually("two clients listed as rejecting", || async {
        let (_, list) = api.get("/v1/clients").await.unwrap();
        list["rejections"][0]["clients"] == 2 && list["rejections"][0]["revision"] == revision
    })
    .await;
    let (status, _) = call(&api, Method::GET, "/v1/configs/pay/limits", Value::Null).await;
    assert_eq!(status, 200);
    let mut rest = nack.clone();
    rest.as_object_mut().unwrap().remove("type");
    rest["client"] = json!("sse-app");
    let (status, answer) = call(&api, Method::POST, "/v1/nacks", rest).await;
    assert_eq!(status, 204, "{answer}");

    // Three errors of three samples: the guard aborts the release.
    graycast_tests::eventually("the guard aborts the release", || async {
        let (_, entry) = api.get("/v1/configs/pay/limits").await.unwrap();
        entry["gray"].is_null()
    })
    .await;
    let (_, history) = api.get("/v1/configs/pay/limits/history").await.unwrap();
    assert_eq!(history["items"][0]["op"], "abort", "{history}");
    let (_, list) = api.get("/v1/clients").await.unwrap();
    assert_eq!(list["rejections"][0]["clients"], 3, "{list}");
    assert!(list["rejections"][0]["error"].as_str().unwrap().contains("expected u32"));

    // A nack without a subscription, or with an oversized reason, is refused.
    let mut lone = Watcher::connect(&server).await.unwrap();
    lone.send(nack.clone()).await.unwrap();
    assert!(lone.expect_close().await.is_ok());
    let mut long = nack.clone();
    long.as_object_mut().unwrap().remove("type");
    long["client"] = json!("x");
    long["error"] = json!("e".repeat(2000));
    assert_eq!(call(&api, Method::POST, "/v1/nacks", long).await.0, 422);
    drop(watchers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_sdk_says_when_a_typed_read_fails_on_a_pushed_value() {
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Limits {
        max: u32,
    }
    let server = TestServer::start();
    let api = Api::new(&server);
    let revision = api.put_ok("pay", "limits", json!({"max": "ten"})).await;
    let client = graycast_client::Client::builder()
        .endpoint(&server.url)
        .namespace("pay")
        .client_id("checkout-1")
        .build()
        .unwrap();
    client.wait_synced(DEADLINE).await.unwrap();
    assert!(client.get::<Limits>("pay", "limits").is_err());
    assert!(client.get::<Limits>("pay", "limits").is_err(), "a second failed read nacks no more");
    graycast_tests::eventually("the server lists the rejection", || async {
        let (_, list) = api.get("/v1/clients").await.unwrap();
        list["rejections"]
            == json!([{"namespace": "pay", "key": "limits", "revision": revision,
            "clients": 1, "error": list["rejections"][0]["error"]}])
            && list["rejections"][0]["error"].as_str().is_some_and(|e| e.contains("invalid type"))
    })
    .await;
}
