//! Conformance-style tests of [`super::verdict`], on the model of the upstream network policy
//! suites (kubernetes `test/e2e/network/netpol`, and cyclonus): namespaces x, y, z labelled
//! `ns=<name>`, pods a, b, c labelled `pod=<name>` in each, serving 80 and 81 over TCP and UDP
//! with ports named `serve-80-tcp` and so on. Each case writes its policies as manifests, so
//! the whole way from YAML to verdict is under test, and checks the full 9x9 table.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::load::PolicySet;

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];

/// An address outside the cluster, in TEST-NET-1 (RFC 5737).
const OUTSIDE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));

/// The address of pod `p` of namespace `n`: 10.0.<n>.<p+1>.
fn pod_ip(ns: usize, pod: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, ns as u8, pod as u8 + 1))
}

fn world() -> World {
    let mut world = World::default();
    for (i, ns) in NAMESPACES.iter().enumerate() {
        world.namespaces.push(Namespace {
            name: ns.to_string(),
            labels: Labels::from([("ns".to_owned(), ns.to_string())]),
        });
        for (j, pod) in PODS.iter().enumerate() {
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
            world.pods.push(Pod {
                namespace: ns.to_string(),
                name: pod.to_string(),
                labels: Labels::from([("pod".to_owned(), pod.to_string())]),
                ips: vec![pod_ip(i, j)],
                ports,
            });
        }
    }
    world
}

/// Every pod as `ns/pod`, in table order.
fn all_pods() -> Vec<String> {
    NAMESPACES
        .iter()
        .flat_map(|ns| PODS.iter().map(move |pod| format!("{ns}/{pod}")))
        .collect()
}

fn policies(yaml: &str) -> PolicySet {
    let mut set = PolicySet::new();
    set.add_file(yaml, "case.yaml");
    assert_eq!(set.errors, vec![], "the case's policies are valid");
    set
}

fn conn(from: &str, to: &str, port: u16, protocol: Protocol) -> Connection {
    let peer = |s: &str| {
        let (ns, pod) = s.split_once('/').expect("ns/pod");
        Peer::pod(ns, pod)
    };
    Connection {
        src: peer(from),
        dst: peer(to),
        port,
        protocol,
    }
}

/// Expected reachability between the nine pods: `grid[from][to]`.
#[derive(Clone, PartialEq, Eq)]
struct Reach {
    grid: Vec<Vec<bool>>,
}

impl Reach {
    /// Everything `default`, except each pod to itself, which loopback always allows.
    fn all(default: bool) -> Reach {
        let grid = (0..9)
            .map(|i| (0..9).map(|j| default || i == j).collect())
            .collect();
        Reach { grid }
    }

    /// Sets every pair `from` -> `to` whose names match the patterns (`x/a`, `x/*`, `*/b`,
    /// `*`), loopback excepted.
    fn set(mut self, from: &str, to: &str, value: bool) -> Reach {
        let pods = all_pods();
        for (i, a) in pods.iter().enumerate() {
            for (j, b) in pods.iter().enumerate() {
                if i != j && matches(from, a) && matches(to, b) {
                    self.grid[i][j] = value;
                }
            }
        }
        self
    }

    fn observed(set: &PolicySet, world: &World, port: u16, protocol: Protocol) -> Reach {
        let pods = all_pods();
        let grid = pods
            .iter()
            .map(|a| {
                pods.iter()
                    .map(|b| verdict(set, world, &conn(a, b, port, protocol)).allowed())
                    .collect()
            })
            .collect();
        Reach { grid }
    }

    fn table(&self) -> String {
        let pods = all_pods();
        let mut out = String::from("from\\to");
        for p in &pods {
            let _ = write!(out, " {p}");
        }
        out.push('\n');
        for (i, a) in pods.iter().enumerate() {
            let _ = write!(out, "{a:<7}");
            for j in 0..9 {
                out.push_str(if self.grid[i][j] { "   ." } else { "   X" });
            }
            out.push('\n');
        }
        out
    }
}

fn matches(pattern: &str, pod: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let (pns, ppod) = pattern.split_once('/').expect("ns/pod pattern");
    let (ns, name) = pod.split_once('/').expect("ns/pod");
    (pns == "*" || pns == ns) && (ppod == "*" || ppod == name)
}

#[track_caller]
fn check(yaml: &str, port: u16, protocol: Protocol, expected: Reach) {
    check_in(&world(), yaml, port, protocol, expected);
}

