//! MySQL and MariaDB (InnoDB): their catalog (`information_schema`), their types, and their read
//! bound.
//!
//! - Sessions use time zone `+00:00`: a `TIMESTAMP` reads as UTC, a `DATETIME` is a wall time in
//!   `db.timezone` (the zone of the sessions that wrote it).
//! - A read's [`Clock`] is `UTC_TIMESTAMP(6)` and the start of the oldest read-write transaction
//!   (`information_schema.innodb_trx`, which shows the server's system time, converted here; it
//!   needs the `PROCESS` privilege), taken before the read's `START TRANSACTION WITH CONSISTENT
//!   SNAPSHOT, READ ONLY`. InnoDB does not show which transactions a read view holds open, so a
//!   gap in the ids waits until every read-write transaction that started by the snapshot has
//!   ended ([`Pending::StartedBy`]).
//! - `TINYINT(1)` is a boolean (as Connector/J reads it); unsigned integers widen to the next
//!   signed width, `BIGINT UNSIGNED` to a Decimal of scale 0; `YEAR` is an int32; `ENUM`, `SET`,
//!   MariaDB's `UUID`, `INET6` and spatial types read as their text. A zero date
//!   (`0000-00-00`) or a `TIME` outside one day has no Connect value and goes to the error policy.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use sluice_connector_api::{ConnectError, ConnectResult, Value};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlRow};
use sqlx::{Column as _, Executor, Row, TypeInfo};

use super::{Bind, Clock, Fetched, Layout, Pending, Snapshot, Tx, credentials, db_error, pool_of};
use crate::jdbc::catalog::TableId;
use crate::jdbc::columns::{
    Column, Kind, days, decimal, decode_error, from_text, local_to_utc, numeric, time_ms,
};
use crate::jdbc::config::{JdbcSourceConfig, NumericMapping};

/// MySQL's `ER_SPECIFIC_ACCESS_DENIED_ERROR` (reading `innodb_trx` without `PROCESS`).
const ACCESS_DENIED: u16 = 1227;

/// A pool to the database of `config`.
pub async fn connect(config: &JdbcSourceConfig) -> Result<MySqlPool, String> {
    let mut options: MySqlConnectOptions = config
        .url
        .driver_url
        .parse()
        .map_err(|e| format!("connection.url: {e}"))?;
    options = options.timezone(Some("+00:00".to_owned()));
    let (user, password) = credentials(config);
    if let Some(user) = user {
        options = options.username(user);
    }
    if let Some(password) = password {
        options = options.password(password);
    }
    pool_of(options).await
}

/// The database the URL names (MySQL's schema of its tables).
pub async fn database(pool: &MySqlPool) -> ConnectResult<String> {
    let name: Option<String> = sqlx::query_scalar("SELECT DATABASE()")
        .fetch_one(pool)
        .await
        .map_err(|e| db_error("the database", "reading its name", e))?;
    name.ok_or_else(|| {
        ConnectError::user("connection.url names no database (jdbc:mysql://host:port/database)")
    })
}

