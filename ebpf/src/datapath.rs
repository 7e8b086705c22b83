//! The tc programs, their maps, and the per-packet path: parse -> conntrack -> verdict -> event.

use aya_ebpf::{
    bindings::{
        BPF_NOEXIST, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, TC_ACT_SHOT,
        TC_ACT_UNSPEC, bpf_sock_tuple,
    },
    helpers::{
        bpf_ktime_get_boot_ns, bpf_ktime_get_coarse_ns, bpf_sk_release, bpf_skb_load_bytes,
        bpf_skc_lookup_tcp,
    },
    macros::{classifier, map, sk_lookup},
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf, SockMap, lpm_trie::Key},
    programs::{SkLookupContext, TcContext},
};
use flowscope_common::{
    CONFIG_AUDIT, CONFIG_DNS, CONFIG_GENERATION, CONFIG_HTTP, CONFIG_L7_INGRESS, CONNTRACK_ENTRIES,
    Config, CtEntry, CtKey, DENY_ENTRIES, DENY_KEY_FIXED_BITS, DenyKey, DenyValue,
    ENDPOINT_ENTRIES, ENFORCE_EGRESS, ENFORCE_INGRESS, EVENT_RECORD_BYTES, EVENTS_RING_BYTES,
    EVENTS_WAKEUP_BYTES, EndpointInfo, FAMILY_IPV4, FAMILY_IPV6, FlowEvent, GENERATION_SHIFT,
    HTTP_PORTS_MAX, IP_KEY_FIXED_BITS, IPCACHE_ENTRIES, IdentityValue, IpKey, L7_INGRESS_ENTRIES,
    L7_PAYLOAD_MAX, L7Event, POLICY_DENY, POLICY_ENTRIES, POLICY_FLAG_PROXY, POLICY_RANGE_ENTRIES,
    POLICY_RANGE_KEY_FIXED_BITS, PolicyKey, PolicyRangeKey, PolicyValue, RANGES_EGRESS,
    RANGES_INGRESS, STAT_COUNT, STAT_CT_CREATED, STAT_CT_FULL, STAT_DROPPED, STAT_EVENTS,
    STAT_EVENTS_LOST, STAT_FRAGMENTS, STAT_NON_IP, STAT_PACKETS, STAT_PROXY_FAILURES,
    STAT_PROXY_REDIRECTS, STAT_TRUNCATED, ct_proxy, direction, drop_reason, handover, hook,
    identity, kind, mark, policy_match, proxy, proxy_socket, tcp, verdict,
};

#[map(name = "FLOWSCOPE_EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_RING_BYTES, 0);

#[map(name = "FLOWSCOPE_CT")]
static CONNTRACK: LruHashMap<CtKey, CtEntry> = LruHashMap::with_max_entries(CONNTRACK_ENTRIES, 0);

#[map(name = "FLOWSCOPE_DENY")]
static DENY: LpmTrie<DenyKey, DenyValue> = LpmTrie::with_max_entries(DENY_ENTRIES, 0);

#[map(name = "FLOWSCOPE_IPCACHE")]
static IPCACHE: LpmTrie<IpKey, IdentityValue> = LpmTrie::with_max_entries(IPCACHE_ENTRIES, 0);

#[map(name = "FLOWSCOPE_IPCACHE_HOSTS")]
static IPCACHE_HOSTS: HashMap<IpKey, IdentityValue> = HashMap::with_max_entries(IPCACHE_ENTRIES, 0);

#[map(name = "FLOWSCOPE_POLICY_RANGES")]
static POLICY_RANGES: LpmTrie<PolicyRangeKey, PolicyValue> =
    LpmTrie::with_max_entries(POLICY_RANGE_ENTRIES, 0);

#[map(name = "FLOWSCOPE_ENDPOINTS")]
static ENDPOINTS: HashMap<u32, EndpointInfo> = HashMap::with_max_entries(ENDPOINT_ENTRIES, 0);

#[map(name = "FLOWSCOPE_POLICY")]
static POLICY: HashMap<PolicyKey, PolicyValue> = HashMap::with_max_entries(POLICY_ENTRIES, 0);

#[map(name = "FLOWSCOPE_L7_INGRESS")]
static L7_INGRESS: HashMap<IpKey, u32> = HashMap::with_max_entries(L7_INGRESS_ENTRIES, 0);

#[map(name = "FLOWSCOPE_PROXY_SOCKETS")]
static PROXY_SOCKETS: SockMap = SockMap::with_max_entries(proxy_socket::COUNT, 0);

#[map(name = "FLOWSCOPE_STATS")]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_COUNT, 0);

/// Per-CPU working memory for one program run. The BPF stack is 512 bytes and the verifier
/// counts every inlined temporary; the packet, its reversed key and the new conntrack entry
/// live here instead.
#[repr(C)]
struct Scratch {
    pkt: Packet,
    /// The packet's key reversed: its conntrack key when its ends are out of canonical order.
    rev: CtKey,
    entry: CtEntry,
    ip: Key<IpKey>,
    /// The proxy listener's address, for `bpf_skc_lookup_tcp`.
    tuple: bpf_sock_tuple,
}

#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Written and read by the observer only (`flowscope_common::handover`): what one observer
/// leaves for the next that adopts the pinned maps.
#[map(name = "FLOWSCOPE_HANDOVER")]
static HANDOVER: Array<u64> = Array::with_max_entries(handover::SLOTS, 0);

#[map(name = "FLOWSCOPE_CONFIG")]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
const ETH_HLEN: usize = 14;

const EEXIST: i32 = 17;

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_SCTP: u8 = 132;

/// The observer only watches; when it has no opinion the next program (or the stack) decides.
const PASS: i32 = TC_ACT_UNSPEC;

#[classifier]
pub fn flowscope_ingress(ctx: TcContext) -> i32 {
    classify(&ctx, hook::INGRESS)
}

#[classifier]
pub fn flowscope_egress(ctx: TcContext) -> i32 {
    classify(&ctx, hook::EGRESS)
}

#[inline(always)]
fn classify(ctx: &TcContext, hook: u8) -> i32 {
    count(STAT_PACKETS);
    match try_classify(ctx, hook) {
        Ok(action) => action,
        Err(Skip::Truncated) => {
            count(STAT_TRUNCATED);
            PASS
        }
        Err(Skip::NotIp) => {
            count(STAT_NON_IP);
            PASS
        }
    }
}

/// Why a packet is passed without being tracked.
enum Skip {
    Truncated,
    NotIp,
}

/// Header fields of one packet, as the rest of the path needs them.
#[repr(C)]
struct Packet {
    key: CtKey,
    smac: [u8; 6],
    dmac: [u8; 6],
    vlan: u16,
    tcp_flags: u16,
    icmp_type: u8,
    icmp_code: u8,
    len: u32,
    /// Offset of a UDP packet's payload, else 0.
    payload_off: u32,
}

