//! The `envelope` record format: one Kafka record as a self-describing JSON document, so that a
//! Kinesis record can be turned back into exactly the Kafka record it came from.
//!
//! ```json
//! {"sluice.envelope": 1, "topic": "orders", "partition": 3, "offset": 1042,
//!  "timestamp": 1764633600000, "key": "b3JkZXItNw==", "value": "eyJpZCI6N30=",
//!  "headers": [{"key": "trace", "value": "YWJj"}, {"key": "empty", "value": null}]}
//! ```
//!
//! Guarantees:
//! - key, value and header values are the record's bytes, base64-encoded (standard alphabet, with
//!   padding); `null` is a null key, a tombstone or a null header value, distinct from empty bytes;
//! - headers keep their order and repeated keys;
//! - [`decode`] accepts exactly what [`encode`] writes (and later versions' extra fields), and names
//!   what is wrong otherwise: a record that is not an envelope is never restored as something else.
//!
//! Readers in other languages need only a JSON parser and base64: a Lambda function or a Python
//! consumer can read the overflow stream as easily as the Kinesis source does.

use base64::Engine as _;
use base64::display::Base64Display;
use base64::engine::general_purpose::STANDARD;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value as Json};
use sluice_connector_api::{Header, Headers};

/// The version this build writes, in the `sluice.envelope` field.
pub const VERSION: u32 = 1;
/// The field that marks a document as an envelope.
pub const MARKER: &str = "sluice.envelope";

/// One Kafka record, as the envelope carries it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Envelope {
    /// The topic the record was read from (or, for a source's overflow, meant for).
    pub topic: String,
    /// Its Kafka partition; `None` when it had none yet (a source record).
    pub partition: Option<i32>,
    /// Its Kafka offset; `None` when it had none yet.
    pub offset: Option<i64>,
    /// Its timestamp in milliseconds since the epoch.
    pub timestamp: Option<i64>,
    /// Key bytes; `None` for a null key.
    pub key: Option<Vec<u8>>,
    /// Value bytes; `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Headers in order.
    pub headers: Headers,
    /// A source record's source partition (overflow of a source connector).
    pub source_partition: Option<Map<String, Json>>,
    /// A source record's source offset.
    pub source_offset: Option<Map<String, Json>>,
    /// The task run that diverted it to an overflow stream (`connector/task/run`), so that the
    /// run can replay exactly its own records; `None` for the Kinesis sink's records.
    pub diverted_by: Option<String>,
}

/// An envelope to encode, borrowing the record's parts.
#[derive(Debug, Clone, Copy)]
pub struct EnvelopeRef<'a> {
    /// See [`Envelope::topic`].
    pub topic: &'a str,
    /// See [`Envelope::partition`].
    pub partition: Option<i32>,
    /// See [`Envelope::offset`].
    pub offset: Option<i64>,
    /// See [`Envelope::timestamp`].
    pub timestamp: Option<i64>,
    /// See [`Envelope::key`].
    pub key: Option<&'a [u8]>,
    /// See [`Envelope::value`].
    pub value: Option<&'a [u8]>,
    /// See [`Envelope::headers`].
    pub headers: &'a Headers,
    /// See [`Envelope::source_partition`].
    pub source_partition: Option<&'a Map<String, Json>>,
    /// See [`Envelope::source_offset`].
    pub source_offset: Option<&'a Map<String, Json>>,
    /// See [`Envelope::diverted_by`].
    pub diverted_by: Option<&'a str>,
}

struct B64<'a>(Option<&'a [u8]>);

impl Serialize for B64<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(bytes) => s.collect_str(&Base64Display::new(bytes, &STANDARD)),
            None => s.serialize_none(),
        }
    }
}

struct HeaderList<'a>(&'a Headers);

impl Serialize for HeaderList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|h| HeaderOut {
            key: &h.key,
            value: B64(h.value.as_deref()),
        }))
    }
}

#[derive(Serialize)]
struct HeaderOut<'a> {
    key: &'a str,
    value: B64<'a>,
}

impl Serialize for EnvelopeRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry(MARKER, &VERSION)?;
        m.serialize_entry("topic", self.topic)?;
        if let Some(p) = self.partition {
            m.serialize_entry("partition", &p)?;
        }
        if let Some(o) = self.offset {
            m.serialize_entry("offset", &o)?;
        }
        if let Some(t) = self.timestamp {
            m.serialize_entry("timestamp", &t)?;
        }
        m.serialize_entry("key", &B64(self.key))?;
        m.serialize_entry("value", &B64(self.value))?;
        m.serialize_entry("headers", &HeaderList(self.headers))?;
        if let Some(p) = self.source_partition {
            m.serialize_entry("source_partition", p)?;
        }
        if let Some(o) = self.source_offset {
            m.serialize_entry("source_offset", o)?;
        }
        if let Some(by) = self.diverted_by {
            m.serialize_entry("diverted_by", by)?;
        }
        m.end()
    }
}

/// The envelope's JSON bytes.
pub fn encode(envelope: &EnvelopeRef<'_>) -> Vec<u8> {
    // Serializing a map of strings, numbers and JSON objects into a Vec cannot fail.
    serde_json::to_vec(envelope).unwrap_or_default()
}

