//! Source partitions and offsets in the shape Confluent's JDBC source stores them
//! (`OffsetProtocols`, `TimestampIncrementingOffset` in `kafka-connect-jdbc`), so that a connector
//! moved from Kafka Connect, with its offsets topic, resumes where it was:
//!
//! - a table: `{"protocol": "1", "table": "<qualified table>"}` (`db.schema.table` on
//!   PostgreSQL, `db.table` on MySQL, `table` on SQLite, as their JDBC drivers qualify it); the older
//!   `{"table": "<table>"}` is read when the first has no offset;
//! - a query: `{"query": "query"}`;
//! - the offset: `{"incrementing": n}`, `{"timestamp": ms, "timestamp_nanos": ns}` or both, where
//!   `timestamp_nanos` is the fraction of the second in nanoseconds (Java's `Timestamp.getNanos`),
//!   so microseconds survive.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sluice_connector_api::{SourceOffset, SourcePartition};

/// Confluent's protocol version 1.
const PROTOCOL_V1: &str = "1";

/// Where a table's or query's rows come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RowsPartition {
    /// Protocol 1: the fully qualified table.
    Table {
        /// Always `"1"`.
        protocol: String,
        /// The qualified table, `<db>.<schema>.<table>` on PostgreSQL.
        table: String,
    },
    /// A query (`{"query": "query"}`, the literal word, as Confluent writes it).
    Query {
        /// Always `"query"`.
        query: String,
    },
}

impl RowsPartition {
    /// A table's partition, by its qualified name.
    pub fn table(qualified: String) -> Self {
        Self::Table {
            protocol: PROTOCOL_V1.to_owned(),
            table: qualified,
        }
    }

    /// The query's partition.
    pub fn query() -> Self {
        Self::Query {
            query: "query".to_owned(),
        }
    }

    /// As the runtime stores it.
    pub fn to_map(&self) -> SourcePartition {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => SourcePartition::new(),
        }
    }

    /// Protocol 0's partition of the same table (`{"table": "<table>"}`), read when protocol 1
    /// has none.
    pub fn legacy(table: &str) -> SourcePartition {
        let mut map = SourcePartition::new();
        map.insert("table".to_owned(), table.into());
        map
    }
}

/// How far a table has been read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowsOffset {
    /// The incrementing column's value of the last row read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incrementing: Option<i64>,
    /// The timestamp read up to, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    /// Its fraction of the second, in nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_nanos: Option<i64>,
}

impl RowsOffset {
    /// As the runtime stores it.
    pub fn to_map(&self) -> SourceOffset {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => SourceOffset::new(),
        }
    }

    /// The timestamp as an instant.
    pub fn time(&self) -> Option<DateTime<Utc>> {
        let ms = self.timestamp?;
        let seconds = ms.div_euclid(1000);
        let nanos = match self.timestamp_nanos {
            Some(n) => n,
            None => ms.rem_euclid(1000) * 1_000_000,
        };
        DateTime::from_timestamp(seconds, u32::try_from(nanos).ok()?)
    }

    /// Sets the timestamp.
    pub fn set_time(&mut self, t: Option<DateTime<Utc>>) {
        self.timestamp = t.map(|t| t.timestamp_millis());
        self.timestamp_nanos = t.map(|t| i64::from(t.timestamp_subsec_nanos()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_and_offsets_are_confluents_json() {
        let p = RowsPartition::table("shop.public.orders".to_owned());
        assert_eq!(
            serde_json::to_string(&p.to_map()).unwrap(),
            r#"{"protocol":"1","table":"shop.public.orders"}"#
        );
        assert_eq!(
            serde_json::to_string(&RowsPartition::query().to_map()).unwrap(),
            r#"{"query":"query"}"#
        );
        let mut o = RowsOffset {
            incrementing: Some(42),
            ..RowsOffset::default()
        };
        let t = DateTime::parse_from_rfc3339("2026-12-07T10:00:00.123456Z")
            .unwrap()
            .to_utc();
        o.set_time(Some(t));
        let json = serde_json::to_value(o).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"incrementing": 42, "timestamp": 1_796_637_600_123i64,
                               "timestamp_nanos": 123_456_000})
        );
        let back: RowsOffset = serde_json::from_value(json).unwrap();
        assert_eq!(back.time(), Some(t));
    }

    #[test]
    fn an_offset_without_nanos_keeps_its_milliseconds() {
        let o = RowsOffset {
            timestamp: Some(-1),
            ..RowsOffset::default()
        };
        assert_eq!(o.time().unwrap().timestamp_millis(), -1);
    }
}
