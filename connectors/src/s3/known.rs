//! What a task has learned about the fields of a topic's schemaless records, so that a file carries
//! every column known so far and a reader that takes its schema from one file loses none.
//!
//! Guarantees:
//! - a schemaless file whose records are objects has a column for every field the task has seen in
//!   its topic (in files of any of its partitions, or in the topic's columns object that earlier
//!   owners wrote), up to [`MAX_FIELDS`] per struct; where its records lack the field, the
//!   column is null;
//! - a file's own records decide the types of the columns they fill: what is known only adds
//!   columns and gives a type to columns whose records were all null (`Null`, see
//!   [`columns`](super::columns)), so it never changes, rejects or rolls over a value;
//! - a field that has never had a value stays a column of Arrow's `Null` type until one is seen.
//!
//! The task keeps one [`KnownColumns`] per topic, reads the topic's columns object
//! (`<topics.dir>/_sluice/<connector>/<topic>.columns.json`) when it is assigned a partition of the
//! topic, and writes it back after a file set that taught it something is published. Writing is
//! best effort: a failure is logged and the next publish tries again; two tasks writing at once may
//! each drop what the other learned since it last read, until either learns it again. None of this
//! touches a value: it decides which all-null columns a file has, so a file rebuilt after a crash
//! (DESIGN.md) has the same records and values and may have more all-null columns than its first
//! build.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields};
use serde_json::{Value as Json, json};

use super::columns::{map_type, merge};
use super::config::TypeConflict;

/// Fields kept per struct; past it, new fields are not learned (JSON objects used as maps with
/// arbitrary keys would otherwise give every file every key ever seen).
pub const MAX_FIELDS: usize = 1_000;

/// Version tag of a columns object.
const COLUMNS_TAG: &str = "sluice.s3.columns";

/// The fields learned for one topic, in the order they were first seen.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct KnownColumns {
    fields: Vec<Field>,
    /// Learned something since the last [`take_changed`](Self::take_changed).
    changed: bool,
}

impl KnownColumns {
    /// Learns the fields of a file's row type (a struct; anything else teaches nothing).
    pub fn learn(&mut self, row: &DataType) {
        let DataType::Struct(fields) = row else {
            return;
        };
        if learn_into(&mut self.fields, fields) {
            self.changed = true;
        }
    }

    /// `row` with every known field it lacks (as a nullable column) and known types where its own
    /// records left a type unknown.
    pub fn complete(&self, row: &DataType) -> DataType {
        match row {
            DataType::Struct(fields) => DataType::Struct(complete_fields(fields, &self.fields)),
            other => other.clone(),
        }
    }

    /// Whether something was learned since the last call.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Marks the fields as not written yet (a write failed).
    pub fn mark_changed(&mut self) {
        self.changed = true;
    }

    /// The columns object's content.
    pub fn to_json(&self) -> String {
        let fields: Vec<Json> = self.fields.iter().map(field_json).collect();
        json!({COLUMNS_TAG: 1, "fields": fields}).to_string()
    }

    /// Learns what a columns object holds; anything that is not one teaches nothing. Returns
    /// whether it was one.
    pub fn learn_json(&mut self, text: &[u8]) -> bool {
        let Ok(v) = serde_json::from_slice::<Json>(text) else {
            return false;
        };
        if v.get(COLUMNS_TAG).is_none() {
            return false;
        }
        let Some(fields) = v.get("fields").and_then(fields_of) else {
            return false;
        };
        let changed = self.changed;
        self.learn(&DataType::Struct(fields));
        // What came from the store need not be written back.
        self.changed = changed;
        true
    }
}

/// Adds `new` to `known`; returns whether anything changed.
fn learn_into(known: &mut Vec<Field>, new: &Fields) -> bool {
    let mut changed = false;
    for f in new {
        let count = known.len();
        match known.iter_mut().find(|k| k.name() == f.name()) {
            Some(k) => {
                // The newest concrete type wins; a widening or a union of struct fields merges.
                let learned = match (k.data_type(), f.data_type()) {
                    (_, DataType::Null) => continue,
                    (DataType::Struct(a), DataType::Struct(b)) => {
                        let mut fields: Vec<Field> = a.iter().map(|x| x.as_ref().clone()).collect();
                        if !learn_into(&mut fields, b) {
                            continue;
                        }
                        DataType::Struct(fields.into())
                    }
                    (a, b) => merge(a, b, TypeConflict::Widen).unwrap_or_else(|_| b.clone()),
                };
                if &learned != k.data_type() {
                    *k = Field::new(f.name(), learned, true);
                    changed = true;
                }
            }
            None if count < MAX_FIELDS => {
                known.push(Field::new(f.name(), f.data_type().clone(), true));
                changed = true;
            }
            None => {
                tracing::debug!(
                    field = %f.name(),
                    "{MAX_FIELDS} fields are known at this level; no more are learned"
                );
            }
        }
    }
    changed
}

fn complete_fields(own: &Fields, known: &[Field]) -> Fields {
    let mut out: Vec<Field> = own
        .iter()
        .map(|f| match known.iter().find(|k| k.name() == f.name()) {
            Some(k) => f
                .as_ref()
                .clone()
                .with_data_type(fill(f.data_type(), k.data_type())),
            None => f.as_ref().clone(),
        })
        .collect();
    for k in known {
        if !own.iter().any(|f| f.name() == k.name()) {
            out.push(k.clone());
        }
    }
    out.into()
}

