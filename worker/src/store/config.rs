//! The config topic: connector configs, task configs and target states.
//!
//! Keys and values are Kafka Connect's:
//! - `connector-<c>` → `{"properties": {...}}`; a tombstone deletes the connector;
//! - `task-<c>-<n>` → `{"properties": {...}}`, buffered until
//! - `commit-<c>` → `{"tasks": N}` makes tasks `0..N` the connector's task configs, all at once;
//! - `target-state-<c>` → `{"state": "STARTED"|"PAUSED", "state.v2": "STARTED"|"PAUSED"|"STOPPED"}`.
//!
//! The topic has one partition, so this order is total. Only the writer of task configs (the
//! leader) writes `task-` and `commit-` records; the rest is applied by every worker alike.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{Value as Json, json};
use sluice_connector_api::Props;
use tokio::sync::watch;

use crate::error::WorkerError;
use crate::kafka::{KafkaClients, KafkaLog, LogRecord, TopicSpec};

/// What a connector and its tasks should be doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetState {
    /// Running.
    #[default]
    Started,
    /// Paused: tasks exist but process nothing.
    Paused,
    /// Stopped: no connector instance and no tasks run.
    Stopped,
}

impl TargetState {
    /// Parses `STARTED`, `RUNNING`, `PAUSED` or `STOPPED` (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "STARTED" | "RUNNING" => Some(TargetState::Started),
            "PAUSED" => Some(TargetState::Paused),
            "STOPPED" => Some(TargetState::Stopped),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            TargetState::Started => "STARTED",
            TargetState::Paused => "PAUSED",
            TargetState::Stopped => "STOPPED",
        }
    }
}

/// One connector as the config topic describes it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectorEntry {
    /// The connector's properties.
    pub config: Props,
    /// Committed task configs.
    pub tasks: Vec<Props>,
}

/// A record the worker fleet uses to form and find itself (see `cluster/DESIGN.md`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FleetRecord {
    /// The fleet epoch it is about.
    pub epoch: u64,
    /// The writer's Raft node id.
    pub node: u64,
    /// The writer's URL.
    pub url: String,
}

/// The fleet's records in the config topic, each with the offset it was read at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetRecords {
    /// The first claim (lowest offset) of each epoch: its winner.
    pub claims: BTreeMap<u64, (i64, FleetRecord)>,
    /// The latest probe: a worker asking whether the fleet of `epoch` is alive.
    pub probe: Option<(i64, FleetRecord)>,
    /// The latest answer to a probe, from the fleet's leader.
    pub alive: Option<(i64, FleetRecord)>,
    /// An epoch whose last worker left gracefully: nobody needs to probe it.
    pub closed: Option<u64>,
}

impl FleetRecords {
    /// The newest epoch and its winning claim.
    pub fn latest(&self) -> Option<(u64, &FleetRecord)> {
        self.claims.iter().next_back().map(|(e, (_, c))| (*e, c))
    }

    fn apply(&mut self, offset: i64, key: &str, value: Option<&Json>) -> Result<(), String> {
        let Some(value) = value else { return Ok(()) };
        let record: FleetRecord = serde_json::from_value(value.clone())
            .map_err(|e| format!("invalid fleet record {key}: {e}"))?;
        let rest = &key[FLEET_PREFIX.len()..];
        if rest.starts_with("claim-") {
            self.claims.entry(record.epoch).or_insert((offset, record));
        } else if rest == "probe" {
            self.probe = Some((offset, record));
        } else if rest == "alive" {
            self.alive = Some((offset, record));
        } else if rest == "closed" {
            self.closed = Some(record.epoch);
        }
        Ok(())
    }
}

/// Prefix of the fleet's own keys in the config topic.
pub const FLEET_PREFIX: &str = "sluice-fleet-";

/// Everything the config topic holds, as applied so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterConfig {
    /// Connectors by name.
    pub connectors: BTreeMap<String, ConnectorEntry>,
    /// Target states by connector name (may precede the connector's config).
    pub target_states: BTreeMap<String, TargetState>,
    /// Task configs written but not yet committed, by connector and task number.
    pending_tasks: BTreeMap<String, BTreeMap<u32, Props>>,
    /// The worker fleet's formation records.
    pub fleet: FleetRecords,
}

impl ClusterConfig {
    /// The target state of `connector` (started unless set).
    pub fn target_state(&self, connector: &str) -> TargetState {
        self.target_states
            .get(connector)
            .copied()
            .unwrap_or_default()
    }

    /// Applies the record at `offset`.
    pub fn apply_at(&mut self, offset: i64, key: &str, value: Option<&Json>) -> Result<(), String> {
        if key.starts_with(FLEET_PREFIX) {
            return self.fleet.apply(offset, key, value);
        }
        self.apply(key, value)
    }

