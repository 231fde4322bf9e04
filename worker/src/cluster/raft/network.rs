//! Raft RPCs over the workers' HTTP listeners.
//!
//! Each RPC is a JSON `POST` to `<peer>/sluice/internal/raft/<rpc>` carrying the cluster secret in
//! [`SECRET_HEADER`]; the answer is the peer's `Result` as JSON. Every successful answer is
//! recorded in [`Liveness`], which is how the leader tells a live worker from a dead one. When the
//! worker is isolated by fault injection, every RPC fails as if the peer were unreachable.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{NodeId, TypeConfig};

/// Header carrying the cluster secret on every internal request.
pub const SECRET_HEADER: &str = "x-sluice-cluster-secret";

/// Header naming the node a Raft RPC is meant for: a worker restarted on the same address is a
/// new node and must not answer for the old one.
pub const TARGET_HEADER: &str = "x-sluice-target-node";

/// When each peer last answered an RPC.
#[derive(Default)]
pub struct Liveness {
    answered: Mutex<BTreeMap<NodeId, Instant>>,
}

impl Liveness {
    fn touch(&self, node: NodeId) {
        self.answered.lock().insert(node, Instant::now());
    }

    /// When `node` last answered, if ever.
    pub fn last_answer(&self, node: NodeId) -> Option<Instant> {
        self.answered.lock().get(&node).copied()
    }
}

/// Creates a client per peer.
#[derive(Clone)]
pub struct HttpNetwork {
    client: reqwest::Client,
    secret: Arc<str>,
    liveness: Arc<Liveness>,
    isolated: Arc<AtomicBool>,
}

impl HttpNetwork {
    /// A transport authenticating with `secret`.
    pub fn new(
        client: reqwest::Client,
        secret: Arc<str>,
        liveness: Arc<Liveness>,
        isolated: Arc<AtomicBool>,
    ) -> Self {
        Self {
            client,
            secret,
            liveness,
            isolated,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer {
            target,
            url: node.addr.trim_end_matches('/').to_owned(),
            net: self.clone(),
        }
    }
}

/// One peer.
pub struct Peer {
    target: NodeId,
    url: String,
    net: HttpNetwork,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

impl Peer {
    async fn call<Req, Resp, E>(
        &self,
        rpc: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        if self.net.isolated.load(Ordering::SeqCst) {
            return Err(RPCError::Unreachable(Unreachable::new(&TransportError(
                "isolated by fault injection".into(),
            ))));
        }
        let response = self
            .net
            .client
            .post(format!("{}/sluice/internal/raft/{rpc}", self.url))
            .header(SECRET_HEADER, &*self.net.secret)
            .header(TARGET_HEADER, self.target.to_string())
            .timeout(option.hard_ttl().max(Duration::from_millis(200)))
            .json(req)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                }
            })?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            return Err(RPCError::Network(NetworkError::new(&TransportError(
                format!("{rpc} to {}: HTTP {status}: {body}", self.url),
            ))));
        }
        let result: Result<Resp, E> = response
            .json()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.net.liveness.touch(self.target);
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call("snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("vote", &rpc, &option).await
    }
}
