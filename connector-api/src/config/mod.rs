//! Typed configuration definitions, validated the way Kafka Connect validates them.
//!
//! A connector declares a [`ConfigDef`]: each key's name, type, default, importance, documentation and
//! validator. [`ConfigDef::validate`] is pure (no network, no files) and reports every error at once,
//! and feeds `PUT /connector-plugins/{plugin}/config/validate`. [`ConfigDef::parse`] turns string
//! properties, as they arrive in connector JSON, into typed values or every error found.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

mod typed;

pub use typed::{ConnectorConfig, ParsedConfig, Password};

/// Connector and task properties: string keys and string values, as in connector JSON.
pub type Props = BTreeMap<String, String>;

/// The type of a config value. Serialized the way Kafka Connect names them (`"STRING"`, `"INT"`...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ConfigType {
    /// `true` or `false` (case-insensitive).
    Boolean,
    /// Any string.
    String,
    /// 32-bit integer.
    Int,
    /// 64-bit integer.
    Long,
    /// Floating-point number.
    Double,
    /// Comma-separated list; items are trimmed and empty items dropped.
    List,
    /// A plugin class name or alias.
    Class,
    /// A secret; never echoed back by the REST API.
    Password,
}

/// How much a key matters to a user, as shown in documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Importance {
    /// Most users set this.
    High,
    /// Some users set this.
    Medium,
    /// Rarely needed.
    Low,
}

/// A check on one value, applied after it parsed as its type.
#[derive(Clone)]
pub enum Validator {
    /// A number within an inclusive range; either bound may be open.
    Range {
        /// Smallest allowed value.
        min: Option<f64>,
        /// Largest allowed value.
        max: Option<f64>,
    },
    /// One of a fixed set of strings, compared case-insensitively (for lists: every item).
    OneOf(&'static [&'static str]),
    /// A string that is not empty after trimming.
    NonEmpty,
    /// Any other check; returns the error message.
    Custom(fn(&str) -> Result<(), String>),
}

impl Validator {
    /// At least `min`.
    pub fn at_least(min: f64) -> Self {
        Validator::Range {
            min: Some(min),
            max: None,
        }
    }

    /// Between `min` and `max` inclusive.
    pub fn between(min: f64, max: f64) -> Self {
        Validator::Range {
            min: Some(min),
            max: Some(max),
        }
    }

    fn check(&self, value: &ConfigValue) -> Result<(), String> {
        match (self, value) {
            (_, ConfigValue::Null) => Ok(()),
            (Validator::Range { min, max }, v) => {
                let Some(n) = v.as_f64() else {
                    return Ok(());
                };
                match (min, max) {
                    (Some(lo), Some(hi)) if n < *lo || n > *hi => {
                        Err(format!("Value must be between {lo} and {hi}"))
                    }
                    (Some(lo), _) if n < *lo => Err(format!("Value must be at least {lo}")),
                    (_, Some(hi)) if n > *hi => Err(format!("Value must be no more than {hi}")),
                    _ => Ok(()),
                }
            }
            (Validator::OneOf(allowed), ConfigValue::List(items)) => {
                for item in items {
                    one_of(allowed, item)?;
                }
                Ok(())
            }
            (Validator::OneOf(allowed), v) => one_of(allowed, &v.to_string()),
            (Validator::NonEmpty, v) if v.to_string().trim().is_empty() => {
                Err("String must be non-empty".to_owned())
            }
            (Validator::NonEmpty, _) => Ok(()),
            (Validator::Custom(check), v) => check(&v.to_string()),
        }
    }

    fn recommended(&self) -> Vec<String> {
        match self {
            Validator::OneOf(allowed) => allowed.iter().map(|s| (*s).to_owned()).collect(),
            _ => Vec::new(),
        }
    }
}

fn one_of(allowed: &[&str], value: &str) -> Result<(), String> {
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(value)) {
        Ok(())
    } else {
        Err(format!(
            "Invalid value {value}: must be one of {}",
            allowed.join(", ")
        ))
    }
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Validator::Range { min, max } => write!(f, "Range({min:?}, {max:?})"),
            Validator::OneOf(v) => write!(f, "OneOf({v:?})"),
            Validator::NonEmpty => f.write_str("NonEmpty"),
            Validator::Custom(_) => f.write_str("Custom"),
        }
    }
}

