//! The S3 sink task: Kafka partitions → file sets → objects, exactly once.
//!
//! Each Kafka partition has at most one open *file set*: one Parquet file per directory (encoded
//! partition) for the records from the set's start offset on. Any trigger (`flush.size`,
//! `rotate.interval.ms`, `rotate.schedule.interval.ms`, `rotate.size.bytes`, the memory bound, a
//! schema change, a wall-clock time bucket ending) closes the whole set at one offset `end`.
//!
//! A closed set is published in four steps: (1) commit the partition's consumer offset `start`,
//! (2) write the *intent* `{start, end, opened_at}` to the partition's intent object in the store,
//! (3) make every object appear, (4) let the runtime commit `end`. A worker that restarts or takes
//! the partition over reads the committed offset and the intent: when the intent starts at the
//! committed offset it replays `start..end` into exactly the same objects (same keys, same
//! records), whatever the clock says now; otherwise nothing past the committed offset was ever
//! visible. See `DESIGN.md` in this folder.
//!
//! Invariants this file keeps (DESIGN.md says why they suffice):
//! - `pre_commit` never answers an offset above the first record of a partition that is held only
//!   in memory (its open set, its sealed set, its backlog);
//! - a record below the partition's `admitted` offset was already dealt with and is ignored when
//!   delivered again (a redelivered batch cannot reopen a set below published data);
//! - an intent is written only over the intent this task last saw (a conditional write): a task
//!   that finds another writer's intent drops what it holds of the partition and reads it again
//!   from the committed offset, so two writers never publish different cuts of the same offsets.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sluice_connector_api::backoff::Backoff;
use sluice_connector_api::{
    ConnectData, ConnectError, ConnectResult, ConnectorConfig, Offsets, Props, SinkRecord,
    SinkTask, SinkTaskContext, TopicPartition, Value, async_trait, now_ms,
};
use tokio::time::Instant;

use super::config::{Codec, S3SinkConfig};
use super::file::{Admit, FileSettings, FinishedFile, OpenFile};
use super::known::KnownColumns;
use super::partitioner::{Partitioner, TimestampExtractor, bucket_start, record_time};
use super::store::Store;

mod publish;

pub use publish::{Intent, columns_key, intent_key};

/// Longest wait between upload retries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Records of one Kafka partition from `start` on, one file per directory.
struct FileSet {
    start: i64,
    opened_at: i64,
    /// Record time of the first record, for `rotate.interval.ms`.
    first_time: Option<i64>,
    records: u64,
    files: BTreeMap<String, OpenFile>,
    /// Offset after the last record offered.
    next: i64,
    /// Replay of an intent: the set closes exactly here and nothing else closes it.
    replay_end: Option<i64>,
    /// Wall-clock time at which the set closes (schedule or Wallclock bucket end).
    deadline: Option<i64>,
}

impl FileSet {
    fn memory(&self) -> usize {
        self.files.values().map(OpenFile::memory).sum()
    }
}

/// A closed set waiting for its objects to appear.
struct SealedSet {
    intent: Intent,
    files: Vec<FinishedFile>,
    /// Files already published (from the front).
    published: usize,
    intent_committed: bool,
    attempts: u32,
    retry_at: Instant,
}

#[derive(Default)]
struct PartitionState {
    open: Option<FileSet>,
    sealed: Option<SealedSet>,
    /// An intent found at assignment, replayed by the first set.
    replay: Option<Intent>,
    /// Records that arrived while the previous set could not be published yet, in order.
    backlog: VecDeque<SinkRecord>,
    /// Offset after the last record dealt with (written, skipped, reported or queued): a record
    /// below it that is delivered again is ignored.
    admitted: Option<i64>,
    /// ETag of the partition's intent object as this task last read or wrote it; `None` when
    /// there was none.
    intent_tag: Option<String>,
    /// Another writer's intent was found: everything held was dropped, and the partition is read
    /// again from its committed offset at the next `put`.
    fenced: bool,
    /// A rewind to the committed offset was asked for in the last `put`: records until the next
    /// `put` are from before it, and are ignored.
    rewinding: bool,
}

