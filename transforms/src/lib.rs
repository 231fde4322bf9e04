//! Single message transforms (SMTs) and predicates, configured exactly like Kafka Connect's:
//!
//! ```text
//! transforms=addSource,route
//! transforms.addSource.type=org.apache.kafka.connect.transforms.InsertField$Value
//! transforms.addSource.static.field=source
//! transforms.addSource.static.value=sluice
//! transforms.route.type=RegexRouter
//! transforms.route.regex=(.*)
//! transforms.route.replacement=copy-$1
//! transforms.route.predicate=isOrders
//! predicates=isOrders
//! predicates.isOrders.type=TopicNameMatches
//! predicates.isOrders.pattern=orders.*
//! ```
//!
//! Transforms run in order; a transform that returns `None` drops the record (Filter), and later
//! transforms do not see it. A transform whose predicate does not match (after `negate`) passes the
//! record on unchanged. Records with a schema get a schema that matches the transformed value.
//!
//! Class names are Kafka Connect's (`org.apache.kafka.connect.transforms.Cast$Value`); the simple
//! name (`Cast$Value`) is accepted too. Debezium's `io.debezium.transforms.ExtractNewRecordState`
//! flattens change events of the PostgreSQL CDC source.

mod cast;
mod debezium;
mod fields;
mod predicates;
mod router;
mod util;

use std::sync::Arc;

use sluice_connector_api::config::with_prefix;
use sluice_connector_api::{ConfigErrors, ConnectError, Props, Record};

pub use predicates::Predicate;

/// A record transformation.
pub trait Transform: Send + Sync {
    /// Transforms a record; `Ok(None)` drops it.
    fn apply(&self, record: Record) -> Result<Option<Record>, ConnectError>;
}

/// Which half of a record a `$Key` / `$Value` transform works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Key,
    Value,
}

const PACKAGE: &str = "org.apache.kafka.connect.transforms.";

/// Debezium's transforms, by class name (the simple name is accepted too).
const DEBEZIUM: &[(&str, Factory)] = &[(
    "io.debezium.transforms.ExtractNewRecordState",
    debezium::extract_new_record_state,
)];

type Factory = fn(Option<Target>, &Props) -> Result<Box<dyn Transform>, Vec<(String, String)>>;

/// (simple name, has $Key/$Value variants, factory)
const TRANSFORMS: &[(&str, bool, Factory)] = &[
    ("InsertField", true, fields::insert_field),
    ("ReplaceField", true, fields::replace_field),
    ("MaskField", true, fields::mask_field),
    ("ValueToKey", false, fields::value_to_key),
    ("ExtractField", true, fields::extract_field),
    ("HoistField", true, fields::hoist_field),
    ("Cast", true, cast::cast),
    ("RegexRouter", false, router::regex_router),
    ("TimestampRouter", false, router::timestamp_router),
    ("Filter", false, |_, _| Ok(Box::new(Filter))),
];

/// The transform class names this crate provides.
pub fn transform_classes() -> Vec<String> {
    TRANSFORMS
        .iter()
        .flat_map(|(name, variants, _)| {
            if *variants {
                vec![
                    format!("{PACKAGE}{name}$Key"),
                    format!("{PACKAGE}{name}$Value"),
                ]
            } else {
                vec![format!("{PACKAGE}{name}")]
            }
        })
        .chain(DEBEZIUM.iter().map(|(class, _)| (*class).to_owned()))
        .collect()
}

/// The predicate class names this crate provides.
pub fn predicate_classes() -> Vec<String> {
    predicates::CLASSES
        .iter()
        .map(|c| format!("org.apache.kafka.connect.transforms.predicates.{c}"))
        .collect()
}

fn find_transform(class: &str) -> Option<(Option<Target>, Factory)> {
    let class = class.trim();
    if let Some((_, factory)) = DEBEZIUM
        .iter()
        .find(|(c, _)| *c == class || c.rsplit('.').next() == Some(class))
    {
        return Some((None, *factory));
    }
    let simple = class.strip_prefix(PACKAGE).unwrap_or(class);
    let (name, target) = match simple.split_once('$') {
        Some((name, "Key")) => (name, Some(Target::Key)),
        Some((name, "Value")) => (name, Some(Target::Value)),
        Some(_) => return None,
        None => (simple, None),
    };
    TRANSFORMS
        .iter()
        .find(|(n, variants, _)| *n == name && *variants == target.is_some())
        .map(|(_, _, factory)| (target, *factory))
}

