//! The compiled tables against [`verdict()`]: for every case of `verdict_tests.rs` (and a few
//! more), every ordered pair of ends (the x/y/z pods, one more pod sharing x/a's identity, and
//! addresses outside the cluster), several ports and every protocol, [`lookup`] in the tables
//! must give the same decision and the same attribution as [`verdict()`] in each direction.
//! Where the entry sends the connection through the L7 proxy, its grants must name exactly the
//! HTTP rules [`verdict()`] applies, and sample requests must get from the compiled matchers
//! ([`check_grants`]) the answer of [`request_allowed`].

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::l7::{HttpMatcher, OwnedRequest, check_grants};
use crate::verdict::{
    Connection, DirectionVerdict, NamedPort, Namespace, Peer, request_allowed, verdict,
};

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];
const PORTS: [u16; 9] = [80, 81, 82, 443, 1023, 1024, 8080, 40000, 65535];

/// Addresses outside the cluster's pods, chosen around the CIDRs of the cases (RFC 5737, RFC
/// 3849), and the nodes' ([`HOST`], [`REMOTE_NODE`]).
const ADDRESSES: [&str; 9] = [
    "192.0.2.5",
    "192.0.2.10",
    "192.0.2.16",
    "192.0.2.100",
    "198.51.100.1",
    "203.0.113.9",
    "2001:db8::1",
    HOST,
    REMOTE_NODE,
];
/// This node, inside the cases' CIDRs (which must not match it).
const HOST: &str = "192.0.2.50";
/// Another node.
const REMOTE_NODE: &str = "198.51.100.60";

/// The upstream suites' x/y/z model, plus x/d labelled `pod=a`: the same identity as x/a.
fn world() -> World {
    let mut world = World::default();
    for (i, ns) in NAMESPACES.iter().enumerate() {
        world.namespaces.push(Namespace {
            name: ns.to_string(),
            labels: Labels::from([("ns".to_owned(), ns.to_string())]),
        });
        for (j, pod) in PODS.iter().enumerate() {
            world.pods.push(pod_in(ns, pod, pod, i as u8, j as u8 + 1));
        }
    }
    world.pods.push(pod_in("x", "d", "a", 0, 4));
    world.host = vec![HOST.parse().expect("address")];
    world.remote_nodes = vec![REMOTE_NODE.parse().expect("address")];
    world
}

fn pod_in(ns: &str, name: &str, label: &str, ns_octet: u8, host: u8) -> Pod {
    let mut ports = Vec::new();
    for port in [80u16, 81] {
        for (protocol, suffix) in [(Protocol::Tcp, "tcp"), (Protocol::Udp, "udp")] {
            ports.push(NamedPort {
                name: format!("serve-{port}-{suffix}"),
                port,
                protocol,
            });
        }
    }
    Pod {
        namespace: ns.to_owned(),
        name: name.to_owned(),
        labels: Labels::from([("pod".to_owned(), label.to_owned())]),
        ips: vec![IpAddr::V4(Ipv4Addr::new(10, 0, ns_octet, host))],
        ports,
    }
}

/// One identity per distinct (namespace, labels), from 256, as the observer's registry does.
fn identities(world: &World) -> Vec<EndpointIdentity> {
    let mut by_labels: BTreeMap<(String, Labels), u32> = BTreeMap::new();
    world
        .pods
        .iter()
        .enumerate()
        .map(|(i, pod)| {
            let next = 256 + by_labels.len() as u32;
            let identity = *by_labels
                .entry((pod.namespace.clone(), pod.labels.clone()))
                .or_insert(next);
            EndpointIdentity {
                namespace: pod.namespace.clone(),
                pod: pod.name.clone(),
                endpoint_id: i as u32 + 1,
                identity,
            }
        })
        .collect()
}

fn policies(yaml: &str) -> PolicySet {
    let mut set = PolicySet::new();
    set.add_file(yaml, "case.yaml");
    assert_eq!(set.errors, vec![], "the case's policies are valid");
    set
}

fn np(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: {name}\n  namespace: \"{namespace}\"\nspec:\n{spec}---\n"
    )
}

fn cnp(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: {name}\n  namespace: \"{namespace}\"\nspec:\n{spec}---\n"
    )
}

const DENY_INGRESS: &str = "  podSelector: {}\n  policyTypes: [Ingress]\n";

