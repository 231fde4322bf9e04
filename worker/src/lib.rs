//! The Sluice worker: runs connectors on Kafka-backed state and serves the Kafka Connect REST API.
//!
//! Start-up: read the worker config; start the embedded broker if no `bootstrap.servers` is set;
//! check that Kafka answers (one clear line if not); bind the REST listener; open the config, offsets
//! and status topics (creating them if absent) and read them to the end; start every connector and
//! task they describe; serve. On SIGTERM or Ctrl-C: stop taking requests, stop every task (each
//! commits what it has), and exit within `task.shutdown.graceful.timeout.ms` plus a margin.
//!
//! Custom binaries register their own plugins with [`main_with_plugins`].

pub mod cluster;
pub mod config;
pub mod connector_config;
pub mod embedded;
pub mod error;
pub mod herder;
pub mod kafka;
pub mod logging;
pub mod metrics;
pub mod redrive;
pub mod store;
pub mod task;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sluice_connector_api::PluginRegistry;
use tokio_util::sync::CancellationToken;

use crate::config::WorkerConfig;
use crate::error::WorkerError;
use crate::herder::Herder;
use crate::kafka::KafkaClients;
use crate::logging::Logging;

/// Command line of the `sluice` binary.
#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "A Kafka Connect compatible connector worker"
)]
pub struct Cli {
    /// What to run; the worker by default.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Worker properties file (the format of connect-distributed.properties). `SLUICE_<KEY>`
    /// environment variables override it.
    pub config: Option<PathBuf>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run only the embedded Kafka-compatible broker, in the foreground.
    Broker {
        /// Port to listen on (loopback).
        #[arg(long, default_value_t = 9092)]
        port: u16,
        /// Directory for its data.
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
    },
}

/// Every built-in plugin plus `extra`.
pub fn plugins_with(extra: PluginRegistry) -> PluginRegistry {
    let mut registry = sluice_connectors::builtin();
    registry.extend(extra);
    registry
}

/// The `main` of a `sluice` binary that also offers the plugins in `extra`.
pub fn main_with_plugins(extra: PluginRegistry) -> ExitCode {
    let cli = Cli::parse();
    let logging = Arc::new(Logging::init());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(signal_shutdown(shutdown.clone()));
        match cli.command {
            Some(Command::Broker { port, data_dir }) => run_broker(&data_dir, port, shutdown).await,
            None => {
                let config =
                    WorkerConfig::load(cli.config.as_deref()).map_err(WorkerError::Config)?;
                run_worker(config, plugins_with(extra), logging, shutdown).await
            }
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn signal_shutdown(token: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            token.cancel();
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
    }
    token.cancel();
}

async fn run_broker(
    data_dir: &std::path::Path,
    port: u16,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let broker = embedded::start(data_dir, port).await?;
    tracing::info!(bootstrap = broker.bootstrap, data_dir = %data_dir.display(), "embedded broker ready");
    shutdown.cancelled().await;
    broker.stop();
    Ok(())
}

/// Runs a worker until `shutdown` is cancelled.
pub async fn run_worker(
    config: WorkerConfig,
    registry: PluginRegistry,
    logging: Arc<Logging>,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let started = std::time::Instant::now();
    let config = Arc::new(config);
    let embedded = match &config.bootstrap_servers {
        Some(_) => None,
        None => {
            let broker = embedded::start(&config.embedded_data_dir, config.embedded_port).await?;
            tracing::info!(bootstrap = broker.bootstrap, data_dir = %config.embedded_data_dir.display(), "no bootstrap.servers set: started the embedded broker");
            Some(broker)
        }
    };
    let bootstrap = config
        .bootstrap_servers
        .clone()
        .or_else(|| embedded.as_ref().map(|b| b.bootstrap.clone()))
        .unwrap_or_default();
    let clients = KafkaClients::new(&bootstrap, |kind| config.client_overrides(kind));
    clients.check_reachable(Duration::from_secs(15)).await?;

    let listener = tokio::net::TcpListener::bind((config.rest_host.as_str(), config.rest_port))
        .await
        .map_err(|e| WorkerError::Io {
            context: format!(
                "binding the REST API to {}:{}",
                config.rest_host, config.rest_port
            ),
            source: e,
        })?;
    let port = listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or(config.rest_port);
    let host = config.rest_advertised_host_name.clone().unwrap_or_else(|| {
        match config.rest_host.as_str() {
            "0.0.0.0" | "::" => "localhost".to_owned(),
            h => h.to_owned(),
        }
    });
    let worker_id = format!("{host}:{port}");
    let url = format!("http://{worker_id}");

    let herder_shutdown = CancellationToken::new();
    let (herder, background) = Herder::start(
        Arc::clone(&config),
        registry,
        clients,
        url.clone(),
        herder_shutdown.clone(),
    )
    .await?;
    let cluster = herder.cluster().clone();
    let state = sluice_rest_api::AppState {
        herder: herder.clone(),
        logs: logging,
    };
    let app = sluice_rest_api::router(state, config.rest_max_body_bytes)
        .merge(cluster.router())
        .layer(axum::middleware::from_fn_with_state(
            cluster.forwarder(),
            cluster::http::forward_writes,
        ));
    tracing::info!(worker_id, rest = %url, kafka = bootstrap, startup_ms = started.elapsed().as_millis() as u64, "worker ready");

    // The listener outlives the shutdown signal: the fleet's RPCs reach this worker while it
    // hands its work over.
    let server_shutdown = CancellationToken::new();
    let stop_server = server_shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { server_shutdown.cancelled().await })
            .await
    });
    shutdown.cancelled().await;
    // Hand this worker's tasks to the others (each stops and commits here first), then stop.
    cluster
        .leave(
            Duration::from_millis(config.task_shutdown_graceful_timeout_ms)
                + Duration::from_secs(5),
        )
        .await;
    herder_shutdown.cancel();
    let budget =
        Duration::from_millis(config.task_shutdown_graceful_timeout_ms) + Duration::from_secs(5);
    if tokio::time::timeout(budget, background).await.is_err() {
        tracing::warn!("tasks did not stop within {budget:?}; exiting anyway");
    }
    stop_server.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    if let Some(broker) = embedded {
        broker.stop();
    }
    tracing::info!("worker stopped");
    Ok(())
}
