//! Builds the kernel programs (`ebpf/`) for the BPF target on the nightly toolchain, so the
//! observer can embed the object. `AYA_BUILD_SKIP=1` skips this (for host-only checks).
//! (The web UI is embedded by `server/build.rs`.)

use anyhow::{Context as _, anyhow};
use cargo_metadata::{Metadata, MetadataCommand, Package};

fn main() -> anyhow::Result<()> {
    let Metadata { packages, .. } = MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let Package {
        name,
        manifest_path,
        ..
    } = packages
        .into_iter()
        .find(|p| p.name.as_str() == "flowscope-ebpf")
        .ok_or_else(|| anyhow!("flowscope-ebpf package not found"))?;
    let root_dir = manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {manifest_path}"))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: name.as_str(),
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
