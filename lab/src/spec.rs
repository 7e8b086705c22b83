//! The lab file: what `flowscope lab up [FILE]` reads, checks and turns into an address plan.
//!
//! It exists so that everything that can be wrong in a lab description is found before a single
//! namespace or veth is created, and reported the way a compiler would:
//! `lab.yaml:14:19: pods[2].ports[0].protocol: "SCTP" is not TCP or UDP ...`. Nothing here
//! touches the OS; the code that builds the lab takes a [`Plan`] and creates exactly that.
//!
//! # The format
//!
//! ```yaml
//! namespaces:
//!   - name: x                # DNS-1123 label: a-z, 0-9, '-', at most 63 characters
//!     labels: {ns: x}        # optional; kubernetes.io/metadata.name: x is added
//! pods:
//!   - name: a                # DNS-1123 label, unique within its namespace
//!     namespace: x           # a declared namespace
//!     labels: {pod: a}       # optional, kept as written
//!     ip: 198.18.1.10        # optional; otherwise allocated (see "Addresses")
//!     ports:                 # optional: what the pod serves
//!       - {port: 80, protocol: TCP, name: serve-80-tcp, app: http}
//!       - {port: 9000, protocol: TCP, app: grpc}
//! traffic:                   # optional: requests the lab sends continuously
//!   - {from: x/a, to: y/b, port: 80, protocol: TCP, every: 1s}
//! ```
//!
//! - `protocol` is `TCP` or `UDP`, spelled exactly so, as in Kubernetes. It is required.
//! - `app` (optional) says what the pod's server speaks on that port: `http` (needs TCP:
//!   HTTP/1.1, and HTTP/2 without TLS), `grpc` (needs TCP: gRPC over HTTP/2 without TLS, every
//!   method echoing its request) or `dns` (needs UDP: the lab's DNS server answers over UDP
//!   only). Without it the server answers plain TCP connections and UDP datagrams.
//! - `name` (optional) is a Kubernetes port name: at most 15 of a-z, 0-9 and '-'.
//! - A traffic entry goes from one pod (`namespace/pod`) to a port the destination declares.
//!   `every` is a Go-style duration (`500ms`, `1s`, `1.5s`, `1m30s`), at least 100ms.
//!   Optional keys: `count` (send that many requests, then stop; default: until the lab stops),
//!   `method` (GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS; default GET) and `path` (default
//!   `/`) for ports with `app: http`; `path` for ports with `app: grpc`, the method called
//!   (`/package.Service/Method`, default `/flowscope.lab.Echo/Echo`); `query` (default
//!   `kubernetes.default.svc.cluster.local`) for ports with `app: dns`.
//! - Unknown keys are refused, so a misspelt key never silently does nothing.
//!
//! # Addresses
//!
//! Pods live in 198.18.0.0/15 (RFC 2544 benchmarking space: never routed on the Internet, so it
//! cannot shadow a real network). 198.18.0.0/24 is kept for the lab itself. Each pod gets one
//! address, used as a /32 on its `eth0`, with the Calico layout:
//!
//! - in the pod: `ip addr add <pod ip>/32 dev eth0`, `ip route add 169.254.1.1 dev eth0`,
//!   `ip route add default via 169.254.1.1` ([`POD_GATEWAY`]);
//! - on the host: `ip route add <pod ip>/32 dev <veth>` and proxy ARP on the host's veth, which
//!   answers for the gateway.
//!
//! So no subnet is shared and no address is spent on networks or gateways. Pods without `ip:`
//! get addresses in pod order from 198.18.1.1 upwards, skipping addresses other pods declare
//! and every `.0` and `.255` (which many tools take for network and broadcast addresses):
//! 198.18.1.1 to 198.19.255.254, room for [`POD_ADDRESS_CAPACITY`] pods. The same file always
//! gives the same plan.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use flowscope_meta::names;
use flowscope_meta::yaml::{self, Diagnostics, Field, Node, Object, Pos, sanitize};
use ipnet::Ipv4Net;

/// Labels as Kubernetes writes them: key to value, in key order so output is stable.
pub use flowscope_meta::Labels;

/// The built-in demo lab, as text: printed by anyone who wants a file to start from.
pub const DEMO_YAML: &str = include_str!("../demo.yaml");

/// The name the built-in demo's messages carry in place of a file name.
const DEMO_SOURCE: &str = "demo.yaml (built in)";

/// Every pod address lies here (RFC 2544 space, see the module documentation).
pub const LAB_NETWORK: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(198, 18, 0, 0), 15);

/// Kept for the lab's own use (host-side addresses, test servers); never given to pods.
pub const RESERVED_NETWORK: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(198, 18, 0, 0), 24);

/// The first address the allocator hands out.
pub const FIRST_POD_ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);

/// The last address the allocator hands out.
pub const LAST_POD_ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 19, 255, 254);

/// How many pods a lab can hold: 511 /24s outside the reserved one, 254 addresses each.
pub const POD_ADDRESS_CAPACITY: usize = 511 * 254;

/// The next hop every pod routes through, as in Calico: a link-local address that exists on no
/// interface; the host's veth answers ARP for it (proxy ARP), so one value serves every pod.
pub const POD_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// The prefix length of a pod's address on its `eth0`: each pod is alone on its link.
pub const POD_PREFIX_LEN: u8 = 32;

/// The label Kubernetes gives every namespace, with the namespace's name as its value. Policies
/// select namespaces by it (the seed's allow-dns-egress does), so the lab sets it too.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The shortest `every`: faster than ten requests a second per entry only floods the flow
/// store and the screen without showing anything new.
pub const MIN_EVERY: Duration = Duration::from_millis(100);

/// Namespace and pod names are DNS-1123 labels, at most this long.
pub const MAX_NAME_LEN: usize = names::MAX_LABEL_LEN;

/// The path an HTTP request asks for when the traffic entry names none.
pub const DEFAULT_HTTP_PATH: &str = "/";

/// The gRPC method a traffic entry calls when it names none. The lab's gRPC server answers every
/// method alike, by echoing the request.
pub const DEFAULT_GRPC_PATH: &str = "/flowscope.lab.Echo/Echo";

/// The name a DNS query asks for when the traffic entry names none: the one name every pod of a
/// real cluster can resolve.
pub const DEFAULT_DNS_QUERY: &str = "kubernetes.default.svc.cluster.local";

/// A DNS name is at most 253 characters written out, without the final dot (RFC 1035).
const MAX_DNS_NAME_LEN: usize = 253;

/// Long enough for any realistic API path, short enough that a request line stays well inside
/// the 8 KiB that common HTTP servers accept.
const MAX_HTTP_PATH_LEN: usize = 2048;

/// How many declared names an error lists before it stops: enough to spot a typo, short enough
/// to read on one line.
const MAX_LISTED: usize = 8;

const DNS_NAME_RULE: &str = "a DNS name: labels of 1 to 63 letters, digits, '-' or '_' joined \
                             by dots, at most 253 characters, e.g. my-api.default.svc.cluster.local";
const HTTP_PATH_RULE: &str = "an absolute path of visible ASCII without spaces, at most 2048 \
                              characters, e.g. /api/items?limit=10";
const GRPC_PATH_RULE: &str = "a gRPC method path: /, the service (letters, digits, '_' and '.', \
                              e.g. package.Service), / and the method (letters, digits and '_'), \
                              e.g. /flowscope.lab.Echo/Echo";
const DURATION_RULE: &str = "a number and a unit (ms, s, m, h), e.g. 500ms, 1s, 1.5s, 1m30s";
const PORT_RULE: &str = "a port number, 1 to 65535";

/// A lab: namespaces, the pods in them, and the traffic between pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabSpec {
    /// In file order.
    pub namespaces: Vec<NamespaceSpec>,
    /// In file order, which is the order addresses are allocated in.
    pub pods: Vec<PodSpec>,
    /// In file order.
    pub traffic: Vec<TrafficSpec>,
}

/// A namespace and its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceSpec {
    /// A DNS-1123 label.
    pub name: String,
    /// As written, plus [`NAMESPACE_NAME_LABEL`] after [`LabSpec::parse`] or
    /// [`NamespaceSpec::new`].
    pub labels: Labels,
}

/// A pod: one network namespace with one address and the servers on its ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSpec {
    /// A DNS-1123 label, unique within the namespace.
    pub name: String,
    /// The name of a declared namespace.
    pub namespace: String,
    /// As written: the namespace's labels are the namespace's, not copied here.
    pub labels: Labels,
    /// The address the file asks for, if any; [`LabSpec::plan`] allocates the others.
    pub ip: Option<Ipv4Addr>,
    /// What the pod serves, in file order.
    pub ports: Vec<PortSpec>,
}

/// A port a pod serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// 1 to 65535.
    pub port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// A Kubernetes port name, which policies may refer to.
    pub name: Option<String>,
    /// What the server speaks; `None` is a plain TCP or UDP server.
    pub app: Option<App>,
}

/// A transport protocol the lab serves. Kubernetes also has SCTP; the lab has no SCTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// `TCP`.
    Tcp,
    /// `UDP`.
    Udp,
}

/// The application protocol a port's server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum App {
    /// `http`: an HTTP/1.1 and HTTP/2 (without TLS) server, over TCP.
    Http,
    /// `grpc`: a gRPC server (HTTP/2 without TLS) echoing every call, over TCP.
    Grpc,
    /// `dns`: a DNS server, over UDP.
    Dns,
}

/// A pod named by namespace and name, written `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodRef {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
}

/// Requests one pod sends another, over and over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficSpec {
    /// The client pod.
    pub from: PodRef,
    /// The server pod.
    pub to: PodRef,
    /// A port `to` declares with `protocol`.
    pub port: u16,
    /// The protocol of that port.
    pub protocol: Protocol,
    /// The time between two requests, at least [`MIN_EVERY`].
    pub every: Duration,
    /// How many requests to send; `None` sends until the lab stops.
    pub count: Option<u64>,
    /// For `app: http` ports; `None` means GET.
    pub method: Option<HttpMethod>,
    /// For `app: http` ports, the path; `None` means [`DEFAULT_HTTP_PATH`]. For `app: grpc`
    /// ports, the method called; `None` means [`DEFAULT_GRPC_PATH`].
    pub path: Option<String>,
    /// For `app: dns` ports; `None` means [`DEFAULT_DNS_QUERY`].
    pub query: Option<String>,
}

/// An HTTP method the lab's client sends. Cilium's L7 rules match on these names, so they are
/// spelled exactly as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HttpMethod {
    /// `GET`.
    Get,
    /// `HEAD`.
    Head,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `DELETE`.
    Delete,
    /// `PATCH`.
    Patch,
    /// `OPTIONS`.
    Options,
}

/// Where every pod goes and what every traffic entry sends: all the lab needs to be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// In the spec's pod order; `pods[i].index == i`.
    pub pods: Vec<PlannedPod>,
    /// In the spec's traffic order.
    pub traffic: Vec<PlannedTraffic>,
}

