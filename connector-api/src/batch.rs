//! Batches for sinks that send to an external API (Kinesis `PutRecords`, Lambda `Invoke`), and
//! the offsets that are safe to commit while batches are in flight.
//!
//! Guarantees:
//! - [`Batcher`] closes a batch before it would exceed `max_records` or `max_bytes`, and once its
//!   oldest item has waited `linger`; an item that is over `max_bytes` by itself is handed back
//!   ([`Oversized`]) for the connector's error policy, never truncated and never silently dropped.
//! - [`CommitTracker`] answers, for `SinkTask::pre_commit`, an offset per partition below which
//!   every record is done (sent, or dealt with by the error policy), however batches complete: out
//!   of order, several in flight, some retried. A record still in a batch is never committed past.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use sluice_connector_api::batch::{BatchLimits, Batcher, CommitTracker};
//! use sluice_connector_api::{Offsets, TopicPartition};
//!
//! let limits = BatchLimits { max_records: 2, max_bytes: 1024, linger: Duration::from_millis(5) };
//! let mut batcher = Batcher::new(limits);
//! let mut tracker = CommitTracker::default();
//! let tp = TopicPartition::new("features", 0);
//! let mut full = Vec::new();
//! for offset in 0..3 {
//!     tracker.track(&tp, offset);
//!     full.extend(batcher.push(format!("r{offset}"), 10, &tp, offset).expect("fits"));
//! }
//! assert_eq!(full.len(), 1); // [r0, r1]; r2 waits for company or its linger
//! let current = Offsets::from([(tp.clone(), 3)]);
//! assert_eq!(tracker.safe_offsets(&current)[&tp], 0); // nothing sent yet
//! tracker.complete(&full[0]);
//! assert_eq!(tracker.safe_offsets(&current)[&tp], 2); // r2 is still in the open batch
//! let rest = batcher.take_if_lingered(Instant::now() + Duration::from_secs(1)).expect("lingered");
//! tracker.complete(&rest);
//! assert_eq!(tracker.safe_offsets(&current)[&tp], 3);
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::{Offsets, TopicPartition};

/// When a batch closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most items in one batch (Kinesis: 500; Lambda: `aws.lambda.batch.size`).
    pub max_records: usize,
    /// Most bytes in one batch, as the connector counts them (Kinesis: 5 MiB; Lambda: its payload
    /// limit less the envelope).
    pub max_bytes: usize,
    /// Longest time the oldest item waits for the batch to fill.
    pub linger: Duration,
}

/// A closed batch: its items in the order pushed, and where each came from in Kafka.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch<T> {
    /// The items.
    pub items: Vec<T>,
    /// Their total size as pushed.
    pub bytes: usize,
    /// Each item's partition and offset, in the same order as `items`.
    pub positions: Vec<(TopicPartition, i64)>,
    /// Each item's size, in the same order.
    sizes: Vec<usize>,
}

impl<T> Batch<T> {
    /// Splits the batch into its first half and the rest, each keeping its items' order and
    /// positions (a service refused the batch as too large). A batch of one item gives it back
    /// as `Err`.
    pub fn split(mut self) -> Result<(Batch<T>, Batch<T>), Batch<T>> {
        if self.items.len() < 2 {
            return Err(self);
        }
        let at = self.items.len() / 2;
        let sizes = self.sizes.split_off(at);
        let back = Batch {
            bytes: sizes.iter().sum(),
            items: self.items.split_off(at),
            positions: self.positions.split_off(at),
            sizes,
        };
        self.bytes -= back.bytes;
        Ok((self, back))
    }

    /// Keeps only the items whose partition `keep` accepts (the others were revoked).
    pub fn retain(&mut self, keep: impl Fn(&TopicPartition) -> bool) {
        let items = std::mem::take(&mut self.items);
        let positions = std::mem::take(&mut self.positions);
        let sizes = std::mem::take(&mut self.sizes);
        self.bytes = 0;
        for ((item, position), size) in items.into_iter().zip(positions).zip(sizes) {
            if keep(&position.0) {
                self.items.push(item);
                self.positions.push(position);
                self.sizes.push(size);
                self.bytes += size;
            }
        }
    }
}

