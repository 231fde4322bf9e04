//! The databases the source reads, behind one face: connecting (with `connection.attempts`),
//! listing tables, describing columns, and reading rows in a snapshot with what bounds the read.
//! Each product has its module ([`postgres`], [`mysql`], [`sqlite`]) with its catalog queries,
//! its type mapping and its decoding; the reader's rules ([`super::reader`]) are the same for all.
//!
//! Guarantees: messages name the database by host, port and name (a SQLite file by its path),
//! never with the password; a read's rows all come from one snapshot; the [`Clock`] of a read is
//! taken *before* its snapshot, so that a transaction it does not see as open has committed
//! before the snapshot (and its rows are in it) or started after the clock (and its rows' times
//! are at or after it).

pub mod mysql;
pub mod postgres;
pub mod sqlite;

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sluice_connector_api::backoff::Backoff;
use sluice_connector_api::{ConnectError, ConnectResult, Value};

use super::catalog::TableId;
use super::columns::Column;
use super::config::{JdbcSourceConfig, NumericMapping};
use super::url::Dialect;

/// Longest wait for a connection to the database.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The application name of the source's sessions (PostgreSQL): their own transactions do not
/// hold back each other's bound.
pub const APPLICATION_NAME: &str = "sluice-jdbc-source";

/// A connection pool to one database.
pub enum Database {
    /// PostgreSQL.
    Postgres(sqlx::PgPool),
    /// MySQL or MariaDB.
    MySql(sqlx::MySqlPool),
    /// SQLite, read only.
    Sqlite(sqlite::SqliteFile),
}

/// A value bound into a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bind {
    /// An incrementing value or a row limit.
    Int(i64),
    /// A time, written as the reader's timestamp columns hold it.
    Time(DateTime<Utc>),
}

/// How a reader's rows are decoded.
#[derive(Debug, Clone, Copy)]
pub struct Layout<'a> {
    /// The columns, in the statement's order.
    pub columns: &'a [Column],
    /// The timestamp columns (their first non-NULL value orders rows).
    pub timestamps: &'a [usize],
    /// The incrementing column.
    pub incrementing: Option<usize>,
    /// `db.timezone`: the zone of wall times.
    pub tz: Tz,
}

/// A row as read: each column's value (or why it could not be read), and its place in the
/// table's order.
#[derive(Debug)]
pub struct Fetched {
    /// The columns' values, in order.
    pub values: Vec<ConnectResult<Value>>,
    /// Its timestamp at the precision the database compares it.
    pub time: Option<DateTime<Utc>>,
    /// Its incrementing value.
    pub id: Option<i64>,
}

impl Fetched {
    /// The incrementing value as decoded among `values`.
    fn id_of(values: &[ConnectResult<Value>], layout: &Layout<'_>) -> Option<i64> {
        match values.get(layout.incrementing?)? {
            Ok(Value::Int8(v)) => Some((*v).into()),
            Ok(Value::Int16(v)) => Some((*v).into()),
            Ok(Value::Int32(v)) => Some((*v).into()),
            Ok(Value::Int64(v)) => Some(*v),
            // A Decimal of scale 0 (MySQL's BIGINT UNSIGNED): its unscaled big-endian bytes.
            Ok(Value::Bytes(b)) if !b.is_empty() && b.len() <= 8 => {
                let fill = if b[0] & 0x80 != 0 { 0xff } else { 0 };
                let mut be = [fill; 8];
                be[8 - b.len()..].copy_from_slice(b);
                Some(i64::from_be_bytes(be))
            }
            _ => None,
        }
    }
}

/// The database's clock before a read's snapshot: rows with a time below both `now` (less
/// `timestamp.delay.interval.ms`) and `oldest_writer` are committed, or never will be.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// The database's time.
    pub now: DateTime<Utc>,
    /// The start of the oldest transaction that may still write, if the database says.
    pub oldest_writer: Option<DateTime<Utc>>,
}

