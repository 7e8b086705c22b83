//! The L7 proxy: CiliumNetworkPolicy `rules.http` enforced per request, for HTTP/1.x and
//! HTTP/2 (gRPC included).
//!
//! How a connection gets here: the datapath judges a new TCP connection where it enters the
//! node. When the deciding policy entry is "through the proxy" (every rule admitting that
//! traffic carries HTTP rules), it marks the connection's packets, which a policy routing rule
//! ([`routing`]) delivers locally, and its socket lookup program (`sk_lookup`) gives the
//! connection the listener of its side (`bpf_sk_assign`). The listeners are transparent
//! (`IP_TRANSPARENT`) and bound to loopback addresses only, so the accepted socket's local
//! address is the original destination and nothing outside the node can reach them directly.
//!
//! Per connection ([`http`]): hyper serves HTTP/1.1 and HTTP/2 with prior knowledge on the
//! downstream side; every request is judged ([`judge`]) against the policy revision current at
//! that moment. Allowed requests go to the original destination over one upstream connection
//! per downstream connection ([`upstream`]), opened on the first allowed request from the
//! client's own address (transparently, so the server and its policies see the real client)
//! with a mark the datapath never redirects. Denied requests are answered here: `403 Access
//! denied`, or a gRPC PERMISSION_DENIED; the server never sees them.
//!
//! Every request and response becomes an L7 flow for the pipeline ([`ProxyFlow`]), as
//! Cilium's proxy reports them to Hubble.

pub mod http;
pub mod judge;
pub mod routing;
pub mod upstream;

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use flowscope_common::FlowEvent;
pub use flowscope_model::api::ProxyStatus;
use tokio::{
    net::TcpListener,
    sync::{Semaphore, mpsc, watch},
    task::JoinSet,
};
use tracing::{debug, info, warn};

use crate::{http::HttpMessage, policy::Attribution};
pub use judge::{L7Policy, Side};

/// Connections served at once by default, over both listeners and families. Each costs two
/// sockets and a few KiB (hyper's buffers); the flag `--proxy-max-connections` changes it.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// How long a connection may stay idle, and how long a client may take to send a request
/// head (hyper's HTTP/1 header timeout covers both; HTTP/2 connections are watched for
/// activity): slow or silent clients cannot hold their connection slot for ever.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// L7 flows waiting for the pipeline; beyond, flows are counted as lost (the pipeline reports
/// them as lost events) and the proxy never waits.
pub const FLOW_QUEUE: usize = 16_384;

/// The proxy's settings.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub max_connections: usize,
    pub idle_timeout: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// An L7 flow the proxy observed: a synthetic datapath event (addresses, ports, the endpoint's
/// interface and hooks giving the direction, the verdict) and the HTTP fields. The pipeline
/// turns it into a record like any datapath event.
#[derive(Clone, Debug)]
pub struct ProxyFlow {
    pub ev: FlowEvent,
    pub http: HttpMessage,
    pub attribution: Option<Arc<Attribution>>,
}

/// Counters the status body and the metrics read.
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Listener addresses: ingress and egress, IPv4 and IPv6.
    pub listeners: Vec<String>,
    pub max_connections: u64,
    pub connections_active: AtomicU64,
    pub connections_total: AtomicU64,
    /// Refused because `max_connections` were open.
    pub connections_refused: AtomicU64,
    /// Reset because the policy no longer admits them at L3/L4, or their endpoint is gone.
    pub connections_reset: AtomicU64,
    pub requests_forwarded: AtomicU64,
    pub requests_denied: AtomicU64,
    pub requests_audited: AtomicU64,
    /// Requests hyper could not parse (answered 400, 431, ... and closed), and clients that
    /// timed out sending a head.
    pub requests_malformed: AtomicU64,
    /// Requests whose upstream connection or exchange failed (answered 503).
    pub upstream_errors: AtomicU64,
    /// Header matches with the LOG action that did not match.
    pub header_mismatches_logged: AtomicU64,
    /// L7 flows dropped because the pipeline's queue was full.
    pub flows_lost: AtomicU64,
}