/// A pod with its address decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPod {
    /// The pod's position in the file, from 0. Stable for a given file, and short: Linux
    /// interface names are at most 15 bytes, too short for `namespace/name`, so names of veths
    /// and network namespaces are best built from this.
    pub index: usize,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The pod's own labels.
    pub labels: Labels,
    /// Its namespace's labels, including [`NAMESPACE_NAME_LABEL`].
    pub namespace_labels: Labels,
    /// Declared or allocated; used as a /32 (see the module documentation).
    pub ip: Ipv4Addr,
    /// What the pod serves.
    pub ports: Vec<PortSpec>,
}

/// A traffic entry with both ends resolved and its request decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedTraffic {
    /// The client: an index into [`Plan::pods`].
    pub from: usize,
    /// The server: an index into [`Plan::pods`].
    pub to: usize,
    /// The server's address and port.
    pub destination: SocketAddrV4,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The time between two requests.
    pub every: Duration,
    /// How many requests to send; `None` sends until the lab stops.
    pub count: Option<u64>,
    /// What each request is.
    pub request: Request,
}

/// What one request of a traffic entry is, from the destination port's `app`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A port without `app`: a TCP connection or a UDP datagram with a few bytes.
    Plain,
    /// An HTTP request.
    Http {
        /// The method.
        method: HttpMethod,
        /// The path, with any query string.
        path: String,
    },
    /// A unary gRPC call.
    Grpc {
        /// The method, `/package.Service/Method`.
        path: String,
    },
    /// A DNS query (type A).
    Dns {
        /// The name asked for.
        query: String,
    },
}

/// Why a lab file was refused. Its `Display` is one line naming the file, the line and column
/// when known, the field, and what would be accepted:
/// `lab.yaml:14:19: pods[2].ports[0].protocol: "SCTP" is not TCP or UDP ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The file, as passed to [`LabSpec::parse`]; `None` for a spec built in code.
    pub file: Option<String>,
    /// 1-based, when known.
    pub line: Option<u64>,
    /// 1-based, in characters, when known.
    pub column: Option<u64>,
    /// Where in the document, e.g. `pods[2].ports[0].protocol`; empty for the whole document.
    pub field: String,
    /// What is wrong and what would be accepted.
    pub problem: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            f.write_str(file)?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
                if let Some(column) = self.column {
                    write!(f, ":{column}")?;
                }
            }
            f.write_str(": ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.problem)
    }
}

impl std::error::Error for SpecError {}

impl LabSpec {
    /// Reads and checks a lab file. `source` names the file in error messages.
    ///
    /// Everything [`LabSpec::plan`] would refuse is refused here already, with the line it is on,
    /// so a lab that parses can be planned.
    pub fn parse(text: &str, source: &str) -> Result<LabSpec, SpecError> {
        let mut origin = Origin::new(Some(source));
        if text.trim().is_empty() {
            return Err(origin.error(
                "",
                "the file is empty: a lab declares `namespaces:` and `pods:`, and optionally \
                 `traffic:`",
            ));
        }
        let spec = read(text, source, &mut origin)?;
        spec.check(&origin)?;
        Ok(spec)
    }

    /// The built-in demo lab (see `lab/demo.yaml`): the seed document's cluster with traffic
    /// that its network policies both allow and deny.
    pub fn demo() -> LabSpec {
        // The demo is compiled in and a unit test parses it, so this cannot fail at run time.
        LabSpec::parse(DEMO_YAML, DEMO_SOURCE).expect("the built-in demo lab is valid")
    }

    /// Decides every pod's address and resolves every traffic entry.
    ///
    /// Deterministic: the same spec always gives the same plan. A spec from
    /// [`LabSpec::parse`] always plans; a spec built in code is checked first with the same
    /// rules as a file, without line numbers.
    pub fn plan(&self) -> Result<Plan, SpecError> {
        let addresses = self.check(&Origin::new(None))?;
        let pods: Vec<PlannedPod> = self
            .pods
            .iter()
            .zip(addresses)
            .enumerate()
            .map(|(index, (pod, ip))| PlannedPod {
                index,
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                labels: pod.labels.clone(),
                namespace_labels: self
                    .namespace(&pod.namespace)
                    .map(NamespaceSpec::labels_with_name)
                    .unwrap_or_default(),
                ip,
                ports: pod.ports.clone(),
            })
            .collect();
        let index: HashMap<PodRef, usize> =
            pods.iter().map(|pod| (pod.pod_ref(), pod.index)).collect();
        let mut traffic = Vec::with_capacity(self.traffic.len());
        for entry in &self.traffic {
            // `check` has resolved both ends and the port; a miss here would be a bug in it.
            let (Some(&from), Some(&to)) = (index.get(&entry.from), index.get(&entry.to)) else {
                continue;
            };
            let app = self.pods[to]
                .port(entry.port, entry.protocol)
                .and_then(|port| port.app);
            traffic.push(PlannedTraffic {
                from,
                to,
                destination: SocketAddrV4::new(pods[to].ip, entry.port),
                protocol: entry.protocol,
                every: entry.every,
                count: entry.count,
                request: entry.request(app),
            });
        }
        Ok(Plan { pods, traffic })
    }

    /// The namespace called `name`.
    pub fn namespace(&self, name: &str) -> Option<&NamespaceSpec> {
        self.namespaces.iter().find(|ns| ns.name == name)
    }

    /// The pod `pod` names.
    pub fn pod(&self, pod: &PodRef) -> Option<&PodSpec> {
        self.pods
            .iter()
            .find(|p| p.namespace == pod.namespace && p.name == pod.name)
    }

    /// A pod's own labels.
    pub fn pod_labels(&self, pod: &PodRef) -> Option<&Labels> {
        self.pod(pod).map(|p| &p.labels)
    }

    /// The labels of the namespace called `name`, including [`NAMESPACE_NAME_LABEL`] for a
    /// parsed spec.
    pub fn namespace_labels(&self, name: &str) -> Option<&Labels> {
        self.namespace(name).map(|ns| &ns.labels)
    }

    /// The labels of the namespace `pod` lives in.
    pub fn pod_namespace_labels(&self, pod: &PodRef) -> Option<&Labels> {
        self.pod(pod)
            .and_then(|p| self.namespace_labels(&p.namespace))
    }

    /// Checks everything a typed spec can still get wrong, and allocates addresses (which is
    /// how running out of them is found). Errors carry lines when `origin` knows them.
    fn check(&self, origin: &Origin<'_>) -> Result<Vec<Ipv4Addr>, SpecError> {
        let mut namespaces: HashMap<&str, usize> = HashMap::new();
        for (i, ns) in self.namespaces.iter().enumerate() {
            let path = format!("namespaces[{i}]");
            let name_path = format!("{path}.name");
            check_name(&ns.name).map_err(|problem| origin.error(&name_path, problem))?;
            match namespaces.entry(&ns.name) {
                Entry::Occupied(first) => {
                    return Err(origin.error(
                        &name_path,
                        format!(
                            "namespace {:?} is declared twice; first as {}",
                            ns.name,
                            origin.describe(&format!("namespaces[{}]", first.get()))
                        ),
                    ));
                }
                Entry::Vacant(slot) => {
                    slot.insert(i);
                }
            }
            check_labels(&path, &ns.labels, origin)?;
            if let Some(value) = ns.labels.get(NAMESPACE_NAME_LABEL)
                && *value != ns.name
            {
                return Err(origin.error(
                    &label_path(&path, NAMESPACE_NAME_LABEL),
                    format!(
                        "Kubernetes sets this label to the namespace's name: write {:?} or \
                         leave it out",
                        ns.name
                    ),
                ));
            }
        }

        let mut pods: HashMap<(&str, &str), usize> = HashMap::new();
        let mut ips: HashMap<Ipv4Addr, usize> = HashMap::new();
        for (i, pod) in self.pods.iter().enumerate() {
            let path = format!("pods[{i}]");
            let name_path = format!("{path}.name");
            check_name(&pod.name).map_err(|problem| origin.error(&name_path, problem))?;
            if !namespaces.contains_key(pod.namespace.as_str()) {
                return Err(origin.error(
                    &format!("{path}.namespace"),
                    format!(
                        "namespace {:?} is not declared under `namespaces:` (declared: {})",
                        pod.namespace,
                        listing(self.namespaces.iter().map(|ns| ns.name.as_str()))
                    ),
                ));
            }
            match pods.entry((&pod.namespace, &pod.name)) {
                Entry::Occupied(first) => {
                    return Err(origin.error(
                        &name_path,
                        format!(
                            "pod {} is declared twice; first as {}",
                            pod.pod_ref(),
                            origin.describe(&format!("pods[{}]", first.get()))
                        ),
                    ));
                }
                Entry::Vacant(slot) => {
                    slot.insert(i);
                }
            }
            check_labels(&path, &pod.labels, origin)?;
            if let Some(ip) = pod.ip {
                let ip_path = format!("{path}.ip");
                check_pod_ip(ip).map_err(|problem| origin.error(&ip_path, problem))?;
                if let Some(first) = ips.insert(ip, i) {
                    return Err(origin.error(
                        &ip_path,
                        format!(
                            "{ip} is already the address of {}, {}",
                            self.pods[first].pod_ref(),
                            origin.describe(&format!("pods[{first}]"))
                        ),
                    ));
                }
            }
            check_ports(&path, &pod.ports, origin)?;
        }

        for (i, entry) in self.traffic.iter().enumerate() {
            self.check_traffic(&format!("traffic[{i}]"), entry, origin)?;
        }

        allocate(&self.pods, FIRST_POD_ADDRESS, LAST_POD_ADDRESS).map_err(|i| {
            origin.error(
                &format!("pods[{i}]"),
                format!(
                    "no address is left for this pod: {LAB_NETWORK} holds {POD_ADDRESS_CAPACITY} \
                     pods"
                ),
            )
        })
    }

