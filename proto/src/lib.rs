//! `flowscope-proto`: Hubble's gRPC API, generated at build time from the protos vendored
//! unchanged under `hubble/` (Cilium's `api/v1`, Apache-2.0; `hubble/README.md` says which
//! release). Every message also has Hubble's JSON mapping (pbjson: protojson's field names,
//! enums as names, 64-bit integers as strings, timestamps as RFC 3339), so the JSON flowscope
//! writes converts to these types and back with no field-by-field code.

/// The well-known types (`google.protobuf.*`) the messages use, with their JSON mapping.
pub use pbjson_types;

macro_rules! package {
    ($name:ident, $file:literal) => {
        #[allow(clippy::all, clippy::pedantic, missing_docs)]
        pub mod $name {
            include!(concat!(env!("OUT_DIR"), "/", $file, ".rs"));
            include!(concat!(env!("OUT_DIR"), "/", $file, ".serde.rs"));
        }
    };
}

package!(flow, "flow");
package!(observer, "observer");
package!(peer, "peer");
package!(relay, "relay");

/// The service traits servers implement: Hubble's, with `GetFlows` streaming [`Encoded`]
/// responses (the clients, in the packages above, read them as `observer::GetFlowsResponse`).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod servers {
    pub mod observer {
        include!(concat!(env!("OUT_DIR"), "/servers/observer.rs"));
    }
    pub mod peer {
        include!(concat!(env!("OUT_DIR"), "/servers/peer.rs"));
    }
}

pub mod client;
pub mod convert;

/// An `observer.GetFlowsResponse` in protobuf's wire form: a server encodes a flow once and
/// every subscriber sends the same bytes (a reference count, not a copy of the message); a
/// relay reads an observer's responses as they came and forwards them unchanged, reading only
/// their [`Head`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Encoded(pub bytes::Bytes);

impl Encoded {
    /// `response` in wire form.
    pub fn new(response: &observer::GetFlowsResponse) -> Self {
        Encoded(prost::Message::encode_to_vec(response).into())
    }

    /// What a merge needs of the response: its kind and time, without decoding the flow.
    pub fn head(&self) -> Result<Head, prost::DecodeError> {
        let envelope = <Envelope as prost::Message>::decode(self.0.clone())?;
        let kind = if envelope.flow.is_some() {
            Kind::Flow
        } else if envelope.lost_events.is_some() {
            Kind::LostEvents
        } else if envelope.node_status.is_some() {
            Kind::NodeStatus
        } else {
            Kind::Other
        };
        let time_ns = envelope
            .time
            .map(|t| t.seconds.saturating_mul(1_000_000_000) + i64::from(t.nanos));
        let lost = envelope.lost_events.map_or(0, |l| l.num_events_lost);
        Ok(Head {
            kind,
            time_ns,
            lost,
        })
    }

    /// The message itself.
    pub fn decode(&self) -> Result<observer::GetFlowsResponse, prost::DecodeError> {
        prost::Message::decode(self.0.clone())
    }
}

/// A response's kind and time ([`Encoded::head`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub kind: Kind,
    /// The response's `time` (a flow's own time), in nanoseconds since the Unix epoch.
    pub time_ns: Option<i64>,
    /// The events a lost-events response reports lost (0 for the others).
    pub lost: u64,
}

/// Which of `GetFlowsResponse`'s `response_types` a response carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Flow,
    NodeStatus,
    LostEvents,
    /// Something a newer server sends (or nothing).
    Other,
}

/// `GetFlowsResponse` read no further than [`Encoded::head`] needs: a flow stays bytes.
#[derive(Clone, PartialEq, prost::Message)]
struct Envelope {
    #[prost(bytes = "bytes", optional, tag = "1")]
    flow: Option<bytes::Bytes>,
    #[prost(bytes = "bytes", optional, tag = "2")]
    node_status: Option<bytes::Bytes>,
    #[prost(message, optional, tag = "3")]
    lost_events: Option<flow::LostEvent>,
    #[prost(message, optional, tag = "1001")]
    time: Option<pbjson_types::Timestamp>,
}

impl prost::Message for Encoded {
    fn encode_raw(&self, buf: &mut impl bytes::BufMut) {
        buf.put_slice(&self.0);
    }

    /// Keeps the wire bytes as they are (merging encodings is appending them).
    fn merge(&mut self, mut buf: impl bytes::Buf) -> Result<(), prost::DecodeError> {
        let more = buf.copy_to_bytes(buf.remaining());
        if self.0.is_empty() {
            self.0 = more;
        } else {
            let mut both = Vec::with_capacity(self.0.len() + more.len());
            both.extend_from_slice(&self.0);
            both.extend_from_slice(&more);
            self.0 = both.into();
        }
        Ok(())
    }

    /// Only reached when an `Encoded` is a field of another message, which none is.
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}
