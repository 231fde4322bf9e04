//! The runtime's own connector settings, common to every connector (Kafka Connect's
//! `ConnectorConfig` and `SinkConnectorConfig`): name, class, `tasks.max`, converters, transforms,
//! topics and error tolerance. They are validated together with the connector's own definition.

use sluice_connector_api::convert::{ConnectData, Converter, converter_for};
use sluice_connector_api::dead_letter::Stage;
use sluice_connector_api::{
    ConfigDef, ConfigErrors, ConfigKey, ConfigType, ConnectError, ConnectorType, Importance,
    Plugin, Props, Record, Validator,
    config::{split_list, with_prefix},
};
use sluice_transforms::TransformChain;
use std::time::Duration;

use crate::config::WorkerConfig;
use crate::task::errors::breaker::BreakerSettings;
use crate::task::errors::{DeadLetterSettings, ErrorPolicy, StageError};
use crate::task::overflow::{self, SinkOverflowSettings, SourceOverflowSettings};

/// Definition of the common keys for a connector of `kind`.
pub fn common_config_def(kind: ConnectorType) -> ConfigDef {
    let def = ConfigDef::new()
        .define(
            ConfigKey::new(
                "name",
                ConfigType::String,
                "Globally unique name of the connector.",
            )
            .importance(Importance::High)
            .group("Common")
            .validator(Validator::NonEmpty),
        )
        .define(
            ConfigKey::new(
                "connector.class",
                ConfigType::Class,
                "Class name or alias of the connector.",
            )
            .importance(Importance::High)
            .group("Common"),
        )
        .define(
            ConfigKey::new("tasks.max", ConfigType::Int, "Maximum number of tasks.")
                .default_value("1")
                .importance(Importance::High)
                .group("Common")
                .validator(Validator::at_least(1.0)),
        )
        .define(
            ConfigKey::new(
                "key.converter",
                ConfigType::Class,
                "Key converter; the worker's by default.",
            )
            .default_value("")
            .importance(Importance::Low)
            .group("Common"),
        )
        .define(
            ConfigKey::new(
                "value.converter",
                ConfigType::Class,
                "Value converter; the worker's by default.",
            )
            .default_value("")
            .importance(Importance::Low)
            .group("Common"),
        )
        .define(
            ConfigKey::new(
                "transforms",
                ConfigType::List,
                "Aliases of the transforms to apply, in order.",
            )
            .default_value("")
            .importance(Importance::Low)
            .group("Transforms"),
        )
        .define(
            ConfigKey::new(
                "predicates",
                ConfigType::List,
                "Aliases of the predicates transforms may use.",
            )
            .default_value("")
            .importance(Importance::Low)
            .group("Predicates"),
        )
        .define(
            ConfigKey::new(
                "errors.tolerance",
                ConfigType::String,
                "none: the first bad record fails the task. all: bad records are skipped, after \
                being written to the dead letter queue if one is set.",
            )
            .default_value("none")
            .importance(Importance::Medium)
            .group("Error Handling")
            .validator(Validator::OneOf(&["none", "all"])),
        )
        .define(
            ConfigKey::new(
                "errors.retry.timeout",
                ConfigType::Long,
                "How long, in ms, a stage that failed with a retriable error is retried; 0 for no \
                retries, -1 for ever.",
            )
            .default_value("0")
            .importance(Importance::Medium)
            .group("Error Handling")
            .validator(Validator::at_least(-1.0)),
        )
        .define(
            ConfigKey::new(
                "errors.retry.delay.max.ms",
                ConfigType::Long,
                "Longest wait, in ms, between two retries (exponential back-off with jitter).",
            )
            .default_value("60000")
            .importance(Importance::Medium)
            .group("Error Handling")
            .validator(Validator::at_least(1.0)),
        )
        .define(
            ConfigKey::new(
                "errors.log.enable",
                ConfigType::Boolean,
                "Log each failed record's error.",
            )
            .default_value("false")
            .importance(Importance::Medium)
            .group("Error Handling"),
        )
        .define(
            ConfigKey::new(
                "errors.log.include.messages",
                ConfigType::Boolean,
                "Include the record's topic, partition and offset in error logs.",
            )
            .default_value("false")
            .importance(Importance::Low)
            .group("Error Handling"),
        )
        .define(
            ConfigKey::new(
                "errors.deadletterqueue.topic.name",
                ConfigType::String,
                "Topic that receives failed records (with errors.tolerance=all), keeping their \
                key, value, headers and timestamp; empty for none. Sluice dead-letters on sources \
                too.",
            )
            .default_value("")
            .importance(Importance::Medium)
            .group("Error Handling"),
        )
        .define(
            ConfigKey::new(
                "errors.deadletterqueue.topic.replication.factor",
                ConfigType::Int,
                "Replication factor of the dead letter queue topic when it is created.",
            )
            .default_value("3")
            .importance(Importance::Medium)
            .group("Error Handling")
            .validator(Validator::at_least(-1.0)),
        )
        .define(
            ConfigKey::new(
                "errors.deadletterqueue.context.headers.enable",
                ConfigType::Boolean,
                "Add __connect.errors.* headers saying where and why each record failed.",
            )
            .default_value("false")
            .importance(Importance::Medium)
            .group("Error Handling"),
        )
        .define(
            ConfigKey::new(
                "errors.circuit.breaker.threshold",
                ConfigType::Double,
                "Share of failed records (0 to 1) within the window that fails the task, so that a \
                broken deploy does not pour everything into the dead letter queue; 0 turns the \
                breaker off.",
            )
            .default_value("0")
            .importance(Importance::Medium)
            .group("Error Handling")
            .validator(Validator::between(0.0, 1.0)),
        )
        .define(
            ConfigKey::new(
                "errors.circuit.breaker.window.records",
                ConfigType::Int,
                "How many of a task's most recent records the circuit breaker looks at.",
            )
            .default_value("1000")
            .importance(Importance::Low)
            .group("Error Handling")
            .validator(Validator::at_least(1.0)),
        );
    // Topics a connector writes to (a source's destinations, a sink's emitted records) are created
    // when missing, as KIP-158 does for sources.
    let def = def
        .define(
            ConfigKey::new(
                "topic.creation.default.partitions",
                ConfigType::Int,
                "Partitions of topics this connector creates when they do not exist; -1 for the \
                broker default.",
            )
            .default_value("-1")
            .importance(Importance::Low)
            .group("Topic Creation")
            .validator(Validator::at_least(-1.0)),
        )
        .define(
            ConfigKey::new(
                "topic.creation.default.replication.factor",
                ConfigType::Int,
                "Replication factor of topics this connector creates; -1 for the broker default.",
            )
            .default_value("-1")
            .importance(Importance::Low)
            .group("Topic Creation")
            .validator(Validator::at_least(-1.0)),
        );
    let def = overflow::define(def, kind);
    match kind {
        ConnectorType::Source => def,
        ConnectorType::Sink => def
            .define(
                ConfigKey::new(
                    "topics",
                    ConfigType::List,
                    "Topics to consume; set this or topics.regex.",
                )
                .default_value("")
                .importance(Importance::High)
                .group("Common"),
            )
            .define(
                ConfigKey::new(
                    "topics.regex",
                    ConfigType::String,
                    "Regular expression of topics to consume; set this or topics.",
                )
                .default_value("")
                .importance(Importance::High)
                .group("Common"),
            ),
    }
}

