//! Worker crashes and restarts mid-stream: nothing lost, duplicates bounded by the flush interval.

use std::time::Duration;

use sluice_tests::{
    Broker, Worker, WorkerSettings, eventually, json, read_json_lines, sequence_report, unique,
    wait_for_every_sequence,
};

const TASKS: i64 = 2;
const PER_TASK: i64 = 4000;
const RATE: i64 = 400; // records per second per task
const FLUSH_MS: i64 = 1000;

async fn start_pipeline(worker: &Worker, out: &std::path::Path) {
    let topic = unique("events");
    worker
        .create("gen", json!({
            "connector.class": "Datagen", "kafka.topic": topic, "quickstart": "clickstream",
            "records.per.second": RATE.to_string(), "iterations": PER_TASK.to_string(), "tasks.max": TASKS.to_string(),
            "topic.creation.default.partitions": "2"
        }))
        .await;
    worker.create("sink", json!({"connector.class": "FileStreamSink", "topics": topic, "file": out.to_str().unwrap()})).await;
}

async fn wait_until_lines(
    out: &std::path::Path,
    n: usize,
    timeout: Duration,
) -> Vec<serde_json::Value> {
    eventually(&format!("{n} lines in the sink file"), timeout, || async {
        let r = read_json_lines(out);
        (r.len() >= n).then_some(r)
    })
    .await
}

#[tokio::test]
async fn sigkill_mid_stream_loses_nothing_and_bounds_duplicates() {
    let broker = Broker::start();
    let mut worker = Worker::start(
        WorkerSettings::new(&broker).with("offset.flush.interval.ms", &FLUSH_MS.to_string()),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    start_pipeline(&worker, &out).await;

    // Kill in steady state, with both the source and the sink mid-stream: once the sink has
    // committed half of the stream (before that, it may be catching up in one burst).
    eventually(
        "sink commits past half of the stream",
        Duration::from_secs(60),
        || async {
            let committed = worker.committed_sink_records("sink").await?;
            (committed >= TASKS * PER_TASK / 2).then_some(())
        },
    )
    .await;
    worker.kill();
    let before_restart = read_json_lines(&out).len();
    worker.restart().await;
    worker
        .wait_for_state("gen", "RUNNING", TASKS as usize)
        .await;

    let records = wait_for_every_sequence(&out, TASKS, PER_TASK, Duration::from_secs(120)).await;
    let report = sequence_report(&records, TASKS, PER_TASK);
    // Source: records produced after the last offset write are produced again. Sink: records
    // written after the last commit are written again. Each is at most one flush interval of data
    // (plus one batch in flight).
    let bound = (2 * TASKS * RATE * FLUSH_MS / 1000 + 1000) as usize;
    eprintln!(
        "SIGKILL recovery: {} distinct records, {} duplicates ({} re-delivered by the sink, {} re-produced by the source; bound {bound}), {before_restart} lines before restart",
        report.distinct, report.duplicates, report.sink_duplicates, report.source_duplicates
    );
    assert_eq!(report.distinct, (TASKS * PER_TASK) as usize);
    assert!(
        report.duplicates <= bound,
        "{} duplicates exceed the bound {bound}",
        report.duplicates
    );
}

#[tokio::test]
async fn sigterm_stops_within_bound_and_duplicates_nothing() {
    let broker = Broker::start();
    let mut worker =
        Worker::start(WorkerSettings::new(&broker).with("offset.flush.interval.ms", "60000")).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    start_pipeline(&worker, &out).await;

    wait_until_lines(
        &out,
        (TASKS * PER_TASK / 4) as usize,
        Duration::from_secs(60),
    )
    .await;
    // With a 60 s flush interval nothing was committed yet: only the graceful stop commits.
    let took = worker.terminate();
    assert!(
        took < Duration::from_secs(15),
        "graceful shutdown took {took:?}"
    );
    assert!(
        worker.log().contains("worker stopped"),
        "no clean exit in log"
    );
    worker.restart().await;

    let records = wait_for_every_sequence(&out, TASKS, PER_TASK, Duration::from_secs(120)).await;
    let report = sequence_report(&records, TASKS, PER_TASK);
    eprintln!(
        "SIGTERM restart: shutdown took {took:?}, {} duplicates",
        report.duplicates
    );
    assert_eq!(
        report.duplicates, 0,
        "a graceful stop must commit everything it processed"
    );
}

#[tokio::test]
async fn restarted_worker_recovers_connectors_and_target_states_from_kafka() {
    let broker = Broker::start();
    let mut worker = Worker::start(WorkerSettings::new(&broker)).await;
    let topic = unique("t");
    worker
        .create(
            "running",
            json!({"connector.class": "Datagen", "kafka.topic": topic, "records.per.second": "2"}),
        )
        .await;
    worker
        .create(
            "paused",
            json!({"connector.class": "Datagen", "kafka.topic": topic, "records.per.second": "2"}),
        )
        .await;
    let stopped = worker.request("POST", "/connectors", Some(json!({"name": "stopped", "initial_state": "STOPPED", "config": {"connector.class": "Datagen", "kafka.topic": topic}}))).await;
    assert_eq!(stopped.status, 201, "{:?}", stopped.body);
    assert_eq!(
        worker
            .request("PUT", "/connectors/paused/pause", None)
            .await
            .status,
        202
    );
    worker.wait_for_state("paused", "PAUSED", 1).await;

    worker.kill();
    worker.restart().await;
    assert_eq!(
        worker.get("/connectors").await.body,
        json!(["paused", "running", "stopped"])
    );
    worker.wait_for_state("running", "RUNNING", 1).await;
    worker.wait_for_state("paused", "PAUSED", 1).await;
    let status = worker.get("/connectors/stopped/status").await.body;
    assert_eq!(
        (
            status["connector"]["state"].clone(),
            status["tasks"].clone()
        ),
        (json!("STOPPED"), json!([]))
    );
}
