//! What a client asks for: Hubble's `GetFlowsRequest` and `FlowFilter` in their protojson form,
//! and [`FilterSet`], the compiled allow/deny lists a server applies to every flow.
//!
//! Requests are read strictly (`deny_unknown_fields`, enum names checked) so a misspelt field
//! or value is reported by name instead of silently matching everything or nothing.

mod compile;
mod pattern;

use serde::{Deserialize, Deserializer, Serialize};

pub use compile::{FilterError, FilterProblem, FilterSet};

/// Values of an allowlist or denylist flag (`observe --allowlist`, the observer's
/// `--export-allowlist`): each is one JSON FlowFilter or several in a row, as Hubble takes them.
/// An error names the flag and the value.
pub fn parse_json_filters(flag: &str, values: &[String]) -> Result<Vec<FlowFilter>, String> {
    let mut out = Vec::new();
    for value in values {
        for filter in serde_json::Deserializer::from_str(value).into_iter::<FlowFilter>() {
            out.push(filter.map_err(|e| format!("--{flag}: {value:?} is not a FlowFilter: {e}"))?);
        }
    }
    Ok(out)
}
// Label selectors are Kubernetes' concept, shared with policies: flowscope-meta owns them.
pub use flowscope_meta::selector::{LabelSelector, SelectorError};

use crate::flow::{
    DropReason, HttpHeader, IpVersion, NetworkInterface, TcpFlags, TrafficDirection, Verdict,
    Workload,
};
use crate::pbjson::{is_default, nullable, u64_string, vec_u64_string};
use crate::time::Timestamp;

