//! Pause, resume, restart and stop on running tasks, without losing records.

use std::time::Duration;

use sluice_tests::{
    Broker, Worker, WorkerSettings, eventually, json, read_json_lines, sequence_report, unique,
    wait_for_every_sequence,
};

#[tokio::test]
async fn pause_resume_restart_stop_lose_nothing() {
    let broker = Broker::start();
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let topic = unique("t");
    let per_task = 6000;
    worker
        .create("gen", json!({"connector.class": "Datagen", "kafka.topic": topic, "records.per.second": "300", "iterations": per_task.to_string()}))
        .await;
    worker.create("sink", json!({"connector.class": "FileStreamSink", "topics": topic, "file": out.to_str().unwrap()})).await;
    let count = || read_json_lines(&out).len();
    eventually("records flowing", Duration::from_secs(60), || async {
        (count() > 200).then_some(())
    })
    .await;

    // Pause: both report PAUSED and the file stops growing.
    assert_eq!(
        worker
            .request("PUT", "/connectors/gen/pause", None)
            .await
            .status,
        202
    );
    assert_eq!(
        worker
            .request("PUT", "/connectors/sink/pause", None)
            .await
            .status,
        202
    );
    worker.wait_for_state("gen", "PAUSED", 1).await;
    worker.wait_for_state("sink", "PAUSED", 1).await;
    let mut last = (count(), std::time::Instant::now());
    let frozen = eventually("the file to stop growing", Duration::from_secs(30), || {
        let now = count();
        let stable = now == last.0 && last.1.elapsed() > Duration::from_millis(1500);
        if now != last.0 {
            last = (now, std::time::Instant::now());
        }
        async move { stable.then_some(now) }
    })
    .await;
    let gen_offset =
        |body: serde_json::Value| body["offsets"][0]["offset"]["seq"].as_i64().unwrap_or(0);
    let paused_seq = gen_offset(worker.get("/connectors/gen/offsets").await.body);
    assert!(
        paused_seq < per_task,
        "paused before the end ({paused_seq})"
    );

    // Resume: records flow again.
    assert_eq!(
        worker
            .request("PUT", "/connectors/gen/resume", None)
            .await
            .status,
        202
    );
    assert_eq!(
        worker
            .request("PUT", "/connectors/sink/resume", None)
            .await
            .status,
        202
    );
    worker.wait_for_state("gen", "RUNNING", 1).await;
    eventually(
        "records flowing after resume",
        Duration::from_secs(60),
        || async { (count() > frozen + 100).then_some(()) },
    )
    .await;

    // Restart with tasks: 202 with a status body; tasks come back RUNNING.
    let restarted = worker
        .request("POST", "/connectors/gen/restart?includeTasks=true", None)
        .await;
    assert_eq!(restarted.status, 202, "{:?}", restarted.body);
    assert_eq!(restarted.body["name"], "gen");
    assert_eq!(
        worker
            .request("POST", "/connectors/sink/tasks/0/restart", None)
            .await
            .status,
        204
    );
    assert_eq!(
        worker
            .request("POST", "/connectors/sink/restart", None)
            .await
            .status,
        204
    );
    worker.wait_for_state("gen", "RUNNING", 1).await;
    worker.wait_for_state("sink", "RUNNING", 1).await;

    // Stop is idempotent and removes the tasks; resume brings them back.
    for _ in 0..2 {
        assert_eq!(
            worker
                .request("PUT", "/connectors/gen/stop", None)
                .await
                .status,
            202
        );
    }
    eventually(
        "gen STOPPED with no tasks",
        Duration::from_secs(30),
        || async {
            let s = worker.get("/connectors/gen/status").await.body;
            (s["connector"]["state"] == "STOPPED" && s["tasks"] == json!([])).then_some(())
        },
    )
    .await;
    assert_eq!(
        worker
            .request("PUT", "/connectors/gen/resume", None)
            .await
            .status,
        202
    );
    worker.wait_for_state("gen", "RUNNING", 1).await;

    // Every record arrives; nothing was lost across pause, resume, restart and stop.
    let records = wait_for_every_sequence(&out, 1, per_task, Duration::from_secs(120)).await;
    let report = sequence_report(&records, 1, per_task);
    eprintln!(
        "lifecycle: {} records, {} duplicates",
        records.len(),
        report.duplicates
    );
    assert_eq!(report.distinct, per_task as usize);
}

#[tokio::test]
async fn failing_task_shows_a_readable_trace_and_restarts() {
    let broker = Broker::start();
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("t");
    // The sink cannot open its file: the task fails, and says why.
    let bad = dir.path().join("missing-dir").join("out.jsonl");
    worker
        .create(
            "gen",
            json!({"connector.class": "Datagen", "kafka.topic": topic, "records.per.second": "5"}),
        )
        .await;
    worker.create("sink", json!({"connector.class": "FileStreamSink", "topics": topic, "file": bad.to_str().unwrap()})).await;
    let trace = worker.failed_task_trace("sink").await;
    assert!(
        trace.contains("missing-dir"),
        "trace does not name the file: {trace}"
    );

    // Fix the cause, restart only failed tasks: it runs.
    std::fs::create_dir_all(bad.parent().unwrap()).unwrap();
    let r = worker
        .request(
            "POST",
            "/connectors/sink/restart?includeTasks=true&onlyFailed=true",
            None,
        )
        .await;
    assert_eq!(r.status, 202);
    worker.wait_for_state("sink", "RUNNING", 1).await;
    eventually("records in the file", Duration::from_secs(60), || async {
        (!read_json_lines(&bad).is_empty()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn malformed_record_fails_sink_task_with_coordinates() {
    let broker = Broker::start();
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "{\"ok\": 1}\nnot json\n").unwrap();
    let topic = unique("t");
    // Plain lines go in as strings; the sink reads them as schemaless JSON, so line 2 is malformed.
    worker
        .create("src", json!({"connector.class": "FileStreamSource", "file": input.to_str().unwrap(), "topic": topic, "value.converter": "string", "topic.creation.default.partitions": "1"}))
        .await;
    worker
        .create("sink", json!({"connector.class": "FileStreamSink", "topics": topic, "file": dir.path().join("out.jsonl").to_str().unwrap(),
            "value.converter": "json", "value.converter.schemas.enable": "false"}))
        .await;
    let trace = worker.failed_task_trace("sink").await;
    assert!(
        trace.contains(&format!("topic {topic}, partition 0, offset 1")),
        "{trace}"
    );
    assert!(trace.contains("value conversion"), "{trace}");
}
