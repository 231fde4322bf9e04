//! One Parquet file being written: records in, row groups encoded as they fill, parts uploaded as
//! soon as a part's worth of bytes exists, the footer and the object's appearance at the end.
//!
//! Determinism: a file's content depends only on the records offered to it, in order. Rows are
//! encoded in chunks of [`CHUNK_ROWS`] records of this file and a row group closes when its encoded
//! size passes the configured bound, so a replay of the same records yields the same file. A
//! schemaless file's schema is inferred from its first chunk, completed with the fields its task
//! knows of the topic ([`KnownColumns`]); after that a record that needs a new column or a wider
//! type asks for the file to be closed ([`Admit::Roll`]).

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::DataType;
use bytes::Bytes;
use parking_lot::Mutex;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use sluice_connector_api::{ConnectError, ConnectResult, Schema, Value};

use super::columns::{self, Fit};
use super::config::TypeConflict;
use super::flat::FlatColumns;
use super::known::KnownColumns;
use super::store::{Part, Store};

/// Records encoded together; also the number of records a schemaless schema is inferred from.
pub const CHUNK_ROWS: usize = 1024;

/// Settings shared by every file of a task.
#[derive(Debug)]
pub struct FileSettings {
    /// Parquet writer properties (compression, ...).
    pub properties: WriterProperties,
    /// Encoded size of a row group before it is closed.
    pub row_group_bytes: usize,
    /// Multipart part size.
    pub part_size: usize,
    /// Schemaless type conflicts.
    pub policy: TypeConflict,
}

/// What to do with an offered record.
#[derive(Debug, PartialEq)]
pub enum Admit {
    /// Push it.
    Take,
    /// Close this file (and its set) first; the next file takes it.
    Roll,
    /// It cannot be written; the message says why.
    Reject(String),
}

#[derive(Debug)]
enum Row {
    /// Schemaless, first chunk not encoded yet: the type inferred so far.
    Draft(Option<DataType>),
    /// Records carry this Connect schema.
    Connect(Arc<Schema>, DataType),
    /// Schemaless, schema fixed by the first chunk.
    Fixed(DataType),
}

/// A file being written.
pub struct OpenFile {
    /// Object key.
    pub key: String,
    /// Records in it.
    pub records: u64,
    row: Row,
    next_draft: Option<DataType>,
    pending: Vec<Value>,
    pending_bytes: usize,
    /// Set once a schemaless file's columns are fixed and all scalar: rows go straight into
    /// these builders (JSON text or decoded values) instead of `pending`.
    flat: Option<FlatColumns>,
    writer: Option<ArrowWriter<Vec<u8>>>,
    upload: Option<String>,
    parts: Vec<Part>,
    uploaded: u64,
    /// [`encoded_size`](Self::encoded_size), which changes only when rows are encoded (asking
    /// the writer costs a walk over its columns, too much for every record).
    encoded: u64,
    settings: Arc<FileSettings>,
    /// What the task knows of the topic's schemaless fields (none for Connect schemas).
    known: Option<Arc<Mutex<KnownColumns>>>,
}

impl OpenFile {
    /// A new file for records like the first one (`schema` is its Connect value schema). A
    /// schemaless file gets a column for every field in `known` and teaches it its own.
    pub fn new(
        key: String,
        schema: Option<&Arc<Schema>>,
        settings: Arc<FileSettings>,
        known: Option<Arc<Mutex<KnownColumns>>>,
    ) -> Self {
        let row = match schema {
            Some(s) => Row::Connect(Arc::clone(s), columns::row_type_of_schema(s)),
            None => Row::Draft(None),
        };
        Self {
            key,
            records: 0,
            row,
            next_draft: None,
            pending: Vec::new(),
            pending_bytes: 0,
            flat: None,
            writer: None,
            upload: None,
            parts: Vec::new(),
            uploaded: 0,
            encoded: 0,
            settings,
            known: schema.is_none().then_some(known).flatten(),
        }
    }

