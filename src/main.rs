//! `flowscope`: one binary for every role (observer, and later relay, lab, observe, ...).
//! This file only parses the command line and hands over to the library crates.
mod demo;

/// The observer allocates and frees a few small strings per flow on many threads; mimalloc's
/// per-thread free lists make that several times cheaper than glibc's malloc (see the pipeline
/// benchmark).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

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
    Observer(ObserverArgs),
    /// Two demo hosts in network namespaces with steady traffic (some denied), the observer
    /// attached, and its API on localhost. Ctrl-C removes everything.
    Demo(DemoArgs),
}

#[derive(Args)]
struct DemoArgs {
    /// Address of the flow API.
    #[arg(long, default_value = "127.0.0.1:4244", env = "FLOWSCOPE_LISTEN")]
    listen: SocketAddr,
}

#[derive(Args)]
struct ObserverArgs {
    /// Interfaces to watch, by name or shell glob (repeatable). Interfaces that appear later
    /// and match are attached too.
    #[arg(long = "interface", short = 'i', required = true, value_name = "GLOB")]
    interfaces: Vec<String>,
    /// Interfaces whose far end is a workload (pod veths, like Cilium's lxc*): their tc
    /// ingress is the workload's egress.
    #[arg(long = "endpoint-interface", value_name = "GLOB")]
    endpoint_interfaces: Vec<String>,
    /// Address of the flow API (WebSocket and HTTP).
    #[arg(long, default_value = "127.0.0.1:4244", env = "FLOWSCOPE_LISTEN")]
    listen: SocketAddr,
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
    #[arg(long, value_name = "FILE")]
    endpoints: Option<std::path::PathBuf>,
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
    if let Err(err) = run(cli) {
        // One clear chain of causes, never a backtrace: this is what users read.
        eprintln!("flowscope: {err:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Observer(a) => {
            let node_name = match a.node_name {
                Some(n) => n,
                None => hostname(),
            };
            let config = ObserverConfig {
                interfaces: a.interfaces,
                endpoint_interfaces: a.endpoint_interfaces,
                listen: a.listen,
                node_name,
                max_flows: a.max_flows,
                deny: a.deny,
                summary_interval: a.summary_interval,
                endpoints_file: a.endpoints,
            };
            runtime.block_on(flowscope_observer::run(config, shutdown_signal()))
        }
        Command::Demo(a) => run_demo(&runtime, a),
    }
}

fn run_demo(runtime: &tokio::runtime::Runtime, a: DemoArgs) -> anyhow::Result<()> {
    demo::setup().context("creating the demo hosts (run as root)")?;
    let stop = Arc::new(AtomicBool::new(false));
    let result = (|| {
        demo::start_traffic(stop.clone())?;
        let config = ObserverConfig {
            interfaces: demo::interfaces(),
            endpoint_interfaces: demo::interfaces(),
            listen: a.listen,
            node_name: hostname(),
            max_flows: 4095,
            deny: vec![demo::deny_rule().parse()?],
            summary_interval: Duration::from_secs(5),
            endpoints_file: None,
        };
        println!(
            "flowscope demo: 198.18.100.2 (fsd-client) -> 198.18.101.2 (fsd-server), \
             TCP 8080 and UDP 5353 allowed, TCP 9090 denied.\n\
             Flows:  ws://{0}/api/v1/flows  (send {{\"follow\":true}})\n\
             Status: http://{0}/api/v1/status\n\
             Ctrl-C to stop and remove the demo hosts.",
            a.listen
        );
        runtime.block_on(flowscope_observer::run(config, shutdown_signal()))
    })();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    demo::teardown();
    result
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
