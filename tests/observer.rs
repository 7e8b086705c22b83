//! End to end, as root: real namespaces and veths, the real observer binary with its kernel
//! programs attached, real TCP/UDP/ICMP traffic, and flows read over the WebSocket API.

mod util;

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use util::{Observer, Received, TestHost, collect_until, next, subscribe};

const WAIT: Duration = Duration::from_secs(10);

fn l4_port(f: &Value, proto: &str, which: &str) -> Option<u64> {
    f["flow"]["l4"][proto][which].as_u64()
}

/// ICMPv4 type; protojson omits zero values, so an echo reply (type 0) has no "type" key.
fn icmp4_type(f: &Value) -> Option<u64> {
    let icmp = f["flow"]["l4"]["ICMPv4"].as_object()?;
    Some(icmp.get("type").and_then(Value::as_u64).unwrap_or(0))
}

fn is(f: &Value, src: &str, dst: &str) -> bool {
    f["flow"]["IP"]["source"] == src && f["flow"]["IP"]["destination"] == dst
}

/// TCP echo-once server on the host side; returns its port.
fn tcp_server(ip: std::net::Ipv4Addr, accepted: Arc<AtomicU32>) -> u16 {
    let l = TcpListener::bind((ip, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            accepted.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).unwrap_or(0);
            let _ = s.write_all(&buf[..n]);
        }
    });
    port
}

