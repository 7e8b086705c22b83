//! What the source knows, as plain data: pods with their addresses and labels, namespaces with
//! their labels, the network policy objects, and the state of the connection.

use std::{collections::BTreeMap, net::IpAddr};

use serde::Serialize;

/// One consistent view of the cluster.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ClusterState {
    /// Grows with every change; equal revisions mean equal contents.
    pub revision: u64,
    /// Namespaces and their labels.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Pods that have (or may get) addresses: running or pending, not host-network.
    pub pods: Vec<PodInfo>,
    /// NetworkPolicy, CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy objects.
    pub policies: Vec<PolicyObject>,
    pub status: ApiStatus,
}

impl ClusterState {
    pub fn empty(server: &str) -> Self {
        ClusterState {
            status: ApiStatus {
                server: server.to_string(),
                ..ApiStatus::default()
            },
            ..ClusterState::default()
        }
    }
}

/// How the watches are doing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ApiStatus {
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
    /// Whether the Cilium policy kinds are served (their CRDs installed).
    pub cilium_crds: bool,
}

/// A pod, as flowscope needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `status.podIPs` (else `status.podIP`): IPv4 and IPv6.
    pub ips: Vec<IpAddr>,
    /// `spec.nodeName`.
    pub node: Option<String>,
    /// Declared container ports, which named ports in policies resolve against.
    pub ports: Vec<ContainerPort>,
    /// The first owner, as `Kind/name` (a ReplicaSet, a DaemonSet, ...).
    pub owner: Option<String>,
}

/// A declared container port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ContainerPort {
    pub name: String,
    pub port: u16,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
}

/// A network policy object, as the API server holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyObject {
    /// `NetworkPolicy`, `CiliumNetworkPolicy` or `CiliumClusterwideNetworkPolicy`.
    pub kind: &'static str,
    /// `None` for the cluster-wide kind.
    pub namespace: Option<String>,
    pub name: String,
    /// The object (without `managedFields`), pretty-printed JSON: what the policy parser reads.
    pub json: String,
}

impl PolicyObject {
    /// The name its messages carry: `api:Kind/namespace/name`.
    pub fn source(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("api:{}/{ns}/{}", self.kind, self.name),
            None => format!("api:{}/{}", self.kind, self.name),
        }
    }
}
