//! The service map: flows folded into a graph of workloads (nodes) and the connections between
//! them (edges), as the UI draws it and `GET /api/v1/graph` serves it.
//!
//! It lives in the model so the observer (which builds it from its flow store for the first
//! paint) and the UI (which keeps it current from the flow stream) aggregate with one code:
//! the same flow always lands on the same node and edge, whichever side counted it.
//!
//! - A **node** is a workload, named by the first of the configured labels it carries
//!   ([`DEFAULT_NAME_LABELS`]), else its owning workload, else its pod; endpoints outside the
//!   cluster are `host`, `world`, another reserved entity, or the DNS name they were reached by.
//!   Nodes are keyed by (namespace, name), so a Deployment's replicas are one node.
//! - An **edge** is (source, destination, destination port, protocol), as Hubble UI's links.
//!   Replies are counted on the request's edge (client to server), so a connection is one edge.
//!   Each edge keeps how many flows of each verdict it saw ([`VerdictClass`] turns that into a
//!   colour), a rate over a sliding window, drop reasons, deciding policies, and for HTTP its
//!   methods, paths and status codes.
//! - The graph is bounded: past [`GraphConfig::max_nodes`] or [`GraphConfig::max_edges`] the
//!   least recently seen are evicted, and counted.
//!
//! There is no clock here (the model builds for wasm): time is the flows' own, and a snapshot's
//! rates are taken at a `now` the caller passes, or at the newest flow's time.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use petgraph::stable_graph::{EdgeIndex, NodeIndex, StableDiGraph};
use petgraph::visit::{EdgeRef as _, IntoEdgeReferences as _};
use serde::{Deserialize, Serialize};

use crate::flow::{DropReason, Endpoint, Flow, Layer4, Policy, Verdict};
use crate::time::Timestamp;

/// Labels that name a workload, in order of preference: the recommended Kubernetes label, the
/// one system add-ons carry (`k8s-app: kube-dns`), then the common `app`. Hubble UI uses the
/// same three; users asked for the list to be configurable (hubble-ui #721, #979).
pub const DEFAULT_NAME_LABELS: [&str; 3] = ["app.kubernetes.io/name", "k8s-app", "app"];

/// Nodes kept before the least recently seen are evicted. A map of more than this many cards is
/// no longer readable anyway; the namespace view narrows it down.
pub const DEFAULT_MAX_NODES: usize = 1_000;
/// Edges kept before the least recently seen are evicted: a few per node pair and port.
pub const DEFAULT_MAX_EDGES: usize = 5_000;
/// The sliding window of an edge's rate, in one-second buckets: long enough to smooth the
/// lab's every-2s probes into a steady rate, short enough to show traffic stopping quickly.
pub const RATE_WINDOW_SECS: usize = 10;
/// Distinct HTTP methods, paths, codes, pods, policies or drop reasons kept per node or edge:
/// enough for a label or a tooltip; an API with thousands of paths would otherwise grow an edge
/// without bound.
pub const MAX_SET_VALUES: usize = 16;
/// Labels kept per node (those of the first endpoint seen).
const MAX_NODE_LABELS: usize = 32;
/// Evicting one item at a time would scan the whole graph per new item once it is full;
/// evicting an eighth at a time makes eviction cost amortised O(1) per insertion.
const EVICT_FRACTION: usize = 8;

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// How the graph names and bounds its nodes and edges.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GraphConfig {
    /// Label keys (without the `k8s:` source) that name a workload, in order of preference.
    pub name_labels: Vec<String>,
    /// Nodes kept at most; see [`DEFAULT_MAX_NODES`].
    pub max_nodes: usize,
    /// Edges kept at most; see [`DEFAULT_MAX_EDGES`].
    pub max_edges: usize,
}

impl Default for GraphConfig {
    fn default() -> Self {
        GraphConfig {
            name_labels: DEFAULT_NAME_LABELS.iter().map(|s| s.to_string()).collect(),
            max_nodes: DEFAULT_MAX_NODES,
            max_edges: DEFAULT_MAX_EDGES,
        }
    }
}

/// What a node stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// Pods named by a naming label or their owning workload.
    Workload,
    /// A pod with neither: named by the pod itself.
    Pod,
    /// The node's own host (`reserved:host`).
    Host,
    /// Outside the cluster, reached by a known DNS name.
    Dns,
    /// Outside the cluster, no name known (`reserved:world`).
    World,
    /// Another reserved identity: `remote-node`, `kube-apiserver`, `health`, `ingress`, ...
    Reserved,
}

/// A node's identity: its namespace (empty outside the cluster) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeKey {
    /// Kubernetes namespace; empty for `world`, `host`, DNS names and other reserved entities.
    pub namespace: String,
    /// The workload's name.
    pub name: String,
}

impl NodeKey {
    /// `namespace/name`, or just `name` outside the cluster: the id the UI and API use.
    pub fn id(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }
}

/// Where a flow lands in the graph: its nodes (request direction) and edge.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FlowKeys {
    /// The client side.
    pub source: NodeKey,
    /// What the source named it by.
    pub source_kind: NodeKind,
    /// The server side.
    pub destination: NodeKey,
    /// What the destination named it by.
    pub destination_kind: NodeKind,
    /// The server's port; 0 for protocols without ports.
    pub port: u32,
    /// `TCP`, `UDP`, `SCTP`, `ICMPv4`, `ICMPv6`, `VRRP`, `IGMP`, or empty without L4.
    pub protocol: &'static str,
}

impl FlowKeys {
    /// The edge id: `source->destination:port/protocol`.
    pub fn edge_id(&self) -> String {
        edge_id(&self.source, &self.destination, self.port, self.protocol)
    }
}

fn edge_id(source: &NodeKey, destination: &NodeKey, port: u32, protocol: &str) -> String {
    format!(
        "{}->{}:{}/{}",
        source.id(),
        destination.id(),
        port,
        protocol
    )
}

/// The colour of an edge, from the set of verdicts it carried: green when everything was
/// forwarded, red when everything was dropped, dashed red when both happened, amber when
/// something would have been dropped (audit mode) and nothing was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictClass {
    /// Only forwarded (or traced, translated, redirected) flows.
    Forwarded,
    /// Only dropped (or errored) flows.
    Dropped,
    /// Dropped flows and others.
    Mixed,
    /// Audit flows (policy would drop) and no drops.
    Audit,
}

impl VerdictClass {
    /// Classifies flow counts per verdict.
    pub fn of<'a>(counts: impl IntoIterator<Item = (&'a Verdict, &'a u64)>) -> Self {
        let (mut dropped, mut audit, mut other) = (0u64, 0u64, 0u64);
        for (verdict, n) in counts {
            match verdict {
                Verdict::Dropped | Verdict::Error => dropped += n,
                Verdict::Audit => audit += n,
                Verdict::Unknown => {}
                _ => other += n,
            }
        }
        match (dropped > 0, audit > 0 || other > 0) {
            (true, true) => VerdictClass::Mixed,
            (true, false) => VerdictClass::Dropped,
            (false, _) if audit > 0 => VerdictClass::Audit,
            (false, _) => VerdictClass::Forwarded,
        }
    }

    /// The lower-case name, also the CSS class the UI uses.
    pub const fn as_str(self) -> &'static str {
        match self {
            VerdictClass::Forwarded => "forwarded",
            VerdictClass::Dropped => "dropped",
            VerdictClass::Mixed => "mixed",
            VerdictClass::Audit => "audit",
        }
    }
}

