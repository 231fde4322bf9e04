//! The source task loop: poll → transforms → convert → produce (idempotent, `acks=all`) → store
//! offsets.
//!
//! Offsets guarantee: the offset of a record is written to the offsets topic only after Kafka has
//! acknowledged that record and every record polled before it. Deliveries are tracked in poll order;
//! every `offset.flush.interval.ms` (and when stopping) the loop waits for the outstanding
//! deliveries, then writes the newest acknowledged offset of each source partition. After a crash,
//! the task resumes from the last written offsets: records polled after them are produced again,
//! so duplicates are bounded by one flush interval and nothing is lost.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use sluice_connector_api::convert::AsJson;
use sluice_connector_api::dead_letter::Stage;
use sluice_connector_api::{
    ConnectError, Fault, ProducerRecord, Props, Record, SourceOffset, SourcePartition,
    SourceRecord, SourceTask, SourceTaskContext, SourceTaskControl, TaskId, Value, async_trait,
};
use tokio::sync::watch;
use tokio::time::Instant;

use super::errors::{ErrorHandler, Failure, Origin, Original, StageError};
use super::{Desired, Reporter, SharedSettings, TaskSettings, TaskState};
use crate::connector_config::RuntimeSettings;
use crate::kafka::{DeliveryFuture, KafkaClients, Producer, TopicSpec, Undelivered, future_record};
use crate::store::OffsetStore;

/// Named as the class of the `KAFKA_PRODUCE` stage in dead-letter headers.
const PRODUCER_CLASS: &str = "librdkafka producer";

enum Pending {
    Delivery(DeliveryFuture),
    /// Dropped by a transform or skipped by the error policy: done as soon as those before it are.
    Done,
}

struct Tracked {
    pending: Pending,
    partition: SourcePartition,
    offset: SourceOffset,
}

/// The error policy and metrics as a source task sees them.
struct Control {
    errors: Arc<ErrorHandler>,
    class: String,
}

/// A reported record's key or value as bytes: bytes and text as they are, anything else as JSON.
fn reported_bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::Null => None,
        Value::Bytes(b) => Some(b.clone()),
        Value::String(s) => Some(s.clone().into_bytes()),
        other => serde_json::to_vec(&AsJson::schemaless(other)).ok(),
    }
}

#[async_trait]
impl SourceTaskControl for Control {
    async fn report(&self, record: &SourceRecord, error: ConnectError) -> Result<(), ConnectError> {
        let r = &record.record;
        let failure = Failure {
            failed: StageError {
                stage: Stage::TaskPoll,
                class: self.class.clone(),
                error,
            },
            origin: Origin::Source {
                topic: &r.topic,
                partition: &record.source_partition,
                offset: &record.source_offset,
            },
            original: Original {
                key: reported_bytes(&r.key),
                value: reported_bytes(&r.value),
                headers: r.headers.clone(),
                timestamp: r.timestamp,
            },
        };
        self.errors.handle(failure).await
    }

    fn count(&self, counter: &str, n: u64) {
        self.errors.metrics().count(counter, n);
    }

    fn gauge(&self, name: &str, value: i64) {
        self.errors.metrics().gauge(name, value);
    }
}

/// Runs one source task.
pub struct SourceTaskRunner {
    /// The task's id.
    pub id: TaskId,
    /// The connector's task.
    pub task: Box<dyn SourceTask>,
    /// Its task config.
    pub props: Props,
    /// Converters, transforms and error policy.
    pub settings: SharedSettings,
    /// Applies the error policy.
    pub errors: Arc<ErrorHandler>,
    /// Producer for its records.
    pub producer: Producer,
    /// Kafka clients, for creating destination topics.
    pub clients: KafkaClients,
    /// Where offsets are stored.
    pub offsets: Arc<OffsetStore>,
    /// Flush interval.
    pub task_settings: TaskSettings,
    /// The herder's wish.
    pub desired: watch::Receiver<Desired>,
    /// Where state changes go.
    pub reporter: Reporter,
    /// Topics written to so far.
    pub topics: std::collections::HashSet<String>,
}

