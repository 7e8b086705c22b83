//! `flowscope`: one binary for every role (observer, and later relay, lab, observe, ...).
//! This file only parses the command line and hands over to the library crates.
mod client;
mod connectivity;
mod inspect;
mod lab;

/// The observer allocates and frees a few small strings per flow on many threads; mimalloc's
/// per-thread free lists make that several times cheaper than glibc's malloc (see the pipeline
/// benchmark).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use flowscope_observer::{ObserverConfig, source::deny::DenyRule};

#[derive(Parser)]
#[command(
    name = "flowscope",
    version,
    about = "Network flow observability with eBPF"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the per-node observer: attach the datapath to interfaces, serve flows.
    Observer(Box<ObserverArgs>),
    /// One view of many observers, like Hubble Relay: their flows merged in time order, status,
    /// nodes and the web UI, on one address.
    Relay(Box<RelayArgs>),
    /// The main job on one machine: the built-in lab (the seed's cluster as network
    /// namespaces) with its traffic, and the observer with its API on localhost. Ctrl-C
    /// removes everything.
    Demo(DemoArgs),
    /// Pods as network namespaces on this machine: `up [FILE]`, `down`, `status`.
    #[command(subcommand)]
    Lab(LabCommand),
    /// Probe every pair of lab pods on every declared port, like `cilium connectivity test`.
    #[command(subcommand)]
    Connectivity(ConnectivityCommand),
    /// Network policies: `validate DIR`, `list`.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Endpoints (pods) an observer knows: `list`.
    #[command(subcommand)]
    Endpoint(EndpointCommand),
    /// Show flows, like `hubble observe`: the last 20, or `--follow` them live, filtered.
    Observe(Box<flowscope_cli::ObserveArgs>),
    /// Flows held, flow rate, uptime and connected nodes, like `hubble status`.
    Status(ServerArgs),
    /// `nodes` or `namespaces` the server knows, like `hubble list`.
    #[command(subcommand)]
    List(ListCommand),
}

#[derive(Args)]
struct ServerArgs {
    /// The observer's (or relay's) API address.
    #[arg(long, default_value = "127.0.0.1:4244", env = "FLOWSCOPE_SERVER")]
    server: String,
    /// `table` (default) or `json`.
    #[arg(short, long, value_parser = ["table", "json"], default_value = "table")]
    output: String,
}

#[derive(Subcommand)]
enum ListCommand {
    /// Nodes with status, age, flow rate and buffer fill.
    Nodes(ServerArgs),
    /// Namespaces of the endpoints the server knows.
    Namespaces(ServerArgs),
}

#[derive(Subcommand)]
enum EndpointCommand {
    /// Endpoints with identity, labels and whether ingress/egress policy enforcement is on,
    /// like `cilium endpoint list`.
    List {
        /// The observer's API address.
        #[arg(long, default_value = "127.0.0.1:4244", env = "FLOWSCOPE_SERVER")]
        server: String,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Check a directory of Kubernetes manifests (NetworkPolicy, CiliumNetworkPolicy) offline,
    /// as the API server would: every problem with file, line and field; exit 1 if any.
    Validate { dir: PathBuf },
    /// Policies a running observer enforces, the endpoints each selects, and load errors.
    List {
        /// The observer's API address.
        #[arg(long, default_value = "127.0.0.1:4244", env = "FLOWSCOPE_SERVER")]
        server: String,
    },
}

#[derive(Args)]
struct RelayArgs {
    /// Address of the relay's API (flows WebSocket, HTTP and the web UI).
    #[arg(long, default_value = flowscope_relay::DEFAULT_LISTEN, env = "FLOWSCOPE_RELAY_LISTEN")]
    listen: SocketAddr,
    #[command(flatten)]
    tls: ServerTlsArgs,
    #[command(flatten)]
    observer_tls: ObserverTlsArgs,
    /// An observer's API address, `[NAME=]HOST:PORT` (repeatable). The name is shown until
    /// the observer tells its own.
    #[arg(long = "peer", value_name = "[NAME=]HOST:PORT")]
    peers: Vec<flowscope_relay::PeerSpec>,
    /// A file of observers, one `[NAME=]HOST:PORT` per line (`#` comments), re-read when it
    /// changes. Bad lines are reported (log and status); the others are used.
    #[arg(long, value_name = "FILE")]
    peers_file: Option<PathBuf>,
    /// `HOST:PORT` of a DNS name with one address per observer, e.g. a Kubernetes headless
    /// Service (`flowscope-peers.kube-system.svc.cluster.local:4244`); re-resolved every 2 s.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_host_port)]
    peer_service: Option<String>,
    /// The observers as pods, found through the Kubernetes API (with --kubernetes or
    /// --kubeconfig): those of --peer-namespace matching this label selector, e.g.
    /// `app.kubernetes.io/name=flowscope,app.kubernetes.io/component=observer`. Each is reached
    /// at its pod address and --peer-port, and named by its node; followed as pods come and go.
    #[arg(long, value_name = "SELECTOR", requires = "peer_port")]
    peer_pods: Option<String>,
    /// The namespace of the observers' pods (--peer-pods).
    #[arg(
        long,
        value_name = "NAMESPACE",
        default_value = "kube-system",
        requires = "peer_pods"
    )]
    peer_namespace: String,
    /// The observers' API port (--peer-pods).
    #[arg(long, value_name = "PORT", requires = "peer_pods",
        value_parser = clap::value_parser!(u16).range(1..))]
    peer_port: Option<u16>,
    #[command(flatten)]
    kubernetes: KubernetesArgs,
    /// Where Prometheus scrapes the relay's metrics (peers, flows forwarded, merge queue).
    #[arg(long, default_value = flowscope_relay::DEFAULT_METRICS_LISTEN, value_name = "ADDR",
        env = "FLOWSCOPE_RELAY_METRICS_LISTEN")]
    metrics_listen: SocketAddr,
    /// Serve no metrics.
    #[arg(long, conflicts_with = "metrics_listen")]
    no_metrics: bool,
    /// Metric name prefix: `flowscope`, or `hubble`.
    #[arg(long, value_name = "NAME", default_value = "flowscope")]
    metrics_prefix: flowscope_observer::metrics::Prefix,
    /// Flow streams served at once; more are refused with RESOURCE_EXHAUSTED (each holds a
    /// connection to every observer).
    #[arg(long, value_name = "N", default_value_t = flowscope_relay::DEFAULT_MAX_FLOW_REQUESTS as u32,
        value_parser = clap::value_parser!(u32).range(1..=65536))]
    max_flow_requests: u32,
}

