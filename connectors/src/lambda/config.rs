//! The Lambda sink's typed settings, under Confluent's names where the meaning is the same
//! (`aws.lambda.function.name`, `aws.lambda.invocation.type`, `aws.lambda.batch.size`,
//! `aws.lambda.region`, `aws.lambda.invocation.timeout.ms`, `behavior.on.error`). Nordstrom's
//! `kafka-connect-lambda` names are read too, so that its configs work as they are:
//! `aws.lambda.function.arn`, `aws.lambda.invocation.mode` (`SYNC`/`ASYNC`), `aws.region`,
//! `retry.backoff.millis`, `aws.lambda.batch.enabled` (`false` invokes once per record) and
//! `aws.lambda.invocation.failure.mode` (`STOP` fails, `DROP` logs and skips, when
//! `behavior.on.error` is not given).
//!
//! [`LambdaSinkConfig::from_props`] checks every key and reports every error at once; it makes no
//! AWS call (a function that does not exist fails the task at its first invocation, naming the
//! function and region).

use std::time::Duration;

use sluice_connector_api::batch::BatchLimits;
use sluice_connector_api::{
    ConfigDef, ConfigErrors, ConfigKey, ConfigType, ConnectorConfig, Importance, ParsedConfig,
    Validator,
};

use crate::aws::{AwsKeys, AwsSettings};

/// The AWS keys under the Lambda sink's names. The SDK makes no retries of its own by default:
/// the connector retries throttled and failed invocations itself, with back-off and jitter
/// within `errors.retry.timeout`, so that every throttle is counted and the budget is one.
pub const AWS_KEYS: AwsKeys = AwsKeys {
    region: "aws.lambda.region",
    default_region: "",
    endpoint: Some("aws.lambda.endpoint"),
    retries: "aws.lambda.sdk.retries",
    default_retries: "0",
    group: "Lambda",
};

/// Lambda's documented limit on a synchronous (`RequestResponse`) request payload: 6 MB.
pub const SYNC_PAYLOAD_LIMIT: usize = 6 * 1024 * 1024;
/// Lambda's documented limit on an asynchronous (`Event`) request payload: 1 MB (it was 256 KB
/// until 2025).
pub const ASYNC_PAYLOAD_LIMIT: usize = 1024 * 1024;

/// How the function is invoked (`aws.lambda.invocation.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvocationType {
    /// `RequestResponse`: the connector waits for the function's result.
    Sync,
    /// `Event`: Lambda queues the batch and answers 202 at once; there is no result.
    Async,
}

impl InvocationType {
    /// The largest request payload Lambda takes for this type.
    pub fn payload_limit(self) -> usize {
        match self {
            Self::Sync => SYNC_PAYLOAD_LIMIT,
            Self::Async => ASYNC_PAYLOAD_LIMIT,
        }
    }
}

/// How each record is written into a batch's JSON (`aws.lambda.payload.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    /// Key and value as JSON, as the connector's converters decode them.
    Json,
    /// Key and value as base64 of their bytes.
    Base64,
}

/// What happens to a record the function fails, or whose result breaks the contract
/// (`behavior.on.error`, Confluent's key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// The worker's error policy decides (`errors.tolerance`, the dead-letter queue): with the
    /// default `errors.tolerance=none` the task fails.
    Fail,
    /// Logged with its coordinates and counted (`lambda.records.errors.logged`), then skipped.
    Log,
    /// Counted (`lambda.records.errors.ignored`) and skipped.
    Ignore,
}

