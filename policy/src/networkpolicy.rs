//! Kubernetes `NetworkPolicy` (`networking.k8s.io/v1`): the typed model, read from a manifest
//! and checked with the API server's own rules and defaults.
//!
//! What it means for traffic is [`verdict`](mod@crate::verdict)'s business; this file only guarantees that
//! a `NetworkPolicy` value is one the cluster would have accepted, with its defaults filled in
//! (protocol TCP, `policyTypes` from the spec), so that nothing downstream re-checks.

use ipnet::IpNet;
use serde::Serialize;

use crate::meta;
use crate::names;
use crate::ports::{PortRef, Protocol};
use crate::selector::{KeyRule, LabelSelector, Labels};
use crate::yaml::{self, Diagnostics, Field, IntOrString, Node, Object};

/// The `apiVersion` a NetworkPolicy is read from.
pub const API_VERSION: &str = "networking.k8s.io/v1";

/// The `kind`.
pub const KIND: &str = "NetworkPolicy";

/// A Kubernetes NetworkPolicy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkPolicy {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, or the default namespace (see [`meta::DEFAULT_NAMESPACE`]).
    pub namespace: String,
    /// `metadata.labels`.
    pub labels: Labels,
    /// The pods of [`NetworkPolicy::namespace`] the policy applies to; `{}` is all of them.
    pub pod_selector: LabelSelector,
    /// The directions the policy isolates the selected pods in.
    pub policy_types: PolicyTypes,
    /// Allowed incoming traffic; empty allows none (when isolated for ingress).
    pub ingress: Vec<NetworkPolicyRule>,
    /// Allowed outgoing traffic; empty allows none (when isolated for egress).
    pub egress: Vec<NetworkPolicyRule>,
}

/// `spec.policyTypes`, after Kubernetes' defaulting: when the manifest names none, Ingress
/// always, and Egress if the spec has at least one egress rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PolicyTypes {
    /// The selected pods are isolated for ingress.
    pub ingress: bool,
    /// The selected pods are isolated for egress.
    pub egress: bool,
    /// The manifest named no types; these are Kubernetes' defaults.
    pub defaulted: bool,
}

/// One `ingress[]` or `egress[]` entry: traffic from (or to) any of `peers` on any of `ports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkPolicyRule {
    /// `from` (ingress) or `to` (egress). Empty, or absent in the manifest, matches every peer.
    pub peers: Vec<NetworkPolicyPeer>,
    /// Empty, or absent in the manifest, matches every port.
    pub ports: Vec<NetworkPolicyPort>,
}

/// One `from[]` or `to[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum NetworkPolicyPeer {
    /// Pods chosen by labels.
    Pods {
        /// `None`: every pod of the chosen namespaces.
        pod_selector: Option<LabelSelector>,
        /// `None`: the policy's own namespace.
        namespace_selector: Option<LabelSelector>,
    },
    /// Addresses.
    IpBlock(IpBlock),
}

/// `ipBlock`: a CIDR minus some smaller CIDRs inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpBlock {
    /// The block, host bits cleared.
    pub cidr: IpNet,
    /// Each strictly inside `cidr`.
    pub except: Vec<IpNet>,
}

impl IpBlock {
    /// Whether `address` is in the block and in none of its exceptions.
    pub fn contains(&self, address: &std::net::IpAddr) -> bool {
        self.cidr.contains(address) && !self.except.iter().any(|e| e.contains(address))
    }
}

/// One `ports[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkPolicyPort {
    /// TCP when the manifest names none.
    pub protocol: Protocol,
    /// `None`: every port of the protocol.
    pub port: Option<PortRef>,
    /// With a numeric `port`: the range `port..=end_port`.
    pub end_port: Option<u16>,
}

