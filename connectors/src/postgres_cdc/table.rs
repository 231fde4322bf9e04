//! A streamed table's shape and its change events in Debezium's envelope: topic
//! `<topic.prefix>.<schema>.<table>`, key the primary key (struct `<topic>.Key`), value
//! `{before, after, source, transaction, op, ts_ms, ts_us, ts_ns}` (struct `<topic>.Envelope`)
//! with rows as `<topic>.Value`, in Connect schemas, so the JsonConverter with `schemas.enable`
//! writes what Debezium writes.
//!
//! One difference, on purpose: without REPLICA IDENTITY FULL, PostgreSQL sends only the key
//! columns of a deleted row, and Debezium fills the other columns of `before` with made-up
//! defaults (0, "") where the column is NOT NULL. Sluice never invents a value: those columns
//! are optional in the row schema of such a table and NULL in `before`.

use std::sync::Arc;

use sluice_connector_api::{Field, Schema, SchemaType, Struct, Value};

use super::catalog::CatalogTable;
use super::pgoutput::Datum;
use super::types::{Modes, PgType};

/// A column as events carry it.
#[derive(Debug, Clone)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// Its type.
    pub ty: PgType,
    /// Whether it is in events (`column.include.list` / `column.exclude.list`).
    pub included: bool,
    /// Whether it is part of the primary key.
    pub key: bool,
}

/// A table's shape and the schemas of its events.
#[derive(Debug, Clone)]
pub struct Table {
    /// Its schema.
    pub schema: String,
    /// Its name.
    pub name: String,
    /// Where its events go.
    pub topic: String,
    /// Its columns in the order tuples carry them.
    pub columns: Vec<Column>,
    /// The key's schema (`None` without a primary key: events have no key).
    pub key_schema: Option<Arc<Schema>>,
    /// The row's schema.
    pub row_schema: Arc<Schema>,
    /// The envelope's schema.
    pub envelope_schema: Arc<Schema>,
    /// Whether old rows arrive whole (REPLICA IDENTITY FULL).
    pub full_identity: bool,
}

/// A column before it is placed in a [`Table`].
pub struct ColumnSpec {
    /// Its name.
    pub name: String,
    /// Its type.
    pub ty: PgType,
    /// Whether it may be NULL.
    pub nullable: bool,
    /// Whether events carry it.
    pub included: bool,
}

impl Table {
    /// A table of `columns` (in tuple order), with the catalog's primary key and replica
    /// identity.
    pub fn new(
        prefix: &str,
        schema: &str,
        name: &str,
        columns: Vec<ColumnSpec>,
        catalog: &CatalogTable,
        modes: Modes,
    ) -> Self {
        let topic = format!("{prefix}.{schema}.{name}");
        let full_identity = catalog.replica_identity == b'f';
        let columns: Vec<(Column, bool)> = columns
            .into_iter()
            .map(|c| {
                let key = catalog.primary_key.contains(&c.name);
                (
                    Column {
                        key,
                        name: c.name,
                        ty: c.ty,
                        included: c.included || key,
                    },
                    c.nullable,
                )
            })
            .collect();
        let field = |c: &Column, optional: bool| Field {
            name: c.name.clone(),
            schema: {
                let s = c.ty.schema(modes);
                if optional { s.optional() } else { s }
            },
        };
        let row_schema = Schema::structure(
            columns
                .iter()
                .filter(|(c, _)| c.included)
                // A non-key column may be missing from a deleted row unless FULL.
                .map(|(c, nullable)| field(c, *nullable || (!full_identity && !c.key)))
                .collect(),
        )
        .named(format!("{topic}.Value"))
        .optional();
        let key_fields: Vec<Field> = catalog
            .primary_key
            .iter()
            .filter_map(|k| columns.iter().find(|(c, _)| &c.name == k))
            .map(|(c, _)| field(c, false))
            .collect();
        let key_schema = (!key_fields.is_empty())
            .then(|| Arc::new(Schema::structure(key_fields).named(format!("{topic}.Key"))));
        let envelope_schema = Arc::new(envelope_schema(&topic, &row_schema));
        Self {
            schema: schema.to_owned(),
            name: name.to_owned(),
            topic,
            columns: columns.into_iter().map(|(c, _)| c).collect(),
            key_schema,
            row_schema: Arc::new(row_schema),
            envelope_schema,
            full_identity,
        }
    }