/// Reads a whole header with one `bpf_skb_load_bytes` call, which also reaches paged data.
/// One call per header rather than per field keeps the per-packet helper calls at three for a
/// TCP/IPv4 packet; direct packet access would save those too, but LLVM rewrites its bounds
/// checks for variable offsets into a form the verifier cannot follow.
#[inline(always)]
fn load<T>(ctx: &TcContext, off: usize) -> Result<T, Skip> {
    ctx.load::<T>(off).map_err(|_| Skip::Truncated)
}

#[inline(always)]
fn be16(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

#[inline(always)]
fn try_classify(ctx: &TcContext, hook: u8) -> Result<i32, Skip> {
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return Ok(PASS);
    };
    // SAFETY: this CPU's scratch slot; a tc program run is not preempted by another on the
    // same CPU, so nothing else uses it until we return.
    let scratch = unsafe { &mut *scratch };
    parse(ctx, &mut scratch.pkt)?;
    let pkt = &scratch.pkt;

    // One lookup whichever way the packet travels: the key has the connection's ends in
    // canonical order, and the entry says which end opened it.
    let (ct_key, swapped) = canonical(&pkt.key, &mut scratch.rev);
    let mut entry = CONNTRACK.get_ptr_mut(ct_key);
    let dir = match entry {
        // SAFETY: a valid entry pointer for this program run.
        Some(e) => usize::from(unsafe { (*e).origin_swapped } != u8::from(swapped)),
        None => 0,
    };
    // A SYN on the tuple of a connection that has ended (FIN or RST seen): a new connection
    // reusing the ports, judged afresh like any other (and handed to the proxy again if its
    // policy says so), not a packet of the old one.
    let reused = match entry {
        // SAFETY: a valid entry pointer for this program run.
        Some(e) if dir == 0 => unsafe {
            pkt.tcp_flags & (tcp::SYN | tcp::ACK) == tcp::SYN
                && ((*e).flags_seen[0] | (*e).flags_seen[1]) & (tcp::FIN | tcp::RST) != 0
        },
        _ => false,
    };
    if reused {
        let _ = CONNTRACK.remove(ct_key);
        entry = None;
    }
    let Some(entry) = entry else {
        let (action, proxied) = new_connection(ctx, scratch, hook, swapped);
        if action != TC_ACT_SHOT && !proxied {
            l7(ctx, &scratch.pkt, hook, 0);
        }
        return Ok(action);
    };
    // SAFETY: the pointer comes from a successful map lookup and stays valid for this program run;
    // counters are updated with atomic adds because every CPU may hit the same entry.
    let e = unsafe { &mut *entry };
    atomic_add(&mut e.packets[dir], 1);
    atomic_add(&mut e.bytes[dir], pkt.len as u64);
    if e.proxy != 0 {
        // The client's packets to the proxy, and the server's answers to the proxy's
        // transparent upstream socket, are routed to the local stack by their mark (the
        // policy routing rule the proxy installs); a socket lookup there finds the proxy's.
        let to_proxy = hook == hook::INGRESS
            && ((dir == 0 && e.proxy != ct_proxy::UPSTREAM)
                || (dir == 1 && e.proxy == ct_proxy::UPSTREAM));
        if to_proxy {
            set_proxy_mark(ctx);
        }
    }
    let fresh = (pkt.tcp_flags & tcp::REPORTED | tcp::FIRST_SEEN) & !e.flags_seen[dir];
    if fresh != 0 {
        e.flags_seen[dir] |= fresh;
        emit(
            pkt,
            &Counts::of(e),
            &forwarded(kind::TCP_FLAGS, hook, dir, pkt.key.ifindex),
        );
    } else if let Some(interval) = summary_interval() {
        // The coarse clock (a few ms resolution, no clock read) suffices to pace summaries;
        // events carry the precise boot clock, read only when one is emitted.
        // SAFETY: helper without side effects.
        let now = unsafe { bpf_ktime_get_coarse_ns() };
        if now.wrapping_sub(e.last_report_ns) >= interval {
            e.last_report_ns = now;
            emit(
                pkt,
                &Counts::of(e),
                &forwarded(kind::SUMMARY, hook, dir, pkt.key.ifindex),
            );
        }
    }
    // The proxy reports the requests of its connections itself.
    if e.proxy == 0 {
        l7(ctx, pkt, hook, dir);
    }
    Ok(PASS)
}

/// L7 visibility of a forwarded packet with a payload: a DNS message (UDP port 53 on either
/// side, with DNS visibility on), or a segment starting an HTTP/1.x head on one of the HTTP
/// ports (with HTTP visibility on). Its first bytes go to the observer as an [`L7Event`]. Per
/// packet this costs a few compares, and for TCP segments on an HTTP port one 8-byte load.
#[inline(always)]
fn l7(ctx: &TcContext, pkt: &Packet, hook: u8, dir: usize) {
    if pkt.payload_off == 0 || pkt.len <= pkt.payload_off {
        return;
    }
    let Some(config) = CONFIG.get(0) else {
        return;
    };
    if pkt.key.proto == IPPROTO_UDP {
        if (pkt.key.sport == 53 || pkt.key.dport == 53) && config.flags & CONFIG_DNS != 0 {
            emit_l7(ctx, pkt, hook, dir);
        }
        return;
    }
    if pkt.key.proto != IPPROTO_TCP || config.flags & CONFIG_HTTP == 0 {
        return;
    }
    let mut on_port = false;
    for i in 0..HTTP_PORTS_MAX {
        let p = config.http_ports[i];
        if p != 0 && (p == pkt.key.dport || p == pkt.key.sport) {
            on_port = true;
        }
    }
    if !on_port {
        return;
    }
    let Ok(head) = ctx.load::<[u8; 8]>(pkt.payload_off as usize) else {
        return;
    };
    let starts_head = matches!(
        &head[..4],
        b"GET " | b"POST" | b"PUT " | b"DELE" | b"HEAD" | b"PATC" | b"OPTI" | b"CONN" | b"TRAC"
    ) || &head[..7] == b"HTTP/1.";
    if starts_head {
        emit_l7(ctx, pkt, hook, dir);
    }
}

