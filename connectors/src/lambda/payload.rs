//! What goes to the function and what comes back: a batch is a JSON array with one object per
//! record, and a synchronous function answers with a JSON array of one result per record, in the
//! same order.
//!
//! Request, one object per record (in the input's order, possibly from several partitions):
//!
//! ```json
//! [{"topic": "features", "partition": 0, "offset": 42, "timestamp": 1764892800000,
//!   "key": "device-7", "value": {"f1": 0.5, "f2": 1.25},
//!   "headers": [{"key": "trace", "value": "abc"}]}]
//! ```
//!
//! - `aws.lambda.payload.format=json`: `key` and `value` are JSON as the connector's converters
//!   decode them (bytes as base64 strings; a schemaless JSON value is passed through exactly as
//!   its text, numbers and all); `base64`: both are base64 strings of their bytes, or `null`.
//! - A header value that is UTF-8 is a string; one that is not is `{"key": k, "base64": "..."}`;
//!   a null header value is `null`.
//!
//! Response (sync): a JSON array with exactly one element per input, element `i` being the result
//! of input `i`. Each element, as JSON text, becomes the value of one record in the response
//! topic. Anything else (not JSON, not an array, another length) breaks the contract: every record
//! of the batch goes to `behavior.on.error` with a message saying what was wrong.
//!
//! Guarantees: nothing is truncated; a record whose JSON value does not parse goes to the error
//! policy as a converter failure instead of corrupting the batch.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde_json::value::RawValue;
use sluice_connector_api::convert::AsJson;
use sluice_connector_api::{Headers, SinkRecord, Value};

use super::config::PayloadFormat;

/// How the record's value is written: as decoded, or as the JSON text the runtime left undecoded.
enum ValueJson<'a> {
    Decoded(AsJson<'a>),
    Raw(&'a RawValue),
    Base64(Option<Vec<u8>>),
}

impl Serialize for ValueJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Decoded(v) => v.serialize(s),
            Self::Raw(raw) => raw.serialize(s),
            Self::Base64(bytes) => match bytes {
                Some(b) => s.serialize_str(&BASE64.encode(b)),
                None => s.serialize_unit(),
            },
        }
    }
}

struct HeadersJson<'a>(&'a Headers);

impl Serialize for HeadersJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for h in self.0.iter() {
            seq.serialize_element(&HeaderJson(&h.key, h.value.as_deref()))?;
        }
        seq.end()
    }
}

struct HeaderJson<'a>(&'a str, Option<&'a [u8]>);

impl Serialize for HeaderJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("key", self.0)?;
        match self.1 {
            None => map.serialize_entry("value", &())?,
            Some(v) => match std::str::from_utf8(v) {
                Ok(text) => map.serialize_entry("value", text)?,
                Err(_) => map.serialize_entry("base64", &BASE64.encode(v))?,
            },
        }
        map.end()
    }
}

/// The bytes of a decoded key or value: bytes and text as they are, anything else as JSON.
pub fn value_bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::Null => None,
        Value::Bytes(b) => Some(b.clone()),
        Value::String(s) => Some(s.clone().into_bytes()),
        other => serde_json::to_vec(&AsJson::schemaless(other)).ok(),
    }
}

/// Why a record could not be encoded.
#[derive(Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The value was left as JSON text and does not parse: the converter's failure to report.
    InvalidJson,
}

/// `record` as its object in a batch.
pub fn encode(format: PayloadFormat, record: &SinkRecord) -> Result<Vec<u8>, EncodeError> {
    let r = &record.record;
    let (key, value) = match format {
        PayloadFormat::Base64 => (
            ValueJson::Base64(value_bytes(&r.key)),
            ValueJson::Base64(value_bytes(&r.value)),
        ),
        PayloadFormat::Json => {
            let key = ValueJson::Decoded(AsJson {
                value: &r.key,
                schema: r.key_schema.as_deref(),
            });
            let value = match &r.value {
                Value::Bytes(text) if record.value_is_json => ValueJson::Raw(
                    serde_json::from_slice::<&RawValue>(text)
                        .map_err(|_| EncodeError::InvalidJson)?,
                ),
                v => ValueJson::Decoded(AsJson {
                    value: v,
                    schema: r.value_schema.as_deref(),
                }),
            };
            (key, value)
        }
    };
    #[derive(Serialize)]
    struct Object<'a> {
        topic: &'a str,
        partition: i32,
        offset: i64,
        timestamp: Option<i64>,
        key: ValueJson<'a>,
        value: ValueJson<'a>,
        headers: HeadersJson<'a>,
    }
    let object = Object {
        topic: &record.origin.topic,
        partition: record.origin.partition,
        offset: record.offset,
        timestamp: r.timestamp,
        key,
        value,
        headers: HeadersJson(&r.headers),
    };
    // Serializing borrowed values into a Vec cannot fail: every map key is a string.
    Ok(serde_json::to_vec(&object).unwrap_or_default())
}

/// The bytes a batch of encoded items takes as a JSON array: the items, a comma between each and
/// the brackets. The batcher counts each item as its length plus one, and the limit less one.
pub fn item_size(encoded: &[u8]) -> usize {
    encoded.len() + 1
}

