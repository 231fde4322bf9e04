//! The offsets topic: source connectors' positions.
//!
//! Key: the JSON array `["<connector>", {<source partition>}]`; value: the source offset object;
//! a tombstone forgets the partition. Lookups ignore the order of keys inside a partition object,
//! as Kafka Connect compares them as maps.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{Value as Json, json};
use sluice_connector_api::{OffsetReader, SourceOffset, SourcePartition};

use crate::error::WorkerError;
use crate::kafka::{KafkaClients, KafkaLog, LogRecord, TopicSpec};

type Offsets = BTreeMap<(String, String), (SourcePartition, SourceOffset)>;

/// Reads and writes the offsets topic.
pub struct OffsetStore {
    log: KafkaLog,
    offsets: Arc<Mutex<Offsets>>,
}

/// A partition object in a canonical text form: keys sorted at every level.
fn canonical(partition: &SourcePartition) -> String {
    fn sorted(v: &Json) -> Json {
        match v {
            Json::Object(m) => {
                let mut keys: Vec<_> = m.iter().collect();
                keys.sort_by(|a, b| a.0.cmp(b.0));
                Json::Object(
                    keys.into_iter()
                        .map(|(k, v)| (k.clone(), sorted(v)))
                        .collect(),
                )
            }
            Json::Array(items) => Json::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(&Json::Object(partition.clone())).to_string()
}

/// The key Kafka Connect writes for a connector's partition.
pub fn offset_key(connector: &str, partition: &SourcePartition) -> String {
    json!([connector, partition]).to_string()
}

fn parse_key(key: &[u8]) -> Option<(String, SourcePartition)> {
    let json: Json = serde_json::from_slice(key).ok()?;
    let [name, partition] = json.as_array()?.as_slice() else {
        return None;
    };
    Some((name.as_str()?.to_owned(), partition.as_object()?.clone()))
}

impl OffsetStore {
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
        let offsets = Arc::new(Mutex::new(Offsets::new()));
        let apply_offsets = Arc::clone(&offsets);
        let (log, _) = KafkaLog::create_and_open(clients, spec, move |record: LogRecord| {
            let Some((connector, partition)) = record.key.as_deref().and_then(parse_key) else {
                tracing::warn!(
                    offset = record.offset,
                    "skipping offsets record with an unreadable key"
                );
                return;
            };
            let key = (connector, canonical(&partition));
            let mut offsets = apply_offsets.lock();
            match record.value.as_deref().map(serde_json::from_slice::<Json>) {
                None => {
                    offsets.remove(&key);
                }
                Some(Ok(Json::Object(offset))) => {
                    offsets.insert(key, (partition, offset));
                }
                Some(_) => {
                    tracing::warn!(
                        offset = record.offset,
                        "skipping offsets record with an unreadable value"
                    )
                }
            }
        })
        .await?;
        Ok(Self { log, offsets })
    }

    /// Reads the topic to its current end, so that offsets another worker wrote just before
    /// handing a task over are seen.
    pub async fn read_to_end(&self) -> Result<(), WorkerError> {
        self.log.read_to_end().await
    }

    /// The stored offset of a connector's partition.
    pub fn offset(&self, connector: &str, partition: &SourcePartition) -> Option<SourceOffset> {
        let offsets = self.offsets.lock();
        offsets
            .get(&(connector.to_owned(), canonical(partition)))
            .map(|(_, o)| o.clone())
    }

    /// Every stored partition and offset of a connector.
    pub fn connector_offsets(&self, connector: &str) -> Vec<(SourcePartition, SourceOffset)> {
        let offsets = self.offsets.lock();
        offsets
            .iter()
            .filter(|((c, _), _)| c == connector)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Writes offsets and waits until Kafka has acknowledged all of them; then they are also
    /// visible to [`OffsetStore::offset`].
    pub async fn write(
        &self,
        connector: &str,
        offsets: &[(SourcePartition, SourceOffset)],
    ) -> Result<(), WorkerError> {
        let sends = offsets.iter().map(|(partition, offset)| {
            let key = offset_key(connector, partition);
            let value = Json::Object(offset.clone()).to_string();
            async move { self.log.send(&key, Some(value.as_bytes())).await }
        });
        futures::future::try_join_all(sends).await?;
        let mut map = self.offsets.lock();
        for (partition, offset) in offsets {
            map.insert(
                (connector.to_owned(), canonical(partition)),
                (partition.clone(), offset.clone()),
            );
        }
        Ok(())
    }

    /// An [`OffsetReader`] over this store for one connector.
    pub fn reader(self: &Arc<Self>, connector: &str) -> Arc<dyn OffsetReader> {
        Arc::new(ConnectorOffsets {
            store: Arc::clone(self),
            connector: connector.to_owned(),
        })
    }
}

struct ConnectorOffsets {
    store: Arc<OffsetStore>,
    connector: String,
}

impl OffsetReader for ConnectorOffsets {
    fn offset(&self, partition: &SourcePartition) -> Option<SourceOffset> {
        self.store.offset(&self.connector, partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_format_matches_kafka_connect_and_lookup_ignores_key_order() {
        let p: SourcePartition = json!({"b": 1, "a": "x"}).as_object().unwrap().clone();
        assert_eq!(offset_key("c", &p), r#"["c",{"b":1,"a":"x"}]"#);
        let q: SourcePartition = json!({"a": "x", "b": 1}).as_object().unwrap().clone();
        assert_eq!(canonical(&p), canonical(&q));
        assert_eq!(parse_key(offset_key("c", &p).as_bytes()).unwrap().0, "c");
    }
}
