//! One watcher per kind feeding one aggregator that owns the maps and publishes snapshots.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::Arc,
    time::Duration,
};

use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, Service as KubeService};
use kube::{
    Api, Client, ResourceExt as _,
    api::{ApiResource, DynamicObject, GroupVersionKind},
    runtime::{WatchStreamExt as _, watcher},
};
use serde::Deserialize as _;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use flowscope_model::api::KubernetesApi;

use crate::state::{
    Backend, ClusterState, ContainerPort, NodeInfo, PodInfo, PolicyObject, ServiceInfo,
    ServicePort, Workload,
};

/// The kinds watched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    Namespace,
    Pod,
    Service,
    /// The backends of services: EndpointSlices where the server serves them, else Endpoints.
    Backends,
    Node,
    NetworkPolicy,
    CiliumNetworkPolicy,
    CiliumClusterwideNetworkPolicy,
}

/// Every kind watched; [`crate::WATCHED`] lists their resources for RBAC.
const KINDS: [Kind; 8] = [
    Kind::Namespace,
    Kind::Pod,
    Kind::Service,
    Kind::Backends,
    Kind::Node,
    Kind::NetworkPolicy,
    Kind::CiliumNetworkPolicy,
    Kind::CiliumClusterwideNetworkPolicy,
];

impl Kind {
    fn is_cilium(self) -> bool {
        matches!(
            self,
            Kind::CiliumNetworkPolicy | Kind::CiliumClusterwideNetworkPolicy
        )
    }

    /// The API groups and resources (plural) the kind may be read from.
    #[cfg(test)]
    fn resources(self) -> Vec<(&'static str, &'static str)> {
        match self {
            Kind::Backends => vec![("discovery.k8s.io", "endpointslices"), ("", "endpoints")],
            _ => vec![self.resource()],
        }
    }

    /// The API group and resource (plural) of the kind.
    fn resource(self) -> (&'static str, &'static str) {
        match self {
            Kind::Namespace => ("", "namespaces"),
            Kind::Pod => ("", "pods"),
            Kind::Service => ("", "services"),
            Kind::Backends => ("discovery.k8s.io", "endpointslices"),
            Kind::Node => ("", "nodes"),
            Kind::NetworkPolicy => ("networking.k8s.io", "networkpolicies"),
            Kind::CiliumNetworkPolicy => ("cilium.io", "ciliumnetworkpolicies"),
            Kind::CiliumClusterwideNetworkPolicy => {
                ("cilium.io", "ciliumclusterwidenetworkpolicies")
            }
        }
    }

    fn is_policy(self) -> bool {
        matches!(
            self,
            Kind::NetworkPolicy | Kind::CiliumNetworkPolicy | Kind::CiliumClusterwideNetworkPolicy
        )
    }

    fn policy_kind(self) -> &'static str {
        match self {
            Kind::NetworkPolicy => "NetworkPolicy",
            Kind::CiliumNetworkPolicy => "CiliumNetworkPolicy",
            Kind::CiliumClusterwideNetworkPolicy => "CiliumClusterwideNetworkPolicy",
            Kind::Namespace => "Namespace",
            Kind::Pod => "Pod",
            Kind::Service => "Service",
            Kind::Backends => "EndpointSlice",
            Kind::Node => "Node",
        }
    }
}

/// One object, converted.
#[derive(Clone, Debug)]
enum Item {
    Namespace(BTreeMap<String, String>),
    Pod(PodInfo),
    /// A service without its backends, which come from its EndpointSlices (or Endpoints).
    Service(ServiceInfo),
    /// Backends of the service `namespace/name`: one EndpointSlice's, or its Endpoints'.
    Backends {
        service: String,
        backends: Vec<Backend>,
    },
    Node(NodeInfo),
    Policy(PolicyObject),
}

