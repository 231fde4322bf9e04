//! The router task's decisions with the runtime played by the kit's test double: a matching
//! retry rule sends a dead letter to its tier, anything else is parked, and a tier record waits
//! (paused, rewound) until it is due and then goes back to its original topic.

use std::sync::Arc;

use sluice_connector_api::dead_letter;
use sluice_connector_api::testing::{FakeSinkControl, props};
use sluice_connector_api::{SinkRecord, SinkTask, TopicPartition, now_ms};

use super::DlqRouterTask;

const DLQ: &str = "orders.dlq";
const TIMEOUT: &str = "java.util.concurrent.TimeoutException";

fn dead_letter(offset: i64, exception: &str) -> SinkRecord {
    let mut r = FakeSinkControl::record(DLQ, 0, offset, br#"{"id":1}"#);
    r.record.headers.add_str(dead_letter::TOPIC, "orders");
    r.record
        .headers
        .add_str(dead_letter::EXCEPTION_CLASS_NAME, exception);
    r
}

async fn router(control: &Arc<FakeSinkControl>) -> DlqRouterTask {
    let mut task = DlqRouterTask::default();
    let p = props(&[
        ("topics", DLQ),
        ("parking.lot.topic.name", "orders.parked"),
        ("retry.tiers", "1m"),
        ("rules", "transient"),
        ("rules.transient.action", "retry"),
        ("rules.transient.exception.class", TIMEOUT),
    ]);
    task.start(control.context("router", 0), &p)
        .await
        .expect("starts");
    task
}

#[tokio::test]
async fn a_matching_retry_rule_sends_to_the_tier_and_the_rest_is_parked() {
    let control = FakeSinkControl::new();
    let mut task = router(&control).await;
    task.put(vec![
        dead_letter(0, TIMEOUT),
        dead_letter(1, "DataException"),
    ])
    .await
    .expect("put");
    let sent = control.sent();
    let topics: Vec<&str> = sent.iter().map(|r| r.topic.as_str()).collect();
    assert_eq!(topics, ["orders.retry.1m", "orders.parked"]);
    assert_eq!(
        sent[0].headers.last_str(dead_letter::ROUTER_RULE),
        Some("transient")
    );
    assert_eq!(
        sent[0].headers.last_str(dead_letter::RETRY_ROUTER),
        Some("router")
    );
    let due: i64 = sent[0]
        .headers
        .last_str(dead_letter::RETRY_DUE)
        .and_then(|d| d.parse().ok())
        .expect("a due time");
    assert!(due >= now_ms() + 50_000, "due in about a minute: {due}");
    assert_eq!(
        sent[1].headers.last_str(dead_letter::ROUTER_RULE),
        Some("default")
    );
    assert_eq!(
        sent[1].value.as_deref(),
        Some(&br#"{"id":1}"#[..]),
        "byte for byte"
    );
}

#[tokio::test]
async fn a_tier_record_waits_until_due_then_goes_back_to_its_topic() {
    let control = FakeSinkControl::new();
    let mut task = router(&control).await;
    task.put(vec![dead_letter(0, TIMEOUT)]).await.expect("put");
    let retried = control.sent().remove(0);

    // The tier record, as read back from the tier topic: not due yet.
    let tier = TopicPartition::new("orders.retry.1m", 0);
    let as_read = |due: i64| {
        let mut r = FakeSinkControl::record(&tier.topic, 0, 5, br#"{"id":1}"#);
        r.record.headers = retried.headers.clone();
        r.record.headers.remove_all(dead_letter::RETRY_DUE);
        r.record
            .headers
            .add_str(dead_letter::RETRY_DUE, &due.to_string());
        r
    };
    task.put(vec![as_read(now_ms() + 60_000)])
        .await
        .expect("put");
    assert!(control.paused().contains(&tier), "the tier waits paused");
    let resets = control.take_resets();
    assert_eq!(
        resets.last().and_then(|r| r.get(&tier)),
        Some(&5),
        "rewound to it"
    );
    assert_eq!(control.sent().len(), 1, "nothing more sent yet");

    // Once due it goes back to its original topic, with one attempt counted.
    task.close(std::slice::from_ref(&tier))
        .await
        .expect("close");
    task.put(vec![as_read(now_ms() - 1)]).await.expect("put");
    let back = control.sent().pop().expect("sent back");
    assert_eq!(back.topic, "orders");
    assert_eq!(back.headers.last_str(dead_letter::ATTEMPTS), Some("1"));
}
