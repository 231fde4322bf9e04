//! Overflow through Kinesis: a source task whose Kafka is unreachable or too slow diverts its
//! records to a Kinesis stream and brings them back when Kafka answers again; a sink task whose
//! external system keeps refusing sends those records to a stream instead of the dead-letter
//! queue.
//!
//! A source task's states, as its status (`errors.overflow`) and `/metrics` show them:
//! - `kafka`: records go to Kafka, each with an `__sluice.overflow.id` header derived from its
//!   connector, source partition and source offset. Any of three triggers diverts the task:
//!   librdkafka reports every broker down, a record is not acknowledged within
//!   `overflow.produce.timeout.ms`, or the producer's queue stays full for `overflow.queue.full.ms`.
//! - `diverting`: the records not yet acknowledged by Kafka are written to the stream first (the
//!   Kafka copy of such a record may still land: the two copies share their overflow id), then
//!   every new record. A diverted record is delivered once Kinesis acknowledged it. Offsets are
//!   kept, not written (the offsets topic is in Kafka too). Kafka is probed every
//!   [`PROBE_INTERVAL`]; once it has answered for `overflow.recovery.ms` the task recovers.
//! - `recovering` (`overflow.mode=ordered`, the default): the task stops polling, reads back what
//!   it diverted (its own records only, shard by shard in sequence order) and produces each into
//!   its original topic with its key, headers and timestamp plus `__sluice.overflow.replayed`;
//!   once Kafka acknowledged them all it writes the kept offsets and sends new records to Kafka
//!   again. Nothing newer overtakes a diverted record of its key. Should Kafka fail during the
//!   replay, the task diverts again and later replays from where it stopped.
//!   With `overflow.mode=relaxed` the task writes its offsets and comes back at once; a Kinesis
//!   source with `kinesis.record.format=envelope` replays the stream, after newer records.
//!
//! A crash while diverting loses nothing: the offsets of diverted records were not written, so
//! the task polls them again (duplicates in Kafka, or in the stream, never loss).

mod settings;
#[cfg(feature = "kinesis")]
mod sink;
#[cfg(feature = "kinesis")]
mod source;
#[cfg(not(feature = "kinesis"))]
mod without;

pub use settings::source as source_settings;
pub use settings::{OverflowMode, SinkOverflowSettings, SourceOverflowSettings, define, sink};
#[cfg(feature = "kinesis")]
pub use sink::SinkOverflow;
#[cfg(feature = "kinesis")]
pub use source::SourceOverflow;
#[cfg(not(feature = "kinesis"))]
pub use without::{SinkOverflow, SourceOverflow};

/// How a replay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replayed {
    /// Everything diverted is in Kafka.
    All,
    /// The task was asked to stop first.
    Stopped,
}

/// How often a diverting task asks Kafka whether it is back.
pub const PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);
