//! The Lambda inference sink: Kafka records → batched `Invoke` calls, many in flight, with each
//! result written back to Kafka in its input partition's order.
//!
//! Guarantees (the dispatcher's own are in [`dispatch`]):
//! - every record is invoked, or goes to `behavior.on.error` with its coordinates (a record over
//!   the payload limit on its own, a batch the function fails, a result that breaks the contract
//!   in [`payload`], an invocation that kept failing past `errors.retry.timeout`); nothing is
//!   truncated or dropped without the policy saying so;
//! - with `aws.lambda.response.topic`, every input that the function ran has exactly one result
//!   in that topic per run, with the input's key and headers plus `lambda.request.id` (when
//!   Lambda gives one), `lambda.function.version` (likewise), `lambda.latency.ms`,
//!   `lambda.input.topic`, `lambda.input.partition` and `lambda.input.offset`; results of one
//!   input partition are written in its offset order (each lands in the response-topic partition
//!   its key chooses, so a reader sees that order within each response partition; results of
//!   unkeyed inputs spread over the partitions as the producer's partitioner sends them);
//! - `pre_commit` returns, per partition, only offsets below which every record is done (its
//!   result acknowledged by Kafka; or run, for sync without results; or accepted, for async): a
//!   crash invokes again at most what was in flight or waiting, so functions should be idempotent
//!   and the response topic can hold duplicates, as with Confluent's connector;
//! - a task holds at most `aws.lambda.buffer.max.bytes` (plus one `put`): above it, it pauses its
//!   partitions until it is below half.

pub mod config;
mod dispatch;
mod invoke;
pub mod order;
pub mod payload;
mod report;
mod writes;

use std::sync::Arc;

use sluice_connector_api::{
    ConfigDef, ConfigValueReport, ConnectError, ConnectResult, Connector, ConnectorConfig,
    ConnectorContext, Headers, Offsets, Props, SinkConnector, SinkRecord, SinkTask,
    SinkTaskContext, TopicPartition, Value, async_trait,
};
use tokio::sync::{mpsc, oneshot};

pub use config::LambdaSinkConfig;
use config::PayloadFormat;
use dispatch::{Command, Dispatcher, Item, Offered};
use invoke::Function;
use payload::EncodeError;
use report::deal_with;

use crate::dispatched::{BackPressure, Shared};

/// Class name: Confluent's, so that existing connector configs work unchanged.
pub const CLASS: &str = "io.confluent.connect.aws.lambda.AwsLambdaSinkConnector";

/// Splits the subscribed partitions among `tasks.max` tasks (the consumer group does the split).
#[derive(Default)]
pub struct LambdaSinkConnector {
    props: Props,
}

#[async_trait]
impl Connector for LambdaSinkConnector {
    fn config_def(&self) -> ConfigDef {
        LambdaSinkConfig::def()
    }

    fn validate(&self, props: &Props) -> Vec<ConfigValueReport> {
        LambdaSinkConfig::validate(props)
    }

    async fn start(&mut self, _ctx: Arc<dyn ConnectorContext>, props: &Props) -> ConnectResult<()> {
        LambdaSinkConfig::from_props(props)?;
        self.props = props.clone();
        Ok(())
    }

    fn task_configs(&self, max_tasks: usize) -> ConnectResult<Vec<Props>> {
        Ok(vec![self.props.clone(); max_tasks])
    }
}

impl SinkConnector for LambdaSinkConnector {
    fn task(&self) -> Box<dyn SinkTask> {
        Box::<LambdaSinkTask>::default()
    }
}

/// One sink task: encodes records and hands them to its dispatcher.
#[derive(Default)]
pub struct LambdaSinkTask {
    running: Option<Running>,
}

struct Running {
    ctx: SinkTaskContext,
    config: Arc<LambdaSinkConfig>,
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
    back_pressure: BackPressure,
}

impl Running {
    fn send(&self, command: Command) -> ConnectResult<()> {
        self.commands
            .send(command)
            .map_err(|_| ConnectError::internal("the Lambda dispatcher stopped"))
    }

