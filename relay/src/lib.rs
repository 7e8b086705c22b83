//! flowscope's relay: one cluster view over many observers, as Hubble Relay is.
//!
//! The relay finds its observers (`peers`), follows whether each answers, and serves the
//! observer's API for all of them at once, so `flowscope observe`, `status`, `list` and the web
//! UI work against it unchanged:
//! - `GET /api/v1/flows` (WebSocket): every connected observer's flows, merged in time order
//!   (`flows`, `merge`), with Hubble's `node_status` lines;
//! - `GET /api/v1/status`: flow counts summed over the connected nodes, uptime the longest,
//!   and Hubble's `num_connected_nodes`, `num_unavailable_nodes`, `unavailable_nodes`;
//! - `GET /api/v1/nodes`: each observer with its state (`flowscope list nodes`);
//! - `GET /api/v1/endpoints`, `/api/v1/graph`: the union of the observers' endpoints, and the
//!   service map of their flows;
//! - `/`, `/ui/*`: the web UI; `/healthz`, `/readyz`.
//!
//! Its own metrics (peers by state, flows forwarded, merge queue depth) are on a separate
//! listener (`metrics`).

mod api;
mod flows;
mod grpc;
mod http;
pub mod merge;
mod metrics;
pub mod peers;

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use flowscope_server::metrics::Prefix;
use tokio::sync::watch;
use tracing::info;

pub use peers::{Discovery, PeerPods, PeerSpec};

/// Hubble Relay's port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4245";
/// The relay's metrics port (Hubble Relay's Helm default).
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9966";

#[derive(Clone, Debug)]
pub struct RelayConfig {
    pub listen: SocketAddr,
    /// TLS on the API listener (`--tls-cert-file`, mutual with client CAs).
    pub tls: Option<flowscope_tls::ServerTls>,
    /// `--disable-server-tls`: plain text on a listen address that is not loopback.
    pub disable_server_tls: bool,
    /// TLS to the observers (`--observer-tls-*`), or plain text.
    pub observer_tls: Option<peers::ObserverTls>,
    pub discovery: Discovery,
    /// None: no metrics server.
    pub metrics_listen: Option<SocketAddr>,
    pub metrics_prefix: Prefix,
    /// Flow streams served at once at most.
    pub max_flow_requests: usize,
}

/// Flow streams a relay serves at once by default.
pub const DEFAULT_MAX_FLOW_REQUESTS: usize = 256;

/// What the handlers share.
pub struct RelayState {
    pub pool: Arc<peers::Pool>,
    pub metrics: metrics::RelayMetrics,
    pub started: std::time::Instant,
    pub max_requests: usize,
    pub shutdown: watch::Receiver<bool>,
}

/// Runs the relay until `shutdown` completes.
pub async fn run(
    config: RelayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let tls = flowscope_server::listen::tls(
        "relay",
        config.listen,
        config.tls.as_ref(),
        config.disable_server_tls,
    )?;
    let listener = flowscope_server::listen::bind("the API", config.listen, "--listen").await?;
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(flowscope_server::metrics::bind(addr).await?),
        None => None,
    };
    let pool = Arc::new(peers::Pool::new(config.observer_tls.clone()));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (registry, metrics) = metrics::register(&config.metrics_prefix, pool.clone());
    let state = Arc::new(RelayState {
        pool: pool.clone(),
        metrics,
        started: std::time::Instant::now(),
        max_requests: config.max_flow_requests,
        shutdown: shutdown_rx.clone(),
    });
    let discovery = tokio::spawn(peers::discover(pool.clone(), config.discovery.clone()));
    let wait = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let metrics_task = metrics_listener.map(|l| {
        info!(
            listen = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            "Serving relay metrics"
        );
        let exporter = flowscope_server::metrics::Exporter::from_registry(registry);
        tokio::spawn(flowscope_server::metrics::serve(
            l,
            exporter,
            wait(shutdown_rx.clone()),
        ))
    });
    info!(listen = %config.listen, tls = tls.is_some(), "Relay serving");
    let server = flowscope_server::listen::serve(
        listener,
        api::router(state),
        tls,
        wait(shutdown_rx.clone()),
    );
    let signal = tokio::spawn(async move {
        shutdown.await;
        let _ = shutdown_tx.send(true);
    });
    let served = server.await;
    signal.abort();
    discovery.abort();
    pool.stop();
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    served.context("serving the relay API")
}
