//! The manifests and configurations in deploy/ as their real consumers read them, and as they
//! must fit together:
//! - every Kubernetes object against the Kubernetes API schemas (`kubernetes-validate --strict`,
//!   offline); the ServiceMonitors (a CRD whose schema is not available offline) are checked
//!   here instead, against the Services they must find;
//! - the Prometheus configuration with `promtool check config`;
//! - consistency: Services select the pods they are meant for and target their declared ports,
//!   probes and listen flags use declared ports, the relay's --peer-service names the observers'
//!   headless Service, the flags are the binary's, the policies ConfigMap is the seed files.
//!
//! YAML is read with the Python `yaml` module of the virtualenv that holds kubernetes-validate.

mod util;

use std::{path::Path, process::Command};

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");
const KUBERNETES_VALIDATE: &str = "/opt/flowscope/venv/bin/kubernetes-validate";
const VENV_PYTHON: &str = "/opt/flowscope/venv/bin/python3";

fn run(cmd: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e} (scripts/setup.sh installs it)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn kubernetes_dir() -> String {
    format!("{DEPLOY}/kubernetes")
}

/// Loads every document of every `*.yaml` in the directory `sys.argv[1]` and gives the checks
/// below a few helpers. A check prints `ok` when it passes; a failed `assert` says what is wrong.
const PRELUDE: &str = r#"
import glob, json, os, re, sys, yaml

KDIR = sys.argv[1]
DOCS = []
for path in sorted(glob.glob(os.path.join(KDIR, "*.yaml"))):
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            if doc:
                doc["__file"] = os.path.basename(path)
                DOCS.append(doc)

def of_kind(kind):
    return [d for d in DOCS if d["kind"] == kind]

def ns(d):
    return d["metadata"].get("namespace", "default")

def name(d):
    return d["metadata"]["name"]

def find(kind, n, namespace):
    found = [d for d in of_kind(kind) if name(d) == n and ns(d) == namespace]
    assert len(found) == 1, (kind, n, namespace, len(found))
    return found[0]

def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())

WORKLOADS = [d for d in DOCS if d["kind"] in ("DaemonSet", "Deployment")]

def pod_labels(w):
    return w["spec"]["template"]["metadata"]["labels"]

def container(w):
    cs = w["spec"]["template"]["spec"]["containers"]
    assert len(cs) == 1, (name(w), "one container per pod", len(cs))
    return cs[0]

def selected(svc):
    sel = svc["spec"].get("selector") or {}
    assert sel, (name(svc), "a Service without a selector selects no pods")
    return [w for w in WORKLOADS if ns(w) == ns(svc) and matches(sel, pod_labels(w))]

def container_port(w, target):
    """The containerPort that `target` (a number or a port name) designates, or None."""
    for p in container(w).get("ports", []):
        if target in (p["containerPort"], p.get("name")):
            return p
    return None

def flag(args, f):
    """The value of `--f VALUE` or `--f=VALUE` in args, or None."""
    for i, a in enumerate(args):
        if a == f and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(f + "="):
            return a[len(f) + 1:]
    return None

def host_port(addr):
    host, _, port = addr.rpartition(":")
    return host, int(port)
"#;

/// Runs `check` (after [`PRELUDE`]) on the manifests in `kdir`; passes when it prints `ok`.
fn check(check: &str, kdir: &str, extra: &[&str]) -> (bool, String) {
    let script = format!("{PRELUDE}\n{check}\nprint(\"ok\")\n");
    let mut args = vec!["-c", script.as_str(), kdir];
    args.extend_from_slice(extra);
    let (ok, text) = run(VENV_PYTHON, &args);
    (ok && text.trim() == "ok", text)
}

