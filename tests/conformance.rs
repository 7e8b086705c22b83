//! Network policy conformance through the real datapath: for every policy set in
//! tests/policies/conformance, `flowscope connectivity test` probes every ordered pair of the
//! xyz lab's pods on every port (TCP and UDP, 288 probes) with the set enforced by the eBPF
//! programs, and every probe is compared with the reference semantics (`policy::verdict`):
//! whether it connected, its verdict, and the policies that decided it. Every case also carries
//! its reachability written out by hand, as the upstream suite writes its expectations
//! (`# reach: FROM TO PORT yes|no` lines), so the datapath and the reference cannot agree on
//! a wrong answer.

mod util;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use flowscope_observer::endpoints::EndpointsFile;
use flowscope_policy::{Connection, Peer, PolicySet, Protocol, World, load_dir, verdict};
use serde_json::Value;
use util::flowscope;

const XYZ: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/labs/xyz.yaml");
const CASES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/policies/conformance");

fn pod(name: &str) -> Peer {
    let (ns, pod) = name.split_once('/').expect("ns/pod");
    Peer::pod(ns, pod)
}

/// What a probe should show under `set`: connected, verdict, and the policies its flows name
/// (`ns/name`): each direction the packet reached names its denying policies if any, else its
/// allowing ones; ingress is only reached when egress let the packet out.
fn expected(set: &PolicySet, world: &World, probe: &Value) -> (bool, &'static str, Vec<String>) {
    let conn = Connection {
        src: pod(probe["from"].as_str().unwrap()),
        dst: pod(probe["to"].as_str().unwrap()),
        port: probe["port"].as_u64().unwrap() as u16,
        protocol: match probe["protocol"].as_str().unwrap() {
            "TCP" => Protocol::Tcp,
            _ => Protocol::Udp,
        },
    };
    let v = verdict(set, world, &conn);
    let mut names = BTreeSet::new();
    for (dv, reached) in [(&v.egress, true), (&v.ingress, v.egress.allowed)] {
        if !reached {
            continue;
        }
        let deciding = if dv.denied_by.is_empty() {
            &dv.allowed_by
        } else {
            &dv.denied_by
        };
        for id in deciding {
            names.insert(format!(
                "{}/{}",
                id.namespace.as_deref().unwrap_or(""),
                id.name
            ));
        }
    }
    let allowed = v.allowed();
    (
        allowed,
        if allowed { "FORWARDED" } else { "DROPPED" },
        names.into_iter().collect(),
    )
}

/// One `# reach: FROM TO PORT yes|no` line: `ns/pod` with `*` for either part, the port
/// `PROTOCOL/NUMBER` with `*` for either, or `*` alone.
struct Reach {
    from: (String, String),
    to: (String, String),
    protocol: String,
    port: String,
    reachable: bool,
}

impl Reach {
    fn parse(line: &str) -> Reach {
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(parts.len(), 4, "# reach: FROM TO PORT yes|no, not {line:?}");
        let peer = |s: &str| {
            let (ns, pod) = s
                .split_once('/')
                .unwrap_or_else(|| panic!("ns/pod: {line:?}"));
            (ns.to_owned(), pod.to_owned())
        };
        let (protocol, port) = match parts[2].split_once('/') {
            Some((proto, port)) => (proto.to_owned(), port.to_owned()),
            None if parts[2] == "*" => ("*".to_owned(), "*".to_owned()),
            None => panic!("PROTOCOL/PORT or *: {line:?}"),
        };
        let reachable = match parts[3] {
            "yes" => true,
            "no" => false,
            other => panic!("yes or no, not {other:?}: {line:?}"),
        };
        Reach {
            from: peer(parts[0]),
            to: peer(parts[1]),
            protocol,
            port,
            reachable,
        }
    }

    fn matches(&self, probe: &Value) -> bool {
        let is = |pattern: &str, value: &str| pattern == "*" || pattern == value;
        let peer = |pattern: &(String, String), name: &Value| {
            let (ns, pod) = name.as_str().unwrap().split_once('/').unwrap();
            is(&pattern.0, ns) && is(&pattern.1, pod)
        };
        peer(&self.from, &probe["from"])
            && peer(&self.to, &probe["to"])
            && is(&self.protocol, probe["protocol"].as_str().unwrap())
            && is(&self.port, &probe["port"].to_string())
    }
}

