//! Results in each Kafka partition's offset order, however invocations finish.
//!
//! Every record handed to the dispatcher takes a slot in its partition's queue, in offset order.
//! An invocation that finishes fills its records' slots (with a result to produce, or with
//! nothing: async, no response topic, or dealt with by the error policy); only the filled prefix
//! of a queue is released. So the results of partition p are produced in p's offset order even
//! when a later batch of p finishes first or an earlier one is retried for minutes.
//!
//! Guarantees:
//! - [`ResultOrder::take_ready`] gives a partition's filled slots from its head up to the first
//!   unfilled one, in offset order, each exactly once;
//! - a slot of a partition that was forgotten (revoked) is never released.

use std::collections::VecDeque;

use rustc_hash::{FxHashMap, FxHashSet};
use sluice_connector_api::{ProducerRecord, TopicPartition};

/// What one record gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Filled {
    /// A result to write to the response topic.
    Result(Box<ProducerRecord>),
    /// Nothing to write: the record is done once those before it are.
    Nothing,
}

#[derive(Debug)]
struct Slot {
    offset: i64,
    filled: Option<Filled>,
}

/// Each partition's slots, in offset order.
#[derive(Debug, Default)]
pub struct ResultOrder {
    queues: FxHashMap<TopicPartition, VecDeque<Slot>>,
    /// Partitions whose head slot may be filled.
    ready: FxHashSet<TopicPartition>,
    /// Bytes of the results held, for the task's memory bound.
    held_bytes: usize,
}

impl Filled {
    /// About what a result holds in memory.
    fn bytes(&self) -> usize {
        match self {
            Filled::Result(r) => {
                let headers: usize = r
                    .headers
                    .iter()
                    .map(|h| h.key.len() + h.value.as_ref().map_or(0, Vec::len))
                    .sum();
                r.value.as_ref().map_or(0, Vec::len) + r.key.as_ref().map_or(0, Vec::len) + headers
            }
            Filled::Nothing => 0,
        }
    }
}

impl ResultOrder {
    /// The record at `offset` of `tp` waits for its result. Records of one partition come in
    /// offset order.
    pub fn expect(&mut self, tp: &TopicPartition, offset: i64) {
        let slot = Slot {
            offset,
            filled: None,
        };
        match self.queues.get_mut(tp) {
            Some(q) => {
                debug_assert!(q.back().is_none_or(|s| s.offset < offset));
                q.push_back(slot);
            }
            None => {
                self.queues.insert(tp.clone(), VecDeque::from([slot]));
            }
        }
    }

    /// Whether `tp` is still held (not forgotten).
    pub fn holds(&self, tp: &TopicPartition) -> bool {
        self.queues.contains_key(tp)
    }

    /// Fills the slot of `offset` of `tp`; a slot that is not expected (its partition was
    /// revoked) is ignored.
    pub fn fill(&mut self, tp: &TopicPartition, offset: i64, filled: Filled) {
        let Some(q) = self.queues.get_mut(tp) else {
            return;
        };
        if let Ok(i) = q.binary_search_by_key(&offset, |s| s.offset) {
            self.held_bytes += filled.bytes();
            if let Some(old) = q[i].filled.replace(filled) {
                self.held_bytes -= old.bytes();
            }
            if i == 0 {
                self.ready.insert(tp.clone());
            }
        }
    }

    /// The partitions whose head is filled, emptied as it is read.
    pub fn take_ready_partitions(&mut self) -> Vec<TopicPartition> {
        self.ready.drain().collect()
    }

    /// Marks `tp` to be looked at again (its producer was busy when it was ready).
    pub fn recheck(&mut self, tp: &TopicPartition) {
        if self
            .queues
            .get(tp)
            .and_then(VecDeque::front)
            .is_some_and(|s| s.filled.is_some())
        {
            self.ready.insert(tp.clone());
        }
    }

