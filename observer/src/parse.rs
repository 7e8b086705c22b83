//! Turns raw datapath events into flows with Hubble's nouns: addresses and ports, TCP flags,
//! verdict and drop reason, direction and reply, the interface and the node, who the endpoints
//! are, and a one-line summary.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use flowscope_common::{FAMILY_IPV4, FlowEvent, direction, hook, kind, proxy, tcp, verdict};
use flowscope_model::{
    Timestamp,
    flow::{
        CiliumEventType, DropReason, Endpoint, Ethernet, Flow, FlowType, Icmp, Ip, IpVersion,
        L7FlowType, L7Record, Layer4, Layer7, NetworkInterface, Sctp, Service, Tcp, TcpFlags,
        TraceObservationPoint, TrafficDirection, Udp, Verdict,
    },
};

use crate::{
    clock::BootClock,
    dns::{self, DnsMessage, FqdnCache, Pending},
    endpoints::{NodeRole, Registry},
    http::{self, HttpMessage},
    policy::{Attribution, Attributions},
};

/// Cilium's reserved identities, used until an endpoint registry knows better.
pub const IDENTITY_HOST: u32 = 1;
pub const IDENTITY_WORLD: u32 = 2;
/// Cilium's `reserved:remote-node`: another node of the cluster.
pub const IDENTITY_REMOTE_NODE: u32 = 6;

// Cilium monitor event types and trace sub-types (pkg/monitor/api/types.go), carried in
// `event_type` so Hubble's `--type` filters work.
const EVENT_DROP: i32 = 1;
const EVENT_TRACE: i32 = 4;
const EVENT_POLICY_VERDICT: i32 = 5;
const EVENT_L7: i32 = 129;
const TRACE_TO_ENDPOINT: i32 = 0;
const TRACE_TO_PROXY: i32 = 1;
const TRACE_FROM_ENDPOINT: i32 = 5;
const TRACE_FROM_PROXY: i32 = 6;
const TRACE_FROM_NETWORK: i32 = 10;
const TRACE_TO_NETWORK: i32 = 11;

/// What the observer knows about an attached interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceInfo {
    pub name: String,
    /// The far end is a workload (a pod veth): tc ingress is the workload's egress.
    pub endpoint: bool,
}

/// Context shared by every flow of this observer.
#[derive(Debug)]
pub struct NodeContext {
    pub node_name: Arc<str>,
    uuid_prefix: u64,
}

/// A flow as the store keeps it: the datapath event plus what was known when it arrived (wall
/// time, interface, endpoints), about 200 bytes. The full [`Flow`] (over a kilobyte with its
/// strings) is built from it on demand by [`FlowRecord::to_flow`], which is pure: the same
/// record always gives the same flow.
#[derive(Clone, Debug)]
pub struct FlowRecord {
    pub time_ns: i64,
    pub seq: u64,
    pub ev: FlowEvent,
    pub iface: Option<Arc<InterfaceInfo>>,
    pub src: Arc<Endpoint>,
    pub dst: Arc<Endpoint>,
    pub node: Arc<NodeContext>,
    /// The policies that decided the connection, when the event names a policy entry.
    pub attribution: Option<Arc<Attribution>>,
    /// The DNS message of an L7 DNS flow (a `kind::DNS` event).
    pub dns: Option<Arc<DnsMessage>>,
    /// The HTTP head of an L7 HTTP flow (a `kind::HTTP` event).
    pub http: Option<Arc<HttpMessage>>,
    /// Names the destination pod resolved the source address to, and the source pod the
    /// destination address (Hubble's `source_names`, `destination_names`).
    pub source_names: Option<Arc<Vec<String>>>,
    pub destination_names: Option<Arc<Vec<String>>>,
    /// The services the source and destination address and port belong to.
    pub source_service: Option<Arc<Service>>,
    pub destination_service: Option<Arc<Service>>,
}

/// Turns datapath events into records: node, clock, interfaces and endpoints.
pub struct Decoder {
    node: Arc<NodeContext>,
    clock: BootClock,
    interfaces: HashMap<u32, Arc<InterfaceInfo>>,
    host_addrs: Vec<IpAddr>,
    registry: Arc<Registry>,
    attributions: Arc<Attributions>,
    host: Arc<Endpoint>,
    world: Arc<Endpoint>,
    remote_node: Arc<Endpoint>,
    seq: u64,
    pending_dns: Pending,
    pending_http: http::Pending,
    fqdn: FqdnCache,
}