impl SourceTaskRunner {
    /// Runs until stopped or failed.
    pub async fn run(mut self) {
        // The task may have run elsewhere until a moment ago: read the offsets its last owner
        // flushed on stop before resuming from them.
        if let Err(e) = self.offsets.read_to_end().await {
            self.reporter
                .failed(format!("reading the offsets topic failed: {e}"));
            return;
        }
        let control = Arc::new(Control {
            errors: Arc::clone(&self.errors),
            class: self.settings.connector_class.clone(),
        });
        let ctx = SourceTaskContext::new(self.id.clone(), self.offsets.reader(&self.id.connector))
            .with_control(control);
        if let Err(e) = self.task.start(ctx, &self.props).await {
            self.reporter
                .failed(format!("task start failed: {}", e.trace()));
            return;
        }
        let mut in_flight: VecDeque<Tracked> = VecDeque::new();
        let mut acked = Acked::default();
        let interval = self.task_settings.offset_flush_interval;
        let mut next_flush = Instant::now() + interval;
        let mut shown = None;
        let mut poll_retries = 0u32;
        let result: Result<(), String> = async {
            loop {
                let desired = *self.desired.borrow_and_update();
                if desired == Desired::Stopped {
                    return Ok(());
                }
                let state = if desired == Desired::Paused {
                    TaskState::Paused
                } else {
                    TaskState::Running
                };
                if shown != Some(state) {
                    self.reporter.report(state, None);
                    shown = Some(state);
                }
                if Instant::now() >= next_flush {
                    self.commit(&mut in_flight, &mut acked).await?;
                    next_flush = Instant::now() + interval;
                }
                if desired == Desired::Paused {
                    let _ = tokio::time::timeout_at(next_flush, self.desired.changed()).await;
                    continue;
                }
                let batch = match self.task.poll().await {
                    Ok(batch) => {
                        poll_retries = 0;
                        batch
                    }
                    // As in Kafka Connect, a retriable error (a database restarting) is retried
                    // for as long as it lasts, after a back-off; the task keeps its offsets.
                    Err(e) if e.is_retriable() => {
                        let delay = self.errors.retry_delay(poll_retries, "poll", &e);
                        poll_retries = poll_retries.saturating_add(1);
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = self.desired.changed() => {}
                        }
                        continue;
                    }
                    Err(e) => return Err(format!("poll failed: {}", e.trace())),
                };
                for record in batch {
                    self.send(record, &mut in_flight, &mut acked).await?;
                }
                while let Err(unsettled) = settle_ready(&mut in_flight, &mut acked) {
                    refused(&self.errors, unsettled, &mut acked).await?;
                }
            }
        }
        .await;
        let commit = self.commit(&mut in_flight, &mut acked).await;
        if let Err(e) = self.task.stop().await {
            tracing::warn!(task = %self.id, "stop failed: {}", e.trace());
        }
        match result.and(commit) {
            Ok(()) => self.reporter.report(TaskState::Unassigned, None),
            Err(trace) => self.reporter.failed(trace),
        }
    }

    async fn send(
        &mut self,
        record: SourceRecord,
        in_flight: &mut VecDeque<Tracked>,
        acked: &mut Acked,
    ) -> Result<(), String> {
        let SourceRecord {
            record,
            source_partition,
            source_offset,
        } = record;
        let prepared = prepare(
            &self.settings,
            &self.errors,
            record,
            &source_partition,
            &source_offset,
        )
        .await?;
        let Some(outgoing) = prepared else {
            in_flight.push_back(Tracked::done(source_partition, source_offset));
            return Ok(());
        };
        if !self.topics.contains(&outgoing.topic) {
            let dest = outgoing.topic.clone();
            if let Some((partitions, replication_factor)) = self.settings.topic_creation {
                let spec = TopicSpec {
                    name: &dest,
                    partitions,
                    replication_factor,
                    compacted: false,
                };
                self.clients
                    .ensure_topic(spec)
                    .await
                    .map_err(|e| format!("creating topic {dest} failed: {e}"))?;
            }
            self.reporter.topic_used(&dest);
            self.topics.insert(dest);
        }
        let mut fr = future_record(&outgoing);
        let refused = loop {
            match self.producer.send_result(fr) {
                Ok(delivery) => {
                    in_flight.push_back(Tracked {
                        pending: Pending::Delivery(delivery),
                        partition: source_partition,
                        offset: source_offset,
                    });
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    fr = back;
                    // Make room: settle our oldest delivery (it leaves the queue with its result
                    // recorded), or wait briefly if the queue is full of other tasks' records.
                    match settle_oldest(in_flight, acked).await {
                        Ok(true) => {}
                        Ok(false) => tokio::time::sleep(Duration::from_millis(5)).await,
                        Err(unsettled) => refused(&self.errors, unsettled, acked).await?,
                    }
                }
                Err((e, _)) => break e,
            }
        };
        // Refused before it was queued (too large, for example). Its offset counts as done once
        // the records polled before it are acknowledged.
        let failed = produce_failed(&outgoing.topic, &refused);
        let origin = Origin::Source {
            topic: &outgoing.topic,
            partition: &source_partition,
            offset: &source_offset,
        };
        let original = Original::produced(outgoing.clone());
        skip_or_fail(&self.errors, failed, origin, original).await?;
        in_flight.push_back(Tracked::done(source_partition, source_offset));
        Ok(())
    }

    /// Waits for every delivery, then stores the newest acknowledged offset of each partition.
    async fn commit(
        &mut self,
        in_flight: &mut VecDeque<Tracked>,
        acked: &mut Acked,
    ) -> Result<(), String> {
        // Settle every delivery in order; one that fails the task stops the offsets just
        // before it.
        let failure = loop {
            match settle_oldest(in_flight, acked).await {
                Ok(true) => {}
                Ok(false) => break None,
                Err(unsettled) => {
                    if let Err(e) = refused(&self.errors, unsettled, acked).await {
                        in_flight.clear();
                        break Some(e);
                    }
                }
            }
        };
        if !acked.is_empty() {
            let offsets = std::mem::take(&mut acked.0);
            self.offsets
                .write(&self.id.connector, &offsets)
                .await
                .map_err(|e| format!("writing offsets failed: {e}"))?;
            if let Err(e) = self.task.commit(&offsets).await {
                tracing::warn!(task = %self.id, "commit callback failed: {}", e.trace());
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

/// Applies the error policy to a record that failed for good.
async fn skip_or_fail(
    errors: &ErrorHandler,
    failed: StageError,
    origin: Origin<'_>,
    original: Original,
) -> Result<(), String> {
    let failure = Failure {
        failed,
        origin,
        original,
    };
    errors.handle(failure).await.map_err(|e| e.trace())
}

/// Applies the error policy to a record Kafka refused after it was queued; its offset then
/// counts as done.
async fn refused(
    errors: &ErrorHandler,
    unsettled: Unsettled,
    acked: &mut Acked,
) -> Result<(), String> {
    let Unsettled::Refused(refusal) = unsettled else {
        return Err("the producer was closed before acknowledging a record".to_owned());
    };
    let Refusal {
        partition,
        offset,
        undelivered: Undelivered { error, message },
    } = *refusal;
    let origin = Origin::Source {
        topic: message.topic(),
        partition: &partition,
        offset: &offset,
    };
    let failed = produce_failed(message.topic(), &error);
    skip_or_fail(errors, failed, origin, Original::of(&message)).await?;
    acked.record(partition, offset);
    Ok(())
}

/// Transforms and converts a polled record, applying the error policy to a failure: `Ok(None)`
/// when a transform dropped the record or the policy dealt with it.
async fn prepare(
    settings: &RuntimeSettings,
    errors: &ErrorHandler,
    record: Record,
    partition: &SourcePartition,
    offset: &SourceOffset,
) -> Result<Option<ProducerRecord>, String> {
    let transforms = !settings.transforms.is_empty();
    // Transforms consume the record: keep a copy only when a failed transform would need it (to
    // retry, or for the dead-letter queue), and its topic only when a transform can fail at all.
    let kept =
        (transforms && (errors.retries() || errors.wants_original())).then(|| record.clone());
    let topic = transforms.then(|| record.topic.clone());
    let transformed = match (settings.transform(record), &kept) {
        (Err(failed), Some(kept)) if failed.error.is_retriable() => {
            errors.retry(|| settings.transform(kept.clone())).await
        }
        (result, _) => result,
    };
    let r = match transformed {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(None),
        Err(failed) => {
            let origin = Origin::Source {
                topic: topic.as_deref().unwrap_or_default(),
                partition,
                offset,
            };
            let original = kept.map(|r| render(settings, &r)).unwrap_or_default();
            skip_or_fail(errors, failed, origin, original).await?;
            return Ok(None);
        }
    };
    let converted = match settings.to_bytes(&r) {
        Err(failed) if failed.error.is_retriable() => errors.retry(|| settings.to_bytes(&r)).await,
        result => result,
    };
    match converted {
        Ok((key, value)) => {
            errors.succeeded(1);
            Ok(Some(ProducerRecord {
                topic: r.topic,
                partition: r.partition,
                key,
                value,
                headers: r.headers,
                timestamp: r.timestamp,
            }))
        }
        Err(failed) => {
            let origin = Origin::Source {
                topic: &r.topic,
                partition,
                offset,
            };
            skip_or_fail(errors, failed, origin, render(settings, &r)).await?;
            Ok(None)
        }
    }
}

/// A record that failed before it had bytes, as it is dead-lettered: the key and value as the
/// connector's converters write them, or as schemaless JSON where they cannot.
fn render(settings: &RuntimeSettings, r: &Record) -> Original {
    let bytes = |converter: &dyn sluice_connector_api::Converter, schema, value: &Value| {
        converter
            .to_bytes(&r.topic, schema, value)
            .unwrap_or_else(|_| serde_json::to_vec(&AsJson::schemaless(value)).ok())
    };
    Original {
        key: bytes(
            settings.key_converter.as_ref(),
            r.key_schema.as_deref(),
            &r.key,
        ),
        value: bytes(
            settings.value_converter.as_ref(),
            r.value_schema.as_deref(),
            &r.value,
        ),
        headers: r.headers.clone(),
        timestamp: r.timestamp,
    }
}

impl Tracked {
    fn done(partition: SourcePartition, offset: SourceOffset) -> Self {
        Self {
            pending: Pending::Done,
            partition,
            offset,
        }
    }
}

/// A delivery that did not end in an acknowledgement.
enum Unsettled {
    /// Kafka refused the record (after librdkafka's own retries).
    Refused(Box<Refusal>),
    /// The producer went away first.
    Closed,
}

/// A record Kafka refused, with where it came from.
struct Refusal {
    partition: SourcePartition,
    offset: SourceOffset,
    undelivered: Undelivered,
}

/// The stage error of a record Kafka refused.
fn produce_failed(topic: &str, error: &KafkaError) -> StageError {
    // librdkafka has retried what can be retried (`message.timeout.ms`); what is left is the
    // record's fault (too large, invalid) or the cluster's.
    let fault = match error.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidMessageSize,
        ) => Fault::User,
        _ => Fault::External,
    };
    StageError {
        stage: Stage::KafkaProduce,
        class: PRODUCER_CLASS.to_owned(),
        error: ConnectError::new(fault, false, format!("producing to {topic} failed"))
            .with_source(error.clone()),
    }
}

/// Waits for the oldest tracked record and records its offset; returns whether there was one.
/// Done entries ahead of it are settled too.
async fn settle_oldest(
    in_flight: &mut VecDeque<Tracked>,
    acked: &mut Acked,
) -> Result<bool, Unsettled> {
    while let Some(tracked) = in_flight.pop_front() {
        match tracked.pending {
            Pending::Done => acked.record(tracked.partition, tracked.offset),
            Pending::Delivery(d) => {
                match d.await {
                    Ok(Ok(_)) => acked.record(tracked.partition, tracked.offset),
                    Ok(Err(undelivered)) => {
                        return Err(Unsettled::Refused(Box::new(Refusal {
                            partition: tracked.partition,
                            offset: tracked.offset,
                            undelivered,
                        })));
                    }
                    Err(_) => return Err(Unsettled::Closed),
                }
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Moves the acknowledged prefix of `in_flight` into `acked` without waiting.
fn settle_ready(in_flight: &mut VecDeque<Tracked>, acked: &mut Acked) -> Result<(), Unsettled> {
    while let Some(front) = in_flight.front_mut() {
        let refused = match &mut front.pending {
            Pending::Done => None,
            Pending::Delivery(d) => match d.now_or_never() {
                None => return Ok(()),
                Some(Ok(Ok(_))) => None,
                Some(Ok(Err(undelivered))) => Some(undelivered),
                Some(Err(_)) => return Err(Unsettled::Closed),
            },
        };
        let Some(t) = in_flight.pop_front() else {
            break;
        };
        match refused {
            None => acked.record(t.partition, t.offset),
            Some(undelivered) => {
                return Err(Unsettled::Refused(Box::new(Refusal {
                    partition: t.partition,
                    offset: t.offset,
                    undelivered,
                })));
            }
        }
    }
    Ok(())
}

/// The newest acknowledged offset of each source partition since the last commit. A task has few
/// partitions and consecutive records usually share one, so a vector searched from the end beats
/// hashing each record's partition.
#[derive(Default)]
struct Acked(Vec<(SourcePartition, SourceOffset)>);

impl Acked {
    fn record(&mut self, partition: SourcePartition, offset: SourceOffset) {
        match self.0.iter_mut().rev().find(|(p, _)| *p == partition) {
            Some((_, o)) => *o = offset,
            None => self.0.push((partition, offset)),
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
