//! Flow metrics end to end within the observer: synthetic datapath events through the real
//! decoder and pipeline, scraped in both formats, and checked against Hubble's handlers
//! applied to the full flows the API would serve.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use flowscope_common::{
    FAMILY_IPV4, FAMILY_IPV6, FlowEvent, STAT_COUNT, drop_reason, hook, kind, policy_match, tcp,
    verdict,
};
use flowscope_model::flow::{Flow, IpVersion, Layer4, TrafficDirection, Verdict};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{labels::IcmpType, *};
use crate::{
    api::AppState,
    endpoints::{EndpointSpec, Registry as Endpoints},
    parse::{Decoder, InterfaceInfo},
    pipeline::{FlowStore, Pipeline, PipelineCounters},
    policy::PolicyStatus,
    source::datapath::{DatapathStats, MAX_CPUS},
};

/// A pod's veth and the node's uplink.
const IF_POD: u32 = 1;
const IF_NET: u32 = 2;
const CLIENT: &str = "10.0.0.1";
const CLIENT6: &str = "fd00::1";
const SERVER: &str = "10.0.0.2";
const SERVER6: &str = "fd00::2";
const DB: &str = "10.0.1.3";
const HOST: &str = "10.0.0.254";
const WORLD: &str = "192.0.2.9";
const WORLD6: &str = "2001:db8::9";

/// The example of the brief: every family, context options on `httpV2`.
const EXAMPLE: &str = "flow,drop,tcp,port-distribution,icmp,policy,dns:query;ignoreAAAA,\
    httpV2:sourceContext=workload-name|pod;destinationContext=namespace;\
    labelsContext=source_namespace,destination_namespace";

fn pod(ns: &str, name: &str, ips: &[&str], labels: &[(&str, &str)]) -> EndpointSpec {
    EndpointSpec {
        namespace: ns.into(),
        pod_name: name.into(),
        ips: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..EndpointSpec::default()
    }
}

fn pods(with_db: bool) -> Vec<EndpointSpec> {
    let mut p = vec![
        pod(
            "default",
            "client-7d9f8-x2v7k",
            &[CLIENT, CLIENT6],
            &[("app", "client")],
        ),
        pod("shop", "server-0", &[SERVER, SERVER6], &[("app", "server")]),
    ];
    if with_db {
        p.push(pod("other", "db", &[DB], &[("k8s-app", "db")]));
    }
    p
}

struct Rig {
    pipeline: Pipeline,
    exporter: Arc<Exporter>,
    store: Arc<FlowStore>,
}

fn rig_with(config: Option<MetricsConfig>, prefix: &str, capacity: usize) -> Rig {
    let store = Arc::new(FlowStore::new(capacity).unwrap());
    let mut decoder = Decoder::new("node-1");
    decoder.set_interfaces(
        [
            (
                IF_POD,
                InterfaceInfo {
                    name: "lxc1".into(),
                    endpoint: true,
                },
            ),
            (
                IF_NET,
                InterfaceInfo {
                    name: "eth0".into(),
                    endpoint: false,
                },
            ),
        ]
        .into(),
    );
    decoder.set_host_addrs(vec![HOST.parse().unwrap()]);
    decoder.set_registry(Arc::new(Endpoints::build(&pods(true))));
    let mut pipeline = Pipeline::new(
        decoder,
        store.clone(),
        Arc::new(PipelineCounters::default()),
    );
    let (exporter, recorder) = setup(&prefix.parse().unwrap(), config.as_ref(), None);
    pipeline.set_metrics(recorder);
    Rig {
        pipeline,
        exporter,
        store,
    }
}

fn rig(config: &str) -> Rig {
    rig_with(
        Some(MetricsConfig::parse(config).unwrap()),
        "flowscope",
        4095,
    )
}

/// A TCP SYN from `src` to `dst`:80, seen leaving the source pod (tc ingress of its veth).
fn ev(src: &str, dst: &str, f: impl FnOnce(&mut FlowEvent)) -> FlowEvent {
    let (s, d): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
    let mut e = FlowEvent {
        ts_ns: crate::clock::BootClock::boot_now_ns(),
        packets: [1, 0],
        bytes: [60, 0],
        ifindex: IF_POD,
        sport: 40_000,
        dport: 80,
        kind: kind::NEW,
        hook: hook::INGRESS,
        origin_hook: hook::INGRESS,
        proto: 6,
        verdict: verdict::FORWARDED,
        tcp_flags: tcp::SYN,
        pkt_len: 60,
        ..FlowEvent::default()
    };
    match (s, d) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            e.family = FAMILY_IPV4;
            e.saddr[..4].copy_from_slice(&s.octets());
            e.daddr[..4].copy_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            e.family = FAMILY_IPV6;
            e.saddr = s.octets();
            e.daddr = d.octets();
        }
        _ => panic!("mixed families"),
    }
    f(&mut e);
    e
}

/// Parses the Prometheus text format into `name{label=value,...}` (labels sorted) -> value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}').unwrap()),
            None => (series, ""),
        };
        let mut pairs = Vec::new();
        let mut chars = labels.chars().peekable();
        while chars.peek().is_some() {
            let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
            assert_eq!(chars.next(), Some('"'), "{line}");
            let mut value = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.push(chars.next().unwrap()),
                    '"' => break,
                    c => value.push(c),
                }
            }
            if chars.peek() == Some(&',') {
                chars.next();
            }
            pairs.push((key, value));
        }
        pairs.sort();
        let labels: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let previous = out.insert(
            format!("{name}{{{}}}", labels.join(",")),
            value.parse().unwrap(),
        );
        assert!(previous.is_none(), "series twice: {line}");
    }
    out
}

