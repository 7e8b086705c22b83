//! The client side: probes that open one connection or send one datagram from the calling
//! thread (so from the pod whose namespace it is in) and report what happened.
//!
//! Each binds an ephemeral port *before* connecting and reports it, so the caller can match the
//! probe to the flow the observer reports, including probes that a policy dropped, where no
//! connection ever exists. They block (with a bound on time): the runner and the connectivity
//! tester call them from threads inside source pods. The gRPC probe runs hyper's HTTP/2 client
//! on a small runtime of its own for the length of the call, so it must not be called from
//! async code (use `spawn_blocking`, or a pod thread).

use std::{
    hash::{BuildHasher as _, RandomState},
    io::{self, Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use simple_dns::{RCODE, TYPE};

use super::{
    dns::{self, DnsResponse},
    grpc::{self, Decoder, GRPC_CONTENT_TYPE, MAX_GRPC_MESSAGE, grpc_code_name},
};

/// What TCP and UDP probes send. It ends with a newline so the plain TCP server answers at once.
const PROBE_LINE: &[u8] = b"flowscope-lab probe\n";
/// The most answer bytes a probe reads; it only reports the first line or the status line.
const MAX_PROBE_ANSWER: usize = 64 * 1024;
/// The longest `detail` a probe reports from what a server sent.
const MAX_DETAIL: usize = 200;
/// The most header lines read in an HTTP response.
const MAX_RESPONSE_HEADERS: usize = 64;
/// How long the gRPC probe waits for its connection to close cleanly after the answer.
const GRPC_CLOSE_GRACE: Duration = Duration::from_millis(200);

/// What one probe saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    /// TCP: the handshake completed. UDP and DNS: a reply came back.
    pub connected: bool,
    /// The probe's local port, known even when nothing answered (0 only if no socket could be
    /// bound), to match the probe with the flow the observer reports.
    pub source_port: u16,
    /// What happened: the server's answer line, the HTTP status ("200 OK"), the DNS response
    /// code, the gRPC status ("OK"), or why it failed ("connection refused", "timed out",
    /// "port unreachable").
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
/// bind before connecting; socket2 can.
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

/// Time left until `deadline`, or `None` once it has passed.
fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
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

/// Sends one HTTP/1.1 request (no body, `Connection: close`, so one request is one
/// connection, and one flow) and reads the response. `connected` is the TCP handshake; `detail`
/// is the status ("200 OK") or what went wrong ("connection refused", "response timed out").
/// The whole exchange takes at most about `timeout`. A method or path that would not make a
/// valid request line is refused before any packet is sent.
pub fn http_request(dst: SocketAddr, method: &str, path: &str, timeout: Duration) -> ProbeResult {
    if Method::from_bytes(method.as_bytes()).is_err() {
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
    let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(head)) = response.parse(got) else {
        return false;
    };
    if head_only {
        return true;
    }
    let length = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        });
    length.is_some_and(|length| got.len() >= head + length)
}

/// Resolves `name` (A records) with one query to `server`: the addresses on NOERROR (possibly
/// none), otherwise the response code ("NXDOMAIN") or what went wrong ("timed out", "port
/// unreachable") as the error.
pub fn dns_query(
    server: SocketAddr,
    name: &str,
    timeout: Duration,
) -> Result<Vec<Ipv4Addr>, String> {
    match dns_exchange(server, name, TYPE::A, timeout).1 {
        Ok(response) if response.rcode == RCODE::NoError => Ok(response.addresses),
        Ok(response) => Err(dns::rcode_name(response.rcode)),
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
    match dns_exchange(server, name, TYPE::A, timeout) {
        (source_port, Ok(response)) => (
            ProbeResult::answered(source_port, dns::rcode_name(response.rcode)),
            response.addresses,
        ),
        (source_port, Err(e)) => (ProbeResult::failed(source_port, e), Vec::new()),
    }
}

/// Sends one query and waits for the reply carrying its ID; returns the source port beside it.
pub(super) fn dns_exchange(
    server: SocketAddr,
    name: &str,
    qtype: TYPE,
    timeout: Duration,
) -> (u16, Result<DnsResponse, String>) {
    let deadline = Instant::now() + timeout;
    // A fresh ID per query, without a random number crate: RandomState is seeded randomly.
    let id = RandomState::new().hash_one(Instant::now()) as u16;
    let query = match dns::encode_query(id, name, qtype) {
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
        if let Some(response) = buf
            .get(..len)
            .and_then(|reply| dns::parse_response(reply, id))
        {
            return (source_port, Ok(response));
        }
    }
}

/// What a gRPC server (or whatever stood in its way) answered one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcResponse {
    /// The HTTP status: 200 for every gRPC answer, errors included.
    pub http_status: u16,
    /// From the trailers, or from the headers of a trailers-only answer; `None` when the
    /// answer carried none (it was not gRPC: a 403 from a proxy, an HTTP server).
    pub grpc_status: Option<u32>,
    /// `grpc-message`, decoded.
    pub grpc_message: Option<String>,
    /// The response messages, concatenated (the echo server sends one); `None` when the body
    /// held no well-formed gRPC message.
    pub message: Option<Vec<u8>>,
}

