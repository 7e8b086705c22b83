//! Prometheus metrics end to end: a real Prometheus server (Debian's `prometheus`) scrapes a
//! running observer enforcing policies in the lab; after known traffic (N connections denied
//! by a policy, M allowed) PromQL over Prometheus's HTTP API returns exactly those counts. The
//! exposition is also checked by an independent parser (`promtool check metrics`), in both the
//! Prometheus text format and OpenMetrics.

mod util;

use std::{
    io::Write as _,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use util::{LabGuard, flowscope, free_port, http_get, tcp_probe};

const XYZ: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/labs/xyz.yaml");
const X_DENY_ALLOW_Y: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/policies/x-deny-allow-y");

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GET with an Accept header, returning (status, content type, body).
fn scrape(addr: &str, accept: &str) -> (u16, String, String) {
    use std::io::Read as _;
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

/// One PromQL instant query: the value of the single result, or None when it is empty.
fn query(prom: std::net::SocketAddr, promql: &str) -> Option<f64> {
    let q: String = promql
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (code, body) = http_get(prom, &format!("/api/v1/query?query={q}"))?;
    assert_eq!(code, 200, "{promql}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let result = v["data"]["result"].as_array()?.first()?.clone();
    result["value"][1].as_str()?.parse().ok()
}

#[test]
fn prometheus_scrapes_the_flows_the_policies_decided() {
    let _guard = LabGuard;
    let _ = flowscope(&["lab", "down"]);
    assert!(flowscope(&["lab", "up", XYZ]).status.success());
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let obs = util::Observer::start(&[
        "--interface",
        "fsl*",
        "--endpoint-interface",
        "fsl*",
        "--endpoints",
        "/run/flowscope/lab/endpoints.json",
        "--policy-dir",
        X_DENY_ALLOW_Y,
        "--metrics-listen",
        &metrics_addr,
        "--metrics",
        "flow,drop:sourceContext=namespace;destinationContext=namespace,tcp,port-distribution,icmp,policy",
    ]);

    // A real Prometheus scraping the observer every second.
    let dir = util::TempDir::new("prometheus");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: flowscope\n    static_configs: [{{targets: ['{metrics_addr}']}}]\n"
        ),
    )
    .unwrap();
    let prom_addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus (apt-get install prometheus)"),
    );
    let up = |deadline: Instant| loop {
        if query(prom_addr, "up{job=\"flowscope\"}") == Some(1.0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus never scraped the observer"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    up(Instant::now() + Duration::from_secs(30));

    // Known traffic: z/a -> x/b:80 is denied by default-deny in x (one SYN each: the probe
    // gives up before the first retransmission); y/a -> x/a:80 is allowed by allow-from-y-80.
    const DENIED: u32 = 7;
    const ALLOWED: u32 = 5;
    for _ in 0..DENIED {
        assert!(!tcp_probe("fsl-z-a", "198.18.1.2", 80));
    }
    for _ in 0..ALLOWED {
        assert!(tcp_probe("fsl-y-a", "198.18.1.1", 80));
    }
    let want = [
        (
            "sum(flowscope_drop_total{reason=\"POLICY_DENIED\",protocol=\"TCP\",source=\"z\",destination=\"x\"})",
            f64::from(DENIED),
        ),
        (
            "sum(flowscope_policy_verdicts_total{direction=\"ingress\",action=\"dropped\",match=\"none\"})",
            f64::from(DENIED),
        ),
        (
            "sum(flowscope_policy_verdicts_total{direction=\"ingress\",action=\"forwarded\"})",
            f64::from(ALLOWED),
        ),
        (
            "sum(flowscope_flows_processed_total{type=\"Drop\",verdict=\"DROPPED\"})",
            f64::from(DENIED),
        ),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let last: Vec<_> = want
            .iter()
            .map(|(q, v)| (q, *v, query(prom_addr, q)))
            .collect();
        if last.iter().all(|(_, v, got)| *got == Some(*v)) {
            break;
        }
        assert!(Instant::now() < deadline, "PromQL results: {last:#?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // Forwarded traffic shows up by verdict too, by port, and SYNs in the TCP flag counter.
    assert!(
        query(
            prom_addr,
            "sum(flowscope_port_distribution_total{protocol=\"TCP\",port=\"80\"})"
        )
        .is_some_and(|v| v >= f64::from(ALLOWED)),
    );
    assert!(
        query(
            prom_addr,
            "sum(flowscope_flows_processed_total{verdict=\"FORWARDED\"})"
        )
        .is_some_and(|v| v >= f64::from(ALLOWED)),
    );
    assert!(
        query(
            prom_addr,
            "sum(flowscope_tcp_flags_total{flag=\"SYN\",family=\"IPv4\"})"
        )
        .is_some_and(|v| v >= f64::from(DENIED + ALLOWED)),
    );
    // The observer's own health is there as well.
    assert!(query(prom_addr, "flowscope_policy_revision").is_some_and(|v| v >= 1.0));

    // An independent parser: promtool reads both formats without complaint.
    for (accept, want_type) in [
        ("text/plain", "text/plain; version=0.0.4"),
        (
            "application/openmetrics-text; version=1.0.0",
            "application/openmetrics-text",
        ),
    ] {
        let (code, ctype, body) = scrape(&metrics_addr, accept);
        assert_eq!(code, 200);
        assert!(ctype.starts_with(want_type), "{accept}: {ctype}");
        if accept == "text/plain" {
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
            // promtool exits 3 for lint remarks (naming advice) and 1 for parse errors.
            let text = String::from_utf8_lossy(&out.stderr);
            assert_ne!(out.status.code(), Some(1), "promtool: {text}");
            assert!(!text.contains("error while linting"), "{text}");
        } else {
            assert!(
                body.trim_end().ends_with("# EOF"),
                "OpenMetrics ends with # EOF"
            );
        }
        assert!(body.contains("flowscope_drop_total"), "{body}");
    }
    drop(obs);
}
