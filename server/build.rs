//! Embeds the web UI that `scripts/build-ui.sh` built into `ui/dist/` (or `FLOWSCOPE_UI_DIST`),
//! so the binary serves it from wherever it runs; see `src/ui.rs`.
use std::{fmt::Write as _, path::PathBuf};

use anyhow::Context as _;

#[path = "src/etag.rs"]
mod etag;
use etag::etag;

fn main() -> anyhow::Result<()> {
    embed_ui()
}

/// Writes `$OUT_DIR/ui_assets.rs`: `UI_ASSETS`, the name, bytes and entity tag of every file of
/// the built UI, empty when the UI has not been built.
fn embed_ui() -> anyhow::Result<()> {
    println!("cargo::rerun-if-env-changed=FLOWSCOPE_UI_DIST");
    println!("cargo::rerun-if-changed=src/etag.rs");
    let dist = match std::env::var_os("FLOWSCOPE_UI_DIST") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../ui/dist"),
    };
    // build-ui.sh replaces the directory whole, which changes its parent's mtime: watching the
    // parent notices a first build too (a path that does not exist would rerun this on every
    // cargo invocation).
    if let Some(parent) = dist.parent() {
        println!("cargo::rerun-if-changed={}", parent.display());
    }
    if dist.is_dir() {
        println!("cargo::rerun-if-changed={}", dist.display());
    }
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dist) {
        for entry in entries {
            let path = entry?.path();
            if !path.is_file() {
                continue;
            }
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            println!("cargo::rerun-if-changed={}", path.display());
            files.push((name.to_string(), path.canonicalize()?));
        }
    }
    files.sort();
    let mut code = String::from("pub static UI_ASSETS: &[(&str, &[u8], &str)] = &[\n");
    for (name, path) in &files {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        writeln!(
            code,
            "    ({name:?}, include_bytes!({:?}), {:?}),",
            path.display().to_string(),
            etag(&bytes)
        )?;
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("ui_assets.rs");
    std::fs::write(&out, code).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
