//! Converters between Kafka bytes and Connect data, compatible with Kafka Connect's
//! `JsonConverter` (with or without the `{"schema", "payload"}` envelope), `StringConverter` and
//! `ByteArrayConverter`.
//!
//! Round trip guarantee: for any value that fits its schema, `to_connect(to_bytes(v)) == v`
//! with the JSON converter when schemas are enabled. Without schemas, integers come back as
//! `Int64`, floats as `Float64` and objects as structs in document order.

use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;

mod decode;
mod encode;

pub use encode::AsJson;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value as Json};

use crate::config::Props;
use crate::{ConnectError, ConnectResult, Field, Schema, SchemaType, Struct, Value};

/// Turns record keys or values into bytes and back.
pub trait Converter: Send + Sync {
    /// Bytes read from `topic` (or `None` for a null key/value) to Connect data.
    fn to_connect(&self, topic: &str, data: Option<&[u8]>) -> ConnectResult<ConnectData>;

    /// Connect data to the bytes written to `topic`; `None` writes a null.
    fn to_bytes(
        &self,
        topic: &str,
        schema: Option<&Schema>,
        value: &Value,
    ) -> ConnectResult<Option<Vec<u8>>>;

    /// Whether this converter reads values as schemaless JSON (`JsonConverter` with
    /// `schemas.enable=false`), so that a sink task that decodes such JSON itself can be handed the
    /// bytes instead ([`SinkTask::takes_json_values`](crate::SinkTask::takes_json_values)).
    fn is_schemaless_json(&self) -> bool {
        false
    }
}

/// A value with its optional schema.
pub type ConnectData = (Option<Arc<Schema>>, Value);

/// Kafka Connect's class name of the JSON converter.
pub const JSON_CONVERTER: &str = "org.apache.kafka.connect.json.JsonConverter";
/// Kafka Connect's class name of the string converter.
pub const STRING_CONVERTER: &str = "org.apache.kafka.connect.storage.StringConverter";
/// Kafka Connect's class name of the byte array converter.
pub const BYTE_ARRAY_CONVERTER: &str = "org.apache.kafka.connect.converters.ByteArrayConverter";

/// The converter classes this crate provides, as `(class, aliases)`.
pub const CONVERTERS: &[(&str, &[&str])] = &[
    (JSON_CONVERTER, &["JsonConverter", "json"]),
    (STRING_CONVERTER, &["StringConverter", "string"]),
    (BYTE_ARRAY_CONVERTER, &["ByteArrayConverter", "bytes"]),
];

/// Builds the converter named by `class` (a class name or alias), configured by `props` (the
/// converter's properties with the `key.converter.` / `value.converter.` prefix removed).
pub fn converter_for(class: &str, props: &Props) -> Result<Box<dyn Converter>, String> {
    let class = CONVERTERS
        .iter()
        .find(|(name, aliases)| *name == class || aliases.iter().any(|a| a == &class))
        .map(|(name, _)| *name)
        .ok_or_else(|| {
            let known: Vec<_> = CONVERTERS.iter().map(|(n, _)| *n).collect();
            format!(
                "Unknown converter class {class}; available: {}",
                known.join(", ")
            )
        })?;
    Ok(match class {
        JSON_CONVERTER => {
            let schemas_enable = match props.get("schemas.enable").map(|s| s.trim()) {
                None => true,
                Some(v) if v.eq_ignore_ascii_case("true") => true,
                Some(v) if v.eq_ignore_ascii_case("false") => false,
                Some(v) => {
                    return Err(format!(
                        "Invalid value {v} for converter property schemas.enable: expected true or false"
                    ));
                }
            };
            Box::new(JsonConverter::new(schemas_enable))
        }
        STRING_CONVERTER => Box::new(StringConverter),
        _ => Box::new(ByteArrayConverter),
    })
}

/// JSON, optionally wrapped in Kafka Connect's `{"schema": ..., "payload": ...}` envelope.
///
/// Records of a topic nearly always share one schema, so the converter keeps the last schema it
/// read (keyed by its exact JSON text) and the last one it wrote (with its serialized form) instead
/// of parsing and serializing the schema of every record. The worker gives each task its own
/// converter, so these caches and the table of field names are not contended.
#[derive(Debug, Default)]
pub struct JsonConverter {
    /// Whether to read and write the envelope (`schemas.enable`, default true).
    pub schemas_enable: bool,
    read_cache: Mutex<Option<(String, Arc<Schema>)>>,
    write_cache: Mutex<Option<(Schema, Arc<[u8]>)>>,
    /// Field names of schemaless records, shared between records.
    names: Mutex<decode::FieldNames>,
}