/// Reads a NetworkPolicy from `root`, a document (or a `List` item, `path` then being
/// `items[N]`) already known to have this kind. `None` when anything is wrong, all of it
/// recorded in `d`.
pub(crate) fn parse(
    d: &mut Diagnostics<'_>,
    root: &Node,
    path: &str,
    default_namespace: &str,
) -> Option<NetworkPolicy> {
    let before = d.count();
    let mut top = Object::new(d, root, path)?;
    top.ignore("apiVersion");
    top.ignore("kind");
    // NetworkPolicy had a `status` until Kubernetes 1.28; exports from older clusters carry it.
    top.ignore("status");
    let meta = meta::parse(d, &mut top, true, default_namespace);
    let spec_path = top.child("spec");
    let spec = match top.take("spec") {
        Some(node) => parse_spec(d, node, &spec_path),
        // No spec is the zero spec: all pods of the namespace, isolated for ingress.
        None => Some(Spec::default()),
    };
    top.finish(d);
    let meta = meta?;
    let spec = spec?;
    (d.count() == before).then(|| NetworkPolicy {
        name: meta.name,
        namespace: meta
            .namespace
            .unwrap_or_else(|| default_namespace.to_owned()),
        labels: meta.labels,
        pod_selector: spec.pod_selector,
        policy_types: spec.policy_types,
        ingress: spec.ingress,
        egress: spec.egress,
    })
}

struct Spec {
    pod_selector: LabelSelector,
    policy_types: PolicyTypes,
    ingress: Vec<NetworkPolicyRule>,
    egress: Vec<NetworkPolicyRule>,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            pod_selector: LabelSelector::default(),
            policy_types: PolicyTypes {
                ingress: true,
                egress: false,
                defaulted: true,
            },
            ingress: Vec::new(),
            egress: Vec::new(),
        }
    }
}

fn parse_spec(d: &mut Diagnostics<'_>, node: &Node, path: &str) -> Option<Spec> {
    let before = d.count();
    let mut spec = Object::new(d, node, path)?;
    let selector_path = spec.child("podSelector");
    // Absent reads as `{}`, as in Kubernetes (the field is a struct, not a pointer).
    let pod_selector = match spec.take("podSelector") {
        Some(node) => LabelSelector::from_yaml(
            d,
            Field {
                node,
                path: &selector_path,
            },
            KeyRule::Kubernetes,
        ),
        None => Some(LabelSelector::default()),
    };
    let ingress = rules(d, &mut spec, "ingress", "from");
    let egress = rules(d, &mut spec, "egress", "to");
    let types_path = spec.child("policyTypes");
    let types = spec.take("policyTypes").map(|node| {
        let items = yaml::string_list(
            d,
            Field {
                node,
                path: &types_path,
            },
        );
        if items.len() > 2 {
            d.push(
                node.at,
                &types_path,
                "names at most two types: Ingress and Egress",
            );
        }
        let mut types = PolicyTypes {
            ingress: false,
            egress: false,
            defaulted: false,
        };
        for (i, (value, at)) in items.iter().enumerate() {
            match value.as_str() {
                "Ingress" => types.ingress = true,
                "Egress" => types.egress = true,
                other => d.push(
                    *at,
                    &format!("{types_path}[{i}]"),
                    format!("{:?} is not Ingress or Egress", yaml::sanitize(other)),
                ),
            }
        }
        types
    });
    let egress_written = spec
        .has("egress")
        .then(|| egress.as_ref().is_some_and(|rules| !rules.is_empty()));
    spec.finish(d);
    let policy_types = types.unwrap_or(PolicyTypes {
        ingress: true,
        // Kubernetes adds Egress only for a non-empty egress list: `egress: []` does not.
        egress: egress_written.unwrap_or(false),
        defaulted: true,
    });
    let spec = Spec {
        pod_selector: pod_selector?,
        policy_types,
        ingress: ingress?,
        egress: egress?,
    };
    (d.count() == before).then_some(spec)
}

/// Reads `spec.ingress` or `spec.egress`, whose peers are under `peers_key`.
fn rules(
    d: &mut Diagnostics<'_>,
    spec: &mut Object<'_>,
    key: &'static str,
    peers_key: &'static str,
) -> Option<Vec<NetworkPolicyRule>> {
    let path = spec.child(key);
    let Some(node) = spec.take(key) else {
        return Some(Vec::new());
    };
    let before = d.count();
    let items = yaml::list(d, Field { node, path: &path })?;
    let mut rules = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("{path}[{i}]");
        let Some(mut rule) = Object::new(d, item, &path) else {
            continue;
        };
        let peers_path = rule.child(peers_key);
        let mut peers = Vec::new();
        if let Some(node) = rule.take(peers_key) {
            for (j, peer) in yaml::list(
                d,
                Field {
                    node,
                    path: &peers_path,
                },
            )
            .unwrap_or_default()
            .iter()
            .enumerate()
            {
                let path = format!("{peers_path}[{j}]");
                if let Some(peer) = parse_peer(d, peer, &path) {
                    peers.push(peer);
                }
            }
        }
        let ports_path = rule.child("ports");
        let mut ports = Vec::new();
        if let Some(node) = rule.take("ports") {
            for (j, port) in yaml::list(
                d,
                Field {
                    node,
                    path: &ports_path,
                },
            )
            .unwrap_or_default()
            .iter()
            .enumerate()
            {
                let path = format!("{ports_path}[{j}]");
                if let Some(port) = parse_port(d, port, &path) {
                    ports.push(port);
                }
            }
        }
        rule.finish(d);
        rules.push(NetworkPolicyRule { peers, ports });
    }
    (d.count() == before).then_some(rules)
}

