//! Hubble's gRPC `Observer` service (`observer.proto`), on the API's own listener beside the
//! WebSocket: `GetFlows` streams exactly what the WebSocket streams (the same request checks,
//! history, follow and field mask, by the same code: [`crate::api::stream`]); `ServerStatus`,
//! `GetNodes` and `GetNamespaces` answer what the JSON API answers; agent and debug events are
//! not produced, and saying so is an UNIMPLEMENTED status. Hubble's `Peer` service names the
//! cluster's nodes, or the observer itself ([`GrpcPeer`]).

use std::sync::Arc;

use flowscope_proto::{
    Encoded,
    observer::{
        GetAgentEventsRequest, GetAgentEventsResponse, GetDebugEventsRequest,
        GetDebugEventsResponse, GetFlowsRequest, GetNamespacesRequest, GetNamespacesResponse,
        GetNodesRequest, GetNodesResponse, ServerStatusRequest, ServerStatusResponse,
    },
    pbjson_types::UInt32Value,
    servers::observer::observer_server::Observer,
};
use flowscope_server::{
    grpc::{self, Boxed, GrpcLines},
    ws::End,
};
use tonic::{Request, Response, Status};

use crate::{
    api::{self, AppState, FlowSink, Subscriber},
    event::Cached,
};

pub struct GrpcObserver(pub Arc<AppState>);

/// A slow client holds its stream back (the store keeps the flows; what it overwrites
/// meanwhile is reported as lost), never the observer.
impl FlowSink for GrpcLines {
    async fn record(&mut self, e: &Arc<Cached>) -> Result<(), End> {
        self.send(e.grpc()).await
    }
}

#[tonic::async_trait]
impl Observer for GrpcObserver {
    type GetFlowsStream = Boxed<Encoded>;
    type GetAgentEventsStream = Boxed<GetAgentEventsResponse>;
    type GetDebugEventsStream = Boxed<GetDebugEventsResponse>;

    async fn get_flows(
        &self,
        request: Request<GetFlowsRequest>,
    ) -> Result<Response<Self::GetFlowsStream>, Status> {
        let (request, filters) = grpc::request(request.get_ref())
            .map_err(|reason| grpc::refusal("INVALID_ARGUMENT", reason))?;
        let st = self.0.clone();
        let subscriber = Subscriber::new(&st)
            .ok_or_else(|| grpc::refusal("RESOURCE_EXHAUSTED", api::too_many(&st)))?;
        let (mut sink, responses) = grpc::channel();
        tokio::spawn(async move {
            let _subscriber = subscriber;
            let closed = sink.0.clone();
            let result = tokio::select! {
                r = api::stream(&mut sink, &st, &request, &filters) => r,
                // The client cancelled or went away.
                _ = closed.closed() => Err(End::Gone),
            };
            grpc::close(&mut sink, result, api::SHUTTING_DOWN).await;
        });
        Ok(Response::new(responses))
    }

    async fn get_agent_events(
        &self,
        _: Request<GetAgentEventsRequest>,
    ) -> Result<Response<Self::GetAgentEventsStream>, Status> {
        Err(grpc::no_agent_events())
    }

    async fn get_debug_events(
        &self,
        _: Request<GetDebugEventsRequest>,
    ) -> Result<Response<Self::GetDebugEventsStream>, Status> {
        Err(grpc::no_debug_events())
    }

    async fn get_nodes(
        &self,
        _: Request<GetNodesRequest>,
    ) -> Result<Response<GetNodesResponse>, Status> {
        Ok(Response::new(GetNodesResponse {
            nodes: vec![grpc::node(&api::node_info(&self.0))],
        }))
    }

    async fn get_namespaces(
        &self,
        _: Request<GetNamespacesRequest>,
    ) -> Result<Response<GetNamespacesResponse>, Status> {
        // Read under the lock: the registry is all that is needed, not a copy of the status.
        let response = match self.0.runtime.lock() {
            Ok(runtime) => grpc::namespaces(
                runtime
                    .registry
                    .endpoints
                    .iter()
                    .map(|e| e.namespace.as_str()),
            ),
            Err(_) => grpc::namespaces([]),
        };
        Ok(Response::new(response))
    }

    async fn server_status(
        &self,
        _: Request<ServerStatusRequest>,
    ) -> Result<Response<ServerStatusResponse>, Status> {
        let node = api::node_info(&self.0);
        Ok(Response::new(ServerStatusResponse {
            num_flows: node.num_flows,
            max_flows: node.max_flows,
            seen_flows: node.seen_flows,
            uptime_ns: node.uptime_ns,
            // One node: this one, connected since it answers.
            num_connected_nodes: Some(UInt32Value { value: 1 }),
            num_unavailable_nodes: Some(UInt32Value { value: 0 }),
            unavailable_nodes: Vec::new(),
            version: node.version,
            flows_rate: node.flows_rate,
        }))
    }
}

