//! Prints GetFlowsResponses in the five `-o` formats, as Hubble's printer does: flows and lost
//! events to stdout, node status events to stderr.
//!
//! Output goes through one large buffer that the caller flushes when the stream goes idle
//! ([`Printer::flush`]), not per line: at 100,000 flows/s a write per line would cost more
//! than formatting.

use std::io::{self, Write};

use flowscope_model::flow::{LostEvent, NodeState, NodeStatusEvent};
use flowscope_model::{Flow, GetFlowsResponse, ResponseKind};

use super::args::OutputFormat;
use super::format::{
    Side, Style, identity, push_escaped, write_flow_type, write_host, write_identity,
    write_lost_summary, write_summary, write_verdict,
};
use super::table::Table;

/// Hubble's dict separator.
const DICT_SEPARATOR: &str = "------------";
/// Hubble cuts node lists in status messages after about this many characters.
const NODE_NAMES_CUT_OFF: usize = 50;

/// The writers a command prints to.
pub(crate) struct Output {
    pub out: Box<dyn Write + Send>,
    pub err: Box<dyn Write + Send>,
}

pub(crate) struct Printer {
    io: Output,
    format: OutputFormat,
    style: Style,
    /// Records printed so far (Hubble's `p.line`): the dict separator and the table header
    /// depend on it.
    records: u64,
    table: Table,
    line: String,
    /// Flows printed, to tell "nothing matched" apart.
    pub flows: u64,
}

impl Printer {
    pub(crate) fn new(io: Output, format: OutputFormat, mut style: Style) -> Self {
        if format == OutputFormat::Table {
            // Hubble disables colors for the table: escape codes would break the alignment.
            style.color = false;
        }
        Printer {
            io,
            format,
            style,
            records: 0,
            table: Table::default(),
            line: String::with_capacity(512),
            flows: 0,
        }
    }

    /// Whether server lines can be copied to the output as they are (`-o json/jsonpb`): the
    /// observer already writes them exactly as this printer would.
    pub(crate) fn passes_json_through(&self) -> bool {
        self.format.is_json()
    }

    /// Writes a flow or lost-events line received as JSON text, unchanged.
    pub(crate) fn raw_json_line(&mut self, line: &str, is_flow: bool) -> io::Result<()> {
        self.io.out.write_all(line.as_bytes())?;
        self.io.out.write_all(b"\n")?;
        self.records += 1;
        if is_flow {
            self.flows += 1;
        }
        Ok(())
    }

