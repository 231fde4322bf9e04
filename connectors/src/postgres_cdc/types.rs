//! PostgreSQL column types as Debezium maps them to Connect schemas, and PostgreSQL's text output
//! of a value (what pgoutput sends and what the snapshot selects) as the Connect value.
//!
//! The mapping is Debezium's (`PostgresValueConverter`) for `decimal.handling.mode` and
//! `time.precision.mode`: `timestamptz` as `io.debezium.time.ZonedTimestamp` text in UTC,
//! `timestamp` as `MicroTimestamp` (or `Timestamp` for at most 3 digits), `numeric` as a Connect
//! `Decimal` (with `connect.decimal.precision`) or, without a declared scale,
//! `io.debezium.data.VariableScaleDecimal`, `uuid`/`json`/`jsonb`/`xml`/enums as Debezium's
//! named strings, arrays as arrays of their element. Nothing is rounded: a value that does not fit
//! its schema is an error (the record goes to the error policy), never a different value.
//! `infinity` dates and timestamps read as the type's largest (smallest) value, as Debezium's.
//! A type Debezium leaves out unless `include.unknown.datatypes` is set (geometric types, ranges,
//! `tsvector`, ...) is its text here.
//!
//! Both sessions that produce the text pin [`SESSION_SETTINGS`], so the parsers of
//! [`super::text`] read one format.

use sluice_connector_api::{Field, Schema, SchemaType, Struct, Value, logical};

use super::config::{DecimalHandling, TimePrecision};
use super::text::{
    array, date, float, hex, interval_micros, time_micros, timestamp, zoned_time, zoned_timestamp,
};
use crate::jdbc::columns::{days, unscaled};

/// The session settings under which [`super::text`] reads PostgreSQL's text output: pinned on
/// the replication session (whose walsender writes pgoutput's values) and on the ordinary
/// connections (whose `::text` the snapshot reads), so both produce one format.
pub const SESSION_SETTINGS: &[(&str, &str)] = &[
    ("DateStyle", "ISO"),
    ("TimeZone", "UTC"),
    ("IntervalStyle", "iso_8601"),
    ("bytea_output", "hex"),
    ("extra_float_digits", "3"),
    ("lc_monetary", "C"),
];