/// One filter of a request. Every set field must match (AND); within a field, any listed value
/// may match (OR). An empty filter matches every flow.
///
/// Field semantics follow Hubble's `pkg/hubble/filters`; see each field.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlowFilter {
    /// Flow UUIDs.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub uuid: Vec<String>,
    /// Source IPs: exact addresses (`"10.0.0.1"`) or CIDRs (`"10.0.0.0/8"`).
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "sourceIp",
        deserialize_with = "nullable"
    )]
    pub source_ip: Vec<String>,
    /// Source IPs after SNAT, as `source_ip`.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "sourceIpXlated",
        deserialize_with = "nullable"
    )]
    pub source_ip_xlated: Vec<String>,
    /// Source pods as `[namespace/]pod-name-prefix`: `"kube-system/coredns-"`, `"ns/"` (the
    /// whole namespace), `"/xwing"` (any namespace). Without a '/', the namespace is `default`.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "sourcePod",
        deserialize_with = "nullable"
    )]
    pub source_pod: Vec<String>,
    /// Source DNS names; `*` globs (`"*.example.com"`).
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "sourceFqdn",
        deserialize_with = "nullable"
    )]
    pub source_fqdn: Vec<String>,
    /// Kubernetes label selectors on the source labels (`"k8s:app=x,tier in (a,b)"`).
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "sourceLabel",
        deserialize_with = "nullable"
    )]
    pub source_label: Vec<String>,
    /// Source services, same syntax as `source_pod`.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "sourceService",
        deserialize_with = "nullable"
    )]
    pub source_service: Vec<String>,
    /// Source workloads; an empty name or kind matches any.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "sourceWorkload",
        deserialize_with = "strict::workloads"
    )]
    pub source_workload: Vec<Workload>,
    /// Source cluster names (exact).
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "sourceClusterName",
        deserialize_with = "nullable"
    )]
    pub source_cluster_name: Vec<String>,
    /// Destination IPs, as `source_ip`.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "destinationIp",
        deserialize_with = "nullable"
    )]
    pub destination_ip: Vec<String>,
    /// Destination pods, as `source_pod`.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "destinationPod",
        deserialize_with = "nullable"
    )]
    pub destination_pod: Vec<String>,
    /// Destination DNS names, as `source_fqdn`.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "destinationFqdn",
        deserialize_with = "nullable"
    )]
    pub destination_fqdn: Vec<String>,
    /// Label selectors on the destination labels, as `source_label`.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "destinationLabel",
        deserialize_with = "nullable"
    )]
    pub destination_label: Vec<String>,
    /// Destination services, as `source_pod`.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "destinationService",
        deserialize_with = "nullable"
    )]
    pub destination_service: Vec<String>,
    /// Destination workloads, as `source_workload`.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "destinationWorkload",
        deserialize_with = "strict::workloads"
    )]
    pub destination_workload: Vec<Workload>,
    /// Destination cluster names (exact).
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "destinationClusterName",
        deserialize_with = "nullable"
    )]
    pub destination_cluster_name: Vec<String>,
    /// Traffic directions.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "trafficDirection",
        deserialize_with = "nullable"
    )]
    pub traffic_direction: Vec<TrafficDirection>,
    /// Verdicts.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub verdict: Vec<Verdict>,
    /// Drop reasons; matches only dropped flows.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "dropReasonDesc",
        deserialize_with = "nullable"
    )]
    pub drop_reason_desc: Vec<DropReason>,
    /// Interfaces; a zero index or empty name matches any.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "strict::interfaces"
    )]
    pub interface: Vec<NetworkInterface>,
    /// Cilium event types, optionally with a sub-type.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "eventType",
        deserialize_with = "nullable"
    )]
    pub event_type: Vec<EventTypeFilter>,
    /// HTTP status codes (`"404"`) or prefixes (`"5+"`, `"40+"`).
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "httpStatusCode",
        deserialize_with = "nullable"
    )]
    pub http_status_code: Vec<String>,
    /// Protocols, case-insensitive: tcp, udp, icmp (v4 or v6), icmpv4, icmpv6, sctp, vrrp,
    /// igmp, and the L7 protocols dns, http, kafka.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub protocol: Vec<String>,
    /// L4 source ports, as decimal strings.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "sourcePort",
        deserialize_with = "nullable"
    )]
    pub source_port: Vec<String>,
    /// L4 destination ports, as decimal strings.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "destinationPort",
        deserialize_with = "nullable"
    )]
    pub destination_port: Vec<String>,
    /// Reply direction. A flow whose direction is unknown matches neither value, except
    /// dropped flows, which Hubble counts as non-replies for older clients.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub reply: Vec<bool>,
    /// Regular expressions on the DNS query name.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "dnsQuery",
        deserialize_with = "nullable"
    )]
    pub dns_query: Vec<String>,
    /// Source security identities.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "sourceIdentity",
        deserialize_with = "nullable"
    )]
    pub source_identity: Vec<u32>,
    /// Destination security identities.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "destinationIdentity",
        deserialize_with = "nullable"
    )]
    pub destination_identity: Vec<u32>,
    /// HTTP methods, case-insensitive.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "httpMethod",
        deserialize_with = "nullable"
    )]
    pub http_method: Vec<String>,
    /// Regular expressions on the (percent-decoded) path of the HTTP URL.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "httpPath",
        deserialize_with = "nullable"
    )]
    pub http_path: Vec<String>,
    /// Regular expressions on the whole HTTP URL.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "httpUrl",
        deserialize_with = "nullable"
    )]
    pub http_url: Vec<String>,
    /// Exact HTTP headers (key and value).
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "httpHeader",
        deserialize_with = "strict::headers"
    )]
    pub http_header: Vec<HttpHeader>,
    /// TCP flag sets: a flow matches a set if it has all of the set's flags.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "tcpFlags",
        deserialize_with = "strict::tcp_flags"
    )]
    pub tcp_flags: Vec<TcpFlags>,
    /// Node-name globs: `"k8s*"`, `"prod/*"`, `"cluster/"`.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "nodeName",
        deserialize_with = "nullable"
    )]
    pub node_name: Vec<String>,
    /// Label selectors on the node labels.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "nodeLabels",
        deserialize_with = "nullable"
    )]
    pub node_labels: Vec<String>,
    /// IP versions.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "ipVersion",
        deserialize_with = "nullable"
    )]
    pub ip_version: Vec<IpVersion>,
    /// Distributed-tracing trace IDs.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "traceId",
        deserialize_with = "nullable"
    )]
    pub trace_id: Vec<String>,
    /// IP-option trace IDs.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "ipTraceId",
        with = "vec_u64_string"
    )]
    pub ip_trace_id: Vec<u64>,
    /// Encryption (WireGuard/IPsec) status.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub encrypted: Vec<bool>,
    /// Experimental filters. CEL expressions are refused when compiling: flowscope does not
    /// evaluate CEL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub experimental: Option<FlowFilterExperimental>,
}

