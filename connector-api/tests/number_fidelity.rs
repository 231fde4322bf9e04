//! Numbers go through the JSON converter bit for bit: every finite double (all exponent ranges,
//! subnormals, negative zero, the extremes) and every 64-bit integer, with and without schemas, in
//! the converter's own output and in the shortest text other writers produce.

use proptest::prelude::*;
use sluice_connector_api::convert::JsonConverter;
use sluice_connector_api::{Converter, Field, Schema, SchemaType, Struct, Value};

/// Doubles people trip over, beside the random ones.
const EDGE_DOUBLES: &[f64] = &[
    0.0,
    -0.0,
    f64::MIN_POSITIVE,
    -f64::MIN_POSITIVE,
    5e-324, // the smallest subnormal
    -5e-324,
    2.225_073_858_507_201e-308, // the largest subnormal
    f64::MAX,
    f64::MIN,
    f64::EPSILON,
    0.1,
    1.0 / 3.0,
    // Seen one step off with serde_json's default parser.
    0.195_096_176_608_499_98,
    1_931.392_860_933_903_4,
    9_007_199_254_740_993.0,
    1e23,
    8.98846567431158e307,
];

fn finite_double() -> impl Strategy<Value = f64> {
    // Uniform over bit patterns: every exponent range is as likely as any other.
    any::<u64>()
        .prop_map(f64::from_bits)
        .prop_filter("JSON has no NaN or infinity", |v| v.is_finite())
}

fn finite_float() -> impl Strategy<Value = f32> {
    any::<u32>()
        .prop_map(f32::from_bits)
        .prop_filter("JSON has no NaN or infinity", |v| v.is_finite())
}

fn record(field: &str, value: Value) -> Value {
    Value::Struct(Struct::new().with(field, value))
}

fn field(value: &Value, name: &str) -> Value {
    value
        .as_struct()
        .and_then(|s| s.get(name))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Schemaless: the converter's own bytes, then the text other writers give (Rust's and Python's
/// shortest representation, exponent form).
fn schemaless_round_trip(v: f64) -> Result<(), TestCaseError> {
    let converter = JsonConverter::new(false);
    let bytes = converter
        .to_bytes("t", None, &record("x", Value::Float64(v)))
        .expect("encodes")
        .expect("not null");
    let (_, back) = converter.to_connect("t", Some(&bytes)).expect("decodes");
    let Value::Float64(got) = field(&back, "x") else {
        return Err(TestCaseError::fail(format!(
            "{v:e} came back as {back:?} from {}",
            String::from_utf8_lossy(&bytes)
        )));
    };
    prop_assert_eq!(
        got.to_bits(),
        v.to_bits(),
        "{:e} from {}",
        v,
        String::from_utf8_lossy(&bytes)
    );
    for text in [format!("{{\"x\":{v:?}}}"), format!("{{\"x\":{v:e}}}")] {
        let (_, back) = converter
            .to_connect("t", Some(text.as_bytes()))
            .expect("decodes");
        let got = match field(&back, "x") {
            Value::Float64(f) => f,
            // `0.0`'s exponent form is `0e0`, an integer to JSON: only zero may come back so.
            Value::Int64(0) if v == 0.0 => continue,
            other => return Err(TestCaseError::fail(format!("{text} gave {other:?}"))),
        };
        prop_assert_eq!(got.to_bits(), v.to_bits(), "{}", text);
    }
    Ok(())
}

fn schema_of(kind: SchemaType) -> Schema {
    Schema::structure(vec![Field {
        name: "x".into(),
        schema: Schema::new(kind),
    }])
}

fn with_schema_round_trip(kind: SchemaType, v: Value) -> Result<(), TestCaseError> {
    let converter = JsonConverter::new(true);
    let schema = schema_of(kind);
    let bytes = converter
        .to_bytes("t", Some(&schema), &record("x", v.clone()))
        .expect("encodes")
        .expect("not null");
    let (_, back) = converter.to_connect("t", Some(&bytes)).expect("decodes");
    let got = field(&back, "x");
    let same = match (&got, &v) {
        (Value::Float64(a), Value::Float64(b)) => a.to_bits() == b.to_bits(),
        (Value::Float32(a), Value::Float32(b)) => a.to_bits() == b.to_bits(),
        (a, b) => a == b,
    };
    prop_assert!(
        same,
        "{:?} came back as {:?} from {}",
        v,
        got,
        String::from_utf8_lossy(&bytes)
    );
    Ok(())
}

#[test]
fn edge_doubles_round_trip_exactly() {
    for &v in EDGE_DOUBLES {
        schemaless_round_trip(v).unwrap();
        with_schema_round_trip(SchemaType::Float64, Value::Float64(v)).unwrap();
    }
}

#[test]
fn edge_integers_round_trip_exactly() {
    let edges = [
        i64::MIN,
        i64::MIN + 1,
        -(1 << 53) - 1,
        -(1 << 53),
        -1,
        0,
        1,
        (1 << 53) - 1,
        1 << 53,
        (1 << 53) + 1,
        i64::MAX - 1,
        i64::MAX,
    ];
    let converter = JsonConverter::new(false);
    for v in edges {
        let text = format!("{{\"x\":{v}}}");
        let (_, back) = converter.to_connect("t", Some(text.as_bytes())).unwrap();
        assert_eq!(field(&back, "x"), Value::Int64(v), "{text}");
        with_schema_round_trip(SchemaType::Int64, Value::Int64(v)).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn every_finite_double_round_trips_without_a_schema(v in finite_double()) {
        schemaless_round_trip(v)?;
    }

    #[test]
    fn every_finite_double_round_trips_with_a_schema(v in finite_double()) {
        with_schema_round_trip(SchemaType::Float64, Value::Float64(v))?;
    }

    #[test]
    fn every_finite_float_round_trips_with_a_schema(v in finite_float()) {
        with_schema_round_trip(SchemaType::Float32, Value::Float32(v))?;
        // Java's Float.toString and Rust's shortest f32 text, read into a float32 field.
        let converter = JsonConverter::new(true);
        let text = format!(
            r#"{{"schema":{{"type":"struct","fields":[{{"field":"x","type":"float"}}]}},"payload":{{"x":{v:?}}}}}"#
        );
        let (_, back) = converter.to_connect("t", Some(text.as_bytes())).expect("decodes");
        match field(&back, "x") {
            Value::Float32(got) => prop_assert_eq!(got.to_bits(), v.to_bits(), "{}", text),
            other => return Err(TestCaseError::fail(format!("{text} gave {other:?}"))),
        }
    }

    #[test]
    fn every_integer_round_trips(v in any::<i64>()) {
        with_schema_round_trip(SchemaType::Int64, Value::Int64(v))?;
        let text = format!("{{\"x\":{v}}}");
        let (_, back) = JsonConverter::new(false).to_connect("t", Some(text.as_bytes())).expect("decodes");
        prop_assert_eq!(field(&back, "x"), Value::Int64(v));
    }
}