fn parse_peer(d: &mut Diagnostics<'_>, node: &Node, path: &str) -> Option<NetworkPolicyPeer> {
    let before = d.count();
    let mut peer = Object::new(d, node, path)?;
    let selector = |d: &mut Diagnostics<'_>, peer: &mut Object<'_>, key: &'static str| {
        let path = peer.child(key);
        peer.take(key).map(|node| {
            LabelSelector::from_yaml(d, Field { node, path: &path }, KeyRule::Kubernetes)
        })
    };
    let pod_selector = selector(d, &mut peer, "podSelector");
    let namespace_selector = selector(d, &mut peer, "namespaceSelector");
    let block_path = peer.child("ipBlock");
    let block = peer
        .take("ipBlock")
        .map(|node| parse_ip_block(d, node, &block_path));
    peer.finish(d);
    let selectors = pod_selector.is_some() || namespace_selector.is_some();
    let result = match (block, selectors) {
        (Some(_), true) => {
            d.push(
                node.at,
                path,
                "sets both ipBlock and a selector; a peer is either an ipBlock or \
                 podSelector/namespaceSelector (write two peers for both)",
            );
            None
        }
        (Some(block), false) => block.map(NetworkPolicyPeer::IpBlock),
        (None, true) => Some(NetworkPolicyPeer::Pods {
            pod_selector: pod_selector.flatten(),
            namespace_selector: namespace_selector.flatten(),
        }),
        (None, false) => {
            d.push(
                node.at,
                path,
                "names no peer: set podSelector, namespaceSelector (or both), or ipBlock \
                 (to allow every peer, leave the whole list out)",
            );
            None
        }
    };
    (d.count() == before).then_some(result).flatten()
}

fn parse_ip_block(d: &mut Diagnostics<'_>, node: &Node, path: &str) -> Option<IpBlock> {
    let before = d.count();
    let mut object = Object::new(d, node, path)?;
    let (cidr, except) = cidr_and_except(d, &mut object, names::strict_subnet);
    object.finish(d);
    let cidr = cidr?;
    (d.count() == before).then_some(IpBlock { cidr, except })
}

/// The `cidr` (required) and `except` fields of an ipBlock or a CiliumNetworkPolicy CIDR rule;
/// `inside(cidr, except)` says what is wrong with an exception that does not fit the block.
/// Each bad field is reported; the good exceptions are returned.
pub(crate) fn cidr_and_except(
    d: &mut Diagnostics<'_>,
    object: &mut Object<'_>,
    inside: fn(&IpNet, &IpNet) -> Result<(), String>,
) -> (Option<IpNet>, Vec<IpNet>) {
    let cidr_path = object.child("cidr");
    let cidr = yaml::required_string(d, object, "cidr").and_then(|(text, at)| {
        names::cidr(&text)
            .map_err(|problem| d.push(at, &cidr_path, problem))
            .ok()
    });
    let except_path = object.child("except");
    let mut except = Vec::new();
    if let Some(node) = object.take("except") {
        let list = yaml::string_list(
            d,
            Field {
                node,
                path: &except_path,
            },
        );
        for (i, (text, at)) in list.into_iter().enumerate() {
            let path = format!("{except_path}[{i}]");
            match names::cidr(&text) {
                Ok(net) => {
                    if let Some(cidr) = &cidr
                        && let Err(problem) = inside(cidr, &net)
                    {
                        d.push(at, &path, problem);
                    }
                    except.push(net);
                }
                Err(problem) => d.push(at, &path, problem),
            }
        }
    }
    (cidr, except)
}

