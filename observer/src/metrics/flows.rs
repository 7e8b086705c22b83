//! Recording flows into the metric families, in the pipeline's writer, once per batch.
//!
//! Per flow, only a compact signature is taken (the fields any enabled family reads, and the
//! endpoints when context labels need them) and counted in a batch-local map. Per distinct
//! signature in the batch, a cached plan (the counters that signature increments, found or
//! created once) is applied with the batch's count. So a flow costs one hash-map update; label
//! values are worked out, and series created, only the first time a signature is seen. No
//! flow is turned into a full Hubble flow for this.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use flowscope_common::{FAMILY_IPV4, tcp, verdict};
use flowscope_model::flow::{
    DropReason, Endpoint, TraceObservationPoint, TrafficDirection, Verdict,
};
use prometheus_client::{
    metrics::{counter::Counter, histogram::Histogram},
    registry::{Registry, Unit},
};

use super::{
    config::{MetricKind, MetricSpec, MetricsConfig},
    context::{Context, EndpointCache, Live, Value, View},
    family::{Bookkeeping, Capped, Descriptor, FixedLabels},
    labels::{
        DnsLabels, DnsTypeLabels, DropLabels, Event, FlowLabels, HttpDurationLabels, HttpLabels,
        IcmpLabels, Point, PolicyLabels, PortLabels, Protocol, Reporter, TcpLabels,
    },
};
use crate::{
    endpoints::Registry as Endpoints,
    event::Record,
    parse::{FlowRecord, IDENTITY_HOST},
};
use flowscope_model::flow::LostEventSource;

/// Plans kept before the cache starts over: distinct signatures are few (the fields are
/// low-cardinality) unless a context label takes addresses, where this bounds the memory.
const PLAN_CACHE_LIMIT: usize = 65_536;
/// Hubble's (and Prometheus' Go client's default) buckets for request durations, in seconds.
const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// DNS response codes as Hubble names them (`metrics/dns/rcode.go`); others are empty.
const RCODES: [(u32, &str); 20] = [
    (0, "No Error"),
    (1, "Format Error"),
    (2, "Server Failure"),
    (3, "Non-Existent Domain"),
    (4, "Not Implemented"),
    (5, "Query Refused"),
    (6, "Name Exists when it should not"),
    (7, "RR Set Exists when it should not"),
    (8, "RR Set that should exist does not"),
    (9, "Not Authorized"),
    (10, "Name not contained in zone"),
    (11, "DSO-TYPE Not Implemented"),
    (16, "Bad OPT Version"),
    (17, "Key not recognized"),
    (18, "Signature out of time window"),
    (19, "Bad TKEY Mode"),
    (20, "Duplicate key name"),
    (21, "Algorithm not supported"),
    (22, "Bad Truncation"),
    (23, "Bad/missing Server Cookie"),
];
/// Words that label values take often enough to be worth not allocating.
const COMMON_WORDS: [&str; 22] = [
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE", "HTTP/1.0",
    "HTTP/1.1", "HTTP/2", "HTTP/3", "A", "AAAA", "CNAME", "MX", "TXT", "SRV", "PTR", "NS", "SOA",
];

/// Losses by source, recorded from lost-event records; the scrape adds the subscribers' own.
#[derive(Clone, Debug, Default)]
pub(crate) struct LostCounters {
    pub perf_ring_buffer: Counter,
    pub events_queue: Counter,
    pub hubble_ring_buffer: Counter,
}

/// The L7 fields of a DNS flow (Hubble's `Layer7.dns`) that the `dns` metric reads.
#[derive(Clone, Copy, Debug)]
pub struct DnsRecord<'a> {
    pub query: &'a str,
    pub qtypes: &'a [String],
    pub rrtypes: &'a [String],
    pub rcode: u32,
    pub ips_returned: usize,
    /// A response (else a request).
    pub response: bool,
}

/// The L7 fields of an HTTP flow (Hubble's `Layer7.http`) that the `httpV2` metric reads.
#[derive(Clone, Copy, Debug)]
pub struct HttpRecord<'a> {
    pub method: &'a str,
    pub protocol: &'a str,
    pub code: u32,
    pub latency: Duration,
    /// A response (else a request, which `httpV2` does not count).
    pub response: bool,
}

