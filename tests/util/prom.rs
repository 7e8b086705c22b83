//! A real Prometheus server (Debian's `prometheus`) scraping given targets every second, with
//! PromQL over its HTTP API, and the exposition checks shared by the metrics tests.

use std::{
    io::{Read as _, Write as _},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{TempDir, free_port, http_get};

/// A running Prometheus, killed (and its data removed) on drop.
pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    _dir: TempDir,
}

impl Prometheus {
    /// Scrapes each `(job, target)` every second.
    pub fn start(jobs: &[(&str, &str)]) -> Prometheus {
        let dir = TempDir::new("prometheus");
        let config = dir.join("prometheus.yml");
        let mut text = String::from(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n",
        );
        for (job, target) in jobs {
            text.push_str(&format!(
                "  - job_name: {job}\n    static_configs: [{{targets: ['{target}']}}]\n"
            ));
        }
        std::fs::write(&config, text).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus (apt-get install prometheus)");
        let p = Prometheus {
            child,
            addr,
            _dir: dir,
        };
        // Queries are refused (503) until it has loaded its storage and configuration.
        super::eventually("prometheus ready", Duration::from_secs(30), || {
            http_get(p.addr, "/-/ready").and_then(|(code, _)| (code == 200).then_some(()))
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        for (job, _) in jobs {
            p.wait_for(&format!("up{{job=\"{job}\"}}"), 1.0, deadline);
        }
        p
    }

    /// One PromQL instant query: the value of the single result, or None when it is empty.
    pub fn query(&self, promql: &str) -> Option<f64> {
        let q: String = promql
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (code, body) = http_get(self.addr, &format!("/api/v1/query?query={q}"))?;
        assert_eq!(code, 200, "{promql}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let result = v["data"]["result"].as_array()?.first()?.clone();
        result["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `promql` returns `want`; fails the test with the last value at `deadline`.
    pub fn wait_for(&self, promql: &str, want: f64, deadline: Instant) {
        loop {
            let got = self.query(promql);
            if got == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{promql}: got {got:?}, want {want}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET /metrics with an Accept header, returning (status, content type, body).
pub fn scrape(addr: &str, accept: &str) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to metrics");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").expect("http response");
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    // Chunked bodies: the test only reads the text, so join the chunks.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
        out
    } else {
        body.to_owned()
    };
    (code, ctype, body)
}

/// An independent parser: `promtool check metrics` must read the Prometheus text format
/// without a parse error (it exits 3 for lint remarks such as naming advice, 1 for errors).
pub fn promtool_accepts(body: &str) {
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(1), "promtool: {text}");
    assert!(!text.contains("error while linting"), "{text}");
}
