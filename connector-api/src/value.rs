//! Record keys and values in Kafka Connect's data model.
//!
//! A [`Value`] holds the physical representation; a [`Schema`](crate::Schema), when present, gives the
//! types and logical meaning. JSON objects read without a schema become [`Struct`]s whose fields keep
//! the document's order, so transforms treat schemaless and schemaful records the same way.

use std::fmt;
use std::sync::Arc;

/// A struct field's name. Shared rather than owned: a converter hands the same name to every record
/// that has the field, so decoding a record allocates nothing for its field names.
pub type FieldName = Arc<str>;

/// A key, value or field value.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// Absent value; a record whose value is `Null` is a tombstone.
    #[default]
    Null,
    /// Boolean.
    Boolean(bool),
    /// 8-bit integer.
    Int8(i8),
    /// 16-bit integer.
    Int16(i16),
    /// 32-bit integer (also dates and times of day).
    Int32(i32),
    /// 64-bit integer (also timestamps in milliseconds).
    Int64(i64),
    /// 32-bit float.
    Float32(f32),
    /// 64-bit float.
    Float64(f64),
    /// UTF-8 string.
    String(String),
    /// Raw bytes (also decimals' unscaled values).
    Bytes(Vec<u8>),
    /// A list.
    Array(Vec<Value>),
    /// A map with keys of any type, in insertion order.
    Map(Vec<(Value, Value)>),
    /// Named fields in order.
    Struct(Struct),
}

impl Value {
    /// A short name of the variant, used in error messages (`"int64"`, `"struct"`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Boolean(_) => "boolean",
            Value::Int8(_) => "int8",
            Value::Int16(_) => "int16",
            Value::Int32(_) => "int32",
            Value::Int64(_) => "int64",
            Value::Float32(_) => "float",
            Value::Float64(_) => "double",
            Value::String(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
            Value::Struct(_) => "struct",
        }
    }

    /// Whether this is [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The struct, if this is a struct.
    pub fn as_struct(&self) -> Option<&Struct> {
        match self {
            Value::Struct(s) => Some(s),
            _ => None,
        }
    }

    /// The struct, mutably, if this is a struct.
    pub fn as_struct_mut(&mut self) -> Option<&mut Struct> {
        match self {
            Value::Struct(s) => Some(s),
            _ => None,
        }
    }

    /// Any integer widened to `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int8(v) => Some(v.into()),
            Value::Int16(v) => Some(v.into()),
            Value::Int32(v) => Some(v.into()),
            Value::Int64(v) => Some(v),
            _ => None,
        }
    }

    /// Any number as `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Float32(v) => Some(v.into()),
            Value::Float64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }
}

impl fmt::Display for Value {
    /// Renders primitives as plain text (strings without quotes), and containers as JSON-like text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Boolean(v) => write!(f, "{v}"),
            Value::Int8(v) => write!(f, "{v}"),
            Value::Int16(v) => write!(f, "{v}"),
            Value::Int32(v) => write!(f, "{v}"),
            Value::Int64(v) => write!(f, "{v}"),
            Value::Float32(v) => write!(f, "{v}"),
            Value::Float64(v) => write!(f, "{v}"),
            Value::String(v) => f.write_str(v),
            Value::Bytes(v) => write!(f, "{}", String::from_utf8_lossy(v)),
            Value::Array(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Value::Map(entries) => {
                f.write_str("{")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}={v}")?;
                }
                f.write_str("}")
            }
            Value::Struct(s) => {
                f.write_str("Struct{")?;
                for (i, (k, v)) in s.fields().iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{k}={v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::String(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::String(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int64(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int32(v)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float64(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Boolean(v)
    }
}

/// Named fields in order. Lookups are linear: records have tens of fields, not thousands, and order
/// matters for schemas and output.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Struct {
    fields: Vec<(FieldName, Value)>,
}

impl Struct {
    /// An empty struct.
    pub fn new() -> Self {
        Self::default()
    }

    /// A struct of `fields`, in order; the caller guarantees the names are distinct.
    pub(crate) fn from_distinct(fields: Vec<(FieldName, Value)>) -> Self {
        Self { fields }
    }

    /// This struct with `name` set to `value` (builder style).
    pub fn with(mut self, name: impl Into<FieldName>, value: impl Into<Value>) -> Self {
        self.put(name, value);
        self
    }

    /// The field's value, if present.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find(|(k, _)| **k == *name)
            .map(|(_, v)| v)
    }

    /// The field's value, mutably, if present.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        self.fields
            .iter_mut()
            .find(|(k, _)| **k == *name)
            .map(|(_, v)| v)
    }

    /// Sets a field, replacing its value in place or appending it.
    pub fn put(&mut self, name: impl Into<FieldName>, value: impl Into<Value>) {
        let name = name.into();
        let value = value.into();
        match self.fields.iter_mut().find(|(k, _)| *k == name) {
            Some((_, v)) => *v = value,
            None => self.fields.push((name, value)),
        }
    }

    /// Removes a field, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let pos = self.fields.iter().position(|(k, _)| **k == *name)?;
        Some(self.fields.remove(pos).1)
    }

    /// Renames a field in place; returns whether it existed.
    pub fn rename(&mut self, from: &str, to: &str) -> bool {
        match self.fields.iter_mut().find(|(k, _)| **k == *from) {
            Some((k, _)) => {
                *k = FieldName::from(to);
                true
            }
            None => false,
        }
    }

    /// The fields in order.
    pub fn fields(&self) -> &[(FieldName, Value)] {
        &self.fields
    }

    /// Consumes the struct, returning its fields.
    pub fn into_fields(self) -> Vec<(FieldName, Value)> {
        self.fields
    }

    /// Keeps only the fields for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.fields.retain(|(k, _)| keep(k));
    }
}

impl<K: Into<FieldName>> FromIterator<(K, Value)> for Struct {
    fn from_iter<I: IntoIterator<Item = (K, Value)>>(iter: I) -> Self {
        Self {
            fields: iter.into_iter().map(|(k, v)| (k.into(), v)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_replaces_in_place_and_rename_keeps_order() {
        let mut s = Struct::new().with("a", 1i64).with("b", "x");
        s.put("a", 2i64);
        assert!(s.rename("b", "c"));
        assert_eq!(
            s.fields(),
            &[
                (FieldName::from("a"), Value::Int64(2)),
                (FieldName::from("c"), Value::String("x".into()))
            ]
        );
        assert_eq!(s.remove("a"), Some(Value::Int64(2)));
        assert!(s.get("a").is_none());
    }
}
