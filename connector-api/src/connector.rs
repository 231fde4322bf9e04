//! The connector and task traits, and the contexts the runtime hands to them.
//!
//! Lifecycle, as in Kafka Connect:
//! - a [`Connector`] is started with the user's properties and splits the work into at most
//!   `tasks.max` task configs ([`Connector::task_configs`]). It may ask for new task configs later
//!   (a table appeared) through its [`ConnectorContext`].
//! - a [`SourceTask`] is started with one task config and its stored offsets, then polled. The runtime
//!   produces every record it returns and stores the record's source offset only after Kafka has
//!   acknowledged the record, then calls [`SourceTask::commit`] with what was stored.
//! - a [`SinkTask`] is started, told which partitions it owns ([`SinkTask::open`]), handed batches
//!   ([`SinkTask::put`]) and periodically asked which offsets are safe to commit
//!   ([`SinkTask::pre_commit`]). The runtime commits exactly what `pre_commit` returns, so a sink that
//!   writes asynchronously or in files returns only offsets whose records are durable.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::{ConfigDef, ConfigValueReport, Props};
use crate::record::{from_object, to_object};
use crate::{
    ConnectData, ConnectError, ConnectResult, Headers, SinkRecord, SourceOffset, SourcePartition,
    SourceRecord, TopicPartition,
};

/// Sink offsets: for each partition, the offset of the next record to read (Kafka's commit convention).
pub type Offsets = BTreeMap<TopicPartition, i64>;

/// Kafka's acknowledgement of records already queued (see [`SinkTaskControl::queue_all`]):
/// resolves once every one of them is acknowledged, or with the error of one that was not.
pub type Acknowledgement =
    std::pin::Pin<Box<dyn std::future::Future<Output = ConnectResult<()>> + Send + 'static>>;

/// A consumer-group offset with the metadata string Kafka stores beside it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommittedOffset {
    /// The next offset to read.
    pub offset: i64,
    /// Free-form metadata committed with the offset (Kafka keeps up to
    /// `offset.metadata.max.bytes`, 4096 by default).
    pub metadata: String,
}

/// Identifies a task: its connector's name and its number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId {
    /// Connector name.
    pub connector: String,
    /// Task number, from 0.
    pub task: u32,
}

impl TaskId {
    /// A task id.
    pub fn new(connector: impl Into<String>, task: u32) -> Self {
        Self {
            connector: connector.into(),
            task,
        }
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.connector, self.task)
    }
}

/// What a connector may ask of the runtime.
pub trait ConnectorContext: Send + Sync {
    /// The connector's task configs may have changed: call [`Connector::task_configs`] again.
    fn request_task_reconfiguration(&self);
}

/// A connector: validates its config and divides work into task configs.
#[async_trait]
pub trait Connector: Send + Sync {
    /// The connector's config definition (without the runtime's common keys such as `tasks.max`).
    fn config_def(&self) -> ConfigDef;

    /// Validates properties without touching any external system. Override to add checks that span
    /// several keys; keep the per-key results of the default.
    fn validate(&self, props: &Props) -> Vec<ConfigValueReport> {
        self.config_def().validate(props)
    }

    /// Starts the connector with validated properties.
    async fn start(&mut self, ctx: Arc<dyn ConnectorContext>, props: &Props) -> ConnectResult<()>;

    /// Splits the work into at most `max_tasks` task configs.
    fn task_configs(&self, max_tasks: usize) -> ConnectResult<Vec<Props>>;

    /// Stops the connector, releasing what `start` acquired.
    async fn stop(&mut self) -> ConnectResult<()> {
        Ok(())
    }
}

/// A connector that reads from an external system into Kafka.
pub trait SourceConnector: Connector {
    /// A new, unstarted task.
    fn task(&self) -> Box<dyn SourceTask>;
}

/// A connector that writes Kafka records to an external system.
pub trait SinkConnector: Connector {
    /// A new, unstarted task.
    fn task(&self) -> Box<dyn SinkTask>;
}

/// Reads the source offsets the runtime has stored for this connector.
pub trait OffsetReader: Send + Sync {
    /// The last stored offset of `partition`, if any.
    fn offset(&self, partition: &SourcePartition) -> Option<SourceOffset>;
}

/// What a source task may ask of the runtime besides its offsets.
#[async_trait]
pub trait SourceTaskControl: Send + Sync {
    /// Reports a record the task read but cannot turn into a Kafka record (a payload that does
    /// not decode). `record` holds what was read, as bytes where it can ([`Value::Bytes`](crate::Value::Bytes)), with
    /// the source partition and offset it came from. The runtime applies the connector's error
    /// policy at stage `TASK_POLL`: with `errors.tolerance=none` this returns the error that fails
    /// the task; with `all` the record is logged, counted and dead-lettered if a DLQ is set, and
    /// the call returns `Ok`. Its offset is stored with the next record of its source partition.
    async fn report(&self, record: &SourceRecord, error: ConnectError) -> ConnectResult<()>;
    /// Adds `n` to a counter of this task named by the connector.
    fn count(&self, counter: &str, n: u64);
    /// Sets a gauge of this task named by the connector (for example how far a shard is behind).
    /// Gauges appear in the task's status and in the worker's metrics.
    fn gauge(&self, name: &str, value: i64);
}