fn key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    format!("{name}{{{}}}", pairs.join(","))
}

fn scrape(exporter: &Exporter) -> BTreeMap<String, f64> {
    samples(&exporter.render(Format::Text).unwrap())
}

#[track_caller]
fn assert_sample(s: &BTreeMap<String, f64>, name: &str, labels: &[(&str, &str)], value: f64) {
    let k = key(name, labels);
    let near: Vec<&String> = s.keys().filter(|x| x.starts_with(name)).collect();
    assert_eq!(s.get(&k), Some(&value), "{k}; the family has: {near:#?}");
}

#[test]
fn families_carry_hubbles_names_and_labels() {
    let mut r = rig(EXAMPLE);
    r.pipeline.process(&[
        // A connection a policy allowed: a policy verdict and a trace, from one event.
        ev(CLIENT, SERVER, |e| {
            e.policy_verdict = 1;
            e.policy_match = policy_match::L3_L4;
        }),
        // The answer, into the client pod: a reply, so not in port_distribution.
        ev(SERVER, CLIENT, |e| {
            e.kind = kind::TCP_FLAGS;
            e.hook = hook::EGRESS;
            e.sport = 80;
            e.dport = 40_000;
            e.is_reply = 1;
            e.tcp_flags = tcp::SYN | tcp::ACK;
        }),
        // Denied from outside, seen on the uplink.
        ev(WORLD, SERVER, |e| {
            e.ifindex = IF_NET;
            e.kind = kind::DROP;
            e.verdict = verdict::DROPPED;
            e.drop_reason = drop_reason::POLICY_DENIED;
            e.dport = 5432;
            e.policy_verdict = 1;
        }),
        // Would have been denied: audit mode.
        ev(DB, SERVER, |e| {
            e.ifindex = IF_NET;
            e.verdict = verdict::AUDIT;
            e.drop_reason = drop_reason::POLICY_DENIED;
            e.policy_verdict = 1;
            e.policy_match = policy_match::NONE;
        }),
        // The host reaches pods whatever the policy: no policy verdict metric.
        ev(HOST, CLIENT, |e| {
            e.hook = hook::EGRESS;
            e.origin_hook = hook::EGRESS;
            e.policy_verdict = 1;
            e.policy_match = policy_match::ALL;
        }),
        ev(CLIENT, WORLD, |e| {
            e.proto = 1;
            e.icmp_type = 8;
            e.sport = 7;
            e.dport = 7;
            e.tcp_flags = 0;
        }),
        ev(CLIENT6, SERVER6, |e| {
            e.proto = 58;
            e.icmp_type = 1;
            e.icmp_code = 4;
            e.tcp_flags = 0;
        }),
        ev(CLIENT, SERVER, |e| {
            e.proto = 17;
            e.dport = 53;
            e.tcp_flags = 0;
        }),
        ev(CLIENT, SERVER, |e| {
            e.kind = kind::TCP_FLAGS;
            e.tcp_flags = tcp::FIN | tcp::ACK | tcp::RST;
        }),
    ]);
    let s = scrape(&r.exporter);
    let flows = "flowscope_flows_processed_total";
    let trace = |proto, sub, verdict| {
        [
            ("protocol", proto),
            ("type", "Trace"),
            ("subtype", sub),
            ("verdict", verdict),
        ]
    };
    assert_sample(&s, flows, &trace("TCP", "from-endpoint", "FORWARDED"), 2.0);
    assert_sample(&s, flows, &trace("TCP", "to-endpoint", "FORWARDED"), 2.0);
    assert_sample(&s, flows, &trace("TCP", "from-network", "AUDIT"), 1.0);
    assert_sample(
        &s,
        flows,
        &trace("ICMPv4", "from-endpoint", "FORWARDED"),
        1.0,
    );
    assert_sample(
        &s,
        flows,
        &trace("ICMPv6", "from-endpoint", "FORWARDED"),
        1.0,
    );
    assert_sample(&s, flows, &trace("UDP", "from-endpoint", "FORWARDED"), 1.0);
    let typed = |t, verdict| {
        [
            ("protocol", "TCP"),
            ("type", t),
            ("subtype", ""),
            ("verdict", verdict),
        ]
    };
    assert_sample(&s, flows, &typed("Drop", "DROPPED"), 1.0);
    assert_sample(&s, flows, &typed("PolicyVerdict", "DROPPED"), 1.0);
    assert_sample(&s, flows, &typed("PolicyVerdict", "FORWARDED"), 2.0);
    assert_sample(&s, flows, &typed("PolicyVerdict", "AUDIT"), 1.0);
    // 9 events, 4 of them with a policy verdict.
    let total: f64 = s
        .iter()
        .filter(|(k, _)| k.starts_with(flows))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(total, 13.0);

    // One dropped packet is one drop: its policy verdict is not counted again (Hubble's
    // handler counts both).
    let drops = "flowscope_drop_total";
    assert_sample(
        &s,
        drops,
        &[("reason", "POLICY_DENIED"), ("protocol", "TCP")],
        1.0,
    );

    let flags = "flowscope_tcp_flags_total";
    // The SYN of the allowed connection: its trace and its policy verdict; and the host's.
    assert_sample(&s, flags, &[("flag", "SYN"), ("family", "IPv4")], 4.0);
    assert_sample(&s, flags, &[("flag", "SYN-ACK"), ("family", "IPv4")], 1.0);
    assert_sample(&s, flags, &[("flag", "FIN"), ("family", "IPv4")], 1.0);
    assert_sample(&s, flags, &[("flag", "RST"), ("family", "IPv4")], 1.0);

    let ports = "flowscope_port_distribution_total";
    assert_sample(&s, ports, &[("protocol", "TCP"), ("port", "80")], 5.0);
    assert_sample(&s, ports, &[("protocol", "UDP"), ("port", "53")], 1.0);
    assert_sample(&s, ports, &[("protocol", "ICMPv4"), ("port", "0")], 1.0);
    assert_sample(&s, ports, &[("protocol", "ICMPv6"), ("port", "0")], 1.0);
    assert!(!s.contains_key(&key(ports, &[("protocol", "TCP"), ("port", "40000")])));
    assert!(!s.contains_key(&key(ports, &[("protocol", "TCP"), ("port", "5432")])));

    let icmp = "flowscope_icmp_total";
    assert_sample(
        &s,
        icmp,
        &[("family", "IPv4"), ("type", "EchoRequest")],
        1.0,
    );
    assert_sample(
        &s,
        icmp,
        &[
            ("family", "IPv6"),
            ("type", "DestinationUnreachable(PortUnreachable)"),
        ],
        1.0,
    );

    let policy = "flowscope_policy_verdicts_total";
    let verdicts: Vec<_> = s.iter().filter(|(k, _)| k.starts_with(policy)).collect();
    assert_eq!(verdicts.len(), 3, "{verdicts:#?}");
    assert_sample(
        &s,
        policy,
        &[
            ("direction", "egress"),
            ("match", "l3-l4"),
            ("action", "forwarded"),
        ],
        1.0,
    );
    assert_sample(
        &s,
        policy,
        &[
            ("direction", "ingress"),
            ("match", "none"),
            ("action", "dropped"),
        ],
        1.0,
    );
    assert_sample(
        &s,
        policy,
        &[
            ("direction", "ingress"),
            ("match", "none"),
            ("action", "audit"),
        ],
        1.0,
    );

    // Datapath losses become lost events, counted by source.
    let mut stats = DatapathStats {
        counters: [0; STAT_COUNT as usize],
        lost_per_cpu: [0; MAX_CPUS],
    };
    stats.lost_per_cpu[0] = 3;
    stats.lost_per_cpu[1] = 4;
    r.pipeline.check_losses(&stats);
    let s = scrape(&r.exporter);
    let lost = "flowscope_lost_events_total";
    assert_sample(&s, lost, &[("source", "perf_event_ring_buffer")], 7.0);
    assert_sample(&s, lost, &[("source", "hubble_ring_buffer")], 0.0);
    assert_sample(&s, lost, &[("source", "observer_events_queue")], 0.0);
    assert_eq!(r.store.status().total_written, 15);
}

