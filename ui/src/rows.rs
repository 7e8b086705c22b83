//! The flow table's data: one [`Row`] per flow with its cells rendered once on arrival, the
//! bounded newest-first [`RowBuffer`], the columns a user can choose, and the selection (a map
//! node or edge) that narrows the rows.

use std::collections::VecDeque;
use std::sync::Arc;

use flowscope_model::{
    Flow,
    flow::{DropReason, Endpoint, Layer4, TrafficDirection, Verdict},
    graph::FlowKeys,
    time::TimestampBuf,
};

/// Rows kept: enough to scroll back over a few seconds of a busy node or minutes of a quiet
/// one; at about 2 KB a row (the original JSON line plus its cells) a few megabytes at most.
pub const MAX_ROWS: usize = 2_000;

/// A table column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Column {
    /// When the flow was observed (UTC).
    Time,
    /// The sending pod, or its address.
    Source,
    /// The receiving pod, or its address.
    Destination,
    /// Destination port and protocol.
    Port,
    /// L7 summary (HTTP method, path, status; DNS query).
    L7,
    /// FORWARDED, DROPPED, ...
    Verdict,
    /// Why it was dropped.
    DropReason,
    /// Policies that allowed or denied it.
    Policy,
    /// Ingress or egress.
    Direction,
    /// TCP flags.
    TcpFlags,
    /// The observing node.
    Node,
}

impl Column {
    /// Every column, in display order.
    pub const ALL: [Column; 11] = [
        Column::Time,
        Column::Source,
        Column::Destination,
        Column::Port,
        Column::L7,
        Column::Verdict,
        Column::DropReason,
        Column::Policy,
        Column::Direction,
        Column::TcpFlags,
        Column::Node,
    ];

    /// Shown until the user chooses.
    pub const DEFAULT: [Column; 6] = [
        Column::Time,
        Column::Source,
        Column::Destination,
        Column::Port,
        Column::L7,
        Column::Verdict,
    ];

    /// The name in URLs and test selectors.
    pub fn key(self) -> &'static str {
        match self {
            Column::Time => "time",
            Column::Source => "source",
            Column::Destination => "destination",
            Column::Port => "port",
            Column::L7 => "l7",
            Column::Verdict => "verdict",
            Column::DropReason => "drop_reason",
            Column::Policy => "policy",
            Column::Direction => "direction",
            Column::TcpFlags => "tcp_flags",
            Column::Node => "node",
        }
    }

    /// The header text.
    pub fn title(self) -> &'static str {
        match self {
            Column::Time => "Time (UTC)",
            Column::Source => "Source",
            Column::Destination => "Destination",
            Column::Port => "Port",
            Column::L7 => "L7 info",
            Column::Verdict => "Verdict",
            Column::DropReason => "Drop reason",
            Column::Policy => "Policy",
            Column::Direction => "Direction",
            Column::TcpFlags => "TCP flags",
            Column::Node => "Node",
        }
    }

    /// The CSS grid track of the column.
    pub fn width(self) -> &'static str {
        match self {
            Column::Time => "7.5em",
            Column::Source | Column::Destination => "minmax(10em, 2fr)",
            Column::Port => "6.5em",
            Column::L7 | Column::Policy => "minmax(8em, 1.5fr)",
            Column::Verdict => "8.5em",
            Column::DropReason => "minmax(8em, 1fr)",
            Column::Direction => "5.5em",
            Column::TcpFlags => "7em",
            Column::Node => "minmax(6em, 1fr)",
        }
    }

    /// Looks a column up by [`Column::key`].
    pub fn from_key(key: &str) -> Option<Column> {
        Column::ALL.into_iter().find(|c| c.key() == key)
    }
}

