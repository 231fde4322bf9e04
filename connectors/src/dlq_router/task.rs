//! The router task: reads dead letters and its own retry tiers, and sends each record on.
//!
//! Guarantees:
//! - nothing is lost: a record's offset is committed only after Kafka acknowledged where it went
//!   (every send of a batch is awaited before `put` returns), and a record is dropped only by a
//!   rule with `action=discard`, counted under `discarded`;
//! - a tier record is never sent back early and never held in memory: when the first record of a
//!   tier partition is not due, the task rewinds the partition to it and pauses it until then
//!   (records in a tier partition are in due order, since they all wait the same delay);
//! - after a crash, records routed since the last commit may be routed again (at least once).

use std::collections::BTreeMap;

use sluice_connector_api::dead_letter::{self, back_to_origin};
use sluice_connector_api::{
    ConnectError, ConnectResult, ConnectorConfig, Headers, Offsets, ProducerRecord, Props,
    SinkRecord, SinkTask, SinkTaskContext, TopicPartition, Value, async_trait, now_ms,
};

use super::config::{RouterConfig, tier_topic};
use super::rules::{Action, Facts, route};

/// The DLQ router's task.
#[derive(Default)]
pub struct DlqRouterTask {
    ctx: Option<SinkTaskContext>,
    config: Option<RouterConfig>,
    /// Tier partitions rewound to a record that is not due yet, paused until it is (ms since the
    /// epoch).
    waiting: BTreeMap<TopicPartition, i64>,
}

/// What becomes of one record.
enum Step {
    /// Produce this record, then add one to these counters.
    Send(ProducerRecord, Vec<String>),
    /// Nothing to produce; add one to these counters.
    Count(Vec<String>),
    /// A tier record that is due at this time: wait for it.
    Wait(i64),
}

/// The raw bytes of a key or value read with the byte-array converter.
fn bytes(value: Value) -> Result<Option<Vec<u8>>, ConnectError> {
    match value {
        Value::Null => Ok(None),
        Value::Bytes(b) => Ok(Some(b)),
        other => Err(ConnectError::user(format!(
            "the DLQ router needs raw bytes, but a {} arrived: leave key.converter and value.converter unset",
            other.type_name()
        ))),
    }
}

/// Drops the router's own routing headers (a record routed again gets fresh ones).
fn drop_routing(headers: &mut Headers) {
    headers.retain(|h| {
        !h.key.starts_with(dead_letter::SLUICE_PREFIX) || h.key == dead_letter::ATTEMPTS
    });
}

impl DlqRouterTask {
    fn ctx(&self) -> ConnectResult<&SinkTaskContext> {
        self.ctx
            .as_ref()
            .ok_or_else(|| ConnectError::internal("the router task was not started"))
    }

    fn config(&self) -> ConnectResult<&RouterConfig> {
        self.config
            .as_ref()
            .ok_or_else(|| ConnectError::internal("the router task was not started"))
    }

    /// Resumes the tier partitions whose first record is now due.
    fn resume_due(&mut self, now: i64) -> ConnectResult<()> {
        let due: Vec<TopicPartition> = self
            .waiting
            .iter()
            .filter(|(_, due)| **due <= now)
            .map(|(tp, _)| tp.clone())
            .collect();
        if !due.is_empty() {
            self.ctx()?.resume(&due);
            for tp in &due {
                self.waiting.remove(tp);
            }
        }
        Ok(())
    }

