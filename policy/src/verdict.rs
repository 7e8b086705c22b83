//! What a policy set means for one connection: allowed or dropped, in which direction, and
//! because of which policies. A pure function of the policies, the pods and the connection.
//!
//! It exists so that flowscope can say *why* a flow was dropped (Hubble's `ingress_denied_by`,
//! `egress_allowed_by`, ...) and so that the eBPF maps `observer` compiles can be checked against
//! a reading of the policies that is easy to follow and to test.
//!
//! # Semantics
//!
//! Kubernetes NetworkPolicy:
//! - A connection passes egress at its source pod and ingress at its destination pod; an
//!   address that is not a pod enforces nothing.
//! - A pod is isolated in a direction once any policy of its namespace selects it with that
//!   direction in `policyTypes`; then only what some such policy's rules allow passes (the union
//!   of all of them). Rules of a direction not in `policyTypes` are ignored.
//! - An empty or absent rule list allows nothing; an empty or absent `from`/`to` allows every
//!   peer; empty or absent `ports` allows every port.
//! - Named ports are resolved against the destination pod's declared ports, with the protocol
//!   of the rule; a named port never matches an address that is not a pod.
//! - `ipBlock` (and Cilium's CIDR rules) match addresses that are not pods, as in Cilium and
//!   most implementations, where a pod's own identity takes precedence over its address. Set
//!   [`World::cidr_selects_pods`] to also match pod addresses (what the upstream conformance
//!   tests' ipBlock cases expect of implementations that do so).
//! - A pod talking to itself is always allowed: loopback traffic never reaches the datapath
//!   that enforces policy (the conformance suite's `AllowLoopback`).
//! - A pod cannot block its own node ([`World::host`]): a connection from the host is allowed
//!   at the pod's ingress whatever isolates it (the kubelet's probes must reach it), unless a
//!   Cilium deny rule names the host; HTTP rules that some rule applies to it still filter its
//!   requests. Egress to the host, and both directions with other nodes
//!   ([`World::remote_nodes`]), are judged like any peer. `ipBlock` and CIDR rules do not
//!   match nodes' addresses, as in Cilium (whose nodes have identities of their own).
//!
//! Cilium adds:
//! - A namespaced rule selects pods of its own namespace; its `fromEndpoints`/`toEndpoints`
//!   selectors are limited to that namespace too, unless they name
//!   `io.kubernetes.pod.namespace`. A cluster-wide rule is limited by neither. Selector keys may
//!   carry the `k8s:` or `any:` source; pods carry their labels, `io.kubernetes.pod.namespace`
//!   and their namespace's labels under `io.cilium.k8s.namespace.labels.`.
//! - A rule isolates its subjects per `enableDefaultDeny`, by default in each direction it has
//!   rules (allow or deny) for.
//! - Deny rules win over every allow, of either policy kind.
//! - A rule with ports and no peer field applies to every peer; with neither, to none (the
//!   `ingress: [{}]` idiom for "deny all").
//! - Entities: `all` is everything, `world` (`world-ipv4`, `world-ipv6`) every address that is
//!   neither a pod nor a node, `host` this node, `remote-node` the others, `cluster` every pod
//!   and node. The API server and Cilium's own endpoints (`kube-apiserver`, `health`, `init`,
//!   `ingress`, `unmanaged`) are not part of a [`World`], so the entities naming them match
//!   nothing here.
//! - HTTP rules of the allowing rules are reported; Cilium's proxy then filters requests, unless
//!   some other allowing rule admits the same traffic at L4 only.
//! - `nodeSelector` rules select nodes, which a [`World`] has none of.
//!
//! # Requests
//!
//! [`request_allowed`] says whether one HTTP request on an allowed connection passes one end,
//! as the L7 proxy at that end decides it ([`Verdict::request_allowed`]: both ends):
//! - The connection goes through the proxy only when every rule allowing it carries HTTP rules
//!   ([`DirectionVerdict::l7_enforced`]). One rule admitting it at L4 (a Kubernetes policy, a
//!   Cilium rule without `rules.http`) admits every request, as in Cilium: rules add up.
//! - Through the proxy, a request passes when at least one of [`DirectionVerdict::http_rules`]
//!   matches it, whichever policy or port rule the rule comes from (rules are ORed); a rule
//!   matches when all of its fields do (ANDed); a rule without fields matches everything.
//! - `method`, `path`, `host`: regular expressions matching the whole `:method`, `:path` (query
//!   included) and `:authority` (port included when the client sent it). `headers` and
//!   `headerMatches`: presence, or the exact value; a `headerMatches` entry with
//!   `mismatch: LOG` never fails a rule. The details are in [`crate::l7`], whose
//!   [`HttpMatcher`](crate::l7::HttpMatcher) is the fast form of the same reading.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

