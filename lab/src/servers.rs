//! The servers a lab pod runs, and the probes that talk to them.
//!
//! A pod is a network namespace. For flowscope to see real kernel traffic, something inside the
//! namespace must answer on the pod's declared ports, and the connectivity tester and the demo
//! traffic generator must open connections from inside a source pod. This module is both sides:
//!
//! - [`serve`] binds every declared port in the *calling thread's* network namespace (sockets
//!   belong to the namespace they were created in, so workers spawned afterwards need no
//!   `setns`), then serves them on threads: a plain TCP greeter, a UDP echo, an HTTP/1.1 server
//!   and a DNS server answering from a [`DnsTable`].
//! - The probes ([`probe_tcp`], [`probe_udp`], [`http_request`], [`dns_query`], [`dns_probe`])
//!   run on a thread already inside the source pod. Each binds an ephemeral port *before*
//!   connecting and reports it, so the caller can match the probe to the flow the observer
//!   reports — including probes that a policy dropped, where no connection ever exists.
//!
//! Plain std threads and blocking sockets with timeouts: a pod serves a handful of ports to a
//! handful of clients, and the whole lab must stay cheap to start and easy to reason about.
//! Every read is bounded in size and time, and the number of live connections is capped, so a
//! misbehaving client cannot exhaust threads or memory.

