//! Observability: what `/metrics` counts, request ids in answers and logs, JSON logs.

use std::time::{Duration, Instant};

use graycast_protocol::ServerMessage;
use graycast_tests::{Api, TestServer, Watcher, DEADLINE};
use reqwest::Method;
use serde_json::{json, Value};

/// Waits until `metric` reaches at least `at_least`; returns its value.
async fn metric_reaches(server: &TestServer, metric: &str, at_least: f64) -> f64 {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let value = server.metric(metric).await;
        if value.is_some_and(|v| v >= at_least) {
            return value.unwrap_or_default();
        }
        assert!(
            Instant::now() < deadline,
            "{metric} is {value:?}, never {at_least}:\n{}",
            reqwest::get(format!("{}/metrics", server.url)).await.unwrap().text().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_writes_pushes_snapshots_disconnects_and_refusals() {
    let server = TestServer::start_with(&["--max-subscribers", "2"]);
    let api = Api::new(&server);
    let response = api
        .http
        .get(format!("{}/metrics", server.url))
        .header("accept", "application/openmetrics-text;version=1.0.0,text/plain;q=0.5")
        .send()
        .await
        .unwrap();
    let kind = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    assert!(response.text().await.unwrap().ends_with("# EOF\n"));

    // A new subscriber gets a snapshot (cause new), then the write, pushed.
    let mut fresh = Watcher::subscribe(&server, &["app"], None).await.unwrap();
    assert!(matches!(fresh.next_data().await.unwrap(), ServerMessage::Snapshot { .. }));
    let revision = api.put_ok("app", "k", json!(1)).await;
    assert!(matches!(fresh.next_data().await.unwrap(), ServerMessage::Change { .. }));
    assert_eq!(server.metric("graycast_write_duration_seconds_count").await, Some(1.0));
    assert_eq!(server.metric("graycast_writes_total").await, Some(1.0));
    metric_reaches(&server, "graycast_push_latency_seconds_count", 1.0).await;
    assert_eq!(server.metric("graycast_snapshots_total{cause=\"new\"}").await, Some(1.0));

    // One resuming from a revision the store never reached gets one too (cause too_old).
    let mut ahead = Watcher::subscribe(&server, &["app"], Some(revision + 100)).await.unwrap();
    assert!(matches!(ahead.next_data().await.unwrap(), ServerMessage::Snapshot { .. }));
    assert_eq!(server.metric("graycast_snapshots_total{cause=\"too_old\"}").await, Some(1.0));
    assert_eq!(server.metric("graycast_connections").await, Some(2.0));
    assert_eq!(server.metric("graycast_subscribers").await, Some(2.0));

    // A third connection is over the limit.
    assert!(Watcher::connect(&server).await.is_err());
    assert_eq!(server.metric("graycast_refused_connections_total").await, Some(1.0));

    // One closes politely, the other breaks the protocol.
    let mut polite = fresh.into_inner();
    polite.close(None).await.unwrap();
    ahead.send_text("not json").await.unwrap();
    assert_eq!(ahead.expect_close().await.unwrap(), Some(1008));
    metric_reaches(&server, "graycast_disconnects_total{reason=\"client_closed\"}", 1.0).await;
    metric_reaches(&server, "graycast_disconnects_total{reason=\"protocol_error\"}", 1.0).await;
    assert_eq!(server.metric("graycast_disconnects_total{reason=\"shutdown\"}").await, Some(0.0));
    let deadline = Instant::now() + DEADLINE;
    while server.metric("graycast_connections").await != Some(0.0) {
        assert!(Instant::now() < deadline, "connections never went back to 0");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.metric("graycast_subscribers").await, Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_abort_is_counted() {
    let server = TestServer::start();
    let api = Api::new(&server);
    api.put_ok("app", "k", json!("stable")).await;
    let gray = json!({"value": "risky", "percent": 50, "guard": {"max_error_rate": 0.1, "min_samples": 10}});
    let (status, body) = api.request(Method::PUT, "/v1/configs/app/k/gray", None, Some(gray)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.metric("graycast_guard_aborts_total").await, Some(0.0));
    let report = json!({"variant": "gray", "ok": 0, "errors": 20});
    let (status, body) =
        api.request(Method::POST, "/v1/configs/app/k/gray/report", None, Some(report)).await;
    assert_eq!(status, 200, "{body}");
    metric_reaches(&server, "graycast_guard_aborts_total", 1.0).await;
    let (_, entry) = api.get("/v1/configs/app/k").await.unwrap();
    assert_eq!(entry["gray"], Value::Null, "the release was aborted: {entry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_names_its_request_id_and_errors_carry_it() {
    let server = TestServer::start();
    let api = Api::new(&server);

    // Made up by the server when the client sends none: in the header and the error body.
    let (status, headers, body) = api.raw(Method::GET, "/v1/configs/app/missing", &[], None).await;
    assert_eq!(status, 404);
    let id = headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 16, "{id}");
    assert_eq!(body["error"]["request_id"], json!(id), "{body}");
    assert_eq!(body["error"]["code"], json!("not_found"));

    // Another request, another id.
    let (_, again, _) = api.raw(Method::GET, "/v1/configs/app/missing", &[], None).await;
    assert_ne!(again["x-request-id"], headers["x-request-id"]);

    // A client's (a proxy's) id is kept, on successes and on errors made by actix-web's
    // routing and extractors too.
    let (status, headers, _) =
        api.raw(Method::GET, "/healthz", &[("x-request-id", "edge-42")], None).await;
    assert_eq!((status, headers["x-request-id"].to_str().unwrap()), (200, "edge-42"));
    let (status, headers, body) =
        api.raw(Method::PATCH, "/v1/configs/app/k", &[("x-request-id", "edge-43")], None).await;
    assert_eq!(status, 405);
    assert_eq!(headers["x-request-id"], "edge-43");
    assert_eq!(body["error"]["request_id"], json!("edge-43"), "{body}");
    let (status, _, body) = api
        .raw(
            Method::PUT,
            "/v1/configs/app/k",
            &[("x-request-id", "edge-44"), ("content-type", "application/json")],
            Some("{not json"),
        )
        .await;
    assert_eq!((status, &body["error"]["request_id"]), (400, &json!("edge-44")), "{body}");

    // An id that is not one printable token is replaced, not echoed.
    let (_, headers, _) =
        api.raw(Method::GET, "/healthz", &[("x-request-id", "two words")], None).await;
    let replaced = headers["x-request-id"].to_str().unwrap();
    assert_ne!(replaced, "two words");
    assert_eq!(replaced.len(), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_with_the_request_id() {
    let mut server = TestServer::start_with(&["--log-format", "json"]);
    let api = Api::new(&server);
    api.put_ok("app", "k", json!("stable")).await;
    let gray = json!({"value": "risky", "percent": 50, "guard": {"max_error_rate": 0.1, "min_samples": 10}});
    let (status, _) = api.request(Method::PUT, "/v1/configs/app/k/gray", None, Some(gray)).await;
    assert_eq!(status, 200);
    // The report that trips the guard logs the abort inside its request.
    let (status, _, _) = api
        .raw(
            Method::POST,
            "/v1/configs/app/k/gray/report",
            &[("x-request-id", "trip-1"), ("content-type", "application/json")],
            Some(r#"{"variant": "gray", "ok": 0, "errors": 20}"#),
        )
        .await;
    assert_eq!(status, 200);
    server.terminate();

    let log = server.log_text();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect();
    assert!(lines.iter().all(|l| l["timestamp"].is_string() && l["level"].is_string()), "{log}");
    let abort = lines
        .iter()
        .find(|l| l["fields"]["message"] == "guard aborts the gray release")
        .unwrap_or_else(|| panic!("no abort logged:\n{log}"));
    assert_eq!(abort["span"]["request_id"], "trip-1", "{abort}");
    assert_eq!(abort["level"], "WARN");
    assert!(lines.iter().any(|l| l["fields"]["message"] == "shutting down"), "{log}");
}

/// A resumption the change log no longer reaches is a snapshot (too_old), not also a
/// replay (the replay was counted when it began, before the log said it was compacted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumption_beyond_the_change_log_counts_as_a_snapshot_only() {
    let server = TestServer::start_with(&["--changelog-retain", "1"]);
    let api = Api::new(&server);
    for i in 0..5 {
        api.put_ok("app", "k", json!(i)).await;
    }
    let mut late = Watcher::subscribe(&server, &["app"], Some(1)).await.unwrap();
    assert!(matches!(late.next_data().await.unwrap(), ServerMessage::Snapshot { .. }));
    assert_eq!(server.metric("graycast_snapshots_total{cause=\"too_old\"}").await, Some(1.0));
    assert_eq!(server.metric("graycast_replays_total").await, Some(0.0));

    // One that the log does reach is a replay.
    let mut recent = Watcher::subscribe(&server, &["app"], Some(4)).await.unwrap();
    assert!(matches!(recent.next_data().await.unwrap(), ServerMessage::Change { .. }));
    metric_reaches(&server, "graycast_replays_total", 1.0).await;
    assert_eq!(server.metric("graycast_snapshots_total{cause=\"too_old\"}").await, Some(1.0));
}

/// Issue 24: no counter showed REST requests, so a failing write (a 5xx) showed in none;
/// and there were no `process_*` or build metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_requests_are_counted_by_route_template_and_status_class() {
    // A store that can hold almost nothing: its second write is refused 507.
    let server = TestServer::start_with(&["--quota-bytes", "600", "--store", "memory"]);
    let api = Api::new(&server);
    api.put_ok("app", "a", json!("x")).await;
    let big = json!("y".repeat(700));
    let (status, body) = api.put("app", "b", big).await.unwrap();
    assert_eq!(status, 507, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("--history-retain"), "says what holds the room: {message}");
    // A server error is logged, with the id the user sees in the body.
    let id = body["error"]["request_id"].as_str().expect("a request id").to_owned();
    let logged = server.log_text().lines().any(|l| {
        l.contains("answered with a server error") && l.contains(&id) && l.contains("507")
    });
    assert!(logged, "no log line for {id}:\n{}", server.log_text());
    let (status, _) = api.get("/v1/configs/app/missing").await.unwrap();
    assert_eq!(status, 404);
    let (status, _) = api.get("/no/such/route").await.unwrap();
    assert_eq!(status, 404);
    let route = "/v1/configs/{ns}/{key}";
    let count = |method: &str, route: &str, class: &str| {
        format!("graycast_http_requests_total{{method=\"{method}\",route=\"{route}\",class=\"{class}\"}}")
    };
    assert_eq!(server.metric(&count("PUT", route, "2xx")).await, Some(1.0));
    assert_eq!(server.metric(&count("PUT", route, "5xx")).await, Some(1.0));
    assert_eq!(server.metric(&count("GET", route, "4xx")).await, Some(1.0));
    assert_eq!(server.metric(&count("GET", "none", "4xx")).await, Some(1.0));
    let durations = format!("graycast_http_request_duration_seconds_count{{route=\"{route}\"}}");
    assert_eq!(server.metric(&durations).await, Some(3.0));

    let text = reqwest::get(format!("{}/metrics", server.url)).await.unwrap().text().await.unwrap();
    for family in [
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_max_fds ",
        "process_start_time_seconds ",
        "graycast_build_info{version=\"",
    ] {
        assert!(text.lines().any(|l| l.starts_with(family)), "{family} missing:\n{text}");
    }
    // A node on its own store says nothing of etcd.
    assert!(!text.contains("graycast_etcd_"), "{text}");
}
