//! Debezium's `io.debezium.transforms.ExtractNewRecordState`: a change event's envelope
//! (`{before, after, source, op, ...}`) flattened to the row after the change, which is what most
//! sinks (S3 Parquet, JDBC-style consumers) want.
//!
//! Settings as Debezium's: `delete.tombstone.handling.mode` (`tombstone`, the default: a delete
//! becomes a tombstone of its key; `drop`; `rewrite`: the row before the delete with
//! `__deleted=true`, tombstones dropped; `rewrite-with-tombstone`; `delete-to-tombstone`), or the
//! older `delete.handling.mode` (`drop`, `rewrite`, `none`) with `drop.tombstones` (true);
//! `add.fields` (envelope fields `op`, `ts_ms`, or `source` fields such as `table`, `lsn`,
//! `source.ts_ms`, added as `__op`, `__table`, `__source_ts_ms`; `add.fields.prefix`),
//! `add.headers` (the same as headers; `add.headers.prefix`). Records that are not change events
//! (heartbeats) pass unchanged; truncate events, which have no row, are dropped.

use std::sync::Arc;

use sluice_connector_api::{ConnectError, Field, Props, Record, Schema, SchemaType, Struct, Value};

use crate::Transform;
use crate::util::{Errors, list};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deletes {
    /// Drop delete events and tombstones.
    Drop,
    /// Drop delete events, keep tombstones.
    Tombstone,
    /// The old row with `__deleted`, tombstones dropped.
    Rewrite,
    /// The old row with `__deleted`, tombstones kept.
    RewriteWithTombstone,
    /// Delete events become tombstones, the original tombstones are dropped.
    DeleteToTombstone,
    /// The deprecated `delete.handling.mode=none`: a delete passes as a record with a null
    /// value; tombstones per `drop.tombstones`.
    Passthrough { drop_tombstones: bool },
}

struct ExtractNewRecordState {
    deletes: Deletes,
    fields: Vec<String>,
    fields_prefix: String,
    headers: Vec<String>,
    headers_prefix: String,
}

pub(crate) fn extract_new_record_state(
    _: Option<crate::Target>,
    props: &Props,
) -> Result<Box<dyn Transform>, Errors> {
    let get = |k: &str| props.get(k).map(|v| v.trim().to_ascii_lowercase());
    let drop_tombstones = match get("drop.tombstones").as_deref() {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(vec![(
                "drop.tombstones".into(),
                format!("{other:?} is not a boolean"),
            )]);
        }
    };
    let deletes = match (
        get("delete.tombstone.handling.mode").as_deref(),
        get("delete.handling.mode").as_deref(),
    ) {
        (Some("drop"), _) => Deletes::Drop,
        (Some("tombstone"), _) => Deletes::Tombstone,
        (Some("rewrite"), _) => Deletes::Rewrite,
        (Some("rewrite-with-tombstone"), _) => Deletes::RewriteWithTombstone,
        (Some("delete-to-tombstone"), _) => Deletes::DeleteToTombstone,
        (Some(other), _) => {
            return Err(vec![(
                "delete.tombstone.handling.mode".into(),
                format!(
                    "{other:?}: one of drop, tombstone, rewrite, rewrite-with-tombstone, \
                     delete-to-tombstone"
                ),
            )]);
        }
        (None, Some("drop")) if drop_tombstones => Deletes::Drop,
        (None, Some("drop")) => Deletes::Tombstone,
        (None, Some("rewrite")) if drop_tombstones => Deletes::Rewrite,
        (None, Some("rewrite")) => Deletes::RewriteWithTombstone,
        (None, Some("none")) => Deletes::Passthrough { drop_tombstones },
        (None, Some(other)) => {
            return Err(vec![(
                "delete.handling.mode".into(),
                format!("{other:?}: one of drop, rewrite, none"),
            )]);
        }
        (None, None) => Deletes::Tombstone,
    };
    let prefix = |k: &str| props.get(k).cloned().unwrap_or_else(|| "__".to_owned());
    Ok(Box::new(ExtractNewRecordState {
        deletes,
        fields: list(props, "add.fields"),
        fields_prefix: prefix("add.fields.prefix"),
        headers: list(props, "add.headers"),
        headers_prefix: prefix("add.headers.prefix"),
    }))
}

