//! The DLQ router's typed settings.
//!
//! Rules are declared the way Kafka Connect declares transforms: `rules=transient,bad-data` names
//! them in order, and each is configured under `rules.<name>.` (`action`, then any of `stage`,
//! `exception.class`, `message.pattern`, `topic.pattern`, `attempts.min`, `attempts.max`).
//! [`RouterConfig::from_props`] checks every key, every rule and the rules that span keys (a
//! parking lot that the router would read back, a retry rule without tiers, a converter that
//! would change the bytes) and reports all errors at once.

use std::time::Duration;

use regex::Regex;
use sluice_connector_api::config::split_list;
use sluice_connector_api::convert::BYTE_ARRAY_CONVERTER;
use sluice_connector_api::dead_letter::Stage;
use sluice_connector_api::{
    ConfigDef, ConfigErrors, ConfigKey, ConfigType, ConnectorConfig, Importance, ParsedConfig,
    Validator,
};

use super::rules::{Action, Rule};

/// One retry tier: records wait `delay` in topic `<original topic>.retry.<label>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    /// The delay as written in `retry.tiers` (`30s`, `1m`, `10m`): the topic suffix.
    pub label: String,
    /// How long a record waits in this tier.
    pub delay: Duration,
}

/// Typed router settings.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// The dead-letter topics routed (`topics`), when listed by name.
    pub dead_letter_topics: Vec<String>,
    /// The dead-letter topics routed (`topics.regex`), when given by pattern.
    pub dead_letter_regex: Option<String>,
    /// Where records go that the router gives up on.
    pub parking_lot: String,
    /// Retry tiers in order: attempt `n` (from 0) waits in tier `n`, the last tier repeating.
    pub tiers: Vec<Tier>,
    /// Sends back to the original topic before a retried record is parked instead.
    pub max_attempts: u32,
    /// Rules in order; the first that matches decides.
    pub rules: Vec<Rule>,
    /// What happens to a record no rule matches (never discard: dropping is explicit).
    pub default_action: Action,
}

/// `retry.tiers` when unset.
const DEFAULT_TIERS: &str = "1m,10m";
/// `retry.max.attempts` when unset.
const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// The stage names a rule may match.
const STAGES: &[Stage] = &[
    Stage::TaskPoll,
    Stage::KeyConverter,
    Stage::ValueConverter,
    Stage::HeaderConverter,
    Stage::Transformation,
    Stage::KafkaProduce,
    Stage::KafkaConsume,
    Stage::TaskPut,
];

/// The keys a rule may have, after `rules.<name>.`.
const RULE_KEYS: &[&str] = &[
    "action",
    "stage",
    "exception.class",
    "message.pattern",
    "topic.pattern",
    "attempts.min",
    "attempts.max",
];

/// The topic of retry tier `label` for records of `topic`.
pub fn tier_topic(topic: &str, label: &str) -> String {
    format!("{topic}.retry.{label}")
}

/// A delay such as `500ms`, `30s`, `1m`, `2h` or `1d` (a bare number is milliseconds).
fn parse_delay(text: &str) -> Result<Duration, String> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text} is not a delay such as 30s, 1m, 10m or 1h"))?;
    let ms = match unit {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{text}: the unit must be ms, s, m, h or d")),
    };
    if n == 0 {
        return Err(format!("{text}: a retry delay must be more than zero"));
    }
    Ok(Duration::from_millis(n.saturating_mul(ms)))
}

fn key(name: &'static str, kind: ConfigType, doc: &'static str) -> ConfigKey {
    ConfigKey::new(name, kind, doc).group("Routing")
}

impl ConnectorConfig for RouterConfig {
    /// The config definition (the per-rule keys are named by `rules`, so they are checked by
    /// [`RouterConfig::build`]).
    fn def() -> ConfigDef {
        ConfigDef::new()
            .define(
                key(
                    "parking.lot.topic.name",
                    ConfigType::String,
                    "Topic for records the router gives up on: retries exhausted, a rule with \
                    action=park, or no original topic to send back to. Redrive it with POST \
                    /dead-letters/{topic}/redrive once the cause is fixed.",
                )
                .validator(Validator::NonEmpty)
                .importance(Importance::High),
            )
            .define(
                key(
                    "retry.tiers",
                    ConfigType::List,
                    "Retry delays in order, such as 1m,10m (units ms, s, m, h, d). The nth retry \
                    of a record waits in the nth tier (the last one repeats), in topic <original \
                    topic>.retry.<delay>, and is then sent back to its original topic.",
                )
                .default_value(DEFAULT_TIERS)
                .importance(Importance::High),
            )
            .define(
                key(
                    "retry.max.attempts",
                    ConfigType::Int,
                    "How many times a record may be sent back to its original topic (counted in \
                    its __sluice.retry.attempts header) before a retry rule parks it instead.",
                )
                .default_value(DEFAULT_MAX_ATTEMPTS.to_string())
                .validator(Validator::between(1.0, 1000.0))
                .importance(Importance::High),
            )
            .define(
                key(
                    "rules",
                    ConfigType::List,
                    "Routing rules, tried in order; the first that matches a record decides. Each \
                    is configured under rules.<name>.: action (retry, park or discard), and \
                    optionally stage, exception.class, message.pattern, topic.pattern, \
                    attempts.min, attempts.max, all of which must match.",
                )
                .default_value("")
                .importance(Importance::High),
            )
            .define(
                key(
                    "default.action",
                    ConfigType::String,
                    "What happens to a record no rule matches: park or retry. Discarding is only \
                    ever done by a rule that says so.",
                )
                .default_value("park")
                .validator(Validator::OneOf(&["park", "retry"]))
                .importance(Importance::Medium),
            )
    }

