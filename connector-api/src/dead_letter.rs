//! Dead-letter records: the stages a record can fail in, and the headers that say where and why.
//!
//! Header names and values are Kafka Connect's (`DeadLetterQueueReporter`), so tools written for
//! Kafka Connect's dead-letter queues read Sluice's unchanged. Every value is a UTF-8 string.
//! Sluice adds the source-side headers ([`SOURCE_PARTITION`], [`SOURCE_OFFSET`]) for records that
//! failed before reaching Kafka, and [`ATTEMPTS`], which the DLQ router and redrive increment each
//! time they send a record back to its topic ([`back_to_origin`]).

use std::fmt;

use crate::{ConnectError, Fault, Headers, ProducerRecord};

/// Prefix of every context header.
pub const PREFIX: &str = "__connect.errors.";
/// The topic the record was read from (sinks) or meant for (sources).
pub const TOPIC: &str = "__connect.errors.topic";
/// The Kafka partition it was read from (sinks only).
pub const PARTITION: &str = "__connect.errors.partition";
/// The Kafka offset it was read from (sinks only).
pub const OFFSET: &str = "__connect.errors.offset";
/// The connector's name.
pub const CONNECTOR_NAME: &str = "__connect.errors.connector.name";
/// The task's number.
pub const TASK_ID: &str = "__connect.errors.task.id";
/// The [`Stage`] that failed.
pub const STAGE: &str = "__connect.errors.stage";
/// The class of the converter, transform or task of that stage.
pub const CLASS_NAME: &str = "__connect.errors.class.name";
/// The error's class in Kafka Connect's terms (see [`exception_class`]).
pub const EXCEPTION_CLASS_NAME: &str = "__connect.errors.exception.class.name";
/// The error's message.
pub const EXCEPTION_MESSAGE: &str = "__connect.errors.exception.message";
/// The error's trace: its message and every cause.
pub const EXCEPTION_STACKTRACE: &str = "__connect.errors.exception.stacktrace";
/// Sources: the record's source partition, as JSON.
pub const SOURCE_PARTITION: &str = "__connect.errors.source.partition";
/// Sources: the record's source offset, as JSON.
pub const SOURCE_OFFSET: &str = "__connect.errors.source.offset";
/// Prefix of the headers Sluice adds beyond Kafka Connect's.
pub const SLUICE_PREFIX: &str = "__sluice.";
/// How many times the DLQ router or a redrive has sent this record back to its topic (absent:
/// never).
pub const ATTEMPTS: &str = "__sluice.retry.attempts";
/// On a retry-tier record: when it is due, in milliseconds since the epoch.
pub const RETRY_DUE: &str = "__sluice.retry.due";
/// On a retry-tier record: the record's own timestamp. The tier record is stamped with the time it
/// was routed, so that the tier topic's retention counts from then, and gets this one back when it
/// returns to its topic.
pub const RETRY_TIMESTAMP: &str = "__sluice.retry.timestamp";
/// On a retry-tier record: the DLQ router connector that wrote it (only that one redelivers it).
pub const RETRY_ROUTER: &str = "__sluice.retry.router";
/// On retry-tier and parking-lot records: the router rule that sent the record there.
pub const ROUTER_RULE: &str = "__sluice.router.rule";
/// On a parking-lot record: why the router parked it.
pub const PARKED_REASON: &str = "__sluice.router.reason";

/// Where in the pipeline a record failed (Kafka Connect's `Stage` names, plus `TASK_PUT` for
/// records a sink reports one by one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Source task poll.
    TaskPoll,
    /// Key conversion (to or from bytes).
    KeyConverter,
    /// Value conversion.
    ValueConverter,
    /// Header conversion.
    HeaderConverter,
    /// A single message transform.
    Transformation,
    /// Producing a source record to Kafka.
    KafkaProduce,
    /// Consuming a record for a sink.
    KafkaConsume,
    /// The sink's own write of the record.
    TaskPut,
}

