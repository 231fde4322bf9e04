//! The sink task loop: consume (group `connect-<connector>`) → convert → transforms → put →
//! pre-commit → commit.
//!
//! Offsets guarantee: the group's offsets are committed only with what the task's `pre_commit`
//! returned, which by contract covers only records the sink has made durable. When partitions are
//! revoked (a rebalance), the revocation is held until the loop has flushed the task and committed
//! everything it put, as Kafka Connect does in `onPartitionsRevoked`; only then are the partitions
//! released, so the next owner starts right after the last record written and a rebalance
//! duplicates nothing. Records taken in after the last commit may be delivered again after a
//! crash: duplicates are bounded by one flush interval.

use std::collections::{BTreeMap, BTreeSet};

use futures::{FutureExt, StreamExt};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer,
};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use sluice_connector_api::{
    Acknowledgement, CommittedOffset, ConnectData, ConnectError, ConnectResult, Offsets,
    ProducerRecord, Props, Record, SinkRecord, SinkTask, SinkTaskContext, SinkTaskControl, TaskId,
    TopicPartition, Value,
};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use sluice_connector_api::dead_letter::Stage;

use super::errors::{ErrorHandler, Failure, Origin, Original, StageError};
use super::overflow::SinkOverflow;
use super::{Desired, Reporter, SharedSettings, TaskSettings, TaskState};
use crate::connector_config::RuntimeSettings;
use crate::error::WorkerError;
use crate::kafka::{KafkaClients, Producer, Reader, headers_of};

/// Largest batch handed to `put`.
const MAX_BATCH: usize = 1000;
/// How long a record a task writes may wait for room in the producer's queue.
const SEND_QUEUE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to gather a batch.
const BATCH_WAIT: Duration = Duration::from_millis(100);

enum GroupEvent {
    Assigned(Vec<TopicPartition>),
    /// Partitions are being revoked; the loop flushes, commits, closes them and then releases them
    /// (librdkafka waits for that before rejoining the group).
    Revoking(Vec<TopicPartition>),
}

/// Consumer context: reports rebalances, holding revocations until the loop has committed.
struct GroupContext {
    events: mpsc::UnboundedSender<GroupEvent>,
    /// Set when the task stops: revocations are then applied at once (everything is committed).
    closing: std::sync::atomic::AtomicBool,
}

impl ClientContext for GroupContext {}

fn partitions(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|e| TopicPartition::new(e.topic(), e.partition()))
        .collect()
}

/// Gives up revoked partitions (eager protocol: all of them; cooperative: those listed).
fn release(consumer: &impl Consumer<GroupContext>, tpl: &TopicPartitionList) {
    let released = match consumer.rebalance_protocol() {
        RebalanceProtocol::Cooperative => consumer.incremental_unassign(tpl),
        _ => consumer.unassign(),
    };
    if let Err(e) = released {
        tracing::warn!("releasing revoked partitions failed: {e}");
    }
}

impl ConsumerContext for GroupContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let assigned = match consumer.rebalance_protocol() {
                    RebalanceProtocol::Cooperative => consumer.incremental_assign(tpl),
                    _ => consumer.assign(tpl),
                };
                if let Err(e) = assigned {
                    tracing::warn!("taking assigned partitions failed: {e}");
                }
                let _ = self.events.send(GroupEvent::Assigned(partitions(tpl)));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let closing = self.closing.load(std::sync::atomic::Ordering::SeqCst);
                if closing
                    || self
                        .events
                        .send(GroupEvent::Revoking(partitions(tpl)))
                        .is_err()
                {
                    release(consumer, tpl);
                }
            }
            other => tracing::warn!("consumer group rebalance error: {other:?}"),
        }
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        match result {
            Ok(()) => tracing::debug!(?offsets, "offsets committed"),
            Err(e) => {
                tracing::warn!(error = %e, "committing offsets failed; the next commit retries")
            }
        }
    }
}

