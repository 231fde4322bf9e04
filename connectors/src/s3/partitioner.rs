//! Partitioners: which directory (the "encoded partition") a record's file goes in.
//!
//! Every partitioner is a pure function of the record and, for `Wallclock` time, of the time its
//! file set was opened. That is what lets a replay after a crash put every record in the same
//! object as before (see `DESIGN.md`).

use chrono::{DateTime, TimeZone};
use chrono_tz::Tz;
use sluice_connector_api::date_pattern::{Style, to_strftime};
use sluice_connector_api::{ConnectError, SinkRecord, Value};

/// Where a record's time comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum TimestampExtractor {
    /// The Kafka record timestamp.
    Record,
    /// A value field holding epoch milliseconds or an ISO-8601 string.
    RecordField(String),
    /// The wall-clock time at which the record's file set was opened.
    Wallclock,
}

/// How records are grouped into directories.
#[derive(Debug, Clone, PartialEq)]
pub enum Partitioner {
    /// `partition=<kafka partition>`.
    Default,
    /// `<field>=<value>` for each field, joined by `/`.
    Field(Vec<String>),
    /// A time bucket of `duration_ms`, formatted with `format` in `timezone`.
    Time {
        /// Directory pattern.
        format: PathFormat,
        /// Bucket span.
        duration_ms: i64,
        /// Record time.
        extractor: TimestampExtractor,
        /// Time zone of the pattern and of bucket boundaries.
        timezone: Tz,
    },
}

impl Partitioner {
    /// The directory of `record`; `opened_at` is the wall-clock time its file set was opened.
    pub fn encode(&self, record: &SinkRecord, opened_at: i64) -> Result<String, ConnectError> {
        let mut out = String::new();
        self.encode_into(record, opened_at, &mut out)?;
        Ok(out)
    }

    /// [`Partitioner::encode`] into a buffer the caller reuses from record to record.
    pub fn encode_into(
        &self,
        record: &SinkRecord,
        opened_at: i64,
        out: &mut String,
    ) -> Result<(), ConnectError> {
        use std::fmt::Write;
        out.clear();
        match self {
            Partitioner::Default => {
                let _ = write!(out, "partition={}", record.origin.partition);
            }
            Partitioner::Field(fields) => {
                for name in fields {
                    let value = field(&record.record.value, name).ok_or_else(|| {
                        ConnectError::user(format!(
                            "partition field {name:?} is missing from the value"
                        ))
                    })?;
                    if !out.is_empty() {
                        out.push('/');
                    }
                    out.push_str(name);
                    out.push('=');
                    let _ = match value {
                        Value::String(s) => {
                            for c in s.chars() {
                                match c {
                                    '/' => out.push_str("%2F"),
                                    c => out.push(c),
                                }
                            }
                            Ok(())
                        }
                        Value::Boolean(b) => write!(out, "{b}"),
                        Value::Int8(v) => write!(out, "{v}"),
                        Value::Int16(v) => write!(out, "{v}"),
                        Value::Int32(v) => write!(out, "{v}"),
                        Value::Int64(v) => write!(out, "{v}"),
                        other => {
                            return Err(ConnectError::user(format!(
                                "partition field {name:?} must be a string, integer or boolean, not {}",
                                other.type_name()
                            )));
                        }
                    };
                }
            }
            Partitioner::Time {
                format,
                duration_ms,
                extractor,
                timezone,
            } => {
                let t = record_time(extractor, record, opened_at)?;
                let bucket = bucket_start(t, *duration_ms, timezone);
                let local = timezone
                    .timestamp_millis_opt(bucket)
                    .single()
                    .ok_or_else(|| {
                        ConnectError::user(format!("record time {t} is out of range"))
                    })?;
                format.render_into(&local, out);
            }
        }
        Ok(())
    }
}

/// Start of the bucket of `duration_ms` that holds `t`, aligned in `timezone` (so daily buckets
/// start at local midnight), as Confluent's TimeBasedPartitioner does.
pub fn bucket_start(t: i64, duration_ms: i64, timezone: &Tz) -> i64 {
    let offset = utc_offset_ms(t, timezone);
    (t + offset).div_euclid(duration_ms) * duration_ms - offset
}

/// The offset of `timezone` from UTC at `t`, in milliseconds.
pub fn utc_offset_ms(t: i64, timezone: &Tz) -> i64 {
    use chrono::Offset;
    timezone
        .timestamp_millis_opt(t)
        .single()
        .map(|d| i64::from(d.offset().fix().local_minus_utc()) * 1000)
        .unwrap_or(0)
}