/// What a watcher tells the aggregator.
enum Change {
    /// The kind was (re)listed: these are all its objects.
    Reset(Kind, Vec<(String, Item)>),
    Upsert(Kind, String, Item),
    Remove(Kind, String),
    /// A request failed; the watcher retries with backoff.
    Error(Kind, String),
    /// The server no longer has the watch's position (`410 Gone`): it lists again.
    Expired(Kind),
    /// The kind is not served (a CRD that is not installed): it has no objects.
    Absent(Kind),
    /// A request succeeded after errors.
    Healthy(Kind),
    /// Where services' backends are read from.
    BackendsFrom(&'static str),
}

pub(crate) async fn run(client: Client, server: String, out: watch::Sender<Arc<ClusterState>>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for kind in KINDS {
        tasks.push(tokio::spawn(watch_kind(client.clone(), kind, tx.clone())));
    }
    // A watch that resumes after an outage says nothing until an object changes: while some
    // watch is failing, the server is asked for its version now and then, and an answer
    // counts as recovery (a watch that still fails says so again).
    let mut probe = tokio::time::interval(RECOVERY_PROBE);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut maps: BTreeMap<Kind, BTreeMap<String, Item>> = BTreeMap::new();
    let mut synced: BTreeMap<Kind, bool> = KINDS.iter().map(|k| (*k, false)).collect();
    let mut failing: BTreeMap<Kind, bool> = BTreeMap::new();
    // Whether each kind is served (false: a CRD not installed).
    let mut served: BTreeMap<Kind, bool> = BTreeMap::new();
    let mut status = KubernetesApi {
        server,
        ..KubernetesApi::default()
    };
    let mut revision = 0u64;
    let mut policies_revision = 0u64;
    let mut dirty = false;
    let mut policies_dirty = false;
    let mut tick = tokio::time::interval(crate::PUBLISH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            change = rx.recv() => {
                let Some(change) = change else { break };
                // A kind still not served, looked for again, changes nothing.
                if let Change::Absent(kind) = &change
                    && synced[kind]
                    && served.get(kind) == Some(&false)
                    && !failing.get(kind).copied().unwrap_or(false)
                {
                    continue;
                }
                dirty = true;
                if let Change::Reset(kind, _)
                | Change::Upsert(kind, ..)
                | Change::Remove(kind, _)
                | Change::Absent(kind) = &change
                    && kind.is_policy()
                {
                    policies_dirty = true;
                }
                match change {
                    Change::Reset(kind, items) => {
                        maps.insert(kind, items.into_iter().collect());
                        synced.insert(kind, true);
                        failing.insert(kind, false);
                        served.insert(kind, true);
                    }
                    Change::Upsert(kind, key, item) => {
                        maps.entry(kind).or_default().insert(key, item);
                    }
                    Change::Remove(kind, key) => {
                        maps.entry(kind).or_default().remove(&key);
                    }
                    Change::Error(kind, error) => {
                        status.errors += 1;
                        status.last_error = Some(format!("{kind:?}: {error}"));
                        failing.insert(kind, true);
                    }
                    Change::Expired(kind) => {
                        info!(?kind, "Watch position expired (410 Gone): listing again");
                        status.relists += 1;
                    }
                    Change::Absent(kind) => {
                        maps.insert(kind, BTreeMap::new());
                        synced.insert(kind, true);
                        failing.insert(kind, false);
                        served.insert(kind, false);
                    }
                    Change::Healthy(kind) => {
                        failing.insert(kind, false);
                    }
                    Change::BackendsFrom(resource) => {
                        info!(resource, "Service backends");
                        status.service_backends = resource.into();
                    }
                }
            }
            _ = probe.tick(), if failing.values().any(|f| *f) => {
                if client.apiserver_version().await.is_ok() {
                    for f in failing.values_mut() {
                        *f = false;
                    }
                    dirty = true;
                }
            }
            _ = tick.tick(), if dirty => {
                dirty = false;
                revision += 1;
                if policies_dirty {
                    policies_dirty = false;
                    policies_revision += 1;
                }
                status.synced = synced.values().all(|s| *s);
                status.cilium_crds = served.iter().any(|(k, s)| k.is_cilium() && *s);
                let connected = !failing.values().any(|f| *f);
                if connected != status.connected {
                    if connected {
                        info!(server = %status.server, "Kubernetes API reachable");
                    } else {
                        warn!(server = %status.server, error = ?status.last_error, "Kubernetes API unreachable; keeping the last known state");
                    }
                }
                status.connected = connected;
                let mut state = snapshot(revision, &maps, &status);
                state.policies_revision = policies_revision;
                let _ = out.send(Arc::new(state));
            }
        }
    }
    for t in tasks {
        t.abort();
    }
}

