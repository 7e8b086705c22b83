//! The `Summary` Hubble's parsers write: `TCP Flags: SYN`, `UDP`, `ICMPv4 EchoRequest`,
//! `DNS Query example.com. A`, `DNS Answer "1.2.3.4" TTL: 30 (Query example.com. A)`,
//! `HTTP/1.1 200 3ms (GET http://api/)`. The observer writes it into the flows it makes; the
//! CLI prints it for flows that arrive without one, as Hubble's printer does.

use std::fmt::Write as _;

use super::{Dns, Flow, Http, L7FlowType, L7Record, Layer4, Layer7};

impl Flow {
    /// What Hubble's L3/L4 or L7 parser would have put in `Summary` for this flow.
    pub fn default_summary(&self) -> String {
        if let Some(l7) = &self.l7 {
            return l7.summary();
        }
        let mut out = String::new();
        if let Some(l4) = &self.l4 {
            l4.write_summary(&mut out);
        }
        out
    }
}

impl Layer4 {
    /// Appends Hubble's L3/L4 summary: `TCP Flags: SYN, ACK` (SYN first, as Hubble orders
    /// them), `UDP`, `ICMPv4 EchoRequest`, ... Appends to `out` without allocating: the
    /// observer writes it for every flow it renders.
    pub fn write_summary(&self, out: &mut String) {
        match self {
            Layer4::Tcp(tcp) => {
                out.push_str("TCP Flags: ");
                let f = tcp.flags.unwrap_or_default();
                let mut first = true;
                for (set, name) in [
                    (f.SYN, "SYN"),
                    (f.FIN, "FIN"),
                    (f.RST, "RST"),
                    (f.PSH, "PSH"),
                    (f.ACK, "ACK"),
                    (f.URG, "URG"),
                    (f.ECE, "ECE"),
                    (f.CWR, "CWR"),
                    (f.NS, "NS"),
                ] {
                    if set {
                        if !first {
                            out.push_str(", ");
                        }
                        out.push_str(name);
                        first = false;
                    }
                }
            }
            Layer4::Udp(_) => out.push_str("UDP"),
            Layer4::Sctp(_) => out.push_str("SCTP"),
            Layer4::IcmpV4(icmp) => {
                let _ = write!(out, "ICMPv4 {}", super::Icmp::v4_name(icmp.icmp_type));
            }
            Layer4::IcmpV6(icmp) => {
                let _ = write!(out, "ICMPv6 {}", super::Icmp::v6_name(icmp.icmp_type));
            }
            Layer4::Vrrp(_) => out.push_str("VRRP"),
            Layer4::Igmp(_) => out.push_str("IGMP"),
        }
    }
}

impl Layer7 {
    /// Hubble's L7 parser summary of this record (`seven/dns.go`, `http.go`, `kafka.go`).
    pub fn summary(&self) -> String {
        match &self.record {
            Some(L7Record::Dns(dns)) => dns_summary(self.l7_type, dns),
            Some(L7Record::Http(http)) => http_summary(self.l7_type, self.latency_ns, http),
            Some(L7Record::Kafka(k)) => match self.l7_type {
                L7FlowType::Request => format!(
                    "Kafka request {} correlation id {} topic '{}'",
                    k.api_key, k.correlation_id, k.topic
                ),
                _ => format!(
                    "Kafka response {} correlation id {} topic '{}' return code {}",
                    k.api_key, k.correlation_id, k.topic, k.error_code
                ),
            },
            None => String::new(),
        }
    }
}

fn dns_summary(kind: L7FlowType, dns: &Dns) -> String {
    let qtypes = dns.qtypes.join(",");
    match kind {
        L7FlowType::Request => format!("DNS Query {} {qtypes}", dns.query),
        L7FlowType::Response => {
            let mut out = String::from("DNS Answer ");
            if dns.rcode != 0 {
                out.push_str("RCode: ");
                out.push_str(dns_rcode_name(dns.rcode));
            } else {
                let mut parts = Vec::new();
                if !dns.ips.is_empty() {
                    parts.push(go_quote(&dns.ips.join(",")));
                }
                if !dns.cnames.is_empty() {
                    parts.push(format!("CNAMEs: {}", go_quote(&dns.cnames.join(","))));
                }
                out.push_str(&parts.join(" "));
            }
            // Cilium's DNS proxy says "Proxy"; any other observation point, "Query".
            let source = if dns.observation_source == "proxy" {
                "Proxy"
            } else {
                "Query"
            };
            let _ = write!(out, " TTL: {} ({source} {} {qtypes})", dns.ttl, dns.query);
            out
        }
        _ => String::new(),
    }
}

