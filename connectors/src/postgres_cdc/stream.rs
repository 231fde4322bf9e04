//! Streaming from the replication slot: pgoutput changes as change events, in commit order, each
//! with its position (see [`super::offset`]), and the slot confirmed only as far as Kafka has
//! acknowledged.
//!
//! What is confirmed to the server (the slot's `confirmed_flush_lsn`), and when:
//! - the `lsn_commit` of an offset the runtime stored (every record up to it is in Kafka): the
//!   commit LSN of the last transaction read whole before that record;
//! - the end of a transaction, or a keepalive's WAL position, when every record sent so far has
//!   been stored: transactions with no streamed change (other tables, other databases) then
//!   move the slot on, so an idle or filtered database does not make it keep WAL.
//!
//! Nothing else is confirmed, so a crash at any point resumes at or before the first change not
//! yet in Kafka; the changes read twice are those after the last stored offset, and the resume
//! rule skips every change a stored offset covers.

use std::collections::HashMap;
use std::time::Duration;

use pgwire_replication::{Lsn, ReplicationClient, ReplicationEvent};
use sluice_connector_api::{ConnectError, ConnectResult, Record, SourceRecord, Value, now_ms};
use sqlx::PgConnection;
use tokio::sync::{mpsc, watch};

use super::catalog::{self, Types};
use super::config::PostgresCdcConfig;
use super::offset::{CdcOffset, ServerPartition};
use super::pgoutput::{self, Datum, Message, Relation};
use super::table::{ColumnSpec, SourceInfo, Table, envelope};
use super::{Item, build_table, rejected};

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// How often the slot's lag is read for the task's gauge.
const LAG_INTERVAL: Duration = Duration::from_secs(5);

struct Tx {
    xid: u32,
    final_lsn: u64,
    commit_us: i64,
    lsn: u64,
    index: u64,
}

/// The state of one streaming session.
pub struct Stream<'a> {
    config: &'a PostgresCdcConfig,
    catalog: PgConnection,
    types: Types,
    tables: HashMap<u32, Option<Table>>,
    partition: ServerPartition,
    /// What the stored offset covers (skipped when the slot sends it again).
    resume: Option<CdcOffset>,
    last_commit: Option<u64>,
    tx: Option<Tx>,
    /// The offset of the last record sent, and of the last one the runtime stored.
    sent: Option<CdcOffset>,
    stored: Option<CdcOffset>,
    /// A position safe to confirm once everything sent is stored.
    idle_ack: Option<u64>,
}

impl<'a> Stream<'a> {
    /// A session resuming after `resume`.
    pub fn new(
        config: &'a PostgresCdcConfig,
        catalog: PgConnection,
        resume: Option<CdcOffset>,
    ) -> Self {
        let last_commit = resume.as_ref().and_then(|r| r.lsn_commit);
        Self {
            config,
            catalog,
            types: Types::default(),
            tables: HashMap::new(),
            partition: ServerPartition::of(&config.topic_prefix),
            stored: resume.clone(),
            sent: resume.clone(),
            resume,
            last_commit,
            tx: None,
            idle_ack: None,
        }
    }

