//! The manifests and configurations in deploy/ as their real consumers read them: Kubernetes
//! objects against the Kubernetes API schemas (`kubernetes-validate --strict`, offline), the
//! Prometheus configuration with `promtool check config`, and the ServiceMonitor against the
//! Service it must find (the Prometheus Operator's CRD schema is not available offline).

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

#[test]
fn kubernetes_manifests_match_the_api_schemas() {
    let mut files: Vec<String> = ["kubernetes/metrics-service.yaml"]
        .iter()
        .map(|f| format!("{DEPLOY}/{f}"))
        .collect();
    for entry in std::fs::read_dir(Path::new(DEPLOY).join("network-policies")).unwrap() {
        let path = entry.unwrap().path();
        // CiliumNetworkPolicy is a CRD: `flowscope policy validate` checks it (tests/policy.rs).
        let text = std::fs::read_to_string(&path).unwrap();
        if text.contains("kind: NetworkPolicy") {
            files.push(path.display().to_string());
        }
    }
    assert!(files.len() >= 4, "{files:?}");
    let mut args = vec!["--strict"];
    args.extend(files.iter().map(String::as_str));
    let (ok, text) = run(KUBERNETES_VALIDATE, &args);
    assert!(ok, "{text}");
    assert_eq!(text.matches(" passed ").count(), files.len(), "{text}");
}

#[test]
fn a_broken_manifest_is_refused_by_the_schema_check() {
    // The check above can fail: a Service port as a string is refused.
    let dir = std::env::temp_dir().join(format!("deploy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad-service.yaml");
    let good =
        std::fs::read_to_string(format!("{DEPLOY}/kubernetes/metrics-service.yaml")).unwrap();
    std::fs::write(&bad, good.replace("port: 9965", "port: \"nine\"")).unwrap();
    let (ok, text) = run(KUBERNETES_VALIDATE, &["--strict", bad.to_str().unwrap()]);
    assert!(!ok, "{text}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_prometheus_configuration_is_valid() {
    let (ok, text) = run(
        "promtool",
        &[
            "check",
            "config",
            &format!("{DEPLOY}/prometheus/prometheus.yml"),
        ],
    );
    assert!(ok && text.contains("SUCCESS"), "{text}");
}

#[test]
fn the_service_monitor_selects_the_metrics_service_and_its_port() {
    let script = r#"
import sys, yaml
svc = yaml.safe_load(open(sys.argv[1]))
sm = yaml.safe_load(open(sys.argv[2]))
assert sm["apiVersion"] == "monitoring.coreos.com/v1" and sm["kind"] == "ServiceMonitor", sm
labels = svc["metadata"]["labels"]
for k, v in sm["spec"]["selector"]["matchLabels"].items():
    assert labels.get(k) == v, ("selector", k, v, labels)
assert svc["metadata"]["namespace"] in sm["spec"]["namespaceSelector"]["matchNames"]
ports = {p["name"]: p for p in svc["spec"]["ports"]}
for ep in sm["spec"]["endpoints"]:
    assert ep["port"] in ports, (ep["port"], list(ports))
    assert ep.get("path", "/metrics") == "/metrics"
ann = svc["metadata"]["annotations"]
assert ann["prometheus.io/scrape"] == "true"
assert int(ann["prometheus.io/port"]) == ports["metrics"]["port"] == 9965
print("ok")
"#;
    let (ok, text) = run(
        VENV_PYTHON,
        &[
            "-c",
            script,
            &format!("{DEPLOY}/kubernetes/metrics-service.yaml"),
            &format!("{DEPLOY}/kubernetes/servicemonitor.yaml"),
        ],
    );
    assert!(ok && text.trim() == "ok", "{text}");
}
