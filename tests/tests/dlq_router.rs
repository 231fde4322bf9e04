//! The DLQ router against a real broker: rules route as configured, retry tiers send records back
//! only once due, attempts stop at the limit, the parking lot holds what the router gave up on and
//! redrives back, and every route is counted.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_connector_api::now_ms;
use sluice_tests::kafka::{Consumed, Produce, consume_all, create_topic, produce, read_topic};
use sluice_tests::{Broker, read_json_lines};
use sluice_tests::{Value, Worker, WorkerSettings, eventually, json, unique};

const BASE_TS: i64 = 1_700_000_000_000;
const RETRIABLE: &str = "org.apache.kafka.connect.errors.RetriableException";
const DATA: &str = "org.apache.kafka.connect.errors.DataException";

/// A dead letter as a sink's error policy writes it: the original bytes plus context headers.
fn dead_letter(i: i64, context: &[(&str, &str)]) -> Produce {
    let mut p = Produce::bytes(0, format!("value-{i}").as_bytes())
        .key(format!("k{i}").as_bytes())
        .header("trace-id", format!("t{i}").as_bytes())
        .at(BASE_TS + i);
    for (k, v) in context {
        let name = if k.starts_with("__") {
            (*k).to_owned()
        } else {
            format!("__connect.errors.{k}")
        };
        p = p.header(&name, v.as_bytes());
    }
    p
}

/// Waits until task 0's connector counters satisfy `done`, and returns them.
async fn counters_when(
    worker: &Worker,
    name: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    eventually(what, Duration::from_secs(90), || async {
        let s = worker.get(&format!("/connectors/{name}/status")).await.body;
        let counters = s["tasks"][0]["errors"]["counters"].clone();
        done(&counters).then_some(counters)
    })
    .await
}

fn by_key(records: &[Consumed]) -> BTreeMap<String, Consumed> {
    records
        .iter()
        .map(|r| {
            let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
            (key, r.clone())
        })
        .collect()
}

