//! The fleet's HTTP surface, served on the REST listener.
//!
//! - `/sluice/internal/...`: Raft RPCs, joins, commands and task configs for the leader. Every
//!   request must carry the cluster secret; requests a non-leader cannot serve are relayed to the
//!   leader.
//! - [`forward_writes`]: REST writes (`POST`/`PUT`/`DELETE` under `/connectors`) that reach a
//!   non-leader are forwarded to the leader, as Kafka Connect does; with no known leader, or when
//!   a forwarded request meets another non-leader, the answer is 409.
//! - `GET /fleet`: workers, leader, voters, each worker's assignment and the generation.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use openraft::BasicNode;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, VoteRequest,
};
use serde::Deserialize;
use serde_json::json;
use sluice_connector_api::Props;

use super::discovery::JoinRequest;
use super::raft::{Command, NodeId, SECRET_HEADER, TARGET_HEADER, TypeConfig};
use super::{ClusterError, Inner, Node};

/// Marks a request a worker forwarded to the leader.
const FORWARDED_HEADER: &str = "x-sluice-forwarded";

/// Percent-encodes a connector name for a URL path.
pub fn encode_path(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (
        status,
        Json(json!({"error_code": status.as_u16(), "message": message.to_string()})),
    )
        .into_response()
}

fn cluster_error(e: ClusterError) -> Response {
    match e {
        ClusterError::NoLeader => error(StatusCode::CONFLICT, e),
        other => error(StatusCode::SERVICE_UNAVAILABLE, other),
    }
}

pub(super) fn router(inner: Arc<Inner>) -> Router {
    let internal = Router::new()
        .route("/sluice/internal/raft/append", post(raft_append))
        .route("/sluice/internal/raft/vote", post(raft_vote))
        .route("/sluice/internal/raft/snapshot", post(raft_snapshot))
        .route("/sluice/internal/cluster/join", post(join))
        .route("/sluice/internal/cluster/command", post(command))
        .route(
            "/sluice/internal/connectors/{name}/tasks",
            post(task_configs),
        )
        .route("/sluice/internal/isolate", put(isolate))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&inner),
            authenticate,
        ));
    Router::new()
        .route("/fleet", get(fleet))
        .merge(internal)
        .with_state(inner)
}

/// Compares in time independent of where the first difference is.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn authenticate(State(inner): State<Arc<Inner>>, req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get(SECRET_HEADER)
        .is_some_and(|v| same_secret(v.as_bytes(), inner.secret.as_bytes()));
    if !ok {
        return error(
            StatusCode::UNAUTHORIZED,
            "internal request without the right cluster secret (cluster.secret)",
        );
    }
    next.run(req).await
}

/// Why an internal request is refused.
struct Refusal(StatusCode, &'static str);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

/// The current node if it is the one a Raft RPC is meant for.
fn addressed_node(inner: &Inner, headers: &HeaderMap) -> Result<Arc<Node>, Refusal> {
    let node = reachable_node(inner)?;
    let target = headers
        .get(TARGET_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<NodeId>().ok());
    if target == Some(node.id) {
        Ok(node)
    } else {
        Err(Refusal(
            StatusCode::GONE,
            "this worker is not the node addressed (it restarted as a new node)",
        ))
    }
}

/// The current node, unless there is none or this worker is isolated.
fn reachable_node(inner: &Inner) -> Result<Arc<Node>, Refusal> {
    if inner.isolated.load(Ordering::SeqCst) {
        return Err(Refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "isolated by fault injection",
        ));
    }
    inner.node().ok_or(Refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        "not a fleet member yet",
    ))
}

/// Refuses RPCs from nodes outside this node's membership (removed workers must not disrupt the
/// fleet with stale elections); a node with no membership yet accepts its first leader.
fn check_sender(node: &Node, sender: Option<NodeId>) -> Result<(), Refusal> {
    let metrics = node.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let known = membership.nodes().count() == 0
        || sender.is_some_and(|s| membership.get_node(&s).is_some());
    if known {
        Ok(())
    } else {
        Err(Refusal(
            StatusCode::FORBIDDEN,
            "sender is not a member of this fleet",
        ))
    }
}

