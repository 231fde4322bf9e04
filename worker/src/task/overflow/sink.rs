//! A sink task's side of the overflow: a record that keeps failing with a retriable error past
//! `errors.retry.timeout` goes to the stream, in the envelope format with its Kafka coordinates,
//! instead of the error policy.
//!
//! Guarantees: [`SinkOverflow::divert`] returns `Ok` only once Kinesis stored the record, so the
//! sink counts it done (and its offset commits) only then; it carries the record's original Kafka
//! bytes (key, value, headers, timestamp) and an `__sluice.overflow.id` header from its topic,
//! partition and offset. A Kinesis source with `kinesis.record.format=envelope` replays it into
//! its topic, so the sink gets it again.

use std::sync::Arc;

use sluice_connector_api::{ConnectError, ConnectResult, SinkRecord, TaskId};
use sluice_connectors::kinesis::overflow::envelope::{self, EnvelopeRef};
use sluice_connectors::kinesis::overflow::{
    ID_HEADER, OverflowWriter, overflow_id, partition_key_of,
};
use tokio::sync::OnceCell;

use super::SinkOverflowSettings;
use crate::metrics::TaskMetrics;
use crate::task::errors::Original;

/// One sink task's overflow stream, connected on first use.
pub struct SinkOverflow {
    settings: SinkOverflowSettings,
    writer: OnceCell<OverflowWriter>,
    run: String,
    metrics: Arc<TaskMetrics>,
}

impl SinkOverflow {
    /// The overflow of task `id`.
    pub fn new(id: &TaskId, settings: &SinkOverflowSettings, metrics: Arc<TaskMetrics>) -> Self {
        Self {
            settings: settings.clone(),
            writer: OnceCell::new(),
            run: format!(
                "{}/{}/{}",
                id.connector,
                id.task,
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            ),
            metrics,
        }
    }

    /// Writes `record` (its `original` bytes) to the stream and waits until Kinesis stored it.
    pub async fn divert(
        &self,
        record: &SinkRecord,
        mut original: Original,
        error: &ConnectError,
    ) -> ConnectResult<()> {
        let writer = self
            .writer
            .get_or_init(|| OverflowWriter::connect(&self.settings.target))
            .await;
        let tp = &record.origin;
        let id = overflow_id(&[
            &tp.topic,
            &tp.partition.to_string(),
            &record.offset.to_string(),
        ]);
        original.headers.add_str(ID_HEADER, &id);
        let data = envelope::encode(&EnvelopeRef {
            topic: &tp.topic,
            partition: Some(tp.partition),
            offset: Some(record.offset),
            timestamp: original.timestamp,
            key: original.key.as_deref(),
            value: original.value.as_deref(),
            headers: &original.headers,
            source_partition: None,
            source_offset: None,
            diverted_by: Some(&self.run),
        });
        let key = match &original.key {
            Some(key) => partition_key_of(key),
            None => partition_key_of(tp.partition.to_string().as_bytes()),
        };
        tracing::warn!(
            record = %format!("{tp}/{}", record.offset),
            "diverting a record to the overflow {} after a retriable failure: {}",
            writer.stream().describe(),
            error.message()
        );
        match writer.divert(key, data).await {
            Ok(Ok(_)) => {
                self.metrics.overflow_records("kinesis", 1);
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ConnectError::internal("the overflow writer stopped")),
        }
    }
}
