//! Records to Arrow columns: exact types from Connect schemas, safe inference for schemaless JSON.
//!
//! A file's Arrow schema is a struct of the record value's fields (a value that is not a struct is
//! one column named `value`). With a Connect schema the mapping is exact: `Decimal` →
//! `Decimal128(38, scale)`, `Date` → `Date32`, `Time` → `Time32(ms)`, `Timestamp` →
//! `Timestamp(ms, UTC)`, arrays → lists, maps → maps, structs → structs, optional → nullable.
//! Schemaless values are inferred: integers → `Int64`, numbers → `Float64`, strings, booleans,
//! bytes, lists and nested structs; every inferred column is nullable, and a field whose value is
//! null wherever it was seen (nothing tells its type) is a column of Arrow's `Null` type, written
//! as an all-null Parquet column of logical type `UNKNOWN`, so that no file drops a field its
//! records carry. Timestamps are never nanoseconds (several engines cannot read them).

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int8Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder,
    Time32MillisecondBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, ListArray, MapArray, NullArray, StructArray};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Fields, TimeUnit};
use sluice_connector_api::{Schema, SchemaType, Value, logical};

use super::config::TypeConflict;

/// Largest integer a double holds exactly.
pub(super) const EXACT_IN_DOUBLE: i64 = 1 << 53;

/// Name of the single column of a value that is not a struct.
pub const VALUE_COLUMN: &str = "value";

/// How a value relates to a column type.
#[derive(Debug, Clone, PartialEq)]
pub enum Fit {
    /// It can be written as is.
    Fits,
    /// It needs a wider type or a new column: close the file, the next one will fit it.
    Grows,
    /// It can never be written to this type; the message says why.
    Conflict(String),
}

impl Fit {
    fn and(self, other: Fit) -> Fit {
        match (self, other) {
            (Fit::Conflict(m), _) | (_, Fit::Conflict(m)) => Fit::Conflict(m),
            (Fit::Grows, _) | (_, Fit::Grows) => Fit::Grows,
            _ => Fit::Fits,
        }
    }
}

/// The row type of a record with this Connect value schema.
pub fn row_type_of_schema(schema: &Schema) -> DataType {
    match schema.kind {
        SchemaType::Struct => of_schema(schema),
        _ => DataType::Struct(Fields::from(vec![Field::new(
            VALUE_COLUMN,
            of_schema(schema),
            schema.optional,
        )])),
    }
}

fn of_schema(schema: &Schema) -> DataType {
    let name = schema.name.as_deref();
    match schema.kind {
        SchemaType::Int8 => DataType::Int8,
        SchemaType::Int16 => DataType::Int16,
        SchemaType::Int32 if name == Some(logical::DATE) => DataType::Date32,
        SchemaType::Int32 if name == Some(logical::TIME) => DataType::Time32(TimeUnit::Millisecond),
        SchemaType::Int32 => DataType::Int32,
        SchemaType::Int64 if name == Some(logical::TIMESTAMP) => {
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
        }
        SchemaType::Int64 => DataType::Int64,
        SchemaType::Float32 => DataType::Float32,
        SchemaType::Float64 => DataType::Float64,
        SchemaType::Boolean => DataType::Boolean,
        SchemaType::String => DataType::Utf8,
        SchemaType::Bytes => match schema.decimal_scale() {
            Some(scale) if name == Some(logical::DECIMAL) => {
                DataType::Decimal128(38, scale.clamp(0, 38) as i8)
            }
            _ => DataType::Binary,
        },
        SchemaType::Array => {
            let item = schema.value_schema.as_deref();
            let (dt, nullable) =
                item.map_or((DataType::Utf8, true), |s| (of_schema(s), s.optional));
            DataType::List(Arc::new(Field::new("element", dt, nullable)))
        }
        SchemaType::Map => {
            let key = schema
                .key_schema
                .as_deref()
                .map_or(DataType::Utf8, of_schema);
            let value = schema.value_schema.as_deref();
            let (vt, nullable) =
                value.map_or((DataType::Utf8, true), |s| (of_schema(s), s.optional));
            map_type(key, vt, nullable)
        }
        SchemaType::Struct => DataType::Struct(
            schema
                .fields
                .iter()
                .map(|f| Field::new(&f.name, of_schema(&f.schema), f.schema.optional))
                .collect(),
        ),
    }
}

