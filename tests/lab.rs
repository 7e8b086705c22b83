//! The lab and `connectivity test`, end to end as root: real namespaces, veths and servers,
//! probed with real traffic and judged by the observer.

mod util;

use std::{
    path::Path,
    process::{Command, Output},
};

use serde_json::Value;
use util::{LabGuard, flowscope};

const XYZ: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/labs/xyz.yaml");

fn lab_namespaces() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("fsl-"))
                .collect()
        })
        .unwrap_or_default()
}

fn lab_links() -> usize {
    std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("fsl"))
                .count()
        })
        .unwrap_or(0)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn lab_up_status_down_leave_nothing_behind_even_after_kill_9() {
    let _lab = util::lab_up(XYZ);
    assert_eq!(lab_namespaces().len(), 9);
    let status = text(&flowscope(&["lab", "status"]));
    for pod in ["x/a", "y/b", "z/c"] {
        assert!(status.contains(pod), "{status}");
    }
    assert!(status.contains("80/TCP"), "{status}");
    // Pods reach each other through the host.
    let ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            "fsl-x-a",
            "ping",
            "-c1",
            "-W2",
            "198.18.1.9",
        ])
        .output()
        .unwrap();
    assert!(ping.status.success(), "{}", text(&ping));

    // Again with the same file: reused, not duplicated.
    let again = flowscope(&["lab", "up", XYZ]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("already up"), "{}", text(&again));
    assert_eq!(lab_namespaces().len(), 9);
    // Another lab while this one is up: refused, nothing changed.
    let other = std::env::temp_dir().join(format!("lab-{}.yaml", util::unique()));
    std::fs::write(
        &other,
        "namespaces: [{name: q}]\npods: [{name: p, namespace: q, ports: [{port: 1, protocol: TCP}]}]\n",
    )
    .unwrap();
    let refused = flowscope(&["lab", "up", other.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(text(&refused).contains("already up"), "{}", text(&refused));
    assert_eq!(lab_namespaces().len(), 9);

    // kill -9 the runner: `down` still removes everything.
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string("/run/flowscope/lab/state.json").unwrap())
            .unwrap();
    let pid = state["runner_pid"].as_u64().expect("runner pid") as i32;
    // SAFETY: signalling the lab runner this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let down = flowscope(&["lab", "down"]);
    assert!(down.status.success(), "{}", text(&down));
    assert!(lab_namespaces().is_empty(), "{:?}", lab_namespaces());
    assert_eq!(lab_links(), 0);
    assert!(
        !Path::new("/run/flowscope/lab").exists(),
        "lab state left behind"
    );
    // Down is idempotent.
    assert!(flowscope(&["lab", "down"]).status.success());
    let _ = std::fs::remove_file(other);
}

#[test]
fn bad_lab_files_are_refused_before_anything_is_created() {
    let _guard = LabGuard;
    let _ = flowscope(&["lab", "down"]);
    let cases = [
        (
            "namespaces: [{name: x}]\npods:\n  - {name: a, namespace: x, ports: [{port: 80, protocol: SCTP}]}\n",
            "protocol",
        ),
        (
            "namespaces: [{name: x}]\npods:\n  - {name: a, namespace: x}\n  - {name: a, namespace: x}\n",
            "lab.yaml:4:12: pods[1].name: pod x/a is declared twice",
        ),
        (
            "namespaces: [{name: x}]\npods:\n  - {name: a, namespace: y}\n",
            "namespace",
        ),
        (
            "namespaces: [{name: x}]\npods:\n  - {name: a, namespace: x, ip: 10.0.0.1}\n",
            "ip",
        ),
        ("namespaces: [{name: x}\n", "lab.yaml"),
    ];
    for (yaml, needle) in cases {
        let dir = util::TempDir::new("bad");
        let file = dir.join("lab.yaml");
        std::fs::write(&file, yaml).unwrap();
        let out = flowscope(&["lab", "up", file.to_str().unwrap()]);
        let msg = text(&out);
        assert!(!out.status.success(), "{yaml}: accepted");
        assert!(msg.contains(needle), "{yaml}: {msg}");
        assert!(msg.contains("lab.yaml:"), "no file:line in {msg}");
        assert!(
            lab_namespaces().is_empty(),
            "{yaml}: created {:?}",
            lab_namespaces()
        );
    }
}