/// Which signature fields the enabled families read; the rest stay zero, so flows that differ
/// only in them share a signature.
#[derive(Clone, Copy, Debug, Default)]
struct Needs {
    endpoints: bool,
    addresses: bool,
    ports: bool,
    tcp: bool,
    icmp: bool,
}

/// Everything the L3/L4 families' labels are computed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Signature {
    /// Endpoint addresses (`Arc::as_ptr`): which endpoint, for context labels.
    src: usize,
    dst: usize,
    saddr: [u8; 16],
    daddr: [u8; 16],
    dport: u16,
    tcp_flags: u16,
    event: Event,
    verdict: Verdict,
    direction: TrafficDirection,
    protocol: Protocol,
    ipv6: bool,
    drop_reason: u8,
    policy_match: u8,
    icmp_type: u8,
    icmp_code: u8,
    reply: Option<bool>,
    src_host: bool,
}

impl Signature {
    fn of(rec: &FlowRecord, needs: Needs) -> Self {
        let ev = &rec.ev;
        let protocol = Protocol::of(ev.proto);
        let verdict = rec.verdict();
        let reply = rec.is_reply();
        let policy = rec.is_policy_verdict();
        let event = if policy {
            Event::PolicyVerdict
        } else if ev.verdict == verdict::DROPPED {
            Event::Drop
        } else {
            Event::Trace(match rec.observation_point().0 {
                TraceObservationPoint::FromEndpoint => Point::FromEndpoint,
                TraceObservationPoint::ToEndpoint => Point::ToEndpoint,
                TraceObservationPoint::FromNetwork => Point::FromNetwork,
                _ => Point::ToNetwork,
            })
        };
        let counted_port = needs.ports
            && protocol.has_ports()
            && verdict == Verdict::Forwarded
            && reply != Some(true);
        let icmp = needs.icmp && protocol.is_icmp();
        let ptr = |ep: &Arc<Endpoint>| {
            if needs.endpoints {
                Arc::as_ptr(ep) as usize
            } else {
                0
            }
        };
        Signature {
            src: ptr(&rec.src),
            dst: ptr(&rec.dst),
            saddr: if needs.addresses { ev.saddr } else { [0; 16] },
            daddr: if needs.addresses { ev.daddr } else { [0; 16] },
            dport: if counted_port { ev.dport } else { 0 },
            tcp_flags: if needs.tcp && protocol == Protocol::Tcp {
                ev.tcp_flags & (tcp::FIN | tcp::SYN | tcp::RST | tcp::ACK)
            } else {
                0
            },
            event,
            verdict,
            direction: rec.traffic_direction(),
            protocol,
            ipv6: ev.family != FAMILY_IPV4,
            drop_reason: ev.drop_reason,
            policy_match: if policy { ev.policy_match } else { 0 },
            icmp_type: if icmp { ev.icmp_type } else { 0 },
            icmp_code: if icmp { ev.icmp_code } else { 0 },
            reply,
            src_host: rec.src.identity == IDENTITY_HOST,
        }
    }

    fn flow(&self) -> FlowLabels {
        FlowLabels {
            protocol: self.protocol,
            event: self.event,
            verdict: self.verdict,
        }
    }

    /// Hubble's drop handler, counting each dropped packet once: drop events only. (Hubble
    /// also counts the DROPPED policy-verdict event of the same packet, so its drop_total
    /// doubles with policy verdicts on; policy_verdicts_total counts those.)
    fn drop(&self) -> Option<DropLabels> {
        (self.verdict == Verdict::Dropped && self.event == Event::Drop).then(|| DropLabels {
            reason: DropReason::from_number(self.drop_reason as i32).unwrap_or_default(),
            protocol: self.protocol,
        })
    }

