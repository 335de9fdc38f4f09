//! The push loop: connect, subscribe from the last applied revision, apply, ack, persist,
//! and reconnect with jittered exponential backoff for as long as the client lives.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::{SinkExt, StreamExt};
use graycast_protocol::ws::{ClientHello, ClientMessage};
use graycast_protocol::ServerMessage;
use rand::Rng;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::cache;
use crate::client::Inner;
use crate::events::ChangeEvent;
use crate::Error;

/// A connection that brings no frame for this long is considered dead. The server pings
/// every 15 s, so this allows two missed pings.
const SILENCE_LIMIT: Duration = Duration::from_secs(40);

/// Runs until `stop` turns true.
pub(crate) async fn run(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let (dirty_tx, dirty_rx) = watch::channel(());
    let persister = inner.settings.cache_file.clone().map(|path| {
        let inner = inner.clone();
        tokio::spawn(persist_loop(inner, path, dirty_rx))
    });
    let endpoints = inner.settings.endpoints.len();
    let mut next_endpoint = 0;
    let mut failures: u32 = 0;
    loop {
        let endpoint = inner.settings.endpoints[next_endpoint % endpoints].clone();
        let outcome = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            outcome = session(&inner, &endpoint, &dirty_tx) => outcome,
        };
        let (error, permanent) = match outcome {
            Ok(()) => ("the server closed the connection".to_owned(), None),
            Err((synced, err)) => {
                if synced {
                    failures = 0;
                }
                (err.to_string(), (!err.is_temporary()).then_some(err))
            }
        };
        if permanent.is_some() {
            tracing::warn!(endpoint, error, "graycast refused the subscription; retrying slowly");
        } else {
            tracing::info!(endpoint, error, "graycast connection lost; reconnecting");
        }
        let delay = if permanent.is_some() {
            inner.settings.backoff_max
        } else {
            backoff(&inner, failures.saturating_add(1))
        };
        inner.status.send_modify(|s| {
            if s.connected || s.stale_since.is_none() {
                s.stale_since = Some(SystemTime::now());
            }
            s.connected = false;
            s.synced = false;
            s.last_error = Some(error);
            s.failure = permanent;
        });
        failures = failures.saturating_add(1);
        next_endpoint += 1;
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    drop(dirty_tx);
    if let Some(persister) = persister {
        let _ = persister.await;
    }
}

/// Full jitter over an exponential ceiling between the configured bounds.
fn backoff(inner: &Inner, failures: u32) -> Duration {
    let min = inner.settings.backoff_min;
    let max = inner.settings.backoff_max;
    let ceiling = min.saturating_mul(1u32 << failures.min(16)).min(max);
    let spread = ceiling.saturating_sub(min).as_millis() as u64;
    min + Duration::from_millis(rand::rng().random_range(0..=spread))
}

fn watch_url(endpoint: &str) -> String {
    match endpoint.strip_prefix("https://") {
        Some(rest) => format!("wss://{rest}/v1/watch"),
        None => format!("ws://{}/v1/watch", endpoint.trim_start_matches("http://")),
    }
}

