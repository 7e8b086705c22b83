//! What `--metrics` asks for, in Hubble's `--hubble-metrics` syntax: metrics separated by
//! commas or spaces, each optionally followed by `:` and `;`-separated options, e.g.
//! `flow,drop,dns:query;ignoreAAAA,httpV2:sourceContext=workload-name|pod;labelsContext=source_namespace,destination_namespace`.
//! A comma after a `labelsContext` value continues its label list (Helm's `\,` works too).
//! Everything is checked at start: a typo is an error that names it and lists what would be
//! accepted, never a metric that silently stays empty.

use std::{fmt, str::FromStr, time::Duration};

/// Series per family: enough for every pod pair of a busy node with a context label or two,
/// small enough that a scrape stays a few megabytes and Prometheus is not flooded when a
/// context like `ip` meets traffic from the whole internet.
pub const DEFAULT_SERIES_LIMIT: usize = 10_000;
/// Series that name a deleted pod are removed this long after the pod is gone (Hubble's one
/// minute): time for a last scrape to see their final values.
pub const DEFAULT_EXPIRY_GRACE: Duration = Duration::from_secs(60);

/// A flow metric, by its Hubble name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetricKind {
    Flow,
    Drop,
    Tcp,
    PortDistribution,
    Icmp,
    Policy,
    Dns,
    HttpV2,
}

impl MetricKind {
    pub const ALL: [MetricKind; 8] = [
        MetricKind::Flow,
        MetricKind::Drop,
        MetricKind::Tcp,
        MetricKind::PortDistribution,
        MetricKind::Icmp,
        MetricKind::Policy,
        MetricKind::Dns,
        MetricKind::HttpV2,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            MetricKind::Flow => "flow",
            MetricKind::Drop => "drop",
            MetricKind::Tcp => "tcp",
            MetricKind::PortDistribution => "port-distribution",
            MetricKind::Icmp => "icmp",
            MetricKind::Policy => "policy",
            MetricKind::Dns => "dns",
            MetricKind::HttpV2 => "httpV2",
        }
    }

    /// Options of this metric besides the context options every metric takes.
    pub const fn own_options(self) -> &'static [&'static str] {
        match self {
            MetricKind::Dns => &[OPT_QUERY, OPT_IGNORE_AAAA],
            MetricKind::HttpV2 => &[OPT_EXEMPLARS],
            _ => &[],
        }
    }

    fn parse(name: &str) -> Option<Self> {
        MetricKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for MetricKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

const OPT_QUERY: &str = "query";
const OPT_IGNORE_AAAA: &str = "ignoreAAAA";
const OPT_EXEMPLARS: &str = "exemplars";
const OPT_SOURCE: &str = "sourceContext";
const OPT_SOURCE_EGRESS: &str = "sourceEgressContext";
const OPT_SOURCE_INGRESS: &str = "sourceIngressContext";
const OPT_DESTINATION: &str = "destinationContext";
const OPT_DESTINATION_EGRESS: &str = "destinationEgressContext";
const OPT_DESTINATION_INGRESS: &str = "destinationIngressContext";
const OPT_LABELS: &str = "labelsContext";
/// The options every metric takes.
const CONTEXT_OPTIONS: [&str; 7] = [
    OPT_SOURCE,
    OPT_SOURCE_EGRESS,
    OPT_SOURCE_INGRESS,
    OPT_DESTINATION,
    OPT_DESTINATION_EGRESS,
    OPT_DESTINATION_INGRESS,
    OPT_LABELS,
];

/// How a `source` or `destination` label names an endpoint (Hubble's context identifiers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContextIdentifier {
    /// All identity labels, comma-separated.
    Identity,
    Namespace,
    /// `namespace/pod`.
    Pod,
    /// `namespace/` and the pod name without its generated suffixes (deprecated in Hubble).
    PodShort,
    PodName,
    /// DNS names known for the address (none yet: always empty, so `dns|ip` falls back).
    Dns,
    Ip,
    /// The first `reserved:` label (`reserved:kube-apiserver` first).
    ReservedIdentity,
    /// `namespace/workload`.
    Workload,
    WorkloadName,
    /// From `app.kubernetes.io/name`, `k8s-app` or `app`.
    App,
}

