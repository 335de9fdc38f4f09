//! Server-sent events (`/v1/events`): the push protocol for networks that drop WebSockets,
//! resumed with `Last-Event-ID`, and the SDK's fallback to it.

use std::time::Duration;

use futures_util::StreamExt;
use graycast_client::{Client, Filter, Transport};
use graycast_protocol::ServerMessage;
use graycast_tests::{token_file, Api, TestServer, DEADLINE};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One event of a stream.
#[derive(Debug)]
struct Event {
    kind: String,
    id: Option<u64>,
    message: ServerMessage,
}

/// An event-stream reader over a streaming HTTP response.
struct Events {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

impl Events {
    async fn open(url: &str, last_event_id: Option<u64>) -> Events {
        let mut request = reqwest::Client::new().get(url);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.expect("the stream opens");
        assert_eq!(response.status(), 200);
        let kind = response.headers()["content-type"].to_str().unwrap().to_owned();
        assert_eq!(kind, "text/event-stream");
        Events { body: Box::pin(response.bytes_stream()), buf: String::new() }
    }

    /// The next event (comments and `retry:` skipped), within the deadline.
    async fn next(&mut self) -> Event {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut kind, mut id, mut data) = (None, None, None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        kind = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.parse().expect("a numeric id"));
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(v.to_owned());
                    }
                }
                if let (Some(kind), Some(data)) = (kind, data) {
                    let message = serde_json::from_str(&data).expect("data is a server message");
                    return Event { kind, id, message };
                }
                continue;
            }
            let chunk = tokio::time::timeout(DEADLINE, self.body.next())
                .await
                .expect("an event within the deadline")
                .expect("the stream is open")
                .expect("the stream reads");
            self.buf.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_resumes_with_last_event_id_across_a_restart_with_no_gap() {
    let mut server = TestServer::start_with(&["--heartbeat-ms", "500"]);
    let api = Api::new(&server);
    let first = api.put_ok("app", "k", json!(0)).await;
    let url = format!("{}/v1/events?namespaces=app", server.url);
    let mut events = Events::open(&url, None).await;
    let snapshot = events.next().await;
    assert_eq!((snapshot.kind.as_str(), snapshot.id), ("snapshot", Some(first)));
    assert!(
        matches!(snapshot.message, ServerMessage::Snapshot { ref entries, .. } if entries.len() == 1)
    );
    let mut last = first;
    for i in 1..=3 {
        let revision = api.put_ok("app", "k", json!(i)).await;
        let event = loop {
            let event = events.next().await;
            if event.kind != "progress" {
                break event;
            }
        };
        assert_eq!((event.kind.as_str(), event.id), ("change", Some(revision)));
        assert_eq!(event.message.revision(), Some(revision), "the id is the message's revision");
        last = revision;
    }
    drop(events);

    // The server restarts; changes happen while the client is away.
    server.restart();
    let mut missed = Vec::new();
    for i in 0..5 {
        missed.push(api.put_ok("app", &format!("k{i}"), json!(i)).await);
    }
    api.put_ok("other", "x", json!(1)).await; // not in the stream's namespaces

    // Reconnecting with the last id received replays exactly what was missed, in order.
    let mut events = Events::open(&url, Some(last)).await;
    for revision in &missed {
        let event = events.next().await;
        assert_eq!((event.kind.as_str(), event.id), ("change", Some(*revision)), "{event:?}");
    }
    let progress = events.next().await;
    assert_eq!(progress.kind, "progress");
    assert!(progress.id >= missed.last().copied());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_check_tokens_names_and_the_connection_limit_as_subscriptions_do() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = token_file(dir.path(), &[("viewer", "viewer-secret", "read", &["app"])]);
    let server = TestServer::start_with(&["--tokens", tokens.to_str().unwrap()]);
    let client = reqwest::Client::new();
    let get = |path: &str, bearer: Option<&str>| {
        let mut request = client.get(format!("{}{path}", server.url));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(status(get("/v1/events?namespaces=app", None).await.unwrap()), 401);
    assert_eq!(status(get("/v1/events?namespaces=app", Some("wrong")).await.unwrap()), 401);
    assert_eq!(
        status(get("/v1/events?namespaces=secrets", Some("viewer-secret")).await.unwrap()),
        403
    );
    assert_eq!(
        status(get("/v1/events?namespaces=bad%20name", Some("viewer-secret")).await.unwrap()),
        400
    );
    assert_eq!(status(get("/v1/events", Some("viewer-secret")).await.unwrap()), 400);
    assert_eq!(
        status(get("/v1/events?namespaces=app&colour=red", Some("viewer-secret")).await.unwrap()),
        400
    );
    let bad_id = client
        .get(format!("{}/v1/events?namespaces=app", server.url))
        .bearer_auth("viewer-secret")
        .header("Last-Event-ID", "abc")
        .send()
        .await
        .unwrap();
    assert_eq!(status(bad_id), 400);
    // ?token= works too (an EventSource cannot send headers), and `*` is what it may read.
    let mut events =
        Events::open(&format!("{}/v1/events?namespaces=*&token=viewer-secret", server.url), None)
            .await;
    assert_eq!(events.next().await.kind, "snapshot");
}

/// An HTTP proxy that refuses WebSocket upgrades (as some corporate proxies do) and passes
/// everything else to `backend`.
async fn upgrade_refusing_proxy(backend: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else { return };
            let backend = backend.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if inbound.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                if String::from_utf8_lossy(&head)
                    .to_ascii_lowercase()
                    .contains("upgrade: websocket")
                {
                    let _ = inbound
                        .write_all(b"HTTP/1.1 501 Not Implemented\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                    return;
                }
                let Ok(mut outbound) = TcpStream::connect(&backend).await else { return };
                if outbound.write_all(&head).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    format!("http://{address}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_falls_back_to_events_where_websockets_are_refused_and_misses_nothing() {
    let mut server = TestServer::start();
    let api = Api::new(&server);
    api.put_ok("app", "k", json!(0)).await;
    let proxy = upgrade_refusing_proxy(server.url.trim_start_matches("http://").to_owned()).await;
    let client = Client::builder()
        .endpoint(&proxy)
        .namespace("app")
        .backoff(Duration::from_millis(20), Duration::from_millis(300))
        .build()
        .unwrap();
    client.wait_synced(DEADLINE).await.unwrap();
    let mut changes = Box::pin(client.changes(Filter::namespace("app")));
    assert_eq!(client.status().transport, Some(Transport::Sse));
    assert_eq!(client.get::<u64>("app", "k").unwrap(), Some(0));

    // Every change arrives once, in order, across a restart of the server.
    let mut expected = Vec::new();
    for i in 1..=3 {
        expected.push(api.put_ok("app", "k", json!(i)).await);
    }
    server.restart();
    for i in 4..=6 {
        expected.push(api.put_ok("app", "k", json!(i)).await);
    }
    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        let event = tokio::time::timeout(DEADLINE, changes.next()).await.unwrap().unwrap();
        seen.push(event.revision);
    }
    assert_eq!(seen, expected);
    assert_eq!(client.get::<u64>("app", "k").unwrap(), Some(6));

    // Forced WebSocket through the same proxy never syncs; forced SSE directly does.
    let websocket = Client::builder()
        .endpoint(&proxy)
        .namespace("app")
        .transport(Transport::WebSocket)
        .build()
        .unwrap();
    assert!(websocket.wait_synced(Duration::from_millis(500)).await.is_err());
    let sse = Client::builder()
        .endpoint(&server.url)
        .namespace("app")
        .transport(Transport::Sse)
        .build()
        .unwrap();
    sse.wait_synced(DEADLINE).await.unwrap();
    assert_eq!(sse.status().transport, Some(Transport::Sse));
}

/// Events are written by the session itself on the shared encoders (no WebSocket frames
/// re-parsed): what a stream's client was sent whole counts as applied in `/v1/clients`,
/// heartbeats are comment lines, and a large snapshot arrives whole as one event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_acknowledged_as_written_and_carries_large_snapshots_and_heartbeats() {
    let server = TestServer::start_with(&["--heartbeat-ms", "200"]);
    let api = Api::new(&server);
    let big = "s".repeat(600 * 1024);
    for i in 0..3 {
        api.put_ok("big", &format!("k{i}"), json!(big)).await;
    }
    let url = format!("{}/v1/events?namespaces=big&client=sse-acks", server.url);
    let response = reqwest::get(&url).await.expect("the stream opens");
    let mut body = Box::pin(response.bytes_stream());
    let mut raw = String::new();
    let written = api.put_ok("big", "small", json!(1)).await;
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        assert!(std::time::Instant::now() < deadline, "no heartbeat and change in {raw:.200}");
        let chunk = tokio::time::timeout(DEADLINE, body.next()).await.unwrap().unwrap().unwrap();
        raw.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        if raw.contains(": heartbeat\n\n") && raw.contains(&format!("id: {written}\n")) {
            break;
        }
    }
    let snapshot = raw.split("event: snapshot\n").nth(1).expect("a snapshot event");
    let data = snapshot.split("\n\n").next().unwrap_or_default();
    let data = data.split("data: ").nth(1).expect("its data line");
    let message: ServerMessage = serde_json::from_str(data).expect("the whole snapshot");
    match message {
        ServerMessage::Snapshot { entries, .. } => assert_eq!(entries.len(), 3),
        other => panic!("expected the snapshot, got {other:?}"),
    }
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let (_, clients) = api.get("/v1/clients").await.unwrap();
        let applied = clients["clients"]
            .as_array()
            .and_then(|all| all.iter().find(|c| c["id"] == "sse-acks"))
            .map(|c| c["applied_revision"].as_u64().unwrap_or_default());
        if applied == Some(written) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "applied {applied:?}, never {written}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
