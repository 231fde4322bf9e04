//! Request and response bodies, shaped exactly as Kafka Connect's REST API shapes them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use sluice_connector_api::{ConfigKeyInfo, ConfigValueReport, ConnectorType, Props};

/// `GET /`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServerInfo {
    /// Sluice version.
    pub version: String,
    /// Build commit.
    pub commit: String,
    /// The Kafka cluster's id.
    pub kafka_cluster_id: String,
}

/// A connector's target state as users name it (`initial_state`, pause, resume, stop).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TargetState {
    /// Running.
    Running,
    /// Paused.
    Paused,
    /// Stopped.
    Stopped,
}

/// `POST /connectors` body, before validation.
#[derive(Debug, Clone, Deserialize)]
pub struct CreateConnectorRequest {
    /// Connector name.
    pub name: Option<String>,
    /// Connector config; values are strings (numbers and booleans are accepted and stringified).
    pub config: Option<BTreeMap<String, Json>>,
    /// Initial target state.
    pub initial_state: Option<TargetState>,
}

/// A task's id.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConnectorTaskId {
    /// Connector name.
    pub connector: String,
    /// Task number.
    pub task: u32,
}

/// `GET /connectors/{c}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConnectorInfo {
    /// Name.
    pub name: String,
    /// Config.
    pub config: Props,
    /// Its tasks.
    pub tasks: Vec<ConnectorTaskId>,
    /// Source or sink.
    #[serde(rename = "type")]
    pub kind: ConnectorType,
}

/// A connector's or task's state in a status response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StateInfo {
    /// UNASSIGNED, RUNNING, PAUSED, STOPPED, FAILED or RESTARTING.
    pub state: String,
    /// Worker running it.
    pub worker_id: String,
    /// Failure trace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

/// One task's state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskStateInfo {
    /// Task number.
    pub id: u32,
    /// Its state.
    #[serde(flatten)]
    pub state: StateInfo,
    /// What its error policy has done since the task started (absent until a record failed or
    /// the connector counted something). Sluice's addition; Kafka Connect clients ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<TaskErrors>,
}

/// A task's error counts since it started, and its last error.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TaskErrors {
    /// Records that failed for good at some stage (each counted once).
    pub records_failed: u64,
    /// Retries of a stage that failed with a retriable error.
    pub records_retried: u64,
    /// Failed records written to the dead-letter queue.
    pub records_dead_lettered: u64,
    /// Failed records skipped without a dead-letter queue (`errors.tolerance=all`).
    pub records_skipped: u64,
    /// Counters the connector keeps (for example records routed per rule by the DLQ router).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counters: BTreeMap<String, u64>,
    /// Gauges the connector sets (for example how far each Kinesis shard is behind, in ms).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gauges: BTreeMap<String, i64>,
    /// The most recent failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
    /// Where a task with an overflow stream sends its records now: `kafka`, `diverting` (to its
    /// overflow stream) or `recovering` (replaying what it diverted); absent without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overflow: Option<String>,
}

/// One failed record, as shown in status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LastError {
    /// The stage that failed (`VALUE_CONVERTER`, `TRANSFORMATION`, `TASK_PUT`, `KAFKA_PRODUCE`...).
    pub stage: String,
    /// Where the record came from: topic, partition and offset (sinks) or source partition and
    /// offset (sources).
    pub record: String,
    /// The error, with its causes.
    pub message: String,
    /// When, in milliseconds since the epoch.
    pub timestamp: i64,
}

/// `GET /connectors/{c}/status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConnectorStateInfo {
    /// Name.
    pub name: String,
    /// The connector's state.
    pub connector: StateInfo,
    /// Each task's state.
    pub tasks: Vec<TaskStateInfo>,
    /// Source or sink.
    #[serde(rename = "type")]
    pub kind: ConnectorType,
}

/// `GET /connectors/{c}/tasks` element.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskInfo {
    /// Task id.
    pub id: ConnectorTaskId,
    /// Task config.
    pub config: Props,
}

/// `GET /connector-plugins` element.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PluginInfo {
    /// Class name.
    pub class: String,
    /// `source`, `sink`, `transformation`, `predicate` or `converter`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// One key in a validation response.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConfigInfo {
    /// Its definition.
    pub definition: ConfigKeyInfo,
    /// Its value and errors.
    pub value: ConfigValueReport,
}

/// `PUT /connector-plugins/{p}/config/validate`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConfigInfos {
    /// Plugin class.
    pub name: String,
    /// Total number of errors.
    pub error_count: usize,
    /// Groups in order of first appearance.
    pub groups: Vec<String>,
    /// Every key.
    pub configs: Vec<ConfigInfo>,
}

/// `POST /dead-letters/{topic}/redrive` body: which records of a dead-letter (or parking-lot) topic
/// to send back to the topics they came from. Offsets and times may be combined; all bounds are
/// optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    /// Only this partition; every partition when absent.
    pub partition: Option<i32>,
    /// First offset to redrive (inclusive).
    pub from_offset: Option<i64>,
    /// Offset to stop before (exclusive).
    pub to_offset: Option<i64>,
    /// First record time to redrive, ms since the epoch (inclusive).
    pub from_timestamp: Option<i64>,
    /// Record time to stop before, ms since the epoch (exclusive).
    pub to_timestamp: Option<i64>,
}

/// What a redrive did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RedriveResult {
    /// Records produced back to their original topics.
    pub redriven: u64,
    /// Records left where they are, with the reason (no `__connect.errors.topic` header, for one).
    pub skipped: Vec<RedriveSkip>,
}

/// A record a redrive left in place.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RedriveSkip {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Why.
    pub reason: String,
}
