//! Field-level transforms: InsertField, ReplaceField, MaskField, ValueToKey, ExtractField, HoistField.
//!
//! With a struct schema the schema is rewritten to match; schemaless structs (JSON objects) are
//! edited directly. A null value (tombstone) passes through unchanged, as in Kafka Connect.

use std::sync::Arc;

use sluice_connector_api::{ConnectError, Field, Props, Record, Schema, SchemaType, Struct, Value};

use crate::util::{Errors, half, list, not_a_struct, required, target_name};
use crate::{Target, Transform};

fn target(t: Option<Target>) -> Target {
    t.unwrap_or(Target::Value)
}

/// `name!` (required) and `name?` (optional) suffixes are accepted and stripped.
fn field_name(spec: &str) -> Option<String> {
    let name = spec.trim().trim_end_matches(['!', '?']);
    (!name.is_empty()).then(|| name.to_owned())
}

fn edit_schema(schema: &mut Option<Arc<Schema>>, edit: impl FnOnce(&mut Schema)) {
    if let Some(s) = schema {
        edit(Arc::make_mut(s));
    }
}

// ---------------------------------------------------------------------------------------------

struct InsertField {
    target: Target,
    topic: Option<String>,
    partition: Option<String>,
    timestamp: Option<String>,
    static_field: Option<(String, String)>,
}

pub(crate) fn insert_field(t: Option<Target>, props: &Props) -> Result<Box<dyn Transform>, Errors> {
    let get = |k: &str| props.get(k).and_then(|v| field_name(v));
    let static_field = match (get("static.field"), props.get("static.value")) {
        (Some(f), Some(v)) => Some((f, v.clone())),
        (Some(_), None) => {
            return Err(vec![(
                "static.value".into(),
                "static.value is required when static.field is set".into(),
            )]);
        }
        _ => None,
    };
    if props.contains_key("offset.field") {
        return Err(vec![("offset.field".into(), "offset.field is not supported: the Kafka offset of a sink record is tracked by the runtime, not carried in the record".into())]);
    }
    let transform = InsertField {
        target: target(t),
        topic: get("topic.field"),
        partition: get("partition.field"),
        timestamp: get("timestamp.field"),
        static_field,
    };
    if transform.topic.is_none()
        && transform.partition.is_none()
        && transform.timestamp.is_none()
        && transform.static_field.is_none()
    {
        return Err(vec![("topic.field".into(), "InsertField needs at least one of topic.field, partition.field, timestamp.field, static.field".into())]);
    }
    Ok(Box::new(transform))
}

impl Transform for InsertField {
    fn apply(&self, mut record: Record) -> Result<Option<Record>, ConnectError> {
        let mut additions: Vec<(String, Value, Schema)> = Vec::new();
        if let Some(f) = &self.topic {
            additions.push((
                f.clone(),
                Value::String(record.topic.clone()),
                Schema::new(SchemaType::String).optional(),
            ));
        }
        if let Some(f) = &self.partition {
            additions.push((
                f.clone(),
                record.partition.map(Value::Int32).unwrap_or_default(),
                Schema::new(SchemaType::Int32).optional(),
            ));
        }
        if let Some(f) = &self.timestamp {
            additions.push((
                f.clone(),
                record.timestamp.map(Value::Int64).unwrap_or_default(),
                Schema::timestamp().optional(),
            ));
        }
        if let Some((f, v)) = &self.static_field {
            additions.push((
                f.clone(),
                Value::String(v.clone()),
                Schema::new(SchemaType::String).optional(),
            ));
        }
        let (schema, value) = half(&mut record, self.target);
        if value.is_null() {
            return Ok(Some(record));
        }
        let Value::Struct(s) = value else {
            return Err(not_a_struct("InsertField", self.target, value));
        };
        for (name, v, field_schema) in additions {
            s.put(name.clone(), v);
            edit_schema(schema, |schema| {
                schema.fields.retain(|f| f.name != name);
                schema.fields.push(Field {
                    name,
                    schema: field_schema,
                });
            });
        }
        Ok(Some(record))
    }
}

// ---------------------------------------------------------------------------------------------

struct ReplaceField {
    target: Target,
    include: Vec<String>,
    exclude: Vec<String>,
    renames: Vec<(String, String)>,
}

