//! The spelling rules of a policy's ports and CIDRs.
//!
//! They exist here because a policy the API server would refuse must be refused by flowscope
//! too, with the same reason: a selector with an invalid label value never reaches the
//! cluster, so showing what it "would" allow would be showing a policy that does not exist.
//! Names, label keys and label values follow Kubernetes' rules, which every flowscope crate
//! shares through `flowscope_meta::names`. Each check returns `Err(message)` saying what is
//! accepted.

use std::net::IpAddr;

use flowscope_meta::names;
use ipnet::IpNet;

/// A port name where a port number or name belongs (a NetworkPolicy's `port: http`).
pub(crate) fn port_name(text: &str) -> Result<(), String> {
    names::port_name(text).map_err(|error| {
        format!(
            "{text:?} is not a port number or a port name: {}",
            error.explain()
        )
    })
}

/// A port number, 1 to 65535.
pub(crate) fn port_number(n: i128) -> Result<u16, String> {
    match u16::try_from(n) {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(format!("{n} is not a port number: 1 to 65535")),
    }
}

/// A CIDR such as `10.0.0.0/8` or `2001:db8::/32`. Host bits are accepted and cleared, as Go's
/// `net.ParseCIDR`, which the API server uses, does.
pub(crate) fn cidr(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>().map(|net| net.trunc()).map_err(|_| {
        format!("{text:?} is not a CIDR: an address and a prefix length, e.g. 10.0.0.0/8 or 2001:db8::/32")
    })
}

/// A CIDR, or a bare address taken as a single host (Cilium's `toCIDR` accepts both).
pub(crate) fn cidr_or_address(text: &str) -> Result<IpNet, String> {
    if let Ok(address) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(address));
    }
    text.parse::<IpNet>().map(|net| net.trunc()).map_err(|_| {
        format!("{text:?} is not a CIDR or an address, e.g. 10.0.0.0/8, 192.0.2.1 or 2001:db8::/32")
    })
}

/// `except` must lie strictly inside `cidr`: same family, contained, and a longer prefix (an
/// exception as large as the block would leave nothing, which the API server refuses).
pub(crate) fn strict_subnet(cidr: &IpNet, except: &IpNet) -> Result<(), String> {
    if cidr.contains(except) && except.prefix_len() > cidr.prefix_len() {
        Ok(())
    } else {
        Err(format!("{except} is not strictly inside {cidr}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names_and_numbers() {
        assert!(port_name("serve-80-tcp").is_ok());
        assert!(port_name("80").is_err());
        assert!(port_name("http--x").is_err());
        assert!(port_name("serve-80-tcp-long").is_err());
        assert!(port_name("HTTP").is_err());
        assert_eq!(port_number(53), Ok(53));
        assert!(port_number(0).is_err());
        assert!(port_number(65536).is_err());
    }

    #[test]
    fn cidrs_and_exceptions() {
        let block = cidr("10.0.0.1/8").expect("valid");
        assert_eq!(block.to_string(), "10.0.0.0/8");
        assert!(cidr("10.0.0.1").is_err());
        assert_eq!(
            cidr_or_address("10.0.0.1").expect("valid").to_string(),
            "10.0.0.1/32"
        );
        let inside = cidr("10.1.0.0/16").expect("valid");
        assert!(strict_subnet(&block, &inside).is_ok());
        assert!(strict_subnet(&block, &block).is_err());
        assert!(strict_subnet(&block, &cidr("11.0.0.0/16").expect("valid")).is_err());
        assert!(strict_subnet(&block, &cidr("::/64").expect("valid")).is_err());
    }
}
