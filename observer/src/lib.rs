//! The per-node observer. Data flows through the modules in this order:
//! `source` (kernel programs, ring buffer, interfaces) -> `pipeline` (decode with `parse`,
//! batch, count in `metrics`) -> `store` (recent history) -> `api` (WebSocket and HTTP), and
//! `metrics` (Prometheus, on its own listener).
pub mod api;
pub mod clock;
pub mod dns;
pub mod endpoints;
pub mod event;
pub mod export;
pub mod graph;
pub mod grpc;
pub mod http;
pub mod kubernetes;
pub mod metrics;
pub mod parse;
pub mod pipeline;
pub mod policy;
pub mod proxy;
pub mod source;
pub mod store;

use std::{
    collections::HashMap,
    future::Future,
    net::SocketAddr,
    sync::{Arc, Mutex, atomic::Ordering},
    time::Duration,
};

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::{
    api::AppState,
    endpoints::{EndpointsFile, Registry},
    parse::{Decoder, InterfaceInfo},
    pipeline::{FlowStore, Pipeline, PipelineCounters},
    policy::{Attributions, PolicyStatus},
    proxy::{L7Policy, Proxy, ProxyFlow, ProxyStats},
    source::{
        datapath::{Datapath, DatapathSettings, PinReport, PinStart},
        deny::DenyRule,
        events::EventReader,
        interfaces::{self, InterfaceSelector, LinkWatcher},
        pin::PinRoot,
    },
};

/// Events taken from the ring buffer per pipeline step: large enough that locking the store
/// and waking readers is amortised, small enough that followers see flows within microseconds.
const EVENT_BATCH: usize = 1024;
/// How often the pipeline collects the L7 proxy's flows (at most this late in the store).
const PROXY_FLOWS_POLL: Duration = Duration::from_millis(5);
/// Interfaces are re-listed this often even without a netlink notification, as a safety net.
const RESCAN_INTERVAL: Duration = Duration::from_secs(5);
/// How often the endpoints file and the policy directory are checked for changes: a few
/// `stat` calls, cheap enough to keep the time from an edit to enforcement well under a second.
const SOURCE_POLL: Duration = Duration::from_millis(250);

pub struct ObserverConfig {
    pub interfaces: Vec<String>,
    pub endpoint_interfaces: Vec<String>,
    pub listen: SocketAddr,
    /// TLS on the API listener (`--tls-cert-file`, mutual with client CAs).
    pub tls: Option<flowscope_tls::ServerTls>,
    /// `--disable-server-tls`: plain text on a listen address that is not loopback.
    pub disable_server_tls: bool,
    pub node_name: String,
    pub max_flows: usize,
    pub deny: Vec<DenyRule>,
    pub summary_interval: Duration,
    /// Endpoints file (written by the lab): who is behind which address. Re-read on change.
    pub endpoints_file: Option<std::path::PathBuf>,
    /// Directory of NetworkPolicy / CiliumNetworkPolicy manifests to enforce; re-read on change.
    pub policy_dir: Option<std::path::PathBuf>,
    /// Evaluate and report policies, drop nothing (verdict AUDIT).
    pub policy_audit: bool,
    /// `ipBlock` and CIDR rules also match pod addresses (the upstream Kubernetes semantics
    /// some implementations follow); by default, as in Cilium, they match only addresses that
    /// are not pods.
    pub policy_cidr_selects_pods: bool,
    /// Where to serve `GET /metrics` (Prometheus); None serves no metrics.
    pub metrics_listen: Option<SocketAddr>,
    /// Flow metrics to record, in Hubble's syntax; None records only the observer's health.
    pub metrics: Option<metrics::MetricsConfig>,
    /// First part of every metric name: `flowscope`, or `hubble` for Hubble's dashboards.
    pub metrics_prefix: metrics::Prefix,
    /// L7 DNS visibility: DNS messages on UDP port 53 become L7 flows (query, answers, rcode).
    pub dns_visibility: bool,
    /// Flow streams served at once; more are refused (RESOURCE_EXHAUSTED).
    pub max_subscribers: usize,
    /// L7 HTTP visibility on these TCP ports (HTTP/1.x heads become L7 flows).
    pub http_ports: Vec<u16>,
    /// Export flows to a rotated file (Hubble's static exporter); None exports nothing.
    pub export: Option<export::ExportConfig>,
    /// The L7 proxy that enforces HTTP rules (runs when policies are enforced).
    pub proxy: proxy::ProxyConfig,
    /// The Kubernetes API: pods, namespaces and policies from there (beside the policy
    /// directory, if any); replaces the endpoints file.
    pub kubernetes: Option<flowscope_kubernetes::Connection>,
    /// Where to pin the datapath on the BPF filesystem so that it outlives the observer
    /// (`--bpf-root`); None: it is removed when the observer exits (`--no-pin`).
    pub bpf_root: Option<std::path::PathBuf>,
}

