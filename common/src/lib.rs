//! Layouts shared by the kernel programs (`ebpf/`) and the observer.
//!
//! Every type here crosses the kernel boundary byte for byte, so each is `#[repr(C)]`, has no
//! `bool` (a `u8` instead), spells out its padding, and has its size pinned at compile time: a
//! change on one side that the other side does not see fails the build instead of misreading
//! events at run time.
#![no_std]

/// Ring buffer of [`FlowEvent`]s, kernel -> observer.
pub const MAP_EVENTS: &str = "FLOWSCOPE_EVENTS";
/// LRU hash of [`CtKey`] -> [`CtEntry`]: one entry per connection and interface.
pub const MAP_CONNTRACK: &str = "FLOWSCOPE_CT";
/// LPM trie of [`DenyKey`] -> [`DenyValue`]: the static deny list.
pub const MAP_DENY: &str = "FLOWSCOPE_DENY";
/// Per-CPU array of `u64` counters indexed by the `STAT_*` constants.
pub const MAP_STATS: &str = "FLOWSCOPE_STATS";
/// Array with one [`Config`].
pub const MAP_CONFIG: &str = "FLOWSCOPE_CONFIG";

/// LPM trie of [`IpKey`] -> [`IdentityValue`]: the security identity behind an address
/// (pods as /32 and /128, CIDR identities for policy prefixes); a miss means `world`.
pub const MAP_IPCACHE: &str = "FLOWSCOPE_IPCACHE";
/// Hash of [`IpKey`] -> [`IdentityValue`]: the ipcache's host entries (/32, /128: pods, host
/// CIDRs), looked up before [`MAP_IPCACHE`], which then holds only shorter prefixes. Most
/// lookups are for pods, and a hash lookup does not get slower as the trie grows.
pub const MAP_IPCACHE_HOSTS: &str = "FLOWSCOPE_IPCACHE_HOSTS";
/// Hash of interface index -> [`EndpointInfo`]: the local endpoint behind a pod's veth.
pub const MAP_ENDPOINTS: &str = "FLOWSCOPE_ENDPOINTS";
/// Hash of [`PolicyKey`] -> [`PolicyValue`]: the compiled policy of every local endpoint.
pub const MAP_POLICY: &str = "FLOWSCOPE_POLICY";
/// LPM trie of [`PolicyRangeKey`] -> [`PolicyValue`]: policy entries for blocks of ports
/// (`endPort` ranges), consulted only for endpoints with [`RANGES_INGRESS`] / [`RANGES_EGRESS`].
pub const MAP_POLICY_RANGES: &str = "FLOWSCOPE_POLICY_RANGES";
/// Hash of [`IpKey`] -> interface index: the addresses of the local endpoints whose ingress
/// policy sends some connections through the L7 proxy. A new TCP connection to one of them is
/// judged by that endpoint's ingress policy where it enters the node (tc ingress of the
/// client's veth or of the uplink), because only there can it be handed to the proxy's
/// socket (`bpf_sk_assign` works on tc ingress only).
pub const MAP_L7_INGRESS: &str = "FLOWSCOPE_L7_INGRESS";
/// Sockmap of the L7 proxy's listeners, indexed by [`proxy_socket`].
pub const MAP_PROXY_SOCKETS: &str = "FLOWSCOPE_PROXY_SOCKETS";

/// Array of `u64` the programs never touch: what one observer leaves for the next one that
/// adopts the pinned datapath (slots in [`handover`]).
pub const MAP_HANDOVER: &str = "FLOWSCOPE_HANDOVER";

/// Slots of [`MAP_HANDOVER`].
pub mod handover {
    /// CPUs whose lost-event counts are handed over; later CPUs share the last slot.
    pub const CPUS: u32 = 256;
    /// Slots `0..CPUS`: per CPU, the `STAT_EVENTS_LOST` count the observer has already reported
    /// as lost events. The next observer reports only what the ring buffer lost after that.
    pub const LOST_REPORTED: u32 = 0;
    /// The Unix time (ns) of the observer's last heartbeat (once a second): how long the
    /// datapath ran with no observer reading it.
    pub const HEARTBEAT: u32 = CPUS;
    pub const SLOTS: u32 = CPUS + 1;
}

