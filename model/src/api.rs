//! The API contract: the bodies observer and relay answer besides flows, typed once for the
//! servers that write them and the clients (CLI, UI) that read them: `GET /api/v1/status`
//! ([`ServerStatus`]), `/nodes` ([`NodeInfo`]), `/endpoints` ([`Endpoint`]), `/policies`
//! ([`PolicyStatus`]), and on the flow stream the refusal line ([`ErrorBody`]) and the
//! WebSocket close codes ([`close`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Timestamp, flow::NodeState};

/// `GET /api/v1/status`: Hubble's `ServerStatusResponse` fields under protojson's names, then
/// what the server adds of itself: an observer its node, datapath and sources; a relay its
/// peers ([`RelayStatus`]). Parts a server does not have are absent.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerStatus {
    /// Flows held now.
    pub num_flows: u64,
    /// Flows held at most.
    pub max_flows: u64,
    /// Flows stored since the start.
    pub seen_flows: u64,
    pub flows_rate: f64,
    pub uptime_ns: u64,
    pub version: String,
    /// The nodes behind the server: a relay's observers; an observer is one node, connected.
    pub num_connected_nodes: u32,
    pub num_unavailable_nodes: u32,
    /// The first unavailable nodes by name.
    pub unavailable_nodes: Vec<String>,
    /// The span of the flows held (`observe` explains an empty answer with it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_flow_time: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_flow_time: Option<Timestamp>,
    /// Flow streams served now.
    pub subscribers: u64,
    /// The observer's node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Flows subscribers missed because the store overwrote them first (observer).
    pub ring_lost_events: u64,
    /// The observer's datapath: the interfaces its programs are attached to, and their counters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interfaces: Option<Vec<AttachedInterface>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datapath: Option<DatapathCounters>,
    /// Where the observer's datapath is pinned, and what it found there at start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pins: Option<PinStatus>,
    /// Datapath events decoded by the observer's pipeline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_decoded: Option<u64>,
    /// Ring buffer records of an unexpected size, skipped (never expected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub malformed_events: Option<u64>,
    /// With policies (`--policy-dir`, the Kubernetes source).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyStatus>,
    /// With `--export-file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export: Option<ExportStatus>,
    /// With the L7 proxy (L7 rules in force).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyStatus>,
    /// With the Kubernetes source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesStatus>,
    /// A relay's own part.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelayStatus>,
}

/// A relay's part of [`ServerStatus`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RelayStatus {
    pub uptime_ns: u64,
    /// Observers known, connected or not.
    pub peers: usize,
    /// Problems with the peers file or the peer service.
    pub discovery_errors: Vec<String>,
}

/// An interface the observer's programs are attached to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AttachedInterface {
    pub name: String,
    pub index: u32,
}

/// The observer's pinned datapath (`--bpf-root`): it outlives the observer, and the next one
/// takes it over.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PinStatus {
    /// The pin folder on the BPF filesystem.
    pub root: String,
    /// The layout of the pinned maps (version and shape): adopted only by the same layout.
    pub layout: String,
    /// What this observer found at start: `fresh` (nothing pinned), `adopted` (maps and links
    /// taken over as they were) or `replaced` (another layout's, replaced once this one's
    /// policy was in).
    pub start: String,
    /// Interfaces whose pinned links were found attached at start.
    pub links_found: usize,
    /// Links still running the previous layout's programs (until the first policy install).
    pub pending_swaps: usize,
    /// Events the ring buffer had no room for while no observer read it (also reported as
    /// lost events in the flow stream).
    pub lost_while_away: u64,
    /// Events the ring buffer had lost before that, which the previous observer reported
    /// itself: every loss since is this observer's to report (`events_lost` minus this).
    pub lost_reported_before: u64,
    /// Seconds from the previous observer's last heartbeat to this one's start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub away_seconds: Option<f64>,
}

/// The datapath's counters, summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DatapathCounters {
    pub packets: u64,
    pub events: u64,
    /// Events the ring buffer had no room for.
    pub events_lost: u64,
    pub truncated_packets: u64,
    pub non_ip_packets: u64,
    pub fragments: u64,
    pub dropped_packets: u64,
    pub connections_created: u64,
    pub conntrack_full: u64,
    /// New connections handed to the L7 proxy.
    pub proxy_redirects: u64,
    /// New connections that needed the L7 proxy and were dropped instead.
    pub proxy_failures: u64,
}

/// What the last policy install did (`GET /api/v1/policies`, `status.policy`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyStatus {
    pub revision: u64,
    pub policies: usize,
    pub errors: Vec<String>,
    pub entries: usize,
    pub enforced_endpoints: usize,
    pub audit: bool,
    /// Every loaded policy and the pods it selects.
    pub loaded: Vec<LoadedPolicy>,
    /// Per pod (`namespace/pod`): whether ingress and egress are isolated by some policy.
    pub enforcement: BTreeMap<String, (bool, bool)>,
}

/// One policy in force.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LoadedPolicy {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// Where it came from: a file, or `api:Kind/namespace/name`.
    pub file: String,
    pub line: u64,
    /// Pods (`namespace/pod`) the policy selects, for ingress or egress.
    pub selects: Vec<String>,
    /// What of the policy is enforced only in part.
    pub warnings: Vec<String>,
}

