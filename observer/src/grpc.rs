//! Hubble's gRPC `Observer` service (`observer.proto`), on the API's own listener beside the
//! WebSocket: `GetFlows` streams exactly what the WebSocket streams (the same request checks,
//! history, follow and field mask, by the same code: [`crate::api::stream`]); `ServerStatus`,
//! `GetNodes` and `GetNamespaces` answer what the JSON API answers; agent and debug events are
//! not produced, and saying so is an UNIMPLEMENTED status. Hubble's `Peer` service names the
//! observer itself ([`GrpcPeer`]).

use std::sync::Arc;

use flowscope_proto::{
    observer::{
        self as proto, GetAgentEventsRequest, GetAgentEventsResponse, GetDebugEventsRequest,
        GetDebugEventsResponse, GetFlowsRequest, GetFlowsResponse, GetNamespacesRequest,
        GetNamespacesResponse, GetNodesRequest, GetNodesResponse, ServerStatusRequest,
        ServerStatusResponse, observer_server::Observer,
    },
    pbjson_types::UInt32Value,
};
use flowscope_server::{
    grpc::{self, Boxed, GrpcLines},
    ws::End,
};
use futures_util::StreamExt as _;
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
        let response = e.grpc().map(|r| GetFlowsResponse::clone(&r));
        self.send(response).await
    }
}

#[tonic::async_trait]
impl Observer for GrpcObserver {
    type GetFlowsStream = Boxed<GetFlowsResponse>;
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
        let runtime = self.0.runtime.lock().map(|r| r.clone()).unwrap_or_default();
        let mut names: Vec<&str> = runtime
            .registry
            .endpoints
            .iter()
            .map(|e| e.namespace.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        Ok(Response::new(GetNamespacesResponse {
            namespaces: names
                .into_iter()
                .map(|n| proto::Namespace {
                    cluster: String::new(),
                    namespace: n.to_string(),
                })
                .collect(),
        }))
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

/// Hubble's `Peer` service: the observers an upstream hubble-relay should connect to. An
/// observer names itself, at the address it serves on; the stream stays open (hubble-relay
/// keeps it to hear of changes) until the client leaves or the observer stops.
pub struct GrpcPeer {
    pub name: Arc<str>,
    pub address: String,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

#[tonic::async_trait]
impl flowscope_proto::peer::peer_server::Peer for GrpcPeer {
    type NotifyStream = Boxed<flowscope_proto::peer::ChangeNotification>;

    async fn notify(
        &self,
        _: Request<flowscope_proto::peer::NotifyRequest>,
    ) -> Result<Response<Self::NotifyStream>, Status> {
        use flowscope_proto::peer::{ChangeNotification, ChangeNotificationType};
        let me = ChangeNotification {
            name: self.name.to_string(),
            address: self.address.clone(),
            r#type: ChangeNotificationType::PeerAdded as i32,
            tls: None,
        };
        let mut shutdown = self.shutdown.clone();
        let after = futures_util::stream::once(async move {
            let _ = shutdown.wait_for(|stopping| *stopping).await;
        })
        .filter_map(|()| async { None });
        Ok(Response::new(Box::pin(
            futures_util::stream::iter([Ok(me)]).chain(after),
        )))
    }
}
