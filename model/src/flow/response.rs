//! The `GetFlowsResponse` envelope streamed to clients (one JSON line each in
//! `hubble observe -o jsonpb`) and the non-flow events it carries: lost events and relay node
//! status.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};

use super::{Flow, LostEventSource, NodeState};
use crate::pbjson::{is_default, lenient_enum, nullable, u64_string};
use crate::time::Timestamp;

/// Events that were lost before reaching the reader (Hubble's `flow.LostEvent`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LostEvent {
    /// Where they were lost.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "lenient_enum")]
    pub source: LostEventSource,
    /// How many were lost.
    #[serde(
        skip_serializing_if = "is_default",
        alias = "numEventsLost",
        with = "u64_string"
    )]
    pub num_events_lost: u64,
    /// The CPU they were lost on (perf ring buffer only); an `Int32Value`, so `Some(0)` is
    /// printed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<i32>,
    /// Time of the first lost event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first: Option<Timestamp>,
    /// Time of the last lost event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<Timestamp>,
}

/// A change of node state, sent by the relay (Hubble's `relay.NodeStatusEvent`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeStatusEvent {
    /// The new state.
    #[serde(
        skip_serializing_if = "is_default",
        alias = "stateChange",
        deserialize_with = "lenient_enum"
    )]
    pub state_change: NodeState,
    /// The nodes the change applies to.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        alias = "nodeNames",
        deserialize_with = "nullable"
    )]
    pub node_names: Vec<String>,
    /// An optional message, e.g. the error.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub message: String,
}

/// What a [`GetFlowsResponse`] carries: the `response_types` oneof.
#[derive(Clone, Debug, PartialEq)]
pub enum ResponseKind {
    /// A flow (boxed: it is much larger than the other kinds).
    Flow(Box<Flow>),
    /// Lost events.
    LostEvents(LostEvent),
    /// A node state change (relay only).
    NodeStatus(NodeStatusEvent),
}

/// One line of `hubble observe -o jsonpb`: a flow, lost events or node status, plus the node
/// and time it was observed at.
#[derive(Clone, Debug, PartialEq)]
pub struct GetFlowsResponse {
    /// The payload; on the wire its key is `flow`, `lost_events` or `node_status`.
    pub kind: ResponseKind,
    /// The node where the event was observed.
    pub node_name: String,
    /// When the event was observed.
    pub time: Option<Timestamp>,
}

impl GetFlowsResponse {
    /// Wraps a flow, repeating its node name and time at the top level as Hubble does.
    pub fn from_flow(flow: impl Into<Box<Flow>>) -> Self {
        let flow = flow.into();
        GetFlowsResponse {
            node_name: flow.node_name.clone(),
            time: flow.time,
            kind: ResponseKind::Flow(flow),
        }
    }

    /// Wraps a lost-events notice observed on `node_name` at `time`.
    pub fn from_lost_events(
        event: LostEvent,
        node_name: impl Into<String>,
        time: Timestamp,
    ) -> Self {
        GetFlowsResponse {
            kind: ResponseKind::LostEvents(event),
            node_name: node_name.into(),
            time: Some(time),
        }
    }

    /// Wraps a node status change sent by the relay running on `node_name`.
    pub fn from_node_status(
        event: NodeStatusEvent,
        node_name: impl Into<String>,
        time: Timestamp,
    ) -> Self {
        GetFlowsResponse {
            kind: ResponseKind::NodeStatus(event),
            node_name: node_name.into(),
            time: Some(time),
        }
    }

    /// The flow, if this response carries one.
    pub fn flow(&self) -> Option<&Flow> {
        match &self.kind {
            ResponseKind::Flow(flow) => Some(flow),
            _ => None,
        }
    }

