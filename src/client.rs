//! One-shot requests to an observer's HTTP API, for the CLI's list and status commands.

use anyhow::Context as _;
use serde_json::Value;

/// GETs `path` from the observer at `server` (`host:port`) and parses the JSON body. An
/// unreachable server is one clear line, not a backtrace.
pub fn get_json(server: &str, path: &str) -> anyhow::Result<Value> {
    let url = format!("http://{server}{path}");
    let mut response = match ureq::get(&url).call() {
        Ok(r) => r,
        Err(ureq::Error::StatusCode(code)) => {
            anyhow::bail!("the observer at {server} answered {code} for {path}")
        }
        Err(err) => anyhow::bail!(
            "cannot reach the observer at {server}: {err} (is `flowscope observer` or \
             `flowscope demo` running? set --server or FLOWSCOPE_SERVER)"
        ),
    };
    response
        .body_mut()
        .read_json()
        .with_context(|| format!("reading {url}"))
}