/// One `--l7-visibility` item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum L7 {
    Dns,
    Http(u16),
}

/// TCP ports `--l7-visibility http` watches.
pub const DEFAULT_HTTP_PORTS: [u16; 2] = [80, 8080];

fn parse_l7(s: &str) -> Result<L7, String> {
    match s.trim() {
        "dns" => Ok(L7::Dns),
        "http" => Ok(L7::Http(0)),
        other => match other.strip_prefix("http:").map(str::parse::<u16>) {
            Some(Ok(port)) if port > 0 => Ok(L7::Http(port)),
            Some(_) => Err(format!(
                "{other:?}: the port must be a number from 1 to 65535"
            )),
            None => Err(format!("{other:?}: expected dns, http or http:PORT")),
        },
    }
}

/// The TCP ports of the `http` items (`http` alone: 80 and 8080), each once.
fn http_ports(items: &[L7]) -> anyhow::Result<Vec<u16>> {
    let mut ports = Vec::new();
    for item in items {
        let add: &[u16] = match item {
            L7::Http(0) => &DEFAULT_HTTP_PORTS,
            L7::Http(p) => std::slice::from_ref(p),
            L7::Dns => &[],
        };
        for p in add {
            if !ports.contains(p) {
                ports.push(*p);
            }
        }
    }
    anyhow::ensure!(
        ports.len() <= flowscope_common::HTTP_PORTS_MAX,
        "--l7-visibility: at most {} HTTP ports, got {} ({ports:?})",
        flowscope_common::HTTP_PORTS_MAX,
        ports.len()
    );
    Ok(ports)
}

fn parse_host_port(s: &str) -> Result<String, String> {
    flowscope_relay::peers::check_host_port(s)?;
    Ok(s.to_string())
}

#[derive(Args)]
struct DemoArgs {
    /// Address of the flow API.
    #[arg(long, default_value = "127.0.0.1:4244", env = "FLOWSCOPE_LISTEN")]
    listen: SocketAddr,
    /// A lab file to run instead of the built-in demo.
    #[arg(long, value_name = "FILE")]
    lab: Option<PathBuf>,
    /// Policies to enforce (default: the seed's, as in deploy/network-policies).
    #[arg(long, value_name = "DIR")]
    policies: Option<PathBuf>,
    #[command(flatten)]
    policy_mode: lab::PolicyMode,
    /// Where Prometheus scrapes the demo's metrics (every flow family, by namespace).
    #[arg(long, default_value = "127.0.0.1:9965", value_name = "ADDR")]
    metrics_listen: SocketAddr,
}