/// Every policy set of `verdict_tests.rs`, by test name.
fn cases() -> Vec<(&'static str, String)> {
    vec![
        ("no_policy", String::new()),
        ("default_deny_ingress", np("x", "deny", DENY_INGRESS)),
        (
            "allow_all_ingress_beside_default_deny",
            np("x", "deny", DENY_INGRESS)
                + &np("x", "allow-all", "  podSelector: {}\n  ingress:\n    - {}\n"),
        ),
        (
            "default_deny_egress",
            np("x", "deny-egress", "  podSelector: {}\n  policyTypes: [Egress]\n"),
        ),
        (
            "empty_egress_list",
            np(
                "x",
                "deny-egress",
                "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress]\n  egress: []\n",
            ),
        ),
        (
            "allow_from_a_pod_of_the_same_namespace",
            np(
                "x",
                "allow-b",
                "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n    - from:\n        - podSelector: {matchLabels: {pod: b}}\n",
            ),
        ),
        (
            "allow_from_a_namespace",
            np(
                "x",
                "allow-y",
                "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n    - from:\n        - namespaceSelector: {matchLabels: {ns: \"y\"}}\n",
            ),
        ),
        (
            "allow_by_namespace_name_label",
            np(
                "x",
                "allow-z",
                "  podSelector: {}\n  ingress:\n    - from:\n        - namespaceSelector:\n            matchLabels: {kubernetes.io/metadata.name: z}\n",
            ),
        ),
        (
            "allow_from_namespace_and_pod_together",
            np(
                "x",
                "allow-y-b",
                "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n    - from:\n        - namespaceSelector: {matchLabels: {ns: \"y\"}}\n          podSelector: {matchLabels: {pod: b}}\n",
            ),
        ),
        (
            "two_peers_are_either_or",
            np(
                "x",
                "allow-y-or-b",
                "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n    - from:\n        - namespaceSelector: {matchLabels: {ns: \"y\"}}\n        - podSelector: {matchLabels: {pod: b}}\n",
            ),
        ),
        (
            "match_expressions_not_in",
            np(
                "x",
                "not-from-y",
                "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n    - from:\n        - namespaceSelector:\n            matchExpressions: [{key: ns, operator: NotIn, values: [\"y\"]}]\n",
            ),
        ),
        (
            "pod_selector_with_exists_across_all_namespaces",
            np(
                "x",
                "from-c-anywhere",
                "  podSelector: {}\n  ingress:\n    - from:\n        - namespaceSelector: {}\n          podSelector:\n            matchExpressions: [{key: pod, operator: In, values: [c]}]\n",
            ),
        ),
        (
            "named_port_resolves_on_the_destination",
            np(
                "x",
                "allow-81",
                "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n    - ports:\n        - port: serve-81-tcp\n",
            ),
        ),
        (
            "named_port_on_egress",
            np(
                "x",
                "egress-80",
                "  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n    - ports:\n        - {port: serve-80-udp, protocol: UDP}\n",
            ),
        ),
        (
            "port_range",
            np(
                "x",
                "range",
                "  podSelector: {}\n  ingress:\n    - ports:\n        - {port: 80, endPort: 81}\n",
            ),
        ),
        (
            "protocol_udp_only",
            np(
                "y",
                "udp-80",
                "  podSelector: {matchLabels: {pod: b}}\n  ingress:\n    - ports:\n        - {port: 80, protocol: UDP}\n",
            ),
        ),
        (
            "egress_and_ingress_together",
            np(
                "x",
                "a-to-y",
                "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress]\n  egress:\n    - to:\n        - namespaceSelector: {matchLabels: {ns: \"y\"}}\n",
            ) + &np(
                "y",
                "b-from-x-a",
                "  podSelector: {matchLabels: {pod: b}}\n  ingress:\n    - from:\n        - namespaceSelector: {matchLabels: {ns: x}}\n          podSelector: {matchLabels: {pod: a}}\n",
            ),
        ),
        (
            "policies_selecting_a_pod_add_up",
            np(
                "x",
                "from-b",
                "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n    - from: [{podSelector: {matchLabels: {pod: b}}}]\n",
            ) + &np(
                "x",
                "from-z-c",
                "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n    - from:\n        - namespaceSelector: {matchLabels: {ns: z}}\n          podSelector: {matchLabels: {pod: c}}\n",
            ),
        ),
        (
            "rules_of_a_direction_not_in_policy_types_are_ignored",
            np(
                "x",
                "egress-only",
                "  podSelector: {}\n  policyTypes: [Egress]\n  ingress:\n    - from: [{podSelector: {matchLabels: {pod: b}}}]\n  egress:\n    - {}\n",
            ),
        ),
        (
            "a_policy_only_selects_pods_of_its_namespace",
            np(
                "z",
                "deny-a",
                "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Ingress, Egress]\n",
            ),
        ),
        (
            "ip_block_with_except",
            np(
                "x",
                "egress-cidr",
                "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress]\n  egress:\n    - to:\n        - ipBlock:\n            cidr: 0.0.0.0/0\n            except: [192.0.2.0/28]\n",
            ),
        ),
        (
            "nested_and_mixed_family_ip_blocks",
            np(
                "x",
                "egress-nested",
                "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress]\n  egress:\n    - to:\n        - ipBlock: {cidr: 192.0.2.0/24, except: [192.0.2.0/28]}\n        - ipBlock: {cidr: 2001:db8::/32}\n      ports: [{port: 80}]\n    - to:\n        - ipBlock: {cidr: 192.0.2.8/29}\n        - ipBlock: {cidr: 192.0.2.96/27}\n        - ipBlock: {cidr: 203.0.113.0/24}\n      ports: [{port: 81}]\n    - to:\n        - ipBlock: {cidr: 2001:db8::1/128}\n        - ipBlock: {cidr: 0.0.0.0/1}\n      ports: [{port: 443}]\n",
            ),
        ),
        (
            "ip_block_over_pod_addresses",
            np(
                "x",
                "from-y-addresses",
                "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n    - from:\n        - ipBlock: {cidr: 10.0.1.0/24, except: [10.0.1.2/32]}\n",
            ),
        ),
        (
            "ingress_from_outside_the_cluster",
            np("x", "deny", DENY_INGRESS)
                + &np(
                    "x",
                    "from-test-net",
                    "  podSelector: {}\n  ingress:\n    - from:\n        - ipBlock: {cidr: 192.0.2.0/24}\n",
                ),
        ),
        (
            "cilium_deny_wins_over_any_allow",
            np("x", "allow-all", "  podSelector: {}\n  ingress:\n    - {}\n")
                + &cnp(
                    "x",
                    "deny-from-y",
                    "  endpointSelector: {matchLabels: {pod: a}}\n  ingressDeny:\n    - fromEndpoints:\n        - matchLabels: {k8s:io.kubernetes.pod.namespace: \"y\"}\n  ingress:\n    - fromEntities: [all]\n",
                ),
        ),
        (
            "cilium_deny_only_rules_isolate",
            cnp(
                "x",
                "deny-b",
                "  endpointSelector: {matchLabels: {pod: a}}\n  ingressDeny:\n    - fromEndpoints: [{matchLabels: {pod: b}}]\n",
            ),
        ),
        (
            "cilium_deny_only_rules_without_default_deny",
            cnp(
                "x",
                "deny-b",
                "  endpointSelector: {matchLabels: {pod: a}}\n  ingressDeny:\n    - fromEndpoints: [{matchLabels: {pod: b}}]\n  enableDefaultDeny: {ingress: false}\n",
            ),
        ),
        (
            "cilium_endpoints_stay_in_the_policy_namespace",
            cnp(
                "x",
                "from-own-namespace",
                "  endpointSelector: {}\n  ingress:\n    - fromEndpoints: [{}]\n",
            ),
        ),
        (
            "cilium_endpoints_naming_a_namespace",
            cnp(
                "x",
                "from-z-b",
                "  endpointSelector: {}\n  ingress:\n    - fromEndpoints:\n        - matchLabels:\n            k8s:io.kubernetes.pod.namespace: z\n            k8s:pod: b\n",
            ),
        ),
        (
            "cilium_endpoints_by_namespace_labels",
            cnp(
                "x",
                "from-ns-label",
                "  endpointSelector: {}\n  ingress:\n    - fromEndpoints:\n        - matchLabels:\n            io.kubernetes.pod.namespace: \"y\"\n        - matchExpressions:\n            - {key: k8s:io.cilium.k8s.namespace.labels.ns, operator: In, values: [z]}\n",
            ),
        ),
        (
            "cilium_clusterwide_policy_spans_namespaces",
            "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata:\n  name: c-only-from-a\nspec:\n  endpointSelector: {matchLabels: {pod: c}}\n  ingress:\n    - fromEndpoints: [{matchLabels: {pod: a}}]\n".to_owned(),
        ),
        (
            "cilium_ports_only_rule",
            cnp(
                "y",
                "only-81",
                "  endpointSelector: {}\n  ingress:\n    - toPorts:\n        - ports: [{port: \"81\"}]\n",
            ),
        ),
        (
            "cilium_named_and_zero_ports",
            cnp(
                "y",
                "named",
                "  endpointSelector: {matchLabels: {pod: a}}\n  ingress:\n    - toPorts:\n        - ports: [{port: serve-80-udp, protocol: UDP}]\n",
            ) + &cnp(
                "z",
                "any-udp",
                "  endpointSelector: {}\n  ingress:\n    - toPorts:\n        - ports: [{port: \"0\", protocol: UDP}]\n",
            ),
        ),
        (
            "cilium_empty_rule_denies_all",
            cnp("z", "deny-all", "  endpointSelector: {}\n  ingress:\n    - {}\n"),
        ),
        (
            "cilium_entities",
            cnp(
                "x",
                "world-only",
                "  endpointSelector: {matchLabels: {pod: a}}\n  ingress:\n    - fromEntities: [world]\n",
            ) + &cnp(
                "x",
                "cluster-to-b",
                "  endpointSelector: {matchLabels: {pod: b}}\n  ingress:\n    - fromEntities: [cluster]\n",
            ) + &cnp(
                "x",
                "host-to-c",
                "  endpointSelector: {matchLabels: {pod: c}}\n  ingress:\n    - fromEntities: [host]\n",
            ) + &cnp(
                "y",
                "v6-out",
                "  endpointSelector: {}\n  egress:\n    - toEntities: [world-ipv6]\n",
            ),
        ),
        (
            "nodes_as_entities_and_the_host_admitted",
            np("x", "deny", "  podSelector: {}\n  policyTypes: [Ingress, Egress]\n")
                + &cnp(
                    "y",
                    "nodes",
                    "  endpointSelector: {matchLabels: {pod: a}}\n  ingress:\n    - fromEntities: [remote-node]\n  egress:\n    - toEntities: [host, cluster]\n",
                )
                + &cnp(
                    "y",
                    "deny-host",
                    "  endpointSelector: {matchLabels: {pod: b}}\n  ingressDeny:\n    - fromEntities: [host]\n      toPorts: [{ports: [{port: \"80\"}]}]\n",
                )
                + &cnp(
                    "z",
                    "get-from-all",
                    "  endpointSelector: {matchLabels: {pod: a}}\n  ingress:\n    - toPorts:\n        - ports: [{port: \"80\", protocol: TCP}]\n          rules:\n            http: [{method: GET}]\n",
                ),
        ),
        (
            "cilium_cidr_set_with_except_on_egress",
            cnp(
                "x",
                "egress-cidr",
                "  endpointSelector: {}\n  egress:\n    - toCIDRSet:\n        - {cidr: 192.0.2.0/24, except: [192.0.2.0/28]}\n      toPorts:\n        - ports: [{port: \"443\", protocol: TCP}]\n",
            ),
        ),
        (
            "cilium_http_rules",
            cnp(
                "x",
                "get-only",
                "  endpointSelector: {matchLabels: {pod: a}}\n  ingress:\n    - toPorts:\n        - ports: [{port: \"80\", protocol: TCP}]\n          rules:\n            http:\n              - {method: GET, path: /api/.*}\n              - {method: HEAD}\n",
            ),
        ),
        (
            "cilium_http_rules_lifted_by_an_l4_allow",
            cnp(
                "x",
                "get-only",
                "  endpointSelector: {matchLabels: {pod: a}}\n  ingress:\n    - toPorts:\n        - ports: [{port: \"80\", protocol: TCP}]\n          rules:\n            http:\n              - {method: GET}\n",
            ) + &np(
                "x",
                "from-y",
                "  podSelector: {}\n  ingress:\n    - from: [{namespaceSelector: {matchLabels: {ns: \"y\"}}}]\n",
            ),
        ),
        (
            "cilium_egress_to_endpoints_and_kubernetes_ingress_combine",
            cnp(
                "y",
                "c-to-z",
                "  endpointSelector: {matchLabels: {pod: c}}\n  egress:\n    - toEndpoints:\n        - matchLabels: {io.kubernetes.pod.namespace: z}\n",
            ) + &np(
                "z",
                "from-y",
                "  podSelector: {}\n  ingress:\n    - from: [{namespaceSelector: {matchLabels: {ns: \"y\"}}}]\n",
            ),
        ),
        // Beyond verdict_tests: a peer-only rule meeting a port-only rule (the meet closure),
        // and a deny on one port beside allows on every port.
        (
            "peer_rule_meets_port_rule",
            np(
                "x",
                "from-y",
                "  podSelector: {}\n  ingress:\n    - from: [{namespaceSelector: {matchLabels: {ns: \"y\"}}}]\n",
            ) + &np(
                "x",
                "tcp-81-from-all",
                "  podSelector: {}\n  ingress:\n    - ports: [{port: 81}]\n",
            ) + &cnp(
                "x",
                "udp-from-z-b",
                "  endpointSelector: {}\n  ingress:\n    - fromEndpoints: [{matchLabels: {io.kubernetes.pod.namespace: z, pod: b}}]\n      toPorts: [{ports: [{port: \"0\", protocol: UDP}]}]\n",
            ),
        ),
        (
            "deny_one_port_allow_the_rest",
            cnp(
                "y",
                "no-81",
                "  endpointSelector: {}\n  ingress:\n    - fromEntities: [all]\n  ingressDeny:\n    - toPorts: [{ports: [{port: \"81\", protocol: TCP}]}]\n    - fromEndpoints: [{matchLabels: {io.kubernetes.pod.namespace: x, pod: a}}]\n      toPorts: [{ports: [{port: \"80\"}]}]\n  egress:\n    - toCIDR: [192.0.2.0/24]\n  egressDeny:\n    - toCIDR: [192.0.2.0/25]\n",
            ),
        ),
        // Wide ranges as port blocks, meeting exact ports, peers and each other.
        (
            "wide_ranges_meet_ports_peers_and_each_other",
            np(
                "x",
                "unprivileged-from-y",
                "  podSelector: {}\n  ingress:\n    - from: [{namespaceSelector: {matchLabels: {ns: \"y\"}}}]\n      ports: [{port: 1024, endPort: 65535}]\n    - ports: [{port: 81, endPort: 1024, protocol: UDP}]\n",
            ) + &cnp(
                "x",
                "high-from-anyone-but-not-40000",
                "  endpointSelector: {matchLabels: {pod: a}}\n  ingress:\n    - fromEntities: [all]\n      toPorts: [{ports: [{port: \"32768\", endPort: 65535, protocol: TCP}, {port: \"80\", protocol: TCP}]}]\n  ingressDeny:\n    - fromEndpoints: [{matchLabels: {io.kubernetes.pod.namespace: z}}]\n      toPorts: [{ports: [{port: \"39999\", endPort: 40001}]}]\n",
            ),
        ),
        // HTTP rules: rule sets that differ per peer on one port, an L4 allow lifting them for
        // one peer, port ranges, deny rules on the same port, egress, `http: []`.
        (
            "cilium_http_rules_differ_per_peer",
            cnp(
                "x",
                "b-gets",
                "  endpointSelector: {matchLabels: {pod: a}}\n  ingress:\n    - fromEndpoints: [{matchLabels: {pod: b}}]\n      toPorts:\n        - ports: [{port: \"80\", protocol: TCP}]\n          rules: {http: [{method: GET, path: \"/b/.*\"}]}\n",
            ) + &cnp(
                "x",
                "y-posts",
                "  endpointSelector: {}\n  ingress:\n    - fromEndpoints: [{matchLabels: {io.kubernetes.pod.namespace: \"y\"}}]\n      toPorts:\n        - ports: [{port: \"80\", protocol: TCP}]\n          rules:\n            http:\n              - {method: POST, path: /submit, headers: [\"X-From: y\"]}\n              - {method: HEAD}\n",
            ) + &cnp(
                "x",
                "cluster-tokens",
                "  endpointSelector: {matchLabels: {pod: a}}\n  ingress:\n    - fromEntities: [cluster]\n      toPorts:\n        - ports: [{port: \"80\", protocol: TCP}]\n          rules:\n            http:\n              - method: GET\n                headerMatches:\n                  - {name: X-Token, value: t}\n                  - {name: X-Trace, mismatch: LOG}\n",
            ) + &cnp(
                "x",
                "c-same-as-b-gets",
                "  endpointSelector: {matchLabels: {pod: c}}\n  ingress:\n    - fromEndpoints: [{matchLabels: {pod: b}}]\n      toPorts:\n        - ports: [{port: \"80\", protocol: TCP}]\n          rules: {http: [{method: GET, path: \"/b/.*\"}]}\n",
            ),
        ),
        (
            "cilium_l4_allow_beside_http_for_everyone",
            cnp(
                "x",
                "get-for-all",
                "  endpointSelector: {matchLabels: {pod: a}}\n  ingress:\n    - toPorts:\n        - ports: [{port: \"80\", protocol: TCP}]\n          rules: {http: [{method: GET}]}\n",
            ) + &cnp(
                "x",
                "c-at-l4",
                "  endpointSelector: {matchLabels: {pod: a}}\n  ingress:\n    - fromEndpoints: [{matchLabels: {pod: c}}]\n      toPorts:\n        - ports: [{port: \"80\", protocol: TCP}]\n",
            ),
        ),
        (
            "cilium_http_rules_on_a_port_range",
            cnp(
                "x",
                "range",
                "  endpointSelector: {}\n  ingress:\n    - toPorts:\n        - ports: [{port: \"1000\", endPort: 9000, protocol: TCP}]\n          rules: {http: [{method: GET}]}\n    - fromEndpoints: [{matchLabels: {io.kubernetes.pod.namespace: \"y\"}}]\n      toPorts:\n        - ports: [{port: \"8080\", protocol: TCP}]\n          rules: {http: [{method: POST}]}\n    - fromEndpoints: [{matchLabels: {io.kubernetes.pod.namespace: z}}]\n      toPorts:\n        - ports: [{port: \"1024\", endPort: 2047, protocol: TCP}]\n",
            ),
        ),
        (
            "cilium_http_rules_beside_deny_on_the_same_port",
            cnp(
                "y",
                "api-but-not-z",
                "  endpointSelector: {}\n  ingress:\n    - fromEntities: [all]\n      toPorts:\n        - ports: [{port: \"80\", protocol: TCP}]\n          rules: {http: [{method: GET, path: \"/api/.*\"}]}\n  ingressDeny:\n    - fromEndpoints: [{matchLabels: {io.kubernetes.pod.namespace: z}}]\n      toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n",
            ),
        ),
        (
            "cilium_http_rules_on_egress",
            cnp(
                "y",
                "c-out",
                "  endpointSelector: {matchLabels: {pod: c}}\n  egress:\n    - toEndpoints: [{matchLabels: {io.kubernetes.pod.namespace: z}}]\n      toPorts:\n        - ports: [{port: \"80\", protocol: TCP}]\n          rules: {http: [{method: GET, host: \"z-api(:80)?\"}]}\n        - ports: [{port: \"81\", protocol: TCP}]\n          rules: {http: []}\n    - toCIDR: [192.0.2.0/24]\n      toPorts:\n        - ports: [{port: \"443\", protocol: TCP}]\n          rules: {http: [{path: /health}]}\n",
            ),
        ),
        (
            "egress_range_to_cidr_and_named_port",
            np(
                "y",
                "egress-mix",
                "  podSelector: {matchLabels: {pod: c}}\n  policyTypes: [Egress]\n  egress:\n    - to: [{ipBlock: {cidr: 192.0.2.0/24}}]\n      ports: [{port: 1, endPort: 1023}]\n    - ports: [{port: serve-81-tcp}, {port: 443, endPort: 8080, protocol: TCP}]\n",
            ),
        ),
    ]
}

