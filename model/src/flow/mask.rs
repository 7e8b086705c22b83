//! Field masks (`GetFlowsRequest.field_mask`, `observe --field-mask`, the exporter's
//! `--export-field-mask`): only the named fields of each flow are sent. Paths are protobuf
//! field names joined by dots (`source.pod_name`, `l4.TCP.destination_port`, `IP`), checked
//! against `flow.proto` as Hubble checks them: a path may go through message fields, and ends
//! at any field; an unknown name is an error naming it.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// A field of a message: a value (or a repeated field, which a path cannot go into), or a
/// message whose fields a path may name.
#[derive(Clone, Copy)]
enum Field {
    Leaf,
    Message(&'static [(&'static str, Field)]),
}

use Field::{Leaf, Message};

const TCP_FLAGS: &[(&str, Field)] = &[
    ("FIN", Leaf),
    ("SYN", Leaf),
    ("RST", Leaf),
    ("PSH", Leaf),
    ("ACK", Leaf),
    ("URG", Leaf),
    ("ECE", Leaf),
    ("CWR", Leaf),
    ("NS", Leaf),
];
const PORTS: &[(&str, Field)] = &[("source_port", Leaf), ("destination_port", Leaf)];
const TCP: &[(&str, Field)] = &[
    ("source_port", Leaf),
    ("destination_port", Leaf),
    ("flags", Message(TCP_FLAGS)),
];
const ICMP: &[(&str, Field)] = &[("type", Leaf), ("code", Leaf)];
const L4: &[(&str, Field)] = &[
    ("TCP", Message(TCP)),
    ("UDP", Message(PORTS)),
    ("ICMPv4", Message(ICMP)),
    ("ICMPv6", Message(ICMP)),
    ("SCTP", Message(PORTS)),
    (
        "VRRP",
        Message(&[("type", Leaf), ("vrid", Leaf), ("priority", Leaf)]),
    ),
    ("IGMP", Message(&[("type", Leaf), ("group_address", Leaf)])),
];
const IP: &[(&str, Field)] = &[
    ("source", Leaf),
    ("source_xlated", Leaf),
    ("destination", Leaf),
    ("ipVersion", Leaf),
    ("encrypted", Leaf),
];
const ENDPOINT: &[(&str, Field)] = &[
    ("ID", Leaf),
    ("identity", Leaf),
    ("cluster_name", Leaf),
    ("namespace", Leaf),
    ("labels", Leaf),
    ("pod_name", Leaf),
    ("workloads", Leaf),
];
const SERVICE: &[(&str, Field)] = &[("name", Leaf), ("namespace", Leaf)];
const L7: &[(&str, Field)] = &[
    ("type", Leaf),
    ("latency_ns", Leaf),
    (
        "dns",
        Message(&[
            ("query", Leaf),
            ("ips", Leaf),
            ("ttl", Leaf),
            ("cnames", Leaf),
            ("observation_source", Leaf),
            ("rcode", Leaf),
            ("qtypes", Leaf),
            ("rrtypes", Leaf),
        ]),
    ),
    (
        "http",
        Message(&[
            ("code", Leaf),
            ("method", Leaf),
            ("url", Leaf),
            ("protocol", Leaf),
            ("headers", Leaf),
        ]),
    ),
    (
        "kafka",
        Message(&[
            ("error_code", Leaf),
            ("api_version", Leaf),
            ("api_key", Leaf),
            ("correlation_id", Leaf),
            ("topic", Leaf),
        ]),
    ),
];
/// `flow.Flow`, in `flow.proto`'s order.
const FLOW: &[(&str, Field)] = &[
    ("time", Leaf),
    ("uuid", Leaf),
    ("emitter", Message(&[("name", Leaf), ("version", Leaf)])),
    ("verdict", Leaf),
    ("drop_reason", Leaf),
    ("auth_type", Leaf),
    (
        "ethernet",
        Message(&[("source", Leaf), ("destination", Leaf)]),
    ),
    ("IP", Message(IP)),
    ("l4", Message(L4)),
    (
        "tunnel",
        Message(&[
            ("protocol", Leaf),
            ("IP", Message(IP)),
            ("l4", Message(L4)),
            ("vni", Leaf),
        ]),
    ),
    ("source", Message(ENDPOINT)),
    ("destination", Message(ENDPOINT)),
    ("Type", Leaf),
    ("node_name", Leaf),
    ("node_labels", Leaf),
    ("source_names", Leaf),
    ("destination_names", Leaf),
    ("l7", Message(L7)),
    ("reply", Leaf),
    ("event_type", Message(&[("type", Leaf), ("sub_type", Leaf)])),
    ("source_service", Message(SERVICE)),
    ("destination_service", Message(SERVICE)),
    ("traffic_direction", Leaf),
    ("policy_match_type", Leaf),
    ("trace_observation_point", Leaf),
    ("trace_reason", Leaf),
    ("file", Message(&[("name", Leaf), ("line", Leaf)])),
    (
        "ip_trace_id",
        Message(&[("trace_id", Leaf), ("ip_option_type", Leaf)]),
    ),
    ("drop_reason_desc", Leaf),
    ("is_reply", Leaf),
    ("debug_capture_point", Leaf),
    ("interface", Message(&[("index", Leaf), ("name", Leaf)])),
    ("proxy_port", Leaf),
    (
        "trace_context",
        Message(&[("parent", Message(&[("trace_id", Leaf)]))]),
    ),
    ("sock_xlate_point", Leaf),
    ("socket_cookie", Leaf),
    ("cgroup_id", Leaf),
    ("Summary", Leaf),
    ("extensions", Leaf),
    ("egress_allowed_by", Leaf),
    ("ingress_allowed_by", Leaf),
    ("egress_denied_by", Leaf),
    ("ingress_denied_by", Leaf),
    ("policy_log", Leaf),
    (
        "aggregate",
        Message(&[
            ("ingress_flow_count", Leaf),
            ("egress_flow_count", Leaf),
            ("unknown_direction_flow_count", Leaf),
        ]),
    ),
];

