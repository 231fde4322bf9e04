//! Dead-letter records: the stages a record can fail in, and the headers that say where and why.
//!
//! Header names and values are Kafka Connect's (`DeadLetterQueueReporter`), so tools written for
//! Kafka Connect's dead-letter queues read Sluice's unchanged. Every value is a UTF-8 string.
//! Sluice adds the source-side headers ([`SOURCE_PARTITION`], [`SOURCE_OFFSET`]) for records that
//! failed before reaching Kafka, and [`ATTEMPTS`], which the DLQ router increments each time it
//! sends a record back to its topic.

use std::fmt;

use crate::{ConnectError, Fault};

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
/// How many times the DLQ router has sent this record back to its topic (absent: never).
pub const ATTEMPTS: &str = "__sluice.retry.attempts";

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exception_classes_follow_the_error_classification() {
        assert!(exception_class(&ConnectError::user("bad")).ends_with("DataException"));
        assert!(exception_class(&ConnectError::retriable("later")).ends_with("RetriableException"));
        assert!(exception_class(&ConnectError::external("denied")).ends_with(".ConnectException"));
        assert_eq!(Stage::ValueConverter.to_string(), "VALUE_CONVERTER");
    }
}
