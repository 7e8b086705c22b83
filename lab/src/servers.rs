//! The servers a lab pod runs, the log of the requests they receive, and the probes that talk to
//! them.
//!
//! A pod is a network namespace. For flowscope to see real kernel traffic, something inside the
//! namespace must answer on the pod's declared ports, and the connectivity tester and the demo
//! traffic generator must open connections from inside a source pod. This module is both sides:
//!
//! - [`serve`] (and [`serve_with`]) binds every declared port in the *calling thread's* network
//!   namespace (a socket belongs to the namespace it was created in, wherever it is used
//!   afterwards), then serves them: a plain TCP greeter and UDP echo (`plain`), HTTP/1.1 and
//!   HTTP/2 without TLS on one port (`http`, on hyper), gRPC over HTTP/2 (`grpc`, an echo
//!   service) and DNS over UDP (`dns`, answering from a [`DnsTable`]).
//! - Every HTTP and gRPC request a server receives is appended to the pod's [`RequestLog`]
//!   before it is answered (`request_log`), so a test can prove what reached a server, and what
//!   a policy kept from it.
//! - The probes (`probe`: [`probe_tcp`], [`probe_udp`], [`http_request`], [`grpc_request`],
//!   [`dns_query`], [`dns_probe`]) run on a thread already inside the source pod. Each binds an
//!   ephemeral port *before* connecting and reports it, so the caller can match the probe to
//!   the flow the observer reports — including probes that a policy dropped, where no
//!   connection ever exists.
//!
//! Every read is bounded in size and time, and the number of live connections is capped, so a
//! misbehaving client cannot exhaust memory or hold a server forever.

mod dns;
mod grpc;
mod http;
mod plain;
mod probe;
mod request_log;

use std::{
    fmt, io,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    thread::{self, JoinHandle},
    time::Duration,
};

use tokio::{
    net::{TcpListener, UdpSocket},
    runtime::Runtime,
    sync::{Semaphore, oneshot},
};

pub use dns::DnsTable;
pub use grpc::{MAX_GRPC_MESSAGE, grpc_code_name};
pub use probe::{
    GrpcResponse, ProbeResult, dns_probe, dns_query, grpc_request, http_request, probe_tcp,
    probe_udp,
};
pub use request_log::{LoggedRequest, MAX_REQUEST_LOG, RequestLog, read_request_log};

/// Live TCP connections per [`Servers`] (one pod), across all its ports. Above what the lab's
/// probes, demo traffic and load tests open at once (the L7 tests hold 500 proxied connections,
/// each with its own upstream connection), and low enough that a flood of idle connections
/// costs little: each holds a task and a few KiB of buffers until its timeouts close it.
pub const MAX_CONNECTIONS: usize = 2048;

/// Back-off after an accept or receive error that is not about one client (out of file
/// descriptors or memory), so a serving task does not spin while the condition lasts.
const ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// The transport of a served port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// What a served port speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum App {
    /// TCP: one answer line per connection; UDP: echo.
    #[default]
    Plain,
    /// HTTP/1.1 and HTTP/2 prior knowledge (h2c) over TCP: `200 OK` for every method and path.
    Http,
    /// gRPC over HTTP/2 prior knowledge (h2c), TCP: every unary method echoes its request.
    Grpc,
    /// DNS over UDP: A records from the [`DnsTable`].
    Dns,
}

impl App {
    /// `plain`, `http`, `grpc` or `dns`: the lab file's spelling, and the request log's.
    pub const fn as_str(self) -> &'static str {
        match self {
            App::Plain => "plain",
            App::Http => "http",
            App::Grpc => "grpc",
            App::Dns => "dns",
        }
    }

    /// The only transport the app is served over, if it has one.
    const fn transport(self) -> Option<Protocol> {
        match self {
            App::Plain => None,
            App::Http | App::Grpc => Some(Protocol::Tcp),
            App::Dns => Some(Protocol::Udp),
        }
    }
}