/// An item larger than `max_bytes` on its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Oversized<T> {
    /// The item, given back.
    pub item: T,
    /// Its size.
    pub bytes: usize,
    /// The limit it is over.
    pub max_bytes: usize,
}

/// Gathers items into batches by count, bytes and age.
#[derive(Debug)]
pub struct Batcher<T> {
    limits: BatchLimits,
    open: Batch<T>,
    opened_at: Option<Instant>,
}

impl<T> Batcher<T> {
    /// An empty batcher.
    pub fn new(limits: BatchLimits) -> Self {
        Self {
            limits,
            open: empty(),
            opened_at: None,
        }
    }

    /// Adds an item of `bytes` that came from `offset` of `tp`. Returns the batch that closed to
    /// make room for it or that it filled (never both: a batch with room for another record
    /// cannot be full with one), or gives the item back when it is over `max_bytes` by itself.
    pub fn push(
        &mut self,
        item: T,
        bytes: usize,
        tp: &TopicPartition,
        offset: i64,
    ) -> Result<Option<Batch<T>>, Oversized<T>> {
        if bytes > self.limits.max_bytes {
            return Err(Oversized {
                item,
                bytes,
                max_bytes: self.limits.max_bytes,
            });
        }
        let mut closed = None;
        if !self.open.items.is_empty() && self.open.bytes + bytes > self.limits.max_bytes {
            closed = self.take();
        }
        if self.open.items.is_empty() {
            self.opened_at = Some(Instant::now());
        }
        self.open.items.push(item);
        self.open.bytes += bytes;
        self.open.positions.push((tp.clone(), offset));
        self.open.sizes.push(bytes);
        if closed.is_none() && self.open.items.len() >= self.limits.max_records.max(1) {
            closed = self.take();
        }
        Ok(closed)
    }

    /// When the open batch's linger ends; `None` when it is empty.
    pub fn deadline(&self) -> Option<Instant> {
        self.opened_at.map(|at| at + self.limits.linger)
    }

    /// The open batch, if its linger has ended by `now`.
    pub fn take_if_lingered(&mut self, now: Instant) -> Option<Batch<T>> {
        if self.deadline().is_some_and(|d| d <= now) {
            self.take()
        } else {
            None
        }
    }

    /// The open batch whatever its age (at a flush, a commit or a revocation); `None` when empty.
    pub fn take(&mut self) -> Option<Batch<T>> {
        self.opened_at = None;
        let batch = std::mem::replace(&mut self.open, empty());
        (!batch.items.is_empty()).then_some(batch)
    }

    /// Drops the items of these partitions from the open batch (they were revoked: the next
    /// owner reads them again from the committed offset).
    pub fn forget(&mut self, partitions: &[TopicPartition]) {
        self.open.retain(|tp| !partitions.contains(tp));
        if self.open.items.is_empty() {
            self.opened_at = None;
        }
    }

    /// Bytes of the items waiting in the open batch.
    pub fn held_bytes(&self) -> usize {
        self.open.bytes
    }

    /// Whether no item is waiting.
    pub fn is_empty(&self) -> bool {
        self.open.items.is_empty()
    }
}

fn empty<T>() -> Batch<T> {
    Batch {
        items: Vec::new(),
        bytes: 0,
        positions: Vec::new(),
        sizes: Vec::new(),
    }
}

/// Which delivered records are not done yet, per partition.
#[derive(Debug, Default, Clone)]
pub struct CommitTracker {
    pending: BTreeMap<TopicPartition, BTreeSet<i64>>,
}

impl CommitTracker {
    /// The record at `offset` of `tp` was delivered and is not done yet.
    pub fn track(&mut self, tp: &TopicPartition, offset: i64) {
        // Not `entry(tp.clone())`: that copies the topic name for every record.
        match self.pending.get_mut(tp) {
            Some(set) => {
                set.insert(offset);
            }
            None => {
                self.pending.insert(tp.clone(), BTreeSet::from([offset]));
            }
        }
    }

