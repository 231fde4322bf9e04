//! The Lambda sink against a real Lambda runtime (serverless-offline running Node handlers) and
//! a real broker, with a proxy that throttles chosen invocations (the runtime never does).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use sluice_tests::kafka::{Consumed, Produce, consume_all, create_topic, produce, read_topic};
use sluice_tests::lambda::{LambdaEmulator, ThrottleProxy};
use sluice_tests::{Broker, Value, Worker, WorkerSettings, eventually, json, unique};

/// The handlers: a logistic scoring model, the same behind a random sleep, one that fails
/// batches holding a poisoned record or answers garbage for a garbled one, one that fails its
/// first three calls, and one that records what it was given (for async invocations).
const HANDLERS: &str = r#"
const fs = require("fs");
const W = [0.8, -1.2, 0.5], B = 0.1;
const score1 = (r) => {
  const v = r.value;
  const z = W[0] * v.f1 + W[1] * v.f2 + W[2] * v.f3 + B;
  return { partition: r.partition, offset: r.offset, score: 1 / (1 + Math.exp(-z)) };
};
const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
exports.score = async (batch) => batch.map(score1);
exports.slow_score = async (batch) => {
  await sleep(Math.floor(Math.random() * 25));
  return batch.map(score1);
};
exports.picky = async (batch) => {
  if (batch.some((r) => r.value.kind === "poison")) throw new Error("poisoned batch");
  if (batch.some((r) => r.value.kind === "garbled")) return { not: "an array" };
  return batch.map(score1);
};
exports.flaky = async (batch) => {
  const counter = "{dir}/flaky.calls";
  fs.appendFileSync(counter, "x\n");
  const calls = fs.readFileSync(counter, "utf8").length / 2;
  if (calls <= 3) throw new Error("injected failure of call " + calls);
  return batch.map(score1);
};
exports.record = async (batch) => {
  fs.appendFileSync("{dir}/invoked.log", batch.map((r) => r.partition + ":" + r.offset + "\n").join(""));
  return null;
};
"#;

const FUNCTIONS: &[&str] = &["score", "slow_score", "picky", "flaky", "record"];

fn features(i: usize) -> Value {
    json!({"id": i, "f1": (i % 7) as f64 * 0.25, "f2": (i % 5) as f64 * 0.5, "f3": (i % 3) as f64 - 1.0})
}

fn expected_score(v: &Value) -> f64 {
    let f = |k: &str| v[k].as_f64().unwrap();
    let z = 0.8 * f("f1") - 1.2 * f("f2") + 0.5 * f("f3") + 0.1;
    1.0 / (1.0 + (-z).exp())
}

/// Record `i` of a 4-partition topic: partition `i % 4`, keyed, with a header.
fn feature_record(i: usize) -> Produce {
    Produce::json((i % 4) as i32, &features(i))
        .key(format!("device-{}", i % 50).as_bytes())
        .header("n", i.to_string().as_bytes())
}

fn sink_config(endpoint: &str, function: &str, topic: &str, extra: Value) -> Value {
    let mut c = json!({
        "connector.class": "LambdaSink",
        "topics": topic,
        "tasks.max": "2",
        "aws.lambda.function.name": LambdaEmulator::function(function),
        "aws.lambda.region": "us-east-1",
        "aws.lambda.endpoint": endpoint,
        "aws.access.key.id": "test",
        "aws.secret.access.key": "test-secret-value",
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
        "aws.lambda.retry.backoff.ms": "20",
    });
    let extra = extra.as_object().cloned().unwrap_or_default();
    c.as_object_mut().unwrap().extend(extra);
    c
}

fn with_dlq(mut config: Value, dlq: &str) -> Value {
    config.as_object_mut().unwrap().extend(
        json!({
            "errors.tolerance": "all",
            "errors.deadletterqueue.topic.name": dlq,
            "errors.deadletterqueue.topic.replication.factor": "1",
            "errors.deadletterqueue.context.headers.enable": "true",
        })
        .as_object()
        .cloned()
        .unwrap(),
    );
    config
}

