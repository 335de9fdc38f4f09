//! `Idempotency-Key` on a single node: a repeat answers the first outcome and changes
//! nothing, also after a restart; another request under the same key is 422; a bad key
//! is 400. (The cluster's share is in `cluster.rs`.)

use graycast_tests::{Api, TestServer};
use reqwest::Method;
use serde_json::{json, Value};

const JSON: (&str, &str) = ("content-type", "application/json");

async fn keyed(
    api: &Api,
    method: Method,
    path: &str,
    key: &str,
    body: Option<&str>,
) -> (u16, Option<String>, Value) {
    let (status, headers, body) =
        api.raw(method, path, &[JSON, ("idempotency-key", key)], body).await;
    let etag = headers.get("etag").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (status, etag, body)
}

#[tokio::test]
async fn a_repeated_write_answers_the_first_outcome_and_changes_nothing() {
    let mut server = TestServer::start();
    let api = Api::new(&server);
    let path = "/v1/configs/app/limit";
    let first = keyed(&api, Method::PUT, path, "k-1", Some(r#"{"value": 1}"#)).await;
    assert_eq!(first.0, 201, "{first:?}");
    let later = api.put_ok("app", "limit", json!(2)).await;

    // The repeat: the first answer (status, ETag and body), and the value stays 2.
    let again = keyed(&api, Method::PUT, path, "k-1", Some(r#"{"value": 1}"#)).await;
    assert_eq!(again, first);
    let (_, now) = api.get(path).await.expect("read");
    assert_eq!((now["value"].clone(), now["revision"].as_u64()), (json!(2), Some(later)));

    // The same key for another request: refused, nothing written.
    let other = keyed(&api, Method::PUT, path, "k-1", Some(r#"{"value": 3}"#)).await;
    assert_eq!((other.0, other.2["error"]["code"].clone()), (422, json!("idempotency_key_reused")));
    let elsewhere =
        keyed(&api, Method::PUT, "/v1/configs/app/other", "k-1", Some(r#"{"value": 1}"#)).await;
    assert_eq!(elsewhere.0, 422, "another path is another request");
    let (status, _) = api.get("/v1/configs/app/other").await.expect("read");
    assert_eq!(status, 404);

    // A compare-and-set repeated after it took effect is not refused.
    let cas = [JSON, ("idempotency-key", "k-2"), ("if-match", &*format!("\"{later}\""))];
    let (made, _, body) = api.raw(Method::PUT, path, &cas, Some(r#"{"value": 4}"#)).await;
    assert_eq!(made, 200, "{body}");
    let (repeat, _, again) = api.raw(Method::PUT, path, &cas, Some(r#"{"value": 4}"#)).await;
    assert_eq!((repeat, again), (200, body.clone()));

    // Deletes and gray releases keep their first answer too.
    let deleted = keyed(&api, Method::DELETE, path, "k-3", None).await;
    assert_eq!(deleted.0, 200, "{deleted:?}");
    api.put_ok("app", "limit", json!(5)).await;
    assert_eq!(keyed(&api, Method::DELETE, path, "k-3", None).await, deleted);
    let (_, now) = api.get(path).await.expect("read");
    assert_eq!(now["value"], json!(5), "the repeated delete deleted nothing");

    // Across a restart.
    server.restart();
    let api = Api::new(&server);
    assert_eq!(keyed(&api, Method::PUT, path, "k-1", Some(r#"{"value": 1}"#)).await, first);
    assert_eq!(keyed(&api, Method::DELETE, path, "k-3", None).await, deleted);
    let (_, now) = api.get(path).await.expect("read");
    assert_eq!(now["value"], json!(5));
}

#[tokio::test]
async fn a_bad_idempotency_key_is_refused_and_changes_nothing() {
    let server = TestServer::start();
    let api = Api::new(&server);
    let long = "x".repeat(256);
    for key in ["", "has space", "é", long.as_str()] {
        let (status, _, body) = api
            .raw(
                Method::PUT,
                "/v1/configs/app/k",
                &[JSON, ("idempotency-key", key)],
                Some(r#"{"value": 1}"#),
            )
            .await;
        assert_eq!((status, body["error"]["code"].clone()), (400, json!("bad_request")), "{key:?}");
    }
    let (status, _) = api.get("/v1/configs/app/k").await.expect("read");
    assert_eq!(status, 404);
    let longest = "y".repeat(255);
    let (status, _, _) = api
        .raw(
            Method::PUT,
            "/v1/configs/app/k",
            &[JSON, ("idempotency-key", &longest)],
            Some(r#"{"value": 1}"#),
        )
        .await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn concurrent_repeats_make_one_change() {
    let server = TestServer::start();
    let api = Api::new(&server);
    let answers = futures_util::future::join_all((0..16).map(|_| {
        keyed(&api, Method::PUT, "/v1/configs/app/once", "same", Some(r#"{"value": "x"}"#))
    }))
    .await;
    let first = &answers[0];
    assert!(answers.iter().all(|a| a == first), "{answers:?}");
    let (_, history) = api.get("/v1/configs/app/once/history").await.expect("history");
    assert_eq!(history["items"].as_array().map(Vec::len), Some(1), "{history}");
}

#[tokio::test]
async fn a_repeated_guard_report_is_counted_once() {
    let server = TestServer::start();
    let api = Api::new(&server);
    api.put_ok("app", "g", json!(1)).await;
    let gray =
        r#"{"value": 2, "percent": 50, "guard": {"max_error_rate": 0.5, "min_samples": 1000}}"#;
    let (status, _, body) =
        api.raw(Method::PUT, "/v1/configs/app/g/gray", &[JSON], Some(gray)).await;
    assert_eq!(status, 200, "{body}");
    let path = "/v1/configs/app/g/gray/report";
    let report = r#"{"variant": "gray", "ok": 7, "errors": 3}"#;
    for _ in 0..3 {
        let (status, _, counts) = keyed(&api, Method::POST, path, "r-1", Some(report)).await;
        assert_eq!((status, counts["gray"].clone()), (200, json!({"ok": 7, "errors": 3})));
    }
    let other =
        keyed(&api, Method::POST, path, "r-1", Some(r#"{"variant": "gray", "ok": 1}"#)).await;
    assert_eq!(other.0, 422, "{other:?}");
    let (_, counts) = api.get("/v1/configs/app/g/gray").await.expect("status");
    assert_eq!(counts["counts"]["gray"], json!({"ok": 7, "errors": 3}));
}