    fn build(p: &ParsedConfig, errors: &mut ConfigErrors) -> Self {
        let props = p.originals();
        let get = |k: &str| props.get(k).map(|v| v.trim()).unwrap_or("");
        let list = |k: &str| props.get(k).map(|v| split_list(v)).unwrap_or_default();
        let parking_lot = p.string("parking.lot.topic.name").trim().to_owned();
        let mut tiers = Vec::new();
        for label in p.list("retry.tiers") {
            if tiers.iter().any(|t: &Tier| t.label == label) {
                errors.push("retry.tiers", format!("{label} is listed twice"));
                continue;
            }
            match parse_delay(&label) {
                Ok(delay) => tiers.push(Tier { label, delay }),
                Err(e) => errors.push("retry.tiers", e),
            }
        }
        let max_attempts = p.int("retry.max.attempts").max(1) as u32;
        let default_action = match p.string("default.action").as_str() {
            "retry" => Action::Retry,
            _ => Action::Park,
        };
        let names = p.list("rules");
        let mut rules = Vec::new();
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                errors.push("rules", format!("rule {name} is listed twice"));
                continue;
            }
            match Rule::from_props(name, props, STAGES) {
                Ok(rule) => rules.push(rule),
                Err(e) => errors.0.extend(e.0),
            }
        }
        // A key under `rules.` that no listed rule owns is a typo that would silently not apply.
        for k in props.keys().filter(|k| k.starts_with("rules.")) {
            let owned = names.iter().any(|n| {
                k.strip_prefix(&format!("rules.{n}."))
                    .is_some_and(|rest| RULE_KEYS.contains(&rest))
            });
            if !owned {
                errors.push(
                    k.clone(),
                    format!(
                        "{k} belongs to no rule: list the rule in rules, and use one of {}",
                        RULE_KEYS.join(", ")
                    ),
                );
            }
        }
        let retries =
            default_action == Action::Retry || rules.iter().any(|r| r.action == Action::Retry);
        if retries && tiers.is_empty() {
            errors.push(
                "retry.tiers",
                "A rule retries, so at least one retry tier is needed",
            );
        }
        let dead_letter_topics = list("topics");
        let dead_letter_regex = Some(get("topics.regex"))
            .filter(|r| !r.is_empty())
            .map(str::to_owned);
        check_inputs(
            &dead_letter_topics,
            dead_letter_regex.as_deref(),
            &parking_lot,
            &tiers,
            errors,
        );
        for k in ["key.converter", "value.converter"] {
            if let Some(class) = props.get(k).map(|c| c.trim()).filter(|c| !c.is_empty())
                && !matches!(class, BYTE_ARRAY_CONVERTER | "ByteArrayConverter" | "bytes")
            {
                errors.push(k, format!("The DLQ router passes records on byte for byte: leave {k} unset or set it to {BYTE_ARRAY_CONVERTER}"));
            }
        }
        if props
            .get("transforms")
            .is_some_and(|t| !t.trim().is_empty())
        {
            errors.push(
                "transforms",
                "The DLQ router passes records on byte for byte: it takes no transforms",
            );
        }
        Self {
            dead_letter_topics,
            dead_letter_regex,
            parking_lot,
            tiers,
            max_attempts,
            rules,
            default_action,
        }
    }
}

impl RouterConfig {
    /// The tier a record waits in before its attempt number `attempts` (from 0).
    pub fn tier(&self, attempts: u32) -> Option<&Tier> {
        self.tiers
            .get(attempts as usize)
            .or_else(|| self.tiers.last())
    }

    /// The tier whose topics end like `topic` (`<original>.retry.<label>`), with the original
    /// topic's name.
    pub fn tier_of<'t>(&self, topic: &'t str) -> Option<(&Tier, &'t str)> {
        self.tiers.iter().find_map(|t| {
            topic
                .strip_suffix(t.label.as_str())
                .and_then(|rest| rest.strip_suffix(".retry."))
                .filter(|original| !original.is_empty())
                .map(|original| (t, original))
        })
    }

    /// What the router's tasks subscribe to: the dead-letter topics and every retry tier topic,
    /// as one pattern (Kafka topic names use only letters, digits, `.`, `_` and `-`, so escaping
    /// `.` is enough for librdkafka's regex dialect).
    pub fn subscription(&self) -> String {
        let inputs = match &self.dead_letter_regex {
            Some(r) => r.trim_start_matches('^').trim_end_matches('$').to_owned(),
            None => self
                .dead_letter_topics
                .iter()
                .map(|t| t.replace('.', "\\."))
                .collect::<Vec<_>>()
                .join("|"),
        };
        let labels: Vec<_> = self.tiers.iter().map(|t| t.label.as_str()).collect();
        if labels.is_empty() {
            format!("^({inputs})$")
        } else {
            format!("^(({inputs})|.+\\.retry\\.({}))$", labels.join("|"))
        }
    }
}

