//! Predicates that decide whether a transform applies: TopicNameMatches, HasHeaderKey,
//! RecordIsTombstone.

use regex::Regex;
use sluice_connector_api::{Props, Record};

/// A condition on a record.
pub trait Predicate: Send + Sync {
    /// Whether the record matches.
    fn test(&self, record: &Record) -> bool;
}

pub(crate) const CLASSES: &[&str] = &["TopicNameMatches", "HasHeaderKey", "RecordIsTombstone"];

const PACKAGE: &str = "org.apache.kafka.connect.transforms.predicates.";

struct TopicNameMatches(Regex);
struct HasHeaderKey(String);
struct RecordIsTombstone;

impl Predicate for TopicNameMatches {
    fn test(&self, record: &Record) -> bool {
        self.0.is_match(&record.topic)
    }
}

impl Predicate for HasHeaderKey {
    fn test(&self, record: &Record) -> bool {
        record.headers.contains(&self.0)
    }
}

impl Predicate for RecordIsTombstone {
    fn test(&self, record: &Record) -> bool {
        record.is_tombstone()
    }
}

pub(crate) fn build(
    class: &str,
    props: &Props,
) -> Result<Box<dyn Predicate>, Vec<(String, String)>> {
    let simple = class.trim().strip_prefix(PACKAGE).unwrap_or(class.trim());
    let missing = |k: &str| {
        vec![(
            k.to_owned(),
            format!("Missing required configuration \"{k}\" which has no default value."),
        )]
    };
    match simple {
        "TopicNameMatches" => {
            let pattern = props
                .get("pattern")
                .filter(|p| !p.is_empty())
                .ok_or_else(|| missing("pattern"))?;
            Regex::new(&format!("^(?:{pattern})$"))
                .map(|r| Box::new(TopicNameMatches(r)) as Box<dyn Predicate>)
                .map_err(|e| {
                    vec![(
                        "pattern".to_owned(),
                        format!("Invalid regex {pattern}: {e}"),
                    )]
                })
        }
        "HasHeaderKey" => {
            let name = props
                .get("name")
                .filter(|p| !p.is_empty())
                .ok_or_else(|| missing("name"))?;
            Ok(Box::new(HasHeaderKey(name.clone())))
        }
        "RecordIsTombstone" => Ok(Box::new(RecordIsTombstone)),
        _ => Err(vec![(
            "type".to_owned(),
            format!(
                "Unknown predicate class {class}; available: {PACKAGE}TopicNameMatches, {PACKAGE}HasHeaderKey, {PACKAGE}RecordIsTombstone"
            ),
        )]),
    }
}
