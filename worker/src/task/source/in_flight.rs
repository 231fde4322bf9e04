//! The records a source task has sent and not settled, in poll order, and the newest settled
//! offset of each source partition.
//!
//! Guarantees: an offset moves to [`Acked`] only when its record and every record polled before
//! it are settled: acknowledged by Kafka, stored by the overflow stream, or dealt with by the
//! error policy. A record that failed is handed back ([`Unsettled`]) with what the error policy
//! needs, and a Kafka delivery that is late (past the overflow's produce timeout) is reported
//! without being waited for, so that the task can divert it.

use std::collections::VecDeque;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use sluice_connector_api::{ConnectError, ProducerRecord, SourceOffset, SourcePartition};
use tokio::time::Instant;

use crate::kafka::{DeliveryFuture, Undelivered};

/// Resolves once the overflow stream stored a diverted record, or with why it will not.
pub type DivertAck = BoxFuture<'static, Result<(), ConnectError>>;

/// Where a sent record is.
pub enum Pending {
    /// Queued in the producer.
    Delivery {
        /// Resolves with Kafka's answer.
        delivery: DeliveryFuture,
        /// When it was queued.
        sent_at: Instant,
        /// A copy, kept when the task has an overflow stream, to divert it if Kafka is late.
        kept: Option<Box<ProducerRecord>>,
    },
    /// Written to the overflow stream.
    Diverted {
        /// Resolves with the stream's answer.
        ack: DivertAck,
        /// The record, for the error policy should the stream refuse it for good.
        record: Box<ProducerRecord>,
    },
    /// Dropped by a transform or skipped by the error policy: done as soon as those before it are.
    Done,
}

/// A sent record and its source position.
pub struct Tracked {
    /// Where it is.
    pub pending: Pending,
    /// Its source partition.
    pub partition: SourcePartition,
    /// Its source offset.
    pub offset: SourceOffset,
}

impl Tracked {
    /// A record with nothing to wait for.
    pub fn done(partition: SourcePartition, offset: SourceOffset) -> Self {
        Self {
            pending: Pending::Done,
            partition,
            offset,
        }
    }
}

/// A record that did not settle as delivered.
pub enum Unsettled {
    /// Kafka refused the record (after librdkafka's own retries).
    Refused(Box<Refusal>),
    /// The overflow stream refused it for good.
    NotDiverted(Box<(Tracked, ProducerRecord, ConnectError)>),
    /// Kafka has not answered within the produce timeout; the record is still first in line.
    Late,
    /// The producer went away first.
    Closed,
}

/// A record Kafka refused, with where it came from.
pub struct Refusal {
    /// Its source partition.
    pub partition: SourcePartition,
    /// Its source offset.
    pub offset: SourceOffset,
    /// Kafka's answer and the record.
    pub undelivered: Undelivered,
}

/// The sent records, oldest first.
#[derive(Default)]
pub struct InFlight(pub VecDeque<Tracked>);

impl InFlight {
    /// When the oldest record Kafka has not answered yet was queued.
    pub fn oldest_delivery(&self) -> Option<Instant> {
        self.0.iter().find_map(|t| match &t.pending {
            Pending::Delivery { sent_at, .. } => Some(*sent_at),
            _ => None,
        })
    }

    /// Replaces every Kafka delivery that kept its record with `divert(record)`: the Kafka copy
    /// is no longer waited for. Returns how many.
    pub fn divert_deliveries(
        &mut self,
        mut divert: impl FnMut(&ProducerRecord, &SourcePartition, &SourceOffset) -> DivertAck,
    ) -> usize {
        let mut n = 0;
        for t in &mut self.0 {
            if let Pending::Delivery { kept, .. } = &mut t.pending
                && let Some(record) = kept.take()
            {
                let ack = divert(&record, &t.partition, &t.offset);
                t.pending = Pending::Diverted { ack, record };
                n += 1;
            }
        }
        n
    }

