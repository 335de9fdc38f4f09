//! The probes' subscribers: one connection each (graycast: WebSocket; etcd: a gRPC watch;
//! Redis: `SUBSCRIBE`), reporting every update they receive and when.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::resp::{parse_reply, resp};
use super::servers::Server;

/// Receipts of updates: (update number, when it arrived).
pub(super) type Arrivals = mpsc::UnboundedSender<(usize, Instant)>;

/// Subscribes `n` clients of `server`'s kind; returns once all are subscribed.
pub(super) async fn subscribe_all(server: &Server, n: usize, arrivals: &Arrivals) -> Result<()> {
    let (ready_tx, mut ready) = mpsc::unbounded_channel::<()>();
    for _ in 0..n {
        let (arrivals, ready) = (arrivals.clone(), ready_tx.clone());
        match server.name {
            "graycast" => graycast_subscriber(&server.address, arrivals, ready).await?,
            "etcd" => etcd_subscriber(&server.address, arrivals, ready).await?,
            _ => redis_subscriber(&server.address, arrivals, ready).await?,
        }
    }
    for _ in 0..n {
        tokio::time::timeout(Duration::from_secs(60), ready.recv())
            .await
            .context("the subscribers were not all ready within 60 s")?;
    }
    Ok(())
}

async fn graycast_subscriber(
    address: &str,
    arrivals: Arrivals,
    ready: mpsc::UnboundedSender<()>,
) -> Result<()> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{address}/v1/watch"))
        .await
        .context("connecting to graycast")?;
    let subscribe = json!({"type": "subscribe", "namespaces": ["compare"]});
    ws.send(Message::text(subscribe.to_string())).await?;
    // Decoded only as far as the probe needs (the other systems' probes decode no more).
    #[derive(serde::Deserialize)]
    struct Pushed {
        #[serde(rename = "type")]
        kind: String,
        entry: Option<PushedEntry>,
    }
    #[derive(serde::Deserialize)]
    struct PushedEntry {
        value: Value,
    }
    tokio::spawn(async move {
        while let Some(Ok(frame)) = ws.next().await {
            let at = Instant::now();
            let Message::Text(text) = frame else { continue };
            let Ok(message) = serde_json::from_str::<Pushed>(&text) else { continue };
            match message.kind.as_str() {
                "snapshot" => {
                    let _ = ready.send(());
                }
                "change" => {
                    let update = message.entry.and_then(|e| e.value.as_u64()).unwrap_or(u64::MAX);
                    if arrivals.send((update as usize, at)).is_err() {
                        break;
                    }
                }
                _ => {}
            }
        }
    });
    Ok(())
}

async fn etcd_subscriber(
    address: &str,
    arrivals: Arrivals,
    ready: mpsc::UnboundedSender<()>,
) -> Result<()> {
    // A client per subscriber: its own connection, as every other system's subscribers.
    let mut client = etcd_client::Client::connect([address], None).await?;
    let mut stream = client.watch("compare/flag", None).await?;
    let _ = ready.send(());
    tokio::spawn(async move {
        let _keep = client;
        while let Ok(Some(response)) = stream.message().await {
            let at = Instant::now();
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                if arrivals.send((etcd_update(kv), at)).is_err() {
                    return;
                }
            }
        }
    });
    Ok(())
}

/// The update number an etcd watch event carries (`usize::MAX`: not one of the probe's).
pub(super) fn etcd_update(kv: &etcd_client::KeyValue) -> usize {
    std::str::from_utf8(kv.value()).ok().and_then(|v| v.parse().ok()).unwrap_or(usize::MAX)
}

/// The update number of a Redis `message` reply (`usize::MAX`: not one of the probe's).
pub(super) fn redis_update(reply: &[String]) -> usize {
    reply.get(2).and_then(|v| v.parse().ok()).unwrap_or(usize::MAX)
}

async fn redis_subscriber(
    address: &str,
    arrivals: Arrivals,
    ready: mpsc::UnboundedSender<()>,
) -> Result<()> {
    let mut stream = TcpStream::connect(address).await.context("connecting to redis")?;
    stream.set_nodelay(true)?;
    stream.write_all(&resp(&["SUBSCRIBE", "compare"])).await?;
    tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(4096);
        loop {
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let at = Instant::now();
            while let Some(reply) = parse_reply(&mut buf) {
                match reply.first().map(String::as_str) {
                    Some("subscribe") => {
                        let _ = ready.send(());
                    }
                    Some("message") if arrivals.send((redis_update(&reply), at)).is_err() => return,
                    _ => {}
                }
            }
        }
    });
    Ok(())
}
