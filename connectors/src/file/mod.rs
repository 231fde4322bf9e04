//! FileStream connectors, under Kafka's class names.
//!
//! - The source reads lines appended to a file and produces each as a string record. Its offset is
//!   the byte position after the last line returned, so a restart continues after the last line
//!   Kafka acknowledged; a line is produced only once it ends with a newline.
//! - The sink writes each record's value as one JSON document per line (schemaless JSON: structs as
//!   objects, strings quoted). Each batch is appended on `put` and fsynced on `flush`, so offsets are
//!   committed only for lines on disk.

mod sink;
mod source;

pub use sink::{FileStreamSinkConnector, FileStreamSinkTask};
pub use source::{FileStreamSourceConnector, FileStreamSourceTask};

/// Source class name (Kafka's).
pub const SOURCE_CLASS: &str = "org.apache.kafka.connect.file.FileStreamSourceConnector";
/// Sink class name (Kafka's).
pub const SINK_CLASS: &str = "org.apache.kafka.connect.file.FileStreamSinkConnector";
