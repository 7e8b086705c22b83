//! Prometheus metrics, on their own listener (`GET /metrics`):
//! - Hubble's flow metrics (`flows_processed_total`, `drop_total`, `tcp_flags_total`,
//!   `port_distribution_total`, `icmp_total`, `policy_verdicts_total`, `dns_*`, `http_*`), as
//!   `--metrics` configures them in Hubble's syntax (`config`), with Hubble's names, labels and
//!   context labels (`context`, `labels`). The pipeline records them per batch in its writer
//!   (`flows`); each family is capped and forgets deleted pods (`family`).
//! - `lost_events_total` and the observer's own health, read when scraped (`health`).
//!
//! Names start with the prefix (`flowscope_` unless `--metrics-prefix hubble`, which makes them
//! Hubble's so its dashboards work unchanged). Scrapes get the Prometheus text format, or
//! OpenMetrics when their `Accept` header prefers it.

mod config;
mod context;
mod family;
mod flows;
mod health;
mod labels;

use std::{future::Future, net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::{
    encoding::{prometheus_text, text},
    metrics::info::Info,
    registry::Registry,
};
use tokio::net::TcpListener;

pub use config::{
    ConfigError, ContextIdentifier, ContextLabel, ContextOptions, DEFAULT_EXPIRY_GRACE,
    DEFAULT_PREFIX, DEFAULT_SERIES_LIMIT, MetricKind, MetricSpec, MetricsConfig, Prefix,
};
pub use flows::{DnsRecord, FlowMetrics, HttpRecord};
pub use health::Health;

/// Hubble's metrics port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9965";
/// `Content-Type` of the OpenMetrics text format.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// `Content-Type` of the Prometheus text format.
pub const TEXT_CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Everything `/metrics` serves.
#[derive(Debug)]
pub struct Exporter {
    registry: Registry,
}

/// Builds the registry: the families `config` enables (none without one), lost events, the
/// health collector when given, and build information. The returned recorder belongs in the
/// pipeline (`Pipeline::set_metrics`).
pub fn setup(
    prefix: &Prefix,
    config: Option<&MetricsConfig>,
    health: Option<Health>,
) -> (Arc<Exporter>, FlowMetrics) {
    let mut registry = Registry::with_prefix(prefix.as_str());
    let books = family::Bookkeeping::register(&mut registry);
    let recorder = FlowMetrics::register(&mut registry, config, &books);
    registry.register_collector(Box::new(health::LostEvents {
        counters: recorder.lost.clone(),
        state: health.as_ref().map(|h| h.state.clone()),
    }));
    if let Some(h) = health {
        registry.register_collector(Box::new(h));
    }
    registry.register(
        "build",
        "The observer's version",
        Info::new([("version", env!("CARGO_PKG_VERSION"))]),
    );
    (Arc::new(Exporter { registry }), recorder)
}

/// An exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text, version 0.0.4.
    Text,
    /// OpenMetrics text, version 1.0.0.
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }

    /// The format an `Accept` header prefers: OpenMetrics when it ranks at least as high as
    /// plain text (Prometheus asks for it first), else text, which is also the default.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let (mut openmetrics, mut text) = (0.0f32, 0.0f32);
        for range in accept.unwrap_or_default().split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .and_then(|(_, v)| v.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

impl Exporter {
    /// Serves another registry (the relay's) with the same formats and negotiation.
    pub fn from_registry(registry: Registry) -> Arc<Exporter> {
        Arc::new(Exporter { registry })
    }

    pub fn render(&self, format: Format) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        match format {
            Format::Text => prometheus_text::encode(&mut out, &self.registry)?,
            Format::OpenMetrics => text::encode(&mut out, &self.registry)?,
        }
        Ok(out)
    }
}

/// `GET /metrics`.
pub fn router(exporter: Arc<Exporter>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(exporter)
}

async fn scrape(State(exporter): State<Arc<Exporter>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    // Encoding thousands of series takes a while: off the async workers.
    let rendered = tokio::task::spawn_blocking(move || exporter.render(format)).await;
    match rendered {
        Ok(Ok(body)) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(format.content_type()),
                ),
                (header::VARY, HeaderValue::from_static("accept")),
            ],
            body,
        )
            .into_response(),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding the metrics failed",
        )
            .into_response(),
    }
}

/// The metrics port could not be opened.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen for metrics on {addr}: {source} (is another observer or Hubble using the \
     port? choose another address with --metrics-listen)"
)]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// Opens the metrics port.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })
}

/// Serves `/metrics` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    exporter: Arc<Exporter>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(exporter))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests;