/// Sends the packet's first payload bytes: a DNS message for UDP, an HTTP head for TCP (the
/// kind follows from the protocol rather than a sixth-register argument).
#[inline(never)]
fn emit_l7(ctx: &TcContext, pkt: &Packet, hook: u8, dir: usize) {
    let l7_kind = if pkt.key.proto == IPPROTO_UDP {
        kind::DNS
    } else {
        kind::HTTP
    };
    let avail = pkt.len.saturating_sub(pkt.payload_off);
    if avail == 0 {
        return;
    }
    let len = if avail > L7_PAYLOAD_MAX as u32 {
        L7_PAYLOAD_MAX as u32
    } else {
        avail
    };
    let Some(mut slot) = EVENTS.reserve::<L7Event>(0) else {
        count(STAT_EVENTS_LOST);
        return;
    };
    let ev = slot.as_mut_ptr();
    let counts = Counts {
        packets: [0; 2],
        bytes: [0; 2],
        origin_hook: hook,
    };
    // The verifier must see the length within 1..=L7_PAYLOAD_MAX; LLVM rewrites the bounds
    // above into a form it cannot follow, so the bound is applied again to an opaque value.
    let len = (core::hint::black_box(len - 1) & (L7_PAYLOAD_MAX as u32 - 1)) + 1;
    // SAFETY: `ev` points to a reserved, exclusively owned slot of size_of::<L7Event>()
    // bytes; `len` is 1..=L7_PAYLOAD_MAX, the size of `payload`.
    let copied = unsafe {
        fill(
            &mut (*ev).flow,
            pkt,
            &counts,
            &forwarded(l7_kind, hook, dir, pkt.key.ifindex),
        );
        (*ev).len = len as u16;
        (*ev)._pad = [0; 6];
        bpf_skb_load_bytes(
            ctx.skb.skb.cast(),
            pkt.payload_off,
            (*ev).payload.as_mut_ptr().cast(),
            len,
        )
    };
    if copied != 0 {
        slot.discard(0);
        return;
    }
    submit(slot, L7_RECORD_BYTES);
}

/// Bytes an [`L7Event`] takes in the ring buffer (record header included).
const L7_RECORD_BYTES: u64 = core::mem::size_of::<L7Event>() as u64 + 8;

/// First packet of a connection on this interface: decide, remember, report. Returns the
/// action and whether the connection is the L7 proxy's (handed to it, or opened by it).
/// `swapped`: the packet's ends are out of canonical order, and `scratch.rev` holds its key
/// reversed.
#[inline(always)]
fn new_connection(ctx: &TcContext, scratch: &mut Scratch, hook: u8, swapped: bool) -> (i32, bool) {
    let pkt = &scratch.pkt;
    let denied_by_list = denied(&pkt.key);
    let mut decision = match denied_by_list {
        Some(_) => Decision::deny_listed(),
        None => policy(pkt, &mut scratch.ip, hook),
    };
    let mut verdict = decision.verdict;
    if verdict == verdict::DROPPED && denied_by_list.is_none() && audit_mode() {
        verdict = verdict::AUDIT;
    }
    // The L7 proxy: which side of it this connection is, if any.
    let mut proxy = proxy::NONE;
    // For a connection handed over by the destination's ingress policy: that decision.
    let mut ingress = Decision::pass();
    let mut ingress_ifindex = 0u32;
    if pkt.key.proto == IPPROTO_TCP && denied_by_list.is_none() && verdict != verdict::DROPPED {
        if hook == hook::EGRESS {
            if skb_mark(ctx) & mark::MASK == mark::FROM_PROXY {
                // The proxy's own connection to the server: L3/L4 is judged as ever, and an
                // entry that sends the traffic through the proxy admits it, since the proxy
                // applied the HTTP rules to each request. It reports those itself.
                proxy = proxy::FROM;
                decision.evaluated = false;
            } else if decision.proxy {
                // This endpoint's ingress rules need the proxy, but the connection reached
                // the endpoint without being handed to it: fail closed (audit mode lets it
                // pass, reported, as it does every connection the policy would drop).
                count(STAT_PROXY_FAILURES);
                verdict = if audit_mode() {
                    verdict::AUDIT
                } else {
                    verdict::DROPPED
                };
                decision.drop_reason = drop_reason::PROXY_REDIRECTION_NOT_SUPPORTED;
                // The entry allows the traffic (through the proxy): naming it on a drop would
                // read as "allowed by".
                decision.policy_ref = 0;
            }
        } else if decision.proxy {
            proxy = proxy::TO_EGRESS;
        } else if let Some((ifindex, d)) = l7_ingress(pkt, &mut scratch.ip) {
            proxy = proxy::TO_INGRESS;
            ingress = d;
            ingress_ifindex = ifindex;
        }
    }
    if proxy == proxy::TO_EGRESS || proxy == proxy::TO_INGRESS {
        let port = proxy_port(proxy);
        let reason = if pkt.tcp_flags & (tcp::SYN | tcp::ACK) != tcp::SYN {
            // Already under way when first seen (conntrack lost it, or the policy changed
            // since it opened): the proxy has no socket for it.
            drop_reason::PROXY_REDIRECTION_NOT_SUPPORTED
        } else {
            proxy_listening(ctx, pkt.key.family, &mut scratch.tuple, port)
        };
        if reason == 0 {
            count(STAT_PROXY_REDIRECTS);
            set_proxy_mark(ctx);
        } else {
            count(STAT_PROXY_FAILURES);
            verdict = verdict::DROPPED;
            if proxy == proxy::TO_INGRESS {
                decision = ingress;
                decision.evaluated = true;
            }
            decision.drop_reason = reason;
            decision.policy_ref = 0;
            proxy = proxy::NONE;
        }
    }
    if verdict == verdict::DROPPED {
        count(STAT_DROPPED);
        let report = Report {
            kind: kind::DROP,
            hook,
            dir: 0,
            verdict,
            drop_reason: decision.drop_reason,
            rule: denied_by_list.unwrap_or(0),
            policy_ref: decision.policy_ref,
            policy_verdict: decision.evaluated as u8,
            policy_match: decision.policy_match,
            ifindex: pkt.key.ifindex,
            proxy: proxy::NONE,
        };
        emit(pkt, &Counts::first(pkt, hook), &report);
        // No conntrack entry: every later packet of a denied connection is judged again (and
        // reported), and an attacker cannot fill the table with connections that never open.
        return (TC_ACT_SHOT, false);
    }
    let e = &mut scratch.entry;
    // SAFETY: helper without side effects.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    e.created_ns = now;
    e.last_report_ns = now;
    e.packets = [1, 0];
    e.bytes = [pkt.len as u64, 0];
    e.flags_seen = [pkt.tcp_flags & tcp::REPORTED | tcp::FIRST_SEEN, 0];
    e.origin_hook = hook;
    e.proxy = match proxy {
        proxy::NONE => 0,
        proxy::FROM => ct_proxy::UPSTREAM,
        proxy::TO_INGRESS => ct_proxy::DOWNSTREAM_INGRESS,
        _ => ct_proxy::DOWNSTREAM_EGRESS,
    };
    e.origin_swapped = u8::from(swapped);
    e._pad = 0;
    let ct_key = if swapped { &scratch.rev } else { &pkt.key };
    match CONNTRACK.insert(ct_key, &*e, BPF_NOEXIST as u64) {
        Ok(()) => count(STAT_CT_CREATED),
        // Another CPU inserted the same connection first: it reports it.
        Err(err) if err == -EEXIST => return (PASS, proxy != proxy::NONE),
        Err(_) => count(STAT_CT_FULL),
    }
    let mut report = forwarded(kind::NEW, hook, 0, pkt.key.ifindex);
    report.verdict = verdict;
    report.drop_reason = if verdict == verdict::AUDIT {
        decision.drop_reason
    } else {
        0
    };
    report.policy_ref = decision.policy_ref;
    report.policy_verdict = decision.evaluated as u8;
    report.policy_match = decision.policy_match;
    report.proxy = if proxy == proxy::TO_INGRESS {
        proxy::NONE
    } else {
        proxy
    };
    emit(pkt, &Counts::first(pkt, hook), &report);
    if proxy == proxy::TO_INGRESS {
        // The destination's ingress decision, reported as if the connection had reached its
        // interface (where it is judged when no proxy is involved).
        let mut report = forwarded(kind::NEW, hook::EGRESS, 0, ingress_ifindex);
        report.policy_ref = ingress.policy_ref;
        report.policy_verdict = 1;
        report.policy_match = ingress.policy_match;
        report.proxy = proxy::TO_INGRESS;
        emit(pkt, &Counts::first(pkt, hook::EGRESS), &report);
    }
    (PASS, proxy != proxy::NONE)
}

