//! The task's dispatcher: one tokio task per sink task that sends `PutRecords` calls as the
//! [`Scheduler`] releases them, up to `kinesis.max.in.flight` at once, and acts on each answer the
//! moment it arrives (a hot key's next record goes out one round trip later, not at the next
//! `put`).
//!
//! Guarantees:
//! - a record counts as done only when Kinesis answered it with a sequence number, or when the
//!   error policy took it (`SinkTaskContext::report`);
//! - a call that fails as a whole with a retriable error (network, 5xx, a throttled call) is retried
//!   with back-off for as long as it takes, as an outage; one that fails for good (the stream was
//!   deleted, access denied) fails the task: every later `put` and `pre_commit` returns the error;
//! - closing partitions waits until no call in flight holds their records, so the next owner's
//!   writes never interleave with this task's.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use sluice_connector_api::batch::Batch;
use sluice_connector_api::{
    ConnectError, Offsets, Record, SinkRecord, SinkTaskContext, TopicPartition,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::dispatched::Shared;

use super::scheduler::{Entry, Outcome, Rejected, Scheduler};
use crate::kinesis::stream::Stream;

/// Per-record error codes of `PutRecords` that a retry can cure.
const RETRIABLE_RECORD_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "InternalFailure",
    "ServiceUnavailable",
    "KMSThrottlingException",
];

/// What the task asks of its dispatcher.
pub enum Command {
    /// Records to send, in delivery order.
    Offer(Vec<Entry>),
    /// The offsets safe to commit, given the runtime's positions.
    SafeOffsets(Offsets, oneshot::Sender<Offsets>),
    /// These partitions were revoked: drop what is held of them, answer once no call in flight
    /// holds them.
    Close(Vec<TopicPartition>, oneshot::Sender<()>),
}

/// A call's result: an outcome per record, or an error that fails the task.
type CallResult = Result<Vec<Outcome>, ConnectError>;

/// Sends the records of one task.
pub struct Dispatcher {
    /// The stream written to.
    pub stream: Stream,
    /// What to send next.
    pub scheduler: Scheduler,
    /// For the error policy and counters.
    pub ctx: SinkTaskContext,
    /// Shared with the task.
    pub shared: Arc<Shared>,
    /// Most calls at once.
    pub max_in_flight: usize,
}

struct Running {
    d: Dispatcher,
    calls: JoinSet<(u64, Batch<Entry>, CallResult)>,
    /// Partitions each call in flight holds records of.
    in_flight: HashMap<u64, BTreeSet<TopicPartition>>,
    closing: Vec<(Vec<TopicPartition>, oneshot::Sender<()>)>,
    next_call: u64,
}

impl Dispatcher {
    /// Runs until the task drops its sender; calls still in flight are then abandoned (their
    /// records were not committed, so they are read again).
    pub async fn run(self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut r = Running {
            d: self,
            calls: JoinSet::new(),
            in_flight: HashMap::new(),
            closing: Vec::new(),
            next_call: 0,
        };
        loop {
            r.launch();
            r.d.shared
                .held_bytes
                .store(r.d.scheduler.held_bytes(), Ordering::Relaxed);
            let wake = r.d.scheduler.deadline(Instant::now());
            let sleep = tokio::time::sleep_until(
                wake.map_or_else(tokio::time::Instant::now, tokio::time::Instant::from_std),
            );
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => r.command(command),
                    None => return,
                },
                Some(done) = r.calls.join_next(), if !r.calls.is_empty() => match done {
                    Ok((id, batch, result)) => r.finished(id, batch, result).await,
                    Err(e) => r.fail(ConnectError::internal(format!("a PutRecords call panicked: {e}"))),
                },
                () = sleep, if wake.is_some() => {}
            }
        }
    }
}

impl Running {
    fn failed(&self) -> bool {
        self.d.shared.failed()
    }

