//! TLS on the API listeners, end to end as root: certificates made with openssl, an observer
//! serving TLS with mutual TLS on real traffic, a Hubble gRPC client (Python's grpcio) and curl
//! with a good certificate, one from another CA and none; and the rule that plain text is
//! for loopback.

mod util;

use std::{net::SocketAddr, process::Command, time::Duration};

use util::{Observer, TestHost, certs::Certs, free_port, hubble::Hubble};

const WAIT: Duration = Duration::from_secs(10);

/// `curl` over TLS to the observer's `/readyz`, with the client certificate `client` (a
/// name in `certs`) or none: whether it answered 200.
fn curl_ready(certs: &Certs, api: SocketAddr, client: Option<&str>) -> bool {
    let mut cmd = Command::new("curl");
    cmd.args(["-sf", "-o", "/dev/null", "--max-time", "5", "--cacert"])
        .arg(certs.path("ca.pem"));
    if let Some(name) = client {
        cmd.arg("--cert")
            .arg(certs.path(&format!("{name}.pem")))
            .arg("--key")
            .arg(certs.path(&format!("{name}.key")));
    }
    cmd.arg(format!("https://{api}/readyz"))
        .status()
        .is_ok_and(|s| s.success())
}

/// An observer on `h` serving `api` over TLS, admitting only clients with a certificate from
/// `certs`' CA.
fn mutual_tls_observer(certs: &Certs, h: &TestHost, api: SocketAddr) -> Observer {
    Observer::start_ready(
        api,
        "tls-node",
        &[
            "--interface",
            &h.host_if,
            "--tls-cert-file",
            &certs.arg("server.pem"),
            "--tls-key-file",
            &certs.arg("server.key"),
            "--tls-client-ca-files",
            &certs.arg("ca.pem"),
        ],
        |api| curl_ready(certs, api, Some("client")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_clients_with_a_certificate_from_the_ca() {
    let certs = Certs::generate();
    let hubble = Hubble::generate();
    let h = TestHost::new();
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let obs = mutual_tls_observer(&certs, &h, api);
    // Two echo requests and their replies: at least four flows.
    h.ping(&h.host_ip.to_string(), 2);

    let tls = |client: Option<&str>| {
        let mut env = vec![("HUBBLE_TLS_CA", certs.arg("ca.pem"))];
        if let Some(name) = client {
            env.push(("HUBBLE_TLS_CERT", certs.arg(&format!("{name}.pem"))));
            env.push(("HUBBLE_TLS_KEY", certs.arg(&format!("{name}.key"))));
        }
        env
    };
    // A certificate from the CA: gRPC and HTTPS work (flows included).
    let status = &hubble
        .call_with(obs.api, &["status"], &tls(Some("client")))
        .unwrap()[0];
    assert_eq!(status["num_connected_nodes"], 1, "{status}");
    let flows = util::eventually("the pings' flows over TLS", WAIT, || {
        let got = hubble
            .call_with(
                obs.api,
                &["flows", &serde_json::json!({"number": 5}).to_string()],
                &tls(Some("client")),
            )
            .unwrap();
        (got.len() >= 4).then_some(got)
    });
    assert_eq!(flows[0]["node_name"], "tls-node", "{flows:?}");
    // One from another CA, or none: refused in the handshake, for gRPC and HTTPS alike.
    for client in [Some("other-client"), None] {
        let err = hubble
            .call_with(obs.api, &["status"], &tls(client))
            .unwrap_err();
        assert_eq!(err["code"], "UNAVAILABLE", "{client:?}: {err}");
        assert!(!curl_ready(&certs, obs.api, client), "{client:?}");
    }
    // `flowscope observe` over TLS with Hubble's flags: gRPC (tls://) and the WebSocket
    // (wss://) print the same flows; another CA's certificate is refused.
    let observe = |server: &str, client: &str| {
        util::flowscope(&[
            "observe",
            "--server",
            server,
            "--tls-ca-cert-files",
            &certs.arg("ca.pem"),
            "--tls-client-cert-file",
            &certs.arg(&format!("{client}.pem")),
            "--tls-client-key-file",
            &certs.arg(&format!("{client}.key")),
            "--first",
            "3",
            "-o",
            "jsonpb",
        ])
    };
    let grpc = observe(&format!("tls://{}", obs.api), "client");
    assert!(
        grpc.status.success(),
        "{}",
        String::from_utf8_lossy(&grpc.stderr)
    );
    let grpc = String::from_utf8_lossy(&grpc.stdout).to_string();
    assert_eq!(grpc.lines().count(), 3, "{grpc}");
    let ws = observe(&format!("wss://{}", obs.api), "client");
    assert_eq!(String::from_utf8_lossy(&ws.stdout), grpc);
    let refused = observe(&format!("tls://{}", obs.api), "other-client");
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(&format!("{}", obs.api)),
        "{err} {:?} {}",
        refused.status,
        String::from_utf8_lossy(&refused.stdout)
    );

    // Plain text gets nothing from a TLS listener.
    let err = hubble.call(obs.api, &["status"]).unwrap_err();
    assert_eq!(err["code"], "UNAVAILABLE", "{err}");
    assert!(util::http_get(obs.api, "/readyz").is_none_or(|(code, _)| code != 200));
}

#[test]
fn plain_text_is_refused_off_loopback_unless_asked_for() {
    let h = TestHost::new();
    let listen = format!("0.0.0.0:{}", free_port());
    let out = util::flowscope(&["observer", "--interface", &h.host_if, "--listen", &listen]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("--listen {listen} is not a loopback address"))
            && stderr.contains("--tls-cert-file")
            && stderr.contains("--disable-server-tls"),
        "{stderr}"
    );
    // Refused before anything was attached: the host's interface has no program of ours.
    assert!(!stderr.contains("Attached"), "{stderr}");

    // Asked for, it serves (with a warning in its log).
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_flowscope"))
        .args([
            "observer",
            "--interface",
            &h.host_if,
            "--disable-server-tls",
            "--no-pin",
        ])
        .args(["--listen", &format!("0.0.0.0:{port}")])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let observer = util::Killed(child);
    let local: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    util::eventually("the plain observer ready", WAIT, || {
        util::http_get(local, "/readyz").and_then(|(code, _)| (code == 200).then_some(()))
    });
    drop(observer);

    let out = util::flowscope(&[
        "relay",
        "--peer",
        "127.0.0.1:1",
        "--listen",
        &format!("0.0.0.0:{}", free_port()),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("relay: --listen 0.0.0.0:"), "{stderr}");
}

/// The relay reaches observers that demand mutual TLS with its own certificate, and serves its
/// clients over TLS too; with a certificate from another CA the observer stays unavailable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_speaks_mutual_tls_to_its_observers() {
    let certs = Certs::generate();
    let hubble = Hubble::generate();
    let h = TestHost::new();
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _obs = mutual_tls_observer(&certs, &h, api);
    h.ping(&h.host_ip.to_string(), 2);

    let relay_tls = |client: &str| {
        vec![
            "--peer".to_string(),
            api.to_string(),
            "--observer-tls-ca-files".into(),
            certs.arg("ca.pem"),
            "--observer-tls-client-cert-file".into(),
            certs.arg(&format!("{client}.pem")),
            "--observer-tls-client-key-file".into(),
            certs.arg(&format!("{client}.key")),
            // The relay's own listener, over TLS with the same server certificate.
            "--tls-cert-file".into(),
            certs.arg("server.pem"),
            "--tls-key-file".into(),
            certs.arg("server.key"),
        ]
    };
    let args = relay_tls("client");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let relay = util::Relay::start_ready(&args, |api| curl_ready(&certs, api, None));
    let env = vec![("HUBBLE_TLS_CA", certs.arg("ca.pem"))];
    let status = util::eventually("the observer connected through TLS", WAIT, || {
        let status = hubble
            .call_with(relay.api, &["status"], &env)
            .ok()?
            .remove(0);
        (status["num_connected_nodes"] == 1).then_some(status)
    });
    assert_eq!(status["num_unavailable_nodes"], 0, "{status}");
    let flows = util::eventually("flows through the relay", WAIT, || {
        let got = hubble
            .call_with(
                relay.api,
                &["flows", &serde_json::json!({"number": 3}).to_string()],
                &env,
            )
            .ok()?;
        got.iter().any(|v| v.get("flow").is_some()).then_some(got)
    });
    assert!(
        flows
            .iter()
            .filter(|v| v.get("flow").is_some())
            .all(|v| v["node_name"] == "tls-node"),
        "{flows:?}"
    );
    drop(relay);

    // Another CA's certificate: the observer refuses the relay, which says so.
    let args = relay_tls("other-client");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let relay = util::Relay::start_ready(&args, |api| curl_ready(&certs, api, None));
    let nodes = util::eventually("the observer reported unavailable", WAIT, || {
        let nodes = hubble
            .call_with(relay.api, &["nodes"], &env)
            .ok()?
            .remove(0);
        (nodes["nodes"][0]["state"] == "NODE_UNAVAILABLE").then_some(nodes)
    });
    assert_eq!(nodes["nodes"][0]["address"], api.to_string(), "{nodes}");
}