/// Which part of the graph a snapshot shows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GraphView {
    /// Only edges with an end in one of these namespaces, and the nodes they join (so peers in
    /// other namespaces and outside the cluster still show). Empty: all namespaces.
    pub namespaces: Vec<String>,
}

impl GraphView {
    /// All namespaces.
    pub fn all() -> Self {
        GraphView::default()
    }

    /// One namespace and its peers.
    pub fn namespace(namespace: impl Into<String>) -> Self {
        GraphView {
            namespaces: vec![namespace.into()],
        }
    }

    fn shows_namespace(&self, namespace: &str) -> bool {
        self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == namespace)
    }
}

/// The whole graph, or a view of it, as served by `GET /api/v1/graph`. Nodes and edges are
/// sorted by id, so equal graphs give equal snapshots.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GraphSnapshot {
    /// The newest flow counted; a client streaming flows counts only those after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<Timestamp>,
    /// The time rates were taken at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub now: Option<Timestamp>,
    /// The window of [`EdgeSnapshot::rate`], in seconds.
    pub rate_window_secs: u32,
    /// Flows counted since the graph began, including those of evicted edges.
    pub flows: u64,
    /// Nodes evicted as least recently seen, since the graph began.
    pub evicted_nodes: u64,
    /// Edges evicted as least recently seen (alone or with a node), since the graph began.
    pub evicted_edges: u64,
    /// Every namespace in the graph (not only the view's), sorted, for a namespace selector.
    pub namespaces: Vec<String>,
    /// The nodes of the view.
    pub nodes: Vec<NodeSnapshot>,
    /// The edges of the view.
    pub edges: Vec<EdgeSnapshot>,
}

/// One workload in a [`GraphSnapshot`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeSnapshot {
    /// `namespace/name` or `name`; see [`NodeKey::id`].
    pub id: String,
    /// Empty outside the cluster.
    pub namespace: String,
    /// The display name.
    pub name: String,
    /// What the node stands for.
    pub kind: NodeKind,
    /// Labels of the first endpoint seen, as `source:key=value`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Pod names seen (at most [`MAX_SET_VALUES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<String>,
    /// Security identities seen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<u32>,
    /// Flows from or to the node.
    pub flows: u64,
    /// Of those, dropped.
    pub dropped: u64,
    /// When the node was first and last part of a flow.
    pub first_seen: Timestamp,
    /// See `first_seen`.
    pub last_seen: Timestamp,
}

/// One (source, destination, port, protocol) in a [`GraphSnapshot`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EdgeSnapshot {
    /// `source->destination:port/protocol`.
    pub id: String,
    /// The client's node id.
    pub source: String,
    /// The server's node id.
    pub destination: String,
    /// The server's port; 0 without ports.
    pub port: u32,
    /// `TCP`, `UDP`, ..., or empty.
    pub protocol: String,
    /// Flows per verdict; the keys are the verdict set.
    pub verdicts: BTreeMap<Verdict, u64>,
    /// The colour the verdict set gives.
    pub class: VerdictClass,
    /// All flows of the edge.
    pub flows: u64,
    /// Flows per second over the last [`GraphSnapshot::rate_window_secs`].
    pub rate: f64,
    /// Why flows were dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop_reasons: Vec<DropReason>,
    /// Policies that allowed or denied flows, as `namespace/name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// HTTP methods, paths and status codes, for HTTP edges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSummary>,
    /// When a flow was first and last counted.
    pub first_seen: Timestamp,
    /// See `first_seen`.
    pub last_seen: Timestamp,
}

impl EdgeSnapshot {
    /// The label drawn on the edge: `8080/TCP` and, for HTTP, `GET,POST /api/items 200,503`.
    pub fn label(&self) -> String {
        let mut label = if self.protocol.is_empty() {
            "?".to_string()
        } else if self.port == 0 {
            self.protocol.clone()
        } else {
            format!("{}/{}", self.port, self.protocol)
        };
        if let Some(http) = &self.http {
            if !http.methods.is_empty() {
                label.push(' ');
                label.push_str(&http.methods.join(","));
            }
            if !http.paths.is_empty() {
                label.push(' ');
                label.push_str(&http.paths.join(","));
            }
            if !http.codes.is_empty() {
                label.push(' ');
                let codes: Vec<String> = http.codes.iter().map(u32::to_string).collect();
                label.push_str(&codes.join(","));
            }
        }
        label
    }
}

/// The HTTP part of an edge.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpSummary {
    /// Request methods seen.
    pub methods: Vec<String>,
    /// URL paths seen (without query).
    pub paths: Vec<String>,
    /// Response status codes seen.
    pub codes: Vec<u32>,
}

struct NodeData {
    key: NodeKey,
    kind: NodeKind,
    labels: Vec<String>,
    pods: BTreeSet<String>,
    identities: BTreeSet<u32>,
    flows: u64,
    dropped: u64,
    first_seen: Timestamp,
    last_seen: Timestamp,
}

struct EdgeData {
    port: u32,
    protocol: &'static str,
    verdicts: BTreeMap<Verdict, u64>,
    flows: u64,
    window: RateWindow,
    drop_reasons: BTreeSet<DropReason>,
    policies: BTreeSet<String>,
    methods: BTreeSet<String>,
    paths: BTreeSet<String>,
    codes: BTreeSet<u32>,
    first_seen: Timestamp,
    last_seen: Timestamp,
}

/// Flow counts in one-second buckets over the last [`RATE_WINDOW_SECS`] seconds.
#[derive(Clone, Copy, Default)]
struct RateWindow {
    /// (second since the epoch, flows in it), at index `second % RATE_WINDOW_SECS`.
    buckets: [(i64, u32); RATE_WINDOW_SECS],
}

impl RateWindow {
    fn add(&mut self, time: Timestamp, n: u32) {
        let second = time.as_unix_nanos().div_euclid(NANOS_PER_SEC);
        let slot = &mut self.buckets[second.rem_euclid(RATE_WINDOW_SECS as i64) as usize];
        if slot.0 == second {
            slot.1 = slot.1.saturating_add(n);
        } else if slot.0 < second {
            *slot = (second, n);
        }
        // A flow older than the bucket's second is older than the window: not a rate any more.
    }

    /// Flows per second over the window that ends with the second of `now`.
    fn rate(&self, now: Timestamp) -> f64 {
        let now_s = now.as_unix_nanos().div_euclid(NANOS_PER_SEC);
        let in_window: u64 = self
            .buckets
            .iter()
            .filter(|(s, _)| *s > now_s - RATE_WINDOW_SECS as i64 && *s <= now_s)
            .map(|(_, n)| u64::from(*n))
            .sum();
        in_window as f64 / RATE_WINDOW_SECS as f64
    }
}