/// One flow as the table shows it.
#[derive(Debug)]
pub struct Row {
    /// Arrival order, unique for the page's life: the row's key.
    pub seq: u64,
    /// The flow's time. Arrival order is nearly time order, not exactly: the L7 proxy's flows
    /// reach the store beside datapath events read a moment later.
    pub time: Option<flowscope_model::Timestamp>,
    /// The line as the server sent it (`hubble observe -o jsonpb`), for export and details.
    pub line: Arc<str>,
    /// Cells by column (see [`Row::cell`]).
    cells: [String; Column::ALL.len()],
    /// The verdict, for colouring.
    pub verdict: Verdict,
    /// Namespaces of the two ends (empty outside the cluster), for the namespace view.
    pub namespaces: [String; 2],
    /// Map node ids of the request's client and server, and the edge id.
    pub src_node: String,
    /// See `src_node`.
    pub dst_node: String,
    /// See `src_node`.
    pub edge: String,
}

fn endpoint_text(ep: Option<&Endpoint>, ip: &str, names: &[String]) -> String {
    match ep {
        Some(e) if !e.pod_name.is_empty() => format!("{}/{}", e.namespace, e.pod_name),
        _ => {
            let who = names
                .first()
                .cloned()
                .or_else(|| {
                    ep.and_then(|e| e.labels.iter().find(|l| l.starts_with("reserved:")))
                        .map(|l| l.trim_start_matches("reserved:").to_string())
                })
                .unwrap_or_default();
            match (who.is_empty(), ip.is_empty()) {
                (false, false) => format!("{ip} ({who})"),
                (false, true) => who,
                (true, _) => ip.to_string(),
            }
        }
    }
}

impl Row {
    /// Renders a flow's cells; `keys` says where it landed on the map.
    pub fn new(seq: u64, line: Arc<str>, flow: &Flow, keys: Option<&FlowKeys>) -> Row {
        let (src_ip, dst_ip) = flow
            .ip
            .as_ref()
            .map(|ip| (ip.source.as_str(), ip.destination.as_str()))
            .unwrap_or_default();
        let mut time = String::new();
        if let Some(t) = flow.time {
            let mut buf = TimestampBuf::default();
            let s = t.format_rfc3339(&mut buf);
            // 2024-06-01T10:00:00.123456789Z -> 10:00:00.123
            time = s.get(11..23).unwrap_or(s).to_string();
        }
        let port = match &flow.l4 {
            Some(Layer4::Tcp(t)) => format!("{}/TCP", t.destination_port),
            Some(Layer4::Udp(u)) => format!("{}/UDP", u.destination_port),
            Some(Layer4::Sctp(s)) => format!("{}/SCTP", s.destination_port),
            Some(Layer4::IcmpV4(i)) => format!("ICMPv4 {}", i.icmp_type),
            Some(Layer4::IcmpV6(i)) => format!("ICMPv6 {}", i.icmp_type),
            Some(Layer4::Vrrp(_)) => "VRRP".into(),
            Some(Layer4::Igmp(_)) => "IGMP".into(),
            None => String::new(),
        };
        let l7 = match flow.l7.as_ref() {
            Some(l7) => match (l7.http(), l7.dns()) {
                (Some(h), _) => {
                    let code = if h.code == 0 {
                        String::new()
                    } else {
                        format!(" {}", h.code)
                    };
                    format!("{} {}{}", h.method, h.url, code)
                }
                (None, Some(d)) => format!("DNS {}", d.query),
                _ => String::new(),
            },
            None => String::new(),
        };
        let policy: Vec<String> = flow
            .egress_allowed_by
            .iter()
            .chain(&flow.ingress_allowed_by)
            .map(|p| format!("allowed by {}", p.name))
            .chain(
                flow.egress_denied_by
                    .iter()
                    .chain(&flow.ingress_denied_by)
                    .map(|p| format!("denied by {}", p.name)),
            )
            .collect();
        let direction = match flow.traffic_direction {
            TrafficDirection::Ingress => "ingress",
            TrafficDirection::Egress => "egress",
            _ => "",
        };
        let drop_reason = if flow.drop_reason_desc == DropReason::Unknown {
            String::new()
        } else {
            flow.drop_reason_desc.as_str().to_string()
        };
        let flags = flow
            .tcp_flags()
            .map(|f| f.names().collect::<Vec<_>>().join(","))
            .unwrap_or_default();
        let cells = [
            time,
            endpoint_text(flow.source.as_ref(), src_ip, &flow.source_names),
            endpoint_text(flow.destination.as_ref(), dst_ip, &flow.destination_names),
            port,
            l7,
            flow.verdict.as_str().to_string(),
            drop_reason,
            policy.join(", "),
            direction.to_string(),
            flags,
            flow.node_name.clone(),
        ];
        let (src_node, dst_node, edge, namespaces) = match keys {
            Some(k) => (
                k.source.id(),
                k.destination.id(),
                k.edge_id(),
                [k.source.namespace.clone(), k.destination.namespace.clone()],
            ),
            None => Default::default(),
        };
        Row {
            seq,
            time: flow.time,
            line,
            cells,
            verdict: flow.verdict,
            namespaces,
            src_node,
            dst_node,
            edge,
        }
    }

