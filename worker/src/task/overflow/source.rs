//! A source task's side of the overflow: its state, the triggers, the probe and the replay (see
//! the parent module for the guarantees).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use sluice_connector_api::{ConnectError, ProducerRecord, SourceOffset, SourcePartition, TaskId};
use sluice_connectors::kinesis::overflow::envelope::{self, EnvelopeRef};
use sluice_connectors::kinesis::overflow::replay::ReadBack;
use sluice_connectors::kinesis::overflow::{
    ID_HEADER, OverflowWriter, REPLAYED_HEADER, ShardRange, overflow_id, partition_key_of,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{OverflowMode, PROBE_INTERVAL, Replayed, SourceOverflowSettings};
use crate::kafka::{KafkaClients, Producer, TopicSpec, future_record};
use crate::metrics::TaskMetrics;
use crate::task::Desired;
use crate::task::source::DivertAck;

/// Longest wait for one metadata probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Back-off of a replay read that failed with a retriable error.
const READ_RETRY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Kafka,
    Diverting,
}

/// One source task's overflow.
pub struct SourceOverflow {
    settings: SourceOverflowSettings,
    writer: OverflowWriter,
    connector: String,
    /// Names this task run in the envelopes it writes (`connector/task/run`).
    run: String,
    state: State,
    producer: Producer,
    metrics: Arc<TaskMetrics>,
    queue_full_since: Option<Instant>,
    probe: Option<JoinHandle<bool>>,
    next_probe: Instant,
    answering_since: Option<Instant>,
    /// What was diverted and not replayed yet, per shard.
    to_replay: Vec<ToReplay>,
}

/// One shard's diverted records, and how far they were replayed.
struct ToReplay {
    shard: String,
    range: ShardRange,
    replayed_to: Option<String>,
}

