//! PostgreSQL: its catalog (`information_schema`, `pg_attribute`, `pg_index`), its types, and
//! its read bound.
//!
//! - A read's [`Clock`] is `now()` and the start of the oldest transaction open in the database
//!   (`pg_stat_activity.xact_start`, other than the source's own sessions, which only read),
//!   taken before the read's `REPEATABLE READ READ ONLY` snapshot; the snapshot's transactions in
//!   progress (`pg_snapshot_xip`) are what may fill a gap in the ids.
//! - Types are named as the catalog names them (`int4`, `_int4` for an array of them). A numeric
//!   without a declared scale and any type without a kind are selected as PostgreSQL's text.
//! - Timestamps and dates are decoded from the binary form by hand: sqlx's chrono decoding
//!   panics on `infinity`, which is an error here (no Connect Timestamp holds it).

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;
use sluice_connector_api::{ConnectResult, Value};
use sqlx::postgres::{PgConnectOptions, PgPool, PgRow};
use sqlx::{Column as _, Executor, Row, TypeInfo};

use super::{
    APPLICATION_NAME, Bind, Clock, Fetched, Layout, Pending, Snapshot, Tx, credentials, db_error,
    pool_of,
};
use crate::jdbc::catalog::TableId;
use crate::jdbc::columns::{
    Column, Kind, days, decimal, decode_error, from_text, local_to_utc, numeric, time_ms,
};
use crate::jdbc::config::{JdbcSourceConfig, NumericMapping};

/// A pool to the database of `config`, in `db.timezone`.
pub async fn connect(config: &JdbcSourceConfig) -> Result<PgPool, String> {
    let mut options: PgConnectOptions = config
        .url
        .driver_url
        .parse()
        .map_err(|e| format!("connection.url: {e}"))?;
    options = options
        .application_name(APPLICATION_NAME)
        .options([("TimeZone", config.db_timezone.as_str())]);
    let (user, password) = credentials(config);
    if let Some(user) = user {
        options = options.username(user);
    }
    if let Some(password) = password {
        options = options.password(password);
    }
    pool_of(options).await
}

/// The database's name.
pub async fn database(pool: &PgPool) -> ConnectResult<String> {
    sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(pool)
        .await
        .map_err(|e| db_error("the database", "reading its name", e))
}

/// The columns of the relation `regclass` (an SQL expression) as one string ([`TableId::shape`]):
/// name, type with its modifiers and NOT NULL, in order. From `pg_attribute`, by its index.
fn shape_sql(regclass: &str) -> String {
    format!(
        "(SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) \
           || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END, ', ' ORDER BY a.attnum) \
          FROM pg_attribute a \
          WHERE a.attrelid = {regclass} AND a.attnum > 0 AND NOT a.attisdropped)"
    )
}

/// The relation of `information_schema.tables` row `t`.
const LISTED: &str = "(quote_ident(t.table_schema) || '.' || quote_ident(t.table_name))::regclass";

/// The tables of `table.types` in `schema.pattern`, in order, with their shapes.
pub async fn tables(pool: &PgPool, config: &JdbcSourceConfig) -> ConnectResult<Vec<TableId>> {
    let types: Vec<String> = config
        .table_types
        .iter()
        .map(|t| match t.to_ascii_uppercase().as_str() {
            "TABLE" => "BASE TABLE".to_owned(),
            other => other.to_owned(),
        })
        .collect();
    let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(&format!(
        "SELECT t.table_schema::text, t.table_name::text, {} \
         FROM information_schema.tables t \
         WHERE t.table_type::text = ANY($1) \
           AND t.table_schema NOT IN ('pg_catalog', 'information_schema') \
           AND t.table_schema::text NOT LIKE 'pg\\_toast%' \
           AND ($2::text IS NULL OR t.table_schema::text LIKE $2) \
         ORDER BY 1, 2",
        shape_sql(LISTED)
    ))
    .bind(&types)
    .bind(config.schema_pattern.as_deref())
    .fetch_all(pool)
    .await
    .map_err(|e| db_error("the database", "listing tables", e))?;
    Ok(rows
        .into_iter()
        .map(|(schema, name, shape)| TableId {
            schema,
            name,
            shape: shape.unwrap_or_default(),
        })
        .collect())
}

