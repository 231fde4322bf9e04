//! Overflow through Kinesis against a real broker process (SIGKILLed and restarted on its data,
//! or SIGSTOPped) and a real Kinesis emulator (kinesalite): a datagen source diverts while Kafka
//! cannot take its records and replays them once it can; a sink whose external system keeps
//! refusing diverts, and a Kinesis source replays into the topic.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use sluice_tests::kafka::{Consumed, consume_all};
use sluice_tests::kinesis::KinesisEmulator;
use sluice_tests::{Broker, Value, Worker, WorkerSettings, eventually, json, unique};

const ID_HEADER: &str = "__sluice.overflow.id";
const REPLAYED_HEADER: &str = "__sluice.overflow.replayed";

fn datagen(topic: &str, stream: &str, endpoint: &str, per_task: i64, extra: Value) -> Value {
    let mut c = json!({
        "connector.class": "Datagen",
        "kafka.topic": topic,
        "quickstart": "clickstream",
        "records.per.second": "250",
        "iterations": per_task.to_string(),
        "tasks.max": "2",
        "key.cardinality": "20",
        "topic.creation.default.partitions": "2",
        "overflow.kinesis.stream": stream,
        "overflow.kinesis.region": "us-east-1",
        "overflow.kinesis.endpoint": endpoint,
        "overflow.aws.access.key.id": "test",
        "overflow.aws.secret.access.key": "test",
        "overflow.produce.timeout.ms": "2000",
        "overflow.recovery.ms": "2000",
    });
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    c
}

/// A datagen record's (task, seq), from the JsonConverter envelope's payload.
fn pair(r: &Consumed) -> (i64, i64) {
    let v = r.json();
    let p = &v["payload"];
    (p["task"].as_i64().unwrap(), p["seq"].as_i64().unwrap())
}

/// What the topic holds of the datagen's (task, seq) pairs.
struct Held {
    /// Copies per pair.
    copies: BTreeMap<(i64, i64), usize>,
    /// Copies per overflow id (each record's id is unique to its source position).
    by_id: BTreeMap<String, usize>,
    replayed: usize,
}

fn held(records: &[Consumed]) -> Held {
    let mut h = Held {
        copies: BTreeMap::new(),
        by_id: BTreeMap::new(),
        replayed: 0,
    };
    for r in records {
        let pair = pair(r);
        *h.copies.entry(pair).or_default() += 1;
        let id = r
            .header(ID_HEADER)
            .unwrap_or_else(|| panic!("{pair:?} has no {ID_HEADER} header"));
        *h.by_id.entry(id).or_default() += 1;
        if r.header(REPLAYED_HEADER).is_some() {
            h.replayed += 1;
        }
    }
    h
}

/// Per key, the first copies of each task's records are in `seq` order.
fn assert_key_order(records: &[Consumed]) {
    let mut by_key: BTreeMap<(Vec<u8>, i64), Vec<i64>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let mut sorted = records.to_vec();
    // Per key, order is Kafka's order within the key's partition.
    sorted.sort_by_key(|r| (r.partition, r.offset));
    for r in &sorted {
        let pair = pair(r);
        if seen.insert(pair) {
            by_key
                .entry((r.key.clone().unwrap_or_default(), pair.0))
                .or_default()
                .push(pair.1);
        }
    }
    for ((key, task), seqs) in by_key {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "key {:?} of task {task} out of order: {seqs:?}",
            String::from_utf8_lossy(&key)
        );
    }
}

async fn wait_for_all(broker: &Broker, topic: &str, tasks: i64, per_task: i64) -> Vec<Consumed> {
    eventually(
        "every sequence number in the topic",
        Duration::from_secs(120),
        || async {
            let records = consume_all(&broker.bootstrap, topic, 0, Duration::from_secs(10)).await;
            let h = held(&records);
            let all = (0..tasks).all(|t| (0..per_task).all(|s| h.copies.contains_key(&(t, s))));
            all.then_some(records)
        },
    )
    .await
}

