//! The Kinesis source task: `GetRecords` on each of its shards, records to Kafka, one source offset
//! per shard.
//!
//! Guarantees:
//! - each shard's source partition is `{"stream": <name>, "shard": <id>}` and its offset
//!   `{"sequence_number": <last record written>}`; a task that starts again resumes
//!   `AFTER_SEQUENCE_NUMBER` of it, so a crash re-reads at most what was not yet stored (duplicates,
//!   never loss);
//! - a shard is read only once each of its parents in this task is read to its end (a split's
//!   parent, a merge's two), so records of one partition key stay in order across resharding; a
//!   closed shard read to its end is done;
//! - a shard with no stored offset starts at `kinesis.position`, except a shard whose parents were
//!   read or that appeared after the connector started: it is read from its start (its records are
//!   newer than its parents');
//! - each `poll` returns within about a second; a shard that had nothing waits
//!   `kinesis.empty.records.backoff.ms`, a throttled one `kinesis.throughput.exceeded.backoff.ms`,
//!   and no shard is read more than five times a second (Kinesis's limit).

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_kinesis::operation::get_records::GetRecordsOutput;
use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::ShardIteratorType;
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use sluice_connector_api::{
    ConnectError, ConnectResult, ConnectorConfig, Headers, Props, Record, SourceRecord, SourceTask,
    SourceTaskContext, Value, async_trait,
};
use tokio::time::Instant;

use super::config::{KinesisSourceConfig, StartPosition};
use crate::kinesis::RecordFormat;
use crate::kinesis::stream::Stream;
use crate::kinesis::{envelope, overflow};

/// Header with the shard a record was read from.
pub const SHARD_HEADER: &str = "kinesis.shard.id";
/// Header with the record's sequence number.
pub const SEQUENCE_HEADER: &str = "kinesis.sequence.number";
/// Kinesis allows five `GetRecords` calls a second per shard.
const MIN_READ_INTERVAL: Duration = Duration::from_millis(200);
/// Longest `poll`.
const MAX_POLL_WAIT: Duration = Duration::from_secs(1);

/// A shard's source partition.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShardPartition {
    /// Stream name.
    pub stream: String,
    /// Shard id.
    pub shard: String,
}

/// A shard's source offset: the last record written to Kafka.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShardOffset {
    /// Its sequence number.
    pub sequence_number: String,
}

struct Shard {
    id: String,
    parents: Vec<String>,
    new: bool,
    partition: ShardPartition,
    iterator: Option<String>,
    /// The last sequence number handed to the runtime (or stored at start).
    last: Option<String>,
    /// Something of it was read, in this run or an earlier one.
    read_any: bool,
    /// Closed and read to its end.
    done: bool,
    next_read: Instant,
}

/// Reads the shards of one task.
#[derive(Default)]
pub struct KinesisSourceTask {
    running: Option<Running>,
}

struct Running {
    ctx: SourceTaskContext,
    config: KinesisSourceConfig,
    stream: Stream,
    shards: Vec<Shard>,
    ready: bool,
}

/// What one `GetRecords` of a shard gave.
enum Read {
    Records(GetRecordsOutput),
    /// The iterator expired: get a new one from the last sequence number.
    Expired,
    Throttled,
    Retriable(ConnectError),
    Failed(ConnectError),
}

#[async_trait]
impl SourceTask for KinesisSourceTask {
    async fn start(&mut self, ctx: SourceTaskContext, props: &Props) -> ConnectResult<()> {
        let config = KinesisSourceConfig::from_props(props)?;
        let stream = Stream::connect(&config.stream, &config.aws).await;
        let now = Instant::now();
        let mut shards = Vec::with_capacity(config.shards.len());
        for s in &config.shards {
            let partition = ShardPartition {
                stream: config.stream.clone(),
                shard: s.id.clone(),
            };
            let stored: Option<ShardOffset> = ctx.offset_as(&partition)?;
            shards.push(Shard {
                id: s.id.clone(),
                parents: s.parents.clone(),
                new: s.new,
                partition,
                iterator: None,
                read_any: stored.is_some(),
                last: stored.map(|o| o.sequence_number),
                done: false,
                next_read: now,
            });
        }
        tracing::info!(task = %ctx.task_id, "reading {} shards of {}", shards.len(), stream.describe());
        self.running = Some(Running {
            ctx,
            config,
            stream,
            shards,
            ready: false,
        });
        Ok(())
    }