    /// Decides where one record goes.
    fn step(&self, record: SinkRecord, now: i64) -> ConnectResult<Step> {
        let config = self.config()?;
        let name = &self.ctx()?.task_id.connector;
        let r = record.record;
        let (key, value, mut headers) = (bytes(r.key)?, bytes(r.value)?, r.headers);
        if let Some((tier, _)) = config.tier_of(&r.topic) {
            if headers.last_str(dead_letter::RETRY_ROUTER) != Some(name.as_str()) {
                // Another router's tier (or a topic that is only named like one): not ours.
                return Ok(Step::Count(vec!["foreign".into()]));
            }
            let due = headers
                .last_str(dead_letter::RETRY_DUE)
                .and_then(|d| d.parse().ok())
                .unwrap_or(r.timestamp.unwrap_or(now) + tier.delay.as_millis() as i64);
            if due > now {
                return Ok(Step::Wait(due));
            }
            let timestamp = headers
                .last_str(dead_letter::RETRY_TIMESTAMP)
                .and_then(|t| t.parse().ok())
                .or(r.timestamp);
            if let Err(reason) = dead_letter::origin_topic(&headers) {
                let parked = park(config, "tier", &reason, key, value, headers, timestamp);
                return Ok(Step::Send(parked, vec!["parked".into()]));
            }
            let back =
                back_to_origin(key, value, headers, timestamp).map_err(ConnectError::internal)?;
            return Ok(Step::Send(back, vec!["redelivered".into()]));
        }
        let facts = Facts::of(&headers);
        let (rule, action) = route(&config.rules, config.default_action, &facts);
        let attempts = facts.attempts;
        let matched = format!("rule.{rule}");
        let (reason, mut counters) = match (action, facts.topic) {
            (Action::Discard, _) => return Ok(Step::Count(vec!["discarded".into(), matched])),
            (Action::Park, _) => ("a park rule matched".to_owned(), vec![matched]),
            (Action::Retry, None) => (
                "no __connect.errors.topic header: it cannot be sent back".to_owned(),
                vec![matched],
            ),
            (Action::Retry, Some(_)) if attempts >= config.max_attempts => (
                format!("retries exhausted: sent back {attempts} times"),
                vec!["retries.exhausted".into(), matched],
            ),
            (Action::Retry, Some(original)) => {
                let tier = config
                    .tier(attempts)
                    .ok_or_else(|| ConnectError::internal("no retry tier"))?;
                let topic = tier_topic(original, &tier.label);
                drop_routing(&mut headers);
                headers.add_str(dead_letter::RETRY_ROUTER, name);
                headers.add_str(dead_letter::ROUTER_RULE, rule);
                let due = now + tier.delay.as_millis() as i64;
                headers.add_str(dead_letter::RETRY_DUE, &due.to_string());
                if let Some(ts) = r.timestamp {
                    headers.add_str(dead_letter::RETRY_TIMESTAMP, &ts.to_string());
                }
                let record = ProducerRecord {
                    topic,
                    partition: None,
                    key,
                    value,
                    headers,
                    timestamp: Some(now),
                };
                return Ok(Step::Send(
                    record,
                    vec![format!("retried.{}", tier.label), matched],
                ));
            }
        };
        let parked = park(config, rule, &reason, key, value, headers, r.timestamp);
        counters.push("parked".into());
        Ok(Step::Send(parked, counters))
    }
}

/// A record for the parking lot: as it arrived, plus the rule and the reason.
fn park(
    config: &RouterConfig,
    rule: &str,
    reason: &str,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    mut headers: Headers,
    timestamp: Option<i64>,
) -> ProducerRecord {
    drop_routing(&mut headers);
    headers.add_str(dead_letter::ROUTER_RULE, rule);
    headers.add_str(dead_letter::PARKED_REASON, reason);
    ProducerRecord {
        topic: config.parking_lot.clone(),
        partition: None,
        key,
        value,
        headers,
        timestamp,
    }
}

#[async_trait]
impl SinkTask for DlqRouterTask {
    async fn start(&mut self, ctx: SinkTaskContext, props: &Props) -> ConnectResult<()> {
        self.config = Some(RouterConfig::from_props(props)?);
        self.ctx = Some(ctx);
        Ok(())
    }

    async fn put(&mut self, records: Vec<SinkRecord>) -> ConnectResult<()> {
        let now = now_ms();
        self.resume_due(now)?;
        let mut sends = Vec::new();
        let mut counted = Vec::new();
        let mut rewinds = Offsets::new();
        for record in records {
            if self.waiting.contains_key(&record.origin) {
                continue; // rewound: read again once due
            }
            let (origin, offset) = (record.origin.clone(), record.offset);
            match self.step(record, now)? {
                Step::Send(r, counters) => sends.push((r, counters)),
                Step::Count(counters) => counted.extend(counters),
                Step::Wait(due) => {
                    rewinds.insert(origin.clone(), offset);
                    self.waiting.insert(origin, due);
                }
            }
        }
        let ctx = self.ctx()?;
        if !rewinds.is_empty() {
            let paused: Vec<_> = rewinds.keys().cloned().collect();
            ctx.pause(&paused);
            ctx.reset_offsets(&rewinds);
        }
        // Sent together: each send is queued in order when first polled, so records keep their
        // batch order within each destination partition.
        let (records, sent): (Vec<_>, Vec<_>) = sends.into_iter().unzip();
        futures::future::try_join_all(records.into_iter().map(|r| ctx.send(r))).await?;
        // Once per counter and batch, not per record.
        let mut tally: BTreeMap<String, u64> = BTreeMap::new();
        for counter in counted.into_iter().chain(sent.into_iter().flatten()) {
            *tally.entry(counter).or_default() += 1;
        }
        for (counter, n) in tally {
            ctx.count(&counter, n);
        }
        Ok(())
    }

    async fn close(&mut self, partitions: &[TopicPartition]) -> ConnectResult<()> {
        // A partition that comes back later must not start paused.
        let was_waiting: Vec<_> = partitions
            .iter()
            .filter(|tp| self.waiting.remove(*tp).is_some())
            .cloned()
            .collect();
        if !was_waiting.is_empty() {
            self.ctx()?.resume(&was_waiting);
        }
        Ok(())
    }
}
