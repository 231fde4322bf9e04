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
use sluice_connector_api::{
    ConnectError, ProducerRecord, Props, Record, SourceOffset, SourcePartition, SourceRecord,
    SourceTask, SourceTaskContext, TaskId,
};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Desired, Reporter, SharedSettings, TaskSettings, TaskState};
use crate::kafka::{DeliveryFuture, KafkaClients, Producer, TopicSpec, future_record};
use crate::store::OffsetStore;

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
        let ctx = SourceTaskContext::new(self.id.clone(), self.offsets.reader(&self.id.connector));
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
                let batch = self
                    .task
                    .poll()
                    .await
                    .map_err(|e| format!("poll failed: {}", e.trace()))?;
                for record in batch {
                    self.send(record, &mut in_flight, &mut acked).await?;
                }
                settle_ready(&mut in_flight, &mut acked)?;
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
        let topic = record.topic.clone();
        let done = |in_flight: &mut VecDeque<Tracked>, partition, offset| {
            in_flight.push_back(Tracked {
                pending: Pending::Done,
                partition,
                offset,
            });
        };
        let outcome = self.prepare(record);
        let outgoing = match outcome {
            Ok(Some(outgoing)) => outgoing,
            Ok(None) => {
                done(in_flight, source_partition, source_offset);
                return Ok(());
            }
            Err(e) if self.settings.tolerate_errors => {
                if self.settings.log_errors {
                    tracing::warn!(task = %self.id, topic, "skipping record: {}", e.trace());
                }
                done(in_flight, source_partition, source_offset);
                return Ok(());
            }
            Err(e) => {
                return Err(format!(
                    "record for {topic} from source partition {} failed: {}",
                    serde_json::Value::Object(source_partition),
                    e.trace()
                ));
            }
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
        loop {
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
                    if !settle_oldest(in_flight, acked).await? {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                Err((e, _)) => {
                    return Err(format!("producing to {} failed: {e}", outgoing.topic));
                }
            }
        }
    }

    /// Transforms and converts a record; `None` when a transform dropped it.
    fn prepare(&self, record: Record) -> Result<Option<ProducerRecord>, ConnectError> {
        let transformed = self
            .settings
            .transforms
            .apply(record)
            .map_err(|e| e.error.context(format!("transform {}", e.alias)))?;
        let Some(r) = transformed else {
            return Ok(None);
        };
        let key = self
            .settings
            .key_converter
            .to_bytes(&r.topic, r.key_schema.as_deref(), &r.key)
            .map_err(|e| e.context("key conversion"))?;
        let value = self
            .settings
            .value_converter
            .to_bytes(&r.topic, r.value_schema.as_deref(), &r.value)
            .map_err(|e| e.context("value conversion"))?;
        Ok(Some(ProducerRecord {
            topic: r.topic,
            partition: r.partition,
            key,
            value,
            headers: r.headers,
            timestamp: r.timestamp,
        }))
    }

    /// Waits for every delivery, then stores the newest acknowledged offset of each partition.
    async fn commit(
        &mut self,
        in_flight: &mut VecDeque<Tracked>,
        acked: &mut Acked,
    ) -> Result<(), String> {
        // Settle every delivery in order; a failed one stops the offsets just before it.
        let failure = loop {
            match settle_oldest(in_flight, acked).await {
                Ok(true) => {}
                Ok(false) => break None,
                Err(e) => {
                    in_flight.clear();
                    break Some(e);
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

/// Waits for the oldest tracked record and records its offset; returns whether there was one.
/// Done entries ahead of it are settled too.
async fn settle_oldest(
    in_flight: &mut VecDeque<Tracked>,
    acked: &mut Acked,
) -> Result<bool, String> {
    while let Some(tracked) = in_flight.pop_front() {
        match tracked.pending {
            Pending::Done => acked.record(tracked.partition, tracked.offset),
            Pending::Delivery(d) => {
                match d.await {
                    Ok(Ok(_)) => acked.record(tracked.partition, tracked.offset),
                    Ok(Err(e)) => {
                        return Err(format!("Kafka did not acknowledge a record: {e}"));
                    }
                    Err(_) => {
                        return Err(
                            "the producer was closed before acknowledging a record".to_owned()
                        );
                    }
                }
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Moves the acknowledged prefix of `in_flight` into `acked` without waiting.
fn settle_ready(in_flight: &mut VecDeque<Tracked>, acked: &mut Acked) -> Result<(), String> {
    while let Some(front) = in_flight.front_mut() {
        match &mut front.pending {
            Pending::Done => {}
            Pending::Delivery(d) => match d.now_or_never() {
                None => return Ok(()),
                Some(Ok(Ok(_))) => {}
                Some(Ok(Err(e))) => {
                    return Err(format!("Kafka did not acknowledge a record: {e}"));
                }
                Some(Err(_)) => {
                    return Err("the producer was closed before acknowledging a record".to_owned());
                }
            },
        }
        if let Some(t) = in_flight.pop_front() {
            acked.record(t.partition, t.offset);
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
