//! What a sink task shares with the dispatcher task that sends its records (the Kinesis and
//! Lambda sinks): the error that failed it, the bytes it holds, and the back-pressure that pauses
//! its partitions above a bound.
//!
//! Guarantees:
//! - the first error recorded with [`Shared::fail`] is the one every later
//!   [`Shared::check_failed`] returns; later ones are logged only;
//! - [`BackPressure::apply`] pauses every assigned partition once more than its bound is held and
//!   resumes them once less than half is: a task holds at most the bound plus one `put`.

use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use sluice_connector_api::{ConnectError, ConnectResult, SinkTaskContext};

/// The state a task and its dispatcher share.
#[derive(Default)]
pub struct Shared {
    fatal: Mutex<Option<ConnectError>>,
    /// Bytes the dispatcher holds (waiting, in flight, being retried).
    pub held_bytes: AtomicUsize,
}

impl Shared {
    /// Whether the task failed.
    pub fn failed(&self) -> bool {
        self.fatal.lock().is_some()
    }

    /// Fails the task with `error` (the first one counts); `sink` names it in the log.
    pub fn fail(&self, ctx: &SinkTaskContext, sink: &str, error: ConnectError) {
        tracing::error!(task = %ctx.task_id, "the {sink} failed: {}", error.trace());
        self.fatal.lock().get_or_insert(error);
    }

    /// The error that failed the task, if any, for `put` and `pre_commit` to return.
    pub fn check_failed(&self) -> ConnectResult<()> {
        match self.fatal.lock().as_ref() {
            Some(e) => Err(ConnectError::new(e.fault(), false, e.message())),
            None => Ok(()),
        }
    }
}

/// Pauses a task's partitions while its dispatcher holds too much.
pub struct BackPressure {
    max_bytes: usize,
    paused: bool,
}

impl BackPressure {
    /// Pauses above `max_bytes`, resumes below half of it.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            paused: false,
        }
    }

    /// Pauses or resumes the task's partitions for what `shared` holds now; `target` names where
    /// the records go, for the log.
    pub fn apply(&mut self, ctx: &SinkTaskContext, shared: &Shared, target: &str) {
        let held = shared.held_bytes.load(Ordering::Relaxed);
        let max = self.max_bytes;
        if !self.paused && held > max {
            let assigned = ctx.assignment();
            tracing::info!(task = %ctx.task_id, held, max, "pausing {} partitions until {target} takes what is held", assigned.len());
            ctx.pause(&assigned);
            self.paused = true;
        } else if self.paused && held < max / 2 {
            ctx.resume(&ctx.assignment());
            self.paused = false;
        }
    }
}
