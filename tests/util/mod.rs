//! Helpers for the privileged end-to-end tests: test hosts in network namespaces, a running
//! observer, and a WebSocket client for its API. Everything made here is removed on drop, also
//! when the test fails.
#![allow(dead_code)]

pub mod certs;
pub mod hubble;
pub mod prom;

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// Runs a command and fails the test with its stderr if it fails.
pub fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A per-test suffix: the process id and a counter keep parallel tests (and parallel test
/// binaries) from colliding on names.
pub fn unique() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{:x}{}",
        std::process::id() & 0xffff,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A test host: a network namespace joined to the host by a veth pair.
/// Host side `<host_if>` has `host_ip`, the namespace side `eth0` has `ns_ip` (both in a /24 of
/// 198.19.0.0/16), and IPv6 `2001:db8:1:<n>::1` / `::2` (/64).
pub struct TestHost {
    /// The claim on this host's subnet, released on drop.
    subnet_claim: std::path::PathBuf,
    pub netns: String,
    pub host_if: String,
    pub host_ip: Ipv4Addr,
    pub ns_ip: Ipv4Addr,
    pub host_ip6: String,
    pub ns_ip6: String,
}

impl TestHost {
    pub fn new() -> TestHost {
        Self::with_prefix("fsh")
    }

    /// A host whose host-side interface name starts with `prefix` (at most 5 characters), so a
    /// test can watch it by glob.
    pub fn with_prefix(prefix: &str) -> TestHost {
        let id = unique();
        let (n, subnet_claim) = claim_subnet();
        let third = n as u8;
        let h = TestHost {
            subnet_claim,
            netns: format!("fst-{id}"),
            host_if: format!("{prefix}{id}"),
            host_ip: Ipv4Addr::new(198, 19, third, 1),
            ns_ip: Ipv4Addr::new(198, 19, third, 2),
            host_ip6: format!("2001:db8:1:{n:x}::1"),
            ns_ip6: format!("2001:db8:1:{n:x}::2"),
        };
        std::fs::write(&h.subnet_claim, &h.netns).expect("record claim");
        run("ip", &["netns", "add", &h.netns]);
        run(
            "ip",
            &[
                "link", "add", &h.host_if, "type", "veth", "peer", "name", "eth0", "netns",
                &h.netns,
            ],
        );
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/24", h.host_ip),
                "dev",
                &h.host_if,
            ],
        );
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/64", h.host_ip6),
                "dev",
                &h.host_if,
                "nodad",
            ],
        );
        run("ip", &["link", "set", &h.host_if, "up"]);
        let ns = |args: &[&str]| {
            let mut a = vec!["netns", "exec", &h.netns];
            a.extend_from_slice(args);
            run("ip", &a);
        };
        ns(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", h.ns_ip),
            "dev",
            "eth0",
        ]);
        ns(&[
            "ip",
            "addr",
            "add",
            &format!("{}/64", h.ns_ip6),
            "dev",
            "eth0",
            "nodad",
        ]);
        ns(&["ip", "link", "set", "eth0", "up"]);
        ns(&["ip", "link", "set", "lo", "up"]);
        h
    }

    /// Runs `f` on a thread that has entered this host's network namespace: sockets it opens
    /// live there.
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.netns);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open netns");
            use std::os::fd::AsRawFd as _;
            // SAFETY: setns on a valid namespace fd; affects only this thread.
            let ret = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(ret, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("netns thread panicked")
    }

    /// `ping -c count` from the namespace to `dst`.
    pub fn ping(&self, dst: &str, count: u32) -> bool {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.netns,
                "ping",
                "-c",
                &count.to_string(),
            ])
            .args(["-i", "0.2", "-W", "1", dst])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }
}

