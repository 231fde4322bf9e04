//! A real S3-compatible server for tests: `s3s-fs` (checks SigV4 signatures, real multipart
//! uploads) on a free port with its data in a temporary directory, plus helpers to list objects
//! and read Parquet back.
//!
//! The binary comes from `SLUICE_S3S_FS`, else `~/.cache/sluice/tools/bin/s3s-fs` (where
//! `scripts/test.sh` installs it), else `PATH`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use bytes::Bytes;
use parquet::file::reader::{FileReader, SerializedFileReader};
use serde_json::{Value, json};

use crate::free_port;

/// Access key of the test server.
pub const ACCESS_KEY: &str = "sluice-test";
/// Secret key of the test server.
pub const SECRET_KEY: &str = "sluice-test-secret";

/// An `s3s-fs` process.
pub struct S3Server {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// A client for the server.
    pub client: aws_sdk_s3::Client,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("SLUICE_S3S_FS") {
        return p.into();
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let cached = PathBuf::from(home).join(".cache/sluice/tools/bin/s3s-fs");
    if cached.exists() {
        cached
    } else {
        "s3s-fs".into()
    }
}

impl S3Server {
    /// Starts a server on a free port.
    pub async fn start() -> Self {
        let port = free_port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
            .endpoint_url(&endpoint)
            .force_path_style(true)
            .build();
        let mut server = Self {
            endpoint,
            client: aws_sdk_s3::Client::from_conf(config),
            port,
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
        };
        server.resume();
        server
    }

    /// Stops the server (an S3 outage); its data stays.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port with the same data.
    pub fn resume(&mut self) {
        let data = self.dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let log = std::fs::File::create(self.dir.path().join("s3.log")).expect("log");
        let mut child = Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {} failed: {e} (scripts/test.sh installs it)",
                    binary().display()
                )
            });
        crate::wait_for_port(self.port, &mut child, "s3s-fs");
        self.child = Some(child);
    }

    /// Creates a bucket with a unique name and returns the name.
    pub async fn bucket(&self, prefix: &str) -> String {
        let name = crate::unique(prefix).to_ascii_lowercase().replace('_', "-");
        self.client
            .create_bucket()
            .bucket(&name)
            .send()
            .await
            .expect("create bucket");
        name
    }

    /// Connector settings for writing to `bucket`.
    pub fn sink_config(&self, bucket: &str) -> serde_json::Map<String, Value> {
        let v = json!({
            "connector.class": "S3SinkConnector",
            "store.url": self.endpoint,
            "s3.bucket.name": bucket,
            "s3.region": "us-east-1",
            "aws.access.key.id": ACCESS_KEY,
            "aws.secret.access.key": SECRET_KEY,
        });
        v.as_object().cloned().unwrap_or_default()
    }

    /// Every key in `bucket`, sorted.
    pub async fn keys(&self, bucket: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .set_continuation_token(token)
                .send()
                .await
                .expect("list objects");
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            match page.next_continuation_token() {
                Some(t) => token = Some(t.to_owned()),
                None => break,
            }
        }
        keys.sort();
        keys
    }

    /// An object's bytes. s3s-fs overwrites objects in place, so a read racing an overwrite can
    /// fail its checksum (AWS replaces objects atomically): such reads are retried.
    pub async fn get(&self, bucket: &str, key: &str) -> Bytes {
        let mut attempts = 0;
        loop {
            let o = self
                .client
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .expect("get object");
            match o.body.collect().await {
                Ok(body) => return body.into_bytes(),
                Err(e) if attempts < 5 => {
                    attempts += 1;
                    eprintln!("re-reading {key} after {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("reading {key} failed: {e}"),
            }
        }
    }

    /// Every Parquet object under `bucket` as (key, rows), sorted by key.
    pub async fn parquet_objects(&self, bucket: &str) -> Vec<(String, Vec<Value>)> {
        self.read_all(bucket, parquet_rows).await
    }

    /// The `id` column of every Parquet object under `bucket`, as (key, ids) sorted by key.
    pub async fn ids(&self, bucket: &str) -> Vec<(String, Vec<i64>)> {
        self.read_all(bucket, parquet_ids).await
    }

    /// Reads every Parquet object, 16 at a time.
    async fn read_all<T>(&self, bucket: &str, read: fn(Bytes) -> T) -> Vec<(String, T)> {
        use futures::StreamExt;
        let keys = self
            .keys(bucket)
            .await
            .into_iter()
            .filter(|k| k.ends_with(".parquet"));
        let mut out: Vec<(String, T)> = futures::stream::iter(keys)
            .map(|key| async move {
                let value = read(self.get(bucket, &key).await);
                (key, value)
            })
            .buffer_unordered(16)
            .collect()
            .await;
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `id` column (int64) of a Parquet file, read alone.
pub fn parquet_ids(bytes: Bytes) -> Vec<i64> {
    use arrow_array::Int64Array;
    use parquet::arrow::ProjectionMask;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).expect("a readable Parquet file");
    let mask = ProjectionMask::columns(builder.parquet_schema(), ["id"]);
    let mut ids = Vec::new();
    for batch in builder.with_projection(mask).build().expect("reader") {
        let batch = batch.expect("batch");
        let column = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("id is int64");
        ids.extend(column.iter().map(|v| v.expect("id is set")));
    }
    ids
}

/// The rows of a Parquet file as JSON objects (parquet's record reader).
pub fn parquet_rows(bytes: Bytes) -> Vec<Value> {
    let reader = SerializedFileReader::new(bytes).expect("a readable Parquet file");
    reader
        .get_row_iter(None)
        .expect("rows")
        .map(|r| r.expect("row").to_json_value())
        .collect()
}

/// A Parquet file's schema and metadata.
pub fn parquet_metadata(bytes: Bytes) -> parquet::file::metadata::ParquetMetaData {
    SerializedFileReader::new(bytes)
        .expect("a readable Parquet file")
        .metadata()
        .clone()
}
