//! The Sluice plugin API: everything needed to write a source or sink connector.
//!
//! A connector is a [`Connector`] (validates its config and splits the work into task configs) plus
//! a task type: [`SourceTask`] to read an external system into Kafka, [`SinkTask`] to write Kafka
//! records out. The runtime owns Kafka: it produces what source tasks return, stores their offsets
//! only once Kafka has acknowledged the records, consumes for sink tasks and commits only what
//! [`SinkTask::pre_commit`] says is durable. Connectors never see a Kafka client.
//!
//! Data follows Kafka Connect's model: a [`Record`] has a key and value ([`Value`]) each with an
//! optional [`Schema`]; [`convert`] holds the JSON, string and byte converters. Configs are declared
//! with a [`ConfigDef`] and validated purely, reporting every error at once. Errors are
//! [`ConnectError`]s that say who is at fault and whether a retry can help.
//!
//! # A minimal source connector
//!
//! ```
//! use std::sync::Arc;
//! use async_trait::async_trait;
//! use sluice_connector_api::*;
//!
//! /// Emits "hello" records with a counter, resuming where it stopped.
//! #[derive(Default)]
//! struct HelloSource { props: Props }
//!
//! #[async_trait]
//! impl Connector for HelloSource {
//!     fn config_def(&self) -> ConfigDef {
//!         ConfigDef::new().define(
//!             ConfigKey::new("topic", ConfigType::String, "Topic to write to.")
//!                 .importance(Importance::High)
//!                 .validator(Validator::NonEmpty),
//!         )
//!     }
//!     async fn start(&mut self, _ctx: Arc<dyn ConnectorContext>, props: &Props) -> ConnectResult<()> {
//!         self.config_def().parse(props)?; // every error at once
//!         self.props = props.clone();
//!         Ok(())
//!     }
//!     fn task_configs(&self, _max_tasks: usize) -> ConnectResult<Vec<Props>> {
//!         Ok(vec![self.props.clone()]) // one task does all the work
//!     }
//! }
//!
//! impl SourceConnector for HelloSource {
//!     fn task(&self) -> Box<dyn SourceTask> { Box::new(HelloTask::default()) }
//! }
//!
//! #[derive(Default)]
//! struct HelloTask { topic: String, next: i64 }
//!
//! fn partition() -> SourcePartition {
//!     serde_json::json!({"hello": "world"}).as_object().unwrap().clone()
//! }
//!
//! #[async_trait]
//! impl SourceTask for HelloTask {
//!     async fn start(&mut self, ctx: SourceTaskContext, props: &Props) -> ConnectResult<()> {
//!         self.topic = props["topic"].clone();
//!         // Resume after the last record Kafka acknowledged.
//!         self.next = ctx.offset(&partition())
//!             .and_then(|o| o.get("next").and_then(|v| v.as_i64()))
//!             .unwrap_or(0);
//!         Ok(())
//!     }
//!     async fn poll(&mut self) -> ConnectResult<Vec<SourceRecord>> {
//!         let n = self.next;
//!         self.next += 1;
//!         Ok(vec![SourceRecord {
//!             record: Record::new(&self.topic, Value::from(format!("hello {n}"))),
//!             source_partition: partition(),
//!             source_offset: serde_json::json!({"next": n + 1}).as_object().unwrap().clone(),
//!         }])
//!     }
//! }
//!
//! // Register it so that `"connector.class": "Hello"` finds it.
//! let registry = PluginRegistry::new()
//!     .with(Plugin::source::<HelloSource>("com.example.HelloSourceConnector", &["Hello"], "1.0"));
//! assert_eq!(registry.find("hello").unwrap().class, "com.example.HelloSourceConnector");
//! assert!(registry.find("Nope").unwrap_err().to_string().contains("HelloSourceConnector"));
//!
//! // Drive a task by hand, as the runtime would.
//! struct NoOffsets;
//! impl OffsetReader for NoOffsets {
//!     fn offset(&self, _: &SourcePartition) -> Option<SourceOffset> { None }
//! }
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let mut task = HelloSource::default().task();
//! let ctx = SourceTaskContext::new(TaskId::new("hello", 0), Arc::new(NoOffsets));
//! let props = Props::from([("topic".to_owned(), "greetings".to_owned())]);
//! task.start(ctx, &props).await.unwrap();
//! let batch = task.poll().await.unwrap();
//! assert_eq!(batch[0].record.value, Value::from("hello 0"));
//! # });
//! ```
#![deny(missing_docs)]

pub mod config;
mod connector;
pub mod convert;
pub mod date_pattern;
pub mod dead_letter;
mod error;
mod plugin;
mod record;
mod schema;
#[cfg(feature = "testing")]
pub mod testing;
mod value;

pub use config::{
    ConfigDef, ConfigError, ConfigErrors, ConfigKey, ConfigKeyInfo, ConfigType, ConfigValueReport,
    Importance, ParsedConfig, Props, Validator,
};
pub use connector::{
    CommittedOffset, Connector, ConnectorContext, OffsetReader, Offsets, ProducerRecord,
    SinkConnector, SinkTask, SinkTaskContext, SinkTaskControl, SourceConnector, SourceTask,
    SourceTaskContext, TaskId,
};
pub use convert::{ConnectData, Converter};
pub use error::{ConnectError, ConnectResult, Fault};
pub use plugin::{ConnectorInstance, ConnectorType, Plugin, PluginRegistry, UnknownPlugin};
pub use record::{
    Header, Headers, Record, SinkRecord, SourceOffset, SourcePartition, SourceRecord,
    TopicPartition,
};
pub use schema::{Field, Schema, SchemaType, logical};
pub use value::{FieldName, Struct, Value};

/// Re-exported so connectors implement the traits with the same macro version.
pub use async_trait::async_trait;