    pub(crate) fn response(&mut self, resp: &GetFlowsResponse) -> io::Result<()> {
        match &resp.kind {
            ResponseKind::Flow(flow) => {
                self.flow(resp, flow)?;
                self.flows += 1;
            }
            ResponseKind::LostEvents(lost) => self.lost_events(resp, lost)?,
            ResponseKind::NodeStatus(status) => self.node_status(resp, status)?,
        }
        Ok(())
    }

    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.io.out.flush()
    }

    /// Ends the output: the table is printed now that its widths are known.
    pub(crate) fn finish(&mut self) -> io::Result<()> {
        if !self.table.is_empty() {
            self.line.clear();
            self.table.render(&mut self.line);
            self.io.out.write_all(self.line.as_bytes())?;
        }
        self.io.out.flush()
    }

    /// Stderr, for messages that are not flows.
    pub(crate) fn err(&mut self) -> &mut dyn Write {
        &mut *self.io.err
    }

    fn json(&mut self, resp: &GetFlowsResponse) -> io::Result<()> {
        serde_json::to_writer(&mut self.io.out, resp)?;
        self.io.out.write_all(b"\n")
    }

    fn table_header(&mut self) {
        if self.records != 0 {
            return;
        }
        let mut header = vec!["TIMESTAMP".to_owned()];
        if self.style.node_name {
            header.push("NODE".to_owned());
        }
        header.extend(["SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY"].map(str::to_owned));
        self.table.push(header);
    }

    fn flow(&mut self, resp: &GetFlowsResponse, flow: &Flow) -> io::Result<()> {
        let style = self.style;
        // Taken out so the table can be borrowed too; a String without capacity costs nothing.
        let mut buf = std::mem::take(&mut self.line);
        buf.clear();
        let line = &mut buf;
        match self.format {
            OutputFormat::Json | OutputFormat::Jsonpb => {
                self.line = buf;
                return self.json(resp);
            }
            OutputFormat::Compact => {
                style.time_format.write(line, flow.time);
                if style.node_name {
                    line.push_str(" [");
                    push_escaped(line, &flow.node_name);
                    line.push(']');
                }
                line.push_str(": ");
                let (arrow, first, second) = match flow.is_reply {
                    None => ("<>", Side::Source, Side::Destination),
                    // Replies are shown from the client's side with the arrow flipped.
                    Some(true) => ("<-", Side::Destination, Side::Source),
                    Some(false) => ("->", Side::Source, Side::Destination),
                };
                write_host(line, &style, flow, first);
                line.push(' ');
                write_identity(line, &style, identity(flow, first));
                line.push(' ');
                line.push_str(arrow);
                line.push(' ');
                write_host(line, &style, flow, second);
                line.push(' ');
                write_identity(line, &style, identity(flow, second));
                line.push(' ');
                write_flow_type(line, flow);
                line.push(' ');
                write_verdict(line, &style, flow);
                line.push_str(" (");
                write_summary(line, &style, flow);
                line.push_str(")\n");
            }
            OutputFormat::Dict => {
                if self.records != 0 {
                    line.push_str(DICT_SEPARATOR);
                    line.push('\n');
                }
                line.push_str("  TIMESTAMP: ");
                style.time_format.write(line, flow.time);
                if style.node_name {
                    line.push_str("\n       NODE: ");
                    push_escaped(line, &flow.node_name);
                }
                line.push_str("\n     SOURCE: ");
                write_host(line, &style, flow, Side::Source);
                line.push_str("\nDESTINATION: ");
                write_host(line, &style, flow, Side::Destination);
                line.push_str("\n       TYPE: ");
                write_flow_type(line, flow);
                line.push_str("\n    VERDICT: ");
                write_verdict(line, &style, flow);
                line.push_str("\n    SUMMARY: ");
                write_summary(line, &style, flow);
                line.push('\n');
            }
            OutputFormat::Table => {
                self.table_header();
                let mut row = Vec::with_capacity(7);
                let mut cell = |write: &dyn Fn(&mut String)| {
                    let mut s = String::new();
                    write(&mut s);
                    row.push(s);
                };
                cell(&|s| style.time_format.write(s, flow.time));
                if style.node_name {
                    cell(&|s| push_escaped(s, &flow.node_name));
                }
                cell(&|s| write_host(s, &style, flow, Side::Source));
                cell(&|s| write_host(s, &style, flow, Side::Destination));
                cell(&|s| write_flow_type(s, flow));
                cell(&|s| write_verdict(s, &style, flow));
                cell(&|s| write_summary(s, &style, flow));
                self.table.push(row);
            }
        }
        self.records += 1;
        let written = self.io.out.write_all(buf.as_bytes());
        self.line = buf;
        written
    }

    fn lost_events(&mut self, resp: &GetFlowsResponse, lost: &LostEvent) -> io::Result<()> {
        let style = self.style;
        let mut buf = std::mem::take(&mut self.line);
        buf.clear();
        let line = &mut buf;
        let node = if resp.node_name.is_empty() {
            "-"
        } else {
            resp.node_name.as_str()
        };
        match self.format {
            OutputFormat::Json | OutputFormat::Jsonpb => {
                self.line = buf;
                return self.json(resp);
            }
            OutputFormat::Compact => {
                style.time_format.write(line, resp.time);
                line.push_str(" EVENTS LOST: ");
                line.push_str(lost.source.as_str());
                line.push(' ');
                write_lost_summary(line, &style, lost, " ");
                line.push('\n');
            }
            OutputFormat::Dict => {
                if self.records != 0 {
                    line.push_str(DICT_SEPARATOR);
                    line.push('\n');
                }
                line.push_str("  TIMESTAMP: ");
                style.time_format.write(line, resp.time);
                if style.node_name {
                    line.push_str("\n       NODE: ");
                    push_escaped(line, node);
                }
                line.push_str("\n     SOURCE: ");
                line.push_str(lost.source.as_str());
                line.push_str("\n       TYPE: EVENTS LOST\n    VERDICT: -\n    SUMMARY: ");
                write_lost_summary(line, &style, lost, " - ");
                line.push('\n');
            }
            OutputFormat::Table => {
                self.table_header();
                let mut time = String::new();
                style.time_format.write(&mut time, resp.time);
                let mut row = vec![time];
                if style.node_name {
                    let mut n = String::new();
                    push_escaped(&mut n, node);
                    row.push(n);
                }
                let mut summary = String::new();
                write_lost_summary(&mut summary, &style, lost, " - ");
                row.extend([
                    lost.source.as_str().to_owned(),
                    "-".to_owned(),
                    "EVENTS LOST".to_owned(),
                    "-".to_owned(),
                    summary,
                ]);
                self.table.push(row);
            }
        }
        self.records += 1;
        let written = self.io.out.write_all(buf.as_bytes());
        self.line = buf;
        written
    }

    /// Node status goes to stderr, and only unavailable or failing nodes are worth it (as in
    /// Hubble without `--debug`).
    fn node_status(&mut self, resp: &GetFlowsResponse, status: &NodeStatusEvent) -> io::Result<()> {
        if !matches!(
            status.state_change,
            NodeState::Unavailable | NodeState::Error
        ) {
            return Ok(());
        }
        let style = self.style;
        let mut text = String::new();
        let names = join_with_cut_off(&status.node_names, ", ", NODE_NAMES_CUT_OFF);
        match self.format {
            OutputFormat::Json | OutputFormat::Jsonpb => {
                serde_json::to_writer(&mut self.io.err, resp)?;
                return self.io.err.write_all(b"\n");
            }
            OutputFormat::Dict => {
                if self.records != 0 {
                    text.push_str(DICT_SEPARATOR);
                    text.push('\n');
                } else {
                    self.records += 1;
                }
                text.push_str("  TIMESTAMP: ");
                style.time_format.write(&mut text, resp.time);
                text.push_str("\n      STATE: ");
                text.push_str(status.state_change.as_str());
                text.push_str("\n      NODES: ");
                push_escaped(&mut text, &names);
                text.push_str("\n    MESSAGE: ");
                if status.message.is_empty() {
                    text.push_str("N/A");
                } else {
                    push_escaped(&mut text, &format!("{:?}", status.message));
                }
                text.push('\n');
            }
            OutputFormat::Compact | OutputFormat::Table => {
                if let Some(line) = node_status_line(&style, resp, status) {
                    text = line;
                }
            }
        }
        self.io.err.write_all(text.as_bytes())
    }
}