use std::{
    collections::HashMap,
    fmt,
    hash::{BuildHasher as _, RandomState},
    io::{self, Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::{
        fd::{AsFd as _, AsRawFd as _, BorrowedFd},
        unix::net::UnixStream,
    },
    sync::{
        Arc, Condvar, Mutex, PoisonError, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

/// Live TCP connections per [`Servers`] (one pod), across all its ports. Far above what the lab's
/// probes and demo traffic open at once, and low enough that a flood of idle connections costs
/// at most this many small threads.
pub const MAX_CONNECTIONS: usize = 256;

/// How long the plain TCP server waits for the client's line before answering anyway: clients
/// that send nothing (`nc` with no input) still get their answer, a little later.
const PLAIN_READ_WINDOW: Duration = Duration::from_millis(500);
/// What the plain TCP server reads from a client before answering; the rest is drained on close.
const MAX_PLAIN_REQUEST: usize = 4 * 1024;
/// Time allowed for a whole HTTP request head, so a slow client (slowloris) holds a connection
/// slot for at most this long.
const HTTP_HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// Time allowed for an HTTP request body after its head.
const HTTP_BODY_DEADLINE: Duration = Duration::from_secs(5);
/// The largest HTTP request head accepted; common servers use 8 KiB too.
const MAX_HTTP_HEAD: usize = 8 * 1024;
/// The most header lines in one request.
const MAX_HTTP_HEADERS: usize = 64;
/// The largest request body read (and discarded); the lab's probes send none.
const MAX_HTTP_BODY: usize = 64 * 1024;
/// How long one write to a client may block before the connection is given up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// After answering, the server reads (and drops) what the client still sends for this long before
/// closing: closing with unread data makes the kernel send a reset, which can destroy the answer
/// before the client reads it ("lingering close", as Apache and nginx do).
const LINGER: Duration = Duration::from_millis(500);
/// The most bytes drained during the lingering close.
const LINGER_BYTES: usize = 64 * 1024;
/// When `stop()` closes live connections, how long it waits for their threads to notice.
const STOP_GRACE: Duration = Duration::from_secs(1);
/// Connection threads only hold a few KiB of buffers; a small stack keeps
/// [`MAX_CONNECTIONS`] of them cheap.
const HANDLER_STACK: usize = 256 * 1024;
/// Back-off after an accept or poll error that is not about one connection (out of file
/// descriptors or memory), so the loop does not spin while the condition lasts.
const ERROR_BACKOFF: Duration = Duration::from_millis(50);
/// Datagrams handled per wake-up, so one busy UDP port cannot starve the check for stop.
const UDP_BATCH: usize = 64;
/// Receive buffer for UDP: the largest datagram IPv4 can carry, so echoes are never truncated.
const UDP_BUFFER: usize = 65_535;
/// What TCP and UDP probes send. It ends with a newline so the plain TCP server answers at once.
const PROBE_LINE: &[u8] = b"flowscope-lab probe\n";
/// The most answer bytes a probe reads; it only reports the first line or the status line.
const MAX_PROBE_ANSWER: usize = 64 * 1024;
/// The longest `detail` a probe reports from what a server sent.
const MAX_DETAIL: usize = 200;

/// DNS TTL of the answers: short, because lab pods come and go.
const DNS_TTL: u32 = 30;
const DNS_HEADER: usize = 12;
/// A name on the wire is at most 255 octets, including the root label's zero octet (RFC 1035).
const DNS_MAX_NAME: usize = 255;
const DNS_TYPE_A: u16 = 1;
const DNS_TYPE_ANY: u16 = 255;
const DNS_CLASS_IN: u16 = 1;
const DNS_CLASS_ANY: u16 = 255;
const DNS_FLAG_QR: u16 = 0x8000;
const DNS_FLAG_AA: u16 = 0x0400;
const DNS_FLAG_RD: u16 = 0x0100;
const RCODE_NOERROR: u8 = 0;
const RCODE_FORMERR: u8 = 1;
const RCODE_NXDOMAIN: u8 = 3;
const RCODE_NOTIMP: u8 = 4;
const RCODE_REFUSED: u8 = 5;

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
    /// HTTP/1.1 over TCP: `200 OK` for every method and path.
    Http,
    /// DNS over UDP: A records from the [`DnsTable`].
    Dns,
}

/// One port a pod serves. Port 0 binds an ephemeral port (see [`Servers::local_addrs`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServeSpec {
    pub port: u16,
    pub protocol: Protocol,
    pub app: App,
}

/// Names the lab's DNS servers answer: name -> IPv4 address. Names compare ASCII
/// case-insensitively and a trailing dot is optional, as in DNS itself. Shared behind an `Arc`
/// so the lab can add pods while servers run.
#[derive(Debug, Default)]
pub struct DnsTable {
    names: RwLock<HashMap<String, Ipv4Addr>>,
}

impl DnsTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a name; returns the address it had before.
    pub fn insert(&self, name: &str, ip: Ipv4Addr) -> Option<Ipv4Addr> {
        // A panic elsewhere cannot leave the map half-written (inserts are single calls), so a
        // poisoned lock is still safe to use.
        let mut names = self.names.write().unwrap_or_else(PoisonError::into_inner);
        names.insert(normalize_name(name), ip)
    }

    /// Removes a name; returns the address it had.
    pub fn remove(&self, name: &str) -> Option<Ipv4Addr> {
        let mut names = self.names.write().unwrap_or_else(PoisonError::into_inner);
        names.remove(&normalize_name(name))
    }

    pub fn lookup(&self, name: &str) -> Option<Ipv4Addr> {
        let names = self.names.read().unwrap_or_else(PoisonError::into_inner);
        names.get(&normalize_name(name)).copied()
    }

    pub fn len(&self) -> usize {
        self.names
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn normalize_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// The running servers of one pod. [`Servers::stop`], or dropping it, closes every port and live
/// connection and returns once the serving threads have exited.
#[derive(Debug)]
pub struct Servers {
    local_addrs: Vec<SocketAddr>,
    /// The write end of the stop signal. Dropping it makes the read end, which every serving
    /// thread polls beside its socket, readable (end of file) for good. A socket pair rather than
    /// a self-connect, because `stop()` may run on a thread outside the pod's namespace.
    stop_signal: Option<UnixStream>,
    threads: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl Servers {
    /// The bound addresses, in the order of the specs given to [`serve`]; useful with port 0.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// TCP connections being served right now.
    pub fn live_connections(&self) -> usize {
        self.shared.live().streams.len()
    }

    /// Stops serving: closes the listening sockets (so the ports can be bound again at once) and
    /// the live connections.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        drop(self.stop_signal.take());
        for thread in self.threads.drain(..) {
            // A serving thread that panicked has nothing left to clean up; its socket was
            // dropped while unwinding.
            let _ = thread.join();
        }
        self.shared.close_all(STOP_GRACE);
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// State shared by the serving threads of one [`Servers`].
#[derive(Debug)]
struct Shared {
    stopping: AtomicBool,
    max_connections: usize,
    live: Mutex<Live>,
    /// Signalled when the last live connection ends, for `close_all`.
    idle: Condvar,
}

/// The live connections, kept so `stop()` can shut them down instead of waiting out their
/// timeouts; their count is the connection cap.
#[derive(Debug, Default)]
struct Live {
    next_id: u64,
    streams: HashMap<u64, TcpStream>,
}

impl Shared {
    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        // Every critical section is a single map operation, so a poisoned lock holds a
        // consistent map.
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Serves an accepted connection on its own thread, unless the cap is reached: then the
    /// connection is closed at once, so the client learns immediately instead of waiting for a
    /// thread that does not exist.
    fn admit(self: &Arc<Self>, stream: TcpStream, app: App, port: u16) {
        let id = {
            let mut live = self.live();
            if self.stopping.load(Ordering::SeqCst) || live.streams.len() >= self.max_connections {
                return;
            }
            let Ok(handle) = stream.try_clone() else {
                return;
            };
            let id = live.next_id;
            live.next_id += 1;
            live.streams.insert(id, handle);
            id
        };
        let slot = Slot {
            shared: Arc::clone(self),
            id,
        };
        // If the thread cannot be created, std drops the closure, and with it the slot (freeing
        // it) and the stream (closing it).
        let _ = thread::Builder::new()
            .name(format!("lab-conn-{port}"))
            .stack_size(HANDLER_STACK)
            .spawn(move || {
                let _slot = slot;
                handle_connection(stream, app, port);
            });
    }

    /// Shuts down every live connection, which wakes its thread from any blocking read or
    /// write, and waits (bounded) for the threads to finish.
    fn close_all(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        let mut live = self.live();
        for stream in live.streams.values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        while !live.streams.is_empty() {
            let Some(left) = remaining(deadline) else {
                break;
            };
            live = self
                .idle
                .wait_timeout(live, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// A connection's place under the cap, freed when its thread ends (or never starts).
struct Slot {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut live = self.shared.live();
        live.streams.remove(&self.id);
        if live.streams.is_empty() {
            self.shared.idle.notify_all();
        }
    }
}

enum Bound {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// Binds every port in `specs` on `bind`, in the calling thread's network namespace, then serves
/// them on threads. Binding all ports before serving any means a conflict fails the whole call,
/// and the error names the port.
pub fn serve(specs: &[ServeSpec], bind: IpAddr, dns: Arc<DnsTable>) -> io::Result<Servers> {
    serve_with_limit(specs, bind, dns, MAX_CONNECTIONS)
}

fn serve_with_limit(
    specs: &[ServeSpec],
    bind: IpAddr,
    dns: Arc<DnsTable>,
    max_connections: usize,
) -> io::Result<Servers> {
    let mut bound = Vec::with_capacity(specs.len());
    for spec in specs {
        let context = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("port {}/{} on {bind}: {e}", spec.port, spec.protocol),
            )
        };
        match (spec.protocol, spec.app) {
            (Protocol::Udp, App::Http) | (Protocol::Tcp, App::Dns) => {
                let wanted = if spec.app == App::Http { "tcp" } else { "udp" };
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "port {}/{}: the {:?} app is served over {wanted} only",
                        spec.port, spec.protocol, spec.app
                    ),
                ));
            }
            _ => {}
        }
        let addr = SocketAddr::new(bind, spec.port);
        // Nonblocking, because the serving threads wait in poll() (beside the stop signal) and
        // a readiness report can be stale by the time they accept or receive.
        let socket = match spec.protocol {
            Protocol::Tcp => {
                let listener = TcpListener::bind(addr).map_err(context)?;
                listener.set_nonblocking(true).map_err(context)?;
                Bound::Tcp(listener)
            }
            Protocol::Udp => {
                let socket = UdpSocket::bind(addr).map_err(context)?;
                socket.set_nonblocking(true).map_err(context)?;
                Bound::Udp(socket)
            }
        };
        let local = match &socket {
            Bound::Tcp(listener) => listener.local_addr(),
            Bound::Udp(socket) => socket.local_addr(),
        }
        .map_err(context)?;
        bound.push((*spec, local, socket));
    }

    let (stop_wait, stop_signal) = UnixStream::pair()?;
    let stop_wait = Arc::new(stop_wait);
    let mut servers = Servers {
        local_addrs: bound.iter().map(|(_, local, _)| *local).collect(),
        stop_signal: Some(stop_signal),
        threads: Vec::with_capacity(bound.len()),
        shared: Arc::new(Shared {
            stopping: AtomicBool::new(false),
            max_connections,
            live: Mutex::new(Live::default()),
            idle: Condvar::new(),
        }),
    };
    for (spec, local, socket) in bound {
        let port = local.port();
        let stop_wait = Arc::clone(&stop_wait);
        let shared = Arc::clone(&servers.shared);
        let builder = thread::Builder::new().name(format!("lab-{}-{port}", spec.protocol));
        let spawned = match socket {
            Bound::Tcp(listener) => {
                builder.spawn(move || accept_loop(&listener, spec.app, port, &stop_wait, &shared))
            }
            Bound::Udp(socket) => {
                let dns = Arc::clone(&dns);
                builder.spawn(move || udp_loop(&socket, spec.app, &dns, &stop_wait, &shared))
            }
        };
        // On failure, dropping `servers` stops the threads already started.
        let thread = spawned
            .map_err(|e| io::Error::new(e.kind(), format!("port {port}/{}: {e}", spec.protocol)))?;
        servers.threads.push(thread);
    }
    Ok(servers)
}

/// Why a serving thread woke up.
enum Wake {
    Socket,
    Stop,
}

/// Waits until `socket` is readable or the stop signal fires.
fn wait_readable(socket: BorrowedFd<'_>, stop: BorrowedFd<'_>) -> io::Result<Wake> {
    let mut fds = [
        libc::pollfd {
            fd: socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: stop.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: `fds` is an initialised array that outlives the call, its true length is passed
    // with it, and both descriptors are borrowed, so they stay open for the whole call.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
    if ready < 0 {
        return Err(io::Error::last_os_error());
    }
    if fds[1].revents != 0 {
        Ok(Wake::Stop)
    } else {
        Ok(Wake::Socket)
    }
}

/// Waits for the next event; `None` means stop. Poll errors (EINTR, ENOMEM) are retried after a
/// pause, checking the stop flag, so a serving thread never dies silently nor spins.
fn next_wake(socket: BorrowedFd<'_>, stop: &UnixStream, shared: &Shared) -> Option<()> {
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            return None;
        }
        match wait_readable(socket, stop.as_fd()) {
            Ok(Wake::Socket) => return Some(()),
            Ok(Wake::Stop) => return None,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => thread::sleep(ERROR_BACKOFF),
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    app: App,
    port: u16,
    stop: &UnixStream,
    shared: &Arc<Shared>,
) {
    while next_wake(listener.as_fd(), stop, shared).is_some() {
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    // Accepted sockets do not inherit the listener's O_NONBLOCK on Linux; this
                    // makes that explicit, as the handlers rely on blocking reads with timeouts.
                    if stream.set_nonblocking(false).is_ok() {
                        shared.admit(stream, app, port);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // The client gave up before we accepted it, or a signal interrupted us.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => {
                    // Out of descriptors or memory: the connection stays queued; try later.
                    thread::sleep(ERROR_BACKOFF);
                    break;
                }
            }
        }
    }
}

fn udp_loop(socket: &UdpSocket, app: App, dns: &DnsTable, stop: &UnixStream, shared: &Shared) {
    let mut buf = vec![0u8; UDP_BUFFER];
    while next_wake(socket.as_fd(), stop, shared).is_some() {
        for _ in 0..UDP_BATCH {
            let (len, peer) = match socket.recv_from(&mut buf) {
                Ok(received) => received,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // A pending error (an ICMP report about an earlier reply) is consumed by the
                // receive that returns it, so the next one proceeds.
                Err(_) => continue,
            };
            let query = buf.get(..len).unwrap_or_default();
            // Send errors concern one peer (unreachable, buffer full); UDP gives no way to
            // tell it, and the next datagram is unaffected.
            match app {
                App::Dns => {
                    if let Some(reply) = dns_reply(query, dns) {
                        let _ = socket.send_to(&reply, peer);
                    }
                }
                App::Plain | App::Http => {
                    let _ = socket.send_to(query, peer);
                }
            }
        }
    }
}

fn handle_connection(mut stream: TcpStream, app: App, port: u16) {
    // Answers are one small write; without Nagle they leave at once.
    let _ = stream.set_nodelay(true);
    if stream.set_write_timeout(Some(WRITE_TIMEOUT)).is_err() {
        return;
    }
    let served = match app {
        App::Http => serve_http(&mut stream, port),
        App::Plain | App::Dns => serve_plain(&mut stream, port),
    };
    if served.is_ok() {
        linger_close(&mut stream);
    }
}

/// Reads the client's line (up to a newline, end of file, [`MAX_PLAIN_REQUEST`] bytes or
/// [`PLAIN_READ_WINDOW`]), then answers with one line naming the server.
fn serve_plain(stream: &mut TcpStream, port: u16) -> io::Result<()> {
    let deadline = Instant::now() + PLAIN_READ_WINDOW;
    let mut buf = [0u8; MAX_PLAIN_REQUEST];
    let mut len = 0;
    while len < buf.len() {
        let Some(free) = buf.get_mut(len..) else {
            break;
        };
        match read_before(stream, free, deadline) {
            Ok(0) => break,
            Ok(n) => {
                let start = len;
                len += n;
                if buf.get(start..len).is_some_and(|new| new.contains(&b'\n')) {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => break,
            Err(e) => return Err(e),
        }
    }
    stream.write_all(format!("flowscope-lab {port}\n").as_bytes())
}

/// Half-closes, then drains what the client still sends (bounded) before the socket is dropped;
/// see [`LINGER`].
fn linger_close(stream: &mut TcpStream) {
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER;
    let mut buf = [0u8; 4096];
    let mut drained = 0;
    while drained < LINGER_BYTES {
        match read_before(stream, &mut buf, deadline) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// One read that returns by `deadline`; a timeout is reported as [`io::ErrorKind::TimedOut`].
fn read_before(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    loop {
        let Some(left) = remaining(deadline) else {
            return Err(io::ErrorKind::TimedOut.into());
        };
        stream.set_read_timeout(Some(left))?;
        match stream.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // SO_RCVTIMEO expiring surfaces as EAGAIN.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::ErrorKind::TimedOut.into());
            }
            result => return result,
        }
    }
}

/// Time left until `deadline`, or `None` once it has passed.
fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
}

/// A request the HTTP server will answer with 200.
#[derive(Debug, PartialEq, Eq)]
struct HttpRequest<'a> {
    method: &'a str,
    target: &'a str,
    content_length: usize,
}

/// Why a request is refused: the status sent back and a short reason for the body.
#[derive(Debug, PartialEq, Eq)]
struct Rejection {
    status: u16,
    why: &'static str,
}

fn bad_request(why: &'static str) -> Rejection {
    Rejection { status: 400, why }
}

/// Serves one HTTP/1.1 request and closes (`Connection: close`): the lab needs one flow per
/// request more than it needs keep-alive.
fn serve_http(stream: &mut TcpStream, port: u16) -> io::Result<()> {
    let deadline = Instant::now() + HTTP_HEAD_DEADLINE;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let head_len = loop {
        // RFC 9112 §2.2: ignore empty lines before the request line.
        let blank = buf
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        buf.drain(..blank);
        if let Some(end) = head_end(&buf) {
            break end;
        }
        if buf.len() >= MAX_HTTP_HEAD {
            let rejection = Rejection {
                status: 431,
                why: "request head too large",
            };
            return write_rejection(stream, &rejection);
        }
        let want = (MAX_HTTP_HEAD - buf.len()).min(chunk.len());
        let Some(room) = chunk.get_mut(..want) else {
            break 0;
        };
        match read_before(stream, room, deadline) {
            // The client left; a partial request gets no answer it could read.
            Ok(0) if buf.is_empty() => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(0) => return write_rejection(stream, &bad_request("incomplete request head")),
            Ok(n) => buf.extend_from_slice(room.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::TimedOut && !buf.is_empty() => {
                let rejection = Rejection {
                    status: 408,
                    why: "request head not received in time",
                };
                return write_rejection(stream, &rejection);
            }
            Err(e) => return Err(e),
        }
    };
    let (head, rest) = buf.split_at(head_len.min(buf.len()));
    let request = match parse_head(head) {
        Ok(request) => request,
        Err(rejection) => return write_rejection(stream, &rejection),
    };

    // Read the body before answering, so clients that finish sending before they read are
    // served too. Bodies without a Content-Length (chunked) are not decoded: the answer does
    // not depend on them, and the lingering close drains them.
    let mut body_left = request.content_length.saturating_sub(rest.len());
    let body_deadline = Instant::now() + HTTP_BODY_DEADLINE;
    while body_left > 0 {
        let want = body_left.min(chunk.len());
        let Some(room) = chunk.get_mut(..want) else {
            break;
        };
        match read_before(stream, room, body_deadline)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => body_left -= n,
        }
    }

    let body = format!(
        "flowscope-lab {port}: {} {}\n",
        request.method, request.target
    );
    write_response(stream, 200, &body, request.method != "HEAD")
}

/// The length of the request head including the empty line ending it, accepting CRLF or bare LF
/// line ends (RFC 9112 §2.2); `None` while it is incomplete.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.iter().enumerate().find_map(|(i, &b)| {
        if b != b'\n' {
            return None;
        }
        match buf.get(i + 1..) {
            Some([b'\n', ..]) => Some(i + 2),
            Some([b'\r', b'\n', ..]) => Some(i + 3),
            _ => None,
        }
    })
}

