//! The relay's HTTP API: the observer's routes, answered for every observer at once.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use flowscope_model::api::{Endpoint, NodeInfo, RelayStatus, ServerStatus};
use flowscope_model::{
    Timestamp,
    flow::{GetFlowsResponse, NodeState},
    graph::{GraphSnapshot, ServiceGraph},
};
use flowscope_server::graph::GraphQuery;

use crate::{RelayState, flows, http};

/// Unavailable nodes listed by name in the status at most (Hubble's relay caps it at 10 too).
const MAX_UNAVAILABLE_LISTED: usize = 10;
/// How long the endpoints and graph requests wait for the observers.
const GATHER_TIMEOUT: Duration = Duration::from_secs(10);
/// Flows parsed per blocking batch when building the graph.
const GRAPH_BATCH: usize = 4096;

pub fn router(state: Arc<RelayState>) -> Router {
    Router::new()
        .route("/api/v1/flows", get(flows::flows))
        .route("/api/v1/status", get(status))
        .route("/api/v1/nodes", get(nodes))
        .route("/api/v1/endpoints", get(endpoints))
        .route("/api/v1/graph", get(graph))
        .route("/", get(flowscope_server::ui::index))
        .route("/ui/{file}", get(flowscope_server::ui::asset))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        // Hubble's gRPC API on the same port (HTTP/2), as hubble-relay serves it.
        .route_service(
            "/observer.Observer/{*method}",
            flowscope_proto::servers::observer::observer_server::ObserverServer::new(
                crate::grpc::GrpcRelay(state.clone()),
            ),
        )
        .with_state(state)
}

/// Ready once the peer inputs were read: the relay then knows which observers to ask.
async fn readyz(State(st): State<Arc<RelayState>>) -> Response {
    if st.pool.discovered() {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting").into_response()
    }
}

/// Hubble's ServerStatus over the relay's observers: flows summed over the connected nodes,
/// uptime the longest, and the unavailable nodes (the first ten by name).
async fn status(State(st): State<Arc<RelayState>>) -> Json<ServerStatus> {
    Json(status_body(&st))
}

pub(crate) fn status_body(st: &RelayState) -> ServerStatus {
    let peers = st.pool.peers();
    let nodes: Vec<NodeInfo> = peers.iter().map(|p| p.node()).collect();
    let times: Vec<_> = peers.iter().map(|p| p.flow_times()).collect();
    let oldest = times.iter().filter_map(|t| t.0).min();
    let newest = times.iter().filter_map(|t| t.1).max();
    let connected: Vec<&NodeInfo> = nodes
        .iter()
        .filter(|n| n.state == NodeState::Connected)
        .collect();
    let mut unavailable: Vec<String> = nodes
        .iter()
        .filter(|n| n.state != NodeState::Connected)
        .map(|n| n.name.clone())
        .collect();
    let num_unavailable = unavailable.len() as u32;
    unavailable.sort();
    unavailable.truncate(MAX_UNAVAILABLE_LISTED);
    ServerStatus {
        num_flows: connected.iter().map(|n| n.num_flows).sum(),
        max_flows: connected.iter().map(|n| n.max_flows).sum(),
        seen_flows: connected.iter().map(|n| n.seen_flows).sum(),
        flows_rate: connected.iter().map(|n| n.flows_rate).sum(),
        uptime_ns: connected.iter().map(|n| n.uptime_ns).max().unwrap_or(0),
        version: env!("CARGO_PKG_VERSION").to_string(),
        num_connected_nodes: connected.len() as u32,
        num_unavailable_nodes: num_unavailable,
        unavailable_nodes: unavailable,
        oldest_flow_time: oldest,
        newest_flow_time: newest,
        subscribers: st.metrics.requests.get().max(0) as u64,
        relay: Some(RelayStatus {
            uptime_ns: st.started.elapsed().as_nanos() as u64,
            peers: nodes.len(),
            discovery_errors: st.pool.discovery_errors(),
        }),
        ..ServerStatus::default()
    }
}

/// Hubble's GetNodes: every observer with its state, sorted by name.
async fn nodes(State(st): State<Arc<RelayState>>) -> Json<Vec<NodeInfo>> {
    Json(node_list(&st))
}

pub(crate) fn node_list(st: &RelayState) -> Vec<NodeInfo> {
    let mut nodes: Vec<NodeInfo> = st.pool.peers().iter().map(|p| p.node()).collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    nodes
}

/// The endpoints of every connected observer, each pod once.
async fn endpoints(State(st): State<Arc<RelayState>>) -> Response {
    Json(gather_endpoints(&st).await).into_response()
}

pub(crate) async fn gather_endpoints(st: &RelayState) -> Vec<Endpoint> {
    let asks = st
        .pool
        .peers()
        .into_iter()
        .filter(|p| p.is_connected())
        .map(|p| async move {
            http::get_json::<Vec<Endpoint>>(
                st.pool.tls.as_ref().map(|t| &t.http1),
                &p.address,
                "/api/v1/endpoints",
                GATHER_TIMEOUT,
            )
            .await
        });
    let answers = futures_util::future::join_all(asks).await;
    let mut seen = std::collections::BTreeSet::new();
    let mut all = Vec::new();
    for endpoint in answers.into_iter().flatten().flatten() {
        let key = (endpoint.namespace.clone(), endpoint.pod_name.clone());
        if seen.insert(key) {
            all.push(endpoint);
        }
    }
    all
}

/// The service map of the flows the connected observers hold, as an observer builds it from
/// its own (same query parameters).
async fn graph(State(st): State<Arc<RelayState>>, Query(query): Query<GraphQuery>) -> Response {
    let request = match query.parse() {
        Ok(r) => r,
        Err(reason) => return (StatusCode::BAD_REQUEST, reason).into_response(),
    };
    if let Err(e) = request.flows.compile() {
        return (StatusCode::BAD_REQUEST, format!("request: {e}")).into_response();
    }
    let mut history = request.flows.clone();
    history.number = 0;
    history.first = false;
    history.follow = false;
    let mut lines = flows::history(&st, &history);
    let mut graph = ServiceGraph::new(request.config);
    let deadline = tokio::time::Instant::now() + GATHER_TIMEOUT;
    let mut batch = Vec::with_capacity(GRAPH_BATCH);
    loop {
        batch.clear();
        let got = tokio::time::timeout_at(deadline, lines.recv_many(&mut batch, GRAPH_BATCH)).await;
        let done = !matches!(got, Ok(n) if n > 0);
        if !batch.is_empty() {
            let lines = std::mem::take(&mut batch);
            let built = tokio::task::spawn_blocking(move || {
                for line in &lines {
                    if let Ok(response) = serde_json::from_str::<GetFlowsResponse>(line)
                        && let Some(flow) = response.flow()
                    {
                        graph.ingest(flow);
                    }
                }
                (graph, lines)
            })
            .await;
            match built {
                Ok((g, l)) => {
                    graph = g;
                    batch = l;
                }
                Err(e) => {
                    return (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("building the graph: {e}"),
                    )
                        .into_response();
                }
            }
        }
        if done {
            break;
        }
    }
    Json::<GraphSnapshot>(graph.snapshot(&request.view, Some(Timestamp::now()))).into_response()
}
