//! Results on their way to Kafka: each input partition's writes, several in flight at once, done
//! in order.
//!
//! The dispatcher queues a partition's released results as one write and does not wait for its
//! acknowledgement before queueing the next (the producer keeps the order of records queued one
//! after another). This module decides what is done and what is written again:
//!
//! - a write's input offsets are done only when it and every earlier write of its partition are
//!   acknowledged, so a commit never passes a result Kafka has not taken;
//! - when a write fails, it and every write of its partition queued after it are written again
//!   in order, once none of them is in flight any more and after a back-off: also those Kafka
//!   acknowledged, so that the last copy of each result in the response topic is in offset order
//!   (the response topic is at least once); meanwhile the partition takes no new write;
//! - forgetting a partition (revoked) drops its writes; answers of writes still in flight are
//!   then ignored, and [`ResultWrites::busy`] names the partition until the last one ends.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use sluice_connector_api::{ProducerRecord, TopicPartition};

/// A write to hand to the producer.
#[derive(Debug)]
pub struct ToWrite {
    /// The input partition whose results these are.
    pub tp: TopicPartition,
    /// Names the write in [`ResultWrites::written`].
    pub id: u64,
    /// The results, in offset order.
    pub records: Arc<Vec<ProducerRecord>>,
}

/// What an acknowledgement completed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Completed {
    /// Input offsets now done, in order.
    pub offsets: Vec<i64>,
    /// Results acknowledged with them.
    pub results: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Flying,
    Acknowledged,
    Failed,
}

#[derive(Debug)]
struct Write {
    id: u64,
    offsets: Vec<i64>,
    records: Arc<Vec<ProducerRecord>>,
    bytes: usize,
    state: State,
}

/// One partition's writes that are not done yet, oldest first.
#[derive(Debug, Default)]
struct Lane {
    writes: VecDeque<Write>,
    /// When a failed write and those after it are written again.
    retry_at: Option<Instant>,
    /// Failed rounds in a row, for the back-off.
    failures: u32,
}

impl Lane {
    fn flying(&self) -> bool {
        self.writes.iter().any(|w| w.state == State::Flying)
    }

    fn recovering(&self) -> bool {
        self.retry_at.is_some() || self.writes.iter().any(|w| w.state == State::Failed)
    }
}

/// Every partition's writes not done yet.
#[derive(Debug, Default)]
pub struct ResultWrites {
    lanes: FxHashMap<TopicPartition, Lane>,
    /// Writes in flight per partition, also of partitions forgotten since.
    flying: FxHashMap<TopicPartition, usize>,
    next_id: u64,
}

impl ResultWrites {
    /// Whether `tp` takes a new write now (not while a failed one waits to be written again).
    pub fn accepts(&self, tp: &TopicPartition) -> bool {
        !self.lanes.get(tp).is_some_and(Lane::recovering)
    }

    /// A new write of `tp`'s results that complete `offsets` (call only when [`accepts`] says
    /// so). Returns the write to start, or, when there are no records, what is done at once.
    ///
    /// [`accepts`]: Self::accepts
    pub fn push(
        &mut self,
        tp: &TopicPartition,
        offsets: Vec<i64>,
        records: Vec<ProducerRecord>,
    ) -> Result<ToWrite, Completed> {
        let id = self.next_id;
        self.next_id += 1;
        let nothing = records.is_empty();
        let records = Arc::new(records);
        let lane = self.lanes.entry(tp.clone()).or_default();
        lane.writes.push_back(Write {
            id,
            offsets,
            bytes: records.iter().map(record_bytes).sum(),
            records: Arc::clone(&records),
            state: if nothing {
                State::Acknowledged
            } else {
                State::Flying
            },
        });
        if nothing {
            // Done once the writes before it are.
            return Err(self.settle(tp, None));
        }
        *self.flying.entry(tp.clone()).or_default() += 1;
        Ok(ToWrite {
            tp: tp.clone(),
            id,
            records,
        })
    }