impl ContextIdentifier {
    pub const ALL: [ContextIdentifier; 11] = [
        ContextIdentifier::Identity,
        ContextIdentifier::Namespace,
        ContextIdentifier::Pod,
        ContextIdentifier::PodShort,
        ContextIdentifier::PodName,
        ContextIdentifier::Dns,
        ContextIdentifier::Ip,
        ContextIdentifier::ReservedIdentity,
        ContextIdentifier::Workload,
        ContextIdentifier::WorkloadName,
        ContextIdentifier::App,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            ContextIdentifier::Identity => "identity",
            ContextIdentifier::Namespace => "namespace",
            ContextIdentifier::Pod => "pod",
            ContextIdentifier::PodShort => "pod-short",
            ContextIdentifier::PodName => "pod-name",
            ContextIdentifier::Dns => "dns",
            ContextIdentifier::Ip => "ip",
            ContextIdentifier::ReservedIdentity => "reserved-identity",
            ContextIdentifier::Workload => "workload",
            ContextIdentifier::WorkloadName => "workload-name",
            ContextIdentifier::App => "app",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        // Hubble compares these case-insensitively.
        ContextIdentifier::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
    }
}

/// A label of `labelsContext`, in the order Hubble emits them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContextLabel {
    SourceIp,
    SourcePod,
    SourceNamespace,
    SourceWorkload,
    SourceWorkloadKind,
    SourceApp,
    DestinationIp,
    DestinationPod,
    DestinationNamespace,
    DestinationWorkload,
    DestinationWorkloadKind,
    DestinationApp,
    TrafficDirection,
}

impl ContextLabel {
    pub const ALL: [ContextLabel; 13] = [
        ContextLabel::SourceIp,
        ContextLabel::SourcePod,
        ContextLabel::SourceNamespace,
        ContextLabel::SourceWorkload,
        ContextLabel::SourceWorkloadKind,
        ContextLabel::SourceApp,
        ContextLabel::DestinationIp,
        ContextLabel::DestinationPod,
        ContextLabel::DestinationNamespace,
        ContextLabel::DestinationWorkload,
        ContextLabel::DestinationWorkloadKind,
        ContextLabel::DestinationApp,
        ContextLabel::TrafficDirection,
    ];

    /// The label name, which is also how `labelsContext` spells it.
    pub const fn name(self) -> &'static str {
        match self {
            ContextLabel::SourceIp => "source_ip",
            ContextLabel::SourcePod => "source_pod",
            ContextLabel::SourceNamespace => "source_namespace",
            ContextLabel::SourceWorkload => "source_workload",
            ContextLabel::SourceWorkloadKind => "source_workload_kind",
            ContextLabel::SourceApp => "source_app",
            ContextLabel::DestinationIp => "destination_ip",
            ContextLabel::DestinationPod => "destination_pod",
            ContextLabel::DestinationNamespace => "destination_namespace",
            ContextLabel::DestinationWorkload => "destination_workload",
            ContextLabel::DestinationWorkloadKind => "destination_workload_kind",
            ContextLabel::DestinationApp => "destination_app",
            ContextLabel::TrafficDirection => "traffic_direction",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        ContextLabel::ALL.into_iter().find(|l| l.name() == s)
    }
}

/// The context options of one metric: which endpoint labels its series carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContextOptions {
    /// `sourceContext`: alternatives, the first non-empty one is used.
    pub source: Vec<ContextIdentifier>,
    /// `sourceEgressContext`: replaces `source` for egress flows.
    pub source_egress: Vec<ContextIdentifier>,
    /// `sourceIngressContext`: replaces `source` for ingress flows.
    pub source_ingress: Vec<ContextIdentifier>,
    pub destination: Vec<ContextIdentifier>,
    pub destination_egress: Vec<ContextIdentifier>,
    pub destination_ingress: Vec<ContextIdentifier>,
    /// `labelsContext`, in Hubble's order, each once.
    pub labels: Vec<ContextLabel>,
}

impl ContextOptions {
    /// Series carry a `source` label: one of the source options is set. (Hubble adds the label
    /// only for `sourceContext`, which makes the egress/ingress variants alone do nothing.)
    pub fn has_source(&self) -> bool {
        !(self.source.is_empty() && self.source_egress.is_empty() && self.source_ingress.is_empty())
    }