/// Every end of the world: pods as `ns/pod`, then the addresses.
fn ends(world: &World) -> Vec<Peer> {
    let pods = world.pods.iter().map(|p| Peer::pod(&p.namespace, &p.name));
    let addresses = ADDRESSES
        .iter()
        .map(|a| Peer::Ip(a.parse().expect("address")));
    pods.chain(addresses).collect()
}

fn describe(peer: &Peer) -> String {
    match peer {
        Peer::Pod { namespace, name } => format!("{namespace}/{name}"),
        Peer::Ip(ip) => ip.to_string(),
    }
}

/// The mismatches between the tables and [`verdict()`] over every pair of ends, port and
/// protocol, described one per line.
fn disagreements(set: &PolicySet, world: &World) -> Vec<String> {
    let ids = identities(world);
    let compiled = compile(set, world, &ids).expect("compiles");
    let matchers: Vec<HttpMatcher> = compiled
        .http_rule_sets
        .iter()
        .map(|rules| HttpMatcher::new(rules).expect("rules read by the crate compile"))
        .collect();
    let endpoint = |peer: &Peer| -> Option<&EndpointIdentity> {
        match peer {
            Peer::Pod { namespace, name } => ids
                .iter()
                .find(|e| &e.namespace == namespace && &e.pod == name),
            Peer::Ip(_) => None,
        }
    };
    let identity = |peer: &Peer| match (endpoint(peer), peer) {
        (Some(e), _) => e.identity,
        (None, Peer::Ip(ip)) => compiled.address_identity(*ip),
        (None, Peer::Pod { .. }) => unreachable!("every pod of the world has an identity"),
    };
    let mut out = Vec::new();
    let ends = ends(world);
    for src in &ends {
        for dst in &ends {
            if src == dst || matches!((src, dst), (Peer::Ip(_), Peer::Ip(_))) {
                continue;
            }
            for port in PORTS {
                for protocol in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
                    let conn = Connection {
                        src: src.clone(),
                        dst: dst.clone(),
                        port,
                        protocol,
                    };
                    let v = verdict(set, world, &conn);
                    for (direction, local, remote, dv) in [
                        ("egress", src, dst, &v.egress),
                        ("ingress", dst, src, &v.ingress),
                    ] {
                        let table = endpoint(local).map(|e| {
                            let tables = compiled.endpoint(e.endpoint_id).expect("tables");
                            if direction == "egress" {
                                &tables.egress
                            } else {
                                &tables.ingress
                            }
                        });
                        let ingress = direction == "ingress";
                        let got =
                            judge(&compiled, table, ingress, identity(remote), protocol, port);
                        let want = expected(dv);
                        let at = format!(
                            "{} -> {} {port}/{protocol} {direction}",
                            describe(src),
                            describe(dst)
                        );
                        if got != want {
                            out.push(format!("{at}: tables say {got:?}, verdict {want:?}"));
                        }
                        let entry = table.and_then(|t| {
                            lookup(t, identity(remote), protocol_number(protocol), port)
                        });
                        if let Some(entry) = entry {
                            out.extend(
                                l7_disagreements(&compiled, &matchers, entry, dv)
                                    .into_iter()
                                    .map(|problem| format!("{at}: {problem}")),
                            );
                        }
                    }
                }
            }
        }
    }
    out
}

