//! The source task loop: poll → transforms → convert → produce (idempotent, `acks=all`) → store
//! offsets.
//!
//! Offsets guarantee: the offset of a record is written to the offsets topic only after Kafka has
//! acknowledged that record and every record polled before it. Deliveries are tracked in poll order;
//! every `offset.flush.interval.ms` (and when stopping) the loop waits for the outstanding
//! deliveries, then writes the newest acknowledged offset of each source partition. After a crash,
//! the task resumes from the last written offsets: records polled after them are produced again,
//! so duplicates are bounded by one flush interval and nothing is lost.

mod flow;
mod in_flight;

pub(crate) use in_flight::DivertAck;

use std::sync::Arc;
use std::time::Duration;

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

use self::flow::{Flow, MAX_DIVERTED_IN_FLIGHT, late_reason};
use self::in_flight::{Acked, InFlight, Pending, Refusal, Tracked, Unsettled};
use super::errors::{ErrorHandler, Failure, Origin, Original, StageError};
use super::overflow::{self, SourceOverflow};
use super::{Desired, Reporter, SharedSettings, TaskSettings, TaskState};
use crate::connector_config::RuntimeSettings;
use crate::kafka::{DeliveryFuture, KafkaClients, Producer, TopicSpec, Undelivered, future_record};
use crate::store::OffsetStore;

/// Named as the class of the `KAFKA_PRODUCE` stage in dead-letter headers.
const PRODUCER_CLASS: &str = "librdkafka producer";

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

