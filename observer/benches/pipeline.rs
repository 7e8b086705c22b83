//! Pipeline throughput: synthetic datapath events are decoded, stored and streamed to one
//! WebSocket subscriber over loopback, with the producer running flat out so the observer side
//! (one thread: pipeline + API server) is the bottleneck. Reports flows/s decoded and stored,
//! flows/s delivered, and checks that every flow was either delivered or reported lost.
//!
//! Run: `cargo bench -p flowscope-observer --bench pipeline -- [SECONDS] [RING] [BURST] [METRICS]`.
//! BURST (default 1) is how many batches the producer stores before letting the API task run:
//! above 1 it outruns the subscriber on purpose, and the losses must all be reported.
//! METRICS is `compare` (default: rounds with flow metrics off and on, alternating, then the
//! ratio of the median rates), `off`, `on` (the comparison's configuration), `export` (no
//! metrics, the flow exporter writing every flow to a temporary file), or a `--metrics`
//! configuration of its own. With metrics on, another thread scrapes them once a second.

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use flowscope_observer::{
    api,
    metrics::{self, Format, MetricsConfig, Prefix},
    pipeline::{FlowStore, Pipeline, PipelineCounters},
};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;

mod support;
use support::{BATCH, event};

/// Rounds of each setting in `compare` mode.
const ROUNDS: usize = 3;
/// Pod-level context on most families: with the bench's 11,000 or so source pods, families
/// reach the series limit and refuse, the most expensive regime.
const METRICS_HEAVY: &str = "flow:sourceContext=pod;destinationContext=pod,\
    drop:sourceContext=pod,tcp:sourceContext=pod;labelsContext=source_ip,\
    port-distribution:sourceContext=pod,icmp,policy";
/// Every family, with endpoint context labels where they cost the most (pods and namespaces).
const METRICS_ON: &str = "flow:sourceContext=namespace;destinationContext=namespace,\
    drop:sourceContext=namespace;destinationContext=namespace,tcp,port-distribution,icmp,\
    policy:sourceContext=pod;destinationContext=pod,dns:query;ignoreAAAA,\
    httpV2:sourceContext=workload-name|pod;destinationContext=namespace;\
    labelsContext=source_namespace,destination_namespace";

// The same allocator as the `flowscope` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let capacity: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(4095);
    let burst: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let mode = args.next().unwrap_or_else(|| "compare".into());
    let config = |text: &str| {
        MetricsConfig::parse(text).unwrap_or_else(|e| {
            eprintln!("METRICS: {e}");
            std::process::exit(2)
        })
    };
    match mode.as_str() {
        "off" => {
            run(seconds, capacity, burst, None, None);
        }
        "export" => {
            // The exporter follows the store on its own thread, writing every flow to a file
            // rotated at 10 MB (5 backups), beside the WebSocket subscriber.
            let dir =
                std::env::temp_dir().join(format!("flowscope-bench-export-{}", std::process::id()));
            let cfg = flowscope_observer::export::ExportConfig {
                path: dir.join("flows.log"),
                max_size_bytes: 10 * 1024 * 1024,
                max_backups: 5,
                filters: Default::default(),
                mask: None,
            };
            run(seconds, capacity, burst, None, Some(cfg));
            let _ = std::fs::remove_dir_all(&dir);
        }
        "on" => {
            run(seconds, capacity, burst, Some(config(METRICS_ON)), None);
        }
        "compare" => {
            let settings = [
                ("off", None),
                ("on", Some(config(METRICS_ON))),
                ("heavy", Some(config(METRICS_HEAVY))),
            ];
            let mut rates = vec![Vec::new(); settings.len()];
            for round in 1..=ROUNDS {
                for ((name, config), rates) in settings.iter().zip(rates.iter_mut()) {
                    match config {
                        Some(c) => println!("--- round {round}: metrics {name} ({c})"),
                        None => println!("--- round {round}: metrics {name}"),
                    }
                    rates.push(run(seconds, capacity, burst, config.clone(), None));
                }
            }
            let medians: Vec<f64> = rates
                .into_iter()
                .map(|mut v| {
                    v.sort_by(f64::total_cmp);
                    v[v.len() / 2]
                })
                .collect();
            let off = medians[0];
            println!("median of {ROUNDS} rounds, flows decoded and stored per second:");
            for ((name, _), rate) in settings.iter().zip(&medians) {
                println!(
                    "  metrics {name:<5} {rate:>9.0} flows/s  ratio {:.3}x  ({:+.0} ns per flow)",
                    rate / off,
                    1e9 / rate - 1e9 / off
                );
            }
            println!("target: ratio >= 0.9x with metrics on");
        }
        text => {
            run(seconds, capacity, burst, Some(config(text)), None);
        }
    }
}