/// Settings every running connector's tasks need, resolved from the connector's properties.
pub struct RuntimeSettings {
    /// Key converter.
    pub key_converter: Box<dyn Converter>,
    /// Value converter.
    pub value_converter: Box<dyn Converter>,
    /// Transform chain.
    pub transforms: TransformChain,
    /// The connector's full class (not the alias the config may use), named in dead-letter headers of records its task reported.
    pub connector_class: String,
    /// Class of the key converter, named in dead-letter headers.
    pub key_converter_class: String,
    /// Class of the value converter.
    pub value_converter_class: String,
    /// What happens to records that fail.
    pub errors: ErrorPolicy,
    /// Sink only: topics to subscribe to, or a regex (starting with `^`).
    pub subscription: Vec<String>,
    /// (partitions, replication factor) of topics the connector writes to, created when absent;
    /// `None` when the worker has `topic.creation.enable=false`.
    pub topic_creation: Option<(i32, i32)>,
    /// Source only: where records go while Kafka cannot take them (`overflow.*`).
    pub source_overflow: Option<SourceOverflowSettings>,
    /// Sink only: where records failing with retriable errors go (`errors.overflow.*`).
    pub sink_overflow: Option<SinkOverflowSettings>,
}

/// The converter `key` names: the connector's own setting, else the plugin's default, else the
/// worker's.
fn converter(
    props: &Props,
    plugin: &Plugin,
    worker: &WorkerConfig,
    key: &str,
    errors: &mut ConfigErrors,
) -> Option<(String, Box<dyn Converter>)> {
    let own = props.get(key).filter(|c| !c.trim().is_empty());
    let (class, settings) = match (own, plugin.default_converter) {
        (Some(class), _) => (
            class.trim().to_owned(),
            with_prefix(props, &format!("{key}.")),
        ),
        (None, Some(class)) => (class.to_owned(), Props::new()),
        (None, None) => {
            let class = if key == "key.converter" {
                &worker.key_converter
            } else {
                &worker.value_converter
            };
            (
                class.clone(),
                with_prefix(&worker.originals, &format!("{key}.")),
            )
        }
    };
    converter_for(&class, &settings)
        .map(|c| (class, c))
        .map_err(|e| errors.push(key, e))
        .ok()
}

