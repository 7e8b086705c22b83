//! Who is behind an address: the endpoint registry. Sources (the lab's endpoints file, the
//! Kubernetes API) describe pods by namespace, name, labels and IPs; the registry turns them
//! into Hubble endpoints — labels in `k8s:key=value` form and a numeric security identity per
//! distinct label set — that the decoder attaches to flows. The Kubernetes source adds the
//! services behind addresses and ports, and the nodes' addresses.

use std::{
    collections::{BTreeMap, HashMap},
    hash::{Hash, Hasher as _},
    net::IpAddr,
    path::Path,
    sync::Arc,
};

use flowscope_model::flow::{Endpoint, Service, Workload};
use serde::{Deserialize, Serialize};

/// Identities below this are Cilium's reserved ones (host 1, world 2, ...); pods get
/// identities from here up, as cluster-local identities do in Cilium.
pub const FIRST_POD_IDENTITY: u32 = 256;
/// Identities are derived from the label set, so they stay the same across restarts and on
/// every node; collisions are resolved by probing upwards within this range.
const IDENTITY_SPACE: u32 = 65_536 - FIRST_POD_IDENTITY;

/// One workload as a source describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    pub namespace: String,
    pub pod_name: String,
    pub ips: Vec<IpAddr>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub namespace_labels: BTreeMap<String, String>,
    /// Host-side interface of the pod, when the source knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Declared container ports, which named ports in policies resolve against.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    /// The workload that owns the pod (Hubble's `workloads`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
}

/// A declared container port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    #[serde(default)]
    pub name: String,
    pub port: u16,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
}

/// The file the lab writes and `--endpoints` reads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointsFile {
    pub endpoints: Vec<EndpointSpec>,
}

impl EndpointsFile {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading endpoints file {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("parsing endpoints file {}", path.display()))
    }
}

/// Hubble labels of a pod, sorted: its own labels, its namespace, its namespace's labels, and
/// the cluster, as Cilium derives them.
pub fn hubble_labels(spec: &EndpointSpec) -> Vec<String> {
    let mut labels: Vec<String> = spec
        .labels
        .iter()
        .map(|(k, v)| format!("k8s:{k}={v}"))
        .collect();
    labels.push(format!(
        "k8s:io.kubernetes.pod.namespace={}",
        spec.namespace
    ));
    labels.extend(
        spec.namespace_labels
            .iter()
            .map(|(k, v)| format!("k8s:io.cilium.k8s.namespace.labels.{k}={v}")),
    );
    labels.push("k8s:io.cilium.k8s.policy.cluster=default".to_string());
    labels.sort();
    labels.dedup();
    labels
}

/// IP -> endpoint, with identities allocated per distinct label set; address and port ->
/// service; address -> node.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    by_ip: HashMap<IpAddr, Arc<Endpoint>>,
    /// Endpoint id per pod, stable for the registry's lifetime.
    pub endpoints: Vec<Arc<Endpoint>>,
    /// What the source said, for the policy compiler (labels, ports, interfaces); the same
    /// order as `endpoints`.
    pub specs: Vec<EndpointSpec>,
    services: HashMap<ServiceKey, Arc<Service>>,
    nodes: HashMap<IpAddr, NodeRole>,
}

/// An address, port and IP protocol number (6 TCP, 17 UDP, 132 SCTP).
pub type ServiceKey = (IpAddr, u16, u8);

/// Whose node an address is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeRole {
    /// This node (`reserved:host`).
    Local,
    /// Another node of the cluster (`reserved:remote-node`).
    Remote,
}

/// The IP protocol number of a Kubernetes protocol name; None for one flows never carry.
pub fn protocol_number(name: &str) -> Option<u8> {
    match name {
        "TCP" => Some(6),
        "UDP" => Some(17),
        "SCTP" => Some(132),
        _ => None,
    }
}