/// The envelope, with the schema kept as raw text until it is known to be new.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    #[serde(borrow)]
    schema: &'a RawValue,
    #[serde(borrow)]
    payload: &'a RawValue,
}

/// Decodes a payload straight into a [`Value`]; when that fails, decodes it again through a JSON
/// tree to say where the JSON went wrong.
fn decode_payload(raw: &RawValue, schema: Option<&Schema>) -> Result<Value, String> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_str(raw.get());
    let fast = match schema {
        Some(s) => decode::WithSchema(s).deserialize(&mut de),
        None => decode::Schemaless(&mut decode::FieldNames::default()).deserialize(&mut de),
    };
    if let Ok(value) = fast {
        return Ok(value);
    }
    let json: Json = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
    match schema {
        Some(s) => json_to_value_with_schema(&json, s, "payload"),
        None => Ok(json_to_value(&json)),
    }
}

/// One schemaless JSON document (and nothing after it).
fn schemaless<'de, R: serde_json::de::Read<'de>>(
    de: &mut serde_json::Deserializer<R>,
    names: &mut decode::FieldNames,
) -> serde_json::Result<Value> {
    use serde::de::DeserializeSeed;
    let value = decode::Schemaless(names).deserialize(&mut *de)?;
    de.end()?;
    Ok(value)
}

const ENVELOPE_REQUIRED: &str = "JsonConverter with schemas.enable requires \"schema\" and \"payload\" fields and may not contain additional fields. If you are trying to deserialize plain JSON data, set schemas.enable=false in your converter configuration.";

impl JsonConverter {
    /// A converter with or without the envelope.
    pub fn new(schemas_enable: bool) -> Self {
        Self {
            schemas_enable,
            ..Self::default()
        }
    }

    fn read_schema(&self, raw: &RawValue) -> Result<Option<Arc<Schema>>, String> {
        let text = raw.get();
        if text == "null" {
            return Ok(None);
        }
        let mut cache = self.read_cache.lock();
        if let Some((cached, schema)) = cache.as_ref()
            && cached == text
        {
            return Ok(Some(Arc::clone(schema)));
        }
        let json: Json = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let schema = Arc::new(schema_from_json(&json)?);
        *cache = Some((text.to_owned(), Arc::clone(&schema)));
        Ok(Some(schema))
    }

    fn schema_bytes(&self, schema: &Schema) -> Arc<[u8]> {
        let mut cache = self.write_cache.lock();
        if let Some((cached, bytes)) = cache.as_ref()
            && cached == schema
        {
            return Arc::clone(bytes);
        }
        let bytes: Arc<[u8]> = schema_to_json(schema).to_string().into_bytes().into();
        *cache = Some((schema.clone(), Arc::clone(&bytes)));
        bytes
    }
}

impl Converter for JsonConverter {
    fn is_schemaless_json(&self) -> bool {
        !self.schemas_enable
    }

    fn to_connect(&self, topic: &str, data: Option<&[u8]>) -> ConnectResult<ConnectData> {
        let Some(data) = data else {
            return Ok((None, Value::Null));
        };
        let syntax = |e: serde_json::Error| {
            ConnectError::user(format!(
                "Converting byte[] to Kafka Connect data failed due to serialization error of topic {topic}: {e}"
            ))
        };
        if !self.schemas_enable {
            let mut names = self.names.lock();
            names.next_record();
            // Checking the whole message's UTF-8 at once is cheaper than serde_json checking each
            // string; invalid UTF-8 is decoded from bytes, for serde_json to say where it is.
            let value = match std::str::from_utf8(data) {
                Ok(text) => schemaless(&mut serde_json::Deserializer::from_str(text), &mut names),
                Err(_) => schemaless(&mut serde_json::Deserializer::from_slice(data), &mut names),
            };
            return Ok((None, value.map_err(syntax)?));
        }
        // serde would also accept `[schema, payload]`; only an object is an envelope.
        if data.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return match serde_json::from_slice::<serde::de::IgnoredAny>(data) {
                Ok(_) => Err(ConnectError::user(ENVELOPE_REQUIRED)),
                Err(e) => Err(syntax(e)),
            };
        }
        let envelope: Envelope<'_> = match serde_json::from_slice(data) {
            Ok(e) => e,
            Err(e) if e.is_data() => return Err(ConnectError::user(ENVELOPE_REQUIRED)),
            Err(e) => return Err(syntax(e)),
        };
        let schema = self
            .read_schema(envelope.schema)
            .map_err(ConnectError::user)?;
        let value =
            decode_payload(envelope.payload, schema.as_deref()).map_err(ConnectError::user)?;
        Ok((schema, value))
    }

    fn to_bytes(
        &self,
        _topic: &str,
        schema: Option<&Schema>,
        value: &Value,
    ) -> ConnectResult<Option<Vec<u8>>> {
        if value.is_null() && schema.is_none() {
            return Ok(None);
        }
        if let Some(schema) = schema {
            schema.check(value).map_err(ConnectError::user)?;
        }
        let payload = AsJson { value, schema };
        let failed =
            |e: serde_json::Error| ConnectError::internal("serializing JSON failed").with_source(e);
        if !self.schemas_enable {
            return serde_json::to_vec(&payload).map(Some).map_err(failed);
        }
        let schema_bytes = schema.map(|s| self.schema_bytes(s));
        let mut out = Vec::with_capacity(64 + schema_bytes.as_ref().map_or(4, |b| b.len()));
        out.extend_from_slice(b"{\"schema\":");
        out.extend_from_slice(schema_bytes.as_deref().unwrap_or(b"null"));
        out.extend_from_slice(b",\"payload\":");
        serde_json::to_writer(&mut out, &payload).map_err(failed)?;
        out.push(b'}');
        Ok(Some(out))
    }
}