/// The SQL of a table's shape now, `NULL` once it is gone (`$1`: the quoted table).
fn shape_now() -> String {
    format!(
        "SELECT CASE WHEN to_regclass($1) IS NULL THEN NULL ELSE {} END",
        shape_sql("to_regclass($1)")
    )
}

/// The table's shape now; `None` once it is gone.
pub async fn shape(pool: &PgPool, table: &TableId) -> ConnectResult<Option<String>> {
    sqlx::query_scalar(&shape_now())
        .bind(table.quoted(crate::jdbc::url::Dialect::Postgres, true))
        .fetch_one(pool)
        .await
        .map_err(|e| db_error(&table.display(), "reading its columns", e))
}

/// A column as `information_schema.columns` describes it: name, type, numeric precision and
/// scale, fractional seconds, nullable.
type ColumnRow = (String, String, Option<i32>, Option<i32>, Option<i32>, bool);

/// A table's columns, in order, and its primary key's columns.
pub async fn describe_table(
    pool: &PgPool,
    table: &TableId,
    mapping: NumericMapping,
) -> ConnectResult<(Vec<Column>, Vec<String>)> {
    let name = table.display();
    let rows: Vec<ColumnRow> = sqlx::query_as(
        "SELECT column_name::text, udt_name::text, numeric_precision::int4, \
                numeric_scale::int4, datetime_precision::int4, is_nullable::text = 'YES' \
         FROM information_schema.columns \
         WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
    )
    .bind(&table.schema)
    .bind(&table.name)
    .fetch_all(pool)
    .await
    .map_err(|e| db_error(&name, "reading its columns", e))?;
    if rows.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let columns = rows
        .into_iter()
        .map(|(name, udt, precision, scale, fraction, nullable)| Column {
            nullable,
            fraction_digits: fraction.and_then(|f| u32::try_from(f).ok()),
            ..column(name, &udt, precision, scale, mapping)
        })
        .collect();
    let key: Vec<String> = sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_index i \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
         WHERE i.indrelid = $1::regclass AND i.indisprimary \
         ORDER BY array_position(i.indkey::int2[], a.attnum)",
    )
    .bind(table.quoted(crate::jdbc::url::Dialect::Postgres, true))
    .fetch_all(pool)
    .await
    .map_err(|e| db_error(&name, "reading its primary key", e))?;
    Ok((columns, key))
}

/// The columns of `query`'s result, as the database describes them without running it.
pub async fn describe_query(
    pool: &PgPool,
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
            let type_name = c.type_info().name().to_ascii_lowercase();
            let type_name = match type_name.strip_suffix("[]") {
                Some(item) => format!("_{item}"),
                None => type_name,
            };
            Column {
                nullable: described.nullable(i).unwrap_or(true),
                // No declared scale here: numerics read as exact text (or doubles, if asked).
                ..column(c.name().to_owned(), &type_name, None, None, mapping)
            }
        })
        .collect())
}

/// A column of a type as the catalog names it (`udt_name`), with the numeric's declared
/// precision and scale.
fn column(
    name: String,
    type_name: &str,
    precision: Option<i32>,
    scale: Option<i32>,
    mapping: NumericMapping,
) -> Column {
    match kind_of(type_name, precision, scale, mapping) {
        Some(kind) => Column {
            as_text: kind == Kind::NumericText,
            ..Column::new(name, kind)
        },
        None => Column::text(name),
    }
}

