//! Redrive: an operator sends a range of a dead-letter (or parking-lot) topic back to the topics
//! its records came from, once the cause is fixed.
//!
//! Each record goes to the topic its `__connect.errors.topic` header names, with its key, value and
//! timestamp unchanged, its `__connect.errors.*` and `__sluice.*` headers removed (they described
//! the failure just fixed) and `__sluice.retry.attempts` incremented
//! ([`dead_letter::back_to_origin`]); a record without that header is left in place and listed.
//! The call returns once Kafka acknowledged every record it redrove. Redriving the same range
//! twice sends its records twice: the dead-letter topic itself is not changed.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::{Message, OwnedMessage};
use sluice_connector_api::ProducerRecord;
use sluice_connector_api::dead_letter;
use sluice_rest_api::model::{RedriveRequest, RedriveResult, RedriveSkip};

use crate::kafka::{KafkaClients, Producer, Reader, future_record, headers_of};

/// How long one read from Kafka may take.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Records read (and held in memory) at a time.
const CHUNK: i64 = 5_000;

/// Why a redrive could not run.
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    /// The topic does not exist.
    #[error("{0}")]
    NoTopic(String),
    /// Kafka failed; the answer says how far it got.
    #[error("{0}")]
    Kafka(String),
}

/// Redrives the records of `topic` that `request` selects.
pub async fn redrive(
    clients: &KafkaClients,
    producer: &Producer,
    topic: &str,
    request: &RedriveRequest,
) -> Result<RedriveResult, RedriveError> {
    let reader = {
        let clients = clients.clone();
        blocking(move || Reader::new(&clients).map_err(|e| e.to_string()))
            .await
            .map_err(RedriveError::Kafka)?
    };
    let reader = Arc::new(reader);
    let partitions = {
        let (reader, topic) = (Arc::clone(&reader), topic.to_owned());
        blocking(move || reader.partitions(&topic, READ_TIMEOUT))
            .await
            .map_err(RedriveError::NoTopic)?
    };
    let mut result = RedriveResult::default();
    for partition in partitions
        .into_iter()
        .filter(|p| request.partition.is_none_or(|only| only == *p))
    {
        let (from, until) = {
            let (reader, topic, r) = (Arc::clone(&reader), topic.to_owned(), request.clone());
            blocking(move || bounds(&reader, &topic, partition, &r))
                .await
                .map_err(RedriveError::Kafka)?
        };
        let mut next = from;
        while next < until {
            let end = until.min(next + CHUNK);
            let records = {
                let (reader, topic) = (Arc::clone(&reader), topic.to_owned());
                blocking(move || {
                    let mut records = Vec::new();
                    reader
                        .scan(&topic, partition, next, end, READ_TIMEOUT, |m| {
                            records.push(m)
                        })
                        .map(|_| records)
                })
                .await
                .map_err(RedriveError::Kafka)?
            };
            send_back(producer, records, &mut result).await?;
            next = end;
        }
    }
    Ok(result)
}

/// The offsets `[from, until)` of one partition that the request selects.
fn bounds(
    reader: &Reader,
    topic: &str,
    partition: i32,
    request: &RedriveRequest,
) -> Result<(i64, i64), String> {
    let (low, high) = reader.watermarks(topic, partition, READ_TIMEOUT)?;
    let mut from = request.from_offset.unwrap_or(low).max(low);
    let mut until = request.to_offset.unwrap_or(high).min(high);
    if let Some(ts) = request.from_timestamp {
        from = from.max(reader.offset_for_time(topic, partition, ts, READ_TIMEOUT)?);
    }
    if let Some(ts) = request.to_timestamp {
        until = until.min(reader.offset_for_time(topic, partition, ts, READ_TIMEOUT)?);
    }
    Ok((from, until))
}

/// Produces each record back to its original topic and waits for every acknowledgement.
async fn send_back(
    producer: &Producer,
    records: Vec<OwnedMessage>,
    result: &mut RedriveResult,
) -> Result<(), RedriveError> {
    let mut pending = Vec::with_capacity(records.len());
    for m in &records {
        match back_to_origin(m) {
            Ok(record) => pending.push(record),
            Err(reason) => result.skipped.push(RedriveSkip {
                partition: m.partition(),
                offset: m.offset(),
                reason,
            }),
        }
    }
    let sends = pending
        .iter()
        .map(|r| producer.send(future_record(r), READ_TIMEOUT));
    for (record, delivered) in pending.iter().zip(futures::future::join_all(sends).await) {
        delivered.map_err(|e| {
            RedriveError::Kafka(format!(
                "producing to {} failed after {} records were redriven: {e}",
                record.topic, result.redriven
            ))
        })?;
        result.redriven += 1;
    }
    Ok(())
}

/// The record to produce for a dead letter, or why there is none.
fn back_to_origin(m: &OwnedMessage) -> Result<ProducerRecord, String> {
    dead_letter::back_to_origin(
        m.key().map(<[u8]>::to_vec),
        m.payload().map(<[u8]>::to_vec),
        headers_of(m),
        m.timestamp().to_millis(),
    )
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("a blocking read failed: {e}"))?
}