/// UTF-8 text. Values are written with their plain text form.
#[derive(Debug, Clone, Copy)]
pub struct StringConverter;

impl Converter for StringConverter {
    fn to_connect(&self, topic: &str, data: Option<&[u8]>) -> ConnectResult<ConnectData> {
        static SCHEMA: LazyLock<Arc<Schema>> =
            LazyLock::new(|| Arc::new(Schema::new(SchemaType::String).optional()));
        let schema = Some(Arc::clone(&SCHEMA));
        match data {
            None => Ok((schema, Value::Null)),
            Some(bytes) => match std::str::from_utf8(bytes) {
                Ok(s) => Ok((schema, Value::String(s.to_owned()))),
                Err(e) => Err(ConnectError::user(format!(
                    "Failed to deserialize string from topic {topic}: {e}"
                ))),
            },
        }
    }

    fn to_bytes(
        &self,
        _topic: &str,
        _schema: Option<&Schema>,
        value: &Value,
    ) -> ConnectResult<Option<Vec<u8>>> {
        Ok(match value {
            Value::Null => None,
            Value::String(s) => Some(s.as_bytes().to_vec()),
            Value::Bytes(b) => Some(b.clone()),
            other => Some(other.to_string().into_bytes()),
        })
    }
}

/// Bytes passed through untouched.
#[derive(Debug, Clone, Copy)]
pub struct ByteArrayConverter;

impl Converter for ByteArrayConverter {
    fn to_connect(&self, _topic: &str, data: Option<&[u8]>) -> ConnectResult<ConnectData> {
        static SCHEMA: LazyLock<Arc<Schema>> =
            LazyLock::new(|| Arc::new(Schema::new(SchemaType::Bytes).optional()));
        let schema = Some(Arc::clone(&SCHEMA));
        Ok((
            schema,
            data.map(|b| Value::Bytes(b.to_vec())).unwrap_or_default(),
        ))
    }

    fn to_bytes(
        &self,
        _topic: &str,
        _schema: Option<&Schema>,
        value: &Value,
    ) -> ConnectResult<Option<Vec<u8>>> {
        match value {
            Value::Null => Ok(None),
            Value::Bytes(b) => Ok(Some(b.clone())),
            other => Err(ConnectError::user(format!(
                "ByteArrayConverter is not compatible with objects of type {}",
                other.type_name()
            ))),
        }
    }
}

/// Schemaless JSON to a value: integers become `Int64`, other numbers `Float64`, objects structs.
pub fn json_to_value(json: &Json) -> Value {
    match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int64(i),
            None => Value::Float64(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::String(s.clone()),
        Json::Array(items) => Value::Array(items.iter().map(json_to_value).collect()),
        Json::Object(map) => Value::Struct(
            map.iter()
                .map(|(k, v)| (k.clone(), json_to_value(v)))
                .collect(),
        ),
    }
}

/// A value to schemaless JSON: bytes become base64, maps with string keys objects, other maps
/// arrays of `[key, value]` pairs.
pub fn value_to_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Int8(v) => (*v).into(),
        Value::Int16(v) => (*v).into(),
        Value::Int32(v) => (*v).into(),
        Value::Int64(v) => (*v).into(),
        Value::Float32(v) => float_json(f64::from(*v)),
        Value::Float64(v) => float_json(*v),
        Value::String(s) => Json::String(s.clone()),
        Value::Bytes(b) => Json::String(BASE64.encode(b)),
        Value::Array(items) => Json::Array(items.iter().map(value_to_json).collect()),
        Value::Map(entries) => map_to_json(entries, None),
        Value::Struct(s) => Json::Object(
            s.fields()
                .iter()
                .map(|(k, v)| (k.to_string(), value_to_json(v)))
                .collect(),
        ),
    }
}