/// Flow streams an observer serves at once by default.
pub const DEFAULT_MAX_SUBSCRIBERS: usize = 1024;

/// Runs the observer until `shutdown` completes; detaches everything on the way out.
pub async fn run(
    cfg: ObserverConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    store::check_capacity(cfg.max_flows).context("--max-flows")?;
    // Checked before anything is attached: plain text only on loopback, unless asked for.
    let tls = flowscope_server::listen::tls(
        "observer",
        cfg.listen,
        cfg.tls.as_ref(),
        cfg.disable_server_tls,
    )?;
    let selector = InterfaceSelector::new(&cfg.interfaces)?;
    let endpoint_selector = InterfaceSelector::new(&cfg.endpoint_interfaces)?;
    let listener = flowscope_server::listen::bind("the API", cfg.listen, "--listen").await?;
    let metrics_listener = match cfg.metrics_listen {
        Some(addr) => Some(metrics::bind(addr).await?),
        None => {
            if cfg.metrics.is_some() {
                warn!("Flow metrics are configured but not served: no metrics listen address");
            }
            None
        }
    };

    let exporter = cfg.export.clone().map(export::open).transpose()?;

    let settings = DatapathSettings {
        summary_interval_ns: cfg.summary_interval.as_nanos() as u64,
        audit: cfg.policy_audit,
        dns: cfg.dns_visibility,
        http_ports: cfg.http_ports.clone(),
    };
    let mut datapath = match &cfg.bpf_root {
        Some(root) => {
            PinRoot::open(root).and_then(|root| Datapath::load_pinned(&settings, &cfg.deny, root))
        }
        None => Datapath::load(&settings, &cfg.deny),
    }
    .map_err(privileges_hint)?;
    let events = EventReader::new(datapath.take_events()?)?;
    let lost_reported = datapath.lost_reported_at_start();
    let pin_report = datapath.pin_report().cloned();
    let enforcing = cfg.policy_dir.is_some() || cfg.kubernetes.is_some();
    if !enforcing {
        // Adopted maps may hold the policy of an observer that enforced one.
        if pin_report
            .as_ref()
            .is_some_and(|r| r.start == PinStart::Adopted)
        {
            datapath.clear_policy()?;
        }
    }
    let store = Arc::new(FlowStore::new(cfg.max_flows)?);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let state = Arc::new(AppState::new(
        store.clone(),
        &cfg.node_name,
        cfg.max_subscribers as u64,
        shutdown_rx,
    ));

    let datapath = Arc::new(Mutex::new(datapath));
    let (ifaces_tx, ifaces_rx) = watch::channel(HashMap::new());
    sync_interfaces(&datapath, &selector, &endpoint_selector, &ifaces_tx);
    if !enforcing {
        // Without policies the maps hold all the programs need from the start.
        release_datapath(&datapath);
    }
    if let Ok(present) = interfaces::list() {
        for pattern in selector.unmatched(&present) {
            warn!(
                "No interface matches --interface {pattern:?} yet: it is attached once one \
                 appears (`ip link` lists this machine's interfaces)"
            );
        }
    }
    let watcher = tokio::spawn(watch_interfaces(
        datapath.clone(),
        selector,
        endpoint_selector,
        ifaces_tx,
    ));

    anyhow::ensure!(
        cfg.kubernetes.is_none() || cfg.endpoints_file.is_none(),
        "--endpoints and the Kubernetes API (--kubernetes, --kubeconfig) both describe the \
         pods: give one"
    );
    let kube = match &cfg.kubernetes {
        Some(connection) => Some(flowscope_kubernetes::start(connection).await?),
        None => None,
    };
    let cluster_rx = kube.as_ref().map(|k| k.state.clone());
    let (registry_tx, registry_rx) = watch::channel(Arc::new(Registry::default()));
    let registry_task = match (&cluster_rx, cfg.endpoints_file.clone()) {
        (Some(cluster), _) => Some(tokio::spawn(kubernetes::watch_cluster(
            cluster.clone(),
            cfg.node_name.clone(),
            registry_tx,
        ))),
        (None, Some(path)) => Some(tokio::spawn(watch_endpoints(path, registry_tx))),
        (None, None) => None,
    };

    let (attributions_tx, attributions_rx) = watch::channel(Arc::new(Attributions::new()));
    // With policies, the L7 proxy runs: its listeners exist before any policy can send a
    // connection to them.
    let (l7_tx, l7_rx) = watch::channel(Arc::new(L7Policy::default()));
    let (proxy_flows_tx, proxy_flows_rx) = mpsc::channel::<ProxyFlow>(proxy::FLOW_QUEUE);
    let l7_proxy = match enforcing {
        true => {
            let dp = datapath.clone();
            let p = Proxy::start(
                cfg.proxy.clone(),
                l7_rx,
                proxy_flows_tx,
                |sockets, ports| {
                    let mut dp = dp.lock().map_err(|_| anyhow::anyhow!("datapath lock"))?;
                    dp.attach_proxy(sockets)?;
                    dp.set_proxy_ports(ports.ingress, ports.egress)
                },
            )
            .await
            .context("starting the L7 proxy")?;
            Some(p)
        }
        false => None,
    };
    let proxy_stats = l7_proxy.as_ref().map(|p| p.stats.clone());
    if let Ok(mut rt) = state.runtime.lock() {
        rt.proxy_stats = proxy_stats.clone();
        rt.cluster = cluster_rx.clone();
        rt.pins = pin_report.as_ref().map(pin_status);
    }
    let policy_task = enforcing.then(|| {
        tokio::spawn(watch_policies(
            PolicySource {
                dir: cfg.policy_dir.clone(),
                cluster: cluster_rx.clone(),
                audit: cfg.policy_audit,
                cidr_selects_pods: cfg.policy_cidr_selects_pods,
                endpoints_configured: cfg.endpoints_file.is_some() || cluster_rx.is_some(),
            },
            datapath.clone(),
            registry_rx.clone(),
            ifaces_rx.clone(),
            attributions_tx,
            l7_tx,
            state.clone(),
        ))
    });

    let decoder = Decoder::new(&cfg.node_name);
    let counters = Arc::new(PipelineCounters::default());
    let mut pipeline = Pipeline::new(decoder, store.clone(), counters.clone());
    // What the ring buffer lost before this observer and was reported is not reported again;
    // what it lost while no observer ran is, at the first check.
    pipeline.set_lost_reported(&lost_reported);
    let metrics_task = metrics_listener.map(|listener| {
        let health = metrics::Health {
            state: state.clone(),
            counters,
        };
        let (exporter, recorder) =
            metrics::setup(&cfg.metrics_prefix, cfg.metrics.as_ref(), Some(health));
        pipeline.set_metrics(recorder);
        if let Ok(addr) = listener.local_addr() {
            info!(listen = %addr, "Serving metrics on http://{addr}/metrics");
        }
        let mut stop = state.shutdown.clone();
        tokio::spawn(metrics::serve(listener, exporter, async move {
            let _ = stop.wait_for(|stopping| *stopping).await;
        }))
    });
    let exporter = exporter
        .map(|e| e.start(store.clone(), state.clone()))
        .transpose()
        .context("starting the flow exporter")?;
    let pipe = tokio::spawn(run_pipeline(
        pipeline,
        events,
        datapath.clone(),
        ifaces_rx,
        registry_rx,
        attributions_rx,
        ProxyFeed {
            flows: proxy_flows_rx,
            stats: proxy_stats,
        },
        state.clone(),
    ));

    // With policies, ready means enforcing them: the policy watcher says so after its first
    // install.
    if !enforcing {
        state.ready.store(true, Ordering::Relaxed);
    }
    let (scheme, grpc) = if tls.is_some() {
        ("wss", "TLS")
    } else {
        ("ws", "plain text")
    };
    info!(listen = %cfg.listen, "Serving flows on {scheme}://{}/api/v1/flows and Hubble's gRPC API ({grpc})", cfg.listen);
    let app = api::router(state.clone()).route_service(
        "/peer.Peer/{*method}",
        flowscope_proto::servers::peer::peer_server::PeerServer::new(grpc::GrpcPeer {
            name: state.node_name.clone(),
            listen: cfg.listen,
            cluster: cluster_rx.clone(),
            shutdown: state.shutdown.clone(),
        }),
    );
    flowscope_server::listen::serve(listener, app, tls, async move {
        shutdown.await;
        info!("Shutting down");
        let _ = shutdown_tx.send(true);
    })
    .await
    .context("serving the API")?;
    drop(kube);
    watcher.abort();
    pipe.abort();
    for t in [registry_task, policy_task].into_iter().flatten() {
        t.abort();
    }
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    let _ = watcher.await;
    let _ = pipe.await;
    if let Some(t) = exporter {
        // It flushes what it wrote and stops on the shutdown signal.
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    if let Some(p) = l7_proxy {
        p.stop().await;
    }
    // Dropping the last handle detaches the programs from every interface, unless they are
    // pinned: then they keep enforcing until the next observer takes them over.
    drop(datapath);
    Ok(())
}

/// The datapath's maps hold what its programs judge by: links found pinned get this observer's
/// programs, and a new layout's maps become the ones to adopt.
fn release_datapath(datapath: &Mutex<Datapath>) {
    if let Ok(mut dp) = datapath.lock()
        && let Err(err) = dp.release()
    {
        warn!("Taking over the pinned datapath: {err:#}");
    }
}

fn pin_status(r: &PinReport) -> flowscope_model::api::PinStatus {
    flowscope_model::api::PinStatus {
        root: r.root.display().to_string(),
        layout: r.layout.clone(),
        start: r.start.as_str().to_owned(),
        links_found: r.links_found,
        pending_swaps: 0,
        lost_while_away: r.lost_while_away,
        lost_reported_before: r.lost_reported_before,
        away_seconds: r.away.map(|a| a.as_secs_f64()),
    }
}

/// A datapath the kernel refused for want of privileges says what the observer needs.
fn privileges_hint(e: anyhow::Error) -> anyhow::Error {
    let denied = e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
    });
    if denied {
        e.context(
            "the kernel refused the eBPF programs: run the observer as root (or with CAP_BPF, \
             CAP_NET_ADMIN and CAP_PERFMON)",
        )
    } else {
        e
    }
}

