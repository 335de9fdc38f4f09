//! Graceful shutdown with many subscribers: SIGTERM closes every connection with 1001
//! within 5 s and loses no acknowledged write; SDK clients come back spread out.
//!
//! CI runs 1,000 subscribers; `GRAYCAST_SHUTDOWN_SUBSCRIBERS=10000 cargo test -p
//! graycast-tests --test shutdown --release` runs the full-size case (the figures are in
//! the README's "Measured").

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use graycast_tests::{Api, TestServer, DEADLINE};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn subscribers() -> usize {
    std::env::var("GRAYCAST_SHUTDOWN_SUBSCRIBERS").ok().and_then(|n| n.parse().ok()).unwrap_or(1000)
}

/// Connects, subscribes and reads the snapshot.
async fn subscriber(
    url: String,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("connects");
    let subscribe = json!({"type": "subscribe", "namespaces": ["load"]}).to_string();
    ws.send(Message::text(subscribe)).await.expect("subscribes");
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) if text.contains("\"snapshot\"") => return ws,
            Some(Ok(_)) => continue,
            other => panic!("no snapshot: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_every_subscriber_with_1001_within_5_s_and_keeps_every_acknowledged_write() {
    let count = subscribers();
    let mut server = TestServer::start();
    let api = Api::new(&server);
    let watch = server.watch_url();
    let mut sockets = Vec::with_capacity(count);
    for chunk in (0..count).collect::<Vec<_>>().chunks(200) {
        let connecting = chunk.iter().map(|_| tokio::spawn(subscriber(watch.clone())));
        for socket in futures_util::future::join_all(connecting).await {
            sockets.push(socket.expect("subscriber task"));
        }
    }
    assert_eq!(server.metric("graycast_subscribers").await, Some(count as f64));

    // Writers keep writing through the shutdown; each remembers what was acknowledged.
    let acked = Arc::new(Mutex::new(Vec::<(String, u64)>::new()));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (api, acked) = (api.clone(), acked.clone());
            tokio::spawn(async move {
                for i in 0u64.. {
                    let key = format!("w{w}-{i}");
                    match api.put("load", &key, json!(i)).await {
                        Ok((200 | 201, _)) => acked.lock().unwrap().push((key, i)),
                        _ => return,
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + DEADLINE;
    while acked.lock().unwrap().len() < 100 {
        assert!(Instant::now() < deadline, "the writers never got going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Every subscriber reads until its close frame.
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                while let Some(Ok(message)) = ws.next().await {
                    if let Message::Close(frame) = message {
                        return (frame.map(|f| u16::from(f.code)), Instant::now());
                    }
                }
                (None, Instant::now())
            })
        })
        .collect();
    let pid = server.pid().expect("running");
    let signalled = Instant::now();
    let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    let mut slowest = Duration::ZERO;
    for reader in readers {
        let (code, at) = reader.await.expect("reader task");
        assert_eq!(code, Some(1001), "a subscriber was not told the server is going away");
        slowest = slowest.max(at - signalled);
    }
    eprintln!("{count} subscribers closed with 1001, the last {slowest:?} after SIGTERM");
    assert!(slowest <= Duration::from_secs(5), "the last close came {slowest:?} after SIGTERM");
    for writer in writers {
        writer.await.expect("writer task");
    }
    server.terminate();

    // Every acknowledged write is there after a restart.
    server.start_again();
    let api = Api::new(&server);
    let acked = acked.lock().unwrap().clone();
    let mut entries = std::collections::HashMap::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(key) => format!("/v1/configs/load?after={key}"),
            None => "/v1/configs/load".to_owned(),
        };
        let (status, page) = api.get(&path).await.unwrap();
        assert_eq!(status, 200, "{page}");
        for entry in page["entries"].as_array().unwrap() {
            entries.insert(entry["key"].as_str().unwrap().to_owned(), entry["value"].clone());
        }
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    for (key, value) in &acked {
        assert_eq!(entries.get(key), Some(&json!(value)), "acknowledged write {key} lost");
    }
    eprintln!("{} acknowledged writes, all kept", acked.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_clients_told_the_server_is_going_away_come_back_spread_over_a_second() {
    const CLIENTS: usize = 12;
    let mut server = TestServer::start();
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let client = graycast_client::Client::builder()
            .endpoint(server.url.clone())
            .namespace("app")
            .client_id(format!("c{i}"))
            // Told 1001, a client waits the shortest backoff plus 0–1 s: with 3 s, every
            // return comes after the restart, so the spread measured is the jitter alone.
            .backoff(Duration::from_secs(3), Duration::from_secs(5))
            .build()
            .unwrap();
        client.wait_synced(DEADLINE).await.unwrap();
        clients.push(client);
    }
    server.terminate();
    server.start_again();
    for client in &clients {
        client.wait_synced(DEADLINE).await.unwrap();
    }
    let (_, listed) = Api::new(&server).get("/v1/clients").await.unwrap();
    let mut times: Vec<chrono::DateTime<chrono::Utc>> = listed["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c: &Value| c["connected_at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(times.len(), CLIENTS);
    times.sort();
    let spread = times[CLIENTS - 1] - times[0];
    eprintln!("{CLIENTS} clients came back over {} ms", spread.num_milliseconds());
    // Uniform over a second, 12 returns span less than 300 ms with odds below 1 in 10^4.
    assert!(
        spread >= chrono::Duration::milliseconds(300),
        "{CLIENTS} clients came back within {spread:?} of each other"
    );
}
