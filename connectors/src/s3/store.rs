//! Object stores: S3 (AWS or any S3-compatible endpoint) and a local directory with the same layout.
//!
//! Every call is idempotent for a given key: writing an object again replaces it with the same
//! bytes, which is what makes a replay after a crash harmless. Errors say whether a retry can help:
//! network failures, timeouts, throttling and 5xx answers are retriable; access denied, a missing
//! bucket or a directory that cannot be written are not.
//!
//! [`Store::put_if`] writes an object only if it is still what the writer last saw (S3's `If-Match`
//! on its ETag, or `If-None-Match: *` for an object that did not exist): the S3 sink's intents use
//! it to fence a stale writer (DESIGN.md). The local directory checks the same condition under a
//! lock of the process, which is enough for one worker developing against it.
//!
//! Every S3 call gives up after `aws.api.call.timeout.ms` (30 s by default, all attempts
//! together), well inside the consumer's session and poll timeouts, so that a writer does not act
//! minutes after it lost its partitions. Errors are classified by [`crate::aws::classify`].

use std::path::{Path, PathBuf};
#[cfg(any(test, feature = "testing"))]
use std::sync::Arc;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use sluice_connector_api::{ConnectError, ConnectResult};

use super::config::StoreTarget;
use crate::aws::classify;

/// What a conditional write expects the object to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect<'a> {
    /// No object at the key.
    Absent,
    /// The object whose ETag this is.
    Tag(&'a str),
    /// Anything (an unconditional write).
    Any,
}

/// The outcome of a conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conditional {
    /// Written; the new object's ETag, when the store gave one.
    Written(Option<String>),
    /// The object was not what the writer expected: someone else wrote it.
    Refused,
}

/// Where finished files go.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    /// Test-only fault injection.
    #[cfg(any(test, feature = "testing"))]
    faults: Option<Arc<faults::Faults>>,
}

