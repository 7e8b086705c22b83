//! The manifests and configurations in deploy/ as their real consumers read them, and as they
//! must fit together:
//! - every Kubernetes object against the Kubernetes API schemas (`kubernetes-validate --strict`,
//!   offline), the files and what `kubectl kustomize` renders of the kustomization alike; the
//!   ServiceMonitors (a CRD whose schema is not available offline) are checked here instead,
//!   against the Services they must find;
//! - the Prometheus configuration with `promtool check config`;
//! - consistency: Services select the pods they are meant for and target their declared ports,
//!   probes and listen flags use declared ports, the relay's --peer-pods, --peer-namespace and
//!   --peer-port find exactly the observer DaemonSet's pods on their API port, the flags are the
//!   binary's, the policies ConfigMap is the seed files, the kustomization lists every manifest
//!   but the documented optional ones;
//! - what deploy/README.md documents in one place: the ports (none of them Cilium's on a node)
//!   and the interface globs per CNI, against the manifests;
//! - the observers' ClusterRole against `flowscope_kubernetes::WATCHED`, what the source watches;
//!   the relay's Role (get, list, watch of pods in the observers' namespace, nothing more), its
//!   binding to the relay's ServiceAccount and the mounted token its pod watch needs;
//! - the Containerfile, which cannot be built here (no container engine, no internet), as far as
//!   it can be checked offline: what it copies and runs exists and reaches the build, its shell
//!   steps parse, its toolchains are scripts/setup.sh's, its image, tag, entrypoint and binary
//!   are what the manifests run.
//!
//! YAML is read with the Python `yaml` module of the virtualenv that holds kubernetes-validate.

mod util;

use std::{collections::BTreeSet, path::Path, process::Command};

use flowscope_kubernetes::WATCHED;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
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

fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The files of deploy/ the checks below read besides the manifests, as `NAME=PATH` arguments.
fn deploy_args() -> Vec<(&'static str, String)> {
    vec![
        ("seed", format!("{DEPLOY}/network-policies")),
        ("readme", format!("{DEPLOY}/README.md")),
        ("nodes", format!("{DEPLOY}/prometheus/flowscope-nodes.json")),
        ("version", env!("CARGO_PKG_VERSION").to_string()),
    ]
}

/// Loads every document of every `*.yaml` in the directory `sys.argv[1]` and gives the checks
/// below a few helpers. A check prints `ok` when it passes; a failed `assert` says what is wrong.
const PRELUDE: &str = r#"
import glob, json, os, re, sys, yaml

KDIR = sys.argv[1]
# NAME=VALUE arguments: files and texts a check needs besides the manifests.
ARGS = dict(a.split("=", 1) for a in sys.argv[2:])
DOCS = []
for path in sorted(glob.glob(os.path.join(KDIR, "*.yaml"))):
    # Not a Kubernetes object: read by the kustomization checks.
    if os.path.basename(path) == "kustomization.yaml":
        continue
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

def flags(args, f):
    """Every value of a repeated `--f VALUE` or `--f=VALUE` in args."""
    out = []
    for i, a in enumerate(args):
        if a == f and i + 1 < len(args):
            out.append(args[i + 1])
        elif a.startswith(f + "="):
            out.append(a[len(f) + 1:])
    return out

def host_port(addr):
    host, _, port = addr.rpartition(":")
    return host, int(port)

def kustomization():
    with open(os.path.join(KDIR, "kustomization.yaml")) as f:
        return yaml.safe_load(f)
"#;

/// Runs `script` (after [`PRELUDE`]) on the manifests in `kdir`, with `args` as `NAME=VALUE`
/// (the script's `ARGS`); its success and output.
fn script(script: &str, kdir: &str, args: &[(&str, String)]) -> (bool, String) {
    let script = format!("{PRELUDE}\n{script}\n");
    let args: Vec<String> = args.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut argv = vec!["-c", script.as_str(), kdir];
    argv.extend(args.iter().map(String::as_str));
    run(VENV_PYTHON, &argv)
}

/// Runs `check` (after [`PRELUDE`]) on the manifests in `kdir`; passes when it prints `ok`.
fn check(check: &str, kdir: &str, args: &[(&str, String)]) -> (bool, String) {
    let (ok, text) = script(&format!("{check}\nprint(\"ok\")"), kdir, args);
    (ok && text.trim() == "ok", text)
}

#[test]
fn kubernetes_manifests_match_the_api_schemas() {
    let mut files = Vec::new();
    let mut documents = 0;
    let mut names = Vec::new();
    for entry in std::fs::read_dir(kubernetes_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        names.push(name.clone());
        if name == "kustomization.yaml" {
            // kustomize's input, not an object: what it renders is validated by
            // kustomize_renders_the_listed_manifests_valid.
            continue;
        }
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
        "kustomization.yaml",
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
        ("metrics-service.yaml", "port: 29965", "port: \"nine\""),
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
    let (ok, text) = check(
        NODES_ARE_SCRAPED_ON_THE_OBSERVERS_PORT,
        &kubernetes_dir(),
        &deploy_args(),
    );
    assert!(ok, "{text}");
}

/// The example nodes of prometheus/flowscope-nodes.json are scraped where the DaemonSet's
/// observers serve their metrics on a node.
const NODES_ARE_SCRAPED_ON_THE_OBSERVERS_PORT: &str = r#"
with open(ARGS["nodes"]) as f:
    groups = json.load(f)
targets = [t for g in groups for t in g["targets"]]
assert targets, ARGS["nodes"]
port = container_port(find("DaemonSet", "flowscope", "kube-system"), "metrics")["containerPort"]
for t in targets:
    assert host_port(t)[1] == port, (t, "is not the observers' metrics port on a node", port)
"#;

/// Every Service selects the pods of exactly the workload it is meant for, and each of its
/// ports targets a declared containerPort (by number or name) with the same protocol. Workload
/// selectors select their own pod templates; ServiceAccounts exist.
const SERVICES_MATCH_PODS: &str = r#"
expected = {
    "flowscope-metrics": "flowscope",
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

/// The relay finds the observers through the Kubernetes API, as the observer DaemonSet runs
/// them: `--kubernetes` (the in-cluster token; no other discovery flag), `--peer-pods` a
/// selector (comma-separated `key=value`, the only syntax this check reads: anything else in
/// the manifest is refused) that selects the DaemonSet's pod template labels, no other
/// workload's pods in that namespace (the relay would dial them), and is the DaemonSet's own
/// selector; `--peer-namespace` the DaemonSet's namespace; `--peer-port` the observers' API
/// containerPort (the one their --listen serves; with hostNetwork the pod address is the node's,
/// and nothing maps the port).
const RELAY_FINDS_OBSERVERS: &str = r#"
relay = find("Deployment", "flowscope-relay", "kube-system")
args = container(relay)["args"]
assert "--kubernetes" in args, ("the relay has no --kubernetes: --peer-pods needs the API", args)
for other in ("--kubeconfig", "--peer", "--peers-file", "--peer-service"):
    assert flag(args, other) is None, ("the relay finds the observers with --peer-pods alone, not", other)
selector = flag(args, "--peer-pods")
assert selector is not None, "the relay has no --peer-pods"
sel = {}
for term in selector.split(","):
    m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._/-]*)=([A-Za-z0-9._-]*)", term)
    assert m, ("--peer-pods", selector, "term", term, "is not key=value: only comma-separated key=value is checked here")
    assert m.group(1) not in sel, ("--peer-pods", selector, "repeats", m.group(1))
    sel[m.group(1)] = m.group(2)