/// Parses a complete request head (request line, header lines, empty line). Strict where
/// leniency lets requests be read two ways (request smuggling): one space between request-line
/// parts, no whitespace before a header's colon, no line folding, one Content-Length.
fn parse_head(head: &[u8]) -> Result<HttpRequest<'_>, Rejection> {
    let text = std::str::from_utf8(head).map_err(|_| bad_request("request head is not UTF-8"))?;
    let mut lines = text
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line));
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad_request("malformed request line"));
    };
    if !is_token(method) {
        return Err(bad_request("invalid method"));
    }
    if target.is_empty() || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad_request("invalid request target"));
    }
    match version {
        "HTTP/1.1" | "HTTP/1.0" => {}
        _ if is_http_version(version) => {
            return Err(Rejection {
                status: 505,
                why: "only HTTP/1.0 and HTTP/1.1 are served",
            });
        }
        _ => return Err(bad_request("invalid HTTP version")),
    }

    let mut content_length = None;
    let mut transfer_encoding = false;
    for (count, line) in lines.take_while(|line| !line.is_empty()).enumerate() {
        if count >= MAX_HTTP_HEADERS {
            return Err(Rejection {
                status: 431,
                why: "too many header lines",
            });
        }
        if line.starts_with([' ', '\t']) {
            return Err(bad_request("obsolete header line folding"));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad_request("header line without a colon"));
        };
        if !is_token(name) {
            return Err(bad_request("invalid header name"));
        }
        let value = value.trim_matches([' ', '\t']);
        if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(bad_request("control character in a header value"));
        }
        if name.eq_ignore_ascii_case("content-length") {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad_request("invalid Content-Length"));
            }
            // All digits, so a parse failure can only be overflow: a body far too large.
            let length = value.parse::<usize>().unwrap_or(usize::MAX);
            if content_length.is_some_and(|seen| seen != length) {
                return Err(bad_request("conflicting Content-Length headers"));
            }
            content_length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
        }
    }
    if transfer_encoding && content_length.is_some() {
        return Err(bad_request("both Transfer-Encoding and Content-Length"));
    }
    let content_length = content_length.unwrap_or(0);
    if content_length > MAX_HTTP_BODY {
        return Err(Rejection {
            status: 413,
            why: "request body too large",
        });
    }
    Ok(HttpRequest {
        method,
        target,
        content_length,
    })
}