/// A Cilium event type to match, optionally with its sub-type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventTypeFilter {
    /// The monitor message type (see [`crate::flow::event_type`]); 0 matches any type.
    #[serde(
        rename = "type",
        skip_serializing_if = "is_default",
        deserialize_with = "nullable"
    )]
    pub event_type: i32,
    /// Whether `sub_type` must match too (0 is a valid sub-type).
    #[serde(
        skip_serializing_if = "is_default",
        alias = "matchSubType",
        deserialize_with = "nullable"
    )]
    pub match_sub_type: bool,
    /// The sub-type, e.g. a drop reason or trace point.
    #[serde(
        skip_serializing_if = "is_default",
        alias = "subType",
        deserialize_with = "nullable"
    )]
    pub sub_type: i32,
}

/// `FlowFilter.Experimental`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlowFilterExperimental {
    /// CEL expressions over the flow; not supported by flowscope.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "celExpression",
        deserialize_with = "nullable"
    )]
    pub cel_expression: Vec<String>,
}

/// Readers for the filter fields whose element types are shared with [`crate::flow::Flow`]:
/// flows ignore unknown keys in them, requests must not.
mod strict {
    use super::*;

    fn list<'de, D, Strict, T>(deserializer: D) -> Result<Vec<T>, D::Error>
    where
        D: Deserializer<'de>,
        Strict: Deserialize<'de> + Into<T>,
    {
        let items: Option<Vec<Strict>> = Option::deserialize(deserializer)?;
        Ok(items
            .unwrap_or_default()
            .into_iter()
            .map(Into::into)
            .collect())
    }

    #[derive(Deserialize, Default)]
    #[serde(default, deny_unknown_fields)]
    struct StrictWorkload {
        name: String,
        kind: String,
    }

    impl From<StrictWorkload> for Workload {
        fn from(w: StrictWorkload) -> Self {
            Workload {
                name: w.name,
                kind: w.kind,
            }
        }
    }

    pub(super) fn workloads<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Workload>, D::Error> {
        list::<D, StrictWorkload, Workload>(d)
    }

    #[derive(Deserialize, Default)]
    #[serde(default, deny_unknown_fields)]
    struct StrictInterface {
        index: u32,
        name: String,
    }

    impl From<StrictInterface> for NetworkInterface {
        fn from(i: StrictInterface) -> Self {
            NetworkInterface {
                index: i.index,
                name: i.name,
            }
        }
    }

    pub(super) fn interfaces<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<NetworkInterface>, D::Error> {
        list::<D, StrictInterface, NetworkInterface>(d)
    }

    #[derive(Deserialize, Default)]
    #[serde(default, deny_unknown_fields)]
    struct StrictHeader {
        key: String,
        value: String,
    }

    impl From<StrictHeader> for HttpHeader {
        fn from(h: StrictHeader) -> Self {
            HttpHeader {
                key: h.key,
                value: h.value,
            }
        }
    }

    pub(super) fn headers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<HttpHeader>, D::Error> {
        list::<D, StrictHeader, HttpHeader>(d)
    }

    #[allow(non_snake_case)]
    #[derive(Deserialize, Default)]
    #[serde(default, deny_unknown_fields)]
    struct StrictTcpFlags {
        FIN: bool,
        SYN: bool,
        RST: bool,
        PSH: bool,
        ACK: bool,
        URG: bool,
        ECE: bool,
        CWR: bool,
        NS: bool,
    }

    impl From<StrictTcpFlags> for TcpFlags {
        fn from(f: StrictTcpFlags) -> Self {
            TcpFlags {
                FIN: f.FIN,
                SYN: f.SYN,
                RST: f.RST,
                PSH: f.PSH,
                ACK: f.ACK,
                URG: f.URG,
                ECE: f.ECE,
                CWR: f.CWR,
                NS: f.NS,
            }
        }
    }

    pub(super) fn tcp_flags<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<TcpFlags>, D::Error> {
        list::<D, StrictTcpFlags, TcpFlags>(d)
    }
}

