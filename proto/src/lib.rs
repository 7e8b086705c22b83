//! `flowscope-proto`: Hubble's gRPC API, generated at build time from the protos vendored
//! unchanged under `hubble/` (Cilium's `api/v1`, Apache-2.0; `hubble/README.md` says which
//! release). Every message also has Hubble's JSON mapping (pbjson: protojson's field names,
//! enums as names, 64-bit integers as strings, timestamps as RFC 3339), so the JSON flowscope
//! writes converts to these types and back with no field-by-field code.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// The well-known types (`google.protobuf.*`) the messages use, with their JSON mapping.
pub use pbjson_types;

macro_rules! package {
    ($name:ident, $file:literal) => {
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
pub mod servers {
    pub mod observer {
        include!(concat!(env!("OUT_DIR"), "/servers/observer.rs"));
    }
    pub mod peer {
        include!(concat!(env!("OUT_DIR"), "/servers/peer.rs"));
    }
}

/// An `observer.GetFlowsResponse` already in protobuf's wire form: a server encodes a flow once
/// and every subscriber sends the same bytes (a reference count, not a copy of the message).
/// It is for sending only: decoding one skips every field (clients decode
/// `observer::GetFlowsResponse`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Encoded(pub bytes::Bytes);

impl Encoded {
    /// `response` in wire form.
    pub fn new(response: &observer::GetFlowsResponse) -> Self {
        Encoded(prost::Message::encode_to_vec(response).into())
    }
}

impl prost::Message for Encoded {
    fn encode_raw(&self, buf: &mut impl bytes::BufMut) {
        buf.put_slice(&self.0);
    }

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
