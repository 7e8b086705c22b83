//! Filter flags → the request's whitelist and blacklist, as Hubble's `filterTracker`
//! (`hubble/cmd/observe/flows_filter.go`) builds them.
//!
//! `--not` negates the next filter flag only, so the order of flags matters; clap's derive
//! does not keep it across different flags, hence [`FilterFlags`] implements
//! [`clap::Args`]/[`clap::FromArgMatches`] by hand and reads the positions with
//! [`clap::ArgMatches::indices_of`].
//!
//! How the lists are built:
//! - flags given without `--not` go to the whitelist tracker, each `--not X` to the blacklist
//!   tracker;
//! - a tracker holds two filters, `left` and `right`, ORed by the server. From/to flags (and
//!   flags without a direction, like `--verdict`) set the same field in both; either-direction
//!   flags (`--ip`, `--pod`, `--label`, ...) set the source field in `left` and the destination
//!   field in `right`, so they match src OR dst. When both filters end up equal only one is
//!   sent;
//! - repeating a flag appends to the same field (values OR), different flags set different
//!   fields of the same filters (AND);
//! - namespaces are not a field: `--namespace`, `--from-namespace` and `--to-namespace` are
//!   applied to the pod and service fields at the end (`ns/pod`, or `ns/` when no pod is given).

use clap::builder::ValueParser;
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};
use flowscope_model::filter::EventTypeFilter;
use flowscope_model::flow::{
    DropReason, HttpHeader, IpVersion, TcpFlags, TrafficDirection, Verdict, Workload,
};
use flowscope_model::{FilterSet, FlowFilter};

/// One filter flag of the command line, in command-line order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterArg {
    /// The long flag name without dashes, e.g. `"from-pod"` or `"not"`.
    pub flag: &'static str,
    /// Its value (the implied value for switches such as `--not` or `-A`).
    pub value: String,
}

/// The filter flags of `flowscope observe`, in the order they were given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilterFlags {
    /// Every filter flag occurrence, in command-line order.
    pub args: Vec<FilterArg>,
}

/// How a filter flag looks on the command line.
struct FlagSpec {
    name: &'static str,
    short: Option<char>,
    /// `Some(v)`: a switch without a value (`--not`, `-A`), recorded as `v`.
    implied: Option<&'static str>,
    value_name: &'static str,
    help: &'static str,
}

const fn flag(name: &'static str, value_name: &'static str, help: &'static str) -> FlagSpec {
    FlagSpec {
        name,
        short: None,
        implied: None,
        value_name,
        help,
    }
}

const fn short(
    name: &'static str,
    short: char,
    value_name: &'static str,
    help: &'static str,
) -> FlagSpec {
    FlagSpec {
        name,
        short: Some(short),
        implied: None,
        value_name,
        help,
    }
}

const fn switch(
    name: &'static str,
    short: Option<char>,
    implied: &'static str,
    help: &'static str,
) -> FlagSpec {
    FlagSpec {
        name,
        short,
        implied: Some(implied),
        value_name: "BOOL",
        help,
    }
}

