//! The families' own labels, with Hubble's names, values and order. Each is a few bytes of
//! enums and numbers; text is written only when a scrape encodes the series.

use std::fmt::{self, Write as _};

use flowscope_model::flow::{DropReason, TrafficDirection, Verdict};
use prometheus_client::encoding::{EncodeLabelValue, LabelSetEncoder, LabelValueEncoder};

use super::{
    context::Value,
    family::{FixedLabels, label},
};

/// Hubble's protocol label (`v1.FlowProtocol`): the L7 protocol, else the L4 one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Protocol {
    Tcp,
    Udp,
    IcmpV4,
    IcmpV6,
    Sctp,
    /// No L4 header Hubble knows.
    Unknown,
    Dns,
    Http,
}

impl Protocol {
    pub(crate) fn of(ip_proto: u8) -> Self {
        match ip_proto {
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            1 => Protocol::IcmpV4,
            58 => Protocol::IcmpV6,
            132 => Protocol::Sctp,
            _ => Protocol::Unknown,
        }
    }

    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::IcmpV4 => "ICMPv4",
            Protocol::IcmpV6 => "ICMPv6",
            Protocol::Sctp => "SCTP",
            Protocol::Unknown => "Unknown L4",
            Protocol::Dns => "DNS",
            Protocol::Http => "HTTP",
        }
    }

    /// The flow has an L4 header in Hubble's model.
    pub(crate) fn has_l4(self) -> bool {
        matches!(
            self,
            Protocol::Tcp | Protocol::Udp | Protocol::IcmpV4 | Protocol::IcmpV6 | Protocol::Sctp
        )
    }

    pub(crate) fn has_ports(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Udp | Protocol::Sctp)
    }

    pub(crate) fn is_icmp(self) -> bool {
        matches!(self, Protocol::IcmpV4 | Protocol::IcmpV6)
    }
}

/// Cilium's trace observation points this datapath reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Point {
    ToEndpoint,
    FromEndpoint,
    ToNetwork,
    FromNetwork,
}

impl Point {
    /// Cilium's `TraceObservationPoints` names.
    const fn as_str(self) -> &'static str {
        match self {
            Point::ToEndpoint => "to-endpoint",
            Point::FromEndpoint => "from-endpoint",
            Point::ToNetwork => "to-network",
            Point::FromNetwork => "from-network",
        }
    }
}

/// The Cilium event a flow came from, as `flows_processed_total` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Event {
    Trace(Point),
    Drop,
    PolicyVerdict,
    L7(Protocol),
}

impl Event {
    const fn type_name(self) -> &'static str {
        match self {
            Event::Trace(_) => "Trace",
            Event::Drop => "Drop",
            Event::PolicyVerdict => "PolicyVerdict",
            Event::L7(_) => "L7",
        }
    }

    /// Hubble sets a subtype for traces (the point) and L7 flows (the protocol) only.
    const fn subtype(self) -> &'static str {
        match self {
            Event::Trace(p) => p.as_str(),
            Event::L7(p) => p.as_str(),
            Event::Drop | Event::PolicyVerdict => "",
        }
    }
}

/// `flows_processed_total{protocol,type,subtype,verdict}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FlowLabels {
    pub protocol: Protocol,
    pub event: Event,
    pub verdict: Verdict,
}

impl FixedLabels for FlowLabels {
    const CONTEXT_FIRST: bool = false;

    fn encode(&self, e: &mut LabelSetEncoder) -> fmt::Result {
        label(e, "protocol", self.protocol.as_str())?;
        label(e, "type", self.event.type_name())?;
        label(e, "subtype", self.event.subtype())?;
        label(e, "verdict", self.verdict.as_str())
    }
}

/// `drop_total{reason,protocol}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct DropLabels {
    pub reason: DropReason,
    pub protocol: Protocol,
}

impl FixedLabels for DropLabels {
    const CONTEXT_FIRST: bool = true;

    fn encode(&self, e: &mut LabelSetEncoder) -> fmt::Result {
        label(e, "reason", self.reason.as_str())?;
        label(e, "protocol", self.protocol.as_str())
    }
}

/// `tcp_flags_total{flag,family}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TcpLabels {
    /// `SYN`, `SYN-ACK`, `FIN` or `RST`.
    pub flag: &'static str,
    pub ipv6: bool,
}

impl FixedLabels for TcpLabels {
    const CONTEXT_FIRST: bool = false;

    fn encode(&self, e: &mut LabelSetEncoder) -> fmt::Result {
        label(e, "flag", self.flag)?;
        label(e, "family", ip_family(self.ipv6))
    }
}

/// Hubble's `IPVersion` names.
const fn ip_family(ipv6: bool) -> &'static str {
    if ipv6 { "IPv6" } else { "IPv4" }
}

/// `port_distribution_total{protocol,port}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PortLabels {
    pub protocol: Protocol,
    /// The destination port; 0 for ICMP.
    pub port: u16,
}

impl FixedLabels for PortLabels {
    const CONTEXT_FIRST: bool = false;

