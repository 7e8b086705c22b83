//! L7 policy enforcement end to end, as root, on the lab's real traffic: CiliumNetworkPolicy
//! `rules.http` judged per request by the observer's transparent proxy, for HTTP/1.1, HTTP/2
//! and gRPC, with the lab servers' own request logs showing what reached them.
//!
//! The lab (tests/labs/l7.yaml): `shop/web` and `shop/batch` are clients; `shop/api` serves
//! HTTP on 8080, `shop/echo` gRPC on 9000, `shop/store` HTTP on 80.

mod util;

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;
use util::{
    LabGuard, Observer, TempDir, eventually, free_port, http_get, lab_observer, lab_up,
    observe_json, wait_for_revision_after,
};

const LAB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/labs/l7.yaml");
const GRPC_CALL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/grpc_call.py");
/// The virtualenv scripts/setup.sh installs grpcio into.
const PYTHON: &str = "/opt/flowscope/venv/bin/python";
const API: &str = "198.18.7.3:8080";
const ECHO: &str = "198.18.7.4:9000";
const STORE: &str = "198.18.7.5:80";
const WAIT: Duration = Duration::from_secs(15);

/// api takes reads; item updates need an admin role header; orders a token (headerMatches).
const API_RULES: &str = r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: api-reads
  namespace: shop
spec:
  endpointSelector:
    matchLabels: {app: api}
  ingress:
    - fromEndpoints:
        - matchLabels: {app: web}
      toPorts:
        - ports:
            - {port: "8080", protocol: TCP}
          rules:
            http:
              - method: GET
                path: "/api/.*"
              - method: "PUT|PATCH"
                path: "/api/items/[0-9]+"
                headers: ["X-Role: admin"]
              - method: POST
                path: /api/orders
                headerMatches:
                  - {name: X-Token, value: s3cret}
"#;

/// batch may call api at L4, so every request of batch passes whatever api-reads says (rules
/// that admit traffic are OR'd, and this one has no HTTP rules).
const BATCH_L4: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: batch-to-api
  namespace: shop
spec:
  podSelector:
    matchLabels: {app: api}
  policyTypes: [Ingress]
  ingress:
    - from:
        - podSelector:
            matchLabels: {app: batch}
"#;

/// Brings the L7 lab up (removed again when the guard drops) and starts an observer on it
/// enforcing `policies` (file name, text), with `args` added.
fn setup(policies: &[(&str, &str)], args: &[&str]) -> (LabGuard, TempDir, Observer) {
    let guard = lab_up(LAB);
    let dir = TempDir::new("fs-l7");
    for (name, text) in policies {
        std::fs::write(dir.join(name), text).expect("write policy");
    }
    let observer = lab_observer(&dir.display().to_string(), args);
    (guard, dir, observer)
}

/// Writes a policy file and waits until the observer has installed it.
fn rewrite_policy(observer: &Observer, path: &std::path::Path, text: &str) {
    let before = observer.policy_revision();
    std::fs::write(path, text).expect("write policy");
    wait_for_revision_after(observer, before);
}

fn netns(pod: &str) -> String {
    format!("fsl-shop-{pod}")
}

