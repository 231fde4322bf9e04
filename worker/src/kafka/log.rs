//! A Kafka topic read as a log of state changes (Kafka Connect's `KafkaBasedLog`).
//!
//! Guarantees:
//! - every record is applied in offset order within its partition, and at most once: a record at or
//!   below the highest offset already applied in its partition is skipped. This makes re-deliveries
//!   harmless (some brokers replay surviving records after compaction);
//! - [`KafkaLog::read_to_end`] returns only once every record that was in the topic when it was called
//!   has been applied, so a writer can read its own writes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rdkafka::consumer::{Consumer, DefaultConsumerContext, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::KafkaClients;
use crate::error::WorkerError;

/// One record of the log.
#[derive(Debug, Clone)]
pub struct LogRecord {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes; `None` is a tombstone.
    pub value: Option<Vec<u8>>,
}

#[derive(Default)]
struct Progress {
    /// Next offset to apply, per partition.
    next: Mutex<HashMap<i32, i64>>,
    changed: Notify,
}

/// A compacted topic, read from the start by a background task and written through a producer.
pub struct KafkaLog {
    topic: String,
    partitions: i32,
    producer: super::Producer,
    consumer: Arc<StreamConsumer>,
    progress: Arc<Progress>,
    reader: JoinHandle<()>,
}

