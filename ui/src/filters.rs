//! The filter bar's entries and the `GetFlowsRequest` they make, with the CLI's semantics.
//!
//! An entry is `[!][from:|to:|either:]kind=value`, as Hubble UI writes them
//! (`from:label=k8s:app=frontend`, `to:pod=default/my-api`, `ip=198.18.1.2`); without a
//! direction it is `either`. Kinds: `label`, `pod`, `namespace`, `ip`, `port`, `fqdn`.
//! Like `flowscope observe`/`hubble observe`: entries of one kind and direction OR, different
//! ones AND, and `either` entries match the source in one filter and the destination in a
//! second one. Entries starting with `!` build the blacklist the same way.

use flowscope_model::{FlowFilter, GetFlowsRequest, flow::Verdict};

/// Which end of a flow an entry constrains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The source.
    From,
    /// The destination.
    To,
    /// Either end.
    Either,
}

/// What an entry matches on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A label selector, e.g. `k8s:app=frontend`.
    Label,
    /// `[namespace/]pod-name-prefix`.
    Pod,
    /// A whole namespace.
    Namespace,
    /// An address or CIDR.
    Ip,
    /// An L4 port.
    Port,
    /// A DNS name (`*` globs).
    Fqdn,
}

impl Kind {
    const ALL: [(Kind, &'static str); 6] = [
        (Kind::Label, "label"),
        (Kind::Pod, "pod"),
        (Kind::Namespace, "namespace"),
        (Kind::Ip, "ip"),
        (Kind::Port, "port"),
        (Kind::Fqdn, "fqdn"),
    ];

    fn name(self) -> &'static str {
        Kind::ALL
            .iter()
            .find(|(k, _)| *k == self)
            .map_or("label", |(_, n)| n)
    }
}

/// One entry of the filter bar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterEntry {
    /// `!`: flows matching it are left out.
    pub negated: bool,
    /// Which end.
    pub direction: Direction,
    /// What to match.
    pub kind: Kind,
    /// The value as typed.
    pub value: String,
}

impl FilterEntry {
    /// Parses `[!][from:|to:|either:]kind=value`; the error says what is accepted.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (negated, rest) = match text.strip_prefix('!') {
            Some(r) => (true, r.trim_start()),
            None => (false, text),
        };
        let (direction, rest) = [
            ("from:", Direction::From),
            ("to:", Direction::To),
            ("either:", Direction::Either),
        ]
        .into_iter()
        .find_map(|(p, d)| rest.strip_prefix(p).map(|r| (d, r)))
        .unwrap_or((Direction::Either, rest));
        let Some((kind, value)) = rest.split_once('=') else {
            return Err(format!(
                "'{text}': write [!][from:|to:|either:]kind=value, kind one of {}",
                kind_names()
            ));
        };
        let kind = Kind::ALL
            .iter()
            .find(|(_, n)| *n == kind.trim())
            .map(|(k, _)| *k)
            .ok_or_else(|| format!("'{}': unknown kind, use one of {}", kind, kind_names()))?;
        let value = value.trim();
        if value.is_empty() {
            return Err(format!("'{text}': the value is empty"));
        }
        if kind == Kind::Port && value.parse::<u16>().is_err() {
            return Err(format!("'{value}': a port is a number from 0 to 65535"));
        }
        Ok(FilterEntry {
            negated,
            direction,
            kind,
            value: value.to_string(),
        })
    }

    /// An entry on the source or destination of a flow, e.g. from the details panel.
    pub fn new(direction: Direction, kind: Kind, value: impl Into<String>) -> Self {
        FilterEntry {
            negated: false,
            direction,
            kind,
            value: value.into(),
        }
    }

    fn apply(&self, filter: &mut FlowFilter, source: bool) {
        let v = self.value.clone();
        let field = match (self.kind, source) {
            (Kind::Label, true) => &mut filter.source_label,
            (Kind::Label, false) => &mut filter.destination_label,
            (Kind::Pod, true) => &mut filter.source_pod,
            (Kind::Pod, false) => &mut filter.destination_pod,
            (Kind::Namespace, true) => &mut filter.source_pod,
            (Kind::Namespace, false) => &mut filter.destination_pod,
            (Kind::Ip, true) => &mut filter.source_ip,
            (Kind::Ip, false) => &mut filter.destination_ip,
            (Kind::Port, true) => &mut filter.source_port,
            (Kind::Port, false) => &mut filter.destination_port,
            (Kind::Fqdn, true) => &mut filter.source_fqdn,
            (Kind::Fqdn, false) => &mut filter.destination_fqdn,
        };
        // A namespace is the pod prefix `namespace/`, as Hubble's --namespace.
        let v = if self.kind == Kind::Namespace {
            format!("{}/", v.trim_end_matches('/'))
        } else {
            v
        };
        if !field.contains(&v) {
            field.push(v);
        }
    }
}

impl std::fmt::Display for FilterEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dir = match self.direction {
            Direction::From => "from:",
            Direction::To => "to:",
            Direction::Either => "",
        };
        let neg = if self.negated { "!" } else { "" };
        write!(f, "{neg}{dir}{}={}", self.kind.name(), self.value)
    }
}

fn kind_names() -> String {
    Kind::ALL
        .iter()
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Everything the server filters on: the bar's entries, the verdict and HTTP status menus.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filters {
    /// The filter bar's entries.
    pub entries: Vec<FilterEntry>,
    /// Only flows with this verdict.
    pub verdict: Option<Verdict>,
    /// HTTP status codes or prefixes, e.g. `404` or `5+`.
    pub http_status: Option<String>,
}

