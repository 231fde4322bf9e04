//! Streaming JSON decoding straight into [`Value`], without an intermediate `serde_json::Value`
//! tree. It accepts exactly what [`json_to_value`](super::json_to_value) and
//! [`json_to_value_with_schema`](super::json_to_value_with_schema) accept and produces the same
//! values; its errors are terse, so callers re-run the tree-based path to report where the JSON
//! went wrong.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::{FieldName, Schema, SchemaType, Struct, Value};

/// The field names a decoder has seen, each held once and shared by every record that has it.
///
/// Records of a topic mostly have the same fields in the same order, so a name is first compared
/// with the name asked for at the same point of the previous record, and looked up in a hash map
/// only when that differs. Bounded: past [`FieldNames::MAX`] distinct names (JSON objects used as
/// maps with arbitrary keys), the set starts over at the next record.
#[derive(Debug, Default)]
pub(crate) struct FieldNames {
    names: Vec<FieldName>,
    index: foldhash::HashMap<FieldName, u32>,
    /// Indexes into `names`, in the order the previous record asked for them.
    previous: Vec<u32>,
    current: Vec<u32>,
}

impl FieldNames {
    const MAX: usize = 4096;

    /// The shared name equal to `name`.
    fn get(&mut self, name: &str) -> FieldName {
        let i = match self.previous.get(self.current.len()) {
            Some(&i) if *self.names[i as usize] == *name => i,
            _ => match self.index.get(name) {
                Some(&i) => i,
                None => {
                    let i = self.names.len() as u32;
                    let shared = FieldName::from(name);
                    self.index.insert(FieldName::clone(&shared), i);
                    self.names.push(shared);
                    i
                }
            },
        };
        self.current.push(i);
        FieldName::clone(&self.names[i as usize])
    }

    /// Called between records, so that within a record equal names are the same allocation.
    pub(crate) fn next_record(&mut self) {
        std::mem::swap(&mut self.previous, &mut self.current);
        self.current.clear();
        if self.names.len() > Self::MAX {
            *self = Self::default();
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }
}

/// Decodes schemaless JSON: integers become `Int64`, other numbers `Float64`, objects structs.
pub(crate) struct Schemaless<'n>(pub &'n mut FieldNames);

impl<'de> DeserializeSeed<'de> for Schemaless<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(SchemalessVisitor(self.0))
    }
}

struct SchemalessVisitor<'n>(&'n mut FieldNames);

/// A field name, looked up in the decoder's [`FieldNames`] without allocating.
struct NameSeed<'n>(&'n mut FieldNames);

impl<'de> DeserializeSeed<'de> for NameSeed<'_> {
    type Value = FieldName;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<FieldName, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for NameSeed<'_> {
    type Value = FieldName;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<FieldName, E> {
        Ok(self.0.get(v))
    }
}

impl<'de> Visitor<'de> for SchemalessVisitor<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Boolean(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int64(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float64(v as f64), Value::Int64))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float64(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(Schemaless(&mut *self.0))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        // A repeated key replaces the earlier value (as `Struct::put` does). Within a record equal
        // names are one shared allocation (see `FieldNames::next_record`), so comparing pointers finds
        // repeats; this runs for every field of every record.
        let mut fields: Vec<(FieldName, Value)> = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(name) = map.next_key_seed(NameSeed(&mut *self.0))? {
            let value = map.next_value_seed(Schemaless(&mut *self.0))?;
            match fields.iter().position(|(k, _)| FieldName::ptr_eq(k, &name)) {
                Some(i) => fields[i].1 = value,
                None => fields.push((name, value)),
            }
        }
        Ok(Value::Struct(Struct::from_distinct(fields)))
    }
}

/// Decodes JSON that must follow `schema`.
pub(crate) struct WithSchema<'s>(pub &'s Schema);

impl<'de> DeserializeSeed<'de> for WithSchema<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(SchemaVisitor(self.0))
    }
}

struct SchemaVisitor<'s>(&'s Schema);

impl SchemaVisitor<'_> {
    fn mismatch<E: de::Error>(&self, found: &str) -> E {
        E::custom(format_args!(
            "expected {}, found {found}",
            self.0.kind.as_str()
        ))
    }

    fn null<E: de::Error>(&self) -> Result<Value, E> {
        null_for(self.0)
    }

    fn integer<E: de::Error>(&self, v: i64) -> Result<Value, E> {
        let out_of_range = || self.mismatch("an out-of-range number");
        Ok(match self.0.kind {
            SchemaType::Int8 => Value::Int8(i8::try_from(v).map_err(|_| out_of_range())?),
            SchemaType::Int16 => Value::Int16(i16::try_from(v).map_err(|_| out_of_range())?),
            SchemaType::Int32 => Value::Int32(i32::try_from(v).map_err(|_| out_of_range())?),
            SchemaType::Int64 => Value::Int64(v),
            SchemaType::Float32 => Value::Float32(v as f32),
            SchemaType::Float64 => Value::Float64(v as f64),
            _ => return Err(self.mismatch("number")),
        })
    }
}

