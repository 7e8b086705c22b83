//! `--aggregate-by`: flow counts per distinct key instead of flows (hubble#1697), e.g.
//! `src-pod,dst-pod,dst-port` gives who talks to whom on which port and how often.
//!
//! Not following, the table is printed once at the end. Following, it is redrawn in place at
//! most once a second on a terminal, and appended every [`PIPE_INTERVAL`] otherwise, only when
//! something changed; Ctrl-C prints the final counts.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::time::Duration;

use flowscope_model::flow::{L7Record, Layer4};
use flowscope_model::{Flow, GetFlowsResponse, ResponseKind, Timestamp};

use super::args::OutputFormat;
use super::format::{
    Side, Style, TimeFormat, deciding_policies, port, push_escaped, reserved_identity,
    write_flow_type, write_host_name,
};
use super::printer::{Output, node_status_line};
use super::table::Table;

/// How often a live table is redrawn on a terminal.
pub(crate) const TTY_INTERVAL: Duration = Duration::from_secs(1);
/// How often a live table is appended to a file or pipe: often enough to watch with `tail -f`,
/// rare enough not to bury the file in repeated tables.
pub(crate) const PIPE_INTERVAL: Duration = Duration::from_secs(10);
/// Rows shown in a live terminal view; the final table shows all.
const TTY_ROWS: usize = 50;
/// Separates key values inside a map key; never appears in a value (see `push_value`).
const SEP: char = '\u{1f}';

/// One thing to group flows by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AggregateKey {
    /// The source as compact output names it, without the port.
    Src,
    /// The destination as compact output names it, without the port.
    Dst,
    /// `namespace/pod` of the source.
    SrcPod,
    /// `namespace/pod` of the destination.
    DstPod,
    /// Namespace of the source.
    SrcNamespace,
    /// Namespace of the destination.
    DstNamespace,
    /// `Kind/name` of the source's workload.
    SrcWorkload,
    /// `Kind/name` of the destination's workload.
    DstWorkload,
    /// `namespace/name` of the source service.
    SrcService,
    /// `namespace/name` of the destination service.
    DstService,
    /// Source IP.
    SrcIp,
    /// Destination IP.
    DstIp,
    /// Source port.
    SrcPort,
    /// Destination port.
    DstPort,
    /// Source security identity.
    SrcIdentity,
    /// Destination security identity.
    DstIdentity,
    /// DNS names of the source.
    SrcFqdn,
    /// DNS names of the destination.
    DstFqdn,
    /// L7 protocol if any, else L4 protocol.
    Protocol,
    /// Verdict.
    Verdict,
    /// Drop reason.
    DropReason,
    /// The TYPE column of compact output.
    Type,
    /// Node name.
    Node,
    /// Traffic direction.
    TrafficDirection,
    /// Reply (true/false/unknown).
    IsReply,
    /// TCP flags.
    TcpFlags,
    /// HTTP method.
    HttpMethod,
    /// HTTP status code.
    HttpStatus,
    /// DNS query name.
    DnsQuery,
    /// The policies that allowed or denied the flow.
    Policy,
}

const KEYS: &[(&str, AggregateKey)] = &[
    ("src", AggregateKey::Src),
    ("dst", AggregateKey::Dst),
    ("src-pod", AggregateKey::SrcPod),
    ("dst-pod", AggregateKey::DstPod),
    ("src-namespace", AggregateKey::SrcNamespace),
    ("dst-namespace", AggregateKey::DstNamespace),
    ("src-workload", AggregateKey::SrcWorkload),
    ("dst-workload", AggregateKey::DstWorkload),
    ("src-service", AggregateKey::SrcService),
    ("dst-service", AggregateKey::DstService),
    ("src-ip", AggregateKey::SrcIp),
    ("dst-ip", AggregateKey::DstIp),
    ("src-port", AggregateKey::SrcPort),
    ("dst-port", AggregateKey::DstPort),
    ("src-identity", AggregateKey::SrcIdentity),
    ("dst-identity", AggregateKey::DstIdentity),
    ("src-fqdn", AggregateKey::SrcFqdn),
    ("dst-fqdn", AggregateKey::DstFqdn),
    ("protocol", AggregateKey::Protocol),
    ("verdict", AggregateKey::Verdict),
    ("drop-reason", AggregateKey::DropReason),
    ("type", AggregateKey::Type),
    ("node", AggregateKey::Node),
    ("traffic-direction", AggregateKey::TrafficDirection),
    ("is-reply", AggregateKey::IsReply),
    ("tcp-flags", AggregateKey::TcpFlags),
    ("http-method", AggregateKey::HttpMethod),
    ("http-status", AggregateKey::HttpStatus),
    ("dns-query", AggregateKey::DnsQuery),
    ("policy", AggregateKey::Policy),
];

