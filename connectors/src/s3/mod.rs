//! The S3 Parquet sink: Kafka topics land in S3 as Parquet files, partitioned by Kafka partition, by
//! value fields or by time, exactly once.
//!
//! Guarantees (see `DESIGN.md` in this folder for the argument):
//! - every record that is not an error record is in exactly one object, however often the worker
//!   crashes or the partition moves; consumer offsets are committed only after the objects exist;
//! - object keys are deterministic: `<topics.dir>/<topic>/<directory>/<topic>+<partition>+<start
//!   offset>.parquet`, the same layout as Confluent's S3 sink;
//! - buffered data stays under `buffer.max.bytes` plus one `put` batch (checked after each batch),
//!   however many directories are open;
//! - an S3 outage pauses consumption and retries with back-off; nothing buffered is dropped.
//!
//! Modules: [`config`] (settings), [`partitioner`] (directories), [`columns`] (records → Arrow),
//! [`flat`] (JSON text → Arrow, the fast path), [`known`] (the fields learned per topic), [`file`]
//! (one Parquet file), [`store`] (S3 or a local directory), [`task`] (file sets, rotation,
//! exactly-once publishing).

pub mod columns;
pub mod config;
#[cfg(test)]
mod fidelity;
pub mod file;
pub mod flat;
pub mod known;
pub mod partitioner;
pub mod store;
pub mod task;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use sluice_connector_api::{
    ConfigDef, ConfigValueReport, ConnectResult, Connector, ConnectorConfig, ConnectorContext,
    Props, SinkConnector, SinkTask, async_trait,
};

pub use config::S3SinkConfig;
pub use task::S3SinkTask;

/// Class name: Confluent's, so existing connector JSON works unchanged.
pub const CLASS: &str = "io.confluent.connect.s3.S3SinkConnector";

/// Splits the subscribed partitions among `tasks.max` tasks (the consumer group does the split).
#[derive(Default)]
pub struct S3SinkConnector {
    props: Props,
}

#[async_trait]
impl Connector for S3SinkConnector {
    fn config_def(&self) -> ConfigDef {
        S3SinkConfig::def()
    }

    fn validate(&self, props: &Props) -> Vec<ConfigValueReport> {
        S3SinkConfig::validate(props)
    }

    async fn start(&mut self, _ctx: Arc<dyn ConnectorContext>, props: &Props) -> ConnectResult<()> {
        S3SinkConfig::from_props(props)?;
        self.props = props.clone();
        Ok(())
    }

    fn task_configs(&self, max_tasks: usize) -> ConnectResult<Vec<Props>> {
        Ok(vec![self.props.clone(); max_tasks])
    }
}

impl SinkConnector for S3SinkConnector {
    fn task(&self) -> Box<dyn SinkTask> {
        Box::new(S3SinkTask::default())
    }
}