/// An HTTP token (RFC 9110 §5.6.2): method and header-name syntax.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `HTTP/<digit>.<digit>`: a well-formed version we may still not serve.
fn is_http_version(s: &str) -> bool {
    matches!(
        s.strip_prefix("HTTP/").map(str::as_bytes),
        Some([major, b'.', minor]) if major.is_ascii_digit() && minor.is_ascii_digit()
    )
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

fn write_rejection(stream: &mut TcpStream, rejection: &Rejection) -> io::Result<()> {
    write_response(
        stream,
        rejection.status,
        &format!("{}\n", rejection.why),
        true,
    )
}

fn write_response(
    stream: &mut TcpStream,
    status: u16,
    body: &str,
    include_body: bool,
) -> io::Result<()> {
    let mut response = format!(
        "HTTP/1.1 {status} {}\r\nServer: flowscope-lab\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        reason_phrase(status),
        body.len()
    );
    if include_body {
        response.push_str(body);
    }
    stream.write_all(response.as_bytes())
}

/// A DNS question as read from a query.
struct Question {
    /// Where the question ends in the packet (the reply copies the question verbatim).
    end: usize,
    /// The name, lowercased; `None` when a label holds bytes a table name cannot (a dot,
    /// a control or non-ASCII byte), so it can match nothing.
    name: Option<String>,
    qtype: u16,
    qclass: u16,
}

fn be16(packet: &[u8], at: usize) -> Option<u16> {
    match packet.get(at..at + 2)? {
        [hi, lo] => Some(u16::from_be_bytes([*hi, *lo])),
        _ => None,
    }
}

/// Reads the question after the header. No compression pointers: a query's only name is the
/// first one, so there is nothing to point back to.
fn parse_question(packet: &[u8]) -> Option<Question> {
    let mut pos = DNS_HEADER;
    let mut name = String::new();
    let mut matchable = true;
    let mut wire_len = 1; // the root label's zero octet
    loop {
        let len = usize::from(*packet.get(pos)?);
        pos += 1;
        if len == 0 {
            break;
        }
        // 0xC0 marks a pointer; 0x40 and 0x80 are reserved label types. Either way the low six
        // bits also bound a label to 63 octets.
        if len & 0xC0 != 0 {
            return None;
        }
        wire_len += 1 + len;
        if wire_len > DNS_MAX_NAME {
            return None;
        }
        let label = packet.get(pos..pos + len)?;
        pos += len;
        if !name.is_empty() {
            name.push('.');
        }
        for &b in label {
            if b == b'.' || !b.is_ascii_graphic() {
                matchable = false;
            }
            name.push(char::from(b.to_ascii_lowercase()));
        }
    }
    Some(Question {
        end: pos + 4,
        name: matchable.then_some(name),
        qtype: be16(packet, pos)?,
        qclass: be16(packet, pos + 2)?,
    })
}

/// The reply to one DNS query, or `None` when it must not be answered: too short to carry an ID
/// to answer to, or itself a response (answering those could loop between two servers).
fn dns_reply(query: &[u8], table: &DnsTable) -> Option<Vec<u8>> {
    let header = query.get(..DNS_HEADER)?;
    let (id, flags) = (be16(header, 0)?, be16(header, 2)?);
    if flags & DNS_FLAG_QR != 0 {
        return None;
    }
    let opcode = (flags >> 11) & 0x0F;
    // Echo the opcode and RD, as RFC 1035 asks.
    let base = DNS_FLAG_QR | (opcode << 11) | (flags & DNS_FLAG_RD);
    let reply = |flags: u16, rcode: u8, question: &[u8], answer: Option<Ipv4Addr>| {
        let mut out = Vec::with_capacity(DNS_HEADER + question.len() + 16);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&(flags | u16::from(rcode)).to_be_bytes());
        out.extend_from_slice(&u16::from(!question.is_empty()).to_be_bytes());
        out.extend_from_slice(&u16::from(answer.is_some()).to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]); // no authority, no additional records
        out.extend_from_slice(question);
        if let Some(ip) = answer {
            out.extend_from_slice(&[0xC0, 0x0C]); // a pointer to the question's name
            out.extend_from_slice(&DNS_TYPE_A.to_be_bytes());
            out.extend_from_slice(&DNS_CLASS_IN.to_be_bytes());
            out.extend_from_slice(&DNS_TTL.to_be_bytes());
            out.extend_from_slice(&4u16.to_be_bytes());
            out.extend_from_slice(&ip.octets());
        }
        out
    };
    if opcode != 0 {
        return Some(reply(base, RCODE_NOTIMP, &[], None));
    }
    // Exactly one question and no answers or authority in a query. Additional records (an EDNS
    // OPT) are allowed and ignored: a responder without EDNS answers without one (RFC 6891).
    let counts = (be16(header, 4)?, be16(header, 6)?, be16(header, 8)?);
    if counts != (1, 0, 0) {
        return Some(reply(base, RCODE_FORMERR, &[], None));
    }
    let Some(question) = parse_question(query) else {
        return Some(reply(base, RCODE_FORMERR, &[], None));
    };
    let question_bytes = query.get(DNS_HEADER..question.end)?;
    if question.qclass != DNS_CLASS_IN && question.qclass != DNS_CLASS_ANY {
        return Some(reply(base, RCODE_REFUSED, question_bytes, None));
    }
    // The table is the whole truth for these names, so the answers are authoritative, and an
    // unknown name does not exist.
    let flags = base | DNS_FLAG_AA;
    let Some(ip) = question.name.and_then(|name| table.lookup(&name)) else {
        return Some(reply(flags, RCODE_NXDOMAIN, question_bytes, None));
    };
    // A known name has only an A record; other types get an empty NOERROR (NODATA).
    let answer = matches!(question.qtype, DNS_TYPE_A | DNS_TYPE_ANY).then_some(ip);
    Some(reply(flags, RCODE_NOERROR, question_bytes, answer))
}

/// What one probe saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    /// TCP: the handshake completed. UDP and DNS: a reply came back.
    pub connected: bool,
    /// The probe's local port, known even when nothing answered (0 only if no socket could be
    /// bound), to match the probe with the flow the observer reports.
    pub source_port: u16,
    /// What happened: the server's answer line, the HTTP status ("200 OK"), the DNS response
    /// code, or why it failed ("connection refused", "timed out", "port unreachable").
    pub detail: String,
}

impl ProbeResult {
    fn failed(source_port: u16, detail: impl Into<String>) -> Self {
        Self {
            connected: false,
            source_port,
            detail: detail.into(),
        }
    }

    fn answered(source_port: u16, detail: impl Into<String>) -> Self {
        Self {
            connected: true,
            source_port,
            detail: detail.into(),
        }
    }
}

/// The short words the lab reports for socket errors.
fn describe(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timed out".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::HostUnreachable => "host unreachable".into(),
        io::ErrorKind::NetworkUnreachable => "network unreachable".into(),
        _ => error.to_string(),
    }
}

/// For UDP, a refusal is the kernel relaying an ICMP port unreachable.
fn describe_udp(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => "port unreachable".into(),
        _ => describe(error),
    }
}

/// The wildcard address of `dst`'s family, port 0: binding it picks the ephemeral source port
/// up front, and the kernel still chooses the source address (by route) at connect time.
fn ephemeral_for(dst: SocketAddr) -> SocketAddr {
    match dst {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    }
}

