//! Cilium's labels carry the source they came from: `k8s:app=x`, `reserved:world`,
//! `cidr:10.0.0.0/8`. Selectors over them (in a CiliumNetworkPolicy, or a Hubble label filter)
//! may name a source in the key (`k8s:app`); a key without one selects any source.
//!
//! Both readers of such keys (the policy compiler and the flow filters) split them here, so
//! `app` means "any source" in both.

use ipnet::IpNet;

/// The source a key without one means: labels from every source.
pub const ANY_SOURCE: &str = "any";

/// The label sources Cilium knows. A policy key with any other source (a typo such as
/// `k8:app`) would match nothing, silently; so policies refuse it.
pub const SOURCES: &[&str] = &[
    ANY_SOURCE,
    "k8s",
    "reserved",
    "container",
    "unspec",
    "cidr",
    "fqdn",
    "cilium-generated",
];

/// `k8s:app` -> (`k8s`, `app`); `app` -> (`any`, `app`): text before the first ':' is the
/// source, as in Cilium and Hubble.
pub fn split_source(key: &str) -> (&str, &str) {
    key.split_once(':').unwrap_or((ANY_SOURCE, key))
}

/// A label, sliced out of its `"source:key=value"` string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label<'a> {
    /// `k8s`, `reserved`, ...; `unspec` when the string names none.
    pub source: &'a str,
    /// The key without its source.
    pub key: &'a str,
    /// Empty for value-less labels such as `reserved:world`.
    pub value: &'a str,
}

impl<'a> Label<'a> {
    /// Cilium's label syntax: the source runs to the first ':' (a `$` prefix means `reserved`),
    /// and the key to the first '='.
    pub fn parse(label: &'a str) -> Self {
        let (source, rest) = if let Some(rest) = label.strip_prefix('$') {
            ("reserved", rest)
        } else if let Some((source, rest)) = label.split_once(':') {
            (if source.is_empty() { "unspec" } else { source }, rest)
        } else if let Some(rest) = label.strip_prefix("reserved.") {
            ("reserved", rest)
        } else {
            ("unspec", label)
        };
        let (key, value) = match rest.split_once('=') {
            // `reserved:=host` is how Cilium writes some reserved labels.
            Some(("", key)) if source == "reserved" => (key, ""),
            Some((key, value)) => (key, value),
            None => (rest, ""),
        };
        Label { source, key, value }
    }
}

/// A selector key as it applies to Cilium labels: a source (or any) and a key, and for `cidr:`
/// keys the prefix, so that broader selectors match narrower labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SourcedKey<'a> {
    /// `None` for the `any` source.
    source: Option<&'a str>,
    key: &'a str,
    cidr: Option<IpNet>,
}

impl<'a> SourcedKey<'a> {
    /// Splits a selector key. Costs no allocation, so matching may do it per flow.
    pub(crate) fn new(written: &'a str) -> Self {
        let (source, key) = split_source(written);
        let source = (source != ANY_SOURCE).then_some(source);
        let cidr = if source == Some("cidr") {
            parse_cidr_key(key)
        } else {
            None
        };
        SourcedKey { source, key, cidr }
    }

    pub(crate) fn selects(&self, label: &Label<'_>) -> bool {
        let Some(source) = self.source else {
            return label.key == self.key;
        };
        if label.source != source {
            return false;
        }
        if let Some(selector_net) = &self.cidr {
            // A broader cidr selector covers narrower cidr labels, as in Cilium.
            return parse_cidr_key(label.key).is_some_and(|label_net| {
                selector_net.prefix_len() <= label_net.prefix_len()
                    && selector_net.contains(&label_net.network())
            });
        }
        label.key == self.key
    }
}

/// Parses a Cilium CIDR label key, which spells IPv6 colons as '-' ("2001-db8--/32").
fn parse_cidr_key(key: &str) -> Option<IpNet> {
    const MAX: usize = 64;
    if key.len() > MAX {
        return None;
    }
    let mut buf = [0u8; MAX];
    for (dst, src) in buf.iter_mut().zip(key.bytes()) {
        *dst = if src == b'-' { b':' } else { src };
    }
    std::str::from_utf8(&buf[..key.len()]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_split_into_source_key_and_value() {
        let l = Label::parse("k8s:app.kubernetes.io/name=checkout");
        assert_eq!(
            (l.source, l.key, l.value),
            ("k8s", "app.kubernetes.io/name", "checkout")
        );
        let l = Label::parse("reserved:=host");
        assert_eq!((l.source, l.key, l.value), ("reserved", "host", ""));
        let l = Label::parse("$world");
        assert_eq!((l.source, l.key), ("reserved", "world"));
        let l = Label::parse("app=x");
        assert_eq!((l.source, l.key, l.value), ("unspec", "app", "x"));
    }

    #[test]
    fn keys_split_at_the_first_colon() {
        assert_eq!(split_source("k8s:app"), ("k8s", "app"));
        assert_eq!(split_source("app"), ("any", "app"));
        assert_eq!(split_source("cidr:2001:db8::/32").0, "cidr");
    }
}