impl Decoder {
    pub fn new(node_name: &str) -> Self {
        let reserved = |identity, label: &str| {
            Arc::new(Endpoint {
                identity,
                labels: vec![label.to_string()],
                ..Endpoint::default()
            })
        };
        Decoder {
            node: Arc::new(NodeContext {
                node_name: node_name.into(),
                uuid_prefix: random_u64(),
            }),
            clock: BootClock::new(),
            interfaces: HashMap::new(),
            host_addrs: Vec::new(),
            registry: Arc::default(),
            attributions: Arc::default(),
            host: reserved(IDENTITY_HOST, "reserved:host"),
            world: reserved(IDENTITY_WORLD, "reserved:world"),
            remote_node: reserved(IDENTITY_REMOTE_NODE, "reserved:remote-node"),
            seq: 0,
            pending_dns: Pending::default(),
            pending_http: http::Pending::default(),
            fqdn: FqdnCache::default(),
        }
    }

    pub fn node_name(&self) -> &Arc<str> {
        &self.node.node_name
    }

    pub fn set_interfaces(&mut self, interfaces: HashMap<u32, InterfaceInfo>) {
        self.interfaces = interfaces
            .into_iter()
            .map(|(k, v)| (k, Arc::new(v)))
            .collect();
    }

    pub fn set_host_addrs(&mut self, addrs: Vec<IpAddr>) {
        self.host_addrs = addrs;
    }

    pub fn set_registry(&mut self, registry: Arc<Registry>) {
        self.registry = registry;
    }