fn null_for<E: de::Error>(schema: &Schema) -> Result<Value, E> {
    if let Some(default) = &schema.default {
        return Ok(default.clone());
    }
    if schema.optional {
        return Ok(Value::Null);
    }
    Err(E::custom(format_args!(
        "null for required {}",
        schema.kind.as_str()
    )))
}

impl<'de> Visitor<'de> for SchemaVisitor<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JSON for a {} schema", self.0.kind.as_str())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.null()
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.null()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        match self.0.kind {
            SchemaType::Boolean => Ok(Value::Boolean(v)),
            _ => Err(self.mismatch("boolean")),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.integer(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        match i64::try_from(v) {
            Ok(v) => self.integer(v),
            Err(_) => match self.0.kind {
                SchemaType::Float32 => Ok(Value::Float32(v as f32)),
                SchemaType::Float64 => Ok(Value::Float64(v as f64)),
                _ => Err(self.mismatch("an out-of-range number")),
            },
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        match self.0.kind {
            SchemaType::Float32 => Ok(Value::Float32(v as f32)),
            SchemaType::Float64 => Ok(Value::Float64(v)),
            _ => Err(self.mismatch("number")),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        match self.0.kind {
            SchemaType::String => Ok(Value::String(v.to_owned())),
            SchemaType::Bytes => BASE64.decode(v).map(Value::Bytes).map_err(E::custom),
            _ => Err(self.mismatch("string")),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        match self.0.kind {
            SchemaType::Array => {
                let items_schema = self
                    .0
                    .value_schema
                    .as_deref()
                    .ok_or_else(|| de::Error::custom("array schema without items"))?;
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(item) = seq.next_element_seed(WithSchema(items_schema))? {
                    items.push(item);
                }
                Ok(Value::Array(items))
            }
            SchemaType::Map => {
                let (Some(ks), Some(vs)) =
                    (self.0.key_schema.as_deref(), self.0.value_schema.as_deref())
                else {
                    return Err(de::Error::custom("map schema without keys or values"));
                };
                let mut entries = Vec::new();
                while let Some(pair) = seq.next_element_seed(Pair(ks, vs))? {
                    entries.push(pair);
                }
                Ok(Value::Map(entries))
            }
            _ => Err(self.mismatch("array")),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        match self.0.kind {
            SchemaType::Struct => {
                let fields = &self.0.fields;
                let mut slots: Vec<Option<Value>> = vec![None; fields.len()];
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match fields.iter().position(|f| f.name == key) {
                        Some(i) => {
                            slots[i] = Some(map.next_value_seed(WithSchema(&fields[i].schema))?)
                        }
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                let mut out = Struct::new();
                for (field, slot) in fields.iter().zip(slots) {
                    let value = match slot {
                        Some(v) => v,
                        None => null_for(&field.schema)?,
                    };
                    out.put(field.name.as_str(), value);
                }
                Ok(Value::Struct(out))
            }
            SchemaType::Map
                if self
                    .0
                    .key_schema
                    .as_deref()
                    .is_some_and(|k| k.kind == SchemaType::String) =>
            {
                let vs = self
                    .0
                    .value_schema
                    .as_deref()
                    .ok_or_else(|| de::Error::custom("map schema without values"))?;
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value = map.next_value_seed(WithSchema(vs))?;
                    let key = Value::String(key);
                    // A repeated key keeps its last value, as JSON object readers do.
                    match entries.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, v)) => *v = value,
                        None => entries.push((key, value)),
                    }
                }
                Ok(Value::Map(entries))
            }
            _ => Err(self.mismatch("object")),
        }
    }
}

/// A `[key, value]` pair of a map whose keys are not strings.
struct Pair<'s>(&'s Schema, &'s Schema);

impl<'de> DeserializeSeed<'de> for Pair<'_> {
    type Value = (Value, Value);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(Value, Value), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Pair<'_> {
    type Value = (Value, Value);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a [key, value] pair")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(Value, Value), A::Error> {
        let key = seq
            .next_element_seed(WithSchema(self.0))?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let value = seq
            .next_element_seed(WithSchema(self.1))?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(de::Error::invalid_length(3, &self));
        }
        Ok((key, value))
    }
}
