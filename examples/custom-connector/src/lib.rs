//! Connectors written outside Sluice's built-in set:
//! - `Heartbeat`, a source that emits one record per interval carrying a counter and the time, so
//!   that downstream consumers and dashboards can see that a pipeline is alive;
//! - `Forward` ([`forward`]), a sink that writes what it receives to another topic through the
//!   runtime's producer.
//!
//! The binary in `src/main.rs` is a complete `sluice` worker with this plugin registered:
//! `cargo run -p sluice-example-custom-connector`, then
//! `POST /connectors {"name": "hb", "config": {"connector.class": "Heartbeat", "topic": "heartbeats"}}`.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_connector_api::{
    ConfigDef, ConfigErrors, ConfigKey, ConfigType, ConfigValueReport, ConnectError, ConnectResult,
    Connector, ConnectorConfig, ConnectorContext, Field, Importance, ParsedConfig, Plugin,
    PluginRegistry, Props, Record, Schema, SchemaType, SourceConnector, SourceRecord, SourceTask,
    SourceTaskContext, Struct, Validator, Value, async_trait,
};

pub mod forward;

/// The Heartbeat plugin's class name.
pub const CLASS: &str = "com.example.sluice.HeartbeatConnector";

/// The registry entries this crate adds.
pub fn plugins() -> PluginRegistry {
    let version = env!("CARGO_PKG_VERSION");
    PluginRegistry::new()
        .with(Plugin::source::<HeartbeatConnector>(
            CLASS,
            &["Heartbeat"],
            version,
        ))
        .with(Plugin::sink::<forward::ForwardConnector>(
            forward::CLASS,
            &["Forward"],
            version,
        ))
}

/// The Heartbeat source's typed settings: one definition, one typed struct, every error at once.
#[derive(Debug, Clone)]
pub struct HeartbeatConfig {
    /// Topic heartbeats go to.
    pub topic: String,
    /// Time between heartbeats.
    pub interval: Duration,
    /// Polls that fail with a retriable error before the first heartbeat (an upstream that is
    /// still starting): shows that the runtime retries them.
    pub retriable_failures: u32,
}

impl ConnectorConfig for HeartbeatConfig {
    fn def() -> ConfigDef {
        ConfigDef::new()
            .define(
                ConfigKey::new("topic", ConfigType::String, "Topic to write heartbeats to.")
                    .importance(Importance::High)
                    .validator(Validator::NonEmpty),
            )
            .define(
                ConfigKey::new(
                    "interval.ms",
                    ConfigType::Long,
                    "Time between heartbeats, in ms.",
                )
                .default_value("1000")
                .validator(Validator::at_least(10.0)),
            )
            .define(
                ConfigKey::new(
                    "simulate.retriable.failures",
                    ConfigType::Int,
                    "Polls that fail with a retriable error before the first heartbeat.",
                )
                .default_value("0")
                .validator(Validator::between(0.0, 100.0)),
            )
    }

    fn build(p: &ParsedConfig, _errors: &mut ConfigErrors) -> Self {
        Self {
            topic: p.string("topic"),
            interval: Duration::from_millis(p.long("interval.ms").max(10) as u64),
            retriable_failures: p.int("simulate.retriable.failures").max(0) as u32,
        }
    }
}

/// Emits heartbeats.
#[derive(Default)]
pub struct HeartbeatConnector {
    props: Props,
}

#[async_trait]
impl Connector for HeartbeatConnector {
    fn config_def(&self) -> ConfigDef {
        HeartbeatConfig::def()
    }

    fn validate(&self, props: &Props) -> Vec<ConfigValueReport> {
        HeartbeatConfig::validate(props)
    }

    async fn start(&mut self, _ctx: Arc<dyn ConnectorContext>, props: &Props) -> ConnectResult<()> {
        HeartbeatConfig::from_props(props)?;
        self.props = props.clone();
        Ok(())
    }

    fn task_configs(&self, _max_tasks: usize) -> ConnectResult<Vec<Props>> {
        Ok(vec![self.props.clone()])
    }
}

impl SourceConnector for HeartbeatConnector {
    fn task(&self) -> Box<dyn SourceTask> {
        Box::new(HeartbeatTask::default())
    }
}

/// The source partition, a typed value: `{"heartbeat": "default"}`.
#[derive(Debug, Serialize)]
struct HeartbeatPartition {
    heartbeat: &'static str,
}

const PARTITION: HeartbeatPartition = HeartbeatPartition {
    heartbeat: "default",
};

/// The offset: `{"beat": <the last heartbeat's number>}`.
#[derive(Debug, Serialize, Deserialize)]
struct HeartbeatOffset {
    beat: i64,
}

/// The one heartbeat task.
#[derive(Default)]
pub struct HeartbeatTask {
    config: Option<HeartbeatConfig>,
    beat: i64,
    failed: u32,
}

#[async_trait]
impl SourceTask for HeartbeatTask {
    async fn start(&mut self, ctx: SourceTaskContext, props: &Props) -> ConnectResult<()> {
        self.config = Some(HeartbeatConfig::from_props(props)?);
        // Continue counting from the last heartbeat Kafka acknowledged.
        self.beat = ctx
            .offset_as::<HeartbeatOffset>(&PARTITION)?
            .map_or(0, |o| o.beat);
        Ok(())
    }

    async fn poll(&mut self) -> ConnectResult<Vec<SourceRecord>> {
        let Some(config) = &self.config else {
            return Err(ConnectError::internal("poll before start"));
        };
        tokio::time::sleep(config.interval).await;
        if self.failed < config.retriable_failures {
            self.failed += 1;
            // Retriable: the runtime polls again after a back-off instead of failing the task.
            return Err(ConnectError::retriable("the upstream is not ready yet"));
        }
        self.beat += 1;
        let now = sluice_connector_api::now_ms();
        let schema = Schema::structure(vec![
            Field {
                name: "beat".into(),
                schema: Schema::new(SchemaType::Int64),
            },
            Field {
                name: "at".into(),
                schema: Schema::timestamp(),
            },
        ]);
        let record = Record::new(
            &config.topic,
            Value::Struct(Struct::new().with("beat", self.beat).with("at", now)),
        )
        .with_value_schema(schema);
        let offset = HeartbeatOffset { beat: self.beat };
        Ok(vec![SourceRecord::new(record, &PARTITION, &offset)?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sluice_connector_api::{OffsetReader, SourceOffset, SourcePartition, TaskId};

    struct Resume;
    impl OffsetReader for Resume {
        fn offset(&self, _: &SourcePartition) -> Option<SourceOffset> {
            json!({"beat": 41}).as_object().cloned()
        }
    }

    #[tokio::test]
    async fn resumes_counting_and_registers_with_the_worker() {
        let mut task = HeartbeatConnector::default().task();
        let props = Props::from([
            ("topic".to_owned(), "hb".to_owned()),
            ("interval.ms".to_owned(), "10".to_owned()),
        ]);
        task.start(
            SourceTaskContext::new(TaskId::new("hb", 0), Arc::new(Resume)),
            &props,
        )
        .await
        .unwrap();
        let batch = task.poll().await.unwrap();
        assert_eq!(
            batch[0].record.value.as_struct().unwrap().get("beat"),
            Some(&Value::Int64(42))
        );
        let all = sluice_worker::plugins_with(plugins());
        assert_eq!(all.find("Heartbeat").unwrap().class, CLASS);
        assert!(
            all.find("Datagen").is_ok(),
            "built-in plugins are still there"
        );
    }
}