/// What a source task is given when it starts.
#[derive(Clone)]
pub struct SourceTaskContext {
    /// The task's id.
    pub task_id: TaskId,
    offsets: Arc<dyn OffsetReader>,
    control: Option<Arc<dyn SourceTaskControl>>,
}

impl SourceTaskContext {
    /// A context reading offsets from `offsets`, without error policy or metrics: a reported
    /// record fails the task, counters and gauges go nowhere.
    pub fn new(task_id: TaskId, offsets: Arc<dyn OffsetReader>) -> Self {
        Self {
            task_id,
            offsets,
            control: None,
        }
    }

    /// This context with the runtime's error policy and metrics.
    pub fn with_control(mut self, control: Arc<dyn SourceTaskControl>) -> Self {
        self.control = Some(control);
        self
    }

    /// See [`SourceTaskControl::report`]; without a runtime, the error itself (the task fails).
    pub async fn report(&self, record: &SourceRecord, error: ConnectError) -> ConnectResult<()> {
        match &self.control {
            Some(control) => control.report(record, error).await,
            None => Err(error),
        }
    }

    /// See [`SourceTaskControl::count`].
    pub fn count(&self, counter: &str, n: u64) {
        if let Some(control) = &self.control {
            control.count(counter, n);
        }
    }

    /// See [`SourceTaskControl::gauge`].
    pub fn gauge(&self, name: &str, value: i64) {
        if let Some(control) = &self.control {
            control.gauge(name, value);
        }
    }

    /// The stored offset of `partition`: where to resume.
    pub fn offset(&self, partition: &SourcePartition) -> Option<SourceOffset> {
        self.offsets.offset(partition)
    }

    /// The stored offset of a typed `partition` as the typed offset the connector writes with
    /// [`SourceRecord::new`](crate::SourceRecord::new); `Ok(None)` when nothing is stored, and a
    /// user error when what is stored has another shape.
    pub fn offset_as<O: DeserializeOwned>(
        &self,
        partition: &impl Serialize,
    ) -> ConnectResult<Option<O>> {
        let partition = to_object(partition, "source partition")?;
        self.offsets
            .offset(&partition)
            .map(|offset| from_object(&offset, "source offset"))
            .transpose()
    }
}

/// A task that reads records from an external system.
#[async_trait]
pub trait SourceTask: Send {
    /// Starts the task with its task config; resume from `ctx.offset_as(..)`. An `Err` fails the
    /// task (a restart tries again).
    async fn start(&mut self, ctx: SourceTaskContext, props: &Props) -> ConnectResult<()>;

    /// Returns the next records, or an empty batch when there is nothing yet. It should return within
    /// about a second even when idle, so that the runtime can pause, stop and commit promptly; the
    /// runtime does not cancel a poll in progress except at a forced shutdown.
    ///
    /// A retriable `Err` ([`ConnectError::retriable`]: the database is restarting, the API throttles)
    /// is logged and counted, and `poll` is called again after a jittered back-off, for as long as
    /// it lasts, as Kafka Connect does with a `RetriableException`; records returned before stay
    /// returned. Any other `Err` fails the task.
    async fn poll(&mut self) -> ConnectResult<Vec<SourceRecord>>;

    /// Called after these offsets were stored: every record up to them is in Kafka. Sources that must
    /// acknowledge upstream (a replication slot's LSN) do it here.
    async fn commit(&mut self, _offsets: &[(SourcePartition, SourceOffset)]) -> ConnectResult<()> {
        Ok(())
    }

    /// Stops the task.
    async fn stop(&mut self) -> ConnectResult<()> {
        Ok(())
    }
}

/// A record to write to Kafka as given: bytes, headers and all (a dead-letter record keeps the
/// original bytes; a result record can be converted with [`crate::convert`] first).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProducerRecord {
    /// Destination topic.
    pub topic: String,
    /// Partition; `None` lets the producer choose by key.
    pub partition: Option<i32>,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes; `None` writes a tombstone.
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: Headers,
    /// Timestamp in milliseconds since the epoch.
    pub timestamp: Option<i64>,
}

