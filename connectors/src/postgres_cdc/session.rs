//! One run of the reader: check the server, make sure the publication and the slot exist,
//! snapshot when `snapshot.mode` says so, then stream from the slot until the task stops or the
//! session breaks (a retriable error: the task starts a new run from the last record it
//! returned).

use std::time::Duration;

use pgwire_replication::{ReplicationClient, ReplicationConfig, SslMode, TlsConfig};
use sluice_connector_api::{ConnectError, ConnectResult, SourceTaskContext};
use tokio::sync::{mpsc, watch};

use super::Item;
use super::catalog::{self, SlotState};
use super::config::{PostgresCdcConfig, SnapshotMode};
use super::offset::CdcOffset;
use super::snapshot;
use super::stream::Stream;
use super::types::session_options;

/// How long a slot still held by a session that is going away (the previous run of this task
/// after a crash) is waited for before the task fails.
const SLOT_RELEASE_WAIT: Duration = Duration::from_secs(15);

fn replication_config(config: &PostgresCdcConfig) -> ReplicationConfig {
    let tls = match config.sslmode.as_str() {
        "disable" => TlsConfig::disabled(),
        "require" => TlsConfig::require(),
        "verify-ca" => TlsConfig::verify_ca(None),
        "verify-full" => TlsConfig::verify_full(None),
        _ => TlsConfig {
            mode: SslMode::Prefer,
            ..TlsConfig::disabled()
        },
    };
    ReplicationConfig::new(
        config.host.clone(),
        config.user.clone(),
        config
            .password
            .as_ref()
            .map(|p| p.expose().to_owned())
            .unwrap_or_default(),
        config.dbname.clone(),
        config.slot.clone(),
        config.publication.clone(),
    )
    .with_port(config.port)
    .with_tls(tls)
    .with_options(session_options())
    .with_status_interval(config.status_update_interval)
    .with_buffer_size(config.max_queue_size)
    .with_application_name("sluice-postgres-cdc")
}

/// Waits until no other session holds the slot; the slot, if it exists.
async fn free_slot(
    db: &mut sqlx::PgConnection,
    config: &PostgresCdcConfig,
) -> ConnectResult<Option<SlotState>> {
    let deadline = tokio::time::Instant::now() + SLOT_RELEASE_WAIT;
    loop {
        let slot = catalog::slot(db, &config.slot).await?;
        let Some(pid) = slot.as_ref().and_then(|s| s.active_pid) else {
            if let Some(plugin) = slot.as_ref().and_then(|s| s.plugin.as_deref())
                && plugin != "pgoutput"
            {
                return Err(ConnectError::user(format!(
                    "replication slot {:?} on {} uses plugin {plugin}, not pgoutput: drop it \
                     or set slot.name to another slot",
                    config.slot,
                    config.server()
                )));
            }
            return Ok(slot);
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(ConnectError::user(format!(
                "replication slot {:?} on {} is in use by another client (pid {pid}): stop that \
                 client, or give this connector its own slot.name",
                config.slot,
                config.server()
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs the reader, sending what it reads to `out`.
pub async fn run(
    config: PostgresCdcConfig,
    resume: Option<CdcOffset>,
    out: mpsc::Sender<Item>,
    acks: watch::Receiver<Option<CdcOffset>>,
    ctx: SourceTaskContext,
) -> ConnectResult<()> {
    let mut db = catalog::connect(&config).await?;
    catalog::check_server(&mut db, &config).await?;
    catalog::ensure_publication(&mut db, &config).await?;
    let mut slot = free_slot(&mut db, &config).await?;

    let unfinished = resume
        .as_ref()
        .is_some_and(CdcOffset::in_unfinished_snapshot);
    // The stored offset's changes are gone with the slot that held them.
    let lost = resume.is_some() && slot.is_none();
    let snapshot = match config.snapshot_mode {
        SnapshotMode::Always => true,
        SnapshotMode::NoData => false,
        SnapshotMode::Initial | SnapshotMode::InitialOnly => resume.is_none() || unfinished,
        SnapshotMode::WhenNeeded => resume.is_none() || unfinished || lost,
    };
    if lost && !snapshot {
        tracing::warn!(
            "replication slot {:?} on {} is gone: changes since the stored offset are lost; \
             streaming from a new slot (snapshot.mode=when_needed would snapshot again)",
            config.slot,
            config.server()
        );
    }
    // A snapshot is exact only with the snapshot exported at the slot's creation: a slot left
    // by a snapshot that did not finish is made again.
    if snapshot && unfinished && slot.is_some() {
        catalog::drop_slot(&mut db, &config.slot).await?;
        slot = None;
    }

    let mut client = ReplicationClient::connect_gated(replication_config(&config))
        .await
        .map_err(|e| session_error(&config, e))?;
    let mut exported = None;
    let mut point = slot
        .as_ref()
        .and_then(|s| s.confirmed_flush_lsn)
        .unwrap_or(0);
    if slot.is_none() {
        let how = if snapshot {
            "(SNAPSHOT 'export')"
        } else {
            "(SNAPSHOT 'nothing')"
        };
        let rows = client
            .simple_query(&format!(
                "CREATE_REPLICATION_SLOT \"{}\" LOGICAL pgoutput {how}",
                config.slot
            ))
            .await
            .map_err(|e| session_error(&config, e))?;
        let text = |i: usize| {
            rows.first()
                .and_then(|r| r.get(i).cloned().flatten())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        };
        point = text(1)
            .and_then(|l| pgwire_replication::Lsn::parse(&l).ok())
            .map_or(0, |l| l.as_u64());
        exported = text(2);
        tracing::info!(
            "created replication slot {:?} on {} at LSN {point}",
            config.slot,
            config.server()
        );
    } else if snapshot {
        tracing::warn!(
            "snapshotting {} while replication slot {:?} already exists: changes committed \
             between the slot's position and the snapshot are read in both",
            config.server(),
            config.slot
        );
    }

    let mut resume = resume;
    if snapshot {
        snapshot::run(&config, exported.as_deref(), point, &out).await?;
        // The stream starts at the slot's point: nothing of it is covered by the old offset.
        resume = None;
        if config.snapshot_mode == SnapshotMode::InitialOnly {
            tracing::info!("snapshot.mode=initial_only: the snapshot is done, not streaming");
            drop(client);
            out.closed().await;
            return Ok(());
        }
    } else if config.snapshot_mode == SnapshotMode::InitialOnly {
        out.closed().await;
        return Ok(());
    }

    client
        .start()
        .await
        .map_err(|e| session_error(&config, e))?;
    client
        .wait_started()
        .await
        .map_err(|e| session_error(&config, e))?;
    tracing::info!(
        "streaming {} from replication slot {:?}",
        config.server(),
        config.slot
    );
    let result = Stream::new(&config, db, resume)
        .run(&mut client, &out, acks, &ctx)
        .await;
    client.stop();
    result
}

/// A replication session error: retriable when the connection broke, the server's message
/// (which says what is wrong) otherwise.
fn session_error(config: &PostgresCdcConfig, e: pgwire_replication::PgWireError) -> ConnectError {
    use pgwire_replication::PgWireError as E;
    let message = format!("replication session to {}: {e}", config.server());
    match e {
        E::Io(_) => ConnectError::retriable(message),
        _ => ConnectError::user(message),
    }
}
