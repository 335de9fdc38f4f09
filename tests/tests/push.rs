//! WebSocket push end to end: fan-out, ordering, resume, progress, lag, and bad messages.

use std::collections::BTreeMap;

use graycast_protocol::{Op, ServerMessage};
use graycast_tests::{Api, TestServer, Watcher};
use serde_json::{json, Value};

/// (revision, namespace, key, op) of a change message.
type Seen = (u64, String, String, Op);

fn change(message: ServerMessage) -> Seen {
    match message {
        ServerMessage::Change { revision, namespace, key, op, entry, .. } => {
            if op == Op::Delete {
                assert!(entry.is_none());
            } else {
                let entry = entry.expect("a put carries its entry");
                assert_eq!(
                    (entry.revision, &entry.namespace, &entry.key),
                    (revision, &namespace, &key)
                );
            }
            (revision, namespace, key, op)
        }
        other => panic!("expected a change, got {other:?}"),
    }
}

/// Reads `n` change messages, skipping progress.
async fn changes(watcher: &mut Watcher, n: usize) -> Vec<Seen> {
    let mut seen = Vec::with_capacity(n);
    while seen.len() < n {
        seen.push(change(watcher.next_data().await.expect("a message")));
    }
    seen
}

async fn expect_snapshot(watcher: &mut Watcher) -> (u64, BTreeMap<String, Value>) {
    match watcher.next_data().await.expect("a message") {
        ServerMessage::Snapshot { revision, entries, .. } => (
            revision,
            entries.into_iter().map(|e| (format!("{}/{}", e.namespace, e.key), e.value)).collect(),
        ),
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

fn assert_strictly_increasing(seen: &[Seen]) {
    for pair in seen.windows(2) {
        assert!(pair[0].0 < pair[1].0, "revisions out of order: {:?} then {:?}", pair[0], pair[1]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_every_subscriber_of_their_namespace_in_order_and_only_theirs() {
    let server = TestServer::start();
    let api = Api::new(&server);
    api.put_ok("a", "existing", json!("before")).await;

    let mut only_a = Watcher::subscribe(&server, &["a"], None).await.unwrap();
    let mut only_b = Watcher::subscribe(&server, &["b"], None).await.unwrap();
    let mut both = Watcher::subscribe(&server, &["a", "b"], None).await.unwrap();
    let (rev_a, state_a) = expect_snapshot(&mut only_a).await;
    assert_eq!(state_a.get("a/existing"), Some(&json!("before")));
    let (_, state_b) = expect_snapshot(&mut only_b).await;
    assert!(state_b.is_empty());
    let (rev_both, state_both) = expect_snapshot(&mut both).await;
    assert_eq!((rev_a, rev_both, state_both.len()), (1, 1, 1));

    let mut expected_a = Vec::new();
    let mut expected_b = Vec::new();
    for i in 0..30 {
        let ns = if i % 3 == 0 { "b" } else { "a" };
        let key = format!("k{}", i % 5);
        let rev = api.put_ok(ns, &key, json!(i)).await;
        let seen = (rev, ns.to_owned(), key, Op::Put);
        if ns == "a" {
            expected_a.push(seen)
        } else {
            expected_b.push(seen)
        }
    }
    let (status, deleted) = api.delete("a", "existing").await.unwrap();
    assert_eq!(status, 200);
    expected_a.push((
        deleted["revision"].as_u64().unwrap(),
        "a".into(),
        "existing".into(),
        Op::Delete,
    ));
    api.put_ok("c", "elsewhere", json!(1)).await;

    let got_a = changes(&mut only_a, expected_a.len()).await;
    let got_b = changes(&mut only_b, expected_b.len()).await;
    let got_both = changes(&mut both, expected_a.len() + expected_b.len()).await;
    assert_eq!(got_a, expected_a);
    assert_eq!(got_b, expected_b);
    let mut expected_both: Vec<Seen> = expected_a.into_iter().chain(expected_b).collect();
    expected_both.sort();
    assert_eq!(got_both, expected_both);

    // Nothing from namespace c reaches anyone: the next data message is a later change.
    let marker = api.put_ok("a", "marker", json!(true)).await;
    assert_eq!(changes(&mut only_a, 1).await[0].0, marker);
    assert_eq!(changes(&mut both, 1).await[0].0, marker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_lose_nothing() {
    let server = TestServer::start();
    let api = Api::new(&server);
    let mut watcher = Watcher::subscribe(&server, &["load"], None).await.unwrap();
    expect_snapshot(&mut watcher).await;

    const WRITERS: usize = 8;
    const EACH: usize = 40;
    let mut threads = Vec::new();
    for w in 0..WRITERS {
        // A client of its own: a connection pool must not outlive the runtime it was made on.
        let api = Api { http: reqwest::Client::new(), url: api.url.clone() };

        // Separate OS threads, each with its own runtime, as separate services would be.
        threads.push(std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let mut revisions = Vec::new();
                for i in 0..EACH {
                    revisions.push(api.put_ok("load", &format!("w{w}"), json!(i)).await);
                    revisions.push(api.put_ok("load", "shared", json!(format!("{w}-{i}"))).await);
                }
                revisions
            })
        }));
    }
    let mut acked: Vec<u64> =
        threads.into_iter().flat_map(|t| t.join().expect("writer thread")).collect();
    acked.sort();
    let total = WRITERS * EACH * 2;
    assert_eq!(acked.len(), total);
    acked.dedup();
    assert_eq!(acked.len(), total, "two writes were acknowledged with the same revision");
    assert_eq!(acked, (1..=total as u64).collect::<Vec<_>>(), "revisions have gaps");

    let seen = changes(&mut watcher, total).await;
    assert_strictly_increasing(&seen);
    assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), acked);

    let (_, shared) = api.get("/v1/configs/load/shared").await.unwrap();
    assert_eq!(shared["version"], json!(WRITERS * EACH));
    for w in 0..WRITERS {
        let (_, entry) = api.get(&format!("/v1/configs/load/w{w}")).await.unwrap();
        assert_eq!(entry["value"], json!(EACH - 1));
    }
    let (_, history) = api.get("/v1/configs/load/shared/history?limit=1000").await.unwrap();
    assert_eq!(history["items"].as_array().map(Vec::len), Some(WRITERS * EACH));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_with_since_gets_exactly_the_missed_changes_also_across_a_restart() {
    let mut server = TestServer::start();
    let api = Api::new(&server);
    let mut watcher = Watcher::subscribe(&server, &["app"], None).await.unwrap();
    expect_snapshot(&mut watcher).await;
    let mut last = 0;
    for i in 0..5 {
        last = api.put_ok("app", "k", json!(i)).await;
    }
    let seen = changes(&mut watcher, 5).await;
    assert_eq!(seen.last().unwrap().0, last);
    drop(watcher);

    // Missed while disconnected: changes in app, and noise in another namespace.
    let mut missed = Vec::new();
    for i in 0..4 {
        missed.push(api.put_ok("app", &format!("m{i}"), json!(i)).await);
        api.put_ok("other", "noise", json!(i)).await;
    }
    let (_, deleted) = api.delete("app", "k").await.unwrap();
    missed.push(deleted["revision"].as_u64().unwrap());

    let mut watcher = Watcher::subscribe(&server, &["app"], Some(last)).await.unwrap();
    // After the replay the server says how far the client is now current (its progress
    // covers the other namespace's writes too). A write is answered once durable, before
    // the hub publishes it: the delete may come live, after the replay and its progress.
    let mut replayed = Vec::new();
    let mut progress = None;
    while replayed.len() < missed.len() || progress.is_none() {
        match watcher.next().await.unwrap() {
            ServerMessage::Progress { revision } => {
                progress.get_or_insert((revision, replayed.len()));
            }
            message => replayed.push(change(message)),
        }
    }
    assert_eq!(replayed.iter().map(|s| s.0).collect::<Vec<_>>(), missed);
    assert_eq!(replayed.last().unwrap().3, Op::Delete);
    let (current, after) = progress.unwrap_or_default();
    assert!(after > 0, "a progress ends the replay, not before it");
    assert!(current >= replayed[after - 1].0, "progress {current} behind the replay");
    if let Some(next) = replayed.get(after) {
        assert_eq!(current, next.0 - 1, "progress {current}, then change {}", next.0);
    } else {
        assert_eq!(current, *missed.last().unwrap());
    }
    let head = api.put_ok("other", "noise", json!("x")).await - 1;
    let last_seen = *missed.last().unwrap();
    drop(watcher);

    // Across a restart: the change log is durable.
    server.restart();
    let api = Api::new(&server);
    let after_restart = api.put_ok("app", "after", json!("restart")).await;
    assert!(after_restart > head + 1, "revisions keep growing after a restart");
    let mut watcher = Watcher::subscribe(&server, &["app"], Some(last_seen)).await.unwrap();
    let replayed = changes(&mut watcher, 1).await;
    assert_eq!(replayed[0].0, after_restart);
    // And live changes follow the replay.
    let live = api.put_ok("app", "live", json!(1)).await;
    assert_eq!(changes(&mut watcher, 1).await[0].0, live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_older_than_the_retained_log_gets_a_snapshot() {
    let server = TestServer::start_with(&["--changelog-retain", "5"]);
    let api = Api::new(&server);
    for i in 0..20 {
        api.put_ok("app", &format!("k{}", i % 3), json!(i)).await;
    }
    let mut watcher = Watcher::subscribe(&server, &["app"], Some(2)).await.unwrap();
    let (revision, state) = expect_snapshot(&mut watcher).await;
    assert_eq!(revision, 20);
    assert_eq!(state.len(), 3);
    assert_eq!(state["app/k1"], json!(19));
    // A since within the log is still replayed.
    let mut watcher = Watcher::subscribe(&server, &["app"], Some(17)).await.unwrap();
    let replayed = changes(&mut watcher, 3).await;
    assert_eq!(replayed.iter().map(|s| s.0).collect::<Vec<_>>(), [18, 19, 20]);
    // A since from the future (another store) is answered with a snapshot too.
    let mut watcher = Watcher::subscribe(&server, &["app"], Some(1000)).await.unwrap();
    assert_eq!(expect_snapshot(&mut watcher).await.0, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_subscribers_get_progress() {
    let server = TestServer::start_with(&["--heartbeat-ms", "100"]);
    let api = Api::new(&server);
    let mut watcher = Watcher::subscribe(&server, &["quiet"], None).await.unwrap();
    assert_eq!(expect_snapshot(&mut watcher).await.0, 0);
    let noise = api.put_ok("busy", "k", json!(1)).await;
    // Progress eventually covers the change made elsewhere, and never goes back.
    let mut last = 0;
    loop {
        match watcher.next().await.unwrap() {
            ServerMessage::Progress { revision } => {
                assert!(revision >= last);
                last = revision;
                if revision >= noise {
                    break;
                }
            }
            other => panic!("expected only progress, got {other:?}"),
        }
    }
    assert_eq!(last, noise);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_is_resynced_while_others_keep_receiving() {
    let server = TestServer::start_with(&["--subscriber-budget-bytes", "2097152"]);
    let api = Api::new(&server);
    let mut reader = Watcher::subscribe(&server, &["big"], None).await.unwrap();
    let mut stalled = Watcher::subscribe(&server, &["big"], None).await.unwrap();
    expect_snapshot(&mut reader).await;
    expect_snapshot(&mut stalled).await;

    // Enough data to fill the socket buffers of a peer that does not read.
    const WRITES: usize = 120;
    let blob = "x".repeat(512 * 1024);
    let mut last = 0;
    for i in 0..WRITES {
        last = api.put_ok("big", &format!("k{}", i % 10), json!({"i": i, "blob": blob})).await;
        if i % 10 == 9 {
            // The reader keeps up while the other peer reads nothing.
            let seen = changes(&mut reader, 10).await;
            assert_eq!(seen.last().unwrap().0, last);
        }
    }

    // The stalled peer now reads: what it gets ends in the final state, by way of a snapshot.
    let mut got_snapshot = false;
    let mut state: BTreeMap<String, u64> = BTreeMap::new();
    let mut position = 0;
    while position < last {
        match stalled.next_data().await.unwrap() {
            ServerMessage::Snapshot { revision, entries, .. } => {
                assert!(revision >= position, "a resync snapshot never goes back");
                got_snapshot = true;
                position = revision;
                state = entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value["i"].as_u64().unwrap()))
                    .collect();
            }
            ServerMessage::Change { revision, key, entry, .. } => {
                assert!(revision > position, "change {revision} after position {position}");
                position = revision;
                state.insert(key, entry.unwrap().value["i"].as_u64().unwrap());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(got_snapshot, "the stalled subscriber was never resynced");
    let expected: BTreeMap<String, u64> =
        (0..10).map(|k| (format!("k{k}"), (WRITES - 10 + k) as u64)).collect();
    assert_eq!(state, expected);

    let metrics =
        api.http.get(format!("{}/metrics", api.url)).send().await.unwrap().text().await.unwrap();
    let resyncs = metrics
        .lines()
        .find_map(|l| l.strip_prefix("graycast_snapshots_total{cause=\"lag\"} "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(resyncs.is_some_and(|n| n >= 1), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_are_listed_with_labels_and_acked_revision() {
    let server = TestServer::start();
    let api = Api::new(&server);
    let rev = api.put_ok("app", "k", json!(1)).await;
    let mut watcher = Watcher::connect(&server).await.unwrap();
    watcher
        .send(json!({"type": "subscribe", "namespaces": ["app", "more"],
                     "client": {"id": "svc-7", "labels": {"region": "eu"}}}))
        .await
        .unwrap();
    assert_eq!(expect_snapshot(&mut watcher).await.0, rev);
    watcher.send(json!({"type": "ack", "revision": rev})).await.unwrap();

    // Wait for the ack to be recorded.
    let deadline = std::time::Instant::now() + graycast_tests::DEADLINE;
    loop {
        let (_, body) = api.get("/v1/clients").await.unwrap();
        let clients = body["clients"].as_array().unwrap().clone();
        assert_eq!(clients.len(), 1);
        let client = &clients[0];
        assert_eq!(client["id"], json!("svc-7"));
        assert_eq!(client["namespaces"], json!(["app", "more"]));
        assert_eq!(client["labels"], json!({"region": "eu"}));
        assert!(client["remote"].as_str().unwrap().starts_with("127.0.0.1:"));
        if client["applied_revision"] == json!(rev) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "ack never recorded: {client}");
        tokio::task::yield_now().await;
    }
    drop(watcher);
    let deadline = std::time::Instant::now() + graycast_tests::DEADLINE;
    while !api.get("/v1/clients").await.unwrap().1["clients"].as_array().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "client still listed after disconnecting");
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_get_an_error_then_a_close_frame() {
    let server = TestServer::start();
    let cases: Vec<(String, &str, u16)> = vec![
        ("{not json".into(), "invalid_json", 1008),
        (r#"{"type":"shout"}"#.into(), "bad_request", 1008),
        (r#"{"type":"subscribe","namespaces":[]}"#.into(), "bad_request", 1008),
        (r#"{"type":"subscribe","namespaces":["bad name"]}"#.into(), "invalid_name", 1008),
        (json!({"type": "subscribe", "namespaces": (0..300).map(|i| format!("n{i}")).collect::<Vec<_>>()}).to_string(), "bad_request", 1008),
        ("x".repeat(100 * 1024), "payload_too_large", 1009),
    ];
    for (text, code, close) in cases {
        let mut watcher = Watcher::connect(&server).await.unwrap();
        watcher.send_text(&text).await.unwrap();
        match watcher.next().await.unwrap() {
            ServerMessage::Error { code: got, message } => {
                assert_eq!(got, code, "for {:.60}: {message}", text);
                assert!(!message.is_empty());
            }
            other => panic!("expected an error for {text:.60}, got {other:?}"),
        }
        assert_eq!(watcher.expect_close().await.unwrap(), Some(close), "close code for {text:.60}");
    }
    // Subscribing twice on one connection is refused.
    let mut watcher = Watcher::subscribe(&server, &["a"], None).await.unwrap();
    expect_snapshot(&mut watcher).await;
    watcher.send(json!({"type": "subscribe", "namespaces": ["b"]})).await.unwrap();
    assert!(matches!(watcher.next_data().await.unwrap(), ServerMessage::Error { .. }));
    assert_eq!(watcher.expect_close().await.unwrap(), Some(1008));
    // The server is fine.
    assert_eq!(Api::new(&server).get("/healthz").await.unwrap().0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_dropped_and_the_subscriber_limit_holds() {
    let server = TestServer::start_with(&[
        "--heartbeat-ms",
        "50",
        "--client-timeout-ms",
        "300",
        "--max-subscribers",
        "2",
    ]);
    let first = Watcher::subscribe(&server, &["a"], None).await.unwrap();
    let mut second = Watcher::subscribe(&server, &["a"], None).await.unwrap();
    expect_snapshot(&mut second).await;
    // A third connection is refused while two are open.
    let refused = tokio_tungstenite::connect_async(server.watch_url()).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503)
        }
        other => panic!("expected 503, got {other:?}"),
    }
    // `first` is never polled, so it answers no ping: the server drops it. `second`
    // reads (tungstenite answers pings while reading) and stays.
    let api = Api::new(&server);
    let deadline = std::time::Instant::now() + graycast_tests::DEADLINE;
    loop {
        // Keep `second` alive and wait until only it is listed.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(100), second.next()).await;
        let (_, body) = api.get("/v1/clients").await.unwrap();
        if body["clients"].as_array().unwrap().len() == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "silent peer never dropped");
    }
    drop(first);
    let mut third = Watcher::subscribe(&server, &["a"], None).await.unwrap();
    expect_snapshot(&mut third).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_subscribers_with_going_away() {
    let mut server = TestServer::start();
    let api = Api::new(&server);
    let rev = api.put_ok("a", "k", json!(1)).await;
    let mut watcher = Watcher::subscribe(&server, &["a"], None).await.unwrap();
    assert_eq!(expect_snapshot(&mut watcher).await.0, rev);
    let status = tokio::task::spawn_blocking(move || {
        let code = server.terminate();
        (code, server)
    });
    assert_eq!(watcher.expect_close().await.unwrap(), Some(1001));
    let (code, mut server) = status.await.unwrap();
    assert_eq!(code, Some(0), "graceful exit");
    server.start_again();
    let api = Api::new(&server);
    assert_eq!(api.get("/v1/configs/a/k").await.unwrap().1["revision"], json!(rev));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_to_every_namespace_includes_ones_created_later() {
    let server = TestServer::start();
    let api = Api::new(&server);
    let first = api.put_ok("a", "k", json!(1)).await;
    let mut all = Watcher::subscribe(&server, &["*"], None).await.unwrap();
    let (revision, state) = expect_snapshot(&mut all).await;
    assert_eq!((revision, state.len()), (first, 1));
    let later = api.put_ok("born-later", "k", json!(2)).await;
    let seen = changes(&mut all, 1).await;
    assert_eq!(seen[0], (later, "born-later".to_owned(), "k".to_owned(), Op::Put));
    drop(all);
    // Resuming a wildcard subscription replays every namespace.
    let third = api.put_ok("c", "k", json!(3)).await;
    let mut resumed = Watcher::subscribe(&server, &["*"], Some(first)).await.unwrap();
    let replayed = changes(&mut resumed, 2).await;
    assert_eq!(replayed.iter().map(|s| s.0).collect::<Vec<_>>(), [later, third]);
    // "*" cannot be mixed with names.
    let mut mixed = Watcher::subscribe(&server, &["*", "a"], None).await.unwrap();
    assert!(matches!(mixed.next().await.unwrap(), ServerMessage::Error { .. }));
}
