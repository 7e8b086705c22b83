//! NetworkPolicy and CiliumNetworkPolicy manifests, as `--policy-dir` and the Kubernetes API
//! give them: parsed with positions, then compiled for a small cluster.
#![no_main]

use flowscope_observer::endpoints::{EndpointSpec, Registry};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut set = flowscope_policy::PolicySet::new();
    set.add(flowscope_policy::parse_file_in(
        text,
        "fuzz.yaml",
        "default",
    ));
    for p in &set.policies {
        let _ = p.warnings();
    }
    let pod = |ns: &str, name: &str, ip: [u8; 4], app: &str| EndpointSpec {
        namespace: ns.into(),
        pod_name: name.into(),
        ips: vec![std::net::Ipv4Addr::from(ip).into()],
        labels: [("app".to_string(), app.to_string())].into(),
        ..EndpointSpec::default()
    };
    let registry = Registry::build(&[
        pod("default", "a", [198, 18, 0, 1], "web"),
        pod("default", "b", [198, 18, 0, 2], "db"),
        pod("other", "c", [198, 18, 1, 1], "web"),
    ]);
    let world = flowscope_observer::policy::world(&registry, false);
    let identities: Vec<_> = registry
        .endpoints
        .iter()
        .map(|ep| flowscope_policy::EndpointIdentity {
            namespace: ep.namespace.clone(),
            pod: ep.pod_name.clone(),
            endpoint_id: ep.id,
            identity: ep.identity,
        })
        .collect();
    let _ = flowscope_policy::compile_for(&set, &world, &identities, |_| true);
});