    /// A record as its item in a batch; `None` when the error policy took it.
    async fn item(&self, record: SinkRecord) -> ConnectResult<Option<Offered>> {
        let json = match payload::encode(self.config.format, &record) {
            Ok(json) => json,
            // Its JSON text does not parse: the converter's failure, reported as one.
            Err(EncodeError::InvalidJson) => match self.ctx.decode_value(&record).await? {
                None => return Ok(None),
                Some((schema, value)) => {
                    let mut decoded = record.clone();
                    decoded.record.value_schema = schema;
                    decoded.record.value = value;
                    decoded.value_is_json = false;
                    payload::encode(self.config.format, &decoded).map_err(|_| {
                        ConnectError::internal("a decoded value did not encode as JSON")
                    })?
                }
            },
        };
        let size = payload::item_size(&json);
        // The array's brackets take one byte more than the items count.
        let room = self.config.batch.max_bytes.saturating_sub(1);
        if size > room {
            let error = ConnectError::user(format!(
                "the record {}/{} is {size} bytes in the payload, over the limit of {room} \
                 (aws.lambda.batch.max.bytes, at most Lambda's payload limit); it was not sent",
                record.origin, record.offset
            ));
            deal_with(&self.ctx, self.config.on_error, &record, error).await?;
            return Ok(None);
        }
        let SinkRecord {
            record: r,
            origin,
            offset,
            ..
        } = record;
        let (key, headers) = if self.config.response_topic.is_some() {
            (key_bytes(r.key), r.headers)
        } else {
            (None, Headers::new())
        };
        Ok(Some(Offered {
            item: Item { json, key, headers },
            size,
            tp: origin,
            offset,
        }))
    }
}

/// A result's key: the input key's bytes (text as UTF-8, structured keys as JSON).
fn key_bytes(key: Value) -> Option<Vec<u8>> {
    match key {
        Value::Bytes(b) => Some(b),
        Value::String(s) => Some(s.into_bytes()),
        other => payload::value_bytes(&other),
    }
}

impl LambdaSinkTask {
    fn running(&mut self) -> ConnectResult<&mut Running> {
        self.running
            .as_mut()
            .ok_or_else(|| ConnectError::internal("the task was not started"))
    }
}

#[async_trait]
impl SinkTask for LambdaSinkTask {
    async fn start(&mut self, ctx: SinkTaskContext, props: &Props) -> ConnectResult<()> {
        let config = Arc::new(LambdaSinkConfig::from_props(props)?);
        let function = Function::connect(&config).await;
        let shared = Arc::new(Shared::default());
        let (commands, receiver) = mpsc::unbounded_channel();
        let dispatcher = Dispatcher {
            function,
            config: Arc::clone(&config),
            ctx: ctx.clone(),
            shared: Arc::clone(&shared),
        };
        tokio::spawn(dispatcher.run(receiver));
        let back_pressure = BackPressure::new(config.buffer_max_bytes);
        self.running = Some(Running {
            ctx,
            config,
            commands,
            shared,
            back_pressure,
        });
        Ok(())
    }

    fn takes_json_values(&self) -> bool {
        self.running
            .as_ref()
            .is_some_and(|r| r.config.format == PayloadFormat::Json)
    }

    async fn put(&mut self, records: Vec<SinkRecord>) -> ConnectResult<()> {
        let r = self.running()?;
        r.shared.check_failed()?;
        let mut offered = Vec::with_capacity(records.len());
        for record in records {
            if let Some(o) = r.item(record).await? {
                offered.push(o);
            }
        }
        if !offered.is_empty() {
            r.send(Command::Offer(offered))?;
        }
        r.back_pressure.apply(&r.ctx, &r.shared, "Lambda");
        Ok(())
    }

    async fn pre_commit(&mut self, offsets: Offsets) -> ConnectResult<Offsets> {
        let r = self.running()?;
        r.shared.check_failed()?;
        let (reply, answer) = oneshot::channel();
        r.send(Command::SafeOffsets(offsets, reply))?;
        answer
            .await
            .map_err(|_| ConnectError::internal("the Lambda dispatcher stopped"))
    }

    async fn close(&mut self, partitions: &[TopicPartition]) -> ConnectResult<()> {
        let r = self.running()?;
        let (reply, answer) = oneshot::channel();
        r.send(Command::Close(partitions.to_vec(), reply))?;
        // Bounded by the invocation timeout and the producer's delivery timeout.
        let _ = answer.await;
        Ok(())
    }

    async fn stop(&mut self) -> ConnectResult<()> {
        // Dropping the sender ends the dispatcher; what was not done was not committed.
        self.running = None;
        Ok(())
    }
}