/// The case's `# reach:` lines.
fn hand_written(text: &str) -> Vec<Reach> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# reach:"))
        .map(Reach::parse)
        .collect()
}

fn run_case(file: &Path, world: &World) -> Result<usize, Vec<String>> {
    let text = std::fs::read_to_string(file).unwrap();
    let reach = hand_written(&text);
    // `# with: --policy-cidr-selects-pods`: the case runs in that mode (upstream's ipBlock
    // semantics), and the reference judges with it.
    let cidr_selects_pods = text
        .lines()
        .any(|l| l.trim() == "# with: --policy-cidr-selects-pods");
    let world = &World {
        cidr_selects_pods,
        ..world.clone()
    };
    assert!(!reach.is_empty(), "{}: no `# reach:` lines", file.display());
    let dir = util::TempDir::new("conformance");
    std::fs::copy(file, dir.join(file.file_name().unwrap())).unwrap();
    let set = load_dir(&dir);
    assert!(
        set.errors.is_empty(),
        "{}: {:?}",
        file.display(),
        set.errors
    );
    let mut args = vec![
        "connectivity",
        "test",
        "--lab",
        XYZ,
        "--policies",
        dir.to_str().unwrap(),
        "-o",
        "json",
    ];
    if cidr_selects_pods {
        args.push("--policy-cidr-selects-pods");
    }
    let out = flowscope(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut probes: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    probes.pop(); // the summary
    if probes.len() != 288 {
        return Err(vec![format!(
            "{} probes instead of 288: {}",
            probes.len(),
            String::from_utf8_lossy(&out.stderr)
        )]);
    }
    let mut wrong = Vec::new();
    for p in &probes {
        let by_hand = reach
            .iter()
            .rev()
            .find(|r| r.matches(p))
            .is_none_or(|r| r.reachable);
        if p["connected"] != by_hand {
            wrong.push(format!(
                "{} -> {} {}/{}: the case's reach lines say {}, got {p}",
                p["from"],
                p["to"],
                p["port"],
                p["protocol"],
                if by_hand { "yes" } else { "no" }
            ));
        }
        let (connected, verdict, names) = expected(&set, world, p);
        let mut got_names: Vec<String> = p["policies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_owned())
            .collect();
        got_names.sort();
        if p["connected"] != connected || p["verdict"] != verdict || got_names != names {
            wrong.push(format!(
                "{} -> {} {}/{}: expected connected={connected} {verdict} by {names:?}, got {p}",
                p["from"], p["to"], p["port"], p["protocol"]
            ));
        }
    }
    // A case that drops nothing, or everything, tests little: each must do both.
    let dropped = probes.iter().filter(|p| p["verdict"] == "DROPPED").count();
    if dropped == 0 || dropped == probes.len() {
        wrong.push(format!("{dropped} of {} probes dropped", probes.len()));
    }
    if wrong.is_empty() {
        Ok(probes.len())
    } else {
        Err(wrong)
    }
}

#[test]
fn every_conformance_case_matches_the_reference_semantics_in_the_datapath() {
    let _lab = util::lab_up(XYZ);
    let endpoints: EndpointsFile = serde_json::from_str(
        &std::fs::read_to_string("/run/flowscope/lab/endpoints.json").unwrap(),
    )
    .unwrap();
    let registry = flowscope_observer::endpoints::Registry::build(&endpoints.endpoints);
    let world = flowscope_observer::policy::world(&registry, false);
    let mut cases: Vec<PathBuf> = std::fs::read_dir(CASES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 12, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        match run_case(case, &world) {
            Ok(n) => eprintln!("{}: {n} probes as the reference says", case.display()),
            Err(wrong) => failures.push(format!(
                "{}: {} wrong, first:\n  {}",
                case.display(),
                wrong.len(),
                wrong[..wrong.len().min(5)].join("\n  ")
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
