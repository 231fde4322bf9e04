//! The Kinesis sink against a real Kinesis emulator (kinesalite) and a real broker, with a
//! test proxy in front of the emulator that throttles chosen records (the emulator never does)
//! and checks Kinesis's request limits.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sluice_connectors::kinesis::envelope;
use sluice_tests::kafka::{Produce, consume_all, create_topic, produce};
use sluice_tests::kinesis::{FaultProxy, KinesisEmulator, StreamRecord, counts};
use sluice_tests::{Broker, Value, Worker, WorkerSettings, eventually, json, unique};

const BASE_TS: i64 = 1_764_547_200_000;

fn sink_config(endpoint: &str, stream: &str, topic: &str, extra: Value) -> Value {
    let mut c = json!({
        "connector.class": "KinesisSink",
        "topics": topic,
        "tasks.max": "2",
        "kinesis.stream": stream,
        "kinesis.region": "us-east-1",
        "kinesis.endpoint": endpoint,
        "aws.access.key.id": "test",
        "aws.secret.access.key": "test-secret-value",
        "kinesis.linger.ms": "20",
    });
    let extra = extra.as_object().cloned().unwrap_or_default();
    c.as_object_mut().unwrap().extend(extra);
    c
}

fn dlq(topic: &str) -> Value {
    json!({
        "errors.tolerance": "all",
        "errors.deadletterqueue.topic.name": topic,
        "errors.deadletterqueue.topic.replication.factor": "1",
        "errors.deadletterqueue.context.headers.enable": "true",
    })
}

/// Key `k` always goes to Kafka partition `k % 4`, as a keyed producer would put it.
fn keyed(i: usize, keys: usize) -> Produce {
    let k = i % keys;
    Produce::json((k % 4) as i32, &json!({"id": i, "key": k}))
        .key(format!("device-{k}").as_bytes())
        .header("n", i.to_string().as_bytes())
        .at(BASE_TS + i as i64)
}

