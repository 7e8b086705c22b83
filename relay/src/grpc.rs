//! Hubble's gRPC `Observer` service on the relay's listener, as hubble-relay serves it:
//! `GetFlows` is the merged stream the WebSocket gets (node status events first, then every
//! connected observer's flows in time order, by the same merge), read from the observers'
//! own gRPC API and forwarded as they encoded it; `ServerStatus`, `GetNodes`
//! and `GetNamespaces` cover all observers; agent and debug events are UNIMPLEMENTED.

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
use flowscope_server::grpc::{self, Boxed};
use tonic::{Request, Response, Status};

use crate::{
    RelayState, api,
    flows::{self, Merge, Upstream},
};

pub struct GrpcRelay(pub Arc<RelayState>);

#[tonic::async_trait]
impl Observer for GrpcRelay {
    type GetFlowsStream = Boxed<Encoded>;
    type GetAgentEventsStream = Boxed<GetAgentEventsResponse>;
    type GetDebugEventsStream = Boxed<GetDebugEventsResponse>;

    async fn get_flows(
        &self,
        request: Request<GetFlowsRequest>,
    ) -> Result<Response<Self::GetFlowsStream>, Status> {
        let (request, _filters) = grpc::request(request.get_ref())
            .map_err(|reason| grpc::refusal("INVALID_ARGUMENT", reason))?;
        let st = self.0.clone();
        let counted = flows::Request::new(&st)
            .ok_or_else(|| grpc::refusal("RESOURCE_EXHAUSTED", flows::too_many(&st)))?;
        let (mut sink, responses) = grpc::channel();
        tokio::spawn(async move {
            let _counted = counted;
            let closed = sink.0.clone();
            // The client cancelled or went away.
            let mut gone = Box::pin(async move { closed.closed().await });
            let mut merge = Merge::new(&st, request, Upstream::Grpc);
            let result = merge.run(&mut sink, &mut gone).await;
            merge.stop();
            grpc::close(&mut sink, result, flows::SHUTTING_DOWN).await;
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
            nodes: api::node_list(&self.0).iter().map(grpc::node).collect(),
        }))
    }

    async fn get_namespaces(
        &self,
        _: Request<GetNamespacesRequest>,
    ) -> Result<Response<GetNamespacesResponse>, Status> {
        let endpoints = api::gather_endpoints(&self.0).await;
        Ok(Response::new(grpc::namespaces(
            endpoints.iter().map(|e| e.namespace.as_str()),
        )))
    }

    async fn server_status(
        &self,
        _: Request<ServerStatusRequest>,
    ) -> Result<Response<ServerStatusResponse>, Status> {
        let s = api::status_body(&self.0);
        Ok(Response::new(ServerStatusResponse {
            num_flows: s.num_flows,
            max_flows: s.max_flows,
            seen_flows: s.seen_flows,
            uptime_ns: s.uptime_ns,
            num_connected_nodes: Some(UInt32Value {
                value: s.num_connected_nodes,
            }),
            num_unavailable_nodes: Some(UInt32Value {
                value: s.num_unavailable_nodes,
            }),
            unavailable_nodes: s.unavailable_nodes,
            version: s.version,
            flows_rate: s.flows_rate,
        }))
    }
}