/// The maps that outlive the observer when it pins the datapath: everything the programs
/// judge and count by, and the ring buffer that keeps events for the next observer. (The
/// proxy's sockmap and the per-CPU scratch belong to one observer's programs.)
pub const PINNED_MAPS: [&str; 12] = [
    MAP_EVENTS,
    MAP_CONNTRACK,
    MAP_DENY,
    MAP_STATS,
    MAP_CONFIG,
    MAP_IPCACHE,
    MAP_IPCACHE_HOSTS,
    MAP_ENDPOINTS,
    MAP_POLICY,
    MAP_POLICY_RANGES,
    MAP_L7_INGRESS,
    MAP_HANDOVER,
];

/// Bumped when what a pinned map's bytes mean changes without its type or sizes changing. The
/// pinned maps' layout is this and every pinned map's type, sizes and flags: an observer
/// adopts pinned maps only of its own layout, and replaces the others.
pub const LAYOUT_VERSION: u32 = 2;

/// Names of the two tc programs in the object file.
pub const PROG_INGRESS: &str = "flowscope_ingress";
pub const PROG_EGRESS: &str = "flowscope_egress";
/// The socket lookup program (`sk_lookup`, attached to the node's network namespace) that
/// gives connections handed to the L7 proxy its listener.
pub const PROG_PROXY_LOOKUP: &str = "flowscope_proxy_lookup";

/// Slots of [`MAP_PROXY_SOCKETS`]: a listener per policy side and family.
pub mod proxy_socket {
    pub const INGRESS_V4: u32 = 0;
    pub const INGRESS_V6: u32 = 1;
    pub const EGRESS_V4: u32 = 2;
    pub const EGRESS_V6: u32 = 3;
    pub const COUNT: u32 = 4;
}

/// Ring buffer size: 4 MiB holds about 35,000 events, several milliseconds of a saturated
/// observer at its measured rate, so bursts are absorbed without loss. Must be a power of two
/// and a multiple of the page size.
pub const EVENTS_RING_BYTES: u32 = 4 << 20;
/// The datapath wakes the observer only when this much is waiting in the ring buffer (64
/// events); below it, the observer looks on its own every [`EVENTS_POLL_MS`]. A wakeup per event
/// costs a self-interrupt per event, several microseconds on a virtual machine.
pub const EVENTS_WAKEUP_BYTES: u64 = 64 * EVENT_RECORD_BYTES;
/// One event in the ring buffer: the record and its 8-byte header.
pub const EVENT_RECORD_BYTES: u64 = core::mem::size_of::<FlowEvent>() as u64 + 8;
/// How often the observer drains events that did not reach [`EVENTS_WAKEUP_BYTES`].
pub const EVENTS_POLL_MS: u64 = 10;
/// Conntrack capacity. LRU: when full, the least recently used connection is forgotten (and
/// re-reported as new if it shows up again) rather than new connections going untracked.
pub const CONNTRACK_ENTRIES: u32 = 262_144;
/// Capacity of the deny list trie.
pub const DENY_ENTRIES: u32 = 16_384;
/// Addresses with a known identity: pods of the node and cluster plus policy CIDRs.
pub const IPCACHE_ENTRIES: u32 = 65_536;
/// Local endpoints (pods) on one node.
pub const ENDPOINT_ENTRIES: u32 = 4_096;
/// Compiled policy entries for all local endpoints; the compiler refuses a set that needs more.
pub const POLICY_ENTRIES: u32 = 262_144;
/// Port-block entries, both generations together.
pub const POLICY_RANGE_ENTRIES: u32 = 65_536;
/// Addresses of local endpoints with L7 ingress rules: an IPv4 and an IPv6 address for every
/// endpoint.
pub const L7_INGRESS_ENTRIES: u32 = 2 * ENDPOINT_ENTRIES;