/// Columns of the catalog as one table's shape ([`TableId::shape`]): name, type and NOT NULL.
fn shape_of(columns: impl Iterator<Item = (String, String, bool)>) -> String {
    columns
        .map(|(name, ty, nullable)| {
            format!("{name} {ty}{}", if nullable { "" } else { " not null" })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The catalog's columns of the URL's database (or of one table: `?` twice), in order.
const COLUMNS: &str = "SELECT CAST(table_name AS CHAR), CAST(column_name AS CHAR), \
     CAST(column_type AS CHAR), CAST(is_nullable = 'YES' AS SIGNED) \
     FROM information_schema.columns WHERE table_schema = DATABASE() \
       AND (? IS NULL OR table_name = ?) \
     ORDER BY table_name, ordinal_position";

type ShapeRow = (String, String, String, i64);

/// The tables of `table.types` in the URL's database, in order, with their shapes.
pub async fn tables(pool: &MySqlPool, config: &JdbcSourceConfig) -> ConnectResult<Vec<TableId>> {
    let types: Vec<String> = config
        .table_types
        .iter()
        .map(|t| match t.to_ascii_uppercase().as_str() {
            "TABLE" => "BASE TABLE".to_owned(),
            other => other.to_owned(),
        })
        .collect();
    let listed: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT CAST(table_schema AS CHAR), CAST(table_name AS CHAR), CAST(table_type AS CHAR) \
         FROM information_schema.tables WHERE table_schema = DATABASE() \
           AND (? IS NULL OR table_schema LIKE ?) ORDER BY 2",
    )
    .bind(config.schema_pattern.as_deref())
    .bind(config.schema_pattern.as_deref())
    .fetch_all(pool)
    .await
    .map_err(|e| db_error("the database", "listing tables", e))?;
    let columns: Vec<ShapeRow> = sqlx::query_as(COLUMNS)
        .bind(None::<&str>)
        .bind(None::<&str>)
        .fetch_all(pool)
        .await
        .map_err(|e| db_error("the database", "listing columns", e))?;
    Ok(listed
        .into_iter()
        .filter(|(_, _, ty)| types.iter().any(|t| t.eq_ignore_ascii_case(ty)))
        .map(|(schema, name, _)| {
            let shape = shape_of(
                columns
                    .iter()
                    .filter(|c| c.0 == name)
                    .map(|c| (c.1.clone(), c.2.clone(), c.3 != 0)),
            );
            TableId {
                schema,
                name,
                shape,
            }
        })
        .collect())
}

async fn shape_in<'e, E>(executor: E, table: &TableId) -> ConnectResult<Option<String>>
where
    E: Executor<'e, Database = sqlx::MySql>,
{
    let rows: Vec<ShapeRow> = sqlx::query_as(COLUMNS)
        .bind(&table.name)
        .bind(&table.name)
        .fetch_all(executor)
        .await
        .map_err(|e| db_error(&table.display(), "reading its columns", e))?;
    Ok((!rows.is_empty()).then(|| shape_of(rows.into_iter().map(|c| (c.1, c.2, c.3 != 0)))))
}

/// The table's shape now; `None` once it is gone.
pub async fn shape(pool: &MySqlPool, table: &TableId) -> ConnectResult<Option<String>> {
    shape_in(pool, table).await
}

/// A column as `information_schema.columns` describes it: name, data type, column type,
/// numeric precision and scale, fractional seconds, nullable.
type ColumnRow = (
    String,
    String,
    String,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    i64,
);

/// A table's columns, in order, and its primary key's columns.
pub async fn describe_table(
    pool: &MySqlPool,
    table: &TableId,
    mapping: NumericMapping,
) -> ConnectResult<(Vec<Column>, Vec<String>)> {
    let name = table.display();
    let rows: Vec<ColumnRow> = sqlx::query_as(
        "SELECT CAST(column_name AS CHAR), CAST(data_type AS CHAR), CAST(column_type AS CHAR), \
                CAST(numeric_precision AS SIGNED), CAST(numeric_scale AS SIGNED), \
                CAST(datetime_precision AS SIGNED), CAST(is_nullable = 'YES' AS SIGNED) \
         FROM information_schema.columns \
         WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
    )
    .bind(&table.schema)
    .bind(&table.name)
    .fetch_all(pool)
    .await
    .map_err(|e| db_error(&name, "reading its columns", e))?;
    let columns = rows
        .into_iter()
        .map(
            |(name, data_type, column_type, precision, scale, fraction, nullable)| {
                let (precision, scale) = (to_i32(precision), to_i32(scale));
                Column {
                    nullable: nullable != 0,
                    fraction_digits: fraction.and_then(|f| u32::try_from(f).ok()),
                    ..column(name, &data_type, &column_type, precision, scale, mapping)
                }
            },
        )
        .collect();
    let key: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(column_name AS CHAR) FROM information_schema.statistics \
         WHERE table_schema = ? AND table_name = ? AND index_name = 'PRIMARY' \
         ORDER BY seq_in_index",
    )
    .bind(&table.schema)
    .bind(&table.name)
    .fetch_all(pool)
    .await
    .map_err(|e| db_error(&name, "reading its primary key", e))?;
    Ok((columns, key))
}

fn to_i32(n: Option<i64>) -> Option<i32> {
    n.and_then(|n| i32::try_from(n).ok())
}

/// The columns of `query`'s result, as the server describes them without running it.
pub async fn describe_query(
    pool: &MySqlPool,
    query: &str,
    mapping: NumericMapping,
) -> ConnectResult<Vec<Column>> {
    let described = pool
        .describe(query)
        .await
        .map_err(|e| db_error("query", "describing its columns", e))?;
    Ok(described
        .columns()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            // The protocol's names: "INT UNSIGNED", "VARCHAR", "DATETIME", "BOOLEAN", ...
            let name = c.type_info().name().to_ascii_lowercase();
            let data_type = name.split(' ').next().unwrap_or_default();
            let data_type = if data_type == "boolean" {
                "tinyint(1)"
            } else {
                data_type
            };
            let column_type = name.replace("boolean", "tinyint(1)");
            Column {
                nullable: described.nullable(i).unwrap_or(true),
                ..column(
                    c.name().to_owned(),
                    data_type.trim_end_matches("(1)"),
                    &column_type,
                    None,
                    None,
                    mapping,
                )
            }
        })
        .collect())
}

