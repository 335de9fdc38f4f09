//! The outbound side of one subscriber connection: encoded frames that the hub and the
//! session append and the connection's writer drains, in order, bounded in bytes.
//!
//! This is the one hop of a delivery: the hub thread appends a change's frame (encoded
//! once, shared by every connection) and wakes the connection's task, which writes
//! whatever has queued up in one vectored write. Nothing else sits between a commit and
//! the socket.
//!
//! Ordering: while the session brings a client up to date (snapshot or replay), the hub's
//! changes wait aside (`pending`); going live moves those the snapshot or replay did not
//! cover behind it. `sent` is the revision up to which the client has everything, and no
//! change at or below it is queued again, so whatever path a client came by it sees one
//! gap-free, strictly ordered sequence.
//!
//! Bounds: changes queued (or pending) beyond the byte budget mark the subscriber
//! lagged; the session then drops the changes not yet begun and resyncs the client with
//! a snapshot. Snapshots are shared frames, not counted against the budget: they cost a
//! connection nothing of its own.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use graycast_protocol::Revision;
use tokio::sync::Notify;

use crate::push::wire::{Pushed, Snapshot, Transport};

/// Most frames handed to one vectored write.
const MAX_SLICES: usize = 64;
/// Most bytes handed to one write; a larger frame is written in pieces.
const MAX_WRITE: usize = 256 * 1024;

/// One queued piece of output.
struct Piece {
    bytes: Bytes,
    /// Whether the piece counts against the budget (not shared snapshots).
    counted: bool,
    /// The piece begins a frame (not a continuation piece of a frame in pieces).
    frame_start: bool,
    /// For a change pushed live: when it was committed (for the push latency).
    committed_at: Option<Instant>,
}

struct State {
    queue: VecDeque<Piece>,
    /// Bytes of counted pieces in `queue` and in `pending`.
    counted: usize,
    /// Changes from the hub waiting while the session brings the client up to date;
    /// `None` once live.
    pending: Option<VecDeque<Arc<Pushed>>>,
    /// Everything up to this revision in the client's namespaces is queued (or sent).
    sent: Revision,
    lagged: bool,
    /// No more output: the connection is closing.
    closed: bool,
    /// Part of the front piece was written already.
    front_started: bool,
    /// When the writer last got bytes out, or the queue last became non-empty.
    progress_at: Instant,
    /// When `sent` last moved on (the session's progress timer counts from it).
    sent_at: Instant,
    /// The connection's socket, for writing a change straight from the hub while nothing
    /// is queued (plain-TCP WebSockets only); dropped when the connection closes.
    direct: Option<Arc<tokio::net::TcpStream>>,
}

/// A connection's output queue; shared by the hub (which appends changes) and the
/// connection's task (which appends everything else and writes).
pub struct Outbound {
    state: Mutex<State>,
    /// Wakes the connection's task: output to write, or a lag to handle.
    wake: Notify,
    budget: usize,
    /// How the connection carries messages (shared changes are wrapped for it).
    transport: Transport,
}