    async fn poll(&mut self) -> ConnectResult<Vec<SourceRecord>> {
        let r = self
            .running
            .as_mut()
            .ok_or_else(|| ConnectError::internal("the task was not started"))?;
        if !r.ready {
            r.stream.check_ready().await?;
            r.ready = true;
        }
        r.poll().await
    }
}

impl Running {
    /// Shards whose parents in this task are all done.
    fn readable(&self) -> Vec<usize> {
        let done: HashSet<&str> = self
            .shards
            .iter()
            .filter(|s| s.done)
            .map(|s| s.id.as_str())
            .collect();
        let ours: HashSet<&str> = self.shards.iter().map(|s| s.id.as_str()).collect();
        (0..self.shards.len())
            .filter(|&i| {
                let s = &self.shards[i];
                !s.done
                    && s.parents
                        .iter()
                        .all(|p| done.contains(p.as_str()) || !ours.contains(p.as_str()))
            })
            .collect()
    }

    async fn poll(&mut self) -> ConnectResult<Vec<SourceRecord>> {
        let readable = self.readable();
        let now = Instant::now();
        let due: Vec<usize> = readable
            .iter()
            .copied()
            .filter(|&i| self.shards[i].next_read <= now)
            .collect();
        if due.is_empty() {
            let wake = readable
                .iter()
                .map(|&i| self.shards[i].next_read)
                .min()
                .map_or(now + MAX_POLL_WAIT, |t| t.min(now + MAX_POLL_WAIT));
            tokio::time::sleep_until(wake).await;
            return Ok(Vec::new());
        }
        for &i in &due {
            if self.shards[i].iterator.is_none() {
                self.open(i).await?;
            }
        }
        let reads = join_all(due.iter().map(|&i| {
            let (stream, limit) = (&self.stream, self.config.record_limit);
            let iterator = self.shards[i].iterator.clone();
            async move { read(stream, iterator, limit).await }
        }))
        .await;
        let mut out = Vec::new();
        let mut retriable = None;
        let mut any_ok = false;
        for (&i, read) in due.iter().zip(reads) {
            let now = Instant::now();
            match read {
                Read::Records(page) => {
                    any_ok = true;
                    self.take(i, page, &mut out).await?;
                }
                Read::Expired => self.shards[i].iterator = None,
                Read::Throttled => {
                    any_ok = true;
                    self.shards[i].next_read = now + self.config.throughput_backoff;
                }
                Read::Retriable(e) => {
                    tracing::warn!(shard = %self.shards[i].id, "GetRecords failed, retrying: {}", e.message());
                    let s = &mut self.shards[i];
                    s.next_read = now + self.config.empty_backoff.min(MAX_POLL_WAIT);
                    // A fresh iterator from the last record read, in case this one went bad
                    // (never for a LATEST shard with nothing read: it would skip records).
                    if s.last.is_some() {
                        s.iterator = None;
                    }
                    retriable = Some(e);
                }
                Read::Failed(e) => return Err(e),
            }
        }
        match retriable {
            // Every shard read failed: let the runtime log it and back off.
            Some(e) if !any_ok && out.is_empty() => Err(e),
            _ => Ok(out),
        }
    }