#[derive(Subcommand)]
enum LabCommand {
    /// Create the lab described by FILE (default: the built-in demo) and start its servers
    /// and traffic in the background. Running it again with the same file changes nothing.
    Up { file: Option<PathBuf> },
    /// Remove the lab: namespaces, veths, routes, processes (also after a crash). Idempotent.
    Down,
    /// List the lab's pods with their IPs, interfaces and ports.
    Status,
    /// Serve the pods' ports and run the traffic in the foreground (started by `lab up`).
    #[command(hide = true)]
    Run,
}

#[derive(Subcommand)]
enum ConnectivityCommand {
    /// Bring the lab up (or reuse it), probe every ordered pair of distinct pods on every port
    /// the destination declares, and report each probe.
    Test {
        /// The lab file.
        #[arg(long, value_name = "FILE")]
        lab: PathBuf,
        /// `json`: one line per probe, then a summary; `table`: a matrix per port/protocol.
        #[arg(short, long, value_enum, default_value = "table")]
        output: lab::Output,
        /// Expected reachability (JSON lines as `-o json` prints them): exit 1 listing every
        /// mismatch.
        #[arg(long, value_name = "FILE")]
        expect: Option<PathBuf>,
        /// Policies to enforce during the test.
        #[arg(long, value_name = "DIR")]
        policies: Option<PathBuf>,
        #[command(flatten)]
        policy_mode: lab::PolicyMode,
    },
}

/// TLS from the relay to its observers (hubble-relay's `--tls-hubble-*` flags, named for
/// flowscope's observers).
#[derive(Args)]
struct ObserverTlsArgs {
    /// Reach the observers over TLS, trusting these CAs for their certificates (PEM;
    /// comma-separated or repeated).
    #[arg(
        long,
        value_name = "FILE",
        value_delimiter = ',',
        help_heading = "TLS to observers"
    )]
    observer_tls_ca_files: Vec<PathBuf>,
    /// The relay's certificate for observers that ask for one (mutual TLS; PEM).
    #[arg(
        long,
        value_name = "FILE",
        requires_all = ["observer_tls_client_key_file", "observer_tls_ca_files"],
        help_heading = "TLS to observers"
    )]
    observer_tls_client_cert_file: Option<PathBuf>,
    /// The private key of --observer-tls-client-cert-file (PEM).
    #[arg(
        long,
        value_name = "FILE",
        requires = "observer_tls_client_cert_file",
        help_heading = "TLS to observers"
    )]
    observer_tls_client_key_file: Option<PathBuf>,
    /// The name every observer's certificate must carry (default: the address it is reached
    /// at, which then must be in the certificate).
    #[arg(
        long,
        value_name = "NAME",
        requires = "observer_tls_ca_files",
        help_heading = "TLS to observers"
    )]
    observer_tls_server_name: Option<String>,
}

impl ObserverTlsArgs {
    fn resolve(self) -> anyhow::Result<Option<flowscope_relay::peers::ObserverTls>> {
        if self.observer_tls_ca_files.is_empty() {
            return Ok(None);
        }
        let tls = flowscope_tls::ClientTls {
            cas: self.observer_tls_ca_files,
            cert: self.observer_tls_client_cert_file,
            key: self.observer_tls_client_key_file,
            server_name: self.observer_tls_server_name,
            insecure: false,
        };
        let flags = flowscope_tls::ClientFlags {
            cas: "--observer-tls-ca-files",
            cert: "--observer-tls-client-cert-file",
            key: "--observer-tls-client-key-file",
            server_name: "--observer-tls-server-name",
            insecure: "(none)",
        };
        Ok(Some(flowscope_relay::peers::ObserverTls {
            http1: tls.connector(&flags, flowscope_tls::Alpn::Http1)?,
            h2: tls.connector(&flags, flowscope_tls::Alpn::H2)?,
        }))
    }
}

/// TLS on an API listener, with Hubble's flag names.
#[derive(Args)]
struct ServerTlsArgs {
    /// Serve the API over TLS with this certificate chain (PEM): HTTPS, wss:// and gRPC with
    /// TLS.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key_file",
        help_heading = "TLS"
    )]
    tls_cert_file: Option<PathBuf>,
    /// The private key of --tls-cert-file (PEM).
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_cert_file",
        help_heading = "TLS"
    )]
    tls_key_file: Option<PathBuf>,
    /// Mutual TLS: clients must present a certificate signed by one of these CAs (PEM;
    /// comma-separated or repeated).
    #[arg(
        long,
        value_name = "FILE",
        value_delimiter = ',',
        requires = "tls_cert_file",
        help_heading = "TLS"
    )]
    tls_client_ca_files: Vec<PathBuf>,
    /// Serve plain text on a --listen address that is not loopback: flows cross the network
    /// unencrypted (logged as a warning).
    #[arg(long, conflicts_with = "tls_cert_file", help_heading = "TLS")]
    disable_server_tls: bool,
}