fn snapshot(
    revision: u64,
    maps: &BTreeMap<Kind, BTreeMap<String, Item>>,
    status: &KubernetesApi,
) -> ClusterState {
    let mut state = ClusterState {
        revision,
        status: status.clone(),
        ..ClusterState::default()
    };
    // A service's backends are spread over its slices.
    let mut backends: HashMap<&str, Vec<Backend>> = HashMap::new();
    for item in maps
        .get(&Kind::Backends)
        .into_iter()
        .flat_map(|m| m.values())
    {
        if let Item::Backends {
            service,
            backends: b,
        } = item
        {
            backends
                .entry(service)
                .or_default()
                .extend(b.iter().cloned());
        }
    }
    for items in maps.values() {
        for (key, item) in items {
            match item {
                Item::Namespace(labels) => {
                    state.namespaces.insert(key.clone(), labels.clone());
                }
                Item::Pod(p) => state.pods.push(p.clone()),
                Item::Service(s) => {
                    let mut service = s.clone();
                    if let Some(mut b) = backends.remove(key.as_str()) {
                        // Slices of one service may overlap while they are rebalanced.
                        b.sort_by(|x, y| {
                            (x.ip, x.port, &x.protocol).cmp(&(y.ip, y.port, &y.protocol))
                        });
                        b.dedup();
                        service.backends = b;
                    }
                    state.services.push(service);
                }
                Item::Backends { .. } => {}
                Item::Node(n) => state.nodes.push(n.clone()),
                Item::Policy(p) => state.policies.push(p.clone()),
            }
        }
    }
    state
}

/// Watches one kind for ever (until aborted), converting its objects.
async fn watch_kind(client: Client, kind: Kind, tx: mpsc::UnboundedSender<Change>) {
    match kind {
        Kind::Namespace => {
            let api: Api<Namespace> = Api::all(client);
            pump(api, kind, tx, |ns: &Namespace| {
                Some((ns.name_any(), Item::Namespace(ns.labels().clone())))
            })
            .await
        }
        Kind::Pod => {
            let api: Api<Pod> = Api::all(client);
            pump(api, kind, tx, |p: &Pod| {
                pod_info(p).map(|info| (key(&info.namespace, &info.name), Item::Pod(info)))
            })
            .await
        }
        Kind::Service => {
            let api: Api<KubeService> = Api::all(client);
            pump(api, kind, tx, |s: &KubeService| {
                let info = service_info(s)?;
                Some((key(&info.namespace, &info.name), Item::Service(info)))
            })
            .await
        }
        Kind::Backends => match slices_version(&client, kind, &tx).await {
            Some(version) => {
                let _ = tx.send(Change::BackendsFrom(if version == "v1" {
                    "discovery.k8s.io/v1 EndpointSlice"
                } else {
                    "discovery.k8s.io/v1beta1 EndpointSlice"
                }));
                let resource = ApiResource::from_gvk_with_plural(
                    &GroupVersionKind::gvk("discovery.k8s.io", version, "EndpointSlice"),
                    "endpointslices",
                );
                let api: Api<DynamicObject> = Api::all_with(client, &resource);
                pump(api, kind, tx, |o: &DynamicObject| {
                    let namespace = o.namespace().unwrap_or_default();
                    let service = o.labels().get(SERVICE_NAME_LABEL)?;
                    Some((
                        key(&namespace, &o.name_any()),
                        Item::Backends {
                            service: key(&namespace, service),
                            backends: slice_backends(o),
                        },
                    ))
                })
                .await
            }
            None => {
                let _ = tx.send(Change::BackendsFrom("v1 Endpoints"));
                let api: Api<Endpoints> = Api::all(client);
                pump(api, kind, tx, |e: &Endpoints| {
                    let k = key(&e.namespace().unwrap_or_default(), &e.name_any());
                    Some((
                        k.clone(),
                        Item::Backends {
                            service: k,
                            backends: backends(e),
                        },
                    ))
                })
                .await
            }
        },
        Kind::Node => {
            let api: Api<Node> = Api::all(client);
            pump(api, kind, tx, |n: &Node| {
                let info = node_info(n);
                Some((key("", &info.name), Item::Node(info)))
            })
            .await
        }
        _ => {
            let (group, plural) = kind.resource();
            let version = if kind.is_cilium() { "v2" } else { "v1" };
            let resource = ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk(group, version, kind.policy_kind()),
                plural,
            );
            let api: Api<DynamicObject> = Api::all_with(client, &resource);
            pump(api, kind, tx, move |o: &DynamicObject| {
                let object = policy_object(kind, o)?;
                let k = key(object.namespace.as_deref().unwrap_or(""), &object.name);
                Some((k, Item::Policy(object)))
            })
            .await
        }
    }
}