    fn check_traffic(
        &self,
        path: &str,
        entry: &TrafficSpec,
        origin: &Origin<'_>,
    ) -> Result<(), SpecError> {
        let find = |end: &PodRef, key: &str| {
            self.pod(end).ok_or_else(|| {
                origin.error(
                    &format!("{path}.{key}"),
                    format!(
                        "no pod {end} is declared (pods: {})",
                        listing(self.pods.iter().map(PodSpec::pod_ref))
                    ),
                )
            })
        };
        find(&entry.from, "from")?;
        let to = find(&entry.to, "to")?;
        if entry.from == entry.to {
            return Err(origin.error(
                &format!("{path}.to"),
                "traffic from a pod to itself never leaves its network namespace, so flowscope \
                 would not see it",
            ));
        }
        let port_path = format!("{path}.port");
        check_port_number(entry.port).map_err(|problem| origin.error(&port_path, problem))?;
        let Some(port) = to.port(entry.port, entry.protocol) else {
            let served = if to.ports.is_empty() {
                "it declares no ports".to_owned()
            } else {
                format!(
                    "it serves {}",
                    listing(
                        to.ports
                            .iter()
                            .map(|p| format!("{}/{}", p.port, p.protocol))
                    )
                )
            };
            return Err(origin.error(
                &port_path,
                format!(
                    "{} does not serve {}/{}: {served}",
                    entry.to, entry.port, entry.protocol
                ),
            ));
        };
        if entry.every < MIN_EVERY {
            return Err(origin.error(
                &format!("{path}.every"),
                format!(
                    "{:?} is too often: the shortest interval is 100ms",
                    entry.every
                ),
            ));
        }
        if entry.count == Some(0) {
            return Err(origin.error(
                &format!("{path}.count"),
                "0 requests would send nothing: write at least 1, or leave count out to send \
                 until the lab stops",
            ));
        }
        let port_name = format!("{}'s {}/{}", entry.to, entry.port, entry.protocol);
        let misplaced = |key: &str, wanted: &str| {
            let has = match port.app {
                Some(app) => format!("has app: {app}"),
                None => "has no app".to_owned(),
            };
            origin.error(
                &format!("{path}.{key}"),
                format!("{key} applies only to ports with app: {wanted}, and {port_name} {has}"),
            )
        };
        if port.app != Some(App::Http) && entry.method.is_some() {
            return Err(misplaced("method", "http"));
        }
        if !matches!(port.app, Some(App::Http | App::Grpc)) && entry.path.is_some() {
            return Err(misplaced("path", "http or grpc"));
        }
        if port.app != Some(App::Dns) && entry.query.is_some() {
            return Err(misplaced("query", "dns"));
        }
        if let Some(request_path) = &entry.path {
            let checked = if port.app == Some(App::Grpc) {
                check_grpc_path(request_path)
            } else {
                check_http_path(request_path)
            };
            checked.map_err(|problem| origin.error(&format!("{path}.path"), problem))?;
        }
        if let Some(query) = &entry.query {
            check_dns_name(query)
                .map_err(|problem| origin.error(&format!("{path}.query"), problem))?;
        }
        Ok(())
    }
}

impl NamespaceSpec {
    /// A namespace with `labels` plus [`NAMESPACE_NAME_LABEL`], as Kubernetes would create it.
    pub fn new(name: impl Into<String>, labels: Labels) -> Self {
        let mut ns = NamespaceSpec {
            name: name.into(),
            labels,
        };
        ns.labels = ns.labels_with_name();
        ns
    }

    /// The labels with [`NAMESPACE_NAME_LABEL`] set when missing, for specs built in code.
    fn labels_with_name(&self) -> Labels {
        let mut labels = self.labels.clone();
        labels
            .entry(NAMESPACE_NAME_LABEL.to_owned())
            .or_insert_with(|| self.name.clone());
        labels
    }
}

impl PodSpec {
    /// `namespace/name`.
    pub fn pod_ref(&self) -> PodRef {
        PodRef::new(&self.namespace, &self.name)
    }

    /// The declared port with this number and protocol.
    pub fn port(&self, port: u16, protocol: Protocol) -> Option<&PortSpec> {
        self.ports
            .iter()
            .find(|p| p.port == port && p.protocol == protocol)
    }
}

impl PodRef {
    /// The pod `name` in `namespace`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        PodRef {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Reads `namespace/name`; `None` unless both parts are there and non-empty.
    pub fn parse(text: &str) -> Option<Self> {
        let (namespace, name) = text.split_once('/')?;
        if namespace.is_empty() || name.is_empty() || name.contains('/') {
            return None;
        }
        Some(PodRef::new(namespace, name))
    }
}

impl fmt::Display for PodRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl Protocol {
    /// `TCP` or `UDP`, as Kubernetes writes them.
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }

    fn parse(text: &str) -> Result<Self, String> {
        match text {
            "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            // Kubernetes refuses "tcp" too; say why rather than only that it is wrong.
            _ if text.eq_ignore_ascii_case("tcp") || text.eq_ignore_ascii_case("udp") => {
                Err(format!(
                    "{text:?} is not TCP or UDP: protocols are written in capitals, as in \
                     Kubernetes"
                ))
            }
            _ => Err(format!(
                "{text:?} is not TCP or UDP (the lab serves only these, written in capitals as \
                 in Kubernetes)"
            )),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl App {
    /// `http`, `grpc` or `dns`, as written in the file.
    pub const fn as_str(self) -> &'static str {
        match self {
            App::Http => "http",
            App::Grpc => "grpc",
            App::Dns => "dns",
        }
    }

    /// The protocol the lab's server for this application listens on.
    pub const fn protocol(self) -> Protocol {
        match self {
            App::Http | App::Grpc => Protocol::Tcp,
            App::Dns => Protocol::Udp,
        }
    }

    fn parse(text: &str) -> Result<Self, String> {
        match text {
            "http" => Ok(App::Http),
            "grpc" => Ok(App::Grpc),
            "dns" => Ok(App::Dns),
            _ => Err(format!(
                "{text:?} is not http, grpc or dns (leave app out for a plain TCP or UDP server)"
            )),
        }
    }
}

impl fmt::Display for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl HttpMethod {
    /// Every method, in the order messages list them.
    pub const ALL: [HttpMethod; 7] = [
        HttpMethod::Get,
        HttpMethod::Head,
        HttpMethod::Post,
        HttpMethod::Put,
        HttpMethod::Delete,
        HttpMethod::Patch,
        HttpMethod::Options,
    ];

    /// The method as sent on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Head => "HEAD",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Delete => "DELETE",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Options => "OPTIONS",
        }
    }

    fn parse(text: &str) -> Result<Self, String> {
        HttpMethod::ALL
            .into_iter()
            .find(|method| method.as_str() == text)
            .ok_or_else(|| {
                format!(
                    "{text:?} is not GET, HEAD, POST, PUT, DELETE, PATCH or OPTIONS (methods are \
                     case-sensitive)"
                )
            })
    }
}

impl fmt::Display for HttpMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TrafficSpec {
    /// The request this entry sends to a port with `app`, defaults filled in.
    fn request(&self, app: Option<App>) -> Request {
        match app {
            None => Request::Plain,
            Some(App::Http) => Request::Http {
                method: self.method.unwrap_or(HttpMethod::Get),
                path: self
                    .path
                    .clone()
                    .unwrap_or_else(|| DEFAULT_HTTP_PATH.to_owned()),
            },
            Some(App::Grpc) => Request::Grpc {
                path: self
                    .path
                    .clone()
                    .unwrap_or_else(|| DEFAULT_GRPC_PATH.to_owned()),
            },
            Some(App::Dns) => Request::Dns {
                query: self
                    .query
                    .clone()
                    .unwrap_or_else(|| DEFAULT_DNS_QUERY.to_owned()),
            },
        }
    }
}

impl Plan {
    /// The planned pod `pod` names.
    pub fn pod(&self, pod: &PodRef) -> Option<&PlannedPod> {
        self.pods
            .iter()
            .find(|p| p.namespace == pod.namespace && p.name == pod.name)
    }

    /// The planned pod with address `ip`.
    pub fn pod_by_ip(&self, ip: Ipv4Addr) -> Option<&PlannedPod> {
        self.pods.iter().find(|p| p.ip == ip)
    }
}

impl PlannedPod {
    /// `namespace/name`.
    pub fn pod_ref(&self) -> PodRef {
        PodRef::new(&self.namespace, &self.name)
    }
}

// Reading the file: the policy files' reader (`flowscope_meta::yaml`) gives a tree that knows
// where every value and key is, walked here key by key. Scalars are taken as the text written
// (`yaml::scalar_text`) and parsed here, so that messages say what is accepted ("\"http\" is
// not a port number, 1 to 65535") and `port: "80"` reads as `port: 80`. The walk records
// every problem it finds, in reading order (items in file order; in each mapping its values,
// then its unknown keys, then its missing ones), and the first is reported.

/// Reads the document into a spec, recording where every value is in `origin`.
fn read(text: &str, source: &str, origin: &mut Origin<'_>) -> Result<LabSpec, SpecError> {
    let tree = yaml::parse_document(text, "file").map_err(|error| {
        let known = error.at.line != 0;
        SpecError {
            file: Some(source.to_owned()),
            line: known.then_some(error.at.line),
            column: known.then_some(error.at.column),
            field: error.field,
            problem: error.message,
        }
    })?;
    let mut d = Diagnostics::new(source);
    let spec = read_lab(&mut d, origin, &tree);
    match (d.errors.into_iter().next(), spec) {
        (None, Some(spec)) => Ok(spec),
        (Some(problem), _) => Err(SpecError {
            file: Some(problem.file),
            line: problem.line,
            column: problem.column,
            field: problem.field,
            problem: problem.message,
        }),
        // Every reader that gives up records why; this is only a guard.
        (None, None) => Err(origin.error("", "the file cannot be read as a lab")),
    }
}

fn read_lab(d: &mut Diagnostics<'_>, origin: &mut Origin<'_>, tree: &Node) -> Option<LabSpec> {
    let mut object = Object::new(d, tree, "")?;
    let namespaces = list(d, origin, &mut object, "namespaces", true, read_namespace);
    let pods = list(d, origin, &mut object, "pods", true, read_pod);
    let traffic = list(d, origin, &mut object, "traffic", false, read_traffic);
    object.finish(d);
    Some(LabSpec {
        namespaces: namespaces?,
        pods: pods?,
        traffic: traffic?,
    })
}

fn read_namespace(
    d: &mut Diagnostics<'_>,
    origin: &mut Origin<'_>,
    node: &Node,
    path: &str,
) -> Option<NamespaceSpec> {
    let mut object = Object::new(d, node, path)?;
    let name = required(d, origin, &mut object, "name", text);
    let labels = read_labels(d, origin, &mut object);
    object.finish(d);
    let (name, mut labels) = (name?, labels?);
    labels
        .entry(NAMESPACE_NAME_LABEL.to_owned())
        .or_insert_with(|| name.clone());
    Some(NamespaceSpec { name, labels })
}

fn read_pod(
    d: &mut Diagnostics<'_>,
    origin: &mut Origin<'_>,
    node: &Node,
    path: &str,
) -> Option<PodSpec> {
    let mut object = Object::new(d, node, path)?;
    let name = required(d, origin, &mut object, "name", text);
    let namespace = required(d, origin, &mut object, "namespace", text);
    let labels = read_labels(d, origin, &mut object);
    let ip = optional(d, origin, &mut object, "ip", |text| {
        text.parse::<Ipv4Addr>().map_err(|_| {
            format!(
                "{text:?} is not an IPv4 address like 198.18.1.10 (leave ip out to get one \
                 allocated)"
            )
        })
    });
    let ports = list(d, origin, &mut object, "ports", false, read_port);
    object.finish(d);
    Some(PodSpec {
        name: name?,
        namespace: namespace?,
        labels: labels?,
        ip: ip?,
        ports: ports?,
    })
}

