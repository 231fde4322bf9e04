//! The worker fleet: membership, leadership and the assignment of connectors and tasks.
//!
//! Guarantees (the reasoning is in `DESIGN.md` beside this file):
//! - workers sharing a config topic form one fleet: formation is decided by the first claim in
//!   the single-partition config topic, so two workers starting at once cannot form two;
//! - one Raft group (openraft, RPCs over the REST listener, authenticated by the cluster secret)
//!   agrees on membership and on the assignment the leader computes; the leader keeps a small
//!   voter set and replaces voters that die;
//! - a worker runs only what the current assignment gives it, only after reading the config
//!   topic up to the offset the assignment was computed from, and nothing at all once it has not
//!   heard from a leader for `session.timeout.ms`;
//! - a unit moving between live workers is stopped on the old one before it starts on the new.
//!
//! The code is split by role behind the one [`Cluster`] handle: [`discovery`] (find or form the
//! fleet), [`leader`] (liveness, voters, assignment), [`member`] (what every worker does: session,
//! view, acknowledgements, leaving) and [`http`] (internal API, forwarding, `GET /fleet`).

pub mod assign;
mod discovery;
pub mod http;
mod leader;
mod member;
pub mod raft;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::ClusterSettings;
use crate::store::{ConfigStore, StatusStore};
use raft::{Command, FleetState, HttpNetwork, Liveness, NodeId, Raft, RestartRequest};

pub use member::View;

/// One incarnation of this worker in the fleet: a Raft node with a fresh id.
pub(crate) struct Node {
    id: NodeId,
    epoch: u64,
    raft: Raft,
    fleet: watch::Receiver<FleetState>,
    /// When a leader last reached this node (or the node joined), and which leader.
    /// The second part is the last other leader heard from, and when.
    leader_contact: Mutex<(Instant, Option<(NodeId, Instant)>)>,
    /// Ends this incarnation's loops.
    stop: CancellationToken,
}

impl Node {
    /// Records contact with the fleet: a leader's RPC (`leader` is its id) or, as leader, a
    /// quorum's answer.
    fn touch_leader_contact(&self, leader: Option<NodeId>) {
        let mut contact = self.leader_contact.lock();
        let now = Instant::now();
        contact.0 = now;
        if let Some(l) = leader.filter(|l| *l != self.id) {
            contact.1 = Some((l, now));
        }
    }

    fn since_leader_contact(&self) -> Duration {
        self.leader_contact.lock().0.elapsed()
    }

    /// The last leader this node heard from, and when.
    fn last_leader(&self) -> Option<(NodeId, Instant)> {
        self.leader_contact.lock().1
    }

    fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == openraft::ServerState::Leader
    }

    fn leader_url(&self) -> Option<(NodeId, String)> {
        let metrics = self.raft.metrics().borrow().clone();
        let leader = metrics.current_leader?;
        let node = metrics.membership_config.membership().get_node(&leader)?;
        Some((leader, node.addr.clone()))
    }
}

pub(crate) struct Inner {
    settings: ClusterSettings,
    secret: Arc<str>,
    url: String,
    configs: Arc<ConfigStore>,
    statuses: Arc<StatusStore>,
    client: reqwest::Client,
    liveness: Arc<Liveness>,
    isolated: Arc<AtomicBool>,
    node: Mutex<Option<Arc<Node>>>,
    view: watch::Sender<View>,
    /// Set while the worker shuts down: stop re-forming.
    leaving: AtomicBool,
    shutdown: CancellationToken,
}

/// Errors talking to the fleet; each is transient, so a retry can help.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No leader is known right now (an election or a rebalance is under way); retry.
    #[error(
        "Cannot complete request momentarily due to no known leader URL, likely because a rebalance was underway."
    )]
    NoLeader,
    /// The leader answered with an error.
    #[error("the leader refused the request: {0}")]
    Refused(String),
    /// The leader could not be reached.
    #[error("cannot reach the leader at {url}: {source}")]
    Unreachable {
        /// The leader's URL.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
}

