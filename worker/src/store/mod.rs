//! Kafka-backed worker state: connector configs, source offsets and status, each in a compacted topic
//! with Kafka Connect's key formats, so that a restarted worker (or a Kafka Connect tool) reads the
//! same state back.

pub mod config;
pub mod offsets;
pub mod status;

pub use config::{
    ClusterConfig, ConfigStore, ConnectorEntry, FleetRecord, FleetRecords, TargetState,
};
pub use offsets::OffsetStore;
pub use status::{ConnectorStatus, StatusStore};