/// A column of `data_type` (`information_schema.columns.data_type`) and `column_type` (with its
/// width and `unsigned`).
fn column(
    name: String,
    data_type: &str,
    column_type: &str,
    precision: Option<i32>,
    scale: Option<i32>,
    mapping: NumericMapping,
) -> Column {
    let column_type = column_type.to_ascii_lowercase();
    let unsigned = column_type.contains("unsigned");
    let native = |kind| Column::new(name.clone(), kind);
    let text = |kind| Column {
        as_text: true,
        ..Column::new(name.clone(), kind)
    };
    match data_type.to_ascii_lowercase().as_str() {
        "tinyint" if column_type.starts_with("tinyint(1)") && !unsigned => native(Kind::Boolean),
        "tinyint" if unsigned => native(Kind::Int16),
        "tinyint" => native(Kind::Int8),
        "smallint" if unsigned => native(Kind::Int32),
        "smallint" => native(Kind::Int16),
        "mediumint" => native(Kind::Int32),
        "int" | "integer" if unsigned => native(Kind::Int64),
        "int" | "integer" => native(Kind::Int32),
        "bigint" if unsigned => text(Kind::Decimal(0)),
        "bigint" => native(Kind::Int64),
        "year" => text(Kind::Int32),
        "decimal" | "numeric" | "dec" | "fixed" => match numeric(precision, scale, mapping) {
            Kind::NumericText => text(Kind::NumericText),
            kind => native(kind),
        },
        "float" => native(Kind::Float32),
        "double" | "real" | "double precision" => native(Kind::Float64),
        "bit" if column_type == "bit(1)" => native(Kind::Boolean),
        "bit" | "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
            native(Kind::Bytes)
        }
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set" => {
            native(Kind::Text)
        }
        "json" => text(Kind::Json),
        "uuid" => text(Kind::Uuid),
        "date" => native(Kind::Date),
        "time" => native(Kind::Time),
        "datetime" => native(Kind::Timestamp),
        "timestamp" => native(Kind::TimestampTz),
        _ => Column::text(name.clone()),
    }
}

/// Why open transactions may not hold back the bound, if they may not: reading
/// `information_schema.innodb_trx` needs the `PROCESS` privilege.
pub async fn blind_spot(pool: &MySqlPool) -> Option<String> {
    match sqlx::query("SELECT 1 FROM information_schema.innodb_trx LIMIT 1")
        .fetch_all(pool)
        .await
    {
        Ok(_) => None,
        Err(e) => Some(format!(
            "the JDBC source's user cannot read information_schema.innodb_trx ({e}): open \
             transactions cannot hold back its read bound, so rows they commit late may be \
             missed in timestamp modes, and a gap in the ids waits one read only; GRANT \
             PROCESS ON *.* TO the user"
        )),
    }
}

/// The clock before a read: the time, and the oldest read-write transaction's start (its age
/// against the server's system clock, in which `innodb_trx` shows it; its start is shown in
/// whole seconds, so the age is at most a second too long, never too short).
pub async fn clock(pool: &MySqlPool, what: &str) -> ConnectResult<Clock> {
    let read: Result<(NaiveDateTime, Option<i64>), _> = sqlx::query_as(
        "SELECT UTC_TIMESTAMP(6), TIMESTAMPDIFF(MICROSECOND, \
           (SELECT MIN(trx_started) FROM information_schema.innodb_trx \
             WHERE trx_is_read_only = 0), \
           CONVERT_TZ(UTC_TIMESTAMP(6), '+00:00', 'SYSTEM'))",
    )
    .fetch_one(pool)
    .await;
    let (now, age) = match read {
        Ok(read) => read,
        Err(sqlx::Error::Database(d))
            if d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .is_some_and(|m| m.number() == ACCESS_DENIED) =>
        {
            // Without PROCESS (warned at start): the delay alone bounds the read.
            let now = sqlx::query_scalar("SELECT UTC_TIMESTAMP(6)")
                .fetch_one(pool)
                .await
                .map_err(|e| db_error(what, "reading the clock", e))?;
            (now, None)
        }
        Err(e) => return Err(db_error(what, "reading the safe bound", e)),
    };
    let now = now.and_utc();
    Ok(Clock {
        now,
        oldest_writer: age.map(|micros| now - chrono::Duration::microseconds(micros.max(0))),
    })
}

