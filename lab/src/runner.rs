//! What runs inside the pods while a lab is up: each pod's servers, and the lab file's
//! continuous traffic, each request made from inside its source pod's namespace. Each pod's
//! HTTP and gRPC servers record the requests they receive in the pod's request log
//! ([`crate::control::request_log_path`]).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::Context as _;

use crate::{
    control,
    servers::{self, DnsTable, RequestLog, ServeOptions, ServeSpec, Servers},
    spec::{App, Plan, PlannedTraffic, PortSpec, Protocol, Request},
    topology::{self, PodNet},
};

/// Timeout of one traffic request: long enough for a healthy answer, short enough that a
/// dropped request does not delay the next one by much.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(800);

/// The message of the traffic's gRPC calls: a protobuf message whose field 1 is the string
/// "flowscope-lab", so tools that decode an unknown message show something readable. The lab's
/// server echoes any bytes.
const GRPC_MESSAGE: &[u8] = b"\x0a\x0dflowscope-lab";

/// Servers and traffic threads; stopping (or dropping) ends them all.
pub struct Runner {
    stop: Arc<AtomicBool>,
    servers: Vec<Servers>,
    traffic: Vec<JoinHandle<()>>,
}

impl Runner {
    /// Starts the servers of every pod of `plan` (in `pods`, its namespaces, same order), each
    /// pod's recording its requests in the pod's request log (appended to, created if missing),
    /// and the plan's traffic.
    pub fn start(plan: &Plan, pods: &[PodNet], dns: Arc<DnsTable>) -> anyhow::Result<Runner> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut runner = Runner {
            stop: stop.clone(),
            servers: Vec::new(),
            traffic: Vec::new(),
        };
        for (planned, pod) in plan.pods.iter().zip(pods) {
            if planned.ports.is_empty() {
                continue;
            }
            let dns = dns.clone();
            let ip = pod.ip;
            let specs: Vec<ServeSpec> = planned.ports.iter().map(serve_spec).collect();
            let log_path = control::request_log_path(&planned.namespace, &planned.name);
            if let Some(dir) = log_path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            let options = ServeOptions {
                request_log: Some(Arc::new(RequestLog::open(&log_path)?)),
                ..ServeOptions::default()
            };
            // Sockets are bound by a thread inside the pod's namespace; the servers keep
            // serving there after the thread hands them back.
            let servers = topology::spawn_in(&pod.netns, move || {
                servers::serve_with(&specs, ip.into(), dns, options)
            })?
            .join()
            .map_err(|_| anyhow::anyhow!("server thread for {} panicked", pod.netns))?
            .with_context(|| format!("starting servers in {}", pod.netns))?;
            runner.servers.push(servers);
        }
        for t in &plan.traffic {
            let stop = stop.clone();
            let t = t.clone();
            runner
                .traffic
                .push(topology::spawn_in(&pods[t.from].netns, move || {
                    let mut sent = 0u64;
                    while !stop.load(Ordering::Relaxed) && t.count.is_none_or(|c| sent < c) {
                        request(&t);
                        sent += 1;
                        sleep_unless_stopped(t.every, &stop);
                    }
                })?);
        }
        Ok(runner)
    }

    pub fn stop(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.traffic.drain(..) {
            let _ = t.join();
        }
        for s in self.servers.drain(..) {
            s.stop();
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn serve_spec(p: &PortSpec) -> ServeSpec {
    ServeSpec {
        port: p.port,
        protocol: match p.protocol {
            Protocol::Tcp => servers::Protocol::Tcp,
            Protocol::Udp => servers::Protocol::Udp,
        },
        app: match p.app {
            None => servers::App::Plain,
            Some(App::Http) => servers::App::Http,
            Some(App::Grpc) => servers::App::Grpc,
            Some(App::Dns) => servers::App::Dns,
        },
    }
}

fn request(t: &PlannedTraffic) {
    let dst = SocketAddr::V4(t.destination);
    match (&t.request, t.protocol) {
        (Request::Plain, Protocol::Tcp) => {
            servers::probe_tcp(dst, REQUEST_TIMEOUT);
        }
        (Request::Plain, Protocol::Udp) => {
            servers::probe_udp(dst, REQUEST_TIMEOUT);
        }
        (Request::Http { method, path }, _) => {
            servers::http_request(dst, method.as_str(), path, REQUEST_TIMEOUT);
        }
        (Request::Grpc { path }, _) => {
            servers::grpc_request(dst, path, GRPC_MESSAGE, REQUEST_TIMEOUT);
        }
        (Request::Dns { query }, _) => {
            let _ = servers::dns_query(dst, query, REQUEST_TIMEOUT);
        }
    }
}

/// Sleeps in short steps so a stop takes effect within 100 ms.
fn sleep_unless_stopped(total: Duration, stop: &AtomicBool) {
    let step = Duration::from_millis(100);
    let mut left = total;
    while !left.is_zero() && !stop.load(Ordering::Relaxed) {
        let d = left.min(step);
        std::thread::sleep(d);
        left -= d;
    }
}