impl KafkaLog {
    /// Starts reading `topic` from the beginning, calling `apply` for each new record, and returns
    /// once everything already in the topic has been applied.
    pub async fn open(
        clients: &KafkaClients,
        producer: super::Producer,
        topic: &str,
        partitions: i32,
        mut apply: impl FnMut(LogRecord) + Send + 'static,
    ) -> Result<Self, WorkerError> {
        let consumer: StreamConsumer = clients.consumer(
            // Short fetch waits: writers wait to read their own records back.
            &[
                ("group.id", "sluice-internal-log-reader"),
                ("fetch.wait.max.ms", "50"),
                // A topic created a moment ago has no known leader for a short while.
                ("fetch.error.backoff.ms", "50"),
            ],
            DefaultConsumerContext,
        )?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .map_err(WorkerError::kafka("assigning partitions"))?;
        }
        consumer
            .assign(&tpl)
            .map_err(WorkerError::kafka(format!("assigning {topic}")))?;
        let consumer = Arc::new(consumer);
        let progress = Arc::new(Progress::default());
        let reader = {
            let consumer = Arc::clone(&consumer);
            let progress = Arc::clone(&progress);
            let topic = topic.to_owned();
            tokio::spawn(async move {
                loop {
                    // Re-poll at least twice a second: a reader must not depend on a single
                    // wake-up from librdkafka's queue (seen lost on a restarted worker, which
                    // then served a stale status topic).
                    let Ok(received) =
                        tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await
                    else {
                        continue;
                    };
                    match received {
                        Ok(msg) => {
                            let (partition, offset) = (msg.partition(), msg.offset());
                            let fresh = {
                                let next = progress.next.lock();
                                offset >= next.get(&partition).copied().unwrap_or(0)
                            };
                            if fresh {
                                apply(LogRecord {
                                    partition,
                                    offset,
                                    key: msg.key().map(<[u8]>::to_vec),
                                    value: msg.payload().map(<[u8]>::to_vec),
                                });
                            }
                            // Only now is the record applied: writers waiting for it may go on.
                            {
                                let mut next = progress.next.lock();
                                let entry = next.entry(partition).or_insert(0);
                                *entry = (*entry).max(offset + 1);
                            }
                            progress.changed.notify_waiters();
                        }
                        Err(e) => {
                            tracing::warn!(topic, error = %e, "reading internal topic failed; retrying");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            })
        };
        // Learn the topic's leaders now, in the background, rather than on the first write.
        {
            let producer = producer.clone();
            let topic = topic.to_owned();
            tokio::task::spawn_blocking(move || {
                producer.warm_up(&topic, Duration::from_secs(5));
            });
        }
        let log = Self {
            topic: topic.to_owned(),
            partitions,
            producer,
            consumer,
            progress,
            reader,
        };
        log.read_to_end().await?;
        Ok(log)
    }

    /// Creates the topic if absent (see [`KafkaClients::ensure_topic`]), then opens it; returns the
    /// log and the topic's partition count.
    pub async fn create_and_open(
        clients: &KafkaClients,
        spec: super::TopicSpec<'_>,
        apply: impl FnMut(LogRecord) + Send + 'static,
    ) -> Result<(Self, i32), WorkerError> {
        let partitions = clients.ensure_topic(spec.clone()).await?;
        let log = Self::open(
            clients,
            clients.producer(&[])?,
            spec.name,
            partitions,
            apply,
        )
        .await?;
        Ok((log, partitions))
    }

    /// Waits until every record present now has been applied.
    pub async fn read_to_end(&self) -> Result<(), WorkerError> {
        let consumer = Arc::clone(&self.consumer);
        let topic = self.topic.clone();
        let partitions = self.partitions;
        let ends = tokio::task::spawn_blocking(move || {
            (0..partitions)
                .map(|p| {
                    consumer
                        .fetch_watermarks(&topic, p, Duration::from_secs(30))
                        .map(|(low, high)| (p, low, high))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| WorkerError::Broker(e.to_string()))?
        .map_err(WorkerError::kafka(format!(
            "reading end offsets of {}",
            self.topic
        )))?;
        self.wait_for(&ends).await;
        Ok(())
    }

    /// Waits until every partition's records below `high` are applied. The consumer's position
    /// also passes gaps (compacted or control records) that are never applied, but it moves as
    /// soon as a record is handed to the reader, before the reader applied it: a position past the
    /// end is trusted only once it has held for a while with nothing applied meanwhile.
    async fn wait_for(&self, ends: &[(i32, i64, i64)]) {
        let mut passed_since: Option<(tokio::time::Instant, BTreeMap<i32, i64>)> = None;
        loop {
            let notified = self.progress.changed.notified();
            let (applied_all, position_all, applied) = self.reached(ends);
            if applied_all {
                return;
            }
            if position_all {
                match &passed_since {
                    Some((at, seen)) if *seen == applied => {
                        if at.elapsed() >= Duration::from_millis(100) {
                            return;
                        }
                    }
                    _ => passed_since = Some((tokio::time::Instant::now(), applied)),
                }
            } else {
                passed_since = None;
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
    }

    /// Whether every end is applied, whether every end is passed by the consumer position, and
    /// what is applied now.
    fn reached(&self, ends: &[(i32, i64, i64)]) -> (bool, bool, BTreeMap<i32, i64>) {
        let next = self.progress.next.lock().clone();
        let positions = self.consumer.position().ok();
        let applied_all = ends
            .iter()
            .all(|&(p, low, high)| high <= low || next.get(&p).copied().unwrap_or(0) >= high);
        let position_all = ends.iter().all(|&(p, low, high)| {
            let position = positions
                .as_ref()
                .and_then(|tpl| tpl.find_partition(&self.topic, p))
                .and_then(|e| e.offset().to_raw())
                .unwrap_or(0);
            high <= low || position >= high
        });
        (applied_all, position_all, next.into_iter().collect())
    }

    /// Writes a record and waits until this log has applied it.
    pub async fn write(&self, key: &str, value: Option<&[u8]>) -> Result<(), WorkerError> {
        let (partition, offset) = self.send(key, value).await?;
        self.wait_for(&[(partition, 0, offset + 1)]).await;
        Ok(())
    }

    /// Writes a record without waiting for it to be read back; returns its partition and offset.
    pub async fn send(&self, key: &str, value: Option<&[u8]>) -> Result<(i32, i64), WorkerError> {
        let mut record = FutureRecord::<str, [u8]>::to(&self.topic).key(key);
        if let Some(v) = value {
            record = record.payload(v);
        }
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|e| WorkerError::Kafka {
                context: format!("writing {key} to {}", self.topic),
                source: e,
            })
    }
}

impl Drop for KafkaLog {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