impl ProxyStats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn status(&self) -> ProxyStatus {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ProxyStatus {
            listeners: self.listeners.clone(),
            max_connections: self.max_connections,
            connections_active: get(&self.connections_active),
            connections_total: get(&self.connections_total),
            connections_refused: get(&self.connections_refused),
            connections_reset: get(&self.connections_reset),
            requests_forwarded: get(&self.requests_forwarded),
            requests_denied: get(&self.requests_denied),
            requests_audited: get(&self.requests_audited),
            requests_malformed: get(&self.requests_malformed),
            upstream_errors: get(&self.upstream_errors),
            header_mismatches_logged: get(&self.header_mismatches_logged),
            flows_lost: get(&self.flows_lost),
        }
    }
}

/// The listeners' ports: what the datapath hands connections to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyPorts {
    pub ingress: u16,
    pub egress: u16,
}

/// A running proxy.
pub struct Proxy {
    pub ports: ProxyPorts,
    pub stats: Arc<ProxyStats>,
    routing: Option<routing::Routing>,
    tasks: JoinSet<()>,
    shutdown: watch::Sender<bool>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

/// An accepted connection on its way to a worker.
struct Accepted {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    side: Side,
    permit: tokio::sync::OwnedSemaphorePermit,
}

/// The proxy's connections are served by one thread per CPU, each with its own single-threaded
/// runtime: a connection's downstream and upstream halves run on one thread, so passing a
/// request from one to the other and the answer back costs no cross-thread wakeup (on a
/// work-stealing runtime that handoff, not HTTP, dominated the proxy's CPU). Connections are
/// dealt to the threads in turn.
struct Workers {
    queues: Vec<mpsc::UnboundedSender<Accepted>>,
    next: std::sync::atomic::AtomicUsize,
}

impl Workers {
    fn start(
        shared: &Arc<Shared>,
    ) -> anyhow::Result<(Arc<Workers>, Vec<std::thread::JoinHandle<()>>)> {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut queues = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, mut rx) = mpsc::unbounded_channel::<Accepted>();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting a proxy worker's runtime")?;
            let shared = shared.clone();
            let thread = std::thread::Builder::new()
                .name(format!("proxy-{i}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        while let Some(c) = rx.recv().await {
                            let shared = shared.clone();
                            tokio::spawn(serve_accepted(c, shared));
                        }
                    });
                    // Dropping the runtime ends the connections still open.
                })
                .context("starting a proxy worker thread")?;
            queues.push(tx);
            threads.push(thread);
        }
        Ok((
            Arc::new(Workers {
                queues,
                next: Default::default(),
            }),
            threads,
        ))
    }

    fn dispatch(&self, c: Accepted) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.queues.len();
        // A worker that is gone (shutting down) drops the connection.
        let _ = self.queues[i].send(c);
    }
}

async fn serve_accepted(c: Accepted, shared: Arc<Shared>) {
    let Ok(stream) = tokio::net::TcpStream::from_std(c.stream) else {
        return;
    };
    shared
        .stats
        .connections_active
        .fetch_add(1, Ordering::Relaxed);
    http::serve(stream, c.peer, c.side, &shared).await;
    shared
        .stats
        .connections_active
        .fetch_sub(1, Ordering::Relaxed);
    drop(c.permit);
}

/// What every connection task shares.
pub(crate) struct Shared {
    pub cfg: ProxyConfig,
    pub policy: watch::Receiver<Arc<L7Policy>>,
    pub flows: mpsc::Sender<ProxyFlow>,
    pub stats: Arc<ProxyStats>,
    pub slots: Arc<Semaphore>,
    /// Turns true when the proxy stops: every connection closes.
    pub shutdown: watch::Receiver<bool>,
}

