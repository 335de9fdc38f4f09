//! The Rust SDK against real server processes: sync, push, resume, cache file, errors.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use graycast_client::{ChangeEvent, Client, Error, Expect, Filter, Op};
use graycast_tests::{Api, TestServer, DEADLINE};
use serde_json::json;

fn client(server: &TestServer, namespaces: &[&str]) -> graycast_client::ClientBuilder {
    Client::builder()
        .endpoint(&server.url)
        .namespaces(namespaces.iter().copied())
        .backoff(Duration::from_millis(20), Duration::from_millis(300))
}

async fn next_event(
    stream: &mut (impl futures_util::Stream<Item = ChangeEvent> + Unpin),
) -> ChangeEvent {
    tokio::time::timeout(DEADLINE, stream.next())
        .await
        .expect("a change within the deadline")
        .expect("stream open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receives_the_initial_state_and_every_later_change() {
    let server = TestServer::start();
    let api = Api::new(&server);
    api.put_ok("app", "timeout_ms", json!(250)).await;
    api.put_ok("app", "banner", json!("hello")).await;
    api.put_ok("other", "x", json!(1)).await;

    let client = client(&server, &["app"]).label("region", "eu").build().unwrap();
    let mut changes = Box::pin(client.changes(Filter::namespace("app")));
    client.wait_synced(DEADLINE).await.unwrap();
    assert_eq!(client.get::<u64>("app", "timeout_ms").unwrap(), Some(250));
    assert_eq!(client.get::<String>("app", "banner").unwrap().as_deref(), Some("hello"));
    assert_eq!(client.get_json("other", "x"), None, "not subscribed");
    assert_eq!(client.list("app").len(), 2);
    assert!(client.status().connected && client.status().stale_since.is_none());
    // The initial snapshot shows up as changes too.
    let initial: BTreeSet<String> =
        [next_event(&mut changes).await, next_event(&mut changes).await]
            .into_iter()
            .map(|e| e.key)
            .collect();
    assert_eq!(initial, BTreeSet::from(["banner".to_owned(), "timeout_ms".to_owned()]));

    let mut expected = Vec::new();
    for i in 0..20 {
        expected.push((api.put_ok("app", &format!("k{}", i % 4), json!(i)).await, Op::Put));
    }
    let (_, deleted) = api.delete("app", "banner").await.unwrap();
    expected.push((deleted["revision"].as_u64().unwrap(), Op::Delete));
    let mut got = Vec::new();
    for _ in 0..expected.len() {
        let event = next_event(&mut changes).await;
        got.push((event.revision, event.op));
    }
    assert_eq!(got, expected);
    assert_eq!(client.get_json("app", "banner"), None);
    assert_eq!(client.get::<u64>("app", "k3").unwrap(), Some(19));

    // The server sees the client, its labels and its acknowledged revision.
    let last = expected.last().unwrap().0;
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let clients = client.fetch_clients().await.unwrap().clients;
        let me = clients.iter().find(|c| c.id == client.client_id()).expect("listed");
        assert_eq!(me.labels.get("region").map(String::as_str), Some("eu"));
        if me.applied_revision == last {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "ack never reached {last}: {me:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_and_restarted_mid_stream_leaves_no_gap_and_no_regression() {
    let mut server = TestServer::start();
    let api = Api::new(&server);
    let client = client(&server, &["app"]).build().unwrap();
    let mut changes = Box::pin(client.changes(Filter::namespace("app")));
    client.wait_synced(DEADLINE).await.unwrap();

    let mut acked = Vec::new();
    for round in 0..3 {
        for i in 0..30 {
            acked.push(
                api.put_ok("app", &format!("k{}", i % 5), json!({"round": round, "i": i})).await,
            );
            api.put_ok("noise", "n", json!(i)).await;
        }
        if round < 2 {
            // Killed while the client is connected and the last changes may be in flight.
            server.kill9();
            server.start_again();
            assert_eq!(server.url, api.url, "restarted on the same port");
        }
    }
    let last = *acked.last().unwrap();
    client.wait_for_revision(last, DEADLINE).await.unwrap();

    let mut seen = Vec::new();
    while seen.last() != Some(&last) {
        seen.push(next_event(&mut changes).await.revision);
    }
    for pair in seen.windows(2) {
        assert!(pair[0] < pair[1], "revision went from {} to {}", pair[0], pair[1]);
    }
    assert_eq!(seen, acked, "the applied sequence differs from the acknowledged writes");
    assert_eq!(
        client.get::<serde_json::Value>("app", "k4").unwrap(),
        Some(json!({"round": 2, "i": 29}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_from_the_cache_file_while_the_server_is_down_and_catches_up() {
    let mut server = TestServer::start();
    let api = Api::new(&server);
    let rev = api.put_ok("app", "flag", json!(true)).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.json");
    {
        let first = client(&server, &["app"]).cache_file(&cache).build().unwrap();
        first.wait_synced(DEADLINE).await.unwrap();
        // The file is written in the background; wait until it holds the revision.
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            let written = std::fs::read(&cache)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
            if written.is_some_and(|w| w["revision"] == json!(rev)) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "cache file never written");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    server.terminate();

    let second = client(&server, &["app"]).cache_file(&cache).build().unwrap();
    // Served at once, flagged stale, while the server is down.
    assert_eq!(second.get::<bool>("app", "flag").unwrap(), Some(true));
    let status = second.status();
    assert!(!status.synced && status.stale_since.is_some(), "{status:?}");
    assert_eq!(status.revision, rev);
    assert!(matches!(second.wait_synced(Duration::from_millis(300)).await, Err(Error::Timeout(_))));

    server.start_again();
    let api = Api::new(&server);
    second.wait_synced(DEADLINE).await.unwrap();
    let next = api.put_ok("app", "flag", json!(false)).await;
    second.wait_for_revision(next, DEADLINE).await.unwrap();
    assert_eq!(second.get::<bool>("app", "flag").unwrap(), Some(false));

    // A corrupt cache file is a warning, not a crash.
    std::fs::write(&cache, b"{corrupt").unwrap();
    let third = client(&server, &["app"]).cache_file(&cache).build().unwrap();
    third.wait_synced(DEADLINE).await.unwrap();
    assert_eq!(third.get::<bool>("app", "flag").unwrap(), Some(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_reads_and_rest_helpers_report_typed_errors() {
    let mut server = TestServer::start();
    let client = client(&server, &["app"]).build().unwrap();
    let entry = client.put("app", "name", &"graycast", Expect::Absent).await.unwrap();
    assert_eq!(entry.version, 1);
    client.wait_for_revision(entry.revision, DEADLINE).await.unwrap();

    assert_eq!(client.get::<String>("app", "name").unwrap().as_deref(), Some("graycast"));
    let err = client.get::<u64>("app", "name").unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert!(!err.is_temporary());
    assert_eq!(client.get::<u64>("app", "missing").unwrap(), None);
    assert_eq!(client.get_or("app", "name", 7u64), 7);

    let err = client.put("app", "name", &"again", Expect::Absent).await.unwrap_err();
    assert_eq!(err.code(), Some("revision_mismatch"));
    assert!(!err.is_temporary());
    let err =
        client.put("app", "name", &"x", Expect::Revision(entry.revision + 100)).await.unwrap_err();
    assert_eq!(err.code(), Some("revision_mismatch"));
    let updated = client.put("app", "name", &"v2", Expect::Revision(entry.revision)).await.unwrap();
    let history = client.history("app", "name", Some(10), None).await.unwrap();
    assert_eq!(
        history.iter().map(|h| h.revision).collect::<Vec<_>>(),
        [updated.revision, entry.revision]
    );
    let rolled = client.rollback("app", "name", entry.revision).await.unwrap();
    assert_eq!(rolled.value, json!("graycast"));
    assert_eq!(client.fetch("app", "nope").await.unwrap(), None);
    let err = client.put("bad name", "k", &1, Expect::Any).await.unwrap_err();
    assert!(matches!(err, Error::InvalidName { .. }), "{err:?}");
    let deleted = client.delete("app", "name", Expect::Any).await.unwrap();
    assert!(deleted > rolled.revision);

    server.terminate();
    let err = client.put("app", "k", &1, Expect::Any).await.unwrap_err();
    assert!(err.is_temporary(), "{err:?}");
    // Reads keep working from the cache.
    client.wait_for_revision(deleted, DEADLINE).await.unwrap();
    assert_eq!(client.get_json("app", "name"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_to_the_next_endpoint() {
    let server = TestServer::start();
    let api = Api::new(&server);
    let rev = api.put_ok("app", "k", json!(1)).await;
    // The first endpoint refuses connections: nothing listens there.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let client = Client::builder()
        .endpoint(dead_url)
        .endpoint(&server.url)
        .namespace("app")
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .build()
        .unwrap();
    client.wait_synced(DEADLINE).await.unwrap();
    assert_eq!(client.revision(), rev);
    assert_eq!(client.status().endpoint.as_deref(), Some(server.url.as_str()));
    let entry = client.put("app", "k", &2, Expect::Any).await.unwrap();
    assert_eq!(entry.value, json!(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openfeature_provider_resolves_through_the_local_evaluation() {
    use graycast_client::openfeature::GraycastProvider;
    use open_feature::provider::FeatureProvider;
    use open_feature::{EvaluationContext, EvaluationErrorCode, EvaluationReason, OpenFeature};

    let server = TestServer::start();
    let api = Api::new(&server);
    api.put_ok("app", "timeout_ms", json!(250)).await;
    api.put_ok("app", "banner", json!("hello")).await;
    let client = client(&server, &["app"]).build().unwrap();
    let entry = client
        .gray_start(
            "app",
            "timeout_ms",
            &serde_json::from_value(json!({"value": 300, "percent": 0, "allow": ["user-1"],
                "rules": [{"attribute": "region", "op": "eq", "values": ["eu"]}]}))
            .unwrap(),
        )
        .await
        .unwrap();
    client.wait_for_revision(entry.revision, DEADLINE).await.unwrap();

    let provider = GraycastProvider::new(client.clone());
    let vip = EvaluationContext::default().with_targeting_key("user-1");
    let details = provider.resolve_int_value("app/timeout_ms", &vip).await.unwrap();
    assert_eq!((details.value, details.variant.as_deref()), (300, Some("gray")));
    assert_eq!(details.reason, Some(EvaluationReason::TargetingMatch));
    let other =
        EvaluationContext::default().with_targeting_key("user-2").with_custom_field("region", "eu");
    let details = provider.resolve_int_value("app/timeout_ms", &other).await.unwrap();
    assert_eq!((details.value, details.reason), (250, Some(EvaluationReason::Split)));
    let details = provider.resolve_string_value("app/banner", &other).await.unwrap();
    assert_eq!((details.value.as_str(), details.reason), ("hello", Some(EvaluationReason::Static)));
    let err = provider.resolve_bool_value("app/banner", &other).await.unwrap_err();
    assert_eq!(err.code, EvaluationErrorCode::TypeMismatch);
    let err = provider.resolve_bool_value("app/missing", &other).await.unwrap_err();
    assert_eq!(err.code, EvaluationErrorCode::FlagNotFound);

    // Through the OpenFeature API, with a default for what cannot resolve.
    let mut api_guard = OpenFeature::singleton_mut().await;
    api_guard.set_provider(provider).await;
    let flags = api_guard.create_client();
    drop(api_guard);
    assert_eq!(flags.get_int_value("app/timeout_ms", Some(&vip), None).await.unwrap(), 300);
    assert!(flags.get_int_value("no-slash", Some(&vip), None).await.is_err());
}

fn token_file(dir: &std::path::Path) -> std::path::PathBuf {
    let sha = |secret: &str| {
        use std::io::Write as _;
        let mut child = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sha256sum runs");
        child.stdin.take().unwrap().write_all(secret.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_owned()
    };
    let path = dir.join("tokens.toml");
    std::fs::write(
        &path,
        format!(
            "[[token]]\nname = \"viewer\"\nsecret_sha256 = \"{}\"\nrole = \"read\"\nnamespaces = [\"app\"]\n",
            sha("viewer-secret")
        ),
    )
    .unwrap();
    path
}

/// A refused token is a permanent error with its status: `wait_synced` returns it at once
/// instead of timing out, and the status says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_a_permanent_error_that_waits_return_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = token_file(dir.path());
    let server = TestServer::start_with(&["--tokens", tokens.to_str().unwrap()]);
    let long = Duration::from_secs(60);
    for (token, namespace, status, code) in [
        (None, "app", 401, "unauthorized"),
        (Some("wrong"), "app", 401, "unauthorized"),
        (Some("viewer-secret"), "secrets", 403, "forbidden"),
    ] {
        let mut builder = client(&server, &[namespace]);
        if let Some(token) = token {
            builder = builder.token(token);
        }
        let client = builder.build().unwrap();
        let started = std::time::Instant::now();
        let err = client.wait_synced(long).await.expect_err("refused");
        assert!(started.elapsed() < DEADLINE, "{token:?}: waited {:?}", started.elapsed());
        assert_eq!((err.status(), err.code()), (Some(status), Some(code)), "{token:?}: {err}");
        assert!(!err.is_temporary(), "{err}");
        assert_eq!(client.status().failure, Some(err));
    }
    // The right token syncs, and the failure is gone.
    let client = client(&server, &["app"]).token("viewer-secret").build().unwrap();
    client.wait_synced(DEADLINE).await.unwrap();
    assert_eq!(client.status().failure, None);
}

/// Reads name what they cannot answer, read the gray value for a context, and a typed
/// key keeps its last good value when a bad one is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_gray_aware_typed_and_never_silently_empty() {
    let server = TestServer::start();
    let api = Api::new(&server);
    let first = api.put_ok("app", "timeout_ms", json!(250)).await;
    let client = client(&server, &["app"]).build().unwrap();
    client.wait_for_revision(first, DEADLINE).await.unwrap();

    // A namespace the client does not follow is an error, not `None`.
    let err = client.get::<u64>("other", "x").unwrap_err();
    assert!(matches!(err, Error::NotSubscribed { ref namespace } if namespace == "other"), "{err}");
    assert!(err.to_string().contains("ClientBuilder::namespace(\"other\")"), "{err}");
    assert_eq!(client.get::<u64>("app", "missing").unwrap(), None);
    let rest_only = Client::builder().endpoint(&server.url).build().unwrap();
    assert!(matches!(rest_only.wait_synced(DEADLINE).await, Err(Error::Config(_))));

    // get_for: the gray value for a subject in gray, the stable one otherwise.
    let (status, body) = api
        .request(
            reqwest::Method::PUT,
            "/v1/configs/app/timeout_ms/gray",
            None,
            Some(json!({"value": 300, "allow": ["qa"]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    client.wait_for_revision(body["revision"].as_u64().unwrap(), DEADLINE).await.unwrap();
    let qa = graycast_client::Context::subject("qa");
    let other = graycast_client::Context::subject("someone");
    assert_eq!(client.get_for::<u64>("app", "timeout_ms", &qa).unwrap(), Some(300));
    assert_eq!(client.get_for::<u64>("app", "timeout_ms", &other).unwrap(), Some(250));
    assert_eq!(client.get::<u64>("app", "timeout_ms").unwrap(), Some(250), "get is stable");

    // A typed key: a value of another type is logged and the last good one served.
    let timeout = client.typed::<u64>("app", "timeout_ms").unwrap();
    assert_eq!(timeout.get().as_deref(), Some(&250));
    assert_eq!(timeout.get_for(&qa).as_deref(), Some(&300));
    let bad = api.put_ok("app", "timeout_ms", json!("oops")).await;
    client.wait_for_revision(bad, DEADLINE).await.unwrap();
    assert!(client.get::<u64>("app", "timeout_ms").is_err());
    assert_eq!(timeout.get().as_deref(), Some(&250), "the last good value");
    assert!(matches!(timeout.last_error(), Some(Error::Decode { .. })));
    let good = api.put_ok("app", "timeout_ms", json!(400)).await;
    client.wait_for_revision(good, DEADLINE).await.unwrap();
    assert_eq!(timeout.get().as_deref(), Some(&400));
    assert_eq!(timeout.last_error(), None);
    assert!(matches!(client.typed::<u64>("other", "x"), Err(Error::NotSubscribed { .. })));

    // Changes made through a commented handle carry the comment into history.
    let entry = client
        .with_comment("raise for the sale")
        .put("app", "limit", &500, Expect::Any)
        .await
        .unwrap();
    let history = client.history("app", "limit", Some(1), None).await.unwrap();
    assert_eq!(history[0].comment.as_deref(), Some("raise for the sale"));
    let feed =
        client.fetch_changes(Some(entry.revision - 1), None, Some("app"), None).await.unwrap();
    assert_eq!(feed.items[0].comment.as_deref(), Some("raise for the sale"));
    assert_eq!(client.whoami().await.unwrap().name, "anonymous");
}
