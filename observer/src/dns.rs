//! L7 DNS visibility: a DNS message the datapath copied (an `L7Event`, UDP port 53) becomes
//! Hubble's `Layer7.dns` record: the query name and types, and for a response its rcode,
//! addresses, CNAMEs, record types and TTL, plus the latency since its query. Nothing else of
//! the message is kept; the payload is dropped once parsed.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use flowscope_model::flow::Dns;
use simple_dns::{Packet, PacketFlag, QTYPE, TYPE, rdata::RData};

/// Queries waiting for their response, at most; beyond, the oldest half is forgotten (their
/// responses then carry no latency).
const PENDING_MAX: usize = 16_384;

/// One parsed DNS message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsMessage {
    pub id: u16,
    pub response: bool,
    /// For a response: the time since its query, when the query was seen (else 0).
    pub latency_ns: u64,
    pub dns: Dns,
}

/// The DNS fields Hubble reports, or None for what is not a DNS message.
pub fn parse(payload: &[u8]) -> Option<DnsMessage> {
    let packet = Packet::parse(payload).ok()?;
    let response = packet.has_flags(PacketFlag::RESPONSE);
    let mut dns = Dns {
        query: packet
            .questions
            .first()
            .map(|q| format!("{}.", q.qname))
            .unwrap_or_default(),
        qtypes: packet
            .questions
            .iter()
            .map(|q| qtype_name(q.qtype))
            .collect(),
        ..Dns::default()
    };
    if response {
        dns.rcode = packet.rcode() as u32;
        let mut ttl = None;
        for rr in &packet.answers {
            let t = type_name(rr.rdata.type_code());
            if !dns.rrtypes.contains(&t) {
                dns.rrtypes.push(t);
            }
            match &rr.rdata {
                RData::A(a) => dns.ips.push(Ipv4Addr::from(a.address).to_string()),
                RData::AAAA(a) => dns.ips.push(Ipv6Addr::from(a.address).to_string()),
                RData::CNAME(c) => dns.cnames.push(format!("{}.", c.0)),
                _ => continue,
            }
            ttl = Some(ttl.map_or(rr.ttl, |t: u32| t.min(rr.ttl)));
        }
        dns.ttl = ttl.unwrap_or(0);
    }
    Some(DnsMessage {
        id: packet.id(),
        response,
        latency_ns: 0,
        dns,
    })
}

fn type_name(t: TYPE) -> String {
    match t {
        TYPE::Unknown(n) => format!("TYPE{n}"),
        t => format!("{t:?}"),
    }
}

fn qtype_name(q: QTYPE) -> String {
    match q {
        QTYPE::TYPE(t) => type_name(t),
        other => format!("{other:?}"),
    }
}

/// Which query a response answers: the observation point, the client's address and port, and
/// the message id.
pub type QueryKey = (u32, [u8; 16], u16, u16);

/// Queries seen, to give responses their latency.
#[derive(Default)]
pub struct Pending {
    queries: HashMap<QueryKey, i64>,
}

impl Pending {
    pub fn query(&mut self, key: QueryKey, time_ns: i64) {
        if self.queries.len() >= PENDING_MAX {
            let mut times: Vec<i64> = self.queries.values().copied().collect();
            let (_, median, _) = times.select_nth_unstable(PENDING_MAX / 2);
            let cut = *median;
            self.queries.retain(|_, t| *t > cut);
        }
        self.queries.insert(key, time_ns);
    }

    /// The latency of the response to `key` at `time_ns`, once.
    pub fn response(&mut self, key: &QueryKey, time_ns: i64) -> u64 {
        self.queries
            .remove(key)
            .map_or(0, |t| time_ns.saturating_sub(t).max(0) as u64)
    }
}

/// Names a pod's lookups returned for an address, at most this many pairs; when full, expired
/// pairs go, and new ones are not learnt until some expire.
const FQDN_MAX: usize = 65_536;
/// A name is kept at least this long after its answer, whatever its TTL (connections often
/// outlive short TTLs).
const FQDN_MIN_TTL_NS: i64 = 60_000_000_000;

/// What each pod's DNS lookups returned (Cilium's per-endpoint FQDN cache): flows between a
/// pod and an address it resolved carry the names (`destination_names`, `source_names`), so
/// `--fqdn` filters and the printers can show them.
#[derive(Default)]
pub struct FqdnCache {
    /// (client, resolved address) -> (names, expiry in Unix nanoseconds).
    names: HashMap<(IpAddr, IpAddr), Names>,
}