impl Proxy {
    /// Binds the listeners, hands them to the datapath (`attach`: the listeners' sockets by
    /// `flowscope_common::proxy_socket` slot, and the ports), installs the routing rule and
    /// starts accepting. The listeners exist before the datapath is told of them, so no
    /// redirected connection finds none.
    pub async fn start(
        cfg: ProxyConfig,
        policy: watch::Receiver<Arc<L7Policy>>,
        flows: mpsc::Sender<ProxyFlow>,
        attach: impl FnOnce(&[(u32, std::os::fd::RawFd)], ProxyPorts) -> anyhow::Result<()>,
    ) -> anyhow::Result<Proxy> {
        anyhow::ensure!(
            cfg.max_connections > 0,
            "--proxy-max-connections must be at least 1"
        );
        let mut bound = Vec::new();
        let mut ports = ProxyPorts::default();
        for side in [Side::Ingress, Side::Egress] {
            // The IPv4 listener picks a free port; the IPv6 one takes the same number, so the
            // datapath needs one port per side.
            let v4 = transparent_listener(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
                .with_context(|| format!("binding the {} proxy listener", side.as_str()))?;
            let port = v4.local_addr()?.port();
            match side {
                Side::Ingress => ports.ingress = port,
                Side::Egress => ports.egress = port,
            }
            bound.push((v4, side));
            match transparent_listener(SocketAddr::from((Ipv6Addr::LOCALHOST, port))) {
                Ok(v6) => bound.push((v6, side)),
                Err(err) => warn!(
                    side = side.as_str(),
                    "No IPv6 proxy listener ({err}); IPv6 connections under HTTP rules are dropped"
                ),
            }
        }
        let stats = Arc::new(ProxyStats {
            listeners: bound
                .iter()
                .filter_map(|(l, side)| Some(format!("{} {}", side.as_str(), l.local_addr().ok()?)))
                .collect(),
            max_connections: cfg.max_connections as u64,
            ..ProxyStats::default()
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            slots: Arc::new(Semaphore::new(cfg.max_connections)),
            cfg: cfg.clone(),
            policy,
            flows,
            stats: stats.clone(),
            shutdown: shutdown_rx,
        });
        let slots: Vec<(u32, std::os::fd::RawFd)> = bound
            .iter()
            .map(|(l, side)| {
                use flowscope_common::proxy_socket;
                let base = match side {
                    Side::Ingress => proxy_socket::INGRESS_V4,
                    Side::Egress => proxy_socket::EGRESS_V4,
                };
                let v6 = l.local_addr().is_ok_and(|a| a.is_ipv6());
                (base + u32::from(v6), std::os::fd::AsRawFd::as_raw_fd(l))
            })
            .collect();
        attach(&slots, ports)?;
        let routing = routing::Routing::install()
            .await
            .context("installing the proxy's policy routing rule")?;
        let (workers, worker_threads) = Workers::start(&shared)?;
        let mut tasks = JoinSet::new();
        for (listener, side) in bound {
            tasks.spawn(accept_loop(listener, side, shared.clone(), workers.clone()));
        }
        info!(
            ingress = ports.ingress,
            egress = ports.egress,
            max_connections = cfg.max_connections,
            "L7 proxy listening"
        );
        Ok(Proxy {
            ports,
            stats,
            routing: Some(routing),
            tasks,
            shutdown,
            workers: worker_threads,
        })
    }

    /// Stops accepting, closes every connection and removes the routing rule.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        // The accept loops hold the workers' queues: once they are gone, each worker's loop
        // ends and its runtime, with any connection left, is dropped.
        self.tasks.shutdown().await;
        let workers = std::mem::take(&mut self.workers);
        let _ = tokio::task::spawn_blocking(move || {
            for w in workers {
                let _ = w.join();
            }
        })
        .await;
        if let Some(mut r) = self.routing.take() {
            r.remove().await;
        }
    }
}

/// A listener that accepts connections for any destination address (`IP_TRANSPARENT`), bound
/// to a loopback address: the datapath assigns connections to it, nothing else can reach it.
fn transparent_listener(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv4() {
        socket.set_ip_transparent_v4(true)?;
    } else {
        socket.set_only_v6(true)?;
        socket.set_ip_transparent_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    // The kernel caps the backlog at net.core.somaxconn.
    socket.listen(4096)?;
    Ok(TcpListener::from_std(socket.into())?)
}

async fn accept_loop(
    listener: TcpListener,
    side: Side,
    shared: Arc<Shared>,
    workers: Arc<Workers>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(err) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!(side = side.as_str(), "Proxy accept: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        ProxyStats::add(&shared.stats.connections_total, 1);
        let Ok(permit) = shared.slots.clone().try_acquire_owned() else {
            // At the limit: closed at once (the client sees a reset), counted.
            ProxyStats::add(&shared.stats.connections_refused, 1);
            debug!(%peer, "Proxy connection refused: at --proxy-max-connections");
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            drop(stream);
            continue;
        };
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        workers.dispatch(Accepted {
            stream,
            peer,
            side,
            permit,
        });
    }
}