    /// Hubble's tcp handler: forwarded TCP flows, one count per flag (SYN with ACK is SYN-ACK).
    fn tcp(&self) -> impl Iterator<Item = TcpLabels> + '_ {
        let counted = self.verdict == Verdict::Forwarded && self.protocol == Protocol::Tcp;
        let f = if counted { self.tcp_flags } else { 0 };
        let syn = match (f & tcp::SYN != 0, f & tcp::ACK != 0) {
            (true, true) => Some("SYN-ACK"),
            (true, false) => Some("SYN"),
            _ => None,
        };
        [
            (f & tcp::FIN != 0).then_some("FIN"),
            syn,
            (f & tcp::RST != 0).then_some("RST"),
        ]
        .into_iter()
        .flatten()
        .map(|flag| TcpLabels {
            flag,
            ipv6: self.ipv6,
        })
    }

    /// Hubble's port-distribution handler: forwarded flows with L4 that are not known replies.
    fn port(&self) -> Option<PortLabels> {
        let counted = self.verdict == Verdict::Forwarded
            && self.protocol.has_l4()
            && self.reply != Some(true);
        counted.then(|| PortLabels {
            protocol: self.protocol,
            port: if self.protocol.has_ports() {
                self.dport
            } else {
                0
            },
        })
    }

    fn icmp(&self) -> Option<IcmpLabels> {
        self.protocol.is_icmp().then(|| IcmpLabels {
            ipv6: self.protocol == Protocol::IcmpV6,
            kind: self.icmp_type,
            code: self.icmp_code,
        })
    }

    /// Hubble's policy handler: policy-verdict events, except those from the host (which may
    /// reach every local endpoint).
    fn policy(&self) -> Option<PolicyLabels> {
        (self.event == Event::PolicyVerdict && !self.src_host).then_some(PolicyLabels {
            direction: self.direction,
            matched: self.policy_match,
            action: self.verdict,
        })
    }
}

/// The counters one signature increments (a refused series increments its family's refused
/// counter instead), and the endpoints its addresses point at, kept alive while it is cached.
struct Plan {
    counters: Box<[Counter]>,
    _endpoints: (Arc<Endpoint>, Arc<Endpoint>),
}

/// The state every family shares when a series is looked up.
struct Lookup<'a> {
    endpoints: &'a mut EndpointCache,
    live: &'a Live,
    now: Instant,
}

impl<'a> Lookup<'a> {
    fn new(endpoints: &'a mut EndpointCache, live: &'a Live, now: Instant) -> Self {
        Lookup {
            endpoints,
            live,
            now,
        }
    }

    /// The counter a flow increments in one family: its series', or the refused counter.
    fn counter<K: FixedLabels>(
        &mut self,
        family: &mut Capped<K, Counter>,
        fixed: K,
        view: &View,
    ) -> Counter {
        let r = family.context.resolve(view, self.endpoints);
        family
            .get(fixed, r.values, r.bindings, self.live, self.now)
            .unwrap_or_else(|| family.refused().clone())
    }

    /// Counts `rec`, as it was seen, in one family.
    fn inc<K: FixedLabels>(&mut self, family: &mut Capped<K, Counter>, fixed: K, rec: &FlowRecord) {
        self.counter(family, fixed, &View::of(rec)).inc();
    }
}

struct DnsFamilies {
    queries: Capped<DnsLabels, Counter>,
    responses: Capped<DnsLabels, Counter>,
    types: Capped<DnsTypeLabels, Counter>,
    query: bool,
    ignore_aaaa: bool,
}

struct HttpFamilies {
    requests: Capped<HttpLabels, Counter>,
    duration: Capped<HttpDurationLabels, Histogram>,
}

/// The flow metric families and the writer-side state that fills them. Owned by the pipeline.
pub struct FlowMetrics {
    flows: Option<Capped<FlowLabels, Counter>>,
    drops: Option<Capped<DropLabels, Counter>>,
    tcp: Option<Capped<TcpLabels, Counter>>,
    ports: Option<Capped<PortLabels, Counter>>,
    icmp: Option<Capped<IcmpLabels, Counter>>,
    policy: Option<Capped<PolicyLabels, Counter>>,
    dns: Option<DnsFamilies>,
    http: Option<HttpFamilies>,
    pub(crate) lost: LostCounters,
    needs: Needs,
    any_l4: bool,
    endpoints: EndpointCache,
    live: Live,
    /// The endpoint registry `live` was computed from.
    registry: Option<Arc<Endpoints>>,
    grace: Duration,
    batch: foldhash::HashMap<Signature, (u64, usize)>,
    plans: foldhash::HashMap<Signature, Plan>,
}

