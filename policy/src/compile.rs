//! A policy set compiled into the per-endpoint lookup tables the eBPF datapath consults.
//!
//! The datapath decides once per new connection, at the local endpoint: egress policy when a
//! pod sends, ingress policy when it receives. It has the remote end's security identity (from
//! the IP -> identity map), the protocol and the destination port, and may only do a few hash
//! lookups: the cost of a decision must not grow with the number of rules. So everything rules
//! say is resolved here, ahead of time, into [`Entry`]s keyed by
//! `(remote identity, protocol, port)`, where `0` in any field is a wildcard. What the tables
//! say is meant to be exactly what [`verdict()`](crate::verdict()) says, and the tests in
//! `compile_tests.rs` hold them to it connection by connection.
//!
//! # Lookup order
//!
//! [`lookup`] is the reference the datapath follows. It probes, and stops at the first hit:
//!
//! 1. `(identity, protocol, port)`
//! 2. `(identity, protocol, port block)`, the smallest block containing the port
//! 3. `(identity, protocol, 0)`
//! 4. `(0, protocol, port)`
//! 5. `(0, protocol, port block)`
//! 6. `(0, protocol, 0)`
//! 7. `(identity, 0, 0)`
//! 8. `(0, 0, 0)`
//!
//! Not found: dropped when the table is [`DirectionTable::enforced`], allowed otherwise, and
//! always allowed at ingress from [`HOST_IDENTITY`] ([`unmatched_allowed`]): a pod cannot
//! block its own node, so where no rule speaks of the node's connection it passes, and where
//! one does (a deny, HTTP rules for every peer) that rule decides, as `verdict` says.
//! There is no `(x, 0, port)` form: a rule naming a port without a protocol (Cilium's `ANY`)
//! becomes one entry per protocol. A port range (`endPort`) becomes the few aligned power-of-two
//! blocks that tile it (at most 30 for any range), which the datapath finds with one
//! longest-prefix lookup, as Cilium does; a single port is an exact key.
//!
//! # Why that order gives the right answer
//!
//! Each rule clause (peers x ports of one rule) becomes a set of keys. The compiler closes the
//! keys under *meet* (the most specific key two keys both generalise, e.g. `(id, 0, 0)` and
//! `(0, 6, 80)` meet at `(id, 6, 80)`), and gives each key the combined effect of every clause
//! with a key generalising it: deny rules win and name the denying policies, else the allowing
//! policies are named. With the set closed, the keys matching a connection always have a most
//! specific one, and the order above checks it first (it is a linear extension of "more
//! specific"), so the entry found carries the effect of exactly the clauses matching the
//! connection. The price of the closure is entries per (identity, port) pair where a peer-only
//! rule meets a port-only rule, never entries per port for a rule that allows all ports.
//!
//! # Identities
//!
//! Pods keep the identities the observer gave them (one per distinct label set, see
//! `observer/src/endpoints.rs`), passed in as [`EndpointIdentity`]. Every prefix a CIDR rule
//! names (its `cidr` and each `except`) gets a CIDR identity from [`CIDR_IDENTITY_BASE`] up, as
//! Cilium's local CIDR identities; an address that is not a pod takes the identity of its
//! longest matching prefix ([`Compiled::address_identity`]), or [`WORLD_IPV4_IDENTITY`] /
//! [`WORLD_IPV6_IDENTITY`] when none matches. Because every `cidr` and `except` is itself a
//! prefix of the set, a rule matches either all or none of the addresses of a CIDR identity.
//!
//! # Where the tables are approximate
//!
//! Identities stand for label sets, not pods. Two pods sharing an identity are treated the
//! same; that is exact except for egress named ports (resolved on the destination pod: the
//! union over the identity's pods is taken) and, with [`World::cidr_selects_pods`], for pods of
//! one identity on either side of a CIDR (the identity matches if any of its pods does).
//! Loopback (a pod to itself) never reaches the datapath and is not in the tables.
//!
//! # HTTP rules
//!
//! The tables only say which connections go through the L7 proxy ([`Entry::http`]): those
//! every allowing clause gives HTTP rules. The proxy filters their requests with the rule sets
//! the entry grants ([`Entry::l7`]): each is one `rules.http` list, held once in
//! [`Compiled::http_rule_sets`] however many entries and endpoints use it, and named with the
//! policy it comes from. The grants of an entry are those of every allowing clause whose key
//! generalises the entry's, the same clauses that decide it, so a request passes when some
//! rule of some granted set matches it ([`crate::l7::check_grants`]), as
//! [`request_allowed`](crate::verdict::request_allowed) says.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use crate::cilium::{
    self, CiliumNetworkPolicy, CiliumRule, Entity, HttpRule, PeerRule, Peers, PortProtocol, Subject,
};
use crate::load::{PolicyBody, PolicyId, PolicySet};
use crate::networkpolicy::{NetworkPolicy, NetworkPolicyPeer};
use crate::ports::{PortRef, Protocol};
use crate::selector::{LabelSelector, Labels};
use crate::verdict::{NAMESPACE_NAME_LABEL, Pod, World};
use crate::verdict::{names_namespace, strip_source};