/// Whether a value schema is a Debezium envelope.
fn is_envelope(schema: &Schema) -> bool {
    schema
        .name
        .as_deref()
        .is_some_and(|n| n.ends_with(".Envelope"))
        && schema.field("op").is_some()
        && schema.field("after").is_some()
}

/// A field named by `add.fields`: an envelope field (`op`, `ts_ms`, ...) or, otherwise or with
/// `source.`, a field of the `source` block. The added field's name, its schema and value.
fn lookup(spec: &str, schema: &Schema, envelope: &Struct) -> Option<(String, Schema, Value)> {
    let (from_source, name) = match spec.strip_prefix("source.") {
        Some(n) => (true, n),
        None => (false, spec),
    };
    let source_field = || {
        let s = schema.field("source")?;
        let f = s.schema.field(name)?;
        let v = match envelope.get("source") {
            Some(Value::Struct(src)) => src.get(name).cloned().unwrap_or(Value::Null),
            _ => Value::Null,
        };
        Some((f.schema.clone(), v))
    };
    let (field_schema, value) = if from_source {
        source_field()?
    } else {
        match schema.field(name) {
            Some(f) if !matches!(name, "before" | "after" | "source") => (
                f.schema.clone(),
                envelope.get(name).cloned().unwrap_or(Value::Null),
            ),
            _ => source_field()?,
        }
    };
    Some((spec.replace('.', "_"), field_schema, value))
}

impl Transform for ExtractNewRecordState {
    fn apply(&self, mut record: Record) -> Result<Option<Record>, ConnectError> {
        if record.value.is_null() {
            let keep = match self.deletes {
                Deletes::Drop | Deletes::Rewrite | Deletes::DeleteToTombstone => false,
                Deletes::Passthrough { drop_tombstones } => !drop_tombstones,
                Deletes::Tombstone | Deletes::RewriteWithTombstone => true,
            };
            return Ok(keep.then_some(record));
        }
        let Some(schema) = record.value_schema.clone().filter(|s| is_envelope(s)) else {
            return Ok(Some(record));
        };
        let Value::Struct(envelope) = &record.value else {
            return Ok(Some(record));
        };
        let op = match envelope.get("op") {
            Some(Value::String(op)) => op.clone(),
            _ => return Ok(Some(record)),
        };
        let (row, deleted) = match op.as_str() {
            "d" => match self.deletes {
                Deletes::Drop | Deletes::Tombstone => return Ok(None),
                Deletes::DeleteToTombstone | Deletes::Passthrough { .. } => {
                    record.value = Value::Null;
                    record.value_schema = None;
                    return Ok(Some(record));
                }
                Deletes::Rewrite | Deletes::RewriteWithTombstone => ("before", true),
            },
            "t" => return Ok(None),
            _ => ("after", false),
        };
        let Some(Value::Struct(mut flat)) = envelope.get(row).cloned() else {
            return Ok(None);
        };
        let mut flat_schema = schema
            .field(row)
            .map(|f| f.schema.clone())
            .unwrap_or_else(|| Schema::new(SchemaType::Struct));
        let mut added = Vec::new();
        for spec in &self.fields {
            let Some((name, field_schema, value)) = lookup(spec, &schema, envelope) else {
                return Err(ConnectError::user(format!(
                    "ExtractNewRecordState: add.fields names {spec:?}, which the event has not"
                )));
            };
            added.push((
                format!("{}{name}", self.fields_prefix),
                field_schema.optional(),
                value,
            ));
        }
        if matches!(
            self.deletes,
            Deletes::Rewrite | Deletes::RewriteWithTombstone
        ) {
            added.push((
                "__deleted".to_owned(),
                Schema::new(SchemaType::String).optional(),
                Value::String(deleted.to_string()),
            ));
        }
        for (name, field_schema, value) in added {
            flat.put(name.clone(), value);
            flat_schema.fields.retain(|f| f.name != name);
            flat_schema.fields.push(Field {
                name,
                schema: field_schema,
            });
        }
        for spec in &self.headers {
            if let Some((name, _, value)) = lookup(spec, &schema, envelope) {
                let text = match value {
                    Value::String(s) => Some(s.into_bytes()),
                    Value::Null => None,
                    Value::Int64(n) => Some(n.to_string().into_bytes()),
                    Value::Int32(n) => Some(n.to_string().into_bytes()),
                    other => Some(format!("{other:?}").into_bytes()),
                };
                record
                    .headers
                    .add(format!("{}{name}", self.headers_prefix), text);
            }
        }
        record.value = Value::Struct(flat);
        record.value_schema = Some(Arc::new(flat_schema));
        Ok(Some(record))
    }
}