    /// The row of a tuple (included columns only); `Err` names the column that cannot be read.
    pub fn row(&self, tuple: &[Datum], modes: Modes, placeholder: &str) -> Result<Struct, String> {
        if tuple.len() != self.columns.len() {
            return Err(format!(
                "a tuple of {} columns for {}.{} of {}",
                tuple.len(),
                self.schema,
                self.name,
                self.columns.len()
            ));
        }
        let mut row = Struct::new();
        for (c, datum) in self.columns.iter().zip(tuple) {
            if !c.included {
                continue;
            }
            let value = match datum {
                Datum::Null => Value::Null,
                Datum::Text(bytes) => {
                    let text = std::str::from_utf8(bytes)
                        .map_err(|_| format!("column {}: not UTF-8", c.name))?;
                    c.ty.value(text, modes)
                        .map_err(|e| format!("column {}: {e}", c.name))?
                }
                Datum::Unchanged => c.ty.unavailable(placeholder).ok_or_else(|| {
                    format!(
                        "column {}: an unchanged TOAST value of a {:?} column, which has no \
                         placeholder: set REPLICA IDENTITY FULL on {}.{}",
                        c.name, c.ty, self.schema, self.name
                    )
                })?,
            };
            row.put(c.name.clone(), value);
        }
        Ok(row)
    }

    /// The key of a row (`Null` without a primary key).
    pub fn key(&self, row: &Struct) -> Value {
        let Some(schema) = &self.key_schema else {
            return Value::Null;
        };
        let mut key = Struct::new();
        for f in &schema.fields {
            key.put(
                f.name.clone(),
                row.get(&f.name).cloned().unwrap_or(Value::Null),
            );
        }
        Value::Struct(key)
    }
}

/// Debezium's `source` block schema for PostgreSQL.
pub fn source_schema() -> Schema {
    let string = || Schema::new(SchemaType::String);
    let long = || Schema::new(SchemaType::Int64);
    let mut snapshot = string().named("io.debezium.data.Enum").optional();
    snapshot.version = Some(1);
    snapshot.parameters.insert(
        "allowed".into(),
        "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental".into(),
    );
    snapshot.default = Some(Value::String("false".into()));
    let fields = vec![
        ("version", string()),
        ("connector", string()),
        ("name", string()),
        ("ts_ms", long()),
        ("snapshot", snapshot),
        ("db", string()),
        ("sequence", string().optional()),
        ("ts_us", long().optional()),
        ("ts_ns", long().optional()),
        ("schema", string()),
        ("table", string()),
        ("txId", long().optional()),
        ("lsn", long().optional()),
        ("xmin", long().optional()),
    ];
    structure(fields).named("io.debezium.connector.postgresql.Source")
}

fn structure(fields: Vec<(&str, Schema)>) -> Schema {
    Schema::structure(
        fields
            .into_iter()
            .map(|(name, schema)| Field {
                name: name.into(),
                schema,
            })
            .collect(),
    )
}

fn envelope_schema(topic: &str, row: &Schema) -> Schema {
    let long = || Schema::new(SchemaType::Int64);
    let mut block = structure(vec![
        ("id", Schema::new(SchemaType::String)),
        ("total_order", long()),
        ("data_collection_order", long()),
    ])
    .named("event.block")
    .optional();
    block.version = Some(1);
    let mut envelope = structure(vec![
        ("before", row.clone()),
        ("after", row.clone()),
        ("source", source_schema()),
        ("transaction", block),
        ("op", Schema::new(SchemaType::String)),
        ("ts_ms", long().optional()),
        ("ts_us", long().optional()),
        ("ts_ns", long().optional()),
    ])
    .named(format!("{topic}.Envelope"));
    envelope.version = Some(2);
    envelope
}

/// Where in the database an event comes from (the `source` block's values).
pub struct SourceInfo<'a> {
    /// `topic.prefix`.
    pub server: &'a str,
    /// `database.dbname`.
    pub db: &'a str,
    /// The commit time (µs since the epoch); the read time in a snapshot.
    pub ts_us: i64,
    /// `true`, `first`, `last`, `false`, ...
    pub snapshot: &'a str,
    /// The transaction.
    pub tx_id: Option<i64>,
    /// The change's LSN.
    pub lsn: Option<u64>,
    /// The last commit LSN before it.
    pub last_commit: Option<u64>,
}