/// What a sink task may ask of the runtime.
#[async_trait]
pub trait SinkTaskControl: Send + Sync {
    /// Stop fetching from these partitions until resumed (back-pressure); already fetched records
    /// are still delivered.
    fn pause(&self, partitions: &[TopicPartition]);
    /// Resume fetching from these partitions.
    fn resume(&self, partitions: &[TopicPartition]);
    /// Ask for an offset commit (a `pre_commit` call) as soon as possible.
    fn request_commit(&self);
    /// The partitions currently assigned to this task.
    fn assignment(&self) -> Vec<TopicPartition>;
    /// Writes a record to Kafka with the worker's producer (idempotent, `acks=all`) and waits until
    /// Kafka acknowledged it. Sinks that emit records (results, dead letters, retries) use this and
    /// return offsets from `pre_commit` only for input whose output was acknowledged.
    async fn send(&self, record: ProducerRecord) -> ConnectResult<()>;
    /// Writes records to Kafka in this order and waits until Kafka acknowledged all of them: all
    /// are queued before the first acknowledgement is awaited, so a batch costs one round trip,
    /// and records that share a partition land in this order. An `Err` says that at least one
    /// was not acknowledged (which ones may have landed is unknown: write them again). The
    /// default sends them one at a time.
    async fn send_all(&self, records: &[ProducerRecord]) -> ConnectResult<()> {
        for record in records {
            self.send(record.clone()).await?;
        }
        Ok(())
    }
    /// Queues records for Kafka in this order and returns once all are queued, with the future
    /// of their acknowledgement. Records of a later call that share a partition with these land
    /// after them, so a sink that makes its calls one after another (awaiting each `queue_all`,
    /// not each acknowledgement) keeps several writes in flight and their order. An `Err` from
    /// the call or the acknowledgement says as much as [`send_all`](Self::send_all)'s. The default
    /// waits for the acknowledgement before it returns.
    async fn queue_all(&self, records: &[ProducerRecord]) -> ConnectResult<Acknowledgement> {
        self.send_all(records).await?;
        Ok(Box::pin(std::future::ready(Ok(()))))
    }
    /// The group's committed offsets (with metadata) of these partitions; partitions without a
    /// committed offset are left out.
    async fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> ConnectResult<BTreeMap<TopicPartition, CommittedOffset>>;
    /// Commits these offsets with their metadata now and waits for the broker. A sink that must
    /// record a decision before acting on it (which records an object holds) writes it here; the
    /// runtime's own commits carry no metadata, so such a sink leaves the partition out of
    /// [`SinkTask::pre_commit`]'s answer until the decision is carried out.
    async fn commit(&self, offsets: BTreeMap<TopicPartition, CommittedOffset>)
    -> ConnectResult<()>;
    /// Reports one record the sink could not write (Kafka Connect's `ErrantRecordReporter`). The
    /// runtime applies the connector's error policy: with `errors.tolerance=none` this returns the
    /// error that fails the task, naming the record's topic, partition and offset; with `all` the
    /// record is logged and counted and the call returns `Ok`, and the sink goes on without it.
    async fn report(&self, record: &SinkRecord, error: ConnectError) -> ConnectResult<()>;
    /// Adds `n` to a counter of this task named by the connector (for example records routed by
    /// one rule). Counters appear in the task's status and in the worker's metrics.
    fn count(&self, counter: &str, n: u64);
    /// Sets a gauge of this task named by the connector (for example invocations in flight);
    /// shown beside the counters. The default keeps nothing.
    fn gauge(&self, _name: &str, _value: i64) {}
    /// Reads these partitions again from these offsets (Kafka Connect's
    /// `SinkTaskContext.offset(Map)`): a task that cannot take a record yet (it is not due) rewinds
    /// to it and pauses the partition instead of holding what follows in memory. Applied when the
    /// current `put` returns: the records of these partitions after that point in the batch are
    /// delivered again, and the offsets committed for them restart from here.
    fn reset_offsets(&self, offsets: &Offsets);
    /// Decodes the value of a record the runtime left as JSON text ([`SinkRecord::value_is_json`])
    /// with the task's value converter: `Some` is what the converter makes of it. A value that does
    /// not convert goes through the error policy as a value-converter failure, exactly as if the
    /// runtime had decoded it: `Ok(None)` means it was dealt with and the task goes on without the
    /// record; `Err` fails the task. A record whose value is already decoded gives a copy of it.
    async fn decode_value(&self, record: &SinkRecord) -> ConnectResult<Option<ConnectData>>;
}

/// What a sink task is given when it starts.
#[derive(Clone)]
pub struct SinkTaskContext {
    /// The task's id.
    pub task_id: TaskId,
    control: Arc<dyn SinkTaskControl>,
}

impl SinkTaskContext {
    /// A context backed by `control`.
    pub fn new(task_id: TaskId, control: Arc<dyn SinkTaskControl>) -> Self {
        Self { task_id, control }
    }

    /// See [`SinkTaskControl::pause`].
    pub fn pause(&self, partitions: &[TopicPartition]) {
        self.control.pause(partitions);
    }

