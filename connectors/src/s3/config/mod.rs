//! The S3 sink's typed settings, under the Confluent S3 sink's names where they mean the same.
//!
//! [`S3SinkConfig::from_props`] checks every key and every rule that spans keys (a time-based
//! partitioner needs `path.format`, a `RecordField` extractor needs `timestamp.field`, ...) and reports
//! all errors at once.

use chrono_tz::Tz;
use sluice_connector_api::{ConfigDef, ConfigErrors, ConnectorConfig, ParsedConfig};

use crate::aws::{AwsKeys, AwsSettings};

use super::partitioner::{Partitioner, PathFormat, TimestampExtractor};

mod keys;

/// Where objects go.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreTarget {
    /// An S3 bucket (AWS or any S3-compatible endpoint).
    S3 {
        /// Bucket name.
        bucket: String,
        /// Path-style addressing (`bucket` in the path rather than the host name).
        path_style: bool,
        /// Region, credentials, role, timeouts and retries; the endpoint override is `store.url`.
        aws: Box<AwsSettings>,
    },
    /// A local directory with the same layout (`store.url=file:///path`), for development.
    Local(std::path::PathBuf),
}

/// Parquet compression (`parquet.codec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// No compression.
    None,
    /// Snappy (the default: fast, read by every engine).
    Snappy,
    /// Gzip.
    Gzip,
    /// Zstandard.
    Zstd,
}

/// What to do when a schemaless value's type does not match its column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeConflict {
    /// Widen where no value changes (an integer column becomes a double column while every integer
    /// is within ±2^53): the file is closed and the next one has the wider column. Anything else is
    /// an error record.
    Widen,
    /// Every conflict is an error record.
    Error,
}

/// Typed S3 sink settings.
#[derive(Debug, Clone)]
pub struct S3SinkConfig {
    /// Where objects are written.
    pub store: StoreTarget,
    /// Prefix of every object key.
    pub topics_dir: String,
    /// How records are grouped into directories.
    pub partitioner: Partitioner,
    /// The time of a record (`timestamp.extractor`), for the time-based partitioner and
    /// `rotate.interval.ms` whatever the partitioner.
    pub timestamp_extractor: TimestampExtractor,
    /// The time zone of directory names and of the `rotate.schedule.interval.ms` schedule.
    pub timezone: Tz,
    /// Records per file before it is closed.
    pub flush_size: u64,
    /// Record-time span of a file before it is closed; `None` when off.
    pub rotate_interval_ms: Option<i64>,
    /// Wall-clock period after which open files are closed, even with no new data; `None` when off.
    pub rotate_schedule_interval_ms: Option<i64>,
    /// Encoded size of a file before it is closed.
    pub rotate_size_bytes: u64,
    /// Memory a task may use for open files before it closes the largest early.
    pub buffer_max_bytes: u64,
    /// Multipart upload part size.
    pub part_size: usize,
    /// Parquet compression.
    pub codec: Codec,
    /// Encoded size of a row group before it is closed.
    pub row_group_bytes: usize,
    /// Whether a record with a null value is skipped (`ignore`) or an error (`fail`).
    pub ignore_null_values: bool,
    /// Policy for schemaless type conflicts.
    pub type_conflict: TypeConflict,
    /// Width of the zero-padded start offset in object names.
    pub offset_pad_width: usize,
    /// First delay before retrying a failed upload; doubles (with jitter) up to 30 s.
    pub retry_backoff_ms: u64,
    /// Fence intent writes with conditional requests (`s3.conditional.writes.enabled`).
    pub conditional_writes: bool,
}

pub(super) const PARTITIONERS: &[&str] = &[
    "io.confluent.connect.storage.partitioner.DefaultPartitioner",
    "io.confluent.connect.storage.partitioner.FieldPartitioner",
    "io.confluent.connect.storage.partitioner.TimeBasedPartitioner",
    "io.confluent.connect.storage.partitioner.HourlyPartitioner",
    "io.confluent.connect.storage.partitioner.DailyPartitioner",
];

/// The partitioner's short name: `TimeBased` for `...TimeBasedPartitioner` or `TimeBased`.
fn partitioner_name(class: &str) -> &str {
    class
        .rsplit('.')
        .next()
        .unwrap_or(class)
        .trim_end_matches("Partitioner")
}

