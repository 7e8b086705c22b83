//! `CiliumNetworkPolicy` and `CiliumClusterwideNetworkPolicy` (`cilium.io/v2`): the typed model,
//! read from a manifest and checked with the rules Cilium's agent applies (`Rule.Sanitize`).
//!
//! Cilium's API is large; the parts flowscope can evaluate are modelled (endpoint selectors,
//! entities, CIDRs and CIDR sets, ports, HTTP rules, deny rules, default-deny switches). The
//! rest (`toFQDNs`, `toServices`, ICMP, Kafka, TLS, ...) is refused by name, not skipped:
//! loading a policy without a rule it has would show traffic as dropped that the cluster allows,
//! or the reverse.

use ipnet::IpNet;
use serde::Serialize;

use crate::l7;
use crate::meta;
use crate::names;
use crate::networkpolicy;
use crate::ports::{PortRef, Protocol};
use crate::selector::{KeyRule, LabelSelector, Labels};
use crate::yaml::{self, Diagnostics, Field, Node, Object};

/// The `apiVersion` both Cilium kinds are read from.
pub const API_VERSION: &str = "cilium.io/v2";

/// The namespaced kind.
pub const KIND: &str = "CiliumNetworkPolicy";

/// The cluster-wide kind.
pub const CLUSTERWIDE_KIND: &str = "CiliumClusterwideNetworkPolicy";

/// The label Cilium gives every pod with its namespace's name; selectors use it to reach pods
/// of other namespaces.
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";

/// The prefix under which Cilium gives every pod its namespace's labels.
pub const NAMESPACE_LABELS_PREFIX: &str = "io.cilium.k8s.namespace.labels.";

/// A CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CiliumNetworkPolicy {
    /// `metadata.name`.
    pub name: String,
    /// `None` for the cluster-wide kind.
    pub namespace: Option<String>,
    /// `metadata.labels`.
    pub labels: Labels,
    /// `spec`, then the entries of `specs`.
    pub rules: Vec<CiliumRule>,
}

impl CiliumNetworkPolicy {
    /// True for a CiliumClusterwideNetworkPolicy.
    pub fn is_cluster_wide(&self) -> bool {
        self.namespace.is_none()
    }
}

/// One rule: `spec`, or one entry of `specs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CiliumRule {
    /// What the rule applies to.
    pub subject: Subject,
    /// Allowed incoming traffic.
    pub ingress: Vec<PeerRule>,
    /// Denied incoming traffic; deny wins over any allow.
    pub ingress_deny: Vec<PeerRule>,
    /// Allowed outgoing traffic.
    pub egress: Vec<PeerRule>,
    /// Denied outgoing traffic; deny wins over any allow.
    pub egress_deny: Vec<PeerRule>,
    /// Whether the rule puts its subjects in default deny, per direction: by default, in each
    /// direction the rule has (allow or deny) rules for, as Cilium decides.
    pub default_deny: DefaultDeny,
    /// `description`.
    pub description: Option<String>,
}

/// What a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Subject {
    /// `endpointSelector`: pods (of the policy's namespace, for the namespaced kind).
    Endpoints(LabelSelector),
    /// `nodeSelector` (cluster-wide kind only): nodes, which flowscope's world has none of.
    Nodes(LabelSelector),
}

/// `enableDefaultDeny`, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DefaultDeny {
    /// Traffic into the subjects not allowed by some rule is dropped.
    pub ingress: bool,
    /// Traffic out of the subjects not allowed by some rule is dropped.
    pub egress: bool,
}

/// One `ingress[]`, `ingressDeny[]`, `egress[]` or `egressDeny[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerRule {
    /// Who is at the other end.
    pub peers: Peers,
    /// On which ports; empty means every port. With [`Peers::Unspecified`], a rule with ports
    /// applies to every peer and a rule without applies to none.
    pub to_ports: Vec<PortRule>,
}

/// The peers of a rule: Cilium allows one kind per rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Peers {
    /// No peer field written.
    Unspecified,
    /// `fromEndpoints`/`toEndpoints`. An empty list selects nothing.
    Endpoints(Vec<LabelSelector>),
    /// `fromCIDR`/`toCIDR` or `fromCIDRSet`/`toCIDRSet`: addresses outside the cluster.
    Cidrs(Vec<CidrRule>),
    /// `fromEntities`/`toEntities`.
    Entities(Vec<Entity>),
}

/// A CIDR minus exceptions inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CidrRule {
    /// The block, host bits cleared.
    pub cidr: IpNet,
    /// Each inside `cidr`.
    pub except: Vec<IpNet>,
}

impl CidrRule {
    /// Whether `address` is in the block and in none of its exceptions.
    pub fn contains(&self, address: &std::net::IpAddr) -> bool {
        self.cidr.contains(address) && !self.except.iter().any(|e| e.contains(address))
    }
}

/// A class of peers without individual identities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Entity {
    /// `all`: everything.
    All,
    /// `world`: everything outside the cluster.
    World,
    /// `world-ipv4`.
    WorldIpv4,
    /// `world-ipv6`.
    WorldIpv6,
    /// `cluster`: every endpoint of the cluster, hosts included.
    Cluster,
    /// `host`: the local node.
    Host,
    /// `remote-node`: the other nodes.
    RemoteNode,
    /// `kube-apiserver`.
    KubeApiserver,
    /// `ingress`: Cilium's ingress proxy.
    Ingress,
    /// `init`: endpoints whose identity is not yet known.
    Init,
    /// `health`: Cilium's health endpoints.
    Health,
    /// `unmanaged`: pods Cilium does not manage.
    Unmanaged,
    /// `none`: nothing.
    None,
}

