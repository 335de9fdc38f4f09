//! The guard of gray releases: outcome counts per variant, and the automatic abort when
//! the gray variant's error rate climbs over its limit.
//!
//! Counts live in memory, per key and per release (a new release starts from zero); a
//! restart starts them over, which can only delay an abort, never cause a wrong one.
//!
//! Alone, a node decides on each report. In a cluster, reports reach any node: each node
//! publishes its counts of a release in etcd under its lease ([`Store::publish_ephemeral`]),
//! and the node that leads sums every node's counts ([`run`]) and aborts the release when
//! the sum trips its guard, whichever nodes the clients reported to.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use graycast_protocol::gray::{GuardCounts, OutcomeCounts, ReportRequest};
use graycast_protocol::{Entry, Variant};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::ApiError;
use crate::store::{Mutation, Store, StoreError, WriteRequest};

/// Recorded as `updated_by` of the aborts the guard makes.
pub const GUARD_ACTOR: &str = "guard";

/// Most outcomes one report may carry: enough for a service's minute of traffic, too few
/// for one report to decide a release alone when `min_samples` is set sensibly.
pub const MAX_REPORT_OUTCOMES: u64 = 10_000;

/// Most reporter names the guard remembers per release (for the abort's note).
const MAX_REPORTERS: usize = 16;

/// How often the leading node of a cluster sums the nodes' counts.
const CLUSTER_CHECK_EVERY: Duration = Duration::from_millis(250);

struct Tally {
    started_at: DateTime<Utc>,
    counts: Mutex<Counts>,
    aborting: AtomicBool,
}

/// The outcome counts of a release, and who reported its gray errors; what a node
/// publishes to the others in a cluster.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Counts {
    outcomes: GuardCounts,
    /// Names of the tokens (or `anonymous`) whose reports counted gray errors, each with
    /// the errors it reported; the first [`MAX_REPORTERS`] of them.
    reporters: Vec<(String, u64)>,
    /// Gray errors reported by callers beyond the first [`MAX_REPORTERS`].
    others: u64,
}

impl Counts {
    fn note_reporter(&mut self, name: &str, errors: u64) {
        if errors == 0 {
            return;
        }
        if let Some((_, count)) = self.reporters.iter_mut().find(|(n, _)| n == name) {
            *count = count.saturating_add(errors);
        } else if self.reporters.len() < MAX_REPORTERS {
            self.reporters.push((name.to_owned(), errors));
        } else {
            self.others = self.others.saturating_add(errors);
        }
    }

    /// Adds another node's counts.
    fn add(&mut self, other: &Counts) {
        for (side, more) in [
            (&mut self.outcomes.stable, other.outcomes.stable),
            (&mut self.outcomes.gray, other.outcomes.gray),
        ] {
            side.ok = side.ok.saturating_add(more.ok);
            side.errors = side.errors.saturating_add(more.errors);
        }
        for (name, errors) in &other.reporters {
            self.note_reporter(name, *errors);
        }
        self.others = self.others.saturating_add(other.others);
    }

    /// `"a (12 errors), b (3 errors)"`, the reporters of gray errors, most errors first.
    fn reporters(&self) -> String {
        let mut list = self.reporters.clone();
        list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut names: Vec<String> =
            list.iter().map(|(name, errors)| format!("{name} ({errors} errors)")).collect();
        if self.others > 0 {
            names.push(format!("others ({} errors)", self.others));
        }
        if names.is_empty() {
            "nobody".into()
        } else {
            names.join(", ")
        }
    }

    /// The abort these counts call for on `entry`'s release, if they trip its guard.
    fn abort(&self, entry: &Entry, tripped_by: Option<&str>) -> Option<WriteRequest> {
        let gray = entry.gray.as_ref()?;
        let guard = gray.guard.as_ref()?;
        let counts = self.outcomes;
        let tripped = counts.gray.total() >= guard.min_samples
            && counts.gray.error_rate() > guard.max_error_rate;
        if !tripped {
            return None;
        }
        let by =
            tripped_by.map(|name| format!("; tripped by a report of {name}")).unwrap_or_default();
        let note = format!(
            "guard: gray error rate {:.4} over {} outcomes exceeds {}; stable error rate {:.4} over {}; gray errors reported by {}{by}",
            counts.gray.error_rate(),
            counts.gray.total(),
            guard.max_error_rate,
            counts.stable.error_rate(),
            counts.stable.total(),
            self.reporters(),
        );
        Some(WriteRequest::new(
            entry.namespace.clone(),
            entry.key.clone(),
            Mutation::Abort { started_at: Some(gray.started_at), note: Some(note) },
            GUARD_ACTOR,
        ))
    }
}