impl fmt::Display for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One port a pod serves. Port 0 binds an ephemeral port (see [`Servers::local_addrs`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServeSpec {
    pub port: u16,
    pub protocol: Protocol,
    pub app: App,
}

/// How [`serve_with`] serves, beyond the ports.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Where every HTTP and gRPC request is recorded; `None` records nothing.
    pub request_log: Option<Arc<RequestLog>>,
    /// Live TCP connections across all ports; more are closed at once. Default
    /// [`MAX_CONNECTIONS`].
    pub max_connections: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            request_log: None,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// The running servers of one pod. [`Servers::stop`], or dropping it, closes every port and live
/// connection and returns once the serving thread has exited.
///
/// One pod, one thread: its ports are served by a current-thread tokio runtime on a thread of
/// its own. A pod serves a handful of ports to a handful of clients, so one thread is plenty;
/// a runtime per pod (rather than one shared by the lab) keeps pods independent and makes
/// stopping simple and complete: ending the runtime drops every task, and with them every
/// listener and connection, and joining the thread proves nothing is left running.
#[derive(Debug)]
pub struct Servers {
    local_addrs: Vec<SocketAddr>,
    /// Dropping it (or sending) ends the serving thread's runtime.
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// One permit per live TCP connection.
    connections: Arc<Semaphore>,
    max_connections: usize,
    /// What every serving task holds, to check that stopping dropped them all.
    #[cfg(test)]
    tasks: std::sync::Weak<Shared>,
}

impl Servers {
    /// The bound addresses, in the order of the specs given to [`serve`]; useful with port 0.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// TCP connections being served right now.
    pub fn live_connections(&self) -> usize {
        self.max_connections
            .saturating_sub(self.connections.available_permits())
    }

    /// Stops serving: closes the listening sockets (so the ports can be bound again at once) and
    /// the live connections, and waits for the serving thread to exit.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // A serving thread that panicked has nothing left to clean up: its runtime, and
            // every socket, were dropped while unwinding.
            let _ = thread.join();
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What every serving task of one [`Servers`] shares.
#[derive(Debug)]
struct Shared {
    dns: Arc<DnsTable>,
    request_log: Option<Arc<RequestLog>>,
    connections: Arc<Semaphore>,
}

/// A runtime that may be dropped anywhere. Dropping a tokio runtime blocks until its blocking
/// pool stops, which panics inside async code; `serve` may be called from async code (tests
/// do), and if it fails after building the runtime, the runtime is dropped right there. The lab
/// never uses the blocking pool, so shutting down in the background loses nothing, and the
/// tasks themselves are still dropped at once (a current-thread runtime drops them on the
/// thread that drops it).
struct ServerRuntime(Option<Runtime>);

impl ServerRuntime {
    fn new() -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        Ok(Self(Some(runtime)))
    }

    /// The runtime is only ever missing while it is being dropped.
    fn handle(&self) -> io::Result<&tokio::runtime::Handle> {
        self.0
            .as_ref()
            .map(Runtime::handle)
            .ok_or_else(|| io::Error::other("the servers' runtime is gone"))
    }

    fn block_on<F: Future>(&self, future: F) -> Option<F::Output> {
        self.0.as_ref().map(|runtime| runtime.block_on(future))
    }
}

impl Drop for ServerRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

enum Bound {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// Binds every port in `specs` on `bind`, in the calling thread's network namespace, then serves
/// them on a thread of their own (see [`Servers`]). Binding all ports before serving any means a
/// conflict fails the whole call, and the error names the port. Requests are not logged; see
/// [`serve_with`].
pub fn serve(specs: &[ServeSpec], bind: IpAddr, dns: Arc<DnsTable>) -> io::Result<Servers> {
    serve_with(specs, bind, dns, ServeOptions::default())
}

/// [`serve`], with a request log and a connection cap of the caller's choosing.
pub fn serve_with(
    specs: &[ServeSpec],
    bind: IpAddr,
    dns: Arc<DnsTable>,
    options: ServeOptions,
) -> io::Result<Servers> {
    for spec in specs {
        if let Some(wanted) = spec.app.transport()
            && wanted != spec.protocol
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "port {}/{}: the {} app is served over {wanted} only",
                    spec.port, spec.protocol, spec.app
                ),
            ));
        }
    }
    let mut bound = Vec::with_capacity(specs.len());
    for spec in specs {
        let addr = SocketAddr::new(bind, spec.port);
        let context = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("port {}/{} on {bind}: {e}", spec.port, spec.protocol),
            )
        };
        // Bound with std here, on the calling thread, so the sockets belong to its namespace;
        // they join the runtime below.
        let (socket, local) = match spec.protocol {
            Protocol::Tcp => {
                let listener = std::net::TcpListener::bind(addr).map_err(context)?;
                listener.set_nonblocking(true).map_err(context)?;
                let local = listener.local_addr().map_err(context)?;
                (Socket::Tcp(listener), local)
            }
            Protocol::Udp => {
                let socket = std::net::UdpSocket::bind(addr).map_err(context)?;
                socket.set_nonblocking(true).map_err(context)?;
                let local = socket.local_addr().map_err(context)?;
                (Socket::Udp(socket), local)
            }
        };
        bound.push((*spec, local, socket));
    }

    let runtime = ServerRuntime::new()?;
    let mut registered = Vec::with_capacity(bound.len());
    {
        // Registering a socket with the runtime's reactor needs the runtime's context; entering
        // it here is allowed even inside another runtime (it only swaps the current handle).
        let _context = runtime.handle()?.enter();
        for (spec, local, socket) in bound {
            let context = |e: io::Error| {
                io::Error::new(
                    e.kind(),
                    format!("port {}/{}: {e}", local.port(), spec.protocol),
                )
            };
            let socket = match socket {
                Socket::Tcp(listener) => {
                    Bound::Tcp(TcpListener::from_std(listener).map_err(context)?)
                }
                Socket::Udp(socket) => Bound::Udp(UdpSocket::from_std(socket).map_err(context)?),
            };
            registered.push((spec, local, socket));
        }
    }

    let connections = Arc::new(Semaphore::new(options.max_connections));
    let shared = Arc::new(Shared {
        dns,
        request_log: options.request_log,
        connections: Arc::clone(&connections),
    });
    #[cfg(test)]
    let tasks = Arc::downgrade(&shared);
    let local_addrs = registered.iter().map(|(_, local, _)| *local).collect();
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = thread::Builder::new()
        .name("lab-servers".into())
        .spawn(move || {
            runtime.block_on(async move {
                for (spec, local, socket) in registered {
                    let shared = Arc::clone(&shared);
                    match socket {
                        Bound::Tcp(listener) => {
                            tokio::spawn(accept_loop(listener, local, spec.app, shared));
                        }
                        Bound::Udp(socket) => {
                            tokio::spawn(plain::udp_loop(socket, spec.app, shared));
                        }
                    }
                }
                // Resolves when `Servers` sends or is dropped.
                let _ = stopped.await;
            });
            // `runtime` is dropped here, and with it every task, listener and connection.
        })?;
    Ok(Servers {
        local_addrs,
        stop: Some(stop),
        thread: Some(thread),
        connections,
        max_connections: options.max_connections,
        #[cfg(test)]
        tasks,
    })
}

