//! The ramp scheduler: moves each running ramp on when its step's hold is over.
//!
//! The schedule is the `next_step_at` of each gray section, which lives in the store, so
//! a restart picks it up where it was. Each move is a conditional write (the release
//! and step it expects), so a repeated or late attempt changes nothing. In a cluster only
//! the node that leads moves ramps on; another takes over when it goes.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use crate::store::{Mutation, Store, StoreError, WriteRequest};

/// Recorded as `updated_by` of ramp moves.
pub const SCHEDULER_ACTOR: &str = "scheduler";

/// Longest sleep without a look at the schedule, as a safety net against clock jumps.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Wait before trying again a ramp move that failed.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);
const RETRY_AFTER_FAILURE_CHRONO: chrono::Duration = chrono::Duration::seconds(1);

/// Runs until `shutdown` turns true.
pub async fn run(store: Arc<Store>, mut shutdown: watch::Receiver<bool>) {
    let mut leadership = store.leadership();
    // Each ramp's writes that failed in a row (the store down, a refusal): logged once, and
    // once when that ramp moves again or is gone.
    let mut failing: std::collections::HashMap<String, crate::streak::Streak> =
        std::collections::HashMap::new();
    loop {
        if !*leadership.borrow_and_update() {
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return,
                _ = leadership.changed() => continue,
            }
        }
        let now = Utc::now();
        let mut next_wake = now + chrono::Duration::from_std(MAX_SLEEP).unwrap_or_default();
        let mut due = Vec::new();
        for entry in store.gray_entries() {
            let Some(gray) = &entry.gray else { continue };
            let Some(at) = gray.next_step_at.filter(|_| !gray.paused) else { continue };
            if at <= now {
                due.push((entry.namespace.clone(), entry.key.clone(), gray.started_at, gray.step));
            } else {
                next_wake = next_wake.min(at);
            }
        }
        let mut failed = false;
        for (namespace, key, started_at, step) in due {
            let request = WriteRequest::new(
                namespace,
                key,
                Mutation::GrayAdvance { started_at, step },
                SCHEDULER_ACTOR,
            );
            let what = format!("{}/{}", request.namespace, request.key);
            match store.write(request).await {
                Ok(change) => {
                    tracing::info!(key = what, revision = change.revision, "ramp moved on");
                    if let Some(ended) = failing.remove(&what).and_then(|mut s| s.succeeded()) {
                        tracing::info!(
                            key = what,
                            failures = ended.failures,
                            failing_s = ended.lasted.as_secs(),
                            "the ramp moves on again"
                        );
                    }
                }
                // The release changed meanwhile; look at it again soon, whatever it is now.
                Err(StoreError::Superseded(_)) => {
                    next_wake = next_wake.min(Utc::now() + RETRY_AFTER_FAILURE_CHRONO);
                }
                Err(StoreError::NotFound { .. }) => {
                    failing.remove(&what);
                }
                Err(StoreError::Closed) => return,
                Err(err) => {
                    if failing.entry(what.clone()).or_default().failed() == 1 {
                        tracing::warn!(key = what, error = %err, "cannot move the ramp on (logged again once it moves)");
                    } else {
                        tracing::debug!(key = what, error = %err, "cannot move the ramp on");
                    }
                    failed = true;
                }
            }
        }
        let mut sleep = (next_wake - Utc::now()).to_std().unwrap_or(Duration::ZERO).min(MAX_SLEEP);
        if failed {
            // Do not spin on a write that keeps failing.
            sleep = sleep.max(RETRY_AFTER_FAILURE);
        }
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = store.gray_changed() => {}
            _ = leadership.changed() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}
