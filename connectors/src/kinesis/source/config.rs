//! The Kinesis source's typed settings, under Confluent's Kinesis source names where they mean the
//! same.

use std::time::Duration;

use regex::Regex;
use sluice_connector_api::{
    ConfigDef, ConfigErrors, ConfigKey, ConfigType, ConnectorConfig, Importance, ParsedConfig,
    Validator,
};

use crate::aws::AwsSettings;
use crate::kinesis::RecordFormat;
use crate::kinesis::stream::{self, AWS_KEYS};

use super::shards::TaskShard;

/// Where a shard is read from when no offset is stored for it (`kinesis.position`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    /// The oldest record kept.
    TrimHorizon,
    /// Records written from now on.
    Latest,
    /// Records from this time (ms since the epoch) on.
    AtTimestamp(i64),
}

/// Typed Kinesis source settings.
#[derive(Debug, Clone)]
pub struct KinesisSourceConfig {
    /// The stream read from.
    pub stream: String,
    /// Region, endpoint, credentials, timeouts.
    pub aws: AwsSettings,
    /// Where shards without a stored offset start.
    pub position: StartPosition,
    /// Which shards are read (`kinesis.shard.id`, a regex matched against the whole id).
    pub shard_filter: Regex,
    /// Records per `GetRecords` call.
    pub record_limit: i32,
    /// Wait before reading an idle shard again.
    pub empty_backoff: Duration,
    /// Wait after Kinesis answered `ProvisionedThroughputExceededException`.
    pub throughput_backoff: Duration,
    /// How often the connector lists shards to notice resharding.
    pub discovery_interval: Duration,
    /// The topic records are written to; for `envelope` records, empty writes each record back
    /// to the topic (and partition) it came from.
    pub topic: Option<String>,
    /// What a Kinesis record's data holds.
    pub format: RecordFormat,
    /// The shards of this task (set by the connector in task configs).
    pub shards: Vec<TaskShard>,
}

const G: &str = "Kinesis";
/// The task config key that carries a task's shards.
pub const TASK_SHARDS: &str = "kinesis.task.shards";

fn key(name: &'static str, kind: ConfigType, doc: &'static str) -> ConfigKey {
    ConfigKey::new(name, kind, doc).group(G)
}

fn check_regex(raw: &str) -> Result<(), String> {
    Regex::new(raw).map(|_| ()).map_err(|e| e.to_string())
}

/// Epoch milliseconds, or an RFC 3339 time (`2026-12-01T10:00:00Z`, `2026-12-01T10:00:00.000+01:00`).
fn parse_time(raw: &str) -> Result<i64, String> {
    let raw = raw.trim();
    if let Ok(ms) = raw.parse::<i64>() {
        return Ok(ms);
    }
    aws_smithy_types::DateTime::from_str(raw, aws_smithy_types::date_time::Format::DateTime)
        .map_err(|_| format!("{raw:?} is neither epoch milliseconds nor an RFC 3339 time"))
        .and_then(|t| t.to_millis().map_err(|e| e.to_string()))
}

impl ConnectorConfig for KinesisSourceConfig {
    fn def() -> ConfigDef {
        stream::define(ConfigDef::new(), "Kinesis data stream to read from.")
            .define(
                key(
                    "kafka.topic",
                    ConfigType::String,
                    "Topic to write records to. With kinesis.record.format=envelope it may be \
                    empty: each record then goes back to the topic and partition it came from.",
                )
                .default_value("")
                .importance(Importance::High),
            )
            .define(
                key(
                    "kinesis.position",
                    ConfigType::String,
                    "Where a shard with no stored offset starts: TRIM_HORIZON (the oldest record \
                    kept), LATEST (records written from now on) or AT_TIMESTAMP (from \
                    kinesis.shard.timestamp on).",
                )
                .default_value("TRIM_HORIZON")
                .validator(Validator::OneOf(&[
                    "TRIM_HORIZON",
                    "LATEST",
                    "AT_TIMESTAMP",
                ])),
            )
            .define(
                key(
                    "kinesis.shard.timestamp",
                    ConfigType::String,
                    "Start time for AT_TIMESTAMP: epoch milliseconds or an RFC 3339 time.",
                )
                .default_value("")
                .alias("kinesis.position.timestamp"),
            )
            .define(
                key(
                    "kinesis.shard.id",
                    ConfigType::String,
                    "Regex of the shard ids to read (matched against the whole id).",
                )
                .default_value(".*")
                .validator(Validator::Custom(check_regex)),
            )
            .define(
                key(
                    "kinesis.record.limit",
                    ConfigType::Int,
                    "Records per GetRecords call.",
                )
                .default_value("500")
                .validator(Validator::between(1.0, 10_000.0)),
            )
            .define(
                key(
                    "kinesis.empty.records.backoff.ms",
                    ConfigType::Long,
                    "Wait before reading a shard again after it had nothing new.",
                )
                .default_value("5000")
                .validator(Validator::between(100.0, 600_000.0)),
            )
            .define(
                key(
                    "kinesis.throughput.exceeded.backoff.ms",
                    ConfigType::Long,
                    "Wait before reading a shard again after Kinesis answered \
                    ProvisionedThroughputExceededException.",
                )
                .default_value("10000")
                .validator(Validator::between(100.0, 600_000.0)),
            )
            .define(
                key(
                    "kinesis.shard.discovery.interval.ms",
                    ConfigType::Long,
                    "How often the connector lists the stream's shards to notice a split or a \
                    merge; new shards get new task configs.",
                )
                .default_value("30000")
                .validator(Validator::between(500.0, 3_600_000.0)),
            )
            .define(
                key(
                    "kinesis.record.format",
                    ConfigType::String,
                    "What a Kinesis record's data holds: value (the record's value as bytes) or \
                    envelope (a record written by the Kinesis sink in envelope format, restored \
                    with its key, value, headers and timestamp).",
                )
                .default_value("value")
                .validator(Validator::OneOf(&["value", "envelope"])),
            )
            .define(
                key(
                    TASK_SHARDS,
                    ConfigType::String,
                    "Set by the connector in task configs: the shards of one task.",
                )
                .default_value(""),
            )
    }

