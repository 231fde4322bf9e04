//! The overflow keys every connector takes: a source's `overflow.*`, a sink's
//! `errors.overflow.*`, defined with the common keys and resolved with them.

use std::time::Duration;

use sluice_connector_api::{
    ConfigDef, ConfigErrors, ConfigKey, ConfigType, ConnectorType, Importance, ParsedConfig, Props,
    Validator,
};

#[cfg(feature = "kinesis")]
use sluice_connectors::kinesis::overflow::{OverflowTarget, SINK_PREFIX, SOURCE_PREFIX};

/// How a source task comes back to Kafka (`overflow.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverflowMode {
    /// The task replays what it diverted into Kafka before it sends anything newer: per-key order
    /// holds end to end.
    Ordered,
    /// The task goes back to Kafka at once and leaves the diverted records to a Kinesis source
    /// with `kinesis.record.format=envelope`: they arrive after newer ones.
    Relaxed,
}

/// A source connector's overflow.
#[derive(Debug, Clone)]
pub struct SourceOverflowSettings {
    /// The stream and how to reach it.
    #[cfg(feature = "kinesis")]
    pub target: OverflowTarget,
    /// A delivery not acknowledged within this diverts.
    pub produce_timeout: Duration,
    /// The producer's queue full for this long diverts.
    pub queue_full: Duration,
    /// Kafka answering for this long ends a diversion.
    pub recovery: Duration,
    /// How the task comes back.
    pub mode: OverflowMode,
}

/// A sink connector's overflow: where records that keep failing with retriable errors go.
#[derive(Debug, Clone)]
pub struct SinkOverflowSettings {
    /// The stream and how to reach it.
    #[cfg(feature = "kinesis")]
    pub target: OverflowTarget,
}

const GROUP: &str = "Overflow";

fn key(name: &'static str, kind: ConfigType, doc: &'static str) -> ConfigKey {
    ConfigKey::new(name, kind, doc)
        .importance(Importance::Low)
        .group(GROUP)
}

/// Adds the overflow keys of a connector of `kind` to the common keys. The AWS credentials keys
/// (`aws.access.key.id`, ...) are read under the same prefix; they are not listed, as the
/// connector's own AWS keys would be shadowed.
pub fn define(def: ConfigDef, kind: ConnectorType) -> ConfigDef {
    match kind {
        ConnectorType::Source => def
            .define(
                key(
                    "overflow.kinesis.stream",
                    ConfigType::String,
                    "Kinesis stream that takes the task's records (in the envelope format) while \
                    Kafka is unreachable or too slow; empty for none.",
                )
                .default_value(""),
            )
            .define(
                key(
                    "overflow.kinesis.region",
                    ConfigType::String,
                    "Region of the overflow stream; empty takes it from the environment.",
                )
                .default_value(""),
            )
            .define(
                key(
                    "overflow.kinesis.endpoint",
                    ConfigType::String,
                    "Endpoint of the overflow stream's Kinesis, for a Kinesis-compatible service.",
                )
                .default_value(""),
            )
            .define(
                key(
                    "overflow.produce.timeout.ms",
                    ConfigType::Long,
                    "A record Kafka has not acknowledged within this diverts the task.",
                )
                .default_value("5000")
                .validator(Validator::at_least(1.0)),
            )
            .define(
                key(
                    "overflow.queue.full.ms",
                    ConfigType::Long,
                    "The producer's queue full for this long diverts the task.",
                )
                .default_value("2000")
                .validator(Validator::at_least(0.0)),
            )
            .define(
                key(
                    "overflow.recovery.ms",
                    ConfigType::Long,
                    "How long Kafka must answer before a diverting task comes back to it.",
                )
                .default_value("10000")
                .validator(Validator::at_least(0.0)),
            )
            .define(
                key(
                    "overflow.mode",
                    ConfigType::String,
                    "ordered: the task replays what it diverted before sending anything newer \
                    (per-key order holds); relaxed: it comes back at once and leaves the replay \
                    to a Kinesis source (replayed records arrive after newer ones).",
                )
                .default_value("ordered")
                .validator(Validator::OneOf(&["ordered", "relaxed"])),
            ),
        ConnectorType::Sink => def
            .define(
                key(
                    "errors.overflow.kinesis.stream",
                    ConfigType::String,
                    "Kinesis stream that takes records failing with retriable errors past \
                    errors.retry.timeout, in the envelope format with their coordinates, \
                    instead of the dead-letter queue; empty for none.",
                )
                .default_value(""),
            )
            .define(
                key(
                    "errors.overflow.kinesis.region",
                    ConfigType::String,
                    "Region of the sink's overflow stream.",
                )
                .default_value(""),
            )
            .define(
                key(
                    "errors.overflow.kinesis.endpoint",
                    ConfigType::String,
                    "Endpoint of the sink's overflow stream's Kinesis.",
                )
                .default_value(""),
            ),
    }
}

/// A source connector's overflow, if it names a stream: the timings from `parsed` (the common
/// keys, checked already), the stream's keys from `props`; errors go to `errors`.
pub fn source(
    parsed: &ParsedConfig,
    props: &Props,
    errors: &mut ConfigErrors,
) -> Option<SourceOverflowSettings> {
    let target = target(props, SOURCE, errors)?;
    let mode = if parsed
        .string("overflow.mode")
        .trim()
        .eq_ignore_ascii_case("relaxed")
    {
        OverflowMode::Relaxed
    } else {
        OverflowMode::Ordered
    };
    #[cfg(not(feature = "kinesis"))]
    let () = target;
    Some(SourceOverflowSettings {
        #[cfg(feature = "kinesis")]
        target,
        produce_timeout: parsed.duration_ms("overflow.produce.timeout.ms"),
        queue_full: parsed.duration_ms("overflow.queue.full.ms"),
        recovery: parsed.duration_ms("overflow.recovery.ms"),
        mode,
    })
}

/// A sink connector's overflow, if it names a stream; errors go to `errors`.
pub fn sink(props: &Props, errors: &mut ConfigErrors) -> Option<SinkOverflowSettings> {
    let target = target(props, SINK, errors)?;
    #[cfg(not(feature = "kinesis"))]
    let () = target;
    Some(SinkOverflowSettings {
        #[cfg(feature = "kinesis")]
        target,
    })
}

#[cfg(feature = "kinesis")]
const SOURCE: &str = SOURCE_PREFIX;
#[cfg(feature = "kinesis")]
const SINK: &str = SINK_PREFIX;
#[cfg(not(feature = "kinesis"))]
const SOURCE: &str = "overflow.";
#[cfg(not(feature = "kinesis"))]
const SINK: &str = "errors.overflow.";

#[cfg(feature = "kinesis")]
fn target(props: &Props, prefix: &str, errors: &mut ConfigErrors) -> Option<OverflowTarget> {
    OverflowTarget::from_props(props, prefix)
        .map_err(|e| errors.0.extend(e.0))
        .ok()
        .flatten()
}

#[cfg(not(feature = "kinesis"))]
fn target(props: &Props, prefix: &str, errors: &mut ConfigErrors) -> Option<()> {
    let key = format!("{prefix}kinesis.stream");
    if props.get(&key).is_some_and(|s| !s.trim().is_empty()) {
        errors.push(
            key,
            "this worker was built without Kinesis (the `kinesis` feature): no overflow stream",
        );
    }
    None
}
