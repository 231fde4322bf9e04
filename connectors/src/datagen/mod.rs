//! The datagen source: realistic events at a configurable rate.
//!
//! Each task `t` writes records whose value carries `task` = t and `seq` = 0, 1, 2, ... in order;
//! the stored offset is the next `seq`, so a restarted task continues the sequence. A consumer that
//! sees every (task, seq) pair exactly once has lost and duplicated nothing.
//!
//! With `poison.every` = N, every record whose `seq` is one less than a multiple of N is poison: a
//! required field other than `task` and `seq` is null, so the record breaks its own schema and the
//! source's value conversion fails. That exercises a source's error policy and dead-letter queue;
//! such a record never reaches Kafka, so it does not exercise a sink's.

mod events;

use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use sluice_connector_api::{
    ConfigDef, ConfigErrors, ConfigKey, ConfigType, ConnectResult, Connector, ConnectorConfig,
    ConnectorContext, Importance, ParsedConfig, Props, Record, SourceConnector, SourceRecord,
    SourceTask, SourceTaskContext, Validator, Value, async_trait,
};
use tokio::time::Instant;

pub use events::Quickstart;

/// Class name.
pub const CLASS: &str = "io.sluice.connect.datagen.DatagenConnector";

/// Typed datagen settings.
#[derive(Debug, Clone)]
pub struct DatagenConfig {
    /// Topic to write to.
    pub topic: String,
    /// Which events to generate.
    pub quickstart: Quickstart,
    /// Records per second per task; 0 for as fast as possible.
    pub records_per_second: f64,
    /// Records per task before it stops producing; -1 for no limit.
    pub iterations: i64,
    /// Number of distinct keys (customers, devices or users).
    pub key_cardinality: u64,
    /// Largest batch returned by one poll.
    pub batch_size: usize,
    /// Seed of the random generator, for reproducible data.
    pub seed: u64,
    /// Every this many records one breaks its schema; 0 for never.
    pub poison_every: i64,
}

impl ConnectorConfig for DatagenConfig {
    fn def() -> ConfigDef {
        ConfigDef::new()
            .define(
                ConfigKey::new("kafka.topic", ConfigType::String, "Topic to write to.")
                    .importance(Importance::High)
                    .validator(Validator::NonEmpty),
            )
            .define(
                ConfigKey::new(
                    "quickstart",
                    ConfigType::String,
                    "Events to generate: orders, iot or clickstream.",
                )
                .default_value("orders")
                .importance(Importance::High)
                .validator(Validator::OneOf(&["orders", "iot", "clickstream"])),
            )
            .define(
                ConfigKey::new(
                    "records.per.second",
                    ConfigType::Double,
                    "Records per second per task; 0 for as fast as possible.",
                )
                .default_value("10")
                .validator(Validator::at_least(0.0)),
            )
            .define(
                ConfigKey::new(
                    "iterations",
                    ConfigType::Long,
                    "Records per task before it stops producing; -1 for no limit.",
                )
                .default_value("-1")
                .validator(Validator::at_least(-1.0)),
            )
            .define(
                ConfigKey::new(
                    "key.cardinality",
                    ConfigType::Long,
                    "Number of distinct keys.",
                )
                .default_value("1000")
                .validator(Validator::at_least(1.0)),
            )
            .define(
                ConfigKey::new(
                    "batch.size",
                    ConfigType::Int,
                    "Largest number of records returned by one poll.",
                )
                .default_value("1000")
                .validator(Validator::between(1.0, 100_000.0)),
            )
            .define(
                ConfigKey::new(
                    "random.seed",
                    ConfigType::Long,
                    "Seed of the random generator.",
                )
                .default_value("42"),
            )
            .define(
                ConfigKey::new(
                    "poison.every",
                    ConfigType::Long,
                    "Every this many records, one (seq = N-1, 2N-1, ...) has a required field set \
                    to null, so that the source's value conversion fails; 0 for never. For testing \
                    a source's error handling (such records never reach Kafka or a sink).",
                )
                .default_value("0")
                .validator(Validator::at_least(0.0)),
            )
    }