/// What may still fill a gap in the ids that a snapshot shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    /// Nothing: a gap is permanent (SQLite has one writer at a time, committing in id order).
    Nothing,
    /// The transactions in progress at the snapshot (PostgreSQL's `pg_snapshot_xip`).
    Transactions(Vec<String>),
    /// Any transaction started at or before this time (MySQL: a read view's open transactions
    /// are not visible, the start times of open transactions are).
    StartedBy(DateTime<Utc>),
}

impl Pending {
    /// Whether a gap seen with `self` pending may be read past now, given the read's `clock` and
    /// its snapshot's own `now` pending.
    pub fn settled(&self, clock: &Clock, now: &Pending) -> bool {
        match (self, now) {
            (Pending::Nothing, _) => true,
            (Pending::Transactions(then), Pending::Transactions(now)) => {
                then.iter().all(|x| !now.contains(x))
            }
            (Pending::StartedBy(seen), _) => clock.oldest_writer.is_none_or(|o| o > *seen),
            _ => false,
        }
    }

    /// Whether a gap seen now may be permanent already (nothing could fill it).
    pub fn is_empty(&self) -> bool {
        match self {
            Pending::Nothing => true,
            Pending::Transactions(x) => x.is_empty(),
            Pending::StartedBy(_) => false,
        }
    }
}

/// A read's snapshot: what may fill a gap, and the table's shape in it (`None`: gone).
#[derive(Debug)]
pub struct Snapshot {
    /// What may still fill a gap seen in it.
    pub pending: Pending,
    /// The table's columns' shape ([`TableId::shape`]) in it, when asked for.
    pub shape: Option<String>,
}

/// A read's transaction.
pub enum Tx {
    /// PostgreSQL, `REPEATABLE READ READ ONLY`.
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    /// MySQL/MariaDB, `WITH CONSISTENT SNAPSHOT, READ ONLY`.
    MySql(sqlx::Transaction<'static, sqlx::MySql>),
    /// SQLite, deferred: the snapshot starts at its first read.
    Sqlite(sqlite::SqliteTx),
}

impl Database {
    /// A pool to the database of `config`, after up to `connection.attempts` attempts.
    pub async fn connect(config: &JdbcSourceConfig) -> ConnectResult<Self> {
        let place = config.url.host().to_owned();
        let product = config.url.dialect.product();
        let mut last = String::new();
        // connection.backoff.ms between attempts, jittered (the kit's back-off with a constant
        // ceiling).
        let backoff = Backoff::new(config.attempt_backoff, config.attempt_backoff);
        for attempt in 1..=config.attempts {
            let connected = match config.url.dialect {
                Dialect::Postgres => postgres::connect(config).await.map(Self::Postgres),
                Dialect::MySql => mysql::connect(config).await.map(Self::MySql),
                Dialect::Sqlite => sqlite::connect(config).await.map(Self::Sqlite),
            };
            match connected {
                Ok(db) => return Ok(db),
                Err(e) => last = e,
            }
            tracing::warn!(
                "connecting to {product} at {place} failed (attempt {attempt} of {}): {last}",
                config.attempts
            );
            if attempt < config.attempts {
                tokio::time::sleep(backoff.delay(attempt - 1)).await;
            }
        }
        Err(ConnectError::retriable(format!(
            "cannot connect to {product} at {place} after {} attempts: {last}",
            config.attempts
        )))
    }