type EdgeKey = (NodeIndex, NodeIndex, u32, &'static str);

/// The service map. Feed it flows with [`ServiceGraph::ingest`]; read it with
/// [`ServiceGraph::snapshot`].
pub struct ServiceGraph {
    config: GraphConfig,
    graph: StableDiGraph<NodeData, EdgeData>,
    nodes: HashMap<NodeKey, NodeIndex>,
    edges: HashMap<EdgeKey, EdgeIndex>,
    newest: Option<Timestamp>,
    flows: u64,
    evicted_nodes: u64,
    evicted_edges: u64,
}

impl Default for ServiceGraph {
    fn default() -> Self {
        ServiceGraph::new(GraphConfig::default())
    }
}

impl ServiceGraph {
    /// An empty graph.
    pub fn new(config: GraphConfig) -> Self {
        ServiceGraph {
            config,
            graph: StableDiGraph::default(),
            nodes: HashMap::new(),
            edges: HashMap::new(),
            newest: None,
            flows: 0,
            evicted_nodes: 0,
            evicted_edges: 0,
        }
    }

    /// How nodes are named and the graph bounded.
    pub fn config(&self) -> &GraphConfig {
        &self.config
    }

    /// Nodes now in the graph.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Edges now in the graph.
    pub fn edge_count(&self) -> usize {
        self.edges.len()
    }

    /// The newest flow time counted.
    pub fn newest(&self) -> Option<Timestamp> {
        self.newest
    }

    /// Where `flow` lands, without counting it; `None` for a flow that names neither endpoint.
    pub fn keys(&self, flow: &Flow) -> Option<FlowKeys> {
        flow_keys(&self.config.name_labels, flow)
    }

    /// Counts one flow. Returns where it landed, or `None` for a flow with no endpoints.
    /// A flow without a time counts at the newest time seen.
    pub fn ingest(&mut self, flow: &Flow) -> Option<FlowKeys> {
        let keys = self.keys(flow)?;
        let time = flow.time.or(self.newest).unwrap_or_default();
        self.newest = Some(self.newest.map_or(time, |n| n.max(time)));
        self.flows += 1;
        let dropped = matches!(flow.verdict, Verdict::Dropped | Verdict::Error);
        let (src_ep, dst_ep) = request_endpoints(flow);
        let src = self.touch_node(&keys.source, keys.source_kind, src_ep, time, dropped);
        let dst = self.touch_node(
            &keys.destination,
            keys.destination_kind,
            dst_ep,
            time,
            dropped,
        );
        let edge_key = (src, dst, keys.port, keys.protocol);
        let edge = match self.edges.get(&edge_key) {
            Some(&e) => e,
            None => {
                let e = self.graph.add_edge(
                    src,
                    dst,
                    EdgeData {
                        port: keys.port,
                        protocol: keys.protocol,
                        verdicts: BTreeMap::new(),
                        flows: 0,
                        window: RateWindow::default(),
                        drop_reasons: BTreeSet::new(),
                        policies: BTreeSet::new(),
                        methods: BTreeSet::new(),
                        paths: BTreeSet::new(),
                        codes: BTreeSet::new(),
                        first_seen: time,
                        last_seen: time,
                    },
                );
                self.edges.insert(edge_key, e);
                e
            }
        };
        if let Some(data) = self.graph.edge_weight_mut(edge) {
            count_on_edge(data, flow, time);
        }
        if self.nodes.len() > self.config.max_nodes {
            self.evict_nodes(&[src, dst]);
        }
        if self.edges.len() > self.config.max_edges {
            self.evict_edges(edge);
        }
        Some(keys)
    }

    /// Counts a batch of flows.
    pub fn ingest_all<'a>(&mut self, flows: impl IntoIterator<Item = &'a Flow>) {
        for flow in flows {
            self.ingest(flow);
        }
    }

    fn touch_node(
        &mut self,
        key: &NodeKey,
        kind: NodeKind,
        endpoint: Option<&Endpoint>,
        time: Timestamp,
        dropped: bool,
    ) -> NodeIndex {
        let index = match self.nodes.get(key) {
            Some(&i) => i,
            None => {
                let labels = endpoint
                    .map(|e| e.labels.iter().take(MAX_NODE_LABELS).cloned().collect())
                    .unwrap_or_default();
                let i = self.graph.add_node(NodeData {
                    key: key.clone(),
                    kind,
                    labels,
                    pods: BTreeSet::new(),
                    identities: BTreeSet::new(),
                    flows: 0,
                    dropped: 0,
                    first_seen: time,
                    last_seen: time,
                });
                self.nodes.insert(key.clone(), i);
                i
            }
        };
        if let Some(node) = self.graph.node_weight_mut(index) {
            node.flows += 1;
            node.dropped += u64::from(dropped);
            node.last_seen = node.last_seen.max(time);
            node.first_seen = node.first_seen.min(time);
            if let Some(ep) = endpoint {
                if !ep.pod_name.is_empty() {
                    insert_bounded(&mut node.pods, &ep.pod_name);
                }
                if ep.identity != 0
                    && (node.identities.len() < MAX_SET_VALUES
                        || node.identities.contains(&ep.identity))
                {
                    node.identities.insert(ep.identity);
                }
            }
        }
        index
    }

    /// Evicts the least recently seen eighth of the nodes (never those in `keep`), with their
    /// edges.
    fn evict_nodes(&mut self, keep: &[NodeIndex]) {
        let excess = self.nodes.len().saturating_sub(self.config.max_nodes);
        let count = excess.max(self.config.max_nodes / EVICT_FRACTION).max(1);
        let mut candidates: Vec<(Timestamp, NodeIndex)> = self
            .nodes
            .values()
            .filter(|i| !keep.contains(i))
            .filter_map(|&i| self.graph.node_weight(i).map(|n| (n.last_seen, i)))
            .collect();
        let count = count.min(candidates.len());
        if count == 0 {
            return;
        }
        if count < candidates.len() {
            candidates.select_nth_unstable(count - 1);
        }
        for &(_, index) in &candidates[..count] {
            let edges: Vec<EdgeIndex> = self
                .graph
                .edges_directed(index, petgraph::Direction::Outgoing)
                .chain(
                    self.graph
                        .edges_directed(index, petgraph::Direction::Incoming),
                )
                .map(|e| e.id())
                .collect();
            for edge in edges {
                self.remove_edge(edge);
            }
            if let Some(node) = self.graph.remove_node(index) {
                self.nodes.remove(&node.key);
                self.evicted_nodes += 1;
            }
        }
    }

    /// Evicts the least recently seen eighth of the edges (never `keep`). Nodes stay: they age
    /// out through the node bound.
    fn evict_edges(&mut self, keep: EdgeIndex) {
        let excess = self.edges.len().saturating_sub(self.config.max_edges);
        let count = excess.max(self.config.max_edges / EVICT_FRACTION).max(1);
        let mut candidates: Vec<(Timestamp, EdgeIndex)> = self
            .edges
            .values()
            .filter(|&&e| e != keep)
            .filter_map(|&e| self.graph.edge_weight(e).map(|d| (d.last_seen, e)))
            .collect();
        let count = count.min(candidates.len());
        if count == 0 {
            return;
        }
        if count < candidates.len() {
            candidates.select_nth_unstable(count - 1);
        }
        for &(_, edge) in &candidates[..count] {
            self.remove_edge(edge);
        }
    }

    fn remove_edge(&mut self, edge: EdgeIndex) {
        let Some((src, dst)) = self.graph.edge_endpoints(edge) else {
            return;
        };
        if let Some(data) = self.graph.remove_edge(edge) {
            self.edges.remove(&(src, dst, data.port, data.protocol));
            self.evicted_edges += 1;
        }
    }

    /// The graph as `view` shows it, with rates taken at `now` (default: the newest flow).
    pub fn snapshot(&self, view: &GraphView, now: Option<Timestamp>) -> GraphSnapshot {
        let now = now.or(self.newest);
        let mut namespaces: BTreeSet<&str> = BTreeSet::new();
        for node in self.graph.node_weights() {
            if !node.key.namespace.is_empty() {
                namespaces.insert(&node.key.namespace);
            }
        }
        let mut shown: BTreeSet<NodeIndex> = BTreeSet::new();
        let mut edges = Vec::new();
        for edge in self.graph.edge_references() {
            let (Some(src), Some(dst)) = (
                self.graph.node_weight(edge.source()),
                self.graph.node_weight(edge.target()),
            ) else {
                continue;
            };
            if !view.shows_namespace(&src.key.namespace)
                && !view.shows_namespace(&dst.key.namespace)
            {
                continue;
            }
            shown.insert(edge.source());
            shown.insert(edge.target());
            edges.push(edge_snapshot(src, dst, edge.weight(), now));
        }
        // Nodes of the view's namespaces show even when their edges were evicted.
        for (key, &index) in &self.nodes {
            if view.shows_namespace(&key.namespace) {
                shown.insert(index);
            }
        }
        let mut nodes: Vec<NodeSnapshot> = shown
            .into_iter()
            .filter_map(|i| self.graph.node_weight(i))
            .map(node_snapshot)
            .collect();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        edges.sort_by(|a, b| a.id.cmp(&b.id));
        GraphSnapshot {
            time: self.newest,
            now,
            rate_window_secs: RATE_WINDOW_SECS as u32,
            flows: self.flows,
            evicted_nodes: self.evicted_nodes,
            evicted_edges: self.evicted_edges,
            namespaces: namespaces.into_iter().map(str::to_string).collect(),
            nodes,
            edges,
        }
    }

    /// A graph that continues from a snapshot (the UI's first paint, before the stream
    /// catches up). Rates restart as if each edge had carried its snapshot rate evenly over the
    /// window, so they fade rather than drop to zero.
    pub fn from_snapshot(config: GraphConfig, snapshot: &GraphSnapshot) -> Self {
        let mut graph = ServiceGraph::new(config);
        graph.newest = snapshot.time;
        graph.flows = snapshot.flows;
        graph.evicted_nodes = snapshot.evicted_nodes;
        graph.evicted_edges = snapshot.evicted_edges;
        let mut by_id: HashMap<&str, NodeIndex> = HashMap::new();
        for node in &snapshot.nodes {
            let key = NodeKey {
                namespace: node.namespace.clone(),
                name: node.name.clone(),
            };
            let index = graph.graph.add_node(NodeData {
                key: key.clone(),
                kind: node.kind,
                labels: node.labels.clone(),
                pods: node.pods.iter().cloned().collect(),
                identities: node.identities.iter().copied().collect(),
                flows: node.flows,
                dropped: node.dropped,
                first_seen: node.first_seen,
                last_seen: node.last_seen,
            });
            graph.nodes.insert(key, index);
            by_id.insert(&node.id, index);
        }
        let now = snapshot.now.or(snapshot.time).unwrap_or_default();
        for edge in &snapshot.edges {
            let (Some(&src), Some(&dst)) = (
                by_id.get(edge.source.as_str()),
                by_id.get(edge.destination.as_str()),
            ) else {
                continue;
            };
            let protocol = protocol_name(&edge.protocol);
            let mut window = RateWindow::default();
            // rate = flows in window / window, so this gives back exactly the snapshot's rate.
            let total = (edge.rate * RATE_WINDOW_SECS as f64).round().max(0.0) as u64;
            let window_secs = RATE_WINDOW_SECS as u64;
            for back in 0..window_secs {
                let n = total / window_secs + u64::from(back < total % window_secs);
                if n > 0 {
                    let second = now.saturating_add_nanos(-(back as i64) * NANOS_PER_SEC);
                    window.add(second, u32::try_from(n).unwrap_or(u32::MAX));
                }
            }
            let http = edge.http.clone().unwrap_or_default();
            let index = graph.graph.add_edge(
                src,
                dst,
                EdgeData {
                    port: edge.port,
                    protocol,
                    verdicts: edge.verdicts.clone(),
                    flows: edge.flows,
                    window,
                    drop_reasons: edge.drop_reasons.iter().copied().collect(),
                    policies: edge.policies.iter().cloned().collect(),
                    methods: http.methods.into_iter().collect(),
                    paths: http.paths.into_iter().collect(),
                    codes: http.codes.into_iter().collect(),
                    first_seen: edge.first_seen,
                    last_seen: edge.last_seen,
                },
            );
            graph.edges.insert((src, dst, edge.port, protocol), index);
        }
        graph
    }
}