impl ServerTlsArgs {
    fn resolve(self) -> (Option<flowscope_tls::ServerTls>, bool) {
        let tls = match (self.tls_cert_file, self.tls_key_file) {
            (Some(cert), Some(key)) => Some(flowscope_tls::ServerTls {
                cert,
                key,
                client_cas: self.tls_client_ca_files,
            }),
            _ => None,
        };
        (tls, self.disable_server_tls)
    }
}

#[derive(Args)]
struct ObserverArgs {
    /// Interfaces to watch, by name or shell glob (repeatable). Interfaces that appear later
    /// and match are attached too.
    #[arg(
        long = "interface",
        short = 'i',
        required_unless_present = "cleanup",
        value_name = "GLOB"
    )]
    interfaces: Vec<String>,
    /// Interfaces whose far end is a workload (pod veths, like Cilium's lxc*): their tc
    /// ingress is the workload's egress.
    #[arg(long = "endpoint-interface", value_name = "GLOB")]
    endpoint_interfaces: Vec<String>,
    /// Address of the flow API (HTTP, WebSocket and Hubble's gRPC). Plain text only on
    /// loopback: elsewhere give --tls-cert-file and --tls-key-file, or --disable-server-tls.
    #[arg(long, default_value = "127.0.0.1:4244", env = "FLOWSCOPE_LISTEN")]
    listen: SocketAddr,
    #[command(flatten)]
    tls: ServerTlsArgs,
    /// Node name carried by every flow.
    #[arg(long, env = "FLOWSCOPE_NODE_NAME")]
    node_name: Option<String>,
    /// Flows kept in memory: 2^i - 1 for i in 1..=16 (1, 3, 7, ..., 4095, ..., 65535).
    #[arg(long, default_value_t = 4095)]
    max_flows: usize,
    /// Drop traffic to a destination, e.g. `cidr=198.18.0.0/24,port=80,protocol=tcp`
    /// (repeatable; port and protocol optional).
    #[arg(long = "deny", value_name = "RULE")]
    deny: Vec<DenyRule>,
    /// How often a long-lived connection reports its packet and byte counts (0 = never).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    summary_interval: Duration,
    /// Endpoints file (JSON, as the lab writes it): namespaces, pods, labels and IPs, so flows
    /// name their workloads. Re-read when it changes.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["kubernetes", "kubeconfig"])]
    endpoints: Option<std::path::PathBuf>,
    /// Enforce the NetworkPolicy and CiliumNetworkPolicy manifests in DIR (re-read on change).
    #[arg(long, value_name = "DIR")]
    policy_dir: Option<PathBuf>,
    #[command(flatten)]
    policy_mode: lab::PolicyMode,
    /// L7 visibility, comma-separated: `dns` turns DNS messages on UDP port 53 into L7 flows
    /// (query, types, answers, TTL, rcode); `http` HTTP/1.x requests and responses on TCP
    /// ports 80 and 8080 (method, URL, status, latency), `http:PORT` on PORT (8 ports at
    /// most). `--protocol dns|http` and the `dns` and `httpV2` metrics read them. Only those
    /// fields are kept of a payload.
    #[arg(long, value_name = "PROTOCOLS", value_delimiter = ',', value_parser = parse_l7)]
    l7_visibility: Vec<L7>,
    /// Flow streams served at once; more are refused with RESOURCE_EXHAUSTED.
    #[arg(long, value_name = "N", default_value_t = flowscope_observer::DEFAULT_MAX_SUBSCRIBERS as u32,
        value_parser = clap::value_parser!(u32).range(1..=65536))]
    max_subscribers: u32,
    #[command(flatten)]
    export: ExportArgs,
    #[command(flatten)]
    metrics: MetricsArgs,
    #[command(flatten)]
    proxy: ProxyArgs,
    #[command(flatten)]
    kubernetes: KubernetesArgs,
    /// Pin the datapath (its programs' links to the interfaces, the policy, identity,
    /// conntrack and deny maps, counters and the event ring buffer) under DIR on the BPF
    /// filesystem: it keeps enforcing while the observer is stopped, killed, restarted or
    /// upgraded, and the next observer takes it over. `--cleanup` removes it.
    #[arg(long, value_name = "DIR", env = "FLOWSCOPE_BPF_ROOT",
        default_value = flowscope_observer::source::pin::DEFAULT_ROOT)]
    bpf_root: PathBuf,
    /// Pin nothing: the programs detach and the maps go when the observer exits.
    #[arg(long, conflicts_with = "cleanup")]
    no_pin: bool,
    /// Remove everything pinned under --bpf-root (the programs detach from every interface)
    /// and exit. Refused while an observer runs with it.
    #[arg(long)]
    cleanup: bool,
}