    fn build(p: &ParsedConfig, errors: &mut ConfigErrors) -> Self {
        let aws = AWS_KEYS.read(p, errors);
        let format = if p
            .string("kinesis.record.format")
            .eq_ignore_ascii_case("envelope")
        {
            RecordFormat::Envelope
        } else {
            RecordFormat::Value
        };
        let topic = p
            .optional_string("kafka.topic")
            .map(|t| t.trim().to_owned());
        if topic.is_none() && format == RecordFormat::Value {
            errors.push(
                "kafka.topic",
                "is required unless kinesis.record.format=envelope",
            );
        }
        let stamp = p.optional_string("kinesis.shard.timestamp");
        let position = match p.string("kinesis.position").to_ascii_uppercase().as_str() {
            "LATEST" => StartPosition::Latest,
            "AT_TIMESTAMP" => match stamp.as_deref().map(parse_time) {
                Some(Ok(ms)) => StartPosition::AtTimestamp(ms),
                Some(Err(e)) => {
                    errors.push("kinesis.shard.timestamp", e);
                    StartPosition::TrimHorizon
                }
                None => {
                    errors.push(
                        "kinesis.shard.timestamp",
                        "AT_TIMESTAMP needs kinesis.shard.timestamp",
                    );
                    StartPosition::TrimHorizon
                }
            },
            _ => StartPosition::TrimHorizon,
        };
        let shards = match p.optional_string(TASK_SHARDS) {
            Some(raw) => serde_json::from_str(&raw).unwrap_or_else(|e| {
                errors.push(TASK_SHARDS, format!("not a shard list: {e}"));
                Vec::new()
            }),
            None => Vec::new(),
        };
        let filter = format!("^(?:{})$", p.string("kinesis.shard.id"));
        Self {
            stream: p.string("kinesis.stream").trim().to_owned(),
            aws,
            position,
            shard_filter: Regex::new(&filter).unwrap_or_else(|_| {
                // The validator reported it; match everything meanwhile.
                Regex::new(".*").unwrap_or_else(|e| unreachable!("a constant regex: {e}"))
            }),
            record_limit: p.int("kinesis.record.limit"),
            empty_backoff: p.duration_ms("kinesis.empty.records.backoff.ms"),
            throughput_backoff: p.duration_ms("kinesis.throughput.exceeded.backoff.ms"),
            discovery_interval: p.duration_ms("kinesis.shard.discovery.interval.ms"),
            topic,
            format,
            shards,
        }
    }
}

#[cfg(test)]
mod tests {
    use sluice_connector_api::testing::props;

    use super::*;

    #[test]
    fn confluent_names_and_defaults() {
        let c = KinesisSourceConfig::from_props(&props(&[
            ("kinesis.stream", "events"),
            ("kafka.topic", "raw-data"),
            ("kinesis.position", "AT_TIMESTAMP"),
            ("kinesis.shard.timestamp", "2026-12-01T00:00:00Z"),
            ("kinesis.shard.id", "shardId-00000000000[01]"),
        ]))
        .unwrap();
        assert_eq!(c.position, StartPosition::AtTimestamp(1_796_083_200_000));
        assert_eq!(c.record_limit, 500);
        assert_eq!(c.empty_backoff, Duration::from_secs(5));
        assert!(c.shard_filter.is_match("shardId-000000000001"));
        assert!(!c.shard_filter.is_match("shardId-000000000002"));
        assert!(
            !c.shard_filter.is_match("xshardId-000000000001"),
            "whole id"
        );
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let Err(errors) = KinesisSourceConfig::from_props(&props(&[
            ("kinesis.position", "AT_TIMESTAMP"),
            ("kinesis.shard.id", "(unclosed"),
            ("kinesis.record.limit", "0"),
        ])) else {
            panic!("invalid config accepted");
        };
        let text = errors.to_string();
        for key in [
            "kinesis.stream",
            "kafka.topic",
            "kinesis.shard.timestamp",
            "kinesis.shard.id",
            "kinesis.record.limit",
        ] {
            assert!(text.contains(key), "{key} missing from {text}");
        }
    }

    #[test]
    fn envelopes_may_go_back_to_their_topics() {
        let c = KinesisSourceConfig::from_props(&props(&[
            ("kinesis.stream", "overflow"),
            ("kinesis.record.format", "envelope"),
            ("kinesis.position.timestamp", "1764547200000"),
        ]))
        .unwrap();
        assert_eq!((c.topic, c.format), (None, RecordFormat::Envelope));
    }
}
