//! Per-packet run time of the kernel programs deciding a new connection against 10, 1,000 and
//! 10,000 policy rules, measured by the kernel itself (BPF_PROG_TEST_RUN with repeat): the
//! policy decision must not get slower with more rules. The packet is a TCP SYN leaving a pod
//! isolated for egress, to an address inside one of the rules' CIDRs (so the ipcache prefix
//! lookup walks a trie of N prefixes) on a port no rule allows: every policy lookup misses,
//! the connection is dropped and reported. That is the longest path a packet can take; it is
//! taken again by every packet (a dropped connection is never cached). Rules name /32s
//! (host entries: a hash lookup) or /24s (the longest-prefix trie). Needs root.
//!
//! Run: `cargo bench -p flowscope-observer --bench policy_lookup`

use flowscope_common::PROG_INGRESS;
use flowscope_observer::source::datapath::Datapath;

#[path = "support/policy.rs"]
mod policy_support;

const BATCH: u32 = 20_000; // events of one batch fit the ring buffer (4 MiB)
const BATCHES: usize = 15;

fn syn(dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut p = vec![2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 0xa, 0x08, 0x00];
    p.extend_from_slice(&[0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0]);
    p.extend_from_slice(&[198, 18, 7, 1]);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&40000u16.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    p
}

fn main() -> anyhow::Result<()> {
    for prefix in [32, 24] {
        measure(prefix)?;
    }
    Ok(())
}

fn measure(prefix: u8) -> anyhow::Result<()> {
    println!(
        "policy decision for a new connection, rules to distinct /{prefix}s, all lookups missing (kernel-measured):"
    );
    let mut results = Vec::new();
    for rules in [10u32, 1_000, 10_000] {
        let mut dp = Datapath::load(&Default::default(), &[])?;
        let mut ring = dp.take_events()?;
        let ifindex = policy_support::test_ifindex(&mut dp, &mut ring, &syn([198, 18, 250, 1], 9))?;
        let cidr = |i: u32| match prefix {
            32 => format!("198.19.{}.{}/32", i / 250, i % 250 + 1),
            _ => format!("{}.{}.{}.0/24", 10 + i / 65_536, i / 256 % 256, i % 256),
        };
        policy_support::install_egress_rules(&mut dp, ifindex, rules, cidr)?;
        let middle = rules / 2;
        let dst = match prefix {
            32 => [198, 19, (middle / 250) as u8, (middle % 250 + 1) as u8],
            _ => [
                10 + (middle / 65_536) as u8,
                (middle / 256 % 256) as u8,
                (middle % 256) as u8,
                7,
            ],
        };
        let packet = syn(dst, 81);
        let mut per_batch = Vec::new();
        for _ in 0..BATCHES {
            let (ret, avg) = dp.test_run(PROG_INGRESS, &packet, BATCH)?;
            assert_eq!(ret, 2, "the SYN must be dropped (TC_ACT_SHOT)");
            while ring.next().is_some() {}
            per_batch.push(avg.as_nanos() as f64);
        }
        per_batch.sort_by(f64::total_cmp);
        let median = per_batch[per_batch.len() / 2];
        println!(
            "  {rules:>6} rules: median {median:6.1} ns/packet over {BATCHES} x {BATCH} runs (min {:.1}, max {:.1})",
            per_batch[0],
            per_batch[per_batch.len() - 1]
        );
        results.push(median);
    }
    println!(
        "  10,000-rule / 10-rule run time: {:.3} (1.0 = flat; throughput ratio {:.3})",
        results[2] / results[0],
        results[0] / results[2]
    );
    Ok(())
}