    pub fn has_destination(&self) -> bool {
        !(self.destination.is_empty()
            && self.destination_egress.is_empty()
            && self.destination_ingress.is_empty())
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && !self.has_source() && !self.has_destination()
    }

    /// The context label names in the order their values follow: `labelsContext` ones, then
    /// `source`, then `destination`.
    pub fn label_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.labels.iter().map(|l| l.name()).collect();
        if self.has_source() {
            names.push("source");
        }
        if self.has_destination() {
            names.push("destination");
        }
        names
    }
}

/// One metric and its options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricSpec {
    pub kind: MetricKind,
    pub context: ContextOptions,
    /// dns `query`: also label the query name.
    pub query: bool,
    /// dns `ignoreAAAA`: skip flows whose only question is AAAA.
    pub ignore_aaaa: bool,
    /// httpV2 `exemplars=true`: accepted so Hubble configurations work; flows carry no trace
    /// IDs yet, so there are no exemplars to attach.
    pub exemplars: bool,
}

impl MetricSpec {
    pub fn new(kind: MetricKind) -> Self {
        MetricSpec {
            kind,
            context: ContextOptions::default(),
            query: false,
            ignore_aaaa: false,
            exemplars: false,
        }
    }
}

/// The flow metrics to record (`--metrics`), checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    pub metrics: Vec<MetricSpec>,
    /// Series per family; flows that would create more are counted in
    /// `<prefix>_metrics_series_refused_total{family}` instead.
    pub series_limit: usize,
    /// How long series naming a deleted pod, namespace, workload or address stay.
    pub expiry_grace: Duration,
}

impl MetricsConfig {
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut metrics: Vec<MetricSpec> = Vec::new();
        for item in items(text) {
            let spec = parse_metric(&item)?;
            if metrics.iter().any(|m| m.kind == spec.kind) {
                return Err(ConfigError::DuplicateMetric { metric: spec.kind });
            }
            metrics.push(spec);
        }
        if metrics.is_empty() {
            return Err(ConfigError::Empty);
        }
        Ok(MetricsConfig {
            metrics,
            series_limit: DEFAULT_SERIES_LIMIT,
            expiry_grace: DEFAULT_EXPIRY_GRACE,
        })
    }

    pub fn get(&self, kind: MetricKind) -> Option<&MetricSpec> {
        self.metrics.iter().find(|m| m.kind == kind)
    }
}

impl FromStr for MetricsConfig {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MetricsConfig::parse(s)
    }
}

/// The configuration in the syntax it was read from (canonical spelling and order of options).
impl fmt::Display for MetricsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list(ids: &[ContextIdentifier]) -> String {
            ids.iter().map(|i| i.name()).collect::<Vec<_>>().join("|")
        }
        for (i, m) in self.metrics.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(m.kind.name())?;
            let c = &m.context;
            let mut opts: Vec<String> = Vec::new();
            if m.query {
                opts.push(OPT_QUERY.into());
            }
            if m.ignore_aaaa {
                opts.push(OPT_IGNORE_AAAA.into());
            }
            if m.exemplars {
                opts.push(format!("{OPT_EXEMPLARS}=true"));
            }
            for (name, ids) in [
                (OPT_SOURCE, &c.source),
                (OPT_SOURCE_EGRESS, &c.source_egress),
                (OPT_SOURCE_INGRESS, &c.source_ingress),
                (OPT_DESTINATION, &c.destination),
                (OPT_DESTINATION_EGRESS, &c.destination_egress),
                (OPT_DESTINATION_INGRESS, &c.destination_ingress),
            ] {
                if !ids.is_empty() {
                    opts.push(format!("{name}={}", list(ids)));
                }
            }
            if !c.labels.is_empty() {
                let labels: Vec<&str> = c.labels.iter().map(|l| l.name()).collect();
                opts.push(format!("{OPT_LABELS}={}", labels.join(",")));
            }
            if !opts.is_empty() {
                write!(f, ":{}", opts.join(";"))?;
            }
        }
        Ok(())
    }
}

