//! Test doubles for the runtime's side of the plugin API, so that a connector's task logic is
//! unit-tested without a broker (feature `testing`).
//!
//! [`FakeSinkControl`] plays the sink runtime: it keeps an assignment, paused partitions, commit
//! requests, sent records, reported records, counters and rewinds for the test to read, applies an
//! error policy to reported records (`errors.tolerance` all or none), and decodes JSON values with
//! a schemaless JSON converter. Its committed offsets live in a [`Group`], which several fakes can
//! share to play two tasks of one consumer group. [`FakeOffsets`] is a source task's stored offsets.
//!
//! ```
//! use sluice_connector_api::testing::FakeSinkControl;
//! use sluice_connector_api::{ConnectError, TopicPartition};
//!
//! # tokio_test_block_on(async {
//! let control = FakeSinkControl::new();
//! let ctx = control.context("my-sink", 0);
//! let tp = TopicPartition::new("orders", 0);
//! control.assign(&[tp.clone()]);
//! assert_eq!(ctx.assignment(), vec![tp]);
//! // An errant record under errors.tolerance=none fails the task.
//! control.fail_on_report(true);
//! let record = FakeSinkControl::record("orders", 0, 7, b"{}");
//! assert!(ctx.report(&record, ConnectError::user("bad")).await.is_err());
//! assert_eq!(control.reported().len(), 1);
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     let waker = std::task::Waker::noop();
//! #     let mut cx = std::task::Context::from_waker(&waker);
//! #     let mut f = std::pin::pin!(f);
//! #     loop {
//! #         if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; }
//! #     }
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::convert::JsonConverter;
use crate::{
    CommittedOffset, ConnectData, ConnectError, ConnectResult, Converter, OffsetReader, Offsets,
    ProducerRecord, Record, SinkRecord, SinkTaskContext, SinkTaskControl, SourceOffset,
    SourcePartition, TaskId, TopicPartition, Value, async_trait,
};

/// A consumer group's committed offsets, shared by the fakes of its tasks.
#[derive(Debug, Default)]
pub struct Group {
    committed: Mutex<BTreeMap<TopicPartition, CommittedOffset>>,
}

impl Group {
    /// A group with nothing committed.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// The committed offset of `tp`.
    pub fn committed(&self, tp: &TopicPartition) -> Option<i64> {
        self.committed.lock().get(tp).map(|c| c.offset)
    }

    /// Commits `offset` for `tp`, as the runtime does with what `pre_commit` returned.
    pub fn commit(&self, tp: &TopicPartition, offset: i64) {
        self.committed.lock().insert(
            tp.clone(),
            CommittedOffset {
                offset,
                metadata: String::new(),
            },
        );
    }
}

/// A record the task reported, with the error's message.
#[derive(Debug, Clone, PartialEq)]
pub struct Reported {
    /// Where the record was read from.
    pub origin: TopicPartition,
    /// Its offset.
    pub offset: i64,
    /// The error's message.
    pub message: String,
}

/// The sink runtime, played for a unit test.
#[derive(Debug, Default)]
pub struct FakeSinkControl {
    group: Arc<Group>,
    assignment: Mutex<Vec<TopicPartition>>,
    paused: Mutex<BTreeSet<TopicPartition>>,
    commit_requests: AtomicUsize,
    sent: Mutex<Vec<ProducerRecord>>,
    reported: Mutex<Vec<Reported>>,
    /// `errors.tolerance=none`: a report fails the task.
    fail_reports: AtomicBool,
    /// Errors the next reports return (a dead-letter produce that failed), in order.
    report_errors: Mutex<VecDeque<ConnectError>>,
    counters: Mutex<BTreeMap<String, u64>>,
    gauges: Mutex<BTreeMap<String, i64>>,
    resets: Mutex<Vec<Offsets>>,
    converter: JsonConverter,
}

impl FakeSinkControl {
    /// A runtime with its own group, `errors.tolerance=all` and no dead-letter failures.
    pub fn new() -> Arc<Self> {
        Self::in_group(Group::new())
    }

    /// A runtime whose committed offsets are `group`'s (another task of the same connector).
    pub fn in_group(group: Arc<Group>) -> Arc<Self> {
        Arc::new(Self {
            group,
            converter: JsonConverter::new(false),
            ..Self::default()
        })
    }

    /// A task context backed by this runtime.
    pub fn context(self: &Arc<Self>, connector: &str, task: u32) -> SinkTaskContext {
        SinkTaskContext::new(
            TaskId::new(connector, task),
            Arc::clone(self) as Arc<dyn SinkTaskControl>,
        )
    }

    /// The group holding this runtime's committed offsets.
    pub fn group(&self) -> &Arc<Group> {
        &self.group
    }

    /// Adds partitions to the assignment.
    pub fn assign(&self, partitions: &[TopicPartition]) {
        self.assignment.lock().extend(partitions.iter().cloned());
    }

    /// Removes partitions from the assignment.
    pub fn revoke(&self, partitions: &[TopicPartition]) {
        self.assignment.lock().retain(|p| !partitions.contains(p));
    }

    /// `true`: reports fail the task (`errors.tolerance=none`); `false`: they are tolerated.
    pub fn fail_on_report(&self, fail: bool) {
        self.fail_reports.store(fail, Ordering::Relaxed);
    }