/// A request for flows, Hubble's `observer.GetFlowsRequest`.
///
/// Call [`GetFlowsRequest::compile`] (or [`GetFlowsRequest::validate`] and
/// [`FilterSet::compile`]) before serving it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GetFlowsRequest {
    /// How many flows: the last `number`, or the first with `first`. 0 with `follow` means
    /// "only new flows".
    #[serde(skip_serializing_if = "is_default", with = "u64_string")]
    pub number: u64,
    /// Return the oldest `number` flows instead of the newest.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub first: bool,
    /// Keep streaming new flows.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub follow: bool,
    /// Flows matching any of these are left out.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub blacklist: Vec<FlowFilter>,
    /// Only flows matching one of these are returned (all flows if empty).
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub whitelist: Vec<FlowFilter>,
    /// Only flows at or after this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    /// Only flows at or before this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
    /// Only these fields of each flow are sent ([`crate::flow::FieldMask`]): protojson's
    /// comma-separated string or `{"paths": [...]}`.
    #[serde(skip_serializing_if = "Option::is_none", alias = "fieldMask")]
    pub field_mask: Option<serde_json::Value>,
    /// Hubble's older place for the mask (`experimental.field_mask`); nothing else.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub experimental: Option<serde_json::Value>,
    /// Accepted so Hubble clients' requests parse; must be empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extensions: Option<serde_json::Value>,
}

/// A request that cannot be served as asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    /// `first` reads forward from the oldest flow; `follow` never ends.
    #[error("first and follow cannot be combined")]
    FirstWithFollow,
    /// An empty time window.
    #[error("since ({since}) is after until ({until})")]
    SinceAfterUntil {
        /// The requested start.
        since: Timestamp,
        /// The requested end.
        until: Timestamp,
    },
    /// A Hubble request field flowscope does not implement.
    #[error("{field}: not supported by flowscope ({reason})")]
    Unsupported {
        /// The field.
        field: &'static str,
        /// Why, or what to do instead.
        reason: &'static str,
    },
    /// A filter that does not compile.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// A field mask naming a field flows do not have.
    #[error("field_mask: {0}")]
    FieldMask(String),
}

impl GetFlowsRequest {
    /// Checks the request's own fields (not the filters; see [`GetFlowsRequest::compile`]).
    pub fn validate(&self) -> Result<(), RequestError> {
        if self.first && self.follow {
            return Err(RequestError::FirstWithFollow);
        }
        if let (Some(since), Some(until)) = (self.since, self.until)
            && since > until
        {
            return Err(RequestError::SinceAfterUntil { since, until });
        }
        self.mask()?;
        if let Some(serde_json::Value::Object(o)) = &self.experimental
            && o.keys().any(|k| k != "field_mask" && k != "fieldMask")
        {
            return Err(RequestError::Unsupported {
                field: "experimental",
                reason: "field_mask is the only experimental request option",
            });
        } else if !matches!(
            self.experimental,
            None | Some(serde_json::Value::Null) | Some(serde_json::Value::Object(_))
        ) {
            return Err(RequestError::Unsupported {
                field: "experimental",
                reason: "must be an object",
            });
        }
        if !is_empty_message(self.extensions.as_ref()) {
            return Err(RequestError::Unsupported {
                field: "extensions",
                reason: "request extensions are not understood",
            });
        }
        Ok(())
    }

    /// The field mask, from `field_mask` or else `experimental.field_mask`; None for whole
    /// flows.
    pub fn mask(&self) -> Result<Option<crate::flow::FieldMask>, RequestError> {
        let experimental = self
            .experimental
            .as_ref()
            .and_then(|e| e.get("field_mask").or_else(|| e.get("fieldMask")));
        let value = match (&self.field_mask, experimental) {
            (Some(m), _) if !m.is_null() => m,
            (_, Some(m)) => m,
            _ => return Ok(None),
        };
        crate::flow::FieldMask::from_json(value).map_err(RequestError::FieldMask)
    }

    /// Validates the request and compiles its whitelist and blacklist.
    pub fn compile(&self) -> Result<FilterSet, RequestError> {
        self.validate()?;
        Ok(FilterSet::compile(&self.whitelist, &self.blacklist)?)
    }
}