fn float_json(v: f64) -> Json {
    Number::from_f64(v).map(Json::Number).unwrap_or(Json::Null)
}

fn map_to_json(entries: &[(Value, Value)], schema: Option<&Schema>) -> Json {
    let value_schema = schema.and_then(|s| s.value_schema.as_deref());
    let convert = |v: &Value| match value_schema {
        Some(s) => value_to_json_with_schema(v, s),
        None => value_to_json(v),
    };
    if entries.iter().all(|(k, _)| matches!(k, Value::String(_))) {
        Json::Object(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), convert(v)))
                .collect(),
        )
    } else {
        let key_schema = schema.and_then(|s| s.key_schema.as_deref());
        Json::Array(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match key_schema {
                        Some(s) => value_to_json_with_schema(k, s),
                        None => value_to_json(k),
                    };
                    Json::Array(vec![key, convert(v)])
                })
                .collect(),
        )
    }
}

/// A value to JSON guided by its schema (struct fields in schema order, defaults applied).
pub fn value_to_json_with_schema(value: &Value, schema: &Schema) -> Json {
    match (value, schema.kind) {
        (Value::Null, _) => schema
            .default
            .as_ref()
            .map(|d| value_to_json_with_schema(d, schema))
            .unwrap_or(Json::Null),
        (Value::Array(items), SchemaType::Array) => Json::Array(
            items
                .iter()
                .map(|v| match schema.value_schema.as_deref() {
                    Some(s) => value_to_json_with_schema(v, s),
                    None => value_to_json(v),
                })
                .collect(),
        ),
        (Value::Map(entries), SchemaType::Map) => map_to_json(entries, Some(schema)),
        (Value::Struct(s), SchemaType::Struct) => Json::Object(
            schema
                .fields
                .iter()
                .map(|f| {
                    let v = s.get(&f.name).unwrap_or(&Value::Null);
                    (f.name.clone(), value_to_json_with_schema(v, &f.schema))
                })
                .collect(),
        ),
        (other, _) => value_to_json(other),
    }
}

/// JSON to a value of the given schema; errors name the JSON path.
pub fn json_to_value_with_schema(
    json: &Json,
    schema: &Schema,
    path: &str,
) -> Result<Value, String> {
    if json.is_null() {
        if let Some(default) = &schema.default {
            return Ok(default.clone());
        }
        if schema.optional {
            return Ok(Value::Null);
        }
        return Err(format!(
            "Invalid null value for required {} field at {path}",
            schema.kind.as_str()
        ));
    }
    let mismatch = || {
        format!(
            "Invalid JSON at {path}: expected {}, found {}",
            schema.kind.as_str(),
            json_type(json)
        )
    };
    let int = |min: i64, max: i64| {
        json.as_i64()
            .filter(|v| (min..=max).contains(v))
            .ok_or_else(mismatch)
    };
    Ok(match schema.kind {
        SchemaType::Int8 => Value::Int8(int(i8::MIN.into(), i8::MAX.into())? as i8),
        SchemaType::Int16 => Value::Int16(int(i16::MIN.into(), i16::MAX.into())? as i16),
        SchemaType::Int32 => Value::Int32(int(i32::MIN.into(), i32::MAX.into())? as i32),
        SchemaType::Int64 => Value::Int64(json.as_i64().ok_or_else(mismatch)?),
        SchemaType::Float32 => Value::Float32(json.as_f64().ok_or_else(mismatch)? as f32),
        SchemaType::Float64 => Value::Float64(json.as_f64().ok_or_else(mismatch)?),
        SchemaType::Boolean => Value::Boolean(json.as_bool().ok_or_else(mismatch)?),
        SchemaType::String => Value::String(json.as_str().ok_or_else(mismatch)?.to_owned()),
        SchemaType::Bytes => {
            let text = json.as_str().ok_or_else(mismatch)?;
            Value::Bytes(
                BASE64
                    .decode(text)
                    .map_err(|e| format!("Invalid base64 bytes at {path}: {e}"))?,
            )
        }
        SchemaType::Array => {
            let items = json.as_array().ok_or_else(mismatch)?;
            let item_schema = schema
                .value_schema
                .as_deref()
                .ok_or_else(|| format!("Array schema at {path} has no items schema"))?;
            Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        json_to_value_with_schema(item, item_schema, &format!("{path}[{i}]"))
                    })
                    .collect::<Result<_, _>>()?,
            )
        }
        SchemaType::Map => {
            let (Some(ks), Some(vs)) =
                (schema.key_schema.as_deref(), schema.value_schema.as_deref())
            else {
                return Err(format!("Map schema at {path} lacks keys or values schema"));
            };
            match json {
                Json::Object(map) if ks.kind == SchemaType::String => Value::Map(
                    map.iter()
                        .map(|(k, v)| {
                            Ok((
                                Value::String(k.clone()),
                                json_to_value_with_schema(v, vs, &format!("{path}.{k}"))?,
                            ))
                        })
                        .collect::<Result<_, String>>()?,
                ),
                Json::Array(pairs) => Value::Map(
                    pairs
                        .iter()
                        .enumerate()
                        .map(|(i, pair)| match pair.as_array().map(Vec::as_slice) {
                            Some([k, v]) => Ok((
                                json_to_value_with_schema(k, ks, &format!("{path}[{i}][0]"))?,
                                json_to_value_with_schema(v, vs, &format!("{path}[{i}][1]"))?,
                            )),
                            _ => Err(format!(
                                "Invalid JSON at {path}[{i}]: expected a [key, value] pair"
                            )),
                        })
                        .collect::<Result<_, String>>()?,
                ),
                _ => return Err(mismatch()),
            }
        }
        SchemaType::Struct => {
            let object = json.as_object().ok_or_else(mismatch)?;
            let mut out = Struct::new();
            for field in &schema.fields {
                let v = object.get(&field.name).unwrap_or(&Json::Null);
                out.put(
                    field.name.clone(),
                    json_to_value_with_schema(v, &field.schema, &format!("{path}.{}", field.name))?,
                );
            }
            Value::Struct(out)
        }
    })
}

