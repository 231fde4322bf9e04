//! The fast path for schemaless JSON events: a file whose columns are all top-level scalars
//! (booleans, 64-bit integers, doubles, strings, and columns only null so far), the usual shape of inferred JSON events, takes a
//! record's JSON text straight into Arrow column builders, without a decoded [`Value`] tree.
//!
//! Guarantees:
//! - it takes a record only when the record fits the file as it is ([`Fit::Fits`](super::columns::Fit)),
//!   and then builds exactly the cells [`columns::build_rows`](super::columns::build_rows) builds
//!   from the value the JSON converter decodes, so a file's bytes do not depend on which path its
//!   records took;
//! - anything else (a new field, a wider type, a nested value, a value that is not an object,
//!   invalid JSON) it refuses without appending anything, and the caller decodes the record and
//!   decides as before: roll the file, reject the record, or the converter's error policy.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, NullArray, StructArray};
use arrow_schema::{DataType, Fields};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use sluice_connector_api::Value;

use super::columns::{EXACT_IN_DOUBLE, VALUE_COLUMN, child, float, int};
use super::config::TypeConflict;

/// One column's builder.
enum Column {
    Boolean(BooleanBuilder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Utf8(StringBuilder),
    /// A field that has only been null (Arrow's `Null` type): it takes nulls only.
    Null(usize),
}

/// A JSON scalar as the JSON converter decodes it (integers beyond `i64` become doubles). A
/// string is a range of the record's text, or of the unescaped strings when it had escapes, so
/// reading a record allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(usize, usize),
    Unescaped(usize, usize),
}

/// Column builders of a file whose columns are all nullable top-level scalars.
pub struct FlatColumns {
    fields: Fields,
    index: HashMap<String, usize>,
    columns: Vec<Column>,
    /// Whether an integer may go into a double column (`schema.type.conflict=widen`).
    widen: bool,
    rows: usize,
    bytes: usize,
    /// The cells of the record being read, one per column (reused).
    cells: Vec<Cell>,
    /// Strings of that record that had escapes (reused).
    unescaped: String,
}