impl SourceOverflow {
    /// The overflow of task `id` (no request is made yet).
    pub async fn start(
        id: &TaskId,
        settings: &SourceOverflowSettings,
        producer: Producer,
        metrics: Arc<TaskMetrics>,
    ) -> Self {
        let writer = OverflowWriter::connect(&settings.target).await;
        let run = format!(
            "{}/{}/{}",
            id.connector,
            id.task,
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        metrics.overflow_state("kafka");
        Self {
            settings: settings.clone(),
            writer,
            connector: id.connector.clone(),
            run,
            state: State::Kafka,
            producer,
            metrics,
            queue_full_since: None,
            probe: None,
            next_probe: Instant::now(),
            answering_since: None,
            to_replay: Vec::new(),
        }
    }

    /// Whether new records go to the stream.
    pub fn diverting(&self) -> bool {
        self.state == State::Diverting
    }

    /// How long a delivery may stay unacknowledged.
    pub fn produce_timeout(&self) -> Duration {
        self.settings.produce_timeout
    }

    /// How the task comes back to Kafka.
    pub fn mode(&self) -> OverflowMode {
        self.settings.mode
    }

    /// Adds the record's overflow id header.
    pub fn tag(
        &self,
        record: &mut ProducerRecord,
        partition: &SourcePartition,
        offset: &SourceOffset,
    ) {
        // Maps serialize with sorted keys: the same position gives the same text.
        let partition = serde_json::to_string(partition).unwrap_or_default();
        let offset = serde_json::to_string(offset).unwrap_or_default();
        let id = overflow_id(&[&self.connector, &partition, &offset]);
        record.headers.add_str(ID_HEADER, &id);
    }

    /// In state `kafka`: why the task should divert now, if it should. `oldest` is when the
    /// oldest delivery Kafka has not acknowledged was sent.
    pub fn trigger(&self, oldest: Option<Instant>) -> Option<String> {
        if self.state != State::Kafka {
            return None;
        }
        if self.producer.brokers_down() {
            return Some("Kafka is unreachable: librdkafka reports every broker down".into());
        }
        oldest
            .filter(|sent| sent.elapsed() >= self.settings.produce_timeout)
            .map(|_| self.late_reason())
    }

    /// Why a task diverts when Kafka is late with an acknowledgement.
    pub fn late_reason(&self) -> String {
        format!(
            "a record was not acknowledged within overflow.produce.timeout.ms={}",
            self.settings.produce_timeout.as_millis()
        )
    }

    /// The producer's queue was full (`true`) or took a record (`false`): why the task should
    /// divert, once it has been full for `overflow.queue.full.ms`.
    pub fn queue_full(&mut self, full: bool) -> Option<String> {
        if !full {
            self.queue_full_since = None;
            return None;
        }
        let since = *self.queue_full_since.get_or_insert_with(Instant::now);
        (since.elapsed() >= self.settings.queue_full).then(|| {
            format!(
                "the producer's queue has been full for overflow.queue.full.ms={}",
                self.settings.queue_full.as_millis()
            )
        })
    }

    /// Switches to `diverting`, saying why.
    pub fn divert_now(&mut self, reason: &str) {
        if self.state == State::Diverting {
            return;
        }
        tracing::warn!(
            connector = %self.connector,
            run = %self.run,
            "diverting records to the overflow {}: {reason}",
            self.writer.stream().describe()
        );
        self.state = State::Diverting;
        self.queue_full_since = None;
        self.answering_since = None;
        self.next_probe = Instant::now() + PROBE_INTERVAL;
        self.metrics.overflow_state("diverting");
    }

    /// Writes one record to the stream.
    pub fn divert(
        &self,
        record: &ProducerRecord,
        partition: &SourcePartition,
        offset: &SourceOffset,
    ) -> DivertAck {
        let data = envelope::encode(&EnvelopeRef {
            topic: &record.topic,
            partition: record.partition,
            offset: None,
            timestamp: record.timestamp,
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            headers: &record.headers,
            source_partition: Some(partition),
            source_offset: Some(offset),
            diverted_by: Some(&self.run),
        });
        // A key's records share a shard, so replaying a shard in order keeps the key's order;
        // records without a key keep their source partition's.
        let key = match &record.key {
            Some(key) => partition_key_of(key),
            None => partition_key_of(&serde_json::to_vec(partition).unwrap_or_default()),
        };
        self.metrics.overflow_records("kinesis", 1);
        let stored = self.writer.divert(key, data);
        Box::pin(async move {
            match stored.await {
                Ok(answer) => answer.map(|_| ()),
                Err(_) => Err(ConnectError::internal("the overflow writer stopped")),
            }
        })
    }

    /// Counts records sent to Kafka.
    pub fn sent_to_kafka(&self, n: u64) {
        self.metrics.overflow_records("kafka", n);
    }

    /// In state `diverting`: probes Kafka; `true` once it has answered for
    /// `overflow.recovery.ms`.
    pub fn recovery_due(&mut self) -> bool {
        if self.state != State::Diverting {
            return false;
        }
        if let Some(probe) = &self.probe {
            if !probe.is_finished() {
                return false;
            }
            let answered = self
                .probe
                .take()
                .and_then(futures::FutureExt::now_or_never)
                .and_then(Result::ok)
                .unwrap_or(false);
            if answered {
                self.answering_since.get_or_insert_with(Instant::now);
            } else {
                self.answering_since = None;
            }
        }
        if let Some(since) = self.answering_since
            && since.elapsed() >= self.settings.recovery
        {
            return true;
        }
        if Instant::now() >= self.next_probe {
            self.next_probe = Instant::now() + PROBE_INTERVAL;
            let producer = self.producer.clone();
            self.probe = Some(tokio::task::spawn_blocking(move || {
                producer.probe(PROBE_TIMEOUT)
            }));
        }
        false
    }

    /// Everything diverted is in the stream: note what to replay. Call before
    /// [`replay`](Self::replay).
    pub fn all_diverted(&mut self) {
        let written = self.writer.take_written();
        if self.settings.mode == OverflowMode::Ordered {
            self.to_replay
                .extend(written.into_iter().map(|(shard, range)| ToReplay {
                    shard,
                    range,
                    replayed_to: None,
                }));
        }
    }

    /// `ordered`: produces what this run diverted back into Kafka, in sequence order per shard,
    /// waiting for every acknowledgement. `Err` (Kafka failed again) keeps what is left for the
    /// next recovery. Stops early (with `Ok`) when the task is asked to stop; what is left is then
    /// polled again by the next run (its offsets were not written).
    pub async fn replay(
        &mut self,
        clients: &KafkaClients,
        topics: &mut HashSet<String>,
        topic_creation: Option<(i32, i32)>,
        desired: &watch::Receiver<Desired>,
    ) -> Result<Replayed, String> {
        tracing::info!(connector = %self.connector, run = %self.run, shards = self.to_replay.len(), "replaying diverted records into Kafka");
        self.metrics.overflow_state("recovering");
        while let Some(next) = self.to_replay.first() {
            let shard = next.shard.clone();
            let mut reader =
                ReadBack::new(self.writer.stream(), &shard, next.range.clone(), &self.run)
                    .after(next.replayed_to.clone());
            loop {
                if *desired.borrow() == Desired::Stopped {
                    return Ok(Replayed::Stopped);
                }
                let page = match reader.next_page().await {
                    Ok(Some(page)) => page,
                    Ok(None) => break,
                    Err(e) if e.is_retriable() => {
                        tracing::warn!(
                            "reading back the overflow stream failed, retrying: {}",
                            e.trace()
                        );
                        tokio::time::sleep(READ_RETRY).await;
                        continue;
                    }
                    Err(e) => {
                        return Err(format!(
                            "reading back the overflow stream failed: {}",
                            e.trace()
                        ));
                    }
                };
                let mut deliveries = Vec::with_capacity(page.len());
                for (seq, e) in &page {
                    if !topics.contains(&e.topic) {
                        if let Some((partitions, replication_factor)) = topic_creation {
                            let spec = TopicSpec {
                                name: &e.topic,
                                partitions,
                                replication_factor,
                                compacted: false,
                            };
                            clients.ensure_topic(spec).await.map_err(|err| {
                                format!("creating topic {} failed: {err}", e.topic)
                            })?;
                        }
                        topics.insert(e.topic.clone());
                    }
                    let mut headers = e.headers.clone();
                    let from = format!("{}/{shard}/{seq}", self.writer.stream().name);
                    headers.add_str(REPLAYED_HEADER, &from);
                    let record = ProducerRecord {
                        topic: e.topic.clone(),
                        partition: e.partition,
                        key: e.key.clone(),
                        value: e.value.clone(),
                        headers,
                        timestamp: e.timestamp,
                    };
                    let delivery = self
                        .producer
                        .queue(future_record(&record), self.settings.produce_timeout)
                        .await
                        .map_err(|err| format!("replaying into {} failed: {err}", e.topic))?;
                    deliveries.push((seq.clone(), delivery));
                }
                for (seq, delivery) in deliveries {
                    let acked = tokio::time::timeout(
                        self.settings.produce_timeout,
                        crate::kafka::acknowledged(delivery),
                    )
                    .await;
                    match acked {
                        Ok(Ok(_)) => {
                            // Replayed up to here: a later replay of the shard starts after it.
                            if let Some(r) = self.to_replay.first_mut() {
                                r.replayed_to = Some(seq);
                            }
                        }
                        Ok(Err(err)) => return Err(format!("replaying a record failed: {err}")),
                        Err(_) => {
                            return Err(format!(
                                "a replayed record was not acknowledged within overflow.produce.timeout.ms={}",
                                self.settings.produce_timeout.as_millis()
                            ));
                        }
                    }
                }
                self.metrics.overflow_records("replayed", page.len() as u64);
            }
            self.to_replay.remove(0);
        }
        Ok(Replayed::All)
    }

    /// Recovery failed: diverting again, and Kafka must answer for `overflow.recovery.ms` anew.
    pub fn replay_failed(&mut self, why: &str) {
        tracing::warn!(connector = %self.connector, run = %self.run, "coming back to Kafka failed, diverting again: {why}");
        self.answering_since = None;
        self.next_probe = Instant::now() + PROBE_INTERVAL;
        self.metrics.overflow_state("diverting");
    }

    /// Back to `kafka`.
    pub fn back_to_kafka(&mut self) {
        tracing::info!(connector = %self.connector, run = %self.run, "Kafka is back: records go to Kafka again");
        self.state = State::Kafka;
        self.probe = None;
        self.answering_since = None;
        self.metrics.overflow_state("kafka");
    }
}
