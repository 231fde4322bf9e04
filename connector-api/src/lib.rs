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
//! # The kit
//!
//! What every connector shares, so that each is small and the same in shape:
//! - [`ConnectorConfig`]: a typed config from one [`ConfigDef`], every error at once (per key and
//!   across keys), the same answer for `/config/validate`; [`Password`] for secrets.
//! - Typed source offsets: [`SourceRecord::new`] and [`SourceTaskContext::offset_as`] write and
//!   read a source partition and offset as serde types.
//! - [`backoff`]: one jittered exponential back-off with a budget, for every retry loop.
//! - [`batch`]: a batcher (count, bytes, linger) for sinks that call an external API, and the
//!   offsets safe to return from [`SinkTask::pre_commit`] while batches are in flight.
//! - `testing` (cargo feature): test doubles of the runtime, to unit-test a task without a broker.
//!
//! # The error contract
//!
//! - `Connector::start`, `SourceTask::start`, `SinkTask::start`: any `Err` fails the connector or
//!   task, with the error's trace in its status; a restart (`POST .../restart`) tries again.
//! - [`SourceTask::poll`]: a retriable `Err` ([`ConnectError::retriable`]) is logged, counted and
//!   polled again after a jittered back-off, for as long as it lasts (Kafka Connect's
//!   `RetriableException`): a database restart does not fail the task. Any other `Err` fails it.
//! - [`SinkTask::put`]: a retriable `Err` redelivers the same batch after a back-off, for as long
//!   as it lasts, as in Kafka Connect, and nothing of it is committed meanwhile; any other `Err`
//!   fails the task. Records the task cannot write go to the error policy through
//!   [`SinkTaskContext::report`] instead, which is bounded by `errors.retry.timeout` and
//!   `errors.tolerance`.
//!
//! # A source connector on the kit
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use async_trait::async_trait;
//! use serde::{Deserialize, Serialize};
//! use sluice_connector_api::*;
//!
//! /// Typed settings: the definition and the struct built from it.
//! #[derive(Debug, Clone)]
//! struct HelloConfig { topic: String, every: Duration }
//!
//! impl ConnectorConfig for HelloConfig {
//!     fn def() -> ConfigDef {
//!         ConfigDef::new()
//!             .define(
//!                 ConfigKey::new("topic", ConfigType::String, "Topic to write to.")
//!                     .importance(Importance::High)
//!                     .validator(Validator::NonEmpty),
//!             )
//!             .define(
//!                 ConfigKey::new("interval.ms", ConfigType::Long, "Time between records.")
//!                     .default_value("1000")
//!                     .validator(Validator::at_least(0.0)),
//!             )
//!     }
//!     fn build(p: &ParsedConfig, _errors: &mut ConfigErrors) -> Self {
//!         HelloConfig {
//!             topic: p.string("topic"),
//!             every: Duration::from_millis(p.long("interval.ms") as u64),
//!         }
//!     }
//! }
//!
//! /// Emits "hello" records with a counter, resuming where it stopped.
//! #[derive(Default)]
//! struct HelloSource { props: Props }
//!
//! #[async_trait]
//! impl Connector for HelloSource {
//!     fn config_def(&self) -> ConfigDef { HelloConfig::def() }
//!     fn validate(&self, props: &Props) -> Vec<ConfigValueReport> { HelloConfig::validate(props) }
//!     async fn start(&mut self, _ctx: Arc<dyn ConnectorContext>, props: &Props) -> ConnectResult<()> {
//!         HelloConfig::from_props(props)?; // every error at once
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
//! /// Where a record came from and where to resume, as typed values.
//! #[derive(Serialize)]
//! struct Greetings { hello: &'static str }
//! #[derive(Serialize, Deserialize)]
//! struct Next { next: i64 }
//!
//! #[derive(Default)]
//! struct HelloTask { config: Option<HelloConfig>, next: i64 }
//!
//! #[async_trait]
//! impl SourceTask for HelloTask {
//!     async fn start(&mut self, ctx: SourceTaskContext, props: &Props) -> ConnectResult<()> {
//!         self.config = Some(HelloConfig::from_props(props)?);
//!         // Resume after the last record Kafka acknowledged.
//!         self.next = ctx.offset_as::<Next>(&Greetings { hello: "world" })?.map_or(0, |o| o.next);
//!         Ok(())
//!     }
//!     async fn poll(&mut self) -> ConnectResult<Vec<SourceRecord>> {
//!         let config = self.config.as_ref().ok_or_else(|| ConnectError::internal("not started"))?;
//!         tokio::time::sleep(config.every).await;
//!         let n = self.next;
//!         self.next += 1;
//!         let record = Record::new(&config.topic, Value::from(format!("hello {n}")));
//!         Ok(vec![SourceRecord::new(record, &Greetings { hello: "world" }, &Next { next: n + 1 })?])
//!     }
//! }
//!
//! // Register it so that `"connector.class": "Hello"` finds it.
//! let registry = PluginRegistry::new()
//!     .with(Plugin::source::<HelloSource>("com.example.HelloSourceConnector", &["Hello"], "1.0"));
//! assert_eq!(registry.find("hello").unwrap().class, "com.example.HelloSourceConnector");
//!
//! // Every error at once, as `PUT /connector-plugins/Hello/config/validate` shows them.
//! let bad = Props::from([("interval.ms".to_owned(), "soon".to_owned())]);
//! let errors = HelloConfig::from_props(&bad).unwrap_err();
//! assert_eq!(errors.0.len(), 2, "{errors}"); // topic missing, interval.ms not a number
//!
//! // Drive a task by hand, as the runtime would, resuming from a stored offset.
//! struct Stored;
//! impl OffsetReader for Stored {
//!     fn offset(&self, _: &SourcePartition) -> Option<SourceOffset> {
//!         serde_json::json!({"next": 41}).as_object().cloned()
//!     }
//! }
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let mut task = HelloSource::default().task();
//! let ctx = SourceTaskContext::new(TaskId::new("hello", 0), Arc::new(Stored));
//! let props = Props::from([
//!     ("topic".to_owned(), "greetings".to_owned()),
//!     ("interval.ms".to_owned(), "0".to_owned()),
//! ]);
//! task.start(ctx, &props).await.unwrap();
//! let batch = task.poll().await.unwrap();
//! assert_eq!(batch[0].record.value, Value::from("hello 41"));
//! assert_eq!(batch[0].source_offset["next"], 42);
//! # });
//! ```
#![deny(missing_docs)]

