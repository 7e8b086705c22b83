//! A client that only counts: it follows a server's flows over gRPC (`grpc://HOST:PORT`,
//! responses read no further than their kind) or its WebSocket (`ws://HOST:PORT`, lines told
//! apart by their first key), skips WARMUP seconds, then counts for SECONDS and prints
//! `flows=N lost=N seconds=S`. With it a benchmark measures the server, not a client that
//! prints (bench/relay.sh).
//!
//! Run: `cargo run --release -p flowscope-cli --example flow_count -- URL [WARMUP] [SECONDS]`

use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "grpc://127.0.0.1:4244".into());
    let warmup: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let seconds: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10.0);
    let (begin, end) = (
        Instant::now() + Duration::from_secs_f64(warmup),
        Instant::now() + Duration::from_secs_f64(warmup + seconds),
    );
    let (mut flows, mut lost) = (0u64, 0u64);
    let mut counting = |flow: bool, n: u64| {
        let now = Instant::now();
        if now >= begin {
            if flow {
                flows += 1;
            } else {
                lost += n;
            }
        }
        now < end
    };
    if let Some(server) = url.strip_prefix("grpc://") {
        let channel = flowscope_proto::client::connect(server, None, Duration::from_secs(5))
            .await
            .expect("connect");
        let request = flowscope_proto::observer::GetFlowsRequest {
            follow: true,
            ..Default::default()
        };
        let mut stream = flowscope_proto::client::get_flows_encoded(channel, request)
            .await
            .expect("GetFlows");
        while let Ok(Some(response)) = stream.message().await {
            let head = response.head().expect("GetFlowsResponse");
            if !counting(head.kind == flowscope_proto::Kind::Flow, head.lost) {
                break;
            }
        }
    } else if let Some(server) = url.strip_prefix("ws://") {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{server}/api/v1/flows"))
            .await
            .expect("connect");
        ws.send(Message::Text(r#"{"follow":true}"#.into()))
            .await
            .expect("request");
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Text(t) = msg else { continue };
            let lost = t
                .find("\"num_events_lost\":\"")
                .and_then(|i| t[i + 19..].split('"').next()?.parse().ok())
                .unwrap_or(0);
            if !counting(t.starts_with("{\"flow\""), lost) {
                break;
            }
        }
    } else {
        eprintln!("URL is grpc://HOST:PORT or ws://HOST:PORT");
        std::process::exit(2);
    }
    let counted = Instant::now().min(end).saturating_duration_since(begin);
    println!(
        "flows={flows} lost={lost} seconds={:.3}",
        counted.as_secs_f64()
    );
}
