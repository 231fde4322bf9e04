//! The fleet's Raft group: types, an in-memory log and state machine, and the HTTP transport.
//!
//! The Raft log holds only what the fleet agrees on while it runs (who is a member, the current
//! assignment, which generation each worker has applied, restart requests). None of it needs to
//! outlive the processes: connector and task configs, target states, offsets and statuses live in
//! Kafka. A worker therefore keeps its Raft state in memory and joins with a fresh node id every
//! time it starts, so it can never come back with a vote or log it has forgotten.

mod network;
mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;

use serde::{Deserialize, Serialize};

pub use network::{HttpNetwork, Liveness, SECRET_HEADER, TARGET_HEADER};
pub use store::{LogStore, StateMachine};

/// A worker's Raft node id: random, new at every start.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// Sluice's Raft type configuration.
    pub TypeConfig:
        D = Command,
        R = (),
        NodeId = NodeId,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;

/// Which worker runs each connector and task, as of one generation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// Increases with every published assignment, across leaders and fleet epochs.
    pub generation: i64,
    /// The config-topic offset the leader had applied when it computed this assignment; a worker
    /// applies the assignment only once it has read the config topic this far.
    pub config_offset: i64,
    /// Connector instances by name.
    pub connectors: BTreeMap<String, NodeId>,
    /// Tasks by connector and task number.
    pub tasks: BTreeMap<String, BTreeMap<u32, NodeId>>,
}

impl Assignment {
    /// Connectors and tasks of `node`.
    pub fn of(&self, node: NodeId) -> (BTreeSet<String>, BTreeSet<(String, u32)>) {
        let connectors = self
            .connectors
            .iter()
            .filter(|(_, n)| **n == node)
            .map(|(c, _)| c.clone())
            .collect();
        let tasks = self
            .tasks
            .iter()
            .flat_map(|(c, ts)| {
                ts.iter()
                    .filter(|(_, n)| **n == node)
                    .map(move |(t, _)| (c.clone(), *t))
            })
            .collect();
        (connectors, tasks)
    }

    /// Whether both assign the same work to the same workers.
    pub fn same_work(&self, other: &Assignment) -> bool {
        self.connectors == other.connectors && self.tasks == other.tasks
    }
}

/// A restart that every worker applies to what it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartRequest {
    /// The connector.
    pub connector: String,
    /// One task only (`POST /connectors/{c}/tasks/{n}/restart`).
    pub task: Option<u32>,
    /// Restart the connector instance.
    pub include_connector: bool,
    /// Restart the connector's tasks too.
    pub include_tasks: bool,
    /// Restart only what is FAILED.
    pub only_failed: bool,
    /// Wall-clock time of the request (ms); a worker catching up on old log entries ignores
    /// requests older than a few seconds.
    pub requested_at_ms: i64,
}

/// A change to the fleet state, committed through Raft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// The leader publishes a new assignment.
    Assign(Assignment),
    /// A worker has stopped everything it no longer owns as of `generation`.
    Applied {
        /// The worker.
        node: NodeId,
        /// The generation it applied.
        generation: i64,
    },
    /// A worker is shutting down: move its work away, then drop it from the fleet.
    Leaving {
        /// The worker.
        node: NodeId,
    },
    /// A connector or task restart.
    Restart(RestartRequest),
}

/// The replicated state every worker sees.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetState {
    /// The current assignment.
    pub assignment: Assignment,
    /// The last generation each worker has applied.
    pub applied: BTreeMap<NodeId, i64>,
    /// Workers shutting down.
    pub leaving: BTreeSet<NodeId>,
    /// The latest restart request, with a sequence number that changes on every request.
    pub restart: Option<(u64, RestartRequest)>,
}

impl FleetState {
    /// Applies one command.
    pub fn apply(&mut self, command: &Command) {
        match command {
            Command::Assign(a) => {
                if a.generation > self.assignment.generation {
                    self.assignment = a.clone();
                }
            }
            Command::Applied { node, generation } => {
                let e = self.applied.entry(*node).or_insert(*generation);
                *e = (*e).max(*generation);
            }
            Command::Leaving { node } => {
                self.leaving.insert(*node);
            }
            Command::Restart(r) => {
                let seq = self.restart.as_ref().map_or(1, |(s, _)| s + 1);
                self.restart = Some((seq, r.clone()));
            }
        }
    }

    /// Forgets workers no longer in the Raft membership.
    pub fn retain_members(&mut self, members: &BTreeSet<NodeId>) {
        self.applied.retain(|n, _| members.contains(n));
        self.leaving.retain(|n| members.contains(n));
    }
}
