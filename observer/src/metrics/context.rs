//! Context labels (`sourceContext`, `destinationContext`, `labelsContext`): who a flow's
//! endpoints are, as label values. Values are worked out once per endpoint and shared
//! (`Arc<str>`); addresses stay addresses until a scrape formats them. Each value taken from a
//! pod (its name, namespace, workload, app, identity or address) is also recorded as a
//! binding, so a series can be removed once nothing it names exists any more.

use std::{
    collections::HashSet,
    fmt::{self, Write as _},
    hash::{Hash, Hasher},
    net::IpAddr,
    sync::Arc,
};

use flowscope_model::flow::{Endpoint, TrafficDirection};
use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};

use super::config::{ContextIdentifier, ContextLabel, ContextOptions};
use crate::endpoints::Registry;

/// Endpoints whose values are cached before the cache starts over: far more than a node's
/// pods, so in practice it only starts over when the registry changes.
const ENDPOINT_CACHE_LIMIT: usize = 16_384;

/// Cilium's label of the API server identity, preferred by `reserved-identity`.
const KUBE_APISERVER: &str = "reserved:kube-apiserver";
/// Labels `app` reads, in Hubble's order of preference within one label.
const APP_LABELS: [&str; 3] = ["k8s:app.kubernetes.io/name=", "k8s:k8s-app=", "k8s:app="];

/// One label value.
#[derive(Clone, Debug)]
pub(crate) enum Value {
    Static(&'static str),
    Shared(Arc<str>),
    /// Formatted when scraped, so recording an address never allocates.
    Ip(IpAddr),
}

impl Value {
    pub(crate) const EMPTY: Value = Value::Static("");

    fn text(s: &str) -> Value {
        if s.is_empty() {
            Value::EMPTY
        } else {
            Value::Shared(s.into())
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Value::Static(s) => Some(s),
            Value::Shared(s) => Some(s),
            Value::Ip(_) => None,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.as_str().is_some_and(str::is_empty)
    }
}

// Equality and hashing by text, so a static and a shared spelling of a word are one value.
impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Ip(a), Value::Ip(b)) => a == b,
            (a, b) => a.as_str().is_some() && a.as_str() == b.as_str(),
        }
    }
}

impl Eq for Value {}

impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Value::Ip(ip) => {
                state.write_u8(1);
                ip.hash(state);
            }
            text => {
                state.write_u8(0);
                text.as_str().unwrap_or_default().hash(state);
            }
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Static(s) => f.write_str(s),
            Value::Shared(s) => f.write_str(s),
            Value::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl EncodeLabelValue for &Value {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        match self {
            Value::Static(s) => encoder.write_str(s),
            Value::Shared(s) => encoder.write_str(s),
            Value::Ip(ip) => write!(encoder, "{ip}"),
        }
    }
}

/// What a context value names, for telling whether it still exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Identity,
    Namespace,
    /// `namespace/pod`.
    Pod,
    PodShort,
    PodName,
    /// `namespace/workload`.
    Workload,
    WorkloadName,
    App,
    Ip,
}

/// A value a series carries that names something which can be deleted.
pub(crate) type Binding = (Kind, Value);

/// Everything the context options can say about one endpoint.
#[derive(Debug)]
pub(crate) struct EndpointValues {
    /// Keeps the address the entry is cached under from being reused by another endpoint.
    _endpoint: Arc<Endpoint>,
    /// A pod (it has a name): its values bind series to it.
    pod: bool,
    identity: Value,
    namespace: Value,
    pod_ref: Value,
    pod_short: Value,
    pod_name: Value,
    reserved: Value,
    workload: Value,
    workload_name: Value,
    workload_kind: Value,
    app: Value,
}

impl EndpointValues {
    fn new(ep: &Arc<Endpoint>) -> Self {
        let with_namespace = |name: &str| {
            if ep.namespace.is_empty() || name.is_empty() {
                Value::text(name)
            } else {
                Value::text(&format!("{}/{name}", ep.namespace))
            }
        };
        let workload = ep.workloads.first();
        let workload_name = workload.map(|w| w.name.as_str()).unwrap_or_default();
        EndpointValues {
            _endpoint: ep.clone(),
            pod: !ep.pod_name.is_empty(),
            identity: Value::text(&ep.labels.join(",")),
            namespace: Value::text(&ep.namespace),
            pod_ref: with_namespace(&ep.pod_name),
            pod_short: with_namespace(shorten_pod_name(&ep.pod_name)),
            pod_name: Value::text(&ep.pod_name),
            reserved: Value::text(reserved_identity(&ep.labels)),
            workload: with_namespace(workload_name),
            workload_name: Value::text(workload_name),
            workload_kind: Value::text(workload.map(|w| w.kind.as_str()).unwrap_or_default()),
            app: Value::text(app(&ep.labels)),
        }
    }

