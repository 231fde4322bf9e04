//! The REST API against a real worker and broker: the happy paths and every bad-input case.

use std::time::Duration;

use sluice_tests::{Broker, Worker, WorkerSettings, eventually, json, unique};

fn datagen(topic: &str) -> serde_json::Value {
    json!({"connector.class": "Datagen", "kafka.topic": topic, "records.per.second": "5", "tasks.max": "2"})
}

#[tokio::test]
async fn connector_crud_and_introspection() {
    let broker = Broker::start();
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let name = unique("gen");
    let topic = unique("topic");

    let root = worker.get("/").await;
    assert_eq!(root.status, 200);
    assert!(
        root.body["version"].is_string() && root.body["kafka_cluster_id"].is_string(),
        "{:?}",
        root.body
    );

    let created = worker
        .request(
            "POST",
            "/connectors",
            Some(json!({"name": name, "config": datagen(&topic)})),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.body["type"], "source");
    assert_eq!(created.body["config"]["name"], name.as_str());

    let list = worker.get("/connectors").await;
    assert_eq!(list.body, json!([name]));
    worker.wait_for_state(&name, "RUNNING", 2).await;

    let expanded = worker.get("/connectors?expand=status&expand=info").await;
    assert_eq!(
        expanded.body[&name]["status"]["connector"]["state"],
        "RUNNING"
    );
    assert_eq!(
        expanded.body[&name]["info"]["tasks"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    let info = worker.get(&format!("/connectors/{name}")).await;
    assert_eq!(
        info.body["tasks"],
        json!([{"connector": name, "task": 0}, {"connector": name, "task": 1}])
    );
    let config = worker.get(&format!("/connectors/{name}/config")).await;
    assert_eq!(config.body["kafka.topic"], topic.as_str());
    let tasks = worker.get(&format!("/connectors/{name}/tasks")).await;
    assert_eq!(tasks.body[1]["id"], json!({"connector": name, "task": 1}));
    let task_status = worker
        .get(&format!("/connectors/{name}/tasks/1/status"))
        .await;
    assert_eq!(
        (
            task_status.body["id"].clone(),
            task_status.body["state"].clone()
        ),
        (json!(1), json!("RUNNING"))
    );
    assert_eq!(
        worker
            .get(&format!("/connectors/{name}/tasks/7/status"))
            .await
            .status,
        404
    );

    // PUT config: updating an existing connector answers 200, creating one 201.
    let mut updated = datagen(&topic);
    updated["tasks.max"] = json!("1");
    let put = worker
        .request("PUT", &format!("/connectors/{name}/config"), Some(updated))
        .await;
    assert_eq!(put.status, 200, "{:?}", put.body);
    worker.wait_for_state(&name, "RUNNING", 1).await;
    let other = unique("gen");
    let put_new = worker
        .request(
            "PUT",
            &format!("/connectors/{other}/config"),
            Some(datagen(&topic)),
        )
        .await;
    assert_eq!(put_new.status, 201, "{:?}", put_new.body);

    // A source records its topic when it first produces to it.
    let topics = eventually(
        "the topic to be recorded",
        Duration::from_secs(30),
        || async {
            let body = worker.get(&format!("/connectors/{name}/topics")).await.body;
            (body[&name]["topics"] == json!([topic])).then_some(body)
        },
    )
    .await;
    assert_eq!(topics[&name]["topics"], json!([topic]));
    let offsets = worker.get(&format!("/connectors/{name}/offsets")).await;
    assert!(offsets.body["offsets"].is_array(), "{:?}", offsets.body);

    let plugins = worker.get("/connector-plugins").await;
    let classes: Vec<&str> = plugins
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["class"].as_str())
        .collect();
    assert!(
        classes.contains(&"io.sluice.connect.datagen.DatagenConnector"),
        "{classes:?}"
    );
    let all = worker.get("/connector-plugins?connectorsOnly=false").await;
    assert!(
        all.body
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["type"] == "transformation")
    );
    let defs = worker.get("/connector-plugins/Datagen/config").await;
    assert!(
        defs.body
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"] == "kafka.topic" && d["required"] == true)
    );

    assert_eq!(
        worker
            .request("DELETE", &format!("/connectors/{name}"), None)
            .await
            .status,
        204
    );
    assert_eq!(worker.get(&format!("/connectors/{name}")).await.status, 404);
    assert_eq!(worker.get("/connectors").await.body, json!([other]));

    let openapi = worker.get("/openapi.json").await;
    assert!(openapi.body["paths"]["/connectors/{name}/status"].is_object());
}