/// What the task may ask of the runtime, shared with its context.
struct Control {
    id: TaskId,
    clients: KafkaClients,
    /// Destination topics known to exist.
    topics: tokio::sync::Mutex<BTreeSet<String>>,
    /// Created on first `send`: most sinks never produce.
    producer: tokio::sync::OnceCell<Producer>,
    assignment: Mutex<BTreeSet<TopicPartition>>,
    paused_by_task: Mutex<BTreeSet<TopicPartition>>,
    resumed_by_task: Mutex<BTreeSet<TopicPartition>>,
    commit_requested: std::sync::atomic::AtomicBool,
    /// Offsets the task asked to read from again, applied after its `put`.
    resets: Mutex<Offsets>,
    /// The task's consumer, for commits with metadata; set once it exists.
    consumer: std::sync::OnceLock<Arc<StreamConsumer<GroupContext>>>,
    /// How to create the destination topics of `send`.
    settings: SharedSettings,
    /// The error policy, for records the task reports.
    errors: Arc<ErrorHandler>,
    /// Reads a reported record's original bytes; created on first use.
    reader: Arc<Mutex<Option<Reader>>>,
    /// Where records failing with retriable errors go (`errors.overflow.*`).
    overflow: Option<SinkOverflow>,
}

/// Runs a blocking librdkafka call off the async worker's core when the runtime allows it.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    if tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::MultiThread
    {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

impl Control {
    fn new(
        id: TaskId,
        clients: KafkaClients,
        settings: SharedSettings,
        errors: Arc<ErrorHandler>,
    ) -> Self {
        let overflow = settings
            .sink_overflow
            .as_ref()
            .map(|o| SinkOverflow::new(&id, o, Arc::clone(errors.metrics())));
        Self {
            overflow,
            id,
            clients,
            consumer: std::sync::OnceLock::new(),
            settings,
            errors,
            reader: Arc::default(),
            topics: tokio::sync::Mutex::default(),
            producer: tokio::sync::OnceCell::new(),
            assignment: Mutex::default(),
            paused_by_task: Mutex::default(),
            resumed_by_task: Mutex::default(),
            commit_requested: std::sync::atomic::AtomicBool::new(false),
            resets: Mutex::default(),
        }
    }

    /// Applies the error policy to a record that failed after it reached the task (`report`, or a
    /// value the task had the runtime decode late).
    async fn handle_failed(&self, record: &SinkRecord, failed: StageError) -> ConnectResult<()> {
        // The external system keeps refusing (the sink spent its retry budget): the overflow
        // stream takes the record instead of the dead-letter queue.
        if let Some(overflow) = &self.overflow
            && failed.error.is_retriable()
        {
            let original = self.original(&record.origin, record.offset).await?;
            return overflow.divert(record, original, &failed.error).await;
        }
        let original = if self.errors.wants_original() {
            self.original(&record.origin, record.offset).await?
        } else {
            Original::default()
        };
        self.errors
            .handle(Failure {
                failed,
                origin: Origin::Kafka {
                    topic: &record.origin.topic,
                    partition: record.origin.partition,
                    offset: record.offset,
                },
                original,
            })
            .await
    }

    /// The original bytes of a record this task consumed, read again from Kafka: records a sink
    /// reports are rare, so the runtime does not keep every record's bytes in memory for them.
    async fn original(&self, tp: &TopicPartition, offset: i64) -> ConnectResult<Original> {
        let (clients, reader, tp) = (self.clients.clone(), Arc::clone(&self.reader), tp.clone());
        tokio::task::spawn_blocking(move || {
            let mut reader = reader.lock();
            if reader.is_none() {
                *reader = Some(Reader::new(&clients).map_err(|e| {
                    ConnectError::retriable(format!("creating a consumer failed: {e}"))
                })?);
            }
            let reader = reader
                .as_ref()
                .ok_or_else(|| ConnectError::internal("no reader"))?;
            reader
                .read_at(&tp.topic, tp.partition, offset, Duration::from_secs(30))
                .map(|m| Original::of(&m))
                .map_err(ConnectError::retriable)
        })
        .await
        .map_err(|e| ConnectError::internal(format!("reading a record failed: {e}")))?
    }

    /// Creates `topic` when topic creation is on and this task has not seen it yet.
    async fn ensure_topic(&self, topic: &str) -> ConnectResult<()> {
        let Some((partitions, replication_factor)) = self.settings.topic_creation else {
            return Ok(());
        };
        let mut known = self.topics.lock().await;
        if !known.contains(topic) {
            let spec = crate::kafka::TopicSpec {
                name: topic,
                partitions,
                replication_factor,
                compacted: false,
            };
            self.clients.ensure_topic(spec).await.map_err(|e| {
                ConnectError::retriable(format!("creating topic {topic} failed: {e}"))
            })?;
            known.insert(topic.to_owned());
        }
        Ok(())
    }

    /// The producer for records the task writes, created on first use.
    async fn producer(&self) -> ConnectResult<&Producer> {
        let client_id = format!("connector-producer-{}", self.id);
        self.producer
            .get_or_try_init(|| async {
                self.clients.producer(&[("client.id", client_id.as_str())])
            })
            .await
            .map_err(|e| ConnectError::retriable(format!("creating a producer failed: {e}")))
    }

    /// The task's consumer (set right after the context is built, before the task starts).
    fn consumer(&self) -> ConnectResult<&Arc<StreamConsumer<GroupContext>>> {
        self.consumer
            .get()
            .ok_or_else(|| ConnectError::internal("the task's consumer is not ready"))
    }
}

#[async_trait::async_trait]
impl SinkTaskControl for Control {
    fn pause(&self, partitions: &[TopicPartition]) {
        self.paused_by_task
            .lock()
            .extend(partitions.iter().cloned());
    }
    fn resume(&self, partitions: &[TopicPartition]) {
        let mut paused = self.paused_by_task.lock();
        for p in partitions {
            paused.remove(p);
        }
        self.resumed_by_task
            .lock()
            .extend(partitions.iter().cloned());
    }
    fn request_commit(&self) {
        self.commit_requested
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    fn assignment(&self) -> Vec<TopicPartition> {
        self.assignment.lock().iter().cloned().collect()
    }

    async fn send(&self, record: ProducerRecord) -> ConnectResult<()> {
        self.send_all(std::slice::from_ref(&record)).await
    }

    async fn send_all(&self, records: &[ProducerRecord]) -> ConnectResult<()> {
        self.queue_all(records).await?.await
    }

    async fn queue_all(&self, records: &[ProducerRecord]) -> ConnectResult<Acknowledgement> {
        for topic in records.iter().map(|r| r.topic.as_str()) {
            self.ensure_topic(topic).await?;
        }
        let producer = self.producer().await?;
        let mut deliveries = Vec::with_capacity(records.len());
        for record in records {
            let delivery = producer
                .queue(crate::kafka::future_record(record), SEND_QUEUE_TIMEOUT)
                .await
                .map_err(|e| produce_failed(&record.topic, &e))?;
            deliveries.push((delivery, record.topic.clone()));
        }
        Ok(Box::pin(async move {
            for (delivery, topic) in deliveries {
                crate::kafka::acknowledged(delivery)
                    .await
                    .map_err(|e| produce_failed(&topic, &e))?;
            }
            Ok(())
        }))
    }

    async fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> ConnectResult<BTreeMap<TopicPartition, CommittedOffset>> {
        let consumer = self.consumer()?;
        let tpl = tpl_of(partitions);
        let found =
            blocking(|| consumer.committed_offsets(tpl, Duration::from_secs(30))).map_err(|e| {
                ConnectError::retriable(format!("reading committed offsets failed: {e}"))
            })?;
        Ok(found
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(offset) => Some((
                    TopicPartition::new(e.topic(), e.partition()),
                    CommittedOffset {
                        offset,
                        metadata: e.metadata().to_owned(),
                    },
                )),
                _ => None,
            })
            .collect())
    }

    async fn commit(
        &self,
        offsets: BTreeMap<TopicPartition, CommittedOffset>,
    ) -> ConnectResult<()> {
        let consumer = self.consumer()?;
        let mut tpl = TopicPartitionList::new();
        for (tp, c) in &offsets {
            let mut elem = tpl
                .add_partition_offset(&tp.topic, tp.partition, Offset::Offset(c.offset))
                .map(|()| tpl.find_partition(&tp.topic, tp.partition))
                .map_err(|e| ConnectError::internal(format!("bad offset for {tp}: {e}")))?
                .ok_or_else(|| ConnectError::internal(format!("lost partition {tp}")))?;
            elem.set_metadata(&c.metadata);
        }
        blocking(|| consumer.commit(&tpl, CommitMode::Sync))
            .map_err(|e| ConnectError::retriable(format!("committing offsets failed: {e}")))
    }

    async fn report(&self, record: &SinkRecord, error: ConnectError) -> ConnectResult<()> {
        let failed = StageError {
            stage: Stage::TaskPut,
            class: self.settings.connector_class.clone(),
            error,
        };
        self.handle_failed(record, failed).await
    }

    fn count(&self, counter: &str, n: u64) {
        self.errors.metrics().count(counter, n);
    }

    fn gauge(&self, name: &str, value: i64) {
        self.errors.metrics().gauge(name, value);
    }

    async fn decode_value(&self, record: &SinkRecord) -> ConnectResult<Option<ConnectData>> {
        let value = &record.record;
        let text = match &value.value {
            Value::Bytes(text) if record.value_is_json => text,
            _ => return Ok(Some((value.value_schema.clone(), value.value.clone()))),
        };
        match self
            .settings
            .value_to_connect(&record.origin.topic, Some(text))
        {
            Ok(data) => Ok(Some(data)),
            Err(failed) => self.handle_failed(record, failed).await.map(|()| None),
        }
    }

    fn reset_offsets(&self, offsets: &Offsets) {
        self.resets
            .lock()
            .extend(offsets.iter().map(|(tp, o)| (tp.clone(), *o)));
    }
}