impl PartitionState {
    /// The first offset held only in memory (open set, sealed set, backlog).
    fn first_held(&self) -> Option<i64> {
        [
            self.open.as_ref().map(|s| s.start),
            self.sealed.as_ref().map(|s| s.intent.start),
            self.backlog.front().map(|r| r.offset),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// Where an offered record comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// Delivered by the runtime now: ignored if already dealt with or from before a rewind.
    FromRuntime,
    /// Out of the partition's backlog: admitted when it was queued.
    FromBacklog,
}

/// Writes Kafka records to S3 (or a local directory) as Parquet.
#[derive(Default)]
pub struct S3SinkTask {
    inner: Option<Running>,
    /// Faults injected into the store (test builds only).
    #[cfg(any(test, feature = "testing"))]
    faults: Option<Arc<super::store::faults::Faults>>,
}

struct Running {
    config: S3SinkConfig,
    store: Store,
    ctx: SinkTaskContext,
    settings: Arc<FileSettings>,
    partitions: BTreeMap<TopicPartition, PartitionState>,
    /// Partitions paused because an upload is waiting for a retry.
    paused: bool,
    /// A part upload failed: when to try again, and how many times it failed in a row.
    part_retry: Option<(Instant, u32)>,
    /// The current record's directory, reused from record to record.
    dir: String,
    /// What is known of each topic's schemaless fields.
    known: BTreeMap<String, Arc<Mutex<KnownColumns>>>,
    /// Names this task instance in the intents it writes.
    writer: String,
}

#[async_trait]
impl SinkTask for S3SinkTask {
    async fn start(&mut self, ctx: SinkTaskContext, props: &Props) -> ConnectResult<()> {
        let config = S3SinkConfig::from_props(props)?;
        let compression = match config.codec {
            Codec::None => parquet::basic::Compression::UNCOMPRESSED,
            Codec::Snappy => parquet::basic::Compression::SNAPPY,
            Codec::Gzip => parquet::basic::Compression::GZIP(Default::default()),
            Codec::Zstd => parquet::basic::Compression::ZSTD(Default::default()),
        };
        let properties = parquet::file::properties::WriterProperties::builder()
            .set_compression(compression)
            .set_created_by(format!("sluice {}", env!("CARGO_PKG_VERSION")))
            // Row groups are closed by encoded size (parquet.row.group.size.bytes), not by rows.
            .set_max_row_group_size(usize::MAX)
            .build();
        let settings = Arc::new(FileSettings {
            properties,
            row_group_bytes: config.row_group_bytes,
            part_size: config.part_size,
            policy: config.type_conflict,
        });
        let store = Store::connect(&config.store).await;
        #[cfg(any(test, feature = "testing"))]
        let store = match &self.faults {
            Some(f) => store.with_faults(Arc::clone(f)),
            None => store,
        };
        let writer = format!("{}/{:016x}", ctx.task_id, rand::random::<u64>());
        self.inner = Some(Running {
            config,
            store,
            ctx,
            settings,
            partitions: BTreeMap::new(),
            paused: false,
            part_retry: None,
            dir: String::new(),
            known: BTreeMap::new(),
            writer,
        });
        Ok(())
    }

    async fn open(&mut self, partitions: &[TopicPartition]) -> ConnectResult<()> {
        let run = self.running()?;
        let committed = run.ctx.committed(partitions).await?;
        for tp in partitions {
            let state = run.read_partition(tp, committed.get(tp)).await?;
            run.partitions.insert(tp.clone(), state);
            run.load_known(&tp.topic).await?;
        }
        run.abort_stale_uploads(partitions).await;
        Ok(())
    }

    async fn put(&mut self, records: Vec<SinkRecord>) -> ConnectResult<()> {
        let run = self.running()?;
        run.read_fenced_again().await?;
        run.retry_due().await?;
        run.close_due_sets(now_ms())?;
        run.drain_backlogs().await?;
        for record in records {
            run.offer(record, Delivery::FromRuntime).await?;
        }
        run.upload_ready_parts().await?;
        run.enforce_memory_bound()?;
        run.publish_sealed().await?;
        run.drain_backlogs().await
    }

    /// Schemaless JSON goes straight into Parquet columns ([`super::flat`]) unless the directory
    /// or the record time comes from a value field.
    fn takes_json_values(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|run| !run.config.reads_value_fields())
    }

    async fn pre_commit(&mut self, offsets: Offsets) -> ConnectResult<Offsets> {
        let run = self.running()?;
        // Offsets past a replayed set's end (records skipped or compacted away) close it.
        for (tp, position) in &offsets {
            let Some(state) = run.partitions.get_mut(tp) else {
                continue;
            };
            match &state.open {
                Some(set) if set.replay_end.is_some_and(|end| *position >= end) => run.seal(tp)?,
                None if state.replay.is_some_and(|i| *position >= i.end) => state.replay = None,
                _ => {}
            }
        }
        run.retry_due().await?;
        run.close_due_sets(now_ms())?;
        run.publish_sealed().await?;
        let mut safe = Offsets::new();
        for (tp, position) in offsets {
            let Some(state) = run.partitions.get(&tp) else {
                continue;
            };
            // The committed offset must stay at the intent's start until its set is published,
            // and a fenced partition is the other writer's to commit.
            if state.sealed.is_some() || state.replay.is_some() || state.fenced || state.rewinding {
                continue;
            }
            // An open set whose records were all skipped holds nothing: the next record opens
            // a set of its own.
            let state = run.partitions.get_mut(&tp).expect("present above");
            if state
                .open
                .as_ref()
                .is_some_and(|s| s.files.is_empty() && s.replay_end.is_none())
            {
                state.open = None;
            }
            // Never past a record held only in memory: close() drops those, and the next owner
            // reads from here.
            safe.insert(tp, state.first_held().map_or(position, |h| h.min(position)));
        }
        Ok(safe)
    }

    async fn close(&mut self, partitions: &[TopicPartition]) -> ConnectResult<()> {
        let run = self.running()?;
        for tp in partitions {
            if let Some(state) = run.partitions.remove(tp) {
                run.discard(state).await;
            }
        }
        Ok(())
    }

    async fn stop(&mut self) -> ConnectResult<()> {
        if let Some(mut run) = self.inner.take() {
            let partitions = std::mem::take(&mut run.partitions);
            for (_, state) in partitions {
                run.discard(state).await;
            }
        }
        Ok(())
    }
}

impl S3SinkTask {
    /// A task whose store has these faults injected (tests of the exactly-once paths).
    #[cfg(any(test, feature = "testing"))]
    pub fn with_faults(faults: Arc<super::store::faults::Faults>) -> Self {
        Self {
            inner: None,
            faults: Some(faults),
        }
    }

