//! Object stores: S3 (AWS or any S3-compatible endpoint) and a local directory with the same layout.
//!
//! Every call is idempotent for a given key: writing an object again replaces it with the same
//! bytes, which is what makes a replay after a crash harmless. Errors say whether a retry can help:
//! network failures, timeouts, throttling and 5xx answers are retriable; access denied or a missing
//! bucket are not.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use sluice_connector_api::{ConnectError, ConnectResult};

use super::config::StoreTarget;

/// Where finished files go.
#[derive(Debug, Clone)]
pub enum Store {
    /// An S3 bucket.
    S3 {
        /// The client.
        client: aws_sdk_s3::Client,
        /// The bucket.
        bucket: String,
    },
    /// A local directory.
    Local(PathBuf),
}

/// A part of a multipart upload: its number and ETag.
pub type Part = (i32, String);

impl Store {
    /// Connects to the configured store (no request is made yet).
    pub async fn connect(target: &StoreTarget) -> Self {
        match target {
            StoreTarget::Local(dir) => Store::Local(dir.clone()),
            StoreTarget::S3 {
                bucket,
                region,
                endpoint,
                path_style,
                credentials,
            } => {
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .region(aws_config::Region::new(region.clone()))
                    .timeout_config(
                        aws_config::timeout::TimeoutConfig::builder()
                            .connect_timeout(Duration::from_secs(5))
                            .operation_attempt_timeout(Duration::from_secs(120))
                            .build(),
                    );
                if let Some((id, secret)) = credentials {
                    loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                        id,
                        secret,
                        None,
                        None,
                        "sluice-config",
                    ));
                }
                let shared = loader.load().await;
                let mut config =
                    aws_sdk_s3::config::Builder::from(&shared).force_path_style(*path_style);
                if let Some(url) = endpoint {
                    config = config.endpoint_url(url);
                }
                Store::S3 {
                    client: aws_sdk_s3::Client::from_conf(config.build()),
                    bucket: bucket.clone(),
                }
            }
        }
    }

    /// Writes a whole object.
    pub async fn put(&self, key: &str, body: Bytes) -> ConnectResult<()> {
        match self {
            Store::S3 { client, bucket } => client
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(ByteStream::from(body))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify("PutObject", key, e)),
            Store::Local(dir) => {
                let path = dir.join(key);
                let tmp = temp_path(&path, "put");
                write_new(&tmp, &body).await?;
                rename(&tmp, &path).await
            }
        }
    }

    /// Starts a multipart upload; returns its id.
    pub async fn create_multipart(&self, key: &str) -> ConnectResult<String> {
        match self {
            Store::S3 { client, bucket } => client
                .create_multipart_upload()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| classify("CreateMultipartUpload", key, e))?
                .upload_id
                .ok_or_else(|| {
                    ConnectError::external(format!(
                        "CreateMultipartUpload for {key} returned no upload id"
                    ))
                }),
            Store::Local(_) => Ok(format!("{:016x}", rand::random::<u64>())),
        }
    }

    /// Uploads one part (numbers from 1); returns its ETag.
    pub async fn upload_part(
        &self,
        key: &str,
        upload: &str,
        number: i32,
        body: Bytes,
    ) -> ConnectResult<String> {
        match self {
            Store::S3 { client, bucket } => Ok(client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(upload)
                .part_number(number)
                .body(ByteStream::from(body))
                .send()
                .await
                .map_err(|e| classify("UploadPart", key, e))?
                .e_tag
                .unwrap_or_default()),
            Store::Local(dir) => {
                let path = temp_path(&dir.join(key), &format!("{upload}.{number:05}"));
                write_new(&path, &body).await?;
                Ok(number.to_string())
            }
        }
    }

    /// Completes a multipart upload: the object appears with its parts in order.
    pub async fn complete(&self, key: &str, upload: &str, parts: &[Part]) -> ConnectResult<()> {
        match self {
            Store::S3 { client, bucket } => {
                let parts = parts
                    .iter()
                    .map(|(n, etag)| CompletedPart::builder().part_number(*n).e_tag(etag).build())
                    .collect();
                let done = client
                    .complete_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(upload)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await;
                match done {
                    Ok(_) => Ok(()),
                    // An earlier attempt completed it and its answer was lost.
                    Err(e) if e.code() == Some("NoSuchUpload") && self.exists(key).await? => Ok(()),
                    Err(e) => Err(classify("CompleteMultipartUpload", key, e)),
                }
            }
            Store::Local(dir) => {
                let path = dir.join(key);
                let tmp = temp_path(&path, &format!("{upload}.all"));
                let mut whole = Vec::new();
                for (n, _) in parts {
                    let part = temp_path(&path, &format!("{upload}.{n:05}"));
                    match tokio::fs::read(&part).await {
                        Ok(bytes) => whole.extend_from_slice(&bytes),
                        Err(e)
                            if e.kind() == std::io::ErrorKind::NotFound
                                && tokio::fs::metadata(&path).await.is_ok() =>
                        {
                            return Ok(());
                        }
                        Err(e) => return Err(io_error("reading part", &part, e)),
                    }
                }
                write_new(&tmp, &whole).await?;
                rename(&tmp, &path).await?;
                for (n, _) in parts {
                    let _ =
                        tokio::fs::remove_file(temp_path(&path, &format!("{upload}.{n:05}"))).await;
                }
                Ok(())
            }
        }
    }

    /// Abandons a multipart upload and frees its parts.
    pub async fn abort(&self, key: &str, upload: &str) -> ConnectResult<()> {
        match self {
            Store::S3 { client, bucket } => client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(upload)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify("AbortMultipartUpload", key, e)),
            Store::Local(dir) => {
                let path = dir.join(key);
                let prefix = format!(".{}.{upload}.", file_name(&path));
                if let Some(parent) = path.parent()
                    && let Ok(mut entries) = tokio::fs::read_dir(parent).await
                {
                    while let Ok(Some(entry)) = entries.next_entry().await {
                        if entry.file_name().to_string_lossy().starts_with(&prefix) {
                            let _ = tokio::fs::remove_file(entry.path()).await;
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// An object's bytes, or `None` when it does not exist.
    pub async fn get(&self, key: &str) -> ConnectResult<Option<Bytes>> {
        match self {
            Store::S3 { client, bucket } => {
                match client.get_object().bucket(bucket).key(key).send().await {
                    Ok(o) => {
                        let body = o.body.collect().await.map_err(|e| {
                            ConnectError::retriable(format!("reading {key} failed: {e}"))
                                .with_source(e)
                        })?;
                        Ok(Some(body.into_bytes()))
                    }
                    Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
                    Err(e) => Err(classify("GetObject", key, e)),
                }
            }
            Store::Local(dir) => match tokio::fs::read(dir.join(key)).await {
                Ok(b) => Ok(Some(b.into())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io_error("reading", &dir.join(key), e)),
            },
        }
    }

    /// Whether an object exists.
    pub async fn exists(&self, key: &str) -> ConnectResult<bool> {
        match self {
            Store::S3 { client, bucket } => {
                match client.head_object().bucket(bucket).key(key).send().await {
                    Ok(_) => Ok(true),
                    Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
                    Err(e) => Err(classify("HeadObject", key, e)),
                }
            }
            Store::Local(dir) => Ok(tokio::fs::metadata(dir.join(key)).await.is_ok()),
        }
    }

    /// Multipart uploads in progress under `prefix` (key, upload id). Stores that do not list them
    /// (some S3-compatible servers) answer with an error; callers treat that as "none known".
    pub async fn in_progress_uploads(&self, prefix: &str) -> ConnectResult<Vec<(String, String)>> {
        match self {
            Store::S3 { client, bucket } => {
                let mut out = Vec::new();
                let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
                loop {
                    let page = client
                        .list_multipart_uploads()
                        .bucket(bucket)
                        .prefix(prefix)
                        .set_key_marker(key_marker.clone())
                        .set_upload_id_marker(id_marker.clone())
                        .send()
                        .await
                        .map_err(|e| classify("ListMultipartUploads", prefix, e))?;
                    for u in page.uploads() {
                        if let (Some(k), Some(id)) = (u.key(), u.upload_id()) {
                            out.push((k.to_owned(), id.to_owned()));
                        }
                    }
                    if page.is_truncated() != Some(true) {
                        return Ok(out);
                    }
                    key_marker = page.next_key_marker().map(str::to_owned);
                    id_marker = page.next_upload_id_marker().map(str::to_owned);
                }
            }
            Store::Local(_) => Ok(Vec::new()),
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A hidden sibling of `path` (never matched by `*.parquet` readers).
fn temp_path(path: &Path, tag: &str) -> PathBuf {
    path.with_file_name(format!(".{}.{tag}", file_name(path)))
}

async fn write_new(path: &Path, body: &[u8]) -> ConnectResult<()> {
    use tokio::io::AsyncWriteExt;
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| io_error("creating directory", parent, e))?;
    }
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| io_error("creating", path, e))?;
    file.write_all(body)
        .await
        .map_err(|e| io_error("writing", path, e))?;
    file.sync_all()
        .await
        .map_err(|e| io_error("syncing", path, e))
}

async fn rename(from: &Path, to: &Path) -> ConnectResult<()> {
    tokio::fs::rename(from, to)
        .await
        .map_err(|e| io_error("renaming to", to, e))
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> ConnectError {
    ConnectError::retriable(format!("{what} {} failed: {e}", path.display())).with_source(e)
}

/// Network trouble, timeouts, throttling and 5xx are worth retrying; a refusal is not.
fn classify<E>(operation: &str, key: &str, e: SdkError<E, HttpResponse>) -> ConnectError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let message = match &e {
        SdkError::ServiceError(s) => format!(
            "{operation} {key} failed: {} {}",
            s.err().code().unwrap_or("error"),
            s.err().message().unwrap_or_default()
        ),
        other => format!(
            "{operation} {key} failed: {}",
            aws_sdk_s3::error::DisplayErrorContext(other)
        ),
    };
    let retriable = match &e {
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            let code = s.err().code().unwrap_or_default();
            matches!(
                code,
                "SlowDown"
                    | "InternalError"
                    | "ServiceUnavailable"
                    | "RequestTimeout"
                    | "RequestTimeTooSkewed"
            ) || status >= 500
                || status == 429
        }
        _ => true,
    };
    if retriable {
        ConnectError::retriable(message)
    } else {
        ConnectError::external(message)
    }
}