/// What is wrong with `--metrics`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("no metric named; name one or more of: {}", metric_names())]
    Empty,
    #[error("unknown metric `{name}`; accepted: {}", metric_names())]
    UnknownMetric { name: String },
    #[error("metric `{metric}` is listed twice")]
    DuplicateMetric { metric: MetricKind },
    #[error("metric `{metric}`: unknown option `{option}`; accepted: {}", option_names(*metric))]
    UnknownOption { metric: MetricKind, option: String },
    #[error(
        "metric `{metric}`: option `{option}` belongs to `{owner}`, not `{metric}`; \
         `{metric}` accepts: {}",
        option_names(*metric)
    )]
    OptionOfOtherMetric {
        metric: MetricKind,
        option: &'static str,
        owner: MetricKind,
    },
    #[error("metric `{metric}`: option `{option}` is given twice")]
    DuplicateOption {
        metric: MetricKind,
        option: &'static str,
    },
    #[error("metric `{metric}`: option `{option}` needs a value, e.g. `{option}={example}`")]
    MissingValue {
        metric: MetricKind,
        option: &'static str,
        example: &'static str,
    },
    #[error("metric `{metric}`: option `{option}` takes no value (got `{option}={value}`)")]
    UnexpectedValue {
        metric: MetricKind,
        option: &'static str,
        value: String,
    },
    #[error("metric `{metric}`: option `{option}` must be `true` or `false`, not `{value}`")]
    InvalidBool {
        metric: MetricKind,
        option: &'static str,
        value: String,
    },
    #[error(
        "metric `{metric}`: `{option}`: unknown context `{value}`; accepted (several joined \
         with `|`, the first non-empty is used): {}",
        context_names()
    )]
    UnknownContext {
        metric: MetricKind,
        option: &'static str,
        value: String,
    },
    #[error(
        "metric `{metric}`: `labelsContext`: unknown label `{value}`; accepted: {}",
        label_names()
    )]
    UnknownLabel { metric: MetricKind, value: String },
}

fn metric_names() -> String {
    MetricKind::ALL.map(|k| k.name()).join(", ")
}

fn option_names(kind: MetricKind) -> String {
    kind.own_options()
        .iter()
        .chain(CONTEXT_OPTIONS.iter())
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
}

fn context_names() -> String {
    ContextIdentifier::ALL.map(|c| c.name()).join(", ")
}

fn label_names() -> String {
    ContextLabel::ALL.map(|l| l.name()).join(", ")
}

/// Splits the text into one string per metric. Metrics are separated by commas or whitespace;
/// a comma inside a `labelsContext` value continues the label list, so the piece after it is
/// glued back unless it names a metric or starts options of its own.
fn items(text: &str) -> Vec<String> {
    let mut tokens: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // Helm's escaping of commas inside a list value.
            '\\' if chars.peek() == Some(&',') => {
                chars.next();
                current.push(',');
            }
            ',' => tokens.push(std::mem::take(&mut current)),
            c if c.is_whitespace() => tokens.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    tokens.push(current);
    let mut items: Vec<String> = Vec::new();
    for token in tokens.into_iter().filter(|t| !t.is_empty()) {
        let first = token.split(';').next().unwrap_or_default();
        let continues = items.last().is_some_and(|last| in_labels_value(last))
            && !token.contains(':')
            && MetricKind::parse(first).is_none();
        match items.last_mut() {
            Some(last) if continues => {
                last.push(',');
                last.push_str(&token);
            }
            _ => items.push(token),
        }
    }
    items
}

/// The metric text ends inside a `labelsContext=` value.
fn in_labels_value(item: &str) -> bool {
    let Some((_, options)) = item.split_once(':') else {
        return false;
    };
    let last = options.rsplit(';').next().unwrap_or_default();
    last.split_once('=')
        .is_some_and(|(key, _)| key.trim().eq_ignore_ascii_case(OPT_LABELS))
}

fn parse_metric(item: &str) -> Result<MetricSpec, ConfigError> {
    let (name, options) = item.split_once(':').unwrap_or((item, ""));
    let kind = MetricKind::parse(name.trim()).ok_or_else(|| ConfigError::UnknownMetric {
        name: name.trim().to_string(),
    })?;
    let mut spec = MetricSpec::new(kind);
    let mut seen: Vec<&'static str> = Vec::new();
    for segment in options.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (key, value) = match segment.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (segment, None),
        };
        let option = canonical_option(kind, key)?;
        if seen.contains(&option) {
            return Err(ConfigError::DuplicateOption {
                metric: kind,
                option,
            });
        }
        seen.push(option);
        apply_option(&mut spec, option, value)?;
    }
    Ok(spec)
}

