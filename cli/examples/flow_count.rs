//! A client that only counts: it follows a server's flows over gRPC (`grpc://HOST:PORT`,
//! responses read no further than their kind) or its WebSocket (`ws://HOST:PORT`, lines told
//! apart by their first key), skips WARMUP seconds, then counts for SECONDS and prints
//! `flows=N lost=N seconds=S`. With it a benchmark measures the server, not a client that
//! prints (bench/relay.sh).
//!
//! SECONDS 0 counts until SIGINT or SIGTERM, then until the streams are quiet for 3 s (what a
//! lagging subscriber still receives counts). CONNECTIONS (default 1) follows that many times
//! at once, one line each. HISTORY (default 0) also asks for up to that many stored flows
//! first, so a subscriber that starts with the server accounts for every flow it ever stored
//! (bench/soak.sh).
//!
//! Run: `cargo run --release -p flowscope-cli --example flow_count -- URL [WARMUP] [SECONDS]
//! [CONNECTIONS] [HISTORY]`

use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;

#[derive(Clone, Copy)]
struct Window {
    begin: Instant,
    /// None: until a signal.
    end: Option<Instant>,
}

#[derive(Default)]
struct Tally {
    flows: u64,
    lost: u64,
}

impl Tally {
    /// Counts one response inside the window; false once the window is over.
    fn count(&mut self, w: Window, flow: bool, lost: u64) -> bool {
        let now = Instant::now();
        if now >= w.begin {
            if flow {
                self.flows += 1;
            } else {
                self.lost += lost;
            }
        }
        w.end.is_none_or(|end| now < end)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "grpc://127.0.0.1:4244".into());
    let mut number =
        |default: f64| -> f64 { args.next().and_then(|s| s.parse().ok()).unwrap_or(default) };
    let warmup = number(2.0);
    let seconds = number(10.0);
    let connections = number(1.0) as usize;
    let history = number(0.0) as u64;
    let start = Instant::now();
    let window = Window {
        begin: start + Duration::from_secs_f64(warmup),
        end: (seconds > 0.0).then(|| start + Duration::from_secs_f64(warmup + seconds)),
    };
    let tallies: Vec<std::rc::Rc<std::cell::RefCell<Tally>>> = (0..connections.max(1))
        .map(|_| Default::default())
        .collect();
    let follow = futures_util::future::join_all(
        tallies
            .iter()
            .map(|t| follow(&url, history, window, t.clone())),
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    let mut follow = std::pin::pin!(follow);
    let signalled = tokio::select! {
        _ = &mut follow => false,
        _ = tokio::signal::ctrl_c() => true,
        _ = term.recv() => true,
    };
    // Stopped by a signal: what the server still sends (a subscriber catching up, or told
    // what it lost) counts until the stream has been quiet for a moment.
    let total = || -> u64 {
        tallies
            .iter()
            .map(|t| {
                let t = t.borrow();
                t.flows + t.lost
            })
            .sum()
    };
    if signalled {
        loop {
            let before = total();
            tokio::select! {
                _ = &mut follow => break,
                _ = tokio::time::sleep(Duration::from_secs(3)) => {}
            }
            if total() == before {
                break;
            }
        }
    }
    let now = Instant::now();
    let counted = window
        .end
        .map_or(now, |end| now.min(end))
        .saturating_duration_since(window.begin);
    for t in &tallies {
        let t = t.borrow();
        println!(
            "flows={} lost={} seconds={:.3}",
            t.flows,
            t.lost,
            counted.as_secs_f64()
        );
    }
}

async fn follow(
    url: &str,
    history: u64,
    window: Window,
    tally: std::rc::Rc<std::cell::RefCell<Tally>>,
) {
    if let Some(server) = url.strip_prefix("grpc://") {
        let channel = flowscope_proto::client::connect(server, None, Duration::from_secs(5))
            .await
            .expect("connect");
        let request = flowscope_proto::observer::GetFlowsRequest {
            follow: true,
            number: history,
            ..Default::default()
        };
        let mut stream = flowscope_proto::client::get_flows_encoded(channel, request)
            .await
            .expect("GetFlows");
        while let Ok(Some(response)) = stream.message().await {
            let head = response.head().expect("GetFlowsResponse");
            let flow = head.kind == flowscope_proto::Kind::Flow;
            if !tally.borrow_mut().count(window, flow, head.lost) {
                break;
            }
        }
    } else if let Some(server) = url.strip_prefix("ws://") {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{server}/api/v1/flows"))
            .await
            .expect("connect");
        let request = format!(r#"{{"follow":true,"number":{history}}}"#);
        ws.send(Message::Text(request.into()))
            .await
            .expect("request");
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Text(t) = msg else { continue };
            let lost = t
                .find("\"num_events_lost\":\"")
                .and_then(|i| t[i + 19..].split('"').next()?.parse().ok())
                .unwrap_or(0);
            if !tally
                .borrow_mut()
                .count(window, t.starts_with("{\"flow\""), lost)
            {
                break;
            }
        }
    } else {
        eprintln!("URL is grpc://HOST:PORT or ws://HOST:PORT");
        std::process::exit(2);
    }
}