fn node_snapshot(node: &NodeData) -> NodeSnapshot {
    NodeSnapshot {
        id: node.key.id(),
        namespace: node.key.namespace.clone(),
        name: node.key.name.clone(),
        kind: node.kind,
        labels: node.labels.clone(),
        pods: node.pods.iter().cloned().collect(),
        identities: node.identities.iter().copied().collect(),
        flows: node.flows,
        dropped: node.dropped,
        first_seen: node.first_seen,
        last_seen: node.last_seen,
    }
}

fn edge_snapshot(
    src: &NodeData,
    dst: &NodeData,
    edge: &EdgeData,
    now: Option<Timestamp>,
) -> EdgeSnapshot {
    let has_http = !(edge.methods.is_empty() && edge.paths.is_empty() && edge.codes.is_empty());
    EdgeSnapshot {
        id: edge_id(&src.key, &dst.key, edge.port, edge.protocol),
        source: src.key.id(),
        destination: dst.key.id(),
        port: edge.port,
        protocol: edge.protocol.to_string(),
        class: VerdictClass::of(&edge.verdicts),
        verdicts: edge.verdicts.clone(),
        flows: edge.flows,
        rate: now.map_or(0.0, |n| edge.window.rate(n)),
        drop_reasons: edge.drop_reasons.iter().copied().collect(),
        policies: edge.policies.iter().cloned().collect(),
        http: has_http.then(|| HttpSummary {
            methods: edge.methods.iter().cloned().collect(),
            paths: edge.paths.iter().cloned().collect(),
            codes: edge.codes.iter().copied().collect(),
        }),
        first_seen: edge.first_seen,
        last_seen: edge.last_seen,
    }
}

