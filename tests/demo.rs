//! `flowscope demo`, the README's main command: the built-in lab (the seed's cluster) comes
//! up with its traffic, flows name their pods, and nothing is left behind when it stops (or
//! when a kill -9 is followed by another start).

mod util;

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};
use util::{Demo, collect_until, flowscope, free_port, http_get, subscribe};

fn start_demo(port: u16) -> Demo {
    let demo = Demo(
        Command::new(env!("CARGO_BIN_EXE_flowscope"))
            .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn demo"),
    );
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    for _ in 0..300 {
        if http_get(addr, "/readyz").is_some_and(|(c, _)| c == 200) {
            return demo;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("demo not ready");
}

/// Lab namespaces and interfaces on the machine.
fn leftovers() -> String {
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    let mut out = String::from_utf8_lossy(&ns.stdout).to_string();
    out.push_str(&String::from_utf8_lossy(&links.stdout));
    out.lines()
        .filter(|l| l.contains("fsl"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The tcx links a process holds (its programs attached to interfaces), by link id, from its
/// file descriptors. Other tests' observers may hold links of their own meanwhile; these are
/// the demo's.
fn tcx_links_of(pid: u32) -> Vec<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return Vec::new();
    };
    fds.flatten()
        .filter_map(|fd| std::fs::read_to_string(fd.path()).ok())
        .filter(|info| {
            info.lines()
                .any(|l| l.split_whitespace().eq(["link_type:", "tcx"]))
        })
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("link_id:"))
                .and_then(|id| id.trim().parse().ok())
        })
        .collect()
}

/// How many of these link ids still exist in the kernel.
fn links_alive(ids: &[u64]) -> usize {
    let out = Command::new("bpftool")
        .args(["-j", "link", "show"])
        .output()
        .expect("bpftool");
    let links: Value = serde_json::from_slice(&out.stdout).unwrap_or(json!([]));
    links
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|l| l["id"].as_u64().is_some_and(|id| ids.contains(&id)))
                .count()
        })
        .unwrap_or(0)
}

