//! The worker's metrics: what each task's error policy did, and the counters connectors keep.
//!
//! Counters are Prometheus counters labelled by connector and task, served at `GET /metrics`.
//! They count from the moment the worker started and never go down; a task restarted on this
//! worker continues its counters. The same figures, with the task's last error, appear in the
//! task's status ([`TaskMetrics::summary`]), which the herder writes to the status topic so that
//! every worker shows them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use sluice_connector_api::TaskId;
use sluice_rest_api::model::{LastError, TaskErrors};

/// Every metric of one worker.
pub struct Metrics {
    registry: Registry,
    failed: IntCounterVec,
    retried: IntCounterVec,
    dead_lettered: IntCounterVec,
    skipped: IntCounterVec,
    counters: IntCounterVec,
    gauges: IntGaugeVec,
    overflow_records: IntCounterVec,
    overflow_switches: IntCounterVec,
    tasks: Mutex<BTreeMap<TaskId, Arc<TaskMetrics>>>,
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name} is malformed: {e}"));
    registry
        .register(Box::new(vec.clone()))
        .unwrap_or_else(|e| panic!("metric {name} registered twice: {e}"));
    vec
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty set of metrics.
    pub fn new() -> Self {
        let registry = Registry::new();
        let task = &["connector", "task"];
        Self {
            failed: counter_vec(
                &registry,
                "sluice_task_records_failed_total",
                "Records that failed for good at some stage.",
                task,
            ),
            retried: counter_vec(
                &registry,
                "sluice_task_records_retried_total",
                "Retries of a stage that failed with a retriable error.",
                task,
            ),
            dead_lettered: counter_vec(
                &registry,
                "sluice_task_records_dead_lettered_total",
                "Failed records written to the dead-letter queue.",
                task,
            ),
            skipped: counter_vec(
                &registry,
                "sluice_task_records_skipped_total",
                "Failed records skipped without a dead-letter queue.",
                task,
            ),
            counters: counter_vec(
                &registry,
                "sluice_connector_records_total",
                "Counters kept by connectors, such as records routed per rule by the DLQ router.",
                &["connector", "task", "counter"],
            ),
            gauges: {
                let name = "sluice_connector_gauge";
                let vec = IntGaugeVec::new(
                    Opts::new(
                        name,
                        "Gauges set by connectors, such as how far a shard is behind.",
                    ),
                    &["connector", "task", "gauge"],
                )
                .unwrap_or_else(|e| panic!("metric {name} is malformed: {e}"));
                registry
                    .register(Box::new(vec.clone()))
                    .unwrap_or_else(|e| panic!("metric {name} registered twice: {e}"));
                vec
            },
            overflow_records: counter_vec(
                &registry,
                "sluice_overflow_records_total",
                "Records of a task with an overflow stream, per target: kafka, kinesis \
                 (diverted) and replayed (from the overflow stream into Kafka).",
                &["connector", "task", "target"],
            ),
            overflow_switches: counter_vec(
                &registry,
                "sluice_overflow_switches_total",
                "Overflow state changes of a task, per new state: diverting, recovering, kafka.",
                &["connector", "task", "to"],
            ),
            registry,
            tasks: Mutex::default(),
        }
    }

    /// The metrics of one task, created on first use.
    pub fn task(&self, id: &TaskId) -> Arc<TaskMetrics> {
        let mut tasks = self.tasks.lock();
        let entry = tasks.entry(id.clone()).or_insert_with(|| {
            let task = id.task.to_string();
            let labels = [id.connector.as_str(), task.as_str()];
            Arc::new(TaskMetrics {
                failed: self.failed.with_label_values(&labels),
                retried: self.retried.with_label_values(&labels),
                dead_lettered: self.dead_lettered.with_label_values(&labels),
                skipped: self.skipped.with_label_values(&labels),
                counters: self.counters.clone(),
                gauges: self.gauges.clone(),
                custom_gauges: Mutex::default(),
                overflow_records: self.overflow_records.clone(),
                overflow_switches: self.overflow_switches.clone(),
                overflow_state: Mutex::default(),
                labels: (id.connector.clone(), task.clone()),
                custom: Mutex::default(),
                last_error: Mutex::default(),
                version: AtomicU64::new(0),
            })
        });
        Arc::clone(entry)
    }

    /// Tasks with metrics, and how often each has changed.
    pub fn versions(&self) -> Vec<(TaskId, u64)> {
        let tasks = self.tasks.lock();
        tasks
            .iter()
            .map(|(id, m)| (id.clone(), m.version.load(Ordering::Relaxed)))
            .collect()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!("encoding metrics failed: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// One task's counters.
pub struct TaskMetrics {
    failed: IntCounter,
    retried: IntCounter,
    dead_lettered: IntCounter,
    skipped: IntCounter,
    counters: IntCounterVec,
    gauges: IntGaugeVec,
    overflow_records: IntCounterVec,
    overflow_switches: IntCounterVec,
    overflow_state: Mutex<Option<&'static str>>,
    labels: (String, String),
    custom: Mutex<BTreeMap<String, IntCounter>>,
    custom_gauges: Mutex<BTreeMap<String, IntGauge>>,
    last_error: Mutex<Option<LastError>>,
    /// Bumped on every change.
    version: AtomicU64,
}

impl TaskMetrics {
    fn changed(&self) {
        self.version.fetch_add(1, Ordering::Relaxed);
    }

    /// A record failed for good.
    pub fn failed(&self, error: LastError) {
        self.failed.inc();
        *self.last_error.lock() = Some(error);
        self.changed();
    }

    /// A stage is being retried.
    pub fn retried(&self) {
        self.retried.inc();
        self.changed();
    }

    /// A failed record is in the dead-letter queue.
    pub fn dead_lettered(&self) {
        self.dead_lettered.inc();
        self.changed();
    }

    /// A failed record was skipped without a dead-letter queue.
    pub fn skipped(&self) {
        self.skipped.inc();
        self.changed();
    }

    /// Adds to a connector-defined counter.
    pub fn count(&self, counter: &str, n: u64) {
        let mut custom = self.custom.lock();
        let c = custom.entry(counter.to_owned()).or_insert_with(|| {
            self.counters.with_label_values(&[
                self.labels.0.as_str(),
                self.labels.1.as_str(),
                counter,
            ])
        });
        c.inc_by(n);
        drop(custom);
        self.changed();
    }

    /// Sets a connector-defined gauge.
    pub fn gauge(&self, name: &str, value: i64) {
        let mut gauges = self.custom_gauges.lock();
        let g = gauges.entry(name.to_owned()).or_insert_with(|| {
            self.gauges
                .with_label_values(&[self.labels.0.as_str(), self.labels.1.as_str(), name])
        });
        if g.get() != value {
            g.set(value);
            drop(gauges);
            self.changed();
        }
    }

    /// Counts records of a task with an overflow stream sent to `target`.
    pub fn overflow_records(&self, target: &str, n: u64) {
        self.overflow_records
            .with_label_values(&[self.labels.0.as_str(), self.labels.1.as_str(), target])
            .inc_by(n);
    }

    /// The task's overflow state is now `state` (`kafka`, `diverting`, `recovering`); the
    /// first call sets it without counting a switch.
    pub fn overflow_state(&self, state: &'static str) {
        let before = self.overflow_state.lock().replace(state);
        if before.is_some_and(|b| b != state) {
            self.overflow_switches
                .with_label_values(&[self.labels.0.as_str(), self.labels.1.as_str(), state])
                .inc();
        }
        if before != Some(state) {
            self.changed();
        }
    }

    /// The figures shown in the task's status.
    pub fn summary(&self) -> TaskErrors {
        let custom = self.custom.lock();
        TaskErrors {
            records_failed: self.failed.get(),
            records_retried: self.retried.get(),
            records_dead_lettered: self.dead_lettered.get(),
            records_skipped: self.skipped.get(),
            counters: custom.iter().map(|(k, c)| (k.clone(), c.get())).collect(),
            gauges: self
                .custom_gauges
                .lock()
                .iter()
                .map(|(k, g)| (k.clone(), g.get()))
                .collect(),
            last_error: self.last_error.lock().clone(),
            overflow: self.overflow_state.lock().map(str::to_owned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_counters_show_in_summary_and_exposition() {
        let metrics = Metrics::new();
        let id = TaskId::new("orders-sink", 1);
        let task = metrics.task(&id);
        task.failed(LastError {
            stage: "VALUE_CONVERTER".into(),
            record: "topic t, partition 0, offset 7".into(),
            message: "bad json".into(),
            timestamp: 1,
        });
        task.dead_lettered();
        task.count("routed.rule.transient", 2);
        task.gauge("millis.behind.latest.shardId-000000000000", 1500);
        // The same task asked for again shares the counters.
        metrics.task(&id).retried();
        let summary = task.summary();
        assert_eq!(
            (
                summary.records_failed,
                summary.records_retried,
                summary.records_dead_lettered
            ),
            (1, 1, 1)
        );
        assert_eq!(summary.counters["routed.rule.transient"], 2);
        assert_eq!(
            summary.gauges["millis.behind.latest.shardId-000000000000"],
            1500
        );
        assert_eq!(summary.last_error.unwrap().message, "bad json");
        let text = metrics.render();
        assert!(
            text.contains(
                r#"sluice_task_records_failed_total{connector="orders-sink",task="1"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"counter="routed.rule.transient""#),
            "{text}"
        );
        assert!(
            text.contains(r#"gauge="millis.behind.latest.shardId-000000000000",task="1"} 1500"#),
            "{text}"
        );
        assert_eq!(metrics.versions(), [(id, 5)]);
    }
}