impl AggregateKey {
    /// Parses a key name (`src-pod`, `dst-port`, ...); the error lists the valid ones.
    pub fn parse(name: &str) -> Result<AggregateKey, String> {
        let name = name.trim();
        KEYS.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, k)| *k)
            .ok_or_else(|| {
                let names: Vec<&str> = KEYS.iter().map(|(n, _)| *n).collect();
                format!("unknown key {name:?}; valid keys: {}", names.join(", "))
            })
    }

    /// The key's name as given on the command line.
    pub fn name(self) -> &'static str {
        KEYS.iter()
            .find(|(_, k)| *k == self)
            .map_or("?", |(n, _)| n)
    }

    /// Appends this key's value for `flow`; `-` when the flow has none.
    fn write(self, out: &mut String, flow: &Flow, translate: bool) {
        use AggregateKey::*;
        let start = out.len();
        let side = match self {
            Src | SrcPod | SrcNamespace | SrcWorkload | SrcService | SrcIp | SrcPort
            | SrcIdentity | SrcFqdn => Side::Source,
            _ => Side::Destination,
        };
        let endpoint = match side {
            Side::Source => flow.source.as_ref(),
            Side::Destination => flow.destination.as_ref(),
        };
        let service = match side {
            Side::Source => flow.source_service.as_ref(),
            Side::Destination => flow.destination_service.as_ref(),
        };
        let http = || flow.l7.as_ref().and_then(|l7| l7.http());
        match self {
            Src | Dst => write_host_name(out, flow, side, translate),
            SrcPod | DstPod => {
                if let Some(e) = endpoint.filter(|e| !e.pod_name.is_empty()) {
                    if !e.namespace.is_empty() {
                        push_escaped(out, &e.namespace);
                        out.push('/');
                    }
                    push_escaped(out, &e.pod_name);
                }
            }
            SrcNamespace | DstNamespace => {
                push_escaped(out, endpoint.map_or("", |e| e.namespace.as_str()));
            }
            SrcWorkload | DstWorkload => {
                if let Some(w) = endpoint.and_then(|e| e.workloads.first()) {
                    if !w.kind.is_empty() {
                        push_escaped(out, &w.kind);
                        out.push('/');
                    }
                    push_escaped(out, &w.name);
                }
            }
            SrcService | DstService => {
                if let Some(s) = service.filter(|s| !s.name.is_empty()) {
                    if !s.namespace.is_empty() {
                        push_escaped(out, &s.namespace);
                        out.push('/');
                    }
                    push_escaped(out, &s.name);
                }
            }
            SrcIp | DstIp => {
                if let Some(ip) = &flow.ip {
                    push_escaped(
                        out,
                        match side {
                            Side::Source => &ip.source,
                            Side::Destination => &ip.destination,
                        },
                    );
                }
            }
            SrcPort | DstPort => {
                if let Some(p) = port(flow, side) {
                    let _ = write!(out, "{p}");
                }
            }
            SrcIdentity | DstIdentity => {
                if let Some(e) = endpoint {
                    match reserved_identity(e.identity) {
                        Some(name) => out.push_str(name),
                        None => {
                            let _ = write!(out, "{}", e.identity);
                        }
                    }
                }
            }
            SrcFqdn | DstFqdn => {
                let names = match side {
                    Side::Source => &flow.source_names,
                    Side::Destination => &flow.destination_names,
                };
                push_escaped(out, &names.join(","));
            }
            Protocol => out.push_str(
                match (flow.l7.as_ref().and_then(|l7| l7.record.as_ref()), &flow.l4) {
                    (Some(L7Record::Dns(_)), _) => "dns",
                    (Some(L7Record::Http(_)), _) => "http",
                    (Some(L7Record::Kafka(_)), _) => "kafka",
                    (None, Some(Layer4::Tcp(_))) => "tcp",
                    (None, Some(Layer4::Udp(_))) => "udp",
                    (None, Some(Layer4::IcmpV4(_))) => "icmpv4",
                    (None, Some(Layer4::IcmpV6(_))) => "icmpv6",
                    (None, Some(Layer4::Sctp(_))) => "sctp",
                    (None, Some(Layer4::Vrrp(_))) => "vrrp",
                    (None, Some(Layer4::Igmp(_))) => "igmp",
                    (None, None) => "",
                },
            ),
            Verdict => out.push_str(flow.verdict.as_str()),
            DropReason => {
                if flow.drop_reason_desc != flowscope_model::flow::DropReason::Unknown {
                    out.push_str(flow.drop_reason_desc.as_str());
                }
            }
            Type => write_flow_type(out, flow),
            Node => push_escaped(out, &flow.node_name),
            TrafficDirection => out.push_str(flow.traffic_direction.as_str()),
            IsReply => out.push_str(match flow.is_reply {
                Some(true) => "true",
                Some(false) => "false",
                None => "unknown",
            }),
            TcpFlags => {
                if let Some(flags) = flow.tcp_flags() {
                    for (i, name) in flags.names().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str(name);
                    }
                }
            }
            HttpMethod => push_escaped(out, http().map_or("", |h| h.method.as_str())),
            HttpStatus => {
                if let Some(h) = http().filter(|h| h.code != 0) {
                    let _ = write!(out, "{}", h.code);
                }
            }
            DnsQuery => push_escaped(
                out,
                flow.l7
                    .as_ref()
                    .and_then(|l7| l7.dns())
                    .map_or("", |d| d.query.as_str()),
            ),
            Policy => {
                for (i, p) in deciding_policies(flow).iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    if !p.namespace.is_empty() {
                        push_escaped(out, &p.namespace);
                        out.push('/');
                    }
                    push_escaped(out, &p.name);
                }
            }
        }
        if out.len() == start {
            out.push('-');
        } else if out[start..].contains(SEP) {
            let value = out[start..].replace(SEP, " ");
            out.truncate(start);
            out.push_str(&value);
        }
    }
}

