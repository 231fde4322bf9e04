//! Routing rules: which dead letters are retried, parked or discarded.
//!
//! A rule matches on what the dead letter's `__connect.errors.*` headers say (the stage that
//! failed, the exception class, the message, the original topic) and on how often the record has
//! already been sent back (`__sluice.retry.attempts`). Every condition a rule sets must hold; a
//! condition it leaves out matches anything. Rules are tried in order and the first match decides;
//! a record no rule matches gets the router's `default.action`.

use regex::Regex;
use sluice_connector_api::config::split_list;
use sluice_connector_api::dead_letter::{self, Stage};
use sluice_connector_api::{ConfigErrors, Headers, Props};

/// Where a rule sends a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Into the next retry tier, and from there back to the original topic once due; to the
    /// parking lot once `retry.max.attempts` is reached.
    Retry,
    /// To the parking lot, where it stays until an operator redrives it.
    Park,
    /// Nowhere: dropped and counted. Only a rule can say this.
    Discard,
}

/// What a dead letter's headers say about it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts<'a> {
    /// The stage that failed (`__connect.errors.stage`).
    pub stage: &'a str,
    /// The exception class (`__connect.errors.exception.class.name`).
    pub exception_class: &'a str,
    /// The error message (`__connect.errors.exception.message`).
    pub message: &'a str,
    /// The topic the record failed on (`__connect.errors.topic`), if known.
    pub topic: Option<&'a str>,
    /// Sends back to the original topic so far (`__sluice.retry.attempts`).
    pub attempts: u32,
}

impl<'a> Facts<'a> {
    /// Reads the facts from a dead letter's headers; absent headers read as empty.
    pub fn of(headers: &'a Headers) -> Self {
        let text = |k| headers.last_str(k).unwrap_or("");
        Facts {
            stage: text(dead_letter::STAGE),
            exception_class: text(dead_letter::EXCEPTION_CLASS_NAME),
            message: text(dead_letter::EXCEPTION_MESSAGE),
            topic: headers
                .last_str(dead_letter::TOPIC)
                .filter(|t| !t.is_empty()),
            attempts: dead_letter::attempts(headers),
        }
    }
}

/// One routing rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Its name in `rules`, used in counters and in the `__sluice.router.rule` header.
    pub name: String,
    /// Where matching records go.
    pub action: Action,
    /// Stages matched (any of them); empty matches every stage.
    pub stages: Vec<String>,
    /// Exception classes matched, by full or simple name (any of them); empty matches every class.
    pub exception_classes: Vec<String>,
    /// Searched for in the error message.
    pub message: Option<Regex>,
    /// Must match the whole original topic name.
    pub topic: Option<Regex>,
    /// Fewest attempts so far that match.
    pub attempts_min: Option<u32>,
    /// Most attempts so far that match.
    pub attempts_max: Option<u32>,
}

