//! Change requests against a real server with tokens: the bypass suite (every path around
//! a policy ends with nothing applied), approvals by someone else of the digest they read,
//! stale requests, all-or-nothing apply, scheduled apply across a kill -9, and break-glass.

use std::time::{Duration, Instant};

use graycast_tests::{eventually, token_file, Api, TestServer, DEADLINE};
use reqwest::Method;
use serde_json::{json, Value};

const ADMIN: &str = "admin-secret";
const OTHER_ADMIN: &str = "other-admin-secret";
const ALICE: &str = "alice-secret";
const BOB: &str = "bob-secret";

struct Fixture {
    server: TestServer,
    api: Api,
    _dir: tempfile::TempDir,
}

fn start() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let tokens = token_file(
        dir.path(),
        &[
            ("root", ADMIN, "admin", &["*"]),
            ("root2", OTHER_ADMIN, "admin", &["*"]),
            ("alice", ALICE, "write", &["prod-*", "dev"]),
            ("bob", BOB, "write", &["prod-*"]),
        ],
    );
    let server = TestServer::start_with(&["--tokens", tokens.to_str().unwrap()]);
    let api = Api::new(&server);
    Fixture { server, api, _dir: dir }
}

impl Fixture {
    async fn call(&self, token: &str, method: Method, path: &str, body: Value) -> (u16, Value) {
        let body = (!body.is_null()).then_some(body);
        self.api.request(method, path, Some(token), body).await
    }

    async fn ok(&self, token: &str, method: Method, path: &str, body: Value) -> Value {
        let (status, answer) = self.call(token, method.clone(), path, body).await;
        assert!((200..300).contains(&status), "{method} {path}: {status} {answer}");
        answer
    }

    async fn revision(&self) -> u64 {
        let (_, list) = self.call(ADMIN, Method::GET, "/v1/configs/prod-pay", Value::Null).await;
        list["revision"].as_u64().unwrap()
    }

    async fn value(&self, key: &str) -> Value {
        let (_, entry) = self
            .call(ADMIN, Method::GET, &format!("/v1/configs/prod-pay/{key}"), Value::Null)
            .await;
        entry
    }