/// Outcome counts of the running releases, as reported to this node.
#[derive(Default)]
pub struct Guards {
    tallies: DashMap<(String, String), Arc<Tally>>,
}

/// What a report led to.
pub struct Reported {
    pub counts: GuardCounts,
    /// The guard's abort, when this report tripped it.
    pub abort: Option<WriteRequest>,
}

/// The name under which a node publishes its counts of the release running on `entry`.
fn release_name(entry: &Entry, started_at: DateTime<Utc>) -> String {
    format!("{}/{}/{}/", entry.namespace, entry.key, started_at.timestamp_millis())
}

impl Guards {
    fn tally(&self, entry: &Entry) -> Option<Arc<Tally>> {
        let gray = entry.gray.as_ref()?;
        self.tallies
            .get(&(entry.namespace.clone(), entry.key.clone()))
            .filter(|t| t.started_at == gray.started_at)
            .map(|t| t.clone())
    }

    /// The counts of the release running on `entry` reported to this node.
    pub fn counts(&self, entry: &Entry) -> GuardCounts {
        self.tally(entry)
            .map(|t| t.counts.lock().unwrap_or_else(PoisonError::into_inner).outcomes)
            .unwrap_or_default()
    }

    /// Adds outcomes reported by `reporter` for the release running on `entry`; decides
    /// whether to abort it on this node's counts.
    pub fn report(
        &self,
        entry: &Entry,
        report: &ReportRequest,
        reporter: &str,
    ) -> Option<Reported> {
        let ReportRequest { variant, ok, errors, release } = *report;
        let gray = entry.gray.as_ref()?;
        if release.is_some_and(|r| r != gray.started_at) {
            // Outcomes of an earlier release must not count for this one.
            return None;
        }
        let slot = (entry.namespace.clone(), entry.key.clone());
        let tally = {
            let mut tally =
                self.tallies.entry(slot).or_insert_with(|| Arc::new(Tally::new(gray.started_at)));
            if tally.started_at != gray.started_at {
                *tally = Arc::new(Tally::new(gray.started_at));
            }
            tally.clone()
        };
        let counts = {
            let mut counts = tally.counts.lock().unwrap_or_else(PoisonError::into_inner);
            let side: &mut OutcomeCounts = match variant {
                Variant::Stable => &mut counts.outcomes.stable,
                Variant::Gray => &mut counts.outcomes.gray,
            };
            side.ok = side.ok.saturating_add(ok);
            side.errors = side.errors.saturating_add(errors);
            if variant == Variant::Gray {
                counts.note_reporter(reporter, errors);
            }
            counts.clone()
        };
        let abort = counts
            .abort(entry, Some(reporter))
            .filter(|_| !tally.aborting.swap(true, Ordering::AcqRel));
        Some(Reported { counts: counts.outcomes, abort })
    }

    /// This node's counts of the release on `entry`, as published to the other nodes.
    fn published(&self, entry: &Entry) -> Option<(String, Vec<u8>)> {
        let tally = self.tally(entry)?;
        let counts = tally.counts.lock().unwrap_or_else(PoisonError::into_inner).clone();
        Some((release_name(entry, tally.started_at), serde_json::to_vec(&counts).ok()?))
    }
}

impl Tally {
    fn new(started_at: DateTime<Utc>) -> Tally {
        Tally {
            started_at,
            counts: Mutex::new(Counts::default()),
            aborting: AtomicBool::new(false),
        }
    }
}

/// The counts every node published for the release running on `entry`, summed.
async fn cluster_counts(store: &Store, entry: &Entry) -> Result<Option<Counts>, StoreError> {
    let Some(gray) = &entry.gray else { return Ok(None) };
    let published = store.read_ephemeral(&release_name(entry, gray.started_at)).await?;
    let mut sum = Counts::default();
    for (_, bytes) in published {
        if let Ok(counts) = serde_json::from_slice::<Counts>(&bytes) {
            sum.add(&counts);
        }
    }
    Ok(Some(sum))
}