/// First CIDR identity: Cilium's local (CIDR) identity scope, `1 << 24`, far above the pod
/// identities (256..65535) the observer allocates.
pub const CIDR_IDENTITY_BASE: u32 = 1 << 24;
/// Cilium's `reserved:host`: the node's own addresses ([`World::host`]).
pub const HOST_IDENTITY: u32 = 1;
/// Cilium's `reserved:remote-node`: the other nodes' addresses ([`World::remote_nodes`]).
pub const REMOTE_NODE_IDENTITY: u32 = 6;
/// Cilium's `reserved:world-ipv4`: an IPv4 address outside the cluster that no CIDR rule names.
pub const WORLD_IPV4_IDENTITY: u32 = 9;
/// Cilium's `reserved:world-ipv6`.
pub const WORLD_IPV6_IDENTITY: u32 = 10;
/// [`Entry::port_bits`] of a single port.
pub const EXACT_PORT: u8 = 16;
/// The wildcard, in every field of a key.
pub const ANY: u32 = 0;

/// Protocol numbers as the datapath sees them.
pub const PROTO_TCP: u8 = 6;
/// UDP.
pub const PROTO_UDP: u8 = 17;
/// SCTP.
pub const PROTO_SCTP: u8 = 132;

/// A pod's endpoint id and security identity, as the observer's registry assigns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointIdentity {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// Its endpoint id, which names its tables.
    pub endpoint_id: u32,
    /// Its security identity, 1 to [`CIDR_IDENTITY_BASE`] - 1.
    pub identity: u32,
}

/// A policy set compiled for the datapath.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Compiled {
    /// One per pod compiled for, in the world's order.
    pub endpoints: Vec<EndpointTables>,
    /// CIDR identities, to add to the IP -> identity map (longest prefix wins; a pod's own
    /// address is more specific than any of them).
    pub cidrs: Vec<(IpNet, u32)>,
    /// The nodes' addresses with [`HOST_IDENTITY`] or [`REMOTE_NODE_IDENTITY`], to add to the
    /// IP -> identity map as single addresses (a node's identity wins over any CIDR's).
    pub nodes: Vec<(IpAddr, u32)>,
    /// Every policy of the set, in set order; [`Entry::policies`] are indices into it.
    pub policies: Vec<PolicyId>,
    /// The `rules.http` lists some entry grants, each once (equal lists are one);
    /// [`L7Grant::rule_set`] is an index into it.
    pub http_rule_sets: Vec<Vec<HttpRule>>,
}

impl Compiled {
    /// The tables of an endpoint.
    pub fn endpoint(&self, endpoint_id: u32) -> Option<&EndpointTables> {
        self.endpoints.iter().find(|e| e.endpoint_id == endpoint_id)
    }

    /// The identity of an address that belongs to no pod: a node's, else its longest matching
    /// CIDR, else the world identity of its family.
    pub fn address_identity(&self, address: IpAddr) -> u32 {
        if let Some((_, identity)) = self.nodes.iter().find(|(ip, _)| *ip == address) {
            return *identity;
        }
        self.cidrs
            .iter()
            .filter(|(net, _)| net.contains(&address))
            .max_by_key(|(net, _)| net.prefix_len())
            .map_or(
                if address.is_ipv4() {
                    WORLD_IPV4_IDENTITY
                } else {
                    WORLD_IPV6_IDENTITY
                },
                |(_, id)| *id,
            )
    }

    /// The policy and the HTTP rules of a grant; `None` for a grant of another compilation.
    pub fn grant(&self, grant: &L7Grant) -> Option<(&PolicyId, &[HttpRule])> {
        Some((
            self.policies.get(grant.policy as usize)?,
            self.http_rule_sets.get(grant.rule_set as usize)?,
        ))
    }
}

/// The two tables of one local endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointTables {
    /// The endpoint.
    pub endpoint_id: u32,
    /// Consulted when the endpoint receives.
    pub ingress: DirectionTable,
    /// Consulted when the endpoint sends.
    pub egress: DirectionTable,
}

/// The entries of one direction of one endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DirectionTable {
    /// Some policy isolates the endpoint in this direction: a connection no entry matches is
    /// dropped.
    pub enforced: bool,
    /// Sorted by `(remote_identity, protocol, port)`, unique.
    pub entries: Vec<Entry>,
}

/// One key and what it decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The remote end's identity, or [`ANY`].
    pub remote_identity: u32,
    /// 6, 17, 132, or 0 for any.
    pub protocol: u8,
    /// The destination port, or 0 for any; with [`Entry::port_bits`] between 1 and 15, the
    /// first port of a block.
    pub port: u16,
    /// How many leading bits of the port are fixed: [`EXACT_PORT`] for one port, 0 for any
    /// port, else the block of the `2^(16 - port_bits)` ports starting at `port`.
    pub port_bits: u8,
    /// Allowed, or dropped by a deny rule.
    pub decision: Decision,
    /// For [`Decision::Allow`] the allowing policies, for [`Decision::Deny`] the denying ones
    /// (Hubble's `*_allowed_by` / `*_denied_by`); indices into [`Compiled::policies`].
    pub policies: Vec<u32>,
    /// Every allowing rule carries HTTP rules: the connection goes through the L7 proxy.
    pub http: bool,
    /// With [`Entry::http`], the HTTP rule sets the proxy applies to each request, sorted and
    /// unique: a request passes when a rule of one of them matches. Empty otherwise.
    pub l7: Vec<L7Grant>,
}

