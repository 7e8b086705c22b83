//! The relay's own metrics, under the same prefix as the observers' (`flowscope_` or
//! `hubble_`):
//! - `relay_peers{state}`: observers connected and unavailable, and `relay_peer_up{node,
//!   address}` per observer (bounded by the peers the relay follows, [`crate::peers::MAX_PEERS`]);
//! - `relay_pool_peer_connection_status{status}`: Hubble Relay's own family, peers by gRPC
//!   connectivity state (`READY`, `CONNECTING`, `TRANSIENT_FAILURE`; `IDLE`, `SHUTDOWN` and
//!   `NIL_CONNECTION` are always 0 here), so Hubble Relay's alerts read the same;
//! - `relay_flows_forwarded_total`: flows sent to clients;
//! - `relay_merge_queue_depth`: flows held in the requests' merge buffers now;
//! - `relay_flow_requests`: flow streams being served; `relay_peer_stream_errors_total`:
//!   observer streams that failed mid-request; `relay_flow_requests_refused_total`: streams
//!   refused over `--max-flow-requests`.
//!
//! Peer states are read from the pool when scraped; the others are atomics the flow streams
//! update once per batch.

use std::{fmt, sync::Arc};

use flowscope_observer::metrics::Prefix;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::Counter, gauge::ConstGauge, gauge::Gauge, info::Info},
    registry::Registry,
};

use crate::peers::Pool;

#[derive(Clone, Debug, Default)]
pub struct RelayMetrics {
    pub flows_forwarded: Counter,
    pub merge_queue: Gauge,
    pub requests: Gauge,
    pub requests_refused: Counter,
    pub peer_stream_errors: Counter,
}

struct PeerCollector(Arc<Pool>);

impl fmt::Debug for PeerCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerCollector").finish_non_exhaustive()
    }
}

impl Collector for PeerCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let peers: Vec<(String, String, bool, &str)> = self
            .0
            .peers()
            .iter()
            .map(|p| {
                let status = p.connection_status();
                (p.name(), p.address.clone(), status == "READY", status)
            })
            .collect();
        let connected = peers.iter().filter(|p| p.2).count() as i64;
        let mut m = e.encode_descriptor(
            "relay_peers",
            "Observers the relay follows, by state",
            None,
            MetricType::Gauge,
        )?;
        for (state, n) in [
            ("connected", connected),
            ("unavailable", peers.len() as i64 - connected),
        ] {
            ConstGauge::new(n).encode(m.encode_family(&[("state", state)])?)?;
        }
        let mut m = e.encode_descriptor(
            "relay_peer_up",
            "1 when the observer answers, 0 when it is unavailable",
            None,
            MetricType::Gauge,
        )?;
        for (node, address, up, _) in &peers {
            let labels = [("node", node.as_str()), ("address", address.as_str())];
            ConstGauge::new(i64::from(*up)).encode(m.encode_family(&labels)?)?;
        }
        let mut m = e.encode_descriptor(
            "relay_pool_peer_connection_status",
            "Observers by connection state, as Hubble Relay reports its peers",
            None,
            MetricType::Gauge,
        )?;
        for status in [
            "CONNECTING",
            "IDLE",
            "NIL_CONNECTION",
            "READY",
            "SHUTDOWN",
            "TRANSIENT_FAILURE",
        ] {
            let n = peers.iter().filter(|p| p.3 == status).count() as i64;
            ConstGauge::new(n).encode(m.encode_family(&[("status", status)])?)?;
        }
        Ok(())
    }
}

/// The registry `/metrics` serves, and the handles the flow streams update.
pub fn register(prefix: &Prefix, pool: Arc<Pool>) -> (Registry, RelayMetrics) {
    let mut registry = Registry::with_prefix(prefix.as_str());
    let m = RelayMetrics::default();
    registry.register(
        "relay_flows_forwarded",
        "Flows the relay sent to its clients",
        m.flows_forwarded.clone(),
    );
    registry.register(
        "relay_merge_queue_depth",
        "Flows held in the merge buffers of the streams being served",
        m.merge_queue.clone(),
    );
    registry.register(
        "relay_flow_requests",
        "Flow streams being served",
        m.requests.clone(),
    );
    registry.register(
        "relay_flow_requests_refused",
        "Flow streams refused because --max-flow-requests were being served",
        m.requests_refused.clone(),
    );
    registry.register(
        "relay_peer_stream_errors",
        "Observer flow streams that failed while serving a request",
        m.peer_stream_errors.clone(),
    );
    registry.register_collector(Box::new(PeerCollector(pool)));
    registry.register(
        "relay_build",
        "The relay's version",
        Info::new([("version", env!("CARGO_PKG_VERSION"))]),
    );
    (registry, m)
}
