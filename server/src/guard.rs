//! The guard of gray releases: outcome counts per variant, and the automatic abort when
//! the gray variant's error rate climbs over its limit.
//!
//! Counts live in memory, per key and per release (a new release starts from zero); a
//! restart starts them over, which can only delay an abort, never cause a wrong one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use graycast_protocol::gray::{GuardCounts, OutcomeCounts, ReportRequest};
use graycast_protocol::{Entry, Variant};

use crate::store::{Mutation, Store, StoreError, WriteRequest};

/// Recorded as `updated_by` of the aborts the guard makes.
pub const GUARD_ACTOR: &str = "guard";

/// Most outcomes one report may carry: enough for a service's minute of traffic, too few
/// for one report to decide a release alone when `min_samples` is set sensibly.
pub const MAX_REPORT_OUTCOMES: u64 = 10_000;

/// Most reporter names the guard remembers per release (for the abort's note).
const MAX_REPORTERS: usize = 16;

struct Tally {
    started_at: DateTime<Utc>,
    counts: Mutex<Counts>,
    aborting: AtomicBool,
}

/// The outcome counts of a release, and who reported its gray errors.
#[derive(Default)]
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
}

/// Outcome counts of the running releases.
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

impl Guards {
    /// The counts of the release running on `entry` (zero if none were reported).
    pub fn counts(&self, entry: &Entry) -> GuardCounts {
        let Some(gray) = &entry.gray else { return GuardCounts::default() };
        self.tallies
            .get(&(entry.namespace.clone(), entry.key.clone()))
            .filter(|t| t.started_at == gray.started_at)
            .map(|t| t.counts.lock().unwrap_or_else(PoisonError::into_inner).outcomes)
            .unwrap_or_default()
    }

    /// Adds outcomes reported by `reporter` for the release running on `entry`; decides
    /// whether to abort it.
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
        let (counts, reporters) = {
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
            (counts.outcomes, counts.reporters())
        };
        let tripped = gray.guard.as_ref().is_some_and(|guard| {
            counts.gray.total() >= guard.min_samples
                && counts.gray.error_rate() > guard.max_error_rate
        });
        let abort = (tripped && !tally.aborting.swap(true, Ordering::AcqRel)).then(|| {
            let limit = gray.guard.as_ref().map_or(0.0, |g| g.max_error_rate);
            WriteRequest::new(
                entry.namespace.clone(),
                entry.key.clone(),
                Mutation::Abort {
                    started_at: Some(gray.started_at),
                    note: Some(format!(
                        "guard: gray error rate {:.4} over {} outcomes exceeds {limit}; stable error rate {:.4} over {}; gray errors reported by {reporters}; tripped by a report of {reporter}",
                        counts.gray.error_rate(),
                        counts.gray.total(),
                        counts.stable.error_rate(),
                        counts.stable.total(),
                    )),
                },
                GUARD_ACTOR,
            )
        });
        Some(Reported { counts, abort })
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

/// Records a report by `reporter` against the current state of a key and carries out an
/// abort it trips. `Ok(None)`: no gray release runs on the key.
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
    if let Some(abort) = reported.abort {
        tracing::warn!(namespace, key, "guard aborts the gray release");
        match store.write(abort).await {
            // Someone else ended or replaced the release first: nothing to abort.
            Ok(_) | Err(StoreError::NotFound { .. } | StoreError::Superseded(_)) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(Some(reported.counts))
}
