//! One subscriber connection, after the WebSocket handshake: subscribe, catch up
//! (snapshot or replay), live changes, heartbeat, and the writing of its output.
//!
//! A session is one task and one `select!` loop over the socket's inbound bytes, the
//! writing of its [`Outbound`] queue, the hub's wake-ups, the catch-up work, the heartbeat
//! tick and shutdown. The hub appends live changes to the queue itself; the session
//! appends its replies, snapshots, replays and control frames, and drains the queue with
//! vectored writes, so a burst of changes costs fewer writes than deliveries.
//!
//! Time limits: a client must subscribe within `--subscribe-timeout-ms`; a peer that sends
//! nothing (not even a pong) for `--client-timeout-ms` is closed; a peer that takes none
//! of its output for as long is cut off at once (its socket is reset, so neither the
//! kernel nor the server keeps its buffers).

mod catch_up;
mod checks;

pub use crate::push::socket::Socket;

use std::io::IoSlice;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use chrono::Utc;
use graycast_protocol::gray::ReportRequest;
use graycast_protocol::ws::{ClientHello, ClientMessage, ServerMessage};
use graycast_protocol::Revision;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use self::catch_up::{catch_up_task, CatchUp};
pub use self::checks::{check_subscription, MAX_LABELS, MAX_LABEL_LEN, MAX_NAMESPACES};
use crate::auth::Access;
use crate::error::check_names;
use crate::error::ApiError;
use crate::gray::guard;
use crate::metrics::{Disconnect, Metrics, SnapshotCause};
use crate::push::clients::{ClientRegistration, ClientState};
use crate::push::frame::{self, close, FrameError, Inbound};
use crate::push::hub::Subscription;
use crate::push::outbound::Outbound;
use crate::push::selection::Selection;
use crate::push::wire::{self, Transport};

use crate::state::{AppState, Caller};

/// Largest inbound message (joined fragments included).
pub const MAX_INBOUND_MESSAGE: usize = 64 * 1024;
/// Changes read from the change log per page during a replay.
pub(super) const REPLAY_PAGE: usize = 256;
/// Time a closing connection has to take its last frames before it is reset.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// An idle connection's read buffer is given back above this size.
const IDLE_READ_BUFFER: usize = 4096;

/// An active subscription of a session.
/// How often a replay's end looks whether the hub has published what it covers.
const REPLAY_SETTLE_POLL: Duration = Duration::from_millis(1);

struct Active {
    _sub: Subscription,
    selection: Selection,
    client: ClientRegistration,
}

/// How a session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// Close frame queued; finish writing, then close.
    Closing,
    /// The peer left, or broke the connection: nothing more can be said.
    Gone,
    /// The peer takes no output: reset the connection.
    Stalled,
}

pub(super) struct Session {
    transport: Transport,
    state: AppState,
    out: Arc<Outbound>,
    reader: frame::Reader,
    remote: String,
    caller: Caller,
    active: Option<Active>,
    catch_up: CatchUp,
    last_inbound: Instant,
    /// `out.sent()` when the session last looked, to tell when something was sent.
    last_sent: Revision,
    /// When a `progress` is due: one heartbeat after anything was last sent.
    progress_due: tokio::time::Instant,
    /// The heartbeat period: pings, and the longest silence of an idle subscriber.
    heartbeat_every: Duration,
    /// Why the snapshot being prepared is sent.
    snapshot_cause: SnapshotCause,
    /// Why the session is ending, once it is (the first reason wins).
    ended_by: Option<Disconnect>,
    /// After a replay: the store's revision when it ended. Its `progress` waits until the
    /// hub has published that far, so that every write acknowledged before is sent first.
    replay_target: Option<Revision>,
}

/// How a session starts.
pub enum Opening {
    /// A WebSocket after its handshake, with the bytes the client sent right behind it.
    WebSocket { inbound: BytesMut },
    /// An event stream, whose request (checked already) is its subscription.
    EventStream { namespaces: Vec<String>, since: Option<Revision>, client: ClientHello },
}

