//! Cast: changes the type of the whole key/value or of named fields (`spec=age:int32,score:float64`
//! or `spec=string`). Numbers cast between each other with Java's narrowing semantics (wrapping), to
//! and from strings by parsing, and booleans to numbers as 0/1.

use std::sync::Arc;

use sluice_connector_api::{ConnectError, Props, Record, Schema, SchemaType, Value};

use crate::util::{Errors, half, not_a_struct};
use crate::{Target, Transform};

struct Cast {
    target: Target,
    whole: Option<SchemaType>,
    fields: Vec<(String, SchemaType)>,
}

fn parse_type(name: &str) -> Option<SchemaType> {
    Some(match name.trim() {
        "int8" => SchemaType::Int8,
        "int16" => SchemaType::Int16,
        "int32" => SchemaType::Int32,
        "int64" => SchemaType::Int64,
        "float32" => SchemaType::Float32,
        "float64" => SchemaType::Float64,
        "boolean" => SchemaType::Boolean,
        "string" => SchemaType::String,
        _ => return None,
    })
}

pub(crate) fn cast(t: Option<Target>, props: &Props) -> Result<Box<dyn Transform>, Errors> {
    let spec = props.get("spec").map(|s| s.trim()).unwrap_or("");
    if spec.is_empty() {
        return Err(vec![(
            "spec".into(),
            "Missing required configuration \"spec\" which has no default value.".into(),
        )]);
    }
    let bad = |part: &str| {
        (
            "spec".to_owned(),
            format!(
                "Invalid cast {part}: expected field:type or type, with type one of int8, int16, int32, int64, float32, float64, boolean, string"
            ),
        )
    };
    let mut transform = Cast {
        target: t.unwrap_or(Target::Value),
        whole: None,
        fields: Vec::new(),
    };
    let mut errors = Errors::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once(':') {
            Some((field, ty)) => match parse_type(ty) {
                Some(ty) => transform.fields.push((field.trim().to_owned(), ty)),
                None => errors.push(bad(part)),
            },
            None => match parse_type(part) {
                Some(ty) if spec.split(',').count() == 1 => transform.whole = Some(ty),
                _ => errors.push(bad(part)),
            },
        }
    }
    if errors.is_empty() {
        Ok(Box::new(transform))
    } else {
        Err(errors)
    }
}

/// Casts one value; `Null` stays `Null`.
pub(crate) fn cast_value(value: &Value, to: SchemaType) -> Result<Value, ConnectError> {
    let fail = || {
        ConnectError::user(format!(
            "Cast: cannot cast {} value {value} to {}",
            value.type_name(),
            to.as_str()
        ))
    };
    if value.is_null() {
        return Ok(Value::Null);
    }
    let as_i64 = || -> Result<i64, ConnectError> {
        match value {
            Value::Boolean(b) => Ok(i64::from(*b)),
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .or_else(|_| s.trim().parse::<f64>().map(|f| f as i64))
                .map_err(|_| fail()),
            v => v
                .as_i64()
                .or_else(|| v.as_f64().map(|f| f as i64))
                .ok_or_else(fail),
        }
    };
    let as_f64 = || -> Result<f64, ConnectError> {
        match value {
            Value::Boolean(b) => Ok(if *b { 1.0 } else { 0.0 }),
            Value::String(s) => s.trim().parse::<f64>().map_err(|_| fail()),
            v => v.as_f64().ok_or_else(fail),
        }
    };
    Ok(match to {
        SchemaType::Int8 => Value::Int8(as_i64()? as i8),
        SchemaType::Int16 => Value::Int16(as_i64()? as i16),
        SchemaType::Int32 => Value::Int32(as_i64()? as i32),
        SchemaType::Int64 => Value::Int64(as_i64()?),
        SchemaType::Float32 => Value::Float32(as_f64()? as f32),
        SchemaType::Float64 => Value::Float64(as_f64()?),
        SchemaType::Boolean => match value {
            Value::Boolean(b) => Value::Boolean(*b),
            Value::String(s) => Value::Boolean(s.trim().parse().map_err(|_| fail())?),
            v => Value::Boolean(v.as_f64().ok_or_else(fail)? != 0.0),
        },
        SchemaType::String => match value {
            Value::Array(_) | Value::Map(_) | Value::Struct(_) | Value::Bytes(_) => {
                return Err(fail());
            }
            v => Value::String(v.to_string()),
        },
        _ => return Err(fail()),
    })
}

fn cast_schema(schema: &Schema, to: SchemaType) -> Schema {
    Schema {
        kind: to,
        name: None,
        parameters: Default::default(),
        default: None,
        ..schema.clone()
    }
}

impl Transform for Cast {
    fn apply(&self, mut record: Record) -> Result<Option<Record>, ConnectError> {
        let (schema, value) = half(&mut record, self.target);
        if let Some(to) = self.whole {
            *value = cast_value(value, to)?;
            if let Some(s) = schema {
                *schema = Some(Arc::new(cast_schema(s, to)));
            }
            return Ok(Some(record));
        }
        if value.is_null() {
            return Ok(Some(record));
        }
        let Value::Struct(s) = value else {
            return Err(not_a_struct("Cast", self.target, value));
        };
        for (field, to) in &self.fields {
            if let Some(v) = s.get_mut(field) {
                *v = cast_value(v, *to).map_err(|e| e.context(format!("field {field}")))?;
            }
        }
        if let Some(sch) = schema {
            let sch = Arc::make_mut(sch);
            for f in &mut sch.fields {
                if let Some((_, to)) = self.fields.iter().find(|(name, _)| *name == f.name) {
                    f.schema = cast_schema(&f.schema, *to);
                }
            }
        }
        Ok(Some(record))
    }
}
