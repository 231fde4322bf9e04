//! Error policies against a real broker: poison records at known positions, through sinks and
//! sources, at each stage. With `errors.tolerance=all` every good record arrives once and every
//! poison record is in the dead-letter queue with Kafka Connect's headers and its original bytes;
//! with `none` the task fails at the first poison record and its trace names it.

use std::collections::BTreeSet;
use std::time::Duration;

use sluice_tests::kafka::{Consumed, Produce, consume_all, create_topic, produce, read_topic};
use sluice_tests::{Broker, Value, Worker, WorkerSettings, eventually, json, unique};

const JSON: &str = "org.apache.kafka.connect.json.JsonConverter";
const BASE_TS: i64 = 1_700_000_000_000;

/// The settings of a dead-letter queue `dlq` on this one-broker cluster, with context headers.
fn dlq_settings(dlq: &str) -> Value {
    json!({
        "errors.tolerance": "all",
        "errors.deadletterqueue.topic.name": dlq,
        "errors.deadletterqueue.topic.replication.factor": "1",
        "errors.deadletterqueue.context.headers.enable": "true",
    })
}

/// `config` with `extra`'s keys added.
fn with(mut config: Value, extra: Value) -> Value {
    let extra = extra.as_object().cloned().unwrap_or_default();
    config.as_object_mut().unwrap().extend(extra);
    config
}

/// Waits until the task's status shows `failed` failed records and returns its errors.
async fn task_errors(worker: &Worker, name: &str, failed: u64) -> Value {
    eventually(
        "the error counts in status",
        Duration::from_secs(30),
        || async {
            let s = worker.get(&format!("/connectors/{name}/status")).await.body;
            let errors = s["tasks"][0]["errors"].clone();
            (errors["records_failed"] == failed).then_some(errors)
        },
    )
    .await
}

fn numbers_in(path: &std::path::Path) -> Vec<i64> {
    sluice_tests::read_json_lines(path)
        .iter()
        .map(|v| v["n"].as_i64().expect("a number n"))
        .collect()
}