/// Runs a session until the peer leaves, misbehaves, goes silent, or the server stops.
pub async fn run<S: Socket>(
    state: AppState,
    socket: S,
    opening: Opening,
    remote: String,
    caller: Caller,
) {
    let budget = state.config.subscriber_budget_bytes;
    let transport = match opening {
        Opening::WebSocket { .. } => Transport::WebSocket,
        Opening::EventStream { .. } => Transport::EventStream,
    };
    let mut session = Session {
        transport,
        out: Outbound::new(budget, transport),
        reader: frame::Reader::new(MAX_INBOUND_MESSAGE),
        remote,
        caller,
        active: None,
        catch_up: CatchUp::Live,
        last_inbound: Instant::now(),
        last_sent: 0,
        progress_due: tokio::time::Instant::now() + state.config.heartbeat(),
        heartbeat_every: state.config.heartbeat(),
        snapshot_cause: SnapshotCause::New,
        ended_by: None,
        replay_target: None,
        state,
    };
    let mut shutdown = session.state.shutdown.clone();
    let heartbeat_every = session.state.config.heartbeat();
    let mut heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + heartbeat_every, heartbeat_every);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if transport == Transport::WebSocket && session.state.config.direct_writes {
        if let Some(direct) = socket.direct() {
            session.out.write_directly_to(direct);
        }
    }
    let (mut reader, mut writer) = tokio::io::split(socket);
    let (mut inbound, mut ended) = match opening {
        Opening::WebSocket { mut inbound } => {
            let ended = session.on_bytes(&mut inbound).err();
            (inbound, ended)
        }
        Opening::EventStream { namespaces, since, client } => {
            session.subscribe(namespaces, since, client);
            (BytesMut::new(), None)
        }
    };
    let mut deadline = tokio::time::Instant::now() + CLOSE_GRACE;
    let subscribe_by = tokio::time::Instant::now() + session.state.config.subscribe_timeout();

    let end = loop {
        match ended {
            Some(End::Closing) if !session.out.has_output() => break End::Closing,
            Some(End::Gone | End::Stalled) => break ended.unwrap_or(End::Gone),
            _ => {}
        }
        if ended.is_none() {
            // A lag is handled at once, even while output is being written: the changes
            // not begun are dropped rather than written first.
            if let Err(end) = session.on_wake() {
                ended = Some(end);
                continue;
            }
            session.feed_catch_up();
            session.note_sent();
        }
        let writing = session.out.has_output();
        let step = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop), if ended.is_none() => {
                session.end_because(Disconnect::Shutdown);
                Err(session.close(close::GOING_AWAY, "server is shutting down"))
            }
            written = write_some(&mut writer, &session.out, &session.state.metrics), if writing => match written {
                Ok(()) => {
                    session.after_write();
                    Ok(())
                }
                Err(_) => Err(End::Gone),
            },
            read = reader.read_buf(&mut inbound), if ended.is_none() => match read {
                Ok(0) | Err(_) => Err(End::Gone),
                Ok(_) => {
                    session.last_inbound = Instant::now();
                    session.on_bytes(&mut inbound)
                }
            },
            _ = session.out.changed(), if !writing && ended.is_none() => session.on_wake(),
            done = catch_up_task(&mut session.catch_up), if ended.is_none() => session.on_catch_up(done),
            _ = heartbeat.tick(), if ended.is_none() => session.on_heartbeat(),
            _ = tokio::time::sleep_until(session.progress_due), if ended.is_none() && session.is_live() => {
                session.on_progress_due();
                Ok(())
            }
            _ = tokio::time::sleep_until(subscribe_by), if ended.is_none() && session.active.is_none() => {
                Err(session.subscribe_overdue())
            }
            _ = tokio::time::sleep_until(deadline), if ended == Some(End::Closing) => Err(End::Stalled),
        };
        if let Err(end) = step {
            if ended.is_none() && end == End::Closing {
                deadline = tokio::time::Instant::now() + CLOSE_GRACE;
            }
            ended = Some(end);
        }
        if inbound.is_empty() && inbound.capacity() > IDLE_READ_BUFFER {
            inbound = BytesMut::new();
        }
    };
    session.out.close();
    session.state.metrics.record_disconnect(session.ended_by.unwrap_or(Disconnect::Gone));
    drop(session);
    let socket = reader.unsplit(writer);
    match end {
        End::Closing => {
            let mut socket = socket;
            let _ = tokio::time::timeout(CLOSE_GRACE, socket.shutdown()).await;
        }
        End::Stalled => socket.reset_on_close(),
        End::Gone => {}
    }
}