#[derive(Debug, Clone)]
enum Backend {
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
        let backend = match target {
            StoreTarget::Local(dir) => Backend::Local(dir.clone()),
            StoreTarget::S3 {
                bucket,
                path_style,
                aws,
            } => {
                let shared = aws.sdk_config().await;
                let config =
                    aws_sdk_s3::config::Builder::from(&shared).force_path_style(*path_style);
                Backend::S3 {
                    client: aws_sdk_s3::Client::from_conf(config.build()),
                    bucket: bucket.clone(),
                }
            }
        };
        Self {
            backend,
            #[cfg(any(test, feature = "testing"))]
            faults: None,
        }
    }

    /// This store with test faults injected.
    #[cfg(any(test, feature = "testing"))]
    pub fn with_faults(mut self, faults: Arc<faults::Faults>) -> Self {
        self.faults = Some(faults);
        self
    }

    /// Applies an injected fault to a call on `key` (a test build only).
    async fn fault(&self, _operation: &str, _key: &str) -> ConnectResult<()> {
        #[cfg(any(test, feature = "testing"))]
        if let Some(faults) = &self.faults {
            return faults.apply(_operation, _key).await;
        }
        Ok(())
    }

    /// Writes a whole object.
    pub async fn put(&self, key: &str, body: Bytes) -> ConnectResult<()> {
        self.fault("PutObject", key).await?;
        match &self.backend {
            Backend::S3 { client, bucket } => client
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(ByteStream::from(body))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify("PutObject", key, e)),
            Backend::Local(dir) => {
                let path = dir.join(key);
                let tmp = temp_path(&path, "put");
                write_new(&tmp, &body).await?;
                rename(&tmp, &path).await
            }
        }
    }

    /// Starts a multipart upload; returns its id.
    pub async fn create_multipart(&self, key: &str) -> ConnectResult<String> {
        self.fault("CreateMultipartUpload", key).await?;
        match &self.backend {
            Backend::S3 { client, bucket } => client
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
            Backend::Local(_) => Ok(format!("{:016x}", rand::random::<u64>())),
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
        self.fault("UploadPart", key).await?;
        match &self.backend {
            Backend::S3 { client, bucket } => Ok(client
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
            Backend::Local(dir) => {
                let path = temp_path(&dir.join(key), &format!("{upload}.{number:05}"));
                write_new(&path, &body).await?;
                Ok(number.to_string())
            }
        }
    }

    /// Completes a multipart upload: the object appears with its parts in order.
    pub async fn complete(&self, key: &str, upload: &str, parts: &[Part]) -> ConnectResult<()> {
        self.fault("CompleteMultipartUpload", key).await?;
        match &self.backend {
            Backend::S3 { client, bucket } => {
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
            Backend::Local(dir) => {
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
        match &self.backend {
            Backend::S3 { client, bucket } => client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(upload)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify("AbortMultipartUpload", key, e)),
            Backend::Local(dir) => {
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
        Ok(self.get_tagged(key).await?.map(|(body, _)| body))
    }

    /// An object's bytes and ETag (when the store gives one), or `None` when it does not exist.
    pub async fn get_tagged(&self, key: &str) -> ConnectResult<Option<(Bytes, Option<String>)>> {
        self.fault("GetObject", key).await?;
        match &self.backend {
            Backend::S3 { client, bucket } => {
                match client.get_object().bucket(bucket).key(key).send().await {
                    Ok(o) => {
                        let tag = o.e_tag.clone();
                        let body = o.body.collect().await.map_err(|e| {
                            ConnectError::retriable(format!("reading {key} failed: {e}"))
                                .with_source(e)
                        })?;
                        Ok(Some((body.into_bytes(), tag)))
                    }
                    Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
                    Err(e) => Err(classify("GetObject", key, e)),
                }
            }
            Backend::Local(dir) => match tokio::fs::read(dir.join(key)).await {
                Ok(b) => {
                    let tag = local_tag(&b);
                    Ok(Some((b.into(), Some(tag))))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io_error("reading", &dir.join(key), e)),
            },
        }
    }

    /// Writes a whole object only if it is what `expect` says (see the module docs); `Refused`
    /// when it is not.
    pub async fn put_if(
        &self,
        key: &str,
        body: Bytes,
        expect: Expect<'_>,
    ) -> ConnectResult<Conditional> {
        self.fault("PutObject", key).await?;
        match &self.backend {
            Backend::S3 { client, bucket } => {
                let mut request = client
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .body(ByteStream::from(body));
                request = match expect {
                    Expect::Absent => request.if_none_match("*"),
                    Expect::Tag(tag) => request.if_match(tag),
                    Expect::Any => request,
                };
                match request.send().await {
                    Ok(out) => Ok(Conditional::Written(out.e_tag)),
                    Err(e) if status_of(&e) == Some(412) => Ok(Conditional::Refused),
                    Err(e) => Err(classify("PutObject", key, e)),
                }
            }
            Backend::Local(dir) => {
                // One conditional write at a time in this process: read, compare, replace.
                static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
                let _held = LOCK.lock().await;
                let path = dir.join(key);
                let now = match tokio::fs::read(&path).await {
                    Ok(b) => Some(local_tag(&b)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => return Err(io_error("reading", &path, e)),
                };
                let holds = match expect {
                    Expect::Absent => now.is_none(),
                    Expect::Tag(tag) => now.as_deref() == Some(tag),
                    Expect::Any => true,
                };
                if !holds {
                    return Ok(Conditional::Refused);
                }
                let tag = local_tag(&body);
                let tmp = temp_path(&path, "put");
                write_new(&tmp, &body).await?;
                rename(&tmp, &path).await?;
                Ok(Conditional::Written(Some(tag)))
            }
        }
    }

    /// Whether an object exists.
    pub async fn exists(&self, key: &str) -> ConnectResult<bool> {
        match &self.backend {
            Backend::S3 { client, bucket } => {
                match client.head_object().bucket(bucket).key(key).send().await {
                    Ok(_) => Ok(true),
                    Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
                    Err(e) => Err(classify("HeadObject", key, e)),
                }
            }
            Backend::Local(dir) => Ok(tokio::fs::metadata(dir.join(key)).await.is_ok()),
        }
    }

    /// Multipart uploads in progress under `prefix` (key, upload id). Stores that do not list them
    /// (some S3-compatible servers) answer with an error; callers treat that as "none known".
    pub async fn in_progress_uploads(&self, prefix: &str) -> ConnectResult<Vec<(String, String)>> {
        match &self.backend {
            Backend::S3 { client, bucket } => {
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
            Backend::Local(_) => Ok(Vec::new()),
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

/// A directory that cannot be written stays so: only other I/O errors are worth retrying.
fn io_error(what: &str, path: &Path, e: std::io::Error) -> ConnectError {
    use std::io::ErrorKind as K;
    let message = format!("{what} {} failed: {e}", path.display());
    let permanent = matches!(
        e.kind(),
        K::PermissionDenied
            | K::ReadOnlyFilesystem
            | K::NotADirectory
            | K::IsADirectory
            | K::InvalidFilename
            | K::InvalidInput
    );
    if permanent {
        ConnectError::external(message).with_source(e)
    } else {
        ConnectError::retriable(message).with_source(e)
    }
}

/// The ETag of a local object: a hash of its bytes (FNV-1a), the same in every process.
fn local_tag(body: &[u8]) -> String {
    let hash = body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("\"{hash:016x}-{}\"", body.len())
}

/// The HTTP status of a service's answer, if there was one.
fn status_of<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    match e {
        SdkError::ServiceError(s) => Some(s.raw().status().as_u16()),
        _ => None,
    }
}

/// Network trouble, timeouts, throttling and 5xx are worth retrying; a refusal is not.
/// Faults a test injects into a [`Store`]: calls that fail for a while, calls held until released.
#[cfg(any(test, feature = "testing"))]
pub mod faults {
    use std::sync::Arc;

    use parking_lot::Mutex;

    use sluice_connector_api::{ConnectError, ConnectResult};
    use tokio::sync::Semaphore;

    /// A call held until the test releases it.
    #[derive(Debug)]
    pub struct Hold {
        operation: String,
        key_part: String,
        reached: Semaphore,
        released: Semaphore,
    }

    impl Hold {
        /// Waits until a held call arrived.
        pub async fn reached(&self) {
            self.reached.acquire().await.expect("open").forget();
        }

        /// Lets the held call go on.
        pub fn release(&self) {
            self.released.add_permits(1);
        }
    }

    /// The faults of one store.
    #[derive(Debug, Default)]
    pub struct Faults {
        failing: Mutex<Vec<(String, String)>>,
        holds: Mutex<Vec<Arc<Hold>>>,
    }

    impl Faults {
        /// From now on, `operation` (`PutObject`, `GetObject`, `UploadPart`, ...) on keys containing
        /// `key_part` fails with a retriable error, until [`heal`](Self::heal).
        pub fn fail(&self, operation: &str, key_part: &str) {
            self.failing
                .lock()
                .push((operation.into(), key_part.into()));
        }

        /// Every call succeeds again (holds stay).
        pub fn heal(&self) {
            self.failing.lock().clear();
        }

        /// The next `operation` on a key containing `key_part` waits until released.
        pub fn hold(&self, operation: &str, key_part: &str) -> Arc<Hold> {
            let hold = Arc::new(Hold {
                operation: operation.into(),
                key_part: key_part.into(),
                reached: Semaphore::new(0),
                released: Semaphore::new(0),
            });
            self.holds.lock().push(Arc::clone(&hold));
            hold
        }

        pub(super) async fn apply(&self, operation: &str, key: &str) -> ConnectResult<()> {
            let held = {
                let mut holds = self.holds.lock();
                let at = holds
                    .iter()
                    .position(|h| h.operation == operation && key.contains(&h.key_part));
                at.map(|i| holds.remove(i))
            };
            if let Some(hold) = held {
                hold.reached.add_permits(1);
                hold.released.acquire().await.expect("open").forget();
            }
            let failing = self
                .failing
                .lock()
                .iter()
                .any(|(op, part)| op == operation && key.contains(part.as_str()));
            if failing {
                return Err(ConnectError::retriable(format!(
                    "{operation} {key} failed: 503 SlowDown (injected)"
                )));
            }
            Ok(())
        }
    }
}
