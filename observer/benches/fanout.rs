//! Fan-out over both encodings: one observer thread (pipeline and API server, as in the
//! pipeline bench) decodes and stores flows flat out while N subscribers follow them over the
//! WebSocket, or over gRPC, or N of each at once, the way `hubble observe -f` and the web UI do.
//! A flow's JSON line and its gRPC message are each made once and shared by every subscriber of
//! that encoding. The subscribers run on a second thread and only count what they receive (the
//! gRPC ones read a response's envelope and lost events, not the flow).
//!
//! Run: `cargo bench -p flowscope-observer --bench fanout -- [SECONDS] [RING] [N ...]`
//! (defaults 5 s, 65,535 flows, N = 1 and 64). Each setting runs ROUNDS times, in turn;
//! printed are the medians. Every subscriber must account for every flow (delivered or
//! reported lost), or the bench exits 1.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use flowscope_observer::{
    api,
    pipeline::{FlowStore, Pipeline, PipelineCounters},
};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;

mod support;
use support::{BATCH, event};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROUNDS: usize = 3;
/// A subscriber is done when nothing has come for this long after the producer stopped.
const IDLE: Duration = Duration::from_secs(2);

/// What one subscriber received.
#[derive(Clone, Copy, Default)]
struct Received {
    flows: u64,
    lost: u64,
    /// From its first message to its last.
    span: Duration,
}

impl Received {
    fn rate(&self) -> f64 {
        self.flows as f64 / self.span.as_secs_f64().max(1e-9)
    }
}

struct Round {
    /// Flows decoded and stored per second, on the thread that also serves the subscribers.
    produced_rate: f64,
    produced: u64,
    websocket: Vec<Received>,
    grpc: Vec<Received>,
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let capacity: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(65_535);
    let mut counts: Vec<usize> = args.filter_map(|s| s.parse().ok()).collect();
    if counts.is_empty() {
        counts = vec![1, 64];
    }
    // (WebSocket subscribers, gRPC subscribers) of each setting.
    let settings: Vec<(usize, usize)> = counts
        .iter()
        .flat_map(|&n| [(n, 0), (0, n), (n, n)])
        .collect();
    let mut rounds: Vec<Vec<Round>> = settings.iter().map(|_| Vec::new()).collect();
    let mut mismatch = false;
    for round in 1..=ROUNDS {
        for (&(ws, grpc), results) in settings.iter().zip(rounds.iter_mut()) {
            println!("--- round {round}: {ws} WebSocket + {grpc} gRPC subscribers");
            let r = run(seconds, capacity, ws, grpc);
            mismatch |= report(&r);
            results.push(r);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "median of {ROUNDS} rounds ({seconds} s each, ring {capacity}; per subscriber: the median subscriber's rate):"
    );
    for (&(ws_n, grpc_n), results) in settings.iter().zip(&rounds) {
        let produced = median(results.iter().map(|r| r.produced_rate).collect());
        // The median subscriber's rate, and the share of flows it missed.
        let per = |pick: fn(&Round) -> &Vec<Received>| {
            if pick(&results[0]).is_empty() {
                return String::new();
            }
            let rate = median(
                results
                    .iter()
                    .map(|r| median(pick(r).iter().map(Received::rate).collect()))
                    .collect(),
            );
            let lost = median(
                results
                    .iter()
                    .map(|r| {
                        median(
                            pick(r)
                                .iter()
                                .map(|s| s.lost as f64 / r.produced.max(1) as f64)
                                .collect(),
                        )
                    })
                    .collect(),
            );
            format!("{rate:>8.0} flows/s ({:.1}% lost)", lost * 100.0)
        };
        println!(
            "  {ws_n:>3} WebSocket + {grpc_n:>3} gRPC: stored {produced:>8.0} flows/s; \
             per subscriber: WebSocket {:<28} gRPC {}",
            per(|r| &r.websocket),
            per(|r| &r.grpc),
        );
    }
    if mismatch {
        println!("a subscriber's flows and reported losses do not add up to the flows stored");
        std::process::exit(1);
    }
}

/// Prints one round; returns true when a subscriber's accounting does not add up.
fn report(r: &Round) -> bool {
    let mut mismatch = false;
    for (name, subscribers) in [("WebSocket", &r.websocket), ("gRPC", &r.grpc)] {
        if subscribers.is_empty() {
            continue;
        }
        let flows: u64 = subscribers.iter().map(|s| s.flows).sum();
        let lost: u64 = subscribers.iter().map(|s| s.lost).sum();
        let bad = subscribers
            .iter()
            .filter(|s| s.flows + s.lost != r.produced)
            .count();
        mismatch |= bad > 0;
        println!(
            "  {name:<9} {} subscribers: {flows} flows delivered, {lost} reported lost; {}",
            subscribers.len(),
            if bad == 0 {
                "each accounts for every flow stored".to_string()
            } else {
                format!("{bad} do NOT account for every flow stored")
            }
        );
    }
    println!(
        "  stored    {} flows = {:.0} flows/s",
        r.produced, r.produced_rate
    );
    mismatch
}

fn run(seconds: u64, capacity: usize, ws_n: usize, grpc_n: usize) -> Round {
    let store = Arc::new(FlowStore::new(capacity).expect("capacity"));
    let (_shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let state = support::state(store.clone(), shutdown_rx);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    listener.set_nonblocking(true).expect("nonblocking");
    let clients_done = Arc::new(AtomicBool::new(false));

    let done = clients_done.clone();
    let observer = std::thread::Builder::new()
        .name("observer".into())
        .spawn(move || {
            support::runtime().block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = api::router(state.clone());
                tokio::spawn(async move {
                    let _ = axum::serve(listener, app).await;
                });
                while state.subscribers.load(Ordering::Relaxed) < (ws_n + grpc_n) as u64 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let counters = Arc::new(PipelineCounters::default());
                let mut pipeline = Pipeline::new(support::decoder(), store, counters);
                let mut batch = Vec::with_capacity(BATCH);
                let start = Instant::now();
                let mut produced = 0u64;
                while start.elapsed() < Duration::from_secs(seconds) {
                    batch.clear();
                    batch.extend((0..BATCH as u64).map(|i| event(produced + i)));
                    pipeline.process(&batch);
                    produced += BATCH as u64;
                    // Let the API's tasks run: they share this thread with the producer.
                    tokio::task::yield_now().await;
                }
                let elapsed = start.elapsed();
                // Serve what the subscribers have yet to read.
                while !done.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (produced, elapsed)
            })
        })
        .expect("spawn");