/// Writes what the queue holds (one vectored write) and drops what went out.
async fn write_some<W: AsyncWrite + Unpin>(
    writer: &mut W,
    out: &Outbound,
    metrics: &Metrics,
) -> std::io::Result<()> {
    let chunk = out.next_write();
    let slices: Vec<IoSlice<'_>> = chunk.iter().map(|b| IoSlice::new(b)).collect();
    let written = writer.write_vectored(&slices).await?;
    if written == 0 {
        return Err(std::io::ErrorKind::WriteZero.into());
    }
    // Recorded once the queue's lock is released: the histogram is shared by every session.
    for committed_at in out.advance(written) {
        metrics.record_push(committed_at.elapsed());
    }
    Ok(())
}

impl Session {
    /// Queues a JSON message.
    fn send(&self, message: &ServerMessage) {
        self.out.push(wire::message(self.transport, message), false);
    }

    /// An event stream's client never acknowledges: what was written whole counts as
    /// applied (a WebSocket client sends its own acks).
    fn after_write(&self) {
        if self.transport == Transport::EventStream && !self.out.has_output() {
            if let Some(active) = &self.active {
                active.client.ack(self.out.sent());
            }
        }
    }

    /// Queues a close frame; the session ends once it is written.
    fn close(&mut self, code: u16, reason: &str) -> End {
        if let Some(frame) = wire::close(self.transport, code, reason) {
            self.out.push(frame, false);
        }
        self.out.close();
        self.active = None;
        End::Closing
    }

    /// Records why the session ends, unless a reason was given already.
    fn end_because(&mut self, reason: Disconnect) {
        self.ended_by.get_or_insert(reason);
    }

    /// Tells the peer what went wrong, then closes with the error's close code.
    fn refuse(&mut self, err: ApiError) -> End {
        let code = err.close_code();
        self.refuse_with(code, err)
    }

    /// Tells the peer what went wrong, then closes with `code` (a frame-level refusal).
    fn refuse_with(&mut self, code: u16, err: ApiError) -> End {
        self.end_because(match &err {
            ApiError::Unauthorized(_) | ApiError::Forbidden(_) => Disconnect::Unauthorized,
            ApiError::RequestTimeout(_) => Disconnect::SubscribeTimeout,
            ApiError::Internal(_) | ApiError::Unavailable(_) => Disconnect::Internal,
            _ => Disconnect::ProtocolError,
        });
        self.send(&ServerMessage::Error { code: err.code().to_owned(), message: err.to_string() });
        self.close(code, &err.to_string())
    }

    /// Handles the whole frames among the received bytes.
    fn on_bytes(&mut self, inbound: &mut BytesMut) -> Result<(), End> {
        loop {
            match self.reader.next(inbound) {
                Ok(None) => return Ok(()),
                Ok(Some(message)) => self.on_inbound(message)?,
                Err(err) => {
                    let code = err.close_code();
                    let api = match err {
                        FrameError::TooBig { .. } => ApiError::PayloadTooLarge(format!(
                            "{err}; the largest message is {MAX_INBOUND_MESSAGE} bytes"
                        )),
                        other => ApiError::BadRequest(other.to_string()),
                    };
                    return Err(self.refuse_with(code, api));
                }
            }
        }
    }

    fn on_inbound(&mut self, message: Inbound) -> Result<(), End> {
        match message {
            Inbound::Text(text) => self.on_text(&text),
            Inbound::Binary => Err(self.refuse_with(
                close::UNSUPPORTED,
                ApiError::BadRequest("binary frames are not supported; send JSON text".into()),
            )),
            Inbound::Ping(payload) => {
                self.out.push(frame::pong(&payload), false);
                Ok(())
            }
            Inbound::Pong => Ok(()),
            Inbound::Close(code) => {
                // The frame reader let only codes a peer may send through; echo it.
                let code = code.unwrap_or(close::NORMAL);
                self.end_because(Disconnect::ClientClosed);
                Err(self.close(code, "goodbye"))
            }
        }
    }