/// The fields to keep: a name maps to everything under it (`None`) or to the subfields named.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldMask(BTreeMap<String, Option<FieldMask>>);

impl FieldMask {
    /// A mask of `paths` (`source.pod_name`, `verdict`, ...), each checked against the flow's
    /// fields. Empty paths are skipped; no paths at all is no mask (`None`).
    pub fn new<S: AsRef<str>>(paths: &[S]) -> Result<Option<FieldMask>, String> {
        let mut mask = FieldMask::default();
        for path in paths {
            let path = path.as_ref().trim();
            if path.is_empty() {
                continue;
            }
            let mut fields = FLOW;
            let mut at = &mut mask;
            let names: Vec<&str> = path.split('.').collect();
            for (i, name) in names.iter().enumerate() {
                let Some((_, field)) = fields.iter().find(|(n, _)| n == name) else {
                    let within = if i == 0 {
                        "a flow".to_owned()
                    } else {
                        format!("`{}`", names[..i].join("."))
                    };
                    let known: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
                    return Err(format!(
                        "field mask path `{path}`: {within} has no field `{name}` (fields: {})",
                        known.join(", ")
                    ));
                };
                let last = i + 1 == names.len();
                match (field, last) {
                    (_, true) => {
                        // The whole field; a broader path already there covers it.
                        at.0.insert((*name).to_owned(), None);
                        break;
                    }
                    (Leaf, false) => {
                        return Err(format!(
                            "field mask path `{path}`: `{}` has no fields to select",
                            names[..=i].join(".")
                        ));
                    }
                    (Message(sub), false) => {
                        let entry =
                            at.0.entry((*name).to_owned())
                                .or_insert_with(|| Some(FieldMask::default()));
                        match entry {
                            // Already whole: nothing narrower to add.
                            None => break,
                            Some(next) => {
                                at = next;
                                fields = sub;
                            }
                        }
                    }
                }
            }
        }
        Ok((!mask.0.is_empty()).then_some(mask))
    }

