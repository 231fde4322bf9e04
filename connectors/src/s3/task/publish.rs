//! Publishing a sealed file set (commit its start, write its intent over the one this task last
//! saw, make its objects appear), fencing by another writer's intent, reading a partition's intent
//! at assignment, and the topic's known columns in the store. See `DESIGN.md` in this folder.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::json;
use sluice_connector_api::{CommittedOffset, ConnectError, ConnectResult, Offsets, TopicPartition};
use tokio::time::Instant;

use super::super::config::S3SinkConfig;
use super::super::known::KnownColumns;
use super::super::store::{Conditional, Expect};
use super::{Delivery, PartitionState, Running, backoff, retry_backoff};

/// Version tag of an intent object.
const INTENT_TAG: &str = "sluice.s3.intent";
/// How long `open` retries reading intents while the store is unavailable.
const OPEN_RETRY: Duration = Duration::from_secs(60);

/// A closed set's bounds, written before its objects appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intent {
    /// First offset of the set.
    pub start: i64,
    /// Offset after the set's last record.
    pub end: i64,
    /// Wall-clock time the set was opened (the time of a `Wallclock` extractor).
    pub opened_at: i64,
}

impl Intent {
    /// The intent object's content; `writer` names the task instance that wrote it, so that a
    /// writer recognizes its own intent after an answer was lost.
    pub fn to_json(self, writer: &str) -> String {
        json!({INTENT_TAG: 1, "start": self.start, "end": self.end, "opened_at": self.opened_at, "writer": writer})
            .to_string()
    }

    /// Parses an intent object; anything else is not an intent.
    pub fn from_json(text: &[u8]) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_slice(text).ok()?;
        v.get(INTENT_TAG)?;
        Some(Self {
            start: v.get("start")?.as_i64()?,
            end: v.get("end")?.as_i64()?,
            opened_at: v.get("opened_at")?.as_i64()?,
        })
    }
}

/// How a publish attempt ended.
pub(super) enum Published {
    /// Every object of the set is in the store.
    Done,
    /// Another writer's intent is in the store: this task must not publish the set.
    Fenced,
}

impl Running {
    /// Publishes every sealed set that is due.
    pub(super) async fn publish_sealed(&mut self) -> ConnectResult<()> {
        let now = Instant::now();
        let due: Vec<TopicPartition> = self
            .partitions
            .iter()
            .filter(|(_, s)| s.sealed.as_ref().is_some_and(|x| x.retry_at <= now))
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in due {
            self.publish_one(&tp).await?;
        }
        self.resume_if_clear();
        Ok(())
    }