/// The handle the rest of the worker uses.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl Cluster {
    /// Starts taking part in the fleet whose records are in `configs`; `url` is how other workers
    /// reach this one. Returns at once: discovery runs in the background.
    pub fn start(
        settings: ClusterSettings,
        group_id: &str,
        url: String,
        configs: Arc<ConfigStore>,
        statuses: Arc<StatusStore>,
        shutdown: CancellationToken,
    ) -> Self {
        let secret: Arc<str> = match &settings.secret {
            Some(s) => s.as_str().into(),
            None => {
                tracing::warn!(
                    "cluster.secret is not set: the internal API accepts any worker of group.id {group_id}; set cluster.secret in production"
                );
                format!("sluice-unset-secret:{group_id}").into()
            }
        };
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(500))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        let (view, _) = watch::channel(View::default());
        let inner = Arc::new(Inner {
            settings,
            secret,
            url,
            configs,
            statuses,
            client,
            liveness: Arc::new(Liveness::default()),
            isolated: Arc::new(AtomicBool::new(false)),
            node: Mutex::new(None),
            view,
            leaving: AtomicBool::new(false),
            shutdown,
        });
        tokio::spawn(discovery::run(Arc::clone(&inner)));
        Self { inner }
    }

    /// What this worker should run; changes with every assignment and session change.
    pub fn view(&self) -> watch::Receiver<View> {
        self.inner.view.subscribe()
    }

    /// Whether this worker leads the fleet now.
    pub fn is_leader(&self) -> bool {
        self.inner.node().is_some_and(|n| n.is_leader())
    }

    /// The leader's URL, unless this worker is the leader or none is known.
    pub fn leader_url(&self) -> Option<String> {
        let node = self.inner.node()?;
        let (id, url) = node.leader_url()?;
        (id != node.id).then_some(url)
    }

    /// Tells the leader this worker has applied `generation` (stopped what it no longer owns).
    pub async fn applied(&self, generation: i64) {
        let Some(node) = self.inner.node() else {
            return;
        };
        let cmd = Command::Applied {
            node: node.id,
            generation,
        };
        for _ in 0..5 {
            match self.inner.submit(cmd.clone()).await {
                Ok(()) => return,
                Err(e) => tracing::debug!("reporting generation {generation} applied: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Asks every worker to restart what it runs of `request`.
    pub async fn restart(&self, request: RestartRequest) -> Result<(), ClusterError> {
        self.inner.submit(Command::Restart(request)).await
    }

    /// Hands this worker's work to others and leaves the fleet, waiting at most `timeout`.
    pub async fn leave(&self, timeout: Duration) {
        member::leave(&self.inner, timeout).await;
    }

    /// The router for the internal API and `GET /fleet`.
    pub fn router(&self) -> axum::Router {
        http::router(Arc::clone(&self.inner))
    }

    /// Middleware state for forwarding REST writes to the leader.
    pub fn forwarder(&self) -> http::Forwarder {
        http::Forwarder(Arc::clone(&self.inner))
    }

    /// Submits task configs to the leader, the only writer of the config topic.
    pub async fn put_task_configs(
        &self,
        connector: &str,
        tasks: &[sluice_connector_api::Props],
    ) -> Result<(), ClusterError> {
        if self.is_leader() {
            return self
                .inner
                .configs
                .put_task_configs(connector, tasks)
                .await
                .map_err(|e| ClusterError::Refused(e.to_string()));
        }
        let path = format!(
            "/sluice/internal/connectors/{}/tasks",
            http::encode_path(connector)
        );
        self.inner.to_leader::<_, ()>(&path, tasks).await
    }
}

impl Inner {
    fn node(&self) -> Option<Arc<Node>> {
        self.node.lock().clone()
    }

    fn session_timeout(&self) -> Duration {
        Duration::from_millis(self.settings.session_timeout_ms)
    }

    /// Commits `command` through the leader.
    async fn submit(&self, command: Command) -> Result<(), ClusterError> {
        let node = self.node().ok_or(ClusterError::NoLeader)?;
        if node.is_leader() {
            return node
                .raft
                .client_write(command)
                .await
                .map(|_| ())
                .map_err(|e| ClusterError::Refused(e.to_string()));
        }
        self.to_leader::<_, ()>("/sluice/internal/cluster/command", &command)
            .await
    }

    /// POSTs `body` to `path` on the leader.
    async fn to_leader<B: serde::Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, ClusterError> {
        if self.isolated.load(Ordering::SeqCst) {
            return Err(ClusterError::NoLeader);
        }
        let node = self.node().ok_or(ClusterError::NoLeader)?;
        let (_, url) = node.leader_url().ok_or(ClusterError::NoLeader)?;
        self.post(&url, path, body).await
    }

    async fn post<B: serde::Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        url: &str,
        path: &str,
        body: &B,
    ) -> Result<R, ClusterError> {
        let unreachable = |source| ClusterError::Unreachable {
            url: url.to_owned(),
            source,
        };
        let response = self
            .client
            .post(format!("{}{path}", url.trim_end_matches('/')))
            .header(raft::SECRET_HEADER, &*self.secret)
            .timeout(Duration::from_secs(10))
            .json(body)
            .send()
            .await
            .map_err(unreachable)?;
        if !response.status().is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(ClusterError::Refused(text));
        }
        response.json().await.map_err(unreachable)
    }

    /// Whether a majority of the voters (this leader included) answered within the session
    /// timeout. Counted from this worker's own record of answers, not from Raft's metrics, which
    /// are only refreshed on state changes. During a voter change (Raft joint consensus) a commit
    /// needs a majority of the old voters and one of the new voters, so both must have answered:
    /// a voter of the old set that dies mid-change leaves the leader unable to commit, and it must
    /// then give up like a leader that lost its quorum, not keep the fleet stalled.
    fn quorum_answers(&self, node: &Node) -> bool {
        let metrics = node.raft.metrics().borrow().clone();
        let configs = metrics.membership_config.membership().get_joint_config();
        let session = self.session_timeout();
        let answered = |v: &NodeId| {
            *v == node.id
                || self
                    .liveness
                    .last_answer(*v)
                    .is_some_and(|t| t.elapsed() < session)
        };
        configs
            .iter()
            .all(|voters| voters.iter().filter(|v| answered(v)).count() * 2 > voters.len())
    }

    fn members(node: &Node) -> (BTreeSet<NodeId>, BTreeSet<NodeId>) {
        let metrics = node.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let all: BTreeSet<NodeId> = membership.nodes().map(|(id, _)| *id).collect();
        (voters, all)
    }
}

fn network(inner: &Inner) -> HttpNetwork {
    HttpNetwork::new(
        inner.client.clone(),
        Arc::clone(&inner.secret),
        Arc::clone(&inner.liveness),
        Arc::clone(&inner.isolated),
    )
}
