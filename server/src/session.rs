//! One WebSocket subscriber: subscribe, snapshot or replay, live changes, heartbeat.
//!
//! A session is one `select!` loop over inbound frames, queued changes from the hub,
//! the heartbeat tick and shutdown. It keeps `sent`, the revision up to which the client
//! has been told everything about its namespaces, and never sends anything older, so
//! the client sees one gap-free, strictly ordered sequence whatever path it came by
//! (snapshot, replay, live push, resync after lag).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_ws::{AggregatedMessage, CloseCode, CloseReason, MessageStream};
use bytestring::ByteString;
use chrono::Utc;
use graycast_protocol::ws::{ClientHello, ClientMessage, ServerMessage, ALL_NAMESPACES};
use graycast_protocol::{validate_name, Entry, Revision};
use serde::Serialize;
use tokio::sync::watch;

use crate::app::AppState;
use crate::auth::{Access, Principal, Role};
use crate::error::ApiError;
use crate::guard;
use crate::hub::{change_frame, ClientRegistration, ClientState, Next, Subscription};
use crate::routes::check_names;
use crate::store::{ChangePage, StoreError};
use graycast_protocol::gray::ReportRequest;

/// Largest inbound frame, and largest inbound message after joining continuations.
pub const MAX_INBOUND_MESSAGE: usize = 64 * 1024;
/// Most namespaces in one subscription.
pub const MAX_NAMESPACES: usize = 256;
/// Most labels a client may declare, and the longest label key or value and client id.
pub const MAX_LABELS: usize = 64;
pub const MAX_LABEL_LEN: usize = 256;
/// Changes read from the change log per page during a replay.
const REPLAY_PAGE: usize = 1000;

/// The wire form of a `snapshot` message, borrowing the cached entries.
#[derive(Serialize)]
struct SnapshotFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    revision: Revision,
    namespaces: &'a [String],
    entries: Vec<&'a Entry>,
}

/// Why a session ends.
enum End {
    /// The peer closed, vanished or stopped answering.
    Gone,
    /// We close with this code after telling the peer why.
    Close(CloseCode, String),
}

impl From<actix_ws::Closed> for End {
    fn from(_: actix_ws::Closed) -> Self {
        End::Gone
    }
}

/// An active subscription of a session.
struct Active {
    sub: Subscription,
    client: ClientRegistration,
}

struct Session {
    state: AppState,
    ws: actix_ws::Session,
    remote: String,
    /// Everything up to this revision in the client's namespaces has been sent.
    sent: Revision,
    last_inbound: Instant,
    last_outbound: Instant,
    active: Option<Active>,
    /// The caller, once it presented a valid token (always `None` on an open server).
    principal: Option<Arc<Principal>>,
}

/// Runs a session until the peer leaves, misbehaves, goes silent, or the server stops.
pub async fn run(
    state: AppState,
    ws: actix_ws::Session,
    stream: MessageStream,
    remote: String,
    principal: Option<Arc<Principal>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut stream = stream
        .max_frame_size(MAX_INBOUND_MESSAGE)
        .aggregate_continuations()
        .max_continuation_size(MAX_INBOUND_MESSAGE);
    let heartbeat_every = state.config.heartbeat();
    let mut heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + heartbeat_every, heartbeat_every);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let now = Instant::now();
    let mut session = Session {
        state,
        ws,
        remote,
        sent: 0,
        last_inbound: now,
        last_outbound: now,
        active: None,
        principal,
    };

    let end = loop {
        let step = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => {
                Err(End::Close(CloseCode::Away, "server is shutting down".into()))
            }
            inbound = stream.recv() => match inbound {
                None => Err(End::Gone),
                Some(Ok(message)) => session.on_inbound(message).await,
                Some(Err(err)) => Err(session.protocol_error(&err).await),
            },
            next = next_pushed(&mut session.active) => session.on_pushed(next).await,

            _ = heartbeat.tick() => session.on_heartbeat().await,
        };
        if let Err(end) = step {
            break end;
        }
    };
    if let End::Close(code, description) = end {
        let reason = CloseReason { code, description: Some(description) };
        let _ = tokio::time::timeout(Duration::from_secs(1), session.ws.close(Some(reason))).await;
    }
}

