//! Jittered exponential back-off: how long to wait before the next try of something that failed
//! with a retriable error, and when to stop trying.
//!
//! Guarantees:
//! - Try `n` (from 0) waits a delay drawn uniformly from the upper half of
//!   `min(initial · 2ⁿ, max)` ("equal jitter"): never less than half the nominal delay, so a failing
//!   service is not hammered, and never in lockstep with other tasks that failed at the same moment.
//! - With a budget, [`Retries::next_delay`] answers `None` once the budget is spent, and never a
//!   delay that ends after it: the last wait is cut to what is left.
//!
//! One type serves every retry loop in Sluice: the worker's error policy (`errors.retry.timeout`,
//! `errors.retry.delay.max.ms`), the S3 sink's part and publish retries, and the connectors built
//! on the kit.
//!
//! ```
//! use std::time::Duration;
//! use sluice_connector_api::backoff::Backoff;
//!
//! let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5))
//!     .with_budget(Some(Duration::from_secs(30)));
//! let mut retries = backoff.retries();
//! let first = retries.next_delay().expect("within the budget");
//! assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
//! ```

use std::time::{Duration, Instant};

/// An exponential back-off policy: first delay, largest delay and an optional total budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    budget: Option<Duration>,
}

impl Backoff {
    /// Delays from about `initial`, doubling per try up to `max`, with no budget (retry for ever).
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            budget: None,
        }
    }

    /// Sets the total time retries may take; `None` retries for ever, `Some(ZERO)` never retries.
    pub const fn with_budget(mut self, budget: Option<Duration>) -> Self {
        self.budget = budget;
        self
    }

    /// The budget, if any.
    pub const fn budget(&self) -> Option<Duration> {
        self.budget
    }

    /// Whether a failure is retried at all (the budget is not zero).
    pub fn retries_at_all(&self) -> bool {
        self.budget != Some(Duration::ZERO)
    }

    /// The nominal delay of try `attempt` (from 0): `initial · 2^attempt`, capped at `max`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The wait before try `attempt` (from 0), with jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_at(attempt, fastrand::f64())
    }

    /// The wait before try `attempt` for a uniform draw `unit` in `[0, 1)`: the upper half of
    /// [`Backoff::ceiling`]. Deterministic, for tests.
    pub fn delay_at(&self, attempt: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        half + ceiling.saturating_sub(half).mul_f64(unit.clamp(0.0, 1.0))
    }

    /// A retry sequence starting now.
    pub fn retries(&self) -> Retries {
        Retries {
            backoff: *self,
            started: Instant::now(),
            attempts: 0,
        }
    }
}

/// One run of retries under a [`Backoff`]: counts tries and watches the budget.
#[derive(Debug, Clone)]
pub struct Retries {
    backoff: Backoff,
    started: Instant,
    attempts: u32,
}

impl Retries {
    /// The wait before the next try, or `None` when the budget is spent.
    pub fn next_delay(&mut self) -> Option<Duration> {
        let left = match self.backoff.budget {
            None => Duration::MAX,
            Some(budget) => budget.saturating_sub(self.started.elapsed()),
        };
        if left.is_zero() {
            return None;
        }
        let delay = self.backoff.delay(self.attempts).min(left);
        self.attempts = self.attempts.saturating_add(1);
        Some(delay)
    }

    /// How many delays were handed out: the number of retries so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Starts over, as after a success.
    pub fn reset(&mut self) {
        self.started = Instant::now();
        self.attempts = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_within_jittered_bounds_and_cap_at_the_maximum() {
        let b = Backoff::new(Duration::from_millis(300), Duration::from_secs(2));
        for (attempt, ceiling_ms) in [(0, 300), (1, 600), (2, 1200), (3, 2000), (40, 2000)] {
            let ceiling = Duration::from_millis(ceiling_ms);
            assert_eq!(b.delay_at(attempt, 0.0), ceiling / 2);
            assert_eq!(b.delay_at(attempt, 1.0), ceiling);
            for _ in 0..100 {
                let d = b.delay(attempt);
                assert!(d >= ceiling / 2 && d <= ceiling, "attempt {attempt}: {d:?}");
            }
        }
    }

    #[test]
    fn jitter_spreads_tasks_that_failed_together() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
        let delays: std::collections::BTreeSet<_> = (0..50).map(|_| b.delay(0)).collect();
        assert!(delays.len() > 40, "{} distinct delays of 50", delays.len());
    }

    #[test]
    fn a_budget_ends_the_retries_and_cuts_the_last_wait() {
        let none = Backoff::new(Duration::from_millis(1), Duration::from_millis(1))
            .with_budget(Some(Duration::ZERO));
        assert!(!none.retries_at_all());
        assert_eq!(none.retries().next_delay(), None);

        let short = Backoff::new(Duration::from_secs(10), Duration::from_secs(10))
            .with_budget(Some(Duration::from_millis(50)));
        let mut retries = short.retries();
        let first = retries.next_delay().expect("budget left");
        assert!(first <= Duration::from_millis(50), "{first:?}");
        // As if the budget had passed since the first failure.
        retries.started -= Duration::from_millis(50);
        assert_eq!(retries.next_delay(), None);
        assert_eq!(retries.attempts(), 1);

        let forever = Backoff::new(Duration::from_millis(1), Duration::from_millis(4));
        let mut retries = forever.retries();
        for _ in 0..100 {
            assert!(retries.next_delay().is_some());
        }
        retries.reset();
        assert_eq!(retries.attempts(), 0);
    }
}