impl Registry {
    pub fn build(specs: &[EndpointSpec]) -> Self {
        let mut identities: HashMap<Vec<String>, u32> = HashMap::new();
        let mut used: HashMap<u32, Vec<String>> = HashMap::new();
        let mut reg = Registry::default();
        let mut sorted: Vec<&EndpointSpec> = specs.iter().collect();
        sorted.sort_by(|a, b| (&a.namespace, &a.pod_name).cmp(&(&b.namespace, &b.pod_name)));
        reg.specs = sorted.iter().map(|s| (*s).clone()).collect();
        // Label sets in sorted order, so collisions resolve the same way on every node.
        let mut sets: Vec<Vec<String>> = sorted.iter().map(|s| hubble_labels(s)).collect();
        sets.sort();
        sets.dedup();
        for set in sets {
            let mut id = FIRST_POD_IDENTITY + (stable_hash(&set) % IDENTITY_SPACE as u64) as u32;
            while used.get(&id).is_some_and(|other| *other != set) {
                id = FIRST_POD_IDENTITY + (id - FIRST_POD_IDENTITY + 1) % IDENTITY_SPACE;
            }
            used.insert(id, set.clone());
            identities.insert(set, id);
        }
        for (i, spec) in sorted.iter().enumerate() {
            let labels = hubble_labels(spec);
            let ep = Arc::new(Endpoint {
                id: i as u32 + 1,
                identity: identities[&labels],
                namespace: spec.namespace.clone(),
                pod_name: spec.pod_name.clone(),
                labels,
                workloads: spec.workload.iter().cloned().collect(),
                ..Endpoint::default()
            });
            for ip in &spec.ips {
                reg.by_ip.insert(*ip, ep.clone());
            }
            reg.endpoints.push(ep);
        }
        reg
    }

    pub fn get(&self, ip: &IpAddr) -> Option<&Arc<Endpoint>> {
        self.by_ip.get(ip)
    }

    /// Adds a service, reached at each of `addresses` (its frontends: cluster IPs and ports;
    /// its backends: pod addresses and target ports, where kube-proxy's DNAT has already
    /// replaced the frontend). A frontend added later wins over a backend at the same address
    /// and port.
    pub fn add_service(
        &mut self,
        namespace: &str,
        name: &str,
        backends: impl IntoIterator<Item = ServiceKey>,
        frontends: impl IntoIterator<Item = ServiceKey>,
    ) {
        let service = Arc::new(Service {
            name: name.to_string(),
            namespace: namespace.to_string(),
        });
        for key in backends {
            self.services.entry(key).or_insert_with(|| service.clone());
        }
        for key in frontends {
            self.services.insert(key, service.clone());
        }
    }

    /// The service an address, port and protocol reach, if any.
    pub fn service(&self, key: &ServiceKey) -> Option<&Arc<Service>> {
        if self.services.is_empty() {
            return None;
        }
        self.services.get(key)
    }

    /// Records a node's addresses.
    pub fn add_node(&mut self, role: NodeRole, ips: &[IpAddr]) {
        for ip in ips {
            // A pod's address is the pod's, even where a node shares it (host-network pods are
            // not endpoints, so this only guards against a misreported node address).
            if !self.by_ip.contains_key(ip) {
                self.nodes.insert(*ip, role);
            }
        }
    }

    /// Whether an address is a node's, and whose.
    pub fn node(&self, ip: &IpAddr) -> Option<NodeRole> {
        self.nodes.get(ip).copied()
    }

    /// The addresses of the nodes in `role`, sorted.
    pub fn node_ips(&self, role: NodeRole) -> Vec<IpAddr> {
        let mut ips: Vec<IpAddr> = self
            .nodes
            .iter()
            .filter(|(_, r)| **r == role)
            .map(|(ip, _)| *ip)
            .collect();
        ips.sort();
        ips
    }

    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }
}

