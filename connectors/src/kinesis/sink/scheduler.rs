//! Which records go into the next `PutRecords` call, so that records of one partition key reach
//! Kinesis in Kafka order whatever fails and however many calls are in flight.
//!
//! The rule: **a partition key has at most one record outside its queue**, the key's *head*: in the
//! open batch, in a closed batch, in a call in flight, or waiting for a retry. The records behind
//! it wait in the key's queue, in the order they were offered, and the next one is staged only when
//! the head is done: accepted by Kinesis, or dealt with by the error policy. So no call ever holds
//! two records of one key (Kinesis does not keep the order of one call's records when some of them
//! fail), no two calls in flight hold the same key, and a refused record is retried before anything
//! that came after it under its key. Records of different keys are independent and fill calls
//! freely, which is what Kinesis's shards need anyway.
//!
//! The cost is one round trip per record of a hot key; spread keys (the default `key` source with
//! keyed records, `field:` or `random`) keep calls full. `DESIGN.md` in the parent folder has the
//! whole argument.
//!
//! Pure state, no I/O: the dispatcher feeds it records and call outcomes.

use std::collections::hash_map::Entry as Slot;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustc_hash::{FxHashMap, FxHashSet};
use sluice_connector_api::backoff::Backoff;
use sluice_connector_api::batch::{Batch, BatchLimits, Batcher, CommitTracker};
use sluice_connector_api::{ConnectError, Offsets, TopicPartition};

/// One record on its way to Kinesis.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Where it came from in Kafka.
    pub origin: TopicPartition,
    /// Its offset there.
    pub offset: i64,
    /// Its partition key.
    pub key: Arc<str>,
    /// Its data.
    pub data: Vec<u8>,
    /// Times Kinesis refused it (or the call carrying it failed).
    pub attempts: u32,
    /// When Kinesis first refused it, for the retry budget.
    pub first_refused: Option<Instant>,
}

impl Entry {
    /// A record not sent yet.
    pub fn new(origin: TopicPartition, offset: i64, key: Arc<str>, data: Vec<u8>) -> Self {
        Self {
            origin,
            offset,
            key,
            data,
            attempts: 0,
            first_refused: None,
        }
    }

    /// What it counts against Kinesis's limits: data and partition key.
    pub fn size(&self) -> usize {
        self.data.len() + self.key.len()
    }
}

/// What became of one record of a call.
#[derive(Debug)]
pub enum Outcome {
    /// Kinesis stored it.
    Accepted,
    /// Kinesis refused it for now (throttling, an internal failure): retried within the budget.
    Refused(ConnectError),
    /// The whole call failed in a way worth retrying (a network failure, a 5xx): retried for as
    /// long as it takes, as an outage, not counted against the record's budget.
    Unsent(ConnectError),
    /// Kinesis refused it for good: the error policy decides.
    Failed(ConnectError),
}

/// A record for the error policy, with the reason.
pub type Rejected = (Entry, ConnectError);

/// The records of one task between `put` and Kinesis's acknowledgement.
pub struct Scheduler {
    /// Records waiting behind their key's head, per key, in offer order.
    waiting: FxHashMap<Arc<str>, VecDeque<Entry>>,
    /// Keys with a head out of their queue.
    busy: FxHashSet<Arc<str>>,
    batcher: Batcher<Entry>,
    /// Batches closed by count or bytes, not sent yet.
    closed: VecDeque<Batch<Entry>>,
    /// Refused heads, by when they are due (and a sequence number, for ties).
    retries: BTreeMap<(Instant, u64), Entry>,
    sequence: u64,
    tracker: CommitTracker,
    /// Partitions revoked since their records were offered: what comes back of them is dropped.
    revoked: HashSet<TopicPartition>,
    bytes: usize,
    backoff: Backoff,
    retry_timeout: Option<Duration>,
}

impl Scheduler {
    /// An empty scheduler.
    pub fn new(limits: BatchLimits, backoff: Backoff, retry_timeout: Option<Duration>) -> Self {
        Self {
            waiting: FxHashMap::default(),
            busy: FxHashSet::default(),
            batcher: Batcher::new(limits),
            closed: VecDeque::new(),
            retries: BTreeMap::new(),
            sequence: 0,
            tracker: CommitTracker::default(),
            revoked: HashSet::new(),
            bytes: 0,
            backoff,
            retry_timeout,
        }
    }

    /// Takes a record delivered by the runtime (records of one partition in offset order).
    pub fn offer(&mut self, entry: Entry) {
        if !self.revoked.is_empty() {
            self.revoked.remove(&entry.origin);
        }
        self.tracker.track(&entry.origin, entry.offset);
        self.bytes += entry.size();
        if self.busy.insert(Arc::clone(&entry.key)) {
            self.stage(entry);
        } else {
            self.waiting
                .entry(Arc::clone(&entry.key))
                .or_default()
                .push_back(entry);
        }
    }

    /// Puts a key's head into the open batch.
    fn stage(&mut self, entry: Entry) {
        let size = entry.size();
        let (origin, offset) = (entry.origin.clone(), entry.offset);
        match self.batcher.push(entry, size, &origin, offset) {
            Ok(Some(full)) => self.closed.push_back(full),
            Ok(None) => {}
            // The configuration keeps kinesis.batch.max.bytes at or above the 1 MiB record limit,
            // and the task checks that limit before offering: a record over it cannot get here.
            // Should it, it is sent alone rather than lost.
            Err(over) => {
                let mut alone = Batcher::new(BatchLimits {
                    max_records: 1,
                    max_bytes: over.bytes,
                    linger: Duration::ZERO,
                });
                if let Ok(Some(batch)) = alone.push(over.item, over.bytes, &origin, offset) {
                    self.closed.push_back(batch);
                }
            }
        }
    }