/// A result's input coordinates, from its headers.
fn input_of(result: &Consumed) -> (i32, i64) {
    let p = result
        .header("lambda.input.partition")
        .expect("partition header");
    let o = result.header("lambda.input.offset").expect("offset header");
    (p.parse().unwrap(), o.parse().unwrap())
}

/// Per input partition, the input offsets of its results in the order they were written (the
/// response topic is keyed by the input key, so one input partition's results spread over the
/// response partitions: their offsets order them only within one response partition).
fn assert_results_in_input_order(results: &[Consumed]) {
    let mut last: BTreeMap<(i32, i32), i64> = BTreeMap::new();
    for r in results {
        let (p, o) = input_of(r);
        if let Some(prev) = last.insert((r.partition, p), o) {
            assert!(
                prev < o,
                "input partition {p}: the result of offset {o} was written after {prev}"
            );
        }
    }
}

#[tokio::test]
async fn ten_thousand_features_each_get_one_correct_result_in_partition_order() {
    let broker = Broker::start();
    let lambda = LambdaEmulator::start(HANDLERS, FUNCTIONS);
    let proxy = ThrottleProxy::start(&lambda.endpoint).await;
    // Every 9th invocation is throttled; the function sleeps a random 0-25 ms.
    proxy.throttling.every.store(9, Ordering::SeqCst);
    let (topic, scores) = (unique("processed-features"), unique("scores"));
    create_topic(&broker.bootstrap, &topic, 4).await;
    create_topic(&broker.bootstrap, &scores, 4).await;
    let n = 10_000;
    let records: Vec<Produce> = (0..n).map(feature_record).collect();
    produce(&broker.bootstrap, &topic, &records).await;
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let name = unique("lambda-sink");
    let config = sink_config(
        &proxy.endpoint,
        "slow_score",
        &topic,
        json!({"aws.lambda.max.in.flight": "8", "aws.lambda.batch.size": "20",
               "aws.lambda.response.topic": scores}),
    );
    worker.create(&name, config).await;
    // While it runs: whatever is committed already has its results in the response topic.
    let checked_commits = std::sync::atomic::AtomicUsize::new(0);
    let results = eventually("every result", Duration::from_secs(180), || async {
        let committed = committed_per_partition(&worker, &name).await;
        let results = read_topic(&broker.bootstrap, &scores);
        let have: BTreeSet<(i32, i64)> = results.iter().map(input_of).collect();
        for (p, next) in &committed {
            for o in 0..*next {
                assert!(
                    have.contains(&(*p, o)),
                    "offset {o} of partition {p} is committed (up to {next}) without its result"
                );
            }
            checked_commits.fetch_add(1, Ordering::SeqCst);
        }
        (results.len() >= n).then_some(results)
    })
    .await;
    assert!(
        checked_commits.load(Ordering::SeqCst) > 0,
        "commits were seen while the sink ran"
    );
    assert_eq!(results.len(), n, "exactly one result per input");
    let inputs: BTreeSet<(i32, i64)> = results.iter().map(input_of).collect();
    assert_eq!(inputs.len(), n);
    assert_results_in_input_order(&results);
    for r in &results {
        let (p, o) = input_of(r);
        // Inputs were produced round-robin by id: partition p holds ids p, p+4, ...
        let id = o as usize * 4 + p as usize;
        let v = r.json();
        assert_eq!(
            (v["partition"].as_i64(), v["offset"].as_i64()),
            (Some(p.into()), Some(o))
        );
        let expected = expected_score(&features(id));
        assert!(
            (v["score"].as_f64().unwrap() - expected).abs() < 1e-12,
            "{v} vs {expected}"
        );
        assert_eq!(
            r.key.as_deref(),
            Some(format!("device-{}", id % 50).as_bytes())
        );
        assert_eq!(
            r.header("n"),
            Some(id.to_string()),
            "the input's headers are kept"
        );
        assert!(r.header("lambda.latency.ms").is_some());
        assert_eq!(
            r.header("lambda.input.topic").as_deref(),
            Some(topic.as_str())
        );
    }
    assert!(proxy.throttling.throttled.load(Ordering::SeqCst) > 10);
    let (throttles, status) = task_counter(&worker, &name, "lambda.throttles").await;
    assert!(throttles > 10, "throttles counted in the status: {status}");
    eventually("all offsets committed", Duration::from_secs(60), || async {
        (worker.committed_sink_records(&name).await? == n as i64).then_some(())
    })
    .await;
    let metrics = worker.get("/metrics").await.body;
    let metrics = metrics.as_str().unwrap_or_default();
    assert!(
        metrics.contains("lambda.latency.ms.le.100"),
        "latency histogram in /metrics"
    );
}

