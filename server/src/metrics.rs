//! The metrics listener observer and relay share: `GET /metrics` on its own port, in the
//! Prometheus text format or OpenMetrics when the scrape's `Accept` header prefers it, and the
//! prefix every metric name starts with.

use std::{fmt, future::Future, net::SocketAddr, str::FromStr, sync::Arc};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::{
    encoding::{prometheus_text, text},
    registry::Registry,
};
use tokio::net::TcpListener;

/// Metric names start with this unless `--metrics-prefix` says otherwise.
pub const DEFAULT_PREFIX: &str = "flowscope";

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

pub use crate::listen::BindError;

/// Opens the metrics port.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    crate::listen::bind("metrics", addr, "--metrics-listen").await
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

/// The first part of every metric name (`flowscope_flows_processed_total`); `hubble` makes the
/// names Hubble's, so its dashboards work unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefix(String);

impl Prefix {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Prefix {
    fn default() -> Self {
        Prefix(DEFAULT_PREFIX.to_string())
    }
}

impl FromStr for Prefix {
    type Err = InvalidPrefix;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut chars = s.chars();
        let valid = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if valid {
            Ok(Prefix(s.to_string()))
        } else {
            Err(InvalidPrefix(s.to_string()))
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A `--metrics-prefix` that cannot start a metric name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "metric prefix `{0}`: use ASCII letters, digits and `_`, not starting with a digit \
     (e.g. `flowscope`, or `hubble` for Hubble's dashboards)"
)]
pub struct InvalidPrefix(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_must_be_a_metric_name_start() {
        assert_eq!(Prefix::default().as_str(), "flowscope");
        assert_eq!("hubble".parse::<Prefix>().unwrap().as_str(), "hubble");
        assert_eq!("_x1".parse::<Prefix>().unwrap().as_str(), "_x1");
        for bad in ["", "1x", "hub-ble", "hübble", "a b"] {
            let e = bad.parse::<Prefix>().unwrap_err();
            assert!(e.to_string().contains("hubble"), "{e}");
        }
    }
}
