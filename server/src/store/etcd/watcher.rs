//! The watch of `h/`: every change, this node's own included, applied in revision order
//! to the cache and the hub; resumed where it broke, reloaded after a compaction.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};

use dashmap::DashMap;
use etcd_client::{Client, ConnectOptions, EventType, KvClient, WatchOptions};
use graycast_protocol::Revision;
use tokio::sync::watch;

use super::keys::{change_of, prefix_end, Keys};
use super::reads::load;
use super::{MAX_MESSAGE, RETRY_MAX, RETRY_MIN, WATCH_PROGRESS_EVERY, WATCH_SILENCE};
use crate::metrics::EtcdOp;
use crate::store::{Fed, Shared, StoreError};
use crate::streak::Streak;

/// The watch of `h/`: applies every change, in order, to the cache and the hub.
pub(super) struct Watcher {
    pub(super) members: Members,
    pub(super) kv: KvClient,
    pub(super) keys: Keys,
    pub(super) shared: Arc<Shared>,
    pub(super) feed: std_mpsc::Sender<Fed>,
    pub(super) seqs: Arc<DashMap<String, u64>>,
    pub(super) last_change: Arc<AtomicU64>,
    /// Breaks in a row, the watch not answering since: logged once, and once on recovery.
    pub(super) broken: Streak,
}

pub(super) enum WatchEnd {
    /// etcd compacted past the next revision: reload.
    Compacted,
    /// The watch broke (etcd down, the connection lost): watch again from the next revision.
    Broken(String),
    Stopped,
}

