//! The Kubernetes source: what the API server says of pods, namespaces, services (with their
//! EndpointSlices, or Endpoints where slices are not served), nodes and network policies, kept current by watches and handed to the rest of
//! flowscope as one immutable snapshot ([`ClusterState`]) at a time.
//!
//! Data flow: one kube-rs watcher per kind (list, then watch; relisted by kube-runtime after a
//! `410 Gone`; retried with backoff while the server is away) -> [`state`] applies each event
//! to its map -> a new snapshot is published on a `watch` channel, at most every
//! [`PUBLISH_EVERY`], when something changed. While the server is unreachable nothing
//! changes: the last snapshot (and what the observer enforces from it) stays, and
//! [`ClusterState::status`] says so.
//!
//! Policies are handed over as the objects' JSON text, so they go through the same parser,
//! validator and compiler as files do (`flowscope-policy`), named `api:Kind/namespace/name` in
//! every message.

pub mod peers;
pub mod state;
mod watch;

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::sync::watch as channel;

pub use state::{
    Backend, ClusterState, ContainerPort, NodeInfo, PodInfo, PolicyObject, ServiceInfo,
    ServicePort, Workload,
};

/// Everything the source watches, as (API group, resource), `""` being the core group. The
/// observers' ClusterRole (`deploy/kubernetes/observer-daemonset.yaml`) grants get, list and
/// watch on exactly these and nothing else: a unit test holds this list to the kinds
/// `watch.rs` watches, and `tests/deploy.rs` holds the ClusterRole to this list, naming what it
/// then lacks or grants in excess.
pub const WATCHED: &[(&str, &str)] = &[
    ("", "pods"),
    ("", "namespaces"),
    ("", "services"),
    ("", "endpoints"),
    ("discovery.k8s.io", "endpointslices"),
    ("", "nodes"),
    ("networking.k8s.io", "networkpolicies"),
    ("cilium.io", "ciliumnetworkpolicies"),
    ("cilium.io", "ciliumclusterwidenetworkpolicies"),
];

/// A snapshot is published at most this often: a burst of events (a deployment rolling out
/// hundreds of pods) becomes a few snapshots, not hundreds of policy compiles.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// Where the API server is and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Connection {
    /// The pod's service account (`KUBERNETES_SERVICE_HOST`, the mounted token and CA).
    InCluster,
    /// A kubeconfig file, with an optional context (else its current context).
    Kubeconfig {
        path: PathBuf,
        context: Option<String>,
    },
}

/// Starts watching; the receiver always holds the newest snapshot (empty, not synced, until
/// the first lists arrive). Watching stops when the returned handle is dropped.
pub async fn start(connection: &Connection) -> anyhow::Result<Source> {
    let (client, server) = client(connection).await?;
    let (tx, rx) = channel::channel(Arc::new(ClusterState::empty(&server)));
    let task = tokio::spawn(watch::run(client, server, tx));
    Ok(Source { state: rx, task })
}

/// A client for `connection`, and the API server's URL.
async fn client(connection: &Connection) -> anyhow::Result<(kube::Client, String)> {
    let config = match connection {
        Connection::InCluster => kube::Config::incluster()
            .context("--kubernetes: no in-cluster service account (KUBERNETES_SERVICE_HOST and the token under /var/run/secrets/kubernetes.io/serviceaccount)")?,
        Connection::Kubeconfig { path, context } => {
            let file = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
            let options = kube::config::KubeConfigOptions {
                context: context.clone(),
                ..Default::default()
            };
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .with_context(|| format!("the kubeconfig {}", path.display()))?
        }
    };
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).context("connecting to the Kubernetes API")?;
    Ok((client, server))
}

/// A running Kubernetes source.
pub struct Source {
    pub state: channel::Receiver<Arc<ClusterState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Source {
    fn drop(&mut self) {
        self.task.abort();
    }
}