/// The definition of one config key.
#[derive(Debug, Clone)]
pub struct ConfigKey {
    /// Key name, for example `tasks.max`.
    pub name: &'static str,
    /// Value type.
    pub kind: ConfigType,
    /// Default as the string a user would write; `None` makes the key required.
    pub default: Option<String>,
    /// Importance.
    pub importance: Importance,
    /// What the key does, with units.
    pub documentation: &'static str,
    /// The group it is listed under.
    pub group: Option<&'static str>,
    /// Check applied to the parsed value.
    pub validator: Option<Validator>,
    /// Other names the key is also read under, for example the name another connector gives the
    /// same setting, so that a config written for it works as it is.
    pub aliases: Vec<&'static str>,
}

impl ConfigKey {
    /// A required key with medium importance.
    pub fn new(name: &'static str, kind: ConfigType, documentation: &'static str) -> Self {
        Self {
            name,
            kind,
            default: None,
            importance: Importance::Medium,
            documentation,
            group: None,
            validator: None,
            aliases: Vec::new(),
        }
    }

    /// Makes the key optional with this default (use `""` for "unset").
    pub fn default_value(mut self, default: impl Into<String>) -> Self {
        self.default = Some(default.into());
        self
    }

    /// Sets the importance.
    pub fn importance(mut self, importance: Importance) -> Self {
        self.importance = importance;
        self
    }

    /// Sets the group.
    pub fn group(mut self, group: &'static str) -> Self {
        self.group = Some(group);
        self
    }

    /// Sets the validator.
    pub fn validator(mut self, validator: Validator) -> Self {
        self.validator = Some(validator);
        self
    }

    /// Also reads the key under `alias` (when the key itself is not given).
    pub fn alias(mut self, alias: &'static str) -> Self {
        self.aliases.push(alias);
        self
    }

    /// The value given under the key's name or one of its aliases; an error when two of them
    /// are given different values.
    fn given<'a>(&self, props: &'a Props) -> Result<Option<&'a String>, String> {
        let mut found: Option<(&str, &String)> = None;
        for name in std::iter::once(&self.name).chain(&self.aliases) {
            let Some(value) = props.get(*name) else {
                continue;
            };
            match found {
                Some((first, seen)) if seen != value => {
                    return Err(format!(
                        "{first} and {name} name the same setting but are given different values"
                    ));
                }
                Some(_) => {}
                None => found = Some((name, value)),
            }
        }
        Ok(found.map(|(_, v)| v))
    }
}

/// A parsed config value.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigValue {
    /// Unset optional key with an empty default.
    Null,
    /// Boolean.
    Boolean(bool),
    /// Integer.
    Int(i32),
    /// Long integer.
    Long(i64),
    /// Number.
    Double(f64),
    /// String, class name or password.
    String(String),
    /// List of strings.
    List(Vec<String>),
}

impl ConfigValue {
    fn as_f64(&self) -> Option<f64> {
        match *self {
            ConfigValue::Int(v) => Some(v.into()),
            ConfigValue::Long(v) => Some(v as f64),
            ConfigValue::Double(v) => Some(v),
            _ => None,
        }
    }
}

impl fmt::Display for ConfigValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigValue::Null => Ok(()),
            ConfigValue::Boolean(v) => write!(f, "{v}"),
            ConfigValue::Int(v) => write!(f, "{v}"),
            ConfigValue::Long(v) => write!(f, "{v}"),
            ConfigValue::Double(v) => write!(f, "{v}"),
            ConfigValue::String(v) => f.write_str(v),
            ConfigValue::List(v) => f.write_str(&v.join(",")),
        }
    }
}