/// Runs one sink task.
pub struct SinkTaskRunner {
    /// The task's id.
    pub id: TaskId,
    /// The connector's task.
    pub task: Box<dyn SinkTask>,
    /// Its task config.
    pub props: Props,
    /// Converters, transforms, error policy and subscription.
    pub settings: SharedSettings,
    /// Applies the error policy.
    pub errors: Arc<ErrorHandler>,
    /// Kafka clients.
    pub clients: KafkaClients,
    /// Flush interval.
    pub task_settings: TaskSettings,
    /// The herder's wish.
    pub desired: watch::Receiver<Desired>,
    /// Where state changes go.
    pub reporter: Reporter,
}

fn tpl_of(parts: &[TopicPartition]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for p in parts {
        tpl.add_partition(&p.topic, p.partition);
    }
    tpl
}

impl SinkTaskRunner {
    /// Runs until stopped or failed.
    pub async fn run(mut self) {
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let group = format!("connect-{}", self.id.connector);
        // Static membership: a restarted (or moved) task takes its predecessor's place in the group
        // at once instead of waiting for its session to time out, and fences a zombie predecessor.
        let instance = format!("connector-consumer-{}", self.id);
        let consumer: Arc<StreamConsumer<GroupContext>> = match self.clients.consumer(
            &[
                ("group.id", group.as_str()),
                ("group.instance.id", instance.as_str()),
                ("partition.assignment.strategy", "range"),
                // Notice subscribed topics created after the task started within seconds, not minutes.
                ("topic.metadata.refresh.interval.ms", "10000"),
            ],
            GroupContext {
                events: events_tx,
                closing: std::sync::atomic::AtomicBool::new(false),
            },
        ) {
            Ok(c) => Arc::new(c),
            Err(e) => return self.reporter.failed(e.to_string()),
        };
        let topics: Vec<&str> = self
            .settings
            .subscription
            .iter()
            .map(String::as_str)
            .collect();
        if let Err(e) = consumer.subscribe(&topics) {
            return self
                .reporter
                .failed(format!("subscribing to {topics:?} failed: {e}"));
        }
        let control = Arc::new(Control::new(
            self.id.clone(),
            self.clients.clone(),
            Arc::clone(&self.settings),
            Arc::clone(&self.errors),
        ));
        let _ = control.consumer.set(Arc::clone(&consumer));
        let ctx = SinkTaskContext::new(
            self.id.clone(),
            Arc::clone(&control) as Arc<dyn SinkTaskControl>,
        );
        if let Err(e) = self.task.start(ctx, &self.props).await {
            return self
                .reporter
                .failed(format!("task start failed: {}", e.trace()));
        }
        // Asked once: the task's answer may depend on its config.
        let json_values = self.task.takes_json_values() && self.settings.json_values_pass_through();
        let mut current = Offsets::new();
        let mut paused = false;
        let mut shown = None;
        let interval = self.task_settings.offset_flush_interval;
        let mut next_commit = Instant::now() + interval;
        let mut put_retries = 0u32;
        let result: Result<(), String> = async {
            loop {
                let desired = *self.desired.borrow_and_update();
                if desired == Desired::Stopped {
                    return Ok(());
                }
                while let Ok(event) = events.try_recv() {
                    self.on_group_event(event, &consumer, &control, &mut current, paused)
                        .await?;
                }
                self.apply_task_pauses(&consumer, &control, paused);
                let want_paused = desired == Desired::Paused;
                if want_paused != paused {
                    let assigned: Vec<_> = control.assignment();
                    let tpl = tpl_of(&assigned);
                    let r = if want_paused {
                        consumer.pause(&tpl)
                    } else {
                        consumer.resume(&tpl)
                    };
                    r.map_err(|e| format!("pausing or resuming partitions failed: {e}"))?;
                    paused = want_paused;
                }
                let state = if paused {
                    TaskState::Paused
                } else {
                    TaskState::Running
                };
                if shown != Some(state) {
                    self.reporter.report(state, None);
                    shown = Some(state);
                }
                let Gathered {
                    records: mut batch,
                    mut done_without_put,
                } = gather(&self.settings, &self.errors, &consumer, json_values).await?;
                // Receiving may have run a rebalance: apply it before `put`, so that a partition is
                // opened before its first record and records of revoked partitions are not put
                // (their new owner reads them from the last commit).
                while let Ok(event) = events.try_recv() {
                    self.on_group_event(event, &consumer, &control, &mut current, paused)
                        .await?;
                }
                {
                    let assignment = control.assignment.lock();
                    batch.retain(|r| assignment.contains(&r.origin));
                    done_without_put.retain(|(tp, _)| assignment.contains(tp));
                }
                // Offsets only move forward within a partition, so the last one seen wins.
                for (tp, offset) in done_without_put {
                    let next = current.entry(tp).or_insert(offset + 1);
                    *next = (*next).max(offset + 1);
                }
                let firsts = advance(&mut current, &batch);
                // An empty batch too, as in Kafka Connect: sinks act on time alone.
                match self.task.put(batch).await {
                    Ok(()) if !firsts.is_empty() => put_retries = 0,
                    Ok(()) => {}
                    // As in Kafka Connect, a retriable error redelivers the same records after a
                    // back-off, for as long as it lasts: they are read again from where the batch
                    // began (nothing is held), and nothing of it is committed meanwhile.
                    Err(e) if e.is_retriable() => {
                        let delay = self.errors.retry_delay(put_retries, "put", &e);
                        put_retries = put_retries.saturating_add(1);
                        control.reset_offsets(&firsts);
                        apply_resets(&consumer, &control, &mut current)?;
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = self.desired.changed() => {}
                        }
                        continue;
                    }
                    Err(e) => return Err(format!("put failed: {}", e.trace())),
                }
                apply_resets(&consumer, &control, &mut current)?;
                let requested = control
                    .commit_requested
                    .swap(false, std::sync::atomic::Ordering::Relaxed);
                if requested || Instant::now() >= next_commit {
                    self.commit(&consumer, &current, CommitMode::Async).await?;
                    next_commit = Instant::now() + interval;
                }
            }
        }
        .await;
        let commit = if result.is_ok() {
            self.commit(&consumer, &current, CommitMode::Sync).await
        } else {
            Ok(())
        };
        let assigned = control.assignment();
        if let Err(e) = self.task.close(&assigned).await {
            tracing::warn!(task = %self.id, "close failed: {}", e.trace());
        }
        if let Err(e) = self.task.stop().await {
            tracing::warn!(task = %self.id, "stop failed: {}", e.trace());
        }
        consumer
            .context()
            .closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        consumer.unsubscribe();
        match result.and(commit) {
            Ok(()) => self.reporter.report(TaskState::Unassigned, None),
            Err(trace) => self.reporter.failed(trace),
        }
    }

    async fn on_group_event(
        &mut self,
        event: GroupEvent,
        consumer: &StreamConsumer<GroupContext>,
        control: &Control,
        current: &mut Offsets,
        paused: bool,
    ) -> Result<(), String> {
        match event {
            GroupEvent::Assigned(parts) => {
                tracing::info!(task = %self.id, partitions = ?parts, "partitions assigned");
                for topic in parts.iter().map(|p| &p.topic).collect::<BTreeSet<_>>() {
                    self.reporter.topic_used(topic);
                }
                control.assignment.lock().extend(parts.iter().cloned());
                if paused {
                    let _ = consumer.pause(&tpl_of(&parts));
                }
                self.task
                    .open(&parts)
                    .await
                    .map_err(|e| format!("open failed: {}", e.trace()))
            }
            GroupEvent::Revoking(parts) => {
                tracing::info!(task = %self.id, partitions = ?parts, "partitions revoked");
                // Flush and commit everything put so far while the partitions are still ours.
                if let Err(e) = self.commit(consumer, current, CommitMode::Sync).await {
                    tracing::warn!(task = %self.id, "committing before revocation failed: {e}");
                }
                {
                    let mut assignment = control.assignment.lock();
                    for p in &parts {
                        assignment.remove(p);
                        current.remove(p);
                    }
                }
                let closed = self.task.close(&parts).await;
                release(consumer, &tpl_of(&parts));
                closed.map_err(|e| format!("close failed: {}", e.trace()))
            }
        }
    }

    fn apply_task_pauses(
        &self,
        consumer: &StreamConsumer<GroupContext>,
        control: &Control,
        paused: bool,
    ) {
        let assignment = control.assignment.lock().clone();
        let by_task: Vec<_> = control
            .paused_by_task
            .lock()
            .intersection(&assignment)
            .cloned()
            .collect();
        if !by_task.is_empty() {
            let _ = consumer.pause(&tpl_of(&by_task));
        }
        let resumed: Vec<_> = std::mem::take(&mut *control.resumed_by_task.lock())
            .into_iter()
            .filter(|p| assignment.contains(p))
            .collect();
        if !resumed.is_empty() && !paused {
            let _ = consumer.resume(&tpl_of(&resumed));
        }
    }

    async fn commit(
        &mut self,
        consumer: &StreamConsumer<GroupContext>,
        current: &Offsets,
        mode: CommitMode,
    ) -> Result<(), String> {
        if current.is_empty() {
            return Ok(());
        }
        let committable = self
            .task
            .pre_commit(current.clone())
            .await
            .map_err(|e| format!("flush failed: {}", e.trace()))?;
        let mut tpl = TopicPartitionList::new();
        for (tp, offset) in &committable {
            if current.contains_key(tp) {
                let _ = tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*offset));
            }
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        let commit = || consumer.commit(&tpl, mode);
        // A synchronous commit waits for the broker: keep it off the async worker's core.
        let committed = match mode {
            CommitMode::Sync => blocking(commit),
            CommitMode::Async => commit(),
        };
        committed.map_err(|e| {
            format!(
                "committing offsets failed: {}",
                WorkerError::kafka("commit")(e)
            )
        })
    }
}

