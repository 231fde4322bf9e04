//! The JDBC source task: its tables (or the query) read in turn, each as often as it has rows
//! and every `poll.interval.ms` once it has none, offsets resumed from the offsets topic.
//!
//! Guarantees: a `poll` returns at most `batch.max.rows` rows of one table, except a timestamp
//! run read whole (see [`super::reader`]); a row whose values cannot be read goes to the error
//! policy with its table and key; a database that goes away is a retriable error (the runtime
//! retries the poll, the reader keeps its place).

use std::time::Duration;

use sluice_connector_api::{
    ConnectResult, ConnectorConfig, Props, SourceRecord, SourceTask, SourceTaskContext, async_trait,
};
use tokio::time::Instant;

use super::catalog::TableId;
use super::config::{JdbcSourceConfig, Mode};
use super::db::Database;
use super::offset::{RowsOffset, RowsPartition};
use super::reader::{Reader, Source};

/// Longest wait inside one `poll`, so the task stays responsive to pause and stop.
const MAX_POLL_WAIT: Duration = Duration::from_secs(1);

struct Scheduled {
    reader: Reader,
    /// The table read (`None` for the query).
    table: Option<TableId>,
    next_read: Instant,
}

/// Reads the tables of one task.
#[derive(Default)]
pub struct JdbcSourceTask {
    ctx: Option<SourceTaskContext>,
    config: Option<JdbcSourceConfig>,
    db: Option<Database>,
    readers: Vec<Scheduled>,
    /// The reader looked at first in the next poll (round robin).
    next: usize,
}

impl JdbcSourceTask {
    fn stored_offset(
        ctx: &SourceTaskContext,
        partition: &RowsPartition,
        table: Option<&TableId>,
    ) -> Option<RowsOffset> {
        let stored = ctx
            .offset(&partition.to_map())
            .or_else(|| table.and_then(|t| ctx.offset(&RowsPartition::legacy(&t.name))))?;
        serde_json::from_value(serde_json::Value::Object(stored)).ok()
    }
}

#[async_trait]
impl SourceTask for JdbcSourceTask {
    async fn start(&mut self, ctx: SourceTaskContext, props: &Props) -> ConnectResult<()> {
        let config = JdbcSourceConfig::from_props(props)?;
        let db = Database::connect(&config).await?;
        let database = db.database().await?;
        if config.mode != Mode::Bulk
            && let Some(warning) = db.blind_spot().await
        {
            tracing::warn!(task = %ctx.task_id, "{warning}");
        }
        let dialect = db.dialect();
        let now = Instant::now();
        let mut readers: Vec<(Reader, Option<TableId>)> = Vec::new();
        if let Some(query) = &config.query {
            let columns = db.describe_query(query, config.numeric_mapping).await?;
            let partition = RowsPartition::query();
            let offset = Self::stored_offset(&ctx, &partition, None);
            let source = Source {
                partition,
                name: "query".to_owned(),
                topic: config.topic_prefix.clone(),
                schema_name: "query".to_owned(),
                from: format!("({query}) AS sluice_query"),
                table: None,
            };
            readers.push((
                Reader::new(&config, dialect, source, columns, &[], offset)?,
                None,
            ));
        }
        for table in &config.tables {
            let (columns, key) = db.describe_table(table, config.numeric_mapping).await?;
            let partition = RowsPartition::table(db.qualified(&database, table));
            let offset = Self::stored_offset(&ctx, &partition, Some(table));
            let source = Source {
                partition,
                name: table.display(),
                topic: format!("{}{}", config.topic_prefix, table.name),
                schema_name: table.name.clone(),
                from: table.quoted(dialect, config.quote_identifiers),
                table: Some(table.clone()),
            };
            readers.push((
                Reader::new(&config, dialect, source, columns, &key, offset)?,
                Some(table.clone()),
            ));
        }
        tracing::info!(
            task = %ctx.task_id,
            "reading {} from {} at {}",
            readers.len(),
            dialect.product(),
            config.url.host()
        );
        self.readers = readers
            .into_iter()
            .map(|(reader, table)| Scheduled {
                reader,
                table,
                next_read: now,
            })
            .collect();
        self.db = Some(db);
        self.config = Some(config);
        self.ctx = Some(ctx);
        Ok(())
    }

    async fn poll(&mut self) -> ConnectResult<Vec<SourceRecord>> {
        let (Some(ctx), Some(config), Some(db)) = (&self.ctx, &self.config, &self.db) else {
            return Ok(Vec::new());
        };
        let n = self.readers.len();
        if n == 0 {
            tokio::time::sleep(MAX_POLL_WAIT).await;
            return Ok(Vec::new());
        }
        let now = Instant::now();
        let due = (0..n)
            .map(|k| (self.next + k) % n)
            .find(|&i| self.readers[i].next_read <= now);
        let Some(i) = due else {
            let soonest = self
                .readers
                .iter()
                .map(|s| s.next_read)
                .min()
                .unwrap_or(now);
            tokio::time::sleep_until(soonest.min(now + MAX_POLL_WAIT)).await;
            return Ok(Vec::new());
        };
        self.next = (i + 1) % n;
        let scheduled = &mut self.readers[i];
        let result = if config.mode == Mode::Bulk {
            scheduled.reader.read_all(db).await
        } else {
            scheduled.reader.read(db).await
        };
        let table = scheduled.table.clone();
        let (read, gone) = match (result, table) {
            (Ok(read), Some(table)) if read.changed => (
                None,
                Some((table, "was dropped or its columns changed".to_owned())),
            ),
            (Ok(read), _) => (Some(read), None),
            (Err(e), _) if e.is_retriable() => return Err(e),
            // A statement can still fail when the table changes between the check and it.
            (Err(e), Some(table)) => {
                let now_shape = db.shape(&table).await?;
                if now_shape.as_deref() == Some(table.shape.as_str()) {
                    return Err(e);
                }
                (None, Some((table, format!("changed ({})", e.message()))))
            }
            (Err(e), None) => return Err(e),
        };
        let Some(read) = read else {
            if let Some((table, why)) = gone {
                tracing::warn!(
                    task = %ctx.task_id,
                    "{} {why} since the task started; not read until the connector \
                     reconfigures the task",
                    table.display()
                );
            }
            self.readers.remove(i);
            self.next = 0;
            return Ok(Vec::new());
        };
        let scheduled = &mut self.readers[i];
        scheduled.next_read = if read.more {
            now
        } else {
            now + config.poll_interval
        };
        if read.held_back {
            ctx.count("jdbc.gap.waits", 1);
        }
        ctx.count(
            "jdbc.rows.read",
            (read.records.len() + read.rejected.len()) as u64,
        );
        for (record, error) in read.rejected {
            ctx.report(&record, error).await?;
        }
        Ok(read.records)
    }

    async fn stop(&mut self) -> ConnectResult<()> {
        if let Some(db) = self.db.take() {
            db.close().await;
        }
        Ok(())
    }
}
