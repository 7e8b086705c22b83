//! The pieces of a printed flow, as Hubble's printer (`hubble/pkg/printer/printer.go`) renders
//! them: times in Go layouts, `ns/pod:port` hosts, `(ID:1234)` identities, the TYPE column,
//! verdicts and summaries, with Hubble's colors and its escaping of terminal control
//! characters. Everything writes into a caller's `String` so a line costs no allocations.

use std::fmt::Write as _;

use flowscope_model::flow::{
    AuthType, DropReason, Flow, L7Record, LostEvent, Policy, SocketTranslationPoint,
    TrafficDirection, Verdict, event_type,
};
use flowscope_model::{GetFlowsResponse, Timestamp};

use super::filters::{RESERVED_IDENTITIES, TRACE_POINTS};

/// `--time-format`: Hubble's named Go layouts, always rendered in UTC as Hubble's
/// `timestamppb.AsTime()` does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimeFormat {
    /// `Jan _2 15:04:05.000`
    #[default]
    StampMilli,
    /// `2006-01-02`
    YearMonthDay,
    /// `2006-01-02T15Z07:00`
    YearMonthDayHour,
    /// `2006-01-02T15:04Z07:00`
    YearMonthDayHourMinute,
    /// `2006-01-02T15:04:05Z07:00`
    Rfc3339,
    /// `2006-01-02T15:04:05.999Z07:00` (trailing zeros dropped)
    Rfc3339Milli,
    /// `2006-01-02T15:04:05.999999Z07:00`
    Rfc3339Micro,
    /// `2006-01-02T15:04:05.999999999Z07:00`
    Rfc3339Nano,
    /// `Mon, 02 Jan 2006 15:04:05 -0700`
    Rfc1123Z,
}

const TIME_FORMATS: &[(&str, TimeFormat)] = &[
    ("StampMilli", TimeFormat::StampMilli),
    ("YearMonthDay", TimeFormat::YearMonthDay),
    ("YearMonthDayHour", TimeFormat::YearMonthDayHour),
    ("YearMonthDayHourMinute", TimeFormat::YearMonthDayHourMinute),
    ("RFC3339", TimeFormat::Rfc3339),
    ("RFC3339Milli", TimeFormat::Rfc3339Milli),
    ("RFC3339Micro", TimeFormat::Rfc3339Micro),
    ("RFC3339Nano", TimeFormat::Rfc3339Nano),
    ("RFC1123Z", TimeFormat::Rfc1123Z),
];

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl TimeFormat {
    /// Parses a format name, ignoring case as Hubble does. Hubble silently falls back to
    /// StampMilli on a typo; we say what is accepted instead.
    pub fn parse(name: &str) -> Result<TimeFormat, String> {
        TIME_FORMATS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, f)| *f)
            .ok_or_else(|| {
                let names: Vec<&str> = TIME_FORMATS.iter().map(|(n, _)| *n).collect();
                format!(
                    "{name:?} is not a time format; expected one of {}",
                    names.join(", ")
                )
            })
    }

    /// Appends `ts` in this format, or `N/A` when there is no time (as Hubble).
    pub fn write(self, out: &mut String, ts: Option<Timestamp>) {
        let Some(ts) = ts else {
            out.push_str("N/A");
            return;
        };
        let dt = civil(ts);
        let (year, month, day) = (dt.year(), dt.month(), dt.day());
        let (hour, minute, second) = (dt.hour(), dt.minute(), dt.second());
        let nanos = dt.subsec_nanosecond();
        let month_name = MONTHS[(month - 1) as usize];
        // Writing to a String cannot fail.
        let _ = match self {
            TimeFormat::StampMilli => write!(
                out,
                "{month_name} {day:>2} {hour:02}:{minute:02}:{second:02}.{:03}",
                nanos / 1_000_000
            ),
            TimeFormat::YearMonthDay => write!(out, "{year:04}-{month:02}-{day:02}"),
            TimeFormat::YearMonthDayHour => {
                write!(out, "{year:04}-{month:02}-{day:02}T{hour:02}Z")
            }
            TimeFormat::YearMonthDayHourMinute => {
                write!(out, "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}Z")
            }
            TimeFormat::Rfc3339
            | TimeFormat::Rfc3339Milli
            | TimeFormat::Rfc3339Micro
            | TimeFormat::Rfc3339Nano => {
                let _ = write!(
                    out,
                    "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}"
                );
                let digits = match self {
                    TimeFormat::Rfc3339Milli => 3,
                    TimeFormat::Rfc3339Micro => 6,
                    TimeFormat::Rfc3339Nano => 9,
                    _ => 0,
                };
                push_fraction(out, nanos as u32, digits);
                out.push('Z');
                Ok(())
            }
            TimeFormat::Rfc1123Z => write!(
                out,
                "{}, {day:02} {month_name} {year:04} {hour:02}:{minute:02}:{second:02} +0000",
                weekday_name(dt.weekday())
            ),
        };
    }
}