/// `own` with its unknown (`Null`) parts taken from `known`.
fn fill(own: &DataType, known: &DataType) -> DataType {
    match (own, known) {
        (DataType::Null, k) => k.clone(),
        (DataType::Struct(a), DataType::Struct(k)) => {
            let known: Vec<Field> = k.iter().map(|f| f.as_ref().clone()).collect();
            DataType::Struct(complete_fields(a, &known))
        }
        (DataType::List(a), DataType::List(k)) => DataType::List(Arc::new(
            a.as_ref()
                .clone()
                .with_data_type(fill(a.data_type(), k.data_type())),
        )),
        (own, _) => own.clone(),
    }
}

fn field_json(f: &Field) -> Json {
    json!({"name": f.name(), "type": type_json(f.data_type())})
}

/// The types schemaless inference makes; anything else is written as `null` and read as unknown.
fn type_json(t: &DataType) -> Json {
    match t {
        DataType::Boolean => "boolean".into(),
        DataType::Int64 => "int64".into(),
        DataType::Float64 => "double".into(),
        DataType::Utf8 => "string".into(),
        DataType::Binary => "bytes".into(),
        DataType::List(item) => json!({"list": type_json(item.data_type())}),
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => json!({"map": type_json(kv[1].data_type())}),
            _ => Json::Null,
        },
        DataType::Struct(fields) => {
            json!({"struct": fields.iter().map(|f| field_json(f)).collect::<Vec<_>>()})
        }
        _ => Json::Null,
    }
}

fn fields_of(v: &Json) -> Option<Fields> {
    let items = v.as_array()?;
    let fields: Vec<Field> = items
        .iter()
        .filter_map(|f| {
            let name = f.get("name")?.as_str()?;
            Some(Field::new(name, type_of(f.get("type")?), true))
        })
        .collect();
    Some(fields.into())
}

fn type_of(v: &Json) -> DataType {
    match v {
        Json::String(s) => match s.as_str() {
            "boolean" => DataType::Boolean,
            "int64" => DataType::Int64,
            "double" => DataType::Float64,
            "string" => DataType::Utf8,
            "bytes" => DataType::Binary,
            _ => DataType::Null,
        },
        Json::Object(o) => {
            if let Some(item) = o.get("list") {
                DataType::List(Arc::new(Field::new("element", type_of(item), true)))
            } else if let Some(value) = o.get("map") {
                map_type(DataType::Utf8, type_of(value), true)
            } else if let Some(fields) = o.get("struct").and_then(fields_of) {
                DataType::Struct(fields)
            } else {
                DataType::Null
            }
        }
        _ => DataType::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(fields: Vec<(&str, DataType)>) -> DataType {
        DataType::Struct(
            fields
                .into_iter()
                .map(|(n, t)| Field::new(n, t, true))
                .collect(),
        )
    }

    #[test]
    fn a_file_gains_the_known_fields_and_keeps_its_own_types() {
        let mut known = KnownColumns::default();
        known.learn(&row(vec![
            ("id", DataType::Int64),
            ("always_null", DataType::Null),
            ("x", DataType::Int64),
            (
                "user",
                row(vec![("id", DataType::Int64), ("name", DataType::Utf8)]),
            ),
        ]));
        assert!(known.take_changed());
        assert!(!known.take_changed());
        // A file whose records never had x (null where they had it) and a narrower user.
        let own = row(vec![
            ("x", DataType::Null),
            ("id", DataType::Utf8),
            ("user", row(vec![("id", DataType::Int64)])),
        ]);
        assert_eq!(
            known.complete(&own),
            row(vec![
                ("x", DataType::Int64),
                ("id", DataType::Utf8), // its own records say string: that stays
                (
                    "user",
                    row(vec![("id", DataType::Int64), ("name", DataType::Utf8)])
                ),
                ("always_null", DataType::Null),
            ])
        );
    }

    #[test]
    fn nulls_never_forget_a_type_and_a_newer_type_wins() {
        let mut known = KnownColumns::default();
        known.learn(&row(vec![("x", DataType::Int64)]));
        known.take_changed();
        known.learn(&row(vec![("x", DataType::Null)]));
        assert!(!known.take_changed());
        known.learn(&row(vec![("x", DataType::Float64)]));
        assert!(known.take_changed());
        known.learn(&row(vec![("x", DataType::Utf8)]));
        assert_eq!(
            known.complete(&row(vec![])),
            row(vec![("x", DataType::Utf8)])
        );
    }

    #[test]
    fn the_columns_object_round_trips_and_other_json_teaches_nothing() {
        let mut known = KnownColumns::default();
        let learned = row(vec![
            ("b", DataType::Boolean),
            ("n", DataType::Null),
            (
                "l",
                DataType::List(Arc::new(Field::new("element", DataType::Float64, true))),
            ),
            ("m", map_type(DataType::Utf8, DataType::Binary, true)),
            ("s", row(vec![("inner", DataType::Utf8)])),
        ]);
        known.learn(&learned);
        let mut read = KnownColumns::default();
        assert!(read.learn_json(known.to_json().as_bytes()));
        assert!(
            !read.take_changed(),
            "what was read need not be written back"
        );
        assert_eq!(read.complete(&row(vec![])), learned);
        assert!(!KnownColumns::default().learn_json(b"{\"fields\":[]}"));
        assert!(!KnownColumns::default().learn_json(b"not json"));
    }

    #[test]
    fn learning_stops_at_the_bound() {
        let mut known = KnownColumns::default();
        let many: Vec<(String, DataType)> = (0..MAX_FIELDS + 5)
            .map(|i| (format!("k{i}"), DataType::Int64))
            .collect();
        known.learn(&DataType::Struct(
            many.iter()
                .map(|(n, t)| Field::new(n, t.clone(), true))
                .collect(),
        ));
        let DataType::Struct(fields) = known.complete(&row(vec![])) else {
            panic!("a struct");
        };
        assert_eq!(fields.len(), MAX_FIELDS);
    }
}