/// Moves `current` past the records of `batch` and returns each partition's first offset in it
/// (where a redelivery starts). A partition's name is copied once per batch, not per record.
fn advance(current: &mut Offsets, batch: &[SinkRecord]) -> Offsets {
    let mut firsts = Offsets::new();
    for r in batch {
        if !firsts.contains_key(&r.origin) {
            firsts.insert(r.origin.clone(), r.offset);
        }
        match current.get_mut(&r.origin) {
            Some(next) => *next = (*next).max(r.offset + 1),
            None => {
                current.insert(r.origin.clone(), r.offset + 1);
            }
        }
    }
    firsts
}

/// Seeks the partitions the task asked to read again; their offsets to commit restart there.
fn apply_resets(
    consumer: &StreamConsumer<GroupContext>,
    control: &Control,
    current: &mut Offsets,
) -> Result<(), String> {
    let resets = std::mem::take(&mut *control.resets.lock());
    let assignment = control.assignment.lock().clone();
    for (tp, offset) in resets.into_iter().filter(|(tp, _)| assignment.contains(tp)) {
        blocking(|| {
            consumer.seek(
                &tp.topic,
                tp.partition,
                Offset::Offset(offset),
                Duration::from_secs(10),
            )
        })
        .map_err(|e| format!("reading {tp} again from offset {offset} failed: {e}"))?;
        current.insert(tp, offset);
    }
    Ok(())
}

