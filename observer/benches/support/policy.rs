//! What the kernel-measured datapath benches share: the interface their test runs appear on,
//! and an egress policy of N rules on it.

use aya::maps::{MapData, RingBuf};
use flowscope_common::{
    ENFORCE_EGRESS, EndpointInfo, POLICY_ALLOW, PROG_INGRESS, PolicyKey, PolicyValue, direction,
};
use flowscope_observer::source::datapath::Datapath;

/// The interface index test runs use, learnt from the event of running `packet` (which must
/// cause one).
pub fn test_ifindex(
    dp: &mut Datapath,
    ring: &mut RingBuf<MapData>,
    packet: &[u8],
) -> anyhow::Result<u32> {
    dp.test_run(PROG_INGRESS, packet, 1)?;
    let item = ring
        .next()
        .ok_or_else(|| anyhow::anyhow!("no event for the first packet"))?;
    // SAFETY: the record is a FlowEvent written by the datapath.
    let ev: flowscope_common::FlowEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
    Ok(ev.ifindex)
}

/// Isolates the endpoint behind `ifindex` for egress and installs `rules` rules for it: rule
/// `i` allows TCP port 1000 + i % 50,000 to `cidr(i)`, under identity 2^24 + i.
pub fn install_egress_rules(
    dp: &mut Datapath,
    ifindex: u32,
    rules: u32,
    cidr: impl Fn(u32) -> String,
) -> anyhow::Result<()> {
    let endpoint = EndpointInfo {
        endpoint_id: 7,
        identity: 300,
        flags: ENFORCE_EGRESS,
        _pad: 0,
    };
    let ipcache = (0..rules)
        .map(|i| Ok((cidr(i).parse()?, (1 << 24) + i)))
        .collect::<anyhow::Result<Vec<_>>>()?;
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
    Ok(())
}
