use std::sync::Arc;

use sluice_connector_api::testing::props;
use sluice_connector_api::{Field, Record, Schema, SchemaType, Struct, Value};

use crate::TransformChain;

fn chain(pairs: &[(&str, &str)]) -> TransformChain {
    TransformChain::from_config(&props(pairs)).unwrap()
}

fn order() -> Record {
    let schema = Schema::structure(vec![
        Field {
            name: "id".into(),
            schema: Schema::new(SchemaType::Int64),
        },
        Field {
            name: "email".into(),
            schema: Schema::new(SchemaType::String),
        },
        Field {
            name: "amount".into(),
            schema: Schema::new(SchemaType::String),
        },
    ]);
    Record {
        topic: "orders".into(),
        partition: Some(3),
        value_schema: Some(Arc::new(schema)),
        value: Value::Struct(
            Struct::new()
                .with("id", 7i64)
                .with("email", "a@b.c")
                .with("amount", "12.5"),
        ),
        timestamp: Some(1_700_000_000_000),
        ..Record::default()
    }
}

fn field_names(schema: &Option<Arc<Schema>>) -> Vec<String> {
    schema
        .as_ref()
        .unwrap()
        .fields
        .iter()
        .map(|f| f.name.clone())
        .collect()
}

#[test]
fn insert_field_adds_values_and_schema_fields() {
    let c = chain(&[
        ("transforms", "ins"),
        (
            "transforms.ins.type",
            "org.apache.kafka.connect.transforms.InsertField$Value",
        ),
        ("transforms.ins.topic.field", "src_topic!"),
        ("transforms.ins.static.field", "origin"),
        ("transforms.ins.static.value", "sluice"),
    ]);
    let out = c.apply(order()).unwrap().unwrap();
    let v = out.value.as_struct().unwrap();
    assert_eq!(v.get("src_topic"), Some(&Value::from("orders")));
    assert_eq!(v.get("origin"), Some(&Value::from("sluice")));
    assert_eq!(
        field_names(&out.value_schema),
        ["id", "email", "amount", "src_topic", "origin"]
    );
    out.value_schema
        .as_ref()
        .unwrap()
        .check(&out.value)
        .unwrap();
}

#[test]
fn replace_field_includes_excludes_and_renames() {
    let c = chain(&[
        ("transforms", "r"),
        ("transforms.r.type", "ReplaceField$Value"),
        ("transforms.r.exclude", "email"),
        ("transforms.r.renames", "id:order_id"),
    ]);
    let out = c.apply(order()).unwrap().unwrap();
    assert_eq!(field_names(&out.value_schema), ["order_id", "amount"]);
    assert_eq!(
        out.value.as_struct().unwrap().get("order_id"),
        Some(&Value::Int64(7))
    );
    let c = chain(&[
        ("transforms", "r"),
        ("transforms.r.type", "ReplaceField$Value"),
        ("transforms.r.include", "id"),
    ]);
    assert_eq!(
        field_names(&c.apply(order()).unwrap().unwrap().value_schema),
        ["id"]
    );
}

#[test]
fn mask_field_blanks_and_replaces() {
    let c = chain(&[
        ("transforms", "m"),
        ("transforms.m.type", "MaskField$Value"),
        ("transforms.m.fields", "email,id"),
    ]);
    let out = c.apply(order()).unwrap().unwrap();
    let v = out.value.as_struct().unwrap();
    assert_eq!(v.get("email"), Some(&Value::from("")));
    assert_eq!(v.get("id"), Some(&Value::Int64(0)));
    let c = chain(&[
        ("transforms", "m"),
        ("transforms.m.type", "MaskField$Value"),
        ("transforms.m.fields", "email"),
        ("transforms.m.replacement", "***"),
    ]);
    assert_eq!(
        c.apply(order())
            .unwrap()
            .unwrap()
            .value
            .as_struct()
            .unwrap()
            .get("email"),
        Some(&Value::from("***"))
    );
}

#[test]
fn value_to_key_then_extract_field_key() {
    let c = chain(&[
        ("transforms", "k,x"),
        ("transforms.k.type", "ValueToKey"),
        ("transforms.k.fields", "id"),
        ("transforms.x.type", "ExtractField$Key"),
        ("transforms.x.field", "id"),
    ]);
    let out = c.apply(order()).unwrap().unwrap();
    assert_eq!(out.key, Value::Int64(7));
    assert_eq!(out.key_schema.unwrap().kind, SchemaType::Int64);
}

#[test]
fn hoist_field_wraps_value() {
    let c = chain(&[
        ("transforms", "h"),
        ("transforms.h.type", "HoistField$Value"),
        ("transforms.h.field", "line"),
    ]);
    let out = c
        .apply(Record::new("t", Value::from("hello")))
        .unwrap()
        .unwrap();
    assert_eq!(
        out.value,
        Value::Struct(Struct::new().with("line", "hello"))
    );
}