fn read_port(
    d: &mut Diagnostics<'_>,
    origin: &mut Origin<'_>,
    node: &Node,
    path: &str,
) -> Option<PortSpec> {
    let mut object = Object::new(d, node, path)?;
    let port = required(d, origin, &mut object, "port", parse_port);
    let protocol = required(d, origin, &mut object, "protocol", Protocol::parse);
    let name = optional(d, origin, &mut object, "name", text);
    let app = optional(d, origin, &mut object, "app", App::parse);
    object.finish(d);
    Some(PortSpec {
        port: port?,
        protocol: protocol?,
        name: name?,
        app: app?,
    })
}

fn read_traffic(
    d: &mut Diagnostics<'_>,
    origin: &mut Origin<'_>,
    node: &Node,
    path: &str,
) -> Option<TrafficSpec> {
    let pod_ref = |text: &str| {
        PodRef::parse(text)
            .ok_or_else(|| format!("{text:?} is not namespace/pod, e.g. default/frontend"))
    };
    let mut object = Object::new(d, node, path)?;
    let from = required(d, origin, &mut object, "from", pod_ref);
    let to = required(d, origin, &mut object, "to", pod_ref);
    let port = required(d, origin, &mut object, "port", parse_port);
    let protocol = required(d, origin, &mut object, "protocol", Protocol::parse);
    let every = required(d, origin, &mut object, "every", parse_every);
    let count = optional(d, origin, &mut object, "count", |text| {
        text.parse::<u64>()
            .map_err(|_| format!("{text:?} is not a number of requests, e.g. 10"))
    });
    let method = optional(d, origin, &mut object, "method", HttpMethod::parse);
    let request_path = optional(d, origin, &mut object, "path", text);
    let query = optional(d, origin, &mut object, "query", text);
    object.finish(d);
    Some(TrafficSpec {
        from: from?,
        to: to?,
        port: port?,
        protocol: protocol?,
        every: every?,
        count: count?,
        method: method?,
        path: request_path?,
        query: query?,
    })
}

/// The items of the list at `key`, each read by `read` with its path (`pods[2]`); `None` when
/// the list or any item is wrong (recorded). An optional list left out is empty.
fn list<T>(
    d: &mut Diagnostics<'_>,
    origin: &mut Origin<'_>,
    object: &mut Object<'_>,
    key: &'static str,
    required: bool,
    mut read: impl FnMut(&mut Diagnostics<'_>, &mut Origin<'_>, &Node, &str) -> Option<T>,
) -> Option<Vec<T>> {
    let path = object.child(key);
    let node = if required {
        object.require(key)
    } else {
        object.take(key)
    };
    let Some(node) = node else {
        if let (false, Some(at)) = (required, object.key_at(key)) {
            // `ports:` with nothing after it: refused as before, rather than read as none.
            d.push(
                at,
                &path,
                "expected a list of `- ` items, found nothing (null); write `[]` or leave the \
                 key out for none",
            );
            return None;
        }
        return (!required).then(Vec::new);
    };
    origin.record(&path, node.at);
    let items = yaml::list(d, Field { node, path: &path })?;
    let mut out = Vec::with_capacity(items.len());
    let mut valid = true;
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        origin.record(&item_path, item.at);
        match read(d, origin, item, &item_path) {
            Some(value) => out.push(value),
            None => valid = false,
        }
    }
    valid.then_some(out)
}

/// `labels:`, each value taken as the text written; left out, no labels.
fn read_labels(
    d: &mut Diagnostics<'_>,
    origin: &mut Origin<'_>,
    object: &mut Object<'_>,
) -> Option<Labels> {
    let path = object.child("labels");
    let Some(node) = object.take("labels") else {
        return Some(Labels::new());
    };
    origin.record(&path, node.at);
    let entries = yaml::mapping(d, Field { node, path: &path })?;
    let mut labels = Labels::new();
    let mut valid = true;
    for entry in entries {
        let key = entry.written_key();
        let value_path = label_path(&object.path, key);
        origin.record(&value_path, entry.value.at);
        let field = Field {
            node: &entry.value,
            path: &value_path,
        };
        match yaml::scalar_text(d, field) {
            Some(value) => {
                labels.insert(key.to_owned(), value);
            }
            None => valid = false,
        }
    }
    valid.then_some(labels)
}

/// The value at `key`, which must be there, parsed from its text by `parse`; `None` when it
/// is missing or wrong (recorded).
fn required<T>(
    d: &mut Diagnostics<'_>,
    origin: &mut Origin<'_>,
    object: &mut Object<'_>,
    key: &'static str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    let node = object.require(key)?;
    scalar(d, origin, &object.child(key), node, parse)
}

/// The value at `key` parsed from its text, `Some(None)` when left out; `None` when it is
/// wrong (recorded).
fn optional<T>(
    d: &mut Diagnostics<'_>,
    origin: &mut Origin<'_>,
    object: &mut Object<'_>,
    key: &'static str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<Option<T>> {
    match object.take(key) {
        Some(node) => scalar(d, origin, &object.child(key), node, parse).map(Some),
        None => Some(None),
    }
}

/// Records where `node` is and parses its text, recording `parse`'s refusal at the value.
fn scalar<T>(
    d: &mut Diagnostics<'_>,
    origin: &mut Origin<'_>,
    path: &str,
    node: &Node,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    origin.record(path, node.at);
    let text = yaml::scalar_text(d, Field { node, path })?;
    parse(&text)
        .map_err(|problem| d.push(node.at, path, problem))
        .ok()
}

/// The text itself, for values that are judged later ([`LabSpec::check`]) or never.
fn text(text: &str) -> Result<String, String> {
    Ok(text.to_owned())
}

fn label_path(owner: &str, key: &str) -> String {
    format!("{owner}.labels[{:?}]", sanitize(key))
}

fn parse_port(text: &str) -> Result<u16, String> {
    text.parse::<u16>()
        .map_err(|_| format!("{text:?} is not {PORT_RULE}"))
}

fn parse_every(text: &str) -> Result<Duration, String> {
    flowscope_model::time::parse_duration_nanos(text)
        .and_then(|nanos| u64::try_from(nanos).ok())
        .map(Duration::from_nanos)
        .ok_or_else(|| format!("{text:?} is not a duration: {DURATION_RULE}"))
}

/// Where each value of a parsed file is, by field path, so that checks on the typed spec can
/// point at a line. Empty for a spec built in code.
struct Origin<'a> {
    file: Option<&'a str>,
    spans: HashMap<String, (u64, u64)>,
}

impl<'a> Origin<'a> {
    fn new(file: Option<&'a str>) -> Self {
        Origin {
            file,
            spans: HashMap::new(),
        }
    }

    fn record(&mut self, path: &str, at: Pos) {
        if at.line != 0 {
            self.spans.insert(path.to_owned(), (at.line, at.column));
        }
    }

    /// Where `path` is, or else its nearest recorded parent.
    fn locate(&self, path: &str) -> Option<(u64, u64)> {
        let mut path = path;
        loop {
            if let Some(span) = self.spans.get(path) {
                return Some(*span);
            }
            // Label keys are quoted and may hold '.' or '[', so step over them whole.
            let cut = if path.ends_with("\"]") {
                path.rfind("[\"")?
            } else {
                path.rfind(['.', '['])?
            };
            path = &path[..cut];
        }
    }

    /// `namespaces[0] (line 3)`, or just the path when the line is unknown.
    fn describe(&self, path: &str) -> String {
        match self.locate(path) {
            Some((line, _)) => format!("{path} (line {line})"),
            None => path.to_owned(),
        }
    }

    fn error(&self, path: &str, problem: impl Into<String>) -> SpecError {
        let span = self.locate(path);
        SpecError {
            file: self.file.map(str::to_owned),
            line: span.map(|(line, _)| line),
            column: span.map(|(_, column)| column),
            field: path.to_owned(),
            problem: problem.into(),
        }
    }
}

/// Up to [`MAX_LISTED`] items joined by commas, "none" for none.
fn listing<T: fmt::Display>(items: impl Iterator<Item = T>) -> String {
    let items: Vec<String> = items.map(|item| item.to_string()).collect();
    match items.len() {
        0 => "none".to_owned(),
        n if n > MAX_LISTED => format!(
            "{}, and {} more",
            items[..MAX_LISTED].join(", "),
            n - MAX_LISTED
        ),
        _ => items.join(", "),
    }
}

fn check_ports(owner: &str, ports: &[PortSpec], origin: &Origin<'_>) -> Result<(), SpecError> {
    let mut numbers: HashMap<(u16, Protocol), usize> = HashMap::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (j, port) in ports.iter().enumerate() {
        let path = format!("{owner}.ports[{j}]");
        let port_path = format!("{path}.port");
        check_port_number(port.port).map_err(|problem| origin.error(&port_path, problem))?;
        if let Some(first) = numbers.insert((port.port, port.protocol), j) {
            return Err(origin.error(
                &port_path,
                format!(
                    "{}/{} is declared twice in this pod; first as {}",
                    port.port,
                    port.protocol,
                    origin.describe(&format!("{owner}.ports[{first}]"))
                ),
            ));
        }
        if let Some(name) = &port.name {
            let name_path = format!("{path}.name");
            check_port_name(name).map_err(|problem| origin.error(&name_path, problem))?;
            if let Some(first) = names.insert(name, j) {
                return Err(origin.error(
                    &name_path,
                    format!(
                        "port name {name:?} is used twice in this pod; first by {}",
                        origin.describe(&format!("{owner}.ports[{first}]"))
                    ),
                ));
            }
        }
        if let Some(app) = port.app
            && app.protocol() != port.protocol
        {
            let why = match app {
                App::Http => "the lab's HTTP server listens on TCP",
                App::Grpc => "gRPC runs over HTTP/2, on TCP",
                App::Dns => "the lab's DNS server answers over UDP only",
            };
            return Err(origin.error(
                &format!("{path}.app"),
                format!(
                    "app: {app} needs protocol {}, not {} ({why})",
                    app.protocol(),
                    port.protocol
                ),
            ));
        }
    }
    Ok(())
}

fn check_port_number(port: u16) -> Result<(), String> {
    if port == 0 {
        return Err(format!("0 is not {PORT_RULE}"));
    }
    Ok(())
}

fn check_pod_ip(ip: Ipv4Addr) -> Result<(), String> {
    if !LAB_NETWORK.contains(&ip) {
        return Err(format!(
            "{ip} is outside the lab network {LAB_NETWORK}: use {FIRST_POD_ADDRESS} to \
             {LAST_POD_ADDRESS}, or leave ip out to get one allocated"
        ));
    }
    if RESERVED_NETWORK.contains(&ip) {
        return Err(format!(
            "{ip} is in {RESERVED_NETWORK}, which the lab keeps for itself: use \
             {FIRST_POD_ADDRESS} to {LAST_POD_ADDRESS}"
        ));
    }
    if !is_pod_address(ip) {
        return Err(format!(
            "{ip} ends in .0 or .255, which the lab never gives to pods (many tools take them \
             for network or broadcast addresses)"
        ));
    }
    Ok(())
}

