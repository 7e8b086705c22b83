//! `flowscope observe` against a running observer with real lab traffic: Hubble's filters
//! (checked against flows known to exist and known not to), selectors, output formats,
//! `--input-file` replay, `--aggregate-by`, follow with Ctrl-C, and error cases.

mod util;

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use util::{flowscope, observe_json, tcp_probe, udp_probe};

const XYZ: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/labs/xyz.yaml");
const X_DENY_ALLOW_Y: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/policies/x-deny-allow-y");

fn pod(f: &Value, side: &str) -> String {
    format!(
        "{}/{}",
        f[side]["namespace"].as_str().unwrap_or(""),
        f[side]["pod_name"].as_str().unwrap_or("")
    )
}

fn dport(f: &Value) -> u64 {
    ["TCP", "UDP"]
        .iter()
        .find_map(|p| f["l4"][p]["destination_port"].as_u64())
        .unwrap_or(0)
}

fn sport(f: &Value) -> u64 {
    ["TCP", "UDP"]
        .iter()
        .find_map(|p| f["l4"][p]["source_port"].as_u64())
        .unwrap_or(0)
}

/// Checks one filter: the result is not empty, every flow satisfies `holds`, and the flows of
/// the unfiltered history that satisfy `holds` are all in the result.
fn check(
    server: &str,
    everything: &[Value],
    args: &[&str],
    holds: impl Fn(&Value) -> bool,
) -> Result<(), String> {
    let got = observe_json(server, &[&["--all"], args].concat());
    if got.is_empty() {
        return Err(format!("{args:?}: no flows"));
    }
    if let Some(bad) = got.iter().find(|f| !holds(f)) {
        return Err(format!("{args:?}: a flow that should not match: {bad}"));
    }
    let uuids: std::collections::HashSet<&str> =
        got.iter().filter_map(|f| f["uuid"].as_str()).collect();
    let missed = everything
        .iter()
        .filter(|f| holds(f) && !uuids.contains(f["uuid"].as_str().unwrap_or("")))
        .count();
    if missed > 0 {
        return Err(format!("{args:?}: {missed} matching flows missing"));
    }
    Ok(())
}

