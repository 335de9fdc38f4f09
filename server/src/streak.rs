//! Failures that repeat while something is down (etcd unreachable, a member gone): the
//! first of a streak is worth a log line, the retries after it are not, and the end of the
//! streak is, with how many there were and for how long. The metrics count every one.

use std::time::{Duration, Instant};

/// A run of failures of one thing, and when it began.
#[derive(Debug, Default)]
pub struct Streak {
    failures: u64,
    since: Option<Instant>,
}

/// How a streak that ended went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// Failures in the streak.
    pub failures: u64,
    /// From its first failure to the success that ended it.
    pub lasted: Duration,
}

impl Streak {
    /// One more failure; returns how many the streak holds now (1: log it).
    pub fn failed(&mut self) -> u64 {
        self.since.get_or_insert_with(Instant::now);
        self.failures += 1;
        self.failures
    }

    /// A success: the streak it ends, if one was running (log it).
    pub fn succeeded(&mut self) -> Option<Ended> {
        let since = self.since.take()?;
        let failures = std::mem::take(&mut self.failures);
        Some(Ended { failures, lasted: since.elapsed() })
    }

    /// Whether a streak is running.
    pub fn failing(&self) -> bool {
        self.failures > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streak_counts_its_failures_and_ends_once() {
        let mut streak = Streak::default();
        assert_eq!(streak.succeeded(), None, "nothing to report without failures");
        assert_eq!(streak.failed(), 1);
        assert_eq!(streak.failed(), 2);
        assert!(streak.failing());
        let ended = streak.succeeded().expect("a streak ended");
        assert_eq!(ended.failures, 2);
        assert_eq!(streak.succeeded(), None, "and only once");
        assert_eq!(streak.failed(), 1, "the next failure starts a new streak");
    }
}
