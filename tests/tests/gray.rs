//! Gray releases end to end: evaluation parity with the vectors, rules, ramps, guard, errors.

use std::collections::BTreeMap;

use graycast_client::{Client, Context};
use graycast_protocol::{Op, ServerMessage};
use graycast_tests::{Api, TestServer, Watcher, DEADLINE};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
struct Vectors {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    salt: String,
    subject: String,
    bucket: u32,
    variants: BTreeMap<String, String>,
}

fn vectors() -> Vectors {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../protocol/testdata/rollout-vectors.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("vectors")).expect("parse")
}

async fn send(api: &Api, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    api.request(method, path, None, body).await
}

async fn start_gray(api: &Api, ns: &str, key: &str, body: Value) -> Value {
    let (status, entry) =
        send(api, reqwest::Method::PUT, &format!("/v1/configs/{ns}/{key}/gray"), Some(body)).await;
    assert_eq!(status, 200, "{entry}");
    entry
}

/// Waits for the next change of a key on a watcher, skipping others.
async fn next_change_of(
    watcher: &mut Watcher,
    key: &str,
) -> (u64, Op, Option<graycast_protocol::Entry>) {
    loop {
        if let ServerMessage::Change { revision, op, key: k, entry, .. } =
            watcher.next_data().await.unwrap()
        {
            if k == key {
                return (revision, op, entry.map(|e| *e));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_endpoint_and_sdk_agree_with_the_vectors_and_each_other() {
    let server = TestServer::start();
    let api = Api::new(&server);
    api.put_ok("payments", "timeout_ms", json!("stable")).await;
    let sdk = Client::builder().endpoint(&server.url).namespace("payments").build().unwrap();
    let vectors = vectors();
    let mut checked = 0;
    for (salt, percent) in
        [("payments/timeout_ms", "12.5"), ("search/boost", "50"), ("ns/k", "0.5")]
    {
        let mut body = json!({"value": "gray", "percent": percent.parse::<f64>().unwrap()});
        if salt != "payments/timeout_ms" {
            body["salt"] = json!(salt);
        }
        let entry = start_gray(&api, "payments", "timeout_ms", body).await;
        sdk.wait_for_revision(entry["revision"].as_u64().unwrap(), DEADLINE).await.unwrap();
        for case in vectors.cases.iter().filter(|c| c.salt == salt) {
            let expected = &case.variants[percent];
            let response = api
                .http
                .get(format!("{}/v1/release/payments/timeout_ms", api.url))
                .query(&[("subject", case.subject.as_str())])
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 200);
            let decision: Value = response.json().await.unwrap();
            assert_eq!(
                decision["variant"],
                json!(expected),
                "server, {:?} at {percent}",
                case.subject
            );
            assert_eq!(decision["bucket"], json!(case.bucket));
            assert_eq!(decision["reason"], json!("percent"));
            assert_eq!(
                decision["value"],
                json!(if expected == "gray" { "gray" } else { "stable" })
            );
            let local =
                sdk.evaluate("payments", "timeout_ms", &Context::subject(&case.subject)).unwrap();
            assert_eq!(local.variant.as_str(), expected, "sdk, {:?} at {percent}", case.subject);
            assert_eq!(local.bucket, Some(case.bucket));
            assert_eq!(local.value(), &decision["value"]);
            checked += 1;
        }
    }
    assert!(checked >= 300, "only {checked} subjects checked");

    // Without a subject the SDK evaluates for its own instance id.
    let instance = Client::builder()
        .endpoint(&server.url)
        .namespace("payments")
        .client_id("instance-7")
        .build()
        .unwrap();
    instance.wait_synced(DEADLINE).await.unwrap();
    let own = instance.evaluate("payments", "timeout_ms", &Context::instance()).unwrap();
    let by_id =
        instance.evaluate("payments", "timeout_ms", &Context::subject("instance-7")).unwrap();
    assert_eq!((own.variant, own.bucket), (by_id.variant, by_id.bucket));
    assert_eq!(own.bucket, Some(graycast_protocol::rollout::bucket("ns/k", "instance-7")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_deny_and_rules_decide_before_the_percent() {
    let server = TestServer::start();
    let api = Api::new(&server);
    api.put_ok("app", "flow", json!("old")).await;
    start_gray(
        &api,
        "app",
        "flow",
        json!({"value": "new", "percent": 100, "allow": ["vip"], "deny": ["blocked", "vip-but-blocked"],
               "rules": [{"attribute": "region", "op": "prefix", "values": ["eu-"]},
                         {"attribute": "version", "op": "semver_gte", "values": ["2.1.0"]}]}),
    )
    .await;
    let release = |query: &'static str| {
        let api = api.clone();
        async move {
            let (status, body) = api.get(&format!("/v1/release/app/flow?{query}")).await.unwrap();
            assert_eq!(status, 200, "{body}");
            (
                body["variant"].as_str().unwrap().to_owned(),
                body["reason"].as_str().unwrap().to_owned(),
                body["value"].clone(),
            )
        }
    };
    let expect = |variant: &str, reason: &str| (variant.to_owned(), reason.to_owned());
    let (v, r, value) = release("subject=vip").await;
    assert_eq!(((v, r), value), (expect("gray", "allow"), json!("new")));
    let (v, r, _) = release("subject=vip-but-blocked&attr.region=eu-west&attr.version=3.0.0").await;
    assert_eq!((v, r), expect("stable", "deny"));
    let (v, r, value) = release("subject=u1&attr.region=us-east&attr.version=3.0.0").await;
    assert_eq!(((v, r), value), (expect("stable", "rule_mismatch"), json!("old")));
    let (v, r, _) = release("subject=u1&attr.region=eu-west&attr.version=2.0.9").await;
    assert_eq!((v, r), expect("stable", "rule_mismatch"));
    let (v, r, _) = release("subject=u1&attr.region=eu-west").await;
    assert_eq!((v, r), expect("stable", "rule_mismatch"), "a missing attribute matches no rule");
    let (v, r, _) = release("subject=u1&attr.region=eu-west&attr.version=2.1.0").await;
    assert_eq!((v, r), expect("gray", "percent"));
    let (v, r, _) = release("attr.region=eu-west&attr.version=2.1.0").await;
    assert_eq!((v, r), expect("gray", "random"), "no subject draws at random; at 100% always gray");

    // The SDK agrees on each of these.
    let sdk = Client::builder().endpoint(&server.url).namespace("app").build().unwrap();
    sdk.wait_synced(DEADLINE).await.unwrap();
    let ctx = Context::subject("u1").attr("region", "eu-north").attr("version", "v2.2.0");
    assert_eq!(sdk.evaluate("app", "flow", &ctx).unwrap().value(), &json!("new"));
    let ctx = Context::subject("blocked").attr("region", "eu-north").attr("version", "2.2.0");
    assert_eq!(sdk.evaluate("app", "flow", &ctx).unwrap().reason.as_str(), "deny");
    assert_eq!(
        sdk.evaluate_as::<String>("app", "flow", &Context::subject("vip")).unwrap().as_deref(),
        Some("new")
    );

    // Patching the lists changes decisions at once, as one new revision.
    let (status, entry) = send(
        &api,
        reqwest::Method::PATCH,
        "/v1/configs/app/flow/gray",
        Some(json!({"allow": [], "deny": []})),
    )
    .await;
    assert_eq!(status, 200, "{entry}");
    let (v, r, _) = release("subject=vip").await;
    assert_eq!((v, r), expect("stable", "rule_mismatch"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_gray_change_is_one_pushed_revision_with_the_full_section() {
    let server = TestServer::start();
    let api = Api::new(&server);
    api.put_ok("app", "k", json!(1)).await;
    let mut watcher = Watcher::subscribe(&server, &["app"], None).await.unwrap();
    watcher.next_data().await.unwrap();

    start_gray(&api, "app", "k", json!({"value": 2, "percent": 5, "allow": ["a"]})).await;
    let (rev1, op, entry) = next_change_of(&mut watcher, "k").await;
    let entry = entry.unwrap();
    assert_eq!(op, Op::Gray);
    let gray = entry.gray.expect("full gray section pushed");
    assert_eq!(
        (gray.value.clone(), gray.percent, gray.allow.clone(), gray.salt.clone()),
        (json!(2), 5.0, vec!["a".to_owned()], "app/k".to_owned())
    );
    assert_eq!(entry.value, json!(1));

    let (status, _) =
        send(&api, reqwest::Method::PATCH, "/v1/configs/app/k/gray", Some(json!({"percent": 40})))
            .await;
    assert_eq!(status, 200);
    let (rev2, op, entry) = next_change_of(&mut watcher, "k").await;
    assert!(rev2 > rev1);
    assert_eq!((op, entry.unwrap().gray.unwrap().percent), (Op::Gray, 40.0));

    let (status, status_body) = api.get("/v1/configs/app/k/gray").await.unwrap();
    assert_eq!((status, status_body["gray"]["percent"].clone()), (200, json!(40.0)));

    let (status, promoted) =
        send(&api, reqwest::Method::POST, "/v1/configs/app/k/gray/promote", None).await;
    assert_eq!(
        (status, promoted["value"].clone(), promoted["gray"].clone()),
        (200, json!(2), Value::Null)
    );
    let (_, op, entry) = next_change_of(&mut watcher, "k").await;
    assert_eq!((op, entry.unwrap().value), (Op::Promote, json!(2)));

    start_gray(&api, "app", "k", json!({"value": 3, "percent": 50})).await;
    next_change_of(&mut watcher, "k").await;
    let (status, aborted) =
        send(&api, reqwest::Method::DELETE, "/v1/configs/app/k/gray", None).await;
    assert_eq!(
        (status, aborted["value"].clone(), aborted["gray"].clone()),
        (200, json!(2), Value::Null)
    );
    let (_, op, entry) = next_change_of(&mut watcher, "k").await;
    assert_eq!((op, entry.unwrap().gray), (Op::Abort, None));

    let (_, history) = api.get("/v1/configs/app/k/history").await.unwrap();
    let ops: Vec<&str> =
        history["items"].as_array().unwrap().iter().map(|i| i["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["abort", "gray", "promote", "gray", "gray", "put"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ramp_with_one_second_holds_advances_and_auto_promotes_while_a_paused_one_stays() {
    let server = TestServer::start();
    let api = Api::new(&server);
    api.put_ok("app", "ramped", json!("old")).await;
    api.put_ok("app", "paused", json!("old")).await;
    let mut watcher = Watcher::subscribe(&server, &["app"], None).await.unwrap();
    watcher.next_data().await.unwrap();
    let steps =
        json!([{"percent": 10, "hold_secs": 1}, {"percent": 50, "hold_secs": 1}, {"percent": 100}]);
    let paused = start_gray(
        &api,
        "app",
        "paused",
        json!({"value": "new", "steps": steps, "auto_promote": true, "paused": true}),
    )
    .await;
    start_gray(
        &api,
        "app",
        "ramped",
        json!({"value": "new", "steps": steps, "auto_promote": true}),
    )
    .await;
    assert_eq!(
        next_change_of(&mut watcher, "paused").await.0,
        paused["revision"].as_u64().unwrap()
    );

    let mut seen = Vec::new();
    loop {
        let message = watcher.next_data().await.unwrap();
        let ServerMessage::Change { key, op, entry, .. } = message else { continue };
        assert_eq!(key, "ramped", "the paused ramp moved");
        let entry = entry.unwrap();
        seen.push((op, entry.gray.as_ref().map(|g| g.percent)));
        if op == Op::Promote {
            assert_eq!((entry.value.clone(), entry.gray.clone()), (json!("new"), None));
            assert_eq!(entry.updated_by, "scheduler");
            break;
        }
    }
    assert_eq!(seen, [(Op::Gray, Some(10.0)), (Op::Gray, Some(50.0)), (Op::Promote, None)]);

    // The paused release is where it was, a full ramp later.
    let (_, entry) = api.get("/v1/configs/app/paused").await.unwrap();
    assert_eq!(entry["revision"], paused["revision"]);
    assert_eq!(entry["gray"]["step"], json!(0));
    assert_eq!(entry["gray"]["next_step_at"], Value::Null);
    // Resuming starts its hold again.
    let (status, resumed) = send(
        &api,
        reqwest::Method::PATCH,
        "/v1/configs/app/paused/gray",
        Some(json!({"paused": false})),
    )
    .await;
    assert_eq!(status, 200);
    assert!(resumed["gray"]["next_step_at"].is_string());
    let (resume, _, _) = next_change_of(&mut watcher, "paused").await;
    assert_eq!(resume, resumed["revision"].as_u64().unwrap());
    let (_, op, entry) = next_change_of(&mut watcher, "paused").await;
    assert_eq!((op, entry.unwrap().gray.unwrap().percent), (Op::Gray, 50.0));

    let (_, history) = api.get("/v1/configs/app/ramped/history?limit=2").await.unwrap();
    assert!(history["items"][0]["note"].as_str().unwrap().contains("promoted automatically"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ramp_interrupted_by_a_restart_continues() {
    let mut server = TestServer::start();
    let api = Api::new(&server);
    let created = api.put_ok("app", "k", json!("old")).await;
    start_gray(&api, "app", "k", json!({"value": "new", "auto_promote": true,
        "steps": [{"percent": 20, "hold_secs": 1}, {"percent": 60, "hold_secs": 1}, {"percent": 100}]}))
    .await;
    server.terminate();
    server.start_again();
    // Follow it from the start: replay, then live changes, up to the promotion.
    let mut watcher = Watcher::subscribe(&server, &["app"], Some(created)).await.unwrap();
    let mut percents = Vec::new();
    loop {
        let (_, op, entry) = next_change_of(&mut watcher, "k").await;
        let entry = entry.unwrap();
        if op == Op::Promote {
            assert_eq!(entry.value, json!("new"));
            break;
        }
        percents.push(entry.gray.unwrap().percent);
    }
    assert_eq!(percents, [20.0, 60.0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_over_the_error_threshold_abort_the_release_for_every_subscriber() {
    let server = TestServer::start();
    let api = Api::new(&server);
    api.put_ok("app", "k", json!("stable")).await;
    let mut first = Watcher::subscribe(&server, &["app"], None).await.unwrap();
    let mut second = Watcher::subscribe(&server, &["app"], None).await.unwrap();
    first.next_data().await.unwrap();
    second.next_data().await.unwrap();
    start_gray(&api, "app", "k", json!({"value": "risky", "percent": 50, "guard": {"max_error_rate": 0.1, "min_samples": 50}})).await;
    next_change_of(&mut first, "k").await;
    next_change_of(&mut second, "k").await;

    let report = |body: Value| {
        send(&api, reqwest::Method::POST, "/v1/configs/app/k/gray/report", Some(body))
    };
    let (status, counts) = report(json!({"variant": "gray", "ok": 30, "errors": 0})).await;
    assert_eq!((status, counts["gray"]["ok"].clone()), (200, json!(30)));
    let (_, counts) = report(json!({"variant": "stable", "ok": 100, "errors": 1})).await;
    assert_eq!(counts["stable"], json!({"ok": 100, "errors": 1}));
    // Many errors, but fewer than min_samples gray outcomes in all: no abort yet.
    let (_, counts) = report(json!({"variant": "gray", "ok": 0, "errors": 10})).await;
    assert_eq!(counts["gray"], json!({"ok": 30, "errors": 10}));
    let (_, status_body) = api.get("/v1/configs/app/k/gray").await.unwrap();
    assert_eq!(status_body["counts"]["gray"], json!({"ok": 30, "errors": 10}));

    // The report that trips the guard comes over WebSocket.
    first.send(json!({"type": "report", "namespace": "app", "key": "k", "variant": "gray", "ok": 0, "errors": 15})).await.unwrap();
    for watcher in [&mut first, &mut second] {
        let (_, op, entry) = next_change_of(watcher, "k").await;
        let entry = entry.unwrap();
        assert_eq!(
            (op, entry.gray.clone(), entry.value.clone(), entry.updated_by.clone()),
            (Op::Abort, None, json!("stable"), "guard".to_owned())
        );
    }
    let (_, history) = api.get("/v1/configs/app/k/history?limit=1").await.unwrap();
    let item = &history["items"][0];
    assert_eq!((item["op"].clone(), item["updated_by"].clone()), (json!("abort"), json!("guard")));
    let note = item["note"].as_str().unwrap();
    assert!(
        note.contains("0.4545") && note.contains("55 outcomes") && note.contains("0.0099"),
        "{note}"
    );
    // The release is over: more reports are refused.
    let (status, _) = report(json!({"variant": "gray", "ok": 1})).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_gray_requests_get_their_error_and_change_nothing() {
    let server = TestServer::start();
    let api = Api::new(&server);
    api.put_ok("app", "k", json!(1)).await;
    let (_, before) = api.get("/v1/namespaces").await.unwrap();
    use reqwest::Method;
    let cases: Vec<(Method, &str, Option<Value>, u16, &str)> = vec![
        (
            Method::PUT,
            "/v1/configs/app/missing/gray",
            Some(json!({"value": 1, "percent": 5})),
            404,
            "not_found",
        ),
        (
            Method::PUT,
            "/v1/configs/app/k/gray",
            Some(json!({"value": 1, "percent": 150})),
            422,
            "invalid_value",
        ),
        (
            Method::PUT,
            "/v1/configs/app/k/gray",
            Some(json!({"value": 1, "percent": 5.555})),
            422,
            "invalid_value",
        ),
        (
            Method::PUT,
            "/v1/configs/app/k/gray",
            Some(
                json!({"value": 1, "rules": [{"attribute": "a", "op": "regex", "values": ["x"]}]}),
            ),
            400,
            "invalid_json",
        ),
        (
            Method::PUT,
            "/v1/configs/app/k/gray",
            Some(
                json!({"value": 1, "rules": [{"attribute": "v", "op": "semver_lt", "values": ["soon"]}]}),
            ),
            422,
            "invalid_value",
        ),
        (
            Method::PUT,
            "/v1/configs/app/k/gray",
            Some(json!({"value": 1, "steps": [{"percent": 50, "hold_secs": 5}, {"percent": 5}]})),
            422,
            "invalid_value",
        ),
        (
            Method::PUT,
            "/v1/configs/app/k/gray",
            Some(json!({"value": 1, "guard": {"max_error_rate": -0.5, "min_samples": 10}})),
            422,
            "invalid_value",
        ),
        (Method::PUT, "/v1/configs/app/k/gray", Some(json!({"percent": 5})), 400, "invalid_json"),
        (
            Method::PUT,
            "/v1/configs/app/k/gray",
            Some(
                json!({"value": 1, "allow": (0..10_001).map(|i| format!("u{i}")).collect::<Vec<_>>()}),
            ),
            422,
            "invalid_value",
        ),
        (Method::PATCH, "/v1/configs/app/k/gray", Some(json!({"percent": 5})), 404, "not_found"),
        (Method::POST, "/v1/configs/app/k/gray/promote", None, 404, "not_found"),
        (Method::DELETE, "/v1/configs/app/k/gray", None, 404, "not_found"),
        (Method::GET, "/v1/configs/app/k/gray", None, 404, "not_found"),
        (
            Method::POST,
            "/v1/configs/app/k/gray/report",
            Some(json!({"variant": "gray", "ok": 1})),
            404,
            "not_found",
        ),
        (Method::GET, "/v1/release/app/k?subject=u&colour=red", None, 400, "bad_request"),
        (Method::GET, "/v1/release/app/missing?subject=u", None, 404, "not_found"),
    ];
    for (method, path, body, status, code) in cases {
        let (got, answer) = send(&api, method.clone(), path, body).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{method} {path}: {answer}"
        );
    }
    // With a release running: an empty or invalid patch, and bad reports.
    start_gray(&api, "app", "k", json!({"value": 2, "percent": 5})).await;
    let (_, running) = api.get("/v1/namespaces").await.unwrap();
    for (method, path, body, status) in [
        (Method::PATCH, "/v1/configs/app/k/gray", json!({}), 422),
        (Method::PATCH, "/v1/configs/app/k/gray", json!({"percent": 101}), 422),
        (Method::PATCH, "/v1/configs/app/k/gray", json!({"step": 3}), 400),
        (
            Method::POST,
            "/v1/configs/app/k/gray/report",
            json!({"variant": "gray", "ok": 0, "errors": 0}),
            422,
        ),
        (Method::POST, "/v1/configs/app/k/gray/report", json!({"variant": "purple", "ok": 1}), 400),
    ] {
        let (got, answer) = send(&api, method.clone(), path, Some(body.clone())).await;
        assert_eq!(got, status, "{method} {path} {body}: {answer}");
    }
    let (_, after) = api.get("/v1/namespaces").await.unwrap();
    assert_eq!(after["revision"], running["revision"]);
    assert_eq!(running["revision"].as_u64().unwrap(), before["revision"].as_u64().unwrap() + 1);
    let (_, entry) = api.get("/v1/configs/app/k").await.unwrap();
    assert_eq!(entry["gray"]["percent"], json!(5.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ramp_never_lowers_a_raised_percent_and_a_lone_last_step_promotes_at_once() {
    let server = TestServer::start();
    let api = Api::new(&server);
    api.put_ok("app", "raised", json!("old")).await;
    api.put_ok("app", "lone", json!("old")).await;
    let mut watcher = Watcher::subscribe(&server, &["app"], None).await.unwrap();
    watcher.next_data().await.unwrap();

    start_gray(
        &api,
        "app",
        "raised",
        json!({"value": "new",
        "steps": [{"percent": 5, "hold_secs": 1}, {"percent": 25, "hold_secs": 3600}]}),
    )
    .await;
    next_change_of(&mut watcher, "raised").await;
    // Raised by hand above the next step: the ramp's next step keeps 60%.
    let (status, _) = send(
        &api,
        reqwest::Method::PATCH,
        "/v1/configs/app/raised/gray",
        Some(json!({"percent": 60})),
    )
    .await;
    assert_eq!(status, 200);
    next_change_of(&mut watcher, "raised").await;
    let (_, op, entry) = next_change_of(&mut watcher, "raised").await;
    let gray = entry.unwrap().gray.unwrap();
    assert_eq!((op, gray.step, gray.percent), (Op::Gray, 1, 60.0));

    // A release whose only step has no hold promotes itself right away.
    start_gray(
        &api,
        "app",
        "lone",
        json!({"value": "new", "steps": [{"percent": 100}], "auto_promote": true}),
    )
    .await;
    next_change_of(&mut watcher, "lone").await;
    let (_, op, entry) = next_change_of(&mut watcher, "lone").await;
    assert_eq!((op, entry.unwrap().value), (Op::Promote, json!("new")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_naming_a_replaced_release_are_refused() {
    let server = TestServer::start();
    let api = Api::new(&server);
    api.put_ok("app", "k", json!("stable")).await;
    let first = start_gray(&api, "app", "k", json!({"value": "a", "percent": 10})).await;
    let first_release = first["gray"]["started_at"].clone();
    let second = start_gray(&api, "app", "k", json!({"value": "b", "percent": 10})).await;
    assert_ne!(second["gray"]["started_at"], first_release);

    let report = |body: Value| {
        send(&api, reqwest::Method::POST, "/v1/configs/app/k/gray/report", Some(body))
    };
    let (status, _) =
        report(json!({"variant": "gray", "errors": 5, "release": first_release})).await;
    assert_eq!(status, 404, "outcomes of the replaced release do not count");
    let (status, counts) =
        report(json!({"variant": "gray", "ok": 2, "release": second["gray"]["started_at"]})).await;
    assert_eq!((status, counts["gray"].clone()), (200, json!({"ok": 2, "errors": 0})));

    // The SDK names the release in its cache.
    let sdk = Client::builder().endpoint(&server.url).namespace("app").build().unwrap();
    sdk.wait_synced(DEADLINE).await.unwrap();
    let counts = sdk.report("app", "k", graycast_client::Variant::Gray, 1, 1).await.unwrap();
    assert_eq!((counts.gray.ok, counts.gray.errors), (3, 1));
}
