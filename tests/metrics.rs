//! Prometheus metrics end to end: a real Prometheus server (Debian's `prometheus`) scrapes a
//! running observer enforcing policies in the lab; after known traffic (N connections denied
//! by a policy, M allowed) PromQL over Prometheus's HTTP API returns exactly those counts. The
//! exposition is also checked by an independent parser (`promtool check metrics`), in both the
//! Prometheus text format and OpenMetrics.

mod util;

use std::time::{Duration, Instant};

use util::{
    free_port,
    prom::{Prometheus, promtool_accepts, scrape},
    tcp_probe,
};

const XYZ: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/labs/xyz.yaml");
const X_DENY_ALLOW_Y: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/policies/x-deny-allow-y");

#[test]
fn prometheus_scrapes_the_flows_the_policies_decided() {
    let _guard = util::lab_up(XYZ);
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let obs = util::lab_observer(
        X_DENY_ALLOW_Y,
        &[
            "--metrics-listen",
            &metrics_addr,
            "--metrics",
            "flow,drop:sourceContext=namespace;destinationContext=namespace,tcp,port-distribution,icmp,policy",
        ],
    );

    // A real Prometheus scraping the observer every second.
    let prom = Prometheus::start(&[("flowscope", &metrics_addr)]);
    let query = |q: &str| prom.query(q);

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
        let last: Vec<_> = want.iter().map(|(q, v)| (q, *v, query(q))).collect();
        if last.iter().all(|(_, v, got)| *got == Some(*v)) {
            break;
        }
        assert!(Instant::now() < deadline, "PromQL results: {last:#?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // Forwarded traffic shows up by verdict too, by port, and SYNs in the TCP flag counter.
    assert!(
        query("sum(flowscope_port_distribution_total{protocol=\"TCP\",port=\"80\"})")
            .is_some_and(|v| v >= f64::from(ALLOWED)),
    );
    assert!(
        query("sum(flowscope_flows_processed_total{verdict=\"FORWARDED\"})")
            .is_some_and(|v| v >= f64::from(ALLOWED)),
    );
    assert!(
        query("sum(flowscope_tcp_flags_total{flag=\"SYN\",family=\"IPv4\"})")
            .is_some_and(|v| v >= f64::from(DENIED + ALLOWED)),
    );
    // The observer's own health is there as well.
    assert!(query("flowscope_policy_revision").is_some_and(|v| v >= 1.0));

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
            promtool_accepts(&body);
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