    /// The value an identifier gives, with what it binds the series to; `Dns` and `Ip` are
    /// per flow and answered by the caller.
    fn get(&self, id: ContextIdentifier) -> (Value, Option<Kind>) {
        let (value, kind) = match id {
            ContextIdentifier::Identity => (&self.identity, Some(Kind::Identity)),
            ContextIdentifier::Namespace => (&self.namespace, Some(Kind::Namespace)),
            ContextIdentifier::Pod => (&self.pod_ref, Some(Kind::Pod)),
            ContextIdentifier::PodShort => (&self.pod_short, Some(Kind::PodShort)),
            ContextIdentifier::PodName => (&self.pod_name, Some(Kind::PodName)),
            ContextIdentifier::ReservedIdentity => (&self.reserved, None),
            ContextIdentifier::Workload => (&self.workload, Some(Kind::Workload)),
            ContextIdentifier::WorkloadName => (&self.workload_name, Some(Kind::WorkloadName)),
            ContextIdentifier::App => (&self.app, Some(Kind::App)),
            ContextIdentifier::Dns | ContextIdentifier::Ip => (&Value::EMPTY, None),
        };
        (value.clone(), kind.filter(|_| self.pod))
    }

    /// Every value that can bind a series to this endpoint.
    fn bindings(&self) -> impl Iterator<Item = Binding> + '_ {
        [
            (Kind::Identity, &self.identity),
            (Kind::Namespace, &self.namespace),
            (Kind::Pod, &self.pod_ref),
            (Kind::PodShort, &self.pod_short),
            (Kind::PodName, &self.pod_name),
            (Kind::Workload, &self.workload),
            (Kind::WorkloadName, &self.workload_name),
            (Kind::App, &self.app),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k, v.clone()))
    }
}

/// Hubble's short pod name: without the one or two generated suffixes of a Deployment's or
/// DaemonSet's pods (`coredns-5d78c9869d-x2v7k` -> `coredns`), as the regular expression
/// `^(.+?)(-[a-z0-9]+){1,2}$` does.
pub(crate) fn shorten_pod_name(name: &str) -> &str {
    let suffix = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    let mut cut = None;
    let mut rest = name;
    for _ in 0..2 {
        match rest.rfind('-') {
            Some(i) if i > 0 && suffix(&rest[i + 1..]) => {
                cut = Some(i);
                rest = &rest[..i];
            }
            _ => break,
        }
    }
    cut.map_or(name, |i| &name[..i])
}

fn reserved_identity(labels: &[String]) -> &str {
    if labels.iter().any(|l| l == KUBE_APISERVER) {
        return KUBE_APISERVER;
    }
    labels
        .iter()
        .find(|l| l.starts_with("reserved:"))
        .map_or("", |l| l.as_str())
}

fn app(labels: &[String]) -> &str {
    labels
        .iter()
        .find_map(|l| {
            APP_LABELS
                .iter()
                .find_map(|prefix| l.strip_prefix(prefix))
                .filter(|v| !v.is_empty())
        })
        .unwrap_or_default()
}

/// Endpoint values by endpoint address: flows of one endpoint share one `Arc<Endpoint>`.
#[derive(Debug, Default)]
pub(crate) struct EndpointCache {
    map: foldhash::HashMap<usize, EndpointValues>,
}

impl EndpointCache {
    fn ensure(&mut self, ep: &Arc<Endpoint>) {
        let key = Arc::as_ptr(ep) as usize;
        if self.map.contains_key(&key) {
            return;
        }
        if self.map.len() >= ENDPOINT_CACHE_LIMIT {
            self.map.clear();
        }
        self.map.insert(key, EndpointValues::new(ep));
    }

    fn get(&self, ep: &Arc<Endpoint>) -> Option<&EndpointValues> {
        self.map.get(&(Arc::as_ptr(ep) as usize))
    }