    /// Publishes one partition's sealed set; a retriable failure schedules a retry with back-off
    /// and pauses fetching, anything else fails the task.
    pub(super) async fn publish_one(&mut self, tp: &TopicPartition) -> ConnectResult<()> {
        let result = self.publish(tp).await;
        let state = self.partitions.get_mut(tp).expect("assigned");
        match result {
            Ok(Published::Done) => {
                let sealed = state.sealed.take().expect("due");
                if state.replay.is_some_and(|r| r.start == sealed.intent.start) {
                    state.replay = None;
                }
                tracing::debug!(partition = %tp, start = sealed.intent.start, end = sealed.intent.end, "file set published");
                abort_if_injected();
                // Commit what is now in S3 soon rather than at the next offset flush interval.
                self.ctx.request_commit();
                self.save_known(&tp.topic).await;
                Ok(())
            }
            Ok(Published::Fenced) => {
                let start = state.sealed.as_ref().map(|s| s.intent.start);
                tracing::warn!(partition = %tp, start, "another writer's intent is in the store (this task's partitions moved while it was slow or cut off, or a second connector writes the same prefix): dropping what this task holds of the partition and reading it again from the committed offset");
                let dropped = std::mem::replace(
                    state,
                    PartitionState {
                        fenced: true,
                        ..Default::default()
                    },
                );
                self.discard(dropped).await;
                self.resume_if_clear();
                Ok(())
            }
            Err(e) if e.is_retriable() => {
                let sealed = state.sealed.as_mut().expect("due");
                sealed.attempts += 1;
                let backoff = backoff(&self.config, sealed.attempts);
                sealed.retry_at = Instant::now() + backoff;
                tracing::warn!(partition = %tp, attempt = sealed.attempts, ?backoff, "publishing a file set failed; its data stays buffered and is retried: {}", e.trace());
                self.pause_all();
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Offers waiting records of partitions whose previous set is published.
    pub(super) async fn drain_backlogs(&mut self) -> ConnectResult<()> {
        let ready: Vec<TopicPartition> = self
            .partitions
            .iter()
            .filter(|(_, s)| s.sealed.is_none() && !s.backlog.is_empty())
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in ready {
            let records =
                std::mem::take(&mut self.partitions.get_mut(&tp).expect("assigned").backlog);
            let mut records = records.into_iter();
            while let Some(record) = records.next() {
                self.offer(record, Delivery::FromBacklog).await?;
                let state = self.partitions.get_mut(&tp).expect("assigned");
                if !state.backlog.is_empty() {
                    // Blocked again: keep the rest behind what was just queued.
                    state.backlog.extend(records);
                    break;
                }
            }
        }
        Ok(())
    }

    pub(super) fn resume_if_clear(&mut self) {
        let clear =
            self.part_retry.is_none() && self.partitions.values().all(|s| s.sealed.is_none());
        if self.paused && clear {
            let all: Vec<_> = self.partitions.keys().cloned().collect();
            self.ctx.resume(&all);
            self.paused = false;
        }
    }

    async fn publish(&mut self, tp: &TopicPartition) -> ConnectResult<Published> {
        let state = self.partitions.get_mut(tp).expect("assigned");
        let sealed = state.sealed.as_mut().expect("due");
        if !sealed.intent_committed {
            // The offset first: an intent is only ever read back together with a committed offset
            // equal to its start.
            let start = CommittedOffset {
                offset: sealed.intent.start,
                metadata: String::new(),
            };
            self.ctx
                .commit(BTreeMap::from([(tp.clone(), start)]))
                .await?;
            let key = intent_key(&self.config, &self.ctx.task_id.connector, tp);
            let body = sealed.intent.to_json(&self.writer);
            // Only over the intent this task last saw: a newer owner's intent fences this task.
            let expect = match (&state.intent_tag, self.config.conditional_writes) {
                (_, false) => Expect::Any,
                (Some(tag), true) => Expect::Tag(tag),
                (None, true) => Expect::Absent,
            };
            let written = self.store.put_if(&key, body.clone().into(), expect).await?;
            let tag = match written {
                Conditional::Written(Some(tag)) => Some(tag),
                // The store named no ETag, or refused: is what it holds now this very intent (an
                // earlier attempt landed with its answer lost)? Anything else is another writer's.
                Conditional::Written(None) | Conditional::Refused => {
                    match self.store.get_tagged(&key).await? {
                        Some((now, tag)) if now == body.as_bytes() => tag,
                        _ => return Ok(Published::Fenced),
                    }
                }
            };
            state.intent_tag = tag;
            sealed.intent_committed = true;
        }
        while sealed.published < sealed.files.len() {
            sealed.files[sealed.published].publish(&self.store).await?;
            sealed.published += 1;
        }
        Ok(Published::Done)
    }

    pub(super) async fn retry_due(&mut self) -> ConnectResult<()> {
        if self.paused {
            self.upload_ready_parts().await?;
            self.publish_sealed().await?;
        }
        Ok(())
    }

    pub(super) fn pause_all(&mut self) {
        if !self.paused {
            let all: Vec<_> = self.partitions.keys().cloned().collect();
            self.ctx.pause(&all);
            self.paused = true;
        }
    }

    /// Drops a partition's buffers, aborting the uploads it started; its records are read again
    /// from the committed offset by whoever owns it next.
    pub(super) async fn discard(&mut self, state: PartitionState) {
        if let Some(mut set) = state.open {
            for file in set.files.values_mut() {
                file.abort(&self.store).await;
            }
        }
        if let Some(mut sealed) = state.sealed {
            for file in &mut sealed.files[sealed.published..] {
                file.abort(&self.store).await;
            }
        }
    }

    /// A newly assigned partition's state: its intent (with the ETag later writes expect), to be
    /// replayed when it starts at the committed offset.
    pub(super) async fn read_partition(
        &mut self,
        tp: &TopicPartition,
        committed: Option<&CommittedOffset>,
    ) -> ConnectResult<PartitionState> {
        let key = intent_key(&self.config, &self.ctx.task_id.connector, tp);
        let found = self.get_retrying(&key).await?;
        let intent_tag = found.as_ref().and_then(|(_, tag)| tag.clone());
        let intent = found.and_then(|(body, _)| Intent::from_json(&body));
        let replay = intent.filter(|i| committed.is_some_and(|c| i.start == c.offset));
        if let Some(intent) = replay {
            tracing::info!(partition = %tp, start = intent.start, end = intent.end, "replaying a file set whose objects may exist");
        }
        Ok(PartitionState {
            replay,
            intent_tag,
            ..Default::default()
        })
    }

    /// Reads fenced partitions again from their committed offsets: asks the runtime to rewind
    /// them and ignores their records until the next `put`, which starts at the rewind.
    pub(super) async fn read_fenced_again(&mut self) -> ConnectResult<()> {
        for state in self.partitions.values_mut() {
            state.rewinding = false;
        }
        let fenced: Vec<TopicPartition> = self
            .partitions
            .iter()
            .filter(|(_, s)| s.fenced)
            .map(|(tp, _)| tp.clone())
            .collect();
        if fenced.is_empty() {
            return Ok(());
        }
        let committed = self.ctx.committed(&fenced).await?;
        let mut rewinds = Offsets::new();
        for tp in fenced {
            let Some(at) = committed.get(&tp) else {
                return Err(ConnectError::external(format!(
                    "{tp} has no committed offset although another writer published to it; is a second connector writing to {}?",
                    intent_key(&self.config, &self.ctx.task_id.connector, &tp)
                )));
            };
            let mut state = self.read_partition(&tp, Some(at)).await?;
            state.rewinding = true;
            tracing::info!(partition = %tp, offset = at.offset, "reading the partition again from its committed offset");
            rewinds.insert(tp.clone(), at.offset);
            self.partitions.insert(tp, state);
        }
        self.ctx.reset_offsets(&rewinds);
        Ok(())
    }

    /// An object and its ETag, retrying while the store is unavailable (at assignment).
    async fn get_retrying(
        &mut self,
        key: &str,
    ) -> ConnectResult<Option<(bytes::Bytes, Option<String>)>> {
        let mut retries = retry_backoff(&self.config)
            .with_budget(Some(OPEN_RETRY))
            .retries();
        loop {
            let e = match self.store.get_tagged(key).await {
                Ok(found) => return Ok(found),
                Err(e) if e.is_retriable() => e,
                Err(e) => return Err(e.context(format!("reading {key}"))),
            };
            let Some(delay) = retries.next_delay() else {
                return Err(e.context(format!("reading {key}")));
            };
            tracing::warn!(key, "reading failed; retrying: {}", e.trace());
            tokio::time::sleep(delay).await;
        }
    }

    /// Learns the topic's columns object the first time one of its partitions is assigned.
    pub(super) async fn load_known(&mut self, topic: &str) -> ConnectResult<()> {
        if self.known.contains_key(topic) {
            return Ok(());
        }
        let mut known = KnownColumns::default();
        if let Some((body, _)) = self
            .get_retrying(&columns_key(
                &self.config,
                &self.ctx.task_id.connector,
                topic,
            ))
            .await?
        {
            known.learn_json(&body);
        }
        self.known
            .insert(topic.to_owned(), Arc::new(Mutex::new(known)));
        Ok(())
    }

    /// Writes the topic's columns object when this task learned something since it last did,
    /// merged with what the object holds now. Best effort: a failure is logged and the next
    /// publish tries again.
    async fn save_known(&mut self, topic: &str) {
        let Some(known) = self.known.get(topic).cloned() else {
            return;
        };
        if !known.lock().take_changed() {
            return;
        }
        let key = columns_key(&self.config, &self.ctx.task_id.connector, topic);
        let store = self.store.clone();
        let saved = async {
            if let Some(now) = store.get(&key).await? {
                known.lock().learn_json(&now);
            }
            let body = known.lock().to_json();
            store.put(&key, body.into()).await
        }
        .await;
        if let Err(e) = saved {
            tracing::warn!(
                key,
                "writing the known columns failed; the next publish tries again: {}",
                e.trace()
            );
            known.lock().mark_changed();
        }
    }

    /// Aborts multipart uploads that a crashed predecessor left for these partitions' objects.
    pub(super) async fn abort_stale_uploads(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            let prefix = format!("{}/{}/", self.config.topics_dir, tp.topic);
            let marker = format!("/{}+{}+", tp.topic, tp.partition);
            match self.store.in_progress_uploads(&prefix).await {
                Ok(uploads) => {
                    for (key, id) in uploads.iter().filter(|(k, _)| k.contains(&marker)) {
                        tracing::info!(key, "aborting an upload left by an earlier owner");
                        if let Err(e) = self.store.abort(key, id).await {
                            tracing::warn!(key, "aborting it failed: {}", e.trace());
                        }
                    }
                }
                Err(e) => tracing::debug!(
                    "listing incomplete uploads is not possible here ({}); an S3 lifecycle rule (AbortIncompleteMultipartUpload) cleans them up",
                    e.trace()
                ),
            }
        }
    }
}

/// Test hook of a build with the `testing` feature (never a release build): with
/// `SLUICE_S3_FAULT_ABORT_AFTER_PUBLISH` set, the process aborts right after a file set's objects
/// appear and before its offsets are committed, the one crash point a test cannot reach by timing
/// alone (the commit follows within milliseconds).
#[cfg(feature = "testing")]
fn abort_if_injected() {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *ENABLED.get_or_init(|| std::env::var_os("SLUICE_S3_FAULT_ABORT_AFTER_PUBLISH").is_some()) {
        tracing::error!("fault injection: aborting after a publish, before the commit");
        std::process::abort();
    }
}

#[cfg(not(feature = "testing"))]
fn abort_if_injected() {}

/// `<topics.dir>/_sluice/<connector>/<topic>+<partition>.intent.json`: outside every topic's
/// folder, and `_`-prefixed, which lake engines skip.
pub fn intent_key(config: &S3SinkConfig, connector: &str, tp: &TopicPartition) -> String {
    let prefix = config.key_prefix();
    format!(
        "{prefix}_sluice/{connector}/{}+{}.intent.json",
        tp.topic, tp.partition
    )
}

/// `<topics.dir>/_sluice/<connector>/<topic>.columns.json`: the fields learned of the topic.
pub fn columns_key(config: &S3SinkConfig, connector: &str, topic: &str) -> String {
    let prefix = config.key_prefix();
    format!("{prefix}_sluice/{connector}/{topic}.columns.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intents_round_trip_and_other_json_is_not_an_intent() {
        let i = Intent {
            start: 100,
            end: 250,
            opened_at: 1_700_000_000_000,
        };
        assert_eq!(Intent::from_json(i.to_json("w").as_bytes()), Some(i));
        assert_eq!(Intent::from_json(b""), None);
        assert_eq!(
            Intent::from_json(b"{\"start\":1,\"end\":2,\"opened_at\":3}"),
            None
        );
    }
}