/// The counts of the release on `entry`: this node's, or in a cluster every node's.
pub async fn counts(store: &Store, guards: &Guards, entry: &Entry) -> GuardCounts {
    if store.clustered() {
        if let Ok(Some(sum)) = cluster_counts(store, entry).await {
            return sum.outcomes;
        }
    }
    guards.counts(entry)
}

/// Records a report by `reporter` against the current state of a key, and carries out an
/// abort it trips (alone) or publishes the node's counts (in a cluster, where the leading
/// node decides). `Ok(None)`: no gray release runs on the key.
pub async fn report(
    store: &Store,
    guards: &Guards,
    namespace: &str,
    key: &str,
    report: &ReportRequest,
    reporter: &str,
) -> Result<Option<GuardCounts>, StoreError> {
    let Some(entry) = store.get(namespace, key) else { return Ok(None) };
    let Some(reported) = guards.report(&entry, report, reporter) else { return Ok(None) };
    if store.clustered() {
        if let Some((name, counts)) = guards.published(&entry) {
            store.publish_ephemeral(&name, counts).await?;
        }
        let sum = cluster_counts(store, &entry).await?.map(|c| c.outcomes);
        return Ok(Some(sum.unwrap_or(reported.counts)));
    }
    if let Some(abort) = reported.abort {
        tracing::warn!(namespace, key, "guard aborts the gray release");
        match store.write(abort).await {
            Ok(_) => store.metrics().record_guard_abort(),
            // Someone else ended or replaced the release first: nothing to abort.
            Err(StoreError::NotFound { .. } | StoreError::Superseded(_)) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(Some(reported.counts))
}

/// In a cluster, while this node leads: sums every node's counts of the running
/// releases with a guard, and aborts those whose sum trips it. Alone, reports decide
/// themselves and this returns at once.
pub async fn run(store: Arc<Store>, mut shutdown: watch::Receiver<bool>) {
    if !store.clustered() {
        return;
    }
    let mut leadership = store.leadership();
    let mut tick = tokio::time::interval(CLUSTER_CHECK_EVERY);
    // Reads of the counts that failed in a row (etcd down): logged once, and on recovery.
    let mut unread = crate::streak::Streak::default();
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = tick.tick() => {}
        }
        if !*leadership.borrow_and_update() {
            continue;
        }
        for entry in store.gray_entries() {
            if entry.gray.as_ref().is_none_or(|g| g.guard.is_none()) {
                continue;
            }
            let counted = cluster_counts(&store, &entry).await;
            if counted.is_ok() {
                if let Some(ended) = unread.succeeded() {
                    tracing::info!(
                        failures = ended.failures,
                        failing_s = ended.lasted.as_secs(),
                        "the cluster's guard counts read again"
                    );
                }
            }
            let sum = match counted {
                Ok(Some(sum)) => sum,
                Ok(None) => continue,
                Err(err) if unread.failed() == 1 => {
                    tracing::warn!(error = %err, "cannot read the cluster's guard counts (logged again once they read)");
                    break;
                }
                Err(_) => break,
            };
            if let Some(abort) = sum.abort(&entry, None) {
                tracing::warn!(namespace = %entry.namespace, key = %entry.key, "guard aborts the gray release");
                match store.write(abort).await {
                    Ok(_) => store.metrics().record_guard_abort(),
                    Err(StoreError::NotFound { .. } | StoreError::Superseded(_)) => {}
                    Err(err) => tracing::warn!(error = %err, "cannot abort the gray release"),
                }
            }
        }
    }
}

/// Refuses a report that counts nothing or more than a report may.
pub fn check_report(ok: u64, errors: u64) -> Result<(), ApiError> {
    let total = ok.saturating_add(errors);
    if total == 0 || total > MAX_REPORT_OUTCOMES {
        return Err(ApiError::InvalidValue(format!(
            "a report counts 1 to {MAX_REPORT_OUTCOMES} outcomes, not {total}"
        )));
    }
    Ok(())
}