#[test]
fn connectivity_test_probes_every_pair_and_checks_expectations() {
    let _guard = LabGuard;
    let _ = flowscope(&["lab", "down"]);
    let out = flowscope(&["connectivity", "test", "--lab", XYZ, "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let (summary, probes) = lines.split_last().unwrap();
    // 9 pods, 8 destinations each, 2 ports x 2 protocols.
    assert_eq!(probes.len(), 288);
    assert_eq!(summary["summary"]["probes"], 288);
    // The exact line shape, keys in this order.
    let first = stdout.lines().next().unwrap();
    assert_eq!(
        first,
        r#"{"from":"x/a","to":"x/b","port":80,"protocol":"TCP","connected":true,"verdict":"FORWARDED","policies":[]}"#
    );
    // No policies: everything is reachable, and the observer saw each probe forwarded.
    for p in probes {
        assert_eq!(p["connected"], true, "{p}");
        assert_eq!(p["verdict"], "FORWARDED", "{p}");
        assert_eq!(p["policies"], serde_json::json!([]));
        assert_ne!(p["from"], p["to"]);
    }
    assert!(probes.iter().any(|p| p["from"] == "x/a"
        && p["to"] == "z/c"
        && p["port"] == 81
        && p["protocol"] == "UDP"));

    // The output works as an expectation file; one wrong line is a mismatch, exit 1.
    let dir = util::TempDir::new("expect");
    let good = dir.join("good.json");
    std::fs::write(&good, &stdout).unwrap();
    let ok = flowscope(&[
        "connectivity",
        "test",
        "--lab",
        XYZ,
        "--expect",
        good.to_str().unwrap(),
    ]);
    assert!(ok.status.success(), "{}", text(&ok));
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        stdout.replacen(
            r#"{"from":"x/a","to":"x/b","port":80,"protocol":"TCP","connected":true"#,
            r#"{"from":"x/a","to":"x/b","port":80,"protocol":"TCP","connected":false"#,
            1,
        ),
    )
    .unwrap();
    let mismatch = flowscope(&[
        "connectivity",
        "test",
        "--lab",
        XYZ,
        "-o",
        "table",
        "--expect",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(mismatch.status.code(), Some(1), "{}", text(&mismatch));
    let msg = text(&mismatch);
    assert!(
        msg.contains("MISMATCH x/a -> x/b TCP/80: expected blocked, got connected"),
        "{msg}"
    );
    assert_eq!(msg.matches("MISMATCH").count(), 1, "{msg}");
    // The table: a row per source, `.` for reachable.
    assert!(msg.contains("TCP/80"), "{msg}");
}

#[test]
fn a_failure_halfway_rolls_back_what_was_made() {
    let _guard = LabGuard;
    let _ = flowscope(&["lab", "down"]);
    // A host route already holding the third pod's address (x/c, 198.18.1.3): creating that
    // pod fails after the first two were made.
    util::run("ip", &["route", "add", "198.18.1.3/32", "dev", "lo"]);
    let out = flowscope(&["lab", "up", XYZ]);
    let _ = Command::new("ip")
        .args(["route", "del", "198.18.1.3/32", "dev", "lo"])
        .status();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("creating pod x/c"), "{}", text(&out));
    assert!(lab_namespaces().is_empty(), "left {:?}", lab_namespaces());
    assert_eq!(lab_links(), 0);
    assert!(!Path::new("/run/flowscope/lab/state.json").exists());
}

const X_DENY_ALLOW_Y: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/policies/x-deny-allow-y");

fn probes(out: &Output) -> Vec<Value> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    lines.pop(); // summary
    lines
}

/// What tests/policies/x-deny-allow-y allows: ingress to every pod in x is isolated, and only
/// y -> x/a on TCP 80 is allowed; everything else is open.
fn x_deny_allow_y_allows(p: &Value) -> bool {
    let (from, to) = (p["from"].as_str().unwrap(), p["to"].as_str().unwrap());
    let tcp80 = p["port"] == 80 && p["protocol"] == "TCP";
    !to.starts_with("x/") || (to == "x/a" && from.starts_with("y/") && tcp80)
}

#[test]
fn policies_are_enforced_and_named_in_connectivity_results() {
    let _guard = LabGuard;
    let _ = flowscope(&["lab", "down"]);
    let out = flowscope(&[
        "connectivity",
        "test",
        "--lab",
        XYZ,
        "--policies",
        X_DENY_ALLOW_Y,
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let probes = probes(&out);
    assert_eq!(probes.len(), 288);
    for p in &probes {
        let to = p["to"].as_str().unwrap();
        let want = x_deny_allow_y_allows(p);
        assert_eq!(p["connected"], want, "{p}");
        if want {
            assert_eq!(p["verdict"], "FORWARDED", "{p}");
        } else {
            assert_eq!(p["verdict"], "DROPPED", "{p}");
        }
        if to == "x/a" && want {
            assert_eq!(
                p["policies"],
                serde_json::json!(["x/allow-from-y-80"]),
                "{p}"
            );
        }
    }
}

#[test]
fn audit_mode_reports_what_policies_would_drop_and_drops_nothing() {
    let _guard = LabGuard;
    let _ = flowscope(&["lab", "down"]);
    let out = flowscope(&[
        "connectivity",
        "test",
        "--lab",
        XYZ,
        "--policies",
        X_DENY_ALLOW_Y,
        "--policy-audit-mode",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let probes = probes(&out);
    assert!(
        probes.iter().all(|p| p["connected"] == true),
        "audit mode dropped something"
    );
    let audited: Vec<&Value> = probes.iter().filter(|p| p["verdict"] == "AUDIT").collect();
    // Exactly the probes enforcement would have dropped.
    let would_drop = probes.iter().filter(|p| !x_deny_allow_y_allows(p)).count();
    assert_eq!(audited.len(), would_drop);
}

/// An observer enforcing the policies of `dir` on the lab's pods.
struct LabObserver(util::Observer);

impl LabObserver {
    fn start(dir: &Path, extra: &[&str]) -> LabObserver {
        LabObserver(util::lab_observer(dir.to_str().unwrap(), extra))
    }

    fn revision(&self) -> u64 {
        self.0.policy_revision()
    }

    /// Waits until a policy revision after `after` is installed.
    fn wait_revision(&self, after: u64) {
        util::wait_for_revision_after(&self.0, after);
    }

    /// The flows the observer holds that `whitelist` selects (Hubble FlowFilters).
    fn flows(&self, whitelist: Value) -> Vec<Value> {
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let mut ws = util::subscribe(
                &self.0.ws_url(),
                serde_json::json!({"number": 65535, "whitelist": whitelist}),
            )
            .await;
            util::collect_until(&mut ws, std::time::Duration::from_secs(10), |_| false).await
        })
    }
}

/// Probes TCP port 80 of `dst` from inside `from`'s namespace.
fn reachable(from: &str, dst: &str) -> bool {
    util::tcp_probe(from, dst, 80)
}

fn deny_ingress(pod: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: deny-{pod}, namespace: x}}\nspec:\n  podSelector: {{matchLabels: {{pod: {pod}}}}}\n  policyTypes: [Ingress]\n"
    )
}

