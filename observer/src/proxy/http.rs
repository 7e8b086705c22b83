//! One redirected connection: hyper serves HTTP/1.x and HTTP/2 with prior knowledge (what gRPC
//! without TLS speaks) on the client's side; each request is judged, then answered here or
//! forwarded to the original destination, and reported as L7 flows.
//!
//! HTTP/1 keeps hyper's behaviour for bad input: an unparsable head is answered `400`, a head
//! over [`MAX_HEAD_BYTES`] `431`, and the connection closed; each is counted and reported.
//! Pipelined requests are served one after another, each judged on its own. A denied request
//! without a body leaves the connection usable; one with a body gets `Connection: close`
//! (its body is never read, and never reaches the server). HTTP/2 streams are judged one by
//! one; a denied stream ends alone. Upgrades (WebSocket, CONNECT) that the rules allow are
//! passed through once the server accepts them; an `h2c` upgrade is not offered to the server
//! (the exchange stays HTTP/1.1, as RFC 9113 lets a server choose).

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use flowscope_common::{FAMILY_IPV4, FAMILY_IPV6, FlowEvent, hook, kind, proxy, verdict};
use flowscope_model::flow::Http;
use flowscope_policy::l7::HttpRequestFields;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version, header};
use http_body_util::{Either, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{net::TcpStream, sync::Notify};
use tracing::debug;

use super::{
    ProxyFlow, ProxyStats, Shared,
    judge::{Judgement, Outcome, Side},
    upstream,
};
use crate::{clock::BootClock, http::HttpMessage};

/// The body of every response the proxy sends: the server's, passed through, or its own.
type ProxyBody = Either<Incoming, Full<Bytes>>;

/// Largest HTTP/1 request head (request line and headers) accepted; a larger one is answered
/// `431 Request Header Fields Too Large`. Envoy's default limit is 60 KiB.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Headers per HTTP/1 request, as Envoy's default (100).
pub const MAX_HEADERS: usize = 100;
/// Concurrent streams per HTTP/2 connection (Envoy's default is 2^31; gRPC servers commonly
/// advertise 100-1000): bounds the work one client connection can start.
pub const MAX_STREAMS: u32 = 1000;
/// Cilium's (Envoy's) body of a denied request.
pub const DENIED_BODY: &[u8] = b"Access denied\r\n";
/// gRPC's PERMISSION_DENIED.
const GRPC_PERMISSION_DENIED: &str = "7";

/// Per-connection state the request handler shares.
struct Conn {
    side: Side,
    client: SocketAddr,
    server: SocketAddr,
    shared: Arc<Shared>,
    /// The connection to the server, opened on the first allowed request.
    upstream: tokio::sync::Mutex<Option<Sender>>,
    /// Requests being handled, so an idle HTTP/2 connection can be told from a busy one.
    in_flight: AtomicUsize,
    /// Boot-clock time of the last byte read or written.
    activity: Arc<AtomicU64>,
    /// Signalled when the policy no longer admits the connection: it is closed at once.
    reset: Notify,
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Incoming>),
    H2(hyper::client::conn::http2::SendRequest<Incoming>),
}