    /// The text of a cell.
    pub fn cell(&self, column: Column) -> &str {
        let i = Column::ALL.iter().position(|c| *c == column).unwrap_or(0);
        &self.cells[i]
    }
}

/// Rows are equal when they are the same arrival: `seq` is unique.
impl PartialEq for Row {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
    }
}

/// What the user picked on the map; narrows the table to its flows.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Selection {
    /// A node id: flows from or to it.
    Node(String),
    /// An edge id: its flows.
    Edge(String),
}

impl Selection {
    /// `node:<id>` or `edge:<id>`, as kept in the URL.
    pub fn to_param(&self) -> String {
        match self {
            Selection::Node(id) => format!("node:{id}"),
            Selection::Edge(id) => format!("edge:{id}"),
        }
    }

    /// Reads [`Selection::to_param`]'s form.
    pub fn from_param(text: &str) -> Option<Selection> {
        if let Some(id) = text.strip_prefix("node:") {
            Some(Selection::Node(id.to_string()))
        } else {
            text.strip_prefix("edge:")
                .map(|id| Selection::Edge(id.to_string()))
        }
    }
}

/// Whether a row shows, given the namespace view (`None`: all) and the map selection.
pub fn row_visible(row: &Row, namespace: Option<&str>, selection: Option<&Selection>) -> bool {
    if let Some(ns) = namespace
        && !row.namespaces.iter().any(|n| n == ns)
    {
        return false;
    }
    match selection {
        None => true,
        Some(Selection::Node(id)) => row.src_node == *id || row.dst_node == *id,
        Some(Selection::Edge(id)) => row.edge == *id,
    }
}

/// The newest [`MAX_ROWS`] rows, newest first.
#[derive(Default)]
pub struct RowBuffer {
    rows: VecDeque<Arc<Row>>,
    capacity: usize,
}