pub(super) fn map_type(key: DataType, value: DataType, value_nullable: bool) -> DataType {
    let entries = Field::new(
        "key_value",
        DataType::Struct(Fields::from(vec![
            Field::new("key", key, false),
            Field::new("value", value, value_nullable),
        ])),
        false,
    );
    DataType::Map(Arc::new(entries), false)
}

/// The inferred row type of a schemaless value; `None` for a null value, an error for a value no
/// column can hold (a list mixing strings and numbers).
pub fn infer_row(value: &Value) -> Result<Option<DataType>, String> {
    Ok(Some(match value {
        Value::Struct(_) => infer(value)?,
        Value::Null => return Ok(None),
        other => DataType::Struct(Fields::from(vec![Field::new(
            VALUE_COLUMN,
            infer(other)?,
            true,
        )])),
    }))
}

/// The inferred type of a schemaless value: `Null` when nothing tells it (a null, a list of no
/// values), an error when no column can hold it.
pub fn infer(value: &Value) -> Result<DataType, String> {
    Ok(match value {
        Value::Null => DataType::Null,
        Value::Boolean(_) => DataType::Boolean,
        Value::Int8(_) | Value::Int16(_) | Value::Int32(_) | Value::Int64(_) => DataType::Int64,
        Value::Float32(_) | Value::Float64(_) => DataType::Float64,
        Value::String(_) => DataType::Utf8,
        Value::Bytes(_) => DataType::Binary,
        Value::Array(items) => {
            let item = merge_all(items.iter()).map_err(|e| format!("list items: {e}"))?;
            DataType::List(Arc::new(Field::new("element", item, true)))
        }
        Value::Map(entries) => {
            let value = merge_all(entries.iter().map(|(_, v)| v))
                .map_err(|e| format!("map values: {e}"))?;
            map_type(DataType::Utf8, value, true)
        }
        Value::Struct(s) => DataType::Struct(
            s.fields()
                .iter()
                .map(|(name, v)| {
                    let t = infer(v).map_err(|e| format!("{name}: {e}"))?;
                    Ok(Field::new(&**name, t, true))
                })
                .collect::<Result<Fields, String>>()?,
        ),
    })
}

/// The type that holds every one of `values` (`Null` for none).
fn merge_all<'a>(mut values: impl Iterator<Item = &'a Value>) -> Result<DataType, String> {
    values.try_fold(DataType::Null, |acc, v| {
        merge(&acc, &infer(v)?, TypeConflict::Widen)
    })
}

/// The narrowest type that holds values of both `a` and `b`, or a message naming the conflict.
pub fn merge(a: &DataType, b: &DataType, policy: TypeConflict) -> Result<DataType, String> {
    if a == b {
        return Ok(a.clone());
    }
    match (a, b) {
        // Nothing was known of the one: the other says what it is.
        (DataType::Null, t) | (t, DataType::Null) => Ok(t.clone()),
        (DataType::Int64, DataType::Float64) | (DataType::Float64, DataType::Int64)
            if policy == TypeConflict::Widen =>
        {
            Ok(DataType::Float64)
        }
        (DataType::List(x), DataType::List(y)) => {
            let item = merge(x.data_type(), y.data_type(), policy)?;
            Ok(DataType::List(Arc::new(Field::new("element", item, true))))
        }
        (DataType::Struct(xs), DataType::Struct(ys)) => {
            let mut fields: Vec<Field> = xs.iter().map(|f| f.as_ref().clone()).collect();
            for y in ys {
                match fields.iter_mut().find(|f| f.name() == y.name()) {
                    Some(f) => {
                        let t = merge(f.data_type(), y.data_type(), policy)
                            .map_err(|e| format!("{}: {e}", y.name()))?;
                        *f = Field::new(y.name(), t, true);
                    }
                    None => fields.push(y.as_ref().clone()),
                }
            }
            Ok(DataType::Struct(fields.into()))
        }
        _ => Err(format!("{} and {} conflict", describe(a), describe(b))),
    }
}

fn describe(t: &DataType) -> String {
    match t {
        DataType::Utf8 => "string".into(),
        DataType::Int64 => "integer".into(),
        DataType::Float64 => "double".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Struct(_) => "struct".into(),
        DataType::List(_) => "list".into(),
        DataType::Null => "unknown (only nulls so far)".into(),
        other => other.to_string(),
    }
}

