//! The Kinesis source against a real Kinesis emulator (kinesalite) and a real broker, and the
//! round trip Kafka → Kinesis sink → stream → Kinesis source → Kafka.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_tests::kafka::{Consumed, Produce, consume_all, create_topic, produce};
use sluice_tests::kinesis::{KinesisEmulator, counts};
use sluice_tests::{Broker, Value, Worker, WorkerSettings, eventually, json, unique};

fn source_config(endpoint: &str, stream: &str, extra: Value) -> Value {
    let mut c = json!({
        "connector.class": "KinesisSource",
        "tasks.max": "2",
        "kinesis.stream": stream,
        "kinesis.region": "us-east-1",
        "kinesis.endpoint": endpoint,
        "aws.access.key.id": "test",
        "aws.secret.access.key": "test",
        "kinesis.empty.records.backoff.ms": "200",
        "kinesis.shard.discovery.interval.ms": "1000",
    });
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    c
}

/// Per key, the values' counters must rise once duplicates are left out.
fn assert_key_order(records: &[Consumed]) {
    let mut by_key: BTreeMap<Vec<u8>, Vec<i64>> = BTreeMap::new();
    for r in records {
        let n = r.json()["n"].as_i64().expect("n");
        by_key
            .entry(r.key.clone().unwrap_or_default())
            .or_default()
            .push(n);
    }
    for (key, ns) in by_key {
        let mut seen = std::collections::BTreeSet::new();
        let firsts: Vec<i64> = ns.into_iter().filter(|n| seen.insert(*n)).collect();
        assert!(
            firsts.windows(2).all(|w| w[0] < w[1]),
            "key {:?} out of order: {firsts:?}",
            String::from_utf8_lossy(&key)
        );
    }
}

fn puts(from: usize, to: usize, keys: usize) -> Vec<(String, Vec<u8>)> {
    (from..to)
        .map(|n| {
            let k = format!("k{}", n % keys);
            (k, json!({"n": n}).to_string().into_bytes())
        })
        .collect()
}

#[tokio::test]
async fn every_shard_arrives_and_a_sigkilled_worker_resumes_from_the_stored_sequence_numbers() {
    let broker = Broker::start();
    let kinesis = KinesisEmulator::start().await;
    let (stream, topic) = (unique("events"), unique("raw-data"));
    kinesis.create_stream(&stream, 4).await;
    kinesis.put_many(&stream, &puts(0, 2_000, 100)).await;
    let mut worker = Worker::start(WorkerSettings::new(&broker)).await;
    let name = unique("kinesis-source");
    worker
        .create(
            &name,
            source_config(&kinesis.endpoint, &stream, json!({"kafka.topic": topic})),
        )
        .await;
    let first = consume_all(&broker.bootstrap, &topic, 2_000, Duration::from_secs(60)).await;
    assert_eq!(first.len(), 2_000);
    let r = &first[0];
    assert!(
        r.header("kinesis.shard.id")
            .unwrap()
            .starts_with("shardId-")
    );
    assert!(r.header("kinesis.sequence.number").is_some());
    assert!(
        r.key.as_deref().unwrap().starts_with(b"k"),
        "the partition key is the key"
    );
    // MillisBehindLatest per shard, in the task status.
    let shards_reported = eventually("lag gauges in status", Duration::from_secs(30), || async {
        let s = worker.get(&format!("/connectors/{name}/status")).await.body;
        let gauges: Vec<String> = s["tasks"]
            .as_array()?
            .iter()
            .filter_map(|t| t["errors"]["gauges"].as_object())
            .flat_map(|g| g.keys().cloned())
            .filter(|k| k.starts_with("kinesis.millis.behind.latest.shardId-"))
            .collect();
        (gauges.len() == 4).then_some(gauges)
    })
    .await;
    assert_eq!(shards_reported.len(), 4);
    // Once every shard's sequence number is stored, kill it.
    eventually("an offset per shard", Duration::from_secs(30), || async {
        let offsets = worker
            .get(&format!("/connectors/{name}/offsets"))
            .await
            .body;
        let stored = offsets["offsets"].as_array().map_or(0, Vec::len);
        (stored == 4).then_some(())
    })
    .await;
    worker.kill();
    kinesis.put_many(&stream, &puts(2_000, 3_000, 100)).await;
    worker.restart().await;
    let all = consume_all(&broker.bootstrap, &topic, 3_000, Duration::from_secs(60)).await;
    let ns = counts(all.iter().map(|r| r.json()["n"].as_i64().unwrap()));
    assert_eq!(ns.len(), 3_000, "every record once at least");
    // Resumed after the stored sequence numbers: not from the start of the shards.
    let duplicates = all.len() - 3_000;
    assert!(
        duplicates < 2_000,
        "{duplicates} duplicates: read again from the start"
    );
    assert_key_order(&all);
}

#[tokio::test]
async fn a_split_during_reading_keeps_each_keys_order() {
    let broker = Broker::start();
    let kinesis = KinesisEmulator::start().await;
    let (stream, topic) = (unique("events"), unique("raw-data"));
    kinesis.create_stream(&stream, 1).await;
    kinesis.put_many(&stream, &puts(0, 500, 20)).await;
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let name = unique("kinesis-source");
    worker
        .create(
            &name,
            source_config(&kinesis.endpoint, &stream, json!({"kafka.topic": topic})),
        )
        .await;
    consume_all(&broker.bootstrap, &topic, 200, Duration::from_secs(60)).await;
    kinesis.split(&stream, "shardId-000000000000").await;
    kinesis.put_many(&stream, &puts(500, 1_000, 20)).await;
    let all = consume_all(&broker.bootstrap, &topic, 1_000, Duration::from_secs(60)).await;
    let shards = counts(all.iter().map(|r| r.header("kinesis.shard.id").unwrap()));
    assert!(
        shards.len() >= 2,
        "records from the children too: {shards:?}"
    );
    assert_key_order(&all);
}