#[test]
fn context_labels_name_the_endpoints() {
    let mut r = rig(
        "flow:sourceContext=pod|ip;destinationContext=namespace|reserved-identity;\
         labelsContext=source_app,destination_app,traffic_direction,\
         drop:sourceContext=workload-name|reserved-identity;destinationContext=pod-short",
    );
    r.pipeline.process(&[
        ev(CLIENT, SERVER, |_| {}),
        ev(WORLD, DB, |e| {
            e.ifindex = IF_NET;
            e.kind = kind::DROP;
            e.verdict = verdict::DROPPED;
            e.drop_reason = drop_reason::POLICY_DENY;
        }),
    ]);
    let s = scrape(&r.exporter);
    let flows = "flowscope_flows_processed_total";
    assert_sample(
        &s,
        flows,
        &[
            ("protocol", "TCP"),
            ("type", "Trace"),
            ("subtype", "from-endpoint"),
            ("verdict", "FORWARDED"),
            ("source_app", "client"),
            ("destination_app", "server"),
            ("traffic_direction", "egress"),
            ("source", "default/client-7d9f8-x2v7k"),
            ("destination", "shop"),
        ],
        1.0,
    );
    assert_sample(
        &s,
        flows,
        &[
            ("protocol", "TCP"),
            ("type", "Drop"),
            ("subtype", ""),
            ("verdict", "DROPPED"),
            ("source_app", ""),
            ("destination_app", "db"),
            ("traffic_direction", "ingress"),
            ("source", WORLD),
            ("destination", "other"),
        ],
        1.0,
    );
    assert_sample(
        &s,
        "flowscope_drop_total",
        &[
            ("reason", "POLICY_DENY"),
            ("protocol", "TCP"),
            ("source", "reserved:world"),
            ("destination", "other/db"),
        ],
        1.0,
    );
    // Label order as Hubble's: the drop family puts the context first.
    let text = r.exporter.render(Format::Text).unwrap();
    assert!(
        text.contains(
            "flowscope_drop_total{source=\"reserved:world\",destination=\"other/db\",\
             reason=\"POLICY_DENY\",protocol=\"TCP\"} 1"
        ),
        "{text}"
    );
}

fn dns<'a>(
    qtypes: &'a [String],
    rrtypes: &'a [String],
    rcode: u32,
    response: bool,
) -> DnsRecord<'a> {
    DnsRecord {
        query: "shop.example.",
        qtypes,
        rrtypes,
        rcode,
        ips_returned: rrtypes.len(),
        response,
    }
}