fn udp_echo(addr: SocketAddr) -> u16 {
    let s = UdpSocket::bind(addr).unwrap();
    let port = s.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let _ = s.send_to(&buf[..n], from);
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_traffic_becomes_flows_and_denied_traffic_is_dropped() {
    let h = TestHost::new();
    let accepted_ok = Arc::new(AtomicU32::new(0));
    let accepted_denied = Arc::new(AtomicU32::new(0));
    let tcp_ok = tcp_server(h.host_ip, accepted_ok.clone());
    let tcp_denied = tcp_server(h.host_ip, accepted_denied.clone());
    let udp_port = udp_echo(SocketAddr::new(h.host_ip.into(), 0));
    let v6: std::net::Ipv6Addr = h.host_ip6.parse().unwrap();
    let tcp6_ok = {
        let l = TcpListener::bind((v6, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let _ = s.write_all(b"v6");
            }
        });
        port
    };

    let deny = format!("cidr={},port={tcp_denied},protocol=tcp", h.host_ip);
    let obs = Observer::start(&["--interface", &h.host_if, "--deny", &deny]);
    let mut ws = subscribe(&obs.ws_url(), json!({"follow": true})).await;
    // The subscription is registered once the server has read the request; a status call
    // after a short pause makes that ordering certain.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let host_ip = h.host_ip;
    let (tcp_reply, udp_reply, denied_result) = h.run_in(move || {
        let mut s = TcpStream::connect_timeout(&SocketAddr::new(host_ip.into(), tcp_ok), WAIT)
            .expect("allowed TCP connects");
        s.write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        drop(s);
        let u = UdpSocket::bind("0.0.0.0:0").unwrap();
        u.set_read_timeout(Some(WAIT)).unwrap();
        u.send_to(b"ping", (host_ip, udp_port)).unwrap();
        let mut ubuf = [0u8; 16];
        let n = u.recv(&mut ubuf).unwrap();
        let denied = TcpStream::connect_timeout(
            &SocketAddr::new(host_ip.into(), tcp_denied),
            Duration::from_millis(1500),
        );
        (buf.to_vec(), ubuf[..n].to_vec(), denied.is_ok())
    });
    assert_eq!(tcp_reply, b"hello");
    assert_eq!(udp_reply, b"ping");
    assert!(
        !denied_result,
        "a denied connection must not be established"
    );
    assert!(
        h.ping(&h.host_ip.to_string(), 2),
        "ping through the observer"
    );
    let v6_ip = h.host_ip6.clone();
    let v6_reply = h.run_in(move || {
        let mut s = TcpStream::connect_timeout(
            &SocketAddr::new(v6_ip.parse::<std::net::Ipv6Addr>().unwrap().into(), tcp6_ok),
            WAIT,
        )
        .expect("v6 connects");
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        out
    });
    assert_eq!(v6_reply, b"v6");

    let ns_ip = h.ns_ip.to_string();
    let host = h.host_ip.to_string();
    let flows = collect_until(&mut ws, WAIT, |got| {
        let has = |p: &dyn Fn(&Value) -> bool| got.iter().any(p);
        has(&|f| {
            is(f, &ns_ip, &host) && l4_port(f, "TCP", "destination_port") == Some(tcp_ok.into())
        }) && has(&|f| f["flow"]["verdict"] == "DROPPED")
            && has(&|f| icmp4_type(f) == Some(0))
            && has(&|f| {
                is(f, &host, &ns_ip) && l4_port(f, "UDP", "source_port") == Some(udp_port.into())
            })
            && has(&|f| {
                f["flow"]["IP"]["ipVersion"] == "IPv6"
                    && f["flow"]["l4"]["TCP"]["flags"]["SYN"] == true
                    && f["flow"]["is_reply"] == true
            })
    })
    .await;
    let find = |what: &str, p: &dyn Fn(&Value) -> bool| -> Value {
        flows
            .iter()
            .find(|f| p(f))
            .unwrap_or_else(|| panic!("no {what} among {} flows: {flows:#?}", flows.len()))
            .clone()
    };

    // The allowed connection's SYN: request direction, seen entering the node.
    let syn = find("TCP SYN", &|f| {
        is(f, &ns_ip, &host)
            && l4_port(f, "TCP", "destination_port") == Some(tcp_ok.into())
            && f["flow"]["l4"]["TCP"]["flags"]["SYN"] == true
    });
    assert_eq!(syn["flow"]["verdict"], "FORWARDED");
    assert_eq!(syn["flow"]["is_reply"], false);
    assert_eq!(syn["flow"]["traffic_direction"], "INGRESS");
    assert_eq!(syn["flow"]["Type"], "L3_L4");
    assert_eq!(syn["flow"]["node_name"], "test-node");
    assert_eq!(syn["node_name"], "test-node");
    assert_eq!(syn["flow"]["interface"]["name"], h.host_if.as_str());
    assert_eq!(syn["flow"]["event_type"]["type"], 4);
    assert_eq!(syn["flow"]["trace_observation_point"], "FROM_NETWORK");
    assert!(
        syn["flow"]["Summary"]
            .as_str()
            .unwrap()
            .starts_with("TCP Flags: SYN")
    );
    assert!(syn["flow"]["uuid"].as_str().unwrap().len() == 36);
    assert_eq!(syn["flow"]["destination"]["labels"][0], "reserved:host");
    assert_eq!(syn["flow"]["source"]["labels"][0], "reserved:world");
    assert_eq!(
        syn["flow"]["ethernet"]["source"].as_str().unwrap().len(),
        17
    );

    // Its SYN-ACK: a reply, leaving the node, same connection's direction.
    let synack = find("TCP SYN-ACK", &|f| {
        is(f, &host, &ns_ip)
            && l4_port(f, "TCP", "source_port") == Some(tcp_ok.into())
            && f["flow"]["l4"]["TCP"]["flags"]["SYN"] == true
    });
    assert_eq!(synack["flow"]["l4"]["TCP"]["flags"]["ACK"], true);
    assert_eq!(synack["flow"]["is_reply"], true);
    assert_eq!(synack["flow"]["traffic_direction"], "INGRESS");
    assert_eq!(synack["flow"]["trace_observation_point"], "TO_NETWORK");
    // Both ends closed: a FIN each way.
    find("client FIN", &|f| {
        is(f, &ns_ip, &host)
            && l4_port(f, "TCP", "destination_port") == Some(tcp_ok.into())
            && f["flow"]["l4"]["TCP"]["flags"]["FIN"] == true
    });
    find("server FIN", &|f| {
        is(f, &host, &ns_ip)
            && l4_port(f, "TCP", "source_port") == Some(tcp_ok.into())
            && f["flow"]["l4"]["TCP"]["flags"]["FIN"] == true
    });

    let udp_req = find("UDP request", &|f| {
        is(f, &ns_ip, &host) && l4_port(f, "UDP", "destination_port") == Some(udp_port.into())
    });
    assert_eq!(udp_req["flow"]["is_reply"], false);
    assert_eq!(udp_req["flow"]["Summary"], "UDP");
    let udp_rep = find("UDP reply", &|f| {
        is(f, &host, &ns_ip) && l4_port(f, "UDP", "source_port") == Some(udp_port.into())
    });
    assert_eq!(udp_rep["flow"]["is_reply"], true);

    let echo = find("ICMP echo request", &|f| {
        is(f, &ns_ip, &host) && icmp4_type(f) == Some(8)
    });
    assert_eq!(echo["flow"]["is_reply"], false);
    assert_eq!(echo["flow"]["Summary"], "ICMPv4 EchoRequest");
    let echo_reply = find("ICMP echo reply", &|f| {
        is(f, &host, &ns_ip) && icmp4_type(f) == Some(0)
    });
    assert_eq!(echo_reply["flow"]["is_reply"], true);

    let drop = find("dropped SYN", &|f| f["flow"]["verdict"] == "DROPPED");
    assert!(is(&drop, &ns_ip, &host));
    assert_eq!(
        l4_port(&drop, "TCP", "destination_port"),
        Some(tcp_denied.into())
    );
    assert_eq!(drop["flow"]["drop_reason_desc"], "POLICY_DENIED");
    assert_eq!(drop["flow"]["drop_reason"], 133);
    assert_eq!(drop["flow"]["event_type"]["type"], 1);
    assert_eq!(drop["flow"]["event_type"]["sub_type"], 133);
    assert_eq!(
        accepted_denied.load(Ordering::SeqCst),
        0,
        "the denied server must never see the connection"
    );
    assert!(accepted_ok.load(Ordering::SeqCst) >= 1);

    let v6syn = find("IPv6 SYN", &|f| {
        f["flow"]["IP"]["ipVersion"] == "IPv6"
            && f["flow"]["IP"]["destination"] == h.host_ip6.as_str()
            && l4_port(f, "TCP", "destination_port") == Some(tcp6_ok.into())
    });
    assert_eq!(v6syn["flow"]["IP"]["source"], h.ns_ip6.as_str());

    // Per flow, not per packet: the allowed TCP connection produced a handful of events.
    let tcp_events = flows
        .iter()
        .filter(|f| {
            l4_port(f, "TCP", "destination_port") == Some(tcp_ok.into())
                || l4_port(f, "TCP", "source_port") == Some(tcp_ok.into())
        })
        .count();
    assert!(
        (3..=5).contains(&tcp_events),
        "{tcp_events} events for one short TCP connection"
    );

    let status = obs.status();
    assert!(status["seen_flows"].as_u64().unwrap() >= flows.len() as u64);
    assert_eq!(status["max_flows"], 4095);
    assert!(status["datapath"]["dropped_packets"].as_u64().unwrap() >= 1);
    assert_eq!(status["interfaces"][0]["name"], h.host_if.as_str());
}

/// Sends one UDP datagram from each of `n` source ports (distinct per destination port, so no
/// two datagrams share a 5-tuple): `n` new flows.
fn udp_burst(h: &TestHost, port: u16, n: usize) {
    let ip = h.host_ip;
    h.run_in(move || {
        for i in 0..n {
            let u = UdpSocket::bind(("0.0.0.0", 20000 + i as u16)).unwrap();
            u.send_to(b"x", (ip, port)).unwrap();
        }
    });
}

async fn history(obs: &Observer, request: Value) -> (Vec<Value>, Option<(u16, String)>) {
    let mut ws = subscribe(&obs.ws_url(), request).await;
    let mut got = Vec::new();
    loop {
        match next(&mut ws, WAIT).await {
            Some(Received::Json(v)) => got.push(v),
            Some(Received::Closed(code, reason)) => return (got, Some((code, reason))),
            None => return (got, None),
        }
    }
}