/// Connects from a port bound beforehand, so it is known whatever happens next. `std` cannot
/// bind before connecting; socket2 (already in the dependency tree through tokio) can.
fn connect_tcp(dst: SocketAddr, timeout: Duration) -> Result<(TcpStream, u16), ProbeResult> {
    use socket2::{Domain, SockAddr, Socket, Type};

    let socket = Socket::new(
        Domain::for_address(dst),
        Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .map_err(|e| ProbeResult::failed(0, format!("socket: {e}")))?;
    socket
        .bind(&SockAddr::from(ephemeral_for(dst)))
        .map_err(|e| ProbeResult::failed(0, format!("bind: {e}")))?;
    let source_port = socket
        .local_addr()
        .ok()
        .and_then(|addr| addr.as_socket())
        .map_or(0, |addr| addr.port());
    socket
        .connect_timeout(&SockAddr::from(dst), timeout)
        .map_err(|e| ProbeResult::failed(source_port, describe(&e)))?;
    let stream = TcpStream::from(socket);
    let _ = stream.set_nodelay(true);
    Ok((stream, source_port))
}

/// Reads until end of file, `limit` bytes, `done` says the answer is complete, or the deadline.
/// Returns what arrived and the error that ended the read early, if any.
fn read_answer(
    stream: &mut TcpStream,
    deadline: Instant,
    limit: usize,
    done: impl Fn(&[u8]) -> bool,
) -> (Vec<u8>, Option<io::Error>) {
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    while answer.len() < limit && !done(&answer) {
        let want = (limit - answer.len()).min(chunk.len());
        let Some(room) = chunk.get_mut(..want) else {
            break;
        };
        match read_before(stream, room, deadline) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(room.get(..n).unwrap_or_default()),
            Err(e) => return (answer, Some(e)),
        }
    }
    (answer, None)
}

/// The first line of what a server sent, printable and short, for a probe's `detail`.
fn first_line(bytes: &[u8]) -> String {
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    String::from_utf8_lossy(line)
        .trim_end_matches('\r')
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(MAX_DETAIL)
        .collect()
}

/// Connects to `dst`, sends one line and reads the answer (best effort). `connected` is the
/// handshake; `detail` is the server's first answer line, or what went wrong. The whole probe
/// takes at most about `timeout`.
pub fn probe_tcp(dst: SocketAddr, timeout: Duration) -> ProbeResult {
    let deadline = Instant::now() + timeout;
    let (mut stream, source_port) = match connect_tcp(dst, timeout) {
        Ok(connected) => connected,
        Err(result) => return result,
    };
    if let Err(e) = stream
        .set_write_timeout(remaining(deadline).or(Some(Duration::from_millis(1))))
        .and_then(|()| stream.write_all(PROBE_LINE))
    {
        return ProbeResult::answered(source_port, format!("connected, {}", describe(&e)));
    }
    let (answer, error) = read_answer(&mut stream, deadline, MAX_PROBE_ANSWER, |_| false);
    let detail = match (answer.is_empty(), error) {
        (false, _) => first_line(&answer),
        (true, None) => "connected, closed without an answer".into(),
        (true, Some(e)) => format!("connected, no answer ({})", describe(&e)),
    };
    ProbeResult::answered(source_port, detail)
}

/// Sends one datagram to `dst` and waits for a reply. `connected` means a reply arrived
/// (`detail` "echo" when it is the datagram sent back); an ICMP port unreachable is "port
/// unreachable", silence "timed out".
pub fn probe_udp(dst: SocketAddr, timeout: Duration) -> ProbeResult {
    let deadline = Instant::now() + timeout;
    let (socket, source_port) = match connect_udp(dst) {
        Ok(connected) => connected,
        Err(result) => return result,
    };
    if let Err(e) = socket.send(PROBE_LINE) {
        return ProbeResult::failed(source_port, describe_udp(&e));
    }
    let mut buf = [0u8; 2048];
    match recv_before(&socket, &mut buf, deadline) {
        Ok(n) if buf.get(..n) == Some(PROBE_LINE) => ProbeResult::answered(source_port, "echo"),
        Ok(n) => ProbeResult::answered(source_port, format!("reply of {n} bytes")),
        Err(e) => ProbeResult::failed(source_port, describe_udp(&e)),
    }
}

/// A UDP socket on an ephemeral port, connected to `dst` so that only `dst` can answer and
/// ICMP errors about it are reported on the socket.
fn connect_udp(dst: SocketAddr) -> Result<(UdpSocket, u16), ProbeResult> {
    let socket = UdpSocket::bind(ephemeral_for(dst))
        .map_err(|e| ProbeResult::failed(0, format!("bind: {e}")))?;
    let source_port = socket.local_addr().map_or(0, |addr| addr.port());
    socket
        .connect(dst)
        .map_err(|e| ProbeResult::failed(source_port, describe_udp(&e)))?;
    Ok((socket, source_port))
}

fn recv_before(socket: &UdpSocket, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    loop {
        let Some(left) = remaining(deadline) else {
            return Err(io::ErrorKind::TimedOut.into());
        };
        socket.set_read_timeout(Some(left))?;
        match socket.recv(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            result => return result,
        }
    }
}

