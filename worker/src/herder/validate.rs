//! Connector config validation: the runtime's common keys, the connector's own definition, and the
//! converter and transform settings, all reported at once. Pure: no external system is contacted.

use sluice_connector_api::{ConfigDef, ConfigValueReport, Plugin, PluginRegistry, Props};
use sluice_rest_api::ApiError;
use sluice_rest_api::model::{ConfigInfo, ConfigInfos};

use crate::config::WorkerConfig;
use crate::connector_config::{RuntimeSettings, common_config_def};

/// Validates `config` against `plugin`, in the shape of `/config/validate`.
pub fn validate_with(plugin: &Plugin, config: &Props, worker: &WorkerConfig) -> ConfigInfos {
    let common = common_config_def(plugin.kind);
    let instance = plugin.create();
    let own: ConfigDef = instance.config_def();
    let mut reports: Vec<(sluice_connector_api::ConfigKeyInfo, ConfigValueReport)> = Vec::new();
    for (def, values) in [
        (&common, common.validate(config)),
        (&own, instance.validate(config)),
    ] {
        let infos = def.describe();
        for value in values {
            match infos.iter().find(|i| i.name == value.name) {
                Some(info) => {
                    reports.retain(|(i, _)| i.name != value.name);
                    reports.push((info.clone(), value));
                }
                // A key the connector checks beyond its definition: a common key it restricts
                // (the router's converters) or one it names itself (`rules.<name>.*`).
                None => match reports.iter_mut().find(|(i, _)| i.name == value.name) {
                    Some((_, known)) => known.errors.extend(value.errors),
                    None => {
                        let info = undefined_key(&value.name, "Connector", reports.len());
                        reports.push((info, value));
                    }
                },
            }
        }
    }
    // Converter, transform and topic errors are found by resolving the runtime settings.
    if let Err(errors) = RuntimeSettings::resolve(plugin, config, worker) {
        for error in errors.0 {
            match reports.iter_mut().find(|(i, _)| i.name == error.key) {
                Some((_, value)) => {
                    if !value.errors.contains(&error.message) {
                        value.errors.push(error.message);
                    }
                }
                None => {
                    let info = undefined_key(&error.key, "Transforms", reports.len());
                    reports.push((
                        info,
                        ConfigValueReport {
                            name: error.key.clone(),
                            value: config.get(&error.key).cloned(),
                            recommended_values: Vec::new(),
                            errors: vec![error.message],
                            visible: true,
                        },
                    ));
                }
            }
        }
    }
    let mut groups: Vec<String> = Vec::new();
    for (info, _) in &reports {
        if let Some(g) = &info.group
            && !groups.contains(g)
        {
            groups.push(g.clone());
        }
    }
    ConfigInfos {
        name: plugin.class.to_owned(),
        error_count: reports.iter().map(|(_, v)| v.errors.len()).sum(),
        groups,
        configs: reports
            .into_iter()
            .map(|(definition, value)| ConfigInfo { definition, value })
            .collect(),
    }
}

/// The description of a key no definition declares: transform, predicate and converter settings,
/// and keys a connector names after its own settings (the DLQ router's `rules.<name>.*`).
fn undefined_key(name: &str, group: &str, order: usize) -> sluice_connector_api::ConfigKeyInfo {
    sluice_connector_api::ConfigKeyInfo {
        name: name.to_owned(),
        kind: sluice_connector_api::ConfigType::String,
        required: false,
        default_value: None,
        importance: sluice_connector_api::Importance::Low,
        documentation: format!("{group} setting."),
        group: Some(group.to_owned()),
        width: "NONE",
        display_name: name.to_owned(),
        dependents: Vec::new(),
        order: order as i32,
    }
}

/// Validates a connector config for create/update: 400 with every error, or the plugin.
pub fn validate_for_create<'r>(
    registry: &'r PluginRegistry,
    config: &Props,
    worker: &WorkerConfig,
) -> Result<&'r Plugin, ApiError> {
    let class = config
        .get("connector.class")
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("Connector config must contain \"connector.class\": the connector's class name or alias"))?;
    let plugin = registry
        .find(class)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let infos = validate_with(plugin, config, worker);
    if infos.error_count == 0 {
        return Ok(plugin);
    }
    let mut message = format!(
        "Connector configuration is invalid and contains the following {} error(s):",
        infos.error_count
    );
    for c in &infos.configs {
        for e in &c.value.errors {
            message.push('\n');
            message.push_str(&format!("{}: {e}", c.value.name));
        }
    }
    message.push_str("\nYou can also find the above list of errors at the endpoint `/connector-plugins/{connectorType}/config/validate`");
    Err(ApiError::bad_request(message))
}