fn dports(flows: &[Value]) -> Vec<u64> {
    flows
        .iter()
        .filter_map(|f| l4_port(f, "UDP", "destination_port"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_selectors_and_filters() {
    let h = TestHost::new();
    // Nothing listens: only the requests are seen (the host answers ICMP port unreachable,
    // which is its own flow).
    let obs = Observer::start(&["--interface", &h.host_if]);
    udp_burst(&h, 7001, 5);
    let mid = chrono_now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    udp_burst(&h, 7002, 5);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let only_udp = json!([{"protocol": ["udp"], "destination_ip": [h.host_ip.to_string()]}]);

    // last N counts only flows that pass the filter, and returns the newest.
    let (flows, close) = history(&obs, json!({"number": 3, "whitelist": only_udp})).await;
    assert_eq!(dports(&flows), vec![7002, 7002, 7002]);
    assert_eq!(close.unwrap().0, 1000);

    // first N: the oldest.
    let (flows, _) = history(
        &obs,
        json!({"number": 2, "first": true, "whitelist": only_udp}),
    )
    .await;
    assert_eq!(dports(&flows), vec![7001, 7001]);

    // number 0 without follow: everything retained that passes.
    let (flows, _) = history(&obs, json!({"whitelist": only_udp})).await;
    assert_eq!(dports(&flows).len(), 10);

    // Values inside one field are alternatives; fields inside one filter all apply.
    let f = json!([{"destination_port": ["7001", "7002"], "source_ip": [h.ns_ip.to_string()]}]);
    let (flows, _) = history(&obs, json!({"whitelist": f})).await;
    assert_eq!(flows.len(), 10);
    let f = json!([{"destination_port": ["7001"], "source_ip": [h.host_ip.to_string()]}]);
    let (flows, _) = history(&obs, json!({"whitelist": f})).await;
    assert!(flows.is_empty(), "{flows:?}");

    // Any whitelist filter may match; no blacklist filter may.
    let wl = json!([{"destination_port": ["7001"]}, {"destination_port": ["7002"]}]);
    let bl = json!([{"destination_port": ["7002"]}]);
    let (flows, _) = history(&obs, json!({"whitelist": wl, "blacklist": bl})).await;
    assert_eq!(dports(&flows), vec![7001; 5]);

    // since / until split the two bursts.
    let (flows, _) = history(&obs, json!({"since": mid, "whitelist": only_udp})).await;
    assert_eq!(dports(&flows), vec![7002; 5]);
    let (flows, _) = history(&obs, json!({"until": mid, "whitelist": only_udp})).await;
    assert_eq!(dports(&flows), vec![7001; 5]);

    // last N then follow: the backlog, then new flows as they happen.
    let mut ws = subscribe(
        &obs.ws_url(),
        json!({"number": 2, "follow": true, "whitelist": only_udp}),
    )
    .await;
    let first = collect_until(&mut ws, WAIT, |g| g.len() >= 2).await;
    assert_eq!(dports(&first), vec![7002, 7002]);
    udp_burst(&h, 7003, 3);
    let more = collect_until(&mut ws, WAIT, |g| g.len() >= 3).await;
    assert_eq!(dports(&more), vec![7003; 3]);
}

fn chrono_now() -> String {
    // RFC 3339 in UTC with nanoseconds, from the system clock.
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    flowscope_model::Timestamp::from_unix_nanos(ns).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_refused_naming_the_field() {
    let h = TestHost::new();
    let obs = Observer::start(&["--interface", &h.host_if]);
    let cases = [
        (json!({"numbr": 5}), "numbr"),
        (
            json!({"whitelist": [{"source_ip": ["198.18.0.0/33"]}]}),
            "source_ip",
        ),
        (json!({"first": true, "follow": true}), "follow"),
        (json!({"number": "many"}), "number"),
        (json!({"whitelist": [{"verdict": ["MAYBE"]}]}), "MAYBE"),
    ];
    for (req, needle) in cases {
        let (lines, close) = history(&obs, req.clone()).await;
        let (code, reason) = close.unwrap_or_else(|| panic!("{req}: no close frame"));
        assert_eq!(code, 1007, "{req}: {reason}");
        let message = lines[0]["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{req}: {message}");
        assert!(reason.len() <= 123);
    }
    // Not JSON at all.
    let mut ws = util::subscribe(&obs.ws_url(), json!(null)).await;
    let mut saw_close = false;
    while let Some(r) = next(&mut ws, WAIT).await {
        if let Received::Closed(code, _) = r {
            assert_eq!(code, 1007);
            saw_close = true;
            break;
        }
    }
    assert!(saw_close);
    // The server keeps serving everyone else.
    let (code, _) = util::http_get(obs.api, "/healthz").unwrap();
    assert_eq!(code, 200);
    let (_, close) = history(&obs, json!({"number": 1})).await;
    assert_eq!(close.unwrap().0, 1000);
    // A plain GET without the WebSocket upgrade is an HTTP error, not a hang.
    let (code, _) = util::http_get(obs.api, "/api/v1/flows").unwrap();
    assert!((400..500).contains(&code), "{code}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_gets_one_aggregated_lost_event() {
    let h = TestHost::new();
    let obs = Observer::start(&["--interface", &h.host_if, "--max-flows", "63"]);
    let filter = json!([{"destination_port": ["7100"]}]);
    let mut ws = subscribe(&obs.ws_url(), json!({"follow": true, "whitelist": filter})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Far more flows than the ring holds, while the reader does not read: the server's
    // socket buffers fill, its cursor stalls, and the writer laps it.
    const N: usize = 6000;
    udp_burst(&h, 7100, N);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut flows = 0usize;
    let mut lost_msgs = Vec::new();
    while let Some(Received::Json(v)) = next(&mut ws, Duration::from_secs(2)).await {
        if v.get("lost_events").is_some() {
            lost_msgs.push(v);
        } else if l4_port(&v, "UDP", "destination_port") == Some(7100) {
            flows += 1;
        }
    }
    assert!(
        !lost_msgs.is_empty(),
        "a lapped reader must be told ({flows} flows)"
    );
    let lost: u64 = lost_msgs
        .iter()
        .map(|m| {
            assert_eq!(m["lost_events"]["source"], "HUBBLE_RING_BUFFER");
            m["lost_events"]["num_events_lost"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .or_else(|| m["lost_events"]["num_events_lost"].as_u64())
                .unwrap()
        })
        .sum();
    assert!(flows < N, "{flows}");
    // Every flow is either delivered or counted as lost (the ring also held the host's ICMP
    // answers, so the lost count may exceed the UDP flows missing).
    assert!(
        flows as u64 + lost >= N as u64,
        "{flows} delivered + {lost} lost < {N}"
    );
    // Aggregated: one lost event per gap, not one per overwritten flow.
    assert!(
        lost_msgs.len() * 20 < lost as usize,
        "{} lost events for {lost}",
        lost_msgs.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interfaces_that_appear_later_are_attached_and_forgotten_when_gone() {
    // A glob no interface matches yet; the observer starts anyway and waits.
    let prefix = format!("fl{}", std::process::id() % 1000);
    let obs = Observer::start(&["--interface", &format!("{prefix}*")]);
    assert_eq!(obs.status()["interfaces"], json!([]));
    let mut ws = subscribe(&obs.ws_url(), json!({"follow": true})).await;

    let h = TestHost::with_prefix(&prefix);
    // Attached within moments of appearing (netlink notification, not the periodic rescan).
    let attached = wait_for(Duration::from_secs(3), || {
        obs.status()["interfaces"]
            .as_array()
            .is_some_and(|a| a.iter().any(|i| i["name"] == h.host_if.as_str()))
    });
    assert!(attached, "{} not attached: {}", h.host_if, obs.status());
    assert!(h.ping(&h.host_ip.to_string(), 1));
    let host = h.host_ip.to_string();
    let flows = collect_until(&mut ws, WAIT, |g| {
        g.iter()
            .any(|f| f["flow"]["IP"]["destination"] == host.as_str())
    })
    .await;
    assert!(
        flows
            .iter()
            .any(|f| f["flow"]["interface"]["name"] == h.host_if.as_str()),
        "{flows:?}"
    );

    let name = h.host_if.clone();
    drop(h);
    let gone = wait_for(Duration::from_secs(3), || {
        obs.status()["interfaces"]
            .as_array()
            .is_some_and(|a| !a.iter().any(|i| i["name"] == name.as_str()))
    });
    assert!(gone, "{name} still listed: {}", obs.status());
}

fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_name_the_workloads_of_the_endpoints_file() {
    let h = TestHost::new();
    let dir = std::env::temp_dir().join(format!("fs-endpoints-{}", util::unique()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("endpoints.json");
    let endpoints = json!({"endpoints": [{
        "namespace": "x", "pod_name": "a", "ips": [h.ns_ip.to_string()],
        "labels": {"pod": "a", "app": "demo"},
        "namespace_labels": {"kubernetes.io/metadata.name": "x", "ns": "x"}
    }]});
    std::fs::write(&file, endpoints.to_string()).unwrap();
    let obs = Observer::start(&[
        "--interface",
        &h.host_if,
        "--endpoint-interface",
        &h.host_if,
        "--endpoints",
        file.to_str().unwrap(),
    ]);
    // The file is read within a second of start.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut ws = subscribe(&obs.ws_url(), json!({"follow": true})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(h.ping(&h.host_ip.to_string(), 1));
    let ns_ip = h.ns_ip.to_string();
    let flows = collect_until(&mut ws, WAIT, |g| {
        g.iter()
            .any(|f| f["flow"]["IP"]["source"] == ns_ip.as_str())
    })
    .await;
    let f = flows
        .iter()
        .find(|f| f["flow"]["IP"]["source"] == ns_ip.as_str())
        .unwrap_or_else(|| panic!("no flow from the pod: {flows:?}"));
    let src = &f["flow"]["source"];
    assert_eq!(src["namespace"], "x");
    assert_eq!(src["pod_name"], "a");
    assert!(src["identity"].as_u64().unwrap() >= 256, "{src}");
    let labels: Vec<&str> = src["labels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(labels.contains(&"k8s:app=demo"), "{labels:?}");
    assert!(
        labels.contains(&"k8s:io.kubernetes.pod.namespace=x"),
        "{labels:?}"
    );
    // Seen on the pod's own veth: leaving the pod is its egress.
    assert_eq!(f["flow"]["traffic_direction"], "EGRESS");
    assert_eq!(f["flow"]["trace_observation_point"], "FROM_ENDPOINT");
    // Filters by pod work against those names.
    let (only_a, _) = history(&obs, json!({"whitelist": [{"source_pod": ["x/a"]}]})).await;
    assert!(!only_a.is_empty());
    assert!(
        only_a
            .iter()
            .all(|f| f["flow"]["source"]["pod_name"] == "a")
    );
    let (none, _) = history(&obs, json!({"whitelist": [{"source_pod": ["y/"]}]})).await;
    assert!(none.is_empty(), "{none:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An observer on `h`'s veth (a workload interface) with L7 `visibility` and flow `metrics`
/// served on a free port, and a follower of its `protocol` flows.
async fn l7_observer(
    h: &TestHost,
    visibility: &str,
    metrics: &str,
    protocol: &str,
) -> (Observer, String, util::Ws) {
    let listen = format!("127.0.0.1:{}", util::free_port());
    let obs = Observer::start(&[
        "--interface",
        &h.host_if,
        "--endpoint-interface",
        &h.host_if,
        "--l7-visibility",
        visibility,
        "--metrics-listen",
        &listen,
        "--metrics",
        metrics,
    ]);
    let ws = subscribe(
        &obs.ws_url(),
        json!({"follow": true, "whitelist": [{"protocol": [protocol]}]}),
    )
    .await;
    (obs, listen, ws)
}

/// `--l7-visibility dns`: a pod's lookups become Hubble's L7 DNS flows (query, types,
/// answers, TTL, rcode, latency), once each, at the pod's interface, and feed the `dns`
/// metrics; without the option there are none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_lookups_become_l7_flows_and_metrics() {
    use flowscope_lab::servers::{self, App, DnsTable, Protocol, ServeSpec};
    let h = TestHost::new();
    let table = Arc::new(DnsTable::new());
    table.insert("svc-a.test.local", std::net::Ipv4Addr::new(198, 19, 77, 9));
    let _dns = servers::serve(
        &[ServeSpec {
            port: 53,
            protocol: Protocol::Udp,
            app: App::Dns,
        }],
        h.host_ip.into(),
        table.clone(),
    )
    .expect("DNS server on the host side");
    let (obs, metrics, mut ws) = l7_observer(&h, "dns", "flow,dns:query", "dns").await;
    let server = SocketAddr::new(h.host_ip.into(), 53);
    let found =
        h.run_in(move || servers::dns_query(server, "svc-a.test.local", Duration::from_secs(2)));
    assert_eq!(found, Ok(vec![std::net::Ipv4Addr::new(198, 19, 77, 9)]));
    let missing =
        h.run_in(move || servers::dns_query(server, "nothing.test.local", Duration::from_secs(2)));
    assert_eq!(missing, Err("NXDOMAIN".to_string()));

    let got = collect_until(&mut ws, WAIT, |v| v.len() >= 4).await;
    let flows: Vec<&Value> = got.iter().map(|v| &v["flow"]).collect();
    assert_eq!(
        flows.len(),
        4,
        "one query and one response per lookup: {got:#?}"
    );
    for f in &flows {
        assert_eq!(f["Type"], "L7", "{f}");
        assert_eq!(f["event_type"]["type"], 129, "{f}");
        assert_eq!(f["traffic_direction"], "EGRESS", "{f}");
        assert_eq!(f["verdict"], "FORWARDED", "{f}");
    }
    let (query, answer) = (flows[0], flows[1]);
    assert_eq!(query["l7"]["type"], "REQUEST", "{query}");
    assert_eq!(query["l7"]["dns"]["query"], "svc-a.test.local.");
    assert_eq!(query["l7"]["dns"]["qtypes"], json!(["A"]));
    assert_eq!(query["IP"]["source"], h.ns_ip.to_string());
    assert_eq!(query["l4"]["UDP"]["destination_port"], 53);
    assert_eq!(answer["l7"]["type"], "RESPONSE", "{answer}");
    assert_eq!(answer["is_reply"], true);
    assert_eq!(answer["l7"]["dns"]["ips"], json!(["198.19.77.9"]));
    assert_eq!(answer["l7"]["dns"]["rrtypes"], json!(["A"]));
    assert!(
        answer["l7"]["dns"]["ttl"].as_u64().is_some_and(|t| t > 0),
        "{answer}"
    );
    let latency: u64 = answer["l7"]["latency_ns"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(latency > 0 && latency < 2_000_000_000, "{answer}");
    assert_eq!(
        answer["Summary"],
        "DNS Answer \"198.19.77.9\" TTL: 30 (Query svc-a.test.local. A)"
    );
    let nx = flows[3];
    assert_eq!(nx["l7"]["dns"]["query"], "nothing.test.local.");
    assert_eq!(nx["l7"]["dns"]["rcode"], 3, "{nx}");
    // Nothing more: the L3/L4 events of the same packets are not DNS flows.
    assert!(next(&mut ws, Duration::from_millis(500)).await.is_none());

    // The dns metrics count the lookups by response code.
    let (_, body) = util::http_get(metrics.parse().unwrap(), "/metrics").unwrap();
    let value = |prefix: &str| util::metric_sum(&body, prefix);
    assert_eq!(value("flowscope_dns_queries_total{"), 2.0, "{body}");
    assert_eq!(
        value("flowscope_dns_responses_total{rcode=\"Non-Existent Domain\""),
        1.0,
        "{body}"
    );
    assert_eq!(
        value("flowscope_dns_responses_total{rcode=\"No Error\""),
        1.0,
        "{body}"
    );
    assert!(body.contains("query=\"svc-a.test.local.\""), "{body}");

    // The pod's later traffic to an address it resolved carries the name both ways
    // (`destination_names`, `source_names` on replies), and `--fqdn` filters select it.
    let host_ip = h.host_ip;
    let resolved =
        h.run_in(move || servers::dns_query(server, "gw.test.local", Duration::from_secs(2)));
    assert_eq!(
        resolved,
        Err("NXDOMAIN".to_string()),
        "not in the table yet"
    );
    table.insert("gw.test.local", host_ip);
    let resolved =
        h.run_in(move || servers::dns_query(server, "gw.test.local", Duration::from_secs(2)));
    assert_eq!(resolved, Ok(vec![host_ip]));
    let mut named = subscribe(
        &obs.ws_url(),
        json!({"follow": true, "whitelist": [{"destination_fqdn": ["gw.test.local"]}, {"source_fqdn": ["*.test.local"]}]}),
    )
    .await;
    assert!(h.ping(&host_ip.to_string(), 1));
    let got = collect_until(&mut named, WAIT, |v| v.len() >= 2).await;
    assert!(got.len() >= 2, "{got:#?}");
    let request = got
        .iter()
        .find(|v| v["flow"]["IP"]["source"] == h.ns_ip.to_string())
        .expect("the echo request");
    assert_eq!(
        request["flow"]["destination_names"],
        json!(["gw.test.local"])
    );
    let reply = got
        .iter()
        .find(|v| v["flow"]["IP"]["destination"] == h.ns_ip.to_string())
        .expect("the echo reply");
    assert_eq!(reply["flow"]["source_names"], json!(["gw.test.local"]));
    drop(obs);

    // Without the option: the same lookups are L3/L4 flows only.
    let plain = Observer::start(&[
        "--interface",
        &h.host_if,
        "--endpoint-interface",
        &h.host_if,
    ]);
    let mut ws = subscribe(&plain.ws_url(), json!({"follow": true})).await;
    let found =
        h.run_in(move || servers::dns_query(server, "svc-a.test.local", Duration::from_secs(2)));
    assert!(found.is_ok());
    let got = collect_until(&mut ws, Duration::from_secs(2), |_| false).await;
    assert!(
        got.iter()
            .any(|v| v["flow"]["l4"]["UDP"]["destination_port"] == 53),
        "{got:#?}"
    );
    assert!(got.iter().all(|v| v["flow"]["Type"] != "L7"), "{got:#?}");
}

/// Flow streams are bounded (`--max-subscribers`): one more is refused with the reason and
/// close code 1013, and served once a stream ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_streams_are_bounded_and_the_refusal_says_why() {
    let h = TestHost::new();
    let obs = Observer::start(&["--interface", &h.host_if, "--max-subscribers", "1"]);
    let first = subscribe(&obs.ws_url(), json!({"follow": true})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut second = subscribe(&obs.ws_url(), json!({"follow": true})).await;
    util::assert_refused(&mut second, "RESOURCE_EXHAUSTED", "--max-subscribers", 1013).await;
    assert_eq!(obs.status()["subscribers"], 1);
    drop(first);
    let deadline = std::time::Instant::now() + WAIT;
    while obs.status()["subscribers"] != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the first stream never ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Served again: a history request ends normally.
    let mut third = subscribe(&obs.ws_url(), json!({"number": 1})).await;
    let mut closed = None;
    while let Some(r) = next(&mut third, WAIT).await {
        if let Received::Closed(code, _) = r {
            closed = Some(code);
            break;
        }
    }
    assert_eq!(closed, Some(1000));
}

/// `--l7-visibility http:PORT`: HTTP/1.x requests to a pod and its responses become Hubble's
/// L7 HTTP flows at the server pod's interface (method, URL, protocol, status, latency), once
/// each, and feed the `httpV2` metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_exchanges_become_l7_flows_and_metrics() {
    use flowscope_lab::servers::{self, App, DnsTable, Protocol, ServeSpec};
    let h = TestHost::new();
    // The server is the "pod" in the namespace; the client is on the host side.
    let ns_ip = h.ns_ip;
    let _server = h.run_in(move || {
        servers::serve(
            &[ServeSpec {
                port: 8080,
                protocol: Protocol::Tcp,
                app: App::Http,
            }],
            ns_ip.into(),
            Arc::new(DnsTable::new()),
        )
        .expect("HTTP server in the namespace")
    });
    let (_obs, metrics, mut ws) = l7_observer(&h, "http:8080", "flow,httpV2", "http").await;
    let dst = SocketAddr::new(ns_ip.into(), 8080);
    for (method, path) in [("GET", "/api/items"), ("POST", "/api/orders")] {
        let r = servers::http_request(dst, method, path, Duration::from_secs(2));
        assert!(r.connected, "{method} {path}: {r:?}");
    }
    let got = collect_until(&mut ws, WAIT, |v| v.len() >= 4).await;
    let flows: Vec<&Value> = got.iter().map(|v| &v["flow"]).collect();
    assert_eq!(
        flows.len(),
        4,
        "a request and a response per exchange: {got:#?}"
    );
    for f in &flows {
        assert_eq!(f["Type"], "L7", "{f}");
        assert_eq!(f["traffic_direction"], "INGRESS", "{f}");
        assert_eq!(f["l7"]["http"]["protocol"], "HTTP/1.1", "{f}");
    }
    let (get, get_res, post, post_res) = (flows[0], flows[1], flows[2], flows[3]);
    assert_eq!(get["l7"]["type"], "REQUEST");
    assert_eq!(get["l7"]["http"]["method"], "GET");
    assert_eq!(
        get["l7"]["http"]["url"],
        format!("http://{ns_ip}:8080/api/items")
    );
    assert_eq!(get["IP"]["destination"], ns_ip.to_string());
    assert_eq!(get_res["l7"]["type"], "RESPONSE");
    assert_eq!(get_res["is_reply"], true);
    assert_eq!(get_res["l7"]["http"]["code"], 200);
    assert_eq!(
        get_res["l7"]["http"]["method"], "GET",
        "the request's line on the response"
    );
    assert!(get_res["l7"]["latency_ns"].as_str().is_some(), "{get_res}");
    assert_eq!(post["l7"]["http"]["method"], "POST");
    assert_eq!(
        post_res["l7"]["http"]["url"],
        format!("http://{ns_ip}:8080/api/orders")
    );
    assert!(next(&mut ws, Duration::from_millis(500)).await.is_none());

    // httpV2: requests by method and status, and their duration.
    let (_, body) = util::http_get(metrics.parse().unwrap(), "/metrics").unwrap();
    let value = |prefix: &str| util::metric_sum(&body, prefix);
    assert_eq!(
        value("flowscope_http_requests_total{method=\"GET\""),
        1.0,
        "{body}"
    );
    assert_eq!(
        value("flowscope_http_requests_total{method=\"POST\""),
        1.0,
        "{body}"
    );
    assert_eq!(
        value("flowscope_http_request_duration_seconds_count"),
        2.0,
        "{body}"
    );
}

/// `--export-file`: new flows that pass the lists go to a file as `observe -o json` lines,
/// rotated by size with a bounded number of backups; `observe --input-file` reads them back and
/// the status counts them.
#[test]
fn flows_are_exported_to_a_rotated_file_through_the_lists() {
    let h = TestHost::new();
    let dir = util::TempDir::new("export");
    let path = dir.join("flows.log");
    let metrics = format!("127.0.0.1:{}", util::free_port());
    let obs = Observer::start(&[
        "--interface",
        &h.host_if,
        "--metrics-listen",
        &metrics,
        "--export-file",
        path.to_str().unwrap(),
        "--export-file-max-size-mb",
        "0.02",
        "--export-file-max-backups",
        "2",
        "--export-denylist",
        r#"{"destination_port":["7201"]}"#,
        "--export-field-mask",
        "time,verdict,l4",
    ]);
    udp_burst(&h, 7201, 50);
    udp_burst(&h, 7200, 400);
    let exported = wait_for(Duration::from_secs(15), || {
        obs.status()["export"]["flows"]
            .as_u64()
            .is_some_and(|n| n >= 400)
    });
    let status = obs.status();
    assert!(exported, "{status:#}");
    // The exporter's health, as Prometheus scrapes it.
    let (_, _, scraped) = util::prom::scrape(&metrics, "text/plain");
    let value = |name: &str| {
        scraped
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{scraped}"))
    };
    assert!(value("flowscope_export_flows_total") >= 400.0);
    assert!(value("flowscope_export_rotations_total") >= 3.0);
    assert_eq!(value("flowscope_export_lost_total"), 0.0);
    assert_eq!(value("flowscope_export_write_errors_total"), 0.0);
    // Stopped, so no batch is being written while the files are read.
    obs.stop();
    let export = &status["export"];
    assert_eq!(export["path"], path.to_str().unwrap());
    assert_eq!(export["lost"], 0, "{export}");
    assert_eq!(export["write_errors"], 0, "{export}");
    assert!(export["rotations"].as_u64().unwrap() >= 3, "{export}");

    // The file and the two newest backups, none past the size by more than a line.
    let mut names: Vec<String> = std::fs::read_dir(&*dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(names[2], "flows.log");
    let mut lines = Vec::new();
    for name in &names {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let longest = text.lines().map(str::len).max().unwrap_or(0);
        assert!(
            text.len() <= (0.02 * 1024.0 * 1024.0) as usize + longest + 1,
            "{name}: {} bytes",
            text.len()
        );
        lines.extend(text.lines().map(str::to_owned));
    }
    let flows: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        flows
            .iter()
            .all(|f| f["node_name"] == "test-node" && f["flow"].is_object())
    );
    assert!(
        flows
            .iter()
            .any(|f| l4_port(f, "UDP", "destination_port") == Some(7200)),
        "no flow to 7200 exported"
    );
    assert!(
        !flows
            .iter()
            .any(|f| l4_port(f, "UDP", "destination_port") == Some(7201)),
        "a denylisted flow was exported"
    );

    // What Hubble's tools read, flowscope reads back.
    let out = util::flowscope(&[
        "observe",
        "--input-file",
        path.to_str().unwrap(),
        "--port",
        "7200",
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read_back = String::from_utf8_lossy(&out.stdout).lines().count();
    assert!(read_back > 0, "observe --input-file read nothing");
}

/// A full disk under the export file: the flows that cannot be written are counted and the
/// status says why and what to do; once there is room the export resumes, and the observer
/// serves throughout.
#[test]
fn a_full_disk_for_the_exporter_is_counted_said_and_survived() {
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let h = TestHost::new();
    let dir = util::TempDir::new("export-full");
    let small = dir.join("small");
    std::fs::create_dir(&small).unwrap();
    let small_path = small.to_str().unwrap().to_string();
    util::run(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            "size=16k",
            "fs-test-export",
            &small_path,
        ],
    );
    let _unmount = Unmount(small.clone());
    let path = small.join("flows.log");
    let obs = Observer::start(&[
        "--interface",
        &h.host_if,
        "--export-file",
        path.to_str().unwrap(),
    ]);
    // About twenty flows fill 16 KiB.
    let full = util::eventually("export write errors", Duration::from_secs(30), || {
        udp_burst(&h, 7301, 50);
        let export = obs.status()["export"].clone();
        (export["write_errors"].as_u64()? > 0).then_some(export)
    });
    let error = full["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("No space left on device")
            && error.contains("status.export.write_errors")
            && error.contains("--export-file-max-size-mb"),
        "{full}"
    );
    let written = full["flows"].as_u64().unwrap();
    util::run("mount", &["-o", "remount,size=4m", &small_path]);
    util::eventually("the export resumes", Duration::from_secs(30), || {
        udp_burst(&h, 7302, 20);
        (obs.status()["export"]["flows"].as_u64()? > written).then_some(())
    });
    obs.stop();
}

/// Bad export settings stop the observer before it attaches anything, naming the flag.
#[test]
fn bad_export_settings_are_refused_naming_the_flag() {
    let dir = util::TempDir::new("export-bad");
    let file = dir.join("flows.log");
    let file = file.to_str().unwrap();
    let blocker = dir.join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let under_a_file = blocker.join("flows.log");
    let cases: [(&[&str], &str); 5] = [
        (
            &["--export-file", file, "--export-allowlist", "{bad"],
            "--export-allowlist: \"{bad\" is not a FlowFilter",
        ),
        (
            &[
                "--export-file",
                file,
                "--export-denylist",
                r#"{"source_pod":["a"],"nope":1}"#,
            ],
            "unknown field `nope`",
        ),
        (
            &["--export-file", file, "--export-file-max-size-mb", "0"],
            "0 MB is too small",
        ),
        (
            &[
                "--export-file",
                file,
                "--export-field-mask",
                "time,source.podname",
            ],
            "--export-field-mask: field mask path `source.podname`",
        ),
        (
            &["--export-file", under_a_file.to_str().unwrap()],
            "--export-file",
        ),
    ];
    for (args, want) in cases {
        // Bounded: an observer that wrongly accepted would run until stopped.
        let out = std::process::Command::new("timeout")
            .args([
                "20",
                env!("CARGO_BIN_EXE_flowscope"),
                "observer",
                "--no-pin",
            ])
            .args(["--interface", "fsx-no-such-if", "--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
    assert!(
        !std::path::Path::new(file).exists(),
        "a refused export wrote its file"
    );
}

/// Faults at start are one line saying what is wrong and what to do: a port in use (API and
/// metrics), no privileges for the eBPF programs, a pin folder off the BPF filesystem or held
/// by another observer; an interface that does not exist is waited for, and the log says so.
/// `--cleanup` is refused while an observer holds the pins.
#[test]
fn startup_faults_say_what_is_wrong_and_what_to_do() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let run = |prefix: &[&str], args: &[&str], seconds: &str| {
        std::process::Command::new("timeout")
            .arg(seconds)
            .args(prefix)
            .args([env!("CARGO_BIN_EXE_flowscope"), "observer"])
            .args(["--interface", "fsx-no-such-if"])
            .args(args)
            .output()
            .unwrap()
    };
    // A pin root another observer holds.
    let h = TestHost::new();
    let held = util::test_bpf_root();
    let _held_guard = util::PinGuard(held.clone());
    let held_str = held.to_str().unwrap();
    let holder = Observer::start(&["--interface", &h.host_if, "--bpf-root", held_str]);
    let tmp = util::TempDir::new("not-bpffs");
    let not_bpffs = tmp.join("pins");
    let unprivileged_root = util::test_bpf_root();
    let nobody: &[&str] = &[
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    let cases: [(&[&str], &[&str], &str); 6] = [
        (
            &[],
            &["--no-pin", "--listen", &taken],
            "cannot listen for the API on",
        ),
        (
            &[],
            &[
                "--no-pin",
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                &taken,
            ],
            "cannot listen for metrics on",
        ),
        (
            nobody,
            &["--no-pin", "--listen", "127.0.0.1:0"],
            "run the observer as root (or with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON)",
        ),
        (
            nobody,
            &[
                "--bpf-root",
                unprivileged_root.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ],
            "run the observer as root (or with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON)",
        ),
        (
            &[],
            &[
                "--bpf-root",
                not_bpffs.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ],
            "is not on a BPF filesystem, where the datapath is pinned to outlive the observer: \
             mount one (`mount -t bpf bpf /sys/fs/bpf`)",
        ),
        (
            &[],
            &["--bpf-root", held_str, "--listen", "127.0.0.1:0"],
            "another observer is using the datapath pinned under",
        ),
    ];
    for (prefix, args, want) in cases {
        let out = run(prefix, args, "20");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{prefix:?} {args:?} started");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        if want.starts_with("cannot listen") {
            assert!(
                stderr.contains(&format!("{taken} (another process listens there"))
                    && stderr.contains("choose another address with"),
                "{stderr}"
            );
        }
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
    assert!(!not_bpffs.exists(), "a pin folder was made off bpffs");
    assert!(!unprivileged_root.exists());
    // Nothing of the refused observers touched the holder's pins: it still serves and its
    // links are in place.
    assert_eq!(holder.status()["pins"]["root"], held_str);
    let links: Vec<_> = std::fs::read_dir(held.join("links")).unwrap().collect();
    assert_eq!(links.len(), 2, "{links:?}");
    let cleanup = util::flowscope(&["observer", "--cleanup", "--bpf-root", held_str]);
    let stderr = String::from_utf8_lossy(&cleanup.stderr);
    assert!(!cleanup.status.success());
    assert!(
        stderr.contains("an observer is running with the datapath pinned under")
            && stderr.contains("stop it first"),
        "{stderr}"
    );
    holder.stop();
    let cleanup = util::flowscope(&["observer", "--cleanup", "--bpf-root", held_str]);
    assert!(cleanup.status.success(), "{cleanup:?}");
    assert!(
        String::from_utf8_lossy(&cleanup.stdout).contains("2 links (detached)"),
        "{cleanup:?}"
    );
    assert!(!held.exists());
    let again = util::flowscope(&["observer", "--cleanup", "--bpf-root", held_str]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("Nothing is pinned under"));

    // No such interface: the observer starts, waits for it, and says so.
    let out = run(&[], &["--no-pin", "--listen", "127.0.0.1:0"], "3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("No interface matches --interface \"fsx-no-such-if\" yet"),
        "{stderr}"
    );
}

/// A field mask in the request: each flow carries only the fields named; a path flows do not
/// have is refused naming it; `observe --field-mask` asks for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_masks_send_only_the_fields_asked_for() {
    let h = TestHost::new();
    let obs = Observer::start(&["--interface", &h.host_if]);
    udp_burst(&h, 7300, 20);
    // The burst's flows are stored a moment after they are sent.
    let stored = wait_for(Duration::from_secs(10), || {
        obs.status()["seen_flows"].as_u64().is_some_and(|n| n >= 20)
    });
    assert!(stored, "{}", obs.status());
    let request =
        json!({"number": 10, "field_mask": "time,IP.destination,l4.UDP.destination_port,verdict"});
    let (got, _) = history(&obs, request).await;
    let flows: Vec<&Value> = got.iter().filter(|v| v.get("flow").is_some()).collect();
    assert!(!flows.is_empty(), "{got:?}");
    for f in &flows {
        let flow = f["flow"].as_object().unwrap();
        assert!(
            flow.keys()
                .all(|k| ["time", "IP", "l4", "verdict"].contains(&k.as_str())),
            "{f}"
        );
        assert_eq!(flow["IP"].as_object().unwrap().len(), 1, "{f}");
        // In flow.proto's order, as Hubble writes them. A flow that is not UDP (the host's own
        // IPv6 neighbour discovery on the link) has nothing under the masked `l4.UDP`.
        let keys: Vec<&str> = flow.keys().map(String::as_str).collect();
        let want: &[&str] = if flow.contains_key("l4") {
            &["time", "verdict", "IP", "l4"]
        } else {
            &["time", "verdict", "IP"]
        };
        assert_eq!(keys, want, "{f}");
        assert!(
            flow.contains_key("time") && flow.contains_key("verdict"),
            "{f}"
        );
        // The envelope stays whole.
        assert_eq!(f["node_name"], "test-node");
    }
    assert!(
        flows
            .iter()
            .any(|f| f["flow"]["l4"]["UDP"]["destination_port"] == 7300),
        "{flows:?}"
    );

    let (got, close) = history(&obs, json!({"number": 1, "field_mask": "source.podname"})).await;
    let error = got[0]["error"]["message"].as_str().unwrap_or_default();
    assert!(
        error.contains("field mask path `source.podname`: `source` has no field `podname`"),
        "{got:?}"
    );
    assert_eq!(close.unwrap().0, 1007);

    let out = util::flowscope(&[
        "observe",
        "--server",
        &obs.api.to_string(),
        "--last",
        "3",
        "--field-mask",
        "verdict",
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(
        lines
            .iter()
            .all(|l| l["flow"].as_object().unwrap().keys().eq(["verdict"].iter())),
        "{lines:?}"
    );
}

/// The UI's files carry an entity tag: a browser that has the file gets a 304 without the
/// bytes (the wasm is megabytes), and a file that changed comes whole.
#[test]
fn ui_files_are_revalidated_not_downloaded_again() {
    use std::io::{Read as _, Write as _};
    let h = TestHost::new();
    let obs = Observer::start(&["--interface", &h.host_if]);
    let get = |path: &str, if_none_match: Option<&str>| -> (u16, String) {
        let mut s = TcpStream::connect(obs.api).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let extra = if_none_match.map_or(String::new(), |t| format!("If-None-Match: {t}\r\n"));
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{extra}\r\n",
            obs.api
        )
        .unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf).to_string();
        let code = text.split_whitespace().nth(1).unwrap().parse().unwrap();
        (code, text)
    };
    let header = |response: &str, name: &str| -> Option<String> {
        response.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    let (code, first) = get("/", None);
    assert_eq!(code, 200, "{first}");
    let tag = header(&first, "etag").unwrap_or_else(|| panic!("no ETag: {first}"));
    let (code, again) = get("/", Some(&tag));
    assert_eq!(code, 304, "{again}");
    assert_eq!(header(&again, "etag").as_deref(), Some(tag.as_str()));
    assert!(again.ends_with("\r\n\r\n"), "a 304 has no body: {again}");
    let (code, _) = get("/", Some("\"0000000000000000\""));
    assert_eq!(code, 200);
}
