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
use crate::events::ChangeEvent;
use crate::shared::{Inner, Transport};
use crate::Error;

/// A connection that brings no frame for this long is considered dead. The server pings
/// every 15 s, so this allows two missed pings.
const SILENCE_LIMIT: Duration = Duration::from_secs(40);

/// Why a connection ended.
struct Ended {
    /// It got as far as bringing the cache in sync.
    synced: bool,
    error: Error,
    /// The server said it is going away (close 1001: a restart or a shutdown).
    going_away: bool,
}

impl Ended {
    fn new(synced: bool, error: Error) -> Ended {
        Ended { synced, error, going_away: false }
    }
}

/// Runs until `stop` turns true.
pub(crate) async fn run(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let (dirty_tx, dirty_rx) = watch::channel(());
    let persister = inner.settings.cache_file.clone().map(|path| {
        let inner = inner.clone();
        tokio::spawn(persist_loop(inner, path, dirty_rx))
    });
    let endpoints = inner.settings.endpoints.len();
    // Per endpoint, whether to use server-sent events: from the start when asked, or once
    // its WebSocket upgrade was refused by something in between (Transport::Auto).
    let mut sse = vec![inner.settings.transport == Transport::Sse; endpoints];
    let mut next_endpoint = 0;
    let mut failures: u32 = 0;
    loop {
        let index = next_endpoint % endpoints;
        let endpoint = inner.settings.endpoints[index].clone();
        let transport = if sse[index] { Transport::Sse } else { Transport::WebSocket };
        let outcome = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            outcome = async {
                match transport {
                    Transport::Sse => session_sse(&inner, &endpoint, &dirty_tx).await,
                    _ => session_ws(&inner, &endpoint, &dirty_tx).await,
                }
            } => outcome,
        };
        let ended = match outcome {
            Ok(()) => Ended::new(true, Error::Transport("the server closed the connection".into())),
            Err(ended) => ended,
        };
        if ended.synced {
            failures = 0;
        }
        if inner.settings.transport == Transport::Auto
            && transport == Transport::WebSocket
            // The upgrade failed (a connection that was up and then broke is no reason).
            && !inner.status.borrow().connected
            && upgrade_blocked(&ended.error)
        {
            tracing::warn!(endpoint, error = %ended.error, "the WebSocket upgrade was refused; using server-sent events");
            sse[index] = true;
            continue;
        }
        let error = ended.error.to_string();
        let permanent = (!ended.error.is_temporary()).then_some(ended.error);
        if permanent.is_some() {
            tracing::warn!(endpoint, error, "graycast refused the subscription; retrying slowly");
        } else {
            tracing::info!(endpoint, error, "graycast connection lost; reconnecting");
        }
        let delay = if permanent.is_some() {
            inner.settings.backoff_max
        } else if ended.going_away {
            // Every client of a server that stops hears it at once: spread the returns over
            // a second, so the next server is not met by all of them together.
            inner.settings.backoff_min + Duration::from_millis(rand::rng().random_range(0..=1000))
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

/// Whether a failed upgrade looks refused by something between the client and graycast
/// (a proxy that drops WebSockets), so server-sent events may get through. graycast itself
/// refuses an upgrade only for a token (401, 403) or its limit (503).
fn upgrade_blocked(error: &Error) -> bool {
    match error {
        Error::Server { status, .. } => matches!(status, 400 | 404 | 405 | 426 | 501 | 502),
        Error::Protocol(_) => true,
        _ => false,
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

/// The revision after `since` the connection starts from: the cache's, if it has one.
fn resume_point(inner: &Inner) -> Option<graycast_protocol::Revision> {
    Some(inner.cache().revision).filter(|r| *r > 0)
}

/// Marks the connection open.
fn connected(inner: &Inner, endpoint: &str, transport: Transport) {
    inner.status.send_modify(|s| {
        s.connected = true;
        s.endpoint = Some(endpoint.to_owned());
        s.transport = Some(transport);
        s.last_error = None;
    });
}

/// Applies one server message to the cache, tells the listeners, and returns the revision
/// the client is now at (to acknowledge); `synced` turns true with the first snapshot or
/// progress. An `error` message ends the connection.
fn apply(
    inner: &Inner,
    message: ServerMessage,
    synced: &mut bool,
    dirty: &watch::Sender<()>,
) -> Result<graycast_protocol::Revision, Error> {
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
                (event.into_iter().collect(), cache.revision, *synced)
            }
            ServerMessage::Progress { revision } => {
                cache.apply_progress(revision);
                (Vec::new(), cache.revision, true)
            }
            ServerMessage::Error { code, message } => {
                let status = crate::error::status_of(&code);
                return Err(Error::Server { status, code, message });
            }
        }
    };
    *synced = now_synced;
    // Events first: whoever wakes on `synced` and then subscribes to changes must
    // not be handed the changes that led up to it.
    for event in events {
        // Nobody listening is fine.
        let _ = inner.events.send(Arc::new(event));
    }
    inner.status.send_modify(|s| {
        s.revision = revision;
        if now_synced {
            s.synced = true;
            s.stale_since = None;
            s.failure = None;
        }
    });
    let _ = dirty.send(());
    Ok(revision)
}

/// One WebSocket connection, until it ends.
async fn session_ws(inner: &Inner, endpoint: &str, dirty: &watch::Sender<()>) -> Result<(), Ended> {
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
    let connected_ws = tokio::time::timeout(inner.settings.timeout, connect).await;
    let (ws, _) = match connected_ws {
        Err(_) => return Err(Ended::new(false, Error::Timeout(inner.settings.timeout))),
        Ok(Err(err)) => return Err(Ended::new(false, connect_error(err))),
        Ok(Ok(ws)) => ws,
    };
    let (mut sink, mut stream) = ws.split();
    let since = resume_point(inner);
    let subscribe = ClientMessage::Subscribe {
        namespaces: inner.settings.namespaces.clone(),
        since,
        client: Some(ClientHello {
            id: Some(inner.settings.client_id.clone()),
            labels: inner.settings.labels.clone(),
        }),
    };
    let text = serde_json::to_string(&subscribe)
        .map_err(|e| Ended::new(false, Error::Protocol(e.to_string())))?;
    sink.send(Message::text(text))
        .await
        .map_err(|e| Ended::new(false, Error::Transport(e.to_string())))?;
    connected(inner, endpoint, Transport::WebSocket);
    tracing::debug!(endpoint, ?since, "subscribed");

    let mut synced = false;
    loop {
        let frame = match tokio::time::timeout(SILENCE_LIMIT, stream.next()).await {
            Err(_) => return Err(Ended::new(synced, Error::Timeout(SILENCE_LIMIT))),
            Ok(None) => {
                return Err(Ended::new(synced, Error::Transport("connection closed".into())))
            }
            Ok(Some(Err(err))) => {
                return Err(Ended::new(synced, Error::Transport(err.to_string())))
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let text = match frame {
            Message::Text(text) => text,
            Message::Close(frame) => {
                let going_away = frame.as_ref().is_some_and(|f| u16::from(f.code) == 1001);
                let why = frame
                    .map(|f| format!("{} {}", u16::from(f.code), f.reason))
                    .unwrap_or_default();
                let error = Error::Transport(format!("server closed the connection {why}"));
                return Err(Ended { synced, error, going_away });
            }
            // tungstenite answers pings itself while reading.
            _ => continue,
        };
        let message: ServerMessage = serde_json::from_str(text.as_str()).map_err(|e| {
            Ended::new(synced, Error::Protocol(format!("bad message from the server: {e}")))
        })?;
        let revision =
            apply(inner, message, &mut synced, dirty).map_err(|e| Ended::new(synced, e))?;
        let ack = serde_json::to_string(&ClientMessage::Ack { revision }).unwrap_or_default();
        sink.send(Message::text(ack))
            .await
            .map_err(|e| Ended::new(synced, Error::Transport(e.to_string())))?;
    }
}

/// One server-sent events stream (`/v1/events`), until it ends. The server acknowledges
/// on the stream's behalf what it passed on.
async fn session_sse(
    inner: &Inner,
    endpoint: &str,
    dirty: &watch::Sender<()>,
) -> Result<(), Ended> {
    let mut query = vec![
        ("namespaces", inner.settings.namespaces.join(",")),
        ("client", inner.settings.client_id.clone()),
    ];
    if let Some(since) = resume_point(inner) {
        query.push(("since", since.to_string()));
    }
    let mut request = inner
        .http
        .get(format!("{endpoint}/v1/events"))
        .query(&query)
        .header(reqwest::header::ACCEPT, "text/event-stream")
        // The stream lasts; the client's request timeout is for its start only.
        .timeout(Duration::from_secs(365 * 24 * 3600));
    if let Some(token) = &inner.settings.token {
        request = request.bearer_auth(token);
    }
    let response = match tokio::time::timeout(inner.settings.timeout, request.send()).await {
        Err(_) => return Err(Ended::new(false, Error::Timeout(inner.settings.timeout))),
        Ok(Err(err)) => return Err(Ended::new(false, err.into())),
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    if !status.is_success() {
        let body = response.bytes().await.unwrap_or_default();
        let error = crate::error::from_answer(status.as_u16(), &body, || {
            ("http", format!("the event stream was refused with HTTP {status}"))
        });
        return Err(Ended::new(false, error));
    }
    connected(inner, endpoint, Transport::Sse);
    let mut stream = response.bytes_stream();
    let mut events = EventReader::default();
    let mut synced = false;
    loop {
        let chunk = match tokio::time::timeout(SILENCE_LIMIT, stream.next()).await {
            Err(_) => return Err(Ended::new(synced, Error::Timeout(SILENCE_LIMIT))),
            // The server ends the stream when it stops (or refuses, after an error event).
            Ok(None) => {
                let error = Error::Transport("the server ended the event stream".into());
                return Err(Ended { synced, error, going_away: synced });
            }
            Ok(Some(Err(err))) => return Err(Ended::new(synced, err.into())),
            Ok(Some(Ok(chunk))) => chunk,
        };
        for data in events.push(&chunk) {
            let message: ServerMessage = serde_json::from_str(&data).map_err(|e| {
                Ended::new(synced, Error::Protocol(format!("bad event from the server: {e}")))
            })?;
            apply(inner, message, &mut synced, dirty).map_err(|e| Ended::new(synced, e))?;
        }
    }
}

/// Splits an event stream into the `data` of its events (comments, `retry:`, `event:`
/// and `id:` lines are not needed: the data says its type and revision).
#[derive(Default)]
struct EventReader {
    buf: Vec<u8>,
    data: String,
}

impl EventReader {
    /// Adds bytes; returns the data of every event they complete.
    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        // What is left from the last call holds no line end: search only the new bytes
        // (a snapshot is one line of many chunks).
        let mut search = self.buf.len();
        self.buf.extend_from_slice(bytes);
        let mut done = Vec::new();
        let mut start = 0;
        while let Some(end) = self.buf[search..].iter().position(|b| *b == b'\n') {
            let end = search + end;
            let line = &self.buf[start..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                if !self.data.is_empty() {
                    done.push(std::mem::take(&mut self.data));
                }
            } else if let Some(data) = line.strip_prefix(b"data:") {
                let data = data.strip_prefix(b" ").unwrap_or(data);
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(&String::from_utf8_lossy(data));
            }
            start = end + 1;
            search = start;
        }
        self.buf.drain(..start);
        done
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
            crate::error::from_answer(status, body, || {
                ("http", format!("the upgrade was refused with HTTP {status}"))
            })
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
    fn event_streams_split_into_their_data() {
        let mut reader = EventReader::default();
        assert!(reader.push(b"retry: 1000\n\nevent: change\nid: 2\ndata: {\"a\"").is_empty());
        assert_eq!(
            reader.push(b":1}\n\n: heartbeat\n\ndata: x\r\ndata: y\r\n\r\n"),
            ["{\"a\":1}", "x\ny"]
        );
        assert!(reader.buf.is_empty());
    }

    #[test]
    fn tokens_are_percent_encoded() {
        assert_eq!(percent_encode("a+b&c#d%e f~Z9-._"), "a%2Bb%26c%23d%25e%20f~Z9-._");
        assert_eq!(percent_encode("ü"), "%C3%BC");
    }
}
