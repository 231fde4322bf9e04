//! Parsed configs: typed values read by key ([`ParsedConfig`]), secrets ([`Password`]), and the
//! typed settings every connector builds from them ([`ConnectorConfig`]).

use std::collections::BTreeMap;
use std::fmt;

use super::{
    ConfigDef, ConfigErrors, ConfigType, ConfigValue, ConfigValueReport, Props, add_errors,
    with_prefix,
};

/// Properties parsed against a [`ConfigDef`]: every defined key has a typed value.
///
/// Reading a key the definition does not have, or reading it as another type than it was
/// defined with, is a bug in the connector (a typo in a key name would otherwise read as unset):
/// it panics in debug builds, which every test runs, and reads as unset in release builds.
#[derive(Debug, Clone, Default)]
pub struct ParsedConfig {
    values: BTreeMap<&'static str, (ConfigType, ConfigValue)>,
    originals: Props,
}

impl ParsedConfig {
    pub(super) fn new(
        values: BTreeMap<&'static str, (ConfigType, ConfigValue)>,
        originals: Props,
    ) -> Self {
        Self { values, originals }
    }

    fn value(&self, key: &str, kinds: &[ConfigType]) -> &ConfigValue {
        match self.values.get(key) {
            Some((kind, value)) => {
                debug_assert!(
                    kinds.contains(kind),
                    "config key {key:?} is defined as {kind:?} but read as one of {kinds:?}"
                );
                value
            }
            None => {
                debug_assert!(false, "config key {key:?} is read but not defined");
                &ConfigValue::Null
            }
        }
    }

    /// A `STRING`, `CLASS` or `PASSWORD` key; empty when unset.
    pub fn string(&self, key: &str) -> String {
        use ConfigType::*;
        self.value(key, &[String, Class, Password]).to_string()
    }

    /// A `PASSWORD` key, or `None` when unset or empty.
    pub fn password(&self, key: &str) -> Option<Password> {
        match self.value(key, &[ConfigType::Password]) {
            ConfigValue::String(s) if !s.is_empty() => Some(Password(s.clone())),
            _ => None,
        }
    }

    /// A string key, or `None` when unset or empty.
    pub fn optional_string(&self, key: &str) -> Option<String> {
        Some(self.string(key)).filter(|s| !s.is_empty())
    }

    /// An `INT` key; 0 when unset (see [`ParsedConfig::optional_long`]).
    pub fn int(&self, key: &str) -> i32 {
        match self.value(key, &[ConfigType::Int]) {
            ConfigValue::Int(v) => *v,
            _ => 0,
        }
    }

    /// A `LONG` (or `INT`) key; 0 when unset (see [`ParsedConfig::optional_long`]).
    pub fn long(&self, key: &str) -> i64 {
        self.optional_long(key).unwrap_or(0)
    }

    /// A `LONG` or `INT` key of milliseconds (`linger.ms`, `*.backoff.ms`) as a duration; negative
    /// values read as zero.
    pub fn duration_ms(&self, key: &str) -> std::time::Duration {
        std::time::Duration::from_millis(self.long(key).max(0) as u64)
    }

    /// A `LONG` or `INT` key, or `None` when unset (a key whose default is `""`).
    pub fn optional_long(&self, key: &str) -> Option<i64> {
        match self.value(key, &[ConfigType::Long, ConfigType::Int]) {
            ConfigValue::Long(v) => Some(*v),
            ConfigValue::Int(v) => Some((*v).into()),
            _ => None,
        }
    }

    /// A `DOUBLE` key; 0 when unset.
    pub fn double(&self, key: &str) -> f64 {
        self.value(key, &[ConfigType::Double])
            .as_f64()
            .unwrap_or(0.0)
    }

    /// A `BOOLEAN` key; false when unset.
    pub fn boolean(&self, key: &str) -> bool {
        matches!(
            self.value(key, &[ConfigType::Boolean]),
            ConfigValue::Boolean(true)
        )
    }

