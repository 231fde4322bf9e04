//! One task's error policy: what happens to a record that fails at some stage.
//!
//! Guarantees:
//! - A retriable failure of a stage is retried, with exponential back-off and jitter capped at
//!   `errors.retry.delay.max.ms`, until `errors.retry.timeout` has passed; a failure that is not
//!   retriable goes to the policy at once.
//! - With `errors.tolerance=none` the first failed record fails the task, and the trace names the
//!   record (topic, partition and offset, or the source partition and offset) and the stage.
//! - With `errors.tolerance=all` a failed record is skipped only after it is safely elsewhere:
//!   [`ErrorHandler::handle`] returns once the dead-letter queue (when configured) has
//!   acknowledged the record, so the caller may then count its offset as done. A record that cannot
//!   be dead-lettered fails the task instead: nothing is dropped silently.
//! - The dead-letter record keeps the original key, value, headers and timestamp byte for byte and
//!   adds Kafka Connect's `__connect.errors.*` headers when
//!   `errors.deadletterqueue.context.headers.enable` is set.
//! - Every failure, retry, dead letter and skip is counted in the task's metrics, and the last
//!   error is kept for its status.
//! - The circuit breaker ([`breaker`]) fails the task once too many of its recent records failed.

pub mod breaker;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sluice_connector_api::backoff::Backoff;
use sluice_connector_api::dead_letter::{self, Stage};
use sluice_connector_api::{
    ConnectError, Headers, ProducerRecord, SourceOffset, SourcePartition, TaskId,
};
use sluice_rest_api::model::LastError;
use tokio::sync::OnceCell;

use crate::kafka::{KafkaClients, Producer, TopicSpec, future_record};
use crate::metrics::TaskMetrics;
use breaker::{Breaker, BreakerSettings};

/// The first retry waits about this long; each next one twice as long.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(300);

/// A connector's error settings (Kafka Connect's `errors.*` keys, plus the circuit breaker).
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorPolicy {
    /// `errors.tolerance=all`: failed records are skipped (and dead-lettered) instead of failing
    /// the task.
    pub tolerate_all: bool,
    /// `errors.retry.timeout`: how long a retriable failure is retried; `None` retries forever.
    pub retry_timeout: Option<Duration>,
    /// `errors.retry.delay.max.ms`: the longest wait between two retries.
    pub retry_delay_max: Duration,
    /// `errors.log.enable`: log each failed record.
    pub log_errors: bool,
    /// `errors.log.include.messages`: name the record in those logs.
    pub log_include_messages: bool,
    /// Where failed records go, if anywhere.
    pub dead_letter: Option<DeadLetterSettings>,
    /// When to give up on the connector altogether.
    pub breaker: Option<BreakerSettings>,
}

impl Default for ErrorPolicy {
    fn default() -> Self {
        Self {
            tolerate_all: false,
            retry_timeout: Some(Duration::ZERO),
            retry_delay_max: Duration::from_secs(60),
            log_errors: false,
            log_include_messages: false,
            dead_letter: None,
            breaker: None,
        }
    }
}

/// The dead-letter queue of a connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterSettings {
    /// `errors.deadletterqueue.topic.name`.
    pub topic: String,
    /// `errors.deadletterqueue.topic.replication.factor`, used when the topic is created.
    pub replication_factor: i32,
    /// `errors.deadletterqueue.context.headers.enable`.
    pub context_headers: bool,
}

/// Where a failed record came from.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// A record consumed from Kafka (sinks).
    Kafka {
        /// Its topic.
        topic: &'a str,
        /// Its partition.
        partition: i32,
        /// Its offset.
        offset: i64,
    },
    /// A record a source task polled, bound for `topic`.
    Source {
        /// Its destination topic.
        topic: &'a str,
        /// Its source partition.
        partition: &'a SourcePartition,
        /// Its source offset.
        offset: &'a SourceOffset,
    },
}

impl fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Kafka {
                topic,
                partition,
                offset,
            } => write!(f, "topic {topic}, partition {partition}, offset {offset}"),
            Origin::Source {
                topic,
                partition,
                offset,
            } => write!(
                f,
                "topic {topic}, source partition {}, source offset {}",
                serde_json::Value::Object((*partition).clone()),
                serde_json::Value::Object((*offset).clone())
            ),
        }
    }
}

/// A record's bytes as they are dead-lettered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Original {
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: Headers,
    /// Timestamp, milliseconds since the epoch.
    pub timestamp: Option<i64>,
}