namespace = flag(args, "--peer-namespace")
assert namespace is not None, "the relay has no --peer-namespace"
observers = [w for w in WORKLOADS if w["kind"] == "DaemonSet"]
assert [name(w) for w in observers] == ["flowscope"], [name(w) for w in observers]
obs = observers[0]
assert namespace == ns(obs), ("--peer-namespace", namespace, "is not the DaemonSet's namespace", ns(obs))
assert matches(sel, pod_labels(obs)), ("--peer-pods", selector, "does not select the DaemonSet's pods", pod_labels(obs))
others = [name(w) for w in WORKLOADS if w is not obs and ns(w) == namespace and matches(sel, pod_labels(w))]
assert not others, ("--peer-pods", selector, "also selects the pods of", others)
assert sel == obs["spec"]["selector"]["matchLabels"], ("--peer-pods", sel, "is not the DaemonSet's own selector", obs["spec"]["selector"]["matchLabels"])
port = flag(args, "--peer-port")
assert port is not None, "the relay has no --peer-port"
assert port.isdigit(), ("--peer-port", port, "is not a port number")
api = container_port(obs, "api")
assert api is not None, (name(obs), "declares no api port")
assert api["containerPort"] == host_port(flag(container(obs)["args"], "--listen"))[1], api
assert int(port) == api["containerPort"], ("--peer-port", port, "is not the observers' API port", api["containerPort"])
"#;

#[test]
fn the_relay_finds_the_observers_pods_through_the_api() {
    let (ok, text) = check(RELAY_FINDS_OBSERVERS, &kubernetes_dir(), &[]);
    assert!(ok, "{text}");
}

/// The relay's access to the API is exactly what its pod watch needs: its pod mounts the
/// ServiceAccount token (`automountServiceAccountToken` of the pod, else of the ServiceAccount,
/// not false); every binding naming that ServiceAccount is one RoleBinding in --peer-namespace to
/// a Role there (no ClusterRole, no ClusterRoleBinding); the Role's rules have only
/// `apiGroups`, `resources` and `verbs`, and grant get, list and watch of core pods, nothing
/// more (no other verb, resource, group or wildcard) and nothing less.
const RELAY_RBAC: &str = r#"
relay = find("Deployment", "flowscope-relay", "kube-system")
spec = relay["spec"]["template"]["spec"]
sa_name = spec.get("serviceAccountName")
assert sa_name, (name(relay), "runs as the namespace's default ServiceAccount")
sa = find("ServiceAccount", sa_name, ns(relay))
mounted = spec.get("automountServiceAccountToken")
if mounted is None:
    mounted = sa.get("automountServiceAccountToken", True)
assert mounted is True, (name(relay), "does not mount the ServiceAccount token --kubernetes reads")
namespace = flag(container(relay)["args"], "--peer-namespace")
assert namespace is not None, "the relay has no --peer-namespace"
subject = {"kind": "ServiceAccount", "name": sa_name, "namespace": ns(relay)}
bindings = [b for b in DOCS if b["kind"] in ("RoleBinding", "ClusterRoleBinding")
            and subject in b.get("subjects", [])]
assert bindings, ("no RoleBinding binds the relay's ServiceAccount", sa_name)
assert len(bindings) == 1, ("the relay's ServiceAccount is bound more than once", [(b["kind"], name(b)) for b in bindings])
(b,) = bindings
assert b["kind"] == "RoleBinding" and ns(b) == namespace, ("the relay's ServiceAccount is bound by", b["kind"], name(b), ns(b), "not a RoleBinding in", namespace)
ref = b["roleRef"]
assert ref["apiGroup"] == "rbac.authorization.k8s.io" and ref["kind"] == "Role", ("RoleBinding", name(b), "refers to", ref, "not a Role")
role = find("Role", ref["name"], namespace)
granted = []
for i, rule in enumerate(role.get("rules", [])):
    extra = set(rule) - {"apiGroups", "resources", "verbs"}
    assert not extra, ("Role", name(role), "rule", i, "has", sorted(extra))
    for g in rule.get("apiGroups", []):
        for r in rule.get("resources", []):
            for v in rule.get("verbs", []):
                granted.append((g, r, v))
want = [("", "pods", v) for v in ("get", "list", "watch")]
assert len(set(granted)) == len(granted), ("Role", name(role), "grants a verb twice", granted)
more = sorted(set(granted) - set(want))
assert not more, ("Role", name(role), "grants more than get, list, watch of pods:", more)
less = sorted(set(want) - set(granted))
assert not less, ("Role", name(role), "lacks", less)
"#;

#[test]
fn the_relay_may_watch_pods_in_the_observers_namespace_and_nothing_more() {
    let (ok, text) = check(RELAY_RBAC, &kubernetes_dir(), &[]);
    assert!(ok, "{text}");
}

/// The flags in the manifests exist: the observer's in `flowscope observer --help`, the relay's
/// in `flowscope relay --help`.
const FLAGS_EXIST: &str = r#"
observer_help = ARGS["observer_help"]
relay_help = ARGS["relay_help"]
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
    for f in [
        "--kubernetes",
        "--peer-pods",
        "--peer-namespace",
        "--peer-port",
    ] {
        assert!(ok && relay_help.contains(f), "{f}: {relay_help}");
    }
    let args = [("observer_help", help), ("relay_help", relay_help)];
    let (ok, text) = check(FLAGS_EXIST, &kubernetes_dir(), &args);
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

/// The ConfigMap flowscope-policies holds exactly the files of deploy/network-policies, one key
/// per file, byte for byte.
const CONFIGMAP_IS_THE_SEED: &str = r#"
seed = ARGS["seed"]
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
    let (ok, text) = check(CONFIGMAP_IS_THE_SEED, &kubernetes_dir(), &deploy_args());
    assert!(ok, "{text}");
}

/// The ports table of deploy/README.md ("Ports": `observer-api`, `observer-metrics`,
/// `relay-api`, `relay-metrics` with their numbers) is what the observer DaemonSet and the relay
/// Deployment declare, name for name and number for number; the other checks tie the declared
/// ports to listen flags, probes, Services, the relay's peer discovery and Prometheus.
const PORTS_ARE_THE_DOCUMENTED_ONES: &str = r#"
with open(ARGS["readme"]) as f:
    readme = f.read()
rows = {}
for m in re.finditer(r"^\| `((?:observer|relay)-[a-z]+)` \| (\d+) \|", readme, re.M):
    assert m.group(1) not in rows, (m.group(1), "is in the ports table twice")
    rows[m.group(1)] = int(m.group(2))
assert rows, "deploy/README.md has no ports table"
for role, w in (("observer", find("DaemonSet", "flowscope", "kube-system")),
                ("relay", find("Deployment", "flowscope-relay", "kube-system"))):
    declared = {p["name"]: p["containerPort"] for p in container(w)["ports"]}
    documented = {k[len(role) + 1:]: v for k, v in rows.items() if k.startswith(role + "-")}
    assert declared == documented, (name(w), "declares", declared, "deploy/README.md documents", documented)
"#;

#[test]
fn the_ports_are_the_documented_ones() {
    let (ok, text) = check(
        PORTS_ARE_THE_DOCUMENTED_ONES,
        &kubernetes_dir(),
        &deploy_args(),
    );
    assert!(ok, "{text}");
}