    /// The next report returns `error` (a dead letter that could not be written), whatever the
    /// tolerance; the record is not counted as reported.
    pub fn fail_next_report(&self, error: ConnectError) {
        self.report_errors.lock().push_back(error);
    }

    /// Partitions paused by the task now.
    pub fn paused(&self) -> BTreeSet<TopicPartition> {
        self.paused.lock().clone()
    }

    /// How many commits the task asked for.
    pub fn commit_requests(&self) -> usize {
        self.commit_requests.load(Ordering::Relaxed)
    }

    /// Records the task sent.
    pub fn sent(&self) -> Vec<ProducerRecord> {
        self.sent.lock().clone()
    }

    /// Records the task reported (and the policy tolerated or not), in order.
    pub fn reported(&self) -> Vec<Reported> {
        self.reported.lock().clone()
    }

    /// The task's counters.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.counters.lock().clone()
    }

    /// The task's gauges, as last set.
    pub fn gauges(&self) -> BTreeMap<String, i64> {
        self.gauges.lock().clone()
    }

    /// The rewinds the task asked for since the last call, in order.
    pub fn take_resets(&self) -> Vec<Offsets> {
        std::mem::take(&mut *self.resets.lock())
    }

    /// A record read from `topic`-`partition` at `offset` whose value is JSON text left for the
    /// task to decode ([`SinkRecord::value_is_json`]).
    pub fn record(topic: &str, partition: i32, offset: i64, json: &[u8]) -> SinkRecord {
        SinkRecord {
            record: Record {
                topic: topic.into(),
                partition: Some(partition),
                value: Value::Bytes(json.to_vec()),
                timestamp: Some(offset),
                ..Record::default()
            },
            origin: TopicPartition::new(topic, partition),
            offset,
            value_is_json: true,
        }
    }
}

#[async_trait]
impl SinkTaskControl for FakeSinkControl {
    fn pause(&self, partitions: &[TopicPartition]) {
        self.paused.lock().extend(partitions.iter().cloned());
    }

    fn resume(&self, partitions: &[TopicPartition]) {
        let mut paused = self.paused.lock();
        for p in partitions {
            paused.remove(p);
        }
    }

    fn request_commit(&self) {
        self.commit_requests.fetch_add(1, Ordering::Relaxed);
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        self.assignment.lock().clone()
    }

    async fn send(&self, record: ProducerRecord) -> ConnectResult<()> {
        self.sent.lock().push(record);
        Ok(())
    }

    async fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> ConnectResult<BTreeMap<TopicPartition, CommittedOffset>> {
        let committed = self.group.committed.lock();
        Ok(partitions
            .iter()
            .filter_map(|p| committed.get(p).map(|c| (p.clone(), c.clone())))
            .collect())
    }

    async fn commit(
        &self,
        offsets: BTreeMap<TopicPartition, CommittedOffset>,
    ) -> ConnectResult<()> {
        self.group.committed.lock().extend(offsets);
        Ok(())
    }

    async fn report(&self, record: &SinkRecord, error: ConnectError) -> ConnectResult<()> {
        if let Some(failure) = self.report_errors.lock().pop_front() {
            return Err(failure);
        }
        self.reported.lock().push(Reported {
            origin: record.origin.clone(),
            offset: record.offset,
            message: error.to_string(),
        });
        if self.fail_reports.load(Ordering::Relaxed) {
            return Err(error.context(format!(
                "Error handling record at {}, offset {}",
                record.origin, record.offset
            )));
        }
        Ok(())
    }

    fn count(&self, counter: &str, n: u64) {
        *self.counters.lock().entry(counter.to_owned()).or_default() += n;
    }

    fn gauge(&self, name: &str, value: i64) {
        self.gauges.lock().insert(name.to_owned(), value);
    }

    fn reset_offsets(&self, offsets: &Offsets) {
        self.resets.lock().push(offsets.clone());
    }

    async fn decode_value(&self, record: &SinkRecord) -> ConnectResult<Option<ConnectData>> {
        let Value::Bytes(text) = &record.record.value else {
            return Ok(Some((
                record.record.value_schema.clone(),
                record.record.value.clone(),
            )));
        };
        if !record.value_is_json {
            return Ok(Some((None, record.record.value.clone())));
        }
        match self.converter.to_connect(&record.origin.topic, Some(text)) {
            Ok(data) => Ok(Some(data)),
            Err(e) => self.report(record, e).await.map(|()| None),
        }
    }
}

/// A source task's stored offsets, set by the test.
#[derive(Debug, Default)]
pub struct FakeOffsets {
    offsets: Mutex<Vec<(SourcePartition, SourceOffset)>>,
}

impl FakeOffsets {
    /// No stored offsets.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Stores `offset` for `partition`, as the runtime does once records are in Kafka.
    pub fn store(&self, partition: SourcePartition, offset: SourceOffset) {
        let mut offsets = self.offsets.lock();
        offsets.retain(|(p, _)| *p != partition);
        offsets.push((partition, offset));
    }
}

impl OffsetReader for FakeOffsets {
    fn offset(&self, partition: &SourcePartition) -> Option<SourceOffset> {
        self.offsets
            .lock()
            .iter()
            .find(|(p, _)| p == partition)
            .map(|(_, o)| o.clone())
    }
}

/// Connector properties from pairs.
pub fn props(pairs: &[(&str, &str)]) -> crate::Props {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}