fn http_summary(kind: L7FlowType, latency_ns: u64, http: &Http) -> String {
    match kind {
        L7FlowType::Request => format!("{} {} {}", http.protocol, http.method, http.url),
        L7FlowType::Response => format!(
            "{} {} {}ms ({} {})",
            http.protocol,
            http.code,
            latency_ns / 1_000_000,
            http.method,
            http.url
        ),
        _ => String::new(),
    }
}

/// Go's `%q` of a string: double quotes, with `"` and `\` escaped and control characters
/// written as escapes.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// gopacket's `DNSResponseCode.String()`.
pub fn dns_rcode_name(rcode: u32) -> &'static str {
    match rcode {
        0 => "No Error",
        1 => "Format Error",
        2 => "Server Failure",
        3 => "Non-Existent Domain",
        4 => "Not Implemented",
        5 => "Query Refused",
        6 => "Name Exists when it should not",
        7 => "RR Set Exists when it should not",
        8 => "RR Set that should exist does not",
        9 => "Server Not Authoritative for zone",
        10 => "Name not contained in zone",
        16 => "Bad OPT Version",
        17 => "Key not recognized",
        18 => "Signature out of time window",
        19 => "Bad TKEY Mode",
        20 => "Duplicate key name",
        21 => "Algorithm not supported",
        22 => "Bad Truncation",
        23 => "Bad/missing Server Cookie",
        _ => "Unknown response code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(l7_type: L7FlowType, dns: Dns) -> Layer7 {
        Layer7 {
            l7_type,
            latency_ns: 0,
            record: Some(L7Record::Dns(dns)),
        }
    }

    #[test]
    fn dns_summaries_are_hubbles() {
        let q = Dns {
            query: "my-api.default.svc.cluster.local.".into(),
            qtypes: vec!["A".into()],
            ..Dns::default()
        };
        assert_eq!(
            dns(L7FlowType::Request, q.clone()).summary(),
            "DNS Query my-api.default.svc.cluster.local. A"
        );
        let a = Dns {
            ips: vec!["198.18.1.2".into(), "198.18.1.3".into()],
            cnames: vec!["api.example.".into()],
            ttl: 30,
            ..q.clone()
        };
        assert_eq!(
            dns(L7FlowType::Response, a.clone()).summary(),
            "DNS Answer \"198.18.1.2,198.18.1.3\" CNAMEs: \"api.example.\" TTL: 30 \
             (Query my-api.default.svc.cluster.local. A)"
        );
        let proxy = Dns {
            observation_source: "proxy".into(),
            ..a
        };
        assert!(
            dns(L7FlowType::Response, proxy)
                .summary()
                .ends_with("TTL: 30 (Proxy my-api.default.svc.cluster.local. A)")
        );
        let nx = Dns { rcode: 3, ..q };
        assert_eq!(
            dns(L7FlowType::Response, nx).summary(),
            "DNS Answer RCode: Non-Existent Domain TTL: 0 \
             (Query my-api.default.svc.cluster.local. A)"
        );
    }

    #[test]
    fn http_summaries_are_hubbles() {
        let http = Http {
            code: 200,
            method: "GET".into(),
            url: "http://my-api:8080/api".into(),
            protocol: "HTTP/1.1".into(),
            ..Http::default()
        };
        let mut l7 = Layer7 {
            l7_type: L7FlowType::Request,
            latency_ns: 3_400_000,
            record: Some(L7Record::Http(http)),
        };
        assert_eq!(l7.summary(), "HTTP/1.1 GET http://my-api:8080/api");
        l7.l7_type = L7FlowType::Response;
        assert_eq!(
            l7.summary(),
            "HTTP/1.1 200 3ms (GET http://my-api:8080/api)"
        );
    }

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote("a\"b\\c\n\x01"), "\"a\\\"b\\\\c\\n\\x01\"");
    }
}