    pub(crate) fn clear(&mut self) {
        self.map.clear();
    }
}

/// One flow as the context options see it.
pub(crate) struct View<'a> {
    pub src: &'a Arc<Endpoint>,
    pub dst: &'a Arc<Endpoint>,
    pub saddr: IpAddr,
    pub daddr: IpAddr,
    pub direction: TrafficDirection,
}

impl<'a> View<'a> {
    /// A record as it is: source, destination, and its traffic direction.
    pub fn of(rec: &'a crate::parse::FlowRecord) -> Self {
        let (saddr, daddr) = rec.addrs();
        View {
            src: &rec.src,
            dst: &rec.dst,
            saddr,
            daddr,
            direction: rec.traffic_direction(),
        }
    }
}

/// A family's context labels: their values for a flow, and what those values name.
pub(crate) struct Resolved {
    pub values: Box<[Value]>,
    pub bindings: Box<[Binding]>,
}

#[derive(Debug)]
struct Sides {
    any: Vec<ContextIdentifier>,
    egress: Vec<ContextIdentifier>,
    ingress: Vec<ContextIdentifier>,
}

impl Sides {
    fn new(
        any: &[ContextIdentifier],
        egress: &[ContextIdentifier],
        ingress: &[ContextIdentifier],
    ) -> Option<Sides> {
        (!(any.is_empty() && egress.is_empty() && ingress.is_empty())).then(|| Sides {
            any: any.to_vec(),
            egress: egress.to_vec(),
            ingress: ingress.to_vec(),
        })
    }

    /// Hubble's choice: the direction's own list when it has one, else the general one.
    fn for_direction(&self, direction: TrafficDirection) -> &[ContextIdentifier] {
        match direction {
            TrafficDirection::Ingress if !self.ingress.is_empty() => &self.ingress,
            TrafficDirection::Egress if !self.egress.is_empty() => &self.egress,
            _ => &self.any,
        }
    }

    fn uses(&self, id: ContextIdentifier) -> bool {
        self.any.contains(&id) || self.egress.contains(&id) || self.ingress.contains(&id)
    }
}

/// A family's compiled context options.
#[derive(Debug)]
pub(crate) struct Context {
    labels: Vec<ContextLabel>,
    source: Option<Sides>,
    destination: Option<Sides>,
    names: Arc<[&'static str]>,
}

impl Context {
    pub(crate) fn new(o: &ContextOptions) -> Self {
        Context {
            labels: o.labels.clone(),
            source: Sides::new(&o.source, &o.source_egress, &o.source_ingress),
            destination: Sides::new(
                &o.destination,
                &o.destination_egress,
                &o.destination_ingress,
            ),
            names: o.label_names().into(),
        }
    }