/// A record's time by `extractor`; `opened_at` stands for the wall clock.
pub fn record_time(
    extractor: &TimestampExtractor,
    record: &SinkRecord,
    opened_at: i64,
) -> Result<i64, ConnectError> {
    match extractor {
        TimestampExtractor::Wallclock => Ok(opened_at),
        TimestampExtractor::Record => record.record.timestamp.ok_or_else(|| {
            ConnectError::user("the record has no timestamp (timestamp.extractor=Record)")
        }),
        TimestampExtractor::RecordField(name) => match field(&record.record.value, name) {
            Some(Value::Int64(ms)) => Ok(*ms),
            Some(Value::Int32(v)) => Ok(i64::from(*v)),
            Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
                .map(|d| d.timestamp_millis())
                .map_err(|e| {
                    ConnectError::user(format!(
                        "timestamp field {name:?} = {s:?} is not ISO-8601: {e}"
                    ))
                }),
            Some(other) => Err(ConnectError::user(format!(
                "timestamp field {name:?} must be epoch milliseconds or an ISO-8601 string, not {}",
                other.type_name()
            ))),
            None => Err(ConnectError::user(format!(
                "timestamp field {name:?} is missing from the value"
            ))),
        },
    }
}

/// A top-level field of a struct or string-keyed map value.
pub fn field<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    match value {
        Value::Struct(s) => s.get(name).filter(|v| !v.is_null()),
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| matches!(k, Value::String(s) if s == name))
            .map(|(_, v)| v)
            .filter(|v| !v.is_null()),
        _ => None,
    }
}

/// A Joda-style directory pattern (`'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH`), held as the
/// strftime format it converts to.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PathFormat(String);

impl PathFormat {
    /// Parses a Joda pattern: `YYYY`/`yyyy` year, `MM` month, `dd` day, `HH` hour, `mm` minute, `ss`
    /// second, `'text'` literal text; other non-letters are kept as they are.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("path.format is required for a time-based partitioner".into());
        }
        to_strftime(pattern, Style::Joda)
            .map(Self)
            .map_err(|e| format!("invalid path.format {pattern:?}: {e}"))
    }

    /// Appends a local time, formatted.
    pub fn render_into(&self, t: &DateTime<Tz>, out: &mut String) {
        use std::fmt::Write;
        let _ = write!(out, "{}", t.format(&self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_connector_api::{Record, Struct, TopicPartition};

    fn record(value: Value, timestamp: i64) -> SinkRecord {
        let mut record = Record::new("t", value);
        record.timestamp = Some(timestamp);
        SinkRecord {
            record,
            origin: TopicPartition::new("t", 3),
            offset: 7,
            value_is_json: false,
        }
    }

    #[test]
    fn hourly_paths_in_a_time_zone() {
        let p = Partitioner::Time {
            format: PathFormat::parse("'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH").unwrap(),
            duration_ms: 3_600_000,
            extractor: TimestampExtractor::Record,
            timezone: "America/New_York".parse().unwrap(),
        };
        // 2024-03-01T05:30:00Z is 00:30 in New York.
        let r = record(Value::Null, 1_709_271_000_000);
        assert_eq!(
            p.encode(&r, 0).unwrap(),
            "year=2024/month=03/day=01/hour=00"
        );
    }

    #[test]
    fn daily_buckets_start_at_local_midnight() {
        let tz: Tz = "Asia/Kolkata".parse().unwrap();
        // 2024-03-01T20:00:00Z is 2024-03-02T01:30 in Kolkata: the bucket starts 2024-03-01T18:30Z.
        assert_eq!(
            bucket_start(1_709_323_200_000, 86_400_000, &tz),
            1_709_317_800_000
        );
    }

    #[test]
    fn field_and_default_partitions() {
        let v = Value::Struct(Struct::new().with("region", "eu/west").with("n", 5i64));
        let r = record(v, 0);
        assert_eq!(Partitioner::Default.encode(&r, 0).unwrap(), "partition=3");
        let f = Partitioner::Field(vec!["region".into(), "n".into()]);
        assert_eq!(f.encode(&r, 0).unwrap(), "region=eu%2Fwest/n=5");
        let missing = Partitioner::Field(vec!["nope".into()])
            .encode(&r, 0)
            .unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
    }

    #[test]
    fn bad_patterns_are_rejected() {
        assert!(PathFormat::parse("QQ/MM").is_err());
        assert!(PathFormat::parse("'year=YYYY").is_err());
    }
}