impl Outbound {
    /// An empty queue holding at most `budget` bytes of changes, not live yet.
    pub fn new(budget: usize, transport: Transport) -> Arc<Outbound> {
        Arc::new(Outbound {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                counted: 0,
                pending: Some(VecDeque::new()),
                sent: 0,
                lagged: false,
                closed: false,
                front_started: false,
                progress_at: Instant::now(),
                sent_at: Instant::now(),
                direct: None,
            }),
            wake: Notify::new(),
            budget,
            transport,
        })
    }

    /// The pieces of a change on this connection's transport, and their bytes.
    fn pieces_of(&self, pushed: &Pushed) -> (Vec<Bytes>, usize) {
        let pieces = pushed.pieces(self.transport);
        let size = pieces.iter().map(Bytes::len).sum();
        (pieces, size)
    }

    /// Queues the pieces of a change (counted against the budget); the first begins a
    /// frame, the last carries the commit time.
    fn queue_change(state: &mut State, pieces: Vec<Bytes>, committed_at: Option<Instant>) {
        let last = pieces.len().saturating_sub(1);
        for (i, bytes) in pieces.into_iter().enumerate() {
            state.queue.push_back(Piece {
                bytes,
                counted: true,
                frame_start: i == 0,
                committed_at: if i == last { committed_at } else { None },
            });
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lets the hub write changes straight into `socket` (a handle on the connection's
    /// socket) while nothing is queued.
    pub fn write_directly_to(&self, socket: Arc<tokio::net::TcpStream>) {
        self.state().direct = Some(socket);
    }

    /// Appends a committed change (from the hub), or, when `direct` and nothing is queued,
    /// writes it at once if the socket takes it (without waiting: the rest of a partial
    /// write is queued for the session). Never waits: over the budget, the subscriber is marked
    /// lagged instead. Returns the commit time of a change written whole right here.
    pub fn push_change(&self, pushed: &Arc<Pushed>, direct: bool) -> Option<Instant> {
        let mut state = self.state();
        if state.closed || state.lagged || pushed.revision <= state.sent {
            return None;
        }
        if direct && state.pending.is_none() && state.queue.is_empty() && !state.front_started {
            if let Some(socket) = &state.direct {
                // Nothing is queued, so nothing is being written: the bytes go out in order.
                match socket.try_write(&pushed.frame) {
                    Ok(n) if n == pushed.frame.len() => {
                        state.sent = pushed.revision;
                        state.sent_at = Instant::now();
                        return Some(pushed.committed_at);
                    }
                    Ok(n) => {
                        // The rest waits for the session, counted against the budget.
                        let rest = pushed.frame.slice(n..);
                        state.counted += rest.len();
                        state.sent = pushed.revision;
                        state.sent_at = Instant::now();
                        state.front_started = n > 0;
                        state.queue.push_back(Piece {
                            bytes: rest,
                            counted: true,
                            frame_start: n == 0,
                            committed_at: Some(pushed.committed_at),
                        });
                        state.progress_at = Instant::now();
                        drop(state);
                        self.wake.notify_one();
                        return None;
                    }
                    // Would block (or failed: the session finds out on its next write).
                    Err(_) => {}
                }
            }
        }
        let (pieces, size) = self.pieces_of(pushed);
        if state.counted + size > self.budget {
            state.lagged = true;
            state.pending = None;
            drop(state);
            self.wake.notify_one();
            return None;
        }
        state.counted += size;
        if let Some(pending) = &mut state.pending {
            pending.push_back(pushed.clone());
            return None;
        }
        state.sent = pushed.revision;
        state.sent_at = Instant::now();
        let was_empty = state.queue.is_empty();
        Self::queue_change(&mut state, pieces, Some(pushed.committed_at));
        if was_empty {
            state.progress_at = Instant::now();
            drop(state);
            self.wake.notify_one();
        }
        None
    }

    /// Appends a frame of the session's own: a reply, a replayed change, a progress or
    /// control frame. `shared` frames (snapshots) are not counted against the budget.
    pub fn push(&self, frame: Bytes, shared: bool) {
        let mut state = self.state();
        if state.closed {
            return;
        }
        if !shared {
            state.counted += frame.len();
        }
        if state.queue.is_empty() {
            state.progress_at = Instant::now();
        }
        state.queue.push_back(Piece {
            bytes: frame,
            counted: !shared,
            frame_start: true,
            committed_at: None,
        });
    }

    /// Appends a snapshot, shared: not counted against the budget (its JSON is every
    /// subscriber's of the same namespaces).
    pub fn push_snapshot(&self, snapshot: &Snapshot) {
        let mut state = self.state();
        if state.closed {
            return;
        }
        if state.queue.is_empty() {
            state.progress_at = Instant::now();
        }
        let pieces = snapshot.pieces(self.transport);
        state.queue.extend(pieces.into_iter().enumerate().map(|(i, bytes)| Piece {
            bytes,
            counted: false,
            frame_start: i == 0,
            committed_at: None,
        }));
    }

    /// Appends a replayed change and notes that the client has everything up to it.
    pub fn push_replayed(&self, pushed: &Pushed) {
        let mut state = self.state();
        if state.closed {
            return;
        }
        let (pieces, size) = self.pieces_of(pushed);
        state.counted += size;
        if state.queue.is_empty() {
            state.progress_at = Instant::now();
        }
        Self::queue_change(&mut state, pieces, None);
        state.sent = state.sent.max(pushed.revision);
        state.sent_at = Instant::now();
    }

    /// Appends a `progress` frame built from the revision the client is current at, if
    /// nothing was queued since `since` (the idle check of the heartbeat). `published`
    /// is the hub's: every change up to it is queued or pending already.
    pub fn push_progress_if_idle(
        &self,
        since: Revision,
        published: Revision,
        frame: impl FnOnce(Revision) -> Bytes,
    ) -> bool {
        let mut state = self.state();
        if state.closed || state.pending.is_some() || state.lagged || state.sent != since {
            return false;
        }
        state.sent = state.sent.max(published);
        state.sent_at = Instant::now();
        let bytes = frame(state.sent);
        state.counted += bytes.len();
        if state.queue.is_empty() {
            state.progress_at = Instant::now();
        }
        state.queue.push_back(Piece {
            bytes,
            counted: true,
            frame_start: true,
            committed_at: None,
        });
        true
    }

    /// Ends the catch-up: the client has everything up to `covered`; the hub's changes
    /// that waited and lie beyond it are queued behind, and later ones go straight in.
    pub fn go_live(&self, covered: Revision) {
        let mut state = self.state();
        state.sent = state.sent.max(covered);
        state.sent_at = Instant::now();
        let Some(pending) = state.pending.take() else { return };
        for pushed in pending {
            let (pieces, size) = self.pieces_of(&pushed);
            if pushed.revision <= state.sent {
                // Covered by the snapshot or replay: it was counted, and is dropped.
                state.counted -= size;
                continue;
            }
            state.sent = pushed.revision;
            Self::queue_change(&mut state, pieces, Some(pushed.committed_at));
        }
    }

    /// Starts a resync after a lag: everything not begun is dropped (the snapshot to come
    /// covers it, older snapshots included) and the hub's changes wait again until
    /// [`Outbound::go_live`].
    pub fn begin_resync(&self) {
        let mut state = self.state();
        // A frame on the wire must be finished, or the stream would break: keep its rest
        // (one piece, or the pieces of a shared snapshot).
        let mut kept = VecDeque::new();
        let mid_frame =
            state.front_started || state.queue.front().is_some_and(|piece| !piece.frame_start);
        if mid_frame {
            while let Some(piece) = state.queue.pop_front() {
                kept.push_back(piece);
                if state.queue.front().is_none_or(|next| next.frame_start) {
                    break;
                }
            }
        }
        state.queue = kept;
        state.counted = state.queue.iter().filter(|p| p.counted).map(|p| p.bytes.len()).sum();
        state.lagged = false;
        state.pending = Some(VecDeque::new());
    }

    /// Makes the subscriber resync with a fresh snapshot (the store's state was reloaded).
    pub fn mark_lagged(&self) {
        let mut state = self.state();
        if state.closed {
            return;
        }
        state.lagged = true;
        state.pending = None;
        drop(state);
        self.wake.notify_one();
    }

    /// Whether the hub gave up on this subscriber (see [`Outbound::begin_resync`]).
    pub fn lagged(&self) -> bool {
        self.state().lagged
    }

    /// The revision up to which the client has been given everything.
    pub fn sent(&self) -> Revision {
        self.state().sent
    }

    /// [`Outbound::sent`], and when it last moved on.
    pub fn sent_with_time(&self) -> (Revision, Instant) {
        let state = self.state();
        (state.sent, state.sent_at)
    }

    /// Bytes of changes queued or pending (for flow control of replays).
    pub fn counted(&self) -> usize {
        self.state().counted
    }

    /// The budget in bytes.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Refuses further output (the close frame has been queued).
    pub fn close(&self) {
        let mut state = self.state();
        state.closed = true;
        state.pending = None;
        // The handle must not keep the connection open once its session lets it go.
        state.direct = None;
    }

    /// Whether anything waits to be written.
    pub fn has_output(&self) -> bool {
        !self.state().queue.is_empty()
    }

    /// How long output has waited without the writer getting any of it out.
    pub fn stalled_since(&self) -> Option<Instant> {
        let state = self.state();
        (!state.queue.is_empty()).then_some(state.progress_at)
    }

    /// Resolves when the hub queued output or marked the subscriber lagged.
    pub async fn changed(&self) {
        self.wake.notified().await
    }

    /// The next bytes to write, at most [`MAX_SLICES`] pieces and about [`MAX_WRITE`]
    /// bytes; cheap clones of the queued pieces.
    pub fn next_write(&self) -> Vec<Bytes> {
        let state = self.state();
        let mut out = Vec::new();
        let mut total = 0;
        for piece in state.queue.iter().take(MAX_SLICES) {
            if total >= MAX_WRITE {
                break;
            }
            let take = piece.bytes.len().min(MAX_WRITE - total);
            out.push(piece.bytes.slice(..take));
            total += take;
        }
        out
    }

    /// Drops `written` bytes from the front of the queue, once the writer got them out;
    /// returns the commit time of each live change whose frame went out whole.
    pub fn advance(&self, mut written: usize) -> Vec<Instant> {
        let mut delivered = Vec::new();
        let mut state = self.state();
        if written > 0 {
            state.progress_at = Instant::now();
        }
        while written > 0 {
            let Some(front) = state.queue.front_mut() else { break };
            if written < front.bytes.len() {
                let _ = front.bytes.split_to(written);
                if front.counted {
                    state.counted -= written;
                }
                state.front_started = true;
                return delivered;
            }
            written -= front.bytes.len();
            if let Some(piece) = state.queue.pop_front() {
                if piece.counted {
                    state.counted -= piece.bytes.len();
                }
                if let Some(at) = piece.committed_at {
                    delivered.push(at);
                }
            }
            state.front_started = false;
        }
        delivered
    }
}

#[cfg(test)]
mod tests;
