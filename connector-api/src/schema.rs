//! Kafka Connect's schema model: primitive, struct, array and map schemas, with logical types
//! (decimal, date, time, timestamp) named the way Kafka Connect names them.
//!
//! A schema describes a [`Value`](crate::Value). Values always carry their physical representation
//! (a date is an `Int32` of days since the epoch); the schema's [`name`](Schema::name) says which
//! logical type it is. Sinks that map to typed formats (Arrow, Parquet, SQL) read the schema; sinks that
//! write text can ignore it.

use std::collections::BTreeMap;

use crate::Value;

/// The physical type of a schema, as written in a JSON envelope's `"type"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaType {
    /// 8-bit signed integer (`int8`).
    Int8,
    /// 16-bit signed integer (`int16`).
    Int16,
    /// 32-bit signed integer (`int32`).
    Int32,
    /// 64-bit signed integer (`int64`).
    Int64,
    /// 32-bit IEEE float (`float`).
    Float32,
    /// 64-bit IEEE float (`double`).
    Float64,
    /// `boolean`.
    Boolean,
    /// UTF-8 string (`string`).
    String,
    /// Raw bytes (`bytes`).
    Bytes,
    /// A list whose items follow [`Schema::value_schema`] (`array`).
    Array,
    /// A map from [`Schema::key_schema`] to [`Schema::value_schema`] (`map`).
    Map,
    /// Named fields in order (`struct`).
    Struct,
}

impl SchemaType {
    /// The name used in the JSON envelope.
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaType::Int8 => "int8",
            SchemaType::Int16 => "int16",
            SchemaType::Int32 => "int32",
            SchemaType::Int64 => "int64",
            SchemaType::Float32 => "float",
            SchemaType::Float64 => "double",
            SchemaType::Boolean => "boolean",
            SchemaType::String => "string",
            SchemaType::Bytes => "bytes",
            SchemaType::Array => "array",
            SchemaType::Map => "map",
            SchemaType::Struct => "struct",
        }
    }

    /// Parses the JSON envelope's type name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "int8" => SchemaType::Int8,
            "int16" => SchemaType::Int16,
            "int32" => SchemaType::Int32,
            "int64" => SchemaType::Int64,
            "float" => SchemaType::Float32,
            "double" => SchemaType::Float64,
            "boolean" => SchemaType::Boolean,
            "string" => SchemaType::String,
            "bytes" => SchemaType::Bytes,
            "array" => SchemaType::Array,
            "map" => SchemaType::Map,
            "struct" => SchemaType::Struct,
            _ => return None,
        })
    }

    /// Whether this is a primitive (not array, map or struct).
    pub fn is_primitive(self) -> bool {
        !matches!(
            self,
            SchemaType::Array | SchemaType::Map | SchemaType::Struct
        )
    }
}

/// Logical type names, identical to Kafka Connect's so that schemas interoperate.
pub mod logical {
    /// Arbitrary-precision decimal: `bytes` holding the big-endian two's-complement unscaled value;
    /// the `scale` parameter gives the number of fractional digits.
    pub const DECIMAL: &str = "org.apache.kafka.connect.data.Decimal";
    /// Calendar date: `int32` days since 1970-01-01.
    pub const DATE: &str = "org.apache.kafka.connect.data.Date";
    /// Time of day: `int32` milliseconds since midnight.
    pub const TIME: &str = "org.apache.kafka.connect.data.Time";
    /// Instant: `int64` milliseconds since the Unix epoch (UTC).
    pub const TIMESTAMP: &str = "org.apache.kafka.connect.data.Timestamp";
    /// The decimal's scale parameter name.
    pub const SCALE_PARAMETER: &str = "scale";
}

/// A field of a struct schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// Field name.
    pub name: String,
    /// Field schema.
    pub schema: Schema,
}

/// A Kafka Connect schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    /// Physical type.
    pub kind: SchemaType,
    /// Whether the value may be null.
    pub optional: bool,
    /// Schema name; for logical types one of the [`logical`] names.
    pub name: Option<String>,
    /// Schema version.
    pub version: Option<i32>,
    /// Documentation.
    pub doc: Option<String>,
    /// Free-form parameters (for example a decimal's `scale`).
    pub parameters: BTreeMap<String, String>,
    /// Default value.
    pub default: Option<Value>,
    /// Fields of a struct schema, in order.
    pub fields: Vec<Field>,
    /// Key schema of a map.
    pub key_schema: Option<Box<Schema>>,
    /// Value schema of a map, or item schema of an array.
    pub value_schema: Option<Box<Schema>>,
}

impl Schema {
    /// A required schema of the given primitive type.
    pub fn new(kind: SchemaType) -> Self {
        Self {
            kind,
            optional: false,
            name: None,
            version: None,
            doc: None,
            parameters: BTreeMap::new(),
            default: None,
            fields: Vec::new(),
            key_schema: None,
            value_schema: None,
        }
    }