fn count_on_edge(edge: &mut EdgeData, flow: &Flow, time: Timestamp) {
    *edge.verdicts.entry(flow.verdict).or_default() += 1;
    edge.flows += 1;
    edge.window.add(time, 1);
    edge.last_seen = edge.last_seen.max(time);
    edge.first_seen = edge.first_seen.min(time);
    if flow.drop_reason_desc != DropReason::Unknown
        && (edge.drop_reasons.len() < MAX_SET_VALUES
            || edge.drop_reasons.contains(&flow.drop_reason_desc))
    {
        edge.drop_reasons.insert(flow.drop_reason_desc);
    }
    for policy in flow
        .egress_allowed_by
        .iter()
        .chain(&flow.ingress_allowed_by)
        .chain(&flow.egress_denied_by)
        .chain(&flow.ingress_denied_by)
    {
        insert_bounded(&mut edge.policies, &policy_name(policy));
    }
    if let Some(http) = flow.l7.as_ref().and_then(|l7| l7.http()) {
        if !http.method.is_empty() {
            insert_bounded(&mut edge.methods, &http.method);
        }
        let path = url_path(&http.url);
        if !path.is_empty() {
            insert_bounded(&mut edge.paths, path);
        }
        if http.code != 0 && (edge.codes.len() < MAX_SET_VALUES || edge.codes.contains(&http.code))
        {
            edge.codes.insert(http.code);
        }
    }
}

fn insert_bounded(set: &mut BTreeSet<String>, value: &str) {
    if set.len() < MAX_SET_VALUES && !set.contains(value) {
        set.insert(value.to_string());
    }
}

fn policy_name(policy: &Policy) -> String {
    if policy.namespace.is_empty() {
        policy.name.clone()
    } else {
        format!("{}/{}", policy.namespace, policy.name)
    }
}

/// The path of an HTTP URL (`http://host/a/b?x` -> `/a/b`); a bare path is returned as is.
fn url_path(url: &str) -> &str {
    let after_scheme = match url.find("://") {
        Some(i) => {
            let rest = &url[i + 3..];
            rest.find('/').map_or("", |j| &rest[j..])
        }
        None => url,
    };
    after_scheme
        .split(['?', '#'])
        .next()
        .unwrap_or(after_scheme)
}

/// The endpoints in request order: a reply's destination is the client.
fn request_endpoints(flow: &Flow) -> (Option<&Endpoint>, Option<&Endpoint>) {
    if flow.is_reply == Some(true) {
        (flow.destination.as_ref(), flow.source.as_ref())
    } else {
        (flow.source.as_ref(), flow.destination.as_ref())
    }
}

/// Where a flow lands, with `name_labels` naming workloads. Replies land on the request's
/// edge: their source is the server, and the server's port is their source port.
pub fn flow_keys(name_labels: &[String], flow: &Flow) -> Option<FlowKeys> {
    let reply = flow.is_reply == Some(true);
    let ips = flow
        .ip
        .as_ref()
        .map(|ip| (ip.source.as_str(), ip.destination.as_str()));
    let (src_ip, dst_ip) = ips.unwrap_or_default();
    let source = endpoint_name(
        name_labels,
        flow.source.as_ref(),
        &flow.source_names,
        src_ip,
    );
    let destination = endpoint_name(
        name_labels,
        flow.destination.as_ref(),
        &flow.destination_names,
        dst_ip,
    );
    let ((source, source_kind), (destination, destination_kind)) = match (source, destination) {
        (Some(s), Some(d)) => (s, d),
        _ => return None,
    };
    let (protocol, ports) = match &flow.l4 {
        Some(l4) => (layer4_name(l4), l4.ports()),
        None => ("", None),
    };
    let port = match ports {
        Some((src_port, dst_port)) => {
            if reply {
                src_port
            } else {
                dst_port
            }
        }
        None => 0,
    };
    let keys = if reply {
        FlowKeys {
            source: destination,
            source_kind: destination_kind,
            destination: source,
            destination_kind: source_kind,
            port,
            protocol,
        }
    } else {
        FlowKeys {
            source,
            source_kind,
            destination,
            destination_kind,
            port,
            protocol,
        }
    };
    Some(keys)
}

fn layer4_name(l4: &Layer4) -> &'static str {
    match l4 {
        Layer4::Tcp(_) => "TCP",
        Layer4::Udp(_) => "UDP",
        Layer4::Sctp(_) => "SCTP",
        Layer4::IcmpV4(_) => "ICMPv4",
        Layer4::IcmpV6(_) => "ICMPv6",
        Layer4::Vrrp(_) => "VRRP",
        Layer4::Igmp(_) => "IGMP",
    }
}

/// The static name of a protocol read back from a snapshot; unknown names become empty.
fn protocol_name(name: &str) -> &'static str {
    ["TCP", "UDP", "SCTP", "ICMPv4", "ICMPv6", "VRRP", "IGMP"]
        .into_iter()
        .find(|p| *p == name)
        .unwrap_or("")
}

/// A label's key and value, whatever its source prefix: `k8s:app=x` -> (`app`, `x`). A label
/// without `=` has an empty value (`reserved:world` -> (`world`, ``)).
fn split_label(label: &str) -> (&str, &str, &str) {
    let (key_value, source) = match (label.find(':'), label.find('=')) {
        (Some(colon), Some(eq)) if colon < eq => (&label[colon + 1..], &label[..colon]),
        (Some(colon), None) => (&label[colon + 1..], &label[..colon]),
        _ => (label, ""),
    };
    match key_value.split_once('=') {
        Some((k, v)) => (source, k, v),
        None => (source, key_value, ""),
    }
}