/// A broker, kinesalite with the overflow stream, a worker, and a datagen connector `gen` (two
/// tasks) with that stream as its overflow, once `flowing` records are in its topic.
struct Diverting {
    broker: Broker,
    kinesis: KinesisEmulator,
    stream: String,
    worker: Worker,
    topic: String,
}

impl Diverting {
    async fn start(shards: i32, per_task: i64, extra: Value, flowing: usize) -> Self {
        let broker = Broker::start();
        let kinesis = KinesisEmulator::start().await;
        let stream = unique("spill");
        kinesis.create_stream(&stream, shards).await;
        let worker = Worker::start(WorkerSettings::new(&broker)).await;
        let topic = unique("clicks");
        let config = datagen(&topic, &stream, &kinesis.endpoint, per_task, extra);
        worker.create("gen", config).await;
        consume_all(&broker.bootstrap, &topic, flowing, Duration::from_secs(60)).await;
        Self {
            broker,
            kinesis,
            stream,
            worker,
            topic,
        }
    }

    /// Waits until `gen`'s task switches to `to` (`diverting`, `kafka`) counted `n` in all.
    async fn switched(&self, to: &str, n: f64) {
        let label = format!("to=\"{to}\"");
        eventually(
            &format!("{n} switches to {to}"),
            Duration::from_secs(30),
            || async {
                let seen = self
                    .worker
                    .metric(
                        "sluice_overflow_switches_total",
                        &["connector=\"gen\"", &label],
                    )
                    .await;
                (seen >= n).then_some(())
            },
        )
        .await;
    }

    /// Waits until the overflow stream holds `n` records.
    async fn stream_holds(&self, n: usize) {
        eventually("records in the stream", Duration::from_secs(30), || async {
            (self.kinesis.read_all(&self.stream).await.len() >= n).then_some(())
        })
        .await;
    }

    /// `gen`'s records counted per overflow target.
    async fn records(&self, target: &str) -> f64 {
        let label = format!("target=\"{target}\"");
        self.worker
            .metric(
                "sluice_overflow_records_total",
                &["connector=\"gen\"", &label],
            )
            .await
    }
}

/// Asserts that every extra copy of a (task, seq) shares its original's overflow id; returns how
/// many there are.
fn duplicates_share_ids(h: &Held) -> usize {
    let duplicates: usize = h.copies.values().map(|c| c - 1).sum();
    let id_duplicates: usize = h.by_id.values().map(|c| c - 1).sum();
    assert_eq!(
        duplicates, id_duplicates,
        "every duplicate shares its original's overflow id"
    );
    duplicates
}

#[tokio::test]
async fn a_sigkilled_broker_diverts_to_kinesis_and_every_record_comes_back_in_key_order() {
    const PER_TASK: i64 = 4000;
    let mut d = Diverting::start(2, PER_TASK, json!({}), 1000).await;
    d.broker.kill();
    d.switched("diverting", 2.0).await;
    // Down for a while: the stream fills.
    d.stream_holds(1000).await;
    let status = d.worker.get("/connectors/gen/status").await.body;
    assert_eq!(status["tasks"][0]["state"], "RUNNING", "{status}");
    d.broker.restart();

    let records = wait_for_all(&d.broker, &d.topic, 2, PER_TASK).await;
    let h = held(&records);
    assert!(h.replayed > 0, "nothing was replayed");
    let duplicates = duplicates_share_ids(&h);
    eprintln!(
        "records {}, replayed {}, duplicates {duplicates}",
        records.len(),
        h.replayed
    );
    assert_key_order(&records);
    d.switched("kafka", 2.0).await;
    let (diverted, replayed) = (d.records("kinesis").await, d.records("replayed").await);
    assert!(
        replayed >= diverted && diverted > 0.0,
        "diverted {diverted}, replayed {replayed}"
    );
    let log = d.worker.log();
    for said in [
        "diverting records to the overflow stream",
        "replaying diverted records into Kafka",
        "Kafka is back",
    ] {
        assert!(log.contains(said), "the log says {said:?}");
    }
}