    /// The paths of a request's `field_mask`: protojson's string form (`"a.b,c"`), or an
    /// object with `paths`.
    pub fn from_json(value: &Value) -> Result<Option<FieldMask>, String> {
        match value {
            Value::Null => Ok(None),
            Value::String(s) => FieldMask::new(&s.split(',').collect::<Vec<_>>()),
            Value::Object(o) => match o.get("paths") {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Array(paths)) => {
                    let paths: Option<Vec<&str>> = paths.iter().map(Value::as_str).collect();
                    FieldMask::new(&paths.ok_or("field mask: paths must be strings")?)
                }
                Some(_) => Err("field mask: paths must be a list of strings".to_owned()),
            },
            _ => Err("field mask: a string of comma-separated paths or {\"paths\": [...]}".into()),
        }
    }

    /// Keeps only the masked fields of a flow's JSON object.
    pub fn apply(&self, flow: &mut Map<String, Value>) {
        flow.retain(|name, value| match self.0.get(name) {
            None => false,
            Some(None) => true,
            Some(Some(sub)) => match value {
                Value::Object(inner) => {
                    sub.apply(inner);
                    !inner.is_empty()
                }
                _ => true,
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_select_fields_at_any_depth() {
        let mask = FieldMask::new(&[
            "time",
            "source.pod_name",
            "l4.TCP.destination_port",
            "verdict",
            "l4.UDP",
        ])
        .unwrap()
        .unwrap();
        let mut flow = json!({
            "time": "2026-11-25T21:30:00Z",
            "verdict": "DROPPED",
            "IP": {"source": "198.18.1.1"},
            "l4": {"TCP": {"source_port": 40000, "destination_port": 80, "flags": {"SYN": true}}},
            "source": {"namespace": "default", "pod_name": "frontend"},
            "destination": {"pod_name": "my-api"},
            "Summary": "TCP Flags: SYN",
        });
        mask.apply(flow.as_object_mut().unwrap());
        assert_eq!(
            flow,
            json!({
                "time": "2026-11-25T21:30:00Z",
                "verdict": "DROPPED",
                "l4": {"TCP": {"destination_port": 80}},
                "source": {"pod_name": "frontend"},
            })
        );
        // A whole field wins over a narrower path, in either order.
        let a = FieldMask::new(&["source", "source.pod_name"]).unwrap();
        let b = FieldMask::new(&["source.pod_name", "source"]).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn bad_paths_name_what_is_wrong() {
        let err = |paths: &[&str]| FieldMask::new(paths).unwrap_err();
        assert!(
            err(&["source.podname"])
                .starts_with("field mask path `source.podname`: `source` has no field `podname`"),
            "{}",
            err(&["source.podname"])
        );
        assert!(err(&["sauce"]).contains("a flow has no field `sauce`"));
        assert!(err(&["verdict.x"]).contains("`verdict` has no fields to select"));
        assert!(err(&["egress_allowed_by.name"]).contains("no fields to select"));
        assert_eq!(FieldMask::new(&["", " "]).unwrap(), None);
        assert_eq!(
            FieldMask::from_json(&json!("source.pod_name,verdict")).unwrap(),
            FieldMask::new(&["verdict", "source.pod_name"]).unwrap()
        );
        assert_eq!(
            FieldMask::from_json(&json!({"paths": ["IP"]})).unwrap(),
            FieldMask::new(&["IP"]).unwrap()
        );
        assert_eq!(FieldMask::from_json(&json!({"paths": []})).unwrap(), None);
        assert!(FieldMask::from_json(&json!(7)).is_err());
    }

    /// Every field a flow can carry is a field the mask knows, at every depth the mask can
    /// name: checked on a flow with every section filled.
    #[test]
    fn the_schema_knows_every_field_of_the_model() {
        use crate::flow::*;
        let endpoint = Endpoint {
            id: 1,
            identity: 2,
            cluster_name: "c".into(),
            namespace: "n".into(),
            labels: vec!["l".into()],
            pod_name: "p".into(),
            workloads: vec![Workload {
                name: "w".into(),
                kind: "k".into(),
            }],
        };
        let flow: Flow = serde_json::from_str(
            r#"{
            "time": "2026-11-25T21:30:00Z", "uuid": "u", "emitter": {"name": "a", "version": "b"},
            "verdict": "DROPPED", "drop_reason": 133, "auth_type": "SPIRE",
            "ethernet": {"source": "a", "destination": "b"},
            "IP": {"source": "1.1.1.1", "source_xlated": "2.2.2.2", "destination": "3.3.3.3",
                   "ipVersion": "IPv4", "encrypted": true},
            "l4": {"TCP": {"source_port": 1, "destination_port": 2, "flags": {"SYN": true}}},
            "tunnel": {"protocol": "VXLAN", "IP": {"source": "1.1.1.1"},
                       "l4": {"UDP": {"source_port": 1}}, "vni": 5},
            "Type": "L7", "node_name": "n", "node_labels": ["a"], "source_names": ["a"],
            "destination_names": ["b"],
            "l7": {"type": "RESPONSE", "latency_ns": "5",
                   "http": {"code": 200, "method": "GET", "url": "u", "protocol": "HTTP/1.1",
                            "headers": [{"key": "k", "value": "v"}]}},
            "reply": true, "event_type": {"type": 129, "sub_type": 3},
            "source_service": {"name": "s", "namespace": "n"},
            "destination_service": {"name": "s", "namespace": "n"},
            "traffic_direction": "INGRESS", "policy_match_type": 1,
            "trace_observation_point": "TO_ENDPOINT", "trace_reason": "NEW",
            "file": {"name": "f", "line": 3}, "ip_trace_id": {"trace_id": "9", "ip_option_type": 1},
            "drop_reason_desc": "POLICY_DENIED", "is_reply": true,
            "debug_capture_point": "DBG_CAPTURE_DELIVERY", "interface": {"index": 3, "name": "eth0"},
            "proxy_port": 5, "trace_context": {"parent": {"trace_id": "t"}},
            "sock_xlate_point": "SOCK_XLATE_POINT_PRE_DIRECTION_FWD", "socket_cookie": "7",
            "cgroup_id": "8", "Summary": "s", "extensions": {"@type": "x"},
            "egress_allowed_by": [{"name": "p"}], "ingress_allowed_by": [{"name": "p"}],
            "egress_denied_by": [{"name": "p"}], "ingress_denied_by": [{"name": "p"}],
            "policy_log": ["x"],
            "aggregate": {"ingress_flow_count": 1, "egress_flow_count": 2,
                          "unknown_direction_flow_count": 3}
        }"#,
        )
        .unwrap();
        let flow = Flow {
            source: Some(endpoint.clone()),
            destination: Some(endpoint),
            ..flow
        };
        let value = serde_json::to_value(&flow).unwrap();
        fn check(value: &Value, fields: &[(&str, Field)], path: &str) {
            let Value::Object(o) = value else { return };
            for (name, v) in o {
                let full = format!("{path}{name}");
                let Some((_, field)) = fields.iter().find(|(n, _)| n == name) else {
                    panic!("the mask does not know `{full}`");
                };
                if let Message(sub) = field {
                    check(v, sub, &format!("{full}."));
                }
            }
        }
        check(&value, FLOW, "");
        // Everything was filled: every top-level field the mask knows is there.
        let present = value.as_object().unwrap().len();
        assert_eq!(present, FLOW.len(), "{value:#}");
    }
}