/// Workloads on the host's network use none of the ports Cilium uses on a node, so both run on
/// the same nodes: the table "Firewall rules" of Cilium's system requirements, Hubble's metrics
/// (`hubble-metrics-server`, 9965) and Relay's, the range its L7 proxies take ports from
/// (`proxy-portrange-min`/`-max`), and neither the NodePort range nor Linux's ephemeral ports.
const HOST_PORTS_AVOID_CILIUM: &str = r#"
CILIUM = {
    4240: "cilium-health", 4244: "the Hubble server", 4245: "Hubble Relay",
    4250: "mutual authentication", 4251: "the Spire agent's health", 6060: "the agent's pprof",
    6061: "the operator's pprof", 6062: "Hubble Relay's pprof", 6081: "Geneve",
    8472: "VXLAN", 9878: "cilium-envoy's health", 9879: "the agent's health API",
    9890: "the agent's gops", 9891: "the operator's gops", 9892: "clustermesh-apiserver's gops",
    9893: "Hubble Relay's gops", 9901: "cilium-envoy's admin API", 9962: "the agent's metrics",
    9963: "the operator's metrics", 9964: "cilium-envoy's metrics", 9965: "Hubble's metrics",
    9966: "Hubble Relay's metrics", 51871: "WireGuard",
}
RANGES = [
    (10000, 20000, "the range Cilium's L7 proxies take ports from"),
    (30000, 32767, "the NodePort range"),
    (32768, 60999, "Linux's ephemeral ports"),
]
on_host = [w for w in WORKLOADS if w["spec"]["template"]["spec"].get("hostNetwork")]
assert on_host, "no workload on the host's network: nothing checked"
for w in on_host:
    c = container(w)
    ports = [p["containerPort"] for p in c.get("ports", [])]
    ports += [host_port(flag(c["args"], f))[1] for f in ("--listen", "--metrics-listen") if flag(c["args"], f)]
    for p in ports:
        assert p not in CILIUM, (name(w), p, "is Cilium's:", CILIUM.get(p))
        for lo, hi, what in RANGES:
            assert not lo <= p <= hi, (name(w), p, "is in", what, lo, hi)
"#;

#[test]
fn the_observers_ports_are_none_of_ciliums() {
    let (ok, text) = check(HOST_PORTS_AVOID_CILIUM, &kubernetes_dir(), &[]);
    assert!(ok, "{text}");
}

/// The DaemonSet passes every glob of the table "Interfaces per CNI" of deploy/README.md, once,
/// as both --interface and --endpoint-interface, and no other.
const INTERFACES_ARE_THE_DOCUMENTED_ONES: &str = r#"
with open(ARGS["readme"]) as f:
    readme = f.read()
assert "\n## Interfaces per CNI\n" in readme, "deploy/README.md has no section Interfaces per CNI"
section = readme.split("\n## Interfaces per CNI\n", 1)[1].split("\n## ", 1)[0]
documented = [m.group(1) for m in re.finditer(r"^\| [^|`]+ \| `([^`]+)` \|", section, re.M)]
assert documented, "the section Interfaces per CNI has no table"
want = sorted(set(documented))
args = container(find("DaemonSet", "flowscope", "kube-system"))["args"]
for f in ("--interface", "--endpoint-interface"):
    given = flags(args, f)
    assert len(set(given)) == len(given), (f, given, "repeats a glob")
    assert sorted(given) == want, (f, sorted(given), "deploy/README.md's table has", want)
"#;

#[test]
fn the_interface_globs_are_the_documented_ones() {
    let (ok, text) = check(
        INTERFACES_ARE_THE_DOCUMENTED_ONES,
        &kubernetes_dir(),
        &deploy_args(),
    );
    assert!(ok, "{text}");
}

