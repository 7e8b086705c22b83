//! Turns [`FlowFilter`]s into [`FilterSet`], which the observer runs once per flow per
//! subscriber. Everything that can be parsed (addresses, CIDRs, globs, regexes, selectors,
//! ports) is parsed here, so matching only compares and never allocates.

use std::net::IpAddr;

use flowscope_meta::selector::KeyRule;
use ipnet::IpNet;
use regex::Regex;

use super::pattern::{NodeNamePatterns, fqdn_regex};
use super::{EventTypeFilter, FlowFilter, LabelSelector, SelectorError};
use crate::flow::{
    DropReason, Endpoint, Flow, HttpHeader, IpVersion, L7Record, Layer4, NetworkInterface,
    TrafficDirection, Verdict, Workload, event_type,
};

/// A compiled whitelist and blacklist.
///
/// A flow passes if it matches any whitelist filter (or the whitelist is empty) and no
/// blacklist filter, as in Hubble's `filters.Apply`. Lost events and node status are not flows
/// and bypass filters, as in Hubble.
#[derive(Clone, Debug, Default)]
pub struct FilterSet {
    whitelist: Vec<CompiledFilter>,
    blacklist: Vec<CompiledFilter>,
}

impl FilterSet {
    /// Compiles both lists. The error names the offending field and value, e.g.
    /// `whitelist[0].source_ip[1]: "10.0.0.0/33" is not an IP address or CIDR`.
    pub fn compile(
        whitelist: &[FlowFilter],
        blacklist: &[FlowFilter],
    ) -> Result<Self, FilterError> {
        let compile_list = |list: &'static str, filters: &[FlowFilter]| {
            filters
                .iter()
                .enumerate()
                .map(|(index, f)| CompiledFilter::compile(f, &Location { list, index }))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(FilterSet {
            whitelist: compile_list("whitelist", whitelist)?,
            blacklist: compile_list("blacklist", blacklist)?,
        })
    }

    /// Whether the flow passes.
    pub fn matches(&self, flow: &Flow) -> bool {
        (self.whitelist.is_empty() || self.whitelist.iter().any(|f| f.matches(flow)))
            && !self.blacklist.iter().any(|f| f.matches(flow))
    }

    /// True when every flow passes, so callers can skip calling [`FilterSet::matches`].
    pub fn matches_everything(&self) -> bool {
        self.blacklist.is_empty()
            && (self.whitelist.is_empty() || self.whitelist.iter().any(|f| f.matchers.is_empty()))
    }
}

/// A filter that could not be compiled, with the path to the bad value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct FilterError {
    /// Where in the request, e.g. `whitelist[0].source_ip[1]`.
    pub path: String,
    /// What is wrong there.
    pub problem: FilterProblem,
}

/// What is wrong with a filter value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FilterProblem {
    /// Not an address or CIDR.
    #[error("{0:?} is not an IP address or CIDR")]
    InvalidIp(String),
    /// Not a `[namespace/]name-prefix`.
    #[error("{value:?} is not a valid \"[namespace/]name-prefix\": {reason}")]
    InvalidName {
        /// The rejected value.
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// An empty cluster name.
    #[error("cluster names must not be empty")]
    EmptyClusterName,
    /// A bad FQDN or node-name glob.
    #[error("{pattern:?} is not a valid pattern: {reason}")]
    InvalidPattern {
        /// The rejected pattern.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// A bad label selector.
    #[error("{selector:?} is not a valid label selector: {source}")]
    InvalidSelector {
        /// The rejected selector.
        selector: String,
        /// The parser's complaint.
        source: SelectorError,
    },
    /// Not a port number.
    #[error("{0:?} is not a port number (0-65535)")]
    InvalidPort(String),
    /// An unknown protocol name.
    #[error(
        "{0:?} is not a known protocol; expected one of tcp, udp, icmp, icmpv4, icmpv6, sctp, \
         vrrp, igmp, dns, http, kafka"
    )]
    UnknownProtocol(String),
    /// A bad regular expression.
    #[error("{pattern:?} is not a valid regular expression: {reason}")]
    InvalidRegex {
        /// The rejected expression.
        pattern: String,
        /// The regex compiler's complaint.
        reason: String,
    },
    /// Not a status code or prefix.
    #[error("{0:?} is not an HTTP status code or prefix; expected e.g. \"404\", \"4+\" or \"40+\"")]
    InvalidHttpStatus(String),
    /// HTTP fields combined with an event type filter that excludes L7 events.
    #[error("HTTP filters only match L7 events, but event_type does not include type 129 (l7)")]
    HttpNeedsL7Events,
    /// A field flowscope does not implement.
    #[error("not supported by flowscope ({0})")]
    Unsupported(&'static str),
}

/// Which filter of which list is being compiled; turned into a path only on error.
struct Location {
    list: &'static str,
    index: usize,
}

impl Location {
    fn field(&self, field: &str, problem: FilterProblem) -> FilterError {
        FilterError {
            path: format!("{}[{}].{field}", self.list, self.index),
            problem,
        }
    }

