//! The status topic: the state of every connector and task.
//!
//! Keys `status-connector-<c>` and `status-task-<c>-<n>`, values
//! `{"state", "trace", "worker_id", "generation"}` as Kafka Connect writes them. A status with an
//! older generation than the one stored for the same key is ignored, so a late write from a worker
//! that lost its assignment never overwrites a newer status.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::WorkerError;
use crate::kafka::{KafkaClients, KafkaLog, LogRecord, TopicSpec};

/// The status of a connector or task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorStatus {
    /// UNASSIGNED, RUNNING, PAUSED, STOPPED, FAILED or RESTARTING.
    pub state: String,
    /// Why it failed, when FAILED.
    pub trace: Option<String>,
    /// The worker running it.
    pub worker_id: String,
    /// The assignment generation it was written in.
    pub generation: i64,
}

/// Reads and writes the status topic.
pub struct StatusStore {
    log: KafkaLog,
    statuses: Arc<Mutex<BTreeMap<String, ConnectorStatus>>>,
}

impl StatusStore {
    /// Creates the topic if needed and reads it to the end.
    pub async fn open(
        clients: &KafkaClients,
        topic: &str,
        partitions: i32,
        replication_factor: i32,
    ) -> Result<Self, WorkerError> {
        let partitions = clients
            .ensure_topic(TopicSpec {
                name: topic,
                partitions,
                replication_factor,
                compacted: true,
            })
            .await?;
        let statuses = Arc::new(Mutex::new(BTreeMap::new()));
        let apply = Arc::clone(&statuses);
        let log = KafkaLog::open(
            clients,
            clients.producer(&[])?,
            topic,
            partitions,
            move |record: LogRecord| {
                let Some(key) = record.key.and_then(|k| String::from_utf8(k).ok()) else {
                    return;
                };
                let mut statuses = apply.lock().unwrap_or_else(|e| e.into_inner());
                match record.value.as_deref().map(serde_json::from_slice::<ConnectorStatus>) {
                    None => {
                        statuses.remove(&key);
                    }
                    Some(Ok(status)) => {
                        let stale = statuses
                            .get(&key)
                            .is_some_and(|old| old.generation > status.generation);
                        if !stale {
                            statuses.insert(key, status);
                        }
                    }
                    Some(Err(_)) => {}
                }
            },
        )
        .await?;
        Ok(Self { log, statuses })
    }

    /// The stored status under `key`.
    pub fn get(&self, key: &str) -> Option<ConnectorStatus> {
        self.statuses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// The highest generation any stored status carries.
    pub fn max_generation(&self) -> i64 {
        self.statuses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|s| s.generation)
            .max()
            .unwrap_or(0)
    }

    /// Stored keys starting with `prefix`.
    pub fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.statuses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Writes a status (or deletes it with `None`) and updates the local view at once.
    pub async fn put(&self, key: &str, status: Option<&ConnectorStatus>) -> Result<(), WorkerError> {
        {
            let mut statuses = self.statuses.lock().unwrap_or_else(|e| e.into_inner());
            match status {
                Some(s) => statuses.insert(key.to_owned(), s.clone()),
                None => statuses.remove(key),
            };
        }
        let bytes = status.map(|s| serde_json::to_vec(s).unwrap_or_default());
        self.log.send(key, bytes.as_deref()).await.map(|_| ())
    }

    /// Writes an arbitrary JSON value under `key` (used for topic tracking records).
    pub async fn put_raw(&self, key: &str, value: Option<&[u8]>) -> Result<(), WorkerError> {
        self.log.send(key, value).await.map(|_| ())
    }
}

/// Status key of a connector.
pub fn connector_key(connector: &str) -> String {
    format!("status-connector-{connector}")
}

/// Status key of a task.
pub fn task_key(connector: &str, task: u32) -> String {
    format!("status-task-{connector}-{task}")
}