/// The listener port for connections handed over in this way (0: none).
#[inline(always)]
fn proxy_port(proxy: u8) -> u16 {
    match CONFIG.get(0) {
        Some(c) if proxy == proxy::TO_INGRESS => c.proxy_port_ingress,
        Some(c) => c.proxy_port_egress,
        None => 0,
    }
}

/// Whether the proxy's listener for this side is there (on the loopback address of the
/// family, `bpf_skc_lookup_tcp`): a connection that needs it and finds none is dropped here,
/// reported, instead of being refused later without a trace. The connection is handed to the
/// listener by [`flowscope_proxy_lookup`] when the stack looks for its socket. Returns 0, or
/// the drop reason.
#[inline(never)]
fn proxy_listening(ctx: &TcContext, family: u8, tuple: &mut bpf_sock_tuple, port: u16) -> u8 {
    if port == 0 {
        return drop_reason::SOCKET_LOOKUP_FAILED;
    }
    // SAFETY: writing plain fields of a union in this CPU's scratch slot.
    let size = unsafe {
        if family == FAMILY_IPV4 {
            let t = &mut tuple.__bindgen_anon_1.ipv4;
            t.saddr = 0;
            t.daddr = u32::from_be_bytes([127, 0, 0, 1]).to_be();
            t.sport = 0;
            t.dport = port.to_be();
            core::mem::size_of_val(t)
        } else {
            let t = &mut tuple.__bindgen_anon_1.ipv6;
            t.saddr = [0; 4];
            t.daddr = [0, 0, 0, 1u32.to_be()];
            t.sport = 0;
            t.dport = port.to_be();
            core::mem::size_of_val(t)
        }
    };
    // SAFETY: the helper gets this program's context and a tuple of the size given; the
    // socket reference it returns is released at once.
    unsafe {
        let sk = bpf_skc_lookup_tcp(ctx.skb.skb.cast(), tuple, size as u32, CURRENT_NETNS, 0);
        if sk.is_null() {
            return drop_reason::SOCKET_LOOKUP_FAILED;
        }
        bpf_sk_release(sk.cast());
    }
    0
}

/// The stack's socket lookup for a connection entering this namespace (`sk_lookup`, run before
/// the listener lookup, also for a SYN that meets a TIME_WAIT socket of an earlier connection
/// on the same ports): a connection the tc program handed to the proxy, as its conntrack entry
/// says, gets the proxy's listener for its side and family. Everything else is left to the
/// stack. A connection that needs the proxy and whose listener is gone is refused (fails
/// closed).
#[sk_lookup]
pub fn flowscope_proxy_lookup(ctx: SkLookupContext) -> u32 {
    const SK_DROP: u32 = 0;
    const SK_PASS: u32 = 1;
    const AF_INET: u32 = 2;
    // SAFETY: reading the context the kernel handed to this program.
    let l = unsafe { &*ctx.lookup };
    if l.protocol != IPPROTO_TCP as u32 {
        return SK_PASS;
    }
    let v4 = l.family == AF_INET;
    let mut key = CtKey {
        ifindex: l.ingress_ifindex,
        family: if v4 { FAMILY_IPV4 } else { FAMILY_IPV6 },
        proto: IPPROTO_TCP,
        _pad: 0,
        sport: u16::from_be(l.remote_port),
        dport: l.local_port as u16,
        saddr: [0; 16],
        daddr: [0; 16],
    };
    if v4 {
        key.saddr[..4].copy_from_slice(&l.remote_ip4.to_ne_bytes());
        key.daddr[..4].copy_from_slice(&l.local_ip4.to_ne_bytes());
    } else {
        for i in 0..4 {
            key.saddr[i * 4..i * 4 + 4].copy_from_slice(&l.remote_ip6[i].to_ne_bytes());
            key.daddr[i * 4..i * 4 + 4].copy_from_slice(&l.local_ip6[i].to_ne_bytes());
        }
    }
    // The connection's original direction (client to this listener's side), found under
    // its canonical key.
    let mut rev = CtKey::default();
    let (ct, swapped) = canonical(&key, &mut rev);
    // SAFETY: read-only lookup.
    let Some(e) = (unsafe { CONNTRACK.get(ct) }) else {
        return SK_PASS;
    };
    if e.origin_swapped != u8::from(swapped) {
        return SK_PASS;
    }
    let slot = match e.proxy {
        ct_proxy::DOWNSTREAM_INGRESS => proxy_socket::INGRESS_V4,
        ct_proxy::DOWNSTREAM_EGRESS => proxy_socket::EGRESS_V4,
        _ => return SK_PASS,
    } + u32::from(!v4);
    match PROXY_SOCKETS.redirect_sk_lookup(&ctx, slot, 0) {
        Ok(()) => SK_PASS,
        Err(_) => SK_DROP,
    }
}

/// `BPF_F_CURRENT_NETNS`: the socket lookup's namespace is the packet's device's.
const CURRENT_NETNS: u64 = u32::MAX as u64;

#[inline(always)]
fn skb_mark(ctx: &TcContext) -> u32 {
    // SAFETY: reading a field of the context the kernel handed to this program.
    unsafe { (*ctx.skb.skb).mark }
}

/// Marks the packet for the proxy, keeping the mark's bits flowscope does not own.
#[inline(always)]
fn set_proxy_mark(ctx: &TcContext) {
    ctx.set_mark(skb_mark(ctx) & !mark::MASK | mark::TO_PROXY);
}