    fn item(&self, field: &str, item: usize, problem: FilterProblem) -> FilterError {
        FilterError {
            path: format!("{}[{}].{field}[{item}]", self.list, self.index),
            problem,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Source,
    Destination,
}

impl Side {
    fn endpoint(self, flow: &Flow) -> Option<&Endpoint> {
        match self {
            Side::Source => flow.source.as_ref(),
            Side::Destination => flow.destination.as_ref(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IpField {
    Source,
    SourceXlated,
    Destination,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LabelsOf {
    Source,
    Destination,
    Node,
}

/// `[namespace/]name-prefix`; `namespace: None` matches any namespace.
#[derive(Clone, Debug)]
struct NamespacedName {
    namespace: Option<String>,
    prefix: String,
}

/// An HTTP status filter: `"404"` (exact) or `"4+"`/`"40+"` (prefix of the 3-digit code).
#[derive(Clone, Debug)]
struct StatusPattern {
    digits: String,
    exact: bool,
}

/// Bits of [`Matcher::Protocol`].
mod proto_bit {
    pub const TCP: u16 = 1;
    pub const UDP: u16 = 1 << 1;
    pub const ICMPV4: u16 = 1 << 2;
    pub const ICMPV6: u16 = 1 << 3;
    pub const SCTP: u16 = 1 << 4;
    pub const VRRP: u16 = 1 << 5;
    pub const IGMP: u16 = 1 << 6;
    pub const DNS: u16 = 1 << 7;
    pub const HTTP: u16 = 1 << 8;
    pub const KAFKA: u16 = 1 << 9;
}

/// One set field of a filter, ready to test.
#[derive(Clone, Debug)]
enum Matcher {
    Uuid(Vec<String>),
    Ip {
        field: IpField,
        exact: Vec<IpAddr>,
        nets: Vec<IpNet>,
    },
    Pod {
        side: Side,
        names: Vec<NamespacedName>,
    },
    Service {
        side: Side,
        names: Vec<NamespacedName>,
    },
    Fqdn {
        side: Side,
        pattern: Regex,
    },
    Labels {
        of: LabelsOf,
        selectors: Vec<LabelSelector>,
    },
    Workload {
        side: Side,
        workloads: Vec<Workload>,
    },
    ClusterName {
        side: Side,
        names: Vec<String>,
    },
    Identity {
        side: Side,
        identities: Vec<u32>,
    },
    TrafficDirection(Vec<TrafficDirection>),
    Verdict(Vec<Verdict>),
    DropReason(Vec<DropReason>),
    Interface(Vec<NetworkInterface>),
    EventType(Vec<EventTypeFilter>),
    HttpStatus(Vec<StatusPattern>),
    Protocol(u16),
    Port {
        side: Side,
        ports: Vec<u16>,
    },
    Reply {
        replies: bool,
        non_replies: bool,
    },
    DnsQuery(Vec<Regex>),
    HttpMethod(Vec<String>),
    HttpPath(Vec<regex::bytes::Regex>),
    HttpUrl(Vec<Regex>),
    HttpHeader(Vec<HttpHeader>),
    TcpFlags(Vec<u16>),
    NodeName(NodeNamePatterns),
    IpVersion(Vec<IpVersion>),
    TraceId(Vec<String>),
    IpTraceId(Vec<u64>),
    Encrypted {
        encrypted: bool,
        unencrypted: bool,
    },
}

/// All set fields of one filter; matches when every matcher does.
#[derive(Clone, Debug)]
struct CompiledFilter {
    matchers: Vec<Matcher>,
}

impl CompiledFilter {
    fn compile(f: &FlowFilter, at: &Location) -> Result<Self, FilterError> {
        let mut m = Vec::new();

        if let Some(experimental) = &f.experimental
            && !experimental.cel_expression.is_empty()
        {
            return Err(at.field(
                "experimental.cel_expression",
                FilterProblem::Unsupported("CEL expressions are not evaluated"),
            ));
        }

        if !f.uuid.is_empty() {
            m.push(Matcher::Uuid(f.uuid.clone()));
        }
        for (name, field, values) in [
            ("source_ip", IpField::Source, &f.source_ip),
            ("destination_ip", IpField::Destination, &f.destination_ip),
            (
                "source_ip_xlated",
                IpField::SourceXlated,
                &f.source_ip_xlated,
            ),
        ] {
            if !values.is_empty() {
                m.push(compile_ips(field, values, |i, p| at.item(name, i, p))?);
            }
        }
        for (name, side, values) in [
            ("source_pod", Side::Source, &f.source_pod),
            ("destination_pod", Side::Destination, &f.destination_pod),
        ] {
            if !values.is_empty() {
                let names = compile_names(values, |i, p| at.item(name, i, p))?;
                m.push(Matcher::Pod { side, names });
            }
        }
        for (name, side, values) in [
            ("source_service", Side::Source, &f.source_service),
            (
                "destination_service",
                Side::Destination,
                &f.destination_service,
            ),
        ] {
            if !values.is_empty() {
                let names = compile_names(values, |i, p| at.item(name, i, p))?;
                m.push(Matcher::Service { side, names });
            }
        }
        for (name, side, values) in [
            ("source_fqdn", Side::Source, &f.source_fqdn),
            ("destination_fqdn", Side::Destination, &f.destination_fqdn),
        ] {
            if !values.is_empty() {
                let pattern = fqdn_regex(values).map_err(|(i, reason)| {
                    at.item(
                        name,
                        i,
                        FilterProblem::InvalidPattern {
                            pattern: values[i].clone(),
                            reason,
                        },
                    )
                })?;
                m.push(Matcher::Fqdn { side, pattern });
            }
        }
        for (name, of, values) in [
            ("source_label", LabelsOf::Source, &f.source_label),
            (
                "destination_label",
                LabelsOf::Destination,
                &f.destination_label,
            ),
            ("node_labels", LabelsOf::Node, &f.node_labels),
        ] {
            if !values.is_empty() {
                let selectors = values
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        LabelSelector::parse(s, KeyRule::Hubble).map_err(|source| {
                            at.item(
                                name,
                                i,
                                FilterProblem::InvalidSelector {
                                    selector: s.clone(),
                                    source,
                                },
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?;
                m.push(Matcher::Labels { of, selectors });
            }
        }
        for (side, values) in [
            (Side::Source, &f.source_workload),
            (Side::Destination, &f.destination_workload),
        ] {
            if !values.is_empty() {
                m.push(Matcher::Workload {
                    side,
                    workloads: values.clone(),
                });
            }
        }
        for (name, side, values) in [
            ("source_cluster_name", Side::Source, &f.source_cluster_name),
            (
                "destination_cluster_name",
                Side::Destination,
                &f.destination_cluster_name,
            ),
        ] {
            if let Some(i) = values.iter().position(String::is_empty) {
                return Err(at.item(name, i, FilterProblem::EmptyClusterName));
            }
            if !values.is_empty() {
                m.push(Matcher::ClusterName {
                    side,
                    names: values.clone(),
                });
            }
        }
        for (side, values) in [
            (Side::Source, &f.source_identity),
            (Side::Destination, &f.destination_identity),
        ] {
            if !values.is_empty() {
                m.push(Matcher::Identity {
                    side,
                    identities: values.clone(),
                });
            }
        }
        if !f.traffic_direction.is_empty() {
            m.push(Matcher::TrafficDirection(f.traffic_direction.clone()));
        }
        if !f.verdict.is_empty() {
            m.push(Matcher::Verdict(f.verdict.clone()));
        }
        if !f.drop_reason_desc.is_empty() {
            m.push(Matcher::DropReason(f.drop_reason_desc.clone()));
        }
        if !f.interface.is_empty() {
            m.push(Matcher::Interface(f.interface.clone()));
        }
        if !f.event_type.is_empty() {
            m.push(Matcher::EventType(f.event_type.clone()));
        }
        compile_http(f, at, &mut m)?;
        if !f.protocol.is_empty() {
            let mut bits = 0;
            for (i, p) in f.protocol.iter().enumerate() {
                bits |= match p.to_ascii_lowercase().as_str() {
                    "tcp" => proto_bit::TCP,
                    "udp" => proto_bit::UDP,
                    "icmp" => proto_bit::ICMPV4 | proto_bit::ICMPV6,
                    "icmpv4" => proto_bit::ICMPV4,
                    "icmpv6" => proto_bit::ICMPV6,
                    "sctp" => proto_bit::SCTP,
                    "vrrp" => proto_bit::VRRP,
                    "igmp" => proto_bit::IGMP,
                    "dns" => proto_bit::DNS,
                    "http" => proto_bit::HTTP,
                    "kafka" => proto_bit::KAFKA,
                    _ => {
                        return Err(at.item(
                            "protocol",
                            i,
                            FilterProblem::UnknownProtocol(p.clone()),
                        ));
                    }
                };
            }
            m.push(Matcher::Protocol(bits));
        }
        for (name, side, values) in [
            ("source_port", Side::Source, &f.source_port),
            ("destination_port", Side::Destination, &f.destination_port),
        ] {
            if !values.is_empty() {
                let ports = values
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        // u16's parser would also take "+80".
                        p.bytes()
                            .all(|b| b.is_ascii_digit())
                            .then(|| p.parse::<u16>().ok())
                            .flatten()
                            .ok_or_else(|| at.item(name, i, FilterProblem::InvalidPort(p.clone())))
                    })
                    .collect::<Result<_, _>>()?;
                m.push(Matcher::Port { side, ports });
            }
        }
        if !f.reply.is_empty() {
            m.push(Matcher::Reply {
                replies: f.reply.contains(&true),
                non_replies: f.reply.contains(&false),
            });
        }
        if !f.dns_query.is_empty() {
            let regexes = compile_regexes(&f.dns_query, |p, s| {
                Regex::new(s).map_err(|e| at.item("dns_query", p, regex_problem(s, &e)))
            })?;
            m.push(Matcher::DnsQuery(regexes));
        }
        if !f.tcp_flags.is_empty() {
            m.push(Matcher::TcpFlags(
                f.tcp_flags.iter().map(|t| t.bits()).collect(),
            ));
        }
        if !f.node_name.is_empty() {
            let patterns = NodeNamePatterns::compile(&f.node_name).map_err(|(i, reason)| {
                at.item(
                    "node_name",
                    i,
                    FilterProblem::InvalidPattern {
                        pattern: f.node_name[i].clone(),
                        reason,
                    },
                )
            })?;
            m.push(Matcher::NodeName(patterns));
        }
        if !f.ip_version.is_empty() {
            m.push(Matcher::IpVersion(f.ip_version.clone()));
        }
        if !f.trace_id.is_empty() {
            m.push(Matcher::TraceId(f.trace_id.clone()));
        }
        if !f.ip_trace_id.is_empty() {
            m.push(Matcher::IpTraceId(f.ip_trace_id.clone()));
        }
        if !f.encrypted.is_empty() {
            m.push(Matcher::Encrypted {
                encrypted: f.encrypted.contains(&true),
                unencrypted: f.encrypted.contains(&false),
            });
        }

        // All matchers must hold, so their order is free: test the cheap ones first.
        m.sort_by_key(Matcher::cost);
        Ok(CompiledFilter { matchers: m })
    }

    fn matches(&self, flow: &Flow) -> bool {
        self.matchers.iter().all(|m| m.matches(flow))
    }
}

fn compile_http(f: &FlowFilter, at: &Location, m: &mut Vec<Matcher>) -> Result<(), FilterError> {
    // Hubble refuses HTTP filters that an event-type filter would make unmatchable.
    let l7_possible =
        f.event_type.is_empty() || f.event_type.iter().any(|t| t.event_type == event_type::L7);
    let first_http_field = [
        ("http_status_code", f.http_status_code.is_empty()),
        ("http_method", f.http_method.is_empty()),
        ("http_path", f.http_path.is_empty()),
        ("http_url", f.http_url.is_empty()),
        ("http_header", f.http_header.is_empty()),
    ]
    .into_iter()
    .find_map(|(name, empty)| (!empty).then_some(name));
    if !l7_possible && let Some(name) = first_http_field {
        return Err(at.field(name, FilterProblem::HttpNeedsL7Events));
    }

    if !f.http_status_code.is_empty() {
        let patterns = f
            .http_status_code
            .iter()
            .enumerate()
            .map(|(i, s)| {
                parse_status_pattern(s).ok_or_else(|| {
                    at.item(
                        "http_status_code",
                        i,
                        FilterProblem::InvalidHttpStatus(s.clone()),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        m.push(Matcher::HttpStatus(patterns));
    }
    if !f.http_method.is_empty() {
        m.push(Matcher::HttpMethod(f.http_method.clone()));
    }
    if !f.http_path.is_empty() {
        let regexes = compile_regexes(&f.http_path, |i, s| {
            regex::bytes::Regex::new(s).map_err(|e| at.item("http_path", i, regex_problem(s, &e)))
        })?;
        m.push(Matcher::HttpPath(regexes));
    }
    if !f.http_url.is_empty() {
        let regexes = compile_regexes(&f.http_url, |i, s| {
            Regex::new(s).map_err(|e| at.item("http_url", i, regex_problem(s, &e)))
        })?;
        m.push(Matcher::HttpUrl(regexes));
    }
    if !f.http_header.is_empty() {
        m.push(Matcher::HttpHeader(f.http_header.clone()));
    }
    Ok(())
}

fn compile_regexes<R>(
    patterns: &[String],
    compile: impl Fn(usize, &str) -> Result<R, FilterError>,
) -> Result<Vec<R>, FilterError> {
    patterns
        .iter()
        .enumerate()
        .map(|(i, p)| compile(i, p))
        .collect()
}

fn regex_problem(pattern: &str, error: &regex::Error) -> FilterProblem {
    FilterProblem::InvalidRegex {
        pattern: pattern.to_owned(),
        reason: error.to_string(),
    }
}

fn compile_ips(
    field: IpField,
    values: &[String],
    err: impl Fn(usize, FilterProblem) -> FilterError,
) -> Result<Matcher, FilterError> {
    let mut exact = Vec::new();
    let mut nets = Vec::new();
    for (i, value) in values.iter().enumerate() {
        let invalid = || err(i, FilterProblem::InvalidIp(value.clone()));
        if value.contains('/') {
            nets.push(value.parse::<IpNet>().map_err(|_| invalid())?);
        } else {
            exact.push(value.parse::<IpAddr>().map_err(|_| invalid())?);
        }
    }
    Ok(Matcher::Ip { field, exact, nets })
}

/// Hubble's `ParseNamespaceName`: `"ns/prefix"`, `"ns/"` (whole namespace), `"/prefix"` (any
/// namespace), `"prefix"` (namespace `default`).
fn compile_names(
    values: &[String],
    err: impl Fn(usize, FilterProblem) -> FilterError,
) -> Result<Vec<NamespacedName>, FilterError> {
    values
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let invalid = |reason| {
                err(
                    i,
                    FilterProblem::InvalidName {
                        value: value.clone(),
                        reason,
                    },
                )
            };
            if value.is_empty() {
                return Err(invalid("it is empty"));
            }
            let (namespace, prefix) = match value.split_once('/') {
                None => (Some("default"), value.as_str()),
                // Hubble ignores anything after a second '/', which can only be a typo.
                Some((_, rest)) if rest.contains('/') => {
                    return Err(invalid("it contains more than one '/'"));
                }
                Some(("", prefix)) => (None, prefix),
                Some((namespace, prefix)) => (Some(namespace), prefix),
            };
            Ok(NamespacedName {
                namespace: namespace.map(str::to_owned),
                prefix: prefix.to_owned(),
            })
        })
        .collect()
}

fn parse_status_pattern(s: &str) -> Option<StatusPattern> {
    let bytes = s.as_bytes();
    let first_ok = matches!(bytes.first(), Some(b'1'..=b'5'));
    let all_digits = |b: &[u8]| b.iter().all(u8::is_ascii_digit);
    match bytes {
        [_, _, _] if first_ok && all_digits(bytes) => Some(StatusPattern {
            digits: s.to_owned(),
            exact: true,
        }),
        [digits @ .., b'+']
            if first_ok && (1..=2).contains(&digits.len()) && all_digits(digits) =>
        {
            Some(StatusPattern {
                digits: s[..s.len() - 1].to_owned(),
                exact: false,
            })
        }
        _ => None,
    }
}

/// The status code as Hubble compares it: decimal, zero-padded to at least 3 digits.
fn format_status(code: u32, buf: &mut [u8; 10]) -> &str {
    let mut n = code;
    let mut start = buf.len();
    while n > 0 || buf.len() - start < 3 {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    std::str::from_utf8(&buf[start..]).unwrap_or("")
}

/// The path of an HTTP URL as Go's `url.ParseRequestURI` sees it, still percent-encoded:
/// `/a/b?q` and `http://host/a/b?q` both give `/a/b`. `None` if it is not a request URI.
fn request_path(url: &str) -> Option<&str> {
    let without_query = url.split_once('?').map_or(url, |(path, _)| path);
    if without_query.starts_with('/') {
        return Some(without_query);
    }
    let (scheme, rest) = without_query.split_once(':')?;
    let mut chars = scheme.chars();
    let valid_scheme = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !valid_scheme {
        return None;
    }
    match rest.strip_prefix("//") {
        Some(authority_and_path) => Some(
            authority_and_path
                .find('/')
                .map_or("", |i| &authority_and_path[i..]),
        ),
        // An opaque URI such as "mailto:x" has an empty path.
        None => Some(""),
    }
}

/// Percent-decodes `raw` into `out` (at least `raw.len()` long); `None` on a bad escape, which
/// makes Go's URL parser fail too.
fn percent_decode(raw: &[u8], out: &mut [u8]) -> Option<usize> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let (mut i, mut n) = (0, 0);
    while i < raw.len() {
        out[n] = if raw[i] == b'%' {
            let value = hex(*raw.get(i + 1)?)? << 4 | hex(*raw.get(i + 2)?)?;
            i += 3;
            value
        } else {
            i += 1;
            raw[i - 1]
        };
        n += 1;
    }
    Some(n)
}

/// Runs `test` on the decoded request path, decoding on the stack unless the path is long.
fn with_decoded_path(url: &str, test: impl FnOnce(&[u8]) -> bool) -> bool {
    const STACK: usize = 512;
    let Some(raw) = request_path(url) else {
        return false;
    };
    if !raw.contains('%') {
        return test(raw.as_bytes());
    }
    let mut stack = [0u8; STACK];
    let mut heap = Vec::new();
    let out: &mut [u8] = if raw.len() <= STACK {
        &mut stack[..raw.len()]
    } else {
        heap.resize(raw.len(), 0);
        &mut heap
    };
    match percent_decode(raw.as_bytes(), out) {
        Some(n) => test(&out[..n]),
        None => false,
    }
}

fn flow_protocol_bits(flow: &Flow) -> u16 {
    let l4 = match &flow.l4 {
        Some(Layer4::Tcp(_)) => proto_bit::TCP,
        Some(Layer4::Udp(_)) => proto_bit::UDP,
        Some(Layer4::IcmpV4(_)) => proto_bit::ICMPV4,
        Some(Layer4::IcmpV6(_)) => proto_bit::ICMPV6,
        Some(Layer4::Sctp(_)) => proto_bit::SCTP,
        Some(Layer4::Vrrp(_)) => proto_bit::VRRP,
        Some(Layer4::Igmp(_)) => proto_bit::IGMP,
        None => 0,
    };
    let l7 = match flow.l7.as_ref().and_then(|l7| l7.record.as_ref()) {
        Some(L7Record::Dns(_)) => proto_bit::DNS,
        Some(L7Record::Http(_)) => proto_bit::HTTP,
        Some(L7Record::Kafka(_)) => proto_bit::KAFKA,
        None => 0,
    };
    l4 | l7
}

impl Matcher {
    /// Rough relative cost, to test cheap matchers first.
    fn cost(&self) -> u8 {
        match self {
            Matcher::Verdict(_)
            | Matcher::DropReason(_)
            | Matcher::TrafficDirection(_)
            | Matcher::EventType(_)
            | Matcher::Protocol(_)
            | Matcher::Port { .. }
            | Matcher::Reply { .. }
            | Matcher::TcpFlags(_)
            | Matcher::IpVersion(_)
            | Matcher::Identity { .. }
            | Matcher::Encrypted { .. }
            | Matcher::IpTraceId(_)
            | Matcher::Interface(_) => 0,
            Matcher::Uuid(_)
            | Matcher::Pod { .. }
            | Matcher::Service { .. }
            | Matcher::Workload { .. }
            | Matcher::ClusterName { .. }
            | Matcher::HttpStatus(_)
            | Matcher::HttpMethod(_)
            | Matcher::HttpHeader(_)
            | Matcher::TraceId(_) => 1,
            Matcher::Ip { .. } => 2,
            Matcher::Labels { .. } => 3,
            Matcher::Fqdn { .. }
            | Matcher::NodeName(_)
            | Matcher::DnsQuery(_)
            | Matcher::HttpPath(_)
            | Matcher::HttpUrl(_) => 4,
        }
    }

    fn matches(&self, flow: &Flow) -> bool {
        let http = || flow.l7.as_ref().and_then(|l7| l7.http());
        match self {
            Matcher::Uuid(uuids) => uuids.contains(&flow.uuid),
            Matcher::Ip { field, exact, nets } => {
                let Some(ip) = &flow.ip else {
                    return false;
                };
                let text = match field {
                    IpField::Source => &ip.source,
                    IpField::SourceXlated => &ip.source_xlated,
                    IpField::Destination => &ip.destination,
                };
                let Ok(addr) = text.parse::<IpAddr>() else {
                    return false;
                };
                exact.contains(&addr) || nets.iter().any(|net| net.contains(&addr))
            }
            Matcher::Pod { side, names } => {
                let (namespace, name) = side
                    .endpoint(flow)
                    .map_or(("", ""), |e| (e.namespace.as_str(), e.pod_name.as_str()));
                matches_namespaced(names, namespace, name)
            }
            Matcher::Service { side, names } => {
                let service = match side {
                    Side::Source => flow.source_service.as_ref(),
                    Side::Destination => flow.destination_service.as_ref(),
                };
                let (namespace, name) =
                    service.map_or(("", ""), |s| (s.namespace.as_str(), s.name.as_str()));
                matches_namespaced(names, namespace, name)
            }
            Matcher::Fqdn { side, pattern } => {
                let names = match side {
                    Side::Source => &flow.source_names,
                    Side::Destination => &flow.destination_names,
                };
                names.iter().any(|n| pattern.is_match(n))
            }
            Matcher::Labels { of, selectors } => {
                let labels: &[String] = match of {
                    LabelsOf::Source => flow.source.as_ref().map_or(&[], |e| &e.labels),
                    LabelsOf::Destination => flow.destination.as_ref().map_or(&[], |e| &e.labels),
                    LabelsOf::Node => &flow.node_labels,
                };
                selectors.iter().any(|s| s.matches_cilium_labels(labels))
            }
            Matcher::Workload { side, workloads } => side.endpoint(flow).is_some_and(|e| {
                e.workloads.iter().any(|w| {
                    workloads.iter().any(|f| {
                        (f.name.is_empty() || f.name == w.name)
                            && (f.kind.is_empty() || f.kind == w.kind)
                    })
                })
            }),
            Matcher::ClusterName { side, names } => {
                let cluster = side.endpoint(flow).map_or("", |e| e.cluster_name.as_str());
                names.iter().any(|n| n == cluster)
            }
            Matcher::Identity { side, identities } => side
                .endpoint(flow)
                .is_some_and(|e| identities.contains(&e.identity)),
            Matcher::TrafficDirection(directions) => directions.contains(&flow.traffic_direction),
            Matcher::Verdict(verdicts) => verdicts.contains(&flow.verdict),
            Matcher::DropReason(reasons) => {
                flow.verdict == Verdict::Dropped && reasons.contains(&flow.drop_reason_desc)
            }
            Matcher::Interface(interfaces) => flow.interface.as_ref().is_some_and(|iface| {
                interfaces.iter().any(|f| {
                    (f.index == 0 || f.index == iface.index)
                        && (f.name.is_empty() || f.name == iface.name)
                })
            }),
            Matcher::EventType(types) => flow.event_type.as_ref().is_some_and(|ev| {
                types.iter().any(|t| {
                    (t.event_type == 0 || t.event_type == ev.event_type)
                        && (!t.match_sub_type || t.sub_type == ev.sub_type)
                })
            }),
            Matcher::HttpStatus(patterns) => {
                let Some(http) = http().filter(|h| h.code != 0) else {
                    return false;
                };
                let mut buf = [0u8; 10];
                let code = format_status(http.code, &mut buf);
                patterns.iter().any(|p| {
                    if p.exact {
                        code == p.digits
                    } else {
                        code.starts_with(p.digits.as_str())
                    }
                })
            }
            Matcher::Protocol(bits) => flow_protocol_bits(flow) & bits != 0,
            Matcher::Port { side, ports } => {
                let port = flow.ports().map(|(src, dst)| match side {
                    Side::Source => src,
                    Side::Destination => dst,
                });
                port.is_some_and(|p| ports.iter().any(|&f| u32::from(f) == p))
            }
            Matcher::Reply {
                replies,
                non_replies,
            } => {
                // Hubble counts dropped flows of unknown direction as non-replies, for old
                // clients that filtered on the deprecated `reply` field.
                let is_reply = match flow.is_reply {
                    Some(r) => r,
                    None if flow.verdict == Verdict::Dropped => false,
                    None => return false,
                };
                if is_reply { *replies } else { *non_replies }
            }
            Matcher::DnsQuery(regexes) => flow
                .l7
                .as_ref()
                .and_then(|l7| l7.dns())
                .is_some_and(|dns| regexes.iter().any(|r| r.is_match(&dns.query))),
            Matcher::HttpMethod(methods) => http().is_some_and(|h| {
                !h.method.is_empty() && methods.iter().any(|m| m.eq_ignore_ascii_case(&h.method))
            }),
            Matcher::HttpPath(regexes) => http().is_some_and(|h| {
                !h.url.is_empty()
                    && with_decoded_path(&h.url, |path| regexes.iter().any(|r| r.is_match(path)))
            }),
            Matcher::HttpUrl(regexes) => http()
                .is_some_and(|h| !h.url.is_empty() && regexes.iter().any(|r| r.is_match(&h.url))),
            Matcher::HttpHeader(headers) => http().is_some_and(|h| {
                h.headers.iter().any(|fh| {
                    headers
                        .iter()
                        .any(|w| w.key == fh.key && w.value == fh.value)
                })
            }),
            Matcher::TcpFlags(sets) => flow.tcp_flags().is_some_and(|flags| {
                let have = flags.bits();
                // A set matches when none of its flags is missing from the flow.
                sets.iter().any(|&want| want & !have == 0)
            }),
            Matcher::NodeName(patterns) => patterns.is_match(&flow.node_name),
            Matcher::IpVersion(versions) => {
                let version = flow
                    .ip
                    .as_ref()
                    .map_or(IpVersion::NotUsed, |ip| ip.ip_version);
                versions.contains(&version)
            }
            Matcher::TraceId(ids) => {
                let id = flow
                    .trace_context
                    .as_ref()
                    .and_then(|t| t.parent.as_ref())
                    .map_or("", |p| p.trace_id.as_str());
                ids.iter().any(|i| i == id)
            }
            Matcher::IpTraceId(ids) => {
                let id = flow.ip_trace_id.as_ref().map_or(0, |t| t.trace_id);
                ids.contains(&id)
            }
            Matcher::Encrypted {
                encrypted,
                unencrypted,
            } => {
                if flow.ip.as_ref().is_some_and(|ip| ip.encrypted) {
                    *encrypted
                } else {
                    *unencrypted
                }
            }
        }
    }
}

fn matches_namespaced(names: &[NamespacedName], namespace: &str, name: &str) -> bool {
    if namespace.is_empty() && name.is_empty() {
        return false;
    }
    names.iter().any(|f| {
        name.starts_with(f.prefix.as_str())
            && f.namespace.as_deref().is_none_or(|ns| ns == namespace)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{
        CiliumEventType, Dns, Http, Icmp, Ip, IpTraceId, L7Record, Layer7, Service, Tcp, TcpFlags,
        TraceContext, TraceParent, Udp,
    };

    /// Counts heap allocations made by the current thread, to prove `matches` makes none.
    mod alloc_counter {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        thread_local! {
            static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
        }

        pub struct Counting;

        // SAFETY: defers to the system allocator; the counter has no effect on allocation.
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                ALLOCATIONS.with(|c| c.set(c.get() + 1));
                // SAFETY: same contract as our caller's.
                unsafe { System.alloc(layout) }
            }
            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                // SAFETY: same contract as our caller's.
                unsafe { System.dealloc(ptr, layout) }
            }
        }

        #[global_allocator]
        static GLOBAL: Counting = Counting;

        pub fn count<R>(f: impl FnOnce() -> R) -> (R, usize) {
            let before = ALLOCATIONS.with(Cell::get);
            let result = f();
            (result, ALLOCATIONS.with(Cell::get) - before)
        }
    }

    fn flow(edit: impl FnOnce(&mut Flow)) -> Flow {
        let mut f = Flow::default();
        edit(&mut f);
        f
    }

    fn endpoint(edit: impl FnOnce(&mut Endpoint)) -> Option<Endpoint> {
        let mut e = Endpoint::default();
        edit(&mut e);
        Some(e)
    }

    fn ip(source: &str, destination: &str) -> Option<Ip> {
        Some(Ip {
            source: source.into(),
            destination: destination.into(),
            ..Default::default()
        })
    }

    fn http(edit: impl FnOnce(&mut Http)) -> Option<Layer7> {
        let mut h = Http::default();
        edit(&mut h);
        Some(Layer7 {
            record: Some(L7Record::Http(h)),
            ..Default::default()
        })
    }

    fn tcp(source_port: u32, destination_port: u32, flags: Option<TcpFlags>) -> Option<Layer4> {
        Some(Layer4::Tcp(Tcp {
            source_port,
            destination_port,
            flags,
        }))
    }

    fn compile(whitelist: &str, blacklist: &str) -> FilterSet {
        let whitelist: Vec<FlowFilter> = serde_json::from_str(whitelist).unwrap();
        let blacklist: Vec<FlowFilter> = serde_json::from_str(blacklist).unwrap();
        FilterSet::compile(&whitelist, &blacklist).unwrap()
    }

    /// Compiles `filter` (one FlowFilter, as JSON) and checks it accepts `yes`, rejects `no`,
    /// and decides without allocating.
    #[track_caller]
    fn check(filter: &str, yes: &Flow, no: &Flow) {
        let set = compile(&format!("[{filter}]"), "[]");
        assert!(set.matches(yes), "{filter} should match {yes:#?}");
        assert!(!set.matches(no), "{filter} should not match {no:#?}");
        // Regex caches are set up on first use; after that, matching must not allocate.
        let (_, allocations) = alloc_counter::count(|| (set.matches(yes), set.matches(no)));
        assert_eq!(allocations, 0, "{filter} allocated while matching");
    }

    #[test]
    fn uuid() {
        check(
            r#"{"uuid":["u1","u3"]}"#,
            &flow(|f| f.uuid = "u1".into()),
            &flow(|f| f.uuid = "u2".into()),
        );
    }

    #[test]
    fn ips_exact_and_cidr() {
        check(
            r#"{"source_ip":["10.0.0.1","192.168.0.0/16"]}"#,
            &flow(|f| f.ip = ip("192.168.3.4", "1.1.1.1")),
            &flow(|f| f.ip = ip("10.0.0.2", "192.168.3.4")),
        );
        check(
            r#"{"source_ip":["10.0.0.1"]}"#,
            &flow(|f| f.ip = ip("10.0.0.1", "")),
            &flow(|f| f.ip = None),
        );
        check(
            r#"{"destination_ip":["2001:db8::/32","::1"]}"#,
            &flow(|f| f.ip = ip("10.0.0.1", "0:0::1")),
            &flow(|f| f.ip = ip("::1", "2001:db9::1")),
        );
        check(
            r#"{"source_ip_xlated":["1.2.3.4"]}"#,
            &flow(|f| {
                f.ip = ip("10.0.0.1", "8.8.8.8");
                f.ip.as_mut().unwrap().source_xlated = "1.2.3.4".into();
            }),
            &flow(|f| f.ip = ip("1.2.3.4", "8.8.8.8")),
        );
    }

    fn pod(namespace: &str, name: &str) -> Option<Endpoint> {
        endpoint(|e| {
            e.namespace = namespace.into();
            e.pod_name = name.into();
        })
    }

    #[test]
    fn pods_by_namespace_and_prefix() {
        check(
            r#"{"source_pod":["kube-system/coredns-"]}"#,
            &flow(|f| f.source = pod("kube-system", "coredns-abc")),
            &flow(|f| f.source = pod("default", "coredns-abc")),
        );
        // Without a '/', Hubble means the default namespace.
        check(
            r#"{"source_pod":["xwing"]}"#,
            &flow(|f| f.source = pod("default", "xwing-1")),
            &flow(|f| f.source = pod("empire", "xwing-1")),
        );
        check(
            r#"{"source_pod":["/xwing"]}"#,
            &flow(|f| f.source = pod("empire", "xwing-1")),
            &flow(|f| f.source = pod("empire", "tiefighter")),
        );
        check(
            r#"{"destination_pod":["kube-system/"]}"#,
            &flow(|f| f.destination = pod("kube-system", "anything")),
            &flow(|f| {
                f.source = pod("kube-system", "anything");
                f.destination = pod("default", "anything");
            }),
        );
        check(
            r#"{"destination_pod":["/"]}"#,
            &flow(|f| f.destination = pod("ns", "")),
            &flow(|f| f.destination = pod("", "")),
        );
    }

    #[test]
    fn services() {
        let svc = |namespace: &str, name: &str| {
            Some(Service {
                name: name.into(),
                namespace: namespace.into(),
            })
        };
        check(
            r#"{"source_service":["shop/front"]}"#,
            &flow(|f| f.source_service = svc("shop", "frontend")),
            &flow(|f| f.destination_service = svc("shop", "frontend")),
        );
        check(
            r#"{"destination_service":["db/"]}"#,
            &flow(|f| f.destination_service = svc("db", "postgres")),
            &flow(|f| f.destination_service = svc("cache", "redis")),
        );
    }

    #[test]
    fn fqdns() {
        check(
            r#"{"source_fqdn":["*.example.com"]}"#,
            &flow(|f| f.source_names = vec!["x.org".into(), "www.example.com".into()]),
            &flow(|f| f.source_names = vec!["example.org".into()]),
        );
        check(
            r#"{"destination_fqdn":["api.github.com"]}"#,
            &flow(|f| f.destination_names = vec!["api.github.com".into()]),
            &flow(|f| f.source_names = vec!["api.github.com".into()]),
        );
    }

    #[test]
    fn labels() {
        let labelled =
            |labels: &[&str]| endpoint(|e| e.labels = labels.iter().map(|l| (*l).into()).collect());
        check(
            r#"{"source_label":["k8s:app=frontend,tier in (web,api)","k8s:app=admin"]}"#,
            &flow(|f| f.source = labelled(&["k8s:app=frontend", "k8s:tier=api"])),
            &flow(|f| f.source = labelled(&["k8s:app=frontend", "k8s:tier=db"])),
        );
        check(
            r#"{"destination_label":["reserved:world"]}"#,
            &flow(|f| f.destination = labelled(&["reserved:world"])),
            &flow(|f| f.destination = labelled(&["reserved:host"])),
        );
        check(
            r#"{"destination_label":["!k8s:app"]}"#,
            &flow(|f| f.destination = None),
            &flow(|f| f.destination = labelled(&["k8s:app=x"])),
        );
        check(
            r#"{"node_labels":["topology.kubernetes.io/zone in (a, b)"]}"#,
            &flow(|f| f.node_labels = vec!["topology.kubernetes.io/zone=b".into()]),
            &flow(|f| f.node_labels = vec!["topology.kubernetes.io/zone=c".into()]),
        );
    }

    #[test]
    fn workloads_cluster_names_and_identities() {
        let workload = |name: &str, kind: &str| {
            endpoint(|e| {
                e.workloads = vec![Workload {
                    name: name.into(),
                    kind: kind.into(),
                }]
            })
        };
        check(
            r#"{"source_workload":[{"kind":"Deployment"}]}"#,
            &flow(|f| f.source = workload("web", "Deployment")),
            &flow(|f| f.source = workload("web", "StatefulSet")),
        );
        check(
            r#"{"destination_workload":[{"name":"db","kind":"StatefulSet"}]}"#,
            &flow(|f| f.destination = workload("db", "StatefulSet")),
            &flow(|f| f.destination = workload("db2", "StatefulSet")),
        );
        check(
            r#"{"source_cluster_name":["prod"]}"#,
            &flow(|f| f.source = endpoint(|e| e.cluster_name = "prod".into())),
            &flow(|f| f.destination = endpoint(|e| e.cluster_name = "prod".into())),
        );
        check(
            r#"{"destination_cluster_name":["prod","dr"]}"#,
            &flow(|f| f.destination = endpoint(|e| e.cluster_name = "dr".into())),
            &flow(|f| f.destination = endpoint(|e| e.cluster_name = "dev".into())),
        );
        check(
            r#"{"source_identity":[2,4]}"#,
            &flow(|f| f.source = endpoint(|e| e.identity = 4)),
            &flow(|f| f.source = endpoint(|e| e.identity = 3)),
        );
        check(
            r#"{"destination_identity":[0]}"#,
            &flow(|f| f.destination = endpoint(|_| {})),
            &flow(|f| f.destination = None),
        );
    }

    #[test]
    fn enum_fields() {
        check(
            r#"{"traffic_direction":["INGRESS"]}"#,
            &flow(|f| f.traffic_direction = TrafficDirection::Ingress),
            &flow(|f| f.traffic_direction = TrafficDirection::Egress),
        );
        check(
            r#"{"verdict":["DROPPED",5]}"#,
            &flow(|f| f.verdict = Verdict::Redirected),
            &flow(|f| f.verdict = Verdict::Forwarded),
        );
        check(
            r#"{"drop_reason_desc":["POLICY_DENIED",181]}"#,
            &flow(|f| {
                f.verdict = Verdict::Dropped;
                f.drop_reason_desc = DropReason::PolicyDeny;
            }),
            &flow(|f| {
                f.verdict = Verdict::Forwarded;
                f.drop_reason_desc = DropReason::PolicyDenied;
            }),
        );
        check(
            r#"{"ip_version":["IPv6"]}"#,
            &flow(|f| {
                f.ip = Some(Ip {
                    ip_version: IpVersion::V6,
                    ..Default::default()
                })
            }),
            &flow(|f| {
                f.ip = Some(Ip {
                    ip_version: IpVersion::V4,
                    ..Default::default()
                })
            }),
        );
        check(
            r#"{"ip_version":["IP_NOT_USED"]}"#,
            &flow(|f| f.ip = None),
            &flow(|f| {
                f.ip = Some(Ip {
                    ip_version: IpVersion::V4,
                    ..Default::default()
                })
            }),
        );
    }

    #[test]
    fn interfaces() {
        let iface = |index: u32, name: &str| {
            Some(NetworkInterface {
                index,
                name: name.into(),
            })
        };
        check(
            r#"{"interface":[{"name":"eth0"},{"index":3}]}"#,
            &flow(|f| f.interface = iface(3, "lxc1")),
            &flow(|f| f.interface = iface(4, "eth1")),
        );
        check(
            r#"{"interface":[{"index":2,"name":"eth0"}]}"#,
            &flow(|f| f.interface = iface(2, "eth0")),
            &flow(|f| f.interface = iface(3, "eth0")),
        );
    }

    #[test]
    fn event_types() {
        let ev = |t: i32, s: i32| {
            Some(CiliumEventType {
                event_type: t,
                sub_type: s,
            })
        };
        check(
            r#"{"event_type":[{"type":4,"match_sub_type":true,"sub_type":0}]}"#,
            &flow(|f| f.event_type = ev(4, 0)),
            &flow(|f| f.event_type = ev(4, 3)),
        );
        check(
            r#"{"event_type":[{"type":1},{"type":129}]}"#,
            &flow(|f| f.event_type = ev(1, 133)),
            &flow(|f| f.event_type = ev(4, 0)),
        );
        check(
            r#"{"event_type":[{"match_sub_type":true,"sub_type":181}]}"#,
            &flow(|f| f.event_type = ev(1, 181)),
            &flow(|f| f.event_type = None),
        );
    }

    #[test]
    fn http_fields() {
        check(
            r#"{"http_status_code":["5+","404"]}"#,
            &flow(|f| f.l7 = http(|h| h.code = 503)),
            &flow(|f| f.l7 = http(|h| h.code = 403)),
        );
        check(
            r#"{"http_status_code":["40+"]}"#,
            &flow(|f| f.l7 = http(|h| h.code = 404)),
            &flow(|f| f.l7 = http(|h| h.code = 410)),
        );
        check(
            r#"{"http_method":["get"],"event_type":[{"type":129}]}"#,
            &flow(|f| {
                f.l7 = http(|h| h.method = "GET".into());
                f.event_type = Some(CiliumEventType {
                    event_type: 129,
                    sub_type: 0,
                });
            }),
            &flow(|f| {
                f.l7 = http(|h| h.method = "POST".into());
                f.event_type = Some(CiliumEventType {
                    event_type: 129,
                    sub_type: 0,
                });
            }),
        );
        check(
            r#"{"http_path":["^/v1/items$"]}"#,
            &flow(|f| f.l7 = http(|h| h.url = "http://api/v1/it%65ms?page=2".into())),
            &flow(|f| f.l7 = http(|h| h.url = "http://api/v2/items".into())),
        );
        check(
            r#"{"http_path":["^/v1/"]}"#,
            &flow(|f| f.l7 = http(|h| h.url = "/v1/x".into())),
            &flow(|f| f.l7 = http(|h| h.url = "v1/x".into())),
        );
        check(
            r#"{"http_url":["page=\\d+$"]}"#,
            &flow(|f| f.l7 = http(|h| h.url = "http://api/items?page=2".into())),
            &flow(|f| f.l7 = http(|h| h.url = "http://api/items".into())),
        );
        check(
            r#"{"http_header":[{"key":"x-env","value":"prod"}]}"#,
            &flow(|f| {
                f.l7 = http(|h| {
                    h.headers = vec![
                        HttpHeader {
                            key: "a".into(),
                            value: "b".into(),
                        },
                        HttpHeader {
                            key: "x-env".into(),
                            value: "prod".into(),
                        },
                    ]
                })
            }),
            &flow(|f| {
                f.l7 = http(|h| {
                    h.headers = vec![HttpHeader {
                        key: "x-env".into(),
                        value: "dev".into(),
                    }]
                })
            }),
        );
    }

    #[test]
    fn protocols() {
        check(
            r#"{"protocol":["ICMP"]}"#,
            &flow(|f| f.l4 = Some(Layer4::IcmpV6(Icmp::default()))),
            &flow(|f| f.l4 = tcp(1, 2, None)),
        );
        check(
            r#"{"protocol":["udp","icmpv4"]}"#,
            &flow(|f| f.l4 = Some(Layer4::Udp(Udp::default()))),
            &flow(|f| f.l4 = Some(Layer4::IcmpV6(Icmp::default()))),
        );
        check(
            r#"{"protocol":["dns"]}"#,
            &flow(|f| {
                f.l4 = Some(Layer4::Udp(Udp::default()));
                f.l7 = Some(Layer7 {
                    record: Some(L7Record::Dns(Dns::default())),
                    ..Default::default()
                });
            }),
            &flow(|f| f.l4 = Some(Layer4::Udp(Udp::default()))),
        );
    }

    #[test]
    fn ports() {
        check(
            r#"{"source_port":["53"]}"#,
            &flow(|f| {
                f.l4 = Some(Layer4::Udp(Udp {
                    source_port: 53,
                    destination_port: 1,
                }))
            }),
            &flow(|f| {
                f.l4 = Some(Layer4::Udp(Udp {
                    source_port: 1,
                    destination_port: 53,
                }))
            }),
        );
        check(
            r#"{"destination_port":["8080","443"]}"#,
            &flow(|f| f.l4 = tcp(5, 443, None)),
            &flow(|f| f.l4 = Some(Layer4::IcmpV4(Icmp::default()))),
        );
    }

    #[test]
    fn reply_direction() {
        check(
            r#"{"reply":[true]}"#,
            &flow(|f| f.is_reply = Some(true)),
            &flow(|f| f.is_reply = None),
        );
        check(
            r#"{"reply":[false]}"#,
            &flow(|f| f.is_reply = Some(false)),
            &flow(|f| f.is_reply = None),
        );
        // Hubble's compatibility rule: a dropped flow of unknown direction is not a reply.
        check(
            r#"{"reply":[false]}"#,
            &flow(|f| f.verdict = Verdict::Dropped),
            &flow(|f| f.verdict = Verdict::Forwarded),
        );
        check(
            r#"{"reply":[true]}"#,
            &flow(|f| f.is_reply = Some(true)),
            &flow(|f| f.verdict = Verdict::Dropped),
        );
    }

    #[test]
    fn dns_query() {
        let dns = |q: &str| {
            Some(Layer7 {
                record: Some(L7Record::Dns(Dns {
                    query: q.into(),
                    ..Default::default()
                })),
                ..Default::default()
            })
        };
        check(
            r#"{"dns_query":["(?i)^KUBE-DNS\\."]}"#,
            &flow(|f| f.l7 = dns("kube-dns.kube-system.svc.cluster.local.")),
            &flow(|f| f.l7 = dns("kube.example.com.")),
        );
        check(
            r#"{"dns_query":["^kube.*local\\.$"]}"#,
            &flow(|f| f.l7 = dns("kube-dns.kube-system.svc.cluster.local.")),
            &flow(|f| f.l7 = dns("example.com.")),
        );
    }

    #[test]
    fn tcp_flag_sets() {
        let flags = |syn, ack, psh| {
            Some(TcpFlags {
                SYN: syn,
                ACK: ack,
                PSH: psh,
                ..Default::default()
            })
        };
        check(
            r#"{"tcp_flags":[{"SYN":true,"ACK":true},{"FIN":true}]}"#,
            &flow(|f| f.l4 = tcp(1, 2, flags(true, true, true))),
            &flow(|f| f.l4 = tcp(1, 2, flags(true, false, false))),
        );
        check(
            r#"{"tcp_flags":[{"SYN":true}]}"#,
            &flow(|f| f.l4 = tcp(1, 2, flags(true, false, false))),
            &flow(|f| f.l4 = tcp(1, 2, None)),
        );
    }

    #[test]
    fn node_names() {
        check(
            r#"{"node_name":["prod/*"]}"#,
            &flow(|f| f.node_name = "prod/worker-1".into()),
            &flow(|f| f.node_name = "worker-1".into()),
        );
        check(
            r#"{"node_name":["k8s*"]}"#,
            &flow(|f| f.node_name = "k8s1".into()),
            &flow(|f| f.node_name = "minikube".into()),
        );
    }

    #[test]
    fn traces_and_encryption() {
        check(
            r#"{"trace_id":["4bf92f35"]}"#,
            &flow(|f| {
                f.trace_context = Some(TraceContext {
                    parent: Some(TraceParent {
                        trace_id: "4bf92f35".into(),
                    }),
                })
            }),
            &flow(|f| f.trace_context = None),
        );
        check(
            r#"{"ip_trace_id":["42"]}"#,
            &flow(|f| {
                f.ip_trace_id = Some(IpTraceId {
                    trace_id: 42,
                    ip_option_type: 0,
                })
            }),
            &flow(|f| {
                f.ip_trace_id = Some(IpTraceId {
                    trace_id: 43,
                    ip_option_type: 0,
                })
            }),
        );
        check(
            r#"{"encrypted":[true]}"#,
            &flow(|f| {
                f.ip = Some(Ip {
                    encrypted: true,
                    ..Default::default()
                })
            }),
            &flow(|f| f.ip = None),
        );
        check(
            r#"{"encrypted":[false]}"#,
            &flow(|f| f.ip = None),
            &flow(|f| {
                f.ip = Some(Ip {
                    encrypted: true,
                    ..Default::default()
                })
            }),
        );
    }

    #[test]
    fn fields_and_within_a_filter() {
        let both = flow(|f| {
            f.verdict = Verdict::Dropped;
            f.source = pod("shop", "web-1");
        });
        let only_verdict = flow(|f| {
            f.verdict = Verdict::Dropped;
            f.source = pod("shop", "api-1");
        });
        check(
            r#"{"verdict":["DROPPED"],"source_pod":["shop/web"]}"#,
            &both,
            &only_verdict,
        );
    }

    #[test]
    fn whitelist_or_blacklist_nor() {
        let dropped_web = flow(|f| {
            f.verdict = Verdict::Dropped;
            f.source = pod("shop", "web-1");
        });
        let dropped_kube = flow(|f| {
            f.verdict = Verdict::Dropped;
            f.source = pod("kube-system", "coredns-1");
        });
        let forwarded_web = flow(|f| {
            f.verdict = Verdict::Forwarded;
            f.source = pod("shop", "web-1");
        });
        let audit_db = flow(|f| {
            f.verdict = Verdict::Audit;
            f.destination = pod("db", "pg-0");
        });

        let everything = compile("[]", "[]");
        assert!(everything.matches_everything());
        assert!(
            [&dropped_web, &dropped_kube, &forwarded_web, &audit_db]
                .iter()
                .all(|f| everything.matches(f))
        );

        // Either whitelist filter admits a flow; the blacklist removes kube-system.
        let set = compile(
            r#"[{"verdict":["DROPPED"]},{"destination_pod":["db/"]}]"#,
            r#"[{"source_pod":["kube-system/"]}]"#,
        );
        assert!(!set.matches_everything());
        assert!(set.matches(&dropped_web));
        assert!(set.matches(&audit_db));
        assert!(!set.matches(&dropped_kube));
        assert!(!set.matches(&forwarded_web));

        // A blacklist alone removes only what it matches.
        let set = compile("[]", r#"[{"verdict":["FORWARDED"]},{"verdict":["AUDIT"]}]"#);
        assert!(set.matches(&dropped_web));
        assert!(!set.matches(&forwarded_web));
        assert!(!set.matches(&audit_db));

        // A blacklist filter with two fields removes only flows matching both (`--not` twice).
        let set = compile(
            "[]",
            r#"[{"verdict":["DROPPED"],"source_pod":["kube-system/"]}]"#,
        );
        assert!(set.matches(&dropped_web));
        assert!(!set.matches(&dropped_kube));

        // An empty whitelist filter admits everything.
        let set = compile(r#"[{"verdict":["AUDIT"]},{}]"#, "[]");
        assert!(set.matches_everything());
        assert!(set.matches(&forwarded_web));
    }

    #[track_caller]
    fn compile_error(whitelist: &str, blacklist: &str) -> String {
        let whitelist: Vec<FlowFilter> = serde_json::from_str(whitelist).unwrap();
        let blacklist: Vec<FlowFilter> = serde_json::from_str(blacklist).unwrap();
        FilterSet::compile(&whitelist, &blacklist)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn compile_errors_name_path_and_value() {
        assert_eq!(
            compile_error(r#"[{"source_ip":["10.0.0.1","10.0.0.0/33"]}]"#, "[]"),
            r#"whitelist[0].source_ip[1]: "10.0.0.0/33" is not an IP address or CIDR"#
        );
        assert_eq!(
            compile_error("[]", r#"[{}, {"destination_ip":["10.0.0.256"]}]"#),
            r#"blacklist[1].destination_ip[0]: "10.0.0.256" is not an IP address or CIDR"#
        );
        let cases = [
            (
                r#"{"source_pod":[""]}"#,
                r#"whitelist[0].source_pod[0]: "" is not a valid"#,
            ),
            (
                r#"{"source_service":["a/b/c"]}"#,
                "source_service[0]: \"a/b/c\"",
            ),
            (
                r#"{"source_label":["app in (a"]}"#,
                r#"whitelist[0].source_label[0]: "app in (a" is not a valid label selector: expected ',' or ')'"#,
            ),
            (r#"{"node_labels":["=x"]}"#, "whitelist[0].node_labels[0]:"),
            (
                r#"{"source_port":["http"]}"#,
                r#"source_port[0]: "http" is not a port number"#,
            ),
            (
                r#"{"destination_port":["65536"]}"#,
                r#"destination_port[0]: "65536""#,
            ),
            (
                r#"{"destination_port":["+80"]}"#,
                r#"destination_port[0]: "+80""#,
            ),
            (
                r#"{"protocol":["tcp","tcpp"]}"#,
                r#"protocol[1]: "tcpp" is not a known protocol"#,
            ),
            (
                r#"{"http_status_code":["600"]}"#,
                r#"http_status_code[0]: "600""#,
            ),
            (
                r#"{"http_status_code":["5++"]}"#,
                r#"http_status_code[0]: "5++""#,
            ),
            (
                r#"{"dns_query":["("]}"#,
                r#"dns_query[0]: "(" is not a valid regular expression"#,
            ),
            (r#"{"http_path":["["]}"#, r#"http_path[0]: "[""#),
            (r#"{"http_url":["a{2,1}"]}"#, r#"http_url[0]: "a{2,1}""#),
            (
                r#"{"node_name":["ok","a/b/c"]}"#,
                r#"node_name[1]: "a/b/c" is not a valid pattern"#,
            ),
            (
                r#"{"source_fqdn":["a b"]}"#,
                r#"source_fqdn[0]: "a b" is not a valid pattern"#,
            ),
            (r#"{"destination_fqdn":[""]}"#, "destination_fqdn[0]"),
            (
                r#"{"source_cluster_name":["a",""]}"#,
                "source_cluster_name[1]: cluster names",
            ),
            (
                r#"{"http_method":["GET"],"event_type":[{"type":1}]}"#,
                "whitelist[0].http_method: HTTP filters only match L7 events",
            ),
            (
                r#"{"experimental":{"cel_expression":["_flow.verdict == 1"]}}"#,
                "whitelist[0].experimental.cel_expression: not supported by flowscope",
            ),
        ];
        for (filter, expected) in cases {
            let err = compile_error(&format!("[{filter}]"), "[]");
            assert!(
                err.contains(expected),
                "{filter}: got {err:?}, want {expected:?}"
            );
        }
        // HTTP filters next to an event type filter that admits L7 compile fine.
        compile(
            r#"[{"http_method":["GET"],"event_type":[{"type":1},{"type":129}]}]"#,
            "[]",
        );
        compile(r#"[{"experimental":{}}]"#, "[]");
    }

    #[test]
    fn filter_sets_can_be_shared_across_tasks() {
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        shareable::<FilterSet>();
    }

    #[test]
    fn status_codes_format_like_hubble() {
        let mut buf = [0u8; 10];
        assert_eq!(format_status(404, &mut buf), "404");
        assert_eq!(format_status(7, &mut buf), "007");
        assert_eq!(format_status(4040, &mut buf), "4040");
        assert_eq!(format_status(u32::MAX, &mut buf), "4294967295");
        assert!(parse_status_pattern("1+").is_some());
        assert!(parse_status_pattern("0+").is_none());
        assert!(parse_status_pattern("404+").is_none());
        assert!(parse_status_pattern("44").is_none());
    }

    #[test]
    fn request_paths() {
        assert_eq!(request_path("/a/b?c=d"), Some("/a/b"));
        assert_eq!(request_path("http://h:80/a/b?c"), Some("/a/b"));
        assert_eq!(request_path("https://h"), Some(""));
        assert_eq!(request_path("mailto:x@y"), Some(""));
        assert_eq!(request_path("a/b"), None);
        assert_eq!(request_path("1http://h/a"), None);
        let decoded = |url: &str| {
            let mut out = None;
            with_decoded_path(url, |p| {
                out = Some(p.to_vec());
                true
            });
            out
        };
        assert_eq!(decoded("/a%20b%2Fc").as_deref(), Some(&b"/a b/c"[..]));
        assert_eq!(decoded("/bad%zz"), None);
        assert_eq!(decoded("/cut%2"), None);
        let long = format!("/{}%41", "x".repeat(600));
        assert_eq!(decoded(&long).map(|p| p.len()), Some(602));
    }
}
