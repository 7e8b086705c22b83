//! The HTTP side of the lab's servers: hyper serving HTTP/1.1 and HTTP/2 with prior knowledge
//! (h2c) on one port, through hyper-util's `auto` builder, for the `http` and `grpc` apps.
//!
//! An `http` port answers every method and path with `200 OK` and a short, deterministic body
//! naming the port, the method and the target (`flowscope-lab 8080: GET /api/items\n`); a `grpc`
//! port hands its requests to `grpc`. Both record every request in the pod's request log before
//! answering it.
//!
//! Bounds, so that no client holds a connection slot (see [`super::MAX_CONNECTIONS`]) forever:
//! hyper's own limits on an HTTP/1 head (size, header count, and time: the time also bounds how
//! long a keep-alive connection waits for its next request), and a watchdog per connection for
//! what hyper does not bound: a connection must start its first request within
//! [`HTTP_HEAD_DEADLINE`] (whatever its protocol, and before hyper has even told HTTP/1 from
//! HTTP/2), and an HTTP/2 connection with no request for [`CONNECTION_IDLE`] is shut down
//! gracefully (GOAWAY).

use std::{
    convert::Infallible,
    net::SocketAddr,
    pin::pin,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited, combinators::UnsyncBoxBody};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{net::TcpStream, sync::OwnedSemaphorePermit, time::Instant};

use super::{
    App, grpc,
    request_log::{Entry, RequestLog},
};

/// The body of every response the lab's HTTP and gRPC servers send.
pub(super) type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Time allowed for a request head (HTTP/1: from when the server starts waiting for it, so it is
/// also how long an idle keep-alive connection stays open), and for a new connection to start
/// its first request. A slow client (slowloris) holds a connection for at most this long.
const HTTP_HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// Time allowed for a request body after its head.
const HTTP_BODY_DEADLINE: Duration = Duration::from_secs(5);
/// The largest HTTP/1 request head accepted (common servers use 8 KiB too; it is also the
/// smallest read buffer hyper allows), and the largest HTTP/2 header list.
const MAX_HTTP_HEAD: usize = 8 * 1024;
/// The most header lines in one HTTP/1 request.
const MAX_HTTP_HEADERS: usize = 64;
/// The largest request body read (and discarded) on an `http` port; the lab's probes send none.
const MAX_HTTP_BODY: usize = 64 * 1024;
/// How long an HTTP/2 connection may go without a request before it is shut down: long enough
/// for a client (or the observer's proxy) to reuse a connection between requests, as HTTP/2
/// clients do, and a bound on idle connections all the same.
const CONNECTION_IDLE: Duration = Duration::from_secs(60);
/// Concurrent requests on one HTTP/2 connection (the value most servers advertise).
const MAX_H2_STREAMS: u32 = 100;
/// After a graceful shutdown begins, how long the connection may take to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// One `http` or `grpc` port.
pub(super) struct HttpServer {
    app: App,
    local: SocketAddr,
    request_log: Option<Arc<RequestLog>>,
    builder: auto::Builder<TokioExecutor>,
}

impl HttpServer {
    pub fn new(app: App, local: SocketAddr, request_log: Option<Arc<RequestLog>>) -> Arc<Self> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HTTP_HEAD_DEADLINE)
            .max_buf_size(MAX_HTTP_HEAD)
            .max_headers(MAX_HTTP_HEADERS)
            // As the lab's servers always wrote them, and as most servers do on HTTP/1.
            .title_case_headers(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(MAX_HTTP_HEAD).unwrap_or(u32::MAX))
            .max_concurrent_streams(MAX_H2_STREAMS);
        Arc::new(Self {
            app,
            local,
            request_log,
            builder,
        })
    }

    /// Serves one connection until the client leaves, a limit ends it, or the servers stop
    /// (which drops this future, and the connection with it).
    pub async fn serve(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        _permit: OwnedSemaphorePermit,
    ) {
        let activity = Arc::new(Activity::new(Instant::now()));
        let service = {
            let server = Arc::clone(&self);
            let activity = Arc::clone(&activity);
            service_fn(move |request| {
                let server = Arc::clone(&server);
                let in_flight = Activity::begin(&activity);
                async move {
                    let response = server.respond(request, peer).await;
                    drop(in_flight);
                    Ok::<_, Infallible>(response)
                }
            })
        };
        let mut connection = pin!(self.builder.serve_connection(TokioIo::new(stream), service));
        let mut check = Instant::now() + HTTP_HEAD_DEADLINE;
        loop {
            tokio::select! {
                // Errors concern this client only (it left, or sent something hyper refused
                // and was told so).
                _ = connection.as_mut() => return,
                () = tokio::time::sleep_until(check) => {
                    match activity.next_check(Instant::now()) {
                        Some(next) => check = next,
                        None => break,
                    }
                }
            }
        }
        connection.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection).await;
    }

    async fn respond(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let target = request
            .uri()
            .path_and_query()
            .map_or_else(|| request.uri().to_string(), |target| target.to_string());
        if let Some(log) = &self.request_log {
            log.record(&Entry {
                client: peer,
                version: version_name(request.version()),
                method: request.method().as_str(),
                target: &target,
                server: self.local,
                app: self.app,
            });
        }
        match self.app {
            App::Grpc => grpc::respond(request, self.local.port()).await,
            App::Http | App::Plain | App::Dns => self.answer(request, &target).await,
        }
    }

    /// `200 OK` naming the port, method and target, once the body (if any) has been read: so
    /// that clients that finish sending before they read are served too.
    async fn answer(&self, request: Request<Incoming>, target: &str) -> Response<Body> {
        let port = self.local.port();
        let method = request.method().clone();
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|length| length.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > MAX_HTTP_BODY as u64) {
            return text_response(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
        }
        let body = Limited::new(request.into_body(), MAX_HTTP_BODY);
        match tokio::time::timeout(HTTP_BODY_DEADLINE, body.collect()).await {
            Err(_) => text_response(
                StatusCode::REQUEST_TIMEOUT,
                "request body not received in time\n",
            ),
            Ok(Err(e)) if e.is::<LengthLimitError>() => {
                text_response(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n")
            }
            Ok(Err(_)) => text_response(StatusCode::BAD_REQUEST, "incomplete request body\n"),
            Ok(Ok(_)) => text_response(
                StatusCode::OK,
                format!("flowscope-lab {port}: {method} {target}\n"),
            ),
        }
    }
}

