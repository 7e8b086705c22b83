//! Network policy enforcement: a directory of manifests plus the endpoint registry, compiled
//! (flowscope-policy) into the datapath's maps and swapped in atomically, and the attribution
//! table that lets flows name the policies that allowed or denied them.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    path::Path,
    sync::Arc,
};

use anyhow::Context as _;
use flowscope_common::{
    ENFORCE_EGRESS, ENFORCE_INGRESS, EndpointInfo, POLICY_ALLOW, POLICY_DENY, POLICY_FLAG_PROXY,
    PolicyKey, PolicyRangeKey, PolicyValue, RANGES_EGRESS, RANGES_INGRESS, direction,
};
pub use flowscope_model::api::{LoadedPolicy, PolicyStatus};
use flowscope_model::flow::Policy as FlowPolicy;
use flowscope_policy::{
    PolicySet, Protocol, World,
    compile::{
        self, Decision, EXACT_PORT, EndpointIdentity, WORLD_IPV4_IDENTITY, WORLD_IPV6_IDENTITY,
    },
    verdict::{NamedPort, Namespace, Pod},
};
use ipnet::IpNet;

use crate::{
    endpoints::{EndpointSpec, NodeRole, Registry},
    proxy::judge::{L7Policy, LocalEndpoint},
    source::{
        datapath::{Datapath, PolicyWritten},
        interfaces,
    },
};

/// Who decided a connection: the direction judged, allow or deny, and the policies.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Attribution {
    /// `direction::INGRESS` or `direction::EGRESS`.
    pub direction: u8,
    pub deny: bool,
    pub policies: Vec<FlowPolicy>,
}

/// `policy_ref` (as the datapath reports it, minus one) -> attribution, for the current and
/// the previous policy generation (events of the old one may still be in flight).
pub type Attributions = HashMap<u32, Arc<Attribution>>;

/// Stable `policy_ref`s: an attribution keeps its id from one install to the next, so an
/// entry whose decision and policies did not change keeps its value in the maps and is not
/// written again. Ids are never reused: an event still in flight names what decided it.
#[derive(Debug, Default)]
pub struct AttributionIds {
    current: HashMap<Arc<Attribution>, u32>,
    next: u32,
}

impl AttributionIds {
    /// The id of `attribution` in the table being built (`fresh`), taken from the current
    /// table when it is there, new otherwise.
    fn id(
        &mut self,
        fresh: &mut HashMap<Arc<Attribution>, u32>,
        table: &mut Attributions,
        attribution: Attribution,
    ) -> u32 {
        if let Some(id) = fresh.get(&attribution) {
            return *id;
        }
        let id = self.current.get(&attribution).copied().unwrap_or_else(|| {
            self.next = self.next.wrapping_add(1);
            self.next - 1
        });
        let attribution = Arc::new(attribution);
        table.insert(id, attribution.clone());
        fresh.insert(attribution, id);
        id
    }
}

/// Which pods each policy selects (cluster-wide), and which directions of this node's pods (those
/// with an interface here) are isolated, by the reference semantics' reading.
pub fn selections(
    set: &PolicySet,
    registry: &Registry,
    cidr_selects_pods: bool,
) -> (Vec<LoadedPolicy>, BTreeMap<String, (bool, bool)>) {
    let world = world(registry, cidr_selects_pods);
    let found = flowscope_policy::selections(set, &world);
    let name = |i: usize| format!("{}/{}", world.pods[i].namespace, world.pods[i].name);
    // The world's pods are the registry's specs, in order.
    let enforcement = registry
        .specs
        .iter()
        .enumerate()
        .filter(|(_, spec)| spec.interface.is_some())
        .map(|(i, _)| (name(i), found.isolated[i]))
        .collect();
    let loaded = set
        .policies
        .iter()
        .zip(&found.selected)
        .map(|(policy, selected)| {
            let id = policy.id();
            LoadedPolicy {
                kind: id.kind.to_string(),
                namespace: id.namespace.clone().unwrap_or_default(),
                name: id.name.clone(),
                file: policy.file.clone(),
                line: policy.line,
                warnings: policy.warnings(),
                selects: selected.iter().map(|i| name(*i)).collect(),
            }
        })
        .collect();
    (loaded, enforcement)
}

fn protocol(name: &str) -> Option<Protocol> {
    match name {
        "TCP" => Some(Protocol::Tcp),
        "UDP" => Some(Protocol::Udp),
        "SCTP" => Some(Protocol::Sctp),
        _ => None,
    }
}

