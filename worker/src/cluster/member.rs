//! What every worker does in the fleet: keep its session, publish what it should run, and leave
//! cleanly.
//!
//! A worker is *live* while it hears from a leader (or, as leader, from a quorum) within
//! `session.timeout.ms`. While live, its [`View`] is its share of the current assignment; once
//! not, the view is empty, so the herder stops every task: a worker cut off from the fleet stops
//! running work that the leader is about to give to others. It then rejoins with a fresh node id.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::raft::{Command, NodeId, RestartRequest};
use super::{Inner, Node};
use crate::store::FleetRecord;

/// What this worker should run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    /// This worker's node id in the fleet, once it is a member.
    pub node: Option<NodeId>,
    /// Whether the worker is in touch with the fleet; when not, it runs nothing.
    pub live: bool,
    /// The assignment generation this view comes from.
    pub generation: i64,
    /// Apply this view only after reading the config topic this far.
    pub config_offset: i64,
    /// Connector instances to run here.
    pub connectors: BTreeSet<String>,
    /// Tasks to run here.
    pub tasks: BTreeSet<(String, u32)>,
    /// The latest restart request (sequence number, request).
    pub restart: Option<(u64, RestartRequest)>,
}

/// Keeps this incarnation's view current; returns when it has lost the fleet, a newer fleet
/// epoch appeared, or the worker shuts down.
pub(super) async fn run(inner: &Arc<Inner>, node: &Arc<Node>) {
    let mut tick = tokio::time::interval(Duration::from_millis(
        (inner.settings.heartbeat_interval_ms / 2).max(50),
    ));
    let mut fleet = node.fleet.clone();
    let session = inner.session_timeout();
    loop {
        tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            _ = node.stop.cancelled() => return,
            _ = tick.tick() => {}
            Ok(()) = fleet.changed() => {}
        }
        if node.is_leader() && inner.quorum_answers(node) {
            node.touch_leader_contact(Some(node.id));
        }
        let live = node.since_leader_contact() < session;
        let state = node.fleet.borrow().clone();
        let mut view = View {
            node: Some(node.id),
            live,
            generation: state.assignment.generation,
            config_offset: state.assignment.config_offset,
            restart: state.restart.clone(),
            ..View::default()
        };
        if live {
            (view.connectors, view.tasks) = state.assignment.of(node.id);
        }
        inner.view.send_if_modified(|current| {
            let changed = *current != view;
            if changed {
                *current = view;
            }
            changed
        });
        if !live && !inner.leaving.load(Ordering::SeqCst) {
            tracing::warn!(
                node = node.id,
                "no contact with a fleet leader for {session:?}: stopped every task; rejoining"
            );
            return;
        }
        let newest = inner.configs.fleet_records().latest().map(|(e, _)| e);
        if newest.is_some_and(|e| e > node.epoch) && !inner.leaving.load(Ordering::SeqCst) {
            tracing::warn!(
                node = node.id,
                epoch = node.epoch,
                "a newer fleet epoch was formed; rejoining"
            );
            inner.view.send_modify(|v| {
                v.live = false;
                v.connectors.clear();
                v.tasks.clear();
            });
            return;
        }
    }
}

/// Announces that this worker leaves, waits until its work has moved away, and closes the fleet
/// epoch if it was the last worker.
pub(super) async fn leave(inner: &Arc<Inner>, timeout: Duration) {
    inner.leaving.store(true, Ordering::SeqCst);
    let Some(node) = inner.node() else { return };
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match inner.submit(Command::Leaving { node: node.id }).await {
            Ok(()) => break,
            Err(e) => tracing::debug!("announcing departure: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut fleet = node.fleet.clone();
    let handed_over = tokio::time::timeout_at(deadline.into(), async {
        loop {
            {
                let state = fleet.borrow_and_update();
                let (c, t) = state.assignment.of(node.id);
                let applied = state.applied.get(&node.id).copied().unwrap_or(i64::MIN);
                if c.is_empty() && t.is_empty() && applied >= state.assignment.generation {
                    return;
                }
            }
            if fleet.changed().await.is_err() {
                return;
            }
        }
    })
    .await
    .is_ok();
    let (_, members) = Inner::members(&node);
    tracing::info!(handed_over, "left the worker fleet");
    if members.len() <= 1 {
        let closed = FleetRecord {
            epoch: node.epoch,
            node: node.id,
            url: inner.url.clone(),
        };
        if let Err(e) = inner.configs.put_fleet_record("closed", &closed).await {
            tracing::warn!("closing the fleet epoch: {e}");
        }
    }
}
