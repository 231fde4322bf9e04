//! What the leader does, every heartbeat interval and on every config or fleet change.
//!
//! 1. Assignment: balance connectors and tasks over the live workers that are not leaving, and
//!    publish the next step towards that target (see [`super::assign`]). A step is published only
//!    once every live worker has applied the current generation, so a revoked unit has stopped
//!    before it is given to another worker.
//! 2. Membership: a worker silent for `session.timeout.ms` is removed; a leaving worker is removed
//!    once it owns nothing; the voter set is topped up from live learners to `cluster.voters`.
//! 3. Probes: answer a probe for this epoch with an `alive` record while a quorum answers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::{BasicNode, ChangeMembers};

use super::assign::{balance, next_step};
use super::raft::{Assignment, Command, FleetState, NodeId};
use super::{Inner, Node};
use crate::store::{FleetRecord, TargetState};

#[derive(Default)]
struct LeaderState {
    since: Option<Instant>,
    first_seen: BTreeMap<NodeId, Instant>,
    waiting_since: Option<Instant>,
    answered_probe: i64,
}

pub(super) async fn run(inner: Arc<Inner>, node: Arc<Node>) {
    let mut tick =
        tokio::time::interval(Duration::from_millis(inner.settings.heartbeat_interval_ms));
    let mut configs = inner.configs.changes();
    let mut fleet = node.fleet.clone();
    let mut state = LeaderState::default();
    loop {
        tokio::select! {
            _ = node.stop.cancelled() => return,
            _ = tick.tick() => {}
            Ok(()) = configs.changed() => {}
            Ok(()) = fleet.changed() => {}
        }
        if !node.is_leader() {
            state = LeaderState::default();
            continue;
        }
        lead_once(&inner, &node, &mut state).await;
    }
}

async fn lead_once(inner: &Inner, node: &Node, state: &mut LeaderState) {
    let now = Instant::now();
    let since = *state.since.get_or_insert(now);
    let metrics = node.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership().clone();
    // A membership change in flight blocks only further membership changes, not assignments.
    // A committed joint config is not in flight: it is what is left when a change was cut short
    // (its caller timed out between the two steps, or a concurrent join was appended between
    // them), and [`repair_membership`] finishes it.
    let in_flight = metrics.membership_config.log_id() > &metrics.last_applied;
    let joint = membership.get_joint_config().len() > 1;
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let members: BTreeSet<NodeId> = membership.nodes().map(|(id, _)| *id).collect();
    state.first_seen.retain(|id, _| members.contains(id));
    for id in &members {
        state.first_seen.entry(*id).or_insert(now);
    }
    let session = inner.session_timeout();
    // A new leader has not heard from anyone yet, except from the previous leader while it
    // followed it: that one's silence counts from then, so a dead leader is replaced within
    // one session timeout of its death, not of the election.
    let previous_leader = node.last_leader().filter(|(id, _)| *id != node.id);
    let alive: BTreeSet<NodeId> = members
        .iter()
        .copied()
        .filter(|id| {
            if *id == node.id {
                return true;
            }
            let baseline = match previous_leader {
                Some((leader, at)) if leader == *id => at,
                _ => since.max(state.first_seen[id]),
            };
            let last = inner
                .liveness
                .last_answer(*id)
                .map_or(baseline, |t| t.max(baseline));
            last.elapsed() < session
        })
        .collect();
    let fleet = node.fleet.borrow().clone();
    if alive.len() < members.len() {
        tracing::debug!(?alive, ?members, "some workers are silent");
    }

    let quorum = inner.quorum_answers(node);
    answer_probe(inner, node, state, quorum).await;
    if !quorum {
        return; // nothing can be committed; the member loop gives up after the session timeout
    }

    if publish_assignment(inner, node, state, &fleet, &alive).await || in_flight {
        return;
    }
    repair_membership(inner, node, &fleet, &voters, joint, &members, &alive).await;
}

async fn answer_probe(inner: &Inner, node: &Node, state: &mut LeaderState, quorum_ok: bool) {
    let probe = inner.configs.fleet_records().probe;
    let Some((offset, probe)) = probe else { return };
    if probe.epoch != node.epoch || offset <= state.answered_probe || !quorum_ok {
        return;
    }
    state.answered_probe = offset;
    let alive = FleetRecord {
        epoch: node.epoch,
        node: node.id,
        url: inner.url.clone(),
    };
    if let Err(e) = inner.configs.put_fleet_record("alive", &alive).await {
        tracing::warn!("answering a fleet probe: {e}");
    }
}