#[test]
fn regex_router_uses_java_group_syntax() {
    let c = chain(&[
        ("transforms", "r"),
        (
            "transforms.r.type",
            "org.apache.kafka.connect.transforms.RegexRouter",
        ),
        ("transforms.r.regex", "(.*)ers"),
        ("transforms.r.replacement", "$1s_v2"),
    ]);
    assert_eq!(c.apply(order()).unwrap().unwrap().topic, "ords_v2");
}

#[test]
fn timestamp_router_formats_record_time() {
    let c = chain(&[
        ("transforms", "t"),
        ("transforms.t.type", "TimestampRouter"),
        ("transforms.t.timestamp.format", "yyyy-MM-dd'T'HH"),
    ]);
    assert_eq!(
        c.apply(order()).unwrap().unwrap().topic,
        "orders-2023-11-14T22"
    );
}

#[test]
fn cast_fields_and_whole_value() {
    let c = chain(&[
        ("transforms", "c"),
        ("transforms.c.type", "Cast$Value"),
        ("transforms.c.spec", "amount:float64,id:string"),
    ]);
    let out = c.apply(order()).unwrap().unwrap();
    let v = out.value.as_struct().unwrap();
    assert_eq!(v.get("amount"), Some(&Value::Float64(12.5)));
    assert_eq!(v.get("id"), Some(&Value::from("7")));
    out.value_schema
        .as_ref()
        .unwrap()
        .check(&out.value)
        .unwrap();
    let c = chain(&[
        ("transforms", "c"),
        ("transforms.c.type", "Cast$Value"),
        ("transforms.c.spec", "int32"),
    ]);
    assert_eq!(
        c.apply(Record::new("t", Value::from("42")))
            .unwrap()
            .unwrap()
            .value,
        Value::Int32(42)
    );
    let bad = c.apply(Record::new("t", Value::from("forty"))).unwrap_err();
    assert!(
        bad.to_string()
            .contains("cannot cast string value forty to int32"),
        "{bad}"
    );
}

#[test]
fn filter_with_predicates_and_negate() {
    let base = [
        ("transforms", "drop"),
        ("transforms.drop.type", "Filter"),
        ("transforms.drop.predicate", "isTomb"),
        ("predicates", "isTomb,isOrders,hasTrace"),
        (
            "predicates.isTomb.type",
            "org.apache.kafka.connect.transforms.predicates.RecordIsTombstone",
        ),
        ("predicates.isOrders.type", "TopicNameMatches"),
        ("predicates.isOrders.pattern", "ord.*"),
        ("predicates.hasTrace.type", "HasHeaderKey"),
        ("predicates.hasTrace.name", "trace"),
    ];
    let c = chain(&base);
    assert!(
        c.apply(Record::new("orders", Value::Null))
            .unwrap()
            .is_none()
    );
    assert!(c.apply(order()).unwrap().is_some());

    let mut negated = base.to_vec();
    negated[2] = ("transforms.drop.predicate", "isOrders");
    negated.push(("transforms.drop.negate", "true"));
    let c = chain(&negated);
    assert!(
        c.apply(order()).unwrap().is_some(),
        "orders match, so negate keeps it"
    );
    assert!(
        c.apply(Record::new("payments", Value::from("x")))
            .unwrap()
            .is_none()
    );

    let mut by_header = base.to_vec();
    by_header[2] = ("transforms.drop.predicate", "hasTrace");
    let c = chain(&by_header);
    let mut traced = order();
    traced.headers.add_str("trace", "1");
    assert!(c.apply(traced).unwrap().is_none());
    assert!(c.apply(order()).unwrap().is_some());
}

#[test]
fn config_errors_are_all_reported() {
    let errors = TransformChain::from_config(&props(&[
        ("transforms", "a,b,c,d"),
        ("transforms.a.type", "NoSuchTransform"),
        ("transforms.b.type", "RegexRouter"),
        ("transforms.b.regex", "("),
        ("transforms.c.type", "Filter"),
        ("transforms.c.predicate", "missing"),
        ("transforms.d.type", "Cast$Value"),
        ("transforms.d.spec", "x:decimal"),
    ]))
    .err()
    .unwrap();
    let keys: Vec<_> = errors.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "transforms.a.type",
            "transforms.b.regex",
            "transforms.b.replacement",
            "transforms.c.predicate",
            "transforms.d.spec"
        ]
    );
}

#[test]
fn schemaless_struct_transforms_without_schema() {
    let c = chain(&[
        ("transforms", "r"),
        ("transforms.r.type", "ReplaceField$Value"),
        ("transforms.r.renames", "a:b"),
    ]);
    let rec = Record::new("t", Value::Struct(Struct::new().with("a", 1i64)));
    let out = c.apply(rec).unwrap().unwrap();
    assert!(out.value_schema.is_none());
    assert_eq!(out.value, Value::Struct(Struct::new().with("b", 1i64)));
}

#[test]
fn non_struct_value_fails_with_readable_error() {
    let c = chain(&[
        ("transforms", "m"),
        ("transforms.m.type", "MaskField$Value"),
        ("transforms.m.fields", "x"),
    ]);
    let err = c.apply(Record::new("t", Value::from("plain"))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "transform m failed: MaskField requires the record value to be a struct or JSON object, found string"
    );
}