impl Rule {
    /// Reads rule `name` from its `rules.<name>.*` keys, reporting every error at once.
    pub fn from_props(name: &str, props: &Props, stages: &[Stage]) -> Result<Self, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let key = |k: &str| format!("rules.{name}.{k}");
        let get = |k: &str| {
            props
                .get(&key(k))
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
        };
        let list = |k: &str| get(k).map(split_list).unwrap_or_default();
        let action = match get("action") {
            Some("retry") => Action::Retry,
            Some("park") => Action::Park,
            Some("discard") => Action::Discard,
            Some(other) => {
                errors.push(
                    key("action"),
                    format!("Invalid value {other} for configuration {}: must be one of retry, park, discard", key("action")),
                );
                Action::Park
            }
            None => {
                errors.push(
                    key("action"),
                    format!(
                        "Missing required configuration \"{}\": retry, park or discard",
                        key("action")
                    ),
                );
                Action::Park
            }
        };
        let known: Vec<&str> = stages.iter().map(|s| s.as_str()).collect();
        let stage_list: Vec<String> = list("stage")
            .into_iter()
            .map(|s| s.to_ascii_uppercase())
            .collect();
        for s in stage_list.iter().filter(|s| !known.contains(&s.as_str())) {
            errors.push(
                key("stage"),
                format!("Unknown stage {s}; stages are {}", known.join(", ")),
            );
        }
        let mut regex = |k: &str, whole: bool| {
            let pattern = get(k)?;
            let anchored = if whole {
                format!("^(?:{pattern})$")
            } else {
                pattern.to_owned()
            };
            Regex::new(&anchored)
                .map_err(|e| errors.push(key(k), format!("Invalid regex {pattern}: {e}")))
                .ok()
        };
        let message = regex("message.pattern", false);
        let topic = regex("topic.pattern", true);
        let mut number = |k: &str| {
            let v = get(k)?;
            v.parse::<u32>()
                .map_err(|_| {
                    errors.push(
                        key(k),
                        format!("Invalid value {v} for configuration {}: expected a count of attempts (0 or more)", key(k)),
                    )
                })
                .ok()
        };
        let attempts_min = number("attempts.min");
        let attempts_max = number("attempts.max");
        errors.into_result(Rule {
            name: name.to_owned(),
            action,
            stages: stage_list,
            exception_classes: list("exception.class"),
            message,
            topic,
            attempts_min,
            attempts_max,
        })
    }

    /// Whether every condition of the rule holds for `facts`.
    pub fn matches(&self, facts: &Facts<'_>) -> bool {
        let class_matches = |wanted: &String| {
            let simple = facts
                .exception_class
                .rsplit('.')
                .next()
                .unwrap_or(facts.exception_class);
            wanted.eq_ignore_ascii_case(facts.exception_class)
                || wanted.eq_ignore_ascii_case(simple)
        };
        (self.stages.is_empty() || self.stages.iter().any(|s| s == facts.stage))
            && (self.exception_classes.is_empty()
                || self.exception_classes.iter().any(class_matches))
            && self
                .message
                .as_ref()
                .is_none_or(|m| m.is_match(facts.message))
            && self
                .topic
                .as_ref()
                .is_none_or(|t| facts.topic.is_some_and(|topic| t.is_match(topic)))
            && self.attempts_min.is_none_or(|min| facts.attempts >= min)
            && self.attempts_max.is_none_or(|max| facts.attempts <= max)
    }
}

/// The first rule of `rules` that matches: its name and action, or `("default", default)`.
pub fn route<'r>(rules: &'r [Rule], default: Action, facts: &Facts<'_>) -> (&'r str, Action) {
    rules
        .iter()
        .find(|r| r.matches(facts))
        .map_or(("default", default), |r| (r.name.as_str(), r.action))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pairs: &[(&str, &str)]) -> Rule {
        let props: Props = pairs
            .iter()
            .map(|(k, v)| (format!("rules.r.{k}"), v.to_string()))
            .collect();
        Rule::from_props("r", &props, &[Stage::TaskPut, Stage::ValueConverter]).unwrap()
    }

    fn facts() -> Facts<'static> {
        Facts {
            stage: "TASK_PUT",
            exception_class: "org.apache.kafka.connect.errors.RetriableException",
            message: "S3 answered 503 SlowDown",
            topic: Some("orders"),
            attempts: 1,
        }
    }

    #[test]
    fn every_condition_must_hold() {
        let r = rule(&[
            ("action", "retry"),
            ("stage", "task_put"),
            ("exception.class", "RetriableException"),
            ("message.pattern", "50[0-9]"),
            ("topic.pattern", "orders|payments"),
            ("attempts.max", "2"),
        ]);
        assert!(r.matches(&facts()));
        for changed in [
            Facts {
                stage: "VALUE_CONVERTER",
                ..facts()
            },
            Facts {
                exception_class: "org.apache.kafka.connect.errors.DataException",
                ..facts()
            },
            Facts {
                message: "denied",
                ..facts()
            },
            Facts {
                topic: Some("orders-eu"),
                ..facts()
            },
            Facts {
                topic: None,
                ..facts()
            },
            Facts {
                attempts: 3,
                ..facts()
            },
        ] {
            assert!(!r.matches(&changed), "{changed:?}");
        }
    }

    #[test]
    fn first_match_decides_and_default_covers_the_rest() {
        let rules = vec![
            Rule {
                name: "drop-tests".into(),
                ..rule(&[("action", "discard"), ("topic.pattern", "test-.*")])
            },
            Rule {
                name: "transient".into(),
                ..rule(&[
                    ("action", "retry"),
                    ("exception.class", "RetriableException"),
                ])
            },
        ];
        assert_eq!(
            route(&rules, Action::Park, &facts()),
            ("transient", Action::Retry)
        );
        let test_topic = Facts {
            topic: Some("test-1"),
            ..facts()
        };
        assert_eq!(
            route(&rules, Action::Park, &test_topic),
            ("drop-tests", Action::Discard)
        );
        let data = Facts {
            exception_class: "org.apache.kafka.connect.errors.DataException",
            ..facts()
        };
        assert_eq!(
            route(&rules, Action::Park, &data),
            ("default", Action::Park)
        );
    }
}