fn parse_port(d: &mut Diagnostics<'_>, node: &Node, path: &str) -> Option<NetworkPolicyPort> {
    let before = d.count();
    let mut object = Object::new(d, node, path)?;
    let protocol_path = object.child("protocol");
    let protocol = match object.take("protocol") {
        Some(node) => yaml::string(
            d,
            Field {
                node,
                path: &protocol_path,
            },
        )
        .and_then(|text| {
            let protocol = Protocol::parse(&text);
            if protocol.is_none() {
                d.push(
                    node.at,
                    &protocol_path,
                    format!("{:?} is not TCP, UDP or SCTP", yaml::sanitize(&text)),
                );
            }
            protocol
        }),
        None => Some(Protocol::Tcp),
    };
    let port_path = object.child("port");
    let port_node = object.take("port");
    let port = port_node.and_then(|node| {
        let value = yaml::int_or_string(
            d,
            Field {
                node,
                path: &port_path,
            },
        )?;
        let port = match value {
            IntOrString::Int(n) => names::port_number(n).map(PortRef::Number),
            IntOrString::Str(name) => names::port_name(&name).map(|()| PortRef::Name(name)),
        };
        port.map_err(|problem| d.push(node.at, &port_path, problem))
            .ok()
    });
    let end_path = object.child("endPort");
    let end_port = object.take("endPort").and_then(|node| {
        let n = yaml::integer(
            d,
            Field {
                node,
                path: &end_path,
            },
        )?;
        let end = names::port_number(n)
            .map_err(|problem| d.push(node.at, &end_path, problem))
            .ok()?;
        match (&port, port_node) {
            (_, None) => d.push(
                node.at,
                &end_path,
                "needs a numeric `port` to start the range from",
            ),
            (Some(PortRef::Name(name)), _) => d.push(
                node.at,
                &end_path,
                format!("needs a numeric `port`, not the port name {name:?}"),
            ),
            (Some(PortRef::Number(start)), _) if end < *start => d.push(
                node.at,
                &end_path,
                format!("{end} is below port {start}; endPort must be at least port"),
            ),
            _ => {}
        }
        Some(end)
    });
    object.finish(d);
    let protocol = protocol?;
    (d.count() == before).then_some(NetworkPolicyPort {
        protocol,
        port,
        end_port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::{parse_chunk, split_documents};

    fn read(text: &str) -> Result<NetworkPolicy, Vec<String>> {
        let chunks = split_documents(text);
        let tree = parse_chunk(chunks[0]).expect("valid YAML");
        let mut d = Diagnostics::new("np.yaml");
        let policy = parse(&mut d, &tree, "", "default");
        match policy {
            Some(policy) if d.errors.is_empty() => Ok(policy),
            _ => Err(d.errors.iter().map(ToString::to_string).collect()),
        }
    }

    const HEAD: &str =
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\n";

    #[test]
    fn the_seed_dns_policy_reads_with_its_defaults() {
        let policy = read(&format!(
            "{HEAD}  namespace: default\nspec:\n  podSelector: {{}}\n  policyTypes: [Egress]\n  egress:\n    - to:\n        - namespaceSelector:\n            matchLabels:\n              kubernetes.io/metadata.name: kube-system\n      ports:\n        - protocol: UDP\n          port: 53\n"
        ))
        .expect("valid");
        assert_eq!(policy.namespace, "default");
        assert!(policy.pod_selector.is_empty());
        assert_eq!(
            policy.policy_types,
            PolicyTypes {
                ingress: false,
                egress: true,
                defaulted: false
            }
        );
        assert_eq!(policy.egress.len(), 1);
        let rule = &policy.egress[0];
        assert!(matches!(
            &rule.peers[0],
            NetworkPolicyPeer::Pods { pod_selector: None, namespace_selector: Some(s) }
                if s.match_labels["kubernetes.io/metadata.name"] == "kube-system"
        ));
        assert_eq!(
            rule.ports,
            vec![NetworkPolicyPort {
                protocol: Protocol::Udp,
                port: Some(PortRef::Number(53)),
                end_port: None
            }]
        );
    }

    #[test]
    fn policy_types_default_as_kubernetes_does() {
        let ingress_only = read(&format!("{HEAD}spec:\n  podSelector: {{}}\n")).expect("valid");
        assert_eq!(
            ingress_only.policy_types,
            PolicyTypes {
                ingress: true,
                egress: false,
                defaulted: true
            }
        );
        let with_egress = read(&format!("{HEAD}spec:\n  egress:\n    - {{}}\n")).expect("valid");
        assert!(with_egress.policy_types.ingress && with_egress.policy_types.egress);
        let empty_egress = read(&format!("{HEAD}spec:\n  egress: []\n")).expect("valid");
        assert!(!empty_egress.policy_types.egress);
        let no_spec = read(HEAD).expect("valid");
        assert!(no_spec.policy_types.ingress && !no_spec.policy_types.egress);
    }

    #[test]
    fn namespace_defaults_and_protocol_defaults() {
        let policy = read(&format!(
            "{HEAD}spec:\n  ingress:\n    - ports:\n        - port: serve-80-tcp\n        - port: 8000\n          endPort: 9000\n"
        ))
        .expect("valid");
        assert_eq!(policy.namespace, "default");
        let ports = &policy.ingress[0].ports;
        assert_eq!(ports[0].protocol, Protocol::Tcp);
        assert_eq!(ports[0].port, Some(PortRef::Name("serve-80-tcp".into())));
        assert_eq!(ports[1].end_port, Some(9000));
        assert!(policy.ingress[0].peers.is_empty());
    }

    #[test]
    fn every_problem_of_a_document_is_reported_with_its_line() {
        let errors = read(&format!(
            "{HEAD}spec:\n  podSelector: {{}}\n  egress:\n    - to:\n        - ipBlock: {{cidr: 10.0.0.0/8, except: [11.0.0.0/16]}}\n          podSelector: {{}}\n        - {{}}\n      ports:\n        - protocol: ICMP\n        - port: \"53\"\n        - port: 90\n          endPort: 80\n        - endPort: 80\n  ingres: []\n"
        ))
        .expect_err("invalid");
        let expected = [
            "np.yaml:9:48: spec.egress[0].to[0].ipBlock.except[0]: 11.0.0.0/16 is not strictly inside 10.0.0.0/8",
            "np.yaml:9:11: spec.egress[0].to[0]: sets both ipBlock and a selector",
            "np.yaml:11:11: spec.egress[0].to[1]: names no peer",
            "np.yaml:13:21: spec.egress[0].ports[0].protocol: \"ICMP\" is not TCP, UDP or SCTP",
            "np.yaml:14:17: spec.egress[0].ports[1].port: \"53\" is not a port number or a port name",
            "np.yaml:16:20: spec.egress[0].ports[2].endPort: 80 is below port 90",
            "np.yaml:17:20: spec.egress[0].ports[3].endPort: needs a numeric `port`",
            "np.yaml:18:3: spec: unknown key \"ingres\"; accepted keys: podSelector, ingress, egress, policyTypes",
        ];
        crate::yaml::assert_errors(&errors, &expected);
    }

    #[test]
    fn names_are_checked() {
        let errors = read(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: Allow_All\n  namespace: Prod\n",
        )
        .expect_err("invalid");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with(
                "np.yaml:4:9: metadata.name: \"Allow_All\" is not a DNS-1123 subdomain"
            )
        );
        assert!(
            errors[1]
                .starts_with("np.yaml:5:14: metadata.namespace: \"Prod\" is not a DNS-1123 label")
        );
        let errors = read("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {}\n")
            .expect_err("no name");
        assert_eq!(
            errors,
            vec!["np.yaml:3:11: metadata.name: required, but missing"]
        );
    }

    #[test]
    fn an_exported_manifest_loads() {
        let policy = read(&format!(
            "{HEAD}  uid: 0b5e\n  resourceVersion: \"42\"\n  creationTimestamp: \"2024-01-01T00:00:00Z\"\n  annotations:\n    kubectl.kubernetes.io/last-applied-configuration: |\n      {{}}\nspec: {{}}\nstatus: {{}}\n"
        ))
        .expect("valid");
        assert_eq!(policy.name, "p");
    }

    #[test]
    fn ip_block_clears_host_bits_and_matches_except() {
        let policy = read(&format!(
            "{HEAD}spec:\n  ingress:\n    - from:\n        - ipBlock:\n            cidr: 192.0.2.7/24\n            except: [192.0.2.128/25]\n"
        ))
        .expect("valid");
        let NetworkPolicyPeer::IpBlock(block) = &policy.ingress[0].peers[0] else {
            panic!("an ipBlock")
        };
        assert_eq!(block.cidr.to_string(), "192.0.2.0/24");
        assert!(block.contains(&"192.0.2.1".parse().expect("ip")));
        assert!(!block.contains(&"192.0.2.200".parse().expect("ip")));
        assert!(!block.contains(&"192.0.3.1".parse().expect("ip")));
    }
}