/// Reserved identities, as Cilium numbers them.
pub mod identity {
    pub const HOST: u32 = 1;
    pub const WORLD: u32 = 2;
}

// Indices into MAP_STATS.
/// Packets seen by any flowscope program.
pub const STAT_PACKETS: u32 = 0;
/// Packets too short or malformed for their headers; passed untouched.
pub const STAT_TRUNCATED: u32 = 1;
/// Packets that are not IPv4/IPv6 (ARP, LLDP, ...); passed untouched.
pub const STAT_NON_IP: u32 = 2;
/// Events written to the ring buffer.
pub const STAT_EVENTS: u32 = 3;
/// Events lost because the ring buffer was full (reservation failed).
pub const STAT_EVENTS_LOST: u32 = 4;
/// Packets dropped by the datapath.
pub const STAT_DROPPED: u32 = 5;
/// Conntrack entries created.
pub const STAT_CT_CREATED: u32 = 6;
/// Conntrack inserts that failed.
pub const STAT_CT_FULL: u32 = 7;
/// IP fragments after the first (no L4 header): tracked by addresses only.
pub const STAT_FRAGMENTS: u32 = 8;
/// New TCP connections handed to the L7 proxy's listener.
pub const STAT_PROXY_REDIRECTS: u32 = 9;
/// New TCP connections that needed the L7 proxy and were dropped instead (its listener missing,
/// a failed assignment, or a connection that reached its endpoint without passing it).
pub const STAT_PROXY_FAILURES: u32 = 10;
pub const STAT_COUNT: u32 = 11;

/// Why the datapath emitted an event (`FlowEvent::kind`).
pub mod kind {
    /// First packet of a connection on this interface.
    pub const NEW: u8 = 1;
    /// The first packet in the reply direction, or a TCP control flag (SYN, FIN, RST) not seen
    /// before in its direction.
    pub const TCP_FLAGS: u8 = 2;
    /// The packet was dropped; emitted for every dropped packet.
    pub const DROP: u8 = 3;
    /// Periodic packet and byte counts of a long-lived connection.
    pub const SUMMARY: u8 = 4;
    /// Never sent by the datapath: the observer's policy-verdict event, derived from a NEW or
    /// DROP event whose `policy_verdict` is set (Cilium's policy verdict notification).
    pub const POLICY_VERDICT: u8 = 5;
    /// A DNS message (UDP port 53) with its first bytes: sent as an [`super::L7Event`] when
    /// [`super::CONFIG_DNS`] is set, besides the packet's own events.
    pub const DNS: u8 = 6;
    /// A TCP segment on one of [`super::Config::http_ports`] that starts an HTTP/1.x request
    /// or response head: sent as an [`super::L7Event`] when [`super::CONFIG_HTTP`] is set.
    pub const HTTP: u8 = 7;
}

/// Which policy map key decided a connection; numbered as Hubble's `policy_match_type`
/// (Cilium's `PolicyMatch*`).
pub mod policy_match {
    /// No entry matched.
    pub const NONE: u8 = 0;
    /// (identity, any protocol, any port).
    pub const L3_ONLY: u8 = 1;
    /// (identity, protocol, port).
    pub const L3_L4: u8 = 2;
    /// (any identity, protocol, port).
    pub const L4_ONLY: u8 = 3;
    /// (any, any, any).
    pub const ALL: u8 = 4;
    /// (identity, protocol, any port).
    pub const L3_PROTO: u8 = 5;
    /// (any identity, protocol, any port).
    pub const PROTO_ONLY: u8 = 6;
}

/// tc hook that saw the packet.
pub mod hook {
    pub const INGRESS: u8 = 0;
    pub const EGRESS: u8 = 1;
}