/// The policy world as the registry describes it, with this node's addresses (its interfaces'
/// and those the Kubernetes source lists) and the other nodes'; `cidr_selects_pods`: see
/// [`crate::ObserverConfig::policy_cidr_selects_pods`].
pub fn world(registry: &Registry, cidr_selects_pods: bool) -> World {
    let specs = &registry.specs;
    let mut host = interfaces::host_addrs().unwrap_or_default();
    host.extend(registry.node_ips(NodeRole::Local));
    host.sort();
    host.dedup();
    let mut namespaces: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for s in specs {
        namespaces
            .entry(s.namespace.clone())
            .or_insert_with(|| s.namespace_labels.clone());
    }
    World {
        namespaces: namespaces
            .into_iter()
            .map(|(name, labels)| Namespace { name, labels })
            .collect(),
        pods: specs
            .iter()
            .map(|s| Pod {
                namespace: s.namespace.clone(),
                name: s.pod_name.clone(),
                labels: s.labels.clone(),
                ips: s.ips.clone(),
                ports: s
                    .ports
                    .iter()
                    .filter(|p| !p.name.is_empty())
                    .filter_map(|p| {
                        Some(NamedPort {
                            name: p.name.clone(),
                            port: p.port,
                            protocol: protocol(&p.protocol)?,
                        })
                    })
                    .collect(),
            })
            .collect(),
        cidr_selects_pods,
        host,
        remote_nodes: registry.node_ips(NodeRole::Remote),
    }
}

/// What an install did.
pub struct Installed {
    /// The attribution table of the new generation.
    pub attributions: Attributions,
    /// Policy map entries (exact and port blocks) in force.
    pub entries: usize,
    /// What the install wrote: only the entries that differ from the generation it replaced.
    pub written: PolicyWritten,
    /// Time to compile the policies for this node's endpoints.
    pub compile_time: std::time::Duration,
    /// Time to write the maps and switch the datapath to them.
    pub write_time: std::time::Duration,
    /// Endpoints of this node with tables.
    pub enforced: usize,
    /// Entries that send connections through the L7 proxy.
    pub proxy_entries: usize,
    /// The same policy as the L7 proxy judges requests by it.
    pub l7: L7Policy,
}