/// Begins a consistent-snapshot read; what may fill a gap is any transaction started by its
/// time, and the table's shape is read in it when asked.
pub async fn begin(
    pool: &MySqlPool,
    what: &str,
    table: Option<&TableId>,
) -> ConnectResult<(Tx, Snapshot)> {
    let mut tx = pool
        .begin_with("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .await
        .map_err(|e| db_error(what, "starting a read", e))?;
    let at: NaiveDateTime = sqlx::query_scalar("SELECT UTC_TIMESTAMP(6)")
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| db_error(what, "reading the clock", e))?;
    let shape = match table {
        Some(t) => shape_in(&mut *tx, t).await?,
        None => None,
    };
    Ok((
        Tx::MySql(tx),
        Snapshot {
            pending: Pending::StartedBy(at.and_utc()),
            shape,
        },
    ))
}

/// A time as the reader's timestamp columns hold it: UTC for `TIMESTAMP` (the session's zone),
/// the wall time in `db.timezone` for `DATETIME` and `DATE`.
fn wall(t: DateTime<Utc>, layout: &Layout<'_>) -> NaiveDateTime {
    let utc = layout
        .timestamps
        .first()
        .is_some_and(|&i| layout.columns[i].kind == Kind::TimestampTz);
    if utc {
        t.naive_utc()
    } else {
        t.with_timezone(&layout.tz).naive_local()
    }
}

/// The rows of `sql` with `binds` in `tx`.
pub async fn fetch(
    tx: &mut sqlx::Transaction<'static, sqlx::MySql>,
    sql: &str,
    binds: &[Bind],
    layout: &Layout<'_>,
) -> Result<Vec<Fetched>, sqlx::Error> {
    let mut query = sqlx::query(sql);
    for bind in binds {
        query = match *bind {
            Bind::Int(n) => query.bind(n),
            Bind::Time(t) => query.bind(wall(t, layout)),
        };
    }
    let rows = query.fetch_all(&mut **tx).await?;
    Ok(rows.iter().map(|r| decode(r, layout)).collect())
}

/// A row as read by a reader of `layout`.
pub fn decode(row: &MySqlRow, layout: &Layout<'_>) -> Fetched {
    let values: Vec<_> = layout
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| value(row, i, c, layout))
        .collect();
    let time = layout
        .timestamps
        .iter()
        .find_map(|&i| instant(row, i, &layout.columns[i], layout).ok().flatten());
    Fetched {
        id: Fetched::id_of(&values, layout),
        values,
        time,
    }
}

/// Column `i` decoded as `T` without sqlx's type check (the catalog gave the column's type);
/// `None` for NULL.
fn raw<T>(row: &MySqlRow, i: usize, name: &str) -> ConnectResult<Option<T>>
where
    T: for<'r> sqlx::Decode<'r, sqlx::MySql> + sqlx::Type<sqlx::MySql>,
{
    row.try_get_unchecked::<Option<T>, _>(i)
        .map_err(|e| decode_error(name, e))
}

/// Column `i`, an integer, as an `i64` (read unsigned when the column is).
fn int(row: &MySqlRow, i: usize, name: &str) -> ConnectResult<Option<i64>> {
    let unsigned = row.columns()[i].type_info().name().contains("UNSIGNED");
    if unsigned {
        raw::<u64>(row, i, name)?
            .map(|n| i64::try_from(n).map_err(|_| decode_error(name, format!("{n} out of range"))))
            .transpose()
    } else {
        raw::<i64>(row, i, name)
    }
}

fn narrow<T: TryFrom<i64>>(
    n: Option<i64>,
    name: &str,
    wrap: fn(T) -> Value,
) -> ConnectResult<Value> {
    match n {
        None => Ok(Value::Null),
        Some(n) => T::try_from(n)
            .map(wrap)
            .map_err(|_| decode_error(name, format!("{n} out of range"))),
    }
}

