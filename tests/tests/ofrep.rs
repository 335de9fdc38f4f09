//! OFREP (SPEC §9): evaluations, errors, bulk answers with their ETag and event stream,
//! tokens, CORS; and the published OpenFeature providers (npm and PyPI) evaluating against
//! a live server, answer for answer what `/v1/release` says.

use std::path::Path;
use std::process::{Command, Stdio};

use futures_util::StreamExt;
use graycast_tests::{token_file, Api, TestServer, DEADLINE};
use reqwest::Method;
use serde_json::{json, Value};

const JSON: (&str, &str) = ("content-type", "application/json");

async fn post(
    api: &Api,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut all = vec![JSON];
    all.extend_from_slice(headers);
    api.raw(Method::POST, path, &all, Some(body)).await
}

async fn start_gray(api: &Api, ns: &str, key: &str, release: Value) {
    let (status, body) = api
        .request(Method::PUT, &format!("/v1/configs/{ns}/{key}/gray"), None, Some(release))
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn single_evaluations_answer_values_reasons_and_errors() {
    let server = TestServer::start();
    let api = Api::new(&server);
    let revision = api.put_ok("app", "limit", json!(250)).await;
    api.put_ok("app", "list", json!([1, 2])).await;
    api.put_ok("app", "theme", json!("light")).await;
    start_gray(&api, "app", "theme", json!({"value": "dark", "percent": 0, "allow": ["u1"]})).await;

    let (status, _, body) =
        post(&api, "/ofrep/v1/evaluate/flags/app/limit", &[], r#"{"context": {}}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"key": "app/limit", "value": 250, "reason": "STATIC", "variant": "stable",
               "metadata": {"namespace": "app", "revision": revision}})
    );
    // `%2F`, and a namespace base URL with plain keys.
    let (status, _, escaped) =
        post(&api, "/ofrep/v1/evaluate/flags/app%2Flimit", &[], r#"{"context": {}}"#).await;
    assert_eq!((status, escaped["value"].clone()), (200, json!(250)));
    let (status, _, based) =
        post(&api, "/ns/app/ofrep/v1/evaluate/flags/limit", &[], r#"{"context": {}}"#).await;
    assert_eq!(
        (status, based["key"].clone(), based["value"].clone()),
        (200, json!("limit"), json!(250))
    );

    // A gray release: the allow list, the percent bucket, and no subject at all.
    let ctx =
        |subject: &str| format!(r#"{{"context": {{"targetingKey": "{subject}", "plan": "pro"}}}}"#);
    let (_, _, allowed) = post(&api, "/ofrep/v1/evaluate/flags/app/theme", &[], &ctx("u1")).await;
    assert_eq!(
        (allowed["value"].clone(), allowed["variant"].clone(), allowed["reason"].clone()),
        (json!("dark"), json!("gray"), json!("TARGETING_MATCH"))
    );
    let (_, _, split) = post(&api, "/ofrep/v1/evaluate/flags/app/theme", &[], &ctx("u2")).await;
    assert_eq!((split["value"].clone(), split["reason"].clone()), (json!("light"), json!("SPLIT")));
    assert!(split["metadata"]["bucket"].is_u64(), "{split}");
    let expect_error =
        |status: u16, code: &str, key: &str, answer: (u16, reqwest::header::HeaderMap, Value)| {
            assert_eq!(answer.0, status, "{}", answer.2);
            assert_eq!(answer.2["errorCode"], json!(code), "{}", answer.2);
            assert_eq!(answer.2["key"], json!(key), "{}", answer.2);
            assert!(answer.2["errorDetails"].is_string(), "{}", answer.2);
        };
    expect_error(
        400,
        "TARGETING_KEY_MISSING",
        "app/theme",
        post(&api, "/ofrep/v1/evaluate/flags/app/theme", &[], r#"{"context": {}}"#).await,
    );
    expect_error(
        400,
        "TYPE_MISMATCH",
        "app/list",
        post(&api, "/ofrep/v1/evaluate/flags/app/list", &[], r#"{"context": {}}"#).await,
    );
    expect_error(
        404,
        "FLAG_NOT_FOUND",
        "app/none",
        post(&api, "/ofrep/v1/evaluate/flags/app/none", &[], r#"{"context": {}}"#).await,
    );
    expect_error(
        404,
        "FLAG_NOT_FOUND",
        "limit",
        post(&api, "/ofrep/v1/evaluate/flags/limit", &[], r#"{"context": {}}"#).await,
    );
    expect_error(
        400,
        "PARSE_ERROR",
        "app/limit",
        post(&api, "/ofrep/v1/evaluate/flags/app/limit", &[], "{not json").await,
    );
    let deep = format!(r#"{{"context": {{"a": {}1{}}}}}"#, "[".repeat(70), "]".repeat(70));
    expect_error(
        400,
        "INVALID_CONTEXT",
        "app/limit",
        post(&api, "/ofrep/v1/evaluate/flags/app/limit", &[], &deep).await,
    );
    let wide: serde_json::Map<String, Value> =
        (0..1001).map(|i| (format!("f{i}"), json!(i))).collect();
    let wide = json!({"context": wide}).to_string();
    expect_error(
        400,
        "INVALID_CONTEXT",
        "app/limit",
        post(&api, "/ofrep/v1/evaluate/flags/app/limit", &[], &wide).await,
    );
    expect_error(
        400,
        "INVALID_CONTEXT",
        "app/limit",
        post(
            &api,
            "/ofrep/v1/evaluate/flags/app/limit",
            &[],
            r#"{"context": {"targetingKey": 5}}"#,
        )
        .await,
    );
    let big = format!(r#"{{"context": {{"pad": "{}"}}}}"#, "x".repeat(70 * 1024));
    let (status, _, _) = post(&api, "/ofrep/v1/evaluate/flags/app/limit", &[], &big).await;
    assert_eq!(status, 413);

    let metrics =
        reqwest::get(format!("{}/metrics", server.url)).await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(
            "graycast_ofrep_evaluations_total{endpoint=\"single\",reason=\"STATIC\",error=\"\"}"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("error=\"TARGETING_KEY_MISSING\""), "{metrics}");
}

#[tokio::test]
async fn bulk_answers_carry_an_etag_that_follows_every_change() {
    let server = TestServer::start();
    let api = Api::new(&server);
    api.put_ok("app", "limit", json!(250)).await;
    api.put_ok("web", "color", json!("blue")).await;
    let bulk = |context: &'static str, headers: Vec<(&'static str, String)>| {
        let api = &api;
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            post(api, "/ofrep/v1/evaluate/flags", &headers, context).await
        }
    };
    let (status, headers, body) = bulk(r#"{"context": {"targetingKey": "u1"}}"#, vec![]).await;
    assert_eq!(status, 200, "{body}");
    let keys: Vec<&str> =
        body["flags"].as_array().unwrap().iter().map(|f| f["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["app/limit", "web/color"]);
    assert_eq!(body["eventStreams"][0]["type"], "sse");
    let revision = body["metadata"]["revision"].as_u64().unwrap();
    assert_eq!(
        body["eventStreams"][0]["endpoint"]["requestUri"],
        format!("/ofrep/v1/events?since={revision}")
    );
    let etag = headers["etag"].to_str().unwrap().to_owned();

    let (status, again, _) =
        bulk(r#"{"context": {"targetingKey": "u1"}}"#, vec![("if-none-match", etag.clone())]).await;
    assert_eq!((status, again["etag"].to_str().unwrap()), (304, etag.as_str()));
    api.put_ok("web", "color", json!("green")).await;
    let (status, changed, _) =
        bulk(r#"{"context": {"targetingKey": "u1"}}"#, vec![("if-none-match", etag.clone())]).await;
    assert_eq!(status, 200);
    assert_ne!(changed["etag"], etag.as_str(), "a write in scope changes the ETag");

    // Under a namespace base: its keys only, plain, and the stream under the base.
    let (status, _, based) =
        post(&api, "/ns/app/ofrep/v1/evaluate/flags", &[], r#"{"context": {}}"#).await;
    assert_eq!(status, 200);
    assert_eq!(
        based["flags"],
        json!([{"key": "limit", "value": 250, "reason": "STATIC", "variant": "stable",
        "metadata": {"namespace": "app", "revision": based["flags"][0]["metadata"]["revision"]}}])
    );
    assert!(based["eventStreams"][0]["endpoint"]["requestUri"]
        .as_str()
        .unwrap()
        .starts_with("/ns/app/ofrep/v1/events?since="));
    let (status, _, failed) = post(&api, "/ofrep/v1/evaluate/flags", &[], "[]").await;
    assert_eq!((status, failed["errorCode"].clone()), (400, json!("PARSE_ERROR")));
}

/// Reads server-sent events until one whose data has `refetchEvaluation`.
async fn next_refetch(
    body: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buf: &mut String,
) -> (u64, Value) {
    loop {
        if let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let id =
                block.lines().find_map(|l| l.strip_prefix("id: ")).map(|v| v.parse().expect("id"));
            let data = block.lines().find_map(|l| l.strip_prefix("data: "));
            if let (Some(id), Some(data)) = (id, data) {
                assert!(block.contains("event: message\n"), "{block}");
                return (id, serde_json::from_str(data).expect("JSON data"));
            }
            continue;
        }
        let chunk = tokio::time::timeout(DEADLINE, body.next()).await.expect("an event in time");
        buf.push_str(std::str::from_utf8(&chunk.expect("open").expect("reads")).expect("UTF-8"));
    }
}

#[tokio::test]
async fn the_event_stream_tells_of_each_commit_in_scope_with_a_ticket_not_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = token_file(
        dir.path(),
        &[("admin", "s-admin", "admin", &["*"]), ("app-reader", "s-app", "read", &["app"])],
    );
    let server = TestServer::start_with(&["--tokens", tokens.to_str().unwrap()]);
    let api = Api::new(&server);
    let admin = ("authorization", "Bearer s-admin");
    let (status, _, _) =
        api.raw(Method::PUT, "/v1/configs/app/k", &[JSON, admin], Some(r#"{"value": 1}"#)).await;
    assert_eq!(status, 201);
    api.raw(Method::PUT, "/v1/configs/other/k", &[JSON, admin], Some(r#"{"value": 1}"#)).await;

    // Tokens: none is 401; X-API-Key works; another namespace is 403, or absent in bulk.
    let (status, _, _) =
        post(&api, "/ofrep/v1/evaluate/flags/app/k", &[], r#"{"context": {}}"#).await;
    assert_eq!(status, 401);
    let (status, _, _) = post(
        &api,
        "/ofrep/v1/evaluate/flags/app/k",
        &[("x-api-key", "s-app")],
        r#"{"context": {}}"#,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = post(
        &api,
        "/ofrep/v1/evaluate/flags/other/k",
        &[("x-api-key", "s-app")],
        r#"{"context": {}}"#,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, bulk) = post(
        &api,
        "/ofrep/v1/evaluate/flags",
        &[("authorization", "Bearer s-app")],
        r#"{"context": {}}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(bulk["flags"].as_array().map(Vec::len), Some(1), "{bulk}");
    let uri = bulk["eventStreams"][0]["endpoint"]["requestUri"].as_str().unwrap().to_owned();
    assert!(uri.starts_with("/ofrep/v1/events?since=") && uri.contains("&ticket="), "{uri}");
    assert!(!uri.contains("s-app"), "{uri}");

    let (status, _, _) = api.raw(Method::GET, "/ofrep/v1/events", &[], None).await;
    assert_eq!(status, 401, "no ticket, no token");
    let (status, _, _) = api.raw(Method::GET, "/ofrep/v1/events?ticket=1.2.3", &[], None).await;
    assert_eq!(status, 401, "a forged ticket");
    // A change after the answer and before the stream connects is told at once.
    let (_, _, early) =
        api.raw(Method::PUT, "/v1/configs/app/k", &[JSON, admin], Some(r#"{"value": 5}"#)).await;
    let early = early["revision"].as_u64().unwrap();
    let response = reqwest::get(format!("{}{uri}", server.url)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.bytes_stream();
    let mut buf = String::new();
    let (id, _) = next_refetch(&mut body, &mut buf).await;
    assert_eq!(id, early, "the change made before the stream connected");
    // A change out of scope says nothing; one in scope is told with its revision.
    api.raw(Method::PUT, "/v1/configs/other/k", &[JSON, admin], Some(r#"{"value": 2}"#)).await;
    let (_, _, written) =
        api.raw(Method::PUT, "/v1/configs/app/k", &[JSON, admin], Some(r#"{"value": 2}"#)).await;
    let revision = written["revision"].as_u64().unwrap();
    let (id, data) = next_refetch(&mut body, &mut buf).await;
    assert_eq!(
        (id, data),
        (revision, json!({"type": "refetchEvaluation", "lastModified": revision}))
    );
}

#[tokio::test]
async fn allowed_origins_get_cors_answers_and_others_do_not() {
    let server = TestServer::start_with(&["--allowed-origins", "http://app.example"]);
    let api = &Api::new(&server);
    api.put_ok("app", "k", json!(1)).await;
    let preflight = |origin: &'static str| async move {
        let headers = [
            ("origin", origin),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type, if-none-match"),
        ];
        api.raw(Method::OPTIONS, "/ofrep/v1/evaluate/flags", &headers, None).await
    };
    let (status, headers, _) = preflight("http://app.example").await;
    assert_eq!(status, 204);
    assert_eq!(headers["access-control-allow-origin"], "http://app.example");
    assert!(headers["access-control-allow-headers"].to_str().unwrap().contains("If-None-Match"));
    let (_, headers, _) = post(
        api,
        "/ofrep/v1/evaluate/flags",
        &[("origin", "http://app.example")],
        r#"{"context": {}}"#,
    )
    .await;
    assert_eq!(headers["access-control-allow-origin"], "http://app.example");
    assert!(headers["access-control-expose-headers"].to_str().unwrap().contains("ETag"));
    // The SDKs' own paths too: a report with its Idempotency-Key, the event stream.
    let headers = [
        ("origin", "http://app.example"),
        ("access-control-request-method", "POST"),
        ("access-control-request-headers", "content-type, idempotency-key"),
    ];
    let (status, answer, _) =
        api.raw(Method::OPTIONS, "/v1/configs/app/k/gray/report", &headers, None).await;
    assert_eq!(status, 204);
    assert!(answer["access-control-allow-headers"].to_str().unwrap().contains("Idempotency-Key"));
    let stream = reqwest::Client::new()
        .get(format!("{}/v1/events?namespaces=app", server.url))
        .header("origin", "http://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.headers()["access-control-allow-origin"], "http://app.example");
    drop(stream);
    let (_, headers, _) = preflight("http://evil.example").await;
    assert!(!headers.contains_key("access-control-allow-origin"));
    let (status, _, _) = post(
        api,
        "/ofrep/v1/evaluate/flags",
        &[("origin", "http://evil.example")],
        r#"{"context": {}}"#,
    )
    .await;
    assert_eq!(status, 403);
}

/// Runs a provider script over evaluation cases; one JSON answer per case.
fn run_provider(program: &str, script: &Path, base: &str, cases: &[Value]) -> Vec<Value> {
    let input: String = cases.iter().map(|c| format!("{c}\n")).collect();
    let mut child = Command::new(program)
        .arg(script)
        .env("BASE", base)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{program}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_openfeature_providers_evaluate_as_the_server_does() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("ofrep");
    assert!(
        dir.join("node_modules/@openfeature/ofrep-provider").is_dir(),
        "npm packages missing: (cd tests/ofrep && npm ci); scripts/test.sh installs them"
    );
    let server = TestServer::start();
    let api = Api::new(&server);
    api.put_ok("shop", "checkout", json!("v1")).await;
    start_gray(
        &api,
        "shop",
        "checkout",
        json!({
            "value": "v2", "percent": 40, "allow": ["vip"], "deny": ["blocked"],
            "rules": [{"attribute": "region", "op": "in", "values": ["eu"]}]
        }),
    )
    .await;
    api.put_ok("shop", "timeout_ms", json!(250)).await;
    api.put_ok("shop", "enabled", json!(true)).await;
    api.put_ok("shop", "limits", json!({"max": 3})).await;
    let mut cases = Vec::new();
    let mut expected = Vec::new();
    for i in 0..40 {
        let subject = match i {
            0 => "vip".to_owned(),
            1 => "blocked".to_owned(),
            _ => format!("user-{i}"),
        };
        let region = if i % 3 == 0 { "us" } else { "eu" };
        cases.push(json!({"flag": "shop/checkout", "type": "string", "default": "none",
            "context": {"targetingKey": subject, "region": region}}));
        let (_, release) = api
            .get(&format!("/v1/release/shop/checkout?subject={subject}&attr.region={region}"))
            .await
            .unwrap();
        expected.push((release["value"].clone(), release["variant"].clone()));
    }
    for (flag, kind, default, value) in [
        ("shop/timeout_ms", "integer", json!(0), json!(250)),
        ("shop/enabled", "boolean", json!(false), json!(true)),
        ("shop/limits", "object", json!({}), json!({"max": 3})),
    ] {
        cases.push(json!({"flag": flag, "type": kind, "default": default, "context": {"targetingKey": "u"}}));
        expected.push((value, json!("stable")));
    }
    cases
        .push(json!({"flag": "shop/none", "type": "string", "default": "fallback", "context": {}}));
    for (program, script) in [("node", dir.join("eval.mjs")), ("python3", dir.join("eval.py"))] {
        let answers = run_provider(program, &script, &server.url, &cases);
        assert_eq!(answers.len(), cases.len(), "{program}: {answers:?}");
        for ((answer, case), (value, variant)) in answers.iter().zip(&cases).zip(&expected) {
            assert_eq!(
                (&answer["value"], &answer["variant"]),
                (value, variant),
                "{program}: {case} → {answer}"
            );
            assert!(answer["errorCode"].is_null(), "{program}: {case} → {answer}");
        }
        let missing = answers.last().unwrap();
        assert_eq!(missing["value"], "fallback", "{program}: {missing}");
        assert!(
            missing["errorCode"].as_str().is_some_and(|c| c.contains("FLAG_NOT_FOUND")),
            "{program}: {missing}"
        );
    }
}
