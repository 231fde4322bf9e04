//! The Kinesis sink's typed settings.
//!
//! [`KinesisSinkConfig::from_props`] checks every key and reports every error at once; it makes no
//! AWS call (a stream that does not exist fails the task when it first writes, naming stream and
//! region).

use std::time::Duration;

use sluice_connector_api::batch::BatchLimits;
use sluice_connector_api::{
    ConfigDef, ConfigErrors, ConfigKey, ConfigType, ConnectorConfig, Importance, ParsedConfig,
    Validator,
};

use crate::aws::AwsSettings;
pub use crate::kinesis::RecordFormat;
use crate::kinesis::stream::{
    self, AWS_KEYS, MAX_BYTES_PER_CALL, MAX_RECORD_BYTES, MAX_RECORDS_PER_CALL,
};

/// How a record's partition key is chosen (`kinesis.partition.key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionKeySource {
    /// The record key's bytes; the Kafka partition number for a record without a key.
    Key,
    /// The Kafka partition number: one Kafka partition's records stay in one shard, in order.
    Partition,
    /// A top-level field of the value (a struct, a map or a JSON object); the record key when the
    /// value has no such field.
    Field(String),
    /// A random key per record: the most even spread over shards, and no order.
    Random,
}

/// Typed Kinesis sink settings.
#[derive(Debug, Clone)]
pub struct KinesisSinkConfig {
    /// The stream written to.
    pub stream: String,
    /// Region, endpoint, credentials, timeouts.
    pub aws: AwsSettings,
    /// How partition keys are chosen.
    pub partition_key: PartitionKeySource,
    /// What a record's data holds.
    pub format: RecordFormat,
    /// When a `PutRecords` call is sent.
    pub batch: BatchLimits,
    /// Most `PutRecords` calls in flight per task.
    pub max_in_flight: usize,
    /// Bytes a task holds before it pauses its partitions.
    pub buffer_max_bytes: usize,
    /// First delay before retrying records Kinesis refused.
    pub retry_backoff: Duration,
    /// Longest delay between retries.
    pub retry_backoff_max: Duration,
    /// How long a refused record is retried before it goes to the error policy (from
    /// `errors.retry.timeout`); `None` retries as long as it takes.
    pub retry_timeout: Option<Duration>,
}

const G: &str = "Kinesis";
const PARTITION_KEY: &str = "kinesis.partition.key";

fn key(name: &'static str, kind: ConfigType, doc: &'static str) -> ConfigKey {
    ConfigKey::new(name, kind, doc).group(G)
}

fn check_partition_key(raw: &str) -> Result<(), String> {
    parse_partition_key(raw).map(|_| ())
}

fn parse_partition_key(raw: &str) -> Result<PartitionKeySource, String> {
    let raw = raw.trim();
    match raw.to_ascii_lowercase().as_str() {
        "key" => Ok(PartitionKeySource::Key),
        "partition" => Ok(PartitionKeySource::Partition),
        "random" => Ok(PartitionKeySource::Random),
        lower if lower.starts_with("field:") => match raw["field:".len()..].trim() {
            "" => Err("field: needs a field name, as in field:device_id".into()),
            name => Ok(PartitionKeySource::Field(name.to_owned())),
        },
        _ => Err(format!(
            "{raw:?} is not one of key, partition, random or field:<name>"
        )),
    }
}

impl ConnectorConfig for KinesisSinkConfig {
    fn def() -> ConfigDef {
        stream::define(ConfigDef::new(), "Kinesis data stream to write to.")
            .define(
                key(
                    PARTITION_KEY,
                    ConfigType::String,
                    "Partition key of each Kinesis record: key (the record key; the Kafka \
                    partition number for records without one), partition (the Kafka partition \
                    number), field:<name> (a top-level field of the value, else the key) or \
                    random. Records with one partition key are written in Kafka order.",
                )
                .default_value("key")
                .importance(Importance::High)
                .validator(Validator::Custom(check_partition_key)),
            )
            .define(
                key(
                    "kinesis.record.format",
                    ConfigType::String,
                    "What a Kinesis record's data holds: value (the record's value) or envelope \
                    (topic, partition, offset, timestamp, key, value and headers as JSON, which \
                    the Kinesis source restores exactly).",
                )
                .default_value("value")
                .validator(Validator::OneOf(&["value", "envelope"])),
            )
            .define(
                key(
                    "kinesis.batch.max.records",
                    ConfigType::Int,
                    "Most records in one PutRecords call (Kinesis allows 500).",
                )
                .default_value("500")
                .validator(Validator::between(1.0, MAX_RECORDS_PER_CALL as f64)),
            )
            .define(
                key(
                    "kinesis.batch.max.bytes",
                    ConfigType::Int,
                    "Most bytes (data and partition keys) in one PutRecords call (Kinesis allows \
                    5 MiB). A record over 1 MiB goes to the error policy.",
                )
                .default_value(MAX_BYTES_PER_CALL.to_string())
                .validator(Validator::between(
                    MAX_RECORD_BYTES as f64,
                    MAX_BYTES_PER_CALL as f64,
                )),
            )
            .define(
                key(
                    "kinesis.linger.ms",
                    ConfigType::Long,
                    "Longest time a record waits for its PutRecords call to fill.",
                )
                .default_value("50")
                .validator(Validator::between(0.0, 60_000.0)),
            )
            .define(
                key(
                    "kinesis.max.in.flight",
                    ConfigType::Int,
                    "Most PutRecords calls in flight per task.",
                )
                .default_value("5")
                .validator(Validator::between(1.0, 64.0)),
            )
            .define(
                key(
                    "kinesis.buffer.max.bytes",
                    ConfigType::Long,
                    "Bytes of records a task holds (waiting, in flight or being retried) before \
                    it pauses its partitions; it resumes them below half of this.",
                )
                .default_value("33554432")
                .validator(Validator::between(1_048_576.0, 4_294_967_296.0)),
            )
            .define(
                key(
                    "kinesis.retry.backoff.ms",
                    ConfigType::Long,
                    "First delay before retrying records Kinesis refused (throttling, internal \
                    failures); it doubles, with jitter, up to kinesis.retry.backoff.max.ms.",
                )
                .default_value("100")
                .validator(Validator::between(1.0, 60_000.0)),
            )
            .define(
                key(
                    "kinesis.retry.backoff.max.ms",
                    ConfigType::Long,
                    "Longest delay between retries of refused records.",
                )
                .default_value("10000")
                .validator(Validator::between(1.0, 600_000.0)),
            )
    }