    fn build(p: &ParsedConfig, _errors: &mut ConfigErrors) -> Self {
        Self {
            topic: p.string("kafka.topic"),
            quickstart: Quickstart::parse(&p.string("quickstart")).unwrap_or(Quickstart::Orders),
            records_per_second: p.double("records.per.second"),
            iterations: p.long("iterations"),
            key_cardinality: p.long("key.cardinality") as u64,
            batch_size: p.int("batch.size") as usize,
            seed: p.long("random.seed") as u64,
            poison_every: p.long("poison.every"),
        }
    }
}

/// The datagen connector.
#[derive(Default)]
pub struct DatagenConnector {
    props: Props,
}

#[async_trait]
impl Connector for DatagenConnector {
    fn config_def(&self) -> ConfigDef {
        DatagenConfig::def()
    }

    async fn start(&mut self, _ctx: Arc<dyn ConnectorContext>, props: &Props) -> ConnectResult<()> {
        DatagenConfig::from_props(props)?;
        self.props = props.clone();
        Ok(())
    }

    fn task_configs(&self, max_tasks: usize) -> ConnectResult<Vec<Props>> {
        Ok((0..max_tasks)
            .map(|t| {
                let mut props = self.props.clone();
                props.insert("task.index".to_owned(), t.to_string());
                props
            })
            .collect())
    }
}

impl SourceConnector for DatagenConnector {
    fn task(&self) -> Box<dyn SourceTask> {
        Box::new(DatagenTask::default())
    }
}

/// One datagen task.
#[derive(Default)]
pub struct DatagenTask {
    config: Option<DatagenConfig>,
    task: u32,
    next_seq: i64,
    produced_since_start: u64,
    started: Option<Instant>,
    rng: Option<StdRng>,
}

/// The source partition of task `t`: `{"datagen.task": t}`.
#[derive(Debug, Serialize)]
struct DatagenPartition {
    #[serde(rename = "datagen.task")]
    task: u32,
}

/// The offset: `{"seq": <the next sequence number>}`.
#[derive(Debug, Serialize, Deserialize)]
struct DatagenOffset {
    seq: i64,
}

#[async_trait]
impl SourceTask for DatagenTask {
    async fn start(&mut self, ctx: SourceTaskContext, props: &Props) -> ConnectResult<()> {
        let config = DatagenConfig::from_props(props)?;
        self.task = props
            .get("task.index")
            .and_then(|t| t.parse().ok())
            .unwrap_or(ctx.task_id.task);
        self.next_seq = ctx
            .offset_as::<DatagenOffset>(&DatagenPartition { task: self.task })?
            .map_or(0, |o| o.seq);
        self.rng = Some(StdRng::seed_from_u64(
            config.seed ^ (u64::from(self.task) << 32) ^ self.next_seq as u64,
        ));
        self.config = Some(config);
        self.started = Some(Instant::now());
        tracing::info!(
            task = self.task,
            next_seq = self.next_seq,
            "datagen task started"
        );
        Ok(())
    }

