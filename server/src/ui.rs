//! The web UI, served at `/` with its files under `/ui/`.
//!
//! `scripts/build-ui.sh` builds the UI (wasm, JS glue, HTML, CSS) into `ui/dist/`, and
//! `build.rs` embeds whatever is there into the binary, so a release binary serves the UI
//! wherever it runs from. Without a built UI the page says how to build one. Setting
//! `FLOWSCOPE_UI_DIR` serves the files from that directory instead, read on each request:
//! rebuild the UI and reload the page, no observer rebuild.
//!
//! `build-ui.sh` also writes a gzip copy of the large files (`NAME.gz`); a browser that
//! accepts gzip gets it with `Content-Encoding: gzip` (no compression at request time).

use axum::{
    body::Bytes,
    extract::Path,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};

// `UI_ASSETS: &[(&str, &[u8], &str)]`: file name, bytes and entity tag of each file of the
// built UI.
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

/// A file of the UI by name (no directories), from `FLOWSCOPE_UI_DIR` or the embedded build,
/// with its entity tag.
fn file(name: &str) -> Option<(Bytes, String)> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return None;
    }
    if let Some(dir) = std::env::var_os(UI_DIR_ENV) {
        let bytes = std::fs::read(std::path::Path::new(&dir).join(name)).ok()?;
        let tag = crate::etag::etag(&bytes);
        return Some((Bytes::from(bytes), tag));
    }
    UI_ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, bytes, tag)| (Bytes::from_static(bytes), (*tag).to_string()))
}

/// Whether an `If-None-Match` header names `tag` (or `*`); weak tags compare as strong ones,
/// as RFC 9110's weak comparison for GET does.
fn matches_tag(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == tag)
}

/// Whether an `Accept-Encoding` header admits gzip (not refused with `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

fn respond(name: &str, headers: &HeaderMap) -> Option<Response> {
    let gzipped = accepts_gzip(headers)
        .then(|| file(&format!("{name}.gz")))
        .flatten();
    let ((bytes, tag), encoding) = match gzipped {
        Some(b) => (b, Some("gzip")),
        None => (file(name)?, None),
    };
    let headers_out = [
        (header::CONTENT_TYPE, content_type(name)),
        // Names carry no content hash: always revalidate, so a new build shows at once, and
        // an unchanged file (the wasm, megabytes) is a 304 without a body.
        (header::CACHE_CONTROL, "no-cache"),
        (header::VARY, "accept-encoding"),
    ];
    let etag = header::HeaderValue::from_str(&tag).ok()?;
    if matches_tag(headers, &tag) {
        let mut response = (StatusCode::NOT_MODIFIED, headers_out).into_response();
        response.headers_mut().insert(header::ETAG, etag);
        return Some(response);
    }
    let mut response = (headers_out, bytes).into_response();
    response.headers_mut().insert(header::ETAG, etag);
    if let Some(e) = encoding {
        response.headers_mut().insert(
            header::CONTENT_ENCODING,
            header::HeaderValue::from_static(e),
        );
    }
    Some(response)
}

pub async fn index(headers: HeaderMap) -> Response {
    match respond("index.html", &headers) {
        Some(r) => r,
        None => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            NOT_BUILT,
        )
            .into_response(),
    }
}

pub async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    // The compressed copies are an encoding of their file, not files of their own.
    let name = name
        .strip_suffix(".gz")
        .map_or(name.clone(), |_| String::new());
    match respond(&name, &headers) {
        Some(r) => r,
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

    #[test]
    fn unchanged_files_are_not_sent_again() {
        let dir = std::env::temp_dir().join(format!("fs-ui-etag-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("app.js"), "console.log(1)").unwrap();
        // SAFETY: this test alone sets the variable, before any request reads it.
        unsafe { std::env::set_var(UI_DIR_ENV, &dir) };
        let first = respond("app.js", &HeaderMap::new()).unwrap();
        assert_eq!(first.status(), StatusCode::OK);
        let tag = first.headers()[header::ETAG].clone();
        let mut again = HeaderMap::new();
        again.insert(header::IF_NONE_MATCH, tag.clone());
        let second = respond("app.js", &again).unwrap();
        assert_eq!(second.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(second.headers()[header::ETAG], tag);
        // A new build: a new tag, the new bytes.
        std::fs::write(dir.join("app.js"), "console.log(2)").unwrap();
        let third = respond("app.js", &again).unwrap();
        assert_eq!(third.status(), StatusCode::OK);
        assert_ne!(third.headers()[header::ETAG], tag);
        unsafe { std::env::remove_var(UI_DIR_ENV) };
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn gzip_only_when_accepted() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, v.parse().unwrap());
            m
        };
        assert!(accepts_gzip(&h("gzip, deflate, br")));
        assert!(accepts_gzip(&h("br;q=1.0, GZIP;q=0.5")));
        assert!(accepts_gzip(&h("*")));
        assert!(!accepts_gzip(&h("gzip;q=0, br")));
        assert!(!accepts_gzip(&h("identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
