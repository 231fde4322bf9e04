//! `Forward`: a sink that writes every record it receives to another topic, re-encoded as JSON with
//! its schema, through the runtime's producer (`SinkTaskContext::send`). The pattern of sinks that
//! emit records: results, dead letters, retries.

use std::sync::Arc;

use sluice_connector_api::convert::{Converter, JsonConverter};
use sluice_connector_api::{
    ConfigDef, ConfigKey, ConfigType, ConnectResult, Connector, ConnectorContext, Importance,
    ProducerRecord, Props, SinkConnector, SinkRecord, SinkTask, SinkTaskContext, Validator,
    async_trait,
};

/// The plugin's class name.
pub const CLASS: &str = "com.example.sluice.ForwardConnector";

fn def() -> ConfigDef {
    ConfigDef::new().define(
        ConfigKey::new(
            "destination.topic",
            ConfigType::String,
            "Topic to forward records to.",
        )
        .importance(Importance::High)
        .validator(Validator::NonEmpty),
    )
}

/// Forwards records to another topic.
#[derive(Default)]
pub struct ForwardConnector {
    props: Props,
}

#[async_trait]
impl Connector for ForwardConnector {
    fn config_def(&self) -> ConfigDef {
        def()
    }

    async fn start(&mut self, _ctx: Arc<dyn ConnectorContext>, props: &Props) -> ConnectResult<()> {
        def().parse(props)?;
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
}

#[async_trait]
impl SinkTask for ForwardTask {
    async fn start(&mut self, ctx: SinkTaskContext, props: &Props) -> ConnectResult<()> {
        self.destination = def().parse(props)?.string("destination.topic");
        self.ctx = Some(ctx);
        Ok(())
    }

    /// Sends the batch and waits for every acknowledgement, so the default `pre_commit` (commit
    /// everything put) never commits input whose output is not in Kafka.
    async fn put(&mut self, records: Vec<SinkRecord>) -> ConnectResult<()> {
        let Some(ctx) = &self.ctx else {
            return Err(sluice_connector_api::ConnectError::internal(
                "put before start",
            ));
        };
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