#[test]
fn kubernetes_manifests_match_the_api_schemas() {
    let mut files = Vec::new();
    let mut documents = 0;
    let mut names = Vec::new();
    for entry in std::fs::read_dir(kubernetes_dir()).unwrap() {
        let path = entry.unwrap().path();
        names.push(path.file_name().unwrap().to_string_lossy().into_owned());
        let text = std::fs::read_to_string(&path).unwrap();
        // Top-level kinds only: the policies ConfigMap holds indented manifests.
        let kinds: Vec<&str> = text.lines().filter(|l| l.starts_with("kind: ")).collect();
        if kinds.contains(&"kind: ServiceMonitor") {
            // A CRD without an offline schema: checked by
            // the_service_monitors_select_the_metrics_services_and_their_ports. Nothing else may
            // hide in its file.
            assert!(
                kinds.iter().all(|k| *k == "kind: ServiceMonitor"),
                "{path:?}"
            );
            continue;
        }
        documents += kinds.len();
        files.push(path.display().to_string());
    }
    names.sort();
    for expected in [
        "metrics-service.yaml",
        "observer-daemonset.yaml",
        "policies-configmap.yaml",
        "relay.yaml",
        "servicemonitor.yaml",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected}: {names:?}");
    }
    for entry in std::fs::read_dir(Path::new(DEPLOY).join("network-policies")).unwrap() {
        let path = entry.unwrap().path();
        // CiliumNetworkPolicy is a CRD: `flowscope policy validate` checks it (tests/policy.rs).
        let text = std::fs::read_to_string(&path).unwrap();
        if text.contains("kind: NetworkPolicy") {
            documents += 1;
            files.push(path.display().to_string());
        }
    }
    assert!(files.len() >= 7, "{files:?}");
    let mut args = vec!["--strict"];
    args.extend(files.iter().map(String::as_str));
    let (ok, text) = run(KUBERNETES_VALIDATE, &args);
    assert!(ok, "{text}");
    // One line per object: every document was read and passed.
    assert_eq!(text.matches(" passed ").count(), documents, "{text}");
}

#[test]
fn a_broken_manifest_is_refused_by_the_schema_check() {
    // The check above can fail: a Service port as a string, a misspelt container field.
    let dir = util::TempDir::new("deploy-schema");
    let cases = [
        ("metrics-service.yaml", "port: 9965", "port: \"nine\""),
        (
            "observer-daemonset.yaml",
            "readinessProbe:",
            "readinesProbe:",
        ),
        (
            "relay.yaml",
            "readOnlyRootFilesystem: true",
            "readOnlyRootFs: true",
        ),
    ];
    for (file, from, to) in cases {
        let good = std::fs::read_to_string(format!("{DEPLOY}/kubernetes/{file}")).unwrap();
        assert!(good.contains(from), "{file}: {from}");
        let bad = dir.join(file);
        std::fs::write(&bad, good.replace(from, to)).unwrap();
        let (ok, text) = run(KUBERNETES_VALIDATE, &["--strict", bad.to_str().unwrap()]);
        assert!(!ok && text.contains("did not validate"), "{file}: {text}");
    }
}

#[test]
fn the_prometheus_configuration_is_valid() {
    let config = format!("{DEPLOY}/prometheus/prometheus.yml");
    let (ok, text) = run("promtool", &["check", "config", &config]);
    assert!(ok && text.contains("SUCCESS"), "{text}");
    // The jobs it is documented to have: the lab's observer, file-discovered nodes, the relay.
    let script = r#"
import sys, yaml
jobs = {j["job_name"]: j for j in yaml.safe_load(open(sys.argv[1]))["scrape_configs"]}
assert set(jobs) == {"flowscope-lab", "flowscope-nodes", "flowscope-relay"}, list(jobs)
def targets(j):
    return [t for c in j.get("static_configs", []) for t in c["targets"]]
assert targets(jobs["flowscope-lab"]) == ["127.0.0.1:9965"]
assert targets(jobs["flowscope-relay"]) == ["127.0.0.1:9966"]
assert jobs["flowscope-nodes"]["file_sd_configs"][0]["files"] == ["flowscope-nodes.json"]
print("ok")
"#;
    let (ok, text) = run(VENV_PYTHON, &["-c", script, &config]);
    assert!(ok && text.trim() == "ok", "{text}");
}

/// Every Service selects the pods of exactly the workload it is meant for, and each of its
/// ports targets a declared containerPort (by number or name) with the same protocol. Workload
/// selectors select their own pod templates; ServiceAccounts exist.
const SERVICES_MATCH_PODS: &str = r#"
expected = {
    "flowscope-metrics": "flowscope",
    "flowscope-peers": "flowscope",
    "flowscope-relay": "flowscope-relay",
    "flowscope-relay-metrics": "flowscope-relay",
}
services = of_kind("Service")
assert sorted(name(s) for s in services) == sorted(expected), [name(s) for s in services]
for w in WORKLOADS:
    assert matches(w["spec"]["selector"]["matchLabels"], pod_labels(w)), name(w)
    sa = w["spec"]["template"]["spec"].get("serviceAccountName")
    assert sa is None or find("ServiceAccount", sa, ns(w)), (name(w), sa)
