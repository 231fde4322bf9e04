//! Columns as Connect types: which Connect schema a database column gets, and how one of its
//! values becomes a Connect value. Nothing is rounded or cut silently: a numeric without a
//! declared scale is its exact text unless `numeric.mapping` asks for a double; timestamps keep
//! milliseconds, as Kafka Connect's `Timestamp` does (offsets keep the microseconds).
//!
//! Each database names its types its own way ([`super::db`] maps them to a [`Kind`]); a type
//! with no kind of its own is selected as the database's text of it (enums, `inet`, `interval`,
//! `money`, spatial types and the like), and so are values whose driver type would not hold them
//! (MySQL's `BIGINT UNSIGNED`), which are then parsed here into their kind.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use sluice_connector_api::{ConnectError, ConnectResult, Field, Schema, SchemaType, Value};

use super::config::NumericMapping;

/// How a column is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `bool`.
    Boolean,
    /// A signed 8-bit integer (MySQL's `TINYINT`).
    Int8,
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
    /// The Connect schema of a column of this kind.
    pub fn schema(&self) -> Schema {
        match self {
            Kind::Boolean => Schema::new(SchemaType::Boolean),
            Kind::Int8 => Schema::new(SchemaType::Int8),
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

/// The kind of a `numeric`/`decimal` of declared precision and scale, as `numeric.mapping` says
/// (Confluent's rules: `precision_only` makes integers of scale 0, `best_fit` doubles of at most
/// 15 digits, `best_fit_eager_double` doubles always).
pub fn numeric(precision: Option<i32>, scale: Option<i32>, mapping: NumericMapping) -> Kind {
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
    /// What it reads as.
    pub kind: Kind,
    /// Whether it is selected as the database's text of it (and parsed by [`from_text`]).
    pub as_text: bool,
    /// Whether it may be NULL.
    pub nullable: bool,
    /// A time column's digits after the second (0 for seconds), when the catalog declares them.
    pub fraction_digits: Option<u32>,
}

impl Column {
    /// A column read as `kind`, nullable, natively (not as text), precision unknown.
    pub fn new(name: impl Into<String>, kind: Kind) -> Self {
        Self {
            name: name.into(),
            kind,
            as_text: false,
            nullable: true,
            fraction_digits: None,
        }
    }

    /// A column of a type without a kind of its own: its text.
    pub fn text(name: impl Into<String>) -> Self {
        Self {
            as_text: true,
            ..Self::new(name, Kind::Text)
        }
    }

    /// Its field in the row's struct schema.
    pub fn field(&self) -> Field {
        let schema = self.kind.schema();
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

/// A value of `column` that could not be read.
pub fn decode_error(column: &str, e: impl std::fmt::Display) -> ConnectError {
    ConnectError::user(format!("column {column}: {e}"))
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

/// Days since the Unix epoch (Connect Date).
pub fn days(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()).num_days() as i32
}

/// Milliseconds of the day (Connect Time).
pub fn time_ms(t: NaiveTime) -> i32 {
    (t - NaiveTime::MIN).num_milliseconds() as i32
}

/// The big-endian two's-complement unscaled value of `d` at `scale` (Connect's Decimal bytes).
pub fn unscaled(d: &bigdecimal::BigDecimal, scale: u32, column: &str) -> ConnectResult<Vec<u8>> {
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

/// `d`, of scale 0, as the Connect integer of `bits`.
pub fn integer(d: &bigdecimal::BigDecimal, bits: u8, column: &str) -> ConnectResult<Value> {
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

/// A decimal as a Connect value of `kind` (`Decimal`, `NumericInteger` or `NumericDouble`).
pub fn decimal(d: &bigdecimal::BigDecimal, kind: &Kind, column: &str) -> ConnectResult<Value> {
    Ok(match kind {
        Kind::Decimal(scale) => Value::Bytes(unscaled(d, *scale, column)?),
        Kind::NumericInteger(bits) => integer(d, *bits, column)?,
        _ => Value::Float64(
            d.to_string()
                .parse()
                .map_err(|e| decode_error(column, format!("{d} as a double: {e}")))?,
        ),
    })
}

/// A value selected as its text (see [`Column::as_text`]) as a Connect value of `kind`.
pub fn from_text(text: String, kind: &Kind, column: &str) -> ConnectResult<Value> {
    let parse_error = |e: &dyn std::fmt::Display| decode_error(column, format!("{text:?}: {e}"));
    Ok(match kind {
        Kind::Decimal(_) | Kind::NumericInteger(_) | Kind::NumericDouble => {
            let d: bigdecimal::BigDecimal = text.trim().parse().map_err(|e| parse_error(&e))?;
            decimal(&d, kind, column)?
        }
        Kind::Int16 => Value::Int16(text.trim().parse().map_err(|e| parse_error(&e))?),
        Kind::Int32 => Value::Int32(text.trim().parse().map_err(|e| parse_error(&e))?),
        Kind::Int64 => Value::Int64(text.trim().parse().map_err(|e| parse_error(&e))?),
        Kind::Float64 => Value::Float64(text.trim().parse().map_err(|e| parse_error(&e))?),
        _ => Value::String(text),
    })
}

/// The latest instant at or before `t` that a column with `digits` after the second (a date
/// column: whole days in `tz`) can hold. A row written from now on has a value at or after it
/// whether the database rounds or truncates what it stores, so reading below it loses no row.
pub fn truncate(t: DateTime<Utc>, kind: &Kind, digits: Option<u32>, tz: Tz) -> DateTime<Utc> {
    if *kind == Kind::Date {
        let day = t.with_timezone(&tz).date_naive().and_time(NaiveTime::MIN);
        return local_to_utc(day, tz);
    }
    let digits = digits.unwrap_or(6).min(9);
    let step = 10u32.pow(9 - digits);
    t.with_nanosecond(t.nanosecond() / step * step).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_bound_is_cut_to_what_the_column_can_hold() {
        let t = DateTime::parse_from_rfc3339("2026-07-01T23:30:00.987654+00:00")
            .unwrap()
            .with_timezone(&Utc);
        let at = |kind, digits| truncate(t, &kind, digits, Tz::UTC).to_rfc3339();
        assert_eq!(at(Kind::Timestamp, Some(0)), "2026-07-01T23:30:00+00:00");
        assert_eq!(
            at(Kind::Timestamp, Some(3)),
            "2026-07-01T23:30:00.987+00:00"
        );
        assert_eq!(
            at(Kind::TimestampTz, None),
            "2026-07-01T23:30:00.987654+00:00"
        );
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(
            truncate(t, &Kind::Date, None, berlin).to_rfc3339(),
            "2026-07-01T22:00:00+00:00",
            "01:30 on 2 July in Berlin: the day began at 22:00 UTC"
        );
        assert_eq!(
            from_text("18446744073709551615".into(), &Kind::Decimal(0), "u").unwrap(),
            Value::Bytes(vec![0, 255, 255, 255, 255, 255, 255, 255, 255])
        );
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
