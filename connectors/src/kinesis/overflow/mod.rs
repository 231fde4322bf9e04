//! An overflow stream: the Kinesis stream a task writes its records to, in the [`envelope`]
//! format, when their usual destination cannot take them (Kafka for a source task, the external
//! system for a sink task), and reads them back from to replay them.
//!
//! Guarantees:
//! - a diverted record counts as written only when Kinesis answered it with a sequence number
//!   ([`Diverted`] resolves then, with the shard and sequence number); refusals (throttling,
//!   internal failures) and calls that fail as an outage are retried with back-off for as long as
//!   they last: the overflow is the last resort, so nothing is given up for a timeout. A call that
//!   fails for good (the stream does not exist, access denied) resolves its records with that
//!   error, for the caller's error policy;
//! - records of one partition key reach the stream in the order they were diverted (the Kinesis
//!   sink's [`Scheduler`]: one record per key outside its queue), so a replay in sequence order
//!   per shard keeps each key's order;
//! - every record carries its origin: the envelope's topic, key, value, headers, timestamp and,
//!   for a source record, its source partition and offset, and `diverted_by` names the task run
//!   that wrote it, so that a run replays exactly its own records ([`replay`]).
//!
//! The keys are the Kinesis connectors' under a prefix: `overflow.` for a source connector's
//! overflow (`overflow.kinesis.stream`, `overflow.kinesis.region`, `overflow.kinesis.endpoint`,
//! `overflow.aws.access.key.id`, ...), `errors.overflow.` for a sink's.

pub mod replay;

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use sluice_connector_api::backoff::Backoff;
use sluice_connector_api::batch::{Batch, BatchLimits};
use sluice_connector_api::{ConfigDef, ConfigErrors, ConnectError, Props, TopicPartition};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::Placed;
use super::sink::dispatch::put_records_placed;
use super::sink::scheduler::{Entry, Outcome, Scheduler};
use super::stream::{self, AWS_KEYS, MAX_BYTES_PER_CALL, MAX_RECORDS_PER_CALL, Stream};
use crate::aws::AwsSettings;

pub use super::envelope;
pub use super::sink::records::valid as partition_key_of;

/// Header with a record's overflow id (see [`overflow_id`]): equal ids are copies of one record.
pub const ID_HEADER: &str = "__sluice.overflow.id";
/// Header marking a record replayed from an overflow stream into Kafka.
pub const REPLAYED_HEADER: &str = "__sluice.overflow.replayed";
/// The prefix of a source connector's overflow keys.
pub const SOURCE_PREFIX: &str = "overflow.";
/// The prefix of a sink connector's overflow keys.
pub const SINK_PREFIX: &str = "errors.overflow.";

/// Most `PutRecords` calls in flight per overflow stream.
const MAX_IN_FLIGHT: usize = 4;
/// How long a diverted record waits for others to fill its call.
const LINGER: Duration = Duration::from_millis(20);
/// Back-off of refused records and failed calls.
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

/// Where an overflow goes: a stream and how to reach it.
#[derive(Debug, Clone)]
pub struct OverflowTarget {
    /// The stream's name.
    pub stream: String,
    /// Region, endpoint, credentials.
    pub aws: AwsSettings,
}

impl OverflowTarget {
    /// The target configured under `prefix` (`overflow.` or `errors.overflow.`): `Ok(None)` when
    /// `<prefix>kinesis.stream` is not set; errors name the keys with their prefix.
    pub fn from_props(props: &Props, prefix: &str) -> Result<Option<Self>, ConfigErrors> {
        let own = sluice_connector_api::config::with_prefix(props, prefix);
        if own
            .get("kinesis.stream")
            .is_none_or(|s| s.trim().is_empty())
        {
            return Ok(None);
        }
        let def = stream::define(
            ConfigDef::new(),
            "The overflow stream: records go there when their destination cannot take them.",
        );
        let (parsed, mut errors) = def.parse_all(&own);
        let aws = AWS_KEYS.read(&parsed, &mut errors);
        for e in &mut errors.0 {
            e.key = format!("{prefix}{}", e.key);
        }
        errors.into_result(Some(Self {
            stream: parsed.string("kinesis.stream").trim().to_owned(),
            aws,
        }))
    }
}

