//! `Forward`: a sink that writes every record it receives to another topic, re-encoded as JSON with
//! its schema, through the runtime's producer (`SinkTaskContext::send`). The pattern of sinks that
//! emit records: results, dead letters, retries.
//!
//! It also shows the contract of a retriable error: a `put` that fails with
//! [`ConnectError::retriable`] gets the same records again after a back-off, so the task must be
//! able to take a batch twice. `simulate.retriable.failures` fails that many puts on purpose.

use std::sync::Arc;

use sluice_connector_api::convert::{Converter, JsonConverter};
use sluice_connector_api::{
    ConfigDef, ConfigErrors, ConfigKey, ConfigType, ConnectError, ConnectResult, Connector,
    ConnectorConfig, ConnectorContext, Importance, ParsedConfig, ProducerRecord, Props,
    SinkConnector, SinkRecord, SinkTask, SinkTaskContext, Validator, async_trait,
};

/// The plugin's class name.
pub const CLASS: &str = "com.example.sluice.ForwardConnector";

/// Forward's typed settings.
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    /// Where records go.
    pub destination: String,
    /// Puts with records that fail retriably before anything is forwarded.
    pub retriable_failures: u32,
}

impl ConnectorConfig for ForwardConfig {
    fn def() -> ConfigDef {
        ConfigDef::new()
        .define(
            ConfigKey::new(
                "destination.topic",
                ConfigType::String,
                "Topic to forward records to.",
            )
            .importance(Importance::High)
            .validator(Validator::NonEmpty),
        )
        .define(
            ConfigKey::new(
                "simulate.retriable.failures",
                ConfigType::Int,
                "Fail this many puts that carry records with a retriable error before forwarding \
                 anything, to watch the runtime redeliver them.",
            )
            .default_value("0")
            .validator(Validator::at_least(0.0)),
        )
    }

    fn build(p: &ParsedConfig, _errors: &mut ConfigErrors) -> Self {
        Self {
            destination: p.string("destination.topic"),
            retriable_failures: p.int("simulate.retriable.failures").max(0) as u32,
        }
    }
}

/// Forwards records to another topic.
#[derive(Default)]
pub struct ForwardConnector {
    props: Props,
}

#[async_trait]
impl Connector for ForwardConnector {
    fn config_def(&self) -> ConfigDef {
        ForwardConfig::def()
    }

    async fn start(&mut self, _ctx: Arc<dyn ConnectorContext>, props: &Props) -> ConnectResult<()> {
        ForwardConfig::from_props(props)?;
        self.props = props.clone();
        Ok(())
    }

    fn task_configs(&self, max_tasks: usize) -> ConnectResult<Vec<Props>> {
        Ok(vec![self.props.clone(); max_tasks])
    }
}

impl SinkConnector for ForwardConnector {
    fn task(&self) -> Box<dyn SinkTask> {
        Box::new(ForwardTask::default())
    }
}

/// One forwarding task.
#[derive(Default)]
pub struct ForwardTask {
    ctx: Option<SinkTaskContext>,
    destination: String,
    failures_left: u32,
}

#[async_trait]
impl SinkTask for ForwardTask {
    async fn start(&mut self, ctx: SinkTaskContext, props: &Props) -> ConnectResult<()> {
        let config = ForwardConfig::from_props(props)?;
        self.destination = config.destination;
        self.failures_left = config.retriable_failures;
        self.ctx = Some(ctx);
        Ok(())
    }

    /// Sends the batch and waits for every acknowledgement, so the default `pre_commit` (commit
    /// everything put) never commits input whose output is not in Kafka.
    async fn put(&mut self, records: Vec<SinkRecord>) -> ConnectResult<()> {
        let Some(ctx) = &self.ctx else {
            return Err(ConnectError::internal("put before start"));
        };
        if !records.is_empty() && self.failures_left > 0 {
            self.failures_left -= 1;
            return Err(ConnectError::retriable(format!(
                "simulated failure; {} more to go",
                self.failures_left
            )));
        }
        let json = JsonConverter::new(true);
        let mut sends = Vec::with_capacity(records.len());
        for r in records {
            let record = r.record;
            let value = json.to_bytes(
                &self.destination,
                record.value_schema.as_deref(),
                &record.value,
            )?;
            let key =
                json.to_bytes(&self.destination, record.key_schema.as_deref(), &record.key)?;
            sends.push(ctx.send(ProducerRecord {
                topic: self.destination.clone(),
                key,
                value,
                headers: record.headers,
                timestamp: record.timestamp,
                partition: None,
            }));
        }
        futures::future::try_join_all(sends).await.map(|_| ())
    }
}
