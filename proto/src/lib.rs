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
