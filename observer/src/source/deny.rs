//! The static deny list: `--deny cidr=198.18.0.0/24,port=80,protocol=tcp` rules, checked by the
//! datapath on the first packet of every connection (before the policy engine exists, and as a
//! node-wide blocklist after).

use std::{fmt, net::IpAddr, str::FromStr};

use aya::maps::lpm_trie::Key;
use flowscope_common::{DENY_KEY_FIXED_BITS, DenyKey, DenyValue, FAMILY_IPV4, FAMILY_IPV6};
use ipnet::IpNet;

/// Protocols a deny rule may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
    Icmp,
}

impl Protocol {
    fn numbers(self, family: u8) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
            Protocol::Icmp if family == FAMILY_IPV4 => 1,
            Protocol::Icmp => 58,
        }
    }
}

/// One rule: traffic to `cidr` (and `port`, and `protocol`, when given) is dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DenyRule {
    pub cidr: IpNet,
    pub port: Option<u16>,
    pub protocol: Option<Protocol>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid deny rule {input:?}: {reason}")]
pub struct DenyRuleError {
    input: String,
    reason: String,
}

impl FromStr for DenyRule {
    type Err = DenyRuleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| DenyRuleError {
            input: s.to_string(),
            reason,
        };
        let (mut cidr, mut port, mut protocol) = (None, None, None);
        for part in s.split(',') {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                err(format!(
                    "{part:?} is not key=value (keys: cidr, port, protocol)"
                ))
            })?;
            match k.trim() {
                "cidr" => {
                    let v = v.trim();
                    let net = match v.parse::<IpNet>() {
                        Ok(n) => n,
                        Err(_) => v
                            .parse::<IpAddr>()
                            .map(IpNet::from)
                            .map_err(|_| err(format!("cidr {v:?} is not an IP address or CIDR")))?,
                    };
                    cidr = Some(net.trunc());
                }
                "port" => {
                    let p: u16 =
                        v.trim().parse().ok().filter(|p| *p != 0).ok_or_else(|| {
                            err(format!("port {v:?} is not a number in 1..=65535"))
                        })?;
                    port = Some(p);
                }
                "protocol" => {
                    protocol = Some(match v.trim().to_ascii_lowercase().as_str() {
                        "tcp" => Protocol::Tcp,
                        "udp" => Protocol::Udp,
                        "sctp" => Protocol::Sctp,
                        "icmp" => Protocol::Icmp,
                        other => {
                            return Err(err(format!(
                                "protocol {other:?} is not one of tcp, udp, sctp, icmp"
                            )));
                        }
                    })
                }
                other => {
                    return Err(err(format!(
                        "unknown key {other:?} (keys: cidr, port, protocol)"
                    )));
                }
            }
        }
        let cidr = cidr.ok_or_else(|| err("cidr is required".into()))?;
        if port.is_some() && protocol == Some(Protocol::Icmp) {
            return Err(err("icmp has no ports".into()));
        }
        Ok(DenyRule {
            cidr,
            port,
            protocol,
        })
    }
}

impl fmt::Display for DenyRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cidr={}", self.cidr)?;
        if let Some(p) = self.port {
            write!(f, ",port={p}")?;
        }
        if let Some(p) = self.protocol {
            write!(f, ",protocol={}", format!("{p:?}").to_lowercase())?;
        }
        Ok(())
    }
}

impl DenyRule {
    /// The trie entries for this rule. The datapath looks up (protocol, port), then
    /// (protocol, any port), then (any protocol, any port), so a rule with a port but no
    /// protocol becomes one entry per port-carrying protocol.
    pub fn trie_entries(&self, rule: u32) -> Vec<(Key<DenyKey>, DenyValue)> {
        let (family, addr, bits) = match self.cidr {
            IpNet::V4(n) => {
                let mut a = [0u8; 16];
                a[..4].copy_from_slice(&n.addr().octets());
                (FAMILY_IPV4, a, n.prefix_len() as u32)
            }
            IpNet::V6(n) => (FAMILY_IPV6, n.addr().octets(), n.prefix_len() as u32),
        };
        let protos: Vec<u8> = match (self.protocol, self.port) {
            (Some(p), _) => vec![p.numbers(family)],
            (None, Some(_)) => vec![6, 17, 132],
            (None, None) => vec![0],
        };
        let port_be = self.port.unwrap_or(0).to_be();
        protos
            .into_iter()
            .map(|proto| {
                (
                    Key::new(
                        DENY_KEY_FIXED_BITS + bits,
                        DenyKey {
                            proto,
                            family,
                            port_be,
                            addr,
                        },
                    ),
                    DenyValue { rule },
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_rule() {
        let r: DenyRule = "cidr=198.18.0.9/24,port=8080,protocol=TCP".parse().unwrap();
        assert_eq!(r.cidr.to_string(), "198.18.0.0/24");
        assert_eq!(r.port, Some(8080));
        assert_eq!(r.protocol, Some(Protocol::Tcp));
        assert_eq!(r.to_string(), "cidr=198.18.0.0/24,port=8080,protocol=tcp");
    }

    #[test]
    fn bare_address_is_a_host_route() {
        let r: DenyRule = "cidr=2001:db8::1".parse().unwrap();
        assert_eq!(r.cidr.to_string(), "2001:db8::1/128");
        let entries = r.trie_entries(3);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].0.prefix_len(), 32 + 128);
        assert_eq!(entries[0].1.rule, 3);
        assert_eq!(entries[0].0.data().proto, 0);
    }

    #[test]
    fn port_without_protocol_covers_port_protocols() {
        let r: DenyRule = "cidr=198.18.0.0/15,port=53".parse().unwrap();
        let protos: Vec<u8> = r.trie_entries(0).iter().map(|e| e.0.data().proto).collect();
        assert_eq!(protos, vec![6, 17, 132]);
        assert!(
            r.trie_entries(0)
                .iter()
                .all(|e| e.0.data().port_be == 53u16.to_be())
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let cases = [
            ("port=80", "cidr is required"),
            ("cidr=198.18.0.0/33", "not an IP address or CIDR"),
            ("cidr=198.18.0.1,port=0", "1..=65535"),
            ("cidr=198.18.0.1,protocol=gre", "not one of tcp"),
            ("cidr=198.18.0.1,colour=red", "unknown key \"colour\""),
            ("cidr=198.18.0.1,port=1,protocol=icmp", "icmp has no ports"),
            ("198.18.0.1", "not key=value"),
        ];
        for (input, want) in cases {
            let e = input.parse::<DenyRule>().unwrap_err().to_string();
            assert!(e.contains(want), "{input}: {e}");
            assert!(e.contains(input), "{input}: {e}");
        }
    }
}