/// The node an RPC from `sender` is addressed to, if it may answer it.
fn rpc_target(
    inner: &Inner,
    headers: &HeaderMap,
    sender: Option<NodeId>,
) -> Result<Arc<Node>, Refusal> {
    let node = addressed_node(inner, headers)?;
    check_sender(&node, sender)?;
    Ok(node)
}

/// The answer to an internal request that returns nothing.
fn done(result: Result<(), ClusterError>) -> Response {
    match result {
        Ok(()) => Json(()).into_response(),
        Err(e) => cluster_error(e),
    }
}

async fn raft_append(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Json(rpc): Json<AppendEntriesRequest<TypeConfig>>,
) -> Response {
    let sender = rpc.vote.leader_id().voted_for();
    let node = match rpc_target(&inner, &headers, sender) {
        Ok(n) => n,
        Err(r) => return r.into_response(),
    };
    let result = node.raft.append_entries(rpc).await;
    if let Ok(response) = &result
        && !matches!(response, AppendEntriesResponse::HigherVote(_))
    {
        node.touch_leader_contact(sender);
    }
    Json(result).into_response()
}

async fn raft_vote(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Json(rpc): Json<VoteRequest<NodeId>>,
) -> Response {
    let node = match rpc_target(&inner, &headers, rpc.vote.leader_id().voted_for()) {
        Ok(n) => n,
        Err(r) => return r.into_response(),
    };
    Json(node.raft.vote(rpc).await).into_response()
}