    /// Borrows this response in its serializable form.
    pub fn as_ref(&self) -> GetFlowsResponseRef<'_> {
        GetFlowsResponseRef {
            kind: match &self.kind {
                ResponseKind::Flow(flow) => ResponseKindRef::Flow(flow),
                ResponseKind::LostEvents(lost) => ResponseKindRef::LostEvents(lost),
                ResponseKind::NodeStatus(status) => ResponseKindRef::NodeStatus(status),
            },
            node_name: &self.node_name,
            time: self.time,
        }
    }
}

/// A borrowed [`GetFlowsResponse`]: serializes to the same JSON without owning (or cloning) the
/// flow, so a server can write flows it keeps behind an `Arc` in its ring buffer.
#[derive(Clone, Copy, Debug)]
pub struct GetFlowsResponseRef<'a> {
    /// The payload.
    pub kind: ResponseKindRef<'a>,
    /// The node where the event was observed.
    pub node_name: &'a str,
    /// When the event was observed.
    pub time: Option<Timestamp>,
}

/// The borrowed payload of a [`GetFlowsResponseRef`].
#[derive(Clone, Copy, Debug)]
pub enum ResponseKindRef<'a> {
    /// A flow.
    Flow(&'a Flow),
    /// Lost events.
    LostEvents(&'a LostEvent),
    /// A node state change.
    NodeStatus(&'a NodeStatusEvent),
}

impl<'a> From<&'a Flow> for GetFlowsResponseRef<'a> {
    /// The envelope Hubble writes around a flow: its node name and time repeated on top.
    fn from(flow: &'a Flow) -> Self {
        GetFlowsResponseRef {
            kind: ResponseKindRef::Flow(flow),
            node_name: &flow.node_name,
            time: flow.time,
        }
    }
}

impl Serialize for GetFlowsResponseRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("GetFlowsResponse", 3)?;
        match self.kind {
            ResponseKindRef::Flow(flow) => s.serialize_field("flow", flow)?,
            ResponseKindRef::LostEvents(lost) => s.serialize_field("lost_events", lost)?,
            ResponseKindRef::NodeStatus(status) => s.serialize_field("node_status", status)?,
        }
        if !self.node_name.is_empty() {
            s.serialize_field("node_name", self.node_name)?;
        }
        if let Some(time) = &self.time {
            s.serialize_field("time", time)?;
        }
        s.end()
    }
}

impl Serialize for GetFlowsResponse {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.as_ref().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for GetFlowsResponse {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Hand-written rather than `#[serde(flatten)]`: flatten buffers the whole flow into an
        // intermediate tree first, which the relay would pay for on every line it merges.
        struct ResponseVisitor;

        impl<'de> Visitor<'de> for ResponseVisitor {
            type Value = GetFlowsResponse;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a GetFlowsResponse object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut kind: Option<ResponseKind> = None;
                let mut node_name = String::new();
                let mut time = None;
                while let Some(key) = map.next_key::<ResponseField>()? {
                    let next = match key {
                        ResponseField::Flow => map
                            .next_value::<Option<Box<Flow>>>()?
                            .map(ResponseKind::Flow),
                        ResponseField::LostEvents => map
                            .next_value::<Option<LostEvent>>()?
                            .map(ResponseKind::LostEvents),
                        ResponseField::NodeStatus => map
                            .next_value::<Option<NodeStatusEvent>>()?
                            .map(ResponseKind::NodeStatus),
                        ResponseField::NodeName => {
                            node_name = map.next_value::<Option<String>>()?.unwrap_or_default();
                            None
                        }
                        ResponseField::Time => {
                            time = map.next_value()?;
                            None
                        }
                        ResponseField::Other => {
                            map.next_value::<IgnoredAny>()?;
                            None
                        }
                    };
                    if let Some(next) = next {
                        if kind.is_some() {
                            return Err(de::Error::custom(
                                "GetFlowsResponse sets more than one of flow, lost_events, \
                                 node_status",
                            ));
                        }
                        kind = Some(next);
                    }
                }
                let kind = kind.ok_or_else(|| {
                    de::Error::custom(
                        "GetFlowsResponse sets none of flow, lost_events, node_status",
                    )
                })?;
                Ok(GetFlowsResponse {
                    kind,
                    node_name,
                    time,
                })
            }
        }