/// A new TCP connection entering the node towards a local endpoint whose ingress policy may
/// send it through the proxy: that endpoint's ingress decision, if it does. Only endpoints
/// with such rules are in [`L7_INGRESS`]; the others cost one hash lookup.
#[inline(always)]
fn l7_ingress(pkt: &Packet, ip: &mut Key<IpKey>) -> Option<(u32, Decision)> {
    let config = CONFIG.get(0)?;
    if config.flags & CONFIG_L7_INGRESS == 0 {
        return None;
    }
    ip.data = IpKey {
        family: pkt.key.family,
        _pad: [0; 3],
        addr: pkt.key.daddr,
    };
    // SAFETY: read-only lookup.
    let ifindex = *unsafe { L7_INGRESS.get(&ip.data) }?;
    let generation = ((config.flags & CONFIG_GENERATION) != 0) as u32;
    // SAFETY: read-only lookup; the value stays valid for this program run.
    let ep = unsafe { ENDPOINTS.get(&(ifindex | (generation << GENERATION_SHIFT))) }?;
    let remote_identity = identity_of(ip, pkt.key.family, &pkt.key.saddr);
    let d = lookup(
        ep,
        remote_identity,
        direction::INGRESS,
        ep.flags & ENFORCE_INGRESS != 0,
        ep.flags & RANGES_INGRESS != 0,
        pkt,
    );
    (d.verdict == verdict::FORWARDED && d.proxy).then_some((ifindex, d))
}

/// The policy's word on a new connection.
#[derive(Clone, Copy)]
struct Decision {
    verdict: u8,
    drop_reason: u8,
    /// `PolicyValue::policy_ref + 1`, or 0.
    policy_ref: u32,
    /// An endpoint's policy judged it: enforced in this direction, or an entry matched.
    evaluated: bool,
    /// The key that matched, one of [`policy_match`].
    policy_match: u8,
    /// The entry sends the connection through the L7 proxy ([`POLICY_FLAG_PROXY`]).
    proxy: bool,
}

impl Decision {
    /// No endpoint policy involved.
    #[inline(always)]
    fn pass() -> Self {
        Decision {
            verdict: verdict::FORWARDED,
            drop_reason: 0,
            policy_ref: 0,
            evaluated: false,
            policy_match: policy_match::NONE,
            proxy: false,
        }
    }

    #[inline(always)]
    fn deny_listed() -> Self {
        Decision {
            verdict: verdict::DROPPED,
            drop_reason: drop_reason::POLICY_DENIED,
            ..Decision::pass()
        }
    }
}

/// Judges a connection of a local endpoint: egress when the packet leaves the pod (tc ingress
/// of its veth), ingress when it enters (tc egress). The remote side's identity comes from the
/// ipcache (a miss is `world`); the policy map is tried from the most specific key to the
/// least: (identity, proto, port), (identity, proto, any port), (any, proto, port),
/// (any, proto, any port), (identity, any, any), (any, any, any). No match: dropped when a
/// policy isolates the endpoint in that direction (unless the node itself connects in),
/// allowed otherwise.
#[inline(always)]
fn policy(pkt: &Packet, ip: &mut Key<IpKey>, hook: u8) -> Decision {
    // IPv6 link control — neighbour discovery (router/neighbour solicitations and
    // advertisements, redirects: 133-137) and multicast listener discovery (MLD queries,
    // reports, done: 130-132, 143) — is how a link works at all; policies are about
    // workloads, so it always passes, as in Cilium.
    if pkt.key.proto == IPPROTO_ICMPV6 && matches!(pkt.icmp_type, 130..=137 | 143) {
        return Decision::pass();
    }
    // Read once: this connection is judged by one complete policy generation.
    let generation = CONFIG
        .get(0)
        .map_or(0, |c| ((c.flags & CONFIG_GENERATION) != 0) as u32);
    let ep_key = pkt.key.ifindex | (generation << GENERATION_SHIFT);
    // SAFETY: read-only lookup; the value stays valid for this program run.
    let Some(ep) = (unsafe { ENDPOINTS.get(&ep_key) }) else {
        return Decision::pass();
    };
    let (dir, enforce, ranges, remote) = if hook == hook::INGRESS {
        (
            direction::EGRESS,
            ep.flags & ENFORCE_EGRESS != 0,
            ep.flags & RANGES_EGRESS != 0,
            &pkt.key.daddr,
        )
    } else {
        (
            direction::INGRESS,
            ep.flags & ENFORCE_INGRESS != 0,
            ep.flags & RANGES_INGRESS != 0,
            &pkt.key.saddr,
        )
    };
    let remote_identity = identity_of(ip, pkt.key.family, remote);
    lookup(ep, remote_identity, dir, enforce, ranges, pkt)
}

/// The security identity behind an address: host entries first (pods), then the longest
/// prefix; neither: the world.
#[inline(always)]
fn identity_of(ip: &mut Key<IpKey>, family: u8, addr: &[u8; 16]) -> u32 {
    let bits = IP_KEY_FIXED_BITS + if family == FAMILY_IPV4 { 32 } else { 128 };
    *ip = Key::new(
        bits,
        IpKey {
            family,
            _pad: [0; 3],
            addr: *addr,
        },
    );
    // SAFETY: read-only lookup.
    match unsafe { IPCACHE_HOSTS.get(&ip.data) } {
        Some(v) => v.identity,
        None => IPCACHE.get(&*ip).map_or(identity::WORLD, |v| v.identity),
    }
}

