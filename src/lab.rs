//! The lab commands (`lab up|down|status|run`), the demo and `connectivity test`: the lab crate
//! makes pods, the observer watches them, in this process or another.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use flowscope_lab::{
    control::{self, Lab},
    runner::Runner,
    topology::{self, LabState},
};
use flowscope_observer::ObserverConfig;

use crate::connectivity;

/// How policies apply: `--policy-audit-mode` and `--policy-cidr-selects-pods`, for the
/// observer, the demo and `connectivity test`.
#[derive(Clone, Copy, Debug, Default, clap::Args)]
pub struct PolicyMode {
    /// Evaluate policies and report what they would drop as AUDIT; drop nothing.
    #[arg(long = "policy-audit-mode")]
    pub audit: bool,
    /// `ipBlock` and CIDR rules also match pod addresses, as the upstream Kubernetes
    /// conformance tests expect. By default, as in Cilium, they match only addresses that are
    /// not pods (a pod is known by its identity).
    #[arg(long = "policy-cidr-selects-pods")]
    pub cidr_selects_pods: bool,
}

/// The observer settings that watch a lab: every lab veth (also pods added later) as workload
/// interfaces, and the lab's endpoints file.
pub fn observer_config(
    listen: SocketAddr,
    node_name: String,
    policy_dir: Option<PathBuf>,
    mode: PolicyMode,
) -> ObserverConfig {
    let glob = format!("{}*", topology::IF_PREFIX);
    ObserverConfig {
        interfaces: vec![glob.clone()],
        endpoint_interfaces: vec![glob],
        listen,
        // The demo's API is for this machine: plain text on loopback; elsewhere it refuses.
        tls: None,
        disable_server_tls: false,
        node_name,
        max_flows: 4095,
        deny: Vec::new(),
        summary_interval: Duration::from_secs(5),
        endpoints_file: Some(topology::endpoints_path()),
        policy_dir,
        policy_audit: mode.audit,
        policy_cidr_selects_pods: mode.cidr_selects_pods,
        metrics_listen: None,
        metrics: None,
        metrics_prefix: Default::default(),
        // The lab's pods resolve each other's names and talk HTTP: show those lookups and
        // requests.
        dns_visibility: true,
        max_subscribers: flowscope_observer::DEFAULT_MAX_SUBSCRIBERS,
        http_ports: crate::DEFAULT_HTTP_PORTS.to_vec(),
        export: None,
        proxy: Default::default(),
        kubernetes: None,
        // The demo and `connectivity test` remove their pods when they stop: their datapath
        // goes with them.
        bpf_root: None,
    }
}

/// The flow metrics the demo records: every family, with source and destination namespaces,
/// so the seed's Prometheus sees which namespaces talk and what is dropped between them.
pub const DEMO_METRICS: &str = "flow:sourceContext=namespace;destinationContext=namespace,\
drop:sourceContext=namespace;destinationContext=namespace,tcp,port-distribution,icmp,\
policy:sourceContext=namespace;destinationContext=namespace,dns,httpV2";

/// The seed's policies (deploy/network-policies), built in so the demo needs no checkout, and
/// the egress rule a real cluster would add so that frontend reaches my-api at all (the seed's
/// allow-dns-egress isolates egress in `default`).
const SEED_POLICIES: [(&str, &str); 5] = [
    (
        "default-deny-ingress.yaml",
        include_str!("../deploy/network-policies/default-deny-ingress.yaml"),
    ),
    (
        "allow-dns-egress.yaml",
        include_str!("../deploy/network-policies/allow-dns-egress.yaml"),
    ),
    (
        "allow-monitoring-scrape.yaml",
        include_str!("../deploy/network-policies/allow-monitoring-scrape.yaml"),
    ),
    (
        "allow-get-only.yaml",
        include_str!("../deploy/network-policies/allow-get-only.yaml"),
    ),
    (
        "allow-frontend-to-api.yaml",
        include_str!("../deploy/network-policies/allow-frontend-to-api.yaml"),
    ),
];