/// The Kubernetes API: for the observer the source of pods, namespaces, services, nodes and
/// policies; for the relay, of its observers (--peer-pods).
#[derive(clap::Args)]
#[command(next_help_heading = "Kubernetes")]
struct KubernetesArgs {
    /// Watch the Kubernetes API with the pod's service account. The observer: pods, services
    /// and nodes name the flows; NetworkPolicy, CiliumNetworkPolicy and
    /// CiliumClusterwideNetworkPolicy objects are enforced (beside --policy-dir, if given);
    /// this node's pods are those whose spec.nodeName is --node-name (default: $NODE_NAME,
    /// else the host name). The relay: finds its observers with --peer-pods.
    #[arg(long, conflicts_with = "kubeconfig")]
    kubernetes: bool,
    /// As --kubernetes, with the API server and credentials of a kubeconfig file.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig's context to use (default: its current context).
    #[arg(long, value_name = "NAME", requires = "kubeconfig")]
    context: Option<String>,
}

impl KubernetesArgs {
    fn resolve(self) -> Option<flowscope_kubernetes::Connection> {
        match (self.kubernetes, self.kubeconfig) {
            (true, _) => Some(flowscope_kubernetes::Connection::InCluster),
            (false, Some(path)) => Some(flowscope_kubernetes::Connection::Kubeconfig {
                path,
                context: self.context,
            }),
            (false, None) => None,
        }
    }
}

/// The L7 proxy that enforces CiliumNetworkPolicy HTTP rules (with `--policy-dir`).
#[derive(clap::Args)]
#[command(next_help_heading = "L7 proxy")]
struct ProxyArgs {
    /// Connections the proxy serves at once; more are refused (reset) and counted.
    #[arg(long = "proxy-max-connections", value_name = "N",
        default_value_t = flowscope_observer::proxy::DEFAULT_MAX_CONNECTIONS as u32,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_connections: u32,
    /// An HTTP/1 client of the proxy must send each request head within this time (also
    /// between requests on a kept-alive connection); an idle HTTP/2 connection is closed after
    /// one and a half times it.
    #[arg(long = "proxy-idle-timeout", value_name = "DURATION", default_value = "60s",
        value_parser = parse_positive_duration)]
    idle_timeout: Duration,
}

/// Flow export to a file, as Hubble's static exporter (`--hubble-export-file-path` ...).
#[derive(clap::Args)]
#[command(next_help_heading = "Flow export")]
struct ExportArgs {
    /// Append every new flow that passes the lists below to FILE, one `observe -o json` line
    /// (a GetFlowsResponse) each, for history beyond the ring; `observe --input-file FILE`
    /// reads it back.
    #[arg(long = "export-file", value_name = "FILE")]
    file: Option<PathBuf>,
    /// Rotate the file when it reaches this size, in MB (fractions allowed).
    #[arg(long = "export-file-max-size-mb", value_name = "MB", default_value_t = 10.0,
        value_parser = parse_size_mb, requires = "file")]
    max_size_mb: f64,
    /// Rotated files to keep (named FILE-TIME, oldest removed first).
    #[arg(
        long = "export-file-max-backups",
        value_name = "N",
        default_value_t = 5,
        requires = "file"
    )]
    max_backups: usize,
    /// Export only flows matching one of these JSON FlowFilters (repeatable, or several in one
    /// value), e.g. '{"source_pod":["kube-system/"]}'.
    #[arg(long = "export-allowlist", value_name = "JSON", requires = "file")]
    allowlist: Vec<String>,
    /// Do not export flows matching any of these JSON FlowFilters.
    #[arg(long = "export-denylist", value_name = "JSON", requires = "file")]
    denylist: Vec<String>,
    /// Export only these fields of each flow: comma-separated protobuf paths, e.g.
    /// time,source.pod_name,destination.pod_name,verdict (Hubble's export field mask).
    #[arg(
        long = "export-field-mask",
        value_name = "PATHS",
        value_delimiter = ',',
        requires = "file"
    )]
    field_mask: Vec<String>,
}