fn civil(ts: Timestamp) -> jiff::civil::DateTime {
    let ts = jiff::Timestamp::from_nanosecond(i128::from(ts.as_unix_nanos()))
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    jiff::tz::Offset::UTC.to_datetime(ts)
}

/// Go's `.999` layouts: up to `digits` fractional digits, truncated, trailing zeros and an
/// empty fraction dropped.
fn push_fraction(out: &mut String, nanos: u32, digits: u32) {
    if digits == 0 {
        return;
    }
    let mut value = nanos / 10u32.pow(9 - digits);
    let mut width = digits;
    while width > 0 && value.is_multiple_of(10) {
        value /= 10;
        width -= 1;
    }
    if width > 0 {
        let _ = write!(out, ".{value:0width$}", width = width as usize);
    }
}

fn weekday_name(day: jiff::civil::Weekday) -> &'static str {
    use jiff::civil::Weekday::*;
    match day {
        Monday => "Mon",
        Tuesday => "Tue",
        Wednesday => "Wed",
        Thursday => "Thu",
        Friday => "Fri",
        Saturday => "Sat",
        Sunday => "Sun",
    }
}

/// ANSI colors as fatih/color writes them: `ESC[<code>m` … `ESC[0m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Color {
    Red,
    Green,
    Yellow,
    Magenta,
    Cyan,
}

impl Color {
    fn start(self) -> &'static str {
        match self {
            Color::Red => "\x1b[31m",
            Color::Green => "\x1b[32m",
            Color::Yellow => "\x1b[33m",
            Color::Magenta => "\x1b[35m",
            Color::Cyan => "\x1b[36m",
        }
    }
}

const RESET: &str = "\x1b[0m";

/// How flows are rendered, shared by the compact, dict and table printers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Style {
    pub color: bool,
    pub ip_translation: bool,
    pub time_format: TimeFormat,
    pub node_name: bool,
    pub policy_names: bool,
}

impl Style {
    pub(crate) fn open(&self, out: &mut String, color: Color) {
        if self.color {
            out.push_str(color.start());
        }
    }

    pub(crate) fn close(&self, out: &mut String) {
        if self.color {
            out.push_str(RESET);
        }
    }
}