#[tokio::test]
async fn a_frozen_broker_is_slow_not_gone_the_task_diverts_on_the_produce_timeout_then_recovers() {
    const PER_TASK: i64 = 2500;
    let d = Diverting::start(1, PER_TASK, json!({}), 500).await;
    // SIGSTOP: connections stay open and nothing answers, so librdkafka never reports the
    // brokers down; only the produce timeout can tell.
    d.broker.freeze();
    d.switched("diverting", 2.0).await;
    d.stream_holds(500).await;
    d.broker.thaw();

    let records = wait_for_all(&d.broker, &d.topic, 2, PER_TASK).await;
    assert_key_order(&records);
    let h = held(&records);
    assert!(h.replayed > 0, "nothing was replayed");
    assert!(
        d.worker
            .log()
            .contains("was not acknowledged within overflow.produce.timeout.ms=2000"),
        "the switch names the produce timeout"
    );
}

#[tokio::test]
async fn a_worker_sigkilled_while_diverting_loses_nothing() {
    const PER_TASK: i64 = 2500;
    let mut d = Diverting::start(2, PER_TASK, json!({}), 500).await;
    d.broker.kill();
    d.stream_holds(500).await;
    // The diverting run dies with its kept offsets: the next run polls from the stored ones.
    d.worker.kill();
    d.broker.restart();
    d.worker.restart().await;

    let records = wait_for_all(&d.broker, &d.topic, 2, PER_TASK).await;
    let duplicates = duplicates_share_ids(&held(&records));
    eprintln!("records {}, duplicates {duplicates}", records.len());
}

/// A scoring function; every call is throttled by the proxy while the test wants it.
const HANDLERS: &str = r#"
exports.score = async (batch) => batch.map((r) => ({ partition: r.partition, offset: r.offset, score: r.value.id * 2 }));
"#;

