//! One table's (or the query's) reads: the statement of its mode, the bound up to which rows are
//! safe to read, and the offset each row carries.
//!
//! Guarantees (PostgreSQL):
//! - every value is bound, never spliced into SQL text; identifiers are quoted
//!   (`quote.sql.identifiers`);
//! - each read runs in one `REPEATABLE READ READ ONLY` transaction, so the bound and the rows come
//!   from the same snapshot;
//! - **rows committed out of order are not lost.** Timestamp modes read only rows older than
//!   `now() - timestamp.delay.interval.ms` *and* older than the start of the oldest transaction
//!   still open in the database (`pg_stat_activity.xact_start`): a row such a transaction writes
//!   later has a timestamp at or after its start when the column is filled from `now()` or the
//!   clock (a timestamp set by a client's clock needs the delay to cover the client's skew).
//!   Incrementing mode reads past a gap in the ids (a missing `n + 1`) only once every
//!   transaction in progress when the gap was seen (`pg_current_snapshot()`) has ended: the gap
//!   is then filled or never will be (a rollback, a delete, a sequence cache);
//! - **rows sharing a timestamp are not lost.** `timestamp+incrementing` orders by both columns
//!   and resumes after the pair. `timestamp` alone never ends a batch inside a run of equal
//!   timestamps: a batch that would is cut before the run, or, when the run is the whole batch,
//!   the whole run is read; and a row carries the run's timestamp as its offset only if it is
//!   the run's last, so a restart re-reads a run it had not finished (duplicates bounded by one
//!   run, never loss);
//! - **a table's rows are never read with columns it no longer has**: each read first compares the
//!   table's columns (`pg_attribute`, in the same snapshot) with those the reader was made for; on
//!   a difference it reads nothing and the task drops the reader until the connector, which lists
//!   tables with their columns, gives it new task configs (so an added column is in every row
//!   written after it);
//! - NULL timestamp or incrementing values are never read (`validate.non.null` refuses such
//!   columns).
//!
//! What no mode can see: deletes (use the PostgreSQL CDC source), and, in incrementing mode,
//! updates; an id taken from a sequence by a transaction that has written nothing yet (some
//! ORMs fetch ids ahead) is not protected by the gap rule.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sluice_connector_api::{
    ConnectError, ConnectResult, FieldName, Record, Schema, SourcePartition, SourceRecord, Struct,
    Value,
};
use sqlx::Postgres;
use sqlx::postgres::{PgPool, PgRow};

use super::catalog;
use super::columns::{self, Column, Kind};
use super::config::{JdbcSourceConfig, Mode};
use super::offset::{RowsOffset, RowsPartition};
use super::sql::{self, Statement};

/// The application name of the source's sessions: their own transactions do not hold back
/// each other's bound.
pub const APPLICATION_NAME: &str = "sluice-jdbc-source";

/// A gap in the ids and the transactions that were in progress when it was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Gap {
    /// The id after the gap.
    before: i64,
    /// Transaction ids in progress then.
    xids: Vec<String>,
}

/// What one read gave.
#[derive(Debug, Default)]
pub struct Read {
    /// Rows as records, in order.
    pub records: Vec<SourceRecord>,
    /// Rows whose values could not be read, with the error, for the error policy.
    pub rejected: Vec<(SourceRecord, ConnectError)>,
    /// Whether the read stopped at a gap in the ids that a running transaction may fill.
    pub held_back: bool,
    /// Whether there may be more to read at once.
    pub more: bool,
    /// Whether the table was dropped or its columns changed since the reader was made: nothing
    /// was read, and the reader must not read again (the connector gives new task configs).
    pub changed: bool,
}

