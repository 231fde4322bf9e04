//! The runtime's own connector settings, common to every connector (Kafka Connect's
//! `ConnectorConfig` and `SinkConnectorConfig`): name, class, `tasks.max`, converters, transforms,
//! topics and error tolerance. They are validated together with the connector's own definition.

use sluice_connector_api::convert::{Converter, converter_for};
use sluice_connector_api::{
    ConfigDef, ConfigErrors, ConfigKey, ConfigType, ConnectorType, Importance, Props, Validator,
    config::with_prefix,
};
use sluice_transforms::TransformChain;

use crate::config::WorkerConfig;

/// Definition of the common keys for a connector of `kind`.
pub fn common_config_def(kind: ConnectorType) -> ConfigDef {
    let def = ConfigDef::new()
        .define(ConfigKey::new("name", ConfigType::String, "Globally unique name of the connector.").importance(Importance::High).group("Common").validator(Validator::NonEmpty))
        .define(ConfigKey::new("connector.class", ConfigType::Class, "Class name or alias of the connector.").importance(Importance::High).group("Common"))
        .define(ConfigKey::new("tasks.max", ConfigType::Int, "Maximum number of tasks.").default_value("1").importance(Importance::High).group("Common").validator(Validator::at_least(1.0)))
        .define(ConfigKey::new("key.converter", ConfigType::Class, "Key converter; the worker's by default.").default_value("").importance(Importance::Low).group("Common"))
        .define(ConfigKey::new("value.converter", ConfigType::Class, "Value converter; the worker's by default.").default_value("").importance(Importance::Low).group("Common"))
        .define(ConfigKey::new("transforms", ConfigType::List, "Aliases of the transforms to apply, in order.").default_value("").importance(Importance::Low).group("Transforms"))
        .define(ConfigKey::new("predicates", ConfigType::List, "Aliases of the predicates transforms may use.").default_value("").importance(Importance::Low).group("Predicates"))
        .define(ConfigKey::new("errors.tolerance", ConfigType::String, "none: the first bad record fails the task. all: bad records are skipped (and logged if errors.log.enable).").default_value("none").importance(Importance::Medium).group("Error Handling").validator(Validator::OneOf(&["none", "all"])))
        .define(ConfigKey::new("errors.log.enable", ConfigType::Boolean, "Log each skipped record's error.").default_value("false").importance(Importance::Medium).group("Error Handling"))
        .define(ConfigKey::new("errors.log.include.messages", ConfigType::Boolean, "Include the record's topic, partition and offset in error logs.").default_value("false").importance(Importance::Low).group("Error Handling"));
    // Topics a connector writes to (a source's destinations, a sink's emitted records) are created
    // when missing, as KIP-158 does for sources.
    let def = def
        .define(ConfigKey::new("topic.creation.default.partitions", ConfigType::Int, "Partitions of topics this connector creates when they do not exist; -1 for the broker default.").default_value("-1").importance(Importance::Low).group("Topic Creation").validator(Validator::at_least(-1.0)))
        .define(ConfigKey::new("topic.creation.default.replication.factor", ConfigType::Int, "Replication factor of topics this connector creates; -1 for the broker default.").default_value("-1").importance(Importance::Low).group("Topic Creation").validator(Validator::at_least(-1.0)));
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
    /// Whether bad records are skipped (`errors.tolerance=all`).
    pub tolerate_errors: bool,
    /// Whether skipped records are logged.
    pub log_errors: bool,
    /// Whether logs of skipped records include their coordinates.
    pub log_include_messages: bool,
    /// Sink only: topics to subscribe to, or a regex (starting with `^`).
    pub subscription: Vec<String>,
    /// (partitions, replication factor) of topics the connector writes to, created when absent;
    /// `None` when the worker has `topic.creation.enable=false`.
    pub topic_creation: Option<(i32, i32)>,
}

fn converter(
    props: &Props,
    worker: &WorkerConfig,
    key: &str,
    errors: &mut ConfigErrors,
) -> Option<Box<dyn Converter>> {
    let (class, settings) = match props.get(key).filter(|c| !c.trim().is_empty()) {
        Some(class) => (
            class.trim().to_owned(),
            with_prefix(props, &format!("{key}.")),
        ),
        None => {
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
        .map_err(|e| errors.push(key, e))
        .ok()
}

impl RuntimeSettings {
    /// Resolves the settings, reporting every error at once. Keys that `def` rejects are
    /// reported by [`common_config_def`] validation; this adds converter and transform errors.
    pub fn resolve(
        kind: ConnectorType,
        props: &Props,
        worker: &WorkerConfig,
    ) -> Result<Self, ConfigErrors> {
        let mut errors = match common_config_def(kind).parse(props) {
            Ok(_) => ConfigErrors::default(),
            Err(e) => e,
        };
        let key_converter = converter(props, worker, "key.converter", &mut errors);
        let value_converter = converter(props, worker, "value.converter", &mut errors);
        let transforms = TransformChain::from_config(props)
            .map_err(|e| errors.0.extend(e.0))
            .ok();
        let mut subscription = Vec::new();
        if kind == ConnectorType::Sink {
            let topics: Vec<String> = props
                .get("topics")
                .map(|t| {
                    t.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            let regex = props
                .get("topics.regex")
                .map(|r| r.trim())
                .filter(|r| !r.is_empty());
            match (topics.is_empty(), regex) {
                (true, None) => {
                    errors.push("topics", "Must configure one of topics or topics.regex")
                }
                (false, Some(_)) => errors.push(
                    "topics",
                    "topics and topics.regex are mutually exclusive options, but both are set.",
                ),
                (false, None) => subscription = topics,
                (true, Some(r)) => match regex::Regex::new(r) {
                    Ok(_) => {
                        subscription = vec![if r.starts_with('^') {
                            r.to_owned()
                        } else {
                            format!("^{r}")
                        }]
                    }
                    Err(e) => errors.push("topics.regex", format!("Invalid regex {r}: {e}")),
                },
            }
        }
        let flag = |k: &str| {
            props
                .get(k)
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        };
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
            (Some(key_converter), Some(value_converter), Some(transforms)) if errors.is_empty() => {
                Ok(Self {
                    key_converter,
                    value_converter,
                    transforms,
                    tolerate_errors: props
                        .get("errors.tolerance")
                        .is_some_and(|v| v.trim().eq_ignore_ascii_case("all")),
                    log_errors: flag("errors.log.enable"),
                    log_include_messages: flag("errors.log.include.messages"),
                    subscription,
                    topic_creation,
                })
            }
            _ => Err(errors),
        }
    }
}