    /// Streams until the task stops (the channel closes) or the session fails.
    pub async fn run(
        mut self,
        client: &mut ReplicationClient,
        out: &mpsc::Sender<Item>,
        mut acks: watch::Receiver<Option<CdcOffset>>,
        ctx: &sluice_connector_api::SourceTaskContext,
    ) -> ConnectResult<()> {
        let mut heartbeat = self.config.heartbeat_interval.map(tokio::time::interval);
        let mut lag = tokio::time::interval(LAG_INTERVAL);
        loop {
            tokio::select! {
                event = client.recv() => {
                    let event = event.map_err(|e| {
                        ConnectError::retriable(format!(
                            "the replication stream from {} ended: {e}", self.config.server()
                        ))
                    })?;
                    let Some(event) = event else { return Ok(()) };
                    for item in self.on_event(event).await? {
                        if out.send(item).await.is_err() {
                            return Ok(());
                        }
                    }
                    self.confirm_idle(client);
                }
                changed = acks.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    let stored = acks.borrow_and_update().clone();
                    if let Some(commit) = stored.as_ref().and_then(|s| s.lsn_commit) {
                        client.update_applied_lsn(Lsn::from_u64(commit));
                    }
                    self.stored = stored;
                    self.confirm_idle(client);
                }
                _ = tick(&mut heartbeat) => {
                    if let Some(item) = self.heartbeat().await?
                        && out.send(item).await.is_err()
                    {
                        return Ok(());
                    }
                }
                _ = out.closed() => return Ok(()),
                _ = lag.tick() => {
                    if let Ok(Some(bytes)) = catalog::slot_lag(&mut self.catalog, &self.config.slot).await {
                        ctx.gauge("cdc.slot.lag.bytes", bytes);
                    }
                }
            }
        }
    }

    /// Confirms the idle position once every record sent is stored and no transaction is open.
    fn confirm_idle(&mut self, client: &ReplicationClient) {
        if self.tx.is_none()
            && self.sent == self.stored
            && let Some(lsn) = self.idle_ack.take()
        {
            client.update_applied_lsn(Lsn::from_u64(lsn));
        }
    }

    async fn heartbeat(&mut self) -> ConnectResult<Option<Item>> {
        if let Some(query) = &self.config.heartbeat_action_query
            && let Err(e) = sqlx::query(query).execute(&mut self.catalog).await
        {
            tracing::warn!("heartbeat.action.query failed: {e}");
        }
        if self.tx.is_some() {
            return Ok(None);
        }
        let offset = CdcOffset {
            lsn: self.last_commit,
            lsn_proc: self.sent.as_ref().and_then(|s| s.lsn_proc),
            lsn_commit: self.last_commit,
            ts_usec: now_ms() * 1000,
            message_type: Some("HEARTBEAT".into()),
            ..CdcOffset::default()
        };
        let item = super::heartbeat(self.config, &offset)?;
        self.sent = Some(offset);
        Ok(Some(item))
    }

    async fn on_event(&mut self, event: ReplicationEvent) -> ConnectResult<Vec<Item>> {
        match event {
            ReplicationEvent::Begin {
                final_lsn,
                xid,
                commit_time_micros,
            } => {
                self.tx = Some(Tx {
                    xid,
                    final_lsn: final_lsn.as_u64(),
                    commit_us: commit_time_micros + PG_EPOCH_US,
                    lsn: 0,
                    index: 0,
                });
                Ok(Vec::new())
            }
            ReplicationEvent::Commit { lsn, end_lsn, .. } => {
                self.tx = None;
                self.last_commit = Some(lsn.as_u64());
                self.idle_ack = Some(end_lsn.as_u64());
                Ok(Vec::new())
            }
            ReplicationEvent::KeepAlive { wal_end, .. } => {
                if self.tx.is_none() {
                    self.idle_ack = Some(wal_end.as_u64());
                }
                Ok(Vec::new())
            }
            ReplicationEvent::XLogData {
                wal_start, data, ..
            } => {
                let message = pgoutput::decode(data)
                    .map_err(|e| ConnectError::internal(format!("{e} at LSN {}", wal_start)))?;
                self.on_message(wal_start.as_u64(), message).await
            }
            ReplicationEvent::Message { .. } | ReplicationEvent::StoppedAt { .. } => Ok(Vec::new()),
        }
    }

    async fn on_message(&mut self, lsn: u64, message: Message) -> ConnectResult<Vec<Item>> {
        let (relation, old, new, op) = match message {
            Message::Relation(r) => {
                self.relation(r).await?;
                return Ok(Vec::new());
            }
            Message::Insert { relation, new } => (relation, None, Some(new), "c"),
            Message::Update {
                relation, old, new, ..
            } => (relation, old, Some(new), "u"),
            Message::Delete { relation, old, .. } => (relation, Some(old), None, "d"),
            Message::Truncate { relations, .. } => {
                let Some(mut offset) = self.advance(lsn) else {
                    return Ok(Vec::new());
                };
                offset.message_type = Some("TRUNCATE".into());
                let mut items = Vec::new();
                for relation in relations {
                    if let Some(Some(table)) = self.tables.get(&relation) {
                        items.extend(self.truncate(table, &offset)?);
                    }
                }
                self.note_sent(&items, offset);
                return Ok(items);
            }
            Message::Type { .. } | Message::Origin { .. } | Message::Other(_) => {
                return Ok(Vec::new());
            }
        };
        let position = self.advance(lsn);
        let Some(Some(table)) = self.tables.get(&relation) else {
            return Ok(Vec::new());
        };
        let Some(mut offset) = position else {
            return Ok(Vec::new());
        };
        offset.message_type = Some(
            match op {
                "c" => "INSERT",
                "u" => "UPDATE",
                _ => "DELETE",
            }
            .into(),
        );
        let items = self.change(table, op, old, new, &offset)?;
        self.note_sent(&items, offset);
        Ok(items)
    }

    /// Remembers `offset`, the position of the last of `items`, as the last one sent (when any
    /// was), so the idle rule can compare it with what the runtime stored.
    fn note_sent(&mut self, items: &[Item], offset: CdcOffset) {
        if !items.is_empty() {
            self.sent = Some(offset);
        }
    }

    /// Moves to the next change at `lsn`; its offset, or `None` when the stored offset covers it.
    fn advance(&mut self, lsn: u64) -> Option<CdcOffset> {
        let tx = self.tx.as_mut()?;
        if tx.lsn == lsn {
            tx.index += 1;
        } else {
            tx.lsn = lsn;
            tx.index = 1;
        }
        if self
            .resume
            .as_ref()
            .is_some_and(|r| r.covers(tx.final_lsn, tx.xid, lsn, tx.index))
        {
            return None;
        }
        Some(CdcOffset {
            lsn: Some(lsn),
            lsn_proc: Some(lsn),
            lsn_commit: self.last_commit,
            lsn_events_processed: Some(tx.index),
            tx_id: Some(i64::from(tx.xid)),
            ts_usec: tx.commit_us,
            message_type: None,
            snapshot: None,
            last_snapshot_record: None,
        })
    }

    async fn relation(&mut self, r: Relation) -> ConnectResult<()> {
        if !self.config.streams_table(&r.namespace, &r.name) {
            self.tables.insert(r.id, None);
            return Ok(());
        }
        let described = catalog::describe(&mut self.catalog, r.id).await?;
        let mut specs = Vec::new();
        for c in &r.columns {
            let nullable = described
                .columns
                .iter()
                .find(|d| d.name == c.name)
                .is_none_or(|d| d.nullable);
            specs.push(ColumnSpec {
                ty: self
                    .types
                    .resolve(&mut self.catalog, c.type_oid, c.type_modifier)
                    .await?,
                included: self.config.streams_column(&r.namespace, &r.name, &c.name),
                nullable,
                name: c.name.clone(),
            });
        }
        let mut described = described;
        described.replica_identity = r.replica_identity;
        let table = build_table(self.config, &r.namespace, &r.name, specs, &described);
        self.tables.insert(r.id, Some(table));
        Ok(())
    }

    fn source<'s>(&'s self, offset: &CdcOffset) -> SourceInfo<'s> {
        SourceInfo {
            server: &self.config.topic_prefix,
            db: &self.config.dbname,
            ts_us: offset.ts_usec,
            snapshot: "false",
            tx_id: offset.tx_id,
            lsn: offset.lsn,
            last_commit: offset.lsn_commit,
        }
    }

    fn record(
        &self,
        table: &Table,
        key: Value,
        value: Option<Value>,
        offset: &CdcOffset,
    ) -> ConnectResult<SourceRecord> {
        let tombstone = value.is_none();
        let record = Record {
            topic: table.topic.clone(),
            // A truncate has no key.
            key_schema: table.key_schema.clone().filter(|_| key != Value::Null),
            key,
            value_schema: (!tombstone).then(|| table.envelope_schema.clone()),
            value: value.unwrap_or(Value::Null),
            ..Record::default()
        };
        SourceRecord::new(record, &self.partition, offset)
    }

    fn change(
        &self,
        table: &Table,
        op: &str,
        old: Option<Vec<Datum>>,
        new: Option<Vec<Datum>>,
        offset: &CdcOffset,
    ) -> ConnectResult<Vec<Item>> {
        if self.config.skips(op) {
            return Ok(Vec::new());
        }
        let modes = self.config.modes();
        let placeholder = &self.config.unavailable_value_placeholder;
        let read =
            |tuple: &Option<Vec<Datum>>| -> Result<Option<sluice_connector_api::Struct>, String> {
                tuple
                    .as_ref()
                    .map(|t| table.row(t, modes, placeholder))
                    .transpose()
            };
        let (before, after) = match (read(&old), read(&new)) {
            (Ok(b), Ok(a)) => (b, a),
            (Err(e), _) | (_, Err(e)) => {
                let tuple = new.as_deref().or(old.as_deref()).unwrap_or_default();
                return Ok(vec![rejected(table, tuple, e, &self.partition, offset)?]);
            }
        };
        // A record before the last of one change carries the position just before the change,
        // so that a crash between them reads the change again rather than losing its end.
        let mut earlier = offset.clone();
        earlier.lsn_events_processed = offset.lsn_events_processed.map(|n| n - 1);
        let source = self.source(offset);
        let now_us = now_ms() * 1000;
        let tombstones = self.config.tombstones_on_delete;
        let mut out = Vec::new();
        match (op, before, after) {
            ("d", before, _) => {
                let key = before.as_ref().map_or(Value::Null, |b| table.key(b));
                let value = envelope(table, "d", before, None, &source, now_us);
                if tombstones && key != Value::Null {
                    out.push(self.record(table, key.clone(), Some(value), &earlier)?);
                    out.push(self.record(table, key, None, offset)?);
                } else {
                    out.push(self.record(table, key, Some(value), offset)?);
                }
            }
            ("u", Some(before), Some(after)) if table.key(&before) != table.key(&after) => {
                // The primary key changed: as Debezium, a delete of the old key (and its
                // tombstone) and a create of the new one.
                let old_key = table.key(&before);
                let new_key = table.key(&after);
                let delete = envelope(table, "d", Some(before), None, &source, now_us);
                out.push(self.record(table, old_key.clone(), Some(delete), &earlier)?);
                if tombstones {
                    out.push(self.record(table, old_key, None, &earlier)?);
                }
                let create = envelope(table, "c", None, Some(after), &source, now_us);
                out.push(self.record(table, new_key, Some(create), offset)?);
            }
            (op, before, after) => {
                let before = if table.full_identity { before } else { None };
                let key = after.as_ref().map_or(Value::Null, |a| table.key(a));
                let value = envelope(table, op, before, after, &source, now_us);
                out.push(self.record(table, key, Some(value), offset)?);
            }
        }
        Ok(out.into_iter().map(Item::Record).collect())
    }

    fn truncate(&self, table: &Table, offset: &CdcOffset) -> ConnectResult<Vec<Item>> {
        if self.config.skips("t") {
            return Ok(Vec::new());
        }
        let source = self.source(offset);
        let value = envelope(table, "t", None, None, &source, now_ms() * 1000);
        let record = self.record(table, Value::Null, Some(value), offset)?;
        Ok(vec![Item::Record(record)])
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}