/// The flow exporter's counters (`status.export`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ExportStatus {
    pub path: String,
    /// Flows written.
    pub flows: u64,
    /// Flows the store overwrote before the exporter read them.
    pub lost: u64,
    /// Flows dropped because a write failed.
    pub write_errors: u64,
    pub rotations: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The L7 proxy's counters (`status.proxy`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ProxyStatus {
    /// Listener addresses: ingress and egress, IPv4 and IPv6.
    pub listeners: Vec<String>,
    pub max_connections: u64,
    pub connections_active: u64,
    pub connections_total: u64,
    pub connections_refused: u64,
    pub connections_reset: u64,
    pub requests_forwarded: u64,
    pub requests_denied: u64,
    pub requests_audited: u64,
    pub requests_malformed: u64,
    pub upstream_errors: u64,
    pub header_mismatches_logged: u64,
    pub flows_lost: u64,
}

/// The Kubernetes source (`status.kubernetes`): its watches and its last snapshot's size.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct KubernetesStatus {
    #[serde(flatten)]
    pub api: KubernetesApi,
    /// Pods, namespaces, policy objects, services and nodes in the last snapshot.
    pub pods: usize,
    pub namespaces: usize,
    pub policies: usize,
    pub services: usize,
    pub nodes: usize,
    pub revision: u64,
}

/// How the Kubernetes source's watches are doing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KubernetesApi {
    /// The API server's URL.
    pub server: String,
    /// Every watch has listed its kind at least once: the snapshot is complete.
    pub synced: bool,
    /// The last request of every watch succeeded. False while the server is away: the last
    /// snapshot is kept (and enforced) meanwhile.
    pub connected: bool,
    /// The last error, as the client reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Errors since the start (each is retried with backoff).
    pub errors: u64,
    /// Watches that started over from a fresh list because the server no longer had their
    /// position (`410 Gone`: its history was compacted while the watch was away). Not an
    /// error: what the list says replaces what the watch knew, deletions missed included.
    pub relists: u64,
    /// Whether a Cilium policy kind is served (its CRD installed).
    pub cilium_crds: bool,
    /// Where services' backends are read from: `discovery.k8s.io/v1 EndpointSlice` (or
    /// `v1beta1`), or `v1 Endpoints` where the server serves no slices; empty until known.
    pub service_backends: String,
}

/// One endpoint (`GET /api/v1/endpoints`, `flowscope endpoint list`, like `cilium endpoint
/// list`); a relay answers the union of its observers'.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Endpoint {
    pub id: u32,
    pub identity: u32,
    pub namespace: String,
    pub pod_name: String,
    /// `key=value`, sorted.
    pub labels: Vec<String>,
    pub ips: Vec<String>,
    /// The host-side interface, for a pod on the observer's node.
    pub interface: Option<String>,
    pub ingress_enforcement: bool,
    pub egress_enforcement: bool,
    pub policy_revision: u64,
}

/// The line a server sends on a flow stream it refuses, before closing it (WebSocket) or as
/// the status's message (gRPC): `{"error":{"code":"INVALID_ARGUMENT","message":"..."}}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ApiError,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// A gRPC status code's name: `INVALID_ARGUMENT`, `RESOURCE_EXHAUSTED`, `UNAVAILABLE`.
    pub code: String,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ApiError {
                code: code.to_string(),
                message: message.into(),
            },
        }
    }
}

/// How a server closes a WebSocket flow stream.
pub mod close {
    /// The request is complete (`first`/`number` sent, or past `until`).
    pub const DONE: u16 = 1000;
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// The request was refused (an [`super::ErrorBody`] line came first).
    pub const INVALID_REQUEST: u16 = 1007;
    /// The server serves as many streams as it may: try again later.
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// One node as Hubble's `GetNodes` returns it (`GET /api/v1/nodes`, `flowscope list nodes`);
/// a relay answers the same shape for each of its observers.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeInfo {
    pub name: String,
    pub version: String,
    pub address: String,
    /// `NODE_CONNECTED`, `NODE_UNAVAILABLE`, ...
    pub state: NodeState,
    pub uptime_ns: u64,
    pub num_flows: u64,
    pub max_flows: u64,
    pub seen_flows: u64,
    pub flows_rate: f64,
    /// Why the node is unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_has_only_the_parts_its_server_has() {
        let relay = ServerStatus {
            num_connected_nodes: 2,
            relay: Some(RelayStatus::default()),
            ..ServerStatus::default()
        };
        let json = serde_json::to_value(&relay).unwrap();
        for absent in [
            "node_name",
            "datapath",
            "pins",
            "interfaces",
            "policy",
            "kubernetes",
        ] {
            assert!(json.get(absent).is_none(), "{absent} in {json}");
        }
        assert_eq!(json["num_connected_nodes"], 2);

        // What an observer writes reads back the same, times included.
        let observer: ServerStatus = serde_json::from_str(
            r#"{"num_flows":3,"max_flows":4095,"node_name":"n1","oldest_flow_time":"2024-06-01T10:00:00Z",
                "datapath":{"events_lost":7},"kubernetes":{"server":"https://k","connected":true,"pods":2},
                "a_field_of_a_newer_server":1}"#,
        )
        .unwrap();
        assert_eq!(observer.node_name.as_deref(), Some("n1"));
        assert_eq!(observer.datapath.unwrap().events_lost, 7);
        let k = observer.kubernetes.unwrap();
        assert!(k.api.connected && !k.api.synced);
        assert_eq!((k.api.server.as_str(), k.pods), ("https://k", 2));
        assert_eq!(
            observer.oldest_flow_time.unwrap().to_string(),
            "2024-06-01T10:00:00Z"
        );
    }

    #[test]
    fn a_refusal_line_is_hubbles_error_envelope() {
        let line = serde_json::to_string(&ErrorBody::new("INVALID_ARGUMENT", "bad")).unwrap();
        assert_eq!(
            line,
            r#"{"error":{"code":"INVALID_ARGUMENT","message":"bad"}}"#
        );
    }
}