/// The kind of a type as the catalog names it; `None` reads it as text.
fn kind_of(
    type_name: &str,
    precision: Option<i32>,
    scale: Option<i32>,
    mapping: NumericMapping,
) -> Option<Kind> {
    let name = type_name.to_ascii_lowercase();
    if let Some(item) = name.strip_prefix('_') {
        return kind_of(item, None, None, NumericMapping::None)
            // Arrays of dates and times read as their text: sqlx's chrono decoding panics on
            // PostgreSQL's infinities, which the scalar kinds decode by hand.
            .filter(|k| {
                !matches!(
                    k,
                    Kind::Array(_)
                        | Kind::NumericText
                        | Kind::Decimal(_)
                        | Kind::Date
                        | Kind::Time
                        | Kind::Timestamp
                        | Kind::TimestampTz
                )
            })
            .map(|k| Kind::Array(Box::new(k)));
    }
    Some(match name.as_str() {
        "bool" => Kind::Boolean,
        "int2" => Kind::Int16,
        "int4" => Kind::Int32,
        "int8" => Kind::Int64,
        "float4" => Kind::Float32,
        "float8" => Kind::Float64,
        "numeric" => numeric(precision, scale, mapping),
        "text" | "varchar" | "bpchar" | "name" | "citext" => Kind::Text,
        "bytea" => Kind::Bytes,
        "date" => Kind::Date,
        "time" => Kind::Time,
        "timestamp" => Kind::Timestamp,
        "timestamptz" => Kind::TimestampTz,
        "uuid" => Kind::Uuid,
        "json" | "jsonb" => Kind::Json,
        _ => return None,
    })
}

/// Why other users' open transactions may not hold back the bound, if they may not: a user that
/// is neither superuser nor in `pg_read_all_stats` does not see their `xact_start`.
pub async fn blind_spot(pool: &PgPool) -> Option<String> {
    let sees: bool = sqlx::query_scalar(
        "SELECT rolsuper OR pg_has_role(current_user, 'pg_read_all_stats', 'member') \
         FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(pool)
    .await
    .unwrap_or(false);
    (!sees).then(|| {
        "the JDBC source's user is not a member of pg_read_all_stats: other users' open \
         transactions cannot hold back its read bound, so rows they commit late may be missed \
         in timestamp modes; GRANT pg_read_all_stats TO the user"
            .to_owned()
    })
}

/// The clock before a read: `now()` and the oldest open transaction's start, other than the
/// source's own sessions (`$1` is their application name).
pub async fn clock(pool: &PgPool, what: &str) -> ConnectResult<Clock> {
    let (now, oldest_writer) = sqlx::query_as(
        "SELECT now(), (SELECT min(xact_start) FROM pg_stat_activity \
           WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND backend_type = 'client backend' AND application_name <> $1)",
    )
    .bind(APPLICATION_NAME)
    .fetch_one(pool)
    .await
    .map_err(|e| db_error(what, "reading the safe bound", e))?;
    Ok(Clock { now, oldest_writer })
}

/// Begins a `REPEATABLE READ READ ONLY` read: its snapshot's transactions in progress and, when
/// asked, the table's shape, in its first statement.
pub async fn begin(
    pool: &PgPool,
    what: &str,
    table: Option<&TableId>,
) -> ConnectResult<(Tx, Snapshot)> {
    let mut tx = pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(|e| db_error(what, "starting a read", e))?;
    let shape = match table {
        Some(_) => shape_sql("to_regclass($1)"),
        None => "NULL::text".to_owned(),
    };
    let (xip, shape): (Vec<String>, Option<String>) = sqlx::query_as(&format!(
        "SELECT ARRAY(SELECT x::text FROM pg_snapshot_xip(pg_current_snapshot()) AS x), {shape}"
    ))
    .bind(table.map(|t| t.quoted(crate::jdbc::url::Dialect::Postgres, true)))
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| db_error(what, "reading its snapshot", e))?;
    Ok((
        Tx::Postgres(tx),
        Snapshot {
            pending: Pending::Transactions(xip),
            shape,
        },
    ))
}

/// The rows of `sql` with `binds` in `tx`.
pub async fn fetch(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    sql: &str,
    binds: &[Bind],
    layout: &Layout<'_>,
) -> Result<Vec<Fetched>, sqlx::Error> {
    let mut query = sqlx::query(sql);
    for bind in binds {
        query = match *bind {
            Bind::Int(n) => query.bind(n),
            Bind::Time(t) => query.bind(t),
        };
    }
    let rows = query.fetch_all(&mut **tx).await?;
    Ok(rows.iter().map(|r| decode(r, layout)).collect())
}