/// Typed Lambda sink settings.
#[derive(Debug, Clone)]
pub struct LambdaSinkConfig {
    /// The function: a name, an ARN, or either with a `:version` or `:alias` qualifier.
    pub function: String,
    /// Region, endpoint, credentials, timeouts.
    pub aws: AwsSettings,
    /// Sync (results) or async (fire and forget, acknowledged by Lambda).
    pub invocation: InvocationType,
    /// How records are encoded in a batch.
    pub format: PayloadFormat,
    /// When a batch is sent: `aws.lambda.batch.size`, `aws.lambda.batch.max.bytes`,
    /// `aws.lambda.linger.ms`.
    pub batch: BatchLimits,
    /// Most invocations in flight per task.
    pub max_in_flight: usize,
    /// Longest time one invocation may take before it counts as failed (and is retried).
    pub invocation_timeout: Duration,
    /// Where results go (sync only); `None` discards them.
    pub response_topic: Option<String>,
    /// What happens to records the function fails.
    pub on_error: OnError,
    /// Bytes a task holds before it pauses its partitions.
    pub buffer_max_bytes: usize,
    /// First delay before retrying a throttled or failed invocation.
    pub retry_backoff: Duration,
    /// Longest delay between retries.
    pub retry_backoff_max: Duration,
    /// How long an invocation is retried before its records go to the error policy (from
    /// `errors.retry.timeout`); `None` retries as long as it takes.
    pub retry_timeout: Option<Duration>,
}

const G: &str = "Lambda";
const FUNCTION: &str = "aws.lambda.function.name";
const INVOCATION_TYPE: &str = "aws.lambda.invocation.type";
const RESPONSE_TOPIC: &str = "aws.lambda.response.topic";
const BATCH_MAX_BYTES: &str = "aws.lambda.batch.max.bytes";
const INVOCATION_TIMEOUT: &str = "aws.lambda.invocation.timeout.ms";
const BATCH_SIZE: &str = "aws.lambda.batch.size";
const BATCH_ENABLED: &str = "aws.lambda.batch.enabled";
const ON_ERROR: &str = "behavior.on.error";
const FAILURE_MODE: &str = "aws.lambda.invocation.failure.mode";

fn key(name: &'static str, kind: ConfigType, doc: &'static str) -> ConfigKey {
    ConfigKey::new(name, kind, doc).group(G)
}

/// Lambda's rule for a function name, ARN or partial ARN, with an optional qualifier.
fn check_function(raw: &str) -> Result<(), String> {
    let raw = raw.trim();
    let name = raw.rsplit(":function:").next().unwrap_or(raw);
    let (name, qualifier) = match name.split_once(':') {
        Some((n, q)) => (n, Some(q)),
        None => (name, None),
    };
    let word = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !word(name) || name.len() > 64 {
        return Err(format!(
            "{raw:?} is not a Lambda function name (1 to 64 of letters, digits, - and _), ARN \
             or name:qualifier"
        ));
    }
    match qualifier {
        Some(q) if q != "$LATEST" && !word(q) => Err(format!(
            "{q:?} is not a version or alias qualifier (letters, digits, - and _, or $LATEST)"
        )),
        _ => Ok(()),
    }
}

/// `behavior.on.error`, or Nordstrom's `aws.lambda.invocation.failure.mode` when only it is given.
fn on_error(p: &ParsedConfig) -> OnError {
    let nordstrom = p.optional_string(FAILURE_MODE);
    let given = p.originals().contains_key(ON_ERROR);
    match (given, nordstrom.as_deref().map(str::to_ascii_uppercase)) {
        (false, Some(mode)) if mode == "DROP" => OnError::Log,
        (false, Some(_)) => OnError::Fail,
        _ => match p.string(ON_ERROR).to_ascii_lowercase().as_str() {
            "log" => OnError::Log,
            "ignore" => OnError::Ignore,
            _ => OnError::Fail,
        },
    }
}