    fn fail(&self, error: ConnectError) {
        self.d.shared.fail(&self.d.ctx, "Kinesis sink", error);
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Offer(entries) => {
                for entry in entries {
                    self.d.scheduler.offer(entry);
                }
            }
            Command::SafeOffsets(current, reply) => {
                let _ = reply.send(self.d.scheduler.safe_offsets(&current));
            }
            Command::Close(partitions, reply) => {
                self.d.scheduler.forget(&partitions);
                self.closing.push((partitions, reply));
                self.answer_closing();
            }
        }
    }

    /// Sends what the scheduler releases, up to the in-flight limit.
    fn launch(&mut self) {
        if self.failed() {
            return;
        }
        while self.calls.len() < self.d.max_in_flight {
            let Some(batch) = self.d.scheduler.next_batch(Instant::now()) else {
                return;
            };
            let id = self.next_call;
            self.next_call += 1;
            let partitions: BTreeSet<&TopicPartition> =
                batch.positions.iter().map(|(tp, _)| tp).collect();
            self.in_flight
                .insert(id, partitions.into_iter().cloned().collect());
            let stream = self.d.stream.clone();
            self.calls.spawn(async move {
                let result = put_records(&stream, &batch.items).await;
                (id, batch, result)
            });
        }
    }

    async fn finished(&mut self, id: u64, batch: Batch<Entry>, result: CallResult) {
        self.in_flight.remove(&id);
        let sent = batch.items.len();
        match result {
            Ok(outcomes) => {
                let accepted = outcomes
                    .iter()
                    .filter(|o| matches!(o, Outcome::Accepted))
                    .count();
                self.d.ctx.count("kinesis.records.written", accepted as u64);
                if accepted < sent {
                    self.d
                        .ctx
                        .count("kinesis.records.refused", (sent - accepted) as u64);
                }
                let rejected = self.d.scheduler.complete(batch, outcomes, Instant::now());
                self.reject(rejected).await;
            }
            Err(error) => {
                self.fail(error);
                // Nothing of the batch is done: keep its records from counting as committed.
                let outcomes = (0..sent)
                    .map(|_| Outcome::Unsent(ConnectError::internal("the task failed")))
                    .collect();
                self.d.scheduler.complete(batch, outcomes, Instant::now());
            }
        }
        self.answer_closing();
    }

    /// Hands records Kinesis will not take to the error policy, in order.
    async fn reject(&mut self, rejected: Vec<Rejected>) {
        for (entry, error) in rejected {
            let record = SinkRecord {
                record: Record {
                    topic: entry.origin.topic.clone(),
                    partition: Some(entry.origin.partition),
                    ..Record::default()
                },
                origin: entry.origin.clone(),
                offset: entry.offset,
                value_is_json: false,
            };
            let error = error.context(format!(
                "writing {}/{} (partition key {:?}) to {}",
                entry.origin,
                entry.offset,
                &*entry.key,
                self.d.stream.describe()
            ));
            match self.d.ctx.report(&record, error).await {
                Ok(()) => self.d.scheduler.dealt_with(entry),
                // errors.tolerance=none: the task fails; the record stays not done, so its
                // offset is never committed.
                Err(e) => {
                    self.fail(e);
                    return;
                }
            }
        }
    }

    fn answer_closing(&mut self) {
        let busy: BTreeSet<&TopicPartition> = self.in_flight.values().flatten().collect();
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.closing)
            .into_iter()
            .partition(|(parts, _)| parts.iter().all(|p| !busy.contains(p)));
        self.closing = waiting;
        for (_, reply) in done {
            let _ = reply.send(());
        }
    }
}

/// One `PutRecords` call.
async fn put_records(stream: &Stream, entries: &[Entry]) -> CallResult {
    let answers = put_records_placed(stream, entries).await?;
    Ok(answers.into_iter().map(|(outcome, _)| outcome).collect())
}

/// Where Kinesis stored a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// The shard.
    pub shard: String,
    /// Its sequence number there.
    pub sequence: String,
}

/// One `PutRecords` call: each record's outcome and, when accepted, where it was stored; `Err`
/// when the call failed for good (the stream was deleted, access denied).
pub(crate) async fn put_records_placed(
    stream: &Stream,
    entries: &[Entry],
) -> Result<Vec<(Outcome, Option<Placed>)>, ConnectError> {
    let mut request = Vec::with_capacity(entries.len());
    for e in entries {
        let entry = PutRecordsRequestEntry::builder()
            .data(Blob::new(e.data.clone()))
            .partition_key(&*e.key)
            .build()
            .map_err(|err| ConnectError::internal(format!("building PutRecords: {err}")))?;
        request.push(entry);
    }
    let answer = stream
        .client
        .put_records()
        .stream_name(&stream.name)
        .set_records(Some(request))
        .send()
        .await;
    let unsent = |message: String| {
        entries
            .iter()
            .map(|_| {
                (
                    Outcome::Unsent(ConnectError::retriable(message.clone())),
                    None,
                )
            })
            .collect()
    };
    let output = match answer {
        Ok(output) => output,
        Err(e) => {
            let error = stream.error("PutRecords", e);
            if !error.is_retriable() {
                return Err(error);
            }
            tracing::warn!("PutRecords failed, retrying: {}", error.message());
            return Ok(unsent(error.message().to_owned()));
        }
    };
    let results = output.records();
    if results.len() != entries.len() {
        // Not a valid answer: nothing can be known of any record, so all go again.
        return Ok(unsent(format!(
            "PutRecords answered {} results for {} records",
            results.len(),
            entries.len()
        )));
    }
    Ok(results
        .iter()
        .map(
            |r| match (r.error_code(), r.shard_id(), r.sequence_number()) {
                (None, shard, Some(sequence)) => (
                    Outcome::Accepted,
                    Some(Placed {
                        shard: shard.unwrap_or_default().to_owned(),
                        sequence: sequence.to_owned(),
                    }),
                ),
                (None, _, None) => (
                    Outcome::Unsent(ConnectError::retriable(
                        "PutRecords answered a record with neither a sequence number nor an error",
                    )),
                    None,
                ),
                (Some(code), _, _) => {
                    let message = format!("{code}: {}", r.error_message().unwrap_or_default());
                    let outcome = if RETRIABLE_RECORD_CODES.contains(&code) {
                        Outcome::Refused(ConnectError::retriable(message))
                    } else {
                        Outcome::Failed(ConnectError::external(message))
                    };
                    (outcome, None)
                }
            },
        )
        .collect())
}