#[test]
fn dns_and_http_are_recorded_from_l7_fields() {
    let mut r = rig(EXAMPLE);
    // An HTTP response from the server, into the client pod, on a connection the client
    // opened: the client reports it.
    let response = r.pipeline.decoder.record(&ev(SERVER, CLIENT, |e| {
        e.hook = hook::EGRESS;
        e.is_reply = 1;
    }));
    let dns_request = r.pipeline.decoder.record(&ev(CLIENT, SERVER, |e| {
        e.proto = 17;
        e.dport = 53;
    }));
    let m = r.pipeline.metrics_mut().unwrap();
    m.record_http(
        &response,
        &HttpRecord {
            method: "GET",
            protocol: "HTTP/1.1",
            code: 200,
            latency: Duration::from_millis(30),
            response: true,
        },
    );
    let a = ["A".to_string()];
    let aaaa = ["AAAA".to_string()];
    let answers = ["A".to_string(), "CNAME".to_string()];
    m.record_dns(&dns_request, &dns(&a, &[], 0, false));
    m.record_dns(&dns_request, &dns(&a, &answers, 3, true));
    m.record_dns(&dns_request, &dns(&aaaa, &[], 0, false));
    let s = scrape(&r.exporter);
    let ctx = [
        ("source_namespace", "default"),
        ("destination_namespace", "shop"),
        ("source", "default/client-7d9f8-x2v7k"),
        ("destination", "shop"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut l = ctx.to_vec();
        l.extend_from_slice(extra);
        l
    };
    assert_sample(
        &s,
        "flowscope_http_requests_total",
        &with(&[
            ("method", "GET"),
            ("protocol", "HTTP/1.1"),
            ("status", "200"),
            ("reporter", "client"),
        ]),
        1.0,
    );
    let duration = with(&[("method", "GET"), ("reporter", "client")]);
    assert_sample(
        &s,
        "flowscope_http_request_duration_seconds_count",
        &duration,
        1.0,
    );
    assert_sample(
        &s,
        "flowscope_http_request_duration_seconds_sum",
        &duration,
        0.03,
    );
    let mut bucket = duration.clone();
    bucket.push(("le", "0.05"));
    assert_sample(
        &s,
        "flowscope_http_request_duration_seconds_bucket",
        &bucket,
        1.0,
    );

    let dns = |rcode, ips| {
        [
            ("rcode", rcode),
            ("qtypes", "A"),
            ("ips_returned", ips),
            ("query", "shop.example."),
        ]
    };
    assert_sample(&s, "flowscope_dns_queries_total", &dns("", "0"), 1.0);
    assert_sample(
        &s,
        "flowscope_dns_responses_total",
        &dns("Non-Existent Domain", "2"),
        1.0,
    );
    for t in ["A", "CNAME"] {
        assert_sample(
            &s,
            "flowscope_dns_response_types_total",
            &[("type", t), ("qtypes", "A"), ("query", "shop.example.")],
            1.0,
        );
    }
    // ignoreAAAA: the AAAA-only query is not counted anywhere in dns_*.
    assert!(!s.keys().any(|k| k.contains("qtypes=AAAA")), "{s:#?}");
    // L7 flows count in flows_processed_total too (the AAAA one as well: `flow` has no
    // ignoreAAAA).
    let l7 = |p| {
        [
            ("protocol", p),
            ("type", "L7"),
            ("subtype", p),
            ("verdict", "FORWARDED"),
        ]
    };
    assert_sample(&s, "flowscope_flows_processed_total", &l7("HTTP"), 1.0);
    assert_sample(&s, "flowscope_flows_processed_total", &l7("DNS"), 3.0);
}

#[test]
fn hubble_prefix_gives_hubbles_names() {
    let mut r = rig_with(
        Some(MetricsConfig::parse("flow,drop").unwrap()),
        "hubble",
        4095,
    );
    r.pipeline.process(&[ev(CLIENT, SERVER, |_| {})]);
    let text = r.exporter.render(Format::Text).unwrap();
    assert!(
        text.contains("# TYPE hubble_flows_processed_total counter"),
        "{text}"
    );
    assert!(
        text.contains("hubble_flows_processed_total{protocol=\"TCP\""),
        "{text}"
    );
    assert!(text.contains("hubble_lost_events_total{source=\"perf_event_ring_buffer\"} 0"));
    assert!(text.contains("hubble_build_info{version="), "{text}");
    let om = r.exporter.render(Format::OpenMetrics).unwrap();
    assert!(om.contains("# TYPE hubble_flows_processed counter"), "{om}");
    assert!(
        om.contains("hubble_flows_processed_total{protocol=\"TCP\""),
        "{om}"
    );
    assert!(om.ends_with("# EOF\n"), "{om}");
}

#[test]
fn series_are_capped_and_refusals_counted() {
    let mut config = MetricsConfig::parse("port-distribution,flow").unwrap();
    config.series_limit = 3;
    let mut r = rig_with(Some(config), "flowscope", 4095);
    let batch: Vec<FlowEvent> = (1..=10u16)
        .map(|port| ev(CLIENT, SERVER, |e| e.dport = port))
        .collect();
    // One batch per flow, so the first three ports are the ones with series.
    for e in &batch {
        r.pipeline.process(std::slice::from_ref(e));
    }
    // Known series keep counting; new ones are refused, in every later batch too.
    r.pipeline.process(&batch[..4]);
    let s = scrape(&r.exporter);
    let ports: Vec<(&String, &f64)> = s
        .iter()
        .filter(|(k, _)| k.starts_with("flowscope_port_distribution_total"))
        .collect();
    assert_eq!(ports.len(), 3, "{ports:#?}");
    for port in ["1", "2", "3"] {
        assert_sample(
            &s,
            "flowscope_port_distribution_total",
            &[("protocol", "TCP"), ("port", port)],
            2.0,
        );
    }
    let family = [("family", "port_distribution_total")];
    assert_sample(&s, "flowscope_metrics_series_refused_total", &family, 8.0);
    assert_sample(&s, "flowscope_metrics_series", &family, 3.0);
    // The other family has room of its own.
    assert_sample(
        &s,
        "flowscope_metrics_series_refused_total",
        &[("family", "flows_processed_total")],
        0.0,
    );
    assert_eq!(r.pipeline.metrics_mut().unwrap().series(), 4);
}

#[test]
fn series_of_deleted_pods_expire_after_the_grace_period() {
    let mut r = rig("flow:sourceContext=pod;destinationContext=namespace,\
         drop:labelsContext=source_namespace,source_pod,\
         tcp");
    let t0 = Instant::now();
    let events = [
        ev(CLIENT, SERVER, |_| {}),
        ev(DB, SERVER, |_| {}),
        ev(DB, SERVER, |e| {
            e.kind = kind::DROP;
            e.verdict = verdict::DROPPED;
            e.drop_reason = drop_reason::POLICY_DENIED;
        }),
    ];
    r.pipeline.process(&events);
    let db_series = |r: &Rig| {
        scrape(&r.exporter)
            .into_keys()
            .filter(|k| k.contains("other/db") || k.contains("source_pod=db"))
            .count()
    };
    assert_eq!(db_series(&r), 3);
    let series = r.pipeline.metrics_mut().unwrap().series();

    // The db pod is deleted.
    let without_db = Arc::new(Endpoints::build(&pods(false)));
    r.pipeline.decoder.set_registry(without_db.clone());
    let m = r.pipeline.metrics_mut().unwrap();
    m.tick(&without_db, t0);
    m.tick(&without_db, t0 + Duration::from_secs(59));
    assert_eq!(db_series(&r), 3, "still within the grace period");
    let m = r.pipeline.metrics_mut().unwrap();
    m.tick(&without_db, t0 + Duration::from_secs(60));
    assert_eq!(db_series(&r), 0);
    let m = r.pipeline.metrics_mut().unwrap();
    assert_eq!(m.series(), series - 3);
    let s = scrape(&r.exporter);
    assert_sample(
        &s,
        "flowscope_flows_processed_total",
        &[
            ("protocol", "TCP"),
            ("type", "Trace"),
            ("subtype", "from-endpoint"),
            ("verdict", "FORWARDED"),
            ("source", "default/client-7d9f8-x2v7k"),
            ("destination", "shop"),
        ],
        1.0,
    );
    // Series without endpoint context never expire.
    assert_sample(
        &s,
        "flowscope_tcp_flags_total",
        &[("flag", "SYN"), ("family", "IPv4")],
        2.0,
    );

    // A pod that comes back within the grace period keeps its series.
    let mut r = rig("flow:sourceContext=pod");
    r.pipeline.process(&events[1..2]);
    let m = r.pipeline.metrics_mut().unwrap();
    m.tick(&without_db, t0);
    let with_db = Arc::new(Endpoints::build(&pods(true)));
    m.tick(&with_db, t0 + Duration::from_secs(30));
    m.tick(&with_db, t0 + Duration::from_secs(120));
    assert_eq!(db_series(&r), 1);
}

/// Hubble's handlers (`pkg/hubble/metrics/*/handler.go`) over a full flow, with Hubble's
/// context rules (`api/context.go`): what the fast path must agree with.
fn hubble_reference(flow: &Flow, config: &MetricsConfig, out: &mut BTreeMap<String, f64>) {
    let src = flow.source.clone().unwrap_or_default();
    let dst = flow.destination.clone().unwrap_or_default();
    let ip = flow.ip.clone().unwrap_or_default();
    let direction = flow.traffic_direction;
    let ident =
        |id: ContextIdentifier, ep: &flowscope_model::flow::Endpoint, addr: &str| -> String {
            let with_ns = |name: &str| {
                if ep.namespace.is_empty() || name.is_empty() {
                    name.to_string()
                } else {
                    format!("{}/{name}", ep.namespace)
                }
            };
            let workload = ep
                .workloads
                .first()
                .map(|w| w.name.clone())
                .unwrap_or_default();
            let app = ep
                .labels
                .iter()
                .find_map(|l| {
                    ["k8s:app.kubernetes.io/name=", "k8s:k8s-app=", "k8s:app="]
                        .iter()
                        .find_map(|p| l.strip_prefix(p))
                        .filter(|v| !v.is_empty())
                })
                .unwrap_or_default()
                .to_string();
            match id {
                ContextIdentifier::Identity => ep.labels.join(","),
                ContextIdentifier::Namespace => ep.namespace.clone(),
                ContextIdentifier::Pod => with_ns(&ep.pod_name),
                ContextIdentifier::PodShort => with_ns(context::shorten_pod_name(&ep.pod_name)),
                ContextIdentifier::PodName => ep.pod_name.clone(),
                ContextIdentifier::Dns => String::new(),
                ContextIdentifier::Ip => addr.to_string(),
                ContextIdentifier::ReservedIdentity => ep
                    .labels
                    .iter()
                    .find(|l| *l == "reserved:kube-apiserver")
                    .or_else(|| ep.labels.iter().find(|l| l.starts_with("reserved:")))
                    .cloned()
                    .unwrap_or_default(),
                ContextIdentifier::Workload => with_ns(&workload),
                ContextIdentifier::WorkloadName => workload,
                ContextIdentifier::App => app,
            }
        };
    let context = |o: &ContextOptions| -> Vec<(String, String)> {
        let mut labels = Vec::new();
        for l in &o.labels {
            let v = match l {
                ContextLabel::SourceIp => ip.source.clone(),
                ContextLabel::SourcePod => src.pod_name.clone(),
                ContextLabel::SourceNamespace => src.namespace.clone(),
                ContextLabel::SourceWorkload => ident(ContextIdentifier::WorkloadName, &src, ""),
                ContextLabel::SourceWorkloadKind => src
                    .workloads
                    .first()
                    .map(|w| w.kind.clone())
                    .unwrap_or_default(),
                ContextLabel::SourceApp => ident(ContextIdentifier::App, &src, ""),
                ContextLabel::DestinationIp => ip.destination.clone(),
                ContextLabel::DestinationPod => dst.pod_name.clone(),
                ContextLabel::DestinationNamespace => dst.namespace.clone(),
                ContextLabel::DestinationWorkload => {
                    ident(ContextIdentifier::WorkloadName, &dst, "")
                }
                ContextLabel::DestinationWorkloadKind => dst
                    .workloads
                    .first()
                    .map(|w| w.kind.clone())
                    .unwrap_or_default(),
                ContextLabel::DestinationApp => ident(ContextIdentifier::App, &dst, ""),
                ContextLabel::TrafficDirection => match direction {
                    TrafficDirection::Ingress => "ingress".into(),
                    TrafficDirection::Egress => "egress".into(),
                    TrafficDirection::Unknown => "unknown".into(),
                },
            };
            labels.push((l.name().to_string(), v));
        }
        for (name, present, any, egress, ingress, ep, addr) in [
            (
                "source",
                o.has_source(),
                &o.source,
                &o.source_egress,
                &o.source_ingress,
                &src,
                &ip.source,
            ),
            (
                "destination",
                o.has_destination(),
                &o.destination,
                &o.destination_egress,
                &o.destination_ingress,
                &dst,
                &ip.destination,
            ),
        ] {
            if !present {
                continue;
            }
            let ids = match direction {
                TrafficDirection::Ingress if !ingress.is_empty() => ingress,
                TrafficDirection::Egress if !egress.is_empty() => egress,
                _ => any,
            };
            let mut v = String::new();
            for id in ids {
                v = ident(*id, ep, addr);
                if !v.is_empty() {
                    break;
                }
            }
            labels.push((name.to_string(), v));
        }
        labels
    };
    let protocol = match &flow.l4 {
        Some(Layer4::Tcp(_)) => "TCP",
        Some(Layer4::Udp(_)) => "UDP",
        Some(Layer4::IcmpV4(_)) => "ICMPv4",
        Some(Layer4::IcmpV6(_)) => "ICMPv6",
        Some(Layer4::Sctp(_)) => "SCTP",
        _ => "Unknown L4",
    };
    let event = flow.event_type.unwrap_or_default();
    let mut count = |name: &str, spec: &MetricSpec, own: Vec<(&str, String)>| {
        let mut labels: Vec<(String, String)> =
            own.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        labels.extend(context(&spec.context));
        labels.sort();
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        *out.entry(format!("flowscope_{name}{{{}}}", labels.join(",")))
            .or_default() += 1.0;
    };
    if let Some(spec) = config.get(MetricKind::Flow) {
        let (t, sub) = match event.event_type {
            1 => ("Drop", ""),
            5 => ("PolicyVerdict", ""),
            4 => (
                "Trace",
                match event.sub_type {
                    0 => "to-endpoint",
                    5 => "from-endpoint",
                    10 => "from-network",
                    11 => "to-network",
                    _ => "?",
                },
            ),
            _ => ("Unknown", "?"),
        };
        count(
            "flows_processed_total",
            spec,
            vec![
                ("protocol", protocol.into()),
                ("type", t.into()),
                ("subtype", sub.into()),
                ("verdict", flow.verdict.as_str().into()),
            ],
        );
    }
    // Drop notifications only: flowscope does not count the packet's policy verdict again.
    if let Some(spec) = config.get(MetricKind::Drop)
        && flow.verdict == Verdict::Dropped
        && flow.event_type.as_ref().is_some_and(|e| e.event_type == 1)
    {
        count(
            "drop_total",
            spec,
            vec![
                ("reason", flow.drop_reason_desc.as_str().into()),
                ("protocol", protocol.into()),
            ],
        );
    }
    let family = if ip.ip_version == IpVersion::V4 {
        "IPv4"
    } else {
        "IPv6"
    };
    if let Some(spec) = config.get(MetricKind::Tcp)
        && flow.verdict == Verdict::Forwarded
        && let Some(Layer4::Tcp(t)) = &flow.l4
        && let Some(f) = t.flags
    {
        let mut flags = Vec::new();
        if f.FIN {
            flags.push("FIN");
        }
        if f.SYN {
            flags.push(if f.ACK { "SYN-ACK" } else { "SYN" });
        }
        if f.RST {
            flags.push("RST");
        }
        for flag in flags {
            count(
                "tcp_flags_total",
                spec,
                vec![("flag", flag.into()), ("family", family.into())],
            );
        }
    }
    if let Some(spec) = config.get(MetricKind::PortDistribution)
        && flow.verdict == Verdict::Forwarded
        && flow.is_reply != Some(true)
    {
        let port = match &flow.l4 {
            Some(Layer4::Tcp(t)) => Some(t.destination_port),
            Some(Layer4::Udp(u)) => Some(u.destination_port),
            Some(Layer4::Sctp(s)) => Some(s.destination_port),
            Some(Layer4::IcmpV4(_) | Layer4::IcmpV6(_)) => Some(0),
            _ => None,
        };
        if let Some(port) = port {
            count(
                "port_distribution_total",
                spec,
                vec![("protocol", protocol.into()), ("port", port.to_string())],
            );
        }
    }
    if let Some(spec) = config.get(MetricKind::Icmp) {
        let icmp = match &flow.l4 {
            Some(Layer4::IcmpV4(i)) => Some((false, i)),
            Some(Layer4::IcmpV6(i)) => Some((true, i)),
            _ => None,
        };
        if let Some((v6, i)) = icmp {
            count(
                "icmp_total",
                spec,
                vec![
                    ("family", if v6 { "IPv6" } else { "IPv4" }.into()),
                    (
                        "type",
                        IcmpType(v6, i.icmp_type as u8, i.code as u8).to_string(),
                    ),
                ],
            );
        }
    }
    if let Some(spec) = config.get(MetricKind::Policy)
        && event.event_type == 5
        && src.identity != 1
    {
        let direction = format!("{direction}").to_lowercase();
        let matched = match flow.policy_match_type {
            0 => "none",
            1 => "l3-only",
            2 => "l3-l4",
            3 => "l4-only",
            4 => "all",
            5 => "l3-proto",
            6 => "proto-only",
            _ => "unknown",
        };
        count(
            "policy_verdicts_total",
            spec,
            vec![
                ("direction", direction),
                ("match", matched.into()),
                ("action", flow.verdict.as_str().to_lowercase()),
            ],
        );
    }
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

#[test]
fn fast_path_agrees_with_hubbles_handlers_on_full_flows() {
    let configs = [
        EXAMPLE,
        "flow:sourceContext=pod|ip;destinationContext=namespace|reserved-identity,\
         drop:labelsContext=source_namespace,source_pod,destination_ip,traffic_direction,\
         tcp:sourceContext=app|identity;destinationContext=pod-short,\
         port-distribution:destinationContext=workload-name|pod-name|dns|ip;labelsContext=source_app,\
         icmp:sourceContext=reserved-identity|namespace,\
         policy:sourceEgressContext=namespace;sourceIngressContext=pod;destinationContext=ip",
    ];
    for text in configs {
        let config = MetricsConfig::parse(text).unwrap();
        let mut r = rig_with(Some(config.clone()), "flowscope", 16_383);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let v4 = [CLIENT, SERVER, DB, HOST, WORLD, "198.51.100.7"];
        let v6 = [CLIENT6, SERVER6, WORLD6];
        let mut events = Vec::new();
        for _ in 0..4000 {
            let six = rng.next().is_multiple_of(4);
            let addrs: &[&str] = if six { &v6 } else { &v4 };
            let (src, dst) = (rng.pick(addrs), rng.pick(addrs));
            events.push(ev(src, dst, |e| {
                e.proto = match rng.pick(&[6u8, 6, 6, 17, 17, 1, 132, 47]) {
                    1 if six => 58,
                    p => p,
                };
                e.kind = rng.pick(&[kind::NEW, kind::TCP_FLAGS, kind::DROP, kind::SUMMARY]);
                e.verdict = rng.pick(&[
                    verdict::FORWARDED,
                    verdict::FORWARDED,
                    verdict::DROPPED,
                    verdict::AUDIT,
                ]);
                e.drop_reason = rng.pick(&[0, 133, 181, 140, 250]);
                e.hook = rng.pick(&[hook::INGRESS, hook::EGRESS]);
                e.origin_hook = rng.pick(&[hook::INGRESS, hook::EGRESS]);
                e.ifindex = rng.pick(&[IF_POD, IF_NET, 99]);
                e.is_reply = rng.pick(&[0, 0, 1]);
                e.tcp_flags = (rng.next() & 0x1ff) as u16;
                e.icmp_type = rng.pick(&[0, 3, 8, 11, 128, 129, 135, 42]);
                e.icmp_code = rng.pick(&[0, 1, 3, 4, 9]);
                e.sport = rng.pick(&[7, 40_000, 51_234]);
                e.dport = rng.pick(&[7, 53, 80, 443, 5432, 61_000]);
                e.policy_verdict = rng.pick(&[0, 0, 1]);
                e.policy_match = (rng.next() % 8) as u8;
            }));
        }
        for batch in events.chunks(97) {
            r.pipeline.process(batch);
        }
        let mut cached = Vec::new();
        let mut pos = 0;
        loop {
            let read = r.store.read(pos, u64::MAX, 1024, &mut cached);
            pos = read.pos;
            assert_eq!(read.lost, 0);
            if read.copied == 0 {
                break;
            }
        }
        let mut expected = BTreeMap::new();
        for c in &cached {
            hubble_reference(c.flow().unwrap(), &config, &mut expected);
        }
        let families = [
            "flows_processed_total",
            "drop_total",
            "tcp_flags_total",
            "port_distribution_total",
            "icmp_total",
            "policy_verdicts_total",
        ];
        let got: BTreeMap<String, f64> = scrape(&r.exporter)
            .into_iter()
            .filter(|(k, _)| {
                families
                    .iter()
                    .any(|f| k.starts_with(&format!("flowscope_{f}{{")))
            })
            .collect();
        let missing: Vec<_> = expected
            .iter()
            .filter(|(k, v)| got.get(*k) != Some(v))
            .collect();
        let extra: Vec<_> = got
            .iter()
            .filter(|(k, _)| !expected.contains_key(*k))
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "config {text}\nexpected but not scraped: {missing:#?}\nscraped but not expected: {extra:#?}"
        );
        assert!(expected.len() > 100, "a varied sample: {}", expected.len());
    }
}

fn app_state(store: Arc<FlowStore>) -> Arc<AppState> {
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let state = AppState::new(store, "node-1", 1024, rx);
    state.ready.store(true, Ordering::Relaxed);
    Arc::new(state)
}

#[test]
fn health_is_read_from_the_observers_own_state() {
    let store = Arc::new(FlowStore::new(1023).unwrap());
    let state = app_state(store.clone());
    let counters = Arc::new(PipelineCounters::default());
    let (exporter, recorder) = setup(
        &Prefix::default(),
        None,
        Some(Health {
            state: state.clone(),
            counters: counters.clone(),
        }),
    );
    let mut decoder = Decoder::new("node-1");
    decoder.set_registry(Arc::new(Endpoints::build(&pods(true))));
    let mut pipeline = Pipeline::new(decoder, store, counters.clone());
    pipeline.set_metrics(recorder);
    pipeline.process(&[ev(CLIENT, SERVER, |_| {}), ev(CLIENT, SERVER, |_| {})]);
    pipeline.note_malformed(2);
    state.subscribers.store(3, Ordering::Relaxed);
    state.ring_lost.store(5, Ordering::Relaxed);
    {
        let mut rt = state.runtime.lock().unwrap();
        rt.datapath.packets = 100;
        rt.datapath.events_lost = 6;
        rt.datapath.connections_created = 40;
        rt.datapath.conntrack_full = 1;
        rt.interfaces = vec![flowscope_model::api::AttachedInterface {
            name: "eth0".into(),
            index: 2,
        }];
        rt.registry = Arc::new(Endpoints::build(&pods(true)));
        rt.policy = Some(PolicyStatus {
            revision: 4,
            policies: 2,
            errors: vec!["bad.yaml: unknown field".into()],
            ..PolicyStatus::default()
        });
    }
    let s = scrape(&exporter);
    for (name, value) in [
        ("flowscope_observer_events_decoded_total", 2.0),
        ("flowscope_observer_events_malformed_total", 2.0),
        ("flowscope_observer_flows", 2.0),
        ("flowscope_observer_flows_capacity", 1023.0),
        ("flowscope_observer_flows_stored_total", 2.0),
        ("flowscope_observer_subscribers", 3.0),
        ("flowscope_datapath_packets_total", 100.0),
        ("flowscope_datapath_events_lost_total", 6.0),
        ("flowscope_datapath_conntrack_created_total", 40.0),
        ("flowscope_datapath_conntrack_full_total", 1.0),
        ("flowscope_datapath_interfaces", 1.0),
        ("flowscope_endpoints", 3.0),
        ("flowscope_policy_revision", 4.0),
        ("flowscope_policy_errors", 1.0),
        ("flowscope_policies", 2.0),
    ] {
        assert_sample(&s, name, &[], value);
    }
    assert_sample(
        &s,
        "flowscope_lost_events_total",
        &[("source", "hubble_ring_buffer")],
        5.0,
    );
    // No flow metrics configured: no flow families.
    assert!(!s.keys().any(|k| k.contains("flows_processed")), "{s:#?}");
}

#[test]
fn accept_header_picks_the_format() {
    let prometheus = "application/openmetrics-text;version=1.0.0,\
        application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    for (accept, format) in [
        (Some(prometheus), Format::OpenMetrics),
        (Some("application/openmetrics-text"), Format::OpenMetrics),
        (Some("text/plain;version=0.0.4"), Format::Text),
        (Some("*/*"), Format::Text),
        (None, Format::Text),
        (Some("application/openmetrics-text;q=0"), Format::Text),
        (
            Some("application/openmetrics-text; version=1.0.0; q=0.5, text/plain; q=0.9"),
            Format::Text,
        ),
        (Some("application/json"), Format::Text),
    ] {
        assert_eq!(Format::negotiate(accept), format, "{accept:?}");
    }
}