    /// Applies one record of the config topic.
    pub fn apply(&mut self, key: &str, value: Option<&Json>) -> Result<(), String> {
        if let Some(name) = key.strip_prefix("connector-") {
            match value {
                None => {
                    self.connectors.remove(name);
                    self.target_states.remove(name);
                    self.pending_tasks.remove(name);
                }
                Some(v) => {
                    let config = properties(v)?;
                    self.connectors.entry(name.to_owned()).or_default().config = config;
                }
            }
        } else if let Some(name) = key.strip_prefix("target-state-") {
            match value {
                None => {
                    self.target_states.remove(name);
                }
                Some(v) => {
                    let state = v
                        .get("state.v2")
                        .or_else(|| v.get("state"))
                        .and_then(Json::as_str)
                        .and_then(TargetState::parse)
                        .ok_or_else(|| format!("invalid target state {v}"))?;
                    self.target_states.insert(name.to_owned(), state);
                }
            }
        } else if let Some(rest) = key.strip_prefix("task-") {
            let (name, n) = rest
                .rsplit_once('-')
                .and_then(|(c, n)| Some((c, n.parse::<u32>().ok()?)))
                .ok_or_else(|| format!("invalid task key {key}"))?;
            if let Some(v) = value {
                self.pending_tasks
                    .entry(name.to_owned())
                    .or_default()
                    .insert(n, properties(v)?);
            }
        } else if let Some(name) = key.strip_prefix("commit-") {
            let count = value
                .and_then(|v| v.get("tasks"))
                .and_then(Json::as_u64)
                .ok_or_else(|| format!("invalid task commit for {name}"))?
                as u32;
            let mut pending = self.pending_tasks.remove(name).unwrap_or_default();
            let tasks: Option<Vec<Props>> = (0..count).map(|n| pending.remove(&n)).collect();
            match (tasks, self.connectors.get_mut(name)) {
                (Some(tasks), Some(entry)) => entry.tasks = tasks,
                (None, _) => {
                    return Err(format!(
                        "commit of {count} tasks for {name} without all task configs; ignored"
                    ));
                }
                (Some(_), None) => {}
            }
        }
        Ok(())
    }
}

fn properties(value: &Json) -> Result<Props, String> {
    value
        .get("properties")
        .and_then(Json::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let v = v
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string());
                    (k.clone(), v)
                })
                .collect()
        })
        .ok_or_else(|| format!("expected {{\"properties\": {{...}}}}, found {value}"))
}

/// Reads and writes the config topic.
pub struct ConfigStore {
    log: KafkaLog,
    state: Arc<Mutex<ClusterConfig>>,
    changes: watch::Receiver<i64>,
}