/// How a record's trip to the producer's queue ended.
enum Queued {
    Sent(DeliveryFuture),
    Refused(KafkaError),
    Divert(String),
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
        let overflow = match &self.settings.source_overflow {
            Some(settings) => Some(
                SourceOverflow::start(
                    &self.id,
                    settings,
                    self.producer.clone(),
                    Arc::clone(self.errors.metrics()),
                )
                .await,
            ),
            None => None,
        };
        let mut flow = Flow {
            in_flight: InFlight::default(),
            acked: Acked::default(),
            overflow,
        };
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
                    self.commit(&mut flow).await?;
                    next_flush = Instant::now() + interval;
                }
                self.tend_overflow(&mut flow).await?;
                if desired == Desired::Paused {
                    let wake = if flow.diverting() {
                        next_flush.min(Instant::now() + overflow::PROBE_INTERVAL)
                    } else {
                        next_flush
                    };
                    let _ = tokio::time::timeout_at(wake, self.desired.changed()).await;
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
                    self.send(record, &mut flow).await?;
                }
                self.settle_ready(&mut flow).await?;
            }
        }
        .await;
        let commit = self.final_commit(&mut flow).await;
        if let Err(e) = self.task.stop().await {
            tracing::warn!(task = %self.id, "stop failed: {}", e.trace());
        }
        match result.and(commit) {
            Ok(()) => self.reporter.report(TaskState::Unassigned, None),
            Err(trace) => self.reporter.failed(trace),
        }
    }

    async fn send(&mut self, record: SourceRecord, flow: &mut Flow) -> Result<(), String> {
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
        let Some(mut outgoing) = prepared else {
            flow.in_flight
                .0
                .push_back(Tracked::done(source_partition, source_offset));
            return Ok(());
        };
        if let Some(o) = &flow.overflow {
            o.tag(&mut outgoing, &source_partition, &source_offset);
        }
        if flow.diverting() {
            flow.push_diverted(outgoing, source_partition, source_offset, false);
            if flow.in_flight.0.len() > MAX_DIVERTED_IN_FLIGHT {
                self.settle_one(flow).await?;
            }
            return Ok(());
        }
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
        let queued = self.queue(&outgoing, flow).await?;
        let refused = match queued {
            Queued::Sent(delivery) => {
                let kept = flow.overflow.as_ref().map(|o| {
                    o.sent_to_kafka(1);
                    Box::new(outgoing)
                });
                flow.in_flight.0.push_back(Tracked {
                    pending: Pending::Delivery {
                        delivery,
                        sent_at: Instant::now(),
                        kept,
                    },
                    partition: source_partition,
                    offset: source_offset,
                });
                return Ok(());
            }
            Queued::Divert(reason) => {
                flow.divert(&reason);
                flow.push_diverted(outgoing, source_partition, source_offset, false);
                return Ok(());
            }
            Queued::Refused(e) => e,
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
        flow.in_flight
            .0
            .push_back(Tracked::done(source_partition, source_offset));
        Ok(())
    }

    /// Puts a record in the producer's queue, making room while it is full.
    async fn queue(
        &mut self,
        outgoing: &ProducerRecord,
        flow: &mut Flow,
    ) -> Result<Queued, String> {
        let mut fr = future_record(outgoing);
        loop {
            match self.producer.send_result(fr) {
                Ok(delivery) => {
                    if let Some(o) = &mut flow.overflow {
                        o.queue_full(false);
                    }
                    return Ok(Queued::Sent(delivery));
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    fr = back;
                    if let Some(reason) = flow.overflow.as_mut().and_then(|o| o.queue_full(true)) {
                        return Ok(Queued::Divert(reason));
                    }
                    // Make room: settle our oldest delivery (it leaves the queue with its result
                    // recorded), or wait briefly if the queue is full of other tasks' records.
                    let late_after = flow.late_after();
                    match flow
                        .in_flight
                        .settle_oldest(&mut flow.acked, late_after)
                        .await
                    {
                        Ok(true) => {}
                        Ok(false) => tokio::time::sleep(Duration::from_millis(5)).await,
                        Err(Unsettled::Late) => return Ok(Queued::Divert(late_reason(flow))),
                        Err(unsettled) => self.unsettled(flow, unsettled).await?,
                    }
                }
                Err((e, _)) => return Ok(Queued::Refused(e)),
            }
        }
    }

    /// Waits for the oldest sent record; `false` when there was none. A Kafka delivery that is
    /// late diverts the task.
    async fn settle_one(&mut self, flow: &mut Flow) -> Result<bool, String> {
        let late_after = flow.late_after();
        match flow
            .in_flight
            .settle_oldest(&mut flow.acked, late_after)
            .await
        {
            Ok(settled) => Ok(settled),
            Err(Unsettled::Late) => {
                let reason = late_reason(flow);
                flow.divert(&reason);
                Ok(true)
            }
            Err(unsettled) => {
                self.unsettled(flow, unsettled).await?;
                Ok(true)
            }
        }
    }

    /// Settles what is settled already, without waiting.
    async fn settle_ready(&mut self, flow: &mut Flow) -> Result<(), String> {
        while let Err(unsettled) = flow.in_flight.settle_ready(&mut flow.acked) {
            self.unsettled(flow, unsettled).await?;
        }
        Ok(())
    }

    /// Waits for every sent record, then stores the newest settled offset of each partition.
    /// While diverting it only settles what is ready: the offsets are kept until Kafka is back.
    async fn commit(&mut self, flow: &mut Flow) -> Result<(), String> {
        if flow.diverting() {
            return self.settle_ready(flow).await;
        }
        // Settle every delivery in order; one that fails the task stops the offsets just
        // before it.
        let failure = loop {
            match self.settle_one(flow).await {
                Ok(true) if flow.diverting() => return self.settle_ready(flow).await,
                Ok(true) => {}
                Ok(false) => break None,
                Err(e) => {
                    flow.in_flight.0.clear();
                    break Some(e);
                }
            }
        };
        let late_after = flow.late_after();
        if let Err(why) = self.write_offsets(flow, late_after).await {
            if flow.overflow.is_none() {
                return Err(why);
            }
            flow.divert(&why);
        }
        failure.map_or(Ok(()), Err)
    }

    /// Writes the settled offsets (within `timeout`, when given); on failure they are kept for
    /// the next write.
    async fn write_offsets(
        &mut self,
        flow: &mut Flow,
        timeout: Option<Duration>,
    ) -> Result<(), String> {
        if flow.acked.is_empty() {
            return Ok(());
        }
        let offsets = std::mem::take(&mut flow.acked.0);
        let write = self.offsets.write(&self.id.connector, &offsets);
        let written = match timeout {
            None => write
                .await
                .map_err(|e| format!("writing offsets failed: {e}")),
            Some(t) => match tokio::time::timeout(t, write).await {
                Ok(w) => w.map_err(|e| format!("writing offsets failed: {e}")),
                Err(_) => Err(format!(
                    "writing offsets was not acknowledged within overflow.produce.timeout.ms={}",
                    t.as_millis()
                )),
            },
        };
        if let Err(why) = written {
            flow.acked.restore(offsets);
            return Err(why);
        }
        if let Err(e) = self.task.commit(&offsets).await {
            tracing::warn!(task = %self.id, "commit callback failed: {}", e.trace());
        }
        Ok(())
    }

    /// Applies the error policy to a record that did not settle as delivered; its offset then
    /// counts as done. With an overflow stream, a record Kafka gave up on for the cluster's
    /// sake (timed out, brokers gone) is diverted instead, first in line.
    async fn unsettled(&mut self, flow: &mut Flow, unsettled: Unsettled) -> Result<(), String> {
        match unsettled {
            Unsettled::Refused(refusal) => {
                let Refusal {
                    partition,
                    offset,
                    undelivered: Undelivered { error, message },
                } = *refusal;
                let failed = produce_failed(message.topic(), &error);
                if flow.overflow.is_some() && failed.error.fault() == Fault::External {
                    let original = Original::of(&message);
                    let record = ProducerRecord {
                        topic: message.topic().to_owned(),
                        partition: None,
                        key: original.key,
                        value: original.value,
                        headers: original.headers,
                        timestamp: original.timestamp,
                    };
                    flow.divert(&format!("Kafka gave up on a record: {error}"));
                    flow.push_diverted(record, partition, offset, true);
                    return Ok(());
                }
                let origin = Origin::Source {
                    topic: message.topic(),
                    partition: &partition,
                    offset: &offset,
                };
                skip_or_fail(&self.errors, failed, origin, Original::of(&message)).await?;
                flow.acked.record(partition, offset);
            }
            Unsettled::NotDiverted(lost) => {
                let (t, record, error) = *lost;
                let failed = StageError {
                    stage: Stage::KafkaProduce,
                    class: "Kinesis overflow".to_owned(),
                    error,
                };
                let topic = record.topic.clone();
                let origin = Origin::Source {
                    topic: &topic,
                    partition: &t.partition,
                    offset: &t.offset,
                };
                skip_or_fail(&self.errors, failed, origin, Original::produced(record)).await?;
                flow.acked.record(t.partition, t.offset);
            }
            Unsettled::Late => flow.divert(&late_reason(flow)),
            Unsettled::Closed => {
                return Err("the producer was closed before acknowledging a record".to_owned());
            }
        }
        Ok(())
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
