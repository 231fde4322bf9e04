//! The JDBC source: rows of PostgreSQL, MySQL/MariaDB or SQLite tables, or of a query, into
//! Kafka, under Confluent's
//! `JdbcSourceConnector` class, config names and offsets, without the rows Confluent's connector is
//! known to lose (rows committed out of order, rows sharing a timestamp at a batch's end: see
//! [`reader`]).
//!
//! The connector lists the tables at start and every `table.poll.interval.ms`, divides them among
//! up to `tasks.max` tasks, and asks for new task configs when the list changes. A query is one
//! task. Each task reads its tables in turn ([`task`]); the topic of a table's rows is
//! `topic.prefix` + its name, the key its primary key (a struct), the value a struct of its
//! columns ([`columns`] has the Connect types, [`db`] each database's mapping to them).
//!
//! Bad input: validation never connects; a database that cannot be reached is retried
//! `connection.attempts` times, `connection.backoff.ms` apart, then the connector or task fails
//! naming host, port and database (never the password).

pub mod catalog;
pub mod columns;
pub mod config;
pub mod db;
pub mod offset;
pub mod reader;
pub mod sql;
pub mod task;
pub mod url;

use std::sync::Arc;

use parking_lot::Mutex;
use sluice_connector_api::{
    ConfigDef, ConfigValueReport, ConnectError, ConnectResult, Connector, ConnectorConfig,
    ConnectorContext, Props, SourceConnector, SourceTask, async_trait,
};
use tokio::task::JoinHandle;

use catalog::TableId;
pub use config::JdbcSourceConfig;
pub use task::JdbcSourceTask;

/// Class name: Confluent's, so that existing connector JSON works as it is.
pub const CLASS: &str = "io.confluent.connect.jdbc.JdbcSourceConnector";

/// Lists tables and divides them among tasks.
#[derive(Default)]
pub struct JdbcSourceConnector {
    props: Props,
    tables: Arc<Mutex<Vec<TableId>>>,
    monitor: Option<JoinHandle<()>>,
    query: bool,
}

/// Lists the tables every `table.poll.interval.ms`; asks for new task configs when they change.
async fn monitor(
    db: db::Database,
    config: JdbcSourceConfig,
    database: String,
    tables: Arc<Mutex<Vec<TableId>>>,
    ctx: Arc<dyn ConnectorContext>,
) {
    loop {
        tokio::time::sleep(config.table_poll_interval).await;
        match db.tables(&config, &database).await {
            Ok(listed) => {
                let changed = *tables.lock() != listed;
                if changed {
                    tracing::info!(
                        "the JDBC source now reads {} tables of {}",
                        listed.len(),
                        config.url.host()
                    );
                    *tables.lock() = listed;
                    ctx.request_task_reconfiguration();
                }
            }
            Err(e) => tracing::warn!(
                "listing the tables of {} failed: {}",
                config.url.host(),
                e.message()
            ),
        }
    }
}

#[async_trait]
impl Connector for JdbcSourceConnector {
    fn config_def(&self) -> ConfigDef {
        JdbcSourceConfig::def()
    }

    fn validate(&self, props: &Props) -> Vec<ConfigValueReport> {
        JdbcSourceConfig::validate(props)
    }

    async fn start(&mut self, ctx: Arc<dyn ConnectorContext>, props: &Props) -> ConnectResult<()> {
        let config = JdbcSourceConfig::from_props(props)?;
        self.props = props.clone();
        self.query = config.query.is_some();
        if self.query {
            return Ok(());
        }
        let db = db::Database::connect(&config).await?;
        let database = db.database().await?;
        let listed = db.tables(&config, &database).await?;
        if listed.is_empty() {
            tracing::warn!(
                "no table of {} matches table.whitelist / table.blacklist / schema.pattern yet",
                config.url.host()
            );
        }
        *self.tables.lock() = listed;
        self.monitor = Some(tokio::spawn(monitor(
            db,
            config,
            database,
            Arc::clone(&self.tables),
            ctx,
        )));
        Ok(())
    }

    fn task_configs(&self, max_tasks: usize) -> ConnectResult<Vec<Props>> {
        if self.query {
            return Ok(vec![self.props.clone()]);
        }
        let tables = self.tables.lock().clone();
        let n = max_tasks.clamp(1, tables.len().max(1));
        let mut groups: Vec<Vec<TableId>> = vec![Vec::new(); n];
        for (i, table) in tables.into_iter().enumerate() {
            groups[i % n].push(table);
        }
        groups
            .into_iter()
            .map(|group| {
                let mut props = self.props.clone();
                let json = serde_json::to_string(&group)
                    .map_err(|e| ConnectError::internal(format!("encoding tables: {e}")))?;
                props.insert(config::TASK_TABLES.to_owned(), json);
                Ok(props)
            })
            .collect()
    }

    async fn stop(&mut self) -> ConnectResult<()> {
        if let Some(m) = self.monitor.take() {
            m.abort();
        }
        Ok(())
    }
}

impl SourceConnector for JdbcSourceConnector {
    fn task(&self) -> Box<dyn SourceTask> {
        Box::<JdbcSourceTask>::default()
    }
}