    /// The next call to send: a full batch, else the open batch once its linger ended. Refused
    /// records that came due join the open batch first (and linger with it: a call carrying only
    /// retries would spend a round trip on a few records).
    pub fn next_batch(&mut self, now: Instant) -> Option<Batch<Entry>> {
        while let Some(entry) = self.retries.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let entry = entry.remove();
            self.stage(entry);
        }
        self.closed
            .pop_front()
            .or_else(|| self.batcher.take_if_lingered(now))
    }

    /// When [`next_batch`](Self::next_batch) may have something new without another record
    /// arriving: now when a batch is closed, else the open batch's linger or the first retry.
    pub fn deadline(&self, now: Instant) -> Option<Instant> {
        if !self.closed.is_empty() {
            return Some(now);
        }
        let retry = self.retries.keys().next().map(|(at, _)| *at);
        [self.batcher.deadline(), retry].into_iter().flatten().min()
    }

    /// Records the outcomes of a call (`outcomes` in the order of `batch.items`). Returns the
    /// records that go to the error policy: refused for longer than the budget, or failed for
    /// good. Their keys stay busy until [`dealt_with`](Self::dealt_with).
    pub fn complete(
        &mut self,
        batch: Batch<Entry>,
        outcomes: Vec<Outcome>,
        now: Instant,
    ) -> Vec<Rejected> {
        let mut rejected = Vec::new();
        for (mut entry, outcome) in batch.items.into_iter().zip(outcomes) {
            if !self.revoked.is_empty() && self.revoked.contains(&entry.origin) {
                // The next owner reads it again from the committed offset.
                self.finish(entry);
                continue;
            }
            match outcome {
                Outcome::Accepted => self.finish(entry),
                Outcome::Failed(error) => rejected.push((entry, error)),
                Outcome::Unsent(_) => self.retry_later(entry, now),
                Outcome::Refused(error) => {
                    let first = *entry.first_refused.get_or_insert(now);
                    let spent = self
                        .retry_timeout
                        .is_some_and(|budget| now.duration_since(first) >= budget);
                    if spent {
                        let error = ConnectError::new(
                            error.fault(),
                            false,
                            format!(
                                "Kinesis refused the record {} times over {:?} \
                                 (errors.retry.timeout): {}",
                                entry.attempts + 1,
                                now.duration_since(first),
                                error.message()
                            ),
                        );
                        rejected.push((entry, error));
                    } else {
                        self.retry_later(entry, now);
                    }
                }
            }
        }
        rejected
    }

    fn retry_later(&mut self, mut entry: Entry, now: Instant) {
        let delay = self.backoff.delay(entry.attempts);
        entry.attempts += 1;
        self.sequence += 1;
        self.retries.insert((now + delay, self.sequence), entry);
    }

    /// A rejected record was dealt with by the error policy: its key's next record may go.
    pub fn dealt_with(&mut self, entry: Entry) {
        self.finish(entry);
    }

    fn finish(&mut self, entry: Entry) {
        self.tracker.done(&entry.origin, entry.offset);
        self.bytes -= entry.size();
        self.release(&entry.key);
    }

    /// The key's head is done: its next record, if any, becomes the head.
    fn release(&mut self, key: &Arc<str>) {
        let next = match self.waiting.entry(Arc::clone(key)) {
            Slot::Occupied(mut queue) => {
                let next = queue.get_mut().pop_front();
                if queue.get().is_empty() {
                    queue.remove();
                }
                next
            }
            Slot::Vacant(_) => None,
        };
        match next {
            Some(next) => self.stage(next),
            None => {
                self.busy.remove(key);
            }
        }
    }

    /// Drops what is held of revoked partitions (not what is in flight: its outcomes are dropped
    /// when they come back).
    pub fn forget(&mut self, partitions: &[TopicPartition]) {
        self.revoked.extend(partitions.iter().cloned());
        self.tracker.forget(partitions);
        let gone = |e: &Entry| partitions.contains(&e.origin);
        for queue in self.waiting.values_mut() {
            queue.retain(|e| {
                let drop = gone(e);
                if drop {
                    self.bytes -= e.size();
                }
                !drop
            });
        }
        self.waiting.retain(|_, q| !q.is_empty());
        let mut heads: Vec<Entry> = self.closed.drain(..).flat_map(|b| b.items).collect();
        heads.extend(self.batcher.take().into_iter().flat_map(|b| b.items));
        let retries = std::mem::take(&mut self.retries);
        for (at, entry) in retries {
            if gone(&entry) {
                heads.push(entry);
            } else {
                self.retries.insert(at, entry);
            }
        }
        for head in heads {
            if gone(&head) {
                self.bytes -= head.size();
                self.release(&head.key);
            } else if head.attempts > 0 {
                self.retry_later(head, Instant::now());
            } else {
                self.stage(head);
            }
        }
    }

    /// For `pre_commit`: per partition, the first offset not done yet.
    pub fn safe_offsets(&self, current: &Offsets) -> Offsets {
        self.tracker.safe_offsets(current)
    }

    /// Bytes of every record held, wherever it is.
    pub fn held_bytes(&self) -> usize {
        self.bytes
    }

    /// Records held, wherever they are.
    pub fn held_records(&self) -> usize {
        self.tracker.pending()
    }
}

#[cfg(test)]
mod tests;
