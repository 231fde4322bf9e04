//! Reading records by position rather than as a group member: one record at an offset (the
//! original bytes of a record a sink reports as failed) or a range of offsets (a redrive).
//!
//! The calls block while they wait for the broker; run them on a blocking thread.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};

use super::KafkaClients;
use crate::error::WorkerError;

/// A consumer that reads where it is told.
pub struct Reader {
    consumer: BaseConsumer,
}

impl Reader {
    /// A reader on the worker's cluster.
    pub fn new(clients: &KafkaClients) -> Result<Self, WorkerError> {
        Ok(Self {
            consumer: clients.reader()?,
        })
    }

    fn assign(&self, topic: &str, partition: i32, offset: i64) -> Result<(), String> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
            .and_then(|()| self.consumer.assign(&tpl))
            .map_err(|e| format!("reading {topic}-{partition} from offset {offset} failed: {e}"))
    }

    /// The record at `offset`.
    pub fn read_at(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        timeout: Duration,
    ) -> Result<OwnedMessage, String> {
        let mut found = None;
        self.scan(topic, partition, offset, offset + 1, timeout, |m| {
            found = Some(m)
        })?;
        found.ok_or_else(|| {
            format!("the record at {topic}-{partition} offset {offset} is no longer in Kafka")
        })
    }

    /// Calls `each` with every record of `topic`-`partition` from offset `from` up to (not
    /// including) `until`, in order; returns how many there were. Offsets missing from the log
    /// (deleted or compacted away) are skipped.
    pub fn scan(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        until: i64,
        timeout: Duration,
        mut each: impl FnMut(OwnedMessage),
    ) -> Result<u64, String> {
        let (low, high) = self.watermarks(topic, partition, timeout)?;
        let (from, until) = (from.max(low), until.min(high));
        if from >= until {
            return Ok(0);
        }
        self.assign(topic, partition, from)?;
        let deadline = Instant::now() + timeout;
        let mut count = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "reading {topic}-{partition} up to offset {until} timed out after {timeout:?}"
                ));
            }
            match self.consumer.poll(left) {
                None => {}
                Some(Err(e)) => return Err(format!("reading {topic}-{partition} failed: {e}")),
                Some(Ok(m)) if m.topic() != topic || m.partition() != partition => {}
                Some(Ok(m)) => {
                    let offset = m.offset();
                    if offset >= until {
                        return Ok(count);
                    }
                    if offset >= from {
                        each(m.detach());
                        count += 1;
                    }
                    if offset + 1 >= until {
                        return Ok(count);
                    }
                }
            }
        }
    }

    /// The first and next offsets of a partition.
    pub fn watermarks(
        &self,
        topic: &str,
        partition: i32,
        timeout: Duration,
    ) -> Result<(i64, i64), String> {
        self.consumer
            .fetch_watermarks(topic, partition, timeout)
            .map_err(|e| format!("reading the offsets of {topic}-{partition} failed: {e}"))
    }

    /// The partitions of a topic.
    pub fn partitions(&self, topic: &str, timeout: Duration) -> Result<Vec<i32>, String> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| format!("reading the metadata of {topic} failed: {e}"))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(format!("topic {topic} does not exist"));
        }
        Ok(partitions)
    }

    /// The first offset of `topic`-`partition` whose timestamp is at or after `timestamp_ms`,
    /// or the partition's end if there is none.
    pub fn offset_for_time(
        &self,
        topic: &str,
        partition: i32,
        timestamp_ms: i64,
        timeout: Duration,
    ) -> Result<i64, String> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(timestamp_ms))
            .map_err(|e| e.to_string())?;
        let found = self
            .consumer
            .offsets_for_times(tpl, timeout)
            .map_err(|e| format!("finding offsets by time in {topic}-{partition} failed: {e}"))?;
        let offset = found
            .find_partition(topic, partition)
            .map(|e| e.offset())
            .unwrap_or(Offset::End);
        match offset {
            Offset::Offset(o) => Ok(o),
            _ => self
                .watermarks(topic, partition, timeout)
                .map(|(_, high)| high),
        }
    }
}
