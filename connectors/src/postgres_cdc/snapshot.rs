//! The initial snapshot: every selected table of the publication read in one REPEATABLE READ
//! transaction, as read events (`op: "r"`).
//!
//! When the connector created the slot for it, the transaction imports the snapshot the slot
//! exported at its creation (`SET TRANSACTION SNAPSHOT`), so the snapshot holds exactly the
//! changes committed before the slot's consistent point and the stream exactly those after it:
//! nothing between the two is lost or read twice. The last record is marked (`snapshot: "last"`,
//! `last_snapshot_record: true`); a restart before it snapshots again from scratch (Debezium's
//! behaviour), with a new slot.

use sluice_connector_api::{ConnectError, ConnectResult, Record, SourceRecord, now_ms};
use sqlx::{Connection, Row};
use tokio::sync::mpsc;

use super::catalog::{self, Types, db_error, quoted};
use super::config::PostgresCdcConfig;
use super::offset::{CdcOffset, ServerPartition, SnapshotFlag};
use super::pgoutput::Datum;
use super::table::{ColumnSpec, SourceInfo, Table, envelope};
use super::types::Modes;
use super::{Item, build_table, rejected};

/// Reads every selected table and sends its rows; `exported` is the slot's snapshot to import
/// and `point` its consistent point (the LSN the stream starts at).
pub async fn run(
    config: &PostgresCdcConfig,
    exported: Option<&str>,
    point: u64,
    out: &mpsc::Sender<Item>,
) -> ConnectResult<()> {
    let mut db = catalog::connect(config).await?;
    let mut tx = db
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(|e| db_error("starting the snapshot transaction", e))?;
    if let Some(name) = exported {
        // The name comes from the server (`00000003-00000011-1`); checked, as it is spliced.
        if !name.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(ConnectError::internal(format!(
                "unexpected snapshot name {name:?}"
            )));
        }
        sqlx::query(&format!("SET TRANSACTION SNAPSHOT '{name}'"))
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error("importing the slot's snapshot", e))?;
    }
    let tables = catalog::published_tables(&mut tx, config).await?;
    tracing::info!(
        "snapshotting {} tables of {} at LSN {point}",
        tables.len(),
        config.server()
    );
    let modes = config.modes();
    let partition = ServerPartition::of(&config.topic_prefix);
    let mut types = Types::default();
    let ts_us = now_ms() * 1000;
    let mut pending: Option<(Table, Vec<Datum>)> = None;
    let mut first = true;
    for (oid, schema, name) in tables {
        let described = catalog::describe(&mut tx, oid).await?;
        let mut specs = Vec::new();
        for c in &described.columns {
            specs.push(ColumnSpec {
                ty: types.resolve(&mut tx, c.type_oid, c.type_modifier).await?,
                included: config.streams_column(&schema, &name, &c.name),
                nullable: c.nullable,
                name: c.name.clone(),
            });
        }
        let table = build_table(config, &schema, &name, specs, &described);
        let select = table
            .columns
            .iter()
            .map(|c| format!("\"{}\"::text", c.name.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(", ");
        let declare = format!(
            "DECLARE sluice_snapshot NO SCROLL CURSOR FOR SELECT {select} FROM {}",
            quoted(&schema, &name)
        );
        sqlx::query(&declare)
            .persistent(false)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error(&format!("reading {schema}.{name}"), e))?;
        let fetch = format!(
            "FETCH FORWARD {} FROM sluice_snapshot",
            config.snapshot_fetch_size
        );
        loop {
            // Not prepared once: the same FETCH returns each table's own columns.
            let rows = sqlx::query(&fetch)
                .persistent(false)
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| db_error(&format!("reading {schema}.{name}"), e))?;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                let tuple: Vec<Datum> = (0..row.len())
                    .map(|i| match row.get::<Option<String>, _>(i) {
                        Some(s) => Datum::Text(s.into()),
                        None => Datum::Null,
                    })
                    .collect();
                if let Some((t, tuple)) = pending.replace((table.clone(), tuple)) {
                    let marker = if first { "first" } else { "true" };
                    first = false;
                    let item =
                        read_event(config, &t, &tuple, marker, point, ts_us, modes, &partition)?;
                    if out.send(item).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
        sqlx::query("CLOSE sluice_snapshot")
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error("closing the snapshot cursor", e))?;
    }
    if let Some((t, tuple)) = pending {
        let item = read_event(config, &t, &tuple, "last", point, ts_us, modes, &partition)?;
        let _ = out.send(item).await;
    } else {
        // Nothing to read: a marker that the snapshot is done, so a restart does not redo it.
        let _ = out
            .send(super::heartbeat(
                config,
                &snapshot_offset(point, ts_us, true),
            )?)
            .await;
    }
    tx.commit()
        .await
        .map_err(|e| db_error("ending the snapshot transaction", e))?;
    Ok(())
}

fn snapshot_offset(point: u64, ts_us: i64, last: bool) -> CdcOffset {
    CdcOffset {
        lsn: Some(point),
        ts_usec: ts_us,
        snapshot: Some(SnapshotFlag::Flag(true)),
        last_snapshot_record: Some(last),
        ..CdcOffset::default()
    }
}

#[allow(clippy::too_many_arguments)]
fn read_event(
    config: &PostgresCdcConfig,
    table: &Table,
    tuple: &[Datum],
    marker: &str,
    point: u64,
    ts_us: i64,
    modes: Modes,
    partition: &ServerPartition,
) -> ConnectResult<Item> {
    let offset = snapshot_offset(point, ts_us, marker == "last");
    let source = SourceInfo {
        server: &config.topic_prefix,
        db: &config.dbname,
        ts_us,
        snapshot: marker,
        tx_id: None,
        lsn: Some(point),
        last_commit: None,
    };
    let row = match table.row(tuple, modes, &config.unavailable_value_placeholder) {
        Ok(row) => row,
        Err(e) => return rejected(table, tuple, e, partition, &offset),
    };
    let key = table.key(&row);
    let value = envelope(table, "r", None, Some(row), &source, now_ms() * 1000);
    let record = Record {
        topic: table.topic.clone(),
        key_schema: table.key_schema.clone(),
        key,
        value_schema: Some(table.envelope_schema.clone()),
        value,
        ..Record::default()
    };
    Ok(Item::Record(SourceRecord::new(record, partition, &offset)?))
}