/// kustomization.yaml lists every manifest of the directory but the optional ones (the
/// Prometheus Operator's ServiceMonitors; the demo's policies, which would isolate the `default`
/// namespace), each once; puts everything in kube-system, as the manifests do; uses only what
/// every kubectl's kustomize knows; and sets the image the workloads name, tagged with the
/// workspace's version. A ConfigMap volume of a listed workload whose ConfigMap is not listed is
/// optional, or the pods would not start.
const KUSTOMIZATION_LISTS_THE_MANIFESTS: &str = r#"
OPTIONAL = {"servicemonitor.yaml", "policies-configmap.yaml"}
k = kustomization()
assert k["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and k["kind"] == "Kustomization", k
assert set(k) <= {"apiVersion", "kind", "namespace", "resources", "images"}, set(k)
assert k["namespace"] == "kube-system", k["namespace"]
resources = k["resources"]
assert len(set(resources)) == len(resources), ("listed twice", resources)
files = sorted(f for f in os.listdir(KDIR) if f.endswith((".yaml", ".yml")) and f != "kustomization.yaml")
for r in resources:
    assert r in files, (r, "is listed in kustomization.yaml but is not a manifest of the directory", files)
    assert r not in OPTIONAL, (r, "is optional: it must not be listed")
for f in files:
    assert f in resources or f in OPTIONAL, (f, "is not listed in kustomization.yaml")
listed = [d for d in DOCS if d["__file"] in resources]
for d in listed:
    if d["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
        assert ns(d) == k["namespace"], (d["kind"], name(d), ns(d))
(image,) = k["images"]
assert set(image) == {"name", "newName", "newTag"}, image
assert image["newName"] == image["name"], ("the shipped image is renamed", image)
assert image["newTag"] == ARGS["version"], ("tag", image["newTag"], "is not the workspace's version", ARGS["version"])
workloads = [w for w in WORKLOADS if w["__file"] in resources]
assert sorted(w["kind"] for w in workloads) == ["DaemonSet", "Deployment"], [name(w) for w in workloads]
configmaps = {name(d) for d in listed if d["kind"] == "ConfigMap"}
for w in workloads:
    assert container(w)["image"] == image["name"] + ":" + image["newTag"], (name(w), "tag", container(w)["image"], image)
    for v in w["spec"]["template"]["spec"].get("volumes", []):
        cm = v.get("configMap")
        if cm and cm["name"] not in configmaps:
            assert cm.get("optional") is True, (name(w), v["name"], cm["name"], "is not listed, so the volume must be optional")
"#;

#[test]
fn the_kustomization_lists_every_manifest_but_the_optional_ones() {
    let (ok, text) = check(
        KUSTOMIZATION_LISTS_THE_MANIFESTS,
        &kubernetes_dir(),
        &deploy_args(),
    );
    assert!(ok, "{text}");
}

/// What `kubectl kustomize` rendered (ARGS["rendered"]) is the objects of the listed files, each
/// unchanged but for its namespace and image, with the kustomization's namespace and image.
const RENDERED_IS_THE_LISTED_OBJECTS: &str = r#"
k = kustomization()
(image,) = k["images"]
want_image = image["newName"] + ":" + image["newTag"]
with open(ARGS["rendered"]) as f:
    rendered = [d for d in yaml.safe_load_all(f) if d]
listed = [d for d in DOCS if d["__file"] in k["resources"]]
key = lambda d: (d["kind"], name(d))
assert sorted(map(key, rendered)) == sorted(map(key, listed)), (sorted(map(key, rendered)), sorted(map(key, listed)))
def normal(d):
    d = json.loads(json.dumps(d))
    d.pop("__file", None)
    if d["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
        d["metadata"]["namespace"] = k["namespace"]
    if d["kind"] in ("DaemonSet", "Deployment"):
        for c in d["spec"]["template"]["spec"]["containers"]:
            c["image"] = want_image
    return d
sources = {key(d): normal(d) for d in listed}
for d in rendered:
    if d["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
        assert d["metadata"].get("namespace") == k["namespace"], (key(d), d["metadata"])
    if d["kind"] in ("DaemonSet", "Deployment"):
        for c in d["spec"]["template"]["spec"]["containers"]:
            assert c["image"] == want_image, (key(d), c["image"], want_image)
    assert d == sources[key(d)], (key(d), "was changed by kustomize beyond namespace and image")
print(len(rendered))
"#;

/// `kubectl kustomize` (kubectl's built-in kustomize) renders the kustomization into exactly the
/// listed objects, and they pass the schema check as the files do.
#[test]
fn kustomize_renders_the_listed_manifests_valid() {
    let out = match Command::new("kubectl")
        .args(["kustomize", &kubernetes_dir()])
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!(
            "kubectl: {e}: `kubectl kustomize` renders deploy/kubernetes; Debian's \
             kubernetes-client package has a kubectl that does"
        ),
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = util::TempDir::new("deploy-kustomize");
    let rendered = dir.join("rendered.yaml");
    std::fs::write(&rendered, &out.stdout).unwrap();
    let args = [("rendered", rendered.display().to_string())];
    let (ok, text) = script(RENDERED_IS_THE_LISTED_OBJECTS, &kubernetes_dir(), &args);
    assert!(ok, "{text}");
    let objects: usize = text.trim().parse().unwrap_or_else(|_| panic!("{text}"));
    assert!(objects >= 8, "{objects} objects rendered");
    let (ok, text) = run(
        KUBERNETES_VALIDATE,
        &["--strict", rendered.to_str().unwrap()],
    );
    assert!(ok, "{text}");
    assert_eq!(text.matches(" passed ").count(), objects, "{text}");
}

/// The observers' RBAC: one ClusterRole, `flowscope-observer`, bound (by the one cluster-wide
/// binding) to the DaemonSet's ServiceAccount, which no namespaced binding names; printed as
/// JSON for [`rbac_problems`]. The relay's Role and RoleBinding are [`RELAY_RBAC`]'s.
const OBSERVER_RBAC: &str = r#"
roles = of_kind("ClusterRole")
assert [name(r) for r in roles] == ["flowscope-observer"], [name(r) for r in roles]
bindings = of_kind("ClusterRoleBinding")
assert len(bindings) == 1, [name(b) for b in bindings]
(b,) = bindings
ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "flowscope-observer"}
assert b["kind"] == "ClusterRoleBinding" and b["roleRef"] == ref, b
observer = find("DaemonSet", "flowscope", "kube-system")
sa = observer["spec"]["template"]["spec"]["serviceAccountName"]
assert b["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": ns(observer)}], b["subjects"]
for rb in of_kind("RoleBinding"):
    assert b["subjects"][0] not in rb.get("subjects", []), (name(rb), "binds the observers' ServiceAccount too")
print(json.dumps(roles[0]["rules"]))
"#;

/// What is wrong with the observers' ClusterRole in `kdir` against [`WATCHED`]: each rule only
/// `apiGroups`, `resources` and exactly the verbs get, list and watch; the (group, resource)
/// pairs granted exactly those watched, each once. Empty when nothing is.
fn rbac_problems(kdir: &str) -> Vec<String> {
    let (ok, text) = script(OBSERVER_RBAC, kdir, &[]);
    if !ok {
        return vec![text];
    }
    let rules: Vec<serde_json::Value> =
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    let strings = |rule: &serde_json::Value, key: &str| -> Vec<String> {
        rule[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(String::from))
            .collect()
    };
    let mut problems = Vec::new();
    let mut granted = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let keys: BTreeSet<&str> = rule
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let extra: Vec<&&str> = keys
            .iter()
            .filter(|k| !["apiGroups", "resources", "verbs"].contains(k))
            .collect();
        if !extra.is_empty() {
            problems.push(format!("rule {i}: {extra:?} is more than the watches need"));
        }
        let mut verbs = strings(rule, "verbs");
        verbs.sort();
        if verbs != ["get", "list", "watch"] {
            problems.push(format!(
                "rule {i}: verbs {verbs:?}, not exactly get, list, watch"
            ));
        }
        for group in strings(rule, "apiGroups") {
            for resource in strings(rule, "resources") {
                granted.push((group.clone(), resource));
            }
        }
    }
    let have: BTreeSet<(String, String)> = granted.iter().cloned().collect();
    if have.len() != granted.len() {
        problems.push(format!("a resource is granted twice: {granted:?}"));
    }
    let want: BTreeSet<(String, String)> = WATCHED
        .iter()
        .map(|(g, r)| (g.to_string(), r.to_string()))
        .collect();
    assert_eq!(want.len(), WATCHED.len(), "WATCHED lists a resource twice");
    for (group, resource) in want.difference(&have) {
        problems.push(format!(
            "{resource} (group {group:?}) is watched (WATCHED) but not granted"
        ));
    }
    for (group, resource) in have.difference(&want) {
        problems.push(format!(
            "{resource} (group {group:?}) is granted but not watched (WATCHED)"
        ));
    }
    problems
}

#[test]
fn the_observers_clusterrole_grants_exactly_what_is_watched() {
    let problems = rbac_problems(&kubernetes_dir());
    assert!(problems.is_empty(), "{problems:#?}");
    // And the check can fail: a watched resource missing, a verb or a resource too many.
    let cases = [
        (
            "resources: [pods, namespaces, services, endpoints, nodes]",
            "resources: [pods, namespaces, services, endpoints]",
            "nodes (group \"\") is watched (WATCHED) but not granted",
        ),
        (
            "resources: [networkpolicies]\n    verbs: [get, list, watch]",
            "resources: [networkpolicies]\n    verbs: [get, list, watch, create]",
            "not exactly get, list, watch",
        ),
        (
            "resources: [pods, namespaces, services, endpoints, nodes]",
            "resources: [pods, namespaces, services, endpoints, nodes, secrets]",
            "secrets (group \"\") is granted but not watched",
        ),
    ];
    for (from, to, reason) in cases {
        let dir = copy_of_kubernetes_dir();
        edit(&dir.join("observer-daemonset.yaml"), &[(from, to)]);
        let problems = rbac_problems(dir.to_str().unwrap());
        assert!(
            problems.iter().any(|p| p.contains(reason)),
            "{from:?} -> {to:?}: {problems:#?}"
        );
    }
}

/// The workloads run what the Containerfile builds: the image its build command tags
/// (ARGS["image"]) through the kustomization, the image's entrypoint (no `command` of their own)
/// with a subcommand of the binary first.
const WORKLOADS_RUN_THE_IMAGE: &str = r#"
k = kustomization()
(image,) = k["images"]
assert image["newName"] + ":" + image["newTag"] == ARGS["image"], (image, ARGS["image"])
for w in WORKLOADS:
    c = container(w)
    assert c["image"] == ARGS["image"], (name(w), c["image"], "the Containerfile builds", ARGS["image"])
    assert "command" not in c, (name(w), "overrides the image's entrypoint", c["command"])
    assert c["args"][0] in ("observer", "relay"), (name(w), c["args"][0])
"#;

/// A copy of deploy/kubernetes (and of the files the checks read beside it) in a fresh
/// directory, removed on drop, for edits that must be caught.
fn copy_of_kubernetes_dir() -> util::TempDir {
    let dir = util::TempDir::new("deploy-copy");
    for entry in std::fs::read_dir(kubernetes_dir()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::copy(format!("{DEPLOY}/README.md"), dir.join("README.md")).unwrap();
    std::fs::copy(
        format!("{DEPLOY}/prometheus/flowscope-nodes.json"),
        dir.join("flowscope-nodes.json"),
    )
    .unwrap();
    dir
}

/// Applies each (from, to) replacement to the file, each `from` found exactly once.
fn edit(path: &Path, edits: &[(&str, &str)]) {
    let mut text = read(path);
    for (from, to) in edits {
        assert_eq!(
            text.matches(from).count(),
            1,
            "{}: {from:?}",
            path.display()
        );
        text = text.replacen(from, to, 1);
    }
    std::fs::write(path, text).unwrap();
}

/// The consistency checks can fail: each of these edits of a copy of deploy/kubernetes (with
/// deploy/README.md and prometheus/flowscope-nodes.json beside it) is caught by the check named,
/// with the reason.
#[test]
fn inconsistent_manifests_are_caught() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: &[Case] = &[
        // The metrics Service without the component selects the relay's pods too.
        (
            "metrics-service.yaml",
            &[("    app.kubernetes.io/component: observer\n", "")],
            SERVICES_MATCH_PODS,
            "selects",
        ),
        // A targetPort no container declares.
        (
            "relay.yaml",
            &[("targetPort: 4245", "targetPort: 4246")],
            SERVICES_MATCH_PODS,
            "targets no containerPort",
        ),
        // A probe on the metrics port, which serves no /healthz.
        (
            "relay.yaml",
            &[(
                "path: /healthz\n              port: api",
                "path: /healthz\n              port: metrics",
            )],
            WORKLOADS_USE_DECLARED_PORTS,
            "is not the API port",
        ),
        // An observer listening on loopback only, unreachable for the relay.
        (
            "observer-daemonset.yaml",
            &[("- 0.0.0.0:24244", "- 127.0.0.1:24244")],
            WORKLOADS_USE_DECLARED_PORTS,
            "127.0.0.1",
        ),
        // An env variable that does not exist stays `$(NODE)` in the args.
        (
            "observer-daemonset.yaml",
            &[("- $(NODE_NAME)", "- $(NODE)")],
            WORKLOADS_USE_DECLARED_PORTS,
            "is not expanded",
        ),
        // The relay watching the relay's pods instead of the observers'.
        (
            "relay.yaml",
            &[(
                "app.kubernetes.io/component=observer",
                "app.kubernetes.io/component=relay",
            )],
            RELAY_FINDS_OBSERVERS,
            "does not select the DaemonSet's pods",
        ),
        // A selector too wide: the relay's own pods too, which it would dial on 24244.
        (
            "relay.yaml",
            &[(",app.kubernetes.io/component=observer\n", "\n")],
            RELAY_FINDS_OBSERVERS,
            "also selects the pods of",
        ),
        // A selector that finds the observers today but is not the DaemonSet's.
        (
            "relay.yaml",
            &[("- app.kubernetes.io/name=flowscope,app", "- app")],
            RELAY_FINDS_OBSERVERS,
            "is not the DaemonSet's own selector",
        ),
        // Set-based syntax, which this check does not read: refused, not misread.
        (
            "relay.yaml",
            &[(
                "app.kubernetes.io/component=observer",
                "app.kubernetes.io/component in (observer)",
            )],
            RELAY_FINDS_OBSERVERS,
            "is not key=value",
        ),
        // The observers looked for in another namespace.
        (
            "relay.yaml",
            &[(
                "- --peer-namespace\n            - kube-system\n",
                "- --peer-namespace\n            - default\n",
            )],
            RELAY_FINDS_OBSERVERS,
            "is not the DaemonSet's namespace",
        ),
        // The relay dialing Hubble's port on every node.
        (
            "relay.yaml",
            &[("- \"24244\"", "- \"4244\"")],
            RELAY_FINDS_OBSERVERS,
            "is not the observers' API port",
        ),
        // --peer-pods without --kubernetes: the relay would refuse to start.
        (
            "relay.yaml",
            &[("            - --kubernetes\n", "")],
            RELAY_FINDS_OBSERVERS,
            "has no --kubernetes",
        ),
        // The relay's Role granting a verb too many.
        (
            "relay.yaml",
            &[(
                "verbs: [get, list, watch]",
                "verbs: [get, list, watch, create]",
            )],
            RELAY_RBAC,
            "grants more than get, list, watch of pods",
        ),
        // ... a resource too many.
        (
            "relay.yaml",
            &[("resources: [pods]", "resources: [pods, secrets]")],
            RELAY_RBAC,
            "grants more than get, list, watch of pods",
        ),
        // ... a verb too few: the watch would be refused.
        (
            "relay.yaml",
            &[("verbs: [get, list, watch]", "verbs: [get, list]")],
            RELAY_RBAC,
            "lacks",
        ),
        // The relay's RoleBinding left out: the Role grants nobody anything.
        (
            "relay.yaml",
            &[(
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  \
                 name: flowscope-relay\n  namespace: kube-system\n  labels:\n    \
                 app.kubernetes.io/name: flowscope\n    app.kubernetes.io/component: relay\n\
                 roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  \
                 name: flowscope-relay\nsubjects:\n  - kind: ServiceAccount\n    \
                 name: flowscope-relay\n    namespace: kube-system\n---\n",
                "",
            )],
            RELAY_RBAC,
            "no RoleBinding binds the relay's ServiceAccount",
        ),
        // The RoleBinding pointing at the observers' ClusterRole: the whole of it, in kube-system.
        (
            "relay.yaml",
            &[(
                "  kind: Role\n  name: flowscope-relay\n",
                "  kind: ClusterRole\n  name: flowscope-observer\n",
            )],
            RELAY_RBAC,
            "not a Role",
        ),
        // The relay's ServiceAccount bound cluster-wide too, beside its Role.
        (
            "observer-daemonset.yaml",
            &[(
                "    name: flowscope\n    namespace: kube-system\n---\n",
                "    name: flowscope\n    namespace: kube-system\n  - kind: ServiceAccount\n    \
                 name: flowscope-relay\n    namespace: kube-system\n---\n",
            )],
            RELAY_RBAC,
            "is bound more than once",
        ),
        // No token in the relay's pod: --kubernetes has no credentials.
        (
            "relay.yaml",
            &[(
                "automountServiceAccountToken: true",
                "automountServiceAccountToken: false",
            )],
            RELAY_RBAC,
            "does not mount the ServiceAccount token",
        ),
        // A ServiceMonitor scraping a port its Service does not have.
        (
            "servicemonitor.yaml",
            &[(
                "targetLabel: node\n",
                "targetLabel: node\n    - port: api\n",
            )],
            MONITORS_SELECT_SERVICES,
            "'api'",
        ),
        // A policy edited in the ConfigMap and not in the seed.
        (
            "policies-configmap.yaml",
            &[("port: 53", "port: 5353")],
            CONFIGMAP_IS_THE_SEED,
            "differs from the seed file",
        ),
        // The observers' metrics on Hubble's port.
        (
            "observer-daemonset.yaml",
            &[("- 0.0.0.0:29965", "- 0.0.0.0:9965")],
            HOST_PORTS_AVOID_CILIUM,
            "Hubble's metrics",
        ),
        // An API port among those Cilium's proxies take.
        (
            "observer-daemonset.yaml",
            &[("containerPort: 24244", "containerPort: 14244")],
            HOST_PORTS_AVOID_CILIUM,
            "Cilium's L7 proxies",
        ),
        // A port changed in the manifests and not in the documented table.
        (
            "README.md",
            &[("| `observer-api` | 24244 |", "| `observer-api` | 4244 |")],
            PORTS_ARE_THE_DOCUMENTED_ONES,
            "deploy/README.md documents",
        ),
        // A CNI's glob dropped from the DaemonSet's args but still in the table.
        (
            "observer-daemonset.yaml",
            &[("            - --interface\n            - \"eni*\"\n", "")],
            INTERFACES_ARE_THE_DOCUMENTED_ONES,
            "'--interface'",
        ),
        // A manifest left out of the kustomization.
        (
            "kustomization.yaml",
            &[("  - relay.yaml\n", "")],
            KUSTOMIZATION_LISTS_THE_MANIFESTS,
            "is not listed in kustomization.yaml",
        ),
        // The policies ConfigMap, not listed, mounted as if it had to exist.
        (
            "observer-daemonset.yaml",
            &[("            optional: true\n", "")],
            KUSTOMIZATION_LISTS_THE_MANIFESTS,
            "must be optional",
        ),
        // A tag that is not the workspace's version.
        (
            "kustomization.yaml",
            &[("newTag: 0.1.0", "newTag: 0.2.0")],
            KUSTOMIZATION_LISTS_THE_MANIFESTS,
            "is not the workspace's version",
        ),
        // Prometheus outside the cluster scraping the nodes on Hubble's port.
        (
            "flowscope-nodes.json",
            &[(":29965", ":9965")],
            NODES_ARE_SCRAPED_ON_THE_OBSERVERS_PORT,
            "is not the observers' metrics port",
        ),
    ];
    for (file, edits, check_script, reason) in cases {
        let dir = copy_of_kubernetes_dir();
        let kdir = dir.to_str().unwrap();
        let args = [
            ("seed", format!("{DEPLOY}/network-policies")),
            ("readme", dir.join("README.md").display().to_string()),
            (
                "nodes",
                dir.join("flowscope-nodes.json").display().to_string(),
            ),
            ("version", env!("CARGO_PKG_VERSION").to_string()),
        ];
        let (ok, text) = check(check_script, kdir, &args);
        assert!(ok, "the unedited copy must pass: {text}");
        edit(&dir.join(file), edits);
        let (ok, text) = check(check_script, kdir, &args);
        assert!(!ok && text.contains(reason), "{file}: {edits:?}: {text}");
    }
}

/// One instruction of a Containerfile: its line, keyword and arguments, continuation lines
/// joined as the builders join them (backslash and newline dropped, comment lines skipped).
#[derive(Debug)]
struct Instruction {
    line: usize,
    keyword: String,
    args: String,
}

fn instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_start();
        if trimmed.starts_with('#') || (open.is_none() && trimmed.is_empty()) {
            continue;
        }
        let (line, mut joined) = open.take().unwrap_or((i + 1, String::new()));
        match raw.strip_suffix('\\') {
            Some(part) => {
                joined.push_str(part);
                open = Some((line, joined));
            }
            None => {
                joined.push_str(raw);
                let joined = joined.trim();
                let (keyword, args) = joined
                    .split_once(char::is_whitespace)
                    .unwrap_or((joined, ""));
                out.push(Instruction {
                    line,
                    keyword: keyword.to_ascii_uppercase(),
                    args: args.trim().to_string(),
                });
            }
        }
    }
    assert!(open.is_none(), "the last instruction ends with a backslash");
    out
}