/// Waits for what an active subscription yields next; never ready without one.
async fn next_pushed(active: &mut Option<Active>) -> Next {
    match active {
        Some(active) => active.sub.next().await,
        None => std::future::pending().await,
    }
}

/// Bounds a send to a peer: one that does not read is dropped rather than waited on
/// forever (the outbound channel of a connection holds only a few frames).
async fn bounded<T>(
    limit: Duration,
    send: impl std::future::Future<Output = Result<T, actix_ws::Closed>>,
) -> Result<T, End> {
    match tokio::time::timeout(limit, send).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(End::Gone),
    }
}

impl Session {
    async fn send(&mut self, text: impl Into<ByteString>) -> Result<(), End> {
        bounded(self.state.config.client_timeout(), self.ws.text(text)).await?;
        self.last_outbound = Instant::now();
        Ok(())
    }

    async fn send_message(&mut self, message: &ServerMessage) -> Result<(), End> {
        let text = serde_json::to_string(message).unwrap_or_default();
        self.send(text).await
    }

    /// Tells the peer what went wrong; the caller closes with `code`.
    async fn refuse(&mut self, code: CloseCode, err: ApiError) -> End {
        let message =
            ServerMessage::Error { code: err.code().to_owned(), message: err.to_string() };
        if self.send_message(&message).await.is_err() {
            return End::Gone;
        }
        End::Close(code, err.to_string())
    }

    async fn protocol_error(&mut self, err: &actix_ws::ProtocolError) -> End {
        match err {
            actix_ws::ProtocolError::Overflow => {
                let err = ApiError::PayloadTooLarge(format!(
                    "message exceeds the limit of {MAX_INBOUND_MESSAGE} bytes"
                ));
                self.refuse(CloseCode::Size, err).await
            }
            other => {
                self.refuse(CloseCode::Protocol, ApiError::BadRequest(other.to_string())).await
            }
        }
    }

    async fn on_inbound(&mut self, message: AggregatedMessage) -> Result<(), End> {
        self.last_inbound = Instant::now();
        match message {
            AggregatedMessage::Text(text) => self.on_text(&text).await,
            AggregatedMessage::Binary(_) => Err(self
                .refuse(
                    CloseCode::Unsupported,
                    ApiError::BadRequest("binary frames are not supported; send JSON text".into()),
                )
                .await),
            AggregatedMessage::Ping(bytes) => {
                bounded(self.state.config.client_timeout(), self.ws.pong(&bytes)).await
            }
            AggregatedMessage::Pong(_) => Ok(()),
            AggregatedMessage::Close(_) => Err(End::Close(CloseCode::Normal, "goodbye".into())),
        }
    }