/// One HTTP rule set an entry applies, and the policy it belongs to (whose name the proxy
/// reports, as Hubble's `*_allowed_by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct L7Grant {
    /// An index into [`Compiled::policies`].
    pub policy: u32,
    /// An index into [`Compiled::http_rule_sets`].
    pub rule_set: u32,
}

/// What an entry decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Decision {
    /// Passes.
    Allow,
    /// Dropped by an explicit deny rule, whatever allows it.
    Deny,
}

/// Why a set cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// A pod of the world without an identity.
    #[error("pod {namespace}/{pod} has no endpoint identity")]
    MissingIdentity {
        /// The namespace.
        namespace: String,
        /// The pod.
        pod: String,
    },
    /// A pod identity the datapath could confuse with a wildcard or a CIDR identity.
    #[error(
        "pod {namespace}/{pod}: identity {identity} is outside 1..{CIDR_IDENTITY_BASE}, where \
         pod identities must be"
    )]
    IdentityOutOfRange {
        /// The namespace.
        namespace: String,
        /// The pod.
        pod: String,
        /// The identity given.
        identity: u32,
    },
}

/// (remote identity, protocol, port, port bits); see [`Entry`].
type Key = (u32, u8, u16, u8);

impl Entry {
    fn key(&self) -> Key {
        (
            self.remote_identity,
            self.protocol,
            self.port,
            self.port_bits,
        )
    }
}

/// The block of `bits` leading bits containing `port`, as (first port, bits).
fn block_of(port: u16, bits: u8) -> (u16, u8) {
    if bits == 0 {
        (0, 0)
    } else {
        (port & (u16::MAX << (EXACT_PORT - bits)), bits)
    }
}

/// Probes `table` in the datapath's order (see the module documentation). `None` means no
/// rule speaks of the connection: dropped if [`DirectionTable::enforced`], else allowed.
pub fn lookup(
    table: &DirectionTable,
    remote_identity: u32,
    protocol: u8,
    port: u16,
) -> Option<&Entry> {
    let find = |key: Key| {
        table
            .entries
            .binary_search_by_key(&key, Entry::key)
            .ok()
            .and_then(|i| table.entries.get(i))
    };
    // The longest block containing the port: what the datapath's prefix lookup returns.
    let block = |id: u32| {
        (1..EXACT_PORT).rev().find_map(|bits| {
            let (first, bits) = block_of(port, bits);
            find((id, protocol, first, bits))
        })
    };
    let (id, p, n) = (remote_identity, protocol, port);
    find((id, p, n, EXACT_PORT))
        .or_else(|| block(id))
        .or_else(|| find((id, p, 0, 0)))
        .or_else(|| find((0, p, n, EXACT_PORT)))
        .or_else(|| block(0))
        .or_else(|| find((0, p, 0, 0)))
        .or_else(|| find((id, 0, 0, 0)))
        .or_else(|| find((0, 0, 0, 0)))
}

/// Whether a connection no entry of `table` matches passes (see the module documentation).
pub fn unmatched_allowed(table: &DirectionTable, ingress: bool, remote_identity: u32) -> bool {
    !table.enforced || (ingress && remote_identity == HOST_IDENTITY)
}

/// The aligned blocks tiling `start..=end`, largest first where they fit, as (first, bits).
pub fn port_blocks(start: u16, end: u16) -> Vec<(u16, u8)> {
    let mut out = Vec::new();
    let (mut at, end) = (u32::from(start), u32::from(end));
    while at <= end {
        // The largest block starting at `at` (alignment) that stays within the range.
        let mut size = if at == 0 {
            1 << 16
        } else {
            1 << at.trailing_zeros()
        };
        while at + size - 1 > end {
            size >>= 1;
        }
        let bits = EXACT_PORT - size.trailing_zeros() as u8;
        out.push((at as u16, bits));
        at += size;
    }
    out
}

/// The protocol number of `protocol`.
pub fn protocol_number(protocol: Protocol) -> u8 {
    match protocol {
        Protocol::Tcp => PROTO_TCP,
        Protocol::Udp => PROTO_UDP,
        Protocol::Sctp => PROTO_SCTP,
    }
}

const ALL_PROTOCOLS: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];

/// Compiles `set` for every pod of `world`; `endpoints` gives each pod its endpoint id and
/// identity.
pub fn compile(
    set: &PolicySet,
    world: &World,
    endpoints: &[EndpointIdentity],
) -> Result<Compiled, CompileError> {
    compile_for(set, world, endpoints, |_| true)
}

