//! Kafka clients for the worker and its tasks.
//!
//! Every client gets the worker's pass-through settings (TLS, SASL, `producer.*`, ...). Producers
//! are idempotent with `acks=all` and partition keys with murmur2, like the Java client, so that keys
//! land in the partitions Kafka Connect would have chosen.

mod log;
mod producer;
mod reader;

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{Header, Headers as _, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;
use sluice_connector_api::{Headers, ProducerRecord, Props};

pub use log::{KafkaLog, LogRecord};
pub use producer::{Delivered, DeliveryFuture, Producer, Undelivered, acknowledged};
pub use reader::Reader;

use crate::error::WorkerError;

/// Every consumer commits only what the runtime decides, and reads a new partition from its start.
const CONSUMER_DEFAULTS: [(&str, &str); 3] = [
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    ("auto.offset.reset", "earliest"),
];

/// A Kafka message's headers, copied, in order.
pub fn headers_of(message: &impl Message) -> Headers {
    let mut headers = Headers::new();
    if let Some(hs) = message.headers() {
        for h in hs.iter() {
            headers.add(h.key, h.value.map(<[u8]>::to_vec));
        }
    }
    headers
}

/// The rdkafka record for a [`ProducerRecord`], borrowing its bytes.
pub fn future_record(record: &ProducerRecord) -> FutureRecord<'_, [u8], [u8]> {
    let headers = record.headers.iter().fold(
        OwnedHeaders::new_with_capacity(record.headers.len()),
        |h, header| {
            h.insert(Header {
                key: &header.key,
                value: header.value.as_deref(),
            })
        },
    );
    let mut fr = FutureRecord::<[u8], [u8]>::to(&record.topic).headers(headers);
    if let Some(k) = record.key.as_deref() {
        fr = fr.key(k);
    }
    if let Some(v) = record.value.as_deref() {
        fr = fr.payload(v);
    }
    if let Some(p) = record.partition {
        fr = fr.partition(p);
    }
    if let Some(ts) = record.timestamp {
        fr = fr.timestamp(ts);
    }
    fr
}

/// How long metadata and admin calls may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds Kafka clients with the worker's settings.
#[derive(Clone, Debug)]
pub struct KafkaClients {
    bootstrap: String,
    producer_overrides: Props,
    consumer_overrides: Props,
    admin_overrides: Props,
}

/// A topic to create if absent.
#[derive(Clone, Debug)]
pub struct TopicSpec<'a> {
    /// Name.
    pub name: &'a str,
    /// Partitions.
    pub partitions: i32,
    /// Replication factor; -1 for the broker default.
    pub replication_factor: i32,
    /// Whether `cleanup.policy=compact`.
    pub compacted: bool,
}

impl KafkaClients {
    /// Clients for `bootstrap`, with per-kind overrides.
    pub fn new(bootstrap: &str, overrides: impl Fn(&str) -> Props) -> Self {
        Self {
            bootstrap: bootstrap.to_owned(),
            producer_overrides: overrides("producer"),
            consumer_overrides: overrides("consumer"),
            admin_overrides: overrides("admin"),
        }
    }

