//! How a session brings its client up to date: a replay of the changes it missed (from
//! the hub's memory, else the store's change log) or a snapshot; and a fresh snapshot for
//! a subscriber that fell behind its byte budget.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use graycast_protocol::Revision;
use tokio::task::JoinHandle;

use super::{End, Session, REPLAY_PAGE};
use crate::error::ApiError;
use crate::metrics::SnapshotCause;
use crate::push::outbound::Outbound;
use crate::push::wire::{self, Pushed, Snapshot};
use crate::store::{ChangePage, StoreError};

/// How the session brings its client up to date after subscribing or lagging.
pub(super) enum CatchUp {
    /// Up to date: the hub appends changes as they commit.
    Live,
    /// Changes from the hub's memory still to queue; then live at `upto`.
    Memory { frames: VecDeque<Arc<Pushed>>, upto: Revision },
    /// Changes from the store's log, after `after` and up to `cap`; `fetch` reads a page.
    Log {
        after: Revision,
        cap: Revision,
        fetch: Option<JoinHandle<Result<ChangePage, StoreError>>>,
    },
    /// A snapshot frame being built on a blocking thread.
    Snapshot(JoinHandle<(Revision, Snapshot)>),
    /// A resync after a lag, waiting until the connection took what it was already given:
    /// a peer that reads slowly gets one snapshot at a time, not one per lag.
    Resync,
}

/// Waits for the catch-up work in flight; never ready without any.
pub(super) async fn catch_up_task(catch_up: &mut CatchUp) -> CatchUpDone {
    match catch_up {
        CatchUp::Log { fetch: Some(handle), .. } => CatchUpDone::Page(
            handle
                .await
                .unwrap_or_else(|_| Err(StoreError::Backend("change log read panicked".into()))),
        ),
        CatchUp::Snapshot(handle) => CatchUpDone::Snapshot(handle.await.ok()),
        _ => std::future::pending().await,
    }
}

pub(super) enum CatchUpDone {
    Page(Result<ChangePage, StoreError>),
    Snapshot(Option<(Revision, Snapshot)>),
}

impl Session {
    /// Replays every change after `since` in the subscribed namespaces: from the hub's
    /// memory when it reaches back that far, else from the store's change log.
    pub(super) fn start_replay(&mut self, since: Revision) {
        match self.state.hub.recent_after(since, &self.selection()) {
            Some((frames, upto)) => self.catch_up = CatchUp::Memory { frames: frames.into(), upto },
            None => {
                // The log on disk can be ahead of the cache for a moment; what lies beyond
                // the cache's revision reaches the queue through the hub, so the replay
                // stops there, and a later snapshot never goes back behind it.
                let cap = self.state.store.revision();
                self.catch_up = CatchUp::Log { after: since, cap, fetch: None };
            }
        }
    }

    /// Starts a snapshot of the subscribed namespaces: a shared one when subscribers of
    /// the same namespaces took one at the current revision, else built on a blocking
    /// thread (a namespace can hold hundreds of megabytes).
    pub(super) fn start_snapshot(&mut self, cause: SnapshotCause) {
        self.snapshot_cause = cause;
        let selection = self.selection();
        let store = self.state.store.clone();
        let hub = self.state.hub.clone();
        let current = store.revision();
        if let Some(frame) = hub.cached_snapshot(&selection, current) {
            self.catch_up = CatchUp::Live;
            self.snapshot_ready(current, frame);
            return;
        }
        self.catch_up = CatchUp::Snapshot(tokio::task::spawn_blocking(move || {
            let (revision, entries) = store.snapshot(selection.names());
            let frame = wire::snapshot(revision, &selection, &entries);
            hub.cache_snapshot(&selection, revision, frame.clone());
            (revision, frame)
        }));
    }

    fn snapshot_ready(&mut self, revision: Revision, frame: Snapshot) {
        self.out.push_snapshot(&frame);
        self.out.go_live(revision);
        self.state.metrics.record_snapshot(self.snapshot_cause);
    }