/// Compiles `set` for the registry's pods and installs it in the datapath. `publish` gets the
/// new generation's attributions before the datapath switches to them, so the first events
/// judged by the new generation already find the policies that decided them; `ids` keeps
/// attribution ids stable across installs.
#[allow(clippy::too_many_arguments)]
pub fn install(
    dp: &mut Datapath,
    ids: &mut AttributionIds,
    set: &PolicySet,
    registry: &Registry,
    cidr_selects_pods: bool,
    ifindex_of: impl Fn(&str) -> Option<u32>,
    revision: u64,
    audit: bool,
    publish: impl FnOnce(&Attributions),
) -> anyhow::Result<Installed> {
    let started = std::time::Instant::now();
    let world = world(registry, cidr_selects_pods);
    // Endpoint id -> (identity, what the source said of the pod).
    let pods: HashMap<u32, (u32, &EndpointSpec)> = registry
        .endpoints
        .iter()
        .zip(&registry.specs)
        .map(|(ep, spec)| (ep.id, (ep.identity, spec)))
        .collect();
    let identities: Vec<EndpointIdentity> = registry
        .endpoints
        .iter()
        .map(|ep| EndpointIdentity {
            namespace: ep.namespace.clone(),
            pod: ep.pod_name.clone(),
            endpoint_id: ep.id,
            identity: ep.identity,
        })
        .collect();
    // Tables for this node's pods only: the others are remote ends here.
    let local_pods: std::collections::HashSet<(&str, &str)> = registry
        .specs
        .iter()
        .filter(|s| s.interface.as_deref().and_then(&ifindex_of).is_some())
        .map(|s| (s.namespace.as_str(), s.pod_name.as_str()))
        .collect();
    let compiled = compile::compile_for(set, &world, &identities, |pod| {
        local_pods.contains(&(pod.namespace.as_str(), pod.name.as_str()))
    })
    .context("compiling policies")?;
    let flow_policies: Vec<FlowPolicy> = compiled
        .policies
        .iter()
        .map(|id| FlowPolicy {
            name: id.name.clone(),
            namespace: id.namespace.clone().unwrap_or_default(),
            kind: id.kind.to_string(),
            ..FlowPolicy::default()
        })
        .collect();

    let mut attributions = Attributions::new();
    let mut fresh_ids = HashMap::new();
    let mut by_policies: HashMap<(u8, bool, &[u32]), u32> = HashMap::new();
    let mut entries = Vec::new();
    let mut ranges = Vec::new();
    let mut endpoints = Vec::new();
    let mut local: HashMap<IpAddr, LocalEndpoint> = HashMap::new();
    let mut proxy_entries = 0;
    for tables in &compiled.endpoints {
        let Some(&(identity, spec)) = pods.get(&tables.endpoint_id) else {
            continue;
        };
        // Only pods whose veth is on this node are enforced here.
        let Some(ifindex) = spec.interface.as_deref().and_then(&ifindex_of) else {
            continue;
        };
        for ip in &spec.ips {
            local.insert(
                *ip,
                LocalEndpoint {
                    endpoint_id: tables.endpoint_id,
                    ifindex,
                },
            );
        }
        let mut flags = 0;
        for (dir, table) in [
            (direction::INGRESS, &tables.ingress),
            (direction::EGRESS, &tables.egress),
        ] {
            let ingress = dir == direction::INGRESS;
            if table.enforced {
                flags |= if ingress {
                    ENFORCE_INGRESS
                } else {
                    ENFORCE_EGRESS
                };
            }
            if table
                .entries
                .iter()
                .any(|e| !matches!(e.port_bits, 0 | EXACT_PORT))
            {
                flags |= if ingress {
                    RANGES_INGRESS
                } else {
                    RANGES_EGRESS
                };
            }
            for e in &table.entries {
                let deny = e.decision == Decision::Deny;
                // Many entries share an attribution: it is built and interned once.
                let index = *by_policies
                    .entry((dir, deny, e.policies.as_slice()))
                    .or_insert_with(|| {
                        let attribution = Attribution {
                            direction: dir,
                            deny,
                            policies: e
                                .policies
                                .iter()
                                .filter_map(|i| flow_policies.get(*i as usize).cloned())
                                .collect(),
                        };
                        ids.id(&mut fresh_ids, &mut attributions, attribution)
                    });
                proxy_entries += usize::from(e.http);
                let value = PolicyValue {
                    action: if deny { POLICY_DENY } else { POLICY_ALLOW },
                    flags: if e.http { POLICY_FLAG_PROXY } else { 0 },
                    _pad: [0; 2],
                    policy_ref: index,
                };
                if matches!(e.port_bits, 0 | EXACT_PORT) {
                    entries.push((
                        PolicyKey {
                            endpoint_id: tables.endpoint_id,
                            remote_identity: e.remote_identity,
                            port: e.port,
                            proto: e.protocol,
                            direction: dir,
                        },
                        value,
                    ));
                } else {
                    ranges.push((
                        PolicyRangeKey {
                            endpoint_id: tables.endpoint_id,
                            remote_identity: e.remote_identity,
                            direction: dir,
                            proto: e.protocol,
                            port_be: e.port.to_be(),
                        },
                        e.port_bits,
                        value,
                    ));
                }
            }
        }
        endpoints.push((
            ifindex,
            EndpointInfo {
                endpoint_id: tables.endpoint_id,
                identity,
                flags,
                _pad: 0,
            },
        ));
    }
    // Every address has an identity: pods, policy CIDRs, and the rest of the world.
    let mut ipcache: Vec<(IpNet, u32)> = vec![
        ("0.0.0.0/0".parse()?, WORLD_IPV4_IDENTITY),
        ("::/0".parse()?, WORLD_IPV6_IDENTITY),
    ];
    ipcache.extend(compiled.cidrs.iter().copied());
    // Nodes: this one as `reserved:host`, the others as `reserved:remote-node`.
    ipcache.extend(
        compiled
            .nodes
            .iter()
            .map(|(ip, id)| (IpNet::from(*ip), *id)),
    );
    for (identity, spec) in pods.values() {
        ipcache.extend(spec.ips.iter().map(|ip| (IpNet::from(*ip), *identity)));
    }
    let enforced = endpoints.len();
    let identities = pods
        .values()
        .flat_map(|(identity, spec)| spec.ips.iter().map(|ip| (*ip, *identity)))
        .collect();
    let l7 = L7Policy::new(revision, audit, compiled, local, identities, flow_policies);
    let l7_ingress = l7.ingress_redirects();
    let compile_time = started.elapsed();
    publish(&attributions);
    let written = dp.install_policy(&endpoints, &entries, &ranges, &ipcache, &l7_ingress)?;
    ids.current = fresh_ids;
    Ok(Installed {
        attributions,
        entries: entries.len() + ranges.len(),
        written,
        compile_time,
        write_time: started.elapsed() - compile_time,
        enforced,
        proxy_entries,
        l7,
    })
}

/// Names, sizes and modification times of a directory's files.
pub type Fingerprint = Vec<(String, u64, Option<std::time::SystemTime>)>;

/// A cheap fingerprint of a manifest directory, to notice edits without reading every file
/// every second.
pub fn fingerprint(dir: &Path) -> Fingerprint {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let path = e.path();
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(path);
            } else {
                out.push((path.display().to_string(), meta.len(), meta.modified().ok()));
            }
        }
    }
    out.sort();
    out
}