impl RowBuffer {
    /// An empty buffer of `capacity` rows.
    pub fn new(capacity: usize) -> Self {
        RowBuffer {
            rows: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Adds the newest row, dropping the oldest past the capacity.
    pub fn push(&mut self, row: Arc<Row>) {
        self.rows.push_front(row);
        self.rows.truncate(self.capacity);
    }

    /// Forgets every row.
    pub fn clear(&mut self) {
        self.rows.clear();
    }

    /// Rows kept.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Newest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Arc<Row>> {
        self.rows.iter()
    }
}

/// The lines of `rows` in time order (oldest first), as `hubble observe -o jsonpb` prints
/// them: the export file, which `flowscope observe --input-file` and Hubble tools read.
pub fn export_lines<'a>(rows: impl DoubleEndedIterator<Item = &'a Arc<Row>>) -> String {
    let mut sorted: Vec<&Arc<Row>> = rows.rev().collect();
    // Stable: rows of one time keep their arrival order.
    sorted.sort_by_key(|r| r.time);
    let mut out = String::new();
    for row in sorted {
        out.push_str(&row.line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowscope_model::{GetFlowsResponse, graph::ServiceGraph};

    const LINE: &str = concat!(
        r#"{"flow":{"time":"2025-03-14T09:26:53.589793238Z","verdict":"DROPPED","#,
        r#""IP":{"source":"198.18.1.1","destination":"198.18.1.2","ipVersion":"IPv4"},"#,
        r#""l4":{"TCP":{"source_port":51234,"destination_port":8080,"flags":{"SYN":true}}},"#,
        r#""source":{"identity":31337,"namespace":"default","labels":["k8s:app=frontend"],"#,
        r#""pod_name":"frontend"},"#,
        r#""destination":{"identity":4242,"namespace":"default","labels":["k8s:app=my-api"],"#,
        r#""pod_name":"my-api"},"Type":"L3_L4","node_name":"lab","#,
        r#""traffic_direction":"EGRESS","drop_reason_desc":"POLICY_DENIED","#,
        r#""egress_denied_by":[{"name":"allow-dns-egress","namespace":"default"}]},"#,
        r#""node_name":"lab","time":"2025-03-14T09:26:53.589793238Z"}"#,
    );

    fn row(seq: u64) -> Row {
        let response: GetFlowsResponse = serde_json::from_str(LINE).unwrap();
        let flow = response.flow().unwrap();
        let keys = ServiceGraph::default().keys(flow);
        Row::new(seq, LINE.into(), flow, keys.as_ref())
    }

    #[test]
    fn cells() {
        let r = row(1);
        assert_eq!(r.cell(Column::Time), "09:26:53.589");
        assert_eq!(r.cell(Column::Source), "default/frontend");
        assert_eq!(r.cell(Column::Destination), "default/my-api");
        assert_eq!(r.cell(Column::Port), "8080/TCP");
        assert_eq!(r.cell(Column::Verdict), "DROPPED");
        assert_eq!(r.cell(Column::DropReason), "POLICY_DENIED");
        assert_eq!(r.cell(Column::Policy), "denied by allow-dns-egress");
        assert_eq!(r.cell(Column::Direction), "egress");
        assert_eq!(r.cell(Column::TcpFlags), "SYN");
        assert_eq!(r.cell(Column::Node), "lab");
        assert_eq!(r.edge, "default/frontend->default/my-api:8080/TCP");
        assert_eq!(r.namespaces, ["default", "default"]);
    }

    #[test]
    fn world_endpoints_show_address_and_name() {
        let world = Endpoint {
            labels: vec!["reserved:world".into()],
            ..Default::default()
        };
        assert_eq!(
            endpoint_text(Some(&world), "203.0.113.9", &[]),
            "203.0.113.9 (world)"
        );
        assert_eq!(
            endpoint_text(None, "203.0.113.9", &["api.example.com".into()]),
            "203.0.113.9 (api.example.com)"
        );
        assert_eq!(endpoint_text(None, "203.0.113.9", &[]), "203.0.113.9");
    }

    #[test]
    fn buffer_is_bounded_newest_first_and_exports_oldest_first() {
        let mut b = RowBuffer::new(3);
        for seq in 0..5 {
            b.push(Arc::new(row(seq)));
        }
        assert_eq!(b.len(), 3);
        let seqs: Vec<u64> = b.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [4, 3, 2]);
        let export = export_lines(b.iter());
        assert_eq!(export.lines().count(), 3);
        for line in export.lines() {
            let parsed: GetFlowsResponse = serde_json::from_str(line).unwrap();
            assert!(parsed.flow().is_some());
        }
    }

    #[test]
    fn visibility_by_namespace_and_selection() {
        let r = row(1);
        assert!(row_visible(&r, None, None));
        assert!(row_visible(&r, Some("default"), None));
        assert!(!row_visible(&r, Some("kube-system"), None));
        let node = Selection::Node("default/my-api".into());
        assert!(row_visible(&r, None, Some(&node)));
        let other = Selection::Node("default/postgres".into());
        assert!(!row_visible(&r, None, Some(&other)));
        let edge = Selection::Edge("default/frontend->default/my-api:8080/TCP".into());
        assert!(row_visible(&r, Some("default"), Some(&edge)));
        assert_eq!(Selection::from_param(&edge.to_param()), Some(edge));
        assert_eq!(Selection::from_param("x"), None);
    }

    #[test]
    fn columns_by_key() {
        for c in Column::ALL {
            assert_eq!(Column::from_key(c.key()), Some(c));
        }
        assert_eq!(Column::from_key("nope"), None);
    }
}