impl FlatColumns {
    /// Builders for `row`, or `None` when a column is not a nullable boolean, 64-bit integer,
    /// double, string or null column (those files take decoded values only).
    pub fn for_row(row: &DataType, policy: TypeConflict) -> Option<Self> {
        let DataType::Struct(fields) = row else {
            return None;
        };
        let columns = fields
            .iter()
            .map(|f| {
                if !f.is_nullable() {
                    return None;
                }
                Some(match f.data_type() {
                    DataType::Boolean => Column::Boolean(BooleanBuilder::new()),
                    DataType::Int64 => Column::Int64(Int64Builder::new()),
                    DataType::Float64 => Column::Float64(Float64Builder::new()),
                    DataType::Utf8 => Column::Utf8(StringBuilder::new()),
                    DataType::Null => Column::Null(0),
                    _ => return None,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        if columns.is_empty() {
            return None;
        }
        Some(Self {
            index: fields
                .iter()
                .enumerate()
                .map(|(i, f)| (f.name().clone(), i))
                .collect(),
            fields: fields.clone(),
            columns,
            widen: policy == TypeConflict::Widen,
            rows: 0,
            bytes: 0,
            cells: vec![Cell::Null; fields.len()],
            unescaped: String::new(),
        })
    }

    /// Rows appended since the last [`finish`](Self::finish).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Approximate bytes held by the builders.
    pub fn memory(&self) -> usize {
        self.bytes
    }

    /// Appends the record whose value is this JSON text if it fits the columns as they are;
    /// `false` appends nothing and leaves the record to the decoded path.
    pub fn push_json(&mut self, text: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(text) else {
            return false;
        };
        let mut cells = std::mem::take(&mut self.cells);
        let mut unescaped = std::mem::take(&mut self.unescaped);
        cells.fill(Cell::Null);
        unescaped.clear();
        let mut json = serde_json::Deserializer::from_str(text);
        let fits = json.deserialize_map(RowVisitor {
            columns: self,
            cells: &mut cells,
            strings: Strings {
                base: text.as_ptr() as usize,
                len: text.len(),
                unescaped: &mut unescaped,
            },
        });
        let taken = matches!(fits, Ok(true)) && json.end().is_ok();
        if taken {
            for (j, cell) in cells.iter().enumerate() {
                let string = match *cell {
                    Cell::Text(from, to) => &text[from..to],
                    Cell::Unescaped(from, to) => &unescaped[from..to],
                    _ => "",
                };
                self.append(j, *cell, string);
            }
            self.rows += 1;
        }
        self.cells = cells;
        self.unescaped = unescaped;
        taken
    }

    /// Appends a decoded value that fits the file's row type (admitted by
    /// [`fit_row`](super::columns::fit_row)); the cells are those `build_rows` makes of it.
    pub fn push_value(&mut self, value: &Value) {
        let wrapped = self.fields.len() == 1 && self.fields[0].name() == VALUE_COLUMN;
        for j in 0..self.columns.len() {
            let found = match value {
                Value::Struct(_) => child(value, j, self.fields[j].name()),
                other if wrapped => Some(other),
                _ => None,
            };
            let (cell, string) = match found {
                Some(Value::String(s)) => (Cell::Text(0, s.len()), s.as_str()),
                Some(v) => (cell_of(v), ""),
                None => (Cell::Null, ""),
            };
            self.append(j, cell, string);
        }
        self.rows += 1;
    }

    /// The rows appended since the last call, as the row struct; the builders start over.
    pub fn finish(&mut self) -> StructArray {
        let children: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|c| match c {
                Column::Boolean(b) => Arc::new(b.finish()) as ArrayRef,
                Column::Int64(b) => Arc::new(b.finish()),
                Column::Float64(b) => Arc::new(b.finish()),
                Column::Utf8(b) => Arc::new(b.finish()),
                Column::Null(n) => Arc::new(NullArray::new(std::mem::take(n))),
            })
            .collect();
        self.rows = 0;
        self.bytes = 0;
        StructArray::new(self.fields.clone(), children, None)
    }

    /// Appends `cell` to column `j`; `string` is the text of a string cell.
    fn append(&mut self, j: usize, cell: Cell, string: &str) {
        self.bytes += 8;
        match (&mut self.columns[j], cell) {
            (Column::Boolean(b), Cell::Bool(x)) => b.append_value(x),
            (Column::Int64(b), Cell::Int(x)) => b.append_value(x),
            (Column::Float64(b), Cell::Float(x)) => b.append_value(x),
            (Column::Float64(b), Cell::Int(x)) => b.append_value(x as f64),
            (Column::Utf8(b), Cell::Text(..) | Cell::Unescaped(..)) => {
                self.bytes += string.len();
                b.append_value(string);
            }
            // Null, or a cell of another type (build_rows writes null for it too).
            (Column::Boolean(b), _) => b.append_null(),
            (Column::Int64(b), _) => b.append_null(),
            (Column::Float64(b), _) => b.append_null(),
            (Column::Utf8(b), _) => b.append_null(),
            (Column::Null(n), _) => *n += 1,
        }
    }

    /// Whether `cell` fits column `j` without widening it.
    fn fits(&self, j: usize, cell: &Cell) -> bool {
        match (&self.columns[j], cell) {
            (_, Cell::Null)
            | (Column::Boolean(_), Cell::Bool(_))
            | (Column::Int64(_), Cell::Int(_))
            | (Column::Float64(_), Cell::Float(_))
            | (Column::Utf8(_), Cell::Text(..) | Cell::Unescaped(..)) => true,
            (Column::Float64(_), Cell::Int(v)) => {
                self.widen && v.unsigned_abs() <= EXACT_IN_DOUBLE.unsigned_abs()
            }
            _ => false,
        }
    }

    /// Column of field `name`, looked up at `position` first (events of one producer keep their
    /// field order).
    fn column_of(&self, position: usize, name: &str) -> Option<usize> {
        match self.fields.get(position) {
            Some(f) if f.name() == name => Some(position),
            _ => self.index.get(name).copied(),
        }
    }
}

/// The cell `build_rows` makes of a decoded scalar other than a string.
fn cell_of(value: &Value) -> Cell {
    match value {
        Value::Boolean(b) => Cell::Bool(*b),
        Value::Float32(_) | Value::Float64(_) => float(value).map_or(Cell::Null, Cell::Float),
        other => int(other).map_or(Cell::Null, Cell::Int),
    }
}

/// Reads one JSON object into `cells`; `Ok(false)` as soon as something does not fit.
struct RowVisitor<'f, 'c> {
    columns: &'f FlatColumns,
    cells: &'c mut [Cell],
    strings: Strings<'c>,
}

/// Where a record's strings are: the text (`len` bytes at `base`), or `unescaped`.
struct Strings<'u> {
    base: usize,
    len: usize,
    unescaped: &'u mut String,
}

impl<'de> Visitor<'de> for RowVisitor<'_, '_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<bool, A::Error> {
        let mut position = 0;
        while let Some(name) = map.next_key_seed(Name)? {
            let cell = map.next_value_seed(CellSeed(&mut self.strings))?;
            match self.columns.column_of(position, &name) {
                Some(j) if self.columns.fits(j, &cell) => self.cells[j] = cell,
                // A null in a field that is not a column fits (it does not make one).
                None if cell == Cell::Null => {}
                _ => return Ok(false),
            }
            position += 1;
        }
        Ok(true)
    }
}

/// A field name, borrowed from the JSON text unless it has escapes.
struct Name;

impl<'de> DeserializeSeed<'de> for Name {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Name {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

/// A scalar cell; a nested value is an error (the record takes the decoded path).
struct CellSeed<'s, 'u>(&'s mut Strings<'u>);

impl<'de> DeserializeSeed<'de> for CellSeed<'_, '_> {
    type Value = Cell;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for CellSeed<'_, '_> {
    type Value = Cell;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON scalar")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Cell::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Cell::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Cell::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or(Cell::Float(v as f64), Cell::Int))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Cell::Float(v))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        // Borrowed strings are slices of the text being read; anything else is copied.
        match (v.as_ptr() as usize).checked_sub(self.0.base) {
            Some(from) if from + v.len() <= self.0.len => Ok(Cell::Text(from, from + v.len())),
            _ => self.visit_str(v),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let unescaped = &mut *self.0.unescaped;
        let from = unescaped.len();
        unescaped.push_str(v);
        Ok(Cell::Unescaped(from, unescaped.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::columns::{Fit, build_rows, fit_row};
    use arrow_schema::Field;
    use sluice_connector_api::Converter;
    use sluice_connector_api::convert::JsonConverter;

    fn row() -> DataType {
        DataType::Struct(Fields::from(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("amount", DataType::Float64, true),
            Field::new("ok", DataType::Boolean, true),
        ]))
    }

    fn decode(text: &[u8]) -> Value {
        JsonConverter::new(false)
            .to_connect("t", Some(text))
            .expect("valid JSON")
            .1
    }

    #[test]
    fn json_text_builds_the_cells_build_rows_builds_from_decoded_values() {
        let texts: Vec<&[u8]> = vec![
            br#"{"id":1,"name":"a","amount":1.5,"ok":true}"#,
            // Another field order, escapes, a missing field.
            br#"{"name":"b\"q\u00e9\n","id":2,"ok":false}"#,
            // An integer in a double column, a null column, a null field that is no column.
            br#"{"id":3,"amount":7,"ok":null,"extra":null}"#,
            // A repeated key: the last one counts, as in a decoded struct.
            br#"{"id":4,"name":"first","name":"second"}"#,
            // Beyond i64: the converter makes it a double.
            br#"{"amount":18446744073709551615}"#,
            br#"{}"#,
            " {\"id\": -9007199254740993, \"name\": \"ünïcödé\" } ".as_bytes(),
        ];
        let values: Vec<Value> = texts.iter().map(|t| decode(t)).collect();
        let mut fast = FlatColumns::for_row(&row(), TypeConflict::Widen).expect("flat");
        let mut decoded = FlatColumns::for_row(&row(), TypeConflict::Widen).expect("flat");
        for (text, value) in texts.iter().zip(&values) {
            assert_eq!(fit_row(&row(), value, TypeConflict::Widen), Fit::Fits);
            assert!(fast.push_json(text), "{}", String::from_utf8_lossy(text));
            decoded.push_value(value);
        }
        assert_eq!(fast.rows(), texts.len());
        let refs: Vec<&Value> = values.iter().collect();
        let reference = build_rows(&row(), &refs).expect("rows");
        assert_eq!(fast.finish(), reference);
        assert_eq!(decoded.finish(), reference);
        assert_eq!(fast.rows(), 0, "finish starts over");
    }

    #[test]
    fn what_does_not_fit_as_it_is_is_refused_and_nothing_is_appended() {
        let mut flat = FlatColumns::for_row(&row(), TypeConflict::Widen).expect("flat");
        let refused: Vec<&[u8]> = vec![
            br#"{"id":1.5}"#,                  // a wider type: the file rolls
            br#"{"id":1,"new":"x"}"#,          // a new column: the file rolls
            br#"{"name":{"a":1}}"#,            // nested: a conflict
            br#"{"name":[]}"#,                 // nested: a conflict
            br#"{"amount":9007199254740993}"#, // not exact in a double: a conflict
            br#"{"ok":"yes"}"#,                // a conflict
            br#"[1,2]"#,
            br#""text""#,
            b"null",
            br#"{"id":1} trailing"#,
            br#"{"id":1"#,
            b"{\"name\":\"\xff\"}",
        ];
        for text in &refused {
            assert!(!flat.push_json(text), "{}", String::from_utf8_lossy(text));
            assert_eq!(flat.rows(), 0);
            if let Ok((_, v)) = JsonConverter::new(false).to_connect("t", Some(text)) {
                assert_ne!(fit_row(&row(), &v, TypeConflict::Widen), Fit::Fits, "{v:?}");
            }
        }
        // With schema.type.conflict=error an integer does not go into a double column.
        let mut strict = FlatColumns::for_row(&row(), TypeConflict::Error).expect("flat");
        assert!(!strict.push_json(br#"{"amount":7}"#));
        assert!(strict.push_json(br#"{"amount":7.0}"#));
    }

    #[test]
    fn only_nullable_scalar_columns_take_the_fast_path() {
        let nested = DataType::Struct(Fields::from(vec![Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("element", DataType::Utf8, true))),
            true,
        )]));
        assert!(FlatColumns::for_row(&nested, TypeConflict::Widen).is_none());
        let required =
            DataType::Struct(Fields::from(vec![Field::new("id", DataType::Int64, false)]));
        assert!(FlatColumns::for_row(&required, TypeConflict::Widen).is_none());
        assert!(
            FlatColumns::for_row(&DataType::Struct(Fields::empty()), TypeConflict::Widen).is_none()
        );
    }
}