/// What a sink subscribes to: the topics listed in `topics`, or the `topics.regex` pattern (as
/// `^pattern`, librdkafka's mark of a regex). Exactly one must be set; `Err` names the key at fault.
fn sink_subscription(props: &Props) -> Result<Vec<String>, (&'static str, String)> {
    let topics = props
        .get("topics")
        .map(|t| split_list(t))
        .unwrap_or_default();
    let regex = props
        .get("topics.regex")
        .map(|r| r.trim())
        .filter(|r| !r.is_empty());
    match (topics.is_empty(), regex) {
        (true, None) => Err((
            "topics",
            "Must configure one of topics or topics.regex".into(),
        )),
        (false, Some(_)) => Err((
            "topics",
            "topics and topics.regex are mutually exclusive options, but both are set.".into(),
        )),
        (false, None) => Ok(topics),
        (true, Some(r)) => match regex::Regex::new(r) {
            Ok(_) if r.starts_with('^') => Ok(vec![r.to_owned()]),
            Ok(_) => Ok(vec![format!("^{r}")]),
            Err(e) => Err(("topics.regex", format!("Invalid regex {r}: {e}"))),
        },
    }
}

/// The error policy in `props`, whose values [`common_config_def`] has validated.
fn error_policy(props: &Props) -> ErrorPolicy {
    let get = |k: &str| props.get(k).map(|v| v.trim()).unwrap_or("");
    let flag = |k: &str| get(k).eq_ignore_ascii_case("true");
    let number = |k: &str, default: f64| get(k).parse::<f64>().unwrap_or(default);
    let retry_timeout = number("errors.retry.timeout", 0.0);
    let threshold = number("errors.circuit.breaker.threshold", 0.0);
    let dlq_topic = get("errors.deadletterqueue.topic.name");
    ErrorPolicy {
        tolerate_all: get("errors.tolerance").eq_ignore_ascii_case("all"),
        retry_timeout: (retry_timeout >= 0.0).then(|| Duration::from_millis(retry_timeout as u64)),
        retry_delay_max: Duration::from_millis(number("errors.retry.delay.max.ms", 60_000.0) as u64),
        log_errors: flag("errors.log.enable"),
        log_include_messages: flag("errors.log.include.messages"),
        dead_letter: (!dlq_topic.is_empty()).then(|| DeadLetterSettings {
            topic: dlq_topic.to_owned(),
            replication_factor: number("errors.deadletterqueue.topic.replication.factor", 3.0)
                as i32,
            context_headers: flag("errors.deadletterqueue.context.headers.enable"),
        }),
        breaker: (threshold > 0.0).then(|| BreakerSettings {
            threshold,
            window: number("errors.circuit.breaker.window.records", 1000.0) as usize,
        }),
    }
}

