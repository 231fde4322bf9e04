//! Producing known records straight to the broker (keys, partitions, timestamps chosen by the test).

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, Headers as _, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

/// One record to produce.
#[derive(Debug, Clone)]
pub struct Produce {
    /// Partition.
    pub partition: i32,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Option<Vec<u8>>,
    /// Timestamp (ms).
    pub timestamp: Option<i64>,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Produce {
    /// A JSON value to `partition`.
    pub fn json(partition: i32, value: &serde_json::Value) -> Self {
        Self {
            partition,
            key: None,
            value: Some(value.to_string().into_bytes()),
            timestamp: None,
            headers: Vec::new(),
        }
    }

    /// Raw value bytes to `partition`.
    pub fn bytes(partition: i32, value: &[u8]) -> Self {
        Self {
            partition,
            key: None,
            value: Some(value.to_vec()),
            timestamp: None,
            headers: Vec::new(),
        }
    }

    /// With a key.
    pub fn key(mut self, key: &[u8]) -> Self {
        self.key = Some(key.to_vec());
        self
    }

    /// With a header.
    pub fn header(mut self, key: &str, value: &[u8]) -> Self {
        self.headers.push((key.to_owned(), value.to_vec()));
        self
    }

    /// With a timestamp.
    pub fn at(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }
}

/// Creates a topic.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create topics");
    for r in results {
        r.expect("topic created");
    }
}

/// Produces records in order and waits for every acknowledgement.
pub async fn produce(bootstrap: &str, topic: &str, records: &[Produce]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    // `send_result` enqueues at once (`send` is lazy and would send one record at a time).
    let mut pending = std::collections::VecDeque::new();
    for r in records {
        loop {
            let mut rec = FutureRecord::<[u8], [u8]>::to(topic).partition(r.partition);
            if let Some(k) = &r.key {
                rec = rec.key(k.as_slice());
            }
            if let Some(v) = &r.value {
                rec = rec.payload(v.as_slice());
            }
            if let Some(t) = r.timestamp {
                rec = rec.timestamp(t);
            }
            if !r.headers.is_empty() {
                let headers = r.headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
                    h.insert(Header {
                        key: k,
                        value: Some(v.as_slice()),
                    })
                });
                rec = rec.headers(headers);
            }
            match producer.send_result(rec) {
                Ok(delivery) => {
                    pending.push_back(delivery);
                    break;
                }
                Err((e, _)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    let oldest = pending.pop_front().expect("a full queue holds records");
                    oldest.await.expect("delivery").expect("produced");
                }
                Err((e, _)) => panic!("producing failed: {e}"),
            }
        }
    }
    for p in pending {
        p.await.expect("delivery").expect("produced");
    }
}

/// A record read back from a topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Consumed {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Option<Vec<u8>>,
    /// Headers in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Timestamp (ms).
    pub timestamp: Option<i64>,
}

impl Consumed {
    /// The last value of header `key` as a string.
    pub fn header(&self, key: &str) -> Option<String> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// The value as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(self.value.as_deref().unwrap_or(b"null")).expect("a JSON value")
    }
}

/// Every record of `topic` (all partitions, from the start) once there are at least `at_least`,
/// polling until `timeout`; panics if fewer arrive. A topic that does not exist yet counts as
/// empty.
pub async fn consume_all(
    bootstrap: &str,
    topic: &str,
    at_least: usize,
    timeout: Duration,
) -> Vec<Consumed> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let records = read_topic(&bootstrap, &topic);
            if records.len() >= at_least {
                return records;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{topic} holds {} records after {timeout:?}, expected at least {at_least}",
                records.len()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .await
    .expect("reading a topic")
}

/// Every record now in `topic`, in (partition, offset) order.
pub fn read_topic(bootstrap: &str, topic: &str) -> Vec<Consumed> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "sluice-tests-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)) else {
        return Vec::new();
    };
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0;
    for p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, *p, Duration::from_secs(10))
            .unwrap_or((0, 0));
        if high > low {
            remaining += high - low;
            tpl.add_partition_offset(topic, *p, Offset::Offset(low))
                .expect("partition");
        }
    }
    let mut out = Vec::new();
    if remaining == 0 {
        return out;
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while (out.len() as i64) < remaining && std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => out.push(Consumed {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers: m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default(),
                timestamp: m.timestamp().to_millis(),
            }),
            Some(Err(e)) => panic!("reading {topic} failed: {e}"),
            None => {}
        }
    }
    out.sort_by_key(|c| (c.partition, c.offset));
    out
}