/// Serves one redirected connection until it closes.
pub(crate) async fn serve(stream: TcpStream, client: SocketAddr, side: Side, shared: &Arc<Shared>) {
    // The original destination: the listener is transparent, so it is the accepted socket's
    // local address (never IPv4-mapped: the IPv6 listeners are IPv6-only).
    let Ok(server) = stream.local_addr() else {
        return;
    };
    if server.ip().is_loopback() {
        // A process of this node connected to the listener itself: nothing redirected it,
        // there is nothing to proxy to.
        debug!(%client, "Direct connection to the proxy listener closed");
        return;
    }
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(AtomicU64::new(BootClock::boot_now_ns()));
    let conn = Arc::new(Conn {
        side,
        client,
        server,
        shared: shared.clone(),
        upstream: tokio::sync::Mutex::new(None),
        in_flight: AtomicUsize::new(0),
        activity: activity.clone(),
        reset: Notify::new(),
    });
    let io = TokioIo::new(Watched {
        inner: stream,
        activity,
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.cfg.idle_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .preserve_header_case(true)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(MAX_HEAD_BYTES as u32);
    let handler = conn.clone();
    let service = service_fn(move |req| {
        let conn = handler.clone();
        async move { Ok::<_, Infallible>(conn.handle(req).await) }
    });
    let served = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(served);
    let mut shutdown = shared.shutdown.clone();
    let idle = shared.cfg.idle_timeout;
    let mut check = tokio::time::interval(idle / 4);
    let result = loop {
        tokio::select! {
            r = &mut served => break r,
            () = conn.reset.notified() => {
                ProxyStats::add(&conn.shared.stats.connections_reset, 1);
                return;
            }
            _ = shutdown.changed() => return,
            _ = check.tick() => {
                let quiet = BootClock::boot_now_ns()
                    .saturating_sub(conn.activity.load(Ordering::Relaxed));
                // Later than hyper's own HTTP/1 head timeout (`idle`), which then ends an
                // HTTP/1 connection first and says why; this catches idle HTTP/2 connections.
                if conn.in_flight.load(Ordering::Relaxed) == 0
                    && Duration::from_nanos(quiet) >= idle + idle / 2
                {
                    debug!(%client, "Idle proxy connection closed");
                    return;
                }
            }
        }
    };
    if let Err(err) = result {
        conn.connection_error(&*err);
    }
}

impl Conn {
    async fn handle(self: Arc<Self>, mut req: Request<Incoming>) -> Response<ProxyBody> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let start = BootClock::boot_now_ns();
        let policy = self.shared.policy.borrow().clone();
        let judgement = policy.judge(
            self.side,
            self.client.ip(),
            self.server.ip(),
            self.server.port(),
            &RequestView(&req),
        );
        let stats = &self.shared.stats;
        if judgement.logged_mismatches > 0 {
            ProxyStats::add(
                &stats.header_mismatches_logged,
                judgement.logged_mismatches as u64,
            );
        }
        let fields = RequestFields::of(&req);
        let request_verdict = match judgement.outcome {
            Outcome::Allow => verdict::FORWARDED,
            Outcome::Audit => verdict::AUDIT,
            Outcome::Deny | Outcome::Reset => verdict::DROPPED,
        };
        self.report(&judgement, request_verdict, false, &fields, 0, 0);
        let response = match judgement.outcome {
            Outcome::Reset => {
                // An L3/L4 deny inside the proxy: the connection ends without an answer, as
                // Envoy resets it. This handler never returns; closing the connection drops it.
                ProxyStats::add(&stats.requests_denied, 1);
                self.reset.notify_one();
                std::future::pending::<Response<ProxyBody>>().await
            }
            Outcome::Deny => {
                ProxyStats::add(&stats.requests_denied, 1);
                denied(&req)
            }
            Outcome::Allow | Outcome::Audit => {
                let counter = if judgement.outcome == Outcome::Audit {
                    &stats.requests_audited
                } else {
                    &stats.requests_forwarded
                };
                ProxyStats::add(counter, 1);
                let upgrade = wants_upgrade(&req).then(|| hyper::upgrade::on(&mut req));
                match self.forward(req).await {
                    Ok(mut response) => {
                        if let Some(downstream) = upgrade
                            && upgraded(&fields.method, response.status())
                        {
                            let upstream = hyper::upgrade::on(&mut response);
                            tokio::spawn(splice(downstream, upstream));
                        }
                        response.map(Either::Left)
                    }
                    Err(err) => {
                        ProxyStats::add(&stats.upstream_errors, 1);
                        debug!(client = %self.client, server = %self.server, "Upstream: {err}");
                        unavailable(&fields)
                    }
                }
            }
        };
        // The response's flow: the proxy's own answer or the server's, forwarded.
        let latency = BootClock::boot_now_ns().saturating_sub(start);
        self.report(
            &judgement,
            verdict::FORWARDED,
            true,
            &fields,
            response.status().as_u16(),
            latency,
        );
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        response
    }

    /// Sends the request to the original destination over this connection's upstream
    /// connection, opening (or re-opening) it as needed.
    async fn forward(
        &self,
        mut req: Request<Incoming>,
    ) -> Result<Response<Incoming>, Box<dyn std::error::Error + Send + Sync>> {
        strip_h2c_upgrade(req.headers_mut());
        let h2 = req.version() == Version::HTTP_2;
        let mut guard = self.upstream.lock().await;
        let usable = match guard.as_mut() {
            Some(Sender::H1(s)) => !h2 && s.ready().await.is_ok(),
            Some(Sender::H2(s)) => h2 && s.ready().await.is_ok(),
            None => false,
        };
        if !usable {
            *guard = Some(self.connect(h2).await?);
        }
        match guard.as_mut() {
            // HTTP/1: requests of one connection come one after another, so the lock is held
            // until the response head arrives.
            Some(Sender::H1(s)) => Ok(s.send_request(req).await?),
            Some(Sender::H2(s)) => {
                let mut s = s.clone();
                drop(guard);
                Ok(s.send_request(req).await?)
            }
            None => Err("no upstream connection".into()),
        }
    }

    async fn connect(&self, h2: bool) -> Result<Sender, Box<dyn std::error::Error + Send + Sync>> {
        let stream = upstream::connect(self.client, self.server).await?;
        let io = TokioIo::new(stream);
        if h2 {
            let (sender, connection) =
                hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .handshake(io)
                    .await?;
            tokio::spawn(connection);
            Ok(Sender::H2(sender))
        } else {
            let (sender, connection) = hyper::client::conn::http1::Builder::new()
                .preserve_header_case(true)
                .handshake(io)
                .await?;
            tokio::spawn(connection.with_upgrades());
            Ok(Sender::H1(sender))
        }
    }

    /// A connection hyper gave up on: an unparsable or oversized head (hyper answered it), a
    /// client too slow to send one. Counted, and reported as a response flow with the status
    /// the client got.
    fn connection_error(&self, err: &(dyn std::error::Error + 'static)) {
        debug!(client = %self.client, "Proxy connection ended: {err} ({err:?})");
        let Some(err) = err.downcast_ref::<hyper::Error>() else {
            return;
        };
        let code = if err.is_parse_too_large() {
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        } else if err.is_parse() || err.is_parse_version_h2() {
            StatusCode::BAD_REQUEST
        } else if err.is_timeout() {
            // A head that did not arrive in time: the connection was closed without an
            // answer, so there is no response to report.
            ProxyStats::add(&self.shared.stats.requests_malformed, 1);
            return;
        } else {
            // The client went away mid-request, and the like: nothing to report.
            return;
        };
        ProxyStats::add(&self.shared.stats.requests_malformed, 1);
        let policy = self.shared.policy.borrow().clone();
        let ifindex = match self.side {
            Side::Ingress => policy.local_endpoint(&self.server.ip()),
            Side::Egress => policy.local_endpoint(&self.client.ip()),
        }
        .map_or(0, |e| e.ifindex);
        let judgement = Judgement {
            outcome: Outcome::Deny,
            attribution: None,
            ifindex,
            logged_mismatches: 0,
        };
        let fields = RequestFields {
            method: String::new(),
            url: String::new(),
            protocol: "HTTP/1.1",
        };
        self.report(
            &judgement,
            verdict::DROPPED,
            true,
            &fields,
            code.as_u16(),
            0,
        );
    }

    /// Sends one L7 flow to the pipeline: the request (client to server) or the response
    /// (server to client), at the endpoint whose rules sent the connection here.
    fn report(
        &self,
        judgement: &Judgement,
        verdict: u8,
        response: bool,
        fields: &RequestFields,
        code: u16,
        latency_ns: u64,
    ) {
        let (src, dst) = if response {
            (self.server, self.client)
        } else {
            (self.client, self.server)
        };
        // The direction follows from where the exchange is reported: entering the server's
        // pod (ingress rules) or leaving the client's (egress rules).
        let origin = match self.side {
            Side::Ingress => hook::EGRESS,
            Side::Egress => hook::INGRESS,
        };
        let hook = if response {
            hook::INGRESS + hook::EGRESS - origin
        } else {
            origin
        };
        let mut ev = FlowEvent {
            ts_ns: BootClock::boot_now_ns(),
            ifindex: judgement.ifindex,
            sport: src.port(),
            dport: dst.port(),
            kind: kind::HTTP,
            hook,
            origin_hook: origin,
            proto: 6,
            verdict,
            is_reply: response as u8,
            proxy: match self.side {
                Side::Ingress => proxy::TO_INGRESS,
                Side::Egress => proxy::TO_EGRESS,
            },
            ..FlowEvent::default()
        };
        match (src.ip(), dst.ip()) {
            (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
                ev.family = FAMILY_IPV4;
                ev.saddr[..4].copy_from_slice(&s.octets());
                ev.daddr[..4].copy_from_slice(&d.octets());
            }
            (s, d) => {
                ev.family = FAMILY_IPV6;
                ev.saddr = to_v6(s);
                ev.daddr = to_v6(d);
            }
        }
        let flow = ProxyFlow {
            ev,
            http: HttpMessage {
                response,
                latency_ns,
                http: Http {
                    code: u32::from(code),
                    method: fields.method.clone(),
                    url: fields.url.clone(),
                    protocol: fields.protocol.to_string(),
                    ..Http::default()
                },
            },
            attribution: judgement.attribution.clone(),
        };
        if self.shared.flows.try_send(flow).is_err() {
            ProxyStats::add(&self.shared.stats.flows_lost, 1);
        }
    }
}

fn to_v6(ip: std::net::IpAddr) -> [u8; 16] {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        std::net::IpAddr::V6(v6) => v6.octets(),
    }
}

/// What the flows of an exchange say of its request.
struct RequestFields {
    method: String,
    /// `http://host/path`, as Hubble reports it.
    url: String,
    protocol: &'static str,
}

impl RequestFields {
    fn of<B>(req: &Request<B>) -> Self {
        let view = RequestView(req);
        let target = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let url = match view.host() {
            Some(host) if target.starts_with('/') => format!("http://{host}{target}"),
            _ => target,
        };
        RequestFields {
            method: req.method().as_str().to_string(),
            url,
            protocol: match req.version() {
                Version::HTTP_10 => "HTTP/1.0",
                Version::HTTP_2 => "HTTP/2",
                Version::HTTP_3 => "HTTP/3",
                _ => "HTTP/1.1",
            },
        }
    }
}

/// A request as the policy's matchers read it: `:method`, `:path` (the request target as
/// sent, query included), `:authority` (or `Host`) and the headers.
struct RequestView<'a, B>(&'a Request<B>);