    /// The endpoints the decoder resolves addresses with.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn set_attributions(&mut self, attributions: Arc<Attributions>) {
        self.attributions = attributions;
    }

    /// Re-reads the wall clock offset: call about once a second so NTP steps are followed.
    pub fn resync_clock(&mut self) {
        self.clock = BootClock::new();
    }

    pub fn wall_time(&self, boot_ns: u64) -> Timestamp {
        Timestamp::from_unix_nanos(self.clock.to_unix_nanos(boot_ns))
    }

    /// Per event: a few pointer copies and lookups, no allocation beyond the record itself.
    pub fn record(&mut self, ev: &FlowEvent) -> FlowRecord {
        let (src, dst) = addrs(ev);
        self.seq += 1;
        let time_ns = self.clock.to_unix_nanos(ev.ts_ns);
        // Two lookups per flow, only once some pod's lookups were seen (DNS visibility).
        let (source_names, destination_names) = if self.fqdn.is_empty() {
            (None, None)
        } else {
            (
                self.fqdn.get(dst, src, time_ns),
                self.fqdn.get(src, dst, time_ns),
            )
        };
        FlowRecord {
            time_ns,
            seq: self.seq,
            ev: *ev,
            iface: self.interfaces.get(&ev.ifindex).cloned(),
            src: self.endpoint(src),
            dst: self.endpoint(dst),
            node: self.node.clone(),
            attribution: ev
                .policy_ref
                .checked_sub(1)
                .and_then(|r| self.attributions.get(&r).cloned()),
            dns: None,
            http: None,
            source_names,
            destination_names,
            source_service: self.registry.service(&(src, ev.sport, ev.proto)).cloned(),
            destination_service: self.registry.service(&(dst, ev.dport, ev.proto)).cloned(),
        }
    }

    /// An L7 DNS flow from a `kind::DNS` event and its message, or None when the payload is
    /// not a DNS message. A response gets the latency since its query at the same point.
    ///
    /// Like Cilium's DNS proxy, which sits on a pod's egress, a lookup is reported once, where
    /// the client pod is: its query leaving the pod (tc ingress of its veth) and the response
    /// entering it (tc egress). The same messages passing the server pod's veth, or an
    /// interface that is no pod's, are not reported again.
    pub fn dns_record(&mut self, ev: &FlowEvent, payload: &[u8]) -> Option<FlowRecord> {
        let client_side = self.interfaces.get(&ev.ifindex).is_some_and(|i| i.endpoint);
        if !client_side {
            return None;
        }
        let mut message = dns::parse(payload)?;
        let at_client = if message.response {
            ev.hook == hook::EGRESS && ev.sport == 53
        } else {
            ev.hook == hook::INGRESS && ev.dport == 53
        };
        if !at_client {
            return None;
        }
        let mut record = self.record(ev);
        // The lookup's connection starts at the client pod's egress, whichever message this is
        // (Hubble's DNS flows are EGRESS both ways).
        record.ev.origin_hook = hook::INGRESS;
        let (saddr, daddr, sport, dport) = (ev.saddr, ev.daddr, ev.sport, ev.dport);
        if message.response {
            let key = (ev.ifindex, daddr, dport, message.id);
            message.latency_ns = self.pending_dns.response(&key, record.time_ns);
            let client = addrs(ev).1;
            for ip in &message.dns.ips {
                if let Ok(ip) = ip.parse() {
                    let (name, ttl) = (&message.dns.query, message.dns.ttl);
                    self.fqdn.learn(client, ip, name, ttl, record.time_ns);
                }
            }
        } else {
            self.pending_dns
                .query((ev.ifindex, saddr, sport, message.id), record.time_ns);
        }
        record.dns = Some(Arc::new(message));
        Some(record)
    }

    /// An L7 HTTP flow from a `kind::HTTP` event and the start of its head, or None when it is
    /// not an HTTP/1.x head. Like the proxy of an ingress visibility rule, an exchange is
    /// reported once, at the server pod's interface (reporter `server`): the request entering
    /// the pod (tc egress of its veth), the response leaving it (tc ingress). A response gets
    /// its request's method, URL and latency.
    pub fn http_record(&mut self, ev: &FlowEvent, payload: &[u8]) -> Option<FlowRecord> {
        let server_side = self.interfaces.get(&ev.ifindex).is_some_and(|i| i.endpoint);
        if !server_side {
            return None;
        }
        let mut message = http::parse(payload)?;
        let expected_hook = if message.response {
            hook::INGRESS
        } else {
            hook::EGRESS
        };
        if ev.hook != expected_hook {
            return None;
        }
        let mut record = self.record(ev);
        // The exchange's connection comes into the server pod: INGRESS both ways.
        record.ev.origin_hook = hook::EGRESS;
        if message.response {
            let key = (ev.ifindex, ev.daddr, ev.dport);
            self.pending_http
                .response(&key, record.time_ns, &mut message);
        } else {
            let key = (ev.ifindex, ev.saddr, ev.sport);
            self.pending_http
                .request(key, record.time_ns, &message.http);
        }
        record.http = Some(Arc::new(message));
        Some(record)
    }

    /// The policy-verdict event of a decoded NEW or DROP record: the same packet, endpoints
    /// and attribution (nothing looked up again), its own sequence number.
    pub fn policy_verdict(&mut self, of: &FlowRecord) -> FlowRecord {
        self.seq += 1;
        let mut verdict = of.clone();
        verdict.seq = self.seq;
        verdict.ev.kind = kind::POLICY_VERDICT;
        verdict
    }

    fn endpoint(&self, addr: IpAddr) -> Arc<Endpoint> {
        if let Some(ep) = self.registry.get(&addr) {
            ep.clone()
        } else if self.host_addrs.contains(&addr) {
            self.host.clone()
        } else {
            match self.registry.node(&addr) {
                Some(NodeRole::Local) => self.host.clone(),
                Some(NodeRole::Remote) => self.remote_node.clone(),
                None => self.world.clone(),
            }
        }
    }
}

impl FlowRecord {
    /// The interface's far end is a workload (a pod veth).
    pub fn endpoint_side(&self) -> bool {
        self.iface.as_ref().is_some_and(|i| i.endpoint)
    }

    pub fn verdict(&self) -> Verdict {
        match self.ev.verdict {
            verdict::DROPPED => Verdict::Dropped,
            verdict::AUDIT => Verdict::Audit,
            // As Cilium's policy verdict for a connection its policy sends to the proxy.
            _ if self.is_policy_verdict() && self.to_proxy() => Verdict::Redirected,
            _ => Verdict::Forwarded,
        }
    }

    /// An L7 flow the proxy reported (a request or response it judged), not a packet.
    pub fn from_proxy(&self) -> bool {
        self.http.is_some() && self.ev.proxy != 0
    }

    /// The connection was handed to the L7 proxy here.
    pub fn to_proxy(&self) -> bool {
        matches!(self.ev.proxy, proxy::TO_INGRESS | proxy::TO_EGRESS)
    }