    async fn on_text(&mut self, text: &str) -> Result<(), End> {
        let message: ClientMessage = match serde_json::from_str(text) {
            Ok(message) => message,
            Err(err) => {
                let err = if err.is_data() {
                    ApiError::BadRequest(format!("not a valid message: {err}"))
                } else {
                    ApiError::InvalidJson(format!("malformed JSON: {err}"))
                };
                return Err(self.refuse(CloseCode::Policy, err).await);
            }
        };
        match message {
            ClientMessage::Subscribe { namespaces, since, client } => {
                if self.active.is_some() {
                    let err = ApiError::BadRequest(
                        "already subscribed; open a new connection to change the subscription"
                            .into(),
                    );
                    return Err(self.refuse(CloseCode::Policy, err).await);
                }
                let client = client.unwrap_or_default();
                let checked = check_subscription(&namespaces, &client)
                    .and_then(|()| self.may_read(&namespaces));
                if let Err(err) = checked {
                    return Err(self.refuse(CloseCode::Policy, err).await);
                }
                self.subscribe(namespaces, since, client).await
            }
            ClientMessage::Auth { token } => {
                let Some(tokens) = self.state.tokens.clone() else { return Ok(()) };
                if self.active.is_some() {
                    let err = ApiError::BadRequest("auth comes before subscribe".into());
                    return Err(self.refuse(CloseCode::Policy, err).await);
                }
                match tokens.authenticate(&token) {
                    Some(principal) => {
                        self.principal = Some(principal);
                        Ok(())
                    }
                    None => {
                        let err = ApiError::Unauthorized("the access token is not valid".into());
                        Err(self.refuse(CloseCode::Policy, err).await)
                    }
                }
            }
            ClientMessage::Report { namespace, key, variant, ok, errors, release } => {
                let valid = check_names(&namespace, Some(&key)).is_ok()
                    && crate::routes::gray::check_report(ok, errors).is_ok();
                if !valid {
                    let err = ApiError::BadRequest(format!(
                        "report for {namespace:?}/{key:?} with {ok} ok and {errors} errors is not valid"
                    ));
                    return Err(self.refuse(CloseCode::Policy, err).await);
                }
                if let Err(err) = self.may_report(&namespace) {
                    return Err(self.refuse(CloseCode::Policy, err).await);
                }
                let reporter = self
                    .principal
                    .as_ref()
                    .map_or_else(|| crate::app::ANONYMOUS.to_owned(), |p| p.name.clone());
                // The guard may write an abort; the session goes on pushing meanwhile.
                let (store, guards) = (self.state.store.clone(), self.state.guards.clone());
                actix_web::rt::spawn(async move {
                    let reported = guard::report(
                        &store,
                        &guards,
                        &namespace,
                        &key,
                        &ReportRequest { variant, ok, errors, release },
                        &reporter,
                    )
                    .await;
                    if let Err(err) = reported {
                        tracing::warn!(namespace, key, error = %err, "cannot record a report");
                    }
                });
                Ok(())
            }
            ClientMessage::Ack { revision } => {
                if let Some(active) = &self.active {
                    // A client cannot have applied what it was not sent.
                    active.client.ack(revision.min(self.sent));
                }
                Ok(())
            }
        }
    }

    async fn subscribe(
        &mut self,
        namespaces: Vec<String>,
        since: Option<Revision>,
        client: ClientHello,
    ) -> Result<(), End> {
        // Register first: whatever commits after this point reaches the queue, so the
        // snapshot or replay below, plus the queue, cover every revision.
        let sub = self.state.hub.subscribe(&namespaces);
        let registration = self.state.hub.register_client(ClientState {
            id: client.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            namespaces: sub.namespaces().to_vec(),
            labels: client.labels,
            remote: self.remote.clone(),
            connected_at: Utc::now(),
            applied: AtomicU64::new(0),
        });
        self.active = Some(Active { sub, client: registration });
        match since {
            Some(since) if since <= self.state.store.revision() => {
                if !self.replay(since).await? {
                    self.send_snapshot().await?;
                }
            }
            // No position, or a position this store never reached: start from a snapshot.
            _ => self.send_snapshot().await?,
        }
        Ok(())
    }