    /// Whether this file can take a record with this value and schema.
    pub fn admit(&mut self, value: &Value, schema: Option<&Arc<Schema>>) -> Admit {
        let policy = self.settings.policy;
        match (&self.row, schema) {
            (Row::Connect(mine, _), Some(theirs))
                if Arc::ptr_eq(mine, theirs) || **mine == **theirs =>
            {
                Admit::Take
            }
            (Row::Connect(..), _) | (_, Some(_)) => Admit::Roll,
            (Row::Fixed(t), None) => match columns::fit_row(t, value, policy) {
                Fit::Fits => Admit::Take,
                Fit::Grows => Admit::Roll,
                Fit::Conflict(m) => Admit::Reject(m),
            },
            (Row::Draft(draft), None) => {
                let t = match columns::infer_row(value) {
                    Ok(Some(t)) => t,
                    Ok(None) => return Admit::Reject("the value is null".into()),
                    Err(e) => return Admit::Reject(e),
                };
                if draft.is_none() && matches!(&t, DataType::Struct(f) if f.is_empty()) {
                    return Admit::Reject(
                        "the value is an empty object, so a file cannot start with it".into(),
                    );
                }
                let merged = match draft {
                    None => t,
                    Some(d) => match columns::merge(d, &t, policy) {
                        Ok(m) => m,
                        Err(e) => return Admit::Reject(e),
                    },
                };
                if draft.as_ref() != Some(&merged)
                    && self
                        .pending
                        .iter()
                        .any(|v| columns::fit_row(&merged, v, policy) != Fit::Fits)
                {
                    return Admit::Reject("widening the column would change earlier values".into());
                }
                self.next_draft = Some(merged);
                Admit::Take
            }
        }
    }

    /// Adds an admitted record; encodes a chunk when one is full.
    pub fn push(&mut self, value: Value) -> ConnectResult<()> {
        if let (Row::Draft(d), Some(next)) = (&mut self.row, self.next_draft.take()) {
            *d = Some(next);
        }
        self.records += 1;
        if let Some(flat) = &mut self.flat {
            flat.push_value(&value);
        } else {
            self.pending_bytes += columns::approx_size(&value);
            self.pending.push(value);
        }
        self.encode_if_full()
    }

    /// Adds a record given as schemaless JSON text if it fits the file as it is (the fast path:
    /// no decoded value). `false` means nothing was added: decode the record and
    /// [`admit`](Self::admit) it.
    pub fn push_json(&mut self, text: &[u8]) -> ConnectResult<bool> {
        let Some(flat) = &mut self.flat else {
            return Ok(false);
        };
        if !flat.push_json(text) {
            return Ok(false);
        }
        self.records += 1;
        self.encode_if_full()?;
        Ok(true)
    }

    fn encode_if_full(&mut self) -> ConnectResult<()> {
        let rows = self
            .flat
            .as_ref()
            .map_or(self.pending.len(), FlatColumns::rows);
        if rows >= CHUNK_ROWS {
            self.encode_pending()?;
        }
        Ok(())
    }