impl ConfigStore {
    /// Creates the topic if needed (one partition, compacted) and reads it to the end.
    pub async fn open(
        clients: &KafkaClients,
        topic: &str,
        replication_factor: i32,
    ) -> Result<Self, WorkerError> {
        let spec = TopicSpec {
            name: topic,
            partitions: 1,
            replication_factor,
            compacted: true,
        };
        let state = Arc::new(Mutex::new(ClusterConfig::default()));
        let (tx, changes) = watch::channel(-1);
        let apply_state = Arc::clone(&state);
        let topic_name = topic.to_owned();
        let (log, partitions) = KafkaLog::create_and_open(
            clients,
            spec,
            move |record: LogRecord| {
                let key = record
                    .key
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                let value = match record.value.as_deref().map(serde_json::from_slice::<Json>) {
                    Some(Ok(v)) => Some(v),
                    None => None,
                    Some(Err(e)) => {
                        tracing::error!(topic = topic_name, offset = record.offset, key = %key, error = %e, "skipping unreadable config record");
                        return;
                    }
                };
                let mut state = apply_state.lock();
                if let Err(e) = state.apply_at(record.offset, &key, value.as_ref()) {
                    tracing::warn!(topic = topic_name, offset = record.offset, key = %key, "{e}");
                }
                tx.send_replace(record.offset);
            },
        )
        .await?;
        if partitions != 1 {
            return Err(WorkerError::Topic(format!(
                "config topic {topic} has {partitions} partitions; it must have exactly 1 so that config updates are totally ordered"
            )));
        }
        Ok(Self {
            log,
            state,
            changes,
        })
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> ClusterConfig {
        self.state.lock().clone()
    }

    /// A copy of the fleet's formation records.
    pub fn fleet_records(&self) -> FleetRecords {
        self.state.lock().fleet.clone()
    }

    /// Notified with the offset of each applied record.
    pub fn changes(&self) -> watch::Receiver<i64> {
        self.changes.clone()
    }

    /// Reads the topic to its current end.
    pub async fn read_to_end(&self) -> Result<(), WorkerError> {
        self.log.read_to_end().await
    }

    async fn write(&self, key: String, value: Option<Json>) -> Result<(), WorkerError> {
        let bytes = value.map(|v| v.to_string().into_bytes());
        self.log.write(&key, bytes.as_deref()).await
    }

    /// Writes a connector's config.
    pub async fn put_connector_config(
        &self,
        name: &str,
        config: &Props,
    ) -> Result<(), WorkerError> {
        self.write(
            format!("connector-{name}"),
            Some(json!({ "properties": config })),
        )
        .await
    }

    /// Deletes a connector (its config, then its target state).
    pub async fn remove_connector(&self, name: &str) -> Result<(), WorkerError> {
        self.write(format!("connector-{name}"), None).await?;
        self.write(format!("target-state-{name}"), None).await
    }

    /// Writes a connector's target state.
    pub async fn put_target_state(
        &self,
        name: &str,
        state: TargetState,
    ) -> Result<(), WorkerError> {
        // Readers that only know "state" see PAUSED for STOPPED, as Kafka Connect writes it.
        let legacy = match state {
            TargetState::Started => "STARTED",
            _ => "PAUSED",
        };
        self.write(
            format!("target-state-{name}"),
            Some(json!({ "state": legacy, "state.v2": state.as_str() })),
        )
        .await
    }

    /// Writes one of the fleet's records (`claim-<epoch>-<node>`, `probe`, `alive`, `closed`);
    /// returns its offset.
    pub async fn put_fleet_record(
        &self,
        kind: &str,
        record: &FleetRecord,
    ) -> Result<i64, WorkerError> {
        let key = match kind {
            "claim" => format!("{FLEET_PREFIX}claim-{}-{}", record.epoch, record.node),
            other => format!("{FLEET_PREFIX}{other}"),
        };
        let value = serde_json::to_vec(record).map_err(|e| WorkerError::Topic(e.to_string()))?;
        let (_, offset) = self.log.send(&key, Some(&value)).await?;
        Ok(offset)
    }

    /// The offset of the last record applied.
    pub fn applied_offset(&self) -> i64 {
        *self.changes.borrow()
    }

    /// Waits until the record at `offset` has been applied, or `timeout` passes; returns whether
    /// it was.
    pub async fn wait_applied(&self, offset: i64, timeout: std::time::Duration) -> bool {
        let mut changes = self.changes.clone();
        tokio::time::timeout(timeout, changes.wait_for(|o| *o >= offset))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Writes task configs and then the commit record that makes them take effect together.
    pub async fn put_task_configs(&self, name: &str, tasks: &[Props]) -> Result<(), WorkerError> {
        for (n, props) in tasks.iter().enumerate() {
            let key = format!("task-{name}-{n}");
            self.log
                .send(
                    &key,
                    Some(json!({ "properties": props }).to_string().as_bytes()),
                )
                .await?;
        }
        self.write(
            format!("commit-{name}"),
            Some(json!({ "tasks": tasks.len() })),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(v: &[(&str, &str)]) -> Json {
        let m: serde_json::Map<String, Json> =
            v.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        json!({ "properties": m })
    }

    #[test]
    fn tasks_take_effect_only_at_commit() {
        let mut c = ClusterConfig::default();
        c.apply("connector-a-b", Some(&props(&[("tasks.max", "2")])))
            .unwrap();
        c.apply("task-a-b-0", Some(&props(&[("n", "0")]))).unwrap();
        c.apply("task-a-b-1", Some(&props(&[("n", "1")]))).unwrap();
        assert!(c.connectors["a-b"].tasks.is_empty());
        c.apply("commit-a-b", Some(&json!({"tasks": 2}))).unwrap();
        assert_eq!(c.connectors["a-b"].tasks.len(), 2);
        assert_eq!(c.connectors["a-b"].tasks[1]["n"], "1");
    }

    #[test]
    fn incomplete_commit_is_rejected_and_keeps_old_tasks() {
        let mut c = ClusterConfig::default();
        c.apply("connector-x", Some(&props(&[]))).unwrap();
        c.apply("task-x-0", Some(&props(&[("n", "0")]))).unwrap();
        c.apply("commit-x", Some(&json!({"tasks": 1}))).unwrap();
        c.apply("task-x-0", Some(&props(&[("n", "new")]))).unwrap();
        assert!(c.apply("commit-x", Some(&json!({"tasks": 2}))).is_err());
        assert_eq!(c.connectors["x"].tasks[0]["n"], "0");
    }

    #[test]
    fn target_state_v2_wins_and_tombstone_deletes() {
        let mut c = ClusterConfig::default();
        c.apply(
            "target-state-x",
            Some(&json!({"state": "PAUSED", "state.v2": "STOPPED"})),
        )
        .unwrap();
        c.apply("connector-x", Some(&props(&[]))).unwrap();
        assert_eq!(c.target_state("x"), TargetState::Stopped);
        c.apply("connector-x", None).unwrap();
        assert!(c.connectors.is_empty());
        assert_eq!(c.target_state("x"), TargetState::Started);
    }
}