/// The compact (and table) line for a node status event, or `None` for the states only
/// shown with Hubble's `--debug` (connected, gone).
pub(crate) fn node_status_line(
    style: &Style,
    resp: &GetFlowsResponse,
    status: &NodeStatusEvent,
) -> Option<String> {
    let names = join_with_cut_off(&status.node_names, ", ", NODE_NAMES_CUT_OFF);
    let count = status.node_names.len();
    let message = match status.state_change {
        NodeState::Unavailable => format!("{count} nodes are unavailable: {names}"),
        NodeState::Error => format!("Error {:?} on {count} nodes: {names}", status.message),
        _ => return None,
    };
    let mut text = String::new();
    style.time_format.write(&mut text, resp.time);
    text.push_str(" [");
    push_escaped(&mut text, &resp.node_name);
    text.push_str("]: ");
    push_escaped(&mut text, &message);
    text.push('\n');
    Some(text)
}

/// Hubble's `joinWithCutOff`: joins until the text passes `target` characters, then says how
/// many were left out.
fn join_with_cut_off(items: &[String], sep: &str, target: usize) -> String {
    let mut len = 0;
    let mut end = items.len();
    for (i, item) in items.iter().enumerate() {
        len += item.len() + sep.len();
        if len > target && i > 0 {
            end = i;
            break;
        }
    }
    let joined = items[..end].join(sep);
    match items.len() - end {
        0 => joined,
        omitted => format!("{joined} (and {omitted} more)"),
    }
}