impl ConnectorConfig for LambdaSinkConfig {
    fn def() -> ConfigDef {
        AWS_KEYS
            .define(ConfigDef::new())
            .alias(AWS_KEYS.region, "aws.region")
            .define(
                key(
                    FUNCTION,
                    ConfigType::String,
                    "The Lambda function to invoke: a name, an ARN, or either followed by \
                    :version or :alias.",
                )
                .importance(Importance::High)
                .validator(Validator::Custom(check_function))
                .alias("aws.lambda.function.arn"),
            )
            .define(
                key(
                    INVOCATION_TYPE,
                    ConfigType::String,
                    "sync (RequestResponse: the connector waits for the function's results, \
                    which can go to aws.lambda.response.topic) or async (Event: Lambda queues \
                    the batch; a record counts as done once Lambda accepted it).",
                )
                .default_value("sync")
                .importance(Importance::High)
                .validator(Validator::OneOf(&["sync", "async"]))
                .alias("aws.lambda.invocation.mode"),
            )
            .define(
                key(
                    BATCH_SIZE,
                    ConfigType::Int,
                    "Most records in one invocation; 1 invokes the function once per record.",
                )
                .default_value("20")
                .importance(Importance::High)
                .validator(Validator::between(1.0, 10_000.0)),
            )
            .define(
                key(
                    BATCH_ENABLED,
                    ConfigType::Boolean,
                    "Nordstrom's name: false invokes the function once per record, as \
                    aws.lambda.batch.size=1 does.",
                )
                .default_value("true"),
            )
            .define(
                key(
                    BATCH_MAX_BYTES,
                    ConfigType::Long,
                    "Most bytes of one invocation's payload; 0 takes Lambda's limit for the \
                    invocation type (6 MB sync, 1 MB async). A record over it on its own goes \
                    to behavior.on.error.",
                )
                .default_value("0")
                .validator(Validator::between(0.0, SYNC_PAYLOAD_LIMIT as f64)),
            )
            .define(
                key(
                    "aws.lambda.linger.ms",
                    ConfigType::Long,
                    "Longest time a record waits for its batch to fill.",
                )
                .default_value("5")
                .validator(Validator::between(0.0, 60_000.0)),
            )
            .define(
                key(
                    "aws.lambda.max.in.flight",
                    ConfigType::Int,
                    "Most invocations in flight per task. Results and commits keep each Kafka \
                    partition's order whatever order invocations finish in.",
                )
                .default_value("8")
                .validator(Validator::between(1.0, 1_000.0)),
            )
            .define(
                key(
                    INVOCATION_TIMEOUT,
                    ConfigType::Long,
                    "Longest time in ms one invocation may take; past it the invocation counts \
                    as failed and is retried (the function may still have run).",
                )
                .default_value("300000")
                .validator(Validator::between(1_000.0, 900_000.0)),
            )
            .define(
                key(
                    RESPONSE_TOPIC,
                    ConfigType::String,
                    "Topic for the function's results (sync only): one record per input, with \
                    the input's key and headers plus lambda.* headers, in the input partition's \
                    offset order. Empty discards results.",
                )
                .default_value(""),
            )
            .define(
                key(
                    "aws.lambda.payload.format",
                    ConfigType::String,
                    "How each record's key and value appear in the batch: json (as the \
                    connector's converters decode them) or base64 (their bytes).",
                )
                .default_value("json")
                .validator(Validator::OneOf(&["json", "base64"])),
            )
            .define(
                key(
                    ON_ERROR,
                    ConfigType::String,
                    "What happens to records the function fails or whose result breaks the \
                    contract: fail (the worker's error policy: errors.tolerance and the \
                    dead-letter queue), log (logged, counted and skipped) or ignore (counted \
                    and skipped).",
                )
                .default_value("fail")
                .validator(Validator::OneOf(&["fail", "log", "ignore"])),
            )
            .define(
                key(
                    FAILURE_MODE,
                    ConfigType::String,
                    "Nordstrom's name, read when behavior.on.error is not given: STOP is \
                    behavior.on.error=fail, DROP is behavior.on.error=log.",
                )
                .default_value("")
                .validator(Validator::OneOf(&["STOP", "DROP"])),
            )
            .define(
                key(
                    "aws.lambda.buffer.max.bytes",
                    ConfigType::Long,
                    "Bytes of records a task holds (waiting, in flight or being retried) before \
                    it pauses its partitions; it resumes them below half of this.",
                )
                .default_value("67108864")
                .validator(Validator::between(1_048_576.0, 4_294_967_296.0)),
            )
            .define(
                key(
                    "aws.lambda.retry.backoff.ms",
                    ConfigType::Long,
                    "First delay before retrying a throttled or failed invocation; it doubles, \
                    with jitter, up to aws.lambda.retry.backoff.max.ms.",
                )
                .default_value("100")
                .validator(Validator::between(1.0, 60_000.0))
                .alias("retry.backoff.millis"),
            )
            .define(
                key(
                    "aws.lambda.retry.backoff.max.ms",
                    ConfigType::Long,
                    "Longest delay between retries of an invocation.",
                )
                .default_value("10000")
                .validator(Validator::between(1.0, 600_000.0)),
            )
    }