use crate::cilium::{
    self, CiliumNetworkPolicy, CiliumRule, Entity, HttpRule, MismatchAction, PeerRule, Peers,
    PortProtocol, Subject,
};
use crate::l7::{self, HttpRequestFields};
use crate::load::{PolicyBody, PolicyId, PolicySet};
use crate::networkpolicy::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use crate::ports::{PortRef, Protocol};
use crate::selector::{LabelSelector, Labels, Operator};

/// The label Kubernetes gives every namespace, with the namespace's name as its value.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The pods and namespaces policies are judged against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct World {
    /// Namespaces and their labels. A pod's namespace missing from here has only
    /// [`NAMESPACE_NAME_LABEL`].
    pub namespaces: Vec<Namespace>,
    /// Every pod.
    pub pods: Vec<Pod>,
    /// Whether `ipBlock` and CIDR rules also match pod addresses (see the module
    /// documentation); `false` by default, as in Cilium.
    pub cidr_selects_pods: bool,
    /// The addresses of the node judging (Cilium's `reserved:host`).
    pub host: Vec<IpAddr>,
    /// The addresses of the cluster's other nodes (`reserved:remote-node`).
    pub remote_nodes: Vec<IpAddr>,
}

/// A namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// Its name.
    pub name: String,
    /// Its labels; [`NAMESPACE_NAME_LABEL`] is implied, as the API server sets it.
    pub labels: Labels,
}

/// A pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its labels.
    pub labels: Labels,
    /// Its addresses; a connection from or to one of them is from or to the pod.
    pub ips: Vec<IpAddr>,
    /// Its declared container ports, which named ports in policies resolve against.
    pub ports: Vec<NamedPort>,
}

/// A container port with a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPort {
    /// e.g. `serve-80-tcp`.
    pub name: String,
    /// The number.
    pub port: u16,
    /// The protocol.
    pub protocol: Protocol,
}

/// One end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A pod, by namespace and name. A pod missing from the [`World`] is taken as a pod of
    /// that namespace without labels, addresses or ports.
    Pod {
        /// The namespace.
        namespace: String,
        /// The name.
        name: String,
    },
    /// An address; one belonging to a pod of the [`World`] is that pod.
    Ip(IpAddr),
}

impl Peer {
    /// A pod peer.
    pub fn pod(namespace: &str, name: &str) -> Peer {
        Peer::Pod {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

/// A connection, as its first packet shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The client.
    pub src: Peer,
    /// The server.
    pub dst: Peer,
    /// The destination port.
    pub port: u16,
    /// The transport protocol.
    pub protocol: Protocol,
}

/// The decision for a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Egress, judged at the source pod.
    pub egress: DirectionVerdict,
    /// Ingress, judged at the destination pod.
    pub ingress: DirectionVerdict,
    /// Source and destination are the same pod: allowed without looking at policies.
    pub loopback: bool,
}

impl Verdict {
    /// Whether the connection passes both directions.
    pub fn allowed(&self) -> bool {
        self.egress.allowed && self.ingress.allowed
    }

