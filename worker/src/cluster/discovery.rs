//! Finding or forming the fleet through the config topic.
//!
//! The config topic has one partition, so it totally orders every worker's writes; formation uses
//! that order instead of a peer list:
//! 1. Read the topic. If an epoch exists and was not closed, write a probe for it and wait for the
//!    epoch's leader to answer with an `alive` record; then join through the URL it gives.
//! 2. If nobody answers (the fleet is gone), write a claim for the next epoch, read the topic
//!    again, and see whose claim for that epoch came first. That worker initializes a one-node
//!    Raft group; everyone else joins it. Two workers starting at once both claim, and both see
//!    the same first claim, so they form one fleet.
//!
//! A worker that loses its fleet (no leader for `session.timeout.ms`) or sees a newer epoch comes
//! back here with a fresh node id.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::raft::{LogStore, NodeId, Raft, StateMachine};
use super::{Inner, Node, leader, member, network};
use crate::store::FleetRecord;

/// A request to join the fleet.
#[derive(Debug, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The joining node.
    pub node: NodeId,
    /// Its URL.
    pub url: String,
}

/// Runs until shutdown: keeps this worker in a fleet.
pub(super) async fn run(inner: Arc<Inner>) {
    while !inner.shutdown.is_cancelled() && !inner.leaving.load(Ordering::SeqCst) {
        let node = match find_or_form(&inner).await {
            Some(node) => node,
            None => break,
        };
        tracing::info!(
            node = node.id,
            epoch = node.epoch,
            "member of the worker fleet"
        );
        *inner.node.lock() = Some(Arc::clone(&node));
        let lead = tokio::spawn(leader::run(Arc::clone(&inner), Arc::clone(&node)));
        member::run(&inner, &node).await;
        node.stop.cancel();
        // The leader loop may wait on a commit that can no longer happen (no quorum).
        lead.abort();
        let _ = lead.await;
        {
            let mut current = inner.node.lock();
            if current.as_ref().is_some_and(|n| n.id == node.id)
                && !inner.leaving.load(Ordering::SeqCst)
            {
                *current = None;
            }
        }
        if !inner.leaving.load(Ordering::SeqCst) {
            let _ = node.raft.shutdown().await;
        }
    }
}

async fn new_node(inner: &Inner, epoch: u64) -> Option<Arc<Node>> {
    let id: NodeId = rand::random::<u64>() >> 1;
    let heartbeat = inner.settings.heartbeat_interval_ms;
    let config = openraft::Config {
        cluster_name: "sluice".into(),
        heartbeat_interval: heartbeat,
        election_timeout_min: heartbeat * 3,
        election_timeout_max: heartbeat * 6,
        ..Default::default()
    }
    .validate()
    .ok()?;
    let (sm, fleet) = StateMachine::new();
    let raft = match Raft::new(
        id,
        Arc::new(config),
        network(inner),
        LogStore::default(),
        sm,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the Raft node: {e}");
            return None;
        }
    };
    Some(Arc::new(Node {
        id,
        epoch,
        raft,
        fleet,
        leader_contact: parking_lot::Mutex::new((Instant::now(), None)),
        stop: CancellationToken::new(),
    }))
}