    /// Queues catch-up frames while the queue has room; never waits.
    pub(super) fn feed_catch_up(&mut self) {
        let room = |out: &Outbound| out.counted() < out.budget();
        match &mut self.catch_up {
            CatchUp::Memory { frames, upto } => {
                while room(&self.out) {
                    let Some(pushed) = frames.pop_front() else { break };
                    self.out.push_replayed(&pushed);
                }
                if frames.is_empty() {
                    let upto = *upto;
                    self.finish_replay(upto);
                }
            }
            CatchUp::Resync if !self.out.has_output() => self.start_snapshot(SnapshotCause::Lag),
            CatchUp::Log { after, cap, fetch } if fetch.is_none() && room(&self.out) => {
                if after >= cap {
                    let cap = *cap;
                    self.finish_replay(cap);
                    return;
                }
                let store = self.state.store.clone();
                let after = *after;
                *fetch = Some(actix_web::rt::spawn(async move {
                    store.changes_after(after, REPLAY_PAGE).await
                }));
            }
            _ => {}
        }
    }

    /// The replay is queued: the client has everything up to `upto`; go live and say so.
    fn finish_replay(&mut self, upto: Revision) {
        self.state.metrics.record_replay();
        self.catch_up = CatchUp::Live;
        self.out.go_live(upto);
        let target = self.state.store.revision();
        if self.state.hub.published() >= target {
            self.out.push(wire::progress(self.transport, self.out.sent()), false);
        } else {
            // Writes acknowledged already are still on their way through the hub: say
            // `progress` once they are queued (`on_progress_due`).
            self.replay_target = Some(target);
            self.progress_due = tokio::time::Instant::now() + super::REPLAY_SETTLE_POLL;
        }
    }

    pub(super) fn on_catch_up(&mut self, done: CatchUpDone) -> Result<(), End> {
        match done {
            CatchUpDone::Snapshot(Some((revision, frame))) => {
                self.catch_up = CatchUp::Live;
                self.snapshot_ready(revision, frame);
                Ok(())
            }
            CatchUpDone::Snapshot(None) => {
                Err(self.refuse(ApiError::Internal("the snapshot could not be built".into())))
            }
            CatchUpDone::Page(Ok(ChangePage::Compacted)) => {
                // The log no longer reaches back to the client's revision.
                self.start_snapshot(SnapshotCause::TooOld);
                Ok(())
            }
            CatchUpDone::Page(Ok(ChangePage::Changes(changes))) => {
                let selection = self.selection();
                let CatchUp::Log { after, cap, fetch } = &mut self.catch_up else { return Ok(()) };
                *fetch = None;
                let full = changes.len() == REPLAY_PAGE;
                for change in changes.iter().take_while(|c| c.revision <= *cap) {
                    if selection.covers(&change.namespace, &change.key) {
                        self.out.push_replayed(&wire::pushed(change, Instant::now()));
                    }
                    *after = change.revision;
                }
                if !full || *after >= *cap {
                    let cap = *cap;
                    self.finish_replay(cap);
                }
                Ok(())
            }
            CatchUpDone::Page(Err(err)) => {
                let err = ApiError::Unavailable(format!("cannot read the change log: {err}"));
                Err(self.refuse(err))
            }
        }
    }

    /// The hub queued output or gave up on this subscriber.
    pub(super) fn on_wake(&mut self) -> Result<(), End> {
        if self.active.is_some() && self.out.lagged() {
            // Drop what the client could not take and snapshot once it took the rest: the
            // registration stays, so nothing is missed meanwhile.
            tracing::info!(remote = %self.remote, "subscriber fell behind; resyncing with a snapshot");
            match std::mem::replace(&mut self.catch_up, CatchUp::Live) {
                CatchUp::Snapshot(handle) => handle.abort(),
                CatchUp::Log { fetch: Some(handle), .. } => handle.abort(),
                _ => {}
            }
            self.out.begin_resync();
            self.catch_up = CatchUp::Resync;
        }
        Ok(())
    }
}