    async fn poll(&mut self) -> ConnectResult<Vec<SourceRecord>> {
        let (Some(config), Some(rng), Some(started)) = (&self.config, &mut self.rng, self.started)
        else {
            return Ok(Vec::new());
        };
        let remaining = if config.iterations < 0 {
            u64::MAX
        } else {
            (config.iterations - self.next_seq).max(0) as u64
        };
        if remaining == 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            return Ok(Vec::new());
        }
        let mut count = config.batch_size as u64;
        if config.records_per_second > 0.0 {
            let due = (started.elapsed().as_secs_f64() * config.records_per_second) as u64;
            if due <= self.produced_since_start {
                let next_at = started
                    + Duration::from_secs_f64(
                        (self.produced_since_start + 1) as f64 / config.records_per_second,
                    );
                tokio::time::sleep_until(next_at.min(Instant::now() + Duration::from_millis(500)))
                    .await;
                return Ok(Vec::new());
            }
            count = count.min(due - self.produced_since_start);
        }
        count = count.min(remaining);
        let now_ms = sluice_connector_api::now_ms();
        let schema = Arc::new(config.quickstart.schema());
        let mut batch = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let seq = self.next_seq;
            let (key, mut value) =
                config
                    .quickstart
                    .generate(rng, self.task, seq, config.key_cardinality, now_ms);
            if config.poison_every > 0 && seq % config.poison_every == config.poison_every - 1 {
                poison(&mut value);
            }
            self.next_seq += 1;
            let record = Record {
                topic: config.topic.clone(),
                key: Value::String(key),
                value_schema: Some(Arc::clone(&schema)),
                value,
                timestamp: Some(now_ms),
                ..Record::default()
            };
            let partition = DatagenPartition { task: self.task };
            let offset = DatagenOffset { seq: self.next_seq };
            batch.push(SourceRecord::new(record, &partition, &offset)?);
        }
        self.produced_since_start += count;
        Ok(batch)
    }
}

/// Nulls the first required field other than `task` and `seq`.
fn poison(value: &mut Value) {
    if let Value::Struct(st) = value {
        let victim = st
            .fields()
            .iter()
            .map(|(name, _)| name.clone())
            .find(|name| !matches!(&**name, "task" | "seq"));
        if let Some(name) = victim {
            st.put(name, Value::Null);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sluice_connector_api::testing::props;
    use sluice_connector_api::{OffsetReader, SourceOffset, SourcePartition, TaskId};

    struct Stored(Option<i64>);
    impl OffsetReader for Stored {
        fn offset(&self, _: &SourcePartition) -> Option<SourceOffset> {
            self.0
                .map(|s| json!({"seq": s}).as_object().cloned().unwrap_or_default())
        }
    }

    #[tokio::test]
    async fn resumes_sequence_from_stored_offset_and_stops_at_iterations() {
        let mut task = DatagenTask::default();
        let ctx = SourceTaskContext::new(TaskId::new("d", 0), Arc::new(Stored(Some(5))));
        let p = props(&[
            ("kafka.topic", "t"),
            ("records.per.second", "0"),
            ("iterations", "8"),
            ("quickstart", "iot"),
        ]);
        task.start(ctx, &p).await.unwrap();
        let batch = task.poll().await.unwrap();
        let seqs: Vec<i64> = batch
            .iter()
            .map(|r| {
                r.record
                    .value
                    .as_struct()
                    .unwrap()
                    .get("seq")
                    .unwrap()
                    .as_i64()
                    .unwrap()
            })
            .collect();
        assert_eq!(seqs, [5, 6, 7]);
        assert_eq!(batch[2].source_offset["seq"], json!(8));
        for r in &batch {
            r.record
                .value_schema
                .as_ref()
                .unwrap()
                .check(&r.record.value)
                .unwrap();
        }
        assert!(task.poll().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn poison_records_break_their_schema_at_known_positions() {
        let mut task = DatagenTask::default();
        let ctx = SourceTaskContext::new(TaskId::new("d", 0), Arc::new(Stored(None)));
        let p = props(&[
            ("kafka.topic", "t"),
            ("records.per.second", "0"),
            ("iterations", "9"),
            ("poison.every", "3"),
        ]);
        task.start(ctx, &p).await.unwrap();
        let broken: Vec<bool> = task
            .poll()
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let schema = r.record.value_schema.as_ref().unwrap();
                schema.check(&r.record.value).is_err()
            })
            .collect();
        assert_eq!(
            broken,
            [false, false, true, false, false, true, false, false, true]
        );
    }

    #[test]
    fn invalid_config_lists_every_error() {
        let err = DatagenConfig::from_props(&props(&[
            ("quickstart", "weather"),
            ("records.per.second", "-1"),
        ]))
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("kafka.topic")
                && msg.contains("quickstart")
                && msg.contains("records.per.second"),
            "{msg}"
        );
    }
}