/// The endpoint's policy for a connection with `remote_identity` on the packet's protocol and
/// destination port, in direction `dir`.
#[inline(always)]
fn lookup(
    ep: &EndpointInfo,
    remote_identity: u32,
    dir: u8,
    enforce: bool,
    ranges: bool,
    pkt: &Packet,
) -> Decision {
    let mut key = PolicyKey {
        endpoint_id: ep.endpoint_id,
        remote_identity,
        port: pkt.key.dport,
        proto: pkt.key.proto,
        direction: dir,
    };
    // Most specific first (policy/src/compile.rs, `lookup`): exact port, the smallest block of
    // ports containing it (one prefix lookup, only for endpoints with port ranges), any port
    // of the protocol; for the remote identity, then for any; then any protocol.
    const HASH: u8 = 0;
    const BLOCK: u8 = 1;
    let candidates: [(u8, bool, bool, bool, u8); 8] = [
        (HASH, true, true, true, policy_match::L3_L4),
        (BLOCK, true, true, true, policy_match::L3_L4),
        (HASH, true, true, false, policy_match::L3_PROTO),
        (HASH, false, true, true, policy_match::L4_ONLY),
        (BLOCK, false, true, true, policy_match::L4_ONLY),
        (HASH, false, true, false, policy_match::PROTO_ONLY),
        (HASH, true, false, false, policy_match::L3_ONLY),
        (HASH, false, false, false, policy_match::ALL),
    ];
    for (form, by_identity, by_proto, by_port, matched) in candidates {
        key.remote_identity = if by_identity { remote_identity } else { 0 };
        key.proto = if by_proto { pkt.key.proto } else { 0 };
        key.port = if by_port { pkt.key.dport } else { 0 };
        let found = if form == HASH {
            // SAFETY: read-only lookup.
            unsafe { POLICY.get(&key) }
        } else if ranges {
            let range_key = Key::new(
                POLICY_RANGE_KEY_FIXED_BITS + 16,
                PolicyRangeKey {
                    endpoint_id: key.endpoint_id,
                    remote_identity: key.remote_identity,
                    direction: dir,
                    proto: key.proto,
                    port_be: key.port.to_be(),
                },
            );
            POLICY_RANGES.get(&range_key)
        } else {
            None
        };
        if let Some(v) = found {
            let deny = v.action == POLICY_DENY;
            return Decision {
                verdict: if deny {
                    verdict::DROPPED
                } else {
                    verdict::FORWARDED
                },
                drop_reason: if deny { drop_reason::POLICY_DENY } else { 0 },
                policy_ref: v.policy_ref + 1,
                evaluated: true,
                policy_match: matched,
                proxy: !deny && v.flags & POLICY_FLAG_PROXY != 0,
            };
        }
    }
    // No rule speaks of it: dropped where policy isolates the endpoint, except the node's own
    // connections into its pods, which a pod cannot block (`unmatched_allowed` in
    // policy/src/compile.rs).
    let enforce = enforce && !(dir == direction::INGRESS && remote_identity == identity::HOST);
    Decision {
        verdict: if enforce {
            verdict::DROPPED
        } else {
            verdict::FORWARDED
        },
        drop_reason: if enforce {
            drop_reason::POLICY_DENIED
        } else {
            0
        },
        policy_ref: 0,
        evaluated: enforce,
        policy_match: policy_match::NONE,
        proxy: false,
    }
}

#[inline(always)]
fn audit_mode() -> bool {
    CONFIG.get(0).is_some_and(|c| c.flags & CONFIG_AUDIT != 0)
}

#[inline(always)]
fn forwarded(kind: u8, hook: u8, dir: usize, ifindex: u32) -> Report {
    Report {
        kind,
        hook,
        dir: dir as u8,
        verdict: verdict::FORWARDED,
        drop_reason: 0,
        rule: 0,
        policy_ref: 0,
        policy_verdict: 0,
        policy_match: 0,
        ifindex,
        proxy: proxy::NONE,
    }
}

/// Looks the connection's destination up in the deny list: exact protocol and port, then any
/// port of the protocol, then any protocol. Returns the matching rule.
#[inline(always)]
fn denied(key: &CtKey) -> Option<u32> {
    let bits = DENY_KEY_FIXED_BITS + if key.family == FAMILY_IPV4 { 32 } else { 128 };
    let mut k = Key::new(
        bits,
        DenyKey {
            proto: key.proto,
            family: key.family,
            port_be: key.dport.to_be(),
            addr: key.daddr,
        },
    );
    if let Some(v) = DENY.get(&k) {
        return Some(v.rule);
    }
    k.data.port_be = 0;
    if let Some(v) = DENY.get(&k) {
        return Some(v.rule);
    }
    k.data.proto = 0;
    DENY.get(&k).map(|v| v.rule)
}

#[inline(always)]
fn summary_interval() -> Option<u64> {
    match CONFIG.get(0) {
        Some(c) if c.summary_interval_ns > 0 => Some(c.summary_interval_ns),
        _ => None,
    }
}

/// The conntrack key of a packet's key `k` ([`CtKey`]: ends in canonical order), and whether
/// its ends were swapped to get it, in which case the key is written to `rev`.
#[inline(always)]
fn canonical<'a>(k: &'a CtKey, rev: &'a mut CtKey) -> (&'a CtKey, bool) {
    if canonical_order_swaps(k) {
        reverse_into(k, rev);
        (rev, true)
    } else {
        (k, false)
    }
}

/// Whether the key's source end (address, then port) orders after its destination end.
/// Addresses compare as four native 32-bit words: any total order serves, and this one costs
/// four loads per side.
#[inline(always)]
fn canonical_order_swaps(k: &CtKey) -> bool {
    let word = |a: &[u8; 16], i: usize| u32::from_ne_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]]);
    for i in (0..16).step_by(4) {
        let (a, b) = (word(&k.saddr, i), word(&k.daddr, i));
        if a != b {
            return a > b;
        }
    }
    k.sport > k.dport
}

#[inline(always)]
fn reverse_into(k: &CtKey, rev: &mut CtKey) {
    rev.ifindex = k.ifindex;
    rev.family = k.family;
    rev.proto = k.proto;
    rev._pad = 0;
    rev.sport = k.dport;
    rev.dport = k.sport;
    rev.saddr = k.daddr;
    rev.daddr = k.saddr;
}

/// Counters and origin of a connection as reported in an event.
struct Counts {
    packets: [u64; 2],
    bytes: [u64; 2],
    origin_hook: u8,
}

impl Counts {
    #[inline(always)]
    fn of(e: &CtEntry) -> Self {
        Counts {
            packets: e.packets,
            bytes: e.bytes,
            origin_hook: e.origin_hook,
        }
    }

    #[inline(always)]
    fn first(pkt: &Packet, hook: u8) -> Self {
        Counts {
            packets: [1, 0],
            bytes: [pkt.len as u64, 0],
            origin_hook: hook,
        }
    }
}

/// What is being reported about the packet.
struct Report {
    kind: u8,
    hook: u8,
    dir: u8,
    verdict: u8,
    drop_reason: u8,
    rule: u32,
    policy_ref: u32,
    policy_verdict: u8,
    policy_match: u8,
    /// The interface the event names: the packet's, except for a connection handed to the
    /// proxy by its destination's ingress policy (see [`proxy::TO_INGRESS`]).
    ifindex: u32,
    proxy: u8,
}

/// Writes the event straight into the ring buffer slot: building it on the stack first would
/// cost 120 of the program's 512 bytes of stack.
#[inline(always)]
fn emit(pkt: &Packet, c: &Counts, r: &Report) {
    let Some(mut slot) = EVENTS.reserve::<FlowEvent>(0) else {
        count(STAT_EVENTS_LOST);
        return;
    };
    // SAFETY: the slot is reserved, exclusively owned and of size_of::<FlowEvent>() bytes.
    unsafe { fill(slot.as_mut_ptr(), pkt, c, r) };
    submit(slot, EVENT_RECORD_BYTES);
}