/// Requests the HTTP rules of the cases tell apart.
fn sample_requests() -> Vec<OwnedRequest> {
    let get = |path: &str| OwnedRequest::new("GET", path);
    vec![
        get("/"),
        get("/b/x?q=1"),
        get("/api/items").with_host("z-api:80"),
        get("/api/items").with_host("z-api:8080"),
        get("/health"),
        get("/").with_header("X-Token", "t"),
        get("/")
            .with_header("x-token", "t")
            .with_header("x-trace", "1"),
        get("/").with_header("x-token", "u"),
        OwnedRequest::new("HEAD", "/b/x"),
        OwnedRequest::new("POST", "/submit").with_header("X-From", "y"),
        OwnedRequest::new("POST", "/submit"),
        OwnedRequest::new("POST", "/health"),
        OwnedRequest::new("DELETE", "/api/items"),
    ]
}

/// Where `entry`'s L7 grants and `dv`'s HTTP rules disagree: the rules named (as a set of
/// policy and rule), and the answers to [`sample_requests`].
fn l7_disagreements(
    compiled: &Compiled,
    matchers: &[HttpMatcher],
    entry: &Entry,
    dv: &DirectionVerdict,
) -> Vec<String> {
    if !entry.http {
        return if entry.l7.is_empty() {
            Vec::new()
        } else {
            vec![format!("grants {:?} without the proxy", entry.l7)]
        };
    }
    let mut out = Vec::new();
    let mut sorted = entry.l7.clone();
    sorted.sort();
    sorted.dedup();
    if sorted != entry.l7 {
        out.push(format!("grants {:?} are not sorted and unique", entry.l7));
    }
    let granted: HashSet<(String, &cilium::HttpRule)> = entry
        .l7
        .iter()
        .flat_map(|grant| {
            let (policy, rules) = compiled.grant(grant).expect("a grant of this compilation");
            rules.iter().map(move |rule| (policy.to_string(), rule))
        })
        .collect();
    let applied: HashSet<(String, &cilium::HttpRule)> = dv
        .http_rules
        .iter()
        .map(|a| (a.policy.to_string(), &a.rule))
        .collect();
    if granted != applied {
        out.push(format!(
            "grants name {granted:?}, verdict applies {applied:?}"
        ));
    }
    for req in sample_requests() {
        let got = check_grants(matchers, &entry.l7, &req).is_some();
        let want = request_allowed(dv, &req);
        if got != want {
            let headers: Vec<String> = req
                .headers
                .iter()
                .map(|(name, value)| format!("{name}: {}", String::from_utf8_lossy(value)))
                .collect();
            out.push(format!(
                "{} {} {headers:?}: matchers say {got}, request_allowed {want}",
                req.method, req.path
            ));
        }
    }
    out
}

