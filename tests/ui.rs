//! The web UI in a real browser: Debian's headless Chromium, driven by `tests/ui/*.mjs`
//! (playwright-core), against
//! - `flowscope demo` (the lab with the seed's policies): the map's workloads, a red edge on a
//!   path the policies deny and green ones on allowed paths, namespace view, selection,
//!   filters and the link, pause, details, column chooser, export, status bar; then the same
//!   through `flowscope relay` in front of the demo's observer;
//! - the replay server (`tests/ui/replay-server.mjs`, 5,000 synthetic flows/s): every
//!   workload on the map, the table bounded, pause and the namespace view under load.
//!
//! How fast the page is under load is measured by `bench/ui.sh`, not asserted here.
//! Screenshots and the export are kept in
//! `$CARGO_TARGET_TMPDIR/ui-artifacts/`. Needs `scripts/setup.sh` (chromium, node,
//! tests/ui/node_modules) and a binary built after `scripts/build-ui.sh`.

mod util;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use util::{Demo, Killed, free_port, http_get};

/// A browser test script gets this long; it prints its steps as it goes.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

/// GET with an optional Accept-Encoding: the response head and the raw body (not chunked: the
/// UI's files are sent with a length).
fn raw_get(addr: std::net::SocketAddr, path: &str, encoding: Option<&str>) -> (String, Vec<u8>) {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let accept = encoding
        .map(|e| format!("Accept-Encoding: {e}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("http head");
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    (head, buf[split + 4..].to_vec())
}

fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui")
}

fn artifacts(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("ui-artifacts")
        .join(name);
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

fn check_prerequisites() {
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "no /usr/bin/chromium: run scripts/setup.sh"
    );
    assert!(
        tests_dir().join("node_modules/playwright-core").exists(),
        "no tests/ui/node_modules/playwright-core: run scripts/setup.sh"
    );
}

/// Runs a test script with `env`, bounded in time; panics with its output if it fails.
fn run_script(script: &str, env: &[(&str, String)]) {
    let mut cmd = Command::new("node");
    cmd.arg(tests_dir().join(script))
        .current_dir(tests_dir())
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run node");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            assert!(status.success(), "{script} failed: {status}");
            return;
        }
        if started.elapsed() > SCRIPT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{script} did not finish within {SCRIPT_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn ui_against_the_demo_lab() {
    check_prerequisites();
    let port = free_port();
    let _demo = Demo(
        Command::new(env!("CARGO_BIN_EXE_flowscope"))
            .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn demo"),
    );
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let ready = (0..300).any(|_| {
        let ok = http_get(addr, "/readyz").is_some_and(|(c, _)| c == 200);
        if !ok {
            std::thread::sleep(Duration::from_millis(100));
        }
        ok
    });
    assert!(ready, "demo not ready");
    let (code, index) = http_get(addr, "/").expect("GET /");
    assert_eq!(code, 200);
    assert!(
        index.contains("flowscope_ui.js"),
        "the binary was built without the UI: run scripts/build-ui.sh, then rebuild"
    );
    // The wasm goes compressed to clients that accept gzip, and unpacks to the same bytes.
    let plain = raw_get(addr, "/ui/flowscope_ui_bg.wasm", None);
    let packed = raw_get(addr, "/ui/flowscope_ui_bg.wasm", Some("gzip, deflate, br"));
    assert!(
        !plain.0.to_ascii_lowercase().contains("content-encoding"),
        "{}",
        plain.0
    );
    assert!(
        packed
            .0
            .to_ascii_lowercase()
            .contains("content-encoding: gzip"),
        "{}",
        packed.0
    );
    assert!(
        packed.1.len() * 2 < plain.1.len(),
        "gzip {} vs {}",
        packed.1.len(),
        plain.1.len()
    );
    let mut gunzip = Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip");
    // Written from another thread: gzip's output fills its pipe long before its input ends.
    let mut stdin = gunzip.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        use std::io::Write as _;
        stdin.write_all(&packed.1).unwrap();
    });
    let unpacked = gunzip.wait_with_output().unwrap().stdout;
    feeder.join().unwrap();
    assert!(
        unpacked == plain.1,
        "gunzipped wasm differs from the plain one"
    );

    let dir = artifacts("demo");
    run_script(
        "ui.test.mjs",
        &[
            ("FLOWSCOPE_URL", format!("http://127.0.0.1:{port}")),
            ("ARTIFACTS", dir.display().to_string()),
        ],
    );

    // The same page through a relay in front of the demo's observer: map, table, filters and
    // the status bar's node count come from the relay's merged stream and views.
    let relay_port = free_port();
    let _relay = Killed(
        Command::new(env!("CARGO_BIN_EXE_flowscope"))
            .args(["relay", "--listen", &format!("127.0.0.1:{relay_port}")])
            .args(["--no-metrics", "--peer", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn relay"),
    );
    let relay: std::net::SocketAddr = format!("127.0.0.1:{relay_port}").parse().unwrap();
    let connected = (0..100).any(|_| {
        let ok = http_get(relay, "/api/v1/status")
            .is_some_and(|(c, body)| c == 200 && body.contains("\"num_connected_nodes\":1"));
        if !ok {
            std::thread::sleep(Duration::from_millis(100));
        }
        ok
    });
    assert!(connected, "relay never connected to the demo's observer");
    run_script(
        "ui.test.mjs",
        &[
            ("FLOWSCOPE_URL", format!("http://{relay}")),
            ("ARTIFACTS", artifacts("relay").display().to_string()),
        ],
    );
}

#[test]
fn ui_under_a_5000_flows_per_second_stream() {
    check_prerequisites();
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("ui/dist/index.html");
    assert!(dist.exists(), "no ui/dist: run scripts/build-ui.sh");
    let dir = artifacts("load");
    run_script(
        "load.test.mjs",
        &[
            ("PORT", free_port().to_string()),
            ("RATE", "5000".into()),
            ("SECONDS", "15".into()),
            ("ARTIFACTS", dir.display().to_string()),
        ],
    );
}