/// FNV-1a over a value's `Hash` bytes: fixed across runs and builds, unlike std's randomly
/// seeded hasher (a pod's identity, the pinned datapath's layout).
pub(crate) fn stable_hash<T: Hash + ?Sized>(value: &T) -> u64 {
    struct Fnv(u64);
    impl std::hash::Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 ^= u64::from(*b);
                self.0 = self.0.wrapping_mul(0x100_0000_01b3);
            }
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    value.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: &str, name: &str, ip: &str, labels: &[(&str, &str)]) -> EndpointSpec {
        EndpointSpec {
            namespace: ns.into(),
            pod_name: name.into(),
            ips: vec![ip.parse().unwrap()],
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            namespace_labels: [("kubernetes.io/metadata.name".to_string(), ns.to_string())].into(),
            interface: None,
            ports: Vec::new(),
            workload: None,
        }
    }

    #[test]
    fn labels_in_hubble_form() {
        let l = hubble_labels(&pod("default", "api-1", "198.18.1.1", &[("app", "my-api")]));
        assert_eq!(
            l,
            vec![
                "k8s:app=my-api",
                "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=default",
                "k8s:io.cilium.k8s.policy.cluster=default",
                "k8s:io.kubernetes.pod.namespace=default",
            ]
        );
    }

    #[test]
    fn one_identity_per_label_set_stable_across_builds() {
        let specs = vec![
            pod("default", "api-1", "198.18.1.1", &[("app", "my-api")]),
            pod("default", "api-2", "198.18.1.2", &[("app", "my-api")]),
            pod("default", "web", "198.18.1.3", &[("app", "web")]),
            pod("other", "api-1", "198.18.1.4", &[("app", "my-api")]),
        ];
        let r = Registry::build(&specs);
        let id = |ip: &str| r.get(&ip.parse().unwrap()).unwrap().identity;
        assert_eq!(
            id("198.18.1.1"),
            id("198.18.1.2"),
            "same labels, same identity"
        );
        assert_ne!(id("198.18.1.1"), id("198.18.1.3"));
        assert_ne!(
            id("198.18.1.1"),
            id("198.18.1.4"),
            "the namespace is part of the labels"
        );
        assert!(id("198.18.1.1") >= FIRST_POD_IDENTITY);
        // Another node (or a restart) with the pods in another order agrees.
        let mut rev = specs.clone();
        rev.reverse();
        let r2 = Registry::build(&rev[..2]);
        assert_eq!(
            r2.get(&"198.18.1.4".parse().unwrap()).unwrap().identity,
            id("198.18.1.4")
        );
        let ep = r.get(&"198.18.1.3".parse().unwrap()).unwrap();
        assert_eq!(
            (ep.namespace.as_str(), ep.pod_name.as_str()),
            ("default", "web")
        );
        assert!(r.get(&"198.18.9.9".parse().unwrap()).is_none());
    }

    #[test]
    fn services_and_nodes_by_address() {
        let mut r = Registry::build(&[pod("shop", "api-1", "198.18.1.1", &[("app", "api")])]);
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        r.add_service(
            "shop",
            "api",
            [(ip("198.18.1.1"), 8080, 6)],
            [(ip("198.19.254.10"), 80, 6)],
        );
        // A frontend wins over a backend at the same address and port.
        r.add_service("shop", "other", [(ip("198.19.254.10"), 80, 6)], []);
        let name = |key: ServiceKey| {
            r.service(&key)
                .map(|s| format!("{}/{}", s.namespace, s.name))
        };
        assert_eq!(
            name((ip("198.18.1.1"), 8080, 6)).as_deref(),
            Some("shop/api")
        );
        assert_eq!(
            name((ip("198.19.254.10"), 80, 6)).as_deref(),
            Some("shop/api")
        );
        assert_eq!(
            name((ip("198.18.1.1"), 8080, 17)),
            None,
            "UDP is another port"
        );
        assert_eq!(name((ip("198.18.1.1"), 9090, 6)), None);

        r.add_node(NodeRole::Remote, &[ip("198.18.2.1"), ip("198.18.1.1")]);
        r.add_node(NodeRole::Local, &[ip("198.18.2.2")]);
        assert_eq!(r.node(&ip("198.18.2.1")), Some(NodeRole::Remote));
        assert_eq!(r.node(&ip("198.18.2.2")), Some(NodeRole::Local));
        assert_eq!(
            r.node(&ip("198.18.1.1")),
            None,
            "a pod's address stays the pod's"
        );
    }

    #[test]
    fn endpoints_file_refuses_unknown_fields() {
        let e = serde_json::from_str::<EndpointsFile>(
            r#"{"endpoints":[{"namespace":"a","pod_name":"b","ips":[],"colour":1}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("colour"), "{e}");
    }
}