    /// Whether `req`, sent on the connection, reaches the server: the connection is allowed
    /// and the proxies at both ends (where enforced) pass the request.
    pub fn request_allowed(&self, req: &impl HttpRequestFields) -> bool {
        self.allowed() && request_allowed(&self.egress, req) && request_allowed(&self.ingress, req)
    }
}

/// Whether `req` passes at the end `v` judges (see "Requests" in the module documentation):
/// the connection is allowed here, and either the proxy does not filter it or one of the HTTP
/// rules applied matches the request. Reads the rules afresh on every call: a reference, not
/// the proxy's fast path ([`HttpMatcher`](crate::l7::HttpMatcher)).
pub fn request_allowed(v: &DirectionVerdict, req: &impl HttpRequestFields) -> bool {
    v.allowed && (!v.l7_enforced || v.http_rules.iter().any(|a| http_rule_matches(&a.rule, req)))
}

/// Whether `rule` matches `req`, read field by field. An expression that does not compile
/// (never in rules this crate read) matches nothing.
fn http_rule_matches(rule: &HttpRule, req: &impl HttpRequestFields) -> bool {
    let regex = |pattern: &Option<String>, value: Option<&str>| match pattern.as_deref() {
        None | Some("") => true,
        Some(pattern) => {
            value.is_some_and(|v| l7::http_regex(pattern).is_ok_and(|r| r.is_match(v)))
        }
    };
    regex(&rule.method, Some(req.method()))
        && regex(&rule.path, Some(req.path()))
        && regex(&rule.host, req.host())
        && rule.headers.iter().all(|entry| {
            let (name, value) = l7::header_entry(entry);
            l7::header_holds(req, name, value)
        })
        && rule
            .header_matches
            .iter()
            .filter(|m| m.mismatch == MismatchAction::Fail)
            .all(|m| l7::header_holds(req, &m.name, m.value.as_deref()))
}

/// The decision in one direction at one end.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DirectionVerdict {
    /// Whether this end is a pod, where policy is enforced.
    pub enforced: bool,
    /// Whether some policy isolates the pod in this direction (default deny).
    pub isolated: bool,
    /// Whether the connection passes here.
    pub allowed: bool,
    /// Policies with a rule allowing the connection (Hubble's `ingress_allowed_by` /
    /// `egress_allowed_by`), in set order.
    pub allowed_by: Vec<PolicyId>,
    /// Policies with a deny rule matching it (Hubble's `ingress_denied_by` /
    /// `egress_denied_by`); any makes the connection dropped.
    pub denied_by: Vec<PolicyId>,
    /// HTTP rules of the allowing rules, for requests on this connection.
    pub http_rules: Vec<AppliedHttpRule>,
    /// True when every allowing rule carries HTTP rules, so Cilium's proxy admits only the
    /// requests matching one of [`DirectionVerdict::http_rules`].
    pub l7_enforced: bool,
}

/// An HTTP rule and the policy it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedHttpRule {
    /// The policy.
    pub policy: PolicyId,
    /// The rule.
    pub rule: HttpRule,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

/// One end as the evaluation sees it.
#[derive(Clone, Copy)]
enum End<'w> {
    Pod(PodView<'w>),
    /// This node.
    Host,
    /// Another node.
    RemoteNode,
    /// Any other address.
    Ip(IpAddr),
}

#[derive(Clone, Copy)]
struct PodView<'w> {
    namespace: &'w str,
    name: &'w str,
    labels: &'w Labels,
    namespace_labels: &'w Labels,
    ips: &'w [IpAddr],
    ports: &'w [NamedPort],
}

/// Labels shared by every pod the [`World`] does not know.
static NO_LABELS: Labels = Labels::new();

struct Resolver<'w> {
    world: &'w World,
    /// Each namespace's labels with [`NAMESPACE_NAME_LABEL`] added.
    namespace_labels: BTreeMap<&'w str, Labels>,
    /// For namespaces the world does not list: only the name label.
    implied: BTreeMap<String, Labels>,
}

impl<'w> Resolver<'w> {
    fn new(world: &'w World, conn: &Connection) -> Self {
        let mut namespace_labels = BTreeMap::new();
        for ns in &world.namespaces {
            let mut labels = ns.labels.clone();
            labels
                .entry(NAMESPACE_NAME_LABEL.to_owned())
                .or_insert_with(|| ns.name.clone());
            namespace_labels.insert(ns.name.as_str(), labels);
        }
        let mut implied = BTreeMap::new();
        let mentioned = world.pods.iter().map(|p| p.namespace.as_str()).chain(
            [&conn.src, &conn.dst].into_iter().filter_map(|p| match p {
                Peer::Pod { namespace, .. } => Some(namespace.as_str()),
                Peer::Ip(_) => None,
            }),
        );
        for ns in mentioned {
            if !namespace_labels.contains_key(ns) {
                implied.insert(
                    ns.to_owned(),
                    Labels::from([(NAMESPACE_NAME_LABEL.to_owned(), ns.to_owned())]),
                );
            }
        }
        Resolver {
            world,
            namespace_labels,
            implied,
        }
    }