fn sync_interfaces(
    datapath: &Mutex<Datapath>,
    selector: &InterfaceSelector,
    endpoint_selector: &InterfaceSelector,
    out: &watch::Sender<HashMap<u32, InterfaceInfo>>,
) {
    let present = match interfaces::list() {
        Ok(p) => p,
        Err(err) => {
            warn!("Listing interfaces: {err}");
            return;
        }
    };
    let Ok(mut dp) = datapath.lock() else { return };
    dp.sync(&present, selector);
    let attached: HashMap<u32, InterfaceInfo> = dp
        .attached()
        .into_iter()
        .map(|(name, index)| {
            let endpoint = endpoint_selector.matches(&name);
            (index, InterfaceInfo { name, endpoint })
        })
        .collect();
    out.send_if_modified(|cur| {
        if *cur != attached {
            *cur = attached;
            true
        } else {
            false
        }
    });
}

async fn watch_interfaces(
    datapath: Arc<Mutex<Datapath>>,
    selector: InterfaceSelector,
    endpoint_selector: InterfaceSelector,
    out: watch::Sender<HashMap<u32, InterfaceInfo>>,
) {
    let watcher = match LinkWatcher::new() {
        Ok(w) => Some(w),
        Err(err) => {
            warn!("Link notifications unavailable ({err}); rescanning every {RESCAN_INTERVAL:?}");
            None
        }
    };
    let mut rescan = tokio::time::interval(RESCAN_INTERVAL);
    loop {
        match &watcher {
            Some(w) => {
                tokio::select! {
                    r = w.changed() => if let Err(err) = r {
                        warn!("Link notifications: {err}");
                    },
                    _ = rescan.tick() => {}
                }
            }
            None => {
                rescan.tick().await;
            }
        }
        sync_interfaces(&datapath, &selector, &endpoint_selector, &out);
    }
}