/// Every entity with its spelling.
pub const ENTITIES: &[(&str, Entity)] = &[
    ("all", Entity::All),
    ("world", Entity::World),
    ("world-ipv4", Entity::WorldIpv4),
    ("world-ipv6", Entity::WorldIpv6),
    ("cluster", Entity::Cluster),
    ("host", Entity::Host),
    ("remote-node", Entity::RemoteNode),
    ("kube-apiserver", Entity::KubeApiserver),
    ("ingress", Entity::Ingress),
    ("init", Entity::Init),
    ("health", Entity::Health),
    ("unmanaged", Entity::Unmanaged),
    ("none", Entity::None),
];

impl Entity {
    /// The policy spelling, e.g. `remote-node`.
    pub fn as_str(self) -> &'static str {
        ENTITIES
            .iter()
            .find(|(_, e)| *e == self)
            .map_or("none", |(name, _)| name)
    }
}

/// One `toPorts[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortRule {
    /// Empty: every port.
    pub ports: Vec<PortProtocol>,
    /// `rules.http`: `None` when there are no L7 rules; `Some` sends the traffic through
    /// Cilium's HTTP proxy, which allows only requests matching one of the rules.
    pub http: Option<Vec<HttpRule>>,
}

/// One `ports[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortProtocol {
    /// `None` for port `"0"`: every port.
    pub port: Option<PortRef>,
    /// With a numeric port: the range `port..=end_port`.
    pub end_port: Option<u16>,
    /// `None` for `ANY` (the default): TCP, UDP and SCTP.
    pub protocol: Option<Protocol>,
}

/// One `rules.http[]` entry: every field present must match (see [`crate::l7`] for how); a
/// rule with none matches every request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct HttpRule {
    /// A regular expression the whole method must match, e.g. `GET`, or `GET|HEAD`.
    pub method: Option<String>,
    /// A regular expression the whole request target (path and query) must match, e.g.
    /// `/api/v1/.*`.
    pub path: Option<String>,
    /// A regular expression the whole authority (`Host`, port included when sent) must
    /// match, e.g. `api\.example\.com(:8080)?`.
    pub host: Option<String>,
    /// Headers the request must carry, `Name` or `Name: value`, as written.
    pub headers: Vec<String>,
    /// `headerMatches`: headers the request must carry, or whose absence is only logged.
    pub header_matches: Vec<HeaderMatch>,
}

/// One `headerMatches[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct HeaderMatch {
    /// The header, compared without case; may be `:method`, `:path` or `:authority`.
    pub name: String,
    /// The value required (all values of the header joined by `,`, compared exactly); `None`
    /// requires only the header's presence (`value: ""` is read as no value, as Cilium does).
    pub value: Option<String>,
    /// What a request that does not carry it gets.
    pub mismatch: MismatchAction,
}

/// `headerMatches[].mismatch`, of the values flowscope supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum MismatchAction {
    /// No `mismatch` (or `""`): the request fails the rule.
    Fail,
    /// `LOG`: the rule still matches; the proxy logs the mismatch.
    Log,
}

/// Reads a Cilium policy from `root`, a document (or `List` item at `path`) of kind `kind`.
pub(crate) fn parse(
    d: &mut Diagnostics<'_>,
    root: &Node,
    path: &str,
    kind: &str,
    default_namespace: &str,
) -> Option<CiliumNetworkPolicy> {
    let before = d.count();
    let cluster_wide = kind == CLUSTERWIDE_KIND;
    let mut top = Object::new(d, root, path)?;
    top.ignore("apiVersion");
    top.ignore("kind");
    // Written by the agents; exported manifests carry it.
    top.ignore("status");
    let meta = meta::parse(d, &mut top, !cluster_wide, default_namespace);
    let mut rules = Vec::new();
    let spec_path = top.child("spec");
    let spec = top.take("spec");
    if let Some(node) = spec
        && let Some(rule) = parse_rule(d, node, &spec_path, cluster_wide)
    {
        rules.push(rule);
    }
    let specs_path = top.child("specs");
    let specs = top.take("specs");
    if let Some(node) = specs {
        for (i, item) in yaml::list(
            d,
            Field {
                node,
                path: &specs_path,
            },
        )
        .unwrap_or_default()
        .iter()
        .enumerate()
        {
            if let Some(rule) = parse_rule(d, item, &format!("{specs_path}[{i}]"), cluster_wide) {
                rules.push(rule);
            }
        }
    }
    if spec.is_none() && specs.is_none() {
        d.push(
            top.at,
            &spec_path,
            "required, but missing: a Cilium policy has a `spec` or `specs`",
        );
    }
    top.finish(d);
    let meta = meta?;
    (d.count() == before).then_some(CiliumNetworkPolicy {
        name: meta.name,
        namespace: meta.namespace,
        labels: meta.labels,
        rules,
    })
}

const UNSUPPORTED: &str = "is a Cilium feature flowscope cannot evaluate yet, so it refuses the \
                           policy rather than show traffic the cluster treats otherwise";