/// The label an EndpointSlice names its service with.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Which version of EndpointSlice the server serves (`v1` since Kubernetes 1.21, `v1beta1`
/// from 1.17 to 1.24), or `None` when it serves neither: then backends come from Endpoints.
/// Asked until the server answers, with backoff; failures are reported as the kind's.
async fn slices_version(
    client: &Client,
    kind: Kind,
    tx: &mpsc::UnboundedSender<Change>,
) -> Option<&'static str> {
    let mut wait = Duration::from_millis(500);
    loop {
        let mut failed = None;
        for version in ["v1", "v1beta1"] {
            match client
                .list_api_group_resources(&format!("discovery.k8s.io/{version}"))
                .await
            {
                Ok(list) if list.resources.iter().any(|r| r.name == "endpointslices") => {
                    return Some(version);
                }
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(err) => {
                    failed = Some(err);
                    break;
                }
            }
        }
        // Both versions answered and neither serves slices: None.
        let err = failed?;
        let _ = tx.send(Change::Error(
            kind,
            format!("discovering discovery.k8s.io: {err}"),
        ));
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}

/// The fields of an EndpointSlice read here, the same in `v1` and `v1beta1`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Slice {
    #[serde(default)]
    address_type: String,
    #[serde(default)]
    endpoints: Vec<SliceEndpoint>,
    #[serde(default)]
    ports: Option<Vec<SlicePort>>,
}

#[derive(serde::Deserialize)]
struct SliceEndpoint {
    #[serde(default)]
    addresses: Vec<String>,
}

#[derive(serde::Deserialize)]
struct SlicePort {
    port: Option<i32>,
    protocol: Option<String>,
}

/// Every address of the slice (ready or not, as for Endpoints) on each of its ports. A slice
/// of FQDNs, or a port without a number (all ports), names no address and port to match.
fn slice_backends(o: &DynamicObject) -> Vec<Backend> {
    let Ok(slice) = Slice::deserialize(&o.data) else {
        return Vec::new();
    };
    if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
        return Vec::new();
    }
    let ips: Vec<IpAddr> = slice
        .endpoints
        .iter()
        .flat_map(|e| &e.addresses)
        .filter_map(|a| a.parse().ok())
        .collect();
    let ports = slice
        .ports
        .iter()
        .flatten()
        .map(|p| (p.port.unwrap_or(-1), p.protocol.as_deref()));
    let mut out = Vec::new();
    push_backends(&mut out, &ips, ports);
    out
}