/// Joins encoded items into the batch's JSON array.
pub fn join<'a>(items: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(items.len() * 64 + 2);
    out.push(b'[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item);
    }
    out.push(b']');
    out
}

/// Splits a synchronous function's answer into one JSON text per input, or says how it breaks the
/// contract.
pub fn results(answer: &[u8], inputs: usize) -> Result<Vec<Box<RawValue>>, String> {
    let parsed: Vec<Box<RawValue>> = serde_json::from_slice(answer).map_err(|e| {
        let shown = String::from_utf8_lossy(&answer[..answer.len().min(200)]).into_owned();
        format!("the response is not a JSON array of results ({e}); it begins {shown:?}")
    })?;
    if parsed.len() != inputs {
        return Err(format!(
            "the response holds {} results for {inputs} inputs; the function must return one \
             result per input, in input order",
            parsed.len()
        ));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Value as Json, json};
    use sluice_connector_api::{Field, Record, Schema, SchemaType, Struct, TopicPartition};

    use super::*;

    fn record(value: Value, value_is_json: bool) -> SinkRecord {
        let mut headers = Headers::new();
        headers.add_str("trace", "abc");
        headers.add("bin", Some(vec![0xff, 0x00]));
        headers.add("none", None);
        SinkRecord {
            record: Record {
                topic: "features".into(),
                key: Value::String("device-7".into()),
                value,
                headers,
                timestamp: Some(1_764_892_800_000),
                ..Record::default()
            },
            origin: TopicPartition::new("features", 3),
            offset: 42,
            value_is_json,
        }
    }

    fn parsed(bytes: &[u8]) -> Json {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn raw_json_values_pass_through_exactly() {
        let text = br#"{"f1":0.1000000000000000055511151231257827,"big":12345678901234567890}"#;
        let encoded = encode(
            PayloadFormat::Json,
            &record(Value::Bytes(text.to_vec()), true),
        )
        .unwrap();
        let s = String::from_utf8(encoded.clone()).unwrap();
        assert!(s.contains(std::str::from_utf8(text).unwrap()), "{s}");
        let v = parsed(&encoded);
        assert_eq!(v["topic"], "features");
        assert_eq!(v["partition"], 3);
        assert_eq!(v["offset"], 42);
        assert_eq!(v["timestamp"], 1_764_892_800_000i64);
        assert_eq!(v["key"], "device-7");
        assert_eq!(
            v["headers"],
            json!([{"key": "trace", "value": "abc"}, {"key": "bin", "base64": "/wA="},
                   {"key": "none", "value": null}])
        );
    }

    #[test]
    fn invalid_json_text_is_refused_not_sent() {
        let bad = record(Value::Bytes(b"{\"f1\": ".to_vec()), true);
        assert_eq!(
            encode(PayloadFormat::Json, &bad),
            Err(EncodeError::InvalidJson)
        );
    }

    #[test]
    fn decoded_values_and_base64() {
        let schema = Schema::structure(vec![Field {
            name: "f1".into(),
            schema: Schema::new(SchemaType::Float64),
        }]);
        let s = Struct::new().with("f1", Value::Float64(0.5));
        let mut r = record(Value::Struct(s), false);
        r.record.value_schema = Some(Arc::new(schema));
        let v = parsed(&encode(PayloadFormat::Json, &r).unwrap());
        assert_eq!(v["value"], json!({"f1": 0.5}));

        let b = record(Value::Bytes(vec![1, 2, 3]), false);
        let v = parsed(&encode(PayloadFormat::Base64, &b).unwrap());
        assert_eq!(v["value"], "AQID");
        assert_eq!(v["key"], BASE64.encode("device-7"));
        let tombstone = record(Value::Null, false);
        assert_eq!(
            parsed(&encode(PayloadFormat::Base64, &tombstone).unwrap())["value"],
            Json::Null
        );
    }

    #[test]
    fn batches_are_arrays_and_sizes_add_up() {
        let items: Vec<Vec<u8>> = vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()];
        let joined = join(items.iter().map(Vec::as_slice));
        assert_eq!(joined, b"[{\"a\":1},{\"b\":2}]");
        let counted: usize = items.iter().map(|i| item_size(i)).sum();
        assert_eq!(counted + 1, joined.len());
        assert_eq!(join(std::iter::empty()), b"[]");
    }

    #[test]
    fn responses_must_hold_one_result_per_input() {
        let ok = results(br#"[{"score":0.9}, 0.1, null]"#, 3).unwrap();
        assert_eq!(ok[0].get(), r#"{"score":0.9}"#);
        assert_eq!(ok[2].get(), "null");
        let short = results(b"[1]", 2).unwrap_err();
        assert!(short.contains("1 results for 2 inputs"), "{short}");
        let object = results(br#"{"score":1}"#, 1).unwrap_err();
        assert!(object.contains("not a JSON array"), "{object}");
        let garbage = results(b"oops", 1).unwrap_err();
        assert!(garbage.contains("\"oops\""), "{garbage}");
    }
}