/// Whether .dockerignore's `patterns` leave `path` (relative to the repository) out of the
/// build context. Only the two forms the file is allowed are understood: a plain path (that
/// file or directory and everything under it) and `**/NAME` (NAME at any depth).
fn ignored(patterns: &[&str], path: &str) -> bool {
    patterns.iter().any(|p| match p.strip_prefix("**/") {
        Some(name) => path.split('/').any(|part| part == name),
        None => path == *p || path.starts_with(&format!("{p}/")),
    })
}

/// The first `'...'` after `marker` in `text`: the awk program of the wasm-bindgen version.
fn quoted_after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let start = rest.find('\'')? + 1;
    let len = rest[start..].find('\'')?;
    Some(&rest[start..start + len])
}

/// The rest of the line (or of the shell command, up to `&&`) after `marker`, trimmed.
fn command_after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let end = rest.find(['\n', '&']).unwrap_or(rest.len());
    Some(rest[..end].trim())
}

/// Words of `text` (split at whitespace, quotes, `=`, `;` and parentheses) that start with
/// `prefix` and end with `suffix`, deduplicated.
fn words(text: &str, prefix: &str, suffix: &str) -> BTreeSet<String> {
    text.split(|c: char| c.is_whitespace() || "'\"=;(){}".contains(c))
        .filter(|w| w.starts_with(prefix) && w.ends_with(suffix) && w.len() > prefix.len())
        .map(String::from)
        .collect()
}