#[derive(Deserialize)]
struct Wire {
    #[serde(rename = "sluice.envelope")]
    version: u32,
    topic: String,
    #[serde(default)]
    partition: Option<i32>,
    #[serde(default)]
    offset: Option<i64>,
    #[serde(default)]
    timestamp: Option<i64>,
    key: Option<String>,
    value: Option<String>,
    #[serde(default)]
    headers: Vec<WireHeader>,
    #[serde(default)]
    source_partition: Option<Map<String, Json>>,
    #[serde(default)]
    source_offset: Option<Map<String, Json>>,
    #[serde(default)]
    diverted_by: Option<String>,
}

#[derive(Deserialize)]
struct WireHeader {
    key: String,
    value: Option<String>,
}

fn bytes(field: &str, text: Option<String>) -> Result<Option<Vec<u8>>, String> {
    text.map(|t| {
        STANDARD
            .decode(t.as_bytes())
            .map_err(|e| format!("its {field} is not base64: {e}"))
    })
    .transpose()
}

/// The record an envelope holds, or why `data` is not one.
pub fn decode(data: &[u8]) -> Result<Envelope, String> {
    let wire: Wire = serde_json::from_slice(data)
        .map_err(|e| format!("not a Sluice envelope (JSON with a {MARKER} field): {e}"))?;
    if wire.version == 0 || wire.version > VERSION {
        return Err(format!(
            "envelope version {} is not supported by this worker (it reads up to {VERSION})",
            wire.version
        ));
    }
    let headers = wire
        .headers
        .into_iter()
        .map(|h| {
            Ok(Header {
                value: bytes("header value", h.value)?,
                key: h.key,
            })
        })
        .collect::<Result<Headers, String>>()?;
    Ok(Envelope {
        topic: wire.topic,
        partition: wire.partition,
        offset: wire.offset,
        timestamp: wire.timestamp,
        key: bytes("key", wire.key)?,
        value: bytes("value", wire.value)?,
        headers,
        source_partition: wire.source_partition,
        source_offset: wire.source_offset,
        diverted_by: wire.diverted_by,
    })
}

impl Envelope {
    /// This envelope, borrowed for [`encode`].
    pub fn as_ref(&self) -> EnvelopeRef<'_> {
        EnvelopeRef {
            topic: &self.topic,
            partition: self.partition,
            offset: self.offset,
            timestamp: self.timestamp,
            key: self.key.as_deref(),
            value: self.value.as_deref(),
            headers: &self.headers,
            source_partition: self.source_partition.as_ref(),
            source_offset: self.source_offset.as_ref(),
            diverted_by: self.diverted_by.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn headers(list: Vec<(String, Option<Vec<u8>>)>) -> Headers {
        list.into_iter()
            .map(|(key, value)| Header { key, value })
            .collect()
    }

    proptest! {
        #[test]
        fn every_record_round_trips(
            topic in "[a-z.\\-_]{1,20}",
            partition in proptest::option::of(0i32..1000),
            offset in proptest::option::of(0i64..i64::MAX),
            timestamp in proptest::option::of(any::<i64>()),
            key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
            hs in proptest::collection::vec(
                ("\\PC{0,8}", proptest::option::of(proptest::collection::vec(any::<u8>(), 0..10))),
                0..5,
            ),
        ) {
            let original = Envelope {
                topic, partition, offset, timestamp, key, value,
                headers: headers(hs),
                ..Envelope::default()
            };
            let back = decode(&encode(&original.as_ref())).expect("decodes");
            prop_assert_eq!(back, original);
        }
    }

    #[test]
    fn null_and_empty_differ_and_the_text_is_readable() {
        let original = Envelope {
            topic: "orders".into(),
            partition: Some(3),
            offset: Some(1042),
            timestamp: Some(1_764_633_600_000),
            key: Some(b"order-7".to_vec()),
            value: None,
            headers: headers(vec![
                ("trace".into(), Some(b"abc".to_vec())),
                ("empty".into(), Some(Vec::new())),
                ("null".into(), None),
            ]),
            source_partition: Some(Map::from_iter([("table".into(), Json::from("t"))])),
            source_offset: None,
            diverted_by: Some("jdbc/0/3f2a".into()),
        };
        let text = String::from_utf8(encode(&original.as_ref())).unwrap();
        assert_eq!(
            text,
            r#"{"sluice.envelope":1,"topic":"orders","partition":3,"offset":1042,"timestamp":1764633600000,"key":"b3JkZXItNw==","value":null,"headers":[{"key":"trace","value":"YWJj"},{"key":"empty","value":""},{"key":"null","value":null}],"source_partition":{"table":"t"},"diverted_by":"jdbc/0/3f2a"}"#
        );
        assert_eq!(decode(text.as_bytes()).unwrap(), original);
    }

    #[test]
    fn what_is_not_an_envelope_is_refused_with_the_reason() {
        let not_json = decode(b"plain text").unwrap_err();
        assert!(not_json.contains("not a Sluice envelope"), "{not_json}");
        let other_json = decode(br#"{"topic":"t","key":null,"value":null}"#).unwrap_err();
        assert!(other_json.contains("sluice.envelope"), "{other_json}");
        let future = decode(br#"{"sluice.envelope":9,"topic":"t","key":null,"value":null}"#);
        assert!(future.unwrap_err().contains("version 9"));
        let bad = decode(br#"{"sluice.envelope":1,"topic":"t","key":"%%","value":null}"#);
        assert!(bad.unwrap_err().contains("key is not base64"));
    }
}