#[tokio::test]
async fn rules_route_dead_letters_and_tiers_send_them_back_when_due() {
    let broker = Broker::start();
    let (orders, dlq, parking) = (unique("orders"), unique("orders-dlq"), unique("parked"));
    create_topic(&broker.bootstrap, &orders, 1).await;
    create_topic(&broker.bootstrap, &dlq, 1).await;
    // Another router's record in the tier topic this router uses: not ours to send back.
    let tier = format!("{orders}.retry.2s");
    create_topic(&broker.bootstrap, &tier, 1).await;
    let foreign = dead_letter(
        9,
        &[
            ("topic", &orders),
            ("__sluice.retry.router", "another-router"),
            ("__sluice.retry.due", "0"),
        ],
    );
    produce(&broker.bootstrap, &tier, &[foreign]).await;
    let put_failure: &[(&str, &str)] = &[
        ("topic", &orders),
        ("partition", "0"),
        ("stage", "TASK_PUT"),
        ("exception.class.name", RETRIABLE),
        ("exception.message", "S3 answered 503 SlowDown"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&str, &str)> {
        let mut all = put_failure.to_vec();
        all.extend_from_slice(extra);
        all
    };
    let letters = [
        // 0: transient: retried, then sent back.
        dead_letter(0, put_failure),
        // 1: bad data: parked by rule.
        dead_letter(
            1,
            &[
                ("topic", &orders),
                ("stage", "VALUE_CONVERTER"),
                ("exception.class.name", DATA),
                (
                    "exception.message",
                    "Converting byte[] to Kafka Connect data failed",
                ),
            ],
        ),
        // 2: from a test topic: discarded by rule (the first rule matches first).
        dead_letter(
            2,
            &[
                ("topic", "test-orders"),
                ("stage", "TASK_PUT"),
                ("exception.class.name", RETRIABLE),
                ("exception.message", "503 SlowDown"),
            ],
        ),
        // 3: no rule matches: the default action parks it.
        dead_letter(
            3,
            &[
                ("topic", &orders),
                ("stage", "TRANSFORMATION"),
                (
                    "exception.class.name",
                    "org.apache.kafka.connect.errors.ConnectException",
                ),
                ("exception.message", "boom"),
            ],
        ),
        // 4: transient, but sent back twice already: retries exhausted, parked.
        dead_letter(4, &with(&[("__sluice.retry.attempts", "2")])),
        // 5: transient, but nothing says where it came from: parked.
        dead_letter(
            5,
            &[
                ("stage", "TASK_PUT"),
                ("exception.class.name", RETRIABLE),
                ("exception.message", "timed out"),
            ],
        ),
    ];
    produce(&broker.bootstrap, &dlq, &letters).await;

    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let base = json!({
        "connector.class": "DlqRouter",
        "topics": dlq,
        "parking.lot.topic.name": parking,
        "retry.tiers": "2s",
        "retry.max.attempts": "2",
        "rules": "drop-tests,transient,bad-data",
        "rules.drop-tests.action": "discard",
        "rules.drop-tests.topic.pattern": "test-.*",
        "rules.transient.action": "retry",
        "rules.transient.exception.class": "RetriableException",
        "rules.transient.message.pattern": "SlowDown|timed out",
        "rules.bad-data.action": "park",
        "rules.bad-data.stage": "KEY_CONVERTER,VALUE_CONVERTER",
    });

    // A bad config is refused with every error at once, in Kafka Connect's shape.
    let mut bad = base.clone();
    bad["name"] = json!(unique("bad"));
    bad["rules.transient.action"] = json!("later");
    bad["rules.typo.action"] = json!("park");
    bad["value.converter"] = json!("org.apache.kafka.connect.json.JsonConverter");
    let r = worker
        .request(
            "PUT",
            "/connector-plugins/DlqRouter/config/validate",
            Some(bad.clone()),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["error_count"], 3, "{}", r.body);
    let r = worker
        .request(
            "POST",
            "/connectors",
            Some(json!({"name": bad["name"], "config": bad})),
        )
        .await;
    assert_eq!((r.status, r.body["error_code"].clone()), (400, json!(400)));
    let message = r.body["message"].as_str().unwrap_or_default();
    for key in [
        "rules.transient.action",
        "rules.typo.action",
        "value.converter",
    ] {
        assert!(message.contains(key), "{key} missing from {message}");
    }

    let name = unique("router");
    worker.create(&name, base).await;

    // The retried record comes back to its topic only once due, as it was, with one attempt.
    let back = consume_all(&broker.bootstrap, &orders, 1, Duration::from_secs(90)).await;
    let seen_at = now_ms();
    let tiered = read_topic(&broker.bootstrap, &tier);
    let ours: Vec<&Consumed> = tiered
        .iter()
        .filter(|r| r.header("__sluice.retry.router").as_deref() == Some(name.as_str()))
        .collect();
    assert_eq!(ours.len(), 1, "{tiered:?}");
    let due: i64 = ours[0]
        .header("__sluice.retry.due")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        due - ours[0].timestamp.unwrap(),
        2_000,
        "a tier record waits the tier's delay"
    );
    assert!(seen_at >= due, "sent back {} ms early", due - seen_at);
    assert_eq!(
        ours[0].header("__sluice.router.rule").as_deref(),
        Some("transient")
    );
    assert_eq!(back.len(), 1, "{back:?}");
    let r = &back[0];
    assert_eq!((r.partition, r.key.as_deref()), (0, Some(b"k0".as_slice())));
    assert_eq!(r.value.as_deref(), Some(b"value-0".as_slice()));
    assert_eq!(
        r.timestamp,
        Some(BASE_TS),
        "the original timestamp comes back"
    );
    assert_eq!(
        r.headers,
        vec![
            ("trace-id".to_owned(), Some(b"t0".to_vec())),
            ("__sluice.retry.attempts".to_owned(), Some(b"1".to_vec())),
        ],
        "original headers kept, error and routing headers gone"
    );

    // Everything else is parked, each with its rule and reason, context headers kept.
    let parked =
        by_key(&consume_all(&broker.bootstrap, &parking, 4, Duration::from_secs(60)).await);
    let expect = [
        ("k1", "bad-data", "a park rule matched"),
        ("k3", "default", "a park rule matched"),
        ("k4", "transient", "retries exhausted: sent back 2 times"),
        (
            "k5",
            "transient",
            "no __connect.errors.topic header: it cannot be sent back",
        ),
    ];
    assert_eq!(parked.len(), expect.len(), "{parked:?}");
    for (key, rule, reason) in expect {
        let p = &parked[key];
        assert_eq!(
            p.header("__sluice.router.rule").as_deref(),
            Some(rule),
            "{key}"
        );
        assert_eq!(
            p.header("__sluice.router.reason").as_deref(),
            Some(reason),
            "{key}"
        );
        assert!(p.header("__connect.errors.stage").is_some(), "{key}");
        assert_eq!(
            p.timestamp,
            Some(BASE_TS + key[1..].parse::<i64>().unwrap())
        );
    }

    // Every route is counted in the task's status.
    let counters = counters_when(&worker, &name, "every route counted", |c| {
        c["redelivered"] == 1 && c["parked"] == 4 && c["foreign"] == 1
    })
    .await;
    for (counter, n) in [
        ("rule.drop-tests", 1),
        ("rule.transient", 3),
        ("rule.bad-data", 1),
        ("rule.default", 1),
        ("discarded", 1),
        ("retried.2s", 1),
        ("retries.exhausted", 1),
    ] {
        assert_eq!(counters[counter], n, "{counter} in {counters}");
    }
    // The same counters are in the worker's metrics.
    let metrics = worker.get("/metrics").await.body;
    let metrics = metrics.as_str().unwrap_or_default();
    for (counter, n) in [("rule.transient", 3), ("parked", 4), ("discarded", 1)] {
        let line = format!(
            "sluice_connector_records_total{{connector=\"{name}\",counter=\"{counter}\",task=\"0\"}} {n}"
        );
        assert!(metrics.contains(&line), "{line} missing from {metrics}");
    }
    // The foreign tier record was left alone.
    assert_eq!(read_topic(&broker.bootstrap, &orders).len(), 1);

    // Redrive the parking lot: the three records that name their topic go back to it.
    let r = worker
        .request(
            "POST",
            &format!("/dead-letters/{parking}/redrive"),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["redriven"], 3, "{}", r.body);
    assert_eq!(r.body["skipped"].as_array().map(Vec::len), Some(1));
    let back = by_key(&consume_all(&broker.bootstrap, &orders, 4, Duration::from_secs(60)).await);
    assert_eq!(
        back["k4"].header("__sluice.retry.attempts").as_deref(),
        Some("3")
    );
    assert!(back["k4"].header("__sluice.router.rule").is_none());
    assert_eq!(
        back["k1"].header("__sluice.retry.attempts").as_deref(),
        Some("1")
    );
}