/// A counter summed over the connector's tasks, from its status (returned too, for messages).
async fn task_counter(worker: &Worker, name: &str, counter: &str) -> (u64, Value) {
    let status = worker.get(&format!("/connectors/{name}/status")).await.body;
    let sum = status["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["errors"]["counters"][counter].as_u64())
        .sum();
    (sum, status)
}

/// Committed offsets per partition of a sink connector.
async fn committed_per_partition(worker: &Worker, name: &str) -> BTreeMap<i32, i64> {
    let body = worker
        .get(&format!("/connectors/{name}/offsets"))
        .await
        .body;
    body["offsets"]
        .as_array()
        .map(|offsets| {
            offsets
                .iter()
                .filter_map(|o| {
                    Some((
                        o["partition"]["kafka_partition"].as_i64()? as i32,
                        o["offset"]["kafka_offset"].as_i64()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn failing_and_malformed_answers_send_their_records_to_the_dlq_and_nothing_is_lost() {
    let broker = Broker::start();
    let lambda = LambdaEmulator::start(HANDLERS, FUNCTIONS);
    let (topic, scores, dead) = (unique("features"), unique("scores"), unique("dlq"));
    create_topic(&broker.bootstrap, &topic, 2).await;
    let n = 300;
    let kind = |i: usize| match i {
        _ if i % 97 == 13 => "poison",
        _ if i % 89 == 7 => "garbled",
        _ => "plain",
    };
    let mut records: Vec<Produce> = (0..n)
        .map(|i| {
            let mut v = features(i);
            v["kind"] = json!(kind(i));
            Produce::json((i % 2) as i32, &v)
        })
        .collect();
    // One record too large for the configured payload limit.
    let mut big = features(n);
    big["padding"] = json!("x".repeat(3_000));
    records.push(Produce::json(0, &big));
    produce(&broker.bootstrap, &topic, &records).await;
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let picky = unique("picky");
    let config = sink_config(
        &lambda.endpoint,
        "picky",
        &topic,
        json!({"aws.lambda.batch.size": "5", "aws.lambda.batch.max.bytes": "2000",
               "aws.lambda.response.topic": scores, "tasks.max": "1"}),
    );
    worker.create(&picky, with_dlq(config, &dead)).await;
    let total = n + 1;
    // Every input has a result or a dead letter.
    let (results, dead_letters) = eventually(
        "every input dealt with",
        Duration::from_secs(120),
        || async {
            let results = read_topic(&broker.bootstrap, &scores);
            let dead_letters = read_topic(&broker.bootstrap, &dead);
            (results.len() + dead_letters.len() >= total).then_some((results, dead_letters))
        },
    )
    .await;
    assert_eq!(results.len() + dead_letters.len(), total, "no input twice");
    let dead_ids: BTreeSet<i64> = dead_letters
        .iter()
        .map(|d| d.json()["id"].as_i64().unwrap())
        .collect();
    for i in 0..n {
        if kind(i) != "plain" {
            assert!(
                dead_ids.contains(&(i as i64)),
                "record {i} ({}) is not in the DLQ",
                kind(i)
            );
        }
    }
    assert!(
        dead_ids.contains(&(n as i64)),
        "the oversized record is in the DLQ"
    );
    let messages: Vec<String> = dead_letters
        .iter()
        .map(|d| {
            d.header("__connect.errors.exception.message")
                .unwrap_or_default()
        })
        .collect();
    let function = LambdaEmulator::function("picky");
    assert!(
        messages
            .iter()
            .any(|m| m.contains(&function) && m.contains("Unhandled Error: poisoned batch")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("broke the result contract")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("over the limit of 1999")),
        "{messages:?}"
    );
    // Records of failed batches that were plain are dead letters too, never silently dropped;
    // every other plain record has its result.
    let result_ids: BTreeSet<i64> = results
        .iter()
        .map(|r| {
            let (p, o) = input_of(r);
            o * 2 + p as i64
        })
        .collect();
    for i in 0..total as i64 {
        assert!(
            result_ids.contains(&i) ^ dead_ids.contains(&i),
            "record {i}"
        );
    }

    // A function that fails its first three calls: those batches are dead letters, the rest
    // have results.
    let (topic2, scores2, dead2) = (unique("features"), unique("scores"), unique("dlq"));
    create_topic(&broker.bootstrap, &topic2, 1).await;
    let plain: Vec<Produce> = (0..50).map(|i| Produce::json(0, &features(i))).collect();
    produce(&broker.bootstrap, &topic2, &plain).await;
    let flaky = unique("flaky");
    let config = sink_config(
        &lambda.endpoint,
        "flaky",
        &topic2,
        json!({"aws.lambda.batch.size": "5", "aws.lambda.max.in.flight": "1",
               "aws.lambda.response.topic": scores2, "tasks.max": "1"}),
    );
    worker.create(&flaky, with_dlq(config, &dead2)).await;
    let (results, dead_letters) =
        eventually("all 50 dealt with", Duration::from_secs(60), || async {
            let results = read_topic(&broker.bootstrap, &scores2);
            let dead_letters = read_topic(&broker.bootstrap, &dead2);
            (results.len() + dead_letters.len() >= 50).then_some((results, dead_letters))
        })
        .await;
    assert_eq!(results.len() + dead_letters.len(), 50);
    // Three calls of at most five records each failed.
    assert!(
        (3..=15).contains(&dead_letters.len()),
        "{} dead letters",
        dead_letters.len()
    );
    let mut ids: Vec<i64> = dead_letters
        .iter()
        .map(|d| d.json()["id"].as_i64().unwrap())
        .collect();
    ids.extend(results.iter().map(|r| input_of(r).1));
    ids.sort();
    assert_eq!(ids, (0..50).collect::<Vec<_>>());
    let message = dead_letters[0]
        .header("__connect.errors.exception.message")
        .unwrap_or_default();
    assert!(message.contains("injected failure of call"), "{message}");
}

#[tokio::test]
async fn sigkill_mid_stream_every_input_gets_a_result_at_least_once() {
    let broker = Broker::start();
    let lambda = LambdaEmulator::start(HANDLERS, FUNCTIONS);
    let (topic, scores) = (unique("features"), unique("scores"));
    create_topic(&broker.bootstrap, &topic, 4).await;
    create_topic(&broker.bootstrap, &scores, 4).await;
    let n = 20_000;
    let records: Vec<Produce> = (0..n).map(feature_record).collect();
    produce(&broker.bootstrap, &topic, &records).await;
    let mut worker = Worker::start(WorkerSettings::new(&broker)).await;
    let name = unique("lambda-sink");
    let config = sink_config(
        &lambda.endpoint,
        "score",
        &topic,
        json!({"aws.lambda.max.in.flight": "8", "aws.lambda.response.topic": scores}),
    );
    worker.create(&name, config).await;
    consume_all(&broker.bootstrap, &scores, 4_000, Duration::from_secs(120)).await;
    let committed = worker.committed_sink_records(&name).await.unwrap_or(0);
    worker.kill();
    let at_kill = read_topic(&broker.bootstrap, &scores);
    assert_results_in_input_order(&at_kill);
    let written_at_kill = at_kill.len() as i64;
    worker.restart().await;
    let results = eventually(
        "a result for every input",
        Duration::from_secs(240),
        || async {
            let results = read_topic(&broker.bootstrap, &scores);
            let inputs: BTreeSet<(i32, i64)> = results.iter().map(input_of).collect();
            (inputs.len() == n).then_some(results)
        },
    )
    .await;
    let duplicates = results.len() as i64 - n as i64;
    // Results written but not committed at the kill may be written again, and so may those of
    // invocations in flight then (two tasks × eight invocations × twenty records); nothing else.
    let bound = written_at_kill - committed + 2 * 8 * 20;
    assert!(
        duplicates <= bound,
        "{duplicates} duplicates, more than {bound}"
    );
}

#[tokio::test]
async fn async_invocations_reach_every_record() {
    let broker = Broker::start();
    let lambda = LambdaEmulator::start(HANDLERS, FUNCTIONS);
    let topic = unique("events");
    create_topic(&broker.bootstrap, &topic, 4).await;
    let n = 2_000;
    let records: Vec<Produce> = (0..n).map(feature_record).collect();
    produce(&broker.bootstrap, &topic, &records).await;
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let name = unique("lambda-async");
    let config = sink_config(
        &lambda.endpoint,
        "record",
        &topic,
        json!({"aws.lambda.invocation.type": "async", "aws.lambda.batch.size": "50"}),
    );
    worker.create(&name, config).await;
    let log = lambda.file("invoked.log");
    let invoked = eventually("every record invoked", Duration::from_secs(120), || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let seen: BTreeSet<String> = text.lines().map(str::to_owned).collect();
        (seen.len() == n).then_some(seen)
    })
    .await;
    for i in 0..n {
        let (p, o) = (i % 4, i / 4);
        assert!(
            invoked.contains(&format!("{p}:{o}")),
            "{p}:{o} was never invoked"
        );
    }
    eventually("all offsets committed", Duration::from_secs(60), || async {
        (worker.committed_sink_records(&name).await? == n as i64).then_some(())
    })
    .await;
}

#[tokio::test]
async fn throttled_past_the_retry_timeout_records_go_to_the_dlq_then_the_sink_moves_on() {
    let broker = Broker::start();
    let lambda = LambdaEmulator::start(HANDLERS, FUNCTIONS);
    let proxy = ThrottleProxy::start(&lambda.endpoint).await;
    // Every invocation is throttled until the test says otherwise.
    proxy.throttling.every.store(1, Ordering::SeqCst);
    let (topic, scores, dead) = (unique("features"), unique("scores"), unique("dlq"));
    create_topic(&broker.bootstrap, &topic, 1).await;
    // One partition: results of unkeyed inputs go where the producer's partitioner sends them.
    create_topic(&broker.bootstrap, &scores, 1).await;
    let first: Vec<Produce> = (0..10).map(|i| Produce::json(0, &features(i))).collect();
    produce(&broker.bootstrap, &topic, &first).await;
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let name = unique("lambda-sink");
    let config = sink_config(
        &proxy.endpoint,
        "score",
        &topic,
        json!({"errors.retry.timeout": "1000", "aws.lambda.response.topic": scores,
               "tasks.max": "1"}),
    );
    worker.create(&name, with_dlq(config, &dead)).await;
    let dead_letters = consume_all(&broker.bootstrap, &dead, 10, Duration::from_secs(60)).await;
    let mut ids: Vec<i64> = dead_letters
        .iter()
        .map(|d| d.json()["id"].as_i64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, (0..10).collect::<Vec<_>>());
    let message = dead_letters[0]
        .header("__connect.errors.exception.message")
        .unwrap_or_default();
    assert!(
        message.contains("kept failing for errors.retry.timeout")
            && message.contains("TooManyRequestsException"),
        "{message}"
    );
    assert!(
        proxy.throttling.throttled.load(Ordering::SeqCst) > 2,
        "retried before giving up"
    );
    // Lambda takes calls again: later records get their results, and everything is committed.
    proxy.throttling.every.store(0, Ordering::SeqCst);
    let later: Vec<Produce> = (10..20).map(|i| Produce::json(0, &features(i))).collect();
    produce(&broker.bootstrap, &topic, &later).await;
    let results = consume_all(&broker.bootstrap, &scores, 10, Duration::from_secs(60)).await;
    let offsets: Vec<i64> = results.iter().map(|r| input_of(r).1).collect();
    assert_eq!(offsets, (10..20).collect::<Vec<_>>());
    eventually("all offsets committed", Duration::from_secs(60), || async {
        (worker.committed_sink_records(&name).await? == 20).then_some(())
    })
    .await;
}

#[tokio::test]
async fn batches_lambda_finds_too_large_are_split_and_a_record_too_large_alone_goes_to_the_dlq() {
    let broker = Broker::start();
    let lambda = LambdaEmulator::start(HANDLERS, FUNCTIONS);
    let proxy = ThrottleProxy::start(&lambda.endpoint).await;
    // Lambda's limit seen as 1,500 bytes (a batch of 20 here is about 4 KB; one record about
    // 200 bytes), and Lambda's request id and version headers on every answer.
    proxy.throttling.max_payload.store(1500, Ordering::SeqCst);
    proxy
        .throttling
        .lambda_headers
        .store(true, Ordering::SeqCst);
    let (topic, scores, dead) = (unique("features"), unique("scores"), unique("dlq"));
    create_topic(&broker.bootstrap, &topic, 1).await;
    create_topic(&broker.bootstrap, &scores, 1).await;
    let big = 30;
    let records: Vec<Produce> = (0..60)
        .map(|i| {
            let mut v = features(i);
            if i == big {
                v["pad"] = json!("x".repeat(3000));
            }
            Produce::json(0, &v)
        })
        .collect();
    produce(&broker.bootstrap, &topic, &records).await;
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let name = unique("lambda-sink");
    let config = sink_config(
        &proxy.endpoint,
        "score",
        &topic,
        json!({"aws.lambda.response.topic": scores, "aws.lambda.batch.size": "20",
               "aws.lambda.linger.ms": "200", "tasks.max": "1"}),
    );
    worker.create(&name, with_dlq(config, &dead)).await;
    let results = consume_all(&broker.bootstrap, &scores, 59, Duration::from_secs(90)).await;
    let offsets: Vec<i64> = results.iter().map(|r| input_of(r).1).collect();
    let expected: Vec<i64> = (0..60).filter(|i| *i != big as i64).collect();
    assert_eq!(
        offsets, expected,
        "every other record scored once, in order"
    );
    for r in &results {
        let id = r.header("lambda.request.id").expect("the request id");
        assert!(id.starts_with("proxy-"), "{id}");
        assert_eq!(
            r.header("lambda.function.version").as_deref(),
            Some("$LATEST")
        );
    }
    let dead_letters = consume_all(&broker.bootstrap, &dead, 1, Duration::from_secs(60)).await;
    assert_eq!(dead_letters.len(), 1);
    assert_eq!(dead_letters[0].json()["id"], json!(big));
    let message = dead_letters[0]
        .header("__connect.errors.exception.message")
        .unwrap_or_default();
    assert!(
        message.contains("over Lambda's payload limit")
            && message.contains("RequestEntityTooLargeException"),
        "{message}"
    );
    assert!(proxy.throttling.too_large.load(Ordering::SeqCst) > 1);
    let (splits, status) = task_counter(&worker, &name, "lambda.batches.split").await;
    assert!(
        splits >= 3,
        "batches of 20 split down to what fits: {status}"
    );
    eventually("all offsets committed", Duration::from_secs(60), || async {
        (worker.committed_sink_records(&name).await? == 60).then_some(())
    })
    .await;
}