pub(super) fn check_partitioner(class: &str) -> Result<(), String> {
    match partitioner_name(class) {
        "Default" | "Field" | "TimeBased" | "Hourly" | "Daily" => Ok(()),
        _ => Err(format!(
            "must be one of {} (or the short names Default, Field, TimeBased, Hourly, Daily)",
            PARTITIONERS.join(", ")
        )),
    }
}

/// The Parquet format class users already set for the Confluent S3 sink.
pub const PARQUET_FORMAT: &str = "io.confluent.connect.s3.format.parquet.ParquetFormat";

/// Longest `aws.api.call.timeout.ms` the S3 sink takes: inside the consumer's 45 s session.
const MAX_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(40);

/// The AWS keys under the Confluent S3 sink's names (`s3.region`, `s3.part.retries`); the
/// endpoint override is `store.url`, which also takes a `file://` directory.
pub(super) const AWS_KEYS: AwsKeys = AwsKeys {
    region: "s3.region",
    default_region: "us-east-1",
    endpoint: None,
    retries: "s3.part.retries",
    default_retries: "3",
    group: "S3",
};

impl ConnectorConfig for S3SinkConfig {
    fn def() -> ConfigDef {
        keys::definition()
    }

    fn build(p: &ParsedConfig, errors: &mut ConfigErrors) -> Self {
        let store_url = p.string("store.url");
        let store = if let Some(path) = store_url.strip_prefix("file://") {
            if path.is_empty() {
                errors.push(
                    "store.url",
                    "file:// needs a directory, as in file:///var/lib/sluice/s3",
                );
            }
            StoreTarget::Local(path.into())
        } else {
            let bucket = p.string("s3.bucket.name");
            if bucket.is_empty() {
                errors.push("s3.bucket.name", "Missing required configuration \"s3.bucket.name\" (or set store.url=file:///directory)");
            }
            let mut aws = AWS_KEYS.read(p, errors);
            aws.endpoint = (!store_url.is_empty()).then_some(store_url);
            if aws.call_timeout > MAX_CALL_TIMEOUT {
                // DESIGN.md: a writer must not act after its partitions may have moved.
                errors.push(
                    crate::aws::CALL_TIMEOUT,
                    format!(
                        "at most {} ms for the S3 sink, inside the consumer's session timeout",
                        MAX_CALL_TIMEOUT.as_millis()
                    ),
                );
            }
            StoreTarget::S3 {
                bucket,
                path_style: p.boolean("s3.path.style.access.enabled"),
                aws: Box::new(aws),
            }
        };
        let timezone: Tz = match p.string("timezone").parse() {
            Ok(tz) => tz,
            Err(_) => {
                errors.push(
                    "timezone",
                    format!("Unknown time zone {:?}", p.string("timezone")),
                );
                Tz::UTC
            }
        };
        let extractor = match p.string("timestamp.extractor").as_str() {
            "Record" => TimestampExtractor::Record,
            "RecordField" => {
                let field = p.string("timestamp.field");
                if field.is_empty() {
                    errors.push(
                        "timestamp.field",
                        "timestamp.extractor=RecordField needs timestamp.field",
                    );
                }
                TimestampExtractor::RecordField(field)
            }
            _ => TimestampExtractor::Wallclock,
        };
        let class = p.string("partitioner.class");
        let short = partitioner_name(&class);
        let partitioner = match short {
            "Field" => {
                let fields = p.list("partition.field.name");
                if fields.is_empty() {
                    errors.push(
                        "partition.field.name",
                        "FieldPartitioner needs partition.field.name",
                    );
                }
                Partitioner::Field(fields)
            }
            "TimeBased" | "Hourly" | "Daily" => {
                let (default_format, default_duration) = match short {
                    "Hourly" => ("'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH", 3_600_000),
                    "Daily" => ("'year'=YYYY/'month'=MM/'day'=dd", 86_400_000),
                    _ => ("", -1),
                };
                let raw = p.optional_string("path.format").filter(|s| !s.is_empty());
                let raw = raw.unwrap_or_else(|| default_format.to_owned());
                let format = match PathFormat::parse(&raw) {
                    Ok(f) => f,
                    Err(e) => {
                        errors.push("path.format", e);
                        PathFormat::default()
                    }
                };
                let mut duration = p.long("partition.duration.ms");
                if duration <= 0 {
                    duration = default_duration;
                }
                if duration <= 0 {
                    errors.push(
                        "partition.duration.ms",
                        "TimeBasedPartitioner needs partition.duration.ms > 0",
                    );
                }
                Partitioner::Time {
                    format,
                    duration_ms: duration,
                    extractor: extractor.clone(),
                    timezone,
                }
            }
            _ => Partitioner::Default,
        };
        let codec = match p.string("parquet.codec").to_ascii_lowercase().as_str() {
            "none" | "uncompressed" => Codec::None,
            "gzip" => Codec::Gzip,
            "zstd" => Codec::Zstd,
            _ => Codec::Snappy,
        };
        let positive = |k: &str| Some(p.long(k)).filter(|v| *v > 0);
        let rotate_interval_ms = positive("rotate.interval.ms");
        if rotate_interval_ms.is_some()
            && matches!(extractor, TimestampExtractor::Wallclock)
            && !matches!(partitioner, Partitioner::Time { .. })
        {
            // Record time of a Wallclock extractor is the file's opening time: the interval would
            // never be reached by record time. Confluent rejects this too.
            errors.push("rotate.interval.ms", "rotate.interval.ms needs record time: set timestamp.extractor to Record or RecordField (or use rotate.schedule.interval.ms)");
        }
        Self {
            store,
            topics_dir: p.string("topics.dir").trim_matches('/').to_owned(),
            partitioner,
            timestamp_extractor: extractor,
            timezone,
            flush_size: p.long("flush.size") as u64,
            rotate_interval_ms,
            rotate_schedule_interval_ms: positive("rotate.schedule.interval.ms"),
            rotate_size_bytes: p.long("rotate.size.bytes") as u64,
            buffer_max_bytes: p.long("buffer.max.bytes") as u64,
            part_size: p.int("s3.part.size") as usize,
            codec,
            row_group_bytes: p.int("parquet.row.group.size.bytes") as usize,
            ignore_null_values: p.string("behavior.on.null.values") == "ignore",
            type_conflict: if p.string("schemaless.type.conflict") == "error" {
                TypeConflict::Error
            } else {
                TypeConflict::Widen
            },
            offset_pad_width: p.int("filename.offset.zero.pad.width") as usize,
            retry_backoff_ms: p.long("s3.retry.backoff.ms") as u64,
            conditional_writes: p.boolean("s3.conditional.writes.enabled"),
        }
    }
}

