//! The Kubernetes source as the observer uses it: each snapshot of the cluster becomes the
//! endpoint registry (every pod with an address, cluster-wide, since remote peers need
//! identities too), with the host-side interface of each pod of this node found by its
//! address (a route lookup over netlink, as `ip route get` does, so it works for any CNI that
//! routes to pods through their own veth: Calico's `cali*`, Cilium's `lxc*`, the lab's `fsl*`),
//! with the services behind addresses and ports (their frontends and, since kube-proxy's DNAT
//! hides the frontend from the server's side, their backends) and the nodes' addresses
//! (`reserved:host` for this node's, `reserved:remote-node` for the others').
//! Policies from the API are read by the policy watcher from the same snapshots.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use flowscope_kubernetes::ClusterState;
use futures_util::TryStreamExt as _;
use rtnetlink::{
    RouteMessageBuilder,
    packet_route::route::{RouteAttribute, RouteMessage},
};
use tokio::sync::watch;
use tracing::{info, warn};

use flowscope_model::flow::Workload;

use crate::{
    endpoints::{EndpointSpec, NodeRole, PortSpec, Registry, protocol_number},
    source::interfaces,
};

/// Turns every new snapshot into a registry for `out`. Pods of `node_name` get their
/// host-side interface.
pub async fn watch_cluster(
    mut cluster: watch::Receiver<Arc<ClusterState>>,
    node_name: String,
    out: watch::Sender<Arc<Registry>>,
) {
    let routes = match rtnetlink::new_connection() {
        Ok((connection, handle, _)) => {
            tokio::spawn(connection);
            Some(handle)
        }
        Err(err) => {
            warn!("No netlink socket ({err}): this node's pods get no interface");
            None
        }
    };
    let mut last_revision = None;
    // What the last registry was built from: a snapshot that changes nothing the registry
    // holds (a pod's phase, another pod's container ports...) builds none, so the policies
    // are not compiled again for it.
    let mut last_inputs = None;
    loop {
        let state = cluster.borrow_and_update().clone();
        if Some(state.revision) != last_revision && state.status.synced {
            last_revision = Some(state.revision);
            let specs = endpoint_specs(&state, &node_name, routes.as_ref()).await;
            let inputs = (specs, state.services.clone(), state.nodes.clone());
            if last_inputs.as_ref() == Some(&inputs) {
                if cluster.changed().await.is_err() {
                    return;
                }
                continue;
            }
            let registry = registry(&state, &inputs.0, &node_name);
            info!(
                pods = state.pods.len(),
                endpoints = registry.len(),
                services = state.services.len(),
                nodes = state.nodes.len(),
                local = inputs.0.iter().filter(|s| s.interface.is_some()).count(),
                revision = state.revision,
                "Endpoints from the Kubernetes API"
            );
            let _ = out.send(Arc::new(registry));
            last_inputs = Some(inputs);
        }
        if cluster.changed().await.is_err() {
            return;
        }
    }
}

/// Endpoints, services and nodes of a snapshot.
fn registry(state: &ClusterState, specs: &[EndpointSpec], node_name: &str) -> Registry {
    let mut registry = Registry::build(specs);
    for service in &state.services {
        let backends = service
            .backends
            .iter()
            .filter_map(|b| Some((b.ip, b.port, protocol_number(&b.protocol)?)));
        let frontends = service.frontend_ips.iter().flat_map(|ip| {
            service
                .ports
                .iter()
                .filter_map(|p| Some((*ip, p.port, protocol_number(&p.protocol)?)))
        });
        registry.add_service(&service.namespace, &service.name, backends, frontends);
    }
    for node in &state.nodes {
        let role = if node.name == node_name {
            NodeRole::Local
        } else {
            NodeRole::Remote
        };
        registry.add_node(role, &node.ips);
    }
    registry
}

/// The pods of a snapshot as endpoint specs; only pods with addresses count.
async fn endpoint_specs(
    state: &ClusterState,
    node_name: &str,
    routes: Option<&rtnetlink::Handle>,
) -> Vec<EndpointSpec> {
    let names: HashMap<u32, String> = interfaces::list()
        .unwrap_or_default()
        .into_iter()
        .map(|i| (i.index, i.name))
        .collect();
    let mut out = Vec::with_capacity(state.pods.len());
    for pod in state.pods.iter().filter(|p| !p.ips.is_empty()) {
        let local = pod.node.as_deref() == Some(node_name);
        let interface = match (local, routes) {
            (true, Some(handle)) => {
                let mut found = None;
                for ip in &pod.ips {
                    if let Some(index) = route_interface(handle, *ip).await {
                        found = names.get(&index).cloned();
                        break;
                    }
                }
                found
            }
            _ => None,
        };
        out.push(EndpointSpec {
            namespace: pod.namespace.clone(),
            pod_name: pod.name.clone(),
            ips: pod.ips.clone(),
            labels: pod.labels.clone(),
            namespace_labels: state
                .namespaces
                .get(&pod.namespace)
                .cloned()
                .unwrap_or_default(),
            interface,
            ports: pod
                .ports
                .iter()
                .map(|p| PortSpec {
                    name: p.name.clone(),
                    port: p.port,
                    protocol: p.protocol.clone(),
                })
                .collect(),
            workload: pod.workload.as_ref().map(|w| Workload {
                name: w.name.clone(),
                kind: w.kind.clone(),
            }),
        });
    }
    // An interface several pods are routed through (a bridge, as flannel's cni0) is no one
    // pod's: enforcing one pod's policy there would judge its neighbours by it.
    let mut uses: HashMap<String, usize> = HashMap::new();
    for spec in &out {
        if let Some(i) = &spec.interface {
            *uses.entry(i.clone()).or_default() += 1;
        }
    }
    for spec in &mut out {
        if spec.interface.as_ref().is_some_and(|i| uses[i] > 1) {
            spec.interface = None;
        }
    }
    out
}

/// The interface the node routes `ip` out of (`ip route get`).
async fn route_interface(handle: &rtnetlink::Handle, ip: IpAddr) -> Option<u32> {
    let message: RouteMessage = match ip {
        IpAddr::V4(v4) => RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(v4, 32)
            .build(),
        IpAddr::V6(v6) => RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(v6, 128)
            .build(),
    };
    let routes: Vec<RouteMessage> = handle
        .route()
        .get(message)
        .execute()
        .try_collect()
        .await
        .ok()?;
    routes.iter().find_map(|r| {
        r.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(index) => Some(*index),
            _ => None,
        })
    })
}
