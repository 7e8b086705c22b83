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

use std::sync::Arc;

use prometheus_client::{metrics::info::Info, registry::Registry};

pub use config::{
    ConfigError, ContextIdentifier, ContextLabel, ContextOptions, DEFAULT_EXPIRY_GRACE,
    DEFAULT_SERIES_LIMIT, MetricKind, MetricSpec, MetricsConfig,
};
// The listener, formats and prefix are the server kit's, shared with the relay.
pub use flows::{DnsRecord, FlowMetrics, HttpRecord};
pub use flowscope_server::metrics::{
    BindError, DEFAULT_PREFIX, Exporter, Format, InvalidPrefix, OPENMETRICS_CONTENT_TYPE, Prefix,
    TEXT_CONTENT_TYPE, bind, router, serve,
};
pub use health::Health;

/// Hubble's metrics port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9965";

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
    (Exporter::from_registry(registry), recorder)
}

#[cfg(test)]
mod tests;