/// Names one side of a flow by the rules in the module documentation.
fn endpoint_name(
    name_labels: &[String],
    endpoint: Option<&Endpoint>,
    dns_names: &[String],
    ip: &str,
) -> Option<(NodeKey, NodeKind)> {
    let outside = |name: &str, kind| {
        Some((
            NodeKey {
                namespace: String::new(),
                name: name.to_string(),
            },
            kind,
        ))
    };
    let dns = dns_names.iter().find(|n| !n.is_empty());
    let Some(ep) = endpoint else {
        return match dns {
            Some(name) => outside(name.trim_end_matches('.'), NodeKind::Dns),
            None if !ip.is_empty() => outside("world", NodeKind::World),
            None => None,
        };
    };
    if !ep.namespace.is_empty() {
        let named_by_label = name_labels.iter().find_map(|wanted| {
            ep.labels.iter().find_map(|l| {
                let (_, key, value) = split_label(l);
                (key == wanted && !value.is_empty()).then_some(value)
            })
        });
        let (name, kind) = if let Some(value) = named_by_label {
            (value.to_string(), NodeKind::Workload)
        } else if let Some(w) = ep.workloads.iter().find(|w| !w.name.is_empty()) {
            (w.name.clone(), NodeKind::Workload)
        } else if !ep.pod_name.is_empty() {
            (ep.pod_name.clone(), NodeKind::Pod)
        } else {
            (format!("identity-{}", ep.identity), NodeKind::Pod)
        };
        return Some((
            NodeKey {
                namespace: ep.namespace.clone(),
                name,
            },
            kind,
        ));
    }
    let reserved: Vec<&str> = ep
        .labels
        .iter()
        .filter_map(|l| {
            let (source, key, _) = split_label(l);
            (source == "reserved").then_some(key)
        })
        .collect();
    if reserved.contains(&"host") || (reserved.is_empty() && ep.identity == 1) {
        return outside("host", NodeKind::Host);
    }
    if let Some(name) = dns {
        return outside(name.trim_end_matches('.'), NodeKind::Dns);
    }
    match reserved
        .iter()
        .find(|r| !r.starts_with("world") && **r != "unmanaged")
    {
        Some(other) => outside(other, NodeKind::Reserved),
        None => outside("world", NodeKind::World),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Http, Ip, L7Record, Layer7, Tcp, Udp, Workload};

    fn labels(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    fn pod(ns: &str, pod: &str, l: &[&str]) -> Endpoint {
        Endpoint {
            namespace: ns.into(),
            pod_name: pod.into(),
            labels: labels(l),
            identity: 1000,
            ..Default::default()
        }
    }

    fn world() -> Endpoint {
        Endpoint {
            identity: 2,
            labels: labels(&["reserved:world"]),
            ..Default::default()
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_nanos(1_700_000_000 * NANOS_PER_SEC + secs * NANOS_PER_SEC)
    }

    fn tcp(src: Endpoint, dst: Endpoint, port: u32, verdict: Verdict, secs: i64) -> Flow {
        Flow {
            time: Some(at(secs)),
            verdict,
            ip: Some(Ip {
                source: "198.18.1.1".into(),
                destination: "198.18.1.2".into(),
                ..Default::default()
            }),
            l4: Some(Layer4::Tcp(Tcp {
                source_port: 40000,
                destination_port: port,
                flags: None,
            })),
            source: Some(src),
            destination: Some(dst),
            is_reply: Some(false),
            ..Default::default()
        }
    }

    fn frontend() -> Endpoint {
        pod(
            "default",
            "frontend-7d4b9c-x2x8z",
            &["k8s:app=frontend", "k8s:tier=web"],
        )
    }

    fn api() -> Endpoint {
        pod("default", "my-api-5f7d8-abcde", &["k8s:app=my-api"])
    }

    fn coredns() -> Endpoint {
        pod("kube-system", "coredns-1", &["k8s:k8s-app=kube-dns"])
    }

    fn prometheus() -> Endpoint {
        pod("monitoring", "prometheus-0", &["k8s:app=prometheus"])
    }

    fn names() -> Vec<String> {
        GraphConfig::default().name_labels
    }

    fn name_of(ep: Option<&Endpoint>, dns: &[&str]) -> (String, NodeKind) {
        let (key, kind) = endpoint_name(&names(), ep, &labels(dns), "1.2.3.4").unwrap();
        (key.id(), kind)
    }

    #[test]
    fn workloads_are_named_by_the_first_naming_label_then_workload_then_pod() {
        let ep = pod(
            "shop",
            "cart-1",
            &["k8s:app=cart-app", "k8s:app.kubernetes.io/name=cart"],
        );
        assert_eq!(
            name_of(Some(&ep), &[]),
            ("shop/cart".into(), NodeKind::Workload)
        );
        assert_eq!(
            name_of(Some(&coredns()), &[]),
            ("kube-system/kube-dns".into(), NodeKind::Workload)
        );
        let mut owned = pod("shop", "cart-7d4b-x", &["k8s:tier=web"]);
        owned.workloads = vec![Workload {
            name: "cart".into(),
            kind: "Deployment".into(),
        }];
        assert_eq!(
            name_of(Some(&owned), &[]),
            ("shop/cart".into(), NodeKind::Workload)
        );
        let bare = pod("shop", "cart-7d4b-x", &["k8s:tier=web"]);
        assert_eq!(
            name_of(Some(&bare), &[]),
            ("shop/cart-7d4b-x".into(), NodeKind::Pod)
        );
        // Labels without a source prefix, and empty values, are handled.
        let plain = pod("shop", "p", &["app=", "app.kubernetes.io/name=web"]);
        assert_eq!(name_of(Some(&plain), &[]).0, "shop/web");
    }

    #[test]
    fn naming_labels_are_configurable() {
        let ep = pod(
            "shop",
            "cart-1",
            &["k8s:app=cart", "k8s:component=cart-api"],
        );
        let (key, _) = endpoint_name(&labels(&["component", "app"]), Some(&ep), &[], "").unwrap();
        assert_eq!(key.id(), "shop/cart-api");
    }

    #[test]
    fn outside_the_cluster_is_host_dns_name_reserved_or_world() {
        let host = Endpoint {
            identity: 1,
            labels: labels(&["reserved:host"]),
            ..Default::default()
        };
        assert_eq!(name_of(Some(&host), &[]), ("host".into(), NodeKind::Host));
        assert_eq!(
            name_of(Some(&world()), &[]),
            ("world".into(), NodeKind::World)
        );
        assert_eq!(
            name_of(Some(&world()), &["api.example.com."]),
            ("api.example.com".into(), NodeKind::Dns)
        );
        let remote = Endpoint {
            identity: 6,
            labels: labels(&["reserved:remote-node"]),
            ..Default::default()
        };
        assert_eq!(
            name_of(Some(&remote), &[]),
            ("remote-node".into(), NodeKind::Reserved)
        );
        let world4 = Endpoint {
            identity: 9,
            labels: labels(&["reserved:world-ipv4"]),
            ..Default::default()
        };
        assert_eq!(name_of(Some(&world4), &[]).0, "world");
        assert_eq!(name_of(None, &[]).0, "world");
        assert_eq!(name_of(None, &["x.org"]).0, "x.org");
        assert!(endpoint_name(&names(), None, &[], "").is_none());
    }

    #[test]
    fn one_edge_per_source_destination_port_protocol_with_its_verdict_set() {
        let mut g = ServiceGraph::default();
        g.ingest(&tcp(frontend(), api(), 8080, Verdict::Dropped, 0));
        g.ingest(&tcp(frontend(), api(), 8080, Verdict::Dropped, 1));
        g.ingest(&tcp(prometheus(), frontend(), 80, Verdict::Forwarded, 1));
        g.ingest(&tcp(prometheus(), frontend(), 81, Verdict::Forwarded, 1));
        let mut dns = tcp(frontend(), coredns(), 53, Verdict::Forwarded, 1);
        dns.l4 = Some(Layer4::Udp(Udp {
            source_port: 5353,
            destination_port: 53,
        }));
        g.ingest(&dns);
        let s = g.snapshot(&GraphView::all(), None);
        let ids: Vec<&str> = s.edges.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "default/frontend->default/my-api:8080/TCP",
                "default/frontend->kube-system/kube-dns:53/UDP",
                "monitoring/prometheus->default/frontend:80/TCP",
                "monitoring/prometheus->default/frontend:81/TCP",
            ]
        );
        let denied = &s.edges[0];
        assert_eq!(denied.class, VerdictClass::Dropped);
        assert_eq!(denied.flows, 2);
        assert_eq!(denied.verdicts, BTreeMap::from([(Verdict::Dropped, 2)]));
        assert_eq!(denied.label(), "8080/TCP");
        assert_eq!(s.edges[1].class, VerdictClass::Forwarded);
        assert_eq!(s.edges[1].label(), "53/UDP");
        let node_ids: Vec<&str> = s.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(
            node_ids,
            [
                "default/frontend",
                "default/my-api",
                "kube-system/kube-dns",
                "monitoring/prometheus"
            ]
        );
        assert_eq!(s.namespaces, ["default", "kube-system", "monitoring"]);
        let front = &s.nodes[0];
        assert_eq!(front.flows, 5);
        assert_eq!(front.dropped, 2);
        assert_eq!(front.pods, ["frontend-7d4b9c-x2x8z"]);
        assert_eq!(front.labels, ["k8s:app=frontend", "k8s:tier=web"]);
        assert_eq!(s.flows, 5);
    }

    #[test]
    fn verdict_classes() {
        let class =
            |v: &[(Verdict, u64)]| VerdictClass::of(&v.iter().copied().collect::<BTreeMap<_, _>>());
        assert_eq!(class(&[(Verdict::Forwarded, 3)]), VerdictClass::Forwarded);
        assert_eq!(class(&[(Verdict::Dropped, 3)]), VerdictClass::Dropped);
        assert_eq!(class(&[(Verdict::Error, 1)]), VerdictClass::Dropped);
        assert_eq!(
            class(&[(Verdict::Dropped, 1), (Verdict::Forwarded, 9)]),
            VerdictClass::Mixed
        );
        assert_eq!(
            class(&[(Verdict::Dropped, 1), (Verdict::Audit, 1)]),
            VerdictClass::Mixed
        );
        assert_eq!(
            class(&[(Verdict::Audit, 1), (Verdict::Forwarded, 9)]),
            VerdictClass::Audit
        );
        assert_eq!(class(&[(Verdict::Traced, 1)]), VerdictClass::Forwarded);
        assert_eq!(class(&[]), VerdictClass::Forwarded);
        assert_eq!(VerdictClass::Mixed.as_str(), "mixed");
        let mut g = ServiceGraph::default();
        g.ingest(&tcp(frontend(), api(), 8080, Verdict::Forwarded, 0));
        g.ingest(&tcp(frontend(), api(), 8080, Verdict::Dropped, 0));
        let s = g.snapshot(&GraphView::all(), None);
        assert_eq!(s.edges[0].class, VerdictClass::Mixed);
        let json = serde_json::to_value(&s.edges[0]).unwrap();
        assert_eq!(
            json["verdicts"],
            serde_json::json!({"FORWARDED": 1, "DROPPED": 1})
        );
        assert_eq!(json["class"], "mixed");
    }

    #[test]
    fn replies_count_on_the_request_edge() {
        let mut g = ServiceGraph::default();
        g.ingest(&tcp(frontend(), api(), 8080, Verdict::Forwarded, 0));
        let mut reply = tcp(api(), frontend(), 40000, Verdict::Forwarded, 0);
        reply.l4 = Some(Layer4::Tcp(Tcp {
            source_port: 8080,
            destination_port: 40000,
            flags: None,
        }));
        reply.is_reply = Some(true);
        let keys = g.ingest(&reply).unwrap();
        assert_eq!(keys.edge_id(), "default/frontend->default/my-api:8080/TCP");
        let s = g.snapshot(&GraphView::all(), None);
        assert_eq!(s.edges.len(), 1);
        assert_eq!(s.edges[0].flows, 2);
        // The reply's endpoints feed the right nodes' pods.
        assert_eq!(s.nodes[1].pods, ["my-api-5f7d8-abcde"]);
    }

    #[test]
    fn rate_is_flows_per_second_over_the_window() {
        let mut g = ServiceGraph::default();
        // 3 flows a second for 20 seconds.
        for s in 0..20 {
            for _ in 0..3 {
                g.ingest(&tcp(frontend(), api(), 8080, Verdict::Forwarded, s));
            }
        }
        let snap = g.snapshot(&GraphView::all(), None);
        assert_eq!(snap.rate_window_secs, RATE_WINDOW_SECS as u32);
        assert!(
            (snap.edges[0].rate - 3.0).abs() < 1e-9,
            "{}",
            snap.edges[0].rate
        );
        // Five seconds of silence halve it; a whole window of silence ends it.
        let half = g.snapshot(&GraphView::all(), Some(at(24)));
        assert!(
            (half.edges[0].rate - 1.5).abs() < 1e-9,
            "{}",
            half.edges[0].rate
        );
        let none = g.snapshot(&GraphView::all(), Some(at(40)));
        assert_eq!(none.edges[0].rate, 0.0);
        assert_eq!(none.edges[0].flows, 60, "counts are not windowed");
        // A late flow, older than the window, counts but is not a rate.
        g.ingest(&tcp(frontend(), api(), 8080, Verdict::Forwarded, 2));
        let snap = g.snapshot(&GraphView::all(), None);
        assert!((snap.edges[0].rate - 3.0).abs() < 1e-9);
        assert_eq!(snap.edges[0].flows, 61);
        assert_eq!(snap.time, Some(at(19)));
    }

    #[test]
    fn http_methods_paths_and_codes_per_edge() {
        let mut g = ServiceGraph::default();
        for (method, url, code) in [
            ("GET", "http://my-api:8080/api/items?page=2", 200),
            ("GET", "/api/items", 503),
            ("POST", "http://my-api:8080/api/orders", 0),
        ] {
            let mut f = tcp(frontend(), api(), 8080, Verdict::Forwarded, 0);
            f.l7 = Some(Layer7 {
                record: Some(L7Record::Http(Http {
                    code,
                    method: method.into(),
                    url: url.into(),
                    ..Default::default()
                })),
                ..Default::default()
            });
            g.ingest(&f);
        }
        let s = g.snapshot(&GraphView::all(), None);
        let http = s.edges[0].http.as_ref().unwrap();
        assert_eq!(http.methods, ["GET", "POST"]);
        assert_eq!(http.paths, ["/api/items", "/api/orders"]);
        assert_eq!(http.codes, [200, 503]);
        assert_eq!(
            s.edges[0].label(),
            "8080/TCP GET,POST /api/items,/api/orders 200,503"
        );
        // Sets are bounded.
        for i in 0..100 {
            let mut f = tcp(frontend(), api(), 8080, Verdict::Forwarded, 0);
            f.l7 = Some(Layer7 {
                record: Some(L7Record::Http(Http {
                    method: "GET".into(),
                    url: format!("/p/{i}"),
                    code: 200 + i,
                    ..Default::default()
                })),
                ..Default::default()
            });
            g.ingest(&f);
        }
        let s = g.snapshot(&GraphView::all(), None);
        let http = s.edges[0].http.as_ref().unwrap();
        assert_eq!(http.paths.len(), MAX_SET_VALUES);
        assert_eq!(http.codes.len(), MAX_SET_VALUES);
        assert!(http.codes.contains(&503), "values seen first stay");
    }

    #[test]
    fn drop_reasons_and_policies_are_kept() {
        let mut g = ServiceGraph::default();
        let mut f = tcp(frontend(), api(), 8080, Verdict::Dropped, 0);
        f.drop_reason_desc = DropReason::PolicyDenied;
        f.egress_denied_by = vec![Policy {
            name: "allow-dns-egress".into(),
            namespace: "default".into(),
            ..Default::default()
        }];
        g.ingest(&f);
        let s = g.snapshot(&GraphView::all(), None);
        assert_eq!(s.edges[0].drop_reasons, [DropReason::PolicyDenied]);
        assert_eq!(s.edges[0].policies, ["default/allow-dns-egress"]);
    }

    #[test]
    fn namespace_view_shows_its_edges_and_their_peers() {
        let mut g = ServiceGraph::default();
        g.ingest(&tcp(frontend(), api(), 8080, Verdict::Dropped, 0));
        g.ingest(&tcp(prometheus(), frontend(), 80, Verdict::Forwarded, 0));
        g.ingest(&tcp(prometheus(), coredns(), 9153, Verdict::Forwarded, 0));
        g.ingest(&tcp(frontend(), world(), 443, Verdict::Forwarded, 0));
        let s = g.snapshot(&GraphView::namespace("default"), None);
        let nodes: Vec<&str> = s.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(
            nodes,
            [
                "default/frontend",
                "default/my-api",
                "monitoring/prometheus",
                "world"
            ]
        );
        assert_eq!(s.edges.len(), 3);
        assert!(s.edges.iter().all(|e| !e.id.contains("kube-dns")));
        assert_eq!(
            s.namespaces,
            ["default", "kube-system", "monitoring"],
            "the selector still lists every namespace"
        );
        let ks = g.snapshot(&GraphView::namespace("kube-system"), None);
        assert_eq!(ks.nodes.len(), 2);
        assert_eq!(ks.edges.len(), 1);
        let none = g.snapshot(&GraphView::namespace("nope"), None);
        assert!(none.nodes.is_empty() && none.edges.is_empty());
        let all = g.snapshot(&GraphView::all(), None);
        assert_eq!((all.nodes.len(), all.edges.len()), (5, 4));
    }

    #[test]
    fn nodes_are_bounded_least_recently_seen_first() {
        let mut g = ServiceGraph::new(GraphConfig {
            max_nodes: 16,
            ..Default::default()
        });
        // Pairs (client-i -> server-i); the oldest pairs are evicted first.
        for i in 0..40 {
            let c = pod("load", &format!("c{i}"), &[]);
            let s = pod("load", &format!("s{i}"), &[]);
            g.ingest(&tcp(c, s, 80, Verdict::Forwarded, i));
            assert!(g.node_count() <= 16, "{} nodes after {i}", g.node_count());
        }
        let s = g.snapshot(&GraphView::all(), None);
        assert!(s.nodes.iter().any(|n| n.name == "c39"));
        assert!(s.nodes.iter().any(|n| n.name == "s39"));
        assert!(s.nodes.iter().all(|n| n.name != "c0"));
        assert!(s.evicted_nodes >= 64);
        assert_eq!(s.evicted_nodes, 80 - s.nodes.len() as u64);
        // Every edge still joins two nodes in the graph; the edge map matches the graph.
        for e in &s.edges {
            assert!(s.nodes.iter().any(|n| n.id == e.source));
            assert!(s.nodes.iter().any(|n| n.id == e.destination));
        }
        assert_eq!(g.edges.len(), g.graph.edge_count());
        assert_eq!(g.nodes.len(), g.graph.node_count());
        assert_eq!(s.flows, 40);
    }

    #[test]
    fn edges_are_bounded_and_a_busy_edge_survives() {
        let mut g = ServiceGraph::new(GraphConfig {
            max_edges: 16,
            ..Default::default()
        });
        for i in 0..200 {
            g.ingest(&tcp(frontend(), api(), 8080, Verdict::Forwarded, i));
            g.ingest(&tcp(
                frontend(),
                api(),
                10_000 + i as u32,
                Verdict::Forwarded,
                i,
            ));
            assert!(g.edge_count() <= 16);
        }
        let s = g.snapshot(&GraphView::all(), None);
        assert!(s.edges.iter().any(|e| e.port == 8080 && e.flows == 200));
        assert_eq!(s.evicted_edges, 201 - s.edges.len() as u64);
        assert_eq!(s.nodes.len(), 2);
        assert_eq!(g.edges.len(), g.graph.edge_count());
    }

    #[test]
    fn snapshot_round_trips_through_json_and_continues() {
        let mut g = ServiceGraph::default();
        for s in 0..10 {
            g.ingest(&tcp(frontend(), api(), 8080, Verdict::Dropped, s));
            g.ingest(&tcp(prometheus(), frontend(), 80, Verdict::Forwarded, s));
        }
        let snap = g.snapshot(&GraphView::all(), None);
        let json = serde_json::to_string(&snap).unwrap();
        let back: GraphSnapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, snap);
        let mut resumed = ServiceGraph::from_snapshot(GraphConfig::default(), &back);
        assert_eq!(resumed.snapshot(&GraphView::all(), None), snap);
        resumed.ingest(&tcp(frontend(), api(), 8080, Verdict::Forwarded, 10));
        let next = resumed.snapshot(&GraphView::all(), None);
        assert_eq!(next.edges[0].flows, 11);
        assert_eq!(next.edges[0].class, VerdictClass::Mixed);
        assert_eq!(next.flows, 21);
    }

    #[test]
    fn flows_without_endpoints_or_time() {
        let mut g = ServiceGraph::default();
        assert!(g.ingest(&Flow::default()).is_none());
        let mut f = tcp(frontend(), api(), 8080, Verdict::Forwarded, 5);
        g.ingest(&f);
        f.time = None;
        g.ingest(&f);
        let s = g.snapshot(&GraphView::all(), None);
        assert_eq!(s.edges[0].last_seen, at(5));
        assert_eq!(s.flows, 2);
        // ICMP has no port.
        let mut icmp = tcp(frontend(), world(), 0, Verdict::Forwarded, 5);
        icmp.l4 = Some(Layer4::IcmpV4(Default::default()));
        let keys = g.ingest(&icmp).unwrap();
        assert_eq!(keys.edge_id(), "default/frontend->world:0/ICMPv4");
        let s = g.snapshot(&GraphView::all(), None);
        let e = s.edges.iter().find(|e| e.protocol == "ICMPv4").unwrap();
        assert_eq!(e.label(), "ICMPv4");
    }

    #[test]
    fn split_labels() {
        assert_eq!(split_label("k8s:app=x"), ("k8s", "app", "x"));
        assert_eq!(split_label("app=x:y"), ("", "app", "x:y"));
        assert_eq!(split_label("reserved:world"), ("reserved", "world", ""));
        assert_eq!(
            split_label("k8s:io.kubernetes.pod.namespace=default"),
            ("k8s", "io.kubernetes.pod.namespace", "default")
        );
        assert_eq!(url_path("http://h:1/a/b?x=1#f"), "/a/b");
        assert_eq!(url_path("http://h"), "");
        assert_eq!(url_path("/a?b"), "/a");
    }
}