    fn namespace_labels(&self, namespace: &str) -> &Labels {
        self.namespace_labels
            .get(namespace)
            .or_else(|| self.implied.get(namespace))
            .unwrap_or(&NO_LABELS)
    }

    fn view(&'w self, pod: &'w Pod) -> PodView<'w> {
        PodView {
            namespace: &pod.namespace,
            name: &pod.name,
            labels: &pod.labels,
            namespace_labels: self.namespace_labels(&pod.namespace),
            ips: &pod.ips,
            ports: &pod.ports,
        }
    }

    fn end(&'w self, peer: &'w Peer) -> End<'w> {
        match peer {
            Peer::Pod { namespace, name } => {
                match self
                    .world
                    .pods
                    .iter()
                    .find(|p| &p.namespace == namespace && &p.name == name)
                {
                    Some(pod) => End::Pod(self.view(pod)),
                    None => End::Pod(PodView {
                        namespace,
                        name,
                        labels: &NO_LABELS,
                        namespace_labels: self.namespace_labels(namespace),
                        ips: &[],
                        ports: &[],
                    }),
                }
            }
            Peer::Ip(ip) => match self.world.pods.iter().find(|p| p.ips.contains(ip)) {
                Some(pod) => End::Pod(self.view(pod)),
                None if self.world.host.contains(ip) => End::Host,
                None if self.world.remote_nodes.contains(ip) => End::RemoteNode,
                None => End::Ip(*ip),
            },
        }
    }
}

/// Which pods each policy of a set selects, and which directions of which pods some policy
/// isolates: what `policy list` and `endpoint list` show. The same reading as [`verdict`]'s
/// (a pod is selected where a policy would isolate it), done once per policy over the pods of
/// its namespace, so it stays cheap at thousands of pods and policies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selections {
    /// Per policy of the set, in set order: indices into [`World::pods`], ascending.
    pub selected: Vec<Vec<usize>>,
    /// Per pod of the world: (ingress isolated, egress isolated).
    pub isolated: Vec<(bool, bool)>,
}

/// See [`Selections`].
pub fn selections(set: &PolicySet, world: &World) -> Selections {
    let resolver = Resolver::new(
        world,
        &Connection {
            src: Peer::Ip(IpAddr::from([0, 0, 0, 0])),
            dst: Peer::Ip(IpAddr::from([0, 0, 0, 0])),
            port: 0,
            protocol: Protocol::Tcp,
        },
    );
    let mut by_namespace: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, pod) in world.pods.iter().enumerate() {
        by_namespace
            .entry(pod.namespace.as_str())
            .or_default()
            .push(i);
    }
    let all: Vec<usize> = (0..world.pods.len()).collect();
    let mut out = Selections {
        selected: Vec::with_capacity(set.policies.len()),
        isolated: vec![(false, false); world.pods.len()],
    };
    for policy in &set.policies {
        let mut selected = Vec::new();
        let mut isolate = |i: usize, ingress: bool, egress: bool| {
            let (a, b) = &mut out.isolated[i];
            *a |= ingress;
            *b |= egress;
            if ingress || egress {
                selected.push(i);
            }
        };
        match &policy.body {
            PolicyBody::Kubernetes(np) => {
                let types = np.policy_types;
                for &i in by_namespace
                    .get(np.namespace.as_str())
                    .into_iter()
                    .flatten()
                {
                    if np.pod_selector.matches(&world.pods[i].labels) {
                        isolate(i, types.ingress, types.egress);
                    }
                }
            }
            PolicyBody::Cilium(cnp) => {
                let candidates = match &cnp.namespace {
                    Some(ns) => by_namespace.get(ns.as_str()).map_or(&[][..], Vec::as_slice),
                    None => &all,
                };
                for &i in candidates {
                    let view = resolver.view(&world.pods[i]);
                    let (mut ingress, mut egress) = (false, false);
                    for rule in &cnp.rules {
                        if let Subject::Endpoints(selector) = &rule.subject
                            && cilium_matches(selector, view)
                        {
                            ingress |= rule.default_deny.ingress;
                            egress |= rule.default_deny.egress;
                        }
                    }
                    isolate(i, ingress, egress);
                }
            }
        }
        selected.dedup();
        out.selected.push(selected);
    }
    out
}

