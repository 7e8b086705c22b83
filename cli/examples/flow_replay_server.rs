//! A stand-in flow server for benchmarking `flowscope observe` on its own: it answers
//! `GET /api/v1/flows` WebSockets like the observer, streaming the realistic flows of
//! `cli/testdata/flows.jsonl` (pods, labels, policies, DNS, HTTP) over and over at a fixed
//! rate, each with a fresh time. The observer itself cannot be fed 100,000 real flows/s on a
//! small machine, and this measures the client, not the server.
//!
//! It also answers `GET /api/v1/status` with a node name (third argument), so a relay takes it
//! for an observer (bench/relay.sh), and Hubble's gRPC `GetFlows` (HTTP/2 without TLS, on the
//! same port) with the same flows encoded in protobuf.
//!
//! Run: `cargo run --release -p flowscope-cli --example flow_replay_server -- ADDR RATE [NODE]`
//! (see bench/observe.sh).

use std::time::{Duration, Instant};

use flowscope_proto::observer as proto;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:45999".into());
    let rate: u64 = args.next().and_then(|r| r.parse().ok()).unwrap_or(100_000);
    let node = args.next().unwrap_or_else(|| "replay".into());
    // Each flow rendered once, with markers where the time and uuid go.
    let flows: Vec<String> = include_str!("../testdata/flows.jsonl")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("flow").is_some())
        .map(|mut f| {
            f["flow"]["time"] = "@T@".into();
            f["time"] = "@T@".into();
            f["flow"]["uuid"] = "@U@".into();
            f.to_string()
        })
        .collect();
    let listener = TcpListener::bind(&addr).await.expect("bind");
    eprintln!("serving {rate} flows/s on ws://{addr}/api/v1/flows");
    loop {
        let (mut tcp, _) = listener.accept().await.expect("accept");
        let flows = flows.clone();
        let node = node.clone();
        tokio::spawn(async move {
            // A status request is plain HTTP, HTTP/2 is gRPC; everything else is a flows
            // WebSocket.
            let mut head = [0u8; 18];
            if tcp.peek(&mut head).await.is_ok() && head.starts_with(b"PRI * HTTP/2.0") {
                let service =
                    flowscope_proto::servers::observer::observer_server::ObserverServer::new(
                        Replay { flows, rate },
                    );
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(
                    hyper_util::rt::TokioIo::new(tcp),
                    hyper_util::service::TowerToHyperService::new(service),
                )
                .await;
                return;
            }
            if head.starts_with(b"GET /api/v1/status") {
                use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                let mut buf = [0u8; 4096];
                let _ = tcp.read(&mut buf).await;
                let body = serde_json::json!({
                    "node_name": node, "version": "replay", "max_flows": 4095, "flows_rate": rate
                })
                .to_string();
                let _ = tcp
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
                return;
            }
            let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            let _request = ws.next().await;
            // Batches every millisecond, paced against the clock.
            let start = Instant::now();
            let mut sent = 0u64;
            loop {
                let due = start.elapsed().as_micros() as u64 * rate / 1_000_000;
                while sent < due {
                    if ws
                        .feed(Message::Text(line(&flows, sent).into()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    sent += 1;
                }
                if ws.flush().await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
    }
}

/// The `n`th flow: the templates in turn, each with its own time and uuid.
fn line(flows: &[String], n: u64) -> String {
    let ns = 1_780_000_000_000_000_000i64 + n as i64 * 1_000;
    let t = flowscope_model::Timestamp::from_unix_nanos(ns).to_string();
    flows[(n as usize) % flows.len()]
        .replace("@T@", &t)
        .replace("@U@", &format!("00000000-0000-4000-8000-{n:012x}"))
}

/// The same flows over Hubble's gRPC API.
struct Replay {
    flows: Vec<String>,
    rate: u64,
}

type Stream<T> =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<T, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl flowscope_proto::servers::observer::observer_server::Observer for Replay {
    type GetFlowsStream = Stream<flowscope_proto::Encoded>;
    type GetAgentEventsStream = Stream<proto::GetAgentEventsResponse>;
    type GetDebugEventsStream = Stream<proto::GetDebugEventsResponse>;

    async fn get_flows(
        &self,
        _: tonic::Request<proto::GetFlowsRequest>,
    ) -> Result<tonic::Response<Self::GetFlowsStream>, tonic::Status> {
        // Each template as a message once; per flow only its time and uuid change.
        let templates: Vec<proto::GetFlowsResponse> = self
            .flows
            .iter()
            .map(|f| {
                serde_json::from_str(&f.replace("@T@", "2026-01-01T00:00:00Z")).expect("flow.proto")
            })
            .collect();
        let rate = self.rate;
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(async move {
            let start = Instant::now();
            let mut sent = 0u64;
            loop {
                let due = start.elapsed().as_micros() as u64 * rate / 1_000_000;
                while sent < due {
                    let mut response = templates[(sent as usize) % templates.len()].clone();
                    let ns = 1_780_000_000_000_000_000i64 + sent as i64 * 1_000;
                    let time = flowscope_proto::pbjson_types::Timestamp {
                        seconds: ns / 1_000_000_000,
                        nanos: (ns % 1_000_000_000) as i32,
                    };
                    if let Some(proto::get_flows_response::ResponseTypes::Flow(flow)) =
                        &mut response.response_types
                    {
                        flow.time = Some(time);
                        flow.uuid = format!("00000000-0000-4000-8000-{sent:012x}");
                    }
                    response.time = Some(time);
                    if tx
                        .send(Ok(flowscope_proto::Encoded::new(&response)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    sent += 1;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        Ok(tonic::Response::new(Box::pin(
            futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            }),
        )))
    }

    async fn get_agent_events(
        &self,
        _: tonic::Request<proto::GetAgentEventsRequest>,
    ) -> Result<tonic::Response<Self::GetAgentEventsStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("a replay of flows"))
    }

    async fn get_debug_events(
        &self,
        _: tonic::Request<proto::GetDebugEventsRequest>,
    ) -> Result<tonic::Response<Self::GetDebugEventsStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("a replay of flows"))
    }

    async fn get_nodes(
        &self,
        _: tonic::Request<proto::GetNodesRequest>,
    ) -> Result<tonic::Response<proto::GetNodesResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("a replay of flows"))
    }

    async fn get_namespaces(
        &self,
        _: tonic::Request<proto::GetNamespacesRequest>,
    ) -> Result<tonic::Response<proto::GetNamespacesResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("a replay of flows"))
    }

    async fn server_status(
        &self,
        _: tonic::Request<proto::ServerStatusRequest>,
    ) -> Result<tonic::Response<proto::ServerStatusResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("a replay of flows"))
    }
}