impl Original {
    /// The bytes of a record read from Kafka.
    pub fn of(message: &impl rdkafka::message::Message) -> Self {
        Self {
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers: crate::kafka::headers_of(message),
            timestamp: message.timestamp().to_millis(),
        }
    }

    /// The bytes of a record about to be produced.
    pub fn produced(record: ProducerRecord) -> Self {
        Self {
            key: record.key,
            value: record.value,
            headers: record.headers,
            timestamp: record.timestamp,
        }
    }
}

/// A stage's failure: which stage, the class that ran it, and the error.
#[derive(Debug)]
pub struct StageError {
    /// The stage.
    pub stage: Stage,
    /// The converter, transform or connector class of that stage.
    pub class: String,
    /// What went wrong.
    pub error: ConnectError,
}

/// One record that failed for good.
pub struct Failure<'a> {
    /// Where it failed.
    pub failed: StageError,
    /// Where it came from.
    pub origin: Origin<'a>,
    /// Its bytes, for the dead-letter queue.
    pub original: Original,
}

/// Applies a task's [`ErrorPolicy`]. Shared by the task loop and the task's context.
pub struct ErrorHandler {
    task: TaskId,
    policy: ErrorPolicy,
    metrics: Arc<TaskMetrics>,
    clients: KafkaClients,
    /// Created on the first dead letter, after the topic is known to exist.
    producer: OnceCell<Producer>,
    breaker: Option<parking_lot::Mutex<Breaker>>,
}

impl ErrorHandler {
    /// The handler of one task.
    pub fn new(
        task: TaskId,
        policy: ErrorPolicy,
        metrics: Arc<TaskMetrics>,
        clients: KafkaClients,
    ) -> Self {
        let breaker = policy
            .breaker
            .map(|settings| parking_lot::Mutex::new(Breaker::new(settings)));
        Self {
            task,
            policy,
            metrics,
            clients,
            producer: OnceCell::new(),
            breaker,
        }
    }

    /// The task's metrics.
    pub fn metrics(&self) -> &Arc<TaskMetrics> {
        &self.metrics
    }

    /// Whether retriable failures are retried at all.
    pub fn retries(&self) -> bool {
        self.backoff().retries_at_all()
    }

    /// The policy's back-off: from [`FIRST_RETRY_DELAY`] up to `errors.retry.delay.max.ms`, within
    /// `errors.retry.timeout`.
    pub fn backoff(&self) -> Backoff {
        Backoff::new(FIRST_RETRY_DELAY, self.policy.retry_delay_max)
            .with_budget(self.policy.retry_timeout)
    }

    /// Whether a failed record's bytes will be used (dead-lettered); when not, callers need not
    /// fetch them.
    pub fn wants_original(&self) -> bool {
        self.policy.tolerate_all && self.policy.dead_letter.is_some()
    }

    /// Runs `op` until it succeeds, fails with an error that is not retriable, or the retry budget
    /// is spent; returns its last result.
    pub async fn retry<T>(
        &self,
        mut op: impl FnMut() -> Result<T, StageError>,
    ) -> Result<T, StageError> {
        let mut retries = self.backoff().retries();
        loop {
            let error = match op() {
                Ok(v) => return Ok(v),
                Err(e) if !e.error.is_retriable() => return Err(e),
                Err(e) => e,
            };
            let Some(delay) = retries.next_delay() else {
                return Err(error);
            };
            tracing::debug!(task = %self.task, stage = %error.stage, ?delay, "retrying: {}", error.error);
            self.metrics.retried();
            tokio::time::sleep(delay).await;
        }
    }

    /// How long to wait before trying `operation` (a sink's `put`, a source's `poll`) again after
    /// a retriable error, for the `attempt`th time in a row (from 0); logs the error and counts
    /// the retry. Such retries are not bounded by `errors.retry.timeout`: as in Kafka Connect, a
    /// task whose external system is down waits for it (and shows the error in its status).
    pub fn retry_delay(&self, attempt: u32, operation: &str, error: &ConnectError) -> Duration {
        let delay = self.backoff().delay(attempt);
        tracing::warn!(task = %self.task, attempt, ?delay, "{operation} failed with a retriable error; trying again: {}", error.trace());
        self.metrics.retried();
        delay
    }

    /// Records that `n` records went through conversion and transforms (for the circuit
    /// breaker; a record a sink reports later counts once more, as failed).
    pub fn succeeded(&self, n: usize) {
        if let Some(breaker) = &self.breaker {
            breaker.lock().record(n, 0);
        }
    }