/// One table or the query, and how far it has been read.
pub struct Reader {
    /// Its source partition.
    /// Its source partition as the runtime stores it, made once and cloned into each record.
    pub partition: SourcePartition,
    /// The name used for messages (`schema.table`, or `query`).
    pub name: String,
    topic: String,
    statement: Statement,
    columns: Vec<Column>,
    names: Vec<FieldName>,
    value_schema: Arc<Schema>,
    key: Option<(Vec<usize>, Arc<Schema>)>,
    incrementing: Option<usize>,
    timestamps: Vec<usize>,
    offset: RowsOffset,
    /// The table (quoted) and its columns' shape when the reader was made.
    shape: Option<(String, String)>,
    gap: Option<Gap>,
    mode: Mode,
    delay: chrono::Duration,
    batch: usize,
    tz: Tz,
}

impl Reader {
    /// A reader of `columns` (as the catalog describes them) at `offset`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: &JdbcSourceConfig,
        partition: RowsPartition,
        name: String,
        topic: String,
        schema_name: &str,
        from: String,
        columns: Vec<Column>,
        primary_key: &[String],
        offset: Option<RowsOffset>,
    ) -> ConnectResult<Self> {
        let find = |wanted: &str, role: &str| {
            columns
                .iter()
                .position(|c| c.name == wanted)
                .ok_or_else(|| {
                    ConnectError::user(format!("{name} has no {role} column {wanted:?}"))
                })
        };
        let incrementing = match (config.mode.uses_incrementing(), &config.incrementing_column) {
            (false, _) => None,
            (true, Some(c)) => Some(find(c, "incrementing")?),
            (true, None) => Some(detect_incrementing(&name, &columns, primary_key)?),
        };
        let timestamps = if config.mode.uses_timestamp() {
            config
                .timestamp_columns
                .iter()
                .map(|c| find(c, "timestamp"))
                .collect::<ConnectResult<Vec<_>>>()?
        } else {
            Vec::new()
        };
        for &i in incrementing.iter().chain(&timestamps) {
            let c = &columns[i];
            let fits = match incrementing == Some(i) {
                true => matches!(
                    c.kind,
                    Some(Kind::Int16 | Kind::Int32 | Kind::Int64 | Kind::NumericInteger(_))
                ),
                false => matches!(
                    c.kind,
                    Some(Kind::Timestamp | Kind::TimestampTz | Kind::Date)
                ),
            };
            if !fits {
                return Err(ConnectError::user(format!(
                    "{name}: column {} cannot order rows in mode {:?} (it reads as {:?})",
                    c.name,
                    config.mode,
                    c.read_kind()
                )));
            }
            // A query's columns have no declared nullability to check.
            let declared = config.query.is_none();
            if declared
                && c.nullable
                && config.validate_non_null
                && (incrementing == Some(i) || timestamps.len() == 1)
            {
                return Err(ConnectError::user(format!(
                    "{name}: column {} may be NULL, and rows where it is NULL are never read; \
                     make it NOT NULL or set validate.non.null=false",
                    c.name
                )));
            }
        }
        let key = if primary_key.is_empty() {
            None
        } else {
            let idx = primary_key
                .iter()
                .map(|k| find(k, "primary key"))
                .collect::<ConnectResult<Vec<_>>>()?;
            let fields = idx.iter().map(|&i| columns[i].field()).collect();
            Some((
                idx,
                Arc::new(Schema::structure(fields).named(format!("{schema_name}.Key"))),
            ))
        };
        let statement = Statement::new(
            config,
            from,
            &columns,
            incrementing.map(|i| columns[i].name.as_str()),
            &timestamps
                .iter()
                .map(|&i| columns[i].name.as_str())
                .collect::<Vec<_>>(),
        );
        let mut offset = offset.unwrap_or_default();
        if offset.time().is_none()
            && let Some(initial) = config
                .timestamp_initial
                .filter(|_| config.mode.uses_timestamp())
        {
            let at = if initial == -1 {
                Utc::now()
            } else {
                DateTime::from_timestamp_millis(initial).unwrap_or_default()
            };
            offset.set_time(Some(at));
        }
        Ok(Self {
            partition: partition.to_map(),
            name,
            topic,
            statement,
            names: columns
                .iter()
                .map(|c| FieldName::from(c.name.as_str()))
                .collect(),
            value_schema: Arc::new(columns::row_schema(schema_name, &columns)),
            columns,
            key,
            incrementing,
            timestamps,
            offset,
            shape: None,
            gap: None,
            mode: config.mode,
            delay: chrono::Duration::from_std(config.timestamp_delay).unwrap_or_default(),
            batch: config.batch_max_rows,
            tz: config.db_timezone.parse().unwrap_or(Tz::UTC),
        })
    }

    /// This reader, reading `table` (quoted) only while its columns keep `shape`.
    pub fn with_shape(mut self, table: String, shape: String) -> Self {
        self.shape = Some((table, shape));
        self
    }

    /// Whether the table is gone or its columns differ from the reader's.
    async fn changed<'e, E>(&self, executor: E) -> ConnectResult<bool>
    where
        E: sqlx::Executor<'e, Database = Postgres>,
    {
        let Some((table, expected)) = &self.shape else {
            return Ok(false);
        };
        let now: Option<String> =
            sqlx::query_scalar(&format!("SELECT {}", catalog::shape_sql("to_regclass($1)")))
                .bind(table)
                .fetch_one(executor)
                .await
                .map_err(|e| db_error(&self.name, "reading its columns", e))?;
        Ok(now.as_deref() != Some(expected.as_str()))
    }

    /// Reads what is new (a page of `bulk` mode's pass is handled by [`Reader::read_all`]).
    pub async fn read(&mut self, pool: &PgPool) -> ConnectResult<Read> {
        let mut tx = pool
            .begin()
            .await
            .map_err(|e| db_error(&self.name, "starting a read", e))?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error(&self.name, "starting a read", e))?;
        let (now, oldest, xip): (DateTime<Utc>, Option<DateTime<Utc>>, Vec<String>) =
            sqlx::query_as(sql::BOUNDS)
                .bind(APPLICATION_NAME)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| db_error(&self.name, "reading the safe bound", e))?;
        // Rows written after a column was added must not be read with the old columns.
        if self.changed(&mut *tx).await? {
            return Ok(Read {
                changed: true,
                ..Read::default()
            });
        }
        let by_delay = now - self.delay;
        let bound = oldest.map_or(by_delay, |o| o.min(by_delay));
        let rows = self.fetch(&mut tx, bound, self.batch as i64).await?;
        let mut read = Read {
            more: rows.len() >= self.batch,
            ..Read::default()
        };
        let rows = match self.mode {
            Mode::Incrementing => self.past_gaps(rows, &xip, &mut read),
            Mode::Timestamp => self.whole_runs(&mut tx, rows, bound).await?,
            _ => rows,
        };
        tx.commit()
            .await
            .map_err(|e| db_error(&self.name, "ending a read", e))?;
        self.emit(&rows, &mut read);
        Ok(read)
    }

    /// Every row (`bulk` mode), without an offset.
    pub async fn read_all(&self, pool: &PgPool) -> ConnectResult<Read> {
        if self.changed(pool).await? {
            return Ok(Read {
                changed: true,
                ..Read::default()
            });
        }
        let rows: Vec<PgRow> = sqlx::query(&self.statement.bulk)
            .fetch_all(pool)
            .await
            .map_err(|e| db_error(&self.name, "reading", e))?;
        let mut read = Read::default();
        for row in &rows {
            match self.record(row, RowsOffset::default()) {
                (r, None) => read.records.push(r),
                (r, Some(e)) => read.rejected.push((r, e)),
            }
        }
        Ok(read)
    }

    async fn fetch(
        &self,
        tx: &mut sqlx::Transaction<'static, Postgres>,
        bound: DateTime<Utc>,
        limit: i64,
    ) -> ConnectResult<Vec<PgRow>> {
        let time = self.offset.time();
        let inc = self.offset.incrementing;
        let query = match (self.mode, time, inc) {
            (Mode::Incrementing, _, Some(i)) => sqlx::query(&self.statement.after_id).bind(i),
            (Mode::Incrementing, _, None) => sqlx::query(&self.statement.first_ids),
            (Mode::Timestamp, Some(t), _) => sqlx::query(&self.statement.after_time).bind(t),
            (Mode::TimestampIncrementing, Some(t), Some(i)) => {
                sqlx::query(&self.statement.after_time_and_id)
                    .bind(t)
                    .bind(i)
            }
            (Mode::TimestampIncrementing, Some(t), None) => {
                sqlx::query(&self.statement.after_time).bind(t)
            }
            _ => sqlx::query(&self.statement.first_times),
        };
        let query = if self.mode.uses_timestamp() {
            query.bind(bound)
        } else {
            query
        };
        query
            .bind(limit)
            .fetch_all(&mut **tx)
            .await
            .map_err(|e| db_error(&self.name, "reading", e))
    }

    /// Incrementing mode: the rows up to the first gap a transaction in progress may fill.
    fn past_gaps(&mut self, rows: Vec<PgRow>, xip: &[String], read: &mut Read) -> Vec<PgRow> {
        let mut prev = self.offset.incrementing;
        let mut kept = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(id) = self.id(&row) else { break };
            let contiguous = prev.is_some_and(|p| id == p + 1);
            if !contiguous && !xip.is_empty() {
                let waited = self
                    .gap
                    .as_ref()
                    .is_some_and(|g| g.before == id && g.xids.iter().all(|x| !xip.contains(x)));
                if !waited {
                    if self.gap.as_ref().is_none_or(|g| g.before != id) {
                        self.gap = Some(Gap {
                            before: id,
                            xids: xip.to_vec(),
                        });
                    }
                    read.held_back = true;
                    read.more = false;
                    break;
                }
            }
            self.gap = None;
            prev = Some(id);
            kept.push(row);
        }
        kept
    }

    /// Timestamp mode: whole runs of equal timestamps only.
    async fn whole_runs(
        &self,
        tx: &mut sqlx::Transaction<'static, Postgres>,
        mut rows: Vec<PgRow>,
        bound: DateTime<Utc>,
    ) -> ConnectResult<Vec<PgRow>> {
        if rows.len() < self.batch {
            return Ok(rows); // everything below the bound: the last run is whole
        }
        let Some(last) = rows.last().and_then(|r| self.time(r)) else {
            return Ok(rows);
        };
        let run_start = rows
            .iter()
            .position(|r| self.time(r) == Some(last))
            .unwrap_or(0);
        if run_start > 0 {
            rows.truncate(run_start);
            return Ok(rows);
        }
        // The whole batch is one run: read all of it.
        sqlx::query(&self.statement.at_time)
            .bind(last)
            .bind(bound)
            .fetch_all(&mut **tx)
            .await
            .map_err(|e| db_error(&self.name, "reading a run of equal timestamps", e))
    }

    fn emit(&mut self, rows: &[PgRow], read: &mut Read) {
        for (i, row) in rows.iter().enumerate() {
            let time = self.time(row);
            let mut offset = self.offset;
            if let Some(id) = self.incrementing.and_then(|_| self.id(row)) {
                offset.incrementing = Some(id);
            }
            // In timestamp mode, a row moves the offset to its time only as the last of its run.
            let last_of_run = self.mode != Mode::Timestamp
                || rows.get(i + 1).is_none_or(|next| self.time(next) != time);
            if self.mode.uses_timestamp() && last_of_run {
                offset.set_time(time);
            }
            self.offset = offset;
            match self.record(row, offset) {
                (r, None) => read.records.push(r),
                (r, Some(e)) => read.rejected.push((r, e)),
            }
        }
    }

    /// The row as a record; with the first error of a value that could not be read.
    fn record(&self, row: &PgRow, offset: RowsOffset) -> (SourceRecord, Option<ConnectError>) {
        let mut value = Struct::new();
        let mut error = None;
        for (i, column) in self.columns.iter().enumerate() {
            match columns::value(row, i, column, self.tz) {
                Ok(v) => value.put(Arc::clone(&self.names[i]), v),
                Err(e) => {
                    error.get_or_insert(e);
                    value.put(Arc::clone(&self.names[i]), Value::Null);
                }
            }
        }
        let mut record = Record::new(self.topic.clone(), Value::Null);
        if let Some((idx, schema)) = &self.key {
            let mut key = Struct::new();
            for &i in idx {
                key.put(
                    Arc::clone(&self.names[i]),
                    value
                        .get(&self.columns[i].name)
                        .cloned()
                        .unwrap_or_default(),
                );
            }
            record.key = Value::Struct(key);
            record.key_schema = Some(Arc::clone(schema));
        }
        let source = |record| SourceRecord {
            record,
            source_partition: self.partition.clone(),
            source_offset: offset.to_map(),
        };
        match error {
            None => {
                record.value = Value::Struct(value);
                record.value_schema = Some(Arc::clone(&self.value_schema));
                (source(record), None)
            }
            Some(e) => {
                let message = format!(
                    "{}, key {}: {}",
                    self.name,
                    describe_key(&record.key),
                    e.message()
                );
                (
                    source(record),
                    Some(ConnectError::new(e.fault(), false, message)),
                )
            }
        }
    }

    fn id(&self, row: &PgRow) -> Option<i64> {
        let i = self.incrementing?;
        match columns::value(row, i, &self.columns[i], self.tz).ok()? {
            Value::Int8(v) => Some(v.into()),
            Value::Int16(v) => Some(v.into()),
            Value::Int32(v) => Some(v.into()),
            Value::Int64(v) => Some(v),
            _ => None,
        }
    }

    /// The row's timestamp at full precision: the first non-NULL timestamp column.
    fn time(&self, row: &PgRow) -> Option<DateTime<Utc>> {
        self.timestamps.iter().find_map(|&i| {
            columns::instant(row, i, &self.columns[i], self.tz)
                .ok()
                .flatten()
        })
    }
}

