//! Records as connectors see them.
//!
//! A [`Record`] is what transforms change: topic, partition, key, value (each with an optional
//! schema), headers and timestamp. A [`SinkRecord`] adds where it was read from in Kafka; a
//! [`SourceRecord`] adds the source partition and offset that the runtime stores once the record is
//! acknowledged by Kafka.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value as Json};

use crate::{ConnectError, ConnectResult, Schema, Value};

/// The time now in milliseconds since the Unix epoch, as Kafka timestamps are written.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A Kafka topic and partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
}

impl TopicPartition {
    /// A topic partition.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// One record header. Values are raw bytes, as on the wire; `None` is a null header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header key.
    pub key: String,
    /// Header value.
    pub value: Option<Vec<u8>>,
}

/// Record headers in order; keys may repeat, as in Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Headers(Vec<Header>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a header.
    pub fn add(&mut self, key: impl Into<String>, value: Option<Vec<u8>>) {
        self.0.push(Header {
            key: key.into(),
            value,
        });
    }

    /// Appends a header with a UTF-8 value.
    pub fn add_str(&mut self, key: impl Into<String>, value: &str) {
        self.add(key, Some(value.as_bytes().to_vec()));
    }

    /// The last header with this key.
    pub fn last(&self, key: &str) -> Option<&Header> {
        self.0.iter().rev().find(|h| h.key == key)
    }

    /// The last value with this key as UTF-8 text, if present and valid.
    pub fn last_str(&self, key: &str) -> Option<&str> {
        self.last(key)
            .and_then(|h| h.value.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Whether any header has this key.
    pub fn contains(&self, key: &str) -> bool {
        self.0.iter().any(|h| h.key == key)
    }

    /// Removes every header with this key.
    pub fn remove_all(&mut self, key: &str) {
        self.0.retain(|h| h.key != key);
    }

    /// Keeps only the headers `keep` accepts, in order.
    pub fn retain(&mut self, keep: impl FnMut(&Header) -> bool) {
        self.0.retain(keep);
    }

    /// The headers in order.
    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<Header> for Headers {
    fn from_iter<I: IntoIterator<Item = Header>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

/// The part of a record that transforms and converters work on.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record {
    /// Destination topic (source records) or the topic it was read from (sink records).
    pub topic: String,
    /// Kafka partition; `None` on a source record lets the producer choose by key.
    pub partition: Option<i32>,
    /// Schema of the key, if known.
    pub key_schema: Option<Arc<Schema>>,
    /// The key; [`Value::Null`] when absent.
    pub key: Value,
    /// Schema of the value, if known.
    pub value_schema: Option<Arc<Schema>>,
    /// The value; [`Value::Null`] for a tombstone.
    pub value: Value,
    /// Headers.
    pub headers: Headers,
    /// Timestamp in milliseconds since the epoch.
    pub timestamp: Option<i64>,
}

impl Record {
    /// A record for `topic` with a schemaless value.
    pub fn new(topic: impl Into<String>, value: Value) -> Self {
        Self {
            topic: topic.into(),
            value,
            ..Self::default()
        }
    }

    /// This record with a schemaless key.
    pub fn with_key(mut self, key: Value) -> Self {
        self.key = key;
        self
    }

    /// This record with a value schema.
    pub fn with_value_schema(mut self, schema: Schema) -> Self {
        self.value_schema = Some(Arc::new(schema));
        self
    }

    /// Whether the value is null (a tombstone).
    pub fn is_tombstone(&self) -> bool {
        self.value.is_null()
    }
}

/// A record read from Kafka and handed to a sink task.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkRecord {
    /// Topic, key, value, headers and timestamp after converters and transforms.
    pub record: Record,
    /// Where it was read from. Transforms may change `record.topic`; this stays as read, and is what
    /// offsets are committed against.
    pub origin: TopicPartition,
    /// Its offset in `origin`.
    pub offset: i64,
    /// `true` when the runtime left the value undecoded for a task that decodes schemaless JSON
    /// itself ([`SinkTask::takes_json_values`](crate::SinkTask::takes_json_values)): `record.value`
    /// is then [`Value::Bytes`](crate::Value::Bytes) holding the message's JSON text, and
    /// [`SinkTaskContext::decode_value`](crate::SinkTaskContext::decode_value) turns it into what
    /// the value converter would have made of it.
    pub value_is_json: bool,
}

/// A source connector's partition: what a task reads from, as a JSON object
/// (for example `{"table": "orders"}` or `{"filename": "/data/in.txt"}`).
pub type SourcePartition = Map<String, Json>;

/// A position within a [`SourcePartition`] (for example `{"position": 1042}` or `{"lsn": 23452}`).
pub type SourceOffset = Map<String, Json>;

/// A record produced by a source task.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRecord {
    /// Destination topic, key, value, headers and timestamp.
    pub record: Record,
    /// The source partition this record came from.
    pub source_partition: SourcePartition,
    /// The position just after this record in its source partition; stored once the record is
    /// acknowledged by Kafka and handed back to the task on restart.
    pub source_offset: SourceOffset,
}

impl SourceRecord {
    /// A record from typed source coordinates: `partition` and `offset` are any serde types
    /// that serialize to JSON objects (structs with named fields, maps with string keys), so a
    /// connector never builds offset maps by hand and reads them back with
    /// [`SourceTaskContext::offset_as`](crate::SourceTaskContext::offset_as) as the same types.
    pub fn new(
        record: Record,
        partition: &impl Serialize,
        offset: &impl Serialize,
    ) -> ConnectResult<Self> {
        Ok(Self {
            record,
            source_partition: to_object(partition, "source partition")?,
            source_offset: to_object(offset, "source offset")?,
        })
    }

    /// The source offset as the type the connector wrote it from.
    pub fn offset_as<O: DeserializeOwned>(&self) -> ConnectResult<O> {
        from_object(&self.source_offset, "source offset")
    }
}

/// A typed source partition or offset as the JSON object the runtime stores.
pub fn to_object(value: &impl Serialize, what: &str) -> ConnectResult<Map<String, Json>> {
    match serde_json::to_value(value) {
        Ok(Json::Object(map)) => Ok(map),
        Ok(other) => Err(ConnectError::internal(format!(
            "a {what} must serialize to a JSON object, not {other}"
        ))),
        Err(e) => Err(ConnectError::internal(format!("serializing a {what}")).with_source(e)),
    }
}

/// A stored source partition or offset as a typed value; one of another shape (written by
/// another connector version, or by hand through the offsets API) is a user error that says so.
pub fn from_object<T: DeserializeOwned>(map: &Map<String, Json>, what: &str) -> ConnectResult<T> {
    T::deserialize(map).map_err(|e| {
        ConnectError::user(format!(
            "stored {what} {} does not have the shape this connector writes: {e}",
            Json::Object(map.clone())
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_keep_order_and_find_last() {
        let mut h = Headers::new();
        h.add_str("a", "1");
        h.add_str("b", "2");
        h.add_str("a", "3");
        assert_eq!(h.last_str("a"), Some("3"));
        assert!(h.contains("b"));
        h.remove_all("a");
        assert_eq!(h.len(), 1);
    }
}