impl RuntimeSettings {
    /// Resolves the settings, reporting every error at once. Keys that `def` rejects are
    /// reported by [`common_config_def`] validation; this adds converter and transform errors.
    pub fn resolve(
        plugin: &Plugin,
        props: &Props,
        worker: &WorkerConfig,
    ) -> Result<Self, ConfigErrors> {
        let kind = plugin.kind;
        let (parsed, mut errors) = common_config_def(kind).parse_all(props);
        let key_converter = converter(props, plugin, worker, "key.converter", &mut errors);
        let value_converter = converter(props, plugin, worker, "value.converter", &mut errors);
        let transforms = TransformChain::from_config(props)
            .map_err(|e| errors.0.extend(e.0))
            .ok();
        let mut subscription = Vec::new();
        if kind == ConnectorType::Sink {
            match sink_subscription(props) {
                Ok(s) => subscription = s,
                Err((key, message)) => errors.push(key, message),
            }
        }
        let (source_overflow, sink_overflow) = match kind {
            ConnectorType::Source => (overflow::source_settings(&parsed, props, &mut errors), None),
            ConnectorType::Sink => (None, overflow::sink(props, &mut errors)),
        };
        let errors_policy = error_policy(props);
        if let Some(dlq) = &errors_policy.dead_letter
            && subscription.contains(&dlq.topic)
        {
            errors.push(
                    "errors.deadletterqueue.topic.name",
                    format!("The DLQ topic '{}' may not be included in the list of topics ('topics=...') consumed by this connector", dlq.topic),
                );
        }
        let int = |k: &str| {
            props
                .get(k)
                .and_then(|v| v.trim().parse::<i32>().ok())
                .unwrap_or(-1)
        };
        let topic_creation = worker.topic_creation_enable.then(|| {
            (
                int("topic.creation.default.partitions"),
                int("topic.creation.default.replication.factor"),
            )
        });
        match (key_converter, value_converter, transforms) {
            (
                Some((key_converter_class, key_converter)),
                Some((value_converter_class, value_converter)),
                Some(transforms),
            ) if errors.is_empty() => Ok(Self {
                key_converter,
                value_converter,
                transforms,
                connector_class: plugin.class.to_owned(),
                key_converter_class,
                value_converter_class,
                errors: errors_policy,
                subscription,
                topic_creation,
                source_overflow,
                sink_overflow,
            }),
            _ => Err(errors),
        }
    }
}

impl RuntimeSettings {
    /// The settings of one task: as in Kafka Connect, a sink task subscribes to what its task
    /// config names when it names anything (the DLQ router adds its retry tiers), else to the
    /// connector's topics.
    pub fn for_task(mut self, task_config: &Props) -> Self {
        if !self.subscription.is_empty()
            && let Ok(own) = sink_subscription(task_config)
        {
            self.subscription = own;
        }
        self
    }
}

/// Each step of a record's way between bytes and Connect data, as the sink and source loops run
/// it: a failure says which stage failed and which converter or transform class ran it.
impl RuntimeSettings {
    /// A key read from `topic` as Connect data.
    pub fn key_to_connect(
        &self,
        topic: &str,
        key: Option<&[u8]>,
    ) -> Result<ConnectData, StageError> {
        self.key_converter.to_connect(topic, key).map_err(|e| {
            stage_error(
                Stage::KeyConverter,
                &self.key_converter_class,
                "key conversion",
                e,
            )
        })
    }

    /// A value read from `topic` as Connect data.
    pub fn value_to_connect(
        &self,
        topic: &str,
        value: Option<&[u8]>,
    ) -> Result<ConnectData, StageError> {
        self.value_converter.to_connect(topic, value).map_err(|e| {
            stage_error(
                Stage::ValueConverter,
                &self.value_converter_class,
                "value conversion",
                e,
            )
        })
    }

    /// A record's key and value as the bytes written to its topic.
    pub fn to_bytes(&self, r: &Record) -> Result<KeyValueBytes, StageError> {
        let key = self
            .key_converter
            .to_bytes(&r.topic, r.key_schema.as_deref(), &r.key)
            .map_err(|e| {
                stage_error(
                    Stage::KeyConverter,
                    &self.key_converter_class,
                    "key conversion",
                    e,
                )
            })?;
        let value = self
            .value_converter
            .to_bytes(&r.topic, r.value_schema.as_deref(), &r.value)
            .map_err(|e| {
                stage_error(
                    Stage::ValueConverter,
                    &self.value_converter_class,
                    "value conversion",
                    e,
                )
            })?;
        Ok((key, value))
    }

    /// The record after the transform chain; `None` when a transform dropped it.
    /// Whether a sink task that decodes schemaless JSON itself
    /// ([`SinkTask::takes_json_values`](sluice_connector_api::SinkTask::takes_json_values)) can be
    /// handed value bytes: the value converter reads schemaless JSON and no transform needs the
    /// decoded value.
    pub fn json_values_pass_through(&self) -> bool {
        self.value_converter.is_schemaless_json() && self.transforms.is_empty()
    }

    pub fn transform(&self, record: Record) -> Result<Option<Record>, StageError> {
        self.transforms.apply(record).map_err(|e| {
            let context = format!("transform {}", e.alias);
            stage_error(Stage::Transformation, &e.class, &context, e.error)
        })
    }
}

/// A record's key and value bytes; `None` writes a null.
pub type KeyValueBytes = (Option<Vec<u8>>, Option<Vec<u8>>);

fn stage_error(stage: Stage, class: &str, context: &str, error: ConnectError) -> StageError {
    StageError {
        stage,
        class: class.to_owned(),
        error: error.context(context),
    }
}