/// A socket bound but not yet registered with the runtime.
enum Socket {
    Tcp(std::net::TcpListener),
    Udp(std::net::UdpSocket),
}

/// Accepts connections and serves each on a task of its own, unless the cap is reached: then
/// the connection is closed at once, so the client learns immediately instead of waiting for a
/// slot that does not come.
async fn accept_loop(listener: TcpListener, local: SocketAddr, app: App, shared: Arc<Shared>) {
    let http = matches!(app, App::Http | App::Grpc)
        .then(|| http::HttpServer::new(app, local, shared.request_log.clone()));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // The client gave up before we accepted it, or a signal interrupted us.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(_) => {
                // Out of descriptors or memory: the connection stays queued; try later.
                tokio::time::sleep(ERROR_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&shared.connections).try_acquire_owned() else {
            continue;
        };
        // Answers are small writes; without Nagle they leave at once.
        let _ = stream.set_nodelay(true);
        match &http {
            Some(server) => {
                tokio::spawn(Arc::clone(server).serve(stream, peer, permit));
            }
            None => {
                tokio::spawn(plain::serve_tcp(stream, local.port(), permit));
            }
        }
    }
}

#[cfg(test)]
mod test_util {
    //! What the servers' tests share: starting servers on loopback, raw exchanges, waiting.