/// A row as read by a reader of `layout`.
pub fn decode(row: &PgRow, layout: &Layout<'_>) -> Fetched {
    let values: Vec<_> = layout
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| value(row, i, c, layout.tz))
        .collect();
    let time = layout.timestamps.iter().find_map(|&i| {
        instant(row, i, &layout.columns[i], layout.tz)
            .ok()
            .flatten()
    });
    Fetched {
        id: Fetched::id_of(&values, layout),
        values,
        time,
    }
}

/// Column `i` of `row` as a Connect value.
fn value(row: &PgRow, i: usize, column: &Column, tz: Tz) -> ConnectResult<Value> {
    let name = column.name.as_str();
    if column.as_text {
        return match row.try_get::<Option<String>, _>(i) {
            Ok(Some(text)) => from_text(text, &column.kind, name),
            Ok(None) => Ok(Value::Null),
            Err(e) => Err(decode_error(name, e)),
        };
    }
    let kind = column.kind.clone();
    macro_rules! get {
        ($t:ty) => {
            row.try_get::<Option<$t>, _>(i)
                .map_err(|e| decode_error(name, e))?
        };
    }
    Ok(match kind {
        Kind::Boolean => get!(bool).map_or(Value::Null, Value::Boolean),
        Kind::Int8 => get!(i8).map_or(Value::Null, Value::Int8),
        Kind::Int16 => get!(i16).map_or(Value::Null, Value::Int16),
        Kind::Int32 => get!(i32).map_or(Value::Null, Value::Int32),
        Kind::Int64 => get!(i64).map_or(Value::Null, Value::Int64),
        Kind::Float32 => get!(f32).map_or(Value::Null, Value::Float32),
        Kind::Float64 => get!(f64).map_or(Value::Null, Value::Float64),
        Kind::Decimal(_) | Kind::NumericInteger(_) | Kind::NumericDouble => {
            match get!(bigdecimal::BigDecimal) {
                None => Value::Null,
                Some(d) => decimal(&d, &kind, name)?,
            }
        }
        Kind::NumericText | Kind::Text => get!(String).map_or(Value::Null, Value::String),
        Kind::Bytes => get!(Vec<u8>).map_or(Value::Null, Value::Bytes),
        Kind::Date => date(row, i, name)?.map_or(Value::Null, |d| Value::Int32(days(d))),
        Kind::Time => get!(NaiveTime).map_or(Value::Null, |t| Value::Int32(time_ms(t))),
        Kind::Timestamp | Kind::TimestampTz => {
            instant(row, i, column, tz)?.map_or(Value::Null, |t| Value::Int64(t.timestamp_millis()))
        }
        Kind::Uuid => get!(sqlx::types::Uuid).map_or(Value::Null, |u| Value::String(u.to_string())),
        Kind::Json => {
            get!(sqlx::types::JsonValue).map_or(Value::Null, |j| Value::String(j.to_string()))
        }
        Kind::Array(item) => array(row, i, name, &item)?,
    })
}

fn array(row: &PgRow, i: usize, name: &str, item: &Kind) -> ConnectResult<Value> {
    macro_rules! items {
        ($t:ty, $wrap:expr) => {
            match row
                .try_get::<Option<Vec<Option<$t>>>, _>(i)
                .map_err(|e| decode_error(name, e))?
            {
                None => Value::Null,
                Some(items) => Value::Array(
                    items
                        .into_iter()
                        .map(|v| v.map_or(Value::Null, $wrap))
                        .collect(),
                ),
            }
        };
    }
    Ok(match item {
        Kind::Boolean => items!(bool, Value::Boolean),
        Kind::Int16 => items!(i16, Value::Int16),
        Kind::Int32 => items!(i32, Value::Int32),
        Kind::Int64 => items!(i64, Value::Int64),
        Kind::Float32 => items!(f32, Value::Float32),
        Kind::Float64 => items!(f64, Value::Float64),
        Kind::Text => items!(String, Value::String),
        Kind::Uuid => items!(sqlx::types::Uuid, |u: sqlx::types::Uuid| Value::String(
            u.to_string()
        )),
        other => {
            return Err(decode_error(
                name,
                format!("arrays of {other:?} are not read"),
            ));
        }
    })
}

