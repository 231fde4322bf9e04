//! One table's (or the query's) reads: the statement of its mode, the bound up to which rows are
//! safe to read, and the offset each row carries.
//!
//! Guarantees (each database's part is in [`super::db`]):
//! - every value is bound, never spliced into SQL text; identifiers are quoted
//!   (`quote.sql.identifiers`);
//! - each read's rows come from one snapshot (a read-only transaction), and its bound from the
//!   database's [`Clock`] taken just before the snapshot;
//! - **rows committed out of order are not lost.** Timestamp modes read only rows older than
//!   the database's `now - timestamp.delay.interval.ms` *and* older than the start of the oldest
//!   transaction still open (PostgreSQL's `pg_stat_activity`, InnoDB's `innodb_trx`): a row such
//!   a transaction writes later has a timestamp at or after its start when the column is filled
//!   from the database's clock (a timestamp set by a client's clock needs the delay to cover the
//!   client's skew). The bound is cut to what the column can hold (whole seconds for
//!   `timestamp(0)` or `DATETIME`), so a coarse column's rows are not read while their second can
//!   still gain rows. Incrementing mode reads past a gap in the ids (a missing `n + 1`) only once
//!   every transaction that could still fill it has ended ([`Pending`]): the gap is then filled
//!   or never will be (a rollback, a delete, a sequence cache);
//! - **rows sharing a timestamp are not lost.** `timestamp+incrementing` orders by both columns
//!   and resumes after the pair. `timestamp` alone never ends a batch inside a run of equal
//!   timestamps: a batch that would is cut before the run, or, when the run is the whole batch,
//!   the whole run is read; and a row carries the run's timestamp as its offset only if it is
//!   the run's last, so a restart re-reads a run it had not finished (duplicates bounded by one
//!   run, never loss);
//! - **a table's rows are never read with columns it no longer has**: each read first compares the
//!   table's columns (in the same snapshot) with those the reader was made for; on
//!   a difference it reads nothing and the task drops the reader until the connector, which lists
//!   tables with their columns, gives it new task configs (so an added column is in every row
//!   written after it);
//! - NULL timestamp or incrementing values are never read (`validate.non.null` refuses such
//!   columns).
//!
//! What no mode can see: deletes (use a CDC source), and, in incrementing mode,
//! updates; an id taken from a sequence by a transaction that has written nothing yet (some
//! ORMs fetch ids ahead) is not protected by the gap rule.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sluice_connector_api::{
    ConnectError, ConnectResult, FieldName, Record, Schema, SourcePartition, SourceRecord, Struct,
    Value,
};

use super::catalog::TableId;
use super::columns::{self, Column, Kind};
use super::config::{JdbcSourceConfig, Mode};
use super::db::{Bind, Clock, Database, Fetched, Layout, Pending, Tx};
use super::offset::{RowsOffset, RowsPartition};
use super::sql::{Param, Query, Statement};
use super::url::Dialect;

/// A gap in the ids and what could still fill it when it was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Gap {
    /// The id after the gap.
    before: i64,
    /// What could fill it then.
    pending: Pending,
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

impl Read {
    fn changed() -> Self {
        Self {
            changed: true,
            ..Self::default()
        }
    }
}

/// What a reader reads: a table or the query.
pub struct Source {
    /// Its source partition.
    pub partition: RowsPartition,
    /// The name used for messages (`schema.table`, or `query`).
    pub name: String,
    /// The topic of its rows.
    pub topic: String,
    /// The name of its value schema (the table's name, or `query`).
    pub schema_name: String,
    /// The table, quoted, or the query as a subquery.
    pub from: String,
    /// The table with its shape when listed (`None` for the query).
    pub table: Option<TableId>,
}

/// One table or the query, and how far it has been read.
pub struct Reader {
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
    /// The table with the shape its columns had when the reader was made.
    table: Option<TableId>,
    gap: Option<Gap>,
    mode: Mode,
    /// Whether a read needs the database's clock (timestamp modes, and MySQL's gap rule).
    needs_clock: bool,
    delay: chrono::Duration,
    batch: usize,
    tz: Tz,
}