/// As [`compile`], with tables only for the pods `local` accepts (a node's own: the others are
/// remote ends, which need identities but no tables there). The work is per local pod and the
/// policies selecting it, so a node with a few dozen pods compiles fast in a cluster of
/// thousands.
pub fn compile_for(
    set: &PolicySet,
    world: &World,
    endpoints: &[EndpointIdentity],
    local: impl Fn(&Pod) -> bool,
) -> Result<Compiled, CompileError> {
    let universe = Universe::new(set, world, endpoints)?;
    let mut rule_sets = RuleSets::default();
    let mut out = Compiled {
        endpoints: Vec::new(),
        cidrs: universe.cidrs.clone(),
        nodes: node_identities(world),
        policies: set.policies.iter().map(|p| p.id()).collect(),
        http_rule_sets: Vec::new(),
    };
    // Pods the same rules select (replicas, or every pod of a namespace under namespace-wide
    // rules) have the same clauses, unless ingress named ports resolve differently on them:
    // their table is worked out once.
    let mut tables_of: HashMap<Selection, DirectionTable> = HashMap::new();
    for local in (0..universe.pods.len()).filter(|i| local(universe.pods[*i].pod)) {
        let mut tables = [DirectionTable::default(), DirectionTable::default()];
        for (direction, table) in [Direction::Ingress, Direction::Egress]
            .into_iter()
            .zip(tables.iter_mut())
        {
            let selection = universe.selection(set, local, direction);
            *table = match tables_of.get(&selection) {
                Some(table) => table.clone(),
                None => {
                    let mut clauses = Clauses::default();
                    universe.clauses(set, local, direction, &mut clauses, &mut rule_sets);
                    let table = clauses.table();
                    tables_of.insert(selection, table.clone());
                    table
                }
            };
        }
        let [ingress, egress] = tables;
        out.endpoints.push(EndpointTables {
            endpoint_id: universe.pods[local].endpoint_id,
            ingress,
            egress,
        });
    }
    out.http_rule_sets = rule_sets
        .sets
        .into_iter()
        .map(<[HttpRule]>::to_vec)
        .collect();
    Ok(out)
}

/// The distinct `rules.http` lists met while compiling, numbered in the order met: a list is
/// hashed once per clause using it, and copied once into [`Compiled::http_rule_sets`].
#[derive(Default)]
struct RuleSets<'s> {
    index: HashMap<&'s [HttpRule], u32>,
    sets: Vec<&'s [HttpRule]>,
}

