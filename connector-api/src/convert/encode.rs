//! Streaming JSON encoding of a [`Value`], without building a `serde_json::Value` tree. It writes
//! exactly the JSON that [`value_to_json`](super::value_to_json) and
//! [`value_to_json_with_schema`](super::value_to_json_with_schema) produce.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use crate::{Schema, SchemaType, Value};

/// A value serialized as JSON, guided by its schema when it has one: struct fields in schema order,
/// defaults for nulls, bytes and decimals as base64, maps with non-string keys as `[key, value]`
/// pairs, non-finite floats as `null`.
#[derive(Debug, Clone, Copy)]
pub struct AsJson<'a> {
    /// The value.
    pub value: &'a Value,
    /// Its schema, if any.
    pub schema: Option<&'a Schema>,
}

impl<'a> AsJson<'a> {
    /// A value without a schema.
    pub fn schemaless(value: &'a Value) -> Self {
        Self {
            value,
            schema: None,
        }
    }

    fn child(value: &'a Value, schema: Option<&'a Schema>) -> Self {
        Self { value, schema }
    }
}

fn float<S: Serializer>(v: f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() {
        s.serialize_f64(v)
    } else {
        s.serialize_unit()
    }
}

impl Serialize for AsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let schema = self.schema;
        match (self.value, schema.map(|sc| sc.kind)) {
            (Value::Null, Some(_)) => match schema.and_then(|sc| sc.default.as_ref()) {
                Some(default) => AsJson::child(default, schema).serialize(s),
                None => s.serialize_unit(),
            },
            (Value::Array(items), Some(SchemaType::Array)) => {
                let items_schema = schema.and_then(|sc| sc.value_schema.as_deref());
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&AsJson::child(item, items_schema))?;
                }
                seq.end()
            }
            (Value::Map(entries), Some(SchemaType::Map)) => map(entries, schema, s),
            (Value::Struct(st), Some(SchemaType::Struct)) => {
                let fields = schema.map(|sc| sc.fields.as_slice()).unwrap_or_default();
                let mut out = s.serialize_map(Some(fields.len()))?;
                for field in fields {
                    let v = st.get(&field.name).unwrap_or(&Value::Null);
                    out.serialize_entry(&field.name, &AsJson::child(v, Some(&field.schema)))?;
                }
                out.end()
            }
            (value, _) => schemaless(value, s),
        }
    }
}

fn schemaless<S: Serializer>(value: &Value, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Value::Null => s.serialize_unit(),
        Value::Boolean(b) => s.serialize_bool(*b),
        Value::Int8(v) => s.serialize_i8(*v),
        Value::Int16(v) => s.serialize_i16(*v),
        Value::Int32(v) => s.serialize_i32(*v),
        Value::Int64(v) => s.serialize_i64(*v),
        Value::Float32(v) => float(f64::from(*v), s),
        Value::Float64(v) => float(*v, s),
        Value::String(v) => s.serialize_str(v),
        Value::Bytes(b) => s.serialize_str(&BASE64.encode(b)),
        Value::Array(items) => {
            let mut seq = s.serialize_seq(Some(items.len()))?;
            for item in items {
                seq.serialize_element(&AsJson::schemaless(item))?;
            }
            seq.end()
        }
        Value::Map(entries) => map(entries, None, s),
        Value::Struct(st) => {
            let mut out = s.serialize_map(Some(st.fields().len()))?;
            for (k, v) in st.fields() {
                out.serialize_entry(&**k, &AsJson::schemaless(v))?;
            }
            out.end()
        }
    }
}

fn map<S: Serializer>(
    entries: &[(Value, Value)],
    schema: Option<&Schema>,
    s: S,
) -> Result<S::Ok, S::Error> {
    let value_schema = schema.and_then(|sc| sc.value_schema.as_deref());
    if entries.iter().all(|(k, _)| matches!(k, Value::String(_))) {
        let mut out = s.serialize_map(Some(entries.len()))?;
        for (k, v) in entries {
            out.serialize_entry(&k.to_string(), &AsJson::child(v, value_schema))?;
        }
        out.end()
    } else {
        let key_schema = schema.and_then(|sc| sc.key_schema.as_deref());
        let mut seq = s.serialize_seq(Some(entries.len()))?;
        for (k, v) in entries {
            seq.serialize_element(&(AsJson::child(k, key_schema), AsJson::child(v, value_schema)))?;
        }
        seq.end()
    }
}