impl Reader {
    /// A reader of `source`, whose `columns` (as the catalog describes them) and primary key are
    /// given, at `offset`.
    pub fn new(
        config: &JdbcSourceConfig,
        dialect: Dialect,
        source: Source,
        columns: Vec<Column>,
        primary_key: &[String],
        offset: Option<RowsOffset>,
    ) -> ConnectResult<Self> {
        let name = source.name;
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
                    Kind::Int8
                        | Kind::Int16
                        | Kind::Int32
                        | Kind::Int64
                        | Kind::NumericInteger(_)
                        | Kind::Decimal(0)
                ),
                false => matches!(c.kind, Kind::Timestamp | Kind::TimestampTz | Kind::Date),
            };
            if !fits {
                return Err(ConnectError::user(format!(
                    "{name}: column {} cannot order rows in mode {:?} (it reads as {:?})",
                    c.name, config.mode, c.kind
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
                Arc::new(Schema::structure(fields).named(format!("{}.Key", source.schema_name))),
            ))
        };
        let statement = Statement::new(
            config,
            dialect,
            source.from,
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
            partition: source.partition.to_map(),
            name,
            topic: source.topic,
            statement,
            names: columns
                .iter()
                .map(|c| FieldName::from(c.name.as_str()))
                .collect(),
            value_schema: Arc::new(columns::row_schema(&source.schema_name, &columns)),
            columns,
            key,
            incrementing,
            timestamps,
            offset,
            table: source.table,
            gap: None,
            mode: config.mode,
            needs_clock: config.mode.uses_timestamp() || dialect == Dialect::MySql,
            delay: chrono::Duration::from_std(config.timestamp_delay).unwrap_or_default(),
            batch: config.batch_max_rows,
            tz: config.db_timezone.parse().unwrap_or(Tz::UTC),
        })
    }

    fn layout(&self) -> Layout<'_> {
        Layout {
            columns: &self.columns,
            timestamps: &self.timestamps,
            incrementing: self.incrementing,
            tz: self.tz,
        }
    }

    /// Whether `shape` (the table's now) differs from the one the reader was made for.
    fn differs(&self, shape: Option<&str>) -> bool {
        self.table
            .as_ref()
            .is_some_and(|t| shape != Some(t.shape.as_str()))
    }

    /// The bound below which rows' times are safe to read (see the module's guarantees).
    fn bound(&self, clock: &Clock) -> DateTime<Utc> {
        let by_delay = clock.now - self.delay;
        let bound = clock.oldest_writer.map_or(by_delay, |o| o.min(by_delay));
        let Some(&first) = self.timestamps.first() else {
            return bound;
        };
        let digits = self
            .timestamps
            .iter()
            .filter_map(|&i| self.columns[i].fraction_digits)
            .min();
        columns::truncate(bound, &self.columns[first].kind, digits, self.tz)
    }

    /// Reads what is new (a page of `bulk` mode's pass is handled by [`Reader::read_all`]).
    pub async fn read(&mut self, db: &Database) -> ConnectResult<Read> {
        let clock = if self.needs_clock {
            db.clock(&self.name).await?
        } else {
            Clock {
                now: Utc::now(),
                oldest_writer: None,
            }
        };
        let (mut tx, snapshot) = db.begin(&self.name, self.table.as_ref()).await?;
        // Rows written after a column was added must not be read with the old columns.
        if self.differs(snapshot.shape.as_deref()) {
            return Ok(Read::changed());
        }
        let bound = self.bound(&clock);
        let query = self.query();
        let rows = self.fetch(&mut tx, query, bound, None).await?;
        let mut read = Read {
            more: rows.len() >= self.batch,
            ..Read::default()
        };
        let rows = match self.mode {
            Mode::Incrementing => self.past_gaps(rows, &clock, &snapshot.pending, &mut read),
            Mode::Timestamp => self.whole_runs(&mut tx, rows, bound).await?,
            _ => rows,
        };
        tx.commit(&self.name).await?;
        self.emit(rows, &mut read);
        Ok(read)
    }

    /// Every row (`bulk` mode), without an offset.
    pub async fn read_all(&self, db: &Database) -> ConnectResult<Read> {
        if let Some(table) = &self.table
            && self.differs(db.shape(table).await?.as_deref())
        {
            return Ok(Read::changed());
        }
        let rows = db
            .fetch_all(&self.statement.bulk.sql, &self.layout(), &self.name)
            .await?;
        let mut read = Read::default();
        for row in rows {
            match self.record(row.values, RowsOffset::default()) {
                (r, None) => read.records.push(r),
                (r, Some(e)) => read.rejected.push((r, e)),
            }
        }
        Ok(read)
    }

    /// The statement for the offset as it stands.
    fn query(&self) -> &Query {
        let s = &self.statement;
        match (self.mode, self.offset.time(), self.offset.incrementing) {
            (Mode::Incrementing, _, Some(_)) => &s.after_id,
            (Mode::Incrementing, _, None) => &s.first_ids,
            (Mode::Timestamp, Some(_), _) => &s.after_time,
            (Mode::TimestampIncrementing, Some(_), Some(_)) => &s.after_time_and_id,
            (Mode::TimestampIncrementing, Some(_), None) => &s.after_time,
            _ => &s.first_times,
        }
    }

    /// The rows of `query` at the offset, below `bound`; `time` stands for the offset's time
    /// when given (a run's).
    async fn fetch(
        &self,
        tx: &mut Tx,
        query: &Query,
        bound: DateTime<Utc>,
        time: Option<DateTime<Utc>>,
    ) -> ConnectResult<Vec<Fetched>> {
        let binds: Vec<Bind> = query
            .params
            .iter()
            .map(|p| match p {
                Param::Time => Bind::Time(time.or(self.offset.time()).unwrap_or_default()),
                Param::Id => Bind::Int(self.offset.incrementing.unwrap_or_default()),
                Param::Bound => Bind::Time(bound),
                Param::Limit => Bind::Int(self.batch as i64),
            })
            .collect();
        tx.fetch(&query.sql, &binds, &self.layout(), &self.name)
            .await
    }

    /// Incrementing mode: the rows up to the first gap something in progress may fill.
    fn past_gaps(
        &mut self,
        rows: Vec<Fetched>,
        clock: &Clock,
        pending: &Pending,
        read: &mut Read,
    ) -> Vec<Fetched> {
        let mut prev = self.offset.incrementing;
        let mut kept = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(id) = row.id else { break };
            let contiguous = prev.is_some_and(|p| id == p + 1);
            if !contiguous && !pending.is_empty() {
                let waited = self
                    .gap
                    .as_ref()
                    .is_some_and(|g| g.before == id && g.pending.settled(clock, pending));
                if !waited {
                    if self.gap.as_ref().is_none_or(|g| g.before != id) {
                        self.gap = Some(Gap {
                            before: id,
                            pending: pending.clone(),
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
        tx: &mut Tx,
        mut rows: Vec<Fetched>,
        bound: DateTime<Utc>,
    ) -> ConnectResult<Vec<Fetched>> {
        if rows.len() < self.batch {
            return Ok(rows); // everything below the bound: the last run is whole
        }
        let Some(last) = rows.last().and_then(|r| r.time) else {
            return Ok(rows);
        };
        let run_start = rows.iter().position(|r| r.time == Some(last)).unwrap_or(0);
        if run_start > 0 {
            rows.truncate(run_start);
            return Ok(rows);
        }
        // The whole batch is one run: read all of it.
        self.fetch(tx, &self.statement.at_time, bound, Some(last))
            .await
            .map_err(|e| {
                ConnectError::new(
                    e.fault(),
                    e.is_retriable(),
                    format!("{} (a run of equal timestamps)", e.message()),
                )
            })
    }

    fn emit(&mut self, rows: Vec<Fetched>, read: &mut Read) {
        let times: Vec<_> = rows.iter().map(|r| r.time).collect();
        for (i, row) in rows.into_iter().enumerate() {
            let mut offset = self.offset;
            if self.incrementing.is_some()
                && let Some(id) = row.id
            {
                offset.incrementing = Some(id);
            }
            // In timestamp mode, a row moves the offset to its time only as the last of its run.
            let last_of_run =
                self.mode != Mode::Timestamp || times.get(i + 1).is_none_or(|t| *t != times[i]);
            // A row whose time could not be read (it goes to the error policy) keeps the offset.
            if self.mode.uses_timestamp() && last_of_run && times[i].is_some() {
                offset.set_time(times[i]);
            }
            self.offset = offset;
            match self.record(row.values, offset) {
                (r, None) => read.records.push(r),
                (r, Some(e)) => read.rejected.push((r, e)),
            }
        }
    }

    /// The row as a record; with the first error of a value that could not be read.
    fn record(
        &self,
        values: Vec<ConnectResult<Value>>,
        offset: RowsOffset,
    ) -> (SourceRecord, Option<ConnectError>) {
        let mut value = Struct::new();
        let mut error = None;
        for (i, v) in values.into_iter().enumerate() {
            match v {
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