/// Claims a /24 in 198.19.0.0/16 (the demo and lab use 198.18.0.0/16) that no other test, in
/// this process or another, is using: creating a file with O_EXCL is the lock.
fn claim_subnet() -> (u32, std::path::PathBuf) {
    let dir = std::path::Path::new("/run/flowscope-tests");
    std::fs::create_dir_all(dir).expect("claim dir");
    let start = std::process::id() % 200;
    for i in 0..200 {
        let n = (start + i) % 200 + 1;
        let path = dir.join(format!("subnet-{n}"));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(_) => return (n, path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // A claim whose namespace is gone was left by a killed test run: take it over.
                let ns = std::fs::read_to_string(&path).unwrap_or_default();
                if !ns.is_empty() && !std::path::Path::new("/run/netns").join(ns.trim()).exists() {
                    let _ = std::fs::remove_file(&path);
                }
            }
            Err(e) => panic!("claiming {}: {e}", path.display()),
        }
    }
    panic!("no free test subnet in 198.19.0.0/16");
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.subnet_claim);
        // Deleting the namespace deletes its veth end, which deletes the host end too.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .stderr(Stdio::null())
            .status();
    }
}

/// A free TCP port on loopback for an observer's API.
/// Ports for etcd (its client port and the next, its peer port) and an API server: the
/// three distinct, and free when chosen (held together while choosing).
fn etcd_and_api_ports() -> (u16, u16) {
    loop {
        let client = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = client.local_addr().expect("addr").port();
        let Some(next) = port.checked_add(1) else {
            continue;
        };
        let Ok(_peer) = TcpListener::bind(("127.0.0.1", next)) else {
            continue;
        };
        return (port, free_port());
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A running `flowscope observer`, killed on drop; then what it pinned is removed.
pub struct Observer {
    pub child: Child,
    pub api: SocketAddr,
    /// The pin root this helper gave the observer (removed on drop). None: the test gave
    /// `--bpf-root` or `--no-pin` itself.
    pins: Option<std::path::PathBuf>,
}

/// A pin root of its own for one observer of one test, under the BPF filesystem.
pub fn test_bpf_root() -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/sys/fs/bpf/flowscope-test/{}", unique()))
}

/// Removes a pin root when a test ends, pass or fail: the programs pinned there detach.
pub struct PinGuard(pub std::path::PathBuf);

impl Drop for PinGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Observer {
    pub fn start(args: &[&str]) -> Observer {
        let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        Observer::start_at(api, "test-node", args)
    }

    /// An observer named `node` serving its API on `api`.
    pub fn start_at(api: SocketAddr, node: &str, args: &[&str]) -> Observer {
        Observer::start_ready(api, node, args, |api| {
            http_get(api, "/readyz").is_some_and(|(code, _)| code == 200)
        })
    }

    /// As [`Observer::start_at`], ready when `ready` says so (an API behind TLS).
    pub fn start_ready(
        api: SocketAddr,
        node: &str,
        args: &[&str],
        mut ready: impl FnMut(SocketAddr) -> bool,
    ) -> Observer {
        // Parallel tests' observers each pin under a root of their own.
        let pins =
            (!args.iter().any(|a| *a == "--bpf-root" || *a == "--no-pin")).then(test_bpf_root);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flowscope"));
        cmd.arg("observer")
            .args(["--listen", &api.to_string(), "--node-name", node]);
        if let Some(root) = &pins {
            cmd.arg("--bpf-root").arg(root);
        }
        let child = cmd
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn flowscope observer");
        let mut o = Observer { child, api, pins };
        eventually("observer ready", Duration::from_secs(30), || {
            if let Some(status) = o.child.try_wait().expect("try_wait") {
                panic!("observer exited early: {status}");
            }
            ready(o.api).then_some(())
        });
        o
    }

    pub fn status(&self) -> Value {
        let (code, body) = http_get(self.api, "/api/v1/status").expect("status");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("status json")
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/api/v1/flows", self.api)
    }
}

impl Observer {
    /// Stops the observer as Ctrl-C does and waits for it to exit (at most 10 s): what it
    /// wrote is then complete.
    pub fn stop(self) {
        let pid = self.child.id() as i32;
        let exited = ExitWatch::new(pid);
        // SAFETY: a signal to our own child process.
        unsafe { libc::kill(pid, libc::SIGINT) };
        if let Some(exited) = exited {
            exited.wait(Duration::from_secs(10));
        }
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(root) = self.pins.take() {
            drop(PinGuard(root));
        }
    }
}

/// Minimal blocking HTTP/1.1 GET, so tests do not need an HTTP client crate.
/// A running `flowscope relay`, killed on drop.
pub struct Relay {
    pub child: Child,
    pub api: SocketAddr,
    pub metrics: SocketAddr,
}

impl Relay {
    pub fn start(args: &[&str]) -> Relay {
        Relay::start_ready(args, |api| {
            http_get(api, "/readyz").is_some_and(|(c, _)| c == 200)
        })
    }

    /// As [`Relay::start`], ready when `ready` says so (an API behind TLS).
    pub fn start_ready(args: &[&str], mut ready: impl FnMut(SocketAddr) -> bool) -> Relay {
        let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_flowscope"))
            .arg("relay")
            .args(["--listen", &api.to_string()])
            .args(["--metrics-listen", &metrics.to_string()])
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn flowscope relay");
        let mut r = Relay {
            child,
            api,
            metrics,
        };
        eventually("relay ready", Duration::from_secs(30), || {
            if let Some(status) = r.child.try_wait().unwrap() {
                panic!("relay exited early: {status}");
            }
            ready(r.api).then_some(())
        });
        r
    }

    pub fn get(&self, path: &str) -> Value {
        let (code, body) = http_get(self.api, path).expect(path);
        assert_eq!(code, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }

    pub fn status(&self) -> Value {
        self.get("/api/v1/status")
    }

    /// Waits until the relay counts `connected` connected and `unavailable` unavailable nodes.
    pub fn wait_nodes(&self, connected: u64, unavailable: u64, within: Duration) -> Value {
        let mut last = Value::Null;
        eventually(
            &format!("{connected} connected, {unavailable} unavailable nodes"),
            within,
            || {
                last = self.status();
                (last["num_connected_nodes"] == connected
                    && last["num_unavailable_nodes"] == unavailable)
                    .then(|| last.clone())
            },
        )
    }

    pub fn server(&self) -> String {
        self.api.to_string()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/api/v1/flows` and sends `request` as the first message.
pub async fn subscribe(url: &str, request: Value) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    ws.send(Message::Text(request.to_string().into()))
        .await
        .expect("send request");
    ws
}

/// What the server sent: parsed JSON lines, or the close frame's code and reason.
#[derive(Debug)]
pub enum Received {
    Json(Value),
    Closed(u16, String),
}

/// Next message within `timeout`, or None.
pub async fn next(ws: &mut Ws, timeout: Duration) -> Option<Received> {
    loop {
        let msg = tokio::time::timeout(timeout, ws.next()).await.ok()??;
        match msg.ok()? {
            Message::Text(t) => {
                return Some(Received::Json(serde_json::from_str(&t).expect("json line")));
            }
            Message::Close(frame) => {
                return Some(match frame {
                    Some(f) => Received::Closed(f.code.into(), f.reason.to_string()),
                    None => Received::Closed(1005, String::new()),
                });
            }
            _ => continue,
        }
    }
}

/// The sum of the samples in a Prometheus text exposition whose line starts with `prefix`
/// (a family name with `{` and some leading labels, to select series).
pub fn metric_sum(body: &str, prefix: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The server refused the stream: an error line with `code` whose message mentions
/// `mentions`, then the close frame with `close_code`.
pub async fn assert_refused(ws: &mut Ws, code: &str, mentions: &str, close_code: u16) {
    match next(ws, Duration::from_secs(5)).await {
        Some(Received::Json(v)) => {
            assert_eq!(v["error"]["code"], code, "{v}");
            let message = v["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(mentions), "{v}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    match next(ws, Duration::from_secs(5)).await {
        Some(Received::Closed(c, _)) => assert_eq!(c, close_code),
        other => panic!("expected close {close_code}, got {other:?}"),
    }
}

/// Collects JSON messages until `pred` has matched `want` of them or `timeout` passes.
pub async fn collect_until(
    ws: &mut Ws,
    timeout: Duration,
    mut done: impl FnMut(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut got = Vec::new();
    while !done(&got) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        match next(ws, left).await {
            Some(Received::Json(v)) => got.push(v),
            Some(Received::Closed(..)) | None => break,
        }
    }
    got
}

/// Runs the `flowscope` binary under test with `args` (stdin closed) and returns its output.
pub fn flowscope(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flowscope"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run flowscope")
}

/// A process the test started (a relay, a server), killed when the test ends.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `flowscope demo`: killed, and its lab removed, when the test ends (pass or fail)
/// unless it already stopped.
pub struct Demo(pub Child);

impl Drop for Demo {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
        let _ = Command::new(env!("CARGO_BIN_EXE_flowscope"))
            .args(["lab", "down"])
            .stdout(Stdio::null())
            .status();
    }
}

/// Removes the lab when a test ends, pass or fail.
pub struct LabGuard;

impl Drop for LabGuard {
    fn drop(&mut self) {
        let _ = flowscope(&["lab", "down"]);
    }
}

/// Opens a TCP connection to `dst:port` from inside network namespace `netns` (a lab pod):
/// whether it connected within 500 ms.
pub fn tcp_probe(netns: &str, dst: &str, port: u16) -> bool {
    let dst: SocketAddr = format!("{dst}:{port}").parse().expect("address");
    flowscope_lab::topology::spawn_in(netns, move || {
        flowscope_lab::servers::probe_tcp(dst, Duration::from_millis(500)).connected
    })
    .expect("spawn in netns")
    .join()
    .expect("probe thread")
}

/// Sends a UDP datagram to `dst:port` from inside `netns` and waits up to 500 ms for the echo.
pub fn udp_probe(netns: &str, dst: &str, port: u16) -> bool {
    let dst: SocketAddr = format!("{dst}:{port}").parse().expect("address");
    flowscope_lab::topology::spawn_in(netns, move || {
        flowscope_lab::servers::probe_udp(dst, Duration::from_millis(500)).connected
    })
    .expect("spawn in netns")
    .join()
    .expect("probe thread")
}

/// A fresh directory under the system temp dir, removed on drop (also when the test fails).
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", unique()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }
}

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `probe` every 50 ms until it returns `Some`, and returns that; fails the test naming
/// `what` (and the last thing `probe` saw, through `what`'s caller) when `timeout` passes
/// first. The one way these tests wait for a condition they cannot be told of: no fixed sleeps.
pub fn eventually<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A process's exit as something to wait on (a pidfd), for processes that are not our
/// children or that must be waited for with a time limit.
pub struct ExitWatch(std::os::fd::OwnedFd);

impl ExitWatch {
    /// `None` if `pid` has already gone.
    pub fn new(pid: i32) -> Option<ExitWatch> {
        use std::os::fd::FromRawFd as _;
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        // SAFETY: a descriptor pidfd_open just returned, owned by nothing else.
        (fd >= 0).then(|| ExitWatch(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// Waits until the process has exited or `timeout` passes; true if it exited.
    pub fn wait(&self, timeout: Duration) -> bool {
        use std::os::fd::AsRawFd as _;
        let mut pfd = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) > 0 }
    }
}

/// Runs `flowscope observe` against `server` with `args` and `-o json`, returning the flows
/// (each line's `flow`); fails the test if the command fails.
pub fn observe_json(server: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["observe", "--server", server, "-o", "json"];
    all.extend_from_slice(args);
    let out = flowscope(&all);
    assert!(
        out.status.success(),
        "observe {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json line"))
        .filter_map(|v| v.get("flow").cloned())
        .collect()
}

/// Brings up the lab of `file` (after removing any lab left over); the guard removes it when
/// the test ends, pass or fail.
pub fn lab_up(file: &str) -> LabGuard {
    let _ = flowscope(&["lab", "down"]);
    let up = flowscope(&["lab", "up", file]);
    assert!(
        up.status.success(),
        "lab up {file}: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    LabGuard
}

/// An observer watching every lab pod's veth with the lab's endpoints, enforcing the policies
/// of `policy_dir`, with `extra` arguments.
pub fn lab_observer(policy_dir: &str, extra: &[&str]) -> Observer {
    let mut args = vec![
        "--interface",
        "fsl*",
        "--endpoint-interface",
        "fsl*",
        "--endpoints",
        "/run/flowscope/lab/endpoints.json",
        "--policy-dir",
        policy_dir,
    ];
    args.extend_from_slice(extra);
    Observer::start(&args)
}

/// Waits until the observer has installed a policy revision newer than `after`.
pub fn wait_for_revision_after(observer: &Observer, after: u64) {
    eventually(
        &format!("a policy revision after {after}"),
        Duration::from_secs(15),
        || (observer.policy_revision() > after).then_some(()),
    );
}

impl Observer {
    /// The installed policy revision (0 before the first install).
    pub fn policy_revision(&self) -> u64 {
        self.status()["policy"]["revision"].as_u64().unwrap_or(0)
    }
}

/// A real Kubernetes API server (kube-apiserver v1.20 and etcd, built by
/// `scripts/kube-apiserver.sh build`, which `scripts/setup.sh` runs) on loopback ports of its
/// own, with RBAC and an admin kubeconfig; both processes are killed on drop.
pub struct KubeApi {
    pub dir: TempDir,
    pub kubeconfig: std::path::PathBuf,
    etcd_port: u16,
    api_port: u16,
}

const KUBE_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kube-apiserver.sh");

/// An address of the node's own, on `lo`, for pods to reach the node at; removed on drop.
pub struct NodeAddress(pub std::net::Ipv4Addr);

impl NodeAddress {
    pub fn add(ip: std::net::Ipv4Addr) -> NodeAddress {
        run("ip", &["addr", "add", &format!("{ip}/32"), "dev", "lo"]);
        NodeAddress(ip)
    }
}

impl Drop for NodeAddress {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["addr", "del", &format!("{}/32", self.0), "dev", "lo"])
            .output();
    }
}

impl KubeApi {
    pub fn start() -> KubeApi {
        let dir = TempDir::new("fs-kube");
        let (etcd_port, api_port) = etcd_and_api_ports();
        let api = KubeApi {
            kubeconfig: dir.join("run/kubeconfig"),
            dir,
            etcd_port,
            api_port,
        };
        // etcd takes two ports: the client port and the next one.
        api.script("start");
        api
    }

    fn script(&self, what: &str) {
        self.script_with(what, &[]);
    }

    /// The script, with `args` added to the API server's command line.
    fn script_with(&self, what: &str, args: &[&str]) {
        let out = Command::new("bash")
            .env("KUBE_APISERVER_ARGS", args.join(" "))
            .args([
                KUBE_SCRIPT,
                what,
                &self.dir.join("run").display().to_string(),
                &self.etcd_port.to_string(),
                &self.api_port.to_string(),
            ])
            .output()
            .expect("run scripts/kube-apiserver.sh");
        if !out.status.success() {
            // What the servers said last, since their directory goes with the test.
            let tail = |file: &str| {
                let log =
                    std::fs::read_to_string(self.dir.join("run").join(file)).unwrap_or_default();
                let last: Vec<&str> = log.lines().rev().take(12).collect();
                last.into_iter().rev().collect::<Vec<_>>().join("\n")
            };
            panic!(
                "scripts/kube-apiserver.sh {what} (the API server is built by scripts/setup.sh): {}\napiserver.log ends:\n{}\netcd.log ends:\n{}",
                String::from_utf8_lossy(&out.stderr),
                tail("apiserver.log"),
                tail("etcd.log")
            );
        }
    }

    fn kill(&self, process: &str) {
        let Ok(pid) = std::fs::read_to_string(self.dir.join(format!("run/{process}.pid"))) else {
            return;
        };
        let Ok(pid) = pid.trim().parse::<i32>() else {
            return;
        };
        // Not our child (the script's), so there is no wait(): watch for its exit instead.
        let Some(exited) = ExitWatch::new(pid) else {
            return; // already gone
        };
        // SAFETY: a signal to a process this helper started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        exited.wait(Duration::from_secs(10));
    }

    /// Stops the API server (etcd keeps the data).
    pub fn stop_apiserver(&self) {
        self.kill("apiserver");
    }

    /// Starts the API server again on the same port and data.
    pub fn start_apiserver(&self) {
        self.script("apiserver");
    }

    /// Another API server on the same etcd with the same credentials, as a cluster's
    /// replicas are: it takes writes while this one is stopped.
    pub fn replica(&self) -> KubeApi {
        self.replica_with(&[])
    }

    /// A replica started with `args` added to its command line (`--runtime-config=...` to
    /// serve fewer APIs, as an older or differently configured server would).
    pub fn replica_with(&self, args: &[&str]) -> KubeApi {
        let dir = TempDir::new("fs-kube-replica");
        let (from, to) = (self.dir.join("run"), dir.join("run"));
        std::fs::create_dir_all(to.join("pki")).expect("replica dir");
        for file in [
            "tokens.csv",
            "pki/ca.crt",
            "pki/apiserver.crt",
            "pki/apiserver.key",
            "pki/sa.pub",
            "pki/sa.key",
        ] {
            std::fs::copy(from.join(file), to.join(file)).expect("copy the API server's files");
        }
        let replica = KubeApi {
            kubeconfig: to.join("kubeconfig"),
            dir,
            etcd_port: self.etcd_port,
            api_port: free_port(),
        };
        // Its own run directory has no etcd.pid: dropping it stops its API server only.
        replica.script_with("apiserver", args);
        replica
    }

    /// Compacts etcd's history up to its current revision, as the API server does every few
    /// minutes: a watch resuming from before then is told `410 Gone`.
    pub fn compact_etcd(&self) {
        let base = format!("http://127.0.0.1:{}/v3/kv", self.etcd_port);
        let head: Value = ureq::post(&format!("{base}/range"))
            .send_json(serde_json::json!({"key": "AA=="}))
            .and_then(|mut r| r.body_mut().read_json())
            .expect("etcd's revision");
        let revision: i64 = head["header"]["revision"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("no revision in {head}"));
        ureq::post(&format!("{base}/compaction"))
            .send_json(serde_json::json!({"revision": revision, "physical": true}))
            .expect("etcd compaction");
    }

    /// A client with the admin credentials.
    pub async fn client(&self) -> kube::Client {
        let file = kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig");
        let config =
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .expect("kubeconfig");
        kube::Client::try_from(config).expect("client")
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.kill("apiserver");
        self.kill("etcd");
    }
}

/// Another agent's tc program (as a CNI's: Cilium's, Calico's in eBPF mode), attached to both
/// directions of an interface through tcx: it passes every packet and ends the chain with a
/// final verdict (`TC_ACT_OK`), so programs after it never run. Its runs are counted while
/// [`ForeignTcProgram::runs`] can read them (BPF run statistics on while it lives). Detached
/// and unloaded on drop.
pub struct ForeignTcProgram {
    program: std::os::fd::OwnedFd,
    _links: Vec<std::os::fd::OwnedFd>,
    _stats: std::os::fd::OwnedFd,
}

impl ForeignTcProgram {
    pub fn attach(interface: &str) -> ForeignTcProgram {
        use std::os::fd::FromRawFd as _;
        const BPF_PROG_LOAD: i64 = 5;
        const BPF_LINK_CREATE: i64 = 28;
        const BPF_ENABLE_STATS: i64 = 32;
        const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
        const BPF_TCX_INGRESS: u32 = 46;
        const BPF_TCX_EGRESS: u32 = 47;
        fn bpf(cmd: i64, attr: &mut [u8; 128]) -> std::os::fd::OwnedFd {
            // SAFETY: `attr` is a zero-padded bpf_attr of the command's layout.
            let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
            assert!(
                fd >= 0,
                "bpf command {cmd}: {}",
                std::io::Error::last_os_error()
            );
            // SAFETY: a new file descriptor the kernel gave us.
            unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }
        }
        let put32 = |attr: &mut [u8; 128], at: usize, v: u32| {
            attr[at..at + 4].copy_from_slice(&v.to_ne_bytes())
        };
        let put64 = |attr: &mut [u8; 128], at: usize, v: u64| {
            attr[at..at + 8].copy_from_slice(&v.to_ne_bytes())
        };
        // `r0 = 0 (TC_ACT_OK); exit`.
        let insns: [u64; 2] = [0xb7, 0x95];
        let license = c"GPL";
        let mut attr = [0u8; 128];
        put32(&mut attr, 0, BPF_PROG_TYPE_SCHED_CLS);
        put32(&mut attr, 4, insns.len() as u32);
        put64(&mut attr, 8, insns.as_ptr() as u64);
        put64(&mut attr, 16, license.as_ptr() as u64);
        attr[48..48 + 11].copy_from_slice(b"fs_foreign\0");
        let program = bpf(BPF_PROG_LOAD, &mut attr);
        let ifindex = std::fs::read_to_string(format!("/sys/class/net/{interface}/ifindex"))
            .expect("interface")
            .trim()
            .parse::<u32>()
            .unwrap();
        let mut links = Vec::new();
        for attach_type in [BPF_TCX_INGRESS, BPF_TCX_EGRESS] {
            use std::os::fd::AsRawFd as _;
            let mut attr = [0u8; 128];
            put32(&mut attr, 0, program.as_raw_fd() as u32);
            put32(&mut attr, 4, ifindex);
            put32(&mut attr, 8, attach_type);
            links.push(bpf(BPF_LINK_CREATE, &mut attr));
        }
        let mut attr = [0u8; 128];
        put32(&mut attr, 0, 0); // BPF_STATS_RUN_TIME
        let stats = bpf(BPF_ENABLE_STATS, &mut attr);
        ForeignTcProgram {
            program,
            _links: links,
            _stats: stats,
        }
    }

    /// How many packets the program has judged.
    pub fn runs(&self) -> u64 {
        use std::os::fd::AsRawFd as _;
        const BPF_OBJ_GET_INFO_BY_FD: i64 = 15;
        // bpf_prog_info up to run_cnt (offset 200).
        let mut info = [0u8; 256];
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&(self.program.as_raw_fd() as u32).to_ne_bytes());
        attr[4..8].copy_from_slice(&(info.len() as u32).to_ne_bytes());
        attr[8..16].copy_from_slice(&(info.as_mut_ptr() as u64).to_ne_bytes());
        // SAFETY: `attr` points at `info`, which outlives the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_OBJ_GET_INFO_BY_FD,
                attr.as_mut_ptr(),
                attr.len(),
            )
        };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        u64::from_ne_bytes(info[200..208].try_into().unwrap())
    }
}

/// Server-side apply of any object through the API, by its apiVersion and kind.
pub async fn kube_apply(client: &kube::Client, object: Value) {
    use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
    let api_version = object["apiVersion"].as_str().unwrap().to_string();
    let kind = object["kind"].as_str().unwrap().to_string();
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), api_version.clone()),
    };
    let plural = match kind.as_str() {
        "NetworkPolicy" => "networkpolicies".to_string(),
        "CiliumNetworkPolicy" => "ciliumnetworkpolicies".to_string(),
        "CustomResourceDefinition" => "customresourcedefinitions".to_string(),
        "Endpoints" => "endpoints".to_string(),
        k => format!("{}s", k.to_ascii_lowercase()),
    };
    let resource =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(&group, &version, &kind), &plural);
    let name = object["metadata"]["name"].as_str().unwrap().to_string();
    let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let params = PatchParams::apply("flowscope-tests").force();
    api.patch(&name, &params, &Patch::Apply(&object))
        .await
        .unwrap_or_else(|e| panic!("applying {kind} {name}: {e}"));
}

/// A running pod on `node` with `labels` and owner references, given `ip` as a kubelet would
/// (a bare API server has none).
pub async fn kube_pod(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    labels: Value,
    owners: Value,
    node: &str,
    ip: &str,
) {
    use kube::api::{Api, Patch, PatchParams};
    kube_apply(
        client,
        serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels,
                         "ownerReferences": owners},
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": "example",
                "ports": [{"name": "http", "containerPort": 8080}]}]},
        }),
    )
    .await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), namespace);
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(
            serde_json::json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}),
        ),
    )
    .await
    .expect("pod status");
}
