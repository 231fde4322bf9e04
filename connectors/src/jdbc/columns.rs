//! Columns as Connect types: which Connect schema a database column gets, and how one of its
//! values becomes a Connect value. Nothing is rounded or cut silently: a numeric without a
//! declared scale is its exact text unless `numeric.mapping` asks for a double; timestamps keep
//! milliseconds, as Kafka Connect's `Timestamp` does (offsets keep the microseconds).
//!
//! Kinds are named as PostgreSQL's catalog names types (`int4`, `_int4` for an array of them);
//! a type without a kind here is read as its text (`::text` in the statement), which covers
//! enums, `inet`, `interval`, `money` and the like.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use sluice_connector_api::{ConnectError, ConnectResult, Field, Schema, SchemaType, Value};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::config::NumericMapping;

/// How a column is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `bool`.
    Boolean,
    /// `int2`.
    Int16,
    /// `int4`.
    Int32,
    /// `int8`.
    Int64,
    /// `float4`.
    Float32,
    /// `float8`.
    Float64,
    /// `numeric(p, s)` as a Connect Decimal of scale `s`.
    Decimal(u32),
    /// `numeric(p, 0)` with p ≤ 18 as the smallest integer that holds it (its width in bits).
    NumericInteger(u8),
    /// `numeric` as a double (`best_fit` where exact, `best_fit_eager_double` always).
    NumericDouble,
    /// `numeric` without a declared scale: its exact text, as the database writes it.
    NumericText,
    /// Text of any kind, and every type read as its text.
    Text,
    /// `bytea`.
    Bytes,
    /// `date`: Connect Date.
    Date,
    /// `time`: Connect Time (ms of the day).
    Time,
    /// `timestamp`: Connect Timestamp, the wall time read in `db.timezone`.
    Timestamp,
    /// `timestamptz`: Connect Timestamp.
    TimestampTz,
    /// `uuid`, as its text.
    Uuid,
    /// `json`, `jsonb`, as their text.
    Json,
    /// An array of a kind above.
    Array(Box<Kind>),
}

impl Kind {
    /// The kind of a type as the catalog names it (`udt_name`), with the numeric's declared
    /// precision and scale; `None` reads it as text.
    pub fn of(
        type_name: &str,
        precision: Option<i32>,
        scale: Option<i32>,
        mapping: NumericMapping,
    ) -> Option<Self> {
        let name = type_name.to_ascii_lowercase();
        if let Some(item) = name.strip_prefix('_') {
            return Self::of(item, None, None, NumericMapping::None)
                // Arrays of dates and times read as their text: sqlx's chrono decoding panics
                // on PostgreSQL's infinities, which the scalar kinds decode by hand.
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

    /// The Connect schema of a column of this kind.
    pub fn schema(&self) -> Schema {
        match self {
            Kind::Boolean => Schema::new(SchemaType::Boolean),
            Kind::Int16 => Schema::new(SchemaType::Int16),
            Kind::Int32 => Schema::new(SchemaType::Int32),
            Kind::Int64 => Schema::new(SchemaType::Int64),
            Kind::NumericInteger(8) => Schema::new(SchemaType::Int8),
            Kind::NumericInteger(16) => Schema::new(SchemaType::Int16),
            Kind::NumericInteger(32) => Schema::new(SchemaType::Int32),
            Kind::NumericInteger(_) => Schema::new(SchemaType::Int64),
            Kind::Float32 => Schema::new(SchemaType::Float32),
            Kind::Float64 | Kind::NumericDouble => Schema::new(SchemaType::Float64),
            Kind::Decimal(scale) => Schema::decimal(*scale),
            Kind::NumericText | Kind::Text | Kind::Uuid | Kind::Json => {
                Schema::new(SchemaType::String)
            }
            Kind::Bytes => Schema::new(SchemaType::Bytes),
            Kind::Date => Schema::date(),
            Kind::Time => Schema::new(SchemaType::Int32).named(sluice_connector_api::logical::TIME),
            Kind::Timestamp | Kind::TimestampTz => Schema::timestamp(),
            Kind::Array(item) => Schema::array(item.schema().optional()),
        }
    }
}

fn numeric(precision: Option<i32>, scale: Option<i32>, mapping: NumericMapping) -> Kind {
    use NumericMapping::*;
    let (Some(p), Some(s)) = (precision.filter(|p| *p > 0), scale.filter(|s| *s >= 0)) else {
        return if mapping == BestFitEagerDouble {
            Kind::NumericDouble
        } else {
            Kind::NumericText
        };
    };
    match mapping {
        None => Kind::Decimal(s as u32),
        _ if s == 0 && p <= 18 => Kind::NumericInteger(match p {
            ..=2 => 8,
            3..=4 => 16,
            5..=9 => 32,
            _ => 64,
        }),
        BestFit if p <= 15 => Kind::NumericDouble,
        BestFitEagerDouble => Kind::NumericDouble,
        _ => Kind::Decimal(s as u32),
    }
}

/// A column of a table or query as the source reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// How it is read; `None`: as its text.
    pub kind: Option<Kind>,
    /// Whether it may be NULL.
    pub nullable: bool,
}

impl Column {
    /// What the column reads as.
    pub fn read_kind(&self) -> Kind {
        self.kind.clone().unwrap_or(Kind::Text)
    }

