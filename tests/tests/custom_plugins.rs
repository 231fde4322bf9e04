//! A binary built with extra plugins (examples/custom-connector) serves them next to the built-in
//! ones, a source's retriable poll errors are retried, and a sink can produce records through the
//! runtime: Heartbeat → Forward → FileStreamSink.

use std::time::Duration;

use sluice_tests::{Broker, Worker, WorkerSettings, eventually, json, read_json_lines, unique};

#[tokio::test]
async fn custom_source_and_producing_sink_run_in_a_custom_binary() {
    let bin = std::env::var("SLUICE_EXAMPLE_BIN").unwrap_or_else(|_| {
        let exe = std::env::current_exe().unwrap();
        exe.parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("sluice-example-custom-connector")
            .to_string_lossy()
            .into_owned()
    });
    assert!(
        std::path::Path::new(&bin).exists(),
        "{bin} missing: build the workspace first"
    );
    let broker = Broker::start();
    let worker = Worker::start_binary(WorkerSettings::new(&broker), bin.into()).await;
    let plugins = worker.get("/connector-plugins").await.body;
    let classes: Vec<&str> = plugins
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["class"].as_str())
        .collect();
    assert!(
        classes.contains(&"com.example.sluice.HeartbeatConnector")
            && classes.contains(&"io.sluice.connect.datagen.DatagenConnector"),
        "{classes:?}"
    );

    let (beats, forwarded) = (unique("beats"), unique("forwarded"));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    worker
        .create("hb", json!({"connector.class": "Heartbeat", "topic": beats, "interval.ms": "20", "topic.creation.default.partitions": "1", "simulate.retriable.failures": "3"}))
        .await;
    // Forward creates its destination topic (one partition) when it first sends. Its first three
    // puts with records fail with a retriable error: the runtime redelivers those records.
    worker
        .create("fwd", json!({"connector.class": "Forward", "topics": beats, "destination.topic": forwarded, "topic.creation.default.partitions": "1", "simulate.retriable.failures": "3"}))
        .await;
    // Start reading the forwarded topic once Forward committed input, i.e. its output was acknowledged.
    // (Subscribing earlier would let the test broker auto-create the topic with its defaults.)
    eventually(
        "Forward to commit input",
        Duration::from_secs(60),
        || async {
            let committed = worker.committed_sink_records("fwd").await?;
            (committed > 0).then_some(())
        },
    )
    .await;
    worker.create("file", json!({"connector.class": "FileStreamSink", "topics": forwarded, "file": out.to_str().unwrap()})).await;
    let lines = eventually(
        "forwarded heartbeats in the file",
        Duration::from_secs(60),
        || async {
            let lines = read_json_lines(&out);
            (lines.len() >= 20).then_some(lines)
        },
    )
    .await;
    let beats: Vec<i64> = lines.iter().filter_map(|l| l["beat"].as_i64()).collect();
    assert_eq!(
        beats.len(),
        lines.len(),
        "every line is a heartbeat: {lines:?}"
    );
    // Heartbeats count 1, 2, 3, ...: the file holds a gap-free, duplicate-free prefix, in order,
    // although the first three polls failed (retriably: the runtime polled again) and the first
    // records were refused three times by Forward.
    assert_eq!(beats, (1..=beats.len() as i64).collect::<Vec<_>>());
    let status = eventually("the retries in status", Duration::from_secs(30), || async {
        let s = worker.get("/connectors/fwd/status").await.body;
        s["tasks"][0]["errors"]["records_retried"]
            .is_u64()
            .then_some(s)
    })
    .await;
    assert_eq!(status["tasks"][0]["state"], "RUNNING", "{status}");
    assert_eq!(
        status["tasks"][0]["errors"]["records_retried"], 3,
        "{status}"
    );
    // The source's three retriable poll failures were retried, not fatal.
    let hb = worker.get("/connectors/hb/status").await.body;
    assert_eq!(hb["tasks"][0]["state"], "RUNNING", "{hb}");
    assert_eq!(
        worker
            .log()
            .matches("poll failed with a retriable error")
            .count(),
        3,
        "three retried polls"
    );
}