    /// Waits for the oldest record and records its offset; returns whether there was one. Done
    /// entries ahead of it are settled too. With `late_after`, a Kafka delivery older than that
    /// is reported [`Unsettled::Late`] instead of waited for.
    pub async fn settle_oldest(
        &mut self,
        acked: &mut Acked,
        late_after: Option<Duration>,
    ) -> Result<bool, Unsettled> {
        while let Some(front) = self.0.front_mut() {
            match &mut front.pending {
                Pending::Done => {}
                Pending::Delivery {
                    delivery, sent_at, ..
                } => {
                    let answer = match late_after {
                        None => delivery.await,
                        Some(after) => {
                            match tokio::time::timeout_at(*sent_at + after, delivery).await {
                                Ok(answer) => answer,
                                Err(_) => return Err(Unsettled::Late),
                            }
                        }
                    };
                    let t = self.0.pop_front().ok_or(Unsettled::Closed)?;
                    settle_delivery(t, answer, acked)?;
                    return Ok(true);
                }
                Pending::Diverted { ack, .. } => {
                    let answer = ack.await;
                    let t = self.0.pop_front().ok_or(Unsettled::Closed)?;
                    settle_diverted(t, answer, acked)?;
                    return Ok(true);
                }
            }
            if let Some(t) = self.0.pop_front() {
                acked.record(t.partition, t.offset);
            }
        }
        Ok(false)
    }

    /// Moves the settled prefix into `acked` without waiting.
    pub fn settle_ready(&mut self, acked: &mut Acked) -> Result<(), Unsettled> {
        while let Some(front) = self.0.front_mut() {
            match &mut front.pending {
                Pending::Done => {
                    if let Some(t) = self.0.pop_front() {
                        acked.record(t.partition, t.offset);
                    }
                }
                Pending::Delivery { delivery, .. } => {
                    let Some(answer) = delivery.now_or_never() else {
                        return Ok(());
                    };
                    let t = self.0.pop_front().ok_or(Unsettled::Closed)?;
                    settle_delivery(t, answer, acked)?;
                }
                Pending::Diverted { ack, .. } => {
                    let Some(answer) = ack.now_or_never() else {
                        return Ok(());
                    };
                    let t = self.0.pop_front().ok_or(Unsettled::Closed)?;
                    settle_diverted(t, answer, acked)?;
                }
            }
        }
        Ok(())
    }
}

fn settle_delivery(
    t: Tracked,
    answer: Result<Result<(i32, i64), Undelivered>, futures::channel::oneshot::Canceled>,
    acked: &mut Acked,
) -> Result<(), Unsettled> {
    match answer {
        Ok(Ok(_)) => {
            acked.record(t.partition, t.offset);
            Ok(())
        }
        Ok(Err(undelivered)) => Err(Unsettled::Refused(Box::new(Refusal {
            partition: t.partition,
            offset: t.offset,
            undelivered,
        }))),
        Err(_) => Err(Unsettled::Closed),
    }
}

fn settle_diverted(
    mut t: Tracked,
    answer: Result<(), ConnectError>,
    acked: &mut Acked,
) -> Result<(), Unsettled> {
    match answer {
        Ok(()) => {
            acked.record(t.partition, t.offset);
            Ok(())
        }
        Err(error) => {
            let Pending::Diverted { record, .. } = std::mem::replace(&mut t.pending, Pending::Done)
            else {
                return Err(Unsettled::Closed);
            };
            Err(Unsettled::NotDiverted(Box::new((t, *record, error))))
        }
    }
}

/// The newest acknowledged offset of each source partition since the last commit. A task has few
/// partitions and consecutive records usually share one, so a vector searched from the end beats
/// hashing each record's partition.
#[derive(Default)]
pub struct Acked(pub Vec<(SourcePartition, SourceOffset)>);

impl Acked {
    /// `offset` is settled, with everything before it.
    pub fn record(&mut self, partition: SourcePartition, offset: SourceOffset) {
        match self.0.iter_mut().rev().find(|(p, _)| *p == partition) {
            Some((_, o)) => *o = offset,
            None => self.0.push((partition, offset)),
        }
    }

    /// Puts back offsets taken for a write that failed, under any newer ones settled since.
    pub fn restore(&mut self, older: Vec<(SourcePartition, SourceOffset)>) {
        for (partition, offset) in older {
            if !self.0.iter().any(|(p, _)| *p == partition) {
                self.0.push((partition, offset));
            }
        }
    }

    /// Whether nothing was settled since the last commit.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
