//! The observer's own health, always served: read at scrape time from what the observer keeps
//! anyway (pipeline counters, datapath statistics, store, subscribers, policy status), so
//! nothing is counted twice. Also Hubble's `lost_events_total`, which adds the subscribers'
//! own losses to the lost-event records the pipeline counted.

use std::{
    fmt,
    sync::{Arc, atomic::Ordering},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
};

use super::flows::LostCounters;
use crate::{api::AppState, pipeline::PipelineCounters};

/// Where the health metrics come from.
#[derive(Clone)]
pub struct Health {
    pub state: Arc<AppState>,
    pub counters: Arc<PipelineCounters>,
}

impl fmt::Debug for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Health").finish_non_exhaustive()
    }
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(m)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> fmt::Result {
    let m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(m)
}

fn gauge_f64(e: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> fmt::Result {
    let m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(m)
}

impl Collector for Health {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let c = &self.counters;
        let st = &self.state;
        counter(
            &mut e,
            "observer_events_decoded",
            "Datapath events read from the ring buffer and decoded",
            c.events_decoded.load(Ordering::Relaxed),
        )?;
        counter(
            &mut e,
            "observer_events_malformed",
            "Ring buffer records of an unexpected size, skipped (a kernel/userspace mismatch)",
            c.malformed.load(Ordering::Relaxed),
        )?;

        let s = st.store.status();
        gauge(
            &mut e,
            "observer_flows",
            "Flows in the flow store",
            s.len as i64,
        )?;
        gauge(
            &mut e,
            "observer_flows_capacity",
            "Flows the flow store holds (--max-flows)",
            s.capacity as i64,
        )?;
        counter(
            &mut e,
            "observer_flows_stored",
            "Flows and lost-event records written to the flow store",
            s.total_written,
        )?;
        let window = match (s.oldest_time_ns, s.newest_time_ns) {
            (Some(old), Some(new)) => (new - old).max(0) as f64 / 1e9,
            _ => 0.0,
        };
        gauge_f64(
            &mut e,
            "observer_flows_window_seconds",
            "Time between the oldest and the newest flow in the store: how far back requests can see",
            window,
        )?;
        gauge(
            &mut e,
            "observer_subscribers",
            "Flow streams being served",
            st.subscribers.load(Ordering::Relaxed) as i64,
        )?;

        // Copied out under the lock; encoded after it is released.
        let (dp, interfaces, endpoints, policy, export, proxy) = match st.runtime.lock() {
            Ok(rt) => (
                rt.datapath.clone(),
                rt.interfaces.len(),
                rt.registry.len(),
                rt.policy.as_ref().map(|p| {
                    (
                        p.revision,
                        p.errors.len(),
                        p.policies,
                        p.entries,
                        p.enforced_endpoints,
                    )
                }),
                rt.export.clone(),
                rt.proxy_stats.as_ref().map(|p| p.status()),
            ),
            Err(_) => return Ok(()),
        };
        gauge(
            &mut e,
            "datapath_interfaces",
            "Interfaces the datapath programs are attached to (ingress and egress each)",
            interfaces as i64,
        )?;
        for (name, help, value) in [
            (
                "datapath_packets",
                "Packets seen by the datapath",
                dp.packets,
            ),
            (
                "datapath_events",
                "Events the datapath wrote to the ring buffer",
                dp.events,
            ),
            (
                "datapath_events_lost",
                "Events the datapath could not write because the ring buffer was full",
                dp.events_lost,
            ),
            (
                "datapath_truncated_packets",
                "Packets too short for their headers, passed untouched",
                dp.truncated_packets,
            ),
            (
                "datapath_non_ip_packets",
                "Packets that are not IPv4 or IPv6, passed untouched",
                dp.non_ip_packets,
            ),
            (
                "datapath_fragments",
                "IP fragments after the first, tracked by addresses only",
                dp.fragments,
            ),
            (
                "datapath_dropped_packets",
                "Packets dropped by the datapath",
                dp.dropped_packets,
            ),
            (
                "datapath_conntrack_created",
                "Connection tracking entries created",
                dp.connections_created,
            ),
            (
                "datapath_conntrack_full",
                "Connection tracking inserts that failed",
                dp.conntrack_full,
            ),
            (
                "datapath_proxy_redirects",
                "New TCP connections the datapath handed to the L7 proxy",
                dp.proxy_redirects,
            ),
            (
                "datapath_proxy_failures",
                "New TCP connections that needed the L7 proxy and were dropped (no listener, \
                 failed assignment, or reaching their endpoint without passing the proxy)",
                dp.proxy_failures,
            ),
        ] {
            counter(&mut e, name, help, value)?;
        }
        gauge(
            &mut e,
            "endpoints",
            "Endpoints (pods) the observer knows",
            endpoints as i64,
        )?;
        let (revision, errors, policies, entries, enforced) = policy.unwrap_or_default();
        gauge(
            &mut e,
            "policy_revision",
            "Revision of the installed policy set (0: none installed)",
            revision as i64,
        )?;
        gauge(
            &mut e,
            "policy_errors",
            "Errors of the last policy load (manifests skipped, or a set that was not installed)",
            errors as i64,
        )?;
        gauge(
            &mut e,
            "policies",
            "Policies in the installed set",
            policies as i64,
        )?;
        gauge(
            &mut e,
            "policy_entries",
            "Policy map entries installed in the datapath",
            entries as i64,
        )?;
        gauge(
            &mut e,
            "policy_enforced_endpoints",
            "Endpoints with a policy-isolated direction",
            enforced as i64,
        )?;
        // Only when the L7 proxy runs (with policies).
        if let Some(p) = proxy {
            gauge(
                &mut e,
                "proxy_connections",
                "Connections the L7 proxy serves now",
                p.connections_active as i64,
            )?;
            gauge(
                &mut e,
                "proxy_max_connections",
                "Connections the L7 proxy serves at most (--proxy-max-connections)",
                p.max_connections as i64,
            )?;
            for (name, help, value) in [
                (
                    "proxy_connections_accepted",
                    "Connections the L7 proxy accepted",
                    p.connections_total,
                ),
                (
                    "proxy_connections_refused",
                    "Connections the L7 proxy refused at its connection limit",
                    p.connections_refused,
                ),
                (
                    "proxy_connections_reset",
                    "Proxied connections reset because the policy no longer admits them",
                    p.connections_reset,
                ),
                (
                    "proxy_requests_malformed",
                    "Requests the L7 proxy could not parse (answered 400/431) or whose head \
                     did not arrive in time",
                    p.requests_malformed,
                ),
                (
                    "proxy_upstream_errors",
                    "Allowed requests whose server could not be reached (answered 503)",
                    p.upstream_errors,
                ),
                (
                    "proxy_header_mismatches_logged",
                    "headerMatches with the LOG action that did not match",
                    p.header_mismatches_logged,
                ),
                (
                    "proxy_flows_lost",
                    "L7 flows of the proxy dropped because the pipeline's queue was full",
                    p.flows_lost,
                ),
            ] {
                counter(&mut e, name, help, value)?;
            }
            let m = e.encode_descriptor(
                "proxy_requests",
                "Requests the L7 proxy judged, by verdict",
                None,
                MetricType::Counter,
            )?;
            let mut m = m;
            for (verdict, value) in [
                ("forwarded", p.requests_forwarded),
                ("dropped", p.requests_denied),
                ("audit", p.requests_audited),
            ] {
                ConstCounter::new(value).encode(m.encode_family(&[("verdict", verdict)])?)?;
            }
        }
        // Only with --export-file.
        if let Some(x) = export {
            counter(
                &mut e,
                "export_flows",
                "Flows the exporter wrote to its file (--export-file)",
                x.flows,
            )?;
            counter(
                &mut e,
                "export_lost",
                "Flows the flow store overwrote before the exporter read them",
                x.lost,
            )?;
            counter(
                &mut e,
                "export_write_errors",
                "Flows dropped because writing the export file failed",
                x.write_errors,
            )?;
            counter(
                &mut e,
                "export_rotations",
                "Times the export file was rotated",
                x.rotations,
            )?;
        }
        Ok(())
    }
}

/// Hubble's `lost_events_total{source}`.
#[derive(Clone)]
pub(crate) struct LostEvents {
    pub counters: LostCounters,
    /// Readers overtaken by the writer count their losses here.
    pub state: Option<Arc<AppState>>,
}

impl fmt::Debug for LostEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LostEvents").finish_non_exhaustive()
    }
}

impl Collector for LostEvents {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let subscribers = self
            .state
            .as_ref()
            .map_or(0, |s| s.ring_lost.load(Ordering::Relaxed));
        let c = &self.counters;
        let mut m = e.encode_descriptor(
            "lost_events",
            "Number of lost events",
            None,
            MetricType::Counter,
        )?;
        for (source, value) in [
            ("perf_event_ring_buffer", c.perf_ring_buffer.get()),
            ("observer_events_queue", c.events_queue.get()),
            (
                "hubble_ring_buffer",
                c.hubble_ring_buffer.get() + subscribers,
            ),
        ] {
            let labels = [("source", source)];
            ConstCounter::new(value).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
