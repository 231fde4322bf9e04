//! The DLQ router: a sink connector that reads dead-letter topics and sends each record where its
//! rules say: into a retry tier and back to its original topic once the tier's delay has passed,
//! to a parking lot, or (only when a rule says so) nowhere.
//!
//! Flow of one dead letter (see [`rules`] for matching and [`task`] for the guarantees):
//! 1. The first rule matching its `__connect.errors.*` headers and attempt count decides, else
//!    `default.action`; the rule's counter `rule.<name>` goes up.
//! 2. `retry`: attempt `n` (the `__sluice.retry.attempts` header, 0 when absent) goes to tier `n`
//!    (the last tier repeats), topic `<original topic>.retry.<delay>`, stamped with when it is due
//!    and which router wrote it. Once `retry.max.attempts` sends back have been made, it is parked.
//! 3. The router reads its tier topics too. A tier record that is due is sent back to its original
//!    topic (the partition it failed on, when known), without the error headers and with its attempt
//!    count one higher. One that is not due pauses its partition until it is.
//! 4. `park`: the record goes to `parking.lot.topic.name` as it arrived, plus the rule and the
//!    reason; `POST /dead-letters/{parking lot}/redrive` sends it back once the cause is fixed.
//!
//! Order: a retried record leaves its key's order. Records of the same key that follow it in the
//! original topic are delivered before it comes back, and it comes back after everything produced
//! to that partition in the meantime. Records of one key waiting in the same tier return in the
//! order they were routed (a tier topic is partitioned by key); records of one key in different
//! tiers (different attempt counts) may return in either order. Records that never fail keep their
//! order.
//!
//! Every router task reads every tier topic named like its tiers, but sends back only the records
//! it wrote itself (the `__sluice.retry.router` header names the connector); others count as
//! `foreign` and are left to their own router.

pub mod config;
pub mod rules;
pub mod task;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use sluice_connector_api::{
    ConfigDef, ConfigValueReport, ConnectError, ConnectResult, Connector, ConnectorConfig,
    ConnectorContext, Props, SinkConnector, SinkTask, async_trait,
};

pub use config::RouterConfig;
pub use task::DlqRouterTask;

/// Class name.
pub const CLASS: &str = "io.sluice.connect.dlq.DlqRouterConnector";

/// Routes dead letters; every task reads the dead-letter topics and the tier topics together (the
/// consumer group splits their partitions).
#[derive(Default)]
pub struct DlqRouterConnector {
    props: Props,
    config: Option<RouterConfig>,
}

#[async_trait]
impl Connector for DlqRouterConnector {
    fn config_def(&self) -> ConfigDef {
        RouterConfig::def()
    }

    fn validate(&self, props: &Props) -> Vec<ConfigValueReport> {
        RouterConfig::validate(props)
    }

    async fn start(&mut self, _ctx: Arc<dyn ConnectorContext>, props: &Props) -> ConnectResult<()> {
        self.config = Some(RouterConfig::from_props(props)?);
        self.props = props.clone();
        Ok(())
    }

    /// Each task config subscribes to the dead-letter topics and the tier topics by one pattern.
    fn task_configs(&self, max_tasks: usize) -> ConnectResult<Vec<Props>> {
        let config = self
            .config
            .as_ref()
            .ok_or_else(|| ConnectError::internal("the router was not started"))?;
        let mut props = self.props.clone();
        props.remove("topics");
        props.insert("topics.regex".into(), config.subscription());
        Ok(vec![props; max_tasks])
    }
}

impl SinkConnector for DlqRouterConnector {
    fn task(&self) -> Box<dyn SinkTask> {
        Box::new(DlqRouterTask::default())
    }
}