impl<'s> RuleSets<'s> {
    fn intern(&mut self, rules: &'s [HttpRule]) -> u32 {
        *self.index.entry(rules).or_insert_with(|| {
            self.sets.push(rules);
            (self.sets.len() - 1) as u32
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Direction {
    Ingress,
    Egress,
}

struct PodInfo<'w> {
    pod: &'w Pod,
    endpoint_id: u32,
    identity: u32,
}

/// Everything a remote end can be: pods by identity, CIDR identities, the world.
struct Universe<'w> {
    world: &'w World,
    pods: Vec<PodInfo<'w>>,
    /// Identity -> indices into `pods`.
    identities: BTreeMap<u32, Vec<usize>>,
    cidrs: Vec<(IpNet, u32)>,
    namespace_labels: BTreeMap<&'w str, Labels>,
}

/// The remote ends a peer rule matches.
enum Remotes {
    /// Everything, known identities or not: keyed by [`ANY`].
    All,
    /// These identities.
    Some(BTreeSet<u32>),
}

/// A port rule, ready to be resolved.
enum PortSpec<'p> {
    Any(Option<Protocol>),
    Numbers(Option<Protocol>, u16, u16),
    Named(Option<Protocol>, &'p str),
}

impl<'w> Universe<'w> {
    fn new(
        set: &PolicySet,
        world: &'w World,
        endpoints: &[EndpointIdentity],
    ) -> Result<Self, CompileError> {
        let mut pods = Vec::new();
        let mut identities: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        let by_name: HashMap<(&str, &str), &EndpointIdentity> = endpoints
            .iter()
            .map(|e| ((e.namespace.as_str(), e.pod.as_str()), e))
            .collect();
        for pod in &world.pods {
            let Some(e) = by_name.get(&(pod.namespace.as_str(), pod.name.as_str())) else {
                return Err(CompileError::MissingIdentity {
                    namespace: pod.namespace.clone(),
                    pod: pod.name.clone(),
                });
            };
            if e.identity == ANY || e.identity >= CIDR_IDENTITY_BASE {
                return Err(CompileError::IdentityOutOfRange {
                    namespace: pod.namespace.clone(),
                    pod: pod.name.clone(),
                    identity: e.identity,
                });
            }
            identities.entry(e.identity).or_default().push(pods.len());
            pods.push(PodInfo {
                pod,
                endpoint_id: e.endpoint_id,
                identity: e.identity,
            });
        }
        let mut namespace_labels = BTreeMap::new();
        for ns in &world.namespaces {
            let mut labels = ns.labels.clone();
            labels
                .entry(NAMESPACE_NAME_LABEL.to_owned())
                .or_insert_with(|| ns.name.clone());
            namespace_labels.insert(ns.name.as_str(), labels);
        }
        for pod in &world.pods {
            namespace_labels
                .entry(pod.namespace.as_str())
                .or_insert_with(|| {
                    Labels::from([(NAMESPACE_NAME_LABEL.to_owned(), pod.namespace.clone())])
                });
        }
        Ok(Universe {
            world,
            pods,
            identities,
            cidrs: cidr_identities(set),
            namespace_labels,
        })
    }

    fn namespace_labels(&self, pod: &Pod) -> &Labels {
        static NONE: Labels = Labels::new();
        self.namespace_labels
            .get(pod.namespace.as_str())
            .unwrap_or(&NONE)
    }

    fn cilium_matches(&self, selector: &LabelSelector, pod: &Pod) -> bool {
        let namespace_labels = self.namespace_labels(pod);
        selector.matches_with(|key| {
            let (source, key) = strip_source(key);
            if source != "any" && source != "k8s" {
                return None;
            }
            if key == cilium::POD_NAMESPACE_LABEL {
                return Some(pod.namespace.as_str());
            }
            if let Some(namespace_key) = key.strip_prefix(cilium::NAMESPACE_LABELS_PREFIX) {
                return namespace_labels.get(namespace_key).map(String::as_str);
            }
            pod.labels.get(key).map(String::as_str)
        })
    }

    /// Pod identities with a pod `matches` accepts.
    fn pod_identities(&self, matches: impl Fn(&Pod) -> bool) -> BTreeSet<u32> {
        self.pods
            .iter()
            .filter(|p| matches(p.pod))
            .map(|p| p.identity)
            .collect()
    }

    /// Identities of the addresses `contains` accepts: CIDR identities by their prefix, and
    /// pods by their addresses when the world says CIDRs select pods.
    fn cidr_remotes(&self, cidr: &IpNet, except: &[IpNet]) -> BTreeSet<u32> {
        // `cidrs` is sorted by (network address, prefix length): the prefixes inside `cidr`
        // are among those whose network address lies in `cidr`, one contiguous run.
        let (first, last) = (cidr.network(), cidr.broadcast());
        let start = self.cidrs.partition_point(|(net, _)| {
            net.addr().is_ipv4() != first.is_ipv4() && net.addr().is_ipv4()
                || net.addr().is_ipv4() == first.is_ipv4() && net.network() < first
        });
        let mut out: BTreeSet<u32> = self.cidrs[start..]
            .iter()
            .take_while(|(net, _)| net.addr().is_ipv4() == first.is_ipv4() && net.network() <= last)
            .filter(|(net, _)| cidr.contains(net) && !except.iter().any(|e| e.contains(net)))
            .map(|(_, id)| *id)
            .collect();
        if self.world.cidr_selects_pods {
            out.extend(self.pod_identities(|pod| {
                pod.ips
                    .iter()
                    .any(|ip| cidr.contains(ip) && !except.iter().any(|e| e.contains(ip)))
            }));
        }
        out
    }

    /// Identities of addresses outside the cluster, of one family or both.
    fn world_remotes(&self, v4: bool, v6: bool) -> BTreeSet<u32> {
        let mut out: BTreeSet<u32> = self
            .cidrs
            .iter()
            .filter(|(net, _)| if net.addr().is_ipv4() { v4 } else { v6 })
            .map(|(_, id)| *id)
            .collect();
        if v4 {
            out.insert(WORLD_IPV4_IDENTITY);
        }
        if v6 {
            out.insert(WORLD_IPV6_IDENTITY);
        }
        out
    }

    /// What decides pod `local`'s clauses in `direction` besides the policy set: the rules
    /// that select it, and for ingress the ports it declares (named ports resolve on it).
    fn selection(&self, set: &PolicySet, local: usize, direction: Direction) -> Selection {
        let subject = self.pods[local].pod;
        let mut rules = Vec::new();
        for (index, policy) in set.policies.iter().enumerate() {
            let index = index as u32;
            match &policy.body {
                PolicyBody::Kubernetes(np) => {
                    if k8s_selects(np, direction, subject) {
                        rules.push((index, 0));
                    }
                }
                PolicyBody::Cilium(cnp) => {
                    for (i, rule) in cnp.rules.iter().enumerate() {
                        if self.cilium_selects(cnp, rule, subject) {
                            rules.push((index, i as u32));
                        }
                    }
                }
            }
        }
        let ports = match direction {
            Direction::Ingress => subject
                .ports
                .iter()
                .map(|p| (p.name.clone(), p.port, protocol_number(p.protocol)))
                .collect(),
            Direction::Egress => Vec::new(),
        };
        Selection {
            direction,
            rules,
            ports,
        }
    }

    /// Whether Cilium rule `rule` of `cnp` applies to `subject`.
    fn cilium_selects(&self, cnp: &CiliumNetworkPolicy, rule: &CiliumRule, subject: &Pod) -> bool {
        let Subject::Endpoints(selector) = &rule.subject else {
            return false;
        };
        cnp.namespace
            .as_deref()
            .is_none_or(|ns| ns == subject.namespace)
            && self.cilium_matches(selector, subject)
    }

    /// Adds the clauses of every rule applying to pod `local` in `direction`.
    fn clauses(
        &self,
        set: &'w PolicySet,
        local: usize,
        direction: Direction,
        out: &mut Clauses,
        rule_sets: &mut RuleSets<'w>,
    ) {
        let subject = self.pods[local].pod;
        for (index, policy) in set.policies.iter().enumerate() {
            let index = index as u32;
            let mut ctx = Ctx {
                universe: self,
                local,
                direction,
                policy: index,
                out: &mut *out,
                rule_sets: &mut *rule_sets,
            };
            match &policy.body {
                PolicyBody::Kubernetes(np) => ctx.kubernetes(np, subject),
                PolicyBody::Cilium(cnp) => ctx.cilium(cnp, subject),
            }
        }
    }
}

/// The nodes' addresses with their reserved identities; an address listed as both is the
/// host's.
fn node_identities(world: &World) -> Vec<(IpAddr, u32)> {
    let mut out: BTreeMap<IpAddr, u32> = BTreeMap::new();
    for ip in &world.remote_nodes {
        out.insert(*ip, REMOTE_NODE_IDENTITY);
    }
    for ip in &world.host {
        out.insert(*ip, HOST_IDENTITY);
    }
    // A pod's address is the pod's.
    for pod in &world.pods {
        for ip in &pod.ips {
            out.remove(ip);
        }
    }
    out.into_iter().collect()
}

/// The prefixes CIDR rules name, each with a CIDR identity.
fn cidr_identities(set: &PolicySet) -> Vec<(IpNet, u32)> {
    let mut prefixes = BTreeSet::new();
    for policy in &set.policies {
        match &policy.body {
            PolicyBody::Kubernetes(np) => {
                for rule in np.ingress.iter().chain(&np.egress) {
                    for peer in &rule.peers {
                        if let NetworkPolicyPeer::IpBlock(block) = peer {
                            prefixes.insert(block.cidr.trunc());
                            prefixes.extend(block.except.iter().map(IpNet::trunc));
                        }
                    }
                }
            }
            PolicyBody::Cilium(cnp) => {
                for rule in &cnp.rules {
                    let all = rule
                        .ingress
                        .iter()
                        .chain(&rule.ingress_deny)
                        .chain(&rule.egress)
                        .chain(&rule.egress_deny);
                    for peer_rule in all {
                        if let Peers::Cidrs(cidrs) = &peer_rule.peers {
                            for c in cidrs {
                                prefixes.insert(c.cidr.trunc());
                                prefixes.extend(c.except.iter().map(IpNet::trunc));
                            }
                        }
                    }
                }
            }
        }
    }
    prefixes.into_iter().zip(CIDR_IDENTITY_BASE..).collect()
}

/// Compiling one policy for one endpoint and direction.
struct Ctx<'u, 'w> {
    universe: &'u Universe<'w>,
    local: usize,
    direction: Direction,
    policy: u32,
    out: &'u mut Clauses,
    rule_sets: &'u mut RuleSets<'w>,
}

impl<'w> Ctx<'_, 'w> {
    fn kubernetes(&mut self, np: &NetworkPolicy, subject: &Pod) {
        if !k8s_selects(np, self.direction, subject) {
            return;
        }
        let rules = match self.direction {
            Direction::Ingress => &np.ingress,
            Direction::Egress => &np.egress,
        };
        self.out.enforced = true;
        for rule in rules {
            let remotes = if rule.peers.is_empty() {
                Remotes::All
            } else {
                let mut ids = BTreeSet::new();
                for peer in &rule.peers {
                    ids.extend(self.k8s_peer(np, peer));
                }
                Remotes::Some(ids)
            };
            let mut specs = Vec::new();
            if rule.ports.is_empty() {
                specs.push(PortSpec::Any(None));
            }
            for port in &rule.ports {
                specs.push(port_spec(
                    Some(port.protocol),
                    port.port.as_ref(),
                    port.end_port,
                ));
            }
            let keys = self.keys(&remotes, &specs);
            self.out.push(
                keys,
                self.policy,
                Kind::Allow {
                    l4: true,
                    http: None,
                },
            );
        }
    }

    fn k8s_peer(&self, np: &NetworkPolicy, peer: &NetworkPolicyPeer) -> BTreeSet<u32> {
        let u = self.universe;
        match peer {
            NetworkPolicyPeer::Pods {
                pod_selector,
                namespace_selector,
            } => u.pod_identities(|pod| {
                let namespace_ok = match namespace_selector {
                    Some(selector) => selector.matches(u.namespace_labels(pod)),
                    None => pod.namespace == np.namespace,
                };
                namespace_ok && pod_selector.as_ref().is_none_or(|s| s.matches(&pod.labels))
            }),
            NetworkPolicyPeer::IpBlock(block) => u.cidr_remotes(&block.cidr, &block.except),
        }
    }

    fn cilium(&mut self, cnp: &'w CiliumNetworkPolicy, subject: &Pod) {
        for rule in &cnp.rules {
            if !self.universe.cilium_selects(cnp, rule, subject) {
                continue;
            }
            let (isolates, allow, deny) = match self.direction {
                Direction::Ingress => {
                    (rule.default_deny.ingress, &rule.ingress, &rule.ingress_deny)
                }
                Direction::Egress => (rule.default_deny.egress, &rule.egress, &rule.egress_deny),
            };
            self.out.enforced |= isolates;
            for peer_rule in deny {
                self.cilium_peer_rule(cnp, peer_rule, true);
            }
            for peer_rule in allow {
                self.cilium_peer_rule(cnp, peer_rule, false);
            }
        }
    }

    fn cilium_peer_rule(&mut self, cnp: &CiliumNetworkPolicy, rule: &'w PeerRule, deny: bool) {
        let u = self.universe;
        let remotes = match &rule.peers {
            Peers::Unspecified if rule.to_ports.is_empty() => return,
            Peers::Unspecified => Remotes::All,
            Peers::Endpoints(selectors) => Remotes::Some(u.pod_identities(|pod| {
                selectors.iter().any(|s| {
                    let namespace_ok = match &cnp.namespace {
                        Some(ns) if !names_namespace(s) => *ns == pod.namespace,
                        _ => true,
                    };
                    namespace_ok && u.cilium_matches(s, pod)
                })
            })),
            Peers::Cidrs(cidrs) => Remotes::Some(
                cidrs
                    .iter()
                    .flat_map(|c| u.cidr_remotes(&c.cidr, &c.except))
                    .collect(),
            ),
            Peers::Entities(entities) if entities.contains(&Entity::All) => Remotes::All,
            Peers::Entities(entities) => {
                let mut ids = BTreeSet::new();
                for entity in entities {
                    match entity {
                        Entity::World => ids.extend(u.world_remotes(true, true)),
                        Entity::WorldIpv4 => ids.extend(u.world_remotes(true, false)),
                        Entity::WorldIpv6 => ids.extend(u.world_remotes(false, true)),
                        Entity::Cluster => {
                            ids.extend(u.identities.keys().copied());
                            ids.extend([HOST_IDENTITY, REMOTE_NODE_IDENTITY]);
                        }
                        Entity::Host => {
                            ids.insert(HOST_IDENTITY);
                        }
                        Entity::RemoteNode => {
                            ids.insert(REMOTE_NODE_IDENTITY);
                        }
                        // The API server, Cilium's own endpoints: not in a World.
                        _ => {}
                    }
                }
                Remotes::Some(ids)
            }
        };
        if rule.to_ports.is_empty() {
            let keys = self.keys(&remotes, &[PortSpec::Any(None)]);
            let kind = if deny {
                Kind::Deny
            } else {
                Kind::Allow {
                    l4: true,
                    http: None,
                }
            };
            self.out.push(keys, self.policy, kind);
        }
        for port_rule in &rule.to_ports {
            let mut specs = Vec::new();
            if port_rule.ports.is_empty() {
                specs.push(PortSpec::Any(None));
            }
            for port in &port_rule.ports {
                let PortProtocol {
                    port: port_ref,
                    end_port,
                    protocol,
                } = port;
                specs.push(port_spec(*protocol, port_ref.as_ref(), *end_port));
            }
            let kind = if deny {
                Kind::Deny
            } else {
                Kind::Allow {
                    l4: port_rule.http.is_none(),
                    http: port_rule
                        .http
                        .as_deref()
                        .filter(|rules| !rules.is_empty())
                        .map(|rules| self.rule_sets.intern(rules)),
                }
            };
            let keys = self.keys(&remotes, &specs);
            self.out.push(keys, self.policy, kind);
        }
    }

    /// The keys of `remotes` x `specs`; named ports are resolved on the destination pod,
    /// which for egress is the remote one, so they are keyed per remote identity.
    fn keys(&self, remotes: &Remotes, specs: &[PortSpec<'_>]) -> BTreeSet<Key> {
        let u = self.universe;
        let ids: Vec<u32> = match remotes {
            Remotes::All => vec![ANY],
            Remotes::Some(ids) => ids.iter().copied().collect(),
        };
        let protocols = |p: Option<Protocol>| -> Vec<u8> {
            match p {
                Some(p) => vec![protocol_number(p)],
                None => ALL_PROTOCOLS.iter().map(|p| protocol_number(*p)).collect(),
            }
        };
        let mut out = BTreeSet::new();
        for spec in specs {
            match spec {
                PortSpec::Any(p) => {
                    let proto = p.map_or(0, protocol_number);
                    out.extend(ids.iter().map(|id| (*id, proto, 0, 0)));
                }
                PortSpec::Numbers(p, start, end) => {
                    let blocks = port_blocks(*start, *end);
                    for id in &ids {
                        for proto in protocols(*p) {
                            out.extend(blocks.iter().map(|(n, bits)| (*id, proto, *n, *bits)));
                        }
                    }
                }
                PortSpec::Named(p, name) => {
                    let resolve = |pod: &Pod, id: u32, out: &mut BTreeSet<Key>| {
                        for declared in &pod.ports {
                            if declared.name == *name && p.is_none_or(|p| p == declared.protocol) {
                                out.insert((
                                    id,
                                    protocol_number(declared.protocol),
                                    declared.port,
                                    EXACT_PORT,
                                ));
                            }
                        }
                    };
                    match self.direction {
                        Direction::Ingress => {
                            let local = u.pods[self.local].pod;
                            for id in &ids {
                                resolve(local, *id, &mut out);
                            }
                        }
                        Direction::Egress => {
                            for (id, members) in &u.identities {
                                if let Remotes::Some(ids) = remotes
                                    && !ids.contains(id)
                                {
                                    continue;
                                }
                                for m in members {
                                    resolve(u.pods[*m].pod, *id, &mut out);
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

fn port_spec(protocol: Option<Protocol>, port: Option<&PortRef>, end: Option<u16>) -> PortSpec<'_> {
    match port {
        None => PortSpec::Any(protocol),
        Some(PortRef::Name(name)) => PortSpec::Named(protocol, name),
        Some(PortRef::Number(start)) => {
            PortSpec::Numbers(protocol, *start, end.unwrap_or(*start).max(*start))
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Deny,
    /// `l4`: admits at L4, whatever HTTP rules say; `http`: carries HTTP rules, the index of
    /// their set in [`Compiled::http_rule_sets`].
    Allow {
        l4: bool,
        http: Option<u32>,
    },
}

/// What decides an endpoint's clauses in one direction: (policy, Cilium rule) pairs that
/// select it, in policy order, and the ports it declares (ingress only).
#[derive(PartialEq, Eq, Hash)]
struct Selection {
    direction: Direction,
    rules: Vec<(u32, u32)>,
    ports: Vec<(String, u16, u8)>,
}

/// Whether NetworkPolicy `np` isolates `subject` in `direction` (and so applies to it).
fn k8s_selects(np: &NetworkPolicy, direction: Direction, subject: &Pod) -> bool {
    let isolates = match direction {
        Direction::Ingress => np.policy_types.ingress,
        Direction::Egress => np.policy_types.egress,
    };
    isolates && np.namespace == subject.namespace && np.pod_selector.matches(&subject.labels)
}

/// The clauses of one endpoint and direction: who, on which ports, did what.
#[derive(Default)]
struct Clauses {
    enforced: bool,
    /// Key -> the clauses with that key, as (policy, kind).
    by_key: BTreeMap<Key, Vec<(u32, Kind)>>,
}

impl Clauses {
    fn push(&mut self, keys: BTreeSet<Key>, policy: u32, kind: Kind) {
        for key in keys {
            self.by_key.entry(key).or_default().push((policy, kind));
        }
    }

    fn table(&self) -> DirectionTable {
        let keys = meet_closure(self.by_key.keys().copied());
        // The block sizes clauses use (usually exact ports and "any port"): an entry looks
        // for clauses of those sizes only, not of all 17.
        let mut sizes: Vec<u8> = self.by_key.keys().map(|k| k.3).collect();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        sizes.dedup();
        let entries = keys
            .into_iter()
            .filter_map(|key| self.entry(key, &sizes))
            .collect();
        DirectionTable {
            enforced: self.enforced,
            entries,
        }
    }

    /// The effect at `key` of every clause with a key generalising it; `sizes`: the port
    /// block sizes (fixed bits) of the clauses, largest first.
    fn entry(&self, key: Key, sizes: &[u8]) -> Option<Entry> {
        let (id, proto, port, port_bits) = key;
        let (mut allow, mut deny) = (BTreeSet::new(), BTreeSet::new());
        let mut l4 = false;
        // Allocates only for keys with HTTP rules.
        let mut grants = BTreeSet::new();
        for i in [id, 0] {
            for p in [proto, 0] {
                // Every block containing the key's ports, down to "any port".
                for &bits in sizes.iter().filter(|b| **b <= port_bits) {
                    let (n, bits) = block_of(port, bits);
                    for (policy, kind) in self.by_key.get(&(i, p, n, bits)).into_iter().flatten() {
                        match kind {
                            Kind::Deny => {
                                deny.insert(*policy);
                            }
                            Kind::Allow { l4: a, http: h } => {
                                allow.insert(*policy);
                                l4 |= a;
                                if let Some(rule_set) = h {
                                    grants.insert(L7Grant {
                                        policy: *policy,
                                        rule_set: *rule_set,
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
        let (decision, policies) = if !deny.is_empty() {
            (Decision::Deny, deny)
        } else if !allow.is_empty() {
            (Decision::Allow, allow)
        } else {
            return None;
        };
        let http = decision == Decision::Allow && self.enforced && !l4 && !grants.is_empty();
        Some(Entry {
            remote_identity: id,
            protocol: proto,
            port,
            port_bits,
            decision,
            policies: policies.into_iter().collect(),
            http,
            l7: if http {
                grants.into_iter().collect()
            } else {
                Vec::new()
            },
        })
    }
}

/// The most specific key both `a` and `b` generalise, if they overlap.
fn meet(a: Key, b: Key) -> Option<Key> {
    fn field<T: PartialEq + Default + Copy>(x: T, y: T) -> Option<T> {
        if x == y || y == T::default() {
            Some(x)
        } else if x == T::default() {
            Some(y)
        } else {
            None
        }
    }
    // Port blocks are nested or disjoint: the meet is the smaller one.
    let contains = |(n, bits): (u16, u8), (m, _): (u16, u8)| block_of(m, bits) == (n, bits);
    let (pa, pb) = ((a.2, a.3), (b.2, b.3));
    let port = if pa.1 <= pb.1 && contains(pa, pb) {
        pb
    } else if pb.1 <= pa.1 && contains(pb, pa) {
        pa
    } else {
        return None;
    };
    Some((field(a.0, b.0)?, field(a.1, b.1)?, port.0, port.1))
}

/// `keys` closed under [`meet`]. Keys of different identities never meet, so the wildcard
/// identity's keys are closed once and then each identity's keys apart, against them: the
/// work grows with each identity's keys times the wildcard keys, not with the square of all.
fn meet_closure(keys: impl Iterator<Item = Key>) -> BTreeSet<Key> {
    let mut per_identity: BTreeMap<u32, Vec<Key>> = BTreeMap::new();
    for key in keys {
        per_identity.entry(key.0).or_default().push(key);
    }
    let wildcard = closure(
        BTreeSet::new(),
        per_identity.remove(&ANY).unwrap_or_default(),
    );
    let mut out = wildcard.clone();
    for (_, keys) in per_identity {
        let closed = closure(wildcard.clone(), keys);
        out.extend(closed.into_iter().filter(|k| k.0 != ANY));
    }
    out
}

/// `closed` (already closed under [`meet`]) with `keys` added, closed again. Every pair is
/// met when the later of its two keys leaves the frontier.
fn closure(mut all: BTreeSet<Key>, keys: Vec<Key>) -> BTreeSet<Key> {
    all.extend(keys.iter().copied());
    let mut frontier = keys;
    while let Some(k) = frontier.pop() {
        let new: Vec<Key> = all
            .iter()
            .filter_map(|other| meet(k, *other))
            .filter(|m| !all.contains(m))
            .collect();
        for m in new {
            if all.insert(m) {
                frontier.push(m);
            }
        }
    }
    all
}

#[cfg(test)]
#[path = "compile_tests.rs"]
mod tests;
