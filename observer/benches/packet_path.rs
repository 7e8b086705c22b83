//! Per-packet run time of the tc programs by the path a packet takes, measured by the kernel
//! itself (BPF_PROG_TEST_RUN): a packet of an established connection in its original direction
//! and in the reply direction (the fast path: one conntrack lookup, counters, no event), and
//! the first packet of a new connection (parse, conntrack miss, deny list, policy, insert,
//! event). Each without a policy and with a 10,000-rule policy on the endpoint, which the fast
//! path must not notice. Established packets run `REPEAT` times per call; new connections take
//! one call each (every call a fresh source port), so their figure includes the call's own
//! timing. Needs root.
//!
//! Run: `cargo bench -p flowscope-observer --bench packet_path`

use flowscope_common::{PROG_EGRESS, PROG_INGRESS, tcp};
use flowscope_observer::source::datapath::Datapath;

#[path = "support/policy.rs"]
mod policy_support;

const REPEAT: u32 = 100_000;
const ROUNDS: usize = 15;
const NEW_CONNECTIONS: u16 = 20_000;

const CLIENT: [u8; 4] = [198, 18, 7, 1];

/// An Ethernet + IPv4 + TCP packet without payload.
fn tcp_packet(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, flags: u16) -> Vec<u8> {
    let mut p = vec![2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 0xa, 0x08, 0x00];
    p.extend_from_slice(&[0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[
        0,
        0,
        0,
        1,
        0,
        0,
        0,
        1,
        0x50,
        flags as u8,
        0xff,
        0xff,
        0,
        0,
        0,
        0,
    ]);
    p
}

fn drain(ring: &mut aya::maps::RingBuf<aya::maps::MapData>) {
    while ring.next().is_some() {}
}

struct Figures {
    min: f64,
    median: f64,
    max: f64,
}

fn spread(mut v: Vec<f64>) -> Figures {
    v.sort_by(f64::total_cmp);
    Figures {
        min: v[0],
        median: v[v.len() / 2],
        max: v[v.len() - 1],
    }
}

fn main() -> anyhow::Result<()> {
    println!(
        "per-packet run time of the tc programs by path (ns, kernel-measured; min/median/max over {ROUNDS} rounds)"
    );
    println!(
        "  {:<8} {:<34} {:>8} {:>8} {:>8}",
        "policy", "path", "min", "median", "max"
    );
    for rules in [0u32, 10_000] {
        measure(rules)?;
    }
    Ok(())
}

fn measure(rules: u32) -> anyhow::Result<()> {
    let mut dp = Datapath::load(&Default::default(), &[])?;
    let mut ring = dp.take_events()?;
    // The server: with a policy, the address of its middle rule, on that rule's port.
    let middle = rules / 2;
    let (server, port) = if rules == 0 {
        ([198, 18, 7, 2], 8080)
    } else {
        (
            [198, 19, (middle / 250) as u8, (middle % 250 + 1) as u8],
            1000 + (middle % 50_000) as u16,
        )
    };
    if rules > 0 {
        let ifindex = policy_support::test_ifindex(
            &mut dp,
            &mut ring,
            &tcp_packet(CLIENT, [198, 18, 250, 1], 1, 9, tcp::SYN),
        )?;
        drain(&mut ring);
        policy_support::install_egress_rules(&mut dp, ifindex, rules, |i| {
            format!("198.19.{}.{}/32", i / 250, i % 250 + 1)
        })?;
        // A port no rule allows is dropped: the policy is in force.
        let (ret, _) = dp.test_run(
            PROG_INGRESS,
            &tcp_packet(CLIENT, server, 2, port + 1, tcp::SYN),
            1,
        )?;
        anyhow::ensure!(ret == 2, "a port outside the policy must be dropped");
        drain(&mut ring);
    }
    let label = if rules == 0 {
        "none".to_string()
    } else {
        format!("{rules} rules")
    };
    // Opened by a SYN, then established in both directions.
    let syn = tcp_packet(CLIENT, server, 40_000, port, tcp::SYN);
    let (ret, _) = dp.test_run(PROG_INGRESS, &syn, 1)?;
    anyhow::ensure!(ret != 2, "the connection must be allowed");
    let synack = tcp_packet(server, CLIENT, port, 40_000, tcp::SYN | tcp::ACK);
    dp.test_run(PROG_EGRESS, &synack, 1)?;
    let ack = tcp_packet(CLIENT, server, 40_000, port, tcp::ACK);
    let reply = tcp_packet(server, CLIENT, port, 40_000, tcp::ACK);
    dp.test_run(PROG_INGRESS, &ack, 1)?;
    dp.test_run(PROG_EGRESS, &reply, 1)?;
    drain(&mut ring);
    let events_before = dp.stats()?.counters[flowscope_common::STAT_EVENTS as usize];
    for (path, prog, packet) in [
        ("established, original direction", PROG_INGRESS, &ack),
        ("established, reply direction", PROG_EGRESS, &reply),
    ] {
        let mut runs = Vec::new();
        for _ in 0..ROUNDS {
            let (ret, avg) = dp.test_run(prog, packet, REPEAT)?;
            anyhow::ensure!(ret != 2, "an established packet must pass");
            runs.push(avg.as_nanos() as f64);
        }
        let f = spread(runs);
        println!(
            "  {label:<8} {path:<34} {:>8.1} {:>8.1} {:>8.1}",
            f.min, f.median, f.max
        );
    }
    let events = dp.stats()?.counters[flowscope_common::STAT_EVENTS as usize] - events_before;
    anyhow::ensure!(
        events == 0,
        "established packets must not be reported, {events} events"
    );
    // New connections: one call each, a fresh source port each.
    let mut rounds = Vec::new();
    for round in 0..ROUNDS {
        let mut total = 0f64;
        for i in 0..NEW_CONNECTIONS / ROUNDS as u16 {
            let sport = 1024 + round as u16 * (NEW_CONNECTIONS / ROUNDS as u16) + i;
            let (ret, d) = dp.test_run(
                PROG_INGRESS,
                &tcp_packet(CLIENT, server, sport, port, tcp::SYN),
                1,
            )?;
            anyhow::ensure!(ret != 2, "a new connection must be allowed");
            total += d.as_nanos() as f64;
        }
        drain(&mut ring);
        rounds.push(total / f64::from(NEW_CONNECTIONS / ROUNDS as u16));
    }
    let f = spread(rounds);
    println!(
        "  {label:<8} {:<34} {:>8.1} {:>8.1} {:>8.1}",
        "new connection (SYN, allowed)", f.min, f.median, f.max
    );
    Ok(())
}