/// Every address on every port (a port that is no `u16`, or none, is skipped), TCP unless the
/// port says otherwise: how an Endpoints subset and an EndpointSlice both list backends.
fn push_backends<'a>(
    out: &mut Vec<Backend>,
    ips: &[IpAddr],
    ports: impl Iterator<Item = (i32, Option<&'a str>)>,
) {
    for (port, protocol) in ports {
        let Ok(number) = u16::try_from(port) else {
            continue;
        };
        for ip in ips {
            out.push(Backend {
                ip: *ip,
                port: number,
                protocol: protocol.unwrap_or("TCP").to_string(),
            });
        }
    }
}

fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// While a watch fails, the server is probed this often to notice it is back.
const RECOVERY_PROBE: Duration = Duration::from_secs(2);
/// A missing CRD is looked for again this often.
const ABSENT_RETRY: Duration = Duration::from_secs(10);

async fn pump<K>(
    api: Api<K>,
    kind: Kind,
    tx: mpsc::UnboundedSender<Change>,
    convert: impl Fn(&K) -> Option<(String, Item)>,
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    loop {
        let mut stream = watcher(api.clone(), watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut listing: Option<Vec<(String, Item)>> = None;
        let mut erred = false;
        while let Some(event) = stream.next().await {
            let change = match event {
                Ok(watcher::Event::Init) => {
                    listing = Some(Vec::new());
                    None
                }
                Ok(watcher::Event::InitApply(o)) => {
                    if let (Some(list), Some(item)) = (listing.as_mut(), convert(&o)) {
                        list.push(item);
                    }
                    None
                }
                Ok(watcher::Event::InitDone) => {
                    Some(Change::Reset(kind, listing.take().unwrap_or_default()))
                }
                Ok(watcher::Event::Apply(o)) => Some(match convert(&o) {
                    Some((k, item)) => Change::Upsert(kind, k, item),
                    // No longer of interest (a pod that finished): gone from the state.
                    None => {
                        Change::Remove(kind, key(&o.namespace().unwrap_or_default(), &o.name_any()))
                    }
                }),
                Ok(watcher::Event::Delete(o)) => Some(Change::Remove(
                    kind,
                    key(&o.namespace().unwrap_or_default(), &o.name_any()),
                )),
                Err(err) => {
                    if kind.is_cilium() && not_served(&err) {
                        debug!(?kind, "Not served (its CRD is not installed)");
                        let _ = tx.send(Change::Absent(kind));
                        break;
                    }
                    if expired(&err) {
                        Some(Change::Expired(kind))
                    } else {
                        erred = true;
                        Some(Change::Error(kind, err.to_string()))
                    }
                }
            };
            if let Some(change) = change {
                let ok = !matches!(change, Change::Error(..));
                if ok && erred {
                    erred = false;
                    let _ = tx.send(Change::Healthy(kind));
                }
                if tx.send(change).is_err() {
                    return;
                }
            }
        }
        // Only a kind that is not served ends its stream: look again later.
        tokio::time::sleep(ABSENT_RETRY).await;
    }
}

/// The watch's resource version is gone from the server's history (`410 Gone`, reason
/// `Expired`); kube-runtime's watcher lists again after it.
fn expired(err: &watcher::Error) -> bool {
    matches!(err, watcher::Error::WatchError(status) if status.code == 410)
}

/// The server does not serve the kind at all (404 on the list).
fn not_served(err: &watcher::Error) -> bool {
    match err {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status)) => status.code == 404,
        _ => false,
    }
}

fn pod_info(p: &Pod) -> Option<PodInfo> {
    let spec = p.spec.as_ref()?;
    // Host-network pods have the node's address: they are the host, not endpoints.
    if spec.host_network == Some(true) {
        return None;
    }
    let status = p.status.as_ref();
    if let Some(phase) = status.and_then(|s| s.phase.as_deref())
        && matches!(phase, "Succeeded" | "Failed")
    {
        // Finished: its addresses may already be another pod's.
        return None;
    }
    let mut ips: Vec<IpAddr> = status
        .and_then(|s| s.pod_ips.as_ref())
        .map(|ips| ips.iter().filter_map(|i| i.ip.parse().ok()).collect())
        .unwrap_or_default();
    if ips.is_empty()
        && let Some(ip) = status
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|i| i.parse().ok())
    {
        ips.push(ip);
    }
    let ports = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|port| {
            Some(ContainerPort {
                name: port.name.clone().unwrap_or_default(),
                port: u16::try_from(port.container_port).ok()?,
                protocol: port.protocol.clone().unwrap_or_else(|| "TCP".into()),
            })
        })
        .collect();
    Some(PodInfo {
        namespace: p.namespace().unwrap_or_default(),
        name: p.name_any(),
        labels: p.labels().clone(),
        ips,
        node: spec.node_name.clone(),
        ports,
        workload: workload(p),
    })
}