fn parse_rule(
    d: &mut Diagnostics<'_>,
    node: &Node,
    path: &str,
    cluster_wide: bool,
) -> Option<CiliumRule> {
    let before = d.count();
    let mut object = Object::new(d, node, path)?;
    let selector = |d: &mut Diagnostics<'_>, object: &mut Object<'_>, key: &'static str| {
        let path = object.child(key);
        object.take(key).map(|node| {
            (
                node.at,
                LabelSelector::from_yaml(d, Field { node, path: &path }, KeyRule::Cilium),
            )
        })
    };
    let endpoints = selector(d, &mut object, "endpointSelector");
    let nodes = selector(d, &mut object, "nodeSelector");
    let ingress = peer_rules(d, &mut object, "ingress", Direction::Ingress, false);
    let ingress_deny = peer_rules(d, &mut object, "ingressDeny", Direction::Ingress, true);
    let egress = peer_rules(d, &mut object, "egress", Direction::Egress, false);
    let egress_deny = peer_rules(d, &mut object, "egressDeny", Direction::Egress, true);
    let description = object.take("description").and_then(|node| {
        let path = object.child("description");
        yaml::string(d, Field { node, path: &path })
    });
    let mut default_deny = (None, None);
    if let Some(node) = object.take("enableDefaultDeny") {
        let path = object.child("enableDefaultDeny");
        if let Some(mut switches) = Object::new(d, node, &path) {
            for (key, slot) in [
                ("ingress", &mut default_deny.0),
                ("egress", &mut default_deny.1),
            ] {
                let path = switches.child(key);
                if let Some(node) = switches.take(key) {
                    *slot = yaml::boolean(d, Field { node, path: &path });
                }
            }
            switches.finish(d);
        }
    }
    // Rule labels and audit logging change nothing about which traffic flows.
    object.ignore("labels");
    object.ignore("log");
    object.finish(d);

    let subject = match (endpoints, nodes) {
        (Some((_, selector)), None) => selector.map(Subject::Endpoints),
        (None, Some((at, selector))) => {
            if !cluster_wide {
                d.push(
                    at,
                    &format!("{path}.nodeSelector"),
                    "only a CiliumClusterwideNetworkPolicy can select nodes",
                );
            }
            selector.map(Subject::Nodes)
        }
        (Some(_), Some(_)) => {
            d.push(
                node.at,
                path,
                "sets both endpointSelector and nodeSelector; a rule has exactly one",
            );
            None
        }
        (None, None) => {
            d.push(
                node.at,
                &format!("{path}.endpointSelector"),
                "required, but missing: a rule has an endpointSelector (or, cluster-wide, a \
                 nodeSelector); `{}` selects every pod",
            );
            None
        }
    };
    let (ingress, ingress_deny, egress, egress_deny) =
        (ingress?, ingress_deny?, egress?, egress_deny?);
    let default_deny = DefaultDeny {
        ingress: default_deny
            .0
            .unwrap_or(!ingress.is_empty() || !ingress_deny.is_empty()),
        egress: default_deny
            .1
            .unwrap_or(!egress.is_empty() || !egress_deny.is_empty()),
    };
    let subject = subject?;
    (d.count() == before).then_some(CiliumRule {
        subject,
        ingress,
        ingress_deny,
        egress,
        egress_deny,
        default_deny,
        description,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

fn peer_rules(
    d: &mut Diagnostics<'_>,
    rule: &mut Object<'_>,
    key: &'static str,
    direction: Direction,
    deny: bool,
) -> Option<Vec<PeerRule>> {
    let path = rule.child(key);
    let Some(node) = rule.take(key) else {
        return Some(Vec::new());
    };
    let before = d.count();
    let items = yaml::list(d, Field { node, path: &path })?;
    let mut rules = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if let Some(rule) = peer_rule(d, item, &format!("{path}[{i}]"), direction, deny) {
            rules.push(rule);
        }
    }
    (d.count() == before).then_some(rules)
}

fn peer_rule(
    d: &mut Diagnostics<'_>,
    node: &Node,
    path: &str,
    direction: Direction,
    deny: bool,
) -> Option<PeerRule> {
    let before = d.count();
    let mut object = Object::new(d, node, path)?;
    let (endpoints_key, cidr_key, cidr_set_key, entities_key) = match direction {
        Direction::Ingress => ("fromEndpoints", "fromCIDR", "fromCIDRSet", "fromEntities"),
        Direction::Egress => ("toEndpoints", "toCIDR", "toCIDRSet", "toEntities"),
    };
    let mut written = Vec::new();
    let mut peers = Peers::Unspecified;

    let endpoints_path = object.child(endpoints_key);
    if let Some(node) = object.take(endpoints_key) {
        written.push(endpoints_key);
        let mut selectors = Vec::new();
        for (i, item) in yaml::list(
            d,
            Field {
                node,
                path: &endpoints_path,
            },
        )
        .unwrap_or_default()
        .iter()
        .enumerate()
        {
            let path = format!("{endpoints_path}[{i}]");
            if let Some(s) = LabelSelector::from_yaml(
                d,
                Field {
                    node: item,
                    path: &path,
                },
                KeyRule::Cilium,
            ) {
                selectors.push(s);
            }
        }
        peers = Peers::Endpoints(selectors);
    }

    let cidr_path = object.child(cidr_key);
    if let Some(node) = object.take(cidr_key) {
        written.push(cidr_key);
        let mut cidrs = Vec::new();
        for (i, (text, at)) in yaml::string_list(
            d,
            Field {
                node,
                path: &cidr_path,
            },
        )
        .into_iter()
        .enumerate()
        {
            match names::cidr_or_address(&text) {
                Ok(cidr) => cidrs.push(CidrRule {
                    cidr,
                    except: Vec::new(),
                }),
                Err(problem) => d.push(at, &format!("{cidr_path}[{i}]"), problem),
            }
        }
        peers = Peers::Cidrs(cidrs);
    }

    let set_path = object.child(cidr_set_key);
    if let Some(node) = object.take(cidr_set_key) {
        written.push(cidr_set_key);
        let mut cidrs = Vec::new();
        for (i, item) in yaml::list(
            d,
            Field {
                node,
                path: &set_path,
            },
        )
        .unwrap_or_default()
        .iter()
        .enumerate()
        {
            if let Some(rule) = cidr_rule(d, item, &format!("{set_path}[{i}]")) {
                cidrs.push(rule);
            }
        }
        peers = Peers::Cidrs(cidrs);
    }

    let entities_path = object.child(entities_key);
    if let Some(node) = object.take(entities_key) {
        written.push(entities_key);
        let mut entities = Vec::new();
        for (i, (text, at)) in yaml::string_list(
            d,
            Field {
                node,
                path: &entities_path,
            },
        )
        .into_iter()
        .enumerate()
        {
            match ENTITIES.iter().find(|(name, _)| *name == text) {
                Some((_, entity)) => entities.push(*entity),
                None => d.push(
                    at,
                    &format!("{entities_path}[{i}]"),
                    format!(
                        "{:?} is not a Cilium entity; accepted: {}",
                        yaml::sanitize(&text),
                        ENTITIES
                            .iter()
                            .map(|(name, _)| *name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            }
        }
        peers = Peers::Entities(entities);
    }

    let ports_path = object.child("toPorts");
    let mut to_ports = Vec::new();
    if let Some(node) = object.take("toPorts") {
        for (i, item) in yaml::list(
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
            if let Some(rule) = port_rule(d, item, &format!("{ports_path}[{i}]"), direction, deny) {
                to_ports.push(rule);
            }
        }
    }

    let unsupported: &[&'static str] = match direction {
        Direction::Ingress => &["fromRequires", "fromGroups", "fromNodes", "icmps"],
        Direction::Egress => &[
            "toRequires",
            "toServices",
            "toFQDNs",
            "toGroups",
            "toNodes",
            "icmps",
        ],
    };
    for key in unsupported {
        if deny && *key == "toFQDNs" {
            continue;
        }
        object.unsupported(d, key, &format!("`{key}` {UNSUPPORTED}"));
    }
    if !deny {
        object.unsupported(
            d,
            "authentication",
            &format!("`authentication` {UNSUPPORTED}"),
        );
    }
    object.finish(d);

    if written.len() > 1 {
        d.push(
            node.at,
            path,
            format!(
                "combines {} in one rule, which Cilium refuses; write one rule for each",
                written.join(" and ")
            ),
        );
    }
    (d.count() == before).then_some(PeerRule { peers, to_ports })
}

fn cidr_rule(d: &mut Diagnostics<'_>, node: &Node, path: &str) -> Option<CidrRule> {
    let before = d.count();
    let mut object = Object::new(d, node, path)?;
    // Cilium only asks that an exception lie inside the block.
    let (cidr, except) = networkpolicy::cidr_and_except(d, &mut object, |cidr, net| {
        if cidr.contains(net) {
            Ok(())
        } else {
            Err(format!("{net} is not inside {cidr}"))
        }
    });
    for key in ["cidrGroupRef", "cidrGroupSelector"] {
        object.unsupported(d, key, &format!("`{key}` {UNSUPPORTED}"));
    }
    object.finish(d);
    let cidr = cidr?;
    (d.count() == before).then_some(CidrRule { cidr, except })
}

fn port_rule(
    d: &mut Diagnostics<'_>,
    node: &Node,
    path: &str,
    direction: Direction,
    deny: bool,
) -> Option<PortRule> {
    let before = d.count();
    let mut object = Object::new(d, node, path)?;
    let ports_path = object.child("ports");
    let mut ports = Vec::new();
    if let Some(node) = object.take("ports") {
        for (i, item) in yaml::list(
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
            if let Some(port) = port_protocol(d, item, &format!("{ports_path}[{i}]")) {
                ports.push(port);
            }
        }
    }
    let rules_path = object.child("rules");
    let mut http = None;
    if deny {
        object.unsupported(
            d,
            "rules",
            "deny rules cannot have L7 rules: Cilium denies whole connections, never single \
             requests",
        );
    } else if let Some(node) = object.take("rules") {
        http = l7_rules(d, node, &rules_path, direction);
        // Checked even when the HTTP rules themselves have problems, to report everything.
        if node.get("http").is_some() {
            for (i, port) in ports.iter().enumerate() {
                let at = node.at;
                let port_path = format!("{ports_path}[{i}]");
                if port.protocol != Some(Protocol::Tcp) {
                    d.push(
                        at,
                        &port_path,
                        "HTTP rules need protocol TCP on every port of the rule",
                    );
                }
                if port.port.is_none() {
                    d.push(at, &port_path, "HTTP rules need a port other than 0");
                }
            }
        }
    }
    for key in [
        "terminatingTLS",
        "originatingTLS",
        "serverNames",
        "listener",
    ] {
        object.unsupported(d, key, &format!("`{key}` {UNSUPPORTED}"));
    }
    object.finish(d);
    (d.count() == before).then_some(PortRule { ports, http })
}

fn port_protocol(d: &mut Diagnostics<'_>, node: &Node, path: &str) -> Option<PortProtocol> {
    let before = d.count();
    let mut object = Object::new(d, node, path)?;
    let port = yaml::required_string(d, &mut object, "port").and_then(|(text, at)| {
        parse_cilium_port(&text)
            .map_err(|problem| d.push(at, &format!("{path}.port"), problem))
            .ok()
    });
    let protocol_path = object.child("protocol");
    let protocol = match object.take("protocol") {
        Some(node) => yaml::string(
            d,
            Field {
                node,
                path: &protocol_path,
            },
        )
        .and_then(|text| match text.as_str() {
            "ANY" => Some(None),
            other => match Protocol::parse(other) {
                Some(protocol) => Some(Some(protocol)),
                None => {
                    d.push(
                        node.at,
                        &protocol_path,
                        format!("{:?} is not TCP, UDP, SCTP or ANY", yaml::sanitize(other)),
                    );
                    None
                }
            },
        }),
        None => Some(None),
    };
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
        match &port {
            Some(Some(PortRef::Number(start))) if end < *start => d.push(
                node.at,
                &end_path,
                format!("{end} is below port {start}; endPort must be at least port"),
            ),
            Some(Some(PortRef::Number(_))) | None => {}
            Some(_) => d.push(
                node.at,
                &end_path,
                "needs a numeric, non-zero `port` to start the range from",
            ),
        }
        Some(end)
    });
    object.finish(d);
    let (port, protocol) = (port?, protocol?);
    (d.count() == before).then_some(PortProtocol {
        port,
        end_port,
        protocol,
    })
}

/// A Cilium port: a string holding a number (0 for every port) or a port name, which Cilium
/// compares without case.
fn parse_cilium_port(text: &str) -> Result<Option<PortRef>, String> {
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
        return match text.parse::<u16>() {
            Ok(0) => Ok(None),
            Ok(n) => Ok(Some(PortRef::Number(n))),
            Err(_) => Err(format!(
                "{text:?} is not a port number: 0 (every port) to 65535"
            )),
        };
    }
    let name = text.to_ascii_lowercase();
    names::port_name(&name).map(|()| Some(PortRef::Name(name)))
}

fn l7_rules(
    d: &mut Diagnostics<'_>,
    node: &Node,
    path: &str,
    direction: Direction,
) -> Option<Vec<HttpRule>> {
    let before = d.count();
    let mut object = Object::new(d, node, path)?;
    let http_path = object.child("http");
    let mut rules = Vec::new();
    let http = object.take("http");
    if let Some(node) = http {
        for (i, item) in yaml::list(
            d,
            Field {
                node,
                path: &http_path,
            },
        )
        .unwrap_or_default()
        .iter()
        .enumerate()
        {
            if let Some(rule) = http_rule(d, item, &format!("{http_path}[{i}]")) {
                rules.push(rule);
            }
        }
    }
    let dns_why = match direction {
        Direction::Ingress => "DNS rules only exist on egress (Cilium's DNS proxy)",
        Direction::Egress => "`dns` rules are a Cilium feature flowscope cannot evaluate yet",
    };
    object.unsupported(d, "dns", dns_why);
    for key in ["kafka", "l7proto", "l7"] {
        object.unsupported(d, key, &format!("`{key}` {UNSUPPORTED}"));
    }
    object.finish(d);
    if d.count() != before {
        return None;
    }
    // `rules: {}` has no L7 rules at all, and leaves the port at L4. `http: []` sends the
    // port through the proxy without restricting requests: one rule matching every request
    // says so without a special case downstream.
    http.map(|_| {
        if rules.is_empty() {
            vec![HttpRule::default()]
        } else {
            rules
        }
    })
}

fn http_rule(d: &mut Diagnostics<'_>, node: &Node, path: &str) -> Option<HttpRule> {
    let before = d.count();
    let mut object = Object::new(d, node, path)?;
    let regex = |d: &mut Diagnostics<'_>, object: &mut Object<'_>, key: &'static str| {
        let path = object.child(key);
        let node = object.take(key)?;
        let text = yaml::string(d, Field { node, path: &path })?;
        if let Err(error) = l7::http_regex(&text) {
            d.push(node.at, &path, regex_problem(&text, &error));
        }
        // Cilium reads an empty expression as no condition.
        Some(text).filter(|t| !t.is_empty())
    };
    let method = regex(d, &mut object, "method");
    let path_regex = regex(d, &mut object, "path");
    let host = regex(d, &mut object, "host");
    let headers_path = object.child("headers");
    let headers = object.take("headers").map_or_else(Vec::new, |node| {
        let entries = yaml::string_list(
            d,
            Field {
                node,
                path: &headers_path,
            },
        );
        for (i, (entry, at)) in entries.iter().enumerate() {
            if let Some(problem) = header_entry_problem(entry) {
                d.push(*at, &format!("{headers_path}[{i}]"), problem);
            }
        }
        entries.into_iter().map(|(h, _)| h).collect()
    });
    let matches_path = object.child("headerMatches");
    let mut header_matches = Vec::new();
    if let Some(node) = object.take("headerMatches") {
        for (i, item) in yaml::list(
            d,
            Field {
                node,
                path: &matches_path,
            },
        )
        .unwrap_or_default()
        .iter()
        .enumerate()
        {
            if let Some(m) = header_match(d, item, &format!("{matches_path}[{i}]")) {
                header_matches.push(m);
            }
        }
    }
    object.finish(d);
    (d.count() == before).then_some(HttpRule {
        method,
        path: path_regex,
        host,
        headers,
        header_matches,
    })
}

