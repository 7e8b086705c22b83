//! The pods of one namespace that match a label selector, as (node, address): how the relay
//! finds the observers of a DaemonSet and names each by its node, as hubble-relay's peers are
//! named. One watch, filtered by the API server (`labelSelector`), so the relay never holds
//! the cluster's other pods.

use std::{collections::BTreeMap, net::IpAddr};

use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, ResourceExt as _,
    runtime::{WatchStreamExt as _, watcher},
};
use tokio::sync::watch;
use tracing::warn;

use crate::Connection;

/// A running pod with an address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PeerPod {
    /// `spec.nodeName`, else the pod's name.
    pub node: String,
    pub ip: IpAddr,
}

/// Watches the pods of `namespace` matching `selector` (Kubernetes' selector syntax). The
/// receiver holds `None` until the first list, then the running pods with an address; while
/// the API server is away it keeps the last list. Watching stops when the handle is dropped.
pub async fn watch_peers(
    connection: &Connection,
    namespace: &str,
    selector: &str,
) -> anyhow::Result<PeerWatch> {
    let (client, _) = crate::client(connection).await?;
    let api: Api<Pod> = Api::namespaced(client, namespace);
    let config = watcher::Config::default().labels(selector);
    let (tx, rx) = watch::channel(None);
    let task = tokio::spawn(async move {
        let mut stream = watcher(api, config).default_backoff().boxed();
        let mut pods: BTreeMap<String, PeerPod> = BTreeMap::new();
        let mut listing: Option<BTreeMap<String, PeerPod>> = None;
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init) => listing = Some(BTreeMap::new()),
                Ok(watcher::Event::InitApply(p)) => {
                    if let (Some(list), Some(peer)) = (listing.as_mut(), peer(&p)) {
                        list.insert(p.name_any(), peer);
                    }
                }
                Ok(watcher::Event::InitDone) => pods = listing.take().unwrap_or_default(),
                Ok(watcher::Event::Apply(p)) => match peer(&p) {
                    Some(peer) => {
                        pods.insert(p.name_any(), peer);
                    }
                    None => {
                        pods.remove(&p.name_any());
                    }
                },
                Ok(watcher::Event::Delete(p)) => {
                    pods.remove(&p.name_any());
                }
                Err(err) => {
                    warn!(%err, "Watching the observers' pods (retrying; keeping the last list)");
                    continue;
                }
            }
            if listing.is_none() {
                let _ = tx.send(Some(pods.values().cloned().collect()));
            }
        }
    });
    Ok(PeerWatch { pods: rx, task })
}

/// The pod a peer is, when it runs and has an address.
fn peer(p: &Pod) -> Option<PeerPod> {
    let status = p.status.as_ref()?;
    if status.phase.as_deref() != Some("Running") {
        return None;
    }
    let ip = status.pod_ip.as_deref()?.parse().ok()?;
    let node = p
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_else(|| p.name_any());
    Some(PeerPod { node, ip })
}

/// A running peer watch.
pub struct PeerWatch {
    pub pods: watch::Receiver<Option<Vec<PeerPod>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PeerWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
