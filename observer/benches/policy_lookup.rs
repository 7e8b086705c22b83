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

use flowscope_common::{
    ENFORCE_EGRESS, EndpointInfo, POLICY_ALLOW, PROG_INGRESS, PolicyKey, PolicyValue, direction,
};
use flowscope_observer::source::datapath::Datapath;

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
        // The interface test runs use: learnt from a first event.
        dp.test_run(PROG_INGRESS, &syn([198, 18, 250, 1], 9), 1)?;
        let ifindex = {
            let item = ring.next().expect("an event");
            // SAFETY: the record is a FlowEvent written by the datapath.
            let ev: flowscope_common::FlowEvent =
                unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            ev.ifindex
        };
        let endpoint = EndpointInfo {
            endpoint_id: 7,
            identity: 300,
            flags: ENFORCE_EGRESS,
            _pad: 0,
        };
        let cidr = |i: u32| match prefix {
            32 => format!("198.19.{}.{}/32", i / 250, i % 250 + 1),
            _ => format!("{}.{}.{}.0/24", 10 + i / 65_536, i / 256 % 256, i % 256),
        };
        let ipcache: Vec<_> = (0..rules)
            .map(|i| (cidr(i).parse().unwrap(), (1 << 24) + i))
            .collect();
        let entries: Vec<_> = (0..rules)
            .map(|i| {
                (
                    PolicyKey {
                        endpoint_id: 7,
                        remote_identity: (1 << 24) + i,
                        port: 1000 + (i % 50_000) as u16,
                        proto: 6,
                        direction: direction::EGRESS,
                    },
                    PolicyValue {
                        action: POLICY_ALLOW,
                        flags: 0,
                        _pad: [0; 2],
                        policy_ref: i,
                    },
                )
            })
            .collect();
        dp.install_policy(&[(ifindex, endpoint)], &entries, &[], &ipcache, &[])?;
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