#[test]
fn observe_filters_formats_and_errors_against_a_running_observer() {
    let _lab = util::lab_up(XYZ);
    let obs = util::lab_observer(X_DENY_ALLOW_Y, &["--max-flows", "65535"]);
    let server = obs.api.to_string();
    let server = server.as_str();
    // Known traffic: x/a is 198.18.1.1, x/b 198.18.1.2, y/b 198.18.1.5.
    assert!(
        tcp_probe("fsl-y-a", "198.18.1.1", 80),
        "allowed by allow-from-y-80"
    );
    assert!(!tcp_probe("fsl-z-a", "198.18.1.2", 80), "x is default-deny");
    assert!(udp_probe("fsl-x-a", "198.18.1.5", 81), "y is open");
    std::thread::sleep(Duration::from_millis(300));

    let everything = observe_json(server, &["--all"]);
    assert!(everything.len() >= 6, "{} flows", everything.len());
    // Without a selector: the last 20.
    assert_eq!(
        observe_json(server, &[]).len(),
        everything.len().min(20),
        "default --last 20"
    );
    assert_eq!(observe_json(server, &["--last", "3"]).len(), 3);
    let first = observe_json(server, &["--first", "2"]);
    assert_eq!(first.len(), 2);
    assert_eq!(first[0]["uuid"], everything[0]["uuid"]);

    let mut failures = Vec::new();
    let mut run = |args: &[&str], holds: &dyn Fn(&Value) -> bool| {
        if let Err(e) = check(server, &everything, args, holds) {
            failures.push(e);
        }
    };
    run(&["--from-pod", "y/a"], &|f| pod(f, "source") == "y/a");
    run(&["--to-pod", "x/b"], &|f| pod(f, "destination") == "x/b");
    run(&["--pod", "x/b"], &|f| {
        pod(f, "source") == "x/b" || pod(f, "destination") == "x/b"
    });
    run(&["--pod", "z/"], &|f| {
        pod(f, "source").starts_with("z/") || pod(f, "destination").starts_with("z/")
    });
    run(&["--namespace", "y"], &|f| {
        f["source"]["namespace"] == "y" || f["destination"]["namespace"] == "y"
    });
    run(&["--from-namespace", "y", "--to-port", "80"], &|f| {
        f["source"]["namespace"] == "y" && dport(f) == 80
    });
    // Repeating a flag is OR.
    run(&["--from-pod", "y/a", "--from-pod", "z/a"], &|f| {
        ["y/a", "z/a"].contains(&pod(f, "source").as_str())
    });
    run(&["--verdict", "DROPPED"], &|f| f["verdict"] == "DROPPED");
    run(&["--not", "--verdict", "DROPPED"], &|f| {
        f["verdict"] != "DROPPED"
    });
    // --not applies to the next flag only.
    run(
        &["--not", "--verdict", "DROPPED", "--to-pod", "x/a"],
        &|f| f["verdict"] != "DROPPED" && pod(f, "destination") == "x/a",
    );
    run(&["--drop-reason-desc", "POLICY_DENIED"], &|f| {
        f["drop_reason_desc"] == "POLICY_DENIED"
    });
    run(&["--protocol", "udp"], &|f| f["l4"]["UDP"].is_object());
    run(&["--port", "81"], &|f| dport(f) == 81 || sport(f) == 81);
    run(&["--ip", "198.18.1.2"], &|f| {
        f["IP"]["source"] == "198.18.1.2" || f["IP"]["destination"] == "198.18.1.2"
    });
    run(&["--to-ip", "198.18.1.0/30"], &|f| {
        ["198.18.1.1", "198.18.1.2", "198.18.1.3"]
            .contains(&f["IP"]["destination"].as_str().unwrap_or(""))
    });
    run(&["--label", "pod=b"], &|f| {
        let has = |side: &str| {
            f[side]["labels"]
                .as_array()
                .is_some_and(|l| l.iter().any(|l| l == "k8s:pod=b"))
        };
        has("source") || has("destination")
    });
    run(&["--from-label", "pod in (a, c),ns!=nope"], &|f| {
        f["source"]["labels"]
            .as_array()
            .is_some_and(|l| l.iter().any(|l| l == "k8s:pod=a" || l == "k8s:pod=c"))
    });
    run(&["-t", "policy-verdict"], &|f| f["event_type"]["type"] == 5);
    run(&["-t", "drop"], &|f| f["event_type"]["type"] == 1);
    run(&["-t", "trace:to-endpoint"], &|f| {
        f["event_type"]["type"] == 4 && f["trace_observation_point"] == "TO_ENDPOINT"
    });
    run(&["--tcp-flags", "SYN"], &|f| {
        f["l4"]["TCP"]["flags"]["SYN"] == true
    });
    run(&["--traffic-direction", "ingress"], &|f| {
        f["traffic_direction"] == "INGRESS"
    });
    run(&["--node-name", "test-*"], &|f| {
        f["node_name"] == "test-node"
    });
    let xa_identity = everything
        .iter()
        .find(|f| pod(f, "destination") == "x/a")
        .and_then(|f| f["destination"]["identity"].as_u64())
        .expect("a flow to x/a");
    run(&["--to-identity", &xa_identity.to_string()], &|f| {
        f["destination"]["identity"] == xa_identity
    });
    run(&["--since", "10m"], &|_| true);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // A filter nothing matches: no flows, success.
    assert!(observe_json(server, &["--all", "--from-pod", "nope/none"]).is_empty());

    // Compact: Hubble's line shape, policy names on request.
    let out = flowscope(&[
        "observe",
        "--server",
        server,
        "--all",
        "-t",
        "policy-verdict",
        "--to-pod",
        "x/a",
        "--verdict",
        "FORWARDED",
        "--print-policy-names",
        "--color",
        "never",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next().expect("a policy verdict line");
    assert!(
        line.contains("y/a:") && line.contains(" <> x/a:80 (ID:"),
        "{line}"
    );
    assert!(
        line.contains("policy-verdict:L3-L4 INGRESS ALLOWED BY")
            && line.contains("allow-from-y-80"),
        "{line}"
    );
    // Table: the header once, then aligned rows.
    let out = flowscope(&[
        "observe",
        "--server",
        server,
        "--all",
        "-o",
        "table",
        "--verdict",
        "DROPPED",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("TIMESTAMP") && header.contains("VERDICT"),
        "{header}"
    );
    assert!(
        lines.all(|l| l.contains("DROPPED") || l.contains("DENIED")),
        "{text}"
    );
    // Dict: one block per flow.
    let out = flowscope(&["observe", "--server", server, "--last", "1", "-o", "dict"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("VERDICT:") && text.contains("SOURCE:"),
        "{text}"
    );

    // --input-file replays saved JSON through the same filters.
    let saved = std::env::temp_dir().join(format!("observe-{}.json", util::unique()));
    let out = flowscope(&["observe", "--server", server, "--all", "-o", "jsonpb"]);
    std::fs::write(&saved, &out.stdout).unwrap();
    let replayed = flowscope(&[
        "observe",
        "--input-file",
        saved.to_str().unwrap(),
        "--verdict",
        "DROPPED",
        "-o",
        "json",
    ]);
    let live = observe_json(server, &["--all", "--verdict", "DROPPED"]);
    let replayed: Vec<Value> = String::from_utf8_lossy(&replayed.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["flow"].clone())
        .collect();
    assert!(!live.is_empty());
    assert_eq!(
        replayed.iter().map(|f| &f["uuid"]).collect::<Vec<_>>(),
        live.iter().map(|f| &f["uuid"]).collect::<Vec<_>>()
    );
    let _ = std::fs::remove_file(&saved);

    // --aggregate-by: counts per key.
    let out = flowscope(&[
        "observe",
        "--server",
        server,
        "--all",
        "--aggregate-by",
        "src-pod,dst-pod,verdict",
        "-t",
        "policy-verdict",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text
        .lines()
        .find(|l| l.contains("z/a") && l.contains("x/b"))
        .unwrap_or_else(|| panic!("no z/a -> x/b row:\n{text}"));
    assert!(row.contains("DROPPED"), "{row}");
    let count: u64 = row.split_whitespace().last().unwrap().parse().unwrap();
    assert!(count >= 1, "{row}");

    // --follow streams new flows until Ctrl-C, then exits 0.
    let mut follow = Command::new(env!("CARGO_BIN_EXE_flowscope"))
        .args([
            "observe", "--server", server, "-f", "--to-pod", "y/c", "-o", "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(tcp_probe("fsl-x-b", "198.18.1.6", 81), "y/c is open");
    let mut reader = BufReader::new(follow.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let flow: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(pod(&flow["flow"], "destination"), "y/c", "{line}");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(follow.id() as i32, libc::SIGINT) };
    let status = follow.wait().unwrap();
    assert!(status.success(), "Ctrl-C ends a follow cleanly: {status}");

    // status, list nodes, list namespaces.
    let out = flowscope(&["status", "--server", server]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let held = everything.len();
    assert!(
        text.lines().any(|l| l.starts_with("Current/Max Flows: ")
            && l.contains("/65,535 (")
            && l.split_whitespace().nth(2).is_some_and(|n| {
                n.split('/')
                    .next()
                    .unwrap()
                    .replace(',', "")
                    .parse::<usize>()
                    .unwrap()
                    >= held
            })),
        "{text}"
    );
    assert!(
        text.contains("Flows/s: ") && text.contains("Connected Nodes: 1/1"),
        "{text}"
    );
    let out = flowscope(&["list", "nodes", "--server", server]);
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text.lines().nth(1).unwrap_or_default();
    assert!(
        text.starts_with("NAME") && row.starts_with("test-node") && row.contains("Connected"),
        "{text}"
    );
    let out = flowscope(&["list", "namespaces", "--server", server, "-o", "json"]);
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["namespace"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(names, ["x", "y", "z"]);

    // Errors: one clear line and a non-zero exit.
    let out = flowscope(&["status", "--server", "127.0.0.1:1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the observer"));
    let out = flowscope(&["observe", "--server", "127.0.0.1:1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("cannot reach the observer at 127.0.0.1:1"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let out = flowscope(&["observe", "--server", server, "--first", "1", "--last", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--first") && err.contains("--last"),
        "{err}"
    );
    let out = flowscope(&["observe", "--server", server, "--verdict", "MAYBE"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--verdict") && err.contains("FORWARDED"),
        "{err}"
    );
    let out = flowscope(&["observe", "--server", server, "--aggregate-by", "colour"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("colour") && err.contains("src-pod"),
        "{err}"
    );
}