    /// Gets a shard's iterator: after its stored offset, else from its start position.
    async fn open(&mut self, i: usize) -> ConnectResult<()> {
        let parents_read = {
            let s = &self.shards[i];
            s.parents.iter().any(|p| {
                self.shards
                    .iter()
                    .any(|other| &other.id == p && other.read_any)
            })
        };
        let s = &self.shards[i];
        let request = self
            .stream
            .client
            .get_shard_iterator()
            .stream_name(&self.stream.name)
            .shard_id(&s.id);
        let request = match (&s.last, self.config.position) {
            (Some(seq), _) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq),
            _ if s.new || parents_read => {
                request.shard_iterator_type(ShardIteratorType::TrimHorizon)
            }
            (None, StartPosition::TrimHorizon) => {
                request.shard_iterator_type(ShardIteratorType::TrimHorizon)
            }
            (None, StartPosition::Latest) => request.shard_iterator_type(ShardIteratorType::Latest),
            (None, StartPosition::AtTimestamp(ms)) => request
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(DateTime::from_millis(ms)),
        };
        match request.send().await {
            Ok(answer) => {
                let s = &mut self.shards[i];
                s.iterator = answer.shard_iterator().map(str::to_owned);
                if s.iterator.is_none() {
                    s.done = true;
                }
                Ok(())
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                // Past retention: nothing left to read.
                tracing::info!(shard = %self.shards[i].id, "the shard no longer exists; done with it");
                self.shards[i].done = true;
                Ok(())
            }
            Err(e) => Err(self.stream.error("GetShardIterator", e)),
        }
    }

    /// Turns a page of records into source records and moves the shard on.
    async fn take(
        &mut self,
        i: usize,
        page: GetRecordsOutput,
        out: &mut Vec<SourceRecord>,
    ) -> ConnectResult<()> {
        let now = Instant::now();
        let id = self.shards[i].id.clone();
        if let Some(behind) = page.millis_behind_latest() {
            self.ctx
                .gauge(&format!("kinesis.millis.behind.latest.{id}"), behind);
        }
        let count = page.records().len();
        for record in page.records() {
            let seq = record.sequence_number().to_owned();
            let offset = ShardOffset {
                sequence_number: seq.clone(),
            };
            let mut headers = Headers::new();
            let arrival = record
                .approximate_arrival_timestamp()
                .and_then(|t| t.to_millis().ok());
            let data = record.data().as_ref();
            let restored = match self.config.format {
                RecordFormat::Value => Ok(Record {
                    topic: self.config.topic.clone().unwrap_or_default(),
                    key: Value::Bytes(record.partition_key().as_bytes().to_vec()),
                    value: Value::Bytes(data.to_vec()),
                    timestamp: arrival,
                    ..Record::default()
                }),
                RecordFormat::Envelope => envelope::decode(data).map(|e| {
                    headers = e.headers;
                    if e.diverted_by.is_some() {
                        // Diverted by a task's overflow: marked, as the task's own replay does.
                        let from = format!("{}/{id}/{seq}", self.stream.name);
                        headers.add_str(overflow::REPLAYED_HEADER, &from);
                    }
                    let (topic, partition) = match &self.config.topic {
                        Some(topic) => (topic.clone(), None),
                        None => (e.topic, e.partition),
                    };
                    Record {
                        topic,
                        partition,
                        key: e.key.map_or(Value::Null, Value::Bytes),
                        value: e.value.map_or(Value::Null, Value::Bytes),
                        timestamp: e.timestamp.or(arrival),
                        ..Record::default()
                    }
                }),
            };
            headers.add_str(SHARD_HEADER, &id);
            headers.add_str(SEQUENCE_HEADER, &seq);
            match restored {
                Ok(mut restored) => {
                    restored.headers = headers;
                    out.push(SourceRecord::new(
                        restored,
                        &self.shards[i].partition,
                        &offset,
                    )?);
                }
                Err(why) => {
                    let raw = Record {
                        topic: self.config.topic.clone().unwrap_or_default(),
                        key: Value::Bytes(record.partition_key().as_bytes().to_vec()),
                        value: Value::Bytes(data.to_vec()),
                        headers,
                        timestamp: arrival,
                        ..Record::default()
                    };
                    let raw = SourceRecord::new(raw, &self.shards[i].partition, &offset)?;
                    let error = ConnectError::user(format!(
                        "the record {seq} of shard {id} of {} is not an envelope: {why}",
                        self.stream.describe()
                    ));
                    self.ctx.report(&raw, error).await?;
                }
            }
            self.shards[i].last = Some(seq);
            self.shards[i].read_any = true;
        }
        let s = &mut self.shards[i];
        s.iterator = page.next_shard_iterator().map(str::to_owned);
        if s.iterator.is_none() {
            tracing::info!(shard = %id, "the shard is closed and read to its end");
            s.done = true;
        }
        let caught_up = page.millis_behind_latest() == Some(0);
        s.next_read = if count == 0 && caught_up {
            now + self.config.empty_backoff
        } else {
            now + MIN_READ_INTERVAL
        };
        Ok(())
    }
}

async fn read(stream: &Stream, iterator: Option<String>, limit: i32) -> Read {
    let Some(iterator) = iterator else {
        return Read::Expired;
    };
    match stream
        .client
        .get_records()
        .shard_iterator(iterator)
        .limit(limit)
        .send()
        .await
    {
        Ok(page) => Read::Records(page),
        Err(e) => match e.as_service_error() {
            Some(s) if s.is_expired_iterator_exception() => Read::Expired,
            Some(s) if s.is_provisioned_throughput_exceeded_exception() => Read::Throttled,
            _ => {
                let error = stream.error("GetRecords", e);
                if error.is_retriable() {
                    Read::Retriable(error)
                } else {
                    Read::Failed(error)
                }
            }
        },
    }
}