/// Judges `conn` against `set` in `world` (see the module documentation for the semantics).
pub fn verdict(set: &PolicySet, world: &World, conn: &Connection) -> Verdict {
    let resolver = Resolver::new(world, conn);
    let src = resolver.end(&conn.src);
    let dst = resolver.end(&conn.dst);
    if let (End::Pod(a), End::Pod(b)) = (src, dst)
        && a.namespace == b.namespace
        && a.name == b.name
    {
        let open = DirectionVerdict {
            enforced: true,
            allowed: true,
            ..DirectionVerdict::default()
        };
        return Verdict {
            egress: open.clone(),
            ingress: open,
            loopback: true,
        };
    }
    let judge = Judge {
        world,
        conn,
        src,
        dst,
    };
    Verdict {
        egress: judge.direction(set, Direction::Egress),
        ingress: judge.direction(set, Direction::Ingress),
        loopback: false,
    }
}

struct Judge<'a> {
    world: &'a World,
    conn: &'a Connection,
    src: End<'a>,
    dst: End<'a>,
}

impl Judge<'_> {
    /// The end enforcing `direction`, and the end at the other side.
    fn ends(&self, direction: Direction) -> (End<'_>, End<'_>) {
        match direction {
            Direction::Egress => (self.src, self.dst),
            Direction::Ingress => (self.dst, self.src),
        }
    }

    fn direction(&self, set: &PolicySet, direction: Direction) -> DirectionVerdict {
        let (End::Pod(subject), peer) = self.ends(direction) else {
            // An address outside the cluster's pods enforces nothing.
            return DirectionVerdict {
                allowed: true,
                ..DirectionVerdict::default()
            };
        };
        let mut out = DirectionVerdict {
            enforced: true,
            ..DirectionVerdict::default()
        };
        let mut l4_only = false;
        for policy in &set.policies {
            let id = policy.id();
            let (mut allows, mut denies) = (false, false);
            match &policy.body {
                PolicyBody::Kubernetes(np) => {
                    if let Some(allowed) = self.kubernetes(np, subject, peer, direction) {
                        out.isolated = true;
                        if allowed {
                            allows = true;
                            l4_only = true;
                        }
                    }
                }
                PolicyBody::Cilium(cnp) => {
                    for rule in &cnp.rules {
                        let Some(effect) = self.cilium(cnp, rule, subject, peer, direction) else {
                            continue;
                        };
                        out.isolated |= effect.isolates;
                        denies |= effect.denied;
                        if effect.allowed {
                            allows = true;
                            l4_only |= effect.l4_only;
                            out.http_rules.extend(effect.http.into_iter().map(|rule| {
                                AppliedHttpRule {
                                    policy: id.clone(),
                                    rule: rule.clone(),
                                }
                            }));
                        }
                    }
                }
            }
            if allows {
                out.allowed_by.push(id.clone());
            }
            if denies {
                out.denied_by.push(id);
            }
        }
        // The node reaches its pods whatever isolates them (see the module documentation).
        let from_host = direction == Direction::Ingress && matches!(peer, End::Host);
        out.allowed =
            out.denied_by.is_empty() && (!out.isolated || !out.allowed_by.is_empty() || from_host);
        out.l7_enforced = out.allowed && out.isolated && !l4_only && !out.http_rules.is_empty();
        out
    }

    /// `None` when `np` does not select `subject` for `direction`; else whether it allows.
    fn kubernetes(
        &self,
        np: &NetworkPolicy,
        subject: PodView<'_>,
        peer: End<'_>,
        direction: Direction,
    ) -> Option<bool> {
        let types = np.policy_types;
        let (isolates, rules) = match direction {
            Direction::Ingress => (types.ingress, &np.ingress),
            Direction::Egress => (types.egress, &np.egress),
        };
        if !isolates
            || np.namespace != subject.namespace
            || !np.pod_selector.matches(subject.labels)
        {
            return None;
        }
        Some(rules.iter().any(|rule| {
            (rule.peers.is_empty() || rule.peers.iter().any(|p| self.k8s_peer(np, p, peer)))
                && (rule.ports.is_empty() || rule.ports.iter().any(|p| self.k8s_port(p)))
        }))
    }

    fn k8s_peer(&self, np: &NetworkPolicy, peer_rule: &NetworkPolicyPeer, peer: End<'_>) -> bool {
        match peer_rule {
            NetworkPolicyPeer::Pods {
                pod_selector,
                namespace_selector,
            } => {
                let End::Pod(pod) = peer else {
                    return false;
                };
                let namespace_ok = match namespace_selector {
                    Some(selector) => selector.matches(pod.namespace_labels),
                    None => pod.namespace == np.namespace,
                };
                namespace_ok && pod_selector.as_ref().is_none_or(|s| s.matches(pod.labels))
            }
            NetworkPolicyPeer::IpBlock(block) => self.addresses(peer).any(|ip| block.contains(&ip)),
        }
    }

    /// The addresses CIDR rules may match for `peer`.
    fn addresses<'e>(&self, peer: End<'e>) -> Box<dyn Iterator<Item = IpAddr> + 'e> {
        match peer {
            End::Ip(ip) => Box::new(std::iter::once(ip)),
            End::Pod(pod) if self.world.cidr_selects_pods => Box::new(pod.ips.iter().copied()),
            End::Pod(_) | End::Host | End::RemoteNode => Box::new(std::iter::empty()),
        }
    }

    fn k8s_port(&self, rule: &NetworkPolicyPort) -> bool {
        rule.protocol == self.conn.protocol
            && match &rule.port {
                None => true,
                Some(port) => self.port_matches(port, rule.end_port, rule.protocol),
            }
    }

    /// Whether the connection's port is `port` (to `end`), a name resolved against the
    /// destination pod with `protocol`.
    fn port_matches(&self, port: &PortRef, end: Option<u16>, protocol: Protocol) -> bool {
        let wanted = self.conn.port;
        match port {
            PortRef::Number(start) => match end {
                Some(end) => (*start..=end).contains(&wanted),
                None => *start == wanted,
            },
            PortRef::Name(name) => match self.dst {
                End::Pod(pod) => pod
                    .ports
                    .iter()
                    .any(|p| &p.name == name && p.protocol == protocol && p.port == wanted),
                End::Ip(_) | End::Host | End::RemoteNode => false,
            },
        }
    }

    fn cilium<'p>(
        &self,
        cnp: &CiliumNetworkPolicy,
        rule: &'p CiliumRule,
        subject: PodView<'_>,
        peer: End<'_>,
        direction: Direction,
    ) -> Option<CiliumEffect<'p>> {
        let Subject::Endpoints(selector) = &rule.subject else {
            return None;
        };
        if cnp
            .namespace
            .as_deref()
            .is_some_and(|ns| ns != subject.namespace)
            || !cilium_matches(selector, subject)
        {
            return None;
        }
        let (isolates, allow, deny) = match direction {
            Direction::Ingress => (rule.default_deny.ingress, &rule.ingress, &rule.ingress_deny),
            Direction::Egress => (rule.default_deny.egress, &rule.egress, &rule.egress_deny),
        };
        let mut effect = CiliumEffect {
            isolates,
            allowed: false,
            denied: false,
            l4_only: false,
            http: Vec::new(),
        };
        for peer_rule in deny {
            if self.cilium_rule_ports(cnp, peer_rule, peer).is_some() {
                effect.denied = true;
            }
        }
        for peer_rule in allow {
            if let Some(http) = self.cilium_rule_ports(cnp, peer_rule, peer) {
                effect.allowed = true;
                match http {
                    Some(rules) => effect.http.extend(rules),
                    None => effect.l4_only = true,
                }
            }
        }
        Some(effect)
    }

    /// `None` when the rule does not match; else the HTTP rules of the matching port rules, or
    /// `Some(None)` when one of them matches at L4 only.
    fn cilium_rule_ports<'p>(
        &self,
        cnp: &CiliumNetworkPolicy,
        rule: &'p PeerRule,
        peer: End<'_>,
    ) -> Option<Option<Vec<&'p HttpRule>>> {
        let peer_ok = match &rule.peers {
            Peers::Unspecified => !rule.to_ports.is_empty(),
            Peers::Endpoints(selectors) => {
                let End::Pod(pod) = peer else {
                    return None;
                };
                selectors.iter().any(|s| {
                    let namespace_ok = match &cnp.namespace {
                        Some(ns) if !names_namespace(s) => ns == pod.namespace,
                        _ => true,
                    };
                    namespace_ok && cilium_matches(s, pod)
                })
            }
            Peers::Cidrs(cidrs) => self
                .addresses(peer)
                .any(|ip| cidrs.iter().any(|c| c.contains(&ip))),
            Peers::Entities(entities) => entities.iter().any(|e| entity_matches(*e, peer)),
        };
        if !peer_ok {
            return None;
        }
        if rule.to_ports.is_empty() {
            return Some(None);
        }
        let mut http = Vec::new();
        let mut matched = false;
        for port_rule in &rule.to_ports {
            let port_ok =
                port_rule.ports.is_empty() || port_rule.ports.iter().any(|p| self.cilium_port(p));
            if !port_ok {
                continue;
            }
            match &port_rule.http {
                // An L4-only match admits every request, whatever the other port rules say.
                None => return Some(None),
                Some(rules) => {
                    matched = true;
                    http.extend(rules.iter());
                }
            }
        }
        matched.then_some(Some(http))
    }

    fn cilium_port(&self, rule: &PortProtocol) -> bool {
        let protocol_ok = rule.protocol.is_none_or(|p| p == self.conn.protocol);
        protocol_ok
            && match &rule.port {
                None => true,
                Some(port) => self.port_matches(
                    port,
                    rule.end_port,
                    rule.protocol.unwrap_or(self.conn.protocol),
                ),
            }
    }
}