/// One run; returns the flows decoded and stored per second.
fn run(
    seconds: u64,
    capacity: usize,
    burst: usize,
    metrics: Option<MetricsConfig>,
    export: Option<flowscope_observer::export::ExportConfig>,
) -> f64 {
    let store = Arc::new(FlowStore::new(capacity).expect("capacity"));
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let state = support::state(store.clone(), shutdown_rx);
    let status = state.clone();
    let flow_export = export.map(|cfg| {
        flowscope_observer::export::open(cfg)
            .expect("export file")
            .start(store.clone(), state.clone())
            .expect("exporter thread")
    });
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    listener.set_nonblocking(true).expect("nonblocking");
    let (exporter, recorder) = match &metrics {
        Some(config) => {
            let (e, r) = metrics::setup(&Prefix::default(), Some(config), None);
            (Some(e), Some(r))
        }
        None => (None, None),
    };
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A Prometheus that scrapes once a second, far more often than usual.
    let scraper = exporter.clone().map(|exporter| {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut bytes = 0;
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                bytes = exporter.render(Format::Text).expect("render").len();
            }
            bytes
        })
    });

    // The observer side: one thread, one core.
    let st = state.clone();
    let observer = std::thread::Builder::new()
        .name("observer".into())
        .spawn(move || {
            support::runtime().block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                tokio::spawn(async move {
                    let _ = axum::serve(listener, api::router(st)).await;
                });
                // Wait for the subscriber before producing.
                while state.subscribers.load(Ordering::Relaxed) == 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let counters = Arc::new(PipelineCounters::default());
                let mut pipeline = Pipeline::new(support::decoder(), store.clone(), counters);
                if let Some(r) = recorder {
                    pipeline.set_metrics(r);
                }
                let mut batch = Vec::with_capacity(BATCH);
                let start = Instant::now();
                let mut produced = 0u64;
                while start.elapsed() < Duration::from_secs(seconds) {
                    for _ in 0..burst {
                        batch.clear();
                        batch.extend((0..BATCH as u64).map(|i| event(produced + i)));
                        pipeline.process(&batch);
                        produced += BATCH as u64;
                    }
                    // Let the API task run: producer and subscriber share this one thread.
                    tokio::task::yield_now().await;
                }
                let elapsed = start.elapsed();
                let series = pipeline.metrics_mut().map_or(0, |m| m.series());
                (produced, elapsed, series)
            })
        })
        .expect("spawn");

    // The subscriber: another thread, counting flows and lost events.
    let client = std::thread::Builder::new()
        .name("client".into())
        .spawn(move || {
            support::runtime().block_on(async move {
                let (mut ws, _) =
                    tokio_tungstenite::connect_async(format!("ws://{addr}/api/v1/flows"))
                        .await
                        .expect("connect");
                ws.send(Message::Text(r#"{"follow":true}"#.into()))
                    .await
                    .expect("send");
                let (mut flows, mut lost, mut lost_msgs) = (0u64, 0u64, 0u64);
                let mut first: Option<Instant> = None;
                let mut last = Instant::now();
                while let Ok(Some(Ok(msg))) =
                    tokio::time::timeout(Duration::from_secs(2), ws.next()).await
                {
                    let Message::Text(t) = msg else { continue };
                    first.get_or_insert_with(Instant::now);
                    last = Instant::now();
                    if t.starts_with("{\"flow\"") {
                        flows += 1;
                    } else if let Some(i) = t.find("\"num_events_lost\":\"") {
                        let rest = &t[i + 19..];
                        lost += rest[..rest.find('"').unwrap_or(0)]
                            .parse::<u64>()
                            .unwrap_or(0);
                        lost_msgs += 1;
                    }
                }
                let span = first.map(|f| last - f).unwrap_or_default();
                (flows, lost, lost_msgs, span)
            })
        })
        .expect("spawn");

    let (produced, elapsed, series) = observer.join().expect("observer thread");
    let (flows, lost, lost_msgs, span) = client.join().expect("client thread");
    done.store(true, Ordering::Relaxed);
    if let Some(t) = flow_export {
        let _ = shutdown_tx.send(true);
        t.join().expect("exporter thread");
        let e = status
            .runtime
            .lock()
            .expect("status")
            .export
            .clone()
            .unwrap_or_default();
        println!(
            "exported                 {} flows ({:.0} flows/s), lost {}, {} rotations, {} write errors; \
             accounted {} of {produced}",
            e.flows,
            e.flows as f64 / elapsed.as_secs_f64(),
            e.lost,
            e.rotations,
            e.write_errors,
            e.flows + e.lost + e.write_errors
        );
        if e.flows + e.lost + e.write_errors != produced {
            println!("export accounting MISMATCH");
            std::process::exit(1);
        }
    }
    if let Some(bytes) = scraper.map(|s| s.join().expect("scraper thread")) {
        println!("metrics                  {series} series, a scrape is {bytes} bytes");
    }
    let rate = produced as f64 / elapsed.as_secs_f64();
    println!("ring capacity            {capacity}, producer burst {burst} x {BATCH} events");
    println!(
        "flows decoded and stored {produced} in {elapsed:.2?} = {rate:.0} flows/s (one thread)"
    );
    println!(
        "flows delivered          {flows} = {:.0} flows/s over the WebSocket",
        flows as f64 / span.as_secs_f64().max(1e-9)
    );
    println!("lost (reported)          {lost} in {lost_msgs} lost events");
    // Accounting: every flow is delivered or reported lost; the subscriber started at the
    // first flow, so nothing may be missing.
    let accounted = flows + lost;
    println!(
        "accounted                {accounted} of {produced} ({})",
        if accounted == produced {
            "all"
        } else {
            "MISMATCH"
        }
    );
    if accounted != produced {
        std::process::exit(1);
    }
    rate
}