impl Watcher {
    /// Applies every change from `next` on, once the state is `loaded` (else it loads it
    /// first, as after a compaction).
    pub(super) async fn run(
        mut self,
        mut next: Revision,
        loaded: bool,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut wait = RETRY_MIN;
        let mut loaded = loaded;
        while !loaded {
            match self.reload().await {
                Ok(revision) => {
                    tracing::info!(revision, "etcd answers: the state is loaded");
                    next = revision + 1;
                    loaded = true;
                    continue;
                }
                Err(err) => tracing::debug!(error = %err, "etcd is still unreachable"),
            }
            tokio::select! {
                _ = stopped(&mut stop) => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(RETRY_MAX);
        }
        loop {
            let end = tokio::select! {
                _ = stopped(&mut stop) => WatchEnd::Stopped,
                end = self.watch_from(&mut next) => end,
            };
            match end {
                WatchEnd::Stopped => return,
                WatchEnd::Compacted => match self.reload_after_compaction().await {
                    Ok(revision) => {
                        next = revision + 1;
                        wait = RETRY_MIN;
                        continue;
                    }
                    Err(err) => self.shared.fail(format!("etcd cannot be reached: {err}"), false),
                },
                WatchEnd::Broken(reason) => {
                    let member = self.members.next();
                    if self.broken.failed() == 1 {
                        tracing::warn!(
                            reason,
                            next,
                            member,
                            "the etcd watch broke; watching again (logged again once it answers)"
                        );
                    } else {
                        tracing::debug!(reason, next, member, "the etcd watch broke again");
                    }
                    self.shared.fail(format!("etcd cannot be reached: {reason}"), false);
                }
            }
            tokio::select! {
                _ = stopped(&mut stop) => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(RETRY_MAX);
        }
    }

    /// Watches from `next`, applying changes and moving `next` on, until the watch ends.
    async fn watch_from(&mut self, next: &mut Revision) -> WatchEnd {
        let options = WatchOptions::new()
            .with_range(prefix_end(&self.keys.histories()))
            .with_start_revision(*next as i64)
            .with_progress_notify();
        let client = match self.members.client().await {
            Ok(client) => client,
            Err(reason) => return WatchEnd::Broken(reason),
        };
        let started = std::time::Instant::now();
        let opened = client
            .watch_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .watch(self.keys.histories(), Some(options))
            .await;
        self.shared.metrics.record_etcd_request(EtcdOp::Watch, started.elapsed(), opened.is_ok());
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(err) => return WatchEnd::Broken(err.to_string()),
        };
        let mut progress = tokio::time::interval(WATCH_PROGRESS_EVERY);
        progress.tick().await;
        // When the member last answered anything (an event or a progress answer).
        let mut heard = tokio::time::Instant::now();
        loop {
            let message = tokio::select! {
                message = stream.message() => message,
                _ = progress.tick() => {
                    if let Err(err) = stream.request_progress().await {
                        self.shared.metrics.record_etcd_error(EtcdOp::Watch);
                        return WatchEnd::Broken(err.to_string());
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(heard + WATCH_SILENCE) => {
                    return WatchEnd::Broken(format!(
                        "the member answered nothing for {WATCH_SILENCE:?}, not even progress"
                    ));
                }
            };
            heard = tokio::time::Instant::now();
            let response = match message {
                Err(err) if err.to_string().contains("compacted") => return WatchEnd::Compacted,
                Err(err) => return WatchEnd::Broken(err.to_string()),
                Ok(None) => return WatchEnd::Broken("the watch ended".into()),
                Ok(Some(response)) => response,
            };
            if response.compact_revision() > 0 {
                return WatchEnd::Compacted;
            }
            if response.canceled() {
                return WatchEnd::Broken(format!(
                    "the watch was cancelled: {}",
                    response.cancel_reason()
                ));
            }
            // The watch answers: etcd can be reached (writes find out for themselves).
            self.shared.recover();
            if let Some(ended) = self.broken.succeeded() {
                tracing::info!(
                    breaks = ended.failures,
                    broken_s = ended.lasted.as_secs(),
                    "the etcd watch answers again"
                );
            }
            if response.events().is_empty() {
                continue;
            }
            let mut batch = Vec::new();
            let mut seqs = Vec::new();
            for event in response.events() {
                let Some(kv) = event.kv().filter(|_| event.event_type() == EventType::Put) else {
                    continue;
                };
                let Some((change, slot, seq)) = change_of(&self.keys, kv) else {
                    tracing::error!(key = %String::from_utf8_lossy(kv.key()), "an unreadable history record in etcd");
                    continue;
                };
                if change.revision < *next {
                    continue;
                }
                *next = change.revision + 1;
                seqs.push((slot, seq));
                self.last_change.fetch_max(change.revision, Ordering::AcqRel);
                batch.push(Arc::new(change));
            }
            if !batch.is_empty() {
                // The cache first, then the keys' sequence numbers: a write that reads a
                // key's sequence number and then its entry (`write.rs`) never pairs a new
                // number with an old entry, which would let a condition on the old entry
                // pass etcd's comparison of the number.
                self.shared.apply(&batch);
                for (slot, seq) in seqs {
                    self.seqs.insert(slot, seq);
                }
                let _ = self.feed.send(Fed::Changes(batch, std::time::Instant::now()));
            }
        }
    }

    /// Reloads the whole state after the watch fell behind a compaction.
    async fn reload_after_compaction(&mut self) -> Result<Revision, StoreError> {
        tracing::warn!(
            "the etcd watch fell behind a compaction; reloading and resyncing subscribers"
        );
        self.reload().await
    }

    /// Reloads the whole state; returns the revision it is as of.
    async fn reload(&mut self) -> Result<Revision, StoreError> {
        let seqs = DashMap::new();
        let loaded = load(&mut self.kv, &self.keys, &seqs, &self.last_change).await?;
        let revision = loaded.revision;
        self.seqs.clear();
        for (slot, seq) in seqs {
            self.seqs.insert(slot, seq);
        }
        self.shared.replace(loaded);
        let _ = self.feed.send(Fed::Reloaded(revision));
        self.shared.recover();
        Ok(revision)
    }
}

/// The watch's members: it watches through one at a time, and moves to the next when the
/// watch breaks or stalls (a paused member answers nothing, and a client balanced over
/// every member could pick it again).
pub(super) struct Members {
    endpoints: Vec<String>,
    options: ConnectOptions,
    current: usize,
    client: Option<Client>,
}

/// Time allowed to connect to a member for the watch.
const MEMBER_CONNECT: std::time::Duration = std::time::Duration::from_secs(2);

impl Members {
    pub(super) fn new(endpoints: Vec<String>, options: ConnectOptions) -> Members {
        Members { endpoints, options, current: 0, client: None }
    }

    /// A client of the current member.
    async fn client(&mut self) -> Result<Client, String> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let endpoint = self.endpoints[self.current % self.endpoints.len().max(1)].clone();
        let options = self.options.clone().with_connect_timeout(MEMBER_CONNECT);
        match tokio::time::timeout(MEMBER_CONNECT, Client::connect([&endpoint], Some(options)))
            .await
        {
            Ok(Ok(client)) => {
                self.client = Some(client.clone());
                Ok(client)
            }
            Ok(Err(err)) => Err(format!("cannot connect to {endpoint}: {err}")),
            Err(_) => Err(format!("{endpoint} did not answer within {MEMBER_CONNECT:?}")),
        }
    }

    /// Moves on to the next member; returns its endpoint.
    fn next(&mut self) -> String {
        self.client = None;
        self.current = (self.current + 1) % self.endpoints.len().max(1);
        self.endpoints.get(self.current).cloned().unwrap_or_default()
    }
}

/// Resolves once the engine stops.
pub(super) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