    /// Sends every change after `since` in the subscribed namespaces from the change log.
    /// Returns false when the log no longer reaches back to `since`.
    async fn replay(&mut self, since: Revision) -> Result<bool, End> {
        self.sent = since;
        let namespaces = self.namespaces();
        let everything = namespaces.iter().any(|n| n == ALL_NAMESPACES);
        let mut after = since;
        loop {
            // The log on disk can be ahead of the cache for a moment; what lies beyond the
            // cache's revision will reach our queue, so the replay stops there. A later
            // snapshot (after lag) then never goes back behind what was replayed.
            let cap = self.state.store.revision();
            let backend = self.state.store.backend();
            let page = actix_web::rt::task::spawn_blocking(move || {
                backend.changes_after(after, REPLAY_PAGE)
            })
            .await
            .unwrap_or_else(|_| Err(StoreError::Backend("change log read panicked".into())));
            let changes = match page {
                Ok(ChangePage::Changes(changes)) => changes,
                Ok(ChangePage::Compacted) => return Ok(false),
                Err(err) => {
                    let err = ApiError::Unavailable(format!("cannot read the change log: {err}"));
                    return Err(self.refuse(CloseCode::Error, err).await);
                }
            };
            let full_page = changes.len() == REPLAY_PAGE;
            for change in changes.iter().take_while(|c| c.revision <= cap) {
                if everything || namespaces.binary_search(&change.namespace).is_ok() {
                    self.send(change_frame(change)).await?;
                }
                self.sent = change.revision;
            }
            after = self.sent;
            if !full_page || after >= cap {
                break;
            }
        }
        self.state.metrics.replays.fetch_add(1, Ordering::Relaxed);
        // Tell the client how far it is now known to be current.
        self.send_message(&ServerMessage::Progress { revision: self.sent }).await?;
        Ok(true)
    }

    async fn send_snapshot(&mut self) -> Result<(), End> {
        let namespaces = self.namespaces();
        let (revision, entries) = self.state.store.snapshot(&namespaces);
        let frame = SnapshotFrame {
            kind: "snapshot",
            revision,
            namespaces: &namespaces,
            entries: entries.iter().map(|e| e.as_ref()).collect(),
        };
        let text = serde_json::to_string(&frame).unwrap_or_default();
        drop(frame);
        self.sent = revision;
        self.state.metrics.snapshots.fetch_add(1, Ordering::Relaxed);
        self.send(text).await
    }

    /// Whether the caller may read these namespaces (`*`: admins only). On an open
    /// server everyone may.
    fn may_read(&self, namespaces: &[String]) -> Result<(), ApiError> {
        let Some(_) = &self.state.tokens else { return Ok(()) };
        let principal = self.principal.as_ref().ok_or_else(|| {
            ApiError::Unauthorized(
                "this server requires an access token: ?token=, a bearer header, or an auth message"
                    .into(),
            )
        })?;
        for namespace in namespaces {
            let allowed = if namespace == ALL_NAMESPACES {
                principal.role == Role::Admin
            } else {
                principal.can(Access::Read, namespace)
            };
            if !allowed {
                return Err(ApiError::Forbidden(format!(
                    "token {:?} may not read namespace {namespace:?}",
                    principal.name
                )));
            }
        }
        Ok(())
    }

    /// Whether the caller may report outcomes in a namespace (roles `report`, `write` and
    /// `admin`). On an open server everyone may.
    fn may_report(&self, namespace: &str) -> Result<(), ApiError> {
        let Some(_) = &self.state.tokens else { return Ok(()) };
        match &self.principal {
            None => Err(ApiError::Unauthorized("reports need an access token".into())),
            Some(p) if p.can(Access::Report, namespace) => Ok(()),
            Some(p) => Err(ApiError::Forbidden(format!(
                "token {:?} may not report outcomes in namespace {namespace:?}; reports need \
                 the report, write or admin role",
                p.name
            ))),
        }
    }

    fn namespaces(&self) -> Vec<String> {
        self.active.as_ref().map(|a| a.sub.namespaces().to_vec()).unwrap_or_default()
    }

    /// Replaces a subscription the hub gave up on with a fresh one and a snapshot.
    async fn resync(&mut self) -> Result<(), End> {
        let namespaces = self.namespaces();
        if let Some(active) = &mut self.active {
            // Register the new queue before the old one goes, then snapshot: nothing is missed.
            active.sub = self.state.hub.subscribe(&namespaces);
        }
        self.state.metrics.lag_resyncs.fetch_add(1, Ordering::Relaxed);
        tracing::info!(remote = %self.remote, "subscriber fell behind; resyncing with a snapshot");
        self.send_snapshot().await
    }