    /// A struct schema with the given fields.
    pub fn structure(fields: Vec<Field>) -> Self {
        Self {
            fields,
            ..Self::new(SchemaType::Struct)
        }
    }

    /// An array schema whose items follow `items`.
    pub fn array(items: Schema) -> Self {
        Self {
            value_schema: Some(Box::new(items)),
            ..Self::new(SchemaType::Array)
        }
    }

    /// A map schema.
    pub fn map(key: Schema, value: Schema) -> Self {
        Self {
            key_schema: Some(Box::new(key)),
            value_schema: Some(Box::new(value)),
            ..Self::new(SchemaType::Map)
        }
    }

    /// A decimal with the given scale.
    pub fn decimal(scale: u32) -> Self {
        let mut schema = Self::new(SchemaType::Bytes).named(logical::DECIMAL);
        schema
            .parameters
            .insert(logical::SCALE_PARAMETER.to_owned(), scale.to_string());
        schema
    }

    /// A timestamp in milliseconds since the epoch.
    pub fn timestamp() -> Self {
        Self::new(SchemaType::Int64).named(logical::TIMESTAMP)
    }

    /// A date in days since the epoch.
    pub fn date() -> Self {
        Self::new(SchemaType::Int32).named(logical::DATE)
    }

    /// This schema, marked optional.
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    /// This schema with a name.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The field with this name, if this is a struct schema that has it.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The scale of a decimal schema.
    pub fn decimal_scale(&self) -> Option<i32> {
        if self.name.as_deref() != Some(logical::DECIMAL) {
            return None;
        }
        self.parameters
            .get(logical::SCALE_PARAMETER)
            .and_then(|s| s.parse().ok())
    }

    /// Checks that `value` fits this schema, naming the first path that does not.
    pub fn check(&self, value: &Value) -> Result<(), String> {
        self.check_at(value, "")
    }

    fn check_at(&self, value: &Value, path: &str) -> Result<(), String> {
        let here = if path.is_empty() { "value" } else { path };
        match (self.kind, value) {
            (_, Value::Null) if self.optional || self.default.is_some() => Ok(()),
            (_, Value::Null) => Err(format!("{here} is null but its schema is not optional")),
            (SchemaType::Int8, Value::Int8(_))
            | (SchemaType::Int16, Value::Int16(_))
            | (SchemaType::Int32, Value::Int32(_))
            | (SchemaType::Int64, Value::Int64(_))
            | (SchemaType::Float32, Value::Float32(_))
            | (SchemaType::Float64, Value::Float64(_))
            | (SchemaType::Boolean, Value::Boolean(_))
            | (SchemaType::String, Value::String(_))
            | (SchemaType::Bytes, Value::Bytes(_)) => Ok(()),
            (SchemaType::Array, Value::Array(items)) => {
                let item_schema = self.value_schema.as_deref();
                for (i, item) in items.iter().enumerate() {
                    if let Some(s) = item_schema {
                        s.check_at(item, &format!("{here}[{i}]"))?;
                    }
                }
                Ok(())
            }
            (SchemaType::Map, Value::Map(entries)) => {
                for (k, v) in entries {
                    if let Some(s) = self.key_schema.as_deref() {
                        s.check_at(k, &format!("{here}.<key>"))?;
                    }
                    if let Some(s) = self.value_schema.as_deref() {
                        s.check_at(v, &format!("{here}.<value>"))?;
                    }
                }
                Ok(())
            }
            (SchemaType::Struct, Value::Struct(s)) => {
                for field in &self.fields {
                    let child = if path.is_empty() {
                        field.name.clone()
                    } else {
                        format!("{path}.{}", field.name)
                    };
                    field
                        .schema
                        .check_at(s.get(&field.name).unwrap_or(&Value::Null), &child)?;
                }
                Ok(())
            }
            (kind, other) => Err(format!(
                "{here} is {} but its schema type is {}",
                other.type_name(),
                kind.as_str()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Struct;

    #[test]
    fn check_names_the_offending_field() {
        let schema = Schema::structure(vec![
            Field {
                name: "id".into(),
                schema: Schema::new(SchemaType::Int64),
            },
            Field {
                name: "name".into(),
                schema: Schema::new(SchemaType::String).optional(),
            },
        ]);
        let ok = Value::Struct(Struct::new().with("id", Value::Int64(1)));
        assert!(schema.check(&ok).is_ok());
        let bad = Value::Struct(Struct::new().with("id", Value::String("x".into())));
        assert_eq!(
            schema.check(&bad).unwrap_err(),
            "id is string but its schema type is int64"
        );
    }

    #[test]
    fn decimal_scale_is_read_from_parameters() {
        assert_eq!(Schema::decimal(3).decimal_scale(), Some(3));
        assert_eq!(Schema::new(SchemaType::Bytes).decimal_scale(), None);
    }
}