/// Counts flows per key and prints the table.
pub(crate) struct Aggregator {
    io: Output,
    keys: Vec<AggregateKey>,
    format: OutputFormat,
    style: Style,
    counts: HashMap<Box<str>, u64>,
    scratch: String,
    total: u64,
    lost: u64,
    /// Counts changed since the last print.
    dirty: bool,
    /// Following: the table is printed periodically, with a footer line.
    live: bool,
    /// Stdout is a terminal: live tables are redrawn in place.
    tty: bool,
    /// Tables appended so far (live, not a terminal).
    printed: u64,
}

impl Aggregator {
    pub(crate) fn new(
        io: Output,
        keys: Vec<AggregateKey>,
        format: OutputFormat,
        style: Style,
        live: bool,
        tty: bool,
    ) -> Self {
        Aggregator {
            io,
            keys,
            format,
            style,
            counts: HashMap::new(),
            scratch: String::new(),
            total: 0,
            lost: 0,
            dirty: false,
            live,
            tty,
            printed: 0,
        }
    }

    /// How often [`Aggregator::tick`] should run while following.
    pub(crate) fn interval(&self) -> Duration {
        if self.tty {
            TTY_INTERVAL
        } else {
            PIPE_INTERVAL
        }
    }

    /// Flows counted so far.
    pub(crate) fn flows(&self) -> u64 {
        self.total
    }