        deserializer.deserialize_map(ResponseVisitor)
    }
}

/// Top-level keys of a `GetFlowsResponse`; unknown ones (e.g. `agent_event` in exporter files)
/// are skipped.
enum ResponseField {
    Flow,
    LostEvents,
    NodeStatus,
    NodeName,
    Time,
    Other,
}

impl<'de> Deserialize<'de> for ResponseField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldVisitor;
        impl Visitor<'_> for FieldVisitor {
            type Value = ResponseField;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a GetFlowsResponse field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ResponseField, E> {
                Ok(match v {
                    "flow" => ResponseField::Flow,
                    "lost_events" | "lostEvents" => ResponseField::LostEvents,
                    "node_status" | "nodeStatus" => ResponseField::NodeStatus,
                    "node_name" | "nodeName" => ResponseField::NodeName,
                    "time" => ResponseField::Time,
                    _ => ResponseField::Other,
                })
            }
        }
        deserializer.deserialize_identifier(FieldVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::tests::{full_flow, strings, ts};

    #[test]
    fn response_envelopes() {
        let t = ts("2024-06-01T10:00:00Z");
        let lost = GetFlowsResponse::from_lost_events(
            LostEvent {
                source: LostEventSource::HubbleRingBuffer,
                num_events_lost: 3,
                cpu: Some(0),
                first: Some(ts("2024-06-01T09:59:59.5Z")),
                last: Some(ts("2024-06-01T09:59:59.75Z")),
            },
            "node-1",
            t,
        );
        let lost_json = concat!(
            r#"{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"3","cpu":0,"#,
            r#""first":"2024-06-01T09:59:59.500Z","last":"2024-06-01T09:59:59.750Z"},"#,
            r#""node_name":"node-1","time":"2024-06-01T10:00:00Z"}"#
        );
        assert_eq!(serde_json::to_string(&lost).unwrap(), lost_json);
        assert_eq!(
            serde_json::from_str::<GetFlowsResponse>(lost_json).unwrap(),
            lost
        );

        let status = GetFlowsResponse::from_node_status(
            NodeStatusEvent {
                state_change: NodeState::Unavailable,
                node_names: strings(&["a", "b"]),
                message: String::new(),
            },
            "relay-0",
            t,
        );
        let status_json = concat!(
            r#"{"node_status":{"state_change":"NODE_UNAVAILABLE","node_names":["a","b"]},"#,
            r#""node_name":"relay-0","time":"2024-06-01T10:00:00Z"}"#
        );
        assert_eq!(serde_json::to_string(&status).unwrap(), status_json);
        assert_eq!(
            serde_json::from_str::<GetFlowsResponse>(status_json).unwrap(),
            status
        );

        // Exporter files also carry agent events; a reader skips the key but needs a payload.
        let err = serde_json::from_str::<GetFlowsResponse>(r#"{"agent_event":{},"time":null}"#)
            .unwrap_err();
        assert!(err.to_string().contains("none of flow"), "{err}");
        let err = serde_json::from_str::<GetFlowsResponse>(r#"{"flow":{},"lost_events":{}}"#)
            .unwrap_err();
        assert!(err.to_string().contains("more than one"), "{err}");
    }

    #[test]
    fn borrowed_envelope_matches_owned() {
        let flow = full_flow();
        let owned = serde_json::to_string(&GetFlowsResponse::from_flow(flow.clone())).unwrap();
        let borrowed = serde_json::to_string(&GetFlowsResponseRef::from(&flow)).unwrap();
        assert_eq!(owned, borrowed);
        assert!(owned.starts_with(r#"{"flow":{"time":"#));
        assert!(
            owned.ends_with(
                r#"},"node_name":"prod/node-1","time":"2024-06-01T10:00:00.123456789Z"}"#
            )
        );
    }
}