struct CiliumEffect<'p> {
    isolates: bool,
    allowed: bool,
    denied: bool,
    l4_only: bool,
    http: Vec<&'p HttpRule>,
}

/// Whether a selector names the pod namespace label, which lifts a namespaced policy's limit
/// to its own namespace.
pub(crate) fn names_namespace(selector: &LabelSelector) -> bool {
    let is_namespace_key = |key: &str| strip_source(key).1 == cilium::POD_NAMESPACE_LABEL;
    selector.match_labels.keys().any(|k| is_namespace_key(k))
        || selector
            .match_expressions
            .iter()
            .any(|r| is_namespace_key(&r.key) && r.operator != Operator::DoesNotExist)
}

/// `k8s:app` -> (`k8s`, `app`); `app` -> (`any`, `app`).
pub(crate) use flowscope_meta::cilium::split_source as strip_source;

/// Matches a Cilium selector against a pod's Cilium labels.
fn cilium_matches(selector: &LabelSelector, pod: PodView<'_>) -> bool {
    selector.matches_with(|key| {
        let (source, key) = strip_source(key);
        if source != "any" && source != "k8s" {
            // Pods carry only Kubernetes-sourced labels; `reserved:` names non-pod identities.
            return None;
        }
        if key == cilium::POD_NAMESPACE_LABEL {
            return Some(pod.namespace);
        }
        if let Some(namespace_key) = key.strip_prefix(cilium::NAMESPACE_LABELS_PREFIX) {
            return pod.namespace_labels.get(namespace_key).map(String::as_str);
        }
        pod.labels.get(key).map(String::as_str)
    })
}

fn entity_matches(entity: Entity, peer: End<'_>) -> bool {
    match (entity, peer) {
        (Entity::All, _) => true,
        (Entity::World, End::Ip(_)) => true,
        (Entity::WorldIpv4, End::Ip(ip)) => ip.is_ipv4(),
        (Entity::WorldIpv6, End::Ip(ip)) => ip.is_ipv6(),
        (Entity::Cluster, End::Pod(_) | End::Host | End::RemoteNode) => true,
        (Entity::Host, End::Host) => true,
        (Entity::RemoteNode, End::RemoteNode) => true,
        _ => false,
    }
}

#[cfg(test)]
#[path = "verdict_tests.rs"]
mod tests;