/// How `value` fits a column of type `t` (`nullable` says whether the column allows null).
pub fn fit(t: &DataType, nullable: bool, value: &Value, policy: TypeConflict) -> Fit {
    use DataType as D;
    let conflict = || {
        Fit::Conflict(format!(
            "a {} value in a {} column",
            value.type_name(),
            describe(t)
        ))
    };
    match (t, value) {
        (_, Value::Null) if nullable => Fit::Fits,
        (_, Value::Null) => Fit::Conflict(format!("null in a required {} column", describe(t))),
        // A column of unknown type so far: a value gives it a type, in the next file.
        (D::Null, _) => Fit::Grows,
        (D::Boolean, Value::Boolean(_)) => Fit::Fits,
        (D::Int8, Value::Int8(_)) | (D::Int16, Value::Int8(_) | Value::Int16(_)) => Fit::Fits,
        (
            D::Int32 | D::Date32 | D::Time32(_),
            Value::Int8(_) | Value::Int16(_) | Value::Int32(_),
        ) => Fit::Fits,
        (
            D::Int64 | D::Timestamp(..),
            Value::Int8(_) | Value::Int16(_) | Value::Int32(_) | Value::Int64(_),
        ) => Fit::Fits,
        (D::Float32, Value::Float32(_)) | (D::Float64, Value::Float32(_) | Value::Float64(_)) => {
            Fit::Fits
        }
        (D::Float64, Value::Int8(_) | Value::Int16(_) | Value::Int32(_)) => Fit::Fits,
        (D::Float64, Value::Int64(v)) if policy == TypeConflict::Widen => {
            if v.unsigned_abs() <= EXACT_IN_DOUBLE as u64 {
                Fit::Fits
            } else {
                Fit::Conflict(format!("integer {v} does not fit a double column exactly"))
            }
        }
        (D::Int64, Value::Float32(_) | Value::Float64(_)) if policy == TypeConflict::Widen => {
            Fit::Grows
        }
        (D::Utf8, Value::String(_)) | (D::Binary, Value::Bytes(_)) => Fit::Fits,
        (D::Decimal128(..), Value::Bytes(b)) if b.len() <= 16 => Fit::Fits,
        (D::List(item), Value::Array(items)) => items.iter().fold(Fit::Fits, |acc, v| {
            acc.and(fit(item.data_type(), item.is_nullable(), v, policy))
        }),
        (D::Map(entries, _), Value::Map(pairs)) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return conflict();
            };
            pairs.iter().fold(Fit::Fits, |acc, (k, v)| {
                acc.and(fit(kv[0].data_type(), false, k, policy)).and(fit(
                    kv[1].data_type(),
                    kv[1].is_nullable(),
                    v,
                    policy,
                ))
            })
        }
        (D::Struct(fields), Value::Struct(s)) => {
            let mut acc = Fit::Fits;
            for (i, (name, v)) in s.fields().iter().enumerate() {
                // Values of one producer keep their field order: try the same position first.
                let field = match fields.get(i) {
                    Some(f) if **f.name() == **name => Some(f),
                    _ => fields.find(name).map(|(_, f)| f),
                };
                acc = acc.and(match field {
                    Some(f) => fit(f.data_type(), f.is_nullable(), v, policy),
                    // A null of a field that is no column fits (it is null there anyway).
                    None if v.is_null() => Fit::Fits,
                    None => Fit::Grows,
                });
            }
            for f in fields.iter().filter(|f| !f.is_nullable()) {
                if s.get(f.name()).is_none_or(Value::is_null) {
                    acc = acc.and(Fit::Conflict(format!(
                        "required field {} is missing",
                        f.name()
                    )));
                }
            }
            acc
        }
        _ => conflict(),
    }
}

/// How a record value fits a file's row type.
pub fn fit_row(row: &DataType, value: &Value, policy: TypeConflict) -> Fit {
    match (row, value) {
        (DataType::Struct(_), Value::Struct(_)) => fit(row, false, value, policy),
        (DataType::Struct(fields), v) if fields.len() == 1 && fields[0].name() == VALUE_COLUMN => {
            fit(fields[0].data_type(), fields[0].is_nullable(), v, policy)
        }
        _ => Fit::Conflict(format!(
            "a {} value where the file holds structs",
            value.type_name()
        )),
    }
}