/// The Containerfile texts a check reads, so the mistakes test can hand it edited ones.
struct BuildFiles {
    containerfile: String,
    dockerignore: String,
    setup: String,
}

impl BuildFiles {
    fn of_repository() -> BuildFiles {
        BuildFiles {
            containerfile: read(format!("{ROOT}/Containerfile")),
            dockerignore: read(format!("{ROOT}/.dockerignore")),
            setup: read(format!("{ROOT}/scripts/setup.sh")),
        }
    }
}

/// What is wrong with the Containerfile, as far as can be told without building it (the three
/// parts below). Empty when nothing is.
fn containerfile_problems(files: &BuildFiles) -> Vec<String> {
    let patterns: Vec<&str> = files
        .dockerignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let mut problems = context_problems(&patterns);
    problems.extend(instruction_problems(&files.containerfile, &patterns));
    problems.extend(toolchain_problems(files));
    problems
}

/// .dockerignore uses only the forms [`ignored`] understands, leaves out target/ and ui/dist
/// (built afresh), and nothing the build reads: the workspace's members, the Cargo files,
/// scripts/build-ui.sh, the UI's static files.
fn context_problems(patterns: &[&str]) -> Vec<String> {
    let root = Path::new(ROOT);
    let mut problems = Vec::new();
    for p in patterns {
        let plain = p.strip_prefix("**/").unwrap_or(p);
        if plain.contains(['*', '?', '[', '!']) || plain.starts_with('/') {
            problems.push(format!(
                ".dockerignore: {p:?} is neither a plain path nor **/NAME"
            ));
        }
    }
    for must in ["target", "ui/dist"] {
        if !ignored(patterns, must) {
            problems.push(format!(
                ".dockerignore: {must} must be left out of the context"
            ));
        }
    }
    let members = read(root.join("Cargo.toml"));
    let members = members
        .lines()
        .find_map(|l| l.strip_prefix("members = "))
        .expect("Cargo.toml: members");
    let mut needed: Vec<String> = members
        .trim_matches(['[', ']'])
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_string())
        .filter(|m| m != ".")
        .collect();
    assert!(needed.len() >= 5, "{needed:?}");
    needed.extend(
        [
            "Cargo.toml",
            "Cargo.lock",
            "src/main.rs",
            "scripts/build-ui.sh",
            "ui/static",
        ]
        .map(String::from),
    );
    for path in &needed {
        if ignored(patterns, path) {
            problems.push(format!(
                ".dockerignore leaves out {path}, which the build reads"
            ));
        }
    }
    problems
}

