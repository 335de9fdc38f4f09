//! Exactly once across a cluster's nodes: a write or a guard report repeated with its
//! `Idempotency-Key` on another node answers the first outcome and is applied once.

use graycast_tests::etcd::{node, unique_prefix, EtcdCluster};
use graycast_tests::{eventually, Api};
use reqwest::Method;
use serde_json::json;

const JSON: (&str, &str) = ("content-type", "application/json");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_repeated_on_another_node_is_applied_once() {
    let cluster = EtcdCluster::start(3);
    let prefix = unique_prefix();
    let nodes = [node(&cluster, &prefix), node(&cluster, &prefix)];
    let (a, b) = (Api::new(&nodes[0]), Api::new(&nodes[1]));
    let path = "/v1/configs/once/k";
    let keyed = [JSON, ("idempotency-key", "w-1")];
    let (status, _, first) = a.raw(Method::PUT, path, &keyed, Some(r#"{"value": 1}"#)).await;
    assert_eq!(status, 201, "{first}");
    let later = b.put_ok("once", "k", json!(2)).await;
    let (status, _, again) = b.raw(Method::PUT, path, &keyed, Some(r#"{"value": 1}"#)).await;
    assert_eq!((status, &again), (201, &first), "the first outcome, from the other node");
    let (_, now) = b.get(path).await.expect("read");
    assert_eq!((now["value"].clone(), now["revision"].as_u64()), (json!(2), Some(later)));
    let (status, _, body) = b.raw(Method::PUT, path, &keyed, Some(r#"{"value": 9}"#)).await;
    assert_eq!((status, body["error"]["code"].clone()), (422, json!("idempotency_key_reused")));

    // A guard report, repeated on the other node: counted once.
    let gray =
        r#"{"value": 3, "percent": 50, "guard": {"max_error_rate": 0.5, "min_samples": 1000}}"#;
    let (status, _, body) =
        a.raw(Method::PUT, "/v1/configs/once/k/gray", &[JSON], Some(gray)).await;
    assert_eq!(status, 200, "{body}");
    eventually("B sees the release", || async {
        b.get("/v1/configs/once/k/gray").await.is_ok_and(|(s, _)| s == 200)
    })
    .await;
    let report = r#"{"variant": "gray", "ok": 5, "errors": 1}"#;
    let path = "/v1/configs/once/k/gray/report";
    let reported = [JSON, ("idempotency-key", "r-1")];
    for api in [&a, &b, &a] {
        let (status, _, body) = api.raw(Method::POST, path, &reported, Some(report)).await;
        assert_eq!(status, 200, "{body}");
    }
    eventually("both nodes count the report once", || async {
        let mut once = true;
        for api in [&a, &b] {
            let (_, status) = api.get("/v1/configs/once/k/gray").await.expect("status");
            once &= status["counts"]["gray"] == json!({"ok": 5, "errors": 1});
        }
        once
    })
    .await;
}

/// An SDK given both nodes' endpoints keeps writing while one node is killed: no write
/// fails, and none is applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdk_with_two_endpoints_sees_no_failed_write_when_a_node_is_killed() {
    use graycast_client::{Client, Expect};
    let cluster = EtcdCluster::start(3);
    let prefix = unique_prefix();
    let mut nodes = [node(&cluster, &prefix), node(&cluster, &prefix)];
    let client = Client::builder()
        .endpoint(&nodes[0].url)
        .endpoint(&nodes[1].url)
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("client");
    let writes = 200;
    let mut revisions = Vec::new();
    for i in 0..writes {
        if i == writes / 3 {
            nodes[0].kill9();
        }
        let entry = client.put("fleet", &format!("k{}", i % 5), &json!(i), Expect::Any).await;
        let entry = entry.unwrap_or_else(|e| panic!("write {i} failed: {e}"));
        revisions.push(entry.revision);
    }
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "one revision per write, in order");
    let survivor = Api::new(&nodes[1]);
    let mut total = 0;
    for k in 0..5 {
        let (_, history) = survivor.get(&format!("/v1/configs/fleet/k{k}/history")).await.unwrap();
        total += history["items"].as_array().map_or(0, Vec::len);
    }
    assert_eq!(total, writes, "each write applied exactly once");
}

/// A node whose watch sits on a member that stalls (SIGSTOP) moves to another member
/// within seconds, and a write answered by it is read back by it, every time. Each member
/// is paused in turn, so one of them is the one the node watches through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_member_delays_no_node_for_long_and_reads_follow_writes() {
    use graycast_tests::etcd::node_on;
    let cluster = EtcdCluster::start(3);
    let prefix = unique_prefix();
    let a = node(&cluster, &prefix);
    let api_a = Api::new(&a);
    api_a.put_ok("stall", "k", json!(0)).await;
    for member in 0..3 {
        // B writes through the two members that run.
        let others: Vec<usize> = (0..3).filter(|m| *m != member).collect();
        let b = node_on(&cluster.endpoints_of(&others), &prefix);
        let api_b = Api::new(&b);
        cluster.pause(member, true);
        let written = api_b.put_ok("stall", "k", json!(format!("b{member}"))).await;
        let started = std::time::Instant::now();
        let deadline = started + std::time::Duration::from_secs(4);
        loop {
            let (_, entry) = api_a.get("/v1/configs/stall/k").await.expect("read");
            if entry["revision"].as_u64() >= Some(written) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "member {member} paused: A still shows {entry} 4 s after B's write"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        eprintln!("member {member} paused: A applied B's write after {:?}", started.elapsed());
        // Writes through A while the member is paused: each is read back at once.
        for i in 0..3 {
            let revision = api_a.put_ok("stall", "k", json!(format!("a{member}-{i}"))).await;
            let (_, entry) = api_a.get("/v1/configs/stall/k").await.expect("read");
            assert!(entry["revision"].as_u64() >= Some(revision), "wrote {revision}, read {entry}");
        }
        cluster.pause(member, false);
    }
}

/// A node started while etcd is down listens at once, answers health and readiness
/// honestly and the API with 503, and serves the configuration once etcd is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_while_etcd_is_down_serves_once_it_is_back() {
    let mut cluster = EtcdCluster::start(3);
    let prefix = unique_prefix();
    {
        let first = node(&cluster, &prefix);
        Api::new(&first).put_ok("late", "k", json!("kept")).await;
    }
    cluster.stop_all();
    let late = node(&cluster, &prefix);
    let api = Api::new(&late);
    assert_eq!(api.get("/healthz").await.expect("healthz").0, 200);
    let (status, body) = api.get("/readyz").await.expect("readyz");
    assert_eq!(status, 503, "{body}");
    let (status, body) = api.get("/v1/configs/late/k").await.expect("read");
    assert_eq!((status, body["error"]["code"].clone()), (503, json!("unavailable")));
    // Refused before any route ran, it is still counted under its route.
    let refused = "graycast_http_requests_total{method=\"GET\",route=\"/v1/configs/{ns}/{key}\",class=\"5xx\"}";
    assert_eq!(late.metric(refused).await, Some(1.0));
    cluster.restart_all();
    eventually("the node loads its state", || async {
        api.get("/v1/configs/late/k").await.is_ok_and(|(s, b)| s == 200 && b["value"] == "kept")
    })
    .await;
    assert_eq!(api.get("/readyz").await.expect("readyz").0, 200);
}

/// A node whose watch stalls (its etcd member paused) does not check a write against the
/// schemas it last saw: the transaction requires the namespace's schemas unchanged, so a
/// value the schemas set meanwhile on another node refuse is refused here too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_on_the_schemas_still_holds_writes_to_them() {
    use graycast_tests::etcd::node_on;
    let cluster = EtcdCluster::start(3);
    let prefix = unique_prefix();
    let a = node(&cluster, &prefix);
    let api_a = Api::new(&a);
    for member in 0..3 {
        let namespace = format!("typed{member}");
        api_a.put_ok(&namespace, "port", json!(80)).await;
        let others: Vec<usize> = (0..3).filter(|m| *m != member).collect();
        let b = node_on(&cluster.endpoints_of(&others), &prefix);
        let api_b = Api::new(&b);
        cluster.pause(member, true);
        let schemas = json!({"schemas": {"port": {"type": "integer", "maximum": 65535}}});
        let (status, answer) = api_b
            .request(reqwest::Method::PUT, &format!("/v1/schemas/{namespace}"), None, Some(schemas))
            .await;
        assert_eq!(status, 200, "{answer}");
        // At once, through A, whose watch may be on the paused member.
        let (status, answer) = api_a
            .request(
                reqwest::Method::PUT,
                &format!("/v1/configs/{namespace}/port"),
                None,
                Some(json!({"value": 70000})),
            )
            .await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (422, Some("schema_violation")),
            "member {member} paused: {answer}"
        );
        cluster.pause(member, false);
    }
}