    /// The filled prefix of `tp`'s queue, in offset order.
    pub fn take_ready(&mut self, tp: &TopicPartition) -> Vec<(i64, Filled)> {
        let Some(q) = self.queues.get_mut(tp) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        while q.front().is_some_and(|s| s.filled.is_some()) {
            if let Some(Slot {
                offset,
                filled: Some(f),
            }) = q.pop_front()
            {
                self.held_bytes -= f.bytes();
                out.push((offset, f));
            }
        }
        out
    }

    /// Drops revoked partitions.
    pub fn forget(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            if let Some(q) = self.queues.remove(tp) {
                let dropped: usize = q
                    .iter()
                    .filter_map(|s| s.filled.as_ref())
                    .map(Filled::bytes)
                    .sum();
                self.held_bytes -= dropped;
            }
            self.ready.remove(tp);
        }
    }

    /// Bytes of the results waiting for earlier ones.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Records waiting for a result, over every partition.
    pub fn waiting(&self) -> usize {
        self.queues.values().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn result(offset: i64) -> Filled {
        Filled::Result(Box::new(ProducerRecord {
            topic: "scores".into(),
            value: Some(offset.to_string().into_bytes()),
            ..ProducerRecord::default()
        }))
    }

    #[test]
    fn a_later_result_waits_for_the_earlier_one() {
        let tp = TopicPartition::new("features", 0);
        let mut order = ResultOrder::default();
        for offset in 10..13 {
            order.expect(&tp, offset);
        }
        order.fill(&tp, 12, result(12));
        order.fill(&tp, 11, Filled::Nothing);
        assert_eq!(order.held_bytes(), 2);
        assert!(order.take_ready_partitions().is_empty());
        assert!(order.take_ready(&tp).is_empty());
        order.fill(&tp, 10, result(10));
        assert_eq!(order.take_ready_partitions(), vec![tp.clone()]);
        let released: Vec<i64> = order.take_ready(&tp).into_iter().map(|(o, _)| o).collect();
        assert_eq!(released, vec![10, 11, 12]);
        assert_eq!((order.waiting(), order.held_bytes()), (0, 0));
    }

    #[test]
    fn forgotten_partitions_release_nothing() {
        let tp = TopicPartition::new("features", 1);
        let mut order = ResultOrder::default();
        order.expect(&tp, 0);
        order.fill(&tp, 0, result(0));
        order.forget(std::slice::from_ref(&tp));
        assert_eq!(order.held_bytes(), 0);
        order.fill(&tp, 0, result(0));
        assert!(!order.holds(&tp));
        assert!(order.take_ready(&tp).is_empty());
        assert!(order.take_ready_partitions().is_empty());
    }

    proptest! {
        /// Whatever order slots are filled in, each partition releases every offset once, in
        /// order.
        #[test]
        fn any_fill_order_releases_in_offset_order(
            fills in Just((0..40i64).collect::<Vec<_>>()).prop_shuffle(),
            partitions in 1..4i32,
        ) {
            let mut order = ResultOrder::default();
            let tps: Vec<TopicPartition> =
                (0..partitions).map(|p| TopicPartition::new("t", p)).collect();
            for offset in 0..40 {
                order.expect(&tps[(offset % partitions as i64) as usize], offset);
            }
            let mut released: FxHashMap<TopicPartition, Vec<i64>> = FxHashMap::default();
            for offset in fills {
                let tp = &tps[(offset % partitions as i64) as usize];
                order.fill(tp, offset, result(offset));
                for ready in order.take_ready_partitions() {
                    let got = order.take_ready(&ready);
                    released.entry(ready).or_default().extend(got.into_iter().map(|(o, _)| o));
                }
            }
            for tp in &tps {
                let expected: Vec<i64> =
                    (0..40).filter(|o| o % partitions as i64 == tp.partition as i64).collect();
                prop_assert_eq!(released.get(tp).cloned().unwrap_or_default(), expected);
            }
        }
    }
}