/// Datapath verdicts; numbered as Hubble's `Verdict` enum.
pub mod verdict {
    pub const FORWARDED: u8 = 1;
    pub const DROPPED: u8 = 2;
    /// Would have been dropped; passed because the policy runs in audit mode.
    pub const AUDIT: u8 = 4;
}

/// Drop reasons; numbered as Cilium's `DropReason` (bpf/lib/common.h).
pub mod drop_reason {
    /// No rule allows the connection where a policy isolates the endpoint.
    pub const POLICY_DENIED: u8 = 133;
    /// The L7 proxy's listener was not found: the proxy is not running. Fails closed.
    pub const SOCKET_LOOKUP_FAILED: u8 = 178;
    /// Handing the connection to the proxy's listener failed.
    pub const SOCKET_ASSIGN_FAILED: u8 = 179;
    /// The connection needs the L7 proxy but cannot be handed to it: it reached its endpoint
    /// without entering the node through an interface flowscope watches (a connection from the
    /// node itself, or translated before flowscope saw it), or it is already under way (no
    /// SYN) when first seen.
    pub const PROXY_REDIRECTION_NOT_SUPPORTED: u8 = 180;
    /// An explicit deny rule matched.
    pub const POLICY_DENY: u8 = 181;
}

/// How a connection involves the L7 proxy (`FlowEvent::proxy`).
pub mod proxy {
    /// Not at all.
    pub const NONE: u8 = 0;
    /// Handed to the proxy by the destination endpoint's ingress policy. The event carries
    /// that endpoint's interface and the egress hook, as if seen where it would have entered
    /// the pod.
    pub const TO_INGRESS: u8 = 1;
    /// Handed to the proxy by the source endpoint's egress policy.
    pub const TO_EGRESS: u8 = 2;
    /// Opened by the proxy towards the original destination (its upstream side).
    pub const FROM: u8 = 3;
}

/// Packet marks (`skb->mark`) of the L7 proxy's traffic, in the bits [`MARK_MASK`] covers
/// (the nibble Cilium also uses; kube-proxy uses 0x4000 and 0x8000).
pub mod mark {
    /// The bits flowscope reads and writes.
    pub const MASK: u32 = 0x0f00;
    /// Set by the datapath on packets for the proxy's sockets: a policy routing rule sends
    /// them to the local table (`ip rule add fwmark 0xa00/0xf00 lookup ...`).
    pub const TO_PROXY: u32 = 0x0a00;
    /// Set by the proxy on its upstream sockets (`SO_MARK`): never redirected again.
    pub const FROM_PROXY: u32 = 0x0b00;
}

/// `CtEntry::proxy`: the connection's packets the datapath marks for the proxy.
pub mod ct_proxy {
    /// The client's connection, handed to the proxy by the server's ingress rules: packets in
    /// the original direction entering the node are marked [`super::mark::TO_PROXY`], and the
    /// socket lookup program gives it the ingress listener.
    pub const DOWNSTREAM_INGRESS: u8 = 1;
    /// The proxy's own connection to the server: replies entering the node are marked, so
    /// they reach the proxy's transparent socket rather than the client whose address it uses.
    pub const UPSTREAM: u8 = 2;
    /// As [`DOWNSTREAM_INGRESS`], handed over by the client's egress rules.
    pub const DOWNSTREAM_EGRESS: u8 = 3;
}

/// TCP flag bits in `FlowEvent::tcp_flags`: the 8 bits of the TCP header's flags byte
/// (FIN=0x01 ... CWR=0x80), plus NS from the data-offset byte as bit 8.
pub mod tcp {
    pub const FIN: u16 = 0x01;
    pub const SYN: u16 = 0x02;
    pub const RST: u16 = 0x04;
    pub const PSH: u16 = 0x08;
    pub const ACK: u16 = 0x10;
    pub const URG: u16 = 0x20;
    pub const ECE: u16 = 0x40;
    pub const CWR: u16 = 0x80;
    pub const NS: u16 = 0x100;
    /// Flags whose first appearance per direction is reported (as Cilium's monitor
    /// aggregation does).
    pub const REPORTED: u16 = FIN | SYN | RST;
    /// Not a TCP flag: marks in `CtEntry::flags_seen` that a direction has carried a packet, so
    /// the first packet of each direction (a UDP answer, say) is reported too.
    pub const FIRST_SEEN: u16 = 0x8000;
}