impl<B> HttpRequestFields for RequestView<'_, B> {
    fn method(&self) -> &str {
        self.0.method().as_str()
    }

    fn path(&self) -> &str {
        let uri = self.0.uri();
        match uri.path_and_query() {
            Some(p) => p.as_str(),
            // CONNECT's authority form, `OPTIONS *`.
            None => uri.authority().map_or("", |a| a.as_str()),
        }
    }

    fn host(&self) -> Option<&str> {
        match self.0.uri().authority() {
            Some(a) => Some(a.as_str()),
            None => self
                .0
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok()),
        }
    }

    fn header_values<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.0
            .headers()
            .get_all(name)
            .into_iter()
            .map(HeaderValue::as_bytes)
    }
}

fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The proxy's own answer to a denied request: gRPC's trailers-only PERMISSION_DENIED for a
/// gRPC call (as current Envoy answers), else Cilium's `403 Access denied`.
fn denied(req: &Request<Incoming>) -> Response<ProxyBody> {
    if is_grpc(req) {
        let mut r = Response::new(Either::Right(Full::new(Bytes::new())));
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.insert(
            "grpc-status",
            HeaderValue::from_static(GRPC_PERMISSION_DENIED),
        );
        h.insert("grpc-message", HeaderValue::from_static("Access%20denied"));
        return r;
    }
    let mut r = Response::new(Either::Right(Full::new(Bytes::from_static(DENIED_BODY))));
    *r.status_mut() = StatusCode::FORBIDDEN;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    // HTTP/1: a body still on its way would have to be read before the next request; it is
    // never read, so the connection ends after this answer.
    if req.version() != Version::HTTP_2 && !hyper::body::Body::is_end_stream(req.body()) {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// The answer when the server cannot be reached: 503, as Envoy's "upstream connect error".
fn unavailable(fields: &RequestFields) -> Response<ProxyBody> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from_static(
        b"upstream connect error\r\n",
    ))));
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    if fields.protocol == "HTTP/2" {
        // A gRPC client reads its status from here.
        r.headers_mut()
            .insert("grpc-status", HeaderValue::from_static("14"));
    }
    r
}