/// What one receive round produced.
#[derive(Default)]
struct Gathered {
    /// Records to put, in offset order per partition.
    records: Vec<SinkRecord>,
    /// Records processed without a put (dropped by a transform, or skipped under
    /// `errors.tolerance=all`): their offsets still count as done.
    done_without_put: Vec<(TopicPartition, i64)>,
}

/// Collects up to [`MAX_BATCH`] records within [`BATCH_WAIT`]. A record that fails conversion or
/// a transform goes through the error policy; `Err` is the trace that fails the task.
async fn gather(
    settings: &RuntimeSettings,
    errors: &ErrorHandler,
    consumer: &StreamConsumer<GroupContext>,
    json_values: bool,
) -> Result<Gathered, String> {
    let deadline = Instant::now() + BATCH_WAIT;
    let mut gathered = Gathered::default();
    // One stream for the whole batch: `recv()` registers and drops a waker slot (a mutex) per
    // message.
    let mut stream = consumer.stream();
    while gathered.records.len() < MAX_BATCH {
        // Take what is already fetched without arming a timer; wait (up to the deadline) only
        // when nothing is buffered.
        let received = match stream.next().now_or_never() {
            Some(Some(r)) => r,
            Some(None) => break,
            None if !gathered.records.is_empty() => break,
            None => match tokio::time::timeout_at(deadline, stream.next()).await {
                Err(_) | Ok(None) => break,
                Ok(Some(r)) => r,
            },
        };
        // A failed record leaves the consumer's buffer (a copy) before anything awaits.
        let failed = match received {
            Err(e) => {
                tracing::warn!("consumer error: {e}");
                break;
            }
            Ok(msg) => match to_sink_record(settings, &msg, json_values) {
                Ok(record) => {
                    gathered.add(&msg, record);
                    None
                }
                Err(e) => Some((msg.detach(), e)),
            },
        };
        if let Some((msg, failed)) = failed {
            let record = retry_or_handle(settings, errors, &msg, failed, json_values).await?;
            gathered.add(&msg, record);
        }
    }
    errors.succeeded(gathered.records.len());
    Ok(gathered)
}