for s in services:
    ws = selected(s)
    assert [name(w) for w in ws] == [expected[name(s)]], (name(s), "selects", [name(w) for w in ws])
    w = ws[0]
    for p in s["spec"]["ports"]:
        target = p.get("targetPort", p["port"])
        cp = container_port(w, target)
        assert cp is not None, (name(s), p, "targets no containerPort of", name(w))
        assert cp.get("protocol", "TCP") == p.get("protocol", "TCP"), (name(s), p, cp)
"#;

#[test]
fn services_select_their_pods_and_target_declared_ports() {
    let (ok, text) = check(SERVICES_MATCH_PODS, &kubernetes_dir(), &[]);
    assert!(ok, "{text}");
}

/// The observer and the relay listen on every address (Services reach them there) on their
/// declared `api` and `metrics` ports; probes use declared ports, `/healthz` for liveness and
/// startup, `/readyz` for readiness, on the API listener that serves them. Variables in args are
/// defined; the policy directory is the mounted ConfigMap.
const WORKLOADS_USE_DECLARED_PORTS: &str = r#"
for w in WORKLOADS:
    c = container(w)
    args = c["args"]
    for listen_flag, port_name in (("--listen", "api"), ("--metrics-listen", "metrics")):
        host, port = host_port(flag(args, listen_flag))
        assert host in ("0.0.0.0", "[::]"), (name(w), listen_flag, host)
        cp = container_port(w, port_name)
        assert cp is not None and cp["containerPort"] == port, (name(w), listen_flag, port, cp)
    api = host_port(flag(args, "--listen"))[1]
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
        if probe not in c:
            assert probe == "startupProbe", (name(w), "has no", probe)
            continue
        get = c[probe]["httpGet"]
        cp = container_port(w, get["port"])
        assert cp is not None, (name(w), probe, get["port"], "is not a declared port")
        assert cp["containerPort"] == api, (name(w), probe, cp, "is not the API port", api)
        assert get["path"] == path, (name(w), probe, get["path"])
    env = {e["name"]: e for e in c.get("env", [])}
    for a in args:
        for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", a):
            assert var in env, (name(w), a, "is not expanded: no env", var)
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in w["spec"]["template"]["spec"].get("volumes", [])}
    assert set(mounts.values()) <= set(volumes), (name(w), mounts, list(volumes))
    policy_dir = flag(args, "--policy-dir")
    if policy_dir is not None:
        vol = volumes[mounts[policy_dir]]
        find("ConfigMap", vol["configMap"]["name"], ns(w))