/// [`SESSION_SETTINGS`] as a startup `options` value (`-c name=value ...`).
pub fn session_options() -> String {
    SESSION_SETTINGS
        .iter()
        .map(|(k, v)| format!("-c {k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A column's type, resolved (domains to their base type, arrays to their element).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgType {
    /// `bool`.
    Bool,
    /// `int2`.
    Int2,
    /// `int4`.
    Int4,
    /// `int8` and `oid`.
    Int8,
    /// `float4`.
    Float4,
    /// `float8`.
    Float8,
    /// `numeric(p, s)`; both `None` without a declared precision.
    Numeric {
        /// Declared precision.
        precision: Option<u32>,
        /// Declared scale.
        scale: Option<u32>,
    },
    /// `money` (two fraction digits with `lc_monetary=C`).
    Money,
    /// `bytea`.
    Bytea,
    /// `date`.
    Date,
    /// `time(p)`.
    Time(u32),
    /// `timetz`.
    TimeTz,
    /// `timestamp(p)`.
    Timestamp(u32),
    /// `timestamptz`.
    TimestampTz,
    /// `interval`.
    Interval,
    /// `uuid`.
    Uuid,
    /// `json` and `jsonb`.
    Json,
    /// `xml`.
    Xml,
    /// An enum, with its labels in order.
    Enum(Vec<String>),
    /// A one-dimensional array.
    Array(Box<PgType>),
    /// Text of any kind, and every type read as its text.
    Text,
}

/// The OID of a built-in array type's element, for the arrays the mapping knows.
pub fn builtin_array_element(oid: u32) -> Option<u32> {
    Some(match oid {
        1000 => 16,
        1001 => 17,
        1005 => 21,
        1007 => 23,
        1016 => 20,
        1021 => 700,
        1022 => 701,
        1231 => 1700,
        1009 => 25,
        1014 => 1042,
        1015 => 1043,
        1182 => 1082,
        1183 => 1083,
        1115 => 1114,
        1185 => 1184,
        1187 => 1186,
        1270 => 1266,
        2951 => 2950,
        199 => 114,
        3807 => 3802,
        791 => 790,
        _ => return None,
    })
}

impl PgType {
    /// A built-in scalar type by OID and type modifier; `None` when the catalog must say (user
    /// types, arrays).
    pub fn builtin(oid: u32, modifier: i32) -> Option<PgType> {
        let digits = || u32::try_from(modifier).map_or(6, |d| d.min(6));
        Some(match oid {
            16 => PgType::Bool,
            21 => PgType::Int2,
            23 => PgType::Int4,
            20 | 26 => PgType::Int8,
            700 => PgType::Float4,
            701 => PgType::Float8,
            1700 => {
                if modifier >= 4 {
                    let m = (modifier - 4) as u32;
                    PgType::Numeric {
                        precision: Some(m >> 16),
                        scale: Some(m & 0xffff),
                    }
                } else {
                    PgType::Numeric {
                        precision: None,
                        scale: None,
                    }
                }
            }
            790 => PgType::Money,
            17 => PgType::Bytea,
            1082 => PgType::Date,
            1083 => PgType::Time(digits()),
            1266 => PgType::TimeTz,
            1114 => PgType::Timestamp(digits()),
            1184 => PgType::TimestampTz,
            1186 => PgType::Interval,
            2950 => PgType::Uuid,
            114 | 3802 => PgType::Json,
            142 => PgType::Xml,
            18 | 19 | 25 | 1042 | 1043 => PgType::Text,
            _ => return None,
        })
    }

    /// The Connect schema of a column of this type (required; the caller marks it optional).
    pub fn schema(&self, modes: Modes) -> Schema {
        let named = |kind, name: &str| Schema::new(kind).named(name);
        match self {
            PgType::Bool => Schema::new(SchemaType::Boolean),
            PgType::Int2 => Schema::new(SchemaType::Int16),
            PgType::Int4 => Schema::new(SchemaType::Int32),
            PgType::Int8 => Schema::new(SchemaType::Int64),
            PgType::Float4 => Schema::new(SchemaType::Float32),
            PgType::Float8 => Schema::new(SchemaType::Float64),
            PgType::Numeric { precision, scale } => match modes.decimal {
                DecimalHandling::Double => Schema::new(SchemaType::Float64),
                DecimalHandling::String => Schema::new(SchemaType::String),
                DecimalHandling::Precise => match scale {
                    Some(s) => {
                        let mut schema = Schema::decimal(*s);
                        if let Some(p) = precision {
                            schema
                                .parameters
                                .insert("connect.decimal.precision".into(), p.to_string());
                        }
                        schema
                    }
                    None => variable_scale_decimal(),
                },
            },
            PgType::Money => match modes.decimal {
                DecimalHandling::Double => Schema::new(SchemaType::Float64),
                DecimalHandling::String => Schema::new(SchemaType::String),
                DecimalHandling::Precise => Schema::decimal(2),
            },
            PgType::Bytea => Schema::new(SchemaType::Bytes),
            PgType::Date => match modes.time {
                TimePrecision::Connect => Schema::date(),
                _ => named(SchemaType::Int32, "io.debezium.time.Date"),
            },
            PgType::Time(_) => match modes.time {
                TimePrecision::Connect => named(SchemaType::Int32, logical::TIME),
                _ if self.time_in_millis(modes) => {
                    named(SchemaType::Int32, "io.debezium.time.Time")
                }
                _ => named(SchemaType::Int64, "io.debezium.time.MicroTime"),
            },
            PgType::Timestamp(digits) => match modes.time {
                TimePrecision::Connect => Schema::timestamp(),
                _ if *digits <= 3 => named(SchemaType::Int64, "io.debezium.time.Timestamp"),
                _ => named(SchemaType::Int64, "io.debezium.time.MicroTimestamp"),
            },
            PgType::TimestampTz => named(SchemaType::String, "io.debezium.time.ZonedTimestamp"),
            PgType::TimeTz => named(SchemaType::String, "io.debezium.time.ZonedTime"),
            PgType::Interval => named(SchemaType::Int64, "io.debezium.time.MicroDuration"),
            PgType::Uuid => named(SchemaType::String, "io.debezium.data.Uuid"),
            PgType::Json => named(SchemaType::String, "io.debezium.data.Json"),
            PgType::Xml => named(SchemaType::String, "io.debezium.data.Xml"),
            PgType::Enum(labels) => {
                let mut schema = named(SchemaType::String, "io.debezium.data.Enum");
                schema.version = Some(1);
                schema.parameters.insert("allowed".into(), labels.join(","));
                schema
            }
            PgType::Array(item) => Schema::array(item.schema(modes).optional()),
            PgType::Text => Schema::new(SchemaType::String),
        }
    }

    /// Whether a `time` column is milliseconds (Connect's `Time`, Debezium's `Time` for at most 3
    /// digits in `adaptive`) rather than microseconds.
    fn time_in_millis(&self, modes: Modes) -> bool {
        let PgType::Time(digits) = self else {
            return false;
        };
        match modes.time {
            TimePrecision::Connect => true,
            TimePrecision::Adaptive => *digits <= 3,
            TimePrecision::AdaptiveTimeMicroseconds => false,
        }
    }

    /// What an unchanged TOAST value of this type reads as: the placeholder for text and bytes
    /// (and arrays of text), as Debezium; `None` for a type that cannot show it.
    pub fn unavailable(&self, placeholder: &str) -> Option<Value> {
        match self {
            PgType::Text | PgType::Json | PgType::Xml | PgType::Uuid | PgType::Enum(_) => {
                Some(Value::String(placeholder.to_owned()))
            }
            PgType::Bytea => Some(Value::Bytes(placeholder.as_bytes().to_vec())),
            PgType::Array(item) => item
                .unavailable(placeholder)
                .filter(|v| matches!(v, Value::String(_)))
                .map(|v| Value::Array(vec![v])),
            _ => None,
        }
    }

    /// PostgreSQL's text output of a value of this type as its Connect value.
    pub fn value(&self, text: &str, modes: Modes) -> Result<Value, String> {
        let bad = |e: &dyn std::fmt::Display| format!("{text:?} is not a {self:?} value: {e}");
        Ok(match self {
            // `t`/`f` from the stream (bool's output function), `true`/`false` from `::text`.
            PgType::Bool => match text {
                "t" | "true" => Value::Boolean(true),
                "f" | "false" => Value::Boolean(false),
                _ => return Err(bad(&"not t or f")),
            },
            PgType::Int2 => Value::Int16(text.parse().map_err(|e| bad(&e))?),
            PgType::Int4 => Value::Int32(text.parse().map_err(|e| bad(&e))?),
            PgType::Int8 => Value::Int64(text.parse().map_err(|e| bad(&e))?),
            PgType::Float4 => Value::Float32(float(text).map_err(|e| bad(&e))? as f32),
            PgType::Float8 => Value::Float64(float(text).map_err(|e| bad(&e))?),
            PgType::Numeric { scale, .. } => decimal(text, *scale, modes.decimal)?,
            PgType::Money => {
                let plain: String = text.chars().filter(|c| !matches!(c, '$' | ',')).collect();
                decimal(&plain, Some(2), modes.decimal)?
            }
            PgType::Bytea => Value::Bytes(hex(text).ok_or_else(|| bad(&"not \\x hex"))?),
            PgType::Date => {
                let d = match text {
                    "infinity" => i32::MAX,
                    "-infinity" => i32::MIN,
                    _ => days(date(text).map_err(|e| bad(&e))?),
                };
                Value::Int32(d)
            }
            PgType::Time(_) => {
                let micros = time_micros(text).ok_or_else(|| bad(&"not hh:mm:ss[.f]"))?;
                if self.time_in_millis(modes) {
                    Value::Int32((micros / 1000) as i32)
                } else {
                    Value::Int64(micros)
                }
            }
            PgType::Timestamp(digits) => {
                let micros = match text {
                    "infinity" => i64::MAX,
                    "-infinity" => i64::MIN,
                    _ => {
                        let t = timestamp(text).map_err(|e| bad(&e))?;
                        t.and_utc().timestamp_micros()
                    }
                };
                let millis = modes.time == TimePrecision::Connect || *digits <= 3;
                match (millis, micros) {
                    (_, i64::MAX | i64::MIN) => Value::Int64(micros),
                    (true, m) => Value::Int64(m.div_euclid(1000)),
                    (false, m) => Value::Int64(m),
                }
            }
            PgType::TimestampTz => Value::String(zoned_timestamp(text).map_err(|e| bad(&e))?),
            PgType::TimeTz => Value::String(zoned_time(text).ok_or_else(|| bad(&"not a timetz"))?),
            PgType::Interval => Value::Int64(interval_micros(text).ok_or_else(|| bad(&"not ISO"))?),
            PgType::Array(item) => {
                let items = array(text).ok_or_else(|| bad(&"not a one-dimensional array"))?;
                Value::Array(
                    items
                        .into_iter()
                        .map(|i| match i {
                            None => Ok(Value::Null),
                            Some(s) => item.value(&s, modes),
                        })
                        .collect::<Result<_, _>>()?,
                )
            }
            PgType::Uuid | PgType::Json | PgType::Xml | PgType::Enum(_) | PgType::Text => {
                Value::String(text.to_owned())
            }
        })
    }
}

/// Debezium's struct for a numeric without a declared scale: its scale and unscaled bytes.
fn variable_scale_decimal() -> Schema {
    let mut schema = Schema::structure(vec![
        Field {
            name: "scale".into(),
            schema: Schema::new(SchemaType::Int32),
        },
        Field {
            name: "value".into(),
            schema: Schema::new(SchemaType::Bytes),
        },
    ])
    .named("io.debezium.data.VariableScaleDecimal");
    schema.doc = Some("Variable scaled decimal".into());
    schema.version = Some(1);
    schema
}

/// How the connector maps decimals and times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modes {
    /// `decimal.handling.mode`.
    pub decimal: DecimalHandling,
    /// `time.precision.mode`.
    pub time: TimePrecision,
}

fn decimal(text: &str, scale: Option<u32>, mode: DecimalHandling) -> Result<Value, String> {
    if mode == DecimalHandling::String {
        return Ok(Value::String(text.to_owned()));
    }
    if mode == DecimalHandling::Double {
        return float(text)
            .map(Value::Float64)
            .map_err(|e| format!("{text:?} as a double: {e}"));
    }
    let d: bigdecimal::BigDecimal = text
        .parse()
        .map_err(|e| format!("{text:?} is not an exact decimal (decimal.handling.mode=precise cannot hold it; double or string can): {e}"))?;
    match scale {
        Some(s) => Ok(Value::Bytes(
            unscaled(&d, s, "numeric").map_err(|e| e.message().to_owned())?,
        )),
        None => {
            let (digits, exponent) = d.into_bigint_and_exponent();
            // A negative exponent (1E+3 written as 1000 with scale -3) is what PostgreSQL never
            // writes; normalise it to scale 0.
            let (digits, scale) = if exponent < 0 {
                (digits * num_bigint_pow10(exponent.unsigned_abs()), 0i64)
            } else {
                (digits, exponent)
            };
            Ok(Value::Struct(
                Struct::new()
                    .with("scale", Value::Int32(scale as i32))
                    .with("value", Value::Bytes(digits.to_signed_bytes_be())),
            ))
        }
    }
}

fn num_bigint_pow10(n: u64) -> bigdecimal::num_bigint::BigInt {
    bigdecimal::num_bigint::BigInt::from(10u8).pow(n as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Modes = Modes {
        decimal: DecimalHandling::Precise,
        time: TimePrecision::Adaptive,
    };

    #[test]
    fn times_read_as_debezium_writes_them() {
        let ts = PgType::Timestamp(6);
        assert_eq!(
            ts.value("2026-12-07 16:38:40.950691", M).unwrap(),
            Value::Int64(1_796_661_520_950_691)
        );
        assert_eq!(
            PgType::Timestamp(3)
                .value("1969-12-31 23:59:59.999", M)
                .unwrap(),
            Value::Int64(-1)
        );
        assert_eq!(
            PgType::TimestampTz
                .value("2026-12-07 16:38:40.950690+00", M)
                .unwrap(),
            Value::String("2026-12-07T16:38:40.95069Z".into())
        );
        assert_eq!(
            PgType::TimeTz.value("10:00:00.5+05:30", M).unwrap(),
            Value::String("04:30:00.5Z".into())
        );
        assert_eq!(
            PgType::Time(6).value("24:00:00", M).unwrap(),
            Value::Int64(86_400_000_000)
        );
        assert_eq!(
            PgType::Date.value("1970-01-02", M).unwrap(),
            Value::Int32(1)
        );
        assert_eq!(
            PgType::Date.value("0001-01-01 BC", M).unwrap(),
            Value::Int32(-719_528)
        );
        assert_eq!(
            PgType::Interval.value("P1DT2H0.5S", M).unwrap(),
            Value::Int64(93_600_500_000)
        );
        assert_eq!(
            PgType::Interval.value("P1M", M).unwrap(),
            Value::Int64(2_629_800_000_000)
        );
    }

    #[test]
    fn decimals_stay_exact() {
        let fixed = PgType::Numeric {
            precision: Some(10),
            scale: Some(2),
        };
        assert_eq!(
            fixed.value("-12345.67", M).unwrap(),
            Value::Bytes((-1_234_567i32).to_be_bytes()[1..].to_vec())
        );
        assert_eq!(
            fixed.schema(M).parameters.get("connect.decimal.precision"),
            Some(&"10".to_owned())
        );
        let free = PgType::Numeric {
            precision: None,
            scale: None,
        };
        let Value::Struct(s) = free.value("1.0500", M).unwrap() else {
            panic!("not a struct");
        };
        assert_eq!(s.get("scale"), Some(&Value::Int32(4)));
        assert_eq!(s.get("value"), Some(&Value::Bytes(vec![0x29, 0x04])));
        assert!(free.value("NaN", M).is_err(), "NaN is no exact decimal");
        assert_eq!(
            PgType::Money.value("-$1,234.50", M).unwrap(),
            Value::Bytes((-123_450i32).to_be_bytes()[1..].to_vec())
        );
    }

    #[test]
    fn arrays_bytes_and_specials() {
        let a = PgType::Array(Box::new(PgType::Text));
        assert_eq!(
            a.value(r#"{a,"b c",NULL,"q\"x"}"#, M).unwrap(),
            Value::Array(vec![
                Value::String("a".into()),
                Value::String("b c".into()),
                Value::Null,
                Value::String("q\"x".into()),
            ])
        );
        assert!(a.value("{{1,2},{3,4}}", M).is_err());
        assert_eq!(
            PgType::Array(Box::new(PgType::Int4))
                .value("{}", M)
                .unwrap(),
            Value::Array(vec![])
        );
        assert_eq!(
            PgType::Bytea.value("\\x00ff", M).unwrap(),
            Value::Bytes(vec![0, 255])
        );
        assert!(matches!(
            PgType::Float8.value("NaN", M).unwrap(),
            Value::Float64(f) if f.is_nan()
        ));
        assert_eq!(
            PgType::Timestamp(6).value("infinity", M).unwrap(),
            Value::Int64(i64::MAX)
        );
    }
}