/// Hubble's `Peer` service: the observers an upstream hubble-relay should connect to. With
/// the Kubernetes source, every node of the cluster (the observers run on each, on the host's
/// network: a node's first address, IPv4 first, with this observer's port), added, updated and
/// deleted as the nodes change; without it, this observer alone at its `--listen` address. The
/// stream stays open (hubble-relay keeps it to hear of changes) until the client leaves or the
/// observer stops.
pub struct GrpcPeer {
    pub name: Arc<str>,
    pub listen: std::net::SocketAddr,
    pub cluster: Option<tokio::sync::watch::Receiver<Arc<flowscope_kubernetes::ClusterState>>>,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// Peer name to address.
type Peers = std::collections::BTreeMap<String, String>;

/// The peers as `state` has them, or this observer alone without a cluster.
fn peers(
    name: &str,
    listen: std::net::SocketAddr,
    state: Option<&flowscope_kubernetes::ClusterState>,
) -> Peers {
    let Some(state) = state else {
        return Peers::from([(name.to_string(), listen.to_string())]);
    };
    state
        .nodes
        .iter()
        .filter_map(|node| {
            let ip = node
                .ips
                .iter()
                .find(|ip| ip.is_ipv4())
                .or(node.ips.first())?;
            let address = std::net::SocketAddr::new(*ip, listen.port());
            Some((node.name.clone(), address.to_string()))
        })
        .collect()
}

/// The notifications that take `old` to `new`.
fn changes(old: &Peers, new: &Peers) -> Vec<flowscope_proto::peer::ChangeNotification> {
    use flowscope_proto::peer::{ChangeNotification, ChangeNotificationType as T};
    let note = |name: &str, address: &str, kind: T| ChangeNotification {
        name: name.to_string(),
        address: address.to_string(),
        r#type: kind as i32,
        tls: None,
    };
    let mut out = Vec::new();
    for (name, address) in old {
        if !new.contains_key(name) {
            out.push(note(name, address, T::PeerDeleted));
        }
    }
    for (name, address) in new {
        match old.get(name) {
            None => out.push(note(name, address, T::PeerAdded)),
            Some(before) if before != address => out.push(note(name, address, T::PeerUpdated)),
            Some(_) => {}
        }
    }
    out
}

#[tonic::async_trait]
impl flowscope_proto::servers::peer::peer_server::Peer for GrpcPeer {
    type NotifyStream = Boxed<flowscope_proto::peer::ChangeNotification>;

    async fn notify(
        &self,
        _: Request<flowscope_proto::peer::NotifyRequest>,
    ) -> Result<Response<Self::NotifyStream>, Status> {
        let (tx, rx) = tokio::sync::mpsc::channel(grpc::QUEUE);
        let mut cluster = self.cluster.clone();
        let mut shutdown = self.shutdown.clone();
        let mut known = Peers::new();
        let (name, listen) = (self.name.clone(), self.listen);
        tokio::spawn(async move {
            let state = cluster.as_mut().map(|c| c.borrow_and_update().clone());
            let mut next = peers(&name, listen, state.as_deref());
            loop {
                for note in changes(&known, &next) {
                    if tx.send(Ok(note)).await.is_err() {
                        return;
                    }
                }
                known = next;
                let changed = async {
                    match cluster.as_mut() {
                        Some(c) => c.changed().await.is_ok(),
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    alive = changed => {
                        if !alive {
                            return;
                        }
                    }
                    _ = shutdown.wait_for(|stopping| *stopping) => return,
                    () = tx.closed() => return,
                }
                let state = cluster.as_mut().map(|c| c.borrow_and_update().clone());
                next = peers(&name, listen, state.as_deref());
            }
        });
        Ok(Response::new(grpc::stream(rx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_follow_the_nodes() {
        let listen = "0.0.0.0:24244".parse().unwrap();
        assert_eq!(
            peers("n1", listen, None),
            Peers::from([("n1".into(), "0.0.0.0:24244".into())])
        );
        let node = |name: &str, ips: &[&str]| flowscope_kubernetes::NodeInfo {
            name: name.into(),
            ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
        };
        let state = flowscope_kubernetes::ClusterState {
            nodes: vec![
                node("n1", &["2001:db8::1", "198.18.0.1"]),
                node("n2", &["2001:db8::2"]),
                node("bare", &[]),
            ],
            ..Default::default()
        };
        let peers = peers("n1", listen, Some(&state));
        assert_eq!(
            peers,
            Peers::from([
                ("n1".into(), "198.18.0.1:24244".into()),
                ("n2".into(), "[2001:db8::2]:24244".into()),
            ])
        );
        let kinds = |notes: Vec<flowscope_proto::peer::ChangeNotification>| -> Vec<(String, i32)> {
            notes.into_iter().map(|n| (n.name, n.r#type)).collect()
        };
        use flowscope_proto::peer::ChangeNotificationType as T;
        assert_eq!(
            kinds(changes(&Peers::new(), &peers)),
            [
                ("n1".into(), T::PeerAdded as i32),
                ("n2".into(), T::PeerAdded as i32)
            ]
        );
        let later = Peers::from([
            ("n1".into(), "198.18.0.9:24244".into()),
            ("n3".into(), "198.18.0.3:24244".into()),
        ]);
        assert_eq!(
            kinds(changes(&peers, &later)),
            [
                ("n2".into(), T::PeerDeleted as i32),
                ("n1".into(), T::PeerUpdated as i32),
                ("n3".into(), T::PeerAdded as i32)
            ]
        );
    }
}