observer = find("DaemonSet", "flowscope", "kube-system")
c = container(observer)
assert c["args"][0] == "observer", c["args"]
assert flag(c["args"], "--node-name") == "$(NODE_NAME)"
node = {e["name"]: e for e in c["env"]}["NODE_NAME"]
assert node["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName", node
assert flag(c["args"], "--policy-dir") == "/etc/flowscope/policies"
spec = observer["spec"]["template"]["spec"]
assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
assert c["securityContext"]["privileged"] is True
bpf = [m for m in c["volumeMounts"] if m["mountPath"] == "/sys/fs/bpf"]
assert bpf and {v["name"]: v for v in spec["volumes"]}[bpf[0]["name"]]["hostPath"]["path"] == "/sys/fs/bpf"
assert {"operator": "Exists"} in spec["tolerations"], spec["tolerations"]

relay = find("Deployment", "flowscope-relay", "kube-system")
c = container(relay)
assert c["args"][0] == "relay", c["args"]
sc = c["securityContext"]
assert not sc.get("privileged") and sc["readOnlyRootFilesystem"] is True, sc
assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"], sc
assert relay["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
"#;

#[test]
fn probes_and_listen_flags_use_declared_ports() {
    let (ok, text) = check(WORKLOADS_USE_DECLARED_PORTS, &kubernetes_dir(), &[]);
    assert!(ok, "{text}");
}

/// `--peer-service NAME.NAMESPACE.svc.cluster.local:PORT` names a headless Service in the
/// manifests, one of its ports, and that port reaches the observers' API listener.
const RELAY_FINDS_OBSERVERS: &str = r#"
relay = find("Deployment", "flowscope-relay", "kube-system")
peer = flag(container(relay)["args"], "--peer-service")
assert peer is not None, "the relay has no --peer-service"
host, port = host_port(peer)
parts = host.split(".")
assert len(parts) == 5 and parts[2:] == ["svc", "cluster", "local"], host
svc = find("Service", parts[0], parts[1])
assert svc["spec"].get("clusterIP") == "None", (name(svc), "must be headless: one address per observer")
ports = [p for p in svc["spec"]["ports"] if p["port"] == port]
assert ports, (peer, "is not a port of", name(svc), svc["spec"]["ports"])
observers = selected(svc)
assert [w["kind"] for w in observers] == ["DaemonSet"], [name(w) for w in observers]
obs = observers[0]
cp = container_port(obs, ports[0].get("targetPort", port))
assert cp is not None, (ports[0], "targets no port of", name(obs))
assert cp["containerPort"] == host_port(flag(container(obs)["args"], "--listen"))[1], cp
"#;

#[test]
fn the_relay_finds_the_observers_through_the_peer_service() {
    let (ok, text) = check(RELAY_FINDS_OBSERVERS, &kubernetes_dir(), &[]);
    assert!(ok, "{text}");
}

/// The flags in the manifests exist: the observer's in `flowscope observer --help` (argv[2]),
/// the relay's in `flowscope relay --help` (argv[3]).
const FLAGS_EXIST: &str = r#"
observer_help = sys.argv[2]
relay_help = sys.argv[3]
for w in WORKLOADS:
    args = container(w)["args"]
    flags = [a.split("=")[0] for a in args if a.startswith("--")]
    assert flags, (name(w), args)
    for f in flags:
        if args[0] == "observer":
            assert re.search(re.escape(f) + r"[ =<\n]", observer_help), (name(w), f, "is not a flag of flowscope observer")
        else:
            assert args[0] == "relay", (name(w), args[0])
            assert re.search(re.escape(f) + r"[ =<\n]", relay_help), (name(w), f, "is not a flag of flowscope relay")
"#;

#[test]
fn the_manifests_flags_are_the_binarys() {
    let (ok, help) = run(env!("CARGO_BIN_EXE_flowscope"), &["observer", "--help"]);
    assert!(ok && help.contains("--policy-dir"), "{help}");
    let (ok, relay_help) = run(env!("CARGO_BIN_EXE_flowscope"), &["relay", "--help"]);
    assert!(ok && relay_help.contains("--peer-service"), "{relay_help}");
    let (ok, text) = check(FLAGS_EXIST, &kubernetes_dir(), &[&help, &relay_help]);
    assert!(ok, "{text}");
}

/// Each ServiceMonitor selects exactly the metrics Service it is for, in the namespaces it
/// names, and scrapes a named port of it that reaches the pods' `metrics` containerPort, the one
/// the Service's scrape annotations name too. Fields are limited to the ones the Prometheus
/// Operator's CRD knows that are used here, so a misspelt one is caught.
const MONITORS_SELECT_SERVICES: &str = r#"
expected = {"flowscope": "flowscope-metrics", "flowscope-relay": "flowscope-relay-metrics"}
monitors = of_kind("ServiceMonitor")
assert sorted(name(m) for m in monitors) == sorted(expected), [name(m) for m in monitors]
ENDPOINT_FIELDS = {"port", "path", "interval", "scrapeTimeout", "honorLabels", "relabelings", "metricRelabelings", "scheme"}
RELABEL_FIELDS = {"sourceLabels", "targetLabel", "action", "regex", "replacement", "separator"}
for m in monitors:
    assert m["apiVersion"] == "monitoring.coreos.com/v1", m["apiVersion"]
    assert set(m["spec"]) <= {"selector", "namespaceSelector", "endpoints", "jobLabel"}, set(m["spec"])
    assert set(m["spec"]["selector"]) == {"matchLabels"}, m["spec"]["selector"]
    namespaces = m["spec"]["namespaceSelector"]["matchNames"]
    svcs = [s for s in of_kind("Service")
            if ns(s) in namespaces and matches(m["spec"]["selector"]["matchLabels"], s["metadata"].get("labels", {}))]
    assert [name(s) for s in svcs] == [expected[name(m)]], (name(m), "selects", [name(s) for s in svcs])
    svc = svcs[0]
    ports = {p.get("name"): p for p in svc["spec"]["ports"]}
    (w,) = selected(svc)
    for ep in m["spec"]["endpoints"]:
        assert set(ep) <= ENDPOINT_FIELDS, (name(m), set(ep) - ENDPOINT_FIELDS)
        for r in ep.get("relabelings", []):
            assert set(r) <= RELABEL_FIELDS, (name(m), set(r) - RELABEL_FIELDS)
        assert ep["port"] in ports, (name(m), ep["port"], list(ports))
        assert ep.get("path", "/metrics") == "/metrics"
        p = ports[ep["port"]]
        cp = container_port(w, p.get("targetPort", p["port"]))
        assert cp is not None and cp.get("name") == "metrics", (name(m), p, cp)
        ann = svc["metadata"]["annotations"]
        assert ann["prometheus.io/scrape"] == "true"
        assert int(ann["prometheus.io/port"]) == p["port"], (name(svc), ann, p)
        assert ann.get("prometheus.io/path", "/metrics") == "/metrics"
"#;

#[test]
fn the_service_monitors_select_the_metrics_services_and_their_ports() {
    let (ok, text) = check(MONITORS_SELECT_SERVICES, &kubernetes_dir(), &[]);
    assert!(ok, "{text}");
}

/// The ConfigMap flowscope-policies holds exactly the files of deploy/network-policies (argv[2]),
/// one key per file, byte for byte.
const CONFIGMAP_IS_THE_SEED: &str = r#"
seed = sys.argv[2]
cm = find("ConfigMap", "flowscope-policies", "kube-system")
files = sorted(f for f in os.listdir(seed) if f.endswith((".yaml", ".yml")))
assert sorted(cm["data"]) == files, (sorted(cm["data"]), files)
assert "binaryData" not in cm
for f in files:
    with open(os.path.join(seed, f), "rb") as fh:
        want = fh.read()
    got = cm["data"][f].encode()
    assert got == want, (f, "differs from the seed file", got[:200], want[:200])
"#;

#[test]
fn the_policies_configmap_is_the_seed_policies_verbatim() {
    let seed = format!("{DEPLOY}/network-policies");
    let (ok, text) = check(CONFIGMAP_IS_THE_SEED, &kubernetes_dir(), &[&seed]);
    assert!(ok, "{text}");
}

/// The consistency checks can fail: each of these edits of a copy of deploy/kubernetes is
/// caught by the check named, with the reason.
#[test]
fn inconsistent_manifests_are_caught() {
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        // The metrics Service without the component selects the relay's pods too.
        (
            "metrics-service.yaml",
            "    app.kubernetes.io/component: observer\n",
            "",
            SERVICES_MATCH_PODS,
            "selects",
        ),
        // A targetPort no container declares.
        (
            "relay.yaml",
            "targetPort: 4245",
            "targetPort: 4246",
            SERVICES_MATCH_PODS,
            "targets no containerPort",
        ),
        // A probe on the metrics port, which serves no /healthz.
        (
            "relay.yaml",
            "path: /healthz\n              port: api",
            "path: /healthz\n              port: metrics",
            WORKLOADS_USE_DECLARED_PORTS,
            "is not the API port",
        ),
        // An observer listening on loopback only, unreachable for the relay.
        (
            "observer-daemonset.yaml",
            "- 0.0.0.0:4244",
            "- 127.0.0.1:4244",
            WORKLOADS_USE_DECLARED_PORTS,
            "127.0.0.1",
        ),
        // An env variable that does not exist stays `$(NODE)` in the args.
        (
            "observer-daemonset.yaml",
            "- $(NODE_NAME)",
            "- $(NODE)",
            WORKLOADS_USE_DECLARED_PORTS,
            "is not expanded",
        ),
        // The relay asking the wrong port of the peers Service.
        (
            "relay.yaml",
            "svc.cluster.local:4244",
            "svc.cluster.local:4245",
            RELAY_FINDS_OBSERVERS,
            "is not a port of",
        ),
        // A ServiceMonitor scraping a port its Service does not have.
        (
            "servicemonitor.yaml",
            "targetLabel: node\n",
            "targetLabel: node\n    - port: api\n",
            MONITORS_SELECT_SERVICES,
            "'api'",
        ),
        // A policy edited in the ConfigMap and not in the seed.
        (
            "policies-configmap.yaml",
            "port: 53",
            "port: 5353",
            CONFIGMAP_IS_THE_SEED,
            "differs from the seed file",
        ),
    ];
    let seed = format!("{DEPLOY}/network-policies");
    for (file, from, to, script, reason) in cases {
        let dir = util::TempDir::new("deploy-consistency");
        for entry in std::fs::read_dir(kubernetes_dir()).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
        let (ok, text) = check(script, dir.to_str().unwrap(), &[&seed]);
        assert!(ok, "the unedited copy must pass: {text}");
        let good = std::fs::read_to_string(dir.join(file)).unwrap();
        assert_eq!(good.matches(from).count(), 1, "{file}: {from:?}");
        std::fs::write(dir.join(file), good.replace(from, to)).unwrap();
        let (ok, text) = check(script, dir.to_str().unwrap(), &[&seed]);
        assert!(
            !ok && text.contains(reason),
            "{file}: {from:?} -> {to:?}: {text}"
        );
    }
}
