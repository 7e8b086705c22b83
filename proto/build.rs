//! Generates Hubble's gRPC API from the vendored protos (`hubble/`, unchanged from Cilium):
//! protox compiles them (no protoc needed), prost and tonic generate the messages and the
//! clients, pbjson their JSON mapping (protojson's, as Hubble writes it). The service traits
//! the servers implement come from a second pass (`servers/`) that uses the first pass's
//! messages, except that `GetFlows` streams `crate::Encoded`: a response encoded once and
//! shared by every subscriber.

use anyhow::Context as _;
use prost::Message as _;

const PROTOS: &[&str] = &[
    "flow/flow.proto",
    "observer/observer.proto",
    "peer/peer.proto",
    "relay/relay.proto",
];

fn main() -> anyhow::Result<()> {
    println!("cargo::rerun-if-changed=hubble");
    let fds = protox::compile(PROTOS, ["hubble"]).context("compiling the Hubble protos")?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = fds.encode_to_vec();
    tonic_prost_build::configure()
        .build_server(false)
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(fds.clone())
        .context("generating the Rust types")?;
    let servers = out.join("servers");
    std::fs::create_dir_all(&servers)?;
    let mut pass = tonic_prost_build::configure()
        .build_client(false)
        .out_dir(&servers)
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        // prost takes the most specific extern path: this one message is flowscope's.
        .extern_path(".observer.GetFlowsResponse", "crate::Encoded");
    for package in ["flow", "observer", "peer", "relay"] {
        pass = pass.extern_path(format!(".{package}"), format!("crate::{package}"));
    }
    pass.compile_fds(fds)
        .context("generating the service traits")?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .out_dir(&out)
        // Hubble writes protojson with the protos' own field names (`source_port`, `IP`).
        .preserve_proto_field_names()
        .build(&[".flow", ".observer", ".peer", ".relay"])
        .context("generating the JSON mapping")?;
    Ok(())
}
