//! Kinesis Data Streams, both ways: a sink (Kafka → `PutRecords`, in order per partition key) and
//! a source (shards → Kafka, one source offset per shard), sharing one record format, the
//! [`envelope`], that lets a record make the round trip Kafka → Kinesis → Kafka unchanged.
//!
//! Both connectors default to the `ByteArrayConverter`, so that bytes pass through unchanged: the
//! sink writes a record's value bytes (or its envelope), the source writes the Kinesis data as the
//! value and the partition key as the key. `DESIGN.md` in this folder gives the ordering and
//! checkpointing arguments.
//!
//! Modules: [`stream`] (client, limits, readiness), [`envelope`] (the record format), [`sink`],
//! [`source`].

pub mod envelope;
pub mod overflow;
pub mod sink;
pub mod source;
pub mod stream;

/// What a Kinesis record's data holds (`kinesis.record.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFormat {
    /// The record's value: its bytes with the default `ByteArrayConverter`, otherwise the value
    /// as the converter decoded it, in JSON (strings as their UTF-8 text).
    Value,
    /// The whole Kafka record in the self-describing [`envelope`] format, which the Kinesis
    /// source restores exactly.
    Envelope,
}

pub use sink::dispatch::Placed;
pub use sink::{CLASS as SINK_CLASS, KinesisSinkConnector};
pub use source::{CLASS as SOURCE_CLASS, KinesisSourceConnector};