/// (enforced, allowed, allowed_by, denied_by, l7), as both sides can tell it. A denied
/// connection's allowers are not in the tables, which name only the deniers.
type Outcome = (bool, bool, Vec<String>, Vec<String>, bool);

fn expected(dv: &DirectionVerdict) -> Outcome {
    let names = |ids: &[PolicyId]| ids.iter().map(ToString::to_string).collect::<Vec<_>>();
    let allowed_by = if dv.denied_by.is_empty() {
        names(&dv.allowed_by)
    } else {
        Vec::new()
    };
    (
        dv.isolated,
        dv.allowed,
        allowed_by,
        names(&dv.denied_by),
        dv.l7_enforced,
    )
}

fn judge(
    compiled: &Compiled,
    table: Option<&DirectionTable>,
    ingress: bool,
    remote: u32,
    protocol: Protocol,
    port: u16,
) -> Outcome {
    let Some(table) = table else {
        // An address enforces nothing.
        return (false, true, Vec::new(), Vec::new(), false);
    };
    let names = |e: &Entry| -> Vec<String> {
        e.policies
            .iter()
            .map(|i| compiled.policies[*i as usize].to_string())
            .collect()
    };
    match lookup(table, remote, protocol_number(protocol), port) {
        None => (
            table.enforced,
            unmatched_allowed(table, ingress, remote),
            Vec::new(),
            Vec::new(),
            false,
        ),
        Some(e) if e.decision == Decision::Allow => {
            (table.enforced, true, names(e), Vec::new(), e.http)
        }
        Some(e) => (table.enforced, false, Vec::new(), names(e), e.http),
    }
}