/// Whether the lab would give `ip` to a pod.
fn is_pod_address(ip: Ipv4Addr) -> bool {
    LAB_NETWORK.contains(&ip)
        && !RESERVED_NETWORK.contains(&ip)
        && !matches!(ip.octets()[3], 0 | 255)
}

/// Gives every pod its declared address or the next free one from `first` to `last`, in pod
/// order, never one another pod declares (even a later one). Fails with the index of the first
/// pod left without an address.
fn allocate(pods: &[PodSpec], first: Ipv4Addr, last: Ipv4Addr) -> Result<Vec<Ipv4Addr>, usize> {
    let declared: HashSet<Ipv4Addr> = pods.iter().filter_map(|pod| pod.ip).collect();
    let last = u32::from(last);
    // u64, so that stepping past 255.255.255.255 cannot wrap around.
    let mut next = u64::from(u32::from(first));
    let mut addresses = Vec::with_capacity(pods.len());
    for (i, pod) in pods.iter().enumerate() {
        if let Some(ip) = pod.ip {
            addresses.push(ip);
            continue;
        }
        let ip = loop {
            let candidate = u32::try_from(next)
                .ok()
                .filter(|&n| n <= last)
                .map(Ipv4Addr::from)
                .ok_or(i)?;
            next += 1;
            if is_pod_address(candidate) && !declared.contains(&candidate) {
                break candidate;
            }
        };
        addresses.push(ip);
    }
    Ok(addresses)
}

fn check_name(name: &str) -> Result<(), String> {
    names::dns_label(name).map_err(|error| error.to_string())
}

fn check_port_name(name: &str) -> Result<(), String> {
    names::port_name(name).map_err(|error| error.to_string())
}

fn check_labels(owner: &str, labels: &Labels, origin: &Origin<'_>) -> Result<(), SpecError> {
    for (key, value) in labels {
        names::label_key(key)
            .and_then(|()| names::label_value(value))
            .map_err(|error| origin.error(&label_path(owner, key), error.to_string()))?;
    }
    Ok(())
}

fn check_dns_name(name: &str) -> Result<(), String> {
    let written = name.strip_suffix('.').unwrap_or(name);
    let valid = !written.is_empty()
        && written.len() <= MAX_DNS_NAME_LEN
        && written.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= MAX_NAME_LEN
                && bytes
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && bytes[0] != b'-'
                && bytes[bytes.len() - 1] != b'-'
        });
    if valid {
        Ok(())
    } else {
        Err(format!("{:?} is not {DNS_NAME_RULE}", sanitize(name)))
    }
}

fn check_http_path(path: &str) -> Result<(), String> {
    let valid = path.starts_with('/')
        && path.len() <= MAX_HTTP_PATH_LEN
        && path.bytes().all(|b| b.is_ascii_graphic());
    if valid {
        Ok(())
    } else {
        Err(format!("{:?} is not {HTTP_PATH_RULE}", sanitize(path)))
    }
}