    /// The record at `offset` of `tp` is done (sent, or dealt with by the error policy).
    pub fn done(&mut self, tp: &TopicPartition, offset: i64) {
        if let Some(set) = self.pending.get_mut(tp) {
            set.remove(&offset);
            if set.is_empty() {
                self.pending.remove(tp);
            }
        }
    }

    /// Every record of `batch` is done.
    pub fn complete<T>(&mut self, batch: &Batch<T>) {
        for (tp, offset) in &batch.positions {
            self.done(tp, *offset);
        }
    }

    /// Forgets revoked partitions.
    pub fn forget(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            self.pending.remove(tp);
        }
    }

    /// For `pre_commit`: for each partition of `current` (the runtime's position, after every
    /// record delivered), the lowest offset not done yet, or `current`'s when all are done.
    pub fn safe_offsets(&self, current: &Offsets) -> Offsets {
        current
            .iter()
            .map(|(tp, next)| {
                let first_pending = self.pending.get(tp).and_then(|s| s.first().copied());
                (tp.clone(), first_pending.map_or(*next, |p| p.min(*next)))
            })
            .collect()
    }

    /// How many records are not done yet.
    pub fn pending(&self) -> usize {
        self.pending.values().map(BTreeSet::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_batch_splits_in_order_and_keeps_its_sizes() {
        let mut batcher = Batcher::new(limits(10, 1000));
        for offset in 0..5 {
            let tp = tp((offset % 2) as i32);
            assert!(
                batcher
                    .push(offset, 10 + offset as usize, &tp, offset)
                    .unwrap()
                    .is_none()
            );
        }
        let batch = batcher.take().unwrap();
        let (front, back) = batch.split().unwrap();
        assert_eq!(
            (front.items.clone(), back.items.clone()),
            (vec![0, 1], vec![2, 3, 4])
        );
        assert_eq!((front.bytes, back.bytes), (21, 39));
        assert_eq!(back.positions[0], (tp(0), 2));
        let (one, _) = front.split().unwrap();
        assert!(one.split().is_err());
        let mut mixed = back;
        mixed.retain(|t| t.partition == 0);
        assert_eq!((mixed.items, mixed.bytes), (vec![2, 4], 26));
    }

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    fn limits(max_records: usize, max_bytes: usize) -> BatchLimits {
        BatchLimits {
            max_records,
            max_bytes,
            linger: Duration::from_secs(3600),
        }
    }

    #[test]
    fn a_batch_closes_at_its_count_and_before_its_bytes_would_overflow() {
        let mut b = Batcher::new(limits(3, 100));
        assert_eq!(b.push(1, 40, &tp(0), 0), Ok(None));
        assert_eq!(b.push(2, 40, &tp(0), 1), Ok(None));
        // 40 + 40 + 40 > 100: the first two go, the third opens the next batch.
        let closed = b.push(3, 40, &tp(0), 2).expect("fits").expect("closed");
        assert_eq!(closed.items, [1, 2]);
        assert_eq!(closed.bytes, 80);
        assert_eq!(b.push(4, 10, &tp(1), 0), Ok(None));
        let closed = b.push(5, 10, &tp(1), 1).expect("fits").expect("count");
        assert_eq!(closed.items, [3, 4, 5]);
        assert_eq!(
            closed.positions,
            [(tp(0), 2), (tp(1), 0), (tp(1), 1)],
            "positions follow items"
        );
        assert!(b.is_empty());
    }

    #[test]
    fn an_item_over_the_limit_by_itself_is_given_back() {
        let mut b = Batcher::new(limits(10, 100));
        b.push("small", 10, &tp(0), 0).expect("fits");
        let err = b.push("huge", 101, &tp(0), 1).expect_err("over");
        assert_eq!((err.item, err.bytes, err.max_bytes), ("huge", 101, 100));
        assert_eq!(
            b.take().expect("open").items,
            ["small"],
            "the open batch is untouched"
        );
    }

    #[test]
    fn linger_closes_a_batch_that_does_not_fill() {
        let mut b = Batcher::new(BatchLimits {
            max_records: 10,
            max_bytes: 100,
            linger: Duration::from_millis(50),
        });
        assert_eq!(b.deadline(), None);
        b.push(1, 1, &tp(0), 0).expect("fits");
        let deadline = b.deadline().expect("open");
        assert_eq!(
            b.take_if_lingered(deadline - Duration::from_millis(1)),
            None
        );
        assert_eq!(b.take_if_lingered(deadline).expect("due").items, [1]);
        assert_eq!(b.deadline(), None);
    }

    #[test]
    fn revoked_partitions_leave_the_open_batch() {
        let mut b = Batcher::new(limits(10, 100));
        b.push(1, 5, &tp(0), 0).expect("fits");
        b.push(2, 1, &tp(1), 0).expect("fits");
        b.forget(&[tp(0)]);
        let rest = b.take().expect("open");
        assert_eq!(rest.items, [2]);
        assert_eq!(rest.bytes, 1);
        assert_eq!(rest.positions, [(tp(1), 0)]);
    }

    #[test]
    fn the_safe_offset_stops_at_the_first_record_not_done() {
        let mut t = CommitTracker::default();
        for o in 10..20 {
            t.track(&tp(0), o);
        }
        let current = Offsets::from([(tp(0), 20), (tp(1), 7)]);
        assert_eq!(t.safe_offsets(&current)[&tp(0)], 10);
        assert_eq!(t.safe_offsets(&current)[&tp(1)], 7, "nothing pending");
        for o in 12..20 {
            t.done(&tp(0), o);
        }
        assert_eq!(
            t.safe_offsets(&current)[&tp(0)],
            10,
            "10 and 11 are in flight"
        );
        t.done(&tp(0), 10);
        t.done(&tp(0), 11);
        assert_eq!(t.safe_offsets(&current)[&tp(0)], 20);
        assert_eq!(t.pending(), 0);
    }

    proptest! {
        /// However batches complete, the safe offset never passes a record whose batch is not
        /// complete, and reaches the end once all are.
        #[test]
        fn batches_completing_in_any_order_never_commit_past_one_in_flight(
            sizes in proptest::collection::vec(1usize..40, 1..200),
            order in proptest::collection::vec(any::<prop::sample::Index>(), 0..200),
        ) {
            let mut batcher = Batcher::new(limits(7, 100));
            let mut tracker = CommitTracker::default();
            let mut in_flight = Vec::new();
            for (offset, size) in sizes.iter().enumerate() {
                let offset = offset as i64;
                tracker.track(&tp(0), offset);
                in_flight.extend(batcher.push(offset, *size, &tp(0), offset).expect("fits"));
            }
            in_flight.extend(batcher.take());
            for batch in &in_flight {
                prop_assert!(batch.items.len() <= 7 && batch.bytes <= 100, "over a limit");
            }
            let items: Vec<i64> = in_flight.iter().flat_map(|b| b.items.clone()).collect();
            prop_assert_eq!(items, (0..sizes.len() as i64).collect::<Vec<_>>(), "all, in order");
            let current = Offsets::from([(tp(0), sizes.len() as i64)]);
            for pick in order {
                if in_flight.is_empty() {
                    break;
                }
                let batch = in_flight.swap_remove(pick.index(in_flight.len()));
                tracker.complete(&batch);
                let safe = tracker.safe_offsets(&current)[&tp(0)];
                let lowest_in_flight = in_flight.iter().flat_map(|b| b.items.iter()).min();
                if let Some(lowest) = lowest_in_flight {
                    prop_assert!(safe <= *lowest, "safe {safe} passes {lowest} in flight");
                }
            }
            for batch in in_flight.drain(..) {
                tracker.complete(&batch);
            }
            prop_assert_eq!(tracker.safe_offsets(&current)[&tp(0)], sizes.len() as i64);
        }
    }
}