/// Why the `method`, `path` or `host` expression `text` is refused.
fn regex_problem(text: &str, error: &regex::Error) -> String {
    match error {
        regex::Error::CompiledTooBig(limit) => format!(
            "{:?} is too large a regular expression: compiled, it exceeds flowscope's limit of \
             {limit} bytes",
            yaml::sanitize(text)
        ),
        _ => {
            let reason = error.to_string();
            let reason = reason.lines().last().unwrap_or("invalid").trim();
            format!(
                "{:?} is not a regular expression: {}",
                yaml::sanitize(text),
                yaml::sanitize(reason)
            )
        }
    }
}

/// Why a `headers` entry could never match a request, if it could not. Cilium splits it at the
/// first space ([`l7::header_entry`]), so `X-Key:value` names a header `X-Key:value`, which no
/// request has: refused, rather than a rule that silently matches nothing.
fn header_entry_problem(entry: &str) -> Option<String> {
    let (name, value) = l7::header_entry(entry);
    if let Some(problem) = l7::header_name_problem(name) {
        if name.starts_with(':') {
            return Some(problem);
        }
        return Some(format!(
            "{problem}: Cilium splits a `headers` entry at its first space, so write \"Name\" \
             or \"Name: value\""
        ));
    }
    match value {
        None if entry.ends_with(' ') => Some(format!(
            "{:?} has no value after the space: write \"Name\" to require the header, or \
             \"Name: value\"",
            yaml::sanitize(entry)
        )),
        Some(value) => l7::header_value_problem(value)
            .map(|problem| format!("the value {:?} {problem}", yaml::sanitize(value))),
        None => None,
    }
}