/// What the L7 proxy gives the pipeline: its flows, and its counters (for the status, and to
/// report flows its queue lost).
struct ProxyFeed {
    flows: mpsc::Receiver<ProxyFlow>,
    stats: Option<Arc<ProxyStats>>,
}

#[allow(clippy::too_many_arguments)]
async fn run_pipeline(
    mut pipeline: Pipeline,
    mut events: EventReader,
    datapath: Arc<Mutex<Datapath>>,
    mut ifaces: watch::Receiver<HashMap<u32, InterfaceInfo>>,
    mut registry: watch::Receiver<Arc<Registry>>,
    mut attributions: watch::Receiver<Arc<Attributions>>,
    mut proxy: ProxyFeed,
    state: Arc<AppState>,
) {
    let mut proxy_batch: Vec<ProxyFlow> = Vec::with_capacity(EVENT_BATCH);
    let mut proxy_lost_seen = 0u64;
    let mut proxy_open = proxy.stats.is_some();
    let mut proxy_tick = tokio::time::interval(PROXY_FLOWS_POLL);
    proxy_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut batch = Vec::with_capacity(EVENT_BATCH);
    let mut payloads: Vec<Box<[u8]>> = Vec::new();
    let mut second = tokio::time::interval(Duration::from_secs(1));
    pipeline
        .decoder
        .set_interfaces(ifaces.borrow_and_update().clone());
    pipeline
        .decoder
        .set_host_addrs(interfaces::host_addrs().unwrap_or_default());
    loop {
        tokio::select! {
            r = events.read_batch(&mut batch, &mut payloads, EVENT_BATCH) => match r {
                Ok(malformed) => {
                    if malformed > 0 {
                        pipeline.note_malformed(malformed);
                    }
                    if attributions.has_changed().unwrap_or(false) {
                        pipeline.decoder.set_attributions(attributions.borrow_and_update().clone());
                    }
                    if registry.has_changed().unwrap_or(false) {
                        let reg = registry.borrow_and_update().clone();
                        if let Ok(mut rt) = state.runtime.lock() {
                            rt.registry = reg.clone();
                        }
                        pipeline.decoder.set_registry(reg);
                    }
                    if ifaces.has_changed().unwrap_or(false) {
                        pipeline.decoder.set_interfaces(ifaces.borrow_and_update().clone());
                        pipeline.decoder.set_host_addrs(interfaces::host_addrs().unwrap_or_default());
                    }
                    pipeline.process_with_payloads(&batch, &mut payloads);
                    batch.clear();
                }
                Err(err) => {
                    warn!("Reading the ring buffer: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            // The proxy's flows are collected on a short tick rather than woken per flow: at
            // tens of thousands of requests a second a wakeup per flow costs more than the
            // flow itself.
            _ = proxy_tick.tick(), if proxy_open => {
                loop {
                    match proxy.flows.try_recv() {
                        Ok(f) => {
                            proxy_batch.push(f);
                            if proxy_batch.len() == EVENT_BATCH {
                                pipeline.process_proxy(&mut proxy_batch);
                            }
                        }
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            proxy_open = false;
                            break;
                        }
                    }
                }
                if !proxy_batch.is_empty() {
                    pipeline.process_proxy(&mut proxy_batch);
                }
            }
            _ = second.tick() => {
                if let Some(stats) = &proxy.stats {
                    let lost = stats.flows_lost.load(Ordering::Relaxed);
                    if lost > proxy_lost_seen {
                        pipeline.note_proxy_lost(lost - proxy_lost_seen);
                        proxy_lost_seen = lost;
                    }
                }
                // Also without traffic, the registry the API shows follows the source.
                if registry.has_changed().unwrap_or(false) {
                    let reg = registry.borrow_and_update().clone();
                    if let Ok(mut rt) = state.runtime.lock() {
                        rt.registry = reg.clone();
                    }
                    pipeline.decoder.set_registry(reg);
                }
                pipeline.tick();
                pipeline.decoder.resync_clock();
                let (stats, attached) = match datapath.lock() {
                    Ok(dp) => (dp.stats().ok(), dp.attached()),
                    Err(_) => (None, Vec::new()),
                };
                let mut pending_swaps = 0;
                if let Some(stats) = &stats {
                    pipeline.check_losses(stats);
                    // The next observer reports only what is lost after this.
                    if let Ok(mut dp) = datapath.lock() {
                        if let Err(err) = dp.hand_over(pipeline.lost_reported()) {
                            warn!("Writing the handover map: {err:#}");
                        }
                        pending_swaps = dp.pending_swaps();
                    }
                }
                if let Ok(mut rt) = state.runtime.lock() {
                    rt.flows_rate = pipeline.rate();
                    let c = pipeline.counters();
                    rt.events_decoded = c.events_decoded.load(Ordering::Relaxed);
                    rt.malformed_events = c.malformed.load(Ordering::Relaxed);
                    rt.interfaces = attached
                        .into_iter()
                        .map(|(name, index)| flowscope_model::api::AttachedInterface { name, index })
                        .collect();
                    if let Some(stats) = &stats {
                        rt.datapath = stats.into();
                    }
                    if let Some(pins) = rt.pins.as_mut() {
                        pins.pending_swaps = pending_swaps;
                    }

                }
            }
        }
    }
}

/// Re-reads the endpoints file when it changes. A file that cannot be read or parsed keeps the
/// last good registry.
async fn watch_endpoints(path: std::path::PathBuf, out: watch::Sender<Arc<Registry>>) {
    let mut last: Option<std::time::SystemTime> = None;
    let mut tick = tokio::time::interval(SOURCE_POLL);
    loop {
        tick.tick().await;
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        if modified.is_none() || modified == last {
            continue;
        }
        last = modified;
        match EndpointsFile::read(&path) {
            Ok(file) => {
                let registry = Registry::build(&file.endpoints);
                info!(endpoints = registry.len(), path = %path.display(), "Endpoints loaded");
                let _ = out.send(Arc::new(registry));
            }
            Err(err) => warn!("{err:#}; keeping the previous endpoints"),
        }
    }
}

/// Re-compiles and installs the policies whenever the manifests, the endpoints or the
/// interfaces change. A directory with errors installs what is valid
/// and reports the rest; a set that fails to compile keeps the previous one enforced.
/// Where policies come from and how they apply.
struct PolicySource {
    /// A directory of manifests (GitOps).
    dir: Option<std::path::PathBuf>,
    /// The Kubernetes API's policy objects.
    cluster: Option<watch::Receiver<Arc<flowscope_kubernetes::ClusterState>>>,
    audit: bool,
    cidr_selects_pods: bool,
    /// An endpoints source exists: wait for its first load before the first install.
    endpoints_configured: bool,
}

/// Wakes the policy loop as soon as a file of the policy directory is written and closed,
/// renamed in or out (how editors, `kubectl cp` and ConfigMap volumes replace files) or
/// removed, instead of at its next poll; the poll stays for what this does not see
/// (subdirectories, a directory created later). `None` where inotify is unavailable.
fn watch_policy_dir(dir: &std::path::Path) -> Option<inotify::EventStream<[u8; 4096]>> {
    use inotify::{Inotify, WatchMask};
    let inotify = Inotify::init().ok()?;
    let mask =
        WatchMask::CLOSE_WRITE | WatchMask::MOVED_TO | WatchMask::MOVED_FROM | WatchMask::DELETE;
    if let Err(err) = inotify.watches().add(dir, mask) {
        debug!("Not watching {}: {err}; it is polled", dir.display());
        return None;
    }
    inotify.into_event_stream([0u8; 4096]).ok()
}

async fn watch_policies(
    PolicySource {
        dir,
        cluster,
        audit,
        cidr_selects_pods,
        endpoints_configured,
    }: PolicySource,
    datapath: Arc<Mutex<Datapath>>,
    mut registry: watch::Receiver<Arc<Registry>>,
    mut attached: watch::Receiver<HashMap<u32, InterfaceInfo>>,
    out: watch::Sender<Arc<Attributions>>,
    l7: watch::Sender<Arc<L7Policy>>,
    state: Arc<AppState>,
) {
    let mut tick = tokio::time::interval(SOURCE_POLL);
    let mut last_fingerprint: Option<policy::Fingerprint> = None;
    let mut last_registry: Option<Arc<Registry>> = None;
    let mut last_policies_revision: Option<u64> = None;
    let mut previous = Attributions::new();
    let mut ids = policy::AttributionIds::default();
    // After an install: the next quiet tick brings the other generation up to date.
    let mut mirror_due = false;
    let mut revision = 0u64;
    // The files of the policy directory and the API's policy objects as last parsed: only
    // what changed is parsed again (a cluster's policies change one at a time).
    let mut dir_cache = flowscope_policy::ParseCache::default();
    let mut api_cache = flowscope_policy::ParseCache::default();
    // Problems already logged: a reload logs only what is new.
    let mut logged: std::collections::HashSet<String> = Default::default();
    // Policies select pods: with an endpoints source, the first install waits for its first
    // load, so no revision is ever installed for an empty world at start.
    if endpoints_configured {
        let _ = registry.changed().await;
    }
    let mut dir_events = dir.as_deref().and_then(watch_policy_dir);
    loop {
        match dir_events.as_mut() {
            Some(events) => {
                tokio::select! {
                    _ = tick.tick() => {}
                    event = futures_util::StreamExt::next(events) => {
                        if !matches!(event, Some(Ok(_))) {
                            warn!("Watching the policy directory stopped; it is polled");
                            dir_events = None;
                        }
                    }
                }
            }
            None => {
                tick.tick().await;
            }
        }
        let fingerprint = dir.as_deref().map(policy::fingerprint).unwrap_or_default();
        let cluster_state = cluster.as_ref().map(|c| c.borrow().clone());
        let policies_revision = cluster_state.as_ref().map(|c| c.policies_revision);
        let reg = registry.borrow().clone();
        // The interfaces the datapath is attached to, as the interface watcher maintains them.
        let interfaces_changed = attached.has_changed().unwrap_or(false);
        let same_registry = last_registry.as_ref().is_some_and(|r| Arc::ptr_eq(r, &reg));
        if same_registry
            && !interfaces_changed
            && last_fingerprint.as_ref() == Some(&fingerprint)
            && last_policies_revision == policies_revision
        {
            // Quiet: the generation switched from catches up with the active one, off the
            // path of the next change.
            if mirror_due && let Ok(mut dp) = datapath.lock() {
                match dp.mirror_active() {
                    Ok(w) => debug!(entries = w.entries, "Inactive policy generation mirrored"),
                    Err(err) => warn!("Mirroring the active policy generation: {err:#}"),
                }
                mirror_due = false;
            }
            continue;
        }
        last_registry = Some(reg.clone());
        last_fingerprint = Some(fingerprint);
        last_policies_revision = policies_revision;
        let ifaces = attached.borrow_and_update().clone();
        let started = std::time::Instant::now();
        let mut set = match &dir {
            Some(dir) => flowscope_policy::load_dir_cached(dir, &mut dir_cache),
            None => flowscope_policy::PolicySet::new(),
        };
        // The API's objects go through the same parser as files, named by kind and name.
        if let Some(cluster) = &cluster_state {
            for object in &cluster.policies {
                set.add(api_cache.parse(&object.source(), object.json.clone()));
            }
            api_cache.end_round();
        }
        let mut problems: std::collections::HashSet<String> =
            set.errors.iter().map(|e| e.to_string()).collect();
        for p in &set.policies {
            for w in p.warnings() {
                problems.insert(format!("{}:{}: {}: {w}", p.file, p.line, p.id()));
            }
        }
        for problem in problems.difference(&logged) {
            warn!("Policy: {problem}");
        }
        logged = problems;
        let parse_time = started.elapsed();
        let index_of = |name: &str| {
            ifaces
                .iter()
                .find(|(_, info)| info.name == name)
                .map(|(index, _)| *index)
        };
        let installed = match datapath.lock() {
            Ok(mut dp) => policy::install(
                &mut dp,
                &mut ids,
                &set,
                &reg,
                cidr_selects_pods,
                index_of,
                revision + 1,
                audit,
                // The current generation's and the next one's: events of both may be in
                // flight while the datapath switches.
                |next| {
                    let mut both = previous.clone();
                    both.extend(next.iter().map(|(k, v)| (*k, v.clone())));
                    let _ = out.send(Arc::new(both));
                },
            ),
            Err(_) => continue,
        };
        match installed {
            Ok(policy::Installed {
                attributions,
                entries,
                written,
                compile_time,
                write_time,
                enforced,
                proxy_entries,
                l7: l7_policy,
            }) => {
                revision += 1;
                mirror_due = true;
                // The maps hold a policy now: the programs may take over pinned links.
                release_datapath(&datapath);
                info!(
                    revision,
                    policies = set.policies.len(),
                    entries,
                    entries_written = written.entries,
                    endpoints_written = written.endpoints,
                    prefixes_written = written.ipcache,
                    proxy_entries,
                    enforced,
                    parse_ms = parse_time.as_secs_f64() * 1e3,
                    compile_ms = compile_time.as_secs_f64() * 1e3,
                    write_ms = write_time.as_secs_f64() * 1e3,
                    "Policies installed"
                );
                // The proxy judges the next request by the new revision.
                let _ = l7.send(Arc::new(l7_policy));
                // Published with the previous generation's before the switch (events of
                // both may still be in flight); the next install publishes them with its own.
                previous = attributions;
                let (loaded, enforcement) = policy::selections(&set, &reg, cidr_selects_pods);
                if let Ok(mut rt) = state.runtime.lock() {
                    rt.policy = Some(PolicyStatus {
                        revision,
                        policies: set.policies.len(),
                        errors: set.errors.iter().map(|e| e.to_string()).collect(),
                        entries,
                        enforced_endpoints: enforced,
                        audit,
                        loaded,
                        enforcement,
                    });
                }
            }
            Err(err) => {
                warn!("Policy not installed, the previous one stays: {err:#}");
                if let Ok(mut rt) = state.runtime.lock()
                    && let Some(p) = rt.policy.as_mut()
                {
                    p.errors = vec![format!("{err:#}")];
                }
            }
        }
        // The first attempt decides what is enforced from the start, installed or not.
        state.ready.store(true, Ordering::Relaxed);
    }
}