    fn build(p: &ParsedConfig, errors: &mut ConfigErrors) -> Self {
        let mut aws = AWS_KEYS.read(p, errors);
        let invocation = if p.string(INVOCATION_TYPE).eq_ignore_ascii_case("async") {
            InvocationType::Async
        } else {
            InvocationType::Sync
        };
        let limit = invocation.payload_limit();
        let max_bytes = match p.long(BATCH_MAX_BYTES).max(0) as usize {
            0 => limit,
            n if n > limit => {
                errors.push(
                    BATCH_MAX_BYTES,
                    format!(
                        "must be at most {limit}, Lambda's limit for {invocation:?} invocations"
                    ),
                );
                limit
            }
            n => n,
        };
        let response_topic = p
            .optional_string(RESPONSE_TOPIC)
            .map(|t| t.trim().to_owned());
        if response_topic.is_some() && invocation == InvocationType::Async {
            errors.push(
                RESPONSE_TOPIC,
                "async invocations have no results: set aws.lambda.invocation.type=sync or \
                 leave aws.lambda.response.topic empty",
            );
        }
        let retry_backoff = p.duration_ms("aws.lambda.retry.backoff.ms");
        let retry_backoff_max = p.duration_ms("aws.lambda.retry.backoff.max.ms");
        if retry_backoff_max < retry_backoff {
            errors.push(
                "aws.lambda.retry.backoff.max.ms",
                "must be at least aws.lambda.retry.backoff.ms",
            );
        }
        // One attempt is one invocation: its timeout is the invocation timeout.
        let invocation_timeout = p.duration_ms(INVOCATION_TIMEOUT);
        aws.attempt_timeout = invocation_timeout;
        aws.call_timeout = aws.call_timeout.max(invocation_timeout);
        Self {
            function: p.string(FUNCTION).trim().to_owned(),
            aws,
            invocation,
            format: if p
                .string("aws.lambda.payload.format")
                .eq_ignore_ascii_case("base64")
            {
                PayloadFormat::Base64
            } else {
                PayloadFormat::Json
            },
            batch: BatchLimits {
                max_records: if p.boolean(BATCH_ENABLED) {
                    p.int(BATCH_SIZE).max(1) as usize
                } else {
                    1
                },
                max_bytes,
                linger: p.duration_ms("aws.lambda.linger.ms"),
            },
            max_in_flight: p.int("aws.lambda.max.in.flight").max(1) as usize,
            invocation_timeout,
            response_topic,
            on_error: on_error(p),
            buffer_max_bytes: p.long("aws.lambda.buffer.max.bytes").max(1) as usize,
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
    fn defaults_are_confluents_and_lambdas_limits() {
        let c = LambdaSinkConfig::from_props(&props(&[(FUNCTION, "score")])).unwrap();
        assert_eq!(c.function, "score");
        assert_eq!(c.invocation, InvocationType::Sync);
        assert_eq!(c.format, PayloadFormat::Json);
        assert_eq!(c.on_error, OnError::Fail);
        assert_eq!(
            (c.batch.max_records, c.batch.max_bytes),
            (20, SYNC_PAYLOAD_LIMIT)
        );
        assert_eq!(c.max_in_flight, 8);
        assert_eq!(c.response_topic, None);
        assert_eq!(c.aws.retries, 0);
        assert_eq!(c.aws.attempt_timeout, Duration::from_secs(300));
        let async_ = LambdaSinkConfig::from_props(&props(&[
            (
                FUNCTION,
                "arn:aws:lambda:eu-west-1:123456789012:function:score:live",
            ),
            (INVOCATION_TYPE, "async"),
        ]))
        .unwrap();
        assert_eq!(async_.batch.max_bytes, ASYNC_PAYLOAD_LIMIT);
    }

    #[test]
    fn a_config_written_for_nordstroms_connector_reads_as_meant() {
        let c = LambdaSinkConfig::from_props(&props(&[
            (
                "aws.lambda.function.arn",
                "arn:aws:lambda:us-west-2:123456789012:function:score",
            ),
            ("aws.lambda.invocation.mode", "ASYNC"),
            ("aws.region", "us-west-2"),
            ("retry.backoff.millis", "250"),
            ("aws.lambda.batch.enabled", "false"),
            ("aws.lambda.invocation.failure.mode", "DROP"),
        ]))
        .unwrap();
        assert!(c.function.ends_with(":function:score"), "{}", c.function);
        assert_eq!(c.invocation, InvocationType::Async);
        assert_eq!(c.aws.region.as_deref(), Some("us-west-2"));
        assert_eq!(c.retry_backoff, Duration::from_millis(250));
        assert_eq!(c.batch.max_records, 1);
        assert_eq!(c.on_error, OnError::Log);
        // Confluent's behavior.on.error wins when both are given; STOP is fail.
        let both = |mode| {
            LambdaSinkConfig::from_props(&props(&[
                (FUNCTION, "score"),
                ("aws.lambda.invocation.failure.mode", mode),
                (ON_ERROR, "ignore"),
            ]))
            .unwrap()
            .on_error
        };
        assert_eq!(both("DROP"), OnError::Ignore);
        let stop = LambdaSinkConfig::from_props(&props(&[
            (FUNCTION, "score"),
            ("aws.lambda.invocation.failure.mode", "STOP"),
        ]))
        .unwrap();
        assert_eq!(stop.on_error, OnError::Fail);
        // The same setting under both names, with different values, is an error naming both.
        let Err(errors) = LambdaSinkConfig::from_props(&props(&[
            (FUNCTION, "score"),
            ("aws.lambda.function.arn", "other"),
        ])) else {
            panic!("two different functions accepted");
        };
        assert!(
            errors.to_string().contains("aws.lambda.function.arn"),
            "{errors}"
        );
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let Err(errors) = LambdaSinkConfig::from_props(&props(&[
            (FUNCTION, "no spaces allowed"),
            (INVOCATION_TYPE, "async"),
            (RESPONSE_TOPIC, "scores"),
            (BATCH_MAX_BYTES, "2000000"),
            ("aws.lambda.batch.size", "0"),
            ("behavior.on.error", "shrug"),
            ("aws.lambda.retry.backoff.ms", "500"),
            ("aws.lambda.retry.backoff.max.ms", "100"),
            ("aws.lambda.endpoint", "not a url"),
        ])) else {
            panic!("invalid config accepted");
        };
        let text = errors.to_string();
        for key in [
            FUNCTION,
            RESPONSE_TOPIC,
            BATCH_MAX_BYTES,
            "aws.lambda.batch.size",
            "behavior.on.error",
            "aws.lambda.retry.backoff.max.ms",
            "aws.lambda.endpoint",
        ] {
            assert!(text.contains(key), "{key} missing from {text}");
        }
    }

    #[test]
    fn function_names_arns_and_qualifiers() {
        for ok in [
            "score",
            "score:7",
            "score:$LATEST",
            "score:live",
            "123456789012:function:score",
            "arn:aws:lambda:us-east-1:123456789012:function:score",
        ] {
            assert_eq!(check_function(ok), Ok(()), "{ok}");
        }
        for bad in ["", "a b", "score:", "score:x y", &"f".repeat(65)] {
            assert!(check_function(bad).is_err(), "{bad}");
        }
    }
}
