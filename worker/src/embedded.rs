//! The embedded Kafka-compatible broker (tansu), for running Sluice with no Kafka to point at.
//!
//! It keeps its data in a SQLite file under the configured directory, so topics, offsets and
//! connector configs survive a restart. It listens on loopback only. Production deployments set
//! `bootstrap.servers` and never start it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tansu_broker::broker::Broker;
use tansu_broker::coordinator::group::administrator::Controller;
use tansu_storage::StorageContainer;
use tokio::task::JoinHandle;
use url::Url;

use crate::error::WorkerError;

/// A running embedded broker.
pub struct EmbeddedBroker {
    /// `host:port` to use as `bootstrap.servers`.
    pub bootstrap: String,
    task: JoinHandle<()>,
}

impl EmbeddedBroker {
    /// Stops the broker.
    pub fn stop(self) {
        self.task.abort();
    }
}

/// The storage URL that makes tansu open `file`. Tansu resolves `sqlite://` URLs as the current
/// directory joined with the URL's host and its path without the leading `/`; a path that starts
/// with `//` keeps one `/` and is therefore absolute.
pub fn storage_url(file: &Path) -> Result<Url, WorkerError> {
    let absolute = std::path::absolute(file).map_err(|e| WorkerError::Io {
        context: format!("resolving {}", file.display()),
        source: e,
    })?;
    let mut url = Url::parse("sqlite://").map_err(|e| WorkerError::Broker(e.to_string()))?;
    url.set_path(&format!("/{}", absolute.display()));
    Ok(url)
}

/// Where tansu will put the file for `url` (mirrors its resolution, for tests and logs).
pub fn resolved_path(url: &Url) -> PathBuf {
    let mut path = std::env::current_dir().unwrap_or_default();
    if let Some(domain) = url.domain() {
        path.push(domain);
    }
    let p = url.path();
    path.push(p.strip_prefix('/').unwrap_or(p));
    path
}

/// Indexes record headers by record. tansu 0.6 looks up the headers of every record it fetches
/// by `(topition, offset_id)` in a table with no index on those columns, so each record fetched
/// scans every header the broker holds: with 50,000 records with a header each, fetches took
/// over a minute and the broker stopped answering anything else. `build` has created the tables
/// by now; the index is created once and kept in the file.
async fn index_headers(file: &Path) -> Result<(), WorkerError> {
    let failed = |e: libsql::Error| {
        WorkerError::Broker(format!("indexing headers in {}: {e}", file.display()))
    };
    let db = libsql::Builder::new_local(file)
        .build()
        .await
        .map_err(failed)?;
    db.connect()
        .map_err(failed)?
        .execute(
            "create index if not exists sluice_header_by_record on header (topition, offset_id)",
            (),
        )
        .await
        .map_err(failed)?;
    Ok(())
}

/// Starts the broker on `127.0.0.1:port` with data in `data_dir`, and waits until it accepts
/// connections.
pub async fn start(data_dir: &Path, port: u16) -> Result<EmbeddedBroker, WorkerError> {
    std::fs::create_dir_all(data_dir).map_err(|e| WorkerError::Io {
        context: format!("creating {}", data_dir.display()),
        source: e,
    })?;
    let storage = storage_url(&data_dir.join("tansu.db"))?;
    let listener = Url::parse(&format!("tcp://127.0.0.1:{port}"))
        .map_err(|e| WorkerError::Broker(e.to_string()))?;
    let mut broker = Broker::<Controller<StorageContainer>, StorageContainer>::builder()
        .node_id(tansu_broker::NODE_ID)
        .cluster_id("sluice-embedded")
        .incarnation_id(uuid::Uuid::new_v4())
        .advertised_listener(listener.clone())
        .listener(listener)
        .storage(storage.clone())
        .silent(true)
        .build()
        .await
        .map_err(|e| WorkerError::Broker(format!("{e:?}")))?;
    index_headers(&resolved_path(&storage)).await?;
    let task = tokio::spawn(async move {
        if let Err(e) = broker.serve(tokio::time::Instant::now()).await {
            tracing::error!("embedded broker stopped: {e:?}");
        }
    });
    let address = format!("127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if tokio::net::TcpStream::connect(&address).await.is_ok() {
            break;
        }
        if task.is_finished() || tokio::time::Instant::now() > deadline {
            return Err(WorkerError::Broker(format!(
                "did not start listening on {address} (is the port in use?)"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(EmbeddedBroker {
        bootstrap: address,
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_paths_survive_tansu_resolution() {
        let file = std::env::temp_dir().join("sluice-x").join("tansu.db");
        let url = storage_url(&file).unwrap();
        assert_eq!(resolved_path(&url), file);
    }
}