impl ExportArgs {
    /// The exporter's configuration, or an error naming the flag that is wrong.
    fn resolve(self) -> anyhow::Result<Option<flowscope_observer::export::ExportConfig>> {
        use flowscope_model::filter::{FilterSet, parse_json_filters};
        let Some(path) = self.file else {
            return Ok(None);
        };
        let allow =
            parse_json_filters("export-allowlist", &self.allowlist).map_err(anyhow::Error::msg)?;
        let deny =
            parse_json_filters("export-denylist", &self.denylist).map_err(anyhow::Error::msg)?;
        let filters = FilterSet::compile(&allow, &deny)
            .map_err(|e| anyhow::anyhow!("--export-allowlist/--export-denylist: {e}"))?;
        let mask = flowscope_model::flow::FieldMask::new(&self.field_mask)
            .map_err(|e| anyhow::anyhow!("--export-field-mask: {e}"))?;
        Ok(Some(flowscope_observer::export::ExportConfig {
            path,
            max_size_bytes: (self.max_size_mb * 1024.0 * 1024.0) as u64,
            max_backups: self.max_backups,
            filters,
            mask,
        }))
    }
}

/// A positive size in MB, at least one kilobyte.
fn parse_size_mb(s: &str) -> Result<f64, String> {
    let mb: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of MB (e.g. 10 or 0.5)"))?;
    if !mb.is_finite() || mb * 1024.0 < 1.0 {
        return Err(format!("{s} MB is too small: at least 0.001 (1 KiB)"));
    }
    Ok(mb)
}

/// Prometheus metrics, as Hubble's `--hubble-metrics` / `--hubble-metrics-server`.
#[derive(Args)]
struct MetricsArgs {
    /// Serve Prometheus metrics (`GET /metrics`, text or OpenMetrics) on ADDR: the observer's
    /// health always, flow metrics with --metrics. Default 127.0.0.1:9965 when --metrics is
    /// given, else no metrics server.
    #[arg(long, value_name = "ADDR", env = "FLOWSCOPE_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Flow metrics in Hubble's syntax, e.g.
    /// "flow,drop,tcp,port-distribution,icmp,policy,dns:query,httpV2:sourceContext=workload-name|pod;destinationContext=namespace".
    #[arg(long, value_name = "METRICS")]
    metrics: Option<flowscope_observer::metrics::MetricsConfig>,
    /// Metric name prefix: `flowscope`, or `hubble` so Hubble's dashboards work unchanged.
    #[arg(long, value_name = "NAME", default_value = "flowscope")]
    metrics_prefix: flowscope_observer::metrics::Prefix,
    /// Series per metric family; flows beyond are counted in *_metrics_series_refused_total.
    #[arg(long, value_name = "N")]
    metrics_series_limit: Option<usize>,
}

impl MetricsArgs {
    /// The listen address and config: a metrics config without an address serves on the
    /// default one.
    fn resolve(
        self,
    ) -> (
        Option<SocketAddr>,
        Option<flowscope_observer::metrics::MetricsConfig>,
        flowscope_observer::metrics::Prefix,
    ) {
        let mut config = self.metrics;
        if let (Some(c), Some(limit)) = (config.as_mut(), self.metrics_series_limit) {
            c.series_limit = limit;
        }
        let listen = self.metrics_listen.or_else(|| {
            config.as_ref().map(|_| {
                flowscope_observer::metrics::DEFAULT_LISTEN
                    .parse()
                    .expect("default")
            })
        });
        (listen, config, self.metrics_prefix)
    }
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("must be longer than 0s".into()),
        d => Ok(d),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 500ms, 5s or 1m"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        _ => return Err(format!("{s:?}: unit must be ms, s or m")),
    })
}

