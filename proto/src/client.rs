//! Connecting to a Hubble gRPC server (a flowscope observer or relay, or Cilium's Hubble), as
//! `flowscope observe` and the relay do: plain HTTP/2, or flowscope's own TLS (rustls, with
//! the client settings `flowscope_tls` reads) under tonic's HTTP/2.

use std::time::Duration;

use flowscope_tls::Connector;
use tonic::transport::{Channel, Endpoint};

use crate::{Encoded, observer as proto};

/// Why there is no channel.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0:?} is not an address such as 127.0.0.1:4244 ({1})")]
    Address(String, String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Failed(String),
}

/// A channel to `server` (HOST:PORT), connected within `timeout`.
pub async fn connect(
    server: &str,
    tls: Option<Connector>,
    timeout: Duration,
) -> Result<Channel, ConnectError> {
    let endpoint = Endpoint::from_shared(format!("http://{server}"))
        .map_err(|e| ConnectError::Address(server.to_string(), e.to_string()))?
        .connect_timeout(timeout);
    let connect = async {
        match tls {
            None => endpoint.connect().await,
            // tonic speaks HTTP/2 on the TLS stream it is given.
            Some(tls) => {
                let host = server.to_string();
                let connector = tower::service_fn(move |_: tonic::transport::Uri| {
                    let (tls, host) = (tls.clone(), host.clone());
                    async move {
                        tls.connect(&host)
                            .await
                            .map(hyper_util::rt::TokioIo::new)
                            .map_err(std::io::Error::other)
                    }
                });
                endpoint.connect_with_connector(connector).await
            }
        }
    };
    match tokio::time::timeout(timeout, connect).await {
        Err(_) => Err(ConnectError::Timeout(timeout)),
        Ok(Err(e)) => Err(ConnectError::Failed(source_chain(&e))),
        Ok(Ok(channel)) => Ok(channel),
    }
}

/// `GetFlows` with the responses kept as they came ([`Encoded`]): for a relay, which forwards
/// them unchanged.
pub async fn get_flows_encoded(
    channel: Channel,
    request: proto::GetFlowsRequest,
) -> Result<tonic::Streaming<Encoded>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(source_chain(&e)))?;
    let codec = tonic_prost::ProstCodec::<proto::GetFlowsRequest, Encoded>::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/observer.Observer/GetFlows");
    Ok(grpc
        .server_streaming(tonic::Request::new(request), path, codec)
        .await?
        .into_inner())
}

/// An error with its causes, which is where the transport says what went wrong.
pub fn source_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
