//! The Kinesis sink: Kafka records → `PutRecords` calls, in order per partition key.
//!
//! Guarantees (the argument is in `../DESIGN.md`):
//! - every record is written to the stream, or goes to the error policy with its coordinates
//!   (a record over 1 MiB with its partition key, a record refused for good, one refused past
//!   `errors.retry.timeout`); nothing is truncated or dropped;
//! - records with one partition key are written in Kafka order, even around partial failures and
//!   with several calls in flight ([`scheduler`]);
//! - `pre_commit` returns, per partition, only offsets below which Kinesis acknowledged every
//!   record (or the error policy took it): a crash re-sends at most what was not yet committed;
//! - a task holds at most `kinesis.buffer.max.bytes` (plus one `put`): above it, it pauses its
//!   partitions until it is below half.

pub mod config;
pub(crate) mod dispatch;
pub mod records;
pub mod scheduler;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use sluice_connector_api::backoff::Backoff;
use sluice_connector_api::{
    ConfigDef, ConfigValueReport, ConnectError, ConnectResult, Connector, ConnectorConfig,
    ConnectorContext, Offsets, Props, SinkConnector, SinkRecord, SinkTask, SinkTaskContext,
    TopicPartition, async_trait,
};
use tokio::sync::{mpsc, oneshot};

pub use config::KinesisSinkConfig;
use dispatch::{Command, Dispatcher};

use crate::dispatched::{BackPressure, Shared};
use scheduler::{Entry, Scheduler};

use super::stream::{MAX_RECORD_BYTES, Stream};

/// Class name.
pub const CLASS: &str = "io.sluice.connect.kinesis.KinesisSinkConnector";

/// Splits the subscribed partitions among `tasks.max` tasks (the consumer group does the split).
#[derive(Default)]
pub struct KinesisSinkConnector {
    props: Props,
}

#[async_trait]
impl Connector for KinesisSinkConnector {
    fn config_def(&self) -> ConfigDef {
        KinesisSinkConfig::def()
    }

    fn validate(&self, props: &Props) -> Vec<ConfigValueReport> {
        KinesisSinkConfig::validate(props)
    }

    async fn start(&mut self, _ctx: Arc<dyn ConnectorContext>, props: &Props) -> ConnectResult<()> {
        KinesisSinkConfig::from_props(props)?;
        self.props = props.clone();
        Ok(())
    }

    fn task_configs(&self, max_tasks: usize) -> ConnectResult<Vec<Props>> {
        Ok(vec![self.props.clone(); max_tasks])
    }
}

impl SinkConnector for KinesisSinkConnector {
    fn task(&self) -> Box<dyn SinkTask> {
        Box::<KinesisSinkTask>::default()
    }
}

/// One sink task: turns records into entries and hands them to its dispatcher.
#[derive(Default)]
pub struct KinesisSinkTask {
    running: Option<Running>,
}

struct Running {
    ctx: SinkTaskContext,
    config: KinesisSinkConfig,
    stream: Stream,
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
    /// The stream was found ready.
    ready: bool,
    back_pressure: BackPressure,
}

impl Running {
    fn send(&self, command: Command) -> ConnectResult<()> {
        self.commands
            .send(command)
            .map_err(|_| ConnectError::internal("the Kinesis dispatcher stopped"))
    }
}

impl KinesisSinkTask {
    fn running(&mut self) -> ConnectResult<&mut Running> {
        self.running
            .as_mut()
            .ok_or_else(|| ConnectError::internal("the task was not started"))
    }
}

#[async_trait]
impl SinkTask for KinesisSinkTask {
    async fn start(&mut self, ctx: SinkTaskContext, props: &Props) -> ConnectResult<()> {
        let config = KinesisSinkConfig::from_props(props)?;
        let stream = Stream::connect(&config.stream, &config.aws).await;
        let shared = Arc::new(Shared::default());
        let (commands, receiver) = mpsc::unbounded_channel();
        let dispatcher = Dispatcher {
            stream: stream.clone(),
            scheduler: Scheduler::new(
                config.batch,
                Backoff::new(config.retry_backoff, config.retry_backoff_max),
                config.retry_timeout,
            ),
            ctx: ctx.clone(),
            shared: Arc::clone(&shared),
            max_in_flight: config.max_in_flight,
        };
        tokio::spawn(dispatcher.run(receiver));
        let back_pressure = BackPressure::new(config.buffer_max_bytes);
        self.running = Some(Running {
            ctx,
            config,
            stream,
            commands,
            shared,
            ready: false,
            back_pressure,
        });
        Ok(())
    }

    async fn put(&mut self, records: Vec<SinkRecord>) -> ConnectResult<()> {
        let r = self.running()?;
        r.shared.check_failed()?;
        if !r.ready {
            if records.is_empty() {
                return Ok(());
            }
            r.stream.check_ready().await?;
            r.ready = true;
        }
        let mut entries = Vec::with_capacity(records.len());
        for record in &records {
            let key = records::partition_key(&r.config.partition_key, record);
            let data = records::data(r.config.format, record);
            let size = data.len() + key.len();
            if size > MAX_RECORD_BYTES {
                let error = ConnectError::user(format!(
                    "the record {}/{} is {size} bytes with its partition key, over Kinesis's \
                     limit of {MAX_RECORD_BYTES} bytes per record; it was not written",
                    record.origin, record.offset
                ));
                r.ctx.report(record, error).await?;
                continue;
            }
            entries.push(Entry::new(record.origin.clone(), record.offset, key, data));
        }
        if !entries.is_empty() {
            let added: usize = entries.iter().map(Entry::size).sum();
            r.shared.held_bytes.fetch_add(added, Ordering::Relaxed);
            r.send(Command::Offer(entries))?;
        }
        r.back_pressure.apply(&r.ctx, &r.shared, "Kinesis");
        Ok(())
    }

    async fn pre_commit(&mut self, offsets: Offsets) -> ConnectResult<Offsets> {
        let r = self.running()?;
        r.shared.check_failed()?;
        let (reply, answer) = oneshot::channel();
        r.send(Command::SafeOffsets(offsets, reply))?;
        answer
            .await
            .map_err(|_| ConnectError::internal("the Kinesis dispatcher stopped"))
    }

    async fn close(&mut self, partitions: &[TopicPartition]) -> ConnectResult<()> {
        let r = self.running()?;
        let (reply, answer) = oneshot::channel();
        r.send(Command::Close(partitions.to_vec(), reply))?;
        // Bounded by the calls' own timeout (aws.api.call.timeout.ms).
        let _ = answer.await;
        Ok(())
    }

    async fn stop(&mut self) -> ConnectResult<()> {
        // Dropping the sender ends the dispatcher; what was not acknowledged was not committed.
        self.running = None;
        Ok(())
    }
}