#[tokio::test]
async fn sink_conversion_and_transform_failures_are_dead_lettered_byte_for_byte() {
    let broker = Broker::start();
    let topic = unique("payments");
    create_topic(&broker.bootstrap, &topic, 1).await;
    // 20 records; offset 3 is not JSON (value conversion fails), offset 7 has a string where the
    // Cast transform needs a number (the transform fails).
    let records: Vec<Produce> = (0..20)
        .map(|i| {
            let value = match i {
                3 => b"{not json".to_vec(),
                7 => br#"{"n": "seven"}"#.to_vec(),
                _ => format!(r#"{{"n": {i}}}"#).into_bytes(),
            };
            Produce::bytes(0, &value)
                .key(format!("k{i}").as_bytes())
                .header("trace-id", format!("t{i}").as_bytes())
                .at(BASE_TS + i)
        })
        .collect();
    produce(&broker.bootstrap, &topic, &records).await;
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("payments.jsonl");
    let dlq = unique("payments-dlq");
    let name = unique("tolerant-sink");
    let config = |extra: Value| {
        let c = json!({
            "connector.class": "FileStreamSink",
            "topics": topic,
            "file": out.to_string_lossy(),
            "key.converter": "org.apache.kafka.connect.storage.StringConverter",
            "value.converter": JSON,
            "value.converter.schemas.enable": "false",
            "transforms": "toInt",
            "transforms.toInt.type": "org.apache.kafka.connect.transforms.Cast$Value",
            "transforms.toInt.spec": "n:int64",
        });
        with(c, extra)
    };
    worker.create(&name, config(dlq_settings(&dlq))).await;

    let dead = consume_all(&broker.bootstrap, &dlq, 2, Duration::from_secs(60)).await;
    let good = eventually(
        "18 good records in the file",
        Duration::from_secs(60),
        || async {
            let n = if out.exists() {
                numbers_in(&out)
            } else {
                Vec::new()
            };
            (n.len() >= 18).then_some(n)
        },
    )
    .await;
    let expected: Vec<i64> = (0..20).filter(|i| ![3, 7].contains(i)).collect();
    assert_eq!(good, expected, "every good record once, in order");
    assert_eq!(dead.len(), 2, "exactly the poison records: {dead:?}");
    assert_eq!(good.len() + dead.len(), records.len());

    let check = |d: &Consumed, offset: i64, stage: &str, class: &str, exception: &str| {
        let original = &records[offset as usize];
        assert_eq!(d.key, original.key, "key kept");
        assert_eq!(d.value, original.value, "value kept byte for byte");
        assert_eq!(d.timestamp, Some(BASE_TS + offset), "timestamp kept");
        assert_eq!(
            d.headers[0],
            (
                "trace-id".to_owned(),
                Some(format!("t{offset}").into_bytes())
            ),
            "original headers kept, first"
        );
        let h = |k: &str| d.header(&format!("__connect.errors.{k}"));
        assert_eq!(h("topic").as_deref(), Some(topic.as_str()));
        assert_eq!(h("partition").as_deref(), Some("0"));
        assert_eq!(h("offset"), Some(offset.to_string()));
        assert_eq!(h("connector.name").as_deref(), Some(name.as_str()));
        assert_eq!(h("task.id").as_deref(), Some("0"));
        assert_eq!(h("stage").as_deref(), Some(stage));
        assert_eq!(h("class.name").as_deref(), Some(class));
        assert_eq!(
            h("exception.class.name"),
            Some(format!("org.apache.kafka.connect.errors.{exception}"))
        );
        assert!(!h("exception.message").unwrap_or_default().is_empty());
        assert!(!h("exception.stacktrace").unwrap_or_default().is_empty());
    };
    check(&dead[0], 3, "VALUE_CONVERTER", JSON, "DataException");
    check(
        &dead[1],
        7,
        "TRANSFORMATION",
        "org.apache.kafka.connect.transforms.Cast$Value",
        "DataException",
    );

    // The task keeps running and shows what it did, in status and in metrics.
    let errors = task_errors(&worker, &name, 2).await;
    assert_eq!(errors["records_dead_lettered"], 2);
    assert_eq!(errors["records_skipped"], 0);
    assert_eq!(errors["last_error"]["stage"], "TRANSFORMATION");
    assert!(
        errors["last_error"]["record"]
            .as_str()
            .unwrap()
            .ends_with("partition 0, offset 7"),
        "{errors}"
    );
    let metrics = worker.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    let metrics = metrics.body.as_str().unwrap_or_default().to_owned();
    assert!(
        metrics.contains(&format!(
            "sluice_task_records_dead_lettered_total{{connector=\"{name}\",task=\"0\"}} 2"
        )),
        "{metrics}"
    );

    // Redrive by time: only the record at BASE_TS + 7 (the DLQ keeps timestamps) goes back to
    // the payments topic, fails the same way, and returns to the DLQ with one attempt counted.
    let redrive = |body: Value| {
        let worker = &worker;
        let path = format!("/dead-letters/{dlq}/redrive");
        async move { worker.request("POST", &path, Some(body)).await }
    };
    let r = redrive(json!({"from_timestamp": BASE_TS + 5})).await;
    assert_eq!(
        (r.status, r.body["redriven"].clone()),
        (200, json!(1)),
        "{:?}",
        r.body
    );
    let dead = consume_all(&broker.bootstrap, &dlq, 3, Duration::from_secs(60)).await;
    assert_eq!(dead[2].value, records[7].value);
    assert_eq!(
        dead[2].header("__sluice.retry.attempts").as_deref(),
        Some("1")
    );
    assert_eq!(
        dead[2].header("__connect.errors.offset").as_deref(),
        Some("20")
    );
    assert_eq!(
        dead[2].headers[0],
        ("trace-id".to_owned(), Some(b"t7".to_vec())),
        "no stale context headers ride along"
    );
    // By offsets 1 and 2: the same record twice, now on its first and second attempts.
    let r = redrive(json!({"partition": 0, "from_offset": 1, "to_offset": 3})).await;
    assert_eq!(r.body["redriven"], 2, "{:?}", r.body);
    let dead = consume_all(&broker.bootstrap, &dlq, 5, Duration::from_secs(60)).await;
    assert_eq!(
        dead[4].header("__sluice.retry.attempts").as_deref(),
        Some("2")
    );
    // Bad requests get Connect-style errors.
    let r = redrive(json!({"from_offset": "soon"})).await;
    assert_eq!((r.status, r.body["error_code"].clone()), (400, json!(400)));
    let r = worker
        .request(
            "POST",
            &format!("/dead-letters/{}/redrive", unique("none")),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, 404, "{:?}", r.body);

    // errors.tolerance=none: the first poison record fails the task, and the trace names it.
    let strict = unique("strict-sink");
    let strict_out = dir.path().join("strict.jsonl");
    let mut strict_config = config(json!({}));
    strict_config["file"] = json!(strict_out.to_string_lossy());
    worker.create(&strict, strict_config).await;
    let trace = worker.failed_task_trace(&strict).await;
    assert!(
        trace.contains(&format!("topic {topic}, partition 0, offset 3"))
            && trace.contains("VALUE_CONVERTER"),
        "{trace}"
    );
    // Nothing at or after the poison record was written (those before it share its batch, which
    // was never put).
    let written = if strict_out.exists() {
        numbers_in(&strict_out)
    } else {
        Vec::new()
    };
    assert!(written.iter().all(|n| *n < 3), "{written:?}");
}

#[tokio::test]
async fn source_conversion_failures_are_dead_lettered_and_nothing_is_lost() {
    let broker = Broker::start();
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let topic = unique("orders");
    let dlq = unique("orders-dlq");
    let name = unique("poisoned-datagen");
    // Every fifth record (seq 4, 9, ...) breaks its schema, so its value conversion fails.
    worker
        .create(
            &name,
            with(
                json!({
                "connector.class": "Datagen",
                "kafka.topic": topic,
                "quickstart": "orders",
                "records.per.second": "0",
                "iterations": "100",
                "poison.every": "5",
                "value.converter": JSON,
                "value.converter.schemas.enable": "false",
                }),
                dlq_settings(&dlq),
            ),
        )
        .await;
    let good = consume_all(&broker.bootstrap, &topic, 80, Duration::from_secs(60)).await;
    let dead = consume_all(&broker.bootstrap, &dlq, 20, Duration::from_secs(60)).await;
    let seqs = |records: &[Consumed]| -> Vec<i64> {
        records
            .iter()
            .map(|r| r.json()["seq"].as_i64().expect("seq"))
            .collect()
    };
    let (good_seqs, dead_seqs) = (seqs(&good), seqs(&dead));
    assert_eq!(good_seqs.len(), 80, "no duplicates among good records");
    assert_eq!(dead_seqs, (0..20).map(|i| i * 5 + 4).collect::<Vec<_>>());
    let all: BTreeSet<i64> = good_seqs.iter().chain(&dead_seqs).copied().collect();
    assert_eq!(all, (0..100).collect(), "good + dead-lettered = produced");
    let first = &dead[0];
    assert_eq!(
        first.header("__connect.errors.stage").as_deref(),
        Some("VALUE_CONVERTER")
    );
    assert_eq!(first.header("__connect.errors.topic"), Some(topic.clone()));
    assert_eq!(
        first.header("__connect.errors.source.partition").as_deref(),
        Some(r#"{"datagen.task":0}"#)
    );
    assert_eq!(
        first.header("__connect.errors.source.offset").as_deref(),
        Some(r#"{"seq":5}"#)
    );
    assert!(first.header("__connect.errors.partition").is_none());
    let errors = task_errors(&worker, &name, 20).await;
    assert_eq!(errors["records_dead_lettered"], 20);

    // errors.tolerance=none: the task fails at seq 4, and says where the record came from.
    let strict = unique("strict-datagen");
    worker
        .create(
            &strict,
            json!({
                "connector.class": "Datagen",
                "kafka.topic": unique("strict-orders"),
                "records.per.second": "0",
                "iterations": "100",
                "poison.every": "5",
                "value.converter": JSON,
            }),
        )
        .await;
    let trace = worker.failed_task_trace(&strict).await;
    assert!(
        trace.contains(r#"source partition {"datagen.task":0}, source offset {"seq":5}"#)
            && trace.contains("VALUE_CONVERTER"),
        "{trace}"
    );
}

#[tokio::test]
async fn source_transform_and_produce_failures_follow_the_policy() {
    let broker = Broker::start();
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let dir = tempfile::tempdir().unwrap();

    // A transform fails on "x": dead-lettered as the record was before the transform.
    let numbers = dir.path().join("numbers.txt");
    std::fs::write(&numbers, "1\n2\nx\n4\n").unwrap();
    let (topic, dlq, name) = (unique("numbers"), unique("numbers-dlq"), unique("cast"));
    worker
        .create(
            &name,
            with(
                json!({
                "connector.class": "FileStreamSource",
                "file": numbers.to_string_lossy(),
                "topic": topic,
                "value.converter": JSON,
                "value.converter.schemas.enable": "false",
                "transforms": "toInt",
                "transforms.toInt.type": "Cast$Value",
                "transforms.toInt.spec": "int32",
                }),
                dlq_settings(&dlq),
            ),
        )
        .await;
    let good = consume_all(&broker.bootstrap, &topic, 3, Duration::from_secs(60)).await;
    let dead = consume_all(&broker.bootstrap, &dlq, 1, Duration::from_secs(60)).await;
    // Records without keys spread over the topic's partitions: compare as sets.
    let mut values: Vec<i64> = good.iter().filter_map(|r| r.json().as_i64()).collect();
    values.sort_unstable();
    assert_eq!(values, [1, 2, 4]);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].json(), json!("x"));
    assert_eq!(
        dead[0].header("__connect.errors.stage").as_deref(),
        Some("TRANSFORMATION")
    );

    // Kafka refuses a line larger than the producer's message.max.bytes: with tolerance all and
    // no dead-letter queue the record is skipped, counted and logged; the others arrive.
    let lines = dir.path().join("lines.txt");
    let huge = "h".repeat(1_100_000);
    std::fs::write(&lines, format!("a\n{huge}\nc\n")).unwrap();
    let (topic, name) = (unique("lines"), unique("oversize"));
    worker
        .create(
            &name,
            json!({
                "connector.class": "FileStreamSource",
                "file": lines.to_string_lossy(),
                "topic": topic,
                "value.converter": "org.apache.kafka.connect.storage.StringConverter",
                "errors.tolerance": "all",
                "errors.log.enable": "true",
            }),
        )
        .await;
    let good = consume_all(&broker.bootstrap, &topic, 2, Duration::from_secs(60)).await;
    let mut values: Vec<&[u8]> = good.iter().filter_map(|r| r.value.as_deref()).collect();
    values.sort_unstable();
    assert_eq!(values, [b"a".as_slice(), b"c".as_slice()]);
    let errors = task_errors(&worker, &name, 1).await;
    assert_eq!(errors["records_skipped"], 1);
    assert_eq!(errors["last_error"]["stage"], "KAFKA_PRODUCE");
    assert_eq!(read_topic(&broker.bootstrap, &topic).len(), 2);
}

#[tokio::test]
async fn the_circuit_breaker_stops_a_task_that_fails_most_records() {
    let broker = Broker::start();
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let name = unique("broken-deploy");
    let dlq = unique("broken-dlq");
    // Every second record fails; the breaker trips when half of a 20-record window failed.
    worker
        .create(
            &name,
            json!({
                "connector.class": "Datagen",
                "kafka.topic": unique("broken"),
                "records.per.second": "0",
                "iterations": "1000",
                "batch.size": "10",
                "poison.every": "2",
                "value.converter": JSON,
                "errors.tolerance": "all",
                "errors.deadletterqueue.topic.name": dlq,
                "errors.deadletterqueue.topic.replication.factor": "1",
                "errors.circuit.breaker.threshold": "0.5",
                "errors.circuit.breaker.window.records": "20",
            }),
        )
        .await;
    let trace = worker.failed_task_trace(&name).await;
    assert!(
        trace.contains("Circuit breaker open: 10 of the last 20 records failed"),
        "{trace}"
    );
    let dead = read_topic(&broker.bootstrap, &dlq);
    assert_eq!(dead.len(), 10, "it stopped at the tenth dead letter");
}