pub(crate) fn replace_field(
    t: Option<Target>,
    props: &Props,
) -> Result<Box<dyn Transform>, Errors> {
    let mut include = list(props, "include");
    include.extend(list(props, "whitelist"));
    let mut exclude = list(props, "exclude");
    exclude.extend(list(props, "blacklist"));
    let mut errors = Errors::new();
    let renames = list(props, "renames")
        .into_iter()
        .filter_map(|pair| match pair.split_once(':') {
            Some((from, to)) if !from.trim().is_empty() && !to.trim().is_empty() => {
                Some((from.trim().to_owned(), to.trim().to_owned()))
            }
            _ => {
                errors.push((
                    "renames".into(),
                    format!("Invalid rename mapping {pair}: expected old:new"),
                ));
                None
            }
        })
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Box::new(ReplaceField {
        target: target(t),
        include,
        exclude,
        renames,
    }))
}

impl ReplaceField {
    fn keeps(&self, name: &str) -> bool {
        !self.exclude.iter().any(|e| e == name)
            && (self.include.is_empty() || self.include.iter().any(|i| i == name))
    }

    fn renamed<'a>(&'a self, name: &'a str) -> &'a str {
        self.renames
            .iter()
            .find(|(from, _)| from == name)
            .map(|(_, to)| to.as_str())
            .unwrap_or(name)
    }
}

impl Transform for ReplaceField {
    fn apply(&self, mut record: Record) -> Result<Option<Record>, ConnectError> {
        let (schema, value) = half(&mut record, self.target);
        if value.is_null() {
            return Ok(Some(record));
        }
        let Value::Struct(s) = value else {
            return Err(not_a_struct("ReplaceField", self.target, value));
        };
        let old = std::mem::take(s);
        *s = old
            .into_fields()
            .into_iter()
            .filter(|(k, _)| self.keeps(k))
            .map(|(k, v)| (self.renamed(&k).to_owned(), v))
            .collect();
        edit_schema(schema, |schema| {
            schema.fields.retain(|f| self.keeps(&f.name));
            for f in &mut schema.fields {
                f.name = self.renamed(&f.name).to_owned();
            }
        });
        Ok(Some(record))
    }
}

// ---------------------------------------------------------------------------------------------

struct MaskField {
    target: Target,
    fields: Vec<String>,
    replacement: Option<String>,
}

pub(crate) fn mask_field(t: Option<Target>, props: &Props) -> Result<Box<dyn Transform>, Errors> {
    let fields = list(props, "fields");
    if fields.is_empty() {
        return Err(vec![(
            "fields".into(),
            "Missing required configuration \"fields\" which has no default value.".into(),
        )]);
    }
    Ok(Box::new(MaskField {
        target: target(t),
        fields,
        replacement: props.get("replacement").filter(|r| !r.is_empty()).cloned(),
    }))
}

fn masked(value: &Value, replacement: Option<&str>, field: &str) -> Result<Value, ConnectError> {
    let bad = |r: &str| {
        ConnectError::user(format!(
            "MaskField: replacement {r} is not valid for field {field} of type {}",
            value.type_name()
        ))
    };
    Ok(match (value, replacement) {
        (Value::Null, _) => Value::Null,
        (Value::String(_), r) => Value::String(r.unwrap_or("").to_owned()),
        (Value::Boolean(_), None) => Value::Boolean(false),
        (Value::Boolean(_), Some(r)) => Value::Boolean(r.parse().map_err(|_| bad(r))?),
        (Value::Int8(_), r) => Value::Int8(
            r.map(|r| r.parse().map_err(|_| bad(r)))
                .transpose()?
                .unwrap_or(0),
        ),
        (Value::Int16(_), r) => Value::Int16(
            r.map(|r| r.parse().map_err(|_| bad(r)))
                .transpose()?
                .unwrap_or(0),
        ),
        (Value::Int32(_), r) => Value::Int32(
            r.map(|r| r.parse().map_err(|_| bad(r)))
                .transpose()?
                .unwrap_or(0),
        ),
        (Value::Int64(_), r) => Value::Int64(
            r.map(|r| r.parse().map_err(|_| bad(r)))
                .transpose()?
                .unwrap_or(0),
        ),
        (Value::Float32(_), r) => Value::Float32(
            r.map(|r| r.parse().map_err(|_| bad(r)))
                .transpose()?
                .unwrap_or(0.0),
        ),
        (Value::Float64(_), r) => Value::Float64(
            r.map(|r| r.parse().map_err(|_| bad(r)))
                .transpose()?
                .unwrap_or(0.0),
        ),
        (Value::Bytes(_), r) => Value::Bytes(r.unwrap_or("").as_bytes().to_vec()),
        (Value::Array(_), None) => Value::Array(Vec::new()),
        (Value::Map(_), None) => Value::Map(Vec::new()),
        (Value::Struct(_), None) => Value::Struct(Struct::new()),
        (_, Some(r)) => return Err(bad(r)),
    })
}