struct Filter;

impl Transform for Filter {
    fn apply(&self, _record: Record) -> Result<Option<Record>, ConnectError> {
        Ok(None)
    }
}

struct Step {
    alias: String,
    class: String,
    transform: Box<dyn Transform>,
    predicate: Option<(Arc<dyn Predicate>, bool)>,
}

/// A transform failed on a record.
#[derive(Debug)]
pub struct TransformError {
    /// The transform's alias in `transforms`.
    pub alias: String,
    /// The transform's class as configured.
    pub class: String,
    /// The failure.
    pub error: ConnectError,
}

impl std::fmt::Display for TransformError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "transform {} failed: {}", self.alias, self.error)
    }
}

impl std::error::Error for TransformError {}

/// The configured chain of a connector.
#[derive(Default)]
pub struct TransformChain {
    steps: Vec<Step>,
}

impl TransformChain {
    /// Builds the chain from a connector's properties, reporting every error at once.
    pub fn from_config(props: &Props) -> Result<Self, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let mut predicates = std::collections::BTreeMap::new();
        for alias in util::list(props, "predicates") {
            let prefix = format!("predicates.{alias}.");
            let sub = with_prefix(props, &prefix);
            let type_key = format!("{prefix}type");
            match sub.get("type") {
                None => errors.push(type_key, "Missing required configuration: predicate type"),
                Some(class) => match predicates::build(class, &sub) {
                    Ok(p) => {
                        predicates.insert(alias.clone(), Arc::<dyn Predicate>::from(p));
                    }
                    Err(errs) => {
                        for (k, m) in errs {
                            errors.push(
                                if k == "type" {
                                    type_key.clone()
                                } else {
                                    format!("{prefix}{k}")
                                },
                                m,
                            );
                        }
                    }
                },
            }
        }
        let mut steps = Vec::new();
        for alias in util::list(props, "transforms") {
            let prefix = format!("transforms.{alias}.");
            let sub = with_prefix(props, &prefix);
            let type_key = format!("{prefix}type");
            let Some(class) = sub.get("type") else {
                errors.push(type_key, "Missing required configuration: transform type");
                continue;
            };
            let Some((target, factory)) = find_transform(class) else {
                errors.push(
                    type_key,
                    format!(
                        "Unknown transform class {class}; available: {}",
                        transform_classes().join(", ")
                    ),
                );
                continue;
            };
            let predicate = match sub.get("predicate").map(|p| p.trim()) {
                None | Some("") => None,
                Some(p) => match predicates.get(p) {
                    Some(pred) => {
                        let negate = sub
                            .get("negate")
                            .is_some_and(|n| n.trim().eq_ignore_ascii_case("true"));
                        Some((Arc::clone(pred), negate))
                    }
                    None => {
                        errors.push(
                            format!("{prefix}predicate"),
                            format!("Unknown predicate {p}: it must be listed in 'predicates'"),
                        );
                        None
                    }
                },
            };
            match factory(target, &sub) {
                Ok(transform) => steps.push(Step {
                    alias,
                    class: class.trim().to_owned(),
                    transform,
                    predicate,
                }),
                Err(errs) => {
                    for (k, m) in errs {
                        errors.push(format!("{prefix}{k}"), m);
                    }
                }
            }
        }
        errors.into_result(Self { steps })
    }

    /// Whether there are no transforms.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Runs the chain; `Ok(None)` means a transform dropped the record.
    pub fn apply(&self, mut record: Record) -> Result<Option<Record>, TransformError> {
        for step in &self.steps {
            if let Some((predicate, negate)) = &step.predicate
                && predicate.test(&record) == *negate
            {
                continue;
            }
            match step.transform.apply(record) {
                Ok(Some(r)) => record = r,
                Ok(None) => return Ok(None),
                Err(error) => {
                    return Err(TransformError {
                        alias: step.alias.clone(),
                        class: step.class.clone(),
                        error,
                    });
                }
            }
        }
        Ok(Some(record))
    }
}

#[cfg(test)]
mod tests;