/// Column `i` of `row` as a Connect value.
fn value(row: &MySqlRow, i: usize, column: &Column, layout: &Layout<'_>) -> ConnectResult<Value> {
    let name = column.name.as_str();
    if column.as_text {
        return match raw::<String>(row, i, name)? {
            Some(text) => from_text(text, &column.kind, name),
            None => Ok(Value::Null),
        };
    }
    Ok(match &column.kind {
        Kind::Boolean => match row.columns()[i].type_info().name() {
            "BIT" => raw::<Vec<u8>>(row, i, name)?
                .map_or(Value::Null, |b| Value::Boolean(b.iter().any(|x| *x != 0))),
            _ => int(row, i, name)?.map_or(Value::Null, |n| Value::Boolean(n != 0)),
        },
        Kind::Int8 => narrow(int(row, i, name)?, name, Value::Int8)?,
        Kind::Int16 => narrow(int(row, i, name)?, name, Value::Int16)?,
        Kind::Int32 => narrow(int(row, i, name)?, name, Value::Int32)?,
        Kind::Int64 => int(row, i, name)?.map_or(Value::Null, Value::Int64),
        Kind::Float32 => raw::<f32>(row, i, name)?.map_or(Value::Null, Value::Float32),
        Kind::Float64 => raw::<f64>(row, i, name)?.map_or(Value::Null, Value::Float64),
        kind @ (Kind::Decimal(_) | Kind::NumericInteger(_) | Kind::NumericDouble) => {
            match raw::<bigdecimal::BigDecimal>(row, i, name)? {
                None => Value::Null,
                Some(d) => decimal(&d, kind, name)?,
            }
        }
        Kind::Bytes => raw::<Vec<u8>>(row, i, name)?.map_or(Value::Null, Value::Bytes),
        Kind::Date => {
            raw::<NaiveDate>(row, i, name)?.map_or(Value::Null, |d| Value::Int32(days(d)))
        }
        Kind::Time => {
            raw::<NaiveTime>(row, i, name)?.map_or(Value::Null, |t| Value::Int32(time_ms(t)))
        }
        Kind::Timestamp | Kind::TimestampTz => instant(row, i, column, layout)?
            .map_or(Value::Null, |t| Value::Int64(t.timestamp_millis())),
        _ => raw::<String>(row, i, name)?.map_or(Value::Null, Value::String),
    })
}

/// Column `i`, a `DATETIME`, `TIMESTAMP` or `DATE`, as an instant.
fn instant(
    row: &MySqlRow,
    i: usize,
    column: &Column,
    layout: &Layout<'_>,
) -> ConnectResult<Option<DateTime<Utc>>> {
    let name = column.name.as_str();
    Ok(match column.kind {
        Kind::Date => raw::<NaiveDate>(row, i, name)?
            .map(|d| local_to_utc(d.and_time(NaiveTime::MIN), layout.tz)),
        Kind::TimestampTz => raw::<NaiveDateTime>(row, i, name)?.map(|t| t.and_utc()),
        _ => raw::<NaiveDateTime>(row, i, name)?.map(|t| local_to_utc(t, layout.tz)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_types_map_without_losing_a_value() {
        let exact = NumericMapping::None;
        let c = |data: &str, full: &str| column("c".into(), data, full, None, None, exact);
        assert_eq!(c("tinyint", "tinyint(1)").kind, Kind::Boolean);
        assert_eq!(c("tinyint", "tinyint(4)").kind, Kind::Int8);
        assert_eq!(c("tinyint", "tinyint(3) unsigned").kind, Kind::Int16);
        assert_eq!(c("int", "int(10) unsigned").kind, Kind::Int64);
        let big = c("bigint", "bigint(20) unsigned");
        assert!(big.as_text && big.kind == Kind::Decimal(0));
        let money = column(
            "m".into(),
            "decimal",
            "decimal(10,2)",
            Some(10),
            Some(2),
            exact,
        );
        assert!(!money.as_text && money.kind == Kind::Decimal(2));
        assert_eq!(c("datetime", "datetime(6)").kind, Kind::Timestamp);
        assert_eq!(c("timestamp", "timestamp").kind, Kind::TimestampTz);
        let e = c("enum", "enum('a','b')");
        assert!(
            e.kind == Kind::Text && !e.as_text,
            "enums come as text already"
        );
        assert!(c("geometry", "geometry").as_text);
    }
}