impl SourceInfo<'_> {
    fn value(&self, table: &Table) -> Value {
        let sequence = self.lsn.map(|lsn| {
            let commit = self
                .last_commit
                .map_or("null".to_owned(), |c| format!("\"{c}\""));
            format!("[{commit},\"{lsn}\"]")
        });
        let opt = |v: Option<i64>| v.map_or(Value::Null, Value::Int64);
        Value::Struct(
            Struct::new()
                .with("version", Value::String(super::VERSION.into()))
                .with("connector", Value::String("postgresql".into()))
                .with("name", Value::String(self.server.into()))
                .with("ts_ms", Value::Int64(self.ts_us.div_euclid(1000)))
                .with("snapshot", Value::String(self.snapshot.into()))
                .with("db", Value::String(self.db.into()))
                .with("sequence", sequence.map_or(Value::Null, Value::String))
                .with("ts_us", Value::Int64(self.ts_us))
                .with("ts_ns", Value::Int64(self.ts_us.saturating_mul(1000)))
                .with("schema", Value::String(table.schema.clone()))
                .with("table", Value::String(table.name.clone()))
                .with("txId", opt(self.tx_id))
                .with("lsn", opt(self.lsn.map(|l| l as i64)))
                .with("xmin", Value::Null),
        )
    }
}

/// A change event's value: `op` is `c`, `u`, `d`, `r` or `t`.
pub fn envelope(
    table: &Table,
    op: &str,
    before: Option<Struct>,
    after: Option<Struct>,
    source: &SourceInfo<'_>,
    now_us: i64,
) -> Value {
    let row = |r: Option<Struct>| r.map_or(Value::Null, Value::Struct);
    Value::Struct(
        Struct::new()
            .with("before", row(before))
            .with("after", row(after))
            .with("source", source.value(table))
            .with("transaction", Value::Null)
            .with("op", Value::String(op.into()))
            .with("ts_ms", Value::Int64(now_us.div_euclid(1000)))
            .with("ts_us", Value::Int64(now_us))
            .with("ts_ns", Value::Int64(now_us.saturating_mul(1000))),
    )
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::postgres_cdc::config::{DecimalHandling, TimePrecision};

    const M: Modes = Modes {
        decimal: DecimalHandling::Precise,
        time: TimePrecision::Adaptive,
    };

    fn table(identity: u8) -> Table {
        let spec = |name: &str, ty, nullable, included| ColumnSpec {
            name: name.into(),
            ty,
            nullable,
            included,
        };
        Table::new(
            "srv",
            "public",
            "orders",
            vec![
                spec("id", PgType::Int4, false, true),
                spec("note", PgType::Text, false, true),
                spec("secret", PgType::Text, true, false),
            ],
            &CatalogTable {
                columns: Vec::new(),
                primary_key: vec!["id".into()],
                replica_identity: identity,
            },
            M,
        )
    }

    #[test]
    fn events_follow_debeziums_shape() {
        let t = table(b'd');
        assert_eq!(t.topic, "srv.public.orders");
        let row_names: Vec<_> = t.row_schema.fields.iter().map(|f| &f.name).collect();
        assert_eq!(row_names, ["id", "note"], "excluded columns are left out");
        assert!(
            !t.row_schema.fields[0].schema.optional,
            "the key is never missing"
        );
        assert!(
            t.row_schema.fields[1].schema.optional,
            "a deleted row may lack it without FULL"
        );
        assert!(!table(b'f').row_schema.fields[1].schema.optional);
        let row = t
            .row(
                &[
                    Datum::Text(Bytes::from_static(b"7")),
                    Datum::Unchanged,
                    Datum::Null,
                ],
                M,
                "__debezium_unavailable_value",
            )
            .unwrap();
        assert_eq!(
            row.get("note"),
            Some(&Value::String("__debezium_unavailable_value".into()))
        );
        assert_eq!(row.get("secret"), None);
        let key = t.key(&row);
        assert_eq!(
            key,
            Value::Struct(Struct::new().with("id", Value::Int32(7)))
        );
        let source = SourceInfo {
            server: "srv",
            db: "shop",
            ts_us: 1_000_500,
            snapshot: "false",
            tx_id: Some(9),
            lsn: Some(300),
            last_commit: Some(200),
        };
        let value = envelope(&t, "c", None, Some(row), &source, 2_000_000);
        t.envelope_schema.check(&value).unwrap();
        let Value::Struct(v) = value else { panic!() };
        let Some(Value::Struct(s)) = v.get("source") else {
            panic!()
        };
        assert_eq!(
            s.get("sequence"),
            Some(&Value::String("[\"200\",\"300\"]".into()))
        );
        assert_eq!(s.get("ts_ms"), Some(&Value::Int64(1000)));
        assert_eq!(v.get("op"), Some(&Value::String("c".into())));
    }
}