/// The router must never read its own output as input: the parking lot and the tier topics may
/// not be dead-letter topics it routes.
fn check_inputs(
    topics: &[String],
    regex: Option<&str>,
    parking_lot: &str,
    tiers: &[Tier],
    errors: &mut ConfigErrors,
) {
    if topics.iter().any(|t| t == parking_lot) {
        errors.push(
            "parking.lot.topic.name",
            format!("The parking lot {parking_lot} may not be one of the topics the router reads"),
        );
    }
    if let Some(r) = regex {
        match Regex::new(&format!("^(?:{})$", r.trim_start_matches('^').trim_end_matches('$'))) {
            Ok(re) if !parking_lot.is_empty() && re.is_match(parking_lot) => errors.push(
                "parking.lot.topic.name",
                format!("The parking lot {parking_lot} matches topics.regex: the router would read it back"),
            ),
            Ok(_) => {}
            Err(e) => errors.push("topics.regex", format!("Invalid regex {r}: {e}")),
        }
    }
    let tier_named = |t: &str| {
        tiers
            .iter()
            .find(|tier| t.ends_with(&format!(".retry.{}", tier.label)))
            .map(|tier| tier.label.clone())
    };
    if let Some(label) = tier_named(parking_lot) {
        errors.push(
            "parking.lot.topic.name",
            format!("{parking_lot} is named like a retry tier topic (.retry.{label}): the router would read it back"),
        );
    }
    for t in topics {
        if let Some(label) = tier_named(t) {
            errors.push(
                "topics",
                format!("{t} is named like a retry tier topic (.retry.{label}): the router would take its records for its own retries"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_connector_api::testing::props;

    #[test]
    fn every_error_is_reported_at_once() {
        let errors = RouterConfig::from_props(&props(&[
            ("topics", "dlq,orders.retry.1m"),
            ("parking.lot.topic.name", "dlq"),
            ("retry.tiers", "1m,soon"),
            ("rules", "a,b"),
            ("rules.a.action", "explode"),
            ("rules.b.action", "retry"),
            ("rules.b.stage", "NOWHERE"),
            ("rules.b.message.pattern", "(unclosed"),
            ("rules.c.action", "park"),
            (
                "value.converter",
                "org.apache.kafka.connect.json.JsonConverter",
            ),
        ]))
        .unwrap_err();
        let keys: Vec<_> = errors.0.iter().map(|e| e.key.as_str()).collect();
        for k in [
            "parking.lot.topic.name",
            "retry.tiers",
            "rules.a.action",
            "rules.b.stage",
            "rules.b.message.pattern",
            "rules.c.action",
            "topics",
            "value.converter",
        ] {
            assert!(keys.contains(&k), "{k} missing from {errors}");
        }
    }

    #[test]
    fn tiers_name_topics_and_the_subscription_covers_them() {
        let c = RouterConfig::from_props(&props(&[
            ("topics", "dlq.orders,dlq-payments"),
            ("parking.lot.topic.name", "parked"),
            ("retry.tiers", "30s,10m"),
        ]))
        .unwrap();
        assert_eq!(c.tier(0).unwrap().delay, Duration::from_secs(30));
        assert_eq!(c.tier(7).unwrap().label, "10m");
        let (tier, original) = c.tier_of("orders.v1.retry.10m").unwrap();
        assert_eq!((tier.label.as_str(), original), ("10m", "orders.v1"));
        assert!(c.tier_of("orders.retry.1h").is_none());
        let sub = c.subscription();
        assert_eq!(sub, r"^((dlq\.orders|dlq-payments)|.+\.retry\.(30s|10m))$");
        let re = Regex::new(&sub).unwrap();
        for t in [
            "dlq.orders",
            "dlq-payments",
            "orders.retry.30s",
            "x.y.retry.10m",
        ] {
            assert!(re.is_match(t), "{t}");
        }
        for t in ["dlqXorders", "parked", "orders.retry.1m", "dlq.orders.x"] {
            assert!(!re.is_match(t), "{t}");
        }
        assert_eq!(c.default_action, Action::Park);
    }

    #[test]
    fn delays_parse_with_units() {
        assert_eq!(parse_delay("1500").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_delay("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_delay("0s").is_err());
        assert!(parse_delay("1w").is_err());
        assert!(parse_delay("m").is_err());
    }
}