fn json_type(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

/// A schema in the JSON envelope's form.
pub fn schema_to_json(schema: &Schema) -> Json {
    let mut out = Map::new();
    out.insert("type".into(), schema.kind.as_str().into());
    match schema.kind {
        SchemaType::Struct => {
            let fields = schema
                .fields
                .iter()
                .map(|f| {
                    let mut fj = schema_to_json(&f.schema);
                    if let Json::Object(m) = &mut fj {
                        m.insert("field".into(), f.name.clone().into());
                    }
                    fj
                })
                .collect();
            out.insert("fields".into(), Json::Array(fields));
        }
        SchemaType::Array => {
            if let Some(items) = &schema.value_schema {
                out.insert("items".into(), schema_to_json(items));
            }
        }
        SchemaType::Map => {
            if let Some(keys) = &schema.key_schema {
                out.insert("keys".into(), schema_to_json(keys));
            }
            if let Some(values) = &schema.value_schema {
                out.insert("values".into(), schema_to_json(values));
            }
        }
        _ => {}
    }
    out.insert("optional".into(), schema.optional.into());
    if let Some(name) = &schema.name {
        out.insert("name".into(), name.clone().into());
    }
    if let Some(version) = schema.version {
        out.insert("version".into(), version.into());
    }
    if let Some(doc) = &schema.doc {
        out.insert("doc".into(), doc.clone().into());
    }
    if !schema.parameters.is_empty() {
        out.insert(
            "parameters".into(),
            Json::Object(
                schema
                    .parameters
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone().into()))
                    .collect(),
            ),
        );
    }
    if let Some(default) = &schema.default {
        out.insert("default".into(), value_to_json_with_schema(default, schema));
    }
    Json::Object(out)
}