#[test]
fn policy_changes_apply_on_a_running_observer_and_bad_files_keep_the_rest() {
    let _lab = util::lab_up(XYZ);
    let dir = util::TempDir::new("reload");
    let obs = LabObserver::start(&dir, &[]);
    let revision = || obs.revision();
    let wait_revision = |after: u64| obs.wait_revision(after);
    // x/b is 198.18.1.2, x/c is 198.18.1.3 (allocation order of xyz.yaml).
    let (xb, xc) = ("198.18.1.2", "198.18.1.3");
    wait_revision(0);
    assert!(reachable("fsl-y-a", xb) && reachable("fsl-y-a", xc));
    // Swap between two sets many times: after each swap exactly the new set holds.
    let file = dir.join("policy.yaml");
    for round in 0..6 {
        let before = revision();
        let (denied, open) = if round % 2 == 0 { ("b", xc) } else { ("c", xb) };
        std::fs::write(&file, deny_ingress(denied)).unwrap();
        wait_revision(before);
        let denied_ip = if denied == "b" { xb } else { xc };
        assert!(
            !reachable("fsl-y-a", denied_ip),
            "round {round}: x/{denied} still reachable"
        );
        assert!(
            reachable("fsl-y-a", open),
            "round {round}: the other pod was blocked"
        );
    }
    // A broken file next to a good one: the good one stays enforced, the error is reported.
    let before = revision();
    std::fs::write(dir.join("broken.yaml"), "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: broken, namespace: x}\nspec:\n  podSelector: {}\n  ingress:\n    - ports: [{protocol: ICMP}]\n").unwrap();
    wait_revision(before);
    let status = obs.0.status();
    let errors = status["policy"]["errors"].to_string();
    assert!(errors.contains("broken.yaml:7"), "{errors}");
    // The last round (5) denied x/c.
    assert!(!reachable("fsl-y-a", xc), "x/c must stay denied");
    assert!(reachable("fsl-y-a", xb));
    // Removing the policies opens everything again.
    let before = revision();
    std::fs::remove_file(&file).unwrap();
    std::fs::remove_file(dir.join("broken.yaml")).unwrap();
    wait_revision(before);
    assert!(reachable("fsl-y-a", xb) && reachable("fsl-y-a", xc));
    drop(obs);
}