#[track_caller]
fn check_in(world: &World, yaml: &str, port: u16, protocol: Protocol, expected: Reach) {
    let set = policies(yaml);
    let observed = Reach::observed(&set, world, port, protocol);
    assert!(
        observed == expected,
        "{port}/{protocol}: expected (X = dropped)\n{}observed\n{}",
        expected.table(),
        observed.table()
    );
}

const TCP: Protocol = Protocol::Tcp;
const UDP: Protocol = Protocol::Udp;

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

#[test]
fn no_policy_allows_everything() {
    check("", 80, TCP, Reach::all(true));
}

#[test]
fn default_deny_ingress() {
    let yaml = np("x", "deny", DENY_INGRESS);
    let expected = Reach::all(true).set("*", "x/*", false);
    check(&yaml, 80, TCP, expected.clone());
    check(&yaml, 81, UDP, expected);
}

#[test]
fn allow_all_ingress_beside_default_deny() {
    let yaml = np("x", "deny", DENY_INGRESS)
        + &np(
            "x",
            "allow-all",
            "  podSelector: {}\n  ingress:\n    - {}\n",
        );
    check(&yaml, 80, TCP, Reach::all(true));
}

#[test]
fn default_deny_egress() {
    let yaml = np(
        "x",
        "deny-egress",
        "  podSelector: {}\n  policyTypes: [Egress]\n",
    );
    check(&yaml, 80, TCP, Reach::all(true).set("x/*", "*", false));
}

#[test]
fn empty_egress_list_with_egress_type_denies_egress() {
    let yaml = np(
        "x",
        "deny-egress",
        "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress]\n  egress: []\n",
    );
    check(&yaml, 80, TCP, Reach::all(true).set("x/a", "*", false));
}

#[test]
fn allow_from_a_pod_of_the_same_namespace() {
    let yaml = np(
        "x",
        "allow-b",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n    - from:\n        - podSelector: {matchLabels: {pod: b}}\n",
    );
    // y/b and z/b are pod=b too, but a podSelector alone means the policy's namespace.
    let expected = Reach::all(true)
        .set("*", "x/a", false)
        .set("x/b", "x/a", true);
    check(&yaml, 80, TCP, expected);
}

