//! Producing known records straight to the broker (keys, partitions, timestamps chosen by the test).

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord};

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
}

impl Produce {
    /// A JSON value to `partition`.
    pub fn json(partition: i32, value: &serde_json::Value) -> Self {
        Self {
            partition,
            key: None,
            value: Some(value.to_string().into_bytes()),
            timestamp: None,
        }
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