#[tokio::test]
async fn a_record_that_keeps_failing_is_retried_through_every_tier_then_parked() {
    let broker = Broker::start();
    let (orders, dlq, parking) = (unique("orders"), unique("orders-dlq"), unique("parked"));
    create_topic(&broker.bootstrap, &orders, 1).await;
    create_topic(&broker.bootstrap, &dlq, 1).await;
    let records: Vec<Produce> = (0..4)
        .map(|i| match i {
            2 => Produce::bytes(0, b"{not json").key(b"poison"),
            _ => Produce::bytes(0, format!(r#"{{"n": {i}}}"#).as_bytes()).key(b"good"),
        })
        .collect();
    produce(&broker.bootstrap, &orders, &records).await;
    let worker = Worker::start(WorkerSettings::new(&broker)).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("orders.jsonl");
    // A sink whose dead letters go to `dlq`, and a router that retries everything in it.
    worker
        .create(
            &unique("orders-sink"),
            json!({
                "connector.class": "FileStreamSink",
                "topics": orders,
                "file": out.to_string_lossy(),
                "key.converter": "org.apache.kafka.connect.storage.StringConverter",
                "value.converter": "org.apache.kafka.connect.json.JsonConverter",
                "value.converter.schemas.enable": "false",
                "errors.tolerance": "all",
                "errors.deadletterqueue.topic.name": dlq,
                "errors.deadletterqueue.topic.replication.factor": "1",
                "errors.deadletterqueue.context.headers.enable": "true",
            }),
        )
        .await;
    let router = unique("router");
    worker
        .create(
            &router,
            json!({
                "connector.class": "DlqRouter",
                "topics": dlq,
                "parking.lot.topic.name": parking,
                "retry.tiers": "1s,2s",
                "retry.max.attempts": "2",
                "default.action": "retry",
            }),
        )
        .await;

    // The poison record fails three times: attempts 0 and 1 wait in the 1s and 2s tiers and go
    // back; attempt 2 is the limit, so it is parked.
    let parked = consume_all(&broker.bootstrap, &parking, 1, Duration::from_secs(120)).await;
    let show = |records: &[Consumed]| -> Vec<String> {
        records
            .iter()
            .map(|r| {
                format!(
                    "{}@{} {:?} {:?}",
                    r.partition,
                    r.offset,
                    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()),
                    r.headers
                        .iter()
                        .map(|(k, v)| format!(
                            "{k}={}",
                            String::from_utf8_lossy(v.as_deref().unwrap_or_default())
                        ))
                        .filter(|h| !h.contains("stacktrace"))
                        .collect::<Vec<_>>()
                )
            })
            .collect()
    };
    assert_eq!(
        parked.len(),
        1,
        "parked {:#?}\norders {:#?}\ndlq {:#?}",
        show(&parked),
        show(&read_topic(&broker.bootstrap, &orders)),
        show(&read_topic(&broker.bootstrap, &dlq))
    );
    assert_eq!(parked[0].value.as_deref(), Some(b"{not json".as_slice()));
    assert_eq!(
        parked[0].header("__sluice.retry.attempts").as_deref(),
        Some("2")
    );
    assert_eq!(
        parked[0].header("__sluice.router.reason").as_deref(),
        Some("retries exhausted: sent back 2 times")
    );
    let counters = counters_when(&worker, &router, "the park counted", |c| c["parked"] == 1).await;
    assert_eq!(counters["redelivered"], 2, "{counters}");
    assert_eq!(
        (
            counters["retried.1s"].clone(),
            counters["retried.2s"].clone()
        ),
        (json!(1), json!(1))
    );

    let attempts = |records: Vec<Consumed>| -> Vec<Option<String>> {
        records
            .iter()
            .map(|r| r.header("__sluice.retry.attempts"))
            .collect()
    };
    let dead = read_topic(&broker.bootstrap, &dlq);
    assert_eq!(attempts(dead), [None, Some("1".into()), Some("2".into())]);
    for (tier, n) in [("1s", 1), ("2s", 1)] {
        let tiered = read_topic(&broker.bootstrap, &format!("{orders}.retry.{tier}"));
        assert_eq!(tiered.len(), n, "{tier}: {tiered:?}");
    }
    // The original 4 plus two sends back, and no more once parked.
    assert_eq!(
        attempts(read_topic(&broker.bootstrap, &orders)),
        [None, None, None, None, Some("1".into()), Some("2".into())]
    );
    // Good records were written once each; the poison record never.
    let written = eventually(
        "3 good records written",
        Duration::from_secs(30),
        || async {
            let lines = read_json_lines(&out);
            (lines.len() >= 3).then_some(lines)
        },
    )
    .await;
    assert_eq!(written, [json!({"n": 0}), json!({"n": 1}), json!({"n": 3})]);
}
