//! Reading a writer's own records back from an overflow stream, shard by shard in sequence
//! order, for the task that diverted them to replay into Kafka before it sends anything newer.
//!
//! Guarantees: [`ReadBack`] yields, in sequence order, every record of one shard between two
//! sequence numbers (both included) whose envelope names the given run in `diverted_by`; records
//! of other writers sharing the stream are skipped, and a record that is not an envelope is
//! skipped with a warning (this reader wrote none such). A throttled or failed read is an `Err`
//! that says whether a retry can help; the reader keeps its position, so calling again resumes.

use aws_sdk_kinesis::types::ShardIteratorType;

use super::envelope::{self, Envelope};
use super::{ShardRange, sequence_cmp};
use crate::kinesis::stream::Stream;
use sluice_connector_api::ConnectError;

/// Records per `GetRecords` call.
const PAGE: i32 = 1000;

/// One shard's records of one run, read back page by page.
pub struct ReadBack {
    stream: Stream,
    shard: String,
    range: ShardRange,
    run: String,
    iterator: Option<String>,
    /// The last sequence number read, for a new iterator after an expired one.
    read_to: Option<String>,
    done: bool,
}

impl ReadBack {
    /// A reader of `shard` over `range`, keeping the records of `run`.
    pub fn new(stream: &Stream, shard: &str, range: ShardRange, run: &str) -> Self {
        Self {
            stream: stream.clone(),
            shard: shard.to_owned(),
            range,
            run: run.to_owned(),
            iterator: None,
            read_to: None,
            done: false,
        }
    }

    /// Starts after `sequence` instead of at the range's first record (a replay that stopped
    /// there resumes).
    pub fn after(mut self, sequence: Option<String>) -> Self {
        if sequence.is_some() {
            self.read_to = sequence;
        }
        self
    }

    /// The next page of the run's records with their sequence numbers (possibly empty), or
    /// `None` once the range is read.
    pub async fn next_page(&mut self) -> Result<Option<Vec<(String, Envelope)>>, ConnectError> {
        if self.done {
            return Ok(None);
        }
        let iterator = match self.iterator.take() {
            Some(it) => it,
            None => self.start().await?,
        };
        let page = self
            .stream
            .client
            .get_records()
            .shard_iterator(&iterator)
            .limit(PAGE)
            .send()
            .await;
        let page = match page {
            Ok(page) => page,
            Err(e) => {
                if e.as_service_error()
                    .is_some_and(|s| s.is_expired_iterator_exception())
                {
                    // A new iterator after the last record read.
                    return Ok(Some(Vec::new()));
                }
                self.iterator = Some(iterator);
                return Err(self.stream.error("GetRecords", e));
            }
        };
        let mut out = Vec::new();
        for record in page.records() {
            let seq = record.sequence_number();
            if sequence_cmp(seq, &self.range.last).is_gt() {
                self.done = true;
                break;
            }
            self.read_to = Some(seq.to_owned());
            match envelope::decode(record.data().as_ref()) {
                Ok(e) if e.diverted_by.as_deref() == Some(self.run.as_str()) => {
                    out.push((seq.to_owned(), e));
                }
                Ok(_) => {}
                Err(why) => tracing::warn!(
                    shard = %self.shard,
                    sequence = seq,
                    "skipping a record of the overflow stream {} that is not an envelope: {why}",
                    self.stream.describe()
                ),
            }
        }
        let at_last = self
            .read_to
            .as_deref()
            .is_some_and(|r| sequence_cmp(r, &self.range.last).is_ge());
        let caught_up = page.records().is_empty() && page.millis_behind_latest() == Some(0);
        match page.next_shard_iterator() {
            // Past the range, or at the stream's end without reaching it (trimmed by retention).
            _ if self.done || at_last || caught_up => self.done = true,
            Some(next) => self.iterator = Some(next.to_owned()),
            None => self.done = true,
        }
        Ok(Some(out))
    }

    async fn start(&mut self) -> Result<String, ConnectError> {
        let (kind, at) = match &self.read_to {
            Some(seq) => (ShardIteratorType::AfterSequenceNumber, seq.clone()),
            None => (
                ShardIteratorType::AtSequenceNumber,
                self.range.first.clone(),
            ),
        };
        let answer = self
            .stream
            .client
            .get_shard_iterator()
            .stream_name(&self.stream.name)
            .shard_id(&self.shard)
            .shard_iterator_type(kind)
            .starting_sequence_number(at)
            .send()
            .await
            .map_err(|e| self.stream.error("GetShardIterator", e))?;
        answer
            .shard_iterator()
            .map(str::to_owned)
            .ok_or_else(|| ConnectError::retriable("GetShardIterator answered no iterator"))
    }
}
