//! The spelling rules Kubernetes applies to names, label keys and values, port names and CIDRs.
//!
//! They exist here because a policy the API server would refuse must be refused by flowscope
//! too, with the same reason: a selector with an invalid label value never reaches the
//! cluster, so showing what it "would" allow would be showing a policy that does not exist.
//! Each check returns `Err(message)` saying what is accepted.

use std::net::IpAddr;

use ipnet::IpNet;

/// Kubernetes' limit on a DNS-1123 label (namespace names, label name parts, ...).
pub(crate) const MAX_LABEL_LEN: usize = 63;

/// Kubernetes' limit on a DNS-1123 subdomain (object names, label key prefixes).
pub(crate) const MAX_SUBDOMAIN_LEN: usize = 253;

/// IANA service names, which Kubernetes port names are, are at most this long.
pub(crate) const MAX_PORT_NAME_LEN: usize = 15;

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters: namespace names.
pub(crate) fn dns_label(text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text.len() <= MAX_LABEL_LEN
        && text.chars().all(|c| is_lower_alnum(c) || c == '-')
        && text.starts_with(is_lower_alnum)
        && text.ends_with(is_lower_alnum);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{text:?} is not a DNS-1123 label: at most {MAX_LABEL_LEN} lowercase letters, \
             digits and '-', starting and ending with a letter or digit"
        ))
    }
}

/// DNS-1123 labels joined by dots, at most 253 characters: object names.
pub(crate) fn dns_subdomain(text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text.len() <= MAX_SUBDOMAIN_LEN
        && text.split('.').all(|part| {
            !part.is_empty()
                && part.chars().all(|c| is_lower_alnum(c) || c == '-')
                && part.starts_with(is_lower_alnum)
                && part.ends_with(is_lower_alnum)
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{text:?} is not a DNS-1123 subdomain: at most {MAX_SUBDOMAIN_LEN} lowercase \
             letters, digits, '-' and '.', each dot-separated part starting and ending with a \
             letter or digit"
        ))
    }
}

/// The name part of a label key, and a label value when non-empty:
/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, at most 63 characters.
fn label_name_part(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_LABEL_LEN
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A label or annotation key: an optional DNS subdomain and '/', then a name part.
pub(crate) fn label_key(text: &str) -> Result<(), String> {
    let ok = match text.split_once('/') {
        Some((prefix, name)) => dns_subdomain(prefix).is_ok() && label_name_part(name),
        None => label_name_part(text),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{text:?} is not a valid label key: an optional DNS subdomain and '/' (e.g. \
             app.kubernetes.io/), then at most {MAX_LABEL_LEN} letters, digits, '-', '_' or \
             '.', starting and ending with a letter or digit"
        ))
    }
}

/// A label value: empty, or a name part.
pub(crate) fn label_value(text: &str) -> Result<(), String> {
    if text.is_empty() || label_name_part(text) {
        Ok(())
    } else {
        Err(format!(
            "{text:?} is not a valid label value: empty, or at most {MAX_LABEL_LEN} letters, \
             digits, '-', '_' or '.', starting and ending with a letter or digit"
        ))
    }
}

/// A port name (an IANA service name): at most 15 of a-z, 0-9 and '-', at least one letter,
/// no '-' at either end and no "--".
pub(crate) fn port_name(text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text.len() <= MAX_PORT_NAME_LEN
        && text.chars().all(|c| is_lower_alnum(c) || c == '-')
        && text.chars().any(|c| c.is_ascii_lowercase())
        && !text.starts_with('-')
        && !text.ends_with('-')
        && !text.contains("--");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{text:?} is not a port number or a port name: a name is at most \
             {MAX_PORT_NAME_LEN} lowercase letters, digits and '-', with at least one letter, \
             no '-' at either end and no \"--\""
        ))
    }
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
    fn dns_names() {
        assert!(dns_label("kube-system").is_ok());
        assert!(dns_label("Default").is_err());
        assert!(dns_label("-a").is_err());
        assert!(dns_label(&"a".repeat(64)).is_err());
        assert!(dns_subdomain("allow.dns-egress").is_ok());
        assert!(dns_subdomain("allow..dns").is_err());
        assert!(dns_subdomain("allow_dns").is_err());
    }

    #[test]
    fn label_keys_and_values() {
        assert!(label_key("kubernetes.io/metadata.name").is_ok());
        assert!(label_key("app").is_ok());
        assert!(label_key("App_1.x").is_ok());
        assert!(label_key("/app").is_err());
        assert!(label_key("a/b/c").is_err());
        assert!(label_key("app-").is_err());
        assert!(label_value("").is_ok());
        assert!(label_value("v1.2_3").is_ok());
        assert!(label_value("a b").is_err());
        assert!(label_value(&"a".repeat(64)).is_err());
    }

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
