use std::cell::Cell;
use std::time::Instant;

use sluice_connector_api::Props;

use super::*;
use crate::metrics::Metrics;

fn handler(policy: ErrorPolicy) -> (ErrorHandler, Arc<TaskMetrics>) {
    let metrics = Metrics::new().task(&TaskId::new("c", 0));
    // Nothing here talks to Kafka: without a dead-letter queue no client is created.
    let clients = KafkaClients::new("127.0.0.1:1", |_| Props::new());
    (
        ErrorHandler::new(TaskId::new("c", 0), policy, Arc::clone(&metrics), clients),
        metrics,
    )
}

fn failing(retriable: bool) -> StageError {
    StageError {
        stage: Stage::ValueConverter,
        class: "JsonConverter".into(),
        error: if retriable {
            ConnectError::retriable("registry unavailable")
        } else {
            ConnectError::user("not JSON")
        },
    }
}

const AT: Origin<'static> = Origin::Kafka {
    topic: "orders",
    partition: 2,
    offset: 41,
};

#[test]
fn the_policy_backs_off_from_300_ms_up_to_its_maximum_within_its_timeout() {
    let (handler, _) = handler(ErrorPolicy {
        retry_timeout: Some(Duration::from_secs(30)),
        retry_delay_max: Duration::from_secs(2),
        ..ErrorPolicy::default()
    });
    let backoff = handler.backoff();
    assert_eq!(backoff.ceiling(0), Duration::from_millis(300));
    assert_eq!(backoff.ceiling(1), Duration::from_millis(600));
    assert_eq!(backoff.ceiling(20), Duration::from_secs(2));
    assert_eq!(backoff.budget(), Some(Duration::from_secs(30)));
    let (never, _) = handler_never_retrying();
    assert!(!never.retries());
}

fn handler_never_retrying() -> (ErrorHandler, Arc<TaskMetrics>) {
    handler(ErrorPolicy {
        retry_timeout: Some(Duration::ZERO),
        ..ErrorPolicy::default()
    })
}

#[tokio::test]
async fn retriable_failures_are_retried_until_they_pass() {
    let (handler, metrics) = handler(ErrorPolicy {
        retry_timeout: Some(Duration::from_secs(30)),
        retry_delay_max: Duration::from_millis(2),
        ..ErrorPolicy::default()
    });
    let calls = Cell::new(0);
    let result = handler
        .retry(|| {
            calls.set(calls.get() + 1);
            if calls.get() < 3 {
                Err(failing(true))
            } else {
                Ok("converted")
            }
        })
        .await;
    assert_eq!(result.unwrap(), "converted");
    assert_eq!(metrics.summary().records_retried, 2);
}

#[tokio::test]
async fn other_failures_and_a_spent_budget_go_straight_to_the_policy() {
    let (handler, metrics) = handler(ErrorPolicy {
        retry_timeout: Some(Duration::from_millis(50)),
        retry_delay_max: Duration::from_millis(5),
        ..ErrorPolicy::default()
    });
    let calls = Cell::new(0);
    let result: Result<(), _> = handler
        .retry(|| {
            calls.set(calls.get() + 1);
            Err(failing(false))
        })
        .await;
    assert!(!result.unwrap_err().error.is_retriable());
    assert_eq!(calls.get(), 1);

    let started = Instant::now();
    let result: Result<(), _> = handler.retry(|| Err(failing(true))).await;
    assert!(result.unwrap_err().error.is_retriable());
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert!(metrics.summary().records_retried >= 2);
}

#[tokio::test]
async fn tolerance_none_fails_naming_the_record_and_stage() {
    let (handler, metrics) = handler(ErrorPolicy::default());
    let err = handler
        .handle(Failure {
            failed: failing(false),
            origin: AT,
            original: Original::default(),
        })
        .await
        .unwrap_err();
    let trace = err.trace();
    assert!(
        trace.contains("topic orders, partition 2, offset 41")
            && trace.contains("VALUE_CONVERTER")
            && trace.contains("not JSON"),
        "{trace}"
    );
    let summary = metrics.summary();
    assert_eq!(summary.records_failed, 1);
    assert_eq!(summary.last_error.unwrap().stage, "VALUE_CONVERTER");
}

#[tokio::test]
async fn tolerance_all_without_a_queue_skips_and_counts_until_the_breaker_trips() {
    let (handler, metrics) = handler(ErrorPolicy {
        tolerate_all: true,
        breaker: Some(BreakerSettings {
            threshold: 0.5,
            window: 4,
        }),
        ..ErrorPolicy::default()
    });
    let fail = || Failure {
        failed: failing(false),
        origin: AT,
        original: Original::default(),
    };
    handler.succeeded(2);
    handler.handle(fail()).await.unwrap();
    let err = handler.handle(fail()).await.unwrap_err();
    assert!(
        err.message()
            .starts_with("Circuit breaker open: 2 of the last 4 records failed")
    );
    assert_eq!(metrics.summary().records_skipped, 2);
}

#[test]
fn source_origins_name_partition_and_offset() {
    let partition = serde_json::json!({"file": "a.txt"});
    let offset = serde_json::json!({"position": 3});
    let origin = Origin::Source {
        topic: "lines",
        partition: partition.as_object().unwrap(),
        offset: offset.as_object().unwrap(),
    };
    assert_eq!(
        origin.to_string(),
        r#"topic lines, source partition {"file":"a.txt"}, source offset {"position":3}"#
    );
}