/// Parses a schema from the JSON envelope's form.
pub fn schema_from_json(json: &Json) -> Result<Schema, String> {
    let obj = json
        .as_object()
        .ok_or("Schema must be a JSON object".to_owned())?;
    let type_name = obj
        .get("type")
        .and_then(Json::as_str)
        .ok_or("Schema must contain a \"type\" field".to_owned())?;
    let kind = SchemaType::parse(type_name).ok_or(format!("Unknown schema type: {type_name}"))?;
    let mut schema = Schema::new(kind);
    schema.optional = obj.get("optional").and_then(Json::as_bool).unwrap_or(false);
    schema.name = obj.get("name").and_then(Json::as_str).map(str::to_owned);
    schema.version = obj
        .get("version")
        .and_then(Json::as_i64)
        .and_then(|v| i32::try_from(v).ok());
    schema.doc = obj.get("doc").and_then(Json::as_str).map(str::to_owned);
    if let Some(Json::Object(params)) = obj.get("parameters") {
        for (k, v) in params {
            let v = v
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string());
            schema.parameters.insert(k.clone(), v);
        }
    }
    match kind {
        SchemaType::Struct => {
            let fields = obj
                .get("fields")
                .and_then(Json::as_array)
                .ok_or("Struct schema's \"fields\" argument is not an array.".to_owned())?;
            for f in fields {
                let name = f
                    .get("field")
                    .and_then(Json::as_str)
                    .ok_or("Struct schema's field name not specified properly".to_owned())?;
                schema.fields.push(Field {
                    name: name.to_owned(),
                    schema: schema_from_json(f)?,
                });
            }
        }
        SchemaType::Array => {
            let items = obj
                .get("items")
                .ok_or("Array schema did not specify the items type".to_owned())?;
            schema.value_schema = Some(Box::new(schema_from_json(items)?));
        }
        SchemaType::Map => {
            let keys = obj
                .get("keys")
                .ok_or("Map schema did not specify the key type".to_owned())?;
            let values = obj
                .get("values")
                .ok_or("Map schema did not specify the value type".to_owned())?;
            schema.key_schema = Some(Box::new(schema_from_json(keys)?));
            schema.value_schema = Some(Box::new(schema_from_json(values)?));
        }
        _ => {}
    }
    if let Some(default) = obj.get("default").filter(|d| !d.is_null()) {
        schema.default = Some(json_to_value_with_schema(default, &schema, "default")?);
    }
    Ok(schema)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FieldName;

    fn order_schema() -> Schema {
        Schema::structure(vec![
            Field {
                name: "id".into(),
                schema: Schema::new(SchemaType::Int32),
            },
            Field {
                name: "price".into(),
                schema: Schema::decimal(2),
            },
            Field {
                name: "tags".into(),
                schema: Schema::array(Schema::new(SchemaType::String)).optional(),
            },
            Field {
                name: "attrs".into(),
                schema: Schema::map(
                    Schema::new(SchemaType::String),
                    Schema::new(SchemaType::Int64),
                ),
            },
        ])
        .named("order")
    }

    #[test]
    fn envelope_round_trip_preserves_schema_and_value() {
        let conv = JsonConverter::new(true);
        let value = Value::Struct(
            Struct::new()
                .with("id", 7i32)
                .with("price", Value::Bytes(vec![0x04, 0xd2]))
                .with("tags", Value::Array(vec!["a".into()]))
                .with(
                    "attrs",
                    Value::Map(vec![(Value::from("k"), Value::Int64(1))]),
                ),
        );
        let schema = order_schema();
        let bytes = conv.to_bytes("t", Some(&schema), &value).unwrap().unwrap();
        let json: Json = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["schema"]["name"], "order");
        assert_eq!(json["schema"]["fields"][1]["parameters"]["scale"], "2");
        assert_eq!(json["payload"]["price"], "BNI=");
        let (back_schema, back) = conv.to_connect("t", Some(&bytes)).unwrap();
        assert_eq!(back_schema.as_deref(), Some(&schema));
        assert_eq!(back, value);
    }

    #[test]
    fn schema_caches_follow_schema_changes() {
        let conv = JsonConverter::new(true);
        let a = order_schema();
        let b = Schema::structure(vec![Field {
            name: "id".into(),
            schema: Schema::new(SchemaType::String),
        }]);
        let va = Value::Struct(
            Struct::new()
                .with("id", 1i32)
                .with("price", Value::Bytes(vec![1]))
                .with("tags", Value::Null)
                .with("attrs", Value::Map(vec![])),
        );
        let vb = Value::Struct(Struct::new().with("id", "x"));
        for (schema, value) in [(&a, &va), (&b, &vb), (&a, &va), (&b, &vb)] {
            let bytes = conv.to_bytes("t", Some(schema), value).unwrap().unwrap();
            let json: Json = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(schema_from_json(&json["schema"]).unwrap(), *schema);
            let (read_schema, read_value) = conv.to_connect("t", Some(&bytes)).unwrap();
            assert_eq!(read_schema.as_deref(), Some(schema));
            assert_eq!(&read_value, value);
        }
    }

    #[test]
    fn streaming_decoder_agrees_with_the_tree_decoder() {
        use serde::de::DeserializeSeed;
        let schema = order_schema().optional();
        let with_default = {
            let mut s = Schema::new(SchemaType::Int32);
            s.default = Some(Value::Int32(9));
            s
        };
        let big_int = Schema::new(SchemaType::Int64);
        let floats = Schema::new(SchemaType::Float32);
        let pairs = Schema::map(
            Schema::new(SchemaType::Int32),
            Schema::new(SchemaType::String),
        );
        let cases: Vec<(&Schema, &str)> = vec![
            (
                &schema,
                r#"{"id": 1, "price": "BNI=", "tags": ["a", "b"], "attrs": {"x": 5}}"#,
            ),
            (
                &schema,
                r#"{"attrs": {}, "id": -2147483648, "price": "", "extra": {"deep": [1, {"z": null}]}}"#,
            ),
            (&schema, r#"{"id": 2147483648, "price": "", "attrs": {}}"#),
            (&schema, r#"{"id": 1.5, "price": "", "attrs": {}}"#),
            (&schema, r#"{"id": 1, "price": "not base64!", "attrs": {}}"#),
            (&schema, r#"{"id": 1, "price": "", "attrs": {"x": "five"}}"#),
            (&schema, r#"{"price": "", "attrs": {}}"#),
            (&schema, "null"),
            (&schema, "[1]"),
            (
                &schema,
                r#"{"id": 1, "price": "", "tags": null, "attrs": {"a": 1, "a": 2}}"#,
            ),
            (&with_default, "null"),
            (&with_default, "7"),
            (&big_int, "18446744073709551615"),
            (&big_int, "-9223372036854775808"),
            (&floats, "3"),
            (&floats, "1e300"),
            (&pairs, r#"[[1, "one"], [2, "two"]]"#),
            (&pairs, r#"[[1, "one", 3]]"#),
            (&pairs, r#"{"1": "one"}"#),
        ];
        for (schema, text) in cases {
            let json: Json = serde_json::from_str(text).unwrap();
            let tree = json_to_value_with_schema(&json, schema, "payload");
            let mut de = serde_json::Deserializer::from_str(text);
            let fast = decode::WithSchema(schema).deserialize(&mut de);
            match (&tree, &fast) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
                (Err(_), Err(_)) => {}
                _ => panic!("decoders disagree on {text}: tree {tree:?}, streaming {fast:?}"),
            }
        }
        let schemaless = [
            r#"{"b": 1, "a": [1.5, "x", null, true, {"c": -3}]}"#,
            "18446744073709551615",
            "\"s\"",
        ];
        for text in schemaless {
            let tree = json_to_value(&serde_json::from_str(text).unwrap());
            let mut de = serde_json::Deserializer::from_str(text);
            let fast = decode::Schemaless(&mut decode::FieldNames::default())
                .deserialize(&mut de)
                .unwrap();
            assert_eq!(tree, fast, "{text}");
        }
    }

    #[test]
    fn streaming_encoder_writes_what_the_tree_encoder_writes() {
        let schema = order_schema();
        let mut with_default = Schema::new(SchemaType::Int32).optional();
        with_default.default = Some(Value::Int32(9));
        let nested = Schema::structure(vec![
            Field {
                name: "order".into(),
                schema: order_schema().optional(),
            },
            Field {
                name: "n".into(),
                schema: with_default.clone(),
            },
            Field {
                name: "pairs".into(),
                schema: Schema::map(
                    Schema::new(SchemaType::Int32),
                    Schema::new(SchemaType::Float32),
                ),
            },
        ]);
        let order = Value::Struct(
            Struct::new()
                .with(
                    "attrs",
                    Value::Map(vec![(Value::from("k"), Value::Int64(-1))]),
                )
                .with("id", 7i32)
                .with("price", Value::Bytes(vec![0x04, 0xd2]))
                .with("tags", Value::Array(vec!["a\"q".into(), "\u{e9}".into()])),
        );
        let with_schema: Vec<(&Schema, Value)> = vec![
            (&schema, order.clone()),
            (&with_default, Value::Null),
            (
                &nested,
                Value::Struct(Struct::new().with("order", order.clone()).with(
                    "pairs",
                    Value::Map(vec![(Value::Int32(1), Value::Float32(0.1))]),
                )),
            ),
            (
                &nested,
                Value::Struct(Struct::new().with("pairs", Value::Map(vec![]))),
            ),
        ];
        for (schema, value) in &with_schema {
            let tree = serde_json::to_vec(&value_to_json_with_schema(value, schema)).unwrap();
            let fast = serde_json::to_vec(&AsJson {
                value,
                schema: Some(schema),
            })
            .unwrap();
            assert_eq!(
                String::from_utf8(fast).unwrap(),
                String::from_utf8(tree).unwrap()
            );
        }
        let schemaless = [
            order,
            Value::Float64(f64::NAN),
            Value::Float32(1.5),
            Value::Map(vec![
                (Value::Int8(1), Value::Null),
                (Value::from("x"), Value::Boolean(true)),
            ]),
            Value::Array(vec![
                Value::Int16(-3),
                Value::Bytes(b"hi".to_vec()),
                Value::Null,
            ]),
        ];
        for value in &schemaless {
            let tree = serde_json::to_vec(&value_to_json(value)).unwrap();
            let fast = serde_json::to_vec(&AsJson::schemaless(value)).unwrap();
            assert_eq!(
                String::from_utf8(fast).unwrap(),
                String::from_utf8(tree).unwrap()
            );
        }
    }

    #[test]
    fn malformed_json_and_missing_envelope_are_told_apart() {
        let conv = JsonConverter::new(true);
        let syntax = conv.to_connect("t", Some(b"{\"schema\": ")).unwrap_err();
        assert!(
            syntax.message().contains("serialization error of topic t"),
            "{syntax}"
        );
        let shape = conv.to_connect("t", Some(b"[1, 2]")).unwrap_err();
        assert!(shape.message().contains("schemas.enable=false"), "{shape}");
    }

    #[test]
    fn envelope_required_when_schemas_enabled() {
        let conv = JsonConverter::new(true);
        let err = conv.to_connect("t", Some(br#"{"a": 1}"#)).unwrap_err();
        assert!(err.message().contains("schemas.enable=false"), "{err}");
    }

    #[test]
    fn schemaless_json_repeated_keys_keep_the_last_value() {
        let conv = JsonConverter::new(false);
        let (_, value) = conv
            .to_connect("t", Some(br#"{"ab": 1, "ax": 2, "ab": 3}"#))
            .unwrap();
        let s = value.as_struct().unwrap();
        assert_eq!(s.fields().len(), 2);
        assert_eq!(s.get("ab"), Some(&Value::Int64(3)));
        assert_eq!(s.get("ax"), Some(&Value::Int64(2)));
    }

    #[test]
    fn schemaless_json_with_invalid_utf8_is_a_serialization_error() {
        let conv = JsonConverter::new(false);
        let err = conv
            .to_connect("t", Some(b"{\"a\": \"\xff\"}"))
            .unwrap_err();
        assert!(
            err.message().contains("serialization error of topic t"),
            "{err}"
        );
        assert!(err.message().contains("line 1 column"), "{err}");
    }

    #[test]
    fn schemaless_records_share_field_names_and_repeats_still_collapse() {
        let conv = JsonConverter::new(false);
        let decode = |json: &[u8]| conv.to_connect("t", Some(json)).unwrap().1;
        let first = decode(br#"{"id": 1, "nested": {"id": 2, "id": 3}}"#);
        let second = decode(br#"{"id": 4}"#);
        let name = |v: &Value| FieldName::clone(&v.as_struct().unwrap().fields()[0].0);
        assert!(FieldName::ptr_eq(&name(&first), &name(&second)));
        let nested = first.as_struct().unwrap().get("nested").unwrap();
        assert_eq!(nested.as_struct().unwrap().fields().len(), 1);
        assert_eq!(
            nested.as_struct().unwrap().get("id"),
            Some(&Value::Int64(3))
        );
        // Past the bound the set starts over, and decoding still collapses repeats.
        for i in 0..5000 {
            decode(format!(r#"{{"k{i}": {i}}}"#).as_bytes());
        }
        let again = decode(br#"{"k1": 1, "k1": 2}"#);
        assert_eq!(again.as_struct().unwrap().fields().len(), 1);
        assert!(conv.names.lock().len() <= 4097);
    }

    #[test]
    fn schemaless_json_keeps_field_order() {
        let conv = JsonConverter::new(false);
        let (schema, value) = conv
            .to_connect("t", Some(br#"{"z": 1, "a": 2.5, "m": null}"#))
            .unwrap();
        assert!(schema.is_none());
        let names: Vec<_> = value
            .as_struct()
            .unwrap()
            .fields()
            .iter()
            .map(|(k, _)| &**k)
            .collect();
        assert_eq!(names, ["z", "a", "m"]);
        let out = conv.to_bytes("t", None, &value).unwrap().unwrap();
        assert_eq!(out, br#"{"z":1,"a":2.5,"m":null}"#);
    }

    #[test]
    fn wrong_payload_type_names_the_path() {
        let conv = JsonConverter::new(true);
        let msg = br#"{"schema":{"type":"struct","fields":[{"type":"int32","field":"id"}]},"payload":{"id":"x"}}"#;
        let err = conv.to_connect("t", Some(msg)).unwrap_err();
        assert_eq!(
            err.message(),
            "Invalid JSON at payload.id: expected int32, found string"
        );
    }

    #[test]
    fn null_is_a_tombstone() {
        let conv = JsonConverter::new(true);
        assert_eq!(conv.to_connect("t", None).unwrap(), (None, Value::Null));
        assert_eq!(conv.to_bytes("t", None, &Value::Null).unwrap(), None);
    }

    #[test]
    fn converters_resolve_by_alias_and_reject_unknown() {
        assert!(converter_for("json", &Props::new()).is_ok());
        assert!(converter_for(STRING_CONVERTER, &Props::new()).is_ok());
        let err = converter_for("avro", &Props::new()).err().unwrap();
        assert!(err.contains("JsonConverter"), "{err}");
    }

    #[test]
    fn byte_array_rejects_structs() {
        let err = ByteArrayConverter
            .to_bytes("t", None, &Value::Struct(Struct::new()))
            .unwrap_err();
        assert!(err.message().contains("struct"));
    }
}