fn header_match(d: &mut Diagnostics<'_>, node: &Node, path: &str) -> Option<HeaderMatch> {
    let before = d.count();
    let mut object = Object::new(d, node, path)?;
    let name = yaml::required_string(d, &mut object, "name").and_then(|(name, at)| {
        match l7::header_name_problem(&name) {
            Some(problem) => {
                d.push(at, &format!("{path}.name"), problem);
                None
            }
            None => Some(name),
        }
    });
    let value_path = object.child("value");
    let value = object.take("value").and_then(|node| {
        let value = yaml::string(
            d,
            Field {
                node,
                path: &value_path,
            },
        )?;
        if let Some(problem) = l7::header_value_problem(&value) {
            d.push(
                node.at,
                &value_path,
                format!("{:?} {problem}", yaml::sanitize(&value)),
            );
        }
        // Cilium reads an empty value as none: presence only.
        Some(value).filter(|v| !v.is_empty())
    });
    let mismatch_path = object.child("mismatch");
    let mismatch = match object.take("mismatch") {
        None => Some(MismatchAction::Fail),
        Some(node) => yaml::string(
            d,
            Field {
                node,
                path: &mismatch_path,
            },
        )
        .and_then(|text| match text.as_str() {
            "" => Some(MismatchAction::Fail),
            "LOG" => Some(MismatchAction::Log),
            "ADD" | "DELETE" | "REPLACE" => {
                d.push(
                    node.at,
                    &mismatch_path,
                    format!(
                        "`{text}` rewrites the request's headers, which flowscope's proxy does \
                         not do, so it refuses the policy rather than pass requests the cluster \
                         would change; accepted: LOG, or no `mismatch` to drop the request"
                    ),
                );
                None
            }
            other => {
                d.push(
                    node.at,
                    &mismatch_path,
                    format!(
                        "{:?} is not LOG, ADD, DELETE or REPLACE; leave `mismatch` out to drop \
                         a request that does not match",
                        yaml::sanitize(other)
                    ),
                );
                None
            }
        }),
    };
    object.unsupported(
        d,
        "secret",
        "`secret` takes the value from a Kubernetes Secret, which flowscope does not read, so \
         it refuses the policy rather than guess the value; write `value` instead",
    );
    object.finish(d);
    let (name, mismatch) = (name?, mismatch?);
    (d.count() == before).then_some(HeaderMatch {
        name,
        value,
        mismatch,
    })
}

