//! `flowscope policy validate DIR`: the offline check for CI pipelines.

mod util;

use std::process::Command;

fn validate(dir: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flowscope"))
        .args(["policy", "validate"])
        .arg(dir)
        .output()
        .expect("run flowscope");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_seed_policies_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/network-policies");
    let (ok, stdout, stderr) = validate(&dir);
    assert!(ok, "{stdout}{stderr}");
    for name in [
        "NetworkPolicy/default/default-deny-ingress",
        "NetworkPolicy/default/allow-dns-egress",
        "NetworkPolicy/default/allow-monitoring-scrape",
        "CiliumNetworkPolicy/default/allow-get-only",
        "NetworkPolicy/default/allow-frontend-to-api",
    ] {
        assert!(stdout.contains(name), "{name} missing: {stdout}");
    }
    assert!(
        stdout.contains("valid policies: 5, problems: 0"),
        "{stdout}"
    );
    // Enforced as written, L7 rules included: nothing to warn about.
    assert!(!stdout.contains("warn"), "{stdout}");
}

#[test]
fn a_bad_document_is_reported_and_the_rest_still_loads() {
    let dir = std::env::temp_dir().join(format!("policies-{}", util::unique()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("good.yaml"),
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: x}\nspec:\n  podSelector: {}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("bad.yaml"),
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad, namespace: x}\nspec:\n  podSelector: {}\n  egress:\n    - ports:\n        - protocol: ICMP\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = validate(&dir);
    assert!(!ok, "a bad policy must fail validation");
    assert!(
        stderr.contains(
            "bad.yaml:8:21: spec.egress[0].ports[0].protocol: \"ICMP\" is not TCP, UDP or SCTP"
        ),
        "{stderr}"
    );
    assert!(stdout.contains("NetworkPolicy/x/deny"), "{stdout}");
    assert!(
        stdout.contains("valid policies: 1, problems: 1, other documents skipped: 1"),
        "{stdout}"
    );
    // Not a directory: a clear error.
    let (ok, _, stderr) = validate(&dir.join("good.yaml"));
    assert!(!ok);
    assert!(stderr.contains("is not a directory"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}
