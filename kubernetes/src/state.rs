//! What the source knows, as plain data: pods with their addresses, labels and workload,
//! namespaces with their labels, services with their frontends and backends, nodes with their
//! addresses, the network policy objects, and the state of the connection.

use std::{collections::BTreeMap, net::IpAddr};

use flowscope_model::api::KubernetesApi;
use serde::Serialize;

/// One consistent view of the cluster.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ClusterState {
    /// Grows with every change; equal revisions mean equal contents.
    pub revision: u64,
    /// Grows with every change to `policies` only, so their readers skip the other changes.
    pub policies_revision: u64,
    /// Namespaces and their labels.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Pods that have (or may get) addresses: running or pending, not host-network.
    pub pods: Vec<PodInfo>,
    /// NetworkPolicy, CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy objects.
    pub policies: Vec<PolicyObject>,
    /// Services, each with the backends its Endpoints object lists.
    pub services: Vec<ServiceInfo>,
    /// Nodes and their addresses.
    pub nodes: Vec<NodeInfo>,
    pub status: KubernetesApi,
}

impl ClusterState {
    pub fn empty(server: &str) -> Self {
        ClusterState {
            status: KubernetesApi {
                server: server.to_string(),
                ..KubernetesApi::default()
            },
            ..ClusterState::default()
        }
    }
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
    /// The workload that owns the pod, as Cilium names it: the Deployment of a ReplicaSet
    /// (by the `pod-template-hash` label), the CronJob of a Job (by its timestamp suffix),
    /// else the controlling owner itself (a DaemonSet, a StatefulSet, a bare ReplicaSet).
    pub workload: Option<Workload>,
}

/// A pod's owning workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Workload {
    /// `Deployment`, `DaemonSet`, `StatefulSet`, `CronJob`, `Job`, ...
    pub kind: String,
    pub name: String,
}

/// A Service: the addresses and ports clients use (frontends) and the pod addresses and
/// ports they reach (backends, from the Endpoints object of the same name).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServiceInfo {
    pub namespace: String,
    pub name: String,
    /// `spec.clusterIPs` (else `clusterIP`), `externalIPs` and the load balancer's ingress
    /// addresses; none for a headless service.
    pub frontend_ips: Vec<IpAddr>,
    /// The service's ports, each on every frontend address.
    pub ports: Vec<ServicePort>,
    /// Ready and not-ready addresses of the Endpoints object, each with its port.
    pub backends: Vec<Backend>,
}

/// A port of a Service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServicePort {
    pub port: u16,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
}

/// One address and port behind a Service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Backend {
    pub ip: IpAddr,
    pub port: u16,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
}

/// A node: its name and its `status.addresses` (internal and external IPs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeInfo {
    pub name: String,
    pub ips: Vec<IpAddr>,
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