/// `/service/method`: a service of letters, digits, '_' and '.' (not at either end, no two
/// dots together: `package.Service`), and a method of letters, digits and '_'.
fn check_grpc_path(path: &str) -> Result<(), String> {
    let word = |part: &str, dots: bool| {
        !part.is_empty()
            && part.split('.').all(|piece| {
                !piece.is_empty()
                    && piece
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            })
            && (dots || !part.contains('.'))
    };
    let valid = path.len() <= MAX_HTTP_PATH_LEN
        && path
            .strip_prefix('/')
            .and_then(|rest| rest.split_once('/'))
            .is_some_and(|(service, method)| word(service, true) && word(method, false));
    if valid {
        Ok(())
    } else {
        Err(format!("{:?} is not {GRPC_PATH_RULE}", sanitize(path)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small lab touching every key; refusal tests change one thing in it.
    const BASE: &str = "\
namespaces:
  - name: x
    labels: {ns: x}
  - name: y
    labels: {ns: y}
pods:
  - name: a
    namespace: x
    labels: {pod: a}
    ports:
      - {port: 80, protocol: TCP, name: serve-80-tcp, app: http}
      - {port: 53, protocol: UDP, name: serve-53-udp, app: dns}
      - {port: 81, protocol: UDP}
  - name: b
    namespace: y
    labels: {pod: b}
    ip: 198.18.1.1
    ports:
      - {port: 81, protocol: TCP}
traffic:
  - {from: x/a, to: y/b, port: 81, protocol: TCP, every: 1s}
  - {from: y/b, to: x/a, port: 80, protocol: TCP, every: 1s, method: POST, path: /api}
  - {from: y/b, to: x/a, port: 53, protocol: UDP, every: 500ms, query: my-api.default.svc.cluster.local}
  - {from: y/b, to: x/a, port: 81, protocol: UDP, every: 2s, count: 3}
";

    /// BASE with its first `old` replaced; fails if `old` is not there, so a test cannot pass
    /// by changing nothing.
    fn with(old: &str, new: &str) -> String {
        assert!(BASE.contains(old), "{old:?} is not in BASE");
        BASE.replacen(old, new, 1)
    }

    /// The 1-based line of the first line containing `needle`.
    fn line_of(text: &str, needle: &str) -> u64 {
        let index = text
            .lines()
            .position(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} is not in the text"));
        u64::try_from(index).unwrap() + 1
    }

    /// Asserts that `yaml` is refused on the first line holding `needle`, naming `field`, with
    /// a problem containing `fragment`; returns the message.
    #[track_caller]
    fn assert_refused(yaml: &str, needle: &str, field: &str, fragment: &str) -> String {
        assert_refused_at(yaml, line_of(yaml, needle), field, fragment)
    }

    /// [`assert_refused`] for a line given by number.
    #[track_caller]
    fn assert_refused_at(yaml: &str, line: u64, field: &str, fragment: &str) -> String {
        let error = LabSpec::parse(yaml, "lab.yaml").expect_err("the lab should be refused");
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("lab.yaml:{line}:")),
            "expected line {line} in: {message}"
        );
        assert_eq!(error.line, Some(line), "{message}");
        assert!(error.column.is_some(), "no column in: {message}");
        assert_eq!(error.field, field, "{message}");
        assert!(
            message.contains(&format!(": {field}: ")) || field.is_empty(),
            "{message}"
        );
        assert!(
            message.contains(fragment),
            "expected {fragment:?} in: {message}"
        );
        message
    }

    #[test]
    fn base_parses_and_plans() {
        let spec = LabSpec::parse(BASE, "lab.yaml").unwrap();
        assert_eq!(spec.namespaces.len(), 2);
        assert_eq!(spec.pods.len(), 2);
        assert_eq!(spec.pods[1].ip, Some(Ipv4Addr::new(198, 18, 1, 1)));
        let a = &spec.pods[0].ports[0];
        assert_eq!(
            (a.port, a.protocol, a.name.as_deref(), a.app),
            (80, Protocol::Tcp, Some("serve-80-tcp"), Some(App::Http))
        );
        assert_eq!(spec.traffic[1].method, Some(HttpMethod::Post));
        assert_eq!(spec.traffic[2].every, Duration::from_millis(500));
        assert_eq!(spec.traffic[3].count, Some(3));

        let plan = spec.plan().unwrap();
        // b declares 198.18.1.1, so a (listed first) gets the next one.
        assert_eq!(plan.pods[0].ip, Ipv4Addr::new(198, 18, 1, 2));
        assert_eq!(plan.pods[1].ip, Ipv4Addr::new(198, 18, 1, 1));
        assert_eq!(plan.pods[1].index, 1);
        let requests: Vec<&Request> = plan.traffic.iter().map(|t| &t.request).collect();
        assert_eq!(
            requests,
            [
                &Request::Plain,
                &Request::Http {
                    method: HttpMethod::Post,
                    path: "/api".to_owned()
                },
                &Request::Dns {
                    query: "my-api.default.svc.cluster.local".to_owned()
                },
                &Request::Plain,
            ]
        );
        assert_eq!(plan.traffic[0].from, 0);
        assert_eq!(plan.traffic[0].to, 1);
        assert_eq!(
            plan.traffic[0].destination,
            SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 1), 81)
        );
        assert_eq!(plan.traffic[3].count, Some(3));
    }

    #[test]
    fn demo_parses_and_models_the_seed_cluster() {
        let spec = LabSpec::demo();
        let names: Vec<&str> = spec.namespaces.iter().map(|ns| ns.name.as_str()).collect();
        assert_eq!(names, ["default", "kube-system", "monitoring"]);

        let coredns = PodRef::new("kube-system", "coredns");
        assert_eq!(
            spec.pod_labels(&coredns)
                .unwrap()
                .get("k8s-app")
                .map(String::as_str),
            Some("kube-dns")
        );
        assert_eq!(
            spec.pod_namespace_labels(&coredns)
                .unwrap()
                .get(NAMESPACE_NAME_LABEL)
                .map(String::as_str),
            Some("kube-system")
        );
        let dns = spec.pod(&coredns).unwrap().port(53, Protocol::Udp).unwrap();
        assert_eq!(dns.app, Some(App::Dns));
        let api = spec.pod(&PodRef::new("default", "my-api")).unwrap();
        assert_eq!(api.labels.get("app").map(String::as_str), Some("my-api"));
        assert_eq!(api.port(8080, Protocol::Tcp).unwrap().app, Some(App::Http));

        let plan = spec.plan().unwrap();
        assert_eq!(plan.pods.len(), spec.pods.len());
        let requests: Vec<&Request> = plan.traffic.iter().map(|t| &t.request).collect();
        for wanted in [
            Request::Dns {
                query: "my-api.default.svc.cluster.local".to_owned(),
            },
            Request::Http {
                method: HttpMethod::Get,
                path: "/api/items".to_owned(),
            },
            Request::Http {
                method: HttpMethod::Post,
                path: "/api/orders".to_owned(),
            },
            Request::Http {
                method: HttpMethod::Get,
                path: "/metrics".to_owned(),
            },
        ] {
            assert!(requests.contains(&&wanted), "no {wanted:?} in the demo");
        }
        // frontend -> postgres, a path the seed's policies deny.
        let frontend = plan.pod(&PodRef::new("default", "frontend")).unwrap().index;
        let postgres = plan.pod(&PodRef::new("default", "postgres")).unwrap().index;
        assert!(
            plan.traffic
                .iter()
                .any(|t| t.from == frontend && t.to == postgres)
        );
        for entry in &plan.traffic {
            assert!(
                (Duration::from_secs(1)..=Duration::from_secs(2)).contains(&entry.every),
                "{entry:?}"
            );
        }
    }

    /// The x/y/z model of the Kubernetes network policy end-to-end tests: three namespaces,
    /// pods a, b, c in each, serving 80 and 81 over TCP and UDP.
    fn xyz_model() -> String {
        let mut yaml = String::from("namespaces:\n");
        for ns in ["x", "y", "z"] {
            yaml.push_str(&format!("  - name: {ns}\n    labels: {{ns: {ns}}}\n"));
        }
        yaml.push_str("pods:\n");
        for ns in ["x", "y", "z"] {
            for pod in ["a", "b", "c"] {
                yaml.push_str(&format!(
                    "  - name: {pod}\n    namespace: {ns}\n    labels: {{pod: {pod}}}\n    ports:\n"
                ));
                for port in [80, 81] {
                    for protocol in ["TCP", "UDP"] {
                        let name = format!("serve-{port}-{}", protocol.to_lowercase());
                        yaml.push_str(&format!(
                            "      - {{port: {port}, protocol: {protocol}, name: {name}}}\n"
                        ));
                    }
                }
            }
        }
        yaml
    }

    #[test]
    fn xyz_model_parses_and_plans_in_order() {
        let spec = LabSpec::parse(&xyz_model(), "xyz.yaml").unwrap();
        assert_eq!(spec.pods.len(), 9);
        assert!(spec.pods.iter().all(|pod| pod.ports.len() == 4));
        let b = PodRef::new("y", "b");
        assert_eq!(
            spec.pod(&b).unwrap().ports[3].name.as_deref(),
            Some("serve-81-udp")
        );
        assert_eq!(
            spec.pod_labels(&b).unwrap(),
            &Labels::from([("pod".into(), "b".into())])
        );
        assert_eq!(
            spec.namespace_labels("y").unwrap(),
            &Labels::from([
                ("ns".into(), "y".into()),
                (NAMESPACE_NAME_LABEL.into(), "y".into())
            ])
        );

        let plan = spec.plan().unwrap();
        let ips: Vec<Ipv4Addr> = plan.pods.iter().map(|pod| pod.ip).collect();
        let expected: Vec<Ipv4Addr> = (1..=9).map(|i| Ipv4Addr::new(198, 18, 1, i)).collect();
        assert_eq!(ips, expected);
        let yb = plan.pod(&b).unwrap();
        assert_eq!((yb.index, yb.ip), (4, Ipv4Addr::new(198, 18, 1, 5)));
        assert_eq!(plan.pod_by_ip(Ipv4Addr::new(198, 18, 1, 5)), Some(yb));
        assert_eq!(yb.namespace_labels.get("ns").map(String::as_str), Some("y"));
        assert!(plan.traffic.is_empty());
    }

    #[test]
    fn implicit_namespace_label_and_pod_labels_as_written() {
        let spec = LabSpec::parse(BASE, "lab.yaml").unwrap();
        assert_eq!(
            spec.namespace_labels("x")
                .unwrap()
                .get(NAMESPACE_NAME_LABEL)
                .map(String::as_str),
            Some("x")
        );
        // Pods get no implicit labels.
        assert_eq!(
            spec.pod_labels(&PodRef::new("x", "a")).unwrap(),
            &Labels::from([("pod".into(), "a".into())])
        );
        // Writing the label with the namespace's own name is accepted.
        let same = with(
            "labels: {ns: x}",
            "labels: {ns: x, kubernetes.io/metadata.name: x}",
        );
        LabSpec::parse(&same, "lab.yaml").unwrap();
        assert_refused(
            &with(
                "labels: {ns: x}",
                "labels: {ns: x, kubernetes.io/metadata.name: y}",
            ),
            "kubernetes.io/metadata.name: y",
            "namespaces[0].labels[\"kubernetes.io/metadata.name\"]",
            "Kubernetes sets this label to the namespace's name: write \"x\"",
        );
        // A spec built in code gets the label from NamespaceSpec::new, or from plan().
        let ns = NamespaceSpec::new("q", Labels::new());
        assert_eq!(
            ns.labels.get(NAMESPACE_NAME_LABEL).map(String::as_str),
            Some("q")
        );
    }

    #[test]
    fn refuses_malformed_yaml() {
        let yaml = with("  - name: y\n", "  - name: y\n   bad: [\n");
        let message = assert_refused(&yaml, "bad: [", "", "invalid YAML");
        assert!(!message.contains('\n'), "{message}");
        let error = LabSpec::parse("   \n", "lab.yaml").unwrap_err();
        assert_eq!(
            error.to_string(),
            "lab.yaml: the file is empty: a lab declares `namespaces:` and `pods:`, and \
             optionally `traffic:`"
        );
        assert_refused("- a\n", "- a", "", "expected a mapping");
        assert_refused(
            &with("labels: {ns: x}", "labels: [ns]"),
            "labels: [ns]",
            "namespaces[0].labels",
            "expected a mapping",
        );
        assert_refused(
            &with(
                "    ports:\n      - {port: 81, protocol: TCP}",
                "    ports: {port: 81, protocol: TCP}",
            ),
            "ports: {port: 81, protocol: TCP}",
            "pods[1].ports",
            "expected a list of `- ` items, found a mapping",
        );
        // A mapping entry followed by list items is not YAML: the file is refused where the
        // YAML breaks, at the first `- ` item.
        assert_refused(
            &with(
                "    ports:\n      - {port: 80",
                "    ports:\n      x: {port: 80",
            ),
            "- {port: 53",
            "",
            "invalid YAML",
        );
    }

    #[test]
    fn scalars_are_read_as_written() {
        // Quoted or not, a port is its number; a label value is its text as written.
        let yaml = with("{port: 81, protocol: TCP}", "{port: \"81\", protocol: TCP}")
            .replacen(
                "labels: {pod: b}",
                "labels: {pod: b, version: 1.10, on: yes}",
                1,
            )
            .replacen("count: 3}", "count: \"3\"}", 1);
        let spec = LabSpec::parse(&yaml, "lab.yaml").unwrap();
        assert_eq!(spec.pods[1].ports[0].port, 81);
        assert_eq!(
            spec.pods[1].labels,
            Labels::from([
                ("pod".into(), "b".into()),
                ("version".into(), "1.10".into()),
                ("on".into(), "yes".into()),
            ])
        );
        assert_eq!(spec.traffic[3].count, Some(3));
        assert_refused(
            &with("{port: 81, protocol: TCP}", "{port: 0x51, protocol: TCP}"),
            "port: 0x51",
            "pods[1].ports[0].port",
            "\"0x51\" is not a port number, 1 to 65535",
        );
        assert_refused(
            &with("labels: {pod: b}", "labels: {pod: }"),
            "labels: {pod: }",
            "pods[1].labels[\"pod\"]",
            "has no value; write one",
        );
        assert_refused(
            &with(
                "{port: 81, protocol: TCP}",
                "{port: 81, protocol: TCP, 8: x}",
            ),
            "8: x",
            "pods[1].ports[0]",
            "unknown key \"8\"; accepted keys: port, protocol, name, app",
        );
        // An optional list written with nothing after it is refused, not read as empty.
        assert_refused_at(
            &with(
                "    ports:\n      - {port: 81, protocol: TCP}\n",
                "    ports:\n",
            ),
            line_of(BASE, "ip: 198.18.1.1") + 1,
            "pods[1].ports",
            "expected a list of `- ` items, found nothing (null)",
        );
        // One document only: refused where the second starts.
        assert_refused_at(
            &format!("{BASE}---\n{BASE}"),
            line_of(BASE, "count: 3") + 2,
            "",
            "only single YAML document expected",
        );
    }

    #[test]
    fn refuses_missing_fields() {
        assert_refused(
            &with("{port: 81, protocol: TCP}", "{port: 81}"),
            "{port: 81}",
            "pods[1].ports[0].protocol",
            "required, but missing",
        );
        // Reported at the item, where the mapping starts, not at its last key.
        assert_refused(
            &with("  - name: b\n    namespace: y\n", "  - name: b\n"),
            "name: b",
            "pods[1].namespace",
            "required, but missing",
        );
        assert_refused(
            &with(
                "  - name: y\n    labels: {ns: y}\n",
                "  - labels: {ns: y}\n",
            ),
            "labels: {ns: y}",
            "namespaces[1].name",
            "required, but missing",
        );
        assert_refused(
            &with(", every: 2s, count: 3}", ", count: 3}"),
            "count: 3",
            "traffic[3].every",
            "required, but missing",
        );
        let error = LabSpec::parse("namespaces: []\n", "lab.yaml").unwrap_err();
        assert_eq!(error.field, "pods");
        assert_eq!(error.line, Some(1));
    }

    #[test]
    fn refuses_unknown_keys_naming_the_accepted_ones() {
        assert_refused(
            &with("{port: 81, protocol: TCP}", "{port: 81, protocl: TCP}"),
            "protocl",
            "pods[1].ports[0]",
            "unknown key \"protocl\"; accepted keys: port, protocol, name, app",
        );
        assert_refused(
            &format!("{BASE}policies: []\n"),
            "policies",
            "",
            "unknown key \"policies\"; accepted keys: namespaces, pods, traffic",
        );
        assert_refused(
            &with("    ip: 198.18.1.1\n", "    ip: 198.18.1.1\n    value: 3\n"),
            "value: 3",
            "pods[1]",
            "unknown key \"value\"",
        );
        assert_refused(
            &with("every: 2s, count: 3}", "every: 2s, count: 3, rate: 5}"),
            "rate: 5",
            "traffic[3]",
            "accepted keys: from, to, port, protocol, every, count, method, path, query",
        );
    }

    #[test]
    fn refuses_duplicate_yaml_keys() {
        assert_refused(
            &with(
                "    ip: 198.18.1.1\n",
                "    ip: 198.18.1.1\n    ip: 198.18.1.2\n",
            ),
            "ip: 198.18.1.2",
            "pods[1]",
            "key \"ip\" is written twice",
        );
        assert_refused(
            &with("labels: {pod: b}", "labels: {pod: b, pod: c}"),
            "pod: c",
            "pods[1].labels",
            "key \"pod\" is written twice",
        );
    }

    #[test]
    fn refuses_bad_names() {
        assert_refused(
            &with("  - name: a\n", "  - name: \"\"\n"),
            "name: \"\"",
            "pods[0].name",
            "\"\" is not a DNS-1123 label: it is empty; at most 63 lowercase letters",
        );
        assert_refused(
            &with("  - name: a\n", "  - name: A\n"),
            "name: A",
            "pods[0].name",
            "\"A\" is not a DNS-1123 label: 'A' is not allowed; at most 63 lowercase letters, \
             digits and '-'",
        );
        assert_refused(
            &with("  - name: x\n", "  - name: -x\n"),
            "name: -x",
            "namespaces[0].name",
            "\"-x\" is not a DNS-1123 label: it must start and end with a letter or digit",
        );
        let long = "n".repeat(64);
        let yaml = with("  - name: y\n", &format!("  - name: {long}\n"));
        assert_refused(
            &yaml,
            &long,
            "namespaces[1].name",
            "is not a DNS-1123 label: it is 64 characters long; at most 63",
        );
        // 63 is the limit, not 62.
        let yaml = format!("namespaces:\n  - name: {}\npods: []\n", "n".repeat(63));
        LabSpec::parse(&yaml, "lab.yaml").unwrap();
        // A name that is not a string in YAML is still read as its text, then judged.
        assert_refused(
            &with("  - name: a\n", "  - name: [a]\n"),
            "name: [a]",
            "pods[0].name",
            "expected a single value such as text or a number, found a list",
        );
        assert_refused_at(
            &with("  - name: a\n", "  - name:\n"),
            line_of(BASE, "  - name: a"),
            "pods[0].name",
            "has no value",
        );
    }

    #[test]
    fn refuses_pods_in_undeclared_namespaces() {
        assert_refused(
            &with("    namespace: y\n", "    namespace: w\n"),
            "namespace: w",
            "pods[1].namespace",
            "namespace \"w\" is not declared under `namespaces:` (declared: x, y)",
        );
    }

    #[test]
    fn refuses_duplicates() {
        assert_refused_at(
            &with("  - name: y\n", "  - name: x\n"),
            line_of(BASE, "  - name: y"),
            "namespaces[1].name",
            "namespace \"x\" is declared twice; first as namespaces[0] (line 2)",
        );
        assert_refused_at(
            &with(
                "  - name: b\n    namespace: y\n",
                "  - name: a\n    namespace: x\n",
            ),
            line_of(BASE, "  - name: b"),
            "pods[1].name",
            "pod x/a is declared twice; first as pods[0] (line 7)",
        );
        // The same name in another namespace is another pod.
        let yaml = with(
            "  - name: b\n    namespace: y\n",
            "  - name: a\n    namespace: y\n",
        )
        .replace("y/b", "y/a");
        LabSpec::parse(&yaml, "lab.yaml").unwrap();
        assert_refused_at(
            &with("{port: 81, protocol: UDP}", "{port: 80, protocol: TCP}"),
            line_of(BASE, "{port: 81, protocol: UDP}"),
            "pods[0].ports[2].port",
            "80/TCP is declared twice in this pod; first as pods[0].ports[0] (line 11)",
        );
        // Same number, other protocol: a different port.
        LabSpec::parse(
            &with(
                "{port: 81, protocol: UDP}",
                "{port: 81, protocol: UDP}\n      - {port: 80, protocol: UDP}",
            ),
            "lab.yaml",
        )
        .unwrap();
        assert_refused(
            &with(
                "{port: 81, protocol: UDP}",
                "{port: 81, protocol: UDP, name: serve-80-tcp}",
            ),
            "{port: 81, protocol: UDP, name: serve-80-tcp}",
            "pods[0].ports[2].name",
            "port name \"serve-80-tcp\" is used twice in this pod",
        );
    }

    #[test]
    fn refuses_bad_ports_protocols_and_apps() {
        assert_refused(
            &with("{port: 81, protocol: TCP}", "{port: 0, protocol: TCP}"),
            "port: 0",
            "pods[1].ports[0].port",
            "0 is not a port number, 1 to 65535",
        );
        assert_refused(
            &with("{port: 81, protocol: TCP}", "{port: 70000, protocol: TCP}"),
            "port: 70000",
            "pods[1].ports[0].port",
            "\"70000\" is not a port number, 1 to 65535",
        );
        assert_refused(
            &with("{port: 81, protocol: TCP}", "{port: http, protocol: TCP}"),
            "port: http",
            "pods[1].ports[0].port",
            "\"http\" is not a port number",
        );
        assert_refused(
            &with("{port: 81, protocol: TCP}", "{port: 81, protocol: SCTP}"),
            "SCTP",
            "pods[1].ports[0].protocol",
            "\"SCTP\" is not TCP or UDP",
        );
        assert_refused(
            &with("{port: 81, protocol: TCP}", "{port: 81, protocol: tcp}"),
            "protocol: tcp",
            "pods[1].ports[0].protocol",
            "protocols are written in capitals, as in Kubernetes",
        );
        assert_refused(
            &with(
                "{port: 81, protocol: UDP}",
                "{port: 81, protocol: UDP, app: http}",
            ),
            "{port: 81, protocol: UDP, app: http}",
            "pods[0].ports[2].app",
            "app: http needs protocol TCP, not UDP",
        );
        assert_refused(
            &with(
                "{port: 81, protocol: TCP}",
                "{port: 81, protocol: TCP, app: dns}",
            ),
            "protocol: TCP, app: dns}",
            "pods[1].ports[0].app",
            "app: dns needs protocol UDP, not TCP",
        );
        assert_refused(
            &with(
                "{port: 81, protocol: TCP}",
                "{port: 81, protocol: TCP, app: thrift}",
            ),
            "app: thrift",
            "pods[1].ports[0].app",
            "\"thrift\" is not http, grpc or dns",
        );
        assert_refused(
            &with(
                "{port: 81, protocol: UDP}",
                "{port: 81, protocol: UDP, app: grpc}",
            ),
            "{port: 81, protocol: UDP, app: grpc}",
            "pods[0].ports[2].app",
            "app: grpc needs protocol TCP, not UDP (gRPC runs over HTTP/2, on TCP)",
        );
        assert_refused(
            &with(
                "{port: 81, protocol: TCP}",
                "{port: 81, protocol: TCP, name: Serve}",
            ),
            "name: Serve",
            "pods[1].ports[0].name",
            "\"Serve\" is not a valid port name: 'S' is not allowed; at most 15",
        );
    }

    #[test]
    fn error_points_at_the_column_of_the_value() {
        let yaml = with("{port: 81, protocol: TCP}", "{port: 81, protocol: SCTP}");
        let error = LabSpec::parse(&yaml, "lab.yaml").unwrap_err();
        let line = yaml.lines().find(|line| line.contains("SCTP")).unwrap();
        let column = u64::try_from(line.find("SCTP").unwrap()).unwrap() + 1;
        assert_eq!(error.column, Some(column));
        assert!(error.to_string().starts_with(&format!(
            "lab.yaml:{}:{column}: pods[1].ports[0].protocol: ",
            line_of(&yaml, "SCTP")
        )));
    }

    #[test]
    fn refuses_bad_addresses() {
        assert_refused(
            &with("ip: 198.18.1.1", "ip: 10.0.0.1"),
            "ip: 10.0.0.1",
            "pods[1].ip",
            "10.0.0.1 is outside the lab network 198.18.0.0/15",
        );
        assert_refused(
            &with("ip: 198.18.1.1", "ip: 198.20.0.1"),
            "ip: 198.20.0.1",
            "pods[1].ip",
            "outside the lab network",
        );
        assert_refused(
            &with("ip: 198.18.1.1", "ip: 198.18.0.7"),
            "ip: 198.18.0.7",
            "pods[1].ip",
            "198.18.0.7 is in 198.18.0.0/24, which the lab keeps for itself",
        );
        assert_refused(
            &with("ip: 198.18.1.1", "ip: 198.19.4.255"),
            "ip: 198.19.4.255",
            "pods[1].ip",
            "ends in .0 or .255",
        );
        assert_refused(
            &with("ip: 198.18.1.1", "ip: 198.18.2.0"),
            "ip: 198.18.2.0",
            "pods[1].ip",
            "ends in .0 or .255",
        );
        assert_refused(
            &with("ip: 198.18.1.1", "ip: 198.18.1.300"),
            "ip: 198.18.1.300",
            "pods[1].ip",
            "\"198.18.1.300\" is not an IPv4 address",
        );
        // The second declaration is refused: b's, one line lower than in BASE.
        assert_refused_at(
            &with(
                "    labels: {pod: a}\n",
                "    labels: {pod: a}\n    ip: 198.18.1.1\n",
            ),
            line_of(BASE, "ip: 198.18.1.1") + 1,
            "pods[1].ip",
            "198.18.1.1 is already the address of x/a, pods[0] (line 7)",
        );
        // The edges of the range are fine.
        for ip in ["198.18.1.1", "198.19.255.254"] {
            let yaml = with("ip: 198.18.1.1", &format!("ip: {ip}"));
            LabSpec::parse(&yaml, "lab.yaml").unwrap();
        }
    }

    #[test]
    fn refuses_bad_traffic() {
        assert_refused(
            &with("{from: x/a, to: y/b,", "{from: x/a, to: y/q,"),
            "to: y/q",
            "traffic[0].to",
            "no pod y/q is declared (pods: x/a, y/b)",
        );
        assert_refused(
            &with("{from: x/a, to: y/b,", "{from: z/a, to: y/b,"),
            "from: z/a",
            "traffic[0].from",
            "no pod z/a is declared",
        );
        assert_refused(
            &with("{from: x/a, to: y/b,", "{from: a, to: y/b,"),
            "from: a,",
            "traffic[0].from",
            "\"a\" is not namespace/pod, e.g. default/frontend",
        );
        assert_refused(
            &with("{from: x/a, to: y/b,", "{from: x/a, to: x/a,"),
            "to: x/a,",
            "traffic[0].to",
            "traffic from a pod to itself",
        );
        assert_refused(
            &with(
                "to: y/b, port: 81, protocol: TCP",
                "to: y/b, port: 81, protocol: UDP",
            ),
            "to: y/b, port: 81, protocol: UDP",
            "traffic[0].port",
            "y/b does not serve 81/UDP: it serves 81/TCP",
        );
        assert_refused(
            &with(
                "to: y/b, port: 81, protocol: TCP",
                "to: y/b, port: 82, protocol: TCP",
            ),
            "port: 82",
            "traffic[0].port",
            "y/b does not serve 82/TCP",
        );
        assert_refused(
            &with("protocol: TCP, every: 1s}", "protocol: TCP, every: soon}"),
            "every: soon",
            "traffic[0].every",
            "\"soon\" is not a duration: a number and a unit (ms, s, m, h)",
        );
        assert_refused(
            &with("protocol: TCP, every: 1s}", "protocol: TCP, every: 5}"),
            "every: 5",
            "traffic[0].every",
            "\"5\" is not a duration",
        );
        assert_refused(
            &with("protocol: TCP, every: 1s}", "protocol: TCP, every: 99ms}"),
            "every: 99ms",
            "traffic[0].every",
            "99ms is too often: the shortest interval is 100ms",
        );
        LabSpec::parse(
            &with("protocol: TCP, every: 1s}", "protocol: TCP, every: 100ms}"),
            "lab.yaml",
        )
        .unwrap();
        assert_refused(
            &with("count: 3}", "count: 0}"),
            "count: 0",
            "traffic[3].count",
            "0 requests would send nothing",
        );
        assert_refused(
            &with("count: 3}", "count: many}"),
            "count: many",
            "traffic[3].count",
            "\"many\" is not a number of requests",
        );
    }

    #[test]
    fn refuses_request_keys_on_the_wrong_port() {
        assert_refused(
            &with(
                "protocol: TCP, every: 1s}",
                "protocol: TCP, every: 1s, method: GET}",
            ),
            "method: GET",
            "traffic[0].method",
            "method applies only to ports with app: http, and y/b's 81/TCP has no app",
        );
        assert_refused(
            &with("every: 500ms, query:", "every: 500ms, path: /x, query:"),
            "path: /x",
            "traffic[2].path",
            "path applies only to ports with app: http or grpc, and x/a's 53/UDP has app: dns",
        );
        assert_refused(
            &with(
                "method: POST, path: /api}",
                "method: POST, path: /api, query: a.b}",
            ),
            "query: a.b",
            "traffic[1].query",
            "query applies only to ports with app: dns",
        );
        assert_refused(
            &with("method: POST", "method: post"),
            "method: post",
            "traffic[1].method",
            "\"post\" is not GET, HEAD, POST, PUT, DELETE, PATCH or OPTIONS",
        );
        assert_refused(
            &with("path: /api}", "path: api}"),
            "path: api",
            "traffic[1].path",
            "\"api\" is not an absolute path",
        );
        assert_refused(
            &with(
                "query: my-api.default.svc.cluster.local",
                "query: my-api..local",
            ),
            "my-api..local",
            "traffic[2].query",
            "\"my-api..local\" is not a DNS name",
        );
    }

    /// BASE with y/b serving gRPC on 81/TCP, and the first traffic entry calling it.
    fn with_grpc(entry: &str) -> String {
        with(
            "{port: 81, protocol: TCP}",
            "{port: 81, protocol: TCP, app: grpc}",
        )
        .replacen(
            "{from: x/a, to: y/b, port: 81, protocol: TCP, every: 1s}",
            entry,
            1,
        )
    }

    #[test]
    fn grpc_ports_and_calls() {
        let yaml = with_grpc(
            "{from: x/a, to: y/b, port: 81, protocol: TCP, every: 1s, path: /shop.v1.Cart/Add}",
        );
        let plan = LabSpec::parse(&yaml, "lab.yaml").unwrap().plan().unwrap();
        assert_eq!(plan.pods[1].ports[0].app, Some(App::Grpc));
        assert_eq!(
            plan.traffic[0].request,
            Request::Grpc {
                path: "/shop.v1.Cart/Add".to_owned()
            }
        );
        let yaml = with_grpc("{from: x/a, to: y/b, port: 81, protocol: TCP, every: 1s}");
        let plan = LabSpec::parse(&yaml, "lab.yaml").unwrap().plan().unwrap();
        assert_eq!(
            plan.traffic[0].request,
            Request::Grpc {
                path: DEFAULT_GRPC_PATH.to_owned()
            }
        );
        assert_eq!(App::Grpc.to_string(), "grpc");

        for bad in [
            "/api/items?limit=10",
            "/Cart/",
            "//Add",
            "/.Cart/Add",
            "/a..b/Add",
            "/a.b/Ad.d",
            "/a/b/c",
        ] {
            assert_refused(
                &with_grpc(&format!(
                    "{{from: x/a, to: y/b, port: 81, protocol: TCP, every: 1s, path: {bad}}}"
                )),
                "every: 1s, path:",
                "traffic[0].path",
                &format!("{bad:?} is not a gRPC method path: /, the service"),
            );
        }
        assert_refused(
            &with_grpc("{from: x/a, to: y/b, port: 81, protocol: TCP, every: 1s, method: POST}"),
            "every: 1s, method: POST}",
            "traffic[0].method",
            "method applies only to ports with app: http, and y/b's 81/TCP has app: grpc",
        );
        assert_refused(
            &with_grpc("{from: x/a, to: y/b, port: 81, protocol: TCP, every: 1s, query: a.b}"),
            "every: 1s, query: a.b}",
            "traffic[0].query",
            "query applies only to ports with app: dns, and y/b's 81/TCP has app: grpc",
        );
    }

    #[test]
    fn refuses_bad_labels() {
        assert_refused(
            &with("labels: {pod: b}", "labels: {pod: b, \"bad key\": x}"),
            "bad key",
            "pods[1].labels[\"bad key\"]",
            "\"bad key\" is not a valid label key",
        );
        assert_refused(
            &with("labels: {pod: b}", "labels: {pod: -b}"),
            "pod: -b",
            "pods[1].labels[\"pod\"]",
            "\"-b\" is not a valid label value",
        );
        let yaml = with(
            "labels: {pod: b}",
            "labels: {app.kubernetes.io/name: b, tier: \"\", a_b.c: v}",
        );
        LabSpec::parse(&yaml, "lab.yaml").unwrap();
        // A label called "value" is a real key, not the span wrapper's.
        let yaml = with("labels: {pod: b}", "labels: {value: [1]}");
        let error = LabSpec::parse(&yaml, "lab.yaml").unwrap_err();
        assert_eq!(error.field, "pods[1].labels[\"value\"]", "{error}");
    }

    #[test]
    fn allocation_is_deterministic_and_skips_declared_and_edge_addresses() {
        // 300 pods cross from 198.18.1.x into 198.18.2.x; two declare addresses that the
        // allocator would otherwise hand out, one of them to a pod listed later.
        let mut yaml = String::from("namespaces:\n  - name: n\npods:\n");
        for i in 0..300 {
            yaml.push_str(&format!("  - name: p{i}\n    namespace: n\n"));
            if i == 0 {
                yaml.push_str("    ip: 198.18.1.3\n");
            }
            if i == 299 {
                yaml.push_str("    ip: 198.18.1.2\n");
            }
        }
        let plan = LabSpec::parse(&yaml, "lab.yaml").unwrap().plan().unwrap();
        let again = LabSpec::parse(&yaml, "lab.yaml").unwrap().plan().unwrap();
        assert_eq!(plan, again);
        let ip = |i: usize| plan.pods[i].ip;
        assert_eq!(ip(0), Ipv4Addr::new(198, 18, 1, 3));
        assert_eq!(ip(1), Ipv4Addr::new(198, 18, 1, 1));
        // .2 and .3 are declared, so pod 2 gets .4.
        assert_eq!(ip(2), Ipv4Addr::new(198, 18, 1, 4));
        assert_eq!(ip(299), Ipv4Addr::new(198, 18, 1, 2));
        // Pods 1..=252 take .1, .4 to .254; then .255 and .0 are skipped.
        assert_eq!(ip(252), Ipv4Addr::new(198, 18, 1, 254));
        assert_eq!(ip(253), Ipv4Addr::new(198, 18, 2, 1));
        let unique: HashSet<Ipv4Addr> = plan.pods.iter().map(|pod| pod.ip).collect();
        assert_eq!(unique.len(), 300);
        assert!(plan.pods.iter().all(|pod| is_pod_address(pod.ip)));
    }

    #[test]
    fn allocation_runs_out_cleanly() {
        let pod = |name: &str, ip: Option<Ipv4Addr>| PodSpec {
            name: name.into(),
            namespace: "n".into(),
            labels: Labels::new(),
            ip,
            ports: Vec::new(),
        };
        let first = Ipv4Addr::new(198, 18, 1, 253);
        let last = Ipv4Addr::new(198, 18, 2, 2);
        // .253, .254, 2.1, 2.2 are free, but 2.1 is declared: room for three unaddressed pods.
        let pods = [
            pod("a", None),
            pod("b", Some(Ipv4Addr::new(198, 18, 2, 1))),
            pod("c", None),
            pod("d", None),
        ];
        assert_eq!(
            allocate(&pods, first, last),
            Ok(vec![
                Ipv4Addr::new(198, 18, 1, 253),
                Ipv4Addr::new(198, 18, 2, 1),
                Ipv4Addr::new(198, 18, 1, 254),
                Ipv4Addr::new(198, 18, 2, 2),
            ])
        );
        let mut more = pods.to_vec();
        more.push(pod("e", None));
        assert_eq!(allocate(&more, first, last), Err(4));
        // The whole range holds exactly the advertised capacity.
        let total = (u32::from(FIRST_POD_ADDRESS)..=u32::from(LAST_POD_ADDRESS))
            .filter(|&n| is_pod_address(Ipv4Addr::from(n)))
            .count();
        assert_eq!(total, POD_ADDRESS_CAPACITY);
    }

    #[test]
    fn plan_checks_specs_built_in_code() {
        let pod = |name: &str| PodSpec {
            name: name.into(),
            namespace: "n".into(),
            labels: Labels::new(),
            ip: Some(Ipv4Addr::new(198, 18, 7, 7)),
            ports: Vec::new(),
        };
        let spec = LabSpec {
            namespaces: vec![NamespaceSpec {
                name: "n".into(),
                labels: Labels::new(),
            }],
            pods: vec![pod("a"), pod("b")],
            traffic: Vec::new(),
        };
        let error = spec.plan().unwrap_err();
        assert_eq!(
            error.to_string(),
            "pods[1].ip: 198.18.7.7 is already the address of n/a, pods[0]"
        );
        let mut spec = spec;
        spec.pods[1].ip = None;
        let plan = spec.plan().unwrap();
        // The implicit namespace label is added for specs that lack it.
        assert_eq!(
            plan.pods[0]
                .namespace_labels
                .get(NAMESPACE_NAME_LABEL)
                .map(String::as_str),
            Some("n")
        );
        assert_eq!(plan.pods[1].ip, Ipv4Addr::new(198, 18, 1, 1));
    }

    #[test]
    fn messages_stay_on_one_line() {
        let yaml = with("  - name: a\n", "  - name: \"a\\nb\"\n");
        let error = LabSpec::parse(&yaml, "lab.yaml").unwrap_err();
        assert!(!error.to_string().contains('\n'), "{error}");
        assert!(error.to_string().contains("\"a\\nb\""), "{error}");
    }

    /// Every lab file in the repository (tests/labs and the built-in demo) loads and plans.
    #[test]
    fn every_lab_file_in_the_repository_loads() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/labs");
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no lab files in {dir}");
        let mut texts: Vec<(String, String)> = files
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(path).unwrap();
                (path.display().to_string(), text)
            })
            .collect();
        texts.push((DEMO_SOURCE.to_owned(), DEMO_YAML.to_owned()));
        for (name, text) in texts {
            let spec = LabSpec::parse(&text, &name).unwrap_or_else(|error| panic!("{error}"));
            let plan = spec.plan().unwrap_or_else(|error| panic!("{error}"));
            assert_eq!(plan.pods.len(), spec.pods.len(), "{name}");
            if std::env::var_os("LAB_PLAN_DUMP").is_some() {
                eprintln!("PLAN {name} {spec:?} {plan:?}");
            }
        }
    }
}
