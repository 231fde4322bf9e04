//! What the sink tells others: records it cannot deliver go to `behavior.on.error`, and its
//! figures go to the task's counters (in the status and `/metrics`).
//!
//! Guarantees: a record handed to [`deal_with`] is dealt with exactly as `behavior.on.error` says
//! (`fail`: the worker's error policy, which may fail the task; `log` and `ignore`: counted, and
//! logged for `log`), never dropped without a count.

use sluice_connector_api::{ConnectError, ConnectResult, SinkRecord, SinkTaskContext};

use super::config::OnError;

/// Invocation latency buckets (ms), as a Prometheus histogram's `le` bounds.
pub const LATENCY_BUCKETS_MS: &[u64] =
    &[1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];
/// Batch size buckets (records).
pub const BATCH_BUCKETS: &[u64] = &[1, 5, 10, 20, 50, 100, 500, 1000];

/// Applies `behavior.on.error` to one record: `Ok` once it is dealt with, `Err` when the task
/// must fail (`fail` with `errors.tolerance=none`).
pub async fn deal_with(
    ctx: &SinkTaskContext,
    on_error: OnError,
    record: &SinkRecord,
    error: ConnectError,
) -> ConnectResult<()> {
    match on_error {
        OnError::Fail => ctx.report(record, error).await,
        OnError::Log => {
            tracing::warn!(task = %ctx.task_id, "skipping {}/{}: {}", record.origin, record.offset, error.trace());
            ctx.count("lambda.records.errors.logged", 1);
            Ok(())
        }
        OnError::Ignore => {
            ctx.count("lambda.records.errors.ignored", 1);
            Ok(())
        }
    }
}

/// ` (request 1234)` when Lambda gave a request id.
pub fn request(id: &Option<String>) -> String {
    id.as_deref()
        .map_or_else(String::new, |id| format!(" (request {id})"))
}

/// Counts `value` into cumulative `<name>.le.<bound>` counters and `<name>.count`, the shape of a
/// Prometheus histogram; `.le.inf` counts every observation.
pub fn histogram(ctx: &SinkTaskContext, name: &str, value: u64, bounds: &[u64]) {
    for bound in bounds.iter().filter(|b| value <= **b) {
        ctx.count(&format!("{name}.le.{bound}"), 1);
    }
    ctx.count(&format!("{name}.le.inf"), 1);
    ctx.count(&format!("{name}.count"), 1);
}

#[cfg(test)]
mod tests {
    use sluice_connector_api::testing::FakeSinkControl;
    use sluice_connector_api::{Record, TopicPartition};

    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let control = FakeSinkControl::new();
        let ctx = control.context("inference", 0);
        histogram(&ctx, "lambda.latency.ms", 7, &[1, 5, 10, 100]);
        histogram(&ctx, "lambda.latency.ms", 1, &[1, 5, 10, 100]);
        let c = control.counters();
        assert_eq!(c.get("lambda.latency.ms.le.1"), Some(&1));
        assert_eq!(c.get("lambda.latency.ms.le.5"), Some(&1));
        assert_eq!(c.get("lambda.latency.ms.le.10"), Some(&2));
        assert_eq!(c.get("lambda.latency.ms.le.inf"), Some(&2));
        assert_eq!(c.get("lambda.latency.ms.count"), Some(&2));
    }

    #[tokio::test]
    async fn each_behavior_on_error_deals_with_the_record() {
        let control = FakeSinkControl::new();
        let ctx = control.context("inference", 0);
        let record = SinkRecord {
            record: Record::default(),
            origin: TopicPartition::new("features", 2),
            offset: 9,
            value_is_json: false,
        };
        for on_error in [OnError::Fail, OnError::Log, OnError::Ignore] {
            deal_with(&ctx, on_error, &record, ConnectError::user("boom"))
                .await
                .unwrap();
        }
        assert_eq!(
            control.reported().len(),
            1,
            "only fail goes to the error policy"
        );
        let c = control.counters();
        assert_eq!(c.get("lambda.records.errors.logged"), Some(&1));
        assert_eq!(c.get("lambda.records.errors.ignored"), Some(&1));
    }
}