/// Publishes the next assignment if it differs from the current one; returns whether it did.
async fn publish_assignment(
    inner: &Inner,
    node: &Node,
    state: &mut LeaderState,
    fleet: &FleetState,
    alive: &BTreeSet<NodeId>,
) -> bool {
    let current = &fleet.assignment;
    let waiting = alive
        .iter()
        .any(|w| fleet.applied.get(w).copied().unwrap_or(i64::MIN) < current.generation);
    if waiting {
        let limit = inner.session_timeout() * 2;
        if state
            .waiting_since
            .get_or_insert_with(Instant::now)
            .elapsed()
            < limit
        {
            return false;
        }
        tracing::warn!(
            generation = current.generation,
            "workers have not confirmed the assignment in time; going on without them"
        );
    }
    state.waiting_since = None;

    let config_offset = inner.configs.applied_offset();
    let snapshot = inner.configs.snapshot();
    let workers: BTreeSet<NodeId> = alive.difference(&fleet.leaving).copied().collect();
    let mut connectors = Vec::new();
    let mut tasks = Vec::new();
    for (name, entry) in &snapshot.connectors {
        // A stopped connector is still assigned, so that its owner reports it STOPPED.
        connectors.push(name.clone());
        if snapshot.target_state(name) == TargetState::Stopped {
            continue;
        }
        tasks.extend((0..entry.tasks.len() as u32).map(|n| (name.clone(), n)));
    }
    let current_tasks: BTreeMap<(String, u32), NodeId> = current
        .tasks
        .iter()
        .flat_map(|(c, ts)| ts.iter().map(move |(n, w)| ((c.clone(), *n), *w)))
        .collect();
    let target_connectors = balance(&current.connectors, &connectors, &workers);
    let target_tasks = balance(&current_tasks, &tasks, &workers);
    let mut next = Assignment {
        generation: current.generation.max(inner.statuses.max_generation()) + 1,
        config_offset,
        connectors: next_step(&current.connectors, &target_connectors, alive),
        tasks: BTreeMap::new(),
    };
    for ((c, n), w) in next_step(&current_tasks, &target_tasks, alive) {
        next.tasks.entry(c).or_default().insert(n, w);
    }
    if next.same_work(current) {
        return false;
    }
    tracing::info!(
        generation = next.generation,
        connectors = next.connectors.len(),
        tasks = next.tasks.values().map(BTreeMap::len).sum::<usize>(),
        workers = workers.len(),
        "publishing assignment"
    );
    let write = node.raft.client_write(Command::Assign(next));
    match tokio::time::timeout(inner.session_timeout(), write).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!("publishing the assignment: {e}"),
        Err(_) => tracing::warn!("publishing the assignment timed out"),
    }
    true
}

/// Commits a membership change, giving up after the session timeout.
async fn change_membership(
    inner: &Inner,
    node: &Node,
    change: ChangeMembers<NodeId, BasicNode>,
    retain: bool,
) {
    let change = node.raft.change_membership(change, retain);
    match tokio::time::timeout(inner.session_timeout(), change).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!("changing the fleet membership: {e}"),
        Err(_) => tracing::warn!("changing the fleet membership timed out"),
    }
}

async fn repair_membership(
    inner: &Inner,
    node: &Node,
    fleet: &FleetState,
    voters: &BTreeSet<NodeId>,
    joint: bool,
    members: &BTreeSet<NodeId>,
    alive: &BTreeSet<NodeId>,
) {
    let departed: BTreeSet<NodeId> = fleet
        .leaving
        .iter()
        .copied()
        .filter(|n| {
            let (c, t) = fleet.assignment.of(*n);
            c.is_empty()
                && t.is_empty()
                && fleet.applied.get(n).copied().unwrap_or(i64::MIN) >= fleet.assignment.generation
        })
        .collect();
    let candidates: Vec<NodeId> = alive
        .iter()
        .copied()
        .filter(|n| !fleet.leaving.contains(n))
        .collect();
    let mut new_voters: BTreeSet<NodeId> = voters
        .iter()
        .copied()
        .filter(|v| candidates.contains(v))
        .collect();
    for c in &candidates {
        if new_voters.len() >= inner.settings.voters {
            break;
        }
        new_voters.insert(*c);
    }
    // From a joint config, replacing the voters with its last config ends the joint phase in one
    // step; with any other set it moves on to a joint config towards that set.
    if !new_voters.is_empty() && (new_voters != *voters || joint) {
        tracing::info!(?voters, ?new_voters, joint, "changing the Raft voters");
        // Demoted voters stay as learners: a leaving worker must keep receiving the assignment
        // until its work has moved; removal is the step below.
        change_membership(
            inner,
            node,
            ChangeMembers::ReplaceAllVoters(new_voters),
            true,
        )
        .await;
        return;
    }
    let remove: BTreeSet<NodeId> = members
        .iter()
        .copied()
        .filter(|n| *n != node.id && !voters.contains(n))
        .filter(|n| !alive.contains(n) || departed.contains(n))
        .collect();
    if !remove.is_empty() {
        tracing::info!(?remove, "removing workers from the fleet");
        change_membership(inner, node, ChangeMembers::RemoveNodes(remove), false).await;
    }
}
