//! The S3 sink's keys: names, types, defaults, documentation and per-key checks (Confluent's
//! names where they mean the same). The rules spanning keys are in the parent module.

use sluice_connector_api::{ConfigDef, ConfigKey, ConfigType, Importance, Validator};

use super::{AWS_KEYS, PARQUET_FORMAT, PARTITIONERS, check_partitioner};

/// Every key of the S3 sink, in the order the REST API lists them.
pub(super) fn definition() -> ConfigDef {
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

fn key(name: &'static str, kind: ConfigType, doc: &'static str) -> ConfigKey {
    ConfigKey::new(name, kind, doc)
}