    /// Kafka's answer to write `id` of `tp`: what is done now. After a failure, the next round
    /// is due after `backoff(failed rounds so far)`.
    pub fn written(
        &mut self,
        tp: &TopicPartition,
        id: u64,
        acknowledged: bool,
        backoff: impl Fn(u32) -> Duration,
    ) -> Completed {
        if let Some(n) = self.flying.get_mut(tp) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.flying.remove(tp);
            }
        }
        let Some(write) = self
            .lanes
            .get_mut(tp)
            .and_then(|l| l.writes.iter_mut().find(|w| w.id == id))
        else {
            return Completed::default(); // forgotten meanwhile
        };
        write.state = if acknowledged {
            State::Acknowledged
        } else {
            State::Failed
        };
        self.settle(tp, Some(&backoff))
    }

    /// The writes due again at `now`, in order per partition; their partitions take new writes
    /// again (queued after these).
    pub fn due(&mut self, now: Instant) -> Vec<ToWrite> {
        let mut again = Vec::new();
        for (tp, lane) in &mut self.lanes {
            if lane.retry_at.is_none_or(|at| at > now) {
                continue;
            }
            lane.retry_at = None;
            for w in &mut lane.writes {
                w.state = State::Flying;
                *self.flying.entry(tp.clone()).or_default() += 1;
                again.push(ToWrite {
                    tp: tp.clone(),
                    id: w.id,
                    records: Arc::clone(&w.records),
                });
            }
        }
        again
    }

    /// When the next failed write is due again.
    pub fn next_retry(&self) -> Option<Instant> {
        self.lanes.values().filter_map(|l| l.retry_at).min()
    }

    /// Drops the writes of revoked partitions.
    pub fn forget(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            self.lanes.remove(tp);
        }
    }

    /// Partitions with a write in flight.
    pub fn busy(&self) -> impl Iterator<Item = &TopicPartition> {
        self.flying.keys()
    }

    /// Bytes of results held until Kafka acknowledged them.
    pub fn held_bytes(&self) -> usize {
        self.lanes
            .values()
            .flat_map(|l| &l.writes)
            .map(|w| w.bytes)
            .sum()
    }

    /// Pops the acknowledged prefix; schedules a failed round once nothing of it is in flight.
    fn settle(
        &mut self,
        tp: &TopicPartition,
        backoff: Option<&dyn Fn(u32) -> Duration>,
    ) -> Completed {
        let Some(lane) = self.lanes.get_mut(tp) else {
            return Completed::default();
        };
        let mut done = Completed::default();
        while lane
            .writes
            .front()
            .is_some_and(|w| w.state == State::Acknowledged)
        {
            let Some(w) = lane.writes.pop_front() else {
                break;
            };
            lane.failures = 0;
            done.results += w.records.len();
            done.offsets.extend(w.offsets);
        }
        if lane.retry_at.is_none() && lane.recovering() && !lane.flying() {
            let delay = backoff.map_or(Duration::ZERO, |b| b(lane.failures));
            lane.failures = lane.failures.saturating_add(1);
            lane.retry_at = Some(Instant::now() + delay);
        }
        if lane.writes.is_empty() && lane.retry_at.is_none() {
            self.lanes.remove(tp);
        }
        done
    }
}