fn parse_value(kind: ConfigType, raw: &str) -> Result<ConfigValue, String> {
    let trimmed = raw.trim();
    match kind {
        ConfigType::Boolean => match trimmed.to_ascii_lowercase().as_str() {
            "true" => Ok(ConfigValue::Boolean(true)),
            "false" => Ok(ConfigValue::Boolean(false)),
            _ => Err(format!(
                "Invalid value {raw}: expected a boolean (true or false)"
            )),
        },
        ConfigType::Int => trimmed
            .parse()
            .map(ConfigValue::Int)
            .map_err(|_| format!("Invalid value {raw}: not a 32-bit integer")),
        ConfigType::Long => trimmed
            .parse()
            .map(ConfigValue::Long)
            .map_err(|_| format!("Invalid value {raw}: not a 64-bit integer")),
        ConfigType::Double => trimmed
            .parse()
            .map(ConfigValue::Double)
            .map_err(|_| format!("Invalid value {raw}: not a number")),
        ConfigType::List => Ok(ConfigValue::List(split_list(raw))),
        ConfigType::String | ConfigType::Class | ConfigType::Password => {
            Ok(ConfigValue::String(raw.to_owned()))
        }
    }
}

/// One failed key: its name and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

/// Every error found in a set of properties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// Adds an error for `key`.
    pub fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            key: key.into(),
            message: message.into(),
        });
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when there are no errors.
    pub fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Connector configuration is invalid and contains the following {} error(s):",
            self.0.len()
        )?;
        for e in &self.0 {
            write!(f, "\n{}: {}", e.key, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigErrors> for crate::ConnectError {
    fn from(errors: ConfigErrors) -> Self {
        crate::ConnectError::user(errors.to_string())
    }
}

/// The items of a comma-separated `LIST` value, trimmed, empty items dropped.
pub fn split_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Adds rule errors (those spanning keys, or on keys a connector names itself) to per-key
/// `reports`, in the shape of `/config/validate`: to the report of their key, or as a new report.
pub fn add_errors(reports: &mut Vec<ConfigValueReport>, errors: ConfigErrors, props: &Props) {
    for e in errors.0 {
        match reports.iter_mut().find(|r| r.name == e.key) {
            Some(r) if r.errors.contains(&e.message) => {}
            Some(r) => r.errors.push(e.message),
            None => reports.push(ConfigValueReport {
                value: props.get(&e.key).cloned(),
                name: e.key,
                recommended_values: Vec::new(),
                errors: vec![e.message],
                visible: true,
            }),
        }
    }
}

/// Properties whose key starts with `prefix`, with the prefix removed.
pub fn with_prefix(props: &Props, prefix: &str) -> Props {
    props
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_owned(), v.clone())))
        .collect()
}

/// A set of config key definitions.
#[derive(Debug, Clone, Default)]
pub struct ConfigDef {
    keys: Vec<ConfigKey>,
}

impl ConfigDef {
    /// An empty definition.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key (builder style). A later definition of the same name replaces the earlier one.
    pub fn define(mut self, key: ConfigKey) -> Self {
        self.keys.retain(|k| k.name != key.name);
        self.keys.push(key);
        self
    }

    /// Also reads `key` (defined already, for example by a shared set of keys) under `alias`.
    pub fn alias(mut self, key: &str, alias: &'static str) -> Self {
        match self.keys.iter_mut().find(|k| k.name == key) {
            Some(k) => k.aliases.push(alias),
            None => debug_assert!(false, "alias {alias:?} of config key {key:?}, not defined"),
        }
        self
    }

    /// Adds every key of `other`.
    pub fn merge(mut self, other: ConfigDef) -> Self {
        for key in other.keys {
            self = self.define(key);
        }
        self
    }

    /// The keys in definition order.
    pub fn keys(&self) -> &[ConfigKey] {
        &self.keys
    }

    /// The key with this name.
    pub fn key(&self, name: &str) -> Option<&ConfigKey> {
        self.keys.iter().find(|k| k.name == name)
    }