    /// The bootstrap servers.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    fn base(&self, overrides: &Props, extra: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        config.set("log_level", "4");
        for (k, v) in extra {
            config.set(*k, *v);
        }
        for (k, v) in overrides {
            config.set(k, v);
        }
        config
    }

    /// An idempotent, `acks=all` producer; `extra` settings come before the user's overrides.
    pub fn producer(&self, extra: &[(&str, &str)]) -> Result<Producer, WorkerError> {
        let mut settings = vec![
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("partitioner", "murmur2_random"),
            ("linger.ms", "5"),
        ];
        settings.extend_from_slice(extra);
        Producer::create(&self.base(&self.producer_overrides, &settings))
            .map_err(WorkerError::kafka("creating a producer"))
    }

    /// A consumer with `enable.auto.commit=false`; `extra` settings come before the user's overrides.
    pub fn consumer<C: ConsumerContext + 'static>(
        &self,
        extra: &[(&str, &str)],
        context: C,
    ) -> Result<StreamConsumer<C>, WorkerError> {
        let mut settings = CONSUMER_DEFAULTS.to_vec();
        settings.extend_from_slice(extra);
        self.base(&self.consumer_overrides, &settings)
            .create_with_context(context)
            .map_err(WorkerError::kafka("creating a consumer"))
    }

    /// A consumer that reads records by position (`assign` and seek, no group, no commits), for
    /// fetching one dead-letter's original bytes or redriving a range of a topic.
    pub fn reader(&self) -> Result<BaseConsumer, WorkerError> {
        let mut settings = CONSUMER_DEFAULTS.to_vec();
        settings.push(("group.id", "sluice-reader"));
        self.base(&self.consumer_overrides, &settings)
            .create()
            .map_err(WorkerError::kafka("creating a consumer"))
    }

    fn admin(&self) -> Result<AdminClient<DefaultClientContext>, WorkerError> {
        self.base(&self.admin_overrides, &[])
            .create()
            .map_err(WorkerError::kafka("creating an admin client"))
    }

    /// Checks that a broker answers, failing with one clear line if none does.
    pub async fn check_reachable(&self, timeout: Duration) -> Result<(), WorkerError> {
        let config = self.base(&self.admin_overrides, &[]);
        let bootstrap = self.bootstrap.clone();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = config
                .create()
                .map_err(WorkerError::kafka("creating a client"))?;
            consumer
                .fetch_metadata(None, timeout)
                .map(|_| ())
                .map_err(|e| WorkerError::Unreachable {
                    bootstrap,
                    reason: e.to_string(),
                })
        })
        .await
        .map_err(|e| WorkerError::Broker(e.to_string()))?
    }

    /// The Kafka cluster id, if the broker reports one.
    pub async fn cluster_id(&self) -> Option<String> {
        let config = self.base(&self.admin_overrides, &[]);
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = config.create().ok()?;
            consumer.client().fetch_cluster_id(ADMIN_TIMEOUT)
        })
        .await
        .ok()
        .flatten()
    }

    /// Offsets committed by consumer `group` for every partition of `topics`, as
    /// (topic, partition, offset); partitions without a commit are left out.
    pub async fn committed_offsets(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Vec<(String, i32, i64)>, WorkerError> {
        let mut tpl = rdkafka::TopicPartitionList::new();
        for topic in topics {
            if let Some(n) = self.partition_count(topic).await? {
                for p in 0..n {
                    tpl.add_partition(topic, p);
                }
            }
        }
        let config = self.base(
            &self.consumer_overrides,
            &[("group.id", group), ("enable.auto.commit", "false")],
        );
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = config
                .create()
                .map_err(WorkerError::kafka("creating a client"))?;
            let committed = consumer
                .committed_offsets(tpl, ADMIN_TIMEOUT)
                .map_err(WorkerError::kafka("reading committed offsets"))?;
            Ok(committed
                .elements()
                .iter()
                .filter_map(|e| {
                    e.offset()
                        .to_raw()
                        .filter(|o| *o >= 0)
                        .map(|o| (e.topic().to_owned(), e.partition(), o))
                })
                .collect())
        })
        .await
        .map_err(|e| WorkerError::Broker(e.to_string()))?
    }

    /// Number of partitions of `topic`, or `None` if it does not exist.
    pub async fn partition_count(&self, topic: &str) -> Result<Option<i32>, WorkerError> {
        let config = self.base(&self.admin_overrides, &[]);
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = config
                .create()
                .map_err(WorkerError::kafka("creating a client"))?;
            let metadata = consumer
                .fetch_metadata(Some(&topic), ADMIN_TIMEOUT)
                .map_err(WorkerError::kafka(format!("reading metadata of {topic}")))?;
            Ok(metadata
                .topics()
                .first()
                .filter(|t| t.error().is_none() && !t.partitions().is_empty())
                .map(|t| t.partitions().len() as i32))
        })
        .await
        .map_err(|e| WorkerError::Broker(e.to_string()))?
    }

    /// Creates the topic if it does not exist; returns its partition count.
    pub async fn ensure_topic(&self, spec: TopicSpec<'_>) -> Result<i32, WorkerError> {
        if let Some(n) = self.partition_count(spec.name).await? {
            return Ok(n);
        }
        let admin = self.admin()?;
        let replication = TopicReplication::Fixed(spec.replication_factor);
        let mut topic = NewTopic::new(spec.name, spec.partitions, replication);
        if spec.compacted {
            topic = topic.set("cleanup.policy", "compact");
        }
        let results = admin
            .create_topics(
                [&topic],
                &AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT)),
            )
            .await
            .map_err(WorkerError::kafka(format!("creating topic {}", spec.name)))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(WorkerError::Topic(format!(
                        "cannot create topic {name}: {code}"
                    )));
                }
            }
        }
        let deadline = tokio::time::Instant::now() + ADMIN_TIMEOUT;
        loop {
            if let Some(n) = self.partition_count(spec.name).await? {
                return Ok(n);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(WorkerError::Topic(format!(
                    "topic {} was created but does not appear in metadata",
                    spec.name
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