fn counter() -> Counter {
    Counter::default()
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// Registers families with the shared limit and bookkeeping.
struct Maker<'a> {
    registry: &'a mut Registry,
    books: &'a Bookkeeping,
    limit: usize,
}

impl Maker<'_> {
    fn counters<K: FixedLabels>(
        &mut self,
        spec: &MetricSpec,
        name: &'static str,
        exported: &'static str,
        help: &'static str,
    ) -> Capped<K, Counter> {
        Capped::register(
            self.registry,
            Descriptor {
                name,
                exported,
                help,
                unit: None,
            },
            counter as fn() -> Counter,
            Context::new(&spec.context),
            self.limit,
            self.books,
        )
    }

    fn histogram<K: FixedLabels>(
        &mut self,
        spec: &MetricSpec,
        name: &'static str,
        exported: &'static str,
        help: &'static str,
    ) -> Capped<K, Histogram> {
        Capped::register(
            self.registry,
            Descriptor {
                name,
                exported,
                help,
                unit: Some(Unit::Seconds),
            },
            duration_histogram as fn() -> Histogram,
            Context::new(&spec.context),
            self.limit,
            self.books,
        )
    }
}

impl FlowMetrics {
    /// Registers the families `config` enables (none without a config).
    pub(crate) fn register(
        registry: &mut Registry,
        config: Option<&MetricsConfig>,
        books: &Bookkeeping,
    ) -> Self {
        let limit = config.map_or(super::DEFAULT_SERIES_LIMIT, |c| c.series_limit);
        let spec = |kind: MetricKind| config.and_then(|c| c.get(kind));
        let mut m = Maker {
            registry,
            books,
            limit,
        };
        let flows = spec(MetricKind::Flow).map(|s| {
            m.counters(
                s,
                "flows_processed",
                "flows_processed_total",
                "Total number of flows processed",
            )
        });
        let drops =
            spec(MetricKind::Drop).map(|s| m.counters(s, "drop", "drop_total", "Number of drops"));
        let tcp = spec(MetricKind::Tcp)
            .map(|s| m.counters(s, "tcp_flags", "tcp_flags_total", "TCP flag occurrences"));
        let ports = spec(MetricKind::PortDistribution).map(|s| {
            m.counters(
                s,
                "port_distribution",
                "port_distribution_total",
                "Numbers of packets distributed by destination port",
            )
        });
        let icmp = spec(MetricKind::Icmp)
            .map(|s| m.counters(s, "icmp", "icmp_total", "Number of ICMP messages"));
        let policy = spec(MetricKind::Policy).map(|s| {
            m.counters(
                s,
                "policy_verdicts",
                "policy_verdicts_total",
                "Total number of Cilium network policy verdicts",
            )
        });
        let dns = spec(MetricKind::Dns).map(|s| DnsFamilies {
            queries: m.counters(
                s,
                "dns_queries",
                "dns_queries_total",
                "Number of DNS queries observed",
            ),
            responses: m.counters(
                s,
                "dns_responses",
                "dns_responses_total",
                "Number of DNS responses observed",
            ),
            types: m.counters(
                s,
                "dns_response_types",
                "dns_response_types_total",
                "Number of DNS response types",
            ),
            query: s.query,
            ignore_aaaa: s.ignore_aaaa,
        });
        let http = spec(MetricKind::HttpV2).map(|s| HttpFamilies {
            requests: m.counters(
                s,
                "http_requests",
                "http_requests_total",
                "Count of HTTP requests",
            ),
            duration: m.histogram(
                s,
                "http_request_duration",
                "http_request_duration_seconds",
                "Histogram of HTTP request duration in seconds",
            ),
        });
        let contexts: Vec<&Context> = [
            flows.as_ref().map(|f| &f.context),
            drops.as_ref().map(|f| &f.context),
            tcp.as_ref().map(|f| &f.context),
            ports.as_ref().map(|f| &f.context),
            icmp.as_ref().map(|f| &f.context),
            policy.as_ref().map(|f| &f.context),
        ]
        .into_iter()
        .flatten()
        .collect();
        let needs = Needs {
            endpoints: contexts.iter().any(|c| c.needs_endpoints()),
            addresses: contexts.iter().any(|c| c.needs_addresses()),
            ports: ports.is_some(),
            tcp: tcp.is_some(),
            icmp: icmp.is_some(),
        };
        FlowMetrics {
            any_l4: !contexts.is_empty(),
            flows,
            drops,
            tcp,
            ports,
            icmp,
            policy,
            dns,
            http,
            lost: LostCounters::default(),
            needs,
            endpoints: EndpointCache::default(),
            live: Live::default(),
            registry: None,
            grace: config.map_or(super::DEFAULT_EXPIRY_GRACE, |c| c.expiry_grace),
            batch: Default::default(),
            plans: Default::default(),
        }
    }

