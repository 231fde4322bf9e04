//! The PostgreSQL CDC task: runs the reader ([`super::session`]) in the background, hands its
//! records to the runtime at most `max.batch.size` per poll, and passes each stored offset back
//! to the reader, which confirms the slot from it.
//!
//! Guarantees: a poll returns within about a second; a change that cannot be read goes to the
//! error policy with its columns' text; a broken session (a database restart) is a retriable
//! error, and the next poll starts a new reader after the last record returned, so records are
//! neither lost nor returned twice by the task itself.

use std::time::Duration;

use sluice_connector_api::{
    ConnectResult, ConnectorConfig, Props, SourceOffset, SourcePartition, SourceRecord, SourceTask,
    SourceTaskContext, async_trait,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::config::PostgresCdcConfig;
use super::offset::{CdcOffset, ServerPartition};
use super::{Item, catalog, session};

/// Longest wait inside one `poll`.
const MAX_POLL_WAIT: Duration = Duration::from_secs(1);

struct Reader {
    items: mpsc::Receiver<Item>,
    acks: watch::Sender<Option<CdcOffset>>,
    handle: JoinHandle<()>,
}

/// Streams one database.
#[derive(Default)]
pub struct PostgresCdcTask {
    ctx: Option<SourceTaskContext>,
    config: Option<PostgresCdcConfig>,
    reader: Option<Reader>,
    /// The offset of the last record returned by `poll` (where a new reader resumes).
    returned: Option<CdcOffset>,
    /// The newest offset the runtime stored.
    stored: Option<CdcOffset>,
    partition: SourcePartition,
}

impl PostgresCdcTask {
    fn spawn(&mut self) {
        let (Some(ctx), Some(config)) = (&self.ctx, &self.config) else {
            return;
        };
        let (out, items) = mpsc::channel(config.max_queue_size);
        let (acks, ack_rx) = watch::channel(self.stored.clone());
        let run = session::run(
            config.clone(),
            self.returned.clone(),
            out.clone(),
            ack_rx,
            ctx.clone(),
        );
        let handle = tokio::spawn(async move {
            if let Err(e) = run.await {
                let _ = out.send(Item::Failed(e)).await;
            }
        });
        self.reader = Some(Reader {
            items,
            acks,
            handle,
        });
    }
}

#[async_trait]
impl SourceTask for PostgresCdcTask {
    async fn start(&mut self, ctx: SourceTaskContext, props: &Props) -> ConnectResult<()> {
        let config = PostgresCdcConfig::from_props(props)?;
        let partition = ServerPartition::of(&config.topic_prefix);
        self.partition = match serde_json::to_value(&partition) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => SourcePartition::new(),
        };
        self.returned = ctx.offset_as(&partition)?;
        self.stored = self.returned.clone();
        tracing::info!(
            task = %ctx.task_id,
            "streaming {} (slot {:?}, publication {:?}){}",
            config.server(),
            config.slot,
            config.publication,
            if self.returned.is_some() { ", resuming from the stored offset" } else { "" }
        );
        self.config = Some(config);
        self.ctx = Some(ctx);
        self.spawn();
        Ok(())
    }

    async fn poll(&mut self) -> ConnectResult<Vec<SourceRecord>> {
        if self.reader.is_none() {
            self.spawn();
        }
        let (Some(ctx), Some(config), Some(reader)) = (&self.ctx, &self.config, &mut self.reader)
        else {
            return Ok(Vec::new());
        };
        let mut records = Vec::new();
        let first = match tokio::time::timeout(MAX_POLL_WAIT, reader.items.recv()).await {
            Err(_) => return Ok(records),
            Ok(None) => {
                // The reader ended without an error (initial_only done): nothing more to read.
                tokio::time::sleep(MAX_POLL_WAIT).await;
                return Ok(records);
            }
            Ok(Some(item)) => item,
        };
        // The offset of the last record handed over, decoded once per poll (a rejected change's
        // is decoded when it is reported, which is rare).
        let mut last_rejected: Option<CdcOffset> = None;
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Item::Record(record) => {
                    last_rejected = None;
                    records.push(record);
                }
                Item::Rejected(record, error) => {
                    last_rejected = record.offset_as().ok();
                    ctx.report(&record, error).await?;
                }
                Item::Failed(error) => {
                    self.reader = None;
                    if records.is_empty() && last_rejected.is_none() {
                        return Err(error);
                    }
                    // Hand over what was read; the next poll starts a new reader after it.
                    tracing::warn!("the PostgreSQL reader stopped: {}", error.message());
                    break;
                }
            }
            if records.len() < config.max_batch_size {
                next = self.reader.as_mut().and_then(|r| r.items.try_recv().ok());
            }
        }
        if let Some(offset) = last_rejected {
            self.returned = Some(offset);
        } else if let Some(last) = records.last() {
            self.returned = last.offset_as().ok();
        }
        ctx.count("cdc.records.read", records.len() as u64);
        Ok(records)
    }

    async fn commit(&mut self, offsets: &[(SourcePartition, SourceOffset)]) -> ConnectResult<()> {
        let Some((_, offset)) = offsets.iter().rev().find(|(p, _)| *p == self.partition) else {
            return Ok(());
        };
        let Ok(offset) =
            serde_json::from_value::<CdcOffset>(serde_json::Value::Object(offset.clone()))
        else {
            return Ok(());
        };
        self.stored = Some(offset.clone());
        if let Some(reader) = &self.reader {
            let _ = reader.acks.send(Some(offset));
        }
        Ok(())
    }

    async fn stop(&mut self) -> ConnectResult<()> {
        if let Some(reader) = self.reader.take() {
            drop(reader.items);
            let mut handle = reader.handle;
            if tokio::time::timeout(Duration::from_secs(5), &mut handle)
                .await
                .is_err()
            {
                handle.abort();
            }
        }
        if let Some(config) = &self.config
            && config.slot_drop_on_stop
        {
            let mut db = catalog::connect(config).await?;
            catalog::drop_slot(&mut db, &config.slot).await?;
            tracing::info!(
                "dropped replication slot {:?} (slot.drop.on.stop)",
                config.slot
            );
        }
        Ok(())
    }
}