/// Hubble's filter flags, in its help order.
const FLAGS: &[FlagSpec] = &[
    switch(
        "not",
        None,
        "true",
        "Negate the next filter flag: --not --from-ip 2.2.2.2",
    ),
    switch(
        "all-namespaces",
        Some('A'),
        "true",
        "Show flows from or to any Kubernetes namespace",
    ),
    flag(
        "cel-expression",
        "EXPR",
        "CEL expression over the flow (refused: flowscope does not evaluate CEL)",
    ),
    flag(
        "cluster",
        "NAME",
        "Show flows from or to endpoints in this cluster",
    ),
    flag(
        "drop-reason-desc",
        "REASON",
        "Show dropped flows with this drop reason (e.g. POLICY_DENIED, UNSUPPORTED_L3_PROTOCOL)",
    ),
    switch(
        "encrypted",
        None,
        "true",
        "Show only encrypted flows (WireGuard/IPsec)",
    ),
    flag(
        "fqdn",
        "FQDN",
        "Show flows from or to this DNS name; '*' globs (e.g. \"*.example.com\")",
    ),
    switch(
        "from-all-namespaces",
        None,
        "true",
        "Show flows from any Kubernetes namespace",
    ),
    flag(
        "from-cluster",
        "NAME",
        "Show flows from endpoints in this cluster",
    ),
    flag(
        "from-fqdn",
        "FQDN",
        "Show flows from this DNS name ('*' globs)",
    ),
    flag(
        "from-identity",
        "IDENTITY",
        "Show flows from this security identity (number or reserved name: host, world, ...)",
    ),
    flag(
        "from-ip",
        "IP",
        "Show flows from this IP address or CIDR (e.g. 10.0.0.1, 10.0.0.0/8)",
    ),
    flag(
        "from-label",
        "SELECTOR",
        "Show flows from endpoints matching this label selector (e.g. \"k8s:app=web\", \"reserved:world\")",
    ),
    flag(
        "from-namespace",
        "NAMESPACE",
        "Show flows from this Kubernetes namespace",
    ),
    flag(
        "from-pod",
        "[NS/]POD",
        "Show flows from pods with this name prefix; namespace 'default' when none is given",
    ),
    flag("from-port", "PORT", "Show flows with this source port"),
    flag(
        "from-service",
        "[NS/]SVC",
        "Show flows from this service name prefix; namespace 'default' when none is given",
    ),
    flag(
        "from-workload",
        "[KIND/]NAME",
        "Show flows from endpoints of this workload (e.g. Deployment/web)",
    ),
    flag(
        "http-header",
        "KEY:VALUE",
        "Show HTTP flows with this header (e.g. \"x-user:alice\")",
    ),
    flag(
        "http-method",
        "METHOD",
        "Show HTTP flows with this method (e.g. get, post)",
    ),
    flag(
        "http-path",
        "REGEX",
        "Show HTTP flows whose URL path matches this regular expression (e.g. \"/page/\\d+\")",
    ),
    flag(
        "http-status",
        "CODE",
        "Show HTTP flows with this status code or prefix (e.g. \"404\", \"5+\")",
    ),
    flag(
        "http-url",
        "REGEX",
        "Show HTTP flows whose URL matches this regular expression",
    ),
    flag(
        "identity",
        "IDENTITY",
        "Show flows from or to this security identity (number or reserved name)",
    ),
    flag(
        "interface",
        "NAME",
        "Show flows observed on this network interface (e.g. eth0)",
    ),
    flag(
        "ip",
        "IP",
        "Show flows from or to this IP address or CIDR (e.g. 10.0.0.1, 10.0.0.0/8)",
    ),
    flag(
        "ip-trace-id",
        "ID",
        "Show flows with this IP-option trace ID",
    ),
    flag(
        "ip-version",
        "VERSION",
        "Show IPv4 (v4), IPv6 (v6) or non-IP (none) flows",
    ),
    switch("ipv4", Some('4'), "v4", "Show only IPv4 flows"),
    switch("ipv6", Some('6'), "v6", "Show only IPv6 flows"),
    short(
        "label",
        'l',
        "SELECTOR",
        "Show flows from or to endpoints matching this label selector (e.g. \"k8s:app=web\")",
    ),
    short(
        "namespace",
        'n',
        "NAMESPACE",
        "Show flows from or to this Kubernetes namespace",
    ),
    flag(
        "node-label",
        "SELECTOR",
        "Show flows observed on nodes matching this label selector",
    ),
    flag(
        "node-name",
        "NAME",
        "Show flows observed on these nodes; '*' globs (e.g. \"k8s*\", \"prod/*\")",
    ),
    flag(
        "pod",
        "[NS/]POD",
        "Show flows from or to pods with this name prefix; namespace 'default' when none is given",
    ),
    flag(
        "port",
        "PORT",
        "Show flows with this source or destination port",
    ),
    flag(
        "protocol",
        "PROTOCOL",
        "Show flows of this L4/L7 protocol: tcp, udp, icmp, icmpv4, icmpv6, sctp, vrrp, igmp, dns, http, kafka",
    ),
    flag(
        "service",
        "[NS/]SVC",
        "Show flows from or to this service name prefix",
    ),
    flag(
        "snat-ip",
        "IP",
        "Show flows SNATed to this IP address or CIDR",
    ),
    flag(
        "tcp-flags",
        "FLAGS",
        "Show TCP flows with all of these flags, comma-separated (e.g. \"syn\", \"syn,ack\")",
    ),
    switch(
        "to-all-namespaces",
        None,
        "true",
        "Show flows to any Kubernetes namespace",
    ),
    flag(
        "to-cluster",
        "NAME",
        "Show flows to endpoints in this cluster",
    ),
    flag("to-fqdn", "FQDN", "Show flows to this DNS name ('*' globs)"),
    flag(
        "to-identity",
        "IDENTITY",
        "Show flows to this security identity (number or reserved name)",
    ),
    flag("to-ip", "IP", "Show flows to this IP address or CIDR"),
    flag(
        "to-label",
        "SELECTOR",
        "Show flows to endpoints matching this label selector",
    ),
    flag(
        "to-namespace",
        "NAMESPACE",
        "Show flows to this Kubernetes namespace",
    ),
    flag(
        "to-pod",
        "[NS/]POD",
        "Show flows to pods with this name prefix; namespace 'default' when none is given",
    ),
    flag("to-port", "PORT", "Show flows with this destination port"),
    flag(
        "to-service",
        "[NS/]SVC",
        "Show flows to this service name prefix",
    ),
    flag(
        "to-workload",
        "[KIND/]NAME",
        "Show flows to endpoints of this workload",
    ),
    flag(
        "trace-id",
        "ID",
        "Show flows with this distributed-tracing trace ID",
    ),
    flag(
        "traffic-direction",
        "DIRECTION",
        "Show flows in this traffic direction: ingress or egress",
    ),
    short(
        "type",
        't',
        "TYPE[:SUBTYPE]",
        "Show flows of this event type: capture, drop, l7, policy-verdict, trace, trace-sock; trace \
         sub-types: from-endpoint, from-host, from-network, from-overlay, from-proxy, from-stack, \
         from-crypto, to-endpoint, to-host, to-network, to-overlay, to-proxy, to-stack, to-crypto \
         (e.g. trace:to-endpoint)",
    ),
    switch("unencrypted", None, "true", "Show only unencrypted flows"),
    flag(
        "uuid",
        "UUID",
        "Show the flow with this unique identifier, if any",
    ),
    flag(
        "verdict",
        "VERDICT",
        "Show flows with this verdict: FORWARDED, DROPPED, AUDIT, REDIRECTED, ERROR, TRACED, TRANSLATED",
    ),
    flag(
        "workload",
        "[KIND/]NAME",
        "Show flows from or to endpoints of this workload",
    ),
];