/// Builds the row struct of `values`, each of which fits `row`.
pub fn build_rows(row: &DataType, values: &[&Value]) -> Result<StructArray, String> {
    let DataType::Struct(fields) = row else {
        return Err(format!("row type {row} is not a struct"));
    };
    let wrapped = fields.len() == 1 && fields[0].name() == VALUE_COLUMN;
    let array = if wrapped {
        // A struct's `value` field, or a value that is not a struct itself.
        let cells: Vec<Option<&Value>> = values
            .iter()
            .map(|v| match v {
                Value::Struct(_) => child(v, 0, VALUE_COLUMN),
                other => Some(*other),
            })
            .collect();
        let column = build(fields[0].data_type(), &cells)?;
        StructArray::try_new(fields.clone(), vec![column], None)
    } else {
        let cells: Vec<Option<&Value>> = values
            .iter()
            .map(|v| Some(*v).filter(|v| matches!(v, Value::Struct(_))))
            .collect();
        StructArray::try_new(fields.clone(), struct_children(fields, &cells)?, None)
    };
    array.map_err(|e| e.to_string())
}

/// One column per field of the struct cells (a missing struct or field is null).
fn struct_children(fields: &Fields, cells: &[Option<&Value>]) -> Result<Vec<ArrayRef>, String> {
    fields
        .iter()
        .enumerate()
        .map(|(j, f)| {
            let column: Vec<Option<&Value>> = cells
                .iter()
                .map(|c| c.and_then(|v| child(v, j, f.name())))
                .collect();
            build(f.data_type(), &column)
        })
        .collect()
}

/// Field `name` of a struct value, looked up at `position` first (values of one producer keep
/// their field order).
pub(super) fn child<'a>(value: &'a Value, position: usize, name: &str) -> Option<&'a Value> {
    let Value::Struct(s) = value else {
        return None;
    };
    let found = match s.fields().get(position) {
        Some((n, v)) if **n == *name => Some(v),
        _ => s.get(name),
    };
    found.filter(|v| !v.is_null())
}

pub(super) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int8(x) => Some(i64::from(*x)),
        Value::Int16(x) => Some(i64::from(*x)),
        Value::Int32(x) => Some(i64::from(*x)),
        Value::Int64(x) => Some(*x),
        _ => None,
    }
}

pub(super) fn float(v: &Value) -> Option<f64> {
    match v {
        Value::Float32(x) => Some(f64::from(*x)),
        Value::Float64(x) => Some(*x),
        other => int(other).map(|i| i as f64),
    }
}

fn decimal(bytes: &[u8]) -> Option<i128> {
    if bytes.is_empty() || bytes.len() > 16 {
        return None;
    }
    let fill = if bytes[0] & 0x80 != 0 { 0xff } else { 0 };
    let mut buf = [fill; 16];
    buf[16 - bytes.len()..].copy_from_slice(bytes);
    Some(i128::from_be_bytes(buf))
}

macro_rules! primitive {
    ($builder:ty, $cells:expr, $get:expr) => {{
        let mut b = <$builder>::with_capacity($cells.len());
        for c in $cells {
            b.append_option(c.and_then($get));
        }
        Arc::new(b.finish()) as ArrayRef
    }};
}