/// Writes the built-in seed policies under the lab's state directory and returns it.
fn seed_policies() -> anyhow::Result<PathBuf> {
    let dir = Path::new(topology::STATE_DIR).join("policies");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, text) in SEED_POLICIES {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(dir)
}

/// `lab up [FILE]`: creates the lab and starts its runner in the background.
pub fn up(file: Option<&Path>) -> anyhow::Result<()> {
    let lab = Lab::load(file)?;
    if !lab.up()? {
        println!("The lab from {} is already up.", lab.source);
        return status();
    }
    // The servers and traffic run in a process of their own, so the lab outlives this command.
    let exe = std::env::current_exe().context("finding the flowscope binary")?;
    let log = std::fs::File::create(Path::new(topology::STATE_DIR).join("runner.log"))?;
    let spawned = {
        use std::os::unix::process::CommandExt as _;
        Command::new(exe)
            .args(["lab", "run"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
    };
    let child = match spawned {
        Ok(c) => c,
        Err(err) => {
            let _ = control::down();
            return Err(err).context("starting the lab runner");
        }
    };
    control::set_runner(child.id())?;
    println!("Lab from {} is up.", lab.source);
    status()?;
    println!(
        "\nWatch it: flowscope observer --interface '{0}*' --endpoint-interface '{0}*' --endpoints {1}",
        topology::IF_PREFIX,
        topology::endpoints_path().display()
    );
    Ok(())
}

pub fn down() -> anyhow::Result<()> {
    control::down()?;
    println!("Lab removed.");
    // An observer run on the lab with the default pins left them; its interfaces are gone.
    let root = std::path::Path::new(flowscope_observer::source::pin::DEFAULT_ROOT);
    match flowscope_observer::source::pin::cleanup(root) {
        Ok(Some(removed)) => println!(
            "Pinned datapath removed from {} ({} links, {} maps).",
            root.display(),
            removed.links,
            removed.maps
        ),
        Ok(None) => {}
        Err(err) => eprintln!("Pinned datapath left in place: {err:#}"),
    }
    Ok(())
}

pub fn status() -> anyhow::Result<()> {
    let Some(state) = LabState::load() else {
        println!("No lab is up.");
        return Ok(());
    };
    println!("Lab from {}:", state.source);
    for line in control::status_lines(&state) {
        println!("{line}");
    }
    Ok(())
}

/// `lab run` (started by `lab up`): serves the pods' ports and runs the traffic until stopped.
pub fn run_foreground(runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let state = LabState::load().context("no lab is up")?;
    let lab = Lab::from_text(state.source.clone(), state.text.clone())?;
    let runner = Runner::start(&lab.plan, &lab.pods, lab.dns_table())?;
    runtime.block_on(crate::shutdown_signal());
    runner.stop();
    Ok(())
}

/// `flowscope demo`: the lab, its servers and traffic, and the observer with its API, all in
/// this process; Ctrl-C removes everything.
pub fn demo(
    runtime: &tokio::runtime::Runtime,
    file: Option<&Path>,
    policies: Option<PathBuf>,
    mode: PolicyMode,
    listen: SocketAddr,
    metrics_listen: SocketAddr,
    node_name: String,
) -> anyhow::Result<()> {
    let lab = Lab::load(file)?;
    if let Some(state) = LabState::load()
        && control::is_live(&state)
    {
        bail!(
            "a lab from {} is already up; `flowscope lab down` first",
            state.source
        );
    }
    lab.up()?;
    let result = (|| {
        // The demo runs the lab itself: once this process is gone, what it made is leftover.
        control::set_runner(std::process::id())?;
        let runner = Runner::start(&lab.plan, &lab.pods, lab.dns_table())?;
        println!(
            "flowscope demo: {} pods from {} on this machine, their traffic and the observer.\n\
             UI:     http://{listen}/   (service map and flows)\n\
             Flows:  ws://{listen}/api/v1/flows   (or `flowscope observe -f`)\n\
             Status: http://{listen}/api/v1/status\n\
             Metrics: http://{metrics_listen}/metrics\n\
             Ctrl-C stops the demo and removes its pods.",
            lab.pods.len(),
            lab.source
        );
        for line in control::status_lines(&LabState::load().unwrap_or_default()) {
            println!("  {line}");
        }
        let policies = match policies {
            Some(dir) => dir,
            None => seed_policies()?,
        };
        println!(
            "Policies: {}{}",
            policies.display(),
            match (mode.audit, mode.cidr_selects_pods) {
                (false, false) => "",
                (true, false) => " (audit mode)",
                (false, true) => " (CIDR rules select pods)",
                (true, true) => " (audit mode, CIDR rules select pods)",
            }
        );
        let mut config = observer_config(listen, node_name, Some(policies), mode);
        config.metrics_listen = Some(metrics_listen);
        config.metrics = Some(DEMO_METRICS.parse().context("the demo's metrics")?);
        let observed = runtime.block_on(flowscope_observer::run(config, crate::shutdown_signal()));
        runner.stop();
        observed
    })();
    control::down()?;
    result
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Json,
    Table,
}

/// `connectivity test`: returns whether all expectations held (true without `--expect`).
pub fn connectivity_test(
    runtime: &tokio::runtime::Runtime,
    file: &Path,
    output: Output,
    expect: Option<&PathBuf>,
    policies: Option<(PathBuf, PolicyMode)>,
) -> anyhow::Result<bool> {
    let started = Instant::now();
    let lab = Lab::load(Some(file))?;
    let created = lab.up()?;
    let state = LabState::load().context("lab state missing after up")?;
    let runner_alive = state.runner_pid.is_some() && control::is_live(&state);
    // Servers are needed to probe; a lab brought up by `lab up` already has them.
    let runner = if runner_alive {
        None
    } else {
        Some(Runner::start(&lab.plan, &lab.pods, lab.dns_table())?)
    };
    let listen: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?
    };
    let result = runtime.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let observer = tokio::spawn(flowscope_observer::run(
            observer_config(
                listen,
                "connectivity-test".into(),
                policies.as_ref().map(|p| p.0.clone()),
                policies.as_ref().map(|p| p.1).unwrap_or_default(),
            ),
            async move {
                let _ = stop_rx.await;
            },
        ));
        wait_ready(listen).await?;
        // The endpoints file and the policies are read once a second: let the observer know the
        // pods and install the policies first.
        tokio::time::sleep(Duration::from_millis(if policies.is_some() {
            2200
        } else {
            1100
        }))
        .await;
        let lines =
            connectivity::run(&lab.plan, &lab.pods, &format!("ws://{listen}/api/v1/flows")).await;
        let _ = stop_tx.send(());
        let _ = observer.await;
        lines
    });
    if let Some(r) = runner {
        r.stop();
    }
    let lines = result?;
    match output {
        Output::Json => {
            for l in &lines {
                println!("{}", serde_json::to_string(l)?);
            }
            println!("{}", connectivity::summary(&lines, started));
        }
        Output::Table => {
            connectivity::print_table(&lines);
            println!("{}", connectivity::summary(&lines, started)["summary"]);
        }
    }
    if created {
        eprintln!("The lab stays up for more tests; `flowscope lab down` removes it.");
    }
    let Some(expect) = expect else {
        return Ok(true);
    };
    let mismatches = connectivity::compare(&lines, expect)?;
    for m in &mismatches {
        eprintln!("MISMATCH {m}");
    }
    if mismatches.is_empty() {
        eprintln!("All {} probes as expected.", lines.len());
    }
    Ok(mismatches.is_empty())
}

async fn wait_ready(listen: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(listen).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the observer did not start listening on {listen}")
}