async fn find_or_form(inner: &Arc<Inner>) -> Option<Arc<Node>> {
    let probe_timeout = inner.session_timeout() / 2;
    loop {
        if inner.shutdown.is_cancelled() {
            return None;
        }
        if let Err(e) = inner.configs.read_to_end().await {
            tracing::warn!("reading the config topic: {e}");
        }
        let records = inner.configs.fleet_records();
        let latest = records.latest().map(|(e, c)| (e, c.clone()));
        let epoch = latest.as_ref().map_or(0, |(e, _)| *e);

        // Is the latest fleet alive? Ask it, unless its last worker closed it.
        if latest.is_some() && records.closed != Some(epoch) {
            match probe_and_join(inner, epoch, probe_timeout).await {
                Probe::Joined(node) => return Some(node),
                // Alive but unreachable (we may be cut off): never claim over a live fleet.
                Probe::Unreachable => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                }
                Probe::Silent => {}
            }
        }
        if inner.shutdown.is_cancelled() {
            return None;
        }

        // Nobody answered: claim the next epoch; the first claim wins.
        let next = epoch + 1;
        tracing::debug!(epoch = next, "claiming the next fleet epoch");
        let node = new_node(inner, next).await?;
        let claim = FleetRecord {
            epoch: next,
            node: node.id,
            url: inner.url.clone(),
        };
        let offset = match inner.configs.put_fleet_record("claim", &claim).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!("writing a fleet claim: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        tracing::debug!(epoch = next, offset, "claim written");
        inner
            .configs
            .wait_applied(offset, Duration::from_secs(30))
            .await;
        tracing::debug!(epoch = next, "claim read back");
        let winner = inner
            .configs
            .fleet_records()
            .claims
            .get(&next)
            .map(|(_, c)| c.clone());
        match winner {
            Some(w) if w.node == node.id => {
                let members = BTreeMap::from([(node.id, BasicNode::new(&inner.url))]);
                if let Err(e) = node.raft.initialize(members).await {
                    tracing::warn!("initializing the fleet: {e}");
                    let _ = node.raft.shutdown().await;
                    continue;
                }
                tracing::info!(epoch = next, "formed a new worker fleet");
                return Some(node);
            }
            Some(w) => {
                if join_within(inner, &node, &w.url, inner.session_timeout()).await {
                    return Some(node);
                }
                let _ = node.raft.shutdown().await;
            }
            None => {
                let _ = node.raft.shutdown().await;
            }
        }
    }
}

enum Probe {
    Joined(Arc<Node>),
    Unreachable,
    Silent,
}

/// Probes `epoch`; if its leader answers, joins through it.
async fn probe_and_join(inner: &Arc<Inner>, epoch: u64, timeout: Duration) -> Probe {
    let Some(node) = new_node(inner, epoch).await else {
        return Probe::Silent;
    };
    let probe = FleetRecord {
        epoch,
        node: node.id,
        url: inner.url.clone(),
    };
    let Ok(sent) = inner.configs.put_fleet_record("probe", &probe).await else {
        let _ = node.raft.shutdown().await;
        return Probe::Unreachable;
    };
    let mut changes = inner.configs.changes();
    let answer = tokio::time::timeout(timeout, async {
        loop {
            let alive = inner.configs.fleet_records().alive;
            if let Some((offset, a)) = alive
                && offset > sent
                && a.epoch == epoch
            {
                return Some(a);
            }
            if changes.changed().await.is_err() {
                return None;
            }
        }
    })
    .await
    .ok()
    .flatten();
    if let Some(alive) = answer {
        // The fleet is alive: keep trying to join it for as long as it keeps answering.
        if join_within(inner, &node, &alive.url, inner.session_timeout()).await {
            return Probe::Joined(node);
        }
        let _ = node.raft.shutdown().await;
        return Probe::Unreachable;
    }
    let _ = node.raft.shutdown().await;
    Probe::Silent
}

/// Tries to join through `url` until it works or `patience` has passed.
async fn join_within(inner: &Inner, node: &Arc<Node>, url: &str, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline && !inner.shutdown.is_cancelled() {
        if join(inner, node, url).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    false
}

async fn join(inner: &Inner, node: &Arc<Node>, url: &str) -> bool {
    if inner.isolated.load(Ordering::SeqCst) {
        return false;
    }
    // The leader replicates to the node before the join call returns: let RPCs reach it.
    *inner.node.lock() = Some(Arc::clone(node));
    let request = JoinRequest {
        node: node.id,
        url: inner.url.clone(),
    };
    match inner
        .post::<_, ()>(url, "/sluice/internal/cluster/join", &request)
        .await
    {
        Ok(()) => {
            node.touch_leader_contact(None);
            true
        }
        Err(e) => {
            tracing::debug!("joining through {url}: {e}");
            false
        }
    }
}