/// Appends text that came from the network with terminal control characters made visible,
/// as Hubble's terminal escaper does (ESC → `^[`, CR → `\r`), and also LF → `\n` so a field
/// cannot forge a line.
pub(crate) fn push_escaped(out: &mut String, text: &str) {
    if !text.bytes().any(|b| matches!(b, 0x1b | b'\r' | b'\n')) {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '\x1b' => out.push_str("^["),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Which end of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Source,
    Destination,
}

/// The port of one side for TCP, UDP and SCTP (what Hubble's `GetPorts` returns).
pub(crate) fn port(flow: &Flow, side: Side) -> Option<u32> {
    flow.ports().map(|(src, dst)| match side {
        Side::Source => src,
        Side::Destination => dst,
    })
}

/// The host part Hubble shows for one side: `ns/pod`, else `ns/service`, else the DNS names,
/// else the IP (or only the IP without translation). Ethernet-only flows show MACs.
pub(crate) fn write_host_name(out: &mut String, flow: &Flow, side: Side, translate: bool) {
    let Some(ip) = &flow.ip else {
        if let Some(eth) = &flow.ethernet {
            push_escaped(
                out,
                match side {
                    Side::Source => &eth.source,
                    Side::Destination => &eth.destination,
                },
            );
        }
        return;
    };
    let (endpoint, service, names, addr) = match side {
        Side::Source => (
            flow.source.as_ref(),
            flow.source_service.as_ref(),
            &flow.source_names,
            &ip.source,
        ),
        Side::Destination => (
            flow.destination.as_ref(),
            flow.destination_service.as_ref(),
            &flow.destination_names,
            &ip.destination,
        ),
    };
    if translate {
        // The service's namespace wins over the pod's, as in Hubble's GetHostNames.
        let namespace = service
            .map(|s| s.namespace.as_str())
            .or(endpoint.map(|e| e.namespace.as_str()))
            .unwrap_or("");
        let pod = endpoint.map_or("", |e| e.pod_name.as_str());
        let svc = service.map_or("", |s| s.name.as_str());
        let name = if !pod.is_empty() { pod } else { svc };
        if !name.is_empty() {
            if !namespace.is_empty() {
                push_escaped(out, namespace);
                out.push('/');
            }
            push_escaped(out, name);
            return;
        }
        if !names.is_empty() {
            for (i, n) in names.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_escaped(out, n);
            }
            return;
        }
    }
    push_escaped(out, addr);
}

/// SOURCE/DESTINATION as Hubble prints them: the host, `:port` when there is a non-zero
/// port (IPv6 in brackets, like Go's `net.JoinHostPort`), all in cyan with the port in yellow.
pub(crate) fn write_host(out: &mut String, style: &Style, flow: &Flow, side: Side) {
    if flow.ip.is_none() && flow.ethernet.is_none() {
        return;
    }
    style.open(out, Color::Cyan);
    let start = out.len();
    write_host_name(out, flow, side, style.ip_translation);
    if flow.ip.is_some()
        && let Some(p) = port(flow, side).filter(|&p| p != 0)
    {
        if out[start..].contains(':') {
            out.insert(start, '[');
            out.push(']');
        }
        out.push(':');
        style.open(out, Color::Yellow);
        let _ = write!(out, "{p}");
        style.close(out);
    }
    style.close(out);
}

/// The name of a reserved identity, as `NumericIdentity.String()` gives it.
pub(crate) fn reserved_identity(id: u32) -> Option<&'static str> {
    // overlay-to-encrypt (11) has a label but no name in Hubble's table.
    RESERVED_IDENTITIES
        .iter()
        .find(|(_, n)| *n == id && id <= 10)
        .map(|(name, _)| *name)
}

/// `(world)` or `(ID:1234)`, in magenta.
pub(crate) fn write_identity(out: &mut String, style: &Style, id: u32) {
    style.open(out, Color::Magenta);
    match reserved_identity(id) {
        Some(name) => {
            out.push('(');
            out.push_str(name);
            out.push(')');
        }
        None => {
            let _ = write!(out, "(ID:{id})");
        }
    }
    style.close(out);
}

/// The identity of one side (0 when the endpoint is unknown).
pub(crate) fn identity(flow: &Flow, side: Side) -> u32 {
    match side {
        Side::Source => flow.source.as_ref().map_or(0, |e| e.identity),
        Side::Destination => flow.destination.as_ref().map_or(0, |e| e.identity),
    }
}

/// Cilium's drop and error texts by number (`pkg/monitor/api/drop.go`): the drop reasons
/// come from the model; these are the low codes it does not cover.
const LOW_ERRORS: &[(u8, &str)] = &[
    (0, "Success"),
    (2, "Invalid packet"),
    (3, "Interface"),
    (4, "Interface Decrypted"),
    (5, "LB, sock cgroup: No backend slot entry found"),
    (6, "LB, sock cgroup: No backend entry found"),
    (7, "LB, sock cgroup: Reverse entry update failed"),
    (8, "LB, sock cgroup: Reverse entry stale"),
    (9, "Fragmented packet"),
    (10, "Fragmented packet entry update failed"),
    (11, "Missed tail call to custom program"),
    (12, "Interface Decrypting"),
    (13, "Interface Encrypting"),
    (14, "LB: sock cgroup: Reverse entry delete succeeded"),
    (15, "MTU error message"),
];

