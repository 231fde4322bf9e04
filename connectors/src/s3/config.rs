//! The S3 sink's typed settings, under the Confluent S3 sink's names where they mean the same.
//!
//! [`S3SinkConfig::from_props`] checks every key and every rule that spans keys (a time-based
//! partitioner needs `path.format`, a `RecordField` extractor needs `timestamp.field`, ...) and reports
//! all errors at once.

use chrono_tz::Tz;
use sluice_connector_api::{
    ConfigDef, ConfigErrors, ConfigKey, ConfigType, ConnectorConfig, Importance, ParsedConfig,
    Validator,
};

use crate::aws::{AwsKeys, AwsSettings};

use super::partitioner::{Partitioner, PathFormat, TimestampExtractor};

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

const PARTITIONERS: &[&str] = &[
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

fn check_partitioner(class: &str) -> Result<(), String> {
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
const AWS_KEYS: AwsKeys = AwsKeys {
    region: "s3.region",
    default_region: "us-east-1",
    endpoint: None,
    retries: "s3.part.retries",
    group: "S3",
};

impl ConnectorConfig for S3SinkConfig {
    fn def() -> ConfigDef {
        let g = "S3";
        let storage = "Storage";
        let part = "Partitioner";
        AWS_KEYS
            .define(ConfigDef::new())
            .define(
                key(
                    "s3.bucket.name",
                    ConfigType::String,
                    "Bucket to write to (not used with a file:// store.url).",
                )
                .default_value("")
                .importance(Importance::High)
                .group(g),
            )
            .define(
                key(
                    "store.url",
                    ConfigType::String,
                    "S3 endpoint URL for S3-compatible stores (empty: AWS), or file:///directory \
                    to write the same layout to a local directory.",
                )
                .default_value("")
                .importance(Importance::High)
                .group(g),
            )
            .define(
                key(
                    "s3.path.style.access.enabled",
                    ConfigType::Boolean,
                    "Address the bucket in the URL path instead of the host name.",
                )
                .default_value("true")
                .group(g),
            )
            .define(
                key(
                    "s3.part.size",
                    ConfigType::Int,
                    "Multipart upload part size in bytes; a file larger than this is uploaded in \
                    parts while it is written.",
                )
                .default_value("26214400")
                .validator(Validator::between(5_242_880.0, 2_147_483_647.0))
                .group(g),
            )
            .define(
                key(
                    "s3.retry.backoff.ms",
                    ConfigType::Long,
                    "First delay before retrying a failed upload; it doubles, with jitter, up to \
                    30 s. Partitions are paused while an upload waits.",
                )
                .default_value("200")
                .validator(Validator::between(1.0, 30_000.0))
                .group(g),
            )
            .define(
                key(
                    "s3.conditional.writes.enabled",
                    ConfigType::Boolean,
                    "Write each partition's intent object with If-Match / If-None-Match, so that a \
                    stale task (one whose partitions moved while it was slow or cut off) cannot \
                    overwrite a newer owner's intent. AWS S3, MinIO and R2 support it; turn it \
                    off only for a store that rejects those headers.",
                )
                .default_value("true")
                .group(g),
            )
            .define(
                key(
                    "topics.dir",
                    ConfigType::String,
                    "Prefix of every object key.",
                )
                .default_value("topics")
                .group(storage),
            )
            .define(
                key(
                    "format.class",
                    ConfigType::Class,
                    "Output format; Parquet is the only one.",
                )
                .default_value(PARQUET_FORMAT)
                .validator(Validator::OneOf(&[
                    PARQUET_FORMAT,
                    "Parquet",
                    "ParquetFormat",
                ]))
                .group(storage),
            )
            .define(
                key(
                    "parquet.codec",
                    ConfigType::String,
                    "Parquet compression: snappy, zstd, gzip or none.",
                )
                .default_value("snappy")
                .validator(Validator::OneOf(&[
                    "snappy",
                    "zstd",
                    "gzip",
                    "none",
                    "uncompressed",
                ]))
                .group(storage),
            )
            .define(
                key(
                    "parquet.row.group.size.bytes",
                    ConfigType::Int,
                    "Encoded size of a row group before it is closed.",
                )
                .default_value("16777216")
                .validator(Validator::between(65_536.0, 1_073_741_824.0))
                .group(storage),
            )
            .define(
                key(
                    "flush.size",
                    ConfigType::Long,
                    "Records per file before it is closed.",
                )
                .default_value("100000")
                .validator(Validator::at_least(1.0))
                .importance(Importance::High)
                .group(storage),
            )
            .define(
                key(
                    "rotate.interval.ms",
                    ConfigType::Long,
                    "Close a file once its records span this much record time; -1 for off. \
                    Exactly-once.",
                )
                .default_value("-1")
                .validator(Validator::at_least(-1.0))
                .group(storage),
            )
            .define(
                key(
                    "rotate.schedule.interval.ms",
                    ConfigType::Long,
                    "Close open files at every multiple of this wall-clock period (in timezone), \
                    even when no new data arrives; -1 for off. Exactly-once in Sluice.",
                )
                .default_value("-1")
                .validator(Validator::at_least(-1.0))
                .group(storage),
            )
            .define(
                key(
                    "rotate.size.bytes",
                    ConfigType::Long,
                    "Close a file once its Parquet encoding reaches this many bytes.",
                )
                .default_value("1073741824")
                .validator(Validator::at_least(1024.0))
                .group(storage),
            )
            .define(
                key(
                    "buffer.max.bytes",
                    ConfigType::Long,
                    "Memory a task may use for open files; when reached, the files of the \
                    partition holding the most are closed early.",
                )
                .default_value("134217728")
                .validator(Validator::at_least(1_048_576.0))
                .group(storage),
            )
            .define(
                key(
                    "behavior.on.null.values",
                    ConfigType::String,
                    "A record with a null value (tombstone): fail (through the error policy) or \
                    ignore.",
                )
                .default_value("fail")
                .validator(Validator::OneOf(&["fail", "ignore"]))
                .group(storage),
            )
            .define(
                key(
                    "schemaless.type.conflict",
                    ConfigType::String,
                    "A schemaless value whose type does not fit its column: widen (lossless \
                    widening closes the file and widens the column; anything else is an error \
                    record) or error.",
                )
                .default_value("widen")
                .validator(Validator::OneOf(&["widen", "error"]))
                .group(storage),
            )
            .define(
                key(
                    "filename.offset.zero.pad.width",
                    ConfigType::Int,
                    "Width of the zero-padded start offset in object names.",
                )
                .default_value("10")
                .validator(Validator::between(1.0, 20.0))
                .group(storage),
            )
            .define(
                key(
                    "partitioner.class",
                    ConfigType::Class,
                    "DefaultPartitioner (partition=<kafka partition>), FieldPartitioner \
                    (partition.field.name) or TimeBasedPartitioner (path.format); Hourly and \
                    Daily are time-based presets.",
                )
                .default_value(PARTITIONERS[0])
                .validator(Validator::Custom(check_partitioner))
                .importance(Importance::High)
                .group(part),
            )
            .define(
                key(
                    "partition.field.name",
                    ConfigType::List,
                    "Fields of the value that name the directory, for FieldPartitioner.",
                )
                .default_value("")
                .group(part),
            )
            .define(
                key(
                    "path.format",
                    ConfigType::String,
                    "Directory pattern of the time-based partitioner, Joda style: \
                    'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH.",
                )
                .default_value("")
                .group(part),
            )
            .define(
                key(
                    "partition.duration.ms",
                    ConfigType::Long,
                    "Time span of one time-based directory.",
                )
                .default_value("-1")
                .validator(Validator::at_least(-1.0))
                .group(part),
            )
            .define(
                key(
                    "timestamp.extractor",
                    ConfigType::String,
                    "Time of a record for the time-based partitioner and rotate.interval.ms: \
                    Record (Kafka timestamp), RecordField (timestamp.field) or Wallclock.",
                )
                .default_value("Wallclock")
                .validator(Validator::OneOf(&["Record", "RecordField", "Wallclock"]))
                .group(part),
            )
            .define(
                key(
                    "timestamp.field",
                    ConfigType::String,
                    "Value field holding the record time (epoch milliseconds or an ISO-8601 \
                    string), for RecordField.",
                )
                .default_value("")
                .group(part),
            )
            .define(
                key(
                    "timezone",
                    ConfigType::String,
                    "Time zone of path.format and of the schedule of rotate.schedule.interval.ms.",
                )
                .default_value("UTC")
                .group(part),
            )
            .define(
                key(
                    "locale",
                    ConfigType::String,
                    "Accepted for compatibility; directory names use numbers only.",
                )
                .default_value("en")
                .group(part),
            )
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

fn key(name: &'static str, kind: ConfigType, doc: &'static str) -> ConfigKey {
    ConfigKey::new(name, kind, doc)
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