    fn running(&mut self) -> ConnectResult<&mut Running> {
        self.inner
            .as_mut()
            .ok_or_else(|| ConnectError::internal("the S3 sink task is not started"))
    }
}

impl Running {
    /// A record whose error policy failed (a dead letter not acknowledged) was not dealt with:
    /// delivered again, it is offered again.
    fn not_dealt_with(&mut self, record: &SinkRecord, error: ConnectError) -> ConnectError {
        if let Some(state) = self.partitions.get_mut(&record.origin) {
            state.admitted = state.admitted.map(|a| a.min(record.offset));
        }
        error
    }

    /// Offers one record to its partition's open set, closing the set first when a trigger says so.
    /// A record the runtime delivered that was already dealt with (delivered again after a failed
    /// `put`) or that is from before a rewind is ignored.
    async fn offer(&mut self, record: SinkRecord, from: Delivery) -> ConnectResult<()> {
        // Borrowed, not cloned: this runs for every record.
        let tp = &record.origin;
        let Some(state) = self.partitions.get_mut(tp) else {
            return Ok(());
        };
        if from == Delivery::FromRuntime {
            let seen = state.admitted.is_some_and(|a| record.offset < a);
            if state.fenced || state.rewinding || seen {
                return Ok(());
            }
            state.admitted = Some(record.offset + 1);
        }
        if state.sealed.is_some() && !self.paused {
            self.publish_one(tp).await?;
        }
        let state = self.partitions.get_mut(tp).expect("present above");
        if state.sealed.is_some() || !state.backlog.is_empty() {
            // One set in flight per partition: later records wait for it, in order.
            state.backlog.push_back(record);
            return Ok(());
        }
        if let Some(set) = &state.open {
            if record.offset < set.next {
                return Ok(()); // Delivered again after a rewind: already in the set.
            }
            let due = match set.replay_end {
                Some(end) => record.offset >= end,
                None => rotate_on_record_time(&self.config, set, &record),
            };
            if due {
                self.seal(tp)?;
            }
        }
        if record.record.value.is_null() {
            if self.config.ignore_null_values {
                self.advance(tp, record.offset);
                return Ok(());
            }
            let err = ConnectError::user("the record value is null (behavior.on.null.values=fail)");
            if let Err(e) = self.ctx.report(&record, err).await {
                return Err(self.not_dealt_with(&record, e));
            }
            self.advance(tp, record.offset);
            return Ok(());
        }
        self.ensure_open(tp, record.offset);
        // The value decoded after the fast path refused the JSON text.
        let mut decoded: Option<ConnectData> = None;
        for attempt in 0..2 {
            let state = self.partitions.get_mut(tp).expect("present above");
            let set = state.open.as_mut().expect("opened above");
            let encoded =
                self.config
                    .partitioner
                    .encode_into(&record, set.opened_at, &mut self.dir);
            match encoded {
                Ok(()) => {}
                Err(e) => {
                    let reported = self
                        .ctx
                        .report(&record, e.context("choosing the directory"))
                        .await;
                    if let Err(e) = reported {
                        return Err(self.not_dealt_with(&record, e));
                    }
                    self.advance(tp, record.offset);
                    return Ok(());
                }
            };
            // Look up by the reused buffer; a String is allocated only for a new file.
            if !set.files.contains_key(self.dir.as_str()) {
                let key = object_key(&self.config, &self.dir, tp, record.offset);
                let schema = record.record.value_schema.as_ref();
                let known = self.known.get(&tp.topic).cloned();
                let file = OpenFile::new(key, schema, Arc::clone(&self.settings), known);
                set.files.insert(self.dir.clone(), file);
            }
            let Some(file) = set.files.get_mut(self.dir.as_str()) else {
                return Err(ConnectError::internal("a file inserted above is missing"));
            };
            // The fast path: JSON text straight into the file's columns.
            let taken = match &record.record.value {
                Value::Bytes(text) if record.value_is_json && decoded.is_none() => {
                    file.push_json(text)?
                }
                _ => false,
            };
            if !taken && record.value_is_json && decoded.is_none() {
                // Not taken as it is: decode it as the converter would and decide as for any
                // decoded value (roll, reject), or the converter's error policy deals with it.
                let empty = file.records == 0;
                let value = match self.ctx.decode_value(&record).await {
                    Ok(value) => value,
                    Err(e) => return Err(self.not_dealt_with(&record, e)),
                };
                match value {
                    Some(data) => decoded = Some(data),
                    None => {
                        if empty {
                            set.files.remove(self.dir.as_str());
                        }
                        self.advance(tp, record.offset);
                        return Ok(());
                    }
                }
            }
            let admit = match &decoded {
                _ if taken => Admit::Take,
                Some((schema, value)) => file.admit(value, schema.as_ref()),
                None => file.admit(&record.record.value, record.record.value_schema.as_ref()),
            };
            match admit {
                Admit::Take => {
                    // Only rotate.interval.ms needs the first record's time.
                    if set.first_time.is_none() && self.config.rotate_interval_ms.is_some() {
                        set.first_time = time_of(&self.config, &record, set.opened_at);
                    }
                    if !taken {
                        file.push(match decoded.take() {
                            Some((_, value)) => value,
                            None => record.record.value,
                        })?;
                    }
                    set.records += 1;
                    set.next = record.offset + 1;
                    let full = set.replay_end.is_none()
                        && (set.records >= self.config.flush_size
                            || file.encoded_size() >= self.config.rotate_size_bytes);
                    if full {
                        self.seal(tp)?;
                    }
                    return Ok(());
                }
                Admit::Roll if attempt == 0 => {
                    if set.replay_end.is_some() {
                        tracing::error!(partition = %tp, offset = record.offset, "a schema change inside a replayed file set: the set closes early and may duplicate records");
                    }
                    self.seal(tp)?;
                    if !self.paused {
                        self.publish_one(tp).await?;
                    }
                    let state = self.partitions.get_mut(tp).expect("present above");
                    if state.sealed.is_some() {
                        state.backlog.push_back(record);
                        return Ok(());
                    }
                    self.ensure_open(tp, record.offset);
                }
                Admit::Roll => {
                    return Err(ConnectError::internal(format!(
                        "a new file refused record {} of {tp}",
                        record.offset
                    )));
                }
                Admit::Reject(why) => {
                    if file.records == 0 {
                        // The file was opened for this record: it must not stay behind empty.
                        set.files.remove(self.dir.as_str());
                    }
                    let err =
                        ConnectError::user(format!("cannot convert the value to Parquet: {why}"));
                    if let Err(e) = self.ctx.report(&record, err).await {
                        return Err(self.not_dealt_with(&record, e));
                    }
                    self.advance(tp, record.offset);
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Marks a record as handled without writing it (skipped by policy).
    fn advance(&mut self, tp: &TopicPartition, offset: i64) {
        if let Some(set) = self.partitions.get_mut(tp).and_then(|s| s.open.as_mut()) {
            set.next = set.next.max(offset + 1);
        }
    }

    fn ensure_open(&mut self, tp: &TopicPartition, offset: i64) {
        let state = self.partitions.get_mut(tp).expect("assigned");
        if state.open.is_some() {
            return;
        }
        let now = now_ms();
        if state.replay.is_some_and(|i| offset >= i.end) {
            // Every record of the intent is gone (retention, compaction, skipped): nothing of it
            // can be rebuilt, and nothing needs to be.
            state.replay = None;
        }
        let replay = state.replay.filter(|i| i.start <= offset && offset < i.end);
        let opened_at = replay.map_or(now, |i| i.opened_at);
        let deadline = wall_clock_deadline(&self.config, opened_at);
        state.open = Some(FileSet {
            start: offset,
            opened_at,
            first_time: None,
            records: 0,
            files: BTreeMap::new(),
            next: offset,
            replay_end: replay.map(|i| i.end),
            deadline: if replay.is_some() { None } else { deadline },
        });
    }

    /// Closes the partition's open set: encodes every file's rest and queues it for publishing.
    fn seal(&mut self, tp: &TopicPartition) -> ConnectResult<()> {
        let state = self.partitions.get_mut(tp).expect("assigned");
        if state.sealed.is_some() {
            // One set in flight per partition: the open one waits (partitions are paused).
            return Ok(());
        }
        let Some(set) = state.open.take() else {
            return Ok(());
        };
        if set.files.is_empty() {
            // Only skipped records: nothing to publish, and nothing to replay.
            if set.replay_end.is_some() {
                state.replay = None;
            }
            return Ok(());
        }
        let end = set.replay_end.unwrap_or(set.next);
        let files = set
            .files
            .into_values()
            .map(OpenFile::finish)
            .collect::<ConnectResult<Vec<_>>>()?;
        tracing::debug!(partition = %tp, start = set.start, end, files = files.len(), records = set.records, "file set closed");
        state.sealed = Some(SealedSet {
            intent: Intent {
                start: set.start,
                end,
                opened_at: set.opened_at,
            },
            files,
            published: 0,
            intent_committed: false,
            attempts: 0,
            retry_at: Instant::now(),
        });
        Ok(())
    }

    /// Closes sets whose wall-clock deadline passed (scheduled rotation, Wallclock buckets), even
    /// when no record arrived.
    fn close_due_sets(&mut self, now: i64) -> ConnectResult<()> {
        let due: Vec<TopicPartition> = self
            .partitions
            .iter()
            .filter(|(_, s)| {
                s.open
                    .as_ref()
                    .is_some_and(|set| set.deadline.is_some_and(|d| now >= d))
            })
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in due {
            self.seal(&tp)?;
        }
        Ok(())
    }

    /// Closes the sets holding the most memory until the task is under `buffer.max.bytes`.
    fn enforce_memory_bound(&mut self) -> ConnectResult<()> {
        loop {
            let used: usize = self
                .partitions
                .values()
                .map(|s| {
                    s.open.as_ref().map_or(0, FileSet::memory)
                        + s.sealed
                            .as_ref()
                            .map_or(0, |x| x.files.iter().map(FinishedFile::memory).sum())
                })
                .sum();
            if used as u64 <= self.config.buffer_max_bytes {
                return Ok(());
            }
            let largest = self
                .partitions
                .iter()
                .filter(|(_, s)| {
                    s.sealed.is_none()
                        && s.open.as_ref().is_some_and(|set| set.replay_end.is_none())
                })
                .max_by_key(|(_, s)| s.open.as_ref().map_or(0, FileSet::memory))
                .map(|(tp, _)| tp.clone());
            match largest {
                Some(tp) => {
                    tracing::debug!(partition = %tp, used, "memory bound reached: closing the largest file set early");
                    self.seal(&tp)?;
                }
                None => {
                    // Everything left is waiting for uploads: stop fetching until they succeed.
                    self.pause_all();
                    return Ok(());
                }
            }
        }
    }

    async fn upload_ready_parts(&mut self) -> ConnectResult<()> {
        if self.part_retry.is_some_and(|(at, _)| Instant::now() < at) {
            return Ok(());
        }
        let mut failure = None;
        for state in self.partitions.values_mut() {
            if let Some(set) = &mut state.open {
                for file in set.files.values_mut() {
                    if let Err(e) = file.upload_ready_part(&self.store).await {
                        failure = Some(e);
                    }
                }
            }
        }
        match failure {
            Some(e) if e.is_retriable() => {
                let attempts = self.part_retry.map_or(1, |(_, n)| n + 1);
                let backoff = backoff(&self.config, attempts);
                self.part_retry = Some((Instant::now() + backoff, attempts));
                tracing::warn!(
                    attempt = attempts,
                    ?backoff,
                    "uploading a part failed; it stays buffered and is retried: {}",
                    e.trace()
                );
                self.pause_all();
                Ok(())
            }
            Some(e) => Err(e),
            None => {
                self.part_retry = None;
                self.resume_if_clear();
                Ok(())
            }
        }
    }
}

/// When a file set opened at `opened_at` closes by the wall clock: at the next multiple of
/// `rotate.schedule.interval.ms` in `timezone` (whatever the partitioner), or at the end of its
/// directory's time bucket for a time-based partitioner on `Wallclock` time; `None` when neither.
fn wall_clock_deadline(config: &S3SinkConfig, opened_at: i64) -> Option<i64> {
    let schedule = config
        .rotate_schedule_interval_ms
        .map(|period| bucket_start(opened_at, period, &config.timezone) + period);
    let bucket = match &config.partitioner {
        Partitioner::Time {
            duration_ms,
            extractor: TimestampExtractor::Wallclock,
            timezone,
            ..
        } => Some(bucket_start(opened_at, *duration_ms, timezone) + duration_ms),
        _ => None,
    };
    match (schedule, bucket) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A record's time as `timestamp.extractor` says (for `rotate.interval.ms`).
fn time_of(config: &S3SinkConfig, record: &SinkRecord, opened_at: i64) -> Option<i64> {
    record_time(&config.timestamp_extractor, record, opened_at).ok()
}

/// `rotate.interval.ms`: the record's time is at least the interval past the set's first record.
fn rotate_on_record_time(config: &S3SinkConfig, set: &FileSet, record: &SinkRecord) -> bool {
    let (Some(interval), Some(first)) = (config.rotate_interval_ms, set.first_time) else {
        return false;
    };
    time_of(config, record, set.opened_at).is_some_and(|t| t - first >= interval)
}

/// The sink's back-off: jittered, from `s3.retry.backoff.ms` doubling up to 30 s.
fn retry_backoff(config: &S3SinkConfig) -> Backoff {
    Backoff::new(Duration::from_millis(config.retry_backoff_ms), MAX_BACKOFF)
}

/// The wait before retry number `attempts` (from 1) of an upload or publish.
fn backoff(config: &S3SinkConfig, attempts: u32) -> Duration {
    retry_backoff(config).delay(attempts.saturating_sub(1))
}

/// `<topics.dir>/<topic>/<directory>/<topic>+<partition>+<zero-padded start offset>.parquet`.
pub fn object_key(config: &S3SinkConfig, dir: &str, tp: &TopicPartition, start: i64) -> String {
    let width = config.offset_pad_width;
    let prefix = config.key_prefix();
    format!(
        "{prefix}{}/{dir}/{}+{}+{start:0width$}.parquet",
        tp.topic, tp.topic, tp.partition
    )
}

#[cfg(test)]
mod tests {
    use sluice_connector_api::ConnectorConfig;
    use sluice_connector_api::testing::props;

    use super::*;

    /// Issue 14: the schedule of `rotate.schedule.interval.ms` is in `timezone`, also with the
    /// default partitioner.
    #[test]
    fn the_rotation_schedule_follows_the_timezone_with_any_partitioner() {
        let config = S3SinkConfig::from_props(&props(&[
            ("store.url", "file:///tmp/unused"),
            ("rotate.schedule.interval.ms", "86400000"),
            ("timezone", "Asia/Kolkata"),
        ]))
        .expect("valid");
        // 2026-01-01T00:00:00Z is 05:30 in Kolkata: the next local midnight is 18:30 UTC.
        let opened_at = 1_767_225_600_000;
        assert_eq!(
            wall_clock_deadline(&config, opened_at),
            Some(opened_at + 18 * 3_600_000 + 30 * 60_000)
        );
    }
}