/// One HTTP/1.1 request on a fresh connection: status line, headers (lower-cased names) and body.
async fn get(
    addr: std::net::SocketAddr,
    path: &str,
    accept: Option<&str>,
) -> (String, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n{accept}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().to_string();
    let content_type = lines
        .filter_map(|l| l.split_once(": "))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.to_string())
        .unwrap_or_default();
    (status, content_type, body.to_string())
}

#[tokio::test]
async fn serves_text_or_openmetrics_as_asked() {
    let mut r = rig("flow");
    r.pipeline.process(&[ev(CLIENT, SERVER, |_| {})]);
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, r.exporter.clone(), async {
        let _ = stopped.await;
    }));

    let (status, content_type, body) = get(addr, "/metrics", None).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(
        body.contains("# TYPE flowscope_flows_processed_total counter"),
        "{body}"
    );
    assert!(!body.contains("# EOF"));

    let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let (status, content_type, body) = get(addr, "/metrics", Some(accept)).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(
        body.contains("# TYPE flowscope_flows_processed counter"),
        "{body}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");

    let (status, _, _) = get(addr, "/", None).await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");

    // The port is taken now: a second bind fails with an error naming the address and flag.
    let err = bind(addr).await.unwrap_err().to_string();
    assert!(
        err.contains(&addr.to_string()) && err.contains("--metrics-listen"),
        "{err}"
    );

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