#[tokio::test]
async fn validate_reports_every_error() {
    let broker = Broker::start();
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let r = worker
        .request(
            "PUT",
            "/connector-plugins/Datagen/config/validate",
            Some(json!({"connector.class": "Datagen", "tasks.max": "0", "quickstart": "weather", "transforms": "x", "transforms.x.type": "Nope"})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["name"], "io.sluice.connect.datagen.DatagenConnector");
    let failing: Vec<String> = r.body["configs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| !c["value"]["errors"].as_array().unwrap().is_empty())
        .map(|c| c["value"]["name"].as_str().unwrap().to_owned())
        .collect();
    for key in [
        "name",
        "tasks.max",
        "kafka.topic",
        "quickstart",
        "transforms.x.type",
    ] {
        assert!(
            failing.contains(&key.to_owned()),
            "{key} not reported: {failing:?}"
        );
    }
    assert_eq!(r.body["error_count"].as_u64(), Some(failing.len() as u64));
    let mismatch = worker
        .request(
            "PUT",
            "/connector-plugins/Datagen/config/validate",
            Some(json!({"connector.class": "FileStreamSink"})),
        )
        .await;
    assert_eq!(mismatch.status, 400);
    assert_eq!(
        worker
            .request(
                "PUT",
                "/connector-plugins/Nope/config/validate",
                Some(json!({}))
            )
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn bad_input_gets_connect_style_errors() {
    let broker = Broker::start();
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let check = |r: &sluice_tests::Response, status: u16, fragment: &str| {
        assert_eq!(r.status, status, "{:?}", r.body);
        assert_eq!(r.body["error_code"], json!(status), "{:?}", r.body);
        let message = r.body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(fragment),
            "message {message:?} lacks {fragment:?}"
        );
    };

    check(
        &worker
            .raw(
                "POST",
                "/connectors",
                "application/json",
                b"{\"name\": \"x\", \"config\": {".to_vec(),
            )
            .await,
        400,
        "Malformed JSON",
    );
    check(
        &worker
            .raw("POST", "/connectors", "text/plain", b"{}".to_vec())
            .await,
        415,
        "Content-Type",
    );
    check(
        &worker
            .request(
                "POST",
                "/connectors",
                Some(json!({"config": {"connector.class": "Datagen"}})),
            )
            .await,
        400,
        "name",
    );
    check(
        &worker
            .request("POST", "/connectors", Some(json!({"name": "x"})))
            .await,
        400,
        "config",
    );
    check(
        &worker
            .request(
                "POST",
                "/connectors",
                Some(json!({"name": "x", "config": {"kafka.topic": "t"}})),
            )
            .await,
        400,
        "connector.class",
    );
    check(
        &worker
            .request(
                "POST",
                "/connectors",
                Some(json!({"name": 5, "config": {}})),
            )
            .await,
        400,
        "name",
    );
    check(
        &worker
            .request(
                "POST",
                "/connectors",
                Some(json!({"name": "x", "config": {"connector.class": "Jdbc"}})),
            )
            .await,
        400,
        "io.sluice.connect.datagen.DatagenConnector",
    );
    check(&worker.request("POST", "/connectors", Some(json!({"name": "x", "config": {"connector.class": "Datagen", "tasks.max": ["1"]}}))).await, 400, "must be a string");
    let invalid = worker.request("POST", "/connectors", Some(json!({"name": "x", "config": {"connector.class": "Datagen", "tasks.max": "zero", "quickstart": "weather"}}))).await;
    check(&invalid, 400, "3 error(s)");
    let message = invalid.body["message"].as_str().unwrap();
    assert!(
        message.contains("kafka.topic")
            && message.contains("tasks.max")
            && message.contains("quickstart"),
        "{message}"
    );
    check(
        &worker
            .request(
                "POST",
                "/connectors",
                Some(json!({"name": "a/b", "config": {"connector.class": "Datagen"}})),
            )
            .await,
        400,
        "/",
    );
    check(
        &worker
            .request(
                "PUT",
                "/connectors/x/config",
                Some(json!({"name": "y", "connector.class": "Datagen", "kafka.topic": "t"})),
            )
            .await,
        400,
        "doesn't match",
    );
    let huge = format!(
        "{{\"name\": \"x\", \"config\": {{\"pad\": \"{}\"}}}}",
        "a".repeat(2 * 1024 * 1024)
    );
    check(
        &worker
            .raw("POST", "/connectors", "application/json", huge.into_bytes())
            .await,
        413,
        "too large",
    );

    let name = unique("dup");
    worker.create(&name, json!({"connector.class": "Datagen", "kafka.topic": unique("t"), "records.per.second": "1"})).await;
    check(&worker.request("POST", "/connectors", Some(json!({"name": name, "config": {"connector.class": "Datagen", "kafka.topic": "t"}}))).await, 409, "already exists");

    check(&worker.get("/connectors/missing").await, 404, "missing");
    check(
        &worker.get("/connectors/missing/status").await,
        404,
        "missing",
    );
    check(
        &worker
            .request("PUT", "/connectors/missing/pause", None)
            .await,
        404,
        "missing",
    );
    check(
        &worker
            .request("POST", "/connectors/missing/restart", None)
            .await,
        404,
        "missing",
    );
    check(
        &worker.request("DELETE", "/connectors/missing", None).await,
        404,
        "missing",
    );
    check(
        &worker.get("/connector-plugins/Nope/config").await,
        404,
        "Nope",
    );
    check(&worker.get("/no/such/path").await, 404, "/no/such/path");
    check(
        &worker.request("DELETE", "/connector-plugins", None).await,
        405,
        "Method Not Allowed",
    );
    check(
        &worker
            .request(
                "POST",
                &format!("/connectors/{name}/restart?includeTasks=maybe"),
                None,
            )
            .await,
        400,
        "includeTasks",
    );
    check(
        &worker
            .request(
                "PUT",
                "/admin/loggers/sluice_worker",
                Some(json!({"level": "LOUD"})),
            )
            .await,
        400,
        "LOUD",
    );

    // Nothing above disturbed the worker.
    assert_eq!(worker.get("/health").await.status, 200);
    assert_eq!(worker.get("/connectors").await.body, json!([name]));
}

#[tokio::test]
async fn loggers_can_be_read_and_changed() {
    let broker = Broker::start();
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    assert_eq!(
        worker.get("/admin/loggers").await.body["root"]["level"],
        "INFO"
    );
    let set = worker
        .request(
            "PUT",
            "/admin/loggers/sluice_worker::task",
            Some(json!({"level": "DEBUG"})),
        )
        .await;
    assert_eq!(
        (set.status, set.body.clone()),
        (200, json!(["sluice_worker::task"]))
    );
    assert_eq!(
        worker.get("/admin/loggers/sluice_worker::task").await.body,
        json!({"level": "DEBUG"})
    );
    assert_eq!(worker.get("/admin/loggers/unknown").await.status, 404);
}