    /// Cilium's policy-verdict notification (derived from a NEW or DROP event).
    pub fn is_policy_verdict(&self) -> bool {
        self.ev.kind == kind::POLICY_VERDICT
    }

    /// The connection's direction as seen from the workload.
    pub fn traffic_direction(&self) -> TrafficDirection {
        match (self.endpoint_side(), self.ev.origin_hook == hook::INGRESS) {
            (true, true) | (false, false) => TrafficDirection::Egress,
            (true, false) | (false, true) => TrafficDirection::Ingress,
        }
    }

    /// Where the packet was seen, with Cilium's trace sub-type for that point.
    pub fn observation_point(&self) -> (TraceObservationPoint, i32) {
        if self.to_proxy() {
            return (TraceObservationPoint::ToProxy, TRACE_TO_PROXY);
        }
        if self.ev.proxy == proxy::FROM {
            return (TraceObservationPoint::FromProxy, TRACE_FROM_PROXY);
        }
        match (self.endpoint_side(), self.ev.hook == hook::INGRESS) {
            (true, true) => (TraceObservationPoint::FromEndpoint, TRACE_FROM_ENDPOINT),
            (true, false) => (TraceObservationPoint::ToEndpoint, TRACE_TO_ENDPOINT),
            (false, true) => (TraceObservationPoint::FromNetwork, TRACE_FROM_NETWORK),
            (false, false) => (TraceObservationPoint::ToNetwork, TRACE_TO_NETWORK),
        }
    }

    /// Hubble's `event_type`: policy verdict, drop (with its reason) or trace (with its point).
    pub fn event_type(&self) -> CiliumEventType {
        if self.l7_response().is_some() {
            CiliumEventType {
                event_type: EVENT_L7,
                sub_type: 0,
            }
        } else if self.is_policy_verdict() {
            CiliumEventType {
                event_type: EVENT_POLICY_VERDICT,
                sub_type: 0,
            }
        } else if self.ev.verdict == verdict::DROPPED {
            CiliumEventType {
                event_type: EVENT_DROP,
                sub_type: self.ev.drop_reason as i32,
            }
        } else {
            CiliumEventType {
                event_type: EVENT_TRACE,
                sub_type: self.observation_point().1,
            }
        }
    }

    /// Source and destination addresses.
    pub fn addrs(&self) -> (IpAddr, IpAddr) {
        addrs(&self.ev)
    }

    /// For an L7 flow (DNS or HTTP): whether it is a response.
    fn l7_response(&self) -> Option<bool> {
        match (&self.dns, &self.http) {
            (Some(m), _) => Some(m.response),
            (_, Some(m)) => Some(m.response),
            _ => None,
        }
    }

    /// For an L7 flow: Hubble's `Layer7` and its summary line.
    fn layer7(&self) -> Option<(Layer7, String)> {
        let (response, latency_ns, record) = match (&self.dns, &self.http) {
            (Some(m), _) => (m.response, m.latency_ns, L7Record::Dns(m.dns.clone())),
            (_, Some(m)) => (m.response, m.latency_ns, L7Record::Http(m.http.clone())),
            _ => return None,
        };
        let l7_type = if response {
            L7FlowType::Response
        } else {
            L7FlowType::Request
        };
        let l7 = Layer7 {
            l7_type,
            latency_ns,
            record: Some(record),
        };
        let summary = l7.summary();
        Some((l7, summary))
    }

    /// Hubble's `is_reply`; None when the event does not say.
    pub fn is_reply(&self) -> Option<bool> {
        if let Some(response) = self.l7_response() {
            Some(response)
        } else if self.is_policy_verdict() {
            // As Cilium's policy verdict notifications: the direction of the packet within
            // its connection is not part of the event.
            None
        } else if self.ev.verdict == verdict::DROPPED && self.ev.kind == kind::DROP {
            // A packet dropped on a connection's first packet is by definition a request.
            Some(false)
        } else {
            Some(self.ev.is_reply != 0)
        }
    }