/// A plain-text response, as every non-gRPC answer of the lab is.
pub(super) fn text_response(status: StatusCode, text: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(text.into()).boxed_unsync());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::SERVER, HeaderValue::from_static("flowscope-lab"));
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

/// The version as the request log writes it.
fn version_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/?",
    }
}

/// What the watchdog of one connection knows: requests in flight, and since when it has had
/// none.
#[derive(Debug)]
struct Activity {
    state: Mutex<ActivityState>,
}

#[derive(Debug)]
struct ActivityState {
    in_flight: usize,
    /// Since when no request has been in flight (the accept, at first).
    idle_since: Instant,
    /// Whether a request ever arrived.
    served: bool,
}

/// A request in flight, until dropped.
struct InFlight(Arc<Activity>);

impl Activity {
    fn new(now: Instant) -> Self {
        Self {
            state: Mutex::new(ActivityState {
                in_flight: 0,
                idle_since: now,
                served: false,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        // Each critical section is a few assignments; a poisoned lock holds consistent values.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn begin(activity: &Arc<Self>) -> InFlight {
        let mut state = activity.state();
        state.in_flight += 1;
        state.served = true;
        InFlight(Arc::clone(activity))
    }

    /// When to look again, or `None` when the connection has been idle for too long: no request
    /// within [`HTTP_HEAD_DEADLINE`] of the accept, or none for [`CONNECTION_IDLE`] since the
    /// last. A request in flight bounds itself (its body has a deadline), so look again later.
    fn next_check(&self, now: Instant) -> Option<Instant> {
        let state = self.state();
        if state.in_flight > 0 {
            return Some(now + HTTP_HEAD_DEADLINE);
        }
        let window = if state.served {
            CONNECTION_IDLE
        } else {
            HTTP_HEAD_DEADLINE
        };
        let until = state.idle_since + window;
        (until > now).then_some(until)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.idle_since = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read as _, Write as _},
        net::TcpStream,
        time::Instant as StdInstant,
    };

    use hyper_util::rt::TokioExecutor;

    use super::{
        super::{
            Protocol, ServeOptions, grpc_request, http_request, read_request_log, test_util::*,
        },
        *,
    };

    #[test]
    fn answers_every_method_and_path() {
        let (servers, _) = start(&[spec(Protocol::Tcp, App::Http)]);
        let addr = servers.local_addrs()[0];
        let port = addr.port();
        for method in ["GET", "POST", "DELETE", "PUT", "OPTIONS", "PATCH"] {
            let result = http_request(addr, method, "/api/items?id=7", TIMEOUT);
            assert_eq!(
                (result.connected, result.detail.as_str()),
                (true, "200 OK"),
                "{method}"
            );
            assert_ne!(result.source_port, 0);
        }

        let response = exchange(
            addr,
            b"GET /a/b?c=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(
            response.contains("\r\nContent-Type: text/plain\r\n"),
            "{response}"
        );
        assert!(
            response.contains("\r\nServer: flowscope-lab\r\n"),
            "{response}"
        );
        assert!(response.contains("\r\nConnection: close\r\n"), "{response}");
        let body = format!("flowscope-lab {port}: GET /a/b?c=1\n");
        assert!(response.contains(&format!("\r\nContent-Length: {}\r\n", body.len())));
        assert!(response.ends_with(&format!("\r\n\r\n{body}")), "{response}");

        let response = exchange(
            addr,
            b"POST /submit HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        );
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.ends_with(&format!("flowscope-lab {port}: POST /submit\n")));

        // HTTP/1.0 closes after the answer; bare LF line ends are read too.
        let response = exchange(addr, b"DELETE /items/7 HTTP/1.0\n\n");
        assert!(response.ends_with(&format!("flowscope-lab {port}: DELETE /items/7\n")));

        // HEAD: the length of the body, but no body.
        let response = exchange(
            addr,
            b"HEAD /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.ends_with("\r\n\r\n"), "{response}");
        assert_eq!(http_request(addr, "HEAD", "/x", TIMEOUT).detail, "200 OK");

        // A chunked body is read, so the answer arrives intact.
        let response = exchange(
            addr,
            b"PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
              5\r\nhello\r\n0\r\n\r\n",
        );
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    }

    #[test]
    fn keeps_connections_alive() {
        let (servers, _) = start(&[spec(Protocol::Tcp, App::Http)]);
        let addr = servers.local_addrs()[0];
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let read_response = |stream: &mut TcpStream| {
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while !String::from_utf8_lossy(&got).ends_with('\n')
                || !String::from_utf8_lossy(&got).contains("\r\n\r\n")
            {
                let n = stream.read(&mut buf).unwrap();
                assert_ne!(n, 0, "closed after {}", String::from_utf8_lossy(&got));
                got.extend_from_slice(&buf[..n]);
            }
            String::from_utf8(got).unwrap()
        };
        for path in ["/one", "/two"] {
            write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let response = read_response(&mut stream);
            assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
            assert!(response.ends_with(&format!(": GET {path}\n")), "{response}");
        }
        assert_eq!(servers.live_connections(), 1);
    }

    #[test]
    fn rejects_malformed_requests_and_keeps_serving() {
        let (servers, _) = start(&[spec(Protocol::Tcp, App::Http)]);
        let addr = servers.local_addrs()[0];
        let big_header = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HTTP_HEAD));
        let many_headers = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "A: b\r\n".repeat(MAX_HTTP_HEADERS + 1)
        );
        // hyper's answers: 400 for what it cannot parse (its parser is strict where leniency
        // lets a request be read two ways: spaces, a space before a colon, two lengths), 431 for
        // a head too large, 413 (ours) for a body too large.
        let cases: [(&[u8], &str); 13] = [
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
                "400 Bad Request",
            ),
            (b"GET / HTTP/2.0\r\n\r\n", "400 Bad Request"),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 65537\r\nConnection: close\r\n\r\n",
                "413 Payload Too Large",
            ),
            (big_header.as_bytes(), "431 Request Header Fields Too Large"),
            (
                many_headers.as_bytes(),
                "431 Request Header Fields Too Large",
            ),
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
    fn serves_http2_with_prior_knowledge_on_the_same_port() {
        let log_path = TempPath::new("h2c");
        let options = ServeOptions {
            request_log: Some(Arc::new(RequestLog::open(&log_path.0).unwrap())),
            ..ServeOptions::default()
        };
        let (servers, _) = start_with(&[spec(Protocol::Tcp, App::Http)], options);
        let addr = servers.local_addrs()[0];
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (client_port, status, version, body) = runtime.block_on(async {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let client_port = stream.local_addr().unwrap().port();
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(connection);
            let request = Request::get(format!("http://{addr}/api/items?id=7"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            let (status, version) = (response.status(), response.version());
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (client_port, status, version, body)
        });
        assert_eq!((status, version), (StatusCode::OK, Version::HTTP_2));
        assert_eq!(
            body,
            format!("flowscope-lab {}: GET /api/items?id=7\n", addr.port())
        );
        // The HTTP/1.1 probe on the same port, then the log of both.
        let probe = http_request(addr, "POST", "/api/orders", TIMEOUT);
        assert_eq!(probe.detail, "200 OK");
        let logged = read_request_log(&log_path.0).unwrap();
        let seen: Vec<(u16, &str, &str, &str, SocketAddr, App)> = logged
            .iter()
            .map(|r| {
                (
                    r.client.port(),
                    r.version.as_str(),
                    r.method.as_str(),
                    r.target.as_str(),
                    r.server,
                    r.app,
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (
                    client_port,
                    "HTTP/2",
                    "GET",
                    "/api/items?id=7",
                    addr,
                    App::Http
                ),
                (
                    probe.source_port,
                    "HTTP/1.1",
                    "POST",
                    "/api/orders",
                    addr,
                    App::Http
                ),
            ]
        );
    }

    #[test]
    fn logs_every_request_before_answering() {
        let log_path = TempPath::new("before");
        let options = ServeOptions {
            request_log: Some(Arc::new(RequestLog::open(&log_path.0).unwrap())),
            ..ServeOptions::default()
        };
        let (servers, _) = start_with(
            &[
                spec(Protocol::Tcp, App::Http),
                spec(Protocol::Tcp, App::Grpc),
            ],
            options,
        );
        let (http, grpc) = (servers.local_addrs()[0], servers.local_addrs()[1]);
        for i in 0..20 {
            let path = format!("/items/{i}");
            assert_eq!(http_request(http, "GET", &path, TIMEOUT).detail, "200 OK");
            // Read right after the answer: the line is already there.
            let logged = read_request_log(&log_path.0).unwrap();
            assert_eq!(logged.len(), 2 * i + 1);
            assert_eq!(logged[2 * i].target, path);

            let (result, _) = grpc_request(grpc, "/lab.Echo/Say", b"x", TIMEOUT);
            assert_eq!(result.detail, "OK");
            let logged = read_request_log(&log_path.0).unwrap();
            let last = &logged[2 * i + 1];
            assert_eq!(
                (
                    last.version.as_str(),
                    last.method.as_str(),
                    last.target.as_str(),
                    last.server,
                    last.app
                ),
                ("HTTP/2", "POST", "/lab.Echo/Say", grpc, App::Grpc)
            );
            assert_eq!(last.client.port(), result.source_port);
        }
        // Requests hyper refused before they were requests are not logged.
        exchange(http, b"garbage\r\n\r\n");
        assert_eq!(read_request_log(&log_path.0).unwrap().len(), 40);
    }

    #[test]
    fn slow_and_silent_clients_are_cut_off() {
        let (servers, _) = start(&[
            spec(Protocol::Tcp, App::Http),
            spec(Protocol::Tcp, App::Grpc),
        ]);
        let addrs = servers.local_addrs().to_vec();
        let started = StdInstant::now();
        let clients: Vec<(&str, TcpStream)> = [
            ("silent", addrs[0], &b""[..]),
            (
                "half an HTTP/1 head",
                addrs[0],
                b"GET / HTTP/1.1\r\nHost: x\r\n",
            ),
            ("half an HTTP/2 preface", addrs[1], b"PRI * HTTP/2.0\r\n"),
            (
                "an HTTP/2 preface, no request",
                addrs[1],
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            ),
        ]
        .into_iter()
        .map(|(what, addr, sent)| {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.write_all(sent).unwrap();
            stream
                .set_read_timeout(Some(HTTP_HEAD_DEADLINE + Duration::from_secs(3)))
                .unwrap();
            (what, stream)
        })
        .collect();
        for (what, mut stream) in clients {
            // Whatever the server says (an HTTP/2 SETTINGS frame, a GOAWAY), it then closes.
            let mut got = Vec::new();
            let closed = stream.read_to_end(&mut got);
            assert!(
                !matches!(&closed, Err(e) if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )),
                "{what}: still open after {:?}",
                started.elapsed()
            );
            assert!(
                started.elapsed() >= HTTP_HEAD_DEADLINE - Duration::from_millis(100),
                "{what}: cut off early, after {:?}",
                started.elapsed()
            );
        }
        assert_eventually("the slots are free", || servers.live_connections() == 0);
    }

    #[test]
    fn idle_connections_are_closed_on_time() {
        let start = Instant::now();
        let activity = Arc::new(Activity::new(start));
        // No request yet: the first must start within the head deadline.
        assert_eq!(activity.next_check(start), Some(start + HTTP_HEAD_DEADLINE));
        assert_eq!(activity.next_check(start + HTTP_HEAD_DEADLINE), None);
        // A request in flight keeps it open.
        let in_flight = Activity::begin(&activity);
        let later = start + Duration::from_secs(30);
        assert_eq!(activity.next_check(later), Some(later + HTTP_HEAD_DEADLINE));
        // Once answered, it may idle for CONNECTION_IDLE.
        drop(in_flight);
        let idle_since = activity.state().idle_since;
        let until = idle_since + CONNECTION_IDLE;
        assert_eq!(activity.next_check(idle_since), Some(until));
        assert_eq!(activity.next_check(until), None);
    }
}