type Names = (Arc<Vec<String>>, i64);

impl FqdnCache {
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// `client` resolved `name` to `ip` at `now_ns`, valid `ttl` seconds.
    pub fn learn(&mut self, client: IpAddr, ip: IpAddr, name: &str, ttl: u32, now_ns: i64) {
        let expires = now_ns + (i64::from(ttl) * 1_000_000_000).max(FQDN_MIN_TTL_NS);
        if self.names.len() >= FQDN_MAX && !self.names.contains_key(&(client, ip)) {
            self.names.retain(|_, (_, e)| *e > now_ns);
            if self.names.len() >= FQDN_MAX {
                return;
            }
        }
        let name = name.trim_end_matches('.');
        let entry = self
            .names
            .entry((client, ip))
            .or_insert_with(|| (Arc::new(Vec::new()), expires));
        entry.1 = entry.1.max(expires);
        if !entry.0.iter().any(|n| n == name) {
            Arc::make_mut(&mut entry.0).push(name.to_string());
        }
    }

    /// The names `client` resolved `ip` to, still valid at `now_ns`.
    pub fn get(&self, client: IpAddr, ip: IpAddr, now_ns: i64) -> Option<Arc<Vec<String>>> {
        self.names
            .get(&(client, ip))
            .filter(|(_, expires)| *expires > now_ns)
            .map(|(names, _)| names.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for my-api.default.svc.cluster.local. A, id 0x1234, as a stub resolver sends it.
    fn query() -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in ["my-api", "default", "svc", "cluster", "local"] {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        q
    }

    #[test]
    fn queries_and_answers_give_hubbles_fields() {
        let q = parse(&query()).unwrap();
        assert!(!q.response);
        assert_eq!(q.id, 0x1234);
        assert_eq!(q.dns.query, "my-api.default.svc.cluster.local.");
        assert_eq!(q.dns.qtypes, ["A"]);

        // The answer: QR set, one A record pointing back at the name (compression pointer).
        let mut a = query();
        a[2] = 0x81;
        a[3] = 0x80;
        a[7] = 1;
        a.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 198, 18, 1, 2]);
        let a = parse(&a).unwrap();
        assert!(a.response);
        assert_eq!(a.dns.ips, ["198.18.1.2"]);
        assert_eq!(a.dns.ttl, 30);
        assert_eq!(a.dns.rrtypes, ["A"]);
        assert_eq!(a.dns.rcode, 0);

        let mut nx = query();
        nx[2] = 0x81;
        nx[3] = 0x83;
        let nx = parse(&nx).unwrap();
        assert_eq!(nx.dns.rcode, 3);
    }

    #[test]
    fn names_are_per_client_and_expire() {
        let (pod, other, ip) = (
            "198.18.1.1".parse().unwrap(),
            "198.18.1.2".parse().unwrap(),
            "198.18.9.9".parse().unwrap(),
        );
        let mut c = FqdnCache::default();
        c.learn(pod, ip, "api.example.com.", 30, 0);
        c.learn(pod, ip, "www.example.com.", 30, 0);
        c.learn(pod, ip, "api.example.com.", 30, 0);
        assert_eq!(
            c.get(pod, ip, 1).as_deref(),
            Some(&vec![
                "api.example.com".to_string(),
                "www.example.com".to_string()
            ])
        );
        assert_eq!(c.get(other, ip, 1), None);
        // Kept for the minimum of a minute, not the 30 s TTL.
        assert!(c.get(pod, ip, 59_000_000_000).is_some());
        assert!(c.get(pod, ip, 61_000_000_000).is_none());
    }

    #[test]
    fn what_is_not_dns_is_not_parsed() {
        assert!(parse(b"GET / HTTP/1.1\r\n").is_none());
        assert!(parse(&[0x12]).is_none());
    }

    #[test]
    fn responses_get_the_latency_of_their_query_once() {
        let mut p = Pending::default();
        let key = (3, [1; 16], 5353, 7);
        p.query(key, 1_000);
        assert_eq!(p.response(&key, 4_500), 3_500);
        assert_eq!(p.response(&key, 5_000), 0);
        for i in 0..PENDING_MAX as u16 + 10 {
            p.query((1, [0; 16], i, 0), i64::from(i));
        }
        assert!(p.queries.len() <= PENDING_MAX);
    }
}