/// The instructions are known ones; every stage is Debian 12 (bookworm); the shell is bash and
/// every RUN parses (`bash -n`); every file COPY takes from the context and every script RUN
/// calls exists and is not left out; the UI is built before flowscope (which embeds it); the
/// last stage copies the binary the build stage made of `cargo build --release --bin
/// flowscope`, and runs it as its entrypoint.
fn instruction_problems(containerfile: &str, patterns: &[&str]) -> Vec<String> {
    let root = Path::new(ROOT);
    let mut problems = Vec::new();
    let all = instructions(containerfile);
    let known = [
        "FROM",
        "RUN",
        "COPY",
        "ENV",
        "WORKDIR",
        "ENTRYPOINT",
        "CMD",
        "SHELL",
        "ARG",
        "LABEL",
        "USER",
    ];
    let mut stages: Vec<(Option<String>, Vec<&Instruction>)> = Vec::new();
    for ins in &all {
        if !known.contains(&ins.keyword.as_str()) {
            problems.push(format!(
                "line {}: unknown instruction {}",
                ins.line, ins.keyword
            ));
        }
        if ins.keyword == "FROM" {
            let words: Vec<&str> = ins.args.split_whitespace().collect();
            if !words[0].contains("/debian:bookworm") {
                problems.push(format!(
                    "line {}: {} is not Debian 12 (bookworm)",
                    ins.line, words[0]
                ));
            }
            let name = match words.as_slice() {
                [_, r#as, name] if r#as.eq_ignore_ascii_case("as") => Some(name.to_string()),
                _ => None,
            };
            stages.push((name, Vec::new()));
        } else if let Some((_, body)) = stages.last_mut() {
            body.push(ins);
        } else {
            problems.push(format!("line {}: {} before FROM", ins.line, ins.keyword));
        }
    }
    if stages.len() < 2 {
        problems.push(format!(
            "{} stages: a build stage and a slim one expected",
            stages.len()
        ));
        return problems;
    }

    let mut shell_is_bash = false;
    let mut ui_built_at = None;
    let mut flowscope_built_at = None;
    for (n, (_, body)) in stages.iter().enumerate() {
        for ins in body {
            match ins.keyword.as_str() {
                "SHELL" => shell_is_bash = ins.args.starts_with("[\"/bin/bash\""),
                "RUN" => {
                    if !shell_is_bash {
                        problems.push(format!(
                            "line {}: RUN before SHELL [\"/bin/bash\", ...]",
                            ins.line
                        ));
                    }
                    let (ok, text) = run("bash", &["-n", "-c", &ins.args]);
                    if !ok {
                        problems.push(format!("line {}: RUN does not parse: {text}", ins.line));
                    }
                    for script in words(&ins.args, "scripts/", "") {
                        if !root.join(&script).is_file() || ignored(patterns, &script) {
                            problems
                                .push(format!("line {}: {script} is not in the context", ins.line));
                        }
                    }
                    if let Some(at) = ins.args.find("bash scripts/build-ui.sh") {
                        ui_built_at = Some((n, ins.line, at));
                    }
                    if let Some(at) = ins.args.find("cargo build --release") {
                        if !command_after(&ins.args, "cargo build --release")
                            .is_some_and(|c| c.contains("--bin flowscope"))
                        {
                            problems.push(format!(
                                "line {}: cargo build --release without --bin flowscope",
                                ins.line
                            ));
                        }
                        flowscope_built_at = Some((n, ins.line, at));
                    }
                }
                "COPY" => {
                    let words: Vec<&str> = ins.args.split_whitespace().collect();
                    let from = words.iter().find_map(|w| w.strip_prefix("--from="));
                    let paths: Vec<&str> = words
                        .iter()
                        .copied()
                        .filter(|w| !w.starts_with("--"))
                        .collect();
                    let Some((_, sources)) = paths.split_last() else {
                        problems.push(format!("line {}: COPY of nothing", ins.line));
                        continue;
                    };
                    match from {
                        Some(stage) => {
                            if !stages[..n]
                                .iter()
                                .any(|(name, _)| name.as_deref() == Some(stage))
                            {
                                problems.push(format!(
                                    "line {}: --from={stage} is no earlier stage",
                                    ins.line
                                ));
                            }
                        }
                        None => {
                            for src in sources {
                                let path = src.trim_start_matches("./");
                                let missing = !root.join(path).exists();
                                if missing || (path != "." && ignored(patterns, path)) {
                                    problems.push(format!(
                                        "line {}: COPY {src}: not in the context",
                                        ins.line
                                    ));
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
    match (ui_built_at, flowscope_built_at) {
        (Some(ui), Some(bin)) if ui < bin => {}
        (ui, bin) => problems.push(format!(
            "the UI (scripts/build-ui.sh, {ui:?}) must be built before flowscope (cargo build --release, {bin:?}), which embeds it"
        )),
    }

    // The last stage copies the built binary and runs it.
    let (_, last) = stages.last().unwrap();
    let entrypoint = last.iter().rev().find(|i| i.keyword == "ENTRYPOINT");
    let entrypoint: Option<Vec<String>> =
        entrypoint.and_then(|i| serde_json::from_str(&i.args).ok());
    let copied = last.iter().find_map(|i| {
        let words: Vec<&str> = i.args.split_whitespace().collect();
        match (i.keyword.as_str(), words.as_slice()) {
            ("COPY", [from, src, dest]) => from
                .strip_prefix("--from=")
                .map(|stage| (stage.to_string(), src.to_string(), dest.to_string())),
            _ => None,
        }
    });
    match (&entrypoint, &copied) {
        (Some(entry), Some((stage, src, dest))) => {
            if entry.first() != Some(dest) {
                problems.push(format!("ENTRYPOINT {entry:?} is not the copied binary {dest}"));
            }
            let made = stages.iter().find(|(name, _)| name.as_deref() == Some(stage.as_str()));
            let made_there = made.is_some_and(|(_, body)| {
                body.iter().any(|i| {
                    i.keyword == "RUN" && i.args.contains(&format!("-o {src} target/release/flowscope"))
                })
            });
            if !made_there {
                problems.push(format!("{src} is not made of target/release/flowscope in stage {stage}"));
            }
        }
        _ => problems.push(format!(
            "the last stage must COPY --from=STAGE the binary and run it as ENTRYPOINT [\"...\"]: {entrypoint:?} {copied:?}"
        )),
    }
    problems
}

/// The toolchains are scripts/setup.sh's: the LLVM major (and a check that the nightly is on
/// it), bpf-linker's version and features, the LLVM prefix, nightly with rust-src, the wasm
/// target, wasm-bindgen-cli of Cargo.lock's version read the same way; stable is the
/// workspace's rust-version.
fn toolchain_problems(files: &BuildFiles) -> Vec<String> {
    let mut problems = Vec::new();
    let (cf, setup) = (&files.containerfile, &files.setup);
    let llvm = |t: &str| words(t, "llvm-", "-dev");
    if llvm(cf) != llvm(setup) || llvm(cf).len() != 1 {
        problems.push(format!(
            "LLVM: {:?} here, {:?} in setup.sh",
            llvm(cf),
            llvm(setup)
        ));
    }
    let major: String = llvm(setup)
        .iter()
        .next()
        .map(|w| {
            w.trim_start_matches("llvm-")
                .trim_end_matches("-dev")
                .to_string()
        })
        .unwrap_or_default();
    if !cf.contains(&format!("LLVM version: {major}\\.")) {
        problems.push(format!("no check that the nightly's LLVM is {major}"));
    }
    let linker = |t: &str| command_after(t, "cargo install bpf-linker --").map(String::from);
    if linker(cf).is_none() || linker(cf) != linker(setup) {
        problems.push(format!(
            "bpf-linker: {:?} here, {:?} in setup.sh",
            linker(cf),
            linker(setup)
        ));
    }
    let prefixes = |t: &str| words(t, "/usr/lib/llvm-", "");
    if prefixes(cf) != prefixes(setup) {
        problems.push(format!(
            "LLVM prefix: {:?} here, {:?} in setup.sh",
            prefixes(cf),
            prefixes(setup)
        ));
    }
    let awk = |t: &str| quoted_after(t, "awk").map(String::from);
    if awk(cf).is_none() || awk(cf) != awk(setup) {
        problems.push(format!(
            "wasm-bindgen's version: {:?} here, {:?} in setup.sh",
            awk(cf),
            awk(setup)
        ));
    }
    for what in [
        "rust-src",
        "wasm32-unknown-unknown",
        "wasm-bindgen-cli --version \"=$wasm_bindgen\"",
    ] {
        if !cf.contains(what) || !setup.contains(what) {
            problems.push(format!(
                "{what}: not in both the Containerfile and setup.sh"
            ));
        }
    }
    if !cf.contains("toolchain install nightly") {
        problems.push("no nightly toolchain (observer/build.rs runs `rustup run nightly`)".into());
    }
    let rust_version = read(format!("{ROOT}/Cargo.toml"))
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"').to_string())
        .expect("Cargo.toml: rust-version");
    let stable = command_after(cf, "--default-toolchain").and_then(|c| c.split_whitespace().next());
    if !stable.is_some_and(|s| s == rust_version || s.starts_with(&format!("{rust_version}."))) {
        problems.push(format!(
            "stable {stable:?} is not the workspace's rust-version {rust_version}"
        ));
    }
    problems
}

#[test]
fn the_containerfile_builds_from_this_repository_with_setups_toolchains() {
    let problems = containerfile_problems(&BuildFiles::of_repository());
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The Containerfile check can fail: each edit of the Containerfile, .dockerignore or
/// setup.sh text is reported, with the reason.
#[test]
fn containerfile_mistakes_are_caught() {
    type Edit = fn(&mut BuildFiles) -> &mut String;
    let containerfile: Edit = |f| &mut f.containerfile;
    let dockerignore: Edit = |f| &mut f.dockerignore;
    let setup: Edit = |f| &mut f.setup;
    let cases: &[(Edit, &str, &str, &str)] = &[
        (
            containerfile,
            "COPY Cargo.lock ",
            "COPY Cargo.lockfile ",
            "COPY Cargo.lockfile: not in the context",
        ),
        (
            containerfile,
            "libc6-dev llvm-22-dev",
            "libc6-dev llvm-21-dev",
            "LLVM: ",
        ),
        (
            containerfile,
            "|| { echo",
            "|| ( echo",
            "RUN does not parse",
        ),
        (
            containerfile,
            "ENTRYPOINT [\"/usr/local/bin/flowscope\"]",
            "ENTRYPOINT [\"/usr/bin/flowscope\"]",
            "is not the copied binary",
        ),
        (
            containerfile,
            "RUN bash scripts/build-ui.sh \\\n && cargo build --release --locked --bin flowscope \\\n",
            "RUN cargo build --release --locked --bin flowscope \\\n && bash scripts/build-ui.sh \\\n",
            "must be built before flowscope",
        ),
        (
            containerfile,
            "--bin flowscope",
            "--bins",
            "without --bin flowscope",
        ),
        (
            containerfile,
            "debian:bookworm-slim",
            "debian:trixie-slim",
            "is not Debian 12",
        ),
        (
            containerfile,
            "--default-toolchain 1.95.0",
            "--default-toolchain 1.94.0",
            "rust-version",
        ),
        (
            dockerignore,
            "ui/dist\n",
            "ui/dist\nscripts\n",
            "scripts/build-ui.sh",
        ),
        (dockerignore, "target\n", "", "target must be left out"),
        (
            setup,
            "--version 0.13.0 --no-default",
            "--version 0.14.0 --no-default",
            "bpf-linker: ",
        ),
    ];
    for (field, from, to, reason) in cases {
        let mut files = BuildFiles::of_repository();
        let text = field(&mut files);
        assert_eq!(text.matches(from).count(), 1, "{from:?}");
        *text = text.replacen(from, to, 1);
        let problems = containerfile_problems(&files);
        assert!(
            problems.iter().any(|p| p.contains(reason)),
            "{from:?} -> {to:?}: {problems:#?}"
        );
    }
}

/// The image the Containerfile's build command tags (`-t IMAGE`, the same wherever it is
/// written: the Containerfile, deploy/README.md) is the workspace's version, the one the
/// kustomization sets and the workloads name; they run its entrypoint with a subcommand.
/// README.md builds it under the user's registry name with the same tag.
#[test]
fn the_manifests_run_the_image_the_containerfile_builds() {
    let tags = |text: &str| -> Vec<String> {
        text.split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "-t")
            .map(|w| w[1].to_string())
            .collect()
    };
    let built = tags(&read(format!("{ROOT}/Containerfile")));
    let documented = tags(&read(format!("{DEPLOY}/README.md")));
    assert!(
        !built.is_empty() && !documented.is_empty(),
        "{built:?} {documented:?}"
    );
    let image = &built[0];
    for t in built.iter().chain(&documented) {
        assert_eq!(t, image, "the build commands tag different images");
    }
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        image.ends_with(&format!(":{version}")),
        "{image}: not the version {version}"
    );
    let walkthrough = tags(&read(format!("{ROOT}/README.md")));
    assert!(!walkthrough.is_empty(), "README.md builds no image");
    for t in &walkthrough {
        assert!(
            t.ends_with(&format!("/flowscope:{version}")),
            "README.md: {t}"
        );
    }
    let args = [("image", image.clone())];
    let (ok, text) = check(WORKLOADS_RUN_THE_IMAGE, &kubernetes_dir(), &args);
    assert!(ok, "{text}");
    // And it can fail: a workload naming another image.
    let dir = copy_of_kubernetes_dir();
    edit(
        &dir.join("relay.yaml"),
        &[(
            "image: ghcr.io/flowscope/flowscope:0.1.0",
            "image: flowscope:latest",
        )],
    );
    let (ok, text) = check(WORKLOADS_RUN_THE_IMAGE, dir.to_str().unwrap(), &args);
    assert!(!ok && text.contains("the Containerfile builds"), "{text}");
}