    pub(crate) fn response(&mut self, resp: &GetFlowsResponse) -> io::Result<()> {
        match &resp.kind {
            ResponseKind::Flow(flow) => self.flow(flow),
            ResponseKind::LostEvents(lost) => {
                self.lost += lost.num_events_lost;
                self.dirty = true;
            }
            ResponseKind::NodeStatus(status) => {
                if let Some(line) = node_status_line(&self.style, resp, status) {
                    self.io.err.write_all(line.as_bytes())?;
                }
            }
        }
        Ok(())
    }

    fn flow(&mut self, flow: &Flow) {
        self.scratch.clear();
        for (i, key) in self.keys.iter().enumerate() {
            if i > 0 {
                self.scratch.push(SEP);
            }
            key.write(&mut self.scratch, flow, self.style.ip_translation);
        }
        match self.counts.get_mut(self.scratch.as_str()) {
            Some(n) => *n += 1,
            None => {
                self.counts.insert(self.scratch.as_str().into(), 1);
            }
        }
        self.total += 1;
        self.dirty = true;
    }

    /// Periodic print while following.
    pub(crate) fn tick(&mut self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        self.print(false)
    }

    /// The final table.
    pub(crate) fn finish(&mut self) -> io::Result<()> {
        if self.live && !self.dirty && self.printed > 0 && !self.tty {
            // Already printed as it is.
            return self.io.out.flush();
        }
        self.print(true)
    }

    fn sorted(&self) -> Vec<(&str, u64)> {
        let mut rows: Vec<(&str, u64)> = self.counts.iter().map(|(k, v)| (&**k, *v)).collect();
        rows.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        rows
    }

    fn footer(&self, out: &mut String) {
        if self.live {
            let mut now = String::new();
            TimeFormat::Rfc3339.write(&mut now, Some(Timestamp::now()));
            let _ = write!(out, "{now}: ");
        }
        let _ = write!(out, "{} flows in {} groups", self.total, self.counts.len());
        if self.lost > 0 {
            let _ = write!(out, ", {} events lost", self.lost);
        }
        out.push('\n');
    }

    fn print(&mut self, last: bool) -> io::Result<()> {
        self.dirty = false;
        let mut out = String::new();
        if self.format.is_json() {
            for (key, count) in self.sorted() {
                out.push('{');
                for (name, value) in self.keys.iter().zip(key.split(SEP)) {
                    out.push_str(&serde_json::to_string(name.name()).unwrap_or_default());
                    out.push(':');
                    out.push_str(&serde_json::to_string(value).unwrap_or_default());
                    out.push(',');
                }
                let _ = writeln!(out, "\"count\":{count}}}");
            }
            self.io.out.write_all(out.as_bytes())?;
            self.printed += 1;
            return self.io.out.flush();
        }
        let redraw = self.live && self.tty;
        if redraw {
            // Home and clear, then draw the whole screen.
            out.push_str("\x1b[H\x1b[2J");
        } else if self.printed > 0 {
            out.push('\n');
        }
        let rows = self.sorted();
        let limit = if redraw && !last {
            TTY_ROWS
        } else {
            usize::MAX
        };
        let mut table = Table::default();
        let mut header: Vec<String> = self
            .keys
            .iter()
            .map(|k| k.name().to_ascii_uppercase())
            .collect();
        header.push("COUNT".to_owned());
        table.push(header);
        for (key, count) in rows.iter().take(limit) {
            let mut row: Vec<String> = key.split(SEP).map(str::to_owned).collect();
            row.push(count.to_string());
            table.push(row);
        }
        table.render(&mut out);
        if rows.len() > limit {
            let _ = writeln!(out, "... and {} more groups", rows.len() - limit);
        }
        if self.live {
            self.footer(&mut out);
        }
        self.io.out.write_all(out.as_bytes())?;
        if !self.live {
            let mut footer = String::new();
            self.footer(&mut footer);
            self.io.err.write_all(footer.as_bytes())?;
        }
        self.printed += 1;
        self.io.out.flush()
    }

    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.io.out.flush()
    }

    /// Stderr, for messages that are not counts.
    pub(crate) fn err(&mut self) -> &mut dyn Write {
        &mut *self.io.err
    }
}