    /// Which product.
    pub fn dialect(&self) -> Dialect {
        match self {
            Database::Postgres(_) => Dialect::Postgres,
            Database::MySql(_) => Dialect::MySql,
            Database::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// The database's name (the first part of Confluent's fully qualified table name).
    pub async fn database(&self) -> ConnectResult<String> {
        match self {
            Database::Postgres(pool) => postgres::database(pool).await,
            Database::MySql(pool) => mysql::database(pool).await,
            Database::Sqlite(_) => Ok(String::new()),
        }
    }

    /// A table's name in Confluent's source partition: as its JDBC driver qualifies it (catalog,
    /// schema, table, leaving out what the driver leaves empty): `db.schema.table` on
    /// PostgreSQL, `db.table` on MySQL (whose schema is its database), `table` on SQLite.
    pub fn qualified(&self, database: &str, table: &TableId) -> String {
        match self {
            Database::Postgres(_) => format!("{database}.{}.{}", table.schema, table.name),
            Database::MySql(_) => format!("{}.{}", table.schema, table.name),
            Database::Sqlite(_) => table.name.clone(),
        }
    }

    /// The tables `config` reads, in order.
    pub async fn tables(
        &self,
        config: &JdbcSourceConfig,
        database: &str,
    ) -> ConnectResult<Vec<TableId>> {
        let listed = match self {
            Database::Postgres(pool) => postgres::tables(pool, config).await?,
            Database::MySql(pool) => mysql::tables(pool, config).await?,
            Database::Sqlite(pool) => sqlite::tables(pool, config).await?,
        };
        Ok(listed
            .into_iter()
            .filter(|t| {
                config.include.is_empty() || config.include.iter().any(|e| t.matches(e, database))
            })
            .filter(|t| !config.exclude.iter().any(|e| t.matches(e, database)))
            .collect())
    }

    /// The table's shape now; `None` once it is gone.
    pub async fn shape(&self, table: &TableId) -> ConnectResult<Option<String>> {
        match self {
            Database::Postgres(pool) => postgres::shape(pool, table).await,
            Database::MySql(pool) => mysql::shape(pool, table).await,
            Database::Sqlite(pool) => sqlite::shape(pool, table).await,
        }
    }

    /// A table's columns, in order, and its primary key's columns.
    pub async fn describe_table(
        &self,
        table: &TableId,
        mapping: NumericMapping,
    ) -> ConnectResult<(Vec<Column>, Vec<String>)> {
        let (columns, key) = match self {
            Database::Postgres(pool) => postgres::describe_table(pool, table, mapping).await?,
            Database::MySql(pool) => mysql::describe_table(pool, table, mapping).await?,
            Database::Sqlite(pool) => sqlite::describe_table(pool, table, mapping).await?,
        };
        if columns.is_empty() {
            return Err(ConnectError::user(format!(
                "table {} does not exist (or has no columns)",
                table.display()
            )));
        }
        Ok((columns, key))
    }

    /// The columns of `query`'s result, as the database describes them without running it.
    pub async fn describe_query(
        &self,
        query: &str,
        mapping: NumericMapping,
    ) -> ConnectResult<Vec<Column>> {
        let wrapped = format!("SELECT * FROM ({query}) AS sluice_query");
        match self {
            Database::Postgres(pool) => postgres::describe_query(pool, &wrapped, mapping).await,
            Database::MySql(pool) => mysql::describe_query(pool, &wrapped, mapping).await,
            Database::Sqlite(pool) => sqlite::describe_query(pool, &wrapped, mapping).await,
        }
    }

    /// A warning when the source's user cannot see every writer's open transaction, so that
    /// rows such transactions commit late may be missed in timestamp modes.
    pub async fn blind_spot(&self) -> Option<String> {
        match self {
            Database::Postgres(pool) => postgres::blind_spot(pool).await,
            Database::MySql(pool) => mysql::blind_spot(pool).await,
            Database::Sqlite(_) => Some(
                "a SQLite reader cannot see open write transactions: only \
                 timestamp.delay.interval.ms protects rows a long write transaction commits \
                 late in timestamp modes"
                    .to_owned(),
            ),
        }
    }

    /// The clock before a read (see [`Clock`]).
    pub async fn clock(&self, what: &str) -> ConnectResult<Clock> {
        match self {
            Database::Postgres(pool) => postgres::clock(pool, what).await,
            Database::MySql(pool) => mysql::clock(pool, what).await,
            Database::Sqlite(_) => Ok(Clock {
                now: Utc::now(),
                oldest_writer: None,
            }),
        }
    }

    /// Starts a read's transaction; with the shape of `table` in its snapshot when given.
    pub async fn begin(
        &self,
        what: &str,
        table: Option<&TableId>,
    ) -> ConnectResult<(Tx, Snapshot)> {
        match self {
            Database::Postgres(pool) => postgres::begin(pool, what, table).await,
            Database::MySql(pool) => mysql::begin(pool, what, table).await,
            Database::Sqlite(pool) => sqlite::begin(pool, what, table).await,
        }
    }

    /// Every row of `sql`, outside a transaction (`bulk` mode).
    pub async fn fetch_all(
        &self,
        sql: &str,
        layout: &Layout<'_>,
        what: &str,
    ) -> ConnectResult<Vec<Fetched>> {
        let failed = |e| db_error(what, "reading", e);
        Ok(match self {
            Database::Postgres(pool) => sqlx::query(sql)
                .fetch_all(pool)
                .await
                .map_err(failed)?
                .iter()
                .map(|r| postgres::decode(r, layout))
                .collect(),
            Database::MySql(pool) => sqlx::query(sql)
                .fetch_all(pool)
                .await
                .map_err(failed)?
                .iter()
                .map(|r| mysql::decode(r, layout))
                .collect(),
            Database::Sqlite(file) => sqlite::fetch_all(file, sql, layout, what).await?,
        })
    }

    /// Closes the pool.
    pub async fn close(&self) {
        match self {
            Database::Postgres(pool) => pool.close().await,
            Database::MySql(pool) => pool.close().await,
            Database::Sqlite(_) => {} // closed when dropped
        }
    }
}

impl Tx {
    /// The rows of `sql` with `binds`, decoded.
    pub async fn fetch(
        &mut self,
        sql: &str,
        binds: &[Bind],
        layout: &Layout<'_>,
        what: &str,
    ) -> ConnectResult<Vec<Fetched>> {
        match self {
            Tx::Postgres(tx) => postgres::fetch(tx, sql, binds, layout).await,
            Tx::MySql(tx) => mysql::fetch(tx, sql, binds, layout).await,
            Tx::Sqlite(tx) => return tx.fetch(sql, binds, layout, what).await,
        }
        .map_err(|e| db_error(what, "reading", e))
    }

    /// Ends the read.
    pub async fn commit(self, what: &str) -> ConnectResult<()> {
        match self {
            Tx::Postgres(tx) => tx.commit().await,
            Tx::MySql(tx) => tx.commit().await,
            Tx::Sqlite(tx) => return tx.commit(what).await,
        }
        .map_err(|e| db_error(what, "ending a read", e))
    }
}

/// The user and password of `config`: `connection.user`/`connection.password`, else the URL's.
fn credentials(config: &JdbcSourceConfig) -> (Option<&str>, Option<&str>) {
    (
        config.user.as_deref().or(config.url.user.as_deref()),
        config
            .password
            .as_ref()
            .or(config.url.password.as_ref())
            .map(|p| p.expose()),
    )
}

/// A pool of two connections with `options`, after one plain connection: the pool would retry on
/// its own until its timeout and then report only that it timed out, not why (refused,
/// authentication).
async fn pool_of<DB: sqlx::Database>(
    options: <DB::Connection as sqlx::Connection>::Options,
) -> Result<sqlx::Pool<DB>, String> {
    use sqlx::Connection as _;
    let first = within_timeout(DB::Connection::connect_with(&options)).await?;
    let _ = first.close().await;
    sqlx::pool::PoolOptions::<DB>::new()
        .max_connections(2)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(|e| e.to_string())
}

/// Connects with `connect` within [`CONNECT_TIMEOUT`], as one message on failure.
async fn within_timeout<T, F>(connect: F) -> Result<T, String>
where
    F: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
    }
}

/// A database error as a task error: retriable when the database may answer later (connection
/// lost, server shutting down, serialization failure, deadlock, lock wait, a table rebuilt under
/// a snapshot).
pub fn db_error(what: &str, doing: &str, e: sqlx::Error) -> ConnectError {
    let retriable = match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(d) => {
            if let Some(my) = d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                // Deadlock, lock wait timeout, table definition changed, server shutdown.
                matches!(my.number(), 1205 | 1213 | 1412 | 1053 | 1927)
            } else {
                d.code()
                    .is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "40001")
            }
        }
        _ => false,
    };
    let message = format!("{what}: {doing} failed: {e}");
    if retriable {
        ConnectError::retriable(message)
    } else {
        ConnectError::user(message)
    }
}