/// The workload owning a pod, as Cilium derives it (`pkg/k8s/utils`): a ReplicaSet named
/// `<deployment>-<pod-template-hash>` stands for its Deployment, a Job named
/// `<cronjob>-<scheduled minute>` for its CronJob.
fn workload(p: &Pod) -> Option<Workload> {
    let owners = p.owner_references();
    let owner = owners
        .iter()
        .find(|o| o.controller == Some(true))
        .or_else(|| owners.first())?;
    let parent = |suffix_ok: &dyn Fn(&str) -> bool| {
        owner
            .name
            .rsplit_once('-')
            .filter(|(parent, suffix)| !parent.is_empty() && suffix_ok(suffix))
            .map(|(parent, _)| parent.to_string())
    };
    let (kind, name) = match owner.kind.as_str() {
        "ReplicaSet" => {
            let hash = p.labels().get("pod-template-hash");
            match parent(&|s| hash.is_some_and(|h| h == s)) {
                Some(deployment) => ("Deployment", deployment),
                None => ("ReplicaSet", owner.name.clone()),
            }
        }
        "Job" => match parent(&|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())) {
            Some(cronjob) => ("CronJob", cronjob),
            None => ("Job", owner.name.clone()),
        },
        other => (other, owner.name.clone()),
    };
    Some(Workload {
        kind: kind.to_string(),
        name,
    })
}

fn parse_ips<'a>(texts: impl IntoIterator<Item = &'a String>) -> Vec<IpAddr> {
    texts.into_iter().filter_map(|t| t.parse().ok()).collect()
}

fn service_info(s: &KubeService) -> Option<ServiceInfo> {
    let spec = s.spec.as_ref()?;
    // ExternalName services are DNS aliases: no address of theirs carries traffic.
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    let mut frontend_ips = match &spec.cluster_ips {
        Some(ips) if !ips.is_empty() => parse_ips(ips),
        _ => parse_ips(spec.cluster_ip.iter()),
    };
    frontend_ips.extend(parse_ips(spec.external_ips.iter().flatten()));
    let ingress = s
        .status
        .as_ref()
        .and_then(|st| st.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    frontend_ips.extend(parse_ips(
        ingress.into_iter().flatten().filter_map(|i| i.ip.as_ref()),
    ));
    frontend_ips.sort();
    frontend_ips.dedup();
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            Some(ServicePort {
                port: u16::try_from(p.port).ok()?,
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
            })
        })
        .collect();
    Some(ServiceInfo {
        namespace: s.namespace().unwrap_or_default(),
        name: s.name_any(),
        frontend_ips,
        ports,
        backends: Vec::new(),
    })
}

fn backends(e: &Endpoints) -> Vec<Backend> {
    let mut out = Vec::new();
    for subset in e.subsets.iter().flatten() {
        let addresses = subset
            .addresses
            .iter()
            .flatten()
            .chain(subset.not_ready_addresses.iter().flatten());
        let ips: Vec<IpAddr> = addresses.filter_map(|a| a.ip.parse().ok()).collect();
        let ports = subset
            .ports
            .iter()
            .flatten()
            .map(|p| (p.port, p.protocol.as_deref()));
        push_backends(&mut out, &ips, ports);
    }
    out
}

