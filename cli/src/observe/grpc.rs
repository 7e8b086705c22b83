//! Hubble's gRPC API (`observer.Observer/GetFlows`), as `hubble observe` asks it: the same
//! command works against flowscope's observers and relays and against Cilium's own Hubble.
//! Each response becomes the JSON line flowscope's WebSocket would have sent (the model writes
//! it, so `-o jsonpb` prints Hubble's JSON byte for byte), and goes through the same handling.

use std::time::Duration;

use anyhow::anyhow;
use flowscope_model::GetFlowsRequest;
use flowscope_proto::observer::{self as proto, observer_client::ObserverClient};
use flowscope_tls::Connector;
use tonic::{Code, Status};

use super::{
    remote::{End, drive, handle_line, unreachable},
    sink::{Halt, Sink},
};

/// Streams the responses to `request` from the gRPC server at `server` (HOST:PORT) into
/// `sink`, as [`super::remote::stream`] does over the WebSocket.
pub(crate) async fn stream(
    server: &str,
    tls: Option<Connector>,
    connect_timeout: Duration,
    request: &GetFlowsRequest,
    sink: &mut Sink,
    interrupt: impl Future<Output = ()>,
) -> Result<End, Halt> {
    use flowscope_proto::client::{ConnectError, connect};
    let channel = match connect(server, tls, connect_timeout).await {
        Ok(channel) => channel,
        Err(ConnectError::Address(..)) => {
            return Err(Halt::Failed(anyhow!(
                "--server {server:?} is not an address such as 127.0.0.1:4244"
            )));
        }
        Err(e) => return Err(Halt::Failed(unreachable(server, e.to_string()))),
    };
    let mut client = ObserverClient::new(channel);
    let mut responses = client
        .get_flows(proto_request(request)?)
        .await
        .map_err(|status| failed(server, status))?
        .into_inner();

    // Dropping the stream (on Ctrl-C too) cancels the call.
    drive(
        &mut responses,
        request.follow,
        sink,
        interrupt,
        |message, sink| handle(server, message, sink),
    )
    .await
}

/// One message of the stream; `Some` when it is over.
fn handle(
    server: &str,
    message: Option<Result<proto::GetFlowsResponse, Status>>,
    sink: &mut Sink,
) -> Result<Option<End>, Halt> {
    match message {
        None => Ok(Some(End::Complete)),
        Some(Ok(response)) => {
            handle_line(&line(&response)?, sink)?;
            Ok(None)
        }
        Some(Err(status)) => Err(failed(server, status)),
    }
}

/// The model's request as Hubble's message.
fn proto_request(request: &GetFlowsRequest) -> Result<proto::GetFlowsRequest, Halt> {
    flowscope_proto::convert::request_to_proto(request).map_err(|e| Halt::Failed(anyhow!(e)))
}

/// The response as the JSON line flowscope's WebSocket sends.
fn line(response: &proto::GetFlowsResponse) -> Result<String, Halt> {
    flowscope_proto::convert::response_line(response)
        .map_err(|e| Halt::Failed(anyhow!("the server sent {e}")))
}

/// A failed call, worded as the WebSocket's failures are.
fn failed(server: &str, status: Status) -> Halt {
    Halt::Failed(match status.code() {
        Code::InvalidArgument => anyhow!("the observer refused the request: {}", status.message()),
        Code::Unavailable if status.message().contains("transport") => {
            unreachable(server, status.message())
        }
        Code::Unimplemented => anyhow!(
            "the server at {server} does not serve Hubble's Observer API: {}",
            status.message()
        ),
        code => anyhow!(
            "the observer at {server} ended the stream: {} ({code:?})",
            if status.message().is_empty() {
                "no reason given"
            } else {
                status.message()
            }
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_keep_their_filters_and_mask_paths() {
        let request: GetFlowsRequest = serde_json::from_str(
            r#"{"number":"20","follow":true,"since":"2024-06-01T10:00:00Z",
                "whitelist":[{"source_pod":["shop/"],"verdict":["DROPPED"],"destination_port":["80"]}],
                "field_mask":"time,l4.UDP.destination_port"}"#,
        )
        .unwrap();
        let message = proto_request(&request).unwrap();
        assert_eq!(message.number, 20);
        assert!(message.follow);
        assert_eq!(message.since.unwrap().seconds, 1_717_236_000);
        let filter = &message.whitelist[0];
        assert_eq!(filter.source_pod, ["shop/"]);
        assert_eq!(
            filter.verdict,
            [flowscope_proto::flow::Verdict::Dropped as i32]
        );
        assert_eq!(filter.destination_port, ["80"]);
        assert_eq!(
            message.field_mask.unwrap().paths,
            ["time", "l4.UDP.destination_port"]
        );
    }

    #[test]
    fn responses_become_the_lines_the_websocket_sends() {
        // As flowscope's model writes them (Hubble's key order and `Z` times), whatever the
        // protos' JSON mapping would write.
        let lines = include_str!("../../testdata/flows.jsonl");
        for want in lines.lines().filter(|l| !l.trim().is_empty()) {
            let response: proto::GetFlowsResponse = serde_json::from_str(want).unwrap();
            assert_eq!(line(&response).unwrap(), want);
        }
    }
}