    pub fn to_flow(&self) -> Flow {
        let ev = &self.ev;
        let (src, dst) = addrs(ev);
        let mut l4 = layer4(ev);
        if self.from_proxy()
            && let Some(Layer4::Tcp(tcp)) = &mut l4
        {
            tcp.flags = None;
        }
        let summary = summary(ev, &l4);
        let policy_verdict = self.is_policy_verdict();
        let mut flow = Flow {
            time: Some(Timestamp::from_unix_nanos(self.time_ns)),
            uuid: uuid(self.node.uuid_prefix, self.seq),
            verdict: self.verdict(),
            // An AUDIT flow keeps the reason it would have been dropped for.
            drop_reason: ev.drop_reason as u32,
            drop_reason_desc: if ev.drop_reason != 0 {
                DropReason::from_number(ev.drop_reason as i32).unwrap_or_default()
            } else {
                DropReason::default()
            },
            // The proxy's flows are not packets: no link layer, as Hubble's L7 flows.
            ethernet: (!self.from_proxy()).then(|| Ethernet {
                source: mac(&ev.smac),
                destination: mac(&ev.dmac),
            }),
            ip: Some(Ip {
                source: ip_string(src),
                destination: ip_string(dst),
                ip_version: if ev.family == FAMILY_IPV4 {
                    IpVersion::V4
                } else {
                    IpVersion::V6
                },
                ..Ip::default()
            }),
            l4,
            source: Some((*self.src).clone()),
            destination: Some((*self.dst).clone()),
            flow_type: FlowType::L3L4,
            node_name: self.node.node_name.to_string(),
            is_reply: self.is_reply(),
            event_type: Some(self.event_type()),
            traffic_direction: self.traffic_direction(),
            trace_observation_point: if policy_verdict {
                TraceObservationPoint::default()
            } else {
                self.observation_point().0
            },
            policy_match_type: if policy_verdict {
                ev.policy_match as u32
            } else {
                0
            },
            interface: self.iface.as_ref().map(|i| NetworkInterface {
                index: ev.ifindex,
                name: i.name.clone(),
            }),
            summary,
            source_names: self.source_names.as_deref().cloned().unwrap_or_default(),
            destination_names: self
                .destination_names
                .as_deref()
                .cloned()
                .unwrap_or_default(),
            source_service: self.source_service.as_deref().cloned(),
            destination_service: self.destination_service.as_deref().cloned(),
            ..attributed(self.attribution.as_deref())
        };
        if let Some((l7, summary)) = self.layer7() {
            // As Hubble's L7 flows: the record, no trace point, the proxy's summary.
            flow.flow_type = FlowType::L7;
            flow.trace_observation_point = TraceObservationPoint::default();
            flow.summary = summary;
            flow.l7 = Some(l7);
        }
        flow
    }
}

/// Hubble's `{ingress,egress}_{allowed,denied}_by` for a decided connection.
fn attributed(a: Option<&Attribution>) -> Flow {
    let mut f = Flow::default();
    if let Some(a) = a {
        let list = a.policies.clone();
        match (a.direction == direction::INGRESS, a.deny) {
            (true, false) => f.ingress_allowed_by = list,
            (true, true) => f.ingress_denied_by = list,
            (false, false) => f.egress_allowed_by = list,
            (false, true) => f.egress_denied_by = list,
        }
    }
    f
}

fn addrs(ev: &FlowEvent) -> (IpAddr, IpAddr) {
    if ev.family == FAMILY_IPV4 {
        let s: [u8; 4] = [ev.saddr[0], ev.saddr[1], ev.saddr[2], ev.saddr[3]];
        let d: [u8; 4] = [ev.daddr[0], ev.daddr[1], ev.daddr[2], ev.daddr[3]];
        (Ipv4Addr::from(s).into(), Ipv4Addr::from(d).into())
    } else {
        (
            Ipv6Addr::from(ev.saddr).into(),
            Ipv6Addr::from(ev.daddr).into(),
        )
    }
}

fn layer4(ev: &FlowEvent) -> Option<Layer4> {
    Some(match ev.proto {
        6 => Layer4::Tcp(Tcp {
            source_port: ev.sport as u32,
            destination_port: ev.dport as u32,
            flags: Some(tcp_flags(ev.tcp_flags)),
        }),
        17 => Layer4::Udp(Udp {
            source_port: ev.sport as u32,
            destination_port: ev.dport as u32,
        }),
        132 => Layer4::Sctp(Sctp {
            source_port: ev.sport as u32,
            destination_port: ev.dport as u32,
        }),
        1 => Layer4::IcmpV4(Icmp {
            icmp_type: ev.icmp_type as u32,
            code: ev.icmp_code as u32,
        }),
        58 => Layer4::IcmpV6(Icmp {
            icmp_type: ev.icmp_type as u32,
            code: ev.icmp_code as u32,
        }),
        _ => return None,
    })
}