/// An HTTP/1 upgrade the server may accept (WebSocket and the like) or a CONNECT tunnel.
fn wants_upgrade<B>(req: &Request<B>) -> bool {
    req.version() != Version::HTTP_2
        && (req.method() == Method::CONNECT
            || req
                .headers()
                .get(header::UPGRADE)
                .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"h2c")))
}

fn upgraded(method: &str, status: StatusCode) -> bool {
    status == StatusCode::SWITCHING_PROTOCOLS || (method == "CONNECT" && status.is_success())
}

/// An `Upgrade: h2c` request is served as the HTTP/1.1 request it also is: the upgrade offer
/// is not passed on, so the server answers in HTTP/1.1 too.
fn strip_h2c_upgrade(headers: &mut HeaderMap) {
    let h2c = headers
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"h2c"));
    if !h2c {
        return;
    }
    headers.remove(header::UPGRADE);
    headers.remove("http2-settings");
    let close = headers.get(header::CONNECTION).is_some_and(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    });
    headers.remove(header::CONNECTION);
    if close {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

/// Joins an upgraded client connection to the upgraded server connection, both ways.
async fn splice(downstream: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (Ok(down), Ok(up)) = tokio::join!(downstream, upstream) else {
        return;
    };
    let mut down = TokioIo::new(down);
    let mut up = TokioIo::new(up);
    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
}

/// The client's socket, noting the time of every read and write (one relaxed store) for the
/// idle timeout.
struct Watched {
    inner: TcpStream,
    activity: Arc<AtomicU64>,
}

impl Watched {
    fn touch(&self) {
        self.activity
            .store(BootClock::boot_now_ns(), Ordering::Relaxed);
    }
}

impl tokio::io::AsyncRead for Watched {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let r = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        if r.is_ready() {
            this.touch();
        }
        r
    }
}

impl tokio::io::AsyncWrite for Watched {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = std::pin::Pin::new(&mut this.inner).poll_write(cx, buf);
        if r.is_ready() {
            this.touch();
        }
        r
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = std::pin::Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if r.is_ready() {
            this.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