    /// Counts a batch of records, as stored; `endpoints` is the registry they were decoded
    /// with.
    pub fn record(&mut self, records: &[Arc<Record>], endpoints: &Arc<Endpoints>) {
        self.sync_endpoints(endpoints, Instant::now());
        for (i, record) in records.iter().enumerate() {
            match &**record {
                // L7 DNS flows feed the dns family and count as L7 flows; their packets are
                // counted by their own L3/L4 events.
                Record::Flow(f) if f.dns.is_some() => {
                    if let Some(m) = &f.dns {
                        let rec = DnsRecord {
                            query: &m.dns.query,
                            qtypes: &m.dns.qtypes,
                            rrtypes: &m.dns.rrtypes,
                            rcode: m.dns.rcode,
                            ips_returned: m.dns.ips.len(),
                            response: m.response,
                        };
                        self.record_dns(f, &rec);
                    }
                }
                Record::Flow(f) if f.http.is_some() => {
                    if let Some(m) = &f.http {
                        let rec = HttpRecord {
                            method: &m.http.method,
                            protocol: &m.http.protocol,
                            code: m.http.code,
                            latency: std::time::Duration::from_nanos(m.latency_ns),
                            response: m.response,
                        };
                        self.record_http(f, &rec);
                    }
                }
                Record::Flow(f) if self.any_l4 => {
                    let sig = Signature::of(f, self.needs);
                    self.batch.entry(sig).or_insert((0, i)).0 += 1;
                }
                Record::Flow(_) => {}
                Record::Lost { lost, .. } => {
                    let counter = match lost.source {
                        LostEventSource::PerfEventRingBuffer => &self.lost.perf_ring_buffer,
                        LostEventSource::ObserverEventsQueue => &self.lost.events_queue,
                        LostEventSource::HubbleRingBuffer => &self.lost.hubble_ring_buffer,
                        LostEventSource::Unknown => continue,
                    };
                    counter.inc_by(lost.num_events_lost);
                }
            }
        }
        if self.batch.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut batch = std::mem::take(&mut self.batch);
        for (sig, (n, i)) in batch.drain() {
            let Record::Flow(rec) = &*records[i] else {
                continue;
            };
            if !self.plans.contains_key(&sig) {
                if self.plans.len() >= PLAN_CACHE_LIMIT {
                    self.plans.clear();
                }
                let plan = self.plan(&sig, rec, now);
                self.plans.insert(sig, plan);
            }
            if let Some(plan) = self.plans.get(&sig) {
                for c in plan.counters.iter() {
                    c.inc_by(n);
                }
            }
        }
        // Keep the map's allocation for the next batch.
        self.batch = batch;
    }