/// Percent-encodes everything but the unreserved characters of RFC 3986, so that a token
/// with `+`, `&`, `#` or `%` reaches the server as it is.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// One connection. Returns `Err((synced, why))` when it ends, `synced` telling whether
/// it got as far as bringing the cache in sync.
async fn session(
    inner: &Inner,
    endpoint: &str,
    dirty: &watch::Sender<()>,
) -> Result<(), (bool, Error)> {
    let mut request = watch_url(endpoint);
    if let Some(token) = &inner.settings.token {
        request = format!("{request}?token={}", percent_encode(token));
    }
    #[cfg(feature = "tls")]
    let connect = tokio_tungstenite::connect_async_tls_with_config(
        &request,
        None,
        true,
        Some(tokio_tungstenite::Connector::Rustls(inner.tls.clone())),
    );
    #[cfg(not(feature = "tls"))]
    let connect = tokio_tungstenite::connect_async(&request);
    let connected = tokio::time::timeout(inner.settings.timeout, connect).await;
    let (ws, _) = match connected {
        Err(_) => return Err((false, Error::Timeout(inner.settings.timeout))),
        Ok(Err(err)) => return Err((false, connect_error(err))),
        Ok(Ok(ws)) => ws,
    };
    let (mut sink, mut stream) = ws.split();
    let since = Some(inner.cache().revision).filter(|r| *r > 0);
    let subscribe = ClientMessage::Subscribe {
        namespaces: inner.settings.namespaces.clone(),
        since,
        client: Some(ClientHello {
            id: Some(inner.settings.client_id.clone()),
            labels: inner.settings.labels.clone(),
        }),
    };
    let text =
        serde_json::to_string(&subscribe).map_err(|e| (false, Error::Protocol(e.to_string())))?;
    sink.send(Message::text(text)).await.map_err(|e| (false, Error::Transport(e.to_string())))?;
    inner.status.send_modify(|s| {
        s.connected = true;
        s.endpoint = Some(endpoint.to_owned());
        s.last_error = None;
    });
    tracing::debug!(endpoint, ?since, "subscribed");

    let mut synced = false;
    loop {
        let frame = match tokio::time::timeout(SILENCE_LIMIT, stream.next()).await {
            Err(_) => return Err((synced, Error::Timeout(SILENCE_LIMIT))),
            Ok(None) => return Err((synced, Error::Transport("connection closed".into()))),
            Ok(Some(Err(err))) => return Err((synced, Error::Transport(err.to_string()))),
            Ok(Some(Ok(frame))) => frame,
        };
        let text = match frame {
            Message::Text(text) => text,
            Message::Close(frame) => {
                let why = frame
                    .map(|f| format!("{} {}", u16::from(f.code), f.reason))
                    .unwrap_or_default();
                return Err((
                    synced,
                    Error::Transport(format!("server closed the connection {why}")),
                ));
            }
            // tungstenite answers pings itself while reading.
            _ => continue,
        };
        let message: ServerMessage = serde_json::from_str(text.as_str())
            .map_err(|e| (synced, Error::Protocol(format!("bad message from the server: {e}"))))?;
        let (events, revision, now_synced) = {
            let mut cache = inner.cache_mut();
            match message {
                ServerMessage::Snapshot { revision, entries, .. } => {
                    if revision < cache.revision {
                        tracing::warn!(revision, cached = cache.revision, "the server's snapshot is older than the cache; the server's store was replaced");
                    }
                    (cache.apply_snapshot(revision, entries), revision, true)
                }
                ServerMessage::Change { revision, op, namespace, key, entry, comment, note } => {
                    let event = cache.apply_change(ChangeEvent {
                        revision,
                        op,
                        namespace,
                        key,
                        entry: entry.map(|e| Arc::new(*e)),
                        previous: None,
                        comment,
                        note,
                    });
                    (event.into_iter().collect(), cache.revision, synced)
                }
                ServerMessage::Progress { revision } => {
                    cache.apply_progress(revision);
                    (Vec::new(), cache.revision, true)
                }
                ServerMessage::Error { code, message } => {
                    let status = crate::error::status_of(&code);
                    return Err((synced, Error::Server { status, code, message }));
                }
            }
        };
        synced = now_synced;
        inner.status.send_modify(|s| {
            s.revision = revision;
            if synced {
                s.synced = true;
                s.stale_since = None;
                s.failure = None;
            }
        });
        for event in events {
            // Nobody listening is fine.
            let _ = inner.events.send(event);
        }
        let _ = dirty.send(());
        let ack = serde_json::to_string(&ClientMessage::Ack { revision }).unwrap_or_default();
        sink.send(Message::text(ack))
            .await
            .map_err(|e| (synced, Error::Transport(e.to_string())))?;
    }
}

/// What a failed WebSocket handshake means: the server's refusal (its status and error
/// body: a refused token is 401 or 403, and permanent), a TLS failure, or the network.
fn connect_error(err: tokio_tungstenite::tungstenite::Error) -> Error {
    use tokio_tungstenite::tungstenite::Error as WsError;
    match err {
        WsError::Http(response) => {
            let status = response.status().as_u16();
            let body = response.body().as_deref().unwrap_or_default();
            match serde_json::from_slice::<graycast_protocol::ErrorBody>(body) {
                Ok(body) => {
                    Error::Server { status, code: body.error.code, message: body.error.message }
                }
                Err(_) => Error::Server {
                    status,
                    code: "http".into(),
                    message: format!("the upgrade was refused with HTTP {status}"),
                },
            }
        }
        other => {
            let described = crate::error::describe(&other);
            if crate::error::is_tls_failure(&described) {
                Error::Tls(described)
            } else {
                Error::Transport(described)
            }
        }
    }
}

/// Writes the cache file whenever the cache changed, coalescing bursts of changes.
async fn persist_loop(inner: Arc<Inner>, path: std::path::PathBuf, mut dirty: watch::Receiver<()>) {
    let mut written = None;
    while dirty.changed().await.is_ok() {
        let state = inner.cache().clone();
        if written == Some(state.revision) {
            continue;
        }
        let namespaces = inner.settings.namespaces.clone();
        let target = path.clone();
        let revision = state.revision;
        let saved =
            tokio::task::spawn_blocking(move || cache::save(&target, &namespaces, &state)).await;
        match saved {
            Ok(Ok(())) => written = Some(revision),
            Ok(Err(err)) => {
                tracing::warn!(path = %path.display(), error = %err, "cannot write the cache file")
            }
            Err(err) => tracing::warn!(error = %err, "cache file writer failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_percent_encoded() {
        assert_eq!(percent_encode("a+b&c#d%e f~Z9-._"), "a%2Bb%26c%23d%25e%20f~Z9-._");
        assert_eq!(percent_encode("ü"), "%C3%BC");
    }
}