#[test]
fn the_node_reaches_isolated_pods_and_policies_name_it_as_host() {
    let _lab = util::lab_up(XYZ);
    // An address of the node's, in the range the lab keeps for itself, with a listener the
    // pods can try to reach.
    let node = util::NodeAddress::add(std::net::Ipv4Addr::new(198, 18, 0, 200));
    let listener = std::net::TcpListener::bind((node.0, 0)).unwrap();
    let node_port = listener.local_addr().unwrap().port();
    let (node_ip, xa, za) = (node.0.to_string(), "198.18.1.1", "198.18.3.1");
    let dir = util::TempDir::new("node");
    std::fs::write(
        dir.join("policies.yaml"),
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-all, namespace: x}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress, Egress]\n---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: to-node, namespace: y}\nspec:\n  endpointSelector: {matchLabels: {pod: a}}\n  egress:\n    - toEntities: [host]\n",
    )
    .unwrap();
    let obs = LabObserver::start(&dir, &[]);
    obs.wait_revision(0);

    // The node reaches x/a, which policy isolates both ways (a pod cannot block its node, as
    // the kubelet's probes must reach it); no pod does, and x/a does not reach the node.
    let from_node = flowscope_lab::servers::probe_tcp(
        format!("{xa}:80").parse().unwrap(),
        std::time::Duration::from_secs(1),
    );
    assert!(from_node.connected, "the node is kept out of x/a");
    assert!(!reachable("fsl-y-b", xa));
    assert!(!util::tcp_probe("fsl-x-a", &node_ip, node_port));
    // `toEntities: [host]` lets y/a reach the node, and nothing else.
    assert!(util::tcp_probe("fsl-y-a", &node_ip, node_port));
    assert!(!reachable("fsl-y-a", za));

    // Flows name the node as Hubble does.
    let flows = obs.flows(serde_json::json!([{"destination_ip": [xa], "verdict": ["FORWARDED"]}]));
    assert!(
        flows.iter().any(
            |f| f["flow"]["source"]["labels"] == serde_json::json!(["reserved:host"])
                && f["flow"]["source"]["identity"] == 1
        ),
        "{flows:?}"
    );
    drop(listener);
}

#[test]
fn another_agents_tc_programs_neither_hide_traffic_nor_are_skipped() {
    let _lab = util::lab_up(XYZ);
    // A CNI's program on x/b's interface, there before the observer, ending the chain.
    let xb = "198.18.1.2";
    let foreign = util::ForeignTcProgram::attach(&flowscope_lab::topology::host_if_name("x", "b"));
    let dir = util::TempDir::new("foreign");
    std::fs::write(dir.join("deny.yaml"), deny_ingress("b")).unwrap();
    let obs = LabObserver::start(&dir, &[]);
    obs.wait_revision(0);
    // flowscope runs first: the policy holds and the drop is seen...
    assert!(!reachable("fsl-y-a", xb), "x/b's ingress is not enforced");
    let drops = obs.flows(serde_json::json!([{"destination_ip": [xb], "verdict": ["DROPPED"]}]));
    assert!(!drops.is_empty(), "no drop seen on x/b's interface");
    // ...and what it lets through goes on to the other program, which still decides.
    let before = foreign.runs();
    assert!(reachable("fsl-x-b", "198.18.1.3"), "x/b's egress");
    assert!(
        foreign.runs() > before,
        "the other agent's program was skipped"
    );
}