/// Builds one column; a cell that does not match the type becomes null (callers check [`fit`]).
fn build(t: &DataType, cells: &[Option<&Value>]) -> Result<ArrayRef, String> {
    use DataType as D;
    Ok(match t {
        D::Null => Arc::new(NullArray::new(cells.len())),
        D::Boolean => primitive!(BooleanBuilder, cells, |v: &Value| match v {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }),
        D::Int8 => primitive!(Int8Builder, cells, |v: &Value| int(v)
            .and_then(|i| i8::try_from(i).ok())),
        D::Int16 => primitive!(Int16Builder, cells, |v: &Value| int(v)
            .and_then(|i| i16::try_from(i).ok())),
        D::Int32 => primitive!(Int32Builder, cells, |v: &Value| int(v)
            .and_then(|i| i32::try_from(i).ok())),
        D::Date32 => primitive!(Date32Builder, cells, |v: &Value| int(v)
            .and_then(|i| i32::try_from(i).ok())),
        D::Time32(_) => primitive!(Time32MillisecondBuilder, cells, |v: &Value| int(v)
            .and_then(|i| i32::try_from(i).ok())),
        D::Int64 => primitive!(Int64Builder, cells, int),
        D::Timestamp(_, tz) => {
            let mut b = TimestampMillisecondBuilder::with_capacity(cells.len());
            for c in cells {
                b.append_option(c.and_then(int));
            }
            Arc::new(b.finish().with_timezone_opt(tz.clone()))
        }
        D::Float32 => primitive!(Float32Builder, cells, |v: &Value| float(v)
            .map(|f| f as f32)),
        D::Float64 => primitive!(Float64Builder, cells, float),
        D::Utf8 => {
            let bytes = cells
                .iter()
                .map(|c| c.map_or(0, |v| v.as_str().map_or(0, str::len)))
                .sum();
            let mut b = StringBuilder::with_capacity(cells.len(), bytes);
            for c in cells {
                b.append_option(c.and_then(Value::as_str));
            }
            Arc::new(b.finish())
        }
        D::Binary => {
            let mut b = BinaryBuilder::with_capacity(cells.len(), 0);
            for c in cells {
                b.append_option(c.and_then(|v| match v {
                    Value::Bytes(b) => Some(b.as_slice()),
                    _ => None,
                }));
            }
            Arc::new(b.finish())
        }
        D::Decimal128(p, s) => {
            let mut b = Decimal128Builder::with_capacity(cells.len());
            for c in cells {
                b.append_option(c.and_then(|v| match v {
                    Value::Bytes(bytes) => decimal(bytes),
                    _ => None,
                }));
            }
            Arc::new(
                b.finish()
                    .with_precision_and_scale(*p, *s)
                    .map_err(|e| e.to_string())?,
            )
        }
        D::List(item) => {
            let mut lengths = Vec::with_capacity(cells.len());
            let mut items = Vec::new();
            let mut valid = Vec::with_capacity(cells.len());
            for c in cells {
                match c {
                    Some(Value::Array(xs)) => {
                        lengths.push(xs.len());
                        items.extend(xs.iter().map(|x| Some(x).filter(|x| !x.is_null())));
                        valid.push(true);
                    }
                    _ => {
                        lengths.push(0);
                        valid.push(false);
                    }
                }
            }
            let values = build(item.data_type(), &items)?;
            Arc::new(
                ListArray::try_new(
                    Arc::clone(item),
                    OffsetBuffer::<i32>::from_lengths(lengths),
                    values,
                    Some(valid.into()),
                )
                .map_err(|e| e.to_string())?,
            )
        }
        D::Map(entries, sorted) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return Err("map entries are not a struct".into());
            };
            let mut lengths = Vec::with_capacity(cells.len());
            let (mut keys, mut vals) = (Vec::new(), Vec::new());
            let mut valid = Vec::with_capacity(cells.len());
            for c in cells {
                match c {
                    Some(Value::Map(pairs)) => {
                        lengths.push(pairs.len());
                        for (k, v) in pairs {
                            keys.push(Some(k));
                            vals.push(Some(v).filter(|v| !v.is_null()));
                        }
                        valid.push(true);
                    }
                    _ => {
                        lengths.push(0);
                        valid.push(false);
                    }
                }
            }
            let children = vec![
                build(kv[0].data_type(), &keys)?,
                build(kv[1].data_type(), &vals)?,
            ];
            let entries_array =
                StructArray::try_new(kv.clone(), children, None).map_err(|e| e.to_string())?;
            Arc::new(
                MapArray::try_new(
                    Arc::clone(entries),
                    OffsetBuffer::<i32>::from_lengths(lengths),
                    entries_array,
                    Some(valid.into()),
                    *sorted,
                )
                .map_err(|e| e.to_string())?,
            )
        }
        D::Struct(fields) => {
            let valid: Vec<bool> = cells
                .iter()
                .map(|c| matches!(c, Some(Value::Struct(_))))
                .collect();
            let children = struct_children(fields, cells)?;
            Arc::new(
                StructArray::try_new(fields.clone(), children, Some(valid.into()))
                    .map_err(|e| e.to_string())?,
            )
        }
        other => return Err(format!("no column builder for {other}")),
    })
}