/// Reads `port` values Cilium-style for tests elsewhere in the crate.
#[cfg(test)]
pub(crate) fn port_for_tests(text: &str) -> Result<Option<PortRef>, String> {
    parse_cilium_port(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::{parse_chunk, split_documents};

    fn read(text: &str) -> Result<CiliumNetworkPolicy, Vec<String>> {
        let chunks = split_documents(text);
        let tree = parse_chunk(chunks[0]).expect("valid YAML");
        let kind = tree.get_str("kind").unwrap_or(KIND).to_owned();
        let mut d = Diagnostics::new("cnp.yaml");
        match parse(&mut d, &tree, "", &kind, "default") {
            Some(policy) if d.errors.is_empty() => Ok(policy),
            _ => Err(d.errors.iter().map(ToString::to_string).collect()),
        }
    }

    const HEAD: &str =
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: p\n";

    #[test]
    fn the_seed_l7_policy_reads() {
        let text = include_str!("../../deploy/network-policies/allow-get-only.yaml");
        let policy = read(text).expect("valid");
        assert_eq!(policy.namespace.as_deref(), Some("default"));
        let rule = &policy.rules[0];
        assert!(
            matches!(&rule.subject, Subject::Endpoints(s) if s.match_labels["app"] == "my-api")
        );
        assert_eq!(
            rule.default_deny,
            DefaultDeny {
                ingress: true,
                egress: false
            }
        );
        let ingress = &rule.ingress[0];
        assert_eq!(ingress.peers, Peers::Unspecified);
        assert_eq!(
            ingress.to_ports[0].ports,
            vec![PortProtocol {
                port: Some(PortRef::Number(8080)),
                end_port: None,
                protocol: Some(Protocol::Tcp)
            }]
        );
        let http = ingress.to_ports[0].http.as_ref().expect("http rules");
        assert_eq!(http[0].method.as_deref(), Some("GET"));
        assert_eq!(http[0].path, None);
    }

    #[test]
    fn peers_entities_cidrs_and_deny_rules() {
        let policy = read(&format!(
            "{HEAD}specs:\n  - endpointSelector: {{matchLabels: {{\"k8s:app\": web}}}}\n    ingress:\n      - fromEndpoints:\n          - matchLabels: {{\"k8s:io.kubernetes.pod.namespace\": x}}\n      - fromEntities: [world, cluster]\n        toPorts:\n          - ports: [{{port: \"80\"}}, {{port: \"0\", protocol: UDP}}, {{port: http, protocol: TCP}}]\n    egressDeny:\n      - toCIDRSet:\n          - {{cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}\n      - toCIDR: [192.0.2.1]\n    enableDefaultDeny: {{egress: false}}\n"
        ))
        .expect("valid");
        let rule = &policy.rules[0];
        assert_eq!(
            rule.default_deny,
            DefaultDeny {
                ingress: true,
                egress: false
            }
        );
        assert!(matches!(&rule.ingress[0].peers, Peers::Endpoints(s) if s.len() == 1));
        assert_eq!(
            rule.ingress[1].peers,
            Peers::Entities(vec![Entity::World, Entity::Cluster])
        );
        let ports = &rule.ingress[1].to_ports[0].ports;
        assert_eq!(ports[0].protocol, None);
        assert_eq!(ports[1].port, None);
        assert_eq!(ports[2].port, Some(PortRef::Name("http".into())));
        let Peers::Cidrs(cidrs) = &rule.egress_deny[0].peers else {
            panic!("cidrs")
        };
        assert!(!cidrs[0].contains(&"10.1.2.3".parse().expect("ip")));
        assert!(cidrs[0].contains(&"10.2.2.3".parse().expect("ip")));
        assert!(
            matches!(&rule.egress_deny[1].peers, Peers::Cidrs(c) if c[0].cidr.prefix_len() == 32)
        );
    }

    #[test]
    fn cilium_rules_are_enforced() {
        let errors = read(&format!(
            "{HEAD}spec:\n  endpointSelector: {{}}\n  ingress:\n    - fromEndpoints: [{{}}]\n      fromCIDR: [10.0.0.0/8]\n    - fromEntities: [wrld]\n    - toPorts:\n        - ports: [{{port: \"80\", protocol: ANY}}]\n          rules: {{http: [{{path: \"/a(\"}}]}}\n  egress:\n    - toFQDNs: [{{matchName: example.com}}]\n  ingressDeny:\n    - toPorts:\n        - ports: [{{port: \"80\"}}]\n          rules: {{http: []}}\n"
        ))
        .expect_err("invalid");
        let expected = [
            "cnp.yaml:8:7: spec.ingress[0]: combines fromEndpoints and fromCIDR in one rule",
            "cnp.yaml:10:22: spec.ingress[1].fromEntities[0]: \"wrld\" is not a Cilium entity",
            "cnp.yaml:13:33: spec.ingress[2].toPorts[0].rules.http[0].path: \"/a(\" is not a regular expression",
            "cnp.yaml:13:18: spec.ingress[2].toPorts[0].ports[0]: HTTP rules need protocol TCP",
            // In the order read: ingressDeny before egress.
            "cnp.yaml:19:11: spec.ingressDeny[0].toPorts[0].rules: deny rules cannot have L7 rules",
            "cnp.yaml:15:7: spec.egress[0].toFQDNs: `toFQDNs` is a Cilium feature flowscope cannot evaluate yet",
        ];
        crate::yaml::assert_errors(&errors, &expected);
    }

    /// A policy with one ingress port rule on 80/TCP holding `http`, written as a YAML flow
    /// list.
    fn with_http(http: &str) -> String {
        format!(
            "{HEAD}spec:\n  endpointSelector: {{}}\n  ingress:\n    - toPorts:\n        - ports: [{{port: \"80\", protocol: TCP}}]\n          rules:\n            http: {http}\n"
        )
    }

    fn http_of(policy: &CiliumNetworkPolicy) -> &[HttpRule] {
        policy.rules[0].ingress[0].to_ports[0]
            .http
            .as_deref()
            .expect("http rules")
    }

    #[test]
    fn header_matches_read_fail_and_log() {
        let policy = read(&with_http(
            "[{method: GET, headers: [\"X-Debug\", \"X-Env: prod\"], headerMatches: [{name: X-Token, value: abc}, {name: X-Trace, mismatch: LOG}, {name: X-Empty, value: \"\", mismatch: \"\"}]}]",
        ))
        .expect("valid");
        let rule = &http_of(&policy)[0];
        assert_eq!(rule.headers, ["X-Debug", "X-Env: prod"]);
        assert_eq!(
            rule.header_matches,
            [
                HeaderMatch {
                    name: "X-Token".into(),
                    value: Some("abc".into()),
                    mismatch: MismatchAction::Fail
                },
                HeaderMatch {
                    name: "X-Trace".into(),
                    value: None,
                    mismatch: MismatchAction::Log
                },
                HeaderMatch {
                    name: "X-Empty".into(),
                    value: None,
                    mismatch: MismatchAction::Fail
                },
            ]
        );
    }

    #[test]
    fn header_matches_that_rewrite_or_read_secrets_are_refused() {
        let errors = read(&with_http(
            "[{headerMatches: [{name: A, mismatch: ADD, value: x}, {name: B, mismatch: DELETE}, {name: C, mismatch: REPLACE}, {name: D, mismatch: FAIL}, {name: E, secret: {namespace: n, name: s}}, {value: x}, {name: \"\"}, {name: \"F:x\"}, {name: G, valeu: x}, {name: H, value: \" x\"}]}]",
        ))
        .expect_err("invalid");
        let at = "spec.ingress[0].toPorts[0].rules.http[0].headerMatches";
        let expected = [
            format!("cnp.yaml:11:57: {at}[0].mismatch: `ADD` rewrites the request's headers"),
            format!("cnp.yaml:11:93: {at}[1].mismatch: `DELETE` rewrites"),
            format!("cnp.yaml:11:122: {at}[2].mismatch: `REPLACE` rewrites"),
            format!(
                "cnp.yaml:11:152: {at}[3].mismatch: \"FAIL\" is not LOG, ADD, DELETE or REPLACE"
            ),
            format!(
                "cnp.yaml:11:169: {at}[4].secret: `secret` takes the value from a Kubernetes Secret"
            ),
            format!("cnp.yaml:11:203: {at}[5].name: required, but missing"),
            format!("cnp.yaml:11:222: {at}[6].name: has no header name"),
            format!("cnp.yaml:11:234: {at}[7].name: \"F:x\" is not a header name"),
            format!(
                "cnp.yaml:11:252: {at}[8]: unknown key \"valeu\"; accepted keys: name, value, mismatch, secret"
            ),
            format!("cnp.yaml:11:280: {at}[9].value: \" x\" begins or ends with whitespace"),
        ];
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        crate::yaml::assert_errors(&errors, &expected);
    }

    #[test]
    fn header_entries_that_cannot_match_are_refused() {
        let errors = read(&with_http(
            "[{headers: [\"X-Key:true\", \"X-Key:  two spaces\", \"X-Key: \", \"\", \":scheme: https\", \"X-Ok: fine\", \":path /a\"]}]",
        ))
        .expect_err("invalid");
        let at = "spec.ingress[0].toPorts[0].rules.http[0].headers";
        let expected = [
            format!(
                "cnp.yaml:11:31: {at}[0]: \"X-Key:true\" is not a header name: Cilium splits a `headers` entry at its first space"
            ),
            format!(
                "cnp.yaml:11:45: {at}[1]: the value \" two spaces\" begins or ends with whitespace"
            ),
            format!("cnp.yaml:11:67: {at}[2]: \"X-Key: \" has no value after the space"),
            format!("cnp.yaml:11:78: {at}[3]: has no header name"),
            format!(
                "cnp.yaml:11:82: {at}[4]: \":scheme\" is not a pseudo-header flowscope can match"
            ),
        ];
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        crate::yaml::assert_errors(&errors, &expected);
    }

    #[test]
    fn expressions_are_checked_whole_and_bounded() {
        let big = format!("({})", vec![r"\\w{50}"; 200].join("|"));
        let errors = read(&with_http(&format!(
            "[{{path: \"/a)|(.*\"}}, {{host: \"{big}\"}}]"
        )))
        .expect_err("invalid");
        let at = "spec.ingress[0].toPorts[0].rules.http";
        let expected = [
            format!("cnp.yaml:11:27: {at}[0].path: \"/a)|(.*\" is not a regular expression"),
            format!(
                "cnp.yaml:11:46: {at}[1].host: \"({})\" is too large a regular expression: compiled, it exceeds flowscope's limit of 1048576 bytes",
                vec![r"\\w{50}"; 200].join("|")
            ),
        ];
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        crate::yaml::assert_errors(&errors, &expected);
        // Empty expressions are no condition, as in Cilium.
        let policy = read(&with_http("[{method: \"\", path: /a}]")).expect("valid");
        assert_eq!(
            http_of(&policy),
            [HttpRule {
                path: Some("/a".into()),
                ..HttpRule::default()
            }]
        );
    }

    #[test]
    fn cidr_rules_name_their_bad_fields() {
        let errors = read(&format!(
            "{HEAD}spec:\n  endpointSelector: {{}}\n  egress:\n    - toCIDRSet:\n        - {{cidr: 10.0.0.0/8, except: [10.1.0.0/16, 11.0.0.0/16, 10.0.0.0/8, nope]}}\n        - {{cidr: 10.0.0.0/33}}\n        - {{except: [10.0.0.0/16]}}\n"
        ))
        .expect_err("invalid");
        let expected = [
            "cnp.yaml:9:52: spec.egress[0].toCIDRSet[0].except[1]: 11.0.0.0/16 is not inside 10.0.0.0/8",
            "cnp.yaml:9:77: spec.egress[0].toCIDRSet[0].except[3]: \"nope\" is not a CIDR",
            "cnp.yaml:10:18: spec.egress[0].toCIDRSet[1].cidr: \"10.0.0.0/33\" is not a CIDR",
            "cnp.yaml:11:11: spec.egress[0].toCIDRSet[2].cidr: required, but missing",
        ];
        crate::yaml::assert_errors(&errors, &expected);
    }

    #[test]
    fn a_policy_needs_a_spec_and_a_subject() {
        let errors = read(HEAD).expect_err("no spec");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("spec: required, but missing"),
            "{errors:?}"
        );
        let errors = read(&format!("{HEAD}spec:\n  ingress: [{{}}]\n")).expect_err("no selector");
        assert!(
            errors[0].contains("spec.endpointSelector: required"),
            "{errors:?}"
        );
        let errors = read(&format!("{HEAD}spec:\n  nodeSelector: {{}}\n")).expect_err("namespaced");
        assert!(
            errors[0].contains("only a CiliumClusterwideNetworkPolicy"),
            "{errors:?}"
        );
    }

    #[test]
    fn clusterwide_policies_have_no_namespace() {
        let policy = read(
            "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata:\n  name: p\nspec:\n  nodeSelector: {}\n  ingress: [{}]\n",
        )
        .expect("valid");
        assert!(policy.is_cluster_wide());
        let errors = read(
            "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata:\n  name: p\n  namespace: x\nspec:\n  endpointSelector: {}\n",
        )
        .expect_err("namespace");
        assert!(
            errors[0].contains("cluster-wide and has no namespace"),
            "{errors:?}"
        );
    }

    #[test]
    fn ports_are_strings_holding_numbers_or_names() {
        assert_eq!(port_for_tests("80"), Ok(Some(PortRef::Number(80))));
        assert_eq!(port_for_tests("0"), Ok(None));
        assert_eq!(
            port_for_tests("HTTP"),
            Ok(Some(PortRef::Name("http".into())))
        );
        assert!(port_for_tests("70000").is_err());
        assert!(port_for_tests("").is_err());
        let errors = read(&format!(
            "{HEAD}spec:\n  endpointSelector: {{}}\n  ingress:\n    - toPorts: [{{ports: [{{port: 80}}]}}]\n"
        ))
        .expect_err("unquoted");
        assert!(errors[0].contains("write it quoted: \"80\""), "{errors:?}");
    }
}
