//! Hubble's gRPC API, end to end as root: an observer on a test host's real traffic, asked by a
//! Hubble client generated from the vendored protos with another toolchain (protoc and grpcio's
//! Python plugin, from Debian), on the same port as the WebSocket.

mod util;

use std::{
    net::{SocketAddr, UdpSocket},
    time::Duration,
};

use serde_json::{Value, json};
use util::{Observer, Received, Relay, TestHost, free_port, hubble::Hubble, next, subscribe};

const WAIT: Duration = Duration::from_secs(10);

fn udp_burst(h: &TestHost, port: u16, n: usize) {
    let ip = h.host_ip;
    h.run_in(move || {
        for i in 0..n {
            let u = UdpSocket::bind(("0.0.0.0", 21000 + i as u16)).unwrap();
            u.send_to(b"x", (ip, port)).unwrap();
        }
    });
}

fn source_ports(flows: &[Value]) -> Vec<u64> {
    flows
        .iter()
        .filter_map(|f| f["flow"]["l4"]["UDP"]["source_port"].as_u64())
        .collect()
}

/// The flows of a finite request over the WebSocket.
async fn websocket_history(obs: &Observer, request: Value) -> Vec<Value> {
    let mut ws = subscribe(&obs.ws_url(), request).await;
    let mut got = Vec::new();
    while let Some(Received::Json(v)) = next(&mut ws, WAIT).await {
        if v.get("flow").is_some() {
            got.push(v);
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubble_grpc_clients_get_the_flows_the_websocket_gets() {
    let hubble = Hubble::generate();
    let h = TestHost::new();
    let obs = Observer::start(&["--interface", &h.host_if]);
    udp_burst(&h, 7400, 12);
    util::eventually("the burst stored", WAIT, || {
        (obs.status()["seen_flows"].as_u64() >= Some(12)).then_some(())
    });

    // Last N with a filter: the same flows, in the same order, in both encodings.
    let request = json!({"number": 8, "whitelist": [{"destination_port": ["7400"]}]});
    let grpc = hubble
        .call(obs.api, &["flows", &request.to_string()])
        .unwrap();
    let websocket = websocket_history(&obs, request).await;
    assert_eq!(grpc.len(), 8, "{grpc:?}");
    assert_eq!(source_ports(&grpc), source_ports(&websocket));
    for f in &grpc {
        assert_eq!(f["node_name"], "test-node", "{f}");
        assert_eq!(f["flow"]["l4"]["UDP"]["destination_port"], 7400, "{f}");
        assert_eq!(f["flow"]["verdict"], "FORWARDED", "{f}");
        assert_eq!(f["flow"]["IP"]["destination"], h.host_ip.to_string(), "{f}");
        assert!(f["flow"]["time"].as_str().is_some(), "{f}");
    }

    // `flowscope observe` speaks gRPC to HOST:PORT, as `hubble observe` does, and prints
    // exactly what it prints from the WebSocket (ws://HOST:PORT).
    let observe = |server: String| {
        let out = util::flowscope(&[
            "observe",
            "--server",
            &server,
            "--last",
            "5",
            "--to-port",
            "7400",
            "-o",
            "jsonpb",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let over_grpc = observe(obs.api.to_string());
    assert_eq!(over_grpc.lines().count(), 5, "{over_grpc}");
    assert_eq!(over_grpc, observe(format!("ws://{}", obs.api)));
    // HUBBLE_SERVER is where `hubble observe` looks; FLOWSCOPE_SERVER goes first.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flowscope"))
        .args([
            "observe",
            "--last",
            "5",
            "--to-port",
            "7400",
            "-o",
            "jsonpb",
        ])
        .env_remove("FLOWSCOPE_SERVER")
        .env("HUBBLE_SERVER", obs.api.to_string())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), over_grpc);

    // First N, and a field mask: only the fields asked for.
    let masked = hubble
        .call(
            obs.api,
            &[
                "flows",
                &json!({"number": 3, "first": true,
                    "whitelist": [{"destination_port": ["7400"]}],
                    "field_mask": "verdict,l4.UDP.destination_port"})
                .to_string(),
            ],
        )
        .unwrap();
    assert_eq!(masked.len(), 3, "{masked:?}");
    for f in &masked {
        let keys: Vec<&String> = f["flow"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["verdict", "l4"], "{f}");
    }

    // Follow: flows stored after the request arrive as they come.
    let mut follow = hubble.command(
        obs.api,
        &[
            "flows",
            &json!({"follow": true, "whitelist": [{"destination_port": ["7401"]}]}).to_string(),
            "5",
        ],
    );
    let follower = std::thread::spawn(move || {
        let out = follow.output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    });
    // Sent until the follower has had its five (it may connect after the first bursts).
    util::eventually("five followed flows", Duration::from_secs(20), || {
        udp_burst(&h, 7401, 5);
        follower.is_finished().then_some(())
    });
    let followed = follower.join().unwrap();
    assert_eq!(followed.lines().count(), 5, "{followed}");
    assert!(
        followed.contains("\"destination_port\": 7401"),
        "{followed}"
    );

    // The unary calls answer what the JSON API does.
    let status = &hubble.call(obs.api, &["status"]).unwrap()[0];
    let json_status = obs.status();
    assert_eq!(status["max_flows"], json_status["max_flows"].to_string());
    assert!(
        status["seen_flows"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 17,
        "{status}"
    );
    assert_eq!(status["num_connected_nodes"], 1, "{status}");
    let nodes = &hubble.call(obs.api, &["nodes"]).unwrap()[0]["nodes"];
    assert_eq!(nodes.as_array().unwrap().len(), 1, "{nodes}");
    assert_eq!(nodes[0]["name"], "test-node");
    assert_eq!(nodes[0]["state"], "NODE_CONNECTED");

    // Peer.Notify names the observer, at the address it serves on.
    let peers = hubble.call(obs.api, &["peers", "1"]).unwrap();
    assert_eq!(peers[0]["name"], "test-node", "{peers:?}");
    assert_eq!(peers[0]["address"], obs.api.to_string(), "{peers:?}");
    assert_eq!(peers[0]["type"], "PEER_ADDED", "{peers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_refusals_carry_status_codes_and_the_websockets_messages() {
    let hubble = Hubble::generate();
    let h = TestHost::new();
    let obs = Observer::start(&["--interface", &h.host_if, "--max-subscribers", "1"]);

    // The call fails with `code`, and its message says `says`.
    let refused = |args: &[&str], code: &str, says: &str| {
        let err = hubble.call(obs.api, args).unwrap_err();
        assert_eq!(err["code"], code, "{args:?}: {err}");
        assert!(
            err["details"].as_str().unwrap().contains(says),
            "{args:?}: {err}"
        );
    };
    let flows = |request: serde_json::Value| request.to_string();
    refused(
        &["flows", &flows(json!({"first": true, "follow": true}))],
        "INVALID_ARGUMENT",
        "first and follow cannot be combined",
    );
    refused(
        &[
            "flows",
            &flows(json!({"number": 1, "field_mask": "source.podname"})),
        ],
        "INVALID_ARGUMENT",
        "`source` has no field `podname`",
    );
    refused(&["agent-events"], "UNIMPLEMENTED", "GetAgentEvents");
    refused(&["debug-events"], "UNIMPLEMENTED", "GetDebugEvents");

    // One stream at most: a WebSocket follower holds it; a gRPC request is refused.
    let ws = subscribe(&obs.ws_url(), json!({"follow": true})).await;
    util::eventually("the follower counted", WAIT, || {
        (obs.status()["subscribers"] == 1).then_some(())
    });
    refused(
        &["flows", &flows(json!({"number": 1}))],
        "RESOURCE_EXHAUSTED",
        "--max-subscribers",
    );
    drop(ws);
    util::eventually("the follower gone", WAIT, || {
        (obs.status()["subscribers"] == 0).then_some(())
    });
    assert!(
        hubble
            .call(obs.api, &["flows", &json!({"number": 1}).to_string()])
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_of_two_observers_answers_hubble_grpc_clients_for_both() {
    let hubble = Hubble::generate();
    let (h1, h2) = (TestHost::new(), TestHost::new());
    let at = || -> SocketAddr { format!("127.0.0.1:{}", free_port()).parse().unwrap() };
    let oa = Observer::start_at(at(), "node-a", &["--interface", &h1.host_if]);
    let ob = Observer::start_at(at(), "node-b", &["--interface", &h2.host_if]);
    let relay = Relay::start(&[
        "--peer",
        &format!("node-a={}", oa.api),
        "--peer",
        &format!("node-b={}", ob.api),
    ]);
    relay.wait_nodes(2, 0, WAIT);
    udp_burst(&h1, 7500, 4);
    udp_burst(&h2, 7500, 4);
    for o in [&oa, &ob] {
        util::eventually("the burst stored", WAIT, || {
            (o.status()["seen_flows"].as_u64() >= Some(4)).then_some(())
        });
    }

    // Node status first (both connected), then each node's last 4 flows, in time order.
    let got = hubble
        .call(
            relay.api,
            &[
                "flows",
                &json!({"number": 4, "whitelist": [{"destination_port": ["7500"]}]}).to_string(),
            ],
        )
        .unwrap();
    let status = &got[0]["node_status"];
    assert_eq!(status["state_change"], "NODE_CONNECTED", "{got:?}");
    let mut named: Vec<&str> = status["node_names"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    named.sort_unstable();
    assert_eq!(named, ["node-a", "node-b"]);
    let flows: Vec<&Value> = got.iter().filter(|v| v.get("flow").is_some()).collect();
    assert_eq!(flows.len(), 8, "{got:?}");
    for node in ["node-a", "node-b"] {
        assert_eq!(
            flows.iter().filter(|f| f["node_name"] == node).count(),
            4,
            "{got:?}"
        );
    }
    let times: Vec<&str> = flows
        .iter()
        .map(|f| f["flow"]["time"].as_str().unwrap())
        .collect();
    let mut sorted = times.clone();
    sorted.sort_unstable();
    assert_eq!(times, sorted, "merged in time order");

    // The relay sums what its observers last reported (it polls them).
    let status = util::eventually("the relay's status counting both bursts", WAIT, || {
        let status = hubble.call(relay.api, &["status"]).unwrap().remove(0);
        (status["seen_flows"].as_str()?.parse::<u64>().ok()? >= 8).then_some(status)
    });
    assert_eq!(status["num_connected_nodes"], 2, "{status}");
    let nodes = &hubble.call(relay.api, &["nodes"]).unwrap()[0]["nodes"];
    let names: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["name"].as_str())
        .collect();
    assert_eq!(names, ["node-a", "node-b"], "{nodes}");

    // A node that goes away is reported to the gRPC client too.
    drop(ob);
    relay.wait_nodes(1, 1, Duration::from_secs(20));
    let got = hubble
        .call(relay.api, &["flows", &json!({"number": 1}).to_string()])
        .unwrap();
    assert!(
        got.iter()
            .any(|v| v["node_status"]["state_change"] == "NODE_UNAVAILABLE"
                && v["node_status"]["node_names"] == json!(["node-b"])),
        "{got:?}"
    );
}