    /// A `LIST` key; empty when unset.
    pub fn list(&self, key: &str) -> Vec<String> {
        match self.value(key, &[ConfigType::List]) {
            ConfigValue::List(v) => v.clone(),
            _ => Vec::new(),
        }
    }

    /// The properties as given, including keys the definition does not know.
    pub fn originals(&self) -> &Props {
        &self.originals
    }

    /// Original properties whose key starts with `prefix`, with the prefix removed.
    pub fn originals_with_prefix(&self, prefix: &str) -> Props {
        with_prefix(&self.originals, prefix)
    }
}

/// A secret from a `PASSWORD` key. It shows as `[hidden]` in `Debug` and `Display`, so a typed
/// config holding it may be logged; only [`Password::expose`] gives the value, at the one place
/// that sends it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[hidden]")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[hidden]")
    }
}

/// A connector's typed settings: the definition of its keys, then a typed value built from the
/// parsed keys, checked the same way by every connector.
///
/// [`ConnectorConfig::from_props`] reports every error at once: each key's own (type, range,
/// allowed values, missing), and every rule that spans keys, which [`ConnectorConfig::build`]
/// checks with the keys in error read as their defaults. [`ConnectorConfig::validate`] answers
/// `PUT /connector-plugins/{plugin}/config/validate` with both kinds of error.
///
/// ```
/// use sluice_connector_api::{ConfigDef, ConfigErrors, ConfigKey, ConfigType, ConnectorConfig};
/// use sluice_connector_api::{ParsedConfig, Props, Validator};
///
/// struct Window { min_ms: i64, max_ms: i64 }
///
/// impl ConnectorConfig for Window {
///     fn def() -> ConfigDef {
///         ConfigDef::new()
///             .define(ConfigKey::new("window.min.ms", ConfigType::Long, "Shortest window.")
///                 .default_value("100").validator(Validator::at_least(1.0)))
///             .define(ConfigKey::new("window.max.ms", ConfigType::Long, "Longest window.")
///                 .default_value("1000"))
///     }
///     fn build(p: &ParsedConfig, errors: &mut ConfigErrors) -> Self {
///         let w = Window { min_ms: p.long("window.min.ms"), max_ms: p.long("window.max.ms") };
///         if w.max_ms < w.min_ms {
///             errors.push("window.max.ms", "must be at least window.min.ms");
///         }
///         w
///     }
/// }
///
/// let props = Props::from([
///     ("window.min.ms".to_owned(), "0".to_owned()),
///     ("window.max.ms".to_owned(), "50".to_owned()),
/// ]);
/// let Err(errors) = Window::from_props(&props) else { panic!("invalid") };
/// // The range error of one key and the rule across both keys, in one answer.
/// assert_eq!(errors.0.len(), 2, "{errors}");
/// ```
pub trait ConnectorConfig: Sized {
    /// The definition of every key.
    fn def() -> ConfigDef;

    /// The typed settings from parsed keys; pushes every error the definition cannot express
    /// (rules spanning keys, values a validator cannot check) to `errors`. Keys that failed their
    /// own checks read as their defaults here, so that every rule is still checked.
    fn build(config: &ParsedConfig, errors: &mut ConfigErrors) -> Self;

    /// Parses and checks properties, reporting every error at once.
    fn from_props(props: &Props) -> Result<Self, ConfigErrors> {
        let (parsed, mut errors) = Self::def().parse_all(props);
        let config = Self::build(&parsed, &mut errors);
        errors.into_result(config)
    }

    /// Per-key reports plus the errors of [`ConnectorConfig::build`], in the shape of
    /// `PUT .../config/validate`.
    fn validate(props: &Props) -> Vec<ConfigValueReport> {
        let mut reports = Self::def().validate(props);
        if let Err(errors) = Self::from_props(props) {
            add_errors(&mut reports, errors, props);
        }
        reports
    }
}