/// A TCP connection opened from inside a lab pod (the socket stays in the pod's namespace).
fn connect(pod: &str, dst: &str) -> TcpStream {
    let dst: SocketAddr = dst.parse().expect("address");
    let s = flowscope_lab::topology::spawn_in(&netns(pod), move || {
        TcpStream::connect_timeout(&dst, Duration::from_secs(3))
    })
    .expect("spawn in pod")
    .join()
    .expect("connect thread")
    .unwrap_or_else(|e| panic!("connecting to {dst}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// One HTTP/1.x response as read off a connection.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads HTTP/1.x responses (framed by Content-Length) from a kept-alive connection.
struct Reader {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Reader {
    fn new(stream: TcpStream) -> Self {
        Reader {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).expect("send");
    }

    /// Sends one request (`request`'s) and reads its response.
    fn ask(&mut self, method: &str, path: &str, extra: &str) -> Response {
        self.send(&request(method, path, extra));
        self.response()
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    fn response(&mut self) -> Response {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(
                self.fill(),
                "connection ended before a response: {:?}",
                self.buf
            );
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("bad status line in {head:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        while self.buf.len() < end + len {
            assert!(self.fill(), "connection ended inside a body");
        }
        let body = self.buf[end..end + len].to_vec();
        self.buf.drain(..end + len);
        Response {
            status,
            headers,
            body,
        }
    }

    /// Whether the server closed the connection (within the read timeout).
    fn closed(&mut self) -> bool {
        self.buf.is_empty() && !self.fill()
    }
}

fn request(method: &str, path: &str, extra: &str) -> Vec<u8> {
    format!("{method} {path} HTTP/1.1\r\nHost: api.shop\r\n{extra}\r\n").into_bytes()
}

/// One request on a fresh connection from `pod`.
fn exchange(pod: &str, dst: &str, method: &str, path: &str, extra: &str) -> Response {
    Reader::new(connect(pod, dst)).ask(method, path, extra)
}

/// Requests the pod's lab server logged, as (method, target).
fn served(pod: &str) -> Vec<(String, String)> {
    flowscope_lab::servers::read_request_log(flowscope_lab::control::request_log_path("shop", pod))
        .expect("request log")
        .into_iter()
        .map(|r| (r.method, r.target))
        .collect()
}

fn observe(observer: &Observer, args: &[&str]) -> Vec<Value> {
    observe_json(&observer.api.to_string(), args)
}

fn proxy_status(observer: &Observer) -> Value {
    observer.status()["proxy"].clone()
}

fn counter(status: &Value, name: &str) -> u64 {
    status[name].as_u64().unwrap_or(0)
}

#[test]
fn http_rules_decide_every_request_and_denied_ones_never_reach_the_server() {
    let metrics = format!("127.0.0.1:{}", free_port());
    let (_lab, _dir, observer) = setup(
        &[
            ("api-reads.yaml", API_RULES),
            ("batch-to-api.yaml", BATCH_L4),
        ],
        &[
            "--metrics-listen",
            &metrics,
            "--metrics",
            "policy,httpV2,flow",
        ],
    );

    // Method and path: GET under /api passes; POST, DELETE, another path do not.
    let ok = exchange("web", API, "GET", "/api/items?page=2", "");
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(
        String::from_utf8_lossy(&ok.body),
        "flowscope-lab 8080: GET /api/items?page=2\n"
    );
    for (method, path) in [
        ("POST", "/api/items"),
        ("DELETE", "/api/items/7"),
        ("GET", "/admin"),
    ] {
        let denied = exchange("web", API, method, path, "");
        assert_eq!(denied.status, 403, "{method} {path}: {denied:?}");
        assert_eq!(denied.body, b"Access denied\r\n", "{denied:?}");
        assert_eq!(
            denied.header("content-type"),
            Some("text/plain"),
            "{denied:?}"
        );
    }
    // Headers: an item update needs X-Role: admin (any case of the name), an order the token.
    assert_eq!(
        exchange("web", API, "PUT", "/api/items/7", "x-role: admin\r\n").status,
        200
    );
    assert_eq!(
        exchange("web", API, "PUT", "/api/items/7", "X-Role: user\r\n").status,
        403
    );
    assert_eq!(
        exchange("web", API, "PATCH", "/api/items/x", "X-Role: admin\r\n").status,
        403
    );
    assert_eq!(
        exchange(
            "web",
            API,
            "POST",
            "/api/orders",
            "X-Token: s3cret\r\nContent-Length: 0\r\n"
        )
        .status,
        200
    );
    assert_eq!(
        exchange(
            "web",
            API,
            "POST",
            "/api/orders",
            "X-Token: guess\r\nContent-Length: 0\r\n"
        )
        .status,
        403
    );
    // batch is admitted at L4 by another policy: its connection never goes through the
    // proxy, and every request passes.
    assert_eq!(
        exchange("batch", API, "DELETE", "/api/items/7", "").status,
        200
    );

    // The server saw exactly the allowed requests.
    let seen = served("api");
    let want: Vec<(String, String)> = [
        ("GET", "/api/items?page=2"),
        ("PUT", "/api/items/7"),
        ("POST", "/api/orders"),
        ("DELETE", "/api/items/7"),
    ]
    .iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    assert_eq!(seen, want, "what api's server received");

    // Flows as Hubble shows them: a request and a response per exchange, the denied request
    // DROPPED naming the policy, its response the proxy's 403.
    let denied = eventually("the denied DELETE's flows", WAIT, || {
        let f = observe(
            &observer,
            &[
                "--http-method",
                "DELETE",
                "--verdict",
                "DROPPED",
                "--last",
                "100",
            ],
        );
        (!f.is_empty()).then_some(f)
    });
    let req = &denied[0];
    assert_eq!(req["Type"], "L7", "{req}");
    assert_eq!(req["l7"]["type"], "REQUEST", "{req}");
    assert_eq!(req["source"]["pod_name"], "web", "{req}");
    assert_eq!(req["destination"]["pod_name"], "api", "{req}");
    assert_eq!(req["traffic_direction"], "INGRESS", "{req}");
    assert_eq!(req["ingress_denied_by"][0]["name"], "api-reads", "{req}");
    assert_eq!(
        req["Summary"], "HTTP/1.1 DELETE http://api.shop/api/items/7",
        "{req}"
    );
    let responses = observe(
        &observer,
        &[
            "--http-status",
            "403",
            "--http-method",
            "DELETE",
            "--last",
            "100",
        ],
    );
    let resp = &responses
        .iter()
        .find(|f| f["source"]["pod_name"] == "api")
        .unwrap_or_else(|| panic!("no 403 response to web's DELETE: {responses:?}"));
    assert_eq!(resp["verdict"], "FORWARDED", "{resp}");
    assert_eq!(resp["l7"]["type"], "RESPONSE", "{resp}");
    assert_eq!(resp["is_reply"], true, "{resp}");
    assert!(
        resp["Summary"]
            .as_str()
            .is_some_and(|s| s.starts_with("HTTP/1.1 403 ")
                && s.ends_with("(DELETE http://api.shop/api/items/7)")),
        "{resp}"
    );
    let allowed = observe(
        &observer,
        &[
            "--http-method",
            "GET",
            "--verdict",
            "FORWARDED",
            "--to-pod",
            "shop/api",
            "--last",
            "100",
        ],
    );
    assert!(
        allowed
            .iter()
            .any(|f| f["l7"]["type"] == "REQUEST"
                && f["ingress_allowed_by"][0]["name"] == "api-reads"),
        "{allowed:?}"
    );
    // The connection's own setup: handed to the proxy (REDIRECTED policy verdict, to-proxy).
    let setup = observe(
        &observer,
        &[
            "--type",
            "policy-verdict",
            "--to-pod",
            "shop/api",
            "--from-pod",
            "shop/web",
            "--last",
            "100",
        ],
    );
    assert!(
        setup.iter().any(|f| f["verdict"] == "REDIRECTED"),
        "{setup:?}"
    );

    // Metrics: the proxy's verdicts as Hubble's l7/http policy verdicts, and its exchanges.
    let scrape = || {
        let (code, body) = http_get(metrics.parse().unwrap(), "/metrics")?;
        (code == 200).then_some(body)
    };
    let body = eventually("the proxy's policy verdicts in the metrics", WAIT, || {
        let body = scrape()?;
        let dropped = util::metric_sum(
            &body,
            "flowscope_policy_verdicts_total{direction=\"ingress\",match=\"l7/http\",action=\"dropped\"",
        );
        (dropped >= 6.0).then_some(body)
    });
    assert!(
        util::metric_sum(
            &body,
            "flowscope_policy_verdicts_total{direction=\"ingress\",match=\"l7/http\",action=\"forwarded\""
        ) >= 3.0,
        "{body}"
    );
    assert!(
        util::metric_sum(
            &body,
            "flowscope_http_requests_total{method=\"DELETE\",protocol=\"HTTP/1.1\",status=\"403\",reporter=\"server\""
        ) >= 1.0,
        "{body}"
    );
    assert!(
        util::metric_sum(&body, "flowscope_proxy_requests_total{verdict=\"dropped\"") >= 6.0,
        "{body}"
    );
}

#[test]
fn kept_alive_and_pipelined_requests_are_judged_one_by_one() {
    let (_lab, _dir, observer) = setup(&[("api-reads.yaml", API_RULES)], &[]);

    // One kept-alive connection: allowed, denied (no body: the connection stays), allowed.
    let mut r = Reader::new(connect("web", API));
    assert_eq!(r.ask("GET", "/api/a", "").status, 200);
    let denied = r.ask("DELETE", "/api/a", "");
    assert_eq!(denied.status, 403);
    assert_ne!(denied.header("connection"), Some("close"), "{denied:?}");
    assert_eq!(r.ask("GET", "/api/b", "").status, 200);

    // Pipelined: three requests in one write, answered in order, each judged on its own.
    let mut p = Reader::new(connect("web", API));
    let mut burst = request("GET", "/api/p1", "");
    burst.extend(request("DELETE", "/api/p2", ""));
    burst.extend(request("GET", "/api/p3", ""));
    p.send(&burst);
    let statuses: Vec<u16> = (0..3).map(|_| p.response().status).collect();
    assert_eq!(statuses, [200, 403, 200]);

    // A denied request with a body: answered at once with Connection: close, the body never
    // read nor forwarded, the connection ended.
    let mut b = Reader::new(connect("web", API));
    b.send(&request("POST", "/api/items", "Content-Length: 100000\r\n"));
    b.send(&[b'x'; 1000]);
    let denied = b.response();
    assert_eq!(denied.status, 403);
    assert_eq!(denied.header("connection"), Some("close"), "{denied:?}");
    assert!(
        b.closed(),
        "the connection stays open after a denied request with a body"
    );

    let targets: Vec<String> = served("api").into_iter().map(|(_, t)| t).collect();
    assert_eq!(targets, ["/api/a", "/api/b", "/api/p1", "/api/p3"]);
    let st = eventually("the proxy's counts", WAIT, || {
        let st = proxy_status(&observer);
        (counter(&st, "requests_denied") == 3).then_some(st)
    });
    assert_eq!(counter(&st, "requests_forwarded"), 4, "{st}");
}

#[test]
fn a_client_port_reused_right_after_the_proxy_closed_its_connection_is_served() {
    let (_lab, dir, observer) = setup(&[("api-reads.yaml", API_RULES)], &[]);
    // The proxy closes a `Connection: close` exchange first, so the node keeps that 4-tuple
    // in TIME_WAIT; a client choosing the same source port again (as busy clients do within
    // the minute) must still reach the proxy, not the old connection's remains. And once a
    // policy change takes the port off the proxy, the same 4-tuple is forwarded to the pod as
    // any other, not caught by the proxy's old socket.
    let dst: SocketAddr = API.parse().unwrap();
    for round in 0..4 {
        if round == 3 {
            rewrite_policy(
                &observer,
                &dir.join("api-reads.yaml"),
                &BATCH_L4.replace("app: batch", "app: web"),
            );
        }
        let s = flowscope_lab::topology::spawn_in(&netns("web"), move || {
            let socket = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::STREAM,
                Some(socket2::Protocol::TCP),
            )?;
            socket.set_reuse_address(true)?;
            socket.bind(&SocketAddr::from(([198, 18, 7, 1], 45_123)).into())?;
            socket.connect_timeout(&dst.into(), Duration::from_secs(3))?;
            Ok::<TcpStream, std::io::Error>(socket.into())
        })
        .unwrap()
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("round {round}: connecting from port 45123 again: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut r = Reader::new(s);
        assert_eq!(
            r.ask("GET", "/api/again", "Connection: close\r\n").status,
            200,
            "round {round}"
        );
        assert!(
            r.closed(),
            "round {round}: the server closes after Connection: close"
        );
    }
    assert_eq!(served("api").len(), 4);
    let st = observer.status();
    assert_eq!(st["proxy"]["connections_total"], 3, "{st}");
}

#[test]
fn an_egress_http_rule_is_enforced_at_the_clients_side() {
    let egress = r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: web-egress
  namespace: shop
spec:
  endpointSelector:
    matchLabels: {app: web}
  egress:
    - toEndpoints:
        - matchLabels: {app: store}
      toPorts:
        - ports:
            - {port: "80", protocol: TCP}
          rules:
            http:
              - method: GET
                path: "/public/.*"
"#;
    let (_lab, _dir, observer) = setup(&[("web-egress.yaml", egress)], &[]);
    assert_eq!(
        exchange("web", STORE, "GET", "/public/logo.png", "").status,
        200
    );
    assert_eq!(
        exchange("web", STORE, "GET", "/private/keys", "").status,
        403
    );
    assert_eq!(exchange("web", STORE, "POST", "/public/x", "").status, 403);
    // store has no policy of its own: batch (no egress rules) reaches anything there.
    assert_eq!(
        exchange("batch", STORE, "GET", "/private/keys", "").status,
        200
    );
    let seen: Vec<String> = served("store").into_iter().map(|(_, t)| t).collect();
    assert_eq!(seen, ["/public/logo.png", "/private/keys"]);
    // Whose rule: web's egress, reported at web.
    let denied = eventually("web's denied request", WAIT, || {
        let f = observe(
            &observer,
            &[
                "--verdict",
                "DROPPED",
                "--protocol",
                "http",
                "--from-pod",
                "shop/web",
                "--last",
                "50",
            ],
        );
        (f.len() >= 2).then_some(f)
    });
    for f in &denied {
        assert_eq!(f["traffic_direction"], "EGRESS", "{f}");
        assert_eq!(f["egress_denied_by"][0]["name"], "web-egress", "{f}");
    }
}

#[test]
fn grpc_calls_are_allowed_or_denied_by_method() {
    let rules = r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: echo-only
  namespace: shop
spec:
  endpointSelector:
    matchLabels: {app: echo}
  ingress:
    - toPorts:
        - ports:
            - {port: "9000", protocol: TCP}
          rules:
            http:
              - method: POST
                path: /flowscope.lab.Echo/Echo
"#;
    let (_lab, _dir, observer) = setup(&[("echo-only.yaml", rules)], &[]);
    let call = |method: &str| {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &netns("web"),
                PYTHON,
                GRPC_CALL,
                ECHO,
                method,
                "ping",
            ])
            .output()
            .expect("run the gRPC client");
        assert!(
            out.status.success(),
            "grpc_call.py (grpcio from scripts/setup.sh): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(call("/flowscope.lab.Echo/Echo"), "OK ping");
    assert_eq!(
        call("/flowscope.lab.Echo/Shout"),
        "PERMISSION_DENIED Access denied"
    );
    let seen = served("echo");
    assert_eq!(
        seen,
        [("POST".to_string(), "/flowscope.lab.Echo/Echo".to_string())]
    );
    let denied = eventually("the denied call's flow", WAIT, || {
        let f = observe(
            &observer,
            &[
                "--http-path",
                "/flowscope.lab.Echo/Shout",
                "--verdict",
                "DROPPED",
                "--last",
                "50",
            ],
        );
        (!f.is_empty()).then_some(f)
    });
    assert_eq!(
        denied[0]["l7"]["http"]["protocol"], "HTTP/2",
        "{}",
        denied[0]
    );
}

#[test]
fn audit_mode_forwards_what_the_rules_would_deny_and_says_so() {
    let (_lab, _dir, observer) = setup(&[("api-reads.yaml", API_RULES)], &["--policy-audit-mode"]);
    assert_eq!(
        exchange("web", API, "DELETE", "/api/items/7", "").status,
        200
    );
    assert_eq!(exchange("web", API, "GET", "/api/items", "").status, 200);
    assert_eq!(
        served("api"),
        [
            ("DELETE".to_string(), "/api/items/7".to_string()),
            ("GET".to_string(), "/api/items".to_string())
        ]
    );
    let audited = eventually("the audited request", WAIT, || {
        let f = observe(
            &observer,
            &["--verdict", "AUDIT", "--protocol", "http", "--last", "50"],
        );
        (!f.is_empty()).then_some(f)
    });
    assert_eq!(
        audited[0]["l7"]["http"]["method"], "DELETE",
        "{}",
        audited[0]
    );
    let forwarded = observe(
        &observer,
        &[
            "--http-method",
            "GET",
            "--verdict",
            "FORWARDED",
            "--protocol",
            "http",
            "--last",
            "50",
        ],
    );
    assert!(
        !forwarded.is_empty(),
        "the allowed GET is FORWARDED, not AUDIT"
    );
}

#[test]
fn a_policy_change_decides_the_next_request_on_an_open_connection() {
    let (_lab, dir, observer) = setup(&[("api-reads.yaml", API_RULES)], &[]);
    let mut r = Reader::new(connect("web", API));
    assert_eq!(r.ask("GET", "/api/items", "").status, 200);
    assert_eq!(r.ask("DELETE", "/api/items", "").status, 403);

    let swapped = API_RULES
        .replace("- method: GET", "- method: DELETE")
        .replace("name: api-reads", "name: api-deletes");
    rewrite_policy(&observer, &dir.join("api-reads.yaml"), &swapped);
    // Same connection, new rules.
    assert_eq!(r.ask("GET", "/api/items", "").status, 403);
    assert_eq!(r.ask("DELETE", "/api/items", "").status, 200);

    // A policy that no longer admits the connection at all: the next request resets it.
    rewrite_policy(
        &observer,
        &dir.join("api-reads.yaml"),
        &API_RULES.replace("app: web", "app: nobody"),
    );
    r.send(&request("GET", "/api/items", ""));
    assert!(
        r.closed(),
        "the connection outlived the policy that admitted it"
    );
    assert_eq!(
        served("api"),
        [
            ("GET".to_string(), "/api/items".to_string()),
            ("DELETE".to_string(), "/api/items".to_string())
        ]
    );
}

#[test]
fn five_hundred_concurrent_connections_are_each_judged() {
    let (_lab, _dir, observer) = setup(&[("api-reads.yaml", API_RULES)], &[]);
    const N: usize = 500;
    // All connections open first, then every request is sent, then every answer read: 500
    // proxied connections at once.
    let mut readers: Vec<Reader> = (0..N).map(|_| Reader::new(connect("web", API))).collect();
    for (i, r) in readers.iter_mut().enumerate() {
        let method = if i % 5 == 0 { "DELETE" } else { "GET" };
        r.send(&request(method, &format!("/api/c{i}"), ""));
    }
    eventually("500 proxied connections at once", WAIT, || {
        let st = proxy_status(&observer);
        (counter(&st, "connections_active") >= N as u64).then_some(())
    });
    for (i, r) in readers.iter_mut().enumerate() {
        let want = if i % 5 == 0 { 403 } else { 200 };
        assert_eq!(r.response().status, want, "connection {i}");
    }
    assert_eq!(served("api").len(), N - N / 5);
}

#[test]
fn bad_input_gets_a_clear_answer_and_never_stalls_other_connections() {
    let (_lab, _dir, observer) = setup(
        &[("api-reads.yaml", API_RULES)],
        &["--proxy-idle-timeout", "2s"],
    );
    let first_line = |raw: &[u8]| {
        let mut s = connect("web", API);
        s.write_all(raw).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        String::from_utf8_lossy(&got)
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    };
    // Not HTTP at all (a TLS ClientHello), a malformed request line, an oversized head.
    assert_eq!(
        first_line(b"\x16\x03\x01\x00\x2f\x01\x00\x00\x2b\x03\x03"),
        "HTTP/1.1 400 Bad Request"
    );
    assert_eq!(first_line(b"GET\r\n\r\n"), "HTTP/1.1 400 Bad Request");
    let mut big = b"GET /api/x HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
    big.extend(vec![b'a'; 70 * 1024]);
    big.extend(b"\r\n\r\n");
    assert_eq!(
        first_line(&big),
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    // HTTP/2 offered by upgrade, not prior knowledge: answered in HTTP/1.1.
    let h2c = exchange(
        "web",
        API,
        "GET",
        "/api/x",
        "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n",
    );
    assert_eq!(h2c.status, 200, "{h2c:?}");

    // A slow client (half a head) and one that leaves mid-body do not hold up others.
    let mut slow = connect("web", API);
    slow.write_all(b"GET /api/slow HTTP/1.1\r\nHost: a\r\nX-Slow:")
        .unwrap();
    let mut gone = connect("web", API);
    gone.write_all(b"GET /api/gone HTTP/1.1\r\nHost: a\r\nContent-Length: 500\r\n\r\nabc")
        .unwrap();
    drop(gone);
    assert_eq!(
        exchange("web", API, "GET", "/api/meanwhile", "").status,
        200
    );
    // The slow one is cut after the idle timeout (2 s here).
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "the slow client kept its connection"
    );

    let st = eventually("the malformed requests counted", WAIT, || {
        let st = proxy_status(&observer);
        (counter(&st, "requests_malformed") >= 4).then_some(st)
    });
    assert_eq!(counter(&st, "connections_active"), 0, "{st}");
    // Each refusal is a flow saying what the client got.
    let refused = eventually("the refusals' flows", WAIT, || {
        let f = observe(
            &observer,
            &["--protocol", "http", "--verdict", "DROPPED", "--last", "50"],
        );
        let codes: Vec<u64> = f
            .iter()
            .filter_map(|f| f["l7"]["http"]["code"].as_u64())
            .collect();
        (codes.contains(&400) && codes.contains(&431)).then_some(codes)
    });
    assert!(
        refused.iter().all(|c| [400, 408, 431].contains(c)),
        "{refused:?}"
    );
    assert!(!served("api").iter().any(|(_, t)| t == "/api/slow"));
}

#[test]
fn connections_that_bypass_the_proxy_are_dropped_and_nothing_is_left_behind() {
    // As the seed's allow-get-only: HTTP rules for every peer, the node included.
    let any_get = r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: api-get-only
  namespace: shop
spec:
  endpointSelector:
    matchLabels: {app: api}
  ingress:
    - toPorts:
        - ports:
            - {port: "8080", protocol: TCP}
          rules:
            http:
              - method: GET
"#;
    let (_lab, _dir, observer) = setup(&[("api-get-only.yaml", any_get)], &[]);
    assert_eq!(exchange("web", API, "GET", "/x", "").status, 200);
    // From the node itself: the connection never enters through a pod's interface, so it
    // cannot be handed to the proxy; the endpoint's interface drops it.
    let dst: SocketAddr = API.parse().unwrap();
    assert!(
        TcpStream::connect_timeout(&dst, Duration::from_secs(2)).is_err(),
        "a connection from the node reached api's HTTP port without the proxy"
    );
    let dropped = eventually("the bypass drop", WAIT, || {
        let f = observe(
            &observer,
            &[
                "--verdict",
                "DROPPED",
                "--to-pod",
                "shop/api",
                "--last",
                "20",
            ],
        );
        f.into_iter()
            .find(|f| f["drop_reason_desc"] == "PROXY_REDIRECTION_NOT_SUPPORTED_FOR_PROTOCOL")
    });
    assert_eq!(dropped["ingress_denied_by"], Value::Null, "{dropped}");
    assert_eq!(dropped["ingress_allowed_by"], Value::Null, "{dropped}");
    eventually("the datapath's proxy failure count", WAIT, || {
        let st = observer.status();
        (st["datapath"]["proxy_failures"].as_u64()? >= 1).then_some(())
    });
    assert_eq!(served("api"), [("GET".to_string(), "/x".to_string())]);

    // The routing rule and table exist while the proxy runs, and go with it.
    let rules = || {
        let out = Command::new("ip").args(["rule", "list"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(rules().contains("lookup 2050"), "{}", rules());
    let early_demux = || std::fs::read_to_string("/proc/sys/net/ipv4/tcp_early_demux").unwrap();
    assert_eq!(
        early_demux().trim(),
        "0",
        "early demux is off while the proxy runs"
    );
    observer.stop();
    assert!(!rules().contains("lookup 2050"), "{}", rules());
    assert_eq!(
        early_demux().trim(),
        "1",
        "early demux is back once the proxy is gone"
    );
    let table = Command::new("ip")
        .args(["route", "show", "table", "2050"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&table.stdout).trim().is_empty(),
        "{}",
        String::from_utf8_lossy(&table.stdout)
    );
}

#[test]
fn http_rules_hold_over_ipv6() {
    // Two test hosts routed through this machine over IPv6 only (the lab is IPv4), one a
    // client pod and one a server pod as an endpoints file describes them.
    // Interfaces named fl6*: no other test's.
    let prefix = "fl6";
    let client = util::TestHost::with_prefix(prefix);
    let server = util::TestHost::with_prefix(prefix);
    for (h, other) in [(&client, &server), (&server, &client)] {
        util::run(
            "ip",
            &[
                "-n",
                &h.netns,
                "-6",
                "route",
                "add",
                &format!("{}/128", other.ns_ip6),
                "via",
                &h.host_ip6,
            ],
        );
        for knob in ["forwarding", "force_forwarding"] {
            // Per-interface: only these two veths forward.
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{}/{knob}", h.host_if), "1");
        }
    }
    let dir = TempDir::new("fs-l7-v6");
    let log = dir.join("server.log");
    let endpoints = serde_json::json!({"endpoints": [
        {"namespace": "shop", "pod_name": "client6", "ips": [client.ns_ip6],
         "labels": {"app": "client6"}, "interface": client.host_if},
        {"namespace": "shop", "pod_name": "server6", "ips": [server.ns_ip6],
         "labels": {"app": "server6"}, "interface": server.host_if},
    ]});
    std::fs::write(dir.join("endpoints.json"), endpoints.to_string()).unwrap();
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(
        dir.join("policies/get-only.yaml"),
        API_RULES
            .replace("app: api", "app: server6")
            .replace("app: web", "app: client6"),
    )
    .unwrap();
    let bind: std::net::IpAddr = server.ns_ip6.parse().unwrap();
    let request_log =
        std::sync::Arc::new(flowscope_lab::servers::RequestLog::open(&log).expect("request log"));
    let _servers = server.run_in(move || {
        flowscope_lab::servers::serve_with(
            &[flowscope_lab::servers::ServeSpec {
                port: 8080,
                protocol: flowscope_lab::servers::Protocol::Tcp,
                app: flowscope_lab::servers::App::Http,
            }],
            bind,
            Default::default(),
            flowscope_lab::servers::ServeOptions {
                request_log: Some(request_log),
                ..Default::default()
            },
        )
        .expect("serve")
    });
    let glob = format!("{prefix}*");
    let observer = Observer::start(&[
        "--interface",
        &glob,
        "--endpoint-interface",
        &glob,
        "--endpoints",
        &dir.join("endpoints.json").display().to_string(),
        "--policy-dir",
        &dir.join("policies").display().to_string(),
    ]);
    let dst = SocketAddr::new(bind, 8080);
    let ask = |method: &'static str| {
        client.run_in(move || {
            let s = TcpStream::connect_timeout(&dst, Duration::from_secs(3)).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut r = Reader::new(s);
            r.ask(method, "/api/items", "").status
        })
    };
    assert_eq!(ask("GET"), 200);
    assert_eq!(ask("DELETE"), 403);
    let served: Vec<(String, String)> = flowscope_lab::servers::read_request_log(&log)
        .unwrap()
        .into_iter()
        .map(|r| {
            assert_eq!(
                r.client.ip().to_string(),
                client.ns_ip6,
                "the client's own address"
            );
            (r.method, r.target)
        })
        .collect();
    assert_eq!(served, [("GET".to_string(), "/api/items".to_string())]);
    let st = observer.status();
    assert_eq!(st["proxy"]["requests_denied"], 1, "{st}");
    let denied = eventually("the IPv6 denied request's flow", WAIT, || {
        let f = observe(&observer, &["--verdict", "DROPPED", "--protocol", "http"]);
        f.into_iter().next()
    });
    assert_eq!(denied["IP"]["ipVersion"], "IPv6", "{denied}");
    assert_eq!(denied["destination"]["pod_name"], "server6", "{denied}");
}