/// The canonical spelling of an option this metric takes (Hubble matches keys ignoring case).
fn canonical_option(kind: MetricKind, key: &str) -> Result<&'static str, ConfigError> {
    let own = kind.own_options().iter().chain(CONTEXT_OPTIONS.iter());
    if let Some(option) = own.copied().find(|o| o.eq_ignore_ascii_case(key)) {
        return Ok(option);
    }
    for other in MetricKind::ALL {
        if let Some(option) = other
            .own_options()
            .iter()
            .copied()
            .find(|o| o.eq_ignore_ascii_case(key))
        {
            return Err(ConfigError::OptionOfOtherMetric {
                metric: kind,
                option,
                owner: other,
            });
        }
    }
    Err(ConfigError::UnknownOption {
        metric: kind,
        option: key.to_string(),
    })
}

fn apply_option(
    spec: &mut MetricSpec,
    option: &'static str,
    value: Option<&str>,
) -> Result<(), ConfigError> {
    let metric = spec.kind;
    let flag = |value: Option<&str>| match value {
        None => Ok(true),
        Some(v) => Err(ConfigError::UnexpectedValue {
            metric,
            option,
            value: v.to_string(),
        }),
    };
    let needed = |example: &'static str| match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(ConfigError::MissingValue {
            metric,
            option,
            example,
        }),
    };
    let identifiers = |v: &str| -> Result<Vec<ContextIdentifier>, ConfigError> {
        v.split('|')
            .map(|s| {
                ContextIdentifier::parse(s.trim()).ok_or_else(|| ConfigError::UnknownContext {
                    metric,
                    option,
                    value: s.trim().to_string(),
                })
            })
            .collect()
    };
    let c = &mut spec.context;
    match option {
        OPT_QUERY => spec.query = flag(value)?,
        OPT_IGNORE_AAAA => spec.ignore_aaaa = flag(value)?,
        OPT_EXEMPLARS => {
            spec.exemplars = match needed("true")? {
                v if v.eq_ignore_ascii_case("true") => true,
                v if v.eq_ignore_ascii_case("false") => false,
                v => {
                    return Err(ConfigError::InvalidBool {
                        metric,
                        option,
                        value: v.to_string(),
                    });
                }
            }
        }
        OPT_SOURCE => c.source = identifiers(needed("namespace|ip")?)?,
        OPT_SOURCE_EGRESS => c.source_egress = identifiers(needed("pod")?)?,
        OPT_SOURCE_INGRESS => c.source_ingress = identifiers(needed("pod")?)?,
        OPT_DESTINATION => c.destination = identifiers(needed("namespace|ip")?)?,
        OPT_DESTINATION_EGRESS => c.destination_egress = identifiers(needed("pod")?)?,
        OPT_DESTINATION_INGRESS => c.destination_ingress = identifiers(needed("pod")?)?,
        OPT_LABELS => {
            let mut labels = needed("source_namespace,destination_namespace")?
                .split(',')
                .map(str::trim)
                .map(|l| {
                    ContextLabel::parse(l).ok_or_else(|| ConfigError::UnknownLabel {
                        metric,
                        value: l.to_string(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            labels.sort();
            labels.dedup();
            c.labels = labels;
        }
        _ => unreachable!("canonical_option returns only known options"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BRIEF: &str = "flow,drop,tcp,port-distribution,icmp,policy,dns:query;ignoreAAAA,\
        httpV2:sourceContext=workload-name|pod;destinationContext=namespace;\
        labelsContext=source_namespace,destination_namespace";

    #[test]
    fn parses_hubbles_syntax_with_labels_context_commas() {
        let c = MetricsConfig::parse(BRIEF).unwrap();
        let kinds: Vec<MetricKind> = c.metrics.iter().map(|m| m.kind).collect();
        assert_eq!(kinds, MetricKind::ALL.to_vec());
        let dns = c.get(MetricKind::Dns).unwrap();
        assert!(dns.query && dns.ignore_aaaa);
        assert!(dns.context.is_empty());
        let http = c.get(MetricKind::HttpV2).unwrap();
        assert_eq!(
            http.context.source,
            vec![ContextIdentifier::WorkloadName, ContextIdentifier::Pod]
        );
        assert_eq!(http.context.destination, vec![ContextIdentifier::Namespace]);
        assert_eq!(
            http.context.labels,
            vec![
                ContextLabel::SourceNamespace,
                ContextLabel::DestinationNamespace
            ]
        );
        assert_eq!(
            http.context.label_names(),
            vec![
                "source_namespace",
                "destination_namespace",
                "source",
                "destination"
            ]
        );
        assert_eq!(c.series_limit, DEFAULT_SERIES_LIMIT);
        assert_eq!(c.expiry_grace, Duration::from_secs(60));
        // Display gives the canonical text back, which parses to the same thing.
        assert_eq!(MetricsConfig::parse(&c.to_string()).unwrap(), c);
    }

    #[test]
    fn accepts_spaces_helm_escapes_and_any_case_keys() {
        let c = MetricsConfig::parse(
            "dns:query  drop:sourcecontext=POD;labelsContext=source_pod\\,source_namespace flow",
        )
        .unwrap();
        let drop = c.get(MetricKind::Drop).unwrap();
        assert_eq!(drop.context.source, vec![ContextIdentifier::Pod]);
        assert_eq!(
            drop.context.labels,
            vec![ContextLabel::SourcePod, ContextLabel::SourceNamespace]
        );
        assert!(c.get(MetricKind::Flow).is_some());
        // A label list followed by another metric.
        let c =
            MetricsConfig::parse("flow:labelsContext=source_pod,traffic_direction,tcp").unwrap();
        assert_eq!(
            c.get(MetricKind::Flow).unwrap().context.labels,
            vec![ContextLabel::SourcePod, ContextLabel::TrafficDirection]
        );
        assert!(c.get(MetricKind::Tcp).is_some());
    }

    #[test]
    fn errors_name_the_item_and_list_what_is_accepted() {
        let err = |s: &str| MetricsConfig::parse(s).unwrap_err();
        let e = err("flow,dorp");
        assert_eq!(
            e,
            ConfigError::UnknownMetric {
                name: "dorp".into()
            }
        );
        let text = e.to_string();
        assert!(text.contains("`dorp`"), "{text}");
        assert!(
            text.contains("flow, drop, tcp, port-distribution, icmp, policy, dns, httpV2"),
            "{text}"
        );

        let text = err("flow:sauceContext=pod").to_string();
        assert!(
            text.contains("metric `flow`: unknown option `sauceContext`"),
            "{text}"
        );
        assert!(
            text.contains("sourceContext") && text.contains("labelsContext"),
            "{text}"
        );

        let text = err("drop:query").to_string();
        assert_eq!(
            err("drop:query"),
            ConfigError::OptionOfOtherMetric {
                metric: MetricKind::Drop,
                option: "query",
                owner: MetricKind::Dns
            }
        );
        assert!(text.contains("belongs to `dns`"), "{text}");

        let text = err("flow:sourceContext=namespace|podd").to_string();
        assert!(text.contains("unknown context `podd`"), "{text}");
        assert!(
            text.contains("workload-name") && text.contains("reserved-identity"),
            "{text}"
        );

        let text = err("flow:labelsContext=source_namespace,source_bogus").to_string();
        assert!(text.contains("unknown label `source_bogus`"), "{text}");
        assert!(text.contains("destination_workload_kind"), "{text}");

        assert!(matches!(
            err("flow,flow"),
            ConfigError::DuplicateMetric { .. }
        ));
        assert!(matches!(
            err("flow:sourceContext"),
            ConfigError::MissingValue { .. }
        ));
        assert!(matches!(
            err("dns:query=yes"),
            ConfigError::UnexpectedValue { .. }
        ));
        assert!(matches!(
            err("httpV2:exemplars=maybe"),
            ConfigError::InvalidBool { .. }
        ));
        assert!(matches!(
            err("flow:sourceContext=pod;sourceContext=ip"),
            ConfigError::DuplicateOption { .. }
        ));
        assert_eq!(err(" , "), ConfigError::Empty);
    }
}
