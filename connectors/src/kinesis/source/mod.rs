//! The Kinesis source: a stream's shards → Kafka, under Confluent's Kinesis source names.
//!
//! The connector lists the stream's shards at start and every
//! `kinesis.shard.discovery.interval.ms`, divides them among tasks a family at a time
//! ([`shards::assign`]) and asks for new task configs when the shards change (a split, a merge,
//! a shard past retention). Each task reads its shards ([`task`]).
//!
//! Bad input: a stream that does not exist fails the task with a message naming stream and region
//! (validation makes no AWS call); a stream still being created is waited for.

pub mod config;
pub mod shards;
pub mod task;

use std::sync::Arc;

use parking_lot::Mutex;
use sluice_connector_api::{
    ConfigDef, ConfigValueReport, ConnectError, ConnectResult, Connector, ConnectorConfig,
    ConnectorContext, Props, SourceConnector, SourceTask, async_trait,
};
use tokio::task::JoinHandle;

pub use config::KinesisSourceConfig;
use shards::TaskShard;
pub use task::KinesisSourceTask;

use super::stream::Stream;

/// Class name.
pub const CLASS: &str = "io.sluice.connect.kinesis.KinesisSourceConnector";

/// Lists shards and divides them among tasks.
#[derive(Default)]
pub struct KinesisSourceConnector {
    props: Props,
    /// The last listing; `None` until one succeeded.
    shards: Arc<Mutex<Option<Vec<TaskShard>>>>,
    discovery: Option<JoinHandle<()>>,
}

/// Lists the shards now and then; asks for new task configs when they change.
async fn discover(
    stream: Stream,
    config: KinesisSourceConfig,
    shards: Arc<Mutex<Option<Vec<TaskShard>>>>,
    ctx: Arc<dyn ConnectorContext>,
    first: tokio::sync::oneshot::Sender<()>,
) {
    let mut first = Some(first);
    // Shards of the first listing keep kinesis.position; later ones are new.
    let mut initial: Option<Vec<String>> = None;
    loop {
        match shards::list(&stream, &config.shard_filter).await {
            Ok(mut listed) => {
                let known =
                    initial.get_or_insert_with(|| listed.iter().map(|s| s.id.clone()).collect());
                for s in &mut listed {
                    s.new = !known.contains(&s.id);
                }
                let changed = shards.lock().as_ref() != Some(&listed);
                if changed {
                    tracing::info!("{} has {} shards to read", stream.describe(), listed.len());
                    *shards.lock() = Some(listed);
                    if first.is_none() {
                        ctx.request_task_reconfiguration();
                    }
                }
            }
            // The tasks report a missing stream or refused credentials; keep the last listing.
            Err(e) => tracing::warn!(
                "listing the shards of {} failed: {}",
                stream.describe(),
                e.message()
            ),
        }
        if let Some(first) = first.take() {
            let _ = first.send(());
        }
        tokio::time::sleep(config.discovery_interval).await;
    }
}

#[async_trait]
impl Connector for KinesisSourceConnector {
    fn config_def(&self) -> ConfigDef {
        KinesisSourceConfig::def()
    }

    fn validate(&self, props: &Props) -> Vec<ConfigValueReport> {
        KinesisSourceConfig::validate(props)
    }

    async fn start(&mut self, ctx: Arc<dyn ConnectorContext>, props: &Props) -> ConnectResult<()> {
        let config = KinesisSourceConfig::from_props(props)?;
        let stream = Stream::connect(&config.stream, &config.aws).await;
        let (first, listed) = tokio::sync::oneshot::channel();
        let call_timeout = config.aws.call_timeout;
        self.discovery = Some(tokio::spawn(discover(
            stream,
            config,
            Arc::clone(&self.shards),
            ctx,
            first,
        )));
        // The first task configs come from the first listing when it is quick; otherwise tasks
        // start without shards and are reconfigured once it arrives.
        let _ = tokio::time::timeout(call_timeout, listed).await;
        self.props = props.clone();
        Ok(())
    }

    fn task_configs(&self, max_tasks: usize) -> ConnectResult<Vec<Props>> {
        let listed = self.shards.lock().clone();
        let Some(listed) = listed else {
            // Not listed yet (the stream may not exist): one task, which checks the stream and
            // fails with a readable message, or waits for it to become ACTIVE.
            return Ok(vec![self.props.clone()]);
        };
        let tasks = shards::assign(&listed, max_tasks);
        if tasks.is_empty() {
            return Ok(vec![self.props.clone()]);
        }
        tasks
            .into_iter()
            .map(|shards| {
                let mut props = self.props.clone();
                let json = serde_json::to_string(&shards)
                    .map_err(|e| ConnectError::internal(format!("encoding shards: {e}")))?;
                props.insert(config::TASK_SHARDS.to_owned(), json);
                Ok(props)
            })
            .collect()
    }

    async fn stop(&mut self) -> ConnectResult<()> {
        if let Some(d) = self.discovery.take() {
            d.abort();
        }
        Ok(())
    }
}

impl SourceConnector for KinesisSourceConnector {
    fn task(&self) -> Box<dyn SourceTask> {
        Box::<KinesisSourceTask>::default()
    }
}