impl FlagSpec {
    fn arg(&self) -> Arg {
        let mut arg = Arg::new(self.name)
            .long(self.name)
            .help(self.help)
            .help_heading("Filters")
            .value_name(self.value_name)
            .value_parser(ValueParser::string())
            .action(ArgAction::Append);
        if let Some(c) = self.short {
            arg = arg.short(c);
        }
        if let Some(implied) = self.implied {
            // `--not`, `-A`: a switch. It still records a value so that every occurrence keeps
            // its position (a counted flag only remembers the last one).
            arg = arg.num_args(0).default_missing_value(implied);
        }
        arg
    }
}

impl Args for FilterFlags {
    fn augment_args(cmd: Command) -> Command {
        FLAGS.iter().fold(cmd, |cmd, spec| cmd.arg(spec.arg()))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for FilterFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut positioned = Vec::new();
        for spec in FLAGS {
            let (Some(indices), Some(values)) = (
                matches.indices_of(spec.name),
                matches.get_many::<String>(spec.name),
            ) else {
                continue;
            };
            for (index, value) in indices.zip(values) {
                positioned.push((
                    index,
                    FilterArg {
                        flag: spec.name,
                        value: value.clone(),
                    },
                ));
            }
        }
        positioned.sort_by_key(|(index, _)| *index);
        Ok(FilterFlags {
            args: positioned.into_iter().map(|(_, a)| a).collect(),
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

/// Flags that may not be used together in one list (whitelist or blacklist), Hubble's
/// `newFlowFilter().conflicts`. Groups of one flag never conflict; they are kept so the table
/// reads like Hubble's.
const CONFLICTS: &[&[&str]] = &[
    &[
        "from-fqdn",
        "from-ip",
        "ip",
        "fqdn",
        "from-namespace",
        "namespace",
        "from-all-namespaces",
        "all-namespaces",
    ],
    &["from-fqdn", "from-ip", "ip", "fqdn", "from-pod", "pod"],
    &[
        "to-fqdn",
        "to-ip",
        "ip",
        "fqdn",
        "to-namespace",
        "namespace",
        "to-all-namespaces",
        "all-namespaces",
    ],
    &["to-fqdn", "to-ip", "ip", "fqdn", "to-pod", "pod"],
    &["to-pod", "namespace", "all-namespaces"],
    &["from-pod", "namespace", "all-namespaces"],
    &["to-service", "namespace", "all-namespaces"],
    &["from-service", "namespace", "all-namespaces"],
    &["snat-ip"],
    &["label", "from-label"],
    &["label", "to-label"],
    &["service", "from-service"],
    &["service", "to-service"],
    &["verdict"],
    &["drop-reason-desc"],
    &["type"],
    &["http-status"],
    &["http-method"],
    &["http-path"],
    &["http-url"],
    &["http-header"],
    &["protocol"],
    &["port", "to-port"],
    &["port", "from-port"],
    &["identity", "to-identity"],
    &["identity", "from-identity"],
    &["workload", "to-workload"],
    &["workload", "from-workload"],
    &["node-label"],
    &["tcp-flags"],
    &["uuid"],
    &["traffic-direction"],
    &["cel-expression"],
    &["encrypted", "unencrypted"],
];

/// Reserved security identities by name (`pkg/identity/numericidentity.go`).
pub(crate) const RESERVED_IDENTITIES: &[(&str, u32)] = &[
    ("unknown", 0),
    ("host", 1),
    ("world", 2),
    ("unmanaged", 3),
    ("health", 4),
    ("init", 5),
    ("remote-node", 6),
    ("kube-apiserver", 7),
    ("ingress", 8),
    ("world-ipv4", 9),
    ("world-ipv6", 10),
    ("overlay-to-encrypt", 11),
];

/// Monitor message types by `-t` name (`pkg/monitor/api/types.go`).
const EVENT_TYPES: &[(&str, i32)] = &[
    ("drop", 1),
    ("debug", 2),
    ("capture", 3),
    ("trace", 4),
    ("policy-verdict", 5),
    ("trace-sock", 7),
    ("l7", 129),
    ("agent", 130),
];

/// Trace observation points by name; the number is the event's sub-type.
pub(crate) const TRACE_POINTS: &[(&str, i32)] = &[
    ("to-endpoint", 0),
    ("to-proxy", 1),
    ("to-host", 2),
    ("to-stack", 3),
    ("to-overlay", 4),
    ("from-endpoint", 5),
    ("from-proxy", 6),
    ("from-host", 7),
    ("from-stack", 8),
    ("from-overlay", 9),
    ("from-network", 10),
    ("to-network", 11),
    ("from-crypto", 12),
    ("to-crypto", 13),
];

/// Agent notification sub-types by `-t agent:NAME` (Hubble's `agentEventSubtypes`).
const AGENT_SUBTYPES: &[(&str, i32)] = &[
    ("unspecified", 0),
    ("message", 1),
    ("agent-started", 2),
    ("endpoint-regenerate-success", 3),
    ("endpoint-regenerate-failure", 4),
    ("policy-updated", 5),
    ("policy-deleted", 6),
    ("endpoint-created", 7),
    ("endpoint-deleted", 8),
    ("ipcache-upserted", 9),
    ("ipcache-deleted", 10),
];

/// A whitelist or blacklist under construction: Hubble's `filterTracker`.
#[derive(Default)]
struct Tracker {
    /// `left OR right`; either-direction flags put the source side in `left`.
    left: Option<FlowFilter>,
    right: Option<FlowFilter>,
    /// `--namespace` (and `-A` as ""), applied to the source of `left`, the destination of
    /// `right`.
    ns: Vec<String>,
    /// `--from-namespace`, applied to the source of both.
    src_ns: Vec<String>,
    /// `--to-namespace`, applied to the destination of both.
    dst_ns: Vec<String>,
    /// Flags used so far, for conflict checks.
    changed: Vec<&'static str>,
}

impl Tracker {
    fn apply(&mut self, update: impl Fn(&mut FlowFilter)) {
        update(self.left.get_or_insert_with(FlowFilter::default));
        update(self.right.get_or_insert_with(FlowFilter::default));
    }

    fn apply_left(&mut self, update: impl FnOnce(&mut FlowFilter)) {
        update(self.left.get_or_insert_with(FlowFilter::default));
    }

    fn apply_right(&mut self, update: impl FnOnce(&mut FlowFilter)) {
        update(self.right.get_or_insert_with(FlowFilter::default));
    }

    fn check_conflicts(&self) -> Result<(), String> {
        for group in CONFLICTS {
            for &used in group.iter() {
                if !self.changed.contains(&used) {
                    continue;
                }
                if let Some(other) = group
                    .iter()
                    .find(|&&other| other != used && self.changed.contains(&other))
                {
                    return Err(format!("filters --{used} and --{other} cannot be combined"));
                }
            }
        }
        Ok(())
    }

    fn check_namespace_conflicts(&self) -> Result<(), String> {
        for ff in [&self.left, &self.right].into_iter().flatten() {
            ns_conflicts(&self.ns, &ff.source_pod)?;
            ns_conflicts(&self.ns, &ff.source_service)?;
            ns_conflicts(&self.ns, &ff.destination_pod)?;
            ns_conflicts(&self.ns, &ff.destination_service)?;
            ns_conflicts(&self.src_ns, &ff.source_pod)?;
            ns_conflicts(&self.src_ns, &ff.source_service)?;
            ns_conflicts(&self.dst_ns, &ff.destination_pod)?;
            ns_conflicts(&self.dst_ns, &ff.destination_service)?;
            inconsistent_namespaces(&ff.source_pod, &ff.source_service)?;
            inconsistent_namespaces(&ff.destination_pod, &ff.destination_service)?;
        }
        Ok(())
    }

    /// Adds one flag: Hubble's `flowFilter.set`.
    fn set(&mut self, flag: &'static str, value: &str) -> Result<(), String> {
        if !self.changed.contains(&flag) {
            self.changed.push(flag);
        }
        self.check_conflicts()?;
        let v = value.to_owned();
        match flag {
            "uuid" => self.apply(|f| f.uuid.push(v.clone())),
            "fqdn" | "from-fqdn" | "to-fqdn" => {
                check_field(flag, |f| f.source_fqdn = vec![v.clone()])?;
                match flag {
                    "fqdn" => {
                        self.apply_left(|f| f.source_fqdn.push(v.clone()));
                        self.apply_right(|f| f.destination_fqdn.push(v));
                    }
                    "from-fqdn" => self.apply(|f| f.source_fqdn.push(v.clone())),
                    _ => self.apply(|f| f.destination_fqdn.push(v.clone())),
                }
            }
            "pod" | "from-pod" | "to-pod" => {
                check_field(flag, |f| f.source_pod = vec![v.clone()])?;
                match flag {
                    "pod" => {
                        self.apply_left(|f| f.source_pod.push(v.clone()));
                        self.apply_right(|f| f.destination_pod.push(v));
                    }
                    "from-pod" => self.apply(|f| f.source_pod.push(v.clone())),
                    _ => self.apply(|f| f.destination_pod.push(v.clone())),
                }
            }
            "ip" | "from-ip" | "to-ip" | "snat-ip" => {
                check_field(flag, |f| f.source_ip = vec![v.clone()])?;
                match flag {
                    "ip" => {
                        self.apply_left(|f| f.source_ip.push(v.clone()));
                        self.apply_right(|f| f.destination_ip.push(v));
                    }
                    "from-ip" => self.apply(|f| f.source_ip.push(v.clone())),
                    "to-ip" => self.apply(|f| f.destination_ip.push(v.clone())),
                    _ => self.apply(|f| f.source_ip_xlated.push(v.clone())),
                }
            }
            "ipv4" => self.apply(|f| f.ip_version.push(IpVersion::V4)),
            "ipv6" => self.apply(|f| f.ip_version.push(IpVersion::V6)),
            "ip-version" => {
                let version = parse_ip_version(value)?;
                self.apply(|f| f.ip_version.push(version));
            }
            "label" | "from-label" | "to-label" => {
                check_field(flag, |f| f.source_label = vec![v.clone()])?;
                match flag {
                    "label" => {
                        self.apply_left(|f| f.source_label.push(v.clone()));
                        self.apply_right(|f| f.destination_label.push(v));
                    }
                    "from-label" => self.apply(|f| f.source_label.push(v.clone())),
                    _ => self.apply(|f| f.destination_label.push(v.clone())),
                }
            }
            "namespace" | "from-namespace" | "to-namespace" => {
                if value.contains('/') {
                    return Err(format!(
                        "--{flag}: {value:?} is not a namespace name (it contains '/'); use \
                         --pod NAMESPACE/POD for a pod"
                    ));
                }
                match flag {
                    "namespace" => self.ns.push(v),
                    "from-namespace" => self.src_ns.push(v),
                    _ => self.dst_ns.push(v),
                }
            }
            "all-namespaces" => self.ns.push(String::new()),
            "from-all-namespaces" => self.src_ns.push(String::new()),
            "to-all-namespaces" => self.dst_ns.push(String::new()),
            "service" | "from-service" | "to-service" => {
                check_field(flag, |f| f.source_service = vec![v.clone()])?;
                match flag {
                    "service" => {
                        self.apply_left(|f| f.source_service.push(v.clone()));
                        self.apply_right(|f| f.destination_service.push(v));
                    }
                    "from-service" => self.apply(|f| f.source_service.push(v.clone())),
                    _ => self.apply(|f| f.destination_service.push(v.clone())),
                }
            }
            "port" | "from-port" | "to-port" => {
                check_field(flag, |f| f.source_port = vec![v.clone()])?;
                match flag {
                    "port" => {
                        self.apply_left(|f| f.source_port.push(v.clone()));
                        self.apply_right(|f| f.destination_port.push(v));
                    }
                    "from-port" => self.apply(|f| f.source_port.push(v.clone())),
                    _ => self.apply(|f| f.destination_port.push(v.clone())),
                }
            }
            "trace-id" => self.apply(|f| f.trace_id.push(v.clone())),
            "ip-trace-id" => {
                let id = value
                    .parse::<u64>()
                    .ok()
                    .filter(|&id| id > 0)
                    .ok_or_else(|| {
                        format!("--ip-trace-id: {value:?} is not a trace ID (a number above 0)")
                    })?;
                self.apply(|f| f.ip_trace_id.push(id));
            }
            "verdict" => {
                let verdict = parse_enum::<Verdict>(flag, value, Verdict::ALL)?;
                self.apply(|f| f.verdict.push(verdict));
            }
            "drop-reason-desc" => {
                let reason = parse_enum::<DropReason>(flag, value, DropReason::ALL)?;
                self.apply(|f| f.drop_reason_desc.push(reason));
            }
            "http-status" => {
                check_field(flag, |f| f.http_status_code = vec![v.clone()])?;
                self.apply(|f| f.http_status_code.push(v.clone()));
            }
            "http-method" => self.apply(|f| f.http_method.push(v.clone())),
            "http-path" => {
                check_field(flag, |f| f.http_path = vec![v.clone()])?;
                self.apply(|f| f.http_path.push(v.clone()));
            }
            "http-url" => {
                check_field(flag, |f| f.http_url = vec![v.clone()])?;
                self.apply(|f| f.http_url.push(v.clone()));
            }
            "http-header" => {
                let (key, val) = value.split_once(':').ok_or_else(|| {
                    format!("--http-header: {value:?} is not a header; expected NAME:VALUE")
                })?;
                let header = HttpHeader {
                    key: key.to_owned(),
                    value: val.to_owned(),
                };
                self.apply(|f| f.http_header.push(header.clone()));
            }
            "type" => {
                let event_type = parse_event_type(value)?;
                self.apply(|f| f.event_type.push(event_type));
            }
            "protocol" => {
                check_field(flag, |f| f.protocol = vec![v.clone()])?;
                self.apply(|f| f.protocol.push(v.clone()));
            }
            "workload" | "from-workload" | "to-workload" => {
                let workload = parse_workload(value);
                match flag {
                    "workload" => {
                        self.apply_left(|f| f.source_workload.push(workload.clone()));
                        self.apply_right(|f| f.destination_workload.push(workload));
                    }
                    "from-workload" => self.apply(|f| f.source_workload.push(workload.clone())),
                    _ => self.apply(|f| f.destination_workload.push(workload.clone())),
                }
            }
            "identity" | "from-identity" | "to-identity" => {
                let id = parse_identity(flag, value)?;
                match flag {
                    "identity" => {
                        self.apply_left(|f| f.source_identity.push(id));
                        self.apply_right(|f| f.destination_identity.push(id));
                    }
                    "from-identity" => self.apply(|f| f.source_identity.push(id)),
                    _ => self.apply(|f| f.destination_identity.push(id)),
                }
            }
            "node-name" => {
                check_field(flag, |f| f.node_name = vec![v.clone()])?;
                self.apply(|f| f.node_name.push(v.clone()));
            }
            "node-label" => {
                check_field(flag, |f| f.node_labels = vec![v.clone()])?;
                self.apply(|f| f.node_labels.push(v.clone()));
            }
            "cluster" | "from-cluster" | "to-cluster" => {
                check_field(flag, |f| f.source_cluster_name = vec![v.clone()])?;
                match flag {
                    "cluster" => {
                        self.apply_left(|f| f.source_cluster_name.push(v.clone()));
                        self.apply_right(|f| f.destination_cluster_name.push(v));
                    }
                    "from-cluster" => self.apply(|f| f.source_cluster_name.push(v.clone())),
                    _ => self.apply(|f| f.destination_cluster_name.push(v.clone())),
                }
            }
            "tcp-flags" => {
                let flags = parse_tcp_flags(value)?;
                self.apply(|f| f.tcp_flags.push(flags));
            }
            "traffic-direction" => {
                let direction = match value.to_ascii_lowercase().as_str() {
                    "ingress" => TrafficDirection::Ingress,
                    "egress" => TrafficDirection::Egress,
                    _ => {
                        return Err(format!(
                            "--traffic-direction: {value:?} is not a traffic direction; \
                             expected ingress or egress"
                        ));
                    }
                };
                self.apply(|f| f.traffic_direction.push(direction));
            }
            "cel-expression" => self.apply(|f| {
                f.experimental
                    .get_or_insert_with(Default::default)
                    .cel_expression
                    .push(v.clone());
            }),
            "interface" => self.apply(|f| {
                f.interface.push(flowscope_model::flow::NetworkInterface {
                    index: 0,
                    name: v.clone(),
                });
            }),
            "encrypted" => self.apply(|f| f.encrypted.push(true)),
            "unencrypted" => self.apply(|f| f.encrypted.push(false)),
            other => return Err(format!("--{other} is not a filter flag")),
        }
        self.check_namespace_conflicts()
    }

    /// The filters this tracker stands for: Hubble's `filterTracker.flowFilters`.
    fn into_filters(mut self) -> Vec<FlowFilter> {
        if self.left.is_none()
            && self.right.is_none()
            && self.ns.is_empty()
            && self.src_ns.is_empty()
            && self.dst_ns.is_empty()
        {
            return Vec::new();
        }
        let mut left = self.left.take().unwrap_or_default();
        let mut right = self.right.take().unwrap_or_default();
        if !self.dst_ns.is_empty() {
            apply_dst_namespaces(&self.dst_ns, &mut left);
            apply_dst_namespaces(&self.dst_ns, &mut right);
        }
        if !self.src_ns.is_empty() {
            apply_src_namespaces(&self.src_ns, &mut left);
            apply_src_namespaces(&self.src_ns, &mut right);
        }
        if !self.ns.is_empty() {
            apply_src_namespaces(&self.ns, &mut left);
            apply_dst_namespaces(&self.ns, &mut right);
        }
        if left == right {
            vec![left]
        } else {
            vec![left, right]
        }
    }
}

fn apply_src_namespaces(ns: &[String], ff: &mut FlowFilter) {
    if ff.source_pod.is_empty() && ff.source_service.is_empty() {
        ff.source_pod = vec![String::new()];
    }
    ff.source_pod = add_namespaces(&ff.source_pod, ns);
    ff.source_service = add_namespaces(&ff.source_service, ns);
}

fn apply_dst_namespaces(ns: &[String], ff: &mut FlowFilter) {
    if ff.destination_pod.is_empty() && ff.destination_service.is_empty() {
        ff.destination_pod = vec![String::new()];
    }
    ff.destination_pod = add_namespaces(&ff.destination_pod, ns);
    ff.destination_service = add_namespaces(&ff.destination_service, ns);
}

/// `pod` → `ns/pod` for every namespace; names that already have a namespace stay.
fn add_namespaces(names: &[String], ns: &[String]) -> Vec<String> {
    if ns.is_empty() || names.is_empty() {
        return names.to_vec();
    }
    let mut out = Vec::new();
    for name in names {
        if name.contains('/') {
            out.push(name.clone());
        } else {
            out.extend(ns.iter().map(|n| format!("{n}/{name}")));
        }
    }
    out
}

fn namespace_of(name: &str) -> &str {
    name.split_once('/').map_or("", |(ns, _)| ns)
}

/// A pod or service named in another namespace than `--namespace` asks for.
fn ns_conflicts(namespaces: &[String], names: &[String]) -> Result<(), String> {
    for ns in namespaces {
        for name in names {
            let named = namespace_of(name);
            if !named.is_empty() && named != ns {
                return Err(format!(
                    "namespace conflict: {ns:?} does not contain {name:?}"
                ));
            }
        }
    }
    Ok(())
}

/// A pod in one namespace with a service in another (same side) can never match.
fn inconsistent_namespaces(pods: &[String], services: &[String]) -> Result<(), String> {
    for pod in pods {
        let pod_ns = namespace_of(pod);
        if pod_ns.is_empty() {
            continue;
        }
        for svc in services {
            if namespace_of(svc) != pod_ns {
                return Err(format!(
                    "namespace of service {svc:?} conflicts with pod namespace {pod_ns:?}"
                ));
            }
        }
    }
    Ok(())
}

/// Validates one flag value with the model's compiler, so the error names the flag.
fn check_field(flag: &str, set: impl FnOnce(&mut FlowFilter)) -> Result<(), String> {
    let mut ff = FlowFilter::default();
    set(&mut ff);
    FilterSet::compile(std::slice::from_ref(&ff), &[])
        .map(|_| ())
        .map_err(|e| format!("--{flag}: {}", e.problem))
}

/// A protobuf enum by name, case-insensitively (Hubble wants exact upper case).
fn parse_enum<E: Copy + std::fmt::Display>(
    flag: &str,
    value: &str,
    all: &[E],
) -> Result<E, String> {
    all.iter()
        .copied()
        .find(|e| e.to_string().eq_ignore_ascii_case(value))
        .ok_or_else(|| {
            let names: Vec<String> = all.iter().map(ToString::to_string).collect();
            format!(
                "--{flag}: {value:?} is not a valid value; expected one of {}",
                names.join(", ")
            )
        })
}

fn parse_ip_version(value: &str) -> Result<IpVersion, String> {
    match value.to_ascii_lowercase().as_str() {
        "4" | "v4" | "ipv4" | "ip4" => Ok(IpVersion::V4),
        "6" | "v6" | "ipv6" | "ip6" => Ok(IpVersion::V6),
        "none" | "" => Ok(IpVersion::NotUsed),
        _ => Err(format!(
            "--ip-version: {value:?} is not an IP version; expected v4, v6 or none"
        )),
    }
}

/// Hubble's `parseTCPFlags`: comma-separated names, any case.
fn parse_tcp_flags(value: &str) -> Result<TcpFlags, String> {
    let mut flags = TcpFlags::default();
    for name in value.split(',') {
        match name.to_ascii_uppercase().as_str() {
            "SYN" => flags.SYN = true,
            "FIN" => flags.FIN = true,
            "RST" => flags.RST = true,
            "PSH" => flags.PSH = true,
            "ACK" => flags.ACK = true,
            "URG" => flags.URG = true,
            "ECE" => flags.ECE = true,
            "CWR" => flags.CWR = true,
            "NS" => flags.NS = true,
            _ => {
                return Err(format!(
                    "--tcp-flags: {name:?} is not a TCP flag; expected a comma-separated list of \
                     SYN, FIN, RST, PSH, ACK, URG, ECE, CWR, NS"
                ));
            }
        }
    }
    Ok(flags)
}

/// Hubble's `parseWorkload`: `name`, `Kind/name` or `Kind/`.
fn parse_workload(value: &str) -> Workload {
    match value.split_once('/') {
        None => Workload {
            name: value.to_owned(),
            kind: String::new(),
        },
        Some((kind, name)) => Workload {
            name: name.to_owned(),
            kind: kind.to_owned(),
        },
    }
}

fn parse_identity(flag: &str, value: &str) -> Result<u32, String> {
    if let Some(&(_, id)) = RESERVED_IDENTITIES
        .iter()
        .find(|(name, id)| *id != 0 && *name == value)
    {
        return Ok(id);
    }
    value.parse::<u32>().map_err(|_| {
        let names: Vec<&str> = RESERVED_IDENTITIES[1..].iter().map(|(n, _)| *n).collect();
        format!(
            "--{flag}: {value:?} is not a security identity; expected a number or one of {}",
            names.join(", ")
        )
    })
}

/// `-t TYPE[:SUBTYPE]`. Sub-type names are only looked up after a type name, as Hubble does.
fn parse_event_type(value: &str) -> Result<EventTypeFilter, String> {
    let (type_part, sub_part) = match value.split_once(':') {
        Some((t, s)) => (t, Some(s)),
        None => (value, None),
    };
    let named = EVENT_TYPES.iter().find(|(name, _)| *name == type_part);
    let event_type = match named {
        Some(&(_, number)) => number,
        None => type_part.parse::<u32>().map(|n| n as i32).map_err(|_| {
            format!(
                "--type: {type_part:?} is not an event type; expected one of capture, drop, l7, \
                 policy-verdict, trace, trace-sock (or a number), optionally followed by \
                 :SUBTYPE as in trace:to-endpoint"
            )
        })?,
    };
    let mut filter = EventTypeFilter {
        event_type,
        match_sub_type: false,
        sub_type: 0,
    };
    if let Some(sub) = sub_part {
        let names = match named.map(|(name, _)| *name) {
            Some("trace") => TRACE_POINTS,
            Some("agent") => AGENT_SUBTYPES,
            _ => &[],
        };
        let sub_type = match names.iter().find(|(name, _)| *name == sub) {
            Some(&(_, number)) => number,
            None => sub.parse::<u32>().map(|n| n as i32).map_err(|_| {
                let known: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
                if known.is_empty() {
                    format!("--type: {sub:?} is not a sub-type of {type_part} (use a number)")
                } else {
                    format!(
                        "--type: {sub:?} is not a sub-type of {type_part}; expected one of {} \
                         (or a number)",
                        known.join(", ")
                    )
                }
            })?,
        };
        filter.match_sub_type = true;
        filter.sub_type = sub_type;
    }
    Ok(filter)
}

/// The whitelist and blacklist of a request.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Lists {
    pub whitelist: Vec<FlowFilter>,
    pub blacklist: Vec<FlowFilter>,
}

/// Builds the whitelist and blacklist from the filter flags in command-line order.
pub(crate) fn build_lists(args: &[FilterArg]) -> Result<Lists, String> {
    let mut white = Tracker::default();
    let mut black = Tracker::default();
    let mut negate_next = false;
    for arg in args {
        if arg.flag == "not" {
            if negate_next {
                return Err(
                    "--not --not: each --not negates only the filter flag right after it"
                        .to_owned(),
                );
            }
            negate_next = true;
            continue;
        }
        let tracker = if std::mem::take(&mut negate_next) {
            &mut black
        } else {
            &mut white
        };
        tracker.set(arg.flag, &arg.value)?;
    }
    if negate_next {
        return Err(
            "--not must be followed by the filter flag it negates, e.g. --not --namespace \
             kube-system"
                .to_owned(),
        );
    }
    Ok(Lists {
        whitelist: white.into_filters(),
        blacklist: black.into_filters(),
    })
}

/// `--allowlist`/`--denylist` values: one or more JSON FlowFilters each.
pub(crate) use flowscope_model::filter::parse_json_filters as parse_raw_filters;

/// `--print-raw-filters`: the lists as YAML, shaped like Hubble's (`allowlist:` and
/// `denylist:` with one JSON FlowFilter per item).
pub(crate) fn raw_filters_yaml(whitelist: &[FlowFilter], blacklist: &[FlowFilter]) -> String {
    let mut out = String::new();
    for (name, list) in [("allowlist", whitelist), ("denylist", blacklist)] {
        if list.is_empty() {
            continue;
        }
        out.push_str(name);
        out.push_str(":\n");
        for filter in list {
            let json = serde_json::to_string(filter).unwrap_or_default();
            out.push_str("    - '");
            out.push_str(&json.replace('\'', "''"));
            out.push_str("'\n");
        }
    }
    if out.is_empty() {
        out.push_str("{}\n");
    }
    out
}
