//! The relay end to end, as root: two real observers with their kernel programs on their own
//! test hosts (two "nodes"), real traffic, the real relay binary in front of them, the CLI and
//! a WebSocket client against the relay, and a real Prometheus scraping the relay's metrics.

mod util;

use std::{
    net::SocketAddr,
    process::Command,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use util::{
    Observer, Received, Relay, TestHost, flowscope, free_port, http_get, next,
    prom::{Prometheus, promtool_accepts, scrape},
    subscribe,
};

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `flowscope observe ... -o jsonpb` against `server`: the JSON lines on stdout.
fn observe(server: &str, args: &[&str]) -> (Vec<Value>, String) {
    let mut all = vec!["observe", "--server", server, "-o", "jsonpb"];
    all.extend_from_slice(args);
    let out = flowscope(&all);
    assert!(out.status.success(), "observe {args:?}: {}", text(&out));
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (lines, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// (node, time, source, destination) of each flow line.
fn flow_keys(lines: &[Value]) -> Vec<(String, String, String, String)> {
    lines
        .iter()
        .filter(|l| l.get("flow").is_some())
        .map(|l| {
            (
                l["node_name"].as_str().unwrap_or_default().to_string(),
                l["time"].as_str().unwrap_or_default().to_string(),
                l["flow"]["IP"]["source"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                l["flow"]["IP"]["destination"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

fn rfc3339_now() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%NZ"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Waits for a `node_status` line with `state` naming `node` on a following stream, skipping
/// flows; returns the flows seen meanwhile.
async fn wait_status(ws: &mut util::Ws, state: &str, node: &str, within: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + within;
    let mut flows = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match next(ws, left).await {
            Some(Received::Json(v)) => {
                let s = &v["node_status"];
                if s["state_change"] == state
                    && s["node_names"]
                        .as_array()
                        .is_some_and(|n| n.iter().any(|x| x == node))
                {
                    return flows;
                }
                if v.get("flow").is_some() {
                    flows.push(v);
                }
            }
            other => panic!("no {state} for {node} (got {other:?})"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_merges_two_nodes_in_time_order_and_follows_one_leaving_and_coming_back() {
    let h1 = TestHost::new();
    let h2 = TestHost::new();
    let api_b: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let oa = Observer::start_at(
        format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        "node-a",
        &["--interface", &h1.host_if],
    );
    let ob = Observer::start_at(api_b, "node-b", &["--interface", &h2.host_if]);
    // One peer named on the command line, one in a peers file, known only by its address
    // until it answers.
    let dir = util::TempDir::new("relay-peers");
    let peers_file = dir.join("peers");
    std::fs::write(&peers_file, format!("{api_b}\n")).unwrap();
    let relay = Relay::start(&[
        "--peer",
        &format!("node-a={}", oa.api),
        "--peers-file",
        peers_file.to_str().unwrap(),
    ]);
    let status = relay.wait_nodes(2, 0, Duration::from_secs(10));
    assert_eq!(status["unavailable_nodes"], json!([]));

    // Traffic on both nodes, interleaved in time.
    let t0 = rfc3339_now();
    for _ in 0..2 {
        assert!(h1.ping(&h1.host_ip.to_string(), 2));
        assert!(h2.ping(&h2.host_ip.to_string(), 2));
    }
    std::thread::sleep(Duration::from_millis(500));
    let t1 = rfc3339_now();
    let window = ["--since", t0.as_str(), "--until", t1.as_str()];

    // The relay's answer is exactly the union of the observers' answers, in time order.
    let (via_relay, _) = observe(&relay.server(), &window);
    let (direct_a, _) = observe(&oa.api.to_string(), &window);
    let (direct_b, _) = observe(&api_b.to_string(), &window);
    let relayed = flow_keys(&via_relay);
    let mut union = flow_keys(&direct_a);
    union.extend(flow_keys(&direct_b));
    assert!(
        relayed.iter().filter(|k| k.0 == "node-a").count() >= 4
            && relayed.iter().filter(|k| k.0 == "node-b").count() >= 4,
        "echo requests and replies from both nodes: {relayed:#?}"
    );
    let mut sorted_relayed = relayed.clone();
    sorted_relayed.sort();
    union.sort();
    assert_eq!(sorted_relayed, union, "relay vs observers");
    let times: Vec<i128> = via_relay
        .iter()
        .filter(|l| l.get("flow").is_some())
        .map(|l| {
            let t = l["time"].as_str().unwrap();
            let out = Command::new("date")
                .args(["-u", "-d", t, "+%s%N"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        })
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "flows out of time order: {relayed:#?}"
    );
    // The span of the flows the nodes hold, as an observer reports its own (for `observe`'s
    // explanation of an empty answer), once the relay has polled them since the traffic.
    let status = util::eventually(
        "the relay's status with the flows' span",
        Duration::from_secs(10),
        || {
            let status = relay.status();
            (status["oldest_flow_time"].is_string() && status["newest_flow_time"].is_string())
                .then_some(status)
        },
    );
    let (out, err) = observe(&relay.server(), &["--since", "2100-01-01T00:00:00Z"]);
    assert!(out.is_empty(), "{out:?}");
    assert!(
        err.contains("holds") && err.contains("--since is after the newest"),
        "{err} {status}"
    );

    // Filters are applied for every node: only node-b's flows.
    let (only_b, _) = observe(
        &relay.server(),
        &[&window[..], &["--node-name", "node-b"]].concat(),
    );
    let sorted = |mut v: Vec<_>| {
        v.sort();
        v
    };
    assert_eq!(sorted(flow_keys(&only_b)), sorted(flow_keys(&direct_b)));
    // `--last N` is N per node, as with Hubble Relay.
    let (last, _) = observe(&relay.server(), &["--last", "2"]);
    let keys = flow_keys(&last);
    assert_eq!(keys.len(), 4, "{keys:#?}");
    assert_eq!(keys.iter().filter(|k| k.0 == "node-b").count(), 2);
    // A field mask goes through to the observers: each flow carries only what was asked.
    let (masked, _) = observe(
        &relay.server(),
        &["--last", "2", "--field-mask", "verdict,IP"],
    );
    assert_eq!(masked.len(), 4, "{masked:#?}");
    for line in &masked {
        let keys: Vec<&String> = line["flow"].as_object().unwrap().keys().collect();
        assert!(keys.iter().all(|k| *k == "verdict" || *k == "IP"), "{line}");
        assert!(
            line["node_name"].is_string() && line["time"].is_string(),
            "{line}"
        );
    }

    // The service map counts both nodes' flows in the window.
    let req = url_encode(&json!({"since": t0, "until": t1}).to_string());
    let graph = relay.get(&format!("/api/v1/graph?request={req}"));
    let graph_a: Value = serde_json::from_str(
        &http_get(oa.api, &format!("/api/v1/graph?request={req}"))
            .unwrap()
            .1,
    )
    .unwrap();
    let graph_b: Value = serde_json::from_str(
        &http_get(api_b, &format!("/api/v1/graph?request={req}"))
            .unwrap()
            .1,
    )
    .unwrap();
    assert_eq!(
        graph["flows"].as_u64(),
        Some(graph_a["flows"].as_u64().unwrap() + graph_b["flows"].as_u64().unwrap()),
        "{graph:#}"
    );
    assert!(graph["flows"].as_u64().unwrap() >= 8);
    // The same UI page as an observer's.
    let (code, page) = http_get(relay.api, "/").unwrap();
    assert_eq!(code, 200);
    assert!(page.contains("<html"), "{page}");

    // status and list nodes, as hubble prints them against a relay.
    let out = flowscope(&["status", "--server", &relay.server()]);
    assert!(
        text(&out).contains("Connected Nodes: 2/2"),
        "{}",
        text(&out)
    );
    let out = flowscope(&["list", "nodes", "--server", &relay.server()]);
    let listed = text(&out);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("node-a") && l.contains("Connected"))
            && listed
                .lines()
                .any(|l| l.starts_with("node-b") && l.contains("Connected")),
        "{listed}"
    );

    // A real Prometheus scrapes the relay.
    let prom = Prometheus::start(&[("relay", &relay.metrics.to_string())]);
    let soon = || Instant::now() + Duration::from_secs(15);
    prom.wait_for("flowscope_relay_peers{state=\"connected\"}", 2.0, soon());
    // Hubble Relay's family, for the alerts written against it.
    prom.wait_for(
        "flowscope_relay_pool_peer_connection_status{status=\"READY\"}",
        2.0,
        soon(),
    );
    assert!(
        prom.query("flowscope_relay_flows_forwarded_total")
            .is_some_and(|v| v >= relayed.len() as f64),
        "flows forwarded"
    );
    prom.wait_for("flowscope_relay_merge_queue_depth", 0.0, soon());

    // Following: the stream names the connected nodes first, then flows arrive from both.
    let mut ws = subscribe(
        &format!("ws://{}/api/v1/flows", relay.api),
        json!({"follow": true}),
    )
    .await;
    match next(&mut ws, Duration::from_secs(5)).await {
        Some(Received::Json(v)) => {
            assert_eq!(v["node_status"]["state_change"], "NODE_CONNECTED", "{v}");
            let names = v["node_status"]["node_names"].as_array().unwrap();
            assert_eq!(names.len(), 2, "{v}");
        }
        other => panic!("expected the connected nodes first, got {other:?}"),
    }
    prom.wait_for("flowscope_relay_flow_requests", 1.0, soon());

    // node-b goes away: the stream says so at once, status and metrics follow.
    drop(ob);
    wait_status(
        &mut ws,
        "NODE_UNAVAILABLE",
        "node-b",
        Duration::from_secs(10),
    )
    .await;
    let s = relay.wait_nodes(1, 1, Duration::from_secs(10));
    assert_eq!(s["unavailable_nodes"], json!(["node-b"]), "{s:#}");
    prom.wait_for("flowscope_relay_peers{state=\"unavailable\"}", 1.0, soon());
    prom.wait_for("flowscope_relay_peer_up{node=\"node-b\"}", 0.0, soon());
    prom.wait_for("flowscope_relay_peer_up{node=\"node-a\"}", 1.0, soon());
    prom.wait_for(
        "flowscope_relay_pool_peer_connection_status{status=\"TRANSIENT_FAILURE\"}",
        1.0,
        soon(),
    );
    prom.wait_for(
        "flowscope_relay_pool_peer_connection_status{status=\"READY\"}",
        1.0,
        soon(),
    );
    let out = flowscope(&["status", "--server", &relay.server()]);
    assert!(
        text(&out).contains("Connected Nodes: 1/2") && text(&out).contains("node-b"),
        "{}",
        text(&out)
    );
    let out = flowscope(&["list", "nodes", "--server", &relay.server()]);
    assert!(
        text(&out)
            .lines()
            .any(|l| l.starts_with("node-b") && l.contains("Unavailable")),
        "{}",
        text(&out)
    );
    // A query still answers with the nodes there, and warns about the one missing.
    let (lines, stderr) = observe(&relay.server(), &["--last", "3"]);
    assert!(flow_keys(&lines).iter().all(|k| k.0 == "node-a"));
    assert!(
        stderr.contains("NODE_UNAVAILABLE") && stderr.contains("node-b"),
        "{stderr}"
    );

    // node-b comes back at the same address: the following stream re-attaches to it, and its
    // new flows arrive.
    let _ob = Observer::start_at(api_b, "node-b", &["--interface", &h2.host_if]);
    wait_status(&mut ws, "NODE_CONNECTED", "node-b", Duration::from_secs(30)).await;
    relay.wait_nodes(2, 0, Duration::from_secs(10));
    assert!(h2.ping(&h2.host_ip.to_string(), 2));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut from_b = 0;
    while from_b == 0 {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match next(&mut ws, left).await {
            Some(Received::Json(v)) if v["node_name"] == "node-b" && v.get("flow").is_some() => {
                from_b += 1
            }
            Some(Received::Json(_)) => {}
            other => panic!("no flow from node-b after it came back: {other:?}"),
        }
    }
    prom.wait_for("flowscope_relay_peers{state=\"connected\"}", 2.0, soon());

    // node-b is taken out of the peers file: the stream says it is gone, the relay forgets it.
    std::fs::write(&peers_file, "# no more node-b\n").unwrap();
    wait_status(&mut ws, "NODE_GONE", "node-b", Duration::from_secs(10)).await;
    let s = relay.wait_nodes(1, 0, Duration::from_secs(5));
    assert_eq!(s["relay"]["peers"], 1, "{s:#}");

    // An independent parser reads the relay's exposition, in both formats.
    let (code, ctype, body) = scrape(&relay.metrics.to_string(), "text/plain");
    assert_eq!(code, 200);
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    promtool_accepts(&body);
    for family in [
        "flowscope_relay_peers",
        "flowscope_relay_peer_up",
        "flowscope_relay_flows_forwarded_total",
        "flowscope_relay_merge_queue_depth",
    ] {
        assert!(body.contains(family), "{family} missing: {body}");
    }
    let (_, ctype, body) = scrape(
        &relay.metrics.to_string(),
        "application/openmetrics-text; version=1.0.0",
    );
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    assert!(body.trim_end().ends_with("# EOF"));
}

#[test]
fn bad_relay_input_gets_a_clear_error_and_good_input_is_kept() {
    let run = |args: &[&str]| {
        let mut all = vec!["relay", "--listen", "127.0.0.1:0", "--no-metrics"];
        all.extend_from_slice(args);
        flowscope(&all)
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("the relay needs observers"),
        "{}",
        text(&out)
    );
    let out = run(&["--peer", "10.0.0.7"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("expected HOST:PORT"), "{}", text(&out));
    let out = run(&["--peer", "2001:db8::1:4244"]);
    assert!(text(&out).contains("[2001:db8::1]:4244"), "{}", text(&out));
    let out = run(&["--peers-file", "/nonexistent/peers"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("cannot read the peers file /nonexistent/peers"),
        "{}",
        text(&out)
    );

    // A peers file with a bad line: the good lines are followed, the bad one is reported by
    // file and line; a change to the file is picked up.
    let dir = util::TempDir::new("relay-peers");
    let file = dir.join("peers");
    let dead1 = format!("127.0.0.1:{}", free_port());
    std::fs::write(&file, format!("# observers\nfar={dead1}\nnode-x:99999\n")).unwrap();
    let relay = Relay::start(&[
        "--peers-file",
        file.to_str().unwrap(),
        "--max-flow-requests",
        "1",
    ]);
    let s = relay.status();
    assert_eq!(s["relay"]["peers"], 1, "{s:#}");
    let errors = s["relay"]["discovery_errors"].to_string();
    assert!(
        errors.contains(&format!("{}:3:", file.display())) && errors.contains("99999"),
        "{errors}"
    );
    // Nothing answers there: unavailable, with the reason.
    let nodes = relay.get("/api/v1/nodes");
    assert_eq!(nodes[0]["name"], "far");
    assert_eq!(nodes[0]["state"], "NODE_UNAVAILABLE", "{nodes:#}");
    assert!(
        nodes[0]["error"].as_str().unwrap().contains("connecting"),
        "{nodes:#}"
    );
    let dead2 = format!("127.0.0.1:{}", free_port());
    std::fs::write(&file, format!("far={dead1}\n{dead2}\n")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = relay.status();
        if s["relay"]["peers"] == 2 && s["relay"]["discovery_errors"] == json!([]) {
            assert_eq!(s["num_unavailable_nodes"], 2);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "peers file change not seen: {s:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A bad flow request is refused by the relay itself, with the reason.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut ws = subscribe(
            &format!("ws://{}/api/v1/flows", relay.api),
            json!({"whitelist": [{"verdikt": ["DROPPED"]}]}),
        )
        .await;
        util::assert_refused(&mut ws, "INVALID_ARGUMENT", "verdikt", 1007).await;
        // With every node unavailable, a query ends at once and says why.
        let mut ws = subscribe(
            &format!("ws://{}/api/v1/flows", relay.api),
            json!({"number": 10}),
        )
        .await;
        match next(&mut ws, Duration::from_secs(5)).await {
            Some(Received::Json(v)) => {
                assert_eq!(v["node_status"]["state_change"], "NODE_UNAVAILABLE", "{v}")
            }
            other => panic!("expected the unavailable nodes, got {other:?}"),
        }
        assert!(matches!(
            next(&mut ws, Duration::from_secs(5)).await,
            Some(Received::Closed(1000, _))
        ));

        // Streams are bounded (--max-flow-requests 1): a second one at the same time is refused
        // with the reason; once the first ends, a new one is served.
        let url = format!("ws://{}/api/v1/flows", relay.api);
        let mut first = subscribe(&url, json!({"follow": true})).await;
        assert!(matches!(
            next(&mut first, Duration::from_secs(5)).await,
            Some(Received::Json(_))
        ));
        let mut second = subscribe(&url, json!({"follow": true})).await;
        util::assert_refused(
            &mut second,
            "RESOURCE_EXHAUSTED",
            "--max-flow-requests",
            1013,
        )
        .await;
        drop(first);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut third = subscribe(&url, json!({"follow": true})).await;
            match next(&mut third, Duration::from_secs(5)).await {
                Some(Received::Json(v)) if v.get("node_status").is_some() => break,
                other => assert!(Instant::now() < deadline, "not served again: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let (_, _, metrics) = scrape(&relay.metrics.to_string(), "text/plain");
    assert!(
        metrics.lines().any(
            |l| l.starts_with("flowscope_relay_flow_requests_refused_total ") && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
}

/// An observer that refuses the forwarded request (here: its stream bound is reached) is
/// Hubble's NODE_ERROR for that request, with the observer's reason; the other nodes answer,
/// `observe` says which node failed, and the node stays connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_refusing_the_request_is_a_node_error_with_its_reason() {
    let h1 = TestHost::new();
    let h2 = TestHost::new();
    let oa = Observer::start_at(
        format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        "node-a",
        &["--interface", &h1.host_if],
    );
    let ob = Observer::start_at(
        format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        "node-b",
        &["--interface", &h2.host_if, "--max-subscribers", "1"],
    );
    let relay = Relay::start(&["--peer", &oa.api.to_string(), "--peer", &ob.api.to_string()]);
    relay.wait_nodes(2, 0, Duration::from_secs(10));
    assert!(h1.ping(&h1.host_ip.to_string(), 1));
    // node-b's only stream is taken.
    let _held = subscribe(&ob.ws_url(), json!({"follow": true})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let server = relay.server();
    let out = tokio::task::spawn_blocking(move || {
        flowscope(&["observe", "--server", &server, "--last", "5"])
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("on 1 nodes: node-b") && stderr.contains("--max-subscribers"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().any(|l| l.contains(&h1.host_ip.to_string())),
        "node-a still answers: {stdout}"
    );
    // On the wire: NODE_ERROR naming node-b, and the stream ends normally.
    let mut ws = subscribe(
        &format!("ws://{}/api/v1/flows", relay.api),
        json!({"number": 1}),
    )
    .await;
    let mut error = None;
    loop {
        match next(&mut ws, Duration::from_secs(5)).await {
            Some(Received::Json(v)) if v["node_status"]["state_change"] == "NODE_ERROR" => {
                error = Some(v)
            }
            Some(Received::Json(_)) => {}
            Some(Received::Closed(code, _)) => {
                assert_eq!(code, 1000);
                break;
            }
            None => panic!("the stream did not end"),
        }
    }
    let error = error.expect("a NODE_ERROR line");
    assert_eq!(
        error["node_status"]["node_names"],
        json!(["node-b"]),
        "{error}"
    );
    assert!(
        error["node_status"]["message"]
            .as_str()
            .unwrap()
            .contains("RESOURCE_EXHAUSTED")
            || error["node_status"]["message"]
                .as_str()
                .unwrap()
                .contains("--max-subscribers"),
        "{error}"
    );
    // A refusal is not an outage: node-b stays connected.
    let s = relay.status();
    assert_eq!(s["num_connected_nodes"], 2, "{s:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_finds_observer_pods_through_the_kubernetes_api() {
    let kube = util::KubeApi::start();
    let client = kube.client().await;
    // Two observers on one port, each on its own loopback address, as on two nodes.
    let (h1, h2) = (TestHost::new(), TestHost::new());
    let port = free_port();
    let _oa = Observer::start_at(
        format!("127.0.0.2:{port}").parse().unwrap(),
        "node-a",
        &["--interface", &h1.host_if],
    );
    let _ob = Observer::start_at(
        format!("127.0.0.3:{port}").parse().unwrap(),
        "node-b",
        &["--interface", &h2.host_if],
    );
    // Their pods, as a DaemonSet's, and one pod the selector leaves out.
    let observer = json!({"app.kubernetes.io/name": "flowscope",
                          "app.kubernetes.io/component": "observer"});
    for (pod, labels, node, ip) in [
        ("flowscope-x7k2p", &observer, "node-a", "127.0.0.2"),
        ("flowscope-q9d4m", &observer, "node-b", "127.0.0.3"),
        (
            "flowscope-relay-5c4",
            &json!({"app.kubernetes.io/name": "flowscope"}),
            "node-a",
            "127.0.0.4",
        ),
    ] {
        util::kube_pod(
            &client,
            "kube-system",
            pod,
            labels.clone(),
            json!([]),
            node,
            ip,
        )
        .await;
    }
    let relay = Relay::start(&[
        "--kubeconfig",
        kube.kubeconfig.to_str().unwrap(),
        "--peer-pods",
        "app.kubernetes.io/name=flowscope,app.kubernetes.io/component=observer",
        "--peer-port",
        &port.to_string(),
    ]);
    relay.wait_nodes(2, 0, Duration::from_secs(20));
    let nodes = relay.get("/api/v1/nodes");
    let mut names: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["name"].as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["node-a", "node-b"], "{nodes}");

    // A pod deleted (its node drained): the relay stops following its observer.
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(client.clone(), "kube-system");
    pods.delete(
        "flowscope-q9d4m",
        &kube::api::DeleteParams::default().grace_period(0),
    )
    .await
    .expect("delete pod");
    relay.wait_nodes(1, 0, Duration::from_secs(20));

    // Bad input is refused, naming it.
    let refused = |args: &[&str]| {
        let out = flowscope(&[&["relay"], args].concat());
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let e = refused(&["--peer-pods", "app=flowscope", "--peer-port", "24244"]);
    assert!(e.contains("--kubernetes or --kubeconfig"), "{e}");
    let e = refused(&[
        "--kubeconfig",
        kube.kubeconfig.to_str().unwrap(),
        "--peer-pods",
        "app in (",
        "--peer-port",
        "24244",
    ]);
    assert!(e.contains("--peer-pods \"app in (\""), "{e}");
    let e = refused(&["--peer-pods", "app=flowscope"]);
    assert!(e.contains("--peer-port"), "{e}");
}
