//! A worker built without Kinesis has no overflow: configs naming a stream are refused
//! (`settings`), so no [`SourceOverflow`] can exist. This type has no values; its methods have
//! the signatures of the real one so that the source loop compiles the same either way.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use sluice_connector_api::{ProducerRecord, SourceOffset, SourcePartition, TaskId};
use tokio::sync::watch;
use tokio::time::Instant;

use sluice_connector_api::{ConnectError, ConnectResult, SinkRecord};

use super::{OverflowMode, Replayed, SinkOverflowSettings, SourceOverflowSettings};
use crate::kafka::{KafkaClients, Producer};
use crate::metrics::TaskMetrics;
use crate::task::Desired;
use crate::task::errors::Original;
use crate::task::source::DivertAck;

/// No overflow: uninhabited.
pub enum SourceOverflow {}

#[allow(clippy::unused_async, missing_docs)]
impl SourceOverflow {
    pub async fn start(
        _: &TaskId,
        settings: &SourceOverflowSettings,
        _: Producer,
        _: Arc<TaskMetrics>,
    ) -> Self {
        unreachable!("no overflow settings without Kinesis: {settings:?}")
    }
    pub fn diverting(&self) -> bool {
        match *self {}
    }
    pub fn produce_timeout(&self) -> Duration {
        match *self {}
    }
    pub fn mode(&self) -> OverflowMode {
        match *self {}
    }
    pub fn tag(&self, _: &mut ProducerRecord, _: &SourcePartition, _: &SourceOffset) {
        match *self {}
    }
    pub fn trigger(&self, _: Option<Instant>) -> Option<String> {
        match *self {}
    }
    pub fn late_reason(&self) -> String {
        match *self {}
    }
    pub fn queue_full(&mut self, _: bool) -> Option<String> {
        match *self {}
    }
    pub fn divert_now(&mut self, _: &str) {
        match *self {}
    }
    pub fn divert(&self, _: &ProducerRecord, _: &SourcePartition, _: &SourceOffset) -> DivertAck {
        match *self {}
    }
    pub fn sent_to_kafka(&self, _: u64) {
        match *self {}
    }
    pub fn recovery_due(&mut self) -> bool {
        match *self {}
    }
    pub fn all_diverted(&mut self) {
        match *self {}
    }
    pub async fn replay(
        &mut self,
        _: &KafkaClients,
        _: &mut HashSet<String>,
        _: Option<(i32, i32)>,
        _: &watch::Receiver<Desired>,
    ) -> Result<Replayed, String> {
        match *self {}
    }
    pub fn replay_failed(&mut self, _: &str) {
        match *self {}
    }
    pub fn back_to_kafka(&mut self) {
        match *self {}
    }
}

/// No overflow: uninhabited.
pub enum SinkOverflow {}

#[allow(clippy::unused_async, missing_docs)]
impl SinkOverflow {
    pub fn new(_: &TaskId, settings: &SinkOverflowSettings, _: Arc<TaskMetrics>) -> Self {
        unreachable!("no overflow settings without Kinesis: {settings:?}")
    }
    pub async fn divert(&self, _: &SinkRecord, _: Original, _: &ConnectError) -> ConnectResult<()> {
        match *self {}
    }
}