impl Stage {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::TaskPoll => "TASK_POLL",
            Stage::KeyConverter => "KEY_CONVERTER",
            Stage::ValueConverter => "VALUE_CONVERTER",
            Stage::HeaderConverter => "HEADER_CONVERTER",
            Stage::Transformation => "TRANSFORMATION",
            Stage::KafkaProduce => "KAFKA_PRODUCE",
            Stage::KafkaConsume => "KAFKA_CONSUME",
            Stage::TaskPut => "TASK_PUT",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Kafka Connect exception class that matches an error, for the [`EXCEPTION_CLASS_NAME`]
/// header: tools and router rules written for Kafka Connect match on these names. Bad data is a
/// `DataException`, an error that may pass when retried a `RetriableException`, anything else a
/// `ConnectException`.
pub fn exception_class(error: &ConnectError) -> &'static str {
    if error.is_retriable() {
        "org.apache.kafka.connect.errors.RetriableException"
    } else if error.fault() == Fault::User {
        "org.apache.kafka.connect.errors.DataException"
    } else {
        "org.apache.kafka.connect.errors.ConnectException"
    }
}

/// The [`ATTEMPTS`] count of a record: 0 when absent or unreadable.
pub fn attempts(headers: &Headers) -> u32 {
    headers
        .last_str(ATTEMPTS)
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or(0)
}

/// The topic a dead letter failed on (its [`TOPIC`] header), or why it cannot be sent back.
pub fn origin_topic(headers: &Headers) -> Result<&str, String> {
    headers
        .last_str(TOPIC)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            format!("no {TOPIC} header (enable errors.deadletterqueue.context.headers.enable)")
        })
}

/// The record that sends a dead letter back to the topic it failed on ([`origin_topic`]), or why
/// there is none.
///
/// Key, value and timestamp are unchanged. It goes to the partition it was read from when the
/// dead letter names one ([`PARTITION`]: sink-side failures), so a key stays in its partition
/// whatever partitioner wrote it first; source-side records are partitioned by key. Every
/// `__connect.errors.*` and `__sluice.*` header is removed (they described the failure and its
/// routing) and [`ATTEMPTS`] is set to one more than before; other headers are kept in order.
pub fn back_to_origin(
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    mut headers: Headers,
    timestamp: Option<i64>,
) -> Result<ProducerRecord, String> {
    let topic = origin_topic(&headers)?.to_owned();
    let partition = headers
        .last_str(PARTITION)
        .and_then(|p| p.trim().parse().ok());
    let attempts = attempts(&headers);
    headers.retain(|h| !h.key.starts_with(PREFIX) && !h.key.starts_with(SLUICE_PREFIX));
    headers.add_str(ATTEMPTS, &(attempts + 1).to_string());
    Ok(ProducerRecord {
        topic,
        partition,
        key,
        value,
        headers,
        timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_to_origin_strips_context_and_counts_the_attempt() {
        let mut headers = Headers::new();
        headers.add_str("trace", "t-1");
        headers.add_str(TOPIC, "orders");
        headers.add_str(PARTITION, "2");
        headers.add_str(STAGE, "TASK_PUT");
        headers.add_str(ATTEMPTS, "2");
        headers.add_str(RETRY_DUE, "123");
        let r = back_to_origin(Some(b"k".to_vec()), None, headers, Some(7)).unwrap();
        assert_eq!(
            (r.topic.as_str(), r.partition, r.timestamp),
            ("orders", Some(2), Some(7))
        );
        let keys: Vec<_> = r.headers.iter().map(|h| h.key.as_str()).collect();
        assert_eq!(keys, ["trace", ATTEMPTS]);
        assert_eq!(attempts(&r.headers), 3);
        assert!(back_to_origin(None, None, Headers::new(), None).is_err());
    }

    #[test]
    fn exception_classes_follow_the_error_classification() {
        assert!(exception_class(&ConnectError::user("bad")).ends_with("DataException"));
        assert!(exception_class(&ConnectError::retriable("later")).ends_with("RetriableException"));
        assert!(exception_class(&ConnectError::external("denied")).ends_with(".ConnectException"));
        assert_eq!(Stage::ValueConverter.to_string(), "VALUE_CONVERTER");
    }
}