impl S3SinkConfig {
    /// What every object key starts with: `<topics.dir>/`, or nothing for an empty `topics.dir`.
    pub fn key_prefix(&self) -> String {
        if self.topics_dir.is_empty() {
            String::new()
        } else {
            format!("{}/", self.topics_dir)
        }
    }

    /// Whether choosing a record's directory or time reads its value's fields (the field
    /// partitioner, `timestamp.extractor=RecordField`); otherwise only the file needs the value.
    pub fn reads_value_fields(&self) -> bool {
        matches!(self.partitioner, Partitioner::Field(_))
            || matches!(self.timestamp_extractor, TimestampExtractor::RecordField(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_connector_api::testing::props;

    #[test]
    fn every_cross_key_error_is_reported_at_once() {
        let errors = S3SinkConfig::from_props(&props(&[
            ("partitioner.class", "TimeBasedPartitioner"),
            ("timestamp.extractor", "RecordField"),
            ("flush.size", "zero"),
            ("timezone", "Mars/Olympus"),
        ]))
        .unwrap_err();
        let keys: Vec<_> = errors.0.iter().map(|e| e.key.as_str()).collect();
        for k in [
            "flush.size",
            "s3.bucket.name",
            "timezone",
            "timestamp.field",
            "path.format",
            "partition.duration.ms",
        ] {
            assert!(keys.contains(&k), "{k} missing from {errors}");
        }
    }

    #[test]
    fn local_store_needs_no_bucket_and_presets_fill_time_settings() {
        let c = S3SinkConfig::from_props(&props(&[
            ("store.url", "file:///tmp/x"),
            (
                "partitioner.class",
                "io.confluent.connect.storage.partitioner.HourlyPartitioner",
            ),
            ("timestamp.extractor", "Record"),
        ]))
        .unwrap();
        assert_eq!(c.store, StoreTarget::Local("/tmp/x".into()));
        match c.partitioner {
            Partitioner::Time { duration_ms, .. } => assert_eq!(duration_ms, 3_600_000),
            other => panic!("{other:?}"),
        }
    }
}