/// Seconds from the Unix epoch to PostgreSQL's (2000-01-01).
const POSTGRES_EPOCH_SECONDS: i64 = 946_684_800;

/// Column `i`, a `timestamp`, `timestamptz` or `date`, as an instant (a `timestamp` or `date` is a
/// wall time in `tz`). Decoded from PostgreSQL's binary form by hand, because sqlx's chrono
/// decoding panics on `infinity` and `-infinity`; those are errors here (no Connect Timestamp
/// holds them).
fn instant(row: &PgRow, i: usize, column: &Column, tz: Tz) -> ConnectResult<Option<DateTime<Utc>>> {
    let name = column.name.as_str();
    if column.kind == Kind::Date {
        return Ok(date(row, i, name)?
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| local_to_utc(t, tz)));
    }
    let Some(raw) = binary::<i64>(row, i, name)? else {
        return Ok(None);
    };
    if raw == i64::MAX || raw == i64::MIN {
        return Err(decode_error(name, "infinity has no Connect Timestamp"));
    }
    let micros = raw
        .checked_add(POSTGRES_EPOCH_SECONDS * 1_000_000)
        .ok_or_else(|| decode_error(name, "a timestamp out of range"))?;
    let utc = DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| decode_error(name, "a timestamp out of range"))?;
    Ok(Some(match column.kind {
        Kind::Timestamp => local_to_utc(utc.naive_utc(), tz),
        _ => utc,
    }))
}

/// Column `i`, a `date` (days from 2000-01-01 in PostgreSQL's binary form).
fn date(row: &PgRow, i: usize, name: &str) -> ConnectResult<Option<NaiveDate>> {
    let Some(raw) = binary::<i32>(row, i, name)? else {
        return Ok(None);
    };
    if raw == i32::MAX || raw == i32::MIN {
        return Err(decode_error(name, "infinity has no Connect Date"));
    }
    let epoch = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default();
    epoch
        .checked_add_signed(chrono::TimeDelta::days(raw.into()))
        .map(Some)
        .ok_or_else(|| decode_error(name, "a date out of range"))
}

/// Column `i` decoded as `T` from its raw value, without sqlx's type check (the caller knows the
/// column's type); `None` for NULL.
fn binary<T>(row: &PgRow, i: usize, name: &str) -> ConnectResult<Option<T>>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres>,
{
    use sqlx::ValueRef;
    let raw = row.try_get_raw(i).map_err(|e| decode_error(name, e))?;
    if raw.is_null() {
        return Ok(None);
    }
    T::decode(raw).map(Some).map_err(|e| decode_error(name, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numerics_map_as_confluents_numeric_mapping_says_and_never_round_by_default() {
        use NumericMapping::{BestFit, BestFitEagerDouble, PrecisionOnly};
        let exact = NumericMapping::None;
        let of = |t, p, s, m| kind_of(t, p, s, m);
        assert_eq!(
            of("numeric", Some(10), Some(2), exact),
            Some(Kind::Decimal(2))
        );
        assert_eq!(of("numeric", None, None, exact), Some(Kind::NumericText));
        assert_eq!(
            of("numeric", Some(9), Some(0), PrecisionOnly),
            Some(Kind::NumericInteger(32))
        );
        assert_eq!(
            of("numeric", Some(19), Some(0), PrecisionOnly),
            Some(Kind::Decimal(0))
        );
        assert_eq!(
            of("numeric", Some(12), Some(4), BestFit),
            Some(Kind::NumericDouble)
        );
        assert_eq!(
            of("numeric", Some(30), Some(4), BestFit),
            Some(Kind::Decimal(4))
        );
        assert_eq!(
            of("numeric", None, None, BestFitEagerDouble),
            Some(Kind::NumericDouble)
        );
        assert_eq!(
            of("_int4", None, None, exact),
            Some(Kind::Array(Box::new(Kind::Int32)))
        );
        assert_eq!(of("mood", None, None, exact), None, "an enum reads as text");
        let text = column("n".into(), "numeric", None, None, exact);
        assert!(text.as_text && text.kind == Kind::NumericText);
        assert!(column("m".into(), "mood", None, None, exact).as_text);
    }
}