    /// Applies the policy to a record that failed for good. `Ok` means the record is dealt with
    /// (dead-lettered if configured, logged, counted) and its offset may count as done; `Err` is
    /// the error that fails the task.
    pub async fn handle(&self, failure: Failure<'_>) -> Result<(), ConnectError> {
        let Failure {
            failed,
            origin,
            original,
        } = failure;
        self.metrics.failed(LastError {
            stage: failed.stage.to_string(),
            record: origin.to_string(),
            message: failed.error.trace(),
            timestamp: sluice_connector_api::now_ms(),
        });
        if !self.policy.tolerate_all {
            let error = failed.error;
            return Err(error.context(format!(
                "Error handling record at {origin} in stage {}",
                failed.stage
            )));
        }
        if self.policy.log_errors {
            let at = if self.policy.log_include_messages {
                format!(" at {origin}")
            } else {
                String::new()
            };
            tracing::warn!(task = %self.task, stage = %failed.stage, "skipping record{at}: {}", failed.error.trace());
        }
        match &self.policy.dead_letter {
            Some(dlq) => {
                let record = self.dead_letter(dlq, &failed, origin, original);
                self.send(dlq, record).await?;
                self.metrics.dead_lettered();
            }
            None => self.metrics.skipped(),
        }
        let tripped = self.breaker.as_ref().and_then(|b| {
            let mut breaker = b.lock();
            breaker.record(0, 1);
            breaker.tripped()
        });
        match tripped {
            Some(why) => Err(ConnectError::user(format!(
                "Circuit breaker open: {why}. The last failure, at {origin} in stage {}: {}",
                failed.stage, failed.error
            ))),
            None => Ok(()),
        }
    }

    fn dead_letter(
        &self,
        dlq: &DeadLetterSettings,
        failed: &StageError,
        origin: Origin<'_>,
        original: Original,
    ) -> ProducerRecord {
        let mut headers = original.headers;
        if dlq.context_headers {
            let mut add = |key: &str, value: &str| headers.add_str(key, value);
            match origin {
                Origin::Kafka {
                    topic,
                    partition,
                    offset,
                } => {
                    add(dead_letter::TOPIC, topic);
                    add(dead_letter::PARTITION, &partition.to_string());
                    add(dead_letter::OFFSET, &offset.to_string());
                }
                Origin::Source {
                    topic,
                    partition,
                    offset,
                } => {
                    add(dead_letter::TOPIC, topic);
                    let json = |m: &serde_json::Map<_, _>| serde_json::Value::Object(m.clone());
                    add(dead_letter::SOURCE_PARTITION, &json(partition).to_string());
                    add(dead_letter::SOURCE_OFFSET, &json(offset).to_string());
                }
            }
            add(dead_letter::CONNECTOR_NAME, &self.task.connector);
            add(dead_letter::TASK_ID, &self.task.task.to_string());
            add(dead_letter::STAGE, failed.stage.as_str());
            add(dead_letter::CLASS_NAME, &failed.class);
            add(
                dead_letter::EXCEPTION_CLASS_NAME,
                dead_letter::exception_class(&failed.error),
            );
            add(dead_letter::EXCEPTION_MESSAGE, &failed.error.to_string());
            add(dead_letter::EXCEPTION_STACKTRACE, &failed.error.trace());
        }
        ProducerRecord {
            topic: dlq.topic.clone(),
            partition: None,
            key: original.key,
            value: original.value,
            headers,
            timestamp: original.timestamp,
        }
    }

    async fn send(
        &self,
        dlq: &DeadLetterSettings,
        record: ProducerRecord,
    ) -> Result<(), ConnectError> {
        let producer = self
            .producer
            .get_or_try_init(|| async {
                let spec = TopicSpec {
                    name: &dlq.topic,
                    partitions: 1,
                    replication_factor: dlq.replication_factor,
                    compacted: false,
                };
                self.clients.ensure_topic(spec).await?;
                let client_id = format!("connector-dlq-producer-{}", self.task);
                self.clients.producer(&[("client.id", client_id.as_str())])
            })
            .await
            .map_err(|e| {
                ConnectError::retriable(format!(
                    "preparing the dead letter queue {} failed: {e}",
                    dlq.topic
                ))
            })?;
        producer
            .send(future_record(&record), Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|e| {
                ConnectError::retriable(format!(
                    "writing to the dead letter queue {} failed: {e}",
                    dlq.topic
                ))
            })
    }
}

#[cfg(test)]
mod tests;