    /// The counters a signature increments: looked up (or created) once per family.
    fn plan(&mut self, sig: &Signature, rec: &FlowRecord, now: Instant) -> Plan {
        let (saddr, daddr) = rec.addrs();
        let view = View {
            src: &rec.src,
            dst: &rec.dst,
            saddr,
            daddr,
            direction: sig.direction,
        };
        let mut lookup = Lookup::new(&mut self.endpoints, &self.live, now);
        let mut counters = Vec::new();
        if let Some(f) = &mut self.flows {
            counters.push(lookup.counter(f, sig.flow(), &view));
        }
        if let (Some(f), Some(labels)) = (&mut self.drops, sig.drop()) {
            counters.push(lookup.counter(f, labels, &view));
        }
        if let Some(f) = &mut self.tcp {
            for labels in sig.tcp() {
                counters.push(lookup.counter(f, labels, &view));
            }
        }
        if let (Some(f), Some(labels)) = (&mut self.ports, sig.port()) {
            counters.push(lookup.counter(f, labels, &view));
        }
        if let (Some(f), Some(labels)) = (&mut self.icmp, sig.icmp()) {
            counters.push(lookup.counter(f, labels, &view));
        }
        if let (Some(f), Some(labels)) = (&mut self.policy, sig.policy()) {
            counters.push(lookup.counter(f, labels, &view));
        }
        Plan {
            counters: counters.into(),
            _endpoints: (rec.src.clone(), rec.dst.clone()),
        }
    }

    /// Counts one DNS flow (`dns`, and `flow` as an L7 flow). Per call, not batched: L7 flows
    /// are far fewer than packets' flows.
    pub fn record_dns(&mut self, rec: &FlowRecord, dns: &DnsRecord) {
        let now = Instant::now();
        self.count_l7(rec, Protocol::Dns, now);
        let Some(d) = &mut self.dns else { return };
        if d.ignore_aaaa && dns.qtypes.len() == 1 && dns.qtypes[0] == "AAAA" {
            return;
        }
        let view = View::of(rec);
        let mut lookup = Lookup::new(&mut self.endpoints, &self.live, now);
        let qtypes = words(dns.qtypes);
        let query = d.query.then(|| Value::Shared(dns.query.into()));
        let labels = |rcode| DnsLabels {
            rcode,
            qtypes: qtypes.clone(),
            ips_returned: dns.ips_returned,
            query: query.clone(),
        };
        if rec.verdict() == Verdict::Dropped {
            lookup
                .counter(&mut d.queries, labels("Policy denied"), &view)
                .inc();
        } else if !dns.response {
            lookup.counter(&mut d.queries, labels(""), &view).inc();
        } else {
            let rcode = RCODES
                .iter()
                .find(|(n, _)| *n == dns.rcode)
                .map_or("", |(_, name)| name);
            lookup.counter(&mut d.responses, labels(rcode), &view).inc();
            for rtype in dns.rrtypes {
                let labels = DnsTypeLabels {
                    rtype: word(rtype),
                    qtypes: qtypes.clone(),
                    query: query.clone(),
                };
                lookup.counter(&mut d.types, labels, &view).inc();
            }
        }
    }

    /// Counts one HTTP response (`httpV2`, and `flow` as an L7 flow). As Hubble's `httpV2`,
    /// the context labels are those of the request: the response's source is the server.
    pub fn record_http(&mut self, rec: &FlowRecord, http: &HttpRecord) {
        let now = Instant::now();
        self.count_l7(rec, Protocol::Http, now);
        // A request the L7 proxy judged is a policy verdict, as Hubble counts its proxy's
        // access log (`match="l7/http"`).
        if !http.response
            && rec.ev.proxy != 0
            && rec.src.identity != IDENTITY_HOST
            && let Some(f) = &mut self.policy
        {
            let labels = PolicyLabels {
                direction: rec.traffic_direction(),
                matched: super::labels::MATCH_L7_HTTP,
                action: rec.verdict(),
            };
            Lookup::new(&mut self.endpoints, &self.live, now).inc(f, labels, rec);
        }
        let Some(h) = &mut self.http else { return };
        if !http.response {
            return;
        }
        let (saddr, daddr) = rec.addrs();
        let view = View {
            src: &rec.dst,
            dst: &rec.src,
            saddr: daddr,
            daddr: saddr,
            direction: rec.traffic_direction(),
        };
        let mut lookup = Lookup::new(&mut self.endpoints, &self.live, now);
        let reporter = Reporter::of(rec.traffic_direction());
        let method = word(http.method);
        let labels = HttpLabels {
            method: method.clone(),
            protocol: word(http.protocol),
            status: http.code,
            reporter,
        };
        lookup.counter(&mut h.requests, labels, &view).inc();
        let r = h.duration.context.resolve(&view, lookup.endpoints);
        let labels = HttpDurationLabels { method, reporter };
        match h
            .duration
            .get(labels, r.values, r.bindings, lookup.live, now)
        {
            Some(histogram) => histogram.observe(http.latency.as_secs_f64()),
            None => {
                h.duration.refused().inc();
            }
        }
    }

