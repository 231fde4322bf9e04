//! A source task's records in flight together with its overflow: how the task switches to its
//! overflow stream, comes back to Kafka, and commits when it stops while diverting (see
//! `task/overflow` for the guarantees).

use std::time::Duration;

use sluice_connector_api::{ProducerRecord, SourceOffset, SourcePartition};
use tokio::time::Instant;

use super::SourceTaskRunner;
use super::in_flight::{Acked, InFlight, Pending, Tracked};
use crate::task::overflow::{OverflowMode, Replayed, SourceOverflow};

/// The records a task has sent and not settled, the offsets settled since the last commit, and
/// the task's overflow, if it has one.
pub(super) struct Flow {
    pub(super) in_flight: InFlight,
    pub(super) acked: Acked,
    pub(super) overflow: Option<SourceOverflow>,
}

/// Most records a diverting task has in the overflow stream's hands before it waits for the
/// oldest.
pub(super) const MAX_DIVERTED_IN_FLIGHT: usize = 10_000;
/// Longest wait, when stopping, for the overflow stream to answer what was diverted.
const STOP_DIVERTED_WAIT: Duration = Duration::from_secs(30);

impl Flow {
    pub(super) fn diverting(&self) -> bool {
        self.overflow
            .as_ref()
            .is_some_and(SourceOverflow::diverting)
    }

    /// How long a Kafka delivery may take before the task diverts; `None` without an overflow.
    pub(super) fn late_after(&self) -> Option<Duration> {
        self.overflow.as_ref().map(SourceOverflow::produce_timeout)
    }

    /// Switches to diverting: the records Kafka has not acknowledged go to the stream first.
    pub(super) fn divert(&mut self, reason: &str) {
        let Some(o) = &mut self.overflow else {
            return;
        };
        if o.diverting() {
            return;
        }
        o.divert_now(reason);
        let o = &*o;
        let n = self
            .in_flight
            .divert_deliveries(|record, partition, offset| o.divert(record, partition, offset));
        if n > 0 {
            tracing::info!(
                records = n,
                "records Kafka had not acknowledged were diverted too (their Kafka copies may \
                 still land, with the same __sluice.overflow.id header)"
            );
        }
    }

    /// Sends a record to the overflow stream, at the back of the line or (a record that was
    /// first in line when Kafka gave up on it) at its front.
    pub(super) fn push_diverted(
        &mut self,
        record: ProducerRecord,
        partition: SourcePartition,
        offset: SourceOffset,
        at_front: bool,
    ) {
        let Some(o) = &self.overflow else {
            return;
        };
        let ack = o.divert(&record, &partition, &offset);
        let tracked = Tracked {
            pending: Pending::Diverted {
                ack,
                record: Box::new(record),
            },
            partition,
            offset,
        };
        if at_front {
            self.in_flight.0.push_front(tracked);
        } else {
            self.in_flight.0.push_back(tracked);
        }
    }
}

impl SourceTaskRunner {
    /// Diverts when a trigger fired; comes back to Kafka once it has answered long enough.
    pub(super) async fn tend_overflow(&mut self, flow: &mut Flow) -> Result<(), String> {
        let Some(o) = &mut flow.overflow else {
            return Ok(());
        };
        if let Some(reason) = o.trigger(flow.in_flight.oldest_delivery()) {
            flow.divert(&reason);
            return Ok(());
        }
        if o.recovery_due() {
            self.recover(flow).await?;
        }
        Ok(())
    }

    /// Kafka answers again: waits until the stream holds everything diverted, replays it
    /// (`ordered`), writes the kept offsets, and sends to Kafka again. A failure on the way keeps
    /// the task diverting.
    async fn recover(&mut self, flow: &mut Flow) -> Result<(), String> {
        while self.settle_one(flow).await? {}
        let Some(o) = &mut flow.overflow else {
            return Ok(());
        };
        o.all_diverted();
        match o
            .replay(
                &self.clients,
                &mut self.topics,
                self.settings.topic_creation,
                &self.desired,
            )
            .await
        {
            Ok(Replayed::All) => {}
            // The next run polls what was not replayed again: no offset is written.
            Ok(Replayed::Stopped) => return Ok(()),
            Err(why) => {
                o.replay_failed(&why);
                return Ok(());
            }
        }
        let timeout = o.produce_timeout();
        if let Err(why) = self.write_offsets(flow, Some(timeout)).await {
            if let Some(o) = &mut flow.overflow {
                o.replay_failed(&why);
            }
            return Ok(());
        }
        if let Some(o) = &mut flow.overflow {
            o.back_to_kafka();
        }
        Ok(())
    }

    /// The last commit, when the task stops. A diverting task waits (a while) for the stream to
    /// answer; in `ordered` mode it writes no offset of a diverted record, so the next run polls
    /// them again rather than leave them unreplayed.
    pub(super) async fn final_commit(&mut self, flow: &mut Flow) -> Result<(), String> {
        if !flow.diverting() {
            return self.commit(flow).await;
        }
        let deadline = Instant::now() + STOP_DIVERTED_WAIT;
        while tokio::time::timeout_at(deadline, self.settle_one(flow))
            .await
            .is_ok_and(|settled| settled.is_ok_and(|more| more))
        {}
        let relaxed = flow
            .overflow
            .as_ref()
            .is_some_and(|o| o.mode() == OverflowMode::Relaxed);
        if relaxed {
            let late_after = flow.late_after();
            if let Err(why) = self.write_offsets(flow, late_after).await {
                tracing::warn!(task = %self.id, "stopping while diverting: {why}; the next run polls those records again");
            }
        } else {
            tracing::info!(task = %self.id, "stopping while diverting: the offsets of diverted records are not written, so the next run polls them again");
        }
        Ok(())
    }
}

pub(super) fn late_reason(flow: &Flow) -> String {
    flow.overflow
        .as_ref()
        .map(SourceOverflow::late_reason)
        .unwrap_or_default()
}