    let client = std::thread::Builder::new()
        .name("subscribers".into())
        .spawn(move || {
            support::runtime().block_on(async move {
                let ws: Vec<_> = (0..ws_n).map(|_| tokio::spawn(websocket(addr))).collect();
                let grpc: Vec<_> = (0..grpc_n).map(|_| tokio::spawn(grpc(addr))).collect();
                let mut out = (Vec::new(), Vec::new());
                for task in ws {
                    out.0.push(task.await.expect("WebSocket subscriber"));
                }
                for task in grpc {
                    out.1.push(task.await.expect("gRPC subscriber"));
                }
                out
            })
        })
        .expect("spawn");
    let (websocket, grpc) = client.join().expect("subscribers");
    clients_done.store(true, Ordering::Relaxed);
    let (produced, elapsed) = observer.join().expect("observer");
    Round {
        produced_rate: produced as f64 / elapsed.as_secs_f64(),
        produced,
        websocket,
        grpc,
    }
}

async fn websocket(addr: std::net::SocketAddr) -> Received {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/api/v1/flows"))
        .await
        .expect("connect");
    ws.send(Message::Text(r#"{"follow":true}"#.into()))
        .await
        .expect("send");
    let mut r = Received::default();
    let mut first = None;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(IDLE, ws.next()).await {
        let Message::Text(t) = msg else { continue };
        let first = *first.get_or_insert_with(Instant::now);
        r.span = first.elapsed();
        if t.starts_with("{\"flow\"") {
            r.flows += 1;
        } else if let Some(i) = t.find("\"num_events_lost\":\"") {
            let rest = &t[i + 19..];
            r.lost += rest[..rest.find('"').unwrap_or(0)]
                .parse::<u64>()
                .unwrap_or(0);
        }
    }
    r
}

async fn grpc(addr: std::net::SocketAddr) -> Received {
    let channel = flowscope_proto::client::connect(&addr.to_string(), None, IDLE)
        .await
        .expect("connect");
    let request = flowscope_proto::observer::GetFlowsRequest {
        follow: true,
        ..Default::default()
    };
    // Responses read no further than their head: the flow stays bytes.
    let mut stream = flowscope_proto::client::get_flows_encoded(channel, request)
        .await
        .expect("GetFlows");
    let mut r = Received::default();
    let mut first = None;
    while let Ok(Ok(Some(msg))) = tokio::time::timeout(IDLE, stream.message()).await {
        let first = *first.get_or_insert_with(Instant::now);
        r.span = first.elapsed();
        let head = msg.head().expect("GetFlowsResponse");
        if head.kind == flowscope_proto::Kind::Flow {
            r.flows += 1;
        }
        r.lost += head.lost;
    }
    r
}