/// Hubble's `api.DropReason(uint8(sub_type))`.
fn write_drop_reason(out: &mut String, sub_type: i32) {
    let code = sub_type as u8;
    if let Some((_, text)) = LOW_ERRORS.iter().find(|(c, _)| *c == code) {
        out.push_str(text);
    } else if let Some(reason) =
        DropReason::from_number(i32::from(code)).filter(|r| *r != DropReason::Unknown)
    {
        out.push_str(reason.description());
    } else {
        let _ = write!(out, "{code}, 0");
    }
}

/// `api.PolicyMatchType(n).String()`.
fn policy_match_type(n: u32) -> &'static str {
    match n {
        0 => "none",
        1 => "L3-Only",
        2 => "L3-L4",
        3 => "L4-Only",
        4 => "all",
        5 => "L3-Proto",
        6 => "Proto-Only",
        _ => "unknown",
    }
}

/// The TYPE column: Hubble's `GetFlowType`.
pub(crate) fn write_flow_type(out: &mut String, flow: &Flow) {
    if let Some(l7) = &flow.l7 {
        let (protocol, source) = match &l7.record {
            Some(L7Record::Http(_)) => ("http", None),
            Some(L7Record::Dns(dns)) => ("dns", Some(dns.observation_source.as_str())),
            Some(L7Record::Kafka(_)) => ("kafka", None),
            None => ("l7", None),
        };
        out.push_str(protocol);
        out.push('-');
        out.push_str(&l7.l7_type.as_str().to_ascii_lowercase());
        if let Some(source) = source {
            out.push(' ');
            push_escaped(out, source);
        }
        return;
    }
    let (kind, sub_type) = flow
        .event_type
        .map_or((0, 0), |e| (e.event_type, e.sub_type));
    match kind {
        event_type::TRACE => {
            let point = sub_type as u8;
            match TRACE_POINTS.iter().find(|(_, n)| *n == i32::from(point)) {
                Some((name, _)) => out.push_str(name),
                None => {
                    let _ = write!(out, "{point}");
                }
            }
        }
        event_type::DROP => write_drop_reason(out, sub_type),
        event_type::POLICY_VERDICT => {
            let _ = write!(
                out,
                "policy-verdict:{} {}",
                policy_match_type(flow.policy_match_type),
                flow.traffic_direction.as_str()
            );
        }
        event_type::CAPTURE => out.push_str(flow.debug_capture_point.as_str()),
        event_type::TRACE_SOCK => out.push_str(match flow.sock_xlate_point {
            SocketTranslationPoint::PostDirectionFwd => "post-xlate-fwd",
            SocketTranslationPoint::PostDirectionRev => "post-xlate-rev",
            SocketTranslationPoint::PreDirectionFwd => "pre-xlate-fwd",
            SocketTranslationPoint::PreDirectionRev => "pre-xlate-rev",
            other => other.as_str(),
        }),
        _ => out.push_str("UNKNOWN"),
    }
}

/// ` BY name (Kind), name2 (Kind)` for the policies that have both a name and a kind.
fn write_policy_names(out: &mut String, policies: &[Policy]) {
    let mut first = true;
    for p in policies
        .iter()
        .filter(|p| !p.kind.is_empty() && !p.name.is_empty())
    {
        out.push_str(if first { " BY " } else { ", " });
        first = false;
        push_escaped(out, &p.name);
        out.push_str(" (");
        push_escaped(out, &p.kind);
        out.push(')');
    }
}

