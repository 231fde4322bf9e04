//! The PostgreSQL CDC source: Debezium's change events from logical replication (`pgoutput`),
//! under Debezium's `PostgresConnector` class, config names, topics, envelope and offsets, so
//! that a Debezium connector JSON and its consumers work unchanged.
//!
//! One task ([`task`]) runs a reader ([`session`]): it checks the server (`wal_level`, the
//! user's `REPLICATION` right, the slot not held by another client), creates the publication and
//! the slot when absent, snapshots per `snapshot.mode` ([`snapshot`], exact with the snapshot the
//! slot exported), then streams the slot ([`stream`]): pgoutput messages ([`pgoutput`]) become
//! change events ([`table`]) with column types mapped as Debezium maps them ([`types`]).
//!
//! Guarantees: every change committed after the snapshot point arrives, in commit order, once
//! per stored offset; the slot is confirmed only up to what Kafka acknowledged (in
//! `SourceTask::commit`), so a crash at any point loses nothing and repeats only the changes
//! after the last stored offset. Transactions with no streamed change, keepalives of an idle
//! server and heartbeats move the slot on, so it does not keep WAL without bound. The transport
//! is `pgwire-replication` (sqlx cannot stream replication): it decodes nothing but
//! transaction boundaries and confirms only what it is told to; the pgoutput messages are
//! decoded here.

pub mod catalog;
pub mod config;
pub mod filter;
pub mod offset;
pub mod pgoutput;
pub mod session;
pub mod snapshot;
pub mod stream;
pub mod table;
pub mod task;
pub mod text;
pub mod types;

use std::sync::{Arc, OnceLock};

use sluice_connector_api::{
    ConfigDef, ConfigValueReport, ConnectError, ConnectResult, Connector, ConnectorConfig,
    ConnectorContext, Field, Props, Record, Schema, SchemaType, SourceConnector, SourceRecord,
    SourceTask, Struct, Value, async_trait, now_ms,
};

pub use config::PostgresCdcConfig;
use offset::{CdcOffset, ServerPartition};
use pgoutput::Datum;
use table::{ColumnSpec, Table};
pub use task::PostgresCdcTask;

/// Class name: Debezium's, so that existing connector JSON works as it is.
pub const CLASS: &str = "io.debezium.connector.postgresql.PostgresConnector";

/// The `source.version` of events.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "-sluice");

/// What the reader hands the task.
#[derive(Debug)]
pub enum Item {
    /// A record for Kafka.
    Record(SourceRecord),
    /// A change that could not be turned into an event (its raw text), for the error policy.
    Rejected(SourceRecord, ConnectError),
    /// The reader stopped.
    Failed(ConnectError),
}

/// A table of `specs` as events carry it.
pub(crate) fn build_table(
    config: &PostgresCdcConfig,
    schema: &str,
    name: &str,
    specs: Vec<ColumnSpec>,
    described: &catalog::CatalogTable,
) -> Table {
    Table::new(
        &config.topic_prefix,
        schema,
        name,
        specs,
        described,
        config.modes(),
    )
}

/// A change that could not be read, as a schemaless record of its columns' text (so the dead
/// letter holds what PostgreSQL sent).
pub(crate) fn rejected(
    table: &Table,
    tuple: &[Datum],
    error: String,
    partition: &ServerPartition,
    offset: &CdcOffset,
) -> ConnectResult<Item> {
    let mut raw = Struct::new();
    for (c, d) in table.columns.iter().zip(tuple) {
        raw.put(
            c.name.clone(),
            match d {
                Datum::Null => Value::Null,
                Datum::Unchanged => Value::String("<unchanged TOAST value>".into()),
                Datum::Text(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
            },
        );
    }
    let record = Record::new(table.topic.clone(), Value::Struct(raw));
    Ok(Item::Rejected(
        SourceRecord::new(record, partition, offset)?,
        ConnectError::user(format!("{}.{}: {error}", table.schema, table.name)),
    ))
}

/// Debezium's heartbeat key schema.
pub(crate) fn heartbeat_key_schema() -> Arc<Schema> {
    static S: OnceLock<Arc<Schema>> = OnceLock::new();
    S.get_or_init(|| {
        Arc::new(
            Schema::structure(vec![Field {
                name: "serverName".into(),
                schema: Schema::new(SchemaType::String),
            }])
            .named("io.debezium.connector.common.ServerNameKey"),
        )
    })
    .clone()
}

/// Debezium's heartbeat value schema.
pub(crate) fn heartbeat_value_schema() -> Arc<Schema> {
    static S: OnceLock<Arc<Schema>> = OnceLock::new();
    S.get_or_init(|| {
        Arc::new(
            Schema::structure(vec![Field {
                name: "ts_ms".into(),
                schema: Schema::new(SchemaType::Int64),
            }])
            .named("io.debezium.connector.common.Heartbeat"),
        )
    })
    .clone()
}

/// A heartbeat record carrying `offset` (Debezium's, on `<topic.heartbeat.prefix>.<prefix>`).
pub(crate) fn heartbeat(config: &PostgresCdcConfig, offset: &CdcOffset) -> ConnectResult<Item> {
    let record = Record {
        topic: config.heartbeat_topic(),
        key_schema: Some(heartbeat_key_schema()),
        key: Value::Struct(
            Struct::new().with("serverName", Value::String(config.topic_prefix.clone())),
        ),
        value_schema: Some(heartbeat_value_schema()),
        value: Value::Struct(Struct::new().with("ts_ms", Value::Int64(now_ms()))),
        ..Record::default()
    };
    let partition = ServerPartition::of(&config.topic_prefix);
    Ok(Item::Record(SourceRecord::new(record, &partition, offset)?))
}

/// The connector: one task, as Debezium's (a replication slot has one reader).
#[derive(Default)]
pub struct PostgresCdcConnector {
    props: Props,
}

#[async_trait]
impl Connector for PostgresCdcConnector {
    fn config_def(&self) -> ConfigDef {
        PostgresCdcConfig::def()
    }

    fn validate(&self, props: &Props) -> Vec<ConfigValueReport> {
        PostgresCdcConfig::validate(props)
    }

    async fn start(&mut self, _ctx: Arc<dyn ConnectorContext>, props: &Props) -> ConnectResult<()> {
        PostgresCdcConfig::from_props(props)?;
        self.props = props.clone();
        Ok(())
    }

    fn task_configs(&self, _max_tasks: usize) -> ConnectResult<Vec<Props>> {
        Ok(vec![self.props.clone()])
    }

    async fn stop(&mut self) -> ConnectResult<()> {
        Ok(())
    }
}

impl SourceConnector for PostgresCdcConnector {
    fn task(&self) -> Box<dyn SourceTask> {
        Box::<PostgresCdcTask>::default()
    }
}
