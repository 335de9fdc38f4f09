//! REST API end to end: every route, conditional writes, and every bad input.

use graycast_tests::{Api, TestServer};
use serde_json::{json, Value};

/// The store's revision, to check that a refused request changed nothing.
async fn revision(api: &Api) -> u64 {
    let (status, body) = api.get("/v1/namespaces").await.expect("namespaces");
    assert_eq!(status, 200);
    body["revision"].as_u64().expect("revision")
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_history_and_rollback() {
    let server = TestServer::start();
    let api = Api::new(&server);

    let (status, created) = api.put("payments", "timeout_ms", json!(250)).await.unwrap();
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["value"], json!(250));
    assert_eq!(created["version"], json!(1));
    assert_eq!(created["created_revision"], created["revision"]);
    assert_eq!(created["updated_by"], json!("anonymous"));
    assert_eq!(created["gray"], Value::Null);
    let first = created["revision"].as_u64().unwrap();

    let (status, updated) =
        api.put("payments", "timeout_ms", json!({"a": [1, null, "x"]})).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(updated["version"], json!(2));
    assert_eq!(updated["created_revision"], json!(first));
    let second = updated["revision"].as_u64().unwrap();
    assert!(second > first);

    // Read back, with the ETag.
    let response =
        api.http.get(format!("{}/v1/configs/payments/timeout_ms", api.url)).send().await.unwrap();
    assert_eq!(response.headers()["etag"], format!("\"{second}\"").as_str());
    let got: Value = response.json().await.unwrap();
    assert_eq!(got, updated);
    // A conditional GET with the current tag is answered 304.
    let response = api
        .http
        .get(format!("{}/v1/configs/payments/timeout_ms", api.url))
        .header("If-None-Match", format!("\"{second}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 304);

    api.put_ok("payments", "retries", json!(3)).await;
    api.put_ok("search", "boost", json!(null)).await;
    let (_, namespaces) = api.get("/v1/namespaces").await.unwrap();
    assert_eq!(
        namespaces["namespaces"],
        json!([{"name": "payments", "keys": 2}, {"name": "search", "keys": 1}])
    );
    let (_, list) = api.get("/v1/configs/payments").await.unwrap();
    let keys: Vec<&str> =
        list["entries"].as_array().unwrap().iter().map(|e| e["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["retries", "timeout_ms"]);
    assert_eq!(list["revision"], namespaces["revision"]);
    let (status, empty) = api.get("/v1/configs/nothing-here").await.unwrap();
    assert_eq!((status, empty["entries"].clone()), (200, json!([])));

    // Rollback to the first value is a new revision with that value.
    let response = api
        .http
        .post(format!("{}/v1/configs/payments/timeout_ms/rollback", api.url))
        .json(&json!({"to_revision": first}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let rolled: Value = response.json().await.unwrap();
    assert_eq!(rolled["value"], json!(250));
    assert_eq!(rolled["version"], json!(3));
    let third = rolled["revision"].as_u64().unwrap();

    let (status, deleted) = api.delete("payments", "timeout_ms").await.unwrap();
    assert_eq!(status, 200);
    let fourth = deleted["revision"].as_u64().unwrap();
    assert!(fourth > third);
    assert_eq!(api.get("/v1/configs/payments/timeout_ms").await.unwrap().0, 404);
    assert_eq!(code(&api.delete("payments", "timeout_ms").await.unwrap().1), "not_found");

    let (status, history) = api.get("/v1/configs/payments/timeout_ms/history").await.unwrap();
    assert_eq!(status, 200);
    let items = history["items"].as_array().unwrap();
    let ops: Vec<(&str, u64)> = items
        .iter()
        .map(|i| (i["op"].as_str().unwrap(), i["revision"].as_u64().unwrap()))
        .collect();
    assert_eq!(ops, [("delete", fourth), ("rollback", third), ("put", second), ("put", first)]);
    assert_eq!(items[0]["value"], Value::Null);
    assert_eq!(items[1]["value"], json!(250));
    assert_eq!(items[2]["value"], json!({"a": [1, null, "x"]}));

    // Paging with limit and before.
    let (_, page) = api
        .get(&format!("/v1/configs/payments/timeout_ms/history?limit=2&before={third}"))
        .await
        .unwrap();
    let revs: Vec<u64> =
        page["items"].as_array().unwrap().iter().map(|i| i["revision"].as_u64().unwrap()).collect();
    assert_eq!(revs, [second, first]);

    // A deleted key comes back by rollback, recreated.
    let response = api
        .http
        .post(format!("{}/v1/configs/payments/timeout_ms/rollback", api.url))
        .json(&json!({"to_revision": second}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let back: Value = response.json().await.unwrap();
    assert_eq!(back["value"], json!({"a": [1, null, "x"]}));
    assert_eq!(back["version"], json!(1));
    assert_eq!(back["created_revision"], back["revision"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_writes() {
    let server = TestServer::start();
    let api = Api::new(&server);
    let rev = api.put_ok("ns", "k", json!(1)).await;
    let url = format!("{}/v1/configs/ns/k", api.url);

    // A matching If-Match writes.
    let response = api
        .http
        .put(&url)
        .header("If-Match", format!("\"{rev}\""))
        .json(&json!({"value": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut rev2 = response.json::<Value>().await.unwrap()["revision"].as_u64().unwrap();

    // A stale one is refused and changes nothing.
    let before = revision(&api).await;
    let response = api
        .http
        .put(&url)
        .header("If-Match", format!("\"{rev}\""))
        .json(&json!({"value": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 412);
    assert_eq!(code(&response.json().await.unwrap()), "revision_mismatch");
    let response =
        api.http.delete(&url).header("If-Match", format!("\"{rev}\"")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 412);
    assert_eq!(revision(&api).await, before);
    assert_eq!(api.get("/v1/configs/ns/k").await.unwrap().1["value"], json!(2));

    // Create-only refuses an existing key and creates a missing one.
    let response = api
        .http
        .put(&url)
        .header("If-None-Match", "*")
        .json(&json!({"value": 9}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 412);
    let response = api
        .http
        .put(format!("{}/v1/configs/ns/fresh", api.url))
        .header("If-None-Match", "*")
        .json(&json!({"value": 9}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);

    // If-Match on a missing key fails the precondition.
    let response = api
        .http
        .put(format!("{}/v1/configs/ns/missing", api.url))
        .header("If-Match", "\"1\"")
        .json(&json!({"value": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 412);
    assert_eq!(api.get("/v1/configs/ns/missing").await.unwrap().0, 404);

    // A garbled precondition is a bad request; a well-formed tag that names no revision
    // matches nothing (RFC 9110), so the write does not happen.
    for (tag, status) in [("last week", 400), ("\"yesterday\"", 412), ("yesterday", 412)] {
        let response = api
            .http
            .put(&url)
            .header("If-Match", tag)
            .json(&json!({"value": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{tag}");
    }
    // Lists of tags, and both headers, are evaluated as HTTP does.
    let conditional = |if_match: Option<String>, if_none_match: Option<String>| {
        let mut request = api.http.put(&url).json(&json!({"value": 3}));
        if let Some(tags) = if_match {
            request = request.header("If-Match", tags);
        }
        if let Some(tags) = if_none_match {
            request = request.header("If-None-Match", tags);
        }
        request.send()
    };
    let response = conditional(Some(format!("\"1\", W/\"{rev2}\"")), None).await.unwrap();
    assert_eq!(response.status().as_u16(), 200, "one tag of the list matches");
    rev2 = response.json::<Value>().await.unwrap()["revision"].as_u64().unwrap();
    let response = conditional(None, Some(format!("\"{rev2}\""))).await.unwrap();
    assert_eq!(response.status().as_u16(), 412, "If-None-Match names the current revision");
    let response = conditional(Some("*".into()), Some("*".into())).await.unwrap();
    assert_eq!(response.status().as_u16(), 412, "both * can never hold");

    // Deleting at the right revision works.
    let response =
        api.http.delete(&url).header("If-Match", format!("\"{rev2}\"")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_its_error_and_changes_nothing() {
    let server = TestServer::start();
    let api = Api::new(&server);
    api.put_ok("ns", "k", json!("keep")).await;
    let before = revision(&api).await;
    let put_raw = |path: &str, body: Vec<u8>| {
        api.http
            .put(format!("{}{path}", api.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("/v1/configs/ns/k", b"{\"value\": ".to_vec(), 400, "invalid_json"),
        ("/v1/configs/ns/k", b"not json".to_vec(), 400, "invalid_json"),
        ("/v1/configs/ns/k", b"".to_vec(), 400, "invalid_json"),
        ("/v1/configs/ns/k", b"{}".to_vec(), 400, "invalid_json"),
        ("/v1/configs/ns/k", b"{\"value\": 1, \"extra\": 2}".to_vec(), 400, "invalid_json"),
        ("/v1/configs/ns/k", b"[1]".to_vec(), 400, "invalid_json"),
        ("/v1/configs/bad%20ns/k", b"{\"value\": 1}".to_vec(), 400, "invalid_name"),
        ("/v1/configs/ns/-k", b"{\"value\": 1}".to_vec(), 400, "invalid_name"),
        ("/v1/configs/ns/caf%C3%A9", b"{\"value\": 1}".to_vec(), 400, "invalid_name"),
        (
            &*Box::leak(format!("/v1/configs/ns/{}", "k".repeat(129)).into_boxed_str()),
            b"{\"value\": 1}".to_vec(),
            400,
            "invalid_name",
        ),
        (
            "/v1/configs/ns/k",
            format!("{{\"value\": \"{}\"}}", "x".repeat(1024 * 1024)).into_bytes(),
            413,
            "payload_too_large",
        ),
        (
            "/v1/configs/ns/k",
            format!("{{\"value\": {}1{}}}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
            422,
            "invalid_value",
        ),
    ];
    for (path, body, status, expected) in cases {
        let response = put_raw(path, body).await.expect("answered");
        let got = response.status().as_u16();
        let body: Value = response.json().await.expect("a JSON error body");
        assert_eq!((got, code(&body)), (status, expected), "PUT {path}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // A body far over the limit (12 MiB: four times the value limit, plus room for a gray
    // release's subject lists) is refused without being read.
    let huge = vec![b' '; 16 * 1024 * 1024];
    let response = put_raw("/v1/configs/ns/k", huge).await.expect("answered");
    assert_eq!(response.status().as_u16(), 413);

    // Reads and other routes.
    let (status, body) = api.get("/v1/configs/ns/k/history?limit=0").await.unwrap();
    assert_eq!((status, code(&body)), (400, "bad_request"));
    let (status, body) = api.get("/v1/configs/ns/k/history?limit=abc").await.unwrap();
    assert_eq!((status, code(&body)), (400, "bad_request"));
    let (status, body) = api.get("/v1/configs/ns/nope/history").await.unwrap();
    assert_eq!((status, code(&body)), (404, "not_found"));
    let (status, body) = api.get("/v1/configs/n%2Fs").await.unwrap();
    assert_eq!((status, code(&body)), (400, "invalid_name"));
    let (status, body) = api.get("/v1/no/such/route").await.unwrap();
    assert_eq!((status, code(&body)), (404, "not_found"));

    let rollback = |to: Value| {
        api.http
            .post(format!("{}/v1/configs/ns/k/rollback", api.url))
            .json(&json!({"to_revision": to}))
            .send()
    };
    let response = rollback(json!(9999)).await.unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let response = rollback(json!("one")).await.unwrap();
    assert_eq!(response.status().as_u16(), 400);

    // Rolling back to a delete has no value to restore.
    let rev = api.put_ok("ns", "gone", json!(1)).await;
    let (_, deleted) = api.delete("ns", "gone").await.unwrap();
    let del = deleted["revision"].as_u64().unwrap();
    let before_rollback = revision(&api).await;
    let response = api
        .http
        .post(format!("{}/v1/configs/ns/gone/rollback", api.url))
        .json(&json!({"to_revision": del}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);
    assert_eq!(code(&response.json().await.unwrap()), "invalid_value");
    assert_eq!(revision(&api).await, before_rollback);
    assert!(rev < del);

    // Nothing above changed the key, and the server is still up.
    assert_eq!(before + 2, revision(&api).await);
    assert_eq!(api.get("/v1/configs/ns/k").await.unwrap().1["value"], json!("keep"));
    assert_eq!(api.get("/healthz").await.unwrap().0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn value_limit_is_configurable_and_exact() {
    let server = TestServer::start_with(&["--max-value-bytes", "100"]);
    let api = Api::new(&server);
    // "x" * 98 serializes to exactly 100 bytes with its quotes.
    assert_eq!(api.put("ns", "k", json!("x".repeat(98))).await.unwrap().0, 201);
    let (status, body) = api.put("ns", "k", json!("x".repeat(99))).await.unwrap();
    assert_eq!((status, code(&body)), (413, "payload_too_large"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_endpoints() {
    let server = TestServer::start();
    let api = Api::new(&server);
    api.put_ok("ns", "k", json!(1)).await;
    assert_eq!(api.get("/healthz").await.unwrap().0, 200);
    let (status, ready) = api.get("/readyz").await.unwrap();
    assert_eq!((status, ready["revision"].as_u64()), (200, Some(1)));

    let metrics =
        api.http.get(format!("{}/metrics", api.url)).send().await.unwrap().text().await.unwrap();
    for name in [
        "graycast_writes_total 1",
        "graycast_commit_batch_size_count 1",
        "graycast_subscribers 0",
        "graycast_pushed_messages_total",
        "graycast_snapshots_total{cause=\"lag\"} 0",
        "graycast_write_duration_seconds_count 1",
        "graycast_revision 1",
    ] {
        assert!(metrics.contains(name), "metrics lack {name:?}:\n{metrics}");
    }

    let (status, doc) = api.get("/openapi.json").await.unwrap();
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/namespaces",
        "/v1/configs/{ns}",
        "/v1/configs/{ns}/{key}",
        "/v1/configs/{ns}/{key}/history",
        "/v1/configs/{ns}/{key}/rollback",
        "/v1/clients",
        "/v1/watch",
    ] {
        assert!(doc["paths"].get(path).is_some(), "openapi lacks {path}");
    }
    assert!(doc["components"]["schemas"].get("Entry").is_some());
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], json!("bearer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_serves_the_same_api() {
    let server = TestServer::start_with(&["--store", "memory"]);
    let api = Api::new(&server);
    let rev = api.put_ok("ns", "k", json!(1)).await;
    assert_eq!(rev, 1);
    let (_, history) = api.get("/v1/configs/ns/k/history").await.unwrap();
    assert_eq!(history["items"].as_array().map(Vec::len), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_at_the_root_with_no_external_resources() {
    let server = TestServer::start();
    let api = Api::new(&server);
    for (path, content_type) in [
        ("/", "text/html"),
        ("/js/main.js", "text/javascript"),
        ("/sdk/graycast.js", "text/javascript"),
        ("/sdk/graycast.min.js", "text/javascript"),
        ("/style.css", "text/css"),
    ] {
        let response = api.http.get(format!("{}{path}", api.url)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let header = response.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(header.starts_with(content_type), "{path}: {header}");
        let body = response.text().await.unwrap();
        for external in [
            "src=\"http",
            "href=\"http",
            "src='http",
            "href='http",
            "url(http",
            "url(\"http",
            "import \"http",
            "from \"http",
            "from 'http",
        ] {
            assert!(
                !body.contains(external),
                "{path} loads something from another site: {external}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_are_described_and_the_reserved_namespace_is_written_only_so() {
    let server = TestServer::start();
    let api = Api::new(&server);
    api.put_ok("payments", "timeout_ms", json!(250)).await;
    let describe = |ns: &str, body: Value| {
        let path = format!("/v1/namespaces/{ns}");
        let api = &api;
        async move { api.request(reqwest::Method::PUT, &path, None, Some(body)).await }
    };
    let (status, body) =
        describe("payments", json!({"description": "  Payment knobs ", "comment": "who owns it"}))
            .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["description"], "Payment knobs");
    // A namespace may be described before it has keys: it is listed with none.
    assert_eq!(describe("search", json!({"description": "Ranking"})).await.0, 200);
    let (_, list) = api.get("/v1/namespaces").await.unwrap();
    assert_eq!(
        list["namespaces"],
        json!([{"name": "payments", "keys": 1, "description": "Payment knobs"},
               {"name": "search", "keys": 0, "description": "Ranking"}])
    );

    // Refusals change nothing.
    let before = revision(&api).await;
    let (status, body) = describe("payments", json!({"description": "x".repeat(1025)})).await;
    assert_eq!((status, code(&body)), (422, "invalid_value"));
    let (status, body) = describe("pay ments", json!({"description": "x"})).await;
    assert_eq!((status, code(&body)), (400, "invalid_name"));
    let (status, body) = describe("payments", json!({"text": "x"})).await;
    assert_eq!((status, code(&body)), (400, "invalid_json"));
    let (status, body) = describe("graycast.meta", json!({"description": "x"})).await;
    assert_eq!((status, code(&body)), (403, "forbidden"));
    let (status, body) =
        api.put("graycast.meta", "payments", json!({"description": "x"})).await.unwrap();
    assert_eq!((status, code(&body)), (403, "forbidden"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("PUT /v1/namespaces/"));
    let (status, _) = api.delete("graycast.meta", "payments").await.unwrap();
    assert_eq!(status, 403);
    assert_eq!(revision(&api).await, before);

    // An empty description removes it, and a namespace with neither keys nor description
    // is gone; removing it again changes nothing.
    assert_eq!(describe("search", json!({"description": ""})).await.1["description"], Value::Null);
    let after = revision(&api).await;
    assert_eq!(describe("search", json!({"description": ""})).await.1["revision"], after);
    let (_, list) = api.get("/v1/namespaces").await.unwrap();
    assert_eq!(list["namespaces"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_feed_pages_in_revision_order_with_filters() {
    let server = TestServer::start();
    let api = Api::new(&server);
    for i in 0..5 {
        let ns = if i % 2 == 0 { "payments" } else { "search" };
        let (status, _) = api
            .request(
                reqwest::Method::PUT,
                &format!("/v1/configs/{ns}/k{i}"),
                None,
                Some(json!({"value": i, "comment": format!("step {i}")})),
            )
            .await;
        assert_eq!(status, 201);
    }
    api.delete("search", "k1").await.unwrap();

    let (status, page) = api.get("/v1/changes?since=0&limit=2").await.unwrap();
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["revision"], 1);
    assert_eq!(items[0]["op"], "put");
    assert_eq!(items[0]["namespace"], "payments");
    assert_eq!(items[0]["key"], "k0");
    assert_eq!(items[0]["updated_by"], "anonymous");
    assert_eq!(items[0]["comment"], "step 0");
    assert!(items[0]["remote"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(items[0]["updated_at"].is_string());
    assert_eq!(page["next"], 2);
    let (_, rest) = api.get("/v1/changes?since=2&limit=1000").await.unwrap();
    let revisions: Vec<u64> =
        rest["items"].as_array().unwrap().iter().map(|i| i["revision"].as_u64().unwrap()).collect();
    assert_eq!(revisions, [3, 4, 5, 6]);
    assert_eq!(rest["next"], Value::Null);
    assert_eq!(rest["items"][3]["op"], "delete");

    // Filters, and the recent changes when `since` is left out.
    let (_, search) = api.get("/v1/changes?namespace=search&since=0").await.unwrap();
    let keys: Vec<&str> =
        search["items"].as_array().unwrap().iter().map(|i| i["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["k1", "k3", "k1"]);
    let (_, one) = api.get("/v1/changes?namespace=search&key=k3&since=0").await.unwrap();
    assert_eq!(one["items"].as_array().unwrap().len(), 1);
    let (_, recent) = api.get("/v1/changes?limit=2").await.unwrap();
    let revisions: Vec<u64> = recent["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(revisions, [5, 6]);

    for bad in [
        "/v1/changes?limit=0",
        "/v1/changes?limit=1001",
        "/v1/changes?since=-1",
        "/v1/changes?namespace=bad%20name",
        "/v1/changes?colour=red",
    ] {
        let (status, body) = api.get(bad).await.unwrap();
        assert_eq!(status, 400, "{bad}: {body}");
    }
}

/// The announcement scripts wait for comes only once the store is open: a second server
/// on a data dir in use never announces, and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_announces_itself_only_once_its_store_is_open() {
    let server = TestServer::start();
    let output = std::process::Command::new(graycast_tests::server_binary())
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(server.data_dir().join("data"))
        .env("GRAYCAST_LOG", "info")
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let (stdout, stderr) =
        (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!stdout.contains("listening"), "announced: {stdout}");
    assert!(stderr.contains("in use by another graycast process"), "{stderr}");
    // Logs going to a file or pipe carry no colour codes.
    assert!(!stderr.contains('\u{1b}'), "ANSI escape in {stderr:?}");
    assert!(!server.log_text().contains('\u{1b}'), "ANSI escape in the log");
}