    pub(crate) fn names(&self) -> &Arc<[&'static str]> {
        &self.names
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Values depend on who the endpoints are (not only on the flow's fixed fields).
    pub(crate) fn needs_endpoints(&self) -> bool {
        self.source.is_some()
            || self.destination.is_some()
            || self
                .labels
                .iter()
                .any(|l| *l != ContextLabel::TrafficDirection)
    }

    /// Values depend on the addresses.
    pub(crate) fn needs_addresses(&self) -> bool {
        let ip = |s: &Option<Sides>| {
            s.as_ref()
                .is_some_and(|s| s.uses(ContextIdentifier::Ip) || s.uses(ContextIdentifier::Dns))
        };
        ip(&self.source)
            || ip(&self.destination)
            || self
                .labels
                .iter()
                .any(|l| matches!(l, ContextLabel::SourceIp | ContextLabel::DestinationIp))
    }

    pub(crate) fn resolve(&self, view: &View, cache: &mut EndpointCache) -> Resolved {
        if self.is_empty() {
            return Resolved {
                values: Box::default(),
                bindings: Box::default(),
            };
        }
        cache.ensure(view.src);
        cache.ensure(view.dst);
        let (Some(src), Some(dst)) = (cache.get(view.src), cache.get(view.dst)) else {
            unreachable!("both endpoints were just cached");
        };
        let mut values = Vec::with_capacity(self.names.len());
        let mut bindings = Vec::new();
        let push = |values: &mut Vec<Value>,
                    bindings: &mut Vec<Binding>,
                    value: Value,
                    kind: Option<Kind>| {
            if let Some(kind) = kind.filter(|_| !value.is_empty()) {
                bindings.push((kind, value.clone()));
            }
            values.push(value);
        };
        let ip = |ep: &EndpointValues, addr: IpAddr| (Value::Ip(addr), ep.pod.then_some(Kind::Ip));
        for label in &self.labels {
            let (value, kind) = match label {
                ContextLabel::SourceIp => ip(src, view.saddr),
                ContextLabel::SourcePod => src.get(ContextIdentifier::PodName),
                ContextLabel::SourceNamespace => src.get(ContextIdentifier::Namespace),
                ContextLabel::SourceWorkload => src.get(ContextIdentifier::WorkloadName),
                ContextLabel::SourceWorkloadKind => (src.workload_kind.clone(), None),
                ContextLabel::SourceApp => src.get(ContextIdentifier::App),
                ContextLabel::DestinationIp => ip(dst, view.daddr),
                ContextLabel::DestinationPod => dst.get(ContextIdentifier::PodName),
                ContextLabel::DestinationNamespace => dst.get(ContextIdentifier::Namespace),
                ContextLabel::DestinationWorkload => dst.get(ContextIdentifier::WorkloadName),
                ContextLabel::DestinationWorkloadKind => (dst.workload_kind.clone(), None),
                ContextLabel::DestinationApp => dst.get(ContextIdentifier::App),
                ContextLabel::TrafficDirection => (Value::Static(direction(view.direction)), None),
            };
            push(&mut values, &mut bindings, value, kind);
        }
        // A namespace and a pod name of one side name that pod, which another pod of the same
        // name in another namespace must not keep alive (Hubble's rule for labelsContext).
        for (ep, ns, pod) in [
            (src, ContextLabel::SourceNamespace, ContextLabel::SourcePod),
            (
                dst,
                ContextLabel::DestinationNamespace,
                ContextLabel::DestinationPod,
            ),
        ] {
            if ep.pod && self.labels.contains(&ns) && self.labels.contains(&pod) {
                bindings.push((Kind::Pod, ep.pod_ref.clone()));
            }
        }
        for (sides, ep, addr) in [
            (&self.source, src, view.saddr),
            (&self.destination, dst, view.daddr),
        ] {
            let Some(sides) = sides else { continue };
            let mut chosen = (Value::EMPTY, None);
            for id in sides.for_direction(view.direction) {
                chosen = match id {
                    ContextIdentifier::Ip => ip(ep, addr),
                    id => ep.get(*id),
                };
                // The first non-empty alternative wins.
                if !chosen.0.is_empty() {
                    break;
                }
            }
            push(&mut values, &mut bindings, chosen.0, chosen.1);
        }
        Resolved {
            values: values.into(),
            bindings: bindings.into(),
        }
    }
}

/// Hubble's `traffic_direction` label value.
pub(crate) fn direction(d: TrafficDirection) -> &'static str {
    match d {
        TrafficDirection::Ingress => "ingress",
        TrafficDirection::Egress => "egress",
        TrafficDirection::Unknown => "unknown",
    }
}

/// What exists now: every value of every registered pod that a series could be bound to.
#[derive(Debug, Default)]
pub(crate) struct Live {
    set: HashSet<Binding, foldhash::fast::RandomState>,
}

impl Live {
    pub(crate) fn from_registry(registry: &Registry) -> Self {
        let mut set: HashSet<Binding, foldhash::fast::RandomState> = HashSet::default();
        for ep in &registry.endpoints {
            set.extend(EndpointValues::new(ep).bindings());
        }
        for spec in &registry.specs {
            set.extend(spec.ips.iter().map(|ip| (Kind::Ip, Value::Ip(*ip))));
        }
        Live { set }
    }