fn allow_port(port: u16) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: allow-{port}, namespace: x}}\nspec:\n  podSelector: {{matchLabels: {{pod: b}}}}\n  ingress:\n    - from: [{{namespaceSelector: {{matchLabels: {{ns: \"y\"}}}}}}]\n      ports: [{{port: {port}, protocol: TCP}}]\n"
    )
}

/// Policy sets swapped many times while y/a keeps opening connections to x/b on ports 80 and
/// 81: every connection is judged by one whole set, so each policy verdict agrees with the
/// policy it names — allowed on port 80 only by allow-80, on 81 only by allow-81, a drop names
/// no allowing policy — and the trace or drop event of the same connection says the same.
#[test]
fn hot_reload_under_traffic_never_judges_by_a_mix() {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    };
    use std::time::Duration;
    let _lab = util::lab_up(XYZ);
    let dir = util::TempDir::new("reload-traffic");
    let file = dir.join("policy.yaml");
    std::fs::write(&file, allow_port(80)).unwrap();
    let obs = LabObserver::start(&dir, &["--max-flows", "65535"]);
    let revision = || obs.revision();
    let wait_revision = |after: u64| obs.wait_revision(after);
    wait_revision(0);

    let stop = Arc::new(AtomicBool::new(false));
    let probes = Arc::new(AtomicU64::new(0));
    let traffic = {
        let (stop, probes) = (stop.clone(), probes.clone());
        flowscope_lab::topology::spawn_in("fsl-y-a", move || {
            while !stop.load(Ordering::Relaxed) {
                for port in [80, 81] {
                    let dst = format!("198.18.1.2:{port}").parse().unwrap();
                    flowscope_lab::servers::probe_tcp(dst, Duration::from_millis(100));
                    probes.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .unwrap()
    };
    for round in 0..10 {
        std::thread::sleep(Duration::from_millis(150));
        let before = revision();
        std::fs::write(&file, allow_port(if round % 2 == 0 { 81 } else { 80 })).unwrap();
        wait_revision(before);
    }
    std::thread::sleep(Duration::from_millis(150));
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let flows = obs.flows(serde_json::json!([{"source_pod": ["y/a"], "destination_pod": ["x/b"]}]));
    let flows: Vec<&Value> = flows.iter().map(|f| &f["flow"]).collect();
    let verdicts: Vec<&&Value> = flows
        .iter()
        .filter(|f| f["event_type"]["type"] == 5)
        .collect();
    let port = |f: &Value| f["l4"]["TCP"]["destination_port"].as_u64().unwrap_or(0);
    let allowed_by = |f: &Value| -> Vec<String> {
        f["ingress_allowed_by"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| p["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut seen = std::collections::BTreeSet::new();
    for v in &verdicts {
        let (p, verdict, names) = (port(v), v["verdict"].as_str().unwrap(), allowed_by(v));
        match verdict {
            "FORWARDED" => assert_eq!(names, [format!("allow-{p}")], "{v}"),
            "DROPPED" => {
                assert!(names.is_empty(), "{v}");
                assert_eq!(v["drop_reason_desc"], "POLICY_DENIED", "{v}");
            }
            other => panic!("unexpected verdict {other}: {v}"),
        }
        seen.insert((p, verdict));
        // The trace or drop event of the same packet agrees with its policy verdict.
        let sport = v["l4"]["TCP"]["source_port"].clone();
        let same: Vec<&&Value> = flows
            .iter()
            .filter(|f| {
                f["event_type"]["type"] != 5
                    && f["l4"]["TCP"]["source_port"] == sport
                    && f["time"] == v["time"]
            })
            .collect();
        assert!(
            !same.is_empty() && same.iter().all(|f| f["verdict"] == v["verdict"]),
            "{v} vs {same:?}"
        );
    }
    for want in [
        (80, "FORWARDED"),
        (80, "DROPPED"),
        (81, "FORWARDED"),
        (81, "DROPPED"),
    ] {
        assert!(
            seen.contains(&want),
            "{want:?} never seen in {} verdicts of {} probes: the swaps did not happen under traffic",
            verdicts.len(),
            probes.load(Ordering::Relaxed)
        );
    }
    drop(obs);
}

/// Sends one SCTP INIT to `dst:port` from the current namespace through a raw socket (the
/// kernel here has no SCTP stack; the datapath only needs the packet on the wire).
fn send_sctp_init(dst: std::net::Ipv4Addr, sport: u16, port: u16) {
    let mut packet = Vec::new();
    packet.extend_from_slice(&sport.to_be_bytes());
    packet.extend_from_slice(&port.to_be_bytes());
    packet.extend_from_slice(&[0; 8]); // verification tag 0 and checksum, as an INIT has
    packet.extend_from_slice(&[1, 0, 0, 20]); // INIT chunk
    packet.extend_from_slice(&[0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1]);
    // SAFETY: plain socket calls on a descriptor this function owns and closes; the address
    // and buffer outlive the calls.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, 132);
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from(dst).to_be(),
            },
            sin_zero: [0; 8],
        };
        let sent = libc::sendto(
            fd,
            packet.as_ptr().cast(),
            packet.len(),
            0,
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        );
        assert_eq!(
            sent,
            packet.len() as isize,
            "{}",
            std::io::Error::last_os_error()
        );
        libc::close(fd);
    }
}

/// SCTP through the real datapath: a NetworkPolicy allowing SCTP 9999 into x/b from
/// namespace y; y/a's INIT to 9999 is forwarded and attributed, to 9998 it is dropped.
#[test]
fn sctp_is_enforced_by_port() {
    let _lab = util::lab_up(XYZ);
    let dir = util::TempDir::new("sctp");
    std::fs::write(
        dir.join("sctp.yaml"),
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: allow-sctp, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: b}}\n  ingress:\n    - from: [{namespaceSelector: {matchLabels: {ns: \"y\"}}}]\n      ports: [{port: 9999, protocol: SCTP}]\n",
    )
    .unwrap();
    let obs = LabObserver::start(&dir, &[]);
    obs.wait_revision(0);
    let xb: std::net::Ipv4Addr = "198.18.1.2".parse().unwrap();
    flowscope_lab::topology::spawn_in("fsl-y-a", move || {
        send_sctp_init(xb, 40000, 9999);
        send_sctp_init(xb, 40001, 9998);
    })
    .unwrap()
    .join()
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let flows = obs.flows(serde_json::json!([{
        "source_pod": ["y/a"], "destination_pod": ["x/b"], "event_type": [{"type": 5}]}]));
    let verdict = |port: u64| {
        flows
            .iter()
            .map(|f| &f["flow"])
            .find(|f| f["l4"]["SCTP"]["destination_port"] == port)
            .unwrap_or_else(|| panic!("no policy verdict for SCTP {port} in {flows:?}"))
            .clone()
    };
    let allowed = verdict(9999);
    assert_eq!(allowed["verdict"], "FORWARDED", "{allowed}");
    assert_eq!(allowed["ingress_allowed_by"][0]["name"], "allow-sctp");
    assert_eq!(allowed["l4"]["SCTP"]["source_port"], 40000);
    let denied = verdict(9998);
    assert_eq!(denied["verdict"], "DROPPED", "{denied}");
    assert_eq!(denied["drop_reason_desc"], "POLICY_DENIED");
    drop(obs);
}

/// A wide endPort range (81-65535, seven port blocks) through the real datapath: x/b accepts
/// TCP on 81 and refuses 80, and the verdict names the policy.
#[test]
fn wide_port_ranges_are_enforced() {
    use std::time::Duration;
    let _lab = util::lab_up(XYZ);
    let dir = util::TempDir::new("range");
    std::fs::write(
        dir.join("range.yaml"),
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: high-ports, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: b}}\n  ingress:\n    - ports: [{port: 81, endPort: 65535, protocol: TCP}]\n",
    )
    .unwrap();
    // An invalid file present from the start: reported, and the valid one still enforced.
    std::fs::write(
        dir.join("broken.yaml"),
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: broken, namespace: x}\nspec:\n  podSelector: {}\n  ingress:\n    - ports: [{port: 90, endPort: 80}]\n",
    )
    .unwrap();
    let obs = LabObserver::start(&dir, &[]);
    obs.wait_revision(0);
    let errors = obs.0.status()["policy"]["errors"].to_string();
    assert!(errors.contains("broken.yaml:7"), "{errors}");
    let connects = |port: u16| util::tcp_probe("fsl-y-a", "198.18.1.2", port);
    assert!(connects(81), "81 is in the range");
    assert!(!connects(80), "80 is not");
    std::thread::sleep(Duration::from_millis(300));
    let flows = obs.flows(serde_json::json!([{
        "destination_pod": ["x/b"], "event_type": [{"type": 5}]}]));
    let allowed = flows
        .iter()
        .map(|f| &f["flow"])
        .find(|f| f["l4"]["TCP"]["destination_port"] == 81)
        .unwrap_or_else(|| panic!("no verdict for 81: {flows:?}"));
    assert_eq!(allowed["verdict"], "FORWARDED");
    assert_eq!(allowed["ingress_allowed_by"][0]["name"], "high-ports");
    assert_eq!(
        allowed["policy_match_type"], 3,
        "L4-Only: any peer, a port block"
    );
    drop(obs);
}