    fn on_text(&mut self, text: &str) -> Result<(), End> {
        let message: ClientMessage = match serde_json::from_str(text) {
            Ok(message) => message,
            Err(err) => {
                let err = if err.is_data() {
                    ApiError::BadRequest(format!("not a valid message: {err}"))
                } else {
                    ApiError::InvalidJson(format!("malformed JSON: {err}"))
                };
                return Err(self.refuse(err));
            }
        };
        match message {
            ClientMessage::Subscribe { namespaces, since, client } => {
                if self.active.is_some() {
                    let err = ApiError::BadRequest(
                        "already subscribed; open a new connection to change the subscription"
                            .into(),
                    );
                    return Err(self.refuse(err));
                }
                let client = client.unwrap_or_default();
                let checked = check_subscription(&namespaces, &client)
                    .and_then(|()| self.caller.may_subscribe(&namespaces));
                if let Err(err) = checked {
                    return Err(self.refuse(err));
                }
                self.subscribe(namespaces, since, client);
                Ok(())
            }
            ClientMessage::Auth { token } => {
                if self.active.is_some() {
                    let err = ApiError::BadRequest("auth comes before subscribe".into());
                    return Err(self.refuse(err));
                }
                match self.state.identify(Some(&token)) {
                    Ok(caller) => {
                        self.caller = caller;
                        Ok(())
                    }
                    Err(err) => Err(self.refuse(err)),
                }
            }
            ClientMessage::Report { namespace, key, variant, ok, errors, release } => {
                let valid = check_names(&namespace, Some(&key)).is_ok()
                    && guard::check_report(ok, errors).is_ok();
                if !valid {
                    let err = ApiError::BadRequest(format!(
                        "report for {namespace:?}/{key:?} with {ok} ok and {errors} errors is not valid"
                    ));
                    return Err(self.refuse(err));
                }
                if let Err(err) = self.caller.may(Access::Report, Some(&namespace)) {
                    return Err(self.refuse(err));
                }
                let reporter = self.caller.name();
                // The guard may write an abort; the session goes on pushing meanwhile.
                let (store, guards) = (self.state.store.clone(), self.state.guards.clone());
                actix_web::rt::spawn(async move {
                    let report = ReportRequest { variant, ok, errors, release };
                    let reported =
                        guard::report(&store, &guards, &namespace, &key, &report, &reporter).await;
                    if let Err(err) = reported {
                        tracing::warn!(namespace, key, error = %err, "cannot record a report");
                    }
                });
                Ok(())
            }
            ClientMessage::Nack(nack) => {
                let Some(active) = &self.active else {
                    let err = ApiError::BadRequest("nack before subscribe".into());
                    return Err(self.refuse(err));
                };
                let client = active.client.id().to_owned();
                if let Err(err) = self.caller.may(Access::Read, Some(&nack.namespace)) {
                    return Err(self.refuse(err));
                }
                let reports = self.caller.may(Access::Report, Some(&nack.namespace)).is_ok();
                if let Err(err) = super::nack::record(&self.state, &nack, &client, reports) {
                    return Err(self.refuse(err));
                }
                Ok(())
            }
            ClientMessage::Ack { revision } => {
                if let Some(active) = &self.active {
                    // A client cannot have applied what it was not sent.
                    active.client.ack(revision.min(self.out.sent()));
                }
                Ok(())
            }
        }
    }