    /// Every value the series names still exists.
    pub(crate) fn all_exist(&self, bindings: &[Binding]) -> bool {
        bindings.iter().all(|b| self.set.contains(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::config::{MetricKind, MetricsConfig};
    use flowscope_model::flow::Workload;

    #[test]
    fn short_pod_names_as_hubbles_pattern() {
        for (name, short) in [
            ("coredns-5d78c9869d-x2v7k", "coredns"),
            ("api-1", "api"),
            ("my-app-xyz", "my"),
            ("abc-DEF-ghi", "abc-DEF"),
            ("-a-b", "-a"),
            ("a-b", "a"),
            ("web", "web"),
            ("web-", "web-"),
            ("-x", "-x"),
        ] {
            assert_eq!(shorten_pod_name(name), short, "{name}");
        }
    }

    fn endpoint(ns: &str, pod: &str, labels: &[&str]) -> Arc<Endpoint> {
        Arc::new(Endpoint {
            id: 1,
            identity: 300,
            namespace: ns.into(),
            pod_name: pod.into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            workloads: vec![Workload {
                name: "shop-api".into(),
                kind: "Deployment".into(),
            }],
            ..Endpoint::default()
        })
    }

    fn context(text: &str) -> Context {
        let c = MetricsConfig::parse(text).unwrap();
        Context::new(&c.get(MetricKind::Flow).unwrap().context)
    }

    #[test]
    fn values_follow_hubbles_context_rules() {
        let src = endpoint(
            "default",
            "api-7d9f8-abcde",
            &["k8s:app=shop", "k8s:k8s-app=legacy", "reserved:world"],
        );
        let world = Arc::new(Endpoint {
            identity: 2,
            labels: vec!["reserved:world".into(), "cidr:0.0.0.0/0".into()],
            ..Endpoint::default()
        });
        let view = View {
            src: &src,
            dst: &world,
            saddr: "10.0.0.1".parse().unwrap(),
            daddr: "192.0.2.9".parse().unwrap(),
            direction: TrafficDirection::Egress,
        };
        let mut cache = EndpointCache::default();
        let c = context(
            "flow:sourceContext=pod;destinationContext=namespace|dns|ip;\
             labelsContext=source_app,source_workload_kind,traffic_direction,source_namespace,source_pod",
        );
        assert_eq!(
            &*c.names().clone(),
            [
                "source_pod",
                "source_namespace",
                "source_workload_kind",
                "source_app",
                "traffic_direction",
                "source",
                "destination"
            ]
        );
        let r = c.resolve(&view, &mut cache);
        let texts: Vec<String> = r.values.iter().map(|v| v.to_string()).collect();
        assert_eq!(
            texts,
            [
                "api-7d9f8-abcde",
                "default",
                "Deployment",
                "shop",
                "egress",
                "default/api-7d9f8-abcde",
                "192.0.2.9"
            ]
        );
        // Bound to the pod by name, namespace, app and the pair; the world address binds nothing.
        let mut kinds: Vec<Kind> = r.bindings.iter().map(|b| b.0).collect();
        kinds.sort_by_key(|k| format!("{k:?}"));
        assert_eq!(
            kinds,
            [
                Kind::App,
                Kind::Namespace,
                Kind::Pod,
                Kind::Pod,
                Kind::PodName
            ]
        );

        let c = context(
            "flow:sourceContext=pod-short|ip;sourceIngressContext=workload;\
             destinationContext=reserved-identity;destinationEgressContext=identity",
        );
        let r = c.resolve(&view, &mut cache);
        let texts: Vec<String> = r.values.iter().map(|v| v.to_string()).collect();
        assert_eq!(texts, ["default/api", "reserved:world,cidr:0.0.0.0/0"]);
        let ingress = View {
            direction: TrafficDirection::Ingress,
            ..view
        };
        let r = c.resolve(&ingress, &mut cache);
        let texts: Vec<String> = r.values.iter().map(|v| v.to_string()).collect();
        assert_eq!(texts, ["default/shop-api", "reserved:world"]);
    }

    #[test]
    fn live_values_come_from_the_registry() {
        use crate::endpoints::EndpointSpec;
        let reg = Registry::build(&[EndpointSpec {
            namespace: "default".into(),
            pod_name: "web".into(),
            ips: vec!["10.0.0.7".parse().unwrap()],
            labels: [("app".to_string(), "web".to_string())].into(),
            ..EndpointSpec::default()
        }]);
        let live = Live::from_registry(&reg);
        assert!(live.all_exist(&[
            (Kind::Namespace, Value::Static("default")),
            (Kind::Pod, Value::Shared("default/web".into())),
            (Kind::App, Value::Static("web")),
            (Kind::Ip, Value::Ip("10.0.0.7".parse().unwrap())),
        ]));
        assert!(!live.all_exist(&[(Kind::Pod, Value::Static("other/web"))]));
        assert!(!live.all_exist(&[(Kind::Ip, Value::Ip("10.0.0.8".parse().unwrap()))]));
    }
}