/// The policies that decided a flow, for `--print-policy-names`.
///
/// Policy-verdict events follow Hubble exactly: allowed/denied by verdict, ingress/egress by
/// the traffic direction, nothing when the direction is unknown. Hubble prints no names on
/// other events although the observer attributes drops and traces too, so for those the list
/// of the flow's direction is used, or whichever list is set when the direction is unknown;
/// AUDIT shows the policies that would have denied it.
pub(crate) fn deciding_policies(flow: &Flow) -> &[Policy] {
    let policy_verdict = flow
        .event_type
        .is_some_and(|e| e.event_type == event_type::POLICY_VERDICT);
    let deny = match flow.verdict {
        Verdict::Forwarded | Verdict::Redirected => false,
        Verdict::Dropped | Verdict::Error => true,
        Verdict::Audit if !policy_verdict => true,
        _ => return &[],
    };
    let (egress, ingress) = if deny {
        (&flow.egress_denied_by, &flow.ingress_denied_by)
    } else {
        (&flow.egress_allowed_by, &flow.ingress_allowed_by)
    };
    match flow.traffic_direction {
        TrafficDirection::Egress => egress,
        TrafficDirection::Ingress => ingress,
        TrafficDirection::Unknown if policy_verdict => &[],
        TrafficDirection::Unknown => {
            if egress.is_empty() {
                ingress
            } else {
                egress
            }
        }
    }
}

/// The VERDICT column: Hubble's `getVerdict` (ALLOWED/DENIED/AUDITED for policy verdicts).
pub(crate) fn write_verdict(out: &mut String, style: &Style, flow: &Flow) {
    let policy_verdict = flow
        .event_type
        .is_some_and(|e| e.event_type == event_type::POLICY_VERDICT);
    let (text, color) = match flow.verdict {
        Verdict::Forwarded | Verdict::Redirected => (
            if policy_verdict {
                "ALLOWED"
            } else {
                flow.verdict.as_str()
            },
            Some(Color::Green),
        ),
        Verdict::Dropped | Verdict::Error => (
            if policy_verdict {
                "DENIED"
            } else {
                flow.verdict.as_str()
            },
            Some(Color::Red),
        ),
        Verdict::Audit => (
            if policy_verdict {
                "AUDITED"
            } else {
                flow.verdict.as_str()
            },
            Some(Color::Yellow),
        ),
        Verdict::Traced | Verdict::Translated => (flow.verdict.as_str(), Some(Color::Yellow)),
        Verdict::Unknown => (flow.verdict.as_str(), None),
    };
    if let Some(color) = color {
        style.open(out, color);
    }
    out.push_str(text);
    if style.policy_names {
        write_policy_names(out, deciding_policies(flow));
    }
    if color.is_some() {
        style.close(out);
    }
}

/// The SUMMARY column: Hubble's `getSummary` — the IP trace ID, the flow's summary and the
/// authentication type. A flow without a summary gets the one Hubble's parsers would have
/// written ("TCP Flags: SYN", "DNS Query example.com. A", "HTTP/1.1 200 3ms (GET /)").
pub(crate) fn write_summary(out: &mut String, style: &Style, flow: &Flow) {
    if let Some(id) = flow.ip_trace_id.as_ref().filter(|t| t.trace_id > 0) {
        let _ = write!(out, "IP Trace ID: {}; ", id.trace_id);
    }
    if flow.summary.is_empty() {
        push_escaped(out, &flow.default_summary());
    } else {
        push_escaped(out, &flow.summary);
    }
    if flow.auth_type != AuthType::Disabled {
        out.push_str("; Auth: ");
        let color = if flow.auth_type == AuthType::TestAlwaysFail {
            Color::Red
        } else {
            Color::Green
        };
        style.open(out, color);
        out.push_str(flow.auth_type.as_str());
        style.close(out);
    }
}

/// `CPU(0) 5 (first: …, last: …)` for compact, with `sep` between CPU and count (` - ` in
/// dict and table).
pub(crate) fn write_lost_summary(out: &mut String, style: &Style, lost: &LostEvent, sep: &str) {
    let _ = write!(
        out,
        "CPU({}){sep}{}",
        lost.cpu.unwrap_or(0),
        lost.num_events_lost
    );
    if let (Some(first), Some(last)) = (lost.first, lost.last) {
        out.push_str(" (first: ");
        style.time_format.write(out, Some(first));
        out.push_str(", last: ");
        style.time_format.write(out, Some(last));
        out.push(')');
    }
}

/// The time of a response: its own, or its flow's.
pub(crate) fn response_time(resp: &GetFlowsResponse) -> Option<Timestamp> {
    resp.time.or_else(|| resp.flow().and_then(|f| f.time))
}