/// A rough, deterministic estimate of a value's size in memory, for the buffer bound.
pub fn approx_size(value: &Value) -> usize {
    match value {
        Value::String(s) => 24 + s.len(),
        Value::Bytes(b) => 24 + b.len(),
        Value::Array(xs) => 24 + xs.iter().map(approx_size).sum::<usize>(),
        Value::Map(kv) => {
            24 + kv
                .iter()
                .map(|(k, v)| approx_size(k) + approx_size(v))
                .sum::<usize>()
        }
        Value::Struct(s) => {
            24 + s
                .fields()
                .iter()
                .map(|(k, v)| 24 + k.len() + approx_size(v))
                .sum::<usize>()
        }
        _ => 16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, Decimal128Array, Float64Array, Int64Array};
    use sluice_connector_api::Struct;

    fn row(pairs: Vec<(&str, Value)>) -> Value {
        let mut s = Struct::new();
        for (k, v) in pairs {
            s.put(k, v);
        }
        Value::Struct(s)
    }

    #[test]
    fn inference_widens_integers_to_doubles_and_reports_conflicts() {
        let a = infer_row(&row(vec![
            ("n", Value::Int64(1)),
            ("s", Value::String("x".into())),
        ]))
        .unwrap()
        .unwrap();
        let b = infer_row(&row(vec![
            ("n", Value::Float64(1.5)),
            ("t", Value::Boolean(true)),
        ]))
        .unwrap()
        .unwrap();
        let merged = merge(&a, &b, TypeConflict::Widen).unwrap();
        let DataType::Struct(fields) = &merged else {
            panic!("{merged}")
        };
        let names: Vec<_> = fields
            .iter()
            .map(|f| (f.name().as_str(), f.data_type().clone()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("n", DataType::Float64),
                ("s", DataType::Utf8),
                ("t", DataType::Boolean)
            ]
        );
        assert!(merge(&a, &b, TypeConflict::Error).is_err());
        let c = infer_row(&row(vec![("s", Value::Int64(3))]))
            .unwrap()
            .unwrap();
        assert!(
            merge(&a, &c, TypeConflict::Widen)
                .unwrap_err()
                .contains("s: string and integer conflict")
        );
    }

    #[test]
    fn fit_says_when_a_file_must_roll() {
        let t = infer_row(&row(vec![("n", Value::Int64(1))]))
            .unwrap()
            .unwrap();
        let p = TypeConflict::Widen;
        assert_eq!(
            fit_row(&t, &row(vec![("n", Value::Int64(2))]), p),
            Fit::Fits
        );
        assert_eq!(
            fit_row(&t, &row(vec![("n", Value::Null), ("x", Value::Null)]), p),
            Fit::Fits
        );
        assert_eq!(
            fit_row(&t, &row(vec![("x", Value::Int64(1))]), p),
            Fit::Grows
        );
        assert_eq!(
            fit_row(&t, &row(vec![("n", Value::Float64(0.5))]), p),
            Fit::Grows
        );
        assert!(matches!(
            fit_row(&t, &row(vec![("n", Value::String("x".into()))]), p),
            Fit::Conflict(_)
        ));
        let d = merge(
            &t,
            &infer_row(&row(vec![("n", Value::Float64(0.5))]))
                .unwrap()
                .unwrap(),
            p,
        )
        .unwrap();
        assert!(matches!(
            fit_row(&d, &row(vec![("n", Value::Int64(1 << 60))]), p),
            Fit::Conflict(_)
        ));
    }

    #[test]
    fn columns_hold_the_values() {
        let t = merge(
            &infer_row(&row(vec![("n", Value::Int64(1))]))
                .unwrap()
                .unwrap(),
            &infer_row(&row(vec![("f", Value::Float64(0.5))]))
                .unwrap()
                .unwrap(),
            TypeConflict::Widen,
        )
        .unwrap();
        let rows = [
            row(vec![("n", Value::Int64(7))]),
            row(vec![("f", Value::Float64(2.5)), ("n", Value::Int64(8))]),
        ];
        let refs: Vec<&Value> = rows.iter().collect();
        let array = build_rows(&t, &refs).unwrap();
        let n = array
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        let f = array
            .column(1)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert_eq!((n.value(0), n.value(1)), (7, 8));
        assert!(f.is_null(0));
        assert_eq!(f.value(1), 2.5);
    }

    #[test]
    fn decimals_keep_their_unscaled_value_and_sign() {
        let t = DataType::Struct(Fields::from(vec![Field::new(
            VALUE_COLUMN,
            DataType::Decimal128(38, 2),
            true,
        )]));
        let values = [
            Value::Bytes(vec![0x30, 0x39]),
            Value::Bytes(vec![0xcf, 0xc7]),
        ];
        let refs: Vec<&Value> = values.iter().collect();
        let array = build_rows(&t, &refs).unwrap();
        let d = array
            .column(0)
            .as_any()
            .downcast_ref::<Decimal128Array>()
            .unwrap();
        assert_eq!(d.value_as_string(0), "123.45");
        assert_eq!(d.value_as_string(1), "-123.45");
    }
}