fn tcp_flags(f: u16) -> TcpFlags {
    TcpFlags {
        FIN: f & tcp::FIN != 0,
        SYN: f & tcp::SYN != 0,
        RST: f & tcp::RST != 0,
        PSH: f & tcp::PSH != 0,
        ACK: f & tcp::ACK != 0,
        URG: f & tcp::URG != 0,
        ECE: f & tcp::ECE != 0,
        CWR: f & tcp::CWR != 0,
        NS: f & tcp::NS != 0,
    }
}

/// Hubble's summary text ("TCP Flags: SYN, ACK", "UDP", "ICMPv4 EchoRequest"), plus the
/// connection's counters on periodic reports.
fn summary(ev: &FlowEvent, l4: &Option<Layer4>) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(48);
    match l4 {
        // VRRP and IGMP flows are reported by protocol number, as the datapath sees them.
        Some(Layer4::Vrrp(_) | Layer4::Igmp(_)) | None => {
            let _ = write!(s, "IP protocol {}", ev.proto);
        }
        Some(l4) => l4.write_summary(&mut s),
    }
    if ev.kind == kind::SUMMARY {
        let _ = write!(
            s,
            " (packets {}/{}, bytes {}/{})",
            ev.packets[0], ev.packets[1], ev.bytes[0], ev.bytes[1]
        );
    }
    s
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_hex(out: &mut String, byte: u8) {
    out.push(HEX[(byte >> 4) as usize] as char);
    out.push(HEX[(byte & 0xf) as usize] as char);
}

// The string builders below run for every flow rendered; hand-written, they cost a fraction of
// `format!` (see the pipeline benchmark).

fn mac(m: &[u8; 6]) -> String {
    let mut s = String::with_capacity(17);
    for (i, b) in m.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        push_hex(&mut s, *b);
    }
    s
}

fn ip_string(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut s = String::with_capacity(15);
            for (i, octet) in v4.octets().iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                let o = *octet;
                if o >= 100 {
                    s.push((b'0' + o / 100) as char);
                }
                if o >= 10 {
                    s.push((b'0' + o / 10 % 10) as char);
                }
                s.push((b'0' + o % 10) as char);
            }
            s
        }
        IpAddr::V6(v6) => v6.to_string(),
    }
}

/// A version-4-formatted UUID from a random per-process prefix and a counter: unique without
/// asking the kernel for randomness per flow.
fn uuid(prefix: u64, seq: u64) -> String {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&prefix.to_be_bytes());
    b[8..].copy_from_slice(&seq.to_be_bytes());
    b[6] = 0x40 | (b[6] & 0x0f); // version 4
    b[8] = 0x80 | (b[8] & 0x3f); // RFC 4122 variant
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        push_hex(&mut s, *byte);
    }
    s
}

fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    // SAFETY: getrandom into a buffer we own, with its length.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n == 8 {
        u64::from_ne_bytes(buf)
    } else {
        // No entropy source: fall back to the time, still unique per process start.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_written_formatting_matches_std() {
        for ip in [
            "0.0.0.0",
            "198.18.0.1",
            "10.200.30.4",
            "255.255.255.255",
            "2001:db8::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_string(ip), ip.to_string());
        }
        assert_eq!(mac(&[0, 0x1a, 0xff, 0x10, 0xab, 9]), "00:1a:ff:10:ab:09");
    }

    #[test]
    fn uuid_shape_is_rfc4122_v4() {
        let u = uuid(0x0123_4567_89ab_cdef, 42);
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "{u}");
        assert_ne!(uuid(1, 1), uuid(1, 2));
        assert_eq!(uuid(0, 0), "00000000-0000-4000-8000-000000000000");
    }

    #[test]
    fn tcp_summary_lists_flags_in_hubble_order() {
        let ev = FlowEvent {
            proto: 6,
            tcp_flags: tcp::SYN | tcp::ACK,
            ..FlowEvent::default()
        };
        assert_eq!(summary(&ev, &layer4(&ev)), "TCP Flags: SYN, ACK");
        let ev = FlowEvent {
            proto: 1,
            icmp_type: 8,
            ..FlowEvent::default()
        };
        assert_eq!(summary(&ev, &layer4(&ev)), "ICMPv4 EchoRequest");
    }
}