/// Writes every field of the event at `ev`, padding included.
///
/// # Safety
/// `ev` points to writable memory of size_of::<FlowEvent>() bytes owned by the caller.
#[inline(always)]
unsafe fn fill(ev: *mut FlowEvent, pkt: &Packet, c: &Counts, r: &Report) {
    // SAFETY: the caller's promise.
    unsafe {
        (*ev).ts_ns = bpf_ktime_get_boot_ns();
        (*ev).packets = c.packets;
        (*ev).bytes = c.bytes;
        (*ev).saddr = pkt.key.saddr;
        (*ev).daddr = pkt.key.daddr;
        (*ev).ifindex = r.ifindex;
        (*ev).sport = pkt.key.sport;
        (*ev).dport = pkt.key.dport;
        (*ev).kind = r.kind;
        (*ev).hook = r.hook;
        (*ev).family = pkt.key.family;
        (*ev).proto = pkt.key.proto;
        (*ev).verdict = r.verdict;
        (*ev).is_reply = r.dir;
        (*ev).drop_reason = r.drop_reason;
        (*ev).origin_hook = c.origin_hook;
        (*ev).tcp_flags = pkt.tcp_flags;
        (*ev).vlan = pkt.vlan;
        (*ev).icmp_type = pkt.icmp_type;
        (*ev).icmp_code = pkt.icmp_code;
        (*ev).smac = pkt.smac;
        (*ev).dmac = pkt.dmac;
        (*ev).policy_verdict = r.policy_verdict;
        (*ev).policy_match = r.policy_match;
        (*ev).pkt_len = pkt.len;
        (*ev).rule = r.rule;
        (*ev).policy_ref = r.policy_ref;
        (*ev).proxy = r.proxy;
        (*ev)._pad = [0; 7];
    }
}

/// Submits a filled slot. Wakes the observer once per batch: when this record makes the
/// waiting data cross the threshold. Below it, or while the observer is behind anyway (it
/// drains until empty), no wakeup; the observer also looks on its own every EVENTS_POLL_MS.
#[inline(always)]
fn submit<T: 'static>(slot: aya_ebpf::maps::ring_buf::RingBufEntry<T>, record_bytes: u64) {
    let waiting = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    let wakeup = if waiting >= EVENTS_WAKEUP_BYTES && waiting < EVENTS_WAKEUP_BYTES + record_bytes {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    slot.submit(wakeup as u64);
    count(STAT_EVENTS);
}

/// `lock *(u64 *)(dst) += v`: the BPF atomic add. core's `fetch_add` is not available for the
/// bpf target, and a plain `+=` loses counts when two CPUs update one connection.
#[inline(always)]
fn atomic_add(dst: &mut u64, v: u64) {
    // SAFETY: `dst` is a valid, aligned u64 in a map value; the instruction only adds to it.
    unsafe {
        core::arch::asm!(
            "lock *(u64 *)({0} + 0) += {1}",
            in(reg) dst as *mut u64,
            in(reg) v,
            options(nostack),
        )
    };
}