#[test]
fn allow_from_a_namespace() {
    let yaml = np(
        "x",
        "allow-y",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n    - from:\n        - namespaceSelector: {matchLabels: {ns: \"y\"}}\n",
    );
    let expected = Reach::all(true)
        .set("*", "x/a", false)
        .set("y/*", "x/a", true);
    check(&yaml, 80, TCP, expected);
}

#[test]
fn allow_by_namespace_name_label() {
    let yaml = np(
        "x",
        "allow-z",
        "  podSelector: {}\n  ingress:\n    - from:\n        - namespaceSelector:\n            matchLabels: {kubernetes.io/metadata.name: z}\n",
    );
    let expected = Reach::all(true)
        .set("*", "x/*", false)
        .set("z/*", "x/*", true);
    check(&yaml, 80, TCP, expected);
}

#[test]
fn allow_from_namespace_and_pod_together() {
    let yaml = np(
        "x",
        "allow-y-b",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n    - from:\n        - namespaceSelector: {matchLabels: {ns: \"y\"}}\n          podSelector: {matchLabels: {pod: b}}\n",
    );
    let expected = Reach::all(true)
        .set("*", "x/a", false)
        .set("y/b", "x/a", true);
    check(&yaml, 80, TCP, expected);
}

#[test]
fn two_peers_are_either_or() {
    let yaml = np(
        "x",
        "allow-y-or-b",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n    - from:\n        - namespaceSelector: {matchLabels: {ns: \"y\"}}\n        - podSelector: {matchLabels: {pod: b}}\n",
    );
    let expected = Reach::all(true)
        .set("*", "x/a", false)
        .set("y/*", "x/a", true)
        .set("x/b", "x/a", true);
    check(&yaml, 80, TCP, expected);
}

#[test]
fn match_expressions_not_in() {
    let yaml = np(
        "x",
        "not-from-y",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n    - from:\n        - namespaceSelector:\n            matchExpressions: [{key: ns, operator: NotIn, values: [\"y\"]}]\n",
    );
    let expected = Reach::all(true).set("y/*", "x/a", false);
    check(&yaml, 80, TCP, expected);
}

#[test]
fn pod_selector_with_exists_across_all_namespaces() {
    let yaml = np(
        "x",
        "from-c-anywhere",
        "  podSelector: {}\n  ingress:\n    - from:\n        - namespaceSelector: {}\n          podSelector:\n            matchExpressions: [{key: pod, operator: In, values: [c]}]\n",
    );
    let expected = Reach::all(true)
        .set("*", "x/*", false)
        .set("*/c", "x/*", true);
    check(&yaml, 80, TCP, expected);
}

#[test]
fn named_port_resolves_on_the_destination() {
    let yaml = np(
        "x",
        "allow-81",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n    - ports:\n        - port: serve-81-tcp\n",
    );
    let closed = Reach::all(true).set("*", "x/a", false);
    check(&yaml, 80, TCP, closed.clone());
    check(&yaml, 81, TCP, Reach::all(true));
    // The name is serve-81-tcp; UDP 81 has another name and TCP is the rule's protocol.
    check(&yaml, 81, UDP, closed);
}

#[test]
fn named_port_on_egress_resolves_on_the_destination_too() {
    let yaml = np(
        "x",
        "egress-80",
        "  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n    - ports:\n        - {port: serve-80-udp, protocol: UDP}\n",
    );
    check(&yaml, 80, UDP, Reach::all(true));
    check(&yaml, 80, TCP, Reach::all(true).set("x/*", "*", false));
}

#[test]
fn port_range() {
    let yaml = np(
        "x",
        "range",
        "  podSelector: {}\n  ingress:\n    - ports:\n        - {port: 80, endPort: 81}\n",
    );
    check(&yaml, 80, TCP, Reach::all(true));
    check(&yaml, 81, TCP, Reach::all(true));
    check(&yaml, 82, TCP, Reach::all(true).set("*", "x/*", false));
    check(&yaml, 80, UDP, Reach::all(true).set("*", "x/*", false));
}

#[test]
fn protocol_udp_only() {
    let yaml = np(
        "y",
        "udp-80",
        "  podSelector: {matchLabels: {pod: b}}\n  ingress:\n    - ports:\n        - {port: 80, protocol: UDP}\n",
    );
    check(&yaml, 80, UDP, Reach::all(true));
    check(&yaml, 80, TCP, Reach::all(true).set("*", "y/b", false));
}

#[test]
fn egress_and_ingress_together() {
    // x/a may only send to y; y/b only accepts from x/a. So x/a reaches y/a, y/b, y/c, and
    // y/b is reached by x/a alone.
    let yaml = np(
        "x",
        "a-to-y",
        "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress]\n  egress:\n    - to:\n        - namespaceSelector: {matchLabels: {ns: \"y\"}}\n",
    ) + &np(
        "y",
        "b-from-x-a",
        "  podSelector: {matchLabels: {pod: b}}\n  ingress:\n    - from:\n        - namespaceSelector: {matchLabels: {ns: x}}\n          podSelector: {matchLabels: {pod: a}}\n",
    );
    let expected = Reach::all(true)
        .set("x/a", "*", false)
        .set("x/a", "y/*", true)
        .set("*", "y/b", false)
        .set("x/a", "y/b", true);
    check(&yaml, 80, TCP, expected);
}

#[test]
fn policies_selecting_a_pod_add_up() {
    let yaml = np(
        "x",
        "from-b",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n    - from: [{podSelector: {matchLabels: {pod: b}}}]\n",
    ) + &np(
        "x",
        "from-z-c",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n    - from:\n        - namespaceSelector: {matchLabels: {ns: z}}\n          podSelector: {matchLabels: {pod: c}}\n",
    );
    let expected = Reach::all(true)
        .set("*", "x/a", false)
        .set("x/b", "x/a", true)
        .set("z/c", "x/a", true);
    check(&yaml, 80, TCP, expected);

    let set = policies(&yaml);
    let v = verdict(&set, &world(), &conn("z/c", "x/a", 80, TCP));
    assert!(v.ingress.isolated && v.ingress.allowed);
    assert_eq!(v.ingress.allowed_by.len(), 1);
    assert_eq!(
        v.ingress.allowed_by[0].to_string(),
        "NetworkPolicy/x/from-z-c"
    );
    assert!(!v.egress.isolated && v.egress.allowed && v.egress.allowed_by.is_empty());
}

#[test]
fn rules_of_a_direction_not_in_policy_types_are_ignored() {
    let yaml = np(
        "x",
        "egress-only",
        "  podSelector: {}\n  policyTypes: [Egress]\n  ingress:\n    - from: [{podSelector: {matchLabels: {pod: b}}}]\n  egress:\n    - {}\n",
    );
    check(&yaml, 80, TCP, Reach::all(true));
}

#[test]
fn a_policy_only_selects_pods_of_its_namespace() {
    let yaml = np(
        "z",
        "deny-a",
        "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Ingress, Egress]\n",
    );
    check(
        &yaml,
        80,
        TCP,
        Reach::all(true)
            .set("*", "z/a", false)
            .set("z/a", "*", false),
    );
}

#[test]
fn ip_block_with_except_matches_addresses_outside_the_pods() {
    let yaml = np(
        "x",
        "egress-cidr",
        "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress]\n  egress:\n    - to:\n        - ipBlock:\n            cidr: 0.0.0.0/0\n            except: [192.0.2.0/28]\n",
    );
    // By default (as Cilium does) an ipBlock never matches a pod, even 0.0.0.0/0.
    check(&yaml, 80, TCP, Reach::all(true).set("x/a", "*", false));

    let set = policies(&yaml);
    let world = world();
    let to = |ip: &str| Connection {
        src: Peer::pod("x", "a"),
        dst: Peer::Ip(ip.parse().expect("ip")),
        port: 443,
        protocol: TCP,
    };
    assert!(verdict(&set, &world, &to("198.51.100.1")).allowed());
    assert!(!verdict(&set, &world, &to("192.0.2.5")).allowed());
    assert!(verdict(&set, &world, &to("192.0.2.16")).allowed());
    // An address of a pod is that pod.
    assert!(!verdict(&set, &world, &to("10.0.1.2")).allowed());
}

#[test]
fn ip_block_over_pod_addresses_when_the_world_says_so() {
    // The conformance suite's variant: the block holds pod addresses. 10.0.1.0/24 is y;
    // except 10.0.1.2/32 takes y/b out.
    let yaml = np(
        "x",
        "from-y-addresses",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n    - from:\n        - ipBlock: {cidr: 10.0.1.0/24, except: [10.0.1.2/32]}\n",
    );
    let mut world = world();
    world.cidr_selects_pods = true;
    let expected = Reach::all(true)
        .set("*", "x/a", false)
        .set("y/a", "x/a", true)
        .set("y/c", "x/a", true);
    check_in(&world, &yaml, 80, TCP, expected);
}

#[test]
fn ingress_from_outside_the_cluster() {
    let yaml = np("x", "deny", DENY_INGRESS)
        + &np(
            "x",
            "from-test-net",
            "  podSelector: {}\n  ingress:\n    - from:\n        - ipBlock: {cidr: 192.0.2.0/24}\n",
        );
    let set = policies(&yaml);
    let from = |ip: IpAddr| Connection {
        src: Peer::Ip(ip),
        dst: Peer::pod("x", "b"),
        port: 80,
        protocol: TCP,
    };
    let v = verdict(&set, &world(), &from(OUTSIDE));
    assert!(v.allowed());
    assert!(!v.egress.enforced, "an address enforces nothing");
    assert_eq!(
        v.ingress
            .allowed_by
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["NetworkPolicy/x/from-test-net"]
    );
    assert!(!verdict(&set, &world(), &from("198.51.100.7".parse().expect("ip"))).allowed());
}

#[test]
fn the_seed_policies() {
    let seed = include_str!("../../deploy/network-policies/default-deny-ingress.yaml").to_owned()
        + "---\n"
        + include_str!("../../deploy/network-policies/allow-dns-egress.yaml")
        + "---\n"
        + include_str!("../../deploy/network-policies/allow-monitoring-scrape.yaml");
    let set = policies(&seed);
    let mut world = World::default();
    for (ns, pod, app) in [
        ("default", "web", "web"),
        ("kube-system", "coredns", "dns"),
        ("monitoring", "prometheus", "prometheus"),
    ] {
        world.pods.push(Pod {
            namespace: ns.into(),
            name: pod.into(),
            labels: Labels::from([("app".to_owned(), app.to_owned())]),
            ips: Vec::new(),
            ports: Vec::new(),
        });
    }
    let c = |from: &str, to: &str, port, protocol| {
        let v = verdict(&set, &world, &conn(from, to, port, protocol));
        (v.egress.allowed, v.ingress.allowed)
    };
    assert_eq!(
        c("default/web", "kube-system/coredns", 53, UDP),
        (true, true)
    );
    assert_eq!(
        c("default/web", "kube-system/coredns", 53, TCP),
        (false, true)
    );
    assert_eq!(
        c("default/web", "monitoring/prometheus", 9090, TCP),
        (false, true)
    );
    assert_eq!(
        c("monitoring/prometheus", "default/web", 8080, TCP),
        (true, true)
    );
    assert_eq!(
        c("kube-system/coredns", "default/web", 80, TCP),
        (true, false)
    );
}

// Cilium.

#[test]
fn cilium_deny_wins_over_any_allow() {
    let yaml = np(
        "x",
        "allow-all",
        "  podSelector: {}\n  ingress:\n    - {}\n",
    ) + &cnp(
        "x",
        "deny-from-y",
        "  endpointSelector: {matchLabels: {pod: a}}\n  ingressDeny:\n    - fromEndpoints:\n        - matchLabels: {k8s:io.kubernetes.pod.namespace: \"y\"}\n  ingress:\n    - fromEntities: [all]\n",
    );
    check(&yaml, 80, TCP, Reach::all(true).set("y/*", "x/a", false));

    let set = policies(&yaml);
    let v = verdict(&set, &world(), &conn("y/c", "x/a", 80, TCP));
    assert!(!v.ingress.allowed);
    assert_eq!(
        v.ingress
            .denied_by
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["CiliumNetworkPolicy/x/deny-from-y"]
    );
    assert_eq!(
        v.ingress.allowed_by.len(),
        2,
        "both allow, and still denied"
    );
}

#[test]
fn cilium_deny_only_rules_isolate_unless_told_not_to() {
    let deny = "  endpointSelector: {matchLabels: {pod: a}}\n  ingressDeny:\n    - fromEndpoints: [{matchLabels: {pod: b}}]\n";
    // Cilium's default: a rule with ingress rules of any sort puts its pods in default deny.
    check(
        &cnp("x", "deny-b", deny),
        80,
        TCP,
        Reach::all(true).set("*", "x/a", false),
    );
    let yaml = cnp(
        "x",
        "deny-b",
        &format!("{deny}  enableDefaultDeny: {{ingress: false}}\n"),
    );
    check(&yaml, 80, TCP, Reach::all(true).set("x/b", "x/a", false));
}

#[test]
fn cilium_endpoints_stay_in_the_policy_namespace_unless_named() {
    let yaml = cnp(
        "x",
        "from-own-namespace",
        "  endpointSelector: {}\n  ingress:\n    - fromEndpoints: [{}]\n",
    );
    check(
        &yaml,
        80,
        TCP,
        Reach::all(true)
            .set("*", "x/*", false)
            .set("x/*", "x/*", true),
    );
    let yaml = cnp(
        "x",
        "from-z-b",
        "  endpointSelector: {}\n  ingress:\n    - fromEndpoints:\n        - matchLabels:\n            k8s:io.kubernetes.pod.namespace: z\n            k8s:pod: b\n",
    );
    check(
        &yaml,
        80,
        TCP,
        Reach::all(true)
            .set("*", "x/*", false)
            .set("z/b", "x/*", true),
    );
    let yaml = cnp(
        "x",
        "from-ns-label",
        "  endpointSelector: {}\n  ingress:\n    - fromEndpoints:\n        - matchLabels:\n            io.kubernetes.pod.namespace: \"y\"\n        - matchExpressions:\n            - {key: k8s:io.cilium.k8s.namespace.labels.ns, operator: In, values: [z]}\n",
    );
    // The second selector names no namespace, so it stays in x, where ns is not z.
    check(
        &yaml,
        80,
        TCP,
        Reach::all(true)
            .set("*", "x/*", false)
            .set("y/*", "x/*", true),
    );
}

#[test]
fn cilium_clusterwide_policy_spans_namespaces() {
    let yaml = "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata:\n  name: c-only-from-a\nspec:\n  endpointSelector: {matchLabels: {pod: c}}\n  ingress:\n    - fromEndpoints: [{matchLabels: {pod: a}}]\n";
    check(
        yaml,
        80,
        TCP,
        Reach::all(true)
            .set("*", "*/c", false)
            .set("*/a", "*/c", true),
    );
}

#[test]
fn cilium_ports_only_rule_allows_every_peer_on_those_ports() {
    let yaml = cnp(
        "y",
        "only-81",
        "  endpointSelector: {}\n  ingress:\n    - toPorts:\n        - ports: [{port: \"81\"}]\n",
    );
    let closed = Reach::all(true).set("*", "y/*", false);
    check(&yaml, 80, TCP, closed);
    // No protocol is ANY.
    check(&yaml, 81, TCP, Reach::all(true));
    check(&yaml, 81, UDP, Reach::all(true));
}

#[test]
fn cilium_named_and_zero_ports() {
    let yaml = cnp(
        "y",
        "named",
        "  endpointSelector: {matchLabels: {pod: a}}\n  ingress:\n    - toPorts:\n        - ports: [{port: serve-80-udp, protocol: UDP}]\n",
    ) + &cnp(
        "z",
        "any-udp",
        "  endpointSelector: {}\n  ingress:\n    - toPorts:\n        - ports: [{port: \"0\", protocol: UDP}]\n",
    );
    check(&yaml, 80, UDP, Reach::all(true));
    check(&yaml, 81, UDP, Reach::all(true).set("*", "y/a", false));
    check(
        &yaml,
        80,
        TCP,
        Reach::all(true)
            .set("*", "y/a", false)
            .set("*", "z/*", false),
    );
}

#[test]
fn cilium_empty_rule_denies_all() {
    let yaml = cnp(
        "z",
        "deny-all",
        "  endpointSelector: {}\n  ingress:\n    - {}\n",
    );
    check(&yaml, 80, TCP, Reach::all(true).set("*", "z/*", false));
    // Egress untouched: the rule has no egress rules.
    let set = policies(&yaml);
    let v = verdict(&set, &world(), &conn("z/a", "x/a", 80, TCP));
    assert!(v.allowed() && !v.egress.isolated);
}

#[test]
fn cilium_entities() {
    let yaml = cnp(
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
    );
    let expected = Reach::all(true)
        .set("*", "x/a", false)
        .set("*", "x/c", false);
    check(&yaml, 80, TCP, expected);

    let set = policies(&yaml);
    let from_outside = |pod: &str| Connection {
        src: Peer::Ip(OUTSIDE),
        dst: Peer::pod("x", pod),
        port: 80,
        protocol: TCP,
    };
    assert!(verdict(&set, &world(), &from_outside("a")).allowed());
    assert!(!verdict(&set, &world(), &from_outside("b")).allowed());
    assert!(!verdict(&set, &world(), &from_outside("c")).allowed());
}

#[test]
fn the_node_reaches_its_pods_and_nodes_are_entities() {
    const HOST: &str = "192.0.2.50";
    const OTHER_NODE: &str = "192.0.2.60";
    let mut world = world();
    world.host = vec![HOST.parse().unwrap()];
    world.remote_nodes = vec![OTHER_NODE.parse().unwrap()];
    let yaml = np(
        "x",
        "deny",
        "  podSelector: {}\n  policyTypes: [Ingress, Egress]\n",
    ) + &np(
        "x",
        "cidr",
        "  podSelector: {matchLabels: {pod: c}}\n  policyTypes: [Ingress]\n  ingress:\n    - from: [{ipBlock: {cidr: 192.0.2.0/24}}]\n",
    ) + &cnp(
        "y",
        "nodes",
        "  endpointSelector: {matchLabels: {pod: a}}\n  ingress:\n    - fromEntities: [remote-node]\n  egress:\n    - toEntities: [host]\n",
    ) + &cnp(
        "y",
        "deny-host",
        "  endpointSelector: {matchLabels: {pod: b}}\n  ingressDeny:\n    - fromEntities: [host]\n",
    ) + &cnp(
        "z",
        "world",
        "  endpointSelector: {matchLabels: {pod: a}}\n  ingress:\n    - fromEntities: [world]\n",
    );
    let set = policies(&yaml);
    let between = |src: &str, dst: &str| {
        let peer = |s: &str| match s.split_once('/') {
            Some((ns, pod)) => Peer::pod(ns, pod),
            None => Peer::Ip(s.parse().unwrap()),
        };
        verdict(
            &set,
            &world,
            &Connection {
                src: peer(src),
                dst: peer(dst),
                port: 80,
                protocol: TCP,
            },
        )
    };
    // Isolated pods still take the host's connections, by no policy...
    let v = between(HOST, "x/a");
    assert!(v.allowed() && v.ingress.isolated && v.ingress.allowed_by.is_empty());
    // ...but not another node's, nor do they reach the host out of an isolated egress.
    assert!(!between(OTHER_NODE, "x/a").allowed());
    assert!(!between("x/a", HOST).allowed());
    // ipBlock does not match nodes' addresses; it does match the world's beside them.
    assert!(!between(OTHER_NODE, "x/c").allowed());
    assert!(between("192.0.2.70", "x/c").allowed());
    // The entities name them.
    assert!(between(OTHER_NODE, "y/a").allowed());
    assert!(!between("192.0.2.70", "y/a").allowed());
    assert!(between("y/a", HOST).allowed());
    assert!(!between("y/a", OTHER_NODE).allowed());
    // A deny rule naming the host is the one way to keep it out.
    let v = between(HOST, "y/b");
    assert!(!v.allowed() && v.ingress.denied_by.len() == 1);
    // `world` is neither node.
    assert!(!between(OTHER_NODE, "z/a").allowed() && between("192.0.2.70", "z/a").allowed());
}

#[test]
fn cilium_cidr_set_with_except_on_egress() {
    let yaml = cnp(
        "x",
        "egress-cidr",
        "  endpointSelector: {}\n  egress:\n    - toCIDRSet:\n        - {cidr: 192.0.2.0/24, except: [192.0.2.0/28]}\n      toPorts:\n        - ports: [{port: \"443\", protocol: TCP}]\n",
    );
    check(&yaml, 80, TCP, Reach::all(true).set("x/*", "*", false));
    let set = policies(&yaml);
    let to = |ip: &str, port| Connection {
        src: Peer::pod("x", "c"),
        dst: Peer::Ip(ip.parse().expect("ip")),
        port,
        protocol: TCP,
    };
    assert!(verdict(&set, &world(), &to("192.0.2.100", 443)).allowed());
    assert!(!verdict(&set, &world(), &to("192.0.2.100", 80)).allowed());
    assert!(!verdict(&set, &world(), &to("192.0.2.10", 443)).allowed());
}

#[test]
fn cilium_http_rules_are_reported() {
    let yaml = cnp(
        "x",
        "get-only",
        "  endpointSelector: {matchLabels: {pod: a}}\n  ingress:\n    - toPorts:\n        - ports: [{port: \"80\", protocol: TCP}]\n          rules:\n            http:\n              - {method: GET, path: /api/.*}\n              - {method: HEAD}\n",
    );
    check(&yaml, 80, TCP, Reach::all(true));
    check(&yaml, 81, TCP, Reach::all(true).set("*", "x/a", false));
    let set = policies(&yaml);
    let v = verdict(&set, &world(), &conn("y/b", "x/a", 80, TCP));
    assert!(v.ingress.l7_enforced);
    let methods: Vec<_> = v
        .ingress
        .http_rules
        .iter()
        .map(|r| {
            (
                r.policy.name.as_str(),
                r.rule.method.as_deref(),
                r.rule.path.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        methods,
        [
            ("get-only", Some("GET"), Some("/api/.*")),
            ("get-only", Some("HEAD"), None)
        ]
    );

    // Another policy admitting the same traffic at L4 lifts the L7 restriction.
    let yaml = yaml
        + &np(
            "x",
            "allow-all",
            "  podSelector: {}\n  ingress:\n    - {}\n",
        );
    let set = policies(&yaml);
    let v = verdict(&set, &world(), &conn("y/b", "x/a", 80, TCP));
    assert!(v.ingress.allowed && !v.ingress.l7_enforced);
    assert_eq!(v.ingress.http_rules.len(), 2);
}

#[test]
fn cilium_egress_to_endpoints_and_kubernetes_ingress_combine() {
    let yaml = cnp(
        "y",
        "c-to-z",
        "  endpointSelector: {matchLabels: {pod: c}}\n  egress:\n    - toEndpoints:\n        - matchLabels: {io.kubernetes.pod.namespace: z}\n",
    ) + &np(
        "z",
        "from-y",
        "  podSelector: {}\n  ingress:\n    - from: [{namespaceSelector: {matchLabels: {ns: \"y\"}}}]\n",
    );
    let expected = Reach::all(true)
        .set("y/c", "*", false)
        .set("y/c", "z/*", true)
        .set("*", "z/*", false)
        .set("y/*", "z/*", true)
        .set("z/*", "z/*", false);
    check(&yaml, 80, TCP, expected);
}