    fn count_l7(&mut self, rec: &FlowRecord, protocol: Protocol, now: Instant) {
        let Some(f) = &mut self.flows else { return };
        let labels = FlowLabels {
            protocol,
            event: Event::L7(protocol),
            verdict: rec.verdict(),
        };
        Lookup::new(&mut self.endpoints, &self.live, now).inc(f, labels, rec);
    }

    /// Once a second: follows registry changes and removes series whose endpoints have been
    /// gone longer than the grace period.
    pub fn tick(&mut self, endpoints: &Arc<Endpoints>, now: Instant) {
        self.sync_endpoints(endpoints, now);
        let grace = self.grace;
        let mut removed = 0;
        self.for_each_family(|f| removed += f.expire(now, grace));
        if removed > 0 {
            // Plans may hold counters of removed series, or refusals there is room for now.
            self.plans.clear();
        }
    }

    /// Series in all families (for tests and the bench).
    pub fn series(&mut self) -> usize {
        let mut n = 0;
        self.for_each_family(|f| n += f.len());
        n
    }

    fn sync_endpoints(&mut self, endpoints: &Arc<Endpoints>, now: Instant) {
        if self
            .registry
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, endpoints))
        {
            return;
        }
        self.registry = Some(endpoints.clone());
        self.live = Live::from_registry(endpoints);
        let live = std::mem::take(&mut self.live);
        self.for_each_family(|f| f.mark(&live, now));
        self.live = live;
        // New endpoints are new allocations: drop the old ones' values and plans.
        self.endpoints.clear();
        self.plans.clear();
    }

    fn for_each_family(&mut self, mut f: impl FnMut(&mut dyn Expiring)) {
        let singles = [
            self.flows.as_mut().map(|x| x as &mut dyn Expiring),
            self.drops.as_mut().map(|x| x as &mut dyn Expiring),
            self.tcp.as_mut().map(|x| x as &mut dyn Expiring),
            self.ports.as_mut().map(|x| x as &mut dyn Expiring),
            self.icmp.as_mut().map(|x| x as &mut dyn Expiring),
            self.policy.as_mut().map(|x| x as &mut dyn Expiring),
        ];
        for family in singles.into_iter().flatten() {
            f(family);
        }
        if let Some(d) = &mut self.dns {
            f(&mut d.queries);
            f(&mut d.responses);
            f(&mut d.types);
        }
        if let Some(h) = &mut self.http {
            f(&mut h.requests);
            f(&mut h.duration);
        }
    }
}

/// What expiry needs of a family, whatever its labels and metric type.
trait Expiring {
    fn mark(&mut self, live: &Live, now: Instant);
    fn expire(&mut self, now: Instant, grace: Duration) -> usize;
    fn len(&self) -> usize;
}

impl<K, M> Expiring for Capped<K, M>
where
    K: FixedLabels,
    M: prometheus_client::encoding::EncodeMetric
        + prometheus_client::metrics::TypedMetric
        + Clone
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    fn mark(&mut self, live: &Live, now: Instant) {
        Capped::mark(self, live, now)
    }

    fn expire(&mut self, now: Instant, grace: Duration) -> usize {
        Capped::expire(self, now, grace)
    }

    fn len(&self) -> usize {
        Capped::len(self)
    }
}

fn word(s: &str) -> Value {
    match COMMON_WORDS.iter().find(|w| **w == s) {
        Some(w) => Value::Static(w),
        None if s.is_empty() => Value::EMPTY,
        None => Value::Shared(s.into()),
    }
}

/// A list as Hubble joins it (`A,AAAA`).
fn words(list: &[String]) -> Value {
    match list {
        [] => Value::EMPTY,
        [one] => word(one),
        many => Value::Shared(many.join(",").into()),
    }
}