#[tokio::test]
async fn a_throttled_lambda_sink_diverts_after_its_budget_and_the_failback_source_redelivers() {
    use sluice_tests::kafka::{Produce, create_topic, produce};
    use sluice_tests::lambda::{LambdaEmulator, ThrottleProxy};
    use std::sync::atomic::Ordering;

    let broker = Broker::start();
    let kinesis = KinesisEmulator::start().await;
    let lambda = LambdaEmulator::start(HANDLERS, &["score"]);
    let proxy = ThrottleProxy::start(&lambda.endpoint).await;
    proxy.throttling.every.store(1, Ordering::SeqCst);
    let stream = unique("spill");
    kinesis.create_stream(&stream, 1).await;
    let (topic, scores) = (unique("features"), unique("scores"));
    create_topic(&broker.bootstrap, &topic, 1).await;
    create_topic(&broker.bootstrap, &scores, 1).await;
    let inputs: Vec<Produce> = (0..20)
        .map(|i| {
            Produce::json(0, &json!({"id": i}))
                .key(format!("device-{}", i % 4).as_bytes())
                .header("n", i.to_string().as_bytes())
        })
        .collect();
    produce(&broker.bootstrap, &topic, &inputs).await;
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    worker
        .create(
            "infer",
            json!({
                "connector.class": "LambdaSink",
                "topics": topic,
                "aws.lambda.function.name": LambdaEmulator::function("score"),
                "aws.lambda.region": "us-east-1",
                "aws.lambda.endpoint": proxy.endpoint,
                "aws.access.key.id": "test",
                "aws.secret.access.key": "test",
                "aws.lambda.response.topic": scores,
                "aws.lambda.retry.backoff.ms": "20",
                "key.converter": "org.apache.kafka.connect.storage.StringConverter",
                "value.converter": "org.apache.kafka.connect.json.JsonConverter",
                "value.converter.schemas.enable": "false",
                "errors.retry.timeout": "1000",
                "errors.overflow.kinesis.stream": stream,
                "errors.overflow.kinesis.region": "us-east-1",
                "errors.overflow.kinesis.endpoint": kinesis.endpoint,
                "errors.overflow.aws.access.key.id": "test",
                "errors.overflow.aws.secret.access.key": "test",
            }),
        )
        .await;
    // Every record goes to the stream, and the sink commits past them (nothing in a DLQ).
    let diverted = eventually("20 records diverted", Duration::from_secs(60), || async {
        let all = kinesis.read_all(&stream).await;
        (all.len() >= 20).then_some(all)
    })
    .await;
    assert_eq!(diverted.len(), 20, "each record diverted once");
    eventually(
        "the sink commits past them",
        Duration::from_secs(60),
        || async { (worker.committed_sink_records("infer").await? == 20).then_some(()) },
    )
    .await;
    assert!(proxy.throttling.throttled.load(Ordering::SeqCst) > 2);

    // Lambda takes calls again; the failback source replays the stream into the topic.
    proxy.throttling.every.store(0, Ordering::SeqCst);
    worker
        .create(
            "failback",
            json!({
                "connector.class": "KinesisSource",
                "kinesis.stream": stream,
                "kinesis.region": "us-east-1",
                "kinesis.endpoint": kinesis.endpoint,
                "aws.access.key.id": "test",
                "aws.secret.access.key": "test",
                "kinesis.record.format": "envelope",
                "kinesis.position": "TRIM_HORIZON",
                "kinesis.empty.records.backoff.ms": "200",
            }),
        )
        .await;
    let all = consume_all(&broker.bootstrap, &topic, 40, Duration::from_secs(60)).await;
    let replayed: Vec<&Consumed> = all
        .iter()
        .filter(|r| r.header(REPLAYED_HEADER).is_some())
        .collect();
    assert_eq!(replayed.len(), 20);
    for (i, r) in replayed.iter().enumerate() {
        let original = &all[i];
        assert_eq!(
            (&r.key, &r.value, r.header("n"), r.timestamp),
            (
                &original.key,
                &original.value,
                original.header("n"),
                original.timestamp
            ),
            "replayed as it was"
        );
        assert!(r.header(ID_HEADER).is_some());
    }
    // The sink gets them again: one score per input id.
    let results = consume_all(&broker.bootstrap, &scores, 20, Duration::from_secs(60)).await;
    let mut got: Vec<i64> = results
        .iter()
        .map(|r| r.json()["score"].as_i64().unwrap() / 2)
        .collect();
    got.sort();
    assert_eq!(got, (0..20).collect::<Vec<_>>());
}

#[tokio::test]
async fn relaxed_mode_comes_back_at_once_and_a_failback_source_replays_the_stream() {
    const PER_TASK: i64 = 2500;
    let mut d = Diverting::start(2, PER_TASK, json!({"overflow.mode": "relaxed"}), 500).await;
    // Beside it all the time, as in production: replays whatever lands in the stream.
    d.worker
        .create(
            "failback",
            json!({
                "connector.class": "KinesisSource",
                "kinesis.stream": d.stream,
                "kinesis.region": "us-east-1",
                "kinesis.endpoint": d.kinesis.endpoint,
                "aws.access.key.id": "test",
                "aws.secret.access.key": "test",
                "kinesis.record.format": "envelope",
                "kinesis.empty.records.backoff.ms": "200",
            }),
        )
        .await;
    d.broker.kill();
    d.stream_holds(500).await;
    d.broker.restart();

    let records = wait_for_all(&d.broker, &d.topic, 2, PER_TASK).await;
    let h = held(&records);
    assert!(
        h.replayed >= 500,
        "the failback source replayed {}",
        h.replayed
    );
    duplicates_share_ids(&h);
    let replayed_by_task = d.records("replayed").await;
    assert_eq!(
        replayed_by_task, 0.0,
        "relaxed: the task replays nothing itself"
    );
    assert!(d.worker.log().contains("Kafka is back"));
}