    /// See [`SinkTaskControl::resume`].
    pub fn resume(&self, partitions: &[TopicPartition]) {
        self.control.resume(partitions);
    }

    /// See [`SinkTaskControl::request_commit`].
    pub fn request_commit(&self) {
        self.control.request_commit();
    }

    /// See [`SinkTaskControl::assignment`].
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.control.assignment()
    }

    /// See [`SinkTaskControl::send`].
    pub async fn send(&self, record: ProducerRecord) -> ConnectResult<()> {
        self.control.send(record).await
    }

    /// See [`SinkTaskControl::send_all`].
    pub async fn send_all(&self, records: &[ProducerRecord]) -> ConnectResult<()> {
        self.control.send_all(records).await
    }

    /// See [`SinkTaskControl::queue_all`].
    pub async fn queue_all(&self, records: &[ProducerRecord]) -> ConnectResult<Acknowledgement> {
        self.control.queue_all(records).await
    }

    /// See [`SinkTaskControl::committed`].
    pub async fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> ConnectResult<BTreeMap<TopicPartition, CommittedOffset>> {
        self.control.committed(partitions).await
    }

    /// See [`SinkTaskControl::commit`].
    pub async fn commit(
        &self,
        offsets: BTreeMap<TopicPartition, CommittedOffset>,
    ) -> ConnectResult<()> {
        self.control.commit(offsets).await
    }

    /// See [`SinkTaskControl::report`].
    pub async fn report(&self, record: &SinkRecord, error: ConnectError) -> ConnectResult<()> {
        self.control.report(record, error).await
    }

    /// See [`SinkTaskControl::count`].
    pub fn count(&self, counter: &str, n: u64) {
        self.control.count(counter, n);
    }

    /// See [`SinkTaskControl::gauge`].
    pub fn gauge(&self, name: &str, value: i64) {
        self.control.gauge(name, value);
    }

    /// See [`SinkTaskControl::reset_offsets`].
    pub fn reset_offsets(&self, offsets: &Offsets) {
        self.control.reset_offsets(offsets);
    }

    /// See [`SinkTaskControl::decode_value`].
    pub async fn decode_value(&self, record: &SinkRecord) -> ConnectResult<Option<ConnectData>> {
        self.control.decode_value(record).await
    }
}

/// A task that writes records to an external system.
#[async_trait]
pub trait SinkTask: Send {
    /// Starts the task with its task config. An `Err` fails the task (a restart tries again).
    async fn start(&mut self, ctx: SinkTaskContext, props: &Props) -> ConnectResult<()>;

    /// These partitions are now assigned to this task.
    async fn open(&mut self, _partitions: &[TopicPartition]) -> ConnectResult<()> {
        Ok(())
    }

    /// Writes (or buffers) a batch. Records of one partition arrive in offset order. Called about
    /// every 100 ms even when nothing arrived (an empty batch), as in Kafka Connect, so that a sink
    /// can act on time alone (close a file on a wall-clock schedule, retry a failed upload).
    ///
    /// A retriable `Err` redelivers the same records after a jittered back-off, for as long as it
    /// lasts (as Kafka Connect does; not bounded by `errors.retry.timeout`), and nothing of the
    /// batch is committed meanwhile. Any other `Err` fails the task. A record that cannot be
    /// written goes to [`SinkTaskContext::report`] instead, which the error policy bounds.
    async fn put(&mut self, records: Vec<SinkRecord>) -> ConnectResult<()>;

    /// Whether this task decodes schemaless JSON values itself, faster than through a decoded
    /// [`Value`](crate::Value) tree (the S3 sink parses JSON straight into Parquet columns). Asked
    /// once after [`start`](Self::start). When `true`, the value converter reads schemaless JSON
    /// and the connector has no transforms (they need decoded values), the runtime skips the value
    /// converter and marks each record [`SinkRecord::value_is_json`]; otherwise values arrive
    /// decoded as usual.
    fn takes_json_values(&self) -> bool {
        false
    }

    /// Makes everything put so far durable.
    async fn flush(&mut self, _offsets: &Offsets) -> ConnectResult<()> {
        Ok(())
    }

    /// Given the offsets of everything put so far, returns the offsets that are safe to commit. The
    /// default flushes and returns them all; a sink that buffers returns less.
    async fn pre_commit(&mut self, offsets: Offsets) -> ConnectResult<Offsets> {
        self.flush(&offsets).await?;
        Ok(offsets)
    }

    /// These partitions are no longer assigned to this task: drop their buffers.
    async fn close(&mut self, _partitions: &[TopicPartition]) -> ConnectResult<()> {
        Ok(())
    }

    /// Stops the task.
    async fn stop(&mut self) -> ConnectResult<()> {
        Ok(())
    }
}