    fn encode_pending(&mut self) -> ConnectResult<()> {
        if let Some(flat) = &mut self.flat {
            if flat.rows() > 0 {
                let batch = RecordBatch::from(flat.finish());
                self.write(batch)?;
            }
            return Ok(());
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        // The first chunk of a schemaless file fixes its columns; when they are all scalars, the
        // rest of the file goes through the column builders (JSON text or decoded values).
        let fixing = matches!(self.row, Row::Draft(_));
        if let Row::Draft(d) = &self.row {
            let mut t = d
                .clone()
                .unwrap_or_else(|| DataType::Struct(Default::default()));
            // Objects get every known field; a file of bare values keeps its one `value` column.
            if let Some(known) = &self.known
                && self.pending.iter().all(|v| matches!(v, Value::Struct(_)))
            {
                let mut known = known.lock();
                t = known.complete(&t);
                known.learn(&t);
            }
            self.row = Row::Fixed(t);
        }
        let row = match &self.row {
            Row::Fixed(t) | Row::Connect(_, t) => t,
            Row::Draft(_) => unreachable!("fixed above"),
        };
        let refs: Vec<&Value> = self.pending.iter().collect();
        let rows = columns::build_rows(row, &refs).map_err(|e| {
            ConnectError::internal(format!("building columns of {} failed: {e}", self.key))
        })?;
        let batch = RecordBatch::from(rows);
        self.write(batch)?;
        self.pending.clear();
        self.pending_bytes = 0;
        if let (true, Row::Fixed(t)) = (fixing, &self.row) {
            self.flat = FlatColumns::for_row(t, self.settings.policy);
        }
        Ok(())
    }

    fn write(&mut self, batch: RecordBatch) -> ConnectResult<()> {
        let writer = match &mut self.writer {
            Some(w) => w,
            None => self.writer.insert(
                ArrowWriter::try_new(
                    Vec::new(),
                    batch.schema(),
                    Some(self.settings.properties.clone()),
                )
                .map_err(|e| parquet_error(&self.key, e))?,
            ),
        };
        writer
            .write(&batch)
            .map_err(|e| parquet_error(&self.key, e))?;
        if writer.in_progress_size() >= self.settings.row_group_bytes {
            writer.flush().map_err(|e| parquet_error(&self.key, e))?;
        }
        self.encoded = self.uploaded + (writer.in_progress_size() + writer.inner().len()) as u64;
        Ok(())
    }

    /// Memory held: pending records, the row group being encoded and bytes not yet uploaded.
    pub fn memory(&self) -> usize {
        self.pending_bytes
            + self.flat.as_ref().map_or(0, FlatColumns::memory)
            + self
                .writer
                .as_ref()
                .map_or(0, |w| w.memory_size() + w.inner().len())
    }

    /// Encoded size so far (uploaded parts included).
    pub fn encoded_size(&self) -> u64 {
        self.encoded
    }

    /// Uploads a part when a part's worth of encoded bytes is waiting. Nothing is lost on failure:
    /// the bytes stay buffered for the next attempt.
    pub async fn upload_ready_part(&mut self, store: &Store) -> ConnectResult<()> {
        let Some(writer) = &mut self.writer else {
            return Ok(());
        };
        if writer.inner().len() < self.settings.part_size {
            return Ok(());
        }
        let upload = match &self.upload {
            Some(u) => u.clone(),
            None => self
                .upload
                .insert(store.create_multipart(&self.key).await?)
                .clone(),
        };
        let body = Bytes::from(std::mem::take(writer.inner_mut()));
        let number = self.parts.len() as i32 + 1;
        match store
            .upload_part(&self.key, &upload, number, body.clone())
            .await
        {
            Ok(etag) => {
                self.uploaded += body.len() as u64;
                self.parts.push((number, etag));
                tracing::debug!(key = %self.key, part = number, bytes = body.len(), "uploaded part");
                Ok(())
            }
            Err(e) => {
                *writer.inner_mut() = body.to_vec();
                Err(e)
            }
        }
    }

    /// Encodes what is left and the footer.
    pub fn finish(mut self) -> ConnectResult<FinishedFile> {
        self.encode_pending()?;
        let writer = self
            .writer
            .take()
            .ok_or_else(|| ConnectError::internal(format!("{} has no rows", self.key)))?;
        let tail = writer
            .into_inner()
            .map_err(|e| parquet_error(&self.key, e))?;
        Ok(FinishedFile {
            key: self.key,
            upload: self.upload,
            parts: self.parts,
            tail: Bytes::from(tail),
            tail_uploaded: false,
        })
    }

    /// Abandons the file, aborting its multipart upload if one was started.
    pub async fn abort(&mut self, store: &Store) {
        abort_upload(store, &self.key, self.upload.as_deref()).await;
    }
}

async fn abort_upload(store: &Store, key: &str, upload: Option<&str>) {
    if let Some(upload) = upload
        && let Err(e) = store.abort(key, upload).await
    {
        tracing::warn!(
            key,
            "aborting an incomplete upload failed (an S3 lifecycle rule can clean it up): {}",
            e.trace()
        );
    }
}

fn parquet_error(key: &str, e: parquet::errors::ParquetError) -> ConnectError {
    ConnectError::internal(format!("encoding {key} failed: {e}")).with_source(e)
}

/// A file whose bytes are all encoded, waiting to appear in the store.
#[derive(Debug)]
pub struct FinishedFile {
    /// Object key.
    pub key: String,
    upload: Option<String>,
    parts: Vec<Part>,
    tail: Bytes,
    tail_uploaded: bool,
}

impl FinishedFile {
    /// Bytes held in memory.
    pub fn memory(&self) -> usize {
        if self.tail_uploaded {
            0
        } else {
            self.tail.len()
        }
    }

