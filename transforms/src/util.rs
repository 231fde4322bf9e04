//! Helpers shared by the transforms: reading settings and editing record halves with their schemas.

use std::sync::Arc;

use sluice_connector_api::config::split_list;
use sluice_connector_api::{ConnectError, Props, Record, Schema, Value};

use crate::Target;

pub(crate) type Errors = Vec<(String, String)>;

/// A required setting, or an error naming it.
pub(crate) fn required<'a>(props: &'a Props, key: &str, errors: &mut Errors) -> &'a str {
    match props.get(key).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        Some(v) => v,
        None => {
            errors.push((
                key.to_owned(),
                format!("Missing required configuration \"{key}\" which has no default value."),
            ));
            ""
        }
    }
}

/// A comma-separated list setting.
pub(crate) fn list(props: &Props, key: &str) -> Vec<String> {
    props.get(key).map(|v| split_list(v)).unwrap_or_default()
}

/// The schema and value of one half of a record.
pub(crate) fn half(record: &mut Record, target: Target) -> (&mut Option<Arc<Schema>>, &mut Value) {
    match target {
        Target::Key => (&mut record.key_schema, &mut record.key),
        Target::Value => (&mut record.value_schema, &mut record.value),
    }
}

pub(crate) fn target_name(target: Target) -> &'static str {
    match target {
        Target::Key => "key",
        Target::Value => "value",
    }
}

/// Error for a transform that needs a struct.
pub(crate) fn not_a_struct(transform: &str, target: Target, value: &Value) -> ConnectError {
    ConnectError::user(format!(
        "{transform} requires the record {} to be a struct or JSON object, found {}",
        target_name(target),
        value.type_name()
    ))
}
