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

use serde_json::json;
use sluice_connector_api::{
    ConfigDef, ConfigKey, ConfigType, ConnectResult, Connector, ConnectorContext, Field,
    Importance, Plugin, PluginRegistry, Props, Record, Schema, SchemaType, SourceConnector,
    SourcePartition, SourceRecord, SourceTask, SourceTaskContext, Struct, Validator, Value,
    async_trait,
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
}

/// Emits heartbeats.
#[derive(Default)]
pub struct HeartbeatConnector {
    props: Props,
}

#[async_trait]
impl Connector for HeartbeatConnector {
    fn config_def(&self) -> ConfigDef {
        def()
    }

    async fn start(&mut self, _ctx: Arc<dyn ConnectorContext>, props: &Props) -> ConnectResult<()> {
        def().parse(props)?;
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

/// The one heartbeat task.
#[derive(Default)]
pub struct HeartbeatTask {
    topic: String,
    interval: Duration,
    beat: i64,
}

fn partition() -> SourcePartition {
    json!({"heartbeat": "default"})
        .as_object()
        .cloned()
        .unwrap_or_default()
}

#[async_trait]
impl SourceTask for HeartbeatTask {
    async fn start(&mut self, ctx: SourceTaskContext, props: &Props) -> ConnectResult<()> {
        let config = def().parse(props)?;
        self.topic = config.string("topic");
        self.interval = Duration::from_millis(config.long("interval.ms") as u64);
        // Continue counting from the last heartbeat Kafka acknowledged.
        self.beat = ctx
            .offset(&partition())
            .and_then(|o| o.get("beat")?.as_i64())
            .unwrap_or(0);
        Ok(())
    }

    async fn poll(&mut self) -> ConnectResult<Vec<SourceRecord>> {
        tokio::time::sleep(self.interval).await;
        self.beat += 1;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
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
        Ok(vec![SourceRecord {
            record: Record::new(
                &self.topic,
                Value::Struct(Struct::new().with("beat", self.beat).with("at", now)),
            )
            .with_value_schema(schema),
            source_partition: partition(),
            source_offset: json!({"beat": self.beat})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_connector_api::{OffsetReader, SourceOffset, TaskId};

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