    /// Validates every key, collecting all errors. Pure: no I/O.
    pub fn validate(&self, props: &Props) -> Vec<ConfigValueReport> {
        self.keys
            .iter()
            .map(|key| {
                let mut errors = Vec::new();
                let given = key.given(props).unwrap_or_else(|e| {
                    errors.push(e);
                    None
                });
                let raw = given.or(key.default.as_ref());
                match raw {
                    None => errors.push(format!(
                        "Missing required configuration \"{}\" which has no default value.",
                        key.name
                    )),
                    Some(raw) if raw.is_empty() && key.default.as_deref() == Some("") => {}
                    Some(raw) => match parse_value(key.kind, raw) {
                        Ok(value) => {
                            if let Some(Err(e)) = key.validator.as_ref().map(|v| v.check(&value)) {
                                errors.push(format!(
                                    "Invalid value {raw} for configuration {}: {e}",
                                    key.name
                                ));
                            }
                        }
                        Err(e) => errors.push(format!("{e} for configuration {}", key.name)),
                    },
                }
                ConfigValueReport {
                    name: key.name.to_owned(),
                    value: match (key.kind, given) {
                        (ConfigType::Password, Some(_)) => Some("[hidden]".to_owned()),
                        (_, v) => v.cloned().or_else(|| key.default.clone()),
                    },
                    recommended_values: key
                        .validator
                        .as_ref()
                        .map(Validator::recommended)
                        .unwrap_or_default(),
                    errors,
                    visible: true,
                }
            })
            .collect()
    }

    /// Parses properties into typed values, or returns every error at once.
    pub fn parse(&self, props: &Props) -> Result<ParsedConfig, ConfigErrors> {
        let (parsed, errors) = self.parse_all(props);
        errors.into_result(parsed)
    }

    /// Every key's own error, and a value for every key all the same: the value given when it is
    /// valid, else the key's default (unset when it has none). The first step of a
    /// [`ConnectorConfig`], which then checks the rules spanning keys.
    pub fn parse_all(&self, props: &Props) -> (ParsedConfig, ConfigErrors) {
        let mut errors = ConfigErrors::default();
        let mut values = BTreeMap::new();
        for (key, report) in self.keys.iter().zip(self.validate(props)) {
            let raw = if report.errors.is_empty() {
                key.given(props).ok().flatten().or(key.default.as_ref())
            } else {
                key.default.as_ref()
            };
            let value = match raw {
                Some(raw) if raw.is_empty() && key.default.as_deref() == Some("") => {
                    ConfigValue::Null
                }
                Some(raw) => parse_value(key.kind, raw).unwrap_or(ConfigValue::Null),
                None => ConfigValue::Null,
            };
            values.insert(key.name, (key.kind, value));
            for message in report.errors {
                errors.push(key.name, message);
            }
        }
        (ParsedConfig::new(values, props.clone()), errors)
    }

    /// The definitions in the shape of `GET /connector-plugins/{plugin}/config`.
    pub fn describe(&self) -> Vec<ConfigKeyInfo> {
        self.keys
            .iter()
            .enumerate()
            .map(|(order, key)| ConfigKeyInfo {
                name: key.name.to_owned(),
                kind: key.kind,
                required: key.default.is_none(),
                default_value: key.default.clone(),
                importance: key.importance,
                documentation: if key.aliases.is_empty() {
                    key.documentation.to_owned()
                } else {
                    format!(
                        "{} Also read as: {}.",
                        key.documentation,
                        key.aliases.join(", ")
                    )
                },
                group: key.group.map(str::to_owned),
                width: "NONE",
                display_name: key.name.to_owned(),
                dependents: Vec::new(),
                order: order as i32,
            })
            .collect()
    }
}

/// One key's definition as the REST API shows it (Kafka Connect's `ConfigKeyInfo`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConfigKeyInfo {
    /// Key name.
    pub name: String,
    /// Value type.
    #[serde(rename = "type")]
    pub kind: ConfigType,
    /// Whether it has no default.
    pub required: bool,
    /// Default, if any.
    pub default_value: Option<String>,
    /// Importance.
    pub importance: Importance,
    /// Documentation.
    pub documentation: String,
    /// Group.
    pub group: Option<String>,
    /// Display width hint (always `NONE`).
    pub width: &'static str,
    /// Display name.
    pub display_name: String,
    /// Keys whose validity depends on this one.
    pub dependents: Vec<String>,
    /// Position in the definition.
    pub order: i32,
}

/// One key's validation result (Kafka Connect's `ConfigValueInfo`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConfigValueReport {
    /// Key name.
    pub name: String,
    /// The value given, or the default; passwords are hidden.
    pub value: Option<String>,
    /// Allowed values, when the set is finite.
    pub recommended_values: Vec<String>,
    /// Errors; empty when valid.
    pub errors: Vec<String>,
    /// Whether the key applies given the other values.
    pub visible: bool,
}

#[cfg(test)]
mod tests;