fn main() {
    let cli = Cli::parse();
    // Long-running roles log what they attach and serve; one-shot commands only warnings.
    let serving = matches!(
        cli.command,
        Command::Observer(_) | Command::Relay(_) | Command::Demo(_) | Command::Lab(LabCommand::Run)
    );
    // `observe` ends quietly on a closed stdout by itself, and must not die of a server that
    // closes its connection while it writes (a TLS handshake refused, a server stopping).
    let handles_pipes = serving || matches!(cli.command, Command::Observe(_));
    if !handles_pipes {
        // One-shot commands end quietly when their output pipe closes (`| head`), as other
        // Unix tools do. Servers and `observe` keep Rust's default (ignored), so a peer that
        // goes away is an error on that socket, not the end of the process.
        // SAFETY: setting a signal disposition before any thread is started.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let default_level = if serving { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_level.into()),
        )
        .with_writer(std::io::stderr)
        // Colours for people, plain text for log files and journald.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(err) = run(cli) {
        // One clear chain of causes, never a backtrace: this is what users read.
        eprintln!("flowscope: {err:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Observer(a) if a.cleanup => {
            match flowscope_observer::source::pin::cleanup(&a.bpf_root)? {
                Some(removed) => println!(
                    "Removed the datapath pinned under {}: {} links (detached) and {} maps.",
                    a.bpf_root.display(),
                    removed.links,
                    removed.maps
                ),
                None => println!("Nothing is pinned under {}.", a.bpf_root.display()),
            }
            Ok(())
        }
        Command::Observer(a) => {
            // The Downward API's NODE_NAME, as a DaemonSet passes it.
            let node_name = a
                .node_name
                .or_else(|| std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty()))
                .unwrap_or_else(hostname);
            let (metrics_listen, metrics, metrics_prefix) = a.metrics.resolve();
            let (tls, disable_server_tls) = a.tls.resolve();
            let config = ObserverConfig {
                interfaces: a.interfaces,
                endpoint_interfaces: a.endpoint_interfaces,
                listen: a.listen,
                tls,
                disable_server_tls,
                node_name,
                max_flows: a.max_flows,
                deny: a.deny,
                summary_interval: a.summary_interval,
                endpoints_file: a.endpoints,
                policy_dir: a.policy_dir,
                policy_audit: a.policy_mode.audit,
                policy_cidr_selects_pods: a.policy_mode.cidr_selects_pods,
                dns_visibility: a.l7_visibility.contains(&L7::Dns),
                max_subscribers: a.max_subscribers as usize,
                http_ports: http_ports(&a.l7_visibility)?,
                export: a.export.resolve()?,
                metrics_listen,
                metrics,
                metrics_prefix,
                proxy: flowscope_observer::proxy::ProxyConfig {
                    max_connections: a.proxy.max_connections as usize,
                    idle_timeout: a.proxy.idle_timeout,
                },
                kubernetes: a.kubernetes.resolve(),
                bpf_root: (!a.no_pin).then_some(a.bpf_root),
            };
            runtime.block_on(flowscope_observer::run(config, shutdown_signal()))
        }
        Command::Relay(a) => {
            if a.peers.is_empty()
                && a.peers_file.is_none()
                && a.peer_service.is_none()
                && a.peer_pods.is_none()
            {
                anyhow::bail!(
                    "the relay needs observers: give --peer HOST:PORT, --peers-file FILE, \
                     --peer-service HOST:PORT or --peer-pods SELECTOR (with --kubernetes or \
                     --kubeconfig)"
                );
            }
            let connection = a.kubernetes.resolve();
            let peer_pods = match (&a.peer_pods, &connection) {
                (None, _) => None,
                (Some(_), None) => anyhow::bail!(
                    "--peer-pods finds the observers through the Kubernetes API: give \
                     --kubernetes or --kubeconfig FILE"
                ),
                (Some(selector), Some(connection)) => {
                    flowscope_meta::selector::LabelSelector::parse(
                        selector,
                        flowscope_meta::selector::KeyRule::Kubernetes,
                    )
                    .map_err(|e| anyhow::anyhow!("--peer-pods {selector:?}: {e}"))?;
                    let what = format!("{} in namespace {}", selector, a.peer_namespace);
                    let watch = runtime.block_on(flowscope_kubernetes::peers::watch_peers(
                        connection,
                        &a.peer_namespace,
                        selector,
                    ))?;
                    Some((watch, what))
                }
            };
            if connection.is_some() && peer_pods.is_none() {
                anyhow::bail!("--kubernetes and --kubeconfig are for --peer-pods in the relay");
            }
            if let Some(file) = &a.peers_file {
                std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read the peers file {}", file.display()))?;
            }
            let (tls, disable_server_tls) = a.tls.resolve();
            let observer_tls = a.observer_tls.resolve()?;
            let config = flowscope_relay::RelayConfig {
                listen: a.listen,
                tls,
                disable_server_tls,
                observer_tls,
                discovery: flowscope_relay::Discovery {
                    peers: a.peers,
                    peers_file: a.peers_file,
                    peer_service: a.peer_service,
                    peer_pods: peer_pods
                        .as_ref()
                        .map(|(watch, what)| flowscope_relay::PeerPods {
                            pods: watch.pods.clone(),
                            port: a.peer_port.unwrap_or_default(),
                            what: what.clone(),
                        }),
                },
                metrics_listen: (!a.no_metrics).then_some(a.metrics_listen),
                metrics_prefix: a.metrics_prefix,
                max_flow_requests: a.max_flow_requests as usize,
            };
            runtime.block_on(flowscope_relay::run(config, shutdown_signal()))
        }
        Command::Demo(a) => lab::demo(
            &runtime,
            a.lab.as_deref(),
            a.policies,
            a.policy_mode,
            a.listen,
            a.metrics_listen,
            hostname(),
        ),
        Command::Lab(LabCommand::Up { file }) => lab::up(file.as_deref()),
        Command::Lab(LabCommand::Down) => lab::down(),
        Command::Lab(LabCommand::Status) => lab::status(),
        Command::Lab(LabCommand::Run) => lab::run_foreground(&runtime),
        Command::Observe(args) => {
            let code = runtime.block_on(flowscope_cli::observe(*args))?;
            if code != std::process::ExitCode::SUCCESS {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Status(a) => inspect::status(&a.server, a.output == "json"),
        Command::List(ListCommand::Nodes(a)) => inspect::nodes(&a.server, a.output == "json"),
        Command::List(ListCommand::Namespaces(a)) => {
            inspect::namespaces(&a.server, a.output == "json")
        }
        Command::Policy(PolicyCommand::List { server }) => policy_list(&server),
        Command::Endpoint(EndpointCommand::List { server }) => endpoint_list(&server),
        Command::Policy(PolicyCommand::Validate { dir }) => {
            if !validate_policies(&dir)? {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Connectivity(ConnectivityCommand::Test {
            lab: file,
            output,
            expect,
            policies,
            policy_mode,
        }) => {
            let policies = policies.map(|dir| (dir, policy_mode));
            if !lab::connectivity_test(&runtime, &file, output, expect.as_ref(), policies)? {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

/// `policy validate DIR`: prints each valid policy and each problem; false if any problem.
fn validate_policies(dir: &std::path::Path) -> anyhow::Result<bool> {
    if !dir.is_dir() {
        anyhow::bail!("{} is not a directory of manifests", dir.display());
    }
    let set = flowscope_policy::load_dir(dir);
    for p in &set.policies {
        println!("ok     {} ({}:{})", p.id(), p.file, p.line);
    }
    for p in &set.policies {
        for w in p.warnings() {
            println!("warn   {} ({}:{}): {w}", p.id(), p.file, p.line);
        }
    }
    for e in &set.errors {
        eprintln!("error  {e}");
    }
    println!(
        "valid policies: {}, problems: {}, other documents skipped: {}",
        set.policies.len(),
        set.errors.len(),
        set.skipped
    );
    Ok(set.errors.is_empty())
}

fn policy_list(server: &str) -> anyhow::Result<()> {
    let p: flowscope_model::api::PolicyStatus = client::get_json(server, "/api/v1/policies")?;
    println!(
        "Policy revision {}{}",
        p.revision,
        if p.audit { " (audit mode)" } else { "" }
    );
    // (kind, namespace/name, file:line, selected pods), columns as wide as their widest cell.
    let rows: Vec<[String; 4]> = p
        .loaded
        .iter()
        .map(|l| {
            [
                l.kind.clone(),
                format!("{}/{}", l.namespace, l.name),
                // `api` for an object of the Kubernetes API, else the manifest's file:line.
                if l.file.starts_with("api:") {
                    "api".to_string()
                } else {
                    format!("file:{}:{}", l.file, l.line)
                },
                if l.selects.is_empty() {
                    "(none)".to_string()
                } else {
                    l.selects.join(", ")
                },
            ]
        })
        .collect();
    let header = ["KIND", "POLICY", "SOURCE", "SELECTS"].map(String::from);
    let width = |i: usize| {
        rows.iter()
            .chain([&header])
            .map(|r| r[i].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2) = (width(0), width(1), width(2));
    for r in [&header].into_iter().chain(&rows) {
        println!("{:<w0$}  {:<w1$}  {:<w2$}  {}", r[0], r[1], r[2], r[3]);
    }
    for l in &p.loaded {
        for w in &l.warnings {
            println!(
                "warn   {}/{} ({}:{}): {w}",
                l.namespace, l.name, l.file, l.line
            );
        }
    }
    for e in &p.errors {
        println!("error  {e}");
    }
    Ok(())
}

fn endpoint_list(server: &str) -> anyhow::Result<()> {
    let eps: Vec<flowscope_model::api::Endpoint> = client::get_json(server, "/api/v1/endpoints")?;
    println!(
        "{:<8} {:<10} {:<9} {:<9} {:<30} {:<16} {:<12} LABELS",
        "ENDPOINT", "IDENTITY", "INGRESS", "EGRESS", "POD", "IPS", "INTERFACE"
    );
    let on = |enabled: bool| if enabled { "Enabled" } else { "Disabled" };
    for e in &eps {
        println!(
            "{:<8} {:<10} {:<9} {:<9} {:<30} {:<16} {:<12} {}",
            e.id,
            e.identity,
            on(e.ingress_enforcement),
            on(e.egress_enforcement),
            format!("{}/{}", e.namespace, e.pod_name),
            e.ips.join(","),
            // A pod of another node has none here.
            e.interface.as_deref().unwrap_or("-"),
            e.labels.join(" ")
        );
    }
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