    /// Its field in the row's struct schema.
    pub fn field(&self) -> Field {
        let schema = self.read_kind().schema();
        Field {
            name: self.name.clone(),
            schema: if self.nullable {
                schema.optional()
            } else {
                schema
            },
        }
    }
}

/// The struct schema of rows with these columns, named as Kafka Connect's JDBC source names it
/// (the table name).
pub fn row_schema(name: &str, columns: &[Column]) -> Schema {
    Schema::structure(columns.iter().map(Column::field).collect()).named(name)
}

fn decode_error(column: &str, e: impl std::fmt::Display) -> ConnectError {
    ConnectError::user(format!("column {column}: {e}"))
}

/// Column `i` of `row` as a Connect value.
pub fn value(row: &PgRow, i: usize, column: &Column, tz: Tz) -> ConnectResult<Value> {
    let name = column.name.as_str();
    let kind = column.read_kind();
    macro_rules! get {
        ($t:ty) => {
            row.try_get::<Option<$t>, _>(i)
                .map_err(|e| decode_error(name, e))?
        };
    }
    Ok(match kind {
        Kind::Boolean => get!(bool).map_or(Value::Null, Value::Boolean),
        Kind::Int16 => get!(i16).map_or(Value::Null, Value::Int16),
        Kind::Int32 => get!(i32).map_or(Value::Null, Value::Int32),
        Kind::Int64 => get!(i64).map_or(Value::Null, Value::Int64),
        Kind::Float32 => get!(f32).map_or(Value::Null, Value::Float32),
        Kind::Float64 => get!(f64).map_or(Value::Null, Value::Float64),
        Kind::Decimal(scale) => match get!(bigdecimal::BigDecimal) {
            None => Value::Null,
            Some(d) => Value::Bytes(unscaled(&d, scale, name)?),
        },
        Kind::NumericInteger(bits) => match get!(bigdecimal::BigDecimal) {
            None => Value::Null,
            Some(d) => integer(&d, bits, name)?,
        },
        Kind::NumericDouble => match get!(bigdecimal::BigDecimal) {
            None => Value::Null,
            Some(d) => Value::Float64(
                d.to_string()
                    .parse()
                    .map_err(|e| decode_error(name, format!("{d} as a double: {e}")))?,
            ),
        },
        // Selected as its text (see `sql`).
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
pub fn instant(
    row: &PgRow,
    i: usize,
    column: &Column,
    tz: Tz,
) -> ConnectResult<Option<DateTime<Utc>>> {
    let name = column.name.as_str();
    if column.kind == Some(Kind::Date) {
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
        Some(Kind::Timestamp) => local_to_utc(utc.naive_utc(), tz),
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

/// The wall time `t` in zone `tz` as an instant (the earlier one when the clock went back).
pub fn local_to_utc(t: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    match tz.from_local_datetime(&t).earliest() {
        Some(local) => local.with_timezone(&Utc),
        // A wall time skipped when the clock went forward: as if the clock had not.
        None => Utc.from_utc_datetime(&t) - tz.offset_from_utc_datetime(&t).fix_offset_secs(),
    }
}

trait FixOffset {
    fn fix_offset_secs(&self) -> chrono::Duration;
}

impl<O: chrono::Offset> FixOffset for O {
    fn fix_offset_secs(&self) -> chrono::Duration {
        chrono::Duration::seconds(i64::from(self.fix().local_minus_utc()))
    }
}

fn days(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()).num_days() as i32
}

fn time_ms(t: NaiveTime) -> i32 {
    (t - NaiveTime::MIN).num_milliseconds() as i32
}

/// The big-endian two's-complement unscaled value of `d` at `scale` (Connect's Decimal bytes).
fn unscaled(d: &bigdecimal::BigDecimal, scale: u32, column: &str) -> ConnectResult<Vec<u8>> {
    let scaled = d.with_scale(i64::from(scale));
    if &scaled != d {
        return Err(decode_error(
            column,
            format!("{d} has more digits than its scale {scale}"),
        ));
    }
    let (digits, _) = scaled.into_bigint_and_exponent();
    Ok(digits.to_signed_bytes_be())
}

fn integer(d: &bigdecimal::BigDecimal, bits: u8, column: &str) -> ConnectResult<Value> {
    let n: i64 = d
        .to_plain_string()
        .parse()
        .map_err(|e| decode_error(column, format!("{d} as an integer: {e}")))?;
    let out_of_range = || decode_error(column, format!("{d} does not fit {bits} bits"));
    Ok(match bits {
        8 => Value::Int8(i8::try_from(n).map_err(|_| out_of_range())?),
        16 => Value::Int16(i16::try_from(n).map_err(|_| out_of_range())?),
        32 => Value::Int32(i32::try_from(n).map_err(|_| out_of_range())?),
        _ => Value::Int64(n),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numerics_map_as_confluents_numeric_mapping_says_and_never_round_by_default() {
        use NumericMapping::{BestFit, BestFitEagerDouble, PrecisionOnly};
        let exact = NumericMapping::None;
        assert_eq!(
            Kind::of("numeric", Some(10), Some(2), exact),
            Some(Kind::Decimal(2))
        );
        assert_eq!(
            Kind::of("numeric", None, None, exact),
            Some(Kind::NumericText)
        );
        assert_eq!(
            Kind::of("numeric", Some(9), Some(0), PrecisionOnly),
            Some(Kind::NumericInteger(32))
        );
        assert_eq!(
            Kind::of("numeric", Some(19), Some(0), PrecisionOnly),
            Some(Kind::Decimal(0))
        );
        assert_eq!(
            Kind::of("numeric", Some(12), Some(4), BestFit),
            Some(Kind::NumericDouble)
        );
        assert_eq!(
            Kind::of("numeric", Some(30), Some(4), BestFit),
            Some(Kind::Decimal(4))
        );
        assert_eq!(
            Kind::of("numeric", None, None, BestFitEagerDouble),
            Some(Kind::NumericDouble)
        );
        assert_eq!(
            Kind::of("_int4", None, None, exact),
            Some(Kind::Array(Box::new(Kind::Int32)))
        );
        assert_eq!(
            Kind::of("mood", None, None, exact),
            None,
            "an enum reads as text"
        );
    }

    #[test]
    fn decimals_are_exact_unscaled_bytes() {
        let d: bigdecimal::BigDecimal = "-12345.67".parse().unwrap();
        let bytes = unscaled(&d, 2, "price").unwrap();
        assert_eq!(bytes, (-1_234_567i32).to_be_bytes()[1..].to_vec());
        let big: bigdecimal::BigDecimal = "123456789012345678901234567890.1".parse().unwrap();
        assert_eq!(unscaled(&big, 1, "x").unwrap().len(), 13);
        assert!(unscaled(&d, 1, "price").is_err(), "a digit would be lost");
    }

    #[test]
    fn wall_times_are_read_in_the_database_time_zone() {
        let t = NaiveDate::from_ymd_opt(2026, 7, 1)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap();
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(
            local_to_utc(t, berlin).to_rfc3339(),
            "2026-07-01T10:00:00+00:00"
        );
        assert_eq!(
            local_to_utc(t, Tz::UTC).to_rfc3339(),
            "2026-07-01T12:00:00+00:00"
        );
    }
}