fn pod(f: &Value, side: &str) -> String {
    format!(
        "{}/{}",
        f["flow"][side]["namespace"].as_str().unwrap_or(""),
        f["flow"][side]["pod_name"].as_str().unwrap_or("")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_the_seed_cluster_and_cleans_up() {
    let port = free_port();
    // A demo killed with SIGKILL cannot clean up; the next start must.
    let mut first = start_demo(port);
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    assert!(
        !leftovers().is_empty(),
        "expected the killed demo's pods to remain"
    );
    // Its pods are left for the next start to clean up, not for the guard.
    std::mem::forget(first);

    let mut demo = start_demo(port);
    // Ready means the policies are installed; the lab's traffic started a moment before.
    let enforced_from = std::time::SystemTime::now();
    let mut ws = subscribe(
        &format!("ws://127.0.0.1:{port}/api/v1/flows"),
        json!({"follow": true}),
    )
    .await;
    let want = [
        ("default/frontend", "default/my-api", 8080),
        ("default/frontend", "kube-system/coredns", 53),
        ("monitoring/prometheus", "default/frontend", 80),
        ("default/frontend", "default/postgres", 5432),
    ];
    let flows = collect_until(&mut ws, Duration::from_secs(20), |g| {
        want.iter().all(|(src, dst, port)| {
            g.iter().any(|f| {
                pod(f, "source") == *src
                    && pod(f, "destination") == *dst
                    && (f["flow"]["l4"]["TCP"]["destination_port"] == *port
                        || f["flow"]["l4"]["UDP"]["destination_port"] == *port)
            })
        })
    })
    .await;
    for (src, dst, port) in want {
        let f = flows
            .iter()
            .find(|f| pod(f, "source") == src && pod(f, "destination") == dst)
            .unwrap_or_else(|| panic!("no flow {src} -> {dst}:{port} among {} flows", flows.len()));
        assert!(f["flow"]["source"]["identity"].as_u64().unwrap() >= 256);
        assert!(
            f["flow"]["source"]["labels"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l
                    .as_str()
                    .unwrap()
                    .starts_with("k8s:io.kubernetes.pod.namespace=")),
            "{f}"
        );
    }
    let links = tcx_links_of(demo.0.id());
    assert!(
        links.len() >= 12 && links_alive(&links) == links.len(),
        "two programs on each of six pod veths: {links:?}"
    );

    // The seed's L7 policy is listed with what it selects, and enforced in full: no warning.
    let listed = flowscope(&["policy", "list", "--server", &format!("127.0.0.1:{port}")]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.lines().any(|l| l.starts_with("CiliumNetworkPolicy")
            && l.contains("default/allow-get-only")
            && l.ends_with("default/my-api")),
        "{listed}"
    );
    assert!(!listed.contains("warn"), "{listed}");

    // allow-get-only at work on the lab's traffic: frontend's GETs reach my-api (200), its
    // POSTs and DELETEs are answered 403 by the proxy and never reach my-api.
    let mut l7 = subscribe(
        &format!("ws://127.0.0.1:{port}/api/v1/flows"),
        // Requests go frontend -> my-api, their responses my-api -> frontend.
        json!({"number": 4095, "follow": true, "whitelist": [
            {"source_pod": ["default/frontend"], "destination_pod": ["default/my-api"],
             "protocol": ["http"]},
            {"source_pod": ["default/my-api"], "destination_pod": ["default/frontend"],
             "protocol": ["http"]}]}),
    )
    .await;
    let exchange = |f: &Value, method: &str, l7_type: &str| {
        f["flow"]["l7"]["http"]["method"] == method && f["flow"]["l7"]["type"] == l7_type
    };
    let flows = collect_until(&mut l7, Duration::from_secs(20), |g| {
        ["GET", "POST", "DELETE"]
            .iter()
            .all(|m| g.iter().any(|f| exchange(f, m, "RESPONSE")))
    })
    .await;
    for (method, verdict, code) in [
        ("GET", "FORWARDED", 200),
        ("POST", "DROPPED", 403),
        ("DELETE", "DROPPED", 403),
    ] {
        let request = flows
            .iter()
            .find(|f| exchange(f, method, "REQUEST"))
            .unwrap_or_else(|| panic!("no {method} request among {} flows", flows.len()));
        assert_eq!(request["flow"]["verdict"], verdict, "{request}");
        assert_eq!(request["flow"]["Type"], "L7", "{request}");
        if verdict == "DROPPED" {
            assert_eq!(
                request["flow"]["ingress_denied_by"][0]["name"], "allow-get-only",
                "{request}"
            );
        }
        let response = flows
            .iter()
            .find(|f| exchange(f, method, "RESPONSE"))
            .unwrap_or_else(|| panic!("no {method} response among {} flows", flows.len()));
        assert_eq!(response["flow"]["l7"]["http"]["code"], code, "{response}");
    }
    let served = flowscope_lab::servers::read_request_log(
        flowscope_lab::control::request_log_path("default", "my-api"),
    )
    .expect("my-api's request log");
    // Only frontend sends POST and DELETE to my-api in the demo; none got through once the
    // policies were in force.
    let since: Vec<_> = served.iter().filter(|r| r.time >= enforced_from).collect();
    assert!(since.iter().any(|r| r.method == "GET"), "{served:?}");
    assert!(
        since.iter().all(|r| r.method == "GET"),
        "a POST or DELETE reached my-api: {since:?}"
    );

    // Policy-verdict events (Hubble's type 5) at connection setup, with direction, match type
    // and the policies that decided; `--type policy-verdict` selects them.
    let mut verdicts = subscribe(
        &format!("ws://127.0.0.1:{port}/api/v1/flows"),
        json!({"number": 4095, "follow": true, "whitelist": [{"event_type": [{"type": 5}]}]}),
    )
    .await;
    // (source, destination, verdict, direction, match type, policies field, policy)
    let want = [
        (
            "default/frontend",
            "kube-system/coredns",
            "FORWARDED",
            "EGRESS",
            2, // L3-L4: kube-system's identity, UDP 53
            "egress_allowed_by",
            Some("allow-dns-egress"),
        ),
        (
            "monitoring/prometheus",
            "default/frontend",
            "FORWARDED",
            "INGRESS",
            1, // L3-Only: prometheus's identity, any port
            "ingress_allowed_by",
            Some("allow-monitoring-scrape"),
        ),
        (
            "default/frontend",
            "default/postgres",
            "DROPPED",
            "EGRESS",
            0, // none: isolated for egress, nothing allows it
            "egress_denied_by",
            None,
        ),
    ];
    let found = |f: &Value, w: &(&str, &str, &str, &str, u64, &str, Option<&str>)| {
        pod(f, "source") == w.0
            && pod(f, "destination") == w.1
            && f["flow"]["verdict"] == w.2
            && f["flow"]["traffic_direction"] == w.3
    };
    let flows = collect_until(&mut verdicts, Duration::from_secs(20), |g| {
        want.iter().all(|w| g.iter().any(|f| found(f, w)))
    })
    .await;
    if let Some(f) = flows
        .iter()
        .find(|f| f["flow"]["event_type"]["type"] != 5 || !f["flow"]["is_reply"].is_null())
    {
        panic!("only policy-verdict events, is_reply unknown: {f}");
    }
    for w in &want {
        let f = flows
            .iter()
            .find(|f| found(f, w))
            .unwrap_or_else(|| panic!("no policy verdict {w:?} among {} flows", flows.len()));
        assert_eq!(
            f["flow"]["policy_match_type"].as_u64().unwrap_or(0),
            w.4,
            "{f}"
        );
        match w.6 {
            Some(name) => assert_eq!(f["flow"][w.5][0]["name"], name, "{f}"),
            None => {
                assert!(f["flow"][w.5].is_null(), "{f}");
                assert_eq!(f["flow"]["drop_reason_desc"], "POLICY_DENIED", "{f}");
            }
        }
    }

    // SIGTERM (like Ctrl-C): everything goes.
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(demo.0.id() as i32, libc::SIGTERM) };
    let status = demo.0.wait().unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(leftovers(), "", "demo left pods behind");
    assert_eq!(links_alive(&links), 0, "tc links left attached");
}
