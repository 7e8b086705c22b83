//! What the observer's benches share: synthetic datapath events for a registry of pods, and an
//! observer's API state around a flow store.

use std::sync::Arc;

use flowscope_common::{FlowEvent, hook, kind, tcp, verdict};
use flowscope_observer::{
    api::AppState,
    endpoints::{EndpointSpec, Registry},
    parse::{Decoder, InterfaceInfo},
    pipeline::FlowStore,
};

/// A runtime on the calling thread: each side of a bench (observer, subscribers) is one.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Events per batch, as the ring buffer reader hands them over.
pub const BATCH: usize = 1024;

/// The `i`th new TCP connection from one of the registry's client pods to its server.
pub fn event(i: u64) -> FlowEvent {
    let mut e = FlowEvent {
        ts_ns: flowscope_observer::clock::BootClock::boot_now_ns(),
        packets: [1, 0],
        bytes: [60, 0],
        ifindex: 1,
        sport: (i % 50_000) as u16 + 10_000,
        dport: 80,
        kind: kind::NEW,
        hook: hook::INGRESS,
        family: 4,
        proto: 6,
        verdict: verdict::FORWARDED,
        tcp_flags: tcp::SYN,
        pkt_len: 60,
        ..FlowEvent::default()
    };
    e.saddr[..4].copy_from_slice(&[198, 18, (i >> 16) as u8, (i >> 8) as u8]);
    e.daddr[..4].copy_from_slice(&[198, 19, 0, 1]);
    e
}

/// Sources 198.18.0.0/18 are pods in 16 namespaces, the destination a server pod.
pub fn registry() -> Registry {
    let mut specs: Vec<EndpointSpec> = (0..16_384u32)
        .map(|i| EndpointSpec {
            namespace: format!("ns-{}", i % 16),
            pod_name: format!("client-{i}"),
            ips: vec![std::net::Ipv4Addr::new(198, 18, (i >> 8) as u8, i as u8).into()],
            labels: [("app".to_string(), format!("client-{}", i % 16))].into(),
            ..EndpointSpec::default()
        })
        .collect();
    specs.push(EndpointSpec {
        namespace: "shop".into(),
        pod_name: "server-0".into(),
        ips: vec![std::net::Ipv4Addr::new(198, 19, 0, 1).into()],
        ..EndpointSpec::default()
    });
    Registry::build(&specs)
}

/// A decoder that knows [`registry`]'s pods, behind interface 1.
pub fn decoder() -> Decoder {
    let mut decoder = Decoder::new("bench");
    decoder.set_registry(Arc::new(registry()));
    decoder.set_interfaces(
        [(
            1,
            InterfaceInfo {
                name: "lxc0".into(),
                endpoint: true,
            },
        )]
        .into(),
    );
    decoder
}

/// The API's state around `store`; `shutdown` ends its streams.
pub fn state(store: Arc<FlowStore>, shutdown: tokio::sync::watch::Receiver<bool>) -> Arc<AppState> {
    let state = AppState::new(store, "bench", 1024, shutdown);
    state
        .ready
        .store(true, std::sync::atomic::Ordering::Relaxed);
    Arc::new(state)
}
