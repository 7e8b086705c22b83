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

use flowscope_server::metrics::Prefix;
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

/// gRPC's connectivity states, as Hubble Relay labels its peers; the relay's peers are only
/// ever `READY`, `CONNECTING` or `TRANSIENT_FAILURE` ([`crate::peers::Peer::connection_status`]).
const CONNECTION_STATES: [&str; 6] = [
    "CONNECTING",
    "IDLE",
    "NIL_CONNECTION",
    "READY",
    "SHUTDOWN",
    "TRANSIENT_FAILURE",
];

/// One gauge family with a single label: `name{label="value"} n` for each pair.
fn gauge_family<'a>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (&'a str, i64)>,
) -> fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (value, n) in values {
        ConstGauge::new(n).encode(m.encode_family(&[(label, value)])?)?;
    }
    Ok(())
}

impl Collector for PeerCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        // (node, address, connection status), read once per scrape.
        let peers: Vec<(String, String, &str)> = self
            .0
            .peers()
            .iter()
            .map(|p| (p.name(), p.address.clone(), p.connection_status()))
            .collect();
        let count = |status: &str| peers.iter().filter(|p| p.2 == status).count() as i64;
        let connected = count("READY");
        gauge_family(
            &mut e,
            "relay_peers",
            "Observers the relay follows, by state",
            "state",
            [
                ("connected", connected),
                ("unavailable", peers.len() as i64 - connected),
            ],
        )?;
        let mut m = e.encode_descriptor(
            "relay_peer_up",
            "1 when the observer answers, 0 when it is unavailable",
            None,
            MetricType::Gauge,
        )?;
        for (node, address, status) in &peers {
            let labels = [("node", node.as_str()), ("address", address.as_str())];
            ConstGauge::new(i64::from(*status == "READY")).encode(m.encode_family(&labels)?)?;
        }
        gauge_family(
            &mut e,
            "relay_pool_peer_connection_status",
            "Observers by connection state, as Hubble Relay reports its peers",
            "status",
            CONNECTION_STATES.map(|status| (status, count(status))),
        )
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
