//! The command line of `flowscope observe`: Hubble's flag names and defaults, grouped under the
//! same help headings. Filter flags live in [`super::filters`] because their order matters.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, ValueEnum};

use super::aggregate::AggregateKey;
use super::filters::FilterFlags;
use super::format::TimeFormat;

/// Hubble's `defaults.FlowPrintCount`: what a bare `observe` shows.
pub(crate) const DEFAULT_LAST: u64 = 20;

/// The semantics users ask about most (hubble#433, hubble#1280), in plain words.
const AFTER_HELP: &str = "\
Which flows
  Without a selector the last 20 flows are shown and the command ends. --last N,
  --first N and --all say how many; --since and --until bound the time (\"5m\" or
  \"1h30m\" before now, or \"2024-06-01T10:00:00Z\"); -f/--follow keeps streaming new
  flows until Ctrl-C. --until is ignored with --follow.

How filters combine
  - Repeating a flag ORs its values:       --pod web --pod api      (web or api)
  - Different flags AND:                    --pod web --verdict DROPPED
  - Either-direction flags (--ip, --pod, -n/--namespace, -l/--label, --identity,
    --port, --fqdn, --service, --workload, --cluster) match the source OR the
    destination. --from-X matches only the source, --to-X only the destination:
      --from-pod shop/web --to-port 5432
  - --not negates only the one filter flag right after it:
      --not --namespace kube-system          (hide flows from or to kube-system)
    Several --not flags hide a flow only when it matches ALL of them:
      --not --http-method get --not --to-namespace foo
    hides GET requests to foo, but shows other requests to foo and GETs elsewhere.
  - Pods and services are [NAMESPACE/]NAME-PREFIX: \"shop/web\" matches pods named
    web* in shop; without a namespace \"default\" is meant; \"shop/\" is the whole
    namespace and \"/web\" any namespace. -n/--namespace adds its namespace to the
    --pod and --service values that have none.
  - Labels are Kubernetes selectors: -l 'k8s:app=web,tier in (a,b),!canary'.
  - IPs may be CIDRs (10.0.0.0/8); --fqdn and --node-name take '*' globs;
    --http-path and --http-url are regular expressions; --http-status takes a code
    or a prefix (\"404\", \"5+\", \"40+\").
  - Conflicting flags are refused, e.g. --label with --from-label, --port with
    --to-port, --ip with --fqdn. --print-raw-filters shows the resulting filters.

Output
  compact (default), one line per flow:
    TIME [NODE]: SOURCE (IDENTITY) -> DESTINATION (IDENTITY) TYPE VERDICT (SUMMARY)
  '->' is a request, '<-' a reply (shown from the client's side), '<>' a flow whose
  direction is unknown. dict prints KEY: VALUE blocks, table aligned columns, and
  json/jsonpb one GetFlowsResponse JSON object per line, as `hubble observe -o
  jsonpb` does; --input-file reads those lines back (or bare Flow objects).
  Lost events are printed as 'EVENTS LOST: SOURCE CPU(N) COUNT' lines.

Examples
  flowscope observe                                   last 20 flows
  flowscope observe -f --verdict DROPPED              follow drops
  flowscope observe --since 10m -n shop --protocol http --http-status 5+
  flowscope observe --from-pod shop/web --to-label 'k8s:app=db' --to-port 5432
  flowscope observe --not --namespace kube-system -t trace:to-endpoint
  flowscope observe --all -o jsonpb > flows.json
  flowscope observe --input-file flows.json --verdict DROPPED --print-policy-names
  flowscope observe --all --aggregate-by src-pod,dst-pod,dst-port,verdict
  flowscope observe -f --aggregate-by dst-pod,drop-reason --verdict DROPPED";

/// `flowscope observe`: observe flows of an observer (or a saved file), with Hubble's
/// `hubble observe` flags and output.
#[derive(clap::Args, Clone, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct ObserveArgs {
    /// Get the last N flows stored in the observer's buffer (default 20 when no other
    /// selector is given).
    #[arg(
        long,
        value_name = "N",
        help_heading = "Selectors",
        conflicts_with = "all"
    )]
    pub last: Option<u64>,
    /// Get the first (oldest) N flows stored in the observer's buffer.
    #[arg(
        long,
        value_name = "N",
        help_heading = "Selectors",
        conflicts_with_all = ["last", "all", "follow"]
    )]
    pub first: Option<u64>,
    /// Get all flows stored in the observer's buffer; best combined with filters.
    #[arg(long, help_heading = "Selectors")]
    pub all: bool,
    /// Keep streaming new flows until Ctrl-C.
    #[arg(short = 'f', long, help_heading = "Selectors")]
    pub follow: bool,
    /// Only flows at or after TIME: a duration before now ("30s", "5m", "1h43m") or a date
    /// ("2024-06-01", "2024-06-01T10:00:00Z", RFC 3339 with any fraction, RFC 1123Z).
    #[arg(long, value_name = "TIME", help_heading = "Selectors")]
    pub since: Option<String>,
    /// Only flows at or before TIME (same formats as --since); ignored with --follow.
    #[arg(long, value_name = "TIME", help_heading = "Selectors")]
    pub until: Option<String>,

    /// Filter flags (see "How filters combine" below).
    #[command(flatten)]
    pub filters: FilterFlags,

    /// Allow flows matching this FlowFilter, given as JSON (repeatable), e.g.
    /// '{"source_pod":["shop/"],"verdict":["DROPPED"]}'.
    #[arg(long, value_name = "JSON", help_heading = "Raw filters")]
    pub allowlist: Vec<String>,
    /// Deny flows matching this FlowFilter, given as JSON (repeatable).
    #[arg(long, value_name = "JSON", help_heading = "Raw filters")]
    pub denylist: Vec<String>,

    /// Output format.
    #[arg(
        short = 'o',
        long,
        value_enum,
        ignore_case = true,
        default_value = "compact",
        help_heading = "Formatting"
    )]
    pub output: OutputFormat,
    /// Print the node name in the output.
    #[arg(long, help_heading = "Formatting")]
    pub print_node_name: bool,
    /// Print the names of the policies that allowed or denied each flow
    /// ("DENIED BY deny-db (CiliumNetworkPolicy)").
    #[arg(long, help_heading = "Formatting")]
    pub print_policy_names: bool,
    /// Time format of compact, dict and table output: StampMilli ("Jan _2 15:04:05.000"),
    /// YearMonthDay, YearMonthDayHour, YearMonthDayHourMinute, RFC3339, RFC3339Milli,
    /// RFC3339Micro, RFC3339Nano, RFC1123Z. Times are in UTC.
    #[arg(
        long,
        value_name = "FORMAT",
        default_value = "StampMilli",
        value_parser = TimeFormat::parse,
        help_heading = "Formatting"
    )]
    pub time_format: TimeFormat,
    /// Colorize compact and dict output.
    #[arg(long, value_enum, default_value = "auto", help_heading = "Formatting")]
    pub color: ColorChoice,
    /// Show pod, service and DNS names instead of IP addresses where known.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "true",
        default_missing_value = "true",
        action = ArgAction::Set,
        help_heading = "Formatting"
    )]
    pub ip_translation: bool,
    /// Display all information in numeric form (implies --ip-translation=false).
    #[arg(long, help_heading = "Formatting")]
    pub numeric: bool,

    /// Print flow counts per distinct value of these comma-separated keys instead of flows,
    /// sorted by count (e.g. src-pod,dst-pod,dst-port). Without --follow the table is
    /// printed once at the end and all stored flows are counted unless --last, --first or
    /// --since say otherwise; with --follow it is redrawn every second on a terminal.
    /// Keys: src, dst, src-pod, dst-pod, src-namespace, dst-namespace, src-workload,
    /// dst-workload, src-service, dst-service, src-ip, dst-ip, src-port, dst-port,
    /// src-identity, dst-identity, src-fqdn, dst-fqdn, protocol, verdict, drop-reason,
    /// type, node, traffic-direction, is-reply, tcp-flags, http-method, http-status,
    /// dns-query, policy.
    #[arg(
        long,
        value_name = "KEYS",
        value_delimiter = ',',
        value_parser = AggregateKey::parse,
        help_heading = "Aggregation"
    )]
    pub aggregate_by: Vec<AggregateKey>,

    /// Address of the server: HOST:PORT speaks Hubble's gRPC API, as `hubble observe
    /// --server` does (a flowscope observer or relay, or Cilium's Hubble); ws://HOST:PORT reads
    /// flowscope's WebSocket. Default: $FLOWSCOPE_SERVER, else $HUBBLE_SERVER, else
    /// 127.0.0.1:4244.
    #[arg(
        long,
        value_name = "HOST:PORT",
        env = "FLOWSCOPE_SERVER",
        help_heading = "Server"
    )]
    pub server: Option<String>,
    /// How long to wait for the observer to accept the connection ("5s", "500ms").
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "5s",
        value_parser = parse_timeout,
        help_heading = "Server"
    )]
    pub timeout: Duration,
    /// Connect over TLS (implied by --server tls://, wss:// or https://).
    #[arg(long, help_heading = "TLS")]
    pub tls: bool,
    /// CAs the server's certificate must be signed by (PEM; comma-separated or repeated).
    #[arg(long, value_name = "FILE", value_delimiter = ',', help_heading = "TLS")]
    pub tls_ca_cert_files: Vec<PathBuf>,
    /// This client's certificate, for servers that demand mutual TLS (PEM).
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_client_key_file",
        help_heading = "TLS"
    )]
    pub tls_client_cert_file: Option<PathBuf>,
    /// The private key of --tls-client-cert-file (PEM).
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_client_cert_file",
        help_heading = "TLS"
    )]
    pub tls_client_key_file: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the host of --server).
    #[arg(long, value_name = "NAME", help_heading = "TLS")]
    pub tls_server_name: Option<String>,
    /// Accept any server certificate: the connection is encrypted, but to whoever answers
    /// (tests only).
    #[arg(long, help_heading = "TLS")]
    pub tls_allow_insecure: bool,

    /// Read flows from FILE instead of the observer ('-' for stdin): JSON lines as
    /// `-o jsonpb` prints them, or bare Flow objects. Filters and selectors apply; --follow
    /// is ignored.
    #[arg(long, value_name = "FILE", help_heading = "Other")]
    pub input_file: Option<PathBuf>,
    /// Print the allowlist/denylist filters the flags make and exit without connecting.
    #[arg(long, help_heading = "Other")]
    pub print_raw_filters: bool,
    /// Ask the observer for only these fields of each flow: comma-separated protobuf paths
    /// (e.g. time,source.pod_name,destination.pod_name,verdict), as Hubble's field mask.
    /// Mostly for -o json/jsonpb; unknown paths are refused.
    #[arg(
        long,
        value_name = "PATHS",
        value_delimiter = ',',
        alias = "experimental-field-mask",
        help_heading = "Other"
    )]
    pub field_mask: Vec<String>,
}

/// `-o/--output`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// One line per flow.
    Compact,
    /// KEY: VALUE blocks.
    Dict,
    /// Alias for jsonpb, as in Hubble.
    Json,
    /// One GetFlowsResponse JSON object per line.
    Jsonpb,
    /// Aligned columns, printed when the stream ends.
    #[value(alias = "tab")]
    Table,
}

impl OutputFormat {
    /// Whether this format prints GetFlowsResponse JSON lines.
    pub(crate) fn is_json(self) -> bool {
        matches!(self, OutputFormat::Json | OutputFormat::Jsonpb)
    }
}

/// `--color`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// When stdout is a terminal and NO_COLOR is not set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    match flowscope_model::time::parse_duration_nanos(s.trim()) {
        Some(n) if n > 0 => Ok(Duration::from_nanos(n as u64)),
        _ => Err(format!(
            "{s:?} is not a positive duration such as \"500ms\", \"5s\" or \"1m\""
        )),
    }
}