/// A record whose conversion or transforms failed: retried if the failure is retriable, else
/// through the error policy (`Ok(None)`: it is dealt with and its offset counts as done).
async fn retry_or_handle(
    settings: &RuntimeSettings,
    errors: &ErrorHandler,
    msg: &OwnedMessage,
    failed: StageError,
    json_values: bool,
) -> Result<Option<SinkRecord>, String> {
    let retried = if failed.error.is_retriable() {
        errors
            .retry(|| to_sink_record(settings, msg, json_values))
            .await
    } else {
        Err(failed)
    };
    let failed = match retried {
        Ok(record) => return Ok(record),
        Err(failed) => failed,
    };
    let failure = Failure {
        failed,
        origin: Origin::Kafka {
            topic: msg.topic(),
            partition: msg.partition(),
            offset: msg.offset(),
        },
        original: Original::of(msg),
    };
    errors.handle(failure).await.map_err(|e| e.trace())?;
    Ok(None)
}

impl Gathered {
    /// Adds a record that went through conversion and transforms (`None`: nothing to put).
    fn add(&mut self, msg: &impl Message, record: Option<SinkRecord>) {
        match record {
            Some(r) => self.records.push(r),
            None => self.done_without_put.push((
                TopicPartition::new(msg.topic(), msg.partition()),
                msg.offset(),
            )),
        }
    }
}

