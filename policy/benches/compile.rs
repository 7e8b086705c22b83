//! Compile time for policy sets of 10, 1,000 and 10,000 rules (distinct CIDRs and ports), the
//! userspace half of "time from a policy change to enforcement"; then the same with HTTP rules
//! on every rule, so every entry carries an L7 grant.
//!
//! Run: `cargo bench -p flowscope-policy --bench compile`

use std::time::Instant;

use flowscope_policy::{
    PolicySet, Protocol, World,
    compile::{EndpointIdentity, compile},
    verdict::{NamedPort, Namespace, Pod},
};

fn world() -> (World, Vec<EndpointIdentity>) {
    let mut pods = Vec::new();
    let mut ids = Vec::new();
    for (i, ns) in ["x", "y", "z"].iter().enumerate() {
        for (j, name) in ["a", "b", "c"].iter().enumerate() {
            let n = i * 3 + j;
            pods.push(Pod {
                namespace: ns.to_string(),
                name: name.to_string(),
                labels: [("pod".to_string(), name.to_string())].into(),
                ips: vec![format!("198.18.1.{}", n + 1).parse().unwrap()],
                ports: vec![NamedPort {
                    name: "serve-80-tcp".into(),
                    port: 80,
                    protocol: Protocol::Tcp,
                }],
            });
            ids.push(EndpointIdentity {
                namespace: ns.to_string(),
                pod: name.to_string(),
                endpoint_id: n as u32 + 1,
                identity: 1000 + j as u32,
            });
        }
    }
    let namespaces = ["x", "y", "z"]
        .iter()
        .map(|n| Namespace {
            name: n.to_string(),
            labels: [("ns".to_string(), n.to_string())].into(),
        })
        .collect();
    (
        World {
            namespaces,
            pods,
            ..World::default()
        },
        ids,
    )
}

/// One NetworkPolicy in namespace x with `rules` egress rules, each to its own /32 and port.
fn policies(rules: usize) -> PolicySet {
    let mut yaml = String::from(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: many, namespace: x}\nspec:\n  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n",
    );
    for i in 0..rules {
        yaml.push_str(&format!(
            "    - to: [{{ipBlock: {{cidr: 198.19.{}.{}/32}}}}]\n      ports: [{{port: {}, protocol: TCP}}]\n",
            i / 250,
            i % 250 + 1,
            1000 + i % 50_000
        ));
    }
    let mut set = PolicySet::new();
    set.add_file(&yaml, "many.yaml");
    assert!(set.errors.is_empty(), "{:?}", set.errors.first());
    set
}

/// One CiliumNetworkPolicy in namespace x with `rules` ingress rules, each from its own /32 to
/// its own port with its own HTTP rules: every entry of every pod carries an L7 grant.
fn http_policies(rules: usize) -> PolicySet {
    let mut yaml = String::from(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: many-http, namespace: x}\nspec:\n  endpointSelector: {}\n  ingress:\n",
    );
    for i in 0..rules {
        yaml.push_str(&format!(
            "    - fromCIDR: [198.19.{}.{}/32]\n      toPorts:\n        - ports: [{{port: \"{}\", protocol: TCP}}]\n          rules: {{http: [{{method: GET, path: \"/r/{i}/.*\"}}]}}\n",
            i / 250,
            i % 250 + 1,
            1000 + i % 50_000
        ));
    }
    let mut set = PolicySet::new();
    set.add_file(&yaml, "many-http.yaml");
    assert!(set.errors.is_empty(), "{:?}", set.errors.first());
    set
}

fn main() {
    // Rounds per size (min/median/max); `cargo bench -p flowscope-policy --bench compile -- 15`.
    let rounds: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(5)
        .max(1);
    let (world, ids) = world();
    for (kind, policies) in [
        ("", policies as fn(usize) -> PolicySet),
        (" with HTTP rules", http_policies),
    ] {
        for rules in [10, 1_000, 10_000] {
            let set = policies(rules);
            let mut took = Vec::with_capacity(rounds);
            let mut compiled = None;
            for _ in 0..rounds {
                let start = Instant::now();
                compiled = Some(compile(&set, &world, &ids).expect("compile"));
                took.push(start.elapsed());
            }
            let compiled = compiled.expect("one round");
            took.sort();
            let entries: usize = compiled
                .endpoints
                .iter()
                .map(|e| e.ingress.entries.len() + e.egress.entries.len())
                .sum();
            println!(
                "{rules:>6} rules{kind}: compiled in {:>10.2?} / {:>10.2?} / {:>10.2?} \
                 (min/median/max of {rounds}), {entries} entries, {} CIDR identities, {} HTTP \
                 rule sets",
                took[0],
                took[took.len() / 2],
                took[took.len() - 1],
                compiled.cidrs.len(),
                compiled.http_rule_sets.len()
            );
        }
    }
}
