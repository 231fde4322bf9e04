//! A Kafka record as a Kinesis record: its partition key and its data.
//!
//! Guarantees:
//! - every partition key is valid for Kinesis (1 to 256 Unicode characters) and the same for the
//!   same input: a key that is valid text is used as it is; one that is not (empty, over 256
//!   characters, not UTF-8) becomes `sha256:` and the base64url digest of its bytes, so records of
//!   one Kafka key still share one partition key;
//! - data is never truncated: a record over Kinesis's 1 MiB limit is the task's to report.

use std::borrow::Cow;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use sluice_connector_api::convert::{AsJson, value_to_json};
use sluice_connector_api::{Schema, SinkRecord, Value};

use super::config::{PartitionKeySource, RecordFormat};
use crate::kinesis::envelope::{self, EnvelopeRef};
use crate::kinesis::stream::MAX_PARTITION_KEY_CHARS;

/// The partition key of `record`.
pub fn partition_key(source: &PartitionKeySource, record: &SinkRecord) -> Arc<str> {
    let partition = || Arc::from(record.origin.partition.to_string());
    match source {
        PartitionKeySource::Partition => partition(),
        PartitionKeySource::Random => Arc::from(format!("{:032x}", fastrand::u128(..))),
        PartitionKeySource::Key => key_of(&record.record.key).unwrap_or_else(partition),
        PartitionKeySource::Field(name) => field_of(&record.record.value, name)
            .or_else(|| key_of(&record.record.key))
            .unwrap_or_else(partition),
    }
}

/// A record key's partition key; `None` for a null key.
fn key_of(key: &Value) -> Option<Arc<str>> {
    match key {
        Value::Null => None,
        Value::String(s) => Some(valid(s.as_bytes())),
        Value::Bytes(b) => Some(valid(b)),
        other => Some(valid(value_to_json(other).to_string().as_bytes())),
    }
}

/// A top-level field of a value: a struct's, a map's with string keys, or a JSON object's held as
/// bytes or text (the default `ByteArrayConverter`, or `StringConverter`).
fn field_of(value: &Value, name: &str) -> Option<Arc<str>> {
    let field = match value {
        Value::Struct(s) => s.get(name).cloned(),
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| matches!(k, Value::String(k) if k == name))
            .map(|(_, v)| v.clone()),
        Value::Bytes(b) => json_field(b, name),
        Value::String(s) => json_field(s.as_bytes(), name),
        _ => None,
    }?;
    match field {
        Value::Null => None,
        Value::String(s) => Some(valid(s.as_bytes())),
        other => key_of(&other),
    }
}

fn json_field(text: &[u8], name: &str) -> Option<Value> {
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(text).ok()?;
    match object.get(name)? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(Value::String(s.clone())),
        other => Some(Value::String(other.to_string())),
    }
}

/// The bytes as a partition key: as they are when they are 1 to 256 characters of UTF-8, else
/// their digest.
pub fn valid(bytes: &[u8]) -> Arc<str> {
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.is_empty() && text.chars().count() <= MAX_PARTITION_KEY_CHARS => {
            Arc::from(text)
        }
        _ => Arc::from(format!(
            "sha256:{}",
            URL_SAFE_NO_PAD.encode(Sha256::digest(bytes))
        )),
    }
}

/// A key or value as bytes: raw bytes as they are, text as UTF-8, anything else as the JSON the
/// `JsonConverter` would write (without its schema envelope); `None` for null.
pub fn bytes_of<'a>(value: &'a Value, schema: Option<&'a Schema>) -> Option<Cow<'a, [u8]>> {
    match value {
        Value::Null => None,
        Value::Bytes(b) => Some(Cow::Borrowed(b)),
        Value::String(s) => Some(Cow::Borrowed(s.as_bytes())),
        other => Some(Cow::Owned(
            serde_json::to_vec(&AsJson {
                value: other,
                schema,
            })
            .unwrap_or_default(),
        )),
    }
}

