//! Hubble's gRPC API beside the WebSocket, on the same listener: what observer and relay share
//! to serve it. Requests and responses cross over through Hubble's JSON (the protos' JSON
//! mapping is protojson's, which is what flowscope's model reads and writes), so a gRPC
//! request is checked by the same code, with the same messages, as a WebSocket request, and
//! a flow is the same flow in both encodings.

use std::pin::Pin;

use axum::extract::ws::Utf8Bytes;
use flowscope_model::{
    api::NodeInfo,
    filter::{FilterSet, GetFlowsRequest},
};
use flowscope_proto::{Encoded, observer as proto};
use futures_util::Stream;
use tokio::sync::mpsc;
use tonic::{Code, Status};

use crate::ws::{End, Forwarded, LineSink};

/// A server-streaming response.
pub type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Responses queued per gRPC stream: a slow client holds its stream back, never the server.
pub const QUEUE: usize = 256;

/// A flow stream's lines as gRPC responses, for [`stream`] to send.
pub struct GrpcLines(pub mpsc::Sender<Result<Encoded, Status>>);

impl GrpcLines {
    pub async fn send(&mut self, item: Result<Encoded, Status>) -> Result<(), End> {
        self.0.send(item).await.map_err(|_| End::Gone)
    }
}

impl LineSink for GrpcLines {
    async fn line(&mut self, line: Utf8Bytes) -> Result<(), End> {
        self.send(response(&line)).await
    }

    async fn flush(&mut self) -> Result<(), End> {
        Ok(())
    }

    // The stream's only sender: capacity seen here is still there for the next send.
    async fn ready(&mut self) -> Result<(), End> {
        self.0.reserve().await.map(drop).map_err(|_| End::Gone)
    }

    async fn forward(&mut self, response: Forwarded) -> Result<(), End> {
        match response {
            Forwarded::Line(line) => self.line(line).await,
            Forwarded::Encoded(encoded) => self.send(Ok(encoded)).await,
        }
    }
}

/// A response stream and the sink that feeds it, for a task to fill.
pub fn channel() -> (GrpcLines, Boxed<Encoded>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (GrpcLines(tx), stream(rx))
}

/// The receiver as a response stream.
pub fn stream<T: Send + 'static>(rx: mpsc::Receiver<Result<T, Status>>) -> Boxed<T> {
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// How a stream that ended early ends for its gRPC client: the server stopping is
/// `UNAVAILABLE` with `shutdown` (a client that left hears nothing).
pub async fn close(sink: &mut GrpcLines, result: Result<(), End>, shutdown: &'static str) {
    if let Err(End::Shutdown) = result {
        let _ = sink.send(Err(Status::unavailable(shutdown))).await;
    }
}

/// A gRPC `GetFlowsRequest` as the model's, checked: the error is the WebSocket's message.
pub fn request(request: &proto::GetFlowsRequest) -> Result<(GetFlowsRequest, FilterSet), String> {
    crate::ws::parse_request(&flowscope_proto::convert::request_json(request)?)
}

/// One response line (`hubble observe -o json`) as the gRPC message, encoded.
pub fn response(line: &str) -> Result<Encoded, Status> {
    flowscope_proto::convert::line_to_encoded(line).map_err(Status::internal)
}

/// A refusal as the WebSocket words it (`code` is its `error.code`), as a gRPC status.
pub fn refusal(code: &str, message: String) -> Status {
    let code = match code {
        "INVALID_ARGUMENT" => Code::InvalidArgument,
        "RESOURCE_EXHAUSTED" => Code::ResourceExhausted,
        "UNAVAILABLE" => Code::Unavailable,
        _ => Code::Internal,
    };
    Status::new(code, message)
}

/// Hubble's `Node` for a node as the JSON API reports it.
pub fn node(info: &NodeInfo) -> proto::Node {
    proto::Node {
        name: info.name.clone(),
        version: info.version.clone(),
        address: info.address.clone(),
        state: info.state as i32,
        tls: None,
        uptime_ns: info.uptime_ns,
        num_flows: info.num_flows,
        max_flows: info.max_flows,
        seen_flows: info.seen_flows,
    }
}

/// Hubble's `GetNamespaces` answer for these namespaces (repeats and order do not matter).
pub fn namespaces<'a>(names: impl IntoIterator<Item = &'a str>) -> proto::GetNamespacesResponse {
    let mut names: Vec<&str> = names.into_iter().collect();
    names.sort_unstable();
    names.dedup();
    proto::GetNamespacesResponse {
        namespaces: names
            .into_iter()
            .map(|n| proto::Namespace {
                cluster: String::new(),
                namespace: n.to_string(),
            })
            .collect(),
    }
}

/// What flowscope does not produce, said plainly.
pub fn no_agent_events() -> Status {
    Status::unimplemented(
        "flowscope has no Cilium agent: GetAgentEvents is not served (flows are, with GetFlows)",
    )
}

/// See [`no_agent_events`].
pub fn no_debug_events() -> Status {
    Status::unimplemented(
        "flowscope's datapath sends no debug events: GetDebugEvents is not served (flows are, with GetFlows)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto_request(json: &str) -> proto::GetFlowsRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn grpc_requests_are_the_websockets() {
        let (req, filters) = request(&proto_request(
            r#"{"number":"20","follow":true,"whitelist":[{"source_pod":["shop/"],"verdict":["DROPPED"]}],"since":"2024-06-01T10:00:00Z"}"#,
        ))
        .unwrap();
        assert_eq!(req.number, 20);
        assert!(req.follow);
        assert_eq!(req.whitelist.len(), 1);
        assert!(req.since.is_some());
        assert!(!filters.matches_everything());

        let masked = proto::GetFlowsRequest {
            field_mask: Some(pbjson_types::FieldMask {
                paths: vec!["source.pod_name".into(), "verdict".into()],
            }),
            ..Default::default()
        };
        let (req, _) = request(&masked).unwrap();
        assert!(req.mask().unwrap().is_some());

        let bad = proto::GetFlowsRequest {
            field_mask: Some(pbjson_types::FieldMask {
                paths: vec!["source.podname".into()],
            }),
            ..Default::default()
        };
        let err = request(&bad).unwrap_err();
        assert!(err.contains("`source` has no field `podname`"), "{err}");

        let err = request(&proto_request(r#"{"first":true,"follow":true}"#)).unwrap_err();
        assert!(err.contains("first and follow cannot be combined"), "{err}");
    }
}