#[tokio::test]
async fn at_timestamp_starts_where_asked() {
    let broker = Broker::start();
    let kinesis = KinesisEmulator::start().await;
    let (stream, topic) = (unique("events"), unique("raw-data"));
    kinesis.create_stream(&stream, 2).await;
    kinesis.put_many(&stream, &puts(0, 100, 10)).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let from = sluice_connector_api::now_ms();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    kinesis.put_many(&stream, &puts(100, 200, 10)).await;
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let name = unique("kinesis-source");
    let config = json!({"kafka.topic": topic, "kinesis.position": "AT_TIMESTAMP",
                        "kinesis.shard.timestamp": from.to_string()});
    worker
        .create(&name, source_config(&kinesis.endpoint, &stream, config))
        .await;
    let got = consume_all(&broker.bootstrap, &topic, 100, Duration::from_secs(60)).await;
    let ns: Vec<i64> = got
        .iter()
        .map(|r| r.json()["n"].as_i64().unwrap())
        .collect();
    assert!(
        ns.iter().all(|n| *n >= 100),
        "records from before the timestamp: {ns:?}"
    );
    assert_eq!(counts(ns).len(), 100);
}

#[tokio::test]
async fn round_trip_through_kinesis_restores_keys_values_headers_and_timestamps() {
    let broker = Broker::start();
    let kinesis = KinesisEmulator::start().await;
    let (a, b, stream) = (unique("a"), unique("b"), unique("overflow"));
    kinesis.create_stream(&stream, 2).await;
    create_topic(&broker.bootstrap, &a, 2).await;
    let records: Vec<Produce> = (0..400)
        .map(|n| {
            let k = n % 16;
            Produce::json(k % 2, &json!({"n": n}))
                .key(format!("key-{k}").as_bytes())
                .header("trace", format!("t{n}").as_bytes())
                .header("empty", b"")
                .at(1_700_000_000_000 + n as i64)
        })
        .collect();
    produce(&broker.bootstrap, &a, &records).await;
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let common = json!({"kinesis.stream": stream, "kinesis.region": "us-east-1",
        "kinesis.endpoint": kinesis.endpoint, "aws.access.key.id": "test",
        "aws.secret.access.key": "test", "kinesis.record.format": "envelope"});
    let mut sink = common.clone();
    sink.as_object_mut().unwrap().extend(
        json!({"connector.class": "KinesisSink", "topics": a, "kinesis.linger.ms": "10"})
            .as_object()
            .cloned()
            .unwrap(),
    );
    worker.create(&unique("to-kinesis"), sink).await;
    let mut source = common;
    source.as_object_mut().unwrap().extend(
        source_config(&kinesis.endpoint, &stream, json!({"kafka.topic": b}))
            .as_object()
            .cloned()
            .unwrap(),
    );
    source["kinesis.record.format"] = json!("envelope");
    worker.create(&unique("from-kinesis"), source).await;
    let got = consume_all(&broker.bootstrap, &b, 400, Duration::from_secs(90)).await;
    assert_eq!(got.len(), 400, "once each");
    for r in &got {
        let n = r.json()["n"].as_u64().unwrap() as usize;
        let original = &records[n];
        assert_eq!(r.key, original.key);
        assert_eq!(r.value, original.value);
        assert_eq!(r.timestamp, original.timestamp);
        let restored: Vec<(String, Vec<u8>)> = r
            .headers
            .iter()
            .filter(|(k, _)| !k.starts_with("kinesis."))
            .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
            .collect();
        assert_eq!(restored, original.headers, "headers of {n}");
    }
    assert_key_order(&got);
}

#[tokio::test]
async fn a_record_that_is_not_an_envelope_goes_to_the_dlq_with_shard_and_sequence() {
    let broker = Broker::start();
    let kinesis = KinesisEmulator::start().await;
    let (stream, topic, dead) = (unique("events"), unique("restored"), unique("dlq"));
    kinesis.create_stream(&stream, 1).await;
    let sequence = kinesis.put(&stream, "k", b"not an envelope").await;
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let config = json!({"kafka.topic": topic, "kinesis.record.format": "envelope",
        "errors.tolerance": "all", "errors.deadletterqueue.topic.name": dead,
        "errors.deadletterqueue.topic.replication.factor": "1",
        "errors.deadletterqueue.context.headers.enable": "true"});
    worker
        .create(
            &unique("kinesis-source"),
            source_config(&kinesis.endpoint, &stream, config),
        )
        .await;
    let got = consume_all(&broker.bootstrap, &dead, 1, Duration::from_secs(60)).await;
    assert_eq!(got[0].value.as_deref(), Some(&b"not an envelope"[..]));
    let message = got[0]
        .header("__connect.errors.exception.message")
        .unwrap_or_default();
    assert!(
        message.contains(&sequence) && message.contains("shardId-000000000000"),
        "{message}"
    );
}