    fn encode(&self, e: &mut LabelSetEncoder) -> fmt::Result {
        label(e, "protocol", self.protocol.as_str())?;
        label(e, "port", self.port)
    }
}

/// `icmp_total{family,type}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct IcmpLabels {
    /// Hubble labels ICMPv6 messages `IPv4` too (a bug in its handler); this says `IPv6`.
    pub ipv6: bool,
    pub kind: u8,
    pub code: u8,
}

impl FixedLabels for IcmpLabels {
    const CONTEXT_FIRST: bool = false;

    fn encode(&self, e: &mut LabelSetEncoder) -> fmt::Result {
        label(e, "family", ip_family(self.ipv6))?;
        label(e, "type", IcmpType(self.ipv6, self.kind, self.code))
    }
}

/// An ICMP type and code as gopacket's `ICMPv4TypeCode.String()` / `ICMPv6TypeCode.String()`
/// spell them (`EchoRequest`, `DestinationUnreachable(Port)`), which Hubble uses.
pub(crate) struct IcmpType(pub bool, pub u8, pub u8);

impl fmt::Display for IcmpType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let IcmpType(v6, t, c) = *self;
        let (name, codes): (Option<&str>, &[&str]) = if v6 {
            match t {
                1 => (
                    Some("DestinationUnreachable"),
                    &[
                        "NoRouteToDst",
                        "AdminProhibited",
                        "BeyondScopeOfSrc",
                        "AddressUnreachable",
                        "PortUnreachable",
                        "SrcAddressFailedPolicy",
                        "RejectRouteToDst",
                    ],
                ),
                2 => (Some("PacketTooBig"), &[]),
                3 => (
                    Some("TimeExceeded"),
                    &["HopLimitExceeded", "FragmentReassemblyTimeExceeded"],
                ),
                4 => (
                    Some("ParameterProblem"),
                    &[
                        "ErroneousHeaderField",
                        "UnrecognizedNextHeader",
                        "UnrecognizedIPv6Option",
                    ],
                ),
                128 => (Some("EchoRequest"), &[]),
                129 => (Some("EchoReply"), &[]),
                133 => (Some("RouterSolicitation"), &[]),
                134 => (Some("RouterAdvertisement"), &[]),
                135 => (Some("NeighborSolicitation"), &[]),
                136 => (Some("NeighborAdvertisement"), &[]),
                137 => (Some("Redirect"), &[]),
                _ => (None, &[]),
            }
        } else {
            match t {
                0 => (Some("EchoReply"), &[]),
                3 => (
                    Some("DestinationUnreachable"),
                    &[
                        "Net",
                        "Host",
                        "Protocol",
                        "Port",
                        "FragmentationNeeded",
                        "SourceRoutingFailed",
                        "NetUnknown",
                        "HostUnknown",
                        "SourceIsolated",
                        "NetAdminProhibited",
                        "HostAdminProhibited",
                        "NetTOS",
                        "HostTOS",
                        "CommAdminProhibited",
                        "HostPrecedence",
                        "PrecedenceCutoff",
                    ],
                ),
                4 => (Some("SourceQuench"), &[]),
                5 => (Some("Redirect"), &["Net", "Host", "TOS+Net", "TOS+Host"]),
                8 => (Some("EchoRequest"), &[]),
                9 => (Some("RouterAdvertisement"), &[]),
                10 => (Some("RouterSolicitation"), &[]),
                11 => (
                    Some("TimeExceeded"),
                    &["TTLExceeded", "FragmentReassemblyTimeExceeded"],
                ),
                12 => (
                    Some("ParameterProblem"),
                    &["PointerIndicatesError", "MissingOption", "BadLength"],
                ),
                13 => (Some("TimestampRequest"), &[]),
                14 => (Some("TimestampReply"), &[]),
                15 => (Some("InfoRequest"), &[]),
                16 => (Some("InfoReply"), &[]),
                17 => (Some("AddressMaskRequest"), &[]),
                18 => (Some("AddressMaskReply"), &[]),
                _ => (None, &[]),
            }
        };
        match name {
            None => write!(f, "{t}({c})"),
            Some(name) if codes.is_empty() && c == 0 => f.write_str(name),
            Some(name) => match codes.get(c as usize) {
                Some(code) if !codes.is_empty() => write!(f, "{name}({code})"),
                _ => write!(f, "{name}(Code: {c})"),
            },
        }
    }
}

impl EncodeLabelValue for IcmpType {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        write!(encoder, "{self}")
    }
}

/// [`PolicyLabels::matched`] of a request the L7 proxy judged: Hubble's `l7/http`.
pub(crate) const MATCH_L7_HTTP: u8 = 255;

/// `policy_verdicts_total{direction,match,action}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PolicyLabels {
    pub direction: TrafficDirection,
    /// `policy_match`, numbered as Cilium's `PolicyMatchType`.
    pub matched: u8,
    pub action: Verdict,
}

impl FixedLabels for PolicyLabels {
    const CONTEXT_FIRST: bool = false;