#[test]
fn every_case_agrees_with_verdict() {
    let mut failures = Vec::new();
    for (name, yaml) in cases() {
        let set = policies(&yaml);
        for cidr_selects_pods in [false, true] {
            let mut world = world();
            world.cidr_selects_pods = cidr_selects_pods;
            let found = disagreements(&set, &world);
            if !found.is_empty() {
                failures.push(format!(
                    "{name} (cidr_selects_pods: {cidr_selects_pods}): {} disagreements, first:\n  {}",
                    found.len(),
                    found[..found.len().min(5)].join("\n  ")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn selections_are_what_verdict_isolates() {
    let world = world();
    let outside = Peer::Ip("192.0.2.1".parse().expect("address"));
    let isolated = |set: &PolicySet, pod: &Pod| {
        let conn = |src: Peer, dst: Peer| Connection {
            src,
            dst,
            port: 1,
            protocol: Protocol::Tcp,
        };
        let me = Peer::pod(&pod.namespace, &pod.name);
        (
            verdict(set, &world, &conn(outside.clone(), me.clone()))
                .ingress
                .isolated,
            verdict(set, &world, &conn(me, outside.clone()))
                .egress
                .isolated,
        )
    };
    for (name, yaml) in cases() {
        let set = policies(&yaml);
        let found = crate::verdict::selections(&set, &world);
        for (i, pod) in world.pods.iter().enumerate() {
            assert_eq!(
                found.isolated[i],
                isolated(&set, pod),
                "{name}: {}/{}",
                pod.namespace,
                pod.name
            );
        }
        for (p, policy) in set.policies.iter().enumerate() {
            let mut single = PolicySet::new();
            single.policies.push(policy.clone());
            let want: Vec<usize> = (0..world.pods.len())
                .filter(|i| {
                    let (a, b) = isolated(&single, &world.pods[*i]);
                    a || b
                })
                .collect();
            assert_eq!(found.selected[p], want, "{name}: policy {}", policy.id());
        }
    }
}

#[test]
fn the_seed_policies_agree_with_verdict() {
    let seed = include_str!("../../deploy/network-policies/default-deny-ingress.yaml").to_owned()
        + "---\n"
        + include_str!("../../deploy/network-policies/allow-dns-egress.yaml")
        + "---\n"
        + include_str!("../../deploy/network-policies/allow-monitoring-scrape.yaml")
        + "---\n"
        + include_str!("../../deploy/network-policies/allow-get-only.yaml");
    let set = policies(&seed);
    let mut world = World::default();
    for (i, (ns, pod, app)) in [
        ("default", "web", "web"),
        ("default", "api", "my-api"),
        ("kube-system", "coredns", "kube-dns"),
        ("monitoring", "prometheus", "prometheus"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut pod = pod_in(ns, pod, "-", 20, i as u8 + 1);
        pod.labels = Labels::from([
            ("app".to_owned(), app.to_owned()),
            ("k8s-app".to_owned(), app.to_owned()),
        ]);
        world.pods.push(pod);
    }
    assert_eq!(disagreements(&set, &world), Vec::<String>::new());
}

fn compile_one(yaml: &str) -> (Compiled, Vec<EndpointIdentity>) {
    let world = world();
    let ids = identities(&world);
    (
        compile(&policies(yaml), &world, &ids).expect("compiles"),
        ids,
    )
}

fn tables<'c>(
    compiled: &'c Compiled,
    ids: &[EndpointIdentity],
    ns: &str,
    pod: &str,
) -> &'c EndpointTables {
    let e = ids
        .iter()
        .find(|e| e.namespace == ns && e.pod == pod)
        .expect("pod");
    compiled.endpoint(e.endpoint_id).expect("tables")
}

fn identity_of(ids: &[EndpointIdentity], ns: &str, pod: &str) -> u32 {
    ids.iter()
        .find(|e| e.namespace == ns && e.pod == pod)
        .expect("pod")
        .identity
}

#[test]
fn lookup_prefers_the_more_specific_key() {
    let entry = |remote_identity, protocol, (port, port_bits), policy| Entry {
        remote_identity,
        protocol,
        port,
        port_bits,
        decision: Decision::Allow,
        policies: vec![policy],
        http: false,
        l7: Vec::new(),
    };
    let exact = (80, EXACT_PORT);
    let (small, big, any) = ((80, 14), (0, 9), (0, 0)); // 80-83, 0-127, any
    let mut entries = vec![
        entry(0, 0, any, 10),
        entry(300, 0, any, 9),
        entry(0, 6, any, 8),
        entry(0, 6, big, 7),
        entry(0, 6, small, 6),
        entry(0, 6, exact, 5),
        entry(300, 6, any, 4),
        entry(300, 6, big, 3),
        entry(300, 6, small, 2),
        entry(300, 6, exact, 1),
    ];
    entries.sort_by_key(Entry::key);
    let mut table = DirectionTable {
        enforced: true,
        entries,
    };
    let order = [
        (300, 6, exact),
        (300, 6, small),
        (300, 6, big),
        (300, 6, any),
        (0, 6, exact),
        (0, 6, small),
        (0, 6, big),
        (0, 6, any),
        (300, 0, any),
        (0, 0, any),
    ];
    for (expected, (id, proto, (port, bits))) in (1..=10).zip(order) {
        let found = lookup(&table, 300, 6, 80).map(|e| e.policies[0]);
        assert_eq!(
            found,
            Some(expected),
            "the first hit is {:?}",
            order[expected as usize - 1]
        );
        table.entries.retain(|e| e.key() != (id, proto, port, bits));
    }
    assert_eq!(lookup(&table, 300, 6, 80), None);
}

#[test]
fn port_blocks_tile_ranges_exactly() {
    assert_eq!(port_blocks(80, 80), [(80, EXACT_PORT)]);
    assert_eq!(port_blocks(80, 81), [(80, 15)]);
    assert_eq!(port_blocks(8000, 8009), [(8000, 13), (8008, 15)]);
    assert_eq!(
        port_blocks(1024, 65535),
        [
            (1024, 6),
            (2048, 5),
            (4096, 4),
            (8192, 3),
            (16384, 2),
            (32768, 1)
        ]
    );
    assert_eq!(port_blocks(0, 65535), [(0, 0)]);
    // Every range of a sample tiles exactly: no gap, no overlap, no port outside.
    for (start, end) in [
        (1, 65535),
        (1, 65534),
        (3, 17),
        (1000, 5095),
        (65535, 65535),
        (32767, 32768),
    ] {
        let blocks = port_blocks(start, end);
        assert!(blocks.len() <= 30, "{start}-{end}: {} blocks", blocks.len());
        let mut next = u32::from(start);
        for (first, bits) in blocks {
            assert_eq!(u32::from(first), next, "{start}-{end}");
            assert_eq!(block_of(first, bits), (first, bits), "aligned");
            next += 1 << (16 - u32::from(bits));
        }
        assert_eq!(next, u32::from(end) + 1, "{start}-{end}");
    }
}

#[test]
fn cidr_identities_and_longest_prefix() {
    let yaml = cnp(
        "x",
        "egress-cidr",
        "  endpointSelector: {}\n  egress:\n    - toCIDRSet:\n        - {cidr: 192.0.2.0/24, except: [192.0.2.0/28]}\n      toPorts:\n        - ports: [{port: \"443\", protocol: TCP}]\n",
    );
    let (compiled, ids) = compile_one(&yaml);
    let net = |s: &str| s.parse::<IpNet>().expect("net");
    assert_eq!(
        compiled.cidrs,
        [
            (net("192.0.2.0/24"), CIDR_IDENTITY_BASE),
            (net("192.0.2.0/28"), CIDR_IDENTITY_BASE + 1)
        ]
    );
    let addr = |s: &str| compiled.address_identity(s.parse().expect("ip"));
    assert_eq!(addr("192.0.2.100"), CIDR_IDENTITY_BASE);
    assert_eq!(addr("192.0.2.10"), CIDR_IDENTITY_BASE + 1);
    assert_eq!(addr("198.51.100.1"), WORLD_IPV4_IDENTITY);
    assert_eq!(addr("2001:db8::1"), WORLD_IPV6_IDENTITY);
    let egress = &tables(&compiled, &ids, "x", "b").egress;
    assert!(egress.enforced);
    assert_eq!(
        egress
            .entries
            .iter()
            .map(|e| (e.remote_identity, e.protocol, e.port, e.decision))
            .collect::<Vec<_>>(),
        [(CIDR_IDENTITY_BASE, PROTO_TCP, 443, Decision::Allow)],
        "the hole is no entry, so dropped"
    );
}

#[test]
fn deny_wins_at_every_key_it_covers() {
    let yaml = np(
        "x",
        "allow-all",
        "  podSelector: {}\n  ingress:\n    - {}\n",
    ) + &cnp(
        "x",
        "deny-from-y",
        "  endpointSelector: {matchLabels: {pod: a}}\n  ingressDeny:\n    - fromEndpoints:\n        - matchLabels: {k8s:io.kubernetes.pod.namespace: \"y\"}\n  ingress:\n    - fromEntities: [all]\n",
    );
    let (compiled, ids) = compile_one(&yaml);
    let ingress = &tables(&compiled, &ids, "x", "a").ingress;
    let from_y_c = lookup(ingress, identity_of(&ids, "y", "c"), PROTO_TCP, 80).expect("entry");
    assert_eq!(from_y_c.decision, Decision::Deny);
    assert_eq!(
        compiled.policies[from_y_c.policies[0] as usize].name,
        "deny-from-y"
    );
    let from_z_c = lookup(ingress, identity_of(&ids, "z", "c"), PROTO_UDP, 9).expect("entry");
    assert_eq!(from_z_c.decision, Decision::Allow);
    assert_eq!(from_z_c.policies, [0, 1], "both policies allow");
    // One wildcard entry, one per identity of y: no per-port entries.
    assert_eq!(ingress.entries.len(), 4);
}

#[test]
fn named_ports_resolve_per_destination() {
    let yaml = np(
        "x",
        "egress-80",
        "  podSelector: {matchLabels: {pod: b}}\n  policyTypes: [Egress]\n  egress:\n    - ports:\n        - {port: web, protocol: TCP}\n",
    );
    let mut world = world();
    // y/a serves `web` on 8080, z/a on 9090; the others have no `web`.
    for (ns, port) in [("y", 8080), ("z", 9090)] {
        let pod = world
            .pods
            .iter_mut()
            .find(|p| p.namespace == ns && p.name == "a")
            .expect("pod");
        pod.ports.push(NamedPort {
            name: "web".into(),
            port,
            protocol: Protocol::Tcp,
        });
    }
    let ids = identities(&world);
    let set = policies(&yaml);
    let compiled = compile(&set, &world, &ids).expect("compiles");
    let egress = &tables(&compiled, &ids, "x", "b").egress;
    let keys: Vec<_> = egress
        .entries
        .iter()
        .map(|e| (e.remote_identity, e.protocol, e.port))
        .collect();
    assert_eq!(
        keys,
        [
            (identity_of(&ids, "y", "a"), PROTO_TCP, 8080),
            (identity_of(&ids, "z", "a"), PROTO_TCP, 9090)
        ]
    );
    assert_eq!(disagreements(&set, &world), Vec::<String>::new());
}

#[test]
fn pods_selected_alike_share_their_table_unless_their_named_ports_differ() {
    // Every pod of x isolated for ingress on its own `web` port.
    let yaml = np(
        "x",
        "ingress-web",
        "  podSelector: {}\n  policyTypes: [Ingress]\n  ingress:\n    - ports:\n        - {port: web, protocol: TCP}\n",
    );
    let mut world = world();
    // x/a, x/b and x/d (x/a's identity) serve `web` on 8080, x/c on 9090.
    for pod in world.pods.iter_mut().filter(|p| p.namespace == "x") {
        pod.ports.push(NamedPort {
            name: "web".into(),
            port: if pod.name == "c" { 9090 } else { 8080 },
            protocol: Protocol::Tcp,
        });
    }
    let ids = identities(&world);
    let set = policies(&yaml);
    let compiled = compile(&set, &world, &ids).expect("compiles");
    let ports = |pod: &str| -> Vec<u16> {
        tables(&compiled, &ids, "x", pod)
            .ingress
            .entries
            .iter()
            .map(|e| e.port)
            .collect()
    };
    assert_eq!(ports("a"), [8080]);
    assert_eq!(ports("b"), [8080]);
    assert_eq!(ports("d"), [8080]);
    assert_eq!(ports("c"), [9090], "x/c's own `web`, not x/a's table");
    // Egress is not isolated by this policy, whatever the ports.
    assert!(!tables(&compiled, &ids, "x", "c").egress.enforced);
    assert_eq!(disagreements(&set, &world), Vec::<String>::new());
}

#[test]
fn end_port_ranges_become_a_few_port_blocks() {
    let yaml = np(
        "x",
        "range",
        "  podSelector: {}\n  ingress:\n    - ports:\n        - {port: 8000, endPort: 8009, protocol: UDP}\n        - {port: 1024, endPort: 65535, protocol: TCP}\n",
    );
    let (compiled, ids) = compile_one(&yaml);
    let ingress = &tables(&compiled, &ids, "x", "c").ingress;
    let keys: Vec<_> = ingress.entries.iter().map(Entry::key).collect();
    let mut want: Vec<_> = [(8000, 13), (8008, 15)]
        .map(|(n, b)| (ANY, PROTO_UDP, n, b))
        .to_vec();
    want.extend(
        port_blocks(1024, 65535)
            .into_iter()
            .map(|(n, b)| (ANY, PROTO_TCP, n, b)),
    );
    want.sort();
    assert_eq!(keys, want);
    for port in [8000, 8007, 8008, 8009] {
        assert!(lookup(ingress, 12345, PROTO_UDP, port).is_some(), "{port}");
    }
    assert!(lookup(ingress, 12345, PROTO_UDP, 8010).is_none());
    assert!(lookup(ingress, 12345, PROTO_UDP, 7999).is_none());
    assert!(lookup(ingress, 12345, PROTO_TCP, 8005).is_some());
    assert!(lookup(ingress, 12345, PROTO_TCP, 1023).is_none());
    assert!(lookup(ingress, 12345, PROTO_TCP, 65535).is_some());
}

#[test]
fn a_pod_without_identity_is_an_error() {
    let world = world();
    let mut ids = identities(&world);
    ids.retain(|e| e.pod != "c" || e.namespace != "z");
    assert_eq!(
        compile(&PolicySet::new(), &world, &ids),
        Err(CompileError::MissingIdentity {
            namespace: "z".into(),
            pod: "c".into()
        })
    );
    let mut ids = identities(&world);
    ids[0].identity = CIDR_IDENTITY_BASE;
    assert!(matches!(
        compile(&PolicySet::new(), &world, &ids),
        Err(CompileError::IdentityOutOfRange { .. })
    ));
}

#[test]
fn rules_on_all_ports_stay_small() {
    // Allow from y on every port, and all of the world on 80: a handful of entries, no port
    // expansion; the meet of the two is one entry per identity of y.
    let yaml = np(
        "x",
        "small",
        "  podSelector: {}\n  ingress:\n    - from: [{namespaceSelector: {matchLabels: {ns: \"y\"}}}]\n    - ports: [{port: 80}]\n",
    );
    let (compiled, ids) = compile_one(&yaml);
    let ingress = &tables(&compiled, &ids, "x", "a").ingress;
    // 3 (y/*, any, any) + 1 (any, TCP, 80) + 3 (y/*, TCP, 80).
    assert_eq!(ingress.entries.len(), 7, "{:#?}", ingress.entries);
    assert!(
        compiled
            .endpoints
            .iter()
            .all(|e| e.egress.entries.is_empty() && !e.egress.enforced)
    );
}

#[test]
fn http_entries_grant_rule_sets_by_index() {
    let yaml: String = cases()
        .into_iter()
        .filter(|(name, _)| {
            *name == "cilium_http_rules_differ_per_peer"
                || *name == "cilium_l4_allow_beside_http_for_everyone"
        })
        .map(|(_, yaml)| yaml)
        .collect();
    let (compiled, ids) = compile_one(&yaml);
    // `b-gets` and `c-same-as-b-gets` hold equal lists: one rule set.
    let names: Vec<&str> = compiled.policies.iter().map(|p| p.name.as_str()).collect();
    let index = |name: &str| names.iter().position(|n| *n == name).expect("policy") as u32;
    assert_eq!(
        compiled.http_rule_sets.len(),
        4,
        "{:#?}",
        compiled.http_rule_sets
    );
    let ingress = |pod: &str| &tables(&compiled, &ids, "x", pod).ingress;
    let from = |ns: &str, pod: &str, to: &str| {
        lookup(ingress(to), identity_of(&ids, ns, pod), PROTO_TCP, 80).expect("entry")
    };
    let b_gets = from("x", "b", "c").l7.clone();
    assert_eq!(b_gets.len(), 1);
    assert_eq!(b_gets[0].policy, index("c-same-as-b-gets"));
    // x/b -> x/a: every allowing clause has HTTP rules; four policies grant theirs.
    let to_a = from("x", "b", "a");
    assert!(to_a.http);
    let policies: Vec<u32> = to_a.l7.iter().map(|g| g.policy).collect();
    let mut want = vec![
        index("b-gets"),
        index("cluster-tokens"),
        index("get-for-all"),
    ];
    want.sort();
    assert_eq!(policies, want);
    let rule_set_of = |policy: &str| {
        to_a.l7
            .iter()
            .find(|g| g.policy == index(policy))
            .expect("grant")
            .rule_set
    };
    assert_eq!(rule_set_of("b-gets"), b_gets[0].rule_set, "shared");
    // x/c -> x/a: `c-at-l4` admits every request; nothing goes through the proxy.
    let from_c = from("x", "c", "a");
    assert_eq!(from_c.decision, Decision::Allow);
    assert!(!from_c.http && from_c.l7.is_empty(), "{from_c:?}");
    // y/a -> x/b: only `y-posts` selects x/b, on 80.
    let y_to_b = from("y", "a", "b");
    assert!(y_to_b.http);
    assert_eq!(
        compiled
            .grant(&y_to_b.l7[0])
            .map(|(p, rules)| (p.name.as_str(), rules.len())),
        Some(("y-posts", 2))
    );
    assert!(compiled.endpoints.iter().all(|e| {
        e.ingress
            .entries
            .iter()
            .chain(&e.egress.entries)
            .all(|entry| entry.http != entry.l7.is_empty())
    }));
}