    /// Makes the object appear: one PutObject, or the last part and CompleteMultipartUpload. Safe to
    /// call again after a failure.
    pub async fn publish(&mut self, store: &Store) -> ConnectResult<()> {
        let Some(upload) = self.upload.clone() else {
            return store.put(&self.key, self.tail.clone()).await;
        };
        if !self.tail_uploaded {
            let number = self.parts.len() as i32 + 1;
            let etag = store
                .upload_part(&self.key, &upload, number, self.tail.clone())
                .await?;
            self.parts.push((number, etag));
            self.tail_uploaded = true;
            self.tail = Bytes::new();
        }
        store.complete(&self.key, &upload, &self.parts).await
    }

    /// Abandons the file.
    pub async fn abort(&mut self, store: &Store) {
        abort_upload(store, &self.key, self.upload.as_deref()).await;
    }

    /// The encoded bytes not uploaded yet (a whole small file), for tests that read it back.
    #[cfg(test)]
    pub(crate) fn tail_for_tests(&self) -> Bytes {
        self.tail.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::basic::Compression;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use sluice_connector_api::Struct;

    fn settings(compression: Compression) -> Arc<FileSettings> {
        Arc::new(FileSettings {
            properties: WriterProperties::builder()
                .set_compression(compression)
                .build(),
            row_group_bytes: 1 << 20,
            part_size: 5 << 20,
            policy: TypeConflict::Widen,
        })
    }

    #[test]
    fn every_codec_writes_a_readable_file_with_every_record() {
        for codec in [
            Compression::UNCOMPRESSED,
            Compression::SNAPPY,
            Compression::GZIP(Default::default()),
            Compression::ZSTD(Default::default()),
        ] {
            let mut file = OpenFile::new("k".into(), None, settings(codec), None);
            // More than one chunk, so that rows are encoded before the footer too.
            for i in 0..(CHUNK_ROWS as i64 + 10) {
                let v = Value::Struct(Struct::new().with("id", i).with("name", format!("n{i}")));
                assert_eq!(file.admit(&v, None), Admit::Take);
                file.push(v).unwrap();
            }
            let finished = file.finish().unwrap();
            let reader = SerializedFileReader::new(finished.tail.clone()).unwrap();
            assert_eq!(
                reader.metadata().file_metadata().num_rows(),
                CHUNK_ROWS as i64 + 10
            );
            let used = reader.metadata().row_group(0).column(0).compression();
            assert_eq!(
                std::mem::discriminant(&used),
                std::mem::discriminant(&codec),
                "{codec:?}"
            );
        }
    }

    #[test]
    fn a_new_field_after_the_first_chunk_rolls_the_file() {
        let mut file = OpenFile::new("k".into(), None, settings(Compression::SNAPPY), None);
        for i in 0..CHUNK_ROWS as i64 {
            let v = Value::Struct(Struct::new().with("id", i));
            assert_eq!(file.admit(&v, None), Admit::Take);
            file.push(v).unwrap();
        }
        // Within the first chunk a new field widens the draft; after it, the file must roll.
        let v = Value::Struct(Struct::new().with("id", 1i64).with("extra", "x"));
        assert_eq!(file.admit(&v, None), Admit::Roll);
        let bad = Value::Struct(Struct::new().with("id", "text"));
        assert!(matches!(file.admit(&bad, None), Admit::Reject(_)));
    }
}