/// The incrementing column when none is named: the primary key, if it is one non-null
/// auto-increment integer column.
fn detect_incrementing(
    name: &str,
    columns: &[Column],
    primary_key: &[String],
) -> ConnectResult<usize> {
    let found = match primary_key {
        [only] => columns.iter().position(|c| &c.name == only && !c.nullable),
        _ => None,
    };
    found.ok_or_else(|| {
        ConnectError::user(format!(
            "{name}: no incrementing.column.name given and no single-column primary key to use"
        ))
    })
}

/// The key as `column=value, …` for messages.
fn describe_key(key: &Value) -> String {
    fn plain(v: &Value) -> String {
        match v {
            Value::Null => "NULL".to_owned(),
            Value::Boolean(b) => b.to_string(),
            Value::Int8(n) => n.to_string(),
            Value::Int16(n) => n.to_string(),
            Value::Int32(n) => n.to_string(),
            Value::Int64(n) => n.to_string(),
            Value::String(s) => format!("{s:?}"),
            other => format!("{other:?}"),
        }
    }
    match key {
        Value::Struct(s) => s
            .fields()
            .iter()
            .map(|(k, v)| format!("{k}={}", plain(v)))
            .collect::<Vec<_>>()
            .join(", "),
        Value::Null => "(none: the table has no primary key)".to_owned(),
        other => plain(other),
    }
}

/// A database error as a task error: retriable when the database may answer later.
pub fn db_error(what: &str, doing: &str, e: sqlx::Error) -> ConnectError {
    let retriable = matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
    ) || matches!(&e, sqlx::Error::Database(d) if d.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "40001"));
    let message = format!("{what}: {doing} failed: {e}");
    if retriable {
        ConnectError::retriable(message)
    } else {
        ConnectError::user(message)
    }
}