#[inline(always)]
fn count(stat: u32) {
    if let Some(c) = STATS.get_ptr_mut(stat) {
        // SAFETY: per-CPU slot from a successful lookup; no other CPU writes it.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
fn parse(ctx: &TcContext, pkt: &mut Packet) -> Result<(), Skip> {
    if parse_direct(ctx, pkt) {
        return Ok(());
    }
    // SAFETY: reading fields of the context the kernel handed to this program.
    let skb = unsafe { &*ctx.skb.skb };
    pkt.key = CtKey {
        ifindex: skb.ifindex,
        ..CtKey::default()
    };
    let eth: [u8; 14] = load(ctx, 0)?;
    pkt.dmac.copy_from_slice(&eth[0..6]);
    pkt.smac.copy_from_slice(&eth[6..12]);
    pkt.vlan = offloaded_vlan(skb);
    pkt.tcp_flags = 0;
    pkt.icmp_type = 0;
    pkt.icmp_code = 0;
    pkt.payload_off = 0;
    pkt.len = skb.len;
    let mut proto = be16(&eth, 12);
    let mut off = ETH_HLEN;
    // 802.1ad outer tag and 802.1Q inner tag (QinQ) at most.
    for _ in 0..2 {
        if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
            break;
        }
        let tag: [u8; 4] = load(ctx, off)?;
        pkt.vlan = be16(&tag, 0) & 0x0fff;
        proto = be16(&tag, 2);
        off += 4;
    }

    let (l4_proto, l4_off) = match proto {
        ETH_P_IP => parse_ipv4(ctx, off, pkt)?,
        ETH_P_IPV6 => parse_ipv6(ctx, off, pkt)?,
        _ => return Err(Skip::NotIp),
    };
    pkt.key.proto = l4_proto;
    let Some(l4) = l4_off else {
        // A non-first fragment carries no L4 header: track it by addresses and protocol.
        count(STAT_FRAGMENTS);
        return Ok(());
    };
    match l4_proto {
        IPPROTO_TCP => {
            // Ports, sequence and ack numbers, data offset (and NS), flags.
            let th: [u8; 14] = load(ctx, l4)?;
            pkt.key.sport = be16(&th, 0);
            pkt.key.dport = be16(&th, 2);
            if th[12] >> 4 < 5 {
                return Err(Skip::Truncated);
            }
            set_tcp_fields(pkt, l4, th[12], th[13]);
        }
        IPPROTO_UDP | IPPROTO_SCTP => {
            let ports: [u8; 4] = load(ctx, l4)?;
            pkt.key.sport = be16(&ports, 0);
            pkt.key.dport = be16(&ports, 2);
            if l4_proto == IPPROTO_UDP {
                pkt.payload_off = (l4 + 8) as u32;
            }
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            let icmp: [u8; 8] = load(ctx, l4)?;
            pkt.icmp_type = icmp[0];
            pkt.icmp_code = icmp[1];
            // Echo request and reply share their identifier, so a ping and its answers are one
            // connection; other ICMP messages are keyed by addresses alone.
            let echo = matches!(
                (l4_proto, pkt.icmp_type),
                (IPPROTO_ICMP, 8 | 0) | (IPPROTO_ICMPV6, 128 | 129)
            );
            if echo {
                let id = be16(&icmp, 4);
                pkt.key.sport = id;
                pkt.key.dport = id;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The common packet read in place (direct packet access, no helper call): Ethernet without a
/// tag in the data, IPv4 with a 20-byte header that is not a later fragment or IPv6 without
/// extension headers, then TCP or UDP, all in the skb's linear part. False leaves the packet
/// to [`parse`]'s general path, which reads each header with one helper call and handles
/// everything else. The offsets are constants on every branch, which the verifier follows.
#[inline(always)]
fn parse_direct(ctx: &TcContext, pkt: &mut Packet) -> bool {
    const IP4_L4: usize = ETH_HLEN + 20;
    const IP6_L4: usize = ETH_HLEN + 40;
    let data = ctx.data();
    let end = ctx.data_end();
    if data + IP4_L4 > end {
        return false;
    }
    let p = data as *const u8;
    // SAFETY: every read below is at an offset checked against `data_end` on its branch.
    let at = |i: usize| unsafe { *p.add(i) };
    let ethertype = u16::from_be_bytes([at(12), at(13)]);
    let (proto, l4) = if ethertype == ETH_P_IP {
        let frag = u16::from_be_bytes([at(ETH_HLEN + 6), at(ETH_HLEN + 7)]);
        if at(ETH_HLEN) != 0x45 || frag & 0x1fff != 0 {
            return false;
        }
        (at(ETH_HLEN + 9), IP4_L4)
    } else if ethertype == ETH_P_IPV6 {
        if data + IP6_L4 > end || at(ETH_HLEN) >> 4 != 6 {
            return false;
        }
        (at(ETH_HLEN + 6), IP6_L4)
    } else {
        return false;
    };
    let l4_len = match proto {
        IPPROTO_TCP => 14,
        IPPROTO_UDP => 8,
        _ => return false,
    };
    if data + l4 + l4_len > end {
        return false;
    }
    if proto == IPPROTO_TCP && at(l4 + 12) >> 4 < 5 {
        return false;
    }
    // SAFETY: reading fields of the context the kernel handed to this program.
    let skb = unsafe { &*ctx.skb.skb };
    let k = &mut pkt.key;
    k.ifindex = skb.ifindex;
    k.proto = proto;
    k._pad = 0;
    k.sport = u16::from_be_bytes([at(l4), at(l4 + 1)]);
    k.dport = u16::from_be_bytes([at(l4 + 2), at(l4 + 3)]);
    // Whole words where the layout allows (unaligned packet reads are fine on the JITs that
    // run tc programs); the key's address words are 4-byte aligned.
    // SAFETY: as for `at`, 4 bytes at an offset checked on this branch.
    let word = |i: usize| unsafe { core::ptr::read_unaligned(p.add(i).cast::<[u8; 4]>()) };
    let set = |a: &mut [u8; 16], w: usize, v: [u8; 4]| a[4 * w..4 * w + 4].copy_from_slice(&v);
    if l4 == IP4_L4 {
        k.family = FAMILY_IPV4;
        k.saddr = [0; 16];
        k.daddr = [0; 16];
        set(&mut k.saddr, 0, word(ETH_HLEN + 12));
        set(&mut k.daddr, 0, word(ETH_HLEN + 16));
    } else {
        k.family = FAMILY_IPV6;
        for w in 0..4 {
            set(&mut k.saddr, w, word(ETH_HLEN + 8 + 4 * w));
            set(&mut k.daddr, w, word(ETH_HLEN + 24 + 4 * w));
        }
    }
    // SAFETY: the first 12 bytes, checked above.
    unsafe {
        pkt.dmac = core::ptr::read_unaligned(p.cast::<[u8; 6]>());
        pkt.smac = core::ptr::read_unaligned(p.add(6).cast::<[u8; 6]>());
    }
    pkt.vlan = offloaded_vlan(skb);
    pkt.icmp_type = 0;
    pkt.icmp_code = 0;
    pkt.len = skb.len;
    if proto == IPPROTO_TCP {
        set_tcp_fields(pkt, l4, at(l4 + 12), at(l4 + 13));
    } else {
        pkt.tcp_flags = 0;
        pkt.payload_off = (l4 + 8) as u32;
    }
    true
}

/// The VLAN a driver already stripped (VLAN offload): in the skb, not in the data.
#[inline(always)]
fn offloaded_vlan(skb: &aya_ebpf::bindings::__sk_buff) -> u16 {
    if skb.vlan_present != 0 {
        (skb.vlan_tci & 0x0fff) as u16
    } else {
        0
    }
}

/// Flags (with NS) and payload offset from the TCP header's bytes 12 (data offset) and 13.
#[inline(always)]
fn set_tcp_fields(pkt: &mut Packet, l4: usize, offset: u8, flags: u8) {
    pkt.tcp_flags = flags as u16 | (((offset & 1) as u16) << 8);
    pkt.payload_off = (l4 + (offset >> 4) as usize * 4) as u32;
}

/// Returns the L4 protocol and the L4 header's offset (None for a non-first fragment).
#[inline(always)]
fn parse_ipv4(ctx: &TcContext, off: usize, pkt: &mut Packet) -> Result<(u8, Option<usize>), Skip> {
    let ip: [u8; 20] = load(ctx, off)?;
    let ihl = ((ip[0] & 0x0f) as usize) * 4;
    if ip[0] >> 4 != 4 || ihl < 20 {
        return Err(Skip::Truncated);
    }
    let frag = be16(&ip, 6);
    let proto = ip[9];
    pkt.key.family = FAMILY_IPV4;
    pkt.key.saddr[..4].copy_from_slice(&ip[12..16]);
    pkt.key.daddr[..4].copy_from_slice(&ip[16..20]);
    if frag & 0x1fff != 0 {
        return Ok((proto, None));
    }
    Ok((proto, Some(off + ihl)))
}

#[inline(always)]
fn parse_ipv6(ctx: &TcContext, off: usize, pkt: &mut Packet) -> Result<(u8, Option<usize>), Skip> {
    let ip: [u8; 40] = load(ctx, off)?;
    if ip[0] >> 4 != 6 {
        return Err(Skip::Truncated);
    }
    let mut next = ip[6];
    pkt.key.saddr.copy_from_slice(&ip[8..24]);
    pkt.key.daddr.copy_from_slice(&ip[24..40]);
    pkt.key.family = FAMILY_IPV6;
    let mut l4 = off + 40;
    // Skip a bounded number of extension headers; a chain longer than that is tracked with the
    // extension header as its protocol.
    for _ in 0..4 {
        match next {
            // Hop-by-hop, routing, destination options: length in 8-byte units, excluding the
            // first 8 bytes.
            0 | 43 | 60 => {
                let hdr: [u8; 2] = load(ctx, l4)?;
                next = hdr[0];
                l4 += (hdr[1] as usize + 1) * 8;
            }
            // Fragment header: fixed 8 bytes; later fragments have no L4 header.
            44 => {
                let hdr: [u8; 4] = load(ctx, l4)?;
                next = hdr[0];
                l4 += 8;
                let frag_off = u16::from_be_bytes([hdr[2], hdr[3]]) & 0xfff8;
                if frag_off != 0 {
                    return Ok((next, None));
                }
            }
            // Authentication header: length in 4-byte units, minus 2.
            51 => {
                let hdr: [u8; 2] = load(ctx, l4)?;
                next = hdr[0];
                l4 += (hdr[1] as usize + 2) * 4;
            }
            _ => break,
        }
    }
    Ok((next, Some(l4)))
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