    async fn on_pushed(&mut self, next: Next) -> Result<(), End> {
        let lagged = self.active.as_ref().is_some_and(|a| a.sub.lagged());
        match next {
            Next::Lagged => self.resync().await,
            _ if lagged => self.resync().await,
            Next::Pushed(pushed) if pushed.revision > self.sent => {
                self.send(pushed.text.clone()).await?;
                self.sent = pushed.revision;
                Ok(())
            }
            // Already covered by the snapshot or replay this session sent.
            Next::Pushed(_) => Ok(()),
        }
    }

    async fn on_heartbeat(&mut self) -> Result<(), End> {
        if self.last_inbound.elapsed() >= self.state.config.client_timeout() {
            tracing::debug!(remote = %self.remote, "dropping a silent peer");
            return Err(End::Close(
                CloseCode::Policy,
                "no frame received within the client timeout".into(),
            ));
        }
        bounded(self.state.config.client_timeout(), self.ws.ping(b"")).await?;
        if self.active.is_none() || self.last_outbound.elapsed() < self.state.config.heartbeat() {
            return Ok(());
        }
        // Idle: say how far the client is current. Everything up to `published` is in our
        // queue, so once the queue is drained nothing at or below it is still to come.
        let published = self.state.hub.published();
        while let Some(pushed) = self.active.as_mut().and_then(|a| a.sub.try_recv()) {
            self.on_pushed(Next::Pushed(pushed)).await?;
        }
        if self.active.as_ref().is_some_and(|a| a.sub.lagged()) {
            return self.resync().await;
        }
        self.sent = self.sent.max(published);
        let revision = self.sent;
        self.send_message(&ServerMessage::Progress { revision }).await
    }
}

/// Validates a subscription request before anything is registered.
fn check_subscription(namespaces: &[String], client: &ClientHello) -> Result<(), ApiError> {
    if namespaces.is_empty() {
        return Err(ApiError::BadRequest("subscribe names no namespace".into()));
    }
    if namespaces.len() > MAX_NAMESPACES {
        return Err(ApiError::BadRequest(format!(
            "subscribe names {} namespaces, the limit is {MAX_NAMESPACES}",
            namespaces.len()
        )));
    }
    if namespaces.iter().any(|n| n == ALL_NAMESPACES) {
        if namespaces.len() > 1 {
            return Err(ApiError::BadRequest(format!(
                "{ALL_NAMESPACES:?} subscribes to every namespace and cannot be mixed with names"
            )));
        }
        return check_client(client);
    }
    for name in namespaces {
        validate_name(name).map_err(|source| ApiError::InvalidName {
            what: "namespace",
            name: name.clone(),
            source,
        })?;
    }
    check_client(client)
}

fn check_client(client: &ClientHello) -> Result<(), ApiError> {
    if let Some(id) = &client.id {
        if id.is_empty() || id.len() > MAX_LABEL_LEN {
            return Err(ApiError::BadRequest(format!(
                "client id must be 1 to {MAX_LABEL_LEN} bytes, not {}",
                id.len()
            )));
        }
    }
    check_labels(&client.labels)
}

fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if labels.len() > MAX_LABELS {
        return Err(ApiError::BadRequest(format!(
            "{} labels given, the limit is {MAX_LABELS}",
            labels.len()
        )));
    }
    if let Some((k, _)) =
        labels.iter().find(|(k, v)| k.len() > MAX_LABEL_LEN || v.len() > MAX_LABEL_LEN)
    {
        return Err(ApiError::BadRequest(format!(
            "label {k:?} is longer than {MAX_LABEL_LEN} bytes"
        )));
    }
    Ok(())
}