    fn subscribe(&mut self, namespaces: Vec<String>, since: Option<Revision>, client: ClientHello) {
        // Register first: whatever commits after this point reaches the queue (waiting
        // until the catch-up below is queued), so together they cover every revision.
        let selection = Selection::new(&namespaces, self.caller.principal());
        let sub = self.state.hub.subscribe(&selection, self.out.clone());
        let namespaces = sub.namespaces().to_vec();
        let registration = self.state.hub.clients.register_client(ClientState {
            id: client.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            namespaces: namespaces.clone(),
            labels: client.labels,
            remote: self.remote.clone(),
            connected_at: Utc::now(),
            applied: AtomicU64::new(0),
        });
        self.active = Some(Active { _sub: sub, selection, client: registration });
        match since {
            Some(since) if since <= self.state.store.revision() => self.start_replay(since),
            // A position this store never reached: start from a snapshot.
            Some(_) => self.start_snapshot(SnapshotCause::TooOld),
            None => self.start_snapshot(SnapshotCause::New),
        }
    }

    fn selection(&self) -> Selection {
        self.active.as_ref().map_or_else(|| Selection::new(&[], None), |a| a.selection.clone())
    }

    fn on_heartbeat(&mut self) -> Result<(), End> {
        let config = &self.state.config;
        if let Some(since) = self.out.stalled_since() {
            if since.elapsed() >= config.client_timeout() {
                tracing::debug!(remote = %self.remote, "resetting a connection that takes no output");
                self.end_because(Disconnect::Stalled);
                return Err(End::Stalled);
            }
        }
        // An event stream's client never writes: a vanished one is found by TCP instead
        // (TCP_USER_TIMEOUT) or by the output it stops taking.
        let silent = self.transport == Transport::WebSocket
            && self.last_inbound.elapsed() >= config.client_timeout();
        if silent {
            tracing::debug!(remote = %self.remote, "closing a silent peer");
            self.end_because(Disconnect::Timeout);
            return Err(self.close(close::POLICY, "no frame received within the client timeout"));
        }
        self.out.push(wire::heartbeat(self.transport), false);
        Ok(())
    }

    /// Whether the client is subscribed and caught up (the hub appends its changes).
    fn is_live(&self) -> bool {
        self.active.is_some() && matches!(self.catch_up, CatchUp::Live)
    }

    /// Notes whether anything was sent since the last look: the next `progress` is due one
    /// heartbeat after the last thing sent, whatever it was.
    fn note_sent(&mut self) {
        // The hub may have written a change straight to the socket: count from when.
        let (sent, sent_at) = self.out.sent_with_time();
        if sent != self.last_sent {
            self.last_sent = sent;
            // A replay's progress stays due soon.
            if self.replay_target.is_none() {
                self.progress_due = tokio::time::Instant::from_std(sent_at) + self.heartbeat_every;
            }
        }
    }

    /// Nothing was sent for a heartbeat: say how far the client is current. Every change up
    /// to `published` is queued already, so nothing at or below it is still to come.
    fn on_progress_due(&mut self) {
        if let Some(target) = self.replay_target {
            // The hub publishes a commit a moment after its writer was answered: until it
            // has published everything the replay's end covers, the client is not current.
            let published = self.state.hub.published();
            let since = self.out.sent();
            let transport = self.transport;
            let pushed = published >= target
                && self
                    .out
                    .push_progress_if_idle(since, published, |r| wire::progress(transport, r));
            if pushed {
                self.replay_target = None;
                self.last_sent = self.out.sent();
                self.progress_due = tokio::time::Instant::now() + self.heartbeat_every;
            } else {
                self.progress_due = tokio::time::Instant::now() + REPLAY_SETTLE_POLL;
            }
            return;
        }
        // The hub may have written a change straight to the socket since the last look.
        let before = self.last_sent;
        self.note_sent();
        if self.last_sent != before && self.progress_due > tokio::time::Instant::now() {
            return;
        }
        let published = self.state.hub.published();
        let since = self.out.sent();
        let transport = self.transport;
        self.out.push_progress_if_idle(since, published, |r| wire::progress(transport, r));
        self.last_sent = self.out.sent();
        let (next, now) = (self.progress_due + self.heartbeat_every, tokio::time::Instant::now());
        self.progress_due = if next > now { next } else { now + self.heartbeat_every };
    }

    /// The client did not subscribe in time.
    fn subscribe_overdue(&mut self) -> End {
        let err = ApiError::RequestTimeout(format!(
            "no subscribe within {} ms of connecting",
            self.state.config.subscribe_timeout().as_millis()
        ));
        self.refuse(err)
    }
}
