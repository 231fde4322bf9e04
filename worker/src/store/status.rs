//! The status topic: the state of every connector and task.
//!
//! Keys `status-connector-<c>` and `status-task-<c>-<n>`, values
//! `{"state", "trace", "worker_id", "generation"}` as Kafka Connect writes them, plus a task's
//! `errors` summary. A status with an
//! older generation than the one stored for the same key is ignored, so a late write from a worker
//! that lost its assignment never overwrites a newer status.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
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
    /// A task's error counts and last error (Sluice's addition; Kafka Connect ignores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<sluice_rest_api::model::TaskErrors>,
}

#[derive(Default)]
struct Statuses {
    by_key: BTreeMap<String, ConnectorStatus>,
    /// `topic-<t>-connector-<c>` key → (connector, topic).
    topics: BTreeMap<String, (String, String)>,
}

/// Reads and writes the status topic.
pub struct StatusStore {
    log: KafkaLog,
    statuses: Arc<Mutex<Statuses>>,
}

/// Key of a topic-tracking record.
pub fn topic_key(topic: &str, connector: &str) -> String {
    format!("topic-{topic}-connector-{connector}")
}

fn parse_topic_record(value: &[u8]) -> Option<(String, String)> {
    let json: serde_json::Value = serde_json::from_slice(value).ok()?;
    let topic = json.get("topic")?;
    Some((
        topic.get("connector")?.as_str()?.to_owned(),
        topic.get("name")?.as_str()?.to_owned(),
    ))
}

impl StatusStore {
    /// Creates the topic if needed and reads it to the end.
    pub async fn open(
        clients: &KafkaClients,
        topic: &str,
        partitions: i32,
        replication_factor: i32,
    ) -> Result<Self, WorkerError> {
        let spec = TopicSpec {
            name: topic,
            partitions,
            replication_factor,
            compacted: true,
        };
        let statuses = Arc::new(Mutex::new(Statuses::default()));
        let apply = Arc::clone(&statuses);
        let (log, _) = KafkaLog::create_and_open(clients, spec, move |record: LogRecord| {
            let Some(key) = record.key.and_then(|k| String::from_utf8(k).ok()) else {
                return;
            };
            let mut statuses = apply.lock();
            if key.starts_with("topic-") {
                match record.value.as_deref().and_then(parse_topic_record) {
                    Some(entry) => statuses.topics.insert(key, entry),
                    None => statuses.topics.remove(&key),
                };
                return;
            }
            match record
                .value
                .as_deref()
                .map(serde_json::from_slice::<ConnectorStatus>)
            {
                None => {
                    statuses.by_key.remove(&key);
                }
                Some(Ok(status)) => {
                    let stale = statuses
                        .by_key
                        .get(&key)
                        .is_some_and(|old| old.generation > status.generation);
                    if stale {
                        tracing::debug!(
                            key,
                            status.state,
                            status.worker_id,
                            status.generation,
                            "ignoring a status older than the stored one"
                        );
                    } else {
                        tracing::debug!(
                            key,
                            status.state,
                            status.worker_id,
                            status.generation,
                            "status applied"
                        );
                        statuses.by_key.insert(key, status);
                    }
                }
                Some(Err(_)) => {}
            }
        })
        .await?;
        Ok(Self { log, statuses })
    }

    /// The stored status under `key`.
    pub fn get(&self, key: &str) -> Option<ConnectorStatus> {
        self.statuses.lock().by_key.get(key).cloned()
    }

    /// The highest generation any stored status carries.
    pub fn max_generation(&self) -> i64 {
        self.statuses
            .lock()
            .by_key
            .values()
            .map(|s| s.generation)
            .max()
            .unwrap_or(0)
    }

    /// Stored keys starting with `prefix`.
    pub fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.statuses
            .lock()
            .by_key
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Writes a status (or deletes it with `None`) and updates the local view at once.
    pub async fn put(
        &self,
        key: &str,
        status: Option<&ConnectorStatus>,
    ) -> Result<(), WorkerError> {
        {
            let mut statuses = self.statuses.lock();
            match status {
                Some(s) => statuses.by_key.insert(key.to_owned(), s.clone()),
                None => statuses.by_key.remove(key),
            };
        }
        let bytes = status.map(|s| serde_json::to_vec(s).unwrap_or_default());
        self.log.send(key, bytes.as_deref()).await.map(|_| ())
    }

    /// Topics a connector has used.
    pub fn topics(&self, connector: &str) -> Vec<String> {
        let statuses = self.statuses.lock();
        let mut topics: Vec<String> = statuses
            .topics
            .values()
            .filter(|(c, _)| c == connector)
            .map(|(_, t)| t.clone())
            .collect();
        topics.sort();
        topics.dedup();
        topics
    }

    /// Records that a connector's task used a topic (Kafka Connect's topic tracking record).
    pub async fn put_topic(
        &self,
        topic: &str,
        connector: &str,
        task: &str,
        now_ms: i64,
    ) -> Result<(), WorkerError> {
        let key = topic_key(topic, connector);
        let value = serde_json::json!({"topic": {"name": topic, "connector": connector, "task": task, "discoverTimestamp": now_ms}});
        self.statuses
            .lock()
            .topics
            .insert(key.clone(), (connector.to_owned(), topic.to_owned()));
        self.log
            .send(&key, Some(value.to_string().as_bytes()))
            .await
            .map(|_| ())
    }

    /// Forgets every topic a connector has used.
    pub async fn reset_topics(&self, connector: &str) -> Result<(), WorkerError> {
        let keys: Vec<String> = {
            let mut statuses = self.statuses.lock();
            let keys: Vec<String> = statuses
                .topics
                .iter()
                .filter(|(_, (c, _))| c == connector)
                .map(|(k, _)| k.clone())
                .collect();
            for k in &keys {
                statuses.topics.remove(k);
            }
            keys
        };
        for key in keys {
            self.log.send(&key, None).await?;
        }
        Ok(())
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