impl Transform for MaskField {
    fn apply(&self, mut record: Record) -> Result<Option<Record>, ConnectError> {
        let (_, value) = half(&mut record, self.target);
        if value.is_null() {
            return Ok(Some(record));
        }
        let Value::Struct(s) = value else {
            return Err(not_a_struct("MaskField", self.target, value));
        };
        for field in &self.fields {
            if let Some(v) = s.get_mut(field) {
                *v = masked(v, self.replacement.as_deref(), field)?;
            }
        }
        Ok(Some(record))
    }
}

// ---------------------------------------------------------------------------------------------

struct ValueToKey {
    fields: Vec<String>,
}

pub(crate) fn value_to_key(_: Option<Target>, props: &Props) -> Result<Box<dyn Transform>, Errors> {
    let fields = list(props, "fields");
    if fields.is_empty() {
        return Err(vec![(
            "fields".into(),
            "Missing required configuration \"fields\" which has no default value.".into(),
        )]);
    }
    Ok(Box::new(ValueToKey { fields }))
}

impl Transform for ValueToKey {
    fn apply(&self, mut record: Record) -> Result<Option<Record>, ConnectError> {
        let Value::Struct(s) = &record.value else {
            return Err(not_a_struct("ValueToKey", Target::Value, &record.value));
        };
        let mut key = Struct::new();
        for f in &self.fields {
            let v = s.get(f).ok_or_else(|| {
                ConnectError::user(format!(
                    "ValueToKey: field {f} not found in the record value"
                ))
            })?;
            key.put(f.clone(), v.clone());
        }
        record.key_schema = match &record.value_schema {
            Some(vs) => {
                let mut fields = Vec::new();
                for f in &self.fields {
                    let field = vs.field(f).ok_or_else(|| {
                        ConnectError::user(format!(
                            "ValueToKey: field {f} not found in the value schema"
                        ))
                    })?;
                    fields.push(field.clone());
                }
                Some(Arc::new(Schema::structure(fields)))
            }
            None => None,
        };
        record.key = Value::Struct(key);
        Ok(Some(record))
    }
}

// ---------------------------------------------------------------------------------------------

struct ExtractField {
    target: Target,
    field: String,
}

pub(crate) fn extract_field(
    t: Option<Target>,
    props: &Props,
) -> Result<Box<dyn Transform>, Errors> {
    let mut errors = Errors::new();
    let field = required(props, "field", &mut errors).to_owned();
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Box::new(ExtractField {
        target: target(t),
        field,
    }))
}

impl Transform for ExtractField {
    fn apply(&self, mut record: Record) -> Result<Option<Record>, ConnectError> {
        let (schema, value) = half(&mut record, self.target);
        if value.is_null() {
            return Ok(Some(record));
        }
        let Value::Struct(s) = value else {
            return Err(not_a_struct("ExtractField", self.target, value));
        };
        let extracted = s.remove(&self.field).unwrap_or_default();
        let new_schema = match schema.as_deref() {
            Some(sch) => Some(Arc::new(
                sch.field(&self.field)
                    .ok_or_else(|| {
                        ConnectError::user(format!(
                            "ExtractField: field {} not found in the {} schema",
                            self.field,
                            target_name(self.target)
                        ))
                    })?
                    .schema
                    .clone(),
            )),
            None => None,
        };
        *value = extracted;
        *schema = new_schema;
        Ok(Some(record))
    }
}

// ---------------------------------------------------------------------------------------------

struct HoistField {
    target: Target,
    field: String,
}

pub(crate) fn hoist_field(t: Option<Target>, props: &Props) -> Result<Box<dyn Transform>, Errors> {
    let mut errors = Errors::new();
    let field = required(props, "field", &mut errors).to_owned();
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Box::new(HoistField {
        target: target(t),
        field,
    }))
}

impl Transform for HoistField {
    fn apply(&self, mut record: Record) -> Result<Option<Record>, ConnectError> {
        let (schema, value) = half(&mut record, self.target);
        let inner = std::mem::take(value);
        *value = Value::Struct(Struct::new().with(self.field.clone(), inner));
        if let Some(inner_schema) = schema.take() {
            *schema = Some(Arc::new(Schema::structure(vec![Field {
                name: self.field.clone(),
                schema: (*inner_schema).clone(),
            }])));
        }
        Ok(Some(record))
    }
}
