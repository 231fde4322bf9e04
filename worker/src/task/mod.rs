//! Running tasks: one tokio task per connector task, driven by a target state and reporting its
//! state changes to the herder.
//!
//! A task never loses a record it has taken in: source tasks store an offset only once Kafka has
//! acknowledged every record up to it, and sink tasks commit only what `pre_commit` returned. On
//! pause, a task stops taking in new records but keeps committing; on stop, it commits what it can,
//! then calls the connector's `stop`.

pub mod errors;
pub mod overflow;
mod sink;
mod source;

use std::sync::Arc;
use std::time::Duration;

use sluice_connector_api::{Props, TaskId};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use sink::SinkTaskRunner;
pub use source::SourceTaskRunner;

/// What the herder wants a task to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Desired {
    /// Process records.
    Running,
    /// Keep resources and assignment, process nothing.
    Paused,
    /// Commit and exit.
    Stopped,
}

/// A task's state as shown in status (Kafka Connect's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// Processing records.
    Running,
    /// Paused by the user.
    Paused,
    /// Failed; see the trace.
    Failed,
    /// Exited after a stop.
    Unassigned,
}

impl TaskState {
    /// The status-topic name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Running => "RUNNING",
            TaskState::Paused => "PAUSED",
            TaskState::Failed => "FAILED",
            TaskState::Unassigned => "UNASSIGNED",
        }
    }
}

/// What a task reports.
#[derive(Debug, Clone)]
pub enum TaskReport {
    /// Its state changed; `trace` explains a failure.
    State {
        /// The new state.
        state: TaskState,
        /// The failure trace, when failed.
        trace: Option<String>,
    },
    /// It used a topic for the first time.
    TopicUsed(String),
}

/// A report of one task incarnation.
#[derive(Debug, Clone)]
pub struct TaskEvent {
    /// The task.
    pub id: TaskId,
    /// Incarnation of the task that reported it, so reports of a replaced task are ignored.
    pub incarnation: u64,
    /// What happened.
    pub report: TaskReport,
}

/// Reports state changes of one task incarnation.
#[derive(Clone)]
pub struct Reporter {
    id: TaskId,
    incarnation: u64,
    events: mpsc::UnboundedSender<TaskEvent>,
}

impl Reporter {
    /// A reporter for one incarnation of a task.
    pub fn new(id: TaskId, incarnation: u64, events: mpsc::UnboundedSender<TaskEvent>) -> Self {
        Self {
            id,
            incarnation,
            events,
        }
    }

    fn send(&self, report: TaskReport) {
        let _ = self.events.send(TaskEvent {
            id: self.id.clone(),
            incarnation: self.incarnation,
            report,
        });
    }

    fn report(&self, state: TaskState, trace: Option<String>) {
        self.send(TaskReport::State { state, trace });
    }

    fn topic_used(&self, topic: &str) {
        self.send(TaskReport::TopicUsed(topic.to_owned()));
    }

    fn failed(&self, trace: String) {
        tracing::error!(task = %self.id, "task failed: {trace}");
        self.report(TaskState::Failed, Some(trace));
    }
}

/// Settings shared by every task of a worker.
#[derive(Debug, Clone)]
pub struct TaskSettings {
    /// How often offsets are written or committed.
    pub offset_flush_interval: Duration,
}

/// A running task, as the herder holds it.
pub struct TaskHandle {
    /// The task config it runs with.
    pub config: Props,
    /// Its incarnation number.
    pub incarnation: u64,
    desired: watch::Sender<Desired>,
    join: JoinHandle<()>,
}

impl TaskHandle {
    /// Wraps a spawned task.
    pub fn new(
        config: Props,
        incarnation: u64,
        desired: watch::Sender<Desired>,
        join: JoinHandle<()>,
    ) -> Self {
        Self {
            config,
            incarnation,
            desired,
            join,
        }
    }

    /// Asks the task to run or pause.
    pub fn set_desired(&self, desired: Desired) {
        self.desired.send_if_modified(|d| {
            let changed = *d != desired;
            *d = desired;
            changed
        });
    }

    /// Whether the task's loop has exited (after failing or stopping).
    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }

    /// Stops the task, waiting up to `timeout` before abandoning it.
    pub async fn stop(self, timeout: Duration) {
        let _ = self.desired.send(Desired::Stopped);
        let mut join = self.join;
        if tokio::time::timeout(timeout, &mut join).await.is_err() {
            tracing::warn!("task did not stop within {timeout:?}; abandoning it");
            join.abort();
        }
    }
}

pub(crate) type SharedSettings = Arc<crate::connector_config::RuntimeSettings>;