/// The Kinesis record's data for `record`.
pub fn data(format: RecordFormat, record: &SinkRecord) -> Vec<u8> {
    let r = &record.record;
    let value = bytes_of(&r.value, r.value_schema.as_deref());
    match format {
        // A tombstone has no value: its data is empty (use `envelope` to keep tombstones apart).
        RecordFormat::Value => value.map(Cow::into_owned).unwrap_or_default(),
        RecordFormat::Envelope => {
            let key = bytes_of(&r.key, r.key_schema.as_deref());
            envelope::encode(&EnvelopeRef {
                topic: &r.topic,
                partition: Some(record.origin.partition),
                offset: Some(record.offset),
                timestamp: r.timestamp,
                key: key.as_deref(),
                value: value.as_deref(),
                headers: &r.headers,
                source_partition: None,
                source_offset: None,
                diverted_by: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use sluice_connector_api::{Record, Struct, TopicPartition};

    use super::*;

    fn record(key: Value, value: Value) -> SinkRecord {
        SinkRecord {
            record: Record {
                topic: "t".into(),
                key,
                value,
                ..Record::default()
            },
            origin: TopicPartition::new("t", 3),
            offset: 7,
            value_is_json: false,
        }
    }

    #[test]
    fn keys_are_valid_and_stable() {
        let key = PartitionKeySource::Key;
        let of = |k: Value| partition_key(&key, &record(k, Value::Null));
        assert_eq!(&*of(Value::Bytes(b"device-7".to_vec())), "device-7");
        assert_eq!(&*of(Value::Null), "3", "no key: the Kafka partition");
        assert_eq!(&*of(Value::Int64(42)), "42");
        let long = Value::String("x".repeat(300));
        let hashed = of(long.clone());
        assert!(
            hashed.starts_with("sha256:") && hashed.len() <= 256,
            "{hashed}"
        );
        assert_eq!(
            hashed,
            of(long),
            "the same key gives the same partition key"
        );
        let binary = of(Value::Bytes(vec![0xff, 0xfe]));
        assert!(binary.starts_with("sha256:"));
        assert!(of(Value::Bytes(Vec::new())).starts_with("sha256:"));
        // 256 characters of multi-byte text are still one valid key.
        let wide = "é".repeat(256);
        assert_eq!(&*of(Value::String(wide.clone())), wide);
    }

    #[test]
    fn fields_come_from_structs_maps_and_json() {
        let source = PartitionKeySource::Field("device".into());
        let by = |value: Value| partition_key(&source, &record(Value::from("k"), value));
        let mut s = Struct::new();
        s.put("device", Value::from("d1"));
        assert_eq!(&*by(Value::Struct(s)), "d1");
        let map = Value::Map(vec![(Value::from("device"), Value::Int32(9))]);
        assert_eq!(&*by(map), "9");
        assert_eq!(&*by(Value::Bytes(br#"{"device":"d2"}"#.to_vec())), "d2");
        assert_eq!(
            &*by(Value::Bytes(br#"{"other":1}"#.to_vec())),
            "k",
            "no field: the key"
        );
        assert_eq!(&*by(Value::Null), "k", "a tombstone: the key");
        let random = partition_key(
            &PartitionKeySource::Random,
            &record(Value::Null, Value::Null),
        );
        assert_eq!(random.len(), 32);
    }

    #[test]
    fn data_keeps_bytes_and_envelopes_restore() {
        let r = record(Value::Bytes(b"k".to_vec()), Value::Bytes(vec![0, 1, 2]));
        assert_eq!(data(RecordFormat::Value, &r), [0, 1, 2]);
        let tombstone = record(Value::Bytes(b"k".to_vec()), Value::Null);
        assert!(data(RecordFormat::Value, &tombstone).is_empty());
        let back = envelope::decode(&data(RecordFormat::Envelope, &tombstone)).unwrap();
        assert_eq!(
            (back.key.as_deref(), back.value, back.offset, back.partition),
            (Some(&b"k"[..]), None, Some(7), Some(3))
        );
        let decoded = record(
            Value::Null,
            Value::Map(vec![(Value::from("a"), Value::Int32(1))]),
        );
        assert_eq!(data(RecordFormat::Value, &decoded), br#"{"a":1}"#);
    }
}