/// Waits until the proxy has stored at least `n` records; panics with what it saw if not.
async fn wait_accepted(proxy: &FaultProxy, n: u64, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    let f = &proxy.faults;
    while f.accepted.load(Ordering::SeqCst) < n {
        assert!(
            std::time::Instant::now() < deadline,
            "after {within:?}: {} of {n} records stored, {} refused, {} calls, violations {:?}",
            f.accepted.load(Ordering::SeqCst),
            f.refused.load(Ordering::SeqCst),
            f.calls.load(Ordering::SeqCst),
            f.violations.lock()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Per partition key, the ids of its records in stream order must rise once duplicates (a
/// record seen before) are left out.
fn assert_key_order(records: &[(String, i64)]) {
    let mut last: BTreeMap<&str, i64> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for (key, id) in records {
        if !seen.insert(*id) {
            continue;
        }
        if let Some(prev) = last.insert(key, *id) {
            assert!(prev < *id, "key {key}: {id} written after {prev}");
        }
    }
}

fn ids_of_values(records: &[StreamRecord]) -> Vec<(String, i64)> {
    records
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_slice(&r.data).expect("a JSON value");
            (r.key.clone(), v["id"].as_i64().expect("id"))
        })
        .collect()
}

/// Device ids of the bulk test: 25 records each.
const KEYS: usize = 2_000;

#[tokio::test]
async fn fifty_thousand_records_arrive_once_in_key_order_through_throttling() {
    let broker = Broker::start();
    let kinesis = KinesisEmulator::start().await;
    let proxy = FaultProxy::start(&kinesis.endpoint).await;
    // Every 7th record is throttled, and three calls fail as a whole.
    proxy.faults.refuse_every.store(7, Ordering::SeqCst);
    proxy.faults.fail_calls.store(3, Ordering::SeqCst);
    let (topic, stream) = (unique("features"), unique("features"));
    kinesis.create_stream(&stream, 4).await;
    create_topic(&broker.bootstrap, &topic, 4).await;
    let n = 50_000;
    let records: Vec<Produce> = (0..n).map(|i| keyed(i, KEYS)).collect();
    produce(&broker.bootstrap, &topic, &records).await;
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let name = unique("kinesis-sink");
    let config = sink_config(
        &proxy.endpoint,
        &stream,
        &topic,
        json!({"kinesis.record.format": "envelope"}),
    );
    worker.create(&name, config).await;
    wait_accepted(&proxy, n as u64, Duration::from_secs(180)).await;
    let stored = kinesis.read_all(&stream).await;
    assert_eq!(stored.len(), n, "every record once: no crash, no duplicate");
    // Each envelope decodes to exactly the record produced from its coordinates.
    let mut by_id = Vec::new();
    for r in &stored {
        let e = envelope::decode(&r.data).expect("an envelope");
        let id: i64 = String::from_utf8(e.headers.last("n").unwrap().value.clone().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        let original = keyed(id as usize, KEYS);
        assert_eq!(e.topic, topic);
        assert_eq!(e.partition, Some(original.partition));
        assert_eq!(e.key, original.key);
        assert_eq!(e.value, original.value);
        assert_eq!(e.timestamp, original.timestamp);
        assert_eq!(
            r.key.as_bytes(),
            original.key.as_deref().unwrap(),
            "key bytes as partition key"
        );
        by_id.push((r.key.clone(), id));
    }
    let unique_ids = counts(by_id.iter().map(|(_, id)| *id));
    assert_eq!(unique_ids.len(), n);
    assert_key_order(&by_id);
    let f = &proxy.faults;
    assert!(
        f.refused.load(Ordering::SeqCst) > 1000,
        "the proxy throttled records"
    );
    assert!(f.violations.lock().is_empty(), "{:?}", f.violations.lock());
    assert!(f.most_records.load(Ordering::SeqCst) <= 500);
    // Everything is committed once Kinesis took it.
    eventually("all offsets committed", Duration::from_secs(60), || async {
        (worker.committed_sink_records(&name).await? == n as i64).then_some(())
    })
    .await;
}

#[tokio::test]
async fn sigkill_mid_stream_loses_nothing_and_duplicates_only_what_was_uncommitted() {
    let broker = Broker::start();
    let kinesis = KinesisEmulator::start().await;
    let proxy = FaultProxy::start(&kinesis.endpoint).await;
    proxy.faults.refuse_every.store(11, Ordering::SeqCst);
    let (topic, stream) = (unique("events"), unique("events"));
    kinesis.create_stream(&stream, 4).await;
    create_topic(&broker.bootstrap, &topic, 4).await;
    let n = 20_000;
    let records: Vec<Produce> = (0..n).map(|i| keyed(i, 500)).collect();
    produce(&broker.bootstrap, &topic, &records).await;
    let mut worker = Worker::start(WorkerSettings::new(&broker)).await;
    let name = unique("kinesis-sink");
    worker
        .create(
            &name,
            sink_config(&proxy.endpoint, &stream, &topic, json!({})),
        )
        .await;
    wait_accepted(&proxy, 5_000, Duration::from_secs(120)).await;
    let committed = worker.committed_sink_records(&name).await.unwrap_or(0);
    worker.kill();
    let written_at_kill = proxy.faults.accepted.load(Ordering::SeqCst) as i64;
    worker.restart().await;
    let stored = eventually(
        "every record in Kinesis",
        Duration::from_secs(240),
        || async {
            let stored = kinesis.read_all(&stream).await;
            let ids = ids_of_values(&stored);
            (counts(ids.iter().map(|(_, id)| *id)).len() == n).then_some(ids)
        },
    )
    .await;
    let duplicates = stored.len() as i64 - n as i64;
    // What was written but not committed at the kill (plus the calls in flight then: at most
    // two tasks × five calls × 500 records) may be written again; nothing else.
    let bound = written_at_kill - committed + 2 * 5 * 500;
    assert!(
        duplicates <= bound,
        "{duplicates} duplicates, more than the {bound} uncommitted at the kill"
    );
    assert_key_order(&stored);
}

#[tokio::test]
async fn records_refused_past_the_retry_timeout_go_to_the_dlq_and_their_key_moves_on() {
    let broker = Broker::start();
    let kinesis = KinesisEmulator::start().await;
    let proxy = FaultProxy::start(&kinesis.endpoint).await;
    *proxy.faults.refuse_key_prefix.lock() = Some("stuck".into());
    let (topic, stream, dead) = (unique("events"), unique("events"), unique("dlq"));
    kinesis.create_stream(&stream, 2).await;
    create_topic(&broker.bootstrap, &topic, 1).await;
    let record = |i: usize, key: &str| Produce::json(0, &json!({"id": i})).key(key.as_bytes());
    let first: Vec<Produce> = (0..10)
        .map(|i| record(i, if i % 2 == 0 { "stuck" } else { "free" }))
        .collect();
    produce(&broker.bootstrap, &topic, &first).await;
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let name = unique("kinesis-sink");
    let mut config = sink_config(
        &proxy.endpoint,
        &stream,
        &topic,
        json!({"errors.retry.timeout": "1000", "kinesis.retry.backoff.ms": "50"}),
    );
    config
        .as_object_mut()
        .unwrap()
        .extend(dlq(&dead).as_object().cloned().unwrap());
    worker.create(&name, config).await;
    let dead_letters = consume_all(&broker.bootstrap, &dead, 5, Duration::from_secs(120)).await;
    let mut dead_ids: Vec<i64> = dead_letters
        .iter()
        .map(|d| d.json()["id"].as_i64().unwrap())
        .collect();
    dead_ids.sort();
    assert_eq!(dead_ids, (0..10).step_by(2).collect::<Vec<_>>());
    let message = dead_letters[0]
        .header("__connect.errors.exception.message")
        .unwrap_or_default();
    assert!(message.contains("errors.retry.timeout"), "{message}");
    // Kinesis takes the key again: its later records are written, in order.
    *proxy.faults.refuse_key_prefix.lock() = None;
    let later: Vec<Produce> = (10..20).map(|i| record(i, "stuck")).collect();
    produce(&broker.bootstrap, &topic, &later).await;
    let stored = eventually(
        "the free and later records",
        Duration::from_secs(60),
        || async {
            let stored = ids_of_values(&kinesis.read_all(&stream).await);
            (stored.len() == 15).then_some(stored)
        },
    )
    .await;
    let stuck: Vec<i64> = stored
        .iter()
        .filter(|(k, _)| k == "stuck")
        .map(|(_, id)| *id)
        .collect();
    assert_eq!(stuck, (10..20).collect::<Vec<_>>());
    assert_key_order(&stored);
}

#[tokio::test]
async fn long_throttling_pauses_the_partitions_then_everything_drains() {
    let broker = Broker::start();
    let kinesis = KinesisEmulator::start().await;
    let proxy = FaultProxy::start(&kinesis.endpoint).await;
    proxy.faults.refuse_every.store(1, Ordering::SeqCst);
    let (topic, stream) = (unique("events"), unique("events"));
    kinesis.create_stream(&stream, 2).await;
    create_topic(&broker.bootstrap, &topic, 2).await;
    // 8 MiB of records against a 1 MiB buffer.
    let n = 2_000;
    let records: Vec<Produce> = (0..n)
        .map(|i| {
            Produce::bytes(
                (i % 2) as i32,
                format!("{{\"id\":{i},\"pad\":\"{}\"}}", "p".repeat(4000)).as_bytes(),
            )
            .key(format!("k{}", i % 50).as_bytes())
        })
        .collect();
    produce(&broker.bootstrap, &topic, &records).await;
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let name = unique("kinesis-sink");
    worker
        .create(
            &name,
            sink_config(
                &proxy.endpoint,
                &stream,
                &topic,
                json!({"tasks.max": "1", "kinesis.buffer.max.bytes": "1048576",
                       "kinesis.retry.backoff.max.ms": "200"}),
            ),
        )
        .await;
    eventually("the task pauses", Duration::from_secs(60), || async {
        worker.log().contains("pausing").then_some(())
    })
    .await;
    assert_eq!(proxy.faults.accepted.load(Ordering::SeqCst), 0);
    assert_eq!(worker.committed_sink_records(&name).await.unwrap_or(0), 0);
    proxy.faults.refuse_every.store(0, Ordering::SeqCst);
    let stored = eventually("everything drained", Duration::from_secs(120), || async {
        let stored = ids_of_values(&kinesis.read_all(&stream).await);
        (counts(stored.iter().map(|(_, id)| *id)).len() == n).then_some(stored)
    })
    .await;
    assert_eq!(stored.len(), n, "nothing written twice");
    assert_key_order(&stored);
}

#[tokio::test]
async fn a_missing_stream_fails_the_task_naming_stream_and_region_without_the_secret() {
    let broker = Broker::start();
    let kinesis = KinesisEmulator::start().await;
    let topic = unique("events");
    create_topic(&broker.bootstrap, &topic, 1).await;
    produce(
        &broker.bootstrap,
        &topic,
        &[Produce::json(0, &json!({"id": 1}))],
    )
    .await;
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let name = unique("kinesis-sink");
    let missing = unique("no-such-stream");
    worker
        .create(
            &name,
            sink_config(&kinesis.endpoint, &missing, &topic, json!({})),
        )
        .await;
    let trace = worker.failed_task_trace(&name).await;
    assert!(
        trace.contains(&missing) && trace.contains("us-east-1"),
        "{trace}"
    );
    assert!(trace.contains("does not exist"), "{trace}");
    assert!(!trace.contains("test-secret-value"), "{trace}");
    assert!(!worker.log().contains("test-secret-value"));
}

#[tokio::test]
async fn a_record_over_one_mib_goes_to_the_dlq_with_its_coordinates() {
    let broker = Broker::start();
    let kinesis = KinesisEmulator::start().await;
    let proxy = FaultProxy::start(&kinesis.endpoint).await;
    let (topic, stream, dead) = (unique("events"), unique("events"), unique("dlq"));
    kinesis.create_stream(&stream, 2).await;
    create_topic(&broker.bootstrap, &topic, 4).await;
    let small: Vec<Produce> = (0..10).map(|i| keyed(i, 3)).collect();
    produce(&broker.bootstrap, &topic, &small[..5]).await;
    // Its envelope is over Kinesis's 1 MiB limit: base64 grows 800 kB by 4/3.
    let big = Produce::bytes(0, &vec![b'x'; 800_000]).key(b"big");
    produce(&broker.bootstrap, &topic, &[big]).await;
    produce(&broker.bootstrap, &topic, &small[5..]).await;
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let name = unique("kinesis-sink");
    let mut config = sink_config(
        &proxy.endpoint,
        &stream,
        &topic,
        json!({"kinesis.record.format": "envelope"}),
    );
    config
        .as_object_mut()
        .unwrap()
        .extend(dlq(&dead).as_object().cloned().unwrap());
    worker.create(&name, config).await;
    let dead_letters = consume_all(&broker.bootstrap, &dead, 1, Duration::from_secs(60)).await;
    assert_eq!(dead_letters.len(), 1);
    let message = dead_letters[0]
        .header("__connect.errors.exception.message")
        .unwrap_or_default();
    assert!(
        message.contains("1048576") && message.contains(&format!("{topic}-0/")),
        "{message}"
    );
    assert_eq!(
        dead_letters[0].value.as_ref().map(Vec::len),
        Some(800_000),
        "the original bytes"
    );
    wait_accepted(&proxy, 10, Duration::from_secs(60)).await;
    assert_eq!(
        kinesis.read_all(&stream).await.len(),
        10,
        "nothing truncated, nothing else lost"
    );
}