pub mod backoff;
pub mod batch;
pub mod config;
mod connector;
pub mod convert;
pub mod date_pattern;
pub mod dead_letter;
mod error;
mod plugin;
mod record;
mod schema;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod value;

pub use config::{
    ConfigDef, ConfigError, ConfigErrors, ConfigKey, ConfigKeyInfo, ConfigType, ConfigValueReport,
    ConnectorConfig, Importance, ParsedConfig, Password, Props, Validator,
};
pub use connector::{
    Acknowledgement, CommittedOffset, Connector, ConnectorContext, OffsetReader, Offsets,
    ProducerRecord, SinkConnector, SinkTask, SinkTaskContext, SinkTaskControl, SourceConnector,
    SourceTask, SourceTaskContext, SourceTaskControl, TaskId,
};
pub use convert::{ConnectData, Converter};
pub use error::{ConnectError, ConnectResult, Fault};
pub use plugin::{ConnectorInstance, ConnectorType, Plugin, PluginRegistry, UnknownPlugin};
pub use record::{
    Header, Headers, Record, SinkRecord, SourceOffset, SourcePartition, SourceRecord,
    TopicPartition, now_ms,
};
pub use schema::{Field, Schema, SchemaType, logical};
pub use value::{FieldName, Struct, Value};

/// Re-exported so connectors implement the traits with the same macro version.
pub use async_trait::async_trait;