#[cfg(test)]
mod tests {
    use sluice_connector_api::testing::props;

    use super::*;

    fn envelope(op: &str, before: Option<i32>, after: Option<i32>) -> Record {
        let row = Schema::structure(vec![Field {
            name: "id".into(),
            schema: Schema::new(SchemaType::Int32),
        }])
        .named("srv.public.t.Value")
        .optional();
        let source = Schema::structure(vec![
            Field {
                name: "table".into(),
                schema: Schema::new(SchemaType::String),
            },
            Field {
                name: "lsn".into(),
                schema: Schema::new(SchemaType::Int64).optional(),
            },
        ]);
        let schema = Schema::structure(vec![
            Field {
                name: "before".into(),
                schema: row.clone(),
            },
            Field {
                name: "after".into(),
                schema: row,
            },
            Field {
                name: "source".into(),
                schema: source,
            },
            Field {
                name: "op".into(),
                schema: Schema::new(SchemaType::String),
            },
        ])
        .named("srv.public.t.Envelope");
        let row_value = |id: Option<i32>| {
            id.map_or(Value::Null, |i| Value::Struct(Struct::new().with("id", i)))
        };
        let value = Struct::new()
            .with("before", row_value(before))
            .with("after", row_value(after))
            .with(
                "source",
                Value::Struct(
                    Struct::new()
                        .with("table", Value::String("t".into()))
                        .with("lsn", Value::Int64(99)),
                ),
            )
            .with("op", Value::String(op.into()));
        Record::new("srv.public.t", Value::Struct(value)).with_value_schema(schema)
    }

    fn apply(config: &[(&str, &str)], record: Record) -> Option<Record> {
        extract_new_record_state(None, &props(config))
            .unwrap()
            .apply(record)
            .unwrap()
    }

    #[test]
    fn a_change_becomes_its_row_with_the_fields_asked_for() {
        let out = apply(
            &[("add.fields", "op,table,source.lsn")],
            envelope("u", None, Some(7)),
        )
        .unwrap();
        let Value::Struct(v) = &out.value else {
            panic!()
        };
        assert_eq!(v.get("id"), Some(&Value::Int32(7)));
        assert_eq!(v.get("__op"), Some(&Value::String("u".into())));
        assert_eq!(v.get("__table"), Some(&Value::String("t".into())));
        assert_eq!(v.get("__source_lsn"), Some(&Value::Int64(99)));
        out.value_schema.unwrap().check(&out.value).unwrap();
    }

    #[test]
    fn deletes_and_tombstones_follow_the_mode() {
        let delete = || envelope("d", Some(7), None);
        let tombstone = || Record::new("srv.public.t", Value::Null);
        assert!(
            apply(&[], delete()).is_none(),
            "default: the delete is dropped"
        );
        assert!(
            apply(&[], tombstone()).is_some(),
            "default: the tombstone is kept"
        );
        let rewrite = [("delete.tombstone.handling.mode", "rewrite")];
        let out = apply(&rewrite, delete()).unwrap();
        let Value::Struct(v) = &out.value else {
            panic!()
        };
        assert_eq!(v.get("id"), Some(&Value::Int32(7)));
        assert_eq!(v.get("__deleted"), Some(&Value::String("true".into())));
        assert!(apply(&rewrite, tombstone()).is_none());
        let old = [
            ("delete.handling.mode", "rewrite"),
            ("drop.tombstones", "false"),
        ];
        assert!(apply(&old, tombstone()).is_some());
        let to_tombstone = [("delete.tombstone.handling.mode", "delete-to-tombstone")];
        assert!(apply(&to_tombstone, delete()).unwrap().value.is_null());
        assert!(apply(&to_tombstone, tombstone()).is_none());
        assert!(
            apply(&[], envelope("t", None, None)).is_none(),
            "truncates have no row"
        );
        let heartbeat = Record::new("__debezium-heartbeat.srv", Value::String("x".into()));
        assert!(
            apply(&[], heartbeat).is_some(),
            "not an envelope: unchanged"
        );
        assert!(
            extract_new_record_state(None, &props(&[("delete.handling.mode", "bogus")])).is_err()
        );
    }
}