/// Sends one HTTP/1.1 request (no body, `Connection: close`) and reads the response.
/// `connected` is the TCP handshake; `detail` is the status ("200 OK") or what went wrong
/// ("connection refused", "response timed out"). The whole exchange takes at most about
/// `timeout`. A method or path that would not make a valid request line is refused before any
/// packet is sent.
pub fn http_request(dst: SocketAddr, method: &str, path: &str, timeout: Duration) -> ProbeResult {
    if !is_token(method) {
        return ProbeResult::failed(0, format!("invalid request: method {method:?}"));
    }
    if path.is_empty() || !path.bytes().all(|b| b.is_ascii_graphic()) {
        return ProbeResult::failed(0, format!("invalid request: path {path:?}"));
    }
    let deadline = Instant::now() + timeout;
    let (mut stream, source_port) = match connect_tcp(dst, timeout) {
        Ok(connected) => connected,
        Err(result) => return result,
    };
    // Methods that may carry a body say it is empty, for servers that insist on a length.
    let length = if matches!(method, "GET" | "HEAD") {
        ""
    } else {
        "Content-Length: 0\r\n"
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {dst}\r\nUser-Agent: flowscope-lab\r\n\
         Accept: */*\r\n{length}Connection: close\r\n\r\n"
    );
    if let Err(e) = stream
        .set_write_timeout(remaining(deadline).or(Some(Duration::from_millis(1))))
        .and_then(|()| stream.write_all(request.as_bytes()))
    {
        return ProbeResult::answered(source_port, format!("request failed: {}", describe(&e)));
    }
    // Read the whole response (not just the status line) so the connection closes cleanly
    // rather than with a reset, which would show up in the flows.
    let head_only = method == "HEAD";
    let (response, error) = read_answer(&mut stream, deadline, MAX_PROBE_ANSWER, |got| {
        response_complete(got, head_only)
    });
    let status = first_line(&response);
    // "HTTP/1.1 200 OK" -> "200 OK".
    let detail = match status.split_once(' ') {
        Some((version, code)) if version.starts_with("HTTP/") && !code.is_empty() => {
            code.to_string()
        }
        _ => match error {
            Some(e) if e.kind() == io::ErrorKind::TimedOut => "response timed out".into(),
            Some(e) => format!("no response ({})", describe(&e)),
            None if response.is_empty() => "closed without a response".into(),
            None => format!("invalid response: {status}"),
        },
    };
    ProbeResult::answered(source_port, detail)
}

/// Whether an HTTP response is complete by its Content-Length; without one, end of file ends it.
fn response_complete(got: &[u8], head_only: bool) -> bool {
    let Some(end) = head_end(got) else {
        return false;
    };
    if head_only {
        return true;
    }
    let head = String::from_utf8_lossy(got.get(..end).unwrap_or_default());
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    length.is_some_and(|length| got.len() >= end + length)
}

/// A DNS reply as the probe sees it.
#[derive(Debug)]
struct DnsResponse {
    rcode: u8,
    addresses: Vec<Ipv4Addr>,
}

fn rcode_name(rcode: u8) -> String {
    match rcode {
        RCODE_NOERROR => "NOERROR".into(),
        RCODE_FORMERR => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        RCODE_NXDOMAIN => "NXDOMAIN".into(),
        RCODE_NOTIMP => "NOTIMP".into(),
        RCODE_REFUSED => "REFUSED".into(),
        other => format!("RCODE{other}"),
    }
}

/// Resolves `name` (A records) with one query to `server`: the addresses on NOERROR (possibly
/// none), otherwise the response code ("NXDOMAIN") or what went wrong ("timed out", "port
/// unreachable") as the error.
pub fn dns_query(
    server: SocketAddr,
    name: &str,
    timeout: Duration,
) -> Result<Vec<Ipv4Addr>, String> {
    match dns_exchange(server, name, DNS_TYPE_A, timeout).1 {
        Ok(response) if response.rcode == RCODE_NOERROR => Ok(response.addresses),
        Ok(response) => Err(rcode_name(response.rcode)),
        Err(e) => Err(e),
    }
}

/// [`dns_query`] as a probe, reporting the source port too: `connected` means a reply arrived,
/// `detail` is its response code or what went wrong.
pub fn dns_probe(
    server: SocketAddr,
    name: &str,
    timeout: Duration,
) -> (ProbeResult, Vec<Ipv4Addr>) {
    match dns_exchange(server, name, DNS_TYPE_A, timeout) {
        (source_port, Ok(response)) => (
            ProbeResult::answered(source_port, rcode_name(response.rcode)),
            response.addresses,
        ),
        (source_port, Err(e)) => (ProbeResult::failed(source_port, e), Vec::new()),
    }
}

/// Sends one query and waits for the reply carrying its ID; returns the source port beside it.
fn dns_exchange(
    server: SocketAddr,
    name: &str,
    qtype: u16,
    timeout: Duration,
) -> (u16, Result<DnsResponse, String>) {
    let deadline = Instant::now() + timeout;
    // A fresh ID per query, without a random number crate: RandomState is seeded randomly.
    let id = RandomState::new().hash_one(Instant::now()) as u16;
    let query = match encode_query(id, name, qtype) {
        Ok(query) => query,
        Err(e) => return (0, Err(e)),
    };
    let (socket, source_port) = match connect_udp(server) {
        Ok(connected) => connected,
        Err(result) => return (result.source_port, Err(result.detail)),
    };
    if let Err(e) = socket.send(&query) {
        return (source_port, Err(describe_udp(&e)));
    }
    let mut buf = [0u8; 4096];
    loop {
        let len = match recv_before(&socket, &mut buf, deadline) {
            Ok(len) => len,
            Err(e) => return (source_port, Err(describe_udp(&e))),
        };
        // Anything that is not the reply to this query (a stale or forged datagram) is
        // skipped, and the wait goes on.
        if let Some(response) = buf.get(..len).and_then(|reply| parse_response(reply, id)) {
            return (source_port, Ok(response));
        }
    }
}

/// A recursion-desired query for one name and type, class IN.
fn encode_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    let mut query = Vec::with_capacity(DNS_HEADER + trimmed.len() + 6);
    query.extend_from_slice(&id.to_be_bytes());
    query.extend_from_slice(&DNS_FLAG_RD.to_be_bytes());
    query.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(format!(
                    "invalid name {name:?}: labels are 1 to 63 bytes long"
                ));
            }
            query.push(label.len() as u8);
            query.extend_from_slice(label.as_bytes());
        }
    }
    query.push(0);
    if query.len() - DNS_HEADER > DNS_MAX_NAME {
        return Err(format!(
            "invalid name {name:?}: longer than 255 bytes on the wire"
        ));
    }
    query.extend_from_slice(&qtype.to_be_bytes());
    query.extend_from_slice(&DNS_CLASS_IN.to_be_bytes());
    Ok(query)
}

/// Skips a name that may end in a compression pointer; returns where the name ends.
fn skip_name(packet: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *packet.get(pos)?;
        match len & 0xC0 {
            0xC0 => {
                packet.get(pos + 1)?;
                return Some(pos + 2);
            }
            0 if len == 0 => return Some(pos + 1),
            0 => pos += 1 + usize::from(len),
            _ => return None,
        }
    }
}

/// The reply to query `id`, or `None` if `packet` is not one (wrong ID, not a response, or
/// malformed).
fn parse_response(packet: &[u8], id: u16) -> Option<DnsResponse> {
    let flags = be16(packet, 2)?;
    if be16(packet, 0)? != id || flags & DNS_FLAG_QR == 0 {
        return None;
    }
    let rcode = (flags & 0x0F) as u8;
    let (questions, answers) = (be16(packet, 4)?, be16(packet, 6)?);
    let mut pos = DNS_HEADER;
    for _ in 0..questions {
        pos = skip_name(packet, pos)? + 4;
    }
    let mut addresses = Vec::new();
    for _ in 0..answers {
        pos = skip_name(packet, pos)?;
        let (rtype, class) = (be16(packet, pos)?, be16(packet, pos + 2)?);
        let rdlength = usize::from(be16(packet, pos + 8)?);
        let rdata = packet.get(pos + 10..pos + 10 + rdlength)?;
        pos += 10 + rdlength;
        if let (DNS_TYPE_A, DNS_CLASS_IN, Ok(octets)) = (rtype, class, <[u8; 4]>::try_from(rdata)) {
            addresses.push(Ipv4Addr::from(octets));
        }
    }
    Some(DnsResponse { rcode, addresses })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DNS_TYPE_AAAA: u16 = 28;
    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const TIMEOUT: Duration = Duration::from_secs(2);

    fn spec(protocol: Protocol, app: App) -> ServeSpec {
        ServeSpec {
            port: 0,
            protocol,
            app,
        }
    }

    fn start(specs: &[ServeSpec]) -> (Servers, Arc<DnsTable>) {
        let dns = Arc::new(DnsTable::new());
        dns.insert("web.lab", Ipv4Addr::new(10, 0, 0, 5));
        let servers = serve(specs, LOOPBACK, Arc::clone(&dns)).unwrap();
        (servers, dns)
    }

    /// Polls `condition` until it holds, failing after a few seconds (instead of a fixed sleep).
    fn assert_eventually(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !condition() {
            assert!(Instant::now() < deadline, "never happened: {what}");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `request` on a fresh connection and returns everything the server answers.
    fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.write_all(request).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        String::from_utf8(response).unwrap()
    }

    /// A port nothing listens on (bound, read, released).
    fn closed_tcp_port() -> SocketAddr {
        TcpListener::bind((LOOPBACK, 0))
            .unwrap()
            .local_addr()
            .unwrap()
    }

    fn closed_udp_port() -> SocketAddr {
        UdpSocket::bind((LOOPBACK, 0))
            .unwrap()
            .local_addr()
            .unwrap()
    }

    fn raw_dns(server: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
        let socket = UdpSocket::bind((LOOPBACK, 0)).unwrap();
        socket.connect(server).unwrap();
        socket.send(query).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 1024];
        socket.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
    }

    fn rcode_of(reply: &[u8]) -> u8 {
        reply[3] & 0x0F
    }

    #[test]
    fn tcp_plain_answers_with_its_port() {
        let (servers, _) = start(&[spec(Protocol::Tcp, App::Plain)]);
        let addr = servers.local_addrs()[0];
        let result = probe_tcp(addr, TIMEOUT);
        assert!(result.connected, "{result:?}");
        assert_eq!(result.detail, format!("flowscope-lab {}", addr.port()));
        assert_ne!(result.source_port, 0);

        // A client that sends nothing but closes its side is answered at once.
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let started = Instant::now();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert_eq!(answer, format!("flowscope-lab {}\n", addr.port()));
        assert!(started.elapsed() < PLAIN_READ_WINDOW);

        // One that sends nothing at all is answered after the read window.
        let mut stream = TcpStream::connect(addr).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert_eq!(answer, format!("flowscope-lab {}\n", addr.port()));
    }

    #[test]
    fn udp_plain_echoes() {
        let (servers, _) = start(&[spec(Protocol::Udp, App::Plain)]);
        let addr = servers.local_addrs()[0];
        let result = probe_udp(addr, TIMEOUT);
        assert_eq!(
            (result.connected, result.detail.as_str()),
            (true, "echo"),
            "{result:?}"
        );
        let socket = UdpSocket::bind((LOOPBACK, 0)).unwrap();
        socket.set_read_timeout(Some(TIMEOUT)).unwrap();
        for payload in [&b"x"[..], &[0u8; 1500][..], &[7u8; 9000][..]] {
            socket.send_to(payload, addr).unwrap();
            let mut buf = [0u8; UDP_BUFFER];
            let (n, from) = socket.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (payload, addr));
        }
    }

    #[test]
    fn probes_report_the_source_port_they_used() {
        let listener = TcpListener::bind((LOOPBACK, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = thread::spawn(move || {
            let (mut stream, peer) = listener.accept().unwrap();
            stream.write_all(b"hello\n").unwrap();
            peer.port()
        });
        let result = probe_tcp(addr, TIMEOUT);
        assert_eq!(result.source_port, peer.join().unwrap());
        assert_eq!(result.detail, "hello");

        let socket = UdpSocket::bind((LOOPBACK, 0)).unwrap();
        let addr = socket.local_addr().unwrap();
        let peer = thread::spawn(move || {
            let mut buf = [0u8; 64];
            let (_, peer) = socket.recv_from(&mut buf).unwrap();
            socket.send_to(b"pong", peer).unwrap();
            peer.port()
        });
        let result = probe_udp(addr, TIMEOUT);
        assert_eq!(result.source_port, peer.join().unwrap());
        assert_eq!(
            (result.connected, result.detail.as_str()),
            (true, "reply of 4 bytes")
        );
    }

    #[test]
    fn closed_ports_are_refused_and_unreachable() {
        let result = probe_tcp(closed_tcp_port(), TIMEOUT);
        assert!(!result.connected);
        assert_eq!(result.detail, "connection refused");
        assert_ne!(result.source_port, 0);

        let result = probe_udp(closed_udp_port(), TIMEOUT);
        assert!(!result.connected);
        assert_eq!(result.detail, "port unreachable");
        assert_ne!(result.source_port, 0);

        let result = http_request(closed_tcp_port(), "GET", "/", TIMEOUT);
        assert_eq!(
            (result.connected, result.detail.as_str()),
            (false, "connection refused")
        );
        assert_eq!(
            dns_query(closed_udp_port(), "web.lab", TIMEOUT),
            Err("port unreachable".to_string())
        );
    }

    fn assert_bounded(started: Instant, timeout: Duration) {
        let elapsed = started.elapsed();
        assert!(
            // poll() counts whole milliseconds, so a timeout may end a hair early.
            elapsed + Duration::from_millis(20) >= timeout
                && elapsed < timeout + Duration::from_millis(500),
            "took {elapsed:?} for a {timeout:?} timeout"
        );
    }

    #[test]
    fn probe_timeouts_are_bounded() {
        let timeout = Duration::from_millis(300);

        // A listener whose accept queue is full drops new SYNs, so connect never completes.
        let listener =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        listener.bind(&SocketAddr::new(LOOPBACK, 0).into()).unwrap();
        listener.listen(0).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        let _fills_the_queue = TcpStream::connect(addr).unwrap();
        let started = Instant::now();
        let result = probe_tcp(addr, timeout);
        assert_bounded(started, timeout);
        assert_eq!(
            (result.connected, result.detail.as_str()),
            (false, "timed out")
        );
        assert_ne!(result.source_port, 0);

        // Connected, but the server never answers.
        let silent = TcpListener::bind((LOOPBACK, 0)).unwrap();
        let addr = silent.local_addr().unwrap();
        let started = Instant::now();
        let result = http_request(addr, "GET", "/", timeout);
        assert_bounded(started, timeout);
        assert_eq!(
            (result.connected, result.detail.as_str()),
            (true, "response timed out")
        );
        let started = Instant::now();
        let result = probe_tcp(addr, timeout);
        assert_bounded(started, timeout);
        assert!(result.connected);
        assert_eq!(result.detail, "connected, no answer (timed out)");

        let silent = UdpSocket::bind((LOOPBACK, 0)).unwrap();
        let addr = silent.local_addr().unwrap();
        let started = Instant::now();
        let result = probe_udp(addr, timeout);
        assert_bounded(started, timeout);
        assert_eq!(
            (result.connected, result.detail.as_str()),
            (false, "timed out")
        );
        let started = Instant::now();
        assert_eq!(dns_query(addr, "web.lab", timeout), Err("timed out".into()));
        assert_bounded(started, timeout);
    }

    #[test]
    fn http_answers_every_method_and_path() {
        let (servers, _) = start(&[spec(Protocol::Tcp, App::Http)]);
        let addr = servers.local_addrs()[0];
        let port = addr.port();
        for method in ["GET", "POST", "DELETE", "PUT", "OPTIONS"] {
            let result = http_request(addr, method, "/api/items?id=7", TIMEOUT);
            assert_eq!(
                (result.connected, result.detail.as_str()),
                (true, "200 OK"),
                "{method}"
            );
            assert_ne!(result.source_port, 0);
        }

        let response = exchange(addr, b"GET /a/b?c=1 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(
            response.contains("\r\nContent-Type: text/plain\r\n"),
            "{response}"
        );
        assert!(response.contains("\r\nConnection: close\r\n"), "{response}");
        let body = format!("flowscope-lab {port}: GET /a/b?c=1\n");
        assert!(response.contains(&format!("\r\nContent-Length: {}\r\n", body.len())));
        assert!(response.ends_with(&format!("\r\n\r\n{body}")), "{response}");

        let response = exchange(
            addr,
            b"POST /submit HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        );
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.ends_with(&format!("flowscope-lab {port}: POST /submit\n")));

        let response = exchange(addr, b"DELETE /items/7 HTTP/1.0\n\n");
        assert!(response.ends_with(&format!("flowscope-lab {port}: DELETE /items/7\n")));

        // HEAD: the length of the body, but no body.
        let response = exchange(addr, b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.ends_with("\r\n\r\n"), "{response}");
        assert_eq!(http_request(addr, "HEAD", "/x", TIMEOUT).detail, "200 OK");

        // A chunked body is not decoded, but drained, so the answer arrives intact.
        let response = exchange(
            addr,
            b"PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        );
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    }

    #[test]
    fn http_rejects_malformed_requests_and_keeps_serving() {
        let (servers, _) = start(&[spec(Protocol::Tcp, App::Http)]);
        let addr = servers.local_addrs()[0];
        let big_header = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HTTP_HEAD));
        let cases: [(&[u8], &str); 11] = [
            (b"garbage\r\n\r\n", "400 Bad Request"),
            (b"\x00\x01\x02\xff\xfe\r\n\r\n", "400 Bad Request"),
            (b"GET /\r\n\r\n", "400 Bad Request"),
            (b"GET  / HTTP/1.1\r\n\r\n", "400 Bad Request"),
            (
                b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
                "400 Bad Request",
            ),
            (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", "400 Bad Request"),
            (
                b"GET / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
                "400 Bad Request",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                "400 Bad Request",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                "413 Content Too Large",
            ),
            (b"GET / HTTP/2.0\r\n\r\n", "505 HTTP Version Not Supported"),
            (big_header.as_bytes(), "431 Request Header Fields Too Large"),
        ];
        for (request, status) in cases {
            let response = exchange(addr, request);
            assert!(
                response.starts_with(&format!("HTTP/1.1 {status}\r\n")),
                "{:?} -> {response}",
                String::from_utf8_lossy(request)
            );
        }
        assert_eq!(http_request(addr, "GET", "/", TIMEOUT).detail, "200 OK");
    }

    #[test]
    fn http_request_refuses_to_send_invalid_request_lines() {
        let result = http_request(closed_tcp_port(), "GE T", "/", TIMEOUT);
        assert!(!result.connected);
        assert!(result.detail.starts_with("invalid request"), "{result:?}");
        let result = http_request(closed_tcp_port(), "GET", "/a\r\nX: y", TIMEOUT);
        assert!(result.detail.starts_with("invalid request"), "{result:?}");
    }

    #[test]
    fn head_parsing() {
        let request = parse_head(b"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(
            request,
            Ok(HttpRequest {
                method: "GET",
                target: "/x",
                content_length: 3
            })
        );
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\nA: b\n\nbody"), Some(21));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "A: b\r\n".repeat(MAX_HTTP_HEADERS + 1)
        );
        assert_eq!(parse_head(many.as_bytes()).map_err(|r| r.status), Err(431));
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n").map_err(|r| r.status),
            Err(400)
        );
    }

    #[test]
    fn dns_answers_known_names_with_their_address() {
        let (servers, dns) = start(&[spec(Protocol::Udp, App::Dns)]);
        let addr = servers.local_addrs()[0];
        let web = Ipv4Addr::new(10, 0, 0, 5);
        assert_eq!(dns_query(addr, "web.lab", TIMEOUT), Ok(vec![web]));
        assert_eq!(dns_query(addr, "WEB.Lab.", TIMEOUT), Ok(vec![web]));

        // Names added while serving are answered.
        dns.insert("db.lab", Ipv4Addr::new(10, 0, 0, 6));
        let (probe, addresses) = dns_probe(addr, "db.lab", TIMEOUT);
        assert_eq!((probe.connected, probe.detail.as_str()), (true, "NOERROR"));
        assert_ne!(probe.source_port, 0);
        assert_eq!(addresses, [Ipv4Addr::new(10, 0, 0, 6)]);

        // The answer on the wire: authoritative, the question echoed verbatim (case kept), one
        // A record pointing back at the question's name, TTL 30.
        let query = encode_query(0xBEEF, "Web.lab", DNS_TYPE_A).unwrap();
        let reply = raw_dns(addr, &query).unwrap();
        assert_eq!(&reply[..2], &[0xBE, 0xEF]);
        assert_eq!(reply[2], 0x85, "QR, AA and RD set");
        assert_eq!(reply[3], 0x00, "NOERROR");
        assert_eq!(&reply[4..12], &[0, 1, 0, 1, 0, 0, 0, 0]);
        assert_eq!(&reply[12..query.len()], &query[12..]);
        assert_eq!(
            &reply[query.len()..],
            &[0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 0, 0, 5]
        );
    }

    #[test]
    fn dns_nxdomain_and_empty_aaaa() {
        let (servers, _) = start(&[spec(Protocol::Udp, App::Dns)]);
        let addr = servers.local_addrs()[0];
        assert_eq!(
            dns_query(addr, "nope.lab", TIMEOUT),
            Err("NXDOMAIN".to_string())
        );
        let (_, aaaa) = dns_exchange(addr, "web.lab", DNS_TYPE_AAAA, TIMEOUT);
        let aaaa = aaaa.unwrap();
        assert_eq!((aaaa.rcode, aaaa.addresses.len()), (RCODE_NOERROR, 0));
        let (_, aaaa) = dns_exchange(addr, "nope.lab", DNS_TYPE_AAAA, TIMEOUT);
        assert_eq!(aaaa.unwrap().rcode, RCODE_NXDOMAIN);
    }

    #[test]
    fn dns_survives_malformed_packets() {
        let (servers, _) = start(&[spec(Protocol::Udp, App::Dns)]);
        let addr = servers.local_addrs()[0];
        let header = |flags: u16, qdcount: u16| {
            let mut packet = vec![0x12, 0x34];
            packet.extend_from_slice(&flags.to_be_bytes());
            packet.extend_from_slice(&qdcount.to_be_bytes());
            packet.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
            packet
        };
        let with = |mut packet: Vec<u8>, rest: &[u8]| {
            packet.extend_from_slice(rest);
            packet
        };
        let long_name: Vec<u8> = (0..5)
            .flat_map(|_| [&[63u8][..], &[b'a'; 63]].concat())
            .collect();

        // Too short for an ID, or a response: dropped.
        assert_eq!(raw_dns(addr, &[0x12]), None);
        assert_eq!(
            raw_dns(addr, &with(header(0x8000, 1), b"\x00\x00\x01\x00\x01")),
            None
        );

        let formerr: [Vec<u8>; 6] = [
            header(0x0100, 1),                                              // no question
            with(header(0x0100, 1), b"\x3fabc"),                            // label past the end
            with(header(0x0100, 1), b"\xc0\x0c\x00\x01\x00\x01"), // pointer in the question
            with(header(0x0100, 1), b"\x40abc\x00\x00\x01\x00\x01"), // reserved label type
            with(header(0x0100, 2), b"\x03web\x03lab\x00\x00\x01\x00\x01"), // two questions
            with(
                header(0x0100, 1),
                &[&long_name[..], b"\x00\x00\x01\x00\x01"].concat(),
            ),
        ];
        for packet in formerr {
            let reply = raw_dns(addr, &packet).expect("a FORMERR reply");
            assert_eq!(&reply[..2], &[0x12, 0x34]);
            assert_eq!(rcode_of(&reply), RCODE_FORMERR, "{packet:?}");
        }
        let status = with(header(0x1000, 1), b"\x03web\x03lab\x00\x00\x01\x00\x01");
        let reply = raw_dns(addr, &status).unwrap();
        assert_eq!((rcode_of(&reply), reply[2] >> 3 & 0x0F), (RCODE_NOTIMP, 2));
        let chaos = with(header(0x0100, 1), b"\x03web\x03lab\x00\x00\x01\x00\x03");
        assert_eq!(rcode_of(&raw_dns(addr, &chaos).unwrap()), RCODE_REFUSED);

        assert_eq!(
            dns_query(addr, "web.lab", TIMEOUT),
            Ok(vec![Ipv4Addr::new(10, 0, 0, 5)])
        );
    }

    #[test]
    fn dns_codec_round_trip() {
        let table = DnsTable::new();
        table.insert("a.b", Ipv4Addr::new(1, 2, 3, 4));
        let query = encode_query(7, "A.B.", DNS_TYPE_A).unwrap();
        let reply = dns_reply(&query, &table).unwrap();
        let response = parse_response(&reply, 7).unwrap();
        assert_eq!(response.rcode, RCODE_NOERROR);
        assert_eq!(response.addresses, [Ipv4Addr::new(1, 2, 3, 4)]);
        assert!(parse_response(&reply, 8).is_none(), "another query's reply");
        assert!(parse_response(&query, 7).is_none(), "not a response");
        // Truncations of a valid reply never panic the parser.
        for len in 0..reply.len() {
            let _ = parse_response(&reply[..len], 7);
            let _ = dns_reply(&query[..len.min(query.len())], &table);
        }
        // A label holding a dot cannot match the name it would spell.
        let mut dotted = encode_query(7, "x", DNS_TYPE_A).unwrap();
        dotted.splice(12..14, *b"\x03a.b");
        assert_eq!(
            rcode_of(&dns_reply(&dotted, &table).unwrap()),
            RCODE_NXDOMAIN
        );

        assert!(encode_query(1, "a..b", DNS_TYPE_A).is_err());
        assert!(encode_query(1, &"a".repeat(64), DNS_TYPE_A).is_err());
        assert!(encode_query(1, &vec!["a".repeat(63); 5].join("."), DNS_TYPE_A).is_err());
    }

    #[test]
    fn dns_table_ignores_case_and_trailing_dot() {
        let table = DnsTable::new();
        assert!(table.is_empty());
        assert_eq!(table.insert("Web.Lab.", Ipv4Addr::new(10, 0, 0, 1)), None);
        assert_eq!(table.lookup("web.lab"), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(table.lookup("WEB.LAB."), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(
            table.insert("web.lab", Ipv4Addr::new(10, 0, 0, 2)),
            Some(Ipv4Addr::new(10, 0, 0, 1))
        );
        assert_eq!(table.len(), 1);
        assert_eq!(table.remove("WEB.lab"), Some(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(table.lookup("web.lab"), None);
    }

    #[test]
    fn stop_frees_the_ports_promptly() {
        let (servers, _) = start(&[
            spec(Protocol::Tcp, App::Plain),
            spec(Protocol::Udp, App::Plain),
            spec(Protocol::Tcp, App::Http),
            spec(Protocol::Udp, App::Dns),
        ]);
        let addrs = servers.local_addrs().to_vec();
        // An idle HTTP client would hold its connection for HTTP_HEAD_DEADLINE.
        let mut idle = TcpStream::connect(addrs[2]).unwrap();
        assert_eventually("the idle connection is served", || {
            servers.live_connections() == 1
        });
        let started = Instant::now();
        servers.stop();
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
        idle.set_read_timeout(Some(TIMEOUT)).unwrap();
        assert!(matches!(idle.read(&mut [0u8; 64]), Ok(0) | Err(_)));

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

        let error = serve(
            &[spec(Protocol::Udp, App::Http)],
            LOOPBACK,
            Arc::new(DnsTable::new()),
        )
        .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn the_connection_cap_holds() {
        let dns = Arc::new(DnsTable::new());
        let servers =
            serve_with_limit(&[spec(Protocol::Tcp, App::Http)], LOOPBACK, dns, 2).unwrap();
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
