//! The circuit breaker: trips when too many of a task's most recent records failed.
//!
//! The window is the last `errors.circuit.breaker.window.records` records a task handled; the
//! breaker trips as soon as at least `errors.circuit.breaker.threshold` of a full window's worth
//! failed within it (so a deploy that breaks every record trips after `threshold × window`
//! failures, not after the window fills). A tripped breaker fails the task with its reason in the
//! status, and the records behind it stay in Kafka until an operator restarts the task.

use std::collections::VecDeque;

/// Circuit breaker settings of a connector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSettings {
    /// Share of failed records, in (0, 1], that trips the breaker.
    pub threshold: f64,
    /// How many of the most recent records count.
    pub window: usize,
}

/// The recent outcomes of one task, as runs of (failed, count) to keep bulk successes cheap.
#[derive(Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    runs: VecDeque<(bool, usize)>,
    len: usize,
    failures: usize,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(settings: BreakerSettings) -> Self {
        Self {
            settings,
            runs: VecDeque::new(),
            len: 0,
            failures: 0,
        }
    }

    /// Adds `ok` successes, then `failed` failures, dropping what falls out of the window.
    pub fn record(&mut self, ok: usize, failed: usize) {
        self.push(false, ok);
        self.push(true, failed);
    }

    fn push(&mut self, failed: bool, n: usize) {
        if n == 0 {
            return;
        }
        let n = n.min(self.settings.window);
        match self.runs.back_mut() {
            Some((f, count)) if *f == failed => *count += n,
            _ => self.runs.push_back((failed, n)),
        }
        self.len += n;
        if failed {
            self.failures += n;
        }
        let mut excess = self.len.saturating_sub(self.settings.window);
        while excess > 0 {
            let Some((f, count)) = self.runs.front_mut() else {
                break;
            };
            let dropped = excess.min(*count);
            *count -= dropped;
            self.len -= dropped;
            if *f {
                self.failures -= dropped;
            }
            excess -= dropped;
            if *count == 0 {
                self.runs.pop_front();
            }
        }
    }

    /// Why the breaker is open, if it is.
    pub fn tripped(&self) -> Option<String> {
        let limit = (self.settings.threshold * self.settings.window as f64).ceil() as usize;
        (self.failures >= limit.max(1)).then(|| {
            format!(
                "{} of the last {} records failed (errors.circuit.breaker.threshold={} of a window of {})",
                self.failures, self.len, self.settings.threshold, self.settings.window
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: f64, window: usize) -> Breaker {
        Breaker::new(BreakerSettings { threshold, window })
    }

    #[test]
    fn trips_when_the_failed_share_of_the_window_reaches_the_threshold() {
        let mut b = breaker(0.5, 10);
        b.record(0, 4);
        assert!(b.tripped().is_none());
        b.record(0, 1);
        let why = b.tripped().expect("5 of 10 failed");
        assert!(why.starts_with("5 of the last 5 records failed"), "{why}");
    }

    #[test]
    fn old_failures_leave_the_window() {
        let mut b = breaker(0.5, 10);
        b.record(0, 4);
        b.record(100, 0); // a long run of successes pushes them out
        b.record(0, 4);
        assert!(b.tripped().is_none(), "only 4 of the last 10 failed");
        b.record(3, 1);
        // Window: 2 ok, 4 failed (of which the last), 3 ok, 1 failed → 5 failed of 10.
        assert!(b.tripped().is_some());
    }

    #[test]
    fn sparse_failures_never_trip() {
        let mut b = breaker(0.2, 100);
        for _ in 0..1000 {
            b.record(9, 1);
            assert!(b.tripped().is_none());
        }
    }
}