fn node_info(n: &Node) -> NodeInfo {
    let mut ips: Vec<IpAddr> = n
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| matches!(a.type_.as_str(), "InternalIP" | "ExternalIP"))
        .filter_map(|a| a.address.parse().ok())
        .collect();
    ips.sort();
    ips.dedup();
    NodeInfo {
        name: n.name_any(),
        ips,
    }
}

fn policy_object(kind: Kind, o: &DynamicObject) -> Option<PolicyObject> {
    let mut value = serde_json::to_value(o).ok()?;
    // Items of a list may come without their type: the parser needs it.
    let api_version = match kind {
        Kind::NetworkPolicy => "networking.k8s.io/v1",
        _ => "cilium.io/v2",
    };
    if let Some(object) = value.as_object_mut() {
        object.insert("apiVersion".into(), api_version.into());
        object.insert("kind".into(), kind.policy_kind().into());
    }
    // What the parser does not need and the API server adds on every write.
    if let Some(meta) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        meta.remove("managedFields");
        if let Some(annotations) = meta.get_mut("annotations").and_then(|a| a.as_object_mut()) {
            annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
    }
    Some(PolicyObject {
        kind: kind.policy_kind(),
        namespace: o.namespace(),
        name: o.name_any(),
        json: serde_json::to_string_pretty(&value).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(labels: serde_json::Value, owners: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": labels,
                         "ownerReferences": owners},
            "spec": {"containers": []},
        }))
        .unwrap()
    }

    fn owner(kind: &str, name: &str, controller: bool) -> serde_json::Value {
        serde_json::json!({"apiVersion": "apps/v1", "kind": kind, "name": name,
                           "uid": "u", "controller": controller})
    }

    fn workload_of(
        labels: serde_json::Value,
        owners: serde_json::Value,
    ) -> Option<(String, String)> {
        workload(&pod(labels, owners)).map(|w| (w.kind, w.name))
    }

    #[test]
    fn the_watched_list_is_the_kinds_watched() {
        let mut kinds: Vec<_> = KINDS.iter().flat_map(|k| k.resources()).collect();
        let mut listed = crate::WATCHED.to_vec();
        kinds.sort();
        listed.sort();
        assert_eq!(kinds, listed);
    }

    #[test]
    fn workloads_are_named_as_cilium_names_them() {
        let named = |k: &str, n: &str| Some((k.to_string(), n.to_string()));
        assert_eq!(
            workload_of(
                serde_json::json!({"pod-template-hash": "7c9d4f"}),
                serde_json::json!([owner("ReplicaSet", "my-api-7c9d4f", true)])
            ),
            named("Deployment", "my-api")
        );
        // A ReplicaSet of its own (no matching hash) stays one.
        assert_eq!(
            workload_of(
                serde_json::json!({}),
                serde_json::json!([owner("ReplicaSet", "my-api-7c9d4f", true)])
            ),
            named("ReplicaSet", "my-api-7c9d4f")
        );
        assert_eq!(
            workload_of(
                serde_json::json!({}),
                serde_json::json!([owner("Job", "backup-29012345", true)])
            ),
            named("CronJob", "backup")
        );
        assert_eq!(
            workload_of(
                serde_json::json!({}),
                serde_json::json!([owner("Job", "migrate-db", true)])
            ),
            named("Job", "migrate-db")
        );
        // The controller among several owners.
        assert_eq!(
            workload_of(
                serde_json::json!({}),
                serde_json::json!([
                    owner("ConfigMap", "x", false),
                    owner("DaemonSet", "agent", true)
                ])
            ),
            named("DaemonSet", "agent")
        );
        assert_eq!(
            workload_of(serde_json::json!({}), serde_json::json!([])),
            None
        );
    }

    #[test]
    fn services_have_frontends_and_endpoints_backends() {
        let service: KubeService = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "api", "namespace": "shop"},
            "spec": {"clusterIP": "198.19.254.10", "clusterIPs": ["198.19.254.10", "2001:db8::a"],
                     "externalIPs": ["198.18.0.9"],
                     "ports": [{"port": 80, "targetPort": 8080}, {"port": 53, "protocol": "UDP"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "198.18.0.10"}, {"hostname": "lb"}]}},
        }))
        .unwrap();
        let info = service_info(&service).unwrap();
        let ips: Vec<String> = info.frontend_ips.iter().map(|i| i.to_string()).collect();
        assert_eq!(
            ips,
            ["198.18.0.9", "198.18.0.10", "198.19.254.10", "2001:db8::a"]
        );
        assert_eq!(
            info.ports,
            [
                ServicePort {
                    port: 80,
                    protocol: "TCP".into()
                },
                ServicePort {
                    port: 53,
                    protocol: "UDP".into()
                }
            ]
        );
        let external: KubeService = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "ext", "namespace": "shop"},
            "spec": {"type": "ExternalName", "externalName": "example.org"},
        }))
        .unwrap();
        assert!(
            service_info(&external).is_none(),
            "a DNS alias has no addresses"
        );

        let endpoints: Endpoints = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "api", "namespace": "shop"},
            "subsets": [{"addresses": [{"ip": "198.18.1.1"}],
                         "notReadyAddresses": [{"ip": "198.18.1.2"}],
                         "ports": [{"port": 8080}]}],
        }))
        .unwrap();
        let backends: Vec<String> = backends(&endpoints)
            .iter()
            .map(|b| format!("{}:{}/{}", b.ip, b.port, b.protocol))
            .collect();
        assert_eq!(backends, ["198.18.1.1:8080/TCP", "198.18.1.2:8080/TCP"]);
    }

    #[test]
    fn endpoint_slices_of_both_versions_give_backends() {
        let show = |o: serde_json::Value| -> Vec<String> {
            let o: DynamicObject = serde_json::from_value(o).unwrap();
            slice_backends(&o)
                .iter()
                .map(|b| format!("{}:{}/{}", b.ip, b.port, b.protocol))
                .collect()
        };
        let meta = serde_json::json!({"name": "api-x7k2p", "namespace": "shop",
                                      "labels": {SERVICE_NAME_LABEL: "api"}});
        // v1: not-ready endpoints count too; a port may carry its protocol.
        assert_eq!(
            show(serde_json::json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": meta,
                "addressType": "IPv6",
                "endpoints": [{"addresses": ["2001:db8::1"], "conditions": {"ready": true},
                               "nodeName": "n1"},
                              {"addresses": ["2001:db8::2"], "conditions": {"ready": false}}],
                "ports": [{"name": "http", "port": 8080}, {"port": 53, "protocol": "UDP"}],
            })),
            [
                "2001:db8::1:8080/TCP",
                "2001:db8::2:8080/TCP",
                "2001:db8::1:53/UDP",
                "2001:db8::2:53/UDP"
            ]
        );
        // v1beta1, as Kubernetes 1.17-1.24 serve it (topology instead of nodeName).
        assert_eq!(
            show(serde_json::json!({
                "apiVersion": "discovery.k8s.io/v1beta1", "kind": "EndpointSlice",
                "metadata": meta, "addressType": "IPv4",
                "endpoints": [{"addresses": ["198.18.1.1"],
                               "topology": {"kubernetes.io/hostname": "n1"}}],
                "ports": [{"port": 8080, "protocol": "TCP"}],
            })),
            ["198.18.1.1:8080/TCP"]
        );
        // Names, not addresses; a port without a number (every port); no ports at all.
        assert!(
            show(serde_json::json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": meta,
                "addressType": "FQDN", "endpoints": [{"addresses": ["db.example.org"]}],
                "ports": [{"port": 5432}],
            }))
            .is_empty()
        );
        assert!(
            show(serde_json::json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": meta,
                "addressType": "IPv4", "endpoints": [{"addresses": ["198.18.1.1"]}],
                "ports": [{"name": "all"}],
            }))
            .is_empty()
        );
        assert!(
            show(serde_json::json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": meta,
                "addressType": "IPv4", "endpoints": [{"addresses": ["198.18.1.1"]}],
                "ports": null,
            }))
            .is_empty()
        );
    }
}