    use std::{
        io::{Read as _, Write as _},
        net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket},
        time::Instant,
    };

    use super::*;

    pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    pub const TIMEOUT: Duration = Duration::from_secs(2);

    pub fn spec(protocol: Protocol, app: App) -> ServeSpec {
        ServeSpec {
            port: 0,
            protocol,
            app,
        }
    }

    /// Serves `specs` on loopback ports, with `web.lab` -> 10.0.0.5 in the DNS table.
    pub fn start(specs: &[ServeSpec]) -> (Servers, Arc<DnsTable>) {
        start_with(specs, ServeOptions::default())
    }

    pub fn start_with(specs: &[ServeSpec], options: ServeOptions) -> (Servers, Arc<DnsTable>) {
        let dns = Arc::new(DnsTable::new());
        dns.insert("web.lab", Ipv4Addr::new(10, 0, 0, 5));
        let servers = serve_with(specs, LOOPBACK, Arc::clone(&dns), options).unwrap();
        (servers, dns)
    }

    /// Polls `condition` until it holds, failing after a few seconds (instead of a fixed sleep).
    #[track_caller]
    pub fn assert_eventually(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !condition() {
            assert!(Instant::now() < deadline, "never happened: {what}");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `request` on a fresh connection and returns everything the server answers until it
    /// closes the connection.
    pub fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.write_all(request).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        String::from_utf8(response).unwrap()
    }

    /// A port nothing listens on (bound, read, released).
    pub fn closed_tcp_port() -> SocketAddr {
        TcpListener::bind((LOOPBACK, 0))
            .unwrap()
            .local_addr()
            .unwrap()
    }

    pub fn closed_udp_port() -> SocketAddr {
        UdpSocket::bind((LOOPBACK, 0))
            .unwrap()
            .local_addr()
            .unwrap()
    }

    /// A temporary file path, removed when dropped.
    pub struct TempPath(pub std::path::PathBuf);

    impl TempPath {
        pub fn new(name: &str) -> Self {
            let unique = format!(
                "flowscope-lab-{name}-{}-{:?}.log",
                std::process::id(),
                Instant::now()
            );
            let unique: String = unique
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '.' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            Self(std::env::temp_dir().join(unique))
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read as _, Write as _},
        net::{TcpListener, TcpStream, UdpSocket},
        time::Instant,
    };

    use std::sync::Weak;

    use super::{test_util::*, *};

    #[test]
    fn stop_frees_the_ports_promptly() {
        let (servers, _) = start(&[
            spec(Protocol::Tcp, App::Plain),
            spec(Protocol::Udp, App::Plain),
            spec(Protocol::Tcp, App::Http),
            spec(Protocol::Udp, App::Dns),
            spec(Protocol::Tcp, App::Grpc),
        ]);
        let addrs = servers.local_addrs().to_vec();
        // Idle clients would hold their connections until the servers' timeouts.
        let mut idle = TcpStream::connect(addrs[2]).unwrap();
        let mut idle_grpc = TcpStream::connect(addrs[4]).unwrap();
        idle_grpc.write_all(b"PRI * HTTP/2.0\r\n").unwrap();
        assert_eventually("the idle connections are served", || {
            servers.live_connections() == 2
        });
        let started = Instant::now();
        servers.stop();
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
        for stream in [&mut idle, &mut idle_grpc] {
            stream.set_read_timeout(Some(TIMEOUT)).unwrap();
            assert!(matches!(stream.read(&mut [0u8; 64]), Ok(0) | Err(_)));
        }

        assert_eq!(probe_tcp(addrs[0], TIMEOUT).detail, "connection refused");
        for (i, addr) in addrs.iter().enumerate() {
            if i % 2 == 0 {
                TcpListener::bind(addr).unwrap();
            } else {
                UdpSocket::bind(addr).unwrap();
            }
        }

        // Dropping stops too.
        let (servers, _) = start(&[spec(Protocol::Tcp, App::Plain)]);
        let addr = servers.local_addrs()[0];
        drop(servers);
        TcpListener::bind(addr).unwrap();
    }

    #[test]
    fn stopping_drops_every_task() {
        let (servers, _) = start(&[
            spec(Protocol::Tcp, App::Http),
            spec(Protocol::Udp, App::Dns),
        ]);
        let addr = servers.local_addrs()[0];
        let _idle = TcpStream::connect(addr).unwrap();
        assert_eventually("the idle connection is served", || {
            servers.live_connections() == 1
        });
        // Every task holds `Shared`; once the runtime is gone, so is it.
        let tasks = Weak::clone(&servers.tasks);
        assert!(tasks.upgrade().is_some());
        servers.stop();
        assert!(tasks.upgrade().is_none(), "a task outlived stop()");
    }

    #[test]
    fn serve_fails_fast_naming_the_port() {
        let taken = TcpListener::bind((LOOPBACK, 0)).unwrap();
        let port = taken.local_addr().unwrap().port();
        let free = closed_udp_port();
        let specs = [
            ServeSpec {
                port: free.port(),
                protocol: Protocol::Udp,
                app: App::Plain,
            },
            ServeSpec {
                port,
                protocol: Protocol::Tcp,
                app: App::Plain,
            },
        ];
        let error = serve(&specs, LOOPBACK, Arc::new(DnsTable::new())).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
        assert!(
            error.to_string().contains(&format!("port {port}/tcp")),
            "{error}"
        );
        // The UDP port bound before the failure was released with it.
        UdpSocket::bind(free).unwrap();

        for (protocol, app, message) in [
            (
                Protocol::Udp,
                App::Http,
                "the http app is served over tcp only",
            ),
            (
                Protocol::Udp,
                App::Grpc,
                "the grpc app is served over tcp only",
            ),
            (
                Protocol::Tcp,
                App::Dns,
                "the dns app is served over udp only",
            ),
        ] {
            let error =
                serve(&[spec(protocol, app)], LOOPBACK, Arc::new(DnsTable::new())).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
            assert!(error.to_string().contains(message), "{error}");
        }
    }

    /// `serve` is called from async code too (the observer's tests), where creating and
    /// dropping the servers must neither panic nor block the caller's runtime for long.
    #[test]
    fn serves_from_inside_another_runtime() {
        let outer = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        outer.block_on(async {
            let (servers, _) = start(&[spec(Protocol::Tcp, App::Http)]);
            let addr = servers.local_addrs()[0];
            let result =
                tokio::task::spawn_blocking(move || http_request(addr, "GET", "/", TIMEOUT))
                    .await
                    .unwrap();
            assert_eq!(result.detail, "200 OK");
            drop(servers);
        });
    }

    #[test]
    fn the_connection_cap_holds() {
        let options = ServeOptions {
            max_connections: 2,
            ..ServeOptions::default()
        };
        let (servers, _) = start_with(&[spec(Protocol::Tcp, App::Http)], options);
        let addr = servers.local_addrs()[0];
        let idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
        assert_eventually("both idle connections are served", || {
            servers.live_connections() == 2
        });

        // Over the cap: closed at once, without an answer.
        let mut over = TcpStream::connect(addr).unwrap();
        over.set_read_timeout(Some(TIMEOUT)).unwrap();
        let started = Instant::now();
        let mut got = Vec::new();
        let _ = over.read_to_end(&mut got);
        assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
        assert!(started.elapsed() < Duration::from_secs(1));
        let result = http_request(addr, "GET", "/", TIMEOUT);
        // The server closes with the request unread, which the kernel turns into a reset.
        assert!(
            [
                "closed without a response",
                "no response (connection reset)"
            ]
            .contains(&result.detail.as_str()),
            "{result:?}"
        );
        assert_eq!(servers.live_connections(), 2);

        // A slot frees when a client leaves.
        drop(idle);
        assert_eventually("the idle connections end", || {
            servers.live_connections() == 0
        });
        assert_eq!(http_request(addr, "GET", "/", TIMEOUT).detail, "200 OK");
    }
}