    fn build(p: &ParsedConfig, errors: &mut ConfigErrors) -> Self {
        let aws = AWS_KEYS.read(p, errors);
        let retry_backoff = p.duration_ms("kinesis.retry.backoff.ms");
        let retry_backoff_max = p.duration_ms("kinesis.retry.backoff.max.ms");
        if retry_backoff_max < retry_backoff {
            errors.push(
                "kinesis.retry.backoff.max.ms",
                "must be at least kinesis.retry.backoff.ms",
            );
        }
        Self {
            stream: p.string("kinesis.stream").trim().to_owned(),
            aws,
            partition_key: parse_partition_key(&p.string(PARTITION_KEY))
                .unwrap_or(PartitionKeySource::Key),
            format: if p
                .string("kinesis.record.format")
                .eq_ignore_ascii_case("envelope")
            {
                RecordFormat::Envelope
            } else {
                RecordFormat::Value
            },
            batch: BatchLimits {
                max_records: p.int("kinesis.batch.max.records").max(1) as usize,
                max_bytes: p.int("kinesis.batch.max.bytes").max(1) as usize,
                linger: p.duration_ms("kinesis.linger.ms"),
            },
            max_in_flight: p.int("kinesis.max.in.flight").max(1) as usize,
            buffer_max_bytes: p.long("kinesis.buffer.max.bytes").max(1) as usize,
            retry_backoff,
            retry_backoff_max,
            retry_timeout: crate::aws::retry_timeout(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use sluice_connector_api::testing::props;

    use super::*;

    #[test]
    fn defaults_follow_the_service_limits() {
        let c = KinesisSinkConfig::from_props(&props(&[
            ("kinesis.stream", "features"),
            ("kinesis.region", "eu-west-1"),
        ]))
        .unwrap();
        assert_eq!(c.stream, "features");
        assert_eq!(c.partition_key, PartitionKeySource::Key);
        assert_eq!(c.format, RecordFormat::Value);
        assert_eq!(
            (c.batch.max_records, c.batch.max_bytes),
            (500, 5 * 1024 * 1024)
        );
        assert_eq!(c.retry_timeout, None);
        assert_eq!(c.aws.region.as_deref(), Some("eu-west-1"));
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let Err(errors) = KinesisSinkConfig::from_props(&props(&[
            ("kinesis.partition.key", "field:"),
            ("kinesis.batch.max.records", "501"),
            ("kinesis.record.format", "avro"),
            ("kinesis.retry.backoff.ms", "500"),
            ("kinesis.retry.backoff.max.ms", "100"),
            ("kinesis.endpoint", "not a url"),
        ])) else {
            panic!("invalid config accepted");
        };
        let text = errors.to_string();
        for key in [
            "kinesis.stream",
            "kinesis.partition.key",
            "kinesis.batch.max.records",
            "kinesis.record.format",
            "kinesis.retry.backoff.max.ms",
            "kinesis.endpoint",
        ] {
            assert!(text.contains(key), "{key} missing from {text}");
        }
    }

    #[test]
    fn partition_keys_and_retry_timeout_parse() {
        let c = KinesisSinkConfig::from_props(&props(&[
            ("kinesis.stream", "s"),
            ("kinesis.partition.key", "Field:device_id"),
            ("errors.retry.timeout", "30000"),
        ]))
        .unwrap();
        assert_eq!(
            c.partition_key,
            PartitionKeySource::Field("device_id".into())
        );
        assert_eq!(c.retry_timeout, Some(Duration::from_secs(30)));
        for forever in ["0", "-1"] {
            let c = KinesisSinkConfig::from_props(&props(&[
                ("kinesis.stream", "s"),
                ("errors.retry.timeout", forever),
            ]))
            .unwrap();
            assert_eq!(c.retry_timeout, None, "{forever}");
        }
    }
}