/// Builds one list (whitelist or blacklist) from entries, the way Hubble's CLI builds its
/// "left" and "right" filters: `from`/`to` entries apply to both, `either` entries to the
/// source in the left one and to the destination in the right one.
fn build(entries: &[&FilterEntry], base: &FlowFilter) -> Vec<FlowFilter> {
    let mut left = base.clone();
    let mut right: Option<FlowFilter> = None;
    for e in entries {
        match e.direction {
            Direction::From | Direction::To => {
                let source = e.direction == Direction::From;
                e.apply(&mut left, source);
                if let Some(r) = right.as_mut() {
                    e.apply(r, source);
                }
            }
            Direction::Either => {
                let r = right.get_or_insert_with(|| left.clone());
                e.apply(&mut left, true);
                e.apply(r, false);
            }
        }
    }
    let mut out = vec![left];
    out.extend(right);
    out.retain(|f| *f != FlowFilter::default());
    out
}

impl Filters {
    /// True when nothing is filtered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.verdict.is_none() && self.http_status.is_none()
    }

    /// The request the UI sends: the newest `number` flows, then follow.
    pub fn request(&self, number: u64) -> GetFlowsRequest {
        let mut base = FlowFilter::default();
        if let Some(v) = self.verdict {
            base.verdict = vec![v];
        }
        if let Some(code) = self.http_status.as_ref().filter(|c| !c.is_empty()) {
            base.http_status_code = vec![code.clone()];
        }
        let positive: Vec<&FilterEntry> = self.entries.iter().filter(|e| !e.negated).collect();
        let negative: Vec<&FilterEntry> = self.entries.iter().filter(|e| e.negated).collect();
        GetFlowsRequest {
            number,
            follow: true,
            whitelist: build(&positive, &base),
            blacklist: if negative.is_empty() {
                Vec::new()
            } else {
                build(&negative, &FlowFilter::default())
            },
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> FilterEntry {
        FilterEntry::parse(s).unwrap()
    }

    #[test]
    fn entries_parse_and_print_back() {
        let e = parse("from:label=k8s:app=frontend");
        assert_eq!(
            e,
            FilterEntry::new(Direction::From, Kind::Label, "k8s:app=frontend")
        );
        assert_eq!(e.to_string(), "from:label=k8s:app=frontend");
        let e = parse(" !to:pod=default/my-api ");
        assert!(e.negated);
        assert_eq!(e.to_string(), "!to:pod=default/my-api");
        assert_eq!(parse("ip=198.18.1.2").direction, Direction::Either);
        assert_eq!(parse("either:ip=198.18.1.2").to_string(), "ip=198.18.1.2");
        assert!(
            FilterEntry::parse("colour=red")
                .unwrap_err()
                .contains("unknown kind")
        );
        assert!(
            FilterEntry::parse("frontend")
                .unwrap_err()
                .contains("kind=value")
        );
        assert!(
            FilterEntry::parse("port=http")
                .unwrap_err()
                .contains("port")
        );
        assert!(FilterEntry::parse("pod=").unwrap_err().contains("empty"));
    }

    #[test]
    fn no_filters_ask_for_everything() {
        let r = Filters::default().request(2000);
        assert!(r.whitelist.is_empty() && r.blacklist.is_empty());
        assert!(r.follow);
        assert_eq!(r.number, 2000);
        assert!(r.validate().is_ok());
    }

    #[test]
    fn from_and_to_and_verdict_make_one_filter() {
        let f = Filters {
            entries: vec![
                parse("from:pod=default/frontend"),
                parse("to:namespace=kube-system"),
                parse("to:port=53"),
            ],
            verdict: Some(Verdict::Dropped),
            http_status: None,
        };
        let r = f.request(10);
        assert_eq!(r.whitelist.len(), 1);
        let w = &r.whitelist[0];
        assert_eq!(w.source_pod, ["default/frontend"]);
        assert_eq!(w.destination_pod, ["kube-system/"]);
        assert_eq!(w.destination_port, ["53"]);
        assert_eq!(w.verdict, [Verdict::Dropped]);
        r.compile().unwrap();
    }

    #[test]
    fn either_makes_a_source_and_a_destination_filter() {
        let f = Filters {
            entries: vec![parse("label=k8s:app=frontend"), parse("from:ip=198.18.1.1")],
            verdict: None,
            http_status: Some("5+".into()),
        };
        let r = f.request(10);
        assert_eq!(r.whitelist.len(), 2);
        assert_eq!(r.whitelist[0].source_label, ["k8s:app=frontend"]);
        assert_eq!(r.whitelist[1].destination_label, ["k8s:app=frontend"]);
        for w in &r.whitelist {
            assert_eq!(w.source_ip, ["198.18.1.1"], "from applies to both");
            assert_eq!(w.http_status_code, ["5+"]);
        }
        r.compile().unwrap();
    }

    #[test]
    fn negated_entries_make_the_blacklist() {
        let f = Filters {
            entries: vec![parse("!namespace=kube-system"), parse("from:pod=default/")],
            ..Default::default()
        };
        let r = f.request(10);
        assert_eq!(r.whitelist.len(), 1);
        assert_eq!(r.whitelist[0].source_pod, ["default/"]);
        assert_eq!(r.blacklist.len(), 2);
        assert_eq!(r.blacklist[0].source_pod, ["kube-system/"]);
        assert_eq!(r.blacklist[1].destination_pod, ["kube-system/"]);
        r.compile().unwrap();
    }
}