/// About how many bytes a result holds while it waits for Kafka.
fn record_bytes(r: &ProducerRecord) -> usize {
    r.value.as_ref().map_or(0, Vec::len) + r.key.as_ref().map_or(0, Vec::len) + r.topic.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(offset: i64) -> ProducerRecord {
        ProducerRecord {
            topic: "scores".into(),
            partition: None,
            key: None,
            value: Some(offset.to_string().into_bytes()),
            headers: Default::default(),
            timestamp: None,
        }
    }

    fn push(w: &mut ResultWrites, tp: &TopicPartition, offsets: &[i64]) -> ToWrite {
        let records = offsets.iter().map(|o| result(*o)).collect();
        w.push(tp, offsets.to_vec(), records).expect("a write")
    }

    fn no_wait(_: u32) -> Duration {
        Duration::ZERO
    }

    #[test]
    fn offsets_are_done_only_in_order_of_the_writes() {
        let tp = TopicPartition::new("features", 0);
        let mut w = ResultWrites::default();
        let a = push(&mut w, &tp, &[0, 1]);
        let b = push(&mut w, &tp, &[2]);
        assert!(w.busy().any(|p| p == &tp));
        // The later write is acknowledged first: nothing is done yet.
        assert_eq!(w.written(&tp, b.id, true, no_wait), Completed::default());
        let done = w.written(&tp, a.id, true, no_wait);
        assert_eq!(done.offsets, vec![0, 1, 2]);
        assert_eq!(done.results, 3);
        assert_eq!(w.busy().count(), 0);
        assert_eq!(w.held_bytes(), 0);
    }

    #[test]
    fn a_failed_write_is_written_again_with_every_later_one_in_order() {
        let tp = TopicPartition::new("features", 0);
        let other = TopicPartition::new("features", 1);
        let mut w = ResultWrites::default();
        let a = push(&mut w, &tp, &[0]);
        let b = push(&mut w, &tp, &[1]);
        let c = push(&mut w, &other, &[0]);
        assert_eq!(w.written(&tp, a.id, false, no_wait), Completed::default());
        // The partition takes nothing new while its failed write waits; the other one does.
        assert!(!w.accepts(&tp));
        assert!(w.accepts(&other));
        // Not due while a later write is still in flight.
        assert!(w.next_retry().is_none());
        assert_eq!(w.written(&tp, b.id, true, no_wait), Completed::default());
        let at = w.next_retry().expect("a retry is scheduled");
        let again = w.due(at);
        let ids: Vec<u64> = again.iter().map(|t| t.id).collect();
        assert_eq!(
            ids,
            vec![a.id, b.id],
            "both, in order, the acknowledged one too"
        );
        assert!(w.accepts(&tp));
        assert_eq!(w.written(&tp, b.id, true, no_wait), Completed::default());
        assert_eq!(w.written(&tp, a.id, true, no_wait).offsets, vec![0, 1]);
        assert_eq!(w.written(&other, c.id, true, no_wait).offsets, vec![0]);
    }

    #[test]
    fn rounds_that_keep_failing_back_off_longer() {
        let tp = TopicPartition::new("features", 0);
        let mut w = ResultWrites::default();
        let a = push(&mut w, &tp, &[0]);
        let backoff = |n: u32| Duration::from_secs(60 * u64::from(n + 1));
        let start = Instant::now();
        w.written(&tp, a.id, false, backoff);
        let first = w.next_retry().expect("scheduled");
        assert!(first >= start + Duration::from_secs(60));
        assert!(w.due(start).is_empty(), "not due before its time");
        let again = w.due(first);
        w.written(&tp, again[0].id, false, backoff);
        assert!(w.next_retry().expect("scheduled") >= start + Duration::from_secs(120));
    }

    #[test]
    fn a_write_without_results_is_done_after_those_before_it() {
        let tp = TopicPartition::new("features", 0);
        let mut w = ResultWrites::default();
        let a = push(&mut w, &tp, &[0]);
        // Offsets 1 and 2 went to the error policy: nothing to write for them.
        assert_eq!(
            w.push(&tp, vec![1, 2], Vec::new()).unwrap_err(),
            Completed::default()
        );
        assert_eq!(w.written(&tp, a.id, true, no_wait).offsets, vec![0, 1, 2]);
        let done = w.push(&tp, vec![3], Vec::new()).unwrap_err();
        assert_eq!(done.offsets, vec![3], "alone, it is done at once");
    }

    #[test]
    fn a_forgotten_partition_stays_busy_until_its_last_write_ends() {
        let tp = TopicPartition::new("features", 0);
        let mut w = ResultWrites::default();
        let a = push(&mut w, &tp, &[0]);
        w.forget(std::slice::from_ref(&tp));
        assert!(w.busy().any(|p| p == &tp));
        assert_eq!(w.written(&tp, a.id, true, no_wait), Completed::default());
        assert_eq!(w.busy().count(), 0);
    }
}
