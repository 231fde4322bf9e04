//! The task's dispatcher: one tokio task per sink task that closes batches, keeps up to
//! `aws.lambda.max.in.flight` invocations going, and writes results back in order.
//!
//! A record's life: offered (it takes a slot in its partition's [`ResultOrder`] and is tracked by
//! the [`CommitTracker`]) → batched → invoked, perhaps retried, perhaps split → its slot filled
//! (a result, or nothing) → once every earlier slot of its partition is filled, its result is
//! queued for the response topic with the others of that prefix in one write → once that write
//! and every earlier write of its partition are acknowledged, done.
//!
//! Guarantees:
//! - results of one partition are written in offset order whatever order invocations finish in:
//!   writes are queued to the producer one after another (a chain of turns), so several can be
//!   in flight without waiting for each other's acknowledgement, and land in order;
//! - a write that fails is written again after a back-off, together with every later write of
//!   its partition (even acknowledged ones, so the last copy of each result is in order; the
//!   response topic is at least once), and nothing newer of that partition is written meanwhile;
//! - a record is done (its offset may be committed) only when its result was acknowledged by
//!   Kafka, or, without results, when Lambda ran (sync) or accepted (async) its batch, or when
//!   `behavior.on.error` took it; `pre_commit` never passes a record that is not done;
//! - throttled and failed invocations are retried with jittered back-off within
//!   `errors.retry.timeout` (as long as it takes without one), then go to `behavior.on.error`
//!   with the last error; a function error or a broken result contract goes there at once;
//! - a batch Lambda finds too large is split in two; a single record too large goes to
//!   `behavior.on.error`;
//! - closing partitions waits until no invocation or write in flight holds their records;
//! - a failure no retry can cure (the function does not exist) fails the task: every later `put`
//!   and `pre_commit` returns it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use sluice_connector_api::backoff::{Backoff, Retries};
use sluice_connector_api::batch::{Batch, Batcher, CommitTracker};
use sluice_connector_api::{
    ConnectError, ConnectResult, Headers, Offsets, ProducerRecord, Record, SinkRecord,
    SinkTaskContext, TopicPartition,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::dispatched::Shared;

use super::config::{InvocationType, LambdaSinkConfig};
use super::invoke::{Answer, Function, function_error_message};
use super::order::{Filled, ResultOrder};
use super::payload;
use super::report::{BATCH_BUCKETS, LATENCY_BUCKETS_MS, deal_with, histogram, request};
use super::writes::{Completed, ResultWrites, ToWrite};

/// One record as it waits in a batch.
#[derive(Debug)]
pub struct Item {
    /// Its object in the batch's JSON array.
    pub json: Vec<u8>,
    /// Its key's bytes, for its result (only with a response topic).
    pub key: Option<Vec<u8>>,
    /// Its headers, for its result (only with a response topic).
    pub headers: Headers,
}

/// A record handed to the dispatcher.
#[derive(Debug)]
pub struct Offered {
    /// The record.
    pub item: Item,
    /// Its size in the batch.
    pub size: usize,
    /// Where it came from.
    pub tp: TopicPartition,
    /// Its offset.
    pub offset: i64,
}

/// What the task asks of its dispatcher.
pub enum Command {
    /// Records, in delivery order.
    Offer(Vec<Offered>),
    /// The offsets safe to commit, given the runtime's positions.
    SafeOffsets(Offsets, oneshot::Sender<Offsets>),
    /// These partitions were revoked: drop what is held of them, answer once nothing in flight
    /// holds them.
    Close(Vec<TopicPartition>, oneshot::Sender<()>),
}

/// A batch waiting to be invoked, new or to be retried.
struct Queued {
    batch: Batch<Item>,
    retries: Option<Retries>,
    not_before: Instant,
}

/// Invokes the function for one task.
pub struct Dispatcher {
    /// The function.
    pub function: Function,
    /// The connector's settings.
    pub config: Arc<LambdaSinkConfig>,
    /// For the error policy, writes and counters.
    pub ctx: SinkTaskContext,
    /// Shared with the task.
    pub shared: Arc<Shared>,
}

struct Running {
    d: Dispatcher,
    backoff: Backoff,
    batcher: Batcher<Item>,
    queue: VecDeque<Queued>,
    calls: JoinSet<(u64, Queued, Answer)>,
    /// Partitions and bytes of each invocation in flight.
    in_flight: HashMap<u64, (BTreeSet<TopicPartition>, usize)>,
    writes: JoinSet<(TopicPartition, u64, ConnectResult<()>)>,
    /// Each partition's result writes not done yet.
    results: ResultWrites,
    /// Signalled once the newest write is queued: the next write queues after it.
    turn: Option<oneshot::Receiver<()>>,
    order: ResultOrder,
    tracker: CommitTracker,
    closing: Vec<(Vec<TopicPartition>, oneshot::Sender<()>)>,
    next_call: u64,
}

impl Dispatcher {
    /// Runs until the task drops its sender; invocations still in flight are then abandoned
    /// (their records were not committed, so they are read again).
    pub async fn run(self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let config = Arc::clone(&self.config);
        let mut r = Running {
            backoff: Backoff::new(config.retry_backoff, config.retry_backoff_max)
                .with_budget(config.retry_timeout),
            batcher: Batcher::new(config.batch),
            d: self,
            queue: VecDeque::new(),
            calls: JoinSet::new(),
            in_flight: HashMap::new(),
            writes: JoinSet::new(),
            results: ResultWrites::default(),
            turn: None,
            order: ResultOrder::default(),
            tracker: CommitTracker::default(),
            closing: Vec::new(),
            next_call: 0,
        };
        loop {
            r.launch();
            r.write_ready();
            r.publish();
            let wake = r.next_wake();
            let sleep = tokio::time::sleep_until(
                wake.map_or_else(tokio::time::Instant::now, tokio::time::Instant::from_std),
            );
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => r.command(command).await,
                    None => return,
                },
                Some(done) = r.calls.join_next(), if !r.calls.is_empty() => match done {
                    Ok((id, queued, answer)) => r.finished(id, queued, answer).await,
                    Err(e) => r.fail(ConnectError::internal(format!("an invocation panicked: {e}"))),
                },
                Some(done) = r.writes.join_next(), if !r.writes.is_empty() => match done {
                    Ok((tp, id, result)) => r.written(tp, id, result),
                    Err(e) => r.fail(ConnectError::internal(format!("a result write panicked: {e}"))),
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
        self.d.shared.fail(&self.d.ctx, "Lambda sink", error);
    }

    /// Tells the task what it holds, and the gauges.
    fn publish(&self) {
        let queued: usize = self.queue.iter().map(|q| q.batch.bytes).sum();
        let flying: usize = self.in_flight.values().map(|(_, b)| b).sum();
        let held = self.batcher.held_bytes()
            + queued
            + flying
            + self.order.held_bytes()
            + self.results.held_bytes();
        self.d.shared.held_bytes.store(held, Ordering::Relaxed);
        self.d
            .ctx
            .gauge("lambda.invocations.in.flight", self.calls.len() as i64);
    }

    /// When the loop has something to do without a command or an answer: a batch's linger ends,
    /// a batch may be invoked (only while there is room in flight: otherwise the next answer
    /// wakes it), a failed write is due again.
    fn next_wake(&self) -> Option<Instant> {
        let room = !self.failed() && self.calls.len() < self.d.config.max_in_flight;
        let queued = self
            .queue
            .iter()
            .map(|q| q.not_before)
            .min()
            .filter(|_| room);
        let writes = self.results.next_retry();
        self.batcher
            .deadline()
            .into_iter()
            .chain(queued)
            .chain(writes)
            .min()
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::Offer(records) => {
                let mut oversized = Vec::new();
                for o in records {
                    self.tracker.track(&o.tp, o.offset);
                    self.order.expect(&o.tp, o.offset);
                    match self.batcher.push(o.item, o.size, &o.tp, o.offset) {
                        Ok(Some(batch)) => self.queue.push_back(Queued::new(batch)),
                        Ok(None) => {}
                        Err(big) => oversized.push((o.tp, o.offset, big.bytes, big.max_bytes)),
                    }
                }
                // The task checks sizes before offering; this is only a backstop.
                for (tp, offset, bytes, max) in oversized {
                    let error = ConnectError::user(format!(
                        "the record is {bytes} bytes in the payload, over the limit of {max}"
                    ));
                    self.reject_one(&tp, offset, error).await;
                }
            }
            Command::SafeOffsets(current, reply) => {
                let _ = reply.send(self.tracker.safe_offsets(&current));
            }
            Command::Close(partitions, reply) => {
                self.batcher.forget(&partitions);
                for q in &mut self.queue {
                    q.batch.retain(|tp| !partitions.contains(tp));
                }
                self.queue.retain(|q| !q.batch.items.is_empty());
                self.results.forget(&partitions);
                self.order.forget(&partitions);
                self.tracker.forget(&partitions);
                self.closing.push((partitions, reply));
                self.answer_closing();
            }
        }
    }

    /// Closes a lingered batch and invokes what is due, up to the in-flight limit.
    fn launch(&mut self) {
        let now = Instant::now();
        if let Some(batch) = self.batcher.take_if_lingered(now) {
            self.queue.push_back(Queued::new(batch));
        }
        if self.failed() {
            return;
        }
        while self.calls.len() < self.d.config.max_in_flight {
            let Some(i) = self.queue.iter().position(|q| q.not_before <= now) else {
                return;
            };
            let Some(queued) = self.queue.remove(i) else {
                return;
            };
            let id = self.next_call;
            self.next_call += 1;
            let partitions = queued
                .batch
                .positions
                .iter()
                .map(|(tp, _)| tp.clone())
                .collect();
            self.in_flight.insert(id, (partitions, queued.batch.bytes));
            let body = payload::join(queued.batch.items.iter().map(|i| i.json.as_slice()));
            let function = self.d.function.clone();
            self.d.ctx.count("lambda.invocations", 1);
            self.d
                .ctx
                .count("lambda.records.invoked", queued.batch.items.len() as u64);
            histogram(
                &self.d.ctx,
                "lambda.batch.records",
                queued.batch.items.len() as u64,
                BATCH_BUCKETS,
            );
            self.calls.spawn(async move {
                let answer = function.invoke(body).await;
                (id, queued, answer)
            });
        }
    }

    async fn finished(&mut self, id: u64, mut queued: Queued, answer: Answer) {
        self.in_flight.remove(&id);
        // Records of revoked partitions are the next owner's.
        queued.batch.retain(|tp| self.order.holds(tp));
        if queued.batch.items.is_empty() {
            self.answer_closing();
            return;
        }
        let ctx = self.d.ctx.clone();
        match answer {
            Answer::Done {
                payload,
                request_id,
                version,
                latency,
            } => {
                let ms = latency.as_millis() as u64;
                histogram(&ctx, "lambda.latency.ms", ms, LATENCY_BUCKETS_MS);
                ctx.count("lambda.latency.ms.sum", ms);
                self.done(queued.batch, &payload, request_id, version, ms)
                    .await;
            }
            Answer::FunctionError {
                kind,
                payload,
                request_id,
            } => {
                ctx.count("lambda.errors.function", 1);
                let error = ConnectError::external(format!(
                    "{} failed{}: {}",
                    self.d.function.describe(),
                    request(&request_id),
                    function_error_message(&kind, &payload)
                ));
                self.reject(queued.batch, error).await;
            }
            Answer::TooLarge(error) => match queued.batch.split() {
                Ok((front, back)) => {
                    ctx.count("lambda.batches.split", 1);
                    self.queue.push_front(Queued::new(back));
                    self.queue.push_front(Queued::new(front));
                }
                Err(one) => {
                    let error = error.context("the record alone is over Lambda's payload limit");
                    self.reject(one, ConnectError::user(error.message())).await;
                }
            },
            Answer::Retriable { error, throttled } => {
                ctx.count(
                    if throttled {
                        "lambda.throttles"
                    } else {
                        "lambda.errors.service"
                    },
                    1,
                );
                let backoff = &self.backoff;
                let retries = queued.retries.get_or_insert_with(|| backoff.retries());
                match retries.next_delay() {
                    Some(delay) => {
                        ctx.count("lambda.retries", 1);
                        tracing::debug!(task = %ctx.task_id, "retrying in {delay:?}: {}", error.message());
                        queued.not_before = Instant::now() + delay;
                        self.queue.push_front(queued);
                    }
                    None => {
                        let error = error.context(format!(
                            "{} kept failing for errors.retry.timeout",
                            self.d.function.describe()
                        ));
                        self.reject(queued.batch, error).await;
                    }
                }
            }
            Answer::Refused(error) => self.reject(queued.batch, error).await,
            Answer::Fatal(error) => self.fail(error),
        }
        self.answer_closing();
    }

    /// Fills the slots of a batch the function ran.
    async fn done(
        &mut self,
        batch: Batch<Item>,
        answer: &[u8],
        request_id: Option<String>,
        version: Option<String>,
        latency_ms: u64,
    ) {
        let topic = match (&self.d.config.response_topic, self.d.config.invocation) {
            (Some(topic), InvocationType::Sync) => topic.clone(),
            _ => {
                for (tp, offset) in &batch.positions {
                    self.order.fill(tp, *offset, Filled::Nothing);
                }
                return;
            }
        };
        let results = match payload::results(answer, batch.items.len()) {
            Ok(results) => results,
            Err(why) => {
                self.d.ctx.count("lambda.errors.contract", 1);
                let error = ConnectError::user(format!(
                    "{}{} broke the result contract: {why}",
                    self.d.function.describe(),
                    request(&request_id)
                ));
                self.reject(batch, error).await;
                return;
            }
        };
        let entries = batch.items.into_iter().zip(batch.positions).zip(results);
        for ((item, (tp, offset)), result) in entries {
            let mut headers = item.headers;
            if let Some(id) = &request_id {
                headers.add_str("lambda.request.id", id);
            }
            if let Some(v) = &version {
                headers.add_str("lambda.function.version", v);
            }
            headers.add_str("lambda.latency.ms", &latency_ms.to_string());
            headers.add_str("lambda.input.topic", &tp.topic);
            headers.add_str("lambda.input.partition", &tp.partition.to_string());
            headers.add_str("lambda.input.offset", &offset.to_string());
            let record = ProducerRecord {
                topic: topic.clone(),
                partition: None,
                key: item.key,
                value: Some(result.get().as_bytes().to_vec()),
                headers,
                timestamp: None,
            };
            self.order
                .fill(&tp, offset, Filled::Result(Box::new(record)));
        }
    }

    /// Hands every record of a batch to `behavior.on.error`, in order.
    async fn reject(&mut self, batch: Batch<Item>, error: ConnectError) {
        for (tp, offset) in batch.positions {
            let copy = ConnectError::new(error.fault(), error.is_retriable(), error.message());
            if !self.reject_one(&tp, offset, copy).await {
                return;
            }
        }
    }

    /// One record to `behavior.on.error`; `false` when the task failed.
    async fn reject_one(&mut self, tp: &TopicPartition, offset: i64, error: ConnectError) -> bool {
        let record = SinkRecord {
            record: Record {
                topic: tp.topic.clone(),
                partition: Some(tp.partition),
                ..Record::default()
            },
            origin: tp.clone(),
            offset,
            value_is_json: false,
        };
        match deal_with(&self.d.ctx, self.d.config.on_error, &record, error).await {
            Ok(()) => {
                self.order.fill(tp, offset, Filled::Nothing);
                true
            }
            // The record stays not done, so its offset is never committed.
            Err(e) => {
                self.fail(e);
                false
            }
        }
    }

    /// Queues each partition's released results, and writes again what failed once it is due.
    fn write_ready(&mut self) {
        for again in self.results.due(Instant::now()) {
            // Results that became ready meanwhile queue behind these.
            self.order.recheck(&again.tp);
            self.start_write(again);
        }
        for tp in self.order.take_ready_partitions() {
            if !self.results.accepts(&tp) {
                continue; // looked at again when the failed write is written again
            }
            let mut offsets = Vec::new();
            let mut records = Vec::new();
            for (offset, filled) in self.order.take_ready(&tp) {
                offsets.push(offset);
                if let Filled::Result(r) = filled {
                    records.push(*r);
                }
            }
            match self.results.push(&tp, offsets, records) {
                Ok(write) => self.start_write(write),
                Err(done) => self.complete(&tp, done),
            }
        }
    }

    /// Queues a write after the one queued before it, then waits for its acknowledgement.
    fn start_write(&mut self, write: ToWrite) {
        let (queued, turn) = oneshot::channel();
        let previous = self.turn.replace(turn);
        let ctx = self.d.ctx.clone();
        self.writes.spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.await; // an error means it ended, queued or not
            }
            let acknowledgement = ctx.queue_all(&write.records).await;
            let _ = queued.send(());
            let result = match acknowledgement {
                Ok(acknowledgement) => acknowledgement.await,
                Err(e) => Err(e),
            };
            (write.tp, write.id, result)
        });
    }

    fn written(&mut self, tp: TopicPartition, id: u64, result: ConnectResult<()>) {
        if let Err(e) = &result {
            tracing::warn!(task = %self.d.ctx.task_id, "writing results of {tp} failed, writing them again after a back-off: {}", e.message());
        }
        let backoff = self.backoff;
        let done = self
            .results
            .written(&tp, id, result.is_ok(), |n| backoff.delay(n));
        self.complete(&tp, done);
        self.answer_closing();
    }

    fn complete(&mut self, tp: &TopicPartition, done: Completed) {
        if done.results > 0 {
            self.d
                .ctx
                .count("lambda.results.produced", done.results as u64);
        }
        for offset in done.offsets {
            self.tracker.done(tp, offset);
        }
    }

    fn answer_closing(&mut self) {
        let busy: BTreeSet<&TopicPartition> = self
            .in_flight
            .values()
            .flat_map(|(p, _)| p)
            .chain(self.results.busy())
            .collect();
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.closing)
            .into_iter()
            .partition(|(parts, _)| parts.iter().all(|p| !busy.contains(p)));
        self.closing = waiting;
        for (_, reply) in done {
            let _ = reply.send(());
        }
    }
}

impl Queued {
    fn new(batch: Batch<Item>) -> Self {
        Self {
            batch,
            retries: None,
            not_before: Instant::now(),
        }
    }
}
