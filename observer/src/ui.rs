//! The web UI, served at `/` with its files under `/ui/`.
//!
//! `scripts/build-ui.sh` builds the UI (wasm, JS glue, HTML, CSS) into `ui/dist/`, and
//! `build.rs` embeds whatever is there into the binary, so a release binary serves the UI
//! wherever it runs from. Without a built UI the page says how to build one. Setting
//! `FLOWSCOPE_UI_DIR` serves the files from that directory instead, read on each request:
//! rebuild the UI and reload the page, no observer rebuild.

use axum::{
    body::Bytes,
    extract::Path,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};

// `UI_ASSETS: &[(&str, &[u8])]`: file name and bytes of each file of the built UI.
include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));

/// Read at each request, so it can be set for a running dev loop without a restart.
const UI_DIR_ENV: &str = "FLOWSCOPE_UI_DIR";

const NOT_BUILT: &str = "<!doctype html><meta charset=utf-8><title>flowscope</title>\
<p>This flowscope binary was built without its web UI. Run <code>scripts/build-ui.sh</code> \
then <code>cargo build --release</code> (or <code>./dev demo</code>, which does both); the \
API is at <code>/api/v1/</code>.";

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        // Browsers compile wasm while it downloads only with this type.
        "wasm" => "application/wasm",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

/// A file of the UI by name (no directories), from `FLOWSCOPE_UI_DIR` or the embedded build.
fn file(name: &str) -> Option<Bytes> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return None;
    }
    if let Some(dir) = std::env::var_os(UI_DIR_ENV) {
        return std::fs::read(std::path::Path::new(&dir).join(name))
            .ok()
            .map(Bytes::from);
    }
    UI_ASSETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| Bytes::from_static(bytes))
}

fn respond(name: &str, bytes: Bytes) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type(name)),
            // Names carry no content hash: always revalidate, so a new build shows at once.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        bytes,
    )
        .into_response()
}

pub async fn index() -> Response {
    match file("index.html") {
        Some(bytes) => respond("index.html", bytes),
        None => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            NOT_BUILT,
        )
            .into_response(),
    }
}

pub async fn asset(Path(name): Path<String>) -> Response {
    match file(&name) {
        Some(bytes) => respond(&name, bytes),
        None => (StatusCode::NOT_FOUND, "no such UI file").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_types() {
        assert_eq!(content_type("flowscope_ui_bg.wasm"), "application/wasm");
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert!(file("../Cargo.toml").is_none());
        assert!(file(".hidden").is_none());
        assert!(file("").is_none());
    }
}
