//! A stand-in flow server for benchmarking `flowscope observe` on its own: it answers
//! `GET /api/v1/flows` WebSockets like the observer, streaming the realistic flows of
//! `cli/testdata/flows.jsonl` (pods, labels, policies, DNS, HTTP) over and over at a fixed
//! rate, each with a fresh time. The observer itself cannot be fed 100,000 real flows/s on a
//! small machine, and this measures the client, not the server.
//!
//! It also answers `GET /api/v1/status` with a node name (third argument), so a relay takes it
//! for an observer (bench/relay.sh).
//!
//! Run: `cargo run --release -p flowscope-cli --example flow_replay_server -- ADDR RATE [NODE]`
//! (see bench/observe.sh).

use std::time::{Duration, Instant};

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
            // A status request is plain HTTP; everything else is a flows WebSocket.
            let mut head = [0u8; 18];
            if tcp.peek(&mut head).await.is_ok() && head.starts_with(b"GET /api/v1/status") {
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
            let base = 1_780_000_000_000_000_000i64;
            loop {
                let due = start.elapsed().as_micros() as u64 * rate / 1_000_000;
                while sent < due {
                    let ns = base + sent as i64 * 1_000;
                    let t = flowscope_model::Timestamp::from_unix_nanos(ns).to_string();
                    let line = flows[(sent as usize) % flows.len()]
                        .replace("@T@", &t)
                        .replace("@U@", &format!("00000000-0000-4000-8000-{sent:012x}"));
                    if ws.feed(Message::Text(line.into())).await.is_err() {
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
