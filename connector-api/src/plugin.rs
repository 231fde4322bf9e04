//! The registry of connector plugins and how `connector.class` resolves against it.
//!
//! A plugin is found by its full class name, any alias it declares, its simple name (the part after
//! the last `.`), or its simple name without the `Connector` suffix, all case-insensitively, as
//! Kafka Connect accepts them. An unknown name fails with a message listing every plugin.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{SinkConnector, SourceConnector};

/// Whether a connector reads into Kafka or writes out of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectorType {
    /// Reads an external system into Kafka.
    Source,
    /// Writes Kafka records to an external system.
    Sink,
}

impl fmt::Display for ConnectorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectorType::Source => "source",
            ConnectorType::Sink => "sink",
        })
    }
}

/// A freshly created connector of either kind.
pub enum ConnectorInstance {
    /// A source connector.
    Source(Box<dyn SourceConnector>),
    /// A sink connector.
    Sink(Box<dyn SinkConnector>),
}

impl ConnectorInstance {
    /// Whether the connector inside is a source or a sink.
    pub fn kind(&self) -> ConnectorType {
        match self {
            ConnectorInstance::Source(_) => ConnectorType::Source,
            ConnectorInstance::Sink(_) => ConnectorType::Sink,
        }
    }

    /// The config definition of the connector inside.
    pub fn config_def(&self) -> crate::ConfigDef {
        match self {
            ConnectorInstance::Source(c) => c.config_def(),
            ConnectorInstance::Sink(c) => c.config_def(),
        }
    }

    /// Validates properties with the connector inside.
    pub fn validate(&self, props: &crate::Props) -> Vec<crate::ConfigValueReport> {
        match self {
            ConnectorInstance::Source(c) => c.validate(props),
            ConnectorInstance::Sink(c) => c.validate(props),
        }
    }
}

/// A connector plugin: how to name it and how to create it.
#[derive(Clone)]
pub struct Plugin {
    /// Full class name, for example `io.sluice.connect.file.FileStreamSinkConnector`.
    pub class: &'static str,
    /// Short names accepted in `connector.class`.
    pub aliases: &'static [&'static str],
    /// Plugin version.
    pub version: &'static str,
    /// Source or sink.
    pub kind: ConnectorType,
    /// The converter (class name) of this plugin's keys and values when the connector's config
    /// names none, instead of the worker's: a connector that passes records through byte for byte
    /// (the DLQ router) sets the byte-array converter here.
    pub default_converter: Option<&'static str>,
    create: fn() -> ConnectorInstance,
}

impl Plugin {
    /// A source plugin whose connector is created with `Default`.
    pub fn source<C: SourceConnector + Default + 'static>(
        class: &'static str,
        aliases: &'static [&'static str],
        version: &'static str,
    ) -> Self {
        Self {
            class,
            aliases,
            version,
            kind: ConnectorType::Source,
            default_converter: None,
            create: || ConnectorInstance::Source(Box::new(C::default())),
        }
    }

    /// A sink plugin whose connector is created with `Default`.
    pub fn sink<C: SinkConnector + Default + 'static>(
        class: &'static str,
        aliases: &'static [&'static str],
        version: &'static str,
    ) -> Self {
        Self {
            class,
            aliases,
            version,
            kind: ConnectorType::Sink,
            default_converter: None,
            create: || ConnectorInstance::Sink(Box::new(C::default())),
        }
    }

    /// Uses `class` for keys and values when the connector's config names no converter.
    pub fn with_default_converter(mut self, class: &'static str) -> Self {
        self.default_converter = Some(class);
        self
    }

    /// A new, unstarted connector.
    pub fn create(&self) -> ConnectorInstance {
        (self.create)()
    }

    /// The class name after the last `.`.
    pub fn simple_name(&self) -> &'static str {
        self.class.rsplit('.').next().unwrap_or(self.class)
    }

    fn answers_to(&self, name: &str) -> bool {
        let simple = self.simple_name();
        let short = simple.strip_suffix("Connector").unwrap_or(simple);
        [self.class, simple, short]
            .iter()
            .chain(self.aliases)
            .any(|n| n.eq_ignore_ascii_case(name))
    }
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("class", &self.class)
            .field("kind", &self.kind)
            .finish()
    }
}

/// No plugin answers to a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPlugin {
    /// The name asked for.
    pub name: String,
    /// Every class name that exists.
    pub available: Vec<&'static str>,
}

impl fmt::Display for UnknownPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Failed to find any class that implements Connector and which name matches {}, available connectors are: {}",
            self.name,
            self.available.join(", ")
        )
    }
}

impl std::error::Error for UnknownPlugin {}

/// Every connector plugin a worker can run.
#[derive(Debug, Clone, Default)]
pub struct PluginRegistry {
    plugins: Vec<Plugin>,
}

impl PluginRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a plugin (builder style); a plugin with the same class replaces the earlier one.
    pub fn with(mut self, plugin: Plugin) -> Self {
        self.register(plugin);
        self
    }

    /// Adds a plugin; a plugin with the same class replaces the earlier one.
    pub fn register(&mut self, plugin: Plugin) {
        self.plugins.retain(|p| p.class != plugin.class);
        self.plugins.push(plugin);
    }

    /// Adds every plugin of `other`.
    pub fn extend(&mut self, other: PluginRegistry) {
        for p in other.plugins {
            self.register(p);
        }
    }

    /// The plugin answering to `name`.
    pub fn find(&self, name: &str) -> Result<&Plugin, UnknownPlugin> {
        let name = name.trim();
        self.plugins
            .iter()
            .find(|p| p.class == name)
            .or_else(|| self.plugins.iter().find(|p| p.answers_to(name)))
            .ok_or_else(|| UnknownPlugin {
                name: name.to_owned(),
                available: self.plugins.iter().map(|p| p.class).collect(),
            })
    }

    /// Every plugin, sorted by class name.
    pub fn plugins(&self) -> Vec<&Plugin> {
        let mut all: Vec<_> = self.plugins.iter().collect();
        all.sort_by_key(|p| p.class);
        all
    }
}
