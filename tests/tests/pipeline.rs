//! Records flowing datagen → Kafka → file sink: exactly once on a clean run, transforms applied.

use std::time::Duration;

use sluice_tests::{
    Broker, Worker, WorkerSettings, eventually, json, read_json_lines, sequence_report, unique,
};

#[tokio::test]
async fn every_sequence_number_arrives_exactly_once() {
    let broker = Broker::start();
    // A tiny producer queue keeps the source tasks in back-pressure (QueueFull) all the time.
    let settings =
        WorkerSettings::new(&broker).with("producer.queue.buffering.max.messages", "500");
    let worker = Worker::start(settings).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let topic = unique("orders");
    let (tasks, per_task) = (2, 2000);
    worker
        .create(&unique("gen"), json!({
            "connector.class": "Datagen", "kafka.topic": topic, "quickstart": "iot", "records.per.second": "0",
            "iterations": per_task.to_string(), "tasks.max": tasks.to_string(), "topic.creation.default.partitions": "3"
        }))
        .await;
    let sink = unique("sink");
    worker.create(&sink, json!({"connector.class": "FileStreamSink", "topics": topic, "file": out.to_str().unwrap()})).await;
    let records = eventually(
        "all records in the file",
        Duration::from_secs(90),
        || async {
            let records = read_json_lines(&out);
            (records.len() >= (tasks * per_task) as usize).then_some(records)
        },
    )
    .await;
    let report = sequence_report(&records, tasks, per_task);
    assert!(
        report.missing.is_empty(),
        "missing {:?}",
        &report.missing[..report.missing.len().min(10)]
    );
    assert_eq!(report.duplicates, 0);
    assert_eq!(records.len(), (tasks * per_task) as usize);
    assert!(
        records[0]["device_id"]
            .as_str()
            .is_some_and(|d| d.starts_with("device-")),
        "{}",
        records[0]
    );

    // Committed sink offsets cover every record: 2 tasks x 2000 records over 3 partitions.
    eventually(
        "sink offsets committed",
        Duration::from_secs(30),
        || async {
            let total = worker.committed_sink_records(&sink).await?;
            (total == tasks * per_task).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn transforms_and_predicates_apply_in_the_pipeline() {
    let broker = Broker::start();
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    let out = dir.path().join("out.jsonl");
    std::fs::write(&input, "alpha\nbeta\ndrop-me\ngamma\n").unwrap();
    let raw = unique("lines");
    worker
        .create(&unique("src"), json!({
            "connector.class": "FileStreamSource", "file": input.to_str().unwrap(), "topic": raw,
            // One partition keeps the lines in file order (null keys spread over partitions).
            "topic.creation.default.partitions": "1",
            "transforms": "wrap,tag",
            "transforms.wrap.type": "HoistField$Value", "transforms.wrap.field": "line",
            "transforms.tag.type": "org.apache.kafka.connect.transforms.InsertField$Value",
            "transforms.tag.static.field": "source", "transforms.tag.static.value": "file"
        }))
        .await;
    worker
        .create(&unique("sink"), json!({
            "connector.class": "FileStreamSink", "topics": raw, "file": out.to_str().unwrap(),
            "transforms": "skip,mask",
            "transforms.skip.type": "Filter", "transforms.skip.predicate": "isDrop",
            "transforms.mask.type": "MaskField$Value", "transforms.mask.fields": "source",
            "predicates": "isDrop", "predicates.isDrop.type": "HasHeaderKey", "predicates.isDrop.name": "never-set",
            "transforms.mask.predicate": "isDrop", "transforms.mask.negate": "true"
        }))
        .await;
    let records = eventually("4 lines", Duration::from_secs(60), || async {
        let r = read_json_lines(&out);
        (r.len() >= 4).then_some(r)
    })
    .await;
    assert_eq!(
        records,
        vec![
            json!({"line": "alpha", "source": ""}),
            json!({"line": "beta", "source": ""}),
            json!({"line": "drop-me", "source": ""}),
            json!({"line": "gamma", "source": ""}),
        ]
    );

    // Lines appended later are picked up from the stored position, not re-read from the start.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"delta\n"))
        .unwrap();
    let records = eventually("5 lines", Duration::from_secs(60), || async {
        let r = read_json_lines(&out);
        (r.len() >= 5).then_some(r)
    })
    .await;
    assert_eq!(records.len(), 5);
    assert_eq!(records[4]["line"], "delta");
}