/// Converts a message for `put`. With `json_values` (the task decodes schemaless JSON itself and
/// there are no transforms) a value is left as its bytes and marked `value_is_json`.
fn to_sink_record(
    settings: &RuntimeSettings,
    msg: &impl Message,
    json_values: bool,
) -> Result<Option<SinkRecord>, StageError> {
    let topic = msg.topic();
    let (key_schema, key) = settings.key_to_connect(topic, msg.key())?;
    let value_is_json = json_values && msg.payload().is_some();
    let (value_schema, value) = match msg.payload() {
        Some(text) if value_is_json => (None, Value::Bytes(text.to_vec())),
        payload => settings.value_to_connect(topic, payload)?,
    };
    let record = Record {
        topic: topic.to_owned(),
        partition: Some(msg.partition()),
        key_schema,
        key,
        value_schema,
        value,
        headers: headers_of(msg),
        timestamp: msg.timestamp().to_millis(),
    };
    let Some(record) = settings.transform(record)? else {
        return Ok(None);
    };
    Ok(Some(SinkRecord {
        record,
        origin: TopicPartition::new(topic, msg.partition()),
        offset: msg.offset(),
        value_is_json,
    }))
}
/// A record a task writes was not acknowledged: retriable, as Kafka Connect treats it.
fn produce_failed(topic: &str, e: &rdkafka::error::KafkaError) -> ConnectError {
    ConnectError::retriable(format!("producing to {topic} failed: {e}"))
}