fn is_empty_message(value: Option<&serde_json::Value>) -> bool {
    match value {
        None | Some(serde_json::Value::Null) => true,
        Some(serde_json::Value::Object(o)) => o.is_empty(),
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_from_hubble_json() {
        let json = r#"{"number":"20","follow":true,
            "whitelist":[{"source_pod":["kube-system/"],"verdict":["DROPPED",1]},
                         {"destinationPod":["kube-system/"],"event_type":[{"type":1}]}],
            "blacklist":[{"tcp_flags":[{"SYN":true}],"ip_trace_id":["12",13]}],
            "since":"2024-06-01T10:00:00Z"}"#;
        let req: GetFlowsRequest = serde_json::from_str(json).unwrap();
        assert_eq!(req.number, 20);
        assert!(req.follow && !req.first);
        assert_eq!(req.whitelist[0].source_pod, ["kube-system/"]);
        assert_eq!(
            req.whitelist[0].verdict,
            [Verdict::Dropped, Verdict::Forwarded]
        );
        assert_eq!(req.whitelist[1].destination_pod, ["kube-system/"]);
        assert_eq!(req.whitelist[1].event_type[0].event_type, 1);
        assert!(req.blacklist[0].tcp_flags[0].SYN);
        assert_eq!(req.blacklist[0].ip_trace_id, [12, 13]);
        assert_eq!(
            req.since,
            Some(Timestamp::parse_rfc3339("2024-06-01T10:00:00Z").unwrap())
        );
        req.validate().unwrap();

        // Our own output is protojson again and reads back equal.
        let out = serde_json::to_string(&req).unwrap();
        assert!(
            out.starts_with(r#"{"number":"20","follow":true,"blacklist":"#),
            "{out}"
        );
        assert!(out.contains(r#""ip_trace_id":["12","13"]"#), "{out}");
        assert_eq!(serde_json::from_str::<GetFlowsRequest>(&out).unwrap(), req);
    }

    #[test]
    fn misspelt_fields_and_values_are_named() {
        let err = serde_json::from_str::<GetFlowsRequest>(r#"{"whitelist":[{"sourc_pod":["x"]}]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `sourc_pod`"), "{err}");

        let err = serde_json::from_str::<GetFlowsRequest>(r#"{"folow":true}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `folow`"), "{err}");

        let err = serde_json::from_str::<FlowFilter>(r#"{"verdict":["DROPED"]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant `DROPED`"), "{err}");
        assert!(err.contains("`DROPPED`"), "{err}");

        let err = serde_json::from_str::<FlowFilter>(r#"{"verdict":[42]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("42") && err.contains("Verdict"), "{err}");

        let err = serde_json::from_str::<FlowFilter>(r#"{"tcp_flags":[{"SYNN":true}]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `SYNN`"), "{err}");

        let err = serde_json::from_str::<FlowFilter>(r#"{"event_type":[{"type":1,"subtype":2}]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `subtype`"), "{err}");
    }

    #[test]
    fn validate_rejects_impossible_requests() {
        let req = GetFlowsRequest {
            first: true,
            follow: true,
            ..Default::default()
        };
        assert_eq!(req.validate(), Err(RequestError::FirstWithFollow));

        let req = GetFlowsRequest {
            since: Some(Timestamp::from_unix_nanos(2)),
            until: Some(Timestamp::from_unix_nanos(1)),
            ..Default::default()
        };
        assert!(matches!(
            req.validate(),
            Err(RequestError::SinceAfterUntil { .. })
        ));

        let req: GetFlowsRequest =
            serde_json::from_str(r#"{"field_mask":"source.pod_name,verdict"}"#).unwrap();
        req.validate().unwrap();
        assert!(req.mask().unwrap().is_some());
        let req: GetFlowsRequest =
            serde_json::from_str(r#"{"experimental":{"field_mask":{"paths":["IP"]}}}"#).unwrap();
        assert!(req.mask().unwrap().is_some());
        let req: GetFlowsRequest =
            serde_json::from_str(r#"{"field_mask":"source.podname"}"#).unwrap();
        let err = req.validate().unwrap_err().to_string();
        assert!(
            err.starts_with("field_mask: field mask path `source.podname`: `source` has no field"),
            "{err}"
        );
        let req: GetFlowsRequest = serde_json::from_str(r#"{"experimental":{"other":1}}"#).unwrap();
        assert!(req.validate().is_err());

        let req: GetFlowsRequest =
            serde_json::from_str(r#"{"field_mask":{"paths":[]},"experimental":{}}"#).unwrap();
        req.validate().unwrap();

        let req: GetFlowsRequest =
            serde_json::from_str(r#"{"whitelist":[{"source_ip":["10.0.0.0/33"]}]}"#).unwrap();
        assert_eq!(
            req.compile().unwrap_err().to_string(),
            r#"whitelist[0].source_ip[0]: "10.0.0.0/33" is not an IP address or CIDR"#
        );
    }
}