/// The id of a record by its origin: equal for every copy of one record (the Kafka delivery that
/// was in doubt and its replay), so duplicates can be counted and dropped. A source record's is
/// its connector, source partition and source offset; a sink record's its topic, partition and
/// offset.
pub fn overflow_id(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write as _;
    let mut hash = Sha256::new();
    for p in parts {
        hash.update(p.len().to_le_bytes());
        hash.update(p.as_bytes());
    }
    let digest = hash.finalize();
    let mut hex = String::with_capacity(32);
    for b in &digest[..16] {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// Resolves when Kinesis stored the diverted record (where), or with why it never will.
pub type Diverted = oneshot::Receiver<Result<Placed, ConnectError>>;

/// The first and last sequence numbers a writer stored in one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRange {
    /// The lowest sequence number stored.
    pub first: String,
    /// The highest.
    pub last: String,
}

/// Compares two Kinesis sequence numbers (decimal strings of up to 128 bits).
pub fn sequence_cmp(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Writes records to an overflow stream from a background task; cloning shares it.
#[derive(Clone)]
pub struct OverflowWriter {
    stream: Stream,
    tx: mpsc::UnboundedSender<Request>,
    written: Arc<Mutex<BTreeMap<String, ShardRange>>>,
}

impl OverflowWriter {
    /// A writer to `target` (no request is made until the first record).
    pub async fn connect(target: &OverflowTarget) -> Self {
        let stream = Stream::connect(&target.stream, &target.aws).await;
        let (tx, rx) = mpsc::unbounded_channel();
        let written = Arc::new(Mutex::new(BTreeMap::new()));
        tokio::spawn(run(stream.clone(), rx, Arc::clone(&written)));
        Self {
            stream,
            tx,
            written,
        }
    }

    /// The stream, for reading back and for messages.
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// Diverts one record: `data` (an envelope) under `partition_key`.
    pub fn divert(&self, partition_key: Arc<str>, data: Vec<u8>) -> Diverted {
        let (tx, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError((_, _, tx))) = self.tx.send((partition_key, data, tx)) {
            let _ = tx.send(Err(ConnectError::internal(
                "the overflow writer has stopped",
            )));
        }
        rx
    }

    /// What this writer stored per shard since the last [`take_written`](Self::take_written).
    pub fn take_written(&self) -> BTreeMap<String, ShardRange> {
        std::mem::take(&mut *self.written.lock())
    }
}

type Waiter = oneshot::Sender<Result<Placed, ConnectError>>;
/// A record to divert: its partition key, its data, and who waits for the answer.
type Request = (Arc<str>, Vec<u8>, Waiter);
type Answers = Result<Vec<(Outcome, Option<Placed>)>, ConnectError>;

/// The writer's loop: until every handle is dropped; calls in flight are then abandoned (their
/// callers stopped waiting).
async fn run(
    stream: Stream,
    mut rx: mpsc::UnboundedReceiver<Request>,
    written: Arc<Mutex<BTreeMap<String, ShardRange>>>,
) {
    let limits = BatchLimits {
        max_records: MAX_RECORDS_PER_CALL,
        max_bytes: MAX_BYTES_PER_CALL,
        linger: LINGER,
    };
    // No budget: refusals are retried as long as they last.
    let mut scheduler = Scheduler::new(limits, BACKOFF, None);
    // The scheduler tracks records by Kafka position; here one made-up partition numbers them.
    let origin = TopicPartition::new("overflow", 0);
    let mut next = 0i64;
    let mut waiters: FxHashMap<i64, Waiter> = FxHashMap::default();
    let mut calls: JoinSet<(Batch<Entry>, Answers)> = JoinSet::new();
    loop {
        while calls.len() < MAX_IN_FLIGHT {
            let Some(batch) = scheduler.next_batch(Instant::now()) else {
                break;
            };
            let stream = stream.clone();
            calls.spawn(async move {
                let answers = put_records_placed(&stream, &batch.items).await;
                (batch, answers)
            });
        }
        let wake = scheduler.deadline(Instant::now());
        let sleep = tokio::time::sleep_until(
            wake.map_or_else(tokio::time::Instant::now, tokio::time::Instant::from_std),
        );
        tokio::select! {
            received = rx.recv() => match received {
                Some((key, data, waiter)) => {
                    waiters.insert(next, waiter);
                    scheduler.offer(Entry::new(origin.clone(), next, key, data));
                    next += 1;
                }
                None => return,
            },
            Some(done) = calls.join_next(), if !calls.is_empty() => {
                let Ok((batch, answers)) = done else {
                    tracing::error!("a PutRecords call to the overflow stream panicked");
                    continue;
                };
                let outcomes = match answers {
                    Ok(answers) => {
                        let mut outcomes = Vec::with_capacity(answers.len());
                        for (entry, (outcome, placed)) in batch.items.iter().zip(answers) {
                            if let Some(placed) = placed {
                                note_written(&written, &placed);
                                if let Some(w) = waiters.remove(&entry.offset) {
                                    let _ = w.send(Ok(placed));
                                }
                            }
                            outcomes.push(outcome);
                        }
                        outcomes
                    }
                    Err(error) => batch
                        .items
                        .iter()
                        .map(|_| Outcome::Failed(ConnectError::new(
                            error.fault(),
                            false,
                            error.message().to_owned(),
                        )))
                        .collect(),
                };
                for (entry, error) in scheduler.complete(batch, outcomes, Instant::now()) {
                    if let Some(w) = waiters.remove(&entry.offset) {
                        let error = error.context(format!("diverting a record to {}", stream.describe()));
                        let _ = w.send(Err(error));
                    }
                    scheduler.dealt_with(entry);
                }
            },
            () = sleep, if wake.is_some() => {}
        }
    }
}

fn note_written(written: &Mutex<BTreeMap<String, ShardRange>>, placed: &Placed) {
    let mut written = written.lock();
    match written.get_mut(&placed.shard) {
        Some(range) => {
            if sequence_cmp(&placed.sequence, &range.first).is_lt() {
                range.first.clone_from(&placed.sequence);
            }
            if sequence_cmp(&placed.sequence, &range.last).is_gt() {
                range.last.clone_from(&placed.sequence);
            }
        }
        None => {
            written.insert(
                placed.shard.clone(),
                ShardRange {
                    first: placed.sequence.clone(),
                    last: placed.sequence.clone(),
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        assert!(sequence_cmp("9", "10").is_lt());
        assert!(
            sequence_cmp(
                "49590338271490256608559692538361571095921575989136588898",
                "49590338271490256608559692538361571095921575989136588899"
            )
            .is_lt()
        );
        assert!(sequence_cmp("5", "5").is_eq());
    }

    #[test]
    fn ids_are_stable_and_tell_parts_apart() {
        assert_eq!(
            overflow_id(&["c", "{\"a\":1}"]),
            overflow_id(&["c", "{\"a\":1}"])
        );
        assert_ne!(overflow_id(&["ab", "c"]), overflow_id(&["a", "bc"]));
        assert_eq!(overflow_id(&["x"]).len(), 32);
    }

    #[test]
    fn a_target_is_read_under_its_prefix_and_errors_name_the_prefixed_keys() {
        let props = |pairs: &[(&str, &str)]| -> Props {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert!(
            OverflowTarget::from_props(&props(&[("kinesis.stream", "x")]), SOURCE_PREFIX)
                .unwrap()
                .is_none()
        );
        let target = OverflowTarget::from_props(
            &props(&[
                ("overflow.kinesis.stream", "spill"),
                ("overflow.kinesis.region", "eu-west-1"),
                ("overflow.kinesis.endpoint", "http://127.0.0.1:4567"),
            ]),
            SOURCE_PREFIX,
        )
        .unwrap()
        .unwrap();
        assert_eq!(target.stream, "spill");
        assert_eq!(target.aws.region.as_deref(), Some("eu-west-1"));
        let errors = OverflowTarget::from_props(
            &props(&[
                ("errors.overflow.kinesis.stream", "spill"),
                ("errors.overflow.kinesis.endpoint", "not a url"),
                ("errors.overflow.aws.access.key.id", "AKIA"),
            ]),
            SINK_PREFIX,
        )
        .unwrap_err();
        let keys: Vec<&str> = errors.0.iter().map(|e| e.key.as_str()).collect();
        assert!(
            keys.contains(&"errors.overflow.kinesis.endpoint"),
            "{keys:?}"
        );
        assert!(
            keys.contains(&"errors.overflow.aws.secret.access.key"),
            "{keys:?}"
        );
    }
}