    fn encode(&self, e: &mut LabelSetEncoder) -> fmt::Result {
        // Hubble lower-cases the enum names.
        let direction = match self.direction {
            TrafficDirection::Ingress => "ingress",
            TrafficDirection::Egress => "egress",
            TrafficDirection::Unknown => "traffic_direction_unknown",
        };
        let matched = match self.matched {
            0 => "none",
            1 => "l3-only",
            2 => "l3-l4",
            3 => "l4-only",
            4 => "all",
            5 => "l3-proto",
            6 => "proto-only",
            MATCH_L7_HTTP => "l7/http",
            _ => "unknown",
        };
        let action = match self.action {
            Verdict::Unknown => "verdict_unknown",
            Verdict::Forwarded => "forwarded",
            Verdict::Dropped => "dropped",
            Verdict::Error => "error",
            Verdict::Audit => "audit",
            Verdict::Redirected => "redirected",
            Verdict::Traced => "traced",
            Verdict::Translated => "translated",
        };
        label(e, "direction", direction)?;
        label(e, "match", matched)?;
        label(e, "action", action)
    }
}

/// `dns_queries_total` and `dns_responses_total{rcode,qtypes,ips_returned[,query]}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct DnsLabels {
    pub rcode: &'static str,
    pub qtypes: Value,
    pub ips_returned: usize,
    pub query: Option<Value>,
}

impl FixedLabels for DnsLabels {
    const CONTEXT_FIRST: bool = true;

    fn encode(&self, e: &mut LabelSetEncoder) -> fmt::Result {
        label(e, "rcode", self.rcode)?;
        label(e, "qtypes", &self.qtypes)?;
        label(e, "ips_returned", self.ips_returned as u64)?;
        match &self.query {
            Some(q) => label(e, "query", q),
            None => Ok(()),
        }
    }
}

/// `dns_response_types_total{type,qtypes[,query]}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct DnsTypeLabels {
    pub rtype: Value,
    pub qtypes: Value,
    pub query: Option<Value>,
}

impl FixedLabels for DnsTypeLabels {
    const CONTEXT_FIRST: bool = true;

    fn encode(&self, e: &mut LabelSetEncoder) -> fmt::Result {
        label(e, "type", &self.rtype)?;
        label(e, "qtypes", &self.qtypes)?;
        match &self.query {
            Some(q) => label(e, "query", q),
            None => Ok(()),
        }
    }
}

/// Who reported an HTTP exchange: the client's side (egress) or the server's (ingress).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Reporter {
    Client,
    Server,
    Unknown,
}

impl Reporter {
    pub(crate) fn of(direction: TrafficDirection) -> Self {
        match direction {
            TrafficDirection::Egress => Reporter::Client,
            TrafficDirection::Ingress => Reporter::Server,
            TrafficDirection::Unknown => Reporter::Unknown,
        }
    }

    const fn as_str(self) -> &'static str {
        match self {
            Reporter::Client => "client",
            Reporter::Server => "server",
            Reporter::Unknown => "unknown",
        }
    }
}

/// `http_requests_total{method,protocol,status,reporter}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct HttpLabels {
    pub method: Value,
    pub protocol: Value,
    pub status: u32,
    pub reporter: Reporter,
}

impl FixedLabels for HttpLabels {
    const CONTEXT_FIRST: bool = true;

    fn encode(&self, e: &mut LabelSetEncoder) -> fmt::Result {
        label(e, "method", &self.method)?;
        label(e, "protocol", &self.protocol)?;
        label(e, "status", self.status)?;
        label(e, "reporter", self.reporter.as_str())
    }
}

/// `http_request_duration_seconds{method,reporter}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct HttpDurationLabels {
    pub method: Value,
    pub reporter: Reporter,
}

impl FixedLabels for HttpDurationLabels {
    const CONTEXT_FIRST: bool = true;

    fn encode(&self, e: &mut LabelSetEncoder) -> fmt::Result {
        label(e, "method", &self.method)?;
        label(e, "reporter", self.reporter.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icmp_types_as_gopacket_prints_them() {
        for (v6, t, c, text) in [
            (false, 8, 0, "EchoRequest"),
            (false, 0, 0, "EchoReply"),
            (false, 3, 3, "DestinationUnreachable(Port)"),
            (false, 3, 99, "DestinationUnreachable(Code: 99)"),
            (false, 8, 1, "EchoRequest(Code: 1)"),
            (false, 5, 2, "Redirect(TOS+Net)"),
            (false, 42, 7, "42(7)"),
            (true, 128, 0, "EchoRequest"),
            (true, 1, 4, "DestinationUnreachable(PortUnreachable)"),
            (true, 135, 0, "NeighborSolicitation"),
            (true, 3, 0, "TimeExceeded(HopLimitExceeded)"),
            (true, 200, 0, "200(0)"),
        ] {
            assert_eq!(IcmpType(v6, t, c).to_string(), text, "{v6} {t} {c}");
        }
    }
}