/// Calls gRPC method `path` (`/package.Service/Method`) on `dst` over HTTP/2 without TLS (prior
/// knowledge), sending `message` (at most [`MAX_GRPC_MESSAGE`] bytes) as the one request
/// message, on a connection of its own that is closed afterwards. `connected` is the TCP
/// handshake; `detail` is the gRPC status name ("OK", "PERMISSION_DENIED"), the HTTP status when
/// the answer was not gRPC ("403 Forbidden"), or what went wrong ("connection refused",
/// "response timed out"). The whole call takes at most about `timeout`. Blocking: see the
/// module documentation.
pub fn grpc_request(
    dst: SocketAddr,
    path: &str,
    message: &[u8],
    timeout: Duration,
) -> (ProbeResult, Option<GrpcResponse>) {
    if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
        return (
            ProbeResult::failed(0, format!("invalid request: path {path:?}")),
            None,
        );
    }
    if message.len() > MAX_GRPC_MESSAGE {
        return (
            ProbeResult::failed(
                0,
                format!("invalid request: a message over {MAX_GRPC_MESSAGE} bytes"),
            ),
            None,
        );
    }
    let deadline = Instant::now() + timeout;
    let (stream, source_port) = match connect_tcp(dst, timeout) {
        Ok(connected) => connected,
        Err(result) => return (result, None),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            return (
                ProbeResult::answered(source_port, format!("runtime: {e}")),
                None,
            );
        }
    };
    let left = remaining(deadline).unwrap_or(Duration::ZERO);
    let outcome = runtime.block_on(async {
        tokio::time::timeout(left, grpc_exchange(stream, dst, path, message)).await
    });
    match outcome {
        Err(_) => (
            ProbeResult::answered(source_port, "response timed out"),
            None,
        ),
        Ok(Err(detail)) => (ProbeResult::answered(source_port, detail), None),
        Ok(Ok(response)) => {
            let detail = match response.grpc_status {
                Some(code) => grpc_code_name(code)
                    .map_or_else(|| format!("grpc-status {code}"), str::to_owned),
                None if response.http_status == 200 => "200 OK, no grpc-status".into(),
                None => StatusCode::from_u16(response.http_status)
                    .map_or_else(|_| response.http_status.to_string(), |s| s.to_string()),
            };
            (ProbeResult::answered(source_port, detail), Some(response))
        }
    }
}

/// The call itself, on the probe's runtime; the error is the probe's `detail`.
async fn grpc_exchange(
    stream: TcpStream,
    dst: SocketAddr,
    path: &str,
    message: &[u8],
) -> Result<GrpcResponse, String> {
    let no_response = |e: hyper::Error| format!("no response ({})", describe_hyper(&e));
    stream
        .set_nonblocking(true)
        .map_err(|e| format!("socket: {e}"))?;
    let stream = tokio::net::TcpStream::from_std(stream).map_err(|e| format!("socket: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(TokioIo::new(stream))
        .await
        .map_err(no_response)?;
    let connection = tokio::spawn(connection);
    let request = Request::post(format!("http://{dst}{path}"))
        .header(header::CONTENT_TYPE, GRPC_CONTENT_TYPE)
        .header(header::TE, "trailers")
        .header(header::USER_AGENT, "flowscope-lab")
        .body(Full::new(grpc::encode_frame(message)))
        .map_err(|e| format!("invalid request: {e}"))?;
    let response = sender.send_request(request).await.map_err(no_response)?;
    let (parts, body) = response.into_parts();
    // Room for the largest message and its framing; a larger body is not the echo server's.
    let collected = Limited::new(body, MAX_GRPC_MESSAGE + 64 * 1024)
        .collect()
        .await
        .map_err(|e| format!("no response ({e})"))?;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let data = collected.to_bytes();
    // Dropping the last sender lets the client close the connection cleanly (GOAWAY, FIN),
    // rather than with a reset when the runtime goes.
    drop(sender);
    let _ = tokio::time::timeout(GRPC_CLOSE_GRACE, connection).await;

    let field = |name: &str| {
        [&trailers, &parts.headers]
            .into_iter()
            .find_map(|headers: &HeaderMap| headers.get(name)?.to_str().ok())
    };
    let is_grpc = grpc::is_grpc_content_type(&parts.headers);
    Ok(GrpcResponse {
        http_status: parts.status.as_u16(),
        grpc_status: field("grpc-status").and_then(|code| code.parse().ok()),
        grpc_message: field("grpc-message").map(grpc::percent_decode),
        message: is_grpc.then(|| decode_messages(&data)).flatten(),
    })
}

/// The messages of a gRPC body, concatenated; `None` if there are none or they are malformed.
fn decode_messages(data: &Bytes) -> Option<Vec<u8>> {
    let mut decoder = Decoder::default();
    decoder.push(data).ok()?;
    decoder.finish().ok().map(|messages| messages.to_vec())
}

/// A hyper client error in the probes' words: the socket error under it when there is one.
fn describe_hyper(error: &hyper::Error) -> String {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            return describe(io);
        }
        source = cause.source();
    }
    if error.is_incomplete_message() || error.is_closed() {
        return "connection closed".into();
    }
    error.to_string()
}

#[cfg(test)]
mod tests {
    use std::{net::TcpListener, thread};

    use super::{super::test_util::*, *};

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

    #[track_caller]
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
        let (result, response) = grpc_request(addr, "/lab.Echo/Say", b"", timeout);
        assert_bounded(started, timeout);
        assert_eq!(
            (result.connected, result.detail.as_str(), response),
            (true, "response timed out", None)
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
    fn http_request_refuses_to_send_invalid_request_lines() {
        let result = http_request(closed_tcp_port(), "GE T", "/", TIMEOUT);
        assert!(!result.connected);
        assert!(result.detail.starts_with("invalid request"), "{result:?}");
        let result = http_request(closed_tcp_port(), "GET", "/a\r\nX: y", TIMEOUT);
        assert!(result.detail.starts_with("invalid request"), "{result:?}");
    }

    #[test]
    fn responses_are_complete_by_their_length() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n";
        assert!(!response_complete(&head[..10], false));
        assert!(!response_complete(head, false));
        assert!(response_complete(head, true));
        assert!(response_complete(&[&head[..], b"abc"].concat(), false));
        assert!(!response_complete(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabc",
            false
        ));
    }
}