async fn raft_snapshot(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Json(rpc): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Response {
    let sender = rpc.vote.leader_id().voted_for();
    let node = match rpc_target(&inner, &headers, sender) {
        Ok(n) => n,
        Err(r) => return r.into_response(),
    };
    let result = node.raft.install_snapshot(rpc).await;
    if result.is_ok() {
        node.touch_leader_contact(sender);
    }
    Json(result).into_response()
}

async fn join(State(inner): State<Arc<Inner>>, Json(request): Json<JoinRequest>) -> Response {
    let node = match reachable_node(&inner) {
        Ok(n) => n,
        Err(r) => return r.into_response(),
    };
    if !node.is_leader() {
        return done(
            inner
                .to_leader("/sluice/internal/cluster/join", &request)
                .await,
        );
    }
    tracing::info!(
        node = request.node,
        url = request.url,
        "worker joining the fleet"
    );
    match node
        .raft
        .add_learner(request.node, BasicNode::new(&request.url), true)
        .await
    {
        Ok(_) => Json(()).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

async fn command(State(inner): State<Arc<Inner>>, Json(command): Json<Command>) -> Response {
    if let Err(r) = reachable_node(&inner) {
        return r.into_response();
    }
    done(inner.submit(command).await)
}

async fn task_configs(
    State(inner): State<Arc<Inner>>,
    Path(name): Path<String>,
    Json(tasks): Json<Vec<Props>>,
) -> Response {
    let node = match reachable_node(&inner) {
        Ok(n) => n,
        Err(r) => return r.into_response(),
    };
    if !node.is_leader() {
        let path = format!("/sluice/internal/connectors/{}/tasks", encode_path(&name));
        return done(inner.to_leader(&path, &tasks).await);
    }
    if !inner.configs.snapshot().connectors.contains_key(&name) {
        return error(StatusCode::NOT_FOUND, format!("Connector {name} not found"));
    }
    match inner.configs.put_task_configs(&name, &tasks).await {
        Ok(()) => Json(()).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

#[derive(Deserialize)]
struct Isolate {
    isolated: bool,
}

async fn isolate(State(inner): State<Arc<Inner>>, Json(body): Json<Isolate>) -> Response {
    if !inner.settings.fault_injection {
        return error(
            StatusCode::NOT_FOUND,
            "fault injection is disabled (cluster.fault.injection.enable=false)",
        );
    }
    inner.isolated.store(body.isolated, Ordering::SeqCst);
    tracing::warn!(
        isolated = body.isolated,
        "fault injection: isolation changed"
    );
    Json(json!({"isolated": body.isolated})).into_response()
}

async fn fleet(State(inner): State<Arc<Inner>>) -> Response {
    let view = inner.view.borrow().clone();
    let Some(node) = inner.node() else {
        return Json(json!({
            "this_worker": {"url": inner.url, "node_id": null, "live": false},
            "leader": null,
            "workers": [],
        }))
        .into_response();
    };
    let metrics = node.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
    let state = node.fleet.borrow().clone();
    let workers: Vec<serde_json::Value> = membership
        .nodes()
        .map(|(id, n)| {
            let (connectors, tasks) = state.assignment.of(*id);
            json!({
                "node_id": id,
                "worker_id": worker_id(&n.addr),
                "url": n.addr,
                "voter": voters.contains(id),
                "leaving": state.leaving.contains(id),
                "applied_generation": state.applied.get(id),
                "connectors": connectors,
                "tasks": tasks.iter().map(|(c, t)| json!({"connector": c, "task": t})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let leader = metrics.current_leader.and_then(|l| {
        membership
            .get_node(&l)
            .map(|n| json!({"node_id": l, "worker_id": worker_id(&n.addr), "url": n.addr}))
    });
    Json(json!({
        "epoch": node.epoch,
        // A voter change in flight (Raft joint consensus): until it commits, the old voters'
        // majority is needed as well as the new one's.
        "membership_changing": membership.get_joint_config().len() > 1,
        "generation": state.assignment.generation,
        "config_offset": state.assignment.config_offset,
        "leader": leader,
        "this_worker": {
            "node_id": node.id,
            "worker_id": worker_id(&inner.url),
            "url": inner.url,
            "live": view.live,
            "connectors": view.connectors,
            "tasks": view.tasks.iter().map(|(c, t)| json!({"connector": c, "task": t})).collect::<Vec<_>>(),
        },
        "workers": workers,
    }))
    .into_response()
}

/// `host:port` of a worker URL, Kafka Connect's worker id.
pub fn worker_id(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_owned()
}

/// State of the [`forward_writes`] middleware.
#[derive(Clone)]
pub struct Forwarder(pub(super) Arc<Inner>);

/// Forwards REST writes to the leader (see the module docs).
pub async fn forward_writes(State(f): State<Forwarder>, req: Request, next: Next) -> Response {
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        && req.uri().path().starts_with("/connectors");
    if !write {
        return next.run(req).await;
    }
    let inner = &f.0;
    let Some(node) = inner.node() else {
        return cluster_error(ClusterError::NoLeader);
    };
    if node.is_leader() {
        return next.run(req).await;
    }
    if req.headers().contains_key(FORWARDED_HEADER) {
        return cluster_error(ClusterError::NoLeader);
    }
    let Some((_, url)) = node.leader_url() else {
        return cluster_error(ClusterError::NoLeader);
    };
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return error(StatusCode::BAD_REQUEST, "could not read the request body");
    };
    let target = format!(
        "{}{}",
        url.trim_end_matches('/'),
        parts.uri.path_and_query().map_or("", |p| p.as_str())
    );
    let mut request = inner
        .client
        .request(parts.method.clone(), &target)
        .header(FORWARDED_HEADER, "1")
        .timeout(std::time::Duration::from_secs(90))
        .body(body);
    if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
        request = request.header(header::CONTENT_TYPE, ct.clone());
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
            let bytes = response.bytes().await.unwrap_or_default();
            let mut out = Response::new(Body::from(bytes));
            *out.status_mut() = status;
            out.headers_mut().insert(
                header::CONTENT_TYPE,
                content_type.unwrap_or(HeaderValue::from_static("application/json")),
            );
            out
        }
        Err(e) => error(
            StatusCode::CONFLICT,
            format!(
                "Cannot complete request because forwarding to the leader at {url} failed: {e}"
            ),
        ),
    }
}