    /// Sets a policy on `prod-*` after writing the keys the tests start from (one with a
    /// gray release running at 30 %).
    async fn governed(&self, self_approval: bool) {
        self.ok(ADMIN, Method::PUT, "/v1/configs/prod-pay/limit", json!({"value": 5})).await;
        self.ok(ADMIN, Method::PUT, "/v1/configs/prod-pay/old", json!({"value": "v1"})).await;
        self.ok(ADMIN, Method::PUT, "/v1/configs/prod-pay/old", json!({"value": "v2"})).await;
        let gray = json!({"value": 7, "percent": 30, "allow": ["qa"]});
        self.ok(ADMIN, Method::PUT, "/v1/configs/prod-pay/limit/gray", gray).await;
        let policy = json!({"policies": [{"namespaces": ["prod-*"], "approvals": 1, "self_approval": self_approval}]});
        self.ok(ADMIN, Method::PUT, "/v1/policies", policy).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_around_a_policy_is_closed_and_exposure_reducing_ops_are_not() {
    let f = start();
    f.governed(false).await;
    let before = f.revision().await;
    let first_old = {
        let (_, history) =
            f.call(ADMIN, Method::GET, "/v1/configs/prod-pay/old/history", Value::Null).await;
        history["items"][1]["revision"].as_u64().unwrap()
    };
    let export = json!({"revision": 1, "entries": [{"namespace": "prod-pay", "key": "limit", "value": 9,
        "revision": 1, "created_revision": 1, "version": 1, "updated_at": "2026-12-07T00:00:00Z",
        "updated_by": "x", "gray": null}]});
    let refused: Vec<(Method, String, Value)> = vec![
        (Method::PUT, "/v1/configs/prod-pay/limit".into(), json!({"value": 6})),
        (Method::DELETE, "/v1/configs/prod-pay/old".into(), Value::Null),
        (Method::PUT, "/v1/configs/prod-pay/fresh".into(), json!({"value": 1})),
        (
            Method::POST,
            "/v1/configs/prod-pay/old/rollback".into(),
            json!({"to_revision": first_old}),
        ),
        (Method::PATCH, "/v1/configs/prod-pay/limit/gray".into(), json!({"allow": ["qa", "me"]})),
        (Method::PATCH, "/v1/configs/prod-pay/limit/gray".into(), json!({"percent": 60})),
        (Method::PATCH, "/v1/configs/prod-pay/limit/gray".into(), json!({"rules": []})),
        (
            Method::PUT,
            "/v1/configs/prod-pay/limit/gray".into(),
            json!({"value": 7, "steps": [{"percent": 30, "hold_secs": 60}, {"percent": 100}]}),
        ),
        (Method::POST, "/v1/configs/prod-pay/limit/gray/promote".into(), Value::Null),
        (Method::POST, "/v1/import".into(), export),
        (
            Method::PUT,
            "/v1/schemas/prod-pay".into(),
            json!({"schemas": {"limit": {"type": "integer"}}}),
        ),
    ];
    for (method, path, body) in refused {
        // A writer, and an admin without breaking glass (import is for admins only).
        let tokens: &[&str] = if path == "/v1/import" { &[ADMIN] } else { &[ALICE, ADMIN] };
        for &token in tokens {
            let (status, answer) = f.call(token, method.clone(), &path, body.clone()).await;
            assert_eq!(
                (status, answer["error"]["code"].as_str()),
                (403, Some("approval_required")),
                "{method} {path}: {answer}"
            );
            assert!(answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("prod-pay is under a policy"));
        }
    }
    assert_eq!(f.revision().await, before, "a refused write changed the store");
    // The reserved namespaces are written through their own routes only, even by an admin:
    // no policy removed, request forged or review hidden through the entry routes.
    for (method, path) in [
        (Method::DELETE, "/v1/configs/graycast.policies/policies"),
        (Method::PUT, "/v1/configs/graycast.policies/policies"),
        (Method::PUT, "/v1/configs/graycast.requests/forged"),
        (Method::PUT, "/v1/configs/graycast.reviews/r1"),
    ] {
        let body =
            if method == Method::PUT { json!({"value": {"policies": []}}) } else { Value::Null };
        let (status, answer) = f.call(ADMIN, method.clone(), path, body).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{path}: {answer}"
        );
    }
    assert_eq!(f.revision().await, before);

    // Lowering the percent, pausing and aborting need nobody.
    f.ok(ALICE, Method::PATCH, "/v1/configs/prod-pay/limit/gray", json!({"percent": 10})).await;
    f.ok(ALICE, Method::PATCH, "/v1/configs/prod-pay/limit/gray", json!({"paused": true})).await;
    let (status, _) = f
        .call(ALICE, Method::PATCH, "/v1/configs/prod-pay/limit/gray", json!({"paused": false}))
        .await;
    assert_eq!(status, 403, "resuming a ramp raises exposure");
    f.ok(ALICE, Method::DELETE, "/v1/configs/prod-pay/limit/gray", Value::Null).await;
    assert!(f.value("limit").await["gray"].is_null());
    // Other namespaces are not governed.
    f.ok(ALICE, Method::PUT, "/v1/configs/dev/limit", json!({"value": 1})).await;
}

async fn create(f: &Fixture, token: &str, ops: Value) -> Value {
    let (status, request) = f
        .call(
            token,
            Method::POST,
            "/v1/change-requests",
            json!({"ops": ops, "comment": "raise the limit"}),
        )
        .await;
    assert_eq!(status, 201, "{request}");
    request
}

fn action(request: &Value, what: &str) -> String {
    format!("/v1/change-requests/{}/{what}", request["id"].as_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_applies_only_with_someone_elses_approval_of_its_current_content() {
    let f = start();
    f.governed(false).await;
    let put =
        json!([{"op": "put", "namespace": "prod-pay", "key": "limit", "body": {"value": 10}}]);
    let request = create(&f, ALICE, put).await;
    assert_eq!((request["state"].as_str(), request["required"].as_u64()), (Some("open"), Some(1)));
    assert_eq!(request["digest"].as_str().unwrap().len(), 64);
    let digest = request["digest"].clone();

    // Self-approval, and an apply before approval, are refused.
    let (status, _) =
        f.call(ALICE, Method::POST, &action(&request, "approve"), json!({"digest": digest})).await;
    assert_eq!(status, 403);
    let (status, _) = f.call(ALICE, Method::POST, &action(&request, "apply"), json!({})).await;
    assert_eq!(status, 409);
    // A digest that is not the request's is refused.
    let (status, _) = f
        .call(BOB, Method::POST, &action(&request, "approve"), json!({"digest": "0".repeat(64)}))
        .await;
    assert_eq!(status, 409);
    let approved =
        f.ok(BOB, Method::POST, &action(&request, "approve"), json!({"digest": digest})).await;
    assert_eq!(approved["state"], "approved");

    // Edited after approval: new content, new digest, no approval.
    let path = format!("/v1/change-requests/{}", request["id"].as_str().unwrap());
    let bigger = json!({"ops": [{"op": "put", "namespace": "prod-pay", "key": "limit", "body": {"value": 1000}}]});
    let edited = f.ok(ALICE, Method::PUT, &path, bigger).await;
    assert_ne!(edited["digest"], digest);
    assert_eq!(
        (edited["state"].as_str(), edited["approvals"].as_array().map(Vec::len)),
        (Some("open"), Some(0))
    );
    let (status, _) = f.call(ALICE, Method::POST, &action(&request, "apply"), json!({})).await;
    assert_eq!(status, 409, "an edited request applies with no approval");
    let (status, _) =
        f.call(BOB, Method::POST, &action(&request, "approve"), json!({"digest": digest})).await;
    assert_eq!(status, 409, "an approval of the old digest");
    assert_eq!(f.value("limit").await["value"], 5);

    f.ok(BOB, Method::POST, &action(&request, "approve"), json!({"digest": edited["digest"]}))
        .await;
    let applied = f.ok(ALICE, Method::POST, &action(&request, "apply"), json!({})).await;
    assert_eq!(applied["state"], "applied");
    assert_eq!(f.value("limit").await["value"], 1000);
    let (_, history) =
        f.call(ADMIN, Method::GET, "/v1/configs/prod-pay/limit/history", Value::Null).await;
    let note = format!("change request {}", request["id"].as_str().unwrap());
    assert_eq!(history["items"][0]["note"], note.as_str(), "{history}");
    let (status, _) = f.call(ALICE, Method::POST, &action(&request, "apply"), json!({})).await;
    assert_eq!(status, 409, "applied once");
    let (_, listed) =
        f.call(BOB, Method::GET, "/v1/change-requests?state=applied", Value::Null).await;
    assert_eq!(listed["requests"].as_array().map(Vec::len), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_request_applies_nothing_and_a_rebase_needs_a_new_approval() {
    let f = start();
    f.governed(false).await;
    let ops = json!([
        {"op": "put", "namespace": "prod-pay", "key": "old", "body": {"value": "v3"}},
        {"op": "put", "namespace": "prod-pay", "key": "limit", "body": {"value": 11}},
    ]);
    let request = create(&f, ALICE, ops).await;
    f.ok(BOB, Method::POST, &action(&request, "approve"), json!({"digest": request["digest"]}))
        .await;
    // Someone changes one key meanwhile (an admin breaking glass).
    let (status, _) = f
        .api
        .raw(
            Method::PUT,
            "/v1/configs/prod-pay/limit",
            &[
                ("authorization", &format!("Bearer {ADMIN}")),
                ("content-type", "application/json"),
                ("x-graycast-break-glass", "incident 42: limit too low"),
            ],
            Some(r#"{"value": 6}"#),
        )
        .await
        .pipe(|(s, _, b)| (s, b));
    assert_eq!(status, 200);
    let before = f.revision().await;
    let (status, answer) = f.call(ALICE, Method::POST, &action(&request, "apply"), json!({})).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("stale_change_request")),
        "{answer}"
    );
    assert_eq!(answer["error"]["details"]["current"][0]["key"], "limit", "{answer}");
    assert_eq!(f.value("old").await["value"], "v2", "nothing applied");
    assert!(f.revision().await <= before + 1, "only the request's own move to stale");
    let (_, shown) = f
        .call(
            ALICE,
            Method::GET,
            &format!("/v1/change-requests/{}", request["id"].as_str().unwrap()),
            Value::Null,
        )
        .await;
    assert_eq!(shown["state"], "stale");
    // Approving the stale digest does nothing; a rebase is new content to approve.
    let (status, _) = f
        .call(BOB, Method::POST, &action(&request, "approve"), json!({"digest": request["digest"]}))
        .await;
    assert_eq!(status, 409);
    let rebased = f.ok(ALICE, Method::POST, &action(&request, "rebase"), json!({})).await;
    assert_eq!(
        (rebased["state"].as_str(), rebased["approvals"].as_array().map(Vec::len)),
        (Some("open"), Some(0))
    );
    f.ok(BOB, Method::POST, &action(&request, "approve"), json!({"digest": rebased["digest"]}))
        .await;
    f.ok(ALICE, Method::POST, &action(&request, "apply"), json!({})).await;
    assert_eq!(
        (f.value("old").await["value"].clone(), f.value("limit").await["value"].clone()),
        (json!("v3"), json!(11))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_is_all_or_nothing() {
    let f = start();
    f.governed(false).await;
    // A schema the second op breaks: the first is not applied either.
    let typed = json!({"schemas": {"limit": {"type": "integer"}}});
    let schema =
        create(&f, ALICE, json!([{"op": "schema.put", "namespace": "prod-pay", "body": typed}]))
            .await;
    f.ok(BOB, Method::POST, &action(&schema, "approve"), json!({"digest": schema["digest"]})).await;
    f.ok(ALICE, Method::POST, &action(&schema, "apply"), json!({})).await;
    let ops = json!([
        {"op": "put", "namespace": "prod-pay", "key": "old", "body": {"value": "v9"}},
        {"op": "put", "namespace": "prod-pay", "key": "limit", "body": {"value": "many"}},
    ]);
    let request = create(&f, ALICE, ops).await;
    f.ok(BOB, Method::POST, &action(&request, "approve"), json!({"digest": request["digest"]}))
        .await;
    let before = f.revision().await;
    let (status, answer) = f.call(ALICE, Method::POST, &action(&request, "apply"), json!({})).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (422, Some("schema_violation")),
        "{answer}"
    );
    assert_eq!(f.value("old").await["value"], "v2");
    assert_eq!(f.revision().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_request_survives_kill_9_fires_on_time_and_goes_stale_instead_of_reverting() {
    let mut f = start();
    f.governed(false).await;
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(2500);
    let body = json!({"ops": [{"op": "put", "namespace": "prod-pay", "key": "limit", "body": {"value": 42}}],
        "apply_at": at});
    let (status, request) = f.call(ALICE, Method::POST, "/v1/change-requests", body).await;
    assert_eq!(status, 201, "{request}");
    f.ok(BOB, Method::POST, &action(&request, "approve"), json!({"digest": request["digest"]}))
        .await;
    f.server.kill9();
    f.server.start_again();
    f.api = Api::new(&f.server);
    let deadline = Instant::now() + DEADLINE;
    loop {
        if f.value("limit").await["value"] == 42 {
            break;
        }
        assert!(Instant::now() < deadline, "the scheduled request never applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let late = chrono::Utc::now() - at;
    assert!(late < chrono::Duration::milliseconds(1000), "applied {late} after its time");

    // A scheduled request whose key moved goes stale at its time, with the reason.
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let body = json!({"ops": [{"op": "put", "namespace": "prod-pay", "key": "old", "body": {"value": "v3"}}],
        "apply_at": at});
    let (_, second) = f.call(ALICE, Method::POST, "/v1/change-requests", body).await;
    f.ok(BOB, Method::POST, &action(&second, "approve"), json!({"digest": second["digest"]})).await;
    f.api
        .raw(
            Method::DELETE,
            "/v1/configs/prod-pay/old",
            &[("authorization", &format!("Bearer {ADMIN}")), ("x-graycast-break-glass", "cleanup")],
            None,
        )
        .await;
    let path = format!("/v1/change-requests/{}", second["id"].as_str().unwrap());
    eventually("the scheduled request goes stale", || async {
        let (_, shown) = f.call(ALICE, Method::GET, &path, Value::Null).await;
        shown["state"] == "stale"
            && shown["reason"].as_str().is_some_and(|r| r.contains("prod-pay/old"))
    })
    .await;
    let (status, _) = f.call(ADMIN, Method::GET, "/v1/configs/prod-pay/old", Value::Null).await;
    assert_eq!(status, 404, "the stale request did not bring the deleted key back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_is_for_admins_audited_and_reviewed_by_someone_else() {
    let f = start();
    f.governed(false).await;
    let glass = |token: &'static str| {
        let api = &f.api;
        async move {
            api.raw(
                Method::PUT,
                "/v1/configs/prod-pay/limit",
                &[
                    ("authorization", &format!("Bearer {token}")),
                    ("content-type", "application/json"),
                    ("x-graycast-break-glass", "incident 7: payments down"),
                ],
                Some(r#"{"value": 99}"#),
            )
            .await
        }
    };
    let (status, _, answer) = glass(ALICE).await;
    assert_eq!(status, 403, "a write token cannot break glass: {answer}");
    let (status, _, answer) = glass(ADMIN).await;
    assert_eq!(status, 200, "{answer}");
    let (_, history) =
        f.call(ADMIN, Method::GET, "/v1/configs/prod-pay/limit/history", Value::Null).await;
    assert_eq!(history["items"][0]["note"], "break glass: incident 7: payments down");
    let (_, reviews) = f.call(ADMIN, Method::GET, "/v1/reviews", Value::Null).await;
    let review = reviews["reviews"][0].clone();
    assert_eq!(
        (review["by"].as_str(), review["acknowledged"].is_null()),
        (Some("root"), true),
        "{reviews}"
    );
    let ack = format!("/v1/reviews/{}/ack", review["id"].as_str().unwrap());
    let (status, _) = f.call(ADMIN, Method::POST, &ack, Value::Null).await;
    assert_eq!(status, 403, "the one who broke glass cannot acknowledge it");
    let acked = f.ok(OTHER_ADMIN, Method::POST, &ack, Value::Null).await;
    assert_eq!(acked["acknowledged"]["by"], "root2");
}

trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<T> Pipe for T {}