pub const FAMILY_IPV4: u8 = 4;
pub const FAMILY_IPV6: u8 = 6;

/// One event from the datapath: a connection opened, changed TCP state, had a packet dropped, or
/// reports its counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowEvent {
    /// `bpf_ktime_get_boot_ns()` at the packet.
    pub ts_ns: u64,
    /// Packets and bytes of the connection so far: `[original direction, reply direction]`.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    /// Addresses as on the wire (network order); IPv4 uses the first 4 bytes.
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub ifindex: u32,
    /// Ports in host order; for ICMP echo both are the echo identifier, otherwise 0.
    pub sport: u16,
    pub dport: u16,
    /// One of [`kind`].
    pub kind: u8,
    /// Hook of this packet, one of [`hook`].
    pub hook: u8,
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`].
    pub family: u8,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, 132 SCTP, ...).
    pub proto: u8,
    /// One of [`verdict`].
    pub verdict: u8,
    /// 1 when this packet travels against the connection's original direction.
    pub is_reply: u8,
    /// One of [`drop_reason`] when `verdict` is DROPPED, else 0.
    pub drop_reason: u8,
    /// Hook on which the connection's first packet was seen: with the interface's role it gives
    /// the connection's traffic direction.
    pub origin_hook: u8,
    /// This packet's TCP flags ([`tcp`]).
    pub tcp_flags: u16,
    /// 802.1Q VLAN id of the packet, 0 when untagged.
    pub vlan: u16,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
    /// 1 when an endpoint's policy judged this connection in an enforced direction, or a
    /// policy entry matched: the observer then also reports a policy-verdict event.
    pub policy_verdict: u8,
    /// Which key of the policy map matched, one of [`policy_match`] (NONE when none did).
    pub policy_match: u8,
    /// Length of this packet in bytes.
    pub pkt_len: u32,
    /// Index of the deny-list rule that dropped the packet (with `policy_ref` 0).
    pub rule: u32,
    /// `PolicyValue::policy_ref + 1` of the policy entry that decided the connection; 0 when no
    /// policy entry was involved (no policy map, or an isolated endpoint with no match).
    pub policy_ref: u32,
    /// One of [`proxy`]: how the connection involves the L7 proxy.
    pub proxy: u8,
    pub _pad: [u8; 7],
}
const _: () = assert!(core::mem::size_of::<FlowEvent>() == 128);
const _: () = assert!(core::mem::align_of::<FlowEvent>() == 8);

/// Bytes of a payload the datapath copies for L7 visibility: a whole classic (non-EDNS) DNS
/// message, or an HTTP request or response head of ordinary size. A power of two (the
/// datapath masks the length with it).
pub const L7_PAYLOAD_MAX: usize = 512;

/// A DNS message ([`kind::DNS`]) or the start of an HTTP head ([`kind::HTTP`]): the packet's
/// header fields and the first bytes of its payload, for the observer's L7 flows. Nothing else
/// of a payload leaves the kernel, and the observer keeps only the L7 fields it parses.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct L7Event {
    pub flow: FlowEvent,
    /// Bytes of `payload` that hold data (the rest is not written).
    pub len: u16,
    pub _pad: [u8; 6],
    pub payload: [u8; L7_PAYLOAD_MAX],
}
const _: () = assert!(core::mem::size_of::<L7Event>() == 648);

/// TCP ports [`Config::http_ports`] holds at most.
pub const HTTP_PORTS_MAX: usize = 8;

/// Conntrack key: one connection as seen on one interface, its two ends in a canonical order
/// (the end with the lower address, then port, as `saddr`/`sport`), so a packet finds its
/// connection with one lookup whichever way it travels; [`CtEntry::origin_swapped`] says which
/// end opened it. (Layout 1 keyed the original direction and looked replies up reversed.)
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey {
    pub ifindex: u32,
    pub family: u8,
    pub proto: u8,
    pub _pad: u16,
    pub sport: u16,
    pub dport: u16,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<CtKey>() == 44);

/// Conntrack state of one connection. Its times are `bpf_ktime_get_coarse_ns()` (cheap, a few
/// milliseconds of resolution); events carry the precise boot clock instead.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtEntry {
    pub created_ns: u64,
    pub last_report_ns: u64,
    /// `[original, reply]`, updated with atomic adds from every CPU.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    /// TCP flags already reported per direction.
    pub flags_seen: [u16; 2],
    pub origin_hook: u8,
    /// One of [`ct_proxy`], or 0.
    pub proxy: u8,
    /// 1 when the connection's first packet ran from the key's `daddr` to its `saddr`: a
    /// packet's direction (original or reply) is whether its own order matches.
    pub origin_swapped: u8,
    pub _pad: u8,
}
const _: () = assert!(core::mem::size_of::<CtEntry>() == 56);

/// Deny list key for the LPM trie: `proto`, `family` and `port` are matched exactly (they lead
/// the key and every stored prefix covers them); `addr` is matched by prefix. A rule for any
/// port stores port 0; a rule for any protocol stores proto 0 and port 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DenyKey {
    pub proto: u8,
    pub family: u8,
    /// Destination port, network order so the prefix bits run in key order.
    pub port_be: u16,
    pub addr: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<DenyKey>() == 20);
/// Bits of [`DenyKey`] before `addr`: always part of a stored prefix.
pub const DENY_KEY_FIXED_BITS: u32 = 32;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DenyValue {
    /// Index of the rule in the observer's deny list, reported back in `FlowEvent::rule`.
    pub rule: u32,
}

/// Datapath settings written by the observer at start.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// A connection reports its counters at most this often (0: never).
    pub summary_interval_ns: u64,
    /// [`CONFIG_AUDIT`] and friends.
    pub flags: u64,
    /// With [`CONFIG_HTTP`]: the TCP ports whose HTTP heads are reported (0: unused slot).
    pub http_ports: [u16; HTTP_PORTS_MAX],
    /// The L7 proxy's listeners (on 127.0.0.1 and ::1) for connections redirected by ingress
    /// and by egress rules; 0 when the proxy is not running (a redirect then drops).
    pub proxy_port_ingress: u16,
    pub proxy_port_egress: u16,
    pub _pad: u32,
}
/// Policy audit mode: evaluate and report, drop nothing (verdict AUDIT instead of DROPPED).
pub const CONFIG_AUDIT: u64 = 1;
/// The active policy generation (0 or 1). A new policy set is written under the inactive
/// generation, then this bit flips: a packet reads it once and sees one complete set, never a
/// mix. [`MAP_ENDPOINTS`] keys and `EndpointInfo::endpoint_id` carry the generation in bit 31.
pub const CONFIG_GENERATION: u64 = 2;
/// Report DNS messages on UDP port 53 as [`L7Event`]s (L7 DNS visibility).
pub const CONFIG_DNS: u64 = 4;
/// Report HTTP/1.x heads on [`Config::http_ports`] as [`L7Event`]s (L7 HTTP visibility).
pub const CONFIG_HTTP: u64 = 8;
/// Some local endpoint's ingress policy sends connections to the L7 proxy: new TCP connections
/// entering the node look their destination up in [`MAP_L7_INGRESS`].
pub const CONFIG_L7_INGRESS: u64 = 16;
/// Bit 31 of endpoint keys and ids: the policy generation they belong to.
pub const GENERATION_SHIFT: u32 = 31;

/// Key of [`MAP_IPCACHE`]: `family` leads and is always covered by the prefix.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IpKey {
    pub family: u8,
    pub _pad: [u8; 3],
    pub addr: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<IpKey>() == 20);
/// Bits of [`IpKey`] before `addr`.
pub const IP_KEY_FIXED_BITS: u32 = 32;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdentityValue {
    pub identity: u32,
}

/// A local endpoint, by the interface its traffic crosses.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointInfo {
    pub endpoint_id: u32,
    pub identity: u32,
    /// [`ENFORCE_INGRESS`] | [`ENFORCE_EGRESS`]: a policy isolates that direction, so a
    /// connection no entry allows is dropped.
    pub flags: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<EndpointInfo>() == 16);
pub const ENFORCE_INGRESS: u32 = 1;
pub const ENFORCE_EGRESS: u32 = 2;
/// The endpoint has port-block entries in [`MAP_POLICY_RANGES`] for that direction.
pub const RANGES_INGRESS: u32 = 4;
pub const RANGES_EGRESS: u32 = 8;

/// Policy directions, from the local endpoint's point of view.
pub mod direction {
    pub const INGRESS: u8 = 1;
    pub const EGRESS: u8 = 2;
}

/// Key of [`MAP_POLICY`]. `remote_identity`, `port` and `proto` use 0 as "any"; the datapath
/// tries the most specific key first (see `ebpf/src/datapath.rs`, `policy_lookup`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyKey {
    pub endpoint_id: u32,
    pub remote_identity: u32,
    pub port: u16,
    pub proto: u8,
    pub direction: u8,
}
const _: () = assert!(core::mem::size_of::<PolicyKey>() == 12);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyValue {
    /// [`POLICY_ALLOW`] or [`POLICY_DENY`].
    pub action: u8,
    /// [`POLICY_FLAG_PROXY`], or 0.
    pub flags: u8,
    pub _pad: [u8; 2],
    /// Index of the entry's policies in the observer's attribution table, reported in
    /// `FlowEvent::rule`.
    pub policy_ref: u32,
}
/// Key of [`MAP_POLICY_RANGES`]: everything before `port_be` is always covered by the
/// prefix, then the leading bits of the port (big-endian, so a prefix is a block of ports).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyRangeKey {
    pub endpoint_id: u32,
    /// A pod's or CIDR identity, or 0 for any.
    pub remote_identity: u32,
    pub direction: u8,
    pub proto: u8,
    pub port_be: u16,
}
const _: () = assert!(core::mem::size_of::<PolicyRangeKey>() == 12);
/// Bits of [`PolicyRangeKey`] before `port_be`.
pub const POLICY_RANGE_KEY_FIXED_BITS: u32 = 80;

pub const POLICY_ALLOW: u8 = 1;
pub const POLICY_DENY: u8 = 2;
/// An allow entry whose traffic goes through the L7 proxy, which judges every request by the
/// policy's HTTP rules (`PolicyValue::flags`).
pub const POLICY_FLAG_PROXY: u8 = 1;

#[cfg(feature = "user")]
mod user {
    // SAFETY: all of these are repr(C) plain data with explicit padding and no pointers, so any
    // byte pattern of the right size is a valid value.
    unsafe impl aya::Pod for super::FlowEvent {}
    unsafe impl aya::Pod for super::CtKey {}
    unsafe impl aya::Pod for super::CtEntry {}
    unsafe impl aya::Pod for super::DenyKey {}
    unsafe impl aya::Pod for super::DenyValue {}
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::IpKey {}
    unsafe impl aya::Pod for super::IdentityValue {}
    unsafe impl aya::Pod for super::EndpointInfo {}
    unsafe impl aya::Pod for super::PolicyKey {}
    unsafe impl aya::Pod for super::PolicyRangeKey {}
    unsafe impl aya::Pod for super::PolicyValue {}
}
